/* mailbox.h - mailbox names for the IMAP commands: parsing and validation
 * of what clients send, the wire form of what the database holds, the
 * hierarchy order LIST uses, and LIST wildcard patterns.
 *
 * Names.  On the wire a name is modified UTF-7 (RFC 3501 5.1.3, lib/mutf7.h);
 * in the database and everywhere inside imapd it is UTF-8.  "/" is the
 * hierarchy delimiter.  INBOX is case-insensitive (RFC 3501 5.1): a first
 * component spelled "inbox" in any case is stored and compared as "INBOX",
 * so "InBoX/Sub" is the name "INBOX/Sub" (the rest stays case-sensitive).
 * A valid stored name is non-empty, at most max_mailbox_name octets of
 * UTF-8, has no empty component (no leading, trailing or doubled "/"), no
 * control character (C0, DEL, C1), and no "*" or "%" (a LIST pattern could
 * not name it without also matching others; Dovecot refuses them too).
 *
 * Every command taking a mailbox name (SELECT, EXAMINE, CREATE, DELETE,
 * RENAME, SUBSCRIBE, UNSUBSCRIBE, STATUS, APPEND, COPY, MOVE) should get it
 * through mailbox_arg(), so that all of them agree on what a name is and
 * answer a malformed one the same way.
 */
#ifndef IMAPD_MAILBOX_H
#define IMAPD_MAILBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imapd/imapd.h"

#define MAILBOX_SEP '/'

/* mailbox_name_parse() flags. */
enum {
	/* CREATE: one trailing "/" is allowed and dropped (RFC 3501 6.3.3:
	 * the client declares it will create names below). */
	MAILBOX_NAME_TRAILING_SEP = 1 << 0,
};

enum mailbox_name_result {
	MAILBOX_NAME_OK = 0,
	/* Not modified UTF-7: answer BAD *err. */
	MAILBOX_NAME_BAD = -1,
	/* Well-formed but not an acceptable name: answer NO *err (the text
	 * starts with a response code: [CANNOT] or [LIMIT]). */
	MAILBOX_NAME_NO = -2,
};

/* Turn a name as the client sent it into the stored UTF-8 form.  *out
 * points into arena a (NUL-terminated for convenience; the name itself
 * never holds a NUL).  On failure *err is the text for the tagged response,
 * in arena a or static. */
enum mailbox_name_result mailbox_name_parse(struct arena *a, struct str wire, size_t max_octets,
					    unsigned flags, struct str *out, const char **err);

/* The handler's way in: arg must be an astring naming a mailbox.  On
 * success *out is the stored form, in the command arena.  On failure the
 * tagged BAD or NO has been written (with the reason) and false is
 * returned: the handler returns CMD_DONE. */
bool mailbox_arg(struct cmd *c, const struct imap_arg *arg, unsigned flags, struct str *out);

/* Append a stored name in its wire form: modified UTF-7, written as an
 * atom when it can be, else quoted (imap_write_astring).  A stored name
 * that is not valid UTF-8 (never written by imapd) goes out as it is, as a
 * literal, rather than being silently altered. */
void mailbox_write_name(struct buf *out, struct str name);

/* The name is INBOX or below it ("INBOX/..."): its first five octets are
 * compared case-insensitively by the pattern matcher. */
bool mailbox_in_inbox_tree(struct str name);

/* Hierarchy order, for qsort() over struct str: INBOX and its subtree
 * first, then every name in octet order except that "/" sorts before
 * every other octet.  In this order a parent comes right before its
 * descendants, and a subtree is one contiguous run. */
int mailbox_cmp(const void *a, const void *b);

/* child is strictly below parent ("parent/..."). */
bool mailbox_is_below(struct str child, struct str parent);

/* ---- LIST wildcard patterns (RFC 3501 6.3.8) ----
 *
 * "*" matches any octets, "%" any octets but "/".  The matcher is an NFA
 * run as a bitset (one bit per pattern position), so the cost is
 * O(len(name) * len(pattern) / 64) whatever the wildcards: a pattern like
 * "*a*a*a*a*b" cannot make it backtrack exponentially and stall the
 * worker.  Runs of wildcards are merged first ("%*" is "*").  A pattern
 * with more than max_literal non-wildcard octets cannot match any name of
 * at most that length and is compiled to match nothing.
 *
 * The incremental interface lets LIST walk a sorted tree of names and feed
 * each octet once: the state after a parent's name is the starting point
 * for each of its children, and a dead state (no name with this prefix
 * can match) prunes the subtree. */
struct mailbox_pattern;

/* Compile a UTF-8 pattern (reference and mailbox argument already joined).
 * Allocated in a. */
struct mailbox_pattern *mailbox_pattern_new(struct arena *a, struct str pattern, size_t max_literal);
/* Whole-name match.  INBOX-tree names match their first component
 * case-insensitively. */
bool mailbox_pattern_match(const struct mailbox_pattern *p, struct str name);

/* State words needed by one match state. */
size_t mailbox_pattern_words(const struct mailbox_pattern *p);
/* The state before any octet. */
void mailbox_pattern_start(const struct mailbox_pattern *p, uint64_t *st);
/* Feed octets s[0..n), which sit at offset pos of the name; octets at
 * offsets below fold_below are compared ASCII-case-insensitively (5 for an
 * INBOX-tree name, else 0). */
void mailbox_pattern_feed(const struct mailbox_pattern *p, uint64_t *st, const char *s, size_t n,
			  size_t pos, size_t fold_below);
/* The octets fed so far match the whole pattern. */
bool mailbox_pattern_accepts(const struct mailbox_pattern *p, const uint64_t *st);
/* Some continuation of the octets fed so far could still match. */
bool mailbox_pattern_alive(const struct mailbox_pattern *p, const uint64_t *st);

/* ---- change notifications ---- */

/* After a committed change to a mailbox: publish its subject
 * `<prefix>.<tenant>.<mailbox>` on NATS (DESIGN.md invariant 4) so that
 * sessions watching it re-check.  The payload is "<highestmodseq> <kind>"
 * (kind: flags, append, expunge, change), or empty when the mailbox row
 * itself went away (DELETE): watchers then cannot compare modseqs and must
 * re-read the row.  Never blocks, never fails the caller. */
void mailbox_notify_kind(struct session *s, int64_t mailbox_id, uint64_t highestmodseq, const char *kind);
static inline void mailbox_notify(struct session *s, int64_t mailbox_id, uint64_t highestmodseq)
{
	mailbox_notify_kind(s, mailbox_id, highestmodseq, "change");
}

#endif
