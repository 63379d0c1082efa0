/* mailbox.c - mailbox names, hierarchy order and LIST patterns; see
 * mailbox.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imapd/mailbox.h"
#include "lib/mutf7.h"
#include "notify/notify.h"

/* ---- names ---- */

static bool is_inbox_component(const char *p, size_t len)
{
	return len == 5 && str_ieq(str_make(p, 5), "INBOX");
}

bool mailbox_in_inbox_tree(struct str name)
{
	return name.len >= 5 && memcmp(name.p, "INBOX", 5) == 0 &&
	       (name.len == 5 || name.p[5] == MAILBOX_SEP);
}

enum mailbox_name_result mailbox_name_parse(struct arena *a, struct str wire, size_t max_octets,
					    unsigned flags, struct str *out, const char **err)
{
	struct buf b = BUF_INIT;
	const char *why = NULL;
	if (mutf7_decode(wire, &b, &why) != 0) {
		buf_free(&b);
		*err = arena_printf(a, "Invalid mailbox name: %s", why);
		return MAILBOX_NAME_BAD;
	}
	char *name = arena_strndup(a, buf_ptr(&b), b.len);
	size_t len = b.len;
	buf_free(&b);

	if ((flags & MAILBOX_NAME_TRAILING_SEP) && len > 1 && name[len - 1] == MAILBOX_SEP)
		name[--len] = '\0';
	if (len == 0) {
		*err = "[CANNOT] Invalid mailbox name: empty";
		return MAILBOX_NAME_NO;
	}
	if (len > max_octets) {
		*err = arena_printf(a, "[LIMIT] Mailbox name too long (at most %zu octets of UTF-8)",
				    max_octets);
		return MAILBOX_NAME_NO;
	}
	if (name[0] == MAILBOX_SEP) {
		*err = "[CANNOT] Invalid mailbox name: it starts with \"/\"";
		return MAILBOX_NAME_NO;
	}
	if (name[len - 1] == MAILBOX_SEP) {
		*err = "[CANNOT] Invalid mailbox name: it ends with \"/\"";
		return MAILBOX_NAME_NO;
	}
	/* The decoder produced strict UTF-8; check what it may contain. */
	for (size_t i = 0; i < len;) {
		if (name[i] == MAILBOX_SEP && name[i + 1] == MAILBOX_SEP) {
			*err = "[CANNOT] Invalid mailbox name: empty hierarchy level (\"//\")";
			return MAILBOX_NAME_NO;
		}
		uint32_t cp;
		size_t n = mutf7_utf8_next(name + i, len - i, &cp);
		if (n == 0) {	/* cannot happen after mutf7_decode */
			*err = "Invalid mailbox name: not UTF-8";
			return MAILBOX_NAME_BAD;
		}
		if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) {
			*err = "[CANNOT] Invalid mailbox name: control characters are not allowed";
			return MAILBOX_NAME_NO;
		}
		if (cp == '*' || cp == '%') {
			*err = "[CANNOT] Invalid mailbox name: \"*\" and \"%\" are not allowed";
			return MAILBOX_NAME_NO;
		}
		i += n;
	}
	/* RFC 3501 5.1: INBOX is case-insensitive, stored as "INBOX". */
	size_t first = strcspn(name, "/");
	if (is_inbox_component(name, first))
		memcpy(name, "INBOX", 5);
	*out = str_make(name, len);
	return MAILBOX_NAME_OK;
}

bool mailbox_arg(struct cmd *c, const struct imap_arg *arg, unsigned flags, struct str *out)
{
	struct str wire;
	if (!imap_arg_astring(arg, &wire)) {
		cmd_bad(c, "Mailbox name expected");
		return false;
	}
	const char *err;
	switch (mailbox_name_parse(c->arena, wire, (size_t)c->s->w->cfg->max_mailbox_name, flags, out,
				   &err)) {
	case MAILBOX_NAME_OK:
		return true;
	case MAILBOX_NAME_BAD:
		cmd_bad(c, "%s", err);
		return false;
	case MAILBOX_NAME_NO:
	default:
		cmd_no(c, "%s", err);
		return false;
	}
}

void mailbox_write_name(struct buf *out, struct str name)
{
	struct buf w = BUF_INIT;
	const char *err;
	if (mutf7_encode(name, &w, &err) == 0)
		imap_write_astring(out, buf_str(&w));
	else
		imap_write_string(out, name);
	buf_free(&w);
}

/* ---- hierarchy order ---- */

static unsigned order_octet(unsigned char c)
{
	return c == MAILBOX_SEP ? 0 : (unsigned)c + 1;
}

int mailbox_cmp(const void *pa, const void *pb)
{
	const struct str *a = pa, *b = pb;
	bool ia = mailbox_in_inbox_tree(*a), ib = mailbox_in_inbox_tree(*b);
	if (ia != ib)
		return ia ? -1 : 1;
	size_t n = MIN(a->len, b->len);
	for (size_t i = 0; i < n; i++) {
		unsigned x = order_octet((unsigned char)a->p[i]), y = order_octet((unsigned char)b->p[i]);
		if (x != y)
			return x < y ? -1 : 1;
	}
	return a->len < b->len ? -1 : a->len > b->len ? 1 : 0;
}

bool mailbox_is_below(struct str child, struct str parent)
{
	return child.len > parent.len + 1 && memcmp(child.p, parent.p, parent.len) == 0 &&
	       child.p[parent.len] == MAILBOX_SEP;
}

/* ---- patterns ---- */

struct mailbox_pattern {
	size_t npos;		/* pattern positions; state bit npos = accepted */
	size_t words;		/* uint64_t per state */
	bool never;		/* matches nothing */
	uint64_t *lit;		/* [256][words]: bit j set when position j is that octet */
	uint64_t *star;		/* positions holding "*" */
	uint64_t *pct;		/* positions holding "%" */
	uint64_t *wild;		/* star | pct */
};

static void bit_set(uint64_t *v, size_t j)
{
	v[j / 64] |= (uint64_t)1 << (j % 64);
}

static bool bit_get(const uint64_t *v, size_t j)
{
	return (v[j / 64] >> (j % 64)) & 1;
}

struct mailbox_pattern *mailbox_pattern_new(struct arena *a, struct str pat, size_t max_literal)
{
	struct mailbox_pattern *p = arena_zalloc(a, sizeof(*p));
	/* Merge runs of wildcards: any "*" in a run makes it "*". */
	char *q = arena_alloc(a, pat.len + 1);
	size_t n = 0, literals = 0;
	for (size_t i = 0; i < pat.len;) {
		char c = pat.p[i];
		if (c != '*' && c != '%') {
			q[n++] = c;
			literals++;
			i++;
			continue;
		}
		bool star = false;
		while (i < pat.len && (pat.p[i] == '*' || pat.p[i] == '%'))
			star |= pat.p[i++] == '*';
		q[n++] = star ? '*' : '%';
	}
	if (literals > max_literal) {
		p->never = true;
		n = 0;
	}
	p->npos = n;
	p->words = (n + 1 + 63) / 64;
	p->lit = arena_zalloc(a, 256 * p->words * sizeof(uint64_t));
	p->star = arena_zalloc(a, p->words * sizeof(uint64_t));
	p->pct = arena_zalloc(a, p->words * sizeof(uint64_t));
	p->wild = arena_zalloc(a, p->words * sizeof(uint64_t));
	for (size_t j = 0; j < n; j++) {
		if (q[j] == '*') {
			bit_set(p->star, j);
			bit_set(p->wild, j);
		} else if (q[j] == '%') {
			bit_set(p->pct, j);
			bit_set(p->wild, j);
		} else {
			bit_set(p->lit + (size_t)(unsigned char)q[j] * p->words, j);
		}
	}
	return p;
}

size_t mailbox_pattern_words(const struct mailbox_pattern *p)
{
	return p->words;
}

/* A wildcard also matches nothing: a state at a wildcard position is also
 * at the position after it.  Runs were merged, so one step suffices. */
static void closure(const struct mailbox_pattern *p, uint64_t *st)
{
	uint64_t carry = 0;
	for (size_t w = 0; w < p->words; w++) {
		uint64_t x = st[w] & p->wild[w];
		uint64_t next_carry = x >> 63;
		st[w] |= (x << 1) | carry;
		carry = next_carry;
	}
}

void mailbox_pattern_start(const struct mailbox_pattern *p, uint64_t *st)
{
	memset(st, 0, p->words * sizeof(uint64_t));
	if (p->never)
		return;
	st[0] = 1;
	closure(p, st);
}

void mailbox_pattern_feed(const struct mailbox_pattern *p, uint64_t *st, const char *s, size_t n,
			  size_t pos, size_t fold_below)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		const uint64_t *m1 = p->lit + (size_t)c * p->words;
		const uint64_t *m2 = m1;
		if (pos + i < fold_below) {
			unsigned char o = c;
			if (c >= 'a' && c <= 'z')
				o = (unsigned char)(c - 'a' + 'A');
			else if (c >= 'A' && c <= 'Z')
				o = (unsigned char)(c - 'A' + 'a');
			m2 = p->lit + (size_t)o * p->words;
		}
		uint64_t carry = 0, any = 0;
		for (size_t w = 0; w < p->words; w++) {
			uint64_t adv = st[w] & (m1[w] | m2[w]);	/* literal matched: move on */
			uint64_t next_carry = adv >> 63;
			uint64_t stay = st[w] & (c == MAILBOX_SEP ? p->star[w] : p->wild[w]);
			st[w] = (adv << 1) | carry | stay;
			carry = next_carry;
			any |= st[w];
		}
		if (any == 0)
			return;	/* dead: nothing can revive it */
		closure(p, st);
	}
}

bool mailbox_pattern_accepts(const struct mailbox_pattern *p, const uint64_t *st)
{
	return !p->never && bit_get(st, p->npos);
}

bool mailbox_pattern_alive(const struct mailbox_pattern *p, const uint64_t *st)
{
	for (size_t w = 0; w < p->words; w++)
		if (st[w] != 0)
			return true;
	return false;
}

bool mailbox_pattern_match(const struct mailbox_pattern *p, struct str name)
{
	uint64_t small[4];
	uint64_t *st = p->words <= 4 ? small : xmalloc(p->words * sizeof(uint64_t));
	mailbox_pattern_start(p, st);
	mailbox_pattern_feed(p, st, name.p, name.len, 0, mailbox_in_inbox_tree(name) ? 5 : 0);
	bool ok = mailbox_pattern_accepts(p, st);
	if (st != small)
		free(st);
	return ok;
}

/* ---- notifications ---- */

void mailbox_notify_kind(struct session *s, int64_t mailbox_id, uint64_t highestmodseq, const char *kind)
{
	struct worker *w = s->w;
	if (w->notify == NULL)
		return;
	char subject[256], data[48];
	if (notify_subject_mailbox(subject, sizeof(subject), w->cfg->nats_subject_prefix, s->tenant_id,
				   mailbox_id) < 0)
		return;
	int n = 0;
	if (highestmodseq != 0)
		n = snprintf(data, sizeof(data), "%llu %s", (unsigned long long)highestmodseq, kind);
	/* A drop is counted by notify; PostgreSQL is the truth and watchers
	 * re-check periodically. */
	(void)notify_publish(w->notify, subject, data, (size_t)n);
}
