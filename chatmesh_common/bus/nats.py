"""The cluster bus: core NATS for live fanout, JetStream for the durable event log.

`NatsBus` implements `chatmesh_common.bus.base.Bus` with nats-py:

* `publish` / `subscribe`: core NATS, at most once. nats-py calls an async callback per message
  (one task per subscription, in order); it calls the plain handler, which only queues.
* `publish_durable`: a JetStream publish with `Nats-Msg-Id`, awaited until the stream acks it.
  The stream drops a repeated id within its duplicate window, so a publisher may retry freely.
* `durable_consumer`: a durable pull consumer on the event stream (explicit ack, `ack_wait`),
  created or updated with the given filters; a fetch is a pull request, an ack waits for the
  server's confirmation (so an acked message is never redelivered, also across a restart).
* The connection reconnects forever (with backoff and jitter) across every configured server;
  `on_reconnect` callbacks run after each reconnect so streams can catch up from the store.

`ensure_stream` creates or updates the stream; `ensure_consumers` creates the durable consumers
named in the settings that do not exist yet, so they hold every event from the start even before
their service (push, search) first runs; docs/events.md lists the settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from chatmesh_common.subjects import EVENTS_SUBJECTS

from .base import (
    DEFAULT_ACK_WAIT_S,
    DurableConsumer,
    Handler,
    Subscription,
    check_consumer_args,
    check_fetch_args,
)
from .nats_settings import NatsSettings
from .wildcards import check_consumer_name, check_durable_subject, check_filter, durable_filters

log = logging.getLogger(__name__)

__all__ = ["NatsBus", "NatsConnectError", "NatsSettings"]


class NatsConnectError(RuntimeError):
    """No configured NATS server answered in time at start-up."""


class _NatsSubscription:
    def __init__(self, sub: NatsSubscription) -> None:
        self._sub = sub

    async def unsubscribe(self) -> None:
        # The connection may be closing or reconnecting; the subscription dies with it anyway.
        with contextlib.suppress(Exception):
            await self._sub.unsubscribe()


class NatsBus:
    """Bus over a NATS cluster. Build with `await NatsBus.connect(settings)`."""

    def __init__(self, settings: NatsSettings) -> None:
        self.settings = settings
        self._nc = NatsClient()
        self._js: JetStreamContext | None = None
        self._reconnect_callbacks: list[Callable[[], None]] = []

    @classmethod
    async def connect(cls, settings: NatsSettings) -> NatsBus:
        bus = cls(settings)
        await bus._connect()
        return bus

    async def _connect(self) -> None:
        s = self.settings
        options: dict[str, object] = {
            "servers": list(s.urls),
            "name": s.client_name,
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,  # forever: fanout resumes whenever NATS is back
            "reconnect_time_wait": s.reconnect_wait_s,
            "connect_timeout": 2,
            "pending_size": s.reconnect_buffer_bytes,
            "error_cb": self._on_error,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
        }
        if s.creds_file:
            options["user_credentials"] = s.creds_file
        if s.token:
            options["token"] = s.token
        if s.user:
            options["user"] = s.user
            options["password"] = s.password
        tls = s.tls_context()
        if tls is not None:
            options["tls"] = tls
        loop = asyncio.get_running_loop()
        deadline = loop.time() + s.connect_wait_s
        delay = 0.1
        while True:
            try:
                await self._nc.connect(**options)  # type: ignore[arg-type]
                break
            except Exception as exc:
                # nats-py retries only after a first successful connect; start-up retries here.
                if loop.time() + delay > deadline:
                    raise NatsConnectError(f"no NATS server reachable at {s.urls}: {exc}") from exc
                log.warning("NATS not reachable yet (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                self._nc = NatsClient()
        self._js = self._nc.jetstream(timeout=s.publish_timeout_s)

    async def _on_error(self, exc: Exception) -> None:
        log.warning("NATS error: %s", exc)

    async def _on_disconnected(self) -> None:
        log.warning("disconnected from NATS; reconnecting")

    async def _on_reconnected(self) -> None:
        log.info("reconnected to NATS at %s", self._nc.connected_url)
        for callback in list(self._reconnect_callbacks):
            try:
                callback()
            except Exception:
                log.exception("reconnect callback failed")

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise RuntimeError("NatsBus is not connected")
        return self._js

    @property
    def is_connected(self) -> bool:
        return bool(self._nc.is_connected)

    # Bus

    async def publish(self, subject: str, payload: bytes) -> None:
        await self._nc.publish(subject, payload)

    async def subscribe(self, subject: str, handler: Handler) -> Subscription:
        async def deliver(msg: Msg) -> None:
            try:
                handler(msg.subject, msg.data)
            except Exception:
                log.exception("bus handler for %s failed", subject)

        return _NatsSubscription(await self._nc.subscribe(check_filter(subject), cb=deliver))

    async def publish_durable(self, subject: str, payload: bytes, msg_id: str) -> None:
        check_durable_subject(subject)
        await self.js.publish(
            subject,
            payload,
            timeout=self.settings.publish_timeout_s,
            stream=self.settings.stream,
            headers={"Nats-Msg-Id": msg_id},
        )

    async def durable_consumer(
        self,
        name: str,
        filter_subjects: str | Sequence[str],
        ack_wait_s: float = DEFAULT_ACK_WAIT_S,
    ) -> DurableConsumer:
        check_consumer_name(name)
        check_consumer_args(ack_wait_s)
        await self._add_consumer(name, durable_filters(filter_subjects), ack_wait_s)
        sub = await self.js.pull_subscribe_bind(name, stream=self.settings.stream)
        return _JetStreamConsumer(name, sub)

    def on_reconnect(self, callback: Callable[[], None]) -> Callable[[], None]:
        self._reconnect_callbacks.append(callback)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._reconnect_callbacks.remove(callback)

        return remove

    async def flush(self, timeout_s: float = 2.0) -> None:
        """Waits until the server has seen everything published so far (tests, shutdown)."""
        await self._nc.flush(timeout=timeout_s)  # type: ignore[arg-type]

    async def close(self) -> None:
        self._reconnect_callbacks.clear()
        if not self._nc.is_closed:
            with contextlib.suppress(Exception):
                await self._nc.close()

    # JetStream set-up

    def stream_config(self) -> StreamConfig:
        s = self.settings
        return StreamConfig(
            name=s.stream,
            subjects=[EVENTS_SUBJECTS],
            retention=RetentionPolicy.LIMITS,
            discard=DiscardPolicy.OLD,
            storage=StorageType.FILE,
            num_replicas=s.stream_replicas,
            max_age=s.stream_max_age_s,
            max_bytes=s.stream_max_bytes,
            max_msgs=s.stream_max_msgs,
            duplicate_window=s.duplicate_window_s,
        )

    async def ensure_stream(self) -> None:
        """Creates the event stream, or brings an existing one to the configured settings."""
        config = self.stream_config()
        try:
            await self.js.stream_info(self.settings.stream)
        except NotFoundError:
            await self.js.add_stream(config)
            log.info("created JetStream stream %s", self.settings.stream)
        else:
            await self.js.update_stream(config)

    async def ensure_consumers(self, names: Sequence[str] | None = None) -> None:
        """Creates the named durable consumers that do not exist yet, reading every event.

        An existing one is left as it is: its service set its filters (`durable_consumer`).
        """
        s = self.settings
        for name in s.consumers if names is None else names:
            try:
                await self.js.consumer_info(s.stream, name)
            except NotFoundError:
                await self._add_consumer(name, (EVENTS_SUBJECTS,), s.consumer_ack_wait_s)

    async def _add_consumer(self, name: str, filters: Sequence[str], ack_wait_s: float) -> None:
        """Creates the durable pull consumer, or updates its filters and ack wait."""
        await self.js.add_consumer(
            self.settings.stream,
            ConsumerConfig(
                name=name,
                durable_name=name,
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=ack_wait_s,
                max_ack_pending=self.settings.consumer_max_ack_pending,
                filter_subject=filters[0] if len(filters) == 1 else None,
                filter_subjects=list(filters) if len(filters) > 1 else None,
            ),
        )


class _JetStreamMessage:
    def __init__(self, msg: Msg) -> None:
        self._msg = msg
        self.subject: str = msg.subject
        self.data: bytes = msg.data
        self.msg_id: str = (msg.headers or {}).get("Nats-Msg-Id", "")
        self.delivery_count: int = msg.metadata.num_delivered or 1
        self._settled = False

    async def ack(self) -> None:
        if not self._settled:
            # Confirmed by the server: once this returns, no restart brings the message back.
            await self._msg.ack_sync()
            self._settled = True

    async def nak(self, delay_s: float = 0.0) -> None:
        if not self._settled:
            await self._msg.nak(delay=delay_s if delay_s > 0 else None)
            self._settled = True


class _JetStreamConsumer:
    def __init__(self, name: str, sub: JetStreamContext.PullSubscription) -> None:
        self._name = name
        self._sub = sub

    @property
    def name(self) -> str:
        return self._name

    async def fetch(self, batch: int = 100, timeout_s: float = 1.0) -> list[_JetStreamMessage]:
        check_fetch_args(batch, timeout_s)
        try:
            msgs = await self._sub.fetch(batch, timeout=timeout_s)
        except (TimeoutError, nats.errors.TimeoutError):
            return []
        return [_JetStreamMessage(msg) for msg in msgs]

    async def close(self) -> None:
        # The consumer lives on in the stream; this only drops the pull subscription.
        with contextlib.suppress(Exception):
            await self._sub.unsubscribe()
