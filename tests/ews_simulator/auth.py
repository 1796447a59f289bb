"""Authentication for the EWS simulator: Basic, NTLM (connection-based, via pyspnego's acceptor),
OAuth2 bearer tokens from a client-credentials token endpoint, and self-signed TLS certificates.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import struct
import threading
from pathlib import Path
from urllib.parse import parse_qs

import spnego
from harness import certs
from spnego._ntlm_raw.crypto import lmowfv1, ntowfv1

from .store import SimulatorStore, StoredUser

# pyspnego's NTLM acceptor reads its credentials from the file named by NTLM_USER_FILE; several
# simulators may run in one process, so each sets the variable only while it steps its context.
_NTLM_ENV_LOCK = threading.Lock()


def check_basic(store: SimulatorStore, value: str) -> StoredUser | None:
    """The user of a ``Basic`` credential, or ``None`` when it is wrong."""
    try:
        login, _, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user = store.users.get(login.lower())
    if user is None or not secrets.compare_digest(user.password.encode(), password.encode()):
        return None
    return user


def ntlm_message_type(token: bytes) -> int:
    if len(token) < 12 or not token.startswith(b"NTLMSSP\x00"):
        return 0
    return struct.unpack("<I", token[8:12])[0]


class NtlmAcceptor:
    """The server side of one NTLM handshake (negotiate -> challenge -> authenticate)."""

    def __init__(self, store: SimulatorStore, users_file: Path):
        self.store = store
        self.users_file = users_file
        self._context = None

    def _write_users(self) -> None:
        lines = []
        for user in self.store.users.values():
            lm, nt = lmowfv1(user.password).hex().upper(), ntowfv1(user.password).hex().upper()
            lines.append(f"{user.login}:0:{lm}:{nt}:[U]:LCT-00000000")
        self.users_file.write_text("\n".join(lines) + "\n")

    def _step(self, token: bytes) -> bytes | None:
        with _NTLM_ENV_LOCK:
            previous = os.environ.get("NTLM_USER_FILE")
            os.environ["NTLM_USER_FILE"] = str(self.users_file)
            try:
                if self._context is None:
                    self._context = spnego.server(protocol="ntlm")
                return self._context.step(token)
            finally:
                if previous is None:
                    del os.environ["NTLM_USER_FILE"]
                else:
                    os.environ["NTLM_USER_FILE"] = previous

    def challenge(self, negotiate: bytes) -> bytes:
        with self.store.lock:
            self._write_users()
        self._context = None
        return self._step(negotiate) or b""

    def authenticate(self, message: bytes) -> StoredUser | None:
        """The user of the final handshake message, or ``None`` when the response is wrong."""
        if self._context is None:
            return None
        try:
            self._step(message)
        except spnego.exceptions.SpnegoError:
            return None
        principal = self._context.client_principal or ""
        self._context = None
        login = principal.split("\\", 1)[1] if principal.startswith("\\") else principal
        return self.store.users.get(login.lower())


class TokenIssuer:
    """A client-credentials token endpoint (``/{tenant}/oauth2/v2.0/token``) and its bearer tokens."""

    def __init__(self, store: SimulatorStore):
        self.store = store
        self.tokens: dict[str, str] = {}  # access token -> client id

    def issue(
        self, tenant: str, form_body: bytes, basic: str | None
    ) -> tuple[int, dict[str, object]]:
        form = {k: v[0] for k, v in parse_qs(form_body.decode("utf-8", "replace")).items()}
        if basic:
            client_id, _, secret = base64.b64decode(basic).decode().partition(":")
            form.setdefault("client_id", client_id)
            form.setdefault("client_secret", secret)
        if form.get("grant_type") != "client_credentials":
            return 400, {
                "error": "unsupported_grant_type",
                "error_description": "client_credentials only",
            }
        client = self.store.oauth_clients.get(form.get("client_id", ""))
        if (
            client is None
            or client[1] != tenant
            or not secrets.compare_digest(client[0], form.get("client_secret", ""))
        ):
            return 401, {
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret provided.",
            }
        token = secrets.token_hex(24)
        self.tokens[token] = form["client_id"]
        return 200, {
            "token_type": "Bearer",
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": token,
        }

    def client_of(self, token: str) -> str | None:
        return self.tokens.get(token)


def self_signed_certificate(directory: str | Path | None = None) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1/localhost (for HTTPS simulators); ``(cert, key)`` paths."""
    return certs.self_signed(directory, "EWS simulator")
