"""The Airflow UI as ops see it: headless Chromium (Debian's) driven by Playwright.

After the full migration run of the shared ``airflow standalone`` (see
``harness/stack_fixtures.py``), the browser signs in through the login form and checks what a
person would:

* the migration DAG's grid for that run: the mapped group's five steps, every task green, the
  run's task instance list with each account's instances under its address, and one step's
  instances listed by mailbox;
* the "Migrations" page, inside Airflow's sandboxed iframe: every kind of link on it is clicked
  and lands where it should (the DAG, the run, a task's log, ``cutover_ready``, a filter, an
  owner report and the JSON in a new tab, the CSV as a download).

Screenshots land in ``build/screenshots/`` (or ``$MAILMIGRATE_SCREENSHOT_DIR``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from harness.browser import CHROMIUM, CHROMIUM_ARGS, sign_in

pytest_plugins = ["harness.stack_fixtures"]
pytestmark = pytest.mark.slow
STEPS = ("test", "initial_copy", "wait_for_mx", "wait_for_delta_window", "delta_copy")
SCREENSHOTS = Path(
    os.environ.get("MAILMIGRATE_SCREENSHOT_DIR")
    or Path(__file__).resolve().parents[2] / "build" / "screenshots"
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


def test_the_grid_shows_the_mapped_group_and_every_instance_as_its_mailbox(
    standalone_migration, standalone_run, browser_page
):
    stack, scenario = standalone_migration.stack, standalone_migration.scenario
    run_id, page, dag_id = standalone_run.run_id, browser_page, scenario.dag_id
    run = quote(run_id, safe="")

    sign_in(page, stack, f"/dags/{dag_id}/runs/{run}")
    page.wait_for_url(f"**/dags/{dag_id}/runs/**")
    page.get_by_test_id("expand-all-button").click()
    for step in STEPS:  # one row per step of the group, whatever the number of accounts
        page.get_by_test_id(f"task-account-{step}").wait_for()
    tasks = 1 + 5 * len(scenario.accounts) + 1  # accounts, each account's steps, cutover_ready
    page.get_by_text(f"{tasks} Task Instances").wait_for()
    page.wait_for_load_state("networkidle")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    screenshot = SCREENSHOTS / "migration_grid.png"
    page.screenshot(path=str(screenshot))
    for step in STEPS:
        assert page.get_by_test_id(f"grid-{run_id}-account.{step}").is_visible(), step
    assert page.get_by_test_id(f"grid-{run_id}-cutover_ready").is_visible()
    # The run's task instance list: every one "Success", the mapped ones named by mailbox.
    rows = page.locator("table tbody tr")
    assert rows.count() == tasks, rows.all_inner_texts()
    assert all("Success" in row for row in rows.all_inner_texts()), rows.all_inner_texts()
    listed = "\n".join(rows.all_inner_texts())
    for account in scenario.accounts:
        assert listed.count(account.source_user) == len(STEPS), (account.source_user, listed)

    # One step's instances, one row per account under its address: where an operator finds
    # one mailbox's log from the grid.
    page.goto(f"{stack.base_url}/dags/{dag_id}/runs/{run}/tasks/account.initial_copy/mapped")
    for account in scenario.accounts:
        page.get_by_text(account.source_user).first.wait_for()
    page.screenshot(path=str(SCREENSHOTS / "migration_mapped_instances.png"))
    assert screenshot.stat().st_size > 10_000


def test_every_link_of_the_migrations_page_works_inside_airflows_iframe(
    standalone_migration, standalone_run, browser_page
):
    stack, scenario = standalone_migration.stack, standalone_migration.scenario
    run_id, page, dag_id = standalone_run.run_id, browser_page, scenario.dag_id
    base, run = stack.base_url, quote(run_id, safe="")
    alice = scenario.accounts[0]
    home = f"/plugin/migrations/mailmigrate/migrations/{dag_id}"

    def framed():
        """The status page in Airflow's iframe, shown afresh (Airflow's own URL for it)."""
        page.goto(f"{base}{home}")
        frame = page.frame_locator('iframe[title="Migrations"]')
        frame.get_by_text("Migration done.").wait_for()
        return frame

    def lands(link, path: str) -> None:
        """Click ``link`` in the frame; Airflow's UI itself shows ``path``, no frame left."""
        link.click()
        page.wait_for_url(f"{base}{path}")
        try:
            page.locator('iframe[title="Migrations"]').wait_for(state="detached", timeout=10_000)
        finally:
            page.screenshot(path=str(SCREENSHOTS / "status_link_target.png"))
        assert dag_id in page.inner_text("body")

    sign_in(page, stack, "/plugin/migrations")
    frame = framed()
    sandbox = page.locator('iframe[title="Migrations"]').get_attribute("sandbox")
    assert "allow-top-navigation" not in sandbox and "allow-popups" not in sandbox
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "status_page.png"))

    lands(frame.get_by_role("link", name="Open the DAG"), f"/dags/{dag_id}")
    page.go_back()  # Airflow's history has the status page before it
    page.wait_for_url(f"{base}{home}")
    frame = page.frame_locator('iframe[title="Migrations"]')
    lands(frame.get_by_role("link", name="Open this run in Airflow"), f"/dags/{dag_id}/runs/{run}")
    task = "account.initial_copy/mapped/0"  # alice's instance
    row = framed().locator(f'tr[data-account="{alice.source_user}"]')
    lands(row.get_by_role("link", name="I", exact=True), f"/dags/{dag_id}/runs/{run}/tasks/{task}")
    lands(
        framed().get_by_role("link", name="cutover_ready: success"),
        f"/dags/{dag_id}/runs/{run}/tasks/cutover_ready",
    )

    # The page's own links stay in the frame; Airflow shows where in its address bar.
    frame = framed()
    frame.locator('a[data-state="done"]').click()
    page.wait_for_url(f"{base}{home}?run_id={run}&state=done")
    frame.locator(f'tr[data-account="{alice.source_user}"]').wait_for()

    # The owner report and the JSON open in a new tab, the status page stays.
    row = frame.locator(f'tr[data-account="{alice.source_user}"]')
    with page.context.expect_page() as opened:
        row.get_by_role("link", name="HTML").first.click()
    report = opened.value
    report.wait_for_load_state()
    assert report.url.startswith(f"{base}/mailmigrate/reports/{dag_id}/{run}/account.")
    assert report.url.endswith("?map_index=0")
    assert alice.destination_user in report.inner_text("body")
    report.screenshot(  # the report, without the blank rest of the window
        path=str(SCREENSHOTS / "owner_report.png"),
        clip={"x": 0, "y": 0, "width": 1100, "height": 460},
    )
    report.close()
    with page.context.expect_page() as opened:
        frame.get_by_role("link", name="JSON").click()
    answer = opened.value
    answer.wait_for_load_state()
    status = json.loads(answer.inner_text("body"))
    assert (status["dag_id"], status["run"]["run_id"]) == (dag_id, run_id)
    answer.close()
    with page.expect_download() as downloaded:
        row.get_by_role("link", name="CSV").first.click()
    csv_text = Path(downloaded.value.path()).read_text(encoding="utf-8")
    assert downloaded.value.suggested_filename.endswith(".csv") and "INBOX" in csv_text
    assert page.url.startswith(f"{base}{home}")
