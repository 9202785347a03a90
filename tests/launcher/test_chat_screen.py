"""`chatmesh chat`'s screen without a socket: typed lines become frames, frames become lines."""

from __future__ import annotations

import itertools

import pytest
from chatmesh.chat.v1 import types_pb2
from chatmesh.events.v1 import events_pb2
from chatmesh.gateway.v1 import gateway_pb2
from chatmesh.presence.v1 import presence_service_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from chatmesh_launcher.chat_screen import ChatScreen, Update

CID = "01M8XRQSV6DGY7JJVQ84WY7E4H"
OTHER = "01M8XRQSZZZZZZZZZZZZZZZZZZ"


def _screen() -> ChatScreen:
    ids = (f"m{n}" for n in itertools.count(1))
    return ChatScreen("bob", history=5, new_id=lambda: next(ids))


def _only_frame(update: Update) -> gateway_pb2.ClientFrame:
    assert len(update.frames) == 1, update.frames
    return update.frames[0]


def _view(
    cid: str, peer: str = "", unread: int = 0, kind: int = types_pb2.CONVERSATION_KIND_DIRECT
) -> types_pb2.ConversationView:
    view = types_pb2.ConversationView(peer_user_id=peer, unread_count=unread)
    view.conversation.conversation_id = cid
    view.conversation.kind = kind  # type: ignore[assignment]
    return view


def _message(cid: str, seq: int, sender: str, body: str) -> types_pb2.Message:
    return types_pb2.Message(
        conversation_id=cid,
        seq=seq,
        sender_id=sender,
        body=body,
        created_at=Timestamp(seconds=1_780_000_000),
    )


def _answer(request: gateway_pb2.ClientFrame, **fields: object) -> gateway_pb2.ServerFrame:
    return gateway_pb2.ServerFrame(request_id=request.request_id, **fields)  # type: ignore[arg-type]


def _listed(screen: ChatScreen, *views: types_pb2.ConversationView) -> Update:
    ready = screen.on_frame(
        gateway_pb2.ServerFrame(ready=gateway_pb2.Ready(user_id="bob", device_id="chat"))
    )
    request = _only_frame(ready)
    assert request.WhichOneof("frame") == "list_conversations"
    answer = _answer(request)
    answer.list_conversations.conversations.extend(views)
    return screen.on_frame(answer)


def _opened(screen: ChatScreen, *messages: types_pb2.Message) -> Update:
    """Lists alice's direct conversation, opens it and answers its history."""
    _listed(screen, _view(CID, "alice", unread=len(messages)))
    update = screen.on_input("/open 1")
    history = next(f for f in update.frames if f.WhichOneof("frame") == "get_history")
    answer = _answer(history)
    answer.get_history.messages.extend(sorted(messages, key=lambda m: -m.seq))  # newest first
    return screen.on_frame(answer)


def _event(cid: str, seq: int = 0, **payload: object) -> gateway_pb2.ServerFrame:
    event = events_pb2.ConversationEvent(conversation_id=cid, seq=seq, **payload)  # type: ignore[arg-type]
    return gateway_pb2.ServerFrame(event=event)


def test_the_list_numbers_conversations_and_shows_unread_counts() -> None:
    screen = _screen()
    update = _listed(screen, _view(CID, "alice", unread=3), _view(OTHER, "carol"))
    assert update.lines[0].split() == ["1", "alice", "[direct]", "(3", "unread)", CID]
    assert update.lines[1].split() == ["2", "carol", "[direct]", OTHER]
    # The people in them are watched, so their presence can be shown.
    watch = _only_frame(update)
    assert list(watch.presence_subscribe.user_ids) == ["alice", "carol"]


def test_opening_shows_history_oldest_first_and_marks_it_read() -> None:
    screen = _screen()
    update = _opened(screen, _message(CID, 1, "alice", "hi"), _message(CID, 2, "alice", "there?"))
    assert update.lines[0] == "--- alice (direct) ---"
    assert [line.split(" ", 1)[1] for line in update.lines[1:]] == ["alice: hi", "alice: there?"]
    read = _only_frame(update)
    assert (read.mark_read.conversation_id, read.mark_read.seq) == (CID, 2)


def test_open_accepts_a_number_an_id_or_the_other_user() -> None:
    for which in ("1", CID, "alice"):
        screen = _screen()
        _listed(screen, _view(CID, "alice"))
        frames = screen.on_input(f"/open {which}").frames
        assert frames[0].get_history.conversation_id == CID
        assert frames[0].get_history.limit == 5
        assert screen.open_id == CID


def test_a_line_is_sent_to_the_open_conversation() -> None:
    screen = _screen()
    _opened(screen)
    frame = _only_frame(screen.on_input("hello alice\n"))
    assert frame.send_message.conversation_id == CID
    assert frame.send_message.body == "hello alice"
    assert frame.send_message.client_msg_id == "m1"
    assert screen.busy


def test_a_line_with_no_open_conversation_says_what_to_do_and_sends_nothing() -> None:
    update = _screen().on_input("hello")
    assert update.frames == []
    assert "/open" in update.lines[0]


def test_the_ack_and_the_event_of_a_send_print_once() -> None:
    screen = _screen()
    _opened(screen)
    send = _only_frame(screen.on_input("hi"))
    mine = _message(CID, 3, "bob", "hi")
    ack = _answer(send)
    ack.send_message.message.CopyFrom(mine)
    assert len(screen.on_frame(ack).lines) == 1
    created = events_pb2.MessageCreated(message=mine)
    assert screen.on_frame(_event(CID, 3, message_created=created)).lines == []


def test_a_message_in_the_open_conversation_prints_and_is_marked_read() -> None:
    screen = _screen()
    _opened(screen)
    created = events_pb2.MessageCreated(message=_message(CID, 4, "alice", "lunch?"))
    update = screen.on_frame(_event(CID, 4, message_created=created))
    assert update.lines[0].endswith("alice: lunch?")
    assert _only_frame(update).mark_read.seq == 4


def test_a_message_elsewhere_is_labelled_and_counts_as_unread() -> None:
    screen = _screen()
    _listed(screen, _view(CID, "alice"), _view(OTHER, "carol"))
    created = events_pb2.MessageCreated(message=_message(OTHER, 1, "carol", "psst"))
    update = screen.on_frame(_event(OTHER, 1, message_created=created))
    assert update.lines[0].startswith("[carol] ")
    assert update.frames == []
    assert screen.conversations[OTHER].unread == 1


def _typing(user: str, at: int, typing: bool = True) -> gateway_pb2.ServerFrame:
    signal = events_pb2.TypingChanged(
        user_id=user, typing=typing, expires_at=Timestamp(seconds=at + 6)
    )
    return _event(CID, occurred_at=Timestamp(seconds=at), actor_id=user, typing_changed=signal)


def test_typing_shows_once_per_signal_until_it_expires() -> None:
    screen = _screen()
    _opened(screen)
    assert screen.on_frame(_typing("alice", 100)).lines == ["* alice is typing..."]
    assert screen.on_frame(_typing("alice", 103)).lines == []  # a renewal
    assert screen.on_frame(_typing("alice", 120)).lines == ["* alice is typing..."]  # expired
    assert screen.on_frame(_typing("alice", 121, typing=False)).lines == []
    assert screen.on_frame(_typing("alice", 122)).lines == ["* alice is typing..."]
    assert screen.on_frame(_typing("bob", 122)).lines == []  # one's own


def _presence(user: str, state: int) -> gateway_pb2.ServerFrame:
    presence = presence_service_pb2.UserPresence(user_id=user, state=state)  # type: ignore[arg-type]
    return gateway_pb2.ServerFrame(presence_event=presence)


def test_presence_changes_are_shown_and_repeats_are_not() -> None:
    screen = _screen()
    _opened(screen)
    online, offline = (
        presence_service_pb2.PRESENCE_STATE_ONLINE,
        presence_service_pb2.PRESENCE_STATE_OFFLINE,
    )
    assert screen.on_frame(_presence("alice", offline)).lines == []  # the first state known
    assert screen.on_frame(_presence("alice", online)).lines == ["* alice is online"]
    assert screen.on_frame(_presence("alice", online)).lines == []
    assert screen.on_input("/who").lines == ["* alice is online"]


def test_new_group_creates_one_with_the_users_named() -> None:
    frame = _only_frame(_screen().on_input("/new group alice carol"))
    request = frame.create_conversation
    assert request.kind == types_pb2.CONVERSATION_KIND_GROUP
    assert list(request.member_ids) == ["alice", "carol"]
    assert request.title == "bob, alice, carol"


def test_creating_opens_the_new_conversation() -> None:
    screen = _screen()
    create = _only_frame(screen.on_input("/new direct alice"))
    assert create.create_conversation.kind == types_pb2.CONVERSATION_KIND_DIRECT
    answer = _answer(create)
    answer.create_conversation.conversation.CopyFrom(_view(CID, "alice"))
    update = screen.on_frame(answer)
    assert screen.open_id == CID
    assert update.frames[0].get_history.conversation_id == CID


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("/new direct alice carol", "usage: /new direct USER"),
        ("/open", "usage: /open"),
        ("/frobnicate", "unknown command /frobnicate"),
        ("/open 7", "no conversation 7"),
    ],
)
def test_a_bad_command_says_why_and_sends_nothing(line: str, says: str) -> None:
    update = _screen().on_input(line)
    assert update.frames == []
    assert says in update.lines[0]


def test_an_error_answer_is_one_line_and_ends_the_wait() -> None:
    screen = _screen()
    request = _only_frame(screen.on_input("/open 01UNKNOWN"))
    error = gateway_pb2.Error(code=gateway_pb2.ERROR_CODE_PERMISSION_DENIED, message="not a member")
    assert screen.on_frame(_answer(request, error=error)).lines == [
        "! PERMISSION_DENIED: not a member"
    ]
    assert not screen.busy
    assert screen.open_id is None


def test_quit_and_help() -> None:
    screen = _screen()
    assert screen.on_input("/quit").quit
    assert any("/new group" in line for line in screen.on_input("/help").lines)
