"""The branch-name check agrees with git (`git check-ref-format --branch`) on names git accepts
and names it refuses, stricter only where a name would be ambiguous."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from vibecc.state_store import ValidationError
from vibecc.state_store import rules as check

if TYPE_CHECKING:
    from tests.bad_input import INVALID_BRANCHES
else:
    from bad_input import INVALID_BRANCHES

BRANCH_CANDIDATES = [
    # accepted by git
    "main", "feature/x", "a/b/c", "vibecc/42-fix-bug", "release-1.0", "v1.2.3", "UPPER", "a_b", "a+b",
    "a=b", "a,b", "a;b", "a'b", 'a"b', "a#b", "a%b", "a&b", "a!b", "a$b", "a(b)", "a{b}", "a<b>", "a|b",
    "a`b", "ü", "日本語", "emoji-🚀", "a@b", "@a", "a@", "a./b", "x.y", "a-", "a.b.c", "lock", "a.lock.b",
    "a/b.locked", "HEAD/x", "x/HEAD", "refs/heads/x", "a/@", "a\u00a0b", "a{b}c",
    # refused by git
    *INVALID_BRANCHES, "", " ", "a\tb", "a\x7fb", "a\x01b", "x/", "x..", ".", "..", "a/./b", "a/../b",
    "a.lock/b", "a/b.lock", "@{-1}", "a@{", "-", "--x", "a b/c", "a:b/c", "*", "a/*", "?", "[", "~", "^",
    "\\", "x/.lock", "a/.b/c", ".hidden",
]  # fmt: skip
# Refused by the store although `git check-ref-format --branch` accepts it: git checks the full
# ref refs/heads/@ there, but a branch named "@" is ambiguous with "@" meaning HEAD.
STRICTER_THAN_GIT = {"@"}


def git_accepts(name: str, cwd: Path, git: str) -> bool:
    result = subprocess.run(
        [git, "check-ref-format", "--branch", name], cwd=cwd, capture_output=True, check=False
    )
    return result.returncode == 0


def store_accepts(name: str) -> bool:
    try:
        check.branch("branch_name", name)
    except ValidationError:
        return False
    return True


def test_branch_check_agrees_with_git(tmp_path: Path) -> None:
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")

    disagreements = {
        name: (git_accepts(name, tmp_path, git), store_accepts(name))
        for name in BRANCH_CANDIDATES
        if git_accepts(name, tmp_path, git) != store_accepts(name)
    }

    assert disagreements == dict.fromkeys(STRICTER_THAN_GIT, (True, False))
    assert sum(store_accepts(n) for n in BRANCH_CANDIDATES) >= 40
