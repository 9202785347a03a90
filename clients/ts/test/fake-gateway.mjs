// An in-memory stand-in for the gateway behind an injected transport: each socket the client
// opens is a FakeSocket; `auth` and `resume` are answered like the real gateway does, every other
// frame goes to `onRequest`.
export class FakeSocket {
  constructor(gateway, url, protocols) {
    this.gateway = gateway;
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.binaryType = "blob";
    this.protocol = "";
    this.onopen = null;
    this.onmessage = null;
    this.onclose = null;
    this.onerror = null;
    this.frames = [];
    setTimeout(() => {
      if (this.readyState !== 0) return;
      this.readyState = 1;
      this.onopen?.({});
    }, 0);
  }

  send(data) {
    if (this.readyState !== 1) throw new Error("not open");
    const frame = JSON.parse(data);
    this.frames.push(frame);
    if (frame.auth) {
      this.gateway.tokens.push(frame.auth.token);
      const accepted = this.gateway.acceptToken(frame.auth.token);
      if (accepted) {
        this.push({ requestId: frame.requestId, ready: { userId: "u", deviceId: "d" } });
      } else {
        this.push({
          requestId: frame.requestId,
          error: { code: "ERROR_CODE_UNAUTHENTICATED", message: "bad token" },
        });
        setTimeout(() => this.drop(1008, "unauthenticated"), 0);
      }
      return;
    }
    if (frame.resume) {
      this.gateway.resumes.push(frame.resume.cursors ?? []);
      this.push({ requestId: frame.requestId, resumed: {} });
      return;
    }
    this.gateway.onRequest(this, frame);
  }

  /** Delivers a server frame (a plain proto3 JSON object). */
  push(frame) {
    if (this.readyState !== 1) return;
    setTimeout(() => this.onmessage?.({ data: JSON.stringify(frame) }), 0);
  }

  answer(request, body) {
    this.push({ requestId: request.requestId, ...body });
  }

  /** The server closes the connection. */
  drop(code = 1001, reason = "going away") {
    if (this.readyState === 3) return;
    this.readyState = 3;
    setTimeout(() => this.onclose?.({ code, reason }), 0);
  }

  close(code = 1000, reason = "") {
    this.drop(code, reason);
  }
}

export class FakeGateway {
  constructor() {
    this.sockets = [];
    this.resumes = [];
    this.tokens = [];
    this.acceptToken = () => true;
    this.onRequest = () => {};
    this.factory = (url, protocols) => {
      const socket = new FakeSocket(this, url, protocols);
      this.sockets.push(socket);
      return socket;
    };
  }

  get current() {
    return this.sockets[this.sockets.length - 1];
  }

  /** Waits until `predicate()` holds. */
  async until(predicate, timeoutMs = 2000) {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (Date.now() > deadline) throw new Error("condition not met in time");
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}

export function messageEvent(conversationId, seq, body = `m${seq}`) {
  return {
    event: {
      conversationId,
      seq: String(seq),
      actorId: "alice",
      messageCreated: {
        message: { conversationId, seq: String(seq), senderId: "alice", body },
      },
    },
  };
}
