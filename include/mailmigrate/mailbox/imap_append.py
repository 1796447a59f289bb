"""Pipelined appends (:class:`PipelinedAppender`): the next batch's ``APPEND`` is sent before
the server has answered the previous ones, so the destination link does not idle a round trip
per batch waiting for each tagged OK.

Used where the server offers MULTIAPPEND, LITERAL+ (no continuation to wait for inside a
command) and UIDPLUS (each answer names its own new UIDs, so nothing has to be looked up
between batches). Each batch stays one command with its own answer: its APPENDUIDs are read
from its own tagged response, a refused batch is handled alone (the answers of the batches
behind it are read first, then it is checked and appended message by message as
:meth:`~mailmigrate.mailbox.imap.ImapMailbox.append` does), and nothing is recorded before its
answer.

Everything runs on the caller's thread: the answers wait in the socket until :meth:`receive`
reads them (a few bytes each), so no other thread ever reads a TLS session while this one
writes to it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from mailmigrate.errors import MailboxError
from mailmigrate.mailbox import imap_wire
from mailmigrate.mailbox import imapclient_internals as internals
from mailmigrate.mailbox.base import Appender, AppendResult, Message, MessageInfo, Ref

if TYPE_CHECKING:
    from mailmigrate.mailbox.imap import ImapMailbox

DEPTH = 4  # batches under way at once; the copy's byte budget bounds them too


@dataclass(frozen=True)
class Hooks:
    """The parts of its :class:`~mailmigrate.mailbox.imap.ImapMailbox` an appender uses,
    handed over by the mailbox (its own methods, bound)."""

    session: Callable[[], Any]  # the mailbox's client now; ``None`` once the session is dropped
    select: Callable[..., dict]  # (path, writable=True) -> the SELECT's info
    written: Callable[[tuple[str, ...]], None]
    storable: Callable[[frozenset[str]], tuple[list[str], list[str]]]
    results: Callable[[list, int], list[AppendResult]]
    refused: Callable[..., list[AppendResult]]  # the mailbox's _refused_batch
    noted: Callable[..., list[AppendResult]]  # the mailbox's _noted
    drop_session: Callable[[], None]
    note_mark: Callable[[tuple[str, ...], str | None], None]  # the folder's append mark now


class PipelinedAppender(Appender):
    """Up to :data:`DEPTH` ``APPEND`` commands under way on the destination session.

    :param guard: the adapter's error translation (``imap_common.guarded``), applied to each step.

    Invariants: a batch's results come from its own tagged answer; a batch whose answer was not
    read when the copy gives up (:meth:`abandon`) costs the session (reset at once, so nothing
    queued lands after the engine compared the folders again); the session is used for other
    commands only when no answer is outstanding.
    """

    depth = DEPTH

    def __init__(
        self, mailbox: ImapMailbox, path: tuple[str, ...], hooks: Hooks, guard: Callable
    ) -> None:
        super().__init__(mailbox, path)
        self.hooks = hooks
        self._open_step = guard(lambda _mailbox, _path: self._open())
        self._add_step = guard(lambda _mailbox, _path, message: self._add(message))
        self._close_step = guard(lambda _mailbox, _path: self._close())
        self._begin_step = guard(lambda _mailbox, _path, info: self._begin(info))
        self._more_step = guard(lambda _mailbox, _path, chunk: self._more(chunk))
        self._streaming: tuple[MessageInfo, tuple[list[str], list[str]], int] | None = None
        self._open_tag: bytes | None = None  # a command being sent, message by message
        self._adding: tuple[list[Message], list] = ([], [])
        self._receive_step = guard(lambda _mailbox, _path: self._receive())
        hooks.written(path)
        info = hooks.select(path, writable=True)
        self.client = mailbox.client
        self.imap = internals.session(self.client)
        self.quoted = internals.quoted_folder(self.client, mailbox.name_of(path))
        # Anything a refused batch could have stored lies after this mark.
        self.mark = f"{int(info[b'UIDVALIDITY'])}:{int(info[b'UIDNEXT'])}"
        self._queue: deque[tuple[bytes, Sequence[Message], list]] = deque()
        self._outstanding: set[bytes] = set()  # tags whose answer is still in the socket
        self._early: dict[bytes, tuple[str, bytes]] = {}  # answers read ahead of their turn
        self.confirmed: set[Ref] = set()  # UIDs this appender's batches were given
        self._marked = True  # every stored message's UID is known: the mark follows from them

    @property
    def in_flight(self) -> int:
        return len(self._queue)

    def send(self, messages: Sequence[Message]) -> None:
        self.open()
        for message in messages:
            self.add(message)
        self.close()

    def open(self) -> None:
        self._open_step(self.mailbox, self.path)

    def add(self, message: Message) -> None:
        self._add_step(self.mailbox, self.path, message)

    def close(self) -> None:
        self._close_step(self.mailbox, self.path)

    streams = True

    def begin(self, info: MessageInfo) -> None:
        self._begin_step(self.mailbox, self.path, info)

    def more(self, chunk: bytes) -> None:
        self._more_step(self.mailbox, self.path, chunk)

    def finish(self, message: Message) -> None:
        assert self._streaming is not None, "finish() follows begin()"
        info, storable, sent = self._streaming
        assert info.ref == message.info.ref and sent == info.size == len(message.content)
        self._streaming = None
        self._adding[0].append(message)
        self._adding[1].append(storable)

    def receive(self) -> list[AppendResult]:
        return self._receive_step(self.mailbox, self.path)

    def abandon(self) -> None:
        unread = self._outstanding - self._early.keys()
        if (unread or self._open_tag is not None) and self.hooks.session() is self.client:
            self.hooks.drop_session()
        self._queue.clear()
        self._outstanding.clear()
        self._open_tag = None
        self._streaming = None

    def _session(self) -> None:
        if self.hooks.session() is not self.client:
            raise MailboxError(
                f"{self.mailbox.label}: appending to {self.mailbox.name_of(self.path)}: the "
                "session was lost with appends under way",
                retryable=True,
                folder="/".join(self.path),
            )

    def _open(self) -> None:
        self._session()
        self._open_tag = None  # sent with the first message: no line is ever sent in halves
        self._adding = ([], [])

    def _add(self, message: Message) -> None:
        self._begin(replace(message.info, size=len(message.content)), message.content)
        self.finish(message)

    def _begin(self, info: MessageInfo, content: bytes = b"") -> None:
        """Send a message's flags, date and size, and ``content`` (all its bytes, or none:
        they follow in :meth:`_more`)."""
        self._session()
        assert self._streaming is None, "one message at a time"
        storable = self.hooks.storable(info.flags)
        parts = [*imap_wire.append_message_head(storable[0], info.internaldate, info.size), content]
        if self._open_tag is None:
            self._open_tag = imap_wire.open_command(self.imap, [b"APPEND ", self.quoted, *parts])
        else:
            imap_wire.send_more(self.imap, parts)
        self._streaming = (info, storable, len(content))

    def _more(self, chunk: bytes) -> None:
        self._session()
        assert self._streaming is not None, "more() follows begin()"
        info, storable, sent = self._streaming
        imap_wire.send_more(self.imap, [chunk])
        self._streaming = (info, storable, sent + len(chunk))

    def _close(self) -> None:
        self._session()
        assert self._streaming is None, "a message half sent: abandon(), never close()"
        imap_wire.close_command(self.imap)
        tag, self._open_tag = self._open_tag, None
        assert tag is not None and self._adding[0], "an APPEND holds at least one message"
        self._outstanding.add(tag)
        self._queue.append((tag, *self._adding))

    def _answer(self, tag: bytes) -> tuple[str, bytes]:
        answer = imap_wire.read_tagged(self.imap, tag, self._outstanding, self._early)
        self._outstanding.discard(tag)
        return answer

    def _quiet(self) -> None:
        """Read every outstanding answer (kept for its batch's turn): the session is free for
        other commands afterwards."""
        for tag, _, _ in self._queue:
            if tag in self._outstanding:
                self._early[tag] = self._answer(tag)

    def _receive(self) -> list[AppendResult]:
        self._session()
        tag, messages, storable = self._queue[0]
        typ, text = self._answer(tag)
        self._queue.popleft()
        imap_wire.check_append_reply(typ, text)
        flags = [kept for kept, _ in storable]
        if typ == "OK":
            results = self.hooks.results([text], len(messages))
        else:
            self._quiet()
            stored_since = set(self.confirmed)  # by the batches sent before and after this one
            for later, _, _ in self._queue:
                typ_later, text_later = self._early.get(later, ("", b""))
                if typ_later == "OK":
                    match = imap_wire.APPENDUID.search(text_later)
                    stored_since.update(imap_wire.uid_set(match.group(2)) if match else ())
            results = self.hooks.refused(self.path, messages, flags, self.mark, ignore=stored_since)
        self.confirmed.update(r.ref for r in results if r.ref is not None)
        self._marked = self._marked and all(r.ref is not None or r.error for r in results)
        validity, uidnext = self.mark.split(":")
        top = max([int(uidnext) - 1, *(int(ref) for ref in self.confirmed)])
        self.hooks.note_mark(self.path, f"{validity}:{top + 1}" if self._marked else None)
        return self.hooks.noted(messages, storable, results, before_commands=self._quiet)
