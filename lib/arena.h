/* arena.h - region allocator.
 *
 * An arena hands out memory that is never freed one piece at a time: the
 * whole arena is reset or destroyed at once.  Each session owns an arena and
 * each command a child arena reset when the command completes, so error
 * exits cannot leak (STYLE.md, "Memory").
 *
 * Allocation failure aborts: the daemons cannot serve a half-built object,
 * and the per-session limits keep a single client from exhausting memory.
 */
#ifndef LIB_ARENA_H
#define LIB_ARENA_H

#include <stddef.h>

struct arena_chunk;

struct arena {
	struct arena_chunk *head;	/* current chunk, newest first */
	size_t chunk_size;		/* default size of a new chunk */
	size_t used;			/* bytes handed out since last reset */
};

/* Initialise an arena whose chunks are at least chunk_size bytes. */
void arena_init(struct arena *a, size_t chunk_size);
/* Memory aligned for any type; never NULL. */
void *arena_alloc(struct arena *a, size_t n);
void *arena_zalloc(struct arena *a, size_t n);
/* Copy n bytes and add a NUL courtesy byte (not counted in n). */
char *arena_strndup(struct arena *a, const char *s, size_t n);
char *arena_strdup(struct arena *a, const char *s);
char *arena_printf(struct arena *a, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Release everything but the first chunk, which is kept for reuse. */
void arena_reset(struct arena *a);
/* Release everything. The arena may be re-initialised afterwards. */
void arena_free(struct arena *a);

#endif
