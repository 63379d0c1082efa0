"""Protocol tests for the mailbox commands: CREATE, DELETE, RENAME,
SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB and STATUS (RFC 3501 6.3.3-6.3.10, with
RFC 3348 CHILDREN and RFC 6154 SPECIAL-USE attributes and RFC 5530 response
codes).  Every test works in an account of its own; responses are compared
byte for byte.  Messages are inserted with SQL where a test needs them."""
import itertools
import os
import time

import pytest

from imap import Conn

_seq = itertools.count(1)
PW = "mailbox pw"


def new_user(stack, domain="example.com"):
    login = "mbx%d-%d@%s" % (os.getpid(), next(_seq), domain)
    stack.imapctl("user", "add", login, stdin=PW + "\n")
    return login


def connect(stack, imapd, domain="example.com"):
    login = new_user(stack, domain)
    c = Conn("127.0.0.1", imapd.port)
    c.login(login, PW)
    c.user = login
    return c


def account_id(stack, login):
    return int(stack.psql("SELECT id FROM account WHERE login = '%s'" % login))


def mbox(stack, login, name, cols="id"):
    return stack.psql("SELECT %s FROM mailbox WHERE name = '%s' AND account_id = "
                      "(SELECT id FROM account WHERE login = '%s')" % (cols, name, login))


def add_messages(stack, login, name, flags, recent_uid=0):
    """Insert messages with UIDs 1..n and the given flags into a mailbox
    (as APPEND will), and set uidnext/highestmodseq like a writer would."""
    n = len(flags)
    values = ",".join("(%d, %d)" % (i + 1, f) for i, f in enumerate(flags))
    stack.psql(
        "INSERT INTO blob (tenant_id, hash, size, data) "
        "SELECT tenant_id, sha256('test message'::bytea), 12, 'test message'::bytea "
        "FROM account WHERE login = '{l}' ON CONFLICT DO NOTHING; "
        "INSERT INTO message (account_id, mailbox_id, uid, modseq, flags, size, blob_hash, tenant_id) "
        "SELECT a.id, m.id, v.u, v.u + 1, v.f, 100 * v.u, sha256('test message'::bytea), a.tenant_id "
        "FROM account a JOIN mailbox m ON m.account_id = a.id AND m.name = '{m}', "
        "(VALUES {v}) AS v(u, f) WHERE a.login = '{l}'; "
        "UPDATE mailbox SET uidnext = {n} + 1, highestmodseq = {n} + 1, recent_uid = {r} "
        "WHERE name = '{m}' AND account_id = (SELECT id FROM account WHERE login = '{l}')"
        .format(l=login, m=name, v=values, n=n, r=recent_uid))


def lines(untagged):
    return b"".join(untagged)


DEFAULTS = [
    b'* LIST (\\HasNoChildren) "/" INBOX\r\n',
    b'* LIST (\\Archive \\HasNoChildren) "/" Archive\r\n',
    b'* LIST (\\Drafts \\HasNoChildren) "/" Drafts\r\n',
    b'* LIST (\\Junk \\HasNoChildren) "/" Junk\r\n',
    b'* LIST (\\Sent \\HasNoChildren) "/" Sent\r\n',
    b'* LIST (\\Trash \\HasNoChildren) "/" Trash\r\n',
]


# ---- LIST basics -------------------------------------------------------

def test_default_mailboxes_special_use_and_subscriptions(stack, imapd):
    c = connect(stack, imapd)
    untagged, tagged = c.run('LIST "" "*"', tag="l1")
    assert untagged == DEFAULTS
    assert tagged == b"l1 OK List completed\r\n"
    untagged, _ = c.run('LIST "" %')
    assert untagged == DEFAULTS
    untagged, tagged = c.run('LSUB "" "*"', tag="l2")
    assert untagged == [b'* LSUB () "/" %s\r\n' % n for n in
                        (b"INBOX", b"Archive", b"Drafts", b"Junk", b"Sent", b"Trash")]
    assert tagged == b"l2 OK Lsub completed\r\n"


def test_list_delimiter_and_root(stack, imapd):
    c = connect(stack, imapd)
    untagged, tagged = c.run('LIST "" ""', tag="d")
    assert untagged == [b'* LIST (\\Noselect) "/" ""\r\n']
    assert tagged == b"d OK List completed\r\n"
    untagged, _ = c.run('LIST "Sent/" ""')
    assert untagged == [b'* LIST (\\Noselect) "/" ""\r\n']
    untagged, _ = c.run('LSUB "" ""')
    assert untagged == [b'* LSUB (\\Noselect) "/" ""\r\n']


def test_list_syntax_errors(stack, imapd):
    c = connect(stack, imapd)
    assert c.run("LIST", tag="x")[1] == b"x BAD LIST takes a reference name and a mailbox pattern\r\n"
    assert c.run('LIST ""', tag="x")[1] == b"x BAD LIST takes a reference name and a mailbox pattern\r\n"
    assert c.run('LIST "" * x', tag="x")[1] == \
        b"x BAD LIST takes a reference name and a mailbox pattern\r\n"
    assert c.run('LIST (SUBSCRIBED) "" *', tag="x")[1] == \
        b"x BAD LIST selection options (RFC 5258) are not supported\r\n"
    assert c.run('LIST "" &ZeVn', tag="x")[1] == \
        b'x BAD Invalid modified UTF-7 in LIST arguments: "&" not closed by "-"\r\n'
    assert c.run('LSUB "&AGE-" *', tag="x")[1] == \
        b"x BAD Invalid modified UTF-7 in LSUB arguments: printable US-ASCII character encoded in BASE64\r\n"


def test_commands_need_login(imapd):
    c = Conn("127.0.0.1", imapd.port)
    for cmd in ('LIST "" *', 'LSUB "" *', "CREATE a", "DELETE a", "RENAME a b",
                "SUBSCRIBE a", "UNSUBSCRIBE a", "STATUS INBOX (MESSAGES)"):
        _, tagged = c.run(cmd, tag="n")
        assert tagged == b"n BAD Log in first\r\n"


# ---- CREATE / DELETE ---------------------------------------------------

def test_create_list_delete_round_trip(stack, imapd):
    c = connect(stack, imapd)
    assert c.run("CREATE foo", tag="c1")[1] == b"c1 OK Create completed\r\n"
    untagged, _ = c.run('LIST "" foo')
    assert untagged == [b'* LIST (\\HasNoChildren) "/" foo\r\n']
    assert c.run("CREATE foo", tag="c2")[1] == b"c2 NO [ALREADYEXISTS] Mailbox already exists\r\n"
    assert c.run('CREATE "Sent Items"', tag="c3")[1] == b"c3 OK Create completed\r\n"
    untagged, _ = c.run('LIST "" "Sent*"')
    assert untagged == [b'* LIST (\\Sent \\HasNoChildren) "/" Sent\r\n',
                        b'* LIST (\\HasNoChildren) "/" "Sent Items"\r\n']
    assert c.run("DELETE foo", tag="d1")[1] == b"d1 OK Delete completed\r\n"
    assert c.run('LIST "" foo')[0] == []
    assert c.run("DELETE foo", tag="d2")[1] == b"d2 NO [NONEXISTENT] No such mailbox\r\n"
    assert c.run("STATUS foo (MESSAGES)", tag="s")[1] == b"s NO [NONEXISTENT] No such mailbox\r\n"
    # a mailbox created again gets a new UIDVALIDITY
    c.ok("CREATE again")
    v1 = mbox(stack, c.user, "again", "uidvalidity")
    c.ok("DELETE again")
    c.ok("CREATE again")
    v2 = mbox(stack, c.user, "again", "uidvalidity")
    assert int(v2) > int(v1)
    # syntax
    assert c.run("CREATE", tag="x")[1] == b"x BAD CREATE takes one mailbox name\r\n"
    assert c.run("CREATE a b", tag="x")[1] == b"x BAD CREATE takes one mailbox name\r\n"
    assert c.run("CREATE (a)", tag="x")[1] == b"x BAD Mailbox name expected\r\n"
    assert c.run("DELETE", tag="x")[1] == b"x BAD DELETE takes one mailbox name\r\n"


def test_hierarchy_placeholders_and_children(stack, imapd):
    c = connect(stack, imapd)
    c.ok("CREATE a/b/c")
    untagged, _ = c.run('LIST "" "a*"')
    assert untagged == [b'* LIST (\\Noselect \\HasChildren) "/" a\r\n',
                        b'* LIST (\\Noselect \\HasChildren) "/" a/b\r\n',
                        b'* LIST (\\HasNoChildren) "/" a/b/c\r\n']
    # "%" stops at the delimiter; the matching level is returned \Noselect
    untagged, _ = c.run('LIST "" %')
    assert untagged == DEFAULTS + [b'* LIST (\\Noselect \\HasChildren) "/" a\r\n']
    untagged, _ = c.run('LIST "" a/%')
    assert untagged == [b'* LIST (\\Noselect \\HasChildren) "/" a/b\r\n']
    untagged, _ = c.run('LIST "" %/%/%')
    assert untagged == [b'* LIST (\\HasNoChildren) "/" a/b/c\r\n']
    untagged, _ = c.run('LIST "" a/%/c')
    assert untagged == [b'* LIST (\\HasNoChildren) "/" a/b/c\r\n']
    # the reference is prefixed to the pattern
    untagged, _ = c.run('LIST a/ %')
    assert untagged == [b'* LIST (\\Noselect \\HasChildren) "/" a/b\r\n']
    untagged, _ = c.run('LIST a/ *')
    assert untagged == [b'* LIST (\\Noselect \\HasChildren) "/" a/b\r\n',
                        b'* LIST (\\HasNoChildren) "/" a/b/c\r\n']
    untagged, _ = c.run('LIST a/b/ c')
    assert untagged == [b'* LIST (\\HasNoChildren) "/" a/b/c\r\n']
    # a placeholder is not a mailbox
    assert c.run("DELETE a/b", tag="d")[1] == \
        b"d NO [NONEXISTENT] No such mailbox, only names below it exist\r\n"
    assert c.run("STATUS a (MESSAGES)", tag="s")[1] == b"s NO [NONEXISTENT] No such mailbox\r\n"
    assert c.run("SUBSCRIBE a", tag="s")[1] == b"s NO [NONEXISTENT] No such mailbox\r\n"
    # CREATE with a trailing delimiter makes the placeholder a mailbox
    assert c.run("CREATE a/", tag="c")[1] == b"c OK Create completed\r\n"
    assert mbox(stack, c.user, "a", "count(*)") == "1"
    assert mbox(stack, c.user, "a/", "count(*)") == "0"
    untagged, _ = c.run('LIST "" "a*"')
    assert untagged == [b'* LIST (\\HasChildren) "/" a\r\n',
                        b'* LIST (\\Noselect \\HasChildren) "/" a/b\r\n',
                        b'* LIST (\\HasNoChildren) "/" a/b/c\r\n']
    # deleting a parent keeps the children; the name is a placeholder again
    assert c.run("DELETE a", tag="d")[1] == b"d OK Delete completed\r\n"
    untagged, _ = c.run('LIST "" "a*"')
    assert untagged[0] == b'* LIST (\\Noselect \\HasChildren) "/" a\r\n'
    assert len(untagged) == 3
    # once the last child goes, so do the placeholders
    c.ok("DELETE a/b/c")
    assert c.run('LIST "" "a*"')[0] == []
    # siblings, and names sharing a prefix but not a level
    for n in ("p", "p/x", "p/y", "p y", "p!"):
        c.ok('CREATE "%s"' % n)
    untagged, _ = c.run('LIST "" p*')
    assert untagged == [b'* LIST (\\HasChildren) "/" p\r\n',
                        b'* LIST (\\HasNoChildren) "/" p/x\r\n',
                        b'* LIST (\\HasNoChildren) "/" p/y\r\n',
                        b'* LIST (\\HasNoChildren) "/" "p y"\r\n',
                        b'* LIST (\\HasNoChildren) "/" p!\r\n']
    untagged, _ = c.run('LIST "" p%')
    assert untagged == [b'* LIST (\\HasChildren) "/" p\r\n',
                        b'* LIST (\\HasNoChildren) "/" "p y"\r\n',
                        b'* LIST (\\HasNoChildren) "/" p!\r\n']


def test_inbox_is_case_insensitive(stack, imapd):
    c = connect(stack, imapd)
    for pat in ("inbox", "InBoX", "in%", "*box", "I*"):
        untagged, _ = c.run('LIST "" "%s"' % pat)
        assert untagged == [b'* LIST (\\HasNoChildren) "/" INBOX\r\n'], pat
    assert c.run("CREATE inbox", tag="c")[1] == b"c NO [ALREADYEXISTS] INBOX always exists\r\n"
    assert c.run("CREATE InBoX/", tag="c")[1] == b"c NO [ALREADYEXISTS] INBOX always exists\r\n"
    assert c.run("CREATE iNbOx/Sub", tag="c")[1] == b"c OK Create completed\r\n"
    assert mbox(stack, c.user, "INBOX/Sub", "count(*)") == "1"
    assert c.run("CREATE INBOX/Sub", tag="c")[1] == b"c NO [ALREADYEXISTS] Mailbox already exists\r\n"
    # below INBOX, names are case-sensitive
    assert c.run("CREATE inbox/sub", tag="c")[1] == b"c OK Create completed\r\n"
    untagged, _ = c.run('LIST "" "inbox*"')
    assert untagged == [b'* LIST (\\HasChildren) "/" INBOX\r\n',
                        b'* LIST (\\HasNoChildren) "/" INBOX/Sub\r\n',
                        b'* LIST (\\HasNoChildren) "/" INBOX/sub\r\n']
    untagged, _ = c.run('LIST inbox/ %')
    assert untagged == [b'* LIST (\\HasNoChildren) "/" INBOX/Sub\r\n',
                        b'* LIST (\\HasNoChildren) "/" INBOX/sub\r\n']
    # "Inboxes" is not INBOX
    c.ok("CREATE inboxes")
    untagged, _ = c.run('LIST "" "inbox%"')
    assert untagged == [b'* LIST (\\HasChildren) "/" INBOX\r\n',
                        b'* LIST (\\HasNoChildren) "/" inboxes\r\n']
    assert c.run('LIST "" "INBOXES"')[0] == []
    untagged, _ = c.run("STATUS inbox (MESSAGES)")
    assert untagged == [b"* STATUS INBOX (MESSAGES 0)\r\n"]
    assert c.run("DELETE INBOX", tag="d")[1] == b"d NO [CANNOT] INBOX cannot be deleted\r\n"
    assert c.run("DELETE inbox", tag="d")[1] == b"d NO [CANNOT] INBOX cannot be deleted\r\n"
    assert c.run("RENAME Sent inbox", tag="r")[1] == b"r NO [ALREADYEXISTS] INBOX always exists\r\n"
    c.ok("DELETE INBOX/sub")
    c.ok("UNSUBSCRIBE inbox")
    c.ok("SUBSCRIBE iNBOX")
    assert stack.psql("SELECT count(*) FROM subscription s JOIN account a ON a.id = s.account_id "
                      "WHERE a.login = '%s' AND s.name = 'INBOX'" % c.user) == "1"


# ---- RENAME ------------------------------------------------------------

def test_rename_with_children_and_subscriptions(stack, imapd):
    c = connect(stack, imapd)
    for n in ("p", "p/q", "p/q/r", "px"):
        c.ok("CREATE %s" % n)
    c.ok("SUBSCRIBE p/q")
    ids = {n: mbox(stack, c.user, n, "id || ' ' || uidvalidity") for n in ("p", "p/q", "p/q/r")}
    assert c.run("RENAME p z", tag="r")[1] == b"r OK Rename completed\r\n"
    untagged, _ = c.run('LIST "" "z*"')
    assert untagged == [b'* LIST (\\HasChildren) "/" z\r\n',
                        b'* LIST (\\HasChildren) "/" z/q\r\n',
                        b'* LIST (\\HasNoChildren) "/" z/q/r\r\n']
    # "px" only shares a prefix: untouched
    untagged, _ = c.run('LIST "" "p*"')
    assert untagged == [b'* LIST (\\HasNoChildren) "/" px\r\n']
    # same ids and UIDVALIDITY under the new names
    for old, new in (("p", "z"), ("p/q", "z/q"), ("p/q/r", "z/q/r")):
        assert mbox(stack, c.user, new, "id || ' ' || uidvalidity") == ids[old]
    # the new name is subscribed; the old one is kept (RFC 3501 6.3.6)
    untagged, _ = c.run('LSUB "" "*q"')
    assert untagged == [b'* LSUB (\\Noselect) "/" p/q\r\n', b'* LSUB () "/" z/q\r\n']
    # errors
    assert c.run("RENAME nothere x", tag="e")[1] == b"e NO [NONEXISTENT] No such mailbox\r\n"
    assert c.run("RENAME z px", tag="e")[1] == b"e NO [ALREADYEXISTS] Mailbox already exists\r\n"
    assert c.run("RENAME z Sent", tag="e")[1] == b"e NO [ALREADYEXISTS] Mailbox already exists\r\n"
    assert c.run("RENAME z z", tag="e")[1] == b"e NO [ALREADYEXISTS] The new name is the old name\r\n"
    assert c.run("RENAME z z/q/new", tag="e")[1] == \
        b"e NO [CANNOT] Cannot rename a mailbox into its own subtree or onto its parent\r\n"
    assert c.run("RENAME z/q z", tag="e")[1] == \
        b"e NO [CANNOT] Cannot rename a mailbox into its own subtree or onto its parent\r\n"
    assert c.run("RENAME z", tag="e")[1] == b"e BAD RENAME takes two mailbox names\r\n"
    assert c.run("RENAME z a//b", tag="e")[1] == \
        b'e NO [CANNOT] Invalid mailbox name: empty hierarchy level ("//")\r\n'
    # a collision below the new name fails the whole rename
    c.ok("CREATE k/r")
    assert c.run("RENAME z/q k", tag="e")[1] == \
        b"e NO [ALREADYEXISTS] A mailbox with the new name (or one below it) already exists\r\n"
    assert mbox(stack, c.user, "z/q", "count(*)") == "1"
    assert mbox(stack, c.user, "k", "count(*)") == "0"
    # renaming onto a placeholder is fine; renaming a placeholder moves its children
    assert c.run("RENAME px k", tag="r")[1] == b"r OK Rename completed\r\n"
    c.ok("CREATE h/i")
    assert c.run("RENAME h w/v", tag="r")[1] == b"r OK Rename completed\r\n"
    untagged, _ = c.run('LIST "" "w*"')
    assert untagged == [b'* LIST (\\Noselect \\HasChildren) "/" w\r\n',
                        b'* LIST (\\Noselect \\HasChildren) "/" w/v\r\n',
                        b'* LIST (\\HasNoChildren) "/" w/v/i\r\n']
    assert c.run('LIST "" "h*"')[0] == []


def test_rename_limit_on_children_names(stack, imapd):
    c = connect(stack, imapd)
    long = "x" * 500
    c.ok("CREATE r/%s" % long)
    assert c.run("RENAME r rrrrrrrrrrrr", tag="e")[1] == \
        b"e NO [LIMIT] Names below the mailbox would exceed 512 octets\r\n"
    assert c.run("RENAME r rrrrrrrrrrr", tag="r")[1] == b"r OK Rename completed\r\n"
    assert mbox(stack, c.user, "rrrrrrrrrrr/" + long, "octet_length(name)") == "512"


def test_rename_inbox_moves_messages(stack, imapd):
    c = connect(stack, imapd)
    c.ok("CREATE INBOX/keep")
    add_messages(stack, c.user, "INBOX", [1, 0, 0], recent_uid=1)
    inbox_id, inbox_uv = mbox(stack, c.user, "INBOX", "id, uidvalidity").split("|")
    assert c.run("RENAME Sent INBOX", tag="e")[1] == b"e NO [ALREADYEXISTS] INBOX always exists\r\n"
    assert c.run("RENAME INBOX Sent", tag="e")[1] == b"e NO [ALREADYEXISTS] Mailbox already exists\r\n"
    assert mbox(stack, c.user, "INBOX", "highestmodseq") == "4"
    assert c.run("RENAME inbox old-mail", tag="r")[1] == b"r OK Rename completed\r\n"

    new_id, new_uv, uidnext, hms, recent = \
        mbox(stack, c.user, "old-mail", "id, uidvalidity, uidnext, highestmodseq, recent_uid").split("|")
    assert new_id != inbox_id and int(new_uv) > int(inbox_uv)
    assert (uidnext, hms, recent) == ("4", "5", "1")
    # the messages moved with their UIDs and flags
    assert stack.psql("SELECT string_agg(uid || ':' || flags, ',' ORDER BY uid) FROM message "
                      "WHERE mailbox_id = %s" % new_id) == "1:1,2:0,3:0"
    # INBOX: same UIDVALIDITY and uidnext, empty, highestmodseq bumped, a
    # tombstone for each moved UID at the new modseq
    assert mbox(stack, c.user, "INBOX", "id, uidvalidity, uidnext, highestmodseq") == \
        "%s|%s|4|5" % (inbox_id, inbox_uv)
    assert stack.psql("SELECT count(*) FROM message WHERE mailbox_id = %s" % inbox_id) == "0"
    assert stack.psql("SELECT string_agg(uid || ':' || modseq, ',' ORDER BY uid) FROM expunged "
                      "WHERE mailbox_id = %s" % inbox_id) == "1:5,2:5,3:5"
    untagged, _ = c.run("STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY)")
    assert untagged == [b"* STATUS INBOX (MESSAGES 0 UIDNEXT 4 UIDVALIDITY %s)\r\n" % inbox_uv.encode()]
    untagged, _ = c.run("STATUS old-mail (MESSAGES RECENT UIDNEXT UNSEEN)")
    assert untagged == [b"* STATUS old-mail (MESSAGES 3 RECENT 2 UIDNEXT 4 UNSEEN 2)\r\n"]
    # INBOX's children stay where they are; the new mailbox is subscribed like INBOX
    untagged, _ = c.run('LIST "" "*"')
    assert untagged[:2] == [b'* LIST (\\HasChildren) "/" INBOX\r\n',
                            b'* LIST (\\HasNoChildren) "/" INBOX/keep\r\n']
    assert b'* LIST (\\HasNoChildren) "/" old-mail\r\n' in untagged
    untagged, _ = c.run('LSUB "" old-mail')
    assert untagged == [b'* LSUB () "/" old-mail\r\n']
    # an empty INBOX can be renamed too
    assert c.run("RENAME INBOX empty", tag="r")[1] == b"r OK Rename completed\r\n"
    assert mbox(stack, c.user, "empty", "uidnext") == "4"


# ---- SUBSCRIBE / LSUB --------------------------------------------------

def test_subscribe_unsubscribe_lsub(stack, imapd):
    c = connect(stack, imapd)
    c.ok("CREATE f/g/h")
    assert c.run("SUBSCRIBE f/g/h", tag="s")[1] == b"s OK Subscribe completed\r\n"
    assert c.run("SUBSCRIBE f/g/h", tag="s")[1] == b"s OK Subscribe completed\r\n"
    assert c.run("SUBSCRIBE nothere", tag="s")[1] == b"s NO [NONEXISTENT] No such mailbox\r\n"
    assert c.run('LSUB "" f*')[0] == [b'* LSUB () "/" f/g/h\r\n']
    # RFC 3501 6.3.9: "%" returns the unsubscribed level above, \Noselect
    assert c.run('LSUB "" f%')[0] == [b'* LSUB (\\Noselect) "/" f\r\n']
    assert c.run('LSUB "" f/%')[0] == [b'* LSUB (\\Noselect) "/" f/g\r\n']
    assert c.run('LSUB f/ %')[0] == [b'* LSUB (\\Noselect) "/" f/g\r\n']
    assert c.run('LSUB "" f/%/%')[0] == [b'* LSUB () "/" f/g/h\r\n']
    assert c.run('LSUB "" %/g/%')[0] == [b'* LSUB () "/" f/g/h\r\n']
    untagged, _ = c.run('LSUB "" %')
    assert untagged == [b'* LSUB () "/" %s\r\n' % n for n in
                        (b"INBOX", b"Archive", b"Drafts", b"Junk", b"Sent", b"Trash")] + \
        [b'* LSUB (\\Noselect) "/" f\r\n']
    # a subscribed level above is listed as subscribed, not \Noselect
    c.ok("CREATE f")
    c.ok("SUBSCRIBE f")
    assert c.run('LSUB "" f%')[0] == [b'* LSUB () "/" f\r\n']
    assert c.run('LSUB "" f*')[0] == [b'* LSUB () "/" f\r\n', b'* LSUB () "/" f/g/h\r\n']
    # deleting a mailbox keeps its subscription (6.3.6); it shows \Noselect
    c.ok("DELETE f/g/h")
    assert c.run('LSUB "" f/*')[0] == [b'* LSUB (\\Noselect) "/" f/g/h\r\n']
    assert c.run("UNSUBSCRIBE f/g/h", tag="u")[1] == b"u OK Unsubscribe completed\r\n"
    assert c.run("UNSUBSCRIBE f/g/h", tag="u")[1] == b"u NO [NONEXISTENT] Not subscribed to that name\r\n"
    assert c.run('LSUB "" f*')[0] == [b'* LSUB () "/" f\r\n']
    # LIST is not affected by subscriptions
    c.ok("UNSUBSCRIBE Sent")
    assert c.run('LIST "" Sent')[0] == [b'* LIST (\\Sent \\HasNoChildren) "/" Sent\r\n']
    assert c.run('LSUB "" Sent')[0] == []
    assert c.run("SUBSCRIBE", tag="x")[1] == b"x BAD SUBSCRIBE takes one mailbox name\r\n"
    assert c.run("UNSUBSCRIBE a b", tag="x")[1] == b"x BAD UNSUBSCRIBE takes one mailbox name\r\n"


# ---- STATUS ------------------------------------------------------------

def test_status_items(stack, imapd):
    c = connect(stack, imapd)
    c.ok("CREATE box")
    uv = mbox(stack, c.user, "box", "uidvalidity").encode()
    untagged, tagged = c.run("STATUS box (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)", tag="s")
    assert untagged == [b"* STATUS box (MESSAGES 0 RECENT 0 UIDNEXT 1 UIDVALIDITY %s UNSEEN 0)\r\n" % uv]
    assert tagged == b"s OK Status completed\r\n"
    # four messages, one \Seen, one \Seen|\Flagged; two not yet seen by any session
    add_messages(stack, c.user, "box", [1, 0, 5, 0], recent_uid=2)
    untagged, _ = c.run("STATUS box (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)")
    assert untagged == [b"* STATUS box (MESSAGES 4 RECENT 2 UIDNEXT 5 UIDVALIDITY %s UNSEEN 2)\r\n" % uv]
    # fixed order, each item once, whatever was asked
    untagged, _ = c.run("STATUS box (unseen MESSAGES unseen)")
    assert untagged == [b"* STATUS box (MESSAGES 4 UNSEEN 2)\r\n"]
    untagged, _ = c.run("STATUS box (HIGHESTMODSEQ SIZE)")
    assert untagged == [b"* STATUS box (HIGHESTMODSEQ 5 SIZE 1000)\r\n"]
    untagged, _ = c.run('STATUS "box" (RECENT)')
    assert untagged == [b"* STATUS box (RECENT 2)\r\n"]
    # errors
    assert c.run("STATUS box (MESSAGES BOGUS)", tag="x")[1] == b"x BAD Unknown STATUS item BOGUS\r\n"
    assert c.run("STATUS box ()", tag="x")[1] == b"x BAD STATUS needs at least one item\r\n"
    assert c.run("STATUS box MESSAGES", tag="x")[1] == \
        b"x BAD STATUS takes a mailbox name and a parenthesised list of items\r\n"
    assert c.run("STATUS box", tag="x")[1] == \
        b"x BAD STATUS takes a mailbox name and a parenthesised list of items\r\n"
    assert c.run("STATUS box ((MESSAGES))", tag="x")[1] == b"x BAD STATUS items are atoms\r\n"
    assert c.run("STATUS nothere (MESSAGES)", tag="x")[1] == b"x NO [NONEXISTENT] No such mailbox\r\n"


# ---- names -------------------------------------------------------------

def test_modified_utf7_names_round_trip(stack, imapd):
    c = connect(stack, imapd)
    assert c.run("CREATE &ZeVnLIqe-", tag="c")[1] == b"c OK Create completed\r\n"
    assert mbox(stack, c.user, "\u65e5\u672c\u8a9e", "count(*)") == "1"
    c.ok('CREATE "Entw&APw-rfe/&ZeVnLIqe-/Gel&APY-scht"')
    assert mbox(stack, c.user, "Entw\u00fcrfe/\u65e5\u672c\u8a9e/Gel\u00f6scht", "count(*)") == "1"
    c.ok('CREATE "Tom &- Jerry"')
    c.ok("CREATE &2D3eAA-")    # U+1F600, a surrogate pair
    assert mbox(stack, c.user, "\U0001F600", "count(*)") == "1"
    untagged, _ = c.run('LIST "" *')
    assert untagged == DEFAULTS[:3] + [
        b'* LIST (\\Noselect \\HasChildren) "/" Entw&APw-rfe\r\n',
        b'* LIST (\\Noselect \\HasChildren) "/" Entw&APw-rfe/&ZeVnLIqe-\r\n',
        b'* LIST (\\HasNoChildren) "/" Entw&APw-rfe/&ZeVnLIqe-/Gel&APY-scht\r\n',
    ] + DEFAULTS[3:5] + [
        b'* LIST (\\HasNoChildren) "/" "Tom &- Jerry"\r\n',
    ] + DEFAULTS[5:] + [
        b'* LIST (\\HasNoChildren) "/" &ZeVnLIqe-\r\n',
        b'* LIST (\\HasNoChildren) "/" &2D3eAA-\r\n',
    ]
    # patterns and references are decoded too
    assert c.run('LIST "Entw&APw-rfe/" "&ZeVnLIqe-/%"')[0] == \
        [b'* LIST (\\HasNoChildren) "/" Entw&APw-rfe/&ZeVnLIqe-/Gel&APY-scht\r\n']
    assert c.run('LIST "" "*&ZeVnLIqe-"')[0] == [
        b'* LIST (\\Noselect \\HasChildren) "/" Entw&APw-rfe/&ZeVnLIqe-\r\n',
        b'* LIST (\\HasNoChildren) "/" &ZeVnLIqe-\r\n']
    untagged, _ = c.run("STATUS &ZeVnLIqe- (MESSAGES)")
    assert untagged == [b"* STATUS &ZeVnLIqe- (MESSAGES 0)\r\n"]
    c.ok("SUBSCRIBE &ZeVnLIqe-")
    assert c.run('LSUB "" &ZeVnLIqe-')[0] == [b'* LSUB () "/" &ZeVnLIqe-\r\n']
    assert c.run("RENAME &ZeVnLIqe- &U,BTFw-", tag="r")[1] == b"r OK Rename completed\r\n"
    assert mbox(stack, c.user, "\u53f0\u5317", "count(*)") == "1"
    c.ok("DELETE &U,BTFw-")


@pytest.mark.parametrize("name,reply", [
    (b"&ZeVn", b'BAD Invalid mailbox name: "&" not closed by "-"'),
    (b"&ZeVnLIqe", b'BAD Invalid mailbox name: "&" not closed by "-"'),
    (b"&AGE-", b"BAD Invalid mailbox name: printable US-ASCII character encoded in BASE64"),
    (b"&2D0-", b"BAD Invalid mailbox name: unpaired UTF-16 surrogate"),
    (b"&3gA-", b"BAD Invalid mailbox name: unpaired UTF-16 surrogate"),
    (b"&AOl-", b"BAD Invalid mailbox name: non-canonical BASE64 (leftover bits)"),
    (b"&AOk-&AOk-", b"BAD Invalid mailbox name: null shift between two BASE64 sequences"),
    (b"&Ze=n-", b"BAD Invalid mailbox name: invalid character in modified BASE64"),
    (b'"a\tb"', b"BAD Invalid mailbox name: control character"),
    (b"{9+}\r\nEntw\xc3\xbcrfe", b"BAD Invalid mailbox name: 8-bit octet (names must be sent in modified UTF-7)"),
    (b"&AAk-", b"NO [CANNOT] Invalid mailbox name: control characters are not allowed"),
    (b"&AIU-", b"NO [CANNOT] Invalid mailbox name: control characters are not allowed"),
    (b"a//b", b'NO [CANNOT] Invalid mailbox name: empty hierarchy level ("//")'),
    (b"/a", b'NO [CANNOT] Invalid mailbox name: it starts with "/"'),
    (b"a//", b'NO [CANNOT] Invalid mailbox name: it ends with "/"'),
    (b'""', b"NO [CANNOT] Invalid mailbox name: empty"),
    (b'"a*"', b'NO [CANNOT] Invalid mailbox name: "*" and "%" are not allowed'),
    (b"x" * 513, b"NO [LIMIT] Mailbox name too long (at most 512 octets of UTF-8)"),
])
def test_invalid_names(stack, imapd, name, reply):
    c = connect(stack, imapd)
    for cmd in (b"CREATE", b"DELETE", b"SUBSCRIBE", b"STATUS"):
        tail = b" (MESSAGES)" if cmd == b"STATUS" else b""
        c.send(b"t " + cmd + b" " + name + tail + b"\r\n")
        _, tagged = c.collect("t")
        assert tagged == b"t " + reply + b"\r\n", cmd
    # nothing was created
    assert stack.psql("SELECT count(*) FROM mailbox m JOIN account a ON a.id = m.account_id "
                      "WHERE a.login = '%s'" % c.user) == "6"


def test_name_length_limit(stack, imapd_factory):
    inst = imapd_factory("max_mailbox_name = 20")
    c = connect(stack, inst)
    assert c.run("CREATE " + "y" * 20, tag="c")[1] == b"c OK Create completed\r\n"
    assert c.run("CREATE " + "y" * 21, tag="c")[1] == \
        b"c NO [LIMIT] Mailbox name too long (at most 20 octets of UTF-8)\r\n"
    # octets of UTF-8, not characters: 7 x U+65E5 is 21 octets
    assert c.run("CREATE &ZeVl5WXlZeVl5WXlZeU-", tag="c")[1] == \
        b"c NO [LIMIT] Mailbox name too long (at most 20 octets of UTF-8)\r\n"
    assert c.run("CREATE &ZeVl5WXlZeVl5WXlZeU-/", tag="c")[1] == \
        b"c NO [LIMIT] Mailbox name too long (at most 20 octets of UTF-8)\r\n"
    assert c.run("CREATE &ZeVl5WXlZeVl5WXl-/", tag="c")[1] == b"c OK Create completed\r\n"
    assert c.run("CREATE &ZeVl5WXlZeVl5WXl-/xy", tag="c")[1] == \
        b"c NO [LIMIT] Mailbox name too long (at most 20 octets of UTF-8)\r\n"


def test_max_mailboxes(stack, imapd_factory):
    inst = imapd_factory("max_mailboxes = 8")
    c = connect(stack, inst)
    c.ok("CREATE m1")
    c.ok("CREATE m2")
    assert c.run("CREATE m3", tag="c")[1] == b"c NO [LIMIT] Too many mailboxes (at most 8)\r\n"
    assert c.run("RENAME INBOX m3", tag="r")[1] == b"r NO [LIMIT] Too many mailboxes (at most 8)\r\n"
    # an existing name is still reported as such
    assert c.run("CREATE m1", tag="c")[1] == b"c NO [ALREADYEXISTS] Mailbox already exists\r\n"
    # renames that keep the count are fine
    c.ok("RENAME m2 m3")
    c.ok("DELETE m1")
    assert c.run("CREATE m4", tag="c")[1] == b"c OK Create completed\r\n"
    assert stack.psql("SELECT count(*) FROM mailbox m JOIN account a ON a.id = m.account_id "
                      "WHERE a.login = '%s'" % c.user) == "8"


# ---- tenants -----------------------------------------------------------

def test_tenants_cannot_see_each_other(stack, imapd):
    a = connect(stack, imapd, "example.com")
    b = connect(stack, imapd, "example.org")
    a.ok("CREATE secret/child")
    a.ok("CREATE secret")
    a.ok("SUBSCRIBE secret")
    add_messages(stack, a.user, "secret", [0, 0])
    before = stack.psql("SELECT string_agg(id || name || uidnext || highestmodseq, ',' ORDER BY id) "
                        "FROM mailbox WHERE account_id = %d" % account_id(stack, a.user))
    # bob, in the other tenant, sees only his own mailboxes...
    assert b.run('LIST "" *')[0] == DEFAULTS
    assert b.run('LIST "" secret*')[0] == []
    assert b.run('LSUB "" secret*')[0] == []
    # ...and cannot reach alice's by name
    nx = b"NO [NONEXISTENT] No such mailbox\r\n"
    assert b.run("STATUS secret (MESSAGES UIDNEXT)", tag="t")[1] == b"t " + nx
    assert b.run("RENAME secret mine", tag="t")[1] == b"t " + nx
    assert b.run("RENAME secret/child mine", tag="t")[1] == b"t " + nx
    assert b.run("DELETE secret", tag="t")[1] == b"t " + nx
    assert b.run("DELETE secret/child", tag="t")[1] == b"t " + nx
    assert b.run("SUBSCRIBE secret", tag="t")[1] == b"t " + nx
    assert b.run("UNSUBSCRIBE secret", tag="t")[1] == b"t NO [NONEXISTENT] Not subscribed to that name\r\n"
    # the same names in bob's account are his own business
    b.ok("CREATE secret")
    b.ok("RENAME secret other")
    b.ok("DELETE other")
    # renaming his INBOX does not touch alice's messages
    b.ok("RENAME INBOX bobs")
    # nothing of alice's changed
    assert stack.psql("SELECT string_agg(id || name || uidnext || highestmodseq, ',' ORDER BY id) "
                      "FROM mailbox WHERE account_id = %d" % account_id(stack, a.user)) == before
    assert a.run("STATUS secret (MESSAGES)")[0] == [b"* STATUS secret (MESSAGES 2)\r\n"]
    assert a.run('LSUB "" secret')[0] == [b'* LSUB () "/" secret\r\n']
    # the same holds within one tenant
    c = connect(stack, imapd, "example.com")
    assert c.run("STATUS secret (MESSAGES)", tag="t")[1] == b"t " + nx
    assert c.run('LIST "" secret*')[0] == []


# ---- robustness --------------------------------------------------------

def test_pathological_pattern_is_fast(stack, imapd):
    c = connect(stack, imapd)
    c.ok("CREATE " + "a" * 300)
    c.ok("CREATE " + "a/" * 100 + "b")
    t0 = time.monotonic()
    untagged, tagged = c.run('LIST "" "' + "*a" * 200 + 'c"', tag="p")
    assert untagged == [] and tagged == b"p OK List completed\r\n"
    untagged, _ = c.run('LIST "" "' + "%/" * 100 + 'b"')
    assert len(untagged) == 1
    assert time.monotonic() - t0 < 2


def test_deep_hierarchy(stack, imapd):
    c = connect(stack, imapd)
    name = "/".join("l%d" % i for i in range(100))
    c.ok("CREATE " + name)
    untagged, _ = c.run('LIST "" l0*')
    assert len(untagged) == 100
    assert untagged[0] == b'* LIST (\\Noselect \\HasChildren) "/" l0\r\n'
    assert untagged[-1] == b'* LIST (\\HasNoChildren) "/" ' + name.encode() + b"\r\n"
    assert c.run('LIST "" l0/%')[0] == [b'* LIST (\\Noselect \\HasChildren) "/" l0/l1\r\n']


def test_commands_work_in_selected_state_and_selected_mailbox(stack, imapd):
    c = connect(stack, imapd)
    c.ok("CREATE sel")
    c.ok("CREATE sel/kid")
    _, tagged = c.run("SELECT sel", tag="s")
    assert tagged == b"s OK [READ-WRITE] SELECT completed\r\n"
    assert c.run('LIST "" sel')[0] == [b'* LIST (\\HasChildren) "/" sel\r\n']
    assert c.run("STATUS sel (MESSAGES)")[0] == [b"* STATUS sel (MESSAGES 0)\r\n"]
    # deleting the selected mailbox is refused (RFC 5530 INUSE)
    assert c.run("DELETE sel", tag="d")[1] == \
        b"d NO [INUSE] Mailbox is selected in this session; CLOSE it first\r\n"
    c.ok("DELETE sel/kid")
    # renaming it is allowed
    assert c.run("RENAME sel sel2", tag="r")[1] == b"r OK Rename completed\r\n"
    c.ok("CREATE other")
    c.ok("SUBSCRIBE other")
    # another session may delete it
    d = Conn("127.0.0.1", imapd.port)
    d.login(c.user, PW)
    assert d.run("DELETE sel2", tag="d")[1] == b"d OK Delete completed\r\n"


def test_database_down_gives_unavailable(stack, imapd_factory):
    inst = imapd_factory("pg_retry_max_ms = 500")
    c = connect(stack, inst)
    stack.run("stop-pg")
    try:
        for cmd in ('LIST "" *', 'LSUB "" *', "CREATE x", "DELETE x", "RENAME x y",
                    "RENAME INBOX y", "SUBSCRIBE x", "UNSUBSCRIBE x", "STATUS INBOX (MESSAGES)"):
            _, tagged = c.run(cmd, tag="u")
            assert tagged == b"u NO [UNAVAILABLE] Service temporarily unavailable, try again\r\n", cmd
        # the delimiter needs no database
        assert c.run('LIST "" ""')[1].endswith(b"OK List completed\r\n")
    finally:
        stack.run("start-pg")
    deadline = time.monotonic() + 30
    while True:
        _, tagged = c.run('LIST "" INBOX', tag="r")
        if tagged == b"r OK List completed\r\n":
            break
        assert time.monotonic() < deadline, tagged
        time.sleep(0.3)
