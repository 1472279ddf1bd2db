"""Security: SQL is never built from strings, database files are private, a database password
never leaks, and nothing stored is ever unpickled, evaluated or interpreted."""

from __future__ import annotations

import ast
import json
import logging
import os
import re
import subprocess
import sys
import traceback
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy.engine import make_url

import vibecc.state_store
from vibecc.state_store import (
    PipelineHistory,
    PipelineState,
    ProjectNotFoundError,
    StateStore,
    StorageError,
)

if TYPE_CHECKING:
    from tests.conftest import PostgresServer

PACKAGE = Path(vibecc.state_store.__file__).parent

# -- every SQL statement is parametrized --------------------------------------------------------

SQL_WORDS = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE|PRAGMA|BEGIN|COMMIT|ROLLBACK|SAVEPOINT|CREATE|DROP|ALTER|TRUNCATE|"
    r"VACUUM|ATTACH|GRANT|WHERE|FROM|INTO|VALUES|SET|IN|AND|OR|LIMIT|OFFSET|ORDER BY|AT TIME ZONE)\b"
)
"""Upper-case SQL, as the package writes it; a message that happens to say "update" is no match."""
RAW_SQL_CALLS = {"text", "exec_driver_sql", "executescript", "literal_column", "DDL"}
"""Calls that take SQL as a string: their argument must be a literal."""

ALLOWED = {
    (
        "db/dialects.py",
        'cursor.execute(f"PRAGMA busy_timeout = {busy_ms:d}")',
    ): "PRAGMA takes no bound parameters; busy_ms is an int rendered by :d",
    (
        "db/dialects.py",
        "_retry_busy(lambda: conn.exec_driver_sql(statement), options.get(BEGIN_WAIT, wait))",
    ): "BEGIN / BEGIN IMMEDIATE, named by an execution option the package itself sets",
    (
        "models.py",
        'CheckConstraint(f"state IN ({STATE_VALUES})", name="state"),',
    ): "DDL from the module constant STATE_VALUES, no input involved",
    (
        "models.py",
        'CheckConstraint(f"to_state IN ({STATE_VALUES})", name="to_state"),',
    ): "DDL from the module constant STATE_VALUES, no input involved",
    (
        "models.py",
        'CheckConstraint(f"from_state IS NULL OR from_state IN ({STATE_VALUES})", name="from_state"),',
    ): "DDL from the module constant STATE_VALUES, no input involved",
    (
        "models.py",
        'CheckConstraint(f"final_state IN ({STATE_VALUES})", name="final_state"),',
    ): "DDL from the module constant STATE_VALUES, no input involved",
    (
        "migrations/versions/0002_versioned_pipelines.py",
        'postgresql_using=f"{column} AT TIME ZONE {zone}",',
    ): "DDL: column comes from the fixed _TIMESTAMPS table, zone is the literal 'UTC'",
    (
        "migrations/versions/0002_versioned_pipelines.py",
        'batch.create_check_constraint(op.f("ck_pipelines_state"), f"state IN ({_STATE_VALUES})")',
    ): "DDL from the revision's frozen constant _STATE_VALUES",
    (
        "migrations/versions/0002_versioned_pipelines.py",
        'op.f("ck_pipeline_history_final_state"), f"final_state IN ({_STATE_VALUES})"',
    ): "DDL from the revision's frozen constant _STATE_VALUES",
}
"""Exact source lines (stripped) that build SQL text, each with the reason it is safe."""


@dataclass(frozen=True, slots=True)
class Finding:
    file: str
    line: int
    source: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.source}"


def _literal_text(node: ast.AST) -> str | None:
    """The literal parts of a string built at run time (f-string, %, +, .format), else None."""
    if isinstance(node, ast.JoinedStr):
        return "".join(
            v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)
        )
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
        parts = [_literal_text(node.left), _literal_text(node.right)]
        for side in (node.left, node.right):
            if isinstance(side, ast.Constant) and isinstance(side.value, str):
                parts.append(side.value)
        found = [p for p in parts if p]
        return " ".join(found) if found else None
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("format", "join")
        and isinstance(node.func.value, ast.Constant)
        and isinstance(node.func.value.value, str)
    ):
        literal = node.func.value.value
        if node.func.attr == "join":
            literal += " " + " ".join(
                e.value
                for arg in node.args
                if isinstance(arg, ast.List | ast.Tuple)
                for e in arg.elts
                if isinstance(e, ast.Constant) and isinstance(e.value, str)
            )
        return literal
    return None


def _sqlalchemy_names(tree: ast.AST) -> set[str]:
    """Names imported from sqlalchemy (validation.py has a `text` of its own)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def string_built_sql(source: str, file: str) -> list[Finding]:
    """Every place in `source` that builds SQL text at run time or hands non-literal SQL text over."""
    tree = ast.parse(source)
    lines = source.splitlines()
    from_sqlalchemy = _sqlalchemy_names(tree)
    found: set[Finding] = set()
    for node in ast.walk(tree):
        literal = _literal_text(node)
        suspicious = literal is not None and SQL_WORDS.search(literal) is not None
        if isinstance(node, ast.Call) and node.args and not isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            via_module = isinstance(func, ast.Attribute)  # sa.text(...), conn.exec_driver_sql(...)
            if name in RAW_SQL_CALLS and (via_module or name in from_sqlalchemy):
                suspicious = True
        if suspicious:
            line = getattr(node, "lineno", 0)
            found.add(Finding(file, line, lines[line - 1].strip()))
    return sorted(found, key=lambda f: (f.file, f.line))


def _package_findings() -> list[Finding]:
    findings: list[Finding] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        findings += string_built_sql(path.read_text(encoding="utf-8"), path.relative_to(PACKAGE).as_posix())
    return findings


def test_no_sql_is_built_from_strings_outside_the_allowlist() -> None:
    unexpected = [str(f) for f in _package_findings() if (f.file, f.source) not in ALLOWED]
    assert unexpected == [], "SQL text built at run time; bind parameters instead:\n" + "\n".join(unexpected)


def test_the_allowlist_names_only_lines_that_exist() -> None:
    present = {(f.file, f.source) for f in _package_findings()}
    stale = [f"{file}: {line}" for file, line in ALLOWED if (file, line) not in present]
    assert stale == [], "allowlist entries whose line is gone; remove them:\n" + "\n".join(stale)


@pytest.mark.parametrize(
    "snippet",
    [
        "conn.execute(f\"SELECT * FROM projects WHERE repo = '{repo}'\")",
        "conn.execute(\"DELETE FROM pipelines WHERE id = '%s'\" % pipeline_id)",
        'conn.execute("UPDATE projects SET name = \'" + name + "\'")',
        'conn.execute("INSERT INTO projects VALUES ({})".format(values))',
        'conn.execute(" ".join(["SELECT", column, "FROM", table]))',
        "from sqlalchemy import text\nconn.execute(text(statement))",
        "conn.exec_driver_sql(statement)",
        "sa.text(query)",
    ],
)
def test_the_scan_finds_string_built_sql(snippet: str) -> None:
    assert string_built_sql(snippet, "snippet.py"), f"the scan missed: {snippet}"


@pytest.mark.parametrize(
    "snippet",
    [
        'conn.execute(text("SELECT version_num FROM alembic_version"))',
        'raise ValueError(f"cannot update project {project_id}")',
        "from .validation import text\ntext(field, value)",
    ],
)
def test_the_scan_passes_literal_sql_and_messages(snippet: str) -> None:
    assert string_built_sql(snippet, "snippet.py") == []


# -- database files are private -----------------------------------------------------------------

_CREATE_UNDER_UMASK_0 = """
import json, os, sys
os.umask(0)
from vibecc.state_store import StateStore
path = sys.argv[1]
store = StateStore(path)
project = store.create_project("p", "acme/p")
pipeline = store.create_pipeline(project.id, 1, "t", "main")
store.update_pipeline(pipeline.id, state="merged")
store.archive_pipeline(pipeline.id)
modes = {suffix: os.stat(path + suffix).st_mode & 0o777 for suffix in ("", "-wal", "-shm")}
folders = {
    str(folder): os.stat(folder).st_mode & 0o777
    for folder in (os.path.dirname(path), os.path.dirname(os.path.dirname(path)))
}
store.close()
print(json.dumps({"files": modes, "folders": folders}))
"""


@pytest.fixture(scope="module")
def created_under_umask_0(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, int]]:
    """Modes of a store made in new folders by a process whose umask is 0."""
    path = tmp_path_factory.mktemp("private") / "new" / "deeper" / "vibecc.db"
    done = subprocess.run(
        [sys.executable, "-c", _CREATE_UNDER_UMASK_0, str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, dict[str, int]] = json.loads(done.stdout)
    return result


def test_database_wal_and_shm_files_are_created_0600_even_under_umask_0(
    created_under_umask_0: dict[str, dict[str, int]],
) -> None:
    modes = {suffix or "db": oct(mode) for suffix, mode in created_under_umask_0["files"].items()}
    assert modes == {"db": "0o600", "-wal": "0o600", "-shm": "0o600"}


def test_folders_the_store_creates_are_not_writable_by_others_even_under_umask_0(
    created_under_umask_0: dict[str, dict[str, int]],
) -> None:
    """Whoever may write the folder may delete the database or plant a -wal file beside it."""
    writable = {
        folder: oct(mode) for folder, mode in created_under_umask_0["folders"].items() if mode & 0o022
    }
    assert writable == {}, "folders created group- or world-writable"


# -- a database password never leaks ------------------------------------------------------------

PASSWORD = "Zq9:p@ss/w%rd-vibecc"
ENCODED = urllib.parse.quote(PASSWORD, safe="")
SECRETS = (PASSWORD, ENCODED, "Zq9")


def _url(user: str, host: str, port: int, database: str) -> str:
    return f"postgresql+psycopg://{user}:{ENCODED}@{host}:{port}/{database}"


def _exception_texts(exc: BaseException) -> Iterator[str]:
    yield "".join(traceback.format_exception(exc))
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        yield from (str(arg) for arg in current.args)
        todo += [current.__cause__, current.__context__]


def _assert_no_secret(texts: Iterator[str] | list[str], where: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"the password shows in {where}: {text[:300]!r}"


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every logger at DEBUG, SQLAlchemy's engine and pool loggers and the driver's included."""
    caplog.set_level(logging.DEBUG)
    for name in ("sqlalchemy", "sqlalchemy.engine", "sqlalchemy.pool", "psycopg", "alembic"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def _log_texts(caplog: pytest.LogCaptureFixture) -> list[str]:
    texts = [caplog.text]
    for record in caplog.records:
        texts.append(record.getMessage())
        texts.append(repr(record.args))
        if record.exc_info and record.exc_info[1] is not None:
            texts.extend(_exception_texts(record.exc_info[1]))
    return texts


@pytest.fixture
def pg_host(pg_server: PostgresServer) -> tuple[str, int]:
    url = pg_server.admin_url
    return url.host or "127.0.0.1", url.port or 5432


FAILING_URLS = {
    "unreachable-port": lambda host, port: _url("vibecc", "127.0.0.1", 1, "vibecc"),
    "bad-database-name": lambda host, port: _url(
        "postgres", host, port, f"no_such_db_{uuid.uuid4().hex[:8]}"
    ),
    "unknown-user": lambda host, port: _url("no_such_role", host, port, "postgres"),
}


@pytest.mark.parametrize("case", sorted(FAILING_URLS))
def test_password_never_appears_when_opening_fails(
    case: str, pg_host: tuple[str, int], all_logs: pytest.LogCaptureFixture
) -> None:
    url = FAILING_URLS[case](*pg_host)
    with pytest.raises(StorageError, match="PostgreSQL database") as raised:
        StateStore(url, connect_timeout=2)
    _assert_no_secret(_exception_texts(raised.value), "the exception")
    _assert_no_secret(_log_texts(all_logs), "the logs")
    assert all_logs.records, "nothing was logged: the log check saw nothing"


def test_password_never_appears_while_a_store_works(
    pg_server: PostgresServer, all_logs: pytest.LogCaptureFixture
) -> None:
    url = make_url(pg_server.create_database()).set(password=PASSWORD).render_as_string(hide_password=False)
    assert ENCODED in url
    with StateStore(url) as store:
        _assert_no_secret([store.url, repr(store), str(store)], "the store's url/repr")
        project = store.create_project("p", "acme/p")
        pipeline = store.create_pipeline(project.id, 1, "t", "main")
        store.update_pipeline(pipeline.id, state="merged")
        store.archive_pipeline(pipeline.id)
        with pytest.raises(ProjectNotFoundError) as raised:
            store.get_project(str(uuid.uuid4()))
        _assert_no_secret(_exception_texts(raised.value), "an exception")
    with pytest.raises(StorageError, match="closed") as closed:
        store.list_projects()
    _assert_no_secret(_exception_texts(closed.value), "the closed-store error")
    _assert_no_secret(_log_texts(all_logs), "the logs")
    assert any("sqlalchemy" in r.name for r in all_logs.records), "SQLAlchemy logged nothing at DEBUG"


def _cli_available() -> str | None:
    try:
        import vibecc.state_store.cli  # noqa: F401
    except ImportError as exc:
        return f"no CLI in this checkout: {exc}"
    return None


@pytest.mark.parametrize("case", sorted(FAILING_URLS))
@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_password_never_appears_in_cli_output(case: str, debug: bool, pg_host: tuple[str, int]) -> None:
    problem = _cli_available()
    if problem:
        pytest.skip(problem)
    url = FAILING_URLS[case](*pg_host)
    args = [
        sys.executable,
        "-m",
        "vibecc.state_store",
        *(["--debug"] if debug else []),
        "--db",
        url,
        "projects",
        "list",
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "PostgreSQL database" in done.stderr
    _assert_no_secret([done.stdout, done.stderr], "the CLI output")
    from_env = subprocess.run(
        [*args[:3], "projects", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "VIBECC_DATABASE_URL": url},
    )
    assert from_env.returncode == 1
    _assert_no_secret([from_env.stdout, from_env.stderr], "the CLI output (URL from the environment)")


# -- nothing stored is unpickled, evaluated or interpreted --------------------------------------

UNSAFE_MODULES = {
    "pickle",
    "cPickle",
    "_pickle",
    "marshal",
    "shelve",
    "dill",
    "cloudpickle",
    "jsonpickle",
    "yaml",
}
UNSAFE_CALLS = {"eval", "exec", "compile", "__import__"}


def unsafe_uses(source: str, file: str) -> list[Finding]:
    """Imports of deserializers that run code, and calls of eval/exec/compile/__import__."""
    tree = ast.parse(source)
    lines = source.splitlines()
    found = []
    for node in ast.walk(tree):
        bad = False
        if isinstance(node, ast.Import):
            bad = any(alias.name.split(".")[0] in UNSAFE_MODULES for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            bad = (node.module or "").split(".")[0] in UNSAFE_MODULES
        elif isinstance(node, ast.Call):
            func = node.func
            bad = (isinstance(func, ast.Name) and func.id in UNSAFE_CALLS) or (
                isinstance(func, ast.Attribute)
                and func.attr in {"loads", "load", "load_all", "unsafe_load"}
                and isinstance(func.value, ast.Name)
                and func.value.id in UNSAFE_MODULES
            )
        if bad:
            line = getattr(node, "lineno", 0)
            found.append(Finding(file, line, lines[line - 1].strip()))
    return found


def test_package_never_unpickles_or_evaluates() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += unsafe_uses(path.read_text(encoding="utf-8"), path.relative_to(PACKAGE).as_posix())
    assert [str(f) for f in found] == []


@pytest.mark.parametrize(
    "snippet",
    [
        "import pickle",
        "from yaml import load",
        "eval(value)",
        "exec(code)",
        "marshal.loads(blob)",
        "__import__(name)",
    ],
)
def test_the_unsafe_scan_finds_each_kind(snippet: str) -> None:
    assert unsafe_uses(snippet, "snippet.py")


def _payloads(marker: Path) -> list[str]:
    command = f"touch {marker}"
    return [
        f"__import__('os').system('{command}')",
        f"cos\nsystem\n(S'{command}'\ntR.",  # a protocol-0 pickle that runs the command
        f"!!python/object/apply:os.system ['{command}']",
        "{{ self.__init__.__globals__ }} ${7*7} %s%n {0.__class__}",
        "'); DROP TABLE projects; --",
    ]


def test_stored_code_and_pickles_round_trip_verbatim_and_never_run(store: StateStore, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for n, payload in enumerate(_payloads(marker)):
        project = store.create_project(payload[:255], f"acme/payload-{n}")
        pipeline = store.create_pipeline(project.id, f"p{n}", payload, "main", payload)
        pipeline = store.update_pipeline(pipeline.id, feedback=payload, state=PipelineState.FAILED)
        assert (store.get_project(project.id).name, pipeline.ticket_title) == (payload[:255], payload)
        assert (pipeline.ticket_body, pipeline.feedback) == (payload, payload)
        saved = store.archive_pipeline(pipeline.id)
        assert store.get_history_record(saved.id).ticket_title == payload
        imported = PipelineHistory(
            id=f"import-{n}",
            project_id=project.id,
            ticket_id=f"i{n}",
            ticket_title=payload,
            final_state=PipelineState.MERGED,
            branch_name="main",
            pr_id=None,
            pr_url=None,
            total_retries_ci=0,
            total_retries_review=0,
            started_at=datetime(2025, 1, 1, tzinfo=UTC),
            completed_at=datetime(2025, 1, 2, tzinfo=UTC),
            duration_seconds=86_400,
        )
        store.import_history([imported])
    titles = sorted(r.ticket_title for r in store.iter_history())
    assert titles == sorted(_payloads(marker) * 2)
    assert sorted(p.name for p in store.list_projects()) == sorted(p[:255] for p in _payloads(marker))
    assert not marker.exists(), "a stored string was executed"


def test_cli_shows_stored_text_verbatim_without_markup_or_terminal_escapes(tmp_path: Path) -> None:
    """Ticket titles come from an issue tracker anyone may write to: the CLI must not let them
    restyle its output (rich markup) or send escape sequences to the operator's terminal."""
    problem = _cli_available()
    if problem:
        pytest.skip(problem)
    path = tmp_path / "vibecc.db"
    with StateStore(path) as store:
        project = store.create_project("[red]styled[/red]", "acme/markup")
        store.create_pipeline(project.id, 1, "\x1b]0;owned\x07\x1b[2Jtitle", "main")
    # Wide enough that no column is cut short, whatever COLUMNS the test run inherits.
    wide = {**os.environ, "COLUMNS": "200"}
    listed = subprocess.run(
        [sys.executable, "-m", "vibecc.state_store", "--db", str(path), "projects", "list"],
        capture_output=True,
        env=wide,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert "[red]styled[/red]" in listed.stdout, "rich markup in a stored name was interpreted"
    pipelines = subprocess.run(
        [sys.executable, "-m", "vibecc.state_store", "--db", str(path), "pipelines", "list"],
        capture_output=True,
        env=wide,
        text=True,
        timeout=120,
    )
    assert pipelines.returncode == 0, pipelines.stderr
    assert "\x1b" not in listed.stdout + pipelines.stdout, "a stored escape sequence reached the terminal"
