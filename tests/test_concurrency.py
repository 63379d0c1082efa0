"""RFC 7162 under concurrency: the proof test.

On the three-node stack, writers make random flag and keyword changes
(some .SILENT, some UNCHANGEDSINCE), APPENDs, UID EXPUNGEs and UID MOVEs
between INBOX and a second mailbox, each keeping a client cache of its
mailbox from what it is told and recording it now and then as a state
(uidvalidity, HIGHESTMODSEQ as RFC 7162 section 6 computes it, flags per
UID).  Resyncers meanwhile connect to random nodes, take full states or
resynchronise recorded ones (their own and the writers') by SELECT (QRESYNC
(uidvalidity modseq [known-uids [seq-match]])), by SELECT + UID FETCH
(CHANGEDSINCE n VANISHED), and without QRESYNC by UID FETCH (CHANGEDSINCE n)
followed by UID SEARCH ALL or FETCH 1:* (UID), then fetch what is new above
the state's highest UID, and keep what they get as new states.  Halfway the
tombstones are expired, so later resyncs start below the vanished floor
and live sessions see expunges whose tombstones are gone.

Checked while running (tests/resync.py): sequence numbers, UIDs, EXISTS,
VANISHED and EXPUNGE agree with the client's view; per message MODSEQ never
goes back in a session; a HIGHESTMODSEQ code never falls below the value
RFC 7162 section 6 had the client compute before; one (mailbox, UID,
MODSEQ) never carries two flag sets; no two STOREs share a modseq and a
session's STOREs grow (3.1); a STORE's result satisfies the command; a
MODIFIED message really changed after UNCHANGEDSINCE; every command
succeeds (a deadlock's NO [UNAVAILABLE] included); no UID is given twice
and no message is moved twice.

Checked at the end, with the writers stopped:
- the truth read over IMAP equals the database (UIDs, flags, keywords,
  MODSEQ per message, HIGHESTMODSEQ), and no message exists twice;
- every recorded state is safe: nothing it lacks or holds wrongly is at or
  below its HIGHESTMODSEQ (so no resync from it can miss it), checked
  against the message, tombstone and range tables;
- every recorded state (all of them, or a sample when there are very many)
  is resynchronised once more and must equal the truth exactly: UIDs in
  order, flags and keywords, HIGHESTMODSEQ;
- no daemon of the stack wrote a sanitizer report.

Size: CONC_SECONDS (writing time), CONC_WRITERS, CONC_RESYNCERS,
CONC_FINAL (states resynced at the end); smaller defaults when MAIL_BUILD
names a sanitizer build.
"""
import itertools
import os
import random
import subprocess
import threading
import time

import pytest

from imap import Conn
from resync import (APPENDUID_RE, COPYUID_RE, MODIFIED_RE, Broken, Checker, Ledger, Session,
                    db_flags, fmt_set, parse_set)

ASAN = "asan" in os.environ.get("MAIL_BUILD", "")
SECONDS = float(os.environ.get("CONC_SECONDS", "35" if ASAN else "45"))
WRITERS = int(os.environ.get("CONC_WRITERS", "6" if ASAN else "8"))
RESYNCERS = int(os.environ.get("CONC_RESYNCERS", "3" if ASAN else "4"))
FINAL = int(os.environ.get("CONC_FINAL", "300" if ASAN else "600"))
SEED = int(os.environ.get("CONC_SEED", str(random.randrange(1 << 30))))

MAILBOXES = ("INBOX", "Other")
KEYWORDS = ["$k0", "$k1", "$k2", "$Junk", "NonJunk"]
FLAG_POOL = ["\\Seen", "\\Answered", "\\Flagged", "\\Draft"] + KEYWORDS
LOW, HIGH = 25, 110         # mailbox sizes the writers steer between
PASSWORD = "pw"

_n = itertools.count()


def message(ident):
    i = ident.encode()
    return (b"From: w@example.com\r\nTo: b@example.com\r\nSubject: %s\r\n"
            b"Message-ID: <%s@conc>\r\n\r\nbody of %s\r\n" % (i, i, i))


class Ctx:
    """Everything the threads share."""

    def __init__(self, stack, login):
        self.stack = stack
        self.login = (login, PASSWORD)
        self.checker = Checker()
        self.ledger = Ledger(self.checker)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.states = {m: [] for m in MAILBOXES}
        self.expired_at = None
        self.ops = {}
        self.resyncs = {}
        self.ids = itertools.count()

    def port(self, node):
        return self.stack.node_port(node)

    def session(self, node, who, qresync):
        return Session(self.port(node), self.login, who, self.checker, self.ledger, qresync)

    def count(self, table, key, n=1):
        with self.lock:
            table[key] = table.get(key, 0) + n

    def add_state(self, st):
        if st is None:
            return
        with self.lock:
            self.states[st.mailbox].append(st)

    def pick_state(self, mailbox, rng, kind=None):
        with self.lock:
            pool = [s for s in self.states[mailbox] if kind is None or s.kind == kind]
            if not pool or rng.random() < 0.12:
                return None
            x = rng.random()
            if x < 0.2:
                return rng.choice(pool[:max(1, len(pool) // 10)])
            if x < 0.45 and self.expired_at is not None:
                old = [s for s in pool if s.t < self.expired_at]
                if old:
                    return rng.choice(old)
            return rng.choice(pool[-200:] if x < 0.7 else pool)


# ---- writers ----------------------------------------------------------

class Writer:
    def __init__(self, ctx, idx):
        self.ctx = ctx
        self.idx = idx
        self.rng = random.Random(SEED * 1000 + idx)
        self.qresync = idx % 2 == 0
        self.mailbox = MAILBOXES[(idx // 2) % 2]
        self.node = idx % 3
        self.appended = itertools.count()

    def name(self):
        return "writer%d(%s,%s,node%d)" % (self.idx, self.mailbox, "qresync" if self.qresync else "condstore",
                                           self.node)

    def run(self):
        ctx = self.ctx
        try:
            while not ctx.stop.is_set():
                s = ctx.session(self.node, self.name(), self.qresync)
                try:
                    self.connected(s, time.monotonic() + self.rng.uniform(8, 20))
                except Broken:
                    time.sleep(0.05)
                finally:
                    s.close()
                # Reconnect elsewhere, sometimes to the other mailbox.
                self.node = (self.node + 1) % 3
                if self.rng.random() < 0.3:
                    self.mailbox = MAILBOXES[1 - MAILBOXES.index(self.mailbox)]
        except Exception:
            ctx.checker.exception(self.name())
            ctx.stop.set()

    def connected(self, s, until):
        ctx, rng = self.ctx, self.rng
        s.select(self.mailbox)
        s.fill()
        ctx.add_state(s.record())
        while not ctx.stop.is_set() and time.monotonic() < until:
            n = len(s.v.seq)
            w_add = 5 if n < LOW else 1 if n > HIGH else 2.5
            w_del = 6 if n > HIGH else 0.5 if n < LOW else 2.5
            op = rng.choices(
                ["store", "delete", "undelete", "expunge", "append", "move", "noop", "seqfetch",
                 "seen", "record"],
                [10, w_del, 0.5, w_del, w_add, w_del, 1.5, 1.5, 0.5, 1])[0]
            getattr(self, "op_" + op)(s)
            ctx.count(ctx.ops, op)
            s.fill(tries=3)

    def targets(self, s, most=3):
        known = s.v.known()
        if not known:
            return []
        k = self.rng.choice([1, 1, 1, 2, most])
        return sorted(self.rng.sample(known, min(k, len(known))))

    def op_store(self, s, targets=None, mode=None, flags=None, silent=None, cond=None):
        rng, v, ctx = self.rng, s.v, self.ctx
        targets = targets or self.targets(s)
        if not targets:
            return
        mode = mode or rng.choice(["+FLAGS", "+FLAGS", "-FLAGS", "FLAGS"])
        if flags is None:
            flags = rng.sample(FLAG_POOL, rng.randint(0 if mode == "FLAGS" else 1, 3))
            if mode != "FLAGS" and rng.random() < 0.1:
                flags.append("\\Deleted")
        silent = rng.random() < 0.5 if silent is None else silent
        cond = rng.random() < 0.25 if cond is None else cond
        by_uid = rng.random() < 0.8
        pos = {u: v.seq.index(u) + 1 for u in targets}
        unch = None
        if cond:
            unch = min(v.modseq.get(u, v.hms) for u in targets) if rng.random() < 0.7 else v.hms
            if rng.random() < 0.05:
                unch = 0
        cmd_id = "%s#%d" % (s.who, next(ctx.ids))
        cmd = "%sSTORE %s %s%s%s (%s)" % (
            "UID " if by_uid else "", fmt_set(targets if by_uid else pos.values()),
            "(UNCHANGEDSINCE %d) " % unch if cond else "", mode, ".SILENT" if silent else "",
            " ".join(flags))
        r = s.must(cmd, silent=(mode, frozenset(flags), frozenset(targets)) if silent else None)
        failed = set()
        m = MODIFIED_RE.search(r.tagged)
        if m:
            if not cond:
                s.problem("MODIFIED without UNCHANGEDSINCE", "%s -> %r" % (cmd, r.tagged))
            nums = set(parse_set(m.group(1)))
            failed = {u for u in targets if (u if by_uid else pos[u]) in nums}
            if len(failed) != len(nums):
                s.problem("MODIFIED names messages outside the command", "%s -> %r" % (cmd, r.tagged))
        first = {}
        for seq, uid, fl, ms in r.fetches:
            if uid is not None and uid in pos and uid not in first:
                first[uid] = (fl, ms)
        want = set(flags)
        own = set()
        for u, (fl, ms) in first.items():
            if u in failed:
                # RFC 7162 3.1.3: it fails only when changed after UNCHANGEDSINCE.
                if ms is None or ms <= unch:
                    s.problem("MODIFIED for an unchanged message",
                              "%s: UID %d MODSEQ %s, UNCHANGEDSINCE %d" % (cmd, u, ms, unch))
                continue
            if fl is None:
                # .SILENT: the server tells the modseq of what it changed
                # (and with UNCHANGEDSINCE of what passed unchanged).
                if ms is None:
                    s.problem("STORE line without MODSEQ", "%s -> %r" % (cmd, r.untagged))
                elif not cond or ms > unch:
                    own.add(ms)
                continue
            if silent:
                # A message .SILENT left unchanged has no line of its own:
                # this one may tell a later change made elsewhere.
                continue
            ok = (want <= fl if mode == "+FLAGS" else not (want & fl) if mode == "-FLAGS" else fl == want)
            if not ok:
                s.problem("STORE result does not satisfy the command",
                          "%s: UID %d told %s" % (cmd, u, sorted(fl)))
        if silent:
            for ms in own:
                ctx.ledger.store_modseq(v.mailbox, ms, cmd_id)
            if len(own) > 1:
                s.problem("one STORE, several new modseqs", "%s -> %r" % (cmd, r.untagged))
            if own:
                top = max(own)
                if top <= v.last_store_ms:
                    s.problem("STORE modseqs of a session do not grow (RFC 7162 3.1)",
                              "%s: %d after %d" % (cmd, top, v.last_store_ms))
                v.last_store_ms = max(v.last_store_ms, top)

    def op_delete(self, s):
        self.op_store(s, mode="+FLAGS", flags=["\\Deleted"], silent=self.rng.random() < 0.7)

    def op_undelete(self, s):
        dels = [u for u in s.v.known() if "\\Deleted" in (s.v.flags.get(u) or ())]
        if dels:
            self.op_store(s, targets=[self.rng.choice(dels)], mode="-FLAGS", flags=["\\Deleted"])

    def op_expunge(self, s):
        dels = [u for u in s.v.known() if "\\Deleted" in (s.v.flags.get(u) or ())]
        if not dels:
            return self.op_delete(s)
        if self.rng.random() < 0.15:
            s.must("EXPUNGE")
        else:
            s.must("UID EXPUNGE %s" % fmt_set(dels))

    def op_append(self, s):
        rng, ctx = self.rng, self.ctx
        mbox = s.v.mailbox if rng.random() < 0.7 else MAILBOXES[1 - MAILBOXES.index(s.v.mailbox)]
        ident = "w%d-%d" % (self.idx, next(self.appended))
        flags = rng.sample(FLAG_POOL, rng.randint(0, 2))
        cmd_id = "%s#%d" % (s.who, next(ctx.ids))
        r = s.must("APPEND %s (%s)" % (mbox, " ".join(flags)), literal=message(ident))
        m = APPENDUID_RE.search(r.tagged)
        if not m:
            s.problem("APPEND without APPENDUID", repr(r.tagged))
            return
        ctx.ledger.create(mbox, int(m.group(2)), cmd_id)

    def op_move(self, s):
        ctx = self.ctx
        targets = self.targets(s, most=2)
        if not targets:
            return
        dest = MAILBOXES[1 - MAILBOXES.index(s.v.mailbox)]
        cmd_id = "%s#%d" % (s.who, next(ctx.ids))
        r = s.must("UID MOVE %s %s" % (fmt_set(targets), dest))
        for line in r.untagged:
            m = COPYUID_RE.search(line)
            if not m:
                continue
            src, dst = parse_set(m.group(2)), parse_set(m.group(3))
            if len(src) != len(dst) or not set(src) <= set(targets):
                s.problem("COPYUID does not match the MOVE", "%s -> %r" % (targets, line))
            for u in src:
                ctx.ledger.moved(s.v.mailbox, u, cmd_id)
            for u in dst:
                ctx.ledger.create(dest, u, cmd_id)
            left = set(src) & set(s.v.seq)
            if left:
                s.problem("moved messages still in the view after UID MOVE",
                          "%s: %s (%r)" % (s.v.mailbox, sorted(left), r.untagged))

    def op_noop(self, s):
        s.must("NOOP")

    def op_seqfetch(self, s):
        n = len(s.v.seq)
        if n:
            a = self.rng.randint(1, n)
            b = min(n, a + self.rng.randint(0, 4))
            s.must("FETCH %d:%d (UID FLAGS MODSEQ)" % (a, b))

    def op_seen(self, s):
        t = self.targets(s, most=1)
        if t:
            if self.rng.random() < 0.5:
                s.must("UID FETCH %d (BODY[TEXT])" % t[0])
            else:
                s.must("FETCH %d (RFC822.TEXT)" % (s.v.seq.index(t[0]) + 1))

    def op_record(self, s):
        if s.fill(tries=4):
            self.ctx.add_state(s.record())


# ---- resyncers --------------------------------------------------------

QRESYNC_METHODS = ["qresync", "qresync", "qresync-all", "qresync-seqmatch", "examine-qresync",
                   "vanished", "vanished-all", "condstore", "condstore-list"]
CONDSTORE_METHODS = ["condstore", "condstore-list"]


def resync(s, st, method):
    """Resynchronise session s from state st by method; the view is then
    filled.  Returns False when it could not learn every message."""
    if method == "qresync":
        s.resync_qresync(st)
    elif method == "qresync-all":
        s.resync_qresync(st, known=False)
    elif method == "qresync-seqmatch":
        s.resync_qresync(st, seqmatch=True)
    elif method == "examine-qresync":
        s.resync_qresync(st, examine=True)
    elif method == "vanished":
        s.resync_vanished(st)
    elif method == "vanished-all":
        s.resync_vanished(st, known=False)
    elif method == "condstore":
        s.resync_condstore(st)
        return True
    elif method == "condstore-list":
        s.resync_condstore_list(st)
    else:
        raise ValueError(method)
    return s.fill()


class Resyncer:
    def __init__(self, ctx, idx):
        self.ctx = ctx
        self.idx = idx
        self.rng = random.Random(SEED * 1000 + 500 + idx)

    def run(self):
        ctx, rng = self.ctx, self.rng
        try:
            while not ctx.stop.is_set():
                # A connection to a random node, QRESYNC enabled or not,
                # doing one to three resyncs (each a new SELECT).
                qresync = rng.random() < 0.6
                node = rng.randrange(3)
                who = "resyncer%d(node%d,%s)" % (self.idx, node, "qresync" if qresync else "condstore")
                s = ctx.session(node, who, qresync)
                try:
                    for _ in range(rng.randint(1, 3)):
                        if ctx.stop.is_set() or not self.one(s, qresync):
                            break
                except Broken:
                    pass
                finally:
                    s.close()
        except Exception:
            ctx.checker.exception("resyncer%d" % self.idx)
            ctx.stop.set()

    def one(self, s, qresync):
        """One resync (or a full read when no state is picked); False when
        the session cannot go on."""
        ctx, rng = self.ctx, self.rng
        mbox = rng.choice(MAILBOXES)
        st = ctx.pick_state(mbox, rng, kind="qresync" if qresync else None)
        if st is None:
            s.who = "%s,full)" % s.who.split(",")[0]
            s.select(mbox, examine=rng.random() < 0.3)
            if s.fill():
                ctx.add_state(s.record())
            ctx.count(ctx.resyncs, "full")
            return True
        method = rng.choice(CONDSTORE_METHODS if not qresync else
                            [m for m in QRESYNC_METHODS if m not in CONDSTORE_METHODS])
        s.who = "%s,%s)" % (s.who.split(",")[0], method)
        if resync(s, st, method):
            ctx.add_state(s.record())
        ctx.count(ctx.resyncs, method)
        if method == "condstore":
            return True
        # Stay a little, as a client does, and record again.
        for _ in range(rng.randint(0, 3)):
            time.sleep(rng.uniform(0, 0.05))
            s.must("NOOP" if rng.random() < 0.7 or not s.v.seq else "FETCH 1:* (FLAGS)")
            if s.fill():
                ctx.add_state(s.record())
        return True


# ---- the truth --------------------------------------------------------

def rows(stack, sql):
    out = stack.psql(sql)
    return [line.split("|") for line in out.splitlines() if line]


def db_truth(stack, login):
    acc = stack.psql("SELECT id FROM account WHERE login = '%s'" % login)
    mbs = {}
    for name, mid, uv, uidnext, hms, floor in rows(stack,
            "SELECT name, id, uidvalidity, uidnext, highestmodseq, vanished_floor FROM mailbox"
            " WHERE account_id = %s" % acc):
        mbs[name] = dict(id=int(mid), uidvalidity=int(uv), uidnext=int(uidnext), hms=int(hms),
                         floor=int(floor), msgs={}, tomb={}, ranges=[])
    byid = {m["id"]: m for m in mbs.values()}
    for mid, uid, flags, kw, modseq in rows(stack,
            "SELECT mailbox_id, uid, flags, array_to_string(keywords, ' '), modseq FROM message"
            " WHERE account_id = %s" % acc):
        byid[int(mid)]["msgs"][int(uid)] = (db_flags(int(flags), kw), int(modseq))
    for mid, uid, modseq in rows(stack,
            "SELECT mailbox_id, uid, modseq FROM expunged WHERE account_id = %s" % acc):
        byid[int(mid)]["tomb"][int(uid)] = int(modseq)
    for mid, lo, hi in rows(stack,
            "SELECT mailbox_id, lo, hi FROM expunged_range WHERE account_id = %s" % acc):
        byid[int(mid)]["ranges"].append((int(lo), int(hi)))
    dups = rows(stack, "SELECT encode(blob_hash, 'hex'), count(*) FROM message WHERE account_id = %s"
                       " GROUP BY 1 HAVING count(*) > 1" % acc)
    return mbs, dups


def imap_truth(ctx, mailbox):
    s = ctx.session(0, "truth", True)
    try:
        s.select(mailbox, examine=True)
        assert s.fill(), "the truth session could not fetch every message"
        return {u: (s.v.flags[u], s.v.modseq[u]) for u in s.v.seq}, s.v.hms, s.v.uidvalidity
    finally:
        s.close()


def check_state_against_db(ck, st, db):
    """A recorded state is safe when every change at or below its
    HIGHESTMODSEQ is in it: a resync asks only for what is above.
    Returns False when it is not."""
    n0 = sum(ck.counts.values())
    h = st.hms
    msgs, tomb, ranges, floor = db["msgs"], db["tomb"], db["ranges"], db["floor"]
    top = st.maxuid()
    where = "%r" % st
    for u, fl in st.flags.items():
        if u in msgs:
            dbfl, ms = msgs[u]
            if ms <= h and fl != dbfl:
                ck.fail("state misses a flag change at or below its HIGHESTMODSEQ",
                        "%s: UID %d has %s, the database %s since MODSEQ %d" % (
                            where, u, sorted(fl), sorted(dbfl), ms))
            continue
        if st.kind != "qresync":
            continue        # without QRESYNC expunges are found by listing
        if u in tomb:
            if tomb[u] <= h:
                ck.fail("state keeps a message expunged at or below its HIGHESTMODSEQ",
                        "%s: UID %d expunged at MODSEQ %d" % (where, u, tomb[u]))
        elif any(lo <= u <= hi for lo, hi in ranges):
            if floor <= h:
                ck.fail("state keeps a message expunged at or below its HIGHESTMODSEQ",
                        "%s: UID %d expunged at or below the floor %d" % (where, u, floor))
        else:
            ck.fail("state holds a UID that never existed",
                    "%s: UID %d is neither a message nor a hole (uidnext %d)" % (where, u, db["uidnext"]))
    for u in msgs:
        if u <= top and u not in st.flags:
            ck.fail("state lacks a message below its highest UID",
                    "%s: UID %d (MODSEQ %d)" % (where, u, msgs[u][1]))
    return sum(ck.counts.values()) == n0


def final_resyncs(ctx, states, truth):
    """Resync every chosen state once more (nothing changes any more) and
    compare with the truth exactly."""
    ck = ctx.checker
    done = {}
    lock = threading.Lock()
    queue = list(states)

    def worker(node):
        rng = random.Random(SEED + node)
        sq = sc = None
        try:
            sq = ctx.session(node, "final-q(node%d)" % node, True)
            sc = ctx.session(node, "final-c(node%d)" % node, False)
            while True:
                with lock:
                    if not queue:
                        return
                    st = queue.pop()
                method = rng.choice(CONDSTORE_METHODS if st.kind == "condstore" else QRESYNC_METHODS)
                s = sc if method in CONDSTORE_METHODS else sq
                s.who = "final(node%d,%s)" % (node, method)
                try:
                    filled = resync(s, st, method)
                except Broken:
                    # The session's view is lost: start afresh.
                    s.close()
                    s = ctx.session(node, "final", method not in CONDSTORE_METHODS)
                    if method in CONDSTORE_METHODS:
                        sc = s
                    else:
                        sq = s
                    continue
                with lock:
                    done[method] = done.get(method, 0) + 1
                want, whms = truth[st.mailbox]
                v = s.v
                where = "final %s resync of %r" % (method, st)
                if not filled:
                    ck.fail("final resync incomplete", where, st.id)
                    continue
                got = {u: f for u, f in v.flags.items()}
                exp = {u: f for u, (f, _) in want.items()}
                if got != exp:
                    missing = sorted(set(exp) - set(got))
                    extra = sorted(set(got) - set(exp))
                    diff = sorted(u for u in set(got) & set(exp) if got[u] != exp[u])
                    ck.fail("resynced cache differs from the truth",
                            "%s: missing %s, extra (deleted) %s, wrong flags %s" % (
                                where, missing[:8], extra[:8],
                                [(u, sorted(got[u]), sorted(exp[u])) for u in diff[:4]]), st.id)
                if v.hms != whms:
                    ck.fail("resynced HIGHESTMODSEQ differs from the truth",
                            "%s: %s, truth %d" % (where, v.hms, whms), st.id)
                if v.mode == "live" and v.seq != sorted(want):
                    ck.fail("resynced sequence numbers differ from the truth", where, st.id)
        except Exception:
            ck.exception("final resync node%d" % node)
        finally:
            for x in (sq, sc):
                if x is not None:
                    x.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    return done


def _stmt_kind(q):
    q = q.lower()
    for key, name in (("store_flags", "STORE"), ("expire_tombstones", "tombstone expiry"),
                      ("delete from expunged", "tombstone expiry"), ("srcmb", "MOVE"),
                      ("with src as", "MOVE (or COPY)"), ("insert into expunged", "EXPUNGE"),
                      ("recent_prev", "SELECT/\\Recent claim"), ("insert into message", "APPEND"),
                      ("flags = m.flags | 1", "FETCH \\Seen"), ("append", "APPEND")):
        if key in q:
            return name
    return q[:60]


def log_errors(stack, since, limit=16):
    """What the stack logged as errors since the given offsets: PostgreSQL
    deadlocks summarised by the statements in them, other error lines as
    they are (a NO [UNAVAILABLE] says nothing of its cause)."""
    out, deadlocks = [], {}
    for path, off in since.items():
        try:
            with open(path, errors="replace") as f:
                f.seek(off)
                lines = f.read().splitlines()
        except OSError:
            continue
        i = 0
        while i < len(lines):
            line = lines[i]
            if "deadlock detected" in line and path.endswith("postgresql.log"):
                kinds = set()
                j = i + 1
                while j < len(lines) and (lines[j].startswith("\t") or "DETAIL" in lines[j]
                                          or "HINT" in lines[j] or "CONTEXT" in lines[j]
                                          or "STATEMENT" in lines[j]):
                    m = lines[j].split("Process ", 1)
                    if len(m) == 2 and ": " in m[1] and "waits for" not in m[1]:
                        kinds.add(_stmt_kind(m[1].split(": ", 1)[1]))
                    j += 1
                key = " / ".join(sorted(kinds)) or "?"
                deadlocks[key] = deadlocks.get(key, 0) + 1
                i = j
                continue
            if any(w in line for w in ("ERROR", " warn", "WARN", "FATAL")):
                out.append("%s: %s" % (os.path.relpath(path, stack.dir), line.rstrip()[:300]))
            i += 1
    summary = ["deadlocks between %s: %d" % (k, n) for k, n in sorted(deadlocks.items())]
    return summary + out[:limit]


def sanitizer_reports(stack, since):
    """AddressSanitizer/UBSan reports the stack's daemons wrote meanwhile
    (the session stack fixture does not look for them)."""
    out = []
    for path, off in since.items():
        try:
            with open(path, errors="replace") as f:
                f.seek(off)
                text = f.read()
        except OSError:
            continue
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            i = text.find(marker)
            if i >= 0:
                out.append("%s:\n%s" % (os.path.relpath(path, stack.dir), text[max(0, i - 200):i + 3000]))
                break
    return out


def log_offsets(stack):
    offs = {}
    for root, _, files in os.walk(stack.dir):
        for fn in files:
            if fn.endswith(".log"):
                p = os.path.join(root, fn)
                offs[p] = os.path.getsize(p)
    return offs


# ---- the test ---------------------------------------------------------

@pytest.fixture
def conc_account(stack):
    login = "conc%d-%d@example.com" % (os.getpid(), next(_n))
    stack.imapctl("user", "add", login, stdin=PASSWORD + "\n")
    return login


def seed(ctx):
    c = Conn("127.0.0.1", ctx.port(0), timeout=60)
    try:
        c.login(*ctx.login)
        c.ok("CREATE Other")
        for mbox, n in (("INBOX", 50), ("Other", 30)):
            for i in range(n):
                tag = c.next_tag()
                m = message("seed-%s-%d" % (mbox, i))
                flags = random.Random(i).choice(["", "\\Seen", "\\Flagged $k1", "$k0"])
                c.send(b"%s APPEND %s (%s) {%d+}\r\n%s\r\n" % (
                    tag.encode(), mbox.encode(), flags.encode(), len(m), m))
                _, t = c.collect(tag)
                assert b" OK " in t, t
    finally:
        c.close()


def test_resync_under_concurrency(stack, conc_account):
    t0 = time.monotonic()
    logs = log_offsets(stack)
    ctx = Ctx(stack, conc_account)
    seed(ctx)
    t_seed = time.monotonic() - t0
    writers = [Writer(ctx, i) for i in range(WRITERS)]
    resyncers = [Resyncer(ctx, i) for i in range(RESYNCERS)]
    threads = [threading.Thread(target=x.run, daemon=True) for x in writers + resyncers]
    for t in threads:
        t.start()
    # Halfway: expire every tombstone, so the vanished floor rises under
    # running sessions and older states resync from below it.
    ctx.stop.wait(SECONDS / 2)
    # The tombstones about to be folded, with their modseqs, for the state
    # checks at the end (expiry forgets when a UID vanished).
    early_tombs = rows(stack, "SELECT mb.name, e.uid, e.modseq FROM expunged e JOIN mailbox mb"
                              " ON mb.account_id = e.account_id AND mb.id = e.mailbox_id"
                              " JOIN account a ON a.id = e.account_id WHERE a.login = '%s'" % conc_account)
    # Busy mailboxes are skipped (SKIP LOCKED) and done by a later call.
    folded, t_exp, calls = 0, time.monotonic(), []
    for _ in range(5):
        tc = time.monotonic()
        r = subprocess.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", stack.conninfo, "-c",
                            "SELECT expire_tombstones('0 seconds', 100000)"],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            # Documented as unable to deadlock (sql/0005_tombstone_expiry.sql).
            ctx.checker.fail("tombstone expiry failed", r.stderr.strip().replace("\n", "\n        "))
            continue
        n = int(r.stdout.strip())
        floors = stack.psql("SELECT string_agg(m.name || ' ' || m.vanished_floor, ', ') FROM mailbox m"
                            " JOIN account a ON a.id = m.account_id WHERE a.login = '%s'"
                            " AND m.name IN ('INBOX', 'Other')" % conc_account)
        calls.append("%d in %.1f s (floors %s)" % (n, time.monotonic() - tc, floors))
        folded += n
        if n == 0 or stack.psql("SELECT count(*) FROM mailbox m JOIN account a ON a.id = m.account_id"
                                " WHERE a.login = '%s' AND m.name IN ('INBOX', 'Other')"
                                " AND m.vanished_floor = 0" % conc_account) == "0":
            break
    t_exp = time.monotonic() - t_exp
    with ctx.lock:
        ctx.expired_at = time.monotonic()
    ctx.stop.wait(SECONDS / 2)
    ctx.stop.set()
    t_stop = time.monotonic()
    for t in threads:
        t.join(180)
    t_join = time.monotonic() - t_stop
    hung = [t for t in threads if t.is_alive()]
    assert not hung, "threads still running: %d\n%s" % (len(hung), ctx.checker.report())
    t_run = time.monotonic() - t0

    # The truth, over IMAP and in the database; they must agree.
    ck = ctx.checker
    db, dups = db_truth(stack, conc_account)
    for name, uid, modseq in early_tombs:
        if name in db:
            db[name]["tomb"].setdefault(int(uid), int(modseq))
    if dups:
        ck.fail("one message exists twice", "blob hashes with several rows: %s" % dups[:5])
    truth = {}
    for mbox in MAILBOXES:
        msgs, hms, uv = imap_truth(ctx, mbox)
        truth[mbox] = (msgs, hms)
        d = db[mbox]
        if hms != d["hms"]:
            ck.fail("IMAP and database disagree", "%s HIGHESTMODSEQ %d, database %d" % (mbox, hms, d["hms"]))
        if uv != d["uidvalidity"]:
            ck.fail("IMAP and database disagree", "%s UIDVALIDITY %d, database %d" % (mbox, uv, d["uidvalidity"]))
        if msgs != d["msgs"]:
            a, b = set(msgs), set(d["msgs"])
            diff = sorted(u for u in a & b if msgs[u] != d["msgs"][u])
            ck.fail("IMAP and database disagree",
                    "%s: only over IMAP %s, only in the database %s, different %s" % (
                        mbox, sorted(a - b)[:8], sorted(b - a)[:8],
                        [(u, msgs[u], d["msgs"][u]) for u in diff[:4]]))
        for u, (fl, ms) in d["msgs"].items():
            got = ctx.ledger.told.get((mbox, u, ms))
            if got is not None and got[0] != fl:
                ck.fail("one modseq, two flag sets",
                        "%s UID %d MODSEQ %d: %s told %s, the database has %s" % (
                            mbox, u, ms, got[1], sorted(got[0]), sorted(fl)))
        if d["floor"] == 0 and folded:
            ck.fail("tombstone expiry did not raise the floor", "%s: %r" % (mbox, folded))

    # Every recorded state is safe.
    states = [st for m in MAILBOXES for st in ctx.states[m]]
    unsafe = {st.id for st in states if not check_state_against_db(ck, st, db[st.mailbox])}

    # And every (sampled) state resyncs to the truth.
    rng = random.Random(SEED)
    if len(states) > FINAL:
        old = [st for st in states if ctx.expired_at and st.t < ctx.expired_at]
        chosen = rng.sample(old, min(len(old), FINAL // 3))
        taken = set(map(id, chosen))
        rest = [st for st in states if id(st) not in taken]
        chosen += rng.sample(rest, FINAL - len(chosen))
    else:
        chosen = states
    t1 = time.monotonic()
    final = final_resyncs(ctx, chosen, truth)
    t_final = time.monotonic() - t1

    below = sum(1 for st in chosen if st.hms < db[st.mailbox]["floor"])
    print("\nconcurrency (seed %d): %.0f s to seed, %.0f s running (%.1f s tombstone expiry, %.0f s to"
          " stop), %.0f s final; writers %d, resyncers %d" % (
              SEED, t_seed, t_run, t_exp, t_join, t_final, WRITERS, RESYNCERS))
    print("  tombstone expiry calls: %s" % ", ".join(calls))
    print("  operations: %s" % dict(sorted(ctx.ops.items())))
    print("  resyncs while writing: %s" % dict(sorted(ctx.resyncs.items())))
    print("  states recorded: %d (%s); final resyncs: %s, %d of them from below the vanished floor" % (
        len(states), ", ".join("%s %d" % (m, len(ctx.states[m])) for m in MAILBOXES),
        dict(sorted(final.items())), below))
    print("  modseqs told: %d, distinct (mailbox, uid, modseq): %d, STORE modseqs checked: %d" % (
        ctx.ledger.observations, len(ctx.ledger.told), ctx.ledger.stores_checked))
    print("  final: %s" % ", ".join("%s %d messages HIGHESTMODSEQ %d floor %d" % (
        m, len(truth[m][0]), truth[m][1], db[m]["floor"]) for m in MAILBOXES))
    # It must not pass by doing too little.
    little = []
    if sum(final.values()) < 0.9 * len(chosen):
        little.append("final resyncs %d of %d states" % (sum(final.values()), len(chosen)))
    for op in ("store", "delete", "expunge", "append", "move", "seqfetch", "seen"):
        if ctx.ops.get(op, 0) < 3:
            little.append("%d %s operations" % (ctx.ops.get(op, 0), op))
    if sum(ctx.ops.values()) < 25 * WRITERS:
        little.append("%d operations in all" % sum(ctx.ops.values()))
    for m in QRESYNC_METHODS:
        if ctx.resyncs.get(m, 0) + final.get(m, 0) == 0:
            little.append("no %s resync" % m)
    if below == 0 or len(states) < 20:
        little.append("%d states, %d resynced from below the vanished floor" % (len(states), below))
    if little:
        ck.fail("the test did too little", "; ".join(little))
    for rep in sanitizer_reports(stack, logs):
        ck.fail("sanitizer report", rep)
    if ck.origins:
        # Problems met while resyncing: from states already found unsafe
        # above (a consequence) or from states that were fine.
        expl, fresh = {}, {}
        for cat, sid in ck.origins:
            d = expl if sid in unsafe else fresh
            d[cat] = d.get(cat, 0) + 1
        print("  problems in views resynced from unsafe states: %s; from safe states: %s" % (expl, fresh))
    if not ck.ok():
        errs = log_errors(stack, logs)
        pytest.fail("seed %d\n%s\nserver log errors:\n%s" % (SEED, ck.report(), "\n".join(errs) or "-"),
                    pytrace=False)
