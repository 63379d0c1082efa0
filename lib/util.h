/* util.h - small helpers every process uses: checked allocation, time,
 * string views, number parsing. */
#ifndef LIB_UTIL_H
#define LIB_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* A view of bytes: pointer plus length. Not NUL-terminated in general. */
struct str {
	const char *p;
	size_t len;
};
#define STR_LIT(s) ((struct str){ (s), sizeof(s) - 1 })
#define STR_FMT(s) (int)(s).len, (s).p	/* for "%.*s" */

static inline struct str str_make(const char *p, size_t len)
{
	return (struct str){ p, len };
}
struct str str_cstr(const char *s);
bool str_eq(struct str a, struct str b);
/* ASCII case-insensitive comparison with a C string. */
bool str_ieq(struct str a, const char *b);

/* Abort on out-of-memory: see arena.h for why. */
_Noreturn void die_oom(void);
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

/* Monotonic milliseconds and microseconds. */
uint64_t now_ms(void);
uint64_t now_us(void);

/* Parse a decimal unsigned number of the whole string, with an overflow
 * check against max. Returns 0 on success, -1 otherwise. */
int parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out);

/* Overwrite memory so the compiler cannot elide it (for secrets). */
void secure_zero(void *p, size_t n);

#endif
