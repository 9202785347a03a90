// The client against a real `chatmesh dev` started by the test (see dev-server.mjs).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import WebSocket from "ws";

import { ChatmeshClient, ChatmeshError, ErrorCode, HistoryDirection } from "../dist/index.js";
import { DevServer } from "./dev-server.mjs";

const pkg = join(dirname(fileURLToPath(import.meta.url)), "..");
const hasGlobalWebSocket = typeof globalThis.WebSocket === "function";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(predicate, timeoutMs = 10_000, what = "condition") {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await sleep(10);
  }
}

describe("ChatmeshClient against chatmesh dev", () => {
  let server;
  const clients = [];

  function connect(user, options = {}) {
    const client = new ChatmeshClient({
      url: server.url,
      token: server.token(user, { deviceId: options.deviceId ?? "d1" }),
      webSocket: WebSocket,
      requestTimeoutMs: 5_000,
      reconnect: { initialDelayMs: 50, maxDelayMs: 500 },
      ...options,
    });
    clients.push(client);
    return client;
  }

  /** Messages a client receives, as [conversation, seq, body]. */
  function inbox(client) {
    const got = [];
    client.onMessage((m, e) => got.push([e.conversationId, Number(e.seq), m.body]));
    return got;
  }

  before(async () => {
    server = await DevServer.start();
  });

  after(async () => {
    for (const c of clients) c.close();
    await server?.dispose();
  });

  test("two clients exchange messages, typing and read receipts", async () => {
    const alice = connect("alice");
    const bob = connect("bob");
    const aliceInbox = inbox(alice);
    const bobInbox = inbox(bob);
    const typing = [];
    bob.onTyping((s) => typing.push([s.userId, s.typing]));
    await Promise.all([alice.connect(), bob.connect()]);
    assert.equal(alice.ready.userId, "alice");

    const created = await alice.createConversation({ title: "pair", memberIds: ["bob"] });
    const cid = created.conversation.conversation.conversationId;
    const sent = await alice.sendMessage(cid, "hi bob");
    assert.equal(sent.message.seq, 1n);
    assert.equal(sent.duplicate, false);
    await until(() => bobInbox.length === 1, 5_000, "bob receives");
    assert.deepEqual(bobInbox, [[cid, 1, "hi bob"]]);

    await bob.sendMessage(cid, "hi alice");
    await until(() => aliceInbox.length === 2, 5_000, "alice receives");
    assert.deepEqual(aliceInbox, [
      [cid, 1, "hi bob"],
      [cid, 2, "hi alice"],
    ]);

    const expires = await alice.typing(cid, true);
    assert.ok(expires instanceof Date);
    await until(() => typing.length === 1, 5_000, "bob sees alice typing");
    assert.deepEqual(typing, [["alice", true]]);

    const read = await bob.markRead(cid, 2);
    assert.equal(read.lastReadSeq, 2n);

    const page = await bob.getHistory({
      conversationId: cid,
      direction: HistoryDirection.FORWARD,
    });
    assert.deepEqual(
      page.messages.map((m) => m.body),
      ["hi bob", "hi alice"],
    );
    const members = await bob.allMembers(cid);
    assert.deepEqual(members.map((m) => m.userId).sort(), ["alice", "bob"]);
    const list = await bob.listConversations();
    assert.ok(list.conversations.some((v) => v.conversation.conversationId === cid));
    const presences = await bob.presenceSubscribe(["alice"]);
    assert.equal(presences[0].userId, "alice");
  });

  test("a retried send with the same idempotency key is stored once", async () => {
    const alice = connect("alice");
    const created = await alice.createConversation({ title: "idem", memberIds: ["bob"] });
    const cid = created.conversation.conversation.conversationId;
    const first = await alice.sendMessage(cid, "once", { clientMsgId: "fixed-key-1" });
    const again = await alice.sendMessage(cid, "once", { clientMsgId: "fixed-key-1" });
    assert.equal(again.duplicate, true);
    assert.equal(again.message.seq, first.message.seq);
  });

  test("an empty body is refused with ChatmeshError INVALID_ARGUMENT", async () => {
    const alice = connect("alice");
    const created = await alice.createConversation({ title: "bad", memberIds: ["bob"] });
    const cid = created.conversation.conversation.conversationId;
    await assert.rejects(alice.sendMessage(cid, ""), (err) => {
      assert.ok(err instanceof ChatmeshError, String(err));
      assert.equal(err.code, ErrorCode.INVALID_ARGUMENT);
      assert.equal(err.codeName, "INVALID_ARGUMENT");
      assert.equal(err.local, false);
      assert.ok(err.message.length > 0);
      return true;
    });
    // The socket stays usable.
    assert.ok((await alice.ping()) >= 0);
  });

  test("binary encoding works the same", async () => {
    const alice = connect("alice", { encoding: "binary", deviceId: "bin" });
    const created = await alice.createConversation({ title: "bin", memberIds: ["bob"] });
    const cid = created.conversation.conversation.conversationId;
    const got = inbox(alice);
    await alice.sendMessage(cid, "in binary");
    await until(() => got.length === 1, 5_000, "own message event");
    assert.deepEqual(got, [[cid, 1, "in binary"]]);
  });

  test("a request the server does not answer in time rejects with DEADLINE_EXCEEDED", async () => {
    const alice = connect("alice", { deviceId: "slow" });
    await alice.connect();
    server.pause();
    try {
      await assert.rejects(alice.ping({ timeoutMs: 300 }), (err) => {
        assert.ok(err instanceof ChatmeshError);
        assert.equal(err.code, ErrorCode.DEADLINE_EXCEEDED);
        assert.equal(err.local, true);
        return true;
      });
    } finally {
      server.resume();
    }
    assert.ok((await alice.ping()) >= 0);
  });

  test("after the server restarts, the client resumes with no gap and no duplicate", async () => {
    // alice's connections can be held back, so that bob writes while she is away.
    let gateOpen = true;
    const gatedFactory = (url, protocols) => {
      if (gateOpen) return new WebSocket(url, protocols);
      return new WebSocket(`ws://127.0.0.1:9/closed`, protocols); // refused at once
    };
    const alice = connect("alice", { deviceId: "gap", webSocket: gatedFactory });
    const bob = connect("bob", { deviceId: "gap" });
    const got = inbox(alice);
    const dups = [];
    alice.on("duplicate", (e) => dups.push(Number(e.seq)));
    await Promise.all([alice.connect(), bob.connect()]);
    const created = await alice.createConversation({ title: "gap", memberIds: ["bob"] });
    const cid = created.conversation.conversation.conversationId;
    for (const body of ["m1", "m2"]) await bob.sendMessage(cid, body);
    await until(() => got.length === 2, 5_000, "alice has m1, m2");

    const drops = [];
    alice.on("disconnected", (d) => drops.push(d.code));
    gateOpen = false;
    await server.restart();
    await until(() => drops.length > 0, 5_000, "alice sees the close");
    assert.equal(drops[0], 1001);

    // bob reconnects by himself and writes while alice cannot connect.
    for (const body of ["m3", "m4", "m5"]) await bob.sendMessage(cid, body);
    assert.notEqual(alice.state, "open");
    const resumed = new Promise((r) => alice.once("resumed", r));
    gateOpen = true;
    await resumed;
    await until(() => got.length >= 5, 5_000, "alice has m3..m5");
    // And live events still flow after the replay.
    await bob.sendMessage(cid, "m6");
    await until(() => got.length >= 6, 5_000, "alice has m6");
    await sleep(100);
    assert.deepEqual(
      got.map(([c, seq, body]) => [c === cid, seq, body]),
      ["m1", "m2", "m3", "m4", "m5", "m6"].map((b, i) => [true, i + 1, b]),
    );
    assert.deepEqual(dups, []);
    assert.equal(alice.cursor(cid), 6n);
  });

  test("a new client resumes from stored cursors", async () => {
    const alice = connect("alice", { deviceId: "store" });
    const created = await alice.createConversation({ title: "stored", memberIds: ["bob"] });
    const cid = created.conversation.conversation.conversationId;
    for (const body of ["a", "b", "c"]) await alice.sendMessage(cid, body);
    alice.close();
    const later = connect("alice", { deviceId: "store", cursors: { [cid]: 1n } });
    const got = inbox(later);
    await new Promise((r) => {
      later.once("resumed", r);
      void later.connect();
    });
    await until(() => got.length === 2, 5_000, "replay of b, c");
    assert.deepEqual(got, [
      [cid, 2, "b"],
      [cid, 3, "c"],
    ]);
  });

  test(
    "the global WebSocket is used when no transport is given",
    { skip: !hasGlobalWebSocket && "no global WebSocket" },
    async () => {
      const alice = connect("alice", { webSocket: undefined, deviceId: "global" });
      const bob = connect("bob", { webSocket: undefined, deviceId: "global" });
      const got = inbox(bob);
      await Promise.all([alice.connect(), bob.connect()]);
      const created = await alice.createConversation({ title: "global", memberIds: ["bob"] });
      const cid = created.conversation.conversation.conversationId;
      await alice.sendMessage(cid, "over the global WebSocket");
      await until(() => got.length === 1, 5_000, "bob receives");
      assert.deepEqual(got, [[cid, 1, "over the global WebSocket"]]);
    },
  );

  test("a refused token fails connect() with UNAUTHENTICATED; a refresher recovers", async () => {
    const forged = server.token("alice").replace(/\.[^.]+$/, ".AAAA");
    const refused = connect("alice", { token: forged, deviceId: "forged" });
    await assert.rejects(refused.connect(), (err) => {
      assert.ok(err instanceof ChatmeshError);
      assert.equal(err.code, ErrorCode.UNAUTHENTICATED);
      return true;
    });
    const refreshed = connect("alice", {
      token: forged,
      deviceId: "forged",
      refreshToken: () => server.token("alice", { deviceId: "forged" }),
    });
    assert.equal((await refreshed.connect()).userId, "alice");
  });

  test("a token about to expire is replaced on the open socket", async () => {
    let refreshes = 0;
    const drops = [];
    const alice = connect("alice", {
      token: server.token("alice", { deviceId: "short", ttlS: 3 }),
      deviceId: "short",
      refreshToken: () => {
        refreshes++;
        return server.token("alice", { deviceId: "short", ttlS: 3600 });
      },
    });
    alice.on("disconnected", (d) => drops.push(d.code));
    await alice.connect();
    await sleep(3_500); // past the first token's expiry
    assert.equal(refreshes, 1);
    assert.ok((await alice.ping()) >= 0);
    assert.deepEqual(drops, []);
  });

  test("sends over the rate limit wait and are all stored once", async () => {
    const alice = connect("alice", { deviceId: "burst" });
    const created = await alice.createConversation({ title: "burst", memberIds: ["bob"] });
    const cid = created.conversation.conversation.conversationId;
    const answers = await Promise.all(
      Array.from({ length: 60 }, (_, i) => alice.sendMessage(cid, `n${i}`)),
    );
    const seqs = answers.map((a) => Number(a.message.seq)).sort((a, b) => a - b);
    assert.deepEqual(seqs, Array.from({ length: 60 }, (_, i) => i + 1));
    assert.ok(answers.every((a) => !a.duplicate));
  });

  test("the README example runs", async () => {
    const readme = readFileSync(join(pkg, "README.md"), "utf8");
    const match = readme.match(/```js\n([\s\S]*?)```/);
    assert.ok(match, "a js block in README.md");
    const code = match[1].replace("ws://127.0.0.1:8080/v1/ws", server.url);
    // Inside the package, so that "@chatmesh/client" resolves to this package itself.
    const file = join(pkg, "test", `.readme-example-${process.pid}.mjs`);
    writeFileSync(file, code);
    try {
      const { stdout } = await promisify(execFile)(
        process.execPath,
        [file, server.token("alice", { deviceId: "readme" }), server.token("bob", { deviceId: "readme" })],
        { timeout: 20_000 },
      );
      assert.match(stdout, /stored as seq 1/);
      assert.match(stdout, /bob got #1 from alice: noon\?/);
      assert.match(stdout, /alice is typing/);
      assert.match(stdout, /refused: /);
    } finally {
      rmSync(file, { force: true });
    }
  });
});
