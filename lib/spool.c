/* spool.c - temporary files behind a bounded buffer; see spool.h. */
#include "lib/spool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib/util.h"

#define SPOOL_MIN_BUF	((size_t)4096)
#define SPOOL_MAX_BUF	((size_t)16 << 20)

struct spool {
	int fd;
	char *buf;		/* allocated on the first write */
	size_t buflen, bufcap;
	uint64_t size;		/* octets given to spool_write() */
	int err;
	const char *err_op;
};

const char *spool_dir(const char *dir)
{
	if (dir != NULL && *dir != '\0')
		return dir;
	const char *t = getenv("TMPDIR");
	return t != NULL && *t != '\0' ? t : "/tmp";
}

static int open_tmpfile(const char *dir, int *err)
{
#ifdef O_TMPFILE
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
	/* EISDIR: the kernel does not know O_TMPFILE; EOPNOTSUPP: the file
	 * system does not support it.  Anything else is a real answer. */
	if (errno != EISDIR && errno != EOPNOTSUPP) {
		*err = errno;
		return -1;
	}
#endif
	size_t n = strlen(dir) + sizeof("/.spool-XXXXXX");
	char *path = xmalloc(n);
	snprintf(path, n, "%s/.spool-XXXXXX", dir);
	int fd2 = mkostemp(path, O_CLOEXEC);
	if (fd2 < 0) {
		*err = errno;
		free(path);
		return -1;
	}
	/* Nameless from here on, as with O_TMPFILE. */
	if (unlink(path) < 0) {
		*err = errno;
		close(fd2);
		free(path);
		return -1;
	}
	free(path);
	return fd2;
}

struct spool *spool_open(const char *dir, size_t bufsize, int *err)
{
	int e = 0;
	int fd = open_tmpfile(spool_dir(dir), &e);
	if (fd < 0) {
		if (err != NULL)
			*err = e ? e : EIO;
		return NULL;
	}
	struct spool *sp = xcalloc(1, sizeof(*sp));
	sp->fd = fd;
	sp->bufcap = bufsize < SPOOL_MIN_BUF ? SPOOL_MIN_BUF : bufsize > SPOOL_MAX_BUF ? SPOOL_MAX_BUF : bufsize;
	sp->err_op = "";
	return sp;
}

static void fail(struct spool *sp, const char *op, int e)
{
	if (sp->err == 0) {
		sp->err = e ? e : EIO;
		sp->err_op = op;
	}
	/* The data is lost anyway: give the buffer back now. */
	free(sp->buf);
	sp->buf = NULL;
	sp->buflen = 0;
}

static int write_all(struct spool *sp, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(sp->fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			fail(sp, "write", errno);
			return -1;
		}
		if (w == 0) {
			fail(sp, "write", ENOSPC);
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int spool_write(struct spool *sp, const void *data, size_t n)
{
	const char *p = data;
	sp->size += n;
	if (sp->err != 0)
		return -1;
	if (sp->buflen + n < sp->bufcap) {
		if (sp->buf == NULL)
			sp->buf = xmalloc(sp->bufcap);
		memcpy(sp->buf + sp->buflen, p, n);
		sp->buflen += n;
		return 0;
	}
	/* Fill the buffer up and write it; a remainder of a whole buffer or
	 * more goes straight to the file (no copy), the tail is kept. */
	if (sp->buflen > 0) {
		size_t take = sp->bufcap - sp->buflen;
		memcpy(sp->buf + sp->buflen, p, take);
		p += take;
		n -= take;
		sp->buflen = 0;
		if (write_all(sp, sp->buf, sp->bufcap) < 0)
			return -1;
	}
	size_t direct = n - n % sp->bufcap;
	if (direct > 0) {
		if (write_all(sp, p, direct) < 0)
			return -1;
		p += direct;
		n -= direct;
	}
	if (n > 0) {
		if (sp->buf == NULL)
			sp->buf = xmalloc(sp->bufcap);
		memcpy(sp->buf, p, n);
		sp->buflen = n;
	}
	return 0;
}

int spool_finish(struct spool *sp)
{
	if (sp->err != 0)
		return -1;
	if (sp->buflen > 0 && write_all(sp, sp->buf, sp->buflen) < 0)
		return -1;
	sp->buflen = 0;
	free(sp->buf);
	sp->buf = NULL;
	return 0;
}

uint64_t spool_size(const struct spool *sp)
{
	return sp->size;
}

int spool_error(const struct spool *sp)
{
	return sp->err;
}

const char *spool_error_op(const struct spool *sp)
{
	return sp->err_op;
}

ssize_t spool_pread(struct spool *sp, void *buf, size_t n, uint64_t off)
{
	for (;;) {
		ssize_t r = pread(sp->fd, buf, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		return r;
	}
}

const char *spool_map(struct spool *sp, size_t *len)
{
	if (sp->size == 0 || sp->size > SIZE_MAX) {
		errno = EINVAL;
		return NULL;
	}
	void *p = mmap(NULL, (size_t)sp->size, PROT_READ, MAP_PRIVATE, sp->fd, 0);
	if (p == MAP_FAILED)
		return NULL;
	/* Read front to back (hash, then parse): let the kernel read ahead. */
	(void)madvise(p, (size_t)sp->size, MADV_SEQUENTIAL);
	*len = (size_t)sp->size;
	return p;
}

void spool_unmap(const char *p, size_t len)
{
	if (p != NULL)
		munmap((void *)(uintptr_t)p, len);
}

void spool_free(struct spool **spp)
{
	struct spool *sp = spp ? *spp : NULL;
	if (sp == NULL)
		return;
	close(sp->fd);
	free(sp->buf);
	free(sp);
	*spp = NULL;
}
