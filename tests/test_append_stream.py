"""APPEND of messages above append_buffer_size: the literal goes through a
bounded buffer into an unlinked spool file, is parsed from there, and is
streamed into PostgreSQL with COPY (cmd_append.c, lib/spool.c, pg_copy_in in
lib/pg.c).  A private imapd with a small append_buffer_size keeps the
messages small and the tests fast."""
import base64
import hashlib
import itertools
import os
import re
import subprocess
import threading
import time

import pytest

from conftest import BUILD
from imap import Conn

_n = itertools.count()

SMALL_BUFFER = 64 * 1024


@pytest.fixture
def account(stack):
    login = "as%d@example.com" % next(_n)
    stack.imapctl("user", "add", login, stdin="pw\n")
    return login, "pw"


@pytest.fixture
def spool(tmp_path):
    d = tmp_path / "spool"
    d.mkdir()
    return str(d)


@pytest.fixture
def big_imapd(imapd_factory, spool):
    return imapd_factory("append_buffer_size = %d\nspool_dir = %s\nworkers = 1" % (SMALL_BUFFER, spool))


def connect(inst, account):
    c = Conn("127.0.0.1", inst.port, timeout=60)
    c.login(*account)
    return c


def append_sync(c, mailbox, msg, extra=b"", tag=None):
    tag = tag or c.next_tag()
    c.send(b"%s APPEND %s%s {%d}\r\n" % (tag.encode(), mailbox.encode(), extra, len(msg)))
    r = c.read_response()
    assert r == b"+ Ready for literal data\r\n", r
    c.send(msg + b"\r\n")
    return c.collect(tag, timeout=60)


def append_nonsync(c, mailbox, msg, tag=None):
    tag = tag or c.next_tag()
    c.send(b"%s APPEND %s {%d+}\r\n%s\r\n" % (tag.encode(), mailbox.encode(), len(msg), msg))
    return c.collect(tag, timeout=60)


ATTACHMENT = bytes((i * 7 + (i >> 8)) & 0xFF for i in range(200 * 1024))
ATTACHMENT_B64 = base64.encodebytes(ATTACHMENT).replace(b"\n", b"\r\n")
TEXT_PART = b"Hello,\r\nthe report is attached.\r\n"


def multipart(subject=b"report"):
    return (b"From: Alice <alice@example.com>\r\n"
            b"To: bob@example.org\r\n"
            b"Subject: " + subject + b"\r\n"
            b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
            b"Message-ID: <big@example.com>\r\n"
            b"MIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=\"=_b1\"\r\n"
            b"\r\n"
            b"--=_b1\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"\r\n" + TEXT_PART +
            b"\r\n--=_b1\r\n"
            b"Content-Type: application/octet-stream; name=\"data.bin\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename=\"data.bin\"\r\n"
            b"\r\n" + ATTACHMENT_B64 +
            b"\r\n--=_b1--\r\n")


def filler(n, seed=0):
    """A plain message of about n octets, different for each seed."""
    head = b"From: f@example.com\r\nSubject: filler %d\r\n\r\n" % seed
    line = (b"%08d " % seed) + b"x" * 69 + b"\r\n"
    return head + line * ((n - len(head)) // len(line) + 1)


def count(stack, sql, login):
    return int(stack.psql(sql % login))


def messages(stack, login):
    return count(stack, "SELECT count(*) FROM message m JOIN account a ON a.id = m.account_id "
                        "WHERE a.login = '%s'", login)


def stage_rows(stack, login):
    return count(stack, "SELECT count(*) FROM append_stage s JOIN account a ON a.id = s.account_id "
                        "WHERE a.login = '%s'", login)


def spool_fds(pid, spool_dir):
    """Open descriptors of pid that are files in spool_dir (nameless
    O_TMPFILE files show as "<dir>/#<inode> (deleted)")."""
    n = 0
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if target.startswith(spool_dir + "/"):
            n += 1
    return n


def wait_for(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_big_multipart_stored_byte_exact(stack, account, big_imapd, spool):
    msg = multipart()
    assert len(msg) > 4 * SMALL_BUFFER
    c = connect(big_imapd, account)
    worker = big_imapd.workers()[0]
    _, tagged = append_sync(c, "INBOX", msg, extra=b' (\\Seen $Big) "07-Feb-1994 21:52:25 -0800"', tag="a")
    m = re.match(rb"a OK \[APPENDUID (\d+) 1\] Append completed\r\n", tagged)
    assert m, tagged
    uidvalidity = int(m.group(1))
    # a non-synchronizing literal (RFC 7888) takes the same way
    msg2 = filler(3 * SMALL_BUFFER + 17, seed=2)
    _, tagged = append_nonsync(c, "INBOX", msg2, tag="b")
    assert tagged == b"b OK [APPENDUID %d 2] Append completed\r\n" % uidvalidity

    untagged, _ = c.run("SELECT INBOX")
    assert b"* 2 EXISTS\r\n" in untagged
    assert b"* OK [UIDNEXT 3] Predicted next UID\r\n" in untagged
    untagged, _ = c.run("UID FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE)")
    assert untagged == [b'* 1 FETCH (UID 1 FLAGS (\\Seen $Big \\Recent) '
                        b'INTERNALDATE "08-Feb-1994 05:52:25 +0000" RFC822.SIZE %d)\r\n' % len(msg)]
    untagged, _ = c.run("FETCH 1 BODY.PEEK[]")
    assert untagged == [b"* 1 FETCH (BODY[] {%d}\r\n%s)\r\n" % (len(msg), msg)]
    untagged, _ = c.run("FETCH 1 BODY.PEEK[1]")
    assert untagged == [b"* 1 FETCH (BODY[1] {%d}\r\n%s)\r\n" % (len(TEXT_PART), TEXT_PART)]
    untagged, _ = c.run("FETCH 1 BODY.PEEK[2]")
    assert untagged == [b"* 1 FETCH (BODY[2] {%d}\r\n%s)\r\n" % (len(ATTACHMENT_B64), ATTACHMENT_B64)]
    assert base64.b64decode(ATTACHMENT_B64) == ATTACHMENT
    untagged, _ = c.run("FETCH 1 BODYSTRUCTURE")
    # RFC 3501 7.4.2: body-type-mpart with extension data; sizes in octets,
    # lines of the text part counted
    assert untagged == [
        b'* 1 FETCH (BODYSTRUCTURE (("text" "plain" ("charset" "utf-8") NIL NIL "7BIT" %d 2 NIL NIL NIL NIL)'
        b'("application" "octet-stream" ("name" "data.bin") NIL NIL "base64" %d NIL '
        b'("attachment" ("filename" "data.bin")) NIL NIL) "mixed" ("boundary" "=_b1") NIL NIL NIL))\r\n'
        % (len(TEXT_PART), len(ATTACHMENT_B64))]
    untagged, _ = c.run("FETCH 1 ENVELOPE")
    assert untagged[0].startswith(b'* 1 FETCH (ENVELOPE ("Mon, 7 Feb 1994 21:52:25 -0800" "report" ')
    untagged, _ = c.run("FETCH 2 BODY.PEEK[]")
    assert untagged == [b"* 2 FETCH (BODY[] {%d}\r\n%s)\r\n" % (len(msg2), msg2)]
    # the blob row holds the bytes under their SHA-256; no stage row is left
    assert stack.psql("SELECT size FROM blob WHERE hash = '\\x%s'" % hashlib.sha256(msg).hexdigest()) \
        == str(len(msg))
    assert stage_rows(stack, account[0]) == 0
    # the spool files are closed
    assert spool_fds(worker, spool) == 0
    assert os.listdir(spool) == []


def test_big_message_twice_is_one_blob(stack, account, big_imapd):
    msg = filler(5 * SMALL_BUFFER, seed=next(_n) + 1000)
    c = connect(big_imapd, account)
    c.ok('CREATE "second"')
    for box in ("INBOX", "second", "INBOX"):
        _, tagged = append_sync(c, box, msg)
        assert b" OK [APPENDUID " in tagged, tagged
    h = hashlib.sha256(msg).hexdigest()
    assert stack.psql("SELECT count(*) FROM blob WHERE hash = '\\x%s'" % h) == "1"
    assert messages(stack, account[0]) == 3
    assert stage_rows(stack, account[0]) == 0
    # the bytes were sent once: the later APPENDs found the blob
    log = big_imapd.log_text()
    assert log.count("APPEND: streaming %d octets into the stage" % len(msg)) == 1
    assert log.count("APPEND: blob of %d octets already stored, not sent again" % len(msg)) == 2
    c.ok("SELECT second")
    untagged, _ = c.run("FETCH 1 BODY.PEEK[]")
    assert untagged == [b"* 1 FETCH (BODY[] {%d}\r\n%s)\r\n" % (len(msg), msg)]


def test_disconnect_mid_literal_leaves_nothing(stack, account, big_imapd, spool):
    c = connect(big_imapd, account)
    worker = big_imapd.workers()[0]
    msg = filler(40 * SMALL_BUFFER, seed=7)
    c.send(b"x APPEND INBOX {%d}\r\n" % len(msg))
    assert c.read_response() == b"+ Ready for literal data\r\n"
    c.send(msg[:len(msg) // 2])
    # the spool file exists while the literal arrives
    assert wait_for(lambda: spool_fds(worker, spool) == 1)
    c.close()
    assert wait_for(lambda: spool_fds(worker, spool) == 0)
    assert messages(stack, account[0]) == 0
    assert stage_rows(stack, account[0]) == 0
    assert os.listdir(spool) == []
    # the worker goes on serving
    c = connect(big_imapd, account)
    assert b" OK [APPENDUID " in append_sync(c, "INBOX", msg)[1]


class StageLock:
    """Holds a lock on append_stage that COPY waits for (COPY takes ROW
    EXCLUSIVE before it asks for data), so a test can act while an APPEND
    sits in its COPY."""

    def __init__(self, stack):
        self.p = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", stack.conninfo],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.p.stdin.write("BEGIN; LOCK TABLE append_stage IN SHARE MODE; SELECT 'locked';\n")
        self.p.stdin.flush()
        assert self.p.stdout.readline().strip() == "locked"

    def release(self):
        if self.p.poll() is None:
            self.p.stdin.write("COMMIT;\n")
            self.p.stdin.close()
            self.p.wait(10)


def pg_log(stack):
    with open(os.path.join(stack.dir, "postgresql.log"), errors="replace") as f:
        return f.read()


def copy_backends(stack):
    return stack.psql("SELECT pid FROM pg_stat_activity WHERE query LIKE 'COPY append_stage%%' "
                      "AND state = 'active'").split()


def test_disconnect_during_copy_commits_nothing(stack, account, big_imapd, spool):
    c = connect(big_imapd, account)
    worker = big_imapd.workers()[0]
    msg = filler(4 * SMALL_BUFFER, seed=11)
    lock = StageLock(stack)
    try:
        c.send(b"x APPEND INBOX {%d+}\r\n%s\r\n" % (len(msg), msg))
        assert wait_for(lambda: len(copy_backends(stack)) == 1)
        c.close()
        assert wait_for(lambda: spool_fds(worker, spool) == 0)
    finally:
        lock.release()
    # the COPY got its data request after the client left: CopyFail
    assert wait_for(lambda: len(copy_backends(stack)) == 0)
    assert wait_for(lambda: "COPY from stdin failed: cancelled" in pg_log(stack))
    assert stage_rows(stack, account[0]) == 0
    assert messages(stack, account[0]) == 0


def test_database_lost_during_copy_answers_unavailable(stack, account, big_imapd):
    c = connect(big_imapd, account)
    msg = filler(4 * SMALL_BUFFER, seed=12)
    lock = StageLock(stack)
    try:
        c.send(b"x APPEND INBOX {%d+}\r\n%s\r\n" % (len(msg), msg))
        assert wait_for(lambda: len(copy_backends(stack)) == 1)
        pid = copy_backends(stack)[0]
        stack.psql("SELECT pg_terminate_backend(%s)" % pid)
        _, tagged = c.collect("x", timeout=30)
        assert tagged == b"x NO [UNAVAILABLE] Service temporarily unavailable, try again\r\n"
    finally:
        lock.release()
    assert stage_rows(stack, account[0]) == 0
    assert messages(stack, account[0]) == 0
    # the pool reconnects; the same APPEND goes through
    deadline = time.monotonic() + 20
    while True:
        _, tagged = append_sync(c, "INBOX", msg)
        if b" OK [APPENDUID " in tagged or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert b" OK [APPENDUID " in tagged, tagged
    assert stage_rows(stack, account[0]) == 0


def test_big_append_trycreate_and_toobig(stack, account, imapd_factory, spool):
    inst = imapd_factory("append_buffer_size = %d\nmax_append_size = 256k\nspool_dir = %s"
                         % (SMALL_BUFFER, spool))
    c = connect(inst, account)
    msg = filler(2 * SMALL_BUFFER, seed=13)
    _, tagged = append_sync(c, "nosuchbox", msg, tag="t")
    assert tagged == b"t NO [TRYCREATE] No such mailbox\r\n"
    _, tagged = append_nonsync(c, "nosuchbox", msg, tag="u")
    assert tagged == b"u NO [TRYCREATE] No such mailbox\r\n"
    # known before a byte went to the database
    assert "into the stage" not in inst.log_text()
    # over max_append_size: refused before a byte is read
    c.send(b"big APPEND INBOX {300000}\r\n")
    assert c.read_response() == b"big NO [TOOBIG] Literal too large\r\n"
    assert c.run("NOOP", tag="n")[1] == b"n OK NOOP completed\r\n"
    c.send(b"big2 APPEND INBOX {300000+}\r\n")
    assert c.read_response().startswith(b"big2 BAD ")
    c.expect_closed()
    assert messages(stack, account[0]) == 0
    assert stage_rows(stack, account[0]) == 0
    assert os.listdir(spool) == []


def test_spool_dir_missing_answers_no(stack, account, imapd_factory, tmp_path):
    missing = str(tmp_path / "nosuchdir")
    inst = imapd_factory("append_buffer_size = %d\nspool_dir = %s" % (SMALL_BUFFER, missing))
    c = connect(inst, account)
    msg = filler(2 * SMALL_BUFFER, seed=14)
    # {N}: answered before the client sends the message
    c.send(b"s APPEND INBOX {%d}\r\n" % len(msg))
    assert c.read_response() == (b"s NO [UNAVAILABLE] Cannot take the message now "
                                 b"(temporary spool failure), try again later\r\n")
    # {N+}: the octets are read and dropped, then NO
    _, tagged = append_nonsync(c, "INBOX", msg, tag="n")
    assert tagged == (b"n NO [UNAVAILABLE] Cannot take the message now "
                      b"(temporary spool failure), try again later\r\n")
    # the session goes on; a message below append_buffer_size needs no spool
    assert c.run("NOOP", tag="o")[1] == b"o OK NOOP completed\r\n"
    _, tagged = append_sync(c, "INBOX", filler(1000, seed=15))
    assert b" OK [APPENDUID " in tagged
    assert messages(stack, account[0]) == 1
    # logged with the session id, naming the directory and the reason
    lines = [x for x in inst.log_text().splitlines() if "cannot create a spool file" in x]
    assert len(lines) == 2
    assert all(missing in x and "No such file or directory" in x and "sid=" in x for x in lines)


def rss(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, v = line.split(":", 1)
            if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0]) * 1024
    return out


def reset_hwm(pid):
    """Linux 4.0+: writing 5 to clear_refs resets VmHWM to the current
    RSS."""
    try:
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@pytest.mark.skipif("asan" in os.path.basename(BUILD),
                    reason="memory is measured on the normal build (ASan has its own shadow and quarantine)")
def test_worker_memory_bounded_with_concurrent_big_appends(stack, account, imapd_factory):
    # default append_buffer_size (1 MiB); one worker takes every session
    inst = imapd_factory("workers = 1")
    worker = inst.workers()[0]
    n, size = 8, 8 << 20
    conns = [connect(inst, account) for _ in range(n)]
    msgs = [filler(size, seed=100 + k) for k in range(n)]
    # warm up (first APPEND, pool connections, TLS-free session buffers)
    for k, c in enumerate(conns):
        assert b" OK " in append_nonsync(c, "INBOX", b"Subject: warm %d\r\n\r\nhi\r\n" % k)[1]
    before = rss(worker)
    can_reset = reset_hwm(worker)
    peak = {"VmRSS": 0, "RssAnon": 0}
    done = threading.Event()

    def sample():
        # VmHWM covers the peak when it can be reset; sampling is the
        # fallback, and the only view of the anonymous part
        while not done.is_set():
            try:
                now = rss(worker)
            except OSError:
                continue
            for k in peak:
                peak[k] = max(peak[k], now[k])
            time.sleep(0.002)

    results = [None] * n

    def run(k):
        results[k] = append_nonsync(conns[k], "INBOX", msgs[k])[1]

    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    sampler.join()
    after = rss(worker)
    for r in results:
        assert r is not None and b" OK [APPENDUID " in r, r
    high = max(after["VmHWM"], peak["VmRSS"]) if can_reset else peak["VmRSS"]
    growth = high - before["VmRSS"]
    anon = peak["RssAnon"] - before["RssAnon"]
    # Held in memory, 8 x 8 MiB would be 64 MiB of heap, and more (libpq's
    # copy of each parameter): about 90 MiB measured.  Streamed, a session
    # holds its 64 KiB spool buffer and at most max_input_queue of input,
    # the pool a COPY chunk per connection: a few MiB of heap.  The RSS
    # also counts the page-cache pages of the messages being parsed while
    # they are mapped (clean file pages; crypt_threads = 2 parses at a
    # time, 16 MiB): about 18 MiB in all measured.
    print("worker RSS before %.1f MiB, peak growth %.1f MiB, anonymous %.1f MiB (VmHWM reset: %s)"
          % (before["VmRSS"] / 2**20, growth / 2**20, anon / 2**20, can_reset))
    assert growth < 32 * 2**20, "worker peak RSS grew by %.1f MiB" % (growth / 2**20)
    assert anon < 16 * 2**20, "worker heap grew by %.1f MiB" % (anon / 2**20)
    assert stage_rows(stack, account[0]) == 0
    assert messages(stack, account[0]) == 2 * n
