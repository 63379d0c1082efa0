-- 0005_tombstone_expiry.sql - tombstones expire into hole ranges.
--
-- Every UID below mailbox.uidnext is either a live message or a hole: a
-- UID whose message is gone.  SELECT builds its view from uidnext and the
-- holes (docs/architecture.md), so expiry may forget *when* a UID vanished
-- (its modseq) but never *that* it vanished.  Holes therefore come in two
-- kinds:
--   expunged        a tombstone: the UID and the modseq of its expunge, which
--                   `VANISHED (EARLIER)` and CHANGEDSINCE ... VANISHED need
--                   (RFC 7162 3.2.5.1, 3.2.6);
--   expunged_range  UIDs lo..hi are gone and their modseqs forgotten: every
--                   one of them is <= mailbox.vanished_floor.
-- expire_tombstones() moves old tombstones from the first kind to the
-- second and raises vanished_floor, atomically per mailbox, so a reader's
-- snapshot holds either the tombstones or the ranges with the raised
-- floor, never neither.  A resync from a modseq below the floor can then no
-- longer be answered from tombstones and reports every hole as vanished
-- instead: the note in RFC 7162 3.2.6 lets a server report UIDs the
-- client does not have (even ones that never existed); section 5.3 is
-- about how much of this state a server keeps, and for how long.

-- When the tombstone was written.  Existing rows get the time of this
-- migration (now() is stable, so the column is added without rewriting the
-- table) and expire one retention period later.  The writers of
-- tombstones (EXPUNGE, CLOSE, MOVE, RENAME INBOX) rely on the default.
ALTER TABLE expunged ADD COLUMN expunged_at timestamptz NOT NULL DEFAULT now();

-- Expiry asks "which tombstones anywhere are older than the cutoff?", a
-- question across accounts, oldest first, and it reads only a batch of them
-- per call: an index led by the time answers it by reading that batch and
-- nothing else, with the mailbox in the index so the scan needs no heap
-- visit.  This is the one index here not led by account_id (DESIGN.md): it
-- serves a housekeeping job that is about all accounts by nature; with the
-- schema distributed by account each shard simply has its own.
CREATE INDEX expunged_expiry_idx ON expunged (expunged_at) INCLUDE (account_id, mailbox_id);

-- Folded holes.  Ranges of one mailbox never overlap each other or a
-- tombstone: they are written only by expire_tombstones() and RENAME INBOX
-- (for a mailbox it creates), both holding the mailbox row lock, from UIDs
-- that were holes already.  Deleting a mailbox deletes its ranges with it
-- (RFC 7162 5.3: the tombstones of a deleted mailbox go too).
CREATE TABLE expunged_range (
	account_id bigint NOT NULL,
	mailbox_id bigint NOT NULL,
	lo         bigint NOT NULL,
	hi         bigint NOT NULL,
	CHECK (1 <= lo AND lo <= hi AND hi <= 4294967295),
	PRIMARY KEY (account_id, mailbox_id, lo),
	FOREIGN KEY (account_id, mailbox_id) REFERENCES mailbox (account_id, id) ON DELETE CASCADE
);

-- mailbox_holes(account, mailbox) -> every hole of the mailbox (tombstones
-- and ranges together) as a sorted list of disjoint, non-adjacent runs,
-- comma separated: "u" for a single UID, "lo:hi" for a run (lo < hi), e.g.
-- "3,5:9,12"; '' when there is none.  Runs are maximal: two runs are always
-- separated by at least one UID that is not a hole, so the string is as
-- short as the holes allow.  UIDs are decimal without leading zeros, no
-- spaces.  Holes at or above uidnext do not exist.
--
-- STABLE, so its query runs in the snapshot of the calling statement: a
-- SELECT that reads uidnext and mailbox_holes() in one statement sees the
-- tombstones and the ranges of one moment (invariant 2).
--
-- How: both kinds are read as (lo, hi) in UID order, merged from the two
-- primary keys (the mailbox condition stays outside the UNION ALL so that
-- the planner merges the two index scans instead of sorting), and one
-- window pass marks where a run starts (not touching the hole before it)
-- and ends (not touching the next one); only those rows make text.  This
-- relies on tombstones and ranges being disjoint, which the writers keep
-- (see expunged_range).  The pieces come from a subquery ordered by UID,
-- an order the window pass already produces (no sort in the plan), and
-- string_agg() takes them as they come.  An ORDER BY inside string_agg()
-- would say the same, but PostgreSQL 15 sorts the pieces again for it,
-- which doubles the cost for scattered tombstones.  Costs: see
-- docs/operations.md ("Tombstone expiry").  jit is off: the estimate for a
-- mailbox with a million tombstones would cross jit_above_cost, and
-- compiling costs more than the query.  Not PARALLEL SAFE: a function with
-- a SET clause must not run in a parallel worker, and a point query has
-- nothing to gain from one.
CREATE FUNCTION mailbox_holes(p_account bigint, p_mailbox bigint) RETURNS text
LANGUAGE sql STABLE SET jit = off AS $$
	SELECT coalesce(string_agg(b.piece, ''), '')
	  FROM (SELECT CASE WHEN a.first THEN a.lo::text ELSE '' END ||
	               CASE WHEN a.last AND NOT (a.first AND a.lo = a.hi) THEN ':' || a.hi::text
	                    ELSE '' END ||
	               CASE WHEN a.last AND NOT a.final THEN ',' ELSE '' END AS piece
	          FROM (SELECT u.lo, u.hi,
	                       coalesce(u.lo > lag(u.hi) OVER w + 1, true) AS first,
	                       coalesce(lead(u.lo) OVER w > u.hi + 1, true) AS last,
	                       lead(u.lo) OVER w IS NULL AS final
	                  FROM (SELECT e.account_id, e.mailbox_id, e.uid AS lo, e.uid AS hi
	                          FROM expunged e
	                        UNION ALL
	                        SELECT r.account_id, r.mailbox_id, r.lo, r.hi FROM expunged_range r) u
	                 WHERE u.account_id = p_account AND u.mailbox_id = p_mailbox
	                WINDOW w AS (ORDER BY u.lo)) a
	         WHERE a.first OR a.last
	         ORDER BY a.lo) b
$$;

-- expire_tombstones_in(account, mailbox, cutoff, limit) -> tombstones folded.
--
-- The work of expire_tombstones() in one mailbox: fold its tombstones
-- stamped at or before cutoff, at most about limit of them, in modseq
-- order, and raise its floor.  The caller normally holds the mailbox's row
-- lock already (expire_tombstones() decides whether to wait for it); it is
-- taken here again, which costs nothing then and keeps a direct call from
-- folding half of a concurrent expunge.
--
-- A mailbox's floor must never split one modseq: a client that synchronised
-- up to the floor may ask for everything above it, so every tombstone at or
-- below the floor is folded and every one above it kept.  Hence the cut is
-- a modseq, and whole modseqs are folded: one EXPUNGE of many messages
-- shares one modseq and is folded whole even when that exceeds limit
-- (progress over precision), and a tombstone a little younger than the
-- cutoff is folded with older ones of higher modseq (a writer may take the
-- lock after one that stamped a later time).
--
-- Ranges: each run of consecutive folded UIDs becomes a range, merged with
-- an existing range it touches, so the table stays as compact as the holes
-- (a mailbox has one range per stretch of holes between live messages, not
-- one per expiry run).
CREATE FUNCTION expire_tombstones_in(p_account bigint, p_mailbox bigint, p_cutoff timestamptz,
                                     p_limit bigint) RETURNS bigint
LANGUAGE plpgsql SET jit = off AS $$
DECLARE
	v_cut bigint;
	v_n   bigint;
	v_lo  bigint[];
	v_hi  bigint[];
	v_tlo bigint[] := '{}';
	v_thi bigint[] := '{}';
BEGIN
	PERFORM 1 FROM mailbox m WHERE m.account_id = p_account AND m.id = p_mailbox
	  FOR NO KEY UPDATE;
	IF NOT FOUND THEN
		RETURN 0;
	END IF;
	-- With the lock held, this statement's snapshot has every expunge of
	-- the mailbox that committed before us (READ COMMITTED).
	SELECT max(s.modseq) INTO v_cut
	  FROM (SELECT e.modseq FROM expunged e
	         WHERE e.account_id = p_account AND e.mailbox_id = p_mailbox
	           AND e.expunged_at <= p_cutoff
	         ORDER BY e.modseq LIMIT p_limit) s;
	IF v_cut IS NULL THEN
		RETURN 0;
	END IF;

	-- Runs of consecutive UIDs among the folded tombstones.
	WITH del AS (
		DELETE FROM expunged e
		 WHERE e.account_id = p_account AND e.mailbox_id = p_mailbox AND e.modseq <= v_cut
		RETURNING e.uid),
	runs AS (
		SELECT min(t.uid) AS lo, max(t.uid) AS hi, count(*) AS n
		  FROM (SELECT uid, uid - row_number() OVER (ORDER BY uid) AS g FROM del) t
		 GROUP BY t.g)
	SELECT array_agg(lo ORDER BY lo), array_agg(hi ORDER BY lo), coalesce(sum(n), 0)
	  INTO v_lo, v_hi, v_n
	  FROM runs;

	-- The existing ranges that touch a run: the one starting right after
	-- it and the one before it if it reaches up to it (ranges are disjoint
	-- from tombstones, so none lies inside a run).  Each is found by a
	-- probe of the primary key and deleted by key, so the work grows with
	-- the runs folded, not with the ranges the mailbox already has; a
	-- mailbox without ranges (its first expiry) skips the probes.
	IF EXISTS (SELECT 1 FROM expunged_range y
	            WHERE y.account_id = p_account AND y.mailbox_id = p_mailbox) THEN
		SELECT coalesce(array_agg(DISTINCT p.lo), '{}') INTO v_tlo
		  FROM unnest(v_lo, v_hi) AS u(lo, hi),
		       LATERAL (SELECT y.lo, y.hi FROM expunged_range y
		                 WHERE y.account_id = p_account AND y.mailbox_id = p_mailbox
		                   AND y.lo <= u.hi + 1
		                 ORDER BY y.lo DESC LIMIT 2) p
		 WHERE p.hi >= u.lo - 1;
	END IF;

	IF cardinality(v_tlo) = 0 THEN
		-- The runs are maximal already.
		INSERT INTO expunged_range (account_id, mailbox_id, lo, hi)
		SELECT p_account, p_mailbox, u.lo, u.hi FROM unnest(v_lo, v_hi) AS u(lo, hi);
	ELSE
		WITH t AS (
			DELETE FROM expunged_range x
			 WHERE x.account_id = p_account AND x.mailbox_id = p_mailbox
			   AND x.lo = ANY (v_tlo)
			RETURNING x.lo, x.hi)
		SELECT array_agg(t.lo), array_agg(t.hi) INTO v_tlo, v_thi FROM t;

		-- Runs and the ranges they touch, merged where they touch.
		INSERT INTO expunged_range (account_id, mailbox_id, lo, hi)
		SELECT p_account, p_mailbox, min(g.lo), max(g.hi)
		  FROM (SELECT b.lo, b.hi, sum(b.brk) OVER (ORDER BY b.lo ROWS UNBOUNDED PRECEDING) AS grp
		          FROM (SELECT a.lo, a.hi,
		                       CASE WHEN a.lo <= lag(a.hi) OVER (ORDER BY a.lo) + 1
		                            THEN 0 ELSE 1 END AS brk
		                  FROM (SELECT u.lo, u.hi FROM unnest(v_lo, v_hi) AS u(lo, hi)
		                        UNION ALL
		                        SELECT w.lo, w.hi FROM unnest(v_tlo, v_thi) AS w(lo, hi)) a) b) g
		 GROUP BY g.grp;
	END IF;

	-- RFC 7162 3.2.6 note, 5.3: below the floor, a resync is answered
	-- from the holes, not from tombstones.
	UPDATE mailbox SET vanished_floor = greatest(vanished_floor, v_cut)
	 WHERE account_id = p_account AND id = p_mailbox;
	RETURN v_n;
END
$$;

-- expire_tombstones(retention, limit) -> the number of tombstones folded.
--
-- Folds the tombstones older than retention into expunged_range and raises
-- each affected mailbox's vanished_floor to at least the highest modseq
-- folded there (expire_tombstones_in()).  Call it until it returns 0.
--
-- Work per call: about p_limit tombstones.  It picks the mailboxes of the
-- p_limit oldest tombstones (expunged_expiry_idx) and folds, mailbox by
-- mailbox, the old tombstones of each in modseq order until about p_limit
-- are done (whole modseqs, see above).
--
-- Locks.  A transaction-level advisory lock lets one call run at a time
-- (several storaged replicas, an operator's imapctl); the others wait for
-- it, one batch at most.  Each mailbox's row is locked FOR NO KEY UPDATE
-- before its tombstones are read, like every writer of the mailbox
-- (DESIGN.md invariant 1), so a concurrent expunge is folded whole or not
-- at all.  The call waits for the row of its first mailbox (the one with
-- the oldest tombstone, so the oldest are never starved by busier ones),
-- while it holds no other row; the rows of the others are taken only if
-- free (SKIP LOCKED), a busy one coming back in a later call.  So a call
-- never waits for a row while holding one, and never closes a deadlock
-- cycle.  While it waits in a row's queue, a deadlock that writers make
-- among themselves (two MOVEs locking the same two mailboxes in opposite
-- orders) may pick it as the victim; it then skips that mailbox instead of
-- failing.  All locks are held until the caller's transaction ends: call
-- it in a transaction of its own (autocommit) at READ COMMITTED, so each
-- statement inside sees what the lock holder before it committed.
CREATE FUNCTION expire_tombstones(p_retention interval, p_limit integer) RETURNS bigint
LANGUAGE plpgsql SET jit = off AS $$
DECLARE
	v_cutoff timestamptz;
	v_done   bigint := 0;
	v_first_done boolean := false;
	v_got    boolean;
	r        record;
BEGIN
	IF p_retention IS NULL OR p_retention < interval '0' THEN
		RAISE EXCEPTION 'retention must be a non-negative interval'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF p_limit IS NULL OR p_limit < 1 THEN
		RAISE EXCEPTION 'limit must be at least 1' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	-- 'tombexp1': one expiry at a time.
	PERFORM pg_advisory_xact_lock(x'746f6d6265787031'::bigint);
	v_cutoff := now() - p_retention;

	FOR r IN
		SELECT o.account_id, o.mailbox_id, min(o.expunged_at) AS oldest
		  FROM (SELECT e.account_id, e.mailbox_id, e.expunged_at FROM expunged e
		         WHERE e.expunged_at <= v_cutoff
		         ORDER BY e.expunged_at LIMIT p_limit) o
		 GROUP BY o.account_id, o.mailbox_id
		 ORDER BY oldest
	LOOP
		EXIT WHEN v_done >= p_limit;
		IF NOT v_first_done THEN
			v_first_done := true;
			BEGIN
				PERFORM 1 FROM mailbox m
				  WHERE m.account_id = r.account_id AND m.id = r.mailbox_id
				  FOR NO KEY UPDATE;
				v_got := FOUND;
			EXCEPTION WHEN deadlock_detected THEN
				v_got := false;	-- the victim of a deadlock between writers
			END;
		ELSE
			PERFORM 1 FROM mailbox m
			  WHERE m.account_id = r.account_id AND m.id = r.mailbox_id
			  FOR NO KEY UPDATE SKIP LOCKED;
			v_got := FOUND;
		END IF;
		CONTINUE WHEN NOT v_got;	-- busy, or deleted meanwhile
		v_done := v_done + expire_tombstones_in(r.account_id, r.mailbox_id, v_cutoff,
		                                        p_limit - v_done);
	END LOOP;
	RETURN v_done;
END
$$;
