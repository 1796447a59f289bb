"""The migration plan: a YAML file plus an accounts CSV, validated before anything runs.

:func:`load_plan` reads a plan file (YAML, composed to nodes so every value keeps its line) and
its accounts (a CSV next to it, or an inline list), and raises :class:`PlanError` listing every
problem as ``file:line: message``. It never shows a password, not even from a malformed row.

This module reads the plan's sections; the types live in :mod:`mailmigrate.plan_model`, the YAML
value readers in :mod:`mailmigrate.plan_yaml`, the accounts in :mod:`mailmigrate.plan_accounts`
and the notifiers in :mod:`mailmigrate.plan_notify`. The public names other code uses are
importable from here as well.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node

from mailmigrate.errors import PlanError
from mailmigrate.plan_accounts import read_accounts
from mailmigrate.plan_groupware import check_kinds, read_groupware, read_kinds
from mailmigrate.plan_model import (
    COPY_KEYS,
    DELTA_KEYS,
    FOLDER_KEYS,
    LABEL_MODES,
    MX_KEYS,
    TOP_KEYS,
    WEEKDAYS,
    Account,
    CopyOptions,
    DeltaWindow,
    FolderRules,
    MxCheck,
    NotifierSpec,
    Plan,
    Problem,
    group_id,
)
from mailmigrate.plan_notify import read_notify
from mailmigrate.plan_reports import read_approval, read_reports
from mailmigrate.plan_yaml import (
    Problems,
    YamlReader,
    given,
    is_ip,
    node_line,
    parse_duration,
    parse_size,
    split_host_port,
    suggest,
    valid_domain,
)

__all__ = [
    "Account", "CopyOptions", "DeltaWindow", "FolderRules", "MxCheck", "NotifierSpec", "Plan",
    "PlanError", "Problem", "find_plans", "group_id", "load_plan", "load_plans", "parse_duration",
    "parse_size", "split_host_port",
]  # fmt: skip

_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_CONN_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
_WINDOW = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")


def _connection(reader: YamlReader, entries: dict[str, Node], key: str, at: Node) -> str | None:
    example = f", e.g. {key}: {{connection: {'acme_old' if key == 'source' else 'acme_new'}}}"
    node = entries.get(key)
    if node is None:
        reader.problem(at, f"{key}: missing; name the Airflow connection of this side{example}")
        return None
    fields = reader.mapping(node, key, ("connection",), example)
    if fields is None:
        return None
    if "connection" not in fields:
        reader.problem(node, f"{key}.connection: missing{example}")
        return None
    conn_id = reader.text(fields["connection"], f"{key}.connection", example)
    if conn_id is not None and not _CONN_ID.match(conn_id):
        reader.problem(
            fields["connection"],
            f'{key}.connection: "{conn_id}" is not a connection id (letters, digits, _ . -)',
        )
        return None
    return conn_id


def _mx(reader: YamlReader, node: Node) -> MxCheck | None:
    fields = reader.mapping(node, "mx", MX_KEYS)
    if fields is None:
        return None
    ok = True
    expect: list[str] = []
    if "expect" not in fields:
        reader.problem(
            node, "mx.expect: missing; list the new MX hosts, e.g. [mx1.newhost.example]"
        )
        ok = False
    else:
        items = reader.texts(fields["expect"], "mx.expect", "[mx1.newhost.example]")
        ok = items is not None and ok
        for item, text in items or []:
            host = valid_domain(text)
            if host is None:
                reader.problem(item, f'mx.expect: "{text}" is not a host name')
                ok = False
            elif host not in expect:
                expect.append(host)
        if items == []:
            reader.problem(fields["expect"], "mx.expect: must list at least one MX host")
            ok = False
    servers: dict[str, tuple[str, ...]] = {}
    for key in ("resolvers", "authoritative"):
        servers[key] = ()
        if (list_node := given(fields, key)) is None:
            continue
        items = reader.texts(list_node, f"mx.{key}", '["1.1.1.1", "127.0.0.1:5353"]')
        ok = items is not None and ok
        for item, text in items or []:
            parsed = split_host_port(text)
            if parsed is None or not is_ip(parsed[0]):
                # DNS servers by address: a name would need DNS to find DNS, and the MX check
                # must not depend on the resolver it is checking.
                reader.problem(
                    item,
                    f'mx.{key}: "{text}" is not "address" or "address:port" (an IPv4/IPv6 '
                    'address, port 1-65535, IPv6 with a port as "[::1]:53")',
                )
                ok = False
        servers[key] = tuple(text for _, text in items or [])
    timing: dict[str, float] = {}
    for key in ("poke_interval", "timeout"):
        if (value_node := given(fields, key)) is not None:
            seconds = reader.duration(value_node, f"mx.{key}")
            ok = seconds is not None and ok
            if seconds is not None:
                timing[key] = seconds
    check = MxCheck(tuple(expect), servers["resolvers"], servers["authoritative"], **timing)
    if ok and check.poke_interval > check.timeout:
        reader.problem(node, "mx.poke_interval: must not be longer than mx.timeout")
        ok = False
    return check if ok else None


def _time(hours: str, minutes: str, end: bool) -> dt.time | None:
    if int(minutes) > 59 or int(hours) > 24 or (int(hours) == 24 and (not end or int(minutes))):
        return None
    return dt.time(int(hours) % 24, int(minutes))


def _delta(reader: YamlReader, node: Node) -> DeltaWindow | None:
    fields = reader.mapping(node, "delta", DELTA_KEYS)
    if fields is None:
        return None
    ok = True
    values: dict[str, Any] = {}
    if (tz_node := given(fields, "timezone")) is not None:
        name = reader.text(tz_node, "delta.timezone", ", e.g. Europe/Berlin")
        ok = name is not None
        if name is not None:
            try:
                zoneinfo.ZoneInfo(name)  # what pendulum's timezones are built on
                values["timezone"] = name
            except Exception:  # ZoneInfoNotFoundError, or ValueError for a malformed key
                hint = suggest(name, sorted(zoneinfo.available_timezones())) or (
                    ' (an IANA name such as "Europe/Berlin" or "UTC")'
                )
                reader.problem(tz_node, f'delta.timezone: "{name}" is not a known time zone{hint}')
                ok = False
    if (window_node := given(fields, "window")) is not None:
        text = reader.text(window_node, "delta.window", ', e.g. "19:00-06:00" or "any"')
        match = _WINDOW.match(text) if text else None
        start = _time(*match.group(1, 2), end=False) if match else None
        stop = _time(*match.group(3, 4), end=True) if match else None
        if text is None:
            ok = False
        elif text.lower() == "any":
            values["window"] = None
        elif start is None or stop is None:
            reader.problem(
                window_node,
                f'delta.window: "{text}" is not HH:MM-HH:MM (e.g. "19:00-06:00") or "any"',
            )
            ok = False
        elif start == stop:
            reader.problem(
                window_node,
                f'delta.window: "{text}" starts and ends at the same time; use "any" for no window',
            )
            ok = False
        else:
            values["window"] = (start, stop)
    if (days_node := given(fields, "weekdays")) is not None:
        items = reader.texts(days_node, "delta.weekdays", "[mon, tue, wed, thu, fri]")
        days: set[int] = set()
        for item, text in items or []:
            day = text.lower()[:3] if text.lower() in _FULL_DAYS else text.lower()
            if day in WEEKDAYS:
                days.add(WEEKDAYS.index(day))
            else:
                reader.problem(
                    item,
                    f'delta.weekdays: "{text}" is not a weekday{suggest(text.lower(), WEEKDAYS)} '
                    f"(use {', '.join(WEEKDAYS)})",
                )
                ok = False
        if items == []:
            reader.problem(days_node, "delta.weekdays: must name at least one day")
        ok = ok and bool(items)
        values["weekdays"] = tuple(sorted(days))
    ok = _follow_up(reader, node, fields, values) and ok
    return DeltaWindow(**values) if ok else None


def _follow_up(reader: YamlReader, node: Node, fields: dict[str, Node], values: dict) -> bool:
    """``delta.quiet_period``, ``max_after_mx``, ``repeat`` (durations; ``repeat: null`` is
    once per window) and ``before_mx`` (true/false) into ``values``; whether all were valid."""
    ok = True
    for key in ("quiet_period", "max_after_mx", "repeat"):
        value_node = given(fields, key)
        if value_node is None or (key == "repeat" and reader.value(value_node) is None):
            continue
        seconds = reader.duration(value_node, f"delta.{key}")
        ok = seconds is not None and ok
        if seconds is not None:
            values[key] = seconds
    if (flag_node := given(fields, "before_mx")) is not None:
        flag = reader.boolean(flag_node, "delta.before_mx")
        ok = flag is not None and ok
        values["before_mx"] = bool(flag)
    defaults = DeltaWindow()
    quiet = values.get("quiet_period", defaults.quiet_period)
    if ok and values.get("max_after_mx", defaults.max_after_mx) < quiet:
        at = given(fields, "max_after_mx") or given(fields, "quiet_period") or node
        reader.problem(at, "delta.max_after_mx: shorter than delta.quiet_period, so no account "
                           "could ever finish by going quiet")  # fmt: skip
        ok = False
    return ok


def _folder_name(text: str) -> bool:
    return not any(part.strip() == "" for part in text.split("/"))


def _folders(reader: YamlReader, node: Node) -> FolderRules | None:
    fields = reader.mapping(node, "folders", FOLDER_KEYS)
    if fields is None:
        return None
    ok = True
    exclude: tuple[str, ...] = ()
    if (exclude_node := given(fields, "exclude")) is not None:
        items = reader.texts(exclude_node, "folders.exclude", '["Trash", "Archive/20*"]')
        ok = items is not None
        exclude = tuple(text for _, text in items or [])
    rename: dict[str, str] = {}
    if (rename_node := given(fields, "rename")) is not None:
        example = ', e.g. {"Old/Name": "New/Name"}'
        if not isinstance(rename_node, MappingNode):
            reader.problem(rename_node, f"folders.rename: must be a mapping{example}")
            return None
        for key_node, value_node in rename_node.value:
            source = reader.text(key_node, "folders.rename", example)
            target = reader.text(value_node, f"folders.rename.{source}", example)
            for name, at in ((source, key_node), (target, value_node)):
                if name is not None and not _folder_name(name):
                    reader.problem(
                        at,
                        f'folders.rename: "{name}" has an empty part; separate levels with one "/"',
                    )
                    ok = False
            if source is None or target is None:
                ok = False
            elif source in rename:
                reader.problem(key_node, f'folders.rename: "{source}" is renamed twice')
                ok = False
            else:
                rename[source] = target
    labels = "archive"
    if (labels_node := given(fields, "labels")) is not None:
        text = reader.text(labels_node, "folders.labels", f" ({', '.join(LABEL_MODES)})")
        if text is not None and text not in LABEL_MODES:
            reader.problem(
                labels_node,
                f'folders.labels: "{text}" is not one of {", ".join(LABEL_MODES)}'
                f"{suggest(text, LABEL_MODES)}",
            )
            text = None
        ok = ok and text is not None
        labels = text or labels
    return FolderRules(exclude, rename, labels) if ok else None


def _copy(reader: YamlReader, node: Node) -> CopyOptions | None:
    fields = reader.mapping(node, "copy", COPY_KEYS)
    if fields is None:
        return None
    readers: dict[str, Callable[[Node, str], Any]] = {
        "batch_messages": lambda n, w: reader.integer(n, w, 1),
        "batch_bytes": reader.size,
        "messages_per_second": reader.number,
        "bytes_per_second": reader.size,
        "propagate_deletions": reader.boolean,
        "parallel_folders": lambda n, w: reader.integer(n, w, 1),
    }
    values: dict[str, Any] = {}
    ok = True
    for key, read in readers.items():
        if (value_node := given(fields, key)) is not None:
            values[key] = read(value_node, f"copy.{key}")
            ok = ok and values[key] is not None
    return CopyOptions(**values) if ok else None


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan file and its accounts.

    :raises PlanError: with every problem found, each as ``file:line: message``.
    """
    path = Path(path)
    file = str(path)
    problems = Problems()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise PlanError(
            [Problem(file, 1, f"cannot read the plan: {exc.strerror or exc}")]
        ) from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise PlanError([Problem(file, line, "not UTF-8 text; save the plan as UTF-8")]) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        # Only problem/context: str(exc) quotes the offending line, which may hold a password.
        mark = exc.problem_mark or exc.context_mark
        reason = "; ".join(part for part in (exc.context, exc.problem) if part)
        line = mark.line + 1 if mark else 1
        raise PlanError([Problem(file, line, f"invalid YAML: {reason}")]) from None
    except yaml.YAMLError as exc:
        raise PlanError([Problem(file, 1, f"invalid YAML: {exc.__class__.__name__}")]) from None
    except RecursionError:
        raise PlanError([Problem(file, 1, "invalid YAML: nested too deeply")]) from None
    if root is None:
        raise PlanError(
            [Problem(file, 1, "the plan is empty; it needs name, source, destination and accounts")]
        )
    reader = YamlReader(file, problems)
    fields = reader.mapping(root, "", TOP_KEYS, " with name, source, destination and accounts")
    if fields is None:
        raise PlanError(problems.items)

    name = None
    if "name" not in fields:
        reader.problem(
            root, "name: missing; add e.g. name: acme (the DAG id becomes migration_acme)"
        )
    elif (name := reader.text(fields["name"], "name", ", e.g. acme")) and not _NAME.match(name):
        reader.problem(
            fields["name"], f'name: "{name}" may only hold letters, digits, "_" and "-" (e.g. acme)'
        )
        name = None
    source = _connection(reader, fields, "source", root)
    destination = _connection(reader, fields, "destination", root)
    accounts: list[Account] = []
    if "accounts" not in fields:
        reader.problem(
            root, "accounts: missing; give a CSV file (accounts: accounts.csv) or a list"
        )
    else:
        accounts = read_accounts(reader, fields["accounts"], path)

    options: dict[str, Any] = {}
    sections = {
        "mx": _mx,
        "delta": _delta,
        "folders": _folders,
        "copy": _copy,
        "notify": read_notify,
    }
    for key, read_section in sections.items():
        if (node := given(fields, key)) is not None:
            options[key] = read_section(reader, node)
    if (node := given(fields, "reports")) is not None:
        options["reports"] = read_reports(reader, node, path)
    if (node := given(fields, "approval")) is not None:
        options["approval"] = read_approval(reader, node, accounts)
    if (node := given(fields, "kinds")) is not None:
        options["kinds"] = read_kinds(reader, node)
    if (node := given(fields, "groupware")) is not None:
        options["groupware"] = read_groupware(reader, node, _connection)
    check_kinds(reader, fields, options.get("kinds", ("mail",)), options.get("groupware"))
    if (node := given(fields, "parallel_accounts")) is not None:
        options["parallel_accounts"] = reader.integer(node, "parallel_accounts", 1)
    if (node := given(fields, "retries")) is not None:
        options["retries"] = reader.integer(node, "retries", 0)
    if (node := given(fields, "pool")) is not None:
        options["pool"] = reader.text(node, "pool", " (an Airflow pool name)")
    if (node := given(fields, "state_dir")) is not None:
        state_dir = reader.text(node, "state_dir", " (a directory, relative to the plan)")
        try:
            if state_dir and "\x00" in state_dir:
                raise ValueError("a NUL character")
            options["state_dir"] = path.parent / Path(state_dir).expanduser() if state_dir else None
        except (RuntimeError, ValueError):  # NUL, or "~someone" this machine does not know
            reader.problem(node, f"state_dir: {state_dir!r} is not a usable directory name")

    if problems.items:
        plan_problems = sorted((p for p in problems.items if p.file == file), key=lambda p: p.line)
        other = sorted(
            (p for p in problems.items if p.file != file), key=lambda p: (p.file, p.line)
        )
        raise PlanError(plan_problems + other)
    assert name and source and destination  # no problems means all required values were read
    return Plan(
        path=path,
        name=name,
        source_connection=source,
        destination_connection=destination,
        accounts=tuple(accounts),
        **options,
    )


def find_plans(directory: str | Path) -> list[Path]:
    """The plan files (``*.yaml``, ``*.yml``) directly inside a directory, sorted by name."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()]
    return sorted(p for p in found if not p.name.startswith("."))


def load_plans(directory: str | Path) -> tuple[list[Plan], list[PlanError]]:
    """Every valid plan in a directory and a :class:`PlanError` for each invalid one.

    A plan whose name another plan (earlier by file name) already uses is an error: the DAG ids
    would collide.
    """
    plans: list[Plan] = []
    errors: list[PlanError] = []
    for path in find_plans(directory):
        try:
            plan = load_plan(path)
        except PlanError as exc:
            errors.append(exc)
            continue
        other = next((p for p in plans if p.name == plan.name), None)
        if other is not None:
            line = _name_line(path)
            message = (
                f'name: "{plan.name}" is already the name of {other.path}; DAG ids must be unique'
            )
            errors.append(PlanError([Problem(str(path), line, message)]))
        else:
            plans.append(plan)
    return plans, errors


def _name_line(path: Path) -> int:
    root = yaml.compose(path.read_text(encoding="utf-8-sig"), Loader=yaml.SafeLoader)
    for key, _ in root.value:
        if key.value == "name":
            return node_line(key)
    return 1
