#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *buf_reserve(struct buf *b, size_t n)
{
	if (b->off > 0 && b->cap - b->off - b->len <= n) {
		/* Compact before growing: the consumed front is free space. */
		memmove(b->data, b->data + b->off, b->len);
		b->off = 0;
	}
	size_t need = b->off + b->len + n + 1;
	if (need < n)
		die_oom();
	if (need > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		while (cap < need) {
			if (cap > SIZE_MAX / 2)
				die_oom();
			cap *= 2;
		}
		b->data = xrealloc(b->data, cap);
		b->cap = cap;
	}
	return b->data + b->off + b->len;
}

void buf_commit(struct buf *b, size_t n)
{
	b->len += n;
	b->data[b->off + b->len] = '\0';
}

void buf_append(struct buf *b, const void *p, size_t n)
{
	char *dst = buf_reserve(b, n);
	if (n > 0)
		memcpy(dst, p, n);
	buf_commit(b, n);
}

void buf_puts(struct buf *b, const char *s)
{
	buf_append(b, s, strlen(s));
}

void buf_putc(struct buf *b, char c)
{
	buf_append(b, &c, 1);
}

void buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	va_copy(ap2, ap);
	char tmp[256];
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(tmp)) {
		buf_append(b, tmp, (size_t)n);
		return;
	}
	char *dst = buf_reserve(b, (size_t)n);
	vsnprintf(dst, (size_t)n + 1, fmt, ap);
	buf_commit(b, (size_t)n);
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(b, fmt, ap);
	va_end(ap);
}

void buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		b->off = 0;
		b->len = 0;
	} else {
		b->off += n;
		b->len -= n;
	}
	if (b->data)
		b->data[b->off + b->len] = '\0';
}

void buf_clear(struct buf *b)
{
	b->off = 0;
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->off = b->cap = 0;
}
