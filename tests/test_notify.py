"""Cross-node change notification: sessions in IDLE on one imapd see
changes made on another at once, through NATS (DESIGN.md, "The
notification path"), and converge through the periodic HIGHESTMODSEQ check
when NATS is down."""
import itertools
import re
import time

import pytest

from imap import Conn

_n = itertools.count()

MSG = (b"From: a@example.com\r\nTo: b@example.com\r\nSubject: n\r\n"
       b"Message-ID: <n@x>\r\n\r\nbody\r\n")

# Long enough that only a NATS notification can explain a prompt update.
NO_POLL = "idle_check_interval = 3600"


@pytest.fixture
def account(stack):
    login = "nt%d@example.com" % next(_n)
    stack.imapctl("user", "add", login, stdin="pw\n")
    return login, "pw"


def login(port, account):
    c = Conn("127.0.0.1", port, timeout=15)
    c.login(*account)
    return c


def append(c, mailbox="INBOX"):
    tag = c.next_tag()
    c.send(b"%s APPEND %s {%d+}\r\n%s\r\n" % (tag.encode(), mailbox.encode(), len(MSG), MSG))
    _, t = c.collect(tag)
    assert b" OK " in t, t


def idle(c):
    c.send("i IDLE\r\n")
    assert c.read_response() == b"+ idling\r\n"


def expect(c, want, timeout=5, optional=None):
    """The next responses are exactly want (a list of regexes), after
    one matching optional if that is given and comes."""
    r = c.read_response(timeout=timeout)
    if optional is not None and re.fullmatch(optional, r):
        r = c.read_response(timeout=timeout)
    for i, w in enumerate(want):
        if i > 0:
            r = c.read_response(timeout=timeout)
        assert re.fullmatch(w, r), (w, r)


def quiet(c, seconds=0.5):
    """Nothing more arrives."""
    try:
        r = c.read_response(timeout=seconds)
    except TimeoutError:
        return
    raise AssertionError("unexpected %r" % r)


def test_idle_sessions_see_changes_from_another_node(account, imapd_factory):
    a = imapd_factory(NO_POLL)
    b = imapd_factory(NO_POLL)
    w = login(b.port, account)
    for _ in range(3):
        append(w)
    w.ok("CREATE Other")
    append(w, "Other")
    w.ok("SELECT INBOX")
    plain = login(a.port, account)
    plain.ok("EXAMINE INBOX")
    qr = login(a.port, account)
    qr.ok("ENABLE QRESYNC")
    u, _ = qr.ok("EXAMINE INBOX")
    h = int(re.search(rb"HIGHESTMODSEQ (\d+)", b"".join(u)).group(1))
    idle(plain)
    idle(qr)

    # Flags.
    w.ok("STORE 1 +FLAGS.SILENT (\\Flagged)")
    expect(plain, [rb"\* 1 FETCH \(FLAGS \(\\Flagged\)\)\r\n"])
    expect(qr, [rb"\* 1 FETCH \(UID 1 FLAGS \(\\Flagged\) MODSEQ \(%d\)\)\r\n" % (h + 1)])
    # A new keyword: the new FLAGS list first (RFC 3501 7.2.6).
    w.ok("STORE 2 +FLAGS.SILENT ($Work)")
    for c in (plain, qr):
        expect(c, [rb"\* FLAGS \(\\Answered \\Flagged \\Deleted \\Seen \\Draft \$Work\)\r\n",
                   rb"\* 2 FETCH \((UID 2 )?FLAGS \(\$Work\)( MODSEQ \(%d\))?\)\r\n" % (h + 2)])
    # Append.
    append(w)
    for c in (plain, qr):
        expect(c, [rb"\* 4 EXISTS\r\n", rb"\* 0 RECENT\r\n"])
    # Expunge: EXPUNGE, or VANISHED after ENABLE QRESYNC.
    w.ok("STORE 3 +FLAGS.SILENT (\\Deleted)")
    w.ok("EXPUNGE")
    # The flag change comes first unless one delta read both changes.
    expect(plain, [rb"\* 3 EXPUNGE\r\n"],
           optional=rb"\* 3 FETCH \(FLAGS \(\\Deleted\)\)\r\n")
    expect(qr, [rb"\* VANISHED 3\r\n", rb"\* OK \[HIGHESTMODSEQ %d\] Highest\r\n" % (h + 5)],
           optional=rb"\* 3 FETCH \(UID 3 FLAGS \(\\Deleted\) MODSEQ \(%d\)\)\r\n" % (h + 4))
    # Move out and move in.
    w.ok("UID MOVE 1 Other")
    expect(plain, [rb"\* 1 EXPUNGE\r\n"])
    expect(qr, [rb"\* VANISHED 1\r\n", rb"\* OK \[HIGHESTMODSEQ %d\] Highest\r\n" % (h + 6)])
    w.ok("SELECT Other")
    w.ok("UID MOVE 1:* INBOX")
    for c in (plain, qr):
        expect(c, [rb"\* 4 EXISTS\r\n", rb"\* 0 RECENT\r\n"])
    for c in (plain, qr):
        quiet(c)
        c.send("DONE\r\n")
        assert c.read_response() == b"i OK IDLE terminated\r\n"
        u, _ = c.ok("UID FETCH 1:* (UID)")
        assert [int(re.search(rb"UID (\d+)", l).group(1)) for l in u] == [2, 4, 5, 6]


def test_writer_does_not_get_its_own_change_back(account, imapd_factory):
    a = imapd_factory(NO_POLL)
    w = login(a.port, account)
    append(w)
    w.ok("SELECT INBOX (CONDSTORE)")
    other = login(a.port, account)
    other.ok("SELECT INBOX")
    idle(other)
    u, _ = w.ok("STORE 1 +FLAGS (\\Seen)")
    assert len(u) == 1
    expect(other, [rb"\* 1 FETCH \(FLAGS \(\\Seen\)\)\r\n"])
    time.sleep(0.3)
    u, _ = w.ok("NOOP")
    assert u == []


def test_sessions_converge_while_nats_is_down(stack, account, imapd_factory):
    a = imapd_factory("idle_check_interval = 1")
    w = login(stack.node_port(0), account)
    for _ in range(5):
        append(w)
    w.ok("SELECT INBOX")
    watcher = login(a.port, account)
    watcher.ok("EXAMINE INBOX")
    idle(watcher)
    flags = {i: set() for i in range(1, 6)}

    def drain(until):
        """Apply what the watcher is told until the deadline."""
        while time.monotonic() < until:
            try:
                r = watcher.read_response(timeout=max(0.05, until - time.monotonic()))
            except TimeoutError:
                return
            m = re.match(rb"\* (\d+) FETCH \(FLAGS \(([^)]*)\)\)\r\n", r)
            if m:
                flags[int(m.group(1))] = set(m.group(2).split())

    def truth():
        out = {}
        u, _ = w.ok("FETCH 1:* (FLAGS)")
        for l in u:
            m = re.match(rb"\* (\d+) FETCH \(FLAGS \(([^)]*)\)\)\r\n", l)
            if m:
                out[int(m.group(1))] = set(m.group(2).split()) - {b"\\Recent"}
        return out

    stack.run("stop-nats")
    try:
        for i in range(10):
            w.ok("STORE %d %sFLAGS.SILENT ($k%d)" % (i % 5 + 1, "+" if i % 3 else "-", i))
        drain(time.monotonic() + 4)
        # Converged with NATS still down: the periodic check alone.
        assert flags == truth()
        # imapd and storaged serve on, ready, and say NATS is down.
        for port in (stack.metrics_port, stack.metrics_port + stack.nodes):
            deadline = time.monotonic() + 15
            while True:
                code, body = http_get(port, "/ready")
                if "nats down" in body or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert code == 200 and "nats down" in body and body.endswith("ready\n"), body
    finally:
        stack.run("start-nats")
    for i in range(10, 20):
        w.ok("STORE %d +FLAGS.SILENT ($k%d)" % (i % 5 + 1, i))
    drain(time.monotonic() + 4)
    assert flags == truth()
    watcher.send("DONE\r\n")
    assert watcher.read_response() == b"i OK IDLE terminated\r\n"


def http_get(port, path):
    import socket
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET %s HTTP/1.0\r\n\r\n" % path.encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def metric(body, name):
    """Sum of a metric over the workers."""
    return sum(int(l.rsplit(" ", 1)[1]) for l in body.splitlines()
               if l.startswith(name + "{"))


def test_metrics_and_readiness(stack):
    port = stack.metrics_port
    code, body = http_get(port, "/ready")
    assert code == 200, body
    assert "postgresql up, nats up" in body and body.endswith("ready\n")
    code, body = http_get(port, "/metrics")
    assert code == 200
    for name in ("imapd_worker_sessions", "imapd_worker_delta_queries_total",
                 "imapd_worker_notifications_total", "imapd_worker_nats_up"):
        assert "# TYPE %s " % name in body and (name + "{worker=\"0\"}") in body
    code, _ = http_get(port, "/nothing")
    assert code == 404
    # storaged, after the nodes
    code, body = http_get(port + stack.nodes, "/ready")
    assert code == 200 and body == "postgresql up, nats up\nready\n", body
    code, body = http_get(port + stack.nodes, "/metrics")
    assert code == 200 and "storaged_postgresql_up 1" in body
    assert 'storaged_job_runs_total{job="tombstones"}' in body


def test_burst_is_coalesced_one_query_per_mailbox(stack, account, imapd_factory):
    import conftest
    free = conftest.free_port()
    # This stack commits with fsync, so the burst is slow (a few ms per
    # change); a wider spacing than the default shows the coalescing.
    a = imapd_factory("%s\nworkers = 1\nnotify_min_interval_ms = 50\nmetrics_listen = 127.0.0.1:%d"
                      % (NO_POLL, free))
    w = login(stack.node_port(0), account)
    for _ in range(10):
        append(w)
    w.ok("SELECT INBOX")
    watchers = []
    for _ in range(20):
        c = login(a.port, account)
        c.ok("ENABLE QRESYNC")
        c.ok("EXAMINE INBOX")
        idle(c)
        watchers.append(c)
    time.sleep(0.5)
    _, before = http_get(free, "/metrics")
    # 1,000 changes, each its own commit and notification, pipelined by
    # 10 writers, one message each: +, -, +, ... ending unflagged.
    writers = [w] + [login(stack.node_port(k % 3), account) for k in range(1, 10)]
    for x in writers[1:]:
        x.ok("SELECT INBOX")
    t0 = time.monotonic()
    for k, x in enumerate(writers):
        x.send("".join("s%d UID STORE %d %sFLAGS.SILENT (\\Flagged)\r\n"
                       % (i, k + 1, "-" if i % 2 else "+") for i in range(100)))
    for x in writers:
        for i in range(100):
            _, t = x.collect("s%d" % i, timeout=60)
            assert b" OK " in t, t
    print("burst took %.2f s" % (time.monotonic() - t0))
    u, _ = w.ok("STATUS INBOX (HIGHESTMODSEQ)")
    # (w has INBOX selected: the other writers' changes may come first)
    final = int(re.search(rb"HIGHESTMODSEQ (\d+)", u[-1]).group(1))
    assert u[-1].startswith(b"* STATUS INBOX ")
    # Every watcher is told up to the last change, and ends with every
    # message unflagged.
    for c in watchers:
        last, top = {}, 0
        while True:
            try:
                r = c.read_response(timeout=30 if top < final else 0.3)
            except TimeoutError:
                if top < final:
                    raise
                break
            m = re.match(rb"\* \d+ FETCH \(UID (\d+) FLAGS \(([^)]*)\) MODSEQ \((\d+)\)\)\r\n", r)
            assert m, r
            last[int(m.group(1))] = b"\\Flagged" in m.group(2)
            top = max(top, int(m.group(3)))
        assert len(last) == 10 and not any(last.values()), last
    time.sleep(0.5)
    _, after = http_get(free, "/metrics")
    notes = metric(after, "imapd_worker_notifications_total") - \
        metric(before, "imapd_worker_notifications_total")
    deltas = metric(after, "imapd_worker_delta_queries_total") - \
        metric(before, "imapd_worker_delta_queries_total")
    print("1000 changes: %d notifications, %d delta queries for 20 watchers" % (notes, deltas))
    # One subscription per mailbox per worker: each change arrives once,
    # not once per watcher; one delta query serves all 20 watchers.
    assert 900 <= notes <= 1000
    # Bursts are coalesced too (notify_min_interval_ms spaces the queries).
    assert 1 <= deltas <= notes // 3
    for c in watchers:
        c.send("DONE\r\n")
        assert c.read_response() == b"i OK IDLE terminated\r\n"


def test_notify_tail_prints_a_tenants_notifications(stack, account):
    import os
    import subprocess
    import conftest
    tenant = stack.psql("SELECT tenant_id FROM account WHERE login = '%s'" % account[0])
    mbox = stack.psql("SELECT m.id FROM mailbox m JOIN account a ON a.id = m.account_id"
                      " WHERE a.login = '%s' AND m.name = 'INBOX'" % account[0])
    env = dict(os.environ, NATS_URL="nats://127.0.0.1:%d" % stack.nats_port)
    p = subprocess.Popen([os.path.join(conftest.BUILD, "notify-tail"), "--tenant", tenant, "--count", "2"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        # Wait until it listens.
        line = p.stderr.readline()
        while "listening" not in line:
            assert line, "notify-tail exited"
            line = p.stderr.readline()
        c = login(stack.node_port(1), account)
        append(c)
        c.ok("SELECT INBOX")
        c.ok("STORE 1 +FLAGS (\\Seen)")
        out, _ = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    lines = out.splitlines()
    assert len(lines) == 2, out
    subject = "mail.%s.%s" % (tenant, mbox)
    assert re.fullmatch(r"\S+Z %s \d+ append" % re.escape(subject), lines[0]), lines
    assert re.fullmatch(r"\S+Z %s \d+ flags" % re.escape(subject), lines[1]), lines


def test_changes_arrive_with_any_command(stack, account):
    """Issue 3: other sessions' changes reach a selected session after
    commands too, not only at NOOP/IDLE: the NATS notification marks the
    view stale, and the next command (here LIST and STATUS) syncs first."""
    a = login(stack.node_port(0), account)
    for _ in range(3):
        append(a)
    a.ok("SELECT INBOX")
    b = login(stack.node_port(1), account)
    b.ok("SELECT INBOX")
    b.ok("STORE 2 +FLAGS.SILENT (\\Flagged)")
    b.ok("STORE 3 +FLAGS.SILENT (\\Deleted)")
    b.ok("EXPUNGE")
    deadline = time.monotonic() + 10
    told = []
    while time.monotonic() < deadline:
        u, _ = a.ok('LIST "" INBOX')
        told += u
        if b"* 3 EXPUNGE\r\n" in told:
            break
        time.sleep(0.2)
    assert b"* 2 FETCH (FLAGS (\\Flagged \\Recent))\r\n" in told, told
    assert b"* 3 EXPUNGE\r\n" in told, told
    # The command's own answer still comes, after the updates.
    assert told[-1].startswith(b"* LIST ")
    append(b)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        u, _ = a.ok("STATUS Trash (MESSAGES)")
        if u[0] != b"* STATUS Trash (MESSAGES 0)\r\n":
            break
        time.sleep(0.2)
    assert u[0] == b"* 3 EXISTS\r\n" and re.fullmatch(rb"\* \d RECENT\r\n", u[1]), u
    assert u[-1] == b"* STATUS Trash (MESSAGES 0)\r\n"
