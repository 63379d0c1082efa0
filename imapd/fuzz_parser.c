/* fuzz_parser.c - libFuzzer target for the IMAP command parser and
 * sequence sets (make fuzz).
 *
 * Input: 6 header octets, then the client's byte stream.
 *   [0] max_line = 4 + 2 * v     [1] max_literal = 4 * v
 *   [2] max_nesting = v % 8      [3] max_args = 1 + v % 48
 *   [4] literal hook: none, buffer, stream, reject, or by size
 *   [5] seed for the split sizes
 * The stream is parsed twice, fed whole and in pseudo-random splits, and
 * the two event traces (results, their offsets, commands, errors, streamed
 * bytes) must be identical.  Every result is checked for well-formedness
 * and the parser's memory for its bounds.  Atoms of parsed commands are
 * tried as sequence sets, and the tail of the input drives a uidset
 * against a bitmap model.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imapd/parser.h"
#include "imapd/seqset.h"
#include "lib/arena.h"
#include "lib/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(x) do { if (!(x)) { fprintf(stderr, "invariant failed: %s (%s:%d)\n", \
	#x, __FILE__, __LINE__); abort(); } } while (0)

struct hookctx {
	int mode;
};

static enum imap_literal_mode fuzz_hook(void *ctx, const struct imap_command *sofar,
		uint64_t size, bool nonsync)
{
	const struct hookctx *h = ctx;

	REQUIRE(sofar->tag.len > 0 && sofar->nargs > 0);
	REQUIRE(sofar->args[0].type == IMAP_ARG_ATOM);
	switch (h->mode) {
	case 1:
		return IMAP_LITERAL_BUFFER;
	case 2:
		return IMAP_LITERAL_STREAM;
	case 3:
		return IMAP_LITERAL_REJECT;
	default:
		return (enum imap_literal_mode)((size + sofar->nargs + nonsync) % 3);
	}
}

struct walk {
	const struct imap_parser_limits *lim;
	size_t nargs;
	size_t literal_total;
	uint64_t streamed_total;
};

static void check_seqset(struct str s)
{
	struct arena a;
	struct seqset set, again;
	struct buf b = BUF_INIT;

	arena_init(&a, 512);
	if (seqset_parse(s, 64, &a, &set, NULL) == 0) {
		REQUIRE(set.n > 0 && set.n <= 64);
		/* written back, it parses to the same ranges */
		seqset_write(&b, &set);
		REQUIRE(seqset_parse(buf_str(&b), 64, &a, &again, NULL) == 0);
		REQUIRE(again.n == set.n && memcmp(again.r, set.r, set.n * sizeof(*set.r)) == 0);
		uint32_t star = s.len > 0 ? (uint32_t)(unsigned char)s.p[0] * 3 : 0;
		seqset_resolve(&set, star);
		for (size_t i = 0; i < set.n; i++) {
			REQUIRE(set.r[i].lo >= 1 && set.r[i].lo <= set.r[i].hi);
			if (i > 0)
				REQUIRE((uint64_t)set.r[i - 1].hi + 1 < set.r[i].lo);
			REQUIRE(seqset_contains(&set, set.r[i].lo) && seqset_contains(&set, set.r[i].hi));
			REQUIRE(!seqset_contains(&set, set.r[i].lo - 1));
		}
		struct seqset_iter it;
		uint32_t n, prev = 0, k = 0;
		seqset_iter_init(&it, &set);
		while (k < 1000 && seqset_iter_next(&it, &n)) {
			REQUIRE(n > prev || k == 0);
			prev = n;
			k++;
		}
	}
	buf_free(&b);
	arena_free(&a);
}

static void walk_arg(struct walk *w, const struct imap_arg *a, size_t depth)
{
	w->nargs++;
	switch (a->type) {
	case IMAP_ARG_ATOM:
		REQUIRE(a->str.len > 0 && a->str.p[a->str.len] == '\0');
		REQUIRE(memchr(a->str.p, ' ', a->str.len) == NULL || memchr(a->str.p, '[', a->str.len) != NULL);
		REQUIRE(memchr(a->str.p, '\n', a->str.len) == NULL && memchr(a->str.p, '\r', a->str.len) == NULL);
		check_seqset(a->str);
		break;
	case IMAP_ARG_STRING:
		REQUIRE(a->str.p[a->str.len] == '\0');
		REQUIRE(memchr(a->str.p, '\n', a->str.len) == NULL && memchr(a->str.p, '\0', a->str.len) == NULL);
		break;
	case IMAP_ARG_LITERAL:
		if (a->streamed) {
			REQUIRE(a->str.len == 0);
			w->streamed_total += a->literal_size;
		} else {
			REQUIRE(a->str.len == a->literal_size && a->str.p[a->str.len] == '\0');
			w->literal_total += a->str.len;
		}
		break;
	case IMAP_ARG_LIST:
		REQUIRE(depth < w->lim->max_nesting);
		REQUIRE(a->str.len == 0 && (a->nlist == 0) == (a->list == NULL));
		for (size_t i = 0; i < a->nlist; i++)
			walk_arg(w, &a->list[i], depth + 1);
		break;
	default:
		REQUIRE(!"bad arg type");
	}
}

struct run {
	struct arena arena;
	struct imap_parser p;
	struct hookctx hook;
	struct buf trace;
	uint64_t data_bytes;	/* streamed octets of the current command */
	uint64_t data_hash;
	bool dead;
	size_t off;
};

static void trace_data(struct run *r)
{
	if (r->data_bytes > 0)
		buf_printf(&r->trace, "D%llu/%llx;", (unsigned long long)r->data_bytes,
			(unsigned long long)r->data_hash);
}

static void run_feed(struct run *r, const struct imap_parser_limits *lim, const char *s, size_t n)
{
	while (n > 0 && !r->dead) {
		size_t used = (size_t)-1;
		enum imap_parse_result res = imap_parser_feed(&r->p, s, n, &used);
		REQUIRE(used <= n);
		if (res == IMAP_PARSE_MORE)
			REQUIRE(used == n);
		else if (res != IMAP_PARSE_FATAL)
			REQUIRE(used > 0);
		r->off += used;

		/* Memory stays within the limits, whatever was fed. */
		REQUIRE(r->p.tok.len <= lim->max_line);
		REQUIRE(r->p.tok.cap <= 2 * lim->max_line + 128);
		REQUIRE(r->p.capstack <= lim->max_args && r->p.caplevels <= lim->max_nesting);
		REQUIRE(r->arena.used <= 48 * (lim->max_line + 1) + lim->max_literal +
			4 * lim->max_args * (sizeof(struct imap_arg) + 16) + 4096);

		const struct imap_command *c = &r->p.cmd;
		if (res == IMAP_PARSE_LITERAL_DATA) {
			REQUIRE(r->p.chunk.len > 0 && r->p.chunk.p >= s &&
				r->p.chunk.p + r->p.chunk.len <= s + used);
			for (size_t i = 0; i < r->p.chunk.len; i++)
				r->data_hash = (r->data_hash ^ (unsigned char)r->p.chunk.p[i]) * 1099511628211ull;
			r->data_bytes += r->p.chunk.len;
		} else if (res != IMAP_PARSE_MORE) {
			trace_data(r);
			buf_printf(&r->trace, "%d@%zu %.*s", (int)res, r->off, STR_FMT(c->tag));
			if (res != IMAP_PARSE_CONTINUE && res != IMAP_PARSE_DONE) {
				REQUIRE(r->p.error != NULL);
				buf_printf(&r->trace, " %s", r->p.error);
			}
			REQUIRE(c->tag.p != NULL && c->tag.p[c->tag.len] == '\0');
			for (size_t i = 0; i < c->tag.len; i++) {
				unsigned char ch = (unsigned char)c->tag.p[i];
				REQUIRE(ch > 0x20 && ch < 0x7f && ch != '+' && ch != '{');
			}
			if (res == IMAP_PARSE_DONE || res == IMAP_PARSE_ERROR ||
			    res == IMAP_PARSE_LITERAL_TOOBIG || res == IMAP_PARSE_FATAL) {
				struct walk w = { lim, 0, 0, 0 };
				for (size_t i = 0; i < c->nargs; i++)
					walk_arg(&w, &c->args[i], 0);
				REQUIRE(w.nargs <= lim->max_args && w.literal_total <= lim->max_literal);
				buf_printf(&r->trace, " n%zu", c->nargs);
				if (res == IMAP_PARSE_DONE) {
					REQUIRE(c->tag.len > 0 && c->nargs > 0);
					REQUIRE(c->args[0].type == IMAP_ARG_ATOM);
					REQUIRE(w.streamed_total == r->data_bytes);
					for (size_t i = 0; i < c->nargs; i++) {
						const struct imap_arg *a = &c->args[i];
						buf_printf(&r->trace, " %d:%zu:%zu", (int)a->type, a->str.len, a->nlist);
					}
				}
				r->data_bytes = 0;
				r->data_hash = 0;
			}
			buf_puts(&r->trace, ";");
			if (res == IMAP_PARSE_FATAL) {
				size_t again;
				REQUIRE(imap_parser_feed(&r->p, s, n, &again) == IMAP_PARSE_FATAL && again == 0);
				r->dead = true;
			} else if (res != IMAP_PARSE_CONTINUE) {
				imap_parser_reset(&r->p);
				arena_reset(&r->arena);
			}
		}
		s += used;
		n -= used;
	}
}

static void run_init(struct run *r, const struct imap_parser_limits *lim, int hookmode)
{
	memset(r, 0, sizeof(*r));
	arena_init(&r->arena, 1024);
	imap_parser_init(&r->p, lim, &r->arena);
	r->hook.mode = hookmode;
	if (hookmode > 0)
		imap_parser_set_literal_hook(&r->p, fuzz_hook, &r->hook);
}

static void run_free(struct run *r)
{
	imap_parser_free(&r->p);
	arena_free(&r->arena);
	buf_free(&r->trace);
}

/* Byte pairs from the input drive a uidset over 1..255 against a bitmap. */
static void fuzz_uidset(const uint8_t *d, size_t n)
{
	struct uidset u = UIDSET_INIT;
	bool model[257] = { false };

	for (size_t i = 0; i + 1 < n && i < 400; i += 2) {
		uint32_t x = d[i] ? d[i] : 1, y = d[i + 1] ? d[i + 1] : 1;
		uint32_t lo = MIN(x, y), hi = MAX(x, y);
		switch (d[i + 1] & 3) {
		case 0:
			uidset_add(&u, x);
			model[x] = true;
			break;
		case 1:
			REQUIRE(uidset_remove(&u, x) == model[x]);
			model[x] = false;
			break;
		case 2:
			uidset_add_range(&u, lo, hi);
			for (uint32_t k = lo; k <= hi; k++)
				model[k] = true;
			break;
		default: {
			uint32_t had = 0;
			for (uint32_t k = lo; k <= hi; k++) {
				had += model[k];
				model[k] = false;
			}
			REQUIRE(uidset_remove_range(&u, lo, hi) == had);
			break;
		}
		}
	}
	uint32_t count = 0;
	for (uint32_t k = 1; k <= 256; k++) {
		REQUIRE(uidset_contains(&u, k) == model[k]);
		if (model[k]) {
			count++;
			REQUIRE(uidset_seq(&u, k) == count && uidset_uid(&u, count) == k);
		}
		REQUIRE(uidset_rank(&u, k) == count);
	}
	REQUIRE(uidset_count(&u) == count);
	for (size_t i = 1; i < u.n; i++)
		REQUIRE((uint64_t)u.r[i - 1].hi + 1 < u.r[i].lo);
	uidset_free(&u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 6)
		return 0;
	struct imap_parser_limits lim = {
		.max_line = 4 + 2 * (size_t)data[0],
		.max_literal = 4 * (size_t)data[1],
		.max_nesting = data[2] % 8,
		.max_args = 1 + data[3] % 48,
	};
	int hookmode = data[4] % 5;
	uint32_t seed = data[5] * 2654435761u + 1;
	const char *in = (const char *)data + 6;
	size_t len = size - 6;

	struct run whole, split;
	run_init(&whole, &lim, hookmode);
	run_feed(&whole, &lim, in, len);
	trace_data(&whole);

	run_init(&split, &lim, hookmode);
	size_t off = 0;
	while (off < len) {
		seed = seed * 1103515245u + 12345u;
		size_t n = 1 + (seed >> 16) % (seed & 0x100 ? 3 : 64);
		if (n > len - off)
			n = len - off;
		/* feed from a private copy so chunk pointers are checked
		 * against exactly what was fed */
		char *copy = malloc(n);
		memcpy(copy, in + off, n);
		run_feed(&split, &lim, copy, n);
		free(copy);
		off += n;
	}
	trace_data(&split);

	if (whole.trace.len != split.trace.len ||
	    memcmp(buf_ptr(&whole.trace), buf_ptr(&split.trace), whole.trace.len) != 0) {
		fprintf(stderr, "whole: %s\nsplit: %s\n", buf_ptr(&whole.trace), buf_ptr(&split.trace));
		abort();
	}
	run_free(&whole);
	run_free(&split);

	fuzz_uidset(data + 6, len);
	return 0;
}
