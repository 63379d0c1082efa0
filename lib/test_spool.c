/* Unit tests for the spool: the file has no name in its directory, the
 * bytes come back exactly (pread and mmap) whatever the write splits, the
 * buffer stays within its bound, a missing directory and a write failure
 * are reported (and later writes dropped), and nothing stays open. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "lib/spool.h"
#include "lib/util.h"
#include "tests/unit/unit.h"

static int dir_entries(const char *path)
{
	DIR *d = opendir(path);
	if (d == NULL)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static int open_fds(void)
{
	int n = 0;
	for (int fd = 0; fd < 1024; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			n++;
	return n;
}

TEST(spool_roundtrip)
{
	char dir[] = "/tmp/spooltest-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	int fds0 = open_fds();
	int err = 0;
	struct spool *sp = spool_open(dir, 4096, &err);
	CHECK(sp != NULL);
	if (sp == NULL)
		return;
	/* nameless from the start */
	CHECK_EQ_INT(dir_entries(dir), 0);

	size_t total = (1 << 20) + 12345;
	char *want = xmalloc(total);
	uint32_t x = 12345;
	for (size_t i = 0; i < total; i++) {
		x = x * 1103515245u + 12345u;
		want[i] = (char)(x >> 16);
	}
	/* splits of 1 octet, under, at and over the buffer size */
	size_t off = 0, k = 0;
	static const size_t steps[] = { 1, 7, 4095, 4096, 4097, 100, 3, 8192, 20000, 1 };
	while (off < total) {
		size_t n = MIN(steps[k++ % ARRAY_SIZE(steps)], total - off);
		CHECK_EQ_INT(spool_write(sp, want + off, n), 0);
		off += n;
	}
	CHECK_EQ_INT(spool_size(sp), total);
	CHECK_EQ_INT(spool_finish(sp), 0);
	CHECK_EQ_INT(spool_error(sp), 0);

	char *got = xmalloc(total);
	size_t have = 0;
	while (have < total) {
		ssize_t r = spool_pread(sp, got + have, MIN((size_t)65536, total - have), have);
		CHECK(r > 0);
		if (r <= 0)
			break;
		have += (size_t)r;
	}
	CHECK_EQ_INT(spool_pread(sp, got, 10, total), 0);
	CHECK(have == total && memcmp(got, want, total) == 0);

	size_t mlen = 0;
	const char *m = spool_map(sp, &mlen);
	CHECK(m != NULL);
	CHECK_EQ_INT(mlen, total);
	/* the mapping outlives the spool */
	spool_free(&sp);
	CHECK(sp == NULL);
	spool_free(&sp);
	if (m != NULL)
		CHECK(memcmp(m, want, total) == 0);
	spool_unmap(m, mlen);
	free(got);
	free(want);
	CHECK_EQ_INT(open_fds(), fds0);
	CHECK_EQ_INT(dir_entries(dir), 0);
	rmdir(dir);
}

TEST(spool_errors)
{
	int fds0 = open_fds();
	int err = 0;
	CHECK(spool_open("/nonexistent/spool/dir", 65536, &err) == NULL);
	CHECK_EQ_INT(err, ENOENT);
	CHECK(strcmp(spool_dir(""), "") != 0);
	CHECK(strcmp(spool_dir("/var/x"), "/var/x") == 0);

	/* A write that fails (here: the file size limit, EFBIG, standing in
	 * for a full disk) is remembered; later writes are dropped. */
	struct rlimit old;
	getrlimit(RLIMIT_FSIZE, &old);
	void (*oldsig)(int) = signal(SIGXFSZ, SIG_IGN);
	struct spool *sp = spool_open(NULL, 4096, &err);
	CHECK(sp != NULL);
	if (sp == NULL)
		return;
	struct rlimit lim = { 16384, old.rlim_max };
	CHECK_EQ_INT(setrlimit(RLIMIT_FSIZE, &lim), 0);
	char block[5000];
	memset(block, 'a', sizeof(block));
	int failed_at = -1;
	for (int i = 0; i < 10; i++) {
		if (spool_write(sp, block, sizeof(block)) < 0 && failed_at < 0)
			failed_at = i;
	}
	setrlimit(RLIMIT_FSIZE, &old);
	signal(SIGXFSZ, oldsig);
	CHECK(failed_at > 0 && failed_at < 10);
	CHECK_EQ_INT(spool_error(sp), EFBIG);
	CHECK(strcmp(spool_error_op(sp), "write") == 0);
	CHECK_EQ_INT(spool_size(sp), 50000);
	CHECK_EQ_INT(spool_write(sp, block, 1), -1);
	CHECK_EQ_INT(spool_finish(sp), -1);
	spool_free(&sp);
	CHECK_EQ_INT(open_fds(), fds0);
}
