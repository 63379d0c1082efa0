/* mailview.h - the selected mailbox as the client sees it: flags, message
 * sets, and bringing the view up to date with the database.
 *
 * Synchronisation: sel_sync() reads, in one statement (one snapshot,
 * DESIGN.md invariant 2), the mailbox's counters, the messages whose modseq
 * is above the session's known_modseq and the tombstones above it.  Flag
 * changes are told at once (untagged FETCH may come at any time); new and
 * expunged messages wait in pending_new / pending_expunge until
 * sel_announce() is called at a point where RFC 3501 7.4.1 allows it.
 */
#ifndef IMAPD_MAILVIEW_H
#define IMAPD_MAILVIEW_H

#include <libpq-fe.h>

#include "imapd/imapd.h"

/* System flags as stored in message.flags. */
enum {
	FLAG_SEEN = 1,
	FLAG_ANSWERED = 2,
	FLAG_FLAGGED = 4,
	FLAG_DELETED = 8,
	FLAG_DRAFT = 16,
};

/* "(\Seen \Answered ... kw1 kw2 \Recent)" */
void flags_write(struct buf *out, unsigned flags, const char *keywords, bool recent);
/* Parse flag arguments (atoms; a single parenthesised list is unwrapped by
 * the caller).  System flags go to *flags, keywords are appended to kw
 * space-separated (deduplicated, case-insensitively as RFC 3501 2.3.2 has
 * them).  \Recent is refused (it cannot be set by a client).  Returns 0 or
 * -1 with *err. */
int flags_parse(const struct imap_arg *a, size_t n, size_t max_keywords, unsigned *flags,
		struct buf *kw, const char **err);

/* A space-separated keyword list as a PostgreSQL text[] literal. */
void keywords_sql_array(const char *kw, struct buf *out);

/* UID ranges of a message set resolved against the view. */
struct uid_ranges {
	uint32_t *lo, *hi;
	size_t n;
	uint32_t count;
};
/* SQL: the messages of mailbox $2 of account $1 whose UIDs fall in the
 * ranges given as two bigint[] parameters, as a join the planner serves
 * with one index range scan per range (an EXISTS over unnest() per row
 * would scan the whole mailbox).  The lowest and highest UID as two more
 * plain parameters let the planner estimate the rows from the statistics
 * (it cannot see into the arrays), so a small batch of a large mailbox is
 * read by index, not by a sequential scan. */
#define UID_RANGES_JOIN(alias, lo, hi, min, max) \
	"unnest(" lo "::bigint[], " hi "::bigint[]) r(lo, hi) JOIN message " alias \
	" ON " alias ".account_id = $1 AND " alias ".mailbox_id = $2 AND " alias ".uid BETWEEN r.lo AND r.hi" \
	" AND " alias ".uid BETWEEN " min "::bigint AND " max "::bigint"

/* Resolve a sequence set (uid false) or UID set (uid true) argument.
 * Sequence numbers beyond the view are an error (BAD); UIDs not in the
 * view are ignored, as RFC 3501 6.4.8 says.  Returns 0 or -1 with *err. */
int sel_resolve(struct session *s, const struct imap_arg *arg, bool uid, struct arena *a,
		struct uid_ranges *out, const char **err);
/* The ranges as two PostgreSQL array literals "{1,5}" "{3,9}". */
void uid_ranges_sql(const struct uid_ranges *r, struct arena *a, char **lo, char **hi);
/* The lowest and highest UID of the ranges, as decimal strings. */
void uid_ranges_bounds(const struct uid_ranges *r, struct arena *a, char **min, char **max);

/* Enter SELECTED state with a fresh view; free it again. */
struct selected *sel_new(int64_t mailbox_id, const char *name, uint32_t uidvalidity, bool readonly);
void sel_free(struct selected **sel);

/* The delta statement: $1 account, $2 mailbox, $3 modseq, $4 limit.  One
 * statement, one snapshot: the counters and the changes above $3
 * (DESIGN.md invariant 2).  Messages and tombstones are each read in
 * modseq order through the (account_id, mailbox_id, modseq) indexes, at
 * most $4 of each: ORDER BY modseq LIMIT keeps the planner on those
 * indexes whatever it estimates (modseq statistics span every mailbox, so
 * "modseq > n" can look common in a mailbox where it is rare, and a plain
 * scan of the mailbox by UID would then grow with the mailbox, not with
 * the changes).  Row 0: 0, highestmodseq, uidnext, recent_uid, keywords,
 * vanished_floor and, when the floor is above $3 (tombstones the session
 * has not read were expired meanwhile), every hole of the mailbox; then 1,
 * uid, flags, modseq, keywords for messages and 2, uid, 0, modseq, '' for
 * tombstones, in UID order. */
#define SEL_DELTA_SQL \
	"SELECT 0::int AS kind, highestmodseq, uidnext, recent_uid, " \
	"       array_to_string(keywords, ' '), vanished_floor, " \
	"       CASE WHEN vanished_floor > $3 THEN mailbox_holes($1, $2) END " \
	"  FROM mailbox WHERE account_id = $1 AND id = $2 " \
	"UNION ALL " \
	"SELECT * FROM (" \
	" (SELECT 1, uid, flags, modseq, array_to_string(keywords, ' '), NULL::bigint, NULL::text " \
	"    FROM message WHERE account_id = $1 AND mailbox_id = $2 AND modseq > $3 " \
	"   ORDER BY modseq LIMIT $4) " \
	" UNION ALL " \
	" (SELECT 2, uid, 0, modseq, '', NULL::bigint, NULL::text " \
	"    FROM expunged WHERE account_id = $1 AND mailbox_id = $2 AND modseq > $3 " \
	"   ORDER BY modseq LIMIT $4)) d " \
	"ORDER BY 1, 2"
/* Apply a SEL_DELTA_SQL result read with the given limit to the session's
 * view (rows at or below its known_modseq are skipped, so a result read
 * from a lower modseq, shared by several sessions, is fine).  Flag changes
 * are written at once; new and expunged messages go to pending_*.  When a
 * branch hit the limit, only the modseqs below its last one are complete:
 * the view takes those, known_modseq stops there and the view stays dirty
 * for another round.  Returns -1 when the mailbox is gone, otherwise
 * SEL_DELTA_CLAIM when new messages should be claimed as \Recent
 * (sel_claim_recent) and SEL_DELTA_TRUNCATED when the read was cut. */
int sel_apply_delta(struct cmd *c, PGresult *res, uint32_t limit);
enum { SEL_DELTA_CLAIM = 1, SEL_DELTA_TRUNCATED = 2 };
/* Rows per branch of a delta read. */
#define SEL_DELTA_LIMIT 5000
/* Claim \Recent for the messages no session has seen yet, then done(c). */
void sel_claim_recent(struct cmd *c, void (*done)(struct cmd *c));
/* Bring the view up to date, then call done (on the loop thread, once,
 * unless the session closed meanwhile).  Uses c->pg. */
void sel_sync(struct cmd *c, void (*done)(struct cmd *c));
/* Tell the client what is pending: EXPUNGE lines (when allow_expunge) and
 * EXISTS/RECENT for new messages. */
void sel_announce(struct session *s, bool allow_expunge);
/* After this session's own write took modseq: when it is the next one
 * after known_modseq nothing was missed and known_modseq moves up;
 * otherwise another writer came in between, the view is marked dirty (the
 * next sel_complete() syncs) and the modseq is remembered as our own so the
 * sync does not report the change back. */
void sel_wrote(struct selected *sel, uint64_t modseq);
/* End a command: sync first if the view is dirty, tell what is pending
 * (expunges only when allow_expunge), and when expunges must stay pending
 * after MODSEQs were told, send OK [HIGHESTMODSEQ] below the lowest of
 * them (RFC 7162 3.2 and section 6) so a client that disconnects now does
 * not skip them.  Then reply(c) writes the tagged response (it does not
 * call cmd_done).  Returns CMD_DONE when all that happened at once (a
 * handler returns it, a callback calls cmd_done()), CMD_PENDING when a
 * sync runs first and will end the command itself.  Works in any state. */
enum cmd_result sel_complete(struct cmd *c, bool allow_expunge, void (*reply)(struct cmd *c));
/* The highest modseq this session may tell the client: known_modseq,
 * or just below the lowest expunge it has not been told yet. */
uint64_t sel_safe_modseq(const struct selected *sel);
/* An untagged FETCH for a change: "* seq FETCH (UID u FLAGS (...) MODSEQ
 * (m))".  UID and MODSEQ are there when the session is CONDSTORE-aware
 * (RFC 7162 3.2.4) or with_uid (UID commands); flags NULL leaves FLAGS
 * out. */
void sel_fetch_line(struct cmd *c, uint32_t seq, uint32_t uid, const char *flags, uint64_t modseq,
		    bool with_uid);
/* The same, appended to line instead of written. */
void sel_fetch_format(struct cmd *c, struct buf *line, uint32_t seq, uint32_t uid, const char *flags,
		      uint64_t modseq, bool with_uid);
/* "* VANISHED [(EARLIER) ]1:3,7" (RFC 7162 3.2.10); nothing for an empty set. */
void sel_write_vanished(struct session *s, const struct uidset *u, bool earlier);
/* A CONDSTORE enabling command (RFC 7162 3.1) ran: from now on every
 * untagged FETCH carries MODSEQ; the first one with a mailbox selected
 * tells its HIGHESTMODSEQ. */
void condstore_enable(struct cmd *c);
static inline bool sess_condstore(const struct session *s)
{
	return (s->enabled & EXT_CONDSTORE) != 0;
}
static inline bool sess_qresync(const struct session *s)
{
	return (s->enabled & EXT_QRESYNC) != 0;
}
/* Record a modseq this session wrote itself so a later sync does not
 * report the change back to it. */
void sel_own_modseq(struct selected *sel, uint64_t modseq);
bool sel_is_own(const struct selected *sel, uint64_t modseq);
/* Whether uid is \Recent in this session. */
bool sel_recent(const struct selected *sel, uint32_t uid);
/* How many messages of the view are \Recent here. */
uint32_t sel_recent_count(const struct selected *sel);

/* Call fn for each range of a mailbox_holes() string ("3,5:9,12"). */
void holes_each(const char *holes, void (*fn)(void *arg, uint32_t lo, uint32_t hi), void *arg);

/* Read the UIDs in lo..hi that vanished from the selected mailbox after
 * modseq `from` (and at or before `to`, 0: no bound): the tombstones above
 * it, in modseq-ordered batches; or, when `from` is below the mailbox's
 * vanished floor, every hole (tombstones and expired ranges), and
 * below_floor is set.  UIDs go to out (a uidset the caller owns); then
 * done(c, vr, err).  vr lives in the command arena. */
struct vanish_read {
	struct cmd *c;
	uint64_t from, to;
	uint32_t lo, hi;
	uint32_t batch;		/* 0: SEL_DELTA_LIMIT */
	struct uidset *out;
	bool below_floor;
	void (*done)(struct cmd *c, struct vanish_read *vr, const char *err);
	void *arg;		/* the caller's */
	uint64_t after_modseq;	/* internal */
	uint32_t after_uid;
};
void sel_read_vanished(struct vanish_read *vr);
/* Write "* VANISHED (EARLIER)" (RFC 7162 3.2.10.1) for the UIDs in got that
 * are in `only` (a resolved set; NULL: all) and above `above`, leaving out
 * UIDs still in the view: those are expunges the session has not told
 * yet, which come as VANISHED without EARLIER when allowed.  Frees got. */
void sel_vanished_earlier(struct session *s, struct uidset *got, const struct seqset *only, uint32_t above);

/* cmd_expunge.c: expunge \Deleted messages (all, or those in ranges);
 * silent drops them from the view without untagged EXPUNGE (CLOSE). */
void expunge_run(struct cmd *c, const struct uid_ranges *ranges, bool silent, void (*then)(struct cmd *c));
/* cmd_noop.c: the end of NOOP and CHECK after a sync. */
void noop_synced(struct cmd *c);

/* Helpers for text-format results. */
uint64_t pg_u64(const PGresult *r, int row, int col);

#endif
