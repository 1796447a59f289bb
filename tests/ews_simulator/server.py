"""The EWS simulator's HTTP endpoint: a local stand-in for an Exchange server's EWS.

A stdlib ``ThreadingHTTPServer`` on 127.0.0.1 (free port, optionally HTTPS) that authenticates
(Basic, NTLM, OAuth2 bearer), honours ``ExchangeImpersonation``, dispatches each SOAP request to one
operation handler, answers malformed requests with SOAP faults, and can be told to answer the next
requests with ``ErrorServerBusy`` and a ``BackOffMilliseconds`` hint.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
import threading
import traceback
from collections.abc import Collection
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

from .auth import NtlmAcceptor, TokenIssuer, check_basic, ntlm_message_type
from .operations import OPERATIONS, Principal, RequestContext
from .soap import ResponseError, SoapFault, fault_document, parse_request, response_document
from .store import SimulatorStore

EWS_PATH = "/EWS/Exchange.asmx"


@dataclass
class RequestRecord:
    """One request the simulator answered (for tests to inspect)."""

    operation: str | None
    principal: str | None
    impersonated: str | None
    outcome: str  # "NoError", a fault code, or "401"


class EwsSimulator:
    """A simulated Exchange 2016 EWS endpoint backed by a :class:`SimulatorStore`.

    :param auth: the accepted schemes, a subset of ``("ntlm", "basic", "oauth2")``.
    :param tls: ``(certificate, key)`` files to serve HTTPS; see ``auth.self_signed_certificate``.
    """

    def __init__(
        self,
        store: SimulatorStore | None = None,
        *,
        auth: Collection[str] = ("ntlm", "basic"),
        tls: tuple[str | Path, str | Path] | None = None,
    ):
        self.store = store or SimulatorStore()
        self.auth = tuple(auth)
        self.tls = tls
        self.tokens = TokenIssuer(self.store)
        self.requests: list[RequestRecord] = []
        self._busy_lock = threading.Lock()
        self._busy: tuple[int, int, frozenset[str] | None] = (0, 0, None)
        self._workdir = tempfile.TemporaryDirectory(prefix="ews-sim-")
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> EwsSimulator:
        handler = type("BoundEwsHandler", (_EwsHandler,), {"simulator": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="ews-simulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        self._workdir.cleanup()

    def __enter__(self) -> EwsSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "the simulator is not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The EWS service endpoint URL."""
        return self.base_url + EWS_PATH

    def token_url(self, tenant: str) -> str:
        return f"{self.base_url}/{tenant}/oauth2/v2.0/token"

    # -- knobs -----------------------------------------------------------------------------
    def busy(
        self, count: int, back_off_ms: int = 50, operations: Collection[str] | None = None
    ) -> None:
        """Answer the next ``count`` requests (of ``operations``, or any) with ``ErrorServerBusy``."""
        with self._busy_lock:
            self._busy = (count, back_off_ms, frozenset(operations) if operations else None)

    def operations(self, name: str | None = None) -> list[RequestRecord]:
        """The answered requests, optionally only those of one operation."""
        return [r for r in self.requests if name is None or r.operation == name]

    def _take_busy(self, operation: str) -> int | None:
        with self._busy_lock:
            count, back_off_ms, operations = self._busy
            if count <= 0 or (operations is not None and operation not in operations):
                return None
            self._busy = (count - 1, back_off_ms, operations)
            return back_off_ms

    # -- dispatch --------------------------------------------------------------------------
    def dispatch(self, principal: Principal, data: bytes) -> tuple[int, bytes]:
        """Answer one authenticated SOAP request: ``(HTTP status, body)``."""
        api_version = operation = impersonated = None
        try:
            request = parse_request(data)
            api_version, operation, impersonated = (
                request.api_version,
                request.operation,
                request.impersonated,
            )
            back_off = self._take_busy(operation)
            if back_off is not None:
                raise SoapFault(
                    "ErrorServerBusy",
                    "The server cannot service this request right now. Try again later.",
                    {"BackOffMilliseconds": str(back_off)},
                )
            handler = OPERATIONS.get(operation)
            if handler is None:
                raise SoapFault(
                    "ErrorSchemaValidation",
                    f"The request failed schema validation: {operation} is not supported by the simulator.",
                )
            with self.store.lock:
                try:
                    context = RequestContext(self.store, principal, impersonated)
                except ResponseError as error:
                    raise SoapFault(error.code, error.message) from None
                messages = handler(context).handle(request.body)
            self._record(operation, principal.name, impersonated, "NoError")
            return 200, response_document(operation, messages, api_version)
        except SoapFault as fault:
            self._record(operation, principal.name, impersonated, fault.code)
            return 500, fault_document(fault, api_version)
        except Exception:  # a simulator bug: answer like Exchange's internal error, keep the trace
            traceback.print_exc()
            fault = SoapFault(
                "ErrorInternalServerError", "An internal server error occurred in the simulator."
            )
            self._record(operation, principal.name, impersonated, fault.code)
            return 500, fault_document(fault, api_version)

    def _record(
        self, operation: str | None, principal: str | None, impersonated: str | None, outcome: str
    ) -> None:
        self.requests.append(RequestRecord(operation, principal, impersonated, outcome))


class _EwsHandler(BaseHTTPRequestHandler):
    """One client connection (HTTP/1.1 keep-alive: NTLM authenticates the connection)."""

    protocol_version = "HTTP/1.1"
    simulator: EwsSimulator

    def setup(self) -> None:
        super().setup()
        self.ntlm = NtlmAcceptor(
            self.simulator.store, Path(self.simulator._workdir.name) / f"ntlm-{id(self)}"
        )
        self.connection_user: Principal | None = None

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass  # quiet: tests inspect simulator.requests instead

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._send(405, b"EWS accepts POST only", "text/plain")

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = urlparse(self.path).path
        if path.endswith("/oauth2/v2.0/token") and "oauth2" in self.simulator.auth:
            tenant = path.strip("/").split("/")[0]
            scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
            status, payload = self.simulator.tokens.issue(
                tenant, body, value if scheme.lower() == "basic" else None
            )
            self._send(status, json.dumps(payload).encode(), "application/json")
            return
        if path.lower() != EWS_PATH.lower():
            self._send(404, b"Not found", "text/plain")
            return
        principal = self._authenticate()
        if principal is None:
            return
        status, payload = self.simulator.dispatch(principal, body)
        self._send(status, payload, "text/xml; charset=utf-8")

    def _authenticate(self) -> Principal | None:
        store, auth = self.simulator.store, self.simulator.auth
        scheme, _, value = (self.headers.get("Authorization") or "").strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "basic" and "basic" in auth:
            user = check_basic(store, value.strip())
            if user is not None:
                return Principal(name=user.login, user=user)
        elif scheme == "ntlm" and "ntlm" in auth:
            token = base64.b64decode(value.strip() or "")
            kind = ntlm_message_type(token)
            if kind == 1:
                challenge = self.ntlm.challenge(token)
                self._unauthorized([f"NTLM {base64.b64encode(challenge).decode()}"])
                return None
            if kind == 3:
                user = self.ntlm.authenticate(token)
                if user is not None:
                    self.connection_user = Principal(name=user.login, user=user)
                    return self.connection_user
        elif scheme == "bearer" and "oauth2" in auth:
            client_id = self.simulator.tokens.client_of(value.strip())
            if client_id is not None:
                return Principal(name=client_id, app=True)
        elif not scheme and self.connection_user is not None:
            return self.connection_user
        self.simulator._record(None, None, None, "401")
        self._unauthorized(self._challenges())
        return None

    def _challenges(self) -> list[str]:
        out = []
        if "ntlm" in self.simulator.auth:
            out += ["Negotiate", "NTLM"]
        if "basic" in self.simulator.auth:
            out.append('Basic realm="127.0.0.1"')
        if "oauth2" in self.simulator.auth:
            out.append(
                'Bearer authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize"'
            )
        return out

    def _unauthorized(self, challenges: list[str]) -> None:
        self.send_response(401)
        for challenge in challenges:
            self.send_header("WWW-Authenticate", challenge)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
