"""Client-side RFC 7162 bookkeeping for test_concurrency.py.

A `Session` keeps, for the mailbox it has selected, what a careful client
keeps: the sequence-number -> UID map (with placeholders for messages it has
been told exist but not yet which UID they have), the flags and the last
MODSEQ of every UID, and HIGHESTMODSEQ computed as RFC 7162 section 6 says
(a HIGHESTMODSEQ response code wins, otherwise the highest MODSEQ told
since the previous tagged response).  It applies every untagged response in
order and checks, as it goes, what a client can check by itself:

- the sequence numbers the server uses agree with the UIDs it told before;
- EXISTS never goes down, VANISHED (without EARLIER) and EXPUNGE only name
  messages of the view;
- per UID, MODSEQ never goes backwards within a session;
- a HIGHESTMODSEQ code is never below the value the client computed after
  an earlier command (that would mean the earlier value skipped a change);
- one (mailbox, UID, MODSEQ) is never told with two different flag sets,
  by any session (the `Ledger`).

It resynchronises from a recorded `State` in three ways: SELECT (QRESYNC
...), SELECT + UID FETCH (CHANGEDSINCE n VANISHED), and without QRESYNC
UID FETCH (CHANGEDSINCE n) + UID SEARCH.  New messages above the state's
highest UID are fetched afterwards.
"""
import collections
import random
import re
import threading
import time
import traceback

from imap import Conn

SYSTEM = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")
BITS = {"\\Seen": 1, "\\Answered": 2, "\\Flagged": 4, "\\Deleted": 8, "\\Draft": 16}
_CANON = {f.lower(): f for f in SYSTEM}

FETCH_RE = re.compile(rb"\* (\d+) FETCH \((.*)\)\r\n\Z", re.S)
UID_RE = re.compile(rb"(?:^|[ (])UID (\d+)")
FLAGS_RE = re.compile(rb"(?:^|[ (])FLAGS \(([^)]*)\)")
MODSEQ_RE = re.compile(rb"(?:^|[ (])MODSEQ \((\d+)\)")
VANISHED_RE = re.compile(rb"\* VANISHED (\(EARLIER\) )?([0-9:,]+)\r\n\Z")
EXISTS_RE = re.compile(rb"\* (\d+) EXISTS\r\n\Z")
EXPUNGE_RE = re.compile(rb"\* (\d+) EXPUNGE\r\n\Z")
HMS_RE = re.compile(rb"\[HIGHESTMODSEQ (\d+)\]")
UIDVALIDITY_RE = re.compile(rb"\[UIDVALIDITY (\d+)\]")
SEARCH_RE = re.compile(rb"\* SEARCH((?: \d+)*)(?: \(MODSEQ (\d+)\))?\r\n\Z")
COPYUID_RE = re.compile(rb"\[COPYUID (\d+) ([0-9:,]+) ([0-9:,]+)\]")
APPENDUID_RE = re.compile(rb"\[APPENDUID (\d+) (\d+)\]")
MODIFIED_RE = re.compile(rb"\[MODIFIED ([0-9:,]+)\]")


def norm_flags(text):
    """A FLAGS list (bytes inside the parentheses) as a frozenset, without
    \\Recent, system flags in their canonical spelling."""
    out = set()
    for w in text.decode().split():
        lw = w.lower()
        if lw == "\\recent":
            continue
        out.add(_CANON.get(lw, w))
    return frozenset(out)


def db_flags(bits, keywords):
    """message.flags bitmask and keywords (space separated) as a frozenset."""
    out = {f for f, b in BITS.items() if bits & b}
    out.update(keywords.split())
    return frozenset(out)


def parse_set(text):
    """'1:3,7' -> [1, 2, 3, 7]"""
    if isinstance(text, bytes):
        text = text.decode()
    out = []
    for part in text.split(","):
        if ":" in part:
            a, b = (int(x) for x in part.split(":"))
            if a > b:
                a, b = b, a
            out.extend(range(a, b + 1))
        else:
            out.append(int(part))
    return out


def fmt_set(nums):
    """Sorted numbers -> '1:3,7' (nums must not be empty)."""
    nums = sorted(set(nums))
    parts = []
    start = prev = nums[0]
    for n in nums[1:]:
        if n == prev + 1:
            prev = n
            continue
        parts.append("%d" % start if start == prev else "%d:%d" % (start, prev))
        start = prev = n
    parts.append("%d" % start if start == prev else "%d:%d" % (start, prev))
    return ",".join(parts)


class Broken(Exception):
    """The session's view can no longer be kept (a problem was recorded)."""


class Checker:
    """Collects problems from all threads, by category."""

    def __init__(self, keep=6):
        self.lock = threading.Lock()
        self.counts = {}
        self.examples = {}
        self.keep = keep
        self.exceptions = []
        self.origins = []       # (category, id of the State a view was resynced from)

    def fail(self, category, msg, origin=None):
        with self.lock:
            if origin is not None:
                self.origins.append((category, origin))
            self.counts[category] = self.counts.get(category, 0) + 1
            ex = self.examples.setdefault(category, [])
            if len(ex) < self.keep:
                ex.append(msg)

    def exception(self, who):
        with self.lock:
            self.exceptions.append("%s:\n%s" % (who, traceback.format_exc()))

    def report(self):
        lines = []
        for cat in sorted(self.counts):
            lines.append("%s: %d" % (cat, self.counts[cat]))
            for e in self.examples[cat]:
                lines.append("    " + e)
        for e in self.exceptions[:5]:
            lines.append(e)
        if len(self.exceptions) > 5:
            lines.append("... %d more exceptions" % (len(self.exceptions) - 5))
        return "\n".join(lines)

    def ok(self):
        return not self.counts and not self.exceptions


class Ledger:
    """What all sessions were told, for the checks across sessions."""

    def __init__(self, checker):
        self.c = checker
        self.lock = threading.Lock()
        self.told = {}          # (mailbox, uid, modseq) -> (flags, who)
        self.store_ms = {}      # (mailbox, modseq) -> STORE command id
        self.moved_src = {}     # (mailbox, uid) -> command id that moved it
        self.created = {}       # (mailbox, uid) -> APPEND/MOVE command id
        self.stores_checked = 0
        self.observations = 0

    def observe(self, mailbox, uid, modseq, flags, who):
        key = (mailbox, uid, modseq)
        with self.lock:
            self.observations += 1
            prev = self.told.get(key)
            if prev is None:
                self.told[key] = (flags, who)
                return
        if prev[0] != flags:
            self.c.fail("one modseq, two flag sets",
                        "%s UID %d MODSEQ %d: %s told %s, %s told %s" % (
                            mailbox, uid, modseq, prev[1], sorted(prev[0]), who, sorted(flags)))

    def store_modseq(self, mailbox, modseq, cmd):
        with self.lock:
            self.stores_checked += 1
            prev = self.store_ms.setdefault((mailbox, modseq), cmd)
        if prev != cmd:
            self.c.fail("two STOREs share a modseq (RFC 7162 3.1)",
                        "%s MODSEQ %d: %s and %s" % (mailbox, modseq, prev, cmd))

    def moved(self, mailbox, uid, cmd):
        with self.lock:
            prev = self.moved_src.setdefault((mailbox, uid), cmd)
        if prev != cmd:
            self.c.fail("one message moved twice",
                        "%s UID %d: COPYUID of %s and of %s" % (mailbox, uid, prev, cmd))

    def create(self, mailbox, uid, cmd):
        with self.lock:
            prev = self.created.setdefault((mailbox, uid), cmd)
        if prev != cmd:
            self.c.fail("one UID given twice",
                        "%s UID %d: %s and %s" % (mailbox, uid, prev, cmd))


_state_ids = iter(range(1, 1 << 62))


class State:
    """A client's recorded knowledge of a mailbox: enough to resync from."""
    __slots__ = ("id", "mailbox", "uidvalidity", "hms", "flags", "kind", "who", "t", "seqmap", "origin")

    def __init__(self, mailbox, uidvalidity, hms, flags, kind, who, seqmap=None, origin=None):
        self.id = next(_state_ids)
        self.origin = origin            # the State this one was resynced from
        self.mailbox = mailbox
        self.uidvalidity = uidvalidity
        self.hms = hms
        self.flags = dict(flags)        # uid -> frozenset
        self.kind = kind                # "qresync" or "condstore"
        self.who = who
        self.t = time.monotonic()
        self.seqmap = seqmap or []      # [(seq, uid)] the client's numbering

    def maxuid(self):
        return max(self.flags, default=0)

    def __repr__(self):
        return "State#%d(%s by %s%s, HMS %d, %d msgs, %s)" % (
            self.id, self.mailbox, self.who, " from #%d" % self.origin.id if self.origin else "",
            self.hms, len(self.flags), self.kind)


class View:
    """One selected mailbox as the client knows it.

    mode "live": seq[i] is the UID of sequence number i+1, None when not
    known yet; flags/modseq hold every known UID.
    mode "pending": a resync has started; `flags` is the recorded cache
    (VANISHED (EARLIER) still comes off it) and the sequence numbers are
    tied to it (`establish`) at the first response that needs them.
    mode "untracked": the CONDSTORE-only resync, by UID alone.
    """

    def __init__(self, mailbox, mode="live", cache=None, oldmax=0, readonly=False):
        self.mailbox = mailbox
        self.mode = mode
        self.seq = []
        self.flags = dict(cache or {})
        self.modseq = {}
        self.hms = None
        self.uidvalidity = None
        self.exists = 0
        self.oldmax = oldmax
        self.readonly = readonly
        self.oldcache = None        # CONDSTORE listing resync: the state's flags
        self.last_store_ms = 0      # RFC 7162 3.1: STOREs of one session grow
        self.none_since = None      # when a hole in seq first stayed unresolved

    def known(self):
        return [u for u in self.seq if u is not None]


class Reply:
    __slots__ = ("untagged", "tagged", "fetches", "vanished", "earlier", "codes", "search",
                 "copyuid", "ok")

    def __init__(self, untagged, tagged):
        self.untagged = untagged
        self.tagged = tagged
        self.fetches = []       # (seq, uid, flags or None, modseq or None)
        self.vanished = []
        self.earlier = []
        self.codes = []
        self.search = None
        self.copyuid = []
        self.ok = b" OK " in tagged[:40]


class Session:
    """One IMAP connection of one simulated client."""

    def __init__(self, port, login, who, checker, ledger, qresync, timeout=120.0):
        self.who = who
        self.c = checker
        self.ledger = ledger
        self.qresync = qresync
        self.conn = Conn("127.0.0.1", port, timeout=timeout)
        self.v = None
        self.ncmd = 0
        self.silent = None      # (mode, flags, uids) of a running .SILENT STORE
        self.origin = None      # the State the selected view was resynced from
        self.history = collections.deque(maxlen=4)
        try:
            self.conn.login(*login)
            if qresync:
                u, _ = self.conn.ok("ENABLE QRESYNC")
                if b"QRESYNC" not in b"".join(u):
                    raise AssertionError("ENABLE QRESYNC not confirmed: %r" % u)
        except BaseException:
            self.conn.close()
            raise

    def close(self):
        try:
            if not getattr(self.conn, "dead", False):
                self.conn.send(b"zz LOGOUT\r\n")
        except OSError:
            pass
        self.conn.close()

    def problem(self, category, msg):
        hist = " | ".join("%s -> %s" % (c, b" ".join(x.rstrip() for x in u)[:300].decode(errors="replace"))
                          for c, u in self.history)
        origin = " [view resynced from State#%d]" % self.origin.id if self.origin else ""
        self.c.fail(category, "%s%s: %s\n        recent: %s" % (self.who, origin, msg, hist[-1500:]),
                    self.origin.id if self.origin else None)

    # ---- commands ----------------------------------------------------

    def run(self, command, literal=None, silent=None):
        """Send one command, apply every response, return the Reply.
        silent: (mode, flags, uids) of a .SILENT STORE, whose result the
        client computes itself where the server tells only the MODSEQ."""
        self.ncmd += 1
        self.silent = silent
        tag = self.conn.next_tag()
        if literal is not None:
            self.conn.send(b"%s %s {%d+}\r\n%s\r\n" % (tag.encode(), command.encode(), len(literal), literal))
        else:
            self.conn.send("%s %s\r\n" % (tag, command))
        untagged, tagged = self.conn.collect(tag)
        r = Reply(untagged, tagged)
        self.history.append((command, untagged + [tagged]))
        try:
            self.apply(r, command)
        finally:
            self.silent = None
        return r

    def must(self, command, literal=None, silent=None):
        r = self.run(command, literal, silent)
        if not r.ok:
            self.problem("command failed", "%s -> %r" % (command, r.tagged))
            raise Broken(command)
        return r

    # ---- applying responses -------------------------------------------

    def apply(self, r, command):
        v = self.v
        cmd_max = 0
        vanished_here = set()
        for line in r.untagged:
            if line.startswith(b"* BYE"):
                self.problem("unexpected BYE", "%s -> %r" % (command, line))
                raise Broken("BYE")
            m = FETCH_RE.match(line)
            if m:
                body = m.group(2)
                mu, mf, mm = UID_RE.search(body), FLAGS_RE.search(body), MODSEQ_RE.search(body)
                f = (int(m.group(1)), int(mu.group(1)) if mu else None,
                     norm_flags(mf.group(1)) if mf else None, int(mm.group(1)) if mm else None)
                r.fetches.append(f)
                if v is not None:
                    if f[1] is not None and f[1] in vanished_here:
                        self.problem("UID both vanished and present",
                                     "%s: UID %d in VANISHED and in %r" % (command, f[1], line))
                    ms = self._fetch(v, *f, command=command)
                    if ms is not None:
                        cmd_max = max(cmd_max, ms)
                continue
            m = VANISHED_RE.match(line)
            if m:
                uids = parse_set(m.group(2))
                earlier = bool(m.group(1))
                (r.earlier if earlier else r.vanished).extend(uids)
                vanished_here.update(uids)
                if v is not None:
                    self._vanished(v, uids, earlier, command)
                continue
            m = EXISTS_RE.match(line)
            if m:
                if v is not None:
                    self._exists(v, int(m.group(1)), command)
                continue
            m = EXPUNGE_RE.match(line)
            if m:
                if self.qresync:
                    self.problem("EXPUNGE after ENABLE QRESYNC", "%s -> %r" % (command, line))
                if v is not None:
                    self._expunge(v, int(m.group(1)), command)
                continue
            m = HMS_RE.search(line)
            if m and line.startswith(b"* OK"):
                r.codes.append(int(m.group(1)))
                continue
            m = SEARCH_RE.match(line)
            if m:
                r.search = [int(x) for x in m.group(1).split()]
                continue
            m = COPYUID_RE.search(line)
            if m:
                r.copyuid.append(m.groups())
                continue
            m = UIDVALIDITY_RE.search(line)
            if m and v is not None:
                v.uidvalidity = int(m.group(1))
        m = HMS_RE.search(r.tagged)
        if m:
            r.codes.append(int(m.group(1)))
        if v is None or not r.ok:
            return
        # RFC 7162 section 6: a code wins (even when lower than MODSEQs
        # seen); otherwise the highest MODSEQ since the last tagged reply.
        if r.codes:
            for a, b in zip(r.codes, r.codes[1:]):
                if b < a:
                    self.problem("HIGHESTMODSEQ codes go back", "%s: codes %r" % (command, r.codes))
            new = r.codes[-1]
            if v.hms is not None and new < v.hms:
                self.problem("HIGHESTMODSEQ below the client's earlier value (section 6)",
                             "%s %s: [HIGHESTMODSEQ %d] after the client had computed %d" % (
                                 v.mailbox, command, new, v.hms))
            v.hms = new
        elif cmd_max and (v.hms is None or cmd_max > v.hms):
            v.hms = cmd_max

    def _place(self, v, seq, uid, command):
        """Tie sequence number seq to uid (live mode)."""
        if seq < 1 or seq > len(v.seq):
            self.problem("FETCH outside the view", "%s: seq %d UID %s, the view has %d" % (
                command, seq, uid, len(v.seq)))
            raise Broken("seq")
        cur = v.seq[seq - 1]
        if uid is None:
            return cur
        if cur is None:
            lo = next((u for u in reversed(v.seq[:seq - 1]) if u is not None), 0)
            hi = next((u for u in v.seq[seq:] if u is not None), None)
            if uid <= lo or (hi is not None and uid >= hi):
                self.problem("sequence numbers disagree",
                             "%s %s: seq %d UID %d does not fit between UIDs %s and %s" % (
                                 v.mailbox, command, seq, uid, lo, hi))
                raise Broken("seq")
            v.seq[seq - 1] = uid
        elif cur != uid:
            self.problem("sequence numbers disagree",
                         "%s %s: seq %d is UID %d for the client, the server says UID %d" % (
                             v.mailbox, command, seq, cur, uid))
            raise Broken("seq")
        return uid

    def _fetch(self, v, seq, uid, flags, modseq, command):
        if v.mode == "pending":
            self.establish()
        if v.mode == "live":
            uid = self._place(v, seq, uid, command)
            if uid is None:
                return modseq
        elif uid is None:
            return modseq
        else:
            # untracked: by UID only
            if uid <= v.oldmax and uid not in v.flags:
                self.problem("resync found a message the state lacked",
                             "%s %s: UID %d <= %d live but not in the recorded state" % (
                                 v.mailbox, command, uid, v.oldmax))
        if modseq is not None:
            last = v.modseq.get(uid)
            if last is not None and modseq < last:
                self.problem("MODSEQ goes back for a message",
                             "%s UID %d: MODSEQ %d after %d (%s)" % (v.mailbox, uid, modseq, last, command))
            v.modseq[uid] = max(modseq, last or 0)
            if flags is not None:
                self.ledger.observe(v.mailbox, uid, modseq, flags, self.who)
        if flags is not None:
            v.flags[uid] = flags
        elif self.silent is not None and uid in self.silent[2] and v.flags.get(uid) is not None:
            # A .SILENT STORE: the client applies what it asked for.
            mode, want, _ = self.silent
            cur = v.flags[uid]
            v.flags[uid] = frozenset(cur | want if mode == "+FLAGS" else cur - want if mode == "-FLAGS"
                                     else want)
        elif uid not in v.flags and v.mode == "live":
            old = v.oldcache.get(uid) if v.oldcache is not None else None
            if old is None and v.oldcache is not None and uid <= v.oldmax:
                self.problem("resync found a message the state lacked",
                             "%s %s: UID %d <= %d live but not in the recorded state" % (
                                 v.mailbox, command, uid, v.oldmax))
            v.flags[uid] = old      # None: placed, flags not told yet
        return modseq

    def _vanished(self, v, uids, earlier, command):
        if earlier:
            for u in uids:
                if v.mode == "live" and u in v.seq:
                    self.problem("VANISHED (EARLIER) for a message of the view",
                                 "%s %s: UID %d" % (v.mailbox, command, u))
                    raise Broken("earlier")
                v.flags.pop(u, None)
                v.modseq.pop(u, None)
            return
        if v.mode == "pending":
            self.establish()
        for u in uids:
            v.flags.pop(u, None)
            v.modseq.pop(u, None)
            if v.mode != "live":
                v.exists -= 1
                continue
            if u in v.seq:
                v.seq.remove(u)
                continue
            # One of the messages we know exist but not which UID: a
            # placeholder after the known UIDs below u, before those above.
            idx = None
            for i, x in enumerate(v.seq):
                if x is None:
                    idx = i
                elif x > u:
                    break
                else:
                    idx = None
            if idx is None:
                self.problem("VANISHED for a UID not in the view (RFC 7162 3.2.10.2)",
                             "%s %s: UID %d" % (v.mailbox, command, u))
                raise Broken("vanished")
            del v.seq[idx]

    def _exists(self, v, n, command):
        if v.mode == "untracked":
            v.exists = n
            return
        if n < len(v.seq):
            self.problem("EXISTS goes down", "%s %s: %d after %d" % (v.mailbox, command, n, len(v.seq)))
            raise Broken("exists")
        v.seq.extend([None] * (n - len(v.seq)))

    def _expunge(self, v, n, command):
        if v.mode == "pending":
            self.establish()
        if v.mode == "untracked":
            v.exists -= 1
            return
        if n < 1 or n > len(v.seq):
            self.problem("EXPUNGE outside the view", "%s %s: %d of %d" % (v.mailbox, command, n, len(v.seq)))
            raise Broken("expunge")
        u = v.seq.pop(n - 1)
        if u is not None:
            v.flags.pop(u, None)
            v.modseq.pop(u, None)

    def establish(self):
        """After a resync: the recorded cache (what is left of it after
        VANISHED (EARLIER)) must be exactly the view's first messages."""
        v = self.v
        if v.mode != "pending":
            return
        v.mode = "live"
        mine = sorted(u for u in v.flags if u <= v.oldmax)
        if len(mine) > len(v.seq):
            self.problem("resync keeps messages the server does not have",
                         "%s: the client holds %d messages <= UID %d, EXISTS is %d; extra among %s" % (
                             v.mailbox, len(mine), v.oldmax, len(v.seq), fmt_set(mine) if mine else "-"))
            raise Broken("establish")
        for i, u in enumerate(mine):
            if v.seq[i] is not None and v.seq[i] != u:
                self.problem("resync keeps messages the server does not have",
                             "%s: seq %d is UID %d for the server, %d in the resynced cache" % (
                                 v.mailbox, i + 1, v.seq[i], u))
                raise Broken("establish")
            v.seq[i] = u
        for i in range(len(mine), len(v.seq)):
            if v.seq[i] is not None and v.seq[i] <= v.oldmax:
                self.problem("resync misses a message",
                             "%s: seq %d is UID %d, not in the resynced cache" % (v.mailbox, i + 1, v.seq[i]))
                raise Broken("establish")
        for u in list(v.flags):
            if u > v.oldmax and u not in v.seq:
                del v.flags[u]

    # ---- selecting and filling the view -------------------------------

    def select(self, mailbox, examine=False, condstore=True):
        self.origin = None
        self.v = View(mailbox, readonly=examine)
        r = self.must("%s %s%s" % ("EXAMINE" if examine else "SELECT", mailbox,
                                    " (CONDSTORE)" if condstore else ""))
        if self.v.hms is None:
            self.problem("no HIGHESTMODSEQ on SELECT", "%s -> %r" % (mailbox, r.untagged))
            raise Broken("select")
        return r

    def fill(self, tries=8):
        """Learn the UIDs and flags of every message of the view.  Returns
        True when the view has no placeholder left."""
        v = self.v
        for attempt in range(tries):
            if v.mode == "pending":
                self.establish()
            if not any(u is None for u in v.seq) and all(v.flags.get(u) is not None for u in v.seq):
                v.none_since = None
                return True
            first = next(i for i, u in enumerate(v.seq) if u is None or v.flags.get(u) is None)
            if attempt >= 2 and attempt % 2 == 0:
                # Messages the server skipped (gone from the database):
                # it tells us when it may.
                self.run("NOOP")
                time.sleep(0.005 * attempt)
                continue
            if random.random() < 0.5:
                self.must("FETCH %d:* (UID FLAGS MODSEQ)" % (first + 1))
            else:
                below = max((u for u in v.seq[:first] if u is not None), default=0)
                self.must("UID FETCH %d:* (FLAGS MODSEQ)" % (below + 1))
        if v.none_since is None:
            v.none_since = time.monotonic()
        elif time.monotonic() - v.none_since > 20:
            self.problem("a message stays unknown",
                         "%s: seq %s never fetched nor expunged for 20 s" % (
                             v.mailbox, [i + 1 for i, u in enumerate(v.seq) if u is None][:5]))
            raise Broken("fill")
        return False

    def record(self):
        """The client's state now (after a tagged response), or None when
        it does not know every message yet."""
        v = self.v
        if v.mode == "untracked":
            return State(v.mailbox, v.uidvalidity, v.hms, v.flags, "condstore", self.who, origin=self.origin)
        if v.mode != "live":
            return None
        known = [u for u in v.seq if u is not None]
        # Placeholders at the end are new messages above every known UID
        # (a resync fetches those); one before a known UID is not allowed.
        last = max((i for i, u in enumerate(v.seq) if u is not None), default=-1)
        if any(u is None for u in v.seq[:last]) or any(v.flags.get(u) is None for u in known):
            return None
        seqmap = [(i + 1, u) for i, u in enumerate(v.seq[:last + 1])]
        return State(v.mailbox, v.uidvalidity, v.hms, {u: v.flags[u] for u in known},
                     "qresync" if self.qresync else "condstore", self.who, seqmap, self.origin)

    # ---- resynchronisation ---------------------------------------------

    def resync_qresync(self, st, known=True, seqmatch=False, examine=False):
        """SELECT (QRESYNC (uidvalidity modseq [known-uids [seq-match]]))."""
        self.origin = st
        assert self.qresync
        arg = "%d %d" % (st.uidvalidity, st.hms)
        if known and st.flags:
            arg += " " + fmt_set(st.flags)
            if seqmatch and st.seqmap:
                pairs = sorted(random.sample(st.seqmap, min(len(st.seqmap), random.randint(1, 4))))
                arg += " (%s %s)" % (",".join(str(s) for s, _ in pairs), ",".join(str(u) for _, u in pairs))
        self.v = View(st.mailbox, "pending", st.flags, st.maxuid(), readonly=examine)
        r = self.must("%s %s (QRESYNC (%s))" % ("EXAMINE" if examine else "SELECT", st.mailbox, arg))
        self._check_resync_select(st, r)
        self.establish()
        return r

    def resync_vanished(self, st, known=True):
        """SELECT (CONDSTORE), then UID FETCH ... (CHANGEDSINCE n VANISHED)."""
        self.origin = st
        assert self.qresync
        self.v = View(st.mailbox, "pending", st.flags, st.maxuid())
        r = self.must("SELECT %s (CONDSTORE)" % st.mailbox)
        self._check_resync_select(st, r)
        which = fmt_set(st.flags) if known and st.flags else "1:*"
        r = self.must("UID FETCH %s (FLAGS) (CHANGEDSINCE %d VANISHED)" % (which, st.hms))
        for seq, uid, flags, modseq in r.fetches:
            if modseq is None:
                self.problem("CHANGEDSINCE without MODSEQ", "%r" % (r.untagged,))
        self.establish()
        return r

    def resync_condstore(self, st):
        """Without QRESYNC, by UID alone: UID FETCH 1:* (FLAGS)
        (CHANGEDSINCE n), the new messages, then UID SEARCH ALL for what is
        left (RFC 7162 3.2.1, RFC 4549)."""
        self.origin = st
        assert not self.qresync
        v = self.v = View(st.mailbox, "untracked", st.flags, st.maxuid())
        r = self.must("SELECT %s (CONDSTORE)" % st.mailbox)
        self._check_resync_select(st, r)
        self.must("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % st.hms)
        self.must("UID FETCH %d:* (FLAGS MODSEQ)" % (v.oldmax + 1))
        r = self.must("UID SEARCH ALL")
        live = set(r.search or [])
        for u in list(v.flags):
            if u not in live:
                del v.flags[u]
                v.modseq.pop(u, None)
        missing = sorted(live - set(v.flags))
        for u in missing:
            if u <= v.oldmax:
                self.problem("resync found a message the state lacked",
                             "%s: UID SEARCH lists UID %d, neither in the state nor fetched" % (v.mailbox, u))
        if missing:
            # Arrived after the fetch of the new messages.
            self.must("UID FETCH %s (FLAGS MODSEQ)" % fmt_set(missing))
        return r

    def resync_condstore_list(self, st):
        """Without QRESYNC, with sequence numbers: UID FETCH 1:* (FLAGS)
        (CHANGEDSINCE n), then FETCH 1:* (UID) lists what is left."""
        self.origin = st
        assert not self.qresync
        v = self.v = View(st.mailbox, "live", None, st.maxuid())
        v.oldcache = dict(st.flags)
        r = self.must("SELECT %s (CONDSTORE)" % st.mailbox)
        self._check_resync_select(st, r)
        self.must("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % st.hms)
        if v.seq:
            self.must("FETCH 1:* (UID)")
        v.oldcache = None
        return r

    def _check_resync_select(self, st, r):
        v = self.v
        if v.uidvalidity != st.uidvalidity:
            self.problem("UIDVALIDITY changed", "%s: %s -> %s" % (st.mailbox, st.uidvalidity, v.uidvalidity))
            raise Broken("uidvalidity")
        if v.hms is None:
            self.problem("no HIGHESTMODSEQ on SELECT", repr(r.untagged))
            raise Broken("select")
        if v.hms < st.hms:
            self.problem("HIGHESTMODSEQ went back between sessions",
                         "%s: SELECT says %d, the state had %d (%r)" % (st.mailbox, v.hms, st.hms, st))
