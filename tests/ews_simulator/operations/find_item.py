"""FindItem: the items of folders (Shallow traversal), optionally sorted, paged."""

from __future__ import annotations

from lxml import etree

from ..props import parse_shape
from ..render import render_item
from ..soap import SoapFault, m, t
from ..store import StoredItem
from .base import Operation

SORT_KEYS = {
    "item:DateTimeReceived": lambda i: i.received,
    "item:Size": lambda i: i.size,
    "item:DateTimeCreated": lambda i: i.created,
}


class FindItem(Operation):
    NAME = "FindItem"

    def handle(self, request: etree._Element) -> list[etree._Element]:
        traversal = request.get("Traversal")
        if traversal not in ("Shallow", "SoftDeleted", "Associated"):
            raise SoapFault(
                "ErrorInvalidRequest",
                f"The simulator supports Shallow FindItem only, not {traversal!r}.",
            )
        if request.find(m("Restriction")) is not None or request.find(m("QueryString")) is not None:
            raise SoapFault(
                "ErrorInvalidRestriction", "The simulator does not evaluate FindItem restrictions."
            )
        shape = parse_shape(self.child(request, "ItemShape"), items=True)
        if shape.mime:
            raise SoapFault(
                "ErrorInvalidPropertyRequest", "MimeContent cannot be used in FindItem requests."
            )
        offset, count = self.paging(request.find(m("IndexedPageItemView")))
        sort_order = request.find(m("SortOrder"))

        def build(ref: etree._Element, message: etree._Element) -> None:
            mailbox, folder = self.context.folder(ref)
            found = (
                []
                if traversal != "Shallow"
                else sorted(
                    (i for i in mailbox.items_in(folder.id) if not i.occurrence_of),
                    key=lambda i: i.created_seq,
                )  # exceptions are not listed
            )
            found = self._sorted(found, sort_order)
            page = found[offset : offset + count]
            root = self.page_root(len(found), offset, len(page))
            items = etree.SubElement(root, t("Items"))
            items.extend(render_item(i, folder, shape) for i in page)
            message.append(root)

        return self.each(self.child(request, "ParentFolderIds"), build)

    @staticmethod
    def _sorted(items: list[StoredItem], sort_order: etree._Element | None) -> list[StoredItem]:
        for order in reversed(list(sort_order) if sort_order is not None else []):
            uri = order.find(t("FieldURI"))
            key = SORT_KEYS.get(uri.get("FieldURI") if uri is not None else "")
            if key is None:
                raise SoapFault(
                    "ErrorInvalidRequest",
                    "The simulator sorts by received time, creation time or size.",
                )
            items = sorted(items, key=key, reverse=order.get("Order") == "Descending")
        return items
