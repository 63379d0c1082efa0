/* STORE and UID STORE (RFC 3501 6.4.6).
 *
 * One statement per command: it takes one new modseq from the mailbox
 * counter only if some message really changes (DESIGN.md invariant 1),
 * updates those messages to it, records new keywords on the mailbox (for
 * FLAGS/PERMANENTFLAGS), and returns the flags of every message in the set
 * for the untagged FETCH responses.
 */
#include <stdio.h>
#include <string.h>

#include "imapd/mailbox.h"
#include "imapd/mailview.h"
#include "lib/pg.h"

enum store_mode { STORE_SET, STORE_ADD, STORE_REMOVE };

struct store_state {
	struct cmd *c;
	bool silent;
};

/* $1 account, $2 mailbox, $3/$4 UID ranges, $5 flag bits, $6 keywords */

static const char *const change_cond[] = {
	[STORE_SET] = "(m.flags <> $5::int OR NOT (m.keywords @> $6::text[] AND m.keywords <@ $6::text[]))",
	[STORE_ADD] = "((m.flags | $5::int) <> m.flags OR NOT m.keywords @> $6::text[])",
	[STORE_REMOVE] = "((m.flags & $5::int) <> 0 OR m.keywords && $6::text[])",
};

static const char *const new_flags[] = {
	[STORE_SET] = "$5::int",
	[STORE_ADD] = "m.flags | $5::int",
	[STORE_REMOVE] = "m.flags & ~$5::int",
};

static const char *const new_keywords[] = {
	[STORE_SET] = "$6::text[]",
	[STORE_ADD] = "m.keywords || ARRAY(SELECT k FROM unnest($6::text[]) k WHERE k <> ALL (m.keywords))",
	[STORE_REMOVE] = "ARRAY(SELECT k FROM unnest(m.keywords) WITH ORDINALITY t(k, o)"
			 " WHERE k <> ALL ($6::text[]) ORDER BY o)",
};

static char *store_sql(struct arena *a, enum store_mode mode)
{
	return arena_printf(a,
		"WITH target AS ("
		"  SELECT m.uid FROM " UID_RANGES_JOIN("m", "$3", "$4", "$8", "$9") " WHERE %s), "
		"mb AS ("
		"  UPDATE mailbox SET highestmodseq = highestmodseq + 1,"
		"         keywords = keywords || ARRAY(SELECT k FROM unnest($6::text[]) k"
		"                                       WHERE k <> ALL (mailbox.keywords) AND $7::int = 1)"
		"   WHERE account_id = $1 AND id = $2 AND EXISTS (SELECT 1 FROM target)"
		"  RETURNING highestmodseq), "
		"upd AS ("
		"  UPDATE message m SET flags = %s, keywords = %s, modseq = mb.highestmodseq"
		"    FROM mb"
		"   WHERE m.account_id = $1 AND m.mailbox_id = $2"
		"     AND m.uid IN (SELECT uid FROM target) AND %s"
		"  RETURNING m.uid, m.flags, m.keywords, m.modseq) "
		"SELECT uid, flags, array_to_string(keywords, ' '), modseq, 1 FROM upd "
		"UNION ALL "
		"SELECT m.uid, m.flags, array_to_string(m.keywords, ' '), m.modseq, 0"
		"  FROM " UID_RANGES_JOIN("m", "$3", "$4", "$8", "$9")
		" WHERE m.uid NOT IN (SELECT uid FROM upd) "
		"ORDER BY 1",
		change_cond[mode], new_flags[mode], new_keywords[mode], change_cond[mode]);
}

static void stored_cb(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	struct store_state *st = arg;
	struct cmd *c = st->c;
	struct session *s = c->s;
	struct selected *sel = s->sel;
	session_ref(s);
	if (cmd_db_failed(c, err)) {
		session_unref(s);
		return;
	}
	int n = PQntuples(res);
	for (int i = 0; i < n; i++) {
		if (pg_u64(res, i, 4) == 1) {
			mailbox_notify(s, sel->mailbox_id, pg_u64(res, i, 3));
			break;
		}
	}
	struct buf line = BUF_INIT;
	for (int i = 0; i < n; i++) {
		uint32_t uid = (uint32_t)pg_u64(res, i, 0);
		bool changed = pg_u64(res, i, 4) == 1;
		if (changed)
			sel_own_modseq(sel, pg_u64(res, i, 3));
		/* RFC 3501 6.4.6: .SILENT suppresses the FETCH responses. */
		if (st->silent)
			continue;
		uint32_t seq = uidset_seq(&sel->uids, uid);
		if (seq == 0)
			continue;
		buf_clear(&line);
		flags_write(&line, (unsigned)pg_u64(res, i, 1), PQgetvalue(res, i, 2), sel_recent(sel, uid));
		if (c->uid)
			session_printf(s, "* %u FETCH (UID %u FLAGS %s)\r\n", seq, uid, buf_ptr(&line));
		else
			session_printf(s, "* %u FETCH (FLAGS %s)\r\n", seq, buf_ptr(&line));
	}
	buf_free(&line);
	/* A sequence-number STORE may not be followed by EXPUNGE responses
	 * (RFC 3501 7.4.1); UID STORE may. */
	sel_announce(s, c->uid);
	cmd_ok(c, "%sStore completed", c->uid ? "UID " : "");
	cmd_done(c);
	session_unref(s);
}

enum cmd_result cmd_store(struct cmd *c)
{
	struct session *s = c->s;
	if (c->nargs < 3) {
		cmd_bad(c, "STORE takes a message set, an item and flags");
		return CMD_DONE;
	}
	struct str item;
	if (!imap_arg_atom(&c->args[1], &item)) {
		cmd_bad(c, "Invalid STORE item");
		return CMD_DONE;
	}
	enum store_mode mode;
	bool silent = false;
	struct str base = item;
	if (base.len > 7 && str_ieq(str_make(base.p + base.len - 7, 7), ".SILENT")) {
		silent = true;
		base.len -= 7;
	}
	if (str_ieq(base, "FLAGS"))
		mode = STORE_SET;
	else if (str_ieq(base, "+FLAGS"))
		mode = STORE_ADD;
	else if (str_ieq(base, "-FLAGS"))
		mode = STORE_REMOVE;
	else {
		cmd_bad(c, "Invalid STORE item, want FLAGS, +FLAGS or -FLAGS");
		return CMD_DONE;
	}
	const struct imap_arg *fl = &c->args[2];
	size_t nfl = c->nargs - 2;
	if (nfl == 1 && fl->type == IMAP_ARG_LIST) {
		nfl = fl->nlist;
		fl = fl->list;
	} else if (c->args[2].type == IMAP_ARG_LIST) {
		cmd_bad(c, "Invalid flag list");
		return CMD_DONE;
	}
	unsigned bits;
	struct buf kw = BUF_INIT;
	const char *err = NULL;
	if (flags_parse(fl, nfl, (size_t)s->w->cfg->max_keywords, &bits, &kw, &err) < 0) {
		buf_free(&kw);
		cmd_bad(c, "%s", err);
		return CMD_DONE;
	}
	struct uid_ranges r;
	if (sel_resolve(s, &c->args[0], c->uid, c->arena, &r, &err) < 0) {
		buf_free(&kw);
		cmd_bad(c, "%s", err);
		return CMD_DONE;
	}
	if (s->sel->readonly) {
		buf_free(&kw);
		cmd_no(c, "[READ-ONLY] Mailbox is read-only");
		return CMD_DONE;
	}
	if (r.n == 0) {
		buf_free(&kw);
		cmd_ok(c, "%sStore completed", c->uid ? "UID " : "");
		return CMD_DONE;
	}
	struct buf arr = BUF_INIT;
	keywords_sql_array(buf_ptr(&kw), &arr);
	struct store_state *st = arena_zalloc(c->arena, sizeof(*st));
	st->c = c;
	st->silent = silent;
	char *lo, *hi, *min, *max;
	uid_ranges_sql(&r, c->arena, &lo, &hi);
	uid_ranges_bounds(&r, c->arena, &min, &max);
	const char *params[9] = {
		arena_printf(c->arena, "%lld", (long long)s->account_id),
		arena_printf(c->arena, "%lld", (long long)s->sel->mailbox_id),
		lo, hi,
		arena_printf(c->arena, "%u", bits),
		arena_strndup(c->arena, buf_ptr(&arr), arr.len),
		mode == STORE_REMOVE ? "0" : "1",
		min, max,
	};
	buf_free(&arr);
	buf_free(&kw);
	c->pg = pg_query(s->w->pg, store_sql(c->arena, mode), 9, params, NULL, NULL, 0, stored_cb, st);
	return CMD_PENDING;
}
