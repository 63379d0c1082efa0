/* search.c - see search.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imapd/search.h"
#include "lib/mime.h"

/* ---- case folding ---- */

/* Simple (1:1) case folding for the scripts European mail mostly uses;
 * everything else folds to itself. */
static uint32_t fold_cp(uint32_t c)
{
	if (c < 0x80)
		return c >= 'A' && c <= 'Z' ? c + 32 : c;
	if (c == 0xB5)
		return 0x3BC;	/* MICRO SIGN -> GREEK SMALL LETTER MU */
	if (c >= 0xC0 && c <= 0xDE && c != 0xD7)
		return c + 32;
	if (c >= 0x100 && c <= 0x17F) {
		if (c == 0x130)
			return 'i';	/* I WITH DOT ABOVE: its lower case */
		if (c == 0x178)
			return 0xFF;
		if (c == 0x17F)
			return 's';	/* LONG S */
		if ((c <= 0x137 || (c >= 0x14A && c <= 0x177)) && c % 2 == 0)
			return c + 1;
		if (((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) && c % 2 == 1)
			return c + 1;
		return c;
	}
	if (c >= 0x386 && c <= 0x3A9) {
		if (c >= 0x391 && c != 0x3A2)
			return c + 32;
		if (c == 0x386)
			return 0x3AC;
		if (c >= 0x388 && c <= 0x38A)
			return c + 37;
		if (c == 0x38C)
			return 0x3CC;
		if (c == 0x38E || c == 0x38F)
			return c + 63;
		return c;
	}
	if (c == 0x3C2)
		return 0x3C3;	/* final sigma */
	if (c >= 0x400 && c <= 0x40F)
		return c + 80;
	if (c >= 0x410 && c <= 0x42F)
		return c + 32;
	return c;
}

/* Length of the UTF-8 sequence at p (1..4) with its code point, or 0 when
 * p does not start a well-formed one. */
static size_t utf8_next(const unsigned char *p, size_t n, uint32_t *cp)
{
	unsigned char b = p[0];
	size_t len;
	uint32_t c, min;
	if (b < 0x80) {
		*cp = b;
		return 1;
	} else if (b >= 0xC2 && b <= 0xDF) {
		len = 2, c = b & 0x1F, min = 0x80;
	} else if (b >= 0xE0 && b <= 0xEF) {
		len = 3, c = b & 0x0F, min = 0x800;
	} else if (b >= 0xF0 && b <= 0xF4) {
		len = 4, c = b & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		c = (c << 6) | (p[i] & 0x3F);
	}
	if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
		return 0;
	*cp = c;
	return len;
}

static void utf8_put(struct buf *out, uint32_t c)
{
	char *w = buf_reserve(out, 4);
	if (c < 0x80) {
		w[0] = (char)c;
		buf_commit(out, 1);
	} else if (c < 0x800) {
		w[0] = (char)(0xC0 | (c >> 6));
		w[1] = (char)(0x80 | (c & 0x3F));
		buf_commit(out, 2);
	} else if (c < 0x10000) {
		w[0] = (char)(0xE0 | (c >> 12));
		w[1] = (char)(0x80 | ((c >> 6) & 0x3F));
		w[2] = (char)(0x80 | (c & 0x3F));
		buf_commit(out, 3);
	} else {
		w[0] = (char)(0xF0 | (c >> 18));
		w[1] = (char)(0x80 | ((c >> 12) & 0x3F));
		w[2] = (char)(0x80 | ((c >> 6) & 0x3F));
		w[3] = (char)(0x80 | (c & 0x3F));
		buf_commit(out, 4);
	}
}

void search_fold(const char *p, size_t n, struct buf *out)
{
	const unsigned char *u = (const unsigned char *)p;
	size_t i = 0;
	buf_reserve(out, n);
	while (i < n) {
		/* ASCII runs are the common case: fold them in place. */
		if (u[i] < 0x80) {
			size_t j = i;
			while (j < n && u[j] < 0x80)
				j++;
			char *w = buf_reserve(out, j - i);
			for (size_t k = i; k < j; k++)
				w[k - i] = (char)(u[k] >= 'A' && u[k] <= 'Z' ? u[k] + 32 : u[k]);
			buf_commit(out, j - i);
			i = j;
			continue;
		}
		uint32_t c;
		size_t len = utf8_next(u + i, n - i, &c);
		if (len == 0) {
			buf_append(out, p + i, 1);
			i++;
			continue;
		}
		uint32_t f = fold_cp(c);
		if (f == c)
			buf_append(out, p + i, len);
		else
			utf8_put(out, f);
		i += len;
	}
}

static struct str fold_dup(struct arena *a, struct str s)
{
	struct buf b = BUF_INIT;
	search_fold(s.p, s.len, &b);
	struct str r = str_make(arena_strndup(a, buf_ptr(&b), b.len), b.len);
	buf_free(&b);
	return r;
}

/* ---- dates ---- */

static int64_t days_from_civil(int64_t y, int m, int d)
{
	/* H. Hinnant's algorithm: proleptic Gregorian calendar. */
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int64_t search_date(struct str s)
{
	/* RFC 3501 9: date-text = date-day "-" date-month "-" date-year,
	 * date-day = 1*2DIGIT, date-year = 4DIGIT. */
	static const char months[12][4] = {
		"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
	};
	static const int mdays[12] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	size_t i = 0;
	int day = 0, year = 0, mon = -1;
	while (i < s.len && i < 2 && s.p[i] >= '0' && s.p[i] <= '9')
		day = day * 10 + (s.p[i++] - '0');
	if (i == 0 || s.len != i + 9 || s.p[i] != '-' || s.p[i + 4] != '-')
		return INT64_MIN;
	for (int m = 0; m < 12; m++)
		if (strncasecmp(s.p + i + 1, months[m], 3) == 0)
			mon = m;
	for (size_t k = i + 5; k < s.len; k++) {
		if (s.p[k] < '0' || s.p[k] > '9')
			return INT64_MIN;
		year = year * 10 + (s.p[k] - '0');
	}
	if (mon < 0 || day < 1 || day > mdays[mon])
		return INT64_MIN;
	if (mon == 1 && day == 29 && !(year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)))
		return INT64_MIN;
	return days_from_civil(year, mon + 1, day);
}

/* ---- parsing ---- */

struct frame {
	struct search_key *node;
	unsigned need, got;	/* OR: 2, NOT: 1; lists: 0 */
	bool list;
	const struct imap_arg *args;	/* lists: the arguments and the next one */
	size_t n, pos;
	size_t list_at;		/* the innermost list frame (itself for a list) */
};

struct pctx {
	const struct search_limits *lim;
	search_resolve_fn resolve;
	void *rctx;
	struct arena *a;
	struct search_query *q;
	const char *err;
	struct frame *st;
	size_t ns, cap;
};

static struct search_key *new_key(struct pctx *pc, enum search_op op)
{
	if (++pc->q->nkeys > pc->lim->max_keys) {
		pc->err = "Too many search keys";
		return NULL;
	}
	struct search_key *k = arena_zalloc(pc->a, sizeof(*k));
	k->op = op;
	k->depth = 1;
	return k;
}

static void push_kid(struct arena *a, struct search_key *p, struct search_key *k)
{
	if (p->nkids == p->capkids) {
		size_t ncap = p->capkids ? p->capkids * 2 : 4;
		struct search_key **n = arena_alloc(a, ncap * sizeof(*n));
		if (p->nkids)
			memcpy(n, p->kids, p->nkids * sizeof(*n));
		p->kids = n;
		p->capkids = ncap;
	}
	p->kids[p->nkids++] = k;
	p->depth = MAX(p->depth, k->depth + 1);
	p->cost = MAX(p->cost, k->cost);
}

/* Add a finished key; an AND in an AND and an OR in an OR are merged, so
 * an OR chain ("OR OR OR a b c d", or "OR a OR b OR c d") makes one flat
 * node.  The smaller list of children moves into the larger one, so a
 * chain of n costs O(n log n) pointer moves and arena, not O(n^2) (the
 * order of an AND's or OR's children does not matter; order_kids() sorts
 * them at the end). */
static void add_kid(struct arena *a, struct search_key *p, struct search_key *k)
{
	if (!((p->op == SK_AND || p->op == SK_OR) && k->op == p->op)) {
		push_kid(a, p, k);
		return;
	}
	if (k->nkids > p->nkids) {
		struct search_key **kids = p->kids;
		size_t n = p->nkids;
		p->kids = k->kids;
		p->nkids = k->nkids;
		p->capkids = k->capkids;
		for (size_t i = 0; i < n; i++)
			push_kid(a, p, kids[i]);
	} else {
		for (size_t i = 0; i < k->nkids; i++)
			push_kid(a, p, k->kids[i]);
	}
	/* k's children sit one level below k, as they do below p now. */
	p->depth = MAX(p->depth, k->depth);
	p->cost = MAX(p->cost, k->cost);
}

/* An operator got all its operands: simplify and check the depth. */
static struct search_key *finish(struct pctx *pc, struct search_key *k)
{
	if (k->op == SK_NOT && k->kids[0]->op == SK_NOT)
		return k->kids[0]->kids[0];
	if ((k->op == SK_AND || k->op == SK_OR) && k->nkids == 1)
		return k->kids[0];
	if (k->depth > pc->lim->max_depth) {
		pc->err = "Search keys nested too deeply";
		return NULL;
	}
	return k;
}

/* Evaluate cheap children first: a stable partition by cost (row keys,
 * then headers, then bodies).  Recursion is bounded by max_depth. */
static void order_kids(struct arena *a, struct search_key *k)
{
	if (k->nkids == 0)
		return;
	for (size_t i = 0; i < k->nkids; i++)
		order_kids(a, k->kids[i]);
	if (k->op != SK_AND && k->op != SK_OR)
		return;
	struct search_key **sorted = arena_alloc(a, k->nkids * sizeof(*sorted));
	size_t j = 0;
	for (unsigned c = 0; c <= 2; c++)
		for (size_t i = 0; i < k->nkids; i++)
			if (k->kids[i]->cost == c)
				sorted[j++] = k->kids[i];
	k->kids = sorted;
	k->capkids = k->nkids;
}

static const struct imap_arg *next_arg(struct frame *l)
{
	return l->pos < l->n ? &l->args[l->pos++] : NULL;
}

static bool astring_arg(struct frame *l, struct str *out)
{
	const struct imap_arg *a = next_arg(l);
	return a != NULL && imap_arg_astring(a, out);
}

static struct search_key *flag_key(struct pctx *pc, unsigned flag, bool set)
{
	struct search_key *k = new_key(pc, SK_FLAG);
	if (k != NULL) {
		k->flag = flag;
		k->set = set;
	}
	return k;
}

static struct search_key *not_of(struct pctx *pc, struct search_key *kid)
{
	if (kid == NULL)
		return NULL;
	struct search_key *k = new_key(pc, SK_NOT);
	if (k == NULL)
		return NULL;
	push_kid(pc->a, k, kid);
	return finish(pc, k);
}

/* RFC 3501 9 flag-keyword = atom.  Anything else can be on no message
 * (mailview.c keeps keywords to printable ASCII atoms). */
static struct search_key *keyword_key(struct pctx *pc, struct str kw)
{
	struct search_key *k = new_key(pc, SK_KEYWORD);
	if (k == NULL)
		return NULL;
	char *low = arena_strndup(pc->a, kw.p, kw.len);
	k->never = kw.len == 0 || kw.len > 128;
	for (size_t i = 0; i < kw.len; i++) {
		unsigned char ch = (unsigned char)low[i];
		if (ch <= 0x20 || ch >= 0x7f || strchr("(){%*\"\\]", ch) != NULL)
			k->never = true;
		if (ch >= 'A' && ch <= 'Z')
			low[i] = (char)(ch + 32);
	}
	k->str = str_make(low, kw.len);
	return k;
}

/* RFC 5322 2.2: field-name = 1*ftext, printable ASCII except ":". */
static bool field_name_ok(struct str f)
{
	if (f.len == 0 || f.len > 256)
		return false;
	for (size_t i = 0; i < f.len; i++)
		if ((unsigned char)f.p[i] <= 32 || (unsigned char)f.p[i] >= 127 || f.p[i] == ':')
			return false;
	return true;
}

static struct search_key *text_key(struct pctx *pc, enum search_op op, const char *field, struct str needle)
{
	struct search_key *k = new_key(pc, op);
	if (k == NULL)
		return NULL;
	k->field = field;
	k->str = fold_dup(pc->a, needle);
	k->cost = op == SK_HEADER ? 1 : 2;
	pc->q->need_data = true;
	return k;
}

static struct search_key *parse_leaf(struct pctx *pc, struct frame *l, const struct imap_arg *arg)
{
	struct str name, s;
	if (!imap_arg_atom(arg, &name) || name.len == 0) {
		pc->err = "Invalid search key";
		return NULL;
	}
	if ((name.p[0] >= '0' && name.p[0] <= '9') || name.p[0] == '*' || str_ieq(name, "UID")) {
		bool uid = str_ieq(name, "UID");
		if (uid && (arg = next_arg(l)) == NULL) {
			pc->err = "UID needs a UID set";
			return NULL;
		}
		struct search_key *k = new_key(pc, SK_UIDS);
		if (k == NULL)
			return NULL;
		if (!uid)
			pc->q->has_seqnums = true;
		const char *err = NULL;
		if (pc->resolve(pc->rctx, arg, uid, pc->a, &k->ranges, &err) < 0) {
			pc->err = err != NULL ? err : "Invalid message set";
			return NULL;
		}
		return k;
	}

	static const struct {
		const char *name;
		unsigned flag;
		bool set;
	} flags[] = {
		{ "ANSWERED", FLAG_ANSWERED, true }, { "UNANSWERED", FLAG_ANSWERED, false },
		{ "DELETED", FLAG_DELETED, true },   { "UNDELETED", FLAG_DELETED, false },
		{ "DRAFT", FLAG_DRAFT, true },	     { "UNDRAFT", FLAG_DRAFT, false },
		{ "FLAGGED", FLAG_FLAGGED, true },   { "UNFLAGGED", FLAG_FLAGGED, false },
		{ "SEEN", FLAG_SEEN, true },	     { "UNSEEN", FLAG_SEEN, false },
	};
	for (size_t i = 0; i < ARRAY_SIZE(flags); i++)
		if (str_ieq(name, flags[i].name))
			return flag_key(pc, flags[i].flag, flags[i].set);

	if (str_ieq(name, "ALL"))
		return new_key(pc, SK_ALL);
	if (str_ieq(name, "RECENT"))
		return new_key(pc, SK_RECENT);
	if (str_ieq(name, "OLD"))
		return not_of(pc, new_key(pc, SK_RECENT));
	if (str_ieq(name, "NEW")) {
		/* RFC 3501 6.4.4: equivalent to (RECENT UNSEEN). */
		struct search_key *k = new_key(pc, SK_AND), *r, *u;
		if (k == NULL || (r = new_key(pc, SK_RECENT)) == NULL ||
		    (u = flag_key(pc, FLAG_SEEN, false)) == NULL)
			return NULL;
		push_kid(pc->a, k, r);
		push_kid(pc->a, k, u);
		return finish(pc, k);
	}
	if (str_ieq(name, "KEYWORD") || str_ieq(name, "UNKEYWORD")) {
		if (!astring_arg(l, &s)) {
			pc->err = "KEYWORD needs a keyword";
			return NULL;
		}
		struct search_key *k = keyword_key(pc, s);
		return name.len == 9 ? not_of(pc, k) : k;
	}

	static const struct {
		const char *name;
		enum search_op op;
	} dates[] = {
		{ "BEFORE", SK_BEFORE }, { "ON", SK_ON }, { "SINCE", SK_SINCE },
		{ "SENTBEFORE", SK_SENTBEFORE }, { "SENTON", SK_SENTON }, { "SENTSINCE", SK_SENTSINCE },
	};
	for (size_t i = 0; i < ARRAY_SIZE(dates); i++) {
		if (!str_ieq(name, dates[i].name))
			continue;
		int64_t day;
		if (!astring_arg(l, &s) || (day = search_date(s)) == INT64_MIN) {
			pc->err = "Invalid date, want e.g. 1-Feb-1994";
			return NULL;
		}
		struct search_key *k = new_key(pc, dates[i].op);
		if (k == NULL)
			return NULL;
		k->num = day;
		if (dates[i].op >= SK_SENTBEFORE)
			pc->q->need_sent = true;
		return k;
	}
	if (str_ieq(name, "LARGER") || str_ieq(name, "SMALLER")) {
		const struct imap_arg *na = next_arg(l);
		uint32_t v;
		if (na == NULL || !imap_arg_number(na, &v)) {
			pc->err = "LARGER and SMALLER need a number";
			return NULL;
		}
		struct search_key *k = new_key(pc, str_ieq(name, "LARGER") ? SK_LARGER : SK_SMALLER);
		if (k != NULL)
			k->num = v;
		return k;
	}

	static const char *const fields[] = { "FROM", "TO", "CC", "BCC", "SUBJECT" };
	for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
		if (!str_ieq(name, fields[i]))
			continue;
		if (!astring_arg(l, &s)) {
			pc->err = "Missing search string";
			return NULL;
		}
		return text_key(pc, SK_HEADER, fields[i], s);
	}
	if (str_ieq(name, "HEADER")) {
		struct str f;
		if (!astring_arg(l, &f) || !field_name_ok(f)) {
			pc->err = "HEADER needs a field name";
			return NULL;
		}
		if (!astring_arg(l, &s)) {
			pc->err = "Missing search string";
			return NULL;
		}
		return text_key(pc, SK_HEADER, arena_strndup(pc->a, f.p, f.len), s);
	}
	if (str_ieq(name, "MODSEQ")) {
		/* RFC 7162 3.1.5: MODSEQ [<entry-name> <entry-type-req>]
		 * <mod-sequence-valzer>; entry-type-req is priv, shared or all. */
		const struct imap_arg *na = next_arg(l);
		uint64_t v;
		if (na != NULL && na->type != IMAP_ARG_ATOM) {
			struct str entry, type;
			if (!imap_arg_astring(na, &entry) || (na = next_arg(l)) == NULL ||
			    !imap_arg_atom(na, &type) ||
			    !(str_ieq(type, "priv") || str_ieq(type, "shared") || str_ieq(type, "all"))) {
				pc->err = "Invalid MODSEQ entry name or type";
				return NULL;
			}
			na = next_arg(l);
		} else if (na != NULL && !imap_arg_number64(na, &v)) {
			/* An atom entry name ("/flags/$Junk" needs no quotes). */
			struct str type;
			if ((na = next_arg(l)) == NULL || !imap_arg_atom(na, &type) ||
			    !(str_ieq(type, "priv") || str_ieq(type, "shared") || str_ieq(type, "all"))) {
				pc->err = "Invalid MODSEQ entry name or type";
				return NULL;
			}
			na = next_arg(l);
		}
		if (na == NULL || !imap_arg_number64(na, &v)) {
			pc->err = "MODSEQ needs a mod-sequence value";
			return NULL;
		}
		struct search_key *k = new_key(pc, SK_MODSEQ);
		if (k != NULL)
			k->num = (int64_t)v;
		pc->q->has_modseq = true;
		return k;
	}
	if (str_ieq(name, "BODY") || str_ieq(name, "TEXT")) {
		if (!astring_arg(l, &s)) {
			pc->err = "Missing search string";
			return NULL;
		}
		return text_key(pc, str_ieq(name, "BODY") ? SK_BODY : SK_TEXT, NULL, s);
	}
	pc->err = "Unknown search key";
	return NULL;
}

static void push_frame(struct pctx *pc, struct frame f)
{
	if (pc->ns == pc->cap) {
		size_t ncap = pc->cap ? pc->cap * 2 : 16;
		struct frame *n = arena_alloc(pc->a, ncap * sizeof(*n));
		if (pc->ns)
			memcpy(n, pc->st, pc->ns * sizeof(*n));
		pc->st = n;
		pc->cap = ncap;
	}
	f.list_at = f.list ? pc->ns : pc->st[pc->ns - 1].list_at;
	pc->st[pc->ns++] = f;
}

/* Hand a finished key to the frame on top; operators that thereby got all
 * their operands finish in turn.  Returns 0, or -1 with pc->err set. */
static int attach(struct pctx *pc, struct search_key *k)
{
	while (k != NULL) {
		struct frame *top = &pc->st[pc->ns - 1];
		add_kid(pc->a, top->node, k);
		if (top->list || ++top->got < top->need)
			return 0;
		pc->ns--;
		k = finish(pc, top->node);
	}
	return -1;
}

/* The top-level bounds of every match, from the UID ranges that are ANDed
 * at the top, to narrow the database scan. */
static void uid_bounds(struct search_query *q)
{
	q->uid_lo = 1;
	q->uid_hi = UINT32_MAX;
	struct search_key *r = q->root;
	size_t n = r->op == SK_AND ? r->nkids : 1;
	for (size_t i = 0; i < n; i++) {
		struct search_key *k = r->op == SK_AND ? r->kids[i] : r;
		if (k->op != SK_UIDS)
			continue;
		if (k->ranges.n == 0) {
			q->uid_lo = 1;
			q->uid_hi = 0;
			return;
		}
		q->uid_lo = MAX(q->uid_lo, k->ranges.lo[0]);
		q->uid_hi = MIN(q->uid_hi, k->ranges.hi[k->ranges.n - 1]);
	}
}

int search_parse(const struct imap_arg *args, size_t n, const struct search_limits *lim,
		 search_resolve_fn resolve, void *ctx, struct arena *a, struct search_query *q,
		 const char **err)
{
	memset(q, 0, sizeof(*q));
	struct pctx pc = { .lim = lim, .resolve = resolve, .rctx = ctx, .a = a, .q = q };
	if (n >= 1 && imap_arg_is_atom(&args[0], "CHARSET")) {
		struct str cs;
		if (n < 2 || !imap_arg_astring(&args[1], &cs)) {
			*err = "CHARSET needs a charset name";
			return SEARCH_BAD;
		}
		/* RFC 3501 6.4.4: US-ASCII MUST be supported; UTF-8 is what
		 * the strings are taken as anyway. */
		if (!str_ieq(cs, "UTF-8") && !str_ieq(cs, "US-ASCII"))
			return SEARCH_BADCHARSET;
		args += 2;
		n -= 2;
	}
	if (n == 0) {
		*err = "Missing search keys";
		return SEARCH_BAD;
	}
	struct search_key *root = new_key(&pc, SK_AND);
	if (root == NULL) {
		*err = pc.err;
		return SEARCH_BAD;
	}
	push_frame(&pc, (struct frame){ .node = root, .list = true, .args = args, .n = n });
	for (;;) {
		struct frame *top = &pc.st[pc.ns - 1];
		if (top->list && top->pos == top->n) {
			if (top->node->nkids == 0) {
				pc.err = "Empty search key list";
				break;
			}
			pc.ns--;
			struct search_key *k = finish(&pc, top->node);
			if (k == NULL)
				break;
			if (pc.ns == 0) {
				order_kids(a, k);
				q->root = k;
				uid_bounds(q);
				return 0;
			}
			if (attach(&pc, k) < 0)
				break;
			continue;
		}
		struct frame *l = &pc.st[top->list_at];
		const struct imap_arg *arg = next_arg(l);
		if (arg == NULL) {
			pc.err = top->node->op == SK_OR ? "OR needs two search keys" : "NOT needs a search key";
			break;
		}
		if (arg->type == IMAP_ARG_LIST) {
			struct search_key *k = new_key(&pc, SK_AND);
			if (k == NULL)
				break;
			push_frame(&pc, (struct frame){ .node = k, .list = true, .args = arg->list, .n = arg->nlist });
			continue;
		}
		if (imap_arg_is_atom(arg, "OR") || imap_arg_is_atom(arg, "NOT")) {
			bool or = imap_arg_is_atom(arg, "OR");
			struct search_key *k = new_key(&pc, or ? SK_OR : SK_NOT);
			if (k == NULL)
				break;
			push_frame(&pc, (struct frame){ .node = k, .need = or ? 2 : 1 });
			continue;
		}
		struct search_key *k = parse_leaf(&pc, l, arg);
		if (k == NULL || attach(&pc, k) < 0)
			break;
	}
	*err = pc.err != NULL ? pc.err : "Invalid search keys";
	return SEARCH_BAD;
}

/* ---- evaluation ---- */

struct search_header_cache {
	const char *field;
	struct str folded;	/* decoded values, folded */
	bool present;
	struct search_header_cache *next;
};

void search_scratch_init(struct search_scratch *sc)
{
	memset(sc, 0, sizeof(*sc));
	arena_init(&sc->arena, 16384);
}

void search_scratch_free(struct search_scratch *sc)
{
	arena_free(&sc->arena);
	buf_free(&sc->tmp);
	buf_free(&sc->body);
	buf_free(&sc->block);
	sc->headers = NULL;
	sc->have_body = sc->have_block = false;
}

static bool contains(struct str hay, struct str needle)
{
	if (needle.len == 0)
		return true;
	return memmem(hay.p, hay.len, needle.p, needle.len) != NULL;
}

/* Whether the raw header block has a field named field (RFC 5322 2.2; the
 * obsolete syntax allows white space before the colon). */
static bool has_field(struct str block, const char *field)
{
	size_t flen = strlen(field);
	const char *p = block.p, *end = block.p + block.len;
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *le = eol ? eol : end;
		if ((size_t)(le - p) > flen && strncasecmp(p, field, flen) == 0) {
			const char *c = p + flen;
			while (c < le && (*c == ' ' || *c == '\t'))
				c++;
			if (c < le && *c == ':')
				return true;
		}
		p = le + 1;
	}
	return false;
}

static struct str header_block(const struct search_msg *m, struct search_scratch *sc)
{
	if (!sc->have_block) {
		struct str b = mime_header_block(m->data, m->len);
		buf_clear(&sc->block);
		search_fold(b.p, b.len, &sc->block);
		sc->have_block = true;
	}
	return buf_str(&sc->block);
}

static const struct search_header_cache *header(const struct search_msg *m, struct search_scratch *sc,
						const char *field)
{
	for (struct search_header_cache *h = sc->headers; h != NULL; h = h->next)
		if (strcasecmp(h->field, field) == 0)
			return h;
	struct search_header_cache *h = arena_zalloc(&sc->arena, sizeof(*h));
	h->field = field;
	h->present = has_field(mime_header_block(m->data, m->len), field);
	if (h->present) {
		buf_clear(&sc->tmp);
		mime_header_decoded(m->data, m->len, field, &sc->arena, &sc->tmp);
		h->folded = fold_dup(&sc->arena, buf_str(&sc->tmp));
	}
	h->next = sc->headers;
	sc->headers = h;
	return h;
}

static struct str body_text(const struct search_msg *m, struct search_scratch *sc)
{
	if (!sc->have_body) {
		buf_clear(&sc->tmp);
		mime_body_text(m->data, m->len, m->parts, m->parts_len, &sc->tmp);
		buf_clear(&sc->body);
		search_fold(buf_ptr(&sc->tmp), sc->tmp.len, &sc->body);
		sc->have_body = true;
		if (sc->tmp.cap > (1u << 20))
			buf_free(&sc->tmp);
	}
	return buf_str(&sc->body);
}

static bool keyword_has(struct str list, struct str kw)
{
	const char *p = list.p, *end = list.p + list.len;
	while (p < end) {
		const char *sp = memchr(p, ' ', (size_t)(end - p));
		size_t n = sp ? (size_t)(sp - p) : (size_t)(end - p);
		if (n == kw.len && strncasecmp(p, kw.p, n) == 0)
			return true;
		p += n + 1;
	}
	return false;
}

static bool in_ranges(const struct uid_ranges *r, uint32_t uid)
{
	size_t lo = 0, hi = r->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (r->hi[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < r->n && r->lo[lo] <= uid;
}

/* Day comparisons on an instant: d is a day number, t seconds. */
static bool before_day(int64_t t, int64_t d) { return t < d * 86400; }
static bool on_day(int64_t t, int64_t d) { return t >= d * 86400 && t < (d + 1) * 86400; }
static bool since_day(int64_t t, int64_t d) { return t >= d * 86400; }

static bool eval(const struct search_key *k, const struct search_msg *m, struct search_scratch *sc)
{
	switch (k->op) {
	case SK_AND:
		for (size_t i = 0; i < k->nkids; i++)
			if (!eval(k->kids[i], m, sc))
				return false;
		return true;
	case SK_OR:
		for (size_t i = 0; i < k->nkids; i++)
			if (eval(k->kids[i], m, sc))
				return true;
		return false;
	case SK_NOT:
		return !eval(k->kids[0], m, sc);
	case SK_ALL:
		return true;
	case SK_FLAG:
		return ((m->flags & k->flag) != 0) == k->set;
	case SK_KEYWORD:
		return !k->never && keyword_has(m->keywords, k->str);
	case SK_RECENT:
		return m->recent;
	case SK_UIDS:
		return in_ranges(&k->ranges, m->uid);
	case SK_MODSEQ:
		return m->modseq >= (uint64_t)k->num;
	case SK_BEFORE:
		return before_day(m->internaldate, k->num);
	case SK_ON:
		return on_day(m->internaldate, k->num);
	case SK_SINCE:
		return since_day(m->internaldate, k->num);
	case SK_SENTBEFORE:
		return m->sent_date != INT64_MIN && before_day(m->sent_date, k->num);
	case SK_SENTON:
		return m->sent_date != INT64_MIN && on_day(m->sent_date, k->num);
	case SK_SENTSINCE:
		return m->sent_date != INT64_MIN && since_day(m->sent_date, k->num);
	case SK_LARGER:
		return m->size > (uint64_t)k->num;
	case SK_SMALLER:
		return m->size < (uint64_t)k->num;
	case SK_HEADER: {
		if (m->data == NULL)
			return false;
		const struct search_header_cache *h = header(m, sc, k->field);
		return h->present && contains(h->folded, k->str);
	}
	case SK_BODY:
		return m->data != NULL && contains(body_text(m, sc), k->str);
	case SK_TEXT: {
		if (m->data == NULL)
			return false;
		if (contains(header_block(m, sc), k->str))
			return true;
		/* The raw block holds encoded-words; look at the decoded
		 * fields a user would search for too. */
		static const char *const decoded[] = { "Subject", "From", "To", "Cc", "Bcc" };
		for (size_t i = 0; i < ARRAY_SIZE(decoded); i++) {
			const struct search_header_cache *h = header(m, sc, decoded[i]);
			if (h->present && contains(h->folded, k->str))
				return true;
		}
		return contains(body_text(m, sc), k->str);
	}
	}
	return false;
}

bool search_match(const struct search_query *q, const struct search_msg *m, struct search_scratch *sc)
{
	arena_reset(&sc->arena);
	sc->headers = NULL;
	sc->have_body = sc->have_block = false;
	bool r = eval(q->root, m, sc);
	if (sc->body.cap > (4u << 20))
		buf_free(&sc->body);	/* do not keep one huge message's text around */
	return r;
}

/* ---- SQL ---- */

struct sqlctx {
	struct arena *a;
	struct search_params *p;
	const struct uid_ranges *recent;
	const char *recent_sql;	/* built once */
	bool recent_exact;
};

static const char *add_param(struct sqlctx *x, const char *v)
{
	struct search_params *p = x->p;
	if (p->n == p->cap) {
		size_t ncap = p->cap ? p->cap * 2 : 8;
		const char **nv = arena_alloc(x->a, ncap * sizeof(*nv));
		if (p->n)
			memcpy(nv, p->v, p->n * sizeof(*nv));
		p->v = nv;
		p->cap = ncap;
	}
	p->v[p->n++] = v;
	return arena_printf(x->a, "$%d", p->first + (int)p->n - 1);
}

/* A UID set.  Few ranges are inlined, so the planner sees plain index
 * bounds; up to RANGES_PARAM_MAX go as arrays (a per-row test of that many
 * ranges); beyond that only the outer bounds are given (inexact), as a
 * per-row test of thousands of ranges would cost more than reading the
 * rows and testing them in C. */
#define RANGES_INLINE_MAX 8
#define RANGES_PARAM_MAX 64

static const char *ranges_sql(struct sqlctx *x, const struct uid_ranges *r, bool *exact)
{
	*exact = true;
	if (r->n == 0)
		return "FALSE";
	if (r->n > RANGES_PARAM_MAX) {
		*exact = false;
		return arena_printf(x->a, "m.uid BETWEEN %u AND %u", r->lo[0], r->hi[r->n - 1]);
	}
	if (r->n <= RANGES_INLINE_MAX) {
		struct buf b = BUF_INIT;
		buf_putc(&b, '(');
		for (size_t i = 0; i < r->n; i++)
			buf_printf(&b, "%sm.uid BETWEEN %u AND %u", i ? " OR " : "", r->lo[i], r->hi[i]);
		buf_putc(&b, ')');
		char *s = arena_strndup(x->a, buf_ptr(&b), b.len);
		buf_free(&b);
		return s;
	}
	char *lo, *hi;
	uid_ranges_sql(r, x->a, &lo, &hi);
	const char *plo = add_param(x, lo);
	const char *phi = add_param(x, hi);
	return arena_printf(x->a,
		"EXISTS (SELECT 1 FROM unnest(%s::bigint[], %s::bigint[]) r(lo, hi)"
		" WHERE m.uid BETWEEN r.lo AND r.hi)", plo, phi);
}

static const char *day_sql(struct sqlctx *x, const char *col, enum search_op op, int64_t d, bool nullable)
{
	const char *e;
	long long t0 = (long long)(d * 86400), t1 = (long long)((d + 1) * 86400);
	if (op == SK_BEFORE)
		e = arena_printf(x->a, "%s < to_timestamp(%lld)", col, t0);
	else if (op == SK_SINCE)
		e = arena_printf(x->a, "%s >= to_timestamp(%lld)", col, t0);
	else
		e = arena_printf(x->a, "(%s >= to_timestamp(%lld) AND %s < to_timestamp(%lld))", col, t0, col, t1);
	/* NULL (no Date:) must be false, not unknown, or NOT would drop it. */
	return nullable ? arena_printf(x->a, "coalesce(%s, FALSE)", e) : e;
}

/* The condition for k, or NULL for TRUE; *exact says whether it is k
 * itself rather than a superset. */
static const char *key_sql(struct sqlctx *x, const struct search_key *k, bool *exact)
{
	*exact = true;
	switch (k->op) {
	case SK_AND:
	case SK_OR: {
		struct buf b = BUF_INIT;
		bool any_true = false;
		size_t terms = 0;
		for (size_t i = 0; i < k->nkids; i++) {
			bool ex;
			const char *s = key_sql(x, k->kids[i], &ex);
			*exact = *exact && ex;
			if (s == NULL) {
				any_true = true;
				continue;
			}
			buf_printf(&b, "%s%s", terms++ ? (k->op == SK_AND ? " AND " : " OR ") : "", s);
		}
		const char *r = NULL;
		if (terms > 0 && !(k->op == SK_OR && any_true))
			r = arena_printf(x->a, "(%s)", buf_ptr(&b));
		buf_free(&b);
		return r;
	}
	case SK_NOT: {
		bool ex;
		const char *s = key_sql(x, k->kids[0], &ex);
		if (!ex) {
			/* NOT of a superset is no superset: leave it to C. */
			*exact = false;
			return NULL;
		}
		return s == NULL ? "FALSE" : arena_printf(x->a, "NOT %s", s);
	}
	case SK_ALL:
		return NULL;
	case SK_FLAG:
		/* Spelt like the partial indexes of sql/0001_init.sql. */
		return arena_printf(x->a, "m.flags & %u %s 0", k->flag, k->set ? "<>" : "=");
	case SK_KEYWORD:
		if (k->never)
			return "FALSE";
		return arena_printf(x->a, "EXISTS (SELECT 1 FROM unnest(m.keywords) kw WHERE lower(kw) = %s)",
				    add_param(x, arena_strndup(x->a, k->str.p, k->str.len)));
	case SK_RECENT:
		if (x->recent_sql == NULL)
			x->recent_sql = ranges_sql(x, x->recent, &x->recent_exact);
		*exact = x->recent_exact;
		return x->recent_sql;
	case SK_UIDS:
		return ranges_sql(x, &k->ranges, exact);
	case SK_BEFORE:
	case SK_ON:
	case SK_SINCE:
		return day_sql(x, "m.internaldate", k->op, k->num, false);
	case SK_SENTBEFORE:
		return day_sql(x, "b.sent_date", SK_BEFORE, k->num, true);
	case SK_SENTON:
		return day_sql(x, "b.sent_date", SK_ON, k->num, true);
	case SK_SENTSINCE:
		return day_sql(x, "b.sent_date", SK_SINCE, k->num, true);
	case SK_MODSEQ:
		return arena_printf(x->a, "m.modseq >= %lld", (long long)k->num);
	case SK_LARGER:
		return arena_printf(x->a, "m.size > %lld", (long long)k->num);
	case SK_SMALLER:
		return arena_printf(x->a, "m.size < %lld", (long long)k->num);
	case SK_HEADER:
	case SK_BODY:
	case SK_TEXT:
		*exact = false;
		return NULL;
	}
	*exact = false;
	return NULL;
}

bool search_sql(const struct search_query *q, const struct uid_ranges *recent, struct arena *a,
		struct buf *sql, struct search_params *params)
{
	static const struct uid_ranges none = { 0 };
	struct sqlctx x = { .a = a, .p = params, .recent = recent ? recent : &none };
	bool exact;
	const char *s = key_sql(&x, q->root, &exact);
	buf_puts(sql, s != NULL ? s : "TRUE");
	return exact;
}
