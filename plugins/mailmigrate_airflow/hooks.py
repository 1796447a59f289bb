"""Hooks for the ``imap``, ``ews`` and ``dav`` connection types: an Airflow connection -> an Endpoint.

A hook does not talk to the server: the engine's mailbox adapters do, per account. The hook reads
the connection (Admin -> Connections, a secrets backend or ``AIRFLOW_CONN_<ID>``), checks its
extras and hands the engine a :class:`mailmigrate.connections.Endpoint`::

    with MailboxImapHook("acme_old") as hook:
        endpoint = hook.get_endpoint()

The connection form (extra fields, labels, placeholders) is declared in
:mod:`mailmigrate_airflow.provider`; ``get_ui_field_behaviour`` returns the same behaviour.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, ClassVar

from airflow.sdk import BaseHook

from mailmigrate import connections
from mailmigrate.connections import Endpoint, endpoint_from_dict
from mailmigrate.errors import ConnectionConfigError
from mailmigrate.redact import MIN_MASKED_LENGTH
from mailmigrate_airflow.provider import (
    DAV_CONN_FIELDS,
    DAV_UI_FIELD_BEHAVIOUR,
    EWS_CONN_FIELDS,
    EWS_UI_FIELD_BEHAVIOUR,
    IMAP_CONN_FIELDS,
    IMAP_UI_FIELD_BEHAVIOUR,
)


def _ui_behaviour(declared: dict[str, Any]) -> dict[str, Any]:
    """The provider's kebab-case ``ui-field-behaviour`` in the hook method's snake_case form."""
    return {
        "hidden_fields": list(declared["hidden-fields"]),
        "relabeling": dict(declared["relabeling"]),
        "placeholders": dict(declared["placeholders"]),
    }


class MailboxHook(BaseHook):
    """Common part of the mailbox hooks: read a connection and turn it into an Endpoint.

    :param conn_id: the Airflow connection id (conn_type :attr:`conn_type`).
    """

    conn_type: ClassVar[str]
    conn_fields: ClassVar[dict[str, dict[str, Any]]]
    ui_field_behaviour: ClassVar[dict[str, Any]]

    def __init__(self, conn_id: str | None = None, logger_name: str | None = None) -> None:
        super().__init__(logger_name=logger_name)
        self.conn_id = conn_id or self.default_conn_name
        self._endpoint: Endpoint | None = None

    def __enter__(self) -> MailboxHook:
        self.get_endpoint()
        return self

    def __exit__(self, *exc: object) -> None:
        self._endpoint = None  # drop the reference to the password as soon as it is not needed

    def get_conn(self) -> Endpoint:
        """The endpoint (hooks' conventional accessor)."""
        return self.get_endpoint()

    def get_endpoint(self) -> Endpoint:
        """The connection as an Endpoint; raises ConnectionConfigError naming the connection."""
        if self._endpoint is None:
            connection = self.get_connection(self.conn_id)
            self._endpoint = endpoint_from_connection(connection, expect=self.conn_type)
        return self._endpoint

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Hidden, relabelled and placeholder fields of the connection form."""
        return _ui_behaviour(cls.ui_field_behaviour)

    @classmethod
    def check_extra(cls, conn_id: str, extra: dict[str, Any]) -> dict[str, Any]:
        """The extras with unknown values refused and form values (strings) typed.

        Airflow's form stores unset fields as null and older forms prefix field names with
        ``extra__<conn_type>__``; both are accepted.
        """
        prefix = f"extra__{cls.conn_type}__"
        checked: dict[str, Any] = {}
        for key, value in extra.items():
            name = key.removeprefix(prefix)
            if value is None or value == "":
                continue
            field = cls.conn_fields.get(name)
            if field is None:
                checked[name] = value  # not ours to judge: the adapter may know it
                continue
            checked[name] = _typed(conn_id, name, value, field["schema"])
        return checked


class MailboxImapHook(MailboxHook):
    """An IMAP server: host, port, admin login/password and extras ``security`` (ssl, starttls,
    none), ``ca_file``, ``auth`` (login, master, authzid, xoauth2), ``master_separator``,
    ``timeout`` and ``compress``."""

    conn_name_attr = "imap_conn_id"
    default_conn_name = "imap_default"
    conn_type = "imap"
    hook_name = "IMAP mailbox server"
    conn_fields = IMAP_CONN_FIELDS
    ui_field_behaviour = IMAP_UI_FIELD_BEHAVIOUR

    def __init__(self, imap_conn_id: str = default_conn_name, logger_name: str | None = None):
        super().__init__(imap_conn_id, logger_name=logger_name)
        self.imap_conn_id = imap_conn_id


class ExchangeHook(MailboxHook):
    """An Exchange server over EWS: host, admin login/password (or OAuth2 client secret) and
    extras ``auth``, ``service_endpoint``, ``autodiscover``, ``impersonation``, ``ca_file``,
    ``max_wait``, ``max_connections``, ``client_id`` and ``tenant_id``."""

    conn_name_attr = "ews_conn_id"
    default_conn_name = "ews_default"
    conn_type = "ews"
    hook_name = "Exchange Web Services (EWS)"
    conn_fields = EWS_CONN_FIELDS
    ui_field_behaviour = EWS_UI_FIELD_BEHAVIOUR

    def __init__(self, ews_conn_id: str = default_conn_name, logger_name: str | None = None):
        super().__init__(ews_conn_id, logger_name=logger_name)
        self.ews_conn_id = ews_conn_id


class DavHook(MailboxHook):
    """A CalDAV/CardDAV server for the plan's ``groupware`` section: host, port, an optional
    admin login/password and extras ``path``, ``security`` (ssl, none), ``ca_file`` and
    ``principal_path``; accounts with a password in the accounts file log in themselves, the
    others through the admin login (``DavEndpoint.from_connection``)."""

    conn_name_attr = "dav_conn_id"
    default_conn_name = "dav_default"
    conn_type = "dav"
    hook_name = "CalDAV/CardDAV (calendars, contacts, tasks)"
    conn_fields = DAV_CONN_FIELDS
    ui_field_behaviour = DAV_UI_FIELD_BEHAVIOUR

    def __init__(self, dav_conn_id: str = default_conn_name, logger_name: str | None = None):
        super().__init__(dav_conn_id, logger_name=logger_name)
        self.dav_conn_id = dav_conn_id


HOOKS: dict[str, type[MailboxHook]] = {
    "imap": MailboxImapHook,
    "ews": ExchangeHook,
    "dav": DavHook,
}


def endpoint_from_connection(connection: Any, expect: str | None = None) -> Endpoint:
    """An Endpoint from an Airflow ``Connection``.

    :param expect: the conn_type the caller needs (``imap``/``ews``/``dav``), or ``None`` for any.
    """
    conn_id = connection.conn_id
    kind = (connection.conn_type or "").lower()
    hook = HOOKS.get(kind)
    if hook is None or (expect and kind != expect):
        wanted = expect or " or ".join(HOOKS)
        raise ConnectionConfigError(
            f"connection {conn_id!r}: conn_type is {connection.conn_type!r}; it must be {wanted}"
        )
    extra = hook.check_extra(conn_id, _extras(connection))
    return endpoint_from_dict(
        conn_id,
        {
            "conn_type": kind,
            "host": connection.host,
            "port": connection.port,
            "login": connection.login,
            "password": connection.password,
            "extra": extra,
        },
    )


def _extras(connection: Any) -> dict[str, Any]:
    """The connection's extras from their JSON text: not ``extra_dejson``, which hands every
    value to the secrets masker (see :func:`_extras_not_secret`)."""
    raw = connection.extra
    if isinstance(raw, dict):
        return dict(raw)
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ConnectionConfigError(
            f"connection {connection.conn_id!r}: extra is not a JSON object"
        )
    return value


def get_endpoint(conn_id: str) -> Endpoint:
    """The Endpoint of a connection of either type (the operators' entry point)."""
    with _extras_not_secret():
        connection = BaseHook.get_connection(conn_id)
    shortest = MIN_MASKED_LENGTH
    with suppress(Exception):  # outside a configured Airflow: the default
        from airflow.sdk.configuration import conf

        shortest = conf.getint("logging", "min_length_masked_secret", fallback=shortest)
    if connection.password and len(connection.password) < shortest:
        logging.getLogger(__name__).warning(
            "connection %r: its password is shorter than %d characters, so logs do not mask it",
            conn_id,
            shortest,
        )
    return endpoint_from_connection(connection)


@contextmanager
def _extras_not_secret() -> Iterator[None]:
    """Read a connection without Airflow's "Skipping masking for a secret as it's too short".

    Airflow hands every value of a connection's extras to the secrets masker (``extra_dejson``,
    also when it caches the connection), and the masker warns about the first value too short
    to mask: "ssl" or "none" here, which are settings, not secrets. That warning opened every
    task log. It is held back while the connection is read, and only then; a connection
    password too short to be masked is named in a warning of its own (:func:`get_endpoint`).
    """
    try:
        from airflow.sdk._shared.secrets_masker.secrets_masker import SecretsMasker
    except ImportError:  # another Airflow layout: its warning stays
        yield
        return
    warned = SecretsMasker._has_warned_short_secret
    SecretsMasker._has_warned_short_secret = True
    try:
        yield
    finally:
        SecretsMasker._has_warned_short_secret = warned


def _typed(conn_id: str, name: str, value: Any, schema: dict[str, Any]) -> Any:
    """A form value typed by its field's JSON schema, by the engine's one set of rules."""
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    if "boolean" in types:
        return connections.flag(conn_id, name, value)
    for kind, typed in (("integer", int), ("number", float)):
        if kind in types:
            if isinstance(value, int | float) and not isinstance(value, bool):
                typed = type(value) if kind == "number" else int
            return connections.number(conn_id, name, value, typed, minimum=schema.get("minimum"))
    if "enum" in schema:
        return connections.choice(conn_id, name, value, schema["enum"])
    return value
