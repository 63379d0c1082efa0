"""Tombstone expiry (RFC 7162 3.2.6 note, 5.3; sql/0005_tombstone_expiry.sql).

Expired tombstones are folded into hole ranges and the mailbox's
vanished_floor rises, while the invariant SELECT builds its view from
(every UID below uidnext is a live message or a hole) keeps holding.

Expiry works on the whole database, so these tests run in a database of
their own in the stack's PostgreSQL (migrated by imapctl like the main
one), with an imapd and, for the last tests, a storaged of their own: the
other test files never see their tombstones disappear."""
import itertools
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import BUILD, ROOT, Imapd, free_port
from imap import Conn

_n = itertools.count(1)
PW = "expiry pw"


class ExpiryDB:
    def __init__(self, stack, name):
        self.stack = stack
        self.name = name
        self.conninfo = "host=127.0.0.1 port=%d dbname=%s user=mail" % (stack.pg_port, name)

    def psql(self, sql):
        r = subprocess.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                            self.conninfo, "-c", sql],
                           capture_output=True, text=True, check=True, timeout=60)
        return r.stdout.strip()

    def imapctl(self, *args, stdin=None, check=True):
        env = dict(os.environ, PG_CONNINFO=self.conninfo)
        return subprocess.run([os.path.join(BUILD, "imapctl"), *args], input=stdin,
                              capture_output=True, text=True, check=check, env=env,
                              cwd=ROOT, timeout=120)

    def expire(self, *args):
        """imapctl expire-tombstones ARGS -> (folded, calls)."""
        out = self.imapctl("expire-tombstones", *args).stdout
        m = re.match(r"(\d+) tombstones? folded into hole ranges \((\d+) calls?, \d+ ms\)\n$", out)
        assert m, out
        return int(m.group(1)), int(m.group(2))


@pytest.fixture(scope="module")
def db(stack):
    name = "expiry_%d" % os.getpid()
    stack.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
    stack.psql("CREATE DATABASE %s" % name)
    d = ExpiryDB(stack, name)
    try:
        d.imapctl("migrate", "--dir", os.path.join(ROOT, "sql"))
        d.imapctl("tenant", "add", "example.com")
        yield d
    finally:
        stack.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)


def sanitizer_report(text):
    return "ERROR: AddressSanitizer" in text or "runtime error:" in text or \
        "ERROR: LeakSanitizer" in text


@pytest.fixture(scope="module")
def server(stack, cert, db, tmp_path_factory):
    d = tmp_path_factory.mktemp("expiry-imapd")
    inst = Imapd(stack, cert, str(d), "pg_conninfo = %s" % db.conninfo)
    yield inst
    rc = inst.stop()
    text = inst.log_text()
    assert not sanitizer_report(text), text[-4000:]
    assert rc in (0, None), "imapd exited with %r\n%s" % (rc, text[-2000:])


class User:
    def __init__(self, db, server):
        self.db = db
        self.server = server
        self.login = "x%d-%d@example.com" % (os.getpid(), next(_n))
        db.imapctl("user", "add", self.login, stdin=PW + "\n")
        self.id = int(db.psql("SELECT id FROM account WHERE login = '%s'" % self.login))

    def connect(self):
        c = Conn("127.0.0.1", self.server.port)
        c.login(self.login, PW)
        return c

    def mailbox(self, name, cols="id"):
        return self.db.psql("SELECT %s FROM mailbox WHERE account_id = %d AND name = '%s'"
                            % (cols, self.id, name))

    def holes(self, name):
        return self.db.psql("SELECT mailbox_holes(%d, %s)" % (self.id, self.mailbox(name)))

    def tombstones(self, name):
        rows = self.db.psql("SELECT uid FROM expunged WHERE account_id = %d AND mailbox_id = %s "
                            "ORDER BY uid" % (self.id, self.mailbox(name)))
        return [int(x) for x in rows.split()]

    def ranges(self, name):
        rows = self.db.psql("SELECT lo || ':' || hi FROM expunged_range WHERE account_id = %d "
                            "AND mailbox_id = %s ORDER BY lo" % (self.id, self.mailbox(name)))
        return rows.split()


@pytest.fixture
def user(db, server):
    return User(db, server)


def message(i):
    return (b"From: a@example.com\r\nTo: b@example.com\r\nSubject: message %d\r\n"
            b"Message-ID: <%d@expiry.example.com>\r\n\r\nbody %d\r\n" % (i, i, i))


def append(c, mailbox, n, first=1):
    for i in range(first, first + n):
        msg = message(i)
        tag = c.next_tag()
        c.send(b"%s APPEND %s {%d}\r\n" % (tag.encode(), mailbox.encode(), len(msg)))
        assert c.read_response() == b"+ Ready for literal data\r\n"
        c.send(msg + b"\r\n")
        _, tagged = c.collect(tag)
        assert b" OK " in tagged, tagged


def uid_set(uids):
    return ",".join(str(u) for u in uids)


def view(c, mailbox):
    """SELECT in this session: (EXISTS, UIDNEXT, UIDs by SEARCH, UIDs by FETCH)."""
    untagged, tagged = c.run("SELECT %s" % mailbox)
    assert b" OK " in tagged, tagged
    text = b"".join(untagged)
    exists = int(re.search(rb"\* (\d+) EXISTS\r\n", text).group(1))
    uidnext = int(re.search(rb"\[UIDNEXT (\d+)\]", text).group(1))
    untagged, _ = c.ok("UID SEARCH ALL")
    search = [int(x) for x in re.match(rb"\* SEARCH ?([\d ]*)\r\n$", untagged[0]).group(1).split()]
    fetched = []
    if exists:
        untagged, _ = c.ok("FETCH 1:* (UID)")
        for i, line in enumerate(untagged):
            m = re.match(rb"\* (\d+) FETCH \(UID (\d+)\)\r\n$", line)
            assert m and int(m.group(1)) == i + 1, line
            fetched.append(int(m.group(2)))
    return exists, uidnext, search, fetched


def assert_view(user, mailbox, live, uidnext):
    """A fresh session sees exactly the live UIDs (the invariant held)."""
    c = user.connect()
    exists, nxt, search, fetched = view(c, mailbox)
    assert (exists, nxt) == (len(live), uidnext)
    assert search == live
    assert fetched == live
    untagged, _ = c.ok("STATUS %s (MESSAGES UIDNEXT)" % ("INBOX" if mailbox == "INBOX" else '"%s"' % mailbox))
    assert re.search(rb"\(MESSAGES %d UIDNEXT %d\)" % (len(live), uidnext), untagged[0]), untagged
    c.run("LOGOUT")


# ---- folding ---------------------------------------------------------------

def test_expiry_folds_tombstones_and_keeps_the_view(db, user):
    db.expire("--retention", "0")	# whatever earlier tests left
    c = user.connect()
    append(c, "INBOX", 30)
    c.ok("SELECT INBOX")
    # every way a message leaves a mailbox: UID EXPUNGE (scattered),
    # EXPUNGE (a run), another expunge next to that run (a different
    # modseq), MOVE of the highest UID, CLOSE
    c.ok("UID STORE 3,7,11 +FLAGS.SILENT (\\Deleted)")
    c.ok("UID EXPUNGE 3,7,11")
    c.ok("UID STORE 15:20 +FLAGS.SILENT (\\Deleted)")
    c.ok("EXPUNGE")
    c.ok("UID STORE 21 +FLAGS.SILENT (\\Deleted)")
    c.ok("UID EXPUNGE 21")
    c.ok("UID MOVE 30 Archive")
    c.ok("UID STORE 1 +FLAGS.SILENT (\\Deleted)")
    c.ok("CLOSE")
    gone = [1, 3, 7, 11] + list(range(15, 22)) + [30]
    live = [u for u in range(1, 31) if u not in gone]
    assert user.tombstones("INBOX") == gone
    inbox = user.mailbox("INBOX")
    top = int(db.psql("SELECT max(modseq) FROM expunged WHERE mailbox_id = %s" % inbox))
    floor0 = int(user.mailbox("INBOX", "vanished_floor"))
    assert floor0 < top
    holes = "1,3,7,11,15:21,30"
    assert user.holes("INBOX") == holes

    folded, calls = db.expire("--retention", "0")
    assert (folded, calls) == (len(gone), 2)

    # in SQL: the tombstones are gone, the ranges hold the same holes, the
    # floor is the highest modseq folded
    assert user.tombstones("INBOX") == []
    assert user.ranges("INBOX") == ["1:1", "3:3", "7:7", "11:11", "15:21", "30:30"]
    assert user.holes("INBOX") == holes
    assert int(user.mailbox("INBOX", "vanished_floor")) == top
    assert int(user.mailbox("INBOX", "highestmodseq")) >= top
    # a fresh session's view: exactly the live messages
    assert_view(user, "INBOX", live, 31)
    assert_view(user, "Archive", [1], 2)
    # nothing left to fold
    assert db.expire("--retention", "0") == (0, 1)

    # the mailbox goes on working: new messages, new expunges next to
    # folded ranges, which merge with them when they expire in turn
    c = user.connect()
    append(c, "INBOX", 3, first=31)	# UIDs 31..33
    c.ok("SELECT INBOX")
    c.ok("UID STORE 22,31 +FLAGS.SILENT (\\Deleted)")
    c.ok("UID EXPUNGE 22,31")
    live = [u for u in live if u != 22] + [32, 33]
    assert user.tombstones("INBOX") == [22, 31]
    assert user.holes("INBOX") == "1,3,7,11,15:22,30:31"
    assert_view(user, "INBOX", live, 34)
    top = int(db.psql("SELECT max(modseq) FROM expunged WHERE mailbox_id = %s" % inbox))
    assert db.expire("--retention", "0") == (2, 2)
    assert user.ranges("INBOX") == ["1:1", "3:3", "7:7", "11:11", "15:22", "30:31"]
    assert user.holes("INBOX") == "1,3,7,11,15:22,30:31"
    assert int(user.mailbox("INBOX", "vanished_floor")) == top
    assert_view(user, "INBOX", live, 34)
    # the session that was selected all along still works
    untagged, _ = c.ok("UID SEARCH ALL")
    assert untagged == [b"* SEARCH " + " ".join(map(str, live)).encode() + b"\r\n"]


def test_retention_and_whole_modseqs(db, user):
    """Only tombstones older than the retention fold, and never part of a
    modseq: the floor must not split one."""
    db.expire("--retention", "0")
    c = user.connect()
    append(c, "INBOX", 10)
    c.ok("SELECT INBOX")
    c.ok("UID STORE 2 +FLAGS.SILENT (\\Deleted)")
    c.ok("UID EXPUNGE 2")			# modseq a
    c.ok("UID STORE 4,5 +FLAGS.SILENT (\\Deleted)")
    c.ok("UID EXPUNGE 4,5")			# modseq b > a
    c.ok("UID STORE 8 +FLAGS.SILENT (\\Deleted)")
    c.ok("UID EXPUNGE 8")			# modseq c > b
    inbox = user.mailbox("INBOX")
    ms = dict((int(u), int(m)) for u, m in (row.split("|") for row in db.psql(
        "SELECT uid, modseq FROM expunged WHERE mailbox_id = %s" % inbox).split()))
    assert ms[2] < ms[4] == ms[5] < ms[8]

    # all young: nothing folds
    assert db.expire("--retention", "3600") == (0, 1)
    # UID 2 is old: only it folds
    db.psql("UPDATE expunged SET expunged_at = now() - interval '2 hours' "
            "WHERE mailbox_id = %s AND uid = 2" % inbox)
    assert db.expire("--retention", "3600")[0] == 1
    assert user.tombstones("INBOX") == [4, 5, 8]
    assert int(user.mailbox("INBOX", "vanished_floor")) == ms[2]
    # UID 8 is old but 4 and 5 are not: they have a lower modseq, so they
    # fold with it (a floor at ms[8] says everything up to it is folded)
    db.psql("UPDATE expunged SET expunged_at = now() - interval '2 hours' "
            "WHERE mailbox_id = %s AND uid = 8" % inbox)
    assert db.expire("--retention", "3600")[0] == 3
    assert user.tombstones("INBOX") == []
    assert user.ranges("INBOX") == ["2:2", "4:5", "8:8"]
    assert int(user.mailbox("INBOX", "vanished_floor")) == ms[8]
    assert_view(user, "INBOX", [1, 3, 6, 7, 9, 10], 11)


def test_batch_bounds_each_call_but_not_below_one_modseq(db, user):
    db.expire("--retention", "0")
    c = user.connect()
    append(c, "INBOX", 12)
    c.ok("SELECT INBOX")
    c.ok("UID STORE 1:5 +FLAGS.SILENT (\\Deleted)")
    c.ok("UID EXPUNGE 1:5")			# one modseq for five
    for u in (7, 9, 11):
        c.ok("UID STORE %d +FLAGS.SILENT (\\Deleted)" % u)
        c.ok("UID EXPUNGE %d" % u)
    # batch 2: the first call folds the whole five-message expunge, then
    # one call per remaining modseq... up to 2 per call, then the empty call
    folded, calls = db.expire("--retention", "0", "--batch", "2")
    assert folded == 8
    assert calls == 4			# 5, 2 (7 and 9), 1 (11), 0
    assert user.ranges("INBOX") == ["1:5", "7:7", "9:9", "11:11"]
    assert_view(user, "INBOX", [6, 8, 10, 12], 13)


def test_imapctl_usage_errors(db):
    r = db.imapctl("expire-tombstones", "--batch", "0", check=False)
    assert r.returncode == 2 and "--batch" in r.stderr
    r = db.imapctl("expire-tombstones", "--retention", "-1", check=False)
    assert r.returncode == 2 and "--retention" in r.stderr
    r = db.imapctl("expire-tombstones", "extra", check=False)
    assert r.returncode == 2
    # the configuration's defaults apply without options (30 days: nothing
    # here is that old)
    assert db.expire() == (0, 1)


# ---- RENAME and DELETE ------------------------------------------------------

def test_rename_inbox_after_expiry(db, user):
    db.expire("--retention", "0")
    c = user.connect()
    append(c, "INBOX", 12)
    c.ok("SELECT INBOX")
    c.ok("UID STORE 2,3,9 +FLAGS.SILENT (\\Deleted)")
    c.ok("UID EXPUNGE 2,3,9")
    assert db.expire("--retention", "0")[0] == 3
    c.ok("UID STORE 5 +FLAGS.SILENT (\\Deleted)")
    c.ok("UID EXPUNGE 5")			# a tombstone that has not expired
    c.ok("UID STORE 12 +FLAGS.SILENT (\\Deleted)")
    c.ok("UID EXPUNGE 12")			# the highest UID is a hole too
    c.ok("UNSELECT")
    live = [1, 4, 6, 7, 8, 10, 11]
    inbox_holes = user.holes("INBOX")
    assert inbox_holes == "2:3,5,9,12"
    assert c.run("RENAME INBOX Former", tag="r")[1] == b"r OK Rename completed\r\n"

    # the new mailbox shows exactly INBOX's former live messages
    assert_view(user, "Former", live, 13)
    # its holes are ranges: the UIDs below uidnext that did not move, and
    # its floor is its highestmodseq (no client knows an older modseq of it)
    assert user.tombstones("Former") == []
    assert user.holes("Former") == "2:3,5,9,12"
    hms, floor = user.mailbox("Former", "highestmodseq, vanished_floor").split("|")
    assert hms == floor
    # INBOX keeps its uidnext and its holes, and every moved UID is a hole now
    assert_view(user, "INBOX", [], 13)
    assert user.holes("INBOX") == "1:12"
    assert user.ranges("INBOX") == ["2:3", "9:9"]
    assert user.tombstones("INBOX") == [1, 4, 5, 6, 7, 8, 10, 11, 12]
    # and both keep working
    append(c, "INBOX", 1, first=13)
    assert_view(user, "INBOX", [13], 14)
    assert db.expire("--retention", "0")[0] == 9
    assert user.holes("INBOX") == "1:12"
    assert user.ranges("INBOX") == ["1:12"]
    assert_view(user, "INBOX", [13], 14)
    assert_view(user, "Former", live, 13)


def test_delete_and_rename_of_a_mailbox_with_ranges(db, user):
    db.expire("--retention", "0")
    c = user.connect()
    c.ok("CREATE Box")
    append(c, "Box", 6)
    c.ok("SELECT Box")
    c.ok("UID STORE 2:3 +FLAGS.SILENT (\\Deleted)")
    c.ok("UID EXPUNGE 2:3")
    c.ok("UNSELECT")
    assert db.expire("--retention", "0")[0] == 2
    box = user.mailbox("Box")
    # an ordinary RENAME keeps the mailbox id, so the ranges stay with it
    c.ok("RENAME Box Crate")
    assert user.mailbox("Crate") == box
    assert user.ranges("Crate") == ["2:3"]
    assert_view(user, "Crate", [1, 4, 5, 6], 7)
    # DELETE takes the ranges and the tombstones with the mailbox (RFC 7162 5.3)
    c.ok("SELECT Crate")
    c.ok("UID STORE 6 +FLAGS.SILENT (\\Deleted)")
    c.ok("UID EXPUNGE 6")
    c.ok("UNSELECT")
    c.ok("DELETE Crate")
    assert db.psql("SELECT count(*) FROM expunged_range WHERE mailbox_id = %s" % box) == "0"
    assert db.psql("SELECT count(*) FROM expunged WHERE mailbox_id = %s" % box) == "0"


def test_mailbox_holes_format(db, user):
    """The string the lead's SELECT parses: sorted, merged across both
    kinds, "u" for one UID, "lo:hi" for more, '' for none."""
    box = user.mailbox("Junk")
    a = user.id
    assert user.holes("Junk") == ""
    db.psql("UPDATE mailbox SET uidnext = 100, highestmodseq = 50 WHERE id = %s;"
            "INSERT INTO expunged (account_id, mailbox_id, uid, modseq) VALUES "
            "(%d, %s, 1, 10), (%d, %s, 2, 11), (%d, %s, 5, 12), (%d, %s, 10, 13), (%d, %s, 22, 13);"
            "INSERT INTO expunged_range VALUES (%d, %s, 3, 4), (%d, %s, 7, 9), (%d, %s, 20, 20), "
            "(%d, %s, 30, 40), (%d, %s, 99, 99)"
            % ((box,) + (a, box) * 10))
    assert user.holes("Junk") == "1:5,7:10,20,22,30:40,99"
    db.psql("DELETE FROM expunged WHERE mailbox_id = %s" % box)
    assert user.holes("Junk") == "3:4,7:9,20,30:40,99"
    db.psql("DELETE FROM expunged_range WHERE mailbox_id = %s" % box)
    assert user.holes("Junk") == ""


# ---- storaged ------------------------------------------------------------------

class Storaged:
    def __init__(self, stack, tmp, conninfo, extra=""):
        self.conf = os.path.join(tmp, "storaged.conf")
        self.log = os.path.join(tmp, "storaged.log")
        self.pid_file = os.path.join(tmp, "storaged.pid")
        with open(self.conf, "w") as f:
            f.write('pg_conninfo = "%s"\n' % conninfo)
            f.write('nats_url = "nats://127.0.0.1:%d"\n' % stack.nats_port)
            f.write('lmtp_listen = "127.0.0.1:%d"\n' % free_port())
            f.write('pid_file = "%s"\n' % self.pid_file)
            f.write("log_level = debug\nnode_name = expiry-storaged\n")
            f.write(extra)
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen([os.path.join(BUILD, "storaged"), "-c", self.conf],
                                     stdout=self.logf, stderr=self.logf, cwd=ROOT)
        self.wait_log("storaged started")

    def log_text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def wait_log(self, pattern, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_text()
            if re.search(pattern, text):
                return text
            assert self.proc.poll() is None, text[-3000:]
            time.sleep(0.1)
        raise AssertionError("no %r in the storaged log:\n%s" % (pattern, self.log_text()[-3000:]))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()
        text = self.log_text()
        assert not sanitizer_report(text), text[-4000:]
        assert self.proc.returncode == 0, text[-3000:]
        return text


def test_storaged_expires_by_itself(stack, db, user, tmp_path):
    db.expire("--retention", "0")
    c = user.connect()
    append(c, "INBOX", 8)
    c.ok("SELECT INBOX")
    c.ok("UID STORE 2,5:6 +FLAGS.SILENT (\\Deleted)")
    c.ok("UID EXPUNGE 2,5:6")
    top = int(db.psql("SELECT max(modseq) FROM expunged WHERE mailbox_id = %s" % user.mailbox("INBOX")))
    sd = Storaged(stack, str(tmp_path), db.conninfo,
                  "tombstone_retention = 1\ntombstone_expiry_interval = 1\ntombstone_expiry_batch = 2\n")
    try:
        deadline = time.monotonic() + 20
        while user.tombstones("INBOX") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert user.tombstones("INBOX") == []
        assert user.ranges("INBOX") == ["2:2", "5:6"]
        assert int(user.mailbox("INBOX", "vanished_floor")) == top
        assert_view(user, "INBOX", [1, 3, 4, 7, 8], 9)
        # later expunges are folded by later runs
        c.ok("UID STORE 8 +FLAGS.SILENT (\\Deleted)")
        c.ok("UID EXPUNGE 8")
        deadline = time.monotonic() + 20
        while user.tombstones("INBOX") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert user.ranges("INBOX") == ["2:2", "5:6", "8:8"]
        sd.wait_log(r"sid=hk-tombstones: tombstones: \d+ tombstones? folded into hole ranges "
                    r"in \d+ calls?, \d+ ms")
    finally:
        text = sd.stop()
    # every line of the job carries its sid; the runs folded all four
    # tombstones, and nothing was worth a warning while the database was up
    job = [l for l in text.splitlines() if "sid=hk-tombstones:" in l]
    folded = [int(m.group(1)) for m in
              (re.search(r"tombstones: (\d+) tombstones? folded", l) for l in job) if m]
    assert sum(folded) == 4, "\n".join(job)
    assert not [l for l in job if " warn " in l or " error " in l], "\n".join(job)


def test_storaged_backs_off_while_the_database_is_down(stack, tmp_path):
    dead = free_port()		# nothing listens there
    sd = Storaged(stack, str(tmp_path), "host=127.0.0.1 port=%d dbname=mail user=mail connect_timeout=2" % dead,
                  "tombstone_expiry_interval = 2\npg_retry_max_ms = 500\n")
    try:
        sd.wait_log(r"sid=hk-tombstones: tombstones: database unavailable")
        time.sleep(4)
    finally:
        text = sd.stop()
    # one warning for the outage, the retries at debug level
    lines = [l for l in text.splitlines() if "sid=hk-tombstones:" in l and "database unavailable" in l]
    assert len(lines) >= 3, text[-3000:]
    warned = [l for l in lines if " warn " in l]
    assert len(warned) == 1 and "retrying with back-off" in warned[0], "\n".join(lines)


def test_storaged_removes_stale_append_stage_rows(stack, db, user, tmp_path):
    """Rows a crashed worker left in append_stage (sql/0006) go with
    storaged's housekeeping; fresh ones (an APPEND in flight) stay."""
    a = user.id
    db.psql("INSERT INTO append_stage (account_id, token, data, created_at) VALUES"
            " (%d, decode('00000000000000000000000000000001', 'hex'), 'x', now() - interval '2 hours'),"
            " (%d, decode('00000000000000000000000000000002', 'hex'), 'y', now())" % (a, a))
    sd = Storaged(stack, str(tmp_path), db.conninfo, "append_stage_expiry_interval = 1\n")
    try:
        sd.wait_log(r"sid=hk-append-stage: append-stage: 1 stale APPEND stage row")
    finally:
        sd.stop()
    left = db.psql("SELECT encode(token, 'hex') FROM append_stage WHERE account_id = %d" % a)
    assert left == "00000000000000000000000000000002"
    db.psql("DELETE FROM append_stage WHERE account_id = %d" % a)
