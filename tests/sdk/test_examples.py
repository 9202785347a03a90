"""The runnable examples run as their usage lines say, against a real `chatmesh dev`:
examples/ts/chat.mjs (two terminals chatting through the SDK) and examples/python/send.py, whose
`main` is the Python client the README shows."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import pytest

from chatmesh_common.auth import issue_token
from tests.gateway.client import GatewayClient
from tests.servers.services import REPO, DevProcess

from .npm import PACKAGE, install, run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

EXAMPLES = REPO / "examples"
SECRET = "example-secret-" + "x" * 32
LINE_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevProcess]:
    process = DevProcess(tmp_path_factory.mktemp("examples") / "data", SECRET)
    process.start(wait_s=60)
    try:
        yield process
    finally:
        process.stop()


def test_readme_python_client_is_the_example_file() -> None:
    """The README's Python block is the example's `main`, verbatim, so it cannot drift."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("```python\n", 1)[1].split("```", 1)[0]
    assert block.strip() in (EXAMPLES / "python" / "send.py").read_text()


def test_python_example_sends_and_prints_the_ack(dev: DevProcess) -> None:
    async def conversation() -> str:
        alice = await GatewayClient.connect(dev.ws_url, issue_token(SECRET, "alice", "phone"))
        try:
            return await alice.create_group("bob")
        finally:
            await alice.ws.close()

    cid = asyncio.run(conversation())
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "python" / "send.py"), "--url", dev.ws_url,
         "--token", issue_token(SECRET, "alice", "laptop"), "--conversation", cid,
         "--body", "hello from the example"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    frames = [json.loads(line) for line in done.stdout.splitlines()]
    assert frames[0]["ready"]["userId"] == "alice"
    ack = frames[-1]
    assert ack["requestId"] == "1"
    assert ack["sendMessage"]["message"]["body"] == "hello from the example"


class Terminal:
    """`node chat.mjs` with piped stdin, read line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def stdout_with(self, text: str) -> str:
        assert self.process.stdout is not None
        return await self._line_with(self.process.stdout, text)

    async def stderr_with(self, text: str) -> str:
        assert self.process.stderr is not None
        return await self._line_with(self.process.stderr, text)

    @staticmethod
    async def _line_with(stream: asyncio.StreamReader, text: str) -> str:
        async with asyncio.timeout(LINE_TIMEOUT_S):
            while True:
                raw = await stream.readline()
                assert raw, f"chat.mjs's output ended before {text!r}"
                if text in (line := raw.decode()):
                    return line.rstrip("\n")

    async def type(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()


@pytest.fixture
def example_env(npm_env: tuple[str, dict[str, str]]) -> dict[str, str]:
    """examples/ts installed against this checkout's SDK, built."""
    npm, env = npm_env
    run(npm, "run", "build", env=env, timeout_s=180, cwd=PACKAGE)
    install(npm, EXAMPLES / "ts", env)
    return env


@pytest.fixture
async def terminals(
    dev: DevProcess, example_env: dict[str, str]
) -> AsyncIterator[dict[str, Terminal]]:
    started: dict[str, Terminal] = {}
    try:
        for user, peer in (("alice", "bob"), ("bob", "alice")):
            process = await asyncio.create_subprocess_exec(
                "node", "chat.mjs", "--url", dev.ws_url,
                "--token", issue_token(SECRET, user, "terminal"), "--with", peer,
                cwd=EXAMPLES / "ts", env=example_env, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            started[user] = Terminal(process)
            await started[user].stderr_with("Ctrl-D leaves")
        yield started
    finally:
        for terminal in started.values():
            if terminal.process.returncode is None:
                terminal.process.kill()
                await terminal.process.wait()


async def test_ts_example_two_terminals_chat(terminals: dict[str, Terminal]) -> None:
    await terminals["alice"].type("hi bob, from the example")
    assert await terminals["bob"].stdout_with("hi bob") == "alice: hi bob, from the example"
    await terminals["bob"].type("hi alice")
    assert await terminals["alice"].stdout_with("hi alice") == "bob: hi alice"
