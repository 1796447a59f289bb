"""A plan driven through the `mailmigrate` command, for the state identity and verification tests:
one source account seeded with three folders, CSV rows the test can rewrite between passes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from harness.engine_helpers import assert_same_folders, rich_corpus, seed_account

MAILMIGRATE = Path(sys.executable).with_name("mailmigrate")
FOLDERS = {"INBOX": "INBOX", "INBOX.Projects": "Projects", "INBOX.Lists": "Lists"}


def seed_source(server, new_account, seed: int) -> tuple[str, str]:
    """A legacy-layout source account with INBOX (12 messages), Projects (4) and Lists (3)."""
    user, password = new_account(server)
    corpus = rich_corpus(seed)
    client = server.client(user, password)
    seed_account(client, {"INBOX": corpus[:12], "INBOX.Projects": corpus[30:34],
                          "INBOX.Lists": corpus[12:15]})  # fmt: skip
    client.logout()
    return user, password


class CliMigration:
    """A plan file, its accounts CSV and the environment the command needs.

    :param name: the plan name; :param state_dir: where the sync state lives.
    """

    def __init__(self, folder: Path, source, destination, *, name: str = "state13",
                 state_dir: Path | None = None, destination_port: int | None = None) -> None:  # fmt: skip
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.name = folder, name
        self.state_dir = state_dir or folder / "state"
        self.plan = folder / f"{name}.yaml"
        self.env = dict(os.environ)
        self.env["AIRFLOW_CONN_CLI_SRC"] = json.dumps(source.connection("cli_src"))
        target = destination.connection("cli_dst")
        if destination_port is not None:
            target["port"] = destination_port
        self.env["AIRFLOW_CONN_CLI_DST"] = json.dumps(target)

    def accounts(self, *rows: tuple[str, str, str, str], extra: str = "") -> None:
        """Write the CSV (source_user, source_password, destination_user, destination_password)."""
        (self.folder / f"{self.name}.csv").write_text(
            "source_user,source_password,destination_user,destination_password\n"
            + "".join(",".join(r) + "\n" for r in rows)
        )
        self.plan.write_text(
            f"name: {self.name}\nsource: {{connection: cli_src}}\n"
            f"destination: {{connection: cli_dst}}\naccounts: {self.name}.csv\n"
            f"state_dir: {self.state_dir}\n" + extra
        )

    def run(self, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
        """``mailmigrate COMMAND PLAN ARGS --json``: the process and its JSON summary."""
        done = subprocess.run(
            [str(MAILMIGRATE), args[0], str(self.plan), *args[1:], "--json"],
            capture_output=True, text=True, env=self.env, timeout=300,
        )  # fmt: skip
        return done, json.loads(done.stdout) if done.stdout.strip() else {}

    def copy(self, phase: str = "initial") -> tuple[subprocess.CompletedProcess, dict]:
        """One copy pass; the single account's JSON entry."""
        done, summary = self.run("copy", "--phase", phase)
        assert summary.get("accounts"), done.stderr
        return done, summary["accounts"][0]


def assert_migrated(source, source_account, destination, destination_account) -> None:
    """The three folders are identical on both sides (bytes, flags, dates, as multisets)."""
    src = source.client(*source_account)
    dst = destination.client(*destination_account)
    try:
        assert_same_folders(src, dst, FOLDERS)
    finally:
        src.logout()
        dst.logout()
