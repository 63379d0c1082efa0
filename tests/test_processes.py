"""The imapd process model: drain on SIGTERM, a killed worker replaced
while other sessions keep working, reload on SIGHUP, and the local stack's
nodes."""
import os
import signal
import socket
import ssl
import subprocess
import time

import pytest

from conftest import PASSWORD, USER
from imap import Conn
from imap import capabilities  # noqa: E402


def test_stack_nodes_all_serve(stack):
    for k in range(stack.nodes):
        c = Conn("127.0.0.1", stack.node_port(k))
        c.login(USER, PASSWORD)
        c.run("LOGOUT")
        t = Conn("127.0.0.1", stack.node_tls_port(k), tls=True)
        t.login(USER, PASSWORD)
    r = stack.run("status")
    assert r.returncode == 0, r.stdout + r.stderr


def test_sigterm_drains(imapd_factory):
    inst = imapd_factory("login_delay_ms = 1500")
    idle = Conn("127.0.0.1", inst.port)
    idle.login(USER, PASSWORD)
    busy = Conn("127.0.0.1", inst.port)
    busy.send('slow LOGIN "%s" "wrong"\r\n' % USER)   # answered after 1.5 s
    time.sleep(0.3)
    t0 = time.monotonic()
    inst.proc.send_signal(signal.SIGTERM)
    # idle sessions are told at once
    assert idle.read_response(timeout=3) == b"* BYE Server shutting down, please reconnect\r\n"
    idle.expect_closed()
    # the running command finishes first, then BYE
    assert busy.read_response(timeout=5) == b"slow NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
    assert busy.read_response(timeout=3) == b"* BYE Server shutting down, please reconnect\r\n"
    busy.expect_closed()
    # no new connections
    with pytest.raises(OSError):
        for _ in range(20):
            Conn("127.0.0.1", inst.port, timeout=1)
            time.sleep(0.05)
    assert inst.proc.wait(timeout=10) == 0
    assert time.monotonic() - t0 < 5


def test_sigterm_deadline_cuts_long_commands(imapd_factory):
    inst = imapd_factory("login_delay_ms = 20000\nlogin_delay_max_ms = 20000\nshutdown_timeout = 1")
    busy = Conn("127.0.0.1", inst.port)
    busy.send('slow LOGIN "%s" "wrong"\r\n' % USER)
    time.sleep(0.5)
    t0 = time.monotonic()
    inst.proc.send_signal(signal.SIGTERM)
    busy.expect_closed(timeout=5)
    assert inst.proc.wait(timeout=10) == 0
    assert time.monotonic() - t0 < 4


def worker_of(inst, conn):
    """pid of the imapd worker holding this client connection (from ss)."""
    port = conn.sock.getsockname()[1]
    out = subprocess.run(["ss", "-Htnp", "state", "established",
                          "( sport = :%d and dport = :%d )" % (inst.port, port)],
                         capture_output=True, text=True).stdout
    for pid in inst.workers():
        if "pid=%d," % pid in out:
            return pid
    return None


def test_killed_worker_is_replaced_and_others_keep_working(imapd_factory):
    inst = imapd_factory("workers = 2")
    deadline = time.monotonic() + 5
    while len(inst.workers()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    old = inst.workers()
    assert len(old) == 2
    conns = {pid: [] for pid in old}
    for _ in range(200):
        c = Conn("127.0.0.1", inst.port)
        c.login(USER, PASSWORD)
        pid = worker_of(inst, c)
        assert pid in conns
        conns[pid].append(c)
        if all(len(v) >= 3 for v in conns.values()):
            break
    assert all(len(v) >= 3 for v in conns.values()), {k: len(v) for k, v in conns.items()}
    victim, survivor = old
    os.kill(victim, signal.SIGKILL)
    for c in conns[victim]:
        c.expect_closed()
    for c in conns[survivor]:
        _, tagged = c.run("NOOP", tag="n", timeout=3)
        assert tagged == b"n OK NOOP completed\r\n"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        now = inst.workers()
        if len(now) == 2 and victim not in now:
            break
        time.sleep(0.05)
    now = inst.workers()
    assert len(now) == 2 and victim not in now, (old, now)
    for _ in range(8):
        c = Conn("127.0.0.1", inst.port)
        c.login(USER, PASSWORD)
    assert "killed by signal 9" in inst.log_text()


def cert_der(port):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return s.getpeercert(binary_form=True)


def test_sighup_reloads_config_and_certificate(imapd_factory, tmp_path):
    inst = imapd_factory()
    first = cert_der(inst.tls_port)
    keep = Conn("127.0.0.1", inst.port)
    keep.login(USER, PASSWORD)
    crt, key = str(tmp_path / "new.crt"), str(tmp_path / "new.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=reloaded", "-keyout", key, "-out", crt],
                   check=True, capture_output=True)
    text = open(inst.conf).read()
    lines = [ln for ln in text.splitlines()
             if not ln.startswith(("tls_cert_file", "tls_key_file", "plaintext_auth"))]
    lines += ['tls_cert_file = "%s"' % crt, 'tls_key_file = "%s"' % key, 'plaintext_auth = "no"']
    open(inst.conf, "w").write("\n".join(lines) + "\n")
    inst.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if cert_der(inst.tls_port) != first:
            break
        time.sleep(0.1)
    assert cert_der(inst.tls_port) != first
    c = Conn("127.0.0.1", inst.port)
    assert b"LOGINDISABLED" in capabilities(c.greeting)
    # the session from before the reload is untouched
    assert keep.run("NOOP", tag="k")[1] == b"k OK NOOP completed\r\n"
    # a broken configuration is refused and the running one kept
    open(inst.conf, "a").write("no_such_key = 1\n")
    inst.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert inst.proc.poll() is None
    c = Conn("127.0.0.1", inst.tls_port, tls=True)
    c.login(USER, PASSWORD)
    assert "reload refused" in inst.log_text()


def test_sigterm_ends_idle_at_once(stack, imapd_factory):
    inst = imapd_factory()
    c = Conn("127.0.0.1", inst.port)
    c.login(USER, PASSWORD)
    c.ok("SELECT INBOX")
    c.send("i IDLE\r\n")
    assert c.read_response() == b"+ idling\r\n"
    t0 = time.monotonic()
    inst.proc.send_signal(signal.SIGTERM)
    assert c.read_response(timeout=5) == b"* BYE Server shutting down, please reconnect\r\n"
    c.expect_closed()
    assert inst.proc.wait(timeout=10) == 0
    assert time.monotonic() - t0 < 3
