"""SyncFolderItems: the changes of a folder's items since a sync state, paged by MaxChangesReturned."""

from __future__ import annotations

from lxml import etree

from ..changes import InvalidSyncState, decode_sync_state, encode_sync_state, item_changes
from ..props import parse_shape
from ..render import render_item
from ..soap import ResponseError, SoapFault, format_bool, m, parse_int, t
from ..store import StoredItem
from .base import Operation


class SyncFolderItems(Operation):
    NAME = "SyncFolderItems"

    def on_error(self, message: etree._Element) -> None:
        # Exchange sends an empty SyncState with errors such as ErrorInvalidSyncStateData.
        etree.SubElement(message, m("SyncState"))
        etree.SubElement(message, m("IncludesLastItemInRange")).text = "true"

    def handle(self, request: etree._Element) -> list[etree._Element]:
        shape = parse_shape(self.child(request, "ItemShape"), items=True)
        shape.mime = False  # SyncFolderItems does not return MimeContent; GetItem does
        folder_ref = self.child(request, "SyncFolderId")
        if len(folder_ref) != 1:
            raise SoapFault(
                "ErrorSchemaValidation", "The request failed schema validation: SyncFolderId."
            )
        max_changes = parse_int(
            self.child(request, "MaxChangesReturned").text, "MaxChangesReturned"
        )
        if not 1 <= max_changes <= 512:
            raise SoapFault("ErrorInvalidRequest", "MaxChangesReturned must be between 1 and 512.")
        scope = request.findtext(m("SyncScope")) or "NormalItems"
        if scope not in ("NormalItems", "NormalAndAssociatedItems"):
            raise SoapFault(
                "ErrorSchemaValidation",
                f"The request failed schema validation: SyncScope {scope!r}.",
            )
        ignore_elem = request.find(m("Ignore"))
        ignore = {i.get("Id") for i in ignore_elem} if ignore_elem is not None else set()
        state_text = (request.findtext(m("SyncState")) or "").strip()

        def build(ref: etree._Element, message: etree._Element) -> None:
            mailbox, folder = self.context.folder(ref)
            try:
                since = decode_sync_state(self.store, folder, state_text) if state_text else 0
            except InvalidSyncState:
                raise ResponseError(
                    "ErrorInvalidSyncStateData",
                    "Synchronization state data is corrupt or otherwise invalid.",
                ) from None
            changes, position, includes_last = item_changes(
                self.store, folder, since, max_changes, ignore
            )
            etree.SubElement(message, m("SyncState")).text = encode_sync_state(
                self.store, folder, position
            )
            etree.SubElement(message, m("IncludesLastItemInRange")).text = format_bool(
                includes_last
            )
            container = etree.SubElement(message, m("Changes"))
            for kind, obj in changes:
                change = etree.SubElement(container, t(kind))
                if kind in ("Create", "Update"):
                    change.append(render_item(obj, folder, shape))
                elif kind == "ReadFlagChange":
                    assert isinstance(obj, StoredItem)
                    etree.SubElement(change, t("ItemId"), Id=obj.id, ChangeKey=obj.changekey)
                    etree.SubElement(change, t("IsRead")).text = format_bool(obj.is_read)
                else:
                    etree.SubElement(change, t("ItemId"), Id=str(obj))

        return self.each([folder_ref[0]], build)
