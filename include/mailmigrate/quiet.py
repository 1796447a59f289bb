"""After-hours deltas until the old mailbox has gone quiet: each account's delta record and the
decision that an account is done.

After the MX change, mail keeps reaching the old server for days (senders retry queued mail for
up to five days, resolvers hold old records, users keep old clients connected). Scheduled delta
passes copy it; this module remembers, per account, what they saw, and decides when to stop.

The record (:class:`DeltaRecord`) is one small JSON file per account under
``<state_dir>/<plan>/deltas/``, next to the sync state and shared between workers the same way.
It is written whole and renamed into place (a reader never sees half a file), and every
read-modify-write holds an exclusive ``flock`` on the account's lock file, so the MX sensor of the
main DAG and a scheduled delta never lose each other's update. :func:`exclusive_pass` holds a
second lock for the length of a copy pass: two passes over one account never run at once.

Arrivals are *observed*, not dated: a pass that copied new messages (``copied`` > 0 in any
folder; flag changes, deletions and messages already there do not count) saw mail that arrived
before it ended, so the end of that pass is the latest the mail can have arrived and the moment
the quiet period counts from. A message's INTERNALDATE is no arrival time: a client sets it
freely (a move keeps the original date, a client files sent mail with its own clock).

Invariants of :func:`after_pass`:

- before the MX release nothing is ever done (nightly deltas before the change only keep the
  destination fresh);
- an account is done only after a pass that went through without errors and whose check found
  every message it selected on the destination (``ok``): that pass is the final verification;
- quiet: that pass found nothing new and started at least ``quiet_period`` after the last
  observed arrival (or after the release, when no pass after it found any);
- maximum: that pass started at least ``max_after_mx`` after the release (a warning: the account
  was still receiving mail, or not quiet long enough);
- done is final: later calls leave a done record unchanged.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from mailmigrate.errors import AccountError
from mailmigrate.state import default_state_dir

if TYPE_CHECKING:
    from mailmigrate.plan import Plan

DEFAULT_QUIET_PERIOD = 48 * 3600.0  # seconds
DEFAULT_MAX_AFTER_MX = 7 * 86400.0  # seconds
QUIET = "quiet"
MAXIMUM = "maximum"


def utcnow() -> dt.datetime:
    """The clock the Airflow layer notes passes with (tests replace it to let days pass)."""
    return dt.datetime.now(dt.UTC)


class RecordError(AccountError):
    """A delta record that cannot be read (not JSON, not a record), naming the file."""


class AccountBusy(AccountError):
    """Another copy pass over the same account is running: worth another try later."""

    retryable = True


@dataclass
class DeltaRecord:
    """What the deltas of one account saw. Times are aware UTC datetimes (``None``: not yet).

    :attr released_at: when the MX wait of the main DAG released for this account.
    :attr handed_over_at: when the main DAG's first delta after the release finished; from then
        on the scheduled deltas take the account over.
    :attr last_delta_at: when the last delta pass (any, before or after the release) started.
    :attr last_delta_ok: whether it went through and its check found everything.
    :attr last_arrival_at: the end of the last pass after the release that copied new messages.
    :attr arrivals: new messages the passes after the release copied, in total.
    :attr deltas: passes after the release, main DAG's included.
    :attr done_reason: ``"quiet"`` or ``"maximum"``.
    """

    account: str
    initial_done_at: dt.datetime | None = None
    released_at: dt.datetime | None = None
    handed_over_at: dt.datetime | None = None
    last_delta_at: dt.datetime | None = None
    last_delta_ok: bool | None = None
    last_arrival_at: dt.datetime | None = None
    arrivals: int = 0
    deltas: int = 0
    done_at: dt.datetime | None = None
    done_reason: str | None = None
    warning: str | None = None
    notified_at: dt.datetime | None = None

    @property
    def done(self) -> bool:
        return self.done_at is not None

    @property
    def quiet_since(self) -> dt.datetime | None:
        """The last observed arrival after the release, else the release itself."""
        return self.last_arrival_at or self.released_at

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, dt.datetime):
                data[key] = value.astimezone(dt.UTC).isoformat()
        data["quiet_since"] = _iso(self.quiet_since)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> DeltaRecord:
        known = {f.name: f for f in fields(cls)}
        values: dict[str, object] = {}
        for key, value in data.items():
            if key not in known:
                continue  # derived (quiet_since) or written by a newer version
            if key.endswith("_at") and value is not None:
                value = dt.datetime.fromisoformat(str(value))
            values[key] = value
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Outcome:
    """What :func:`after_pass` decided: ``finished`` only on the call that made the record done."""

    finished: bool
    reason: str | None = None
    warning: str | None = None


def state_dir_of(plan: Plan) -> Path:
    """Where a plan's state lives (as :func:`mailmigrate.sync.copy_account` finds it)."""
    return Path(plan.state_dir or default_state_dir())


def record_dir(state_dir: Path, plan: str) -> Path:
    return Path(state_dir) / plan / "deltas"


def record_path(state_dir: Path, plan: str, account: str) -> Path:
    """``<state_dir>/<plan>/deltas/<user>.<hash>.json``; the hash keeps two users whose names
    differ only in characters unsafe in file names apart."""
    safe = re.sub(r"[^\w.@-]", "_", account)
    digest = hashlib.sha256(account.encode()).hexdigest()[:12]
    return record_dir(state_dir, plan) / f"{safe}.{digest}.json"


def load(state_dir: Path, plan: str, account: str) -> DeltaRecord:
    """The account's record; an empty one when no pass has written it yet.

    :raises RecordError: the file exists but is not a record.
    """
    path = record_path(state_dir, plan, account)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return DeltaRecord(account)
    try:
        record = DeltaRecord.from_dict(json.loads(text))
    except (ValueError, TypeError) as exc:
        raise RecordError(f"{account}: the delta record {path} cannot be read: {exc}") from None
    if record.account != account:
        raise RecordError(f"{account}: the delta record {path} names {record.account!r}")
    return record


def load_all(state_dir: Path, plan: str, accounts: Iterable[str]) -> dict[str, DeltaRecord]:
    return {account: load(state_dir, plan, account) for account in accounts}


def update(
    state_dir: Path, plan: str, account: str, change: Callable[[DeltaRecord], object]
) -> DeltaRecord:
    """Read the record, apply ``change`` to it and write it back, under the account's lock."""
    path = record_path(state_dir, plan, account)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.with_suffix(".lock"), blocking=True):
        record = load(state_dir, plan, account)
        change(record)
        _write(path, record)
    return record


@contextmanager
def exclusive_pass(state_dir: Path, plan: str, account: str, *, wait: bool) -> Iterator[None]:
    """Hold the account's pass lock for the length of a copy pass.

    :param wait: wait for a running pass to end (the main DAG's steps), or raise at once
        (a scheduled delta, which the next run repeats).
    :raises AccountBusy: ``wait`` is false and another pass holds the lock.
    """
    path = record_path(state_dir, plan, account).with_suffix(".pass")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _locked(path, blocking=wait):
            yield
    except BlockingIOError:
        raise AccountBusy(f"{account}: another copy pass over this account is running") from None


def after_pass(
    record: DeltaRecord,
    *,
    started: dt.datetime,
    ended: dt.datetime,
    copied: int,
    ok: bool,
    quiet_period: float = DEFAULT_QUIET_PERIOD,
    max_after_mx: float = DEFAULT_MAX_AFTER_MX,
    decide: bool = True,
) -> Outcome:
    """Note a delta pass in ``record`` and decide whether the account is done (see the module's
    invariants). ``decide=False`` notes the pass only (the main DAG's own delta).

    :param copied: new messages the pass copied, over all folders.
    """
    if record.done:
        return Outcome(False)
    record.last_delta_at = started
    record.last_delta_ok = ok
    if record.released_at is None or started < record.released_at:
        return Outcome(False)
    record.deltas += 1
    if copied > 0:
        record.arrivals += copied
        record.last_arrival_at = ended
    if not (decide and ok):
        return Outcome(False)
    quiet_since = record.quiet_since
    assert quiet_since is not None  # released_at is set
    if copied == 0 and (started - quiet_since).total_seconds() >= quiet_period:
        return _finish(record, ended, QUIET, None)
    if (started - record.released_at).total_seconds() >= max_after_mx:
        last = _iso(record.last_arrival_at) or "none after the MX change"
        warning = (
            f"{record.account}: still receiving mail on the old server "
            f"{duration_text(max_after_mx)} after the MX change ({record.arrivals} new messages "
            f"since, the last seen {last}); stopped at the maximum, check its senders"
        )
        if copied == 0:
            warning = (
                f"{record.account}: not quiet for {duration_text(quiet_period)} within "
                f"{duration_text(max_after_mx)} of the MX change (last new mail seen {last}); "
                "stopped at the maximum"
            )
        return _finish(record, ended, MAXIMUM, warning)
    return Outcome(False)


def due(record: DeltaRecord, *, before_mx: bool) -> str | None:
    """Whether a scheduled delta run takes this account: ``"after_mx"`` (released, handed over
    by the main DAG, not done), ``"before_mx"`` (``before_mx`` on, initial copy done, MX not yet
    released), else ``None``."""
    if record.done:
        return None
    if record.released_at is not None:
        return "after_mx" if record.handed_over_at is not None else None
    if before_mx and record.initial_done_at is not None:
        return "before_mx"
    return None


def migration_notice_due(state_dir: Path, plan: str, accounts: Iterable[str]) -> bool:
    """Whether every account is done and ``migration_finished`` has not been sent yet."""
    if _notice_path(state_dir, plan).exists():
        return False
    return all(record.done for record in load_all(state_dir, plan, accounts).values())


def note_migration_notice(state_dir: Path, plan: str, at: dt.datetime) -> None:
    """Remember that ``migration_finished`` was sent (it is sent once per plan)."""
    path = _notice_path(state_dir, plan)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"migration_finished_notified_at": _iso(at)}), encoding="utf-8")


def _notice_path(state_dir: Path, plan: str) -> Path:
    return record_dir(state_dir, plan) / "_migration_finished.json"


def account_finished_facts(plan: str, record: DeltaRecord) -> dict[str, object]:
    """The ``account_finished`` event: ``subject``, ``message`` and the record's facts."""
    why = {
        QUIET: "no new mail on the old server for the quiet period",
        MAXIMUM: "the maximum time after the MX change was reached",
    }.get(record.done_reason or "", "done")
    last = _iso(record.last_arrival_at) or "none after the MX change"
    subject = f"{plan}: {record.account} finished ({record.done_reason})"
    lines = [
        f"{subject}: {why}.",
        f"The final delta verified the destination. New messages after the MX change: "
        f"{record.arrivals} in {record.deltas} deltas; the last seen {last}.",
    ]
    if record.warning:
        lines.append(f"Warning: {record.warning}")
    return {"subject": subject, "message": "\n".join(lines), **record.to_dict()}


def migration_finished_facts(plan: str, records: Iterable[DeltaRecord]) -> dict[str, object]:
    """The ``migration_finished`` event: every account is done."""
    done = list(records)
    maximum = sorted(r.account for r in done if r.done_reason == MAXIMUM)
    subject = f"{plan}: migration finished, all {len(done)} accounts done"
    lines = [f"{subject}; the old mailboxes are quiet."]
    if maximum:
        lines.append(
            f"{len(maximum)} stopped at the maximum while still receiving mail: "
            + ", ".join(maximum[:20])
            + (" ..." if len(maximum) > 20 else "")
        )
    arrivals = [r.last_arrival_at for r in done if r.last_arrival_at]
    return {
        "subject": subject,
        "message": "\n".join(lines),
        "accounts": len(done),
        "stopped_at_maximum": maximum,
        "last_arrival_at": _iso(max(arrivals)) if arrivals else None,
    }


def _finish(record: DeltaRecord, at: dt.datetime, reason: str, warning: str | None) -> Outcome:
    record.done_at = at
    record.done_reason = reason
    record.warning = warning
    return Outcome(True, reason, warning)


def _write(path: Path, record: DeltaRecord) -> None:
    data = json.dumps(record.to_dict(), indent=1, sort_keys=True)
    fd, temp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


@contextmanager
def _locked(path: Path, *, blocking: bool) -> Iterator[None]:
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(dt.UTC).isoformat()


def duration_text(seconds: float) -> str:
    """``172800`` -> ``2 d``, ``5400`` -> ``90 min``, ``2.5`` -> ``2.5 s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} s"
