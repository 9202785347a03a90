"""Every RPC of every service, enumerated from the descriptors in gen/, refuses a caller without
the credential its entry in chatmesh_common.credentials requires: over real gRPC servers (chat and
presence as separate servers, presence asking chat with its service token) and over the
in-process LocalChannel of `chatmesh dev`.

No, garbage, expired and forged-kind tokens are UNAUTHENTICATED; a valid token of the wrong kind,
or a service token without the scope, is PERMISSION_DENIED (docs/identity.md).
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import chatmesh
import grpc
import pytest
from chatmesh.events.v1 import event_service_pb2
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message_factory import GetMessageClass

from chat_service.config import ChatConfig
from chat_service.server import SERVICE_NAMES as CHAT_SERVICE_NAMES
from chat_service.server import build_chat_service
from chatmesh_common.auth import auth_metadata, bearer_token, issue_service_token, issue_token
from chatmesh_common.bus import InProcessBus
from chatmesh_common.clock import SystemClock
from chatmesh_common.credentials import RPC_CREDENTIALS, Kind, Requirement, requirement
from chatmesh_common.local_channel import LocalChannel
from media_service.config import MediaConfig
from media_service.server import SERVICE_NAMES as MEDIA_SERVICE_NAMES
from media_service.server import build_media_service
from notify_service.config import NotifyConfig
from notify_service.server import SERVICE_NAMES as NOTIFY_SERVICE_NAMES
from notify_service.server import build_notify_service
from presence_service.config import PresenceConfig
from presence_service.server import SERVICE_NAMES as PRESENCE_SERVICE_NAMES
from presence_service.server import build_presence_service
from search_service.config import SearchConfig
from search_service.server import SERVICE_NAMES as SEARCH_SERVICE_NAMES
from search_service.server import build_search_service
from tests.chat.support import SECRET, SERVICE_SECRET

pytestmark = pytest.mark.timeout(60)

Metadata = tuple[tuple[str, str], ...]
# A refusal arrives at once; an accepted stream may simply wait for events.
ACCEPTED_STREAM_WAIT_S = 0.3
ALL_SCOPES = sorted({r.scope for m in RPC_CREDENTIALS.values() for r in m.values() if r.scope})


def all_services() -> list[ServiceDescriptor]:
    """Every service of every generated module under gen/chatmesh."""
    found: dict[str, ServiceDescriptor] = {}
    for module in pkgutil.walk_packages(chatmesh.__path__, "chatmesh."):
        if module.name.endswith("_pb2"):
            descriptor = importlib.import_module(module.name).DESCRIPTOR
            for service in descriptor.services_by_name.values():
                found[service.full_name] = service
    return [found[name] for name in sorted(found)]


def all_methods() -> list[MethodDescriptor]:
    return [m for s in all_services() for m in s.methods]


def method_path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def rule_of(method: MethodDescriptor) -> Requirement:
    rule = requirement(method.containing_service.full_name, method.name)
    assert rule is not None, f"{method_path(method)} has no entry in RPC_CREDENTIALS"
    return rule


def test_every_rpc_has_an_entry_in_the_credential_table() -> None:
    """A new RPC without a credential entry, or an entry without an RPC, fails here."""
    declared = {f"/{s}/{m}" for s, methods in RPC_CREDENTIALS.items() for m in methods}
    found = {method_path(m) for m in all_methods()}
    assert found - declared == set(), "RPCs missing from chatmesh_common.credentials"
    assert declared - found == set(), "credential entries naming no RPC"
    assert {s.full_name for s in all_services()} >= {
        "chatmesh.chat.v1.ChatService",
        "chatmesh.chat.v1.AccessService",
        "chatmesh.events.v1.EventService",
        "chatmesh.presence.v1.PresenceService",
    }


# Credentials, each for a given RPC's requirement.


def _ago() -> float:
    return time.time() - 3600


def no_token(rule: Requirement) -> Metadata:
    return ()


def garbage(rule: Requirement) -> Metadata:
    return auth_metadata("not.a-jwt.at-all")


def expired(rule: Requirement) -> Metadata:
    """The right kind, correctly signed, expired an hour ago (far beyond the leeway)."""
    if rule.kind is Kind.SERVICE:
        return auth_metadata(
            issue_service_token(SERVICE_SECRET, "presence", ALL_SCOPES, 60, _ago())
        )
    return auth_metadata(issue_token(SECRET, "alice", "d1", 60, _ago()))


def forged_kind(rule: Requirement) -> Metadata:
    """The other kind's claims signed with this kind's key: the kind claim alone refuses it."""
    if rule.kind is Kind.SERVICE:
        return auth_metadata(issue_token(SERVICE_SECRET, "alice", "d1"))
    return auth_metadata(issue_service_token(SECRET, "presence", ALL_SCOPES))


def wrong_kind(rule: Requirement) -> Metadata:
    """A valid token of the other kind (a service token carrying every scope, or a user's)."""
    if rule.kind is Kind.SERVICE:
        return auth_metadata(issue_token(SECRET, "alice", "d1"))
    return auth_metadata(issue_service_token(SERVICE_SECRET, "presence", ALL_SCOPES))


def no_scope(rule: Requirement) -> Metadata:
    return auth_metadata(issue_service_token(SERVICE_SECRET, "presence", []))


def right(rule: Requirement) -> Metadata:
    if rule.kind is Kind.SERVICE:
        return auth_metadata(issue_service_token(SERVICE_SECRET, "presence", [rule.scope]))
    return auth_metadata(issue_token(SECRET, "alice", "d1"))


@dataclass
class System:
    channels: dict[str, Any]  # service full name -> the channel serving it


@pytest.fixture(params=["grpc", "local"])
async def system(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[System]:
    """chat_service and presence_service as two real servers sharing a bus; `local` calls the
    same servicers through a LocalChannel instead."""
    bus = InProcessBus()
    clock = SystemClock()
    chat = build_chat_service(
        ChatConfig(
            jwt_secret=SECRET,
            service_secret=SERVICE_SECRET,
            data_dir=str(tmp_path),
            grpc_bind="127.0.0.1:0",
            shutdown_grace_s=0.1,
            drain_s=0,
        ),
        bus=bus,
        clock=clock,
    )
    await chat.start()
    presence_config = PresenceConfig(
        jwt_secret=SECRET,
        service_secret=SERVICE_SECRET,
        grpc_bind="127.0.0.1:0",
        chat_target=f"127.0.0.1:{chat.port}",
        shutdown_grace_s=0.1,
        drain_s=0,
    )
    presence = build_presence_service(presence_config, bus=bus, clock=clock)
    await presence.start()
    search = build_search_service(
        SearchConfig(
            jwt_secret=SECRET,
            service_secret=SERVICE_SECRET,
            grpc_bind="127.0.0.1:0",
            index_path=str(tmp_path / "search.db"),
            chat_target=f"127.0.0.1:{chat.port}",
            shutdown_grace_s=0.1,
            drain_s=0,
        ),
        bus=bus,
        clock=clock,
    )
    await search.start()
    media = build_media_service(
        MediaConfig(
            jwt_secret=SECRET,
            service_secret=SERVICE_SECRET,
            grpc_bind="127.0.0.1:0",
            http_bind="127.0.0.1:0",
            records=str(tmp_path / "media.db"),
            blob_dir=str(tmp_path / "media"),
            chat_target=f"127.0.0.1:{chat.port}",
            shutdown_grace_s=0.1,
            drain_s=0,
        ),
        bus=bus,
        clock=clock,
    )
    notify = build_notify_service(
        NotifyConfig(
            jwt_secret=SECRET,
            service_secret=SERVICE_SECRET,
            grpc_bind="127.0.0.1:0",
            store_path=str(tmp_path / "notify.db"),
            chat_target=f"127.0.0.1:{chat.port}",
            presence_target=f"127.0.0.1:{presence.port}",
            shutdown_grace_s=0.1,
            drain_s=0,
        ),
        bus=bus,
        clock=clock,
    )
    await notify.start()
    await media.start()
    opened: list[grpc.aio.Channel] = []
    if request.param == "grpc":
        chat_channel = grpc.aio.insecure_channel(f"127.0.0.1:{chat.port}")
        presence_channel = grpc.aio.insecure_channel(f"127.0.0.1:{presence.port}")
        search_channel = grpc.aio.insecure_channel(f"127.0.0.1:{search.port}")
        media_channel = grpc.aio.insecure_channel(f"127.0.0.1:{media.port}")
        notify_channel = grpc.aio.insecure_channel(f"127.0.0.1:{notify.port}")
        opened += [chat_channel, presence_channel, search_channel, media_channel, notify_channel]
        channels: dict[str, Any] = {
            **{name: chat_channel for name in CHAT_SERVICE_NAMES},
            **{name: presence_channel for name in PRESENCE_SERVICE_NAMES},
            **{name: search_channel for name in SEARCH_SERVICE_NAMES},
            **{name: notify_channel for name in NOTIFY_SERVICE_NAMES},
            **{name: media_channel for name in MEDIA_SERVICE_NAMES},
        }
    else:
        local = LocalChannel(
            [
                *chat.registrations,
                *presence.registrations,
                *search.registrations,
                *notify.registrations,
                *media.registrations,
            ]
        )
        names = (
            *CHAT_SERVICE_NAMES,
            *PRESENCE_SERVICE_NAMES,
            *SEARCH_SERVICE_NAMES,
            *NOTIFY_SERVICE_NAMES,
            *MEDIA_SERVICE_NAMES,
        )
        channels = {name: local for name in names}
    try:
        yield System(channels)
    finally:
        for channel in opened:
            await channel.close(None)
        await notify.stop()
        await media.stop()
        await search.stop()
        await presence.stop()
        await chat.stop()


async def call(system: System, method: MethodDescriptor, metadata: Metadata) -> tuple[str, str]:
    """Calls `method` with an empty request; (status code name, details), "OK" if accepted."""
    service = method.containing_service.full_name
    channel = system.channels.get(service)
    assert channel is not None, f"no server in this test serves {service}; add it to the fixture"
    request_cls = cast(Any, GetMessageClass(method.input_type))
    response_cls = cast(Any, GetMessageClass(method.output_type))
    if method.client_streaming:
        return await call_per_stream(channel, method, metadata)
    kwargs = {
        "request_serializer": request_cls.SerializeToString,
        "response_deserializer": response_cls.FromString,
    }
    try:
        if method.server_streaming:
            stream = channel.unary_stream(method_path(method), **kwargs)(
                request_cls(), metadata=metadata
            )
            try:
                async with asyncio.timeout(ACCEPTED_STREAM_WAIT_S):
                    await stream.read()
            except TimeoutError:
                pass  # accepted, waiting for events
            finally:
                stream.cancel()
        else:
            await channel.unary_unary(method_path(method), **kwargs)(
                request_cls(), metadata=metadata, timeout=5
            )
    except grpc.aio.AioRpcError as exc:
        return exc.code().name, exc.details() or ""
    return "OK", ""


async def call_per_stream(
    channel: Any, method: MethodDescriptor, metadata: Metadata
) -> tuple[str, str]:
    """A PER_STREAM RPC (a bidirectional call whose opens carry the token): one open with the
    credential's token; its `ended` status, "OK" if the stream was accepted."""
    assert rule_of(method).kind is Kind.PER_STREAM, f"{method_path(method)}: extend call()"
    multiplexed = channel.stream_stream(
        method_path(method),
        request_serializer=event_service_pb2.SubscribeEventsMultiplexedRequest.SerializeToString,
        response_deserializer=event_service_pb2.SubscribeEventsMultiplexedResponse.FromString,
    )
    control = event_service_pb2.SubscribeEventsMultiplexedRequest()
    control.open.stream_id = 1
    control.open.token = bearer_token(metadata)
    stream = multiplexed()
    try:
        await stream.write(control)
        async with asyncio.timeout(5):
            item = await stream.read()
    except grpc.aio.AioRpcError as exc:
        return exc.code().name, exc.details() or ""
    finally:
        stream.cancel()
    if item.HasField("ended"):
        return _CODES[item.ended.code].name, item.ended.message
    return "OK", ""


_CODES = {code.value[0]: code for code in grpc.StatusCode}


def served(system: System, method: MethodDescriptor) -> bool:
    """Client-streaming RPCs are not served in process (LocalChannel has no client streams;
    the gateway of `chatmesh dev` opens a stream per socket there)."""
    channel = system.channels.get(method.containing_service.full_name)
    return not method.client_streaming or hasattr(channel, "stream_stream")


async def refusals(
    system: System, credential: Callable[[Requirement], Metadata], expected: str
) -> dict[str, tuple[str, str]]:
    """The RPCs (applicable to this credential) that did not answer `expected`."""
    wrong: dict[str, tuple[str, str]] = {}
    for method in all_methods():
        rule = rule_of(method)
        if not served(system, method):
            continue
        if credential in (wrong_kind, forged_kind) and rule.kind is Kind.EITHER:
            continue  # either kind is right
        if credential is no_scope and rule.kind is Kind.USER:
            continue  # scopes concern service RPCs
        code, details = await call(system, method, credential(rule))
        if code != expected:
            wrong[method_path(method)] = (code, details)
    return wrong


@pytest.mark.parametrize("credential", [no_token, garbage, expired, forged_kind])
async def test_every_rpc_refuses_a_missing_or_bad_credential(
    system: System, credential: Callable[[Requirement], Metadata]
) -> None:
    """No token, a garbage one, an expired one and a forged kind are UNAUTHENTICATED."""
    assert await refusals(system, credential, "UNAUTHENTICATED") == {}


@pytest.mark.parametrize("credential", [wrong_kind, no_scope])
async def test_every_rpc_refuses_the_wrong_kind_of_credential(
    system: System, credential: Callable[[Requirement], Metadata]
) -> None:
    """A user token on an internal RPC, a service token acting as a user, or a service token
    without the scope: PERMISSION_DENIED."""
    assert await refusals(system, credential, "PERMISSION_DENIED") == {}


async def test_every_rpc_accepts_the_credential_it_requires(system: System) -> None:
    """The control: with the right credential no RPC is refused for its caller (empty requests
    may still be INVALID_ARGUMENT)."""
    refused = {}
    for method in all_methods():
        if not served(system, method):
            continue
        code, details = await call(system, method, right(rule_of(method)))
        if code in ("UNAUTHENTICATED", "PERMISSION_DENIED", "INTERNAL", "UNKNOWN"):
            refused[method_path(method)] = (code, details)
    assert refused == {}
