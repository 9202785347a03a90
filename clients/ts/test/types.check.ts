// Compile-time checks of the public types (`npm run typecheck`; never run).
import {
  ChatmeshClient,
  ChatmeshError,
  ErrorCode,
  HistoryDirection,
  type ConversationEvent,
  type GetHistoryResponse,
  type RemoveMemberResponse,
  type ResponseOf,
  type SendMessageResponse,
  type UserPresence,
} from "../src/index.js";

declare const client: ChatmeshClient;

export async function checks(): Promise<void> {
  const sent: SendMessageResponse = await client.sendMessage("c", "hi", { replyToSeq: 3 });
  const seq: bigint | undefined = sent.message?.seq;
  const page: GetHistoryResponse = await client.getHistory({
    conversationId: "c",
    direction: HistoryDirection.BACKWARD,
    beforeSeq: 10n,
  });
  const removed: RemoveMemberResponse = await client.request("removeMember", {
    conversationId: "c",
    userId: "u",
  });
  const pong: ResponseOf<"ping"> = await client.request("ping", {});
  // @ts-expect-error: unknown field of the request
  await client.request("removeMember", { conversationId: "c", nope: 1 });
  // @ts-expect-error: auth is the client's own business
  await client.request("auth", { token: "t" });
  const off = client.onEvent((event: ConversationEvent) => event.seq);
  client.onPresence((p: UserPresence) => p.userId);
  client.on("disconnected", (info) => info.willReconnect);
  off();
  try {
    await client.ping();
  } catch (err) {
    if (err instanceof ChatmeshError && err.code === ErrorCode.RESOURCE_EXHAUSTED) {
      const wait: number = err.retryAfterMs;
      void wait;
    }
  }
  void [seq, page, removed, pong];
}
