/* FETCH and UID FETCH (RFC 3501 6.4.5, 6.4.8, 7.4.2).
 *
 * ENVELOPE, BODY and BODYSTRUCTURE were computed once when the message was
 * stored; BODY[section] is cut from the stored bytes with the stored part
 * table (lib/mime.c), never by parsing the message again.  Messages are
 * read in batches (fetch_batch, fewer when bodies are needed) and the next
 * batch is only asked for once the client has taken most of the output of
 * the last one, so a FETCH 1:* of a large mailbox holds a bounded amount of
 * memory.  Non-PEEK body items set \Seen first (RFC 3501 6.4.5).
 *
 * RFC 7162: the MODSEQ item, the CHANGEDSINCE modifier (then the messages
 * are read through the (mailbox, modseq) index in modseq order, batched
 * with a (modseq, uid) keyset, so the cost follows the changes, not the
 * set or the mailbox) and, for UID FETCH
 * after ENABLE QRESYNC, the VANISHED modifier: VANISHED (EARLIER) with the
 * UIDs of the set expunged since the modseq, before any FETCH (3.2.6).
 */
#include <endian.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imapd/mailbox.h"
#include "imapd/mailview.h"
#include "lib/mime.h"
#include "lib/pg.h"

enum item_kind {
	F_FLAGS, F_UID, F_INTERNALDATE, F_SIZE, F_ENVELOPE, F_BODYSTRUCTURE, F_BODY,
	F_SECTION, F_RFC822, F_RFC822_HEADER, F_RFC822_TEXT, F_MODSEQ,
};

struct fetch_item {
	enum item_kind kind;
	const char *section;	/* F_SECTION: text inside [] */
	const char *label;	/* what the response calls it, e.g. BODY[1.MIME] */
	bool partial;
	uint32_t origin, count;
};

struct fetch_state {
	struct cmd *c;
	struct fetch_item *items;
	size_t nitems;
	bool need_meta, need_data, set_seen;
	struct uid_ranges all;
	size_t next_range;	/* batching position */
	uint32_t next_uid;
	uint32_t batch;
	bool changedsince_set, vanished;
	uint64_t changedsince;
	struct uidset vanished_uids;	/* while VANISHED (EARLIER) is read */
	struct seqset vanished_set;	/* the client's UID set, for it */
	uint64_t after_modseq;	/* CHANGEDSINCE batching: read (modseq, uid) above these */
	uint32_t after_uid;
	bool last_batch;
};

static bool want(const struct fetch_state *st, enum item_kind k)
{
	for (size_t i = 0; i < st->nitems; i++)
		if (st->items[i].kind == k)
			return true;
	return false;
}

static void add_item(struct fetch_state *st, size_t *cap, struct arena *a, struct fetch_item it)
{
	if (st->nitems == *cap) {
		size_t ncap = *cap ? *cap * 2 : 8;
		struct fetch_item *n = arena_alloc(a, ncap * sizeof(*n));
		if (st->nitems)
			memcpy(n, st->items, st->nitems * sizeof(*n));
		st->items = n;
		*cap = ncap;
	}
	st->items[st->nitems++] = it;
}

static char *upper(struct arena *a, const char *p, size_t n)
{
	char *u = arena_strndup(a, p, n);
	for (char *q = u; *q; q++)
		if (*q >= 'a' && *q <= 'z')
			*q = (char)(*q - 'a' + 'A');
	return u;
}

/* BODY[section]<o.n> / BODY.PEEK[...]: returns 0 or -1 (BAD). */
static int parse_section(struct str t, struct arena *a, struct fetch_item *it, bool *peek)
{
	const char *lb = memchr(t.p, '[', t.len);
	if (lb == NULL)
		return -1;
	struct str name = str_make(t.p, (size_t)(lb - t.p));
	if (str_ieq(name, "BODY"))
		*peek = false;
	else if (str_ieq(name, "BODY.PEEK"))
		*peek = true;
	else
		return -1;
	const char *end = t.p + t.len;
	const char *rb = NULL;
	int depth = 0;
	for (const char *p = lb + 1; p < end; p++) {
		if (*p == '(')
			depth++;
		else if (*p == ')')
			depth--;
		else if (*p == ']' && depth == 0) {
			rb = p;
			break;
		}
	}
	if (rb == NULL)
		return -1;
	it->kind = F_SECTION;
	it->section = upper(a, lb + 1, (size_t)(rb - lb - 1));
	const char *rest = rb + 1;
	if (rest < end) {
		/* <origin.count> (RFC 3501 6.4.5) */
		uint64_t o, n;
		const char *dot = memchr(rest, '.', (size_t)(end - rest));
		if (*rest != '<' || end[-1] != '>' || dot == NULL ||
		    parse_u64(rest + 1, (size_t)(dot - rest - 1), UINT32_MAX, &o) < 0 ||
		    parse_u64(dot + 1, (size_t)(end - dot - 2), UINT32_MAX, &n) < 0 || n == 0)
			return -1;
		it->partial = true;
		it->origin = (uint32_t)o;
		it->count = (uint32_t)n;
		it->label = arena_printf(a, "BODY[%s]<%u>", it->section, it->origin);
	} else {
		it->label = arena_printf(a, "BODY[%s]", it->section);
	}
	/* Validate the section spec now so a bad one is BAD, not a
	 * per-message failure. */
	struct buf scratch = BUF_INIT;
	int rc = mime_section("", 0, NULL, 0, str_cstr(it->section), &scratch);
	buf_free(&scratch);
	return rc < 0 ? -1 : 0;
}

static int parse_item(struct fetch_state *st, size_t *cap, struct arena *a, const struct imap_arg *arg)
{
	struct str t;
	if (!imap_arg_atom(arg, &t))
		return -1;
	struct fetch_item it = { 0 };
	static const struct {
		const char *name;
		enum item_kind kind;
	} simple[] = {
		{ "FLAGS", F_FLAGS }, { "UID", F_UID }, { "INTERNALDATE", F_INTERNALDATE },
		{ "RFC822.SIZE", F_SIZE }, { "ENVELOPE", F_ENVELOPE },
		{ "BODYSTRUCTURE", F_BODYSTRUCTURE }, { "BODY", F_BODY }, { "RFC822", F_RFC822 },
		{ "RFC822.HEADER", F_RFC822_HEADER }, { "RFC822.TEXT", F_RFC822_TEXT },
		{ "MODSEQ", F_MODSEQ },
	};
	for (size_t i = 0; i < ARRAY_SIZE(simple); i++) {
		if (str_ieq(t, simple[i].name)) {
			it.kind = simple[i].kind;
			it.label = simple[i].name;
			add_item(st, cap, a, it);
			return 0;
		}
	}
	bool peek = false;
	if (parse_section(t, a, &it, &peek) < 0)
		return -1;
	if (!peek)
		st->set_seen = true;
	add_item(st, cap, a, it);
	return 0;
}

static int parse_items(struct fetch_state *st, struct arena *a, const struct imap_arg *args, size_t n)
{
	size_t cap = 0;
	if (n == 1 && args[0].type == IMAP_ARG_ATOM) {
		static const char *const all[] = { "FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE" };
		static const char *const full[] = { "FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY" };
		const char *const *m = NULL;
		size_t mn = 0;
		if (imap_arg_is_atom(&args[0], "ALL"))
			m = all, mn = 4;
		else if (imap_arg_is_atom(&args[0], "FAST"))
			m = all, mn = 3;
		else if (imap_arg_is_atom(&args[0], "FULL"))
			m = full, mn = 5;
		if (m != NULL) {
			for (size_t i = 0; i < mn; i++) {
				struct imap_arg fake = { .type = IMAP_ARG_ATOM, .str = str_cstr(m[i]) };
				parse_item(st, &cap, a, &fake);
			}
			return 0;
		}
		return parse_item(st, &cap, a, &args[0]);
	}
	if (n == 1 && args[0].type == IMAP_ARG_LIST) {
		if (args[0].nlist == 0)
			return -1;
		for (size_t i = 0; i < args[0].nlist; i++)
			if (parse_item(st, &cap, a, &args[0].list[i]) < 0)
				return -1;
		return 0;
	}
	return -1;
}

/* ---- reading the rows (binary format) ---- */

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

static void write_literal(struct session *s, const char *p, size_t n)
{
	session_printf(s, "{%zu}\r\n", n);
	session_write(s, p, n);
}

static void write_section(struct session *s, const struct fetch_item *it, const char *data, size_t len,
			  const char *parts, size_t plen, const char *section)
{
	struct buf out = BUF_INIT;
	mime_section(data, len, parts, plen, str_cstr(section), &out);
	const char *p = buf_ptr(&out);
	size_t n = out.len;
	if (it->partial) {
		/* RFC 3501 6.4.5: an origin past the end gives an empty string. */
		size_t o = MIN((size_t)it->origin, n);
		p += o;
		n = MIN(n - o, (size_t)it->count);
	}
	write_literal(s, p, n);
	buf_free(&out);
}

static void next_batch(struct cmd *c);

static bool ranges_have(const struct uid_ranges *r, uint32_t uid)
{
	size_t lo = 0, hi = r->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (r->hi[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < r->n && r->lo[lo] <= uid;
}

static void fetch_reply(struct cmd *c)
{
	cmd_ok(c, "%sFetch completed", c->uid ? "UID " : "");
}

/* The end: pending changes are told (a sequence-number FETCH may not be
 * followed by EXPUNGE responses, RFC 3501 7.4.1; UID FETCH may). */
static void fetch_finish(struct cmd *c, bool in_callback)
{
	if (sel_complete(c, c->uid, fetch_reply) == CMD_DONE && in_callback)
		cmd_done(c);
}

static void batch_cb(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	struct fetch_state *st = arg;
	struct cmd *c = st->c;
	struct session *s = c->s;
	struct selected *sel = s->sel;
	session_ref(s);
	if (cmd_db_failed(c, err)) {
		session_unref(s);
		return;
	}
	struct buf fl = BUF_INIT;
	int n = PQntuples(res);
	for (int i = 0; i < n && !s->dead; i++) {
		uint32_t uid = (uint32_t)bin_u64(res, i, 0);
		st->after_uid = uid;
		st->after_modseq = bin_u64(res, i, 10);
		if (st->changedsince_set && !ranges_have(&st->all, uid))
			continue;
		uint32_t seq = uidset_seq(&sel->uids, uid);
		if (seq == 0)
			continue;
		session_printf(s, "* %u FETCH (", seq);
		bool first = true;
		if (c->uid && !want(st, F_UID)) {
			session_printf(s, "UID %u", uid);
			first = false;
		}
		for (size_t k = 0; k < st->nitems; k++) {
			const struct fetch_item *it = &st->items[k];
			if (!first)
				session_write(s, " ", 1);
			first = false;
			switch (it->kind) {
			case F_FLAGS:
				buf_clear(&fl);
				flags_write(&fl, bin_u32(res, i, 1), PQgetvalue(res, i, 2), sel_recent(sel, uid));
				session_printf(s, "FLAGS %s", buf_ptr(&fl));
				break;
			case F_UID:
				session_printf(s, "UID %u", uid);
				break;
			case F_MODSEQ: {
				uint64_t modseq = bin_u64(res, i, 10);
				session_printf(s, "MODSEQ (%llu)", (unsigned long long)modseq);
				/* A client may take the highest MODSEQ it saw as its
				 * HIGHESTMODSEQ (RFC 7162 6): one above what this
				 * session has synced means changes below it may be
				 * untold, so sync before the tagged OK, and lower
				 * the client's value if expunges must wait. */
				if (modseq > c->modseq_told)
					c->modseq_told = modseq;
				if (modseq > sel->known_modseq)
					sel->dirty = true;
				break;
			}
			case F_INTERNALDATE:
				session_printf(s, "INTERNALDATE \"%s\"", PQgetvalue(res, i, 3));
				break;
			case F_SIZE:
				session_printf(s, "RFC822.SIZE %llu", (unsigned long long)bin_u64(res, i, 4));
				break;
			case F_ENVELOPE:
				session_printf(s, "ENVELOPE %s", PQgetvalue(res, i, 5));
				break;
			case F_BODYSTRUCTURE:
				session_printf(s, "BODYSTRUCTURE %s", PQgetvalue(res, i, 6));
				break;
			case F_BODY:
				session_printf(s, "BODY %s", PQgetvalue(res, i, 7));
				break;
			case F_SECTION:
			case F_RFC822:
			case F_RFC822_HEADER:
			case F_RFC822_TEXT: {
				const char *sec = it->kind == F_SECTION ? it->section
						  : it->kind == F_RFC822 ? ""
						  : it->kind == F_RFC822_HEADER ? "HEADER" : "TEXT";
				session_printf(s, "%s ", it->label);
				write_section(s, it, PQgetvalue(res, i, 9), (size_t)PQgetlength(res, i, 9),
					      PQgetvalue(res, i, 8), (size_t)PQgetlength(res, i, 8), sec);
				break;
			}
			}
		}
		session_write(s, ")\r\n", 3);
	}
	buf_free(&fl);
	if (s->dead) {
		session_unref(s);
		return;
	}
	if (st->changedsince_set)
		st->last_batch = (uint32_t)n < st->batch;
	if (st->changedsince_set ? st->last_batch : st->next_range >= st->all.n) {
		fetch_finish(c, true);
		session_unref(s);
		return;
	}
	/* Wait for the client to take the output before reading more. */
	session_flush(s);
	if (!s->dead && session_output_pending(s))
		c->on_drain = next_batch;
	else if (!s->dead)
		next_batch(c);
	session_unref(s);
}

#define FETCH_COLUMNS \
	"SELECT m.uid, m.flags, array_to_string(m.keywords, ' ')," \
	"       to_char(m.internaldate AT TIME ZONE 'UTC', 'DD-Mon-YYYY HH24:MI:SS +0000')," \
	"       m.size, %s, %s, %s, %s, %s, m.modseq"

static void next_batch(struct cmd *c)
{
	struct fetch_state *st = c->state;
	struct session *s = c->s;
	const char *meta = st->need_meta || st->need_data
				   ? "JOIN blob b ON b.tenant_id = m.tenant_id AND b.hash = m.blob_hash" : "";
	char *cols = arena_printf(c->arena, FETCH_COLUMNS,
		st->need_meta ? "b.envelope" : "NULL::text",
		st->need_meta ? "b.bodystructure" : "NULL::text",
		st->need_meta ? "b.body" : "NULL::text",
		st->need_data ? "b.parts" : "NULL::bytea",
		st->need_data ? "b.data" : "NULL::bytea");
	if (st->changedsince_set) {
		/* RFC 7162 3.1.4.1: only messages above the modseq, read in
		 * modseq order: ORDER BY modseq LIMIT keeps the planner on the
		 * (mailbox, modseq) index even where its statistics (which span
		 * every mailbox) make "modseq > n" look common.  The set is
		 * applied as a UID span here and exactly in batch_cb. */
		const char *params[7] = {
			arena_printf(c->arena, "%lld", (long long)s->account_id),
			arena_printf(c->arena, "%lld", (long long)s->sel->mailbox_id),
			arena_printf(c->arena, "%u", st->after_uid),
			arena_printf(c->arena, "%u", st->all.hi[st->all.n - 1]),
			arena_printf(c->arena, "%llu", (unsigned long long)st->after_modseq),
			arena_printf(c->arena, "%u", st->batch),
			arena_printf(c->arena, "%u", st->all.lo[0]),
		};
		char *sql = arena_printf(c->arena,
			"%s FROM message m %s"
			" WHERE m.account_id = $1 AND m.mailbox_id = $2 AND m.modseq >= $5::bigint"
			"   AND (m.modseq, m.uid) > ($5::bigint, $3::bigint)"
			"   AND m.uid BETWEEN $7::bigint AND $4::bigint"
			" ORDER BY m.modseq, m.uid LIMIT $6::int", cols, meta);
		c->pg = pg_query(s->w->pg, sql, 7, params, NULL, NULL, 1, batch_cb, st);
		return;
	}
	/* Take UID ranges until the batch holds st->batch messages. */
	struct uid_ranges b = { 0 };
	size_t cap = st->all.n - st->next_range;
	b.lo = arena_alloc(c->arena, cap * sizeof(uint32_t));
	b.hi = arena_alloc(c->arena, cap * sizeof(uint32_t));
	uint32_t room = st->batch;
	while (st->next_range < st->all.n && room > 0) {
		uint32_t lo = MAX(st->next_uid, st->all.lo[st->next_range]);
		uint32_t hi = st->all.hi[st->next_range];
		uint32_t take = MIN(hi - lo + 1, room);
		b.lo[b.n] = lo;
		b.hi[b.n] = lo + take - 1;
		b.n++;
		room -= take;
		if (lo + take - 1 == hi) {
			st->next_range++;
			st->next_uid = 0;
		} else {
			st->next_uid = lo + take;
		}
	}
	char *lo, *hi, *min, *max;
	uid_ranges_sql(&b, c->arena, &lo, &hi);
	uid_ranges_bounds(&b, c->arena, &min, &max);
	const char *params[6] = {
		arena_printf(c->arena, "%lld", (long long)s->account_id),
		arena_printf(c->arena, "%lld", (long long)s->sel->mailbox_id),
		lo, hi, min, max,
	};
	char *sql = arena_printf(c->arena,
		"%s FROM " UID_RANGES_JOIN("m", "$3", "$4", "$5", "$6") " %s ORDER BY m.uid", cols, meta);
	c->pg = pg_query(s->w->pg, sql, 6, params, NULL, NULL, 1, batch_cb, st);
}

/* ---- VANISHED (EARLIER) for UID FETCH (RFC 7162 3.2.6) ---- */

static void vanished_abort(struct cmd *c)
{
	struct fetch_state *st = c->state;
	uidset_free(&st->vanished_uids);
}

static void vanished_done(struct cmd *c, struct vanish_read *vr, const char *err)
{
	struct fetch_state *st = c->state;
	struct session *s = c->s;
	c->on_abort = NULL;
	if (err != NULL) {
		uidset_free(&st->vanished_uids);
		cmd_unavailable(c, err);
		cmd_done(c);
		return;
	}
	/* Only UIDs of the client's set (not resolved against the view). */
	sel_vanished_earlier(s, &st->vanished_uids, &st->vanished_set, 0);
	if (st->all.n == 0)
		fetch_finish(c, true);
	else
		next_batch(c);
}

static void vanished_step(struct cmd *c)
{
	struct fetch_state *st = c->state;
	struct session *s = c->s;
	if (!st->vanished) {
		next_batch(c);
		return;
	}
	/* The client's UID set as given ("*" past every UID, so the
	 * expunge of the highest UID counts too). */
	struct seqset *set = &st->vanished_set;
	const char *err = NULL;
	struct str text;
	imap_arg_atom(&c->args[0], &text);
	seqset_parse(text, (size_t)s->w->cfg->max_args, c->arena, set, &err);
	seqset_resolve(set, UINT32_MAX);
	struct vanish_read *vr = arena_zalloc(c->arena, sizeof(*vr));
	vr->c = c;
	vr->from = st->changedsince;
	vr->lo = set->n ? set->r[0].lo : 1;
	vr->hi = seqset_max(set);
	vr->out = &st->vanished_uids;
	vr->done = vanished_done;
	uidset_init(&st->vanished_uids);
	c->on_abort = vanished_abort;
	sel_read_vanished(vr);
}

static void seen_cb(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	struct fetch_state *st = arg;
	struct cmd *c = st->c;
	struct session *s = c->s;
	session_ref(s);
	if (cmd_db_failed(c, err)) {
		session_unref(s);
		return;
	}
	if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
		uint64_t modseq = pg_u64(res, 0, 0);
		sel_wrote(s->sel, modseq);
		mailbox_notify_kind(s, s->sel->mailbox_id, modseq, "flags");
	}
	vanished_step(c);
	session_unref(s);
}

/* RFC 4466 2.4 fetch modifiers: CHANGEDSINCE n, VANISHED (RFC 7162). */
static bool parse_modifiers(struct cmd *c, struct fetch_state *st, const struct imap_arg *a, const char **why)
{
	const struct imap_arg *l;
	size_t n;
	if (!imap_arg_list(a, &l, &n) || n == 0) {
		*why = "Invalid FETCH modifiers";
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		if (imap_arg_is_atom(&l[i], "CHANGEDSINCE") && !st->changedsince_set && i + 1 < n &&
		    imap_arg_number64(&l[i + 1], &st->changedsince)) {
			st->changedsince_set = true;
			i++;
		} else if (imap_arg_is_atom(&l[i], "VANISHED") && !st->vanished) {
			st->vanished = true;
		} else {
			*why = "Invalid FETCH modifier";
			return false;
		}
	}
	if (st->vanished) {
		/* RFC 7162 3.2.6: UID FETCH only, after ENABLE QRESYNC, and
		 * only together with CHANGEDSINCE; BAD otherwise. */
		if (!c->uid) {
			*why = "VANISHED is only allowed with UID FETCH";
			return false;
		}
		if (!sess_qresync(c->s)) {
			*why = "VANISHED needs ENABLE QRESYNC first";
			return false;
		}
		if (!st->changedsince_set) {
			*why = "VANISHED needs CHANGEDSINCE";
			return false;
		}
	}
	return true;
}

enum cmd_result cmd_fetch(struct cmd *c)
{
	struct session *s = c->s;
	if (c->nargs < 2 || c->nargs > 3) {
		cmd_bad(c, "FETCH takes a message set, items and optional modifiers");
		return CMD_DONE;
	}
	struct fetch_state *st = arena_zalloc(c->arena, sizeof(*st));
	st->c = c;
	if (parse_items(st, c->arena, &c->args[1], 1) < 0) {
		cmd_bad(c, "Invalid FETCH items");
		return CMD_DONE;
	}
	const char *err = NULL;
	if (c->nargs == 3 && !parse_modifiers(c, st, &c->args[2], &err)) {
		cmd_bad(c, "%s", err);
		return CMD_DONE;
	}
	if (sel_resolve(s, &c->args[0], c->uid, c->arena, &st->all, &err) < 0) {
		cmd_bad(c, "%s", err);
		return CMD_DONE;
	}
	size_t cap = st->nitems;
	/* RFC 7162 3.1.4.1: CHANGEDSINCE implies the MODSEQ item. */
	if (st->changedsince_set && !want(st, F_MODSEQ))
		add_item(st, &cap, c->arena, (struct fetch_item){ .kind = F_MODSEQ, .label = "MODSEQ" });
	for (size_t i = 0; i < st->nitems; i++) {
		enum item_kind k = st->items[i].kind;
		if (k == F_ENVELOPE || k == F_BODYSTRUCTURE || k == F_BODY)
			st->need_meta = true;
		if (k == F_SECTION || k == F_RFC822 || k == F_RFC822_HEADER || k == F_RFC822_TEXT)
			st->need_data = true;
		if (k == F_RFC822 || k == F_RFC822_TEXT)
			st->set_seen = true;
	}
	/* RFC 7162 3.1: MODSEQ and CHANGEDSINCE are CONDSTORE enabling. */
	if (want(st, F_MODSEQ))
		condstore_enable(c);
	if (s->sel->readonly)
		st->set_seen = false;
	if (st->set_seen && !want(st, F_FLAGS)) {
		/* RFC 3501 6.4.5: the client learns of the new \Seen flag. */
		add_item(st, &cap, c->arena, (struct fetch_item){ .kind = F_FLAGS, .label = "FLAGS" });
	}
	if (st->set_seen && sess_condstore(s)) {
		/* RFC 7162 3.2.4: FETCH responses caused by an implicit \Seen
		 * carry UID and MODSEQ. */
		if (!want(st, F_UID) && !c->uid)
			add_item(st, &cap, c->arena, (struct fetch_item){ .kind = F_UID, .label = "UID" });
		if (!want(st, F_MODSEQ))
			add_item(st, &cap, c->arena, (struct fetch_item){ .kind = F_MODSEQ, .label = "MODSEQ" });
	}
	st->batch = (uint32_t)(st->need_data ? MIN(s->w->cfg->fetch_batch, 50) : s->w->cfg->fetch_batch);
	/* (changedsince, 2^32-1): the first batch starts above the modseq. */
	st->after_modseq = st->changedsince;
	st->after_uid = UINT32_MAX;
	c->state = st;
	if (st->all.n == 0 && !st->vanished)
		return sel_complete(c, c->uid, fetch_reply);
	if (!st->set_seen || st->all.n == 0) {
		vanished_step(c);
		return CMD_PENDING;
	}
	char *lo, *hi, *min, *max;
	uid_ranges_sql(&st->all, c->arena, &lo, &hi);
	uid_ranges_bounds(&st->all, c->arena, &min, &max);
	const char *params[6] = {
		arena_printf(c->arena, "%lld", (long long)s->account_id),
		arena_printf(c->arena, "%lld", (long long)s->sel->mailbox_id),
		lo, hi, min, max,
	};
	c->pg = pg_query(s->w->pg,
		"WITH target AS ("
		"  SELECT m.uid FROM " UID_RANGES_JOIN("m", "$3", "$4", "$5", "$6") " WHERE m.flags & 1 = 0), "
		"mb AS ("
		"  UPDATE mailbox SET highestmodseq = highestmodseq + 1"
		"   WHERE account_id = $1 AND id = $2 AND EXISTS (SELECT 1 FROM target)"
		"  RETURNING highestmodseq), "
		"upd AS ("
		"  UPDATE message m SET flags = m.flags | 1, modseq = mb.highestmodseq FROM mb"
		"   WHERE m.account_id = $1 AND m.mailbox_id = $2 AND m.uid IN (SELECT uid FROM target)"
		"     AND m.flags & 1 = 0 RETURNING 1) "
		"SELECT (SELECT highestmodseq FROM mb)",
		6, params, NULL, NULL, 0, seen_cb, st);
	return CMD_PENDING;
}
