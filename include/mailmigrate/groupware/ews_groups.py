"""vCard groups written onto Exchange as distribution lists (the inverse of
:func:`~mailmigrate.groupware.ews_convert.group_text`).

A member named by UID (``urn:uuid:<uid>``, Apple's ``X-ADDRESSBOOKSERVER-MEMBER`` or vCard 4's
``MEMBER``) must already be a contact of the destination folder with an email address: Exchange
lists it by that address and the contact's id. A member not there yet (the group came before
its contacts in this pass) makes the group a per-item problem that the next pass, finding the
contact, clears. ``mailto:`` members are one-off addresses.
"""

from __future__ import annotations

from dataclasses import dataclass

from exchangelib import DistributionList
from exchangelib.properties import ItemId, Mailbox, Member

from mailmigrate.errors import ContentError

MEMBER_KEYS = ("x-addressbookserver-member", "member")


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
