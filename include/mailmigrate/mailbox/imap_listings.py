"""The IMAP adapter's listings: what a folder holds (UIDs, sizes, flags, dates, identities)
and what changed since a sync token, each folder in one round trip (EXAMINE and UID FETCH sent
together), the checks' listings of several folders in two. A mixin of
:class:`~mailmigrate.mailbox.imap.ImapMailbox`: it works through that class's session
(``client``, ``name_of``, ``_select``, ``_status``, ``_token``, ``_uid_fetch``,
``folder_states``).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any

from mailmigrate import identity as ident
from mailmigrate.mailbox import imap_responses, imap_wire
from mailmigrate.mailbox import imapclient_internals as internals
from mailmigrate.mailbox.base import Changes, Listing, MessageInfo, Ref
from mailmigrate.mailbox.imap_common import (
    ServerRefused,
    clean_flags,
    guarded,
    message_id_header,
    uid_ranges,
)

LIST_FIELDS = [b"RFC822.SIZE", b"FLAGS", b"INTERNALDATE", b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]


class ImapListings:
    """Listings and changes of :class:`~mailmigrate.mailbox.imap.ImapMailbox`."""

    client: Any
    folder_states: dict[tuple[str, ...], dict[bytes, Any]]
    _selected: tuple[tuple[str, ...], bool] | None
    _select_info: dict[bytes, Any]

    def _examine_and_fetch(
        self, path: tuple[str, ...], uid_set: str, items: list[bytes]
    ) -> tuple[dict[bytes, Any], dict[int, dict[bytes, Any]]]:
        """EXAMINE (fresh) and ``UID FETCH uid_set (items)`` in one round trip: the folder's
        facts as :meth:`_select` gives them, and the items by UID (none when the folder is
        empty: a server may refuse a UID set in an empty folder).

        Sent together safely: a refused EXAMINE leaves no folder selected, so the FETCH behind
        it fails too and is ignored."""
        imap = internals.session(self.client)
        quoted = internals.quoted_folder(self.client, self.name_of(path))
        self._selected = None
        internals.begin_examine(imap)
        by_uid: dict[int, dict[bytes, Any]] = {}

        def keep(entry: dict[bytes, Any]) -> None:
            uid = entry.get(b"UID")
            if isinstance(uid, int):
                by_uid.setdefault(uid, {}).update(entry)

        (typ, text), (fetched, why) = imap_wire.pipelined(
            imap, [b"EXAMINE " + quoted, imap_wire.fetch_command(uid_set, items)], keep
        )
        try:
            info = internals.end_examine(self.client, imap, typ == "OK")
        except (ValueError, TypeError, AttributeError, IndexError) as exc:
            raise imap_responses.MalformedResponse(f"EXAMINE reply: {exc}") from None
        if typ != "OK":
            raise ServerRefused(f"examine failed: {typ} {text.decode(errors='replace')}")
        if b"UIDNEXT" not in info:  # optional in a SELECT reply (Courier leaves it out)
            status = self.client.folder_status(self.name_of(path), [b"UIDNEXT"])
            info[b"UIDNEXT"] = status[b"UIDNEXT"]
        self._select_info = info
        self._selected = (path, False)
        if not info.get(b"EXISTS"):
            return info, {}
        if fetched != "OK":
            raise ServerRefused(f"FETCH failed: {fetched} {why.decode(errors='replace')}")
        return info, by_uid

    def _infos(
        self, criteria: str, min_uid: int = 0, data: dict[int, dict[bytes, Any]] | None = None,
        headers: dict[int, bytes] | None = None,
    ) -> list[MessageInfo]:  # fmt: skip
        """Message infos for the selected folder's UIDs in ``criteria`` (a UID set); ``data``:
        their ``LIST_FIELDS`` when fetched already; ``headers``: the headers of those without
        a Message-ID, when fetched already."""
        if data is None:
            data = self._uid_fetch(criteria, LIST_FIELDS)
        data = {uid: d for uid, d in data.items() if uid >= min_uid and b"RFC822.SIZE" in d}
        missing = [uid for uid, d in data.items() if not ident.message_id(message_id_header(d))]
        if headers is None:
            fetched = self._uid_fetch(missing, [b"BODY.PEEK[HEADER]"]) if missing else {}
            headers = {uid: d.get(b"BODY[HEADER]") or b"" for uid, d in fetched.items()}
        infos = []
        for uid in sorted(data):
            d = data[uid]
            size = int(d[b"RFC822.SIZE"])
            msgid = ident.message_id(message_id_header(d))
            infos.append(
                MessageInfo(
                    ref=uid,
                    identity=ident.identity(size, msgid, headers.get(uid)),
                    size=size,
                    flags=clean_flags(d.get(b"FLAGS", ())),
                    internaldate=d.get(b"INTERNALDATE"),
                )
            )
        return infos

    @guarded("listing messages in")
    def listing(self, path: tuple[str, ...]) -> Listing:
        info, data = self._examine_and_fetch(path, "1:*", LIST_FIELDS)
        token = self._token(info)
        messages = self._infos("1:*", data=data) if info.get(b"EXISTS") else []
        return Listing(messages=messages, token=token)

    @guarded("listing messages in")
    def listing_without_identities(self, path: tuple[str, ...]) -> Listing:
        """UIDs and sizes only, from the index: for a copy into an empty folder, which matches
        nothing and reads identities, flags and dates with the bytes it fetches. Skips reading
        every message's header (a pass over the source's files) and starts the copy sooner."""
        info, data = self._examine_and_fetch(path, "1:*", [b"RFC822.SIZE"])
        token = self._token(info)
        if not info.get(b"EXISTS"):
            return Listing(messages=[], token=token)
        messages = [
            MessageInfo(ref=uid, identity="", size=int(d[b"RFC822.SIZE"]))
            for uid, d in sorted(data.items())
            if b"RFC822.SIZE" in d
        ]
        return Listing(messages=messages, token=token)

    @guarded("reading changes in")
    def changes(self, path: tuple[str, ...], token: str, known: Collection[Ref]) -> Changes | None:
        then = json.loads(token)
        now = self._status(path)
        if int(now[b"UIDVALIDITY"]) != then["v"]:
            return None
        modseq = now[b"HIGHESTMODSEQ"]
        if (
            then["m"] is not None
            and modseq is not None
            and int(modseq) == then["m"]
            and int(now[b"UIDNEXT"]) == then["n"]
            and int(now[b"EXISTS"]) == then["c"]
        ):
            return Changes(token=token)
        info = self._select(path, fresh=True)
        if int(info[b"UIDVALIDITY"]) != then["v"]:
            return None
        changes = Changes(token=self._token(info))
        if not info.get(b"EXISTS"):
            changes.removed = set(known)
            return changes
        changes.new = self._infos(f"{then['n']}:*", min_uid=then["n"])
        if then["m"] is not None and info.get(b"HIGHESTMODSEQ"):
            changed = self._uid_fetch("1:*", [b"FLAGS"], f"CHANGEDSINCE {then['m']}")
        else:
            changed = self._uid_fetch("1:*", [b"FLAGS"])
        changes.flags = {
            uid: clean_flags(d[b"FLAGS"]) for uid, d in changed.items() if b"FLAGS" in d
        }
        if int(info[b"EXISTS"]) != then["c"] + len(changes.new):
            present = set(self.client.search("ALL"))
            changes.removed = {ref for ref in known if ref not in present}
        return changes

    @guarded("listing new messages in")
    def listing_since(self, path: tuple[str, ...], mark: str | None) -> list[MessageInfo]:
        """Nothing, without a command, when the folder's state read for this pass
        (:meth:`read_states`; the folder not written through this session since) says it is
        empty or has nothing after ``mark``."""
        if self._nothing_since(path, mark):
            return []
        since = int(mark.split(":")[1]) if mark else 1
        info, data = self._examine_and_fetch(path, f"{since}:*", LIST_FIELDS)
        if not info.get(b"EXISTS"):
            return []
        if mark and int(mark.split(":")[0]) == int(info[b"UIDVALIDITY"]):
            return self._infos(f"{since}:*", min_uid=since, data=data)
        if since == 1:
            return self._infos("1:*", data=data)
        return self._infos("1:*")  # another folder under the same name: everything is new

    def _nothing_since(self, path: tuple[str, ...], mark: str | None) -> bool:
        read = self.folder_states.get(path)
        if read is None:
            return False
        if not read[b"EXISTS"]:
            return True
        if mark:
            validity, uidnext = (int(x) for x in mark.split(":"))
            return validity == int(read[b"UIDVALIDITY"]) and uidnext >= int(read[b"UIDNEXT"])
        return False

    @guarded("listing messages in")
    def listings_since(
        self, wanted: Sequence[tuple[tuple[str, ...], str | None]]
    ) -> dict[tuple[str, ...], list[MessageInfo]]:
        """:meth:`listing_since` of several folders in two round trips: EXAMINE and UID FETCH
        of each folder, all sent at once; then, the same way, the headers of messages without
        a Message-ID. A folder the flights do not answer plainly (refused, another UIDVALIDITY
        than the mark's, no UIDNEXT) is left out, for :meth:`listing_since` to ask alone."""
        out: dict[tuple[str, ...], list[MessageInfo]] = {}
        asked = []
        for path, mark in wanted:
            if self._nothing_since(path, mark):
                out[path] = []
            else:
                since = int(mark.split(":")[1]) if mark else 1
                asked.append((path, mark, since))
        if len(asked) < 2:  # one folder alone costs the same flight
            return out
        listed = {}
        everything_since = [(path, f"{since}:*") for path, _, since in asked]
        for (path, mark, since), (info, data, fetched) in zip(
            asked, self._examine_and_fetch_many(everything_since, LIST_FIELDS), strict=True
        ):
            if not info or b"UIDNEXT" not in info:
                continue
            if not info.get(b"EXISTS"):
                out[path] = []
            elif fetched and (not mark or int(mark.split(":")[0]) == int(info[b"UIDVALIDITY"])):
                listed[path] = {u: d for u, d in data.items() if u >= since and b"RFC822.SIZE" in d}
        anonymous = {
            path: [uid for uid, d in data.items() if not ident.message_id(message_id_header(d))]
            for path, data in listed.items()
        }
        headers: dict[tuple[str, ...], dict[int, bytes]] = {path: {} for path in listed}
        asked_again = [(path, uid_ranges(uids)) for path, uids in anonymous.items() if uids]
        for (path, _), (info, data, fetched) in zip(
            asked_again,
            self._examine_and_fetch_many(asked_again, [b"BODY.PEEK[HEADER]"]),
            strict=True,
        ):
            if info and fetched:
                headers[path] = {uid: d.get(b"BODY[HEADER]") or b"" for uid, d in data.items()}
        for path, data in listed.items():
            if all(uid in headers[path] for uid in anonymous[path]):
                out[path] = self._infos("", data=data, headers=headers[path])
        return out

    def _examine_and_fetch_many(
        self, wanted: Sequence[tuple[tuple[str, ...], str]], items: list[bytes]
    ) -> list[tuple[dict[bytes, Any], dict[int, dict[bytes, Any]], bool]]:
        """:meth:`_examine_and_fetch` of several ``(path, uid_set)`` in one round trip: per
        folder its facts (``{}``: refused or unreadable), the items by UID, and whether the
        FETCH was answered OK."""
        if not wanted:
            return []
        imap = internals.session(self.client)
        commands = []
        for path, uid_set in wanted:
            quoted = internals.quoted_folder(self.client, self.name_of(path))
            commands += [b"EXAMINE " + quoted, imap_wire.fetch_command(uid_set, items)]
        infos: list[dict[bytes, Any]] = [{} for _ in wanted]
        fetched: list[dict[int, dict[bytes, Any]]] = [{} for _ in wanted]
        reading = [0]  # the folder whose FETCH responses come next

        def keep(entry: dict[bytes, Any]) -> None:
            if isinstance(entry.get(b"UID"), int):
                fetched[reading[0]].setdefault(entry[b"UID"], {}).update(entry)

        def tagged(index: int, typ: str) -> None:
            if index % 2 == 0:  # an EXAMINE: its responses are in imaplib's store
                reading[0] = index // 2
                try:
                    infos[index // 2] = internals.end_examine(self.client, imap, typ == "OK")
                except (ValueError, TypeError, AttributeError, IndexError):
                    pass  # asked alone, where a malformed reply is reported
                internals.begin_examine(imap)

        self._selected = None
        internals.begin_examine(imap)
        answers = imap_wire.pipelined(imap, commands, keep, tagged)
        return [
            (info, data, typ == "OK")
            for info, data, (typ, _) in zip(infos, fetched, answers[1::2], strict=True)
        ]
