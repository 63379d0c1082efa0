/* base64.h - RFC 4648 base64, strict (for SASL, RFC 4422 section 3). */
#ifndef LIB_BASE64_H
#define LIB_BASE64_H

#include <stddef.h>

#include "lib/buf.h"

/* Decode; rejects characters outside the alphabet, bad padding and
 * non-zero trailing bits.  Returns 0 on success and appends to out. */
int base64_decode(const char *in, size_t len, struct buf *out);
void base64_encode(const void *in, size_t len, struct buf *out);

#endif
