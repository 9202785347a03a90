import { ErrorCode } from "./gen/chatmesh/gateway/v1/gateway_pb.js";

export { ErrorCode };

export interface ChatmeshErrorInit {
  code: ErrorCode;
  message: string;
  retryAfterMs?: number;
  requestId?: string;
  /** True when the client produced the error (timeout, lost connection), not an `error` frame. */
  local?: boolean;
  cause?: unknown;
}

/**
 * A request failed: the gateway answered an `error` frame (codes follow gRPC's status codes), or
 * the client gave up (DEADLINE_EXCEEDED for a timeout, UNAVAILABLE when the connection was lost
 * and the request could not be retried safely, CANCELLED when the client was closed).
 *
 * `message` is the text as the server worded it; `codeName` is e.g. "INVALID_ARGUMENT".
 */
export class ChatmeshError extends Error {
  override readonly name = "ChatmeshError";
  readonly code: ErrorCode;
  /** For RESOURCE_EXHAUSTED: when to try again (0 when the server gave no hint). */
  readonly retryAfterMs: number;
  readonly requestId: string;
  readonly local: boolean;

  constructor(init: ChatmeshErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.code = init.code;
    this.retryAfterMs = init.retryAfterMs ?? 0;
    this.requestId = init.requestId ?? "";
    this.local = init.local ?? false;
  }

  /** The code's name, e.g. "INVALID_ARGUMENT". */
  get codeName(): string {
    return errorCodeName(this.code);
  }

  override toString(): string {
    return `${this.name} ${this.codeName}: ${this.message}`;
  }
}

export function errorCodeName(code: ErrorCode): string {
  return (ErrorCode[code] as string | undefined) ?? `CODE_${code}`;
}

export function isChatmeshError(value: unknown, code?: ErrorCode): value is ChatmeshError {
  return value instanceof ChatmeshError && (code === undefined || value.code === code);
}
