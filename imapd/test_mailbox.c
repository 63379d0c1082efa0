/* Unit tests for mailbox names, hierarchy order and LIST patterns
 * (imapd/mailbox.c). */
#include <stdlib.h>

#include "imapd/mailbox.h"
#include "lib/arena.h"
#include "tests/unit/unit.h"

static bool match(const char *pattern, const char *name)
{
	struct arena a;
	arena_init(&a, 4096);
	struct mailbox_pattern *p = mailbox_pattern_new(&a, str_cstr(pattern), 512);
	bool ok = mailbox_pattern_match(p, str_cstr(name));
	arena_free(&a);
	return ok;
}

/* A plain recursive matcher: the reference for random comparisons. */
static bool ref_match(const char *p, const char *n, bool inbox, size_t pos)
{
	if (*p == '\0')
		return *n == '\0';
	if (*p == '*' || *p == '%') {
		for (size_t k = 0;; k++) {
			if (ref_match(p + 1, n + k, inbox, pos + k))
				return true;
			if (n[k] == '\0' || (*p == '%' && n[k] == '/'))
				return false;
		}
	}
	if (*n == '\0')
		return false;
	char a = *p, b = *n;
	if (inbox && pos < 5 && a >= 'a' && a <= 'z')
		a = (char)(a - 'a' + 'A');
	return a == b && ref_match(p + 1, n + 1, inbox, pos + 1);
}

TEST(mailbox_pattern_basics)
{
	CHECK(match("*", "a"));
	CHECK(match("*", "a/b/c"));
	CHECK(match("%", "a"));
	CHECK(!match("%", "a/b"));
	CHECK(match("%/%", "a/b"));
	CHECK(!match("%/%", "a/b/c"));
	CHECK(match("a/*", "a/b/c"));
	CHECK(!match("a/*", "a"));
	CHECK(match("a*", "a"));
	CHECK(match("a%", "abc"));
	CHECK(!match("a%", "ab/c"));
	CHECK(match("a%c", "abbbc"));
	CHECK(!match("a%c", "ab/bc"));
	CHECK(match("a*c", "ab/bc"));
	CHECK(match("", ""));
	CHECK(!match("", "a"));
	CHECK(!match("a", ""));
	CHECK(match("%", ""));
	CHECK(match("Sent", "Sent"));
	CHECK(!match("sent", "Sent"));		/* only INBOX is case-insensitive */
	CHECK(!match("Sen", "Sent"));
	CHECK(match("*t", "Sent"));
	CHECK(match("%*%", "a/b"));		/* merged into "*" */
	CHECK(match("%%", "ab"));
	CHECK(!match("%%", "a/b"));
	CHECK(match("a/%/c", "a/b/c"));
	CHECK(!match("a/%/c", "a/b/x/c"));
	CHECK(match("a/*/c", "a/b/x/c"));
	/* UTF-8 octets are literals like any other */
	CHECK(match("\xe6\x97\xa5*", "\xe6\x97\xa5\xe6\x9c\xac"));
	CHECK(match("%\xe6\x9c\xac", "\xe6\x97\xa5\xe6\x9c\xac"));
}

TEST(mailbox_pattern_inbox_case)
{
	CHECK(match("inbox", "INBOX"));
	CHECK(match("InBoX", "INBOX"));
	CHECK(match("in%", "INBOX"));
	CHECK(match("*box", "INBOX"));
	CHECK(match("inbox/*", "INBOX/Sub"));
	CHECK(!match("inbox/sub", "INBOX/Sub"));	/* below INBOX: case-sensitive */
	CHECK(match("INBOX/Sub", "INBOX/Sub"));
	CHECK(!match("inboxes", "INBOXES"));	/* not INBOX */
	CHECK(match("INBOXES", "INBOXES"));
}

TEST(mailbox_pattern_no_exponential_backtracking)
{
	/* A naive backtracking matcher takes ages on this; the bitset NFA
	 * does len(name) steps. */
	char pat[400], name[600];
	size_t n = 0;
	for (int i = 0; i < 100; i++) {
		pat[n++] = '*';
		pat[n++] = 'a';
	}
	pat[n++] = 'b';
	pat[n] = '\0';
	memset(name, 'a', 599);
	name[599] = '\0';
	uint64_t t0 = now_ms();
	for (int i = 0; i < 200; i++)
		CHECK(!match(pat, name));
	CHECK(now_ms() - t0 < 5000);
	name[598] = 'b';
	CHECK(match(pat, name));
	/* more literals than any name may hold: matches nothing */
	struct arena a;
	arena_init(&a, 4096);
	struct mailbox_pattern *p = mailbox_pattern_new(&a, str_cstr("abcdef*"), 5);
	CHECK(!mailbox_pattern_match(p, str_cstr("abcdef")));
	arena_free(&a);
}

TEST(mailbox_pattern_random_against_reference)
{
	const char alpha[] = "ab/*%";
	const char nalpha[] = "ab/";
	unsigned seed = 12345;
	int mismatches = 0;
	for (int iter = 0; iter < 20000; iter++) {
		char pat[16], name[16];
		seed = seed * 1103515245 + 12345;
		size_t pl = (seed >> 16) % 10, nl = (seed >> 8) % 12;
		for (size_t i = 0; i < pl; i++) {
			seed = seed * 1103515245 + 12345;
			pat[i] = alpha[(seed >> 16) % 5];
		}
		pat[pl] = '\0';
		for (size_t i = 0; i < nl; i++) {
			seed = seed * 1103515245 + 12345;
			name[i] = nalpha[(seed >> 16) % 3];
		}
		name[nl] = '\0';
		if (match(pat, name) != ref_match(pat, name, false, 0)) {
			if (mismatches++ < 5)
				fprintf(stderr, "    pattern \"%s\" name \"%s\"\n", pat, name);
		}
	}
	CHECK_EQ_INT(mismatches, 0);
}

TEST(mailbox_pattern_incremental)
{
	/* Feeding a parent then the rest equals feeding the whole name; a
	 * dead state stays dead. */
	struct arena a;
	arena_init(&a, 4096);
	struct mailbox_pattern *p = mailbox_pattern_new(&a, str_cstr("a/%"), 512);
	uint64_t st[4];
	CHECK(mailbox_pattern_words(p) <= 4);
	mailbox_pattern_start(p, st);
	mailbox_pattern_feed(p, st, "a", 1, 0, 0);
	CHECK(!mailbox_pattern_accepts(p, st));
	CHECK(mailbox_pattern_alive(p, st));
	mailbox_pattern_feed(p, st, "/b", 2, 1, 0);
	CHECK(mailbox_pattern_accepts(p, st));
	mailbox_pattern_feed(p, st, "/c", 2, 3, 0);
	CHECK(!mailbox_pattern_accepts(p, st));
	CHECK(!mailbox_pattern_alive(p, st));
	mailbox_pattern_start(p, st);
	mailbox_pattern_feed(p, st, "x", 1, 0, 0);
	CHECK(!mailbox_pattern_alive(p, st));
	/* positions past 64 pattern octets use the next state word */
	char pat[200], name[200];
	memset(pat, 'q', 150);
	pat[150] = '%';
	pat[151] = '\0';
	memset(name, 'q', 150);
	memcpy(name + 150, "rst", 4);
	struct mailbox_pattern *p2 = mailbox_pattern_new(&a, str_cstr(pat), 512);
	CHECK(mailbox_pattern_words(p2) == 3);
	CHECK(mailbox_pattern_match(p2, str_cstr(name)));
	name[151] = '/';
	CHECK(!mailbox_pattern_match(p2, str_cstr(name)));
	arena_free(&a);
}

static const char *parse(const char *wire, unsigned flags, int *rc)
{
	static char out[1024];
	struct arena a;
	arena_init(&a, 4096);
	struct str name;
	const char *err;
	*rc = mailbox_name_parse(&a, str_cstr(wire), 40, flags, &name, &err);
	if (*rc == MAILBOX_NAME_OK)
		snprintf(out, sizeof(out), "%.*s", STR_FMT(name));
	else
		snprintf(out, sizeof(out), "%s", err);
	arena_free(&a);
	return out;
}

#define CHECK_NAME(wire, flags, expect_rc, expect) do { int rc_; const char *o_ = parse((wire), (flags), &rc_); \
	CHECK_EQ_INT(rc_, (expect_rc)); CHECK_EQ_MEM(o_, strlen(o_), (expect)); } while (0)

TEST(mailbox_name_parse_rules)
{
	CHECK_NAME("INBOX", 0, MAILBOX_NAME_OK, "INBOX");
	CHECK_NAME("inbox", 0, MAILBOX_NAME_OK, "INBOX");
	CHECK_NAME("InBoX/Sub", 0, MAILBOX_NAME_OK, "INBOX/Sub");
	CHECK_NAME("inbox/inbox", 0, MAILBOX_NAME_OK, "INBOX/inbox");
	CHECK_NAME("Inboxes", 0, MAILBOX_NAME_OK, "Inboxes");
	CHECK_NAME("a/b/c", 0, MAILBOX_NAME_OK, "a/b/c");
	CHECK_NAME("&ZeVnLIqe-", 0, MAILBOX_NAME_OK, "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e");
	CHECK_NAME("Tom &- Jerry", 0, MAILBOX_NAME_OK, "Tom & Jerry");
	CHECK_NAME("a/", MAILBOX_NAME_TRAILING_SEP, MAILBOX_NAME_OK, "a");
	CHECK_NAME("inbox/", MAILBOX_NAME_TRAILING_SEP, MAILBOX_NAME_OK, "INBOX");
	CHECK_NAME("a/", 0, MAILBOX_NAME_NO, "[CANNOT] Invalid mailbox name: it ends with \"/\"");
	CHECK_NAME("a//", MAILBOX_NAME_TRAILING_SEP, MAILBOX_NAME_NO,
		   "[CANNOT] Invalid mailbox name: it ends with \"/\"");
	CHECK_NAME("/a", 0, MAILBOX_NAME_NO, "[CANNOT] Invalid mailbox name: it starts with \"/\"");
	CHECK_NAME("/", MAILBOX_NAME_TRAILING_SEP, MAILBOX_NAME_NO,
		   "[CANNOT] Invalid mailbox name: it starts with \"/\"");
	CHECK_NAME("a//b", 0, MAILBOX_NAME_NO,
		   "[CANNOT] Invalid mailbox name: empty hierarchy level (\"//\")");
	CHECK_NAME("", 0, MAILBOX_NAME_NO, "[CANNOT] Invalid mailbox name: empty");
	CHECK_NAME("a*", 0, MAILBOX_NAME_NO, "[CANNOT] Invalid mailbox name: \"*\" and \"%\" are not allowed");
	CHECK_NAME("&AAk-", 0, MAILBOX_NAME_NO,
		   "[CANNOT] Invalid mailbox name: control characters are not allowed");
	CHECK_NAME("&AIU-", 0, MAILBOX_NAME_NO,	/* U+0085, a C1 control */
		   "[CANNOT] Invalid mailbox name: control characters are not allowed");
	CHECK_NAME("&AAA-", 0, MAILBOX_NAME_NO,
		   "[CANNOT] Invalid mailbox name: control characters are not allowed");
	CHECK_NAME("0123456789012345678901234567890123456789", 0, MAILBOX_NAME_OK,
		   "0123456789012345678901234567890123456789");
	CHECK_NAME("0123456789012345678901234567890123456789x", 0, MAILBOX_NAME_NO,
		   "[LIMIT] Mailbox name too long (at most 40 octets of UTF-8)");
	CHECK_NAME("&ZeVn", 0, MAILBOX_NAME_BAD, "Invalid mailbox name: \"&\" not closed by \"-\"");
	CHECK_NAME("Entw\xc3\xbcrfe", 0, MAILBOX_NAME_BAD,
		   "Invalid mailbox name: 8-bit octet (names must be sent in modified UTF-7)");
	CHECK_NAME("&AGE-", 0, MAILBOX_NAME_BAD,
		   "Invalid mailbox name: printable US-ASCII character encoded in BASE64");
}

TEST(mailbox_hierarchy_order)
{
	struct str v[] = {
		STR_LIT("b"), STR_LIT("a b"), STR_LIT("a/b"), STR_LIT("INBOX/x"), STR_LIT("a"),
		STR_LIT("Archive"), STR_LIT("INBOX"), STR_LIT("a/b/c"), STR_LIT("a!"), STR_LIT("INBOXES"),
	};
	qsort(v, ARRAY_SIZE(v), sizeof(v[0]), mailbox_cmp);
	const char *want[] = { "INBOX", "INBOX/x", "Archive", "INBOXES", "a", "a/b", "a/b/c", "a b", "a!", "b" };
	for (size_t i = 0; i < ARRAY_SIZE(want); i++)
		CHECK_EQ_MEM(v[i].p, v[i].len, want[i]);
	CHECK(mailbox_is_below(str_cstr("a/b"), str_cstr("a")));
	CHECK(!mailbox_is_below(str_cstr("ab"), str_cstr("a")));
	CHECK(!mailbox_is_below(str_cstr("a"), str_cstr("a")));
	CHECK(!mailbox_is_below(str_cstr("a/"), str_cstr("a")));
	CHECK(mailbox_in_inbox_tree(str_cstr("INBOX/a")));
	CHECK(!mailbox_in_inbox_tree(str_cstr("INBOXa")));
}
