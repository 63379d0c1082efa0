/* EXPUNGE (RFC 3501 6.4.3), UID EXPUNGE (RFC 4315 2.1), and the silent
 * expunge of CLOSE (RFC 3501 6.4.2).
 *
 * One statement takes a new modseq from the mailbox counter, deletes the
 * \Deleted messages and leaves a tombstone per UID with that modseq
 * (DESIGN.md invariants 1 and 3), so other sessions and later resyncs see
 * exactly these UIDs vanish.
 *
 * After ENABLE QRESYNC the client is told with one VANISHED line instead of
 * EXPUNGE responses, and the tagged OK carries the new HIGHESTMODSEQ when
 * something was expunged (RFC 7162 3.2.7, 3.2.9); CLOSE says nothing
 * (3.2.8).
 */
#include <stdio.h>

#include "imapd/mailbox.h"
#include "imapd/mailview.h"
#include "lib/pg.h"

struct expunge_state {
	struct cmd *c;
	bool silent;
	int count;
	void (*then)(struct cmd *c);
};

/* The \Deleted messages of the set ($3 IS NULL: the whole mailbox, through
 * the partial index on \Deleted). */
static const char expunge_sql[] =
	"WITH target AS ("
	"  SELECT x.uid FROM message x"
	"   WHERE $3::bigint[] IS NULL AND x.account_id = $1 AND x.mailbox_id = $2"
	"     AND x.flags & 8 <> 0"
	"  UNION ALL"
	"  SELECT x.uid FROM " UID_RANGES_JOIN("x", "$3", "$4", "$5", "$6") " WHERE x.flags & 8 <> 0), "
	"mb AS ("
	"  UPDATE mailbox SET highestmodseq = highestmodseq + 1"
	"   WHERE account_id = $1 AND id = $2"
	"     AND EXISTS (SELECT 1 FROM target)"
	"  RETURNING highestmodseq), "
	"del AS ("
	"  DELETE FROM message m USING mb"
	"   WHERE m.account_id = $1 AND m.mailbox_id = $2 AND m.flags & 8 <> 0"
	"     AND m.uid IN (SELECT uid FROM target)"
	"  RETURNING m.uid, mb.highestmodseq AS modseq), "
	"tomb AS ("
	"  INSERT INTO expunged (account_id, mailbox_id, uid, modseq)"
	"  SELECT $1, $2, uid, modseq FROM del"
	"  ON CONFLICT (account_id, mailbox_id, uid) DO UPDATE SET modseq = EXCLUDED.modseq) "
	"SELECT uid, modseq FROM del ORDER BY uid";

static void expunged_cb(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	struct expunge_state *st = arg;
	struct cmd *c = st->c;
	struct session *s = c->s;
	struct selected *sel = s->sel;
	session_ref(s);
	if (cmd_db_failed(c, err)) {
		session_unref(s);
		return;
	}
	int n = PQntuples(res);
	st->count = n;
	struct uidset vanished = UIDSET_INIT;
	for (int i = 0; i < n; i++) {
		uint32_t uid = (uint32_t)pg_u64(res, i, 0);
		if (i == 0) {
			sel_wrote(sel, pg_u64(res, i, 1));
			mailbox_notify_kind(s, sel->mailbox_id, pg_u64(res, i, 1), "expunge");
		}
		if (st->silent) {
			uidset_remove(&sel->uids, uid);
			continue;
		}
		if (sess_qresync(s)) {
			if (uidset_remove(&sel->uids, uid))
				uidset_add(&vanished, uid);
			uidset_remove(&sel->recent, uid);
			uidset_remove(&sel->pending_expunge, uid);
			continue;
		}
		uint32_t seq = uidset_seq(&sel->uids, uid);
		if (seq == 0)
			continue;
		session_printf(s, "* %u EXPUNGE\r\n", seq);
		uidset_remove(&sel->uids, uid);
		uidset_remove(&sel->recent, uid);
		uidset_remove(&sel->pending_expunge, uid);
	}
	sel_write_vanished(s, &vanished, false);
	uidset_free(&vanished);
	if (uidset_count(&sel->pending_expunge) == 0)
		sel->pending_expunge_modseq = 0;
	if (n > 0)
		log_debug(&s->log, "expunged %d messages from %s", n, sel->name);
	st->then(c);
	session_unref(s);
}

/* Run the expunge; ranges NULL means every \Deleted message. */
void expunge_run(struct cmd *c, const struct uid_ranges *ranges, bool silent, void (*then)(struct cmd *c))
{
	struct session *s = c->s;
	struct expunge_state *st = arena_zalloc(c->arena, sizeof(*st));
	st->c = c;
	st->silent = silent;
	st->then = then;
	c->state = st;
	char *lo = NULL, *hi = NULL, *min = NULL, *max = NULL;
	if (ranges != NULL) {
		uid_ranges_sql(ranges, c->arena, &lo, &hi);
		uid_ranges_bounds(ranges, c->arena, &min, &max);
	}
	const char *params[6] = {
		arena_printf(c->arena, "%lld", (long long)s->account_id),
		arena_printf(c->arena, "%lld", (long long)s->sel->mailbox_id),
		lo, hi, min, max,
	};
	c->pg = pg_query(s->w->pg, expunge_sql, 6, params, NULL, NULL, 0, expunged_cb, st);
}

static void expunge_reply(struct cmd *c)
{
	struct expunge_state *st = c->state;
	struct session *s = c->s;
	/* RFC 7162 3.2.7/3.2.9: with QRESYNC, the new HIGHESTMODSEQ when
	 * something was expunged; everything below it has been told now. */
	if (st != NULL && st->count > 0 && sess_qresync(s) && s->sel != NULL)
		cmd_ok(c, "[HIGHESTMODSEQ %llu] %sExpunge completed",
		       (unsigned long long)sel_safe_modseq(s->sel), c->uid ? "UID " : "");
	else
		cmd_ok(c, "%sExpunge completed", c->uid ? "UID " : "");
}

static void expunge_done(struct cmd *c)
{
	/* Changes from elsewhere may be told now too: EXPUNGE is not a
	 * sequence-number command (RFC 3501 7.4.1). */
	if (sel_complete(c, true, expunge_reply) == CMD_DONE)
		cmd_done(c);
}

enum cmd_result cmd_expunge(struct cmd *c)
{
	struct session *s = c->s;
	if (s->sel->readonly) {
		cmd_no(c, "[READ-ONLY] Mailbox is read-only");
		return CMD_DONE;
	}
	if (!c->uid) {
		if (c->nargs != 0) {
			cmd_bad(c, "EXPUNGE takes no arguments");
			return CMD_DONE;
		}
		expunge_run(c, NULL, false, expunge_done);
		return CMD_PENDING;
	}
	if (c->nargs != 1) {
		cmd_bad(c, "UID EXPUNGE takes a UID set");
		return CMD_DONE;
	}
	struct uid_ranges r;
	const char *err = NULL;
	if (sel_resolve(s, &c->args[0], true, c->arena, &r, &err) < 0) {
		cmd_bad(c, "%s", err);
		return CMD_DONE;
	}
	if (r.n == 0)
		return sel_complete(c, true, expunge_reply);
	expunge_run(c, &r, false, expunge_done);
	return CMD_PENDING;
}
