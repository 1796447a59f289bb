"""The DAG factory: dags/migrations.py parsed as Airflow's DAG processor parses it.

Plans are written to a temporary DAG folder next to a copy of the real ``dags/migrations.py``;
the folder is parsed by Airflow's own DagBag (and, for import errors, by the dag processor's
parse-and-persist path into the test metadata DB).
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from harness.airflow_env import REPO_ROOT, load_dag_folder

STEPS = ("test", "initial_copy", "wait_for_mx", "wait_for_delta_window", "delta_copy")
SECRETS = ("Alice-Old-Pw-7731", "Alice-New-Pw-9902", "Bob-Old-Pw-4417", "Bob,New-Pw-0518")

PLAN = """\
name: {name}
source: {{connection: acme_old}}
destination: {{connection: acme_new}}
accounts: {name}_accounts.csv
{mx}delta:
  timezone: Europe/Berlin
  window: "19:00-06:00"
  weekdays: [mon, tue, wed, thu, fri]
parallel_accounts: 3
retries: 5
{extra}"""

MX = """\
mx:
  expect: [mx1.new.example, mx2.new.example]
  resolvers: ["127.0.0.1:5353"]
  poke_interval: 30s
  timeout: 2d
"""

ACCOUNTS = """\
source_user,source_password,destination_user,destination_password,mx_domain
alice@example.com,Alice-Old-Pw-7731,alice@example.com,Alice-New-Pw-9902,
bob@example.com,Bob-Old-Pw-4417,robert@example.org,"Bob,New-Pw-0518",
carol,,carol@example.net,,mail.example.net
"""


def write_plan(
    plans: Path, name: str, *, mx: bool = True, extra: str = "", accounts: str = ACCOUNTS
) -> Path:
    plans.mkdir(parents=True, exist_ok=True)
    (plans / f"{name}_accounts.csv").write_text(accounts)
    path = plans / f"{name}.yaml"
    path.write_text(PLAN.format(name=name, mx=MX if mx else "", extra=extra))
    return path


@pytest.fixture
def dag_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A DAG folder holding a copy of the real dags/migrations.py and an empty plans/."""
    monkeypatch.delenv("MAILMIGRATE_PLANS_DIR", raising=False)
    folder = tmp_path / "dags"
    (folder / "plans").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "dags" / "migrations.py", folder / "migrations.py")
    return folder


def test_one_dag_per_plan_with_a_mapped_group_of_five_tasks(dag_folder: Path) -> None:
    from airflow.sdk.definitions.taskgroup import MappedTaskGroup

    from mailmigrate_airflow.operators import (
        CutoverReadyOperator,
        MailboxCopyOperator,
        MailboxTestOperator,
        SelectAccountsOperator,
    )
    from mailmigrate_airflow.runs import MAP_INDEX_TEMPLATE
    from mailmigrate_airflow.sensors import DeltaWindowSensor, MxPropagationSensor

    write_plan(dag_folder / "plans", "acme", extra="pool: acme_old_imap\n")
    bag = load_dag_folder(dag_folder)

    assert bag.import_errors == {}
    assert set(bag.dags) == {"migration_acme", "migration_acme_deltas"}
    dag = bag.dags["migration_acme"]
    # The same seven tasks for any number of accounts: the group is mapped over the run's.
    assert set(dag.task_group.children) == {"accounts", "account", "cutover_ready"}
    group = dag.task_group.children["account"]
    assert isinstance(group, MappedTaskGroup)
    select = dag.get_task("accounts")
    assert isinstance(select, SelectAccountsOperator) and select.plan == "acme.yaml"
    assert {task.task_id for task in group.iter_mapped_dependencies()} == {"accounts"}
    ids = [f"account.{step}" for step in STEPS]
    assert set(group.children) == set(ids)
    for upstream, downstream in zip(ids, ids[1:], strict=False):
        assert dag.get_task(upstream).downstream_task_ids >= {downstream}
        assert dag.get_task(downstream).upstream_task_ids == {upstream, "accounts"}
    assert dag.get_task(ids[0]).upstream_task_ids == {"accounts"}  # mapped over its XCom

    test, initial, mx, window, delta = (dag.get_task(i) for i in ids)
    for task in (test, initial, mx, window, delta):
        assert task.map_index_template == MAP_INDEX_TEMPLATE  # the grid shows the mailbox
    assert isinstance(test, MailboxTestOperator)
    assert isinstance(initial, MailboxCopyOperator) and initial.phase == "initial"
    assert isinstance(delta, MailboxCopyOperator) and delta.phase == "delta"
    for task in (test, initial, delta):
        assert (task.source_conn_id, task.destination_conn_id) == ("acme_old", "acme_new")
        assert task.plan == "acme.yaml"
        assert task.retries == 5 and task.retry_exponential_backoff == 2.0
        assert task.pool == "acme_old_imap"
    assert isinstance(mx, MxPropagationSensor)
    assert list(mx.expect) == ["mx1.new.example", "mx2.new.example"]
    assert list(mx.resolvers) == ["127.0.0.1:5353"]
    assert isinstance(window, DeltaWindowSensor)
    assert (window.timezone, window.window) == ("Europe/Berlin", "19:00-06:00")
    assert mx.pool != "acme_old_imap" and window.pool != "acme_old_imap"
    assert mx.retries == window.retries == 2  # the plan's copy retries are for copies

    cutover = dag.get_task("cutover_ready")
    assert isinstance(cutover, CutoverReadyOperator)
    assert cutover.upstream_task_ids == {"account.initial_copy", "accounts"}  # may skip it
    assert cutover.trigger_rule == "none_failed_min_one_success"
    assert cutover.downstream_task_ids == set()

    assert dag.schedule is None
    assert (dag.max_active_tasks, dag.max_active_runs) == (3, 1)
    params = dag.params
    assert params["accounts"] == [] and params["stop"] == "all"
    accounts_schema = params.get_param("accounts").schema
    assert accounts_schema["items"]["enum"] == ["alice@example.com", "bob@example.com", "carol"]
    assert params.get_param("stop").schema["enum"] == ["test", "initial_copy", "all"]


def test_the_accounts_task_maps_the_selected_accounts_with_their_mx_domains(
    dag_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    # No passwords: loading a plan masks them for the whole process (see the masking test).
    without = ACCOUNTS
    for secret in SECRETS:
        without = without.replace(f'"{secret}"', "").replace(secret, "")
    write_plan(dag_folder / "plans", "acme", accounts=without)
    dag = load_dag_folder(dag_folder).dags["migration_acme"]
    select = dag.get_task("accounts")

    pushed: dict[str, dict] = {}  # what the task hands the scheduler: its skip list

    class TaskInstance:
        def xcom_push(self, key: str, value: dict) -> None:
            pushed[key] = value

    def rows(params: dict) -> list[dict]:
        pushed.clear()
        return select.execute({"dag": dag, "params": params, "ti": TaskInstance()})

    alice = {"source_user": "alice@example.com", "domain": "example.com",
             "destination_user": "alice@example.com"}  # fmt: skip
    bob = {"source_user": "bob@example.com", "domain": "example.org",
           "destination_user": "robert@example.org"}  # fmt: skip
    carol = {"source_user": "carol", "domain": "mail.example.net",
             "destination_user": "carol@example.net"}  # fmt: skip
    assert rows({"accounts": [], "stop": "all"}) == [alice, bob, carol]
    assert pushed == {}  # the whole plan to the end: nothing skipped
    assert rows({"accounts": ["carol", "alice@example.com"]}) == [alice, carol]  # plan order
    assert pushed == {"skipmixin_key": {"skipped": ["cutover_ready"]}}  # a test migration
    rows({"accounts": [], "stop": "test"})
    assert pushed == {"skipmixin_key": {"skipped": ["account.initial_copy", "cutover_ready"]}}
    rows({"stop": "initial_copy"})
    assert pushed == {"skipmixin_key": {"skipped": ["account.wait_for_mx"]}}
    with pytest.raises(AirflowFailException, match="not in the plan acme.yaml: dave"):
        rows({"accounts": ["dave"]})
    # More accounts than Airflow maps in one group: the run fails at once, naming the setting.
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "2")
    with pytest.raises(AirflowFailException, match=r"3 accounts .* max_map_length = 2"):
        rows({"accounts": []})
    assert len(rows({"accounts": ["bob@example.com", "carol"]})) == 2


def test_plan_without_mx_section_gets_a_no_op_wait_for_mx(dag_folder: Path) -> None:
    from mailmigrate_airflow.operators import NoMxCheckOperator

    write_plan(dag_folder / "plans", "nomx", mx=False)
    dag = load_dag_folder(dag_folder).dags["migration_nomx"]

    wait = dag.get_task("account.wait_for_mx")
    assert isinstance(wait, NoMxCheckOperator)
    assert wait.upstream_task_ids == {"account.initial_copy", "accounts"}
    assert wait.downstream_task_ids == {"account.wait_for_delta_window"}


def test_invalid_plan_is_an_import_error_of_its_file_and_the_other_plan_still_loads(
    dag_folder: Path,
) -> None:
    plans = dag_folder / "plans"
    write_plan(plans, "good")
    write_plan(plans, "bad", extra='delta_window: "19:00"\n')  # a key the plan does not know
    write_plan(plans, "worse", accounts="source_user,destination_user\nx@example.com\n")
    (plans / "good_copy.yaml").write_text((plans / "good.yaml").read_text())

    bag = load_dag_folder(dag_folder)

    assert set(bag.dags) == {"migration_good", "migration_good_deltas"}
    assert set(bag.import_errors) == {
        "plans/bad.yaml",
        "plans/worse.yaml",
        "plans/good_copy.yaml",
    }
    bad_line = (plans / "bad.yaml").read_text().splitlines().index('delta_window: "19:00"') + 1
    bad = bag.import_errors["plans/bad.yaml"]
    assert f"{plans / 'bad.yaml'}:{bad_line}: " in bad and "delta_window" in bad
    worse = bag.import_errors["plans/worse.yaml"]
    assert f"{plans / 'worse_accounts.csv'}:2: " in worse
    duplicate = bag.import_errors["plans/good_copy.yaml"]
    assert f"{plans / 'good_copy.yaml'}:1: " in duplicate and "already the name" in duplicate


def test_dag_processor_stores_the_plan_error_and_keeps_the_other_dag_active(
    dag_folder: Path, airflow_db: Path
) -> None:
    """The dag processor's own parse (``_parse_file``) and persistence of its result."""
    import structlog
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.dag_processing.processor import DagFileParseRequest, _parse_file
    from airflow.models.dag import DagModel
    from airflow.models.errors import ParseImportError
    from airflow.utils.session import create_session
    from harness.airflow_env import HARNESS_BUNDLE
    from sqlalchemy import select

    plans = dag_folder / "plans"
    write_plan(plans, "dagproc_good")
    write_plan(plans, "dagproc_bad", extra="copy: {batch_messages: lots}\n")
    request = DagFileParseRequest(
        file=str(dag_folder / "migrations.py"), bundle_path=dag_folder, bundle_name=HARNESS_BUNDLE
    )
    result = _parse_file(request, structlog.get_logger())

    assert sorted(d.dag_id for d in result.serialized_dags) == [
        "migration_dagproc_good",
        "migration_dagproc_good_deltas",
    ]
    assert set(result.import_errors) == {"plans/dagproc_bad.yaml"}

    errors = {(HARNESS_BUNDLE, path): text for path, text in result.import_errors.items()}
    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)
    with create_session() as session:
        # What DagFileProcessorManager.persist_parsing_result does with a parse result.
        update_dag_parsing_results_in_db(
            bundle_name=HARNESS_BUNDLE,
            bundle_version=None,
            dags=result.serialized_dags,
            import_errors=errors,
            parse_duration=0.1,
            warnings=set(),
            session=session,
            files_parsed={(HARNESS_BUNDLE, "migrations.py"), *errors},
        )
    with create_session() as session:
        stored = session.scalars(
            select(ParseImportError).where(ParseImportError.filename == "plans/dagproc_bad.yaml")
        ).one()
        assert f"{plans / 'dagproc_bad.yaml'}:" in stored.stacktrace
        assert "batch_messages" in stored.stacktrace
        good = session.get(DagModel, "migration_dagproc_good")
        assert good is not None and not good.is_stale and not good.has_import_errors
        session.delete(stored)


def test_a_plan_of_two_thousand_accounts_parses_to_the_same_small_dag(dag_folder: Path) -> None:
    """The DAG does not grow with the plan: 2,000 accounts give the seven tasks of three, and
    the serialized DAG holds the account list once (the ``accounts`` parameter), not once per
    task. (Timings: bench/plan_scale.py; no timing is asserted here.)"""
    from airflow.serialization.serialized_objects import DagSerialization

    plans = dag_folder / "plans"
    for number in range(3):
        rows = ["source_user,source_password,destination_user,destination_password"]
        rows += [
            f"user{i}@p{number}.example,old-{number}-{i}-pw,user{i}@p{number}.example,"
            for i in range(2000)
        ]
        write_plan(plans, f"big{number:02d}", accounts="\n".join(rows) + "\n")

    bag = load_dag_folder(dag_folder)

    assert bag.import_errors == {}
    assert len(bag.dags) == 6  # each plan's migration and its scheduled deltas
    for dag_id in [d for d in bag.dags if d.endswith("_deltas")]:
        assert len(bag.dags.pop(dag_id).tasks) == 3  # select, delta (mapped), wrap_up
    for dag in bag.dags.values():
        assert len(dag.tasks) == 1 + 5 + 1
        assert len(dag.params.get_param("accounts").schema["items"]["enum"]) == 2000
        serialized = json.dumps(DagSerialization.to_dict(dag))
        assert serialized.count("user1999@") == 2  # the parameter's enum and examples
        assert len(serialized) < 400_000


def test_no_password_in_the_serialized_dag_or_any_operator_field(dag_folder: Path) -> None:
    from airflow.sdk import DAG
    from airflow.sdk.definitions.taskgroup import TaskGroup
    from airflow.serialization.serialized_objects import DagSerialization

    write_plan(dag_folder / "plans", "secretive")
    dag = load_dag_folder(dag_folder).dags["migration_secretive"]

    serialized = json.dumps(DagSerialization.to_dict(dag))
    assert "alice@example.com" in serialized  # the accounts are there...
    for secret in SECRETS:  # ...their passwords are not
        assert secret not in serialized
    for task in dag.tasks:
        for name, value in vars(task).items():
            if isinstance(value, DAG | TaskGroup):
                continue
            text = repr(value)
            for secret in SECRETS:
                assert secret not in text, f"{task.task_id}.{name} holds a password"


# -- runs: dag.test() against real Dovecot servers ---------------------------------------------


def _run(dag_folder: Path, run_conf: dict) -> tuple[dict, dict]:
    """Build the plans' DAG in memory, run it once; (task states, tries, rendered map indexes
    and the number of task instances; XCom return values), keyed by ``<account group>.<step>``
    (harness.airflow_env.run_outcome)."""
    from harness.airflow_env import run_dag_test, run_outcome

    from mailmigrate_airflow.factory import build_dags

    dag, _deltas = build_dags(str(dag_folder / "migrations.py")).values()
    outcome = run_outcome(run_dag_test(dag, run_conf=run_conf))
    runs = {"state": outcome["states"], "tries": outcome["tries"], "shown": outcome["shown"],
            "instances": len(outcome["states"])}  # fmt: skip
    return runs, outcome["xcoms"]


@pytest.fixture
def migration(dag_folder, legacy_imap, modern_imap, new_account, monkeypatch, airflow_db):
    """A plan over two accounts, legacy Dovecot -> modern Dovecot, with a message each; returns
    (source user, source password, destination password) per account."""
    from harness.corpus import make_message, seed_folder

    rows = ["source_user,source_password,destination_user,destination_password"]
    users = []
    for number in range(2):
        source_user, source_password = new_account(legacy_imap)
        destination_user, destination_password = new_account(modern_imap)
        client = legacy_imap.client(source_user, source_password)
        message = (make_message(number, size=2000), ("\\Seen",), datetime(2024, 1, 2, tzinfo=UTC))
        seed_folder(client, "INBOX", [message])
        client.logout()
        rows.append(f"{source_user},{source_password},{destination_user},{destination_password}")
        users.append((source_user, source_password, destination_password))
    name = "run_" + users[0][0].split("@")[0]  # a DAG id of its own in the shared test DB
    monkeypatch.setenv("AIRFLOW_CONN_RUN_OLD", json.dumps(legacy_imap.connection("run_old")))
    monkeypatch.setenv("AIRFLOW_CONN_RUN_NEW", json.dumps(modern_imap.connection("run_new")))
    accounts = "\n".join(rows) + "\n"
    plan = write_plan(dag_folder / "plans", name, accounts=accounts, extra="state_dir: state\n")
    plan.write_text(plan.read_text().replace("acme_old", "run_old").replace("acme_new", "run_new"))
    return users


def _groups(users: list[tuple[str, str, str]]) -> list[str]:
    return [source_user.replace("@", "_").replace(".", "_") for source_user, _, _ in users]


def test_a_test_run_of_one_account_tests_it_and_skips_everything_else(dag_folder, migration):
    alice, bob = _groups(migration)
    runs, xcoms = _run(dag_folder, {"accounts": [migration[0][0]], "stop": "test"})

    state = runs["state"]
    assert state[f"{alice}.test"] == "success"
    # The steps after the test are skipped for the whole run before they are mapped: one
    # instance each, none started (no process only to skip itself).
    for step in STEPS[1:]:
        assert state[f"account.{step}"] == "skipped"
        assert runs["tries"][f"account.{step}"] == 0
        assert f"{alice}.{step}" not in state
    assert runs["shown"][f"{alice}.test"] == migration[0][0]  # the grid shows the mailbox
    for step in STEPS:  # bob is not in this run: not a single task instance of his
        assert f"{bob}.{step}" not in state
    assert state["accounts"] == "success"
    assert [row["source_user"] for row in xcoms["accounts"]] == [migration[0][0]]
    assert state["cutover_ready"] == "skipped"
    assert runs["tries"]["cutover_ready"] == 0  # skipped by ``accounts``: never started
    assert runs["instances"] == 1 + 5 + 1  # accounts, alice's test, four skipped steps, cutover
    assert xcoms[f"{alice}.test"]["ok"] is True
    assert xcoms[f"{alice}.test"]["account"] == migration[0][0]
    dumped = json.dumps(xcoms)
    assert not any(secret in dumped for _, *secrets in migration for secret in secrets)


def test_initial_copies_of_every_account_then_cutover_ready(dag_folder, migration, capfd):
    alice, bob = _groups(migration)
    runs, xcoms = _run(dag_folder, {"stop": "initial_copy"})
    logs = "".join(capfd.readouterr())

    state = runs["state"]
    for group in (alice, bob):
        assert state[f"{group}.test"] == state[f"{group}.initial_copy"] == "success"
        assert xcoms[f"{group}.initial_copy"]["totals"]["copied"] == 1
    for step in STEPS[2:]:  # skipped for the whole run, none started
        assert state[f"account.{step}"] == "skipped"
        assert runs["tries"][f"account.{step}"] == 0
    assert state["cutover_ready"] == "success"
    assert xcoms["cutover_ready"]["accounts"] == 2
    assert xcoms["cutover_ready"]["domains"] == ["example.com"]
    assert xcoms["cutover_ready"]["mx_expect"] == ["mx1.new.example", "mx2.new.example"]
    dumped = json.dumps(xcoms)
    assert not any(secret in dumped for _, *secrets in migration for secret in secrets)
    assert "initial pass: 1 copied" in logs and "change the MX record now" in logs
    assert not any(secret in logs for _, *secrets in migration for secret in secrets)


def test_refused_credentials_fail_the_task_at_once_and_block_cutover(dag_folder, migration):
    alice, bob = _groups(migration)
    source_user, source_password, _ = migration[0]
    csv = next((dag_folder / "plans").glob("*_accounts.csv"))
    csv.write_text(csv.read_text().replace(source_password, "not-the-password"))

    runs, _ = _run(dag_folder, {"stop": "initial_copy"})

    assert runs["state"][f"{alice}.test"] == "failed"
    assert runs["tries"][f"{alice}.test"] == 1  # retries: 5 in the plan, none used
    assert runs["state"][f"{alice}.initial_copy"] == "upstream_failed"
    assert runs["state"][f"{bob}.initial_copy"] == "success"
    assert runs["state"]["cutover_ready"] == "upstream_failed"


def test_plans_dir_from_the_environment(dag_folder: Path, tmp_path: Path, monkeypatch) -> None:
    write_plan(tmp_path / "elsewhere", "absolute")
    monkeypatch.setenv("MAILMIGRATE_PLANS_DIR", str(tmp_path / "elsewhere"))
    assert set(load_dag_folder(dag_folder).dags) == {
        "migration_absolute",
        "migration_absolute_deltas",
    }

    write_plan(dag_folder / "prod_plans", "relative")
    monkeypatch.setenv("MAILMIGRATE_PLANS_DIR", "prod_plans")  # next to migrations.py
    assert set(load_dag_folder(dag_folder).dags) == {
        "migration_relative",
        "migration_relative_deltas",
    }


def test_a_task_parse_builds_only_its_own_dag(dag_folder: Path, monkeypatch) -> None:
    for name in ("first", "second", "third"):
        write_plan(dag_folder / "plans", name)
    write_plan(dag_folder / "plans", "broken", extra="retries: -1\n")
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "migration_second")  # as a worker does

    bag = load_dag_folder(dag_folder)

    assert set(bag.dags) == {"migration_second"}
    assert bag.import_errors == {}
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "migration_second_deltas")
    assert set(load_dag_folder(dag_folder).dags) == {"migration_second_deltas"}


def test_account_selection_and_stop_point() -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    from mailmigrate_airflow.runs import check_selected

    def runs(params: dict, source_user: str, step: str) -> bool:
        try:
            check_selected({"params": params}, source_user, step)
        except AirflowSkipException:
            return False
        return True

    everyone = {"accounts": [], "stop": "all"}
    assert all(runs(everyone, "alice@example.com", step) for step in STEPS)
    assert runs({"accounts": None, "stop": "all"}, "bob@example.com", "delta_copy")  # form: null
    alice_only = {"accounts": ["alice@example.com"], "stop": "initial_copy"}
    assert runs(alice_only, "alice@example.com", "initial_copy")
    assert not runs(alice_only, "alice@example.com", "wait_for_mx")
    assert not runs(alice_only, "bob@example.com", "test")
    assert [runs({"stop": "test"}, "carol", step) for step in STEPS] == [True] + [False] * 4


def test_a_task_loading_the_plan_masks_every_account_password(dag_folder: Path) -> None:
    from airflow.sdk._shared.secrets_masker import redact

    from mailmigrate_airflow.factory import build_dags

    write_plan(dag_folder / "plans", "masked")
    dag, _deltas = build_dags(str(dag_folder / "migrations.py")).values()
    line = "passwords: " + " | ".join(SECRETS)
    assert redact(line) == line  # nothing known yet

    plan = dag.get_task("account.test").load_plan({"dag": dag})  # what every task does first

    assert {a.source_password for a in plan.accounts} >= {"Alice-Old-Pw-7731", "Bob-Old-Pw-4417"}
    assert redact(line) == "passwords: *** | *** | *** | ***"


def test_cutover_is_sent_through_the_plans_notifiers(tmp_path: Path) -> None:
    """A real notifier from the plan's ``notify`` key, templated with the cutover text."""
    import logging

    from mailmigrate.plan import load_plan
    from mailmigrate_airflow.notifiers import cutover_announcement, notify_cutover

    sent = tmp_path / "sent"
    notify = (
        "notify:\n"
        "  - notifier: harness.notifiers.LineFile\n"
        "    args:\n"
        f"      path: {json.dumps(str(sent))}\n"
        '      line: "{{ cutover.subject }}"\n'
    )
    plan = load_plan(write_plan(tmp_path / "plans", "acme", extra=notify))
    cutover = cutover_announcement(plan, ["example.com", "example.org", "example.com"])
    notify_cutover(plan, {"dag": None}, cutover, logging.getLogger("test"))

    assert sent.read_text() == "acme: all 3 initial copies done, change the MX record now\n"
    assert (
        "Point the MX records of example.com, example.org to mx1.new.example, mx2.new.example."
        in (cutover["message"])
    )
