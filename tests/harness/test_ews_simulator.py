"""exchangelib, unchanged, against the EWS simulator (tests/ews_simulator).

No Exchange server can run here; these tests show that the simulator answers exchangelib's real
requests the way Exchange does for the operations mailmigrate uses: folders, MIME round trips,
SyncFolderItems states, SOAP faults, ErrorServerBusy back-off, authentication and impersonation.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
from collections.abc import Iterator

import pytest
import requests
from ews_simulator import EwsSimulator, SimulatorStore, self_signed_certificate
from exchangelib import (
    BASIC,
    DELEGATE,
    IMPERSONATION,
    NTLM,
    UTC,
    Account,
    Configuration,
    Credentials,
    EWSDateTime,
    FailFast,
    FaultTolerance,
    Message,
    OAuth2Credentials,
)
from exchangelib.errors import (
    ErrorAccessDenied,
    ErrorFolderExists,
    ErrorImpersonateUserDenied,
    ErrorInvalidIdMalformed,
    ErrorInvalidRestriction,
    ErrorInvalidSyncStateData,
    ErrorItemNotFound,
    ErrorNonExistentMailbox,
    ErrorSchemaValidation,
    ErrorServerBusy,
    UnauthorizedError,
)
from exchangelib.extended_properties import ExtendedProperty
from exchangelib.folders import Folder
from exchangelib.items import HARD_DELETE, SAVE_ONLY
from exchangelib.properties import ItemId
from exchangelib.protocol import BaseProtocol, NoVerifyHTTPAdapter, close_connections
from exchangelib.services import GetFolder, SyncFolderItems

ADMIN, ADMIN_PASSWORD = "admin@example.com", "admin-Secret-1"
ALICE, ALICE_PASSWORD = "alice@example.com", "alice-Secret-2"


class SimMessageFlags(ExtendedProperty):
    property_tag = 0x0E07
    property_type = "Integer"


class SimDeliveryTime(ExtendedProperty):
    property_tag = 0x0E06
    property_type = "SystemTime"


def mime(subject: str, msgid: str | None = None, body: str = "hello") -> bytes:
    head = f"From: Bob <bob@example.com>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
    if msgid:
        head += f"Message-ID: <{msgid}@example.com>\r\n"
    return (head + f"Date: Tue, 02 Jan 2024 10:00:00 +0000\r\n\r\n{body}\r\n").encode()


@pytest.fixture
def store() -> SimulatorStore:
    store = SimulatorStore()
    store.add_user(ADMIN, ADMIN_PASSWORD, impersonation=True)
    store.add_user("helpdesk@example.com", "helpdesk-Secret-3")
    store.add_mailbox(ALICE, ALICE_PASSWORD)
    store.add_mailbox("bob@example.com")
    return store


@pytest.fixture
def simulator(store: SimulatorStore) -> Iterator[EwsSimulator]:
    with EwsSimulator(store, auth=("ntlm", "basic")) as sim:
        yield sim
    close_connections()  # exchangelib caches connection pools per endpoint


def account(
    sim: EwsSimulator,
    address: str = ALICE,
    login: str = ADMIN,
    password: str = ADMIN_PASSWORD,
    *,
    auth: str | None = BASIC,
    access: str = IMPERSONATION,
    retry=None,
) -> Account:
    config = Configuration(
        service_endpoint=sim.url,
        credentials=Credentials(login, password),
        auth_type=auth,
        retry_policy=retry or FailFast(),
    )
    return Account(address, config=config, access_type=access, default_timezone=UTC, locale="en_US")


@pytest.fixture(autouse=True)
def _registered_properties() -> Iterator[None]:
    Message.register("sim_flags", SimMessageFlags)
    Message.register("sim_delivery", SimDeliveryTime)
    yield
    Message.deregister("sim_flags")
    Message.deregister("sim_delivery")


def test_simulator_serves_folders_to_exchangelib(simulator: EwsSimulator) -> None:
    acct = account(simulator)
    assert acct.version.build.major_version == 15 and acct.version.api_version == "Exchange2016"
    assert acct.inbox.name == "Inbox"
    top_level = {f.name for f in acct.msg_folder_root.children}
    assert {"Inbox", "Sent Items", "Drafts", "Deleted Items", "Junk Email", "Calendar"} <= top_level

    project = Folder(parent=acct.inbox, name="Projects", folder_class="IPF.Note").save()
    assert [f.name for f in acct.inbox.children] == ["Projects"]
    with pytest.raises(ErrorFolderExists):
        Folder(parent=acct.inbox, name="projects", folder_class="IPF.Note").save()
    changes = list(acct.msg_folder_root.sync_hierarchy())
    assert ("create", "Projects") in {(kind, f.name) for kind, f in changes}
    assert acct.msg_folder_root.folder_sync_state
    assert project.id in {f.id for f in acct.msg_folder_root.walk()}


def test_simulator_round_trips_mime_and_imports_like_exchange(
    simulator: EwsSimulator, store: SimulatorStore
) -> None:
    acct = account(simulator)
    content = mime("round trip", "rt-1", body="x" * 3000)
    received = EWSDateTime(2021, 3, 4, 5, 6, 7, tzinfo=UTC)
    plain, imported = acct.bulk_create(
        folder=acct.inbox,
        items=[
            Message(mime_content=content),
            Message(mime_content=content, is_read=True, sim_flags=1, sim_delivery=received),
        ],
        message_disposition=SAVE_ONLY,
    )
    fetched = list(
        acct.fetch(
            [plain, imported],
            folder=acct.inbox,
            only_fields=["mime_content", "is_draft", "is_read", "datetime_received", "subject"],
        )
    )
    assert [m.mime_content for m in fetched] == [content, content]
    assert [m.subject for m in fetched] == ["round trip", "round trip"]
    # Saved without PR_MESSAGE_FLAGS a message is an unsent draft, as on Exchange.
    assert (fetched[0].is_draft, fetched[0].is_read) == (True, False)
    assert (fetched[1].is_draft, fetched[1].is_read) == (False, True)
    assert fetched[1].datetime_received == received
    stored = store.messages(ALICE, "inbox")
    assert [m.mime for m in stored] == [content, content]
    assert stored[1].received == dt.datetime(2021, 3, 4, 5, 6, 7, tzinfo=dt.UTC)


def test_simulator_sync_folder_items_reports_changes_after_a_state(
    simulator: EwsSimulator, store: SimulatorStore
) -> None:
    ids = [store.add_message(ALICE, "inbox", mime(f"m{i}", f"s{i}")) for i in range(5)]
    acct = account(simulator)
    fields = ["is_read", "subject"]
    first = list(acct.inbox.sync_items(only_fields=fields, max_changes_returned=2))
    assert [(kind, item.subject) for kind, item in first] == [("create", f"m{i}") for i in range(5)]
    assert sum(r.operation == "SyncFolderItems" for r in simulator.requests) == 3  # 2 + 2 + 1
    state = acct.inbox.item_sync_state

    store.user_set_read(ids[0], True)
    store.user_set_flag(ids[1], True)
    store.user_delete(ids[2])
    new_id = store.add_message(ALICE, "inbox", mime("m5", "s5"))
    changes = list(acct.inbox.sync_items(sync_state=state, only_fields=fields))
    by_kind = {kind: item for kind, item in changes}
    assert set(by_kind) == {SyncFolderItems.READ_FLAG_CHANGE, "update", "delete", "create"}
    assert by_kind[SyncFolderItems.READ_FLAG_CHANGE] == (
        ItemId(ids[0], by_kind["read_flag_change"][0].changekey),
        True,
    )
    assert by_kind["update"].id == ids[1]
    assert by_kind["delete"].id == ids[2]
    assert by_kind["create"].id == new_id
    assert list(acct.inbox.sync_items(sync_state=acct.inbox.item_sync_state)) == []

    with pytest.raises(ErrorInvalidSyncStateData):
        list(acct.inbox.sync_items(sync_state="bm90IGEgc3RhdGU="))
    store.expire_sync_states(ALICE, "inbox")
    with pytest.raises(ErrorInvalidSyncStateData):
        list(acct.inbox.sync_items(sync_state=state))


def _post(sim: EwsSimulator, body: bytes) -> requests.Response:
    auth = base64.b64encode(f"{ADMIN}:{ADMIN_PASSWORD}".encode()).decode()
    headers = {"Authorization": f"Basic {auth}", "Content-Type": "text/xml; charset=utf-8"}
    return requests.post(sim.url, data=body, headers=headers, timeout=10)


def test_simulator_rejects_malformed_requests_with_soap_faults(simulator: EwsSimulator) -> None:
    broken = _post(
        simulator, b"<s:Envelope xmlns:s='http://schemas.xmlsoap.org/soap/envelope/'><s:Body>"
    )
    assert broken.status_code == 500
    assert b"ErrorSchemaValidation" in broken.content and b"faultcode" in broken.content

    envelope = (
        "<s:Envelope xmlns:s='http://schemas.xmlsoap.org/soap/envelope/' "
        "xmlns:m='http://schemas.microsoft.com/exchange/services/2006/messages' "
        "xmlns:t='http://schemas.microsoft.com/exchange/services/2006/types'>"
        "<s:Header><t:RequestServerVersion Version='Exchange2016'/></s:Header><s:Body>{}</s:Body></s:Envelope>"
    )
    unknown = _post(simulator, envelope.format("<m:SendItem/>").encode())
    assert unknown.status_code == 500 and b"ErrorSchemaValidation" in unknown.content
    no_shape = _post(
        simulator, envelope.format("<m:GetFolder><m:FolderIds/></m:GetFolder>").encode()
    )
    assert no_shape.status_code == 500 and b"FolderShape is missing" in no_shape.content
    empty_body = _post(simulator, envelope.format("").encode())
    assert empty_body.status_code == 500 and b"ErrorInvalidRequest" in empty_body.content
    bad_version = _post(
        simulator,
        envelope.replace("Exchange2016", "Exchange1999").format("<m:GetFolder/>").encode(),
    )
    assert b"ErrorInvalidServerVersion" in bad_version.content

    acct = account(simulator)
    (malformed, missing) = acct.fetch(
        [ItemId("not-an-id"), ItemId(base64.b64encode(b"AAMkI" + b"\0" * 14).decode())]
    )
    assert isinstance(malformed, ErrorInvalidIdMalformed)
    assert isinstance(missing, ErrorItemNotFound)
    with pytest.raises(ErrorInvalidRestriction):
        acct.inbox.filter(subject="x").count()  # restrictions are not simulated: a clear fault
    with pytest.raises(ErrorSchemaValidation, match="line: 1"):
        GetFolder(account=acct).parse(broken.content)


def test_simulator_answers_server_busy_with_back_off(
    simulator: EwsSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    simulator.busy(1, back_off_ms=250, operations={"GetFolder"})
    with pytest.raises(ErrorServerBusy) as busy:
        account(simulator).inbox.refresh()
    assert busy.value.back_off == 0.25

    close_connections()
    simulator.busy(2, back_off_ms=100, operations={"GetFolder"})
    acct = account(simulator, retry=FaultTolerance(max_wait=30))
    with caplog.at_level(logging.WARNING, logger="exchangelib"):
        assert acct.inbox.name == "Inbox"
    outcomes = [r.outcome for r in simulator.operations("GetFolder")]
    assert outcomes.count("ErrorServerBusy") == 1 + 2 and outcomes[-1] == "NoError"
    assert "Server requested back off" in caplog.text


def test_simulator_authenticates_basic_and_ntlm(simulator: EwsSimulator) -> None:
    assert account(simulator, auth=NTLM).inbox.name == "Inbox"
    close_connections()
    assert account(simulator, auth=None).protocol.auth_type == NTLM  # detected from the 401 probe
    close_connections()
    with pytest.raises(UnauthorizedError):
        account(simulator, password="wrong").inbox.refresh()
    close_connections()
    with pytest.raises(UnauthorizedError):
        account(simulator, password="wrong", auth=NTLM).inbox.refresh()
    assert "401" in [r.outcome for r in simulator.requests]


def test_simulator_checks_impersonation_and_delegate_access(
    simulator: EwsSimulator, store: SimulatorStore
) -> None:
    helpdesk = ("helpdesk@example.com", "helpdesk-Secret-3")
    with pytest.raises(ErrorImpersonateUserDenied):
        account(simulator, ALICE, *helpdesk).inbox.refresh()
    with pytest.raises(ErrorNonExistentMailbox):
        account(simulator, "nobody@example.com").inbox.refresh()
    with pytest.raises(ErrorAccessDenied):
        account(simulator, ALICE, *helpdesk, access=DELEGATE).inbox.refresh()
    store.grant_full_access("helpdesk@example.com", ALICE)
    assert account(simulator, ALICE, *helpdesk, access=DELEGATE).inbox.total_count == 0
    own = account(simulator, ALICE, ALICE, ALICE_PASSWORD, access=DELEGATE)
    assert own.inbox.name == "Inbox"
    impersonated = [r for r in simulator.requests if r.impersonated]
    assert {r.principal for r in impersonated} == {ADMIN, "helpdesk@example.com"}


def test_simulator_pages_find_item_and_updates_and_deletes(
    simulator: EwsSimulator, store: SimulatorStore
) -> None:
    for i in range(7):
        store.add_message(ALICE, "inbox", mime(f"p{i}", f"p{i}"), is_read=i % 2 == 0)
    acct = account(simulator)
    query = acct.inbox.all().only("subject", "is_read")
    query.page_size = 3
    items = list(query)
    assert [m.subject for m in items] == [f"p{i}" for i in range(7)]
    assert sum(r.operation == "FindItem" for r in simulator.requests) == 3

    items[1].is_read = True
    items[1].save(update_fields=["is_read"])
    acct.bulk_delete([items[0]], delete_type=HARD_DELETE)
    remaining = store.messages(ALICE, "inbox")
    assert len(remaining) == 6 and remaining[0].is_read is True


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_simulator_serves_https_and_oauth2_client_credentials(
    store: SimulatorStore, tmp_path
) -> None:
    class SimulatorOAuth2Credentials(OAuth2Credentials):
        token_endpoint = ""

        @property
        def token_url(self) -> str:
            return self.token_endpoint

    cert, key = self_signed_certificate(tmp_path)
    store.add_oauth_client("app-1", "client-Secret-4", "tenant-1")
    saved_adapter = BaseProtocol.HTTP_ADAPTER_CLS
    BaseProtocol.HTTP_ADAPTER_CLS = NoVerifyHTTPAdapter  # exchangelib's own switch for test servers
    try:
        with EwsSimulator(store, auth=("oauth2", "basic"), tls=(cert, key)) as sim:
            assert sim.url.startswith("https://")
            assert account(sim).inbox.name == "Inbox"
            credentials = SimulatorOAuth2Credentials(
                client_id="app-1", client_secret="client-Secret-4", tenant_id="tenant-1"
            )
            credentials.token_endpoint = sim.token_url("tenant-1")
            config = Configuration(
                service_endpoint=sim.url, credentials=credentials, retry_policy=FailFast()
            )
            acct = Account(ALICE, config=config, access_type=IMPERSONATION, default_timezone=UTC)
            assert acct.inbox.name == "Inbox"
            assert sim.requests[-1].principal == "app-1" and sim.requests[-1].impersonated == ALICE
    finally:
        BaseProtocol.HTTP_ADAPTER_CLS = saved_adapter
        close_connections()
