"""Fixtures: a real stack (PostgreSQL, nats-server, storaged, imapd nodes)
started in a temporary directory for the test session, and single imapd
instances started per test on top of the same PostgreSQL and NATS.

MAIL_BUILD selects the binaries (build/ or build-asan/).
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, os.environ.get("MAIL_BUILD", "build"))
STACK = os.path.join(ROOT, "deploy", "local", "stack")

USER = "alice@example.com"
PASSWORD = "correct horse"
USER2 = "bob@example.org"
PASSWORD2 = "b0b's p@ss \"quoted\""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_block(n):
    """A port p such that p .. p+n-1 are all free (stack nodes use p+k)."""
    for _ in range(200):
        base = free_port()
        ok = True
        for k in range(1, n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", base + k))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no block of %d free ports" % n)


def wait_port(port, timeout=20.0, proc=None, log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    tail = ""
    if log and os.path.exists(log):
        with open(log, errors="replace") as f:
            tail = f.read()[-3000:]
    raise RuntimeError("port %d did not open\n%s" % (port, tail))


class Stack:
    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "stack")
        self.tmp = tmp
        self.pg_port = free_port()
        self.nats_port = free_port()
        self.nodes = 3
        self.imap_port = free_port_block(self.nodes)
        self.imaps_port = free_port_block(self.nodes)
        # node k on metrics_port + k, storaged on metrics_port + nodes
        self.metrics_port = free_port_block(self.nodes + 1)
        self.lmtp_port = free_port()
        self.extra = os.path.join(tmp, "extra.conf")
        with open(self.extra, "w") as f:
            f.write(TEST_CONF)

    def args(self):
        return ["--dir", self.dir, "--pg-port", str(self.pg_port),
                "--nats-port", str(self.nats_port), "--imap-port", str(self.imap_port),
                "--imaps-port", str(self.imaps_port), "--lmtp-port", str(self.lmtp_port),
                "--metrics-port", str(self.metrics_port),
                "--nodes", str(self.nodes), "--workers", "2", "--bin", BUILD,
                "--conf-extra", self.extra, "--no-build"]

    def run(self, *cmd, check=True):
        return subprocess.run([STACK, *cmd, *self.args()], cwd=ROOT, check=check,
                              capture_output=True, text=True, timeout=120)

    @property
    def conninfo(self):
        return "host=127.0.0.1 port=%d dbname=mail user=mail" % self.pg_port

    def psql(self, sql):
        r = subprocess.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                            self.conninfo, "-c", sql],
                           capture_output=True, text=True, check=True, timeout=30)
        return r.stdout.strip()

    def imapctl(self, *args, stdin=None, check=True):
        env = dict(os.environ, PG_CONNINFO=self.conninfo)
        return subprocess.run([os.path.join(BUILD, "imapctl"), *args], input=stdin,
                              capture_output=True, text=True, check=check, env=env,
                              cwd=ROOT, timeout=60)

    def node_port(self, k=0):
        return self.imap_port + k

    def node_tls_port(self, k=0):
        return self.imaps_port + k


# Settings that keep tests fast and exercise limits.
TEST_CONF = """
login_delay_ms = 300
login_delay_max_ms = 2000
log_level = debug
"""


@pytest.fixture(scope="session")
def stack():
    tmp = tempfile.mkdtemp(prefix="imaptest-")
    st = Stack(tmp)
    r = st.run("up", check=False)
    if r.returncode != 0:
        st.run("down", "--purge", check=False)
        raise RuntimeError("stack up failed:\n%s\n%s" % (r.stdout, r.stderr))
    try:
        st.imapctl("tenant", "add", "example.com")
        st.imapctl("tenant", "add", "example.org")
        st.imapctl("user", "add", USER, stdin=PASSWORD + "\n")
        st.imapctl("user", "add", USER2, stdin=PASSWORD2 + "\n")
        yield st
    finally:
        st.run("down", "--purge", check=False)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def cert(tmp_path_factory):
    """A self-signed certificate made by the tests."""
    d = tmp_path_factory.mktemp("cert")
    crt, key = str(d / "test.crt"), str(d / "test.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", key, "-out", crt],
                   check=True, capture_output=True, timeout=60)
    return crt, key


class Imapd:
    """One imapd master with its workers, on ports of its own."""

    def __init__(self, stack, cert, tmp, conf="", env=None):
        self.port = free_port()
        self.tls_port = free_port()
        self.dir = tmp
        self.conf = os.path.join(tmp, "imapd.conf")
        self.log = os.path.join(tmp, "imapd.log")
        self.pid_file = os.path.join(tmp, "imapd.pid")
        base = {
            "imap_listen": "127.0.0.1:%d" % self.port,
            "imaps_listen": "127.0.0.1:%d" % self.tls_port,
            "pg_conninfo": stack.conninfo,
            "nats_url": "nats://127.0.0.1:%d" % stack.nats_port,
            "tls_cert_file": cert[0],
            "tls_key_file": cert[1],
            "workers": "2",
            "pid_file": self.pid_file,
            "log_level": "debug",
            "login_delay_ms": "300",
            "login_delay_max_ms": "2000",
            "shutdown_timeout": "5",
        }
        for line in conf.strip().splitlines():
            k, v = line.split("=", 1)
            base[k.strip()] = v.strip()
        with open(self.conf, "w") as f:
            for k, v in base.items():
                f.write('%s = "%s"\n' % (k, v))
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen([os.path.join(BUILD, "imapd"), "-c", self.conf],
                                     stdout=self.logf, stderr=self.logf, cwd=ROOT,
                                     env=dict(os.environ, **(env or {})))
        wait_port(self.port, proc=self.proc, log=self.log)
        wait_port(self.tls_port, proc=self.proc, log=self.log)

    def workers(self):
        """pids of the master's worker processes."""
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return sorted(int(p) for p in out.stdout.split())

    def log_text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()
        return self.proc.returncode


@pytest.fixture
def imapd_factory(stack, cert, tmp_path):
    started = []

    def make(conf="", env=None):
        d = tmp_path / ("imapd%d" % len(started))
        d.mkdir()
        inst = Imapd(stack, cert, str(d), conf, env)
        started.append(inst)
        return inst

    yield make
    errors = []
    for inst in started:
        rc = inst.stop()
        text = inst.log_text()
        # Sanitizer reports from any process of the instance fail the test.
        if "ERROR: AddressSanitizer" in text or "runtime error:" in text or \
                "ERROR: LeakSanitizer" in text:
            errors.append(text[-4000:])
        elif rc not in (0, None):
            errors.append("imapd exited with %r\n%s" % (rc, text[-2000:]))
    assert not errors, "\n".join(errors)


@pytest.fixture
def imapd(imapd_factory):
    return imapd_factory()
