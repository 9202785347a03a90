// The client's own logic against an in-memory transport: de-duplication, resume cursors,
// retries with the same idempotency key, timeouts, error mapping, token refresh.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  ChatmeshClient,
  ChatmeshError,
  ErrorCode,
  MessageKind,
  timestampDate,
  timestampMs,
} from "../dist/index.js";
import { FakeGateway, messageEvent } from "./fake-gateway.mjs";

function client(gateway, options = {}) {
  return new ChatmeshClient({
    url: "ws://fake/v1/ws",
    token: "t1",
    webSocket: gateway.factory,
    reconnect: { initialDelayMs: 5, maxDelayMs: 20, jitter: false },
    keepaliveMs: 0,
    ...options,
  });
}

test("events are delivered once per (conversation, seq); seq-0 signals always", async (t) => {
  const gw = new FakeGateway();
  const c = client(gw);
  t.after(() => c.close());
  await c.connect();
  const seen = [];
  const dups = [];
  c.onMessage((m, e) => seen.push(`${e.conversationId}:${e.seq}:${m.body}`));
  c.on("duplicate", (e) => dups.push(`${e.conversationId}:${e.seq}`));
  const typing = [];
  c.onTyping((s) => typing.push(`${s.userId}:${s.typing}`));
  const s = gw.current;
  for (const seq of [1, 2, 2, 1, 3]) s.push(messageEvent("c1", seq));
  s.push(messageEvent("c2", 1));
  const signal = {
    event: { conversationId: "c1", actorId: "bob", typingChanged: { userId: "bob", typing: true } },
  };
  s.push(signal);
  s.push(signal);
  await gw.until(() => seen.length === 4 && typing.length === 2);
  assert.deepEqual(seen, ["c1:1:m1", "c1:2:m2", "c1:3:m3", "c2:1:m1"]);
  assert.deepEqual(dups, ["c1:2", "c1:1"]);
  assert.deepEqual(typing, ["bob:true", "bob:true"]);
  assert.deepEqual(c.cursors(), new Map([["c1", 3n], ["c2", 1n]]));
});

test("a reconnection resumes from the last seq seen in each conversation", async (t) => {
  const gw = new FakeGateway();
  const c = client(gw, { cursors: { c9: 7 } });
  t.after(() => c.close());
  await c.connect();
  assert.deepEqual(gw.resumes[0], [{ conversationId: "c9", seq: "7" }]);
  const seen = [];
  c.onMessage((_m, e) => seen.push(Number(e.seq)));
  gw.current.push(messageEvent("c1", 1));
  gw.current.push(messageEvent("c1", 2));
  await gw.until(() => seen.length === 2);
  const states = [];
  c.onStateChange((s) => states.push(s));
  gw.current.drop(1001);
  await gw.until(() => gw.resumes.length === 2);
  assert.deepEqual(
    [...gw.resumes[1]].sort((a, b) => a.conversationId.localeCompare(b.conversationId)),
    [
      { conversationId: "c1", seq: "2" },
      { conversationId: "c9", seq: "7" },
    ],
  );
  await gw.until(() => c.state === "open");
  assert.deepEqual(states, ["reconnecting", "open"]);
  // The replay overlaps what was seen: only the new event comes through.
  for (const seq of [2, 3]) gw.current.push(messageEvent("c1", seq));
  await gw.until(() => seen.length === 3);
  assert.deepEqual(seen, [1, 2, 3]);
});

test("a send in flight when the socket drops is sent again with the same idempotency key", async (t) => {
  const gw = new FakeGateway();
  const sends = [];
  gw.onRequest = (socket, frame) => {
    if (!frame.sendMessage) return;
    sends.push(frame.sendMessage.clientMsgId);
    if (sends.length === 1) socket.drop(1006, "");
    else
      socket.answer(frame, {
        sendMessage: { message: { seq: "5", clientMsgId: frame.sendMessage.clientMsgId } },
      });
  };
  const c = client(gw);
  t.after(() => c.close());
  await c.connect();
  const answer = await c.sendMessage("c1", "hi");
  assert.equal(sends.length, 2);
  assert.equal(sends[0], sends[1]);
  assert.match(sends[0], /^[0-9a-f-]{32,36}$/);
  assert.equal(answer.message.seq, 5n);
  assert.equal(answer.message.clientMsgId, sends[0]);
});

test("a rate-limited send waits retry_after_ms and retries with the same key", async (t) => {
  const gw = new FakeGateway();
  const sends = [];
  gw.onRequest = (socket, frame) => {
    sends.push([Date.now(), frame.sendMessage.clientMsgId]);
    if (sends.length === 1) {
      socket.answer(frame, {
        error: { code: "ERROR_CODE_RESOURCE_EXHAUSTED", message: "slow down", retryAfterMs: 80 },
      });
    } else {
      socket.answer(frame, { sendMessage: { message: { seq: "1" } } });
    }
  };
  const c = client(gw);
  t.after(() => c.close());
  const answer = await c.sendMessage("c1", "hi", { clientMsgId: "k1" });
  assert.equal(answer.message.seq, 1n);
  assert.deepEqual(sends.map((s) => s[1]), ["k1", "k1"]);
  assert.ok(sends[1][0] - sends[0][0] >= 70, "waited for retry_after_ms");
});

test("a send with attachments is a media message unless its kind is given", async (t) => {
  const gw = new FakeGateway();
  const kinds = [];
  gw.onRequest = (socket, frame) => {
    kinds.push(frame.sendMessage.kind);
    socket.answer(frame, { sendMessage: { message: { seq: String(kinds.length) } } });
  };
  const c = client(gw);
  t.after(() => c.close());
  await c.sendMessage("c1", "hi");
  await c.sendMessage("c1", "", { attachments: ["m1"] });
  await c.sendMessage("c1", "caption", { attachments: ["m2"], kind: MessageKind.TEXT });
  assert.deepEqual(kinds, ["MESSAGE_KIND_TEXT", "MESSAGE_KIND_MEDIA", "MESSAGE_KIND_TEXT"]);
});

test("timestamps of answers convert to dates and milliseconds", async (t) => {
  const gw = new FakeGateway();
  gw.onRequest = (socket, frame) =>
    socket.answer(frame, {
      sendMessage: { message: { seq: "1", createdAt: "2026-03-01T10:00:00.250Z" } },
    });
  const c = client(gw);
  t.after(() => c.close());
  const { message } = await c.sendMessage("c1", "hi");
  assert.equal(timestampMs(message.createdAt), Date.parse("2026-03-01T10:00:00.250Z"));
  assert.equal(timestampDate(message.createdAt).toISOString(), "2026-03-01T10:00:00.250Z");
});

test("a request that is not safe to repeat fails with UNAVAILABLE when the socket drops", async (t) => {
  const gw = new FakeGateway();
  gw.onRequest = (socket) => socket.drop(1006, "");
  const c = client(gw);
  t.after(() => c.close());
  await c.connect();
  await assert.rejects(c.editMessage("c1", 1, "x"), (err) => {
    assert.ok(err instanceof ChatmeshError);
    assert.equal(err.code, ErrorCode.UNAVAILABLE);
    assert.equal(err.local, true);
    return true;
  });
});

test("error frames become ChatmeshError with code, message and retryAfterMs", async (t) => {
  const gw = new FakeGateway();
  gw.onRequest = (socket, frame) =>
    socket.answer(frame, {
      error: { code: "ERROR_CODE_RESOURCE_EXHAUSTED", message: "typing too fast", retryAfterMs: 400 },
    });
  const c = client(gw);
  t.after(() => c.close());
  await assert.rejects(c.typing("c1"), (err) => {
    assert.ok(err instanceof ChatmeshError);
    assert.equal(err.code, ErrorCode.RESOURCE_EXHAUSTED);
    assert.equal(err.codeName, "RESOURCE_EXHAUSTED");
    assert.equal(err.message, "typing too fast");
    assert.equal(err.retryAfterMs, 400);
    assert.equal(err.local, false);
    assert.match(err.requestId, /^r\d+$/);
    return true;
  });
});

test("an unanswered request times out with DEADLINE_EXCEEDED", async (t) => {
  const gw = new FakeGateway();
  const c = client(gw);
  t.after(() => c.close());
  await c.connect();
  const started = Date.now();
  await assert.rejects(c.listConversations({}, { timeoutMs: 50 }), (err) => {
    assert.equal(err.code, ErrorCode.DEADLINE_EXCEEDED);
    assert.equal(err.local, true);
    return true;
  });
  assert.ok(Date.now() - started >= 45);
  // A late answer is ignored.
  const frame = gw.current.frames.find((f) => f.listConversations);
  gw.current.answer(frame, { listConversations: {} });
});

test("requests made before the connection is up wait for it", async (t) => {
  const gw = new FakeGateway();
  gw.onRequest = (socket, frame) => socket.answer(frame, { pong: {} });
  const c = client(gw);
  t.after(() => c.close());
  const rtt = await c.ping();
  assert.ok(rtt >= 0);
  assert.equal(c.state, "open");
});

test("a refused token is refreshed and the connection retried", async (t) => {
  const gw = new FakeGateway();
  gw.acceptToken = (token) => token === "fresh";
  let refreshes = 0;
  const c = client(gw, {
    token: "stale",
    refreshToken: async () => {
      refreshes++;
      return "fresh";
    },
  });
  t.after(() => c.close());
  await c.connect();
  assert.equal(refreshes, 1);
  assert.deepEqual(gw.tokens, ["stale", "fresh"]);
});

test("a refused token with no way to refresh it fails connect()", async () => {
  const gw = new FakeGateway();
  gw.acceptToken = () => false;
  const c = client(gw);
  await assert.rejects(c.connect(), (err) => err.code === ErrorCode.UNAUTHENTICATED);
  assert.equal(c.state, "closed");
});

test("close() cancels pending requests", async () => {
  const gw = new FakeGateway();
  const c = client(gw);
  await c.connect();
  const pending = c.getHistory({ conversationId: "c1" });
  c.close();
  await assert.rejects(pending, (err) => err.code === ErrorCode.CANCELLED);
});

test("presence subscriptions are renewed after a reconnection", async (t) => {
  const gw = new FakeGateway();
  const subscribes = [];
  gw.onRequest = (socket, frame) => {
    if (frame.presenceSubscribe) {
      subscribes.push(frame.presenceSubscribe.userIds);
      socket.answer(frame, {
        presenceSubscribe: {
          presences: frame.presenceSubscribe.userIds.map((userId) => ({
            userId,
            state: "PRESENCE_STATE_ONLINE",
          })),
        },
      });
    }
  };
  const c = client(gw);
  t.after(() => c.close());
  const now = await c.presenceSubscribe(["bob", "carol"]);
  assert.deepEqual(now.map((p) => p.userId), ["bob", "carol"]);
  const pushed = [];
  c.onPresence((p) => pushed.push(p.userId));
  gw.current.drop(1001);
  await gw.until(() => pushed.length === 2);
  assert.deepEqual(subscribes, [["bob", "carol"], ["bob", "carol"]]);
});

test("a token about to expire is refreshed on the open socket", async (t) => {
  const gw = new FakeGateway();
  const jwt = (expS) =>
    `e30.${Buffer.from(JSON.stringify({ sub: "u", exp: expS })).toString("base64url")}.sig`;
  const first = jwt(Math.floor(Date.now() / 1000) + 2);
  const second = jwt(Math.floor(Date.now() / 1000) + 3600);
  const c = client(gw, { token: first, refreshToken: async () => second });
  t.after(() => c.close());
  await c.connect();
  await gw.until(() => gw.tokens.length === 2, 3000);
  assert.deepEqual(gw.tokens, [first, second]);
  assert.equal(gw.sockets.length, 1, "no reconnection");
});

test(
  "without a global WebSocket or a transport the constructor says what to pass",
  { skip: typeof globalThis.WebSocket === "function" && "a global WebSocket exists" },
  () => {
    assert.throws(
      () => new ChatmeshClient({ url: "ws://127.0.0.1:1/v1/ws", token: "t" }),
      /pass one as the `webSocket` option/,
    );
  },
);

test("a malformed URL fails connect() at once", async () => {
  const c = new ChatmeshClient({
    url: "not a url",
    token: "t",
    webSocket: (url) => {
      throw new SyntaxError(`Invalid URL: ${url}`); // as browsers and ws do
    },
  });
  await assert.rejects(c.connect(), (err) => err.code === ErrorCode.UNAVAILABLE);
  assert.equal(c.state, "closed");
});
