"""ConvertId: what exchangelib sends to learn the server version; ids convert to themselves."""

from __future__ import annotations

from lxml import etree

from ..soap import ResponseError, m
from .base import Operation


class ConvertId(Operation):
    NAME = "ConvertId"

    def handle(self, request: etree._Element) -> list[etree._Element]:
        destination = request.get("DestinationFormat") or "EwsId"

        def build(source: etree._Element, message: etree._Element) -> None:
            self.store.locate_id(source.get("Id") or "")
            if source.get("Format") != "EwsId" or destination != "EwsId":
                raise ResponseError(
                    "ErrorInvalidIdMalformed", "The simulator converts EwsId to EwsId only."
                )
            etree.SubElement(
                message,
                m("AlternateId"),
                Format=destination,
                Id=source.get("Id"),
                Mailbox=source.get("Mailbox") or "",
            )

        return self.each(self.child(request, "SourceIds"), build)
