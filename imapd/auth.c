/* auth.c - password verification and failed-login throttling.
 *
 * crypt(3) with yescrypt costs tens of milliseconds of CPU and megabytes of
 * memory by design; done on the loop thread it would stall every session
 * of the worker.  The worker's work pool (lib/workpool.h, crypt_threads
 * threads) does it instead.  Unknown logins are checked against a
 * dummy hash so they take as long as known ones.
 *
 * Failed logins are slowed down: the answer to the n-th failure waits
 * login_delay_ms * 2^(n-1) (capped by login_delay_max_ms), where n counts
 * the failures of the connection or, if higher, of its source address in
 * the last login_fail_window seconds.  The per-address table is shared by
 * the workers of a node (not across nodes) and bounded.
 */
#include <crypt.h>
#include <errno.h>
#include <sys/mman.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imapd/imapd.h"
#include "lib/pg.h"
#include "lib/workpool.h"

/* ---- password checks on the work pool ---- */

struct auth_job {
	char *hash;		/* NULL: use the dummy */
	char *password;
	size_t password_len;
	const char *dummy;	/* the pool's; the pool outlives its jobs */
	bool ok;
	auth_cb cb;
	void *arg;
	struct work *work;
};

struct auth_pool {
	struct workpool *wp;
	char dummy[CRYPT_OUTPUT_SIZE];
};

static void job_run(void *arg)
{
	struct auth_job *j = arg;
	const char *hash = j->hash != NULL ? j->hash : j->dummy;
	j->ok = false;
	/* crypt_rn wants a NUL-terminated password; one with a NUL inside
	 * can never match what imapctl stored. */
	if (memchr(j->password, '\0', j->password_len) != NULL)
		return;
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));
	const char *out = crypt_rn(j->password, hash, cd, (int)sizeof(*cd));
	if (out != NULL && out[0] != '*') {
		size_t n = strlen(hash);
		j->ok = strlen(out) == n && CRYPTO_memcmp(out, hash, n) == 0 && j->hash != NULL;
	}
	secure_zero(cd, sizeof(*cd));
	free(cd);
}

static void job_done(void *arg)
{
	struct auth_job *j = arg;
	j->cb(j->arg, j->ok);
}

static void job_release(void *arg)
{
	struct auth_job *j = arg;
	secure_zero(j->password, j->password_len);
	free(j->password);
	free(j->hash);
	free(j);
}

struct auth_pool *auth_pool_new(struct ev_loop *loop, int threads)
{
	struct auth_pool *p = xcalloc(1, sizeof(*p));
	/* The dummy hash is made once, at start-up, before the loop runs. */
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));
	if (crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof(salt)) == NULL ||
	    crypt_rn("dummy password nobody has", salt, cd, (int)sizeof(*cd)) == NULL)
		snprintf(p->dummy, sizeof(p->dummy), "$6$saltsaltsaltsalt$");
	else
		snprintf(p->dummy, sizeof(p->dummy), "%s", cd->output);
	free(cd);
	p->wp = workpool_new(loop, threads);
	return p;
}

void auth_pool_free(struct auth_pool **pp)
{
	struct auth_pool *p = *pp;
	if (p == NULL)
		return;
	workpool_free(&p->wp);
	free(p);
	*pp = NULL;
}

struct workpool *auth_workpool(struct auth_pool *p)
{
	return p->wp;
}

struct auth_job *auth_verify(struct auth_pool *p, const char *hash, struct str password,
			     auth_cb cb, void *arg)
{
	struct auth_job *j = xcalloc(1, sizeof(*j));
	j->hash = hash != NULL ? xstrdup(hash) : NULL;
	j->password = xmalloc(password.len + 1);
	memcpy(j->password, password.p, password.len);
	j->password[password.len] = '\0';
	j->password_len = password.len;
	j->dummy = p->dummy;
	j->cb = cb;
	j->arg = arg;
	j->work = workpool_submit(p->wp, job_run, job_done, job_release, j);
	return j;
}

void auth_cancel(struct auth_job *j)
{
	workpool_cancel(j->work);
}

/* ---- per-address failure table ----
 *
 * Shared by all workers of a node: the master maps it before forking, so a
 * client cannot dodge the delay by reconnecting until it lands on another
 * worker.  A robust process-shared mutex guards it; a worker killed while
 * holding it leaves the lock to be recovered by the next user.
 */

#define THROTTLE_PROBE 8

struct throttle_entry {
	char addr[INET6_ADDRSTRLEN];
	unsigned failures;
	double last;
};

struct throttle {
	pthread_mutex_t lock;
	size_t nslots;
	size_t map_size;
	struct throttle_entry slots[];
};

struct throttle *throttle_new(size_t max_entries)
{
	size_t n = max_entries < 64 ? 64 : max_entries;
	size_t size = sizeof(struct throttle) + n * sizeof(struct throttle_entry);
	struct throttle *t = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (t == MAP_FAILED)
		die_oom();
	memset(t, 0, size);
	t->nslots = n;
	t->map_size = size;
	pthread_mutexattr_t attr;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&t->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	return t;
}

void throttle_free(struct throttle **tp)
{
	if (*tp == NULL)
		return;
	munmap(*tp, (*tp)->map_size);
	*tp = NULL;
}

static void throttle_lock(struct throttle *t)
{
	if (pthread_mutex_lock(&t->lock) == EOWNERDEAD) {
		/* The holder died mid-update; the table is advisory, so at
		 * worst one entry is stale. */
		pthread_mutex_consistent(&t->lock);
	}
}

static size_t addr_hash(const char *s)
{
	size_t h = 1469598103934665603ull;
	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ull;
	return h;
}

static struct throttle_entry *throttle_find(struct throttle *t, const char *addr, bool create)
{
	size_t h = addr_hash(addr);
	struct throttle_entry *oldest = NULL;
	for (size_t i = 0; i < THROTTLE_PROBE; i++) {
		struct throttle_entry *e = &t->slots[(h + i) % t->nslots];
		if (e->addr[0] != '\0' && strcmp(e->addr, addr) == 0)
			return e;
		if (oldest == NULL || e->addr[0] == '\0' || (oldest->addr[0] != '\0' && e->last < oldest->last))
			oldest = e;
	}
	if (!create)
		return NULL;
	/* Full probe window: the stalest entry makes room. */
	snprintf(oldest->addr, sizeof(oldest->addr), "%s", addr);
	oldest->failures = 0;
	oldest->last = 0;
	return oldest;
}

void throttle_fail(struct throttle *t, const char *addr, ev_tstamp now, ev_tstamp window)
{
	throttle_lock(t);
	struct throttle_entry *e = throttle_find(t, addr, true);
	if (now - e->last > window)
		e->failures = 0;
	e->failures++;
	e->last = now;
	pthread_mutex_unlock(&t->lock);
}

unsigned throttle_failures(struct throttle *t, const char *addr, ev_tstamp now, ev_tstamp window)
{
	throttle_lock(t);
	struct throttle_entry *e = throttle_find(t, addr, false);
	unsigned n = (e == NULL || now - e->last > window) ? 0 : e->failures;
	pthread_mutex_unlock(&t->lock);
	return n;
}

void throttle_success(struct throttle *t, const char *addr)
{
	throttle_lock(t);
	struct throttle_entry *e = throttle_find(t, addr, false);
	if (e != NULL)
		e->addr[0] = '\0';
	pthread_mutex_unlock(&t->lock);
}

uint64_t throttle_delay_ms(const struct config *cfg, unsigned failures)
{
	if (failures == 0)
		return 0;
	uint64_t d = (uint64_t)cfg->login_delay_ms;
	for (unsigned i = 1; i < failures && d < (uint64_t)cfg->login_delay_max_ms; i++)
		d *= 2;
	return MIN(d, (uint64_t)cfg->login_delay_max_ms);
}

/* ---- the login flow shared by LOGIN and AUTHENTICATE ---- */

struct login_state {
	struct cmd *c;
	char *login;
	struct str password;	/* in the command arena; wiped after use */
	int64_t account_id, tenant_id;
	bool active;
	struct auth_job *job;
	ev_timer delay;
	bool delaying;
};

static void wipe_password(struct login_state *ls);

static void login_abort(struct cmd *c)
{
	struct login_state *ls = c->state;
	wipe_password(ls);
	if (ls->job != NULL) {
		auth_cancel(ls->job);
		ls->job = NULL;
	}
	if (ls->delaying) {
		ev_timer_stop(c->s->w->loop, &ls->delay);
		ls->delaying = false;
	}
}

static void wipe_password(struct login_state *ls)
{
	if (ls->password.p != NULL && ls->password.len > 0)
		secure_zero((void *)ls->password.p, ls->password.len);
	ls->password.len = 0;
}

static void delay_done(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct login_state *ls = t->data;
	struct cmd *c = ls->c;
	struct session *s = c->s;
	session_ref(s);
	ls->delaying = false;
	cmd_no(c, "[AUTHENTICATIONFAILED] Authentication failed");
	cmd_done(c);
	session_unref(s);
}

static void login_failed(struct login_state *ls, const char *why)
{
	struct cmd *c = ls->c;
	struct session *s = c->s;
	struct worker *w = s->w;
	ev_tstamp now = ev_now(w->loop);
	s->login_failures++;
	w->n_login_fail++;
	throttle_fail(w->throttle, s->peer, now, (ev_tstamp)w->cfg->login_fail_window);
	unsigned n = MAX(s->login_failures,
			 throttle_failures(w->throttle, s->peer, now, (ev_tstamp)w->cfg->login_fail_window));
	uint64_t ms = throttle_delay_ms(w->cfg, n);
	log_info(&s->log, "login failed for %s from %s: %s (failure %u, answer delayed %llu ms)",
		 ls->login, s->peer, why, n, (unsigned long long)ms);
	ev_timer_init(&ls->delay, delay_done, (ev_tstamp)ms / 1000.0, 0.);
	ls->delay.data = ls;
	ls->delaying = true;
	ev_timer_start(w->loop, &ls->delay);
}

static void verified(void *arg, bool ok)
{
	struct login_state *ls = arg;
	struct cmd *c = ls->c;
	struct session *s = c->s;
	session_ref(s);
	ls->job = NULL;
	if (!ok) {
		login_failed(ls, ls->account_id < 0 ? "no such user" : "wrong password");
	} else if (!ls->active) {
		login_failed(ls, "account disabled");
	} else {
		s->state = STATE_AUTH;
		s->account_id = ls->account_id;
		s->tenant_id = ls->tenant_id;
		s->login = arena_strdup(&s->arena, ls->login);
		s->log.user = s->login;
		s->w->n_login_ok++;
		throttle_success(s->w->throttle, s->peer);
		log_info(&s->log, "logged in from %s%s", s->peer, s->tls == TLS_ON ? " (TLS)" : "");
		struct buf caps = BUF_INIT;
		session_capabilities(s, &caps);
		cmd_ok(c, "[CAPABILITY %s] Logged in", buf_ptr(&caps));
		buf_free(&caps);
		cmd_done(c);
	}
	session_unref(s);
}

static void account_looked_up(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	struct login_state *ls = arg;
	struct cmd *c = ls->c;
	struct session *s = c->s;
	session_ref(s);
	c->pg = NULL;
	if (err != NULL) {
		wipe_password(ls);
		cmd_unavailable(c, err);
		cmd_done(c);
		session_unref(s);
		return;
	}
	const char *hash = NULL;
	if (PQntuples(res) == 1) {
		ls->account_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		ls->tenant_id = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
		hash = PQgetvalue(res, 0, 2);
		ls->active = strcmp(PQgetvalue(res, 0, 3), "active") == 0;
	}
	ls->job = auth_verify(s->w->auth, hash, ls->password, verified, ls);
	wipe_password(ls);
	session_unref(s);
}

/* Logins are user@domain, compared in lower case; the bound keeps junk
 * from reaching the database or the logs. */
static bool normalise_login(struct arena *a, struct str in, char **out)
{
	if (in.len == 0 || in.len > 320)
		return false;
	char *l = arena_alloc(a, in.len + 1);
	for (size_t i = 0; i < in.len; i++) {
		unsigned char ch = (unsigned char)in.p[i];
		if (ch <= 0x20 || ch == 0x7f)
			return false;
		l[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch);
	}
	l[in.len] = '\0';
	*out = l;
	return true;
}

enum cmd_result auth_login(struct cmd *c, struct str login, struct str password)
{
	struct session *s = c->s;
	if (!worker_plaintext_allowed(s)) {
		/* RFC 5530: PRIVACYREQUIRED. */
		cmd_no(c, "[PRIVACYREQUIRED] Plaintext authentication is disabled here; use STARTTLS or port 993");
		return CMD_DONE;
	}
	struct login_state *ls = arena_zalloc(c->arena, sizeof(*ls));
	ls->c = c;
	ls->account_id = -1;
	ls->tenant_id = -1;
	ls->password = password;
	c->state = ls;
	c->on_abort = login_abort;
	if (!normalise_login(c->arena, login, &ls->login)) {
		ls->login = "(invalid)";
		ls->job = auth_verify(s->w->auth, NULL, password, verified, ls);
		wipe_password(ls);
		return CMD_PENDING;
	}
	const char *params[1] = { ls->login };
	c->pg = pg_query(s->w->pg,
			 "SELECT id, tenant_id, password_hash, state FROM account WHERE login = $1",
			 1, params, NULL, NULL, 0, account_looked_up, ls);
	return CMD_PENDING;
}
