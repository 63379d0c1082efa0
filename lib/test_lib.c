/* Unit tests for arena, buf, config and util. */
#include <stdlib.h>
#include <unistd.h>

#include "lib/arena.h"
#include "lib/buf.h"
#include "lib/config.h"
#include "lib/util.h"
#include "tests/unit/unit.h"

TEST(arena_alloc_reset)
{
	struct arena a;
	arena_init(&a, 1024);
	char *p = arena_strdup(&a, "hello");
	CHECK_EQ_MEM(p, 5, "hello");
	void *big = arena_alloc(&a, 100000);	/* own chunk */
	memset(big, 1, 100000);
	for (int i = 0; i < 1000; i++)
		CHECK(((uintptr_t)arena_alloc(&a, (size_t)i + 1) % _Alignof(max_align_t)) == 0);
	char *f = arena_printf(&a, "%d-%s", 42, "x");
	CHECK_EQ_MEM(f, strlen(f), "42-x");
	arena_reset(&a);
	CHECK_EQ_INT(a.used, 0);
	p = arena_strdup(&a, "again");
	CHECK_EQ_MEM(p, 5, "again");
	arena_free(&a);
}

TEST(buf_append_consume)
{
	struct buf b = BUF_INIT;
	buf_puts(&b, "abc");
	buf_append(&b, "\0d", 2);
	CHECK_EQ_INT(b.len, 5);
	buf_consume(&b, 2);
	CHECK_EQ_INT(b.len, 3);
	CHECK(buf_ptr(&b)[0] == 'c' && buf_ptr(&b)[1] == '\0' && buf_ptr(&b)[2] == 'd');
	for (int i = 0; i < 1000; i++)
		buf_printf(&b, "%04d", i);
	CHECK_EQ_INT(b.len, 3 + 4000);
	CHECK(memcmp(buf_ptr(&b) + 3 + 4 * 999, "0999", 4) == 0);
	buf_consume(&b, 10000);
	CHECK_EQ_INT(b.len, 0);
	buf_free(&b);
}

TEST(util_parse_u64)
{
	uint64_t v;
	CHECK(parse_u64("0", 1, 10, &v) == 0 && v == 0);
	CHECK(parse_u64("4294967295", 10, UINT32_MAX, &v) == 0 && v == UINT32_MAX);
	CHECK(parse_u64("4294967296", 10, UINT32_MAX, &v) < 0);
	CHECK(parse_u64("18446744073709551615", 20, UINT64_MAX, &v) == 0 && v == UINT64_MAX);
	CHECK(parse_u64("18446744073709551616", 20, UINT64_MAX, &v) < 0);
	CHECK(parse_u64("", 0, 10, &v) < 0);
	CHECK(parse_u64("1a", 2, 100, &v) < 0);
}

TEST(config_defaults_file_env)
{
	char path[] = "/tmp/unitcfgXXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	FILE *f = fdopen(fd, "w");
	fprintf(f, "# comment\nmax_line_length = 16k\nimap_listen = \"127.0.0.1:1143\"\n");
	fclose(f);
	setenv("MAX_INPUT_QUEUE", "70000", 1);
	struct config cfg;
	char err[256];
	CHECK(config_load(&cfg, path, err, sizeof(err)) == 0);
	CHECK_EQ_INT(cfg.max_line_length, 16384);
	CHECK_EQ_INT(cfg.max_input_queue, 70000);
	CHECK(strcmp(cfg.imap_listen, "127.0.0.1:1143") == 0);
	CHECK_EQ_INT(cfg.max_bad_commands, 20);
	config_free(&cfg);
	unsetenv("MAX_INPUT_QUEUE");

	f = fopen(path, "w");
	fprintf(f, "max_line_length = 100\n");	/* below the RFC 7162 minimum */
	fclose(f);
	CHECK(config_load(&cfg, path, err, sizeof(err)) < 0);
	CHECK(strstr(err, "max_line_length") != NULL);
	config_free(&cfg);

	f = fopen(path, "w");
	fprintf(f, "no_such_key = 1\n");
	fclose(f);
	CHECK(config_load(&cfg, path, err, sizeof(err)) < 0);
	CHECK(strstr(err, "unknown key") != NULL);
	config_free(&cfg);
	unlink(path);
}

TEST(config_hostport)
{
	char h[64], p[16];
	CHECK(config_split_hostport("127.0.0.1:143", h, sizeof(h), p, sizeof(p)) == 0);
	CHECK(strcmp(h, "127.0.0.1") == 0 && strcmp(p, "143") == 0);
	CHECK(config_split_hostport("[::1]:993", h, sizeof(h), p, sizeof(p)) == 0);
	CHECK(strcmp(h, "::1") == 0 && strcmp(p, "993") == 0);
	CHECK(config_split_hostport("nohost", h, sizeof(h), p, sizeof(p)) < 0);
	CHECK(config_split_hostport("h:x1", h, sizeof(h), p, sizeof(p)) < 0);
}

#include "lib/base64.h"

TEST(base64_roundtrip_and_strictness)
{
	struct buf b = BUF_INIT;
	CHECK(base64_decode("AHVzZXIAcGFzcw==", 16, &b) == 0);
	CHECK(b.len == 10 && memcmp(buf_ptr(&b), "\0user\0pass", 10) == 0);
	buf_clear(&b);
	const char *bad[] = { "A", "AB=C", "A===", "AHVz ZXI=", "QQ=a", "QR==", "QUI=x===" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		buf_clear(&b);
		CHECK(base64_decode(bad[i], strlen(bad[i]), &b) < 0);
	}
	for (size_t n = 0; n < 40; n++) {
		char raw[40];
		for (size_t i = 0; i < n; i++)
			raw[i] = (char)(i * 37 + n);
		struct buf enc = BUF_INIT, dec = BUF_INIT;
		base64_encode(raw, n, &enc);
		CHECK(base64_decode(buf_ptr(&enc), enc.len, &dec) == 0);
		CHECK(dec.len == n && (n == 0 || memcmp(buf_ptr(&dec), raw, n) == 0));
		buf_free(&enc);
		buf_free(&dec);
	}
	buf_free(&b);
}
