"""Messages on Exchange: the MAPI properties the EWS adapter reads and writes, and flag mapping.

IMAP flags map to Exchange as follows: ``\\Seen`` <-> IsRead (and the read bit of
``PR_MESSAGE_FLAGS``), ``\\Flagged`` <-> ``PR_FLAG_STATUS`` 2, ``\\Draft`` <-> the unsent bit of
``PR_MESSAGE_FLAGS`` (settable on import only), ``\\Answered`` <-> ``PR_LAST_VERB_EXECUTED``
102/103, ``$Forwarded`` <-> 104, other keywords <-> categories. ``\\Deleted`` has no Exchange
counterpart. The received time is ``PR_MESSAGE_DELIVERY_TIME`` (settable on import). Imported
messages carry their mailmigrate identity in a named string property, so a listing needs no MIME.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from exchangelib import EWSDateTime, Message
from exchangelib.errors import (
    ErrorInvalidExtendedPropertyValue,
    ErrorInvalidPropertySet,
    ErrorInvalidValueForProperty,
    ErrorQuotaExceeded,
)
from exchangelib.ewsdatetime import UTC
from exchangelib.extended_properties import ExtendedProperty
from exchangelib.folders import Folder
from exchangelib.services import CreateItem

from mailmigrate.identity import identity_of

from .base import Message as MailMessage

MAILMIGRATE_PROPERTY_SET = "8c3b4f0e-5d2a-4f7e-9b61-3a0d9e2c7f15"
MSGFLAG_READ, MSGFLAG_UNSENT = 0x1, 0x8
FLAG_STATUS_FLAGGED = 2
VERB_REPLY_TO_SENDER, VERB_REPLY_TO_ALL, VERB_FORWARD = 102, 103, 104
SUPPORTED_FLAGS = ("\\Seen", "\\Flagged", "\\Answered", "\\Draft", "$Forwarded")
_NOT_CATEGORIES = {"$forwarded", "$junk", "$notjunk", "junk", "nonjunk", "notjunk", "$mdnsent"}
_ATOM = re.compile(r"^[^\x00-\x20\x7f(){%*\"\\\]]+$")


class MailmigrateIdentity(ExtendedProperty):
    """The message's mailmigrate identity, stored on import (a named string property)."""

    property_set_id = MAILMIGRATE_PROPERTY_SET
    property_name = "mailmigrate-identity"
    property_type = "String"


class MessageFlags(ExtendedProperty):
    """PR_MESSAGE_FLAGS: read and unsent (draft) bits."""

    property_tag = 0x0E07
    property_type = "Integer"


class DeliveryTime(ExtendedProperty):
    """PR_MESSAGE_DELIVERY_TIME: the received time."""

    property_tag = 0x0E06
    property_type = "SystemTime"


class FlagStatus(ExtendedProperty):
    """PR_FLAG_STATUS: 0 none, 1 complete, 2 flagged."""

    property_tag = 0x1090
    property_type = "Integer"


class LastVerb(ExtendedProperty):
    """PR_LAST_VERB_EXECUTED: 102 replied, 103 replied to all, 104 forwarded."""

    property_tag = 0x1081
    property_type = "Integer"


class SizeExtended(ExtendedProperty):
    """PR_MESSAGE_SIZE_EXTENDED of a folder: the total size of its messages."""

    property_tag = 0x0E08
    property_type = "Long"


class ProhibitReceiveQuota(ExtendedProperty):
    """PR_PROHIBIT_RECEIVE_QUOTA (KB), read from the mailbox's root folder."""

    property_tag = 0x666A
    property_type = "Integer"


class StorageQuotaLimit(ExtendedProperty):
    """PR_STORAGE_QUOTA_LIMIT (KB), read from the mailbox's root folder."""

    property_tag = 0x3FF5
    property_type = "Integer"


MESSAGE_PROPERTIES = {
    "mm_identity": MailmigrateIdentity,
    "mm_message_flags": MessageFlags,
    "mm_delivery_time": DeliveryTime,
    "mm_flag_status": FlagStatus,
    "mm_last_verb": LastVerb,
}
FOLDER_PROPERTIES = {
    "mm_size": SizeExtended,
    "mm_receive_quota": ProhibitReceiveQuota,
    "mm_storage_limit": StorageQuotaLimit,
}


def register_properties() -> None:
    """Register the extended properties on exchangelib's Message and Folder (once per process)."""
    for model, properties in ((Message, MESSAGE_PROPERTIES), (Folder, FOLDER_PROPERTIES)):
        known = {f.name for f in model.FIELDS}
        for name, prop in properties.items():
            if name not in known:
                model.register(name, prop)


register_properties()

LISTING_FIELDS = (
    "is_read", "is_draft", "datetime_received", "categories", "size",
    "mm_identity", "mm_flag_status", "mm_last_verb",
)  # fmt: skip
FLAG_FIELDS = ("is_read", "is_draft", "categories", "mm_flag_status", "mm_last_verb")


class CreateMessages(CreateItem):
    """CreateItem that reports quota and property refusals per message instead of failing a batch."""

    ERRORS_TO_CATCH_IN_RESPONSE = CreateItem.ERRORS_TO_CATCH_IN_RESPONSE + (
        ErrorQuotaExceeded,
        ErrorInvalidPropertySet,
        ErrorInvalidExtendedPropertyValue,
        ErrorInvalidValueForProperty,
    )


def flags_of(item: Any) -> frozenset[str]:
    """The IMAP flags of an Exchange message (fields of :data:`FLAG_FIELDS`)."""
    flags = set()
    if item.is_read:
        flags.add("\\Seen")
    if item.is_draft:
        flags.add("\\Draft")
    if item.mm_flag_status == FLAG_STATUS_FLAGGED:
        flags.add("\\Flagged")
    if item.mm_last_verb in (VERB_REPLY_TO_SENDER, VERB_REPLY_TO_ALL):
        flags.add("\\Answered")
    elif item.mm_last_verb == VERB_FORWARD:
        flags.add("$Forwarded")
    flags.update(c for c in item.categories or () if _ATOM.match(c))
    return frozenset(flags)


def categories_of(flags: Iterable[str]) -> list[str]:
    """The keywords that travel as Exchange categories (user labels, not system keywords)."""
    return sorted(f for f in flags if not f.startswith("\\") and f.lower() not in _NOT_CATEGORIES)


def representable(flags: Iterable[str]) -> frozenset[str]:
    """The flags an existing Exchange message can take (``\\Draft`` is fixed at import)."""
    return frozenset(
        f
        for f in flags
        if f in ("\\Seen", "\\Flagged", "\\Answered", "$Forwarded")
        or (categories_of([f]) and _ATOM.match(f))
    )


def last_verb_of(flags: frozenset[str]) -> int | None:
    if "\\Answered" in flags:
        return VERB_REPLY_TO_SENDER
    if "$Forwarded" in flags:
        return VERB_FORWARD
    return None


def ews_datetime(value: dt.datetime) -> EWSDateTime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    # A plain datetime: exchangelib refuses subclasses (such as the IMAP adapter's dates).
    plain = dt.datetime.fromtimestamp(value.timestamp(), dt.UTC)
    return EWSDateTime.from_datetime(plain).astimezone(UTC)


def import_item(message: MailMessage) -> Message:
    """The exchangelib message that imports ``message`` as a received (not draft) message."""
    flags = message.info.flags
    seen, draft = "\\Seen" in flags, "\\Draft" in flags
    item = Message(
        mime_content=message.content,
        is_read=seen,
        mm_message_flags=(MSGFLAG_READ if seen else 0) | (MSGFLAG_UNSENT if draft else 0),
        # The identity the engine matches by (equal to identity_of(content) for a faithful read).
        mm_identity=message.info.identity or identity_of(message.content),
        mm_flag_status=FLAG_STATUS_FLAGGED if "\\Flagged" in flags else None,
        mm_last_verb=last_verb_of(flags),
        categories=categories_of(flags) or None,
    )
    if message.info.internaldate is not None:
        item.mm_delivery_time = ews_datetime(message.info.internaldate)
    return item


def size_from_identity(identity: str | None) -> int | None:
    """The content size an identity encodes (``"{size}:..."``), or ``None`` when it is malformed."""
    head, sep, _ = (identity or "").partition(":")
    return int(head) if sep and head.isdigit() else None


T = TypeVar("T")


def chunks_by_size(
    entries: Sequence[T], size_of, max_bytes: int, max_count: int
) -> Iterator[list[T]]:
    """Consecutive batches of at most ``max_count`` entries and ``max_bytes`` (one oversized entry
    makes a batch of its own)."""
    batch: list[T] = []
    batch_bytes = 0
    for entry in entries:
        size = size_of(entry)
        if batch and (len(batch) >= max_count or batch_bytes + size > max_bytes):
            yield batch
            batch, batch_bytes = [], 0
        batch.append(entry)
        batch_bytes += size
    if batch:
        yield batch


def flag_update(
    current: Any, add: frozenset[str], remove: frozenset[str]
) -> tuple[Message, list[str]]:
    """The UpdateItem change (message and field names) that applies ``add``/``remove`` to the
    message ``current`` (read with :data:`FLAG_FIELDS`); no field names when nothing changes."""
    flags = (flags_of(current) - remove) | add
    update = Message(id=current.id, changekey=current.changekey)
    fields = []
    if ("\\Seen" in flags) != bool(current.is_read):
        update.is_read = "\\Seen" in flags
        fields.append("is_read")
    if ("\\Flagged" in flags) != (current.mm_flag_status == FLAG_STATUS_FLAGGED):
        update.mm_flag_status = FLAG_STATUS_FLAGGED if "\\Flagged" in flags else None
        fields.append("mm_flag_status")
    verb, current_verb = last_verb_of(flags), current.mm_last_verb
    if current_verb not in (VERB_REPLY_TO_SENDER, VERB_REPLY_TO_ALL, VERB_FORWARD):
        current_verb = None
    if (verb is None) != (current_verb is None) or (verb == VERB_FORWARD) != (
        current_verb == VERB_FORWARD
    ):
        update.mm_last_verb = verb
        fields.append("mm_last_verb")
    kept = {c for c in current.categories or () if c not in remove}
    categories = sorted(kept | set(categories_of(add)))
    if categories != sorted(current.categories or ()):
        update.categories = categories or None
        fields.append("categories")
    return update, fields
