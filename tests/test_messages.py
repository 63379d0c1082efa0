"""Selected-state commands: SELECT/EXAMINE, APPEND, FETCH, STORE,
EXPUNGE, UID EXPUNGE, CLOSE, UNSELECT, CHECK, NOOP updates from other
sessions.  Each test uses a fresh account so mailboxes start empty."""
import itertools
import re

import pytest

from imap import Conn

_n = itertools.count()

MSG1 = (b"From: Alice Example <alice@example.com>\r\n"
        b"To: bob@example.org\r\n"
        b"Subject: hello\r\n"
        b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
        b"Message-ID: <1@example.com>\r\n"
        b"\r\n"
        b"Hello Bob,\r\nthis is the body.\r\n")


@pytest.fixture
def account(stack):
    login = "m%d@example.com" % next(_n)
    stack.imapctl("user", "add", login, stdin="pw\n")
    return login, "pw"


def connect(stack, account, node=0):
    c = Conn("127.0.0.1", stack.node_port(node))
    c.login(*account)
    return c


def append(c, mailbox, msg, flags=None, date=None, tag=None):
    tag = tag or c.next_tag()
    extra = ""
    if flags is not None:
        extra += " (%s)" % flags
    if date is not None:
        extra += ' "%s"' % date
    c.send(b"%s APPEND %s%s {%d}\r\n" % (tag.encode(), mailbox.encode(), extra.encode(), len(msg)))
    r = c.read_response()
    assert r == b"+ Ready for literal data\r\n", r
    c.send(msg + b"\r\n")
    return c.collect(tag)


def test_select_empty_inbox_exact(stack, account):
    c = connect(stack, account)
    untagged, tagged = c.run("SELECT INBOX", tag="s")
    assert untagged[0] == b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
    assert untagged[1] == (b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)]"
                           b" Flags permitted\r\n")
    assert untagged[2] == b"* 0 EXISTS\r\n"
    assert untagged[3] == b"* 0 RECENT\r\n"
    assert re.match(rb"\* OK \[UIDVALIDITY \d+\] UIDs valid\r\n", untagged[4])
    assert untagged[5] == b"* OK [UIDNEXT 1] Predicted next UID\r\n"
    assert len(untagged) == 6
    assert tagged == b"s OK [READ-WRITE] SELECT completed\r\n"
    # "*" in an empty mailbox is no message (RFC 3501 9)
    assert c.run("FETCH 1:* FLAGS", tag="f")[1].startswith(b"f BAD ")
    assert c.run("UID FETCH 1:* FLAGS", tag="u") == ([], b"u OK UID Fetch completed\r\n")
    assert c.run("SELECT nosuch", tag="n")[1] == b"n NO [NONEXISTENT] No such mailbox\r\n"
    # a failed SELECT leaves the session unselected
    assert c.run("FETCH 1 FLAGS", tag="x")[1] == b"x BAD Command not valid in this state\r\n"


def test_append_appenduid_and_fetch(stack, account):
    c = connect(stack, account)
    untagged, tagged = append(c, "INBOX", MSG1, flags="\\Seen $Important", date="07-Feb-1994 21:52:25 -0800")
    m = re.match(rb"a\d+ OK \[APPENDUID (\d+) 1\] Append completed\r\n", tagged)
    assert m, tagged
    uidvalidity = int(m.group(1))
    untagged, _ = c.run("SELECT INBOX")
    assert b"* 1 EXISTS\r\n" in untagged
    assert b"* 1 RECENT\r\n" in untagged
    assert b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Important)\r\n" in untagged
    assert b"* OK [UIDVALIDITY %d] UIDs valid\r\n" % uidvalidity in untagged
    assert b"* OK [UIDNEXT 2] Predicted next UID\r\n" in untagged
    untagged, tagged = c.run("FETCH 1 (UID FLAGS INTERNALDATE RFC822.SIZE)", tag="f")
    assert untagged == [b'* 1 FETCH (UID 1 FLAGS (\\Seen $Important \\Recent) '
                        b'INTERNALDATE "08-Feb-1994 05:52:25 +0000" RFC822.SIZE %d)\r\n' % len(MSG1)]
    assert tagged == b"f OK Fetch completed\r\n"
    untagged, _ = c.run("FETCH 1 BODY.PEEK[]")
    assert untagged == [b"* 1 FETCH (BODY[] {%d}\r\n%s)\r\n" % (len(MSG1), MSG1)]
    untagged, _ = c.run("UID FETCH 1 (BODY.PEEK[TEXT]<6.3>)")
    assert untagged == [b"* 1 FETCH (UID 1 BODY[TEXT]<6> {3}\r\nBob)\r\n"]
    untagged, _ = c.run("FETCH 1 ENVELOPE")
    assert untagged == [b'* 1 FETCH (ENVELOPE ("Mon, 7 Feb 1994 21:52:25 -0800" "hello" '
                        b'(("Alice Example" NIL "alice" "example.com")) '
                        b'(("Alice Example" NIL "alice" "example.com")) '
                        b'(("Alice Example" NIL "alice" "example.com")) '
                        b'((NIL NIL "bob" "example.org")) NIL NIL NIL "<1@example.com>"))\r\n']


def test_append_errors(stack, account):
    c = connect(stack, account)
    _, tagged = append(c, "nosuchbox", MSG1, tag="t")
    assert tagged == b"t NO [TRYCREATE] No such mailbox\r\n"
    _, tagged = append(c, "INBOX", MSG1, flags="\\Recent", tag="r")
    assert tagged.startswith(b"r BAD ")
    _, tagged = append(c, "INBOX", MSG1, date="31-Foo-2020 00:00:00 +0000", tag="d")
    assert tagged == b"d BAD Invalid date-time\r\n"
    # nothing was stored by the failures
    untagged, _ = c.run("SELECT INBOX")
    assert b"* 0 EXISTS\r\n" in untagged


def test_oversized_append_refused_before_data(stack, account, imapd_factory):
    inst = imapd_factory("max_append_size = 2048")
    c = Conn("127.0.0.1", inst.port)
    c.login(*account)
    c.send(b"big APPEND INBOX {4096}\r\n")
    assert c.read_response() == b"big NO [TOOBIG] Literal too large\r\n"
    assert c.run("NOOP", tag="n")[1] == b"n OK NOOP completed\r\n"
    assert stack.psql("SELECT count(*) FROM message m JOIN account a ON a.id = m.account_id "
                      "WHERE a.login = '%s'" % account[0]) == "0"


def test_store_variants_and_silent(stack, account):
    c = connect(stack, account)
    for _ in range(3):
        append(c, "INBOX", MSG1)
    c.ok("SELECT INBOX")
    untagged, tagged = c.run("STORE 1:2 +FLAGS (\\Flagged work)", tag="s1")
    assert untagged == [b"* 1 FETCH (FLAGS (\\Flagged work \\Recent))\r\n",
                        b"* 2 FETCH (FLAGS (\\Flagged work \\Recent))\r\n"]
    assert tagged == b"s1 OK Store completed\r\n"
    untagged, _ = c.run("STORE 2 -FLAGS (work)")
    assert untagged == [b"* 2 FETCH (FLAGS (\\Flagged \\Recent))\r\n"]
    untagged, _ = c.run("UID STORE 3 FLAGS.SILENT (\\Seen \\Answered)")
    assert untagged == []
    untagged, _ = c.run("FETCH 1:3 FLAGS")
    assert untagged == [b"* 1 FETCH (FLAGS (\\Flagged work \\Recent))\r\n",
                        b"* 2 FETCH (FLAGS (\\Flagged \\Recent))\r\n",
                        b"* 3 FETCH (FLAGS (\\Answered \\Seen \\Recent))\r\n"]
    # the new keyword is announced to the next SELECT
    untagged, _ = c.run("EXAMINE INBOX")
    assert b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft work)\r\n" in untagged
    assert b"* OK [PERMANENTFLAGS ()] No permanent flags permitted\r\n" in untagged
    _, tagged = c.run("STORE 1 +FLAGS (\\Seen)", tag="ro")
    assert tagged == b"ro NO [READ-ONLY] Mailbox is read-only\r\n"
    assert c.run("STORE 9 +FLAGS (\\Seen)", tag="bad")[1].startswith(b"bad BAD ")
    assert c.run("STORE 1 +FLAGS (\\Bogus)", tag="b2")[1].startswith(b"b2 BAD ")


def test_fetch_sets_seen_unless_peek_or_examine(stack, account):
    c = connect(stack, account)
    append(c, "INBOX", MSG1)
    append(c, "INBOX", MSG1)
    c.ok("EXAMINE INBOX")
    untagged, _ = c.run("FETCH 1 BODY[TEXT]")
    body = MSG1.split(b"\r\n\r\n", 1)[1]
    assert untagged == [b"* 1 FETCH (BODY[TEXT] {%d}\r\n%s)\r\n" % (len(body), body)]
    c.ok("SELECT INBOX")
    untagged, _ = c.run("FETCH 1 (FLAGS)")
    assert untagged == [b"* 1 FETCH (FLAGS (\\Recent))\r\n"]
    untagged, _ = c.run("FETCH 1 BODY[HEADER.FIELDS (Subject)]")
    assert untagged[0].startswith(b"* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {18}\r\nSubject: hello\r\n\r\n")
    assert b"FLAGS (\\Seen" in untagged[0]
    untagged, _ = c.run("FETCH 2 BODY.PEEK[HEADER.FIELDS (Subject)]")
    assert b"FLAGS" not in untagged[0]
    untagged, _ = c.run("FETCH 1:2 FLAGS")
    assert b"\\Seen" in untagged[0] and b"\\Seen" not in untagged[1]


def test_expunge_and_uid_expunge(stack, account):
    c = connect(stack, account)
    for _ in range(5):
        append(c, "INBOX", MSG1)
    c.ok("SELECT INBOX")
    c.ok("STORE 2,4 +FLAGS.SILENT (\\Deleted)")
    untagged, tagged = c.run("EXPUNGE", tag="e")
    assert untagged == [b"* 2 EXPUNGE\r\n", b"* 3 EXPUNGE\r\n"]
    assert tagged == b"e OK Expunge completed\r\n"
    # UIDs 1 3 5 left; mark 1 and 5, expunge only UID 5
    c.ok("STORE 1:3 +FLAGS.SILENT (\\Deleted)")
    untagged, tagged = c.run("UID EXPUNGE 5", tag="u")
    assert untagged == [b"* 3 EXPUNGE\r\n"]
    assert tagged == b"u OK UID Expunge completed\r\n"
    untagged, _ = c.run("UID FETCH 1:* (FLAGS)")
    assert [re.search(rb"UID (\d+)", x).group(1) for x in untagged] == [b"1", b"3"]
    # tombstones with their modseq are in the database (DESIGN.md invariant 3)
    rows = stack.psql("SELECT e.uid FROM expunged e JOIN account a ON a.id = e.account_id "
                      "WHERE a.login = '%s' ORDER BY uid" % account[0])
    assert rows.split() == ["2", "4", "5"]
    # a new SELECT sees the holes
    untagged, _ = c.run("SELECT INBOX")
    assert b"* 2 EXISTS\r\n" in untagged
    untagged, _ = c.run("FETCH 1:* UID")
    assert untagged == [b"* 1 FETCH (UID 1)\r\n", b"* 2 FETCH (UID 3)\r\n"]


def test_close_expunges_silently_unselect_does_not(stack, account):
    c = connect(stack, account)
    for _ in range(3):
        append(c, "INBOX", MSG1)
    c.ok("SELECT INBOX")
    c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert c.run("UNSELECT", tag="u") == ([], b"u OK UNSELECT completed\r\n")
    c.ok("SELECT INBOX")
    assert c.run("CLOSE", tag="c") == ([], b"c OK CLOSE completed\r\n")
    untagged, _ = c.run("EXAMINE INBOX")
    assert b"* 2 EXISTS\r\n" in untagged
    # CLOSE in EXAMINE does not expunge
    assert c.run("CLOSE", tag="c2")[1] == b"c2 OK CLOSE completed\r\n"
    assert c.run("CHECK", tag="k")[1] == b"k BAD Command not valid in this state\r\n"


@pytest.mark.parametrize("node_b", [0, 1])
def test_other_sessions_see_changes_at_noop(stack, account, node_b):
    """Changes by a session (on the same or another node) reach another
    session as EXISTS, FETCH FLAGS and EXPUNGE at NOOP."""
    a = connect(stack, account, 0)
    b = connect(stack, account, node_b)
    append(a, "INBOX", MSG1)
    append(a, "INBOX", MSG1)
    a.ok("SELECT INBOX")
    b.ok("SELECT INBOX")
    append(a, "INBOX", MSG1)
    a.ok("STORE 1 +FLAGS.SILENT (\\Flagged)")
    untagged, tagged = b.run("NOOP", tag="n")
    # the writer's own session saw the new message first: it is \Recent there
    assert untagged == [b"* 1 FETCH (FLAGS (\\Flagged))\r\n", b"* 3 EXISTS\r\n", b"* 0 RECENT\r\n"]
    assert tagged == b"n OK NOOP completed\r\n"
    a.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    a.ok("EXPUNGE")
    # no EXPUNGE during a sequence-number FETCH (RFC 3501 7.4.1) ...
    untagged, _ = b.run("FETCH 1 FLAGS")
    assert all(b"EXPUNGE" not in x for x in untagged)
    # ... but at NOOP
    untagged, _ = b.run("NOOP")
    assert b"* 2 EXPUNGE\r\n" in untagged
    untagged, _ = b.run("FETCH 1:* UID")
    assert untagged == [b"* 1 FETCH (UID 1)\r\n", b"* 2 FETCH (UID 3)\r\n"]
    # its own change is not reported back to the writer
    untagged, _ = a.run("NOOP")
    assert untagged == []


def test_tenant_isolation_in_selected_state(stack, account):
    c = connect(stack, account)
    append(c, "INBOX", MSG1)
    other = "iso%d@example.org" % next(_n)
    stack.imapctl("user", "add", other, stdin="pw\n")
    d = Conn("127.0.0.1", stack.node_port(0))
    d.login(other, "pw")
    untagged, _ = d.run("SELECT INBOX")
    assert b"* 0 EXISTS\r\n" in untagged
    assert d.run("UID FETCH 1 BODY[]", tag="x") == ([], b"x OK UID Fetch completed\r\n")


def test_copy_and_move_with_copyuid(stack, account):
    c = connect(stack, account)
    for _ in range(4):
        append(c, "INBOX", MSG1)
    c.ok("SELECT INBOX")
    c.ok("STORE 2 +FLAGS.SILENT (\\Flagged kw1)")
    untagged, tagged = c.run("COPY 2:3 Archive", tag="c")
    m = re.match(rb"c OK \[COPYUID (\d+) 2:3 1:2\] Copy completed\r\n", tagged)
    assert m and untagged == [], (untagged, tagged)
    untagged, tagged = c.run("UID MOVE 1,4 Trash", tag="m")
    assert re.match(rb"\* OK \[COPYUID \d+ 1,4 1:2\] Moved\r\n", untagged[0]), untagged
    assert untagged[1:] == [b"* 1 EXPUNGE\r\n", b"* 3 EXPUNGE\r\n"]
    assert tagged == b"m OK UID Move completed\r\n"
    untagged, _ = c.run("UID FETCH 1:* UID")
    assert untagged == [b"* 1 FETCH (UID 2)\r\n", b"* 2 FETCH (UID 3)\r\n"]
    # copies keep flags and keywords, and share the stored bytes
    d = connect(stack, account)
    d.ok("EXAMINE Archive")
    untagged, _ = d.run("FETCH 1:* (UID FLAGS)")
    assert untagged == [b"* 1 FETCH (UID 1 FLAGS (\\Flagged kw1))\r\n", b"* 2 FETCH (UID 2 FLAGS ())\r\n"]
    blobs = stack.psql("SELECT count(DISTINCT (m.tenant_id, m.blob_hash)) FROM message m "
                       "JOIN account a ON a.id = m.account_id WHERE a.login = '%s'" % account[0])
    assert blobs == "1"
    assert c.run("COPY 1 nosuch", tag="t")[1] == b"t NO [TRYCREATE] No such mailbox\r\n"
    assert c.run("MOVE 1 INBOX", tag="s")[1].startswith(b"s NO [CANNOT] ")


def test_idle_sees_changes_from_other_node(stack, account):
    a = connect(stack, account, 0)
    b = connect(stack, account, 1)
    append(a, "INBOX", MSG1)
    b.ok("SELECT INBOX")
    b.send("i IDLE\r\n")
    assert b.read_response() == b"+ idling\r\n"
    append(a, "INBOX", MSG1)
    assert b.read_response(timeout=10) == b"* 2 EXISTS\r\n"
    # b's SELECT claimed message 1 and b saw message 2 first (a is not
    # selected): both are \Recent in b
    assert b.read_response(timeout=10) == b"* 2 RECENT\r\n"
    a.ok("SELECT INBOX")
    a.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    a.ok("EXPUNGE")
    # Pushed as they happen: the flag change, then the expunge (the
    # periodic check alone would usually see only the expunge).
    r = b.read_response(timeout=10)
    if r.startswith(b"* 1 FETCH"):
        assert r == b"* 1 FETCH (FLAGS (\\Deleted \\Recent))\r\n"
        r = b.read_response(timeout=10)
    assert r == b"* 1 EXPUNGE\r\n"
    # commands pipelined right after DONE run without a round trip
    b.send("DONE\r\nn1 NOOP\r\n")
    assert b.read_response() == b"i OK IDLE terminated\r\n"
    assert b.read_response() == b"n1 OK NOOP completed\r\n"
    b.send("i2 IDLE\r\n")
    assert b.read_response() == b"+ idling\r\n"
    b.send("NOTDONE\r\n")
    assert b.read_response() == b"i2 BAD Expected DONE\r\n"


def test_rename_inbox_keeps_view_consistent(stack, account):
    """RENAME INBOX moves the messages with their UIDs; the new mailbox's
    view must not count the UIDs INBOX had expunged before."""
    c = connect(stack, account)
    for _ in range(4):
        append(c, "INBOX", MSG1)
    c.ok("SELECT INBOX")
    c.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    c.ok("EXPUNGE")
    c.ok("UNSELECT")
    c.ok("RENAME INBOX Old")
    untagged, _ = c.run("SELECT Old")
    assert b"* 3 EXISTS\r\n" in untagged
    untagged, _ = c.run("FETCH 1:* UID")
    assert untagged == [b"* 1 FETCH (UID 1)\r\n", b"* 2 FETCH (UID 3)\r\n", b"* 3 FETCH (UID 4)\r\n"]
    untagged, _ = c.run("SELECT INBOX")
    assert b"* 0 EXISTS\r\n" in untagged


def test_senton_uses_the_date_as_written(stack, account):
    """RFC 3501 6.4.4: SENT* compare the Date: header's date disregarding
    time and timezone: 23:30 -0500 on 1 March is 1 March, although it is
    2 March in UTC."""
    c = connect(stack, account)
    msg = MSG1.replace(b"Mon, 7 Feb 1994 21:52:25 -0800", b"Mon, 1 Mar 2021 23:30:00 -0500")
    append(c, "INBOX", msg)
    c.ok("SELECT INBOX")
    assert c.run("SEARCH SENTON 1-Mar-2021")[0] == [b"* SEARCH 1\r\n"]
    assert c.run("SEARCH SENTON 2-Mar-2021")[0] == [b"* SEARCH\r\n"]
    assert c.run("SEARCH SENTBEFORE 2-Mar-2021")[0] == [b"* SEARCH 1\r\n"]
