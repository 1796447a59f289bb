"""The migration plan: a YAML file plus an accounts CSV, validated before anything runs.

:func:`load_plan` reads a plan file (YAML, composed to nodes so every value keeps its line) and
its accounts (a CSV next to it, or an inline list), and raises :class:`PlanError` listing every
problem as ``file:line: message``. It never shows a password, not even from a malformed row.
"""

from __future__ import annotations

import csv
import datetime as dt
import difflib
import ipaddress
import math
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pendulum
import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode


@dataclass(frozen=True)
class Account:
    """One mailbox to move. Passwords are ``None`` when admin credentials are used."""

    source_user: str
    destination_user: str
    source_password: str | None = field(default=None, repr=False)
    destination_password: str | None = field(default=None, repr=False)
    mx_domain: str = ""
    line: int = 0  # line in the accounts CSV (or plan file for inline accounts)

    @property
    def group_id(self) -> str:
        """The Airflow task-group id: ``alice@example.com`` -> ``alice_example_com``."""
        return re.sub(r"[^\w-]", "_", self.source_user)


@dataclass(frozen=True)
class MxCheck:
    expect: tuple[str, ...]
    resolvers: tuple[str, ...] = ()
    authoritative: tuple[str, ...] = ()
    poke_interval: float = 600.0  # seconds
    timeout: float = 7 * 86400.0  # seconds


@dataclass(frozen=True)
class DeltaWindow:
    timezone: str = "UTC"
    window: tuple[dt.time, dt.time] | None = None  # None: "any"
    weekdays: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)  # Monday = 0


@dataclass(frozen=True)
class FolderRules:
    exclude: tuple[str, ...] = ()  # glob patterns over source names with "/" as separator
    rename: dict[str, str] = field(default_factory=dict)  # source name -> destination name, "/"


@dataclass(frozen=True)
class CopyOptions:
    batch_messages: int = 500
    batch_bytes: int = 16 * 1024 * 1024
    messages_per_second: float | None = None
    bytes_per_second: float | None = None
    propagate_deletions: bool = False
    parallel_folders: int = 2


@dataclass(frozen=True)
class Plan:
    path: Path
    name: str
    source_connection: str
    destination_connection: str
    accounts: tuple[Account, ...]
    mx: MxCheck | None = None
    delta: DeltaWindow = field(default_factory=DeltaWindow)
    folders: FolderRules = field(default_factory=FolderRules)
    copy: CopyOptions = field(default_factory=CopyOptions)
    parallel_accounts: int = 4
    retries: int = 3
    pool: str | None = None
    state_dir: Path | None = None

    @property
    def dag_id(self) -> str:
        return f"migration_{self.name}"

    def account(self, source_user: str) -> Account:
        for account in self.accounts:
            if account.source_user == source_user:
                return account
        raise KeyError(f"{self.path}: no account with source_user {source_user!r}")


# --------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------

ACCOUNT_FIELDS = (
    "source_user",
    "source_password",
    "destination_user",
    "destination_password",
    "mx_domain",
)
REQUIRED_ACCOUNT_FIELDS = ("source_user", "destination_user")
CSV_HEADER = "source_user,source_password,destination_user,destination_password"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_CONN_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([wdhms])", re.IGNORECASE)
_DURATION_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|b)?$", re.IGNORECASE)
_SIZE_UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_WINDOW = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")
_MAX_GROUP_ID = 200  # Airflow task ids are at most 250 characters, group id included


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a plan or accounts file, at a 1-based line."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class PlanError(ValueError):
    """A plan that cannot be used; ``problems`` lists every problem found, not just the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


def _suggest(word: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f'; did you mean "{close[0]}"?' if close else ""


def parse_duration(value: Any) -> float | None:
    """Seconds of ``30s``, ``10m``, ``2h``, ``7d``, ``1w``, ``1h30m`` or a number; ``None`` if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    text = str(value).strip()
    try:
        seconds = float(text)
        return seconds if math.isfinite(seconds) else None
    except ValueError:
        pass
    parts = _DURATION_PART.findall(text)
    if not parts or _DURATION_PART.sub("", text).strip():
        return None
    return float(sum(float(amount) * _DURATION_UNITS[unit.lower()] for amount, unit in parts))


def parse_size(value: Any) -> int | None:
    """Bytes of ``16MB``, ``512k``, ``1.5GiB`` (binary units) or an integer; ``None`` if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    match = _SIZE.match(str(value).strip())
    if not match:
        return None
    return int(float(match.group(1)) * _SIZE_UNITS.get((match.group(2) or "").lower(), 1))


def split_host_port(text: str) -> tuple[str, int | None] | None:
    """``"1.1.1.1"``, ``"127.0.0.1:5353"``, ``"::1"``, ``"[::1]:53"``, ``"ns.example"`` -> (host, port).

    ``None`` when the host is not an IP address or host name or the port is not 1-65535.
    """
    text = text.strip()
    host, port = text, None
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        port = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port = text.split(":")
    if port is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
        return None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if text.startswith("[") or ":" in host or not _valid_domain(host):
            return None
    return host, int(port) if port is not None else None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _valid_domain(name: str) -> str | None:
    """The lower-case ASCII (IDNA) form of a domain or host name, ``None`` if it is not one."""
    name = name.strip().rstrip(".").lower()
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except (UnicodeError, ValueError):
        return None
    return ascii_name if _HOSTNAME.match(ascii_name) and not ascii_name.isdigit() else None


class _Problems:
    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, file: str, line: int, message: str) -> None:
        self.items.append(Problem(file, max(line, 1), message))


def _line(node: Node) -> int:
    return node.start_mark.line + 1


class _Yaml:
    """Reads typed values out of composed YAML nodes, recording a problem (with its line) for
    anything wrong and returning ``None`` for it."""

    def __init__(self, file: str, problems: _Problems):
        self.file = file
        self.problems = problems
        self.constructor = SafeConstructor()

    def problem(self, at: Node | int, message: str) -> None:
        self.problems.add(self.file, at if isinstance(at, int) else _line(at), message)

    def mapping(
        self, node: Node, where: str, keys: tuple[str, ...], hint: str = ""
    ) -> dict[str, Node] | None:
        """The entries of a mapping node by key; unknown and repeated keys are problems."""
        if not isinstance(node, MappingNode):
            self.problem(node, f"{where or 'the plan'}: must be a mapping (key: value){hint}")
            return None
        try:
            self.constructor.flatten_mapping(node)
        except yaml.YAMLError as exc:
            self.problem(node, f"{where}: invalid merge (<<): {getattr(exc, 'problem', exc)}")
            return None
        entries: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            path = f"{where}.{key}" if where else str(key)
            if key is None:
                self.problem(key_node, f"{where or 'the plan'}: keys must be plain names")
            elif key in entries:
                self.problem(key_node, f"{path}: given twice (first on line {_line(entries[key])})")
            elif key not in keys:
                self.problem(
                    key_node,
                    f"{path}: unknown key{_suggest(key, keys)} (allowed here: {', '.join(keys)})",
                )
            else:
                entries[key] = value_node
        return entries

    def value(self, node: Node) -> Any:
        """The Python value of a scalar node (``str``, ``int``, ``float``, ``bool``, ``None``)."""
        if not isinstance(node, ScalarNode):
            return node
        try:
            return self.constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError):
            return node.value

    def text(self, node: Node, where: str, example: str = "") -> str | None:
        """A non-empty string, exactly as written (so ``0123`` or ``yes`` stay text)."""
        if not isinstance(node, ScalarNode) or self.value(node) is None:
            self.problem(node, f"{where}: must be a text value{example}")
            return None
        if not node.value.strip():
            self.problem(node, f"{where}: must not be empty{example}")
            return None
        return node.value.strip()

    def integer(self, node: Node, where: str, minimum: int) -> int | None:
        value = self.value(node)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.problem(node, f"{where}: {self.show(node)} must be a whole number >= {minimum}")
            return None
        return value

    def number(self, node: Node, where: str) -> float | None:
        value = self.value(node)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e18:
            self.problem(
                node, f"{where}: {self.show(node)} must be a number > 0 (or null for no limit)"
            )
            return None
        return float(value)

    def boolean(self, node: Node, where: str) -> bool | None:
        value = self.value(node)
        if not isinstance(value, bool):
            self.problem(node, f"{where}: {self.show(node)} must be true or false")
            return None
        return value

    def duration(self, node: Node, where: str) -> float | None:
        seconds = parse_duration(self.value(node)) if isinstance(node, ScalarNode) else None
        if seconds is None or seconds <= 0:
            self.problem(
                node,
                f"{where}: {self.show(node)} is not a duration > 0; write e.g. 30s, 10m, 2h, 7d "
                "or a number of seconds",
            )
            return None
        return seconds

    def size(self, node: Node, where: str) -> int | None:
        size = parse_size(self.value(node)) if isinstance(node, ScalarNode) else None
        if size is None or size <= 0:
            self.problem(
                node,
                f"{where}: {self.show(node)} is not a size > 0; write e.g. 16MB, 512KB or bytes",
            )
            return None
        return size

    def texts(self, node: Node, where: str, example: str) -> list[tuple[Node, str]] | None:
        """A list of strings, each with its node (for lines)."""
        if not isinstance(node, SequenceNode):
            self.problem(node, f"{where}: must be a list, e.g. {example}")
            return None
        items = []
        for item in node.value:
            text = self.text(item, where, f", e.g. {example}")
            if text is not None:
                items.append((item, text))
        return items

    @staticmethod
    def show(node: Node) -> str:
        if isinstance(node, MappingNode):
            return "a mapping"
        if isinstance(node, SequenceNode):
            return "a list"
        text = node.value if len(node.value) <= 60 else node.value[:57] + "..."
        return f'"{text}"'


TOP_KEYS = (
    "name", "source", "destination", "accounts", "mx", "delta", "folders", "copy",
    "parallel_accounts", "retries", "pool", "state_dir",
)  # fmt: skip
MX_KEYS = ("expect", "resolvers", "authoritative", "poke_interval", "timeout")
DELTA_KEYS = ("timezone", "window", "weekdays")
FOLDER_KEYS = ("exclude", "rename")
COPY_KEYS = (
    "batch_messages", "batch_bytes", "messages_per_second", "bytes_per_second",
    "propagate_deletions", "parallel_folders",
)  # fmt: skip


def _given(entries: dict[str, Node], key: str) -> Node | None:
    """The node of an optional key; ``key: null`` (or an empty value) means "use the default"."""
    node = entries.get(key)
    if node is None or (isinstance(node, ScalarNode) and node.tag.endswith(":null")):
        return None
    return node


def _connection(reader: _Yaml, entries: dict[str, Node], key: str, at: Node) -> str | None:
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


def _mx(reader: _Yaml, node: Node) -> MxCheck | None:
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
            host = _valid_domain(text)
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
        if (list_node := _given(fields, key)) is None:
            continue
        items = reader.texts(list_node, f"mx.{key}", '["1.1.1.1", "127.0.0.1:5353"]')
        ok = items is not None and ok
        for item, text in items or []:
            parsed = split_host_port(text)
            if parsed is None or not _is_ip(parsed[0]):
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
        if (value_node := _given(fields, key)) is not None:
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


def _delta(reader: _Yaml, node: Node) -> DeltaWindow | None:
    fields = reader.mapping(node, "delta", DELTA_KEYS)
    if fields is None:
        return None
    ok = True
    values: dict[str, Any] = {}
    if (tz_node := _given(fields, "timezone")) is not None:
        name = reader.text(tz_node, "delta.timezone", ", e.g. Europe/Berlin")
        ok = name is not None
        if name is not None:
            try:
                pendulum.timezone(name)
                values["timezone"] = name
            except Exception:  # pendulum raises InvalidTimezone, zoneinfo ValueError
                hint = _suggest(name, sorted(zoneinfo.available_timezones())) or (
                    ' (an IANA name such as "Europe/Berlin" or "UTC")'
                )
                reader.problem(tz_node, f'delta.timezone: "{name}" is not a known time zone{hint}')
                ok = False
    if (window_node := _given(fields, "window")) is not None:
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
    if (days_node := _given(fields, "weekdays")) is not None:
        items = reader.texts(days_node, "delta.weekdays", "[mon, tue, wed, thu, fri]")
        days: set[int] = set()
        for item, text in items or []:
            day = text.lower()[:3] if text.lower() in _FULL_DAYS else text.lower()
            if day in WEEKDAYS:
                days.add(WEEKDAYS.index(day))
            else:
                reader.problem(
                    item,
                    f'delta.weekdays: "{text}" is not a weekday{_suggest(text.lower(), WEEKDAYS)} '
                    f"(use {', '.join(WEEKDAYS)})",
                )
                ok = False
        if items == []:
            reader.problem(days_node, "delta.weekdays: must name at least one day")
        ok = ok and bool(items)
        values["weekdays"] = tuple(sorted(days))
    return DeltaWindow(**values) if ok else None


def _folder_name(text: str) -> bool:
    return not any(part.strip() == "" for part in text.split("/"))


def _folders(reader: _Yaml, node: Node) -> FolderRules | None:
    fields = reader.mapping(node, "folders", FOLDER_KEYS)
    if fields is None:
        return None
    ok = True
    exclude: tuple[str, ...] = ()
    if (exclude_node := _given(fields, "exclude")) is not None:
        items = reader.texts(exclude_node, "folders.exclude", '["Trash", "Archive/20*"]')
        ok = items is not None
        exclude = tuple(text for _, text in items or [])
    rename: dict[str, str] = {}
    if (rename_node := _given(fields, "rename")) is not None:
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
    return FolderRules(exclude, rename) if ok else None


def _copy(reader: _Yaml, node: Node) -> CopyOptions | None:
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
        if (value_node := _given(fields, key)) is not None:
            values[key] = read(value_node, f"copy.{key}")
            ok = ok and values[key] is not None
    return CopyOptions(**values) if ok else None


def _account(
    values: dict[str, str | None], file: str, line: int, problems: _Problems, prefix: str = ""
) -> Account | None:
    """An account from its fields (CSV cells or inline values); passwords never enter messages.

    :param prefix: put before each message (``"accounts: "`` for inline accounts).
    """
    ok = True

    def problem(message: str) -> None:
        problems.add(file, line, prefix + message)

    users = {}
    for key in REQUIRED_ACCOUNT_FIELDS:
        users[key] = (values.get(key) or "").strip()
        if not users[key]:
            problem(f"{key}: is empty; every account needs one")
            ok = False
        elif any(ord(char) < 32 for char in users[key]):
            problem(f"{key}: contains a line break or control character")
            ok = False
    for key in ("source_password", "destination_password"):
        if values.get(key) and any(char in values[key] for char in "\r\n"):
            problem(f"{key}: contains a line break; check this row's quotes")
            ok = False
    source_user, destination_user = users["source_user"], users["destination_user"]
    mx_text = (values.get("mx_domain") or "").strip()
    mx_domain = _valid_domain(mx_text) if mx_text else None
    if mx_text and mx_domain is None:
        problem(f'mx_domain: "{mx_text}" is not a domain name')
        ok = False
    elif not mx_text and destination_user:
        local, at, domain = destination_user.rpartition("@")
        mx_domain = _valid_domain(domain) if at and local else None
        if not at:
            problem(
                f'destination_user: "{destination_user}" has no domain; write it as '
                f"{destination_user}@example.com or fill the mx_domain column",
            )
            ok = False
        elif mx_domain is None:
            problem(f'destination_user: "{destination_user}" is not user@domain.example')
            ok = False
    if not ok:
        return None
    return Account(
        source_user=source_user,
        destination_user=destination_user,
        source_password=values.get("source_password") or None,
        destination_password=values.get("destination_password") or None,
        mx_domain=mx_domain or "",
        line=line,
    )


class _CsvLines:
    """Feeds a CSV reader the file's lines, skipping blank and ``#`` lines between records and
    remembering on which line the current record started."""

    def __init__(self, text: str):
        self.lines = text.splitlines(keepends=True)
        self.index = 0
        self.at_record_start = True
        self.record_line = 1

    def __iter__(self) -> _CsvLines:
        return self

    def __next__(self) -> str:
        while self.index < len(self.lines):
            line = self.lines[self.index]
            self.index += 1
            if self.at_record_start:
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                self.record_line = self.index
                self.at_record_start = False
            return line
        raise StopIteration


def _csv_accounts(
    path: Path, file: str, problems: _Problems, listed: list[Account]
) -> list[Account]:
    """The valid accounts of a CSV file; ``listed`` gets every row naming a source user.

    :raises OSError, UnicodeDecodeError: when the file cannot be read (the caller reports).
    """
    text = path.read_text(encoding="utf-8-sig")  # OSError, UnicodeDecodeError: the caller's
    lines = _CsvLines(text)
    rows = csv.reader(lines, strict=True)
    header: list[str] | None = None
    accounts: list[Account] = []
    while True:
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.add(file, lines.record_line, f"malformed CSV ({exc}); check this row's quotes")
            break  # the reader cannot resynchronise after a quoting error
        finally:
            lines.at_record_start = True
        line = lines.record_line
        if header is None:
            header = [cell.strip().lower() for cell in row]
            if not _check_header(header, file, line, problems):
                return accounts
            continue
        if len(row) != len(header):
            problems.add(
                file,
                line,
                f"row has {len(row)} fields but the header has {len(header)} columns; quote fields "
                'that contain a comma ("pa,ss")',
            )
            continue
        values = {key: cell for key, cell in zip(header, row, strict=True) if key in ACCOUNT_FIELDS}
        account = _account(values, file, line, problems)
        if account is not None:
            accounts.append(account)
        _note_listed(listed, account, values, line)
    if header is None:
        problems.add(file, 1, f"no header line; the first line must be {CSV_HEADER}")
    return accounts


def _check_header(header: list[str], file: str, line: int, problems: _Problems) -> bool:
    """Whether the rows can be read with this header; records a problem for each defect."""
    expected = f"the header must be {CSV_HEADER} (any order; mx_domain optional)"
    if not set(header) & set(ACCOUNT_FIELDS):
        # Probably a data row: never echo it (it may hold passwords).
        problems.add(file, line, f"no header line; {expected}")
        return False
    usable = True
    for number, name in enumerate(header, 1):
        if not name:
            problems.add(file, line, f"header: column {number} has no name; {expected}")
        elif name not in ACCOUNT_FIELDS:
            problems.add(
                file,
                line,
                f'header: unknown column "{name}"{_suggest(name, ACCOUNT_FIELDS)} '
                f"(columns: {', '.join(ACCOUNT_FIELDS)})",
            )
        elif header.index(name) != number - 1:
            problems.add(file, line, f'header: column "{name}" appears twice')
            usable = False
    for name in REQUIRED_ACCOUNT_FIELDS:
        if name not in header:
            problems.add(file, line, f"header: missing column {name}; {expected}")
            usable = False
    return usable


def _note_listed(
    listed: list[Account], account: Account | None, values: dict[str, str | None], line: int
) -> None:
    """Remember a row's source user, also for an invalid row, to find duplicates."""
    source_user = (values.get("source_user") or "").strip()
    if account is not None or source_user:
        listed.append(account or Account(source_user=source_user, destination_user="", line=line))


def _inline_accounts(reader: _Yaml, node: SequenceNode, listed: list[Account]) -> list[Account]:
    accounts = []
    example = " with source_user, destination_user and optional passwords"
    for item in node.value:
        fields = reader.mapping(item, "accounts", ACCOUNT_FIELDS, f"{example}")
        if fields is None:
            continue
        values: dict[str, str | None] = {}
        ok = True
        for key, value_node in fields.items():
            if not isinstance(value_node, ScalarNode):
                reader.problem(value_node, f"accounts: {key}: must be a text value")
                ok = False
            elif reader.value(value_node) is not None:
                values[key] = value_node.value
        account = (
            _account(values, reader.file, _line(item), reader.problems, "accounts: ")
            if ok
            else None
        )
        if account is not None:
            accounts.append(account)
        _note_listed(listed, account, values, _line(item))
    return accounts


def _check_unique(accounts: list[Account], file: str, problems: _Problems) -> None:
    """Report source users listed twice or mapping to the same Airflow task-group id."""
    by_user: dict[str, Account] = {}
    by_group: dict[str, Account] = {}
    for account in accounts:
        first = by_user.setdefault(account.source_user.casefold(), account)
        other = by_group.setdefault(account.group_id, account)
        if first is not account:
            problems.add(
                file,
                account.line,
                f'source_user: "{account.source_user}" is listed twice (lines {first.line} and '
                f"{account.line}); each source mailbox may appear once",
            )
        elif other is not account:
            problems.add(
                file,
                account.line,
                f'source_user: "{account.source_user}" and "{other.source_user}" (line '
                f'{other.line}) both become task group "{account.group_id}"; they must differ',
            )
        if len(account.group_id) > _MAX_GROUP_ID:
            problems.add(file, account.line, f"source_user: longer than {_MAX_GROUP_ID} characters")


def _accounts(reader: _Yaml, node: Node, plan_path: Path) -> list[Account]:
    listed: list[Account] = []
    if isinstance(node, SequenceNode):
        accounts = _inline_accounts(reader, node, listed)
        file = reader.file
        if not node.value:
            reader.problem(node, "accounts: the list is empty; add at least one account")
    else:
        csv_name = reader.text(node, "accounts", " (a CSV file next to the plan or a list)")
        if csv_name is None:
            return []
        csv_path = plan_path.parent / Path(csv_name).expanduser()
        file = str(csv_path)
        try:
            accounts = _csv_accounts(csv_path, file, reader.problems, listed)
        except OSError as exc:
            reason = exc.strerror or exc.__class__.__name__
            where = f'"{csv_name}"' + ("" if str(csv_path) == csv_name else f" ({csv_path})")
            reader.problem(node, f"accounts: cannot read {where}: {reason}")
            return []
        except UnicodeDecodeError as exc:
            line = csv_path.read_bytes()[: exc.start].count(b"\n") + 1
            reader.problems.add(file, line, "not UTF-8 text; save the CSV as UTF-8")
            return []
        if not accounts and not any(p.file == file for p in reader.problems.items):
            reader.problems.add(file, 1, f"no accounts; add a line per account below {CSV_HEADER}")
    _check_unique(listed, file, reader.problems)
    return accounts


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan file and its accounts.

    :raises PlanError: with every problem found, each as ``file:line: message``.
    """
    path = Path(path)
    file = str(path)
    problems = _Problems()
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
    if root is None:
        raise PlanError(
            [Problem(file, 1, "the plan is empty; it needs name, source, destination and accounts")]
        )
    reader = _Yaml(file, problems)
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
        accounts = _accounts(reader, fields["accounts"], path)

    options: dict[str, Any] = {}
    sections = {"mx": _mx, "delta": _delta, "folders": _folders, "copy": _copy}
    for key, read_section in sections.items():
        if (node := _given(fields, key)) is not None:
            options[key] = read_section(reader, node)
    if (node := _given(fields, "parallel_accounts")) is not None:
        options["parallel_accounts"] = reader.integer(node, "parallel_accounts", 1)
    if (node := _given(fields, "retries")) is not None:
        options["retries"] = reader.integer(node, "retries", 0)
    if (node := _given(fields, "pool")) is not None:
        options["pool"] = reader.text(node, "pool", " (an Airflow pool name)")
    if (node := _given(fields, "state_dir")) is not None:
        state_dir = reader.text(node, "state_dir", " (a directory, relative to the plan)")
        options["state_dir"] = path.parent / Path(state_dir).expanduser() if state_dir else None

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
            return _line(key)
    return 1
