"""Groupware through an admin login: accounts with no password in the accounts file are copied
by the DAV connection's own login acting for them (as a mail connection's master user), between
two real Radicale servers whose rights file lets that login reach every user's collections."""

from __future__ import annotations

import pytest
from harness import groupware_corpus as corpus
from harness.groupware_corpus import snapshot
from harness.radicale import RadicaleServer

from mailmigrate.connections import Endpoint
from mailmigrate.errors import ConnectionConfigError, DavError
from mailmigrate.groupware.dav import DavAccount, DavEndpoint
from mailmigrate.groupware.sync import copy_groupware, preflight

ADMIN = "migrator"


@pytest.fixture(scope="module")
def servers():
    started = [RadicaleServer(admin=ADMIN), RadicaleServer(admin=ADMIN)]
    try:
        for server in started:
            server.start()
            server.add_user(ADMIN)
        yield started
    finally:
        for server in started:
            server.stop()


def connection(server: RadicaleServer, login: str = ADMIN, **extra) -> Endpoint:
    return Endpoint(f"dav_{server.port}", "dav", server.host, server.port, login=login,
                    password=server.users[login],
                    extra={"security": "none", "principal_path": "/{user}/", **extra})  # fmt: skip


def existing_account(server: RadicaleServer, user: str) -> None:
    """An account that has logged in once (Radicale makes its principal then, as a provider
    makes it when the account is created)."""
    server.add_user(user)
    account = DavAccount(server.endpoint(user))
    account.discover()
    account.close()


def test_accounts_without_passwords_are_copied_through_the_admin_login(servers, tmp_path):
    old, new = servers
    existing_account(old, "alice@old.example")
    existing_account(new, "alice@new.example")
    own = DavAccount(old.endpoint("alice@old.example"))
    corpus.populate(own)
    own.close()

    source = DavEndpoint.from_connection(connection(old), "alice@old.example", None)
    destination = DavEndpoint.from_connection(connection(new), "alice@new.example", None)
    assert (source.login, source.principal) == (ADMIN, "/alice@old.example/")
    assert source.identity()["user"] == "alice@old.example"  # the state knows the account

    plan = preflight(source, destination)
    assert {"Calendar", "Work", "Tasks", "Contacts"} <= {c.name for c, _ in plan.source}
    result = copy_groupware(source, destination, plan="admin", state_dir=tmp_path)
    assert not result.all_problems, [str(p) for p in result.all_problems]
    assert result.total("added") == 10

    copied = snapshot(new.endpoint("alice@new.example"))  # read back as the owner
    for outcome in result.collections:
        (kind, _), items = snapshot(old.endpoint("alice@old.example"))[outcome.source]
        assert copied[outcome.destination][0][0] == kind
        assert copied[outcome.destination][1] == items, outcome.source
    again = copy_groupware(source, destination, plan="admin", state_dir=tmp_path)
    assert again.total("added") == again.total("updated") == 0


def test_a_login_that_may_not_act_for_the_account_is_named_in_the_error(servers):
    old, _ = servers
    existing_account(old, "carol")
    old.add_user("dave")  # an ordinary user, not the admin
    endpoint = DavEndpoint.from_connection(connection(old, login="dave"), "carol", None)
    with pytest.raises(DavError) as refused:
        DavAccount(endpoint).collections()
    assert refused.value.status == 403
    assert str(refused.value) == (
        f"carol (as dave) at {old.url}carol/: PROPFIND answered 403 Forbidden: dave may not act "
        "for carol here"
    )
    assert old.users["dave"] not in str(refused.value)


def test_admin_login_settings_are_checked_with_the_connection_named(servers):
    old, _ = servers
    no_admin = Endpoint("old_dav", "dav", old.host, old.port, extra={"security": "none"})
    with pytest.raises(ConnectionConfigError) as missing:
        DavEndpoint.from_connection(no_admin, "erin", None)
    assert str(missing.value) == (
        "connection 'old_dav': account 'erin' has no password in the accounts file and the "
        "connection no admin login (login and password, with extra principal_path)"
    )
    without_path = connection(old, principal_path="")
    with pytest.raises(ConnectionConfigError, match=r"admin login needs extra principal_path"):
        DavEndpoint.from_connection(without_path, "erin", None)
    # An account with its own password logs in itself, whatever the connection offers.
    assert DavEndpoint.from_connection(connection(old), "erin", "own-pw").login is None
