"""chatmesh-socket.js on its own, in the browser against `chatmesh dev`: answers matched to their
requests, reconnecting and resuming from the cursors after a drop, and duplicates dropped."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Page

from tests.media.support import Dev

pytestmark = pytest.mark.browser

SETUP = """async () => {
  const { ChatmeshSocket } = await import("/chatmesh-socket.js");
  const token = async () => {
    await window.hold;
    const reply = await fetch("/dev/token?user=erin&device=module-test");
    return (await reply.json()).token;
  };
  window.hold = Promise.resolve();
  window.seen = [];
  window.states = [];
  const sock = new ChatmeshSocket(`ws://${location.host}/v1/ws`, token);
  sock.addEventListener("event", (e) => {
    const created = e.detail.messageCreated;
    if (created) window.seen.push([Number(e.detail.seq), created.message.body]);
  });
  sock.addEventListener("state", (e) => window.states.push(e.detail.state));
  window.sock = sock;
  sock.connect();
}"""


async def ready_count(page: Page) -> int:
    count: int = await page.evaluate("window.states.filter((s) => s === 'ready').length")
    return count


async def test_requests_reconnect_resume_and_dedupe(browser: Browser, dev: Dev) -> None:
    page = await browser.new_page()
    page.set_default_timeout(10_000)
    await page.goto(f"http://127.0.0.1:{dev.system.gateway.port}/")
    await page.evaluate(SETUP)
    await page.wait_for_function("window.states.includes('ready')")

    frank = await dev.connect("frank")
    cid = await frank.create_group("erin", title="module")
    for n in range(1, 6):
        await frank.call("send_message", conversation_id=cid, client_msg_id=f"a{n}", body=f"a{n}")
    await page.wait_for_function("window.seen.length === 5")

    # Concurrent requests: each answer reaches its own caller.
    sizes = await page.evaluate(
        """async (cid) => {
          const direction = "HISTORY_DIRECTION_BACKWARD";
          const pages = await Promise.all([5, 1, 4, 2, 3].map((limit) =>
            window.sock.request("getHistory", { conversationId: cid, direction, limit })));
          return pages.map((p) => p.messages.length);
        }""",
        cid,
    )
    assert sizes == [5, 1, 4, 2, 3]
    error = await page.evaluate(
        """async () => {
          try { await window.sock.request("getHistory", { conversationId: "nope" }); }
          catch (e) { return e.code; }
        }"""
    )
    assert error in ("ERROR_CODE_NOT_FOUND", "ERROR_CODE_PERMISSION_DENIED")

    # The socket drops; messages sent meanwhile arrive after the reconnect, once each.
    await page.evaluate(
        """() => {
          window.hold = new Promise((resolve) => { window.release = resolve; });
          window.sock.ws.close(4000);
        }"""
    )
    await page.wait_for_function("window.states.at(-1) === 'disconnected'")
    for n in range(1, 4):
        await frank.call("send_message", conversation_id=cid, client_msg_id=f"b{n}", body=f"b{n}")
    await page.evaluate("window.release()")
    await page.wait_for_function("window.seen.length === 8")
    assert await ready_count(page) == 2

    # A replay from the start brings nothing twice.
    await page.evaluate(
        """(cid) => window.sock.request(
          "resume", { cursors: [{ conversationId: cid, seq: "0" }] })""",
        cid,
    )
    await frank.call("send_message", conversation_id=cid, client_msg_id="c1", body="c1")
    await page.wait_for_function("window.seen.length >= 9")
    seen = await page.evaluate("window.seen")
    bodies = [body for _seq, body in seen]
    assert bodies == ["a1", "a2", "a3", "a4", "a5", "b1", "b2", "b3", "c1"]
    seqs = [seq for seq, _body in seen]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

    # A fresh token in an `auth` frame: its `ready` answers the request, not a new session.
    renewed = await page.evaluate(
        """async () => {
          const reply = await fetch("/dev/token?user=erin&device=module-test");
          const answer = await window.sock.request("auth", { token: (await reply.json()).token });
          return [answer.userId, answer.deviceId];
        }"""
    )
    assert renewed == ["erin", "module-test"]
    assert await ready_count(page) == 2
    await frank.close()
    await page.close()
