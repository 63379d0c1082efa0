"""Interop with real clients: imapflow (Node.js, from npm) and Python's
imaplib create folders, append, fetch bodies and structures, move, search
and expunge, and see what they did."""
import imaplib
import json
import os
import shutil
import subprocess
import ssl

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
INTEROP = os.path.join(HERE, "interop")


@pytest.fixture
def fresh_user(stack):
    login = "interop%d@example.com" % next(_counter)
    stack.imapctl("user", "add", login, stdin="pw\n")
    return login


_counter = __import__("itertools").count()


def test_imapflow(stack, fresh_user):
    assert shutil.which("node"), "node is required for the interop tests"
    if not os.path.isdir(os.path.join(INTEROP, "node_modules", "imapflow")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=INTEROP, check=True,
                       capture_output=True, timeout=300)
    r = subprocess.run(["node", "imapflow_check.mjs", "127.0.0.1", str(stack.node_tls_port(0)),
                        fresh_user, "pw"], cwd=INTEROP, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr + r.stdout
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert "Interop/Sub" in out["list"] and "Interop" in out["list"]
    assert out["appendUid"] == 1
    assert out["subject"] == "interop check"
    assert out["from"] == "tester@example.com"
    # imapflow's session selected the mailbox first: the message is \Recent there
    assert out["flags"] == ["\\Recent", "\\Seen"]
    assert out["sourceLength"] == out["rawLength"]
    assert out["structure"]["type"] == "multipart/mixed"
    assert out["structure"]["parts"] == [["1", "text/plain", "7bit"], ["2", "application/octet-stream", "base64"]]
    assert out["attachment"] == "0001020304"
    assert out["search"] == [1] and out["searchNone"] == []
    assert out["moved"] is True
    assert out["statusAfterMove"] == 0
    assert out["inbox"] == [{"subject": "interop check", "flags": ["\\Flagged", "\\Recent", "\\Seen"]}]
    assert out["inboxAfterDelete"] == 0


def test_python_imaplib(stack, fresh_user):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    m = imaplib.IMAP4_SSL("127.0.0.1", stack.node_tls_port(0), ssl_context=ctx)
    assert m.login(fresh_user, "pw")[0] == "OK"
    assert m.create("Py/Folder")[0] == "OK"
    typ, data = m.list()
    assert typ == "OK" and any(b'"Py/Folder"' in x or b" Py/Folder" in x for x in data)
    msg = b"From: py@example.com\r\nSubject: from imaplib\r\n\r\nbody text here\r\n"
    typ, data = m.append("Py/Folder", "(\\Draft)", imaplib.Time2Internaldate(1700000000), msg)
    assert typ == "OK" and b"APPENDUID" in data[0]
    typ, data = m.select("Py/Folder")
    assert typ == "OK" and data == [b"1"]
    typ, data = m.fetch("1", "(FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODYSTRUCTURE)")
    assert typ == "OK"
    assert data[0][1] == b"Subject: from imaplib\r\n\r\n"
    assert b"RFC822.SIZE %d" % len(msg) in data[0][0]
    assert b"\\Draft" in data[0][0]
    typ, data = m.search(None, "BODY", "text")
    assert typ == "OK" and data == [b"1"]
    typ, data = m.uid("COPY", "1", "INBOX")
    assert typ == "OK"
    typ, data = m.store("1", "+FLAGS", "(\\Deleted)")
    assert typ == "OK"
    typ, data = m.expunge()
    assert typ == "OK" and data == [b"1"]
    typ, data = m.status("INBOX", "(MESSAGES UNSEEN)")
    assert typ == "OK" and b"MESSAGES 1" in data[0]
    m.close()
    m.logout()


# ---- imapflow with QRESYNC (RFC 7162): a cache resynchronised across nodes ----

def _raw(stack, login, node):
    from imap import Conn
    c = Conn("127.0.0.1", stack.node_port(node))
    c.login(login, "pw")
    return c


def _raw_append(c, mailbox, body, flags=""):
    import re
    tag = c.next_tag()
    c.send(b"%s APPEND %s %s{%d+}\r\n%s\r\n" % (tag.encode(), mailbox.encode(),
                                              (flags + " ").encode() if flags else b"",
                                              len(body), body))
    _, t = c.collect(tag)
    m = re.search(rb"APPENDUID \d+ (\d+)", t)
    assert m, t
    return int(m.group(1))


def _server_truth(c):
    """{uid: sorted flags without \\Recent} and (HIGHESTMODSEQ, UIDVALIDITY)
    of INBOX, read with the raw client."""
    import re
    c.ok("EXAMINE INBOX")
    u, _ = c.ok("UID FETCH 1:* (FLAGS)")
    truth = {}
    for line in u:
        if b" FETCH (" not in line:
            continue
        uid = int(re.search(rb"UID (\d+)", line).group(1))
        flags = re.search(rb"FLAGS \(([^)]*)\)", line).group(1).decode().split()
        truth[str(uid)] = sorted(f for f in flags if f != "\\Recent")
    c.ok("UNSELECT")
    u, _ = c.ok("STATUS INBOX (HIGHESTMODSEQ UIDVALIDITY)")
    hms = int(re.search(rb"HIGHESTMODSEQ (\d+)", u[0]).group(1))
    uv = int(re.search(rb"UIDVALIDITY (\d+)", u[0]).group(1))
    return truth, hms, uv


def _node_logs(stack):
    out = {}
    for k in range(stack.nodes):
        p = os.path.join(stack.dir, "node-%d" % k, "imapd.log")
        out[p] = os.path.getsize(p) if os.path.exists(p) else 0
    return out


def _sanitizer_reports(since):
    bad = []
    for p, off in since.items():
        if not os.path.exists(p):
            continue
        with open(p, errors="replace") as f:
            f.seek(off)
            text = f.read()
        if "ERROR: AddressSanitizer" in text or "runtime error:" in text or \
                "ERROR: LeakSanitizer" in text:
            bad.append("%s:\n%s" % (p, text[-4000:]))
    return bad


def _imapflow_qresync(stack, node, login, phase, state_file=None):
    args = ["node", "imapflow_qresync.mjs", "127.0.0.1", str(stack.node_tls_port(node)),
            login, "pw", phase] + ([state_file] if state_file else [])
    r = subprocess.run(args, cwd=INTEROP, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr + r.stdout
    return json.loads(r.stdout.strip().splitlines()[-1])


def _uidset(s):
    out = set()
    for part in s.split(","):
        if ":" in part:
            a, b = part.split(":")
            out.update(range(min(int(a), int(b)), max(int(a), int(b)) + 1))
        else:
            out.add(int(part))
    return out


def test_imapflow_qresync(stack, fresh_user, tmp_path):
    """imapflow keeps a cache of INBOX (node 0), another client changes the
    mailbox on node 1, imapflow resynchronises with QRESYNC on node 2
    (modulo the stack's node count) and ends with exactly the server's
    state, having used VANISHED (EARLIER) and the changed-flags FETCHes
    rather than a full refetch."""
    import re
    assert shutil.which("node"), "node is required for the interop tests"
    if not os.path.isdir(os.path.join(INTEROP, "node_modules", "imapflow")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=INTEROP, check=True,
                       capture_output=True, timeout=300)
    logs = _node_logs(stack)
    writer, resyncer = 1 % stack.nodes, 2 % stack.nodes
    body = (b"From: q@example.com\r\nTo: r@example.com\r\nSubject: qresync %d\r\n"
            b"Message-ID: <%d@qresync>\r\n\r\nbody %d\r\n")
    c = _raw(stack, fresh_user, writer)
    c.ok("CREATE Elsewhere")
    first_flags = {1: "(\\Seen)", 4: "(\\Seen)", 5: "(\\Flagged $Old)", 9: "(\\Answered)"}
    for i in range(1, 13):
        assert _raw_append(c, "INBOX", body % (i, i, i), first_flags.get(i, "")) == i

    # Phase 1: imapflow fills its cache.
    p1 = _imapflow_qresync(stack, 0, fresh_user, "phase1")
    assert "QRESYNC" in p1["enabled"] and "CONDSTORE" in p1["enabled"], p1["enabled"]
    assert sorted(int(u) for u in p1["messages"]) == list(range(1, 13))
    assert p1["messages"]["5"] == ["$Old", "\\Flagged"]
    truth, hms0, uv = _server_truth(c)
    assert truth == p1["messages"]
    assert int(p1["highestModseq"]) == hms0 and int(p1["uidValidity"]) == uv
    assert any(re.match(r"C: \d+ ENABLE .*QRESYNC", l) for l in p1["proto"]), p1["proto"]

    # Changes elsewhere (node 1), by a client that is not imapflow.
    c.ok("ENABLE QRESYNC")
    c.ok("SELECT INBOX")
    c.ok("UID STORE 2 +FLAGS (\\Seen)")                    # system flag set
    c.ok("UID STORE 3 +FLAGS ($Keyword1 \\Flagged)")       # keyword + flag
    c.ok("UID STORE 4 -FLAGS (\\Seen)")                    # flag cleared
    c.ok("UID STORE 5 FLAGS ($Label1)")                    # replaced: keyword gone, new one
    c.ok("UID STORE 9 +FLAGS ($Tmp)")                      # changed and changed back:
    c.ok("UID STORE 9 -FLAGS ($Tmp)")                      #   same flags, new modseq
    c.ok("UID STORE 6 +FLAGS (\\Deleted)")
    c.ok("UID EXPUNGE 6")                                  # expunged
    c.ok("UID STORE 7 +FLAGS ($Changed)")                  # changed, then expunged
    c.ok("UID STORE 7 +FLAGS (\\Deleted)")
    c.ok("UID EXPUNGE 7")
    c.ok("UID MOVE 8 Elsewhere")                           # moved out
    c.ok("UID MOVE 12 Elsewhere")                          # the highest known UID moved out
    new = [_raw_append(c, "INBOX", body % (i, i, i), fl)
           for i, fl in ((13, ""), (14, "(\\Flagged)"), (15, "($New)"))]
    assert new == [13, 14, 15]
    c.ok("UID STORE 14 +FLAGS (\\Answered)")               # a new message, changed
    gone = _raw_append(c, "INBOX", body % (16, 16, 16))    # a new message, expunged at once
    c.ok("UID STORE %d +FLAGS (\\Deleted)" % gone)
    c.ok("UID EXPUNGE %d" % gone)
    c.ok("UNSELECT")
    truth, hms1, uv1 = _server_truth(c)
    assert uv1 == uv and hms1 > hms0
    assert sorted(int(u) for u in truth) == [1, 2, 3, 4, 5, 9, 10, 11, 13, 14, 15]

    # Phase 2: imapflow resynchronises on node 2.
    state = tmp_path / "imapflow-state.json"
    state.write_text(json.dumps(p1))
    p2 = _imapflow_qresync(stack, resyncer, fresh_user, "phase2", str(state))
    proto = p2["proto"]
    assert p2["qresync"] is True, proto
    # The cache built from SELECT (QRESYNC) + fetching above the old max UID.
    assert p2["messages"] == truth, (p2["messages"], truth, proto)
    assert int(p2["highestModseq"]) == hms1
    # ... and the one built from UID FETCH 1:* (CHANGEDSINCE n VANISHED).
    assert p2["messages2"] == truth, (p2["messages2"], truth, proto)
    assert int(p2["highestModseq2"]) == hms1

    # It really used QRESYNC: the SELECT carried the phase 1 state, the
    # server answered with VANISHED (EARLIER) and FETCHes of the changes only.
    sel = [l for l in proto if re.match(r"C: \S+ SELECT ", l)]
    assert len(sel) == 1, proto
    assert re.search(r"SELECT INBOX \(QRESYNC \(%d %d\)\)$" % (uv, hms0), sel[0]), sel[0]
    van = [l for l in proto if l.startswith("S: * VANISHED")]
    assert van and all(l.startswith("S: * VANISHED (EARLIER) ") for l in van), proto
    sel_vanished = {e["uid"] for e in p2["selectEvents"] if e["type"] == "expunge"}
    assert all(e["earlier"] for e in p2["selectEvents"] if e["type"] == "expunge")
    # 16 was never known to the client: the server may report it or not.
    assert {6, 7, 8, 12} <= sel_vanished <= {6, 7, 8, 12, 16}, sel_vanished
    sel_flags = {e["uid"] for e in p2["selectEvents"] if e["type"] == "flags"}
    assert sel_flags == {2, 3, 4, 5, 9, 13, 14, 15}, p2["selectEvents"]
    assert all(int(e["modseq"]) > hms0 for e in p2["selectEvents"] if e["type"] == "flags")
    # Nothing but the new messages was fetched after the SELECT, and no
    # FETCH outside the resync asked for all messages.
    assert p2["newFetched"] == [13, 14, 15]
    fetch_cmds = [l for l in proto if re.match(r"C: \S+ (UID )?FETCH ", l)]
    assert len(fetch_cmds) == 2, fetch_cmds
    assert re.search(r"UID FETCH 13:\* ", fetch_cmds[0]), fetch_cmds
    assert re.search(r"UID FETCH 1:\* .*\(CHANGEDSINCE %d VANISHED\)$" % hms0, fetch_cmds[1]), fetch_cmds
    cs_vanished = {e["uid"] for e in p2["changedSinceEvents"] if e["type"] == "expunge"}
    assert {6, 7, 8, 12} <= cs_vanished <= {6, 7, 8, 12, 16}, p2["changedSinceEvents"]
    assert set(p2["changedSinceFetched"]) == {2, 3, 4, 5, 9, 13, 14, 15}
    # No UID reported vanished is still in the mailbox.
    for l in van:
        assert not (_uidset(l.split()[-1]) & {int(u) for u in truth}), l
    # Where the moved messages went.
    u, _ = c.ok("STATUS Elsewhere (MESSAGES)")
    assert b"MESSAGES 2" in u[0]
    c.close()
    assert not _sanitizer_reports(logs)
