"""The system under test: `chatmesh dev` in its own process, and what the bench reads from it.

`DevServer` starts `chatmesh dev` through the tests' process launcher (tests/servers/services.py)
on free ports with a temporary data dir, waits for gRPC health, and exposes the process's resident
memory and CPU time (from /proc), so a scenario can report memory per connection and the CPU split
between server and load generator.
`Admin` sets a scenario up (conversations, memberships) through the real gRPC API.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import grpc
from chatmesh.chat.v1 import chat_service_pb2 as pb
from chatmesh.chat.v1 import chat_service_pb2_grpc, types_pb2

from chatmesh_common.auth import auth_metadata, issue_token

# The launcher of chatmesh processes is shared with the tests (`tests.servers.services`).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.servers.ports import free_port
from tests.servers.services import ChatServiceProcess, DevProcess, GatewayProcess, ServiceProcess

__all__ = ["ChatServiceProcess", "GatewayProcess", "ServiceProcess", "free_port"]

SECRET = "bench-secret-of-at-least-thirty-two-bytes!"
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def raise_nofile(wanted: int) -> int:
    """Raises this process's soft RLIMIT_NOFILE towards `wanted` (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def token(user: str, device: str = "d0") -> str:
    return issue_token(SECRET, user, device, ttl_s=6 * 3600)


def proc_rss_bytes(pid: int) -> int:
    """VmRSS of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def proc_thread_cpu_seconds(pid: int) -> dict[int, tuple[str, float]]:
    """Per thread of a process: tid -> (thread name, user + system CPU seconds).

    Threads that end between the listing and the read are left out.
    """
    threads: dict[int, tuple[str, float]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        threads[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / _CLK_TCK)
    return threads


def proc_children(pid: int) -> list[int]:
    """The child processes of a process (dev's consumer worker)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children += (int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return children


class BenchServer(Protocol):
    """What a scenario asks of the system under test: `chatmesh dev`, or the local cluster."""

    @property
    def ws_url(self) -> str: ...

    @property
    def grpc_target(self) -> str: ...

    def start(self) -> None: ...

    def stop(self, grace_s: float = 20.0) -> None: ...

    def cpu_seconds(self) -> float: ...

    def rss_bytes(self) -> int: ...

    @property
    def pid(self) -> int:
        """The process whose threads `thread_cpu_seconds` splits (the one --profile samples)."""
        ...

    def thread_cpu_seconds(self) -> dict[int, tuple[str, float]]: ...

    def start_profile(self, output: Path, fmt: str = "raw", rate_hz: int = 200) -> None: ...

    def stop_profile(self) -> None: ...


class PySpy:
    """py-spy sampling one process until stopped (needs ptrace rights)."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, pid: int, output: Path, fmt: str = "raw", rate_hz: int = 200) -> None:
        """fmt "raw" writes collapsed stacks (one line per stack with its sample count), which
        `bench.report.summarize_profile` ranks and any flamegraph tool draws."""
        spy = Path(sys.executable).parent / "py-spy"
        self._process = subprocess.Popen(
            [str(spy), "record", "--pid", str(pid), "--rate", str(rate_hz),
             "--output", str(output), "--format", fmt, "--threads", "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
            self._process = None


class DevServer(DevProcess):
    """`chatmesh dev` (the tests' launcher) on free ports, sampled from /proc."""

    def __init__(self, data_dir: Path, **env: str) -> None:
        # The consumer worker's metrics (notify's) on a port known here.
        self.consumers_metrics_port = free_port()
        # Every load-generator socket comes from 127.0.0.1: no per-address socket cap.
        env = {
            "CHATMESH_WS_MAX_SOCKETS_PER_IP": "0",
            "CHATMESH_DEV_CONSUMERS_METRICS_BIND": f"127.0.0.1:{self.consumers_metrics_port}",
            **env,
        }
        super().__init__(data_dir, SECRET, log_path=data_dir.parent / "chatmesh-dev.log", **env)
        self._profiler = PySpy()

    @property
    def notify_metrics_port(self) -> int:
        """Where notify's metrics are: the worker's endpoint, or dev's with inline consumers."""
        setting = self.env.get("CHATMESH_DEV_CONSUMERS") or os.environ.get("CHATMESH_DEV_CONSUMERS")
        inline = setting == "inline"
        return self.metrics_port if inline else self.consumers_metrics_port

    def start_profile(self, output: Path, fmt: str = "raw", rate_hz: int = 200) -> None:
        self._profiler.start(self.pid, output, fmt, rate_hz)

    def stop_profile(self) -> None:
        self._profiler.stop()

    def rss_bytes(self) -> int:
        return proc_rss_bytes(self.pid)

    def cpu_seconds(self) -> float:
        """dev's process and its consumer worker."""
        total = proc_cpu_seconds(self.pid)
        for child in proc_children(self.pid):
            with contextlib.suppress(OSError):
                total += proc_cpu_seconds(child)
        return total

    def thread_cpu_seconds(self) -> dict[int, tuple[str, float]]:
        """dev's threads, and its children's named `consumers:<thread>` or `gateway:<thread>`."""
        threads = proc_thread_cpu_seconds(self.pid)
        for child in proc_children(self.pid):
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
                kind = "gateway" if b"dev_gateway" in cmdline else "consumers"
                for tid, (name, seconds) in proc_thread_cpu_seconds(child).items():
                    threads[tid] = (f"{kind}:{name}", seconds)
        return threads

    def stop(self, grace_s: float = 20.0) -> None:
        self.stop_profile()
        super().stop(grace_s)


class Admin:
    """Sets scenarios up through ChatService (gRPC, the same API the gateway calls)."""

    def __init__(self, target: str) -> None:
        self._channel = grpc.insecure_channel(
            target, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        )
        self._stub = chat_service_pb2_grpc.ChatServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def create(self, owner: str, members: Sequence[str], kind: str = "group") -> str:
        kinds = {
            "group": types_pb2.CONVERSATION_KIND_GROUP,
            "channel": types_pb2.CONVERSATION_KIND_CHANNEL,
        }
        reply = self._stub.CreateConversation(
            pb.CreateConversationRequest(
                kind=kinds[kind], title=f"bench {kind}", member_ids=list(members)
            ),
            metadata=auth_metadata(token(owner)),
            timeout=120,
        )
        conversation_id: str = reply.conversation.conversation.conversation_id
        return conversation_id

    def send(self, user: str, conversation_id: str, client_msg_id: str, body: str) -> int:
        reply = self._stub.SendMessage(
            pb.SendMessageRequest(
                conversation_id=conversation_id, client_msg_id=client_msg_id, body=body
            ),
            metadata=auth_metadata(token(user)),
            timeout=30,
        )
        seq: int = reply.message.seq
        return seq


async def seed_history(data_dir: Path, owner: str, messages: int, body_bytes: int) -> str:
    """Writes a conversation of `messages` messages through ChatStore, before the server starts.

    The same store code (group commit, seqs, outbox) as a send, minus the network: 100,000
    sends through the gateway would take a minute of a 2-core machine for no extra insight.
    The outbox is cleared so that the server's relay has nothing to replay at start.
    """
    import asyncio

    from chat_service.store.base import Kind, NewConversation, NewMessage, Role
    from chat_service.store.sqlite import SqliteChatStore
    from chatmesh_common.ids import new_id

    store = SqliteChatStore(data_dir / "chat.sqlite3")
    await store.open()
    try:
        now = time.time()
        conversation, _ = await store.create_conversation(
            NewConversation(
                conversation_id=new_id(now),
                kind=Kind.GROUP,
                title="history",
                created_by=owner,
                created_at=now,
                members=[(owner, Role.OWNER)],
            )
        )
        cid = conversation.conversation_id
        body = ("history " * (body_bytes // 8 + 1))[:body_bytes]
        chunk = 2000
        for start in range(0, messages, chunk):
            await asyncio.gather(
                *(
                    store.append_message(
                        NewMessage(
                            conversation_id=cid,
                            sender_id=owner,
                            client_msg_id=f"h{i}",
                            message_id=new_id(time.time()),
                            created_at=time.time(),
                            kind=1,
                            body=body,
                        )
                    )
                    for i in range(start, min(messages, start + chunk))
                )
            )
        entry = await store.outbox_entry(cid)
        if entry is not None:
            await store.clear_outbox([(cid, entry.up_to_seq)])
        return cid
    finally:
        await store.close()
