"""How fast the status page loads for a large plan, in Chromium (Playwright), from a real api-server.

``python -m bench.status_page [--accounts 10000]``:

1. a temporary Airflow home (the test harness's :class:`AirflowStack` environment, SQLite), a
   plan of ``--accounts`` accounts over two mail domains (MX checked against a local dnsmasq that
   still answers the old host), parsed by ``airflow dag-processor`` as in production;
2. a run in the middle of the migration, written straight into the metadata DB (a real run of
   10,000 accounts is out of reach here): ``test`` and ``initial_copy`` done with their XComs,
   ``cutover_ready`` done, ``wait_for_mx`` deferred, some copies failed, some running;
3. ``airflow api-server`` alone, and Chromium signed in through the login form, loading the page
   ``--rounds`` times each: the first page after the run changed (everything computed), the
   same with the run unchanged (the computed status reused), a state filter, a search, a far
   page, the JSON API and the page inside Airflow's "Migrations" iframe. The figure is the time
   to the page's ``load`` event (navigation start to load end), median and max; the very first
   load after the api-server started also reads the DAG into its cache.

Nothing is asserted: it prints the figures and writes ``bench/results/status_page.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from harness.airflow_stack import AIRFLOW, AirflowStack  # noqa: E402
from harness.browser import signed_in_page  # noqa: E402
from harness.dns import DnsServer  # noqa: E402

from bench.plan_scale import grid  # noqa: E402

DAG_ID = "migration_scale"


def write_plan(plans: Path, accounts: int, dns: DnsServer) -> None:
    plans.mkdir(parents=True, exist_ok=True)
    rows = ["source_user,source_password,destination_user,destination_password"]
    for n in range(accounts):
        domain = "one.example" if n % 10 else "two.example"
        rows.append(f"user{n:05d}@{domain},,user{n:05d}@{domain},")
    (plans / "scale_accounts.csv").write_text("\n".join(rows) + "\n")
    (plans / "scale.yaml").write_text(
        "name: scale\nsource: {connection: scale_old}\ndestination: {connection: scale_new}\n"
        "accounts: scale_accounts.csv\n"
        f"mx: {{expect: [mx.new.example], resolvers: ['{dns.address}'], "
        f"authoritative: ['{dns.address}']}}\n"
        "delta: {timezone: Europe/Berlin, window: '19:00-06:00'}\n"
        "parallel_accounts: 20\n"
    )


SEED = r"""
import datetime as dt, json, sys
from airflow.models.dagbag import DBDagBag
from airflow.models.taskinstance import TaskInstance
from airflow.models.taskmap import TaskMap
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
from airflow.utils.state import DagRunState
from airflow.utils.types import DagRunTriggeredByType, DagRunType
from sqlalchemy import text, update
from mailmigrate.plan import load_plan
from mailmigrate_airflow.operators import mx_domain_of

dag_id, plan_file = sys.argv[1], sys.argv[2]
now = dt.datetime.now(dt.UTC)
plan = load_plan(plan_file)
with create_session() as session:
    dag = DBDagBag().get_latest_version_of_dag(dag_id, session=session)
    run = dag.create_dagrun(
        run_id="manual__scale", logical_date=None, data_interval=None, run_after=now,
        run_type=DagRunType.MANUAL, triggered_by=DagRunTriggeredByType.TEST,
        state=DagRunState.RUNNING, conf={}, session=session,
    )
    session.flush()
    # What the accounts task and the scheduler do: the account list, then one instance of
    # each of the group's steps per account.
    accounts = [{"source_user": a.source_user, "domain": mx_domain_of(a),
                 "destination_user": a.destination_user} for a in plan.accounts]
    session.add(TaskMap(dag_id=dag_id, task_id="accounts", run_id=run.run_id, map_index=-1,
                        length=len(accounts), keys=None))
    xcoms = [dict(dag_run_id=run.id, task_id="accounts", map_index=-1, key="return_value",
                  dag_id=dag_id, run_id=run.run_id, value=json.dumps(accounts), timestamp=now)]
    session.flush()
    for task_id in ("test", "initial_copy", "wait_for_mx", "wait_for_delta_window", "delta_copy"):
        TaskMap.expand_mapped_task(dag.get_task(f"account.{task_id}"), run.run_id, session=session)
    session.flush()
    where = (TaskInstance.dag_id == dag_id, TaskInstance.run_id == run.run_id)
    def states(task_id, state, **values):
        session.execute(update(TaskInstance).where(*where, TaskInstance.task_id == task_id)
                        .values(state=state, start_date=now, end_date=now, **values))
    states("accounts", "success")
    states("account.test", "success")
    states("account.initial_copy", "success")
    states("account.wait_for_mx", "deferred")
    states("cutover_ready", "success")
    for n, account in enumerate(accounts):
        if n % 500 in (7, 8):
            session.execute(
                update(TaskInstance).where(*where, TaskInstance.task_id == "account.initial_copy",
                                           TaskInstance.map_index == n)
                .values(state="failed" if n % 500 == 7 else "running",
                        end_date=now if n % 500 == 7 else None))
    folders = [{"source": f"F{i}", "destination": f"F{i}", "messages": 400, "bytes": 8_000_000} for i in range(6)]
    test = {"ok": True, "folders": folders, "problems": [], "warnings": []}
    copy = {"ok": True, "phase": "initial", "seconds": 60.0, "folder_count": 6,
            "totals": {"source_messages": 2400, "source_bytes": 48_000_000, "copied": 2400,
                       "copied_bytes": 48_000_000, "skipped": 0, "failed": 0, "missing": 0}}
    for n in range(len(accounts)):
        for task, value in (("test", test), ("initial_copy", copy)):
            xcoms.append(dict(dag_run_id=run.id, task_id=f"account.{task}", map_index=n,
                              key="return_value", dag_id=dag_id, run_id=run.run_id,
                              value=json.dumps(value), timestamp=now))
    session.execute(XComModel.__table__.insert(), xcoms)
    shown = text("UPDATE task_instance SET rendered_map_index = :user WHERE dag_id = :dag "
                 "AND run_id = :run AND task_id = :task AND map_index = :n")
    session.execute(shown, [  # what each task process shows in the grid as it starts
        {"user": a["source_user"], "dag": dag_id, "run": run.run_id, "task": task, "n": n}
        for n, a in enumerate(accounts) for task in ("account.test", "account.initial_copy",
                                                     "account.wait_for_mx")])
print(len(accounts))
"""


def timed_load(page, url: str) -> float:
    page.goto(url, wait_until="load")
    return page.evaluate(
        "() => { const n = performance.getEntriesByType('navigation')[0];"
        " return n.loadEventEnd - n.startTime; }"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the temporary Airflow home")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="mailmigrate-statusbench-"))
    dns = DnsServer(root / "dns")
    dns.set_mx("one.example", ["mx.old.example"])
    dns.set_mx("two.example", ["mx.old.example"])
    dns.start()
    stack = AirflowStack(root / "airflow", plans_dir=root / "plans", state_dir=root / "state")
    stack.env["AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT"] = "900"
    stack.env["AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT"] = "900"
    figures: dict[str, object] = {"accounts": args.accounts}
    try:
        write_plan(root / "plans", args.accounts, dns)
        started = time.monotonic()
        subprocess.run([AIRFLOW, "db", "migrate"], env=stack.env, check=True,
                       capture_output=True)  # fmt: skip
        stack._spawn("dag-processor", ["dag-processor"])
        stack.wait_for(
            lambda: _dag_parsed(stack), 1200, f"the dag-processor to parse {DAG_ID}", interval=5
        )
        figures["parse_seconds"] = round(time.monotonic() - started, 1)
        processor = stack.processes.pop("dag-processor")
        os.killpg(processor.pid, signal.SIGTERM)  # its own session: it and its parsers
        processor.wait(60)
        seeded = time.monotonic()
        env = {**stack.env, "PYTHONPATH": os.pathsep.join(
            str(ROOT / p) for p in ("plugins", "include"))}  # fmt: skip
        plan_file = str(root / "plans" / "scale.yaml")
        subprocess.run([sys.executable, "-c", SEED, DAG_ID, plan_file], env=env, check=True)
        figures["seed_seconds"] = round(time.monotonic() - seeded, 1)
        stack._spawn("api-server", ["api-server"])
        stack.wait_for(lambda: stack.health(), 300, "the api-server to answer", 2)
        figures["pages"] = measure(stack, args.rounds)
        figures["grid"] = grid(stack, DAG_ID, args.rounds)  # Airflow's own, with the run
        print(f"grid: {figures['grid']}")
    finally:
        stack.stop()
        dns.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(figures, indent=2))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "status_page.json").write_text(json.dumps(figures, indent=2) + "\n")


def _dag_parsed(stack: AirflowStack) -> bool:
    database = stack.database_path
    with sqlite3.connect(database) as db:
        query = "SELECT 1 FROM serialized_dag WHERE dag_id = ?"
        return db.execute(query, (DAG_ID,)).fetchone() is not None


def touch(stack: AirflowStack, n: int) -> None:
    """Change one task instance of the run, as a running migration constantly does."""
    database = stack.database_path
    with sqlite3.connect(database) as db:
        db.execute(
            "UPDATE task_instance SET updated_at = datetime('now', ?) WHERE task_id = ?",
            (f"+{n} seconds", "cutover_ready"),
        )


def measure(stack: AirflowStack, rounds: int) -> dict[str, dict[str, float]]:
    base = stack.base_url
    page_url = f"{base}/mailmigrate/migrations/{DAG_ID}"
    urls = {
        "first page again, the run unchanged": page_url,
        "filter: failed": f"{page_url}?state=failed",
        "search: user0999": f"{page_url}?q=user0999",
        "page 150": f"{page_url}?page=150",
        "JSON API": f"{base}/mailmigrate/api/migrations/{DAG_ID}",
    }
    results: dict[str, dict[str, float]] = {}
    with signed_in_page(stack) as page:
        first = timed_load(page, page_url)  # builds the app, reads the DAG into the cache
        results["first load after start"] = {"ms": round(first)}
        changed = []
        for n in range(rounds):  # a task instance changed since the last load: all computed anew
            touch(stack, n)
            changed.append(timed_load(page, page_url))
        results["first page, the run changed since the last load"] = {
            "median_ms": round(statistics.median(changed)), "max_ms": round(max(changed))
        }  # fmt: skip
        for label, url in urls.items():
            times = [timed_load(page, url) for _ in range(rounds)]
            results[label] = {
                "median_ms": round(statistics.median(times)),
                "max_ms": round(max(times)),
            }
            print(f"{label}: median {statistics.median(times):.0f} ms, max {max(times):.0f} ms")
        framed = []
        for _ in range(rounds):
            begin = time.monotonic()
            page.goto(f"{base}/plugin/migrations/mailmigrate/migrations/{DAG_ID}")
            page.frame_locator('iframe[title="Migrations"]').locator("table.accounts").wait_for()
            framed.append((time.monotonic() - begin) * 1000)
        results["inside Airflow's UI (iframe)"] = {
            "median_ms": round(statistics.median(framed)), "max_ms": round(max(framed))
        }  # fmt: skip
        page.screenshot(path=str(ROOT / "build" / "status_page_scale.png"))
    return results


if __name__ == "__main__":
    main()
