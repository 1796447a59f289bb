"""Connecting the EWS adapter: endpoint options, exchangelib configuration, and error texts.

Turns an :class:`~mailmigrate.connections.Endpoint` of kind ``ews`` plus one account into an
exchangelib ``Account``: service endpoint or autodiscover, auth type (NTLM, basic, OAuth2 client
credentials), impersonation or delegate access, TLS verification (custom CA), the retry policy
(``FaultTolerance`` that logs back-offs and never retries a refused login) and the maximum number of
connections per server. Also turns exchangelib's exceptions into :class:`MailboxError` texts that
name the account and side and never carry a secret.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests.adapters
from exchangelib import (
    DELEGATE,
    IMPERSONATION,
    NTLM,
    Account,
    Configuration,
    Credentials,
    FaultTolerance,
    OAuth2Credentials,
)
from exchangelib.errors import (
    ErrorAccessDenied,
    ErrorImpersonateUserDenied,
    ErrorImpersonationDenied,
    ErrorInternalServerTransientError,
    ErrorNonExistentMailbox,
    ErrorServerBusy,
    ErrorTimeoutExpired,
    ErrorTooManyObjectsOpened,
    RateLimitError,
    TransportError,
    UnauthorizedError,
)
from exchangelib.ewsdatetime import UTC
from exchangelib.protocol import Protocol
from exchangelib.transport import BASIC, OAUTH2
from oauthlib.oauth2 import OAuth2Error

from mailmigrate.connections import Endpoint
from mailmigrate.errors import AuthenticationFailed, ConnectionConfigError, MailboxError
from mailmigrate.redact import redact

log = logging.getLogger(__name__)

AUTH_TYPES = {"ntlm": NTLM, "basic": BASIC, "oauth2": OAUTH2}
DEFAULT_MAX_WAIT = 300  # seconds; keep below the task's execution timeout
NUMBER_OPTIONS = ("max_wait", "max_connections", "append_batch_bytes", "append_batch_count",
                  "fetch_batch_bytes", "fetch_batch_count", "max_message_size")  # fmt: skip
RETRYABLE = (
    RateLimitError,
    ErrorServerBusy,
    ErrorTimeoutExpired,
    ErrorTooManyObjectsOpened,
    ErrorInternalServerTransientError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
)
REFUSED = (UnauthorizedError, OAuth2Error, ErrorImpersonateUserDenied, ErrorImpersonationDenied)


class LoggingFaultTolerance(FaultTolerance):
    """exchangelib's ``FaultTolerance`` (honours ``BackOffMilliseconds``, waits up to ``max_wait``)
    that logs every back-off and treats HTTP 401 as refused credentials instead of as throttling."""

    def __init__(self, max_wait: float, server: str):
        super().__init__(max_wait=max_wait)
        self.server = server

    def back_off(self, seconds: float | None) -> None:
        wait = self.DEFAULT_BACKOFF if seconds is None else seconds
        if wait > self.max_wait:
            log.warning(
                "EWS server %s asked to back off %.1f s, more than max_wait %s s: giving up",
                self.server,
                wait,
                self.max_wait,
            )
        else:
            log.warning(
                "EWS server %s is busy (ErrorServerBusy): backing off %.1f s, then resuming",
                self.server,
                wait,
            )
        super().back_off(seconds)

    def raise_response_errors(self, response: Any) -> None:
        if response.status_code == 401:
            raise UnauthorizedError(f"HTTP 401 from {response.url}: credentials refused")
        super().raise_response_errors(response)


# -- TLS: each connection's own CA file or verification switch ---------------------------------
# exchangelib's documented switch, BaseProtocol.HTTP_ADAPTER_CLS, is one class for the whole
# process: setting it for one connection would change every other. Here each connection's
# configuration carries its setting, and its Protocol's sessions mount adapters holding it.


class TlsAdapter(requests.adapters.HTTPAdapter):
    """An HTTP adapter that verifies TLS with ``tls_verify`` (a CA file path, or a bool), whatever
    a request or ``REQUESTS_CA_BUNDLE`` says; ``None`` leaves requests' own choice."""

    tls_verify: str | bool | None = None

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, self._verify(verify), cert)

    def get_connection_with_tls_context(
        self, request: Any, verify: Any, proxies: Any = None, cert: Any = None
    ) -> Any:
        return super().get_connection_with_tls_context(
            request, self._verify(verify), proxies=proxies, cert=cert
        )

    def _verify(self, verify: Any) -> Any:
        return verify if self.tls_verify is None else self.tls_verify


class TlsConfiguration(Configuration):
    """exchangelib's ``Configuration`` plus the connection's TLS verification (``verify``)."""

    def __init__(self, *args: Any, verify: str | bool = True, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.verify = verify


class TlsProtocol(Protocol):
    """exchangelib's ``Protocol`` whose sessions verify TLS as its :class:`TlsConfiguration`
    says, for the EWS URL and the OAuth2 token URL alike.

    Invariant: a protocol is shared (exchangelib caches them) only by connections with the
    same service URL, credentials and TLS setting, so no connection ever uses another's.
    """

    HTTP_ADAPTER_CLS = TlsAdapter

    @staticmethod
    def _cache_key(config: Any) -> tuple[Any, ...]:
        return config.service_endpoint, config.credentials, config.verify

    def raw_session(  # an instance method here: the sessions need this configuration
        self,
        prefix: str,
        oauth2_client: Any = None,
        oauth2_session_params: Any = None,
        oauth2_token_endpoint: Any = None,
    ) -> Any:
        session = super().raw_session(
            prefix, oauth2_client, oauth2_session_params, oauth2_token_endpoint
        )
        for adapter in session.adapters.values():
            if isinstance(adapter, TlsAdapter):
                adapter.tls_verify = self.config.verify
        return session


class _TokenUrlOAuth2Credentials(OAuth2Credentials):
    """Client-credentials OAuth2 whose token endpoint may be overridden (national clouds, tests)."""

    def __init__(self, *args: Any, token_endpoint: str | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.token_endpoint = token_endpoint

    @property
    def token_url(self) -> str:
        return self.token_endpoint or super().token_url


@dataclass(frozen=True)
class EwsOptions:
    """The resolved options of one account on one EWS endpoint."""

    service_endpoint: str | None
    autodiscover: bool
    auth: str | None
    impersonation: bool
    uses_admin: bool
    login: str
    max_wait: float
    max_connections: int | None
    verify: str | bool
    client_id: str | None = None
    tenant_id: str | None = None
    token_url: str | None = None
    append_batch_bytes: int = 8 * 1024 * 1024
    append_batch_count: int = 50
    fetch_batch_bytes: int = 8 * 1024 * 1024
    fetch_batch_count: int = 25
    max_message_size: int | None = None

    @property
    def server(self) -> str:
        return urlsplit(self.service_endpoint).netloc if self.service_endpoint else "(autodiscover)"


def resolve_options(endpoint: Endpoint, user: str, password: str | None, label: str) -> EwsOptions:
    """Check and resolve the endpoint's extras for one account (by the rules of
    :mod:`mailmigrate.connections`); a :class:`MailboxError` naming the account when wrong."""
    try:
        return _resolve(endpoint, user, password, label)
    except ConnectionConfigError as exc:
        raise MailboxError(f"{label}: {exc}") from None


def _resolve(endpoint: Endpoint, user: str, password: str | None, label: str) -> EwsOptions:
    conn = endpoint.conn_id
    where = f"{label}: connection {conn!r}"
    auth = endpoint.choice("auth", AUTH_TYPES, None)
    autodiscover = endpoint.flag("autodiscover", False)
    url = endpoint.option("service_endpoint") or (endpoint.host if "://" in endpoint.host else None)
    if url is None and endpoint.host and not autodiscover:
        port = f":{endpoint.port}" if endpoint.port else ""
        url = f"https://{endpoint.host}{port}/EWS/Exchange.asmx"
    if auth == "oauth2":
        impersonation, uses_admin, login = True, True, user
        if (
            not endpoint.option("client_id")
            or not endpoint.option("tenant_id")
            or not endpoint.password
        ):
            raise MailboxError(
                f"{label}: connection {conn!r}: OAuth2 needs extras 'client_id', 'tenant_id' and the client secret as password"
            )
    else:
        impersonation = endpoint.flag("impersonation", password is None)
        uses_admin = impersonation or password is None
        login = (endpoint.login or "") if uses_admin else user
        if uses_admin and not (endpoint.login and endpoint.password):
            why = "impersonation" if impersonation else f"{user} has no password of its own"
            raise MailboxError(f"{where}: an admin login and password are needed ({why})")
    verify: str | bool = endpoint.flag("verify", True)
    if endpoint.option("ca_file"):
        verify = str(endpoint.option("ca_file"))
    numbers: dict[str, Any] = {}
    for name in NUMBER_OPTIONS:
        kind = float if name == "max_wait" else int
        value = endpoint.number(name, None, kind, above=0)
        if value is not None:
            numbers[name] = value
    return EwsOptions(
        service_endpoint=url,
        autodiscover=autodiscover,
        auth=auth,
        impersonation=impersonation,
        uses_admin=uses_admin,
        login=login,
        max_wait=numbers.pop("max_wait", DEFAULT_MAX_WAIT),
        max_connections=numbers.pop("max_connections", None),
        verify=verify,
        client_id=endpoint.option("client_id"),
        tenant_id=endpoint.option("tenant_id"),
        token_url=endpoint.option("token_url"),
        **numbers,
    )


def build_account(options: EwsOptions, user: str, secret: str) -> Account:
    """An unverified exchangelib account (no request is sent until it is used)."""
    if options.auth == "oauth2":
        credentials: Any = _TokenUrlOAuth2Credentials(
            client_id=options.client_id,
            client_secret=secret,
            tenant_id=options.tenant_id,
            token_endpoint=options.token_url,
        )
    else:
        credentials = Credentials(username=options.login, password=secret)
    config = TlsConfiguration(
        credentials=credentials,
        service_endpoint=options.service_endpoint if not options.autodiscover else None,
        auth_type=AUTH_TYPES.get(options.auth or ""),
        retry_policy=LoggingFaultTolerance(options.max_wait, options.server),
        max_connections=options.max_connections,
        verify=options.verify,
    )
    account = Account(
        primary_smtp_address=user,
        access_type=IMPERSONATION if options.impersonation else DELEGATE,
        autodiscover=options.autodiscover,
        credentials=credentials if options.autodiscover else None,
        config=config,
        locale="en_US",
        default_timezone=UTC,
    )
    if not options.autodiscover:  # Account made a plain Protocol: no request has been sent yet
        account.protocol = TlsProtocol(config=config)
    return account


class Failures:
    """Builds the adapter's error texts: label, action, cause; secrets replaced by ``***``."""

    def __init__(self, label: str, secrets: list[str | None]):
        self.label = label
        self.secrets = [s for s in secrets if s]

    def scrub(self, text: str) -> str:
        return redact(text, self.secrets)

    def error(
        self, exc: BaseException, action: str, *, connected: bool, folder: str | None = None
    ) -> MailboxError:
        cause = self.scrub(f"{type(exc).__name__}: {exc}")[:500]
        where = f" in folder {folder!r}" if folder else ""
        text = f"{self.label}: {action}{where} failed: {cause}"
        if isinstance(exc, MailboxError):
            return exc
        if isinstance(exc, REFUSED) and not (connected and isinstance(exc, UnauthorizedError)):
            return AuthenticationFailed(f"{text} (login or impersonation refused)", folder=folder)
        if isinstance(exc, UnauthorizedError):
            return MailboxError(text, retryable=True, folder=folder)
        if isinstance(exc, ErrorNonExistentMailbox):
            return MailboxError(
                f"{text} (the account has no mailbox on this server)", folder=folder
            )
        if isinstance(exc, ErrorAccessDenied) and not connected:
            return AuthenticationFailed(f"{text} (no access to the mailbox)", folder=folder)
        if isinstance(exc, RETRYABLE):
            return MailboxError(text, retryable=True, folder=folder)
        if isinstance(exc, TransportError) and not any(
            w in str(exc) for w in ("SSL", "certificate", "CERTIFICATE")
        ):
            return MailboxError(text, retryable=True, folder=folder)
        return MailboxError(text, folder=folder)


class _RedactAuthorization(logging.Filter):
    """exchangelib logs request headers at DEBUG level: never let an Authorization value through."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, dict) and "request_headers" in record.args:
            headers = record.args.get("request_headers")
            if headers and any(k.lower() == "authorization" for k in headers):
                redacted = {
                    k: ("[redacted]" if k.lower() == "authorization" else v)
                    for k, v in headers.items()
                }
                record.args = {**record.args, "request_headers": redacted}
        return True


logging.getLogger("exchangelib.util").addFilter(_RedactAuthorization())
