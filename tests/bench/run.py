#!/usr/bin/env python3
"""Benchmarks that print figures (make bench).

Starts its own stack in a temporary directory (as the tests do), then:
- APPEND throughput from several concurrent sessions;
- SELECT time on 10k, 100k and 1M-message mailboxes (filled with SQL so the
  set-up takes seconds, with some expunged holes);
- FETCH 1:* (FLAGS) and FETCH 1:* (BODYSTRUCTURE) on the 100k mailbox.
- RFC 7162 resynchronisation of 100 changes (80 flag changes, 20 expunges)
  on the 10k, 100k and 1M mailboxes, by SELECT (QRESYNC ...) and by
  UID FETCH 1:* (FLAGS) (CHANGEDSINCE n VANISHED);
- STOREs per second on one hot mailbox from 50 CONDSTORE sessions spread
  over 3 imapd nodes, with latency and a check that every STORE got a
  modseq of its own.
Figures are wall-clock times on this machine, client included.
"""
import os
import re
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import conftest  # noqa: E402
from imap import Conn  # noqa: E402

MSG = (b"From: Bench <bench@example.com>\r\nTo: you@example.com\r\nSubject: bench %d\r\n"
       b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nMIME-Version: 1.0\r\n"
       b"Content-Type: multipart/alternative; boundary=b1\r\n\r\n"
       b"--b1\r\nContent-Type: text/plain\r\n\r\nhello %d\r\n"
       b"--b1\r\nContent-Type: text/html\r\n\r\n<p>hello %d</p>\r\n--b1--\r\n")


def append_one(c, mailbox, body):
    tag = c.next_tag()
    c.send(b"%s APPEND %s {%d+}\r\n%s\r\n" % (tag.encode(), mailbox.encode(), len(body), body))
    _, tagged = c.collect(tag)
    assert b" OK " in tagged, tagged


def bench_append(st, user, n_sessions=4, per_session=500):
    conns = []
    for _ in range(n_sessions):
        c = Conn("127.0.0.1", st.node_port(0), timeout=60)
        c.login(user, "pw")
        conns.append(c)

    def run(c, k):
        for i in range(per_session):
            append_one(c, "INBOX", MSG % (k * per_session + i, i, i))

    t0 = time.monotonic()
    threads = [threading.Thread(target=run, args=(c, k)) for k, c in enumerate(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.monotonic() - t0
    total = n_sessions * per_session
    print("APPEND: %d messages from %d sessions in %.2f s = %.0f messages/s"
          % (total, n_sessions, dt, total / dt))


def bench_append_big(st, user, size=10 << 20, runs=5):
    """APPEND of a message above append_buffer_size (spooled to a file,
    parsed there, COPYed into PostgreSQL): distinct messages, so no blob
    is deduplicated, one session, client included."""
    c = Conn("127.0.0.1", st.node_port(0), timeout=120)
    c.login(user, "pw")
    times = []
    nonce = time.time_ns()
    for k in range(runs):
        line = (b"%08d %d " % (k, nonce)) + b"z" * 50 + b"\r\n"
        body = b"Subject: big %d\r\n\r\n" % k + line * (size // len(line))
        t0 = time.monotonic()
        append_one(c, "INBOX", body)
        times.append(time.monotonic() - t0)
    c.close()
    best = min(times)
    print("APPEND of a %.0f MiB message: best %.0f ms, mean %.0f ms (%.0f MiB/s at best)"
          % (size / 2**20, best * 1000, sum(times) / len(times) * 1000, size / 2**20 / best))


def psql_long(st, sql):
    """st.psql() without its 30 s timeout: filling the 1M mailbox takes
    longer than that on a busy machine."""
    import subprocess
    r = subprocess.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", st.conninfo, "-c", sql],
                       capture_output=True, text=True, check=True, timeout=900)
    return r.stdout.strip()


def fill(st, user, name, n, holes_every=1000):
    """A mailbox of n messages sharing one blob, with every holes_every-th
    UID expunged (a tombstone), made with SQL."""
    psql_long(st, """
      WITH a AS (SELECT id, tenant_id FROM account WHERE login = '%(u)s'),
      mb AS (INSERT INTO mailbox (account_id, name, uidnext, highestmodseq)
             SELECT id, '%(name)s', %(n)d + 1, %(n)d + 2 FROM a RETURNING account_id, id),
      src AS (SELECT m.blob_hash, m.tenant_id, m.size FROM message m, a
               WHERE m.account_id = a.id LIMIT 1)
      INSERT INTO message (account_id, mailbox_id, uid, modseq, flags, keywords, internaldate,
                           size, blob_hash, tenant_id)
      SELECT mb.account_id, mb.id, g, g + 1, (g %% 3 = 0)::int, '{}', now(), src.size,
             src.blob_hash, src.tenant_id
        FROM mb, src, generate_series(1, %(n)d) g
       WHERE g %% %(h)d <> 0
    """ % {"u": user, "name": name, "n": n, "h": holes_every})
    psql_long(st, """
      INSERT INTO expunged (account_id, mailbox_id, uid, modseq)
      SELECT m.account_id, m.id, g, g + 1 FROM mailbox m JOIN account a ON a.id = m.account_id,
             generate_series(%(h)d, %(n)d, %(h)d) g
       WHERE a.login = '%(u)s' AND m.name = '%(name)s'
    """ % {"u": user, "name": name, "n": n, "h": holes_every})
    psql_long(st, "ANALYZE message; ANALYZE expunged")


def timed(c, command, repeat=3):
    best = None
    untagged = None
    for _ in range(repeat):
        t0 = time.monotonic()
        untagged, tagged = c.run(command, timeout=600)
        dt = time.monotonic() - t0
        assert b" OK " in tagged, tagged
        best = dt if best is None else min(best, dt)
    return best, untagged


def timed_bulk(c, command, repeat=3):
    """Like timed(), for responses of many lines: reads raw bytes up to the
    tagged OK, so the Python client's per-line parsing is not measured."""
    best, lines = None, 0
    for _ in range(repeat):
        tag = c.next_tag().encode()
        end = b"\r\n" + tag + b" OK "
        t0 = time.monotonic()
        c.send(tag + b" " + command.encode() + b"\r\n")
        data = bytearray()
        while end not in data[-4096:]:
            chunk = c.sock.recv(1 << 20)
            assert chunk, "connection closed"
            data += chunk
        while not data.endswith(b"\r\n"):
            data += c.sock.recv(65536)
        dt = time.monotonic() - t0
        lines = data.count(b" FETCH (")
        best = dt if best is None else min(best, dt)
    return best, lines


def raw_command(c, command):
    """Sends one command and reads raw bytes up to and including its tagged
    response; returns (seconds, bytes). No per-line parsing is timed."""
    tag = c.next_tag().encode()
    t0 = time.monotonic()
    c.send(tag + b" " + command.encode() + b"\r\n")
    data = bytearray(c.buf)
    c.buf.clear()
    scan = 0
    while True:
        if data.startswith(tag + b" "):
            i = 0
        else:
            i = data.find(b"\r\n" + tag + b" ", scan)
            i = i + 2 if i >= 0 else -1
        if i >= 0 and data.find(b"\r\n", i) >= 0:
            break
        scan = max(0, len(data) - len(tag) - 3)
        c.sock.settimeout(600)
        chunk = c.sock.recv(1 << 20)
        assert chunk, "connection closed"
        data += chunk
    dt = time.monotonic() - t0
    end = data.find(b"\r\n", i) + 2
    c.buf += data[end:]
    assert data[i:end].startswith(tag + b" OK "), bytes(data[i:end])
    return dt, bytes(data[:end])


def uid_set(text):
    out = set()
    for part in text.split(b","):
        if b":" in part:
            a, b = part.split(b":")
            out.update(range(min(int(a), int(b)), max(int(a), int(b)) + 1))
        else:
            out.add(int(part))
    return out


def resync_counts(data):
    """(UIDs in FETCH responses, UIDs in VANISHED (EARLIER) responses)."""
    fetched = {int(m) for m in re.findall(rb"\r\n\* \d+ FETCH \(UID (\d+) ", b"\r\n" + data)}
    gone = set()
    for m in re.findall(rb"\* VANISHED \(EARLIER\) ([0-9:,]+)\r\n", data):
        gone |= uid_set(m)
    return fetched, gone


def bench_resync(st, user, sizes=(10000, 100000, 1000000), runs=7, seed=7162):
    """Resynchronising 100 changes (80 flag changes, 20 expunges, made
    through IMAP so modseqs and tombstones are real) on big mailboxes, by
    SELECT (QRESYNC ...) and by UID FETCH 1:* (FLAGS) (CHANGEDSINCE n
    VANISHED). Median of `runs`, each on a fresh connection that did
    ENABLE QRESYNC; a plain SELECT on a fresh connection is the baseline."""
    import random
    import statistics
    rng = random.Random(seed)
    for n in sizes:
        name = "m%d" % n
        c = Conn("127.0.0.1", st.node_port(0), timeout=600)
        c.login(user, "pw")
        c.ok("ENABLE QRESYNC")
        u, _ = c.ok("SELECT %s" % name, timeout=600)
        text = b"".join(u)
        uv = int(re.search(rb"\[UIDVALIDITY (\d+)\]", text).group(1))
        h0 = int(re.search(rb"\[HIGHESTMODSEQ (\d+)\]", text).group(1))
        # 100 distinct live messages (fill() leaves every 1000th UID a hole)
        uids = [x for x in rng.sample(range(1, n + 1), 150) if x % 1000][:100]
        flagged, expunged = uids[:80], uids[80:]
        for x in flagged[:50]:                       # one command each
            c.ok("UID STORE %d +FLAGS.SILENT (\\Flagged)" % x)
        for k in range(3):                           # 10 messages per command
            c.ok("UID STORE %s +FLAGS.SILENT (\\Flagged $Resync)"
                 % ",".join(map(str, flagged[50 + 10 * k:60 + 10 * k])))
        c.ok("UID STORE %s +FLAGS.SILENT (\\Deleted)" % ",".join(map(str, expunged)))
        for x in expunged[:10]:                      # one expunge each
            c.ok("UID EXPUNGE %d" % x)
        c.ok("UID EXPUNGE %s" % ",".join(map(str, expunged[10:])))
        c.run("LOGOUT")
        c.close()
        t_sel, t_fetch, t_plain = [], [], []
        counts = set()
        for _ in range(runs):
            d = Conn("127.0.0.1", st.node_port(0), timeout=600)
            d.login(user, "pw")
            d.ok("ENABLE QRESYNC")
            dt, data = raw_command(d, "SELECT %s (QRESYNC (%d %d))" % (name, uv, h0))
            t_sel.append(dt)
            f, g = resync_counts(data)
            assert f == set(flagged) and g == set(expunged), (len(f), len(g))
            dt, data = raw_command(d, "UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % h0)
            t_fetch.append(dt)
            f2, g2 = resync_counts(data)
            assert f2 == set(flagged) and g2 == set(expunged), (len(f2), len(g2))
            counts.add((len(f), len(g), len(f2), len(g2)))
            d.run("LOGOUT")
            d.close()
            d = Conn("127.0.0.1", st.node_port(0), timeout=600)
            d.login(user, "pw")
            d.ok("ENABLE QRESYNC")
            dt, _ = raw_command(d, "SELECT %s" % name)
            t_plain.append(dt)
            d.run("LOGOUT")
            d.close()
        (nf, ng, _, _), = counts
        print("RESYNC %s: QRESYNC SELECT %.1f ms, UID FETCH CHANGEDSINCE VANISHED %.1f ms "
              "(%d FETCH, %d VANISHED); plain SELECT %.1f ms (median of %d, load average %.1f)"
              % (name, statistics.median(t_sel) * 1000, statistics.median(t_fetch) * 1000,
                 nf, ng, statistics.median(t_plain) * 1000, runs, os.getloadavg()[0]))


class _HotSession:
    def __init__(self, k, conn, uids, rng):
        self.k = k
        self.conn = conn
        self.sock = conn.sock
        self.buf = bytearray(conn.buf)
        self.kw = b"$hot%d" % k
        self.uids = uids
        self.rng = rng
        self.n = 0
        self.tag = None
        self.uid = None
        self.add = False
        self.sent = 0.0
        self.modseqs = []
        self.lat = []
        self.missing = 0
        self.other = 0
        self.done = False

    def send_next(self):
        # +FLAGS on a random message, then -FLAGS on the same one: each STORE
        # really changes the message, so each must take a new modseq.
        if not self.add:
            self.uid = self.rng.choice(self.uids)
        self.add = not self.add
        self.n += 1
        self.tag = b"h%d" % self.n
        self.sent = time.perf_counter()
        self.sock.sendall(b"%s UID STORE %d %sFLAGS.SILENT (%s)\r\n"
                          % (self.tag, self.uid, b"+" if self.add else b"-", self.kw))


_OWN_FETCH = re.compile(rb"\* \d+ FETCH \(UID (\d+) (?:FLAGS \([^)]*\) )?MODSEQ \((\d+)\)\)\r\n")


def bench_hot_store(st, user, sessions=50, seconds=10.0, n_msgs=1000, seed=7162):
    """STOREs per second on one hot mailbox from `sessions` sessions spread
    over the stack's nodes, each alternating UID STORE u +FLAGS.SILENT /
    -FLAGS.SILENT of a keyword of its own on random messages for `seconds`.
    One client thread drives all sessions with non-blocking sockets and a
    selector (no per-session threads); its CPU time is reported to show
    whether the client limits the figure. Every STORE's MODSEQ (sent even
    for .SILENT under CONDSTORE) is collected and must be distinct."""
    import random
    import selectors
    rng = random.Random(seed)
    fill(st, user, "hot", n_msgs, holes_every=n_msgs + 1)
    uids = list(range(1, n_msgs + 1))
    c = Conn("127.0.0.1", st.node_port(0), timeout=60)
    c.login(user, "pw")
    u, _ = c.ok("STATUS hot (HIGHESTMODSEQ)")
    h0 = int(re.search(rb"HIGHESTMODSEQ (\d+)", u[0]).group(1))
    ss = []
    for k in range(sessions):
        d = Conn("127.0.0.1", st.node_port(k % st.nodes), timeout=60)
        d.login(user, "pw")
        d.ok("SELECT hot (CONDSTORE)")
        ss.append(_HotSession(k, d, uids, random.Random(rng.random())))
    sel = selectors.DefaultSelector()
    for s in ss:
        s.sock.setblocking(False)
        sel.register(s.sock, selectors.EVENT_READ, s)
    failures = []
    cpu0, t0 = time.process_time(), time.perf_counter()
    end = t0 + seconds
    for s in ss:
        s.send_next()
    active = len(ss)
    last = t0
    while active:
        for key, _ in sel.select(timeout=30):
            s = key.data
            try:
                chunk = s.sock.recv(1 << 18)
            except BlockingIOError:
                continue
            if not chunk:
                raise ConnectionError("session %d closed: %r" % (s.k, bytes(s.buf[-200:])))
            s.buf += chunk
            while s.tag is not None:
                if s.buf.startswith(s.tag + b" "):
                    i = 0
                else:
                    i = s.buf.find(b"\r\n" + s.tag + b" ")
                    if i < 0:
                        break
                    i += 2
                j = s.buf.find(b"\r\n", i)
                if j < 0:
                    break
                now = time.perf_counter()
                head = bytes(s.buf[:i])
                tagged = bytes(s.buf[i:j])
                del s.buf[:j + 2]
                if b" OK " not in tagged:
                    failures.append(tagged)
                # The STORE's own line comes first; the sync before the
                # tagged OK may add the same UID again, changed later by
                # another session (with FLAGS when .SILENT met an untold
                # change).
                own = [int(m) for uid, m in _OWN_FETCH.findall(head) if int(uid) == s.uid]
                if own:
                    s.modseqs.append(own[0])
                else:
                    s.missing += 1
                s.other += head.count(b" FETCH (") - len(own)
                if now < end:
                    s.lat.append(now - s.sent)
                    last = now
                    s.send_next()
                else:
                    s.lat.append(now - s.sent)
                    last = now
                    s.tag = None
                    active -= 1
        if time.perf_counter() > end + 60:
            raise TimeoutError("STOREs still running 60 s after the end")
    elapsed = last - t0
    cpu = time.process_time() - cpu0
    for s in ss:
        sel.unregister(s.sock)
        s.sock.setblocking(True)
        s.conn.close()
    total = sum(len(s.lat) for s in ss)
    lat = sorted(x for s in ss for x in s.lat)
    modseqs = [m for s in ss for m in s.modseqs]
    missing = sum(s.missing for s in ss)
    u, _ = c.ok("STATUS hot (HIGHESTMODSEQ)")
    h1 = int(re.search(rb"HIGHESTMODSEQ (\d+)", u[0]).group(1))
    c.close()
    distinct = len(set(modseqs))
    print("HOT STORE: %d sessions over %d nodes, one mailbox of %d messages, %.0f s: "
          "%d STOREs = %.0f STOREs/s, latency p50 %.1f ms, p99 %.1f ms (load average %.1f)"
          % (sessions, st.nodes, n_msgs, elapsed, total, total / elapsed,
             lat[len(lat) // 2] * 1000, lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
             os.getloadavg()[0]))
    print("HOT STORE: modseqs %d collected, %d distinct, %d STOREs without their MODSEQ, "
          "%d failed; HIGHESTMODSEQ rose by %d; %d other sessions' FETCHes received; "
          "client CPU %.0f%% of one core"
          % (len(modseqs), distinct, missing, len(failures), h1 - h0,
             sum(s.other for s in ss), 100.0 * cpu / elapsed))
    assert not failures, failures[:5]
    assert missing == 0 and distinct == len(modseqs) == total, \
        "STOREs shared a modseq or lacked one"
    assert all(h0 < m <= h1 for m in modseqs)


def main():
    tmp = tempfile.mkdtemp(prefix="imapbench-")
    st = conftest.Stack(tmp)
    if st.nodes < 3:
        # bench_hot_store spreads its sessions over 3 nodes: node k listens
        # on port + k, so the port blocks must be 3 wide.
        st.nodes = 3
        st.imap_port = conftest.free_port_block(3)
        st.imaps_port = conftest.free_port_block(3)
        if hasattr(st, "metrics_port"):
            st.metrics_port = conftest.free_port_block(4)
    with open(st.extra, "w") as f:
        f.write("log_level = info\n")
    r = st.run("up", "--pg-nosync", check=False)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        st.run("down", "--purge", check=False)
        return 1
    try:
        st.imapctl("tenant", "add", "example.com")
        user = "bench@example.com"
        st.imapctl("user", "add", user, stdin="pw\n")
        bench_append(st, user)
        bench_append_big(st, user)
        c = Conn("127.0.0.1", st.node_port(0), timeout=600)
        c.login(user, "pw")
        for n in (10000, 100000, 1000000):
            t0 = time.monotonic()
            fill(st, user, "m%d" % n, n)
            print("filled m%d (%d messages, one hole per 1000) in %.1f s"
                  % (n, n - n // 1000, time.monotonic() - t0))
        for n in (10000, 100000, 1000000):
            dt, untagged = timed(c, "EXAMINE m%d" % n)
            exists = [x for x in untagged if x.endswith(b"EXISTS\r\n")][0].split()[1].decode()
            print("SELECT m%d: %.1f ms (%s messages)" % (n, dt * 1000, exists))
        c.ok("EXAMINE m100000")
        dt, n = timed_bulk(c, "FETCH 1:* (FLAGS)")
        print("FETCH 1:* (FLAGS) on %d messages: %.0f ms" % (n, dt * 1000))
        dt, n = timed_bulk(c, "FETCH 1:* (BODYSTRUCTURE)")
        print("FETCH 1:* (BODYSTRUCTURE) on %d messages: %.0f ms" % (n, dt * 1000))
        c.close()
        bench_resync(st, user)
        bench_hot_store(st, user)
    finally:
        st.run("down", "--purge", check=False)
    # Notification latency, sharing, memory and CPU of idle sessions: a
    # stack of its own (tests/bench/notify_bench.py).
    import notify_bench
    return notify_bench.main()


if __name__ == "__main__":
    sys.exit(main())
