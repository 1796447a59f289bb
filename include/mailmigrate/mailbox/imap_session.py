"""Opening an IMAP session: TLS, STARTTLS, and the four ways to log in.

Security defaults to implicit TLS with certificate verification; plain text only when the
connection says ``security: none``. A server that does not offer STARTTLS when it is required is
refused, never silently used in clear text.
"""

from __future__ import annotations

import imaplib
import ssl

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from mailmigrate.connections import Endpoint
from mailmigrate.mailbox.base import AuthenticationFailed, MailboxError

SECURITY_MODES = ("ssl", "starttls", "none")
AUTH_MODES = ("login", "master", "authzid", "xoauth2")
DEFAULT_PORTS = {"ssl": 993, "starttls": 143, "none": 143}

# Exceptions that mean the connection is gone or unusable: retry after reconnecting.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # includes socket.timeout, ConnectionError, ssl.SSLError
    imaplib.IMAP4.abort,
    EOFError,
)


def tls_context(endpoint: Endpoint) -> ssl.SSLContext:
    """A verifying TLS context, with the connection's own CA file when it names one."""
    return ssl.create_default_context(cafile=endpoint.option("ca_file") or None)


def open_session(endpoint: Endpoint, user: str, password: str | None, label: str) -> IMAPClient:
    """Connect to the endpoint and log in as ``user``; the returned client is ready to use.

    :param password: the account's own password (or XOAUTH2 token); ``None`` to log in with the
        connection's admin credentials as the connection's ``auth`` extra says.
    :raises AuthenticationFailed: the server refused the credentials.
    :raises MailboxError: anything else, with the cause, never a secret.
    """
    security = str(endpoint.option("security", "ssl")).lower()
    if security not in SECURITY_MODES:
        raise MailboxError(
            f"{label}: connection {endpoint.conn_id!r}: security {security!r} is not one of "
            f"{', '.join(SECURITY_MODES)}"
        )
    port = endpoint.port or DEFAULT_PORTS[security]
    timeout = float(endpoint.option("timeout", 120))
    where = f"{endpoint.host}:{port}"
    try:
        client = IMAPClient(
            endpoint.host,
            port=port,
            ssl=security == "ssl",
            ssl_context=tls_context(endpoint) if security == "ssl" else None,
            timeout=timeout,
        )
    except ssl.SSLError as exc:
        raise MailboxError(f"{label}: TLS with {where} failed: {exc.reason or exc}") from None
    except OSError as exc:
        raise MailboxError(
            f"{label}: cannot connect to {where}: {exc.strerror or exc}", retryable=True
        ) from None
    client.normalise_times = False
    try:
        if security == "starttls":
            if not client.has_capability("STARTTLS"):
                raise MailboxError(
                    f"{label}: {where} does not offer STARTTLS; refusing to log in in clear text "
                    "(set security: none on the connection only for a trusted network)"
                )
            client.starttls(tls_context(endpoint))
        _login(client, endpoint, user, password, label)
        if client.has_capability("CONDSTORE"):
            client.enable("CONDSTORE")
    except MailboxError:
        _quietly_close(client)
        raise
    except ssl.SSLError as exc:
        _quietly_close(client)
        raise MailboxError(f"{label}: STARTTLS with {where} failed: {exc.reason or exc}") from None
    except TRANSIENT_ERRORS as exc:
        _quietly_close(client)
        raise MailboxError(f"{label}: connection to {where} lost: {exc}", retryable=True) from None
    return client


def _login(client: IMAPClient, endpoint: Endpoint, user: str, password: str | None, label: str):
    auth = str(endpoint.option("auth", "master" if password is None else "login")).lower()
    if auth not in AUTH_MODES:
        raise MailboxError(
            f"{label}: connection {endpoint.conn_id!r}: auth {auth!r} is not one of {', '.join(AUTH_MODES)}"
        )
    admin, admin_secret = endpoint.login, endpoint.password
    try:
        if auth == "xoauth2":
            token = password if password is not None else admin_secret
            if not token:
                raise MailboxError(f"{label}: no XOAUTH2 token for {user}")
            client.oauth2_login(user, token)
        elif password is not None:
            client.login(user, password)
        elif not admin or not admin_secret:
            raise MailboxError(
                f"{label}: {user} has no password in the accounts file and connection "
                f"{endpoint.conn_id!r} has no admin login and password"
            )
        elif auth == "master":
            separator = endpoint.option("master_separator", "*")
            client.login(f"{user}{separator}{admin}", admin_secret)
        elif auth == "authzid":
            client.plain_login(admin, admin_secret, authorization_identity=user)
        else:
            raise MailboxError(
                f"{label}: {user} has no password and connection {endpoint.conn_id!r} uses "
                "auth: login; give the account's password or use auth master/authzid"
            )
    except (LoginError, IMAPClientError) as exc:
        how = (
            "with its own password" if password is not None else f"with admin credentials ({auth})"
        )
        reason = _server_text(exc, secrets=(password, admin_secret))
        raise AuthenticationFailed(f"{label}: login as {user} {how} refused: {reason}") from None


def _server_text(exc: BaseException, secrets: tuple[str | None, ...]) -> str:
    text = str(exc)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _quietly_close(client: IMAPClient) -> None:
    try:
        client.shutdown()
    except Exception:
        pass
