"""Running the two tools under measurement: the ``mailmigrate`` CLI and mbsync.

Each run is one child process; its wall time is taken around the process and its peak RSS is the
child's own ``ru_maxrss`` (see :func:`measure`), so every figure is the copy's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MBSYNC = "/usr/bin/mbsync"
REPO = Path(__file__).resolve().parents[1]
MAILMIGRATE = [sys.executable, "-m", "mailmigrate.cli"]


@dataclass(frozen=True)
class Login:
    """One account on one test server, logging in with its own password."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)


@dataclass
class Run:
    """One measured process run.

    :param seconds: wall time of the process, start to exit.
    :param engine_seconds: the pass time the engine reports itself (without interpreter start).
    :param verify_seconds: of that, the engine's check that the destination holds every message
        the pass selected (listing the destination folders by identity).
    :param peak_rss_mb: the child's peak resident set size.
    :param cpu_seconds: the child's user + system CPU time.
    :param server_cpu_seconds: CPU time both Dovecot servers spent meanwhile (their finished
        processes, as their masters account them).
    """

    tool: str
    step: str
    seconds: float
    peak_rss_mb: float
    exit_code: int
    cpu_seconds: float | None = None
    server_cpu_seconds: float | None = None
    engine_seconds: float | None = None
    verify_seconds: float | None = None
    copied: int | None = None
    copied_bytes: int | None = None
    output_tail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "output_tail" or self.exit_code}


TIME = "/usr/bin/time"  # GNU time: a small parent, so the child's peak RSS is its own


def measure(command: list[str], env: dict[str, str], workdir: Path, name: str) -> tuple:
    """Run ``command``; ``(exit code, wall seconds, peak RSS MB, CPU seconds, stdout, stderr)``.

    The peak RSS is taken by GNU time around the command, not by ``wait4`` here: Linux carries a
    process's peak RSS across fork and exec, so a child of this (corpus-holding) process would
    report at least our own peak. GNU time is tiny, so its child starts from almost nothing.
    """
    out, err, usage = (workdir / f"{name}.{ext}" for ext in ("out", "err", "rusage"))
    wrapped = (
        [TIME, "-f", "%M %U %S", "-o", str(usage), *command] if os.path.exists(TIME) else command
    )
    with out.open("wb") as stdout, err.open("wb") as stderr:
        started = time.monotonic()
        process = subprocess.run(wrapped, env=env, cwd=workdir, stdout=stdout, stderr=stderr,
                                 stdin=subprocess.DEVNULL, check=False)  # fmt: skip
        seconds = time.monotonic() - started
    try:
        peak_kb, user, system = (float(x) for x in usage.read_text().splitlines()[-1].split())
    except (OSError, ValueError, IndexError):
        peak_kb = user = system = float("nan")
    return (
        process.returncode,
        seconds,
        peak_kb / 1024,
        user + system,
        out.read_text(errors="replace"),
        err.read_text(errors="replace"),
    )


# -- the engine ------------------------------------------------------------------------------
def connection_json(login: Login) -> str:
    """An Airflow connection (JSON form) to the login's server with the account's own logins."""
    return json.dumps(
        {"conn_type": "imap", "host": login.host, "port": login.port,
         "extra": {"security": "none", "auth": "login"}}
    )  # fmt: skip


def write_plan(
    workdir: Path,
    pairs: list[tuple[Login, Login]],
    copy: dict[str, Any] | None = None,
    *,
    name: str = "plan",
    parallel_accounts: int | None = None,
    plan_name: str = "bench",
) -> Path:
    """``<workdir>/<name>.yaml``: plan ``plan_name`` over ``pairs`` of (source, destination)
    logins, its state under ``workdir``."""
    lines = [
        f"name: {plan_name}",
        "source: {connection: bench_src}",
        "destination: {connection: bench_dst}",
        f"parallel_accounts: {parallel_accounts or max(1, len(pairs))}",
        "delta: {window: any}",
        "state_dir: state",
        "accounts:",
    ]
    for src, dst in pairs:
        lines.append(
            f"  - {{source_user: {json.dumps(src.user)}, source_password: {json.dumps(src.password)},"
            f" destination_user: {json.dumps(dst.user)},"
            f" destination_password: {json.dumps(dst.password)}}}"
        )
    if copy:
        lines.append("copy:")
        lines += [f"  {key}: {json.dumps(value)}" for key, value in copy.items()]
    path = workdir / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def engine_env(source: Login | None = None, destination: Login | None = None) -> dict[str, str]:
    """The CLI's environment: the two connections, and byte-code caching as in any installed
    deployment (this machine sets PYTHONDONTWRITEBYTECODE, which made every engine process
    compile the engine's modules again, 60 ms; ``__pycache__`` is git-ignored)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    if source and destination:
        env["AIRFLOW_CONN_BENCH_SRC"] = connection_json(source)
        env["AIRFLOW_CONN_BENCH_DST"] = connection_json(destination)
    env["PYTHONPATH"] = str(REPO)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def warm_up() -> None:
    """Import the engine once, untimed, so that every measured process finds its byte code."""
    modules = "mailmigrate.cli, mailmigrate.sync, mailmigrate.mailbox.imap, mailmigrate.report"
    subprocess.run([sys.executable, "-c", f"import {modules}"], env=engine_env(), check=False)


def run_engine(
    workdir: Path,
    source: Login,
    destination: Login,
    phase: str,
    step: str,
    *,
    copy: dict[str, Any] | None = None,
    profile: Path | None = None,
) -> Run:
    """One ``mailmigrate copy --phase PHASE`` of ``workdir/plan.yaml`` (written for the one
    account pair unless it is there already); its state in ``workdir``. With several accounts,
    the copied counts are their sums and the pass time the longest.

    :param profile: profile the whole process into this file: a py-spy flame graph of every
        thread when it ends in ``.svg``, else a cProfile of the main thread.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    plan = workdir / "plan.yaml"
    if not plan.exists():
        write_plan(workdir, [(source, destination)], copy)
    command = list(MAILMIGRATE)
    if profile and profile.suffix == ".svg":
        command = [str(Path(sys.executable).with_name("py-spy")), "record", "--rate", "250",
                   "--output", str(profile), "--", *MAILMIGRATE]  # fmt: skip
    elif profile:
        command = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "mailmigrate.cli"]
    command += ["copy", str(plan), "--phase", phase, "--json"]
    code, seconds, rss, cpu, out, err = measure(
        command, engine_env(source, destination), workdir, step
    )
    run = Run("engine", step, seconds, rss, code, cpu_seconds=cpu, output_tail=err[-2000:])
    try:
        summary = json.loads(out[out.find("{") : out.rfind("}") + 1])  # py-spy also talks here
        accounts = summary["accounts"]
        run.engine_seconds = max(float(a.get("seconds") or 0.0) for a in accounts)
        run.verify_seconds = max(float(a.get("verify_seconds") or 0.0) for a in accounts)
        run.copied = sum(int(a["totals"]["copied"]) for a in accounts)
        run.copied_bytes = sum(int(a["totals"]["copied_bytes"]) for a in accounts)
        if not all(a.get("ok") for a in accounts):
            run.exit_code = run.exit_code or 1
    except (ValueError, KeyError, IndexError, TypeError):
        run.exit_code = run.exit_code or 1
    return run


# -- mbsync ----------------------------------------------------------------------------------
MBSYNC_CONFIG = """\
# Generated by bench/tools.py: {source_user} -> {destination_user}
IMAPAccount far
Host {source_host}
Port {source_port}
User {source_user}
Pass {source_password}
AuthMechs LOGIN
SSLType None

IMAPStore far
Account far

IMAPAccount near
Host {destination_host}
Port {destination_port}
User {destination_user}
Pass {destination_password}
AuthMechs LOGIN
SSLType None

IMAPStore near
Account near

Channel bench
Far :far:
Near :near:
Patterns *{exclude}
Create Near
Sync Pull
CopyArrivalDate yes
SyncState {state}/
"""


def write_mbsync_config(
    workdir: Path, source: Login, destination: Login, exclude: tuple[str, ...] = ()
) -> Path:
    """The mbsync config of one account pair; its sync state lives in ``workdir/mbsync-state``.

    :param exclude: destination-only folders (the modern server's auto-created special-use
        folders the source lacks): without ``Create Far`` mbsync fails on them otherwise.
    """
    state = workdir / "mbsync-state"
    state.mkdir(parents=True, exist_ok=True)
    for login in (source, destination):
        if any(c in login.password for c in ' "\\'):
            raise ValueError(f"{login.user}: password unsuitable for an mbsync config")
    path = workdir / "mbsyncrc"
    path.write_text(
        MBSYNC_CONFIG.format(
            source_host=source.host,
            source_port=source.port,
            source_user=source.user,
            source_password=source.password,
            destination_host=destination.host,
            destination_port=destination.port,
            destination_user=destination.user,
            destination_password=destination.password,
            state=state,
            exclude="".join(f" !{name}" for name in exclude),
        )  # fmt: skip
    )
    path.chmod(0o600)
    return path


def run_mbsync(
    workdir: Path, source: Login, destination: Login, step: str, exclude: tuple[str, ...] = ()
) -> Run:
    """One ``mbsync bench`` run (same config, same state for the initial run and the deltas)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "mbsyncrc"
    if not config.exists():
        write_mbsync_config(workdir, source, destination, exclude)
    env = dict(os.environ, HOME=str(workdir))
    command = [MBSYNC, "-q", "-c", str(config), "bench"]
    code, seconds, rss, cpu, _out, err = measure(command, env, workdir, step)
    return Run("mbsync", step, seconds, rss, code, cpu_seconds=cpu, output_tail=err[-2000:])
