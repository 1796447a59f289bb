"""Typed items of the EWS simulator: calendar items, contacts, distribution lists and tasks.

Exchange keeps these as properties, not MIME. The simulator keeps the child elements a
``CreateItem`` sent (``t:Subject``, ``t:Start``, ``t:RequiredAttendees``, ``t:EmailAddresses``...)
as they came, answers them back for the field URIs a request asks for (``calendar:Start`` is the
``t:Start`` element; an ``IndexedFieldURI`` such as ``contacts:EmailAddress`` asks for the whole
``t:EmailAddresses``), replaces or merges them on ``UpdateItem`` (indexed entries by ``Key``,
physical address parts one by one) and adds what Exchange computes itself: ``ItemClass``,
``UID`` when none was given, ``Organizer`` (the mailbox owner), ``CalendarItemType``,
``IsMeeting``, ``IsRecurring``, ``IsComplete`` and ``CompleteDate`` of a completed task.

**Invitations.** Exchange emails attendees when a calendar item with attendees is created,
updated or deleted unless the request says ``SendToNone``. The simulator sends nothing, but
records each such "sent" invitation or cancellation in ``store.invitations`` (a missing
attribute counts as sent), so a test can assert that a migration emailed no one.
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass

from lxml import etree

from .props import INDEXED, Shape, prop_key
from .soap import ResponseError, SoapFault, format_bool, format_datetime, t
from .store import SimulatorStore, StoredFolder, StoredItem, StoredMailbox

TYPED = {"CalendarItem": "IPM.Appointment", "Contact": "IPM.Contact",
         "DistributionList": "IPM.DistList", "Task": "IPM.Task"}  # fmt: skip
TAG_OF_CLASS = {cls: tag for tag, cls in TYPED.items()}
ATTENDEE_FIELDS = ("RequiredAttendees", "OptionalAttendees", "Resources")
NOT_SENT = "SendToNone"
BOOLEANS = {"ReminderIsSet", "AllowNewTimeProposal", "HasAttachments"}


@dataclass
class Invitation:
    """A meeting message Exchange would have emailed (the simulator only records it)."""

    mailbox: str
    operation: str  # CreateItem, UpdateItem or DeleteItem
    mode: str  # the request's SendMeeting... value
    subject: str
    recipients: list[str]


def is_typed(item: StoredItem) -> bool:
    return item.item_class in TAG_OF_CLASS


def _field(item: StoredItem, name: str) -> etree._Element | None:
    return next((f for f in item.fields if etree.QName(f).localname == name), None)


def _set(item: StoredItem, elem: etree._Element) -> None:
    name = etree.QName(elem).localname
    item.fields = [f for f in item.fields if etree.QName(f).localname != name]
    stored = copy.deepcopy(elem)
    for node in stored.iter():  # xs:boolean comes back as Exchange says it
        local = etree.QName(node).localname
        if (local.startswith("Is") or local in BOOLEANS) and node.text in ("0", "1"):
            node.text = format_bool(node.text == "1")
    item.fields.append(stored)


def attendees(item: StoredItem) -> list[str]:
    out = []
    for name in ATTENDEE_FIELDS:
        found = _field(item, name)
        if found is not None:
            out += [a.findtext(f"{t('Mailbox')}/{t('EmailAddress')}") or "" for a in found]
    return out


def record_invitation(store: SimulatorStore, item: StoredItem, operation: str,
                      mode: str | None) -> None:  # fmt: skip
    """Count what Exchange would email for a calendar item with attendees."""
    if item.item_class != "IPM.Appointment" or mode == NOT_SENT:
        return
    recipients = attendees(item)
    if recipients:
        subject = _field(item, "Subject")
        store.invitations.append(Invitation(item.mailbox, operation, mode or "(missing)",
                                            subject.text or "" if subject is not None else "",
                                            recipients))  # fmt: skip


def create_typed(store: SimulatorStore, mailbox: StoredMailbox, folder: StoredFolder,
                 spec: etree._Element) -> StoredItem:  # fmt: skip
    """A typed item from a ``CreateItem`` element (``t:CalendarItem``, ``t:Contact``...)."""
    tag = etree.QName(spec).localname
    item = store.create_item(mailbox, folder, b"")
    item.item_class = TYPED[tag]
    for child in spec:
        if etree.QName(child).localname == "ExtendedProperty":
            _set_extended(item, child)
        elif etree.QName(child).localname not in ("ItemClass", "MimeContent"):
            _set(item, child)
    files = _field(item, "Attachments")
    for number, file in enumerate(files if files is not None else [], start=1):
        for old in file.findall(t("AttachmentId")):
            file.remove(old)
        file.insert(0, etree.Element(t("AttachmentId"), Id=f"{item.id}-att{number}",
                                     RootItemId=item.id))  # fmt: skip
    if tag == "CalendarItem" and _field(item, "UID") is None:
        uid = etree.Element(t("UID"))
        uid.text = f"040000008200E00074C5B7101A82E008{item.created_seq:016X}"
        _set(item, uid)
    _task_state(item)
    return item


def _set_extended(item: StoredItem, elem: etree._Element) -> None:
    uri = elem.find(t("ExtendedFieldURI"))
    if uri is None:
        raise SoapFault("ErrorSchemaValidation", "ExtendedProperty without ExtendedFieldURI.")
    values = elem.find(t("Values"))
    value = [v.text or "" for v in values] if values is not None else elem.findtext(t("Value"))
    item.props[prop_key(uri)] = (uri.get("PropertyType"), value)


def _task_state(item: StoredItem) -> None:
    """A task marked Completed gets a CompleteDate (now, unless one was written), as on Exchange."""
    if item.item_class != "IPM.Task":
        return
    status = _field(item, "Status")
    if status is not None and status.text == "Completed":
        if _field(item, "CompleteDate") is None:
            done = etree.Element(t("CompleteDate"))
            done.text = format_datetime(dt.datetime.now(dt.UTC).replace(microsecond=0))
            _set(item, done)
    else:
        item.fields = [f for f in item.fields if etree.QName(f).localname != "CompleteDate"]


def update_typed(item: StoredItem, update: etree._Element) -> None:
    """Apply one ``SetItemField``/``AppendToItemField``/``DeleteItemField`` to a typed item."""
    path = update[0] if len(update) else None
    if path is None:
        raise SoapFault("ErrorSchemaValidation", "The request failed schema validation: path.")
    deleting = update.tag == t("DeleteItemField")
    value = None if deleting else next((c for c in update if c is not path), None)
    if not deleting and value is None:
        raise SoapFault("ErrorSchemaValidation", "The request failed schema validation: value.")
    if path.tag == t("ExtendedFieldURI"):
        if deleting:
            item.props.pop(prop_key(path), None)
        else:
            for child in value.findall(t("ExtendedProperty")):
                _set_extended(item, child)
        return
    uri = path.get("FieldURI") or ""
    if path.tag == t("FieldURI"):
        name = uri.split(":", 1)[-1]
        if deleting:
            item.fields = [f for f in item.fields if etree.QName(f).localname != name]
        else:
            new = value.find(t(name))
            if new is None:
                raise ResponseError("ErrorInvalidPropertySet", f"No {name} in the update.")
            _set(item, new)
    elif path.tag == t("IndexedFieldURI"):
        _update_indexed(item, uri, path.get("FieldIndex") or "", value)
    else:
        raise SoapFault("ErrorSchemaValidation", f"Unexpected update path {path.tag}.")
    _task_state(item)


def _update_indexed(item: StoredItem, uri: str, key: str, value: etree._Element | None) -> None:
    base = ":".join(uri.split(":")[:2])
    part = uri.split(":")[2] if uri.count(":") == 2 else None
    container_name = INDEXED.get(base)
    if container_name is None:
        raise ResponseError("ErrorInvalidPropertySet", f"{uri} is not an indexed field.")
    container = _field(item, container_name)
    if container is None:
        container = etree.Element(t(container_name))
        item.fields.append(container)
    entry = next((e for e in container if e.get("Key") == key), None)
    if value is None:  # delete
        if entry is not None and part is not None:
            for child in entry.findall(t(part)):
                entry.remove(child)
        if entry is not None and (part is None or len(entry) == 0):
            container.remove(entry)
        return
    new = value.find(f"{t(container_name)}/{t('Entry')}")
    if new is None:
        raise ResponseError("ErrorInvalidPropertySet", f"No {container_name} entry in the update.")
    if entry is None or part is None:
        if entry is not None:
            container.remove(entry)
        container.append(copy.deepcopy(new))
        return
    for child in new:
        for old in entry.findall(child.tag):
            entry.remove(old)
        entry.append(copy.deepcopy(child))


def _computed(item: StoredItem) -> dict[str, str]:
    files = _field(item, "Attachments")
    out = {"ItemClass": item.item_class, "DateTimeCreated": format_datetime(item.created),
           "LastModifiedTime": format_datetime(item.created),
           "HasAttachments": format_bool(files is not None and len(files) > 0)}  # fmt: skip
    if item.item_class == "IPM.Appointment":
        recurring = _field(item, "Recurrence") is not None
        out["CalendarItemType"] = "RecurringMaster" if recurring else "Single"
        out["IsRecurring"] = format_bool(recurring)
        out["IsMeeting"] = format_bool(bool(attendees(item)))
    if item.item_class == "IPM.Contact":
        photos = (
            files.findall(f"{t('FileAttachment')}/{t('IsContactPhoto')}")
            if files is not None
            else []
        )
        out["HasPicture"] = format_bool(any(p.text == "true" for p in photos))
    if item.item_class == "IPM.Task":
        status = _field(item, "Status")
        out["IsComplete"] = format_bool(status is not None and status.text == "Completed")
    return out


def render_typed(item: StoredItem, folder: StoredFolder, shape: Shape,
                 extended: list[etree._Element]) -> etree._Element:  # fmt: skip
    """The item as ``t:CalendarItem``/``t:Contact``/..., with the fields ``shape`` asks for."""
    elem = etree.Element(t(TAG_OF_CLASS[item.item_class]))
    wanted = {uri.split(":", 1)[-1] for uri in shape.fields}
    etree.SubElement(elem, t("ItemId"), Id=item.id, ChangeKey=item.changekey)
    if "ParentFolderId" in wanted:
        etree.SubElement(elem, t("ParentFolderId"), Id=folder.id, ChangeKey=folder.changekey)
    for stored in item.fields:
        if etree.QName(stored).localname in wanted:
            shown = copy.deepcopy(stored)
            for content in shown.iter(t("Content")):  # attachments: GetAttachment has them
                content.getparent().remove(content)
            elem.append(shown)
    for name, text in _computed(item).items():
        if name in wanted and _field(item, name) is None:
            etree.SubElement(elem, t(name)).text = text
    if "Organizer" in wanted and item.item_class == "IPM.Appointment":
        organizer = etree.SubElement(etree.SubElement(elem, t("Organizer")), t("Mailbox"))
        etree.SubElement(organizer, t("Name")).text = item.mailbox.split("@")[0].title()
        etree.SubElement(organizer, t("EmailAddress")).text = item.mailbox
        etree.SubElement(organizer, t("RoutingType")).text = "SMTP"
    elem.extend(extended)
    return elem


def cancel_occurrence(store: SimulatorStore, item_id: str, start: dt.datetime) -> None:
    """What an owner does in Outlook when cancelling one instance of a recurring meeting:
    Exchange keeps it on the master as a ``DeletedOccurrence`` (its original start, UTC)."""
    with store.lock:
        item = store.find_item(item_id)
        gone = _field(item, "DeletedOccurrences")
        if gone is None:
            gone = etree.Element(t("DeletedOccurrences"))
            item.fields.append(gone)
        entry = etree.SubElement(gone, t("DeletedOccurrence"))
        etree.SubElement(entry, t("Start")).text = format_datetime(start.astimezone(dt.UTC))
        store.touch(item)


def move_occurrence(store: SimulatorStore, item_id: str, original: dt.datetime,
                    start: dt.datetime, end: dt.datetime, subject: str) -> str:  # fmt: skip
    """What an owner does in Outlook when moving (and renaming) one instance: Exchange keeps an
    exception item, listed on the master's ``ModifiedOccurrences`` and fetched by its id, never
    returned by FindItem (``occurrence_of``). Returns the exception's id."""
    with store.lock:
        master = store.find_item(item_id)
        mailbox = store.mailboxes[master.mailbox]
        exception = store.create_item(mailbox, mailbox.folders[master.folder_id], b"")
        exception.item_class, exception.occurrence_of = master.item_class, master.id
        skip = {"Recurrence", "ModifiedOccurrences", "DeletedOccurrences", "Start", "End",
                "Subject"}  # fmt: skip
        exception.fields = [copy.deepcopy(f) for f in master.fields
                            if etree.QName(f).localname not in skip]  # fmt: skip
        for name, value in (("Subject", subject), ("Start", format_datetime(start.astimezone(dt.UTC))),
                            ("End", format_datetime(end.astimezone(dt.UTC))),
                            ("RecurrenceId", format_datetime(original.astimezone(dt.UTC))),
                            ("OriginalStart", format_datetime(original.astimezone(dt.UTC))),
                            ("CalendarItemType", "Exception")):  # fmt: skip
            elem = etree.Element(t(name))
            elem.text = value
            _set(exception, elem)
        moved = _field(master, "ModifiedOccurrences")
        if moved is None:
            moved = etree.Element(t("ModifiedOccurrences"))
            master.fields.append(moved)
        entry = etree.SubElement(moved, t("Occurrence"))
        etree.SubElement(entry, t("ItemId"), Id=exception.id, ChangeKey=exception.changekey)
        for name in ("Start", "End", "OriginalStart"):
            etree.SubElement(entry, t(name)).text = _field(exception, name).text
        store.touch(master)
        return exception.id


def attachment(item: StoredItem, attachment_id: str) -> etree._Element | None:
    """A typed item's file attachment (with its content) by AttachmentId."""
    files = _field(item, "Attachments")
    for file in files if files is not None else []:
        if file.find(t("AttachmentId")).get("Id") == attachment_id:
            return file
    return None


def attachment_ids(item: StoredItem) -> etree._Element | None:
    """``t:Attachments`` holding only the ids, for a CreateItem answer."""
    files = _field(item, "Attachments")
    if files is None:
        return None
    out = etree.Element(t("Attachments"))
    for file in files:
        etree.SubElement(out, file.tag).append(copy.deepcopy(file.find(t("AttachmentId"))))
    return out
