// The chatmesh WebSocket protocol (docs/websocket.md) for the web client, in one module.
//
// Everything that knows the wire lives here: the socket, request/answer correlation by
// request id, reconnecting with backoff and resuming from per-conversation cursors, and dropping
// duplicate events by (conversation, seq). The rest of the client only calls `request()` and
// listens to events. It is meant to be swapped for the TypeScript SDK (clients/ts/) once that
// is published: keep this surface small so the swap stays a change of this one file.

const SUBPROTOCOL = "chatmesh.v1";
const REQUEST_TIMEOUT_MS = 15000;
const MAX_BACKOFF_MS = 10000;

export class ChatmeshError extends Error {
  constructor(error) {
    super(error.message || error.code || "error");
    this.code = error.code || "ERROR_CODE_UNKNOWN";
    this.retryAfterMs = error.retryAfterMs || 0;
  }
}

// seq and other 64-bit integers arrive as strings in proto3 JSON.
export function num(value) {
  return value === undefined || value === null ? 0 : Number(value);
}

// When a JWT expires (ms since the epoch), or 0 when it cannot be read.
function tokenExpiry(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return num(JSON.parse(atob(payload)).exp) * 1000;
  } catch {
    return 0;
  }
}

export class ChatmeshSocket extends EventTarget {
  // url: ws(s)://host/v1/ws; getToken: async () => jwt (asked again on each reconnect).
  constructor(url, getToken) {
    super();
    this.url = url;
    this.getToken = getToken;
    this.ws = null;
    this.nextId = 1;
    this.pending = new Map(); // request id -> {resolve, reject, timer}
    this.cursors = new Map(); // conversation id -> highest seq delivered
    this.attempt = 0;
    this.closed = false;
    this.ready = null; // the Ready frame of the current socket
    this.state = "connecting";
    this.token = "";
    this.renewal = 0;
  }

  connect() {
    this.closed = false;
    this.open();
  }

  close() {
    this.closed = true;
    clearTimeout(this.renewal);
    if (this.ws) this.ws.close(1000);
  }

  // Marks `seq` of a conversation as seen (e.g. from a history page), so a resume starts there.
  advance(conversationId, seq) {
    const s = num(seq);
    if (s > (this.cursors.get(conversationId) || 0)) this.cursors.set(conversationId, s);
  }

  setState(state, detail = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, ...detail } }));
  }

  async open() {
    this.setState("connecting");
    let token;
    try {
      token = await this.getToken();
    } catch (err) {
      this.retry(err);
      return;
    }
    if (this.closed) return;
    const ws = new WebSocket(this.url, [SUBPROTOCOL, `bearer.${token}`]);
    this.ws = ws;
    this.token = token;
    ws.onmessage = (message) => this.receive(message.data);
    ws.onclose = (close) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.ready = null;
      clearTimeout(this.renewal);
      for (const [, call] of this.pending) {
        clearTimeout(call.timer);
        call.reject(new ChatmeshError({ code: "ERROR_CODE_UNAVAILABLE", message: "disconnected" }));
      }
      this.pending.clear();
      this.setState("disconnected", { code: close.code });
      if (!this.closed) this.retry(new Error(`closed ${close.code}`));
    };
  }

  retry() {
    if (this.closed) return;
    const ceiling = Math.min(MAX_BACKOFF_MS, 500 * 2 ** this.attempt);
    this.attempt += 1;
    setTimeout(() => this.open(), ceiling / 2 + Math.random() * (ceiling / 2));
  }

  receive(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    const requestId = frame.requestId || "";
    const { requestId: _ignored, ...rest } = frame;
    const kind = Object.keys(rest)[0];
    const body = rest[kind];
    if (kind === "ready" && !this.pending.has(requestId)) {
      this.onReady(body); // the socket's own: the token came in the subprotocol header
      return;
    }
    if (requestId && this.pending.has(requestId)) {
      const call = this.pending.get(requestId);
      this.pending.delete(requestId);
      clearTimeout(call.timer);
      if (kind === "error") call.reject(new ChatmeshError(body));
      else call.resolve(body || {});
      return;
    }
    if (kind === "event") this.onEvent(body);
    else if (kind === "presenceEvent") this.emit("presence", body);
    else if (kind === "error") this.emit("error", new ChatmeshError(body));
  }

  async onReady(ready) {
    this.ready = ready;
    this.attempt = 0;
    // Replay what this device missed after each cursor; live events follow.
    const cursors = [...this.cursors].map(([conversationId, seq]) => ({
      conversationId,
      seq: String(seq),
    }));
    try {
      const resumed = await this.request("resume", { cursors });
      for (const id of resumed.revokedConversationIds || []) {
        this.cursors.delete(id);
        this.emit("revoked", { conversationId: id });
      }
    } catch (err) {
      this.emit("error", err);
    }
    this.setState("ready", { ready });
    this.scheduleRenewal();
  }

  // Sends a fresh token in an `auth` frame a minute before this one expires, so the socket is
  // not closed (1008) when it does.
  scheduleRenewal() {
    clearTimeout(this.renewal);
    const expiresAt = tokenExpiry(this.token);
    if (!expiresAt) return;
    const inMs = Math.max(5000, expiresAt - Date.now() - 60000);
    const ws = this.ws;
    this.renewal = setTimeout(async () => {
      try {
        const token = await this.getToken();
        if (this.ws !== ws) return;
        await this.request("auth", { token });
        this.token = token;
      } catch (err) {
        this.emit("error", err);
      }
      if (this.ws === ws) this.scheduleRenewal();
    }, inMs);
  }

  onEvent(event) {
    const seq = num(event.seq);
    if (seq > 0) {
      // Events come in seq order per conversation: anything at or below the cursor is a repeat.
      const cursor = this.cursors.get(event.conversationId) || 0;
      if (seq <= cursor) return;
      this.cursors.set(event.conversationId, seq);
    }
    this.emit("event", event);
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // Sends a ClientFrame case (camelCase name, e.g. "sendMessage") and resolves with the answer's
  // body, or rejects with a ChatmeshError.
  request(kind, body = {}, timeoutMs = REQUEST_TIMEOUT_MS) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || (!this.ready && kind !== "resume")) {
      return Promise.reject(
        new ChatmeshError({ code: "ERROR_CODE_UNAVAILABLE", message: "not connected" }),
      );
    }
    const requestId = `r${this.nextId++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        reject(new ChatmeshError({ code: "ERROR_CODE_DEADLINE_EXCEEDED", message: kind }));
      }, timeoutMs);
      this.pending.set(requestId, { resolve, reject, timer });
      ws.send(JSON.stringify({ requestId, [kind]: body }));
    });
  }
}
