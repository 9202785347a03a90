import {
  create,
  fromBinary,
  fromJsonString,
  toBinary,
  toJsonString,
  type MessageInitShape,
} from "@bufbuild/protobuf";
import type { GenMessage } from "@bufbuild/protobuf/codegenv2";
import { timestampDate } from "@bufbuild/protobuf/wkt";

import type {
  AddMembersResponse,
  CreateConversationResponse,
  DeleteMessageResponse,
  EditMessageResponse,
  GetConversationResponse,
  GetHistoryRequest,
  GetHistoryResponse,
  ListConversationsResponse,
  ListMembersResponse,
  MarkDeliveredResponse,
  MarkReadResponse,
  SendMessageResponse,
} from "./gen/chatmesh/chat/v1/chat_service_pb.js";
import {
  ConversationKind,
  MessageKind,
  type Conversation,
  type ConversationView,
  type Member,
  type Message,
} from "./gen/chatmesh/chat/v1/types_pb.js";
import type {
  ConversationEvent,
  MembershipChanged,
  ReceiptMoved,
} from "./gen/chatmesh/events/v1/events_pb.js";
import {
  ClientFrameSchema,
  ErrorCode,
  ServerFrameSchema,
  type ClientFrame,
  type Ready,
  type ServerFrame,
} from "./gen/chatmesh/gateway/v1/gateway_pb.js";
import type {
  CompleteUploadResponse,
  CreateUploadResponse,
  GetDownloadUrlResponse,
  GetMediaResponse,
} from "./gen/chatmesh/media/v1/media_service_pb.js";
import type {
  SetStatusResponse,
  UserPresence,
  UserStatus,
} from "./gen/chatmesh/presence/v1/presence_service_pb.js";
import type { SearchRequest, SearchResponse } from "./gen/chatmesh/search/v1/search_service_pb.js";
import { ChatmeshError } from "./errors.js";
import { Emitter, type Unsubscribe } from "./emitter.js";
import {
  OPEN,
  webSocketFactory,
  type WebSocketConstructor,
  type WebSocketFactory,
  type WebSocketLike,
} from "./transport.js";

// -- frame type plumbing ------------------------------------------------------------------------

type FrameOneof = ClientFrame["frame"];
/** Every ClientFrame case. */
export type ClientFrameCase = NonNullable<FrameOneof["case"]>;
/** The cases an app sends through `request` (auth and resume are the client's own business). */
export type RequestCase = Exclude<ClientFrameCase, "auth" | "resume">;
/** The request message of a case, e.g. SendMessageRequest for "sendMessage". */
export type RequestOf<K extends ClientFrameCase> = Extract<FrameOneof, { case: K }>["value"];
/** What a request of that case may be built from (plain objects, partial). */
export type RequestInit<K extends ClientFrameCase> = MessageInitShape<GenMessage<RequestOf<K>>>;
type ServerOneof = ServerFrame["frame"];
export type ServerFrameCase = NonNullable<ServerOneof["case"]>;
/** The ServerFrame case answering a ClientFrame case (the same name, but ping -> pong). */
export type AnswerCase<K extends ClientFrameCase> = K extends "ping"
  ? "pong"
  : K extends "auth"
    ? "ready"
    : K extends "resume"
      ? "resumed"
      : K;
/** The answer message of a request case, e.g. SendMessageResponse for "sendMessage". */
export type ResponseOf<K extends ClientFrameCase> = Extract<
  ServerOneof,
  { case: AnswerCase<K> }
>["value"];

const ANSWER_CASE: Partial<Record<ClientFrameCase, ServerFrameCase>> = {
  ping: "pong",
  auth: "ready",
  resume: "resumed",
};

/** Reads (and sends retried with their idempotency key) are safe to send again after a drop. */
const RETRY_SAFE: ReadonlySet<ClientFrameCase> = new Set<ClientFrameCase>([
  "ping",
  "sendMessage",
  "getHistory",
  "markRead",
  "markDelivered",
  "getConversation",
  "listConversations",
  "listMembers",
  "listBlockedUsers",
  "presenceSubscribe",
  "presenceUnsubscribe",
  "setStatus",
  "getMedia",
  "getDownloadUrl",
  "search",
]);

// -- options and public types -------------------------------------------------------------------

/** A token, or a function that gives the current one (called on every connection attempt). */
export type TokenSource = string | (() => string | Promise<string>);

export interface ReconnectOptions {
  /** First delay after a drop (default 250 ms); doubles on each failed attempt. */
  initialDelayMs?: number;
  /** Cap of the delay (default 30 s). */
  maxDelayMs?: number;
  /** Give up after this many failed attempts in a row (default: never). */
  maxAttempts?: number;
  /** Spread delays randomly over [delay/2, delay] (default true). */
  jitter?: boolean;
}

export interface ChatmeshClientOptions {
  /** The gateway's URL, e.g. "ws://127.0.0.1:8080/v1/ws". */
  url: string;
  /** The user token (a JWT), or a function giving it. */
  token: TokenSource;
  /**
   * Gives a fresh token: called when the server refuses the current one, and shortly before
   * the current one expires (its `exp` claim), in which case the new token is sent on the open
   * socket (an `auth` frame) without reconnecting.
   */
  refreshToken?: () => string | Promise<string>;
  /**
   * The socket implementation: a WebSocket class (e.g. `WebSocket` from the `ws` package) or a
   * factory `(url, protocols) => socket`. Default: the global WebSocket (browsers, Node 22+).
   */
  webSocket?: WebSocketFactory | WebSocketConstructor;
  /** "json" (text frames, proto3 JSON; default) or "binary" (protobuf). */
  encoding?: "json" | "binary";
  /** Default timeout of a request, from the call until its answer (default 10 s). */
  requestTimeoutMs?: number;
  /** Reconnect after the connection drops (default on); `false` turns it off. */
  reconnect?: ReconnectOptions | false;
  /**
   * Cursors to resume from on the first connection (conversation id -> last seq seen), e.g.
   * those an app stored from `cursors()` the last time it ran.
   */
  cursors?: Iterable<[string, bigint | number]> | Record<string, bigint | number>;
  /**
   * App-level ping interval while open, to notice a dead connection (default: the server's
   * heartbeat interval from `ready`, else 25 s); 0 turns it off.
   */
  keepaliveMs?: number;
}

export type ConnectionState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

export interface RequestOptions {
  /** Overrides the client's requestTimeoutMs. */
  timeoutMs?: number;
  /**
   * Send the request again on the next connection when the socket drops before its answer.
   * Default: true for reads and for sends with an idempotency key, false otherwise.
   */
  retryOnReconnect?: boolean;
  /** Rejects the request with CANCELLED when aborted. */
  signal?: AbortSignal;
}

export interface SendMessageOptions extends RequestOptions {
  /** The idempotency key; generated when left out. Reuse it to retry a send yourself. */
  clientMsgId?: string;
  attachments?: string[];
  /** Default: MessageKind.MEDIA when `attachments` are given, else TEXT. */
  kind?: MessageKind;
  replyToSeq?: bigint | number;
  mentions?: string[];
  /** Wait and send again (same key) when rate limited, within the timeout (default true). */
  retryRateLimited?: boolean;
}

/** A typing signal (pushed as a seq-0 event with `typingChanged`). */
export interface TypingSignal {
  conversationId: string;
  userId: string;
  typing: boolean;
  /** Drop the indicator at this time unless renewed. */
  expiresAt: Date | undefined;
  event: ConversationEvent;
}

export interface DisconnectInfo {
  code: number;
  reason: string;
  /** Whether the client will try again. */
  willReconnect: boolean;
  /** The server's last error frame before the close, if any (e.g. UNAUTHENTICATED). */
  error?: ChatmeshError;
}

export interface ClientEvents {
  /** Every conversation event, de-duplicated by (conversation, seq). */
  event: [ConversationEvent];
  message: [Message, ConversationEvent];
  messageEdited: [Message, ConversationEvent];
  messageDeleted: [Message, ConversationEvent];
  membershipChanged: [MembershipChanged, ConversationEvent];
  receipt: [ReceiptMoved, ConversationEvent];
  conversationCreated: [Conversation, ConversationEvent];
  conversationUpdated: [Conversation, ConversationEvent];
  typing: [TypingSignal];
  presence: [UserPresence];
  /** Authenticated (first connection and every reconnection). */
  ready: [Ready];
  /** The server replayed everything after the cursors; `revoked` lost access meanwhile. */
  resumed: [{ revokedConversationIds: string[] }];
  disconnected: [DisconnectInfo];
  state: [ConnectionState];
  /** An error not tied to a request: a pushed error frame, a refused token, a failed refresh. */
  error: [ChatmeshError];
  /** An event dropped as already seen (for diagnostics). */
  duplicate: [ConversationEvent];
}

interface Pending {
  id: string;
  kind: ClientFrameCase;
  frame: ClientFrame;
  resolve: (value: unknown) => void;
  reject: (err: ChatmeshError) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
  retryOnReconnect: boolean;
  /** Sent on the current socket (waiting for its answer). */
  sent: boolean;
  cleanup: () => void;
}

const DEFAULT_TIMEOUT_MS = 10_000;
const AUTH_FAILURES_BEFORE_GIVING_UP = 3;

/**
 * A device's connection to the chatmesh gateway: authenticates, keeps the connection up
 * (reconnects with backoff and resumes from the last seq it saw in each conversation, so that no
 * event is lost or delivered twice), correlates requests with their answers, and pushes events
 * to listeners.
 */
export class ChatmeshClient {
  private readonly opts: ChatmeshClientOptions;
  private readonly factory: WebSocketFactory;
  private readonly emitter = new Emitter<ClientEvents>();
  private readonly binary: boolean;
  private readonly timeoutMs: number;
  private readonly reconnectOpts: Required<ReconnectOptions> | undefined;

  private ws: WebSocketLike | undefined;
  private stateValue: ConnectionState = "idle";
  private readyValue: Ready | undefined;
  private readonly cursorMap = new Map<string, bigint>();
  private readonly pending = new Map<string, Pending>();
  private readonly watched = new Set<string>();
  private nextId = 0;
  private attempts = 0;
  private authFailures = 0;
  private tokenValue: string | undefined;
  private forceRefresh = false;
  private authRequestId = "";
  private resumeRequestId = "";
  private lastServerError: ChatmeshError | undefined;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private keepaliveTimer: ReturnType<typeof setInterval> | undefined;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  private connectWaiters: { resolve: (r: Ready) => void; reject: (e: unknown) => void }[] = [];

  constructor(options: ChatmeshClientOptions) {
    this.opts = options;
    this.factory = webSocketFactory(options.webSocket);
    this.binary = options.encoding === "binary";
    this.timeoutMs = options.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.reconnectOpts =
      options.reconnect === false
        ? undefined
        : {
            initialDelayMs: options.reconnect?.initialDelayMs ?? 250,
            maxDelayMs: options.reconnect?.maxDelayMs ?? 30_000,
            maxAttempts: options.reconnect?.maxAttempts ?? Number.POSITIVE_INFINITY,
            jitter: options.reconnect?.jitter ?? true,
          };
    if (typeof options.token === "string") this.tokenValue = options.token;
    if (options.cursors) {
      const entries =
        Symbol.iterator in options.cursors
          ? (options.cursors as Iterable<[string, bigint | number]>)
          : Object.entries(options.cursors);
      for (const [conversationId, seq] of entries) this.setCursor(conversationId, seq);
    }
  }

  // -- connection -------------------------------------------------------------------------------

  /** The connection's state. */
  get state(): ConnectionState {
    return this.stateValue;
  }

  /** The last `ready` (user and device of the token), once authenticated. */
  get ready(): Ready | undefined {
    return this.readyValue;
  }

  /**
   * Connects (if not yet) and resolves once authenticated. Failed attempts are retried with
   * backoff; it rejects only when the client gives up (refused token with no refresher, too many
   * attempts, or `close()`).
   */
  connect(): Promise<Ready> {
    if (this.stateValue === "open" && this.readyValue) return Promise.resolve(this.readyValue);
    if (this.stateValue === "closed") {
      return Promise.reject(this.localError(ErrorCode.CANCELLED, "the client is closed"));
    }
    const promise = new Promise<Ready>((resolve, reject) => {
      this.connectWaiters.push({ resolve, reject });
    });
    if (this.stateValue === "idle") {
      this.setState("connecting");
      void this.openSocket();
    }
    return promise;
  }

  /** Closes the connection for good; pending requests reject with CANCELLED. */
  close(): void {
    if (this.stateValue === "closed") return;
    this.setState("closed");
    this.clearTimers();
    const ws = this.ws;
    this.ws = undefined;
    if (ws) {
      detach(ws);
      try {
        ws.close(1000, "client closed");
      } catch {
        // already closing
      }
    }
    for (const p of [...this.pending.values()]) {
      this.settle(p, undefined, this.localError(ErrorCode.CANCELLED, "the client was closed"));
    }
    this.failConnectWaiters(this.localError(ErrorCode.CANCELLED, "the client was closed"));
  }

  /**
   * Drops the current socket and reconnects at once (as after a network change); the new
   * connection resumes from the cursors.
   */
  reconnectNow(): void {
    if (this.stateValue === "closed") return;
    const ws = this.ws;
    if (ws) {
      this.handleClose(ws, 4000, "reconnect requested");
      try {
        ws.close(1000, "reconnecting");
      } catch {
        // already closing
      }
    }
    if (this.reconnectTimer !== undefined) {
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = undefined;
      void this.openSocket();
    }
  }

  // -- cursors ----------------------------------------------------------------------------------

  /** The last seq seen per conversation (store it to resume in a later run). */
  cursors(): Map<string, bigint> {
    return new Map(this.cursorMap);
  }

  /** The last seq seen in a conversation (0 when none). */
  cursor(conversationId: string): bigint {
    return this.cursorMap.get(conversationId) ?? 0n;
  }

  /**
   * Records that the app holds a conversation up to `seq` (e.g. after loading its history), so
   * a reconnection resumes it from there and events up to `seq` are dropped as seen. Never
   * moves a cursor back.
   */
  setCursor(conversationId: string, seq: bigint | number): void {
    const value = BigInt(seq);
    if (value > (this.cursorMap.get(conversationId) ?? 0n)) {
      this.cursorMap.set(conversationId, value);
    }
  }

  /** Forgets a conversation's cursor (e.g. after leaving it). */
  forgetCursor(conversationId: string): void {
    this.cursorMap.delete(conversationId);
  }

  // -- listeners --------------------------------------------------------------------------------

  on<K extends keyof ClientEvents>(
    name: K,
    listener: (...args: ClientEvents[K]) => void,
  ): Unsubscribe {
    return this.emitter.on(name, listener);
  }

  once<K extends keyof ClientEvents>(
    name: K,
    listener: (...args: ClientEvents[K]) => void,
  ): Unsubscribe {
    return this.emitter.once(name, listener);
  }

  /** Every conversation event (each (conversation, seq) once). */
  onEvent(listener: (event: ConversationEvent) => void): Unsubscribe {
    return this.on("event", listener);
  }

  /** New messages. */
  onMessage(listener: (message: Message, event: ConversationEvent) => void): Unsubscribe {
    return this.on("message", listener);
  }

  onMessageEdited(listener: (message: Message, event: ConversationEvent) => void): Unsubscribe {
    return this.on("messageEdited", listener);
  }

  onMessageDeleted(listener: (message: Message, event: ConversationEvent) => void): Unsubscribe {
    return this.on("messageDeleted", listener);
  }

  onMembershipChanged(
    listener: (change: MembershipChanged, event: ConversationEvent) => void,
  ): Unsubscribe {
    return this.on("membershipChanged", listener);
  }

  onReceipt(listener: (receipt: ReceiptMoved, event: ConversationEvent) => void): Unsubscribe {
    return this.on("receipt", listener);
  }

  onTyping(listener: (signal: TypingSignal) => void): Unsubscribe {
    return this.on("typing", listener);
  }

  onPresence(listener: (presence: UserPresence) => void): Unsubscribe {
    return this.on("presence", listener);
  }

  onStateChange(listener: (state: ConnectionState) => void): Unsubscribe {
    return this.on("state", listener);
  }

  onError(listener: (error: ChatmeshError) => void): Unsubscribe {
    return this.on("error", listener);
  }

  // -- requests ---------------------------------------------------------------------------------

  /**
   * Sends a request frame of `kind` and resolves with its answer, or rejects with a
   * ChatmeshError (an `error` frame, a timeout, a lost connection). Requests made while
   * disconnected wait for the next connection (within their timeout).
   */
  request<K extends RequestCase>(
    kind: K,
    value: RequestInit<K>,
    options: RequestOptions = {},
  ): Promise<ResponseOf<K>> {
    return this.rawRequest(kind, value, options) as Promise<ResponseOf<K>>;
  }

  private rawRequest(
    kind: ClientFrameCase,
    value: unknown,
    options: RequestOptions,
  ): Promise<unknown> {
    if (this.stateValue === "closed") {
      return Promise.reject(this.localError(ErrorCode.CANCELLED, "the client is closed"));
    }
    if (this.stateValue === "idle") void this.connect().catch(() => undefined);
    const id = `r${++this.nextId}`;
    const frame = create(ClientFrameSchema, {
      requestId: id,
      frame: { case: kind, value } as never,
    });
    return new Promise((resolve, reject) => {
      const timeoutMs = options.timeoutMs ?? this.timeoutMs;
      const signal = options.signal;
      const onAbort = () => {
        this.settle(p, undefined, this.localError(ErrorCode.CANCELLED, `${kind} was aborted`, id));
      };
      const p: Pending = {
        id,
        kind,
        frame,
        resolve,
        reject,
        timer: undefined,
        retryOnReconnect: options.retryOnReconnect ?? RETRY_SAFE.has(kind),
        sent: false,
        cleanup: () => signal?.removeEventListener("abort", onAbort),
      };
      if (signal?.aborted) {
        reject(this.localError(ErrorCode.CANCELLED, `${kind} was aborted`, id));
        return;
      }
      signal?.addEventListener("abort", onAbort, { once: true });
      if (timeoutMs > 0 && Number.isFinite(timeoutMs)) {
        p.timer = setTimeout(() => {
          this.settle(
            p,
            undefined,
            this.localError(
              ErrorCode.DEADLINE_EXCEEDED,
              `no answer to ${kind} within ${timeoutMs} ms`,
              id,
            ),
          );
        }, timeoutMs);
      }
      this.pending.set(id, p);
      if (this.stateValue === "open") this.sendPending(p);
    });
  }

  /** App-level ping; resolves with the round trip in milliseconds. */
  async ping(options?: RequestOptions): Promise<number> {
    const start = Date.now();
    await this.rawRequest("ping", {}, options ?? {});
    return Date.now() - start;
  }

  /**
   * Sends a message. The idempotency key (`clientMsgId`) is generated unless given and reused
   * for every retry (after a reconnection or a rate limit), so the message is stored once;
   * `duplicate` in the answer tells a retry that found it stored.
   */
  async sendMessage(
    conversationId: string,
    body: string,
    options: SendMessageOptions = {},
  ): Promise<SendMessageResponse> {
    const clientMsgId = options.clientMsgId ?? newId();
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const deadline = Date.now() + timeoutMs;
    const attachments = options.attachments ?? [];
    const init: RequestInit<"sendMessage"> = {
      conversationId,
      clientMsgId,
      body,
      kind: options.kind ?? (attachments.length ? MessageKind.MEDIA : MessageKind.TEXT),
      attachments,
      mentions: options.mentions ?? [],
      replyToSeq: options.replyToSeq === undefined ? 0n : BigInt(options.replyToSeq),
    };
    for (;;) {
      try {
        return await this.request("sendMessage", init, {
          ...options,
          timeoutMs: Math.max(1, deadline - Date.now()),
          retryOnReconnect: options.retryOnReconnect ?? true,
        });
      } catch (err) {
        const wait = err instanceof ChatmeshError ? err.retryAfterMs || 100 : 0;
        if (
          options.retryRateLimited !== false &&
          err instanceof ChatmeshError &&
          err.code === ErrorCode.RESOURCE_EXHAUSTED &&
          !err.local &&
          Date.now() + wait < deadline
        ) {
          await sleep(wait, options.signal);
          continue;
        }
        throw err;
      }
    }
  }

  /** Replaces a message's body. */
  editMessage(
    conversationId: string,
    messageSeq: bigint | number,
    body: string,
    options?: RequestOptions,
  ): Promise<EditMessageResponse> {
    return this.request(
      "editMessage",
      { conversationId, messageSeq: BigInt(messageSeq), body },
      options,
    );
  }

  /** Deletes a message (it stays as a tombstone). */
  deleteMessage(
    conversationId: string,
    messageSeq: bigint | number,
    options?: RequestOptions,
  ): Promise<DeleteMessageResponse> {
    return this.request(
      "deleteMessage",
      { conversationId, messageSeq: BigInt(messageSeq) },
      options,
    );
  }

  /**
   * A page of a conversation's messages (see docs/websocket.md, History): `direction`
   * HistoryDirection.BACKWARD scrolls back from `beforeSeq`, FORWARD reads on from `afterSeq`.
   */
  getHistory(
    request: RequestInit<"getHistory"> & Pick<GetHistoryRequest, "conversationId">,
    options?: RequestOptions,
  ): Promise<GetHistoryResponse> {
    return this.request("getHistory", request, options);
  }

  /** Moves the read marker to `seq`. */
  markRead(
    conversationId: string,
    seq: bigint | number,
    options?: RequestOptions,
  ): Promise<MarkReadResponse> {
    return this.request("markRead", { conversationId, seq: BigInt(seq) }, options);
  }

  markDelivered(
    conversationId: string,
    seq: bigint | number,
    options?: RequestOptions,
  ): Promise<MarkDeliveredResponse> {
    return this.request("markDelivered", { conversationId, seq: BigInt(seq) }, options);
  }

  /** Creates a conversation (a direct one with one member is found again if it exists). */
  createConversation(
    request: { kind?: ConversationKind; title?: string; memberIds: string[] },
    options?: RequestOptions,
  ): Promise<CreateConversationResponse> {
    return this.request(
      "createConversation",
      {
        kind: request.kind ?? ConversationKind.GROUP,
        title: request.title ?? "",
        memberIds: request.memberIds,
      },
      options,
    );
  }

  getConversation(conversationId: string, options?: RequestOptions): Promise<GetConversationResponse> {
    return this.request("getConversation", { conversationId }, options);
  }

  /** One page of the user's conversations (pass `nextPageToken` back as `pageToken`). */
  listConversations(
    request: RequestInit<"listConversations"> = {},
    options?: RequestOptions,
  ): Promise<ListConversationsResponse> {
    return this.request("listConversations", request, options);
  }

  /** All of the user's conversations (follows the pages). */
  async allConversations(
    request: { includeArchived?: boolean; pageSize?: number } = {},
    options?: RequestOptions,
  ): Promise<ConversationView[]> {
    const views: ConversationView[] = [];
    let pageToken = "";
    do {
      const page = await this.listConversations({ ...request, pageToken }, options);
      views.push(...page.conversations);
      pageToken = page.nextPageToken;
    } while (pageToken);
    return views;
  }

  /** One page of a conversation's members. */
  listMembers(
    conversationId: string,
    page: { pageSize?: number; pageToken?: string } = {},
    options?: RequestOptions,
  ): Promise<ListMembersResponse> {
    return this.request("listMembers", { conversationId, ...page }, options);
  }

  /** Every member of a conversation (follows the pages). */
  async allMembers(conversationId: string, options?: RequestOptions): Promise<Member[]> {
    const members: Member[] = [];
    let pageToken = "";
    do {
      const page = await this.listMembers(conversationId, { pageToken }, options);
      members.push(...page.members);
      pageToken = page.nextPageToken;
    } while (pageToken);
    return members;
  }

  addMembers(
    conversationId: string,
    userIds: string[],
    options?: RequestOptions,
  ): Promise<AddMembersResponse> {
    return this.request("addMembers", { conversationId, userIds }, options);
  }

  /**
   * Watches users' presence: resolves with their presence now (in the order asked); changes
   * arrive through `onPresence`. The watched set is subscribed again after a reconnection.
   */
  async presenceSubscribe(userIds: string[], options?: RequestOptions): Promise<UserPresence[]> {
    const answer = await this.request("presenceSubscribe", { userIds }, options);
    for (const id of userIds) this.watched.add(id);
    return answer.presences;
  }

  async presenceUnsubscribe(userIds: string[], options?: RequestOptions): Promise<void> {
    for (const id of userIds) this.watched.delete(id);
    await this.request("presenceUnsubscribe", { userIds }, options);
  }

  setStatus(
    status: UserStatus,
    customText = "",
    options?: RequestOptions,
  ): Promise<SetStatusResponse> {
    return this.request("setStatus", { status, customText }, options);
  }

  /** Tells the conversation's members that you are typing (or stopped); `expiresAt` back. */
  async typing(
    conversationId: string,
    typing = true,
    options?: RequestOptions,
  ): Promise<Date | undefined> {
    const answer = await this.request("typing", { conversationId, typing }, options);
    return answer.expiresAt ? timestampDate(answer.expiresAt) : undefined;
  }

  /** Asks for a presigned upload of a file to attach in a conversation. */
  createUpload(
    request: {
      conversationId: string;
      fileName: string;
      sizeBytes: bigint | number;
      contentType: string;
    },
    options?: RequestOptions,
  ): Promise<CreateUploadResponse> {
    return this.request(
      "createUpload",
      { ...request, sizeBytes: BigInt(request.sizeBytes) },
      options,
    );
  }

  /** Checks an uploaded file: its media READY (attach its id) or REJECTED. */
  completeUpload(mediaId: string, options?: RequestOptions): Promise<CompleteUploadResponse> {
    return this.request("completeUpload", { mediaId }, options);
  }

  getMedia(mediaId: string, options?: RequestOptions): Promise<GetMediaResponse> {
    return this.request("getMedia", { mediaId }, options);
  }

  /** A short-lived signed URL of an attachment (`variant` "small" / "large" for thumbnails). */
  getDownloadUrl(
    request: { mediaId: string; messageSeq: bigint | number; variant?: string },
    options?: RequestOptions,
  ): Promise<GetDownloadUrlResponse> {
    return this.request(
      "getDownloadUrl",
      {
        mediaId: request.mediaId,
        variant: request.variant ?? "",
        messageSeq: BigInt(request.messageSeq),
      },
      options,
    );
  }

  /** Searches the user's conversations. */
  search(
    request: RequestInit<"search"> & Pick<SearchRequest, "query">,
    options?: RequestOptions,
  ): Promise<SearchResponse> {
    return this.request("search", request, options);
  }

  // -- internals: sockets -----------------------------------------------------------------------

  private setState(state: ConnectionState): void {
    if (this.stateValue === state) return;
    this.stateValue = state;
    this.emitter.emit("state", state);
  }

  private async currentToken(): Promise<string> {
    if (this.forceRefresh && this.opts.refreshToken) {
      this.forceRefresh = false;
      this.tokenValue = await this.opts.refreshToken();
      return this.tokenValue;
    }
    if (typeof this.opts.token === "function") {
      this.tokenValue = await this.opts.token();
      return this.tokenValue;
    }
    return this.tokenValue ?? this.opts.token;
  }

  private async openSocket(): Promise<void> {
    if (this.stateValue === "closed") return;
    let token: string;
    try {
      token = await this.currentToken();
    } catch (err) {
      const error = this.localError(ErrorCode.UNAUTHENTICATED, `getting a token failed: ${err}`);
      this.emitter.emit("error", error);
      this.scheduleReconnect(error);
      return;
    }
    // close() may have run while the token was awaited.
    if ((this.stateValue as ConnectionState) === "closed") return;
    let ws: WebSocketLike;
    try {
      ws = this.factory(this.opts.url, ["chatmesh.v1"]);
    } catch (err) {
      const error = this.localError(ErrorCode.UNAVAILABLE, `cannot open a socket: ${err}`);
      // A malformed URL (SyntaxError from browsers and `ws`) will not get better by trying again.
      if ((err as { name?: unknown } | null)?.name === "SyntaxError") this.giveUp(error);
      else this.scheduleReconnect(error);
      return;
    }
    this.ws = ws;
    this.lastServerError = undefined;
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.authRequestId = `auth${++this.nextId}`;
      const frame = create(ClientFrameSchema, {
        requestId: this.authRequestId,
        frame: { case: "auth", value: { token } },
      });
      this.write(ws, frame);
    };
    ws.onmessage = (event) => {
      if (this.ws !== ws) return;
      let frame: ServerFrame;
      try {
        frame = this.decode(event.data);
      } catch (err) {
        this.emitter.emit(
          "error",
          this.localError(ErrorCode.INTERNAL, `cannot decode a server frame: ${err}`),
        );
        return;
      }
      this.handleFrame(ws, frame);
    };
    ws.onclose = (event) => this.handleClose(ws, event.code, event.reason);
    ws.onerror = () => {
      // A close event follows.
    };
  }

  private handleClose(ws: WebSocketLike, code: number, reason: string): void {
    if (this.ws !== ws) return;
    detach(ws);
    this.ws = undefined;
    this.stopTimersOfSocket();
    // Requests sent on this socket: send again on the next one when that is safe.
    for (const p of [...this.pending.values()]) {
      if (!p.sent) continue;
      if (p.retryOnReconnect && this.reconnectOpts) {
        p.sent = false;
      } else {
        this.settle(
          p,
          undefined,
          this.localError(
            ErrorCode.UNAVAILABLE,
            `the connection closed (${code}) before ${p.kind} was answered`,
            p.id,
          ),
        );
      }
    }
    if (this.stateValue === "closed") return;
    const error = this.lastServerError;
    const authRefused =
      error?.code === ErrorCode.UNAUTHENTICATED || (code === 1008 && !this.readyWasReceived);
    this.readyWasReceived = false;
    let fatal: ChatmeshError | undefined;
    if (authRefused) {
      this.authFailures++;
      if (!this.opts.refreshToken && typeof this.opts.token === "string") {
        fatal = error ?? this.localError(ErrorCode.UNAUTHENTICATED, `the token was refused`);
      } else if (this.authFailures >= AUTH_FAILURES_BEFORE_GIVING_UP) {
        fatal = error ?? this.localError(ErrorCode.UNAUTHENTICATED, `the token was refused`);
      } else {
        this.forceRefresh = true;
      }
    }
    const willReconnect = !fatal && this.reconnectOpts !== undefined;
    this.emitter.emit("disconnected", { code, reason, willReconnect, error });
    if (fatal || !this.reconnectOpts) {
      this.giveUp(fatal ?? this.localError(ErrorCode.UNAVAILABLE, `the connection closed (${code})`));
      return;
    }
    this.scheduleReconnect(error);
  }

  private readyWasReceived = false;

  private scheduleReconnect(error: ChatmeshError | undefined): void {
    if (this.stateValue === "closed") return;
    const opts = this.reconnectOpts;
    if (!opts) {
      this.giveUp(error ?? this.localError(ErrorCode.UNAVAILABLE, "the connection failed"));
      return;
    }
    this.attempts++;
    if (this.attempts > opts.maxAttempts) {
      this.giveUp(
        error ??
          this.localError(ErrorCode.UNAVAILABLE, `no connection after ${opts.maxAttempts} attempts`),
      );
      return;
    }
    this.setState(this.readyValue ? "reconnecting" : "connecting");
    let delay = Math.min(opts.maxDelayMs, opts.initialDelayMs * 2 ** (this.attempts - 1));
    if (opts.jitter) delay = delay / 2 + Math.random() * (delay / 2);
    if (error?.retryAfterMs) delay = Math.max(delay, error.retryAfterMs);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.openSocket();
    }, delay);
  }

  private giveUp(error: ChatmeshError): void {
    this.failConnectWaiters(error);
    this.emitter.emit("error", error);
    this.close();
  }

  private failConnectWaiters(error: unknown): void {
    const waiters = this.connectWaiters;
    this.connectWaiters = [];
    for (const w of waiters) w.reject(error);
  }

  private handleFrame(ws: WebSocketLike, frame: ServerFrame): void {
    const body = frame.frame;
    if (
      frame.requestId &&
      (frame.requestId === this.authRequestId || frame.requestId === this.resumeRequestId)
    ) {
      this.handleAuthAnswer(ws, frame);
      return;
    }
    if (frame.requestId) {
      const p = this.pending.get(frame.requestId);
      if (!p) return; // timed out or cancelled meanwhile
      if (body.case === "error") {
        this.settle(p, undefined, this.serverError(frame));
        return;
      }
      const expected = ANSWER_CASE[p.kind] ?? p.kind;
      if (body.case !== expected) {
        this.settle(
          p,
          undefined,
          this.localError(
            ErrorCode.INTERNAL,
            `${p.kind} was answered by ${body.case ?? "an empty frame"}`,
            p.id,
          ),
        );
        return;
      }
      this.settle(p, body.value);
      return;
    }
    switch (body.case) {
      case "event":
        this.handleEvent(body.value);
        return;
      case "presenceEvent":
        this.emitter.emit("presence", body.value);
        return;
      case "ready":
        // Ready after a header token (not used by this client) or a re-sent one.
        this.readyValue = body.value;
        return;
      case "error": {
        const error = this.serverError(frame);
        this.lastServerError = error;
        this.emitter.emit("error", error);
        return;
      }
      default:
        return;
    }
  }

  private handleAuthAnswer(ws: WebSocketLike, frame: ServerFrame): void {
    const body = frame.frame;
    if (body.case === "error") {
      const error = this.serverError(frame);
      if (frame.requestId === this.resumeRequestId) {
        // A refused resume (e.g. a bad cursor) leaves the socket open with live events.
        this.emitter.emit("error", error);
        return;
      }
      this.lastServerError = error;
      this.emitter.emit("error", error);
      // The server closes (1008) after a refused token; make sure the socket goes.
      if (error.code !== ErrorCode.UNAUTHENTICATED) ws.close(1000, "auth failed");
      return;
    }
    if (body.case === "resumed") {
      for (const id of body.value.revokedConversationIds) this.cursorMap.delete(id);
      this.emitter.emit("resumed", { revokedConversationIds: [...body.value.revokedConversationIds] });
      return;
    }
    if (body.case !== "ready") return;
    this.readyValue = body.value;
    this.readyWasReceived = true;
    this.attempts = 0;
    this.authFailures = 0;
    this.setState("open");
    // The first frame after auth: resume from the cursors. The server replays what came after
    // each of them (and, for the other conversations, what came since authentication) before
    // any live event, then answers `resumed`.
    this.resumeRequestId = `resume${++this.nextId}`;
    this.write(
      ws,
      create(ClientFrameSchema, {
        requestId: this.resumeRequestId,
        frame: {
          case: "resume",
          value: {
            cursors: [...this.cursorMap].map(([conversationId, seq]) => ({ conversationId, seq })),
          },
        },
      }),
    );
    this.emitter.emit("ready", body.value);
    const waiters = this.connectWaiters;
    this.connectWaiters = [];
    for (const w of waiters) w.resolve(body.value);
    if (this.watched.size > 0) {
      // This socket watches nobody yet: subscribe the watched set again (its answer is pushed
      // to onPresence so that listeners learn the current state).
      const userIds = [...this.watched];
      this.rawRequest("presenceSubscribe", { userIds }, {})
        .then((answer) => {
          for (const presence of (answer as { presences: UserPresence[] }).presences) {
            this.emitter.emit("presence", presence);
          }
        })
        .catch((err: unknown) => {
          if (err instanceof ChatmeshError) this.emitter.emit("error", err);
        });
    }
    for (const p of this.pending.values()) {
      if (!p.sent) this.sendPending(p);
    }
    this.startKeepalive(ws, body.value);
    this.scheduleTokenRefresh();
  }

  private handleEvent(event: ConversationEvent): void {
    if (event.seq > 0n) {
      const last = this.cursorMap.get(event.conversationId) ?? 0n;
      if (event.seq <= last) {
        this.emitter.emit("duplicate", event);
        return;
      }
      this.cursorMap.set(event.conversationId, event.seq);
    }
    this.emitter.emit("event", event);
    const payload = event.payload;
    switch (payload.case) {
      case "messageCreated":
        if (payload.value.message) this.emitter.emit("message", payload.value.message, event);
        break;
      case "messageEdited":
        if (payload.value.message) this.emitter.emit("messageEdited", payload.value.message, event);
        break;
      case "messageDeleted":
        if (payload.value.message) {
          this.emitter.emit("messageDeleted", payload.value.message, event);
        }
        break;
      case "membershipChanged":
        this.emitter.emit("membershipChanged", payload.value, event);
        break;
      case "receiptMoved":
        this.emitter.emit("receipt", payload.value, event);
        break;
      case "conversationCreated":
        if (payload.value.conversation) {
          this.emitter.emit("conversationCreated", payload.value.conversation, event);
        }
        break;
      case "conversationUpdated":
        if (payload.value.conversation) {
          this.emitter.emit("conversationUpdated", payload.value.conversation, event);
        }
        break;
      case "typingChanged":
        this.emitter.emit("typing", {
          conversationId: event.conversationId,
          userId: payload.value.userId,
          typing: payload.value.typing,
          expiresAt: payload.value.expiresAt ? timestampDate(payload.value.expiresAt) : undefined,
          event,
        });
        break;
      default:
        break;
    }
  }

  private sendPending(p: Pending): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN) return;
    p.sent = true;
    this.write(ws, p.frame);
  }

  private write(ws: WebSocketLike, frame: ClientFrame): void {
    try {
      if (this.binary) ws.send(toBinary(ClientFrameSchema, frame));
      else ws.send(toJsonString(ClientFrameSchema, frame));
    } catch {
      // The socket is going away; its close event requeues or fails the request.
    }
  }

  private decode(data: unknown): ServerFrame {
    if (typeof data === "string") {
      return fromJsonString(ServerFrameSchema, data, { ignoreUnknownFields: true });
    }
    if (data instanceof ArrayBuffer) return fromBinary(ServerFrameSchema, new Uint8Array(data));
    if (ArrayBuffer.isView(data)) {
      return fromBinary(
        ServerFrameSchema,
        new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
      );
    }
    throw new TypeError(`unexpected message data (${typeof data})`);
  }

  private settle(p: Pending, value: unknown, error?: ChatmeshError): void {
    if (this.pending.get(p.id) !== p) return;
    this.pending.delete(p.id);
    if (p.timer !== undefined) clearTimeout(p.timer);
    p.cleanup();
    if (error) p.reject(error);
    else p.resolve(value);
  }

  private serverError(frame: ServerFrame): ChatmeshError {
    const body = frame.frame;
    if (body.case !== "error") {
      return this.localError(ErrorCode.INTERNAL, "not an error frame", frame.requestId);
    }
    return new ChatmeshError({
      code: body.value.code,
      message: body.value.message,
      retryAfterMs: body.value.retryAfterMs,
      requestId: frame.requestId,
    });
  }

  private localError(code: ErrorCode, message: string, requestId = ""): ChatmeshError {
    return new ChatmeshError({ code, message, requestId, local: true });
  }

  // -- internals: timers ------------------------------------------------------------------------

  private startKeepalive(ws: WebSocketLike, ready: Ready): void {
    const interval = this.opts.keepaliveMs ?? (ready.heartbeatIntervalMs || 25_000);
    if (!interval) return;
    if (this.keepaliveTimer !== undefined) clearInterval(this.keepaliveTimer);
    this.keepaliveTimer = setInterval(() => {
      if (this.ws !== ws) return;
      this.rawRequest("ping", {}, { timeoutMs: interval, retryOnReconnect: false }).catch(
        (err: unknown) => {
          // No pong in time: the connection is dead even if the socket does not know yet.
          if (
            err instanceof ChatmeshError &&
            err.code === ErrorCode.DEADLINE_EXCEEDED &&
            this.ws === ws
          ) {
            this.handleClose(ws, 4000, "keepalive timed out");
            try {
              ws.close(1000, "keepalive timed out");
            } catch {
              // already closing
            }
          }
        },
      );
    }, interval);
    unrefTimer(this.keepaliveTimer);
  }

  private scheduleTokenRefresh(): void {
    if (this.refreshTimer !== undefined) clearTimeout(this.refreshTimer);
    this.refreshTimer = undefined;
    const refresh = this.opts.refreshToken;
    const exp = this.tokenValue ? tokenExpiry(this.tokenValue) : undefined;
    if (!refresh || exp === undefined) return;
    const left = exp - Date.now();
    // Refresh a fifth of the lifetime left before expiry, at most a minute early.
    const delay = Math.max(1_000, left - Math.min(60_000, left / 5));
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = undefined;
      void this.refreshOnSocket();
    }, delay);
    unrefTimer(this.refreshTimer);
  }

  private async refreshOnSocket(): Promise<void> {
    const refresh = this.opts.refreshToken;
    if (!refresh || this.stateValue !== "open") return;
    try {
      const token = await refresh();
      this.tokenValue = token;
      await this.rawRequest("auth", { token }, { retryOnReconnect: false });
      this.scheduleTokenRefresh();
    } catch (err) {
      this.emitter.emit(
        "error",
        err instanceof ChatmeshError
          ? err
          : this.localError(ErrorCode.UNAUTHENTICATED, `refreshing the token failed: ${err}`),
      );
      // The next connection asks for a fresh token again.
      this.forceRefresh = true;
    }
  }

  private stopTimersOfSocket(): void {
    if (this.keepaliveTimer !== undefined) clearInterval(this.keepaliveTimer);
    this.keepaliveTimer = undefined;
    if (this.refreshTimer !== undefined) clearTimeout(this.refreshTimer);
    this.refreshTimer = undefined;
  }

  private clearTimers(): void {
    this.stopTimersOfSocket();
    if (this.reconnectTimer !== undefined) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
  }
}

// -- utilities ----------------------------------------------------------------------------------

function detach(ws: WebSocketLike): void {
  ws.onopen = null;
  ws.onmessage = null;
  ws.onclose = null;
  ws.onerror = () => undefined;
}

function unrefTimer(timer: unknown): void {
  // Node: do not keep the process alive for a keepalive or a refresh alone.
  (timer as { unref?: () => void }).unref?.();
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        reject(new ChatmeshError({ code: ErrorCode.CANCELLED, message: "aborted", local: true }));
      },
      { once: true },
    );
  });
}

/** A random id (UUID v4 where crypto.randomUUID exists). */
export function newId(): string {
  const c = (globalThis as { crypto?: Crypto }).crypto;
  if (c?.randomUUID) return c.randomUUID();
  const bytes = new Uint8Array(16);
  if (c?.getRandomValues) c.getRandomValues(bytes);
  else for (let i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256);
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The `exp` claim of a JWT in milliseconds, if it can be read. */
export function tokenExpiry(token: string): number | undefined {
  const part = token.split(".")[1];
  if (!part) return undefined;
  try {
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
    const exp = (JSON.parse(json) as { exp?: unknown }).exp;
    return typeof exp === "number" ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}
