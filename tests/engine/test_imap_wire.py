"""The engine's own FETCH reader and APPEND writer (``mailmigrate.mailbox.imap_responses``,
``imap_wire``): the same values as imapclient's parser, on crafted responses and on a real
Dovecot; appends byte-exact."""

from __future__ import annotations

import datetime as dt
import imaplib

import pytest
from harness.corpus import make_message
from imapclient.response_parser import parse_fetch_response

from mailmigrate.mailbox import imap_responses, imap_wire

RESPONSES = [
    # (fragments as read, literal markers removed; literals)
    ([b'* 1 FETCH (UID 7 FLAGS (\\Seen $X) INTERNALDATE " 7-Jul-1996 02:44:25 -0730" BODY[] ', b")"],
     [b"hello\r\nworld\r\n"]),
    ([b'* 2 FETCH (UID 8 RFC822.SIZE 44 FLAGS () INTERNALDATE "17-Jul-1996 02:44:25 +0000" '
      b"BODY[HEADER.FIELDS (MESSAGE-ID)] ", b")"], [b"Message-ID: <a@b>\r\n\r\n"]),
    ([b"* 3 FETCH (UID 9 FLAGS (\\Seen) MODSEQ (12345))"], []),
    ([b"* 4 FETCH (FLAGS (\\Seen))"], []),
    ([b'* 5 FETCH (UID 10 BODY[HEADER] NIL X-ODD "a\\"b\\\\c" BODYSTRUCTURE ("text" "plain" '
      b'("charset" "us-ascii") NIL NIL "7bit" 3 1 NIL NIL NIL NIL))'], []),
    ([b"* 6 FETCH ()"], []),
    ([b"* 7 FETCH (UID 11 BODY[] ", b" FLAGS (\\Seen 123))"], [b"x" * 10]),
    ([b"* 8 FETCH (UID 12 BODY[] ", b" BODY[HEADER] ", b")"], [b"abc", b""]),
]  # fmt: skip


def _imapclient(fragments: list[bytes], literals: list[bytes]) -> dict:
    """What imapclient makes of the same response, as imaplib would have handed it over."""
    first = fragments[0].split(b" FETCH ", 1)
    heads = [first[0][2:] + b" " + first[1], *fragments[1:]]
    data: list = [(heads[i] + b"{%d}" % len(lit), lit) for i, lit in enumerate(literals)]
    data.append(heads[-1] if literals else heads[0])
    parsed = list(parse_fetch_response(data, False, uid_is_key=False).values())[0]
    parsed.pop(b"SEQ")
    if b"FLAGS" in parsed:  # the one deliberate difference: a keyword 2024 is no number
        parsed[b"FLAGS"] = tuple(str(f).encode() if isinstance(f, int) else f
                                 for f in parsed[b"FLAGS"])  # fmt: skip
    if b"BODYSTRUCTURE" in parsed:
        parsed[b"BODYSTRUCTURE"] = tuple(parsed[b"BODYSTRUCTURE"])
    return parsed


@pytest.mark.parametrize("fragments, literals", RESPONSES)
def test_fetch_responses_parse_as_imapclient_parses_them(fragments, literals):
    assert imap_responses.parse_fetch(fragments, literals) == _imapclient(fragments, literals)


@pytest.mark.parametrize(
    "fragments, literals",
    [
        ([b"* 1 FETCH (UID 5 FLAGS (2024 0123 \\Seen) RFC822.SIZE 12)"], []),  # flat layout
        ([b"* 1 FETCH (UID 5 FLAGS (2024 0123 \\Seen) BODY[] ", b")"], [b"0123"]),  # again
        ([b"* 1 FETCH (UID 5 FLAGS  (2024 0123 \\Seen) X (1 (2)))"], []),  # nested: general
    ],
)
def test_keywords_of_digits_stay_text_with_their_leading_zeros(fragments, literals):
    parsed = imap_responses.parse_fetch(fragments, literals)
    assert parsed[b"FLAGS"] == (b"2024", b"0123", b"\\Seen") and parsed[b"UID"] == 5
    if literals:
        assert parsed[b"BODY[]"] == b"0123"  # a literal is never a number


def test_a_literal_in_flags_stays_one_flag_for_the_destination_to_refuse():
    injected = b'x) "01-Jan-2024 00:00:00 +0000" {0+}\r\n\r\nA1 DELETE "INBOX"'
    parsed = imap_responses.parse_fetch([b"* 1 FETCH (UID 5 FLAGS (\\Seen ", b"))"], [injected])
    assert parsed[b"FLAGS"] == (b"\\Seen", injected)


@pytest.mark.parametrize(
    "fragments",
    [
        [b"* 1 FETCH (UID 5 FLAGS \\Seen)"],  # not a list
        [b"* 1 FETCH (UID 5 FLAGS ((\\Seen)))"],  # a list in the list
        [b'* 1 FETCH (UID 5 INTERNALDATE "yesterday")'],
        [b"* 1 FETCH (UID 5 FLAGS (\\Seen)"],  # unbalanced
        [b"* 1 FETCH (UID 5 FLAGS)"],  # odd number of items
        [b"* 1 FETCH UID 5"],
    ],
)
def test_malformed_fetch_responses_raise_malformed_response_not_a_lost_connection(fragments):
    with pytest.raises(imap_responses.MalformedResponse) as raised:
        imap_responses.parse_fetch(fragments, [])
    assert not isinstance(raised.value, imaplib.IMAP4.abort)


def test_internaldate_keeps_the_servers_text_and_formats_others():
    when = imap_responses.parse_internaldate(b" 7-Jul-1996 02:44:25 -0730")
    zone = dt.timezone(-dt.timedelta(hours=7, minutes=30))
    assert when == dt.datetime(1996, 7, 7, 2, 44, 25, tzinfo=zone)
    assert imap_responses.format_internaldate(when) == b" 7-Jul-1996 02:44:25 -0730"
    assert (
        imap_responses.format_internaldate(when.astimezone(dt.UTC)) == b"07-Jul-1996 10:14:25 +0000"
    )
    with pytest.raises(ValueError):
        imap_responses.parse_internaldate(b"yesterday")


def test_fetch_and_append_against_dovecot(legacy_imap, new_account):
    user, password = new_account(legacy_imap)
    client = legacy_imap.client(user, password)
    when = dt.datetime(2024, 5, 4, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    messages = [(["\\Seen", "$Work"], when, make_message(n, size=2000 + 500 * n)) for n in range(5)]
    messages.append(([], None, make_message(9, size=200_000)))  # no date: the server's
    name = client._normalise_folder("INBOX")
    typ, data = imap_wire.multiappend(client._imap, name, messages)
    assert typ == "OK" and b"APPENDUID" in data[0]
    typ, _ = imap_wire.multiappend(
        client._imap, name, [(["\\Flagged"], when, b"Subject: x\r\n\r\nx\r\n")]
    )
    assert typ == "OK"

    client.select_folder("INBOX", readonly=True)
    items = [b"UID", b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", b"BODY.PEEK[]"]
    mine = imap_wire.uid_fetch(client._imap, "1:*", items)
    theirs = client.fetch(client.search("ALL"), [i.decode() for i in items])
    expected = {
        uid: {**{k: v for k, v in d.items() if k != b"SEQ"}, b"UID": uid}
        for uid, d in theirs.items()
    }
    assert mine == expected
    bodies = [d[b"BODY[]"] for _, d in sorted(mine.items())]
    assert bodies[:6] == [m[2] for m in messages]  # byte-exact
    assert all(d[b"INTERNALDATE"] == when for uid, d in mine.items() if uid <= 5)
    assert client.noop()  # the session is still in step
