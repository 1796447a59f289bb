"""GetFolder: folders by id or distinguished id, with the requested folder shape."""

from __future__ import annotations

from lxml import etree

from ..props import parse_shape
from ..render import render_folder
from ..soap import m
from .base import Operation


class GetFolder(Operation):
    NAME = "GetFolder"

    def handle(self, request: etree._Element) -> list[etree._Element]:
        shape = parse_shape(self.child(request, "FolderShape"), items=False)

        def build(folder_id: etree._Element, message: etree._Element) -> None:
            mailbox, folder = self.context.folder(folder_id)
            etree.SubElement(message, m("Folders")).append(render_folder(mailbox, folder, shape))

        return self.each(self.child(request, "FolderIds"), build)
