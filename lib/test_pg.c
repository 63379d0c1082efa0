/* Unit tests for the PostgreSQL pool.
 *
 * pg_offline needs no server: a pool pointed at a closed loopback port must
 * answer "database unavailable" without blocking the loop, honour cancel,
 * its queue bound and re-entrant callbacks.
 *
 * pg_live runs against a real server when PG_TEST_CONNINFO is set (e.g.
 * "host=127.0.0.1 port=5432 dbname=postgres user=postgres"); without it
 * that test only says it did nothing.  It covers parameters (copied, text,
 * binary, NULL, several MB), server errors with SQLSTATE, cancelling a
 * running query, and a connection killed under a running query.
 *
 * pg_copy_live (same variable) covers pg_copy_in(): a binary COPY of a
 * 24 MiB value arriving byte-exact while the loop keeps running and the
 * worker never holds more than a chunk, a source that fails, a COPY the
 * source cancels (nothing commits, the connection is reused), a COPY
 * statement the server refuses, and the backend killed in the middle of
 * the data.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/evp.h>

#include "lib/log.h"
#include "lib/pg.h"
#include "lib/util.h"
#include "tests/unit/unit.h"

struct pt {
	struct ev_loop *loop;
	struct pg_pool *p;
	bool in_query;		/* inside pg_query() */
	int calls, reentrant, errors, ok;
	char last_err[256];
	char last_state[8];
	char last_val[64];
	struct pg_req *victim;	/* cancelled from a callback */
	int victim_calls;
	int chained;
	ev_timer tick;
	int ticks;
	ev_tstamp last_tick, max_gap;
};

static void pt_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct pt *t = w->data;
	ev_tstamp now = ev_time();
	if (t->last_tick > 0 && now - t->last_tick > t->max_gap)
		t->max_gap = now - t->last_tick;
	t->last_tick = now;
	t->ticks++;
}

static bool pt_run(struct pt *t, bool (*pred)(struct pt *), int want, double timeout)
{
	ev_tstamp end = ev_time() + timeout;
	while (!(pred ? pred(t) : t->calls >= want)) {
		if (ev_time() > end)
			return false;
		ev_run(t->loop, EVRUN_ONCE);
	}
	return true;
}

static void record(struct pt *t, PGresult *res, const char *err, const char *sqlstate)
{
	t->calls++;
	if (t->in_query)
		t->reentrant++;
	if (err) {
		t->errors++;
		snprintf(t->last_err, sizeof(t->last_err), "%s", err);
		snprintf(t->last_state, sizeof(t->last_state), "%s", sqlstate);
	} else {
		t->ok++;
		t->last_err[0] = '\0';
		t->last_val[0] = '\0';
		if (res && PQntuples(res) > 0 && PQnfields(res) > 0)
			snprintf(t->last_val, sizeof(t->last_val), "%s", PQgetvalue(res, 0, 0));
	}
}

static void cb_record(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	record(arg, res, err, sqlstate);
}

static void cb_victim(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	((struct pt *)arg)->victim_calls++;
}

/* Re-entrancy: query again and cancel another request from a callback. */
static void cb_chain(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	struct pt *t = arg;
	record(t, res, err, sqlstate);
	pg_cancel(t->p, t->victim);
	t->victim = NULL;
	if (t->chained++ < 3)
		pg_query(t->p, "SELECT 2", 0, NULL, NULL, NULL, 0, cb_chain, t);
}

static void cb_query_in_shutdown(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	struct pt *t = arg;
	record(t, res, err, sqlstate);
	/* pg_pool_free is running: no new work */
	if (pg_query(t->p, "SELECT 1", 0, NULL, NULL, NULL, 0, cb_record, t) == NULL)
		t->chained++;
}

static struct pg_req *q(struct pt *t, const char *sql, int n, const char *const *v, pg_cb cb)
{
	t->in_query = true;
	struct pg_req *r = pg_query(t->p, sql, n, v, NULL, NULL, 0, cb, t);
	t->in_query = false;
	return r;
}

static int closed_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	bind(fd, (struct sockaddr *)&a, sizeof(a));
	getsockname(fd, (struct sockaddr *)&a, &len);
	close(fd);
	return ntohs(a.sin_port);
}

static int count_fds(void)
{
	int n = 0;
	for (int fd = 0; fd < 1024; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			n++;
	return n;
}

static void pt_init(struct pt *t)
{
	memset(t, 0, sizeof(*t));
	t->loop = ev_loop_new(EVFLAG_AUTO);
	ev_timer_init(&t->tick, pt_tick, 0.01, 0.01);
	t->tick.data = t;
	ev_timer_start(t->loop, &t->tick);
}

static void pt_done(struct pt *t)
{
	pg_pool_free(&t->p);
	ev_timer_stop(t->loop, &t->tick);
	ev_loop_destroy(t->loop);
}

TEST(pg_conninfo)
{
	char err[256];
	CHECK(pg_conninfo_check("host=127.0.0.1 port=5432 dbname=mail", err, sizeof(err)) == 0);
	CHECK(pg_conninfo_check("host=127.0.0.1 nosuchkey=1", err, sizeof(err)) < 0);
	CHECK(strstr(err, "nosuchkey") != NULL);
	CHECK(pg_conninfo_check("host='unterminated", err, sizeof(err)) < 0);
}

TEST(pg_offline)
{
	int fds0 = count_fds();
	enum log_level saved = log_enabled(LOG_DEBUG) ? LOG_DEBUG : log_enabled(LOG_INFO) ? LOG_INFO : LOG_WARN;
	log_set_level(getenv("PG_TEST_DEBUG") ? LOG_DEBUG : LOG_ERROR);
	struct pt t;
	pt_init(&t);
	char ci[128];
	snprintf(ci, sizeof(ci), "host=127.0.0.1 port=%d dbname=x user=x connect_timeout=2", closed_port());
	t.p = pg_pool_new(t.loop, ci, 2, 200, "pgtest");
	CHECK(!pg_pool_up(t.p));

	/* Queued while the first attempts run, failed when they fail: on a
	 * later iteration, never from inside pg_query. */
	const char *v[1] = { "1" };
	CHECK(q(&t, "SELECT $1::int", 1, v, cb_record) != NULL);
	CHECK_EQ_INT(t.calls, 0);
	CHECK(pt_run(&t, NULL, 1, 3.0));
	CHECK_EQ_INT(t.reentrant, 0);
	CHECK(strcmp(t.last_err, "database unavailable") == 0);
	CHECK(strcmp(t.last_state, "") == 0);

	/* In back-off: answered on the next iteration, never inside. */
	t.calls = 0;
	CHECK(q(&t, "SELECT 1", 0, NULL, cb_record) != NULL);
	CHECK_EQ_INT(t.calls, 0);
	CHECK(pt_run(&t, NULL, 1, 1.0));
	CHECK_EQ_INT(t.reentrant, 0);

	/* Cancel before delivery: never called. */
	t.calls = 0;
	struct pg_req *r = q(&t, "SELECT 1", 0, NULL, cb_record);
	pg_cancel(t.p, r);
	pg_cancel(t.p, NULL);
	ev_run(t.loop, EVRUN_NOWAIT);
	ev_run(t.loop, EVRUN_NOWAIT);
	CHECK_EQ_INT(t.calls, 0);

	/* Re-entrant callbacks: a callback queries again and cancels a
	 * request that is still waiting for its answer. */
	t.calls = 0;
	t.chained = 0;
	q(&t, "SELECT 1", 0, NULL, cb_chain);
	t.victim = q(&t, "SELECT 1", 0, NULL, cb_victim);
	CHECK(pt_run(&t, NULL, 4, 2.0));
	CHECK_EQ_INT(t.victim_calls, 0);
	CHECK_EQ_INT(t.reentrant, 0);

	/* The loop kept running through connect attempts and back-off. */
	CHECK(t.max_gap < 0.1);
	struct pg_stats st;
	pg_pool_stats(t.p, &st);
	CHECK_EQ_INT(st.conns_up, 0);
	CHECK_EQ_INT(st.conns_total, 2);
	CHECK_EQ_INT(st.queued, 0);

	/* Shutdown: queued requests get "shutting down", synchronously, and
	 * cannot queue more. */
	t.calls = 0;
	t.chained = 0;
	t.in_query = true;
	pg_query(t.p, "SELECT 1", 0, NULL, NULL, NULL, 0, cb_query_in_shutdown, &t);
	t.in_query = false;
	pt_done(&t);
	CHECK_EQ_INT(t.calls, 1);
	CHECK(strcmp(t.last_err, "shutting down") == 0 || strcmp(t.last_err, "database unavailable") == 0);
	CHECK_EQ_INT(t.chained, 1);

	/* A conninfo libpq rejects: the pool stays down, queries fail. */
	pt_init(&t);
	t.p = pg_pool_new(t.loop, "host=127.0.0.1 nosuchkey=1", 1, 200, NULL);
	q(&t, "SELECT 1", 0, NULL, cb_record);
	CHECK(pt_run(&t, NULL, 1, 1.0));
	CHECK(strcmp(t.last_err, "database unavailable") == 0);
	pt_done(&t);
	log_set_level(saved);
	CHECK_EQ_INT(count_fds(), fds0);
}

/* ---- against a real server --------------------------------------------- */

static bool pool_up(struct pt *t)
{
	return pg_pool_up(t->p);
}

static int big_calls;
static void cb_big(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	struct pt *t = arg;
	record(t, res, err, sqlstate);
	big_calls++;
}

TEST(pg_live)
{
	const char *ci = getenv("PG_TEST_CONNINFO");
	if (ci == NULL || *ci == '\0') {
		printf("     (pg_live: PG_TEST_CONNINFO not set, nothing run)\n");
		return;
	}
	int fds0 = count_fds();
	enum log_level saved = log_enabled(LOG_DEBUG) ? LOG_DEBUG : log_enabled(LOG_INFO) ? LOG_INFO : LOG_WARN;
	log_set_level(getenv("PG_TEST_DEBUG") ? LOG_DEBUG : LOG_ERROR);
	struct pt t;
	pt_init(&t);
	t.p = pg_pool_new(t.loop, ci, 3, 500, "pglive");
	CHECK(pt_run(&t, pool_up, 0, 5.0));

	/* text parameters are copied */
	char a[16] = "41";
	const char *v[2] = { a, NULL };
	q(&t, "SELECT $1::int + 1", 1, v, cb_record);
	strcpy(a, "xx");
	CHECK(pt_run(&t, NULL, 1, 5.0));
	CHECK_EQ_INT(t.ok, 1);
	CHECK(strcmp(t.last_val, "42") == 0);
	CHECK_EQ_INT(t.reentrant, 0);

	/* NULL, explicit lengths (not NUL-terminated), binary */
	t.calls = 0;
	q(&t, "SELECT coalesce($1, 'null') || $2", 2, v, cb_record);	/* $2 NULL -> NULL */
	CHECK(pt_run(&t, NULL, 1, 5.0));
	CHECK(t.last_err[0] == '\0');
	t.calls = 0;
	const char *lv[1] = { "abcdef" };
	int len[1] = { 3 };
	pg_query(t.p, "SELECT $1::text", 1, lv, len, NULL, 0, cb_record, &t);
	CHECK(pt_run(&t, NULL, 1, 5.0));
	CHECK(strcmp(t.last_val, "abc") == 0);
	t.calls = 0;
	uint32_t be = htonl(7);
	const char *bv[1] = { (const char *)&be };
	int blen[1] = { 4 };
	int bfmt[1] = { 1 };
	pg_query(t.p, "SELECT $1::int4 * 6", 1, bv, blen, bfmt, 0, cb_record, &t);
	CHECK(pt_run(&t, NULL, 1, 5.0));
	CHECK(strcmp(t.last_val, "42") == 0);

	/* server errors carry their SQLSTATE */
	t.calls = 0;
	q(&t, "SELEC 1", 0, NULL, cb_record);
	q(&t, "DO $$ BEGIN RAISE unique_violation USING MESSAGE = 'dup'; END $$", 0, NULL, cb_record);
	CHECK(pt_run(&t, NULL, 2, 5.0));
	CHECK(strcmp(t.last_state, "23505") == 0 || strcmp(t.last_state, "42601") == 0);
	CHECK_EQ_INT(t.errors >= 2, 1);

	/* many at once: 3 connections, 500 queries, all answered */
	t.calls = 0;
	t.ok = 0;
	t.errors = 0;
	for (int i = 0; i < 500; i++) {
		char num[16];
		snprintf(num, sizeof(num), "%d", i);
		const char *nv[1] = { num };
		q(&t, "SELECT $1::int", 1, nv, cb_record);
	}
	struct pg_stats st;
	pg_pool_stats(t.p, &st);
	CHECK(st.queued > 0 && st.running <= 3);
	CHECK(pt_run(&t, NULL, 500, 10.0));
	CHECK_EQ_INT(t.ok, 500);

	/* a parameter of several MB: PQflush has to wait for writability */
	char *big = xmalloc(8 << 20);
	memset(big, 'x', 8 << 20);
	big[(8 << 20) - 1] = '\0';
	const char *bigv[1] = { big };
	t.calls = 0;
	q(&t, "SELECT length($1)", 1, bigv, cb_big);
	free(big);
	CHECK(pt_run(&t, NULL, 1, 20.0));
	CHECK(strcmp(t.last_val, "8388607") == 0);

	/* cancel a running query: never called; the connection serves the
	 * next query after the server finished the cancelled one */
	t.calls = 0;
	t.victim_calls = 0;
	struct pg_req *r = q(&t, "SELECT pg_sleep(0.3)", 0, NULL, cb_victim);
	pg_cancel(t.p, r);
	for (int i = 0; i < 6; i++)
		q(&t, "SELECT 1", 0, NULL, cb_record);
	CHECK(pt_run(&t, NULL, 6, 5.0));
	ev_run(t.loop, EVRUN_NOWAIT);
	CHECK_EQ_INT(t.victim_calls, 0);

	/* the server kills the backend under a running query; the loop
	 * keeps running meanwhile (measured from here: the test's own work
	 * above, 8 MB copies and 500 queries queued in one go, is not the
	 * pool's) */
	t.max_gap = 0;
	t.last_tick = 0;
	t.calls = 0;
	t.errors = 0;
	q(&t, "SELECT pg_sleep(30) /* victim */", 0, NULL, cb_record);
	ev_tstamp until = ev_time() + 0.3;
	while (ev_time() < until)
		ev_run(t.loop, EVRUN_ONCE);
	q(&t, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
	      "WHERE query LIKE 'SELECT pg_sleep(30) /* victim */%' AND pid <> pg_backend_pid()", 0, NULL, cb_record);
	CHECK(pt_run(&t, NULL, 2, 10.0));
	CHECK_EQ_INT(t.errors, 1);
	/* the pool makes the connection again and keeps answering */
	t.calls = 0;
	t.ok = 0;
	for (int i = 0; i < 10; i++)
		q(&t, "SELECT 1", 0, NULL, cb_record);
	CHECK(pt_run(&t, NULL, 10, 10.0));
	CHECK_EQ_INT(t.ok, 10);
	until = ev_time() + 1.0;
	while (ev_time() < until && (pg_pool_stats(t.p, &st), st.conns_up < 3))
		ev_run(t.loop, EVRUN_ONCE);
	CHECK_EQ_INT(st.conns_up, 3);
	CHECK(st.reconnects >= 1);
	CHECK(t.max_gap < 0.25);
	CHECK_EQ_INT(t.reentrant, 0);
	pt_done(&t);
	log_set_level(saved);
	CHECK_EQ_INT(count_fds(), fds0);
}

/* ---- COPY FROM STDIN against a real server ----------------------------- */

struct cp {
	struct pt *t;
	const char *pattern;	/* what the source sends, cycled */
	size_t plen;
	uint64_t total, sent;	/* octets to send (UINT64_MAX: until stopped) */
	const char *head;	/* sent first (binary COPY framing) */
	size_t headlen, headsent;
	const char *tail;
	size_t taillen, tailsent;
	int calls;
	int fail_at;		/* return -1 at this call (0: never) */
	int cancel_at;		/* pg_cancel own request at this call */
	int kill_at;		/* queue pg_terminate_backend at this call */
	size_t max_cap;
	struct pg_req *req;
	EVP_MD_CTX *md;		/* hash of the value octets */
};

static void cp_value(struct cp *c, char *buf, size_t n)
{
	for (size_t i = 0; i < n; i++)
		buf[i] = c->pattern[(c->sent + i) % c->plen];
	if (c->md)
		EVP_DigestUpdate(c->md, buf, n);
	c->sent += n;
}

static ssize_t cp_source(void *arg, char *buf, size_t cap)
{
	struct cp *c = arg;
	c->calls++;
	if (cap > c->max_cap)
		c->max_cap = cap;
	if (c->fail_at && c->calls == c->fail_at)
		return -1;
	if (c->cancel_at && c->calls == c->cancel_at) {
		pg_cancel(c->t->p, c->req);
		return 10;	/* ignored: the request is gone */
	}
	if (c->kill_at && c->calls == c->kill_at)
		pg_query(c->t->p, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
			 "WHERE query LIKE 'COPY pgtest_copy%' AND pid <> pg_backend_pid()",
			 0, NULL, NULL, NULL, 0, cb_record, c->t);
	size_t n = 0;
	if (c->headsent < c->headlen) {
		size_t k = MIN(cap, c->headlen - c->headsent);
		memcpy(buf, c->head + c->headsent, k);
		c->headsent += k;
		n += k;
	}
	/* odd sizes, so chunks do not line up with anything */
	size_t want = MIN(cap - n, (size_t)(c->calls % 7 == 0 ? 1000 : cap));
	if (c->sent < c->total && want > 0) {
		size_t k = (size_t)MIN((uint64_t)want, c->total - c->sent);
		cp_value(c, buf + n, k);
		n += k;
	}
	if (c->sent >= c->total && c->tailsent < c->taillen && n < cap) {
		size_t k = MIN(cap - n, c->taillen - c->tailsent);
		memcpy(buf + n, c->tail + c->tailsent, k);
		c->tailsent += k;
		n += k;
	}
	return (ssize_t)n;
}

/* The source and the callback share their arg. */
static void cb_cp(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	record(((struct cp *)arg)->t, res, err, sqlstate);
}

static void cb_cp_victim(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	((struct cp *)arg)->t->victim_calls++;
}

static void put32(char *p, uint32_t v)
{
	v = htonl(v);
	memcpy(p, &v, 4);
}

static bool cp_count_is(struct pt *t, const char *want)
{
	t->calls = 0;
	q(t, "SELECT count(*) FROM pgtest_copy", 0, NULL, cb_record);
	return pt_run(t, NULL, 1, 5.0) && strcmp(t->last_val, want) == 0;
}

TEST(pg_copy_live)
{
	const char *ci = getenv("PG_TEST_CONNINFO");
	if (ci == NULL || *ci == '\0') {
		printf("     (pg_copy_live: PG_TEST_CONNINFO not set, nothing run)\n");
		return;
	}
	int fds0 = count_fds();
	enum log_level saved = log_enabled(LOG_DEBUG) ? LOG_DEBUG : log_enabled(LOG_INFO) ? LOG_INFO : LOG_WARN;
	log_set_level(getenv("PG_TEST_DEBUG") ? LOG_DEBUG : LOG_ERROR);
	struct pt t;
	pt_init(&t);
	t.p = pg_pool_new(t.loop, ci, 2, 500, "pgcopy");
	CHECK(pt_run(&t, pool_up, 0, 5.0));
	/* one after the other: the pool runs queries side by side */
	q(&t, "DROP TABLE IF EXISTS pgtest_copy", 0, NULL, cb_record);
	CHECK(pt_run(&t, NULL, 1, 5.0));
	q(&t, "CREATE TABLE pgtest_copy (k int, b bytea)", 0, NULL, cb_record);
	CHECK(pt_run(&t, NULL, 2, 5.0));
	CHECK_EQ_INT(t.errors, 0);

	/* Binary COPY (PostgreSQL docs, "Binary Format"): signature, flags,
	 * header extension length; per tuple a field count and each field's
	 * length and octets; the trailer is a field count of -1. */
	static const char sig[11] = "PGCOPY\n\377\r\n";
	char head[19 + 2 + 4 + 4 + 4];
	memcpy(head, sig, 11);
	put32(head + 11, 0);
	put32(head + 15, 0);
	head[19] = 0;
	head[20] = 2;
	put32(head + 21, 4);
	put32(head + 25, 1);	/* k = 1 */
	const uint64_t total = 24u << 20;
	put32(head + 29, (uint32_t)total);
	static const char tail[2] = { '\377', '\377' };
	static const char pat[] = "0123456789abcdefghijklmnopqrstuvwxyz\r\n\0\377";

	struct cp c = { .t = &t, .pattern = pat, .plen = sizeof(pat), .total = total, .head = head,
			.headlen = sizeof(head), .tail = tail, .taillen = 2 };
	c.md = EVP_MD_CTX_new();
	EVP_DigestInit_ex(c.md, EVP_sha256(), NULL);
	t.calls = t.errors = 0;
	t.max_gap = 0;
	t.last_tick = 0;
	c.req = pg_copy_in(t.p, "COPY pgtest_copy (k, b) FROM STDIN (FORMAT binary)", cp_source, cb_cp, &c);
	CHECK(c.req != NULL);
	CHECK_EQ_INT(t.calls, 0);
	CHECK(pt_run(&t, NULL, 1, 30.0));
	CHECK(t.last_err[0] == '\0');
	CHECK(c.sent == total);
	CHECK(c.max_cap <= PG_COPY_CHUNK);
	/* the loop kept turning while 24 MiB went out */
	CHECK(t.max_gap < 0.25);
	unsigned char md[32];
	unsigned mdlen = 0;
	EVP_DigestFinal_ex(c.md, md, &mdlen);
	EVP_MD_CTX_free(c.md);
	char hex[65];
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	char len[24];
	snprintf(len, sizeof(len), "%llu", (unsigned long long)total);
	const char *hv[2] = { hex, len };
	t.calls = 0;
	q(&t, "SELECT encode(sha256(b), 'hex') = $1 AND length(b) = $2::int FROM pgtest_copy WHERE k = 1", 2, hv,
	  cb_record);
	CHECK(pt_run(&t, NULL, 1, 10.0));
	CHECK(strcmp(t.last_val, "t") == 0);

	/* text format, a few octets */
	struct cp tc = { .t = &t, .pattern = "2\t\\\\x41\n", .plen = 8, .total = 8 };
	t.calls = 0;
	tc.req = pg_copy_in(t.p, "COPY pgtest_copy (k, b) FROM STDIN", cp_source, cb_cp, &tc);
	CHECK(pt_run(&t, NULL, 1, 5.0));
	CHECK(t.last_err[0] == '\0');
	t.calls = 0;
	q(&t, "SELECT b FROM pgtest_copy WHERE k = 2", 0, NULL, cb_record);
	CHECK(pt_run(&t, NULL, 1, 5.0));
	CHECK(strcmp(t.last_val, "\\x41") == 0);

	/* the source fails: rolled back, "copy source failed" */
	struct cp fc = { .t = &t, .pattern = "3\t\\\\x42\n", .plen = 8, .total = UINT64_MAX, .fail_at = 5 };
	t.calls = 0;
	fc.req = pg_copy_in(t.p, "COPY pgtest_copy (k, b) FROM STDIN", cp_source, cb_cp, &fc);
	CHECK(pt_run(&t, NULL, 1, 5.0));
	CHECK(strcmp(t.last_err, "copy source failed") == 0);
	CHECK(strcmp(t.last_state, "") == 0);
	CHECK_EQ_INT(fc.calls, 5);
	CHECK(cp_count_is(&t, "2"));

	/* the source cancels its own request: never called back, never called
	 * again, nothing committed, both connections keep serving */
	struct cp cc = { .t = &t, .pattern = "4\t\\\\x43\n", .plen = 8, .total = UINT64_MAX, .cancel_at = 4 };
	t.calls = 0;
	cc.req = pg_copy_in(t.p, "COPY pgtest_copy (k, b) FROM STDIN", cp_source, cb_cp_victim, &cc);
	t.victim_calls = 0;
	for (int i = 0; i < 40 && cc.calls < 4; i++)
		ev_run(t.loop, EVRUN_ONCE);
	CHECK_EQ_INT(cc.calls, 4);
	for (int i = 0; i < 4; i++)
		q(&t, "SELECT 1", 0, NULL, cb_record);
	CHECK(pt_run(&t, NULL, 4, 5.0));
	CHECK_EQ_INT(t.errors, 1);	/* the failed one above */
	CHECK_EQ_INT(cc.calls, 4);
	CHECK_EQ_INT(t.victim_calls, 0);
	CHECK(cp_count_is(&t, "2"));
	struct pg_stats st;
	pg_pool_stats(t.p, &st);
	CHECK_EQ_INT(st.conns_up, 2);

	/* the server refuses the statement: the source is never asked */
	struct cp ec = { .t = &t, .pattern = "x", .plen = 1, .total = 1 };
	t.calls = 0;
	pg_copy_in(t.p, "COPY pgtest_nosuch (k) FROM STDIN", cp_source, cb_cp, &ec);
	CHECK(pt_run(&t, NULL, 1, 5.0));
	CHECK(strcmp(t.last_state, "42P01") == 0);
	CHECK_EQ_INT(ec.calls, 0);

	/* the backend is killed while the data flows: "connection lost",
	 * nothing committed, the pool reconnects */
	struct cp kc = { .t = &t, .pattern = "5\t\\\\x44\n", .plen = 8, .total = UINT64_MAX, .kill_at = 3 };
	t.calls = 0;
	t.errors = 0;
	pg_copy_in(t.p, "COPY pgtest_copy (k, b) FROM STDIN", cp_source, cb_cp, &kc);
	CHECK(pt_run(&t, NULL, 2, 20.0));
	CHECK_EQ_INT(t.errors, 1);
	CHECK(kc.sent < ((uint64_t)2 << 30));
	t.calls = 0;
	q(&t, "SELECT count(*) FROM pgtest_copy WHERE k = 5", 0, NULL, cb_record);
	CHECK(pt_run(&t, NULL, 1, 10.0));
	CHECK(strcmp(t.last_val, "0") == 0);
	ev_tstamp until = ev_time() + 3.0;
	while (ev_time() < until && (pg_pool_stats(t.p, &st), st.conns_up < 2))
		ev_run(t.loop, EVRUN_ONCE);
	CHECK_EQ_INT(st.conns_up, 2);

	t.calls = 0;
	q(&t, "DROP TABLE pgtest_copy", 0, NULL, cb_record);
	CHECK(pt_run(&t, NULL, 1, 5.0));
	pt_done(&t);
	log_set_level(saved);
	CHECK_EQ_INT(count_fds(), fds0);
}
