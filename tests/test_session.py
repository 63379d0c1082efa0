"""Protocol tests for the session core: greeting, CAPABILITY, STARTTLS,
implicit TLS, LOGIN, AUTHENTICATE PLAIN, syntax errors, limits and
pipelining.  Responses are compared byte for byte."""
import base64
import os
import socket
import time

import pytest

from conftest import PASSWORD, PASSWORD2, USER, USER2
from imap import Conn, capabilities

CAPS_PRE = b"IMAP4rev1 LITERAL+ SASL-IR ID ENABLE NAMESPACE STARTTLS AUTH=PLAIN"
CAPS_TLS = b"IMAP4rev1 LITERAL+ SASL-IR ID ENABLE NAMESPACE AUTH=PLAIN"
CAPS_AUTH = (b"IMAP4rev1 LITERAL+ SASL-IR ID ENABLE NAMESPACE UIDPLUS MOVE UNSELECT IDLE CHILDREN "
             b"SPECIAL-USE CONDSTORE QRESYNC APPENDLIMIT=52428800")


def plain(authz, user, pw):
    return base64.b64encode(("%s\0%s\0%s" % (authz, user, pw)).encode()).decode()


def test_greeting_and_capability(imapd):
    c = Conn("127.0.0.1", imapd.port)
    assert c.greeting == b"* OK [CAPABILITY " + CAPS_PRE + b"] IMAP server ready\r\n"
    untagged, tagged = c.run("CAPABILITY", tag="t1")
    assert untagged == [b"* CAPABILITY " + CAPS_PRE + b"\r\n"]
    assert tagged == b"t1 OK Capability completed\r\n"
    # lower-case command names are the same commands
    untagged, tagged = c.run("capability", tag="t2")
    assert tagged == b"t2 OK Capability completed\r\n"


def test_capability_after_login_and_starttls(imapd):
    c = Conn("127.0.0.1", imapd.port)
    assert c.starttls() == b"a001 OK Begin TLS negotiation now\r\n"
    untagged, tagged = c.run("CAPABILITY")
    assert untagged == [b"* CAPABILITY " + CAPS_TLS + b"\r\n"]
    _, tagged = c.run('LOGIN "%s" "%s"' % (USER, PASSWORD), tag="L1")
    assert tagged == b"L1 OK [CAPABILITY " + CAPS_AUTH + b"] Logged in\r\n"
    untagged, _ = c.run("CAPABILITY")
    assert untagged == [b"* CAPABILITY " + CAPS_AUTH + b"\r\n"]
    # STARTTLS is not valid after TLS is on, nor after login
    _, tagged = c.run("STARTTLS", tag="x")
    assert tagged.startswith(b"x BAD ")


def test_starttls_rejects_second_and_discards_pipelined_plaintext(imapd):
    c = Conn("127.0.0.1", imapd.port)
    # A command injected after STARTTLS in the same packet must not run
    # inside the TLS session (CVE-2011-0411 class).
    c.send("s1 STARTTLS\r\ninj NOOP\r\n")
    assert c.read_response() == b"s1 OK Begin TLS negotiation now\r\n"
    from imap import client_tls_context
    c.sock = client_tls_context().wrap_socket(c.sock, server_hostname="localhost")
    untagged, tagged = c.run("NOOP", tag="n1")
    assert untagged == []
    assert tagged == b"n1 OK NOOP completed\r\n"
    _, tagged = c.run("STARTTLS", tag="s2")
    assert tagged == b"s2 BAD TLS is already active\r\n"


def test_implicit_tls(imapd):
    c = Conn("127.0.0.1", imapd.tls_port, tls=True)
    assert c.greeting == b"* OK [CAPABILITY " + CAPS_TLS + b"] IMAP server ready\r\n"
    c.login(USER, PASSWORD)
    untagged, tagged = c.run("NAMESPACE", tag="n")
    assert untagged == [b'* NAMESPACE (("" "/")) NIL NIL\r\n']
    assert tagged == b"n OK Namespace completed\r\n"


def test_plaintext_disabled_advertises_logindisabled(imapd_factory):
    inst = imapd_factory("plaintext_auth = no")
    c = Conn("127.0.0.1", inst.port)
    caps = capabilities(c.greeting)
    assert b"LOGINDISABLED" in caps and b"STARTTLS" in caps and b"AUTH=PLAIN" not in caps
    _, tagged = c.run('LOGIN "%s" "%s"' % (USER, PASSWORD), tag="l")
    assert tagged.startswith(b"l NO [PRIVACYREQUIRED] ")
    _, tagged = c.run("AUTHENTICATE PLAIN " + plain("", USER, PASSWORD), tag="a")
    assert tagged.startswith(b"a NO [PRIVACYREQUIRED] ")
    c.starttls()
    untagged, _ = c.run("CAPABILITY")
    caps = capabilities(untagged[0])
    assert b"LOGINDISABLED" not in caps and b"STARTTLS" not in caps and b"AUTH=PLAIN" in caps
    c.login(USER, PASSWORD)


def test_login_success_quoting_literals_and_case(stack, imapd):
    c = Conn("127.0.0.1", imapd.port)
    # user names are case-insensitive; the password has a quote and a backslash-free escape
    pw = PASSWORD2.replace("\\", "\\\\").replace('"', '\\"')
    _, tagged = c.run('LOGIN "%s" "%s"' % (USER2.upper(), pw), tag="L")
    assert tagged.startswith(b"L OK [CAPABILITY ")
    # synchronizing literals
    c2 = Conn("127.0.0.1", imapd.port)
    u, p = USER.encode(), PASSWORD.encode()
    c2.send(b"L2 LOGIN {%d}\r\n" % len(u))
    assert c2.read_response() == b"+ Ready for literal data\r\n"
    c2.send(u + b" {%d}\r\n" % len(p))
    assert c2.read_response() == b"+ Ready for literal data\r\n"
    c2.send(p + b"\r\n")
    assert c2.read_response().startswith(b"L2 OK [CAPABILITY ")
    # non-synchronizing literals (LITERAL+): no continuation at all
    c3 = Conn("127.0.0.1", imapd.port)
    c3.send(b"L3 LOGIN {%d+}\r\n%s {%d+}\r\n%s\r\n" % (len(u), u, len(p), p))
    assert c3.read_response().startswith(b"L3 OK [CAPABILITY ")


def test_login_failure_is_delayed_and_grows(imapd):
    c = Conn("127.0.0.1", imapd.port)
    t0 = time.monotonic()
    _, tagged = c.run('LOGIN "%s" "wrong"' % USER, tag="f1")
    d1 = time.monotonic() - t0
    assert tagged == b"f1 NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
    t0 = time.monotonic()
    _, tagged = c.run('LOGIN "nobody@example.com" "x"', tag="f2")
    d2 = time.monotonic() - t0
    assert tagged == b"f2 NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
    assert d1 >= 0.3 and d2 >= 0.6, (d1, d2)
    # a new connection from the same address inherits the address's count
    c2 = Conn("127.0.0.1", imapd.port)
    t0 = time.monotonic()
    _, tagged = c2.run('LOGIN "%s" "wrong"' % USER, tag="f3")
    assert time.monotonic() - t0 >= 1.2
    # and a correct password still works, and clears the address's count
    c2.login(USER, PASSWORD)
    c3 = Conn("127.0.0.1", imapd.port)
    t0 = time.monotonic()
    _, tagged = c3.run('LOGIN "%s" "wrong"' % USER, tag="f4")
    assert time.monotonic() - t0 < 1.0


def test_password_never_logged(imapd):
    c = Conn("127.0.0.1", imapd.port)
    c.run('LOGIN "%s" "s3cret-wrong-pw"' % USER)
    c.run("AUTHENTICATE PLAIN " + plain("", USER, "an0ther-secret"))
    c.login(USER, PASSWORD)
    time.sleep(0.2)
    text = imapd.log_text()
    assert "s3cret-wrong-pw" not in text and "an0ther-secret" not in text
    assert PASSWORD not in text
    assert base64.b64encode(("\0%s\0an0ther-secret" % USER).encode()).decode() not in text
    # every session line carries a session id
    for line in text.splitlines():
        if "login failed" in line or "logged in" in line:
            assert " sid=" in line, line


def test_authenticate_plain_sasl_ir_and_continuation(imapd):
    c = Conn("127.0.0.1", imapd.port)
    _, tagged = c.run("AUTHENTICATE PLAIN " + plain("", USER, PASSWORD), tag="A1")
    assert tagged.startswith(b"A1 OK [CAPABILITY " + CAPS_AUTH + b"] Logged in")

    c = Conn("127.0.0.1", imapd.port)
    c.send("A2 AUTHENTICATE PLAIN\r\n")
    assert c.read_response() == b"+ \r\n"
    c.send(plain(USER, USER, PASSWORD) + "\r\n")
    assert c.read_response().startswith(b"A2 OK [CAPABILITY ")

    c = Conn("127.0.0.1", imapd.port)
    c.send("A3 authenticate plain\r\n")
    assert c.read_response() == b"+ \r\n"
    c.send("*\r\n")
    assert c.read_response() == b"A3 BAD Authentication cancelled\r\n"
    c.send("A4 AUTHENTICATE PLAIN\r\n")
    assert c.read_response() == b"+ \r\n"
    c.send("not base64!\r\n")
    assert c.read_response() == b"A4 BAD Invalid base64 in the authentication response\r\n"
    _, tagged = c.run("AUTHENTICATE PLAIN " + plain("bob@example.org", USER, PASSWORD), tag="A5")
    assert tagged == b"A5 NO [AUTHORIZATIONFAILED] Cannot act as another user\r\n"
    _, tagged = c.run("AUTHENTICATE CRAM-MD5", tag="A6")
    assert tagged == b"A6 NO Unsupported authentication mechanism\r\n"
    _, tagged = c.run("AUTHENTICATE PLAIN " + base64.b64encode(b"no-nuls").decode(), tag="A7")
    assert tagged == b"A7 BAD Malformed PLAIN response\r\n"
    _, tagged = c.run("AUTHENTICATE PLAIN " + plain("", USER, "bad"), tag="A8")
    assert tagged == b"A8 NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
    # still usable: empty initial response "=" (RFC 4959) is a malformed PLAIN message
    _, tagged = c.run("AUTHENTICATE PLAIN =", tag="A9")
    assert tagged == b"A9 BAD Malformed PLAIN response\r\n"


def test_simple_commands_exact(imapd):
    c = Conn("127.0.0.1", imapd.port)
    assert c.run("NOOP", tag="n") == ([], b"n OK NOOP completed\r\n")
    untagged, tagged = c.run('ID ("name" "pytest" "version" "1")', tag="i")
    assert untagged == [b'* ID ("name" "imapd" "version" "0.1")\r\n']
    assert tagged == b"i OK ID completed\r\n"
    assert c.run("ID NIL", tag="i2")[1] == b"i2 OK ID completed\r\n"
    assert c.run("ID (\"name\")", tag="i3")[1].startswith(b"i3 BAD ")
    # ENABLE and NAMESPACE need authentication
    assert c.run("ENABLE CONDSTORE", tag="e")[1] == b"e BAD Log in first\r\n"
    assert c.run("NAMESPACE", tag="ns")[1] == b"ns BAD Log in first\r\n"
    c.login(USER, PASSWORD)
    # Nothing is enabled that is not announced (RFC 5161 3.1)
    assert c.run("ENABLE X-UNKNOWN", tag="e2") == ([b"* ENABLED\r\n"], b"e2 OK Enabled\r\n")
    assert c.run("LOGIN a b", tag="l")[1] == b"l BAD Command not valid in this state\r\n"
    untagged, tagged = c.run("LOGOUT", tag="z")
    assert untagged == [b"* BYE Logging out\r\n"]
    assert tagged == b"z OK Logout completed\r\n"
    c.expect_closed()


@pytest.mark.parametrize("line,reply", [
    (b"t1 FROB\r\n", b"t1 BAD Unknown command FROB\r\n"),
    (b"t2 NOOP extra\r\n", b"t2 BAD NOOP takes no arguments\r\n"),
    (b"t3 LOGIN onlyone\r\n", b"t3 BAD LOGIN takes a user name and a password\r\n"),
    (b"t4 UID\r\n", b"t4 BAD UID needs a command\r\n"),
    (b"t5 UID FROB 1\r\n", b"t5 BAD Unknown command UID FROB\r\n"),
])
def test_bad_commands(imapd, line, reply):
    c = Conn("127.0.0.1", imapd.port)
    c.send(line)
    assert c.read_response() == reply
    assert c.run("NOOP", tag="ok")[1] == b"ok OK NOOP completed\r\n"


@pytest.mark.parametrize("line", [
    b"t1 LOGIN \"unterminated\r\n",
    b"t2 ID (\"a\" \"b\"\r\n",
    b"t3 ID (\"a\" \"b\")) \r\n",
    b"t4 LOGIN \"bad\\escape\" x\r\n",
    b"t5 LOGIN {abc}\r\n",
    b"t6 LOGIN  double-space\r\n",
])
def test_syntax_errors_get_bad_and_session_continues(imapd, line):
    c = Conn("127.0.0.1", imapd.port)
    c.send(line)
    r = c.read_response()
    assert r.startswith(line.split(b" ")[0] + b" BAD "), r
    assert c.run("NOOP", tag="ok")[1] == b"ok OK NOOP completed\r\n"


def test_untagged_bad_for_empty_line(imapd):
    c = Conn("127.0.0.1", imapd.port)
    c.send(b"\r\n")
    assert c.read_response().startswith(b"* BAD ")


def test_too_many_bad_commands_disconnects(imapd_factory):
    inst = imapd_factory("max_bad_commands = 3")
    c = Conn("127.0.0.1", inst.port)
    for i in range(2):
        assert c.run("FROB", tag="b%d" % i)[1].startswith(b"b%d BAD" % i)
    c.send("b3 FROB\r\n")
    assert c.read_response() == b"b3 BAD Unknown command FROB\r\n"
    assert c.read_response() == b"* BYE Too many invalid commands\r\n"
    c.expect_closed()


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# AddressSanitizer keeps freed memory in quarantine (256 MiB by default), so
# RSS would measure allocation churn, not what the worker holds; a small
# quarantine keeps the memory checks meaningful in the sanitizer build.
SMALL_QUARANTINE = {"ASAN_OPTIONS": "quarantine_size_mb=1:detect_leaks=1"}


def test_overlong_line_refused_without_buffering(imapd_factory):
    imapd = imapd_factory(env=SMALL_QUARANTINE)
    c = Conn("127.0.0.1", imapd.port)
    workers = imapd.workers()
    before = {p: rss_kb(p) for p in workers}
    chunk = b"x" * 65536
    c.send(b"long NOOP ")
    for _ in range(64 * 16):            # 64 MiB without a line end
        c.send(chunk)
    c.send(b"\r\n")
    assert c.read_response(timeout=30).startswith(b"long BAD ")
    after = {p: rss_kb(p) for p in workers}
    growth = max(after[p] - before[p] for p in workers)
    assert growth < 16 * 1024, "worker grew by %d KiB" % growth
    assert c.run("NOOP", tag="ok")[1] == b"ok OK NOOP completed\r\n"


def test_oversized_sync_literal_refused_before_data(imapd):
    c = Conn("127.0.0.1", imapd.port)
    c.send(b"big LOGIN {100000000}\r\n")
    r = c.read_response()
    assert r.startswith(b"big NO [TOOBIG] "), r
    # the server never asked for the data, and the session goes on
    assert c.run("NOOP", tag="ok")[1] == b"ok OK NOOP completed\r\n"


def test_oversized_nonsync_literal_closes(imapd):
    c = Conn("127.0.0.1", imapd.port)
    c.send(b"big LOGIN {100000000+}\r\nxxxx")
    r = c.read_response()
    assert r.startswith(b"big BAD "), r
    assert c.read_response().startswith(b"* BYE ")
    c.expect_closed()


def test_pipelined_commands_answer_in_order(imapd):
    c = Conn("127.0.0.1", imapd.port)
    u, p = USER.encode(), PASSWORD.encode()
    c.send(b"p1 NOOP\r\np2 CAPABILITY\r\np3 LOGIN \"%s\" {%d+}\r\n%s\r\np4 NAMESPACE\r\np5 NOOP\r\n"
           % (u, len(p), p))
    assert c.read_response() == b"p1 OK NOOP completed\r\n"
    assert c.read_response().startswith(b"* CAPABILITY ")
    assert c.read_response() == b"p2 OK Capability completed\r\n"
    assert c.read_response().startswith(b"p3 OK [CAPABILITY ")
    assert c.read_response().startswith(b"* NAMESPACE ")
    assert c.read_response() == b"p4 OK Namespace completed\r\n"
    assert c.read_response() == b"p5 OK NOOP completed\r\n"


def test_client_that_does_not_read_is_bounded(imapd_factory):
    """100,000 pipelined commands whose answers the client does not read:
    the worker stops reading instead of queueing output without bound,
    and the client gets every answer once it reads."""
    imapd = imapd_factory(env=SMALL_QUARANTINE)
    c = Conn("127.0.0.1", imapd.port)
    workers = imapd.workers()
    before = {p: rss_kb(p) for p in workers}
    n = 100000
    payload = b"".join(b"c%d CAPABILITY\r\n" % i for i in range(n))
    c.sock.setblocking(False)
    sent = 0
    deadline = time.monotonic() + 10
    while sent < len(payload) and time.monotonic() < deadline:
        try:
            sent += c.sock.send(payload[sent:sent + 65536])
        except BlockingIOError:
            time.sleep(0.01)
    time.sleep(0.5)
    after = {p: rss_kb(p) for p in workers}
    growth = max(after[p] - before[p] for p in workers)
    assert growth < 16 * 1024, "worker grew by %d KiB" % growth
    # now read everything while the rest of the commands go out
    import threading
    c.sock.setblocking(True)
    c.sock.settimeout(30)

    def writer():
        c.sock.sendall(payload[sent:])
    t = threading.Thread(target=writer)
    t.start()
    last = b"c%d OK Capability completed\r\n" % (n - 1)
    count = 0
    while True:
        r = c.read_response(timeout=30)
        if r.startswith(b"c") and b" OK " in r:
            count += 1
        if r == last:
            break
    t.join()
    assert count == n


def test_auth_timeout(imapd_factory):
    inst = imapd_factory("auth_timeout = 5")
    c = Conn("127.0.0.1", inst.port)
    t0 = time.monotonic()
    r = c.read_response(timeout=15)
    assert r == b"* BYE Autologout; authentication took too long\r\n"
    assert time.monotonic() - t0 >= 4.5
    c.expect_closed()


def test_check_config_and_help(stack, tmp_path):
    from conftest import BUILD
    import subprocess
    conf = tmp_path / "x.conf"
    conf.write_text('pg_conninfo = "host=127.0.0.1 password=hunter2 dbname=mail"\nmax_input_queue = 99999\n'
                    'nats_url = "nats://imapd:natspw@127.0.0.1:4222,nats://127.0.0.2:4222"\n')
    r = subprocess.run([os.path.join(BUILD, "imapd"), "-c", str(conf), "--check-config"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "max_input_queue = 99999" in r.stdout
    assert "hunter2" not in r.stdout and "password=***" in r.stdout
    assert "natspw" not in r.stdout
    assert 'nats_url = "nats://imapd:***@127.0.0.1:4222,nats://127.0.0.2:4222"' in r.stdout
    conf.write_text("max_line_length = 10\n")
    r = subprocess.run([os.path.join(BUILD, "imapd"), "-c", str(conf), "--check-config"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "max_line_length" in r.stderr
    r = subprocess.run([os.path.join(BUILD, "imapd"), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "max_literal_size" in r.stdout
