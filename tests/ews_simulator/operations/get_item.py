"""GetItem: items by id, with the requested item shape (MimeContent included when asked)."""

from __future__ import annotations

from lxml import etree

from ..props import parse_shape
from ..render import render_item
from ..soap import m
from .base import Operation


class GetItem(Operation):
    NAME = "GetItem"

    def handle(self, request: etree._Element) -> list[etree._Element]:
        shape = parse_shape(self.child(request, "ItemShape"), items=True)

        def build(item_id: etree._Element, message: etree._Element) -> None:
            mailbox, item = self.context.item(item_id)
            folder = mailbox.folders[item.folder_id]
            etree.SubElement(message, m("Items")).append(render_item(item, folder, shape))

        return self.each(self.child(request, "ItemIds"), build)
