"""PostgreSQL or NATS down at start-up or going away later: imapd keeps
running, answers what it can, says NO [UNAVAILABLE] where it needs the
database, and recovers by itself."""
import time

from conftest import PASSWORD, USER, free_port
from imap import Conn

UNAVAILABLE = b"NO [UNAVAILABLE] Service temporarily unavailable, try again\r\n"


def login_until_ok(port, timeout=30):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        c = Conn("127.0.0.1", port)
        _, last = c.run('LOGIN "%s" "%s"' % (USER, PASSWORD), tag="r")
        if last.startswith(b"r OK "):
            return c
        assert last == b"r " + UNAVAILABLE, last
        time.sleep(0.3)
    raise AssertionError("login did not recover: %r" % last)


def test_database_goes_away_and_comes_back(stack, imapd_factory):
    inst = imapd_factory("pg_retry_max_ms = 500")
    before = Conn("127.0.0.1", inst.port)
    before.login(USER, PASSWORD)
    stack.run("stop-pg")
    try:
        c = Conn("127.0.0.1", inst.port)
        _, tagged = c.run('LOGIN "%s" "%s"' % (USER, PASSWORD), tag="d")
        assert tagged == b"d " + UNAVAILABLE
        # commands that need no database still work
        assert before.run("NOOP", tag="n")[1] == b"n OK NOOP completed\r\n"
        assert c.run("CAPABILITY", tag="c")[1] == b"c OK Capability completed\r\n"
    finally:
        stack.run("start-pg")
    login_until_ok(inst.port)
    assert "database" in inst.log_text().lower()


def test_database_down_at_start(stack, imapd_factory):
    stack.run("stop-pg")
    try:
        inst = imapd_factory("pg_retry_max_ms = 500")
        c = Conn("127.0.0.1", inst.port)
        assert c.greeting.startswith(b"* OK ")
        _, tagged = c.run('LOGIN "%s" "%s"' % (USER, PASSWORD), tag="d")
        assert tagged == b"d " + UNAVAILABLE
    finally:
        stack.run("start-pg")
    login_until_ok(inst.port)


def test_nats_down_does_not_stop_imapd(stack, imapd_factory):
    # nothing listens on this port: NATS is "down" for this instance
    inst = imapd_factory("nats_url = nats://127.0.0.1:%d" % free_port())
    c = Conn("127.0.0.1", inst.port)
    c.login(USER, PASSWORD)
    assert c.run("NOOP", tag="n")[1] == b"n OK NOOP completed\r\n"


def test_nats_restart_is_survived(stack, imapd_factory):
    inst = imapd_factory()
    stack.run("stop-nats")
    try:
        c = Conn("127.0.0.1", inst.port)
        c.login(USER, PASSWORD)
    finally:
        stack.run("start-nats")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and inst.log_text().count("NATS reconnected") < 2:
        time.sleep(0.2)
    # both workers reconnected by themselves
    assert inst.log_text().count("NATS reconnected") >= 2
    c = Conn("127.0.0.1", inst.port)
    c.login(USER, PASSWORD)
