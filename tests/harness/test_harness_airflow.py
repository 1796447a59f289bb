"""The Airflow side of the harness: an isolated home on SQLite, and dag.test() that really runs."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum

from harness.airflow_env import DAGS_FOLDER, PLUGINS_FOLDER, run_dag_test

START = pendulum.datetime(2024, 1, 1, tz="UTC")


def test_airflow_home_is_isolated_and_points_at_the_repo(airflow_db: Path) -> None:
    from airflow.configuration import conf

    assert Path(os.environ["AIRFLOW_HOME"]) == airflow_db
    assert conf.get("database", "sql_alchemy_conn") == f"sqlite:///{airflow_db}/airflow.db"
    assert (airflow_db / "airflow.db").is_file()
    assert Path(conf.get("core", "dags_folder")) == DAGS_FOLDER
    assert Path(conf.get("core", "plugins_folder")) == PLUGINS_FOLDER
    assert conf.getboolean("core", "load_examples") is False


def test_dag_test_runs_tasks_in_order_with_xcom(airflow_db: Path, tmp_path: Path) -> None:
    from airflow.sdk import dag, task

    out = tmp_path / "out.txt"

    @dag(dag_id="harness_trivial", schedule=None, start_date=START, catchup=False)
    def harness_trivial():
        @task
        def produce() -> int:
            return 41

        @task
        def consume(value: int) -> None:
            out.write_text(str(value + 1))

        consume(produce())

    run = run_dag_test(harness_trivial())
    assert run.state == "success"
    assert {ti.task_id: ti.state for ti in run.get_task_instances()} == {
        "produce": "success",
        "consume": "success",
    }
    assert out.read_text() == "42"


def test_dag_test_runs_a_deferred_trigger_in_process(airflow_db: Path, tmp_path: Path) -> None:
    from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
    from airflow.sdk import DAG, BaseOperator

    marker = tmp_path / "resumed.txt"

    class DeferOnce(BaseOperator):
        def execute(self, context):
            self.defer(trigger=TimeDeltaTrigger(timedelta(milliseconds=50)), method_name="resume")

        def resume(self, context, event=None):
            marker.write_text("resumed after trigger")

    with DAG(dag_id="harness_deferral", schedule=None, start_date=START, catchup=False) as dag:
        DeferOnce(task_id="wait")

    run = run_dag_test(dag)
    assert run.state == "success"
    assert marker.read_text() == "resumed after trigger"


def test_a_failing_task_fails_the_run(airflow_db: Path) -> None:
    from airflow.sdk import dag, task

    @dag(dag_id="harness_failing", schedule=None, start_date=START, catchup=False)
    def harness_failing():
        @task(retries=0)
        def boom() -> None:
            raise RuntimeError("expected failure")

        boom()

    run = run_dag_test(harness_failing())
    assert run.state == "failed"
    assert [ti.state for ti in run.get_task_instances()] == ["failed"]
