/* search.h - SEARCH keys (RFC 3501 6.4.4 and 9, RFC 9051 6.4.4): parse
 * them into a tree, decide them for one message, and turn what the database
 * can decide into a SQL condition.
 *
 * The tree is the truth: search_match() decides a message from its row
 * (flags, keywords, dates, size) and, for the text keys only, its bytes.
 * search_sql() gives a condition that holds for EVERY message the query
 * matches and usually for few more, so the caller reads only candidates and
 * reads message bytes only when a text key needs them.
 *
 * Ownership: everything search_parse() builds lives in the arena it is
 * given (the command arena).  A struct search_scratch holds heap buffers
 * and its own arena, reused from message to message; free it with
 * search_scratch_free().
 *
 * Semantics chosen here (RFC 3501 leaves them open or we narrow them):
 *  - Strings match as substrings after simple case folding: ASCII, Latin-1,
 *    Latin Extended-A, Greek and Cyrillic letters (search_fold()).  No
 *    normalisation (i;unicode-casemap would also decompose).
 *  - FROM/TO/CC/BCC/SUBJECT are HEADER with that field name: the decoded
 *    (RFC 2047) values of every occurrence of the field.  An empty string
 *    matches the messages that have the field (RFC 9051 6.4.4).
 *  - BODY searches the decoded text of the text/ * parts; TEXT searches the
 *    raw header block, the decoded Subject/From/To/Cc/Bcc and the body text.
 *  - BEFORE/ON/SINCE compare the UTC date of the internal date;
 *    SENTBEFORE/SENTON/SENTSINCE the UTC date of the Date: header (the
 *    database keeps the instant, not the sender's zone), and never match a
 *    message whose Date: is missing or unparsable.
 *  - NEW is RECENT UNSEEN, OLD is NOT RECENT.
 *  - CHARSET: UTF-8 and US-ASCII (search strings are taken as UTF-8 either
 *    way, and without CHARSET too); any other is SEARCH_BADCHARSET.
 *  - Sequence sets and UID sets are resolved once, at parse time, into UID
 *    ranges of the client's view, by the caller's resolver.
 *  - MODSEQ [entry-name entry-type] n (RFC 7162 3.1.5): there is one
 *    modseq per message, so the entry name and type are checked for syntax
 *    and otherwise ignored, as the RFC requires of such servers.
 */
#ifndef IMAPD_SEARCH_H
#define IMAPD_SEARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imapd/mailview.h"
#include "imapd/parser.h"
#include "lib/arena.h"
#include "lib/buf.h"
#include "lib/util.h"

enum search_op {
	SK_AND,		/* kids: all of them (also the top-level key list) */
	SK_OR,		/* kids: any of them (OR chains are flattened) */
	SK_NOT,		/* kids[0] */
	SK_ALL,
	SK_FLAG,	/* flag (FLAG_*) set (set) or clear (!set) */
	SK_KEYWORD,	/* str: lower-case keyword; never: cannot be a keyword */
	SK_RECENT,
	SK_UIDS,	/* ranges (a sequence set or UID set, resolved) */
	SK_BEFORE,	/* num: a day (days since 1970-01-01) */
	SK_ON,
	SK_SINCE,
	SK_SENTBEFORE,
	SK_SENTON,
	SK_SENTSINCE,
	SK_LARGER,	/* num: octets */
	SK_SMALLER,
	SK_HEADER,	/* field, str: folded needle */
	SK_BODY,	/* str */
	SK_TEXT,	/* str */
	SK_MODSEQ,	/* num: modseq at least this (RFC 7162 3.1.5) */
};

struct search_key {
	enum search_op op;
	unsigned depth;		/* 1 for a leaf */
	unsigned cost;		/* 0 row only, 1 header, 2 body: AND/OR try cheap kids first */
	unsigned flag;
	bool set;
	bool never;
	int64_t num;
	struct str str;
	const char *field;	/* NUL-terminated */
	struct uid_ranges ranges;
	struct search_key **kids;
	size_t nkids, capkids;
};

struct search_query {
	struct search_key *root;
	bool need_data;		/* some key needs the message bytes */
	bool need_sent;		/* some key needs blob.sent_date */
	bool has_modseq;	/* a MODSEQ key: the result carries (MODSEQ n), RFC 7162 3.1.6 */
	bool has_seqnums;	/* a key uses sequence numbers (RFC 7162 3.2.10.2) */
	/* Every match lies in uid_lo..uid_hi (top-level sets; 1..UINT32_MAX
	 * otherwise).  uid_lo > uid_hi: nothing can match. */
	uint32_t uid_lo, uid_hi;
	size_t nkeys;
};

struct search_limits {
	size_t max_depth;	/* depth of the key tree after flattening (max_nesting) */
	size_t max_keys;	/* keys and operators (max_args) */
};

/* Resolve a sequence set (uid false) or UID set (uid true) argument into
 * sorted UID ranges of the client's view; sel_resolve() in imapd. */
typedef int (*search_resolve_fn)(void *ctx, const struct imap_arg *arg, bool uid, struct arena *a,
				 struct uid_ranges *out, const char **err);

enum { SEARCH_BAD = -1, SEARCH_BADCHARSET = -2 };

/* Parse the arguments of SEARCH (after the command name):
 *   [CHARSET astring] 1*search-key
 * Returns 0, SEARCH_BAD with *err a short static reason (answer BAD), or
 * SEARCH_BADCHARSET (answer NO [BADCHARSET (UTF-8 US-ASCII)]).  Nesting is
 * parsed without recursion; the depth of the flattened tree is bounded by
 * lim->max_depth, so search_match() and search_sql() recurse at most that
 * deep. */
int search_parse(const struct imap_arg *args, size_t n, const struct search_limits *lim,
		 search_resolve_fn resolve, void *ctx, struct arena *a, struct search_query *q,
		 const char **err);

/* One message as search_match() sees it. */
struct search_msg {
	uint32_t uid;
	unsigned flags;		/* FLAG_* */
	struct str keywords;	/* space-separated */
	int64_t internaldate;	/* seconds since the epoch */
	int64_t sent_date;	/* seconds since the epoch, INT64_MIN if none */
	uint64_t size;
	uint64_t modseq;
	bool recent;
	/* The bytes and their part table (lib/mime.h); needed only when
	 * query->need_data (data NULL then never matches a text key). */
	const char *data;
	size_t len;
	const char *parts;
	size_t parts_len;
};

struct search_header_cache;

/* Per-message working memory of search_match(), reused across messages. */
struct search_scratch {
	struct arena arena;	/* reset per message */
	struct buf tmp;		/* decoder output before folding */
	struct buf body;	/* folded body text */
	struct buf block;	/* folded raw header block */
	bool have_body, have_block;
	struct search_header_cache *headers;	/* folded decoded fields, in arena */
};

void search_scratch_init(struct search_scratch *sc);
void search_scratch_free(struct search_scratch *sc);

bool search_match(const struct search_query *q, const struct search_msg *m, struct search_scratch *sc);

/* The SQL condition over "message m" (and "blob b" when q->need_sent),
 * appended to sql.  It holds for every message q matches.  Values go to
 * params as text; the first is $first_param.  recent: the session's \Recent
 * UIDs as ranges.  Returns whether the condition is exact (matches exactly
 * what search_match() would). */
struct search_params {
	const char **v;
	size_t n, cap;
	int first;
};
bool search_sql(const struct search_query *q, const struct uid_ranges *recent, struct arena *a,
		struct buf *sql, struct search_params *params);

/* Simple case folding of UTF-8 text (see above), appended to out; bytes
 * that are not UTF-8 are copied as they are. */
void search_fold(const char *p, size_t n, struct buf *out);
/* "1-Feb-1994" -> days since 1970-01-01; INT64_MIN if invalid. */
int64_t search_date(struct str s);

#endif
