"""The repo's dags/ folder imports cleanly in Airflow's DagBag, and a broken DAG file is caught."""

from __future__ import annotations

from pathlib import Path

from harness.airflow_env import DAGS_FOLDER, load_dag_folder


def _errors(bag) -> str:
    return "\n".join(f"{path}: {error}" for path, error in bag.import_errors.items())


def test_repo_dags_import_without_errors() -> None:
    bag = load_dag_folder(DAGS_FOLDER)
    assert not bag.import_errors, _errors(bag)
    if (DAGS_FOLDER / "migrations.py").exists():
        assert bag.dags, "dags/migrations.py defines no DAG"
        for dag_id, dag in bag.dags.items():
            assert dag.tasks, f"DAG {dag_id} has no tasks"


def test_a_dag_file_that_raises_is_an_import_error(tmp_path: Path) -> None:
    """The check above is only worth something if a raising DAG file makes it fail."""
    (tmp_path / "good.py").write_text(
        "import pendulum\n"
        "from airflow.sdk import DAG\n"
        "from airflow.providers.standard.operators.empty import EmptyOperator\n"
        "with DAG('harness_good', schedule=None, start_date=pendulum.datetime(2024, 1, 1)):\n"
        "    EmptyOperator(task_id='nothing')\n"
    )
    (tmp_path / "raises.py").write_text("raise RuntimeError('plan file broken')\n")
    (tmp_path / "syntax.py").write_text("def broken(:\n")
    bag = load_dag_folder(tmp_path)
    assert set(bag.dags) == {"harness_good"}
    assert set(bag.import_errors) == {"raises.py", "syntax.py"}
    assert "plan file broken" in bag.import_errors["raises.py"]
    assert "SyntaxError" in bag.import_errors["syntax.py"]
