"""Item and folder properties of the EWS simulator: response shapes and item writes.

Parses ``ItemShape``/``FolderShape`` (``BaseShape`` plus ``AdditionalProperties``) and
``ExtendedFieldURI`` keys, and reads the properties a ``CreateItem``/``UpdateItem`` request sets:
MimeContent, IsRead, categories and extended properties, where ``PR_MESSAGE_FLAGS`` (read and
unsent bits) and ``PR_MESSAGE_DELIVERY_TIME`` act on the message's state as on Exchange.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from lxml import etree

from .soap import (
    ResponseError,
    SoapFault,
    parse_bool,
    parse_datetime,
    parse_int,
    t,
)
from .store import PropKey, StoredItem

INDEXED = {"contacts:EmailAddress": "EmailAddresses", "contacts:PhoneNumber": "PhoneNumbers",
           "contacts:PhysicalAddress": "PhysicalAddresses", "contacts:ImAddress": "ImAddresses"}  # fmt: skip
PR_MESSAGE_FLAGS = ("tag", 0x0E07)
PR_MESSAGE_DELIVERY_TIME = ("tag", 0x0E06)
PR_MESSAGE_SIZE_EXTENDED = ("tag", 0x0E08)
PR_CONTENT_COUNT = ("tag", 0x3602)
QUOTA_TAGS = (
    ("tag", 0x666A),
    ("tag", 0x666E),
    ("tag", 0x3FF5),
)  # receive, send, storage limit (KB)
MSGFLAG_READ, MSGFLAG_UNSENT = 0x1, 0x8

DISTINGUISHED_SETS = {
    "Address": "00062004-0000-0000-c000-000000000046",
    "Appointment": "00062002-0000-0000-c000-000000000046",
    "Common": "00062008-0000-0000-c000-000000000046",
    "InternetHeaders": "00020386-0000-0000-c000-000000000046",
    "Meeting": "6ed8da90-450b-101b-98da-00aa003f1305",
    "PublicStrings": "00020329-0000-0000-c000-000000000046",
    "Sharing": "00062040-0000-0000-c000-000000000046",
    "Task": "00062003-0000-0000-c000-000000000046",
    "UnifiedMessaging": "4442858e-a9e3-4e80-b900-317a210cc15b",
}

ITEM_DEFAULT = (
    "item:Subject",
    "item:DateTimeReceived",
    "item:Size",
    "item:IsDraft",
    "message:From",
    "message:IsRead",
)
ITEM_ALL = ITEM_DEFAULT + (
    "item:ParentFolderId", "item:ItemClass", "item:Sensitivity", "item:Categories", "item:Importance",
    "item:IsSubmitted", "item:IsFromMe", "item:IsResend", "item:IsUnmodified", "item:DateTimeSent",
    "item:DateTimeCreated", "item:HasAttachments", "item:LastModifiedTime", "item:IsAssociated",
    "message:Sender", "message:ConversationTopic", "message:InternetMessageId",
    "message:IsReadReceiptRequested", "message:IsDeliveryReceiptRequested", "message:IsResponseRequested",
)  # fmt: skip
FOLDER_DEFAULT = (
    "folder:DisplayName",
    "folder:TotalCount",
    "folder:ChildFolderCount",
    "folder:UnreadCount",
)
FOLDER_ALL = FOLDER_DEFAULT + ("folder:ParentFolderId", "folder:FolderClass")
FOLDER_TAGS = {
    "IPF.Appointment": "CalendarFolder",
    "IPF.Contact": "ContactsFolder",
    "IPF.Task": "TasksFolder",
}


@dataclass
class Shape:
    """What to return for each item or folder: field URIs and extended properties (as requested)."""

    fields: set[str]
    extended: list[etree._Element] = field(default_factory=list)
    mime: bool = False


def parse_shape(elem: etree._Element, *, items: bool) -> Shape:
    base = (elem.findtext(t("BaseShape")) or "").strip()
    if base not in ("IdOnly", "Default", "AllProperties"):
        raise SoapFault(
            "ErrorSchemaValidation", f"The request failed schema validation: BaseShape {base!r}."
        )
    defaults, everything = (ITEM_DEFAULT, ITEM_ALL) if items else (FOLDER_DEFAULT, FOLDER_ALL)
    fields = set({"IdOnly": (), "Default": defaults, "AllProperties": everything}[base])
    shape = Shape(fields=fields)
    include_mime = elem.find(t("IncludeMimeContent"))
    if include_mime is not None:
        shape.mime = parse_bool(include_mime.text, "IncludeMimeContent")
    additional = elem.find(t("AdditionalProperties"))
    for path in additional if additional is not None else []:
        if path.tag == t("FieldURI"):
            uri = path.get("FieldURI") or ""
            if ":" not in uri:
                raise SoapFault(
                    "ErrorSchemaValidation",
                    f"The request failed schema validation: FieldURI {uri!r}.",
                )
            shape.fields.add(uri)
        elif path.tag == t("ExtendedFieldURI"):
            prop_key(path)  # validates
            shape.extended.append(path)
        elif path.tag == t("IndexedFieldURI"):  # typed items: the whole indexed container
            shape.fields.add(
                "indexed:" + INDEXED.get(":".join((path.get("FieldURI") or "").split(":")[:2]), "")
            )
    shape.mime = shape.mime or "item:MimeContent" in shape.fields
    return shape


def prop_key(uri: etree._Element) -> PropKey:
    """The normalised key of an ``ExtendedFieldURI``; a schema fault when it is incomplete."""
    ptype, tag = uri.get("PropertyType"), uri.get("PropertyTag")
    set_id = (
        uri.get("PropertySetId")
        or DISTINGUISHED_SETS.get(uri.get("DistinguishedPropertySetId") or "", "")
    ).lower()
    try:
        if not ptype:
            raise ValueError("PropertyType is missing")
        if tag:
            return ("tag", int(tag, 16) if tag.lower().startswith("0x") else int(tag))
        if set_id and uri.get("PropertyName"):
            return ("name", set_id, uri.get("PropertyName"))
        if set_id and uri.get("PropertyId"):
            return ("id", set_id, int(uri.get("PropertyId"), 0))
        raise ValueError("no property tag, name or id")
    except ValueError as exc:
        raise SoapFault(
            "ErrorSchemaValidation",
            f"The request failed schema validation: ExtendedFieldURI: {exc}.",
        ) from None


@dataclass
class ItemWrite:
    """The properties an item element of a CreateItem/UpdateItem request sets."""

    mime: bytes | None = None
    subject: str | None = None
    body: str | None = None
    is_read: bool | None = None
    categories: list[str] | None = None
    extended: dict[PropKey, tuple[str, object]] = field(default_factory=dict)


def parse_item_write(elem: etree._Element) -> ItemWrite:
    write = ItemWrite()
    for child in elem:
        if etree.QName(child).namespace != etree.QName(t("x")).namespace:
            raise SoapFault(
                "ErrorSchemaValidation",
                f"The request failed schema validation: unexpected {child.tag}.",
            )
        name = etree.QName(child).localname
        if name == "MimeContent":
            try:
                write.mime = base64.b64decode((child.text or "").encode(), validate=True)
            except binascii.Error:
                raise ResponseError(
                    "ErrorMimeContentInvalidBase64String", "The MIME content is not valid base64."
                ) from None
        elif name == "Subject":
            write.subject = child.text or ""
        elif name == "Body":
            write.body = child.text or ""
        elif name == "IsRead":
            write.is_read = parse_bool(child.text, "IsRead")
        elif name == "Categories":
            write.categories = [s.text or "" for s in child.findall(t("String"))]
        elif name == "ExtendedProperty":
            uri = child.find(t("ExtendedFieldURI"))
            if uri is None:
                raise SoapFault(
                    "ErrorSchemaValidation",
                    "The request failed schema validation: ExtendedFieldURI missing.",
                )
            values = child.find(t("Values"))
            value = (
                [v.text or "" for v in values] if values is not None else child.findtext(t("Value"))
            )
            if value is None:
                raise SoapFault(
                    "ErrorSchemaValidation", "The request failed schema validation: Value missing."
                )
            write.extended[prop_key(uri)] = (uri.get("PropertyType"), value)
    return write


def apply_item_write(item: StoredItem, write: ItemWrite, *, creating: bool) -> None:
    """Set the written properties on an item; MAPI flags and delivery time only when creating."""
    for key, (ptype, value) in write.extended.items():
        if key == PR_MESSAGE_FLAGS:
            flags = parse_int(str(value), "PR_MESSAGE_FLAGS")
            item.is_read = bool(flags & MSGFLAG_READ)
            if creating:
                item.is_draft = bool(flags & MSGFLAG_UNSENT)
        elif key == PR_MESSAGE_DELIVERY_TIME:
            if creating:
                item.received = parse_datetime(str(value), "PR_MESSAGE_DELIVERY_TIME")
        elif key == PR_MESSAGE_SIZE_EXTENDED:
            raise ResponseError("ErrorInvalidPropertySet", "PR_MESSAGE_SIZE_EXTENDED is read-only.")
        else:
            if ptype == "Integer":
                parse_int(str(value), "ExtendedProperty Value")
            item.props[key] = (ptype, value)
    if write.is_read is not None:
        item.is_read = write.is_read
    if write.categories is not None:
        item.categories = write.categories


def delete_item_property(item: StoredItem, path: etree._Element) -> None:
    """Apply a ``DeleteItemField``."""
    if path.tag == t("ExtendedFieldURI"):
        item.props.pop(prop_key(path), None)
    elif path.tag == t("FieldURI") and path.get("FieldURI") == "item:Categories":
        item.categories = []
    elif path.tag == t("FieldURI") and path.get("FieldURI") == "message:IsRead":
        raise ResponseError("ErrorInvalidPropertySet", "IsRead cannot be deleted.")
