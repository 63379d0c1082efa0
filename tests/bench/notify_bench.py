#!/usr/bin/env python3
"""IDLE notification benchmark (called from tests/bench/run.py, or alone).

Prints, with figures only (no pass/fail):
- the latency from the writer's tagged OK to the untagged `* n FETCH` at
  watchers in IDLE on another node (p50, p99, max), with 10, 1,000 and
  10,000 watchers of one mailbox, and with 10,000 watchers spread over
  10,000 mailboxes;
- per watcher-node worker: delta queries and NATS notifications per change
  (the sharing: one query per mailbox per worker, not per session), and the
  worker's CPU time per change;
- the workers' CPU and resident memory while 10,000 sessions idle (KiB per
  idle session, CPU % per worker over a quiet interval).

Set-up: its own stack (PostgreSQL with --pg-nosync, nats-server, one imapd
node for the writer) plus a private imapd for the watchers (workers = 2, so
figures are per worker), started fresh for each watcher set so "memory
before" is a clean baseline.  The accounts get a cheap crypt(3) hash
($5$rounds=1000) through `imapctl user import`, so 10,000 LOGINs take
seconds; the 10,000 mailboxes are made with SQL.

Latency is measured twice:
- "at the socket": the kernel's receive timestamp (SO_TIMESTAMPNS) of the
  watcher's FETCH minus that of the writer's tagged OK.  On loopback the
  stamp is taken while the sender's write() runs, so the client's delay in
  reading is not in it (its CPU use can still slow the server: see below).
- "seen by client": when the Python client had read and parsed the FETCH,
  minus the kernel stamp of the writer's OK.  The difference is the
  client's share (it reads thousands of sockets one after another).
Each change is sent when the previous one reached every watcher (or 5 s
passed) and at least SPACING after the previous change, so this measures
latency, not throughput.  The one-mailbox sets run twice: once with the
client reading as data arrives (it then competes with the workers for the
CPUs: about 10 us of Python per receipt), once with the client leaving
the watchers' sockets alone during the fan-out and reading them after
(the kernel stamps still date each FETCH), which is the server's latency
without the client's CPU use.

Environment: MAIL_BUILD (binaries, default build), NOTIFY_BENCH_WATCHERS
(default 10000; the largest set), NOTIFY_BENCH_IDLE_SECONDS (default 20).
"""
import os
import random
import re
import resource
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import conftest  # noqa: E402
from imap import Conn  # noqa: E402

USER = "watch@example.com"
PASSWORD = "pw"
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)   # Linux, 64-bit: 35
CMSG_TS = socket.CMSG_SPACE(16)
SPACING = 0.050          # seconds between two changes, at least
SETTLE = 0.010           # after the last receipt of a change, before the next
CHANGE_TIMEOUT = 5.0     # a change not seen by every watcher by then is counted missing
SETUP_PARALLEL = 200     # sessions in LOGIN/SELECT at once (listen backlog is 1024)
MSG = (b"From: Bench <bench@example.com>\r\nTo: watch@example.com\r\nSubject: notify bench\r\n"
       b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nMessage-ID: <nb@example.com>\r\n\r\nhello\r\n")
FETCH_RE = re.compile(rb"\* \d+ FETCH \(FLAGS \(([^)]*)\)\)")
HZ = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


# ---- helpers ------------------------------------------------------------------

def cheap_hash(password):
    """A $5$ (SHA256-crypt) hash at the minimum cost (1000 rounds)."""
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
        h = crypt.crypt(password, "$5$rounds=1000$nbench$")
        if h and h.startswith("$5$"):
            return h
    except ImportError:
        pass
    # openssl passwd has no rounds option: the default 5000 rounds, still cheap
    r = subprocess.run(["openssl", "passwd", "-5", "-salt", "nbench", "-stdin"], input=password + "\n",
                       capture_output=True, text=True, check=True)
    return r.stdout.strip()


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = hard if hard != resource.RLIM_INFINITY else max(soft, want)
    if new > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return soft, resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard


def kernel_ts(anc):
    for level, typ, data in anc:
        if level == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            return sec + nsec * 1e-9
    return None


def proc_stat(pid):
    """(CPU seconds utime+stime, RSS KiB, open fds, VmData KiB) of a process."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / HZ
    rss = data = None
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmData:"):
                data = int(line.split()[1])
    try:
        fds = len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        fds = -1
    return cpu, rss, fds, data


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    return sorted_vals[min(len(sorted_vals) - 1, int(len(sorted_vals) * p))]


def metrics(port):
    """{metric name: {worker index: value}} from the node's /metrics."""
    out = {}
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
        text = r.read().decode()
    for line in text.splitlines():
        m = re.match(r'(\w+)\{worker="(\d+)"\} (\d+)', line)
        if m:
            out.setdefault(m.group(1), {})[int(m.group(2))] = int(m.group(3))
    return out


def mdiff(after, before, name):
    a, b = after.get(name, {}), before.get(name, {})
    return {k: a[k] - b.get(k, 0) for k in sorted(a)}


def make_cert(tmp):
    crt, key = os.path.join(tmp, "bench.crt"), os.path.join(tmp, "bench.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", key, "-out", crt],
                   check=True, capture_output=True, timeout=60)
    return crt, key


# ---- the writer ---------------------------------------------------------------

class Writer:
    """One session on the writer node; reads with recvmsg so the tagged OK
    carries the kernel's receive timestamp."""

    def __init__(self, port):
        c = Conn("127.0.0.1", port, timeout=60)
        c.login(USER, PASSWORD)
        assert not c.buf
        self.conn = c
        self.sock = c.sock
        self.sock.settimeout(None)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.buf = bytearray()
        self.n = 0
        self.tag = None
        self.ok_ts = None       # kernel stamp of the tagged OK
        self.selected = None

    def send(self, command):
        self.n += 1
        self.tag = b"w%d" % self.n
        self.ok_ts = None
        self.sock.sendall(self.tag + b" " + command + b"\r\n")

    def on_readable(self):
        """Reads what is there; True once the tagged response is in."""
        data, anc, _, _ = self.sock.recvmsg(65536, CMSG_TS)
        if not data:
            raise ConnectionError("writer connection closed")
        ts = kernel_ts(anc) or time.time()
        self.buf += data
        while True:
            i = self.buf.find(b"\r\n")
            if i < 0:
                return False
            line = bytes(self.buf[:i])
            del self.buf[:i + 2]
            if self.tag is not None and line.startswith(self.tag + b" "):
                if not line.startswith(self.tag + b" OK"):
                    raise RuntimeError("writer: %r" % line)
                self.ok_ts = ts
                self.tag = None
                return True

    def run(self, command):
        self.send(command)
        while self.tag is not None:
            self.on_readable()

    def select(self, mailbox):
        if self.selected != mailbox:
            self.run(b"SELECT " + mailbox.encode())
            self.selected = mailbox

    def close(self):
        self.conn.close()


# ---- the watchers -------------------------------------------------------------

class Watcher:
    __slots__ = ("sock", "fd", "mailbox", "buf", "state", "seen")

    def __init__(self, sock, mailbox):
        self.sock = sock
        self.fd = sock.fileno()
        self.mailbox = mailbox
        self.buf = bytearray()
        self.state = 0
        self.seen = -1          # index of the last change received


def connect_watchers(port, mailboxes, out, timeout=900):
    """Opens one session per mailbox name: LOGIN, SELECT, IDLE, pipelined
    LOGIN+SELECT, at most SETUP_PARALLEL at once; appends them to out."""
    ep = select.epoll()
    todo = list(reversed(mailboxes))
    inflight = {}
    done = 0
    deadline = time.monotonic() + timeout
    login = b'a LOGIN "%s" "%s"\r\n' % (USER.encode(), PASSWORD.encode())
    try:
        while todo or inflight:
            while todo and len(inflight) < SETUP_PARALLEL:
                s = socket.create_connection(("127.0.0.1", port), timeout=30)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                s.setblocking(False)
                w = Watcher(s, todo.pop())
                inflight[w.fd] = w
                ep.register(w.fd, select.EPOLLIN)
            if time.monotonic() > deadline:
                raise TimeoutError("watcher set-up: %d of %d ready after %d s"
                                   % (done, len(mailboxes), timeout))
            for fd, _ in ep.poll(1.0):
                w = inflight[fd]
                try:
                    data = w.sock.recv(65536)
                except BlockingIOError:
                    continue
                if not data:
                    raise ConnectionError("watcher closed during set-up (state %d): %r"
                                          % (w.state, bytes(w.buf[-300:])))
                w.buf += data
                while w.state < 3:
                    i = w.buf.find(b"\r\n")
                    if i < 0:
                        break
                    line = bytes(w.buf[:i])
                    del w.buf[:i + 2]
                    if w.state == 0:
                        if not line.startswith(b"* OK"):
                            raise RuntimeError("greeting: %r" % line)
                        w.sock.sendall(login + b"b SELECT " + w.mailbox.encode() + b"\r\n")
                        w.state = 1
                    elif w.state == 1:
                        if line.startswith(b"a ") and not line.startswith(b"a OK"):
                            raise RuntimeError("LOGIN: %r" % line)
                        if line.startswith(b"b "):
                            if not line.startswith(b"b OK"):
                                raise RuntimeError("SELECT %s: %r" % (w.mailbox, line))
                            w.sock.sendall(b"i IDLE\r\n")
                            w.state = 2
                    elif w.state == 2 and line.startswith(b"+ "):
                        w.state = 3
                if w.state == 3:
                    ep.unregister(fd)
                    del inflight[fd]
                    out.append(w)
                    done += 1
    finally:
        for w in inflight.values():
            w.sock.close()
        ep.close()


def close_watchers(ws):
    for w in ws:
        try:
            w.sock.close()
        except OSError:
            pass
    ws.clear()


# ---- one latency run ----------------------------------------------------------

def run_changes(writer, watchers, targets, label, defer=False):
    """targets: the mailbox of each change, in order.  Returns a dict of
    results.  Every watcher of that mailbox must get the FETCH.

    defer=False reads the watchers' sockets as data arrives (the client
    competes with the server for the CPUs).  defer=True waits for the
    writer's OK, then leaves the watchers' sockets alone for a while (twice
    the previous change's worst latency, 50 ms to 1 s) before reading them:
    the kernel stamps still tell when each FETCH arrived, and the server
    fans out without the client taking CPU time from it."""
    by_mailbox = {}
    for w in watchers:
        by_mailbox.setdefault(w.mailbox, []).append(w)
        w.seen = -1
    byfd = {w.fd: w for w in watchers}
    ep = select.epoll(sizehint=len(watchers) + 1)
    for w in watchers:
        ep.register(w.fd, select.EPOLLIN)
    ep.register(writer.sock.fileno(), select.EPOLLIN)
    wfd = writer.sock.fileno()
    state = {}                       # mailbox -> \Flagged set now
    lat_k, lat_u, early = [], [], 0
    missing = stale = extra = 0
    receipts = 0
    client_cpu = 0.0
    t_start = time.monotonic()
    last_send = 0.0
    per_change = []                  # (when it was sent, index of its first latency)
    hold = 0.1
    try:
        for k, mb in enumerate(targets):
            writer.select(mb)
            flagged = not state.get(mb, False)
            state[mb] = flagged
            want = b"\\Flagged" if flagged else b""
            expected = len(by_mailbox.get(mb, ()))
            got = 0
            wait = last_send + SPACING - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            pend = []          # (kernel ts, client time) received before the writer's OK
            n_before = len(lat_k)
            last_send = time.monotonic()
            writer.send(b"UID STORE 1 %sFLAGS.SILENT (\\Flagged)" % (b"+" if flagged else b"-"))
            deadline = last_send + CHANGE_TIMEOUT
            ok_ts = None
            if defer:
                while not writer.on_readable():
                    pass
                ok_ts = writer.ok_ts
                time.sleep(hold)
            cpu0 = time.process_time()
            while (got < expected or ok_ts is None) and time.monotonic() < deadline:
                for fd, _ in ep.poll(0.5):
                    if fd == wfd:
                        if writer.on_readable():
                            ok_ts = writer.ok_ts
                            for kt, ut in pend:
                                lat_k.append(kt - ok_ts)
                                lat_u.append(ut - ok_ts)
                                early += kt < ok_ts
                            pend = []
                        continue
                    w = byfd[fd]
                    try:
                        data, anc, _, _ = w.sock.recvmsg(4096, CMSG_TS)
                    except BlockingIOError:
                        continue
                    now = time.time()
                    if not data:
                        raise ConnectionError("watcher of %s closed: %r" % (w.mailbox, bytes(w.buf)))
                    kt = kernel_ts(anc) or now
                    w.buf += data
                    while True:
                        i = w.buf.find(b"\r\n")
                        if i < 0:
                            break
                        line = bytes(w.buf[:i])
                        del w.buf[:i + 2]
                        m = FETCH_RE.match(line)
                        if m is None:
                            continue          # keepalive or other untagged data
                        if w.mailbox != mb or w.seen == k:
                            extra += 1
                            continue
                        if m.group(1) != want:
                            stale += 1
                            continue
                        w.seen = k
                        got += 1
                        receipts += 1
                        if ok_ts is None:
                            pend.append((kt, now))
                        else:
                            lat_k.append(kt - ok_ts)
                            lat_u.append(now - ok_ts)
                            early += kt < ok_ts
            client_cpu += time.process_time() - cpu0
            per_change.append((last_send - t_start, len(lat_k) - n_before))
            if len(lat_k) > n_before:
                hold = min(1.0, max(SPACING, 2 * max(lat_k[n_before:])))
            if ok_ts is None:
                raise TimeoutError("%s: no tagged OK for the STORE of change %d" % (label, k))
            missing += expected - got
            # let anything late arrive (counted as stale/extra next round)
            end = time.monotonic() + SETTLE
            while time.monotonic() < end:
                for fd, _ in ep.poll(max(0.0, end - time.monotonic())):
                    if fd == wfd:
                        continue
                    w = byfd[fd]
                    try:
                        data = w.sock.recv(4096)
                    except BlockingIOError:
                        continue
                    if not data:
                        raise ConnectionError("watcher of %s closed" % w.mailbox)
                    w.buf += data
                    i = w.buf.rfind(b"\r\n")
                    if i >= 0:
                        extra += len(FETCH_RE.findall(bytes(w.buf[:i + 2])))
                        del w.buf[:i + 2]
    finally:
        ep.close()
    worst = [(t, max(lat_k[i - n:i]) if n else None) for t, n, i in
             ((t, n, sum(x[1] for x in per_change[:j + 1])) for j, (t, n) in enumerate(per_change))]
    lat_k.sort()
    lat_u.sort()
    return {"worst": worst, "defer": defer, "label": label, "changes": len(targets), "receipts": receipts, "missing": missing,
            "stale": stale, "extra": extra, "early": early, "lat_k": lat_k, "lat_u": lat_u,
            "client_cpu": client_cpu, "seconds": time.monotonic() - t_start}


def print_latency(r):
    lk, lu = r["lat_k"], r["lat_u"]
    ms = lambda v: v * 1000.0  # noqa: E731
    if r["defer"]:
        print("NOTIFY %s, client off the CPU during the fan-out: %d changes, %d receipts; "
              "at the socket p50 %.2f ms, p99 %.2f ms, max %.2f ms"
              % (r["label"], r["changes"], r["receipts"], ms(pct(lk, 0.5)), ms(pct(lk, 0.99)), ms(lk[-1])))
    else:
        print("NOTIFY %s, client reading as data arrives: %d changes, %d receipts; "
              "at the socket p50 %.2f ms, p99 %.2f ms, max %.2f ms; "
              "seen by client p50 %.2f ms, p99 %.2f ms, max %.2f ms (client's share p50 %.2f ms, p99 %.2f ms)"
              % (r["label"], r["changes"], r["receipts"], ms(pct(lk, 0.5)), ms(pct(lk, 0.99)), ms(lk[-1]),
                 ms(pct(lu, 0.5)), ms(pct(lu, 0.99)), ms(lu[-1]),
                 ms(pct(lu, 0.5) - pct(lk, 0.5)), ms(pct(lu, 0.99) - pct(lk, 0.99))))
    per = r["client_cpu"] / max(1, r["receipts"]) * 1e6
    slow = sum(1 for _, m in r["worst"] if m is not None and m > 0.010)
    print("NOTIFY %s: client CPU %.1f us per receipt; %d of %d changes had a receipt over 10 ms; "
          "%d missing, %d stale, %d duplicate/other; %d receipts stamped before the writer's OK "
          "(min %.2f ms); %.1f s, load average %.1f"
          % (r["label"], per, slow, r["changes"], r["missing"], r["stale"], r["extra"], r["early"],
             ms(lk[0]), r["seconds"], os.getloadavg()[0]))


# ---- the watcher node ---------------------------------------------------------

class WatchNode:
    """A private imapd (conftest.Imapd) for the watchers, with /metrics."""

    def __init__(self, st, cert, tmp, name, max_sessions):
        d = os.path.join(tmp, name)
        os.makedirs(d)
        self.mport = conftest.free_port()
        conf = "\n".join([
            "workers = 2",
            "max_sessions = %d" % max_sessions,
            "metrics_listen = 127.0.0.1:%d" % self.mport,
            "log_level = info",
        ])
        self.inst = conftest.Imapd(st, cert, d, conf)
        self.port = self.inst.port
        deadline = time.monotonic() + 20
        while True:       # wait until both workers are up and connected
            try:
                m = metrics(self.mport)
                if len(m.get("imapd_worker_postgresql_up", {})) == 2 and \
                        all(m["imapd_worker_postgresql_up"].values()) and \
                        all(m.get("imapd_worker_nats_up", {0: 0}).values()):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("watcher node not ready:\n" + self.inst.log_text()[-2000:])
            time.sleep(0.2)

    def workers(self):
        return self.inst.workers()

    def snapshot(self):
        return {pid: proc_stat(pid) for pid in self.workers()}

    def metrics(self):
        return metrics(self.mport)

    def stop(self):
        try:
            self.inst.stop()
        except Exception as e:  # noqa: BLE001
            print("stopping the watcher node: %s" % e)


def print_workers(label, node, before, after, sessions_by_worker):
    """RSS and fds of each worker, before and after; KiB per session
    (VmData, the heap reserved, for comparison)."""
    tot_rss = tot_data = tot_sess = 0
    parts = []
    for pid in sorted(after):
        _, rss0, fd0, data0 = before.get(pid, (0, 0, 0, 0))
        _, rss1, fd1, data1 = after[pid]
        n = fd1 - fd0      # one socket per session
        tot_rss += rss1 - rss0
        tot_data += data1 - data0
        tot_sess += n
        parts.append("pid %d: %d sessions, RSS %d -> %d KiB (%.1f KiB per session)"
                     % (pid, n, rss0, rss1, (rss1 - rss0) / n if n > 0 else float("nan")))
    print("MEMORY %s: %s; overall %.1f KiB resident per idle session (VmData %.1f KiB per session; "
          "sessions per worker from /metrics: %s)"
          % (label, "; ".join(parts), tot_rss / max(1, tot_sess), tot_data / max(1, tot_sess),
             sessions_by_worker))


def measure_idle(label, node, seconds):
    m0 = node.metrics()
    s0 = node.snapshot()
    t0 = time.monotonic()
    time.sleep(seconds)
    dt = time.monotonic() - t0
    s1 = node.snapshot()
    m1 = node.metrics()
    parts = []
    for pid in sorted(s1):
        c0 = s0.get(pid, (0, 0, 0))[0]
        parts.append("pid %d %.2f%%" % (pid, 100.0 * (s1[pid][0] - c0) / dt))
    print("IDLE CPU %s over %.0f s: %s of one core (rechecks per worker %s, commands %s)"
          % (label, dt, ", ".join(parts), mdiff(m1, m0, "imapd_worker_rechecks_total"),
             mdiff(m1, m0, "imapd_worker_commands_total")))


def run_sharing(label, node, r_fn):
    """Runs r_fn() and prints per-worker delta queries, notifications and
    CPU time per change (which includes the kernel's side of the loopback
    writes)."""
    m0, s0 = node.metrics(), node.snapshot()
    r = r_fn()
    s1 = node.snapshot()
    time.sleep(0.6)         # workers publish their counters every 0.25 s
    m1 = node.metrics()
    n = r["changes"]
    dq = mdiff(m1, m0, "imapd_worker_delta_queries_total")
    nt = mdiff(m1, m0, "imapd_worker_notifications_total")
    cpu = {pid: (s1[pid][0] - s0.get(pid, (0,))[0]) * 1000.0 / n for pid in sorted(s1)}
    print("SHARING %s: delta queries per change per worker %s, notifications per change per worker %s, "
          "worker CPU per change %s"
          % (label, {k: round(v / n, 2) for k, v in dq.items()},
             {k: round(v / n, 2) for k, v in nt.items()},
             ", ".join("pid %d %.2f ms" % (p, c) for p, c in cpu.items())))
    return r


# ---- main ---------------------------------------------------------------------

def bench(st, cert, tmp, n_big, idle_seconds):
    writer = Writer(st.node_port(0))
    try:
        bench_sets(st, cert, tmp, n_big, idle_seconds, writer)
    finally:
        writer.close()


def bench_sets(st, cert, tmp, n_big, idle_seconds, writer):
    # one message in INBOX (UID 1), the template for the per-mailbox ones
    writer.run(b"APPEND INBOX {%d+}\r\n%s" % (len(MSG), MSG))
    writer.select("INBOX")

    # -- one mailbox: 10, 1,000, n_big watchers on a fresh node
    node = WatchNode(st, cert, tmp, "watch1", max(10000, n_big))
    watchers = []
    try:
        time.sleep(1.0)
        base = node.snapshot()
        sizes = [(n, c) for n, c in ((10, 100), (1000, 60)) if n < n_big] + [(n_big, 30)]
        for n, changes in sizes:
            t0 = time.monotonic()
            connect_watchers(node.port, ["INBOX"] * (n - len(watchers)), watchers)
            print("set-up: %d watchers in IDLE on INBOX in %.1f s" % (n, time.monotonic() - t0))
            time.sleep(0.5)
            label = "%d watchers of one mailbox" % n
            if n == n_big:
                m = node.metrics()
                print_workers("%d idle sessions, one mailbox (before this set's changes)" % n,
                              node, base, node.snapshot(), m.get("imapd_worker_sessions"))
            r = run_sharing(label, node, lambda: run_changes(writer, watchers, ["INBOX"] * changes, label))
            print_latency(r)
            print_latency(run_changes(writer, watchers, ["INBOX"] * changes, label, defer=True))
        time.sleep(1.0)
        m = node.metrics()
        print_workers("%d idle sessions, one mailbox (after %d changes were pushed to them)"
                      % (n_big, 2 * sizes[-1][1]), node, base, node.snapshot(),
                      m.get("imapd_worker_sessions"))
        measure_idle("%d sessions idling on one mailbox" % n_big, node, idle_seconds)
    finally:
        close_watchers(watchers)
        node.stop()

    # -- n_big mailboxes, one watcher each, on a fresh node
    names = ["n%05d" % i for i in range(n_big)]
    t0 = time.monotonic()
    st.psql("""
      WITH a AS (SELECT id, tenant_id FROM account WHERE login = '%(u)s'),
      src AS (SELECT m.blob_hash, m.size FROM message m, a
               WHERE m.account_id = a.id ORDER BY m.uid LIMIT 1),
      mb AS (INSERT INTO mailbox (account_id, name, uidnext, highestmodseq, recent_uid)
             SELECT a.id, 'n' || lpad(g::text, 5, '0'), 2, 2, 1
               FROM a, generate_series(0, %(n)d - 1) g
             RETURNING account_id, id)
      INSERT INTO message (account_id, mailbox_id, uid, modseq, flags, keywords, internaldate,
                           size, blob_hash, tenant_id)
      SELECT mb.account_id, mb.id, 1, 2, 0, '{}', now(), src.size, src.blob_hash, a.tenant_id
        FROM mb, src, a
    """ % {"u": USER, "n": n_big})
    st.psql("ANALYZE mailbox; ANALYZE message")
    print("set-up: %d mailboxes of one message each made with SQL in %.1f s"
          % (n_big, time.monotonic() - t0))
    node = WatchNode(st, cert, tmp, "watchN", max(10000, n_big))
    try:
        time.sleep(1.0)
        base = node.snapshot()
        t0 = time.monotonic()
        connect_watchers(node.port, names, watchers)
        print("set-up: %d watchers in IDLE, one per mailbox, in %.1f s" % (n_big, time.monotonic() - t0))
        time.sleep(1.0)
        m = node.metrics()
        print_workers("%d idle sessions, one mailbox each (watched mailboxes per worker %s)"
                      % (n_big, m.get("imapd_worker_watched_mailboxes")),
                      node, base, node.snapshot(), m.get("imapd_worker_sessions"))
        targets = random.Random(7162).sample(names, min(200, n_big))
        label = "%d watchers over %d mailboxes" % (n_big, n_big)
        r = run_sharing(label, node, lambda: run_changes(writer, watchers, targets, label))
        print_latency(r)
        measure_idle("%d sessions idling on %d mailboxes" % (n_big, n_big), node, idle_seconds)
    finally:
        close_watchers(watchers)
        node.stop()


def main():
    t_begin = time.monotonic()
    n_big = int(os.environ.get("NOTIFY_BENCH_WATCHERS", "10000"))
    idle_seconds = float(os.environ.get("NOTIFY_BENCH_IDLE_SECONDS", "20"))
    # The watcher node's busiest worker and this process each hold about
    # n_big sockets; imapd inherits the limit from here.
    old, soft, hard = raise_nofile(n_big + 500)
    if soft < n_big + 300:
        n_big = max(1000, soft - 300)
        print("RLIMIT_NOFILE is %d: the largest watcher set is cut to %d" % (soft, n_big))
    print("limits: RLIMIT_NOFILE raised from %d to %d (hard %d) for this process and the imapd it starts; "
          "%d CPUs, load average %.1f" % (old, soft, hard, os.cpu_count(), os.getloadavg()[0]))
    tmp = tempfile.mkdtemp(prefix="notifybench-")
    st = conftest.Stack(tmp)
    st.nodes = 1            # the writer's node; the watchers get private ones
    with open(st.extra, "w") as f:
        f.write("log_level = info\n")
    r = st.run("up", "--pg-nosync", check=False)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        st.run("down", "--purge", check=False)
        shutil.rmtree(tmp, ignore_errors=True)
        return 1
    try:
        st.imapctl("tenant", "add", "example.com")
        st.imapctl("user", "import", USER, "-", stdin=cheap_hash(PASSWORD) + "\n")
        cert = make_cert(tmp)
        bench(st, cert, tmp, n_big, idle_seconds)
    finally:
        st.run("down", "--purge", check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    print("NOTIFY bench: %.0f s in all (load average %.1f)" % (time.monotonic() - t_begin, os.getloadavg()[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
