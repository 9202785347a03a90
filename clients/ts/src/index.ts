export {
  ChatmeshClient,
  newId,
  tokenExpiry,
  type AnswerCase,
  type ChatmeshClientOptions,
  type ClientEvents,
  type ClientFrameCase,
  type ConnectionState,
  type DisconnectInfo,
  type ReconnectOptions,
  type RequestCase,
  type RequestInit,
  type RequestOf,
  type RequestOptions,
  type ResponseOf,
  type SendMessageOptions,
  type ServerFrameCase,
  type TokenSource,
  type TypingSignal,
} from "./client.js";
export { ChatmeshError, ErrorCode, errorCodeName, isChatmeshError } from "./errors.js";
export type { Unsubscribe } from "./emitter.js";
// Timestamps (createdAt, expiresAt, ...) arrive as google.protobuf.Timestamp messages.
export { timestampDate, timestampMs } from "@bufbuild/protobuf/wkt";
export type {
  WebSocketConstructor,
  WebSocketFactory,
  WebSocketLike,
} from "./transport.js";

// The protocol's messages and enums most apps use.
export * from "./gen/chatmesh/gateway/v1/gateway_pb.js";
export * from "./gen/chatmesh/chat/v1/types_pb.js";
export * from "./gen/chatmesh/chat/v1/chat_service_pb.js";
export * from "./gen/chatmesh/events/v1/events_pb.js";
export * from "./gen/chatmesh/presence/v1/presence_service_pb.js";
export * from "./gen/chatmesh/media/v1/media_service_pb.js";
export * from "./gen/chatmesh/search/v1/search_service_pb.js";
