#!/usr/bin/env bash
# buf breaking for the `protos` module against the previous commit (override: AGAINST_REF=<rev>).
# Passes (with a note) where there is nothing to compare against: no git, no HEAD~1 (first commit
# or shallow clone), or no protos/ in that commit yet.
set -euo pipefail
cd "$(dirname "$0")/.."
BUF=${BUF:-.venv/bin/buf}
ref=${AGAINST_REF:-HEAD~1}

note() { echo "buf breaking: $*; skipped."; exit 0; }
git rev-parse --git-dir >/dev/null 2>&1 || note "not a git checkout"
sha=$(git rev-parse --verify -q "${ref}^{commit}") || note "$ref does not exist (first commit or shallow clone)"
git cat-file -e "$sha:protos" 2>/dev/null || note "$ref ($sha) has no protos/ yet"

# buf clones from the .git dir; the common dir also works inside a `git worktree`.
gitdir=$(cd "$(git rev-parse --git-common-dir)" && pwd)
# Input `protos` + against `subdir=protos`: both sides resolve to the `protos` module of the v2
# workspace (buf.yaml at the root), and an older commit without buf.yaml still has the same
# module root, so file paths (chatmesh/...) line up. A full sha avoids buf re-parsing `HEAD~1`.
echo "buf breaking: protos vs $ref ($sha)"
exec "$BUF" breaking protos --against "${gitdir}#format=git,ref=${sha},subdir=protos"
