/* seqset.h - IMAP sequence sets and compact UID lists.
 *
 * struct seqset is a sequence-set as the client wrote it (RFC 3501 /
 * RFC 9051 section 9):  1,3:5,7:*  or  *  or  5:3 (the same as 3:5).
 * In the parsed form 0 stands for "*"; seqset_resolve() replaces it with
 * a concrete number and sorts and merges the ranges.  The "$" of SEARCHRES
 * (RFC 5182) is not a sequence-set here: callers check for it first.
 *
 * struct uidset is a heap-owned, growable list of UIDs kept as sorted,
 * disjoint, non-adjacent ranges with a cumulative count per range, so a
 * mailbox of 1M messages with few holes costs a few ranges, and
 * sequence number <-> UID lookups are O(log ranges).
 */
#ifndef IMAPD_SEQSET_H
#define IMAPD_SEQSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/arena.h"
#include "lib/buf.h"
#include "lib/util.h"

struct seq_range {
	uint32_t lo, hi;	/* inclusive; 0 = "*" before resolving */
};

struct seqset {
	struct seq_range *r;
	size_t n;
};

/* Parse a sequence-set from s into ranges allocated in `a`.
 *   seq-number = nz-number / "*"; seq-range = seq-number ":" seq-number
 * Numbers are 1..2^32-1 without leading zeros (nz-number).  A range with
 * two numbers is stored low:high; with one "*" it is stored n:0 whichever
 * side the "*" was on; "*" and "*:*" are 0:0.  Rejects empty input, empty
 * elements, trailing commas, 0, overflow, and more than max_ranges
 * elements.  Returns 0, or -1 with *error (if error is not NULL) set to a
 * short static string; *out is untouched on error. */
int seqset_parse(struct str s, size_t max_ranges, struct arena *a, struct seqset *out,
		const char **error);

/* Whether any range uses "*" (before resolving). */
bool seqset_has_star(const struct seqset *set);

/* Turn "*" into star (the highest sequence number or UID in use, 0 for an
 * empty mailbox), order each range low:high, then sort and merge ranges
 * that overlap or touch, in place.  Per RFC 9051, n:* with n > star means
 * star:n, so "3291:*" includes the last UID.  With star 0, "*" alone
 * resolves to nothing and n:* to 1:n.  Numbers above star are kept: the
 * caller decides whether they are an error (sequence numbers) or ignored
 * (UIDs). */
void seqset_resolve(struct seqset *set, uint32_t star);

/* On a resolved set: */
bool seqset_contains(const struct seqset *set, uint32_t n);	/* O(log ranges) */
uint64_t seqset_count(const struct seqset *set);
uint32_t seqset_max(const struct seqset *set);			/* 0 if empty */

/* Iterate the numbers of a resolved set in ascending order:
 *   struct seqset_iter it; uint32_t n;
 *   seqset_iter_init(&it, &set);
 *   while (seqset_iter_next(&it, &n)) ...
 */
struct seqset_iter {
	const struct seqset *set;
	size_t i;
	uint64_t next;		/* 64 bits: hi may be 2^32-1 */
};
void seqset_iter_init(struct seqset_iter *it, const struct seqset *set);
bool seqset_iter_next(struct seqset_iter *it, uint32_t *out);

/* Append the ranges as written ("1:3,5"; 0 as "*"), in their order.  A
 * resolved set comes out compact.  Nothing is written for an empty set. */
void seqset_write(struct buf *out, const struct seqset *set);
/* Append v[0..n) compactly, folding runs of consecutive ascending numbers
 * into ranges and keeping the order otherwise: {1,2,3,5,9,8} gives
 * "1:3,5,9,8" (COPYUID keeps source and destination in step this way). */
void seqset_write_array(struct buf *out, const uint32_t *v, size_t n);

/* --- UID lists --- */

struct uidset {
	struct seq_range *r;	/* sorted, disjoint, not adjacent; no 0 */
	uint32_t *cum;		/* cum[i] = number of UIDs in r[0..i) */
	size_t n, cap;
};

#define UIDSET_INIT { NULL, NULL, 0, 0 }

void uidset_init(struct uidset *u);
/* Release storage; the set is empty and reusable afterwards. */
void uidset_free(struct uidset *u);
void uidset_clear(struct uidset *u);

/* Adding is O(1) amortised when the UIDs are above every UID in the set
 * (new mail); otherwise, and for removal, O(ranges) for the shift.  UID 0
 * is ignored; add_range with lo > hi swaps them. */
void uidset_add(struct uidset *u, uint32_t uid);
void uidset_add_range(struct uidset *u, uint32_t lo, uint32_t hi);
/* Returns whether uid was present. */
bool uidset_remove(struct uidset *u, uint32_t uid);
/* Remove every UID in lo..hi; returns how many were present. */
uint32_t uidset_remove_range(struct uidset *u, uint32_t lo, uint32_t hi);

uint32_t uidset_count(const struct uidset *u);
uint32_t uidset_max(const struct uidset *u);			/* 0 if empty */
bool uidset_contains(const struct uidset *u, uint32_t uid);
/* Sequence number seq (1-based) -> UID; 0 if seq is 0 or > count. */
uint32_t uidset_uid(const struct uidset *u, uint32_t seq);
/* UID -> sequence number; 0 if uid is not in the set. */
uint32_t uidset_seq(const struct uidset *u, uint32_t uid);
/* How many UIDs in the set are <= uid.  The UIDs in lo..hi have sequence
 * numbers rank(lo - 1) + 1 .. rank(hi). */
uint32_t uidset_rank(const struct uidset *u, uint32_t uid);
/* A read-only view as a resolved seqset (valid until the next change),
 * for seqset_contains/iteration/seqset_write. */
struct seqset uidset_view(const struct uidset *u);

#endif
