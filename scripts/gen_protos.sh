#!/usr/bin/env bash
# Regenerates gen/ from protos/: Python messages, gRPC stubs and their .pyi type stubs.
set -euo pipefail
cd "$(dirname "$0")/.."
# Absolute, but not through symlinks: the venv's python must stay the venv's.
PY=${PYTHON:-.venv/bin/python}
BIN=$(cd "$(dirname "$PY")" && pwd)
PY="$BIN/$(basename "$PY")"
OUT=${GEN_OUT:-gen}
OUT=$(realpath -m "$OUT")
rm -rf "$OUT/chatmesh"
mkdir -p "$OUT"
mapfile -t files < <(cd protos && find chatmesh -name '*.proto' | sort)
(cd protos && "$PY" -m grpc_tools.protoc -I . \
  --plugin=protoc-gen-mypy_grpc="$BIN/protoc-gen-mypy_grpc" \
  --python_out="$OUT" --pyi_out="$OUT" --grpc_python_out="$OUT" --mypy_grpc_out="$OUT" \
  "${files[@]}")
# Make every generated folder a regular package so tools and installers find it.
find "$OUT/chatmesh" -type d -exec sh -c 'touch "$1/__init__.py"' _ {} \;
