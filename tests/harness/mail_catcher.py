"""A mail catcher for tests: an SMTP server on loopback (aiosmtpd, a test requirement) that
accepts every message and keeps its envelope, so a test can assert who would have been mailed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from aiosmtpd.controller import Controller

from harness.dovecot import free_port


@dataclass
class Caught:
    sender: str
    recipients: list[str]
    content: bytes


class MailCatcher:
    """Start with :meth:`start`; :attr:`messages` lists what arrived; :meth:`stop` at the end."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        self.port = free_port(self.host)
        self.messages: list[Caught] = []
        self._lock = threading.Lock()
        self._controller = Controller(self, hostname=self.host, port=self.port)

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's name)
        with self._lock:
            self.messages.append(Caught(envelope.mail_from, list(envelope.rcpt_tos),
                                        envelope.original_content or b""))  # fmt: skip
        return "250 OK"

    def recipients(self) -> list[str]:
        with self._lock:
            return [r for message in self.messages for r in message.recipients]

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()
