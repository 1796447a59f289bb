"""One error tree: every error the engine raises on purpose is a MailmigrateError, drawn in
mailmigrate.errors' docstring, and the IMAP adapter never raises imapclient's own error class."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import mailmigrate
from mailmigrate import errors
from mailmigrate.errors import (
    AccountError,
    AuthenticationFailed,
    ConnectionConfigError,
    ContentError,
    DavError,
    InputError,
    ItemError,
    MailboxError,
    MailmigrateError,
    PlanError,
)

ENGINE = Path(mailmigrate.__file__).parent
# Exceptions that never leave the IMAP adapter: its guard turns both into MailboxError.
PRIVATE = {
    "mailmigrate.mailbox.imap_common.ServerRefused",
    "mailmigrate.mailbox.imap_responses.MalformedResponse",
    "mailmigrate.mailbox.imap_responses.OutOfStep",
}


def _engine_exceptions() -> dict[str, type[BaseException]]:
    found = {}
    for module in pkgutil.walk_packages([str(ENGINE)], "mailmigrate."):
        loaded = importlib.import_module(module.name)
        for name, value in vars(loaded).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.name
            ):
                found[f"{module.name}.{name}"] = value
    return found


def test_every_engine_error_is_in_the_tree_and_drawn_in_its_docstring() -> None:
    exceptions = _engine_exceptions()
    outside = sorted(
        name
        for name, cls in exceptions.items()
        if not issubclass(cls, MailmigrateError) and name not in PRIVATE
    )
    assert outside == [], f"engine errors outside mailmigrate.errors' tree: {outside}"
    drawn = errors.__doc__ or ""
    for name, cls in exceptions.items():
        if name.startswith("mailmigrate.errors."):
            assert f" {cls.__name__} " in drawn.replace("\n", " \n"), f"{name} not drawn"


def test_retryable_and_permanent_branches() -> None:
    assert not MailmigrateError("x").retryable
    assert isinstance(PlanError([]), InputError) and not PlanError([]).retryable
    assert MailboxError("lost", retryable=True).retryable
    assert not MailboxError("refused").retryable
    assert isinstance(AuthenticationFailed("no"), AccountError)
    assert not AuthenticationFailed("no").retryable
    assert [DavError("x", status).retryable for status in (None, 429, 503, 401, 404)] == [
        True, True, True, False, False,
    ]  # fmt: skip
    assert issubclass(ContentError, ItemError)
    # Written as ValueError before the tree: an ``except ValueError`` still catches them.
    for cls in (PlanError, ConnectionConfigError, ContentError):
        assert issubclass(cls, ValueError)


def test_imap_adapter_never_raises_imapclients_own_error() -> None:
    """Its own refusals are ServerRefused, so a retryable-looking IMAPClientError can only be
    imapclient's, never one the adapter built (the issue's "retryable by accident")."""
    for path in (ENGINE / "mailbox").glob("imap*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and node.exc is not None:
                raised = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                assert ast.unparse(raised) != "IMAPClientError", f"{path.name}:{node.lineno}"


@pytest.mark.parametrize(
    ("text", "retryable"),
    [("append failed: [UNAVAILABLE] try later", True), ("create failed: [CANNOT] no", False)],
)
def test_guarded_turns_the_adapters_own_refusals_into_mailbox_errors(
    text: str, retryable: bool
) -> None:
    from mailmigrate.mailbox.imap_common import ServerRefused, guarded

    class Adapter:
        label = "destination alice"

        @guarded("appending to")
        def append(self, path: tuple[str, ...]) -> None:
            raise ServerRefused(text)

    with pytest.raises(MailboxError) as failure:
        Adapter().append(("Archive", "2024"))
    assert (
        str(failure.value) == f"destination alice: appending to Archive/2024: server said: {text}"
    )
    assert failure.value.retryable is retryable and failure.value.folder == "Archive/2024"
