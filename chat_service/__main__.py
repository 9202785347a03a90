"""`python -m chat_service`: one chat_service process (`chatmesh serve chat`)."""

import sys

from chatmesh_common.runner import run_service

from .server import service_process

if __name__ == "__main__":
    sys.exit(run_service("chat_service", service_process))
