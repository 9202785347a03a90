"""The checks of a fault run catch what they promise to: a lost ack, a key stored twice, a gap."""

from __future__ import annotations

import pytest
from chatmesh.chat.v1 import types_pb2

from .check import StoredConversation, verify
from .load import Ack, Device, LoadDriver

pytestmark = [pytest.mark.faults]

CID = "c1"


def _driver(acked_seqs: list[int], seen: list[int]) -> LoadDriver:
    device = Device("alice", "phone", [CID], ["ws://unused"])
    for n, seq in enumerate(acked_seqs, 1):
        device.acks.append(Ack(device.name, "alice", CID, f"k{n}", seq, 1, 0.0, 0.0))
    for seq in seen:
        device.seen[CID].record(seq)
    return LoadDriver([device], interval_s=1.0)


def _store(*keys: str, last_seq: int | None = None) -> dict[str, StoredConversation]:
    messages = {
        seq: types_pb2.Message(seq=seq, sender_id="alice", client_msg_id=key)
        for seq, key in enumerate(keys, 1)
    }
    return {CID: StoredConversation(last_seq or len(keys), messages)}


def _check(driver: LoadDriver, store: dict[str, StoredConversation]) -> tuple[int, int, int]:
    figures, problems = verify("test", driver, store, 0.0, 0.0, {})
    return figures.lost, figures.gaps, len(problems)


def test_a_clean_run_has_no_problem() -> None:
    """Every ack stored, every seq seen once: nothing to report."""
    assert _check(_driver([1, 2], [1, 2, 2]), _store("k1", "k2")) == (0, 0, 0)


def test_an_acknowledged_message_missing_from_the_store_is_lost() -> None:
    """An ack whose seq holds another key (or nothing) counts as lost."""
    lost, _gaps, problems = _check(_driver([1, 2], [1, 2]), _store("k1", "other"))
    assert lost == 1 and problems >= 1


def test_a_key_stored_twice_is_a_problem() -> None:
    """A retry that stored a second copy breaks idempotency."""
    _lost, _gaps, problems = _check(_driver([1], [1, 2]), _store("k1", "k1"))
    assert problems >= 1


def test_a_jump_in_seqs_is_a_gap() -> None:
    """A device that saw 1 then 3 has a gap, even if the store has all three."""
    lost, gaps, problems = _check(_driver([1, 2, 3], [1, 3]), _store("k1", "k2", "k3"))
    assert (lost, gaps) == (0, 1) and problems == 1
