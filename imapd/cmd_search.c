/* SEARCH and UID SEARCH (RFC 3501 6.4.4, 6.4.8, 7.2.5).
 *
 * The keys are parsed into a tree (search.c).  What the database can decide
 * (flags, keywords, sizes, dates, \Recent and UID ranges) becomes the WHERE
 * clause, so only candidates are read; the tree then decides each
 * candidate in C, and only the text keys (HEADER, FROM, BODY, TEXT, ...)
 * make us read message bytes.
 *
 * Candidates are read in UID order, in windows of the client's view: a
 * window spans `span` times the batch size of messages from the last UID
 * read, and the query is also LIMITed to the batch size (fetch_batch rows
 * per round trip without bytes; at most 50 rows and SEARCH_DATA_BUDGET
 * octets with them, a message larger than that coming alone).  A window
 * that yields few rows makes the next one wider, so a selective search of
 * a large mailbox takes few round trips; one that fills the batch resets
 * the span.  The windows keep the plans on the primary key: PostgreSQL has
 * no statistics on flag bits and may otherwise guess "flags & 4 = 0" rare
 * and scan the whole mailbox for every batch.
 *
 * The matching UIDs are collected in a uidset, which stays small for runs
 * of consecutive UIDs, and the "* SEARCH" line is written at the end with
 * on_drain back-pressure.
 *
 * Only messages in the client's view count: UIDs above its highest are
 * excluded in SQL, holes in it in C.  No EXPUNGE may be sent during a
 * sequence-number SEARCH (RFC 3501 7.4.1): pending changes are announced
 * at the end as FETCH does, expunges only for UID SEARCH.
 */
#include <endian.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imapd/mailview.h"
#include "imapd/search.h"
#include "lib/pg.h"

/* Message octets read per round trip when text keys need them. */
#define SEARCH_DATA_BUDGET (8u << 20)
/* Rows per round trip when message bytes are read. */
#define SEARCH_DATA_ROWS 50
/* Result numbers are queued to the client in pieces of about this size. */
#define SEARCH_WRITE_CHUNK 16384
/* The widest window, in batches. */
#define SEARCH_SPAN_MAX 65536

/* Params of the batch statement: $1 account, $2 mailbox, $3 last UID read,
 * $4 the window's end, $5 row limit, $6 octet budget (with data only);
 * the WHERE clause's own follow. */
enum { P_ACCOUNT, P_MAILBOX, P_LAST, P_HI, P_LIMIT, P_BUDGET };

struct search_state {
	struct cmd *c;
	struct search_query q;
	const char *sql;
	const char **params;
	int nparams;
	uint32_t last_uid;	/* read up to here */
	uint32_t hi_uid;	/* nothing above can match */
	uint32_t window_end;	/* of the running query */
	uint32_t batch, span;
	struct uidset matches;
	struct search_scratch sc;
	bool live;		/* matches and sc hold heap memory */
	bool writing;
	struct seqset view;
	struct seqset_iter it;
	uint64_t max_modseq;	/* highest modseq among the matches */
};

static int resolve(void *ctx, const struct imap_arg *arg, bool uid, struct arena *a,
		   struct uid_ranges *out, const char **err)
{
	return sel_resolve(ctx, arg, uid, a, out, err);
}

static void release(struct search_state *st)
{
	if (!st->live)
		return;
	st->live = false;
	uidset_free(&st->matches);
	search_scratch_free(&st->sc);
}

static void search_abort(struct cmd *c)
{
	release(c->state);
}

static void search_reply(struct cmd *c)
{
	cmd_ok(c, "%s", c->uid ? "UID SEARCH completed" : "SEARCH completed");
}

/* RFC 3501 7.4.1 and RFC 7162 3.2.10.2: no EXPUNGE or VANISHED after a
 * SEARCH, or after a UID SEARCH whose keys use sequence numbers. */
static bool may_expunge(const struct cmd *c, const struct search_state *st)
{
	return c->uid && !st->q.has_seqnums;
}

static void write_results(struct cmd *c)
{
	struct search_state *st = c->state;
	struct session *s = c->s;
	if (!st->writing) {
		st->writing = true;
		st->view = uidset_view(&st->matches);
		seqset_iter_init(&st->it, &st->view);
		session_write(s, "* SEARCH", 8);
	}
	struct buf b = BUF_INIT;
	uint32_t uid;
	bool more = true;
	while (more && !s->dead) {
		more = seqset_iter_next(&st->it, &uid);
		if (more)
			buf_printf(&b, " %u", c->uid ? uid : uidset_seq(&s->sel->uids, uid));
		if (b.len < SEARCH_WRITE_CHUNK && more)
			continue;
		session_write(s, buf_ptr(&b), b.len);
		buf_clear(&b);
		if (more && !s->dead && session_output_pending(s)) {
			session_flush(s);
			if (!s->dead && session_output_pending(s)) {
				c->on_drain = write_results;
				buf_free(&b);
				return;
			}
		}
	}
	buf_free(&b);
	if (s->dead)
		return;	/* search_abort released the state */
	/* RFC 7162 3.1.6: with a MODSEQ key, a non-empty result ends with
	 * the highest modseq of the messages returned.  One above what the
	 * session has synced: sync before the tagged OK (see cmd_fetch.c). */
	if (st->q.has_modseq && uidset_count(&st->matches) > 0) {
		session_printf(s, " (MODSEQ %llu)", (unsigned long long)st->max_modseq);
		if (st->max_modseq > c->modseq_told)
			c->modseq_told = st->max_modseq;
		if (s->sel != NULL && st->max_modseq > s->sel->known_modseq)
			s->sel->dirty = true;
	}
	session_write(s, "\r\n", 2);
	release(st);
	if (sel_complete(c, may_expunge(c, st), search_reply) == CMD_DONE)
		cmd_done(c);
}

static uint64_t bin_u64(const PGresult *r, int row, int col)
{
	uint64_t v;
	memcpy(&v, PQgetvalue(r, row, col), 8);
	return be64toh(v);
}

static uint32_t bin_u32(const PGresult *r, int row, int col)
{
	uint32_t v;
	memcpy(&v, PQgetvalue(r, row, col), 4);
	return be32toh(v);
}

static void next_batch(struct cmd *c);

static void batch_cb(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	struct search_state *st = arg;
	struct cmd *c = st->c;
	struct session *s = c->s;
	struct selected *sel = s->sel;
	session_ref(s);
	c->pg = NULL;
	if (err != NULL) {
		release(st);
		cmd_unavailable(c, err);
		cmd_done(c);
		session_unref(s);
		return;
	}
	int n = PQntuples(res);
	bool cut = false, full = (uint32_t)n >= st->batch;
	for (int i = 0; i < n; i++) {
		struct search_msg m = {
			.uid = (uint32_t)bin_u64(res, i, 0),
			.flags = bin_u32(res, i, 1),
			.keywords = str_make(PQgetvalue(res, i, 2), (size_t)PQgetlength(res, i, 2)),
			.internaldate = (int64_t)bin_u64(res, i, 3),
			.size = bin_u64(res, i, 4),
			.sent_date = PQgetisnull(res, i, 5) ? INT64_MIN : (int64_t)bin_u64(res, i, 5),
			.modseq = bin_u64(res, i, 8),
		};
		if (st->q.need_data) {
			if (PQgetisnull(res, i, 7)) {
				/* Over the octet budget: the next batch starts here. */
				cut = true;
				break;
			}
			m.data = PQgetvalue(res, i, 7);
			m.len = (size_t)PQgetlength(res, i, 7);
			if (!PQgetisnull(res, i, 6)) {
				m.parts = PQgetvalue(res, i, 6);
				m.parts_len = (size_t)PQgetlength(res, i, 6);
			}
		}
		st->last_uid = m.uid;
		if (!uidset_contains(&sel->uids, m.uid))
			continue;
		m.recent = sel_recent(sel, m.uid);
		if (search_match(&st->q, &m, &st->sc)) {
			uidset_add(&st->matches, m.uid);
			if (m.modseq > st->max_modseq)
				st->max_modseq = m.modseq;
		}
	}
	if (cut || full) {
		st->span = 1;
	} else {
		/* The window is exhausted: widen the next one if it was sparse. */
		st->last_uid = st->window_end;
		if ((uint64_t)n * 4 < st->batch)
			st->span = MIN(st->span * 4, SEARCH_SPAN_MAX);
		else if ((uint64_t)n * 2 < st->batch)
			st->span = MIN(st->span * 2, SEARCH_SPAN_MAX);
	}
	if (st->last_uid >= st->hi_uid)
		write_results(c);
	else
		next_batch(c);
	session_unref(s);
}

static void next_batch(struct cmd *c)
{
	struct search_state *st = c->state;
	const struct uidset *v = &c->s->sel->uids;
	/* The window ends at the UID span * batch messages further on. */
	uint64_t target = (uint64_t)uidset_rank(v, st->last_uid) + (uint64_t)st->span * st->batch;
	st->window_end = st->hi_uid;
	if (target < uidset_count(v))
		st->window_end = MIN(st->hi_uid, uidset_uid(v, (uint32_t)target));
	st->params[P_LAST] = arena_printf(c->arena, "%u", st->last_uid);
	st->params[P_HI] = arena_printf(c->arena, "%u", st->window_end);
	c->pg = pg_query(c->s->w->pg, st->sql, st->nparams, st->params, NULL, NULL, 1, batch_cb, st);
}

/* The batch statement around the WHERE clause. */
static const char *batch_sql(struct cmd *c, const struct search_state *st, const char *where)
{
	const struct search_query *q = &st->q;
	const char *sent = q->need_sent ? "floor(extract(epoch FROM b.sent_date))::bigint" : "NULL::bigint";
	const char *join = q->need_sent ? " JOIN blob b ON b.tenant_id = m.tenant_id AND b.hash = m.blob_hash" : "";
	const char *cols =
		"m.uid, m.flags, array_to_string(m.keywords, ' ') AS kw,"
		" floor(extract(epoch FROM m.internaldate))::bigint AS idate, m.size";
	const char *cond =
		"m.account_id = $1 AND m.mailbox_id = $2 AND m.uid > $3 AND m.uid <= $4";
	if (!q->need_data)
		return arena_printf(c->arena,
			"SELECT %s, %s, NULL::bytea, NULL::bytea, m.modseq FROM message m%s"
			" WHERE %s AND %s ORDER BY m.uid LIMIT $5",
			cols, sent, join, cond, where);
	/* With the bytes: a running sum of sizes keeps the batch within the
	 * budget; rows past it come without bytes (the LEFT JOIN does not
	 * read them) and start the next batch. */
	return arena_printf(c->arena,
		"SELECT c.uid, c.flags, c.kw, c.idate, c.size, c.sent, d.parts, d.data, c.modseq"
		"  FROM (SELECT %s, %s AS sent, m.tenant_id, m.blob_hash, m.modseq,"
		"               sum(m.size) OVER (ORDER BY m.uid) AS run"
		"          FROM message m%s WHERE %s AND %s ORDER BY m.uid LIMIT $5) c"
		"  LEFT JOIN blob d ON d.tenant_id = c.tenant_id AND d.hash = c.blob_hash"
		"                  AND c.run - c.size < $6"
		" ORDER BY c.uid",
		cols, sent, join, cond, where);
}

enum cmd_result cmd_search(struct cmd *c)
{
	struct session *s = c->s;
	struct selected *sel = s->sel;
	const struct config *cfg = s->w->cfg;
	struct search_state *st = arena_zalloc(c->arena, sizeof(*st));
	st->c = c;
	c->state = st;
	struct search_limits lim = { (size_t)cfg->max_nesting, (size_t)cfg->max_args };
	const char *err = NULL;
	int rc = search_parse(c->args, c->nargs, &lim, resolve, s, c->arena, &st->q, &err);
	if (rc == SEARCH_BADCHARSET) {
		/* RFC 3501 6.4.4 and 7.1: NO, naming what we support. */
		cmd_no(c, "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset");
		return CMD_DONE;
	}
	if (rc < 0) {
		cmd_bad(c, "%s", err);
		return CMD_DONE;
	}
	/* RFC 7162 3.1: a SEARCH with MODSEQ is CONDSTORE enabling. */
	if (st->q.has_modseq)
		condstore_enable(c);

	/* \Recent UIDs as ranges for the WHERE clause. */
	struct seqset rv = uidset_view(&sel->recent);
	struct uid_ranges recent = { 0 };
	recent.lo = arena_alloc(c->arena, (rv.n + 1) * sizeof(uint32_t));
	recent.hi = arena_alloc(c->arena, (rv.n + 1) * sizeof(uint32_t));
	for (size_t i = 0; i < rv.n; i++) {
		recent.lo[i] = rv.r[i].lo;
		recent.hi[i] = rv.r[i].hi;
	}
	recent.n = rv.n;

	struct search_params p = { .first = st->q.need_data ? P_BUDGET + 2 : P_BUDGET + 1 };
	struct buf where = BUF_INIT;
	search_sql(&st->q, &recent, c->arena, &where, &p);
	st->last_uid = st->q.uid_lo - 1;
	st->hi_uid = MIN(st->q.uid_hi, uidset_max(&sel->uids));
	if (st->q.uid_lo > st->hi_uid || strcmp(buf_ptr(&where), "FALSE") == 0) {
		buf_free(&where);
		session_write(s, "* SEARCH\r\n", 10);
		return sel_complete(c, may_expunge(c, st), search_reply);
	}
	st->sql = batch_sql(c, st, buf_ptr(&where));
	buf_free(&where);
	st->batch = (uint32_t)(st->q.need_data ? MIN(cfg->fetch_batch, SEARCH_DATA_ROWS) : cfg->fetch_batch);
	st->span = 1;
	st->nparams = p.first - 1 + (int)p.n;
	st->params = arena_zalloc(c->arena, (size_t)st->nparams * sizeof(*st->params));
	st->params[P_ACCOUNT] = arena_printf(c->arena, "%lld", (long long)s->account_id);
	st->params[P_MAILBOX] = arena_printf(c->arena, "%lld", (long long)sel->mailbox_id);
	st->params[P_LIMIT] = arena_printf(c->arena, "%u", st->batch);
	if (st->q.need_data)
		st->params[P_BUDGET] = arena_printf(c->arena, "%u", SEARCH_DATA_BUDGET);
	for (size_t i = 0; i < p.n; i++)
		st->params[p.first - 1 + (int)i] = p.v[i];

	uidset_init(&st->matches);
	search_scratch_init(&st->sc);
	st->live = true;
	c->on_abort = search_abort;
	next_batch(c);
	return CMD_PENDING;
}
