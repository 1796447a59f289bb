"""The private parts of imapclient and imaplib the IMAP adapter relies on are all named in
mailmigrate.mailbox.imapclient_internals and still exist, with the same signatures, in the
installed (pinned) versions. A new imapclient release that changes them fails here, loudly,
before any server test runs."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import imapclient
import pytest

from mailmigrate.mailbox import imapclient_internals
from mailmigrate.mailbox.imapclient_internals import RELIED_ON

ROOT = Path(__file__).resolve().parents[2]
MAILBOX = ROOT / "include" / "mailmigrate" / "mailbox"


def _parameters(function: object) -> tuple[str, ...]:
    names = []
    for parameter in list(inspect.signature(function).parameters.values())[1:]:  # after self
        star = "*" if parameter.kind is parameter.VAR_POSITIONAL else ""
        star = "**" if parameter.kind is parameter.VAR_KEYWORD else star
        names.append(star + parameter.name)
    return tuple(names)


@pytest.mark.parametrize(
    ("owner", "name"), list(RELIED_ON), ids=[f"{o.__name__}.{n}" for o, n in RELIED_ON]
)
def test_relied_on_internals_still_exist(owner: type, name: str) -> None:
    expected = RELIED_ON[(owner, name)]
    version = f"imapclient {imapclient.__version__}"
    if expected == "attribute":
        source = inspect.getsource(owner)
        assert re.search(rf"\bself\.{name}\s*=", source), (
            f"{version}: {owner.__qualname__} no longer sets self.{name}; "
            "mailmigrate/mailbox/imapclient_internals.py must change"
        )
        return
    assert callable(getattr(owner, name, None)), f"{version}: {owner.__qualname__}.{name} is gone"
    assert _parameters(getattr(owner, name)) == expected, (
        f"{version}: {owner.__qualname__}.{name} now takes {_parameters(getattr(owner, name))}, "
        f"not {expected}; mailmigrate/mailbox/imapclient_internals.py must change"
    )


def test_the_pin_is_the_version_checked() -> None:
    pins = (ROOT / "requirements.txt").read_text()
    assert f"IMAPClient=={imapclient.__version__}\n" in pins


def test_no_other_module_reaches_into_imapclient() -> None:
    """Outside imapclient_internals only imap_wire and imap_responses touch private names, and
    only imaplib's that RELIED_ON lists (they speak the protocol on imaplib's session)."""
    listed = {name for _, name in RELIED_ON}
    for path in sorted(MAILBOX.glob("imap*.py")):
        if path.name == Path(imapclient_internals.__file__).name:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Attribute) and node.attr.startswith("_")):
                continue
            if node.attr.startswith("__") or (
                isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            ):
                continue
            assert path.name in ("imap_wire.py", "imap_responses.py") and node.attr in listed, (
                f"{path.name}:{node.lineno}: {ast.unparse(node)} reaches into a library's "
                "internals; go through mailmigrate.mailbox.imapclient_internals"
            )
