"""Server endpoints: where a side of the migration lives and how to log in to it.

An endpoint is built from an Airflow connection (by the hooks in ``mailmigrate_airflow``) or, for
the CLI, from the same connection given as ``AIRFLOW_CONN_<ID>`` in Airflow's JSON form.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

KINDS = ("imap", "ews")


class ConnectionConfigError(ValueError):
    """A connection is missing or malformed; the text names the connection id."""


@dataclass(frozen=True)
class Endpoint:
    """One server side, from one connection.

    :param conn_id: the Airflow connection id (for messages).
    :param kind: ``imap`` or ``ews``.
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
