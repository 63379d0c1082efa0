/* mailview.c - see mailview.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imapd/mailview.h"
#include "lib/pg.h"

/* ---- flags ---- */

static const struct {
	const char *name;
	unsigned bit;
} system_flags[] = {
	{ "\\Answered", FLAG_ANSWERED },
	{ "\\Flagged", FLAG_FLAGGED },
	{ "\\Deleted", FLAG_DELETED },
	{ "\\Seen", FLAG_SEEN },
	{ "\\Draft", FLAG_DRAFT },
};

void flags_write(struct buf *out, unsigned flags, const char *keywords, bool recent)
{
	bool first = true;
	buf_putc(out, '(');
	for (size_t i = 0; i < ARRAY_SIZE(system_flags); i++) {
		if (flags & system_flags[i].bit) {
			if (!first)
				buf_putc(out, ' ');
			buf_puts(out, system_flags[i].name);
			first = false;
		}
	}
	if (keywords != NULL && keywords[0] != '\0') {
		if (!first)
			buf_putc(out, ' ');
		buf_puts(out, keywords);
		first = false;
	}
	if (recent) {
		if (!first)
			buf_putc(out, ' ');
		buf_puts(out, "\\Recent");
	}
	buf_putc(out, ')');
}

/* RFC 3501 9: flag-keyword = atom; atom-specials and "\" are excluded, and
 * we keep keywords to printable ASCII so they store and print safely. */
static bool keyword_ok(struct str k)
{
	if (k.len == 0 || k.len > 128)
		return false;
	for (size_t i = 0; i < k.len; i++) {
		unsigned char ch = (unsigned char)k.p[i];
		if (ch <= 0x20 || ch >= 0x7f || strchr("(){%*\"\\]", ch) != NULL)
			return false;
	}
	return true;
}

static bool keyword_listed(const struct buf *kw, struct str k)
{
	const char *p = buf_ptr(kw), *end = p + kw->len;
	while (p < end) {
		const char *sp = memchr(p, ' ', (size_t)(end - p));
		size_t n = sp ? (size_t)(sp - p) : (size_t)(end - p);
		if (n == k.len && strncasecmp(p, k.p, n) == 0)
			return true;
		p += n + 1;
	}
	return false;
}

int flags_parse(const struct imap_arg *a, size_t n, size_t max_keywords, unsigned *flags,
		struct buf *kw, const char **err)
{
	size_t nkw = 0;
	*flags = 0;
	for (size_t i = 0; i < n; i++) {
		struct str f;
		if (!imap_arg_atom(&a[i], &f)) {
			*err = "Flags must be atoms";
			return -1;
		}
		if (f.len > 0 && f.p[0] == '\\') {
			size_t j;
			for (j = 0; j < ARRAY_SIZE(system_flags); j++) {
				if (str_ieq(f, system_flags[j].name)) {
					*flags |= system_flags[j].bit;
					break;
				}
			}
			if (j == ARRAY_SIZE(system_flags)) {
				*err = str_ieq(f, "\\Recent") ? "\\Recent cannot be changed by a client"
							      : "Unknown system flag";
				return -1;
			}
			continue;
		}
		if (!keyword_ok(f)) {
			*err = "Invalid keyword";
			return -1;
		}
		if (keyword_listed(kw, f))
			continue;
		if (++nkw > max_keywords) {
			*err = "Too many keywords";
			return -1;
		}
		if (kw->len > 0)
			buf_putc(kw, ' ');
		buf_append(kw, f.p, f.len);
	}
	return 0;
}

void keywords_sql_array(const char *kw, struct buf *out)
{
	/* Each element double-quoted; keywords hold no '"' or '\\' (keyword_ok). */
	buf_putc(out, '{');
	const char *p = kw;
	bool first = true;
	while (*p) {
		const char *sp = strchr(p, ' ');
		size_t n = sp ? (size_t)(sp - p) : strlen(p);
		if (n > 0) {
			buf_printf(out, "%s\"%.*s\"", first ? "" : ",", (int)n, p);
			first = false;
		}
		p += n;
		if (*p == ' ')
			p++;
	}
	buf_putc(out, '}');
}

/* ---- message sets ---- */

static void ranges_push(struct uid_ranges *r, size_t *cap, struct arena *a, uint32_t lo, uint32_t hi)
{
	if (r->n > 0 && r->hi[r->n - 1] + 1 >= lo && r->hi[r->n - 1] < hi) {
		r->count += hi - r->hi[r->n - 1];
		r->hi[r->n - 1] = hi;
		return;
	}
	if (r->n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		uint32_t *nlo = arena_alloc(a, ncap * sizeof(uint32_t));
		uint32_t *nhi = arena_alloc(a, ncap * sizeof(uint32_t));
		if (r->n) {
			memcpy(nlo, r->lo, r->n * sizeof(uint32_t));
			memcpy(nhi, r->hi, r->n * sizeof(uint32_t));
		}
		r->lo = nlo;
		r->hi = nhi;
		*cap = ncap;
	}
	r->lo[r->n] = lo;
	r->hi[r->n] = hi;
	r->n++;
	r->count += hi - lo + 1;
}

int sel_resolve(struct session *s, const struct imap_arg *arg, bool uid, struct arena *a,
		struct uid_ranges *out, const char **err)
{
	struct selected *sel = s->sel;
	const struct uidset *v = &sel->uids;
	struct str text;
	struct seqset set;
	memset(out, 0, sizeof(*out));
	if (!imap_arg_atom(arg, &text) || seqset_parse(text, (size_t)s->w->cfg->max_args, a, &set, err) < 0) {
		if (*err == NULL || !imap_arg_atom(arg, &text))
			*err = "Invalid message set";
		return -1;
	}
	size_t cap = 0;
	uint32_t count = uidset_count(v);
	if (!uid) {
		/* RFC 3501 9: "*" is the largest number in use; there is none
		 * in an empty mailbox, and numbers past it are invalid. */
		seqset_resolve(&set, count);
		if (set.n > 0 && (count == 0 || seqset_max(&set) > count)) {
			*err = "Invalid message sequence number";
			return -1;
		}
		for (size_t i = 0; i < set.n; i++) {
			uint32_t first = set.r[i].lo, last = set.r[i].hi;
			/* walk the view's ranges that hold seqs first..last */
			size_t lo = 0, hi = v->n;
			while (lo + 1 < hi) {
				size_t mid = (lo + hi) / 2;
				if (v->cum[mid] < first)
					lo = mid;
				else
					hi = mid;
			}
			for (size_t k = lo; k < v->n && v->cum[k] < last; k++) {
				uint32_t base = v->cum[k];	/* seqs base+1.. */
				uint32_t len = v->r[k].hi - v->r[k].lo + 1;
				uint32_t s0 = MAX(first, base + 1), s1 = MIN(last, base + len);
				if (s0 > s1)
					continue;
				ranges_push(out, &cap, a, v->r[k].lo + (s0 - base - 1), v->r[k].lo + (s1 - base - 1));
			}
		}
		return 0;
	}
	/* UIDs: "*" is the highest UID in the view; UIDs not in the view are
	 * simply not there (RFC 3501 6.4.8). */
	seqset_resolve(&set, uidset_max(v));
	size_t k = 0;
	for (size_t i = 0; i < set.n; i++) {
		uint32_t first = set.r[i].lo, last = set.r[i].hi;
		while (k < v->n && v->r[k].hi < first)
			k++;
		for (size_t j = k; j < v->n && v->r[j].lo <= last; j++) {
			uint32_t u0 = MAX(first, v->r[j].lo), u1 = MIN(last, v->r[j].hi);
			if (u0 <= u1)
				ranges_push(out, &cap, a, u0, u1);
		}
	}
	return 0;
}

void uid_ranges_sql(const struct uid_ranges *r, struct arena *a, char **lo, char **hi)
{
	struct buf l = BUF_INIT, h = BUF_INIT;
	buf_putc(&l, '{');
	buf_putc(&h, '{');
	for (size_t i = 0; i < r->n; i++) {
		buf_printf(&l, "%s%u", i ? "," : "", r->lo[i]);
		buf_printf(&h, "%s%u", i ? "," : "", r->hi[i]);
	}
	buf_putc(&l, '}');
	buf_putc(&h, '}');
	*lo = arena_strndup(a, buf_ptr(&l), l.len);
	*hi = arena_strndup(a, buf_ptr(&h), h.len);
	buf_free(&l);
	buf_free(&h);
}

void uid_ranges_bounds(const struct uid_ranges *r, struct arena *a, char **min, char **max)
{
	*min = arena_printf(a, "%u", r->n ? r->lo[0] : 0);
	*max = arena_printf(a, "%u", r->n ? r->hi[r->n - 1] : 0);
}

/* ---- selection ---- */

struct selected *sel_new(int64_t mailbox_id, const char *name, uint32_t uidvalidity, bool readonly)
{
	struct selected *sel = xcalloc(1, sizeof(*sel));
	sel->mailbox_id = mailbox_id;
	sel->name = xstrdup(name);
	sel->uidvalidity = uidvalidity;
	sel->readonly = readonly;
	uidset_init(&sel->uids);
	uidset_init(&sel->recent);
	uidset_init(&sel->pending_expunge);
	uidset_init(&sel->pending_new);
	sel->keywords = xstrdup("");
	return sel;
}

void sel_free(struct selected **selp)
{
	struct selected *sel = *selp;
	if (sel == NULL)
		return;
	uidset_free(&sel->uids);
	uidset_free(&sel->recent);
	uidset_free(&sel->pending_expunge);
	uidset_free(&sel->pending_new);
	free(sel->keywords);
	free(sel->own_modseqs);
	free(sel->name);
	free(sel);
	*selp = NULL;
}

void sel_own_modseq(struct selected *sel, uint64_t modseq)
{
	if (sel->n_own == sel->cap_own) {
		sel->cap_own = sel->cap_own ? sel->cap_own * 2 : 8;
		sel->own_modseqs = xrealloc(sel->own_modseqs, sel->cap_own * sizeof(uint64_t));
	}
	sel->own_modseqs[sel->n_own++] = modseq;
}

bool sel_is_own(const struct selected *sel, uint64_t modseq)
{
	for (size_t i = 0; i < sel->n_own; i++)
		if (sel->own_modseqs[i] == modseq)
			return true;
	return false;
}

bool sel_recent(const struct selected *sel, uint32_t uid)
{
	return uidset_contains(&sel->recent, uid);
}

uint32_t sel_recent_count(const struct selected *sel)
{
	uint32_t n = 0;
	struct seqset rv = uidset_view(&sel->recent);
	for (size_t i = 0; i < rv.n; i++)
		n += uidset_rank(&sel->uids, rv.r[i].hi) - uidset_rank(&sel->uids, rv.r[i].lo - 1);
	return n;
}

uint64_t pg_u64(const PGresult *r, int row, int col)
{
	return strtoull(PQgetvalue(r, row, col), NULL, 10);
}

/* ---- synchronisation ---- */

struct sync_state {
	struct cmd *c;
	void (*done)(struct cmd *c);
	uint32_t claim_above;	/* claim \Recent for new UIDs above this */
};

static void sync_finish(struct sync_state *st)
{
	struct cmd *c = st->c;
	c->pg = NULL;
	st->done(c);
}

static void claimed(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	struct sync_state *st = arg;
	struct session *s = st->c->s;
	session_ref(s);
	if (err == NULL && PQntuples(res) == 1) {
		uint32_t prev = (uint32_t)pg_u64(res, 0, 0), now = (uint32_t)pg_u64(res, 0, 1);
		if (now > prev)
			uidset_add_range(&s->sel->recent, prev + 1, now);
	}
	/* A failed claim only loses \Recent, which RFC 9051 dropped anyway. */
	sync_finish(st);
	session_unref(s);
}

static void synced(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	struct sync_state *st = arg;
	struct cmd *c = st->c;
	struct session *s = c->s;
	struct selected *sel = s->sel;
	session_ref(s);
	c->pg = NULL;
	if (err != NULL || sel == NULL) {
		if (err != NULL)
			log_warn(&s->log, "mailbox sync: %s", err);
		sync_finish(st);
		session_unref(s);
		return;
	}
	int n = PQntuples(res);
	if (n == 0 || pg_u64(res, 0, 0) != 0) {
		/* The mailbox row is gone: deleted, or renamed away. */
		sel->gone = true;
		sync_finish(st);
		session_unref(s);
		return;
	}
	uint64_t highest = pg_u64(res, 0, 1);
	uint64_t recent_uid = pg_u64(res, 0, 3);
	const char *kw = PQgetvalue(res, 0, 4);
	if (strcmp(kw, sel->keywords) != 0) {
		/* RFC 3501 7.2.6: tell the client the new set of flags. */
		free(sel->keywords);
		sel->keywords = xstrdup(kw);
		session_printf(s, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft%s%s)\r\n",
			       kw[0] ? " " : "", kw);
	}
	uint32_t top = MAX(uidset_max(&sel->uids), uidset_max(&sel->pending_new));
	uint32_t top_before = top;
	struct buf line = BUF_INIT;
	for (int i = 1; i < n; i++) {
		uint64_t kind = pg_u64(res, i, 0);
		uint32_t uid = (uint32_t)pg_u64(res, i, 1);
		if (kind == 2) {
			if (uidset_contains(&sel->uids, uid))
				uidset_add(&sel->pending_expunge, uid);
			uidset_remove(&sel->pending_new, uid);
			continue;
		}
		uint64_t modseq = pg_u64(res, i, 3);
		if (uid > top) {
			uidset_add(&sel->pending_new, uid);
			top = uid;
			continue;
		}
		if (!uidset_contains(&sel->uids, uid) || uidset_contains(&sel->pending_expunge, uid))
			continue;
		if (sel_is_own(sel, modseq))
			continue;
		buf_clear(&line);
		flags_write(&line, (unsigned)pg_u64(res, i, 2), PQgetvalue(res, i, 4), sel_recent(sel, uid));
		session_printf(s, "* %u FETCH (FLAGS %s)\r\n", uidset_seq(&sel->uids, uid), buf_ptr(&line));
	}
	buf_free(&line);
	if (highest > sel->known_modseq)
		sel->known_modseq = highest;
	/* Own modseqs at or below what is now known will not come back. */
	size_t keep = 0;
	for (size_t i = 0; i < sel->n_own; i++)
		if (sel->own_modseqs[i] > sel->known_modseq)
			sel->own_modseqs[keep++] = sel->own_modseqs[i];
	sel->n_own = keep;

	if (!sel->readonly && top > top_before && recent_uid < top) {
		char p1[24], p2[24];
		snprintf(p1, sizeof(p1), "%lld", (long long)s->account_id);
		snprintf(p2, sizeof(p2), "%lld", (long long)sel->mailbox_id);
		const char *params[2] = { p1, p2 };
		c->pg = pg_query(s->w->pg,
				 "UPDATE mailbox SET recent_prev = recent_uid, recent_uid = uidnext - 1 "
				 "WHERE account_id = $1 AND id = $2 AND recent_uid < uidnext - 1 "
				 "RETURNING recent_prev, recent_uid",
				 2, params, NULL, NULL, 0, claimed, st);
		session_unref(s);
		return;
	}
	sync_finish(st);
	session_unref(s);
}

void sel_sync(struct cmd *c, void (*done)(struct cmd *c))
{
	struct session *s = c->s;
	struct selected *sel = s->sel;
	struct sync_state *st = arena_zalloc(c->arena, sizeof(*st));
	st->c = c;
	st->done = done;
	char *p1 = arena_printf(c->arena, "%lld", (long long)s->account_id);
	char *p2 = arena_printf(c->arena, "%lld", (long long)sel->mailbox_id);
	char *p3 = arena_printf(c->arena, "%llu", (unsigned long long)sel->known_modseq);
	const char *params[3] = { p1, p2, p3 };
	/* One statement, one snapshot: the counters and every change above
	 * known_modseq (DESIGN.md invariant 2), served by the
	 * (account_id, mailbox_id, modseq) indexes. */
	c->pg = pg_query(s->w->pg,
			 "SELECT 0::int AS kind, highestmodseq, uidnext, recent_uid, "
			 "       array_to_string(keywords, ' ') "
			 "  FROM mailbox WHERE account_id = $1 AND id = $2 "
			 "UNION ALL "
			 "SELECT 1, uid, flags, modseq, array_to_string(keywords, ' ') "
			 "  FROM message WHERE account_id = $1 AND mailbox_id = $2 AND modseq > $3 "
			 "UNION ALL "
			 "SELECT 2, uid, 0, modseq, '' "
			 "  FROM expunged WHERE account_id = $1 AND mailbox_id = $2 AND modseq > $3 "
			 "ORDER BY 1, 2",
			 3, params, NULL, NULL, 0, synced, st);
}

void sel_announce(struct session *s, bool allow_expunge)
{
	struct selected *sel = s->sel;
	if (sel == NULL)
		return;
	if (allow_expunge && uidset_count(&sel->pending_expunge) > 0) {
		struct seqset view = uidset_view(&sel->pending_expunge);
		struct seqset_iter it;
		uint32_t uid;
		seqset_iter_init(&it, &view);
		while (seqset_iter_next(&it, &uid)) {
			uint32_t seq = uidset_seq(&sel->uids, uid);
			if (seq == 0)
				continue;
			session_printf(s, "* %u EXPUNGE\r\n", seq);
			uidset_remove(&sel->uids, uid);
			uidset_remove(&sel->recent, uid);
		}
		uidset_clear(&sel->pending_expunge);
	}
	if (uidset_count(&sel->pending_new) > 0) {
		struct seqset view = uidset_view(&sel->pending_new);
		for (size_t i = 0; i < view.n; i++)
			uidset_add_range(&sel->uids, view.r[i].lo, view.r[i].hi);
		uidset_clear(&sel->pending_new);
		session_printf(s, "* %u EXISTS\r\n", uidset_count(&sel->uids));
		session_printf(s, "* %u RECENT\r\n", sel_recent_count(sel));
	}
}
