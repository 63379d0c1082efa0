/* COPY, UID COPY (RFC 3501 6.4.7), MOVE, UID MOVE (RFC 6851), with COPYUID
 * (RFC 4315).
 *
 * One statement: the destination's counter gives the new UIDs (in source
 * UID order) and one modseq; the copies point at the same blobs, so no
 * message bytes are copied.  MOVE also deletes the sources and leaves their
 * tombstones under a new modseq of the source mailbox, in the same
 * transaction, so a crash can never leave a message in both or neither;
 * it is one call of move_messages() (sql/0009_move.sql), which locks both
 * mailboxes in id order first so opposite MOVEs cannot deadlock and two
 * MOVEs of one message cannot both copy it.
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
	bool moved;		/* messages left the selected mailbox */
	char *ok;		/* tagged OK text for COPY */
};

static void copy_reply(struct cmd *c)
{
	struct copy_state *st = c->state;
	struct session *s = c->s;
	if (st->ok != NULL) {
		cmd_ok(c, "%s", st->ok);
	} else if (st->moved && sess_qresync(s) && s->sel != NULL) {
		/* RFC 6851 4.4: the new HIGHESTMODSEQ of the source. */
		cmd_ok(c, "[HIGHESTMODSEQ %llu] %sMove completed", (unsigned long long)sel_safe_modseq(s->sel),
		       c->uid ? "UID " : "");
	} else {
		cmd_ok(c, "%s%s completed", c->uid ? "UID " : "", st->move ? "Move" : "Copy");
	}
}

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

/* MOVE locks both mailboxes in id order before it reads anything:
 * sql/0009_move.sql. */
static const char move_sql[] =
	"SELECT uidvalidity, first_uid, cnt, src_uids, dst_id, src_modseq, dst_modseq"
	"  FROM move_messages($1, $2, $3, $4::bigint[], $5::bigint[], $6, $7)";

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
	mailbox_notify_kind(s, (int64_t)pg_u64(res, 0, 4), pg_u64(res, 0, 6), "append");
	/* COPY into the selected mailbox: the new messages reach the view by
	 * the sync before the tagged OK. */
	if ((int64_t)pg_u64(res, 0, 4) == sel->mailbox_id)
		sel->dirty = true;
	if (st->move)
		mailbox_notify_kind(s, sel->mailbox_id, pg_u64(res, 0, 5), "expunge");
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
		st->ok = arena_printf(c->arena, "[%s] %s%s completed", buf_ptr(&code), c->uid ? "UID " : "", what);
		buf_free(&code);
		if (sel_complete(c, c->uid, copy_reply) == CMD_DONE)
			cmd_done(c);
		session_unref(s);
		return;
	}
	/* RFC 6851 4.3: COPYUID in an untagged OK, then the expunges. */
	session_printf(s, "* OK [%s] Moved\r\n", buf_ptr(&code));
	buf_free(&code);
	sel_wrote(sel, pg_u64(res, 0, 5));
	/* RFC 6851 4.4 / RFC 7162 3.2.10: VANISHED instead of EXPUNGE once
	 * QRESYNC is enabled. */
	struct uidset vanished = UIDSET_INIT;
	for (size_t i = 0; i < nsrc; i++) {
		uint32_t seq = uidset_seq(&sel->uids, src[i]);
		if (seq == 0)
			continue;
		if (sess_qresync(s))
			uidset_add(&vanished, src[i]);
		else
			session_printf(s, "* %u EXPUNGE\r\n", seq);
		uidset_remove(&sel->uids, src[i]);
		uidset_remove(&sel->recent, src[i]);
		uidset_remove(&sel->pending_expunge, src[i]);
	}
	sel_write_vanished(s, &vanished, false);
	uidset_free(&vanished);
	if (uidset_count(&sel->pending_expunge) == 0)
		sel->pending_expunge_modseq = 0;
	st->moved = true;
	if (sel_complete(c, c->uid, copy_reply) == CMD_DONE)
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
	c->state = st;
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
