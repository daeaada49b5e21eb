"""Headless Chromium (Debian's, at /usr/bin/chromium: scripts/ensure_debian.sh installs it) driven
by Playwright for Python against the session's real platform. No browser is downloaded."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("FLASHMART_CHROMIUM", "/usr/bin/chromium")
# as root on a closed network: no sandbox, and none of Chromium's calls home (they would be refused)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--autoplay-policy=no-user-gesture-required",  # the library test plays a video
]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
EXPECT_TIMEOUT_MS = 30_000  # a loaded machine: generous deadlines, conditions not sleeps


# module scope, not session: while Playwright's sync API runs, its event loop counts as running in
# this thread, so a later test module calling asyncio.run() would fail
@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM):
        pytest.fail(
            f"{CHROMIUM} is missing: run scripts/ensure_debian.sh chromium (make test does)"
        )
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture()
def new_page(browser, platform):
    """new_page(phone=False) -> a page in a fresh context (its own localStorage) on the platform."""
    contexts = []

    def make(phone: bool = False):
        ctx = browser.new_context(
            base_url=platform.api_url,
            viewport=PHONE if phone else DESKTOP,
            is_mobile=phone,
            has_touch=phone,
        )
        ctx.set_default_timeout(EXPECT_TIMEOUT_MS)
        contexts.append(ctx)
        page = ctx.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        return page

    errors: list[str] = []
    yield make
    for ctx in contexts:
        ctx.close()
    assert not errors, f"script errors in the pages: {errors}"


@pytest.fixture(scope="session")
def shots(tmp_path_factory) -> Path:
    """Where screenshots go: FLASHMART_SCREENSHOT_DIR (docs/img to refresh the committed ones), else
    a temporary folder."""
    chosen = os.environ.get("FLASHMART_SCREENSHOT_DIR")
    path = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path
