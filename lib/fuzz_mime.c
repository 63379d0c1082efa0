/* fuzz_mime.c - libFuzzer target for the MIME parser (lib/mime.c).
 *
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -I. -fsanitize=fuzzer,address,undefined \
 *     -fno-sanitize-recover=undefined -o build-fuzz/fuzz_mime lib/fuzz_mime.c \
 *     lib/mime.c lib/mime_check.c lib/arena.c lib/buf.c lib/util.c
 *
 * Input: 2 header octets, then the message.
 *   [0] max_depth = 1 + v % 24     [1] max_parts = 1 + v * 2
 * The message is parsed with those limits and with the defaults.  Checked:
 * the three strings follow the RFC 3501 grammar and are UTF-8 without NUL;
 * the part table is well-formed and nested; BODY[section] from the table
 * equals BODY[section] after re-parsing, and is a slice of the message for
 * plain sections; the SEARCH text is UTF-8 without NUL.  The last octets of
 * the input are also tried as a section spec.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/arena.h"
#include "lib/buf.h"
#include "lib/mime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(x) do { if (!(x)) { fprintf(stderr, "invariant failed: %s (%s:%d)\n", \
	#x, __FILE__, __LINE__); abort(); } } while (0)

static bool utf8_no_nul(const char *p, size_t n)
{
	const unsigned char *s = (const unsigned char *)p;
	for (size_t i = 0; i < n;) {
		unsigned c = s[i];
		size_t k;
		if (c == 0)
			return false;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
			k = 1;
		else if (c >= 0xE0 && c <= 0xEF)
			k = 2;
		else if (c >= 0xF0 && c <= 0xF4)
			k = 3;
		else
			return false;
		if (n - i <= k)
			return false;
		for (size_t j = 1; j <= k; j++)
			if ((s[i + j] & 0xC0) != 0x80)
				return false;
		if ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] > 0x9F) ||
		    (c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] > 0x8F))
			return false;
		i += k + 1;
	}
	return true;
}

static uint64_t u64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint32_t u32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Records nest: children lie inside the parent's body, in order. */
static void check_table(const struct buf *t, size_t len, size_t max_parts)
{
	const unsigned char *p = (const unsigned char *)buf_ptr(t);
	REQUIRE(t->len >= 8 + 32 && memcmp(p, "MP\x01\x00", 4) == 0);
	uint32_t n = u32(p + 4);
	REQUIRE(t->len == 8 + (size_t)n * 32 && n >= 1 && n <= max_parts);
	for (uint32_t i = 0; i < n; i++) {
		const unsigned char *r = p + 8 + (size_t)i * 32;
		uint64_t h = u64(r), b = u64(r + 8), e = u64(r + 16);
		uint32_t sub = u32(r + 24);
		REQUIRE(h <= b && b <= e && e <= len);
		REQUIRE(sub <= n - 1 - i);
		REQUIRE(r[28] <= MIME_KIND_MESSAGE && (r[28] == MIME_KIND_LEAF) == (sub == 0));
		uint64_t prev_end = b;
		for (uint32_t c = i + 1; c < i + 1 + sub;) {
			const unsigned char *cr = p + 8 + (size_t)c * 32;
			REQUIRE(u64(cr) >= prev_end && u64(cr + 16) <= e);
			prev_end = u64(cr + 16);
			if (r[28] == MIME_KIND_MESSAGE)
				REQUIRE(c == i + 1 && u32(cr + 24) + 1 == sub && u64(cr) == b);
			c += 1 + u32(cr + 24);
		}
	}
	REQUIRE(u64(p + 8) == 0);
}

static const char *const sections[] = {
	"", "HEADER", "TEXT", "1", "2", "3", "1.MIME", "2.MIME", "1.1", "1.2", "2.1", "1.1.1",
	"1.HEADER", "2.TEXT", "1.1.HEADER", "2.2.MIME", "HEADER.FIELDS (From Subject)",
	"HEADER.FIELDS.NOT (To Content-Type)", "1.HEADER.FIELDS (Content-Type)",
};

static void check_sections(const char *m, size_t n, const struct buf *tbl)
{
	struct buf a = BUF_INIT, b = BUF_INIT;
	for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
		buf_clear(&a);
		buf_clear(&b);
		REQUIRE(mime_section(m, n, buf_ptr(tbl), tbl->len, str_cstr(sections[i]), &a) == 0);
		REQUIRE(mime_section(m, n, NULL, 0, str_cstr(sections[i]), &b) == 0);
		REQUIRE(a.len == b.len && memcmp(buf_ptr(&a), buf_ptr(&b), a.len) == 0);
		if (strstr(sections[i], "FIELDS") == NULL && a.len > 0)
			REQUIRE(a.len <= n && memmem(m, n, buf_ptr(&a), a.len) != NULL);
		else
			REQUIRE(a.len <= n + 2);
	}
	buf_free(&a);
	buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	struct mime_limits lim = { 1 + data[0] % 24, 1 + (size_t)data[1] * 2, 0 };
	const char *m = (const char *)data + 2;
	size_t n = size - 2;
	struct arena a;
	struct mime_result r;

	arena_init(&a, 4096);
	for (int pass = 0; pass < 2; pass++) {
		mime_parse(m, n, pass == 0 ? &lim : NULL, &a, &r);
		const char *strs[3] = { r.envelope, r.bodystructure, r.body };
		const enum mime_check_what what[3] = { MIME_CHECK_ENVELOPE, MIME_CHECK_BODYSTRUCTURE, MIME_CHECK_BODY };
		for (int k = 0; k < 3; k++) {
			size_t l = strlen(strs[k]);
			REQUIRE(utf8_no_nul(strs[k], l));
			if (mime_check(strs[k], l, what[k]) != 0) {
				fprintf(stderr, "bad syntax (%d): %s\n", k, strs[k]);
				abort();
			}
		}
		check_table(&r.parts, n, pass == 0 ? lim.max_parts : 5000);
		REQUIRE(r.nparts == (r.parts.len - 8) / 32);
		if (pass == 1)
			check_sections(m, n, &r.parts);

		struct buf t = BUF_INIT;
		mime_body_text(m, n, buf_ptr(&r.parts), r.parts.len, &t);
		REQUIRE(utf8_no_nul(buf_ptr(&t), t.len));
		buf_clear(&t);
		mime_header_decoded(m, n, pass == 0 ? "Subject" : "From", &a, &t);
		REQUIRE(utf8_no_nul(buf_ptr(&t), t.len));
		buf_clear(&t);

		/* the tail of the input as a section spec */
		size_t sl = n < 24 ? n : 24;
		int rc = mime_section(m, n, buf_ptr(&r.parts), r.parts.len, str_make(m + n - sl, sl), &t);
		REQUIRE(rc == 0 || (rc == -1 && t.len == 0));
		buf_free(&t);
		buf_free(&r.parts);
		arena_reset(&a);
	}
	arena_free(&a);
	return 0;
}
