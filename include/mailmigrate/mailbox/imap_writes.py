"""The IMAP adapter's writes: appends (one batch at a time, or pipelined through
:mod:`~mailmigrate.mailbox.imap_append`), flags and deletions, with every flag checked to be an
RFC 3501 atom the folder stores. A mixin of :class:`~mailmigrate.mailbox.imap.ImapMailbox`: it
works through that class's session (``client``, ``has``, ``name_of``, ``_select``,
``listing_since``, ``append_mark``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Sequence
from typing import Any

from imapclient.exceptions import IMAPClientError

from mailmigrate import identity as ident
from mailmigrate.errors import MailboxError
from mailmigrate.mailbox import imap_wire
from mailmigrate.mailbox import imapclient_internals as internals
from mailmigrate.mailbox.base import Appender, AppendResult, Message, Ref
from mailmigrate.mailbox.imap_append import Hooks, PipelinedAppender
from mailmigrate.mailbox.imap_common import (
    FLAG,
    RETRYABLE_CODES,
    ServerRefused,
    eight_bit,
    flag_text,
    guarded,
)

APPENDUID = imap_wire.APPENDUID


class ImapWrites:
    """Appends, flags and deletions of :class:`~mailmigrate.mailbox.imap.ImapMailbox`."""

    label: str
    client: Any
    _select_info: dict[bytes, Any]
    _permanent_for: dict[bytes, Any] | None
    _permanent: frozenset[str] | None

    def _storable(self, flags: frozenset[str]) -> tuple[list[str], list[str]]:
        """The flags this folder stores, and why each other one is left out.

        Invariant: nothing but RFC 3501 flag atoms is ever written into a command, so a flag read
        from a hostile source (a literal in its FLAGS reply) cannot end the flag list and inject
        a command into this session. Without ``\\*`` in PERMANENTFLAGS only the flags listed
        there are stored (case-insensitively, as IMAP compares flags)."""
        permanent = self._permanent_flags()
        kept, left_out = [], []
        for flag in sorted(flags):
            if not FLAG.fullmatch(flag):
                left_out.append(f"{flag[:60]!r} (not an IMAP flag)")
            elif permanent is not None and flag.lower() not in permanent:
                left_out.append(f"{flag} (the folder stores no such flag: PERMANENTFLAGS)")
            else:
                kept.append(flag)
        return kept, left_out

    def _permanent_flags(self) -> frozenset[str] | None:
        """The selected folder's PERMANENTFLAGS, lowered; ``None`` when any flag is stored."""
        info = self._select_info
        if self._permanent_for is not info:
            permanent = frozenset(flag_text(f).lower() for f in info.get(b"PERMANENTFLAGS", ()))
            self._permanent = None if not permanent or "\\*" in permanent else permanent
            self._permanent_for = info
        return self._permanent

    @guarded("appending to")
    def append(self, path: tuple[str, ...], messages: Sequence[Message]) -> list[AppendResult]:
        if not messages:
            return []
        self._written(path)
        self._select(path, writable=True)
        name = self.name_of(path)
        storable = [self._storable(m.info.flags) for m in messages]
        flags = [kept for kept, _ in storable]
        results = None
        mark = None if self.has("UIDPLUS") else self.append_mark(path)
        if len(messages) > 1 and self.has("MULTIAPPEND"):
            mark = mark or self.append_mark(path)
            typ, data = self._multiappend(name, messages, flags)
            if typ == "OK":
                results = self._results(data, len(messages))
            else:
                results = self._refused_batch(path, messages, flags, mark)
        if results is None:
            results = [self._append_one(name, m, f) for m, f in zip(messages, flags, strict=True)]
        if not self.has("UIDPLUS"):
            results = self._found_refs(path, mark, messages, results)
        return self._noted(messages, storable, results)

    @guarded("appending to")
    def appender(self, path: tuple[str, ...]) -> Appender:
        """Pipelined (:mod:`~mailmigrate.mailbox.imap_append`) where the server offers
        MULTIAPPEND, LITERAL+ and UIDPLUS; else one batch at a time through :meth:`append`."""
        if all(self.has(c) for c in ("MULTIAPPEND", "LITERAL+", "UIDPLUS")):
            hooks = Hooks(
                session=lambda: self._client, select=self._select, written=self._written,
                storable=self._storable, results=self._results, refused=self._refused_batch,
                noted=self._noted, drop_session=self._drop_session, note_mark=self._note_mark,
            )  # fmt: skip
            return PipelinedAppender(self, path, hooks, guarded("appending to"))
        return Appender(self, path)

    def _refused_batch(
        self, path: tuple[str, ...], messages: Sequence[Message], flags: list[list[str]],
        mark: str | None, ignore: Collection[Ref] | None = None,
    ) -> list[AppendResult]:  # fmt: skip
        """A MULTIAPPEND the server refused: all-or-nothing on conforming servers, so whether
        any of it landed after ``mark`` is checked before the messages go one by one (each
        refusal then reported with its message). ``ignore`` (pipelined appends): what other
        batches stored after the mark; then only messages with this batch's identities count.

        :raises MailboxError: (retryable) part of the batch landed all the same."""
        name = self.name_of(path)
        landed = self.listing_since(path, mark)
        if ignore is not None:
            landed = [info for info in landed if info.ref not in ignore]
            mine = {m.info.identity for m in messages}
            landed = [info for info in landed if info.identity in mine]
        self._select(path, writable=True)
        if landed:
            raise MailboxError(
                f"{self.label}: appending to {name}: MULTIAPPEND failed but stored "
                f"{len(landed)} message(s); retrying the batch",
                retryable=True,
            )
        return [self._append_one(name, m, f) for m, f in zip(messages, flags, strict=True)]

    def _noted(
        self, messages: Sequence[Message], storable: list[tuple[list[str], list[str]]],
        results: list[AppendResult], before_commands: Callable[[], None] | None = None,
    ) -> list[AppendResult]:  # fmt: skip
        """The results with a note for each message stored not exactly as given (flags left
        out, header bytes the server changed). ``before_commands`` runs before any command is
        sent for that check (a pipeline reads its outstanding answers)."""
        changed = self._changed_by_server(messages, results, before_commands)
        noted = []
        for result, (_, left_out) in zip(results, storable, strict=True):
            notes = [result.note] if result.note else []
            if left_out:
                notes.append(f"flags not stored: {', '.join(left_out)}")
            if result.ref in changed:
                notes.append("the server changed its 8-bit header bytes as it stored it")
            if notes and result.error is None:
                result = dataclasses.replace(result, note="; ".join(notes))
            noted.append(result)
        return noted

    def _changed_by_server(
        self, messages: Sequence[Message], results: list[AppendResult],
        before_commands: Callable[[], None] | None = None,
    ) -> set[Ref]:  # fmt: skip
        """The appended messages this server stored with other header bytes than it was given.

        Some servers rewrite what they store: Cyrus's default ``munge8bit`` turns every 8-bit
        header byte into ``X`` (same size, same Message-ID: nothing else would notice). Only
        messages with 8-bit header bytes are read back (their header), and only those bytes are
        compared, so line ends a server normalises do not count."""
        suspects = {
            r.ref: eight_bit(ident.header_block(m.content))
            for m, r in zip(messages, results, strict=True)
            if r.ref is not None and r.error is None and not m.content.isascii()
        }
        suspects = {ref: high for ref, high in suspects.items() if high}
        if not suspects:
            return set()
        if before_commands is not None:
            before_commands()
        stored = self._uid_fetch([int(ref) for ref in suspects], [b"BODY.PEEK[HEADER]"])
        if len(stored) < len(suspects):  # a session that has not seen its appends yet (Courier)
            self.client.noop()
            stored = self._uid_fetch([int(ref) for ref in suspects], [b"BODY.PEEK[HEADER]"])
        return {
            ref
            for ref, high in suspects.items()
            if b"BODY[HEADER]" in stored.get(int(ref), {})
            and eight_bit(stored[int(ref)][b"BODY[HEADER]"]) != high
        }

    def _found_refs(
        self, path: tuple[str, ...], mark: str | None, messages: Sequence[Message],
        results: list[AppendResult],
    ) -> list[AppendResult]:  # fmt: skip
        """Without UIDPLUS no APPENDUID names the new messages: find them after the mark by
        identity (twins in order), so later flag changes reach them."""
        landed: dict[str, list[Ref]] = {}
        for info in self.listing_since(path, mark):
            landed.setdefault(info.identity, []).append(info.ref)
        self._select(path, writable=True)
        found = []
        for message, result in zip(messages, results, strict=True):
            refs = landed.get(message.info.identity)
            if result.error is None and result.ref is None and refs:
                result = dataclasses.replace(result, ref=refs.pop(0))
            found.append(result)
        return found

    def _multiappend(
        self, name: str, messages: Sequence[Message], flags: list[list[str]]
    ) -> tuple[str, list[Any]]:
        if self.has("LITERAL+"):
            return imap_wire.multiappend(
                internals.session(self.client),
                internals.quoted_folder(self.client, name),
                [(f, m.info.internaldate, m.content) for m, f in zip(messages, flags, strict=True)],
            )
        items = [
            {"msg": m.content, "flags": f, "date": m.info.internaldate}
            if m.info.internaldate
            else {"msg": m.content, "flags": f}
            for m, f in zip(messages, flags, strict=True)
        ]
        return self.client.multiappend(name, items)

    def _append_one(self, name: str, message: Message, flags: list[str]) -> AppendResult:
        """APPEND one message. A server that refuses a message for a keyword it cannot hold
        (Courier answers a keyword of digits with "Error in IMAP command") gets the message
        without its keywords, then each keyword by STORE: the ones it refuses are noted."""
        result = self._append_once(name, message, flags)
        keywords = [flag for flag in flags if not flag.startswith("\\")]
        if result.error is None or not keywords:
            return result
        retry = self._append_once(name, message, [f for f in flags if f.startswith("\\")])
        if retry.error is not None:
            return result
        refused = keywords
        if retry.ref is not None:
            refused = []
            for keyword in keywords:
                try:
                    self.client.add_flags([retry.ref], [keyword], silent=True)
                except IMAPClientError:
                    refused.append(keyword)
        if not refused:
            return retry
        why = result.error.removeprefix("append failed: ")
        return dataclasses.replace(
            retry, note=f"keywords not stored: {', '.join(refused)} (the server said: {why})"
        )

    def _append_once(self, name: str, message: Message, flags: list[str]) -> AppendResult:
        if self.has("LITERAL+"):
            # Not imaplib's APPEND: it rewrites line ends with a regex over the whole message,
            # which took 117 MB of memory for one 25 MB message.
            typ, data = imap_wire.multiappend(
                internals.session(self.client),
                internals.quoted_folder(self.client, name),
                [(flags, message.info.internaldate, message.content)],
            )
            if typ != "OK":
                text = f"append failed: {data[0].decode(errors='replace')}"
                if any(code in text for code in RETRYABLE_CODES):
                    raise ServerRefused(text)
                return AppendResult(error=text)
            return self._results(data, 1)[0]
        try:
            response = self.client.append(name, message.content, flags, message.info.internaldate)
        except IMAPClientError as exc:
            text = str(exc)
            if any(code in text for code in RETRYABLE_CODES):
                raise
            return AppendResult(error=text)
        results = self._results([response], 1)
        return results[0]

    def _results(self, data: list[Any], count: int) -> list[AppendResult]:
        text = b" ".join(d if isinstance(d, bytes) else str(d).encode() for d in data if d)
        match = APPENDUID.search(text)
        if match:
            uids = imap_wire.uid_set(match.group(2))
            if len(uids) == count:
                return [AppendResult(ref=uid) for uid in uids]
        return [AppendResult() for _ in range(count)]

    @guarded("setting flags in")
    def set_flags(
        self, path: tuple[str, ...], ref: Ref, add: frozenset[str], remove: frozenset[str]
    ) -> str | None:
        """Flags the folder cannot store are left out; a server that refuses the STORE for a
        keyword (Courier: keywords of digits) gets the flags one by one, the refused left out.
        Every flag left out is named in the note returned."""
        self._written(path)
        self._select(path, writable=True)
        add_now, left_out = self._storable(add)
        remove_now = [flag for flag in sorted(remove) if FLAG.fullmatch(flag)]
        notes = [f"flags not stored: {', '.join(left_out)}"] if left_out else []
        if add_now:
            try:
                self.client.add_flags([ref], add_now, silent=True)
            except IMAPClientError as exc:
                refused = []
                for flag in add_now:
                    try:
                        self.client.add_flags([ref], [flag], silent=True)
                    except IMAPClientError:
                        if flag.startswith("\\"):
                            raise
                        refused.append(flag)
                if refused:  # worded as when a copy's APPEND is refused for them
                    notes.append(f"keywords not stored: {', '.join(refused)} "
                                 f"(the server said: {exc})")  # fmt: skip
        if remove_now:
            self.client.remove_flags([ref], remove_now, silent=True)
        return "; ".join(notes) or None

    @guarded("deleting from")
    def delete(self, path: tuple[str, ...], refs: Collection[Ref]) -> None:
        if not refs:
            return
        self._written(path)
        self._select(path, writable=True)
        self.client.add_flags(list(refs), ["\\Deleted"], silent=True)
        if self.has("UIDPLUS"):
            self.client.uid_expunge(list(refs))
        else:
            self.client.expunge()
