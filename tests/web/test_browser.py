"""The web client in a real browser against `chatmesh dev`: two users in two browser contexts.

One scenario, in steps, so the browser and dev start once: alice creates a group with bob and
writes; bob sees it live with an unread count and reads it (alice sees the receipt); bob types
and alice sees it; alice edits and deletes; alice attaches a PNG and bob sees its thumbnail;
search finds a message; a page of older history loads on scrolling up. The screenshot of the
two-user chat is written to docs/web-client.png when CHATMESH_WEB_SCREENSHOT is set.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
from pathlib import Path

import pytest
from PIL import Image
from playwright.async_api import Browser, FilePayload, Locator, Page, expect

from tests.gateway.client import ServerError
from tests.media.support import Dev

pytestmark = pytest.mark.browser

TIMEOUT_MS = 10_000
# Script errors and console errors of each user's page: none is expected.
ERRORS: dict[str, list[str]] = {}
# The frames each user's page sent, as JSON text.
SENT: dict[str, list[str]] = {}
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "web-client.png"


def png(width: int = 96, height: int = 64) -> bytes:
    image = Image.new("RGB", (width, height), (40, 120, 200))
    for x in range(width // 2):
        for y in range(height):
            image.putpixel((x, y), (230, 160, 40))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


async def signed_in(browser: Browser, dev: Dev, user: str) -> Page:
    context = await browser.new_context(viewport={"width": 900, "height": 560})
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    sent = SENT.setdefault(user, [])
    page.on("websocket", lambda ws: ws.on("framesent", lambda frame: sent.append(str(frame))))
    errors = ERRORS.setdefault(user, [])
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await page.goto(f"http://127.0.0.1:{dev.system.gateway.port}/")
    await page.fill("#signin-user", user)
    await page.click("#signin button")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "ready")
    assert not errors, errors
    return page


def message(page: Page, text: str) -> Locator:
    return page.locator("li.msg", has_text=text)


async def test_two_users_chat_in_the_browser(browser: Browser, dev: Dev) -> None:
    alice = await signed_in(browser, dev, "alice")
    bob = await signed_in(browser, dev, "bob")

    # alice creates a group with bob and writes.
    await alice.fill("#group-title", "Launch")
    await alice.fill("#group-members", "bob")
    await alice.click("#new-group button")
    await expect(alice.locator("#chat-title")).to_have_text("Launch")
    await expect(alice.locator('#members li[data-user="bob"]')).to_have_attribute(
        "data-presence", "online"
    )
    await alice.fill("#text", "hello bob, the launch is on friday")
    await alice.press("#text", "Enter")
    await expect(message(alice, "the launch is on friday")).to_be_visible()

    # bob sees it live in his list with an unread count, opens it, and it is read.
    conversation = bob.locator("li.conversation", has_text="Launch")
    await expect(conversation.locator(".unread")).to_have_text("1")
    await conversation.click()
    await expect(message(bob, "the launch is on friday")).to_be_visible()
    await expect(conversation.locator(".unread")).to_have_count(0)
    await expect(message(alice, "the launch is on friday").locator(".receipt")).to_have_text(
        "read by bob"
    )

    # bob types; alice sees it.
    await bob.locator("#text").press_sequentially("on my way")
    await expect(alice.locator("#typing")).to_have_text("bob is typing…")
    await bob.press("#text", "Enter")
    await expect(message(alice, "on my way")).to_be_visible()
    await expect(alice.locator("#typing")).to_have_text("")

    # alice edits, then deletes, her own message; bob sees both.
    await alice.fill("#text", "a typo here")
    await alice.press("#text", "Enter")
    await expect(message(bob, "a typo here")).to_be_visible()
    await message(alice, "a typo here").locator('[data-action="edit"]').click()
    edit = alice.locator('[data-testid="edit-input"]')
    await edit.fill("fixed text")
    await edit.press("Enter")
    await expect(message(bob, "fixed text")).to_contain_text("edited")
    await message(alice, "fixed text").locator('[data-action="delete"]').click()
    await expect(message(bob, "fixed text")).to_have_count(0)
    await expect(bob.locator("li.msg.deleted .body")).to_have_text("message deleted")
    # Only one's own messages can be edited or deleted.
    await expect(message(bob, "the launch").locator('[data-action="edit"]')).to_have_count(0)
    await expect(message(bob, "on my way").locator('[data-action="edit"]')).to_have_count(1)

    # alice attaches a PNG; bob sees the small thumbnail over a blurhash placeholder.
    plan: FilePayload = {"name": "plan.png", "mimeType": "image/png", "buffer": png()}
    await alice.set_input_files("#file", files=[plan])
    thumb = bob.locator('[data-testid="thumbnail"]')
    await expect(thumb).to_have_count(1)
    style = await thumb.get_attribute("style") or ""
    assert "width: 96px" in style and "height: 64px" in style, style
    assert "data:image/png" in style  # the blurhash placeholder
    await bob.wait_for_function(
        "() => { const i = document.querySelector('[data-testid=thumbnail] img');"
        " return i !== null && i.complete && i.naturalWidth > 0; }"
    )
    asked = [json.loads(f)["getDownloadUrl"] for f in SENT["bob"] if "getDownloadUrl" in f]
    assert [(a["variant"], a["messageSeq"] != "0") for a in asked] == [("small", True)]

    # search finds a message through the socket.
    await bob.fill("#search", "friday")
    hit = bob.locator('[data-testid="search-hit"]')
    await expect(hit).to_have_count(1)
    await expect(hit).to_contain_text("launch is on friday")

    assert not ERRORS["alice"] and not ERRORS["bob"], ERRORS

    if os.environ.get("CHATMESH_WEB_SCREENSHOT"):
        await alice.locator("#text").press_sequentially("see the plan")
        await expect(bob.locator("#typing")).to_have_text("alice is typing…")
        await _side_by_side(alice, bob, SCREENSHOT)

    # bob leaves: alice sees him offline.
    await bob.context.close()
    await expect(alice.locator('#members li[data-user="bob"]')).to_have_attribute(
        "data-presence", "offline"
    )


async def _side_by_side(left: Page, right: Page, path: Path) -> None:
    shots = [Image.open(io.BytesIO(await page.screenshot())) for page in (left, right)]
    gap = 12
    width = sum(shot.width for shot in shots) + gap
    height = max(shot.height for shot in shots)
    canvas = Image.new("RGB", (width, height), (120, 126, 140))
    canvas.paste(shots[0], (0, 0))
    canvas.paste(shots[1], (shots[0].width + gap, 0))
    canvas.save(path, optimize=True)


async def test_older_history_loads_on_scrolling_up(browser: Browser, dev: Dev) -> None:
    client = await dev.connect("carol")
    created = await client.call(
        "create_conversation", kind="CONVERSATION_KIND_GROUP", title="Archive", member_ids=["dan"]
    )
    cid = created.create_conversation.conversation.conversation.conversation_id
    for n in range(1, 71):
        while True:  # within the send rate limit (20/s, bursts of 40)
            try:
                await client.call(
                    "send_message", conversation_id=cid, client_msg_id=f"m{n}", body=f"n{n}"
                )
                break
            except ServerError:
                await asyncio.sleep(0.1)
    await client.close()
    dan = await signed_in(browser, dev, "dan")
    await dan.locator("li.conversation", has_text="Archive").click()
    messages = dan.locator("li.msg")
    await expect(messages).to_have_count(30)
    await expect(messages.last).to_contain_text("n70")
    # In a window taller than a page, older pages load until the list can scroll.
    tall = await browser.new_page(viewport={"width": 900, "height": 2400})
    await tall.goto(f"http://127.0.0.1:{dev.system.gateway.port}/")
    await tall.fill("#signin-user", "dan")
    await tall.click("#signin button")
    await tall.locator("li.conversation", has_text="Archive").click()
    await expect(tall.locator("li.msg")).to_have_count(60)
    assert await tall.locator("#messages").evaluate("l => l.scrollHeight > l.clientHeight")
    await tall.close()
    for count in (60, 70):
        await dan.locator("#messages").evaluate("list => { list.scrollTop = 0; }")
        await expect(messages).to_have_count(count)
    await expect(messages.first).to_contain_text("n1")
    assert not ERRORS["dan"], ERRORS
    seqs = await messages.evaluate_all("nodes => nodes.map(n => Number(n.dataset.seq))")
    assert seqs == sorted(seqs) and len(set(seqs)) == 70


async def test_a_refused_sign_in_is_shown(browser: Browser, dev: Dev) -> None:
    page = await browser.new_page()
    await page.goto(f"http://127.0.0.1:{dev.system.gateway.port}/?user=not%20valid")
    await expect(page.locator("#signin-user")).to_have_value("not valid")
    await page.click("#signin button")
    await expect(page.locator("#signin-error")).to_contain_text("sign-in refused: 400")
    await expect(page.locator("#app")).to_be_hidden()
    await page.close()
