"""A small raw IMAP client for protocol tests.

It sends exactly the bytes a test gives it and returns exactly the bytes
the server sent, split into responses (a response is a line plus any
literals it announces), so tests can compare byte for byte.
"""
import re
import socket
import ssl
import time

LITERAL_RE = re.compile(rb"\{(\d+)\+?\}\r\n$")


class IMAPError(Exception):
    pass


class Conn:
    def __init__(self, host, port, tls=False, timeout=10.0, greeting=True):
        self.host, self.port = host, port
        raw = socket.create_connection((host, port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = raw
        self.buf = bytearray()
        self.timeout = timeout
        self.tagn = 0
        if tls:
            self.sock = client_tls_context().wrap_socket(raw, server_hostname="localhost")
        self.greeting = self.read_response() if greeting else None

    # -- I/O --------------------------------------------------------------
    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data from server; have %r" % bytes(self.buf[-200:]))
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no data from server; have %r" % bytes(self.buf[-200:]))
        if not chunk:
            raise ConnectionError("server closed the connection; have %r" % bytes(self.buf[-200:]))
        self.buf += chunk

    def read_line(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        start = 0
        while True:
            i = self.buf.find(b"\r\n", start)
            if i >= 0:
                break
            start = max(0, len(self.buf) - 1)
            self._fill(deadline)
        line = bytes(self.buf[:i + 2])
        del self.buf[:i + 2]
        return line

    def read_exact(self, n, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buf) < n:
            self._fill(deadline)
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_response(self, timeout=None):
        """One response: a line, and the literals it announces."""
        out = self.read_line(timeout)
        while True:
            m = LITERAL_RE.search(out)
            if not m:
                return out
            out += self.read_exact(int(m.group(1)), timeout)
            out += self.read_line(timeout)

    def closed(self, timeout=5.0):
        """True when the server closes the connection within timeout."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline)
        except ConnectionError:
            return True
        except (TimeoutError, OSError):
            return False

    def expect_closed(self, timeout=5.0):
        assert self.closed(timeout), "server did not close the connection"

    # -- commands ---------------------------------------------------------
    def next_tag(self):
        self.tagn += 1
        return "a%03d" % self.tagn

    def run(self, command, tag=None, timeout=None):
        """Send `tag command`, return (untagged responses, tagged line)."""
        tag = tag or self.next_tag()
        self.send("%s %s\r\n" % (tag, command))
        return self.collect(tag, timeout)

    def collect(self, tag, timeout=None):
        tagb = tag.encode() + b" "
        untagged = []
        while True:
            r = self.read_response(timeout)
            if r.startswith(tagb):
                return untagged, r
            untagged.append(r)

    def ok(self, command, timeout=None):
        untagged, tagged = self.run(command, timeout=timeout)
        if b" OK " not in tagged[:40]:
            raise IMAPError("%s -> %r" % (command, tagged))
        return untagged, tagged

    def login(self, user, password):
        return self.ok('LOGIN "%s" "%s"' % (user, password))

    def starttls(self):
        _, tagged = self.run("STARTTLS")
        assert b"OK" in tagged, tagged
        self.sock = client_tls_context().wrap_socket(self.sock, server_hostname="localhost")
        return tagged

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def client_tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def capabilities(line):
    """The capability names in '* CAPABILITY ...' or '[CAPABILITY ...]'."""
    m = re.search(rb"CAPABILITY ([^\]\r]*)", line)
    assert m, line
    return m.group(1).split()
