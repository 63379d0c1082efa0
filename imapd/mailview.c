/* mailview.c - see mailview.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imapd/mailview.h"
#include "imapd/watch.h"
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
	watch_detach(sel);
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

void holes_each(const char *holes, void (*fn)(void *arg, uint32_t lo, uint32_t hi), void *arg)
{
	const char *p = holes;
	while (*p) {
		char *end;
		unsigned long lo = strtoul(p, &end, 10), hi = lo;
		if (end == p)
			break;
		if (*end == ':') {
			const char *q = end + 1;
			hi = strtoul(q, &end, 10);
			if (end == q)
				break;
		}
		if (lo >= 1 && lo <= hi && hi <= UINT32_MAX)
			fn(arg, (uint32_t)lo, (uint32_t)hi);
		p = *end == ',' ? end + 1 : end;
	}
}

static void expired_hole(void *arg, uint32_t lo, uint32_t hi)
{
	struct selected *sel = arg;
	/* The view's UIDs in lo..hi (usually none). */
	struct seqset v = uidset_view(&sel->uids);
	for (size_t i = 0; i < v.n; i++) {
		uint32_t a = MAX(v.r[i].lo, lo), b = MIN(v.r[i].hi, hi);
		if (a > b)
			continue;
		uidset_add_range(&sel->pending_expunge, a, b);
		/* Its modseq is gone: keep the client's HIGHESTMODSEQ at
		 * what this session knows. */
		if (sel->pending_expunge_modseq == 0 || sel->known_modseq + 1 < sel->pending_expunge_modseq)
			sel->pending_expunge_modseq = sel->known_modseq + 1;
	}
}

int sel_apply_delta(struct cmd *c, PGresult *res, uint32_t limit)
{
	struct session *s = c->s;
	struct selected *sel = s->sel;
	int n = PQntuples(res);
	if (n == 0 || pg_u64(res, 0, 0) != 0) {
		/* The mailbox row is gone: deleted, or renamed away. */
		sel->gone = true;
		return -1;
	}
	uint64_t highest = pg_u64(res, 0, 1);
	/* A branch that returned `limit` rows may have more: only modseqs
	 * below its highest are complete. */
	uint32_t count[3] = { 0, 0, 0 };
	uint64_t top_ms[3] = { 0, 0, 0 };
	for (int i = 1; i < n; i++) {
		unsigned kind = (unsigned)pg_u64(res, i, 0);
		uint64_t m = pg_u64(res, i, 3);
		if (kind > 2)
			continue;
		count[kind]++;
		if (m > top_ms[kind])
			top_ms[kind] = m;
	}
	int truncated = 0;
	for (unsigned k = 1; k <= 2; k++) {
		if (limit > 0 && count[k] >= limit && top_ms[k] - 1 < highest) {
			highest = top_ms[k] - 1;
			sel->dirty = true;
			truncated = SEL_DELTA_TRUNCATED;
		}
	}
	uint64_t recent_uid = pg_u64(res, 0, 3);
	const char *kw = PQgetvalue(res, 0, 4);
	if (strcmp(kw, sel->keywords) != 0) {
		/* RFC 3501 7.2.6: tell the client the new set of flags. */
		free(sel->keywords);
		sel->keywords = xstrdup(kw);
		session_printf(s, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft%s%s)\r\n",
			       kw[0] ? " " : "", kw);
	}
	if (pg_u64(res, 0, 5) > sel->known_modseq && !PQgetisnull(res, 0, 6)) {
		/* Tombstones above what this session knows have expired: any
		 * UID of the view that is now a hole was expunged meanwhile,
		 * at a modseq not kept, above known_modseq. */
		holes_each(PQgetvalue(res, 0, 6), expired_hole, sel);
	}
	uint32_t top = MAX(uidset_max(&sel->uids), uidset_max(&sel->pending_new));
	uint32_t top_before = top;
	struct buf line = BUF_INIT;
	for (int i = 1; i < n; i++) {
		uint64_t kind = pg_u64(res, i, 0);
		uint32_t uid = (uint32_t)pg_u64(res, i, 1);
		uint64_t modseq = pg_u64(res, i, 3);
		if (modseq <= sel->known_modseq || modseq > highest)
			continue;	/* told before, or beyond the complete part */
		if (kind == 2) {
			if (uidset_contains(&sel->uids, uid) && !uidset_contains(&sel->pending_expunge, uid)) {
				uidset_add(&sel->pending_expunge, uid);
				if (sel->pending_expunge_modseq == 0 || modseq < sel->pending_expunge_modseq)
					sel->pending_expunge_modseq = modseq;
			}
			uidset_remove(&sel->pending_new, uid);
			continue;
		}
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
		sel_fetch_line(c, uidset_seq(&sel->uids, uid), uid, buf_ptr(&line), modseq, false);
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
	return truncated | (!sel->readonly && top > top_before && recent_uid < top ? SEL_DELTA_CLAIM : 0);
}

void sel_claim_recent(struct cmd *c, void (*done)(struct cmd *c))
{
	struct session *s = c->s;
	struct sync_state *st = arena_zalloc(c->arena, sizeof(*st));
	st->c = c;
	st->done = done;
	char *p1 = arena_printf(c->arena, "%lld", (long long)s->account_id);
	char *p2 = arena_printf(c->arena, "%lld", (long long)s->sel->mailbox_id);
	const char *params[2] = { p1, p2 };
	c->pg = pg_query(s->w->pg,
			 "UPDATE mailbox SET recent_prev = recent_uid, recent_uid = uidnext - 1 "
			 "WHERE account_id = $1 AND id = $2 AND recent_uid < uidnext - 1 "
			 "RETURNING recent_prev, recent_uid",
			 2, params, NULL, NULL, 0, claimed, st);
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
		/* Still stale: the next point tries again. */
		if (sel != NULL)
			sel->dirty = true;
		sync_finish(st);
		session_unref(s);
		return;
	}
	int r = sel_apply_delta(c, res, SEL_DELTA_LIMIT);
	if (r > 0 && (r & SEL_DELTA_TRUNCATED) && !s->dead) {
		/* More than one read's worth of changes: go on from where the
		 * complete part ended. */
		sel_sync(c, st->done);
		session_unref(s);
		return;
	}
	if (r > 0 && (r & SEL_DELTA_CLAIM)) {
		sel_claim_recent(c, st->done);
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
	/* Notifications arriving from now on ask for another sync. */
	sel->dirty = false;
	char *p1 = arena_printf(c->arena, "%lld", (long long)s->account_id);
	char *p2 = arena_printf(c->arena, "%lld", (long long)sel->mailbox_id);
	char *p3 = arena_printf(c->arena, "%llu", (unsigned long long)sel->known_modseq);
	char *p4 = arena_printf(c->arena, "%u", SEL_DELTA_LIMIT);
	const char *params[4] = { p1, p2, p3, p4 };
	c->pg = pg_query(s->w->pg, SEL_DELTA_SQL, 4, params, NULL, NULL, 0, synced, st);
}

void sel_announce(struct session *s, bool allow_expunge)
{
	struct selected *sel = s->sel;
	if (sel == NULL)
		return;
	bool expunged = allow_expunge && uidset_count(&sel->pending_expunge) > 0;
	if (allow_expunge && uidset_count(&sel->pending_expunge) > 0 && sess_qresync(s)) {
		/* RFC 7162 3.2.10.2: VANISHED instead of EXPUNGE, one line,
		 * only UIDs the client was told of (all of the view's). */
		sel_write_vanished(s, &sel->pending_expunge, false);
		struct seqset view = uidset_view(&sel->pending_expunge);
		for (size_t i = 0; i < view.n; i++) {
			uidset_remove_range(&sel->uids, view.r[i].lo, view.r[i].hi);
			uidset_remove_range(&sel->recent, view.r[i].lo, view.r[i].hi);
		}
		uidset_clear(&sel->pending_expunge);
		sel->pending_expunge_modseq = 0;
	} else if (allow_expunge && uidset_count(&sel->pending_expunge) > 0) {
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
		sel->pending_expunge_modseq = 0;
	}
	if (uidset_count(&sel->pending_new) > 0) {
		struct seqset view = uidset_view(&sel->pending_new);
		for (size_t i = 0; i < view.n; i++)
			uidset_add_range(&sel->uids, view.r[i].lo, view.r[i].hi);
		uidset_clear(&sel->pending_new);
		session_printf(s, "* %u EXISTS\r\n", uidset_count(&sel->uids));
		session_printf(s, "* %u RECENT\r\n", sel_recent_count(sel));
	}
	/* Everything up to known_modseq is told now: say so, so a client
	 * that caches can start its next resync from here (Dovecot does the
	 * same; RFC 7162 6: the client must take the code). */
	if (expunged && sess_condstore(s))
		session_printf(s, "* OK [HIGHESTMODSEQ %llu] Highest\r\n", (unsigned long long)sel->known_modseq);
}

/* ---- CONDSTORE / QRESYNC helpers ---- */

uint64_t sel_safe_modseq(const struct selected *sel)
{
	if (uidset_count(&sel->pending_expunge) > 0 && sel->pending_expunge_modseq > 0 &&
	    sel->pending_expunge_modseq - 1 < sel->known_modseq)
		return sel->pending_expunge_modseq - 1;
	return sel->known_modseq;
}

void sel_wrote(struct selected *sel, uint64_t modseq)
{
	if (modseq == 0 || modseq <= sel->known_modseq)
		return;
	if (modseq == sel->known_modseq + 1 && !sel->dirty) {
		/* The counter serialises writers (DESIGN.md invariant 1): no
		 * other change can sit between known_modseq and ours. */
		sel->known_modseq = modseq;
		return;
	}
	sel_own_modseq(sel, modseq);
	sel->dirty = true;
}

void sel_fetch_line(struct cmd *c, uint32_t seq, uint32_t uid, const char *flags, uint64_t modseq,
		    bool with_uid)
{
	struct buf line = BUF_INIT;
	sel_fetch_format(c, &line, seq, uid, flags, modseq, with_uid);
	session_write(c->s, buf_ptr(&line), line.len);
	buf_free(&line);
}

void sel_fetch_format(struct cmd *c, struct buf *line, uint32_t seq, uint32_t uid, const char *flags,
		      uint64_t modseq, bool with_uid)
{
	struct session *s = c->s;
	bool cs = sess_condstore(s);
	buf_printf(line, "* %u FETCH (", seq);
	const char *sp = "";
	if (cs || with_uid) {
		buf_printf(line, "UID %u", uid);
		sp = " ";
	}
	if (flags != NULL) {
		buf_printf(line, "%sFLAGS %s", sp, flags);
		sp = " ";
	}
	if (cs) {
		buf_printf(line, "%sMODSEQ (%llu)", sp, (unsigned long long)modseq);
		if (modseq > c->modseq_told)
			c->modseq_told = modseq;
	}
	buf_puts(line, ")\r\n");
}

void sel_write_vanished(struct session *s, const struct uidset *u, bool earlier)
{
	if (uidset_count(u) == 0)
		return;
	struct buf line = BUF_INIT;
	buf_puts(&line, earlier ? "* VANISHED (EARLIER) " : "* VANISHED ");
	struct seqset v = uidset_view(u);
	seqset_write(&line, &v);
	buf_puts(&line, "\r\n");
	session_write(s, buf_ptr(&line), line.len);
	buf_free(&line);
}

void condstore_enable(struct cmd *c)
{
	struct session *s = c->s;
	if (sess_condstore(s))
		return;
	s->enabled |= EXT_CONDSTORE;
	/* RFC 7162 3.1: the first enabling command with a mailbox selected
	 * tells its HIGHESTMODSEQ. */
	if (s->sel != NULL)
		session_printf(s, "* OK [HIGHESTMODSEQ %llu] Highest\r\n",
			       (unsigned long long)sel_safe_modseq(s->sel));
}

static void complete_now(struct cmd *c)
{
	struct session *s = c->s;
	struct selected *sel = s->sel;
	if (sel != NULL && sel->gone) {
		/* The mailbox was deleted or renamed away under us. */
		c->reply(c);
		session_bye(s, "Selected mailbox was deleted or renamed, have to disconnect");
		return;
	}
	sel_announce(s, c->allow_expunge);
	if (sel != NULL && sess_condstore(s) && c->modseq_told > 0 &&
	    uidset_count(&sel->pending_expunge) > 0 && c->modseq_told >= sel->pending_expunge_modseq) {
		/* RFC 7162 3.2 and 6: MODSEQs above an expunge the client
		 * has not been told of; its HIGHESTMODSEQ must stay below. */
		session_printf(s, "* OK [HIGHESTMODSEQ %llu] Expunges pending\r\n",
			       (unsigned long long)sel_safe_modseq(sel));
	}
	c->reply(c);
}

static void complete_synced(struct cmd *c)
{
	complete_now(c);
	cmd_done(c);
}

enum cmd_result sel_complete(struct cmd *c, bool allow_expunge, void (*reply)(struct cmd *c))
{
	struct session *s = c->s;
	c->allow_expunge = allow_expunge;
	c->reply = reply;
	if (s->sel != NULL && s->sel->dirty && !s->sel->gone && !s->dead) {
		sel_sync(c, complete_synced);
		return CMD_PENDING;
	}
	complete_now(c);
	return CMD_DONE;
}

/* ---- reading what vanished (RFC 7162 3.2.5.1, 3.2.6) ---- */

static void vanished_batch(struct vanish_read *vr);

static void add_hole(void *arg, uint32_t lo, uint32_t hi)
{
	struct vanish_read *vr = arg;
	uint32_t a = MAX(lo, vr->lo), b = MIN(hi, vr->hi);
	if (a <= b)
		uidset_add_range(vr->out, a, b);
}

static void vanished_read_cb(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	struct vanish_read *vr = arg;
	struct cmd *c = vr->c;
	struct session *s = c->s;
	session_ref(s);
	c->pg = NULL;
	if (err != NULL || PQntuples(res) == 0) {
		vr->done(c, vr, err != NULL ? err : "mailbox gone");
		session_unref(s);
		return;
	}
	uint64_t floor = pg_u64(res, 0, 1);
	if (vr->from < floor) {
		/* Tombstones at or below the floor were folded into ranges
		 * without their modseqs: every hole counts (3.2.6 note). */
		uidset_clear(vr->out);
		holes_each(PQgetvalue(res, 0, 2), add_hole, vr);
		vr->below_floor = true;
		vr->done(c, vr, NULL);
		session_unref(s);
		return;
	}
	int n = PQntuples(res);
	for (int i = 1; i < n; i++) {
		uint32_t uid = (uint32_t)pg_u64(res, i, 1);
		vr->after_uid = uid;
		vr->after_modseq = pg_u64(res, i, 3);
		uidset_add(vr->out, uid);
	}
	if ((uint32_t)(n - 1) >= vr->batch)
		vanished_batch(vr);
	else
		vr->done(c, vr, NULL);
	session_unref(s);
}

static void vanished_batch(struct vanish_read *vr)
{
	struct cmd *c = vr->c;
	struct session *s = c->s;
	const char *params[9] = {
		arena_printf(c->arena, "%lld", (long long)s->account_id),
		arena_printf(c->arena, "%lld", (long long)s->sel->mailbox_id),
		arena_printf(c->arena, "%llu", (unsigned long long)vr->from),
		arena_printf(c->arena, "%llu", (unsigned long long)vr->after_modseq),
		arena_printf(c->arena, "%u", vr->after_uid),
		arena_printf(c->arena, "%llu", (unsigned long long)vr->to),
		arena_printf(c->arena, "%u", vr->lo),
		arena_printf(c->arena, "%u", vr->hi),
		arena_printf(c->arena, "%u", vr->batch),
	};
	/* In modseq order with a (modseq, uid) keyset: the planner stays on
	 * the (mailbox, modseq) index (see SEL_DELTA_SQL). */
	c->pg = pg_query(s->w->pg,
		"SELECT 0 AS kind, vanished_floor AS a,"
		"       CASE WHEN $3::bigint < vanished_floor THEN mailbox_holes($1, $2) END AS h, 0::bigint AS m"
		"  FROM mailbox WHERE account_id = $1 AND id = $2 "
		"UNION ALL "
		"SELECT * FROM (SELECT 1, e.uid, NULL::text, e.modseq FROM expunged e"
		"  WHERE e.account_id = $1 AND e.mailbox_id = $2 AND e.modseq >= $4::bigint"
		"    AND (e.modseq, e.uid) > ($4::bigint, $5::bigint)"
		"    AND ($6::bigint = 0 OR e.modseq <= $6::bigint)"
		"    AND e.uid BETWEEN $7::bigint AND $8::bigint"
		"  ORDER BY e.modseq, e.uid LIMIT $9::int) t",
		9, params, NULL, NULL, 0, vanished_read_cb, vr);
}

void sel_read_vanished(struct vanish_read *vr)
{
	vr->after_modseq = vr->from;
	vr->after_uid = UINT32_MAX;
	if (vr->batch == 0)
		vr->batch = SEL_DELTA_LIMIT;
	vanished_batch(vr);
}

void sel_vanished_earlier(struct session *s, struct uidset *got, const struct seqset *only, uint32_t above)
{
	struct uidset out = UIDSET_INIT;
	struct seqset g = uidset_view(got);
	for (size_t i = 0; i < g.n; i++) {
		uint32_t lo = MAX(g.r[i].lo, above + 1), hi = g.r[i].hi;
		if (lo > hi)
			continue;
		if (only == NULL) {
			uidset_add_range(&out, lo, hi);
			continue;
		}
		for (size_t k = 0; k < only->n; k++) {
			uint32_t a = MAX(lo, only->r[k].lo), b = MIN(hi, only->r[k].hi);
			if (a <= b)
				uidset_add_range(&out, a, b);
		}
	}
	uidset_free(got);
	struct seqset v = uidset_view(&s->sel->uids);
	for (size_t i = 0; i < v.n && uidset_count(&out) > 0; i++)
		uidset_remove_range(&out, v.r[i].lo, v.r[i].hi);
	sel_write_vanished(s, &out, true);
	uidset_free(&out);
}
