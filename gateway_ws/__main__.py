"""`python -m gateway_ws`: one gateway process (`chatmesh serve gateway`)."""

import sys

from chatmesh_common.runner import run_service

from .server import service_process

if __name__ == "__main__":
    sys.exit(run_service("gateway_ws", service_process))
