/* storaged - the delivery and housekeeping daemon.
 *
 *   storaged [-c FILE] [--check-config] [--help]
 *
 * One libev loop with the PostgreSQL pool and the NATS notification
 * connection, both logged as they come up and go down and retried for as
 * long as the process runs, a periodic `SELECT 1` so a dropped database
 * connection is noticed and re-made, the periodic housekeeping jobs
 * (housekeeping.c: tombstone expiry today), a pid file, and a clean exit on
 * SIGTERM/SIGINT.  LMTP delivery (RFC 2033) and the other jobs (blob
 * removal, quota recount) come next.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "lib/config.h"
#include "lib/httpd.h"
#include "lib/log.h"
#include "lib/pg.h"
#include "notify/notify.h"
#include "storaged/housekeeping.h"

/* How often the pool is asked for a trivial query. */
#define HEALTH_INTERVAL 5.0

struct storaged {
	struct ev_loop *loop;
	const struct config *cfg;
	struct log_ctx log;
	struct pg_pool *pg;
	struct notify *notify;
	struct hk *hk;		/* periodic jobs */
	struct pg_req *health;	/* running health query */
	struct httpd *http;	/* /ready and /metrics on metrics_listen */
	ev_timer health_timer;
	ev_signal sigterm, sigint;
	int exit_signal;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: storaged [-c FILE] [--check-config] [--help]\n"
		"\n"
		"  -c FILE          read the configuration from FILE (environment variables override it)\n"
		"  --check-config   load and check the configuration, print it, and exit\n"
		"  --help           this text and the configuration keys\n"
		"\n");
}

static void health_done(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	struct storaged *sd = arg;
	sd->health = NULL;
	/* The pool logs up/down transitions itself; this query only makes
	 * sure an idle pool notices a lost connection. */
	if (err != NULL)
		log_debug(&sd->log, "health query: %s", err);
}

static void health_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct storaged *sd = w->data;
	if (sd->health == NULL)
		sd->health = pg_query(sd->pg, "SELECT 1", 0, NULL, NULL, NULL, 0, health_done, sd);
}

/* GET /ready: 200 while PostgreSQL is reachable; NATS down is said but
 * does not make storaged unready (it serves without it, DESIGN.md
 * invariant 5).  GET /metrics: Prometheus text. */
static const char *http_handler(void *arg, const char *path, struct buf *body)
{
	struct storaged *sd = arg;
	bool pg = pg_pool_up(sd->pg), nats = notify_connected(sd->notify);
	if (strcmp(path, "/ready") == 0) {
		buf_printf(body, "postgresql %s, nats %s\n%s\n", pg ? "up" : "down",
			   nats ? "up" : "down (watchers converge through their periodic check)",
			   pg ? "ready" : "not ready");
		return pg ? "200 OK" : "503 Service Unavailable";
	}
	if (strcmp(path, "/metrics") == 0) {
		buf_printf(body, "# TYPE storaged_postgresql_up gauge\nstoraged_postgresql_up %d\n", pg);
		buf_printf(body, "# TYPE storaged_nats_up gauge\nstoraged_nats_up %d\n", nats);
		static const char *const jobs[] = { "tombstones", "append-stage" };
		buf_puts(body, "# TYPE storaged_job_runs_total counter\n"
			       "# TYPE storaged_job_failures_total counter\n"
			       "# TYPE storaged_job_items_total counter\n");
		for (size_t i = 0; i < ARRAY_SIZE(jobs); i++) {
			struct hk_job_stats st;
			if (hk_job_stats(sd->hk, jobs[i], &st) < 0)
				continue;
			buf_printf(body, "storaged_job_runs_total{job=\"%s\"} %llu\n", jobs[i],
				   (unsigned long long)st.runs);
			buf_printf(body, "storaged_job_failures_total{job=\"%s\"} %llu\n", jobs[i],
				   (unsigned long long)st.failures);
			buf_printf(body, "storaged_job_items_total{job=\"%s\"} %llu\n", jobs[i],
				   (unsigned long long)st.total);
		}
		return "200 OK";
	}
	buf_puts(body, "try /metrics or /ready\n");
	return "404 Not Found";
}

static void notify_state(void *arg, bool connected)
{
	struct storaged *sd = arg;
	/* notify logs the transition; deliveries will publish only while
	 * connected (and drop, counted, otherwise). */
	log_debug(&sd->log, "notifications %s", connected ? "on" : "off");
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct storaged *sd = w->data;
	sd->exit_signal = w->signum;
	ev_break(loop, EVBREAK_ALL);
}

static int write_pid_file(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	ssize_t w = write(fd, buf, (size_t)n);
	int saved = errno;
	close(fd);
	if (w != n) {
		errno = w < 0 ? saved : EIO;
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *config_path = NULL;
	bool check_only = false;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
			config_path = argv[++i];
		} else if (strcmp(argv[i], "--check-config") == 0) {
			check_only = true;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			config_help(stdout);
			return 0;
		} else {
			fprintf(stderr, "storaged: unknown argument '%s'\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}

	log_init("storaged");
	struct config cfg;
	char err[512];
	if (config_load(&cfg, config_path, err, sizeof(err)) < 0) {
		fprintf(stderr, "storaged: %s\n", err);
		config_free(&cfg);
		return 1;
	}
	enum log_level lvl;
	if (log_parse_level(cfg.log_level, &lvl) < 0) {
		fprintf(stderr, "storaged: log_level: unknown level '%s'\n", cfg.log_level);
		config_free(&cfg);
		return 1;
	}
	log_set_level(lvl);
	if (pg_conninfo_check(cfg.pg_conninfo, err, sizeof(err)) < 0) {
		fprintf(stderr, "storaged: pg_conninfo: %s\n", err);
		config_free(&cfg);
		return 1;
	}
	if (check_only) {
		config_dump(&cfg, stdout);
		printf("# configuration OK\n");
		config_free(&cfg);
		return 0;
	}

	signal(SIGPIPE, SIG_IGN);
	struct storaged sd;
	memset(&sd, 0, sizeof(sd));
	sd.cfg = &cfg;
	sd.loop = ev_default_loop(EVFLAG_AUTO);
	if (sd.loop == NULL) {
		log_error(NULL, "cannot create the event loop");
		config_free(&cfg);
		return 1;
	}

	bool pid_written = false;
	if (cfg.pid_file[0] != '\0') {
		if (write_pid_file(cfg.pid_file) < 0) {
			log_error(NULL, "pid file %s: %s", cfg.pid_file, strerror(errno));
			ev_loop_destroy(sd.loop);
			config_free(&cfg);
			return 1;
		}
		pid_written = true;
	}

	ev_signal_init(&sd.sigterm, signal_cb, SIGTERM);
	sd.sigterm.data = &sd;
	ev_signal_start(sd.loop, &sd.sigterm);
	ev_signal_init(&sd.sigint, signal_cb, SIGINT);
	sd.sigint.data = &sd;
	ev_signal_start(sd.loop, &sd.sigint);

	sd.pg = pg_pool_new(sd.loop, cfg.pg_conninfo, (int)cfg.pg_pool_size, (int)cfg.pg_retry_max_ms, NULL);
	sd.notify = notify_new(sd.loop, &cfg, NULL, notify_state, &sd);

	ev_timer_init(&sd.health_timer, health_cb, HEALTH_INTERVAL, HEALTH_INTERVAL);
	sd.health_timer.data = &sd;
	ev_timer_start(sd.loop, &sd.health_timer);
	sd.hk = hk_new(sd.loop, sd.pg, &cfg);
	if (cfg.metrics_listen[0] != '\0') {
		sd.http = httpd_new(sd.loop, cfg.metrics_listen, http_handler, &sd, err, sizeof(err));
		if (sd.http == NULL)
			log_warn(NULL, "metrics_listen: %s; no /ready or /metrics", err);
		else
			log_info(NULL, "metrics and readiness on http://%s/metrics and /ready", cfg.metrics_listen);
	}

	log_info(NULL, "storaged started (node %s; LMTP delivery not implemented yet)", cfg.node_name);
	ev_run(sd.loop, 0);
	log_info(NULL, "storaged stopping (signal %d)", sd.exit_signal);

	ev_timer_stop(sd.loop, &sd.health_timer);
	ev_signal_stop(sd.loop, &sd.sigterm);
	ev_signal_stop(sd.loop, &sd.sigint);
	httpd_free(&sd.http);
	hk_free(&sd.hk);	/* cancels its query before the pool goes */
	pg_pool_free(&sd.pg);	/* a running health query gets "shutting down" */
	notify_free(&sd.notify);
	notify_global_shutdown();
	if (pid_written && unlink(cfg.pid_file) < 0 && errno != ENOENT)
		log_warn(NULL, "pid file %s: %s", cfg.pid_file, strerror(errno));
	ev_loop_destroy(sd.loop);
	config_free(&cfg);
	log_info(NULL, "storaged stopped");
	return 0;
}
