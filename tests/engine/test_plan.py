"""The plan loader: a valid plan's values, and every kind of mistake reported at its file:line."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailmigrate.errors import PlanError
from mailmigrate.plan import (
    NotifierSpec,
    Plan,
    find_plans,
    load_plan,
    load_plans,
    parse_duration,
    parse_size,
    split_host_port,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "dags" / "plans" / "example.yaml"
HEADER = "source_user,source_password,destination_user,destination_password\n"
BASE = """\
name: acme
source: {connection: acme_old}
destination: {connection: acme_new}
accounts: accounts.csv
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def plan_file(tmp_path: Path, extra: str = "", accounts_csv: str | None = None) -> Path:
    """A plan made of the four required keys plus ``extra``, with an accounts CSV next to it."""
    write(
        tmp_path, "accounts.csv", accounts_csv or HEADER + "alice@old.example,,alice@new.example,\n"
    )
    return write(tmp_path, "acme.yaml", BASE + textwrap.dedent(extra))


def problems(path: Path) -> list[str]:
    """Every problem of a plan as ``name:line: message`` with the file's base name."""
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    assert str(caught.value) == "\n".join(str(p) for p in caught.value.problems)
    return [f"{Path(p.file).name}:{p.line}: {p.message}" for p in caught.value.problems]


def test_the_shipped_example_plan_loads_with_its_values():
    plan = load_plan(EXAMPLE)
    assert plan.name == "example" and plan.dag_id == "migration_example"
    assert (plan.source_connection, plan.destination_connection) == ("example_old", "example_new")
    assert [a.source_user for a in plan.accounts] == [
        "alice@example.com",
        "bob@example.com",
        "carol",
        "dave.legacy",
    ]
    alice, bob, carol, dave = plan.accounts
    assert (alice.source_password, alice.destination_password) == (
        "alice-old-secret",
        "alice-new-secret",
    )
    assert bob.source_password == "bob,with,commas" and bob.destination_user == "robert@example.com"
    assert carol.source_password is None and carol.destination_password is None
    assert (carol.mx_domain, dave.mx_domain) == ("example.com", "example.net")
    assert (alice.line, carol.line, dave.line) == (5, 9, 10)  # CSV lines, comments counted
    assert plan.mx is not None
    assert plan.mx.expect == ("mx1.newhost.example", "mx2.newhost.example")
    assert plan.mx.resolvers == ("1.1.1.1", "8.8.8.8")
    assert (plan.mx.poke_interval, plan.mx.timeout) == (600, 7 * 86400)
    assert plan.delta.timezone == "Europe/Berlin"
    assert plan.delta.window == (dt.time(19, 0), dt.time(6, 0))
    assert plan.delta.weekdays == (0, 1, 2, 3, 4)
    assert plan.folders.exclude == ("Junk", "Trash/*")
    assert plan.folders.rename == {"Archives/2019": "Archive/2019"}
    assert plan.copy.batch_bytes == 16 * 1024 * 1024 and plan.copy.messages_per_second is None
    assert plan.copy.propagate_deletions is False and plan.copy.parallel_folders == 2
    assert (plan.parallel_accounts, plan.retries, plan.pool) == (4, 3, None)
    assert plan.state_dir is None  # $MAILMIGRATE_STATE_DIR: shared by every worker


def test_a_minimal_plan_gets_the_defaults(tmp_path):
    plan = load_plan(plan_file(tmp_path))
    assert plan == Plan(
        path=tmp_path / "acme.yaml",
        name="acme",
        source_connection="acme_old",
        destination_connection="acme_new",
        accounts=plan.accounts,
    )
    assert plan.mx is None  # no MX section: wait_for_mx has nothing to wait for
    assert plan.accounts[0].mx_domain == "new.example"


def test_passwords_are_not_in_an_accounts_repr(tmp_path):
    plan = load_plan(
        plan_file(tmp_path, accounts_csv=HEADER + "a@x.example,Pw-Old-1,a@y.example,Pw-New-2\n")
    )
    assert plan.accounts[0].source_password == "Pw-Old-1"
    assert "Pw-" not in repr(plan)


def test_every_problem_is_reported_at_once_with_its_line_and_field(tmp_path):
    path = plan_file(
        tmp_path,
        """\
        mx:
          expect: [mx1.new.example]
          resolvers: ["1.1.1.1:99999", "127.0.0.1:5353", "[::1]:53", "::1", "ns1.example.net"]
          poke_interval: 10 minutes
        delta:
          timezone: Europe/Berln
          window: "19:00-6"
          weekdays: [mon, tues]
        copy:
          batch_bytes: 16 furlongs
          propagate_deletions: maybe
          paralel_folders: 3
        parallel_accounts: 0
        retries: -1
        """,
    )
    assert problems(path) == [
        'acme.yaml:7: mx.resolvers: "1.1.1.1:99999" is not "address" or "address:port" (an '
        'IPv4/IPv6 address, port 1-65535, IPv6 with a port as "[::1]:53")',
        'acme.yaml:7: mx.resolvers: "ns1.example.net" is not "address" or "address:port" (an '
        'IPv4/IPv6 address, port 1-65535, IPv6 with a port as "[::1]:53")',
        'acme.yaml:8: mx.poke_interval: "10 minutes" is not a duration > 0; write e.g. 30s, 10m, '
        "2h, 7d or a number of seconds",
        'acme.yaml:10: delta.timezone: "Europe/Berln" is not a known time zone; did you mean '
        '"Europe/Berlin"?',
        'acme.yaml:11: delta.window: "19:00-6" is not HH:MM-HH:MM (e.g. "19:00-06:00") or "any"',
        'acme.yaml:12: delta.weekdays: "tues" is not a weekday; did you mean "tue"? (use mon, tue, '
        "wed, thu, fri, sat, sun)",
        'acme.yaml:14: copy.batch_bytes: "16 furlongs" is not a size > 0; write e.g. 16MB, 512KB '
        "or bytes",
        'acme.yaml:15: copy.propagate_deletions: "maybe" must be true or false',
        'acme.yaml:16: copy.paralel_folders: unknown key; did you mean "parallel_folders"? (allowed '
        "here: batch_messages, batch_bytes, messages_per_second, bytes_per_second, "
        "propagate_deletions, parallel_folders)",
        'acme.yaml:17: parallel_accounts: "0" must be a whole number >= 1',
        'acme.yaml:18: retries: "-1" must be a whole number >= 0',
    ]


def test_missing_required_keys_and_unknown_keys(tmp_path):
    path = write(tmp_path, "p.yaml", "acounts: x.csv\nsource: acme_old\ndestination: {}\n")
    found = problems(path)
    assert found[0].startswith('p.yaml:1: acounts: unknown key; did you mean "accounts"?')
    assert found[1:] == [
        "p.yaml:1: name: missing; add e.g. name: acme (the DAG id becomes migration_acme)",
        "p.yaml:1: accounts: missing; give a CSV file (accounts: accounts.csv) or a list",
        "p.yaml:2: source: must be a mapping (key: value), e.g. source: {connection: acme_old}",
        "p.yaml:3: destination.connection: missing, e.g. destination: {connection: acme_new}",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "p.yaml:1: the plan is empty; it needs name, source, destination and accounts"),
        (
            "- a\n- b\n",
            "p.yaml:1: the plan: must be a mapping (key: value) with name, source, "
            "destination and accounts",
        ),  # fmt: skip
        (
            "name: a\nsource: {connection: x\n",
            "p.yaml:3: invalid YAML: while parsing a flow "
            "mapping; expected ',' or '}', but got '<stream end>'",
        ),  # fmt: skip
        (
            "name: a\n\tsource: x\n",
            "p.yaml:2: invalid YAML: while scanning for the next token; "
            "found character '\\t' that cannot start any token",
        ),  # fmt: skip
        ("name: a\nname: b\n", "p.yaml:2: name: given twice (first on line 1)"),
        (
            "name: a b\n",
            'p.yaml:1: name: "a b" may only hold letters, digits, "_" and "-" (e.g. acme)',
        ),
        (
            "a: 1\n---\nb: 2\n",
            "p.yaml:2: invalid YAML: expected a single document in the stream; "
            "but found another document",
        ),  # fmt: skip
    ],
)
def test_broken_files_name_the_line(tmp_path, text, expected):
    assert expected in problems(write(tmp_path, "p.yaml", text))


def test_unreadable_plan_files(tmp_path):
    assert problems(tmp_path / "missing.yaml") == [
        "missing.yaml:1: cannot read the plan: No such file or directory"
    ]
    (tmp_path / "latin1.yaml").write_bytes(b"name: acme\n# caf\xe9\n")
    assert problems(tmp_path / "latin1.yaml") == [
        "latin1.yaml:2: not UTF-8 text; save the plan as UTF-8"
    ]


def test_csv_problems_carry_the_csv_line_and_never_a_password(tmp_path):
    csv = (
        "# accounts\n"
        "source_user,source_password,destination_user,destination_password,mx_domian\n"
        "a@x.example,Secret-1,a@y.example,Secret-2,\n"
        "\n"
        "a@x.example,Secret-3,b,Secret-4,\n"
        "Secret-5,Secret-6\n"
        ",Secret-7,,Secret-8,\n"
        'ok@x.example,"Secret-9\nstill,inside",ok@y.example,,\n'
        '"unterminated,Secret-10,x,y,z\n'
    )
    found = problems(plan_file(tmp_path, accounts_csv=csv))
    assert found == [
        'accounts.csv:2: header: unknown column "mx_domian"; did you mean "mx_domain"? (columns: '
        "source_user, source_password, destination_user, destination_password, mx_domain)",
        "accounts.csv:5: destination_user: has no domain; write it as user@example.com or fill "
        "the mx_domain column",
        "accounts.csv:5: source_user: listed twice (lines 3 and 5); each source mailbox may "
        "appear once",
        "accounts.csv:6: row has 2 fields but the header has 5 columns; quote fields that contain "
        'a comma ("pa,ss")',
        "accounts.csv:7: source_user: is empty; every account needs one",
        "accounts.csv:7: destination_user: is empty; every account needs one",
        "accounts.csv:8: source_password: contains a line break; check this row's quotes",
        "accounts.csv:10: malformed CSV (unexpected end of data); check this row's quotes",
    ]
    assert "Secret" not in "\n".join(found)


def test_csv_columns_in_any_order_with_mx_domain(tmp_path):
    csv = "destination_user , mx_domain,source_user\nbob,corp.example,bob\n\n# done\n"
    plan = load_plan(plan_file(tmp_path, accounts_csv=csv))
    (bob,) = plan.accounts
    assert (bob.source_user, bob.destination_user, bob.mx_domain, bob.line) == (
        "bob",
        "bob",
        "corp.example",
        2,
    )
    assert bob.source_password is None


@pytest.mark.parametrize(
    ("csv", "expected"),
    [
        (
            "# only a comment\n\n",
            "accounts.csv:1: no header line; the first line must be " + HEADER.strip(),
        ),
        (HEADER, "accounts.csv:1: no accounts; add a line per account below " + HEADER.strip()),
        (
            "a@x.example,Top-Secret,a@y.example,Top-Secret\n",
            "accounts.csv:1: no header line; the "
            f"header must be {HEADER.strip()} (any order; mx_domain optional)",
        ),  # fmt: skip
        (
            "source_user,source_password\n",
            "accounts.csv:1: header: missing column destination_user; "
            f"the header must be {HEADER.strip()} (any order; mx_domain optional)",
        ),  # fmt: skip
    ],
)
def test_csv_header_problems(tmp_path, csv, expected):
    found = problems(plan_file(tmp_path, accounts_csv=csv))
    assert found == [expected]


def test_a_missing_csv_is_reported_at_the_accounts_line(tmp_path):
    path = write(tmp_path, "acme.yaml", BASE.replace("accounts.csv", "nowhere.csv"))
    assert problems(path) == [
        f'acme.yaml:4: accounts: cannot read "nowhere.csv" ({tmp_path / "nowhere.csv"}): No such '
        "file or directory"
    ]


def test_task_group_ids_must_not_collide(tmp_path):
    csv = HEADER + "alice@example.com,,a@new.example,\nalice.example.com,,b@new.example,\n"
    assert problems(plan_file(tmp_path, accounts_csv=csv)) == [
        'accounts.csv:3: source_user: "alice.example.com" and "alice@example.com" (line 2) both '
        'become task group "alice_example_com"; they must differ'
    ]


def test_inline_accounts(tmp_path):
    path = write(
        tmp_path,
        "inline.yaml",
        """\
        name: inline
        source: {connection: old}
        destination: {connection: new}
        accounts:
          - {source_user: alice, source_password: 0123, destination_user: alice@new.example}
          - source_user: bob@old.example
            destination_user: bob
            mx_domain: Corp.Example.
        """,
    )
    alice, bob = load_plan(path).accounts
    assert alice.source_password == "0123"  # exactly as written, not the YAML octal 83
    assert (alice.line, alice.mx_domain) == (5, "new.example")
    assert (bob.line, bob.destination_user, bob.mx_domain) == (6, "bob", "corp.example")


def test_inline_account_problems(tmp_path):
    path = write(
        tmp_path,
        "inline.yaml",
        """\
        name: inline
        source: {connection: old}
        destination: {connection: new}
        accounts:
          - {source_user: a, destination_user: b, source_password: Inline-Secret}
          - source_user: [x]
            destination_user: c@d.example
            destination_pasword: Inline-Secret-2
          - just a string
        """,
    )
    found = problems(path)
    assert found == [
        "inline.yaml:5: accounts: destination_user: has no domain; write it as user@example.com "
        "or fill the mx_domain column",
        "inline.yaml:6: accounts: source_user: must be a text value",
        "inline.yaml:8: accounts.destination_pasword: unknown key; did you mean "
        '"destination_password"? (allowed here: source_user, source_password, destination_user, '
        "destination_password, mx_domain)",
        "inline.yaml:9: accounts: must be a mapping (key: value) with source_user, destination_user "
        "and optional passwords",
    ]
    assert "Inline-Secret" not in "\n".join(found)
    empty = write(tmp_path, "empty.yaml", BASE.replace("accounts.csv", "[]"))
    assert problems(empty) == [
        "empty.yaml:4: accounts: the list is empty; add at least one account"
    ]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("10m", 600), ("2h", 7200), ("7d", 604800), ("1h30m", 5400), ("90", 90),
     (45, 45), (1.5, 1.5), ("1w", 604800), ("10 minutes", None), ("", None), ("h", None),
     (True, None), ("nan", None), (float("inf"), None)],
)  # fmt: skip
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_duration_values_in_a_plan(tmp_path):
    plan = load_plan(
        plan_file(tmp_path, "mx: {expect: [MX1.New.Example.], poke_interval: 45, timeout: 1h30m}\n")
    )
    assert plan.mx is not None
    assert (plan.mx.expect, plan.mx.poke_interval, plan.mx.timeout) == (
        ("mx1.new.example",),
        45,
        5400,
    )
    too_long = plan_file(
        tmp_path, "mx: {expect: [mx.new.example], poke_interval: 2h, timeout: 1h}\n"
    )
    assert problems(too_long) == [
        "acme.yaml:5: mx.poke_interval: must not be longer than mx.timeout"
    ]


def test_sizes():
    assert [parse_size(v) for v in ("16MB", "512k", "1.5GiB", "100", 4096, "2 mb", "16 furlongs")] == [
        16 * 1024**2, 512 * 1024, int(1.5 * 1024**3), 100, 4096, 2 * 1024**2, None,
    ]  # fmt: skip


def test_dns_server_addresses():
    assert split_host_port("1.1.1.1") == ("1.1.1.1", None)
    assert split_host_port("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert split_host_port("::1") == ("::1", None)
    assert split_host_port("[2606:4700::1111]:53") == ("2606:4700::1111", 53)
    assert split_host_port("ns1.example.net:53") == ("ns1.example.net", 53)
    for bad in ("1.1.1.1:0", "1.1.1.1:65536", "[::1", "[::1]x", "bad host", "a:b:c:d", ""):
        assert split_host_port(bad) is None, bad


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York", "UTC", "Asia/Kolkata"])
def test_known_time_zones(tmp_path, zone):
    assert load_plan(plan_file(tmp_path, f"delta: {{timezone: {zone}}}\n")).delta.timezone == zone


def test_unknown_time_zones(tmp_path):
    assert problems(plan_file(tmp_path, "delta: {timezone: Mars/Olympus}\n")) == [
        'acme.yaml:5: delta.timezone: "Mars/Olympus" is not a known time zone (an IANA name such '
        'as "Europe/Berlin" or "UTC")'
    ]


@pytest.mark.parametrize(
    ("window", "expected"),
    [('"19:00-06:00"', (dt.time(19), dt.time(6))), ('"7:30 - 9:00"', (dt.time(7, 30), dt.time(9))),
     ("any", None), ("ANY", None), ('"18:00-24:00"', (dt.time(18), dt.time(0)))],
)  # fmt: skip
def test_valid_windows(tmp_path, window, expected):
    assert load_plan(plan_file(tmp_path, f"delta: {{window: {window}}}\n")).delta.window == expected


@pytest.mark.parametrize(
    "window", ["19:00-6", "25:00-06:00", "19:60-06:00", "24:00-06:00", "always"]
)
def test_invalid_windows(tmp_path, window):
    assert problems(plan_file(tmp_path, f'delta: {{window: "{window}"}}\n')) == [
        f'acme.yaml:5: delta.window: "{window}" is not HH:MM-HH:MM (e.g. "19:00-06:00") or "any"'
    ]


def test_an_empty_window_and_weekdays(tmp_path):
    path = plan_file(tmp_path, 'delta:\n  window: "19:00-19:00"\n  weekdays: [Friday, sat, fri]\n')
    assert problems(path) == [
        'acme.yaml:6: delta.window: "19:00-19:00" starts and ends at the same time; use "any" for '
        "no window"
    ]
    plan = load_plan(plan_file(tmp_path, "delta: {weekdays: [Friday, sat, fri]}\n"))
    assert plan.delta.weekdays == (4, 5)


def test_scheduled_delta_keys_and_their_defaults(tmp_path):
    delta = load_plan(plan_file(tmp_path)).delta
    assert (delta.quiet_period, delta.max_after_mx, delta.before_mx, delta.repeat) == (
        48 * 3600, 7 * 86400, False, None)  # fmt: skip
    text = "delta: {quiet_period: 36h, max_after_mx: 5d, before_mx: true, repeat: 2h}\n"
    delta = load_plan(plan_file(tmp_path, text)).delta
    assert (delta.quiet_period, delta.max_after_mx, delta.before_mx, delta.repeat) == (
        36 * 3600, 5 * 86400, True, 7200)  # fmt: skip
    assert load_plan(plan_file(tmp_path, "delta: {repeat: null}\n")).delta.repeat is None


def test_scheduled_delta_problems_name_their_line(tmp_path):
    path = plan_file(
        tmp_path,
        """\
        delta:
          quiet_period: soon
          max_after_mx: 0
          before_mx: maybe
          repeat: -5
        """,
    )
    assert problems(path) == [
        'acme.yaml:6: delta.quiet_period: "soon" is not a duration > 0; write e.g. 30s, 10m, 2h, '
        "7d or a number of seconds",
        'acme.yaml:7: delta.max_after_mx: "0" is not a duration > 0; write e.g. 30s, 10m, 2h, 7d '
        "or a number of seconds",
        'acme.yaml:8: delta.before_mx: "maybe" must be true or false',
        'acme.yaml:9: delta.repeat: "-5" is not a duration > 0; write e.g. 30s, 10m, 2h, 7d or a '
        "number of seconds",
    ]
    shorter = plan_file(tmp_path, "delta:\n  quiet_period: 3d\n  max_after_mx: 2d\n")
    assert problems(shorter) == [
        "acme.yaml:7: delta.max_after_mx: shorter than delta.quiet_period, so no account could "
        "ever finish by going quiet"
    ]


def test_null_optional_keys_mean_defaults(tmp_path):
    plan = load_plan(
        plan_file(tmp_path, "mx:\ndelta: ~\ncopy: {messages_per_second: null}\npool:\n")
    )
    assert plan.mx is None and plan.delta.window is None and plan.pool is None


SMTP = "airflow.providers.smtp.notifications.smtp.SmtpNotifier"


def test_notify_lists_notifiers_with_their_arguments_as_plain_data(tmp_path):
    path = plan_file(
        tmp_path,
        """\
        notify:
          - notifier: airflow.providers.smtp.notifications.smtp.SmtpNotifier
            args: {to: ops@example.com, subject: "{{ cutover.subject }}", html_content: "<pre>{{ cutover.message }}</pre>"}
          - notifier: my_company.chat.ChatNotifier
            args:
              channel: "#mail"
              retries: 3
              timeout: 2.5
              silent: false
              mention: [alice, bob]
              style: {color: red, size: null}
          - notifier: plain.Notifier
          - {notifier: other.Notifier, args: null}
        """,
    )
    assert load_plan(path).notify == (
        NotifierSpec(
            SMTP,
            {
                "to": "ops@example.com",
                "subject": "{{ cutover.subject }}",
                "html_content": "<pre>{{ cutover.message }}</pre>",
            },
            line=6,
        ),
        NotifierSpec(
            "my_company.chat.ChatNotifier",
            {
                "channel": "#mail",
                "retries": 3,
                "timeout": 2.5,
                "silent": False,
                "mention": ["alice", "bob"],
                "style": {"color": "red", "size": None},
            },
            line=8,
        ),
        NotifierSpec("plain.Notifier", {}, line=16),
        NotifierSpec("other.Notifier", {}, line=17),
    )
    assert load_plan(plan_file(tmp_path, "notify: []\n")).notify == ()
    assert load_plan(plan_file(tmp_path, "notify:\n")).notify == ()
    assert load_plan(EXAMPLE).notify == ()  # commented out in the example


def test_the_examples_commented_notify_block_loads_when_uncommented(tmp_path):
    text = EXAMPLE.read_text()
    start = text.index("# notify:")
    end = text.find("\n\n", start)  # the block ends at the first blank line
    end = len(text) if end < 0 else end
    uncommented = text[:start] + re.sub(r"(?m)^# ?", "", text[start:end]) + text[end:]
    write(tmp_path, "example.yaml", uncommented)
    shutil.copy(EXAMPLE.with_name("example_accounts.csv"), tmp_path / "example_accounts.csv")
    (spec,) = load_plan(tmp_path / "example.yaml").notify
    assert spec.notifier == SMTP
    assert spec.args == {
        "to": "ops@example.com",
        "subject": "{{ cutover.subject }}",
        "html_content": "<pre>{{ cutover.message }}</pre>",
    }


def test_notify_problems(tmp_path):
    path = plan_file(
        tmp_path,
        """\
        notify:
          - notifier: smtp
          - notifier: airflow.providers.smtp.notifications.smtp.SmtpNotifier
            args: [to, ops@example.com]
          - args: {to: ops@example.com}
          - notifier: a.B
            notfier: c.D
          - plain text
          - notifier: [a.B]
          - notifier: 1a.B
          - notifier: a.B
            args: {when: 2024-13-45, to: x, to: y, [k]: v}
          - notifier: a.B
            notifier: a.C
          - notifier:
          - notifier: a.B
            args:
              nested: {x: 1, {y: 2}: 3}
        """,
    )
    example = f", e.g. {SMTP}"
    assert problems(path) == [
        f'acme.yaml:6: notify.notifier: "smtp" is not the import path of a class (module.Class)'
        f"{example}",
        "acme.yaml:8: notify.args: must be a mapping (key: value) of the notifier's arguments, "
        "e.g. args: {to: ops@example.com}",
        f"acme.yaml:9: notify.notifier: missing; name an Airflow notifier class{example}",
        'acme.yaml:11: notify.notfier: unknown key; did you mean "notifier"? (allowed here: '
        "notifier, args, on)",
        "acme.yaml:12: notify: must be a mapping (key: value) with notifier and optional args",
        f"acme.yaml:13: notify.notifier: must be a text value{example}",
        f'acme.yaml:14: notify.notifier: "1a.B" is not the import path of a class (module.Class)'
        f"{example}",
        "acme.yaml:16: notify.args.to: given twice (first on line 16)",
        "acme.yaml:16: notify.args: keys must be plain names",
        "acme.yaml:16: notify.args.when: cannot be read: month must be in 1..12",
        "acme.yaml:18: notify.notifier: given twice (first on line 17)",
        f"acme.yaml:19: notify.notifier: must be a text value{example}",
        "acme.yaml:22: notify.args.nested: cannot be read: found unhashable key",
    ]


@pytest.mark.parametrize("value", ["{notifier: a.B}", "a.B", "true"])
def test_notify_must_be_a_list(tmp_path, value):
    assert problems(plan_file(tmp_path, f"notify: {value}\n")) == [
        "acme.yaml:5: notify: must be a list, e.g. [{notifier: "
        f"{SMTP}, args: {{to: ops@example.com}}}}]"
    ]


def test_find_and_load_plans(tmp_path):
    plans_dir = tmp_path / "plans"
    plans_dir.mkdir()
    shutil.copy(EXAMPLE, plans_dir / "a.yaml")
    shutil.copy(EXAMPLE.with_name("example_accounts.csv"), plans_dir / "example_accounts.csv")
    shutil.copy(EXAMPLE, plans_dir / "b.yml")  # same name: its DAG id would collide
    write(plans_dir, "c.yaml", "name: [broken\n")
    write(plans_dir, "notes.txt", "not a plan")
    assert [p.name for p in find_plans(plans_dir)] == ["a.yaml", "b.yml", "c.yaml"]
    plans, errors = load_plans(plans_dir)
    assert [p.path.name for p in plans] == ["a.yaml"]
    assert [str(e).split(":")[0] for e in errors] == [
        str(plans_dir / "b.yml"),
        str(plans_dir / "c.yaml"),
    ]
    assert str(errors[0]).endswith(
        f'b.yml:6: name: "example" is already the name of {plans_dir / "a.yaml"}; DAG ids must be unique'
    )
    assert find_plans(tmp_path / "nope") == []


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.text(
        alphabet=st.sampled_from(list("name:sourcdtiwxy-[]{},\"'#&*!|>?@ \n\t0123456789.")),
        max_size=200,
    )
)
def test_no_input_gives_a_traceback(tmp_path, text):
    path = tmp_path / "fuzz.yaml"
    path.write_text(BASE + text)
    (tmp_path / "accounts.csv").write_text(HEADER + text)
    try:
        load_plan(path)
    except PlanError as exc:
        assert exc.problems and all(p.line >= 1 for p in exc.problems)


# -- notify.on, reports, approval ------------------------------------------------------------

TWO_ACCOUNTS = HEADER + "alice@old.example,,alice@new.example,\nbob@old.example,,bob@new.example,\n"


def test_notify_on_names_the_events(tmp_path):
    path = plan_file(
        tmp_path,
        """\
        notify:
          - notifier: a.B
          - {notifier: a.C, on: [task_failed, finished, task_failed]}
          - {notifier: a.D, on: approval_requested}
        """,
    )
    assert [spec.on for spec in load_plan(path).notify] == [
        ("cutover_ready",),
        ("task_failed", "finished"),
        ("approval_requested",),
    ]


def test_notify_on_problems(tmp_path):
    path = plan_file(
        tmp_path,
        """\
        notify:
          - {notifier: a.B, on: [task_fail, finished]}
          - {notifier: a.C, on: []}
          - {notifier: a.D, on: {x: 1}}
        """,
    )
    events = (
        "cutover_ready, task_failed, finished, approval_requested, account_finished, "
        "migration_finished"
    )
    assert problems(path) == [
        f'acme.yaml:6: notify.on: "task_fail" is not an event; did you mean "task_failed"? (use {events})',
        f"acme.yaml:7: notify.on: must name at least one event of [{events}]",
        f"acme.yaml:8: notify.on: must be a list, e.g. [{events}]",
    ]


def test_reports_section_with_every_key(tmp_path):
    (tmp_path / "mail").mkdir()
    path = plan_file(
        tmp_path,
        """\
        reports:
          url: out/reports
          conn_id: aws_default
          compare: false
          templates: mail
          client_settings:
            imap: {host: IMAP.New.Example, security: ssl}
            smtp: {host: 192.0.2.25, port: 587, security: starttls}
            autoconfig: https://autoconfig.new.example/mail/config-v1.1.xml
          mail_owners: {smtp_connection: owner_smtp, from: "IT <it@example.com>", after: delta_copy}
        """,
    )
    reports = load_plan(path).reports
    assert reports.url == str((tmp_path / "out" / "reports").resolve())
    assert (reports.conn_id, reports.compare, reports.enabled) == ("aws_default", False, True)
    assert reports.templates == tmp_path / "mail"
    settings = reports.client_settings
    assert (settings.imap.host, settings.imap.port, settings.imap.security) == (
        "imap.new.example", None, "ssl")  # fmt: skip
    assert (settings.smtp.host, settings.smtp.port, settings.smtp.security) == (
        "192.0.2.25", 587, "starttls")  # fmt: skip
    assert settings.autoconfig == "https://autoconfig.new.example/mail/config-v1.1.xml"
    mail = reports.mail_owners
    assert (mail.smtp_connection, mail.sender, mail.after) == (
        "owner_smtp", "IT <it@example.com>", ("delta_copy",))  # fmt: skip


def test_reports_defaults_and_shorthands(tmp_path):
    default = load_plan(plan_file(tmp_path)).reports
    assert default.enabled and default.compare and default.url is None
    assert default.mail_owners is None and default.client_settings.imap is None
    assert load_plan(plan_file(tmp_path, "reports: false\n")).reports.enabled is False
    owners = load_plan(plan_file(tmp_path, "reports: {url: 's3://b/r', mail_owners: true}\n"))
    assert owners.reports.url == "s3://b/r"
    assert owners.reports.mail_owners.after == ("initial_copy", "delta_copy")
    assert owners.reports.mail_owners.smtp_connection == "smtp_default"


def test_reports_problems(tmp_path):
    path = plan_file(
        tmp_path,
        """\
        reports:
          compare: sometimes
          templates: no_such_folder
          conn_id: "bad id"
          client_settings:
            imap: {host: "not a host", port: 70000, security: tls}
            smtp: {port: 25}
            autoconfig: autoconfig.example
          mail_owners: {from: it-at-example, after: [initial_copy, cutover], smtp: x}
        """,
    )
    assert problems(path) == [
        'acme.yaml:6: reports.compare: "sometimes" must be true or false',
        f'acme.yaml:7: reports.templates: "no_such_folder" is not a folder (looked in {tmp_path / "no_such_folder"})',
        'acme.yaml:8: reports.conn_id: "bad id" is not a connection id',
        'acme.yaml:10: reports.client_settings.imap.host: "not a host" is not a host name',
        "acme.yaml:10: reports.client_settings.imap.port: 70000 is not a port (1-65535)",
        'acme.yaml:10: reports.client_settings.imap.security: "tls" is not one of ssl, starttls, none',
        "acme.yaml:11: reports.client_settings.smtp.host: missing, e.g. {host: imap.new.example, "
        "port: 993, security: ssl}",
        'acme.yaml:12: reports.client_settings.autoconfig: "autoconfig.example" is not a URL',
        "acme.yaml:13: reports.mail_owners.smtp: unknown key (allowed here: smtp_connection, "
        "from, after)",
        'acme.yaml:13: reports.mail_owners.from: "it-at-example" is not a mail address',
        'acme.yaml:13: reports.mail_owners.after: "cutover" is not one of initial_copy, delta_copy',
    ]


def test_approval_names_pilot_accounts(tmp_path):
    path = plan_file(
        tmp_path,
        """\
        approval:
          accounts: [bob@old.example]
          after: test
          subject: Pilot review
          body: Ask Bob first.
          approvers: [admin, lead]
          timeout: 3d
        """,
        accounts_csv=TWO_ACCOUNTS,
    )
    approval = load_plan(path).approval
    assert approval.accounts == ("bob@old.example",)
    assert (approval.after, approval.subject, approval.body) == ("test", "Pilot review", "Ask Bob first.")  # fmt: skip
    assert approval.approvers == ("admin", "lead") and approval.timeout == 3 * 86400
    assert approval.line == 6
    plain = load_plan(
        plan_file(tmp_path, "approval: {accounts: [alice@old.example]}\n", TWO_ACCOUNTS)
    )
    assert plain.approval.after == "initial_copy" and plain.approval.timeout is None
    assert load_plan(plan_file(tmp_path, "", TWO_ACCOUNTS)).approval is None


def test_approval_problems(tmp_path):
    cases = {
        "approval: {after: test}\n": [
            "acme.yaml:5: approval.accounts: missing; list the pilot accounts (source users) "
            "whose owners review the test migration"
        ],
        "approval: {accounts: [alice@old.exampel], after: delta_copy, timeout: soon}\n": [
            'acme.yaml:5: approval.accounts: "alice@old.exampel" is not an account of this plan; '
            'did you mean "alice@old.example"?',
            'acme.yaml:5: approval.after: "delta_copy" is not one of test, initial_copy; did you '
            'mean "initial_copy"?',
            'acme.yaml:5: approval.timeout: "soon" is not a duration > 0; write e.g. 30s, 10m, '
            "2h, 7d or a number of seconds",
        ],
        "approval: {accounts: [alice@old.example, bob@old.example]}\n": [
            "acme.yaml:5: approval.accounts: lists every account, so no account is left for the "
            "approval to gate; list only the pilot accounts"
        ],
        "approval: {accounts: []}\n": [
            "acme.yaml:5: approval.accounts: must list at least one account"
        ],
        "approval: yes\n": [
            "acme.yaml:5: approval: must be a mapping (key: value), e.g. approval: {accounts: "
            "[ceo@example.com], after: initial_copy}"
        ],
    }
    for text, expected in cases.items():
        assert problems(plan_file(tmp_path, text, TWO_ACCOUNTS)) == expected, text
