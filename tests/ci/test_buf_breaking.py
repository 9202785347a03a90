"""scripts/buf_breaking.sh in throwaway repositories: which base it picks, and that missing
history fails instead of passing.

Each test builds a small git repository in tmp_path holding a copy of the script, a buf.yaml
and one proto, and runs the script there with the venv's real buf.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
BUF = Path(sys.executable).with_name("buf")
PROTO = "protos/acme/thing/v1/thing.proto"
HEADER = 'syntax = "proto3";\n\npackage acme.thing.v1;\n\n'
# Field 1 only; field 1 and a new field 2 (compatible); field 1 deleted (breaking).
V1 = HEADER + "message Thing {\n  string name = 1;\n}\n"
ADDED = HEADER + "message Thing {\n  string name = 1;\n  int64 size = 2;\n}\n"
DELETED = HEADER + "message Thing {\n  int64 size = 2;\n}\n"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


@dataclass
class Result:
    code: int
    out: str


class Repo:
    """A git repository holding the script, a buf.yaml and one proto file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", *args],
            cwd=self.path,
            env={**os.environ, **GIT_ENV},
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    def commit(self, proto: str | None, message: str) -> str:
        """Writes `proto` (None: leaves protos/ as it is) and commits everything."""
        if proto is not None:
            target = self.path / PROTO
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(proto)
        else:
            with (self.path / "notes.txt").open("a") as notes:
                notes.write(message + "\n")
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    def breaking(self, **env: str) -> Result:
        done = subprocess.run(
            ["bash", "scripts/buf_breaking.sh"],
            cwd=self.path,
            env={**os.environ, **GIT_ENV, "BUF": str(BUF), **env},
            capture_output=True,
            text=True,
        )
        return Result(done.returncode, done.stdout + done.stderr)


def make_repo(path: Path) -> Repo:
    """A repo on `main` whose first commit has the script and buf.yaml, and no protos/ yet."""
    path.mkdir()
    (path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "buf_breaking.sh", path / "scripts")
    shutil.copy(ROOT / "buf.yaml", path)
    repo = Repo(path)
    repo.git("init", "-q", "-b", "main")
    repo.commit(None, "tooling")
    return repo


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    """A repo whose `main` has the tooling commit, then V1 of the proto."""
    if not BUF.exists():
        pytest.fail(f"{BUF} is missing: run `make install`")
    made = make_repo(tmp_path / "repo")
    made.commit(V1, "thing v1")
    return made


def clone(repo: Repo, path: Path, *args: str) -> Repo:
    subprocess.run(
        ["git", "clone", "-q", *args, f"file://{repo.path}", str(path)],
        env={**os.environ, **GIT_ENV},
        check=True,
    )
    return Repo(path)


def test_a_compatible_branch_passes_against_its_merge_base(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.git("checkout", "-q", "-b", "feature")
    repo.commit(ADDED, "add size")
    result = repo.breaking()
    assert result.code == 0, result.out
    assert f"merge base of HEAD with main ({base[:7]}" in result.out


def test_a_break_early_on_a_branch_fails_though_the_last_commit_is_harmless(
    repo: Repo,
) -> None:
    """HEAD~1 would see no break; the merge base does."""
    repo.git("checkout", "-q", "-b", "feature")
    repo.commit(DELETED, "drop name")
    repo.commit(None, "unrelated")
    result = repo.breaking()
    assert result.code != 0, result.out
    assert 'Previously present field "1" with name "name"' in result.out


def test_a_break_merged_into_main_fails_on_main(repo: Repo) -> None:
    """On main the merge base is HEAD itself; the first parent is the base."""
    repo.git("checkout", "-q", "-b", "feature")
    repo.commit(DELETED, "drop name")
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--no-ff", "-m", "merge feature", "feature")
    result = repo.breaking()
    assert result.code != 0, result.out
    assert "HEAD^ (HEAD is on main)" in result.out


def test_a_compatible_commit_on_main_passes(repo: Repo) -> None:
    repo.commit(ADDED, "add size")
    result = repo.breaking()
    assert result.code == 0, result.out
    assert "HEAD^ (HEAD is on main)" in result.out


def test_uncommitted_breaks_in_the_working_tree_fail(repo: Repo) -> None:
    repo.git("checkout", "-q", "-b", "feature")
    repo.commit(None, "unrelated")
    (repo.path / PROTO).write_text(DELETED)
    result = repo.breaking()
    assert result.code != 0, result.out
    assert "merge base of HEAD with main" in result.out


def test_a_fresh_full_clone_uses_origin_main(repo: Repo, tmp_path: Path) -> None:
    """CI's case: a full clone; a branch there compares with origin/main even without a local
    main branch."""
    ci = clone(repo, tmp_path / "ci")
    assert "HEAD^ (HEAD is on origin/main)" in ci.breaking().out
    ci.git("checkout", "-q", "-b", "feature")
    ci.git("branch", "-q", "-D", "main")
    ci.commit(DELETED, "drop name")
    result = ci.breaking()
    assert result.code != 0, result.out
    assert "merge base of HEAD with origin/main" in result.out


def test_a_shallow_clone_fails_and_says_how_to_fetch(repo: Repo, tmp_path: Path) -> None:
    repo.commit(DELETED, "drop name")
    shallow = clone(repo, tmp_path / "shallow", "--depth", "1")
    result = shallow.breaking()
    assert result.code != 0, result.out
    assert "shallow clone" in result.out and "git fetch --unshallow" in result.out
    # Once unshallowed it runs, and finds the break.
    shallow.git("fetch", "-q", "--unshallow", "origin")
    result = shallow.breaking()
    assert result.code != 0 and "Previously present field" in result.out, result.out


def test_no_main_branch_fails(repo: Repo) -> None:
    repo.git("branch", "-q", "-m", "main", "trunk")
    result = repo.breaking()
    assert result.code != 0, result.out
    assert "neither origin/main nor main exists" in result.out
    assert repo.breaking(BASE_BRANCH="trunk").code == 0


def test_no_common_history_with_main_fails(repo: Repo) -> None:
    repo.git("checkout", "-q", "--orphan", "elsewhere")
    repo.commit(V1, "unrelated root")
    result = repo.breaking()
    assert result.code != 0, result.out
    assert "no common history" in result.out


def test_against_ref_overrides_and_must_exist(repo: Repo) -> None:
    repo.commit(DELETED, "drop name")
    assert repo.breaking().code != 0  # against HEAD^, which still has field 1
    same = repo.breaking(AGAINST_REF="HEAD")
    assert same.code == 0, same.out
    assert f"AGAINST_REF=HEAD ({repo.git('rev-parse', '--short', 'HEAD')})" in same.out
    missing = repo.breaking(AGAINST_REF="v9.9")
    assert missing.code != 0
    assert "AGAINST_REF=v9.9 is not a commit" in missing.out


def test_a_base_without_protos_passes_and_says_so(repo: Repo) -> None:
    repo.commit(ADDED, "add size")
    result = repo.breaking(AGAINST_REF="HEAD~2")
    assert result.code == 0, result.out
    assert "has no protos/; every proto is new" in result.out


def test_the_root_commit_passes_and_says_so(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "root")
    result = root.breaking()
    assert result.code == 0, result.out
    assert "HEAD is the root commit" in result.out
