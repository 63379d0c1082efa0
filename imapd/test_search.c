/* Unit tests for SEARCH keys (imapd/search.c): parsing, the C evaluator on
 * in-memory messages (parsed with lib/mime.c as a store would), the SQL
 * prefilter, case folding and dates.
 *
 * Sequence sets are resolved by a small resolver over a fixed view with
 * the rules of sel_resolve(): sequence numbers past the view are an
 * error, UIDs not in the view are ignored. */
#include <stdlib.h>

#include "imapd/search.h"
#include "lib/arena.h"
#include "lib/buf.h"
#include "lib/mime.h"
#include "tests/unit/unit.h"

/* ---- the mailbox: UIDs 1 2 5 7 (sequence numbers 1..4) ---- */

static const char msg1[] =
	"From: Alice Example <alice@example.com>\r\n"
	"To: bob@example.org\r\n"
	"Subject: hello world\r\n"
	"Date: Mon, 7 Feb 1994 21:52:25 +0000\r\n"
	"\r\n"
	"Hello Bob,\r\nthis is the body.\r\n";

static const char msg2[] =
	"From: =?ISO-8859-1?Q?J=F6rg?= <joerg@example.de>\r\n"
	"To: Alice <alice@example.com>\r\n"
	"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= aus =?UTF-8?B?TcO8bmNoZW4=?=\r\n"
	"Date: Tue, 1 Mar 2022 10:00:00 +0000\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: text/plain; charset=utf-8\r\n"
	"Content-Transfer-Encoding: quoted-printable\r\n"
	"\r\n"
	"Sch=C3=B6ne Gr=C3=BC=C3=9Fe, =C5=81ukasz!\r\n";

static const char msg5[] =
	"From: carol@example.net\r\n"
	"To: dave@example.net\r\n"
	"Cc: Erin <erin@example.net>\r\n"
	"Subject: fox report\r\n"
	"X-Priority: 1\r\n"
	"X-Empty:\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: text/plain; charset=us-ascii\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"VGhlIHF1aWNrIGJyb3duIGZveA==\r\n";

static const char msg7[] =
	"From: Zoe <zoe@example.org>\r\n"
	"To: alice@example.com\r\n"
	"Bcc: secret@example.org\r\n"
	"Subject: \xce\x91\xce\x92\xce\x93 news\r\n"
	"Date: Sat, 31 Dec 2022 23:30:00 -0100\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
	"\r\n"
	"--b1\r\n"
	"Content-Type: text/plain; charset=utf-8\r\n"
	"\r\n"
	"\xd0\x94\xd0\x9e\xd0\x9c plain part\r\n"
	"--b1\r\n"
	"Content-Type: application/octet-stream\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"bmVlZGxlIGluIGF0dGFjaG1lbnQ=\r\n"
	"--b1--\r\n";

struct tmsg {
	uint32_t uid;
	unsigned flags;
	const char *keywords;
	const char *idate;	/* "d-Mon-yyyy" */
	int64_t secs;		/* time of day */
	bool recent;
	const char *data;
	size_t len;
};

static const struct tmsg box[] = {
	{ 1, FLAG_SEEN, "$Work", "7-Feb-1994", 21 * 3600, false, msg1, sizeof(msg1) - 1 },
	{ 2, FLAG_FLAGGED | FLAG_ANSWERED, "", "1-Mar-2022", 0, true, msg2, sizeof(msg2) - 1 },
	{ 5, FLAG_DELETED | FLAG_DRAFT | FLAG_SEEN, "later $work", "2-Mar-2022", 86399, true, msg5, sizeof(msg5) - 1 },
	{ 7, 0, "Later", "1-Jan-2023", 3600, false, msg7, sizeof(msg7) - 1 },
};

static struct uidset view;

static void view_init(void)
{
	uidset_init(&view);
	for (size_t i = 0; i < ARRAY_SIZE(box); i++)
		uidset_add(&view, box[i].uid);
}

static void push_range(struct uid_ranges *r, struct arena *a, uint32_t lo, uint32_t hi)
{
	if (r->n > 0 && r->hi[r->n - 1] + 1 >= lo) {
		if (hi > r->hi[r->n - 1])
			r->hi[r->n - 1] = hi;
		return;
	}
	uint32_t *nlo = arena_alloc(a, (r->n + 1) * sizeof(uint32_t));
	uint32_t *nhi = arena_alloc(a, (r->n + 1) * sizeof(uint32_t));
	if (r->n) {
		memcpy(nlo, r->lo, r->n * sizeof(uint32_t));
		memcpy(nhi, r->hi, r->n * sizeof(uint32_t));
	}
	nlo[r->n] = lo;
	nhi[r->n] = hi;
	r->lo = nlo;
	r->hi = nhi;
	r->n++;
}

static int test_resolve(void *ctx, const struct imap_arg *arg, bool uid, struct arena *a,
			struct uid_ranges *out, const char **err)
{
	const struct uidset *v = ctx;
	struct str t;
	struct seqset set;
	memset(out, 0, sizeof(*out));
	if (!imap_arg_atom(arg, &t) || seqset_parse(t, 100, a, &set, err) < 0)
		return -1;
	uint32_t count = uidset_count(v), max = uidset_max(v);
	seqset_resolve(&set, uid ? max : count);
	if (!uid && set.n > 0 && (count == 0 || seqset_max(&set) > count)) {
		*err = "Invalid message sequence number";
		return -1;
	}
	for (size_t i = 0; i < set.n; i++) {
		for (uint64_t n = set.r[i].lo; n <= set.r[i].hi && n <= (uid ? max : count); n++) {
			uint32_t u = uid ? (uidset_contains(v, (uint32_t)n) ? (uint32_t)n : 0)
					 : uidset_uid(v, (uint32_t)n);
			if (u != 0)
				push_range(out, a, u, u);
		}
	}
	return 0;
}

/* ---- helpers ---- */

struct fx {
	struct arena a;
	struct imap_parser p;
	struct search_query q;
	struct search_limits lim;
	const char *err;
	int rc;
};

/* Parse "SEARCH <keys>" as the command parser would hand it over. */
static void fx_parse(struct fx *f, const char *keys, size_t max_depth, size_t max_keys)
{
	static const struct imap_parser_limits plim = {
		.max_line = 1 << 20, .max_literal = 65536, .max_nesting = 200, .max_args = 100000,
	};
	arena_init(&f->a, 4096);
	imap_parser_init(&f->p, &plim, &f->a);
	struct buf line = BUF_INIT;
	buf_printf(&line, "t SEARCH %s\r\n", keys);
	size_t used = 0;
	enum imap_parse_result r = imap_parser_feed(&f->p, buf_ptr(&line), line.len, &used);
	buf_free(&line);
	f->lim.max_depth = max_depth;
	f->lim.max_keys = max_keys;
	f->err = NULL;
	if (r != IMAP_PARSE_DONE) {
		f->rc = 99;
		f->err = f->p.error;
		return;
	}
	f->rc = search_parse(f->p.cmd.args + 1, f->p.cmd.nargs - 1, &f->lim, test_resolve, &view, &f->a,
			     &f->q, &f->err);
}

static void fx_free(struct fx *f)
{
	imap_parser_free(&f->p);
	arena_free(&f->a);
}

/* The matching UIDs of box, space-separated, or "BAD: reason" /
 * "BADCHARSET". */
static void run(const char *keys, char *out, size_t outlen)
{
	struct fx f;
	fx_parse(&f, keys, 32, 1000);
	if (f.rc == SEARCH_BADCHARSET) {
		snprintf(out, outlen, "BADCHARSET");
		fx_free(&f);
		return;
	}
	if (f.rc != 0) {
		snprintf(out, outlen, "BAD: %s", f.err ? f.err : "?");
		fx_free(&f);
		return;
	}
	struct search_scratch sc;
	search_scratch_init(&sc);
	struct buf res = BUF_INIT;
	for (size_t i = 0; i < ARRAY_SIZE(box); i++) {
		const struct tmsg *t = &box[i];
		struct arena ma;
		arena_init(&ma, 4096);
		struct mime_result mr;
		mime_parse(t->data, t->len, NULL, &ma, &mr);
		struct search_msg m = {
			.uid = t->uid,
			.flags = t->flags,
			.keywords = str_cstr(t->keywords),
			.internaldate = search_date(str_cstr(t->idate)) * 86400 + t->secs,
			.sent_date = mr.sent_date,
			.size = t->len,
			.recent = t->recent,
		};
		if (f.q.need_data) {
			m.data = t->data;
			m.len = t->len;
			m.parts = buf_ptr(&mr.parts);
			m.parts_len = mr.parts.len;
		}
		if (search_match(&f.q, &m, &sc))
			buf_printf(&res, "%s%u", res.len ? " " : "", t->uid);
		buf_free(&mr.parts);
		arena_free(&ma);
	}
	snprintf(out, outlen, "%s", buf_ptr(&res));
	buf_free(&res);
	search_scratch_free(&sc);
	fx_free(&f);
}

#define CHECK_SEARCH(keys, expect) do { char o_[512]; run((keys), o_, sizeof(o_)); \
	CHECK_EQ_MEM(o_, strlen(o_), (expect)); } while (0)
#define CHECK_SEARCH_BAD(keys) do { char o_[512]; run((keys), o_, sizeof(o_)); \
	unit_checks++; if (strncmp(o_, "BAD: ", 5) != 0) { char m_[600]; \
	snprintf(m_, sizeof(m_), "%s should be BAD, got \"%s\"", (keys), o_); \
	unit_fail(__FILE__, __LINE__, m_); } } while (0)

/* ---- tests ---- */

TEST(search_flags_and_keywords)
{
	view_init();
	CHECK_SEARCH("ALL", "1 2 5 7");
	CHECK_SEARCH("SEEN", "1 5");
	CHECK_SEARCH("unseen", "2 7");
	CHECK_SEARCH("ANSWERED", "2");
	CHECK_SEARCH("UNANSWERED", "1 5 7");
	CHECK_SEARCH("DELETED", "5");
	CHECK_SEARCH("UNDELETED", "1 2 7");
	CHECK_SEARCH("DRAFT", "5");
	CHECK_SEARCH("UNDRAFT", "1 2 7");
	CHECK_SEARCH("FLAGGED", "2");
	CHECK_SEARCH("UNFLAGGED", "1 5 7");
	CHECK_SEARCH("KEYWORD $work", "1 5");
	CHECK_SEARCH("KEYWORD $WORK", "1 5");
	CHECK_SEARCH("KEYWORD later", "5 7");
	CHECK_SEARCH("UNKEYWORD later", "1 2");
	CHECK_SEARCH("KEYWORD nosuch", "");
	CHECK_SEARCH("KEYWORD \\Seen", "");
	CHECK_SEARCH("UNKEYWORD \\Seen", "1 2 5 7");
	CHECK_SEARCH("RECENT", "2 5");
	CHECK_SEARCH("OLD", "1 7");
	CHECK_SEARCH("NEW", "2");
	CHECK_SEARCH("NOT NEW", "1 5 7");
	uidset_free(&view);
}

TEST(search_dates_and_sizes)
{
	view_init();
	CHECK_SEARCH("BEFORE 1-Mar-2022", "1");
	CHECK_SEARCH("BEFORE \"2-Mar-2022\"", "1 2");
	CHECK_SEARCH("ON 2-Mar-2022", "5");	/* 23:59:59 UTC is still that day */
	CHECK_SEARCH("ON 02-mar-2022", "5");
	CHECK_SEARCH("SINCE 2-Mar-2022", "5 7");
	CHECK_SEARCH("SINCE 1-Jan-2023", "7");
	CHECK_SEARCH("ON 7-Feb-1994", "1");
	/* Date: of 5 is missing: no SENT* key matches it, NOT does */
	CHECK_SEARCH("SENTBEFORE 1-Jan-2000", "1");
	CHECK_SEARCH("SENTSINCE 1-Jan-2000", "2 7");
	CHECK_SEARCH("SENTON 1-Mar-2022", "2");
	CHECK_SEARCH("NOT SENTON 1-Mar-2022", "1 5 7");
	/* 31 Dec 2022 23:30 -0100 is 1 Jan 2023 00:30 UTC */
	CHECK_SEARCH("SENTON 1-Jan-2023", "7");
	CHECK_SEARCH("SENTON 31-Dec-2022", "");
	char k[64];
	snprintf(k, sizeof(k), "LARGER %zu", sizeof(msg1) - 1);	/* msg1 is the smallest */
	CHECK_SEARCH(k, "2 5 7");
	snprintf(k, sizeof(k), "SMALLER %zu", sizeof(msg1) - 1);
	CHECK_SEARCH(k, "");
	snprintf(k, sizeof(k), "LARGER %zu", sizeof(msg1) - 2);
	CHECK_SEARCH(k, "1 2 5 7");
	snprintf(k, sizeof(k), "SMALLER %zu", sizeof(msg5));		/* msg5 is the next */
	CHECK_SEARCH(k, "1 5");
	snprintf(k, sizeof(k), "SMALLER %zu", sizeof(msg5) - 1);
	CHECK_SEARCH(k, "1");
	CHECK_SEARCH("SMALLER 1", "");
	CHECK_SEARCH("LARGER 0", "1 2 5 7");
	uidset_free(&view);
}

TEST(search_headers)
{
	view_init();
	CHECK_SEARCH("FROM alice", "1");
	CHECK_SEARCH("FROM ALICE", "1");
	CHECK_SEARCH("FROM \"Alice Example\"", "1");
	CHECK_SEARCH("TO alice", "2 7");
	CHECK_SEARCH("FROM j\xc3\xb6rg", "2");		/* ISO-8859-1 encoded-word */
	CHECK_SEARCH("FROM J\xc3\x96RG", "2");		/* Ö folds to ö */
	CHECK_SEARCH("SUBJECT gr\xc3\xbc\xc3\x9f" "e", "2");
	CHECK_SEARCH("SUBJECT \"GR\xc3\x9c\xc3\x9f" "E AUS M\xc3\x9cNCHEN\"", "2");
	CHECK_SEARCH("SUBJECT =?UTF-8?Q?", "");	/* decoded, not raw */
	CHECK_SEARCH("SUBJECT \xce\xb1\xce\xb2\xce\xb3", "7");	/* Greek folding */
	CHECK_SEARCH("CC erin", "5");
	CHECK_SEARCH("BCC secret", "7");
	CHECK_SEARCH("CC \"\"", "5");
	CHECK_SEARCH("HEADER X-Priority 1", "5");
	CHECK_SEARCH("HEADER x-priority \"\"", "5");
	CHECK_SEARCH("HEADER X-Empty \"\"", "5");
	CHECK_SEARCH("HEADER X-Missing \"\"", "");
	CHECK_SEARCH("HEADER Date \"\"", "1 2 7");
	CHECK_SEARCH("HEADER Subject {5+}\r\nhello", "1");
	CHECK_SEARCH("SUBJECT \"\"", "1 2 5 7");
	uidset_free(&view);
}

TEST(search_body_and_text)
{
	view_init();
	CHECK_SEARCH("BODY bob", "1");
	CHECK_SEARCH("BODY \"sch\xc3\xb6ne\"", "2");		/* quoted-printable decoded */
	CHECK_SEARCH("BODY \"\xc5\x82ukasz\"", "2");		/* Ł folds to ł */
	CHECK_SEARCH("BODY \"=C3\"", "");
	CHECK_SEARCH("BODY QUICK", "5");				/* base64 decoded */
	CHECK_SEARCH("BODY VGhl", "");
	CHECK_SEARCH("BODY \xd0\xb4\xd0\xbe\xd0\xbc", "7");	/* Cyrillic folding */
	CHECK_SEARCH("BODY needle", "");			/* not a text part */
	CHECK_SEARCH("BODY world", "");				/* only in the header */
	CHECK_SEARCH("BODY \"\"", "1 2 5 7");
	CHECK_SEARCH("TEXT hello", "1");
	CHECK_SEARCH("TEXT bob@example.org", "1");
	CHECK_SEARCH("TEXT x-priority", "5");
	CHECK_SEARCH("TEXT gr\xc3\xbc\xc3\x9f" "e", "2");	/* decoded subject and body */
	CHECK_SEARCH("TEXT m\xc3\xbcnchen", "2");		/* only in the decoded subject */
	CHECK_SEARCH("TEXT fox", "5");
	CHECK_SEARCH("TEXT plain", "2 5 7");
	uidset_free(&view);
}

TEST(search_sets_and_logic)
{
	view_init();
	CHECK_SEARCH("1", "1");
	CHECK_SEARCH("2:3", "2 5");
	CHECK_SEARCH("*", "7");
	CHECK_SEARCH("3:*", "5 7");
	CHECK_SEARCH("1,4", "1 7");
	CHECK_SEARCH("UID 2:5", "2 5");
	CHECK_SEARCH("UID 3:4", "");
	CHECK_SEARCH("UID *", "7");
	CHECK_SEARCH("UID 6:100", "7");
	CHECK_SEARCH("UID 1:* 2:4", "2 5 7");
	CHECK_SEARCH("NOT 1:2", "5 7");
	CHECK_SEARCH("OR 1 *", "1 7");
	CHECK_SEARCH("OR SEEN FLAGGED", "1 2 5");
	CHECK_SEARCH("OR OR OR 1 2 3 UID 7", "1 2 5 7");
	CHECK_SEARCH("SEEN UNDELETED", "1");
	CHECK_SEARCH("(SEEN UNDELETED)", "1");
	CHECK_SEARCH("NOT (SEEN UNDELETED)", "2 5 7");
	CHECK_SEARCH("OR (SEEN DELETED) (FLAGGED ANSWERED)", "2 5");
	CHECK_SEARCH("OR BODY fox FLAGGED", "2 5");
	CHECK_SEARCH("NOT OR BODY fox FLAGGED", "1 7");
	CHECK_SEARCH("((((NOT NOT SEEN))))", "1 5");
	CHECK_SEARCH("NOT NOT NOT SEEN", "2 7");
	CHECK_SEARCH("CHARSET UTF-8 FROM alice", "1");
	CHECK_SEARCH("charset us-ascii SEEN", "1 5");
	CHECK_SEARCH("CHARSET \"UTF-8\" SEEN", "1 5");
	CHECK_SEARCH("CHARSET KOI8-R SEEN", "BADCHARSET");
	CHECK_SEARCH("CHARSET ISO-8859-1 FROM x", "BADCHARSET");
	uidset_free(&view);
}

TEST(search_errors)
{
	view_init();
	const char *bad[] = {
		"BOGUS", "FROM", "HEADER X-Priority", "HEADER \"bad:name\" x", "HEADER \"\" x",
		"BEFORE", "BEFORE 1-Foo-2020", "BEFORE 31-Feb-2020", "BEFORE 29-Feb-2023",
		"BEFORE 1-Feb-94", "BEFORE 123-Feb-1994", "BEFORE 1-Feb-1994x", "SINCE \"\"",
		"LARGER", "LARGER x", "LARGER -1", "SMALLER 99999999999", "OR SEEN", "OR", "NOT",
		"()", "(SEEN ())", "5", "0", "1:5", "UID", "UID x", "UID 0", "$", "\"SEEN\"",
		"KEYWORD", "CHARSET", "CHARSET UTF-8", "SEEN (", "SEEN CHARSET UTF-8 SEEN",
		"(OR SEEN) FLAGGED",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		CHECK_SEARCH_BAD(bad[i]);
	CHECK_SEARCH("BEFORE 29-Feb-2024", "1 2 5 7");
	uidset_free(&view);
}

TEST(search_limits_and_flattening)
{
	view_init();
	/* 5000 ORs: one flat OR node, and no recursion while parsing. */
	struct buf k = BUF_INIT;
	for (int i = 0; i < 5000; i++)
		buf_puts(&k, "OR ");
	buf_puts(&k, "UID 5");
	for (int i = 0; i < 5000; i++)
		buf_puts(&k, " UID 99");
	struct fx f;
	fx_parse(&f, buf_ptr(&k), 32, 100000);
	CHECK_EQ_INT(f.rc, 0);
	if (f.rc == 0) {
		CHECK_EQ_INT(f.q.root->op, SK_OR);
		CHECK_EQ_INT(f.q.root->nkids, 5001);
		CHECK_EQ_INT(f.q.root->depth, 2);
	}
	/* merging moves the smaller list: no quadratic memory */
	CHECK(f.a.used < (8u << 20));
	fx_free(&f);
	/* the same nested to the right: "OR a OR b OR c ..." */
	buf_clear(&k);
	for (int i = 0; i < 5000; i++)
		buf_puts(&k, "OR UID 99 ");
	buf_puts(&k, "UID 5");
	fx_parse(&f, buf_ptr(&k), 32, 100000);
	CHECK_EQ_INT(f.rc, 0);
	if (f.rc == 0) {
		CHECK_EQ_INT(f.q.root->op, SK_OR);
		CHECK_EQ_INT(f.q.root->nkids, 5001);
		CHECK_EQ_INT(f.q.root->depth, 2);
	}
	CHECK(f.a.used < (8u << 20));
	fx_free(&f);
	/* and balanced: (OR (OR a b) (OR c d)) ... */
	CHECK_SEARCH("OR OR 1 2 OR 3 UID 99", "1 2 5");
	CHECK_SEARCH("OR (OR 1 2) (OR 3 UID 99)", "1 2 5");
	/* the same is too many keys for a lower bound */
	fx_parse(&f, buf_ptr(&k), 32, 1000);
	CHECK_EQ_INT(f.rc, SEARCH_BAD);
	CHECK(f.err != NULL && strstr(f.err, "Too many") != NULL);
	fx_free(&f);

	/* NOT NOT collapses */
	buf_clear(&k);
	for (int i = 0; i < 4000; i++)
		buf_puts(&k, "NOT ");
	buf_puts(&k, "SEEN");
	fx_parse(&f, buf_ptr(&k), 8, 100000);
	CHECK_EQ_INT(f.rc, 0);
	if (f.rc == 0)
		CHECK_EQ_INT(f.q.root->op, SK_FLAG);
	fx_free(&f);

	/* alternation nests: NOT OR SEEN NOT OR SEEN ... */
	for (int depth = 10; depth <= 40; depth += 30) {
		buf_clear(&k);
		for (int i = 0; i < depth; i++)
			buf_puts(&k, "NOT OR SEEN ");
		buf_puts(&k, "DRAFT");
		for (int i = 0; i < depth; i++)
			buf_puts(&k, " FLAGGED");
		fx_parse(&f, buf_ptr(&k), 32, 100000);
		if (depth == 10) {
			CHECK_EQ_INT(f.rc, 0);
		} else {
			CHECK_EQ_INT(f.rc, SEARCH_BAD);
			CHECK(f.err != NULL && strstr(f.err, "deeply") != NULL);
		}
		fx_free(&f);
	}
	/* deep parentheses flatten too */
	buf_clear(&k);
	for (int i = 0; i < 100; i++)
		buf_puts(&k, "(");
	buf_puts(&k, "SEEN");
	for (int i = 0; i < 100; i++)
		buf_puts(&k, ")");
	fx_parse(&f, buf_ptr(&k), 4, 1000);
	CHECK_EQ_INT(f.rc, 0);
	fx_free(&f);
	buf_free(&k);
	uidset_free(&view);
}

TEST(search_uid_bounds_and_needs)
{
	view_init();
	struct fx f;
	fx_parse(&f, "UID 2:5 FLAGGED 1:3", 32, 100);
	CHECK_EQ_INT(f.rc, 0);
	CHECK_EQ_INT(f.q.uid_lo, 2);
	CHECK_EQ_INT(f.q.uid_hi, 5);
	CHECK(!f.q.need_data && !f.q.need_sent);
	fx_free(&f);
	fx_parse(&f, "OR 1 2 SENTON 1-Jan-2000", 32, 100);
	CHECK_EQ_INT(f.q.uid_lo, 1);
	CHECK_EQ_INT(f.q.uid_hi, UINT32_MAX);
	CHECK(!f.q.need_data && f.q.need_sent);
	fx_free(&f);
	fx_parse(&f, "UID 3:4 BODY x", 32, 100);
	CHECK(f.q.uid_lo > f.q.uid_hi);
	CHECK(f.q.need_data);
	fx_free(&f);
	uidset_free(&view);
}

static void sql_of(const char *keys, bool *exact, char *out, size_t outlen, const char **p0)
{
	struct fx f;
	fx_parse(&f, keys, 32, 100);
	CHECK_EQ_INT(f.rc, 0);
	uint32_t rlo[] = { 2 }, rhi[] = { 5 };
	struct uid_ranges recent = { rlo, rhi, 1, 4 };
	struct buf sql = BUF_INIT;
	struct search_params p = { .first = 7 };
	*exact = search_sql(&f.q, &recent, &f.a, &sql, &p);
	snprintf(out, outlen, "%s", buf_ptr(&sql));
	if (p0 != NULL)
		*p0 = p.n > 0 ? strdup(p.v[0]) : NULL;
	buf_free(&sql);
	fx_free(&f);
}

#define CHECK_SQL(keys, want_exact, want) do { bool ex_; char o_[1024]; \
	sql_of((keys), &ex_, o_, sizeof(o_), NULL); CHECK_EQ_MEM(o_, strlen(o_), (want)); \
	CHECK_EQ_INT(ex_, (want_exact)); } while (0)

TEST(search_sql_prefilter)
{
	view_init();
	CHECK_SQL("ALL", true, "TRUE");
	CHECK_SQL("UNSEEN", true, "m.flags & 1 = 0");
	CHECK_SQL("DELETED", true, "m.flags & 8 <> 0");
	CHECK_SQL("FLAGGED UNDRAFT", true, "(m.flags & 4 <> 0 AND m.flags & 16 = 0)");
	CHECK_SQL("OR FLAGGED BODY x", false, "TRUE");
	CHECK_SQL("FLAGGED BODY x", false, "(m.flags & 4 <> 0)");
	CHECK_SQL("NOT BODY x", false, "TRUE");
	CHECK_SQL("NOT ALL", true, "FALSE");
	CHECK_SQL("NOT FLAGGED", true, "NOT m.flags & 4 <> 0");
	CHECK_SQL("LARGER 10 SMALLER 20", true, "(m.size > 10 AND m.size < 20)");
	CHECK_SQL("BEFORE 2-Jan-1970", true, "m.internaldate < to_timestamp(86400)");
	CHECK_SQL("ON 1-Jan-1970", true,
		  "(m.internaldate >= to_timestamp(0) AND m.internaldate < to_timestamp(86400))");
	CHECK_SQL("SINCE 31-Dec-1969", true, "m.internaldate >= to_timestamp(-86400)");
	CHECK_SQL("NOT SENTBEFORE 2-Jan-1970", true, "NOT coalesce(b.sent_date < to_timestamp(86400), FALSE)");
	CHECK_SQL("UID 2:5", true, "(m.uid BETWEEN 2 AND 2 OR m.uid BETWEEN 5 AND 5)");
	CHECK_SQL("UID 3:4", true, "FALSE");
	CHECK_SQL("RECENT", true, "(m.uid BETWEEN 2 AND 5)");
	CHECK_SQL("KEYWORD \\Seen", true, "FALSE");
	CHECK_SQL("OR FROM a TO b", false, "TRUE");
	CHECK_SQL("HEADER X y", false, "TRUE");
	bool ex;
	char o[512];
	const char *p0 = NULL;
	sql_of("KEYWORD $Work", &ex, o, sizeof(o), &p0);
	CHECK_EQ_MEM(o, strlen(o), "EXISTS (SELECT 1 FROM unnest(m.keywords) kw WHERE lower(kw) = $7)");
	CHECK(p0 != NULL && strcmp(p0, "$work") == 0);
	free((void *)p0);
	uidset_free(&view);
}

TEST(search_sql_many_ranges)
{
	/* 9 to 64 ranges go as array parameters. */
	uidset_init(&view);
	for (uint32_t u = 1; u <= 40; u += 2)
		uidset_add(&view, u);
	bool ex;
	char o[512];
	const char *p0 = NULL;
	sql_of("UID 1:*", &ex, o, sizeof(o), &p0);
	CHECK(ex);
	CHECK_EQ_MEM(o, strlen(o), "EXISTS (SELECT 1 FROM unnest($7::bigint[], $8::bigint[]) r(lo, hi)"
				   " WHERE m.uid BETWEEN r.lo AND r.hi)");
	CHECK(p0 != NULL && strncmp(p0, "{1,3,5,", 7) == 0);
	free((void *)p0);
	uidset_free(&view);

	/* More than 64: only the bounds, and C decides. */
	uidset_init(&view);
	for (uint32_t u = 1; u <= 200; u += 2)
		uidset_add(&view, u);
	CHECK_SQL("UID 1:*", false, "m.uid BETWEEN 1 AND 199");
	CHECK_SQL("NOT UID 1:*", false, "TRUE");
	CHECK_SQL("UID 1:* FLAGGED", false, "(m.uid BETWEEN 1 AND 199 AND m.flags & 4 <> 0)");
	char o_[64];
	run("UID 1:* NOT UID 1:100", o_, sizeof(o_));
	CHECK_EQ_MEM(o_, strlen(o_), "");
	uidset_free(&view);
}

TEST(search_fold_text)
{
	struct {
		const char *in, *out;
	} cases[] = {
		{ "Hello WORLD 123", "hello world 123" },
		{ "\xc3\x80\xc3\x89\xc3\x8e\xc3\x96\xc3\x9e", "\xc3\xa0\xc3\xa9\xc3\xae\xc3\xb6\xc3\xbe" },
		{ "\xc3\x97\xc3\x9f", "\xc3\x97\xc3\x9f" },	/* × and ß stay */
		{ "\xc5\x81\xc5\x9a\xc5\xbb\xc4\x8c\xc5\xb8", "\xc5\x82\xc5\x9b\xc5\xbc\xc4\x8d\xc3\xbf" },
		{ "\xc4\xb0\xc5\xbf", "is" },
		{ "\xce\x91\xce\x92\xce\x93\xce\xa3\xcf\x82\xce\x86", "\xce\xb1\xce\xb2\xce\xb3\xcf\x83\xcf\x83\xce\xac" },
		{ "\xd0\x94\xd0\x9e\xd0\x9c\xd0\x81", "\xd0\xb4\xd0\xbe\xd0\xbc\xd1\x91" },
		{ "\xc2\xb5", "\xce\xbc" },
		{ "A\xff" "B\xc3(\xe2\x82", "a\xff" "b\xc3(\xe2\x82" },	/* not UTF-8: kept */
		{ "\xf0\x9f\x98\x80X", "\xf0\x9f\x98\x80x" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct buf b = BUF_INIT;
		search_fold(cases[i].in, strlen(cases[i].in), &b);
		CHECK_EQ_MEM(buf_ptr(&b), b.len, cases[i].out);
		buf_free(&b);
	}
}

TEST(search_date_parse)
{
	CHECK_EQ_INT(search_date(str_cstr("1-Jan-1970")), 0);
	CHECK_EQ_INT(search_date(str_cstr("01-jan-1970")), 0);
	CHECK_EQ_INT(search_date(str_cstr("2-JAN-1970")), 1);
	CHECK_EQ_INT(search_date(str_cstr("31-Dec-1969")), -1);
	CHECK_EQ_INT(search_date(str_cstr("1-Mar-2000")), 11017);
	CHECK_EQ_INT(search_date(str_cstr("29-Feb-2000")), 11016);
	CHECK_EQ_INT(search_date(str_cstr("29-Feb-1900")), INT64_MIN);
	CHECK_EQ_INT(search_date(str_cstr("0-Jan-2000")), INT64_MIN);
	CHECK_EQ_INT(search_date(str_cstr("1-Jan-20000")), INT64_MIN);
	CHECK_EQ_INT(search_date(str_cstr("1 Jan 2000")), INT64_MIN);
	CHECK_EQ_INT(search_date(str_cstr("")), INT64_MIN);
	CHECK_EQ_INT(search_date(str_cstr("-Jan-2000")), INT64_MIN);
}
