/* SELECT and EXAMINE (RFC 3501 6.3.1, 6.3.2).
 *
 * One statement reads, in one snapshot, the mailbox's counters and the
 * holes in its UID space (the tombstones): every UID below uidnext that is
 * not a hole is a live message, because UIDs are only taken together with
 * the insert of their message (DESIGN.md invariant 1).  The session's view
 * is built from uidnext and the holes as ranges, so SELECT costs grow with
 * the expunges, not with the mailbox.  SELECT (not EXAMINE) also claims
 * \Recent for the messages no session has seen yet.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imapd/mailbox.h"
#include "imapd/mailview.h"
#include "lib/pg.h"

struct select_state {
	struct cmd *c;
	char *name;
	bool readonly;
};

static void build_view(struct selected *sel, uint32_t uidnext, const char *holes)
{
	uint32_t start = 1;
	const char *p = holes;
	while (*p) {
		char *end;
		unsigned long h = strtoul(p, &end, 10);
		if (end == p)
			break;
		if (h >= start && h < uidnext) {
			if (h > start)
				uidset_add_range(&sel->uids, start, (uint32_t)h - 1);
			start = (uint32_t)h + 1;
		}
		p = *end == ',' ? end + 1 : end;
	}
	if (uidnext > start)
		uidset_add_range(&sel->uids, start, uidnext - 1);
}

static void selected_cb(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	struct select_state *st = arg;
	struct cmd *c = st->c;
	struct session *s = c->s;
	session_ref(s);
	if (cmd_db_failed(c, err)) {
		session_unref(s);
		return;
	}
	if (PQntuples(res) != 1) {
		cmd_no(c, "[NONEXISTENT] No such mailbox");
		cmd_done(c);
		session_unref(s);
		return;
	}
	int64_t id = (int64_t)pg_u64(res, 0, 0);
	uint32_t uidvalidity = (uint32_t)pg_u64(res, 0, 1);
	uint32_t uidnext = (uint32_t)pg_u64(res, 0, 2);
	uint64_t highest = pg_u64(res, 0, 3);
	const char *kw = PQgetvalue(res, 0, 4);

	struct selected *sel = sel_new(id, st->name, uidvalidity, st->readonly);
	sel->known_modseq = highest;
	free(sel->keywords);
	sel->keywords = xstrdup(kw);
	build_view(sel, uidnext, PQgetvalue(res, 0, 7));
	if (!PQgetisnull(res, 0, 5)) {
		uint32_t prev = (uint32_t)pg_u64(res, 0, 5), now = (uint32_t)pg_u64(res, 0, 6);
		if (now > prev)
			uidset_add_range(&sel->recent, prev + 1, now);
	}
	s->sel = sel;
	s->state = STATE_SELECTED;

	uint32_t exists = uidset_count(&sel->uids);
	uint32_t recent = sel_recent_count(sel);
	const char *sp = kw[0] ? " " : "";
	session_printf(s, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft%s%s)\r\n", sp, kw);
	if (st->readonly)
		session_printf(s, "* OK [PERMANENTFLAGS ()] No permanent flags permitted\r\n");
	else
		session_printf(s, "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft%s%s \\*)] "
			       "Flags permitted\r\n", sp, kw);
	session_printf(s, "* %u EXISTS\r\n", exists);
	session_printf(s, "* %u RECENT\r\n", recent);
	if (!PQgetisnull(res, 0, 8)) {
		uint32_t seq = uidset_seq(&sel->uids, (uint32_t)pg_u64(res, 0, 8));
		if (seq != 0)
			session_printf(s, "* OK [UNSEEN %u] First unseen\r\n", seq);
	}
	session_printf(s, "* OK [UIDVALIDITY %u] UIDs valid\r\n", uidvalidity);
	session_printf(s, "* OK [UIDNEXT %u] Predicted next UID\r\n", uidnext);
	cmd_ok(c, "[%s] %s completed", st->readonly ? "READ-ONLY" : "READ-WRITE",
	       st->readonly ? "EXAMINE" : "SELECT");
	log_debug(&s->log, "selected %s: %u messages, %zu ranges", st->name, exists, sel->uids.n);
	cmd_done(c);
	session_unref(s);
}

static enum cmd_result do_select(struct cmd *c, bool readonly)
{
	struct session *s = c->s;
	struct str nm;
	if (c->nargs != 1) {
		cmd_bad(c, "%s takes a mailbox name", readonly ? "EXAMINE" : "SELECT");
		return CMD_DONE;
	}
	if (!mailbox_arg(c, &c->args[0], 0, &nm))
		return CMD_DONE;
	char *name = (char *)nm.p;
	/* RFC 3501 6.3.1: selecting closes the current mailbox first, also
	 * when the new SELECT fails; no implicit expunge. */
	if (s->sel != NULL) {
		sel_free(&s->sel);
		s->state = STATE_AUTH;
	}
	struct select_state *st = arena_zalloc(c->arena, sizeof(*st));
	st->c = c;
	st->name = name;
	st->readonly = readonly;
	char *acct = arena_printf(c->arena, "%lld", (long long)s->account_id);
	const char *params[3] = { acct, name, readonly ? "0" : "1" };
	c->pg = pg_query(s->w->pg,
			 "WITH claim AS ("
			 "  UPDATE mailbox SET recent_prev = recent_uid, recent_uid = uidnext - 1"
			 "   WHERE account_id = $1 AND name = $2 AND $3::int = 1"
			 "     AND recent_uid < uidnext - 1"
			 "  RETURNING recent_prev, recent_uid) "
			 "SELECT m.id, m.uidvalidity, m.uidnext, m.highestmodseq,"
			 "       array_to_string(m.keywords, ' '),"
			 "       (SELECT recent_prev FROM claim), (SELECT recent_uid FROM claim),"
			 "       coalesce((SELECT string_agg(e.uid::text, ',' ORDER BY e.uid) FROM expunged e"
			 "                  WHERE e.account_id = $1 AND e.mailbox_id = m.id), ''),"
			 "       (SELECT min(x.uid) FROM message x"
			 "         WHERE x.account_id = $1 AND x.mailbox_id = m.id AND x.flags & 1 = 0)"
			 "  FROM mailbox m WHERE m.account_id = $1 AND m.name = $2",
			 3, params, NULL, NULL, 0, selected_cb, st);
	return CMD_PENDING;
}

enum cmd_result cmd_select(struct cmd *c)
{
	return do_select(c, false);
}

enum cmd_result cmd_examine(struct cmd *c)
{
	return do_select(c, true);
}
