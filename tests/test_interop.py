"""Interop with real clients: imapflow (Node.js, from npm) and Python's
imaplib create folders, append, fetch bodies and structures, move, search
and expunge, and see what they did."""
import imaplib
import json
import os
import shutil
import subprocess
import ssl

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
INTEROP = os.path.join(HERE, "interop")


@pytest.fixture
def fresh_user(stack):
    login = "interop%d@example.com" % next(_counter)
    stack.imapctl("user", "add", login, stdin="pw\n")
    return login


_counter = __import__("itertools").count()


def test_imapflow(stack, fresh_user):
    assert shutil.which("node"), "node is required for the interop tests"
    if not os.path.isdir(os.path.join(INTEROP, "node_modules", "imapflow")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=INTEROP, check=True,
                       capture_output=True, timeout=300)
    r = subprocess.run(["node", "imapflow_check.mjs", "127.0.0.1", str(stack.node_tls_port(0)),
                        fresh_user, "pw"], cwd=INTEROP, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr + r.stdout
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert "Interop/Sub" in out["list"] and "Interop" in out["list"]
    assert out["appendUid"] == 1
    assert out["subject"] == "interop check"
    assert out["from"] == "tester@example.com"
    # imapflow's session selected the mailbox first: the message is \Recent there
    assert out["flags"] == ["\\Recent", "\\Seen"]
    assert out["sourceLength"] == out["rawLength"]
    assert out["structure"]["type"] == "multipart/mixed"
    assert out["structure"]["parts"] == [["1", "text/plain", "7bit"], ["2", "application/octet-stream", "base64"]]
    assert out["attachment"] == "0001020304"
    assert out["search"] == [1] and out["searchNone"] == []
    assert out["moved"] is True
    assert out["statusAfterMove"] == 0
    assert out["inbox"] == [{"subject": "interop check", "flags": ["\\Flagged", "\\Recent", "\\Seen"]}]
    assert out["inboxAfterDelete"] == 0


def test_python_imaplib(stack, fresh_user):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    m = imaplib.IMAP4_SSL("127.0.0.1", stack.node_tls_port(0), ssl_context=ctx)
    assert m.login(fresh_user, "pw")[0] == "OK"
    assert m.create("Py/Folder")[0] == "OK"
    typ, data = m.list()
    assert typ == "OK" and any(b'"Py/Folder"' in x or b" Py/Folder" in x for x in data)
    msg = b"From: py@example.com\r\nSubject: from imaplib\r\n\r\nbody text here\r\n"
    typ, data = m.append("Py/Folder", "(\\Draft)", imaplib.Time2Internaldate(1700000000), msg)
    assert typ == "OK" and b"APPENDUID" in data[0]
    typ, data = m.select("Py/Folder")
    assert typ == "OK" and data == [b"1"]
    typ, data = m.fetch("1", "(FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODYSTRUCTURE)")
    assert typ == "OK"
    assert data[0][1] == b"Subject: from imaplib\r\n\r\n"
    assert b"RFC822.SIZE %d" % len(msg) in data[0][0]
    assert b"\\Draft" in data[0][0]
    typ, data = m.search(None, "BODY", "text")
    assert typ == "OK" and data == [b"1"]
    typ, data = m.uid("COPY", "1", "INBOX")
    assert typ == "OK"
    typ, data = m.store("1", "+FLAGS", "(\\Deleted)")
    assert typ == "OK"
    typ, data = m.expunge()
    assert typ == "OK" and data == [b"1"]
    typ, data = m.status("INBOX", "(MESSAGES UNSEEN)")
    assert typ == "OK" and b"MESSAGES 1" in data[0]
    m.close()
    m.logout()
