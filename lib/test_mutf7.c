/* Unit tests for modified UTF-7 (lib/mutf7.c). */
#include <stdlib.h>

#include "lib/buf.h"
#include "lib/mutf7.h"
#include "tests/unit/unit.h"

static int decode(const char *in, size_t len, struct buf *out, const char **err)
{
	buf_clear(out);
	*err = NULL;
	return mutf7_decode(str_make(in, len), out, err);
}

static int encode(const char *in, size_t len, struct buf *out, const char **err)
{
	buf_clear(out);
	*err = NULL;
	return mutf7_encode(str_make(in, len), out, err);
}

/* UTF-8 <-> modified UTF-7 pairs, checked in both directions. */
static const struct {
	const char *utf8, *mutf7;
} pairs[] = {
	{ "", "" },
	{ "INBOX", "INBOX" },
	{ "Sent Items", "Sent Items" },
	{ "&", "&-" },
	{ "a&b&&", "a&-b&-&-" },
	/* RFC 3501 5.1.3 */
	{ "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
	  "~peter/mail/&U,BTFw-/&ZeVnLIqe-" },
	{ "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "&ZeVnLIqe-" },
	{ "Entw\xc3\xbcrfe", "Entw&APw-rfe" },
	{ "Gel\xc3\xb6schte Elemente", "Gel&APY-schte Elemente" },
	{ "\xc3\xa9", "&AOk-" },
	{ "\xc3\x84&\xc3\x96", "&AMQ-&-&ANY-" },
	/* outside the BMP: a surrogate pair */
	{ "\xf0\x9f\x98\x80", "&2D3eAA-" },
	{ "a\xf0\x9f\x98\x80" "b", "a&2D3eAA-b" },
	/* "/" inside a run is "," in modified base64, never a separator */
	{ "\xe3\x83\xbf", "&MP8-" },
	{ "\xef\xbf\xbf", "&,,8-" },
	/* control characters are representable (the name policy refuses them) */
	{ "\t", "&AAk-" },
	{ "\x7f", "&AH8-" },
};

TEST(mutf7_pairs_both_ways)
{
	struct buf b = BUF_INIT;
	const char *err;
	for (size_t i = 0; i < ARRAY_SIZE(pairs); i++) {
		CHECK_EQ_INT(encode(pairs[i].utf8, strlen(pairs[i].utf8), &b, &err), 0);
		CHECK_EQ_MEM(buf_ptr(&b), b.len, pairs[i].mutf7);
		CHECK_EQ_INT(decode(pairs[i].mutf7, strlen(pairs[i].mutf7), &b, &err), 0);
		CHECK_EQ_MEM(buf_ptr(&b), b.len, pairs[i].utf8);
	}
	/* U+0000 survives (with its length) */
	CHECK_EQ_INT(decode("&AAA-", 5, &b, &err), 0);
	CHECK(b.len == 1 && buf_ptr(&b)[0] == '\0');
	CHECK_EQ_INT(encode("\0", 1, &b, &err), 0);
	CHECK_EQ_MEM(buf_ptr(&b), b.len, "&AAA-");
	buf_free(&b);
}

/* Every code point of the BMP outside the surrogates, one at a time and in
 * runs of various lengths (which exercises each leftover-bits case), plus a
 * sample of the supplementary planes. */
TEST(mutf7_roundtrip_all_code_points)
{
	struct buf u = BUF_INIT, m = BUF_INIT, back = BUF_INIT;
	const char *err;
	int failures = 0;
	for (uint32_t cp = 1; cp <= 0x10ffff && failures < 5; cp += cp < 0x10000 ? 1 : 97) {
		if (cp >= 0xd800 && cp <= 0xdfff)
			continue;
		buf_clear(&u);
		/* cp, then a run of 1..4 more characters, then ASCII */
		uint32_t run[5] = { cp, 0x4e2d, 0xe9, 0x1f600, 0x7f };
		size_t n = 1 + cp % 5;
		for (size_t k = 0; k < n; k++) {
			uint32_t c = run[k];
			char t[4];
			size_t l;
			if (c < 0x80) {
				t[0] = (char)c, l = 1;
			} else if (c < 0x800) {
				t[0] = (char)(0xc0 | (c >> 6)), t[1] = (char)(0x80 | (c & 0x3f)), l = 2;
			} else if (c < 0x10000) {
				t[0] = (char)(0xe0 | (c >> 12)), t[1] = (char)(0x80 | ((c >> 6) & 0x3f));
				t[2] = (char)(0x80 | (c & 0x3f)), l = 3;
			} else {
				t[0] = (char)(0xf0 | (c >> 18)), t[1] = (char)(0x80 | ((c >> 12) & 0x3f));
				t[2] = (char)(0x80 | ((c >> 6) & 0x3f)), t[3] = (char)(0x80 | (c & 0x3f)), l = 4;
			}
			buf_append(&u, t, l);
		}
		buf_puts(&u, "x");
		buf_clear(&m);
		if (mutf7_encode(buf_str(&u), &m, &err) != 0) {
			failures++;
			CHECK(!"encode failed");
			continue;
		}
		/* the wire form is printable US-ASCII only */
		for (size_t k = 0; k < m.len; k++)
			CHECK(buf_ptr(&m)[k] >= 0x20 && buf_ptr(&m)[k] <= 0x7e);
		buf_clear(&back);
		if (mutf7_decode(buf_str(&m), &back, &err) != 0 || back.len != u.len ||
		    memcmp(buf_ptr(&back), buf_ptr(&u), u.len) != 0) {
			failures++;
			CHECK(!"round trip differs");
		}
	}
	CHECK_EQ_INT(failures, 0);
	buf_free(&u);
	buf_free(&m);
	buf_free(&back);
}

TEST(mutf7_decode_rejects)
{
	static const char *bad[] = {
		"&",			/* not closed */
		"abc&",
		"&ZeVnLIqe",		/* not closed */
		"&ZeVn/Iqe-",		/* "/" is not modified base64 */
		"&ZeVn=Iqe-",
		"&Ze Vn-",
		"&A-",			/* 6 bits: no complete unit */
		"&AA-",			/* 12 bits: no complete unit */
		"&AOkA-",		/* leftover 8 bits */
		"&AOl-",		/* leftover bits not zero (U+00E9 is &AOk-) */
		"&AGE-",		/* "a" in base64: printable ASCII must stand for itself */
		"&ACY-",		/* "&" in base64 */
		"&ACA-",		/* SP in base64 */
		"&AH4-",		/* "~" in base64 */
		"&2D0-",		/* lone high surrogate */
		"&2D3YPQ-",		/* high surrogate followed by a high one */
		"&3gA-",		/* lone low surrogate */
		"&AOk-&AOk-",		/* null shift: one run was required */
		"&AOk-&AOk",
		"Entw\xc3\xbcrfe",	/* raw UTF-8 */
		"a\tb",			/* raw control character */
		"a\x7f",
		"\x80",
		"&AOk\xc3\xa9-",
	};
	struct buf b = BUF_INIT;
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		const char *err = NULL;
		int rc = decode(bad[i], strlen(bad[i]), &b, &err);
		CHECK_EQ_INT(rc, -1);
		CHECK(err != NULL && err[0] != '\0');
		if (rc != -1)
			fprintf(stderr, "    accepted: %s\n", bad[i]);
	}
	/* a run followed by an escaped "&" is fine, and so is a lone "-" */
	const char *err;
	CHECK_EQ_INT(decode("&AOk-&-", 7, &b, &err), 0);
	CHECK_EQ_MEM(buf_ptr(&b), b.len, "\xc3\xa9&");
	CHECK_EQ_INT(decode("a-b-", 4, &b, &err), 0);
	CHECK_EQ_MEM(buf_ptr(&b), b.len, "a-b-");
	buf_free(&b);
}

TEST(mutf7_encode_and_utf8_check_reject)
{
	static const char *bad[] = {
		"\x80",			/* continuation byte alone */
		"\xc3",			/* truncated */
		"a\xe6\x97",		/* truncated */
		"\xc0\xaf",		/* overlong "/" */
		"\xe0\x80\xaf",		/* overlong */
		"\xf0\x80\x80\xaf",	/* overlong */
		"\xed\xa0\x80",		/* U+D800 */
		"\xed\xbf\xbf",		/* U+DFFF */
		"\xf4\x90\x80\x80",	/* U+110000 */
		"\xf5\x80\x80\x80",
		"\xff",
		"\xc3\x28",
	};
	struct buf b = BUF_INIT;
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		const char *err = NULL;
		CHECK_EQ_INT(encode(bad[i], strlen(bad[i]), &b, &err), -1);
		CHECK(err != NULL);
		CHECK(!mutf7_utf8_check(str_cstr(bad[i]), &err));
	}
	CHECK(mutf7_utf8_check(str_cstr("\xf4\x8f\xbf\xbf \xef\xbf\xbd \xc2\x80"), NULL));
	buf_free(&b);
}
