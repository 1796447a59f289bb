"""The imap, ews and dav hooks, and the provider metadata that puts them into the connection form."""

from __future__ import annotations

import json
from importlib import resources

import jsonschema
import pytest

IMAP = {
    "conn_type": "imap",
    "host": "imap.old.example",
    "port": 993,
    "login": "migration-admin",
    "password": "Adm1n-Secret-Pw",
    "extra": {"security": "ssl", "ca_file": "/etc/ssl/old-ca.pem", "auth": "master"},
}
EWS = {
    "conn_type": "ews",
    "host": "mail.new.example",
    "login": "svc-migrate@new.example",
    "password": "Client-Secret-Value",
    # as Airflow's connection form stores it: strings, nulls, prefixed legacy names
    "extra": {
        "auth": "OAuth2",
        "service_endpoint": "https://mail.new.example/EWS/Exchange.asmx",
        "autodiscover": "false",
        "impersonation": True,
        "max_wait": "2.5",
        "max_connections": 4,
        "client_id": "7f0c-client",
        "extra__ews__tenant_id": "contoso-tenant",
        "ca_file": None,
    },
}


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MM_OLD", json.dumps(IMAP))
    monkeypatch.setenv("AIRFLOW_CONN_MM_NEW", json.dumps(EWS))
    monkeypatch.setenv("AIRFLOW_CONN_MM_HTTP", json.dumps({"conn_type": "http", "host": "x"}))


def _schema(name: str) -> dict:
    return json.loads(resources.files("airflow").joinpath(name).read_text())


def test_imap_hook_builds_the_endpoint_from_the_connection(connections: None) -> None:
    from mailmigrate_airflow.hooks import MailboxImapHook

    with MailboxImapHook("mm_old") as hook:
        endpoint = hook.get_endpoint()
        assert hook.get_conn() is endpoint

    assert (endpoint.conn_id, endpoint.kind, endpoint.host, endpoint.port) == (
        "mm_old",
        "imap",
        "imap.old.example",
        993,
    )
    assert (endpoint.login, endpoint.password) == ("migration-admin", "Adm1n-Secret-Pw")
    assert endpoint.extra == {"security": "ssl", "ca_file": "/etc/ssl/old-ca.pem", "auth": "master"}
    assert "Adm1n-Secret-Pw" not in repr(endpoint)
    assert hook._endpoint is None  # dropped on leaving the with block


def test_exchange_hook_types_form_values_and_accepts_prefixed_names(connections: None) -> None:
    from mailmigrate_airflow.hooks import ExchangeHook

    endpoint = ExchangeHook("mm_new").get_endpoint()

    assert (endpoint.kind, endpoint.host, endpoint.port) == ("ews", "mail.new.example", None)
    assert endpoint.password == "Client-Secret-Value"
    assert endpoint.extra == {
        "auth": "oauth2",
        "service_endpoint": "https://mail.new.example/EWS/Exchange.asmx",
        "autodiscover": False,
        "impersonation": True,
        "max_wait": 2.5,
        "max_connections": 4,
        "client_id": "7f0c-client",
        "tenant_id": "contoso-tenant",
    }


def test_get_endpoint_picks_the_hook_by_conn_type(connections: None) -> None:
    from mailmigrate_airflow.hooks import get_endpoint

    assert get_endpoint("mm_old").kind == "imap"
    assert get_endpoint("mm_new").kind == "ews"


def test_wrong_connections_are_refused_with_the_connection_named(
    connections: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk.exceptions import AirflowNotFoundException

    from mailmigrate.errors import ConnectionConfigError
    from mailmigrate_airflow.hooks import ExchangeHook, MailboxImapHook, get_endpoint

    with pytest.raises(ConnectionConfigError, match="'mm_new'.*must be imap"):
        MailboxImapHook("mm_new").get_endpoint()
    with pytest.raises(ConnectionConfigError, match="'mm_old'.*must be ews"):
        ExchangeHook("mm_old").get_endpoint()
    with pytest.raises(ConnectionConfigError, match="'mm_http'.*must be imap or ews or dav"):
        get_endpoint("mm_http")
    with pytest.raises(AirflowNotFoundException):
        get_endpoint("mm_missing")

    bad = {**IMAP, "extra": {"security": "tls", "auth": "master"}}
    monkeypatch.setenv("AIRFLOW_CONN_MM_BAD", json.dumps(bad))
    with pytest.raises(ConnectionConfigError, match="'mm_bad': extra security must be one of ssl"):
        get_endpoint("mm_bad")
    bad = {**EWS, "extra": {"max_connections": "many"}}
    monkeypatch.setenv("AIRFLOW_CONN_MM_BAD", json.dumps(bad))
    with pytest.raises(ConnectionConfigError, match="extra max_connections must be a whole number"):
        get_endpoint("mm_bad")


def test_provider_info_validates_against_airflows_schemas() -> None:
    from mailmigrate_airflow.provider import get_provider_info

    info = get_provider_info()
    jsonschema.validate(info, _schema("provider_info.schema.json"))
    # The stricter provider.yaml schema describes conn-fields and ui-field-behaviour in detail.
    connection_types = _schema("provider.yaml.schema.json")["properties"]["connection-types"]
    jsonschema.validate(info["connection-types"], connection_types)
    assert {c["connection-type"]: c["hook-class-name"] for c in info["connection-types"]} == {
        "imap": "mailmigrate_airflow.hooks.MailboxImapHook",
        "ews": "mailmigrate_airflow.hooks.ExchangeHook",
        "dav": "mailmigrate_airflow.hooks.DavHook",
    }


def test_ui_field_behaviour_dicts() -> None:
    from mailmigrate_airflow.hooks import ExchangeHook, MailboxImapHook

    schema = _schema("customized_form_field_behaviours.schema.json")
    imap = MailboxImapHook.get_ui_field_behaviour()
    ews = ExchangeHook.get_ui_field_behaviour()
    for behaviour in (imap, ews):
        jsonschema.validate(behaviour, schema)
        assert behaviour["hidden_fields"] == ["schema"]
    assert imap["relabeling"] == {"login": "Admin login", "password": "Admin password"}
    assert imap["placeholders"]["port"] == "993"
    assert ews["relabeling"]["password"] == "Admin password / client secret"


def test_the_connection_form_offers_both_types_with_their_fields() -> None:
    """What the API server's connection form endpoint serves, from the installed entry point."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    forms = {m.connection_type: m for m in HookMetaService.hook_meta_data()}

    imap, ews = forms["imap"], forms["ews"]
    assert (imap.hook_name, ews.hook_name) == ("IMAP mailbox server", "Exchange Web Services (EWS)")
    assert set(imap.extra_fields) == {
        "security", "ca_file", "auth", "master_separator", "timeout", "compress"
    }  # fmt: skip
    assert imap.extra_fields["security"]["schema"]["enum"] == ["ssl", "starttls", "none"]
    assert imap.extra_fields["auth"]["schema"]["enum"] == ["login", "master", "authzid", "xoauth2"]
    assert set(ews.extra_fields) == {
        "auth",
        "service_endpoint",
        "autodiscover",
        "impersonation",
        "ca_file",
        "max_wait",
        "max_connections",
        "client_id",
        "tenant_id",
    }
    assert ews.extra_fields["auth"]["schema"]["enum"] == ["ntlm", "basic", "oauth2"]
    # unset stays unset: a form default of false would override the adapters' own defaults
    assert ews.extra_fields["impersonation"]["value"] is None
    assert imap.extra_fields["auth"]["value"] is None
    assert imap.standard_fields.url_schema.hidden is True
    assert imap.standard_fields.login.title == "Admin login"
    assert ews.standard_fields.password.title == "Admin password / client secret"


def test_dav_connection_type_builds_each_accounts_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """The groupware connection: form fields, the hook, and per-account endpoints from it."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    from mailmigrate.errors import ConnectionConfigError
    from mailmigrate.groupware.account import endpoints
    from mailmigrate.groupware.dav import DavEndpoint
    from mailmigrate.plan import Account
    from mailmigrate_airflow.hooks import DavHook, get_endpoint

    form = {m.connection_type: m for m in HookMetaService.hook_meta_data()}["dav"]
    assert set(form.extra_fields) == {"path", "security", "ca_file", "principal_path"}
    assert form.extra_fields["security"]["schema"]["enum"] == ["ssl", "none"]
    assert form.standard_fields.login.title == "Admin login"  # for accounts without passwords
    jsonschema.validate(DavHook.get_ui_field_behaviour(),
                        _schema("customized_form_field_behaviours.schema.json"))  # fmt: skip

    dav = {"conn_type": "dav", "host": "dav.new.example", "port": 8443,
           "extra": {"extra__dav__path": "remote.php/dav", "security": "SSL",
                     "ca_file": "/etc/ca.pem"}}  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_MM_DAV", json.dumps(dav))
    monkeypatch.setenv(
        "AIRFLOW_CONN_MM_DAV_OLD",
        json.dumps(
            {"conn_type": "dav", "host": "127.0.0.1", "port": 5232, "extra": {"security": "none"}}
        ),
    )
    new, old = get_endpoint("mm_dav"), DavHook("mm_dav_old").get_endpoint()
    account = Account("alice@old.example", "alice@new.example", source_password="Old-Pw-1",
                      destination_password="New-Pw-2")  # fmt: skip
    source, destination = endpoints(account, old, new)
    assert source == DavEndpoint("http://127.0.0.1:5232/", "alice@old.example", "Old-Pw-1")
    assert destination == DavEndpoint("https://dav.new.example:8443/remote.php/dav",
                                      "alice@new.example", "New-Pw-2", ca_file="/etc/ca.pem")  # fmt: skip
    nopass = Account("bob@old.example", "bob@new.example", destination_password="x-Pw-3")
    with pytest.raises(ConnectionConfigError, match="'bob@old.example' has no password"):
        endpoints(nopass, old, new)
    monkeypatch.setenv("AIRFLOW_CONN_MM_IMAP", json.dumps(IMAP))
    imap = get_endpoint("mm_imap")
    with pytest.raises(ConnectionConfigError, match="'mm_imap': the plan's groupware needs conn"):
        endpoints(account, imap, new)


def test_reading_the_extras_does_not_feed_them_to_the_secrets_masker(
    connections: None,
    capsys: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``extra_dejson`` would hand "ssl" to the masker (which warns "Skipping masking for a secret
    as it's too short" at the top of every task log) and "master" (hidden everywhere after)."""
    from airflow.sdk._shared.secrets_masker.secrets_masker import SecretsMasker

    from mailmigrate_airflow.hooks import get_endpoint

    SecretsMasker._has_warned_short_secret = False  # the masker warns once per process
    assert get_endpoint("mm_old").extra["auth"] == "master"
    logged = capsys.readouterr().out + capsys.readouterr().err + caplog.text
    assert "too short" not in logged and "password" not in logged
    # A password too short to be masked is worth a warning: one that names the connection.
    monkeypatch.setenv("AIRFLOW_CONN_MM_SHORT", json.dumps({**IMAP, "password": "pw1"}))
    get_endpoint("mm_short")
    assert "connection 'mm_short': its password is shorter than 5 characters" in caplog.text
    assert "pw1" not in caplog.text and SecretsMasker._has_warned_short_secret is False
