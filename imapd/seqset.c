/* seqset.c - sequence sets and UID lists; the contract is in seqset.h. */
#include "imapd/seqset.h"

#include <stdlib.h>
#include <string.h>

static int seterr(const char **error, const char *msg)
{
	if (error != NULL)
		*error = msg;
	return -1;
}

/* seq-number = nz-number / "*" (RFC 9051 section 9). */
static int parse_seq_number(struct str s, size_t *i, uint32_t *out)
{
	uint64_t v = 0;
	size_t start = *i;

	if (*i < s.len && s.p[*i] == '*') {
		(*i)++;
		*out = 0;
		return 0;
	}
	/* nz-number = digit-nz *DIGIT: no leading zero, no 0 */
	if (*i >= s.len || s.p[*i] < '1' || s.p[*i] > '9')
		return -1;
	while (*i < s.len && s.p[*i] >= '0' && s.p[*i] <= '9') {
		v = v * 10 + (uint64_t)(s.p[*i] - '0');
		if (v > UINT32_MAX)
			return -1;
		(*i)++;
	}
	if (*i == start)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

int seqset_parse(struct str s, size_t max_ranges, struct arena *a, struct seqset *out,
		const char **error)
{
	size_t count = 1, i = 0, n = 0;

	if (s.len == 0)
		return seterr(error, "Empty sequence set");
	for (size_t k = 0; k < s.len; k++) {
		if (s.p[k] == ',')
			count++;
	}
	if (count > max_ranges)
		return seterr(error, "Too many ranges in sequence set");

	struct seq_range *r = arena_alloc(a, count * sizeof(*r));
	for (;;) {
		uint32_t lo, hi;
		if (parse_seq_number(s, &i, &lo) < 0)
			return seterr(error, "Invalid sequence set");
		hi = lo;
		if (i < s.len && s.p[i] == ':') {
			i++;
			if (parse_seq_number(s, &i, &hi) < 0)
				return seterr(error, "Invalid sequence set");
		}
		if (lo == 0) {
			lo = hi;	/* "*:n" is stored as n:* */
			hi = 0;
		} else if (hi != 0 && hi < lo) {
			uint32_t t = lo;
			lo = hi;
			hi = t;
		}
		r[n++] = (struct seq_range){ lo, hi };
		if (i == s.len)
			break;
		if (s.p[i] != ',')
			return seterr(error, "Invalid sequence set");
		i++;	/* a trailing "," fails on the next element */
	}
	out->r = r;
	out->n = n;
	return 0;
}

bool seqset_has_star(const struct seqset *set)
{
	for (size_t i = 0; i < set->n; i++) {
		if (set->r[i].lo == 0 || set->r[i].hi == 0)
			return true;
	}
	return false;
}

static int range_cmp(const void *a, const void *b)
{
	const struct seq_range *x = a, *y = b;
	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

void seqset_resolve(struct seqset *set, uint32_t star)
{
	size_t n = 0;

	for (size_t i = 0; i < set->n; i++) {
		uint32_t lo = set->r[i].lo ? set->r[i].lo : star;
		uint32_t hi = set->r[i].hi ? set->r[i].hi : star;
		if (lo > hi) {
			uint32_t t = lo;
			lo = hi;
			hi = t;
		}
		if (hi == 0)
			continue;	/* "*" in an empty mailbox */
		if (lo == 0)
			lo = 1;
		set->r[n++] = (struct seq_range){ lo, hi };
	}
	if (n > 1)
		qsort(set->r, n, sizeof(*set->r), range_cmp);
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		if (m > 0 && (uint64_t)set->r[m - 1].hi + 1 >= set->r[i].lo) {
			if (set->r[i].hi > set->r[m - 1].hi)
				set->r[m - 1].hi = set->r[i].hi;
		} else {
			set->r[m++] = set->r[i];
		}
	}
	set->n = m;
}

/* Index of the first range with hi >= n, or count if none. */
static size_t first_hi_ge(const struct seq_range *r, size_t count, uint32_t n)
{
	size_t lo = 0, hi = count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (r[mid].hi < n)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

bool seqset_contains(const struct seqset *set, uint32_t n)
{
	size_t i = first_hi_ge(set->r, set->n, n);
	return i < set->n && set->r[i].lo <= n && n != 0;
}

uint64_t seqset_count(const struct seqset *set)
{
	uint64_t c = 0;
	for (size_t i = 0; i < set->n; i++)
		c += (uint64_t)set->r[i].hi - set->r[i].lo + 1;
	return c;
}

uint32_t seqset_max(const struct seqset *set)
{
	return set->n > 0 ? set->r[set->n - 1].hi : 0;
}

void seqset_iter_init(struct seqset_iter *it, const struct seqset *set)
{
	it->set = set;
	it->i = 0;
	it->next = set->n > 0 ? set->r[0].lo : 0;
}

bool seqset_iter_next(struct seqset_iter *it, uint32_t *out)
{
	if (it->i >= it->set->n)
		return false;
	*out = (uint32_t)it->next;
	if (it->next >= it->set->r[it->i].hi) {
		if (++it->i < it->set->n)
			it->next = it->set->r[it->i].lo;
	} else {
		it->next++;
	}
	return true;
}

static void write_num(struct buf *out, uint32_t n)
{
	if (n == 0)
		buf_putc(out, '*');
	else
		buf_printf(out, "%u", n);
}

void seqset_write(struct buf *out, const struct seqset *set)
{
	for (size_t i = 0; i < set->n; i++) {
		if (i > 0)
			buf_putc(out, ',');
		write_num(out, set->r[i].lo);
		if (set->r[i].hi != set->r[i].lo) {
			buf_putc(out, ':');
			write_num(out, set->r[i].hi);
		}
	}
}

void seqset_write_array(struct buf *out, const uint32_t *v, size_t n)
{
	size_t i = 0;

	while (i < n) {
		size_t j = i;
		while (j + 1 < n && v[j] != UINT32_MAX && v[j + 1] == v[j] + 1)
			j++;
		if (i > 0)
			buf_putc(out, ',');
		if (j == i)
			buf_printf(out, "%u", v[i]);
		else
			buf_printf(out, "%u:%u", v[i], v[j]);
		i = j + 1;
	}
}

/* --- UID lists --- */

void uidset_init(struct uidset *u)
{
	*u = (struct uidset)UIDSET_INIT;
}

void uidset_free(struct uidset *u)
{
	free(u->r);
	free(u->cum);
	uidset_init(u);
}

void uidset_clear(struct uidset *u)
{
	u->n = 0;
}

static uint32_t range_size(const struct seq_range *r)
{
	return r->hi - r->lo + 1;	/* lo >= 1, so at most 2^32-1 */
}

static void reserve(struct uidset *u, size_t n)
{
	if (n <= u->cap)
		return;
	size_t cap = u->cap ? u->cap : 4;
	while (cap < n)
		cap *= 2;
	u->r = xrealloc(u->r, cap * sizeof(*u->r));
	u->cum = xrealloc(u->cum, cap * sizeof(*u->cum));
	u->cap = cap;
}

static void recount_from(struct uidset *u, size_t i)
{
	for (; i < u->n; i++)
		u->cum[i] = i == 0 ? 0 : u->cum[i - 1] + range_size(&u->r[i - 1]);
}

/* Replace r[i..j) with the k ranges in with[] (k <= 2). */
static void splice(struct uidset *u, size_t i, size_t j, const struct seq_range *with, size_t k)
{
	reserve(u, u->n - (j - i) + k);
	memmove(&u->r[i + k], &u->r[j], (u->n - j) * sizeof(*u->r));
	memcpy(&u->r[i], with, k * sizeof(*with));
	u->n = u->n - (j - i) + k;
	recount_from(u, i);
}

void uidset_add(struct uidset *u, uint32_t uid)
{
	uidset_add_range(u, uid, uid);
}

void uidset_add_range(struct uidset *u, uint32_t lo, uint32_t hi)
{
	if (lo > hi) {
		uint32_t t = lo;
		lo = hi;
		hi = t;
	}
	if (lo == 0)
		lo = 1;
	if (hi == 0)
		return;

	/* New mail: above everything we have. */
	if (u->n == 0 || lo > u->r[u->n - 1].hi) {
		if (u->n > 0 && lo == u->r[u->n - 1].hi + 1) {
			u->r[u->n - 1].hi = hi;
			return;
		}
		reserve(u, u->n + 1);
		u->r[u->n] = (struct seq_range){ lo, hi };
		u->n++;
		recount_from(u, u->n - 1);
		return;
	}
	/* r[i..j) overlap or touch lo..hi. */
	size_t i = first_hi_ge(u->r, u->n, lo - 1);
	size_t j = i;
	while (j < u->n && (uint64_t)u->r[j].lo <= (uint64_t)hi + 1)
		j++;
	struct seq_range m = { lo, hi };
	if (j > i) {
		m.lo = MIN(lo, u->r[i].lo);
		m.hi = MAX(hi, u->r[j - 1].hi);
	}
	splice(u, i, j, &m, 1);
}

uint32_t uidset_remove_range(struct uidset *u, uint32_t lo, uint32_t hi)
{
	if (lo > hi) {
		uint32_t t = lo;
		lo = hi;
		hi = t;
	}
	if (lo == 0)
		lo = 1;
	if (hi == 0)
		return 0;

	size_t i = first_hi_ge(u->r, u->n, lo);
	size_t j = i;
	while (j < u->n && u->r[j].lo <= hi)
		j++;
	if (i == j)
		return 0;

	struct seq_range keep[2];
	size_t k = 0;
	uint64_t removed = 0;
	for (size_t x = i; x < j; x++)
		removed += range_size(&u->r[x]);
	if (u->r[i].lo < lo)
		keep[k++] = (struct seq_range){ u->r[i].lo, lo - 1 };
	if (u->r[j - 1].hi > hi)
		keep[k++] = (struct seq_range){ hi + 1, u->r[j - 1].hi };
	for (size_t x = 0; x < k; x++)
		removed -= range_size(&keep[x]);
	splice(u, i, j, keep, k);
	return (uint32_t)removed;
}

bool uidset_remove(struct uidset *u, uint32_t uid)
{
	return uid != 0 && uidset_remove_range(u, uid, uid) > 0;
}

uint32_t uidset_count(const struct uidset *u)
{
	return u->n > 0 ? u->cum[u->n - 1] + range_size(&u->r[u->n - 1]) : 0;
}

uint32_t uidset_max(const struct uidset *u)
{
	return u->n > 0 ? u->r[u->n - 1].hi : 0;
}

bool uidset_contains(const struct uidset *u, uint32_t uid)
{
	struct seqset v = uidset_view(u);
	return seqset_contains(&v, uid);
}

uint32_t uidset_uid(const struct uidset *u, uint32_t seq)
{
	if (seq == 0 || seq > uidset_count(u))
		return 0;
	/* The last range whose cum is below seq holds it. */
	size_t lo = 0, hi = u->n;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (u->cum[mid] < seq)
			lo = mid;
		else
			hi = mid;
	}
	return u->r[lo].lo + (seq - u->cum[lo] - 1);
}

uint32_t uidset_rank(const struct uidset *u, uint32_t uid)
{
	size_t i = first_hi_ge(u->r, u->n, uid);
	if (i == u->n)
		return uidset_count(u);
	if (uid < u->r[i].lo)
		return u->cum[i];
	return u->cum[i] + (uid - u->r[i].lo + 1);
}

uint32_t uidset_seq(const struct uidset *u, uint32_t uid)
{
	return uidset_contains(u, uid) ? uidset_rank(u, uid) : 0;
}

struct seqset uidset_view(const struct uidset *u)
{
	return (struct seqset){ u->r, u->n };
}
