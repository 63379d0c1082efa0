/* buf.h - growable byte buffer.
 *
 * Bytes travel with their length: data may hold NULs and 8-bit octets.
 * A buf keeps a NUL after the last byte as a courtesy for C string APIs;
 * it is never part of len.  A buf owns its storage (heap) and is released
 * with buf_free().  Consumers that read from the front use buf_consume(),
 * which moves the remaining bytes lazily.
 */
#ifndef LIB_BUF_H
#define LIB_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "util.h"

struct buf {
	char *data;
	size_t len;	/* bytes in use, starting at data + off */
	size_t off;	/* bytes already consumed at the front */
	size_t cap;	/* allocated bytes */
};

#define BUF_INIT { NULL, 0, 0, 0 }

static inline char *buf_ptr(const struct buf *b) { return b->data ? b->data + b->off : (char *)""; }
static inline struct str buf_str(const struct buf *b) { return str_make(buf_ptr(b), b->len); }

/* Make room for at least n more bytes; returns where they go. */
char *buf_reserve(struct buf *b, size_t n);
/* Account for n bytes written at buf_reserve()'s pointer. */
void buf_commit(struct buf *b, size_t n);
void buf_append(struct buf *b, const void *p, size_t n);
void buf_puts(struct buf *b, const char *s);
void buf_putc(struct buf *b, char c);
void buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Drop n bytes from the front. */
void buf_consume(struct buf *b, size_t n);
void buf_clear(struct buf *b);
/* Release storage; the buf is empty and reusable afterwards. */
void buf_free(struct buf *b);

#endif
