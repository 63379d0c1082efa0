/* mutf7.h - modified UTF-7 (RFC 3501 section 5.1.3) and UTF-8.
 *
 * IMAP4rev1 clients send and receive mailbox names in modified UTF-7: the
 * printable US-ASCII characters 0x20-0x7e stand for themselves, except "&",
 * which is written "&-"; everything else is UTF-16 written in a base64
 * variant ("," instead of "/", no padding) between "&" and "-".  The
 * database stores names in UTF-8 (RFC 9051), so every name crosses these
 * two functions on its way in and out.
 *
 * Both directions are strict, because a name must have exactly one wire
 * form: two spellings of one name would let a client create look-alike
 * mailboxes, or miss the one it asked for.  mutf7_decode() refuses
 *  - octets outside 0x20-0x7e (8-bit UTF-8 sent raw, control characters);
 *  - an "&" not closed by "-", a character outside the base64 alphabet;
 *  - non-minimal encodings: a printable US-ASCII character in base64, bits
 *    left over that do not complete a UTF-16 unit (6 or more, or non-zero),
 *    an empty shift, and "-&" null shifts between two base64 runs;
 *  - unpaired UTF-16 surrogates.
 * mutf7_encode() refuses input that is not strict UTF-8 (see
 * mutf7_utf8_check).  Decoding then encoding gives back the input, and
 * encoding then decoding too.
 *
 * Neither function judges what a mailbox name may contain (control
 * characters, "/" rules, length): that is the caller's policy.
 */
#ifndef LIB_MUTF7_H
#define LIB_MUTF7_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "util.h"

/* Append the UTF-8 form of the modified UTF-7 string in to out.  Returns 0,
 * or -1 with a short static reason in *err (out may then hold part of the
 * result: truncate it if you reuse the buffer). */
int mutf7_decode(struct str in, struct buf *out, const char **err);

/* Append the modified UTF-7 form of the UTF-8 string in to out.  Returns 0,
 * or -1 with a short static reason in *err when in is not strict UTF-8. */
int mutf7_encode(struct str in, struct buf *out, const char **err);

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates (U+D800 to
 * U+DFFF), nothing above U+10FFFF, no truncated sequences.  Returns true,
 * or false with a short static reason in *err (err may be NULL). */
bool mutf7_utf8_check(struct str in, const char **err);

/* Decode one UTF-8 character at p[0..len); returns its length (1-4) and
 * stores the code point, or 0 when the bytes there are not strict UTF-8. */
size_t mutf7_utf8_next(const char *p, size_t len, uint32_t *cp);

#endif
