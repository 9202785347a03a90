// The default transport: the global WebSocket (browsers, Node 22+; Node 20 with
// --experimental-websocket). Skipped where there is none.
import assert from "node:assert/strict";
import { test } from "node:test";

import { ChatmeshClient } from "../dist/index.js";
import { DevServer } from "./dev-server.mjs";

const hasGlobal = typeof globalThis.WebSocket === "function";

test("the global WebSocket is used when no transport is given", { skip: !hasGlobal && "no global WebSocket" }, async (t) => {
  const server = await DevServer.start();
  t.after(() => server.dispose());
  const alice = new ChatmeshClient({ url: server.url, token: server.token("alice") });
  const bob = new ChatmeshClient({ url: server.url, token: server.token("bob") });
  t.after(() => {
    alice.close();
    bob.close();
  });
  const got = [];
  bob.onMessage((m) => got.push(m.body));
  await Promise.all([alice.connect(), bob.connect()]);
  const created = await alice.createConversation({ title: "g", memberIds: ["bob"] });
  const cid = created.conversation.conversation.conversationId;
  await alice.sendMessage(cid, "over the global WebSocket");
  const deadline = Date.now() + 5000;
  while (got.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(got, ["over the global WebSocket"]);
});

test("without a global WebSocket or a transport the constructor says what to pass", { skip: hasGlobal && "a global WebSocket exists" }, () => {
  assert.throws(
    () => new ChatmeshClient({ url: "ws://127.0.0.1:1/v1/ws", token: "t" }),
    /pass one as the `webSocket` option/,
  );
});
