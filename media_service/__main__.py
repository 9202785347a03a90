"""`python -m media_service`: one media_service process (`chatmesh serve media`)."""

import sys

from chatmesh_common.runner import run_service

from .server import service_process

if __name__ == "__main__":
    sys.exit(run_service("media_service", service_process))
