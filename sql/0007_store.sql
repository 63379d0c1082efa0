-- STORE as one call that is exact under concurrency (RFC 7162 3.1.3).
--
-- store_flags() first locks the mailbox row.  Every writer of a mailbox
-- takes that lock before it touches its messages (DESIGN.md invariant 1),
-- so once it is held no message of the mailbox can change, and each later
-- statement of this (VOLATILE, READ COMMITTED) function reads a fresh
-- snapshot that already holds every change committed before us.  That is
-- what makes the UNCHANGEDSINCE test exact: a single CTE statement would
-- decide it on the snapshot taken before it waited for the lock, and could
-- pass a message that a concurrent STORE had just changed.
--
-- The store takes one new modseq (highestmodseq + 1) only when some message
-- really changes (3.1.11: setting a flag that is set changes nothing), and
-- gives it to every message it changes.  Returned rows, in UID order:
--   status 1  changed (flags, keywords, modseq are the new ones)
--   status 0  in the set, unchanged (already as asked)
--   status 2  failed the UNCHANGEDSINCE test (its modseq is above it);
--             flags, keywords, modseq are the current ones
-- p_mode: 0 FLAGS, 1 +FLAGS, 2 -FLAGS.  p_unchangedsince NULL: no test.
-- Keywords are compared as sets; new keywords join mailbox.keywords (the
-- FLAGS/PERMANENTFLAGS list) unless the mode removes.
CREATE FUNCTION store_flags(p_account bigint, p_mailbox bigint, p_lo bigint[], p_hi bigint[],
                            p_min bigint, p_max bigint, p_mode int, p_flags int,
                            p_keywords text[], p_unchangedsince bigint)
RETURNS TABLE (uid bigint, flags int, keywords text, modseq bigint, status int)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	PERFORM 1 FROM mailbox mb WHERE mb.account_id = p_account AND mb.id = p_mailbox FOR UPDATE;
	IF NOT FOUND THEN
		RETURN;
	END IF;
	-- This statement's snapshot is taken now, with the lock held.
	RETURN QUERY
	WITH cur AS (
		SELECT m.uid, m.flags, m.keywords, m.modseq,
		       CASE p_mode WHEN 0 THEN p_flags
		                   WHEN 1 THEN m.flags | p_flags
		                   ELSE m.flags & ~p_flags END AS nflags,
		       CASE p_mode WHEN 0 THEN p_keywords
		                   WHEN 1 THEN m.keywords || ARRAY(SELECT k FROM unnest(p_keywords) k
		                                                   WHERE k <> ALL (m.keywords))
		                   ELSE ARRAY(SELECT k FROM unnest(m.keywords) WITH ORDINALITY t(k, o)
		                              WHERE k <> ALL (p_keywords) ORDER BY o) END AS nkeywords,
		       (p_unchangedsince IS NOT NULL AND m.modseq > p_unchangedsince) AS failed
		  FROM unnest(p_lo, p_hi) r(lo, hi)
		  JOIN message m ON m.account_id = p_account AND m.mailbox_id = p_mailbox
		                AND m.uid BETWEEN r.lo AND r.hi AND m.uid BETWEEN p_min AND p_max),
	calc AS (
		SELECT cur.*, NOT cur.failed AND (cur.nflags <> cur.flags
		              OR NOT (cur.nkeywords @> cur.keywords AND cur.nkeywords <@ cur.keywords)) AS changed
		  FROM cur),
	mb AS (
		UPDATE mailbox x SET highestmodseq = x.highestmodseq + 1,
		       keywords = x.keywords || ARRAY(SELECT k FROM unnest(p_keywords) k
		                                       WHERE k <> ALL (x.keywords) AND p_mode <> 2)
		 WHERE x.account_id = p_account AND x.id = p_mailbox
		   AND EXISTS (SELECT 1 FROM calc WHERE calc.changed)
		RETURNING x.highestmodseq),
	upd AS (
		UPDATE message m SET flags = calc.nflags, keywords = calc.nkeywords, modseq = mb.highestmodseq
		  FROM calc, mb
		 WHERE m.account_id = p_account AND m.mailbox_id = p_mailbox AND m.uid = calc.uid
		   AND calc.changed
		RETURNING m.uid)
	SELECT calc.uid,
	       CASE WHEN calc.changed THEN calc.nflags ELSE calc.flags END,
	       array_to_string(CASE WHEN calc.changed THEN calc.nkeywords ELSE calc.keywords END, ' '),
	       CASE WHEN calc.changed THEN (SELECT mb.highestmodseq FROM mb) ELSE calc.modseq END,
	       CASE WHEN calc.changed THEN 1 WHEN calc.failed THEN 2 ELSE 0 END
	  FROM calc ORDER BY calc.uid;
END;
$$;
