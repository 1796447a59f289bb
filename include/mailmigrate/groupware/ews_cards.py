"""vCards read into exchangelib items: contacts (the inverse of
:func:`~mailmigrate.groupware.ews_convert.contact_text`) and groups as distribution lists (of
:func:`~mailmigrate.groupware.ews_convert.group_text`).

A member named by UID (``urn:uuid:<uid>``, Apple's ``X-ADDRESSBOOKSERVER-MEMBER`` or vCard 4's
``MEMBER``) must already be a contact of the destination folder with an email address: Exchange
lists it by that address and the contact's id. A member not there yet (the group came before
its contacts in this pass) makes the group a per-item problem that the next pass, finding the
contact, clears. ``mailto:`` members are one-off addresses.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import vobject
from exchangelib import Contact, DistributionList, EWSDate
from exchangelib.attachments import FileAttachment
from exchangelib.indexed_properties import EmailAddress, PhoneNumber, PhysicalAddress
from exchangelib.properties import Body, ItemId, Mailbox, Member

from mailmigrate.errors import ContentError
from mailmigrate.groupware.ews_convert import ADDRESSES_BACK

MEMBER_KEYS = ("x-addressbookserver-member", "member")


class NotCarried(ContentError):
    """The item holds something Exchange cannot (the text names it); it is not written."""


class MissingMember(ContentError):
    """A group member is not (yet) a contact on Exchange."""


@dataclass(frozen=True)
class KnownContact:
    """A contact of the destination folder a group may list."""

    item_id: str
    changekey: str
    email: str | None
    name: str | None


def distribution_list(card, account, contacts: dict[str, KnownContact]) -> DistributionList:
    """The distribution list of a vCard group (``contacts``: UID -> contact on Exchange)."""
    members = []
    for key in MEMBER_KEYS:
        for line in card.contents.get(key, []):
            value = str(line.value)
            if value.lower().startswith("mailto:"):
                box = Mailbox(email_address=value[7:], mailbox_type="OneOff")
            else:
                uid = value[9:] if value.lower().startswith("urn:uuid:") else value
                known = contacts.get(uid)
                if known is None or not known.email:
                    raise MissingMember(f"group member {uid} is not a contact with an email "
                                        "address on Exchange (yet)")  # fmt: skip
                box = Mailbox(email_address=known.email, name=known.name, mailbox_type="Contact",
                              item_id=ItemId(known.item_id, known.changekey))  # fmt: skip
            members.append(Member(mailbox=box))
    name = card.fn.value if "fn" in card.contents else ""
    item = DistributionList(account=account, display_name=name, members=members or None)
    item.groupware_uid = card.uid.value
    return item


def card_item(text: str, account, contacts: dict[str, KnownContact]):
    """The Contact or DistributionList (unsaved) of a vCard (``contacts``: UID -> contact on
    Exchange, for a group's members)."""
    card = vobject.readOne(text)
    kinds = {c.value.lower() for key in ("kind", "x-addressbookserver-kind")
             for c in card.contents.get(key, [])}  # fmt: skip
    if "group" in kinds:
        return distribution_list(card, account, contacts)
    item = Contact(account=account, display_name=card.fn.value if "fn" in card.contents else "")
    item.groupware_uid = card.uid.value
    if "n" in card.contents:
        name = card.n.value
        item.surname, item.given_name = name.family or None, name.given or None
        item.middle_name = name.additional or None
    if "org" in card.contents:
        org = card.org.value
        item.company_name = org[0] or None
        item.department = org[1] if len(org) > 1 else None
    if "title" in card.contents:
        item.job_title = card.title.value
    if "bday" in card.contents:
        day = dt.date.fromisoformat(card.bday.value.replace("-", "")[:8].ljust(8, "0")
                                    if "-" not in card.bday.value else card.bday.value[:10])  # fmt: skip
        item.birthday = EWSDate(day.year, day.month, day.day)
    item.email_addresses = [EmailAddress(label=f"EmailAddress{n + 1}", email=e.value)
                            for n, e in enumerate(card.contents.get("email", [])[:3])] or None  # fmt: skip
    phones, taken = [], set()
    for tel in card.contents.get("tel", []):
        types = {t.upper() for t in tel.params.get("TYPE", [])}
        place = "Home" if "HOME" in types else "Business" if "WORK" in types else None
        if "CELL" in types:
            options = ["MobilePhone"]
        elif "FAX" in types:
            options = [f"{place or 'Business'}Fax"]
        elif place:
            options = [f"{place}Phone", f"{place}Phone2"]
        else:
            options = ["OtherTelephone"]
        label = next((o for o in options if o not in taken), None)
        if label is None:
            raise NotCarried("Exchange holds fewer telephone numbers of this kind")
        taken.add(label)
        phones.append(PhoneNumber(label=label, phone_number=tel.value))
    item.phone_numbers = phones or None
    addresses = []
    for adr in card.contents.get("adr", []):
        types = {t.upper() for t in adr.params.get("TYPE", [])}
        label = next((ADDRESSES_BACK[t] for t in ("WORK", "HOME") if t in types), "Other")
        value = adr.value
        addresses.append(PhysicalAddress(label=label, street=value.street or None,
                                         city=value.city or None, state=value.region or None,
                                         zipcode=value.code or None, country=value.country or None))  # fmt: skip
    item.physical_addresses = addresses or None
    if "note" in card.contents:
        item.body = Body(card.note.value)
    if "photo" in card.contents and isinstance(card.photo.value, bytes):
        kind = (card.photo.params.get("TYPE") or ["jpeg"])[0].lower()
        item.attachments = [
            FileAttachment(
                name="ContactPicture.jpg",
                content=card.photo.value,
                content_type=f"image/{kind}",
                is_contact_photo=True,
            )
        ]
    return item
