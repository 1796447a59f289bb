"""Chromium for the UI tests and benches: Debian's build, driven by Playwright, signed in to
Airflow's UI through its login form as a person would."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CHROMIUM = "/usr/bin/chromium"
# As root Chromium needs --no-sandbox; this machine has no internet, so nothing in the
# background may try to reach it.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def sign_in(page: Any, stack: Any, path: str, user: str = "admin") -> None:
    """Open ``path`` of the stack's UI, through the login form when the UI asks for it."""
    page.goto(f"{stack.base_url}{path}")
    page.wait_for_load_state("networkidle")
    if "/auth/login" in page.url:  # the UI sends a visitor to sign in first
        page.get_by_label("Username").fill(user)
        page.get_by_label("Password").fill(stack.passwords[user])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: "/auth/login" not in url)


@contextmanager
def signed_in_page(stack: Any, width: int = 1440, height: int = 900,
                   timeout_ms: int = 120_000) -> Iterator[Any]:  # fmt: skip
    """A page of a fresh headless Chromium, signed in as admin (for the benches)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(timeout_ms)
            sign_in(page, stack, "/")
            yield page
        finally:
            browser.close()
