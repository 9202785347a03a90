"""`python -m presence_service`: one presence_service process (`chatmesh serve presence`)."""

import sys

from chatmesh_common.runner import run_service

from .server import service_process

if __name__ == "__main__":
    sys.exit(run_service("presence_service", service_process))
