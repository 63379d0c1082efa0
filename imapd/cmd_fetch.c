/* FETCH and UID FETCH (RFC 3501 6.4.5, 6.4.8, 7.4.2).
 *
 * ENVELOPE, BODY and BODYSTRUCTURE were computed once when the message was
 * stored; BODY[section] is cut from the stored bytes with the stored part
 * table (lib/mime.c), never by parsing the message again.  Messages are
 * read in batches (fetch_batch, fewer when bodies are needed) and the next
 * batch is only asked for once the client has taken most of the output of
 * the last one, so a FETCH 1:* of a large mailbox holds a bounded amount of
 * memory.  Non-PEEK body items set \Seen first (RFC 3501 6.4.5).
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
	F_SECTION, F_RFC822, F_RFC822_HEADER, F_RFC822_TEXT,
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
	if (st->next_range >= st->all.n) {
		/* A sequence-number FETCH may not be followed by EXPUNGE
		 * responses (RFC 3501 7.4.1); UID FETCH may. */
		sel_announce(s, c->uid);
		cmd_ok(c, "%sFetch completed", c->uid ? "UID " : "");
		cmd_done(c);
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

static void next_batch(struct cmd *c)
{
	struct fetch_state *st = c->state;
	struct session *s = c->s;
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
		"SELECT m.uid, m.flags, array_to_string(m.keywords, ' '),"
		"       to_char(m.internaldate AT TIME ZONE 'UTC', 'DD-Mon-YYYY HH24:MI:SS +0000'),"
		"       m.size, %s, %s, %s, %s, %s"
		"  FROM " UID_RANGES_JOIN("m", "$3", "$4", "$5", "$6") " %s"
		" ORDER BY m.uid",
		st->need_meta ? "b.envelope" : "NULL::text",
		st->need_meta ? "b.bodystructure" : "NULL::text",
		st->need_meta ? "b.body" : "NULL::text",
		st->need_data ? "b.parts" : "NULL::bytea",
		st->need_data ? "b.data" : "NULL::bytea",
		st->need_meta || st->need_data ? "JOIN blob b ON b.tenant_id = m.tenant_id AND b.hash = m.blob_hash" : "");
	c->pg = pg_query(s->w->pg, sql, 6, params, NULL, NULL, 1, batch_cb, st);
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
		sel_own_modseq(s->sel, pg_u64(res, 0, 0));
		mailbox_notify(s, s->sel->mailbox_id, pg_u64(res, 0, 0));
	}
	next_batch(c);
	session_unref(s);
}

enum cmd_result cmd_fetch(struct cmd *c)
{
	struct session *s = c->s;
	if (c->nargs < 2) {
		cmd_bad(c, "FETCH takes a message set and items");
		return CMD_DONE;
	}
	struct fetch_state *st = arena_zalloc(c->arena, sizeof(*st));
	st->c = c;
	if (parse_items(st, c->arena, &c->args[1], c->nargs - 1) < 0) {
		cmd_bad(c, "Invalid FETCH items");
		return CMD_DONE;
	}
	const char *err = NULL;
	if (sel_resolve(s, &c->args[0], c->uid, c->arena, &st->all, &err) < 0) {
		cmd_bad(c, "%s", err);
		return CMD_DONE;
	}
	for (size_t i = 0; i < st->nitems; i++) {
		enum item_kind k = st->items[i].kind;
		if (k == F_ENVELOPE || k == F_BODYSTRUCTURE || k == F_BODY)
			st->need_meta = true;
		if (k == F_SECTION || k == F_RFC822 || k == F_RFC822_HEADER || k == F_RFC822_TEXT)
			st->need_data = true;
		if (k == F_RFC822 || k == F_RFC822_TEXT)
			st->set_seen = true;
	}
	if (s->sel->readonly)
		st->set_seen = false;
	if (st->set_seen && !want(st, F_FLAGS)) {
		/* RFC 3501 6.4.5: the client learns of the new \Seen flag. */
		size_t cap = st->nitems;
		add_item(st, &cap, c->arena, (struct fetch_item){ .kind = F_FLAGS, .label = "FLAGS" });
	}
	st->batch = (uint32_t)(st->need_data ? MIN(s->w->cfg->fetch_batch, 50) : s->w->cfg->fetch_batch);
	c->state = st;
	if (st->all.n == 0) {
		sel_announce(s, c->uid);
		cmd_ok(c, "%sFetch completed", c->uid ? "UID " : "");
		return CMD_DONE;
	}
	if (!st->set_seen) {
		next_batch(c);
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
