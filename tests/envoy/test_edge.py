"""The edge config in a real Envoy, in front of `chatmesh serve chat` (SQLite) and `chatmesh serve
gateway`: the config validates; gRPC (grpcurl, reflection), WebSocket sessions and gRPC-Web from
a browser-like client go through it, in plaintext and over TLS; internal services stay hidden."""

from __future__ import annotations

import asyncio
import json
import ssl
import struct
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from chatmesh.chat.v1 import chat_service_pb2 as pb
from chatmesh.chat.v1 import chat_service_pb2_grpc, types_pb2
from chatmesh.events.v1 import event_service_pb2, event_service_pb2_grpc

from chatmesh_common.auth import auth_metadata, issue_token
from tests.envoy.conftest import SECRET
from tests.gateway.client import GatewayClient
from tests.servers.envoy import EdgeStack, EnvoyProxy, TlsFiles, load_renderer
from tests.servers.grpcurl import grpcurl

pytestmark = [pytest.mark.envoy, pytest.mark.timeout(90)]

ENVOY_DIR = Path(__file__).resolve().parents[2] / "envoy"


async def _grpcurl(*args: str) -> tuple[int, str, str]:
    return await grpcurl(*args, marker="envoy")


def _grpc_web_frame(message: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(message)) + message


def _parse_grpc_web(body: bytes) -> tuple[list[bytes], dict[str, str]]:
    """The data frames and the trailers of a gRPC-Web response body."""
    messages: list[bytes] = []
    trailers: dict[str, str] = {}
    offset = 0
    while offset < len(body):
        flag = body[offset]
        (length,) = struct.unpack(">I", body[offset + 1 : offset + 5])
        payload = body[offset + 5 : offset + 5 + length]
        offset += 5 + length
        if flag & 0x80:
            for line in payload.decode().split("\r\n"):
                if line:
                    key, _, value = line.partition(":")
                    trailers[key.strip().lower()] = value.strip()
        else:
            messages.append(payload)
    return messages, trailers


def test_rendered_config_validates(tmp_path: Path, envoy_binary: str, tls_files: TlsFiles) -> None:
    """`envoy --mode validate` accepts the config rendered with test ports and certificates."""
    proxy = EnvoyProxy(envoy_binary, tmp_path, tls_files, chat=["127.0.0.1:50051"])
    result = proxy.validate()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


def test_checked_in_config_is_the_template_rendered_with_defaults() -> None:
    """envoy/envoy.yaml is exactly what `python envoy/render.py` writes (no drift)."""
    renderer = load_renderer()
    assert (ENVOY_DIR / "envoy.yaml").read_text() == renderer.render()


def test_ip_upstreams_are_static_and_names_are_resolved(
    tmp_path: Path, envoy_binary: str, tls_files: TlsFiles
) -> None:
    """Upstreams given as IP addresses make STATIC clusters; a name (a Kubernetes service)
    makes a STRICT_DNS cluster; both validate."""
    proxy = EnvoyProxy(
        envoy_binary,
        tmp_path,
        tls_files,
        chat=["127.0.0.1:50051", "127.0.0.2:50051"],
        gateway=["localhost:8080"],
    )
    text = proxy.render()
    chat = text[text.index("  - name: chat\n") :]
    gateway = text[text.index("  - name: gateway\n") :]
    assert "type: STATIC" in chat.split("- name: presence")[0]
    assert "type: STRICT_DNS" in gateway
    result = proxy.validate()
    assert result.returncode == 0, result.stdout + result.stderr


async def test_grpcurl_lists_services_and_creates_a_conversation(edge: EdgeStack) -> None:
    """Reflection and a ChatService call go through Envoy's plaintext listener over HTTP/2."""
    target = edge.envoy.plaintext_target
    code, out, err = await _grpcurl("-plaintext", target, "list")
    assert code == 0, err
    assert {"chatmesh.chat.v1.ChatService", "chatmesh.events.v1.EventService"} <= set(out.split())

    token = issue_token(SECRET, "alice")
    code, out, err = await _grpcurl(
        "-plaintext",
        "-H", f"authorization: Bearer {token}",
        "-d", '{"kind": "CONVERSATION_KIND_DIRECT", "memberIds": ["bob"]}',
        target,
        "chatmesh.chat.v1.ChatService/CreateConversation",
    )  # fmt: skip
    assert code == 0, err
    reply = json.loads(out)
    assert reply["conversation"]["peer_user_id"] == "bob"


async def test_access_service_is_not_exposed(edge: EdgeStack) -> None:
    """The internal AccessService is refused at the edge (Envoy answers, chat never sees it)."""
    code, _, err = await _grpcurl(
        "-plaintext",
        "-d", "{}",
        edge.envoy.plaintext_target,
        "chatmesh.chat.v1.AccessService/CheckMembership",
    )  # fmt: skip
    assert code != 0
    assert "Unimplemented" in err or "404" in err, err


async def test_websocket_session_through_envoy(edge: EdgeStack) -> None:
    """A socket upgraded through Envoy gets ready, and its own message comes back as an event."""
    client = await GatewayClient.connect(edge.envoy.ws_url, issue_token(SECRET, "alice"))
    try:
        assert client.ready is not None and client.ready.user_id == "alice"
        cid = await client.create_group("bob")
        await client.call("send_message", conversation_id=cid, client_msg_id="ws-1", body="hi")
        event = await client.next_event()
        while event.WhichOneof("payload") != "message_created":
            event = await client.next_event()
        assert event.message_created.message.body == "hi"
    finally:
        await client.close()


async def test_grpc_web_call_from_a_browser_like_client(edge: EdgeStack) -> None:
    """HTTP/1.1 POST of application/grpc-web+proto: CORS preflight allowed, the response frame
    decodes, and the trailers frame carries grpc-status 0."""
    url = f"{edge.envoy.http_url}/chatmesh.chat.v1.ChatService/CreateConversation"
    request = pb.CreateConversationRequest(
        kind=types_pb2.CONVERSATION_KIND_GROUP, title="web", member_ids=["bob"]
    )
    async with httpx.AsyncClient(http2=False, timeout=10) as http:
        preflight = await http.options(
            url,
            headers={
                "origin": "https://app.example",
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization,content-type,x-grpc-web",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"

        reply = await http.post(
            url,
            content=_grpc_web_frame(request.SerializeToString()),
            headers={
                "content-type": "application/grpc-web+proto",
                "x-grpc-web": "1",
                "origin": "https://app.example",
                "authorization": f"Bearer {issue_token(SECRET, 'alice')}",
            },
        )
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("application/grpc-web")
    assert "grpc-status" in reply.headers["access-control-expose-headers"]
    messages, trailers = _parse_grpc_web(reply.content)
    assert trailers.get("grpc-status") == "0", trailers
    [message] = messages
    created = pb.CreateConversationResponse.FromString(message)
    assert created.created
    assert created.conversation.conversation.title == "web"


async def test_grpc_over_tls_with_the_test_ca(edge: EdgeStack, tls_files: TlsFiles) -> None:
    """A gRPC client that trusts only the test CA calls ChatService through the TLS listener."""
    credentials = grpc.ssl_channel_credentials(root_certificates=tls_files.ca_pem)
    async with grpc.aio.secure_channel(edge.envoy.tls_target, credentials) as channel:
        reply = await chat_service_pb2_grpc.ChatServiceStub(channel).CreateConversation(
            pb.CreateConversationRequest(
                kind=types_pb2.CONVERSATION_KIND_DIRECT, member_ids=["carol"]
            ),
            metadata=auth_metadata(issue_token(SECRET, "alice")),
            timeout=10,
        )
    assert reply.conversation.peer_user_id == "carol"


async def test_grpcurl_over_tls_with_the_test_ca(edge: EdgeStack, tls_files: TlsFiles) -> None:
    """grpcurl verifies Envoy's certificate against the test CA and lists through reflection."""
    code, out, err = await _grpcurl(
        "-cacert", str(tls_files.ca_cert), edge.envoy.tls_target, "list"
    )
    assert code == 0, err
    assert "chatmesh.chat.v1.ChatService" in out.split()


async def test_websocket_over_tls_with_the_test_ca(edge: EdgeStack, tls_files: TlsFiles) -> None:
    """wss:// through Envoy's TLS listener, trusting only the test CA: ready, send, event."""
    context = ssl.create_default_context(cadata=tls_files.ca_pem.decode())
    client = await GatewayClient.connect(
        edge.envoy.wss_url, issue_token(SECRET, "dave"), ssl=context
    )
    try:
        cid = await client.create_group("erin")
        await client.call("send_message", conversation_id=cid, client_msg_id="tls-1", body="s")
        event = await client.next_event()
        while event.WhichOneof("payload") != "message_created":
            event = await client.next_event()
        assert event.message_created.message.body == "s"
    finally:
        await client.close()


async def test_a_plain_client_is_refused_by_the_tls_listener(edge: EdgeStack) -> None:
    """The TLS port speaks only TLS: a plaintext gRPC call there fails."""
    async with grpc.aio.insecure_channel(edge.envoy.tls_target) as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await chat_service_pb2_grpc.ChatServiceStub(channel).ListConversations(
                pb.ListConversationsRequest(),
                metadata=auth_metadata(issue_token(SECRET, "alice")),
                timeout=3,
            )


@pytest.fixture
def limited(
    tmp_path: Path, envoy_binary: str, tls_files: TlsFiles, edge: EdgeStack
) -> Iterator[EnvoyProxy]:
    """A second Envoy on the same upstreams whose per-client bucket holds 3 requests."""
    proxy = EnvoyProxy(
        envoy_binary,
        tmp_path / "limited",
        tls_files,
        chat=[edge.chat_target],
        gateway=[f"127.0.0.1:{edge.gateway_port}"],
        client_burst=3,
        client_per_second=1,
    )
    with proxy:
        proxy.wait_healthy("gateway", 1)
        yield proxy


async def test_rate_limit_is_per_client_address(limited: EnvoyProxy) -> None:
    """A client over its bucket gets 429 (gRPC: RESOURCE_EXHAUSTED); another address is not
    affected."""
    async with httpx.AsyncClient(timeout=5) as first:
        codes = [(await first.get(f"{limited.http_url}/healthz")).status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200]
    assert codes[3:] == [429, 429]

    async with grpc.aio.insecure_channel(limited.plaintext_target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await chat_service_pb2_grpc.ChatServiceStub(channel).ListConversations(
                pb.ListConversationsRequest(),
                metadata=auth_metadata(issue_token(SECRET, "alice")),
                timeout=5,
            )
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    other = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(transport=other, timeout=5) as second:
        assert (await second.get(f"{limited.http_url}/healthz")).status_code == 200


async def test_grpc_web_error_status_reaches_the_browser(edge: EdgeStack) -> None:
    """A gRPC-Web call without a token gets UNAUTHENTICATED (16) with its message, readable by
    a browser (in the exposed headers of a trailers-only answer, or the trailers frame)."""
    url = f"{edge.envoy.http_url}/chatmesh.chat.v1.ChatService/ListConversations"
    async with httpx.AsyncClient(timeout=10) as http:
        reply = await http.post(
            url,
            content=_grpc_web_frame(pb.ListConversationsRequest().SerializeToString()),
            headers={
                "content-type": "application/grpc-web+proto",
                "x-grpc-web": "1",
                "origin": "https://app.example",
            },
        )
    assert reply.status_code == 200
    _, trailers = _parse_grpc_web(reply.content)
    status = reply.headers.get("grpc-status") or trailers.get("grpc-status")
    message = reply.headers.get("grpc-message") or trailers.get("grpc-message")
    assert status == str(grpc.StatusCode.UNAUTHENTICATED.value[0])
    assert message


async def test_event_stream_through_envoy(edge: EdgeStack) -> None:
    """SubscribeEvents (server streaming, no route deadline) through Envoy: caught_up, then the
    live event of a message sent through Envoy too."""
    metadata = auth_metadata(issue_token(SECRET, "frank"))
    async with grpc.aio.insecure_channel(edge.envoy.plaintext_target) as channel:
        chat = chat_service_pb2_grpc.ChatServiceStub(channel)
        created = await chat.CreateConversation(
            pb.CreateConversationRequest(
                kind=types_pb2.CONVERSATION_KIND_GROUP, title="stream", member_ids=["gina"]
            ),
            metadata=metadata,
            timeout=10,
        )
        cid = created.conversation.conversation.conversation_id
        stream = event_service_pb2_grpc.EventServiceStub(channel).SubscribeEvents(
            event_service_pb2.SubscribeEventsRequest(device_id="test"), metadata=metadata
        )
        try:
            async with asyncio.timeout(10):
                first = await stream.read()
                assert isinstance(first, event_service_pb2.SubscribeEventsResponse)
                assert first.WhichOneof("item") == "caught_up"
                await chat.SendMessage(
                    pb.SendMessageRequest(conversation_id=cid, client_msg_id="s-1", body="live"),
                    metadata=metadata,
                    timeout=10,
                )
                while True:
                    item = await stream.read()
                    assert isinstance(item, event_service_pb2.SubscribeEventsResponse)
                    if item.event.WhichOneof("payload") == "message_created":
                        break
            assert item.event.message_created.message.body == "live"
        finally:
            stream.cancel()
