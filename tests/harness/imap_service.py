"""What the unpacked IMAP servers of the matrix (Cyrus, Courier) share: plain-text IMAP on
loopback, an admin that logs in for any user with a SASL PLAIN authzid, and the Airflow
connection that says so."""

from __future__ import annotations

import imapclient

from harness.loopback_service import LoopbackService


class AuthzidImapService(LoopbackService):
    """A :class:`LoopbackService` speaking IMAP on :attr:`port`, with an admin login
    (:attr:`master_user`, :attr:`master_password`) that acts for users through an authzid."""

    port: int
    master_user: str
    master_password: str

    def client(self, user: str, password: str) -> imapclient.IMAPClient:
        client = imapclient.IMAPClient(self.host, port=self.port, ssl=False, timeout=30)
        client.login(user, password)
        return client

    def connection(self, conn_id: str, **extra: object) -> dict:
        """This server as an Airflow connection in JSON form, logging in as the admin (authzid)."""
        del conn_id
        return {
            "conn_type": "imap",
            "host": self.host,
            "port": self.port,
            "login": self.master_user,
            "password": self.master_password,
            "extra": {"security": "none", "auth": "authzid", **extra},
        }
