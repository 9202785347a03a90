#!/usr/bin/env bash
# Regenerates gen/ from protos/: Python messages, gRPC stubs and .pyi type stubs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
rm -rf gen/chatmesh
mkdir -p gen
mapfile -t files < <(cd protos && find chatmesh -name '*.proto' | sort)
(cd protos && "$OLDPWD/$PY" -m grpc_tools.protoc -I . \
  --python_out=../gen --pyi_out=../gen --grpc_python_out=../gen "${files[@]}")
# Make every generated folder a regular package so tools and installers find it.
find gen/chatmesh -type d -exec sh -c 'touch "$1/__init__.py"' _ {} \;
