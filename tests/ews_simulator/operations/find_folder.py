"""FindFolder: the subfolders of folders (Shallow or Deep traversal), paged."""

from __future__ import annotations

from lxml import etree

from ..props import parse_shape
from ..render import render_folder
from ..soap import SoapFault, m, t
from ..store import StoredFolder, StoredMailbox
from .base import Operation


class FindFolder(Operation):
    NAME = "FindFolder"

    def handle(self, request: etree._Element) -> list[etree._Element]:
        traversal = request.get("Traversal")
        if traversal not in ("Shallow", "Deep", "SoftDeleted"):
            raise SoapFault(
                "ErrorSchemaValidation",
                f"The request failed schema validation: Traversal {traversal!r}.",
            )
        if request.find(m("Restriction")) is not None:
            raise SoapFault(
                "ErrorInvalidRestriction",
                "The simulator does not evaluate FindFolder restrictions.",
            )
        shape = parse_shape(self.child(request, "FolderShape"), items=False)
        offset, count = self.paging(request.find(m("IndexedPageFolderView")))

        def build(parent_id: etree._Element, message: etree._Element) -> None:
            mailbox, parent = self.context.folder(parent_id)
            found = (
                []
                if traversal == "SoftDeleted"
                else self._descendants(mailbox, parent, traversal == "Deep")
            )
            page = found[offset : offset + count]
            root = self.page_root(len(found), offset, len(page))
            folders = etree.SubElement(root, t("Folders"))
            folders.extend(render_folder(mailbox, f, shape) for f in page)
            message.append(root)

        return self.each(self.child(request, "ParentFolderIds"), build)

    @staticmethod
    def _descendants(
        mailbox: StoredMailbox, parent: StoredFolder, deep: bool
    ) -> list[StoredFolder]:
        out: list[StoredFolder] = []
        for child in sorted(mailbox.children(parent.id), key=lambda f: f.created_seq):
            out.append(child)
            if deep:
                out.extend(FindFolder._descendants(mailbox, child, deep))
        return out
