/* mime.c - MIME structure parser, IMAP ENVELOPE/BODYSTRUCTURE rendering,
 * the part table and BODY[section] extraction.  Contract and the choices
 * made where servers differ: mime.h.  Text decoding for SEARCH is at the
 * end; the RFC 3501 grammar checker is mime_check.c. */
#include "lib/mime.h"

#include <errno.h>
#include <iconv.h>
#include <stdlib.h>
#include <string.h>

/* Internal types. */
struct hiter {			/* header field iterator over [pos, end) */
	const char *m;
	size_t pos, end;
	bool blank;		/* stopped at the blank line (at pos) */
};
struct hfield {
	size_t start, end;	/* raw field, continuation lines and newline included */
	size_t name_len;	/* name at m + start, trailing WSP removed */
	size_t value;		/* just after the colon */
	bool colon;		/* false: a line without colon (ignored) */
};
struct lex {
	const char *p;
	size_t i, n;
};
struct param {
	struct str name, value;
};
struct ctype {
	bool valid;
	struct str type, subtype;
	struct param *params;
	size_t nparams;
};
struct rec {			/* one part table record */
	uint64_t hdr_off, body_off, body_end;
	uint32_t subtree;
	uint8_t kind, flags, enc;
};

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */

static inline unsigned char lc(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

static bool span_ieq(const char *a, size_t an, const char *b, size_t bn)
{
	if (an != bn)
		return false;
	for (size_t i = 0; i < an; i++)
		if (lc((unsigned char)a[i]) != lc((unsigned char)b[i]))
			return false;
	return true;
}

static bool span_ieqz(const char *a, size_t an, const char *z)
{
	return span_ieq(a, an, z, strlen(z));
}

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static void put_u32le(struct buf *b, uint32_t v)
{
	unsigned char x[4] = { (unsigned char)v, (unsigned char)(v >> 8),
			       (unsigned char)(v >> 16), (unsigned char)(v >> 24) };
	buf_append(b, x, 4);
}

static void put_u64le(struct buf *b, uint64_t v)
{
	put_u32le(b, (uint32_t)v);
	put_u32le(b, (uint32_t)(v >> 32));
}

static uint32_t get_u32le(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64le(const unsigned char *p)
{
	return (uint64_t)get_u32le(p) | (uint64_t)get_u32le(p + 4) << 32;
}

/* ------------------------------------------------------------------ */
/* Header fields                                                        */

/* Is the line starting at p (within end) empty, i.e. "\n", "\r\n" or a
 * lone "\r" at the end?  This is the one definition of the blank line that
 * ends a header, shared by the structure scanner and the field iterator. */
static bool blank_line(const char *m, size_t p, size_t end)
{
	if (p >= end)
		return false;
	if (m[p] == '\n')
		return true;
	return m[p] == '\r' && (p + 1 == end || m[p + 1] == '\n');
}

static void hiter_init(struct hiter *it, const char *m, size_t start, size_t end)
{
	it->m = m;
	it->pos = start;
	it->end = end;
	it->blank = false;
}

static bool hiter_next(struct hiter *it, struct hfield *f)
{
	const char *m = it->m;
	size_t p = it->pos, end = it->end;

	if (p >= end)
		return false;
	if (blank_line(m, p, end)) {
		it->blank = true;
		return false;
	}
	const char *nl = memchr(m + p, '\n', end - p);
	size_t first_end = nl ? (size_t)(nl - m) : end;
	size_t le = nl ? first_end + 1 : end;
	/* continuation lines start with WSP (RFC 5322 2.2.3) */
	while (le < end && is_wsp(m[le])) {
		nl = memchr(m + le, '\n', end - le);
		le = nl ? (size_t)(nl - m) + 1 : end;
	}
	f->start = p;
	f->end = le;
	const char *colon = memchr(m + p, ':', first_end - p);
	if (colon != NULL) {
		size_t n = (size_t)(colon - (m + p));
		while (n > 0 && is_wsp(m[p + n - 1]))
			n--;
		f->name_len = n;
		f->value = (size_t)(colon - m) + 1;
		f->colon = true;
	} else {
		f->name_len = 0;
		f->value = le;
		f->colon = false;
	}
	it->pos = le;
	return true;
}

static bool hfield_is(const char *m, const struct hfield *f, const char *name)
{
	return f->colon && span_ieqz(m + f->start, f->name_len, name);
}

/* RFC 5322 2.2.3: unfolding removes the CRLF in front of WSP and keeps the
 * WSP.  Stray CR and LF are dropped as well, and leading WSP is skipped. */
static struct str unfold(struct arena *a, const char *v, size_t n)
{
	size_t i = 0, k = 0;
	while (i < n && (is_wsp(v[i]) || v[i] == '\r' || v[i] == '\n'))
		i++;
	char *o = arena_alloc(a, n - i + 1);
	for (; i < n; i++) {
		if (v[i] == '\r' || v[i] == '\n')
			continue;
		o[k++] = v[i];
	}
	o[k] = '\0';
	return str_make(o, k);
}

/* ------------------------------------------------------------------ */
/* IMAP strings                                                         */

#define LITERAL_MIN 1024

static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	unsigned lo = 0x80, hi = 0xBF;
	size_t need;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		need = 1;
	else if (c == 0xE0) {
		need = 2;
		lo = 0xA0;
	} else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF)
		need = 2;
	else if (c == 0xED) {
		need = 2;
		hi = 0x9F;
	} else if (c == 0xF0) {
		need = 3;
		lo = 0x90;
	} else if (c >= 0xF1 && c <= 0xF3)
		need = 3;
	else if (c == 0xF4) {
		need = 3;
		hi = 0x8F;
	} else
		return 0;
	if (n < need + 1 || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i <= need; i++)
		if ((s[i] & 0xC0) != 0x80)
			return 0;
	return need + 1;
}

#define REPLACEMENT "\xEF\xBF\xBD"

static bool put_utf8_clean(struct buf *b, const char *p, size_t n, bool drop_crlf)
{
	const unsigned char *s = (const unsigned char *)p;
	bool eight = false;
	size_t i = 0, run = 0;

	while (i < n) {
		unsigned char c = s[i];
		if (c != 0 && c < 0x80 && !(drop_crlf && (c == '\r' || c == '\n'))) {
			i++;
			continue;
		}
		if (i > run)
			buf_append(b, p + run, i - run);
		if (c == 0) {
			buf_append(b, REPLACEMENT, 3);
			eight = true;
			i++;
		} else if (c == '\r' || c == '\n') {
			i++;
		} else {
			size_t k = utf8_seq(s + i, n - i);
			eight = true;
			if (k > 0) {
				buf_append(b, p + i, k);
				i += k;
			} else {
				buf_append(b, REPLACEMENT, 3);
				i++;
			}
		}
		run = i;
	}
	if (n > run)
		buf_append(b, p + run, n - run);
	return eight;
}

static void put_quoted(struct buf *b, const char *p, size_t n)
{
	buf_putc(b, '"');
	size_t run = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '"' || p[i] == '\\') {
			buf_append(b, p + run, i - run);
			buf_putc(b, '\\');
			run = i;
		}
	}
	buf_append(b, p + run, n - run);
	buf_putc(b, '"');
}

static void put_string(struct buf *b, const char *p, size_t n)
{
	bool simple = n <= LITERAL_MIN;
	for (size_t i = 0; simple && i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == 0 || c >= 0x80 || c == '\r' || c == '\n')
			simple = false;
	}
	if (simple) {
		put_quoted(b, p, n);
		return;
	}
	struct buf t = BUF_INIT;
	bool eight = put_utf8_clean(&t, p, n, true);
	if (!eight && t.len <= LITERAL_MIN) {
		put_quoted(b, buf_ptr(&t), t.len);
	} else {
		buf_printf(b, "{%zu}\r\n", t.len);
		buf_append(b, buf_ptr(&t), t.len);
	}
	buf_free(&t);
}

static void put_nstring(struct buf *b, struct str s)
{
	if (s.p == NULL)
		buf_puts(b, "NIL");
	else
		put_string(b, s.p, s.len);
}

/* ------------------------------------------------------------------ */
/* RFC 2045 / 2231 parameters                                           */

static void lex_cfws(struct lex *l)
{
	while (l->i < l->n) {
		char c = l->p[l->i];
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			l->i++;
			continue;
		}
		if (c != '(')
			break;
		int depth = 0;
		while (l->i < l->n) {
			c = l->p[l->i++];
			if (c == '\\') {
				if (l->i < l->n)
					l->i++;
			} else if (c == '(') {
				depth++;
			} else if (c == ')' && --depth == 0) {
				break;
			}
		}
	}
}

/* RFC 2045 token characters; 8-bit octets are accepted as Dovecot does. */
static bool is_token_char(unsigned char c)
{
	if (c <= 0x20 || c == 0x7f)
		return false;
	return strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

static struct str lex_token(struct lex *l)
{
	size_t s = l->i;
	while (l->i < l->n && is_token_char((unsigned char)l->p[l->i]))
		l->i++;
	return str_make(l->p + s, l->i - s);
}

/* At '"': the unescaped content; an unterminated string runs to the end. */
static struct str lex_quoted(struct lex *l, struct arena *a)
{
	size_t i = ++l->i, k = 0;
	while (i < l->n && l->p[i] != '"') {
		if (l->p[i] == '\\' && i + 1 < l->n)
			i++;
		i++;
		k++;
	}
	char *o = arena_alloc(a, k + 1);
	k = 0;
	while (l->i < l->n) {
		char c = l->p[l->i++];
		if (c == '"')
			break;
		if (c == '\\' && l->i < l->n)
			c = l->p[l->i++];
		else if (c == '\r' || c == '\n')
			continue;
		o[k++] = c;
	}
	o[k] = '\0';
	return str_make(o, k);
}

struct rawparam {
	struct str name, value, base;
	uint32_t idx;
	bool ext, rfc2231;
	size_t order;
};

static int rawparam_cmp(const void *x, const void *y)
{
	const struct rawparam *a = x, *b = y;
	size_t n = MIN(a->base.len, b->base.len);
	for (size_t i = 0; i < n; i++) {
		unsigned char ca = lc((unsigned char)a->base.p[i]), cb = lc((unsigned char)b->base.p[i]);
		if (ca != cb)
			return ca < cb ? -1 : 1;
	}
	if (a->base.len != b->base.len)
		return a->base.len < b->base.len ? -1 : 1;
	if (a->idx != b->idx)
		return a->idx < b->idx ? -1 : 1;
	return a->order < b->order ? -1 : (a->order > b->order);
}

/* Splits "name*N*" into its RFC 2231 parts as Dovecot's rfc2231_parse()
 * does; false if the name is not of that form. */
static bool split_2231(struct rawparam *r)
{
	const char *p = r->name.p, *end = p + r->name.len;
	const char *star = memchr(p, '*', r->name.len);
	if (star == NULL)
		return false;
	const char *q = star;
	uint32_t idx = 0;
	if (q + 1 < end)
		q++;	/* "name*" alone is extended, index 0 */
	while (q < end && *q >= '0' && *q <= '9') {
		unsigned d = (unsigned)(*q - '0');
		idx = idx > (UINT32_MAX - d) / 10 ? UINT32_MAX : idx * 10 + d;
		q++;
	}
	bool ext = false;
	if (q < end && *q == '*') {
		ext = true;
		q++;
	}
	if (q != end)
		return false;
	r->base = str_make(p, (size_t)(star - p));
	r->idx = idx;
	r->ext = ext;
	return true;
}

static void append_pct_escaped(struct buf *b, struct str s)
{
	for (size_t i = 0; i < s.len; i++) {
		if (s.p[i] == '%')
			buf_append(b, "%25", 3);
		else
			buf_putc(b, s.p[i]);
	}
}

/* Parses *(";" attribute "=" value) from l: values are tokens or quoted
 * strings; unquoted values run to ";", white space, "(" or '"' so that
 * unquoted boundaries with "=" survive; garbage is skipped up to the next
 * ";".  RFC 2231 segments are then joined (see mime.h). */
static size_t parse_params(struct lex *l, struct arena *a, struct param **out)
{
	struct rawparam *raw = NULL;
	size_t nraw = 0, capraw = 0;

	for (;;) {
		lex_cfws(l);
		if (l->i >= l->n)
			break;
		if (l->p[l->i] != ';') {
			/* garbage: skip to the next ';' outside quotes */
			while (l->i < l->n && l->p[l->i] != ';') {
				if (l->p[l->i] == '"')
					(void)lex_quoted(l, a);
				else if (l->p[l->i] == '(')
					lex_cfws(l);
				else
					l->i++;
			}
			continue;
		}
		l->i++;
		lex_cfws(l);
		size_t s = l->i;
		while (l->i < l->n) {
			unsigned char c = (unsigned char)l->p[l->i];
			if (c <= 0x20 || c == 0x7f || c == '=' || c == ';' || c == '(' || c == '"')
				break;
			l->i++;
		}
		struct str name = str_make(l->p + s, l->i - s);
		lex_cfws(l);
		if (name.len == 0 || l->i >= l->n || l->p[l->i] != '=')
			continue;
		l->i++;
		lex_cfws(l);
		struct str value;
		if (l->i < l->n && l->p[l->i] == '"') {
			value = lex_quoted(l, a);
		} else {
			s = l->i;
			while (l->i < l->n) {
				unsigned char c = (unsigned char)l->p[l->i];
				if (c == ';' || c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '(' || c == '"')
					break;
				l->i++;
			}
			value = str_make(l->p + s, l->i - s);
		}
		if (nraw == capraw) {
			capraw = capraw ? capraw * 2 : 8;
			raw = xrealloc(raw, capraw * sizeof(*raw));
		}
		struct rawparam *r = &raw[nraw];
		memset(r, 0, sizeof(*r));
		r->name = name;
		r->value = value;
		r->order = nraw;
		r->rfc2231 = split_2231(r);
		nraw++;
	}

	struct param *res = arena_alloc(a, (nraw ? nraw : 1) * sizeof(*res));
	size_t nres = 0, n2231 = 0;
	for (size_t i = 0; i < nraw; i++) {
		if (!raw[i].rfc2231)
			res[nres++] = (struct param){ raw[i].name, raw[i].value };
		else
			raw[n2231++] = raw[i];	/* compact the RFC 2231 ones (order kept) */
	}
	if (n2231 > 0) {
		qsort(raw, n2231, sizeof(*raw), rawparam_cmp);
		for (size_t i = 0, next; i < n2231; i = next) {
			bool ok = true, have_ext = false;
			uint32_t want = 0;
			for (next = i; next < n2231; next++) {
				if (!span_ieq(raw[i].base.p, raw[i].base.len, raw[next].base.p, raw[next].base.len))
					break;
				if (raw[next].idx != want)
					ok = false;
				if (raw[next].ext)
					have_ext = true;
				if (want < UINT32_MAX)
					want++;
			}
			if (!ok) {
				/* gaps or duplicates: keep the segments as they were */
				for (size_t j = i; j < next; j++)
					res[nres++] = (struct param){ raw[j].name, raw[j].value };
				continue;
			}
			struct buf v = BUF_INIT;
			if (!raw[i].ext && have_ext)
				buf_append(&v, "''", 2);
			for (size_t j = i; j < next; j++) {
				if (!raw[j].ext && have_ext)
					append_pct_escaped(&v, raw[j].value);
				else
					buf_append(&v, raw[j].value.p, raw[j].value.len);
			}
			struct str name = raw[i].base;
			if (have_ext) {
				char *nm = arena_alloc(a, name.len + 2);
				memcpy(nm, name.p, name.len);
				nm[name.len] = '*';
				nm[name.len + 1] = '\0';
				name = str_make(nm, name.len + 1);
			}
			res[nres++] = (struct param){
				name, str_make(arena_strndup(a, buf_ptr(&v), v.len), v.len) };
			buf_free(&v);
		}
	}
	free(raw);
	*out = res;
	return nres;
}

static const struct param *param_find(const struct param *ps, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (span_ieqz(ps[i].name.p, ps[i].name.len, name))
			return &ps[i];
	return NULL;
}

/* Content-Type: type "/" subtype *(";" parameter).  Invalid (no slash,
 * empty type or subtype) leaves ct->valid false: RFC 2045 5.2 says to use
 * the default then. */
static void parse_ctype(struct arena *a, struct str v, struct ctype *ct)
{
	struct lex l = { v.p, 0, v.len };
	memset(ct, 0, sizeof(*ct));
	lex_cfws(&l);
	ct->type = lex_token(&l);
	lex_cfws(&l);
	if (ct->type.len == 0 || l.i >= l.n || l.p[l.i] != '/')
		return;
	l.i++;
	lex_cfws(&l);
	ct->subtype = lex_token(&l);
	if (ct->subtype.len == 0)
		return;
	ct->valid = true;
	ct->nparams = parse_params(&l, a, &ct->params);
}

/* ------------------------------------------------------------------ */
/* Structure scanner                                                    */

enum cls { CLS_TEXT, CLS_OTHER, CLS_MULTIPART, CLS_MESSAGE };

#define NONE UINT32_MAX

struct mpart {
	size_t hdr_off, body_off, body_end;
	size_t hdr_line, body_line, end_line;	/* LFs before those offsets */
	uint32_t parent, subtree, nchildren;
	uint16_t depth;
	uint8_t cls;
	bool digest;		/* multipart/digest: children default to message/rfc822 */
	bool in_header;
	bool is_message;	/* record 0 or the child of a message/rfc822 part */
};

struct bnd {
	uint32_t part;
	const char *s;
	size_t len;
};

struct scan {
	const char *m;
	size_t len;
	struct mime_limits lim;
	struct arena *a;		/* scratch */
	struct mpart *parts;
	size_t np, cap;
	uint32_t *open;
	size_t nopen, capopen;
	struct bnd *bs;
	size_t nb, capb;
	size_t line;			/* LFs before the current line */
	bool frozen;			/* max_parts reached */
	bool limited;
};

static void limits_fill(struct mime_limits *l, const struct mime_limits *in)
{
	l->max_depth = in && in->max_depth ? in->max_depth : 20;
	if (l->max_depth > 200)
		l->max_depth = 200;
	l->max_parts = in && in->max_parts ? in->max_parts : 5000;
	if (l->max_parts > UINT32_MAX - 1)
		l->max_parts = UINT32_MAX - 1;
	l->max_header_bytes = in && in->max_header_bytes ? in->max_header_bytes : 256 * 1024;
}

static size_t hdr_limit(const struct scan *sc, size_t start, size_t end)
{
	return end - start > sc->lim.max_header_bytes ? start + sc->lim.max_header_bytes : end;
}

static uint32_t new_part(struct scan *sc, uint32_t parent, size_t hdr_off, size_t hdr_line)
{
	if (sc->np == sc->cap) {
		sc->cap = sc->cap ? sc->cap * 2 : 16;
		sc->parts = xrealloc(sc->parts, sc->cap * sizeof(*sc->parts));
	}
	uint32_t i = (uint32_t)sc->np++;
	struct mpart *p = &sc->parts[i];
	memset(p, 0, sizeof(*p));
	p->hdr_off = hdr_off;
	p->hdr_line = hdr_line;
	p->parent = parent;
	p->in_header = true;
	if (parent != NONE) {
		struct mpart *par = &sc->parts[parent];
		par->nchildren++;
		p->depth = (uint16_t)(par->depth + 1);
		p->is_message = par->cls == CLS_MESSAGE;
	} else {
		p->is_message = true;
	}
	if (sc->nopen == sc->capopen) {
		sc->capopen = sc->capopen ? sc->capopen * 2 : 16;
		sc->open = xrealloc(sc->open, sc->capopen * sizeof(*sc->open));
	}
	sc->open[sc->nopen++] = i;
	return i;
}

/* Classifies part i from its Content-Type; returns the boundary of a
 * multipart through *bnd (NULL if none). */
static void classify(struct scan *sc, uint32_t i, struct str *bnd)
{
	struct mpart *p = &sc->parts[i];
	struct hiter it;
	struct hfield f;
	bool in_digest = p->parent != NONE && sc->parts[p->parent].digest;

	bnd->p = NULL;
	bnd->len = 0;
	p->cls = in_digest ? CLS_MESSAGE : CLS_TEXT;
	hiter_init(&it, sc->m, p->hdr_off, hdr_limit(sc, p->hdr_off, p->body_off));
	while (hiter_next(&it, &f)) {
		if (!hfield_is(sc->m, &f, "Content-Type"))
			continue;
		struct ctype ct;
		parse_ctype(sc->a, unfold(sc->a, sc->m + f.value, f.end - f.value), &ct);
		if (!ct.valid)
			break;		/* invalid: the default applies */
		if (span_ieqz(ct.type.p, ct.type.len, "multipart")) {
			p->cls = CLS_MULTIPART;
			p->digest = span_ieqz(ct.subtype.p, ct.subtype.len, "digest");
			const struct param *b = param_find(ct.params, ct.nparams, "boundary");
			if (b != NULL && b->value.len > 0)
				*bnd = b->value;
		} else if (span_ieqz(ct.type.p, ct.type.len, "message") &&
			   span_ieqz(ct.subtype.p, ct.subtype.len, "rfc822")) {
			p->cls = CLS_MESSAGE;
		} else if (span_ieqz(ct.type.p, ct.type.len, "text")) {
			p->cls = CLS_TEXT;
		} else {
			p->cls = CLS_OTHER;
		}
		break;
	}
}

/* The header of the top part ends (blank line at body_off, or EOF).  A
 * multipart starts looking for its boundary; a message/rfc822 opens its
 * encapsulated message, whose header starts right here. */
static void end_header(struct scan *sc, uint32_t i, size_t body_off, size_t body_line)
{
	struct str bnd;
	struct mpart *p = &sc->parts[i];

	p->body_off = body_off;
	p->body_line = body_line;
	p->in_header = false;
	classify(sc, i, &bnd);
	p = &sc->parts[i];
	bool nest = p->depth < sc->lim.max_depth;
	if (p->cls == CLS_MULTIPART && bnd.p != NULL) {
		if (!nest)
			sc->limited = true;
		if (!nest || sc->frozen)
			return;
		if (sc->nb == sc->capb) {
			sc->capb = sc->capb ? sc->capb * 2 : 8;
			sc->bs = xrealloc(sc->bs, sc->capb * sizeof(*sc->bs));
		}
		sc->bs[sc->nb++] = (struct bnd){ i, bnd.p, bnd.len };
	} else if (p->cls == CLS_MESSAGE) {
		if (!nest || sc->np >= sc->lim.max_parts) {
			sc->limited = true;
			return;
		}
		(void)new_part(sc, i, body_off, body_line);
	}
}

/* Ends part i at end (its body, or its header if a delimiter cut it). */
static void close_part(struct scan *sc, uint32_t i, size_t end, size_t end_line)
{
	struct mpart *p = &sc->parts[i];
	if (p->in_header) {
		size_t bo = end, bl = end_line;
		if (bo < p->hdr_off) {
			bo = p->hdr_off;
			bl = p->hdr_line;
		}
		struct str bnd;
		p->body_off = bo;
		p->body_line = bl;
		p->in_header = false;
		classify(sc, i, &bnd);	/* no children: served as a leaf */
		p = &sc->parts[i];
	}
	if (end < p->body_off) {
		end = p->body_off;
		end_line = p->body_line;
	}
	p->body_end = end;
	p->end_line = end_line;
}

/* Content after "--" is m[s..ce).  Dovecot's boundary_find(): the longest
 * active boundary that prefixes the line (a trailing "--" is not part of
 * the comparison), the innermost on ties.  Returns the stack index. */
static bool find_boundary(const struct scan *sc, size_t s, size_t ce, size_t *bi, bool *close)
{
	size_t fs = ce - s;
	const char *m = sc->m;
	size_t best = SIZE_MAX;

	if (fs > 2 && m[ce - 1] == '-' && m[ce - 2] == '-')
		fs -= 2;
	for (size_t k = sc->nb; k-- > 0;) {
		const struct bnd *b = &sc->bs[k];
		if (b->len <= fs && memcmp(m + s, b->s, b->len) == 0 &&
		    (best == SIZE_MAX || sc->bs[best].len < b->len)) {
			best = k;
			if (b->len == fs)
				break;
		}
	}
	if (best == SIZE_MAX)
		return false;
	size_t bl = sc->bs[best].len;
	*bi = best;
	*close = ce - s >= bl + 2 && m[s + bl] == '-' && m[s + bl + 1] == '-';
	return true;
}

/* A delimiter line [ls, le) of boundary bi.  Returns false when the line is
 * to be treated as content (part limit reached). */
static bool on_boundary(struct scan *sc, size_t bi, bool close, size_t ls, size_t le, size_t next_line)
{
	uint32_t owner = sc->bs[bi].part;
	const char *m = sc->m;

	if (!close && sc->np >= sc->lim.max_parts) {
		sc->frozen = true;
		sc->limited = true;
		return false;
	}
	/* RFC 2046 5.1.1: the CRLF preceding the boundary delimiter line is
	 * conceptually attached to the boundary. */
	size_t end = ls, eline = sc->line;
	if (ls > 0 && m[ls - 1] == '\n') {
		end = ls - 1;
		if (end > 0 && m[end - 1] == '\r')
			end--;
		eline = sc->line - 1;
	}
	while (sc->nopen > 0 && sc->open[sc->nopen - 1] != owner) {
		uint32_t i = sc->open[--sc->nopen];
		close_part(sc, i, end, eline);
		/* An empty part that starts right at this line ends after
		 * "end"; its parents must still contain it. */
		if (sc->parts[i].body_end > end) {
			end = sc->parts[i].body_end;
			eline = sc->parts[i].end_line;
		}
	}
	sc->nb = close ? bi : bi + 1;
	if (!close)
		(void)new_part(sc, owner, le, next_line);
	return true;
}

static void scan_message(struct scan *sc)
{
	const char *m = sc->m;
	size_t len = sc->len, pos = 0;

	(void)new_part(sc, NONE, 0, 0);
	sc->line = 0;
	while (pos < len) {
		size_t ls = pos;
		const char *nl = memchr(m + ls, '\n', len - ls);
		size_t le = nl ? (size_t)(nl - m) + 1 : len;
		size_t ce = nl ? (size_t)(nl - m) : len;
		size_t next_line = sc->line + (nl != NULL);
		if (ce > ls && m[ce - 1] == '\r')
			ce--;

		bool done = false;
		if (!sc->frozen && sc->nb > 0 && ce - ls >= 2 && m[ls] == '-' && m[ls + 1] == '-') {
			size_t bi;
			bool close;
			if (find_boundary(sc, ls + 2, ce, &bi, &close))
				done = on_boundary(sc, bi, close, ls, le, next_line);
		}
		if (!done) {
			uint32_t cur = sc->open[sc->nopen - 1];
			if (sc->parts[cur].in_header && blank_line(m, ls, len))
				end_header(sc, cur, le, next_line);
		}
		sc->line = next_line;
		pos = le;
	}
	/* End of input: headers still open end here (possibly opening empty
	 * encapsulated messages, bounded by max_depth), then everything
	 * closes. */
	while (sc->parts[sc->open[sc->nopen - 1]].in_header)
		end_header(sc, sc->open[sc->nopen - 1], len, sc->line);
	while (sc->nopen > 0)
		close_part(sc, sc->open[--sc->nopen], len, sc->line);
}

/* Kind and flags of each record once the structure is known. */
static void finish_scan(struct scan *sc)
{
	for (size_t i = sc->np; i-- > 1;) {
		struct mpart *p = &sc->parts[i];
		sc->parts[p->parent].subtree += 1 + p->subtree;
	}
}

static uint8_t part_kind(const struct mpart *p)
{
	if (p->nchildren == 0)
		return MIME_KIND_LEAF;
	return p->cls == CLS_MULTIPART ? MIME_KIND_MULTIPART : MIME_KIND_MESSAGE;
}

static bool part_degraded(const struct mpart *p)
{
	return p->nchildren == 0 && (p->cls == CLS_MULTIPART || p->cls == CLS_MESSAGE);
}

static void scan_free(struct scan *sc)
{
	free(sc->parts);
	free(sc->open);
	free(sc->bs);
}

/* ------------------------------------------------------------------ */
/* Per-part Content-* data                                              */

struct pinfo {
	struct ctype ct;
	struct str id, desc, md5, loc, enc;	/* p == NULL: absent */
	struct str dsp;				/* p == NULL: absent */
	struct param *dparams;
	size_t ndparams;
	struct str *langs;
	size_t nlangs;
};

static bool is_atext(unsigned char c)
{
	if (c >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
		return true;
	return c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static void parse_language(struct arena *a, struct str v, struct pinfo *pi)
{
	struct lex l = { v.p, 0, v.len };
	size_t cap = 0;

	lex_cfws(&l);
	while (l.i < l.n) {
		size_t s = l.i;
		while (l.i < l.n && is_atext((unsigned char)l.p[l.i]))
			l.i++;
		if (l.i == s)
			break;
		if (pi->nlangs == cap) {
			cap = cap ? cap * 2 : 4;
			struct str *n = arena_alloc(a, cap * sizeof(*n));
			if (pi->nlangs)
				memcpy(n, pi->langs, pi->nlangs * sizeof(*n));
			pi->langs = n;
		}
		pi->langs[pi->nlangs++] = str_make(l.p + s, l.i - s);
		lex_cfws(&l);
		if (l.i >= l.n || l.p[l.i] != ',')
			break;
		l.i++;
		lex_cfws(&l);
	}
}

static void parse_pinfo(struct arena *a, const char *m, size_t hs, size_t he, struct pinfo *pi)
{
	struct hiter it;
	struct hfield f;
	bool seen_ct = false, seen_enc = false, seen_dsp = false, seen_lang = false;

	memset(pi, 0, sizeof(*pi));
	hiter_init(&it, m, hs, he);
	while (hiter_next(&it, &f)) {
		if (!f.colon || f.name_len < 8 || !span_ieq(m + f.start, 8, "Content-", 8))
			continue;
		const char *n = m + f.start + 8;
		size_t nl = f.name_len - 8;
		struct str v = unfold(a, m + f.value, f.end - f.value);
		if (span_ieqz(n, nl, "Type") && !seen_ct) {
			seen_ct = true;
			parse_ctype(a, v, &pi->ct);
		} else if (span_ieqz(n, nl, "Transfer-Encoding") && !seen_enc) {
			seen_enc = true;
			struct lex l = { v.p, 0, v.len };
			lex_cfws(&l);
			struct str t = lex_token(&l);
			lex_cfws(&l);
			if (t.len > 0 && l.i == l.n)
				pi->enc = t;
		} else if (span_ieqz(n, nl, "ID") && pi->id.p == NULL) {
			pi->id = v;
		} else if (span_ieqz(n, nl, "Description") && pi->desc.p == NULL) {
			pi->desc = v;
		} else if (span_ieqz(n, nl, "MD5") && pi->md5.p == NULL) {
			pi->md5 = v;
		} else if (span_ieqz(n, nl, "Location") && pi->loc.p == NULL) {
			pi->loc = v;
		} else if (span_ieqz(n, nl, "Disposition") && !seen_dsp) {
			seen_dsp = true;
			struct lex l = { v.p, 0, v.len };
			lex_cfws(&l);
			struct str t = lex_token(&l);
			if (t.len > 0) {
				pi->dsp = t;
				pi->ndparams = parse_params(&l, a, &pi->dparams);
			}
		} else if (span_ieqz(n, nl, "Language") && !seen_lang) {
			seen_lang = true;
			parse_language(a, v, pi);
		}
	}
}

static uint8_t enc_code(struct str enc)
{
	if (enc.p == NULL)
		return MIME_ENC_IDENTITY;
	if (span_ieqz(enc.p, enc.len, "base64"))
		return MIME_ENC_BASE64;
	if (span_ieqz(enc.p, enc.len, "quoted-printable"))
		return MIME_ENC_QP;
	return MIME_ENC_IDENTITY;
}

/* ------------------------------------------------------------------ */
/* Addresses (RFC 5322 3.4) for the envelope                            */

enum { T_WORD, T_QUOTED, T_DLIT, T_COMMENT, T_SPECIAL };

struct tok {
	uint8_t t;
	char c;			/* T_SPECIAL: the character */
	bool ws;		/* white space or a comment before it */
	struct str s;		/* text (unescaped for quoted strings and comments) */
};

struct toks {
	struct tok *v;
	size_t n, cap;
};

static void tok_add(struct toks *ts, struct tok t)
{
	if (ts->n == ts->cap) {
		ts->cap = ts->cap ? ts->cap * 2 : 32;
		ts->v = xrealloc(ts->v, ts->cap * sizeof(*ts->v));
	}
	ts->v[ts->n++] = t;
}

/* At '(': the comment's text with escapes removed; nested parentheses are
 * kept; an unterminated comment runs to the end. */
static struct str lex_comment(struct lex *l, struct arena *a)
{
	size_t i = l->i + 1, k = 0;
	int depth = 1;
	while (i < l->n) {
		char c = l->p[i];
		if (c == '\\' && i + 1 < l->n) {
			i += 2;
			k++;
			continue;
		}
		if (c == '(')
			depth++;
		else if (c == ')' && --depth == 0)
			break;
		i++;
		k++;
	}
	char *o = arena_alloc(a, k + 1);
	k = 0;
	depth = 1;
	l->i++;
	while (l->i < l->n) {
		char c = l->p[l->i++];
		if (c == '\\' && l->i < l->n) {
			o[k++] = l->p[l->i++];
			continue;
		}
		if (c == '(')
			depth++;
		else if (c == ')' && --depth == 0)
			break;
		o[k++] = c;
	}
	o[k] = '\0';
	return str_make(o, k);
}

static void tokenize(struct arena *a, struct str v, struct toks *ts)
{
	struct lex l = { v.p, 0, v.len };
	bool ws = false;

	while (l.i < l.n) {
		char c = l.p[l.i];
		struct tok t = { T_WORD, 0, ws, { NULL, 0 } };
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			l.i++;
			ws = true;
			continue;
		}
		if (c == '(') {
			t.t = T_COMMENT;
			t.s = lex_comment(&l, a);
			tok_add(ts, t);
			ws = true;
			continue;
		}
		if (c == '"') {
			t.t = T_QUOTED;
			t.s = lex_quoted(&l, a);
		} else if (c == '[') {
			size_t s = l.i++;
			while (l.i < l.n && l.p[l.i] != ']') {
				if (l.p[l.i] == '\\' && l.i + 1 < l.n)
					l.i++;
				l.i++;
			}
			if (l.i < l.n)
				l.i++;
			t.t = T_DLIT;
			t.s = str_make(l.p + s, l.i - s);
		} else if (strchr("<>@,:;", c) != NULL && c != '\0') {
			t.t = T_SPECIAL;
			t.c = c;
			t.s = str_make(l.p + l.i, 1);
			l.i++;
		} else {
			size_t s = l.i;
			while (l.i < l.n) {
				c = l.p[l.i];
				if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '(' || c == '"' ||
				    c == '[' || (c != '\0' && strchr("<>@,:;", c) != NULL))
					break;
				l.i++;
			}
			t.s = str_make(l.p + s, l.i - s);
		}
		tok_add(ts, t);
		ws = false;
	}
}

static bool is_sp(const struct tok *t, char c)
{
	return t->t == T_SPECIAL && t->c == c;
}

/* Words of a phrase (RFC 5322 3.2.5), quoting removed, one space where
 * the message had white space or a comment; comments are dropped. */
static struct str join_phrase(struct arena *a, const struct tok *v, size_t i, size_t j)
{
	struct buf b = BUF_INIT;
	for (size_t k = i; k < j; k++) {
		if (v[k].t == T_COMMENT)
			continue;
		if (b.len > 0 && v[k].ws)
			buf_putc(&b, ' ');
		buf_append(&b, v[k].s.p, v[k].s.len);
	}
	struct str r = str_make(arena_strndup(a, buf_ptr(&b), b.len), b.len);
	buf_free(&b);
	return r;
}

/* local-part: words and quoted strings; white space is kept only between
 * words that are not joined by a dot (obs-local-part allows CFWS around
 * dots). */
static struct str join_local(struct arena *a, const struct tok *v, size_t i, size_t j)
{
	struct buf b = BUF_INIT;
	for (size_t k = i; k < j; k++) {
		if (v[k].t != T_WORD && v[k].t != T_QUOTED)
			continue;
		if (b.len > 0 && v[k].ws && buf_ptr(&b)[b.len - 1] != '.' &&
		    !(v[k].t == T_WORD && v[k].s.len > 0 && v[k].s.p[0] == '.'))
			buf_putc(&b, ' ');
		buf_append(&b, v[k].s.p, v[k].s.len);
	}
	struct str r = str_make(arena_strndup(a, buf_ptr(&b), b.len), b.len);
	buf_free(&b);
	return r;
}

/* domain: dot-atoms or a domain literal; stops at the first token that does
 * not continue it. */
static struct str join_domain(struct arena *a, const struct tok *v, size_t i, size_t j)
{
	struct buf b = BUF_INIT;
	for (size_t k = i; k < j; k++) {
		if (v[k].t == T_COMMENT)
			continue;
		if (v[k].t == T_SPECIAL && v[k].c == '@' && b.len > 0) {
			/* "a@b@c": keep the rest of the domain as written */
			buf_putc(&b, '@');
			continue;
		}
		if (v[k].t != T_WORD && v[k].t != T_DLIT)
			break;
		if (b.len > 0 && buf_ptr(&b)[b.len - 1] != '.' && buf_ptr(&b)[b.len - 1] != '@' &&
		    !(v[k].s.len > 0 && v[k].s.p[0] == '.'))
			break;
		buf_append(&b, v[k].s.p, v[k].s.len);
	}
	struct str r = str_make(arena_strndup(a, buf_ptr(&b), b.len), b.len);
	buf_free(&b);
	return r;
}

static void put_address(struct buf *b, struct str name, struct str adl, struct str mbox, struct str host)
{
	buf_putc(b, '(');
	put_nstring(b, name);
	buf_putc(b, ' ');
	put_nstring(b, adl);
	buf_putc(b, ' ');
	put_nstring(b, mbox);
	buf_putc(b, ' ');
	put_nstring(b, host);
	buf_putc(b, ')');
}

static const struct str NIL = { NULL, 0 };

static struct str or_missing(struct str s, const char *missing)
{
	return s.len > 0 ? s : str_cstr(missing);
}

/* One mailbox from tokens [i, j); returns 1 if an address was written. */
static int parse_mailbox(struct arena *a, const struct tok *v, size_t i, size_t j, struct buf *out)
{
	size_t lt = j;
	for (size_t k = i; k < j; k++) {
		if (is_sp(&v[k], '<')) {
			lt = k;
			break;
		}
	}
	if (lt < j) {
		/* name-addr = [display-name] "<" [route ":"] addr-spec ">" */
		struct str name = join_phrase(a, v, i, lt);
		size_t k = lt + 1, e = k;
		while (e < j && !is_sp(&v[e], '>'))
			e++;
		struct str adl = NIL;
		if (k < e && is_sp(&v[k], '@')) {
			size_t c = k;
			while (c < e && !is_sp(&v[c], ':'))
				c++;
			if (c < e) {
				struct buf r = BUF_INIT;
				for (size_t x = k; x < c; x++) {
					if (v[x].t == T_COMMENT)
						continue;
					buf_append(&r, v[x].s.p, v[x].s.len);
				}
				adl = str_make(arena_strndup(a, buf_ptr(&r), r.len), r.len);
				buf_free(&r);
				k = c + 1;
			}
		}
		size_t at = k;
		while (at < e && !is_sp(&v[at], '@'))
			at++;
		struct str local = join_local(a, v, k, at);
		struct str dom = at < e ? join_domain(a, v, at + 1, e) : NIL;
		put_address(out, name.len > 0 ? name : NIL, adl,
			    or_missing(local, "MISSING_MAILBOX"), or_missing(dom, "MISSING_DOMAIN"));
		return 1;
	}

	/* addr-spec, perhaps with a comment as the name */
	size_t words = 0, at = j, comment = j;
	for (size_t k = i; k < j; k++) {
		if (v[k].t == T_COMMENT)
			comment = k;
		else
			words++;
		if (at == j && is_sp(&v[k], '@'))
			at = k;
	}
	if (words == 0)
		return 0;
	struct str cname = comment < j ? v[comment].s : NIL;
	if (cname.p != NULL && cname.len == 0)
		cname = NIL;
	if (at < j) {
		struct str local = join_local(a, v, i, at);
		struct str dom = join_domain(a, v, at + 1, j);
		put_address(out, cname, NIL, or_missing(local, "MISSING_MAILBOX"),
			    or_missing(dom, "MISSING_DOMAIN"));
	} else if (cname.p != NULL || words == 1) {
		/* "user" or "user (Name)": a mailbox without domain */
		struct str local = join_local(a, v, i, j);
		put_address(out, cname, NIL, or_missing(local, "MISSING_MAILBOX"),
			    str_cstr("MISSING_DOMAIN"));
	} else {
		/* "John Doe": a display name without address (Dovecot) */
		struct str name = join_phrase(a, v, i, j);
		put_address(out, name, NIL, str_cstr("MISSING_MAILBOX"), str_cstr("MISSING_DOMAIN"));
	}
	return 1;
}

/* End of the mailbox starting at i: the next "," or ";" outside a route
 * (",@" inside angle brackets continues an obs-route). */
static size_t mailbox_end(const struct tok *v, size_t n, size_t i)
{
	bool angle = false;
	for (size_t k = i; k < n; k++) {
		if (is_sp(&v[k], '<'))
			angle = true;
		else if (is_sp(&v[k], '>'))
			angle = false;
		else if (is_sp(&v[k], ';'))
			return k;
		else if (is_sp(&v[k], ',')) {
			if (angle && k + 1 < n && is_sp(&v[k + 1], '@'))
				continue;
			return k;
		}
	}
	return n;
}

/* Writes the addresses of an address-list, no outer parentheses; returns
 * how many address structures were written. */
static size_t put_address_list(struct arena *a, struct str value, struct buf *out)
{
	struct toks ts = { NULL, 0, 0 };
	size_t count = 0, i = 0;

	tokenize(a, value, &ts);
	const struct tok *v = ts.v;
	size_t n = ts.n;
	while (i < n) {
		if (is_sp(&v[i], ',') || is_sp(&v[i], ';')) {
			i++;
			continue;
		}
		/* group = display-name ":" [group-list] ";" */
		size_t k = i, words = 0;
		while (k < n && (v[k].t == T_WORD || v[k].t == T_QUOTED || v[k].t == T_COMMENT)) {
			if (v[k].t != T_COMMENT)
				words++;
			k++;
		}
		if (k < n && words > 0 && is_sp(&v[k], ':')) {
			put_address(out, NIL, NIL, join_phrase(a, v, i, k), NIL);
			count++;
			i = k + 1;
			while (i < n && !is_sp(&v[i], ';')) {
				if (is_sp(&v[i], ',')) {
					i++;
					continue;
				}
				size_t j = mailbox_end(v, n, i);
				count += (size_t)parse_mailbox(a, v, i, j, out);
				i = j;
			}
			if (i < n)
				i++;
			put_address(out, NIL, NIL, NIL, NIL);
			count++;
			continue;
		}
		size_t j = mailbox_end(v, n, i);
		count += (size_t)parse_mailbox(a, v, i, j, out);
		i = j;
	}
	free(ts.v);
	return count;
}

/* ------------------------------------------------------------------ */
/* Envelope                                                             */

enum { E_DATE, E_SUBJECT, E_FROM, E_SENDER, E_REPLY_TO, E_TO, E_CC, E_BCC, E_IRT, E_MSGID, E_N };

static const char *const env_names[E_N] = {
	"Date", "Subject", "From", "Sender", "Reply-To", "To", "Cc", "Bcc", "In-Reply-To", "Message-ID",
};

static void env_fields(struct arena *a, const char *m, size_t hs, size_t he, struct str v[E_N])
{
	struct hiter it;
	struct hfield f;

	for (int k = 0; k < E_N; k++)
		v[k] = NIL;
	hiter_init(&it, m, hs, he);
	while (hiter_next(&it, &f)) {
		if (!f.colon)
			continue;
		for (int k = 0; k < E_N; k++) {
			if (v[k].p == NULL && hfield_is(m, &f, env_names[k])) {
				v[k] = unfold(a, m + f.value, f.end - f.value);
				break;
			}
		}
	}
}

/* "(" 1*address ")" or NIL into out; returns whether addresses exist. */
static bool put_env_addr(struct arena *a, struct str value, struct buf *out)
{
	if (value.p == NULL) {
		buf_puts(out, "NIL");
		return false;
	}
	struct buf t = BUF_INIT;
	size_t n = put_address_list(a, value, &t);
	if (n == 0) {
		buf_puts(out, "NIL");
	} else {
		buf_putc(out, '(');
		buf_append(out, buf_ptr(&t), t.len);
		buf_putc(out, ')');
	}
	buf_free(&t);
	return n > 0;
}

static void put_envelope(struct arena *a, const char *m, size_t hs, size_t he, struct buf *out)
{
	struct str v[E_N];
	struct buf from = BUF_INIT;

	env_fields(a, m, hs, he, v);
	buf_putc(out, '(');
	put_nstring(out, v[E_DATE]);
	buf_putc(out, ' ');
	put_nstring(out, v[E_SUBJECT]);
	buf_putc(out, ' ');
	(void)put_env_addr(a, v[E_FROM], &from);
	buf_append(out, buf_ptr(&from), from.len);
	for (int k = E_SENDER; k <= E_BCC; k++) {
		buf_putc(out, ' ');
		if (k == E_SENDER || k == E_REPLY_TO) {
			/* RFC 3501 7.4.2: absent or empty Sender/Reply-To = From */
			struct buf t = BUF_INIT;
			if (put_env_addr(a, v[k], &t))
				buf_append(out, buf_ptr(&t), t.len);
			else
				buf_append(out, buf_ptr(&from), from.len);
			buf_free(&t);
		} else {
			(void)put_env_addr(a, v[k], out);
		}
	}
	buf_putc(out, ' ');
	put_nstring(out, v[E_IRT]);
	buf_putc(out, ' ');
	put_nstring(out, v[E_MSGID]);
	buf_putc(out, ')');
	buf_free(&from);
}

/* ------------------------------------------------------------------ */
/* Date (RFC 5322 3.3, with the obsolete forms of 4.3)                  */

static int64_t days_from_civil(int64_t y, unsigned mo, unsigned d)
{
	/* Howard Hinnant's algorithm */
	y -= mo <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static bool lex_num(struct lex *l, unsigned maxdig, unsigned *v, unsigned *ndig)
{
	unsigned x = 0, k = 0;
	while (l->i < l->n && l->p[l->i] >= '0' && l->p[l->i] <= '9') {
		if (k < maxdig)
			x = x * 10 + (unsigned)(l->p[l->i] - '0');
		k++;
		l->i++;
	}
	if (k == 0 || k > maxdig)
		return false;
	*v = x;
	if (ndig)
		*ndig = k;
	return true;
}

static size_t lex_alpha(struct lex *l)
{
	size_t s = l->i;
	while (l->i < l->n && ((l->p[l->i] | 0x20) >= 'a' && (l->p[l->i] | 0x20) <= 'z'))
		l->i++;
	return l->i - s;
}

static bool parse_date(const char *s, size_t n, int64_t *t, int *tz)
{
	static const char months[] = "janfebmaraprmayjunjulaugsepoctnovdec";
	struct lex l = { s, 0, n };
	unsigned day, year, ydig, h = 0, mi = 0, sec = 0, mon = 0;
	int zone = 0;

	lex_cfws(&l);
	size_t st = l.i, an = lex_alpha(&l);
	if (an > 0) {		/* day-of-week, ignored */
		lex_cfws(&l);
		if (l.i < l.n && l.p[l.i] == ',')
			l.i++;
		lex_cfws(&l);
	} else {
		l.i = st;
	}
	if (!lex_num(&l, 2, &day, NULL))
		return false;
	lex_cfws(&l);
	if (l.i < l.n && l.p[l.i] == '-')
		l.i++;
	st = l.i;
	if (lex_alpha(&l) < 3)
		return false;
	for (unsigned k = 0; k < 12; k++) {
		if (lc((unsigned char)s[st]) == months[3 * k] && lc((unsigned char)s[st + 1]) == months[3 * k + 1] &&
		    lc((unsigned char)s[st + 2]) == months[3 * k + 2])
			mon = k + 1;
	}
	if (mon == 0)
		return false;
	lex_cfws(&l);
	if (l.i < l.n && l.p[l.i] == '-')
		l.i++;
	if (!lex_num(&l, 4, &year, &ydig))
		return false;
	if (ydig == 2)		/* RFC 5322 4.3 */
		year += year < 50 ? 2000 : 1900;
	else if (ydig == 3)
		year += 1900;
	lex_cfws(&l);
	if (l.i < l.n && l.p[l.i] >= '0' && l.p[l.i] <= '9') {
		if (!lex_num(&l, 2, &h, NULL))
			return false;
		lex_cfws(&l);
		if (l.i >= l.n || l.p[l.i] != ':')
			return false;
		l.i++;
		lex_cfws(&l);
		if (!lex_num(&l, 2, &mi, NULL))
			return false;
		lex_cfws(&l);
		if (l.i < l.n && l.p[l.i] == ':') {
			l.i++;
			lex_cfws(&l);
			if (!lex_num(&l, 2, &sec, NULL))
				return false;
		}
		lex_cfws(&l);
		if (l.i < l.n && (l.p[l.i] == '+' || l.p[l.i] == '-')) {
			int sign = l.p[l.i] == '-' ? -1 : 1;
			unsigned z, zd;
			l.i++;
			if (!lex_num(&l, 4, &z, &zd) || zd != 4 || z % 100 > 59)
				return false;
			zone = sign * (int)(z / 100 * 60 + z % 100);
		} else {
			static const struct { const char *n; int off; } zones[] = {
				{ "ut", 0 }, { "gmt", 0 }, { "z", 0 }, { "est", -300 }, { "edt", -240 },
				{ "cst", -360 }, { "cdt", -300 }, { "mst", -420 }, { "mdt", -360 },
				{ "pst", -480 }, { "pdt", -420 },
			};
			st = l.i;
			size_t zn = lex_alpha(&l);
			for (size_t k = 0; k < ARRAY_SIZE(zones); k++)
				if (span_ieqz(s + st, zn, zones[k].n))
					zone = zones[k].off;
			/* other (military) zones: RFC 5322 4.3 says treat as -0000 */
		}
	}
	if (day < 1 || day > 31 || h > 23 || mi > 59 || sec > 60 || year < 1 || year > 9999)
		return false;
	*t = days_from_civil((int64_t)year, mon, day) * 86400 + (int64_t)(h * 3600 + mi * 60 + sec) -
	     (int64_t)zone * 60;
	*tz = zone;
	return true;
}

/* ------------------------------------------------------------------ */
/* BODY / BODYSTRUCTURE                                                 */

struct render {
	const char *m;
	struct arena *a;
	const struct scan *sc;
	const struct mpart *parts;
	struct pinfo *pi;
};

static bool type_is(struct str t, const char *z)
{
	return span_ieqz(t.p, t.len, z);
}

static void put_params(struct buf *b, const struct param *ps, size_t n, bool add_charset)
{
	if (n == 0 && !add_charset) {
		buf_puts(b, "NIL");
		return;
	}
	buf_putc(b, '(');
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			buf_putc(b, ' ');
		put_string(b, ps[i].name.p, ps[i].name.len);
		buf_putc(b, ' ');
		put_string(b, ps[i].value.p, ps[i].value.len);
	}
	if (add_charset) {
		if (n > 0)
			buf_putc(b, ' ');
		buf_puts(b, "\"CHARSET\" \"US-ASCII\"");
	}
	buf_putc(b, ')');
}

static void put_ext_common(struct buf *b, const struct pinfo *pi)
{
	buf_putc(b, ' ');
	if (pi->dsp.p == NULL) {
		buf_puts(b, "NIL");
	} else {
		buf_putc(b, '(');
		put_string(b, pi->dsp.p, pi->dsp.len);
		buf_putc(b, ' ');
		put_params(b, pi->dparams, pi->ndparams, false);
		buf_putc(b, ')');
	}
	buf_putc(b, ' ');
	if (pi->nlangs == 0) {
		buf_puts(b, "NIL");
	} else {
		buf_putc(b, '(');
		for (size_t i = 0; i < pi->nlangs; i++) {
			if (i > 0)
				buf_putc(b, ' ');
			put_string(b, pi->langs[i].p, pi->langs[i].len);
		}
		buf_putc(b, ')');
	}
	buf_putc(b, ' ');
	put_nstring(b, pi->loc);
}

static void put_body(const struct render *r, uint32_t i, bool ext, struct buf *b)
{
	const struct mpart *p = &r->parts[i];
	const struct pinfo *pi = &r->pi[i];
	uint8_t kind = part_kind(p);

	buf_putc(b, '(');
	if (kind == MIME_KIND_MULTIPART) {
		uint32_t c = i + 1, end = i + 1 + p->subtree;
		while (c < end) {
			put_body(r, c, ext, b);
			c += 1 + r->parts[c].subtree;
		}
		buf_putc(b, ' ');
		put_string(b, pi->ct.subtype.p, pi->ct.subtype.len);
		if (ext) {
			buf_putc(b, ' ');
			put_params(b, pi->ct.params, pi->ct.nparams, false);
			put_ext_common(b, pi);
		}
		buf_putc(b, ')');
		return;
	}

	bool text;
	if (part_degraded(p) || (!pi->ct.valid && p->cls != CLS_MESSAGE)) {
		buf_puts(b, "\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\")");
		text = true;
	} else if (!pi->ct.valid) {
		buf_puts(b, "\"MESSAGE\" \"RFC822\" NIL");	/* multipart/digest default */
		text = false;
	} else {
		text = type_is(pi->ct.type, "text");
		put_string(b, pi->ct.type.p, pi->ct.type.len);
		buf_putc(b, ' ');
		put_string(b, pi->ct.subtype.p, pi->ct.subtype.len);
		buf_putc(b, ' ');
		bool cs = text && param_find(pi->ct.params, pi->ct.nparams, "charset") == NULL;
		put_params(b, pi->ct.params, pi->ct.nparams, cs);
	}
	buf_putc(b, ' ');
	put_nstring(b, pi->id);
	buf_putc(b, ' ');
	put_nstring(b, pi->desc);
	buf_putc(b, ' ');
	if (pi->enc.p != NULL)
		put_string(b, pi->enc.p, pi->enc.len);
	else
		buf_puts(b, "\"7BIT\"");
	buf_printf(b, " %zu", p->body_end - p->body_off);
	if (kind == MIME_KIND_MESSAGE) {
		const struct mpart *c = &r->parts[i + 1];
		buf_putc(b, ' ');
		put_envelope(r->a, r->m, c->hdr_off, hdr_limit(r->sc, c->hdr_off, c->body_off), b);
		buf_putc(b, ' ');
		put_body(r, i + 1, ext, b);
		buf_printf(b, " %zu", p->end_line - p->body_line);
	} else if (text) {
		buf_printf(b, " %zu", p->end_line - p->body_line);
	}
	if (ext) {
		buf_putc(b, ' ');
		put_nstring(b, pi->md5);
		put_ext_common(b, pi);
	}
	buf_putc(b, ')');
}

/* ------------------------------------------------------------------ */
/* Part table                                                           */

#define TBL_HDR 8
#define TBL_REC 32

static void table_get(const char *tbl, uint32_t i, struct rec *r);

static void serialize(const struct scan *sc, const struct pinfo *pi, struct buf *out)
{
	buf_append(out, "MP\x01\x00", 4);
	put_u32le(out, (uint32_t)sc->np);
	for (size_t i = 0; i < sc->np; i++) {
		const struct mpart *p = &sc->parts[i];
		uint8_t kind = part_kind(p), flags = 0;
		if (kind == MIME_KIND_LEAF && (p->cls == CLS_TEXT || part_degraded(p) ||
					       (p->cls == CLS_OTHER && !pi[i].ct.valid)))
			flags |= MIME_PF_TEXT;
		if (p->is_message)
			flags |= MIME_PF_MESSAGE;
		if (part_degraded(p))
			flags |= MIME_PF_DEGRADED;
		put_u64le(out, p->hdr_off);
		put_u64le(out, p->body_off);
		put_u64le(out, p->body_end);
		put_u32le(out, p->subtree);
		unsigned char x[4] = { kind, flags, enc_code(pi[i].enc), 0 };
		buf_append(out, x, 4);
	}
}

static bool table_ok(const char *tbl, size_t tlen, size_t msglen, uint32_t *count)
{
	const unsigned char *t = (const unsigned char *)tbl;
	if (tbl == NULL || tlen < TBL_HDR + TBL_REC || memcmp(t, "MP\x01", 3) != 0)
		return false;
	uint32_t n = get_u32le(t + 4);
	if (n == 0 || (tlen - TBL_HDR) / TBL_REC != n || (tlen - TBL_HDR) % TBL_REC != 0)
		return false;
	for (uint32_t i = 0; i < n; i++) {
		struct rec r;
		table_get(tbl, i, &r);
		if (r.hdr_off > r.body_off || r.body_off > r.body_end || r.body_end > msglen ||
		    r.subtree > n - 1 - i || r.kind > MIME_KIND_MESSAGE ||
		    (r.kind != MIME_KIND_LEAF && r.subtree == 0))
			return false;
	}
	*count = n;
	return true;
}

static void table_get(const char *tbl, uint32_t i, struct rec *r)
{
	const unsigned char *p = (const unsigned char *)tbl + TBL_HDR + (size_t)i * TBL_REC;
	r->hdr_off = get_u64le(p);
	r->body_off = get_u64le(p + 8);
	r->body_end = get_u64le(p + 16);
	r->subtree = get_u32le(p + 24);
	r->kind = p[28];
	r->flags = p[29];
	r->enc = p[30];
}

/* Parse msg into a scan (structure only) and its part table. */
static void build(const char *msg, size_t len, const struct mime_limits *lim, struct arena *scratch,
		  struct scan *sc, struct pinfo **pinfo)
{
	memset(sc, 0, sizeof(*sc));
	sc->m = msg;
	sc->len = len;
	sc->a = scratch;
	limits_fill(&sc->lim, lim);
	scan_message(sc);
	finish_scan(sc);
	struct pinfo *pi = arena_alloc(scratch, sc->np * sizeof(*pi));
	for (size_t i = 0; i < sc->np; i++) {
		const struct mpart *p = &sc->parts[i];
		parse_pinfo(scratch, msg, p->hdr_off, hdr_limit(sc, p->hdr_off, p->body_off), &pi[i]);
	}
	*pinfo = pi;
}

static void table_build(const char *msg, size_t len, struct buf *out)
{
	struct arena scratch;
	struct scan sc;
	struct pinfo *pi;

	arena_init(&scratch, 16384);
	build(msg, len, NULL, &scratch, &sc, &pi);
	serialize(&sc, pi, out);
	scan_free(&sc);
	arena_free(&scratch);
}

void mime_parse(const char *msg, size_t len, const struct mime_limits *lim, struct arena *a,
		struct mime_result *out)
{
	struct arena scratch;
	struct scan sc;
	struct pinfo *pi;
	struct buf b = BUF_INIT;

	if (msg == NULL)
		len = 0, msg = "";
	memset(out, 0, sizeof(*out));
	out->sent_date = INT64_MIN;
	arena_init(&scratch, 16384);
	build(msg, len, lim, &scratch, &sc, &pi);

	struct render r = { msg, &scratch, &sc, sc.parts, pi };
	const struct mpart *root = &sc.parts[0];
	put_envelope(&scratch, msg, root->hdr_off, hdr_limit(&sc, root->hdr_off, root->body_off), &b);
	out->envelope = arena_strndup(a, buf_ptr(&b), b.len);
	buf_clear(&b);
	put_body(&r, 0, true, &b);
	out->bodystructure = arena_strndup(a, buf_ptr(&b), b.len);
	buf_clear(&b);
	put_body(&r, 0, false, &b);
	out->body = arena_strndup(a, buf_ptr(&b), b.len);
	buf_free(&b);

	serialize(&sc, pi, &out->parts);
	out->nparts = sc.np;
	out->limited = sc.limited;

	struct str v[E_N];
	env_fields(&scratch, msg, root->hdr_off, hdr_limit(&sc, root->hdr_off, root->body_off), v);
	if (v[E_DATE].p != NULL && !parse_date(v[E_DATE].p, v[E_DATE].len, &out->sent_date, &out->sent_tz)) {
		out->sent_date = INT64_MIN;
		out->sent_tz = 0;
	}
	scan_free(&sc);
	arena_free(&scratch);
}

/* ------------------------------------------------------------------ */
/* BODY[section]                                                        */

enum sec_kind { SK_ALL, SK_PART, SK_MIME, SK_HEADER, SK_TEXT, SK_FIELDS, SK_FIELDS_NOT };

#define SEC_MAX_PATH 256

struct secspec {
	enum sec_kind kind;
	uint32_t path[SEC_MAX_PATH];
	size_t npath;
	bool too_deep;
	struct buf names;	/* field names, each followed by a NUL (names hold no NUL) */
	size_t nnames;
};

static bool kw(const char *p, size_t n, size_t *i, const char *k)
{
	size_t kl = strlen(k);
	if (n - *i < kl || !span_ieq(p + *i, kl, k, kl))
		return false;
	*i += kl;
	return true;
}

/* ASTRING-CHAR (RFC 3501 9): CHAR except atom-specials, but "]" allowed. */
static bool is_astring_char(unsigned char c)
{
	if (c <= 0x1f || c >= 0x7f)
		return false;
	return strchr("(){ %*\"\\", c) == NULL;
}

/* SP header-list; header-list = "(" header-fld-name *(SP header-fld-name) ")"
 * with header-fld-name = astring (atom, quoted string or literal). */
static int parse_header_list(const char *p, size_t n, size_t *ip, struct secspec *sp)
{
	size_t i = *ip;
	if (n - i < 2 || p[i] != ' ' || p[i + 1] != '(')
		return -1;
	i += 2;
	for (;;) {
		if (i >= n)
			return -1;
		if (p[i] == '"') {
			i++;
			for (;;) {
				if (i >= n)
					return -1;
				unsigned char c = (unsigned char)p[i];
				if (c == '"')
					break;
				if (c == '\\') {
					if (i + 1 >= n || (p[i + 1] != '"' && p[i + 1] != '\\'))
						return -1;
					c = (unsigned char)p[++i];
				} else if (c == 0 || c == '\r' || c == '\n' || c >= 0x80) {
					return -1;
				}
				buf_putc(&sp->names, (char)c);
				i++;
			}
			i++;
		} else if (p[i] == '{') {
			/* literal: "{" number ["+"] "}" CRLF octets */
			size_t s = ++i;
			while (i < n && p[i] >= '0' && p[i] <= '9')
				i++;
			uint64_t len;
			if (parse_u64(p + s, i - s, UINT32_MAX, &len) < 0)
				return -1;
			if (i < n && p[i] == '+')
				i++;
			if (n - i < 3 || p[i] != '}' || p[i + 1] != '\r' || p[i + 2] != '\n')
				return -1;
			i += 3;
			if (n - i < len || memchr(p + i, '\0', (size_t)len) != NULL)
				return -1;
			buf_append(&sp->names, p + i, (size_t)len);
			i += (size_t)len;
		} else {
			size_t s = i;
			while (i < n && p[i] != ')' && is_astring_char((unsigned char)p[i]))
				i++;
			if (i == s)
				return -1;
			buf_append(&sp->names, p + s, i - s);
		}
		buf_putc(&sp->names, '\0');
		sp->nnames++;
		if (i < n && p[i] == ')') {
			*ip = i + 1;
			return 0;
		}
		if (i >= n || p[i] != ' ')
			return -1;
		i++;
	}
}

/* section-spec (RFC 3501 9). */
static int parse_section(struct str sec, struct secspec *sp)
{
	const char *p = sec.p;
	size_t n = sec.len, i = 0;

	sp->kind = SK_ALL;
	if (n == 0)
		return 0;
	while (i < n && p[i] >= '0' && p[i] <= '9') {
		if (p[i] == '0')
			return -1;	/* nz-number */
		size_t s = i;
		while (i < n && p[i] >= '0' && p[i] <= '9')
			i++;
		uint64_t v;
		if (parse_u64(p + s, i - s, UINT32_MAX, &v) < 0)
			return -1;
		if (sp->npath < SEC_MAX_PATH)
			sp->path[sp->npath++] = (uint32_t)v;
		else
			sp->too_deep = true;
		if (i == n) {
			sp->kind = SK_PART;
			return 0;
		}
		if (p[i] != '.')
			return -1;
		i++;
		if (i == n)
			return -1;
	}
	if (kw(p, n, &i, "HEADER.FIELDS.NOT"))
		sp->kind = SK_FIELDS_NOT;
	else if (kw(p, n, &i, "HEADER.FIELDS"))
		sp->kind = SK_FIELDS;
	else if (kw(p, n, &i, "HEADER"))
		sp->kind = SK_HEADER;
	else if (kw(p, n, &i, "TEXT"))
		sp->kind = SK_TEXT;
	else if (sp->npath > 0 && kw(p, n, &i, "MIME"))
		sp->kind = SK_MIME;
	else
		return -1;
	if (sp->kind == SK_FIELDS || sp->kind == SK_FIELDS_NOT) {
		if (parse_header_list(p, n, &i, sp) < 0)
			return -1;
	}
	return i == n ? 0 : -1;
}

static bool child_of(const char *tbl, uint32_t count, uint32_t parent, uint32_t nth, uint32_t *out)
{
	struct rec pr, cr;
	table_get(tbl, parent, &pr);
	uint64_t end = (uint64_t)parent + 1 + pr.subtree;
	uint64_t c = (uint64_t)parent + 1;
	for (uint32_t k = 1; c < end && c < count; k++) {
		if (k == nth) {
			*out = (uint32_t)c;
			return true;
		}
		table_get(tbl, (uint32_t)c, &cr);
		c += 1 + (uint64_t)cr.subtree;
	}
	return false;
}

/* "1" of a message is its first part if multipart, else its body. */
static bool msg_part(const char *tbl, uint32_t count, uint32_t msg, uint32_t nth, uint32_t *out)
{
	struct rec r;
	table_get(tbl, msg, &r);
	if (r.kind == MIME_KIND_MULTIPART)
		return child_of(tbl, count, msg, nth, out);
	if (nth != 1)
		return false;
	*out = msg;
	return true;
}

static bool names_match(const struct secspec *sp, const char *name, size_t nl)
{
	const char *q = buf_ptr(&sp->names);
	for (size_t k = 0; k < sp->nnames; k++) {
		size_t l = strlen(q);
		if (span_ieq(q, l, name, nl))
			return true;
		q += l + 1;
	}
	return false;
}

static void put_fields(const char *m, size_t hs, size_t he, const struct secspec *sp, struct buf *out)
{
	struct hiter it;
	struct hfield f;
	bool want_match = sp->kind == SK_FIELDS;

	hiter_init(&it, m, hs, he);
	while (hiter_next(&it, &f)) {
		bool match = f.colon && names_match(sp, m + f.start, f.name_len);
		if (match == want_match)
			buf_append(out, m + f.start, f.end - f.start);
	}
	if (it.blank)
		buf_append(out, m + it.pos, he - it.pos);
}

int mime_section(const char *msg, size_t len, const char *parts, size_t parts_len, struct str section,
		 struct buf *out)
{
	struct secspec *sp = xcalloc(1, sizeof(*sp));
	struct buf own = BUF_INIT;
	int rc = -1;

	if (section.p == NULL)
		section = str_make("", 0);
	if (parse_section(section, sp) < 0)
		goto done;
	rc = 0;
	if (msg == NULL)
		msg = "", len = 0;
	if (sp->kind == SK_ALL) {
		buf_append(out, msg, len);
		goto done;
	}
	if (sp->too_deep)
		goto done;

	uint32_t count;
	const char *tbl = parts;
	if (!table_ok(parts, parts_len, len, &count)) {
		table_build(msg, len, &own);
		tbl = buf_ptr(&own);
		if (!table_ok(tbl, own.len, len, &count))
			goto done;
	}

	/* Resolve the part path: cur is a message while is_msg. */
	uint32_t cur = 0;
	bool is_msg = true;
	struct rec r;
	for (size_t k = 0; k < sp->npath; k++) {
		uint32_t n = sp->path[k], next;
		table_get(tbl, cur, &r);
		if (is_msg) {
			if (!msg_part(tbl, count, cur, n, &next))
				goto done;
		} else if (r.kind == MIME_KIND_MULTIPART) {
			if (!child_of(tbl, count, cur, n, &next))
				goto done;
		} else if (r.kind == MIME_KIND_MESSAGE && cur + 1 < count) {
			if (!msg_part(tbl, count, cur + 1, n, &next))
				goto done;
		} else {
			goto done;
		}
		cur = next;
		is_msg = false;
	}
	table_get(tbl, cur, &r);
	switch (sp->kind) {
	case SK_PART:
		buf_append(out, msg + r.body_off, (size_t)(r.body_end - r.body_off));
		goto done;
	case SK_MIME:
		buf_append(out, msg + r.hdr_off, (size_t)(r.body_off - r.hdr_off));
		goto done;
	default:
		break;
	}
	if (!is_msg) {
		/* HEADER/TEXT after a part number need a message/rfc822 part */
		if (r.kind != MIME_KIND_MESSAGE || cur + 1 >= count)
			goto done;
		table_get(tbl, cur + 1, &r);
	}
	if (sp->kind == SK_HEADER)
		buf_append(out, msg + r.hdr_off, (size_t)(r.body_off - r.hdr_off));
	else if (sp->kind == SK_TEXT)
		buf_append(out, msg + r.body_off, (size_t)(r.body_end - r.body_off));
	else
		put_fields(msg, (size_t)r.hdr_off, (size_t)r.body_off, sp, out);
done:
	buf_free(&sp->names);
	free(sp);
	buf_free(&own);
	return rc;
}

struct str mime_header_block(const char *msg, size_t len)
{
	struct hiter it;
	struct hfield f;

	if (msg == NULL)
		return str_make("", 0);
	hiter_init(&it, msg, 0, len);
	while (hiter_next(&it, &f))
		;
	if (it.blank) {
		size_t e = it.pos;
		const char *nl = memchr(msg + e, '\n', len - e);
		e = nl ? (size_t)(nl - msg) + 1 : len;
		return str_make(msg, e);
	}
	return str_make(msg, it.pos);
}

/* ------------------------------------------------------------------ */
/* Text for SEARCH: charsets, RFC 2047, transfer encodings              */

static const uint16_t cp1252_c1[32] = {
	0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
	0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008D, 0x017D, 0x008F,
	0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
	0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
};

static void put_cp(struct buf *b, uint32_t cp)
{
	char x[4];
	if (cp < 0x80) {
		buf_putc(b, (char)cp);
	} else if (cp < 0x800) {
		x[0] = (char)(0xC0 | cp >> 6);
		x[1] = (char)(0x80 | (cp & 0x3F));
		buf_append(b, x, 2);
	} else {
		x[0] = (char)(0xE0 | cp >> 12);
		x[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		x[2] = (char)(0x80 | (cp & 0x3F));
		buf_append(b, x, 3);
	}
}

static void from_1252(struct buf *b, const char *p, size_t n)
{
	size_t run = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c != 0 && c < 0x80)
			continue;
		buf_append(b, p + run, i - run);
		run = i + 1;
		if (c == 0)
			buf_append(b, REPLACEMENT, 3);
		else if (c < 0xA0)
			put_cp(b, cp1252_c1[c - 0x80]);
		else
			put_cp(b, c);
	}
	buf_append(b, p + run, n - run);
}

static bool is_utf8(const char *p, size_t n)
{
	const unsigned char *s = (const unsigned char *)p;
	for (size_t i = 0; i < n;) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		size_t k = utf8_seq(s + i, n - i);
		if (k == 0)
			return false;
		i += k;
	}
	return true;
}

/* 8-bit text of unknown charset: UTF-8 if it is, else Windows-1252. */
static void lenient_8bit(struct buf *b, const char *p, size_t n)
{
	if (is_utf8(p, n))
		(void)put_utf8_clean(b, p, n, false);
	else
		from_1252(b, p, n);
}

enum cs_kind { CS_UTF8, CS_ASCII, CS_1252, CS_OTHER };

/* Lower-cased charset name into norm (NUL-terminated); an RFC 2231 "*lang"
 * suffix is dropped.  Names iconv could misread (options after "//",
 * unexpected characters, too long) are CS_ASCII, i.e. treated leniently. */
static enum cs_kind cs_classify(const char *cs, size_t n, char norm[64])
{
	static const char *const utf8[] = { "utf-8", "utf8" };
	static const char *const ascii[] = { "us-ascii", "ascii", "ansi_x3.4-1968", "iso646-us", "us", "" };
	static const char *const w1252[] = {
		"iso-8859-1", "iso8859-1", "iso_8859-1", "iso_8859-1:1987", "latin1", "latin-1", "l1",
		"cp819", "ibm819", "windows-1252", "cp1252", "x-cp1252", "cp-1252",
	};
	size_t k = 0;
	for (size_t i = 0; i < n && cs[i] != '*'; i++) {
		unsigned char c = lc((unsigned char)cs[i]);
		if (k == 63 || !(c == '-' || c == '_' || c == '.' || c == ':' || c == '+' ||
				 (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')))
			return CS_ASCII;
		norm[k++] = (char)c;
	}
	norm[k] = '\0';
	for (size_t i = 0; i < ARRAY_SIZE(utf8); i++)
		if (strcmp(norm, utf8[i]) == 0)
			return CS_UTF8;
	for (size_t i = 0; i < ARRAY_SIZE(ascii); i++)
		if (strcmp(norm, ascii[i]) == 0)
			return CS_ASCII;
	for (size_t i = 0; i < ARRAY_SIZE(w1252); i++)
		if (strcmp(norm, w1252[i]) == 0)
			return CS_1252;
	return CS_OTHER;
}

/* Converts with iconv straight into out; NUL in the result (UTF-16 text
 * can hold it) is replaced afterwards, which is rare. */
static bool iconv_to_utf8(const char *name, const char *p, size_t n, struct buf *out)
{
	iconv_t cd = iconv_open("UTF-8", name);
	if (cd == (iconv_t)-1)
		return false;
	size_t start = out->len;
	char *in = (char *)p;
	size_t inleft = n, extra = 0;
	for (;;) {
		size_t room = MAX((size_t)64, MIN(inleft + inleft / 2 + 16, (size_t)1 << 20)) + extra;
		char *o = buf_reserve(out, room), *op = o;
		size_t oleft = room;
		size_t rc = inleft > 0 ? iconv(cd, &in, &inleft, &op, &oleft)
				       : iconv(cd, NULL, NULL, &op, &oleft);
		int err = errno;
		buf_commit(out, (size_t)(op - o));
		if (rc != (size_t)-1) {
			if (inleft == 0 && in == NULL)
				break;
			if (inleft == 0)
				in = NULL;	/* next round flushes the shift state */
			continue;
		}
		if (err == E2BIG) {
			/* no room for even one character: grow, within reason */
			if (op == o && (extra = extra ? extra * 2 : 256) > ((size_t)1 << 16))
				break;
			continue;
		}
		if ((err == EILSEQ || err == EINVAL) && inleft > 0) {
			buf_append(out, REPLACEMENT, 3);
			in++;
			inleft--;
			if (inleft == 0)
				in = NULL;
			continue;
		}
		break;
	}
	iconv_close(cd);
	if (memchr(buf_ptr(out) + start, '\0', out->len - start) != NULL) {
		struct buf t = BUF_INIT;
		buf_append(&t, buf_ptr(out) + start, out->len - start);
		out->len = start;
		(void)put_utf8_clean(out, buf_ptr(&t), t.len, false);
		buf_free(&t);
	}
	return true;
}

/* Append p[0..n) in charset cs as UTF-8. */
static void to_utf8(const char *cs, size_t csn, const char *p, size_t n, struct buf *out)
{
	char norm[64];
	switch (cs_classify(cs, csn, norm)) {
	case CS_UTF8:
		(void)put_utf8_clean(out, p, n, false);
		break;
	case CS_1252:
		from_1252(out, p, n);
		break;
	case CS_OTHER:
		if (!iconv_to_utf8(norm, p, n, out))
			lenient_8bit(out, p, n);	/* unknown to iconv */
		break;
	case CS_ASCII:
		lenient_8bit(out, p, n);
		break;
	}
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)(c | 0x20);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static int b64val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Lenient base64 (RFC 2045 6.8): characters outside the alphabet are
 * ignored, "=" ends a quantum, missing padding is tolerated. */
static void b64_decode(const char *p, size_t n, struct buf *out)
{
	uint32_t acc = 0;
	int bits = 0;
	char *o = buf_reserve(out, n / 4 * 3 + 3);
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '=') {
			acc = 0;
			bits = 0;
			continue;
		}
		int v = b64val(p[i]);
		if (v < 0)
			continue;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			o[k++] = (char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	buf_commit(out, k);
}

/* Quoted-printable body (RFC 2045 6.7): trailing white space is dropped,
 * "=" at the end of a line is a soft break, invalid "=" sequences are
 * kept as they are. */
static void qp_decode(const char *p, size_t n, struct buf *out)
{
	size_t i = 0;
	while (i < n) {
		const char *nl = memchr(p + i, '\n', n - i);
		size_t le = nl ? (size_t)(nl - p) + 1 : n, ce = nl ? (size_t)(nl - p) : n;
		if (ce > i && p[ce - 1] == '\r')
			ce--;
		while (ce > i && is_wsp(p[ce - 1]))
			ce--;
		bool soft = false;
		size_t k = i, run = i;
		while (k < ce) {
			if (p[k] != '=') {
				k++;
				continue;
			}
			buf_append(out, p + run, k - run);
			if (k + 1 == ce) {
				soft = true;
				k++;
			} else if (k + 2 < ce && hexval(p[k + 1]) >= 0 && hexval(p[k + 2]) >= 0) {
				buf_putc(out, (char)(hexval(p[k + 1]) << 4 | hexval(p[k + 2])));
				k += 3;
			} else {
				buf_putc(out, '=');
				k++;
			}
			run = k;
		}
		buf_append(out, p + run, k - run);
		if (nl != NULL && !soft)
			buf_putc(out, '\n');
		i = le;
	}
}

/* RFC 2047 Q encoding: like quoted-printable, "_" is a space. */
static void q_decode(const char *p, size_t n, struct buf *out)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '_') {
			buf_putc(out, ' ');
		} else if (p[i] == '=' && i + 2 < n && hexval(p[i + 1]) >= 0 && hexval(p[i + 2]) >= 0) {
			buf_putc(out, (char)(hexval(p[i + 1]) << 4 | hexval(p[i + 2])));
			i += 2;
		} else {
			buf_putc(out, p[i]);
		}
	}
}

struct ew {
	struct str cs, text;
	char enc;
	size_t end;
};

static bool ew_char_ok(char c)
{
	return c != ' ' && c != '\t' && c != '\r' && c != '\n' && c != '?';
}

/* "=?" charset "?" encoding "?" encoded-text "?=" at s[i] (RFC 2047 2). */
static bool parse_ew(const char *s, size_t n, size_t i, struct ew *ew)
{
	size_t j = i + 2, st = j;
	while (j < n && ew_char_ok(s[j]))
		j++;
	if (j >= n || s[j] != '?' || j == st || j - st > 75)
		return false;
	ew->cs = str_make(s + st, j - st);
	j++;
	if (j + 1 >= n || s[j + 1] != '?')
		return false;
	ew->enc = (char)(s[j] | 0x20);
	if (ew->enc != 'q' && ew->enc != 'b')
		return false;
	j += 2;
	st = j;
	while (j < n && ew_char_ok(s[j]))
		j++;
	if (j + 1 >= n || s[j] != '?' || s[j + 1] != '=')
		return false;
	ew->text = str_make(s + st, j - st);
	ew->end = j + 2;
	return true;
}

static bool all_wsp(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!is_wsp(p[i]))
			return false;
	return true;
}

/* Decode encoded-words anywhere in s (lenient like most clients: also
 * inside words and quoted strings).  White space between two encoded-words
 * is dropped (RFC 2047 6.2); adjacent words in the same charset are
 * converted together so that a character split across them survives. */
static void decode_2047(const char *s, size_t n, struct buf *out)
{
	struct buf pend = BUF_INIT;
	struct str pcs = { NULL, 0 };
	size_t i = 0, lit = 0;

	while (i + 1 < n) {
		struct ew ew;
		if (s[i] != '=' || s[i + 1] != '?' || !parse_ew(s, n, i, &ew)) {
			i++;
			continue;
		}
		bool drop = pcs.p != NULL && all_wsp(s + lit, i - lit);
		bool same = pcs.p != NULL && span_ieq(pcs.p, pcs.len, ew.cs.p, ew.cs.len);
		if (pcs.p != NULL && (!drop || !same)) {
			to_utf8(pcs.p, pcs.len, buf_ptr(&pend), pend.len, out);
			buf_clear(&pend);
			pcs.p = NULL;
		}
		if (!drop)
			lenient_8bit(out, s + lit, i - lit);
		if (ew.enc == 'q')
			q_decode(ew.text.p, ew.text.len, &pend);
		else
			b64_decode(ew.text.p, ew.text.len, &pend);
		pcs = ew.cs;
		i = lit = ew.end;
	}
	if (pcs.p != NULL)
		to_utf8(pcs.p, pcs.len, buf_ptr(&pend), pend.len, out);
	lenient_8bit(out, s + lit, n - lit);
	buf_free(&pend);
}

void mime_header_decoded(const char *msg, size_t len, const char *field, struct arena *a, struct buf *out)
{
	struct hiter it;
	struct hfield f;
	bool first = true;

	if (msg == NULL || field == NULL)
		return;
	hiter_init(&it, msg, 0, len);
	while (hiter_next(&it, &f)) {
		if (!hfield_is(msg, &f, field))
			continue;
		struct str v = unfold(a, msg + f.value, f.end - f.value);
		if (!first)
			buf_putc(out, '\n');
		first = false;
		decode_2047(v.p, v.len, out);
	}
}

/* CRLF -> LF in out from start on, in place. */
static void crlf_to_lf(struct buf *out, size_t start)
{
	char *p = buf_ptr(out);
	size_t k = start;
	for (size_t i = start; i < out->len; i++) {
		if (p[i] == '\r' && i + 1 < out->len && p[i + 1] == '\n')
			continue;
		p[k++] = p[i];
	}
	out->len = k;
	p[k] = '\0';
}

void mime_body_text(const char *msg, size_t len, const char *parts, size_t parts_len, struct buf *out)
{
	struct buf own = BUF_INIT, raw = BUF_INIT;
	struct arena a;
	const char *tbl = parts;
	uint32_t count;
	bool first = true;

	if (msg == NULL)
		msg = "", len = 0;
	if (!table_ok(parts, parts_len, len, &count)) {
		table_build(msg, len, &own);
		tbl = buf_ptr(&own);
		if (!table_ok(tbl, own.len, len, &count)) {
			buf_free(&own);
			return;
		}
	}
	arena_init(&a, 4096);
	for (uint32_t i = 0; i < count; i++) {
		struct rec r;
		table_get(tbl, i, &r);
		if (r.kind != MIME_KIND_LEAF || !(r.flags & MIME_PF_TEXT))
			continue;
		struct str cs = { "", 0 };
		if (!(r.flags & MIME_PF_DEGRADED)) {
			struct hiter it;
			struct hfield f;
			size_t he = (size_t)r.body_off;
			if (he - r.hdr_off > 256 * 1024)
				he = (size_t)r.hdr_off + 256 * 1024;
			hiter_init(&it, msg, (size_t)r.hdr_off, he);
			while (hiter_next(&it, &f)) {
				if (!hfield_is(msg, &f, "Content-Type"))
					continue;
				struct ctype ct;
				parse_ctype(&a, unfold(&a, msg + f.value, f.end - f.value), &ct);
				const struct param *c = ct.valid ? param_find(ct.params, ct.nparams, "charset") : NULL;
				if (c != NULL)
					cs = c->value;
				break;
			}
		}
		const char *body = msg + r.body_off;
		size_t blen = (size_t)(r.body_end - r.body_off);
		buf_clear(&raw);
		(void)buf_reserve(&raw, blen);
		if (r.enc == MIME_ENC_BASE64) {
			b64_decode(body, blen, &raw);
			body = buf_ptr(&raw);
			blen = raw.len;
		} else if (r.enc == MIME_ENC_QP) {
			qp_decode(body, blen, &raw);
			body = buf_ptr(&raw);
			blen = raw.len;
		}
		if (!first)
			buf_putc(out, '\n');
		first = false;
		size_t start = out->len;
		(void)buf_reserve(out, blen + blen / 8);
		to_utf8(cs.p, cs.len, body, blen, out);
		crlf_to_lf(out, start);
		arena_reset(&a);
	}
	arena_free(&a);
	buf_free(&raw);
	buf_free(&own);
}
