-- The keywords ever used in a mailbox, for the FLAGS and PERMANENTFLAGS
-- responses of SELECT (RFC 3501 7.2.6).  Kept on the mailbox row, which
-- every write updates anyway for its modseq, so SELECT does not scan the
-- messages of a large mailbox for them.
ALTER TABLE mailbox ADD COLUMN keywords text[] NOT NULL DEFAULT '{}';

-- \Recent (RFC 3501 2.3.2): a message is recent in the one session that
-- first sees it.  A claim is "UPDATE mailbox SET recent_prev = recent_uid,
-- recent_uid = uidnext - 1 ... RETURNING recent_prev, recent_uid": SET reads
-- the row version it updates, so two sessions claiming at once get
-- disjoint ranges even under READ COMMITTED re-checks.
ALTER TABLE mailbox ADD COLUMN recent_prev bigint NOT NULL DEFAULT 0;
