"""`python -m notify_service`: one notify_service process (`chatmesh serve notify`)."""

import sys

from chatmesh_common.runner import run_service

from .server import service_process

if __name__ == "__main__":
    sys.exit(run_service("notify_service", service_process))
