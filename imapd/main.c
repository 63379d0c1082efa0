/* main.c - the imapd master process.
 *
 * The master binds the listeners, forks the workers, replaces a worker that
 * dies, forwards SIGHUP (reload) to the workers after checking the new
 * configuration, and on SIGTERM/SIGINT asks the workers to drain and waits
 * for them up to shutdown_timeout (plus a margin) before killing what is
 * left.  It holds no sessions and runs no event loop: it waits for signals
 * (through a signalfd) and for /metrics and /ready requests on
 * metrics_listen with poll(), single-threaded, so nothing from libev,
 * OpenSSL threads or nats.c is alive in it when it forks.  The workers'
 * counters come from a table in shared memory (stats.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <poll.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "imapd/imapd.h"
#include "imapd/stats.h"

struct child {
	pid_t pid;
	time_t started;
	unsigned quick_deaths;	/* deaths within seconds of starting, in a row */
};

static const char *config_path;
static struct config cfg;
static struct listener listeners[MAX_LISTENERS];
static int nlisteners;
static struct child *children;
static int nchildren;
static struct throttle *throttle;
static struct stats_table *stats;
static struct listener metrics;	/* fd -1: no metrics_listen */
static int sigfd = -1;

static void usage(FILE *out)
{
	fprintf(out,
		"usage: imapd [-c FILE] [--check-config] [--help]\n"
		"  -c, --config FILE  configuration file (keys below; environment overrides)\n"
		"  --check-config     load the configuration and TLS material, print it, exit\n"
		"Runs in the foreground: a master process and its workers.\n"
		"Signals: SIGTERM/SIGINT drain and exit, SIGHUP reloads configuration and TLS.\n\n");
	config_help(out);
}

static int bind_listener(const char *spec, bool tls, struct listener *l, char *err, size_t errlen)
{
	char host[256], port[16];
	if (config_split_hostport(spec, host, sizeof(host), port, sizeof(port)) < 0) {
		snprintf(err, errlen, "bad listen address '%s' (want host:port)", spec);
		return -1;
	}
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res;
	int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "%s: %s", spec, gai_strerror(rc));
		return -1;
	}
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "%s: socket: %s", spec, strerror(errno));
		freeaddrinfo(res);
		return -1;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
		snprintf(err, errlen, "%s: %s", spec, strerror(errno));
		close(fd);
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	l->fd = fd;
	l->implicit_tls = tls;
	snprintf(l->addr, sizeof(l->addr), "%s", spec);
	return 0;
}

static int open_listeners(char *err, size_t errlen)
{
	if (cfg.imap_listen[0] != '\0') {
		if (bind_listener(cfg.imap_listen, false, &listeners[nlisteners], err, errlen) < 0)
			return -1;
		nlisteners++;
	}
	if (cfg.imaps_listen[0] != '\0') {
		if (cfg.tls_cert_file[0] == '\0') {
			log_warn(NULL, "imaps_listen %s ignored: no tls_cert_file configured", cfg.imaps_listen);
		} else {
			if (bind_listener(cfg.imaps_listen, true, &listeners[nlisteners], err, errlen) < 0)
				return -1;
			nlisteners++;
		}
	}
	if (nlisteners == 0) {
		snprintf(err, errlen, "no listener configured (imap_listen, imaps_listen)");
		return -1;
	}
	return 0;
}

/* One HTTP request on the metrics listener: GET /metrics or GET /ready.
 * Served inline; the client gets a second to send its request line, and
 * the answer is small, so the master is never held for long. */
static void serve_metrics(void)
{
	int fd = accept4(metrics.fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	struct timeval tv = { 1, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	char req[1024];
	size_t n = 0;
	while (n < sizeof(req) - 1) {
		ssize_t r = read(fd, req + n, sizeof(req) - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
		req[n] = '\0';
		if (strstr(req, "\r\n\r\n") != NULL || strstr(req, "\n\n") != NULL)
			break;
	}
	req[n] = '\0';
	struct buf body = BUF_INIT, resp = BUF_INIT;
	const char *status = "404 Not Found";
	const char *type = "text/plain; charset=utf-8";
	if (strncmp(req, "GET /metrics ", 13) == 0) {
		stats_metrics(stats, nchildren, &body);
		status = "200 OK";
		type = "text/plain; version=0.0.4";
	} else if (strncmp(req, "GET /ready ", 11) == 0) {
		status = stats_ready(stats, nchildren, &body) ? "200 OK" : "503 Service Unavailable";
	} else {
		buf_puts(&body, "try /metrics or /ready\n");
	}
	buf_printf(&resp, "HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
		   status, type, body.len);
	buf_append(&resp, buf_ptr(&body), body.len);
	size_t off = 0;
	while (off < resp.len) {
		ssize_t w = write(fd, buf_ptr(&resp) + off, resp.len - off);
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	buf_free(&body);
	buf_free(&resp);
	close(fd);
}

/* Wait up to one second for a signal, serving metrics requests meanwhile.
 * Returns the signal number, or -1 on timeout. */
static int wait_signal(void)
{
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		long left = 1000 - ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000);
		if (left <= 0)
			return -1;
		struct pollfd p[2] = { { sigfd, POLLIN, 0 }, { metrics.fd, POLLIN, 0 } };
		int r = poll(p, metrics.fd >= 0 ? 2 : 1, (int)left);
		if (r < 0 && errno != EINTR)
			return -1;
		if (r <= 0)
			continue;
		if (p[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
				return (int)si.ssi_signo;
		}
		if (metrics.fd >= 0 && (p[1].revents & POLLIN))
			serve_metrics();
	}
}

static int worker_count(void)
{
	if (cfg.workers > 0)
		return (int)cfg.workers;
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

static pid_t spawn_worker(int index)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		log_error(NULL, "fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		/* The worker handles its own signals through libev. */
		sigset_t all;
		sigemptyset(&all);
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		signal(SIGCHLD, SIG_DFL);
		sigprocmask(SIG_SETMASK, &all, NULL);
		if (sigfd >= 0)
			close(sigfd);
		if (metrics.fd >= 0)
			close(metrics.fd);
		int rc = worker_main(config_path, &cfg, index, listeners, nlisteners, throttle, stats);
		config_free(&cfg);
		free(children);
		/* exit(), not _exit(): LeakSanitizer checks the worker at exit.
		 * The master flushes stdio before forking, so nothing is
		 * written twice. */
		exit(rc);
	}
	children[index].pid = pid;
	children[index].started = time(NULL);
	log_info(NULL, "worker %d started, pid %d", index, (int)pid);
	return pid;
}

static int find_child(pid_t pid)
{
	for (int i = 0; i < nchildren; i++)
		if (children[i].pid == pid)
			return i;
	return -1;
}

static int live_children(void)
{
	int n = 0;
	for (int i = 0; i < nchildren; i++)
		if (children[i].pid > 0)
			n++;
	return n;
}

static void signal_children(int sig)
{
	for (int i = 0; i < nchildren; i++)
		if (children[i].pid > 0)
			kill(children[i].pid, sig);
}

/* Collect exited workers; returns how many were reaped. */
static int reap(bool respawn)
{
	int n = 0, status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		int i = find_child(pid);
		if (i < 0)
			continue;
		n++;
		if (WIFSIGNALED(status))
			log_warn(NULL, "worker %d (pid %d) killed by signal %d", i, (int)pid, WTERMSIG(status));
		else if (WEXITSTATUS(status) != 0 || respawn)
			log_warn(NULL, "worker %d (pid %d) exited with status %d", i, (int)pid, WEXITSTATUS(status));
		else
			log_info(NULL, "worker %d (pid %d) exited", i, (int)pid);
		children[i].pid = 0;
		stats_clear(stats, i);
		if (time(NULL) - children[i].started < 2)
			children[i].quick_deaths++;
		else
			children[i].quick_deaths = 0;
	}
	return n;
}

/* Restart dead workers; one that keeps dying at start is retried at most
 * once per second so a broken configuration cannot fork-bomb the node. */
static void respawn_dead(void)
{
	time_t now = time(NULL);
	for (int i = 0; i < nchildren; i++) {
		if (children[i].pid != 0)
			continue;
		if (children[i].quick_deaths > 3 && now - children[i].started < 1)
			continue;
		spawn_worker(i);
	}
}

static void reload(void)
{
	struct config next;
	char err[512];
	if (config_load(&next, config_path, err, sizeof(err)) < 0) {
		log_error(NULL, "reload refused, keeping the running configuration: %s", err);
		config_free(&next);
		return;
	}
	if (next.tls_cert_file[0] != '\0') {
		SSL_CTX *ctx = tls_ctx_new(&next, err, sizeof(err));
		if (ctx == NULL) {
			log_error(NULL, "reload refused, keeping the running configuration: %s", err);
			config_free(&next);
			return;
		}
		SSL_CTX_free(ctx);
	}
	if (strcmp(next.imap_listen, cfg.imap_listen) != 0 || strcmp(next.imaps_listen, cfg.imaps_listen) != 0)
		log_warn(NULL, "listen addresses changed: they take effect at the next restart");
	if (next.workers != cfg.workers)
		log_warn(NULL, "workers changed: takes effect at the next restart");
	enum log_level lvl;
	if (log_parse_level(next.log_level, &lvl) == 0)
		log_set_level(lvl);
	/* Keep listeners and worker count; everything else is the new file. */
	free(next.imap_listen);
	free(next.imaps_listen);
	next.imap_listen = xstrdup(cfg.imap_listen);
	next.imaps_listen = xstrdup(cfg.imaps_listen);
	next.workers = cfg.workers;
	config_free(&cfg);
	cfg = next;
	log_info(NULL, "configuration reloaded; telling workers");
	signal_children(SIGHUP);
}

static void write_pid_file(void)
{
	if (cfg.pid_file[0] == '\0')
		return;
	FILE *f = fopen(cfg.pid_file, "w");
	if (f == NULL) {
		log_warn(NULL, "pid file %s: %s", cfg.pid_file, strerror(errno));
		return;
	}
	fprintf(f, "%d\n", (int)getpid());
	fclose(f);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool check = false;
	int o;
	while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (o) {
		case 'c': config_path = optarg; break;
		case 'C': check = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}

	log_init("imapd");
	char err[512];
	if (config_load(&cfg, config_path, err, sizeof(err)) < 0) {
		fprintf(stderr, "imapd: configuration: %s\n", err);
		config_free(&cfg);
		return 1;
	}
	enum log_level lvl;
	if (log_parse_level(cfg.log_level, &lvl) < 0) {
		fprintf(stderr, "imapd: configuration: log_level: unknown level '%s'\n", cfg.log_level);
		config_free(&cfg);
		return 1;
	}
	log_set_level(lvl);
	if (cfg.tls_cert_file[0] != '\0') {
		SSL_CTX *ctx = tls_ctx_new(&cfg, err, sizeof(err));
		if (ctx == NULL) {
			fprintf(stderr, "imapd: TLS: %s\n", err);
			config_free(&cfg);
			return 1;
		}
		SSL_CTX_free(ctx);
	}
	if (check) {
		config_dump(&cfg, stdout);
		printf("# configuration OK\n");
		config_free(&cfg);
		return 0;
	}

	/* Signals are taken synchronously, through a signalfd. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (open_listeners(err, sizeof(err)) < 0) {
		log_error(NULL, "%s", err);
		config_free(&cfg);
		return 1;
	}
	write_pid_file();

	metrics.fd = -1;
	if (cfg.metrics_listen[0] != '\0') {
		if (bind_listener(cfg.metrics_listen, false, &metrics, err, sizeof(err)) < 0) {
			log_error(NULL, "metrics_listen: %s", err);
			config_free(&cfg);
			return 1;
		}
		log_info(NULL, "metrics and readiness on http://%s/metrics and /ready", cfg.metrics_listen);
	}
	sigfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (sigfd < 0) {
		log_error(NULL, "signalfd: %s", strerror(errno));
		config_free(&cfg);
		return 1;
	}
	throttle = throttle_new((size_t)cfg.login_fail_addresses);
	nchildren = worker_count();
	stats = stats_new(nchildren);
	children = xcalloc((size_t)nchildren, sizeof(*children));
	for (int i = 0; i < nlisteners; i++)
		log_info(NULL, "listening on %s (%s)", listeners[i].addr,
			 listeners[i].implicit_tls ? "implicit TLS" : "plain, STARTTLS");
	for (int i = 0; i < nchildren; i++)
		spawn_worker(i);

	bool stopping = false;
	struct timespec deadline = { 0, 0 };
	for (;;) {
		int sig = wait_signal();
		if (sig == SIGCHLD || sig < 0) {
			reap(!stopping);
			if (!stopping)
				respawn_dead();
		} else if ((sig == SIGTERM || sig == SIGINT) && !stopping) {
			stopping = true;
			log_info(NULL, "draining: stopping workers (deadline %llds)", (long long)cfg.shutdown_timeout);
			/* Workers stop accepting; close our copies too so new
			 * connections are refused at once. */
			for (int i = 0; i < nlisteners; i++)
				close(listeners[i].fd);
			signal_children(SIGTERM);
			clock_gettime(CLOCK_MONOTONIC, &deadline);
			deadline.tv_sec += cfg.shutdown_timeout + 3;
		} else if (sig == SIGHUP && !stopping) {
			reload();
		}
		if (stopping) {
			reap(false);
			if (live_children() == 0)
				break;
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec >= deadline.tv_sec) {
				log_warn(NULL, "workers did not finish in time: killing them");
				signal_children(SIGKILL);
				deadline.tv_sec = now.tv_sec + 5;
			}
		}
	}
	if (cfg.pid_file[0] != '\0')
		unlink(cfg.pid_file);
	log_info(NULL, "stopped");
	throttle_free(&throttle);
	stats_free(&stats, nchildren);
	if (metrics.fd >= 0)
		close(metrics.fd);
	close(sigfd);
	config_free(&cfg);
	free(children);
	return 0;
}
