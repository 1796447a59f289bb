"""UpdateItem: set or delete the writable properties of items (read state, categories, extended);
any field of a typed item (``typed.py``), counting the meeting updates Exchange would send."""

from __future__ import annotations

from lxml import etree

from .. import occurrences
from ..props import apply_item_write, delete_item_property, parse_item_write, prop_key
from ..soap import ResponseError, SoapFault, m, t
from ..typed import TAG_OF_CLASS, is_typed, record_invitation, update_typed
from .base import Operation

WRITABLE_FIELDS = {"message:IsRead", "item:Categories"}


class UpdateItem(Operation):
    NAME = "UpdateItem"

    def handle(self, request: etree._Element) -> list[etree._Element]:
        conflict_resolution = request.get("ConflictResolution")
        if conflict_resolution not in ("NeverOverwrite", "AutoResolve", "AlwaysOverwrite"):
            raise SoapFault(
                "ErrorSchemaValidation", "The request failed schema validation: ConflictResolution."
            )

        def build(change: etree._Element, message: etree._Element) -> None:
            id_elem = change.find(t("ItemId"))
            updates = change.find(t("Updates"))
            occurrence = change.find(t("OccurrenceItemId"))
            if occurrence is not None and updates is not None:  # one instance: its exception
                item = occurrences.exception_for(self.store, self.context, occurrence)
                self._typed(item, updates, None, conflict_resolution, message, request)
                occurrences.refresh_master(self.store, item)
                return
            if id_elem is None or updates is None:
                raise SoapFault(
                    "ErrorSchemaValidation", "The request failed schema validation: ItemChange."
                )
            mailbox, item = self.context.item(id_elem)
            changekey = id_elem.get("ChangeKey")
            if is_typed(item):
                self._typed(item, updates, changekey, conflict_resolution, message, request)
                return
            if (
                changekey
                and changekey != item.changekey
                and conflict_resolution == "NeverOverwrite"
            ):
                raise ResponseError(
                    "ErrorIrresolvableConflict", "The item has changed since it was read."
                )
            only_read_state = True
            for update in updates:
                path = update[0] if len(update) else None
                if path is None or path.tag not in (t("FieldURI"), t("ExtendedFieldURI")):
                    raise SoapFault(
                        "ErrorSchemaValidation",
                        "The request failed schema validation: update path.",
                    )
                if path.tag == t("FieldURI") and path.get("FieldURI") not in WRITABLE_FIELDS:
                    raise ResponseError(
                        "ErrorInvalidPropertySet",
                        f"{path.get('FieldURI')} cannot be set by the simulator.",
                    )
                is_read_update = (
                    path.tag == t("FieldURI") and path.get("FieldURI") == "message:IsRead"
                )
                only_read_state = only_read_state and is_read_update
                if update.tag == t("DeleteItemField"):
                    delete_item_property(item, path)
                elif update.tag in (t("SetItemField"), t("AppendToItemField")):
                    value = update.find(t("Message"))
                    if value is None:
                        value = update.find(t("Item"))
                    if value is None:
                        raise SoapFault(
                            "ErrorSchemaValidation",
                            "The request failed schema validation: no Message.",
                        )
                    write = parse_item_write(value)
                    if path.tag == t("ExtendedFieldURI") and prop_key(path) not in write.extended:
                        raise ResponseError(
                            "ErrorInvalidPropertySet", "The value does not match the update path."
                        )
                    apply_item_write(item, write, creating=False)
                else:
                    raise SoapFault(
                        "ErrorSchemaValidation",
                        f"The request failed schema validation: {update.tag}.",
                    )
            self.store.touch(item, content=not only_read_state)
            items = etree.SubElement(message, m("Items"))
            etree.SubElement(
                etree.SubElement(items, t("Message")),
                t("ItemId"),
                Id=item.id,
                ChangeKey=item.changekey,
            )
            etree.SubElement(etree.SubElement(message, m("ConflictResults")), t("Count")).text = "0"

        return self.each(self.child(request, "ItemChanges"), build)

    def _typed(self, item, updates, changekey, conflict_resolution, message, request) -> None:
        if changekey and changekey != item.changekey and conflict_resolution != "AlwaysOverwrite":
            raise ResponseError(
                "ErrorIrresolvableConflict", "The item has changed since it was read."
            )
        for update in updates:
            update_typed(item, update)
        self.store.touch(item)
        record_invitation(self.store, item, self.NAME,
                          request.get("SendMeetingInvitationsOrCancellations"))  # fmt: skip
        items = etree.SubElement(message, m("Items"))
        tag = t(TAG_OF_CLASS[item.item_class])
        etree.SubElement(etree.SubElement(items, tag), t("ItemId"), Id=item.id,
                         ChangeKey=item.changekey)  # fmt: skip
        etree.SubElement(etree.SubElement(message, m("ConflictResults")), t("Count")).text = "0"
