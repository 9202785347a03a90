"""`chatmesh dev` for the end-to-end tests: the one launcher's DevProcess with their secret."""

from __future__ import annotations

from pathlib import Path

from tests.servers.services import DevProcess as _DevProcess

SECRET = "e2e-secret-of-at-least-thirty-two-bytes"


class DevProcess(_DevProcess):
    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir, SECRET)
