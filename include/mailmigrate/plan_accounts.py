"""The accounts of a plan: a CSV file next to the plan (``accounts: accounts.csv``) or an inline
list of mappings. :func:`read_accounts` turns either into :class:`Account` values, reporting each
bad row at its own line (CSV line, comments and blank lines counted, or plan line), source users
listed twice and task-group ids that would collide; no message ever shows a password, not even
from a malformed row.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from yaml.nodes import Node, ScalarNode, SequenceNode

from mailmigrate.plan_model import (
    ACCOUNT_FIELDS,
    CSV_HEADER,
    REQUIRED_ACCOUNT_FIELDS,
    Account,
)
from mailmigrate.plan_yaml import Problems, YamlReader, node_line, suggest, valid_domain

_MAX_GROUP_ID = 200  # Airflow task ids are at most 250 characters, group id included


def _account(
    values: dict[str, str | None], file: str, line: int, problems: Problems, prefix: str = ""
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
    mx_domain = valid_domain(mx_text) if mx_text else None
    # Invalid values are not shown: with columns in the wrong order or an unquoted comma in a
    # password, the "user" of a row can be (part of) a password.
    if mx_text and mx_domain is None:
        problem("mx_domain: is not a domain name")
        ok = False
    elif not mx_text and destination_user:
        local, at, domain = destination_user.rpartition("@")
        mx_domain = valid_domain(domain) if at and local else None
        if not at:
            problem(
                "destination_user: has no domain; write it as user@example.com or fill the "
                "mx_domain column",
            )
            ok = False
        elif mx_domain is None:
            problem("destination_user: is not user@domain.example")
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
        # Lines end at CR, LF or CRLF only, as in an editor and as the csv module expects;
        # str.splitlines would also split at form feeds or U+2028 inside a password.
        self.lines = list(io.StringIO(text, newline=""))
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
    path: Path, file: str, problems: Problems, listed: list[Account]
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


def _check_header(header: list[str], file: str, line: int, problems: Problems) -> bool:
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
                f'header: unknown column "{name}"{suggest(name, ACCOUNT_FIELDS)} '
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


def _inline_accounts(
    reader: YamlReader, node: SequenceNode, listed: list[Account]
) -> list[Account]:
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
            _account(values, reader.file, node_line(item), reader.problems, "accounts: ")
            if ok
            else None
        )
        if account is not None:
            accounts.append(account)
        _note_listed(listed, account, values, node_line(item))
    return accounts


def _check_unique(accounts: list[Account], file: str, problems: Problems) -> None:
    """Report source users listed twice or mapping to the same Airflow task-group id."""
    by_user: dict[str, Account] = {}
    by_group: dict[str, Account] = {}
    for account in accounts:
        first = by_user.setdefault(account.source_user.casefold(), account)
        other = by_group.setdefault(account.group_id, account)
        if first is not account:
            problems.add(  # the value is not shown: it may be a password in the wrong column
                file,
                account.line,
                f"source_user: listed twice (lines {first.line} and {account.line}); each source "
                "mailbox may appear once",
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


def read_accounts(reader: YamlReader, node: Node, plan_path: Path) -> list[Account]:
    """The valid accounts that the plan's ``accounts`` value names: a CSV file (relative to the
    plan) or an inline list. Every problem, duplicates included, goes to ``reader``.

    :param plan_path: the plan file; a CSV name is resolved against its directory.
    """
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
        try:
            csv_path = plan_path.parent / Path(csv_name).expanduser()
        except RuntimeError:  # "~someone/..." of a user this machine does not know
            reader.problem(node, f"accounts: {csv_name!r}: no home directory for its ~user")
            return []
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
        except ValueError:  # a NUL character in the name
            reader.problem(node, f"accounts: {csv_name!r} is not a file name")
            return []
        if not accounts and not any(p.file == file for p in reader.problems.items):
            reader.problems.add(file, 1, f"no accounts; add a line per account below {CSV_HEADER}")
    _check_unique(listed, file, reader.problems)
    return accounts
