#!/usr/bin/env python3
"""Benchmarks that print figures (make bench).

Starts its own stack in a temporary directory (as the tests do), then:
- APPEND throughput from several concurrent sessions;
- SELECT time on 10k, 100k and 1M-message mailboxes (filled with SQL so the
  set-up takes seconds, with some expunged holes);
- FETCH 1:* (FLAGS) and FETCH 1:* (BODYSTRUCTURE) on the 100k mailbox.
Figures are wall-clock times on this machine, client included.
"""
import os
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


def fill(st, user, name, n, holes_every=1000):
    """A mailbox of n messages sharing one blob, with every holes_every-th
    UID expunged (a tombstone), made with SQL."""
    st.psql("""
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
    st.psql("""
      INSERT INTO expunged (account_id, mailbox_id, uid, modseq)
      SELECT m.account_id, m.id, g, g + 1 FROM mailbox m JOIN account a ON a.id = m.account_id,
             generate_series(%(h)d, %(n)d, %(h)d) g
       WHERE a.login = '%(u)s' AND m.name = '%(name)s'
    """ % {"u": user, "name": name, "n": n, "h": holes_every})
    st.psql("ANALYZE message; ANALYZE expunged")


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


def main():
    tmp = tempfile.mkdtemp(prefix="imapbench-")
    st = conftest.Stack(tmp)
    st.nodes = 1
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
    finally:
        st.run("down", "--purge", check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
