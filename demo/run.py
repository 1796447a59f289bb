"""``make demo``: a whole migration on this machine, watched in the Airflow UI.

Starts two local IMAP servers (an old provider with the legacy ``INBOX.`` layout and demo
mailboxes, a new provider with the modern layout and empty accounts), a local DNS server that
answers the demo domain's MX with the old provider's host, and Airflow (``airflow standalone``,
SQLite, in ``.demo/airflow``) with a demo plan. Then it prints the UI address.

Calendars and contacts move too: a Radicale CalDAV/CardDAV server on each side, alice's old one
holding a calendar (a recurring meeting across a DST change, an all-day event, a floating event),
a second calendar and an address book; the plan's ``kinds: [mail, calendars, contacts]``.

``make demo-flip-mx`` (in a second terminal) delivers a few new messages to the old provider
and switches the demo domain's MX to the new provider, so ``wait_for_mx`` releases and
``delta_copy`` picks the new mail up. ``make demo-late-mail`` then delivers mail to the old
provider after the flip, as senders retrying an old MX do: ``migration_demo_deltas`` copies it in
its next run (every minute in the demo), and each mailbox turns "done" once no new mail has come
for three minutes. Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / ".demo"
FLIP_REQUEST = DEMO / "flip-mx.request"
LATE_REQUEST = DEMO / "late-mail.request"
sys.path.insert(0, str(ROOT / "tests"))

from harness.corpus import make_message, seed_folder  # noqa: E402
from harness.dns import DnsServer  # noqa: E402
from harness.dovecot import DovecotServer, free_port  # noqa: E402
from harness.groupware_corpus import populate  # noqa: E402
from harness.radicale import RadicaleServer  # noqa: E402

from mailmigrate.groupware.dav import DavAccount  # noqa: E402

DOMAIN = "demo.example"
OLD_MX, NEW_MX = "mx.oldprovider.example", "mx.newprovider.example"
ACCOUNTS = [  # (address, password, messages): calendars and contacts log in with their own
    ("alice@demo.example", "alice-demo-pw", 400),
    ("bob@demo.example", "bob-demo-pw", 250),
    ("carol@demo.example", "carol-demo-pw", 150),
]
DEMO_MESSAGES_PER_SECOND = 5  # per account: alice's initial copy takes about 80 s
FOLDERS = [
    "INBOX",
    "INBOX.Sent",
    "INBOX.Drafts",
    "INBOX.Trash",
    "INBOX.Projects",
    "INBOX.Projects.2024",
]


def say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def seed_mailboxes(source: DovecotServer, destination: DovecotServer) -> None:
    base = datetime(2024, 1, 8, 9, 0, tzinfo=UTC)
    for n, (address, password, count) in enumerate(ACCOUNTS):
        source.add_account(address, password or f"{address}-src")
        destination.add_account(address, password or f"{address}-dst")
        client = source.master_client(address)
        for f, folder in enumerate(FOLDERS):
            share = count // 2 if folder == "INBOX" else count // (2 * (len(FOLDERS) - 1))
            messages = [
                (make_message(n * 100_000 + f * 1000 + i, size=1500 + (i * 7919) % 60_000),
                 ("\\Seen",) if i % 3 else (), base + timedelta(hours=i))
                for i in range(share)
            ]  # fmt: skip
            seed_folder(client, folder, messages)
        client.logout()
        say(f"seeded {address}: {count} messages in {len(FOLDERS)} folders")


def seed_groupware(source: RadicaleServer, destination: RadicaleServer) -> None:
    """Every account on both DAV servers; alice's old one with calendars and an address book."""
    for address, password, _ in ACCOUNTS:
        endpoint = source.add_user(address, password)
        destination.add_user(address, password)
        if address.startswith("alice@"):
            account = DavAccount(endpoint)
            try:
                hrefs = populate(account)
            finally:
                account.close()
            say(f"seeded {address}: calendars and an address book ({', '.join(hrefs)})")


def dav_connection(server: RadicaleServer) -> str:
    """A DAV server as an Airflow connection in JSON form (plain HTTP on loopback)."""
    return json.dumps({"conn_type": "dav", "host": server.host, "port": server.port,
                       "extra": {"security": "none"}})  # fmt: skip


def write_plan(dns: DnsServer) -> Path:
    plans = DEMO / "plans"
    plans.mkdir(parents=True, exist_ok=True)
    rows = ["source_user,source_password,destination_user,destination_password"]
    rows += [f"{a},{p or ''},{a},{p or ''}" for a, p, _ in ACCOUNTS]
    (plans / "demo_accounts.csv").write_text("\n".join(rows) + "\n")
    plan = plans / "demo.yaml"
    plan.write_text(
        "# The demo plan written by `make demo`.\n"
        "name: demo\n"
        "source: {connection: demo_old}\n"
        "destination: {connection: demo_new}\n"
        "accounts: demo_accounts.csv\n"
        "kinds: [mail, calendars, contacts]\n"
        "groupware: {source: {connection: demo_dav_old}, destination: {connection: demo_dav_new}}\n"
        "mx:\n"
        f"  expect: [{NEW_MX}]\n"
        f'  resolvers: ["{dns.address}"]\n'
        f'  authoritative: ["{dns.address}"]\n'
        "  poke_interval: 10s\n"
        "  timeout: 1d\n"
        "delta:\n"
        "  timezone: Europe/Berlin\n"
        '  window: "any"\n'
        "  # Compressed for the demo (real plans: the defaults, 48h and 7d, once per window).\n"
        "  repeat: 1m\n"
        "  quiet_period: 3m\n"
        "  max_after_mx: 30m\n"
        "parallel_accounts: 2\n"
        "retries: 2\n"
        "# Slow on purpose: long enough to watch a copy run and the time-left estimate move.\n"
        f"copy: {{messages_per_second: {DEMO_MESSAGES_PER_SECOND}}}\n"
    )
    return plan


def airflow_environment(source: DovecotServer, destination: DovecotServer, port: int,
                        dav: tuple[RadicaleServer, RadicaleServer]) -> dict:  # fmt: skip
    env = dict(os.environ)
    env.update(
        AIRFLOW_HOME=str(DEMO / "airflow"),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="10",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",  # its children
        MAILMIGRATE_PLANS_DIR=str(DEMO / "plans"),
        MAILMIGRATE_STATE_DIR=str(DEMO / "state"),
        AIRFLOW_CONN_DEMO_OLD=json.dumps(source.connection("demo_old")),
        AIRFLOW_CONN_DEMO_NEW=json.dumps(destination.connection("demo_new")),
        AIRFLOW_CONN_DEMO_DAV_OLD=dav_connection(dav[0]),
        AIRFLOW_CONN_DEMO_DAV_NEW=dav_connection(dav[1]),
    )
    return env


def wait_for_api(port: int, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/api/v2/monitor/health"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"airflow standalone stopped; see {DEMO / 'airflow.log'}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(2)
    raise SystemExit(f"Airflow did not answer on {url}; see {DEMO / 'airflow.log'}")


def flip(source: DovecotServer, dns: DnsServer) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    for n, (address, _, _) in enumerate(ACCOUNTS):
        client = source.master_client(address)
        seed_folder(
            client, "INBOX", [(make_message(900_000 + n * 100 + i), (), now) for i in range(5)]
        )
        client.logout()
    say("delivered 5 new messages to every old mailbox")
    dns.set_mx(DOMAIN, [NEW_MX], ttl=5)
    say(f"MX of {DOMAIN} now points to {NEW_MX}: wait_for_mx releases within a poke or two")


def late_mail(source: DovecotServer) -> None:
    """Mail reaching the old provider after the MX flip (a sender retrying the old MX)."""
    now = datetime.now(UTC).replace(microsecond=0)
    for n, (address, _, _) in enumerate(ACCOUNTS[:2]):
        client = source.master_client(address)
        seed_folder(
            client, "INBOX", [(make_message(950_000 + n * 100 + i), (), now) for i in range(3)]
        )
        client.logout()
    say(f"delivered 3 late messages to {ACCOUNTS[0][0]} and {ACCOUNTS[1][0]} on the old provider")


def stop_airflow(pid: int) -> None:
    """Stop ``airflow standalone`` and its children (its own process group)."""
    try:
        os.killpg(pid, signal.SIGTERM)
        for _ in range(150):
            time.sleep(0.1)
            os.killpg(pid, 0)
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop_leftovers() -> None:
    """Stop what an earlier demo left running if it did not end cleanly."""
    pid_file = DEMO / "airflow.pid"
    if pid_file.exists():
        stop_airflow(int(pid_file.read_text()))
    subprocess.run(["pkill", "-f", "--", f"-c {DEMO}/"], check=False)
    subprocess.run(["pkill", "-f", "--", f"--conf-file={DEMO}/"], check=False)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (kill, a closed terminal's session) stops as Ctrl-C does


def run(port: int) -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    stop_leftovers()
    if DEMO.exists():
        shutil.rmtree(DEMO)
    DEMO.mkdir()
    servers = [
        DovecotServer(DEMO / "old-provider", "legacy"),
        DovecotServer(DEMO / "new-provider", "modern"),
    ]
    dav = (RadicaleServer(DEMO / "old-dav"), RadicaleServer(DEMO / "new-dav"))
    dns = DnsServer(DEMO / "dns")
    airflow = None
    try:
        for server in servers:
            server.start()
        source, destination = servers
        say(
            f"old provider IMAP on 127.0.0.1:{source.port}, new provider on 127.0.0.1:{destination.port}"
        )
        seed_mailboxes(source, destination)
        for server in dav:
            server.start()
        say(f"old provider CalDAV/CardDAV (Radicale) on {dav[0].url}, new one on {dav[1].url}")
        seed_groupware(*dav)
        dns.set_mx(DOMAIN, [OLD_MX], ttl=5)
        dns.start()
        say(f"DNS on {dns.address}: MX {DOMAIN} -> {OLD_MX}")
        plan = write_plan(dns)
        say(f"plan {plan.relative_to(ROOT)}")
        log = open(DEMO / "airflow.log", "wb")  # noqa: SIM115 - open for the process's lifetime
        airflow = subprocess.Popen(
            [str(Path(sys.executable).with_name("airflow")), "standalone"],
            env=airflow_environment(source, destination, port, dav),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        (DEMO / "airflow.pid").write_text(str(airflow.pid))
        say("starting Airflow (api-server, scheduler, dag-processor, triggerer)...")
        wait_for_api(port, airflow)
        say(
            f"Airflow UI: http://127.0.0.1:{port}/dags/migration_demo  (no login needed in the demo)"
        )
        say("trigger migration_demo there; when cutover_ready is green run, in another terminal:")
        say("    make demo-flip-mx")
        say("Ctrl-C stops everything.")
        while airflow.poll() is None:
            if FLIP_REQUEST.exists():
                flip(source, dns)
                FLIP_REQUEST.unlink()
            if LATE_REQUEST.exists():
                late_mail(source)
                LATE_REQUEST.unlink()
            time.sleep(1)
        say(f"Airflow stopped; see {DEMO / 'airflow.log'}")
    except KeyboardInterrupt:
        say("stopping")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the cleanup
        if airflow is not None:
            stop_airflow(airflow.pid)
        dns.stop()
        for server in (*servers, *dav):
            server.stop()
        say("stopped")


def request(path: Path, done: str) -> None:
    """Ask the running demo to do something (it polls for ``path``), then print ``done``."""
    if not (DEMO / "airflow.log").exists():
        raise SystemExit("no demo is running: start it with `make demo`")
    path.touch()
    for _ in range(60):
        if not path.exists():
            print(f"[demo] {done}")
            return
        time.sleep(1)
    raise SystemExit("the demo did not answer; is `make demo` still running?")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="demo", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["run", "flip-mx", "late-mail"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", 8080)))
    args = parser.parse_args(argv)
    if args.command == "flip-mx":
        request(FLIP_REQUEST, "MX flipped and new mail delivered; watch wait_for_mx and delta_copy")
    elif args.command == "late-mail":
        request(LATE_REQUEST, "late mail delivered; watch migration_demo_deltas copy it")
    else:
        run(args.port if args.port else free_port())


if __name__ == "__main__":
    main()
