// The chatmesh web client: plain DOM over the TypeScript SDK's ChatmeshClient (clients/ts,
// bundled as chatmesh-sdk.js), which owns the protocol: request correlation, reconnecting and
// resuming, de-duplication. Served by the gateway when CHATMESH_WS_WEB_CLIENT is on.

import { blurhashDataUrl } from "./blurhash.js";
import {
  ChatmeshClient,
  ConversationKind,
  ErrorCode,
  HistoryDirection,
  MediaState,
  MembershipChange,
  PresenceState,
  timestampDate,
  timestampMs,
} from "./chatmesh-sdk.js";

const PAGE = 30;
const TYPING_EVERY_MS = 3000;
const THUMB_MAX_PX = 240;

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function randomId() {
  if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

// seq and the other 64-bit integers are bigints in the SDK's messages.
function num(value) {
  return value === undefined || value === null ? 0 : Number(value);
}

function timeOf(timestamp) {
  if (!timestamp) return "";
  return timestampDate(timestamp).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

const state = {
  me: "",
  client: null, // the ChatmeshClient
  conversations: new Map(), // id -> ConversationView
  open: null, // the open conversation: {id, messages: Map seq -> Message, oldest, hasMore, ...}
  presences: new Map(), // user id -> UserPresence
  typing: new Map(), // user id -> expiry timer, for the open conversation
  readBy: new Map(), // conversation id -> Map user id -> last read seq
  lastTypingSent: 0,
  refreshing: new Map(), // conversation id -> pending refresh timer
};

function status(text) {
  $("status").textContent = text;
}

function fail(err) {
  status(`${err.codeName || "error"}: ${err.message}`);
}

// ---- signing in -------------------------------------------------------------------------

async function fetchToken(user, device) {
  const query = new URLSearchParams({ user, device });
  const reply = await fetch(`/dev/token?${query}`);
  if (!reply.ok) throw new Error(`sign-in refused: ${reply.status} ${await reply.text()}`);
  return (await reply.json()).token;
}

async function signIn(user) {
  const device = `web-${randomId().slice(0, 8)}`;
  await fetchToken(user, device); // fails early with a readable message
  state.me = user;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  // A token per connection attempt, and a fresh one when the server refuses it or it is about
  // to expire (sent on the open socket).
  const token = () => fetchToken(user, device);
  const client = new ChatmeshClient({
    url: `${scheme}://${location.host}/v1/ws`,
    token,
    refreshToken: token,
    requestTimeoutMs: 15000,
    reconnect: { initialDelayMs: 500, maxDelayMs: 10000 },
  });
  state.client = client;
  client.on("state", (now) => {
    if (now !== "open") showConnection(now);
  });
  client.on("ready", onReady);
  client.on("resumed", ({ revokedConversationIds }) => revokedConversationIds.forEach(forget));
  client.onMessage((message, event) => onMessageEvent(message, event, "created"));
  client.onMessageEdited((message, event) => onMessageEvent(message, event, "edited"));
  client.onMessageDeleted((message, event) => onMessageEvent(message, event, "deleted"));
  client.onReceipt(onReceipt);
  client.onMembershipChanged(onMembershipChanged);
  client.on("conversationCreated", (_conversation, event) => refreshConversation(event.conversationId));
  client.on("conversationUpdated", (_conversation, event) => refreshConversation(event.conversationId));
  client.onEvent((event) => {
    // A kind of event newer than this page: re-read the conversation.
    if (event.payload.case === undefined) refreshConversation(event.conversationId);
  });
  client.onTyping(onTyping);
  client.onPresence(onPresence);
  $("signin").hidden = true;
  $("app").hidden = false;
  $("me").textContent = user;
  document.title = `chatmesh · ${user}`;
  // Rejects only when the client gives up (e.g. a refused token, again and again).
  client.connect().catch(fail);
}

function showConnection(now) {
  $("conn").textContent = now === "ready" ? "online" : now;
  $("conn").dataset.state = now;
}

// Authenticated, on the first connection and after every reconnection (the client resumes the
// event streams itself and subscribes the watched users' presence again).
function onReady() {
  showConnection("ready");
  loadConversations().catch(fail);
  if (state.open) subscribeMembers(state.open.id).catch(() => {});
}

// ---- conversation list ------------------------------------------------------------------

function titleOf(view) {
  const c = view.conversation || {};
  return c.title || view.peerUserId || c.conversationId;
}

async function loadConversations() {
  for (const view of await state.client.allConversations({ pageSize: 100 })) {
    state.conversations.set(view.conversation.conversationId, view);
  }
  renderConversations();
}

// Re-reads one conversation (unread count, last message), at most every 150 ms each.
function refreshConversation(id) {
  if (state.refreshing.has(id)) return;
  state.refreshing.set(
    id,
    setTimeout(async () => {
      state.refreshing.delete(id);
      try {
        const answer = await state.client.getConversation(id);
        state.conversations.set(id, answer.conversation);
        if (state.open && state.open.id === id) state.open.view = answer.conversation;
        renderConversations();
      } catch (err) {
        if ([ErrorCode.NOT_FOUND, ErrorCode.PERMISSION_DENIED].includes(err.code)) forget(id);
      }
    }, 150),
  );
}

function forget(id) {
  state.client.forgetCursor(id);
  state.conversations.delete(id);
  if (state.open && state.open.id === id) closeConversation();
  renderConversations();
}

// When a conversation last saw a message (or was created), in ms.
function lastActivity(view) {
  const at = (view.lastMessage && view.lastMessage.createdAt) || view.conversation.createdAt;
  return at ? timestampMs(at) : 0;
}

function renderConversations() {
  const views = [...state.conversations.values()].sort((a, b) => lastActivity(b) - lastActivity(a));
  const list = $("conversations");
  list.replaceChildren(
    ...views.map((view) => {
      const id = view.conversation.conversationId;
      const unread = num(view.unreadCount);
      const last = view.lastMessage;
      const preview = last ? (last.deleted ? "message deleted" : last.body || "attachment") : "";
      return el(
        "li",
        {
          class: state.open && state.open.id === id ? "conversation active" : "conversation",
          dataset: { cid: id, testid: "conversation" },
          onclick: () => openConversation(id).catch(fail),
        },
        el("span", {}, el("strong", { class: "title" }, titleOf(view)), el("span", { class: "preview" }, preview)),
        unread > 0 ? el("span", { class: "unread", dataset: { testid: "unread" } }, String(unread)) : null,
      );
    }),
  );
}

async function createGroup(title, memberIds) {
  const answer = await state.client.createConversation({
    kind: ConversationKind.GROUP,
    title,
    memberIds,
  });
  const view = answer.conversation;
  state.conversations.set(view.conversation.conversationId, view);
  renderConversations();
  await openConversation(view.conversation.conversationId);
}

// ---- one conversation -------------------------------------------------------------------

function closeConversation() {
  state.open = null;
  $("messages").replaceChildren();
  $("members").replaceChildren();
  $("chat-title").textContent = "Pick a conversation";
  $("composer").hidden = true;
}

const observer = new IntersectionObserver(
  (entries) => {
    if (!state.open) return;
    for (const entry of entries) {
      if (entry.isIntersecting) {
        state.open.visibleMax = Math.max(state.open.visibleMax, num(entry.target.dataset.seq));
      }
    }
    markRead();
  },
  { threshold: 0.5 },
);

async function openConversation(id) {
  const view = state.conversations.get(id);
  const previous = state.open;
  state.open = {
    id,
    view,
    messages: new Map(),
    oldest: 0,
    hasMore: false,
    loadingOlder: false,
    visibleMax: 0,
    markedRead: view ? num(view.lastReadSeq) : 0,
    members: [],
  };
  for (const timer of state.typing.values()) clearTimeout(timer);
  state.typing.clear();
  renderTyping();
  $("messages").replaceChildren();
  $("chat-title").textContent = view ? titleOf(view) : id;
  $("composer").hidden = false;
  renderConversations();
  if (previous && previous.members.length) {
    state.client.presenceUnsubscribe(previous.members).catch(() => {});
  }
  const page = await state.client.getHistory({
    conversationId: id,
    direction: HistoryDirection.BACKWARD,
    limit: PAGE,
  });
  if (!state.open || state.open.id !== id) return;
  // The page holds the conversation up to lastSeq: a resume starts there, older events are repeats.
  state.client.setCursor(id, page.lastSeq);
  addPage(page);
  scrollToBottom();
  fillViewport();
  await subscribeMembers(id);
  $("text").focus();
}

function addPage(page) {
  const open = state.open;
  for (const message of page.messages) {
    const seq = num(message.seq);
    open.oldest = open.oldest ? Math.min(open.oldest, seq) : seq;
    upsertMessage(message);
  }
  open.hasMore = Boolean(page.hasMore);
}

async function loadOlder() {
  const open = state.open;
  if (!open || !open.hasMore || open.loadingOlder) return;
  open.loadingOlder = true;
  const list = $("messages");
  const fromBottom = list.scrollHeight - list.scrollTop;
  try {
    const page = await state.client.getHistory({
      conversationId: open.id,
      direction: HistoryDirection.BACKWARD,
      beforeSeq: BigInt(open.oldest),
      limit: PAGE,
    });
    if (state.open !== open) return;
    addPage(page);
    list.scrollTop = list.scrollHeight - fromBottom; // keep what the reader was looking at
  } finally {
    open.loadingOlder = false;
  }
  fillViewport();
}

// Pages that do not fill the list cannot be scrolled: load older ones until they do.
function fillViewport() {
  const list = $("messages");
  if (state.open && state.open.hasMore && list.scrollHeight <= list.clientHeight) {
    loadOlder().catch(fail);
  }
}

function scrollToBottom() {
  const list = $("messages");
  list.scrollTop = list.scrollHeight;
}

async function subscribeMembers(id) {
  const answer = await state.client.listMembers(id, { pageSize: 200 });
  if (!state.open || state.open.id !== id) return;
  const others = answer.members.map((m) => m.userId).filter((u) => u !== state.me);
  state.open.members = others;
  renderMembers();
  if (!others.length) return;
  try {
    for (const presence of await state.client.presenceSubscribe(others)) {
      state.presences.set(presence.userId, presence);
    }
    renderMembers();
  } catch {
    // Presence is best effort.
  }
}

function renderMembers() {
  if (!state.open) return;
  $("members").replaceChildren(
    ...state.open.members.map((user) => {
      const presence = state.presences.get(user);
      const now = presence ? presence.state : PresenceState.OFFLINE;
      const kind = { [PresenceState.ONLINE]: "online", [PresenceState.AWAY]: "away" }[now] || "offline";
      return el(
        "li",
        { dataset: { user, presence: kind, testid: "member" }, title: kind },
        el("span", { class: `dot ${kind}` }),
        user,
      );
    }),
  );
}

function onPresence(presence) {
  state.presences.set(presence.userId, presence);
  renderMembers();
}

// Inserts or replaces a message of the open conversation, in seq order.
function upsertMessage(message) {
  const open = state.open;
  const seq = num(message.seq);
  const known = open.messages.get(seq);
  // A history page read before an edit or delete must not undo what an event already showed.
  if (known && (num(known.version) > num(message.version) || (known.deleted && !message.deleted))) {
    return;
  }
  open.messages.set(seq, message);
  const list = $("messages");
  const node = renderMessage(message);
  const existing = list.querySelector(`li[data-seq="${seq}"]`);
  if (existing) {
    observer.unobserve(existing);
    existing.replaceWith(node);
  } else {
    const after = [...list.children].find((child) => num(child.dataset.seq) > seq);
    list.insertBefore(node, after || null);
  }
  observer.observe(node);
  renderReceipts();
}

function renderMessage(message) {
  const seq = num(message.seq);
  const mine = message.senderId === state.me;
  const classes = ["msg", mine ? "mine" : "", message.deleted ? "deleted" : ""].join(" ");
  const body = el("div", { class: "body" }, message.deleted ? "message deleted" : message.body || "");
  const actions =
    mine && !message.deleted
      ? el(
          "span",
          { class: "actions" },
          el("button", { class: "link", type: "button", dataset: { action: "edit" }, onclick: () => startEdit(message, body) }, "edit"),
          el("button", { class: "link", type: "button", dataset: { action: "delete" }, onclick: () => deleteMessage(message).catch(fail) }, "delete"),
        )
      : null;
  return el(
    "li",
    { class: classes, dataset: { seq: String(seq), sender: message.senderId, testid: "message" } },
    mine ? null : el("div", { class: "sender" }, message.senderId),
    body,
    message.deleted ? null : renderAttachments(message),
    el(
      "div",
      { class: "meta" },
      timeOf(message.createdAt),
      message.editedAt && !message.deleted ? " · edited" : "",
      actions,
    ),
    mine ? el("div", { class: "receipt" }) : null,
  );
}

function renderAttachments(message) {
  const infos = message.attachmentInfo;
  if (!infos.length) return null;
  return el(
    "div",
    { class: "attachments" },
    ...infos.map((info) => {
      const width = num(info.width);
      const height = num(info.height);
      const isImage = (info.contentType || "").startsWith("image/") && width > 0 && height > 0;
      if (!isImage) {
        return el(
          "a",
          { href: "#", class: "file", onclick: (e) => { e.preventDefault(); download(message, info, "").catch(fail); } },
          `${info.fileName || "file"} (${num(info.sizeBytes)} bytes)`,
        );
      }
      const shown = Math.min(THUMB_MAX_PX, width);
      const thumb = el("a", {
        class: "thumb",
        href: "#",
        title: info.fileName || "",
        dataset: { testid: "thumbnail", mediaId: info.mediaId },
        style: `width:${shown}px;height:${Math.round((shown * height) / width)}px`,
        onclick: (e) => { e.preventDefault(); download(message, info, "large").catch(fail); },
      });
      const placeholder = info.blurhash ? blurhashDataUrl(info.blurhash) : "";
      if (placeholder) thumb.style.backgroundImage = `url(${placeholder})`;
      const variant = info.thumbnails.includes("small") ? "small" : "";
      downloadUrl(message, info, variant)
        .then((url) => thumb.append(el("img", { src: url, alt: info.fileName || "image" })))
        .catch(() => {});
      return thumb;
    }),
  );
}

async function downloadUrl(message, info, variant) {
  const answer = await state.client.getDownloadUrl({
    mediaId: info.mediaId,
    variant,
    messageSeq: message.seq,
  });
  return answer.url;
}

async function download(message, info, variant) {
  const large = variant && info.thumbnails.includes(variant) ? variant : "";
  window.open(await downloadUrl(message, info, large), "_blank", "noopener");
}

function renderReceipts() {
  const open = state.open;
  if (!open) return;
  const readers = state.readBy.get(open.id) || new Map();
  const placed = new Set();
  const mine = [...$("messages").querySelectorAll("li.msg.mine")].reverse();
  for (const node of mine) {
    const seq = num(node.dataset.seq);
    const here = [...readers].filter(([user, read]) => read >= seq && !placed.has(user)).map(([user]) => user);
    here.forEach((user) => placed.add(user));
    const receipt = node.querySelector(".receipt");
    if (receipt) receipt.textContent = here.length ? `read by ${here.join(", ")}` : "";
  }
}

// Marks the newest message seen on screen as read, while the page is visible.
function markRead() {
  const open = state.open;
  if (!open || document.visibilityState !== "visible") return;
  const seq = open.visibleMax;
  if (seq <= open.markedRead) return;
  open.markedRead = seq;
  state.client
    .markRead(open.id, seq)
    .then((answer) => {
      const view = state.conversations.get(open.id);
      if (view) {
        view.unreadCount = answer.unreadCount;
        view.lastReadSeq = answer.lastReadSeq;
        renderConversations();
      }
    })
    .catch(() => {
      open.markedRead = Math.min(open.markedRead, seq - 1);
    });
}

// ---- sending ------------------------------------------------------------------------------

async function sendText(text, attachments = []) {
  const open = state.open;
  // A media message when it has attachments; the client keeps one idempotency key per send.
  const answer = await state.client.sendMessage(open.id, text, { attachments });
  if (state.open === open) {
    upsertMessage(answer.message);
    scrollToBottom();
  }
  stopTyping();
}

async function uploadFile(file) {
  const open = state.open;
  status(`uploading ${file.name}…`);
  const created = await state.client.createUpload({
    conversationId: open.id,
    fileName: file.name,
    sizeBytes: file.size,
    contentType: file.type || "application/octet-stream",
  });
  const upload = created.upload;
  let reply;
  if (upload.method === "POST") {
    const form = new FormData();
    for (const [name, value] of Object.entries(upload.fields)) form.append(name, value);
    form.append("file", file);
    reply = await fetch(upload.url, { method: "POST", body: form });
  } else {
    reply = await fetch(upload.url, { method: "PUT", headers: upload.headers, body: file });
  }
  if (!reply.ok) throw new Error(`upload refused: ${reply.status}`);
  const done = await state.client.completeUpload(created.media.mediaId);
  const media = done.media;
  if (media.state !== MediaState.READY) {
    throw new Error(`${file.name} was refused: ${media.rejectReason || MediaState[media.state]}`);
  }
  const caption = $("text").value.trim();
  $("text").value = "";
  await sendText(caption, [media.mediaId]);
  status("");
}

function startEdit(message, body) {
  const input = el("input", { class: "edit", value: message.body || "", dataset: { testid: "edit-input" } });
  input.value = message.body || "";
  input.addEventListener("keydown", (e) => {
    if (e.key === "Escape") body.replaceChildren(message.body || "");
    if (e.key !== "Enter") return;
    e.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    state.client
      .editMessage(message.conversationId, message.seq, text)
      .then((answer) => upsertMessage(answer.message))
      .catch(fail);
  });
  body.replaceChildren(input);
  input.focus();
}

async function deleteMessage(message) {
  const answer = await state.client.deleteMessage(message.conversationId, message.seq);
  upsertMessage(answer.message);
}

// ---- typing -------------------------------------------------------------------------------

function typed() {
  const open = state.open;
  const now = Date.now();
  if (!open || now - state.lastTypingSent < TYPING_EVERY_MS) return;
  state.lastTypingSent = now;
  state.client.typing(open.id, true).catch(() => {});
}

function stopTyping() {
  if (!state.open || !state.lastTypingSent) return;
  state.lastTypingSent = 0;
  state.client.typing(state.open.id, false).catch(() => {});
}

function onTyping(signal) {
  const user = signal.userId;
  if (!state.open || state.open.id !== signal.conversationId || user === state.me) return;
  clearTimeout(state.typing.get(user));
  state.typing.delete(user);
  if (signal.typing) {
    const left = signal.expiresAt ? signal.expiresAt.getTime() - Date.now() : 6000;
    state.typing.set(
      user,
      setTimeout(() => {
        state.typing.delete(user);
        renderTyping();
      }, Math.max(500, Math.min(left, 6000))),
    );
  }
  renderTyping();
}

function renderTyping() {
  const users = [...state.typing.keys()];
  $("typing").textContent = users.length
    ? `${users.join(", ")} ${users.length === 1 ? "is" : "are"} typing…`
    : "";
}

// ---- events -------------------------------------------------------------------------------

// A new, edited or deleted message (each (conversation, seq) once: the client drops repeats).
function onMessageEvent(message, event, change) {
  const id = event.conversationId;
  if (state.open && state.open.id === id) {
    const list = $("messages");
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    upsertMessage(message);
    if (change === "created" && atBottom) scrollToBottom();
    if (change === "created" && message.senderId !== state.me) {
      clearTimeout(state.typing.get(message.senderId));
      state.typing.delete(message.senderId);
      renderTyping();
    }
  }
  refreshConversation(id);
}

function onReceipt(receipt, event) {
  const id = event.conversationId;
  if (receipt.userId === state.me) {
    refreshConversation(id);
    return;
  }
  const readers = state.readBy.get(id) || new Map();
  readers.set(receipt.userId, Math.max(readers.get(receipt.userId) || 0, num(receipt.lastReadSeq)));
  state.readBy.set(id, readers);
  if (state.open && state.open.id === id) renderReceipts();
}

function onMembershipChanged(change, event) {
  const id = event.conversationId;
  const gone = [MembershipChange.REMOVED, MembershipChange.LEFT].includes(change.change);
  if (change.userId === state.me && gone) {
    forget(id);
    return;
  }
  refreshConversation(id);
  if (state.open && state.open.id === id) subscribeMembers(id).catch(() => {});
}

// ---- search -------------------------------------------------------------------------------

let searchTimer = 0;

function searchSoon(query) {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => search(query).catch(fail), 250);
}

async function search(query) {
  const results = $("search-results");
  if (!query.trim()) {
    results.hidden = true;
    results.replaceChildren();
    return;
  }
  const answer = await state.client.search({ query, pageSize: 20 });
  if ($("search").value !== query) return;
  const hits = answer.hits;
  results.hidden = false;
  results.replaceChildren(
    ...(hits.length
      ? hits.map((hit) => {
          const view = state.conversations.get(hit.conversationId);
          return el(
            "li",
            {
              dataset: { testid: "search-hit", cid: hit.conversationId, seq: String(hit.seq) },
              onclick: () => openConversation(hit.conversationId).catch(fail),
            },
            el("strong", {}, `${hit.senderId} in ${view ? titleOf(view) : hit.conversationId}`),
            el("div", {}, hit.snippet || ""),
          );
        })
      : [el("li", {}, "no messages found")]),
  );
}

// ---- wiring -------------------------------------------------------------------------------

function start() {
  $("signin").addEventListener("submit", (e) => {
    e.preventDefault();
    signIn($("signin-user").value.trim()).catch((err) => {
      $("signin-error").textContent = err.message;
    });
  });
  $("new-group").addEventListener("submit", (e) => {
    e.preventDefault();
    const members = $("group-members").value.split(/[\s,]+/).filter(Boolean);
    createGroup($("group-title").value.trim(), members)
      .then(() => {
        $("group-title").value = "";
        $("group-members").value = "";
      })
      .catch(fail);
  });
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("text").value.trim();
    if (!text || !state.open) return;
    $("text").value = "";
    sendText(text).catch(fail);
  });
  $("text").addEventListener("input", typed);
  $("text").addEventListener("blur", stopTyping);
  $("file").addEventListener("change", () => {
    const file = $("file").files[0];
    $("file").value = "";
    if (file && state.open) uploadFile(file).catch(fail);
  });
  $("messages").addEventListener("scroll", () => {
    if ($("messages").scrollTop < 80) loadOlder().catch(fail);
  });
  $("search").addEventListener("input", () => searchSoon($("search").value));
  document.addEventListener("visibilitychange", markRead);
  const user = new URLSearchParams(location.search).get("user");
  if (user) $("signin-user").value = user;
}

start();
