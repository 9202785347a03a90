"""grpcurl (built into .tools/bin by `make tools`), run with a bound on its time."""

from __future__ import annotations

import asyncio
from pathlib import Path

from .binaries import require_binary

TOOLS = Path(__file__).resolve().parents[2] / ".tools" / "bin"


async def grpcurl(*args: str, marker: str, timeout_s: float = 60) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of one grpcurl run; killed, and the test failed, past
    `timeout_s` so a server that never answers cannot hang the suite."""
    binary = require_binary("grpcurl", marker, [TOOLS])
    process = await asyncio.create_subprocess_exec(
        binary,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return process.returncode or 0, out.decode(), err.decode()
