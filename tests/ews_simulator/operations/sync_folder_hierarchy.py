"""SyncFolderHierarchy: folders created below a folder since a sync state."""

from __future__ import annotations

from lxml import etree

from ..changes import InvalidSyncState, decode_sync_state, encode_sync_state
from ..props import parse_shape
from ..render import render_folder
from ..soap import ResponseError, format_bool, m, t
from ..store import StoredFolder, StoredMailbox
from .base import Operation


class SyncFolderHierarchy(Operation):
    NAME = "SyncFolderHierarchy"

    def on_error(self, message: etree._Element) -> None:
        # Exchange sends an empty SyncState with errors such as ErrorInvalidSyncStateData.
        etree.SubElement(message, m("SyncState"))
        etree.SubElement(message, m("IncludesLastFolderInRange")).text = "true"

    def handle(self, request: etree._Element) -> list[etree._Element]:
        shape = parse_shape(self.child(request, "FolderShape"), items=False)
        shape.fields |= {"folder:ParentFolderId", "folder:DisplayName", "folder:FolderClass"}
        ref = request.find(m("SyncFolderId"))
        state_text = (request.findtext(m("SyncState")) or "").strip()

        def build(_: object, message: etree._Element) -> None:
            if ref is not None and len(ref):
                mailbox, top = self.context.folder(ref[0])
            else:
                mailbox = self.context.mailbox(None)
                top = mailbox.distinguished("root")
            try:
                since = decode_sync_state(self.store, top, state_text) if state_text else 0
            except InvalidSyncState:
                raise ResponseError(
                    "ErrorInvalidSyncStateData",
                    "Synchronization state data is corrupt or otherwise invalid.",
                ) from None
            created = [f for f in self._subtree(mailbox, top) if f.created_seq > since]
            etree.SubElement(message, m("SyncState")).text = encode_sync_state(
                self.store, top, mailbox.seq
            )
            etree.SubElement(message, m("IncludesLastFolderInRange")).text = format_bool(True)
            changes = etree.SubElement(message, m("Changes"))
            for folder in created:
                etree.SubElement(changes, t("Create")).append(render_folder(mailbox, folder, shape))

        return self.each([None], build)

    @classmethod
    def _subtree(cls, mailbox: StoredMailbox, top: StoredFolder) -> list[StoredFolder]:
        out = []
        for child in sorted(mailbox.children(top.id), key=lambda f: f.created_seq):
            out.append(child)
            out.extend(cls._subtree(mailbox, child))
        return out
