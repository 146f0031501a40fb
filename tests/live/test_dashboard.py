"""The dashboard in a real headless Chromium (Playwright) against the real gunicorn + gevent
gateway and the simulated vLLM: accept an invite, set a password, sign in, create a key, copy
it, use it with the openai SDK, see the request on the Usage page, revoke it and see the SDK
refused within the auth cache TTL, and watch a Playground answer stream in.

No asset may come from another host: every request the page makes to anything but the
gateway is aborted and the test fails. On failure, a screenshot of each page is saved under
the test's temporary directory.
"""

from __future__ import annotations

import contextlib
import shutil
import time
import uuid

import openai
import pytest
from helpers import DASHBOARD, PASSWORD

from packet import users

pytestmark = pytest.mark.live

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if shutil.which("/usr/bin/chromium") else None
)
if CHROMIUM is None:
    pytest.skip("chromium not installed (.ci/run installs it)", allow_module_level=True)

ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CACHE_TTL = 1.0
PAGES = ("", "keys", "endpoints", "usage", "billing", "playground")


@pytest.fixture(scope="module")
def module_sim(module_launcher):
    """Tokens a little apart, so a stream is seen arriving piece by piece."""
    return module_launcher.sim("--token-delay", "0.05")


@pytest.fixture(scope="module")
def live_env():
    return DASHBOARD | {"PACKET_AUTH_CACHE_TTL": str(CACHE_TTL)}


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, live, tmp_path):
    """A page whose every request off the gateway is refused (and makes the test fail)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.gateway.url)
    foreign: list[str] = []

    def only_the_gateway(route):
        if route.request.url.startswith(live.gateway.url):
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_gateway)
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert not foreign, f"the page asked other hosts: {foreign}"
    assert not errors, f"JavaScript errors: {errors}"


@contextlib.contextmanager
def screenshots_on_failure(page, base: str, folder):
    """On failure: the page as it was, then each dashboard page, as PNGs in ``folder``."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            page.screenshot(path=str(folder / "failed-at.png"), full_page=True)
            for name in PAGES:
                page.goto(f"{base}/dashboard/{name}")
                page.screenshot(path=str(folder / f"page-{name or 'overview'}.png"), full_page=True)
        raise


def _nav(page, name: str) -> None:
    page.get_by_role("navigation", name="Dashboard").get_by_role("link", name=name).click()


def _usage_requests(page, base: str) -> int:
    page.goto(f"{base}/dashboard/usage")
    return int(page.inner_text("[data-testid=total-requests]").replace(",", ""))


def _wait_usage(page, base: str, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while _usage_requests(page, base) < count:
        assert time.monotonic() < deadline, f"fewer than {count} requests on the Usage page"
        time.sleep(0.2)


def test_invite_key_usage_revoke_and_playground(live, page, tmp_path):
    base = live.gateway.url
    name, _ = live.database.account(balance_micros=5_000_000)
    email = f"owner-{uuid.uuid4().hex[:6]}@example.com"
    _, token = live.database.run(users.invite, email, name, "owner")
    with screenshots_on_failure(page, base, tmp_path):
        # The invite: choose a password, then sign in with it.
        page.goto(f"{base}{users.LINK_PATH}{token}")
        page.get_by_label("New password").fill(PASSWORD)
        page.get_by_label("Repeat the password").fill(PASSWORD)
        page.get_by_role("button", name="Set password").click()
        page.wait_for_url("**/dashboard/login")
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{base}/dashboard/")
        assert page.inner_text("[data-testid=balance]") == "$5.00"
        page.wait_for_selector("text=healthy")

        # A key: created, shown once, copied with the button.
        _nav(page, "API keys")
        page.get_by_label("Label").fill("browser test")
        page.get_by_role("button", name="Create key").click()
        shown = page.inner_text("[data-testid=new-key]")
        page.get_by_role("button", name="Copy key").click()
        page.wait_for_selector("text=Copied")
        key = page.evaluate("navigator.clipboard.readText()")
        assert key == shown and key.startswith("pk_live_")

        # The key works with the official SDK, and the request shows on the Usage page.
        client = live.gateway.client(key)
        answer = client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "hi"}]
        )
        assert answer.choices[0].message.content
        _wait_usage(page, base, 1)
        by_key = page.inner_text("[data-testid=by-key]")
        assert key[:12] in by_key and "browser test" in by_key and key not in by_key

        # Revoked after a confirmation; the SDK is refused within the auth cache TTL.
        _nav(page, "API keys")
        page.get_by_role("link", name=f"Revoke {key[:12]}").click()
        page.get_by_role("button", name="Revoke key").click()
        page.wait_for_selector("text=Revoked")
        revoked_at = time.monotonic()
        while True:
            try:
                client.models.list()
            except openai.AuthenticationError:
                break
            assert time.monotonic() - revoked_at < CACHE_TTL + 2, "revoked key still accepted"
            time.sleep(0.1)

        # The Playground: the answer streams in through /v1/chat/completions.
        _nav(page, "Playground")
        page.get_by_label("Message").fill("Tell me something.")
        page.get_by_role("button", name="Send").click()
        page.wait_for_function(
            "() => { const a = document.getElementById('answer');"
            " return a.textContent.length > 0 && !a.dataset.done; }"
        )
        page.wait_for_selector("#answer[data-done=true]", state="attached")
        assert len(page.inner_text("[data-testid=answer]")) > 20
        assert "completion tokens" in page.inner_text("#answer-status")
        _wait_usage(page, base, 2)  # metered like any request


def test_pages_fit_a_phone_and_are_keyboard_reachable(live, page, tmp_path):
    base = live.gateway.url
    name, _ = live.database.account()
    email = f"member-{uuid.uuid4().hex[:6]}@example.com"
    live.database.run(lambda: users.redeem(users.invite(email, name, "member")[1], PASSWORD))
    page.set_viewport_size({"width": 390, "height": 844})
    with screenshots_on_failure(page, base, tmp_path):
        page.goto(f"{base}/dashboard/login")
        # Keyboard only: the email field has the focus, Tab to the password, Enter submits.
        page.keyboard.type(email)
        page.keyboard.press("Tab")
        page.keyboard.type(PASSWORD)
        page.keyboard.press("Enter")
        page.wait_for_url(f"{base}/dashboard/")
        for name in PAGES:
            page.goto(f"{base}/dashboard/{name}")
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"/dashboard/{name} is {width}px wide at phone width"
            unlabelled = page.evaluate(
                "() => [...document.querySelectorAll('input:not([type=hidden]):not([type=submit])"
                ":not([type=radio]), select, textarea')].filter(e => !e.labels.length"
                " && !e.hidden).map(e => e.name)"
            )
            assert not unlabelled, f"/dashboard/{name}: fields without a label: {unlabelled}"
