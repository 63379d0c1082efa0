/* Unit tests for sequence sets and UID lists (imapd/seqset.c). */
#include <stdlib.h>

#include "imapd/seqset.h"
#include "lib/arena.h"
#include "lib/buf.h"
#include "tests/unit/unit.h"

/* Parse, optionally resolve against star (0 = leave unresolved), write. */
static bool roundtrip(const char *in, size_t max, long star, char *out, size_t outlen)
{
	struct arena a;
	struct seqset set;
	struct buf b = BUF_INIT;
	const char *err = NULL;

	arena_init(&a, 1024);
	int rc = seqset_parse(str_cstr(in), max, &a, &set, &err);
	if (rc == 0) {
		if (star >= 0)
			seqset_resolve(&set, (uint32_t)star);
		seqset_write(&b, &set);
		snprintf(out, outlen, "%s", buf_ptr(&b));
	} else {
		CHECK(err != NULL);
		snprintf(out, outlen, "ERR");
	}
	buf_free(&b);
	arena_free(&a);
	return rc == 0;
}

#define CHECK_SEQ(in, max, star, expect) do { char o_[256]; roundtrip((in), (max), (star), o_, sizeof(o_)); \
	CHECK_EQ_MEM(o_, strlen(o_), (expect)); } while (0)

TEST(seqset_parse_forms)
{
	CHECK_SEQ("1", 10, -1, "1");
	CHECK_SEQ("*", 10, -1, "*");
	CHECK_SEQ("1,3:5,7:*", 10, -1, "1,3:5,7:*");
	CHECK_SEQ("5:3", 10, -1, "3:5");
	CHECK_SEQ("*:4", 10, -1, "4:*");
	CHECK_SEQ("*:*", 10, -1, "*");
	CHECK_SEQ("4294967295", 10, -1, "4294967295");
	CHECK_SEQ("1:4294967295", 10, -1, "1:4294967295");
	CHECK_SEQ("3,2,1", 3, -1, "3,2,1");
}

TEST(seqset_parse_errors)
{
	const char *bad[] = {
		"", "0", "0:5", "5:0", "4294967296", "99999999999999999999", "1,", ",1",
		"1,,2", "1:", ":1", "1:2:3", "a", "1 ", " 1", "01", "1:02", "**", "*1",
		"1*", "$", "-1", "+1", "1;2",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		char o[64];
		bool ok = roundtrip(bad[i], 10, -1, o, sizeof(o));
		CHECK(!ok);
		if (ok)
			fprintf(stderr, "    accepted \"%s\"\n", bad[i]);
	}
	/* the element bound, just at and just over */
	CHECK_SEQ("1,2,3,4", 4, -1, "1,2,3,4");
	CHECK_SEQ("1,2,3,4,5", 4, -1, "ERR");
	CHECK_SEQ("1", 0, -1, "ERR");
}

TEST(seqset_resolve)
{
	/* RFC 9051 section 9 examples */
	CHECK_SEQ("2,4:7,9,12:*", 10, 15, "2,4:7,9,12:15");
	CHECK_SEQ("*:4,5:7", 10, 10, "4:10");
	/* n:* with n above star is star:n (RFC 9051: 3291:* has the last UID) */
	CHECK_SEQ("3291:*", 10, 100, "100:3291");
	CHECK_SEQ("*", 10, 7, "7");
	/* merging: overlap, touching, containment, unsorted, duplicates */
	CHECK_SEQ("5:9,1:3,4", 10, 20, "1:9");
	CHECK_SEQ("1:10,3:4,2", 10, 20, "1:10");
	CHECK_SEQ("7,7,7", 10, 20, "7");
	CHECK_SEQ("10:12,1,3,2,20:*", 10, 25, "1:3,10:12,20:25");
	CHECK_SEQ("4294967295,1:4294967294", 10, 5, "1:4294967295");
	/* an empty mailbox */
	CHECK_SEQ("*", 10, 0, "");
	CHECK_SEQ("1:*", 10, 0, "1");
	CHECK_SEQ("3,*", 10, 0, "3");
}

TEST(seqset_contains_count_iter)
{
	struct arena a;
	struct seqset set;
	struct seqset_iter it;
	uint32_t n, prev = 0;
	uint64_t seen = 0;

	arena_init(&a, 1024);
	CHECK(seqset_parse(STR_LIT("9,1:3,20:*,5"), 10, &a, &set, NULL) == 0);
	CHECK(seqset_has_star(&set));
	seqset_resolve(&set, 22);
	CHECK(!seqset_has_star(&set));
	CHECK_EQ_INT(set.n, 4);
	CHECK_EQ_INT(seqset_count(&set), 3 + 1 + 1 + 3);
	CHECK_EQ_INT(seqset_max(&set), 22);
	const uint32_t in[] = { 1, 2, 3, 5, 9, 20, 21, 22 };
	const uint32_t out[] = { 0, 4, 6, 8, 10, 19, 23, UINT32_MAX };
	for (size_t i = 0; i < ARRAY_SIZE(in); i++)
		CHECK(seqset_contains(&set, in[i]));
	for (size_t i = 0; i < ARRAY_SIZE(out); i++)
		CHECK(!seqset_contains(&set, out[i]));
	seqset_iter_init(&it, &set);
	while (seqset_iter_next(&it, &n)) {
		CHECK(seen < ARRAY_SIZE(in) && n == in[seen] && n > prev);
		prev = n;
		seen++;
	}
	CHECK_EQ_INT(seen, ARRAY_SIZE(in));
	CHECK(!seqset_iter_next(&it, &n));

	/* the top of the number space does not wrap */
	CHECK(seqset_parse(STR_LIT("4294967294:*"), 10, &a, &set, NULL) == 0);
	seqset_resolve(&set, UINT32_MAX);
	seqset_iter_init(&it, &set);
	CHECK(seqset_iter_next(&it, &n) && n == UINT32_MAX - 1);
	CHECK(seqset_iter_next(&it, &n) && n == UINT32_MAX);
	CHECK(!seqset_iter_next(&it, &n));
	CHECK_EQ_INT(seqset_count(&set), 2);

	struct seqset empty = { NULL, 0 };
	seqset_iter_init(&it, &empty);
	CHECK(!seqset_iter_next(&it, &n));
	CHECK(!seqset_contains(&empty, 1) && seqset_count(&empty) == 0 && seqset_max(&empty) == 0);
	arena_free(&a);
}

TEST(seqset_write_array)
{
	struct buf b = BUF_INIT;
	const uint32_t v1[] = { 1, 2, 3, 5, 9, 8, 10, 11 };
	seqset_write_array(&b, v1, ARRAY_SIZE(v1));
	CHECK_EQ_MEM(buf_ptr(&b), b.len, "1:3,5,9,8,10:11");
	buf_clear(&b);
	const uint32_t v2[] = { 4294967294u, 4294967295u, 1 };
	seqset_write_array(&b, v2, ARRAY_SIZE(v2));
	CHECK_EQ_MEM(buf_ptr(&b), b.len, "4294967294:4294967295,1");
	buf_clear(&b);
	seqset_write_array(&b, v2, 0);
	CHECK(b.len == 0);
	buf_free(&b);
}

/* --- uidset --- */

/* Check every invariant and every lookup against a plain bitmap of UIDs
 * 1..max. */
static void check_uidset_model(const struct uidset *u, const bool *model, uint32_t max)
{
	uint32_t count = 0;

	for (size_t i = 0; i < u->n; i++) {
		CHECK(u->r[i].lo >= 1 && u->r[i].lo <= u->r[i].hi);
		if (i > 0)
			CHECK((uint64_t)u->r[i - 1].hi + 1 < u->r[i].lo);	/* disjoint, not adjacent */
	}
	for (uint32_t uid = 1; uid <= max; uid++) {
		CHECK(uidset_contains(u, uid) == model[uid]);
		if (model[uid]) {
			count++;
			CHECK(uidset_seq(u, uid) == count);
			CHECK(uidset_uid(u, count) == uid);
		} else {
			CHECK(uidset_seq(u, uid) == 0);
		}
		CHECK(uidset_rank(u, uid) == count);
	}
	CHECK_EQ_INT(uidset_count(u), count);
	CHECK(uidset_uid(u, 0) == 0 && uidset_uid(u, count + 1) == 0);
}

TEST(uidset_basic)
{
	struct uidset u = UIDSET_INIT;
	struct buf b = BUF_INIT;

	CHECK(uidset_count(&u) == 0 && uidset_max(&u) == 0 && !uidset_contains(&u, 1));
	CHECK(uidset_uid(&u, 1) == 0 && uidset_seq(&u, 1) == 0 && uidset_rank(&u, 5) == 0);
	for (uint32_t i = 1; i <= 10; i++)
		uidset_add(&u, i);
	CHECK_EQ_INT(u.n, 1);
	CHECK_EQ_INT(uidset_count(&u), 10);

	/* removing from the middle splits the range */
	CHECK(uidset_remove(&u, 5));
	CHECK(!uidset_remove(&u, 5));
	CHECK_EQ_INT(u.n, 2);
	CHECK(uidset_uid(&u, 5) == 6 && uidset_seq(&u, 6) == 5 && uidset_seq(&u, 4) == 4);
	/* trimming ends */
	CHECK(uidset_remove(&u, 1) && uidset_remove(&u, 10));
	struct seqset v = uidset_view(&u);
	seqset_write(&b, &v);
	CHECK_EQ_MEM(buf_ptr(&b), b.len, "2:4,6:9");
	/* adding the hole back merges the two ranges */
	uidset_add(&u, 5);
	CHECK_EQ_INT(u.n, 1);
	buf_clear(&b);
	v = uidset_view(&u);
	seqset_write(&b, &v);
	CHECK_EQ_MEM(buf_ptr(&b), b.len, "2:9");
	/* adjacent ranges merge from either side */
	uidset_add_range(&u, 11, 12);
	CHECK_EQ_INT(u.n, 2);
	uidset_add(&u, 10);
	CHECK_EQ_INT(u.n, 1);
	uidset_add_range(&u, 1, 1);
	CHECK_EQ_INT(u.n, 1);
	CHECK(u.r[0].lo == 1 && u.r[0].hi == 12);
	/* a range bridging several */
	uidset_add_range(&u, 20, 22);
	uidset_add_range(&u, 30, 32);
	uidset_add_range(&u, 40, 42);
	CHECK_EQ_INT(u.n, 4);
	uidset_add_range(&u, 25, 13);	/* swapped bounds */
	CHECK_EQ_INT(u.n, 3);
	uidset_add_range(&u, 23, 39);
	CHECK_EQ_INT(u.n, 1);
	CHECK(u.r[0].lo == 1 && u.r[0].hi == 42 && uidset_count(&u) == 42);
	/* remove_range across ranges */
	uidset_remove_range(&u, 5, 6);
	uidset_remove_range(&u, 10, 11);
	CHECK_EQ_INT(uidset_remove_range(&u, 3, 12), 6);
	CHECK_EQ_INT(uidset_remove_range(&u, 3, 12), 0);
	buf_clear(&b);
	v = uidset_view(&u);
	seqset_write(&b, &v);
	CHECK_EQ_MEM(buf_ptr(&b), b.len, "1:2,13:42");
	CHECK_EQ_INT(uidset_remove_range(&u, 100, 1), 32);
	CHECK_EQ_INT(uidset_count(&u), 0);
	CHECK(!uidset_remove(&u, 0));
	uidset_add(&u, 0);
	CHECK_EQ_INT(uidset_count(&u), 0);

	/* the top of the UID space */
	uidset_add_range(&u, UINT32_MAX - 1, UINT32_MAX);
	uidset_add(&u, 1);
	CHECK_EQ_INT(uidset_count(&u), 3);
	CHECK(uidset_uid(&u, 3) == UINT32_MAX && uidset_seq(&u, UINT32_MAX) == 3);
	CHECK(uidset_rank(&u, UINT32_MAX) == 3 && uidset_max(&u) == UINT32_MAX);
	uidset_add_range(&u, 1, UINT32_MAX);
	CHECK(u.n == 1 && uidset_count(&u) == UINT32_MAX);
	CHECK(uidset_uid(&u, UINT32_MAX) == UINT32_MAX);
	CHECK(uidset_remove(&u, 1000));
	CHECK(uidset_count(&u) == UINT32_MAX - 1 && uidset_uid(&u, 1000) == 1001);

	uidset_clear(&u);
	CHECK(uidset_count(&u) == 0);
	uidset_free(&u);
	buf_free(&b);
}

/* Random operations checked against a bitmap. */
TEST(uidset_random_model)
{
	enum { MAX = 300 };
	bool model[MAX + 2];
	struct uidset u;
	uint32_t seed = 42;

	uidset_init(&u);
	memset(model, 0, sizeof(model));
	for (int op = 0; op < 3000; op++) {
		seed = seed * 1103515245 + 12345;
		uint32_t x = 1 + (seed >> 8) % MAX;
		seed = seed * 1103515245 + 12345;
		uint32_t y = 1 + (seed >> 8) % MAX;
		uint32_t lo = MIN(x, y), hi = MAX(x, y);
		if (hi - lo > 20)
			hi = lo + (hi - lo) % 20;
		switch ((seed >> 4) % 4) {
		case 0:
			uidset_add(&u, x);
			model[x] = true;
			break;
		case 1:
			CHECK(uidset_remove(&u, x) == model[x]);
			model[x] = false;
			break;
		case 2:
			uidset_add_range(&u, lo, hi);
			for (uint32_t i = lo; i <= hi; i++)
				model[i] = true;
			break;
		case 3: {
			uint32_t had = 0;
			for (uint32_t i = lo; i <= hi; i++) {
				had += model[i];
				model[i] = false;
			}
			CHECK_EQ_INT(uidset_remove_range(&u, lo, hi), had);
			break;
		}
		}
		if (op % 50 == 0)
			check_uidset_model(&u, model, MAX + 1);
	}
	check_uidset_model(&u, model, MAX + 1);
	uidset_free(&u);
}

/* A mailbox of 1M messages with a few holes costs a few ranges. */
TEST(uidset_large)
{
	struct uidset u = UIDSET_INIT;

	for (uint32_t uid = 1; uid <= 1000000; uid++)
		uidset_add(&u, uid);
	CHECK_EQ_INT(u.n, 1);
	for (uint32_t uid = 100000; uid <= 1000000; uid += 100000)
		CHECK(uidset_remove(&u, uid));
	CHECK_EQ_INT(u.n, 10);
	CHECK_EQ_INT(uidset_count(&u), 1000000 - 10);
	CHECK(uidset_uid(&u, 100000) == 100001 && uidset_seq(&u, 100001) == 100000);
	CHECK(uidset_uid(&u, 999990) == 999999 && uidset_seq(&u, 1000000) == 0);
	CHECK(uidset_rank(&u, 500000) == 499995 && uidset_rank(&u, 499999) == 499995);
	uint64_t sum = 0;
	for (uint32_t seq = 1; seq <= uidset_count(&u); seq += 997)
		sum += uidset_seq(&u, uidset_uid(&u, seq)) == seq;
	CHECK_EQ_INT(sum, (1000000 - 10 + 996) / 997);
	uidset_free(&u);
}
