/* auth.c - password verification and failed-login throttling.
 *
 * crypt(3) with yescrypt costs tens of milliseconds of CPU and megabytes of
 * memory by design; done on the loop thread it would stall every session
 * of the worker.  A few threads (crypt_threads) do it instead and hand the
 * verdict back through an ev_async.  Unknown logins are checked against a
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

/* ---- the hashing pool ---- */

struct auth_job {
	struct auth_job *next;
	char *hash;		/* NULL: use the dummy */
	char *password;
	size_t password_len;
	bool ok;
	bool cancelled;
	auth_cb cb;
	void *arg;
};

struct auth_pool {
	struct ev_loop *loop;
	pthread_t *threads;
	int nthreads;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct auth_job *todo, *todo_tail;
	struct auth_job *done;
	bool stop;
	ev_async async;
	char dummy[CRYPT_OUTPUT_SIZE];
};

static void job_free(struct auth_job *j)
{
	if (j->password != NULL) {
		secure_zero(j->password, j->password_len);
		free(j->password);
	}
	free(j->hash);
	free(j);
}

static bool check(struct auth_pool *p, const struct auth_job *j, struct crypt_data *cd)
{
	const char *hash = j->hash != NULL ? j->hash : p->dummy;
	/* crypt_rn wants a NUL-terminated password; one with a NUL inside
	 * can never match what imapctl stored. */
	if (memchr(j->password, '\0', j->password_len) != NULL)
		return false;
	memset(cd, 0, sizeof(*cd));
	const char *out = crypt_rn(j->password, hash, cd, (int)sizeof(*cd));
	bool ok = false;
	if (out != NULL && out[0] != '*') {
		size_t n = strlen(hash);
		ok = strlen(out) == n && CRYPTO_memcmp(out, hash, n) == 0;
	}
	secure_zero(cd, sizeof(*cd));
	return ok && j->hash != NULL;
}

static void *pool_thread(void *arg)
{
	struct auth_pool *p = arg;
	struct crypt_data *cd = xmalloc(sizeof(*cd));
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (p->todo == NULL && !p->stop)
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->stop)
			break;
		struct auth_job *j = p->todo;
		p->todo = j->next;
		if (p->todo == NULL)
			p->todo_tail = NULL;
		pthread_mutex_unlock(&p->lock);

		j->ok = check(p, j, cd);

		pthread_mutex_lock(&p->lock);
		j->next = p->done;
		p->done = j;
		ev_async_send(p->loop, &p->async);
	}
	pthread_mutex_unlock(&p->lock);
	free(cd);
	return NULL;
}

static void async_cb(struct ev_loop *loop, ev_async *a, int revents)
{
	struct auth_pool *p = a->data;
	pthread_mutex_lock(&p->lock);
	struct auth_job *list = p->done;
	p->done = NULL;
	pthread_mutex_unlock(&p->lock);
	while (list != NULL) {
		struct auth_job *j = list;
		list = j->next;
		if (!j->cancelled)
			j->cb(j->arg, j->ok);
		job_free(j);
	}
}

struct auth_pool *auth_pool_new(struct ev_loop *loop, int threads)
{
	struct auth_pool *p = xcalloc(1, sizeof(*p));
	p->loop = loop;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	ev_async_init(&p->async, async_cb);
	p->async.data = p;
	ev_async_start(loop, &p->async);

	/* The dummy hash is made once, at start-up, before the loop runs. */
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));
	if (crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof(salt)) == NULL ||
	    crypt_rn("dummy password nobody has", salt, cd, (int)sizeof(*cd)) == NULL)
		snprintf(p->dummy, sizeof(p->dummy), "$6$saltsaltsaltsalt$");
	else
		snprintf(p->dummy, sizeof(p->dummy), "%s", cd->output);
	free(cd);

	p->nthreads = threads > 0 ? threads : 1;
	p->threads = xcalloc((size_t)p->nthreads, sizeof(*p->threads));
	for (int i = 0; i < p->nthreads; i++) {
		if (pthread_create(&p->threads[i], NULL, pool_thread, p) != 0) {
			p->nthreads = i;
			break;
		}
	}
	return p;
}

void auth_pool_free(struct auth_pool **pp)
{
	struct auth_pool *p = *pp;
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	ev_async_stop(p->loop, &p->async);
	struct auth_job *lists[2] = { p->todo, p->done };
	for (int i = 0; i < 2; i++) {
		while (lists[i] != NULL) {
			struct auth_job *j = lists[i];
			lists[i] = j->next;
			job_free(j);
		}
	}
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p->threads);
	free(p);
	*pp = NULL;
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
	j->cb = cb;
	j->arg = arg;
	pthread_mutex_lock(&p->lock);
	if (p->todo_tail)
		p->todo_tail->next = j;
	else
		p->todo = j;
	p->todo_tail = j;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return j;
}

void auth_cancel(struct auth_job *j)
{
	/* Only the loop thread reads the flag (async_cb), and the job is
	 * freed there, so no lock is needed. */
	j->cancelled = true;
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
