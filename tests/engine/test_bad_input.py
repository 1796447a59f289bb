"""Plan files and account CSVs fuzzed (hypothesis): every input either loads into a plan whose DAG
is complete, or fails with a clear :class:`PlanError` naming file, line and field, never a
traceback, never a password, and never a half-built DAG from the factory."""

from __future__ import annotations

import csv
import io
import re
import shutil
from pathlib import Path

import pytest
import yaml
from harness.airflow_env import REPO_ROOT
from harness.figures import record
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailmigrate.errors import PlanError
from mailmigrate.plan import load_plan
from mailmigrate.plan_model import ACCOUNT_FIELDS, CSV_HEADER, TOP_KEYS

STEPS = ("test", "initial_copy", "wait_for_mx", "wait_for_delta_window", "delta_copy")
SECRET = "Pw-SECRET-"
FUZZ = settings(max_examples=250, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))  # fmt: skip

# Whole-file problems that concern no single field; every other message starts with the field
# (``name:``, ``mx.expect:``, ``accounts: source_user:``, ``header: ...``): see names_a_field.
FILE_LEVEL = re.compile(
    r"^(invalid YAML|not UTF-8|the plan is empty|cannot read|malformed CSV|row has \d+ fields|"
    r"no header line|no accounts|the plan: )"
)
# Where a line ends: YAML counts NEL and the Unicode separators too, CSV only CR and LF.
LINE_BREAKS = {
    "yaml": re.compile(r"\r\n|[\r\n\x85\u2028\u2029]"),
    "csv": re.compile(r"\r\n|[\r\n]"),
}

WEIRD_TEXT = st.text(
    alphabet=st.sampled_from(list("ab@.-_:,;\"'#&*!|>{}[]%\\/ \t\n\r\x00\x1bü€🎉0129")), max_size=30
)
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    WEIRD_TEXT,
    st.lists(WEIRD_TEXT, max_size=3),
    st.dictionaries(
        st.sampled_from(["a", "expect", "connection", "notifier", "1"]), WEIRD_TEXT, max_size=2
    ),  # fmt: skip
)


def base_plan(name: str) -> dict:
    """A valid plan touching every section the fuzzer then breaks."""
    return {
        "name": name,
        "source": {"connection": "fz_old"},
        "destination": {"connection": "fz_new"},
        "accounts": "accounts.csv",
        "mx": {
            "expect": ["mx1.new.example"],
            "resolvers": ["127.0.0.1:5353"],
            "poke_interval": "10s",
            "timeout": "1h",
        },  # fmt: skip
        "delta": {"timezone": "Europe/Berlin", "window": "19:00-06:00", "weekdays": ["mon"]},
        "folders": {"exclude": ["Trash"], "rename": {"Old": "New"}},
        "copy": {"batch_messages": 10, "batch_bytes": "1MB", "parallel_folders": 2},
        "parallel_accounts": 2,
        "retries": 1,
    }


@st.composite
def plan_texts(draw) -> str:
    plan = base_plan("fz")
    for _ in range(draw(st.integers(0, 4))):
        key = draw(st.sampled_from(sorted(TOP_KEYS) + ["extra_key"]))
        section = plan.get(key)
        if isinstance(section, dict) and section and draw(st.booleans()):
            sub = draw(st.sampled_from(sorted(section)))
            section[sub] = draw(JUNK)
        elif draw(st.integers(0, 4)) == 0:
            plan.pop(key, None)
        else:
            plan[key] = draw(JUNK)
    text = yaml.safe_dump(plan, allow_unicode=True, sort_keys=False)
    if draw(st.integers(0, 3)) == 0:  # break the YAML itself
        at = draw(st.integers(0, len(text)))
        text = (
            text[:at]
            + draw(st.sampled_from(["\t", "{", "- ", ": :", "&a *b", "'", "\x00"]))
            + text[at:]
        )
    return text


USER_CELL = st.one_of(
    st.sampled_from(["alice@old.example", "bob@new.example", "carol", "", " ", "x@y", "a@b.c@d"]),
    WEIRD_TEXT,
)
# Every piece of a password, also of one split at an unquoted comma, carries the SECRET marker.
PASSWORD_TAILS = ["", f",{SECRET}x", '"', "\n", "\r\n", " ", "\x00", "\x0c", "\u2028"]
PASSWORD_CELL = st.one_of(
    st.just(""),
    st.builds(lambda n, tail: f"{SECRET}{n}{tail}", st.integers(0, 999),
              st.sampled_from(PASSWORD_TAILS)),
)  # fmt: skip


@st.composite
def account_csvs(draw) -> str:
    header = draw(st.permutations(list(ACCOUNT_FIELDS)))[: draw(st.integers(1, 5))]
    if draw(st.booleans()):
        header = CSV_HEADER.split(",")
    if draw(st.integers(0, 5)) == 0:
        header = header + [draw(WEIRD_TEXT)]
    # Rows as the header says, or (a classic) in the canonical order under a shuffled header.
    order = header if draw(st.integers(0, 3)) else CSV_HEADER.split(",")
    rows = []
    for _ in range(draw(st.integers(0, 5))):
        row = [draw(PASSWORD_CELL if "password" in column else USER_CELL) for column in order]
        if draw(st.integers(0, 5)) == 0:
            row = row[: draw(st.integers(0, len(row)))]
        rows.append(row)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    writer.writerow(header)
    for row in rows:
        if draw(st.integers(0, 4)) == 0:  # hand-made, possibly broken quoting
            out.write(",".join(row) + "\n")
        else:
            writer.writerow(row)
        if draw(st.integers(0, 6)) == 0:
            out.write(draw(st.sampled_from(["# a comment\n", "\n", '"unterminated\n'])))
    return ("\ufeff" if draw(st.integers(0, 6)) == 0 else "") + out.getvalue()


def names_a_field(message: str) -> bool:
    """``<field>: <what is wrong>`` with a field of the plan or the CSV (a key path such as
    ``copy.batch_messages``, a CSV column, the CSV header), or an unknown key as written."""
    field, separator, reason = message.partition(": ")
    if not separator or not reason.strip():
        return False
    known = field.split(".")[0] in TOP_KEYS or field in (*ACCOUNT_FIELDS, "header", "the plan")
    return known or reason.startswith(("unknown key", "given twice"))


def _line_count(path: Path) -> int:
    text = path.read_bytes().decode("utf-8", "replace")
    return len(LINE_BREAKS["csv" if path.suffix == ".csv" else "yaml"].findall(text)) + 1


def check_problems(exc: PlanError, files: dict[str, Path]) -> None:
    """Every problem names a file of this plan, a line inside it and a field (or is about the
    whole file), and shows no password."""
    assert exc.problems, "a PlanError without problems"
    for problem in exc.problems:
        assert problem.file in files, problem
        assert 1 <= problem.line <= _line_count(files[problem.file]), problem
        message = problem.message
        assert names_a_field(message) or FILE_LEVEL.match(message), f"no field named: {problem}"
        assert SECRET not in message, f"a password in {problem}"


def check_dag(plan, dag) -> None:
    """The DAG of a valid plan is whole: the accounts task, the mapped group's five steps, the
    cutover task, and every account of the plan in the ``accounts`` parameter."""
    task_ids = set(dag.task_dict)
    assert {"accounts", "cutover_ready"} <= task_ids
    assert {f"account.{step}" for step in STEPS} <= task_ids
    users = dag.params.get_param("accounts").schema["items"]["enum"]
    assert users == [account.source_user for account in plan.accounts]


@pytest.fixture(scope="module")
def dag_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz") / "dags"
    (folder / "plans").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "dags" / "migrations.py", folder / "migrations.py")
    return folder


def _build_all(dag_folder: Path) -> dict:
    """What the DAG file of ``dag_folder`` publishes: every DAG the factory built."""
    from mailmigrate_airflow.factory import build_dags

    return build_dags(str(dag_folder / "migrations.py"))


def _try(dag_folder: Path, plan_text: str, csv_text: str, counts: dict[str, int]) -> None:
    plans = dag_folder / "plans"
    for leftover in plans.iterdir():
        leftover.unlink()
    plan_path, csv_path = plans / "fz.yaml", plans / "accounts.csv"
    plan_path.write_text(plan_text, encoding="utf-8", newline="")
    csv_path.write_text(csv_text, encoding="utf-8", newline="")
    files = {str(plan_path): plan_path, str(csv_path): csv_path}
    try:
        plan = load_plan(plan_path)
    except PlanError as exc:
        check_problems(exc, files)
        counts["rejected"] += 1
        assert _build_all(dag_folder) == {}  # no DAG at all, not a partial one
        return
    counts["accepted"] += 1
    dags = _build_all(dag_folder)
    assert list(dags) == [plan.dag_id, plan.deltas_dag_id]
    check_dag(plan, dags[plan.dag_id])


@FUZZ
@given(plan_text=plan_texts(), csv_text=account_csvs())
def test_fuzzed_plans_and_csvs_load_or_say_where_and_why(dag_folder, plan_text, csv_text):
    counts = {"rejected": 0, "accepted": 0}
    _try(dag_folder, plan_text, csv_text, counts)
    record("bad input", plans_and_csvs_tried=1, rejected_clearly=counts["rejected"],
           accepted_whole_dag=counts["accepted"])  # fmt: skip


@FUZZ
@given(csv_text=account_csvs())
def test_fuzzed_csvs_under_a_valid_plan(dag_folder, csv_text):
    counts = {"rejected": 0, "accepted": 0}
    plan_text = yaml.safe_dump(base_plan("fz"), sort_keys=False)
    _try(dag_folder, plan_text, csv_text, counts)
    record("bad input", csvs_tried=1, rejected_clearly=counts["rejected"],
           accepted_whole_dag=counts["accepted"])  # fmt: skip


@FUZZ
@given(raw=st.binary(max_size=300), where=st.sampled_from(["plan", "csv"]))
def test_random_bytes_are_refused_with_a_line(dag_folder, raw, where):
    valid_plan = yaml.safe_dump(base_plan("fz"), sort_keys=False).encode()
    valid_csv = (CSV_HEADER + "\na@old.example,Pw-SECRET-1,a@new.example,Pw-SECRET-2\n").encode()
    plans = dag_folder / "plans"
    for leftover in plans.iterdir():
        leftover.unlink()
    (plans / "fz.yaml").write_bytes(raw if where == "plan" else valid_plan)
    (plans / "accounts.csv").write_bytes(raw if where == "csv" else valid_csv)
    files = {
        str(plans / "fz.yaml"): plans / "fz.yaml",
        str(plans / "accounts.csv"): plans / "accounts.csv",
    }
    try:
        plan = load_plan(plans / "fz.yaml")
    except PlanError as exc:
        check_problems(exc, files)
        assert _build_all(dag_folder) == {}
        record("bad input", random_files_tried=1, rejected_clearly=1)
        return
    check_dag(plan, _build_all(dag_folder)[plan.dag_id])
    record("bad input", random_files_tried=1, accepted_whole_dag=1)


EDGE_BASE = (
    "name: edge\nsource: {connection: a}\ndestination: {connection: b}\naccounts: accounts.csv\n"
)


@pytest.mark.parametrize(
    ("text", "line", "start"),
    [
        (EDGE_BASE + "mx: " + "[" * 3000 + "]" * 3000 + "\n", 1, "invalid YAML: nested too deeply"),
        (EDGE_BASE + "mx: &a {expect: *a}\n", 5, "mx.expect: must be a list"),
        (EDGE_BASE + "copy: {<<: [1, 2]}\n", 5, "copy: invalid merge (<<)"),
        (EDGE_BASE + "retries: !!python/object:os.system ls\n", 5, "retries: "),
        (EDGE_BASE + "? [a, b]\n: c\n", 5, "the plan: keys must be plain names"),
        (EDGE_BASE + "retries: " + "9" * 5000 + "\n", 5, "retries: "),
        (EDGE_BASE + "copy: {messages_per_second: .nan}\n", 5, "copy.messages_per_second: "),
        (EDGE_BASE.replace("accounts.csv", '"acc\\0.csv"'), 4, "accounts: 'acc\\x00.csv' is not"),
        (EDGE_BASE.replace("accounts.csv", "~nosuchuser/a.csv"), 4, "accounts: '~nosuchuser"),
        (EDGE_BASE + "state_dir: ~nosuchuser/state\n", 5, "state_dir: '~nosuchuser/state'"),
        (EDGE_BASE + 'state_dir: "st\\0ate"\n', 5, "state_dir: 'st\\x00ate' is not"),
        (EDGE_BASE + "reports: {url: '~nosuchuser/r'}\n", 5, "reports.url: '~nosuchuser/r'"),
        (EDGE_BASE + "reports: {templates: '~nosuchuser/t'}\n", 5, "reports.templates: "),
        (EDGE_BASE + 'delta: {timezone: "Europe/Berlin\\0"}\n', 5, "delta.timezone: "),
    ],
    ids=lambda value: value if isinstance(value, int) else None,
)
def test_hostile_yaml_is_refused_at_its_line(tmp_path, text, line, start):
    (tmp_path / "accounts.csv").write_text(CSV_HEADER + "\na@x.example,,a@y.example,\n")
    path = tmp_path / "edge.yaml"
    path.write_text(text)
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    found = [(p.line, p.message) for p in caught.value.problems]
    assert any(at == line and message.startswith(start) for at, message in found), found
    record("bad input", hostile_plans_tried=1, rejected_clearly=1)


def test_passwords_under_a_shuffled_header_are_never_shown(tmp_path):
    """The columns say one order, the rows follow another: the "users" are passwords."""
    csv_text = (
        "source_user,destination_user,source_password,destination_password\n"
        "alice@old.example,Pw-SECRET-1,alice@new.example,Pw-SECRET-2\n"
        "bob@old.example,Pw-SECRET-1,bob@new.example,Pw-SECRET-3\n"
        "carol@old.example,Pw-SECRET-4,Pw-SECRET-5,carol@new.example\n"
        "dave@old.example,Pw-SECRET-6,Pw-SECRET-7@x,y\n"
    )
    (tmp_path / "accounts.csv").write_text(csv_text)
    path = tmp_path / "edge.yaml"
    path.write_text(EDGE_BASE)
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    assert len(caught.value.problems) >= 3 and SECRET not in str(caught.value)


def test_a_dag_that_fails_half_way_is_never_registered(dag_folder, monkeypatch):
    """A bug while building one plan's DAG (simulated: raised after the group's first tasks) leaves
    an import error for that plan and no DAG at all, not the half that was built; a with-block
    DAG registers itself with Airflow even when its block raised."""
    from harness.airflow_env import load_dag_folder

    from mailmigrate_airflow import factory

    plans = dag_folder / "plans"
    for leftover in plans.iterdir():
        leftover.unlink()
    for name in ("half", "whole"):
        plan = base_plan(name)
        plan["accounts"] = f"{name}.csv"
        (plans / f"{name}.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
        (plans / f"{name}.csv").write_text(
            CSV_HEADER + "\n" + "".join(f"u{i}@old.example,,u{i}@new.example,\n" for i in range(3))
        )
    real = factory._account_tasks

    def failing(plan, plan_file, source_user, domain):
        tasks = real(plan, plan_file, source_user, domain)
        if plan.name == "half":
            raise RuntimeError("a bug in the factory")
        return tasks

    monkeypatch.setattr(factory, "_account_tasks", failing)
    bag = load_dag_folder(dag_folder)
    assert "migration_half" not in bag.dags, "a half-built DAG was registered"
    assert "migration_whole" in bag.dags
    check_dag(load_plan(plans / "whole.yaml"), bag.dags["migration_whole"])
    (error,) = [text for key, text in bag.import_errors.items() if key.endswith("half.yaml")]
    assert "cannot build the DAG: RuntimeError: a bug in the factory" in error
