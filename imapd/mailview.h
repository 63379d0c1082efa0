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

/* Bring the view up to date, then call done (on the loop thread, once,
 * unless the session closed meanwhile).  Uses c->pg. */
void sel_sync(struct cmd *c, void (*done)(struct cmd *c));
/* Tell the client what is pending: EXPUNGE lines (when allow_expunge) and
 * EXISTS/RECENT for new messages. */
void sel_announce(struct session *s, bool allow_expunge);
/* Record a modseq this session wrote itself so a later sync does not
 * report the change back to it. */
void sel_own_modseq(struct selected *sel, uint64_t modseq);
bool sel_is_own(const struct selected *sel, uint64_t modseq);
/* Whether uid is \Recent in this session. */
bool sel_recent(const struct selected *sel, uint32_t uid);
/* How many messages of the view are \Recent here. */
uint32_t sel_recent_count(const struct selected *sel);

/* cmd_expunge.c: expunge \Deleted messages (all, or those in ranges);
 * silent drops them from the view without untagged EXPUNGE (CLOSE). */
void expunge_run(struct cmd *c, const struct uid_ranges *ranges, bool silent, void (*then)(struct cmd *c));
/* cmd_noop.c: the end of NOOP and CHECK after a sync. */
void noop_synced(struct cmd *c);

/* Helpers for text-format results. */
uint64_t pg_u64(const PGresult *r, int row, int col);

#endif
