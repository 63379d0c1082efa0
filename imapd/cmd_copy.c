/* COPY, UID COPY (RFC 3501 6.4.7), MOVE, UID MOVE (RFC 6851), with COPYUID
 * (RFC 4315).
 *
 * One statement: the destination's counter gives the new UIDs (in source
 * UID order) and one modseq; the copies point at the same blobs, so no
 * message bytes are copied.  MOVE also deletes the sources and leaves their
 * tombstones under a new modseq of the source mailbox, in the same
 * statement, so a crash can never leave a message in both or neither.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imapd/mailbox.h"
#include "imapd/mailview.h"
#include "lib/pg.h"

struct copy_state {
	struct cmd *c;
	bool move;
};

#define COPY_SQL_HEAD \
	"WITH src AS (" \
	"  SELECT m.uid, m.flags, m.keywords, m.internaldate, m.size, m.blob_hash, m.tenant_id" \
	"    FROM " UID_RANGES_JOIN("m", "$4", "$5", "$6", "$7") "), " \
	"n AS (SELECT count(*) AS cnt FROM src), " \
	"dst AS (" \
	"  UPDATE mailbox SET uidnext = uidnext + (SELECT cnt FROM n)," \
	"         highestmodseq = highestmodseq + 1," \
	"         keywords = keywords || ARRAY(SELECT DISTINCT k FROM src, unnest(src.keywords) k" \
	"                                       WHERE k <> ALL (mailbox.keywords))" \
	"   WHERE account_id = $1 AND name = $3 AND (SELECT cnt FROM n) > 0" \
	"  RETURNING id, uidnext - (SELECT cnt FROM n) AS first_uid, highestmodseq, uidvalidity), " \
	"ins AS (" \
	"  INSERT INTO message (account_id, mailbox_id, uid, modseq, flags, keywords, internaldate," \
	"                       size, blob_hash, tenant_id)" \
	"  SELECT $1, dst.id, dst.first_uid + row_number() OVER (ORDER BY src.uid) - 1," \
	"         dst.highestmodseq, src.flags, src.keywords, src.internaldate, src.size," \
	"         src.blob_hash, src.tenant_id" \
	"    FROM src, dst RETURNING 1) "

static const char copy_sql[] =
	COPY_SQL_HEAD
	"SELECT (SELECT uidvalidity FROM mailbox WHERE account_id = $1 AND name = $3),"
	"       (SELECT first_uid FROM dst), (SELECT cnt FROM n),"
	"       coalesce((SELECT string_agg(uid::text, ',' ORDER BY uid) FROM src), ''),"
	"       (SELECT id FROM dst), NULL::bigint, (SELECT highestmodseq FROM dst)";

static const char move_sql[] =
	COPY_SQL_HEAD
	", srcmb AS ("
	"  UPDATE mailbox SET highestmodseq = highestmodseq + 1"
	"   WHERE account_id = $1 AND id = $2 AND EXISTS (SELECT 1 FROM dst)"
	"  RETURNING highestmodseq), "
	"del AS ("
	"  DELETE FROM message m USING srcmb"
	"   WHERE m.account_id = $1 AND m.mailbox_id = $2 AND m.uid IN (SELECT uid FROM src)"
	"  RETURNING m.uid), "
	"tomb AS ("
	"  INSERT INTO expunged (account_id, mailbox_id, uid, modseq)"
	"  SELECT $1, $2, uid, srcmb.highestmodseq FROM src, srcmb"
	"  ON CONFLICT (account_id, mailbox_id, uid) DO UPDATE SET modseq = EXCLUDED.modseq) "
	"SELECT (SELECT uidvalidity FROM mailbox WHERE account_id = $1 AND name = $3),"
	"       (SELECT first_uid FROM dst), (SELECT cnt FROM n),"
	"       coalesce((SELECT string_agg(uid::text, ',' ORDER BY uid) FROM src), ''),"
	"       (SELECT id FROM dst), (SELECT highestmodseq FROM srcmb),"
	"       (SELECT highestmodseq FROM dst)";

static void copied_cb(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	struct copy_state *st = arg;
	struct cmd *c = st->c;
	struct session *s = c->s;
	struct selected *sel = s->sel;
	session_ref(s);
	c->pg = NULL;
	const char *what = st->move ? "Move" : "Copy";
	if (err != NULL) {
		if (strcmp(sqlstate, "23514") == 0)
			cmd_no(c, "[LIMIT] Destination mailbox is full");
		else
			cmd_unavailable(c, err);
		cmd_done(c);
		session_unref(s);
		return;
	}
	if (PQgetisnull(res, 0, 0)) {
		/* RFC 3501 6.4.7: TRYCREATE when the destination is missing. */
		cmd_no(c, "[TRYCREATE] No such mailbox");
		cmd_done(c);
		session_unref(s);
		return;
	}
	uint32_t uidvalidity = (uint32_t)pg_u64(res, 0, 0);
	uint64_t count = pg_u64(res, 0, 2);
	if (count == 0) {
		/* Nothing matched (all gone meanwhile): nothing to report. */
		cmd_ok(c, "%s%s completed", c->uid ? "UID " : "", what);
		cmd_done(c);
		session_unref(s);
		return;
	}
	uint32_t first = (uint32_t)pg_u64(res, 0, 1);
	mailbox_notify(s, (int64_t)pg_u64(res, 0, 4), pg_u64(res, 0, 6));
	if (st->move)
		mailbox_notify(s, sel->mailbox_id, pg_u64(res, 0, 5));
	/* The source UIDs in ascending order; the new ones follow that order. */
	uint32_t *src = arena_alloc(c->arena, (size_t)count * sizeof(uint32_t));
	size_t nsrc = 0;
	for (const char *p = PQgetvalue(res, 0, 3); *p && nsrc < count;) {
		char *end;
		src[nsrc++] = (uint32_t)strtoul(p, &end, 10);
		p = *end == ',' ? end + 1 : end;
	}
	struct buf code = BUF_INIT;
	buf_printf(&code, "COPYUID %u ", uidvalidity);
	seqset_write_array(&code, src, nsrc);
	buf_printf(&code, " %u", first);
	if (count > 1)
		buf_printf(&code, ":%llu", (unsigned long long)(first + count - 1));
	if (!st->move) {
		cmd_ok(c, "[%s] %s%s completed", buf_ptr(&code), c->uid ? "UID " : "", what);
		buf_free(&code);
		cmd_done(c);
		session_unref(s);
		return;
	}
	/* RFC 6851 4.3: COPYUID in an untagged OK, then the expunges. */
	session_printf(s, "* OK [%s] Moved\r\n", buf_ptr(&code));
	buf_free(&code);
	sel_own_modseq(sel, pg_u64(res, 0, 5));
	for (size_t i = 0; i < nsrc; i++) {
		uint32_t seq = uidset_seq(&sel->uids, src[i]);
		if (seq == 0)
			continue;
		session_printf(s, "* %u EXPUNGE\r\n", seq);
		uidset_remove(&sel->uids, src[i]);
		uidset_remove(&sel->recent, src[i]);
		uidset_remove(&sel->pending_expunge, src[i]);
	}
	cmd_ok(c, "%s%s completed", c->uid ? "UID " : "", what);
	cmd_done(c);
	session_unref(s);
}

static enum cmd_result copy_or_move(struct cmd *c, bool move)
{
	struct session *s = c->s;
	const char *err = NULL;
	if (c->nargs != 2) {
		cmd_bad(c, "%s takes a message set and a mailbox", c->name);
		return CMD_DONE;
	}
	struct uid_ranges r;
	if (sel_resolve(s, &c->args[0], c->uid, c->arena, &r, &err) < 0) {
		cmd_bad(c, "%s", err);
		return CMD_DONE;
	}
	struct str nm;
	if (!mailbox_arg(c, &c->args[1], 0, &nm))
		return CMD_DONE;
	char *dest = (char *)nm.p;
	if (move && s->sel->readonly) {
		cmd_no(c, "[READ-ONLY] Mailbox is read-only");
		return CMD_DONE;
	}
	if (move && strcmp(dest, s->sel->name) == 0) {
		cmd_no(c, "[CANNOT] Source and destination are the same mailbox");
		return CMD_DONE;
	}
	struct copy_state *st = arena_zalloc(c->arena, sizeof(*st));
	st->c = c;
	st->move = move;
	char *lo, *hi, *min, *max;
	uid_ranges_sql(&r, c->arena, &lo, &hi);
	uid_ranges_bounds(&r, c->arena, &min, &max);
	const char *params[7] = {
		arena_printf(c->arena, "%lld", (long long)s->account_id),
		arena_printf(c->arena, "%lld", (long long)s->sel->mailbox_id),
		dest, lo, hi, min, max,
	};
	c->pg = pg_query(s->w->pg, move ? move_sql : copy_sql, 7, params, NULL, NULL, 0, copied_cb, st);
	return CMD_PENDING;
}

enum cmd_result cmd_copy(struct cmd *c)
{
	return copy_or_move(c, false);
}

enum cmd_result cmd_move(struct cmd *c)
{
	return copy_or_move(c, true);
}
