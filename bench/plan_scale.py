"""Plans of thousands of mailboxes: parse, serialization, a test migration, a large run, the grid.

``python -m bench.plan_scale [--accounts 10000] [--plans 20] [--run-accounts 1000]
[--skip parse|folder|runs|grid]`` (``make bench`` runs it as its "plan scale" section):

1. **parse**: one plan of 500, 2,000 and ``--accounts`` accounts, each in a fresh interpreter:
   Airflow's DagBag parses a DAG folder holding ``dags/migrations.py`` and the plan, then the
   DAG is serialized as the dag-processor does (``DagSerialization.to_dict``). Targets: a
   10,000-account plan parses in under 5 s and serializes to under 2 MB.
2. **folder**: ``--plans`` such plans in one folder, parsed in one DagBag with Airflow's default
   30 s import timeout (target: no timeout, no import error).
3. **runs**: ``airflow standalone`` (LocalExecutor, SQLite) with real Dovecot servers (every
   login as Dovecot's master user, no account passwords in the plans):
   a test migration of 3 accounts of a ``--accounts`` plan (target: at most 3 x 5 task
   processes), then one run of ``--run-accounts`` small accounts and one of 20, both
   ``stop: test``: task instances finished per minute of each.
4. **grid**: Airflow's grid of the ``--accounts`` DAG with its runs, in headless Chromium
   (Playwright): time to the grid showing the mapped group; a screenshot in ``build/``.

Nothing is asserted: it prints the figures and writes ``plan_scale.json`` to ``--out``
(``bench/results/``).
``--root DIR`` measures the parse of another checkout (e.g. ``git worktree`` of an older
commit) for a before/after table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from harness.airflow_stack import AirflowStack, StackError  # noqa: E402
from harness.browser import signed_in_page  # noqa: E402

from bench.servers import BenchServers  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "plan_scale.json"
SCREENSHOT = ROOT / "build" / "plan_scale_grid.png"
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def write_plan(plans: Path, name: str, users: list[str], **settings: Any) -> Path:
    """``<plans>/<name>.yaml`` over ``users`` (source = destination user, no passwords: the
    connections log in as the master user), its accounts in ``<name>_accounts.csv``."""
    plans.mkdir(parents=True, exist_ok=True)
    rows = ["source_user,source_password,destination_user,destination_password"]
    rows += [f"{user},,{user}," for user in users]
    (plans / f"{name}_accounts.csv").write_text("\n".join(rows) + "\n")
    lines = [f"name: {name}", "source: {connection: scale_src}",
             "destination: {connection: scale_dst}", f"accounts: {name}_accounts.csv",
             "delta: {timezone: Europe/Berlin, window: any}", "state_dir: state"]  # fmt: skip
    lines += [f"{key}: {json.dumps(value)}" for key, value in settings.items()]
    path = plans / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def fake_users(count: int, prefix: str = "user") -> list[str]:
    return [f"{prefix}{n:05d}@{'two' if n % 10 == 0 else 'one'}.example" for n in range(count)]


# -- 1 and 2: parsing, in a fresh interpreter each ------------------------------------------

CHILD = r"""
import json, os, sys, time
from airflow.dag_processing.dagbag import DagBag
from airflow.serialization.serialized_objects import DagSerialization
started = time.perf_counter()
bag = DagBag(sys.argv[1])
parse = time.perf_counter() - started
figures = {"parse_seconds": round(parse, 2), "dags": len(bag.dags),
           "import_errors": {k: v[-300:] for k, v in bag.import_errors.items()}}
if "migration_scale00" in bag.dags:
    dag = bag.dags["migration_scale00"]  # the plan's migration DAG
    started = time.perf_counter()
    data = DagSerialization.to_dict(dag)
    figures["serialize_seconds"] = round(time.perf_counter() - started, 2)
    figures["serialized_bytes"] = len(json.dumps(data))
    figures["tasks"] = len(dag.tasks)
print(json.dumps(figures))
"""


def parse_folder(root: Path, plans: int, accounts: int, timeout: int = 30) -> dict[str, Any]:
    """Parse a DAG folder of ``plans`` plans of ``accounts`` accounts in a new interpreter,
    with the code of checkout ``root``; its figures."""
    work = Path(tempfile.mkdtemp(prefix="mailmigrate-planscale-"))
    try:
        dags = work / "dags"
        dags.mkdir()
        shutil.copy(root / "dags" / "migrations.py", dags / "migrations.py")
        for number in range(plans):
            write_plan(dags / "plans", f"scale{number:02d}", fake_users(accounts),
                       parallel_accounts=20, mx={"expect": ["mx.new.example"]})  # fmt: skip
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(work),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(root / "plugins"),  # the deltas' timetable
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": str(timeout),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{work}/airflow.db",
            "PYTHONPATH": os.pathsep.join(str(root / p) for p in ("plugins", "include")),
        }
        env.pop("MAILMIGRATE_PLANS_DIR", None)
        done = subprocess.run([sys.executable, "-c", CHILD, str(dags)], env=env, text=True,
                              capture_output=True, timeout=timeout + 600)  # fmt: skip
        if done.returncode:
            return {"error": done.stderr[-1500:]}
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- 3: runs through the scheduler ----------------------------------------------------------


def _seed(servers: BenchServers, users: list[str], messages: int) -> None:
    """The accounts on both servers, ``messages`` small messages in each source INBOX."""
    from harness.corpus import make_message, seed_folder

    for n, user in enumerate(users):
        for server in (servers.source, servers.destination):
            server.add_account(user, "unused-" + os.urandom(6).hex())
        client = servers.source.master_client(user)
        seed_folder(client, "INBOX", [(make_message(n * 10 + i, size=2000), (), NOW)
                                      for i in range(messages)])  # fmt: skip
        client.logout()


def _finished_per_minute(run: dict[str, Any], tis: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A run's task processes per minute: task instances that ran (success, failed, or skipped by
    their own process) over the run's wall time, up to now for a run still going."""
    # A try counted once it ended (Airflow 3 counts a try from scheduling on; the instances
    # the scheduler skipped keep try number 0).
    done = ("success", "failed", "skipped")
    ran = [ti for ti in tis.values() if (ti.get("try_number") or 0) > 0 and ti["state"] in done]
    seconds = None
    if run.get("start_date"):
        end = datetime.fromisoformat(run["end_date"]) if run.get("end_date") else datetime.now(UTC)
        seconds = (end - datetime.fromisoformat(run["start_date"])).total_seconds()
    states: dict[str, int] = {}
    for ti in tis.values():
        states[str(ti["state"])] = states.get(str(ti["state"]), 0) + 1
    return {
        "run_state": run["state"],
        "seconds": seconds,
        "task_instances": len(tis),
        "task_processes": len(ran),
        "states": states,
        "processes_per_minute": round(len(ran) / seconds * 60, 1) if seconds else None,
    }


def _run(stack: AirflowStack, dag_id: str, conf: dict[str, Any], accounts: int,
         timeout: float) -> dict:  # fmt: skip
    """Trigger ``dag_id`` with ``conf`` (a run of ``accounts`` accounts), wait; its figures."""
    api = stack.api()
    answer = api.request("POST", f"/dags/{dag_id}/dagRuns",
                         json={"logical_date": None, "conf": conf})  # fmt: skip
    try:
        run = stack.wait_for_run(dag_id, answer["dag_run_id"], timeout)
    except StackError:  # too slow here: the throughput so far
        run = api.get(f"/dags/{dag_id}/dagRuns/{answer['dag_run_id']}")
    figures = {"accounts": accounts, "conf": conf}
    return figures | _finished_per_minute(run, api.task_instances(dag_id, answer["dag_run_id"]))


def runs(work: Path, accounts: int, run_accounts: int, timeout: float, say=print) -> dict:
    """The test migration, the large and the 20-account run; the grid's DAG stays up for
    :func:`grid` (returned as ``stack``)."""
    figures: dict[str, Any] = {}
    with BenchServers() as servers:
        plans = work / "plans"
        pilots = fake_users(3, "real")
        write_plan(plans, "scale", pilots + fake_users(accounts - 3), parallel_accounts=20)
        large = fake_users(run_accounts, "small")
        write_plan(plans, "large", large, parallel_accounts=run_accounts)
        write_plan(plans, "twenty", large[:20], parallel_accounts=20)
        started = time.monotonic()
        _seed(servers, pilots + large, messages=3)
        say(f"  plan scale: {len(pilots) + len(large)} accounts seeded in "
            f"{time.monotonic() - started:.0f} s")  # fmt: skip
        stack = AirflowStack(work / "stack", plans_dir=plans, state_dir=work / "state")
        stack.env["AIRFLOW_CONN_SCALE_SRC"] = json.dumps(servers.source.connection("scale_src"))
        stack.env["AIRFLOW_CONN_SCALE_DST"] = json.dumps(
            servers.destination.connection("scale_dst")
        )
        stack.env["AIRFLOW__CORE__PARALLELISM"] = "8"
        try:
            stack.start_standalone()
            api = stack.api()
            for dag_id in ("migration_scale", "migration_large", "migration_twenty"):
                stack.wait_for_dag(dag_id)
                api.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
            test = _run(stack, "migration_scale", {"accounts": pilots}, len(pilots), timeout)
            figures["test_migration_3_of_plan"] = test
            say(f"  plan scale: test migration of 3 of {accounts}: {test}")
            for name, users in (("twenty", large[:20]), ("large", large)):
                dag_id = f"migration_{name}"
                figure = _run(stack, dag_id, {"stop": "test"}, len(users), timeout)
                figures[f"run_{name}"] = figure
                say(f"  plan scale: {dag_id} (stop: test): {figure}")
            figures["grid"] = grid(stack, "migration_scale")
            say(f"  plan scale: grid: {figures['grid']}")
        except Exception as exc:  # report what was measured
            figures["error"] = f"{type(exc).__name__}: {str(exc)[-1500:]}"
            say(f"  plan scale: runs failed: {figures['error'][:500]}")
        finally:
            stack.stop()
    return figures


# -- 4: the grid in Chromium ----------------------------------------------------------------


def grid(stack: AirflowStack, dag_id: str, rounds: int = 3) -> dict[str, Any]:
    """Load Airflow's grid of ``dag_id`` in Chromium until its tasks show (``cutover_ready``,
    the last row) with the latest run's cell of the mapped group, ``rounds`` times; a
    screenshot of the last load."""
    times = []
    with signed_in_page(stack) as page:
        for _ in range(rounds):
            began = time.monotonic()
            page.goto(f"{stack.base_url}/dags/{dag_id}")  # the DAG's page opens on its grid
            page.get_by_text("cutover_ready").first.wait_for()
            # ... and the run's cell of the mapped group, its state summed over every instance.
            page.locator('a[href*="/runs/"][href*="/tasks/group/account"]').first.wait_for()
            times.append(round(time.monotonic() - began, 2))
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT))
    return {"seconds": times, "screenshot": str(SCREENSHOT.relative_to(ROOT))}


def markdown(figures: dict[str, Any]) -> str:
    """The "plan scale" section of results.md: each figure next to its target."""
    lines = ["Plan scale (bench/plan_scale.py):", "", "| figure | measured | target |",
             "|---|---|---|"]  # fmt: skip
    for accounts, one in sorted((figures.get("parse") or {}).items(), key=lambda i: int(i[0])):
        if "error" in one:
            lines.append(f"| one plan of {int(accounts):,} accounts | error | |")
            continue
        goal = "< 5 s, < 2 MB" if int(accounts) >= 10_000 else ""
        lines.append(
            f"| one plan of {int(accounts):,} accounts: parse, serialize, JSON | "
            f"{one['parse_seconds']:.2f} s, {one['serialize_seconds']:.2f} s, "
            f"{one['serialized_bytes'] / 1e6:.2f} MB ({one['tasks']} tasks) | {goal} |"
        )
    folder = figures.get("folder")
    if folder:
        measured = (f"{folder['parse_seconds']:.1f} s, {folder['dags']} DAGs, "
                    f"{len(folder.get('import_errors') or {})} import errors"
                    if "error" not in folder else "error")  # fmt: skip
        lines.append(f"| {folder['plans']} plans of {figures['accounts']:,} in one folder | "
                     f"{measured} | inside the 30 s import timeout |")  # fmt: skip
    runs = figures.get("runs") or {}
    test = runs.get("test_migration_3_of_plan")
    if test:
        lines.append(f"| test migration of 3 accounts of the {figures['accounts']:,}-account plan | "
                     f"{test['task_processes']} task processes, {test['task_instances']} task "
                     f"instances, run {test['run_state']} | <= 3 x 5 processes |")  # fmt: skip
    for name in ("run_twenty", "run_large"):
        run = runs.get(name)
        if run:
            lines.append(f"| one run, stop: test, {run['accounts']:,} accounts | "
                         f"{run['processes_per_minute']} task processes/min "
                         f"({run['task_processes']} in {run['seconds']:.0f} s, "
                         f"run {run['run_state']}) | |")  # fmt: skip
    if runs.get("grid"):
        lines.append(f"| the grid in Chromium | {runs['grid']['seconds']} s | < 3 s |")
    if runs.get("error"):
        lines.append(f"| runs | error: {runs['error'][:200]} | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--plans", type=int, default=20)
    parser.add_argument("--run-accounts", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=3600, help="per run, seconds")
    parser.add_argument("--skip", action="append", default=[],
                        choices=["parse", "folder", "runs"])  # fmt: skip
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to parse")
    parser.add_argument("--out", type=Path, default=RESULTS.parent, help="where results go")
    args = parser.parse_args(argv)
    figures: dict[str, Any] = {"accounts": args.accounts, "root": str(args.root)}
    if "parse" not in args.skip:
        figures["parse"] = {}
        for accounts in sorted({500, 2000, args.accounts}):
            figures["parse"][accounts] = parse_folder(args.root, 1, accounts, timeout=600)
            print(f"plan scale: one plan of {accounts}: {figures['parse'][accounts]}")
    if "folder" not in args.skip:
        folder = parse_folder(args.root, args.plans, args.accounts, timeout=30)
        figures["folder"] = {"plans": args.plans, **folder}
        print(f"plan scale: {args.plans} plans of {args.accounts}: {figures['folder']}")
    if "runs" not in args.skip:
        work = Path(tempfile.mkdtemp(prefix="mailmigrate-planscale-runs-"))
        try:
            figures["runs"] = runs(work, args.accounts, args.run_accounts, args.timeout)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / RESULTS.name).write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
