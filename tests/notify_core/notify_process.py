"""`python -m tests.notify_core.notify_process`: notify_service as a process of its own, for the
kill test: configured from the environment, on the embedded durable log file that the test's
chat_service writes (NOTIFY_TEST_BUS_LOG), with a provider that appends each push it accepts to
NOTIFY_TEST_RECORD (one line per push) after NOTIFY_TEST_DELAY_S, standing in for APNs."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from chatmesh_common.bus import InProcessBus
from chatmesh_common.clock import Clock
from chatmesh_common.runner import Process, run_service
from notify_service.config import NotifyConfig
from notify_service.providers.base import Outcome, Platform, PushMessage, PushResult, PushTarget
from notify_service.server import build_notify_service


class FileRecordingProvider:
    platform = Platform.APNS

    def __init__(self, path: str, delay_s: float) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._delay_s = delay_s

    async def send(self, target: PushTarget, message: PushMessage) -> PushResult:
        await asyncio.sleep(self._delay_s)
        data = message.data
        line = f"{target.token} {data.get('conversation_id')} {data.get('seq')}\n"
        os.write(self._fd, line.encode())
        return PushResult(Outcome.SENT, status=200)

    async def close(self) -> None:
        os.close(self._fd)


def setup(clock: Clock) -> Process:
    config = NotifyConfig.from_env()
    provider = FileRecordingProvider(
        os.environ["NOTIFY_TEST_RECORD"], float(os.environ.get("NOTIFY_TEST_DELAY_S", "0"))
    )
    bus = InProcessBus(Path(os.environ["NOTIFY_TEST_BUS_LOG"]), clock)
    service = build_notify_service(
        config, providers={Platform.APNS: provider}, bus=bus, clock=clock
    )
    return Process(service, config.metrics_host, -1, banner=lambda _m: "notify test process")


if __name__ == "__main__":
    sys.exit(run_service("notify_service", setup))
