-- 0002_recent.sql - where \Recent begins in each mailbox.
--
-- RFC 3501 2.3.2: a message is \Recent in the first session that sees it
-- in a SELECT (or a later untagged EXISTS) and in no other.  Workers keep
-- no shared memory, so the "first" is decided in the mailbox row: UIDs
-- above recent_uid have not yet been seen by any session.  A session that
-- learns of new messages claims them with
--   UPDATE mailbox SET recent_uid = uidnext - 1 ... RETURNING <old value>
-- (the row lock makes two claims disjoint), and treats the UIDs between
-- the old value and the new one as recent.  STATUS (RECENT) counts the
-- messages with uid > recent_uid, served by the message primary key.
--
-- Existing mailboxes start at 0: everything in them counts as recent until
-- the first SELECT, as a fresh mailbox would.
ALTER TABLE mailbox ADD COLUMN recent_uid bigint NOT NULL DEFAULT 0
	CHECK (recent_uid >= 0 AND recent_uid < uidnext);
