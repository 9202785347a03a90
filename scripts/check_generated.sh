#!/usr/bin/env bash
# Fails if gen/ differs from what scripts/gen_protos.sh produces from protos/, or
# docs/protocol.md from what scripts/gen_protocol_doc.py writes.
# Generates into a temp copy, so the working tree (which others may be editing) is never touched,
# and compares against the files on disk, not git: works before a commit, and in CI's clean
# clone the files on disk are the committed ones.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mkdir -p "$tmp/scripts"
cp scripts/gen_protos.sh "$tmp/scripts/"
# Real copy, not a symlink: gen_protos.sh writes to protos/../gen, which through a symlink
# would be the real gen/.
cp -R protos "$tmp/protos"
# gen_protos.sh runs .venv/bin/python relative to its root; reuse ours.
ln -s "$root/.venv" "$tmp/.venv"
env -u PYTHON bash "$tmp/scripts/gen_protos.sh"

if [ ! -d gen/chatmesh ]; then
  echo "check-gen: gen/chatmesh is missing; run 'make gen'." >&2
  exit 1
fi
# docs/protocol.md comes from the same protos (their comments); checked first, reported last.
doc=0
PYTHONPATH="$root:$root/gen" "$root/.venv/bin/python" scripts/gen_protocol_doc.py --check || doc=1
if diff -r -q -x __pycache__ gen/chatmesh "$tmp/gen/chatmesh" >"$tmp/summary"; then
  echo "check-gen: gen/ is up to date with protos/."
  exit "$doc"
fi
echo "check-gen: gen/ is stale (left: gen/, right: freshly generated). Run 'make gen'." >&2
sed "s|$tmp/|<fresh>/|g" "$tmp/summary" >&2
echo "--- first 80 diff lines (cut at 160 columns):" >&2
diff -r -u -x __pycache__ gen/chatmesh "$tmp/gen/chatmesh" | sed "s|$tmp/|<fresh>/|g" | head -n 80 | cut -c1-160 >&2 || true
exit 1
