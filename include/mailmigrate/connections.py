"""Server endpoints: where a side of the migration lives and how to log in to it.

An endpoint is built from an Airflow connection (by the hooks in ``mailmigrate_airflow``) or, for
the CLI, from the same connection given as ``AIRFLOW_CONN_<ID>`` in Airflow's JSON form.

This module is the one parser of connection settings: the hooks, the IMAP session, the EWS
connector and the DAV endpoint read extras through :func:`flag`, :func:`number` and
:func:`choice` (or the :class:`Endpoint` methods of the same names), so the CLI and Airflow
accept the same connections. Rules: booleans are ``true/false``, ``yes/no``, ``on/off``, ``1/0``
(any case) or JSON booleans; numbers are JSON numbers or their text, never booleans; choices are
compared in lower case. A value that breaks a rule raises :class:`ConnectionConfigError` naming
the connection, the field and the value (never the password).
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mailmigrate.errors import ConnectionConfigError

KINDS = ("imap", "ews", "dav")
N = TypeVar("N", int, float)


@dataclass(frozen=True)
class Endpoint:
    """One server side, from one connection.

    :param conn_id: the Airflow connection id (for messages).
    :param kind: ``imap``, ``ews`` or ``dav`` (CalDAV/CardDAV, :mod:`mailmigrate.groupware`).
    :param login: admin login used for accounts without a password of their own.
    :param extra: the connection's extras (``security``, ``ca_file``, ``auth``, ...).
    """

    conn_id: str
    kind: str
    host: str
    port: int | None = None
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    extra: dict[str, Any] = field(default_factory=dict)

    def option(self, key: str, default: Any = None) -> Any:
        return self.extra.get(key, default)

    def flag(self, name: str, default: bool) -> bool:
        """The boolean extra ``name`` (:func:`flag`); ``default`` when unset or empty."""
        value = self.extra.get(name)
        return default if _unset(value) else flag(self.conn_id, name, value)

    def number(
        self,
        name: str,
        default: N | None,
        kind: type[N],
        minimum: float | None = None,
        above: float | None = None,
    ) -> N | None:
        """The numeric extra ``name`` (:func:`number`); ``default`` when unset or empty."""
        value = self.extra.get(name)
        if _unset(value):
            return default
        return number(self.conn_id, name, value, kind, minimum=minimum, above=above)

    def choice(self, name: str, choices: Collection[str], default: str | None) -> str | None:
        """The extra ``name``, one of ``choices`` (:func:`choice`); ``default`` when unset."""
        value = self.extra.get(name)
        return default if _unset(value) else choice(self.conn_id, name, value, choices)


TRUE = frozenset({"true", "yes", "on", "1"})
FALSE = frozenset({"false", "no", "off", "0"})


def _unset(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def flag(conn_id: str, name: str, value: Any) -> bool:
    """``value`` as a boolean by the rules above."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, str | int) else None
    if text not in TRUE | FALSE:
        raise ConnectionConfigError(
            f"connection {conn_id!r}: extra {name} must be true or false, not {value!r}"
        )
    return text in TRUE


def number(
    conn_id: str,
    name: str,
    value: Any,
    kind: type[N],
    minimum: float | None = None,
    above: float | None = None,
) -> N:
    """``value`` as an ``int`` or ``float`` (``kind``), at least ``minimum``, more than ``above``."""
    where = f"connection {conn_id!r}: extra {name}"
    wanted = "a whole number" if kind is int else "a number"
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConnectionConfigError(f"{where} must be {wanted}, not {value!r}")
    try:
        typed = kind(value.strip() if isinstance(value, str) else value)
    except (ValueError, OverflowError):
        raise ConnectionConfigError(f"{where} must be {wanted}, not {value!r}") from None
    if kind is int and isinstance(value, float) and typed != value:
        raise ConnectionConfigError(f"{where} must be {wanted}, not {value!r}")
    if typed != typed or typed in (float("inf"), float("-inf")):  # NaN, infinity
        raise ConnectionConfigError(f"{where} must be {wanted}, not {value!r}")
    if minimum is not None and typed < minimum:
        raise ConnectionConfigError(f"{where} must be at least {minimum}, not {typed}")
    if above is not None and typed <= above:
        raise ConnectionConfigError(f"{where} must be more than {above}, not {typed}")
    return typed


def choice(conn_id: str, name: str, value: Any, choices: Collection[str]) -> str:
    """``value`` in lower case, one of ``choices``."""
    text = str(value).strip().lower()
    if text not in choices:
        raise ConnectionConfigError(
            f"connection {conn_id!r}: extra {name} must be one of {', '.join(choices)}, "
            f"not {value!r}"
        )
    return text


def endpoint_from_dict(conn_id: str, data: dict[str, Any]) -> Endpoint:
    """An endpoint from Airflow's JSON connection form (``conn_type``, ``host``, ...)."""
    kind = str(data.get("conn_type") or "").lower()
    if kind not in KINDS:
        raise ConnectionConfigError(
            f"connection {conn_id!r}: conn_type must be one of {', '.join(KINDS)}, not {kind!r}"
        )
    host = data.get("host")
    if not host:
        raise ConnectionConfigError(f"connection {conn_id!r}: host is missing")
    extra = data.get("extra") or {}
    if isinstance(extra, str):
        try:
            extra = json.loads(extra) if extra.strip() else {}
        except json.JSONDecodeError as exc:
            raise ConnectionConfigError(
                f"connection {conn_id!r}: extra is not JSON ({exc.msg})"
            ) from None
    if not isinstance(extra, dict):
        raise ConnectionConfigError(f"connection {conn_id!r}: extra must be a JSON object")
    port = data.get("port")
    try:
        port = int(port) if port not in (None, "") else None
    except (TypeError, ValueError):
        raise ConnectionConfigError(
            f"connection {conn_id!r}: port {port!r} is not a number"
        ) from None
    return Endpoint(
        conn_id=conn_id,
        kind=kind,
        host=str(host),
        port=port,
        login=data.get("login") or None,
        password=data.get("password") or None,
        extra=extra,
    )


def endpoint_from_env(conn_id: str, environ: dict[str, str] | None = None) -> Endpoint:
    """The endpoint of ``AIRFLOW_CONN_<CONN_ID>`` (JSON form), as the CLI reads it."""
    environ = os.environ if environ is None else environ
    var = f"AIRFLOW_CONN_{conn_id.upper()}"
    raw = environ.get(var)
    if raw is None:
        raise ConnectionConfigError(
            f"connection {conn_id!r}: set {var} to the connection in Airflow's JSON form, "
            '{"conn_type": "imap", "host": ..., "port": ..., "login": ..., "password": ..., "extra": {...}}'
        )
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        raise ConnectionConfigError(
            f"connection {conn_id!r}: {var} is not JSON; use Airflow's JSON connection form"
        ) from None
    if not isinstance(data, dict):
        raise ConnectionConfigError(f"connection {conn_id!r}: {var} must be a JSON object")
    return endpoint_from_dict(conn_id, data)
