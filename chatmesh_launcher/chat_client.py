"""`chatmesh chat USER`: the terminal client's I/O around the pure ChatScreen.

One WebSocket to the gateway (token in the subprotocol, proto3 JSON text frames, as the web
client does) and stdin read by a thread (a blocking read cannot be cancelled, so the thread is a
daemon that dies with the process). Each typed line waits for the answers of the one before, so
`printf '/open 1\\nhello\\n' | chatmesh chat bob` runs in order; end of input is /quit.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TextIO

from chatmesh.gateway.v1 import gateway_pb2
from google.protobuf import json_format
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.typing import Subprotocol

from .chat_screen import ChatScreen, Update
from .terminal import CommandError, unreachable

URL_HELP = "--url or CHATMESH_WS_BIND names the gateway"
# How long a typed line waits for its answers before the next line is read anyway.
ANSWER_WAIT_S = 30.0
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ChatOptions:
    user: str
    url: str
    token: str
    history: int = 20


def encode(frame: gateway_pb2.ClientFrame) -> str:
    return json.dumps(json_format.MessageToDict(frame), separators=(",", ":"), ensure_ascii=False)


def decode(message: str | bytes) -> gateway_pb2.ServerFrame:
    frame = gateway_pb2.ServerFrame()
    if isinstance(message, bytes):
        frame.ParseFromString(message)
    else:
        # A newer gateway may send fields this client does not know yet.
        json_format.Parse(message, frame, ignore_unknown_fields=True)
    return frame


async def stdin_lines() -> AsyncIterator[str]:
    """Lines typed or piped into stdin, until its end."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line)
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=read, name="stdin", daemon=True).start()
    while (line := await queue.get()) is not None:
        yield line


class _Session:
    """Moves Updates between the screen, the terminal and the socket."""

    def __init__(self, screen: ChatScreen, ws: ClientConnection, out: TextIO) -> None:
        self.screen = screen
        self.ws = ws
        self.out = out
        # Set once signed in, while no request waits for its answer.
        self.settled = asyncio.Event()

    async def apply(self, update: Update) -> None:
        for line in update.lines:
            self.out.write(line + "\n")
        self.out.flush()
        for frame in update.frames:
            await self.ws.send(encode(frame))
        # Checked after the sends: an answer may have come in meanwhile.
        if self.screen.signed_in and not self.screen.busy:
            self.settled.set()
        else:
            self.settled.clear()

    async def read_socket(self) -> None:
        async for message in self.ws:
            await self.apply(self.screen.on_frame(decode(message)))

    async def read_input(self, lines: AsyncIterator[str]) -> None:
        await self.settled.wait()
        async for line in lines:
            update = self.screen.on_input(line)
            await self.apply(update)
            if update.quit:
                return
            try:
                await asyncio.wait_for(self.settled.wait(), ANSWER_WAIT_S)
            except TimeoutError:
                self.out.write("! no answer from the gateway yet\n")


async def chat(
    options: ChatOptions, lines: AsyncIterator[str] | None = None, out: TextIO = sys.stdout
) -> None:
    """Runs the client until /quit, the end of input or the socket's close."""
    subprotocols = [Subprotocol("chatmesh.v1"), Subprotocol(f"bearer.{options.token}")]
    try:
        ws = await connect(
            options.url,
            subprotocols=subprotocols,
            open_timeout=CONNECT_TIMEOUT_S,
            max_size=None,  # history pages may be large; the server bounds them
        )
    except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
        raise unreachable("the WebSocket gateway", options.url, str(exc), URL_HELP) from None
    session = _Session(ChatScreen(options.user, history=options.history), ws, out)
    async with ws:
        reader = asyncio.create_task(session.read_socket())
        typist = asyncio.create_task(session.read_input(lines or stdin_lines()))
        try:
            done, _ = await asyncio.wait({reader, typist}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, typist):
                task.cancel()
            await asyncio.gather(reader, typist, return_exceptions=True)
        if typist in done and typist.exception() is None:
            return  # the user left
        _socket_ended(reader, typist, ws)


def _socket_ended(
    reader: asyncio.Task[None], typist: asyncio.Task[None], ws: ClientConnection
) -> None:
    """The socket closed before the user left (an error of the socket's is the same): why."""
    for task in (reader, typist):
        error = None if task.cancelled() else task.exception()
        if error is not None and not isinstance(error, ConnectionClosed):
            raise error
    code = ws.close_code
    reason = ws.close_reason or "no reason given"
    raise CommandError(f"the gateway closed the connection ({code}: {reason})")
