/* Unit test for storaged's housekeeping framework, without a server: a pool
 * pointed at a closed loopback port makes every step fail, so the job must
 * count failures and retry with back-off, never complete a run, keep the
 * loop running freely, and free cleanly with a timer armed or a query in
 * flight.  The jobs against a real database are tested in
 * tests/test_expiry.py. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#include "lib/config.h"
#include "lib/log.h"
#include "lib/pg.h"
#include "storaged/housekeeping.h"
#include "tests/unit/unit.h"

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

struct ticker {
	ev_timer w;
	ev_tstamp last, max_gap;
};

static void tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ticker *t = (struct ticker *)w;
	ev_tstamp now = ev_time();
	if (t->last > 0 && now - t->last > t->max_gap)
		t->max_gap = now - t->last;
	t->last = now;
}

static void run_for(struct ev_loop *loop, double seconds)
{
	ev_tstamp end = ev_time() + seconds;
	while (ev_time() < end)
		ev_run(loop, EVRUN_ONCE);
}

TEST(hk_offline_backoff)
{
	enum log_level saved = log_enabled(LOG_DEBUG) ? LOG_DEBUG : log_enabled(LOG_INFO) ? LOG_INFO : LOG_WARN;
	log_set_level(LOG_ERROR);
	struct config cfg;
	char err[256];
	CHECK(config_load(&cfg, NULL, err, sizeof(err)) == 0);
	cfg.tombstone_expiry_interval = 1;	/* first run after 1 s, retries every 1 s */

	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	char ci[128];
	snprintf(ci, sizeof(ci), "host=127.0.0.1 port=%d dbname=x user=x connect_timeout=2", closed_port());
	struct pg_pool *pool = pg_pool_new(loop, ci, 1, 200, "hktest");
	struct hk *hk = hk_new(loop, pool, &cfg);
	struct hk_job_stats st;
	CHECK(hk_job_stats(hk, "no-such-job", &st) == -1);
	CHECK(hk_job_stats(hk, "tombstones", &st) == 0);
	CHECK_EQ_INT(st.failures, 0);

	struct ticker t = { .last = 0, .max_gap = 0 };
	ev_timer_init(&t.w, tick, 0.05, 0.05);
	ev_timer_start(loop, &t.w);
	run_for(loop, 2.6);
	CHECK(hk_job_stats(hk, "tombstones", &st) == 0);
	/* Failures at about 1 s and 2 s; a loaded machine may be late. */
	CHECK(st.failures >= 1 && st.failures <= 3);
	CHECK_EQ_INT(st.runs, 0);
	CHECK_EQ_INT(st.steps, 0);
	CHECK_EQ_INT(st.total, 0);
	/* Nothing blocked the loop (connect attempts are asynchronous). */
	CHECK(t.max_gap < 0.5);

	/* Freed with its timer armed and maybe a query queued: nothing is
	 * called afterwards, nothing leaks (ASan build). */
	hk_free(&hk);
	CHECK(hk == NULL);
	hk_free(&hk);
	run_for(loop, 0.2);
	ev_timer_stop(loop, &t.w);
	pg_pool_free(&pool);
	ev_loop_destroy(loop);
	config_free(&cfg);
	log_set_level(saved);
}
