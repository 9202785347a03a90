"""Send one message over chatmesh's WebSocket edge and print the frames that come back.

    chatmesh dev &
    python examples/python/send.py --token "$(chatmesh token alice)" \
        --conversation CONVERSATION_ID --body hello

It needs only `websockets` (installed with chatmesh). The token rides in a subprotocol, never in
the URL. The ack answers the frame's requestId; the message's own event may come before it.
"""

import argparse
import asyncio
import json

import websockets


async def main(url: str, token: str, conversation_id: str, body: str) -> None:
    async with websockets.connect(url, subprotocols=["chatmesh.v1", f"bearer.{token}"]) as ws:
        print(await ws.recv())  # ready
        send = {"conversationId": conversation_id, "clientMsgId": "m-1", "body": body}
        await ws.send(json.dumps({"requestId": "1", "sendMessage": send}))
        while True:
            frame = await ws.recv()
            print(frame)
            if json.loads(frame).get("requestId") == "1":  # the ack, or an error frame
                break


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8080/v1/ws")
    parser.add_argument("--token", required=True)
    parser.add_argument("--conversation", required=True)
    parser.add_argument("--body", default="hello")
    args = parser.parse_args()
    asyncio.run(main(args.url, args.token, args.conversation, args.body))
