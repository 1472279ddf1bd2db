"""`vibecc-state projects ...` and `vibecc-state pipelines ...`."""

from __future__ import annotations

from collections import Counter
from typing import Any

import click
from rich.console import RenderableType

from ..errors import PipelineNotFoundError, ProjectHasActivePipelinesError, ValidationError
from ..ops.exchange import to_dict
from ..records import CLEAR, Pipeline, Project
from ..store import StateStore
from .args import STATE, find_project, names, project_id, project_option
from .changes import watch as watch_changes
from .common import (
    Env,
    Group,
    confirm,
    console,
    emit_json,
    json_option,
    pass_env,
    quoted,
    say,
    yes_option,
)
from .views import (
    board,
    kv_table,
    pipeline_rows,
    pipelines_table,
    project_rows,
    projects_table,
    timeline_table,
)

# -- projects --------------------------------------------------------------------------------


@click.group(cls=Group)
def projects() -> None:
    """Projects: the repositories the orchestrator works on.

    \b
    Example:
      vibecc-state projects add acme/web --name "Web shop"
    """


def _active(store: StateStore) -> Counter[str]:
    """Active pipelines per project, counted by the database (no pipeline is loaded)."""
    return Counter({p.id: store.count_pipelines(p.id) for p in store.list_projects()})


def _show_project(project: Project, active: int, as_json: bool) -> None:
    if as_json:
        emit_json({**to_dict(project), "active_pipelines": active})
    else:
        console().print(kv_table(project_rows(project, active)))


@projects.command("list")
@json_option
@pass_env
def list_projects(env: Env, as_json: bool) -> None:
    """List projects by name.

    \b
    Example:
      vibecc-state projects list --json
    """
    store = env.store()
    found, active = store.list_projects(), _active(store)
    if as_json:
        emit_json([{**to_dict(p), "active_pipelines": active[p.id]} for p in found])
    else:
        console().print(projects_table(found, active))


@projects.command("show")
@click.argument("ref", metavar="REPO|ID")
@json_option
@pass_env
def show_project(env: Env, ref: str, as_json: bool) -> None:
    """Show one project, by repo (owner/name, any case) or id.

    \b
    Example:
      vibecc-state projects show acme/web
    """
    store = env.store()
    project = find_project(store, ref)
    _show_project(project, store.count_pipelines(project.id), as_json)


@projects.command("add")
@click.argument("repo")
@click.option("--name", required=True, help="Display name.")
@click.option("--base-branch", default="main", show_default=True)
@click.option("--github-project-id", type=int, help="The GitHub project (board) number.")
@click.option("--max-retries-ci", type=int, default=3, show_default=True)
@click.option("--max-retries-review", type=int, default=3, show_default=True)
@json_option
@pass_env
def add_project(
    env: Env,
    repo: str,
    name: str,
    base_branch: str,
    github_project_id: int | None,
    max_retries_ci: int,
    max_retries_review: int,
    as_json: bool,
) -> None:
    """Add the project of REPO ("owner/name").

    \b
    Example:
      vibecc-state projects add acme/web --name "Web shop" --github-project-id 7
    """
    project = env.store().create_project(
        name, repo, base_branch, github_project_id, max_retries_ci, max_retries_review
    )
    if as_json:
        _show_project(project, 0, as_json)
    else:
        say(f"added project {project.repo} ({project.name}), id {project.id}")


@projects.command("update")
@click.argument("ref", metavar="REPO|ID")
@click.option("--name")
@click.option("--base-branch")
@click.option("--github-project-id", type=int)
@click.option("--clear-github-project-id", is_flag=True, help="Remove the GitHub project number.")
@click.option("--max-retries-ci", type=int)
@click.option("--max-retries-review", type=int)
@json_option
@pass_env
def update_project(
    env: Env,
    ref: str,
    name: str | None,
    base_branch: str | None,
    github_project_id: int | None,
    clear_github_project_id: bool,
    max_retries_ci: int | None,
    max_retries_review: int | None,
    as_json: bool,
) -> None:
    """Change the given settings of a project.

    \b
    Example:
      vibecc-state projects update acme/web --max-retries-ci 5 --clear-github-project-id
    """
    if clear_github_project_id and github_project_id is not None:
        raise click.UsageError("give --github-project-id or --clear-github-project-id, not both")
    changes: dict[str, Any] = {
        key: value
        for key, value in (
            ("name", name),
            ("base_branch", base_branch),
            ("github_project_id", github_project_id),
            ("max_retries_ci", max_retries_ci),
            ("max_retries_review", max_retries_review),
        )
        if value is not None
    }
    if clear_github_project_id:
        changes["github_project_id"] = CLEAR
    if not changes:
        raise click.UsageError("nothing to update: give at least one option")
    store = env.store()
    project = store.update_project(find_project(store, ref).id, **changes)
    _show_project(project, store.count_pipelines(project.id), as_json)


@projects.command("delete")
@click.argument("ref", metavar="REPO|ID")
@yes_option
@pass_env
def delete_project(env: Env, ref: str, yes: bool) -> None:
    """Delete a project whose pipelines are all finished; its history stays.

    Asks first; --yes skips the question, and without a terminal to ask on --yes is needed.
    The history stays reachable with --project and the id or the last repo.

    \b
    Example:
      vibecc-state projects delete acme/old-site --yes
    """
    store = env.store()
    project = find_project(store, ref)
    confirm(f"delete project {project.repo} ({project.name})", yes=yes)
    try:
        store.delete_project(project.id)
    except ProjectHasActivePipelinesError:
        active = store.count_pipelines(project.id)
        raise ProjectHasActivePipelinesError(
            f"project {project.repo} has {active} active pipeline(s); finish or delete them first"
        ) from None
    say(f"deleted project {project.repo}; its history stays")


# -- pipelines -------------------------------------------------------------------------------


@click.group(cls=Group)
def pipelines() -> None:
    """Active pipelines: tickets being worked on.

    \b
    Example:
      vibecc-state pipelines list --project acme/web --board
    """


@pipelines.command("list")
@project_option
@click.option("--state", type=STATE, help="Only pipelines in this state.")
@click.option(
    "--board/--flat",
    "as_board",
    default=None,
    help="A board with a column per state, or one row per pipeline [default: board on a terminal].",
)
@click.option(
    "--watch",
    is_flag=True,
    help="Redraw each time a change commits, until Ctrl-C (not with --json: use `changes --follow`).",
)
@json_option
@pass_env
def list_pipelines(
    env: Env,
    project_ref: str | None,
    state: str | None,
    as_board: bool | None,
    watch: bool,
    as_json: bool,
) -> None:
    """List active pipelines, newest first.

    --watch redraws the list (in place on a terminal, one after another into a pipe) each
    time a write commits, not on a timer; Ctrl-C ends it (exit 130).

    \b
    Example:
      vibecc-state pipelines list --state review --flat
      vibecc-state pipelines list --project acme/web --board --watch
    """
    if watch and as_json:
        raise click.UsageError(
            "--watch redraws a table and cannot be combined with --json; "
            "for a stream of JSON use `changes --follow --json`"
        )
    store = env.store()
    project = project_id(store, project_ref)
    if as_json:
        emit_json([to_dict(p) for p in store.list_pipelines(project, state)])
        return
    out = console()
    shown_as_board = as_board if as_board is not None else out.is_terminal

    def render() -> RenderableType:
        found, repos = store.list_pipelines(project, state), names(store)
        return board(found, repos) if shown_as_board else pipelines_table(found, repos)

    if watch:
        watch_changes(store, render)
    else:
        out.print(render())


@pipelines.command("show")
@click.argument("ref", metavar="ID|REPO#TICKET")
@json_option
@pass_env
def show_pipeline(env: Env, ref: str, as_json: bool) -> None:
    """Show one active pipeline, by id or as owner/name#ticket, with its timeline: every
    state it went through and the time spent in each.

    \b
    Example:
      vibecc-state pipelines show acme/web#42
    """
    store = env.store()
    pipeline = _find_pipeline(store, ref)
    timeline = store.get_timeline(pipeline.id)
    if as_json:
        emit_json({**to_dict(pipeline), "timeline": [to_dict(t) for t in timeline]})
    else:
        out = console()
        out.print(kv_table(pipeline_rows(pipeline, names(store).get(pipeline.project_id))))
        out.print(timeline_table(timeline))


def _find_pipeline(store: StateStore, ref: str) -> Pipeline:
    if "#" in ref:
        repo, _, ticket = ref.rpartition("#")
        project = store.get_project_by_repo(repo)
        try:
            return store.get_pipeline_by_ticket(project.id, ticket)
        except PipelineNotFoundError:
            raise PipelineNotFoundError(
                f"no active pipeline for ticket {quoted(ticket)} in {project.repo}"
            ) from None
    try:
        return store.get_pipeline(ref)
    except ValidationError:  # not even the shape of an id
        raise PipelineNotFoundError(
            f"pipeline {quoted(ref)} not found (give its id or owner/name#ticket)"
        ) from None
