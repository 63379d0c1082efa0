"""SEARCH and UID SEARCH (RFC 3501 6.4.4): every search key, OR/NOT and
parentheses, sequence sets versus UID sets after an EXPUNGE, CHARSET and
BADCHARSET, syntax errors, and a large mailbox searched by flags.

Each test builds its own mailbox in a fresh account.  Responses are
compared byte for byte."""
import datetime
import itertools
import socket
import time

import pytest

from imap import Conn

_n = itertools.count()


@pytest.fixture
def account(stack):
    login = "search%d@example.com" % next(_n)
    stack.imapctl("user", "add", login, stdin="pw\n")
    return login, "pw"


@pytest.fixture
def port(imapd):
    """A private imapd: its log is checked for sanitizer reports."""
    return imapd.port


def connect(port, account):
    c = Conn("127.0.0.1", port)
    c.login(*account)
    return c


def append(c, mailbox, msg, flags=None, date=None):
    tag = c.next_tag()
    extra = ""
    if flags is not None:
        extra += " (%s)" % flags
    if date is not None:
        extra += ' "%s"' % date
    c.send(b"%s APPEND %s%s {%d}\r\n" % (tag.encode(), mailbox.encode(), extra.encode(), len(msg)))
    r = c.read_response()
    assert r == b"+ Ready for literal data\r\n", r
    c.send(msg + b"\r\n")
    untagged, tagged = c.collect(tag)
    assert b" OK " in tagged, tagged
    return untagged, tagged


# ---- the mailbox ----------------------------------------------------------
#
# UID 1 M1   seq 1   \Seen $Work                internal 07-Feb-1994 (UTC)
# UID 2 JUNK         expunged, so sequence numbers and UIDs differ
# UID 3 M2   seq 2   \Flagged \Answered         internal 01-Mar-2022 12:00 UTC
# UID 4 M3   seq 3   \Deleted \Draft \Seen later  internal 02-Mar-2022 23:59:59 UTC
# UID 5 M4   seq 4   Later                      internal 01-Jan-2023 00:30 +0100
#                                               (= 31-Dec-2022 23:30 UTC)
# UID 6 M5   seq 5   (none), \Recent            internal 05-Mar-2022 (UTC)

M1 = (b"From: Alice Example <alice@example.com>\r\n"
      b"To: bob@example.org\r\n"
      b"Subject: hello world\r\n"
      b"Date: Mon, 7 Feb 1994 21:52:25 +0000\r\n"
      b"Message-ID: <1@example.com>\r\n"
      b"\r\n"
      b"Hello Bob,\r\nthis is the body.\r\n")

JUNK = (b"From: junk@example.com\r\n"
        b"Subject: hello world junk\r\n"
        b"\r\n"
        b"junk\r\n")

M2 = (b"From: =?ISO-8859-1?Q?J=F6rg?= <joerg@example.de>\r\n"
      b"To: Alice <alice@example.com>\r\n"
      b"Cc: carol@example.net\r\n"
      b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= aus =?UTF-8?B?TcO8bmNoZW4=?=\r\n"
      b"Date: Tue, 1 Mar 2022 10:00:00 +0000\r\n"
      b"MIME-Version: 1.0\r\n"
      b"Content-Type: text/plain; charset=utf-8\r\n"
      b"Content-Transfer-Encoding: quoted-printable\r\n"
      b"\r\n"
      b"Sch=C3=B6ne Gr=C3=BC=C3=9Fe, =C5=81ukasz!\r\n"
      b"Soft line=\r\nbreak here.\r\n")

M3 = (b"From: carol@example.net\r\n"
      b"To: dave@example.net\r\n"
      b"Cc: Erin <erin@example.net>\r\n"
      b"Subject: fox report\r\n"
      b"X-Priority: 1\r\n"
      b"MIME-Version: 1.0\r\n"
      b"Content-Type: text/plain; charset=us-ascii\r\n"
      b"Content-Transfer-Encoding: base64\r\n"
      b"\r\n"
      b"VGhlIHF1aWNrIGJyb3duIGZveA==\r\n")

M4 = (b"From: Zoe <zoe@example.org>\r\n"
      b"To: alice@example.com\r\n"
      b"Bcc: secret@example.org\r\n"
      b"Subject: weekly news\r\n"
      b"Date: Sat, 31 Dec 2022 10:00:00 +0000\r\n"
      b"MIME-Version: 1.0\r\n"
      b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
      b"\r\n"
      b"--b1\r\n"
      b"Content-Type: text/plain; charset=utf-8\r\n"
      b"\r\n"
      b"plain part text \xd0\x94\xd0\x9e\xd0\x9c\r\n"
      b"--b1\r\n"
      b"Content-Type: application/octet-stream\r\n"
      b"Content-Transfer-Encoding: base64\r\n"
      b"\r\n"
      b"bmVlZGxlIGluIGF0dGFjaG1lbnQ=\r\n"
      b"--b1--\r\n" + b"X" * 300 + b"\r\n")

M5 = (b"From: alice@example.com\r\n"
      b"To: zoe@example.org\r\n"
      b"Subject: Re: weekly news\r\n"
      b"Date: Sat, 5 Mar 2022 08:00:00 +0000\r\n"
      b"\r\n"
      b"ok\r\n")

SIZES = {1: len(M1), 3: len(M2), 4: len(M3), 5: len(M4), 6: len(M5)}


def build(port, account):
    """The mailbox above, selected in a session where only UID 6 is
    \\Recent.  Returns the session."""
    c = connect(port, account)
    append(c, "INBOX", M1, date="07-Feb-1994 21:52:25 +0000")
    append(c, "INBOX", JUNK, date="08-Feb-1994 00:00:00 +0000")
    append(c, "INBOX", M2, date="01-Mar-2022 12:00:00 +0000")
    append(c, "INBOX", M3, date="02-Mar-2022 23:59:59 +0000")
    append(c, "INBOX", M4, date="01-Jan-2023 00:30:00 +0100")
    # another session sees UIDs 1-5 first: they are not \Recent for us
    d = connect(port, account)
    d.ok("SELECT INBOX")
    d.ok("LOGOUT")
    append(c, "INBOX", M5, date="05-Mar-2022 08:00:00 +0000")
    c.ok("SELECT INBOX")
    c.ok("UID STORE 2 +FLAGS.SILENT (\\Deleted)")
    untagged, _ = c.ok("EXPUNGE")
    assert untagged == [b"* 2 EXPUNGE\r\n"]
    c.ok("UID STORE 1 +FLAGS.SILENT (\\Seen $Work)")
    c.ok("UID STORE 3 +FLAGS.SILENT (\\Flagged \\Answered)")
    c.ok("UID STORE 4 +FLAGS.SILENT (\\Deleted \\Draft \\Seen later)")
    c.ok("UID STORE 5 +FLAGS.SILENT (Later)")
    return c


def search(c, keys, uid=False):
    """The one untagged line of a successful SEARCH."""
    tag = c.next_tag()
    untagged, tagged = c.run(("UID SEARCH " if uid else "SEARCH ") + keys, tag=tag)
    assert tagged == b"%s OK %sSEARCH completed\r\n" % (tag.encode(), b"UID " if uid else b""), \
        (keys, tagged)
    assert len(untagged) == 1, (keys, untagged)
    return untagged[0]


def check(c, cases):
    """cases: (keys, sequence numbers, UIDs) - both forms must agree."""
    for keys, seqs, uids in cases:
        assert search(c, keys) == b"* SEARCH" + b"".join(b" %d" % n for n in seqs) + b"\r\n", keys
        assert search(c, keys, uid=True) == b"* SEARCH" + b"".join(b" %d" % n for n in uids) + b"\r\n", keys


@pytest.fixture
def box(port, account):
    return build(port, account)


# ---- keys ----------------------------------------------------------------

def test_search_response_exact(box):
    c = box
    assert c.run("SEARCH ALL", tag="s1") == ([b"* SEARCH 1 2 3 4 5\r\n"], b"s1 OK SEARCH completed\r\n")
    assert c.run("UID SEARCH ALL", tag="s2") == ([b"* SEARCH 1 3 4 5 6\r\n"],
                                                 b"s2 OK UID SEARCH completed\r\n")
    # nothing matches: "* SEARCH" alone
    assert c.run("SEARCH KEYWORD nosuch", tag="s3") == ([b"* SEARCH\r\n"], b"s3 OK SEARCH completed\r\n")
    assert c.run("uid search keyword nosuch", tag="s4") == ([b"* SEARCH\r\n"],
                                                             b"s4 OK UID SEARCH completed\r\n")


def test_search_flags_and_keywords(box):
    check(box, [
        ("ALL", [1, 2, 3, 4, 5], [1, 3, 4, 5, 6]),
        ("SEEN", [1, 3], [1, 4]),
        ("UNSEEN", [2, 4, 5], [3, 5, 6]),
        ("ANSWERED", [2], [3]),
        ("UNANSWERED", [1, 3, 4, 5], [1, 4, 5, 6]),
        ("DELETED", [3], [4]),
        ("UNDELETED", [1, 2, 4, 5], [1, 3, 5, 6]),
        ("DRAFT", [3], [4]),
        ("UNDRAFT", [1, 2, 4, 5], [1, 3, 5, 6]),
        ("FLAGGED", [2], [3]),
        ("UNFLAGGED", [1, 3, 4, 5], [1, 4, 5, 6]),
        ("KEYWORD $Work", [1], [1]),
        ("KEYWORD $WORK", [1], [1]),
        ("keyword LATER", [3, 4], [4, 5]),
        ("UNKEYWORD later", [1, 2, 5], [1, 3, 6]),
        ("KEYWORD nosuch", [], []),
        ("UNKEYWORD nosuch", [1, 2, 3, 4, 5], [1, 3, 4, 5, 6]),
        ("seen flagged", [], []),
        ("UNSEEN UNDELETED UNFLAGGED", [4, 5], [5, 6]),
    ])


def test_search_recent_new_old(box):
    c = box
    check(c, [
        ("RECENT", [5], [6]),
        ("NEW", [5], [6]),
        ("OLD", [1, 2, 3, 4], [1, 3, 4, 5]),
        ("NOT RECENT", [1, 2, 3, 4], [1, 3, 4, 5]),
    ])
    c.ok("UID STORE 6 +FLAGS.SILENT (\\Seen)")
    check(c, [
        ("RECENT", [5], [6]),
        ("NEW", [], []),
        ("NOT NEW", [1, 2, 3, 4, 5], [1, 3, 4, 5, 6]),
    ])


def test_search_dates(box):
    check(box, [
        ("BEFORE 1-Mar-2022", [1], [1]),
        ("BEFORE \"2-Mar-2022\"", [1, 2], [1, 3]),
        ("ON 2-Mar-2022", [3], [4]),          # 23:59:59 UTC is still that day
        ("ON 02-mar-2022", [3], [4]),
        ("SINCE 2-Mar-2022", [3, 4, 5], [4, 5, 6]),
        ("SINCE 1-Jan-2023", [], []),
        # 01-Jan-2023 00:30 +0100 is 31-Dec-2022 in UTC
        ("ON 31-Dec-2022", [4], [5]),
        ("ON 1-Jan-2023", [], []),
        ("ON 7-Feb-1994", [1], [1]),
        ("SINCE 1-Mar-2022 BEFORE 3-Mar-2022", [2, 3], [3, 4]),
        ("NOT BEFORE 1-Mar-2022", [2, 3, 4, 5], [3, 4, 5, 6]),
        # Date: header; M3 has none, so no SENT* key matches it
        ("SENTBEFORE 1-Jan-2000", [1], [1]),
        ("SENTSINCE 1-Jan-2000", [2, 4, 5], [3, 5, 6]),
        ("SENTON 1-Mar-2022", [2], [3]),
        ("SENTON 31-Dec-2022", [4], [5]),
        ("SENTON \"5-Mar-2022\"", [5], [6]),
        ("NOT SENTON 1-Mar-2022", [1, 3, 4, 5], [1, 4, 5, 6]),
        ("NOT SENTSINCE 1-Jan-1900", [3], [4]),
        ("OR SENTBEFORE 1-Jan-2000 SENTSINCE 1-Dec-2022", [1, 4], [1, 5]),
    ])


def test_search_sizes(box):
    s = SIZES
    smallest = min(s.values())
    assert smallest == s[6]
    check(box, [
        ("LARGER %d" % (smallest - 1), [1, 2, 3, 4, 5], [1, 3, 4, 5, 6]),
        ("LARGER %d" % smallest, [1, 2, 3, 4], [1, 3, 4, 5]),
        ("SMALLER %d" % (s[1] + 1), [1, 5], [1, 6]),
        ("SMALLER %d" % s[1], [5], [6]),
        ("LARGER %d" % (s[5] - 1), [4], [5]),
        ("LARGER %d" % s[5], [], []),
        ("LARGER 0 SMALLER 4294967295", [1, 2, 3, 4, 5], [1, 3, 4, 5, 6]),
        ("SMALLER 1", [], []),
    ])


def test_search_headers(box):
    check(box, [
        ("FROM alice", [1, 5], [1, 6]),
        ("FROM ALICE", [1, 5], [1, 6]),
        ("FROM \"Alice Example\"", [1], [1]),
        ("FROM j\xf6rg", [2], [3]),                    # ISO-8859-1 encoded-word, decoded
        ("FROM \"J\xd6RG\"", [2], [3]),               # and case-folded beyond ASCII
        ("TO alice", [2, 4], [3, 5]),
        ("TO example.net", [3], [4]),
        ("CC carol", [2], [3]),
        ("CC erin", [3], [4]),
        ("BCC secret", [4], [5]),
        ("BCC \"\"", [4], [5]),                       # empty: has the field
        ("SUBJECT hello", [1], [1]),
        ("SUBJECT \"weekly NEWS\"", [4, 5], [5, 6]),
        ("SUBJECT gr\xfc\xdfe", [2], [3]),             # RFC 2047 Q, UTF-8
        ("SUBJECT \"GR\xdc\xdfE AUS M\xdcNCHEN\"", [2], [3]),  # and B
        ("SUBJECT =?UTF-8?Q?", [], []),                # not the raw text
        ("SUBJECT \"\"", [1, 2, 3, 4, 5], [1, 3, 4, 5, 6]),
        ("HEADER X-Priority 1", [3], [4]),
        ("HEADER x-priority \"\"", [3], [4]),
        ("HEADER X-Missing \"\"", [], []),
        ("HEADER Date \"\"", [1, 2, 4, 5], [1, 3, 5, 6]),
        ("HEADER Message-ID <1@example.com>", [1], [1]),
        ("HEADER MIME-Version 1.0", [2, 3, 4], [3, 4, 5]),
    ])


def test_search_body_and_text(box):
    check(box, [
        ("BODY bob", [1], [1]),
        ("BODY \"sch\xf6ne gr\xfc\xdfe\"", [2], [3]),   # quoted-printable decoded
        ("BODY \"soft linebreak\"", [2], [3]),         # soft line break undone
        ("BODY \u0141UKASZ", [2], [3]),                # Latin Extended-A folding
        ("BODY =C3", [], []),
        ("BODY QUICK", [3], [4]),                      # base64 decoded
        ("BODY VGhl", [], []),
        ("BODY \"plain part\"", [4], [5]),             # text part of a multipart
        ("BODY needle", [], []),                       # attachment: not text
        ("BODY hello", [1], [1]),
        ("BODY world", [], []),                        # only in the header
        ("BODY \"\"", [1, 2, 3, 4, 5], [1, 3, 4, 5, 6]),
        ("TEXT world", [1], [1]),
        ("TEXT bob@example.org", [1], [1]),
        ("TEXT x-priority", [3], [4]),
        ("TEXT m\xfcnchen", [2], [3]),                # decoded subject only
        ("TEXT fox", [3], [4]),
        ("TEXT \"weekly news\"", [4, 5], [5, 6]),
        ("TEXT ok", [5], [6]),
    ])


def test_search_body_utf8_literal(box):
    c = box
    # an 8-bit search string in a literal, as clients send it
    word = "\u0142ukasz".upper().encode()
    c.send(b"l1 SEARCH CHARSET UTF-8 BODY {%d}\r\n" % len(word))
    assert c.read_response().startswith(b"+ ")
    c.send(word + b"\r\n")
    assert c.collect("l1") == ([b"* SEARCH 2\r\n"], b"l1 OK SEARCH completed\r\n")
    # a non-synchronizing literal (LITERAL+), then UTF-8 in a quoted string
    subj = "gr\u00fc\u00dfe".encode()
    c.send(b"l2 UID SEARCH CHARSET utf-8 SUBJECT {%d+}\r\n%s\r\n" % (len(subj), subj))
    assert c.collect("l2") == ([b"* SEARCH 3\r\n"], b"l2 OK UID SEARCH completed\r\n")
    c.send(b'l3 SEARCH SUBJECT "' + "M\u00dcNCHEN".encode() + b'"\r\n')
    assert c.collect("l3") == ([b"* SEARCH 2\r\n"], b"l3 OK SEARCH completed\r\n")


def test_search_sets_after_expunge(box):
    c = box
    # the view: seq 1 2 3 4 5 = UID 1 3 4 5 6
    check(c, [
        ("1", [1], [1]),
        ("2", [2], [3]),
        ("2:3", [2, 3], [3, 4]),
        ("*", [5], [6]),
        ("4:*", [4, 5], [5, 6]),
        ("*:4", [4, 5], [5, 6]),
        ("1,3,5", [1, 3, 5], [1, 4, 6]),
        ("UID 2", [], []),                     # expunged
        ("UID 2:4", [2, 3], [3, 4]),
        ("UID 4:*", [3, 4, 5], [4, 5, 6]),
        ("UID *", [5], [6]),
    ])
    check(c, [
        ("UID 7:100", [], []),                 # no "*": nothing past the last UID
        ("UID 7:*", [5], [6]),                 # n:* with n past the last is last:n (RFC 9051)
        ("UID 1:4294967295", [1, 2, 3, 4, 5], [1, 3, 4, 5, 6]),
        ("UID 1:* 2:3", [2, 3], [3, 4]),
        ("NOT 2:4", [1, 5], [1, 6]),
        ("OR 1 UID 6", [1, 5], [1, 6]),
        ("2:5 UNSEEN", [2, 4, 5], [3, 5, 6]),
        ("UID 3,5 3:5", [4], [5]),              # UIDs 3 5 and UIDs 4 5 6
    ])
    # sequence numbers past the view are an error (RFC 3501 9)
    _, tagged = c.run("SEARCH 6", tag="x1")
    assert tagged == b"x1 BAD Invalid message sequence number\r\n"
    _, tagged = c.run("UID SEARCH 1:6", tag="x2")
    assert tagged == b"x2 BAD Invalid message sequence number\r\n"


def test_search_logic(box):
    check(box, [
        ("OR SEEN FLAGGED", [1, 2, 3], [1, 3, 4]),
        ("OR OR SEEN FLAGGED RECENT", [1, 2, 3, 5], [1, 3, 4, 6]),
        ("OR OR OR 1 2 3 4", [1, 2, 3, 4], [1, 3, 4, 5]),
        ("NOT SEEN", [2, 4, 5], [3, 5, 6]),
        ("NOT NOT SEEN", [1, 3], [1, 4]),
        ("(SEEN UNDELETED)", [1], [1]),
        ("NOT (SEEN UNDELETED)", [2, 3, 4, 5], [3, 4, 5, 6]),
        ("OR (SEEN DELETED) (FLAGGED ANSWERED)", [2, 3], [3, 4]),
        ("((((SEEN))))", [1, 3], [1, 4]),
        ("(OR SEEN FLAGGED) (OR DELETED ANSWERED)", [2, 3], [3, 4]),
        # text keys mixed with keys the database decides
        ("OR BODY fox FLAGGED", [2, 3], [3, 4]),
        ("NOT OR BODY fox FLAGGED", [1, 4, 5], [1, 5, 6]),
        ("UNSEEN BODY text", [4], [5]),
        ("NOT FROM alice", [2, 3, 4], [3, 4, 5]),
        ("NOT (FROM alice UNSEEN)", [1, 2, 3, 4], [1, 3, 4, 5]),
        ("OR SUBJECT hello NOT OR SUBJECT news LARGER 0", [1], [1]),
        ("2:5 OR TO alice CC erin", [2, 3, 4], [3, 4, 5]),
        ("OR SENTON 1-Mar-2022 KEYWORD later", [2, 3, 4], [3, 4, 5]),
        ("NOT OR SENTON 1-Mar-2022 TEXT fox", [1, 4, 5], [1, 5, 6]),
    ])


def test_search_charset(box):
    c = box
    assert c.run("SEARCH CHARSET UTF-8 SEEN", tag="c1") == ([b"* SEARCH 1 3\r\n"],
                                                            b"c1 OK SEARCH completed\r\n")
    assert c.run("SEARCH CHARSET us-ascii FROM alice", tag="c2") == ([b"* SEARCH 1 5\r\n"],
                                                                     b"c2 OK SEARCH completed\r\n")
    assert c.run('UID SEARCH CHARSET "UTF-8" ALL', tag="c3") == ([b"* SEARCH 1 3 4 5 6\r\n"],
                                                                b"c3 OK UID SEARCH completed\r\n")
    # RFC 3501 6.4.4 / 7.1: NO with BADCHARSET naming what we support
    for tag, cmd in (("c4", "SEARCH CHARSET KOI8-R FROM x"), ("c5", "UID SEARCH CHARSET ISO-8859-1 ALL"),
                     ("c6", 'SEARCH CHARSET "" ALL')):
        assert c.run(cmd, tag=tag) == ([], b"%s NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset\r\n"
                                       % tag.encode())
    assert c.run("SEARCH CHARSET", tag="c7") == ([], b"c7 BAD CHARSET needs a charset name\r\n")
    assert c.run("SEARCH CHARSET UTF-8", tag="c8") == ([], b"c8 BAD Missing search keys\r\n")
    assert c.run("SEARCH SEEN CHARSET UTF-8", tag="c9") == ([], b"c9 BAD Unknown search key\r\n")


def test_search_errors(port, account, box):
    cases = [
        ("SEARCH", "Missing search keys"),
        ("SEARCH BOGUS", "Unknown search key"),
        ("SEARCH \"SEEN\"", "Invalid search key"),
        ("SEARCH FROM", "Missing search string"),
        ("SEARCH HEADER X-Priority", "Missing search string"),
        ("SEARCH HEADER \"bad:name\" x", "HEADER needs a field name"),
        ("SEARCH BEFORE", "Invalid date, want e.g. 1-Feb-1994"),
        ("SEARCH BEFORE 1-Foo-2020", "Invalid date, want e.g. 1-Feb-1994"),
        ("SEARCH SINCE 31-Feb-2020", "Invalid date, want e.g. 1-Feb-1994"),
        ("SEARCH ON 1-Feb-94", "Invalid date, want e.g. 1-Feb-1994"),
        ("SEARCH ON \"1-Feb-1994 \"", "Invalid date, want e.g. 1-Feb-1994"),
        ("SEARCH LARGER x", "LARGER and SMALLER need a number"),
        ("SEARCH SMALLER 99999999999", "LARGER and SMALLER need a number"),
        ("SEARCH KEYWORD", "KEYWORD needs a keyword"),
        ("SEARCH OR SEEN", "OR needs two search keys"),
        ("SEARCH (OR SEEN) FLAGGED", "OR needs two search keys"),
        ("SEARCH NOT", "NOT needs a search key"),
        ("SEARCH ()", "Empty search key list"),
        ("SEARCH SEEN ()", "Empty search key list"),
        ("SEARCH UID", "UID needs a UID set"),
        ("SEARCH UID x", "Invalid sequence set"),
        ("SEARCH 0", "Invalid sequence set"),
        ("SEARCH 1:x", "Invalid sequence set"),
        ("UID SEARCH $", "Unknown search key"),
    ]
    for i, (cmd, why) in enumerate(cases):
        if i % 10 == 0:
            # a fresh session every few: 20 BADs close one (max_bad_commands)
            c = connect(port, account)
            c.ok("SELECT INBOX")
        tag = "e%d" % i
        assert c.run(cmd, tag=tag) == ([], b"%s BAD %s\r\n" % (tag.encode(), why.encode())), cmd
    assert c.run("SEARCH SEEN", tag="ok") == ([b"* SEARCH 1 3\r\n"], b"ok OK SEARCH completed\r\n")
    d = Conn("127.0.0.1", port)
    assert d.run("SEARCH ALL", tag="n")[1] == b"n BAD Log in first\r\n"


def test_search_not_selected(port, account):
    c = connect(port, account)
    assert c.run("SEARCH ALL", tag="a") == ([], b"a BAD Command not valid in this state\r\n")
    assert c.run("UID SEARCH ALL", tag="b") == ([], b"b BAD Command not valid in this state\r\n")


def test_search_empty_mailbox(port, account):
    c = connect(port, account)
    c.ok("SELECT INBOX")
    assert c.run("SEARCH ALL", tag="a") == ([b"* SEARCH\r\n"], b"a OK SEARCH completed\r\n")
    assert c.run("UID SEARCH UID 1:*", tag="b") == ([b"* SEARCH\r\n"], b"b OK UID SEARCH completed\r\n")
    assert c.run("SEARCH TEXT x", tag="c") == ([b"* SEARCH\r\n"], b"c OK SEARCH completed\r\n")
    # "*" is no message in an empty mailbox (RFC 3501 9)
    assert c.run("SEARCH 1:*", tag="d")[1] == b"d BAD Invalid message sequence number\r\n"


def test_search_nesting_and_key_limits(account, imapd_factory):
    inst = imapd_factory("max_nesting = 8\nmax_args = 200")
    c = connect(inst.port, account)
    append(c, "INBOX", M1)
    c.ok("SELECT INBOX")
    # OR chains flatten: 60 ORs are one level, not 60
    keys = "OR " * 60 + " ".join(["UID 9"] * 60 + ["ALL"])
    assert c.run("SEARCH " + keys, tag="f") == ([b"* SEARCH 1\r\n"], b"f OK SEARCH completed\r\n")
    # alternating operators nest
    keys = "NOT OR SEEN " * 9 + "DRAFT" + " UNFLAGGED" * 9
    assert c.run("SEARCH " + keys, tag="d") == ([], b"d BAD Search keys nested too deeply\r\n")
    # NOT (SEEN or NOT (SEEN or NOT (SEEN or DRAFT))) = NOT NOT NOT DRAFT here
    keys = "NOT OR SEEN " * 3 + "DRAFT" + " UNFLAGGED" * 3
    assert c.run("SEARCH " + keys, tag="d2") == ([b"* SEARCH 1\r\n"], b"d2 OK SEARCH completed\r\n")
    # keys are bounded by max_args too (NEW is RECENT UNSEEN: three keys)
    assert c.run("SEARCH" + " NEW" * 70, tag="k") == ([], b"k BAD Too many search keys\r\n")
    assert c.run("SEARCH" + " NEW" * 60, tag="k2") == ([b"* SEARCH 1\r\n"], b"k2 OK SEARCH completed\r\n")


def test_search_does_not_send_expunge(port, account):
    a = build(port, account)
    b = connect(port, account)
    b.ok("SELECT INBOX")
    # another session expunges UID 4 (seq 3)
    a.ok("UID STORE 4 +FLAGS.SILENT (\\Deleted)")
    a.ok("UID EXPUNGE 4")
    # b still numbers the view it was told about, without EXPUNGE responses
    assert b.run("SEARCH ALL", tag="s") == ([b"* SEARCH 1 2 4 5\r\n"], b"s OK SEARCH completed\r\n")
    assert b.run("SEARCH 3:5", tag="t") == ([b"* SEARCH 4 5\r\n"], b"t OK SEARCH completed\r\n")
    untagged, _ = b.run("NOOP")
    assert b"* 3 EXPUNGE\r\n" in untagged
    assert b.run("SEARCH ALL", tag="u") == ([b"* SEARCH 1 2 3 4\r\n"], b"u OK SEARCH completed\r\n")


def test_search_new_mail_not_in_view(port, account):
    """A message that arrived after the view was given is not a result
    until the client has been told about it."""
    a = connect(port, account)
    append(a, "INBOX", M1)
    a.ok("SELECT INBOX")
    b = connect(port, account)
    append(b, "INBOX", M5)
    # The result comes first; the new message may be announced after it,
    # before the tagged OK (the NATS notification marked the view stale).
    told = []
    u, t = a.run("UID SEARCH ALL", tag="s")
    assert u[0] == b"* SEARCH 1\r\n" and t == b"s OK UID SEARCH completed\r\n"
    told += u[1:]
    u, t = a.run("SEARCH FROM alice", tag="s2")
    want = b"* SEARCH 1 2\r\n" if b"* 2 EXISTS\r\n" in told else b"* SEARCH 1\r\n"
    assert u[0] == want and t == b"s2 OK SEARCH completed\r\n"
    told += u[1:]
    untagged, _ = a.run("NOOP")
    told += untagged
    assert b"* 2 EXISTS\r\n" in told
    assert a.run("UID SEARCH FROM alice", tag="s3") == ([b"* SEARCH 1 2\r\n"],
                                                        b"s3 OK UID SEARCH completed\r\n")


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_search_small_batches(account, imapd_factory, batch):
    """Batch boundaries do not lose or repeat messages, with and without
    message bytes."""
    inst = imapd_factory("fetch_batch = %d" % batch)
    c = build(inst.port, account)
    check(c, [
        ("ALL", [1, 2, 3, 4, 5], [1, 3, 4, 5, 6]),
        ("UNSEEN", [2, 4, 5], [3, 5, 6]),
        ("TEXT e", [1, 2, 3, 4, 5], [1, 3, 4, 5, 6]),
        ("OR BODY fox FROM alice", [1, 3, 5], [1, 4, 6]),
        ("2:4 NOT BODY bob", [2, 3, 4], [3, 4, 5]),
    ])


def bulk(stack, c, login, n, body_size):
    """INBOX with n messages: UID 1 appended (M1 padded to body_size), UIDs
    2..n copies of its row made in SQL, sharing its blob.  Every 1000th is
    \\Seen \\Flagged, the rest \\Seen; every 5000th has keyword Big; UID g
    is g days younger than UID 1."""
    big = M1 + b"x" * body_size + b"\r\n"
    append(c, "INBOX", big, date="07-Feb-1994 21:52:25 +0000")
    stack.psql(
        "WITH a AS (SELECT id FROM account WHERE login = '%s'), "
        "mb AS (SELECT m.id, m.account_id FROM mailbox m JOIN a ON m.account_id = a.id "
        "       WHERE m.name = 'INBOX'), "
        "src AS (SELECT msg.* FROM message msg JOIN mb ON msg.account_id = mb.account_id "
        "        AND msg.mailbox_id = mb.id WHERE msg.uid = 1), "
        "ins AS (INSERT INTO message (account_id, mailbox_id, uid, modseq, flags, keywords, "
        "        internaldate, size, blob_hash, tenant_id) "
        "        SELECT src.account_id, src.mailbox_id, g, src.modseq, "
        "               CASE WHEN g %% 1000 = 0 THEN 5 ELSE 1 END, "
        "               CASE WHEN g %% 5000 = 0 THEN ARRAY['Big'] ELSE '{}'::text[] END, "
        "               src.internaldate + (g || ' days')::interval, src.size, src.blob_hash, "
        "               src.tenant_id FROM src, generate_series(2, %d) g RETURNING 1) "
        "UPDATE mailbox SET uidnext = %d, highestmodseq = highestmodseq + 1 "
        "  FROM mb WHERE mailbox.account_id = mb.account_id AND mailbox.id = mb.id "
        "   AND (SELECT count(*) FROM ins) > 0" % (login, n, n + 1))
    untagged, _ = c.ok("SELECT INBOX")
    assert b"* %d EXISTS\r\n" % n in untagged


def test_search_large_mailbox(stack, account, imapd_factory):
    """100,000 messages sharing one 2 MB blob.  Searches by flags,
    keywords, sizes, dates and sets come back quickly because they never
    read message bytes (reading them would be 200 GB).  The results are far
    larger than the output queue may hold (max_output): they reach a client
    that reads slowly, and a client that leaves in the middle does not
    disturb the server."""
    inst = imapd_factory("max_output = 65536")
    n = 100000
    c = connect(inst.port, account)
    bulk(stack, c, account[0], n, 2 << 20)
    flagged = [g for g in range(2, n + 1) if g % 1000 == 0]
    everything = b"* SEARCH" + b"".join(b" %d" % g for g in range(1, n + 1)) + b"\r\n"
    assert len(everything) > 65536 * 8
    t0 = time.monotonic()
    assert search(c, "FLAGGED") == b"* SEARCH" + b"".join(b" %d" % g for g in flagged) + b"\r\n"
    assert search(c, "UNSEEN") == b"* SEARCH 1\r\n"
    assert search(c, "NOT SEEN") == b"* SEARCH 1\r\n"
    assert search(c, "KEYWORD big") == \
        b"* SEARCH" + b"".join(b" %d" % g for g in range(5000, n + 1, 5000)) + b"\r\n"
    assert search(c, "UID 99990:* UNFLAGGED NOT SEEN") == b"* SEARCH\r\n"
    base = datetime.datetime(1994, 2, 7, 21, 52, 25)
    late = [g for g in flagged if base + datetime.timedelta(days=g) >= datetime.datetime(2200, 1, 1)]
    assert late and late != flagged
    assert search(c, "LARGER 1000 SINCE 1-Jan-2200 FLAGGED", uid=True) == \
        b"* SEARCH" + b"".join(b" %d" % g for g in late) + b"\r\n"
    assert search(c, "ALL") == everything
    assert search(c, "NOT FLAGGED") == \
        b"* SEARCH" + b"".join(b" %d" % g for g in range(1, n + 1) if g % 1000) + b"\r\n"
    # the blob is joined for its Date:, never for its bytes
    assert search(c, "OR FLAGGED SENTBEFORE 1-Jan-2000", uid=True) == everything
    # a text key reads bytes only for the candidates the other keys leave
    assert search(c, "FLAGGED UID 1:3000 BODY hello") == b"* SEARCH 1000 2000 3000\r\n"
    elapsed = time.monotonic() - t0
    assert elapsed < 60, elapsed

    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", inst.port))
    s = Conn.__new__(Conn)
    s.sock, s.buf, s.timeout, s.tagn, s.port = slow, bytearray(), 60.0, 0, inst.port
    s.read_response()
    s.login(*account)
    s.ok("EXAMINE INBOX")
    s.send("r1 SEARCH ALL\r\n")
    time.sleep(1.0)
    assert s.collect("r1") == ([everything], b"r1 OK SEARCH completed\r\n")
    # leave while the server searches or waits for us to read
    s.send("r2 UID SEARCH ALL\r\n")
    time.sleep(0.2)
    s.close()
    c.send("r3 SEARCH TEXT nothing-like-this\r\n")
    time.sleep(0.2)
    c.close()
    d = connect(inst.port, account)
    d.ok("EXAMINE INBOX")
    assert search(d, "FLAGGED") == b"* SEARCH" + b"".join(b" %d" % g for g in flagged) + b"\r\n"
