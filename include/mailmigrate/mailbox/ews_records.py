"""Lean parsing of the item elements the EWS adapter reads in bulk.

exchangelib's ``Message.from_xml`` inspects every registered field and extended property of every
item, which costs milliseconds per message; listings of large folders read only ids, flags, dates
and a few MAPI properties. These service subclasses send exactly exchangelib's requests and parse
the answer straight from the XML into :class:`ItemRecord`. They also hand the downloaded response
to the XML parser in one piece: exchangelib feeds it byte by byte (about 1 MB/s of MIME).
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass, field

from exchangelib.services import GetItem, SyncFolderItems
from exchangelib.util import TNS

from .ews_items import MAILMIGRATE_PROPERTY_SET

_T = f"{{{TNS}}}"
# ExtendedFieldURI keys -> ItemRecord attribute
_EXTENDED = {
    ("tag", 0x1090): "mm_flag_status",
    ("tag", 0x1081): "mm_last_verb",
    ("name", MAILMIGRATE_PROPERTY_SET, "mailmigrate-identity"): "mm_identity",
}


@dataclass
class ItemRecord:
    """The properties of one message the adapter works with (attribute names as exchangelib's)."""

    id: str
    changekey: str | None = None
    is_read: bool | None = None
    is_draft: bool | None = None
    datetime_received: dt.datetime | None = None
    size: int | None = None
    categories: list[str] = field(default_factory=list)
    mime_content: bytes | None = None
    mm_identity: str | None = None
    mm_flag_status: int | None = None
    mm_last_verb: int | None = None


def _bool(text: str | None) -> bool | None:
    return None if text is None else text.strip().lower() in ("true", "1")


def _key(uri) -> tuple | None:
    tag = uri.get("PropertyTag")
    if tag:
        return ("tag", int(tag, 16) if tag.lower().startswith("0x") else int(tag))
    if uri.get("PropertySetId") and uri.get("PropertyName"):
        return ("name", uri.get("PropertySetId").lower(), uri.get("PropertyName"))
    return None


def record_from_xml(elem) -> ItemRecord:
    """An :class:`ItemRecord` from a ``t:Message`` (or other item) element."""
    id_elem = elem.find(f"{_T}ItemId")
    record = ItemRecord(id=id_elem.get("Id"), changekey=id_elem.get("ChangeKey"))
    for child in elem:
        name = child.tag[len(_T) :] if child.tag.startswith(_T) else None
        if name == "IsRead":
            record.is_read = _bool(child.text)
        elif name == "IsDraft":
            record.is_draft = _bool(child.text)
        elif name == "DateTimeReceived" and child.text:
            record.datetime_received = dt.datetime.fromisoformat(
                child.text.strip().replace("Z", "+00:00")
            )
        elif name == "Size" and child.text:
            record.size = int(child.text)
        elif name == "Categories":
            record.categories = [s.text or "" for s in child]
        elif name == "MimeContent":
            record.mime_content = base64.b64decode(child.text or "")
        elif name == "ExtendedProperty":
            uri = child.find(f"{_T}ExtendedFieldURI")
            attribute = _EXTENDED.get(_key(uri)) if uri is not None else None
            value = child.findtext(f"{_T}Value")
            if attribute and value is not None:
                setattr(record, attribute, value if attribute == "mm_identity" else int(value))
    return record


class _WholeResponse:
    """A downloaded response offered to exchangelib's parser as one chunk."""

    def __init__(self, content: bytes):
        self.content = content

    def iter_content(self):
        return iter([self.content])


class _ParseWholeResponse:
    @classmethod
    def _get_soap_parts(cls, response):
        content = getattr(response, "_content", None)  # set by requests for non-streamed responses
        if isinstance(content, bytes):
            response = _WholeResponse(content)
        return super()._get_soap_parts(response=response)


class SyncItemRecords(_ParseWholeResponse, SyncFolderItems):
    """SyncFolderItems yielding ``(change type, ItemRecord)``."""

    def _elem_to_obj(self, elem):
        change_type = self.change_types_map[elem.tag]
        if change_type in (self.DELETE, self.READ_FLAG_CHANGE):
            id_elem = elem.find(f"{_T}ItemId")
            record = ItemRecord(id=id_elem.get("Id"), changekey=id_elem.get("ChangeKey"))
            record.is_read = _bool(elem.findtext(f"{_T}IsRead"))
            return change_type, record
        return change_type, record_from_xml(elem[0])


class GetItemRecords(_ParseWholeResponse, GetItem):
    """GetItem yielding :class:`ItemRecord` (or the per-item exception)."""

    def _elem_to_obj(self, elem):
        return record_from_xml(elem)
