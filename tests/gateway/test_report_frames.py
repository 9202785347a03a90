"""Reports over the WebSocket edge: the report_message and report_user frames reach
ChatService through the routing table, with its answers and refusals as frames."""

from __future__ import annotations

import pytest
from chatmesh.chat.v1 import types_pb2
from chatmesh.gateway.v1 import gateway_pb2

from gateway_ws.server import Gateway
from tests.gateway.client import GatewayClient, ServerError
from tests.gateway.conftest import Chat, GatewayFactory, token

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def edge(chat: Chat, gateway_factory: GatewayFactory) -> Gateway:
    return await gateway_factory(chat.target)


async def test_report_frames_answer_the_stored_report(edge: Gateway) -> None:
    """A member reports a message and a user; a repeat answers the first report as duplicate;
    a bad reason is an INVALID_ARGUMENT error frame naming the field."""
    alice = await GatewayClient.connect(edge.url, token("alice"))
    bob = await GatewayClient.connect(edge.url, token("bob"), binary=True)
    try:
        cid = await alice.create_group("bob")
        sent = await alice.call(
            "send_message", conversation_id=cid, client_msg_id="k1", body="buy now"
        )
        seq = sent.send_message.message.seq
        first = await bob.call(
            "report_message",
            conversation_id=cid,
            message_seq=seq,
            reason=types_pb2.REPORT_REASON_SPAM,
        )
        report = first.report_message.report
        assert (report.reporter_id, report.user_id, report.message_seq) == ("bob", "alice", seq)
        again = await bob.call(
            "report_message",
            conversation_id=cid,
            message_seq=seq,
            reason=types_pb2.REPORT_REASON_SPAM,
        )
        assert again.report_message.duplicate
        assert again.report_message.report.report_id == report.report_id
        user = await bob.call(
            "report_user", user_id="alice", reason=types_pb2.REPORT_REASON_HARASSMENT
        )
        assert user.report_user.report.user_id == "alice"
        with pytest.raises(ServerError) as refused:
            await bob.call("report_user", user_id="alice")
        assert refused.value.code == gateway_pb2.ERROR_CODE_INVALID_ARGUMENT
        assert "reason" in refused.value.message
    finally:
        await alice.close()
        await bob.close()
