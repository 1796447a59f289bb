"""One account on a CalDAV (RFC 4791) / CardDAV (RFC 6352) server, through the ``caldav`` library's
:class:`~caldav.davclient.DAVClient` (requests, XML built with ``caldav.elements``).

What this module offers is small on purpose: discover the account's collections, list a
collection's items (href and ETag; changes since a sync token where the server offers RFC 6578
sync-collection), fetch items, write and delete items, create collections. Everything the
migration decides lives in :mod:`mailmigrate.groupware.sync`.

Invariants:

- Every write carries ``Schedule-Reply: F`` (RFC 6638 §8.1), and a write never overwrites an item
  it did not expect: new items go with ``If-None-Match: *``, replacements with ``If-Match`` on the
  ETag the caller last saw.
- Errors are :class:`DavError` naming the account, the URL and the server's status; item
  contents never appear in them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import quote, unquote, urljoin, urlsplit

from caldav.davclient import DAVClient, DAVResponse
from caldav.elements import cdav, dav, ical
from caldav.elements.base import BaseElement, ValuedBaseElement
from caldav.lib import error as caldav_error

from mailmigrate.errors import ConnectionConfigError, DavError

if TYPE_CHECKING:
    from mailmigrate.connections import Endpoint

CARDDAV = "urn:ietf:params:xml:ns:carddav"
CALENDARSERVER = "http://calendarserver.org/ns/"


class AddressbookHomeSet(BaseElement):
    tag: ClassVar[str] = f"{{{CARDDAV}}}addressbook-home-set"


class Addressbook(BaseElement):
    tag: ClassVar[str] = f"{{{CARDDAV}}}addressbook"


class AddressData(BaseElement):
    tag: ClassVar[str] = f"{{{CARDDAV}}}address-data"


class AddressbookMultiget(BaseElement):
    tag: ClassVar[str] = f"{{{CARDDAV}}}addressbook-multiget"


class GetCtag(ValuedBaseElement):
    tag: ClassVar[str] = f"{{{CALENDARSERVER}}}getctag"


class ScheduleDefaultCalendarURL(BaseElement):
    tag: ClassVar[str] = "{urn:ietf:params:xml:ns:caldav}schedule-default-calendar-URL"


CALENDAR, ADDRESSBOOK = "calendar", "addressbook"
SAFE = "/:@+,;=!$&'()*~"  # left as they are when a path goes on the wire
MEDIA_TYPE = {CALENDAR: "text/calendar; charset=utf-8", ADDRESSBOOK: "text/vcard; charset=utf-8"}
EXTENSION = {CALENDAR: ".ics", ADDRESSBOOK: ".vcf"}


def resource_name(uid: str) -> str:
    """The destination resource name of a new item: its UID when that is a plain name, else a
    digest of it (UIDs may hold ``/`` or spaces)."""
    if re.fullmatch(r"[\w.@+-]{1,100}", uid, re.ASCII):
        return uid
    return hashlib.sha256(uid.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class DavEndpoint:
    """Where one account's DAV service lives and how to log in.

    :param url: the service's context URL (the server root, ``/.well-known/caldav``'s target, or
        the principal URL); the principal is discovered from it.
    :param user: the account whose collections are copied.
    :param password: the password of whoever logs in (the account, or the admin login).
    :param ca_file: a CA bundle to trust instead of the system's (self-signed servers).
    :param login: an admin login acting for ``user`` (``None``: ``user`` logs in itself).
    :param principal: the account's principal path when an admin logs in (discovery cannot
        follow the logged-in principal then).
    """

    url: str
    user: str
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    verify: bool = True
    login: str | None = None
    principal: str | None = None

    @classmethod
    def from_connection(cls, connection: Endpoint, user: str, password: str | None
                        ) -> DavEndpoint:  # fmt: skip
        """The DAV endpoint of one account from a connection's host, port and extras:
        ``security`` (``ssl``, the default: https; ``none``: http), ``path`` (the service's
        path, default ``/``: discovery starts there), ``ca_file``, ``verify`` (``false`` only
        for test servers), read by the rules of :mod:`mailmigrate.connections` (a malformed
        value is a :class:`ConnectionConfigError`).

        An account with a password in the accounts file logs in itself. One without logs in
        through the connection's admin login (its login and password, as a mail connection's
        master user) at the principal ``principal_path`` (extra; ``{user}`` stands for the
        account): a server must let that login read and write other users' collections
        (Radicale's rights file, Nextcloud/SOGo delegation or an admin principal)."""
        security = connection.choice("security", ("ssl", "none"), "ssl")
        scheme = "https" if security == "ssl" else "http"
        port = f":{connection.port}" if connection.port else ""
        path = "/" + str(connection.option("path", "/")).lstrip("/")
        common = {"url": f"{scheme}://{connection.host}{port}{path}", "user": user,
                  "ca_file": connection.option("ca_file"),
                  "verify": connection.flag("verify", True)}  # fmt: skip
        if password:
            return cls(password=password, **common)
        where = f"connection {connection.conn_id!r}"
        if not (connection.login and connection.password):
            raise ConnectionConfigError(
                f"{where}: account {user!r} has no password in the accounts file and the "
                "connection no admin login (login and password, with extra principal_path)"
            )
        template = str(connection.option("principal_path", "")).strip()
        if "{user}" not in template:
            raise ConnectionConfigError(
                f"{where}: an admin login needs extra principal_path naming the account as "
                "{user}, e.g. /{user}/ (Radicale), /remote.php/dav/principals/users/{user}/ "
                "(Nextcloud), /SOGo/dav/{user}/ (SOGo)"
            )
        principal = "/" + template.replace("{user}", user).lstrip("/")
        return cls(password=connection.password, login=connection.login, principal=principal,
                   **common)  # fmt: skip

    def open(self) -> DavAccount:
        return DavAccount(self)

    def identity(self) -> dict[str, object]:
        """The account as the state knows it: server and user, not the password."""
        parts = urlsplit(self.url)
        return {"kind": "dav", "host": (parts.hostname or "").lower(), "port": parts.port,
                "path": parts.path, "user": self.user}  # fmt: skip


@dataclass
class Collection:
    """A calendar (events, tasks or both) or an address book of one account.

    :param components: for calendars, the iCalendar components it holds (``VEVENT``, ``VTODO``).
    :param sync_token: RFC 6578 token, ``None`` when the server offers no sync-collection.
    """

    kind: str
    href: str
    name: str
    color: str | None = None
    components: tuple[str, ...] = ()
    sync_token: str | None = None
    default: bool = False

    @property
    def path_name(self) -> str:
        return unquote(self.href.rstrip("/").rsplit("/", 1)[-1])


@dataclass
class Listing:
    """What a collection holds: href → ETag, plus the hrefs gone since a sync token.

    :param complete: ``True`` when ``etags`` is every item (a full listing), ``False`` for the
        changes since a token (then ``removed`` lists deletions).
    """

    etags: dict[str, str | None]
    removed: set[str]
    token: str | None
    complete: bool


class DavAccount:
    """A logged-in DAV account. Use :meth:`collections` first; everything else takes hrefs
    (server-absolute paths) it returned."""

    def __init__(self, endpoint: DavEndpoint, timeout: int = 60) -> None:
        self.endpoint = endpoint
        verify: bool | str = endpoint.ca_file or endpoint.verify
        self.client = DAVClient(endpoint.url, username=endpoint.login or endpoint.user,
                                password=endpoint.password, ssl_verify_cert=verify,
                                timeout=timeout)  # fmt: skip
        self.features: set[str] = set()
        self._homes: dict[str, str | None] = {}
        self.addresses: list[str] = []
        self._default_calendar: str | None = None

    def close(self) -> None:
        self.client.close()

    def _where(self, url: str) -> str:
        acting = f" (as {self.endpoint.login})" if self.endpoint.login else ""
        return f"{self.endpoint.user}{acting} at {urljoin(self.endpoint.url, url)}"

    def _refused(self, url: str) -> DavError:
        if self.endpoint.login:  # the login worked elsewhere, or its rights are what is missing
            return DavError(f"{self._where(url)}: refused: {self.endpoint.login}'s password is "
                            f"wrong or it may not act for {self.endpoint.user}", 401)  # fmt: skip
        return DavError(f"{self._where(url)}: login refused", 401)

    def _request(self, method: str, url: str, body: str = "", headers=None) -> DAVResponse:
        url = urljoin(self.endpoint.url, quote(url, safe=SAFE))
        try:
            response = self.client.request(url, method, body, headers or {})
        except caldav_error.AuthorizationError as exc:
            # caldav raises this for 403 as for 401; a 403 is an answer to this request (e.g. a
            # sync token the server no longer accepts), not a refused login.
            if "forbidden" in str(exc.reason).lower():
                acting = self.endpoint.login
                why = f": {acting} may not act for {self.endpoint.user} here" if acting else ""
                raise DavError(f"{self._where(url)}: {method} answered 403 Forbidden{why}",
                               403) from None  # fmt: skip
            raise self._refused(url) from None
        except caldav_error.DAVError as exc:
            raise DavError(f"{self._where(url)}: {method} failed ({exc.reason})") from None
        except OSError as exc:  # requests' ConnectionError is an OSError
            raise DavError(f"{self._where(url)}: {method} failed ({type(exc).__name__})") from None
        if response.status >= 400:
            raise DavError(
                f"{self._where(url)}: {method} answered {response.status} {response.reason}",
                response.status,
            )
        return response

    def _propfind(self, url: str, props: list[BaseElement], depth: int) -> dict[str, dict]:
        body = str(dav.Propfind() + [dav.Prop() + props])
        response = self._request("PROPFIND", url, body, {"Depth": str(depth),
                                 "Content-Type": "application/xml; charset=utf-8"})  # fmt: skip
        return response.find_objects_and_props()

    # -- discovery -----------------------------------------------------------------------------

    def discover(self) -> None:
        """Principal, home sets, calendar user addresses and the server's DAV features."""
        try:
            # unquoted like every href here (a user name such as alice@example.com arrives
            # as alice%40example.com and would be quoted twice)
            principal = self.endpoint.principal or _path(
                self.endpoint.url, str(self.client.principal().url)
            )
        except caldav_error.AuthorizationError:
            raise self._refused("") from None
        except (caldav_error.DAVError, OSError) as exc:
            raise DavError(f"{self._where('')}: no DAV principal found ({exc})") from None
        props = self._propfind(principal, [cdav.CalendarHomeSet(), AddressbookHomeSet(),
                                           cdav.CalendarUserAddressSet(),
                                           cdav.ScheduleInboxURL()], 0)  # fmt: skip
        found = next(iter(props.values()), {})
        for kind, element in ((CALENDAR, cdav.CalendarHomeSet), (ADDRESSBOOK, AddressbookHomeSet)):
            self._homes[kind] = _href(found.get(element.tag), principal)
        self.addresses = [h.text for h in _hrefs(found.get(cdav.CalendarUserAddressSet.tag))]
        inbox = _href(found.get(cdav.ScheduleInboxURL.tag), principal)
        if inbox:
            try:
                inbox_props = self._propfind(inbox, [ScheduleDefaultCalendarURL()], 0)
                tag = ScheduleDefaultCalendarURL.tag
                value = next(iter(inbox_props.values()), {}).get(tag)
                self._default_calendar = _href(value, inbox)
            except DavError:
                pass
        response = self._request("OPTIONS", principal)
        self.features = {f.strip() for f in response.headers.get("DAV", "").split(",")}

    @property
    def schedules(self) -> bool:
        """Whether the server does implicit scheduling (RFC 6638) on writes."""
        return "calendar-auto-schedule" in self.features

    def home(self, kind: str) -> str | None:
        if not self._homes:
            self.discover()
        return self._homes.get(kind)

    def collections(self) -> list[Collection]:
        """The account's calendars and address books (task lists are calendars holding VTODO).
        The default calendar is the server's schedule-default-calendar-URL, else the first
        event calendar by href."""
        found: list[Collection] = []
        props = [dav.ResourceType(), dav.DisplayName(), ical.CalendarColor(),
                 cdav.SupportedCalendarComponentSet(), dav.SyncToken()]  # fmt: skip
        for kind in (CALENDAR, ADDRESSBOOK):
            home = self.home(kind)
            if not home:
                continue
            for href, values in self._propfind(home, props, 1).items():
                types = values.get(dav.ResourceType.tag)
                tags = {child.tag for child in types} if types is not None else set()
                wanted = cdav.Calendar.tag if kind == CALENDAR else Addressbook.tag
                if wanted not in tags:
                    continue
                comps = values.get(cdav.SupportedCalendarComponentSet.tag)
                components = (
                    tuple(sorted(c.get("name") for c in comps)) if comps is not None else ()
                )
                if kind == CALENDAR and not components:
                    components = ("VEVENT", "VJOURNAL", "VTODO")
                href = _path(home, href)
                found.append(Collection(
                    kind=kind, href=href, name=_text(values.get(dav.DisplayName.tag)) or "",
                    color=_text(values.get(ical.CalendarColor.tag)), components=components,
                    sync_token=_text(values.get(dav.SyncToken.tag)),
                ))  # fmt: skip
        for collection in found:
            if not collection.name:
                collection.name = collection.path_name
        events = sorted((c for c in found if "VEVENT" in c.components), key=lambda c: c.href)
        default = next((c for c in events if c.href == self._default_calendar), None)
        if default is None and events:
            default = events[0]
        if default is not None:
            default.default = True
        return found

    # -- items ---------------------------------------------------------------------------------

    def listing(self, collection: Collection, token: str | None = None) -> Listing:
        """Items of ``collection``: with ``token`` (from an earlier listing) only what changed
        since, through sync-collection; a full listing when the server offers none or no longer
        accepts the token."""
        if collection.sync_token is not None:
            try:
                return self._sync_collection(collection.href, token)
            except DavError as exc:
                if token is None or exc.status not in (403, 409, 400, 412):
                    raise
                return self._sync_collection(collection.href, None)  # token expired: start over
        found = self._propfind(collection.href, [dav.GetEtag()], 1)
        etags = {_path(collection.href, h): _text(v.get(dav.GetEtag.tag))
                 for h, v in found.items()}  # fmt: skip
        etags.pop(collection.href, None)
        return Listing(etags, set(), None, True)

    def _sync_collection(self, href: str, since: str | None) -> Listing:
        body = str(dav.SyncCollection() + [dav.SyncToken(value=since or ""), dav.SyncLevel(value="1"),
                                           dav.Prop() + [dav.GetEtag()]])  # fmt: skip
        response = self._request(
            "REPORT", href, body, {"Depth": "0", "Content-Type": "application/xml; charset=utf-8"}
        )
        etags: dict[str, str | None] = {}
        removed: set[str] = set()
        token = None
        for item in response._strip_to_multistatus():
            if item.tag == dav.SyncToken.tag:
                token = item.text
                continue
            path = _path(href, item.findtext(dav.Href.tag) or "")
            if path.rstrip("/") == href.rstrip("/"):
                continue
            status = item.findtext(dav.Status.tag) or ""
            if " 404 " in status:
                removed.add(path)
            else:
                etags[path] = item.findtext(f"{dav.PropStat.tag}/{dav.Prop.tag}/{dav.GetEtag.tag}")
        return Listing(etags, removed, token, complete=since is None)

    def fetch(self, collection: Collection, hrefs: list[str]) -> dict[str, tuple[str, str | None]]:
        """href → (content, ETag) of ``hrefs`` through one multiget REPORT per 100 items; an item
        deleted in between is simply absent."""
        result: dict[str, tuple[str, str | None]] = {}
        if collection.kind == CALENDAR:
            report, data = cdav.CalendarMultiGet, cdav.CalendarData
        else:
            report, data = AddressbookMultiget, AddressData
        for start in range(0, len(hrefs), 100):
            chunk = hrefs[start : start + 100]
            body = str(report() + [dav.Prop() + [dav.GetEtag(), data()]]
                       + [dav.Href(value=quote(h, safe=SAFE)) for h in chunk])  # fmt: skip
            response = self._request(
                "REPORT",
                collection.href,
                body,
                {"Depth": "1", "Content-Type": "application/xml; charset=utf-8"},
            )
            for href, values in response.find_objects_and_props().items():
                content = _text(values.get(data.tag))
                if content is not None:
                    path = _path(collection.href, href)
                    result[path] = (content, _text(values.get(dav.GetEtag.tag)))
        return result

    def put(self, kind: str, href: str, content: str, etag: str | None) -> str | None:
        """Write an item: create it (``etag`` ``None``: fails if the href exists) or replace the
        version with ``etag``. Returns the new ETag when the server tells it."""
        headers = {"Content-Type": MEDIA_TYPE[kind], "Schedule-Reply": "F"}
        headers["If-Match" if etag else "If-None-Match"] = etag or "*"
        response = self._request("PUT", href, content, headers)
        return response.headers.get("ETag")

    def delete(self, href: str, etag: str | None) -> None:
        headers = {"Schedule-Reply": "F"}
        if etag:
            headers["If-Match"] = etag
        self._request("DELETE", href, "", headers)

    def create(self, source: Collection, href: str) -> Collection:
        """A new collection at ``href`` with the source's name, colour and components."""
        props: list[BaseElement] = [dav.DisplayName(value=source.name)]
        if source.color:
            props.append(ical.CalendarColor(value=source.color))
        if source.kind == CALENDAR:
            components = cdav.SupportedCalendarComponentSet()
            components += [cdav.Comp(name) for name in source.components]
            props.append(components)
            body = str(cdav.Mkcalendar() + [dav.Set() + [dav.Prop() + props]])
            self._request("MKCALENDAR", href, body, {"Content-Type": "application/xml"})
        else:
            resourcetype = dav.ResourceType() + [dav.Collection(), Addressbook()]
            body = str(dav.Mkcol() + [dav.Set() + [dav.Prop() + [resourcetype, *props]]])
            self._request("MKCOL", href, body, {"Content-Type": "application/xml"})
        created = next((c for c in self.collections() if c.href == href), None)
        if created is None:
            raise DavError(f"{self._where(href)}: created, but not listed afterwards")
        return created


def _text(element) -> str | None:
    if element is None:
        return None
    return element.text if element.text is not None else None


def _hrefs(element):
    return [] if element is None else list(element.iter(dav.Href.tag))


def _href(element, base: str) -> str | None:
    hrefs = _hrefs(element)
    if not hrefs or not hrefs[0].text:
        return None
    return _path(base, hrefs[0].text.strip())


def _path(base: str, href: str) -> str:
    """The server-absolute, unquoted path of ``href`` (servers quote hrefs differently from
    one answer to the next: this is the one form items are keyed by)."""
    return unquote(urlsplit(urljoin(base, href)).path)
