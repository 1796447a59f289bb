"""Rendering for the EWS simulator: ``t:Message`` and ``t:Folder`` elements in a requested shape,
with the MAPI properties Exchange computes itself (``PR_MESSAGE_FLAGS``, delivery time, sizes,
content count, quotas on the root folders).
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
from email import policy
from email.parser import BytesHeaderParser

from lxml import etree

from .props import (
    FOLDER_TAGS,
    MSGFLAG_READ,
    MSGFLAG_UNSENT,
    PR_CONTENT_COUNT,
    PR_MESSAGE_DELIVERY_TIME,
    PR_MESSAGE_FLAGS,
    PR_MESSAGE_SIZE_EXTENDED,
    QUOTA_TAGS,
    Shape,
    prop_key,
)
from .soap import format_bool, format_datetime, t
from .store import PropKey, StoredFolder, StoredItem, StoredMailbox
from .typed import is_typed, render_typed


def _headers(item: StoredItem):
    return BytesHeaderParser(policy=policy.default).parsebytes(item.mime)


def _mailbox_elem(tag: str, address_header: str | None) -> etree._Element | None:
    if not address_header:
        return None
    name, address = email.utils.parseaddr(str(address_header))
    if not address:
        return None
    outer = etree.Element(t(tag))
    mailbox = etree.SubElement(outer, t("Mailbox"))
    etree.SubElement(mailbox, t("Name")).text = name or address
    etree.SubElement(mailbox, t("EmailAddress")).text = address
    etree.SubElement(mailbox, t("RoutingType")).text = "SMTP"
    return outer


def _sent_date(item: StoredItem) -> dt.datetime:
    try:
        return email.utils.parsedate_to_datetime(str(_headers(item)["Date"]))
    except (TypeError, ValueError):
        return item.received


def item_property(item: StoredItem, key: PropKey) -> tuple[str, object] | None:
    """An item's extended property, computed for the MAPI properties Exchange maintains itself."""
    if key == PR_MESSAGE_FLAGS:
        return "Integer", str(
            (MSGFLAG_READ if item.is_read else 0) | (MSGFLAG_UNSENT if item.is_draft else 0)
        )
    if key == PR_MESSAGE_DELIVERY_TIME:
        return "SystemTime", format_datetime(item.received)
    if key == PR_MESSAGE_SIZE_EXTENDED:
        return "Long", str(item.size)
    return item.props.get(key)


def folder_property(
    mailbox: StoredMailbox, folder: StoredFolder, key: PropKey
) -> tuple[str, object] | None:
    if key == PR_MESSAGE_SIZE_EXTENDED:
        return "Long", str(sum(i.size for i in mailbox.items_in(folder.id)))
    if key == PR_CONTENT_COUNT:
        return "Integer", str(len(mailbox.items_in(folder.id)))
    if (
        key in QUOTA_TAGS
        and folder.distinguished in ("root", "msgfolderroot")
        and mailbox.quota_kb is not None
    ):
        return "Integer", str(mailbox.quota_kb)
    return folder.props.get(key)


def _extended_elems(shape: Shape, lookup) -> list[etree._Element]:
    out = []
    for uri in shape.extended:
        found = lookup(prop_key(uri))
        if found is None:
            continue
        _, value = found
        elem = etree.Element(t("ExtendedProperty"))
        elem.append(etree.fromstring(etree.tostring(uri)))
        if isinstance(value, list):
            values = etree.SubElement(elem, t("Values"))
            for v in value:
                etree.SubElement(values, t("Value")).text = v
        else:
            etree.SubElement(elem, t("Value")).text = value
        out.append(elem)
    return out


def render_item(
    item: StoredItem, folder: StoredFolder, shape: Shape, *, tag: str = "Message"
) -> etree._Element:
    if is_typed(item):  # calendar items, contacts, distribution lists, tasks
        return render_typed(item, folder, shape,
                            _extended_elems(shape, lambda key: item.props.get(key)))  # fmt: skip
    elem = etree.Element(t(tag))
    wanted = shape.fields
    headers = (
        _headers(item)
        if wanted
        & {
            "item:Subject",
            "message:From",
            "message:Sender",
            "message:ConversationTopic",
            "message:InternetMessageId",
        }
        else None
    )

    def add(uri: str, name: str, text: str | None) -> None:
        if uri in wanted and text is not None:
            etree.SubElement(elem, t(name)).text = text

    if shape.mime:
        etree.SubElement(elem, t("MimeContent"), CharacterSet="UTF-8").text = base64.b64encode(
            item.mime
        ).decode()
    etree.SubElement(elem, t("ItemId"), Id=item.id, ChangeKey=item.changekey)
    if "item:ParentFolderId" in wanted:
        etree.SubElement(elem, t("ParentFolderId"), Id=folder.id, ChangeKey=folder.changekey)
    add("item:ItemClass", "ItemClass", item.item_class)
    add("item:Subject", "Subject", str(headers["Subject"] or "") if headers else None)
    add("item:Sensitivity", "Sensitivity", "Normal")
    add("item:DateTimeReceived", "DateTimeReceived", format_datetime(item.received))
    add("item:Size", "Size", str(item.size))
    if "item:Categories" in wanted and item.categories:
        categories = etree.SubElement(elem, t("Categories"))
        for category in item.categories:
            etree.SubElement(categories, t("String")).text = category
    add("item:Importance", "Importance", "Normal")
    add("item:IsSubmitted", "IsSubmitted", "false")
    add("item:IsDraft", "IsDraft", format_bool(item.is_draft))
    add("item:IsFromMe", "IsFromMe", "false")
    add("item:IsResend", "IsResend", "false")
    add("item:IsUnmodified", "IsUnmodified", format_bool(not item.is_draft))
    add(
        "item:DateTimeSent",
        "DateTimeSent",
        format_datetime(_sent_date(item)) if "item:DateTimeSent" in wanted else None,
    )
    add("item:DateTimeCreated", "DateTimeCreated", format_datetime(item.created))
    add("item:HasAttachments", "HasAttachments", "false")
    elem.extend(_extended_elems(shape, lambda key: item_property(item, key)))
    add("item:LastModifiedTime", "LastModifiedTime", format_datetime(item.created))
    add("item:IsAssociated", "IsAssociated", "false")
    for uri, name in (("message:Sender", "Sender"),):
        if (
            uri in wanted
            and headers is not None
            and (sender := _mailbox_elem(name, headers["From"])) is not None
        ):
            elem.append(sender)
    add("message:IsReadReceiptRequested", "IsReadReceiptRequested", "false")
    add("message:IsDeliveryReceiptRequested", "IsDeliveryReceiptRequested", "false")
    add(
        "message:ConversationTopic",
        "ConversationTopic",
        str(headers["Subject"] or "") if headers else None,
    )
    if (
        "message:From" in wanted
        and headers is not None
        and (author := _mailbox_elem("From", headers["From"])) is not None
    ):
        elem.append(author)
    add(
        "message:InternetMessageId",
        "InternetMessageId",
        str(headers["Message-ID"]) if headers and headers["Message-ID"] else None,
    )
    add("message:IsRead", "IsRead", format_bool(item.is_read))
    add("message:IsResponseRequested", "IsResponseRequested", "false")
    return elem


def render_folder(mailbox: StoredMailbox, folder: StoredFolder, shape: Shape) -> etree._Element:
    elem = etree.Element(t(FOLDER_TAGS.get(folder.folder_class or "", "Folder")))
    wanted = shape.fields
    etree.SubElement(elem, t("FolderId"), Id=folder.id, ChangeKey=folder.changekey)
    if "folder:ParentFolderId" in wanted and folder.parent_id:
        parent = mailbox.folders[folder.parent_id]
        etree.SubElement(elem, t("ParentFolderId"), Id=parent.id, ChangeKey=parent.changekey)
    if "folder:FolderClass" in wanted and folder.folder_class:
        etree.SubElement(elem, t("FolderClass")).text = folder.folder_class
    if "folder:DisplayName" in wanted:
        etree.SubElement(elem, t("DisplayName")).text = folder.name
    items = mailbox.items_in(folder.id)
    if "folder:TotalCount" in wanted:
        etree.SubElement(elem, t("TotalCount")).text = str(len(items))
    if "folder:ChildFolderCount" in wanted:
        etree.SubElement(elem, t("ChildFolderCount")).text = str(len(mailbox.children(folder.id)))
    elem.extend(_extended_elems(shape, lambda key: folder_property(mailbox, folder, key)))
    if "folder:DistinguishedFolderId" in wanted and folder.distinguished:
        etree.SubElement(elem, t("DistinguishedFolderId")).text = folder.distinguished
    if "folder:UnreadCount" in wanted:
        etree.SubElement(elem, t("UnreadCount")).text = str(sum(1 for i in items if not i.is_read))
    return elem
