"""The base of the EWS simulator's operation handlers, and the request context they act in.

Each EWS operation is one :class:`Operation` subclass (like exchangelib's one class per service):
it reads its request element and returns one response message per requested object. Access checks
(impersonation, delegate access, ids of other mailboxes) live in :class:`RequestContext`.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from ..soap import ResponseError, SoapFault, m, response_message, t
from ..store import SimulatorStore, StoredFolder, StoredItem, StoredMailbox, StoredUser


@dataclass
class Principal:
    """Who is authenticated: a user login or an OAuth2 app (``app=True``, may impersonate)."""

    name: str
    user: StoredUser | None = None
    app: bool = False

    @property
    def may_impersonate(self) -> bool:
        return self.app or bool(self.user and self.user.impersonation)


class RequestContext:
    """The store and the mailboxes one request may act on."""

    def __init__(self, store: SimulatorStore, principal: Principal, impersonated: str | None):
        self.store = store
        self.principal = principal
        if impersonated is not None:
            if not principal.may_impersonate:
                raise SoapFault(
                    "ErrorImpersonateUserDenied",
                    f"The account {principal.name} does not have permission to impersonate the requested user.",
                )
            if impersonated.lower() not in store.mailboxes:
                raise SoapFault(
                    "ErrorNonExistentMailbox",
                    f"The SMTP address {impersonated} has no mailbox associated with it.",
                )
            self.own = impersonated.lower()
            self.accessible = {self.own}
        elif principal.app:
            self.own, self.accessible = (
                None,
                set(),
            )  # app-only tokens reach mailboxes only by impersonation
        else:
            user = principal.user
            assert user is not None
            self.own = user.login.lower() if user.login.lower() in store.mailboxes else None
            self.accessible = ({self.own} if self.own else set()) | user.full_access

    def mailbox(self, address: str | None) -> StoredMailbox:
        address = (address or self.own or "").lower()
        if not address:
            raise ResponseError(
                "ErrorMissingEmailAddress", f"The account {self.principal.name} has no mailbox."
            )
        if address not in self.store.mailboxes:
            raise ResponseError(
                "ErrorNonExistentMailbox",
                f"The SMTP address {address} has no mailbox associated with it.",
            )
        if address not in self.accessible:
            raise ResponseError("ErrorAccessDenied", f"Access is denied to the mailbox {address}.")
        return self.store.mailboxes[address]

    def folder(self, elem: etree._Element) -> tuple[StoredMailbox, StoredFolder]:
        """The folder of a ``t:FolderId`` or ``t:DistinguishedFolderId`` element."""
        if elem.tag == t("DistinguishedFolderId"):
            name = elem.get("Id") or ""
            mailbox = self.mailbox(elem.findtext(f"{t('Mailbox')}/{t('EmailAddress')}"))
            return mailbox, mailbox.distinguished(name)
        if elem.tag == t("FolderId"):
            mailbox = self.store.locate_id(elem.get("Id") or "")
            self.mailbox(mailbox.address)
            folder = mailbox.folders.get(elem.get("Id"))
            if folder is None:
                raise ResponseError(
                    "ErrorFolderNotFound", "The specified folder could not be found in the store."
                )
            return mailbox, folder
        raise SoapFault(
            "ErrorSchemaValidation", f"The request failed schema validation: unexpected {elem.tag}."
        )

    def item(self, elem: etree._Element) -> tuple[StoredMailbox, StoredItem]:
        """The item of a ``t:ItemId`` element."""
        if elem.tag != t("ItemId") or not elem.get("Id"):
            raise SoapFault(
                "ErrorSchemaValidation",
                f"The request failed schema validation: {elem.tag} is not an ItemId.",
            )
        mailbox = self.store.locate_id(elem.get("Id"))
        self.mailbox(mailbox.address)
        item = mailbox.items.get(elem.get("Id"))
        if item is None:
            raise ResponseError(
                "ErrorItemNotFound", "The specified object was not found in the store."
            )
        return mailbox, item


class Operation:
    """One EWS operation. Subclasses set ``NAME`` and implement :meth:`handle`."""

    NAME = ""

    def __init__(self, context: RequestContext):
        self.context = context
        self.store = context.store

    def handle(self, request: etree._Element) -> list[etree._Element]:
        raise NotImplementedError

    def message(self, error: ResponseError | None = None) -> etree._Element:
        return response_message(self.NAME, error)

    def each(self, elems, build) -> list[etree._Element]:
        """One response message per element: ``build(elem, message)`` fills a success message."""
        out = []
        for elem in elems:
            try:
                message = self.message()
                build(elem, message)
            except ResponseError as error:
                message = self.message(error)
                self.on_error(message)
            out.append(message)
        return out

    def on_error(self, message: etree._Element) -> None:
        """Add what this operation's error messages carry besides the code (nothing by default)."""

    @staticmethod
    def child(parent: etree._Element, tag: str) -> etree._Element:
        found = parent.find(m(tag))
        if found is None:
            raise SoapFault(
                "ErrorSchemaValidation",
                f"The request failed schema validation: m:{tag} is missing.",
            )
        return found

    @staticmethod
    def paging(view: etree._Element | None) -> tuple[int, int]:
        """``(offset, max entries)`` of an ``IndexedPage...View``; everything when there is none."""
        if view is None:
            return 0, 1_000_000
        if view.get("BasePoint", "Beginning") != "Beginning":
            raise SoapFault("ErrorInvalidRequest", "The simulator pages from the beginning only.")
        try:
            return int(view.get("Offset", "0")), int(view.get("MaxEntriesReturned", "1000000"))
        except ValueError:
            raise SoapFault(
                "ErrorSchemaValidation", "The request failed schema validation: paging values."
            ) from None

    @staticmethod
    def page_root(total: int, offset: int, count: int) -> etree._Element:
        """``m:RootFolder`` with the paging attributes exchangelib reads."""
        end = offset + count
        root = etree.Element(m("RootFolder"))
        root.set("TotalItemsInView", str(total))
        root.set("IncludesLastItemInRange", "true" if end >= total else "false")
        root.set("IndexedPagingOffset", str(min(end, total)))
        return root
