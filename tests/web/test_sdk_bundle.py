"""The SDK's browser bundle (chatmesh-sdk.js, built from clients/ts) on its own, in the browser
against `chatmesh dev`: it loads as an ES module over the browser's WebSocket, answers reach
their requests, and after a drop it reconnects and resumes from its cursors with duplicates
dropped."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Page

from tests.media.support import Dev

pytestmark = pytest.mark.browser

SETUP = """async () => {
  const sdk = await import("/chatmesh-sdk.js");
  const token = async () => {
    await window.hold;
    const reply = await fetch("/dev/token?user=erin&device=bundle-test");
    return (await reply.json()).token;
  };
  window.sdk = sdk;
  window.hold = Promise.resolve();
  window.seen = [];
  window.states = [];
  window.readies = 0;
  window.duplicates = 0;
  const client = new sdk.ChatmeshClient({
    url: `ws://${location.host}/v1/ws`,
    token,
    reconnect: { initialDelayMs: 50, maxDelayMs: 500 },
  });
  client.onMessage((message, event) => window.seen.push([Number(event.seq), message.body]));
  client.on("duplicate", () => { window.duplicates += 1; });
  client.on("ready", () => { window.readies += 1; });
  client.onStateChange((state) => window.states.push(state));
  window.client = client;
  await client.connect();
}"""


async def readies(page: Page) -> int:
    count: int = await page.evaluate("window.readies")
    return count


async def test_requests_reconnect_resume_and_dedupe(browser: Browser, dev: Dev) -> None:
    page = await browser.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(f"http://127.0.0.1:{dev.system.gateway.port}/")
    await page.evaluate(SETUP)
    assert await readies(page) == 1

    frank = await dev.connect("frank")
    cid = await frank.create_group("erin", title="bundle")
    for n in range(1, 6):
        await frank.call("send_message", conversation_id=cid, client_msg_id=f"a{n}", body=f"a{n}")
    await page.wait_for_function("window.seen.length === 5")

    # Concurrent requests: each answer reaches its own caller.
    sizes = await page.evaluate(
        """async (cid) => {
          const direction = window.sdk.HistoryDirection.BACKWARD;
          const pages = await Promise.all([5, 1, 4, 2, 3].map((limit) =>
            window.client.getHistory({ conversationId: cid, direction, limit })));
          return pages.map((p) => p.messages.length);
        }""",
        cid,
    )
    assert sizes == [5, 1, 4, 2, 3]
    error = await page.evaluate(
        """async () => {
          try { await window.client.getHistory({ conversationId: "nope" }); }
          catch (e) { return e.codeName; }
        }"""
    )
    assert error in ("NOT_FOUND", "PERMISSION_DENIED")

    # The socket drops; messages sent meanwhile arrive after the reconnect, once each.
    await page.evaluate(
        """() => {
          window.hold = new Promise((resolve) => { window.release = resolve; });
          window.client.reconnectNow();
        }"""
    )
    await page.wait_for_function("window.client.state !== 'open'")
    for n in range(1, 4):
        await frank.call("send_message", conversation_id=cid, client_msg_id=f"b{n}", body=f"b{n}")
    await page.evaluate("window.release()")
    await page.wait_for_function("window.seen.length === 8")
    assert await readies(page) == 2

    # A replay from the start brings nothing twice.
    await page.evaluate(
        """(cid) => window.client.request(
          "resume", { cursors: [{ conversationId: cid, seq: 0n }] })""",
        cid,
    )
    await frank.call("send_message", conversation_id=cid, client_msg_id="c1", body="c1")
    await page.wait_for_function("window.seen.length >= 9")
    seen = await page.evaluate("window.seen")
    bodies = [body for _seq, body in seen]
    assert bodies == ["a1", "a2", "a3", "a4", "a5", "b1", "b2", "b3", "c1"]
    seqs = [seq for seq, _body in seen]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert await page.evaluate("window.duplicates") >= 8  # the replayed a1..b3
    assert not errors, errors
    await page.evaluate("window.client.close()")
    await frank.close()
    await page.close()
