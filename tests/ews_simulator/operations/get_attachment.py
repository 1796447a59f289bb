"""GetAttachment: the file attachments of typed items (calendar items, contacts, tasks) by
AttachmentId, with their content (GetItem lists them without it, as Exchange does)."""

from __future__ import annotations

import copy

from lxml import etree

from ..soap import ResponseError, m, t
from ..typed import attachment
from .base import Operation


class GetAttachment(Operation):
    NAME = "GetAttachment"

    def handle(self, request: etree._Element) -> list[etree._Element]:
        def build(ref: etree._Element, message: etree._Element) -> None:
            item_id = (ref.get("Id") or "").rsplit("-att", 1)[0]
            mailbox = self.store.locate_id(item_id)
            self.context.mailbox(mailbox.address)
            item = mailbox.items.get(item_id)
            found = attachment(item, ref.get("Id") or "") if item is not None else None
            if found is None:
                raise ResponseError("ErrorInvalidAttachmentId", "The attachment was not found.")
            etree.SubElement(message, m("Attachments")).append(copy.deepcopy(found))

        return self.each(self.child(request, "AttachmentIds").findall(t("AttachmentId")), build)
