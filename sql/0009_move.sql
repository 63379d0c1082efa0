-- MOVE as one call that is exact under concurrency (RFC 6851, RFC 7162).
--
-- move_messages() first locks the source and the destination mailbox rows,
-- in id order, so two MOVEs in opposite directions cannot deadlock (as a
-- single statement, which locks the destination first and the source
-- second, could).  With both locks held, no message of either mailbox can
-- change (every writer takes its mailbox's lock first, DESIGN.md invariant
-- 1), and the statement that follows reads a fresh snapshot: it copies the
-- messages' current flags, and a message another session just moved or
-- expunged is not copied a second time.
--
-- Result, one row: destination uidvalidity (NULL: no such mailbox, answer
-- TRYCREATE), first new UID, number moved, the source UIDs moved
-- ("1,2,5"), destination id, source modseq (of the expunge), destination
-- modseq (of the insert).
CREATE FUNCTION move_messages(p_account bigint, p_src bigint, p_dst_name text, p_lo bigint[],
                              p_hi bigint[], p_min bigint, p_max bigint)
RETURNS TABLE (uidvalidity bigint, first_uid bigint, cnt bigint, src_uids text, dst_id bigint,
               src_modseq bigint, dst_modseq bigint)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	v_dst bigint;
BEGIN
	SELECT mb.id INTO v_dst FROM mailbox mb WHERE mb.account_id = p_account AND mb.name = p_dst_name;
	IF NOT FOUND THEN
		RETURN QUERY SELECT NULL::bigint, NULL::bigint, 0::bigint, ''::text, NULL::bigint,
		                    NULL::bigint, NULL::bigint;
		RETURN;
	END IF;
	PERFORM 1 FROM mailbox mb WHERE mb.account_id = p_account AND mb.id IN (p_src, v_dst)
	  ORDER BY mb.id FOR UPDATE;
	-- This statement's snapshot is taken now, with both locks held.
	RETURN QUERY
	WITH src AS (
		SELECT m.uid, m.flags, m.keywords, m.internaldate, m.size, m.blob_hash, m.tenant_id
		  FROM unnest(p_lo, p_hi) r(lo, hi)
		  JOIN message m ON m.account_id = p_account AND m.mailbox_id = p_src
		                AND m.uid BETWEEN r.lo AND r.hi AND m.uid BETWEEN p_min AND p_max),
	n AS (SELECT count(*) AS c FROM src),
	dst AS (
		UPDATE mailbox x SET uidnext = x.uidnext + (SELECT c FROM n),
		       highestmodseq = x.highestmodseq + 1,
		       keywords = x.keywords || ARRAY(SELECT DISTINCT k FROM src, unnest(src.keywords) k
		                                       WHERE k <> ALL (x.keywords))
		 WHERE x.account_id = p_account AND x.id = v_dst AND (SELECT c FROM n) > 0
		RETURNING x.id, x.uidnext - (SELECT c FROM n) AS first, x.highestmodseq, x.uidvalidity),
	ins AS (
		INSERT INTO message (account_id, mailbox_id, uid, modseq, flags, keywords, internaldate,
		                     size, blob_hash, tenant_id)
		SELECT p_account, dst.id, dst.first + row_number() OVER (ORDER BY src.uid) - 1,
		       dst.highestmodseq, src.flags, src.keywords, src.internaldate, src.size,
		       src.blob_hash, src.tenant_id
		  FROM src, dst RETURNING 1),
	srcmb AS (
		UPDATE mailbox x SET highestmodseq = x.highestmodseq + 1
		 WHERE x.account_id = p_account AND x.id = p_src AND EXISTS (SELECT 1 FROM dst)
		RETURNING x.highestmodseq),
	del AS (
		DELETE FROM message m USING srcmb
		 WHERE m.account_id = p_account AND m.mailbox_id = p_src AND m.uid IN (SELECT s.uid FROM src s)
		RETURNING m.uid),
	tomb AS (
		INSERT INTO expunged (account_id, mailbox_id, uid, modseq)
		SELECT p_account, p_src, s.uid, srcmb.highestmodseq FROM src s, srcmb
		ON CONFLICT (account_id, mailbox_id, uid) DO UPDATE SET modseq = EXCLUDED.modseq)
	SELECT (SELECT x.uidvalidity FROM mailbox x WHERE x.account_id = p_account AND x.id = v_dst),
	       (SELECT dst.first FROM dst), (SELECT c FROM n),
	       coalesce((SELECT string_agg(s.uid::text, ',' ORDER BY s.uid) FROM src s), ''),
	       (SELECT dst.id FROM dst), (SELECT srcmb.highestmodseq FROM srcmb),
	       (SELECT dst.highestmodseq FROM dst);
END;
$$;
