// A terminal chat on @chatmesh/client: joins (or creates) a conversation with other users,
// prints what arrives (also what was sent while it was reconnecting) and sends each line typed.
//
//   chatmesh dev &                                   # ws://127.0.0.1:8080/v1/ws
//   node chat.mjs --token "$(chatmesh token alice)" --with bob
//   node chat.mjs --token "$(chatmesh token bob)" --with alice      # in another terminal
//
// Options: --url (default ws://127.0.0.1:8080/v1/ws), --token (or CHATMESH_TOKEN), --with USER
// (repeatable; a direct conversation with one user, a group with several), --title.
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import WebSocket from "ws";
import { ChatmeshClient, ChatmeshError, ConversationKind } from "@chatmesh/client";

const { values } = parseArgs({
  options: {
    url: { type: "string", default: "ws://127.0.0.1:8080/v1/ws" },
    token: { type: "string", default: process.env.CHATMESH_TOKEN },
    with: { type: "string", multiple: true, default: [] },
    title: { type: "string", default: "" },
  },
});
if (!values.token || values.with.length === 0) {
  console.error("usage: node chat.mjs --token JWT --with USER [--with USER ...] [--url URL]");
  process.exit(2);
}

const client = new ChatmeshClient({
  url: values.url,
  token: values.token,
  // Node 22+ and browsers have a global WebSocket; Node 20 takes the `ws` package's.
  webSocket: globalThis.WebSocket ? undefined : WebSocket,
});
client.onStateChange((state) => console.error(`[${state}]`));
client.onError((err) => console.error(`[error ${err.codeName}: ${err.message}]`));

const me = (await client.connect()).userId;
const created = await client.createConversation({
  kind: values.with.length === 1 ? ConversationKind.DIRECT : ConversationKind.GROUP,
  title: values.title,
  memberIds: values.with,
});
const conversationId = created.conversation.conversation.conversationId;

// What arrives while the history loads waits, so that nothing is lost or shown twice.
let shownUpTo = undefined;
const early = [];
const show = (message) => {
  if (message.conversationId !== conversationId || message.senderId === me) return;
  if (shownUpTo === undefined) early.push(message);
  else if (message.seq > shownUpTo) console.log(`${message.senderId}: ${message.body}`);
};
client.onMessage(show);

// The last messages, oldest first, then the ones that came meanwhile. The history's newest seq
// becomes the cursor: a reconnection resumes from there.
const page = await client.getHistory({ conversationId, limit: 20 });
for (const m of [...page.messages].reverse()) console.log(`${m.senderId}: ${m.body}`);
shownUpTo = page.lastSeq;
client.setCursor(conversationId, page.lastSeq);
early.forEach(show);

client.onTyping((signal) => {
  if (signal.conversationId === conversationId && signal.typing) {
    console.error(`[${signal.userId} is typing]`);
  }
});

console.error(`[${me} in ${conversationId} with ${values.with.join(", ")}; Ctrl-D leaves]`);
const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  try {
    await client.sendMessage(conversationId, line);
  } catch (err) {
    if (!(err instanceof ChatmeshError)) throw err;
    console.error(`[not sent: ${err.codeName} ${err.message}]`);
  }
}
client.close();
