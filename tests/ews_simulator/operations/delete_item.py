"""DeleteItem: hard/soft delete, or move to Deleted Items."""

from __future__ import annotations

from lxml import etree

from .. import occurrences
from ..soap import SoapFault, t
from ..typed import is_typed, record_invitation
from .base import Operation


class DeleteItem(Operation):
    NAME = "DeleteItem"

    def handle(self, request: etree._Element) -> list[etree._Element]:
        delete_type = request.get("DeleteType")
        if delete_type not in ("HardDelete", "SoftDelete", "MoveToDeletedItems"):
            raise SoapFault(
                "ErrorSchemaValidation",
                f"The request failed schema validation: DeleteType {delete_type!r}.",
            )

        def build(item_id: etree._Element, message: etree._Element) -> None:
            if item_id.tag == t("OccurrenceItemId"):  # one instance of a recurring meeting
                occurrences.cancel(self.store, self.context, item_id)
                return
            mailbox, item = self.context.item(item_id)
            if is_typed(item):  # calendar items etc.: gone, cancellations counted
                record_invitation(self.store, item, self.NAME,
                                  request.get("SendMeetingCancellations"))  # fmt: skip
                for exception in [i for i in mailbox.items.values() if i.occurrence_of == item.id]:
                    self.store.delete_item(mailbox, exception)
                self.store.delete_item(mailbox, item)
                return
            trash = mailbox.distinguished("deleteditems")
            if delete_type != "MoveToDeletedItems" or item.folder_id == trash.id:
                self.store.delete_item(mailbox, item)
                return
            self.store.delete_item(mailbox, item)
            moved = self.store.create_item(mailbox, trash, item.mime, received=item.received)
            moved.is_read, moved.is_draft, moved.categories, moved.props = (
                item.is_read,
                item.is_draft,
                item.categories,
                item.props,
            )

        return self.each(self.child(request, "ItemIds"), build)
