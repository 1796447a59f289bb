"""CreateItem: save messages (from MimeContent, or subject and body) into a folder, and typed
items (calendar items, contacts, distribution lists, tasks: ``typed.py``, which also records the
meeting invitations a request without ``SendMeetingInvitations="SendToNone"`` would send).

Like Exchange, a message saved with ``SaveOnly`` is an unsent draft unless the request sets
``PR_MESSAGE_FLAGS`` (0x0E07) without ``MSGFLAG_UNSENT``; ``PR_MESSAGE_DELIVERY_TIME`` (0x0E06)
sets the received time. Size limit and quota refusals are per-item errors.
"""

from __future__ import annotations

from email.message import EmailMessage

from lxml import etree

from ..props import apply_item_write, parse_item_write
from ..soap import ResponseError, SoapFault, m, t
from ..typed import TYPED, attachment_ids, create_typed, record_invitation
from .base import Operation


class CreateItem(Operation):
    NAME = "CreateItem"

    def handle(self, request: etree._Element) -> list[etree._Element]:
        disposition = request.get("MessageDisposition")
        if disposition != "SaveOnly":
            raise SoapFault(
                "ErrorInvalidRequest",
                f"The simulator saves messages only (MessageDisposition {disposition!r}).",
            )
        target = request.find(m("SavedItemFolderId"))
        if target is not None and len(target) != 1:
            raise SoapFault(
                "ErrorSchemaValidation", "The request failed schema validation: SavedItemFolderId."
            )
        new_items = list(self.child(request, "Items"))
        if not new_items:
            raise SoapFault(
                "ErrorSchemaValidation", "The request failed schema validation: Items is empty."
            )

        invitations = request.get("SendMeetingInvitations")

        def build(spec: etree._Element, message: etree._Element) -> None:
            if etree.QName(spec).localname in TYPED:
                if target is None:
                    raise ResponseError("ErrorInvalidRequest", "Typed items need a folder.")
                mailbox, folder = self.context.folder(target[0])
                item = create_typed(self.store, mailbox, folder, spec)
                record_invitation(self.store, item, self.NAME, invitations)
                created = etree.SubElement(etree.SubElement(message, m("Items")), spec.tag)
                etree.SubElement(created, t("ItemId"), Id=item.id, ChangeKey=item.changekey)
                files = attachment_ids(item)
                if files is not None:
                    created.append(files)
                return
            if spec.tag != t("Message"):
                raise ResponseError(
                    "ErrorInvalidItemForOperationCreateItem", "The simulator creates messages only."
                )
            if target is not None:
                mailbox, folder = self.context.folder(target[0])
            else:
                mailbox = self.context.mailbox(None)
                folder = mailbox.distinguished("drafts")
            write = parse_item_write(spec)
            mime = (
                write.mime if write.mime is not None else self._compose(write.subject, write.body)
            )
            self.store.check_limits(mailbox, len(mime))
            item = self.store.create_item(mailbox, folder, mime)
            item.is_draft = True
            apply_item_write(item, write, creating=True)
            created = etree.SubElement(etree.SubElement(message, m("Items")), t("Message"))
            etree.SubElement(created, t("ItemId"), Id=item.id, ChangeKey=item.changekey)

        return self.each(new_items, build)

    @staticmethod
    def _compose(subject: str | None, body: str | None) -> bytes:
        message = EmailMessage()
        message["Subject"] = subject or ""
        message.set_content(body or "")
        return message.as_bytes()
