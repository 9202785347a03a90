"""A real `chatmesh dev` for the terminal commands, and a way to run `chatmesh <command>` beside it.

One dev for the package (starting it costs seconds): tests use users of their own so they do not see
each other's conversations. Dev keeps its token secret in its data dir (CHATMESH_JWT_SECRET
unset), so `chatmesh tail` and `chatmesh chat` are tested signing with it as a person runs them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from chatmesh_common.auth import issue_token
from tests.gateway.client import GatewayClient
from tests.servers.services import REPO, DevProcess

# A fresh `chatmesh` process imports grpc before its first line: generous on a loaded CI box.
LINE_TIMEOUT_S = 30.0


class Dev:
    """The running dev: its addresses, and clients of users signed with its secret."""

    def __init__(self, process: DevProcess) -> None:
        self.process = process
        self.data_dir = process.data_dir
        self.ws_url = process.ws_url
        self.grpc_target = process.grpc_target

    @property
    def secret(self) -> str:
        return (self.data_dir / "jwt-secret").read_text().strip()

    async def connect(self, user: str, device: str = "phone") -> GatewayClient:
        return await GatewayClient.connect(self.ws_url, issue_token(self.secret, user, device))


def dev_process(data_dir: Path) -> DevProcess:
    """`chatmesh dev` on free ports; an empty CHATMESH_JWT_SECRET is unset, so dev makes and
    keeps its secrets in the data dir."""
    return DevProcess(data_dir, "", CHATMESH_JWT_SECRET="", CHATMESH_SERVICE_SECRET="")


@pytest.fixture(scope="package")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    process = dev_process(tmp_path_factory.mktemp("launcher") / "data")
    process.start(wait_s=60)
    try:
        yield Dev(process)
    finally:
        process.stop()


def command_env() -> dict[str, str]:
    """The environment of a person's shell: no chatmesh settings, this checkout importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATMESH_")}
    paths = (str(REPO), str(REPO / "gen"), env.get("PYTHONPATH", ""))
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


class Command:
    """`chatmesh <args>` as a child process with pipes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def line(self, timeout_s: float = LINE_TIMEOUT_S) -> str:
        """The next line of stdout (fails at its end)."""
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout_s):
            raw = await self.process.stdout.readline()
        assert raw, f"stdout ended; stderr: {await self._stderr()}"
        return raw.decode().rstrip("\n")

    async def line_with(self, text: str, timeout_s: float = LINE_TIMEOUT_S) -> str:
        """The next stdout line containing `text`, skipping the others."""
        async with asyncio.timeout(timeout_s):
            while text not in (line := await self.line(timeout_s)):
                pass
        return line

    async def error_line(self, timeout_s: float = LINE_TIMEOUT_S) -> str:
        """The next line of stderr."""
        assert self.process.stderr is not None
        async with asyncio.timeout(timeout_s):
            raw = await self.process.stderr.readline()
        assert raw, "stderr ended"
        return raw.decode().rstrip("\n")

    async def type(self, *lines: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("".join(line + "\n" for line in lines).encode())
        await self.process.stdin.drain()

    async def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> int:
        self.process.send_signal(sig)
        return await self.wait(timeout_s)

    async def wait(self, timeout_s: float = 15.0) -> int:
        async with asyncio.timeout(timeout_s):
            return await self.process.wait()

    async def _stderr(self) -> str:
        assert self.process.stderr is not None
        try:
            async with asyncio.timeout(2):
                return (await self.process.stderr.read()).decode()
        except TimeoutError:
            return "(still open)"

    async def stderr(self) -> str:
        return await self._stderr()


@asynccontextmanager
async def chatmesh(*args: str) -> AsyncIterator[Command]:
    """Runs `chatmesh <args>`; killed at the end if it is still running."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chatmesh_launcher",
        *args,
        env=command_env(),
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield Command(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
