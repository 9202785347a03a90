#!/usr/bin/env bash
# buf breaking: the protos/ of the working tree against the protos/ of a base commit.
#
# The base is, in this order:
#   AGAINST_REF=<rev>  a deliberate override; it must resolve to a commit present locally.
#   on a branch        the merge base of HEAD with origin/main (or main when there is no
#                      origin/main), i.e. everything this branch changed.
#   on main            HEAD's first parent (HEAD^): the merge base is HEAD itself there, and
#                      HEAD^ is what main was before the last merge or commit.
# History it needs but cannot see is an error, never a pass: a shallow clone, no main branch,
# no merge base, or a missing parent. Each message says how to fetch what is missing. The only
# passes without a comparison are a repository's root commit (there is no earlier protocol)
# and a base with no protos/ (every proto is new).
# BASE_BRANCH=<name> names the trunk (default main); BUF=<path> the buf binary.
set -euo pipefail
cd "$(dirname "$0")/.."
BUF=${BUF:-.venv/bin/buf}
trunk=${BASE_BRANCH:-main}

fail() {
  printf 'buf breaking: %s\n' "$1" >&2
  [ $# -lt 2 ] || printf '  fix: %s\n' "$2" >&2
  [ -n "${AGAINST_REF:-}" ] || printf '  or: AGAINST_REF=<rev> compares against a commit of your choice\n' >&2
  exit 1
}
commit_of() { git rev-parse --verify -q "${1}^{commit}"; }

git rev-parse --git-dir >/dev/null 2>&1 || fail "$PWD is not a git checkout" "run it in a clone"

if [ -n "${AGAINST_REF:-}" ]; then
  base=$(commit_of "$AGAINST_REF") ||
    fail "AGAINST_REF=$AGAINST_REF is not a commit in this clone" \
      "git fetch origin $AGAINST_REF (or git fetch --unshallow)"
  why="AGAINST_REF=$AGAINST_REF"
else
  # A shallow clone may lack the merge base, or cut the parent off main: refuse it outright
  # rather than compare against whatever happens to be there.
  if [ "$(git rev-parse --is-shallow-repository)" = true ]; then
    fail "this is a shallow clone, so the merge base with $trunk may be missing" \
      "git fetch --unshallow origin"
  fi
  if trunk_sha=$(commit_of "refs/remotes/origin/$trunk"); then
    trunk_name=origin/$trunk
  elif trunk_sha=$(commit_of "refs/heads/$trunk"); then
    trunk_name=$trunk
  else
    fail "neither origin/$trunk nor $trunk exists here" \
      "git fetch origin $trunk:refs/remotes/origin/$trunk"
  fi
  head=$(git rev-parse HEAD)
  merge_base=$(git merge-base HEAD "$trunk_sha") ||
    fail "HEAD and $trunk_name have no common history here" \
      "git fetch --unshallow origin (or git fetch origin $trunk)"
  if [ "$merge_base" != "$head" ]; then
    base=$merge_base
    why="merge base of HEAD with $trunk_name"
  elif base=$(commit_of "HEAD^"); then
    # HEAD is on $trunk (or behind it): compare the last commit, merges included, with what
    # $trunk was before it.
    why="HEAD^ (HEAD is on $trunk_name)"
  else
    echo "buf breaking: HEAD is the root commit; there is no earlier protocol to break. ok."
    exit 0
  fi
fi

# The whole tree of the base must be here, not just its commit object.
git cat-file -e "$base^{tree}" 2>/dev/null ||
  fail "the tree of $base ($why) is missing" "git fetch --unshallow origin"
if ! git cat-file -e "$base:protos" 2>/dev/null; then
  echo "buf breaking: $why ($base) has no protos/; every proto is new. ok."
  exit 0
fi

# The base's protos/ as a plain directory: both sides are then the same module root, so file
# paths (chatmesh/...) line up, and the rules come from the working tree's buf.yaml.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git archive "$base" protos | tar -x -C "$tmp"
echo "buf breaking: protos/ vs $why ($(git rev-parse --short "$base"))"
"$BUF" breaking protos --against "$tmp/protos"
echo "buf breaking: no breaking change."
