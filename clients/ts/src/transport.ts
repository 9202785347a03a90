/**
 * The socket the client speaks through: the subset of the browser WebSocket API it uses. The
 * browser's WebSocket, Node 22+'s global WebSocket and the `ws` package's WebSocket all fit.
 */
export interface WebSocketLike {
  readonly readyState: number;
  readonly protocol?: string;
  binaryType: string;
  send(data: string | ArrayBufferLike | Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string; wasClean?: boolean }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

/** Opens a socket to `url` offering `protocols`. */
export type WebSocketFactory = (url: string, protocols: string[]) => WebSocketLike;

/** A WebSocket class (`new WebSocket(url, protocols)`), such as `WebSocket` from `ws`. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => unknown;

export const OPEN = 1;

/** The factory for a class, or the global WebSocket when none is given. */
export function webSocketFactory(
  transport?: WebSocketFactory | WebSocketConstructor,
): WebSocketFactory {
  if (transport) {
    if (isConstructor(transport)) {
      const Ctor = transport;
      return (url, protocols) => new Ctor(url, protocols) as WebSocketLike;
    }
    return transport as WebSocketFactory;
  }
  const Global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (!Global) {
    throw new TypeError(
      "no global WebSocket (Node before 22): pass one as the `webSocket` option, " +
        "e.g. `import WebSocket from \"ws\"`",
    );
  }
  return (url, protocols) => new Global(url, protocols) as WebSocketLike;
}

function isConstructor(value: unknown): value is WebSocketConstructor {
  // Classes have a prototype with methods; arrow-function factories have none.
  return (
    typeof value === "function" &&
    value.prototype !== undefined &&
    typeof (value.prototype as { send?: unknown }).send === "function"
  );
}
