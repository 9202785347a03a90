"""Two chat_service replicas in cluster mode (a Cassandra keyspace standing in for ScyllaDB, NATS
JetStream) behind Envoy: one replica is SIGKILLed while sends keep coming, and no client sees an
error. Envoy retries a send that was in flight on the dead replica (or could not reach it) on the
other one, with the same client_msg_id, so the history holds every message exactly once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from chatmesh.chat.v1 import chat_service_pb2 as pb
from chatmesh.chat.v1 import chat_service_pb2_grpc, types_pb2

from chatmesh_common.auth import auth_metadata, issue_token
from tests.envoy.conftest import SECRET, SERVICE_SECRET
from tests.servers.cassandra import CassandraServer
from tests.servers.envoy import EnvoyProxy, TlsFiles
from tests.servers.nats import NatsServer
from tests.servers.ports import free_port
from tests.servers.services import ChatServiceProcess

pytestmark = [
    pytest.mark.envoy,
    pytest.mark.cql,
    pytest.mark.nats,
    pytest.mark.slow,
    pytest.mark.timeout(240),
]

MESSAGES = 60
SENDERS = 4


@dataclass
class Replicas:
    first: ChatServiceProcess
    second: ChatServiceProcess
    envoy: EnvoyProxy


@pytest.fixture
async def replicas(
    tmp_path: Path,
    cassandra_server: CassandraServer,
    nats_server: NatsServer,
    envoy_binary: str,
    tls_files: TlsFiles,
) -> AsyncIterator[Replicas]:
    """Two `chatmesh serve chat` replicas on one keyspace and one NATS, Envoy in front."""
    env = {
        "CHATMESH_MODE": "cluster",
        "CHATMESH_JWT_SECRET": SECRET,
        "CHATMESH_SERVICE_SECRET": SERVICE_SECRET,
        "CHATMESH_BUS": "nats",
        "CHATMESH_NATS_URLS": nats_server.url,
        "CHATMESH_STORE": "scylla",
        "CHATMESH_SCYLLA_CONTACT_POINTS": cassandra_server.host,
        "CHATMESH_SCYLLA_PORT": str(cassandra_server.port),
        "CHATMESH_SCYLLA_DC": cassandra_server.datacenter,
        "CHATMESH_SCYLLA_KEYSPACE": f"envoy_failover_{uuid.uuid4().hex[:12]}",
        "CHATMESH_SCYLLA_REPLICATION": "SimpleStrategy:1",
        "CHATMESH_SCYLLA_MIGRATE_ON_OPEN": "1",
    }
    first = ChatServiceProcess(env, tmp_path / "chat-1.log", free_port())
    second = ChatServiceProcess(env, tmp_path / "chat-2.log", free_port())
    proxy = EnvoyProxy(
        envoy_binary, tmp_path / "envoy", tls_files, chat=[first.target, second.target]
    )
    try:
        # One after the other: the second finds the migrations done, not half-claimed.
        await first.start(wait_s=90)
        await second.start(wait_s=90)
        await asyncio.to_thread(proxy.start)
        await asyncio.to_thread(proxy.wait_healthy, "chat", 2)
        yield Replicas(first, second, proxy)
    finally:
        await asyncio.to_thread(proxy.stop)
        await first.close()
        await second.close()


async def test_sends_survive_a_replica_killed_mid_traffic(replicas: Replicas) -> None:
    """SIGKILL one of two replicas during 60 sends from 4 concurrent senders through Envoy:
    every send succeeds, the history has exactly 60 messages with gapless seqs, and Envoy
    counts the retries it made."""
    metadata = auth_metadata(issue_token(SECRET, "alice"))
    async with grpc.aio.insecure_channel(replicas.envoy.plaintext_target) as channel:
        stub = chat_service_pb2_grpc.ChatServiceStub(channel)
        created = await stub.CreateConversation(
            pb.CreateConversationRequest(
                kind=types_pb2.CONVERSATION_KIND_GROUP, title="failover", member_ids=["bob"]
            ),
            metadata=metadata,
            timeout=30,
        )
        cid = created.conversation.conversation.conversation_id
        sent = 0
        kill_at = MESSAGES // 3
        killed = asyncio.Event()
        errors: list[str] = []

        async def sender(worker: int) -> None:
            nonlocal sent
            for i in range(worker, MESSAGES, SENDERS):
                try:
                    await stub.SendMessage(
                        pb.SendMessageRequest(
                            conversation_id=cid, client_msg_id=f"m-{i}", body=f"message {i}"
                        ),
                        metadata=metadata,
                        timeout=30,
                    )
                except grpc.aio.AioRpcError as exc:
                    errors.append(f"m-{i}: {exc.code().name} {exc.details()}")
                sent += 1
                if sent == kill_at:
                    killed.set()

        async def killer() -> None:
            await killed.wait()
            await replicas.first.kill()

        await asyncio.gather(killer(), *(sender(w) for w in range(SENDERS)))
        assert errors == [], f"{errors}\n{replicas.envoy.log_tail()}"

        history = await stub.GetHistory(
            pb.GetHistoryRequest(
                conversation_id=cid,
                limit=200,
                direction=pb.HISTORY_DIRECTION_FORWARD,
            ),
            metadata=metadata,
            timeout=30,
        )
    texts = [m for m in history.messages if m.kind == types_pb2.MESSAGE_KIND_TEXT]
    assert sorted(m.client_msg_id for m in texts) == sorted(f"m-{i}" for i in range(MESSAGES))
    seqs = [m.seq for m in history.messages]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
    assert len(texts) == MESSAGES
    # The dead replica is out of rotation; the survivor served the rest.
    await asyncio.to_thread(replicas.envoy.wait_healthy, "chat", 1)
    # The sends that met the dead replica (in flight, or routed there before its health
    # checks failed) were retried by Envoy, not by the client.
    assert replicas.envoy.stat("cluster.chat.upstream_rq_retry") >= 1
