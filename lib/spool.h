/* spool.h - bytes too many to hold in memory, written as they arrive to an
 * unlinked temporary file through a bounded buffer.
 *
 * Used for APPEND literals above append_buffer_size (imapd/cmd_append.c);
 * the writer's memory is the buffer (bufsize octets), whatever the size of
 * the data.  The file has no name from the start (O_TMPFILE, or mkstemp and
 * unlink where the file system lacks it), so nothing is left behind when
 * the process dies, and closing the descriptor frees the space.
 *
 * Blocking: spool_write() and spool_finish() call write(2) and
 * spool_pread() calls pread(2) on a local file.  The event loop calls them
 * directly: a write of at most bufsize octets into the page cache, or a
 * read of what was just written, costs microseconds; only a disk that
 * cannot keep up with the incoming data (dirty page throttling) makes them
 * wait, and then TCP pushes back on the senders too.  Keep spool_dir on a
 * local file system (not NFS).
 *
 * Errors: the first failure is remembered (errno in spool_error(), the
 * failing operation in spool_error_op()); later writes are dropped, so a
 * caller can keep consuming its input and answer once at the end.
 *
 * Threads: a spool belongs to one thread at a time.  spool_map() gives a
 * read-only mapping that stays valid after spool_free() until
 * spool_unmap(), so another thread may read it while the owner goes away.
 */
#ifndef LIB_SPOOL_H
#define LIB_SPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct spool;

/* dir: where the file goes; NULL or "" means $TMPDIR, else /tmp.
 * bufsize: octets buffered before a write(2) (clamped to 4 KiB..16 MiB).
 * Returns NULL with *err set to an errno value when no file can be made
 * (the directory is missing, not writable, ...). */
struct spool *spool_open(const char *dir, size_t bufsize, int *err);

/* The directory spool_open() uses for dir (never NULL). */
const char *spool_dir(const char *dir);

/* Append n octets.  Returns 0, or -1 if this or an earlier write failed
 * (the data is dropped; see spool_error()). */
int spool_write(struct spool *sp, const void *p, size_t n);

/* Write what is still buffered.  Returns 0, or -1 if any write failed. */
int spool_finish(struct spool *sp);

/* Octets given to spool_write() so far (including failed ones). */
uint64_t spool_size(const struct spool *sp);

/* errno of the first failure (0 if none) and the operation that failed
 * ("write", "open", ...; "" if none). */
int spool_error(const struct spool *sp);
const char *spool_error_op(const struct spool *sp);

/* Read up to n octets at off from the file (after spool_finish()).
 * Returns octets read (0 at the end) or -1 with errno set. */
ssize_t spool_pread(struct spool *sp, void *buf, size_t n, uint64_t off);

/* Map the whole file read-only (after spool_finish(); size > 0).  Returns
 * the address, or NULL with errno set.  Release with spool_unmap(). */
const char *spool_map(struct spool *sp, size_t *len);
void spool_unmap(const char *p, size_t len);

/* Close the file (its space is freed once no mapping is left) and free
 * the spool; *sp becomes NULL.  sp or *sp may be NULL. */
void spool_free(struct spool **sp);

#endif
