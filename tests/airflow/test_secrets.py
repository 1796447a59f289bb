"""No password or token ever shows: the end-to-end DAG run with recognisable secrets, searched for
in everything a migration leaves behind.

One plan, three accounts against real Dovecot servers: one migrates completely (the destination
logs in with XOAUTH2 access tokens), one has a wrong source password, one a wrong token. Then
every byte of the serialized DAG, the metadata database file (XComs, rendered fields, task
instances, import errors, even freed pages), every file under ``AIRFLOW_HOME`` (task logs,
reports), the engine's state files, the captured process output, the engine's exception texts
(with their chained causes and tracebacks) and the CLI's reports is searched: none appears.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import traceback
from datetime import UTC, datetime
from pathlib import Path

import pytest
from harness.airflow_env import REPO_ROOT
from harness.corpus import make_message, seed_folder, snapshot
from harness.dovecot import DovecotServer
from harness.figures import record

from mailmigrate.connections import endpoint_from_dict
from mailmigrate.errors import AuthenticationFailed
from mailmigrate.plan import load_plan
from mailmigrate.sync import copy_account, preflight

MARK = "S3CRET" + secrets.token_hex(4)  # in every secret of this module, and nothing else
PLANTED: list[str] = []


def _secret(what: str) -> str:
    PLANTED.append(f"{what}-{MARK}-{secrets.token_hex(3)}")
    return PLANTED[-1]


@pytest.fixture(scope="module")
def oauth_imap():
    """A modern Dovecot that also takes XOAUTH2 and OAUTHBEARER (the passwd-file entry is the
    access token, which is all these mechanisms check against any passdb)."""
    root = Path(tempfile.mkdtemp(prefix="mailmigrate-dovecot-oauth-"))
    server = DovecotServer(root, "modern")
    config = server.config_path.read_text()
    assert "auth_mechanisms = plain login\n" in config
    server.config_path.write_text(
        config.replace(
            "auth_mechanisms = plain login", "auth_mechanisms = plain login xoauth2 oauthbearer"
        )
    )
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def _plan(name: str) -> str:
    return (
        f"name: {name}\n"
        "source: {connection: sec_old}\n"
        "destination: {connection: sec_new}\n"
        f"accounts: {name}_accounts.csv\n"
        "state_dir: state\n"
        "retries: 2\n"
        "delta: {timezone: Europe/Berlin, window: any}\n"
    )


def _haystacks(paths: list[Path]) -> dict[str, bytes]:
    """Every file under the given paths, by name."""
    found = {}
    for root in paths:
        for path in [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()):
            found[str(path)] = path.read_bytes()
    return found


def _exception_texts(exc: BaseException) -> str:
    """An exception as anyone could show it: str, repr, the formatted traceback with the
    chained causes, and the same for every exception in its __cause__/__context__ chain."""
    parts, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        parts += [str(exc), repr(exc), "".join(traceback.format_exception(exc, chain=True))]
        exc = exc.__cause__ or exc.__context__
    return "\n".join(parts)


def test_no_secret_in_the_dag_logs_xcom_database_reports_or_exceptions(
    tmp_path, legacy_imap, oauth_imap, new_account, monkeypatch, airflow_db, capfd
):
    from airflow.serialization.serialized_objects import DagSerialization
    from harness.airflow_env import run_dag_test, run_outcome

    from mailmigrate.cli import main as cli
    from mailmigrate_airflow.factory import build_dags

    # -- the plan: three accounts with recognisable secrets --------------------------------
    rows, expected = [], {}
    for n, fault in enumerate(("none", "source password", "token")):
        user, password = new_account(legacy_imap)
        token = _secret("xoauth2-token")
        dst_user = f"sec{n}-{user}"
        oauth_imap.add_account(dst_user, token)
        client = legacy_imap.client(user, password)
        when = datetime(2024, 4, 1, 9, n, tzinfo=UTC)
        seed_folder(
            client, "INBOX", [(make_message(81_000 + n * 10 + i), (), when) for i in range(4)]
        )
        client.logout()
        # The real password must not leak either: make it recognisable on the server too.
        legacy_imap.add_account(user, password := _secret("source-password"))
        given_password = _secret("wrong-password") if fault == "source password" else password
        given_token = _secret("wrong-token") if fault == "token" else token
        rows.append(f"{user},{given_password},{dst_user},{given_token}")
        expected[user] = (fault, dst_user, password, token)
    # Every planted secret carries MARK: searching for it finds any of them.
    secrets_ = [MARK, legacy_imap.master_password]
    dag_folder = tmp_path / "dags"
    plans = dag_folder / "plans"
    plans.mkdir(parents=True)
    shutil.copy(REPO_ROOT / "dags" / "migrations.py", dag_folder / "migrations.py")
    name = "sec_" + secrets.token_hex(3)
    (plans / f"{name}_accounts.csv").write_text(
        "source_user,source_password,destination_user,destination_password\n"
        + "\n".join(rows) + "\n"
    )  # fmt: skip
    (plans / f"{name}.yaml").write_text(_plan(name))
    # The admin passwords of both connections are secrets as well.
    source_conn = legacy_imap.connection("sec_old")
    destination_conn = oauth_imap.connection("sec_new", auth="xoauth2")
    destination_conn["password"] = _secret("admin-token")
    monkeypatch.setenv("AIRFLOW_CONN_SEC_OLD", json.dumps(source_conn))
    monkeypatch.setenv("AIRFLOW_CONN_SEC_NEW", json.dumps(destination_conn))
    reports = tmp_path / "reports"
    monkeypatch.setenv("MAILMIGRATE_REPORTS_URL", str(reports))

    # -- the DAG run ----------------------------------------------------------------------
    dag, _deltas = build_dags(str(dag_folder / "migrations.py")).values()
    run = run_dag_test(dag)
    outcome = run_outcome(run)  # by <account group>.<step>
    states, tries = outcome["states"], outcome["tries"]
    for user, (fault, dst_user, password, token) in expected.items():
        group = user.replace("@", "_").replace(".", "_")
        if fault == "none":
            assert states[f"{group}.delta_copy"] == "success", states
            src = legacy_imap.client(user, password)
            dst = oauth_imap.client(dst_user, token)
            assert snapshot(dst, "INBOX") == snapshot(src, "INBOX")
        else:  # refused at once: no retries, nothing after it ran
            assert states[f"{group}.test"] == "failed" and tries[f"{group}.test"] == 1, states
            assert states[f"{group}.initial_copy"] == "upstream_failed"
    dag_output = "".join(capfd.readouterr())
    assert "login as" in dag_output and "refused" in dag_output  # the failures were explained
    assert "Skipping masking" not in dag_output  # every secret here is long enough to mask

    # -- the engine's own exception texts and the CLI -------------------------------------
    plan = load_plan(plans / f"{name}.yaml")
    source = endpoint_from_dict("sec_old", source_conn)
    destination = endpoint_from_dict("sec_new", destination_conn)
    exception_texts = []
    for account in plan.accounts:
        if expected[account.source_user][0] == "none":
            continue
        with pytest.raises(AuthenticationFailed) as caught:
            copy_account(plan, account, source, destination, "initial", retry_delays=())
        exception_texts.append(_exception_texts(caught.value))
        exception_texts += preflight(plan, account, source, destination).problems
    for command in (["test"], ["report"], ["copy", "--phase", "delta"]):
        cli([*command, str(plans / f"{name}.yaml"), "--json"])
    cli_output = "".join(capfd.readouterr())
    assert '"ok"' in cli_output

    # -- search everything ----------------------------------------------------------------
    haystacks = {
        "serialized DAG": json.dumps(DagSerialization.to_dict(dag), default=str).encode(),
        "DAG run output (task logs)": dag_output.encode(),
        "engine exception texts": "\n".join(exception_texts).encode(),
        "CLI output": cli_output.encode(),
    }
    home = Path(os.environ["AIRFLOW_HOME"])
    haystacks |= _haystacks([home, reports, plans / "state"])
    assert any(key.endswith("airflow.db") for key in haystacks)
    assert any("/state/" in key for key in haystacks)
    report_files = sum(1 for key in haystacks if key.startswith(str(reports)))
    leaks = [where for where, data in haystacks.items() for s in secrets_ if s.encode() in data]
    assert not leaks, f"a secret shows in: {leaks}"
    record("secrets", places_searched=len(haystacks), report_files=report_files, bytes_searched=sum(map(len, haystacks.values())),
           secrets_planted=len(PLANTED) + 1, leaks_found=len(leaks))  # fmt: skip


# -- secrets too short to mask ---------------------------------------------------------------


def test_a_password_too_short_to_mask_leaves_the_cli_output_readable(
    tmp_path, legacy_imap, modern_imap, new_account, monkeypatch, capfd
):
    """One-character passwords (wrong ones here) are not masked, as in Airflow: replacing "s"
    everywhere would turn every line into noise. A long one still is."""
    from mailmigrate.cli import main as cli

    user, _ = new_account(legacy_imap)
    long_wrong = _secret("long-wrong")
    (tmp_path / "short_accounts.csv").write_text(
        "source_user,source_password,destination_user,destination_password\n"
        f"{user},s,{user},e\n{user}.2,{long_wrong},{user},e\n"
    )
    (tmp_path / "short.yaml").write_text(_plan("short"))
    monkeypatch.setenv("AIRFLOW_CONN_SEC_OLD", json.dumps(legacy_imap.connection("sec_old")))
    monkeypatch.setenv("AIRFLOW_CONN_SEC_NEW", json.dumps(modern_imap.connection("sec_new")))
    assert cli(["test", str(tmp_path / "short.yaml")]) == 1
    output = capfd.readouterr().err
    assert f"login as {user} with its own password refused" in output, output
    assert long_wrong not in output
    short_lines = [line for line in output.splitlines() if line.startswith(f"{user}:")]
    assert short_lines and not any("***" in line for line in short_lines), output


def test_the_airflow_layer_masks_no_password_shorter_than_airflows_minimum(tmp_path, capfd):
    """Passwords shorter than ``[logging] min_length_masked_secret`` never reach the masker
    (which would only log "Skipping masking for a secret as it's too short" at the start of
    every task); the others are masked."""
    from types import SimpleNamespace

    from airflow.sdk._shared.secrets_masker import SecretsMasker, _secrets_masker

    from mailmigrate_airflow.operators import MailboxTestOperator

    plans = tmp_path / "plans"
    plans.mkdir()
    long_one = _secret("long")
    (plans / "short_accounts.csv").write_text(
        "source_user,source_password,destination_user,destination_password\n"
        f"a@old.example,ab,a@new.example,{long_one}\n"
    )
    (plans / "short.yaml").write_text(_plan("short"))
    task = MailboxTestOperator(task_id="a_old_example.test", plan="short.yaml",
                               source_user="a@old.example", source_conn_id="sec_old",
                               destination_conn_id="sec_new")  # fmt: skip
    SecretsMasker._has_warned_short_secret = False  # the warning is logged once per process
    capfd.readouterr()
    task.load_plan({"dag": SimpleNamespace(fileloc=str(tmp_path / "migrations.py"))})
    assert "too short" not in "".join(capfd.readouterr())
    masker = _secrets_masker()
    assert masker.redact(f"x {long_one} y") == "x *** y"
    assert masker.redact("ab cd") == "ab cd"


# -- login failures: the server's text never carries the password ------------------------------


class EchoingImapServer:
    """A loopback IMAP server (a fake: real servers do not do this) that refuses every login
    and echoes what it received in its NO reply: the LOGIN command's quoted strings, or the
    AUTHENTICATE PLAIN response in base64. ``plain``: whether it offers AUTH=PLAIN."""

    def __init__(self, plain: bool = True) -> None:
        import socket
        import threading

        self.capabilities = "IMAP4rev1" + (" AUTH=PLAIN" if plain else "")
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as lines:
                conn.sendall(f"* OK [CAPABILITY {self.capabilities}] echo\r\n".encode())
                for line in lines:
                    self.received.append(line)
                    tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
                    command = rest.split(b" ")[0].upper()
                    if command == b"CAPABILITY":
                        conn.sendall(f"* CAPABILITY {self.capabilities}\r\n".encode() + tag + b" OK done\r\n")  # fmt: skip
                    elif command == b"AUTHENTICATE":
                        conn.sendall(b"+ \r\n")
                        answer = next(lines).rstrip(b"\r\n")
                        conn.sendall(tag + b" NO [AUTHENTICATIONFAILED] bad " + answer + b"\r\n")
                    elif command == b"LOGIN":
                        conn.sendall(tag + b" NO [AUTHENTICATIONFAILED] bad " + rest + b"\r\n")
                    else:
                        conn.sendall(tag + b" BAD unknown command\r\n")
                        break

    def close(self) -> None:
        self.listener.close()


def _echo_endpoint(server: EchoingImapServer):
    from mailmigrate.connections import Endpoint

    return Endpoint("echo", "imap", "127.0.0.1", port=server.port, extra={"security": "none"})


@pytest.mark.parametrize(
    "password",
    ['quo"te-' + MARK, "back\\slash-" + MARK, "apo'stro\"phe\\-" + MARK, "ünï-çødé-" + MARK],
    ids=["quote", "backslash", "apostrophe", "non-ascii"],
)
def test_a_login_reply_that_echoes_the_password_is_left_out(password):
    """Whatever the server echoes (LOGIN's quoted and escaped strings, or the base64 of
    AUTHENTICATE PLAIN for a non-ASCII password), the error names the account, says the login
    was refused and carries no form of the password."""
    from mailmigrate.mailbox.imap_session import LEFT_OUT, open_session

    server = EchoingImapServer()
    try:
        with pytest.raises(AuthenticationFailed) as refused:
            open_session(_echo_endpoint(server), "bob@example.com", password, "source bob")
    finally:
        server.close()
    assert any(b" LOGIN " in line or b" AUTHENTICATE " in line for line in server.received)
    text = _exception_texts(refused.value)
    assert "login as bob@example.com with its own password refused" in text and LEFT_OUT in text
    assert MARK not in text and "stro" not in text and "QUFB" not in text


def test_a_non_ascii_password_without_auth_plain_fails_with_the_reason():
    from mailmigrate.mailbox.imap_session import open_session

    server = EchoingImapServer(plain=False)
    try:
        with pytest.raises(AuthenticationFailed) as refused:
            open_session(_echo_endpoint(server), "bob@example.com", "pässwört-" + MARK, "source")
    finally:
        server.close()
    assert "non-ASCII" in str(refused.value) and "AUTHENTICATE PLAIN" in str(refused.value)
    assert MARK not in _exception_texts(refused.value) and not server.received[1:]


def test_a_non_ascii_password_logs_in_to_dovecot(legacy_imap, new_account):
    """AUTHENTICATE PLAIN in UTF-8: a real Dovecot account whose password is not ASCII, as its
    own login and through the master user."""
    from mailmigrate.connections import endpoint_from_dict
    from mailmigrate.mailbox.imap_session import open_session

    user, _ = new_account(legacy_imap)
    legacy_imap.add_account(user, password := "Pässwört-€-ü")
    endpoint = endpoint_from_dict("old", legacy_imap.connection("old"))
    client = open_session(endpoint, user, password, "source")
    assert client.select_folder("INBOX")[b"EXISTS"] == 0
    client.logout()
    with pytest.raises(AuthenticationFailed) as refused:
        open_session(endpoint, user, "Pässwört-€-X", "source")
    assert "Pässwört" not in str(refused.value) and "AUTHENTICATIONFAILED" in str(refused.value)
