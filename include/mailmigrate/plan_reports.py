"""The plan's ``reports`` and ``approval`` sections: where owner reports go, whether their owners
get them by mail, what mail clients need to know about the destination, and which pilot accounts
a human reviews before the full run. Each value keeps its line for ``file:line`` problems; the
Airflow layer (``mailmigrate_airflow.reports``, ``.approval``) acts on them.

::

    reports:
      url: s3://bucket/mailmigrate        # default $MAILMIGRATE_REPORTS_URL or $AIRFLOW_HOME/...
      conn_id: aws_default                # the storage's Airflow connection (optional)
      compare: true                       # list both sides after each copy for verified counts
      templates: mail_templates           # folder (relative to the plan) overriding mail templates
      client_settings:
        imap: {host: imap.new.example, port: 993, security: ssl}
        smtp: {host: smtp.new.example, port: 587, security: starttls}
        autoconfig: https://autoconfig.new.example/mail/config-v1.1.xml
      mail_owners: {smtp_connection: smtp_default, from: it@example.com, after: [delta_copy]}
    approval:
      accounts: [ceo@example.com, big@example.com]   # the pilots, by source user
      after: initial_copy                 # or test
      timeout: 3d
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from yaml.nodes import Node, ScalarNode

from mailmigrate.plan_model import (
    APPROVAL_AFTER,
    APPROVAL_KEYS,
    CLIENT_SETTINGS_KEYS,
    OWNER_MAIL_KEYS,
    OWNER_MAIL_STEPS,
    REPORT_KEYS,
    SECURITY_CHOICES,
    SERVER_SETTINGS_KEYS,
    Account,
    Approval,
    ClientSettings,
    OwnerMail,
    ReportOptions,
    ServerSettings,
)
from mailmigrate.plan_yaml import YamlReader, given, is_ip, node_line, suggest, valid_domain

_CONN_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+$|^[^<>]*<[^@\s<>]+@[^@\s<>]+>$")


def read_reports(reader: YamlReader, node: Node, plan_path: Path) -> ReportOptions | None:
    """The ``reports`` section; ``reports: false`` turns owner reports off."""
    if isinstance(node, ScalarNode):
        enabled = reader.boolean(node, "reports")
        return None if enabled is None else ReportOptions(enabled=enabled)
    fields = reader.mapping(node, "reports", REPORT_KEYS)
    if fields is None:
        return None
    values: dict[str, Any] = {}
    ok = True
    for key in ("enabled", "compare"):
        if (value_node := given(fields, key)) is not None:
            values[key] = reader.boolean(value_node, f"reports.{key}")
            ok = ok and values[key] is not None
    if (url_node := given(fields, "url")) is not None:
        url = reader.text(url_node, "reports.url", ", e.g. s3://bucket/reports or /srv/reports")
        ok = ok and url is not None
        if url is not None and not _URL.match(url):
            try:
                url = str((plan_path.parent / Path(url).expanduser()).resolve())
            except (RuntimeError, ValueError):  # "~someone" unknown here, or a NUL character
                reader.problem(url_node, f"reports.url: {url!r} is not a usable path")
                url, ok = None, False
        values["url"] = url
    if (conn_node := given(fields, "conn_id")) is not None:
        values["conn_id"] = _matching(reader, conn_node, "reports.conn_id", _CONN_ID,
                                      "a connection id", " (an Airflow connection id)")  # fmt: skip
        ok = ok and values["conn_id"] is not None
    if (templates_node := given(fields, "templates")) is not None:
        values["templates"] = _folder(reader, templates_node, plan_path)
        ok = ok and values["templates"] is not None
    if (settings_node := given(fields, "client_settings")) is not None:
        values["client_settings"] = _client_settings(reader, settings_node)
        ok = ok and values["client_settings"] is not None
    if (mail_node := given(fields, "mail_owners")) is not None:
        mail = _owner_mail(reader, mail_node)
        ok = ok and mail is not False
        values["mail_owners"] = mail or None
    return ReportOptions(**values) if ok else None


def _matching(
    reader: YamlReader, node: Node, where: str, pattern: re.Pattern[str], what: str, hint: str = ""
) -> str | None:
    """The node's text when ``pattern`` matches it; else report ``"<text>" is not <what>``."""
    text = reader.text(node, where, hint)
    if text is not None and not pattern.match(text):
        reader.problem(node, f'{where}: "{text}" is not {what}')
        return None
    return text


def _folder(reader: YamlReader, node: Node, plan_path: Path) -> Path | None:
    text = reader.text(node, "reports.templates", " (a folder, relative to the plan)")
    if text is None:
        return None
    try:
        folder = plan_path.parent / Path(text).expanduser()
    except RuntimeError:  # "~someone" this machine does not know
        reader.problem(node, f"reports.templates: {text!r}: no home directory for its ~user")
        return None
    if not folder.is_dir():
        reader.problem(node, f'reports.templates: "{text}" is not a folder (looked in {folder})')
        return None
    return folder


def _client_settings(reader: YamlReader, node: Node) -> ClientSettings | None:
    fields = reader.mapping(node, "reports.client_settings", CLIENT_SETTINGS_KEYS)
    if fields is None:
        return None
    values: dict[str, Any] = {}
    ok = True
    for key in ("imap", "smtp"):
        if (server_node := given(fields, key)) is not None:
            values[key] = _server(reader, server_node, f"reports.client_settings.{key}")
            ok = ok and values[key] is not None
    if (auto_node := given(fields, "autoconfig")) is not None:
        url = reader.text(auto_node, "reports.client_settings.autoconfig", " (a URL)")
        if url is not None and not url.lower().startswith(("https://", "http://")):
            reader.problem(auto_node, f'reports.client_settings.autoconfig: "{url}" is not a URL')
            url = None
        ok = ok and url is not None
        values["autoconfig"] = url
    return ClientSettings(**values) if ok else None


def _server(reader: YamlReader, node: Node, where: str) -> ServerSettings | None:
    example = ", e.g. {host: imap.new.example, port: 993, security: ssl}"
    fields = reader.mapping(node, where, SERVER_SETTINGS_KEYS, example)
    if fields is None:
        return None
    host = None
    if "host" not in fields:
        reader.problem(node, f"{where}.host: missing{example}")
    elif (text := reader.text(fields["host"], f"{where}.host")) is not None:
        host = text if is_ip(text) else valid_domain(text)
        if host is None:
            reader.problem(fields["host"], f'{where}.host: "{text}" is not a host name')
    port = None
    if (port_node := given(fields, "port")) is not None:
        port = reader.integer(port_node, f"{where}.port", 1)
        if port is not None and port > 65535:
            reader.problem(port_node, f"{where}.port: {port} is not a port (1-65535)")
            port = None
        if port is None:
            host = None
    security = "ssl"
    if (security_node := given(fields, "security")) is not None:
        security = _choice(reader, security_node, f"{where}.security", SECURITY_CHOICES)
    if host is None or security is None:
        return None
    return ServerSettings(host=host, port=port, security=security)


def _owner_mail(reader: YamlReader, node: Node) -> OwnerMail | None | bool:
    """``mail_owners``: a mapping, or ``true`` for the defaults; ``None`` for off, ``False`` bad."""
    if isinstance(node, ScalarNode):
        on = reader.boolean(node, "reports.mail_owners")
        if on is None:
            return False
        return OwnerMail(line=node_line(node)) if on else None
    fields = reader.mapping(node, "reports.mail_owners", OWNER_MAIL_KEYS)
    if fields is None:
        return False
    values: dict[str, Any] = {"line": node_line(node)}
    ok = True
    if (conn_node := given(fields, "smtp_connection")) is not None:
        values["smtp_connection"] = _matching(reader, conn_node,
            "reports.mail_owners.smtp_connection", _CONN_ID, "a connection id")  # fmt: skip
        ok = ok and values["smtp_connection"] is not None
    if (from_node := given(fields, "from")) is not None:
        values["sender"] = _matching(reader, from_node, "reports.mail_owners.from", _ADDRESS,
                                     "a mail address", ", e.g. it@example.com")  # fmt: skip
        ok = ok and values["sender"] is not None
    if (after_node := given(fields, "after")) is not None:
        steps = _choices(reader, after_node, "reports.mail_owners.after", OWNER_MAIL_STEPS)
        ok = ok and steps is not None
        values["after"] = steps
    return OwnerMail(**values) if ok else False


def read_approval(reader: YamlReader, node: Node, accounts: Iterable[Account]) -> Approval | None:
    """The ``approval`` section; its pilot accounts must be accounts of the plan (not all)."""
    example = ", e.g. approval: {accounts: [ceo@example.com], after: initial_copy}"
    fields = reader.mapping(node, "approval", APPROVAL_KEYS, example)
    if fields is None:
        return None
    ok = True
    known = {account.source_user for account in accounts}
    pilots: list[str] = []
    if "accounts" not in fields:
        reader.problem(
            node, "approval.accounts: missing; list the pilot accounts (source users) whose "
            "owners review the test migration"
        )  # fmt: skip
        ok = False
    else:
        items = reader.texts(fields["accounts"], "approval.accounts", "[ceo@example.com]")
        ok = ok and bool(items)
        if items == []:
            reader.problem(fields["accounts"], "approval.accounts: must list at least one account")
        for item, user in items or []:
            if user not in known:
                hint = suggest(user, sorted(known)) or " (use source users of the accounts list)"
                reader.problem(item, f'approval.accounts: "{user}" is not an account of this plan{hint}')  # fmt: skip
                ok = False
            elif user not in pilots:
                pilots.append(user)
        if ok and known and set(pilots) == known:
            reader.problem(
                fields["accounts"],
                "approval.accounts: lists every account, so no account is left for the approval "
                "to gate; list only the pilot accounts",
            )
            ok = False
    values: dict[str, Any] = {"line": node_line(node)}
    if (after_node := given(fields, "after")) is not None:
        values["after"] = _choice(reader, after_node, "approval.after", APPROVAL_AFTER)
        ok = ok and values["after"] is not None
    for key in ("subject", "body"):
        if (text_node := given(fields, key)) is not None:
            values[key] = reader.text(text_node, f"approval.{key}")
            ok = ok and values[key] is not None
    if (approvers_node := given(fields, "approvers")) is not None:
        items = reader.texts(approvers_node, "approval.approvers", "[admin, alice]")
        ok = ok and items is not None
        values["approvers"] = tuple(text for _, text in items or [])
    if (timeout_node := given(fields, "timeout")) is not None:
        values["timeout"] = reader.duration(timeout_node, "approval.timeout")
        ok = ok and values["timeout"] is not None
    return Approval(accounts=tuple(pilots), **values) if ok else None


def _choice(reader: YamlReader, node: Node, where: str, choices: tuple[str, ...]) -> str | None:
    text = reader.text(node, where, f" ({', '.join(choices)})")
    if text is not None and text not in choices:
        reader.problem(
            node, f'{where}: "{text}" is not one of {", ".join(choices)}{suggest(text, choices)}'
        )
        return None
    return text


def _choices(
    reader: YamlReader, node: Node, where: str, choices: tuple[str, ...]
) -> tuple[str, ...] | None:
    """A list of choices, or one choice alone."""
    if isinstance(node, ScalarNode):
        one = _choice(reader, node, where, choices)
        return None if one is None else (one,)
    items = reader.texts(node, where, f"[{', '.join(choices)}]")
    if items is None:
        return None
    picked = [_choice(reader, item, where, choices) for item, _ in items]
    if not items:
        reader.problem(node, f"{where}: must name at least one of {', '.join(choices)}")
        return None
    if None in picked:
        return None
    return tuple(dict.fromkeys(p for p in picked if p))
