"""Provider metadata: registers the ``imap``, ``ews`` and ``dav`` connection types with Airflow.

Airflow finds this through the ``apache_airflow_provider`` entry point in ``pyproject.toml`` and
calls :func:`get_provider_info` while it reads its own configuration, so this module is pure data:
it must not import Airflow (nor anything slow). The connection form's extra fields are declared
here (``conn-fields``, the Airflow 3.2+ way, which needs no Flask/WTForms import) and the hooks
expose the same dicts through ``get_ui_field_behaviour``.
"""

from __future__ import annotations

from typing import Any

PACKAGE_NAME = "mailmigrate"  # must equal the distribution name in pyproject.toml
INTEGRATION = "Mailbox migration"


def _text(label: str, description: str, default: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": ["string", "null"]}
    if default is not None:
        schema["default"] = default
    return {"label": label, "description": description, "schema": schema}


def _choice(label: str, description: str, values: list[str], default: str | None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": ["string", "null"], "enum": values}
    if default is not None:
        schema["default"] = default
    return {"label": label, "description": description, "schema": schema}


def _number(label: str, description: str, kind: str = "integer") -> dict[str, Any]:
    return {
        "label": label,
        "description": description,
        "schema": {"type": [kind, "null"], "minimum": 1},
    }


def _flag(label: str, description: str) -> dict[str, Any]:
    # No default: the form would store false, which is not the same as "unset" for the adapters.
    return {"label": label, "description": description, "schema": {"type": ["boolean", "null"]}}


IMAP_CONN_FIELDS: dict[str, dict[str, Any]] = {
    "security": _choice(
        "Security",
        "ssl: implicit TLS (port 993); starttls: upgrade a plain connection (port 143); none: "
        "plain text, for loopback tests only.",
        ["ssl", "starttls", "none"],
        "ssl",
    ),
    "ca_file": _text(
        "CA file", "PEM file of the CA that signed the server certificate (optional)."
    ),
    "auth": _choice(
        "Authentication",
        "How accounts log in. Empty: with their own password from the accounts file, else as "
        "master user. login: own passwords only; master: 'user<separator>admin' with the admin "
        "password above (Dovecot master user); authzid: SASL PLAIN as the admin on behalf of "
        "the user; xoauth2: OAuth2 access tokens (the account's password, else the one above).",
        ["login", "master", "authzid", "xoauth2"],
        None,
    ),
    "master_separator": _text(
        "Master user separator", "Separator between user and master login (auth = master).", "*"
    ),
    "timeout": _number("Timeout (s)", "Seconds to wait for the server before a retry (120)."),
    "compress": _flag(
        "Compression",
        "COMPRESS=DEFLATE (RFC 4978) when the server offers it. Empty: on; off for a server "
        "whose compression is broken or CPU-starved.",
    ),
}

EWS_CONN_FIELDS: dict[str, dict[str, Any]] = {
    "auth": _choice(
        "Authentication",
        "ntlm or basic with the login/password above or the accounts' own passwords; oauth2: "
        "client credentials (client id and tenant id below, the client secret as password). "
        "Empty: what exchangelib negotiates.",
        ["ntlm", "basic", "oauth2"],
        None,
    ),
    "service_endpoint": _text(
        "Service endpoint",
        "Full EWS URL, e.g. https://mail.example.com/EWS/Exchange.asmx (default: built from host).",
    ),
    "autodiscover": _flag("Autodiscover", "Find the EWS endpoint of each account by autodiscover."),
    "impersonation": _flag(
        "Impersonation",
        "Act as each account with the login above (ApplicationImpersonation role). Empty: only "
        "for accounts without a password of their own.",
    ),
    "ca_file": _text(
        "CA file", "PEM file of the CA that signed the server certificate (optional)."
    ),
    "max_wait": _number(
        "Max back-off (s)", "Longest wait after ErrorServerBusy before giving up (300).", "number"
    ),
    "max_connections": _number("Max connections", "Concurrent HTTP sessions per account."),
    "client_id": _text(
        "OAuth2 client id", "Application (client) id; the password holds the secret."
    ),
    "tenant_id": _text("OAuth2 tenant id", "Directory (tenant) id for auth = oauth2."),
}

DAV_CONN_FIELDS: dict[str, dict[str, Any]] = {
    "path": _text(
        "Path",
        "Where the CalDAV/CardDAV service starts discovery, e.g. /remote.php/dav (Nextcloud), "
        "/SOGo/dav, /dav.php (Baikal), / (Radicale, Xandikos).",
        "/",
    ),
    "security": _choice(
        "Security",
        "ssl: https (port 443); none: plain http, for loopback tests only.",
        ["ssl", "none"],
        "ssl",
    ),
    "ca_file": _text(
        "CA file", "PEM file of the CA that signed the server certificate (optional)."
    ),
    "principal_path": _text(
        "Principal path (admin login)",
        "With an admin login, each account's principal, {user} standing for it: /{user}/ "
        "(Radicale), /remote.php/dav/principals/users/{user}/ (Nextcloud), /SOGo/dav/{user}/ "
        "(SOGo). Accounts with a password in the accounts file log in themselves.",
    ),
}

IMAP_UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema"],
    "relabeling": {"login": "Admin login", "password": "Admin password"},
    "placeholders": {
        "host": "imap.example.com",
        "port": "993",
        "login": "admin user (master user / authzid), optional",
    },
}

EWS_UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema"],
    "relabeling": {"login": "Admin login", "password": "Admin password / client secret"},
    "placeholders": {
        "host": "mail.example.com",
        "port": "443",
        "login": "impersonation account, e.g. svc-migrate@example.com",
    },
}


DAV_UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    # Accounts with a password in the accounts file log in themselves; the others through the
    # admin login (a server's admin or delegated principal), as for mail.
    "hidden-fields": ["schema"],
    "relabeling": {"login": "Admin login", "password": "Admin password"},
    "placeholders": {
        "host": "dav.example.com",
        "port": "443",
        "login": "admin or delegate acting for the accounts, optional",
    },
}


def get_provider_info() -> dict[str, Any]:
    """The provider-info dict (``airflow/provider_info.schema.json``)."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "mailmigrate",
        "description": "Mailbox and groupware migrations (IMAP, Exchange Web Services, CalDAV/CardDAV) as DAGs.",
        "integrations": [{"integration-name": INTEGRATION, "tags": ["protocol"]}],
        "hooks": [
            {"integration-name": INTEGRATION, "python-modules": ["mailmigrate_airflow.hooks"]}
        ],
        "operators": [
            {"integration-name": INTEGRATION, "python-modules": ["mailmigrate_airflow.operators"]}
        ],
        "sensors": [
            {"integration-name": INTEGRATION, "python-modules": ["mailmigrate_airflow.sensors"]}
        ],
        "triggers": [
            {"integration-name": INTEGRATION, "python-modules": ["mailmigrate_airflow.triggers"]}
        ],
        "connection-types": [
            {
                "connection-type": "imap",
                "hook-class-name": "mailmigrate_airflow.hooks.MailboxImapHook",
                "hook-name": "IMAP mailbox server",
                "conn-fields": IMAP_CONN_FIELDS,
                "ui-field-behaviour": IMAP_UI_FIELD_BEHAVIOUR,
            },
            {
                "connection-type": "ews",
                "hook-class-name": "mailmigrate_airflow.hooks.ExchangeHook",
                "hook-name": "Exchange Web Services (EWS)",
                "conn-fields": EWS_CONN_FIELDS,
                "ui-field-behaviour": EWS_UI_FIELD_BEHAVIOUR,
            },
            {
                "connection-type": "dav",
                "hook-class-name": "mailmigrate_airflow.hooks.DavHook",
                "hook-name": "CalDAV/CardDAV (calendars, contacts, tasks)",
                "conn-fields": DAV_CONN_FIELDS,
                "ui-field-behaviour": DAV_UI_FIELD_BEHAVIOUR,
            },
        ],
    }
