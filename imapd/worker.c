/* worker.c - one imapd worker: a libev loop accepting and serving sessions.
 *
 * Nothing here blocks: sockets are non-blocking, PostgreSQL goes through the
 * asynchronous pool (lib/pg.c), NATS through the libev adapter (notify/),
 * password hashing through a small thread pool (auth.c).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imapd/imapd.h"
#include "imapd/stats.h"
#include "imapd/watch.h"
#include "lib/pg.h"
#include "notify/notify.h"

static struct worker *the_worker;

static void accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct listener *l = io->data;
	struct worker *w = ev_userdata(loop);

	/* Take a bounded batch so one busy listener cannot starve the loop. */
	for (int i = 0; i < 64 && !w->draining; i++) {
		struct sockaddr_storage sa;
		socklen_t salen = sizeof(sa);
		int fd = accept4(l->fd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
			    errno == ECONNABORTED)
				return;
			if (errno == EMFILE || errno == ENFILE) {
				log_error(&w->log, "accept on %s: %s", l->addr, strerror(errno));
				return;
			}
			log_warn(&w->log, "accept on %s: %s", l->addr, strerror(errno));
			return;
		}
		if (w->nsessions >= (unsigned)w->cfg->max_sessions) {
			static const char bye[] = "* BYE [UNAVAILABLE] Too many connections on this server, try again\r\n";
			if (!l->implicit_tls) {
				ssize_t r = write(fd, bye, sizeof(bye) - 1);
				(void)r;
			}
			close(fd);
			log_warn(&w->log, "refused a connection: max_sessions (%lld) reached",
				 (long long)w->cfg->max_sessions);
			continue;
		}
		w->n_accepted++;
		session_start(w, fd, &sa, salen, l->implicit_tls);
	}
}

static void stop_listening(struct worker *w)
{
	for (int i = 0; i < w->nlisteners; i++) {
		if (w->listeners[i].fd >= 0) {
			ev_io_stop(w->loop, &w->listeners[i].io);
			close(w->listeners[i].fd);
			w->listeners[i].fd = -1;
		}
	}
}

static void maybe_finish_drain(struct worker *w)
{
	if (w->draining && w->nsessions == 0)
		ev_break(w->loop, EVBREAK_ALL);
}

static void drain_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct worker *w = ev_userdata(loop);
	log_warn(&w->log, "shutdown deadline reached with %u sessions: closing them", w->nsessions);
	struct session *s = w->sessions;
	while (s != NULL) {
		struct session *next = s->next;
		session_close(s, "shutdown deadline");
		s = next;
	}
	ev_break(loop, EVBREAK_ALL);
}

static void sigterm_cb(struct ev_loop *loop, ev_signal *sig, int revents)
{
	struct worker *w = ev_userdata(loop);
	if (w->draining)
		return;
	w->draining = true;
	log_info(&w->log, "draining %u sessions", w->nsessions);
	stop_listening(w);
	struct session *s = w->sessions;
	while (s != NULL) {
		struct session *next = s->next;
		session_drain(s);
		s = next;
	}
	ev_timer_init(&w->drain_timer, drain_timeout_cb, (ev_tstamp)w->cfg->shutdown_timeout, 0.);
	ev_timer_start(loop, &w->drain_timer);
	maybe_finish_drain(w);
}

static void sighup_cb(struct ev_loop *loop, ev_signal *sig, int revents)
{
	struct worker *w = ev_userdata(loop);
	struct config next;
	char err[512];
	if (config_load(&next, w->config_path, err, sizeof(err)) < 0) {
		log_error(&w->log, "reload refused: %s", err);
		config_free(&next);
		return;
	}
	SSL_CTX *tls = NULL;
	if (next.tls_cert_file[0] != '\0') {
		tls = tls_ctx_new(&next, err, sizeof(err));
		if (tls == NULL) {
			log_error(&w->log, "reload refused: %s", err);
			config_free(&next);
			return;
		}
	}
	/* Sessions already in TLS keep a reference to the old context
	 * (SSL objects hold their SSL_CTX); new ones get the new one. */
	if (w->tls != NULL)
		SSL_CTX_free(w->tls);
	w->tls = tls;
	enum log_level lvl;
	if (log_parse_level(next.log_level, &lvl) == 0)
		log_set_level(lvl);
	/* Listeners stay as they were bound. */
	free(next.imap_listen);
	free(next.imaps_listen);
	next.imap_listen = xstrdup(w->cfg->imap_listen);
	next.imaps_listen = xstrdup(w->cfg->imaps_listen);
	config_free(w->cfg);
	*w->cfg = next;
	log_info(&w->log, "configuration and TLS material reloaded");
}

void worker_session_gone(struct worker *w, struct session *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		w->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
	w->nsessions--;
	maybe_finish_drain(w);
}

bool worker_plaintext_allowed(const struct session *s)
{
	const char *mode = s->w->cfg->plaintext_auth;
	if (s->tls == TLS_ON)
		return true;
	if (strcmp(mode, "yes") == 0)
		return true;
	if (strcmp(mode, "loopback") == 0)
		return s->peer_loopback;
	return false;
}

static void notify_state(void *arg, bool connected)
{
	/* notify/ logs the change itself; the worker keeps the state for
	 * readiness.  Notifications may have been lost while it was down:
	 * check every watched mailbox now (DESIGN.md invariant 5). */
	struct worker *w = arg;
	w->nats_up = connected;
	if (connected)
		watch_recheck_now(w);
}

static void stats_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct worker *w = t->data;
	stats_publish(w->stats, w);
}

int worker_main(const char *config_path, struct config *cfg, int index,
		const struct listener *ls, int nls, struct throttle *throttle, struct stats_table *stats)
{
	struct worker w;
	memset(&w, 0, sizeof(w));
	the_worker = &w;
	w.config_path = config_path;
	w.cfg = cfg;
	w.index = index;
	snprintf(w.log_sid, sizeof(w.log_sid), "w%d", index);
	w.log.sid = w.log_sid;

	signal(SIGPIPE, SIG_IGN);
	w.loop = ev_default_loop(EVFLAG_AUTO);
	if (w.loop == NULL) {
		log_error(&w.log, "cannot create the event loop");
		return 1;
	}
	ev_set_userdata(w.loop, &w);

	char err[512];
	if (cfg->tls_cert_file[0] != '\0') {
		w.tls = tls_ctx_new(cfg, err, sizeof(err));
		if (w.tls == NULL) {
			log_error(&w.log, "TLS: %s", err);
			return 1;
		}
	}

	w.pg = pg_pool_new(w.loop, cfg->pg_conninfo, (int)cfg->pg_pool_size,
			   (int)cfg->pg_retry_max_ms, w.log_sid);
	pg_pool_set_max_queue(w.pg, (size_t)cfg->pg_max_queue);
	w.notify = notify_new(w.loop, cfg, w.log_sid, notify_state, &w);
	w.auth = auth_pool_new(w.loop, (int)cfg->crypt_threads);
	w.throttle = throttle;
	w.stats = stats;
	watch_init(&w);
	/* Counters for the master's /metrics and /ready, a few times a second. */
	ev_timer_init(&w.stats_timer, stats_cb, 0.0, 0.25);
	w.stats_timer.data = &w;
	ev_timer_start(w.loop, &w.stats_timer);

	for (int i = 0; i < nls && i < MAX_LISTENERS; i++) {
		struct listener *l = &w.listeners[w.nlisteners++];
		*l = ls[i];
		ev_io_init(&l->io, accept_cb, l->fd, EV_READ);
		l->io.data = l;
		ev_io_start(w.loop, &l->io);
	}

	ev_signal_init(&w.sigterm, sigterm_cb, SIGTERM);
	ev_signal_init(&w.sigint, sigterm_cb, SIGINT);
	ev_signal_init(&w.sighup, sighup_cb, SIGHUP);
	ev_signal_start(w.loop, &w.sigterm);
	ev_signal_start(w.loop, &w.sigint);
	ev_signal_start(w.loop, &w.sighup);

	log_info(&w.log, "worker ready");
	ev_run(w.loop, 0);

	/* Whatever is left (deadline reached) is closed now. */
	while (w.sessions != NULL)
		session_close(w.sessions, "worker exiting");
	stop_listening(&w);
	ev_timer_stop(w.loop, &w.drain_timer);
	ev_signal_stop(w.loop, &w.sigterm);
	ev_signal_stop(w.loop, &w.sigint);
	ev_signal_stop(w.loop, &w.sighup);
	watch_stop(&w);
	ev_timer_stop(w.loop, &w.stats_timer);
	/* Let sessions that were closed release their references: pending
	 * database callbacks are cancelled by pg_pool_free. */
	pg_pool_free(&w.pg);
	auth_pool_free(&w.auth);
	notify_free(&w.notify);
	notify_global_shutdown();
	if (w.tls != NULL)
		SSL_CTX_free(w.tls);
	log_info(&w.log, "worker exiting: %llu connections served, %llu commands",
		 (unsigned long long)w.n_accepted, (unsigned long long)w.n_commands);
	ev_loop_destroy(w.loop);
	return 0;
}
