"""The ``mailmigrate`` command: validate a plan, test, copy and report accounts from a shell.

Human progress and logs go to stderr; ``--json`` puts one machine-readable summary on stdout.
Exit status: 0 all done, 1 some accounts failed, 2 bad input (invalid plan, unknown ``--account``,
a connection missing or malformed in the environment).

Connections are read from ``AIRFLOW_CONN_<ID>`` in Airflow's JSON form, the ids the plan names.
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mailmigrate.connections import Endpoint, endpoint_from_env
from mailmigrate.errors import BadInput, ConnectionConfigError, MailboxError, PlanError
from mailmigrate.mailbox import MAIL_KINDS, not_for_mail
from mailmigrate.plan import Account, Plan, load_plan
from mailmigrate.redact import redact

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

log = logging.getLogger("mailmigrate.cli")


def _debug() -> bool:
    return os.environ.get("MAILMIGRATE_DEBUG", "") not in ("", "0")


def _setup_logging() -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname).1s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if _debug():
        # Only our own loggers: protocol libraries may log credentials at DEBUG.
        logging.getLogger("mailmigrate").setLevel(logging.DEBUG)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _emit_json(data: dict[str, Any]) -> None:
    try:
        json.dump(data, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); keep Python from complaining again at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _load(path: str) -> Plan:
    try:
        return load_plan(path)
    except PlanError as exc:
        raise BadInput([str(problem) for problem in exc.problems], exc.problems) from None


def _select(plan: Plan, wanted: Sequence[str] | None) -> list[Account]:
    """The accounts named by ``--account`` (by source user), or all of them."""
    if not wanted:
        return list(plan.accounts)
    users = [account.source_user for account in plan.accounts]
    unknown = [user for user in wanted if user not in users]
    if unknown:
        lines = []
        for user in unknown:
            close = difflib.get_close_matches(user, users, n=1)
            hint = f'; did you mean "{close[0]}"?' if close else ""
            lines.append(f"--account {user}: no account with this source_user in {plan.path}{hint}")
        raise BadInput(lines, plan=plan.name)
    selected = set(wanted)
    return [account for account in plan.accounts if account.source_user in selected]


def _endpoints(plan: Plan) -> tuple[Endpoint, Endpoint]:
    endpoints, lines = [], []
    for side, conn_id in (
        ("source", plan.source_connection),
        ("destination", plan.destination_connection),
    ):
        try:
            endpoint = endpoint_from_env(conn_id)
            if endpoint.kind not in MAIL_KINDS:
                raise not_for_mail(endpoint)
            endpoints.append(endpoint)
        except ConnectionConfigError as exc:
            lines.append(f"{side} {exc}")
    if lines:
        raise BadInput(lines, plan=plan.name)
    return endpoints[0], endpoints[1]


def _engine(command: str, phase: str | None) -> Callable[..., Any]:
    """The engine function of a command, bound to the phase for ``copy``; imported on use:
    ``mailmigrate validate`` needs none of them (22 ms of every validate, measured)."""
    if command == "test":
        from mailmigrate.sync import preflight

        return preflight
    if command == "copy":
        from mailmigrate.sync import copy_account

        return lambda plan, account, source, destination: copy_account(
            plan, account, source, destination, phase=phase
        )
    from mailmigrate.report import account_report

    return account_report


def _run_accounts(args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    plan = _load(args.plan)
    accounts = _select(plan, args.account)
    source, destination = _endpoints(plan)
    phase = getattr(args, "phase", None)
    try:
        run = _engine(args.command, phase)
    except ImportError as exc:
        _say(f"{args.command}: the engine cannot be loaded ({exc}); reinstall mailmigrate")
        return EXIT_FAILED, {
            "plan": plan.name,
            "command": args.command,
            "ok": False,
            "error": str(exc),
        }

    def one(account: Account) -> dict[str, Any]:
        user = account.source_user
        log.info("%s: %s%s", user, args.command, f" ({phase})" if phase else "")
        secrets = (
            account.source_password,
            account.destination_password,
            source.password,
            destination.password,
        )
        entry: dict[str, Any] = {"source_user": user}
        try:
            result = run(plan, account, source, destination)
        except MailboxError as exc:
            error = redact(str(exc), secrets)
            _say(f"{user}: error: {error}")
            entry.update(ok=False, error=error, retryable=exc.retryable)
        except Exception as exc:  # one broken account must not stop the others
            if _debug():
                log.exception("%s: unexpected error", user)
            error = redact(f"{exc.__class__.__name__}: {exc}", secrets)
            _say(f"{user}: unexpected error: {error}")
            entry.update(ok=False, error=error)
        else:
            for line in result.summary_lines():
                _say(f"{user}: {redact(str(line), secrets)}")
            entry["ok"] = bool(result.ok)
            entry.update({k: v for k, v in result.to_dict().items() if k not in entry})
        return entry

    entries = _each_account(one, accounts, plan.parallel_accounts)
    failed = [entry["source_user"] for entry in entries if not entry["ok"]]
    done = len(entries) - len(failed)
    _say(
        f"{args.command}: {done} of {len(entries)} accounts ok"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    summary: dict[str, Any] = {"plan": plan.name, "command": args.command}
    if phase:
        summary["phase"] = phase
    summary.update(ok=not failed, accounts=entries)
    return (EXIT_FAILED if failed else EXIT_OK), summary


def _each_account(
    one: Callable[[Account], dict[str, Any]], accounts: list[Account], parallel: int
) -> list[dict[str, Any]]:
    """``one(account)`` for every account, ``parallel`` at a time (the plan's
    ``parallel_accounts``, as in the DAG); the entries in the accounts' order."""
    workers = max(1, min(parallel, len(accounts)))
    if workers == 1:
        return [one(account) for account in accounts]
    from concurrent.futures import ThreadPoolExecutor  # only a parallel run needs it

    pool = ThreadPoolExecutor(workers, thread_name_prefix="account")
    try:
        return list(pool.map(one, accounts))
    except KeyboardInterrupt:
        # The copies still running cannot be stopped from here and every pass is safe to
        # interrupt: leave without waiting for them (a re-run carries on).
        _say("interrupted; run the same command again to carry on")
        sys.stderr.flush()
        os._exit(130)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _validate(args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    plan = _load(args.plan)
    count = len(plan.accounts)
    _say(f"plan OK: {count} account{'s' if count != 1 else ''} (DAG {plan.dag_id})")
    accounts = [
        {
            "source_user": a.source_user,
            "destination_user": a.destination_user,
            "mx_domain": a.mx_domain,
        }
        for a in plan.accounts
    ]
    return EXIT_OK, {
        "plan": plan.name,
        "command": "validate",
        "ok": True,
        "dag_id": plan.dag_id,
        "accounts": accounts,
        "problems": [],
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailmigrate",
        description="Mailbox migrations from a plan file: validate, test, copy, report.",
        epilog="Connections: AIRFLOW_CONN_<ID> in Airflow's JSON form for the ids the plan names. "
        "Exit status: 0 all done, 1 some accounts failed, 2 bad input.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, accounts: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("plan", metavar="PLAN", help="the plan file (YAML)")
        if accounts:
            sub.add_argument(
                "--account",
                action="append",
                metavar="USER",
                help="only this account, by source user (repeatable; default: all)",
            )
        sub.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
        return sub

    command(
        "validate",
        "check a plan and its accounts; print every problem as file:line: message",
        accounts=False,
    )
    command("test", "log in on both sides and check each account is ready to migrate")
    copy = command("copy", "copy accounts: the initial pass or a delta pass")
    copy.add_argument(
        "--phase", required=True, choices=("initial", "delta"), help="which pass to run"
    )
    command("report", "compare source and destination, folder by folder")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    _setup_logging()
    handler = _validate if args.command == "validate" else _run_accounts
    try:
        status, summary = handler(args)
    except BadInput as exc:
        for line in exc.lines:
            _say(line)
        status = EXIT_BAD_INPUT
        summary = {
            "plan": exc.plan,
            "command": args.command,
            "ok": False,
            "problems": [
                {"file": p.file, "line": p.line, "message": p.message} for p in exc.problems
            ]
            or [{"file": None, "line": None, "message": line} for line in exc.lines],
        }
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except Exception as exc:  # a bug, not bad input: one line, the traceback only when debugging
        if _debug():
            log.exception("unexpected error")
        _say(f"{args.command}: unexpected error: {exc.__class__.__name__}: {exc}")
        status, summary = (
            EXIT_FAILED,
            {"plan": None, "command": args.command, "ok": False, "error": str(exc)},
        )
    if args.json:
        _emit_json(summary)
    return status


if __name__ == "__main__":
    sys.exit(main())
