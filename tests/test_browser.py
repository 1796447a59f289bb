"""The Airflow UI as ops see it: headless Chromium (Debian's) driven by Playwright.

After the full migration run of the shared ``airflow standalone`` (see
``harness/stack_fixtures.py``), the browser signs in through the login form, opens the
migration DAG's grid for that run, expands the task groups and checks what a person would:
one group per account, shown with the account's address, its five steps, every task green, and
the run's task instance list. The screenshot lands in ``build/screenshots/`` (or
``$MAILMIGRATE_SCREENSHOT_DIR``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["harness.stack_fixtures"]
pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
# As root Chromium needs --no-sandbox; this machine has no internet, so nothing in the
# background may try to reach it.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
STEPS = ("test", "initial_copy", "wait_for_mx", "wait_for_delta_window", "delta_copy")
SCREENSHOTS = Path(
    os.environ.get("MAILMIGRATE_SCREENSHOT_DIR")
    or Path(__file__).resolve().parents[1] / "build" / "screenshots"
)


@pytest.fixture(scope="module")
def browser_page() -> Iterator:
    """A page in a fresh headless Chromium profile (Playwright, Debian's Chromium)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make install` installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="mailmigrate-chromium-")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1600, "height": 1000},
        )
        context.set_default_timeout(30_000)
        try:
            yield context.new_page()
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


def test_the_grid_shows_every_account_group_and_its_task_states(
    standalone_migration, standalone_run, browser_page
):
    stack, scenario = standalone_migration.stack, standalone_migration.scenario
    run_id, page = standalone_run.run_id, browser_page

    page.goto(f"{stack.base_url}/dags/{scenario.dag_id}/runs/{run_id}")
    page.wait_for_url("**/auth/login?next=**")  # the UI sends a visitor to sign in first
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(stack.passwords["admin"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**/dags/{scenario.dag_id}/runs/**")
    page.get_by_test_id("expand-all-button").click()
    for account in scenario.accounts:
        page.get_by_test_id(f"task-{account.group_id}-delta_copy").wait_for()
    tasks = 5 * len(scenario.accounts) + 1
    page.get_by_text(f"{tasks} Task Instances").wait_for()
    page.wait_for_load_state("networkidle")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    screenshot = SCREENSHOTS / "migration_grid.png"
    page.screenshot(path=str(screenshot))

    text = page.inner_text("body")
    for account in scenario.accounts:
        assert account.source_user in text  # the group's display name is the address
        group_row = page.get_by_test_id(f"task-{account.group_id}")
        assert account.source_user in group_row.inner_text()
        for step in STEPS:
            row = page.get_by_test_id(f"task-{account.group_id}-{step}")
            assert row.inner_text().strip() == step
            cell = page.get_by_test_id(f"grid-{run_id}-{account.group_id}.{step}")
            assert cell.is_visible()
            if account is not scenario.accounts[0] and step != "delta_copy":
                continue  # hovering is slow; the task list below shows every state as well
            cell.hover()  # the grid shows a task's state in the cell's tooltip
            tooltip = page.locator(
                '[data-scope="tooltip"][data-part="content"]', has_text=f"{account.group_id}.{step}"
            )
            assert "State: Success" in tooltip.last.inner_text(), (account.source_user, step)
            page.mouse.move(0, 0)
    assert page.get_by_test_id(f"grid-{run_id}-cutover_ready").is_visible()
    # The run's task instance list: a row per task, every one "Success".
    rows = page.locator("table tbody tr")
    assert rows.count() == tasks, rows.all_inner_texts()
    assert all("Success" in row for row in rows.all_inner_texts()), rows.all_inner_texts()
    assert screenshot.stat().st_size > 10_000
