"""The cluster store's messages held for review by the channel screen.

A held message is written first (its row and its queue entry), then claimed in `held_keys` with
an LWT on (conversation, sender, client_msg_id): the loser of a race (or a retry) removes what it
wrote and returns the winner's, so a send is held once. Deciding is an LWT on the row's state
(the first decision stays); the queue entry goes after it, and a listing trusts the row, so a
decider that stopped between the two is never seen.
"""

from __future__ import annotations

from typing import Any

from .. import extras
from ..base import HeldRecord, HeldState, NewMessage, NotFoundError
from .held_cql import QUEUE
from .session import CqlSession


def held_from_row(row: Any) -> HeldRecord:
    attachments, info, mentions = extras.decode(row.attachments)
    return HeldRecord(
        message=NewMessage(
            conversation_id=row.conversation_id,
            sender_id=row.sender_id,
            client_msg_id=row.client_msg_id,
            message_id=row.message_id,
            created_at=row.created_at,
            kind=row.kind,
            body=row.body or "",
            attachments=attachments,
            reply_to_seq=row.reply_to_seq or 0,
            attachment_info=info,
            mentions=mentions,
        ),
        reason=row.reason or "",
        held_at=row.held_at,
        state=HeldState(row.state),
        decided_by=row.decided_by or "",
    )


class Held:
    """The held-message operations of ScyllaChatStore."""

    def __init__(self, session: CqlSession) -> None:
        self._session = session

    async def hold_message(
        self, new: NewMessage, reason: str, at: float
    ) -> tuple[HeldRecord, bool]:
        run = self._session.run
        await run(
            "insert_held",
            (
                new.message_id,
                new.conversation_id,
                new.sender_id,
                new.client_msg_id,
                new.created_at,
                new.kind,
                new.body,
                extras.encode(new.attachments, new.attachment_info, new.mentions),
                new.reply_to_seq,
                reason,
                at,
                int(HeldState.PENDING),
            ),
        )
        await run("held_queue_add", (QUEUE, new.message_id))
        claim = await run(
            "claim_held_key",
            (new.conversation_id, new.sender_id, new.client_msg_id, new.message_id),
        )
        if claim[0][0]:
            record = await self.get_held(new.message_id)
            assert record is not None
            return record, True
        # Held before (or a concurrent duplicate won): ours goes, theirs stands.
        await run("held_queue_drop", (QUEUE, new.message_id))
        await run("drop_held_row", (new.message_id,))
        existing = await self.get_held(claim[0].message_id)
        if existing is None:
            raise NotFoundError(f"held message {claim[0].message_id} is claimed but missing")
        return existing, False

    async def get_held(self, message_id: str) -> HeldRecord | None:
        rows = await self._session.run("held", (message_id,))
        return held_from_row(rows[0]) if rows and rows[0].state is not None else None

    async def list_held(self, after_message_id: str, limit: int) -> list[HeldRecord]:
        found: list[HeldRecord] = []
        after = after_message_id
        while len(found) < limit:
            want = limit - len(found)
            rows = await self._session.run("held_queue_page", (QUEUE, after, want))
            ids = [r.message_id for r in rows]
            if not ids:
                break
            after = ids[-1]
            for message_id in ids:
                record = await self.get_held(message_id)
                if record is None or record.state != HeldState.PENDING:
                    # A duplicate's entry, or the queue lags a decision: tidy it.
                    await self._session.run("held_queue_drop", (QUEUE, message_id))
                    continue
                found.append(record)
            if len(ids) < want:
                break
        return found

    async def decide_held(self, message_id: str, state: HeldState, by: str) -> HeldRecord:
        result = await self._session.run(
            "decide_held", (int(state), by, message_id, int(HeldState.PENDING))
        )
        if not result[0][0] and getattr(result[0], "state", None) is None:
            raise NotFoundError(f"held message {message_id} not found")
        await self._session.run("held_queue_drop", (QUEUE, message_id))
        record = await self.get_held(message_id)
        if record is None:
            raise NotFoundError(f"held message {message_id} not found")
        return record
