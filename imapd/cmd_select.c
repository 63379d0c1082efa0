/* SELECT and EXAMINE (RFC 3501 6.3.1, 6.3.2) with the CONDSTORE and
 * QRESYNC parameters (RFC 7162 3.1.8, 3.2.5).
 *
 * One statement reads, in one snapshot, the mailbox's counters and the
 * holes in its UID space (tombstones and the ranges expired tombstones
 * were folded into, mailbox_holes()): every UID below uidnext that is not
 * a hole is a live message, because UIDs are only taken together with the
 * insert of their message (DESIGN.md invariant 1).  The session's view is
 * built from uidnext and the holes as ranges, so SELECT costs grow with the
 * expunges, not with the mailbox.  SELECT (not EXAMINE) also claims
 * \Recent for the messages no session has seen yet.
 *
 * With QRESYNC, the tombstones and then the messages with a modseq in
 * (client's modseq, this SELECT's HIGHESTMODSEQ] are read next, in modseq
 * order through the (mailbox, modseq) indexes, in batches: the resync
 * costs grow with the changes, not with the mailbox.  Everything up to
 * HIGHESTMODSEQ was committed before the SELECT's snapshot (commit order is
 * modseq order, DESIGN.md invariant 1), so what is told agrees with the
 * view; a change after the snapshot has a higher modseq and reaches the
 * session by its next sync.  A client below the vanished floor (its modseq
 * older than the oldest tombstone kept) is told every hole in its known
 * UIDs instead: it may hear of UIDs it never had, never miss one it has
 * (RFC 7162 3.2.6 note).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imapd/mailbox.h"
#include "imapd/mailview.h"
#include "imapd/watch.h"
#include "lib/pg.h"

/* Pairs of sequence-match data (RFC 7162 3.2.5.2) looked at, at most: the
 * data only narrows the answer, so a huge list is simply not used. */
#define SEQ_MATCH_MAX 100000

struct select_state {
	struct cmd *c;
	char *name;
	bool readonly;
	bool qresync;
	uint32_t q_uidvalidity;
	uint64_t q_modseq;
	struct seqset known;	/* known UIDs; n == 0: all */
	bool have_known;
	struct seqset match_seqs, match_uids;	/* sequence match data */
	bool have_match;
	/* the resync, after the SELECT statement */
	uint64_t highest;	/* its HIGHESTMODSEQ: changes up to here */
	uint32_t above;		/* nothing at or below vanished (seq match data) */
	struct uidset vanished;
	uint64_t after_modseq;
	uint32_t after_uid;
	uint32_t batch;
};

struct view_build {
	struct selected *sel;
	uint32_t start, uidnext;
};

static void view_hole(void *arg, uint32_t lo, uint32_t hi)
{
	struct view_build *vb = arg;
	if (hi >= vb->uidnext)
		hi = vb->uidnext - 1;
	if (lo < vb->start || lo > hi)
		return;
	if (lo > vb->start)
		uidset_add_range(&vb->sel->uids, vb->start, lo - 1);
	vb->start = hi + 1;
}

static void build_view(struct selected *sel, uint32_t uidnext, const char *holes)
{
	struct view_build vb = { sel, 1, uidnext };
	if (uidnext <= 1)
		return;
	holes_each(holes, view_hole, &vb);
	if (uidnext > vb.start)
		uidset_add_range(&sel->uids, vb.start, uidnext - 1);
}


static bool known_has(const struct select_state *st, uint32_t uid)
{
	return !st->have_known || seqset_contains(&st->known, uid);
}

/* RFC 7162 3.2.5.2: the highest UID up to which the client's sequence
 * numbers still match ours; nothing at or below it has vanished for it. */
static uint32_t seq_match_floor(const struct select_state *st, const struct selected *sel)
{
	if (!st->have_match || seqset_count(&st->match_seqs) > SEQ_MATCH_MAX)
		return 0;
	struct seqset_iter si, ui;
	seqset_iter_init(&si, &st->match_seqs);
	seqset_iter_init(&ui, &st->match_uids);
	uint32_t seq, uid, floor = 0;
	while (seqset_iter_next(&si, &seq) && seqset_iter_next(&ui, &uid)) {
		if (uidset_uid(&sel->uids, seq) != uid)
			break;
		floor = uid;
	}
	return floor;
}

static void select_reply(struct cmd *c)
{
	struct select_state *st = c->state;
	cmd_ok(c, "[%s] %s completed", st->readonly ? "READ-ONLY" : "READ-WRITE",
	       st->readonly ? "EXAMINE" : "SELECT");
	cmd_done(c);
}

static void qresync_changes(struct cmd *c);

static void changes_cb(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	struct select_state *st = arg;
	struct cmd *c = st->c;
	struct session *s = c->s;
	session_ref(s);
	if (cmd_db_failed(c, err)) {
		session_unref(s);
		return;
	}
	struct selected *sel = s->sel;
	struct buf fl = BUF_INIT;
	int n = PQntuples(res);
	for (int i = 0; i < n && !s->dead; i++) {
		uint32_t uid = (uint32_t)pg_u64(res, i, 0);
		uint64_t modseq = pg_u64(res, i, 3);
		st->after_uid = uid;
		st->after_modseq = modseq;
		uint32_t seq = uidset_seq(&sel->uids, uid);
		if (seq == 0 || !known_has(st, uid))
			continue;
		buf_clear(&fl);
		flags_write(&fl, (unsigned)pg_u64(res, i, 1), PQgetvalue(res, i, 2), sel_recent(sel, uid));
		sel_fetch_line(c, seq, uid, buf_ptr(&fl), modseq, true);
	}
	buf_free(&fl);
	if (s->dead) {
		session_unref(s);
		return;
	}
	if ((uint32_t)n < st->batch) {
		select_reply(c);
	} else {
		/* Let the client take the output before reading more. */
		session_flush(s);
		if (!s->dead && session_output_pending(s))
			c->on_drain = qresync_changes;
		else if (!s->dead)
			qresync_changes(c);
	}
	session_unref(s);
}

/* The messages changed in (client's modseq, highest], in modseq order
 * with a (modseq, uid) keyset (see SEL_DELTA_SQL on why). */
static void qresync_changes(struct cmd *c)
{
	struct select_state *st = c->state;
	struct session *s = c->s;
	uint32_t kmin = 1, kmax = UINT32_MAX;
	if (st->have_known) {
		kmin = st->known.n ? st->known.r[0].lo : 1;
		kmax = seqset_max(&st->known);
	}
	const char *params[8] = {
		arena_printf(c->arena, "%lld", (long long)s->account_id),
		arena_printf(c->arena, "%lld", (long long)s->sel->mailbox_id),
		arena_printf(c->arena, "%llu", (unsigned long long)st->after_modseq),
		arena_printf(c->arena, "%u", st->after_uid),
		arena_printf(c->arena, "%llu", (unsigned long long)st->highest),
		arena_printf(c->arena, "%u", kmin),
		arena_printf(c->arena, "%u", kmax),
		arena_printf(c->arena, "%u", st->batch),
	};
	c->pg = pg_query(s->w->pg,
		"SELECT m.uid, m.flags, array_to_string(m.keywords, ' '), m.modseq FROM message m"
		" WHERE m.account_id = $1 AND m.mailbox_id = $2 AND m.modseq >= $3::bigint"
		"   AND (m.modseq, m.uid) > ($3::bigint, $4::bigint) AND m.modseq <= $5::bigint"
		"   AND m.uid BETWEEN $6::bigint AND $7::bigint"
		" ORDER BY m.modseq, m.uid LIMIT $8::int",
		8, params, NULL, NULL, 0, changes_cb, st);
}

static void qresync_abort(struct cmd *c)
{
	struct select_state *st = c->state;
	uidset_free(&st->vanished);
}

static void vanished_read(struct cmd *c, struct vanish_read *vr, const char *err)
{
	struct select_state *st = c->state;
	struct session *s = c->s;
	c->on_abort = NULL;
	if (err != NULL) {
		uidset_free(&st->vanished);
		cmd_unavailable(c, err);
		cmd_done(c);
		return;
	}
	/* Only known UIDs, above the sequence-match floor; an expunge after
	 * this SELECT's snapshot is still in the view and told later. */
	sel_vanished_earlier(s, &st->vanished, st->have_known ? &st->known : NULL, st->above);
	st->after_modseq = st->q_modseq;
	st->after_uid = UINT32_MAX;
	qresync_changes(c);
}

static void qresync_vanished(struct cmd *c)
{
	struct select_state *st = c->state;
	struct vanish_read *vr = arena_zalloc(c->arena, sizeof(*vr));
	vr->c = c;
	vr->from = st->q_modseq;
	vr->to = st->highest;
	vr->lo = 1;
	vr->hi = UINT32_MAX;
	if (st->have_known) {
		vr->lo = st->known.n ? st->known.r[0].lo : 1;
		vr->hi = seqset_max(&st->known);
	}
	vr->out = &st->vanished;
	vr->done = vanished_read;
	uidset_init(&st->vanished);
	c->on_abort = qresync_abort;
	sel_read_vanished(vr);
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
	int nrows = PQntuples(res);
	if (nrows < 1 || pg_u64(res, 0, 0) != 0) {
		cmd_no(c, "[NONEXISTENT] No such mailbox");
		cmd_done(c);
		session_unref(s);
		return;
	}
	/* Row 0: 0, id, uidvalidity, uidnext, highestmodseq, vanished_floor,
	 * recent_prev, recent_uid, first unseen, keywords, holes. */
	int64_t id = (int64_t)pg_u64(res, 0, 1);
	uint32_t uidvalidity = (uint32_t)pg_u64(res, 0, 2);
	uint32_t uidnext = (uint32_t)pg_u64(res, 0, 3);
	uint64_t highest = pg_u64(res, 0, 4);
	const char *kw = PQgetvalue(res, 0, 9);

	struct selected *sel = sel_new(id, st->name, uidvalidity, st->readonly);
	sel->known_modseq = highest;
	free(sel->keywords);
	sel->keywords = xstrdup(kw);
	build_view(sel, uidnext, PQgetvalue(res, 0, 10));
	if (!PQgetisnull(res, 0, 6)) {
		uint32_t prev = (uint32_t)pg_u64(res, 0, 6), now = (uint32_t)pg_u64(res, 0, 7);
		if (now > prev)
			uidset_add_range(&sel->recent, prev + 1, now);
	}
	s->sel = sel;
	s->state = STATE_SELECTED;
	watch_attach(s);

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
	/* RFC 7162 3.1.2.1: after a CONDSTORE enabling command (this SELECT
	 * may have been one) every SELECT tells HIGHESTMODSEQ. */
	if (sess_condstore(s))
		session_printf(s, "* OK [HIGHESTMODSEQ %llu] Highest\r\n", (unsigned long long)highest);

	if (st->qresync && st->q_uidvalidity == uidvalidity && st->q_modseq < highest) {
		/* RFC 7162 3.2.5.1: VANISHED (EARLIER) first, then the
		 * changed messages' flags (3.2.6: the same order), both read
		 * up to this SELECT's HIGHESTMODSEQ. */
		st->highest = highest;
		st->above = seq_match_floor(st, sel);
		qresync_vanished(c);
		session_unref(s);
		return;
	}
	log_debug(&s->log, "selected %s: %u messages, %zu ranges", st->name, exists, sel->uids.n);
	select_reply(c);
	session_unref(s);
}

/* A sequence-set of the QRESYNC parameter: no "*" (RFC 7162 7). */
static bool qresync_set(struct cmd *c, const struct imap_arg *a, struct seqset *out)
{
	struct str t;
	const char *err = NULL;
	if (!imap_arg_atom(a, &t) || seqset_parse(t, (size_t)c->s->w->cfg->max_args, c->arena, out, &err) < 0 ||
	    seqset_has_star(out))
		return false;
	seqset_resolve(out, 0);
	return true;
}

/* RFC 7162 3.2.5: (QRESYNC (uidvalidity modseq [known-uids] [(seqs uids)])) */
static bool parse_qresync(struct cmd *c, struct select_state *st, const struct imap_arg *a)
{
	const struct imap_arg *l;
	size_t n;
	if (!imap_arg_list(a, &l, &n) || n < 2 || n > 4)
		return false;
	uint64_t modseq;
	if (!imap_arg_number(&l[0], &st->q_uidvalidity) || st->q_uidvalidity == 0 ||
	    !imap_arg_number64(&l[1], &modseq))
		return false;
	st->q_modseq = modseq;
	size_t i = 2;
	if (i < n && l[i].type != IMAP_ARG_LIST) {
		if (!qresync_set(c, &l[i], &st->known))
			return false;
		st->have_known = true;
		i++;
	}
	if (i < n) {
		const struct imap_arg *m;
		size_t mn;
		if (!imap_arg_list(&l[i], &m, &mn) || mn != 2 || !qresync_set(c, &m[0], &st->match_seqs) ||
		    !qresync_set(c, &m[1], &st->match_uids) ||
		    seqset_count(&st->match_seqs) != seqset_count(&st->match_uids))
			return false;
		st->have_match = true;
		i++;
	}
	return i == n;
}

static enum cmd_result do_select(struct cmd *c, bool readonly)
{
	struct session *s = c->s;
	struct str nm;
	const char *cmdname = readonly ? "EXAMINE" : "SELECT";
	if (c->nargs != 1 && c->nargs != 2) {
		cmd_bad(c, "%s takes a mailbox name and optional parameters", cmdname);
		return CMD_DONE;
	}
	struct select_state *st = arena_zalloc(c->arena, sizeof(*st));
	st->c = c;
	st->readonly = readonly;
	st->batch = SEL_DELTA_LIMIT;
	c->state = st;
	bool condstore = false;
	if (c->nargs == 2) {
		/* RFC 4466 2.1 select parameters; every one is checked before
		 * anything is closed or opened (RFC 7162 3.2.5). */
		const struct imap_arg *l;
		size_t n;
		if (!imap_arg_list(&c->args[1], &l, &n) || n == 0) {
			cmd_bad(c, "Invalid %s parameters", cmdname);
			return CMD_DONE;
		}
		for (size_t i = 0; i < n; i++) {
			if (imap_arg_is_atom(&l[i], "CONDSTORE")) {
				condstore = true;
			} else if (imap_arg_is_atom(&l[i], "QRESYNC")) {
				/* RFC 7162 3.2.5: only after ENABLE QRESYNC. */
				if (!sess_qresync(s)) {
					cmd_bad(c, "QRESYNC must be enabled first (ENABLE QRESYNC)");
					return CMD_DONE;
				}
				if (st->qresync || i + 1 >= n || !parse_qresync(c, st, &l[i + 1])) {
					cmd_bad(c, "Invalid QRESYNC parameter");
					return CMD_DONE;
				}
				st->qresync = true;
				i++;
			} else {
				cmd_bad(c, "Unknown %s parameter", cmdname);
				return CMD_DONE;
			}
		}
	}
	if (!mailbox_arg(c, &c->args[0], 0, &nm))
		return CMD_DONE;
	char *name = (char *)nm.p;
	st->name = name;
	/* RFC 3501 6.3.1: selecting closes the current mailbox first, also
	 * when the new SELECT fails; no implicit expunge.  RFC 7162 3.2.11:
	 * the CLOSED response code marks the boundary. */
	if (s->sel != NULL) {
		sel_free(&s->sel);
		s->state = STATE_AUTH;
		session_printf(s, "* OK [CLOSED] Previous mailbox closed\r\n");
	}
	if (condstore)
		condstore_enable(c);
	const char *params[3] = {
		arena_printf(c->arena, "%lld", (long long)s->account_id),
		name,
		readonly ? "0" : "1",
	};
	c->pg = pg_query(s->w->pg,
			 "WITH claim AS ("
			 "  UPDATE mailbox SET recent_prev = recent_uid, recent_uid = uidnext - 1"
			 "   WHERE account_id = $1 AND name = $2 AND $3::int = 1"
			 "     AND recent_uid < uidnext - 1"
			 "  RETURNING recent_prev, recent_uid), "
			 "mb AS ("
			 "  SELECT id, uidvalidity, uidnext, highestmodseq, vanished_floor, keywords"
			 "    FROM mailbox WHERE account_id = $1 AND name = $2) "
			 "SELECT 0 AS kind, mb.id, mb.uidvalidity, mb.uidnext, mb.highestmodseq, mb.vanished_floor,"
			 "       (SELECT recent_prev FROM claim), (SELECT recent_uid FROM claim),"
			 "       (SELECT min(x.uid) FROM message x"
			 "         WHERE x.account_id = $1 AND x.mailbox_id = mb.id AND x.flags & 1 = 0),"
			 "       array_to_string(mb.keywords, ' '), mailbox_holes($1, mb.id)"
			 "  FROM mb",
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
