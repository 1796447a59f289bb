"""The approval step: the pilot accounts copy first; the other accounts' copies and the cutover
wait for a human's answer in Airflow's human-in-the-loop API (given here through the real API
server, as the Required Actions page gives it) and run on "Approve", are skipped on "Reject"."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from harness.ops_helpers import (
    client,
    dag_folder,
    html_part,
    messages,
    new_mailbox,
    run_migration,
    set_connection,
    token,
    write_accounts,
)

from mailmigrate.plan import load_plan
from mailmigrate_airflow.factory import build_dag

TASK = "approve_full_run"
APPROVERS = "approvals@example.com"


def _group(user: str) -> str:
    return user.replace("@", "_").replace(".", "_")


def _plan(plans: Path, name: str, accounts: list[dict], pilots: list[str], after: str = "initial_copy") -> None:  # fmt: skip
    (plans / f"{name}.yaml").write_text(
        f"name: {name}\n"
        "source: {connection: mmappr_old}\n"
        "destination: {connection: mmappr_new}\n"
        f"accounts: {write_accounts(plans, name, accounts)}\n"
        "state_dir: state\nretries: 0\n"
        "delta: {window: any}\n"
        # Any fsspec URL: memory:// lives in this process, where dag.test() runs the tasks.
        f"reports: {{url: 'memory://mmappr/{name}'}}\n"
        f"approval: {{accounts: [{', '.join(pilots)}], after: {after}, body: 'Pilot owners, please check.'}}\n"
        "notify:\n"
        "  - notifier: mailmigrate_airflow.notifiers.MigrationMailNotifier\n"
        "    on: [approval_requested]\n"
        f"    args: {{to: {APPROVERS}, smtp_conn_id: mmappr_smtp}}\n"
    )


def test_the_approval_sits_between_the_pilots_and_everyone_else(tmp_path):
    accounts = [{"source_user": f"{u}@old.example", "source_password": "", "destination_user":
                 f"{u}@new.example", "destination_password": ""} for u in ("ceo", "ann", "bob")]  # fmt: skip
    for after in ("initial_copy", "test"):
        _plan(tmp_path, "shape", accounts, ["ceo@old.example"], after)
        dag = build_dag(load_plan(tmp_path / "shape.yaml"), "shape.yaml")
        approval = dag.get_task(TASK)
        # The pilots are mapped in the group "pilot", everyone else in "account".
        assert approval.upstream_task_ids == {f"pilot.{after}"}
        assert approval.downstream_task_ids == {"account.initial_copy", "cutover_ready"}
        assert dag.get_task("account.initial_copy").upstream_task_ids == {
            "account.test", "accounts", TASK}  # fmt: skip
        assert dag.get_task("pilot.initial_copy").upstream_task_ids == {
            "pilot.test", "pilot_accounts"}  # fmt: skip
        assert dag.get_task("cutover_ready").upstream_task_ids == {
            "account.initial_copy", "pilot.initial_copy", TASK, "accounts"}  # fmt: skip
        assert dag.get_task("accounts").pilots == dag.get_task("pilot_accounts").pilots == [
            "ceo@old.example"]  # fmt: skip
        assert approval.trigger_rule == "none_failed" and approval.options == ["Approve", "Reject"]


class Approver(threading.Thread):
    """Waits until the run asks for approval, looks at what the run shows then (``look``), and
    answers through the API server's human-in-the-loop endpoint."""

    def __init__(self, dag_id: str, answer: str, look) -> None:
        super().__init__(daemon=True)
        self.dag_id, self.answer, self.look = dag_id, answer, look
        self.seen: dict[str, Any] = {}
        self.response: Any = None
        self.error: BaseException | None = None

    def _waiting_run(self) -> str | None:
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session

        with create_session() as session:
            waiting = session.query(TaskInstance.run_id).filter_by(
                dag_id=self.dag_id, task_id=TASK, state="awaiting_input"
            )
            return waiting.scalar()

    def run(self) -> None:
        run_id = None
        try:
            deadline = time.monotonic() + 180
            while (run_id := self._waiting_run()) is None:
                assert time.monotonic() < deadline, "the run never asked for approval"
                time.sleep(0.3)
            self.seen = self.look(run_id)
        except BaseException as exc:
            self.error = exc
        if run_id is None:
            return
        # Answer even when looking failed: an unanswered run would wait forever.
        url = f"/api/v2/dags/{self.dag_id}/dagRuns/{run_id}/taskInstances/{TASK}/-1/hitlDetails"
        self.response = client().patch(
            url,
            json={"chosen_options": [self.answer]},
            headers={"Authorization": f"Bearer {token()}"},
        )


@pytest.fixture
def setup(legacy_imap, modern_imap, new_account, airflow_db, smtp):
    set_connection("mmappr_old", legacy_imap.connection("x"))
    set_connection("mmappr_new", modern_imap.connection("x"))
    set_connection("mmappr_smtp", smtp.connection())

    def make(prefix: str):
        pilot = new_mailbox(legacy_imap, modern_imap, new_account, {"INBOX": messages(95_000, 2, size=4000)})  # fmt: skip
        other = new_mailbox(legacy_imap, modern_imap, new_account, {"INBOX": messages(95_100, 3, size=5000)})  # fmt: skip
        folder = dag_folder(prefix)
        name = f"{prefix}_{pilot['source_user'].split('@')[0]}"
        _plan(folder / "plans", name, [pilot, other], [pilot["source_user"]])
        return folder, f"migration_{name}", pilot, other

    return make


def _inbox(server, account: dict) -> int:
    imap = server.client(account["destination_user"], account["destination_password"])
    try:
        return imap.select_folder("INBOX", readonly=True)[b"EXISTS"]
    finally:
        imap.logout()


def test_approve_lets_the_other_accounts_copy(setup, modern_imap, smtp):
    folder, dag_id, pilot, other = setup("approve")
    pilot_group, other_group = _group(pilot["source_user"]), _group(other["source_user"])

    def look(run_id: str) -> dict:
        detail = client().get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{TASK}/-1/hitlDetails")  # fmt: skip
        status = client().get(f"/mailmigrate/api/migrations/{dag_id}").json()
        return {
            "other_inbox": _inbox(modern_imap, other),
            "detail": detail.json(),
            "status": status,
            "page": client().get(f"/mailmigrate/migrations/{dag_id}").text,
        }

    approver = Approver(dag_id, "Approve", look)
    approver.start()
    run = run_migration(folder, {"stop": "initial_copy"})  # the copies are what is gated
    approver.join(timeout=60)
    assert approver.error is None, approver.error
    assert approver.response.status_code == 200, approver.response.text

    seen = approver.seen
    assert seen["other_inbox"] == 0  # nothing of the other account was copied before the answer
    body = seen["detail"]["body"]
    assert body.startswith("Pilot owners, please check.")
    assert f"- {pilot['source_user']}: ok (2 messages copied)" in body
    assert f"[owner report](/mailmigrate/reports/{dag_id}/" in body
    link = body.split("[owner report](", 1)[1].split(")", 1)[0]
    report = client().get(link)  # read back from memory:// by the API server
    assert report.status_code == 200 and f"report: {pilot['source_user']}" in report.text
    assert "**Approve** copies the other 1 accounts" in body
    status = seen["status"]
    extra = {t["task_id"]: t["state"] for t in status["extra_tasks"]}
    assert extra == {TASK: "awaiting_input", "cutover_ready": None}
    rows = {r["account"]: r for r in status["accounts"]}
    assert rows[other["source_user"]]["phase"]["label"] == "before initial copy"
    estimate = status["totals"]["estimate"]  # from the pilot's copy rate and the other's size
    other_size = sum(f["bytes"] for f in run.xcom(f"{other_group}.test")["folders"])
    assert estimate["remaining_accounts"] == 1 and estimate["remaining_bytes"] == other_size
    assert estimate["seconds"] > 0 and estimate["parallel"] == 1
    page = seen["page"]
    assert "left for the initial copies of 1 accounts (1 finished initial copies" in page
    assert f'class="badge s-awaiting_input">{TASK}: awaiting_input</a>' in page
    (mail,) = smtp.wait_for(APPROVERS, 1)
    assert "the pilot accounts are done; approve the full run of 1 accounts" in mail["Subject"]
    assert f"- {pilot['source_user']}: ok (2 messages copied)" in html_part(mail)

    assert run.state == "success"
    assert run.states[f"{other_group}.initial_copy"] == run.states["cutover_ready"] == "success"
    assert run.states[f"{pilot_group}.initial_copy"] == "success"
    assert _inbox(modern_imap, other) == 3
    answer = run.xcom(TASK)
    assert (
        answer["chosen_options"] == ["Approve"] and answer["responded_by_user"]["name"] == "admin"
    )


def test_reject_skips_the_other_accounts_and_a_pilot_run_asks_nothing(setup, modern_imap):
    folder, dag_id, pilot, other = setup("reject")
    pilot_group, other_group = _group(pilot["source_user"]), _group(other["source_user"])

    pilots_only = run_migration(folder, {"accounts": [pilot["source_user"]]})
    assert pilots_only.states[TASK] == "skipped"  # nothing to approve: it did not wait
    assert pilots_only.states[f"{pilot_group}.initial_copy"] == "success"
    assert f"{other_group}.initial_copy" not in pilots_only.states  # not in the run at all

    approver = Approver(dag_id, "Reject", lambda run_id: {})
    approver.start()
    run = run_migration(folder)
    approver.join(timeout=60)
    assert approver.error is None, approver.error
    assert approver.response.status_code == 200, approver.response.text
    assert run.states[TASK] == "success"
    # Reject skips the other accounts' copies as a whole: the group's later steps are never
    # expanded into one instance per account.
    for task in ("account.initial_copy", "account.delta_copy", "cutover_ready"):
        assert run.states[task] == "skipped", task
    assert f"{other_group}.initial_copy" not in run.states
    assert run.states[f"{other_group}.test"] == "success"  # tested while the owners reviewed
    assert _inbox(modern_imap, other) == 0 and _inbox(modern_imap, pilot) == 2
