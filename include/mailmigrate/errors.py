"""Every error the engine raises on purpose, in one tree.

::

    MailmigrateError                 .retryable: False unless the class or instance says so
    ├── InputError                   permanent: fix the input, then run again
    │   ├── PlanError                    a plan that cannot be used (every problem, file:line)
    │   ├── ConnectionConfigError        a connection missing or malformed (names it and the field)
    │   ├── FolderMappingError           a folder or rule that cannot be mapped at all
    │   └── BadInput                     what the ``mailmigrate`` command cannot work with
    ├── AccountError                 one account's pass stops; retried when .retryable
    │   ├── MailboxError                 talking to one mailbox failed (retryable: disconnects,
    │   │   │                            timeouts, throttling, [UNAVAILABLE], [INUSE], ...)
    │   │   └── AuthenticationFailed     credentials refused: never retried
    │   ├── GroupwareError               a groupware side failed (retryable: no answer, 429 or
    │   │   │                            5xx, busy); .status: the HTTP status or its equivalent
    │   │   ├── DavError                 a CalDAV/CardDAV request failed
    │   │   └── EwsGroupwareError        Exchange as a groupware side failed or refused an item
    │   ├── quiet.RecordError            an account's delta record cannot be read
    │   └── quiet.AccountBusy            another pass holds the account (retryable)
    └── ItemError                    one message or item: skipped and reported, the pass goes on
        └── ContentError                 an item that is not parseable iCalendar or vCard

Invariants: no text here ever holds a password or token; each text names the account, side,
folder or connection it is about, and the cause. The Airflow layer maps the tree to "fail" or
"retry" in one place (``mailmigrate_airflow.runs.run_engine``); the CLI maps it to exit codes.
Classes that were ``ValueError``/``RuntimeError`` before the tree existed still are, so an
``except ValueError`` written against them keeps working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailmigrate.plan_model import Problem


class MailmigrateError(Exception):
    """The root: every error the engine raises on purpose.

    :attr:`retryable` says whether the same call may succeed later unchanged (a lost connection,
    a throttled server); everything else is permanent until someone changes something.
    """

    retryable: bool = False


# -- permanent: the input ------------------------------------------------------------------


class InputError(MailmigrateError):
    """Input that cannot be used as it is (plan, connection, mapping, command line)."""


class PlanError(InputError, ValueError):
    """A plan that cannot be used; ``problems`` lists every problem found, not just the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


class ConnectionConfigError(InputError, ValueError):
    """A connection is missing or malformed; the text names the connection id and the field."""


class FolderMappingError(InputError, ValueError):
    """A folder or rule that cannot be mapped at all; the text names the folder and the cause."""


class BadInput(InputError):
    """Input the ``mailmigrate`` command cannot work with; each line of ``lines`` is shown."""

    def __init__(
        self, lines: list[str], problems: list[Problem] | None = None, plan: str | None = None
    ):
        super().__init__("\n".join(lines))
        self.lines = lines
        self.problems = problems or []
        self.plan = plan


# -- one account ---------------------------------------------------------------------------


class AccountError(MailmigrateError):
    """One account's pass cannot go on; :attr:`retryable` decides whether it is tried again."""


class MailboxError(AccountError):
    """A failure talking to one mailbox; the text names the account, the side and the cause.

    It never contains a password or token.

    :param retryable: ``True`` for disconnects, timeouts, throttling and ``[UNAVAILABLE]``.
    """

    def __init__(self, message: str, *, retryable: bool = False, folder: str | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.folder = folder


class AuthenticationFailed(MailboxError):
    """Credentials were refused: never retried."""


class GroupwareError(AccountError, RuntimeError):
    """A groupware side (DAV or Exchange) failed; the text names the account, server and cause.

    :attr:`status` is the HTTP status or its equivalent (``None`` for a network error).
    Retryable when the server did not answer, throttled (429) or failed (5xx)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = status is None or status == 429 or status >= 500


class DavError(GroupwareError):
    """A DAV request failed; the text names the account, URL and the server's answer."""


class EwsGroupwareError(GroupwareError):
    """Exchange as a groupware side failed (exchangelib's error translated), or refused an item
    it cannot hold (422); the text names the account and the EWS server, never a secret."""


# -- one message or item -------------------------------------------------------------------


class ItemError(MailmigrateError):
    """One message or item cannot be handled; it is reported and the pass goes on."""


class ContentError(ItemError, ValueError):
    """An item is not parseable iCalendar or vCard; the text says where."""
