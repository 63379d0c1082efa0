"""RFC 7162: CONDSTORE and QRESYNC as one client sees them, section by
section, with the RFC's examples adapted to the server's data.  Every test
uses a fresh account; the stack is real (PostgreSQL, nats-server, several
imapd nodes)."""
import itertools
import re

import pytest

from imap import Conn, capabilities

_n = itertools.count()


def msg(i):
    return (b"From: a@example.com\r\nTo: b@example.com\r\nSubject: m%d\r\n"
            b"Message-ID: <%d@cs>\r\n\r\nbody %d\r\n" % (i, i, i))


@pytest.fixture
def account(stack):
    login = "cs%d@example.com" % next(_n)
    stack.imapctl("user", "add", login, stdin="pw\n")
    return login, "pw"


def connect(stack, account, node=0):
    c = Conn("127.0.0.1", stack.node_port(node))
    c.login(*account)
    return c


def fill(c, n, mailbox="INBOX"):
    """Append n messages; returns their UIDs."""
    uids = []
    for i in range(n):
        tag = c.next_tag()
        m = msg(i)
        c.send(b"%s APPEND %s {%d+}\r\n%s\r\n" % (tag.encode(), mailbox.encode(), len(m), m))
        _, t = c.collect(tag)
        mm = re.search(rb"APPENDUID \d+ (\d+)", t)
        assert mm, t
        uids.append(int(mm.group(1)))
    return uids


def hms(lines):
    """The value of the last [HIGHESTMODSEQ n] among lines."""
    v = None
    for l in lines:
        m = re.search(rb"\[HIGHESTMODSEQ (\d+)\]", l)
        if m:
            v = int(m.group(1))
    return v


def fetches(lines):
    """{uid: (flags set, modseq)} from untagged FETCH lines with UID."""
    out = {}
    for l in lines:
        if b" FETCH (" not in l:
            continue
        u = re.search(rb"UID (\d+)", l)
        f = re.search(rb"FLAGS \(([^)]*)\)", l)
        m = re.search(rb"MODSEQ \((\d+)\)", l)
        out[int(u.group(1)) if u else None] = (
            set(f.group(1).split()) - {b"\\Recent"} if f else None, int(m.group(1)) if m else None)
    return out


def vanished(lines, earlier):
    """UIDs of the VANISHED responses of the given kind."""
    out = set()
    for l in lines:
        m = re.match(rb"\* VANISHED (\(EARLIER\) )?(\S+)\r\n", l)
        if not m or bool(m.group(1)) != earlier:
            continue
        for part in m.group(2).split(b","):
            if b":" in part:
                a, b = part.split(b":")
                out.update(range(int(a), int(b) + 1))
            else:
                out.add(int(part))
    return out


def uidvalidity(lines):
    for l in lines:
        m = re.search(rb"\[UIDVALIDITY (\d+)\]", l)
        if m:
            return int(m.group(1))


# ---- 3.1.1, 3.2.2, 3.2.3: capabilities and ENABLE ----

def test_capabilities_and_enable(stack, account):
    c = Conn("127.0.0.1", stack.node_port(0))
    _, t = c.login(*account)
    caps = capabilities(t)
    assert b"CONDSTORE" in caps and b"QRESYNC" in caps and b"ENABLE" in caps
    u, t = c.ok("ENABLE CONDSTORE")
    assert u == [b"* ENABLED CONDSTORE\r\n"]
    u, t = c.ok("ENABLE QRESYNC CONDSTORE")
    assert u == [b"* ENABLED QRESYNC\r\n"]
    u, t = c.ok("ENABLE QRESYNC")
    assert u == [b"* ENABLED\r\n"]
    c2 = connect(stack, account, 1)
    u, _ = c2.ok("ENABLE QRESYNC")
    assert u == [b"* ENABLED QRESYNC\r\n"]
    # QRESYNC implies CONDSTORE: SELECT reports HIGHESTMODSEQ.
    u, _ = c2.ok("SELECT INBOX")
    assert hms(u) is not None


# ---- 3.1.2, 3.1.8: HIGHESTMODSEQ on SELECT/EXAMINE ----

def test_select_condstore_reports_highestmodseq(stack, account):
    c = connect(stack, account)
    fill(c, 3)
    u, _ = c.ok("SELECT INBOX")
    assert hms(u) is None, "no HIGHESTMODSEQ before a CONDSTORE enabling command"
    u, t = c.ok("EXAMINE INBOX (CONDSTORE)")
    assert u[0] == b"* OK [CLOSED] Previous mailbox closed\r\n"
    h = hms(u)
    assert h is not None and h >= 4
    assert b"[READ-ONLY]" in t
    # Later plain SELECTs keep reporting it (3.1.2.1).
    u, _ = c.ok("SELECT INBOX")
    assert hms(u) == h
    u, _ = c.ok("STATUS INBOX (HIGHESTMODSEQ MESSAGES)")
    assert u == [b"* STATUS INBOX (MESSAGES 3 HIGHESTMODSEQ %d)\r\n" % h]


def test_select_parameters_errors(stack, account):
    c = connect(stack, account)
    _, t = c.run("SELECT INBOX (FOO)")
    assert b" BAD " in t
    _, t = c.run("SELECT INBOX ()")
    assert b" BAD " in t
    # 3.2.5: QRESYNC before ENABLE QRESYNC is BAD.
    _, t = c.run("SELECT INBOX (QRESYNC (1 1))")
    assert b" BAD " in t
    c.ok("ENABLE QRESYNC")
    for bad in ["(QRESYNC)", "(QRESYNC (1))", "(QRESYNC (0 1))", "(QRESYNC (x 1))",
                "(QRESYNC (1 1 1:*))", "(QRESYNC (1 1 1:5 (1:2 3)))", "(QRESYNC (1 9223372036854775808))"]:
        _, t = c.run("SELECT INBOX " + bad)
        assert b" BAD " in t, bad
    u, t = c.ok("SELECT INBOX (QRESYNC (1 1) CONDSTORE)")


def test_first_enabling_command_reports_highestmodseq(stack, account):
    c = connect(stack, account)
    fill(c, 2)
    c.ok("SELECT INBOX")
    u, _ = c.ok("FETCH 1:* (MODSEQ)")
    # 3.1: the first enabling command with a mailbox selected.
    assert u[0].startswith(b"* OK [HIGHESTMODSEQ ")
    h = hms(u)
    ms = [int(re.search(rb"MODSEQ \((\d+)\)", l).group(1)) for l in u if b"FETCH" in l]
    assert len(ms) == 2 and ms[0] < ms[1] == h
    # Not twice.
    u, _ = c.ok("FETCH 1 (MODSEQ)")
    assert hms(u) is None


# ---- 3.1.3: STORE, UNCHANGEDSINCE, MODIFIED ----

def test_store_modseq_rules(stack, account):
    c = connect(stack, account)
    fill(c, 3)
    c.ok("SELECT INBOX (CONDSTORE)")
    u, _ = c.ok("STORE 1 +FLAGS (\\Seen)")
    (uid1, (flags, m1)), = fetches(u).items()
    assert uid1 == 1 and flags == {b"\\Seen"}
    # A later STORE gets a higher modseq (3.1).
    u, _ = c.ok("UID STORE 2 +FLAGS.SILENT (\\Flagged)")
    # .SILENT still tells a CONDSTORE client the new modseq, with the UID.
    assert u == [b"* 2 FETCH (UID 2 MODSEQ (%d))\r\n" % (m1 + 1)]
    # Setting a flag that is set changes nothing (3.1.11).
    u, _ = c.ok("STORE 1 +FLAGS (\\Seen)")
    assert fetches(u)[1] == ({b"\\Seen"}, m1)
    u, _ = c.ok("STATUS INBOX (HIGHESTMODSEQ)")
    assert u[0].endswith(b"(HIGHESTMODSEQ %d)\r\n" % (m1 + 1))
    # Keywords count as metadata too.
    u, _ = c.ok("STORE 3 +FLAGS ($Junk)")
    assert fetches(u)[3] == ({b"$Junk"}, m1 + 2)
    u, _ = c.ok("STORE 3 -FLAGS ($Junk)")
    assert fetches(u)[3] == (set(), m1 + 3)


def test_unchangedsince(stack, account):
    c = connect(stack, account)
    fill(c, 4)
    u, _ = c.ok("SELECT INBOX")
    # Example 5: the first enabling command reports HIGHESTMODSEQ first.
    u, t = c.ok("STORE 2 (UNCHANGEDSINCE 1000) +FLAGS.SILENT (\\Deleted)")
    assert u[0].startswith(b"* OK [HIGHESTMODSEQ ")
    h0 = hms(u)
    assert fetches(u[1:]) == {2: (None, h0 + 1)}
    assert t.endswith(b"OK Store completed\r\n")
    # Example 3: all pass, all reported even with .SILENT.
    u, t = c.ok("UID STORE 4,1,3 (UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Answered)" % (h0 + 1))
    assert fetches(u) == {1: (None, h0 + 2), 3: (None, h0 + 2), 4: (None, h0 + 2)}
    # Example 6/10: messages changed after the value fail; MODIFIED lists
    # their sequence numbers (STORE) and the server tells their state.
    u, t = c.ok("STORE 1:4 (UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Seen)" % (h0 + 1))
    assert re.search(rb"\[MODIFIED 1,3:4\]", t), t
    f = fetches(u)
    assert f[2] == (None, h0 + 3)
    assert f[1] == ({b"\\Answered"}, h0 + 2)
    # ... and UIDs for UID STORE.
    u, t = c.ok("UID STORE 1:4 (UNCHANGEDSINCE %d) -FLAGS (\\Seen)" % (h0 + 2))
    assert re.search(rb"\[MODIFIED 2\]", t), t
    # Example 7/8: UNCHANGEDSINCE 0 always fails.
    u, t = c.ok("STORE 3 (UNCHANGEDSINCE 0) +FLAGS.SILENT ($MDNSent)")
    assert re.search(rb"\[MODIFIED 3\]", t), t
    u, _ = c.ok("FETCH 3 (FLAGS)")
    assert b"$MDNSent" not in u[0]
    # Bad modifiers.
    for bad in ["STORE 1 (UNCHANGEDSINCE) +FLAGS (\\Seen)", "STORE 1 (FOO 1) +FLAGS (\\Seen)",
                "STORE 1 (UNCHANGEDSINCE -1) +FLAGS (\\Seen)"]:
        _, t = c.run(bad)
        assert b" BAD " in t, bad


def test_unchangedsince_sees_other_sessions_change(stack, account):
    a = connect(stack, account, 0)
    fill(a, 2)
    u, _ = a.ok("SELECT INBOX (CONDSTORE)")
    h = hms(u)
    b = connect(stack, account, 1)
    b.ok("SELECT INBOX")
    b.ok("STORE 1 +FLAGS (\\Flagged)")
    # a has not synced: its STORE must still fail for message 1.
    u, t = a.ok("STORE 1:2 (UNCHANGEDSINCE %d) +FLAGS (\\Seen)" % h)
    assert re.search(rb"\[MODIFIED 1\]", t), t
    f = fetches(u)
    assert f[1][0] == {b"\\Flagged"}
    assert f[2][0] == {b"\\Seen"} and f[2][1] == h + 2


# ---- 3.1.4: FETCH MODSEQ and CHANGEDSINCE ----

def test_fetch_changedsince(stack, account):
    c = connect(stack, account)
    fill(c, 6)
    u, _ = c.ok("SELECT INBOX (CONDSTORE)")
    h = hms(u)
    c.ok("STORE 2 +FLAGS (\\Seen)")
    c.ok("STORE 5 +FLAGS ($Forwarded)")
    # Example 12.
    u, _ = c.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % h)
    assert fetches(u) == {2: ({b"\\Seen"}, h + 1), 5: ({b"$Forwarded"}, h + 2)}
    assert u[0] == b"* 2 FETCH (UID 2 FLAGS (\\Seen \\Recent) MODSEQ (%d))\r\n" % (h + 1)
    u, _ = c.ok("FETCH 1:4 (FLAGS) (CHANGEDSINCE %d)" % h)
    assert u == [b"* 2 FETCH (FLAGS (\\Seen \\Recent) MODSEQ (%d))\r\n" % (h + 1)]
    u, _ = c.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % (h + 2))
    assert u == []
    for bad in ["FETCH 1 (FLAGS) (CHANGEDSINCE)", "FETCH 1 (FLAGS) (CHANGEDSINCE x)",
                "FETCH 1 (FLAGS) (FOO)", "UID FETCH 1 (FLAGS) (VANISHED)",
                "UID FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)"]:
        _, t = c.run(bad)
        assert b" BAD " in t, bad


def test_implicit_seen_carries_uid_and_modseq(stack, account):
    c = connect(stack, account)
    fill(c, 1)
    u, _ = c.ok("SELECT INBOX (CONDSTORE)")
    h = hms(u)
    u, _ = c.ok("FETCH 1 (BODY[TEXT])")
    assert re.match(rb"\* 1 FETCH \(BODY\[TEXT\] \{\d+\}\r\nbody 0\r\n FLAGS \(\\Seen \\Recent\) UID 1 MODSEQ \(%d\)\)\r\n"
                    % (h + 1), u[0]), u


# ---- 3.1.5, 3.1.6: SEARCH MODSEQ ----

def test_search_modseq(stack, account):
    c = connect(stack, account)
    fill(c, 5)
    u, _ = c.ok("SELECT INBOX")
    u, _ = c.ok("SEARCH MODSEQ 1")
    assert u[0].startswith(b"* OK [HIGHESTMODSEQ ")  # enabling command
    h = hms(u)
    assert u[1] == b"* SEARCH 1 2 3 4 5 (MODSEQ %d)\r\n" % h
    c.ok("STORE 2,4 +FLAGS (\\Draft)")
    # Example 15: an entry name and type are accepted (one modseq per message).
    u, _ = c.ok('SEARCH MODSEQ "/flags/\\\\draft" all %d' % (h + 1))
    assert u == [b"* SEARCH 2 4 (MODSEQ %d)\r\n" % (h + 1)]
    u, _ = c.ok("UID SEARCH MODSEQ %d DRAFT" % (h + 1))
    assert u == [b"* SEARCH 2 4 (MODSEQ %d)\r\n" % (h + 1)]
    # Example 16: nothing found, no MODSEQ.
    u, _ = c.ok("SEARCH OR NOT MODSEQ 1 LARGER 50000")
    assert u == [b"* SEARCH\r\n"]
    u, _ = c.ok("SEARCH MODSEQ %d" % (h + 2))
    assert u == [b"* SEARCH\r\n"]
    for bad in ["SEARCH MODSEQ", "SEARCH MODSEQ x", 'SEARCH MODSEQ "/flags/\\\\seen" bogus 1',
                'SEARCH MODSEQ "/flags/\\\\seen" all']:
        _, t = c.run(bad)
        assert b" BAD " in t, bad


# ---- 3.2.5: SELECT (QRESYNC ...) ----

def test_qresync_select(stack, account):
    c = connect(stack, account)
    uids = fill(c, 10)
    c.ok("ENABLE QRESYNC")
    u, _ = c.ok("SELECT INBOX")
    uv, h = uidvalidity(u), hms(u)
    c.ok("STORE 3 +FLAGS (\\Seen)")
    c.ok("STORE 4,5,6 +FLAGS (\\Deleted)")
    c.ok("UID EXPUNGE 4:5")
    c.ok("UID STORE 7 +FLAGS ($Forwarded)")
    u, _ = c.ok("UID FETCH 1:* (UID)")
    c.ok("UNSELECT")
    # Reconnect elsewhere and resync.
    d = connect(stack, account, 1)
    d.ok("ENABLE QRESYNC")
    u, t = d.ok("SELECT INBOX (QRESYNC (%d %d))" % (uv, h))
    assert b"[READ-WRITE]" in t
    assert vanished(u, True) == {4, 5}
    # VANISHED (EARLIER) comes before the FETCHes (3.2.5.1, 3.2.6).
    vi = [i for i, l in enumerate(u) if l.startswith(b"* VANISHED")]
    fi = [i for i, l in enumerate(u) if b" FETCH " in l]
    assert vi and fi and max(vi) < min(fi)
    f = fetches(u)
    assert set(f) == {3, 6, 7}
    assert f[3][0] == {b"\\Seen"} and f[6][0] == {b"\\Deleted"} and f[7][0] == {b"$Forwarded"}
    assert all(m > h for _, m in f.values())
    assert hms(u) == max(m for _, m in f.values())
    assert b"* 8 EXISTS\r\n" in u
    # Known UIDs restrict the answer.
    u, _ = d.ok("SELECT INBOX (QRESYNC (%d %d 1:4))" % (uv, h))
    assert u[0] == b"* OK [CLOSED] Previous mailbox closed\r\n"
    assert vanished(u, True) == {4}
    assert set(fetches(u)) == {3}
    # UIDVALIDITY mismatch: nothing but the normal SELECT responses.
    u, _ = d.ok("SELECT INBOX (QRESYNC (%d %d))" % (uv + 1, h))
    assert vanished(u, True) == set() and fetches(u) == {}
    # Up to date: nothing.
    u, _ = d.ok("SELECT INBOX (QRESYNC (%d %d))" % (uv, hms(u)))
    assert vanished(u, True) == set() and fetches(u) == {}


def test_qresync_seq_match_data(stack, account):
    c = connect(stack, account)
    fill(c, 10)
    c.ok("ENABLE QRESYNC")
    u, _ = c.ok("SELECT INBOX")
    uv = uidvalidity(u)
    c.ok("STORE 2,8 +FLAGS (\\Deleted)")
    c.ok("EXPUNGE")
    # Expire every tombstone: the client's modseq 1 is now below the floor
    # and the server must answer from the holes (3.2.6 note).
    stack.psql("SELECT expire_tombstones('0 seconds', 100000)")
    c.ok("UNSELECT")
    # Without match data: every hole in the known UIDs.
    u, _ = c.ok("EXAMINE INBOX (QRESYNC (%d 1 1:10))" % uv)
    assert vanished(u, True) == {2, 8}
    # The client's seq 1 -> uid 1 and seq 3 -> uid 4 (it knew of 2's
    # expunge) still match: nothing at or below UID 4 is reported.
    u, _ = c.ok("EXAMINE INBOX (QRESYNC (%d 1 1:10 (1,3 1,4)))" % uv)
    assert vanished(u, True) == {8}
    # A mismatch stops the matching: seq 2 -> uid 2 is wrong now.
    u, _ = c.ok("EXAMINE INBOX (QRESYNC (%d 1 1:10 (1:2 1:2)))" % uv)
    assert vanished(u, True) == {2, 8}


def test_qresync_after_tombstone_expiry_never_keeps_a_deleted_message(stack, account):
    c = connect(stack, account)
    fill(c, 6)
    c.ok("ENABLE QRESYNC")
    u, _ = c.ok("SELECT INBOX")
    uv, h = uidvalidity(u), hms(u)
    c.ok("STORE 1,5 +FLAGS (\\Deleted)")
    c.ok("EXPUNGE")
    stack.psql("SELECT expire_tombstones('0 seconds', 100000)")
    c.ok("UID STORE 6 +FLAGS (\\Deleted)")
    c.ok("EXPUNGE")  # a tombstone that is kept
    c.ok("UNSELECT")
    u, _ = c.ok("SELECT INBOX (QRESYNC (%d %d))" % (uv, h))
    assert vanished(u, True) >= {1, 5, 6}
    assert not (vanished(u, True) & {2, 3, 4})
    u2, _ = c.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % h)
    assert vanished(u2, True) >= {1, 5, 6} and not (vanished(u2, True) & {2, 3, 4})


# ---- 3.2.6: UID FETCH (CHANGEDSINCE n VANISHED) ----

def test_uid_fetch_vanished(stack, account):
    c = connect(stack, account)
    fill(c, 8)
    c.ok("ENABLE QRESYNC")
    u, _ = c.ok("SELECT INBOX")
    h = hms(u)
    c.ok("STORE 2,3,5 +FLAGS (\\Deleted)")
    u, t = c.ok("EXPUNGE")
    # 3.2.7/3.2.10.2: VANISHED, not EXPUNGE, and the new HIGHESTMODSEQ.
    assert u == [b"* VANISHED 2:3,5\r\n"]
    assert hms([t]) == h + 2
    c.ok("UID STORE 4 +FLAGS (\\Seen)")
    u, _ = c.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % h)
    assert u[0] == b"* VANISHED (EARLIER) 2:3,5\r\n"
    assert set(fetches(u)) == {4}
    u, _ = c.ok("UID FETCH 4:8 (FLAGS) (CHANGEDSINCE %d VANISHED)" % h)
    assert vanished(u, True) == {5}
    u, _ = c.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % (h + 3))
    assert u == []
    # DESIGN.md lessons: "*" reaches past the highest live UID, so the
    # expunge of the message that held the highest UID is reported too.
    c.ok("UID STORE 8 +FLAGS (\\Deleted)")
    c.ok("UID EXPUNGE 8")
    u, _ = c.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % (h + 3))
    assert u == [b"* VANISHED (EARLIER) 8\r\n"]
    u, _ = c.ok("UID FETCH 7:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % (h + 3))
    assert u == [b"* VANISHED (EARLIER) 8\r\n"]
    # VANISHED is for UID FETCH only.
    _, t = c.run("FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % h)
    assert b" BAD " in t


# ---- 3.2.7 - 3.2.10: expunges under QRESYNC ----

def test_close_and_move_under_qresync(stack, account):
    c = connect(stack, account)
    fill(c, 4)
    c.ok("ENABLE QRESYNC")
    u, _ = c.ok("SELECT INBOX")
    h = hms(u)
    c.ok("STORE 1 +FLAGS (\\Deleted)")
    _, t = c.ok("CLOSE")
    assert b"HIGHESTMODSEQ" not in t  # 3.2.8
    c.ok("CREATE Archive2")
    c.ok("SELECT INBOX")
    u, t = c.ok("UID MOVE 2:3 Archive2")
    assert b"* VANISHED 2:3\r\n" in u and not any(b"EXPUNGE" in l for l in u)
    assert hms([t]) == h + 3


def test_other_sessions_expunge_arrives_as_vanished(stack, account):
    a = connect(stack, account, 0)
    fill(a, 4)
    a.ok("ENABLE QRESYNC")
    u, _ = a.ok("SELECT INBOX")
    h = hms(u)
    b = connect(stack, account, 1)
    b.ok("SELECT INBOX")
    b.ok("STORE 1 +FLAGS (\\Deleted)")
    b.ok("EXPUNGE")                       # modseq h+2
    b.ok("STORE 1 +FLAGS (\\Flagged)")   # message UID 2, modseq h+3
    # A sequence-number STORE in a: it writes modseq h+4, syncs before its
    # OK, tells the flag change at h+3 but may not tell the expunge yet.
    u, t = a.ok("STORE 3 +FLAGS (\\Seen)")
    assert not any(l.startswith(b"* VANISHED") or b"EXPUNGE" in l for l in u)
    f = fetches(u)
    assert f[2] == ({b"\\Flagged"}, h + 3) and f[3] == ({b"\\Seen"}, h + 4)
    # RFC 7162 3.2: the client must not take a HIGHESTMODSEQ at or above
    # the expunge it has not been told of.
    assert hms(u) == h + 1
    u, t = a.ok("NOOP")
    # Everything is told now: the HIGHESTMODSEQ a cache may move to.
    assert u == [b"* VANISHED 1\r\n", b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % (h + 4)]


def test_non_qresync_session_gets_expunge(stack, account):
    a = connect(stack, account, 0)
    fill(a, 3)
    a.ok("SELECT INBOX (CONDSTORE)")
    b = connect(stack, account, 1)
    b.ok("SELECT INBOX")
    b.ok("STORE 2 +FLAGS (\\Deleted)")
    b.ok("EXPUNGE")
    b.ok("STORE 1 +FLAGS (\\Seen)")
    u, _ = a.ok("NOOP")
    assert b"* 2 EXPUNGE\r\n" in u
    f = fetches(u)
    assert f[1][0] == {b"\\Seen"} and f[1][1] is not None


def test_modseq_never_goes_backwards_in_a_session(stack, account):
    a = connect(stack, account, 0)
    fill(a, 5)
    a.ok("SELECT INBOX (CONDSTORE)")
    b = connect(stack, account, 1)
    b.ok("SELECT INBOX (CONDSTORE)")
    # Per message, the modseqs a session is told only grow (RFC 7162 6
    # allows different messages' modseqs out of order); the STOREs of the
    # two sessions never share one (3.1).
    last = {a: {}, b: {}}
    own = {a: set(), b: set()}
    for i in range(20):
        x = a if i % 2 else b
        u, _ = x.ok("STORE %d +FLAGS.SILENT ($k%d)" % (i % 5 + 1, i))
        f = fetches(u)
        own[x].add(f[i % 5 + 1][1])
        for uid, (_, m) in f.items():
            assert m >= last[x].get(uid, 0)
            last[x][uid] = m
    assert not own[a] & own[b] and len(own[a]) == len(own[b]) == 10
