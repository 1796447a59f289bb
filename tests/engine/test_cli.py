"""The installed ``mailmigrate`` console script: validation and bad-input handling (exit 2).

Commands that talk to servers (test, copy, report) run against real Dovecot servers in
``test_cli_engine.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

MAILMIGRATE = Path(sys.executable).with_name("mailmigrate")
EXAMPLE = Path(__file__).resolve().parents[2] / "dags" / "plans" / "example.yaml"


def clean_env(**connections: str) -> dict[str, str]:
    """The environment without any ``AIRFLOW_CONN_*`` but the given ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env.pop("MAILMIGRATE_DEBUG", None)
    env.update({f"AIRFLOW_CONN_{conn_id.upper()}": value for conn_id, value in connections.items()})
    return env


def mailmigrate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(MAILMIGRATE), *args],
        capture_output=True,
        text=True,
        env=clean_env() if env is None else env,
        timeout=120,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_validate_a_valid_plan():
    result = mailmigrate("validate", str(EXAMPLE))
    assert result.returncode == 0
    assert result.stderr.strip() == "plan OK: 4 accounts (DAG migration_example)"
    assert result.stdout == ""


def test_validate_json_of_a_valid_plan():
    result = mailmigrate("validate", str(EXAMPLE), "--json")
    assert result.returncode == 0
    summary = json.loads(result.stdout)
    assert summary["plan"] == "example" and summary["command"] == "validate" and summary["ok"]
    assert summary["dag_id"] == "migration_example" and summary["problems"] == []
    assert summary["accounts"][2] == {
        "source_user": "carol",
        "destination_user": "carol@example.com",
        "mx_domain": "example.com",
    }
    assert "secret" not in result.stdout


@pytest.fixture
def broken_plan(tmp_path: Path) -> Path:
    (tmp_path / "accounts.csv").write_text(
        "source_user,source_password,destination_user,destination_password\n"
        "a@x.example,Hidden-Pw-1,a@y.example,Hidden-Pw-2\n"
        "a@x.example,Hidden-Pw-3\n"
    )
    plan = tmp_path / "broken.yaml"
    plan.write_text(
        "name: broken\n"
        "source: {connection: old}\n"
        "destination: {conection: new}\n"
        "accounts: accounts.csv\n"
        "delta: {window: '19-6'}\n"
    )
    return plan


def test_validate_prints_every_problem_and_exits_2(broken_plan):
    result = mailmigrate("validate", str(broken_plan))
    assert result.returncode == 2
    csv = broken_plan.with_name("accounts.csv")
    assert result.stderr.splitlines() == [
        f'{broken_plan}:3: destination.conection: unknown key; did you mean "connection"? '
        "(allowed here: connection)",
        f"{broken_plan}:3: destination.connection: missing, e.g. destination: "
        "{connection: acme_new}",
        f'{broken_plan}:5: delta.window: "19-6" is not HH:MM-HH:MM (e.g. "19:00-06:00") or "any"',
        f"{csv}:3: row has 2 fields but the header has 4 columns; quote fields that contain a "
        'comma ("pa,ss")',
    ]
    assert "Hidden-Pw" not in result.stderr + result.stdout


def test_validate_json_lists_the_problems(broken_plan):
    result = mailmigrate("validate", str(broken_plan), "--json")
    assert result.returncode == 2
    summary = json.loads(result.stdout)
    assert summary["ok"] is False and summary["command"] == "validate"
    assert [(p["file"], p["line"]) for p in summary["problems"]] == [
        (str(broken_plan), 3),
        (str(broken_plan), 3),
        (str(broken_plan), 5),
        (str(broken_plan.with_name("accounts.csv")), 3),
    ]
    assert len(result.stderr.splitlines()) == 4  # the human version still goes to stderr


def test_a_missing_plan_file_is_bad_input(tmp_path):
    result = mailmigrate("validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"{tmp_path / 'nope.yaml'}:1: cannot read the plan: No such file or directory"
    )


@pytest.mark.parametrize("command", [["test"], ["copy", "--phase", "initial"], ["report"]])
def test_an_invalid_plan_stops_every_command(broken_plan, command):
    result = mailmigrate(command[0], str(broken_plan), *command[1:])
    assert result.returncode == 2
    assert f"{broken_plan}:5: delta.window" in result.stderr


def test_an_unknown_account_is_bad_input():
    result = mailmigrate(
        "copy",
        str(EXAMPLE),
        "--phase",
        "initial",
        "--account",
        "carol",
        "--account",
        "alice@example.co",
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"--account alice@example.co: no account with this source_user in {EXAMPLE}; "
        'did you mean "alice@example.com"?'
    )


def test_missing_connections_are_named_with_the_variable_to_set():
    result = mailmigrate("test", str(EXAMPLE), "--account", "carol")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(
        "source connection 'example_old': set AIRFLOW_CONN_EXAMPLE_OLD to the connection in "
        "Airflow's JSON form"
    )
    assert lines[1].startswith("destination connection 'example_new': set AIRFLOW_CONN_EXAMPLE_NEW")


def test_missing_connections_in_json():
    env = clean_env(example_old=json.dumps({"conn_type": "imap", "host": "127.0.0.1"}))
    result = mailmigrate("report", str(EXAMPLE), "--json", env=env)
    assert result.returncode == 2
    summary = json.loads(result.stdout)
    assert summary["plan"] == "example" and summary["command"] == "report"
    assert summary["ok"] is False
    assert [p["message"].split(":")[0] for p in summary["problems"]] == [
        "destination connection 'example_new'"
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("not json", "AIRFLOW_CONN_EXAMPLE_NEW is not JSON; use Airflow's JSON connection form"),
        (
            '{"conn_type": "smtp", "host": "h"}',
            "conn_type must be one of imap, ews, dav, not 'smtp'",
        ),
        (
            '{"conn_type": "dav", "host": "h"}',
            "mail needs conn type imap or ews, not dav (calendars and contacts: name it under "
            "the plan's groupware)",
        ),
        ('{"conn_type": "imap"}', "host is missing"),
        ('{"conn_type": "imap", "host": "h", "port": "x"}', "port 'x' is not a number"),
    ],
)
def test_malformed_connections_are_bad_input(value, expected):
    env = clean_env(
        example_old=json.dumps({"conn_type": "imap", "host": "127.0.0.1", "password": "Conn-Pw-1"}),
        example_new=value,
    )
    result = mailmigrate("copy", str(EXAMPLE), "--phase", "delta", env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == f"destination connection 'example_new': {expected}"
    assert "Conn-Pw-1" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["copy", str(EXAMPLE)],  # --phase is required
        ["copy", str(EXAMPLE), "--phase", "final"],
        ["validate", str(EXAMPLE), "--account", "carol"],  # validate takes no accounts
        ["migrate", str(EXAMPLE)],
        [],
    ],
)
def test_usage_errors_exit_2(args):
    result = mailmigrate(*args)
    assert result.returncode == 2
    assert "usage: mailmigrate" in result.stderr


def test_help_lists_the_commands():
    result = mailmigrate("--help")
    assert result.returncode == 0
    for command in ("validate", "test", "copy", "report"):
        assert command in result.stdout
