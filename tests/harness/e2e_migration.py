"""One migration as an ops team runs it, on a real Airflow stack (see :mod:`harness.airflow_stack`).

:class:`MigrationScenario` prepares the world: mailboxes with mail on a legacy Dovecot (the old
provider), empty accounts on a modern one (the new provider), a DNS server whose MX of the
accounts' domain still names the old provider, and a plan file with its accounts CSV in a plans
directory. :meth:`MigrationScenario.prepare_airflow` then does, through the REST API, what ops do
in the UI: create the plan's two connections and unpause the DAG.
:meth:`MigrationScenario.run_migration` triggers a full run and plays the outside world: once
every account's ``wait_for_mx`` is deferred to the triggerer, new mail arrives on the source and
the MX flips; then it waits for the run to finish.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.airflow_stack import AirflowStack, StackError
from harness.corpus import make_message, seed_folder, snapshot
from harness.dns import DnsServer
from harness.dovecot import DovecotServer

OLD_MX, NEW_MX = "mx.oldprovider.example", "mx.newprovider.example"
SOURCE_FOLDERS = {"INBOX": 60, "INBOX.Sent": 15, "INBOX.Projects": 10, "INBOX.Projects.2024": 5}
#: source folder (legacy layout) -> destination folder (modern layout, special-use Sent).
FOLDER_MAP = {"INBOX": "INBOX", "INBOX.Sent": "Sent", "INBOX.Projects": "Projects",
              "INBOX.Projects.2024": "Projects/2024"}  # fmt: skip
NEW_MAIL = 4  # messages that arrive on the source between the initial and the delta copy
MAIL_SIZES = (1800, 3500, 9000, 26000)


@dataclass
class Account:
    source_user: str
    source_password: str
    destination_user: str
    destination_password: str

    @property
    def group_id(self) -> str:
        return self.source_user.replace("@", "_").replace(".", "_")


@dataclass
class RunRecord:
    """What a finished run looked like through the API, and what was seen while it ran."""

    run_id: str
    run: dict[str, Any]
    task_instances: dict[str, dict[str, Any]]
    #: the wait_for_mx task instances as the API showed them while deferred, by task id.
    deferred: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    #: "<task id> <state>" -> seconds after the trigger when the API first showed it.
    timeline: dict[str, float] = field(default_factory=dict)


class MigrationScenario:
    """Servers, accounts and a plan for one migration DAG ``migration_<name>``.

    :param name: the plan name (unique per scenario: accounts are named after it).
    :param plans_dir: the plans directory the Airflow stack reads (``MAILMIGRATE_PLANS_DIR``).
    :param plan_extra: more YAML for the end of the plan file.
    :param destination_port: where the destination connection points instead of the server's
        own port (a proxy in front of it).
    """

    def __init__(
        self,
        name: str,
        root: Path,
        plans_dir: Path,
        source: DovecotServer,
        destination: DovecotServer,
        accounts: int = 2,
        plan_extra: str = "",
        destination_port: int | None = None,
    ) -> None:
        self.name = name
        self.destination_port = destination_port
        self.plan_extra = plan_extra
        self.dag_id = f"migration_{name}"
        self.domain = f"{name.replace('_', '-')}.example"
        self.plans_dir = plans_dir
        self.source, self.destination = source, destination
        self.dns = DnsServer(root / "dns")
        self.accounts: list[Account] = []
        people = ["alice", "bob", "carol", "dave", "erin"]
        for number in range(accounts):
            user = f"{people[number % len(people)]}{number // len(people) or ''}@{self.domain}"
            account = Account(user, secrets.token_urlsafe(10), user, secrets.token_urlsafe(10))
            source.add_account(account.source_user, account.source_password)
            destination.add_account(account.destination_user, account.destination_password)
            self.accounts.append(account)
        self.source_conn_id, self.destination_conn_id = f"{name}_old", f"{name}_new"

    def start(self) -> None:
        """Seed the source mailboxes, start DNS (MX: old provider), write the plan."""
        for n, account in enumerate(self.accounts):
            client = self.source.client(account.source_user, account.source_password)
            for f, (folder, count) in enumerate(SOURCE_FOLDERS.items()):
                seed = 1_000_000 + n * 10_000 + f * 1000
                seed_folder(client, folder, [
                    (make_message(seed + i, size=MAIL_SIZES[i % len(MAIL_SIZES)]),
                     ("\\Seen",) if i % 3 else ("\\Flagged",),
                     datetime(2024, 3, 1 + i % 28, 9, i % 60, tzinfo=UTC))
                    for i in range(count)
                ])  # fmt: skip
            client.logout()
        self.dns.set_mx(self.domain, [OLD_MX], ttl=1)
        self.dns.start()
        self.plans_dir.mkdir(parents=True, exist_ok=True)
        csv = ["source_user,source_password,destination_user,destination_password"]
        csv += [f"{a.source_user},{a.source_password},{a.destination_user},{a.destination_password}"
                for a in self.accounts]  # fmt: skip
        (self.plans_dir / f"{self.name}_accounts.csv").write_text("\n".join(csv) + "\n")
        (self.plans_dir / f"{self.name}.yaml").write_text(
            f"name: {self.name}\n"
            f"source: {{connection: {self.source_conn_id}}}\n"
            f"destination: {{connection: {self.destination_conn_id}}}\n"
            f"accounts: {self.name}_accounts.csv\n"
            "mx:\n"
            f"  expect: [{NEW_MX}]\n"
            f'  resolvers: ["{self.dns.address}"]\n'
            f'  authoritative: ["{self.dns.address}"]\n'
            "  poke_interval: 2s\n"
            "  timeout: 30m\n"
            'delta: {timezone: Europe/Berlin, window: "any"}\n'
            f"parallel_accounts: {len(self.accounts)}\n"
            "retries: 1\n" + self.plan_extra
        )

    def stop(self) -> None:
        self.dns.stop()

    @property
    def secrets(self) -> list[str]:
        """Every password of the scenario: none may show up in logs, XCom or API answers."""
        own = [s for a in self.accounts for s in (a.source_password, a.destination_password)]
        return own + [self.source.master_password, self.destination.master_password]

    # -- through Airflow's REST API --------------------------------------------------------------

    def prepare_airflow(self, stack: AirflowStack) -> dict[str, Any]:
        """Create the two connections, wait for the DAG, unpause it; return the DAG as it was
        before unpausing."""
        api = stack.api()
        api.create_connection(self.source_conn_id, self.source.connection(self.source_conn_id))
        destination = self.destination.connection(self.destination_conn_id)
        destination["port"] = self.destination_port or destination["port"]
        api.create_connection(self.destination_conn_id, destination)
        dag = stack.wait_for_dag(self.dag_id)
        api.request("PATCH", f"/dags/{self.dag_id}", json={"is_paused": False})
        return dag

    def trigger(self, stack: AirflowStack, conf: dict[str, Any] | None = None) -> str:
        answer = stack.api().request(
            "POST",
            f"/dags/{self.dag_id}/dagRuns",
            json={"logical_date": None, "conf": conf or {}},
        )
        return answer["dag_run_id"]

    def finish(self, stack: AirflowStack, run_id: str, timeout: float) -> RunRecord:
        run = stack.wait_for_run(self.dag_id, run_id, timeout)
        return RunRecord(run_id, run, stack.api().task_instances(self.dag_id, run_id))

    def run_migration(self, stack: AirflowStack, timeout: float = 420) -> RunRecord:
        """Trigger a full run; flip the MX once every account waits in the triggerer; finish."""
        started = time.monotonic()
        run_id = self.trigger(stack)
        api = stack.api()
        waits = {f"{a.group_id}.wait_for_mx" for a in self.accounts}

        timeline: dict[str, float] = {}

        def all_deferred() -> dict[str, dict[str, Any]] | None:
            tis = api.task_instances(self.dag_id, run_id)
            for task_id, ti in tis.items():
                timeline.setdefault(f"{task_id} {ti['state']}", time.monotonic() - started)
            failed = {t: ti["state"] for t, ti in tis.items() if ti["state"] == "failed"}
            if failed:
                raise StackError(f"tasks failed before the MX change: {failed}")
            # Deferred, and its trigger taken up by a triggerer (then the API names that job).
            deferred = {
                t: tis[t]
                for t in waits
                if t in tis and tis[t]["state"] == "deferred" and tis[t]["triggerer_job"]
            }
            return deferred if len(deferred) == len(waits) else None

        try:
            deferred = stack.wait_for(
                all_deferred, timeout, "every wait_for_mx to run as a trigger in the triggerer"
            )
        except StackError as exc:
            states = {t: ti["state"] for t, ti in api.task_instances(self.dag_id, run_id).items()}
            raise StackError(f"task states: {states}\n{exc}") from None

        # Airflow 3.3 fails a deferred task whose trigger fires before the scheduler has
        # processed the executor's event of the deferring try (apache/airflow#72716). Real MX
        # changes come hours after the deferral; the test must wait for that event itself.
        instances = [f"task_id={ti['task_id']}, run_id={run_id}, map_index={ti['map_index']},"
                     for ti in deferred.values()]  # fmt: skip

        def deferrals_processed() -> bool:
            finished = stack.scheduler_lines("TaskInstance Finished:")
            return all(
                any(instance in line and "state=deferred" in line for line in finished)
                for instance in instances
            )

        stack.wait_for(deferrals_processed, 120, "the scheduler to process the deferrals")
        self.deliver_new_mail()
        self.dns.set_mx(self.domain, [NEW_MX], ttl=1)
        record = self.finish(stack, run_id, max(60.0, timeout - (time.monotonic() - started)))
        record.deferred = deferred
        record.seconds = time.monotonic() - started
        record.timeline = timeline
        return record

    # -- on the mail servers ---------------------------------------------------------------------

    def deliver_new_mail(
        self, accounts: list[Account] | None = None, count: int = NEW_MAIL, seed: int = 2_000_000
    ) -> None:
        """``count`` new messages into the INBOX of every account (or of ``accounts``)."""
        now = datetime.now(UTC).replace(microsecond=0)
        for n, account in enumerate(self.accounts):
            if accounts is not None and account not in accounts:
                continue
            client = self.source.client(account.source_user, account.source_password)
            seed_folder(
                client, "INBOX", [(make_message(seed + n * 100 + i), (), now) for i in range(count)]
            )
            client.logout()

    def destination_count(self, account: Account, folder: str = "INBOX") -> int:
        client = self.destination.client(account.destination_user, account.destination_password)
        try:
            if not client.folder_exists(folder):
                return 0
            return int(client.select_folder(folder, readonly=True)[b"EXISTS"])
        finally:
            client.logout()

    def assert_copied(self, stack: AirflowStack, run_id: str) -> None:
        """Every account is exact on the destination; the initial copy took the seeded mail and
        the delta the mail delivered at the MX flip (their XComs say so)."""
        total = sum(SOURCE_FOLDERS.values())
        for account in self.accounts:
            assert self.differences(account) == {}, account.source_user
            initial = xcom(stack, self.dag_id, run_id, f"{account.group_id}.initial_copy")
            delta = xcom(stack, self.dag_id, run_id, f"{account.group_id}.delta_copy")
            assert initial["totals"]["copied"] == total, initial
            assert delta["totals"]["copied"] == NEW_MAIL, delta

    def differences(self, account: Account) -> dict[str, str]:
        """Folders whose destination does not hold the source's messages exactly (empty: none)."""
        source = self.source.client(account.source_user, account.source_password)
        destination = self.destination.client(
            account.destination_user, account.destination_password
        )
        found = {}
        try:
            for source_folder, destination_folder in FOLDER_MAP.items():
                want, have = (
                    snapshot(source, source_folder),
                    snapshot(destination, destination_folder),
                )
                if want != have:
                    found[source_folder] = (
                        f"{sum(want.values())} messages on the source, {sum(have.values())} "
                        f"on the destination ({destination_folder}), "
                        f"{sum((want - have).values())} missing"
                    )
        finally:
            source.logout()
            destination.logout()
        return found


def xcom(stack: AirflowStack, dag_id: str, run_id: str, task_id: str) -> Any:
    """A task instance's return value through the REST API (``task_id``: or a step key,
    ``<account group id>.<step>``)."""
    return stack.api().xcom(dag_id, run_id, task_id)
