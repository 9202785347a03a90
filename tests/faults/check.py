"""What every fault run checks against the store, and the figures it reports.

After the load stopped and the devices caught up, the history is read back from chat_service:

* acknowledged-but-lost = 0: every ack names a stored message with its seq, sender and key;
* each key is stored once, and every stored message of the run was acknowledged (a key whose
  first try failed with a retryable status was retried with the same key until it was);
* every device saw every event of its conversations once after dropping repeats by seq, with no
  gap: seqs 1 .. the conversation's last seq, in order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chatmesh.chat.v1 import chat_service_pb2 as pb
from chatmesh.chat.v1 import types_pb2

from tests.bus_nats.cluster import Api, ChatProcess

from .load import LoadDriver


@dataclass(frozen=True)
class StoredConversation:
    last_seq: int
    messages: dict[int, types_pb2.Message]


async def read_conversation(
    chat: ChatProcess, reader: str, conversation_id: str
) -> StoredConversation:
    """The conversation's last seq and every message, read forward page by page."""
    api = Api(chat, reader)
    stub: Any = api.stub
    view = await stub.GetConversation(
        pb.GetConversationRequest(conversation_id=conversation_id), metadata=api.md, timeout=15
    )
    messages: dict[int, types_pb2.Message] = {}
    after = 0
    while True:
        page = await stub.GetHistory(
            pb.GetHistoryRequest(
                conversation_id=conversation_id,
                after_seq=after,
                limit=200,
                direction=pb.HISTORY_DIRECTION_FORWARD,
            ),
            metadata=api.md,
            timeout=15,
        )
        for message in page.messages:
            messages[int(message.seq)] = message
        if not page.has_more or not page.messages:
            break
        after = int(page.messages[-1].seq)
    return StoredConversation(int(view.conversation.conversation.last_seq), messages)


@dataclass(frozen=True)
class Figures:
    """One line per run: what was sent, what was lost, how long recovery took."""

    fault: str
    devices: int
    acked: int
    lost: int
    gaps: int
    retries: int
    deduped: int
    reconnects: int
    repeats: int
    recover_s: float
    load_s: float
    extra: Mapping[str, float] = field(default_factory=dict)

    def line(self) -> str:
        more = "".join(f" {k}={_number(v)}" for k, v in self.extra.items())
        return (
            f"{self.fault}: devices={self.devices} acked={self.acked} lost={self.lost}"
            f" gaps={self.gaps} retries={self.retries} deduped={self.deduped}"
            f" reconnects={self.reconnects}"
            f" repeats={self.repeats} recover_s={self.recover_s:.1f} load_s={self.load_s:.1f}"
            f"{more}"
        )


def _number(value: float) -> str:
    """A count as a count (pushes=340), a duration with one decimal (back_s=1.5)."""
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def verify(
    fault: str,
    driver: LoadDriver,
    store: Mapping[str, StoredConversation],
    recover_s: float,
    load_s: float,
    extra: Mapping[str, float],
) -> tuple[Figures, list[str]]:
    """The run's figures, and every broken promise found (empty: the run passed)."""
    problems: list[str] = []
    acks = driver.acks()
    lost = 0
    for ack in acks:
        message = store[ack.conversation_id].messages.get(ack.seq)
        if message is None or (message.sender_id, message.client_msg_id) != (
            ack.user,
            ack.client_msg_id,
        ):
            lost += 1
            problems.append(f"acked {ack} is not stored as such: {message}")
    stored_keys = Counter(
        (cid, m.sender_id, m.client_msg_id) for cid, c in store.items() for m in c.messages.values()
    )
    twice = [key for key, n in stored_keys.items() if n > 1]
    problems += [f"stored more than once: {key}" for key in twice]
    acked_keys = {(a.conversation_id, a.user, a.client_msg_id) for a in acks}
    unacked = set(stored_keys) - acked_keys
    problems += [f"stored but never acknowledged: {key}" for key in sorted(unacked)]
    gaps = 0
    for device in driver.devices:
        for cid in device.conversations:
            seen = device.seen[cid]
            gaps += len(seen.gaps)
            expected = list(range(1, store[cid].last_seq + 1))
            if seen.seqs != expected:
                missing = sorted(set(expected) - set(seen.seqs))
                problems.append(
                    f"{device.name} in {cid}: gaps {seen.gaps}, missing {missing[:20]},"
                    f" saw up to {seen.last} of {store[cid].last_seq}"
                )
    figures = Figures(
        fault=fault,
        devices=len(driver.devices),
        acked=len(acks),
        lost=lost,
        gaps=gaps,
        retries=sum(d.retries for d in driver.devices),
        deduped=sum(a.duplicate for a in acks),
        reconnects=sum(d.reconnects for d in driver.devices),
        repeats=sum(s.duplicates for d in driver.devices for s in d.seen.values()),
        recover_s=recover_s,
        load_s=load_s,
        extra=dict(extra),
    )
    return figures, problems
