"""`chatmesh dev`'s consumer worker: the durable log's consumers in a process of their own.

Search's indexer and notify's consumer with its delivery loop follow the log that dev's chat
appends to (events.sqlite3 in the data dir, opened here with a short poll, since the append's
wakeup stays in dev's process). They write the search index and the push queue in the same data
dir and ask chat and presence over gRPC on dev's port with their service credentials, as in a
cluster. They never open chat's store: dev's process stays its one writer.

Dev starts it (`python -m chatmesh_launcher.dev_consumers`, the settings in the environment)
with a pipe on stdin and reads the first stdout line, `READY metrics=<port>`. The worker stops
when that pipe closes, so it does not outlive a dev that was killed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from chatmesh_common.bus import DURABLE_LOG_FILE, InProcessBus
from chatmesh_common.clock import Clock
from chatmesh_common.runner import Process, run_service
from chatmesh_common.service import Component, Health
from chatmesh_common.settings import read_env
from notify_service.config import NotifyConfig
from notify_service.server import NotifyComponent
from search_service.config import SearchConfig
from search_service.server import SearchComponent

from .dev_settings import DevConfig, split_hostport
from .supervisor import stop_when_parent_is_gone

# The first line the worker prints once its consumers run.
READY = "chatmesh dev consumers ready"


class DevConsumers:
    """The search indexer and push on the shared durable log, without a gRPC server."""

    name = "chatmesh dev consumers"

    def __init__(
        self,
        data_dir: Path,
        search_config: SearchConfig,
        notify_config: NotifyConfig,
        clock: Clock,
        poll_s: float,
    ) -> None:
        self.bus = InProcessBus(data_dir / DURABLE_LOG_FILE, clock, poll_s=poll_s)
        # Their servicers are dev's to serve; here only their consumers run.
        self._components: list[Component] = [
            SearchComponent(search_config, engine=None, bus=self.bus, access=None, clock=clock),
            NotifyComponent(
                notify_config, providers=None, store=None, bus=self.bus, access=None, clock=clock
            ),
        ]
        self._health = Health.STARTING

    @property
    def health(self) -> Health:
        return self._health

    async def start(self) -> None:
        opened: list[Component] = []
        try:
            for component in self._components:
                await component.open()
                opened.append(component)
        except BaseException:
            for component in reversed(opened):
                await component.close()
            await self.bus.close()
            raise
        self._health = Health.SERVING

    async def stop(self) -> None:
        if self._health is Health.STOPPED:
            return
        self._health = Health.NOT_SERVING
        for component in self._components:
            await component.before_stop()
        for component in reversed(self._components):
            await component.close()
        await self.bus.close()
        self._health = Health.STOPPED


def consumers_process(clock: Clock) -> Process:
    """The worker from the environment dev gives it, for the runner."""
    dev = read_env(DevConfig)
    data_dir = Path(os.environ["CHATMESH_DATA_DIR"])
    service = DevConsumers(
        data_dir,
        SearchConfig.from_env(),
        NotifyConfig.from_env(),
        clock,
        dev.consumers_poll_s,
    )
    host, port = split_hostport(dev.consumers_metrics_bind, "CHATMESH_DEV_CONSUMERS_METRICS_BIND")
    return Process(
        service,
        host,
        port,
        banner=lambda metrics: f"{READY} metrics={metrics}",
        metrics_setting="CHATMESH_DEV_CONSUMERS_METRICS_BIND",
    )


def main() -> int:
    stop_when_parent_is_gone()
    return run_service("dev consumers", consumers_process)


if __name__ == "__main__":
    sys.exit(main())
