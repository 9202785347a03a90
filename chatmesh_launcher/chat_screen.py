"""What `chatmesh chat` shows and sends: pure code, no I/O.

`ChatScreen` keeps what the terminal client knows (the user's conversations with their unread
counts, the open one, who is typing, the presence of the people in them) and turns each typed
line and each server frame into an `Update`: lines to print and frames to send. The asyncio loop
in chat_client.py only moves them between the terminal and the socket.

Every request is remembered by its request id until its answer (or error) arrives; the loop
waits for that before it reads the next typed line, so a script piped into stdin runs in order.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from chatmesh.chat.v1 import chat_service_pb2, types_pb2
from chatmesh.events.v1 import events_pb2
from chatmesh.gateway.v1 import gateway_pb2
from chatmesh.presence.v1 import presence_service_pb2
from google.protobuf.timestamp_pb2 import Timestamp

ClientFrame = gateway_pb2.ClientFrame
ServerFrame = gateway_pb2.ServerFrame

HELP = """\
commands:
  /list                       your conversations, with unread counts
  /open N|ID|USER             open one: its number in /list, its id, or the other user
  /new direct USER            start (or reopen) a direct conversation with USER
  /new group USER [USER...]   start a group with these users
  /who                        presence of the open conversation's members
  /help                       this list
  /quit                       leave (Ctrl-D and Ctrl-C too)
any other line is sent to the open conversation"""

MAX_TITLE_CHARS = 100

_KIND: dict[int, str] = {
    types_pb2.CONVERSATION_KIND_DIRECT: "direct",
    types_pb2.CONVERSATION_KIND_GROUP: "group",
    types_pb2.CONVERSATION_KIND_CHANNEL: "channel",
}
_STATE: dict[int, str] = {
    presence_service_pb2.PRESENCE_STATE_ONLINE: "online",
    presence_service_pb2.PRESENCE_STATE_AWAY: "away",
    presence_service_pb2.PRESENCE_STATE_OFFLINE: "offline",
}
_MEMBERSHIP: dict[int, str] = {
    events_pb2.MEMBERSHIP_CHANGE_ADDED: "joined",
    events_pb2.MEMBERSHIP_CHANGE_REMOVED: "was removed",
    events_pb2.MEMBERSHIP_CHANGE_LEFT: "left",
    events_pb2.MEMBERSHIP_CHANGE_ROLE_CHANGED: "changed role",
}


@dataclass
class Update:
    """What one input line or server frame leads to."""

    lines: list[str] = field(default_factory=list)
    frames: list[ClientFrame] = field(default_factory=list)
    quit: bool = False

    def extend(self, other: Update) -> None:
        self.lines += other.lines
        self.frames += other.frames
        self.quit = self.quit or other.quit


@dataclass
class Conversation:
    """One conversation as the user sees it."""

    conversation_id: str
    kind: int
    title: str = ""
    peer: str = ""
    unread: int = 0
    members: list[str] = field(default_factory=list)

    def label(self) -> str:
        if self.kind == types_pb2.CONVERSATION_KIND_DIRECT and self.peer:
            return self.peer
        return self.title or f"{_KIND.get(self.kind, 'conversation')} {self.conversation_id[:8]}"


def message_line(message: types_pb2.Message, marker: str = "") -> str:
    """`HH:MM sender: body` (local time), with a marker for edits and a placeholder for deletes."""
    at = _clock(message.created_at)
    if message.deleted:
        return f"{at} {message.sender_id}: (deleted)"
    body = message.body
    if message.attachments:
        body = f"{body} [{len(message.attachments)} attachment(s)]".strip()
    return f"{at} {message.sender_id}{marker}: {body}"


def _clock(stamp: Timestamp) -> str:
    return datetime.fromtimestamp(stamp.seconds, UTC).astimezone().strftime("%H:%M")


def _error_line(error: gateway_pb2.Error) -> str:
    code = gateway_pb2.ErrorCode.Name(error.code).removeprefix("ERROR_CODE_")
    return f"! {code}: {error.message}"


class ChatScreen:
    """The terminal client's state; `on_input` and `on_frame` return what to print and send."""

    def __init__(
        self,
        user_id: str,
        *,
        history: int = 20,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self.user_id = user_id
        self.history = history
        # Set by `ready`: typed lines wait for it.
        self.signed_in = False
        self.conversations: dict[str, Conversation] = {}
        self.open_id: str | None = None
        # The order /list showed, so `/open 2` means its second line.
        self._listed: list[str] = []
        # request_id -> what the request was for (and the conversation it concerns).
        self._pending: dict[str, tuple[str, str]] = {}
        self._request_ids = (f"c{n}" for n in itertools.count(1))
        self._new_id = new_id
        # (conversation_id, seq) of messages printed: the ack and the event of a send are one.
        self._shown: set[tuple[str, int]] = set()
        self.presence: dict[str, int] = {}
        self._watched: set[str] = set()
        # (conversation_id, user_id) -> when their typing signal expires (epoch seconds).
        self._typing: dict[tuple[str, str], float] = {}

    @property
    def busy(self) -> bool:
        """A request is waiting for its answer."""
        return bool(self._pending)

    # -- typed lines ------------------------------------------------------------------------

    def on_input(self, line: str) -> Update:
        text = line.rstrip("\r\n")
        if not text.strip():
            return Update()
        if not text.startswith("/"):
            return self._send(text)
        command, *args = text.split()
        if command == "/quit":
            return Update(quit=True)
        if command == "/help":
            return Update(lines=HELP.splitlines())
        if command == "/list":
            return self._request("list", "", list_conversations=_list_request())
        if command == "/open" and len(args) == 1:
            return self._open(args[0])
        if command == "/new" and len(args) >= 2 and args[0] in ("direct", "group"):
            return self._new(args[0], args[1:])
        if command == "/who":
            return self._who()
        if command in ("/open", "/new"):
            usage = "/open N|ID|USER" if command == "/open" else "/new direct|group USER..."
            return Update(lines=[f"! usage: {usage}"])
        return Update(lines=[f"! unknown command {command}; /help lists them"])

    def _send(self, text: str) -> Update:
        if self.open_id is None:
            return Update(lines=["! no open conversation: /open one (/list shows them)"])
        request = chat_service_pb2.SendMessageRequest(
            conversation_id=self.open_id, client_msg_id=self._new_id(), body=text
        )
        return self._request("send", self.open_id, send_message=request)

    def _open(self, which: str) -> Update:
        conversation = self._find(which)
        if conversation is not None:
            return self._show(conversation)
        if which.isdigit():
            return Update(lines=[f"! no conversation {which} in the last /list"])
        # Maybe an id this client has not listed yet; the server says whether it is ours.
        request = chat_service_pb2.GetConversationRequest(conversation_id=which)
        return self._request("get", which, get_conversation=request)

    def _find(self, which: str) -> Conversation | None:
        if which.isdigit() and 1 <= int(which) <= len(self._listed):
            return self.conversations.get(self._listed[int(which) - 1])
        if which in self.conversations:
            return self.conversations[which]
        for conversation in self.conversations.values():
            if which in (conversation.peer, conversation.title):
                return conversation
        return None

    def _show(self, conversation: Conversation) -> Update:
        """Opens the conversation: its recent history, then its members' presence."""
        self.open_id = conversation.conversation_id
        history = chat_service_pb2.GetHistoryRequest(
            conversation_id=conversation.conversation_id,
            limit=self.history,
            direction=chat_service_pb2.HISTORY_DIRECTION_BACKWARD,
        )
        update = self._request("history", conversation.conversation_id, get_history=history)
        update.extend(self._watch([conversation.peer]))
        if conversation.kind != types_pb2.CONVERSATION_KIND_DIRECT:
            members = chat_service_pb2.ListMembersRequest(
                conversation_id=conversation.conversation_id
            )
            update.extend(
                self._request("members", conversation.conversation_id, list_members=members)
            )
        return update

    def _new(self, kind: str, users: list[str]) -> Update:
        if kind == "direct" and len(users) != 1:
            return Update(lines=["! usage: /new direct USER (one other user)"])
        request = chat_service_pb2.CreateConversationRequest(
            kind=types_pb2.CONVERSATION_KIND_DIRECT
            if kind == "direct"
            else types_pb2.CONVERSATION_KIND_GROUP,
            title="" if kind == "direct" else ", ".join([self.user_id, *users])[:MAX_TITLE_CHARS],
            member_ids=users,
        )
        return self._request("create", "", create_conversation=request)

    def _who(self) -> Update:
        conversation = self.conversations.get(self.open_id or "")
        if conversation is None:
            return Update(lines=["! no open conversation: /open one (/list shows them)"])
        others = [u for u in self._people(conversation) if u != self.user_id]
        if not others:
            return Update(lines=["* nobody else here yet"])
        return Update(lines=[f"* {user} is {self._state(user)}" for user in others])

    # -- server frames ----------------------------------------------------------------------

    def on_frame(self, frame: ServerFrame) -> Update:
        kind = frame.WhichOneof("frame")
        if frame.request_id:
            what, cid = self._pending.pop(frame.request_id, ("", ""))
            if kind == "error":
                return self._failed(what, cid, frame.error)
            return self._answered(what, cid, frame)
        if kind == "ready":
            return self._ready(frame.ready)
        if kind == "event":
            return self._event(frame.event)
        if kind == "presence_event":
            return self._presence_changed(frame.presence_event)
        if kind == "error":
            return Update(lines=[_error_line(frame.error)])
        return Update()

    def _ready(self, ready: gateway_pb2.Ready) -> Update:
        self.signed_in = True
        update = Update(
            lines=[f"signed in as {ready.user_id} ({ready.device_id}); /help lists the commands"]
        )
        update.extend(self._request("list", "", list_conversations=_list_request()))
        return update

    def _failed(self, what: str, cid: str, error: gateway_pb2.Error) -> Update:
        if what in ("history", "get") and self.open_id == cid:
            self.open_id = None
        if what == "watch":
            # Presence is best effort (a gateway without presence_service refuses it).
            return Update()
        return Update(lines=[_error_line(error)])

    def _answered(self, what: str, cid: str, frame: ServerFrame) -> Update:
        if what == "list":
            return self._listed_conversations(frame.list_conversations.conversations)
        if what in ("get", "create"):
            view = (
                frame.get_conversation.conversation
                if what == "get"
                else frame.create_conversation.conversation
            )
            return self._show(self._remember(view))
        if what == "history":
            return self._history(cid, frame.get_history.messages)
        if what == "members":
            conversation = self.conversations.get(cid)
            if conversation is not None:
                conversation.members = [m.user_id for m in frame.list_members.members]
                return self._watch(conversation.members)
        if what == "send":
            return self._message(frame.send_message.message)
        if what == "watch":
            for presence in frame.presence_subscribe.presences:
                self.presence[presence.user_id] = presence.state
        return Update()

    def _remember(self, view: types_pb2.ConversationView) -> Conversation:
        info = view.conversation
        conversation = self.conversations.get(info.conversation_id)
        if conversation is None:
            conversation = self.conversations[info.conversation_id] = Conversation(
                info.conversation_id, info.kind
            )
        conversation.title = info.title
        conversation.peer = view.peer_user_id
        conversation.unread = view.unread_count
        return conversation

    def _listed_conversations(self, views: Iterable[types_pb2.ConversationView]) -> Update:
        self._listed = [self._remember(view).conversation_id for view in views]
        if not self._listed:
            return Update(lines=["no conversations yet: /new direct USER starts one"])
        lines = []
        for number, cid in enumerate(self._listed, 1):
            conversation = self.conversations[cid]
            unread = f"  ({conversation.unread} unread)" if conversation.unread else ""
            kind = _KIND.get(conversation.kind, "?")
            lines.append(f"{number:>3}  {conversation.label()}  [{kind}]{unread}  {cid}")
        update = Update(lines=lines)
        peers = [self.conversations[c].peer for c in self._listed if self.conversations[c].peer]
        update.extend(self._watch(peers))
        return update

    def _history(self, cid: str, messages: Iterable[types_pb2.Message]) -> Update:
        conversation = self.conversations.get(cid)
        if conversation is None or self.open_id != cid:
            return Update()
        # The page is newest first; a terminal reads top to bottom.
        page = sorted(messages, key=lambda m: m.seq)
        update = Update(lines=[f"--- {conversation.label()} ({_KIND.get(conversation.kind)}) ---"])
        if not page:
            update.lines.append("(no messages yet)")
        for message in page:
            self._shown.add((cid, message.seq))
            update.lines.append(message_line(message))
        if page and conversation.unread:
            update.extend(self._mark_read(cid, page[-1].seq))
        conversation.unread = 0
        return update

    def _message(self, message: types_pb2.Message) -> Update:
        """A new message, from an ack or an event, printed once."""
        key = (message.conversation_id, message.seq)
        if key in self._shown:
            return Update()
        self._shown.add(key)
        conversation = self.conversations.get(message.conversation_id)
        # The typer sent what they typed.
        self._typing.pop((message.conversation_id, message.sender_id), None)
        if message.conversation_id == self.open_id:
            update = Update(lines=[message_line(message)])
            if message.sender_id != self.user_id:
                update.extend(self._mark_read(message.conversation_id, message.seq))
            return update
        label = conversation.label() if conversation else message.conversation_id[:8]
        if conversation is not None and message.sender_id != self.user_id:
            conversation.unread += 1
        return Update(lines=[f"[{label}] {message_line(message)}"])

    def _event(self, event: events_pb2.ConversationEvent) -> Update:
        payload = event.WhichOneof("payload")
        cid = event.conversation_id
        is_open = cid == self.open_id
        if payload == "message_created":
            return self._message(event.message_created.message)
        if payload == "message_edited" and is_open:
            return Update(lines=[message_line(event.message_edited.message, " (edited)")])
        if payload == "message_deleted" and is_open:
            return Update(lines=[message_line(event.message_deleted.message)])
        if payload == "membership_changed" and is_open:
            change = event.membership_changed
            return Update(lines=[f"* {change.user_id} {_MEMBERSHIP.get(change.change, '?')}"])
        if payload == "conversation_created":
            info = event.conversation_created.conversation
            if cid in self.conversations or event.actor_id == self.user_id:
                # Known, or created by this user (the create answer opens it).
                return Update()
            conversation = self.conversations[cid] = Conversation(cid, info.kind, info.title)
            if info.kind == types_pb2.CONVERSATION_KIND_DIRECT and info.created_by != self.user_id:
                conversation.peer = info.created_by
            return Update(lines=[f"* new conversation: {conversation.label()} (/open {cid})"])
        if payload == "conversation_updated" and cid in self.conversations:
            self.conversations[cid].title = event.conversation_updated.conversation.title
        if payload == "typing_changed" and is_open:
            return self._typing_changed(cid, event)
        return Update()

    def _typing_changed(self, cid: str, event: events_pb2.ConversationEvent) -> Update:
        signal = event.typing_changed
        if signal.user_id == self.user_id:
            return Update()
        key = (cid, signal.user_id)
        now = event.occurred_at.ToNanoseconds() / 1e9
        was_typing = self._typing.get(key, 0.0) > now
        if not signal.typing:
            self._typing.pop(key, None)
            return Update()
        self._typing[key] = signal.expires_at.ToNanoseconds() / 1e9
        # A renewal of a signal still showing is not news.
        return Update() if was_typing else Update(lines=[f"* {signal.user_id} is typing..."])

    def _presence_changed(self, presence: presence_service_pb2.UserPresence) -> Update:
        before = self.presence.get(presence.user_id)
        self.presence[presence.user_id] = presence.state
        if before is None or before == presence.state or presence.user_id == self.user_id:
            return Update()
        return Update(lines=[f"* {presence.user_id} is {self._state(presence.user_id)}"])

    # -- helpers ----------------------------------------------------------------------------

    def _request(self, what: str, cid: str, **frame: object) -> Update:
        request_id = next(self._request_ids)
        self._pending[request_id] = (what, cid)
        return Update(frames=[ClientFrame(request_id=request_id, **frame)])  # type: ignore[arg-type]

    def _mark_read(self, cid: str, seq: int) -> Update:
        request = chat_service_pb2.MarkReadRequest(conversation_id=cid, seq=seq)
        return self._request("read", cid, mark_read=request)

    def _watch(self, users: Iterable[str]) -> Update:
        new = sorted({u for u in users if u and u != self.user_id} - self._watched)
        if not new:
            return Update()
        self._watched.update(new)
        request = gateway_pb2.PresenceSubscribeRequest(user_ids=new)
        return self._request("watch", "", presence_subscribe=request)

    def _people(self, conversation: Conversation) -> list[str]:
        if conversation.members:
            return conversation.members
        return [conversation.peer] if conversation.peer else []

    def _state(self, user: str) -> str:
        return _STATE.get(self.presence.get(user, 0), "unknown")


def _list_request() -> chat_service_pb2.ListConversationsRequest:
    return chat_service_pb2.ListConversationsRequest(page_size=50)
