"""The scale run through Airflow: one DAG run of a plan with every account, on ``airflow
standalone`` (SQLite, LocalExecutor), started by the test harness's :class:`AirflowStack`.

The run is triggered with ``stop: initial_copy`` (each account: ``test`` then ``initial_copy``;
the later steps skip). Its wall time is the run's own (start to end as Airflow records them);
Airflow's start-up is reported separately and not counted.
"""

from __future__ import annotations

import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.airflow_stack import AirflowStack

from bench.servers import BenchServers
from bench.tools import Login, connection_json, write_plan

DAG_ID = "migration_bench"


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _destination_total(servers: BenchServers, logins: list[Login]) -> int:
    total = 0
    for login in logins:
        client = servers.client(servers.destination, login)
        try:
            for _, _, name in client.list_folders():
                total += client.folder_status(name, [b"MESSAGES"])[b"MESSAGES"]
        finally:
            client.logout()
    return total


def run_dag_variant(
    servers: BenchServers,
    workdir: Path,
    sources: list[Login],
    destinations: list[Login],
    messages: int,
    *,
    parallel_accounts: int | None = None,
    timeout: float = 900,
    keep_log: bool = False,
    say=print,
) -> dict[str, Any]:
    """Start Airflow, run the plan's DAG once, stop Airflow; the figures (``ok`` False and an
    ``error`` when Airflow could not run it)."""
    parallel = parallel_accounts or len(sources)
    figures: dict[str, Any] = {
        "name": f"one DAG run, LocalExecutor, {parallel} accounts at a time",
        "ok": False,
    }
    root = workdir / "airflow"
    plans = root / "plans"
    plans.mkdir(parents=True, exist_ok=True)
    write_plan(plans, list(zip(sources, destinations, strict=True)), name="bench",
               parallel_accounts=parallel)  # fmt: skip
    stack = AirflowStack(root / "stack", plans_dir=plans, state_dir=root / "state")
    stack.env["AIRFLOW_CONN_BENCH_SRC"] = connection_json(sources[0])
    stack.env["AIRFLOW_CONN_BENCH_DST"] = connection_json(destinations[0])
    stack.env["AIRFLOW__CORE__PARALLELISM"] = str(max(4, parallel))
    started = time.monotonic()
    try:
        stack.start_standalone()
        stack.wait_for_dag(DAG_ID)
        api = stack.api()
        api.request("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
        figures["airflow_startup_seconds"] = time.monotonic() - started
        say(f"  scale DAG: Airflow up in {figures['airflow_startup_seconds']:.0f} s; running")
        answer = api.request("POST", f"/dags/{DAG_ID}/dagRuns",
                             json={"logical_date": None, "conf": {"stop": "initial_copy"}})  # fmt: skip
        triggered = time.monotonic()
        run = stack.wait_for_run(DAG_ID, answer["dag_run_id"], timeout)
        figures["observed_seconds"] = time.monotonic() - triggered
        tasks = api.task_instances(DAG_ID, answer["dag_run_id"])
        states = {task: ti["state"] for task, ti in tasks.items()}
        copies = [ti for task, ti in tasks.items() if task.endswith(".initial_copy")]
        figures["seconds"] = _seconds(run.get("start_date"), run.get("end_date"))
        figures["run_state"] = run["state"]
        figures["task_states"] = {s: list(states.values()).count(s) for s in set(states.values())}
        figures["initial_copy_task_seconds_sum"] = sum(ti.get("duration") or 0 for ti in copies)
        figures["copied"] = _destination_total(servers, destinations)
        if keep_log:
            logs = sorted(stack.home.glob("logs/**/task_id=*.initial_copy/attempt=1.log"))
            figures["sample_log"] = logs[0].read_text()[-8000:] if logs else ""
        figures["ok"] = run["state"] == "success" and figures["copied"] == messages * len(sources)
        if not figures["ok"]:
            figures["error"] = f"run {run['state']}, {figures['copied']} messages copied"
        say(f"  scale DAG run: {figures['seconds']:.1f} s ({run['state']}), "
            f"{figures['copied']} messages")  # fmt: skip
    except Exception as exc:  # Airflow not usable here: report, keep the other figures
        figures["error"] = f"{type(exc).__name__}: {str(exc)[-1500:]}"
        say(f"  scale DAG: failed: {figures['error'][:300]}")
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)
    return figures
