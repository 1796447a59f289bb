"""Copying a list of messages: batched fetch and append, overlapped, bounded in memory.

A reader thread fetches batches from the source while the calling thread appends them to the
destination, so both links are busy at once; nothing waits a round trip between batches:

- the source's next FETCH is sent before the previous batch's answer is read
  (:meth:`~mailmigrate.mailbox.base.Mailbox.fetch_then`);
- each message goes into its batch's APPEND as soon as it has arrived (the command is opened
  with the batch's first message and ended after its last), so the destination trails the
  source by a message, not by a batch; a big message's bytes go on as they arrive (where the
  destination's :class:`~mailmigrate.mailbox.base.Appender` :attr:`streams`), so it trails
  by a few kilobytes. A command that holds part of a message is never ended: when the rest
  does not come, its session is dropped, so none of its batch lands, and the folder is
  compared again;
- up to the :class:`~mailmigrate.mailbox.base.Appender`'s depth of APPENDs are under way at
  once; each batch is recorded when its own answer is read, never before.

The reader runs ahead by up to ``batch_bytes`` of fetched, not yet confirmed messages (a single
message larger than that travels alone): memory per folder lane is bounded by about
``batch_bytes`` plus the batch being read.

Batches grow (:func:`growing_batches`): the first is small, so the destination starts writing
early, and each following one doubles up to :data:`STEADY_BATCH_BYTES`. Towards the end of a
folder they shrink again.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence

from mailmigrate.errors import MailboxError
from mailmigrate.identity import identity_of
from mailmigrate.mailbox.base import Mailbox, Message, MessageInfo
from mailmigrate.plan import CopyOptions
from mailmigrate.results import FolderResult, MessageFailure, human_bytes
from mailmigrate.state import AccountState, Entry

PROGRESS_EVERY = 10.0  # seconds between progress lines in the task log
FIRST_BATCH_BYTES = 256 * 1024
STEADY_BATCH_BYTES = 4 * 1024 * 1024


def growing_batches(
    infos: Sequence[MessageInfo], max_messages: int, max_bytes: int
) -> Iterator[list[MessageInfo]]:
    """Consecutive batches (at least one message each) of at most ``max_messages``: about
    :data:`FIRST_BATCH_BYTES` first, then twice as many bytes each time up to the smaller of
    ``max_bytes`` and :data:`STEADY_BATCH_BYTES`, but never more than half of what is left
    (so the last batch, appended after everything else is read, is small)."""
    ceiling = min(max_bytes, STEADY_BATCH_BYTES)
    left = sum(info.size for info in infos)
    limit = min(FIRST_BATCH_BYTES, ceiling)
    batch: list[MessageInfo] = []
    size = 0
    for info in infos:
        if batch and (len(batch) >= max_messages or size + info.size > limit):
            yield batch
            left -= size
            batch, size = [], 0
            limit = min(limit * 2, ceiling, max(FIRST_BATCH_BYTES, left // 2))
        batch.append(info)
        size += info.size
    if batch:
        yield batch


class _Budget:
    """Bytes fetched and not yet appended; :meth:`take` waits for room (or for ``stop``).
    While it waits, :attr:`waiting` is set and ``on_wait`` was called once: the appending side
    then frees room by reading the answer of its oldest batch under way."""

    def __init__(self, limit: int, on_wait=None) -> None:
        self.limit, self.used = limit, 0
        self.waiting = False
        self._on_wait = on_wait
        self._room = threading.Condition()

    def take(self, size: int, stop: threading.Event) -> bool:
        with self._room:
            if self.used and self.used + size > self.limit:
                self.waiting = True
                if self._on_wait is not None:
                    self._on_wait()
            while self.used and self.used + size > self.limit:
                if stop.is_set():
                    self.waiting = False
                    return False
                self._room.wait(0.1)
            self.waiting = False
            self.used += size
            return not stop.is_set()

    def give(self, size: int) -> None:
        with self._room:
            self.used -= size
            self._room.notify_all()


_ROOM = object()  # the reader waits for room in the budget
_PART = object()  # one message of the batch being read, as it arrived
_HEAD = object()  # a big message's flags, date and size: its bytes follow as _CHUNKs
_CHUNK = object()


class _Open:
    """The batch being sent to the destination: the messages sent (or passed over) so far."""

    def __init__(self) -> None:
        self.opened = False
        self.outgoing: list[Message] = []
        self.handled: set = set()
        self.streaming: MessageInfo | None = None  # a message whose bytes are being passed on


class RateLimit:
    """Sleeps so that no more than the given messages and bytes per second pass."""

    def __init__(self, messages_per_second: float | None, bytes_per_second: float | None):
        self.mps, self.bps = messages_per_second, bytes_per_second
        self.started = time.monotonic()
        self.messages = self.bytes = 0

    def wait(self, messages: int, size: int) -> None:
        self.messages += messages
        self.bytes += size
        due = max(
            self.messages / self.mps if self.mps else 0.0,
            self.bytes / self.bps if self.bps else 0.0,
        )
        delay = self.started + due - time.monotonic()
        if delay > 0:
            time.sleep(delay)


class CopyPipeline:
    """Copies messages of one folder pair and records each confirmed append in the state."""

    def __init__(
        self,
        src: Mailbox,
        dst: Mailbox,
        source: tuple[str, ...],
        destination: tuple[str, ...],
        options: CopyOptions,
        state: AccountState,
        result: FolderResult,
        failures: list[MessageFailure],
        say,
    ) -> None:
        self.src, self.dst, self.source, self.destination = src, dst, source, destination
        self.options, self.state, self.result, self.failures, self.say = (
            options,
            state,
            result,
            failures,
            say,
        )
        self.rate = RateLimit(options.messages_per_second, options.bytes_per_second)

    def run(self, todo: Sequence[MessageInfo]) -> None:
        """Copy ``todo``. Batches go to the destination's :class:`~mailmigrate.mailbox.base.
        Appender` as they are fetched, up to its depth under way at once; each batch is recorded
        when its answer is read: the oldest, when the depth is reached, when the reader needs
        the budget's room, and all of them at the end (or when the source fails)."""
        fetched: queue.Queue = queue.Queue()  # bounded by the budget, in bytes
        budget = _Budget(self.options.batch_bytes, lambda: fetched.put(_ROOM))
        stop = threading.Event()
        self._streams = threading.Event()  # big messages are passed on as they arrive
        reader = threading.Thread(
            target=self._read, args=(todo, fetched, stop, budget), daemon=True
        )
        reader.start()  # the first FETCH goes out while the destination gets ready
        try:
            appender = self.dst.appender(self.destination)
        except BaseException:
            stop.set()
            reader.join()
            raise
        if appender.streams:
            self._streams.set()
        sent: deque[tuple[list[Message], int]] = deque()  # under way, oldest first
        self._started = self._last_report = time.monotonic()
        reading = True
        batch = _Open()  # the batch being sent, message by message as they arrive
        try:
            while reading or sent:
                if (
                    sent
                    and not batch.opened
                    and (not reading or len(sent) >= appender.depth or budget.waiting)
                ):
                    self._receive(appender, sent, budget, len(todo))
                    continue
                item = fetched.get()
                if item is _ROOM:
                    continue
                if batch.streaming is not None:
                    if isinstance(item, tuple) and item[0] is _CHUNK:
                        appender.more(item[1])
                        continue
                    self._finish(appender, batch, item)
                    continue
                if item is None:
                    reading = False
                elif isinstance(item, BaseException):
                    if batch.opened:  # its whole messages land: close it and record them
                        appender.close()
                        sent.append((batch.outgoing, 0))
                        batch = _Open()
                    while sent:  # what is under way lands: record it before giving up
                        self._receive(appender, sent, budget, len(todo))
                    raise item
                elif item[0] is _HEAD:
                    self._begin(appender, batch, item[1])
                elif item[0] is _PART:
                    self._stream(appender, batch, item[1], item[2])
                else:
                    infos, messages, size = item
                    for info in infos:
                        if info.ref not in batch.handled:
                            self._stream(appender, batch, info, messages.get(info.ref))
                    if batch.opened:
                        appender.close()
                        sent.append((batch.outgoing, size))
                    else:
                        budget.give(size)
                    batch = _Open()
        except BaseException:
            appender.abandon()
            raise
        finally:
            stop.set()
            reader.join()

    def _stream(self, appender, batch: _Open, info: MessageInfo, message: Message | None) -> None:
        """One message of the batch being sent: to the destination when it was read."""
        batch.handled.add(info.ref)
        outgoing = self._outgoing(info, message)
        if outgoing is None:
            return
        self.rate.wait(1, outgoing.info.size)
        if not batch.opened:
            appender.open()
            batch.opened = True
        appender.add(outgoing)
        batch.outgoing.append(outgoing)

    def _begin(self, appender, batch: _Open, info: MessageInfo) -> None:
        """A big message of the batch being sent, whose bytes are passed on as they arrive."""
        batch.handled.add(info.ref)
        self.rate.wait(1, info.size)
        if not batch.opened:
            appender.open()
            batch.opened = True
        appender.begin(info)
        batch.streaming = info

    def _finish(self, appender, batch: _Open, item) -> None:
        """The message whose bytes were passed on, complete; anything else (the source failed
        or its answer turned out unreadable) voids the batch being sent: the destination's
        session is given up before the command ends, so none of it lands, and the folder is
        compared again by its retry."""
        info, batch.streaming = batch.streaming, None
        if isinstance(item, BaseException):
            raise item
        whole = isinstance(item, tuple) and item[0] is _PART and item[1].ref == info.ref
        message = item[2] if whole else None
        if message is None or message.error is not None or len(message.content) != info.size:
            raise MailboxError(
                f"{self.src.label}: fetching message {info.ref} from {self.result.source} "
                "broke off after its first bytes went to the destination; the folder is "
                "compared again",
                retryable=True,
                folder=self.result.source,
            )
        outgoing = self._outgoing(item[1], message)
        appender.finish(outgoing)
        batch.outgoing.append(outgoing)

    def _receive(self, appender, sent: deque, budget: _Budget, total: int) -> None:
        outgoing, size = sent.popleft()
        try:
            self._record(outgoing, appender.receive())
        finally:
            budget.give(size)
        now = time.monotonic()
        if now - self._last_report >= PROGRESS_EVERY:
            self._last_report = now
            rate = self.result.copied / (now - self._started)
            self.say(
                f"{self.result.source}: {self.result.copied}/{total} copied "
                f"({human_bytes(self.result.copied_bytes)}, {rate:.0f} msg/s)"
            )

    def _read(
        self,
        todo: Sequence[MessageInfo],
        out: queue.Queue,
        stop: threading.Event,
        budget: _Budget,
    ) -> None:
        batches = list(growing_batches(todo, self.options.batch_messages,
                                       self.options.batch_bytes))  # fmt: skip
        try:
            for number, batch in enumerate(batches):
                size = sum(info.size for info in batch)
                if not budget.take(size, stop):
                    return
                following = batches[number + 1] if number + 1 < len(batches) else None
                listed = {info.ref: info for info in batch}

                def arrived(message: Message, listed=listed) -> None:
                    info = listed.get(message.info.ref)
                    if info is not None:
                        out.put((_PART, info, message))

                def begun(info: MessageInfo, listed=listed):
                    if not self._streams.is_set() or info.ref not in listed:
                        return None
                    out.put((_HEAD, info))
                    return lambda chunk: out.put((_CHUNK, chunk))

                messages = self.src.fetch_then(
                    self.source,
                    [info.ref for info in batch],
                    [info.ref for info in following] if following else None,
                    arrived,
                    begun,
                )
                out.put((batch, {m.info.ref: m for m in messages}, size))
        except BaseException as exc:
            out.put(exc)
        finally:
            self.src.end_fetches()
            out.put(None)

    def _outgoing(self, info: MessageInfo, message: Message | None) -> Message | None:
        """The message as fetched, to append; ``None`` when there is none (an unreadable one is
        reported)."""
        if message is None:
            return None  # expunged on the source since it was listed: nothing to copy
        if message.error is not None:  # reported; the folder's next pass tries it again
            self._report(self.failures, info.ref, info.size, message.error, "unreadable")
            self.result.failed += 1
            return None
        return Message(
            info=MessageInfo(
                ref=info.ref,
                # listed without identities (copy into an empty folder): from the bytes
                identity=info.identity or identity_of(message.content),
                size=len(message.content),
                flags=message.info.flags,
                internaldate=message.info.internaldate or info.internaldate,
            ),
            content=message.content,
        )

    def _record(self, outgoing: list[Message], results) -> None:
        """Record a batch the destination answered (only then: nothing before its answer)."""
        entries = []
        for message, outcome in zip(outgoing, results, strict=True):
            if outcome.error is None:
                entries.append(
                    (
                        message.info.ref,
                        Entry(outcome.ref, message.info.identity, message.info.flags),
                    )
                )
                self.result.copied += 1
                self.result.copied_bytes += message.info.size
                if outcome.note:  # stored, but not exactly: said per message, not retried
                    self._report(self.result.notices, message.info.ref, message.info.size,
                                 outcome.note, "copied, not identical")  # fmt: skip
            else:
                self.result.failed += 1
                self._report(self.failures, message.info.ref, message.info.size, outcome.error)
        self.state.record(self.source, entries)

    def _report(self, into: list[MessageFailure], ref, size: int, reason: str,
                kind: str = "refused") -> None:  # fmt: skip
        """Report a message once per pass: a folder retried after a lost connection meets the
        messages it reported before again (the later word replaces the earlier)."""
        ref = str(ref)
        into[:] = [x for x in into if (x.folder, x.ref) != (self.result.source, ref)]
        into.append(MessageFailure(folder=self.result.source, ref=ref, size=size,
                                   reason=reason, kind=kind))  # fmt: skip
