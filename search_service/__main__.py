"""`python -m search_service`: one search_service process (`chatmesh serve search`)."""

import sys

from chatmesh_common.runner import run_service

from .server import service_process

if __name__ == "__main__":
    sys.exit(run_service("search_service", service_process))
