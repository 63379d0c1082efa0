/* mime.h - the project's MIME parser (RFC 5322, 2045-2047, 2231; IMAP
 * views per RFC 3501 7.4.2 and 6.4.5).
 *
 * A message is parsed ONCE, when it is stored (APPEND, LMTP).  mime_parse()
 * renders the FETCH ENVELOPE / BODYSTRUCTURE / BODY answers and a compact
 * part table; the store keeps them next to the bytes (blob.envelope,
 * .bodystructure, .body: text; blob.parts: bytea).  FETCH BODY[section]
 * and SEARCH then work from the bytes plus the part table, without parsing
 * the message again.
 *
 * The parser never fails: hostile or broken mail degrades the way Dovecot
 * degrades it (see "Behaviour" below), in time linear in the message size
 * (times at most max_depth for lines that start with "--").
 *
 * Part table (blob.parts), all integers little-endian:
 *
 *   offset size
 *   0      2    magic "MP"
 *   2      1    version (1)
 *   3      1    reserved, 0
 *   4      4    u32 count: number of records (>= 1)
 *   8      32*count records, in document order (pre-order), record 0 is
 *               the message itself:
 *     +0   8    u64 hdr_off   first byte of the part's header (the MIME
 *                             header of a body part, or the RFC 5322 header
 *                             of a message)
 *     +8   8    u64 body_off  first byte of the body (= end of the header
 *                             block, which includes its blank line)
 *     +16  8    u64 body_end  end of the body (exclusive)
 *     +24  4    u32 subtree   number of descendants; the first child of
 *                             record i is i+1, the next sibling of child c
 *                             is c+1+subtree(c)
 *     +28  1    kind          0 leaf, 1 multipart (children = its parts),
 *                             2 message/rfc822 (one child: the
 *                             encapsulated message, whose hdr_off is this
 *                             record's body_off)
 *     +29  1    flags         MIME_PF_TEXT, MIME_PF_MESSAGE, MIME_PF_DEGRADED
 *     +30  1    encoding      MIME_ENC_*
 *     +31  1    reserved, 0
 *
 * Behaviour where real servers differ (chosen to match Dovecot unless noted):
 *  - Media type, subtype, parameter names and values and the transfer
 *    encoding are returned as written in the message (Dovecot; Cyrus
 *    upper-cases).  Defaults the server supplies are upper-case as in RFC
 *    3501's examples: no or invalid Content-Type gives "TEXT" "PLAIN"
 *    ("CHARSET" "US-ASCII") (RFC 2045 5.2), a text/ * type without charset
 *    gets "CHARSET" "US-ASCII" appended (Dovecot does the same in lower
 *    case), a missing or invalid Content-Transfer-Encoding is "7BIT", and a
 *    part without Content-Type inside multipart/digest is "MESSAGE"
 *    "RFC822" (RFC 2046 5.1.5).
 *  - RFC 2231: continuations are joined (Dovecot's rfc2231-parser).  When
 *    any segment is extended (name*0*=utf-8''...), the result is ONE
 *    parameter "name*" whose value stays in RFC 2231 form
 *    ("utf-8''%E2%82%AC.txt"; plain segments get "%" escaped as %25), so no
 *    information is lost and clients decode it as they do today; without
 *    extended segments it is "name" with the plain joined value.  Segments
 *    with gaps are returned unjoined.  Joined parameters come after the
 *    plain ones, sorted by name.
 *  - Addresses (RFC 3501 9: addr-name and addr-mailbox have RFC 5322
 *    quoting removed; addr-host NIL means group syntax, so it is never NIL
 *    for a mailbox): a mailbox without domain gets host "MISSING_DOMAIN",
 *    a phrase without address or "<>" gets mailbox "MISSING_MAILBOX"
 *    (Dovecot's FILL_MISSING).  "user@host (Real Name)" takes the comment as
 *    name.  Phrase words are joined by one space.  An unterminated "<", quote,
 *    comment or group is closed at the end of the field.  Encoded-words are
 *    NOT decoded (RFC 3501 returns them raw).
 *  - Envelope and Content-* fields: the first occurrence counts (Cyrus;
 *    Dovecot takes the last for envelope fields).  Values are unfolded
 *    (CR and LF dropped, the WSP kept), leading white space skipped.  Sender
 *    and Reply-To absent or without any address are the From value.
 *  - Strings are quoted with \-escapes, or sent as literals {N}\r\n... when
 *    they hold 8-bit data or are longer than 1024 octets.  Because the
 *    results are stored in PostgreSQL text columns, every string is made
 *    valid UTF-8 without NUL: NUL and bytes that are not UTF-8 become U+FFFD
 *    (Dovecot replaces NUL the same way); CR and LF are dropped.  The
 *    envelope, bodystructure and body strings therefore contain no NUL.
 *  - Sizes are octets of the stored bytes and lines count LF characters of
 *    the body, so they match what BODY[section] returns for the same bytes.
 *    (Dovecot counts CRLF-converted sizes; store CRLF mail to avoid any
 *    difference.)  The CRLF before a boundary belongs to the boundary.
 *  - Boundaries (Dovecot's message-parser): a line starting with "--" plus
 *    any active boundary (this multipart's or an enclosing one's; the
 *    longest match wins, then the innermost) is a delimiter, trailing
 *    garbage ignored; a delimiter of an enclosing multipart also ends the
 *    inner parts, and one arriving inside a part's header ends that header.
 *    A multipart without boundary parameter, or in which no delimiter is
 *    found, is served as a TEXT/PLAIN leaf holding its whole body (Dovecot
 *    reports an empty TEXT/PLAIN child instead, which hides the text).
 *  - Limits: a multipart or message/rfc822 that would nest deeper than
 *    max_depth is a TEXT/PLAIN leaf (MIME_PF_DEGRADED); once max_parts
 *    records exist no further delimiters are recognised and the open parts
 *    run to the end of the message (Dovecot's max_total_mime_parts).
 *    Only the first max_header_bytes of each header are searched for fields.
 *  - Content-* fields count without MIME-Version (Dovecot ignores them in
 *    a top-level header that has neither MIME-Version nor Content-Type).
 *  - Part numbers (RFC 3501 6.4.5): part 1 of a non-multipart message is
 *    its body and 1.MIME its (whole) header; N.HEADER/N.TEXT/N.HEADER.FIELDS
 *    need N to be message/rfc822, N.1 is then the encapsulated message's
 *    first part, or its body if it is not multipart.
 *  - A header line without a colon stays in the header and is ignored; a
 *    header without blank line runs to the end of its part (empty body).
 *    Bare LF line ends are accepted everywhere.
 */
#ifndef LIB_MIME_H
#define LIB_MIME_H

#include <stddef.h>
#include <stdint.h>

#include "lib/arena.h"
#include "lib/buf.h"
#include "lib/util.h"

struct mime_limits {
	size_t max_depth;	 /* nesting levels; 0 = 20, clamped to 200 */
	size_t max_parts;	 /* part records; 0 = 5000 */
	size_t max_header_bytes; /* per header block; 0 = 256 KiB */
};

struct mime_result {
	char *envelope;		/* "(date subject (from) ... message-id)" as after "ENVELOPE " */
	char *bodystructure;	/* as after "BODYSTRUCTURE ", with extension data */
	char *body;		/* as after "BODY " (no extension data) */
	struct buf parts;	/* part table, layout above; the caller buf_free()s it */
	int64_t sent_date;	/* Date: as seconds since the epoch (UTC), INT64_MIN if absent/unparsable */
	int sent_tz;		/* the Date: zone in minutes east of UTC (0 if none); the
				 * local date SENTON compares is (sent_date + sent_tz*60) / 86400 */
	size_t nparts;		/* records in the part table */
	bool limited;		/* max_depth or max_parts cut the structure short */
};

/* Record kinds and flags of the part table. */
enum { MIME_KIND_LEAF = 0, MIME_KIND_MULTIPART = 1, MIME_KIND_MESSAGE = 2 };
#define MIME_PF_TEXT     0x01	/* leaf served as text/ *: body text is searchable */
#define MIME_PF_MESSAGE  0x02	/* header is an RFC 5322 message header (record 0, message/rfc822 children) */
#define MIME_PF_DEGRADED 0x04	/* multipart/message served as TEXT/PLAIN leaf (see above) */
enum { MIME_ENC_IDENTITY = 0, MIME_ENC_BASE64 = 1, MIME_ENC_QP = 2 };

/* Parse msg (len octets, may contain NUL, 8-bit data, bare LF).  The three
 * strings are allocated in a (NUL-terminated, no NUL inside); out->parts is
 * a heap buf.  lim may be NULL for the defaults.  Never fails. */
void mime_parse(const char *msg, size_t len, const struct mime_limits *lim,
		struct arena *a, struct mime_result *out);

/* Append the bytes of BODY[section] to out.  section is the text between
 * the brackets, e.g. "", "HEADER", "1.2.MIME", "3.HEADER.FIELDS.NOT (To
 * \"Cc\")" (keywords case-insensitive; field names are atoms, quoted
 * strings or literals).  Returns -1 if section is not valid RFC 3501
 * section-spec syntax (answer BAD), otherwise 0; a part that does not
 * exist yields no bytes.  HEADER.FIELDS[.NOT] returns the selected fields'
 * original lines, in message order, then the header's blank line (as in the
 * message) if it has one (RFC 3501 6.4.5).  parts/parts_len is the table
 * mime_parse() produced for msg; when it is missing or does not fit msg the
 * message is parsed again with default limits.  mime_section("", 0, NULL,
 * 0, spec, &scratch) just validates spec. */
int mime_section(const char *msg, size_t len, const char *parts, size_t parts_len,
		 struct str section, struct buf *out);

/* SEARCH helpers.  Output is UTF-8 without NUL (U+FFFD replaces NUL and
 * undecodable bytes).  Charsets: UTF-8, US-ASCII, ISO-8859-1 and
 * Windows-1252 built in (ISO-8859-1 is read as Windows-1252, as WHATWG
 * does); others through iconv(3).  8-bit text in an unknown charset, in
 * US-ASCII or outside encoded-words is kept when it is UTF-8, else read as
 * Windows-1252. */

/* Every field named field (case-insensitive) of the top-level header,
 * unfolded, RFC 2047 encoded-words decoded, joined by "\n"; appended to out.
 * a holds temporary allocations. */
void mime_header_decoded(const char *msg, size_t len, const char *field,
			 struct arena *a, struct buf *out);
/* The decoded text of every text/ * leaf (transfer encoding undone, charset
 * converted, CRLF turned into LF), parts separated by "\n"; appended to out. */
void mime_body_text(const char *msg, size_t len, const char *parts, size_t parts_len,
		    struct buf *out);
/* The top-level header block including its blank line (if any). */
struct str mime_header_block(const char *msg, size_t len);

/* Check a rendered string against the RFC 3501 grammar (envelope, body or
 * body with extension data); 0 if it conforms.  For tests and for checking
 * stored rows. */
enum mime_check_what { MIME_CHECK_ENVELOPE, MIME_CHECK_BODY, MIME_CHECK_BODYSTRUCTURE };
int mime_check(const char *s, size_t len, enum mime_check_what what);

#endif
