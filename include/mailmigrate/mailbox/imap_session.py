"""Opening an IMAP session: TLS, STARTTLS, and the four ways to log in.

Security defaults to implicit TLS with certificate verification; plain text only when the
connection says ``security: none``. A server that does not offer STARTTLS when it is required is
refused, never silently used in clear text.
"""

from __future__ import annotations

import ast
import base64
import binascii
import imaplib
import re
import socket
import ssl
import struct

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from mailmigrate.connections import Endpoint
from mailmigrate.errors import AuthenticationFailed, ConnectionConfigError, MailboxError
from mailmigrate.mailbox import imap_compress
from mailmigrate.mailbox import imapclient_internals as internals
from mailmigrate.redact import MIN_MASKED_LENGTH

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
    """Connect to the endpoint and log in as ``user`` (and compress where offered); the
    returned client is ready to use (the adapter's ``connect`` enables CONDSTORE).

    :param password: the account's own password (or XOAUTH2 token); ``None`` to log in with the
        connection's admin credentials as the connection's ``auth`` extra says.
    :raises AuthenticationFailed: the server refused the credentials.
    :raises MailboxError: anything else, with the cause, never a secret.
    """
    try:  # settings first: a malformed connection never opens a socket
        security = endpoint.choice("security", SECURITY_MODES, "ssl")
        timeout = endpoint.number("timeout", 120.0, float, above=0)
        compress = endpoint.flag("compress", True)
        auth = endpoint.choice("auth", AUTH_MODES, "master" if password is None else "login")
    except ConnectionConfigError as exc:
        raise MailboxError(f"{label}: {exc}") from None
    port = endpoint.port or DEFAULT_PORTS[security]
    where = f"{endpoint.host}:{port}"
    try:
        client = internals.Client(
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
    except (imaplib.IMAP4.error, EOFError) as exc:
        # Closed before or instead of a greeting (a server restarting, "* BYE Too many
        # connections"): worth another try later.
        raise MailboxError(
            f"{label}: {where} gave no IMAP greeting: {exc}", retryable=True
        ) from None
    client.normalise_times = False
    try:
        if security == "starttls":
            _starttls(client, endpoint, where, label)
        _login(client, endpoint, auth, user, password, label)
        if compress and client.has_capability(imap_compress.CAPABILITY):
            imap_compress.start(client)
    except MailboxError:
        _quietly_close(client)
        raise
    except ssl.SSLError as exc:
        _quietly_close(client)
        raise MailboxError(f"{label}: STARTTLS with {where} failed: {exc.reason or exc}") from None
    except TRANSIENT_ERRORS as exc:
        abandon(client)
        raise MailboxError(f"{label}: connection to {where} lost: {exc}", retryable=True) from None
    except IMAPClientError as exc:
        _quietly_close(client)
        raise MailboxError(f"{label}: {where} refused the session: {exc}") from None
    return client


def _starttls(client: IMAPClient, endpoint: Endpoint, where: str, label: str) -> None:
    """Switch to TLS or refuse: never log in in clear text when the connection asks for TLS."""
    if not client.has_capability("STARTTLS"):
        raise MailboxError(
            f"{label}: {where} does not offer STARTTLS; refusing to log in in clear text "
            "(set security: none on the connection only for a trusted network)"
        )
    try:
        client.starttls(tls_context(endpoint))
    except imaplib.IMAP4.abort:
        raise  # the connection is gone: the caller's retryable error
    except IMAPClientError as exc:
        raise MailboxError(
            f"{label}: {where} refused STARTTLS ({exc}); refusing to log in in clear text"
        ) from None


def _login(
    client: IMAPClient, endpoint: Endpoint, auth: str, user: str, password: str | None, label: str
):
    admin, admin_secret = endpoint.login, endpoint.password
    try:
        if auth == "xoauth2":
            token = password if password is not None else admin_secret
            if not token:
                raise MailboxError(f"{label}: no XOAUTH2 token for {user}")
            client.oauth2_login(user, token)
        elif password is not None:
            _password_login(client, user, password, label)
        elif not admin or not admin_secret:
            raise MailboxError(
                f"{label}: {user} has no password in the accounts file and connection "
                f"{endpoint.conn_id!r} has no admin login and password"
            )
        elif auth == "master":
            separator = endpoint.option("master_separator", "*")
            _password_login(client, f"{user}{separator}{admin}", admin_secret, label)
        elif auth == "authzid":
            client.plain_login(admin, admin_secret, authorization_identity=user)
        else:
            raise MailboxError(
                f"{label}: {user} has no password and connection {endpoint.conn_id!r} uses "
                "auth: login; give the account's password or use auth master/authzid"
            )
    except (LoginError, IMAPClientError) as exc:
        failure = _login_failure(exc, user, auth, password, admin_secret, label)
    else:
        return
    # Raised outside the handler, so that the failure has no __context__: imapclient's error
    # holds the server's unscrubbed reply.
    raise failure


def _login_failure(
    exc: Exception,
    user: str,
    auth: str,
    password: str | None,
    admin_secret: str | None,
    label: str,
) -> MailboxError:
    how = "with its own password" if password is not None else f"with admin credentials ({auth})"
    reason = server_reply(exc, (password, admin_secret))
    # imapclient turns a connection lost during the login into a LoginError too; that, and
    # Dovecot's "[UNAVAILABLE] Temporary authentication failure", is no verdict on the
    # credentials.
    lost = isinstance(exc.__context__, TRANSIENT_ERRORS) or isinstance(exc, imaplib.IMAP4.abort)
    if lost or "[UNAVAILABLE]" in reason:
        return MailboxError(
            f"{label}: login as {user} {how} did not complete: {reason}", retryable=True
        )
    return AuthenticationFailed(f"{label}: login as {user} {how} refused: {reason}")


def _password_login(client: IMAPClient, identity: str, secret: str, label: str) -> None:
    """LOGIN, whose quoted strings are ASCII only; credentials with other characters go as
    AUTHENTICATE PLAIN, UTF-8 (RFC 4616), or fail with the reason when the server has no PLAIN."""
    if (identity + secret).isascii():
        client.login(identity, secret)
    elif client.has_capability("AUTH=PLAIN"):
        client.plain_login(identity, secret)
    else:
        raise AuthenticationFailed(
            f"{label}: the login name or password of {identity.split('*')[0]} has non-ASCII "
            "characters, which IMAP LOGIN cannot send, and the server offers no AUTHENTICATE "
            "PLAIN (UTF-8)"
        )


LEFT_OUT = "(the server's reply is left out: it repeats the credentials)"


def server_reply(exc: BaseException, secrets: tuple[str | None, ...]) -> str:
    """The server's text of a failed LOGIN/AUTHENTICATE, decoded, or :data:`LEFT_OUT` when it
    carries any of ``secrets`` in any form a server could echo it in: as sent, IMAP-quoted,
    Python-escaped (imaplib's ``b'...'``) or base64 (a SASL exchange). A secret shorter than
    :data:`~mailmigrate.redact.MIN_MASKED_LENGTH` counts only as a word of its own, so a
    one-letter password does not hide every reply.

    Invariant: the result never contains a secret in those forms; the caller puts it next to
    the login name only.
    """
    raw = str(exc.args[0]) if exc.args else str(exc)
    text = _decoded(raw)
    haystacks = [raw, text, *_base64_words(text)]
    for secret in filter(None, secrets):
        for form in _echo_forms(secret):
            if any(
                _contains(hay, form, short=len(secret) < MIN_MASKED_LENGTH) for hay in haystacks
            ):
                return LEFT_OUT
    return text


def _decoded(text: str) -> str:
    """imaplib's ``b'...'`` (the repr of the server's bytes) as the text the server sent."""
    if len(text) > 2 and text[0] == "b" and text[1] in "'\"" and text[-1] == text[1]:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
    return text


def _echo_forms(secret: str) -> set[str]:
    quoted = secret.replace("\\", "\\\\").replace('"', '\\"')  # an IMAP quoted string
    forms = {secret, quoted}
    for form in (secret, quoted):
        forms.add(repr(form)[1:-1])
        forms.add(repr(form.encode("utf-8"))[2:-1])
    return forms


def _base64_words(text: str) -> list[str]:
    words = []
    for word in re.findall(r"[A-Za-z0-9+/]{8,}={0,2}", text):
        try:
            words.append(base64.b64decode(word + "=" * (-len(word) % 4)).decode("utf-8", "replace"))
        except (ValueError, binascii.Error):
            continue
    return words


def _contains(text: str, form: str, *, short: bool) -> bool:
    if not short:
        return form in text
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(form)}(?![A-Za-z0-9])", text) is not None


def abandon(client: IMAPClient) -> None:
    """Drop a broken session at once, with a TCP reset: whatever it still had queued is never
    delivered (an APPEND the engine gave up on must not land after it compared the folders
    again), and no half-dead connection counts against the server's per-user limit."""
    try:
        sock, reader = internals.reset_socket(client)
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        reader.close()
    except Exception:
        _quietly_close(client)


def _quietly_close(client: IMAPClient) -> None:
    try:
        client.shutdown()
    except Exception:
        pass
