/* Unit tests for notify (and its libev adapter) against a real nats-server.
 *
 * The test starts nats-server itself on free loopback ports and stops it
 * again; nats-server must be on PATH (it is a required package): without
 * it the test fails, it does not skip.  Every wait is bounded.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ev.h>

#include "lib/config.h"
#include "lib/log.h"
#include "lib/util.h"
#include "notify/notify.h"
#include "tests/unit/unit.h"

extern char **environ;

/* ---- nats-server -------------------------------------------------------- */

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return ntohs(a.sin_port);
}

static bool port_open(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* Start nats-server on 127.0.0.1:port and wait (up to 5 s) until it
 * accepts connections.  Returns its pid, or -1. */
static pid_t nats_start(int port)
{
	char portstr[16];
	snprintf(portstr, sizeof(portstr), "%d", port);
	char *argv[] = { "nats-server", "-a", "127.0.0.1", "-p", portstr, NULL };
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	pid_t pid;
	int rc = posix_spawnp(&pid, "nats-server", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0) {
		fprintf(stderr, "    cannot start nats-server: %s\n", strerror(rc));
		return -1;
	}
	for (int i = 0; i < 500; i++) {
		if (port_open(port))
			return pid;
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			fprintf(stderr, "    nats-server exited at start (status %d)\n", st);
			return -1;
		}
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -1;
}

static void nats_stop(pid_t *pid, int sig)
{
	if (*pid <= 0)
		return;
	kill(*pid, sig);
	waitpid(*pid, NULL, 0);
	*pid = -1;
}

/* ---- loop helpers ------------------------------------------------------- */

struct t {
	struct ev_loop *loop;
	pthread_t main;
	ev_timer tick;
	int ticks;
	ev_tstamp last_tick, max_gap;
	int state_true, state_false;
	bool state;
	/* ordered stream */
	int received, next, order_errors, wrong_thread;
	/* unsubscribe while queued */
	struct notify *n;
	struct notify_sub *self_unsub;
	int self_unsub_calls;
	/* round trips */
	int got_a, got_b;
	/* bounded queue */
	struct notify *small;
	int slow_calls;
};

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct t *t = w->data;
	ev_tstamp now = ev_time();
	if (t->last_tick > 0 && now - t->last_tick > t->max_gap)
		t->max_gap = now - t->last_tick;
	t->last_tick = now;
	t->ticks++;
}

static void reset_ticks(struct t *t)
{
	t->ticks = 0;
	t->max_gap = 0;
	t->last_tick = 0;
}

static bool run_until(struct t *t, bool (*pred)(struct t *), double timeout)
{
	ev_tstamp end = ev_time() + timeout;
	while (!pred(t)) {
		if (ev_time() > end)
			return false;
		ev_run(t->loop, EVRUN_ONCE);
	}
	return true;
}

static bool never(struct t *t)
{
	return false;
}

static void state_cb(void *arg, bool connected)
{
	struct t *t = arg;
	t->state = connected;
	if (connected)
		t->state_true++;
	else
		t->state_false++;
	if (!pthread_equal(pthread_self(), t->main))
		t->wrong_thread++;
}

static void ordered_cb(void *arg, const char *subject, const char *data, size_t len)
{
	struct t *t = arg;
	if (!pthread_equal(pthread_self(), t->main))
		t->wrong_thread++;
	char buf[32];
	snprintf(buf, sizeof(buf), "%d", t->next);
	if (len != strlen(buf) || memcmp(data, buf, len) != 0 || data[len] != '\0' || strcmp(subject, "t.1.2") != 0)
		t->order_errors++;
	t->next++;
	t->received++;
}

static void self_unsub_cb(void *arg, const char *subject, const char *data, size_t len)
{
	struct t *t = arg;
	t->self_unsub_calls++;
	/* Hold the loop a little so nats.c's delivery thread queues more
	 * for this subscription, then drop it with messages still queued. */
	usleep(100000);
	notify_unsubscribe(t->n, &t->self_unsub);
}

static void slow_cb(void *arg, const char *subject, const char *data, size_t len)
{
	struct t *t = arg;
	/* The first message holds the loop while the rest pile up. */
	if (t->slow_calls++ == 0)
		usleep(300000);
}

static bool small_up(struct t *t)
{
	return notify_connected(t->small);
}

static bool small_done(struct t *t)
{
	struct notify_stats st;
	notify_stats(t->small, &st);
	return st.delivered + st.queue_dropped >= 500;
}

static void a_cb(void *arg, const char *subject, const char *data, size_t len)
{
	((struct t *)arg)->got_a++;
}

static void b_cb(void *arg, const char *subject, const char *data, size_t len)
{
	((struct t *)arg)->got_b++;
}

static bool is_up(struct t *t)
{
	return t->state && t->state_true > 0;
}

static bool is_down(struct t *t)
{
	return !t->state;
}

static bool got_1000(struct t *t)
{
	return t->received >= 1000;
}

static bool got_a(struct t *t)
{
	return t->got_a > 0;
}

static bool got_ab(struct t *t)
{
	return t->got_a > 0 && t->got_b > 0;
}

static void test_cfg(struct config *cfg, int port)
{
	char err[256];
	if (config_load(cfg, NULL, err, sizeof(err)) < 0)
		abort();
	free(cfg->nats_url);
	char url[64];
	snprintf(url, sizeof(url), "nats://127.0.0.1:%d", port);
	cfg->nats_url = xstrdup(url);
	free(cfg->nats_subject_prefix);
	cfg->nats_subject_prefix = xstrdup("t");
}

/* ---- tests -------------------------------------------------------------- */

TEST(notify_subjects)
{
	char s[64];
	CHECK_EQ_INT(notify_subject_mailbox(s, sizeof(s), "mail", 7, 123456789012LL), 19);
	CHECK(strcmp(s, "mail.7.123456789012") == 0);
	CHECK(notify_subject_tenant(s, sizeof(s), "mail", 42) > 0);
	CHECK(strcmp(s, "mail.42.>") == 0);
	CHECK(notify_subject_mailbox(s, 8, "mail", 7, 123456789012LL) < 0);	/* too small */
	CHECK(notify_subject_mailbox(s, sizeof(s), "", 1, 2) < 0);
	CHECK(notify_subject_mailbox(s, sizeof(s), "a b", 1, 2) < 0);
	CHECK(notify_subject_mailbox(s, sizeof(s), "a..b", 1, 2) < 0);
	CHECK(notify_subject_mailbox(s, sizeof(s), "a.*", 1, 2) < 0);
	CHECK(notify_subject_mailbox(s, sizeof(s), "prod.mail", 1, 2) > 0);
}

static int count_fds(void)
{
	int n = 0;
	for (int fd = 0; fd < 1024; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			n++;
	return n;
}

TEST(notify_nats)
{
	int fds0 = count_fds();
	struct t t;
	memset(&t, 0, sizeof(t));
	t.main = pthread_self();
	t.loop = ev_loop_new(EVFLAG_AUTO);
	CHECK(t.loop != NULL);
	ev_timer_init(&t.tick, tick_cb, 0.01, 0.01);
	t.tick.data = &t;
	ev_timer_start(t.loop, &t.tick);
	enum log_level saved = log_enabled(LOG_DEBUG) ? LOG_DEBUG : log_enabled(LOG_INFO) ? LOG_INFO : LOG_WARN;
	/* Keep the expected warnings out of the output (NOTIFY_TEST_DEBUG=1
	 * shows everything). */
	log_set_level(getenv("NOTIFY_TEST_DEBUG") ? LOG_DEBUG : LOG_ERROR);

	/* 1. A server up: 1000 messages arrive in order on the loop thread. */
	int port = free_port();
	pid_t srv = nats_start(port);
	CHECK(srv > 0);
	struct config cfg;
	test_cfg(&cfg, port);
	struct notify *n = notify_new(t.loop, &cfg, "test", state_cb, &t);
	t.n = n;
	CHECK(run_until(&t, is_up, 5.0));
	CHECK(notify_connected(n));
	CHECK_EQ_INT(t.state_true, 1);
	CHECK(notify_subscribe(n, "t..x", ordered_cb, &t) == NULL);
	CHECK(notify_subscribe(n, "t.>.x", ordered_cb, &t) == NULL);
	CHECK(notify_publish(n, "t.*", "x", 1) < 0);
	struct notify_sub *s1 = notify_subscribe(n, "t.1.2", ordered_cb, &t);
	CHECK(s1 != NULL);
	for (int i = 0; i < 1000; i++) {
		char buf[32];
		int len = snprintf(buf, sizeof(buf), "%d", i);
		CHECK_EQ_INT(notify_publish(n, "t.1.2", buf, (size_t)len), 0);
	}
	CHECK(run_until(&t, got_1000, 5.0));
	CHECK_EQ_INT(t.received, 1000);
	CHECK_EQ_INT(t.order_errors, 0);
	CHECK_EQ_INT(t.wrong_thread, 0);
	struct notify_stats st;
	notify_stats(n, &st);
	CHECK_EQ_INT(st.delivered, 1000);
	CHECK_EQ_INT(st.queue_dropped, 0);
	CHECK(st.published >= 1000);

	/* 2. Unsubscribe (from the callback) while messages for it are
	 * queued: the callback is not called again, no use after free. */
	uint64_t stale0 = st.stale;
	t.self_unsub = notify_subscribe(n, "t.1.3", self_unsub_cb, &t);
	CHECK(t.self_unsub != NULL);
	for (int i = 0; i < 500; i++)
		notify_publish(n, "t.1.3", "m", 1);
	run_until(&t, never, 0.8);
	CHECK_EQ_INT(t.self_unsub_calls, 1);
	CHECK(t.self_unsub == NULL);
	notify_stats(n, &st);
	CHECK(st.stale > stale0);	/* some were queued when it went away */
	/* and unsubscribing one that has traffic queued, from outside */
	struct notify_sub *s2 = notify_subscribe(n, "t.1.4", a_cb, &t);
	for (int i = 0; i < 200; i++)
		notify_publish(n, "t.1.4", "m", 1);
	notify_unsubscribe(n, &s2);
	CHECK(s2 == NULL);
	notify_unsubscribe(n, &s1);
	run_until(&t, never, 0.3);
	CHECK_EQ_INT(t.got_a, 0);
	CHECK_EQ_INT(t.received, 1000);

	/* nats_max_pending bounds the queue towards the loop: with the loop
	 * held, what does not fit is dropped and counted; nothing is lost
	 * silently (delivered + dropped = sent). */
	struct config cfgs;
	test_cfg(&cfgs, port);
	cfgs.nats_max_pending = 16;
	t.small = notify_new(t.loop, &cfgs, "small", NULL, NULL);
	CHECK(run_until(&t, small_up, 5.0));
	struct notify_sub *ss = notify_subscribe(t.small, "t.1.5", slow_cb, &t);
	CHECK(ss != NULL);
	run_until(&t, never, 0.2);	/* SUB reaches the server */
	for (int i = 0; i < 500; i++)
		notify_publish(n, "t.1.5", "m", 1);
	CHECK(run_until(&t, small_done, 5.0));
	struct notify_stats sst;
	notify_stats(t.small, &sst);
	CHECK_EQ_INT(sst.delivered + sst.queue_dropped, 500);
	CHECK(sst.queue_dropped > 0);
	CHECK(sst.delivered >= 16);
	notify_free(&t.small);
	config_free(&cfgs);

	notify_free(&n);
	CHECK(n == NULL);
	nats_stop(&srv, SIGTERM);

	/* 3. NATS down at start: the loop runs, nothing connects; then the
	 * server starts and the subscription made while down works. */
	memset(&t.state_true, 0, sizeof(t) - offsetof(struct t, state_true));
	int port2 = free_port();
	struct config cfg2;
	test_cfg(&cfg2, port2);
	reset_ticks(&t);
	n = notify_new(t.loop, &cfg2, "test2", state_cb, &t);
	t.n = n;
	struct notify_sub *sa = notify_subscribe(n, "t.9.9", a_cb, &t);
	CHECK(sa != NULL);
	CHECK(notify_publish(n, "t.9.9", "x", 1) < 0);
	run_until(&t, never, 1.0);
	CHECK(t.ticks >= 50);
	CHECK(t.max_gap < 0.25);
	CHECK(!notify_connected(n));
	CHECK_EQ_INT(t.state_true, 0);
	srv = nats_start(port2);
	CHECK(srv > 0);
	CHECK(run_until(&t, is_up, 5.0));
	CHECK_EQ_INT(t.state_true, 1);
	CHECK(notify_connected(n));
	CHECK_EQ_INT(notify_publish(n, "t.9.9", "hello", 5), 0);
	CHECK(run_until(&t, got_a, 3.0));

	/* 4. Kill the server: disconnected; restart it: reconnected, the old
	 * subscription delivers (nats.c resubscribed) and one made while down
	 * too. */
	nats_stop(&srv, SIGKILL);
	CHECK(run_until(&t, is_down, 5.0));
	CHECK_EQ_INT(t.state_false, 1);
	CHECK(!notify_connected(n));
	CHECK(notify_publish(n, "t.9.9", "x", 1) < 0);
	struct notify_sub *sb = notify_subscribe(n, "t.9.10", b_cb, &t);
	CHECK(sb != NULL);
	struct notify_sub *sgone = notify_subscribe(n, "t.9.11", b_cb, &t);
	notify_unsubscribe(n, &sgone);
	run_until(&t, never, 0.3);
	srv = nats_start(port2);
	CHECK(srv > 0);
	CHECK(run_until(&t, is_up, 6.0));
	CHECK_EQ_INT(t.state_true, 2);
	t.got_a = t.got_b = 0;
	CHECK_EQ_INT(notify_publish(n, "t.9.9", "again", 5), 0);
	CHECK_EQ_INT(notify_publish(n, "t.9.10", "new", 3), 0);
	CHECK_EQ_INT(notify_publish(n, "t.9.11", "gone", 4), 0);
	CHECK(run_until(&t, got_ab, 3.0));
	run_until(&t, never, 0.2);
	CHECK_EQ_INT(t.got_a, 1);
	CHECK_EQ_INT(t.got_b, 1);
	notify_stats(n, &st);
	CHECK_EQ_INT(st.reconnects, 1);
	CHECK_EQ_INT(st.subscriptions, 2);
	CHECK(t.max_gap < 0.5);	/* nothing blocked the loop meanwhile */
	CHECK_EQ_INT(t.wrong_thread, 0);

	/* sa and sb are released by notify_free */
	notify_free(&n);
	nats_stop(&srv, SIGTERM);

	/* 5. A "server" that accepts TCP but never speaks: the handshake times
	 * out on nats.c's threads (3.4 then closes that connection for good,
	 * and notify makes new ones) while the loop keeps running.  When a
	 * real server takes the port over, notify connects and the
	 * subscription made meanwhile works. */
	memset(&t.state_true, 0, sizeof(t) - offsetof(struct t, state_true));
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in la = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t lalen = sizeof(la);
	int one = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	CHECK(bind(lfd, (struct sockaddr *)&la, sizeof(la)) == 0);
	CHECK(listen(lfd, 64) == 0);
	CHECK(getsockname(lfd, (struct sockaddr *)&la, &lalen) == 0);
	int port3 = ntohs(la.sin_port);
	struct config cfg3;
	test_cfg(&cfg3, port3);
	reset_ticks(&t);
	n = notify_new(t.loop, &cfg3, "test3", state_cb, &t);
	t.n = n;
	sa = notify_subscribe(n, "t.5.5", a_cb, &t);
	run_until(&t, never, 2.5);
	CHECK(!notify_connected(n));
	CHECK(t.max_gap < 0.25);
	CHECK(t.ticks >= 120);
	close(lfd);
	srv = nats_start(port3);
	CHECK(srv > 0);
	CHECK(run_until(&t, is_up, 10.0));
	CHECK_EQ_INT(notify_publish(n, "t.5.5", "x", 1), 0);
	CHECK(run_until(&t, got_a, 3.0));
	CHECK(t.max_gap < 0.25);
	notify_free(&n);
	nats_stop(&srv, SIGTERM);
	config_free(&cfg3);
	notify_global_shutdown();
	ev_timer_stop(t.loop, &t.tick);
	ev_loop_destroy(t.loop);
	config_free(&cfg);
	config_free(&cfg2);
	log_set_level(saved);
	CHECK_EQ_INT(count_fds(), fds0);	/* no socket left behind */
}
