"""End to end: two people chat through the web client, in headless Chromium, against a real server.

Debian's chromium (/usr/bin/chromium, installed by `make browser`, which `make test` runs) is
driven by Playwright's sync API; Playwright's own bundled browsers are not used. The test is a
plain (non-async) function, so no asyncio loop is running when the sync API starts its own.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import ParleyProcess

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
]
WAIT_MS = 15_000          # bound on every single wait; the whole test takes a few seconds
PASSWORD = "correct horse"

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.timeout(90)]


class Person:
    """One browser context (its own localStorage) with one page, and what that page did."""

    def __init__(self, browser: Any, name: str, **context_options: Any) -> None:
        self.name = name
        self.context = browser.new_context(**{"viewport": {"width": 1000, "height": 650}, **context_options})
        self.context.set_default_timeout(WAIT_MS)
        self.page = self.context.new_page()
        self.urls: list[str] = []            # every request and WebSocket the page opened
        self.events: list[dict[str, Any]] = []   # WebSocket event frames received
        self.errors: list[str] = []          # uncaught exceptions and console errors
        self.page.on("request", lambda req: self.urls.append(req.url))
        self.page.on("websocket", self._on_websocket)
        self.page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        self.page.on("console", lambda msg: msg.type == "error" and self.errors.append(f"console: {msg.text}"))
        self.user_id = ""

    def _on_websocket(self, ws: Any) -> None:
        self.urls.append(ws.url)
        ws.on("framereceived", self._on_frame)

    def _on_frame(self, payload: str | bytes) -> None:
        try:
            frame = json.loads(payload)
        except ValueError:
            return
        if isinstance(frame, dict) and frame.get("op") == "event":
            self.events.append(frame)

    def register(self, base_url: str) -> None:
        from playwright.sync_api import expect

        page = self.page
        page.goto(base_url + "/")
        expect(page.locator("#auth-view")).to_be_visible(timeout=WAIT_MS)
        page.fill("#username", self.name)
        page.fill("#password", PASSWORD)
        page.click("#register")
        expect(page.locator("#chat-view")).to_be_visible(timeout=WAIT_MS)
        expect(page.locator("#my-username")).to_have_text(self.name, timeout=WAIT_MS)
        expect(page.locator("#my-user-id")).not_to_be_empty(timeout=WAIT_MS)
        # "Connected" is shown once `hello` succeeded: from then on this session gets events.
        expect(page.locator("#status")).to_have_text("Connected", timeout=WAIT_MS)
        self.user_id = page.text_content("#my-user-id") or ""

    def wait_for_event(self, match: Callable[[dict[str, Any]], bool], what: str) -> None:
        """Frames are reported asynchronously: let the page run until one matches (bounded)."""
        deadline = time.monotonic() + WAIT_MS / 1000
        while not any(match(ev) for ev in self.events):
            assert time.monotonic() < deadline, \
                f"{self.name} got no {what}; events: {[ev.get('type') for ev in self.events]}"
            self.page.wait_for_timeout(50)

    def send(self, text: str, *, enter: bool = False) -> None:
        self.page.fill("#composer", text)
        if enter:
            self.page.press("#composer", "Enter")
        else:
            self.page.click("#send")

    def shown_messages(self) -> list[tuple[int, str, str]]:
        """(seq, sender, text) of every rendered message, in DOM order."""
        rows = self.page.eval_on_selector_all(
            "#messages .msg",
            "els => els.map(e => [Number(e.dataset.seq), e.dataset.sender,"
            " e.querySelector('.msg-text').textContent])")
        return [tuple(r) for r in rows]


def require_chromium() -> Any:
    """The sync_playwright factory; fails (never skips) when the browser stack is missing."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (`make browser`; `make test` "
                    "does it) to run the browser test", pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.fail(f"playwright is not installed ({exc}): run `make install-test`", pytrace=False)
    return sync_playwright


@contextmanager
def two_people(screenshots: Path) -> Iterator[tuple[Person, Person]]:
    """Chromium with two separate contexts; screenshots of both pages are kept, pass or fail."""
    with people(screenshots, ["a", "b"]) as (alice, bob):
        yield alice, bob


@contextmanager
def people(screenshots: Path, letters: list[str], **context_options: Any) -> Iterator[list[Person]]:
    """Chromium with one context per person (named web_<letter><unique suffix>); a screenshot
    of each page is kept in `screenshots`, pass or fail."""
    sync_playwright = require_chromium()
    suffix = f"{os.getpid()}_{time.time_ns() % 10**9}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
                                     timeout=WAIT_MS)
        try:
            everyone = [Person(browser, f"web_{letter}{suffix}", **context_options) for letter in letters]
            try:
                yield everyone
            finally:
                for person in everyone:
                    try:
                        person.page.screenshot(path=str(screenshots / f"{person.name}.png"), timeout=5_000)
                    except Exception:  # noqa: BLE001 - a screenshot must not hide the real failure
                        pass
        finally:
            browser.close()


def with_two_people(server: ParleyProcess, screenshots: Path,
                    scenario: Callable[[ParleyProcess, Person, Person], None]) -> None:
    """Run `scenario` for two people; a failure names where their screenshots are."""
    with two_people(screenshots) as (alice, bob):
        try:
            scenario(server, alice, bob)
        except BaseException as exc:
            exc.add_note(f"screenshots of both pages: {screenshots}")
            raise


def test_two_people_chat_in_the_web_client(server: ParleyProcess, tmp_path: Path) -> None:
    with_two_people(server, tmp_path, chat)


def chat(server: ParleyProcess, alice: Person, bob: Person) -> None:
    from playwright.sync_api import expect

    started = time.monotonic()

    # Both register through the UI; each context keeps its own token in its own localStorage.
    alice.register(server.base_url)
    bob.register(server.base_url)
    assert alice.user_id and bob.user_id and alice.user_id != bob.user_id
    a, b = alice.page, bob.page
    expect(b.locator("#conv-list .conv")).to_have_count(0, timeout=WAIT_MS)

    # Alice opens a direct chat with Bob by typing his username (bug 4: not his id).
    a.click("#new-direct")
    a.fill("#direct-peer", bob.name)
    a.click("#direct-create")
    expect(a.locator("#direct-form")).to_be_hidden(timeout=WAIT_MS)
    expect(a.locator("#composer")).to_be_enabled(timeout=WAIT_MS)
    expect(a.locator("#conv-title")).to_have_text(bob.name, timeout=WAIT_MS)
    a_conv = a.locator("#conv-list .conv.selected")
    expect(a_conv).to_have_count(1, timeout=WAIT_MS)
    conv_id = a_conv.get_attribute("data-conv-id")
    assert conv_id

    # Bob, without reloading, sees it appear: pushed to him as conv.updated, labelled with Alice's name.
    b_conv = b.locator(f'#conv-list .conv[data-conv-id="{conv_id}"]')
    expect(b_conv).to_have_count(1, timeout=WAIT_MS)
    expect(b_conv.locator(".conv-title")).to_have_text(alice.name, timeout=WAIT_MS)
    bob.wait_for_event(lambda ev: ev["type"] == "conv.updated" and ev["conv"]["id"] == conv_id,
                       f"conv.updated for {conv_id}")

    # Alice writes (Send button); her own copy is confirmed by the server, nothing stays pending.
    hello = f"hello bob, from alice {time.time_ns() % 10**6}"
    alice.send(hello)
    expect(a.locator(f'#messages .msg.mine[data-seq="1"][data-sender="{alice.user_id}"] .msg-text')) \
        .to_have_text(hello, timeout=WAIT_MS)
    expect(a.locator("#pending > *")).to_have_count(0, timeout=WAIT_MS)

    # Bob has not opened the chat: it shows one unread; opening it shows Alice's text.
    expect(b_conv.locator(".unread")).to_have_text("1", timeout=WAIT_MS)
    b_conv.click()
    expect(b.locator("#conv-title")).to_have_text(alice.name, timeout=WAIT_MS)
    expect(b.locator(f'#messages .msg[data-seq="1"][data-sender="{alice.user_id}"] .msg-text')) \
        .to_have_text(hello, timeout=WAIT_MS)
    expect(b_conv.locator(".unread")).to_have_count(0, timeout=WAIT_MS)

    # Bob replies (Enter key); it arrives live in Alice's open conversation.
    reply = f"hi alice, bob here {time.time_ns() % 10**6}"
    bob.send(reply, enter=True)
    expect(a.locator(f'#messages .msg[data-seq="2"][data-sender="{bob.user_id}"] .msg-text')) \
        .to_have_text(reply, timeout=WAIT_MS)

    # And one more from Alice, live into Bob's open conversation.
    again = "see you tomorrow"
    alice.send(again, enter=True)
    expect(b.locator(f'#messages .msg[data-seq="3"][data-sender="{alice.user_id}"] .msg-text')) \
        .to_have_text(again, timeout=WAIT_MS)

    # Both show the same conversation, in the same order, each message once.
    want = [(1, alice.user_id, hello), (2, bob.user_id, reply), (3, alice.user_id, again)]
    for person in (alice, bob):
        expect(person.page.locator("#messages .msg")).to_have_count(3, timeout=WAIT_MS)
        expect(person.page.locator("#pending > *")).to_have_count(0, timeout=WAIT_MS)
        assert person.shown_messages() == want, person.name
        expect(person.page.locator("#messages .msg.mine")).to_have_count(
            sum(sender == person.user_id for _, sender, _ in want), timeout=WAIT_MS)
        expect(person.page.locator("#status")).to_have_text("Connected", timeout=WAIT_MS)

    # Nothing was loaded from anywhere but the server on loopback (page, assets, REST, WebSocket).
    for person in (alice, bob):
        assert any(urlsplit(u).scheme == "ws" for u in person.urls), person.urls
        outside = [u for u in person.urls
                   if urlsplit(u).hostname != "127.0.0.1" or urlsplit(u).port != server.port]
        assert not outside, f"{person.name}'s page loaded from outside the loopback server: {outside}"
        assert not person.errors, f"{person.name}'s page reported errors: {person.errors}"

    # The page runs no script but its own: its Content-Security-Policy refuses an injected one.
    try:
        a.add_script_tag(content="window.injected = true")
    except Exception:  # Playwright may report the refusal itself
        pass
    assert a.evaluate("window.injected") is None
    assert alice.errors and all("Content Security Policy" in e for e in alice.errors), alice.errors

    assert time.monotonic() - started < 60


def test_a_call_rings_is_answered_and_declined_in_the_web_client(server: ParleyProcess, tmp_path: Path) -> None:
    """The web client signals calls (it carries no media: see calls.js): an incoming call rings with
    Accept and Decline, the caller sees "Calling…" then the call, hanging up ends it on both
    pages, and each call leaves its record in the conversation."""
    with_two_people(server, tmp_path, call)


def call(server: ParleyProcess, alice: Person, bob: Person) -> None:
    from playwright.sync_api import expect

    alice.register(server.base_url)
    bob.register(server.base_url)
    a, b = alice.page, bob.page
    a.click("#new-direct")
    a.fill("#direct-peer", bob.name)
    a.click("#direct-create")
    expect(a.locator("#call-audio")).to_be_enabled(timeout=WAIT_MS)

    a.click("#call-audio")
    expect(a.locator("#call-text")).to_have_text(f"Calling… ({bob.name})", timeout=WAIT_MS)
    expect(a.locator("#call-hangup")).to_have_text("Cancel", timeout=WAIT_MS)
    expect(b.locator("#call-bar")).to_be_visible(timeout=WAIT_MS)
    expect(b.locator("#call-text")).to_contain_text(f"Incoming audio call from {alice.name}", timeout=WAIT_MS)
    b.click("#call-accept")
    for page in (a, b):
        expect(page.locator("#call-text")).to_have_text(re.compile(r"^In audio call"), timeout=WAIT_MS)
        expect(page.locator("#call-note")).to_be_visible(timeout=WAIT_MS)
    a.click("#call-hangup")
    for page in (a, b):
        expect(page.locator("#call-bar")).to_be_hidden(timeout=WAIT_MS)
    expect(b.locator("#status")).to_have_text("Call ended: hangup", timeout=WAIT_MS)

    a.click("#call-audio")
    expect(b.locator("#call-decline")).to_be_visible(timeout=WAIT_MS)
    b.click("#call-decline")
    expect(a.locator("#call-bar")).to_be_hidden(timeout=WAIT_MS)
    records = a.locator("#messages .msg.call .msg-text")
    expect(records).to_have_count(2, timeout=WAIT_MS)
    expect(records.nth(0)).to_have_text(re.compile(r"^Audio call, 0:0\d$"), timeout=WAIT_MS)
    expect(records.nth(1)).to_have_text("Declined audio call", timeout=WAIT_MS)
    for person in (alice, bob):
        assert not person.errors, f"{person.name}'s page reported errors: {person.errors}"
def test_the_web_client_keeps_its_login_fresh_and_logout_ends_it(fresh_server: Callable[..., ParleyProcess],
                                                                   tmp_path: Path) -> None:
    """Access tokens of 3 s: the page refreshes them over REST and hands each to its live socket
    (`auth`), so one WebSocket outlives many tokens; logout ends the login on the server."""
    from playwright.sync_api import expect

    ttl_s = 3
    server = fresh_server(PARLEY_TOKEN_TTL_S=str(ttl_s))
    with two_people(tmp_path) as (alice, _):
        alice.register(server.base_url)
        page = alice.page
        sockets = lambda: [u for u in alice.urls if urlsplit(u).scheme == "ws"]  # noqa: E731
        page.wait_for_timeout(3 * ttl_s * 1000)
        assert sum(u.endswith("/v1/auth/refresh") for u in alice.urls) >= 2, alice.urls
        expect(page.locator("#status")).to_have_text("Connected", timeout=WAIT_MS)
        assert len(sockets()) == 1  # the first socket, still open on a fresh token
        refresh_token = page.evaluate("localStorage.getItem('parley.refresh_token')")
        assert refresh_token
        page.click("#logout")
        expect(page.locator("#auth-view")).to_be_visible(timeout=WAIT_MS)
        deadline = time.monotonic() + WAIT_MS / 1000
        while not any(u.endswith("/v1/auth/logout") for u in alice.urls):
            assert time.monotonic() < deadline, alice.urls
            page.wait_for_timeout(50)
        page.wait_for_timeout(500)  # the request reaches the server
        assert refresh_status(server, refresh_token) == 401  # the login is over on the server too
        assert page.evaluate("localStorage.getItem('parley.refresh_token')") is None
        assert not alice.errors, alice.errors


def refresh_status(server: ParleyProcess, refresh_token: str) -> int:
    request = urllib.request.Request(server.base_url + "/v1/auth/refresh", method="POST",
                                     data=json.dumps({"refresh_token": refresh_token}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code
