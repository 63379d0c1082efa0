/* pg.c - asynchronous PostgreSQL connection pool; see pg.h for the contract.
 *
 * Model: Dovecot src/lib-sql/driver-pgsql.c.  Every libpq call here is one
 * of the non-blocking ones: PQconnectStartParams/PQconnectPoll,
 * PQsendQueryParams, PQflush, PQconsumeInput, PQisBusy and PQgetResult only
 * when PQisBusy says it will not wait; for COPY FROM STDIN also
 * PQputCopyData and PQputCopyEnd, which on a non-blocking connection only
 * queue (0 when they cannot, then we flush and retry).
 *
 * A request lives in exactly one place: the FIFO queue (R_QUEUED), a
 * connection (R_RUNNING), the list of local failures waiting to be delivered
 * on the next loop iteration (R_FAILED), or the stack of its own callback
 * (R_CALLING).  pg_cancel() acts on each state so that no callback ever
 * reaches an owner that went away.
 */
#include "pg.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

#define PG_BACKOFF_MIN_MS	100
#define PG_CONNECT_TIMEOUT_MS	5000
#define PG_MAX_SIZE		64

enum conn_state { C_DOWN, C_CONNECTING, C_IDLE, C_BUSY };
enum req_state { R_QUEUED, R_RUNNING, R_FAILED, R_CALLING };
/* A pg_copy_in() request: before the server asked for data, sending it,
 * CopyDone/CopyFail to be queued, queued (the answer follows). */
enum copy_state { COPY_NONE, COPY_DATA, COPY_ENDING, COPY_ENDED };
enum pool_state { P_STARTING, P_UP, P_DOWN };

struct pg_req {
	struct pg_req *prev, *next;
	enum req_state state;
	bool cancelled;
	pg_cb cb;
	void *arg;
	const char *sql;
	int nparams;
	const char **values;
	int *lengths;
	int *formats;
	int binary_result;
	const char *err;	/* R_FAILED: static message */
	PGresult *last;		/* R_RUNNING: last result so far */
	/* pg_copy_in() only */
	pg_copy_source src;
	enum copy_state copy;
	char *copybuf;		/* PG_COPY_CHUNK octets while COPY_DATA */
	size_t copylen;		/* octets in copybuf libpq has not taken yet */
	const char *copy_fail;	/* COPY_ENDING: CopyFail message, NULL for CopyDone */
	bool src_failed;	/* the source returned -1 */
	/* parameter copies follow */
};

struct req_list {
	struct pg_req *head, *tail;
	size_t n;
};

struct pg_conn {
	struct pg_pool *pool;
	int idx;
	PGconn *pg;
	enum conn_state state;
	ev_io io;
	ev_timer timer;		/* back-off (C_DOWN) or connect timeout (C_CONNECTING) */
	unsigned failures;	/* consecutive failed attempts */
	bool ever_up;
	bool warned;		/* a failure of this connection was logged */
	bool flushing;		/* PQflush() has more to send */
	bool copying;		/* req is sending COPY data (COPY_DATA or COPY_ENDING) */
	struct pg_req *req;	/* C_BUSY */
};

struct pg_pool {
	struct ev_loop *loop;
	char *conninfo;
	char *appname;
	char *sid;
	struct log_ctx log;
	int size;
	int retry_max_ms;
	int connect_timeout_ms;
	size_t max_queue;
	bool conninfo_bad;
	bool closing;
	enum pool_state pstate;
	int up, connecting;
	size_t running;
	struct pg_conn *conns;
	struct req_list queue;
	struct req_list failed;
	ev_timer deliver;	/* delivers `failed` on the next iteration */
	uint32_t rng;
	uint64_t n_queries, n_failed, n_reconnects;
};

/* ---- small helpers ------------------------------------------------------ */

static void list_push_back(struct req_list *l, struct pg_req *r)
{
	r->next = NULL;
	r->prev = l->tail;
	if (l->tail)
		l->tail->next = r;
	else
		l->head = r;
	l->tail = r;
	l->n++;
}

static void list_push_front(struct req_list *l, struct pg_req *r)
{
	r->prev = NULL;
	r->next = l->head;
	if (l->head)
		l->head->prev = r;
	else
		l->tail = r;
	l->head = r;
	l->n++;
}

static void list_remove(struct req_list *l, struct pg_req *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		l->head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	else
		l->tail = r->prev;
	r->prev = r->next = NULL;
	l->n--;
}

static struct pg_req *list_pop(struct req_list *l)
{
	struct pg_req *r = l->head;
	if (r)
		list_remove(l, r);
	return r;
}

/* libpq messages span lines ("...failed: Connection refused\n\tIs the
 * server running..."): make them one log-friendly line. */
static void clean_msg(const char *in, char *out, size_t outlen)
{
	size_t o = 0;
	bool space = false;
	if (in == NULL)
		in = "";
	for (; *in && o + 1 < outlen; in++) {
		unsigned char ch = (unsigned char)*in;
		if (ch == '\n' || ch == '\r' || ch == '\t' || ch == ' ') {
			space = true;
			continue;
		}
		if (space && o > 0 && o + 2 < outlen)
			out[o++] = ' ';
		space = false;
		out[o++] = (char)ch;
	}
	out[o] = '\0';
}

static uint32_t pool_rand(struct pg_pool *p)
{
	/* xorshift32: jitter only, no need for quality */
	uint32_t x = p->rng;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	p->rng = x ? x : 0x9e3779b9u;
	return p->rng;
}

static void free_req(struct pg_req *r)
{
	if (r->last)
		PQclear(r->last);
	free(r->copybuf);
	free(r);
}

/* ---- delivering answers ------------------------------------------------- */

static void deliver_cb(struct ev_loop *loop, ev_timer *w, int revents);

static void fail_req(struct pg_pool *p, struct pg_req *r, const char *err)
{
	if (r->last) {
		PQclear(r->last);
		r->last = NULL;
	}
	if (r->cancelled) {
		free_req(r);
		return;
	}
	r->state = R_FAILED;
	r->err = err;
	list_push_back(&p->failed, r);
	if (!p->closing && !ev_is_active(&p->deliver)) {
		ev_timer_set(&p->deliver, 0., 0.);
		ev_timer_start(p->loop, &p->deliver);
	}
}

static void call_failed(struct pg_pool *p, struct pg_req *r)
{
	r->state = R_CALLING;
	p->n_failed++;
	r->cb(r->arg, NULL, r->err, "");
	free_req(r);
}

static void deliver_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct pg_pool *p = w->data;
	/* Only what was there when we started: a callback that queries again
	 * while the database is down gets its answer on the next iteration,
	 * not in an endless loop here. */
	size_t n = p->failed.n;
	struct pg_req *r;
	while (n-- > 0 && (r = list_pop(&p->failed)) != NULL)
		call_failed(p, r);
	if (p->failed.head != NULL && !ev_is_active(&p->deliver)) {
		ev_timer_set(&p->deliver, 0., 0.);
		ev_timer_start(loop, &p->deliver);
	}
}

/* The server answered (possibly with an error). */
static void call_answer(struct pg_pool *p, struct pg_req *r, PGresult *res)
{
	if (r->cancelled) {
		if (res)
			PQclear(res);
		free_req(r);
		return;
	}
	const char *err = NULL, *sqlstate = "";
	if (r->src_failed) {
		/* The server's answer to our CopyFail says nothing useful. */
		err = "copy source failed";
	} else if (res == NULL) {
		err = "no result";
	} else {
		switch (PQresultStatus(res)) {
		case PGRES_TUPLES_OK:
		case PGRES_COMMAND_OK:
		case PGRES_SINGLE_TUPLE:
			break;
		default: {
			const char *s = PQresultErrorField(res, PG_DIAG_SQLSTATE);
			err = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
			if (err == NULL || *err == '\0')
				err = PQresStatus(PQresultStatus(res));
			if (s)
				sqlstate = s;
			break;
		}
		}
	}
	r->state = R_CALLING;
	p->n_queries++;
	r->cb(r->arg, res, err, sqlstate);
	if (res)
		PQclear(res);
	free_req(r);
}

/* ---- connections -------------------------------------------------------- */

static void io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void dispatch(struct pg_pool *p);
static void conn_start(struct pg_conn *c);

/* Point the watcher at fd for events.  force: the socket may be a new one
 * behind the same number (libpq reconnects to the next address while
 * connecting), so libev must be told again (ev_io_set). */
static void conn_watch(struct pg_conn *c, int fd, int events, bool force)
{
	struct ev_loop *loop = c->pool->loop;
	if (!force && ev_is_active(&c->io) && c->io.fd == fd && (c->io.events & (EV_READ | EV_WRITE)) == events)
		return;
	ev_io_stop(loop, &c->io);
	ev_io_set(&c->io, fd, events);
	if (fd >= 0 && events)
		ev_io_start(loop, &c->io);
}

static void conn_close(struct pg_conn *c)
{
	struct ev_loop *loop = c->pool->loop;
	/* Stop watching before libpq closes the socket. */
	ev_io_stop(loop, &c->io);
	ev_timer_stop(loop, &c->timer);
	if (c->pg) {
		PQfinish(c->pg);
		c->pg = NULL;
	}
	c->flushing = false;
	c->copying = false;
}

/* No connection is up and none is being attempted: whatever waits would
 * wait for a back-off timer, so answer now. */
static void check_unavailable(struct pg_pool *p)
{
	if (p->up > 0 || p->connecting > 0)
		return;
	struct pg_req *r;
	while ((r = list_pop(&p->queue)) != NULL)
		fail_req(p, r, "database unavailable");
}

static void conn_schedule(struct pg_conn *c)
{
	struct pg_pool *p = c->pool;
	double delay = 0;
	if (c->failures > 0) {
		uint64_t ms = PG_BACKOFF_MIN_MS;
		for (unsigned i = 1; i < c->failures && ms < (uint64_t)p->retry_max_ms; i++)
			ms *= 2;
		if (ms > (uint64_t)p->retry_max_ms)
			ms = (uint64_t)p->retry_max_ms;
		/* 75%..125%, so the pool's connections do not retry in step */
		ms = ms * (750 + pool_rand(p) % 501) / 1000;
		delay = (double)ms / 1000.0;
	}
	c->state = C_DOWN;
	ev_timer_stop(p->loop, &c->timer);
	ev_timer_set(&c->timer, delay, 0.);
	ev_timer_start(p->loop, &c->timer);
}

/* A connection attempt failed. */
static void conn_failed(struct pg_conn *c, const char *why)
{
	struct pg_pool *p = c->pool;
	char msg[512], where[300] = "";
	clean_msg(why, msg, sizeof(msg));
	if (c->pg != NULL && PQhost(c->pg) != NULL && PQhost(c->pg)[0] != '\0') {
		const char *h = PQhost(c->pg), *port = PQport(c->pg);
		snprintf(where, sizeof(where), " at %s%s%s", h, port && *port ? ":" : "", port ? port : "");
	}
	conn_close(c);
	if (c->state == C_CONNECTING)
		p->connecting--;
	c->state = C_DOWN;
	c->failures++;
	if (p->up == 0 && p->pstate != P_DOWN) {
		log_warn(&p->log, "PostgreSQL unavailable%s: %s; retrying with back-off up to %d ms", where, msg,
			 p->retry_max_ms);
		p->pstate = P_DOWN;
		c->warned = true;
	} else if (!c->warned && p->up > 0) {
		log_warn(&p->log, "PostgreSQL connection %d cannot connect%s: %s; retrying", c->idx, where, msg);
		c->warned = true;
	} else {
		log_debug(&p->log, "PostgreSQL connection %d: attempt %u failed: %s", c->idx, c->failures, msg);
	}
	conn_schedule(c);
	check_unavailable(p);
}

/* An established connection dropped.  The running query, if any, may or
 * may not have committed: its caller gets "connection lost". */
static void conn_lost(struct pg_conn *c, const char *why)
{
	struct pg_pool *p = c->pool;
	char msg[512];
	clean_msg(why, msg, sizeof(msg));
	struct pg_req *r = c->req;
	c->req = NULL;
	if (r) {
		p->running--;
		fail_req(p, r, "connection lost");
	}
	conn_close(c);
	p->up--;
	c->state = C_DOWN;
	c->failures = 0;	/* try again at once, then back off */
	c->warned = true;
	if (p->up == 0) {
		log_warn(&p->log, "PostgreSQL down: connection %d lost (%s)", c->idx, msg);
		p->pstate = P_DOWN;
	} else {
		log_warn(&p->log, "PostgreSQL connection %d lost (%s); %d still up", c->idx, msg, p->up);
	}
	conn_start(c);
}

static void conn_up(struct pg_conn *c)
{
	struct pg_pool *p = c->pool;
	ev_timer_stop(p->loop, &c->timer);
	p->connecting--;
	p->up++;
	c->state = C_IDLE;
	c->failures = 0;
	if (c->ever_up)
		p->n_reconnects++;
	c->ever_up = true;
	if (p->pstate != P_UP) {
		log_info(&p->log, "PostgreSQL up (connection %d of %d established)", c->idx, p->size);
		p->pstate = P_UP;
	} else if (c->warned) {
		log_info(&p->log, "PostgreSQL connection %d re-established (%d of %d up)", c->idx, p->up, p->size);
	} else {
		log_debug(&p->log, "PostgreSQL connection %d established (%d of %d up)", c->idx, p->up, p->size);
	}
	c->warned = false;
	/* Idle connections watch for reading too, so a server that goes away
	 * is noticed before the next query is sent to it. */
	conn_watch(c, PQsocket(c->pg), EV_READ, true);
	dispatch(p);
}

static void notice_cb(void *arg, const char *message)
{
	struct pg_conn *c = arg;
	if (log_enabled(LOG_DEBUG)) {
		char msg[512];
		clean_msg(message, msg, sizeof(msg));
		log_debug(&c->pool->log, "PostgreSQL connection %d: %s", c->idx, msg);
	}
}

static void conn_start(struct pg_conn *c)
{
	struct pg_pool *p = c->pool;
	if (p->conninfo_bad) {
		c->state = C_DOWN;
		c->failures++;
		check_unavailable(p);
		return;
	}
	/* Defaults placed before the expanded conninfo, which overrides them:
	 * notice a dead server within about a minute instead of the kernel's
	 * two hours (idle) or fifteen minutes (unacknowledged data). */
	const char *const kw[] = { "keepalives_idle", "keepalives_interval", "keepalives_count",
				   "tcp_user_timeout", "fallback_application_name", "dbname", NULL };
	const char *const val[] = { "30", "10", "3", "60000", p->appname, p->conninfo, NULL };
	c->pg = PQconnectStartParams(kw, val, 1);
	if (c->pg == NULL)
		die_oom();
	c->state = C_CONNECTING;
	p->connecting++;
	if (PQstatus(c->pg) == CONNECTION_BAD) {
		conn_failed(c, PQerrorMessage(c->pg));
		return;
	}
	PQsetnonblocking(c->pg, 1);
	PQsetNoticeProcessor(c->pg, notice_cb, c);
	ev_timer_stop(p->loop, &c->timer);
	ev_timer_set(&c->timer, p->connect_timeout_ms / 1000.0, 0.);
	ev_timer_start(p->loop, &c->timer);
	/* libpq: "at the beginning, consider PQconnectPoll to have returned
	 * PGRES_POLLING_WRITING". */
	int fd = PQsocket(c->pg);
	if (fd < 0) {
		conn_failed(c, PQerrorMessage(c->pg));
		return;
	}
	conn_watch(c, fd, EV_WRITE, true);
}

static void conn_poll(struct pg_conn *c)
{
	switch (PQconnectPoll(c->pg)) {
	case PGRES_POLLING_READING:
		conn_watch(c, PQsocket(c->pg), EV_READ, true);
		break;
	case PGRES_POLLING_WRITING:
		conn_watch(c, PQsocket(c->pg), EV_WRITE, true);
		break;
	case PGRES_POLLING_OK:
		conn_up(c);
		break;
	case PGRES_POLLING_FAILED:
		conn_failed(c, PQerrorMessage(c->pg));
		break;
	default:	/* PGRES_POLLING_ACTIVE: unused since libpq 7.x */
		conn_watch(c, PQsocket(c->pg), EV_WRITE, true);
		break;
	}
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct pg_conn *c = w->data;
	if (c->state == C_DOWN)
		conn_start(c);
	else if (c->state == C_CONNECTING)
		conn_failed(c, "timeout while connecting");
}

static void send_req(struct pg_conn *c, struct pg_req *r)
{
	struct pg_pool *p = c->pool;
	if (!PQsendQueryParams(c->pg, r->sql, r->nparams, NULL, r->values, r->lengths, r->formats,
			       r->binary_result)) {
		if (PQstatus(c->pg) == CONNECTION_BAD) {
			/* Nothing was sent: the request may wait for another
			 * connection, in its place at the head. */
			r->state = R_QUEUED;
			list_push_front(&p->queue, r);
			conn_lost(c, PQerrorMessage(c->pg));
			return;
		}
		char msg[512];
		clean_msg(PQerrorMessage(c->pg), msg, sizeof(msg));
		log_warn(&p->log, "PostgreSQL connection %d: cannot send query: %s", c->idx, msg);
		fail_req(p, r, "cannot send query");
		return;
	}
	r->state = R_RUNNING;
	c->req = r;
	c->state = C_BUSY;
	p->running++;
	int f = PQflush(c->pg);
	if (f < 0) {
		conn_lost(c, PQerrorMessage(c->pg));
		return;
	}
	c->flushing = (f == 1);
	conn_watch(c, PQsocket(c->pg), EV_READ | (c->flushing ? EV_WRITE : 0), false);
}

static void dispatch(struct pg_pool *p)
{
	if (p->closing)
		return;
	for (int i = 0; i < p->size && p->queue.head != NULL; i++) {
		struct pg_conn *c = &p->conns[i];
		if (c->state == C_IDLE)
			send_req(c, list_pop(&p->queue));
	}
}

static void copy_start(struct pg_conn *c);

/* Take the results that are complete; the last one is the answer. */
static void collect_results(struct pg_conn *c)
{
	struct pg_pool *p = c->pool;
	while (!PQisBusy(c->pg)) {
		PGresult *res = PQgetResult(c->pg);
		if (res == NULL) {
			struct pg_req *r = c->req;
			PGresult *last = r->last;
			r->last = NULL;
			c->req = NULL;
			c->state = C_IDLE;
			p->running--;
			c->flushing = false;
			conn_watch(c, PQsocket(c->pg), EV_READ, false);
			/* The callback may query again (and get this very
			 * connection), cancel others, free its owner: touch
			 * nothing of c after it but through dispatch(). */
			call_answer(p, r, last);
			dispatch(p);
			return;
		}
		ExecStatusType st = PQresultStatus(res);
		if (st == PGRES_COPY_IN && c->req->src != NULL && c->req->copy == COPY_NONE) {
			/* The server waits for the data (pg_copy_in). */
			PQclear(res);
			copy_start(c);
			return;
		}
		if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
			/* Not supported: the connection cannot be reused. */
			PQclear(res);
			log_error(&p->log, "PostgreSQL connection %d: COPY is not supported by the pool", c->idx);
			conn_lost(c, "COPY not supported");
			return;
		}
		if (c->req->last)
			PQclear(c->req->last);
		c->req->last = res;
	}
}

/* ---- COPY FROM STDIN (pg_copy_in) --------------------------------------- */

/* Chunks sent per readiness event: a COPY of a large message must not keep
 * the loop from its other watchers while the socket keeps taking data. */
#define PG_COPY_TURN 16

/* Send COPY data while the socket takes it.  Bounded memory: a new chunk
 * is asked from the source only once libpq has handed everything before it
 * to the kernel (PQflush() returned 0), so libpq's output buffer holds at
 * most one chunk and the request's copybuf another. */
static void copy_pump(struct pg_conn *c)
{
	struct pg_req *r = c->req;
	for (int turn = 0; turn < PG_COPY_TURN; turn++) {
		if (c->flushing) {
			int f = PQflush(c->pg);
			if (f < 0) {
				conn_lost(c, PQerrorMessage(c->pg));
				return;
			}
			if (f == 1) {
				conn_watch(c, PQsocket(c->pg), EV_READ | EV_WRITE, false);
				return;
			}
			c->flushing = false;
		}
		if (r->copy == COPY_ENDING) {
			/* A cancelled request never commits: CopyFail makes the
			 * server roll the COPY back (protocol "COPY Operations"). */
			if (r->cancelled && r->copy_fail == NULL)
				r->copy_fail = "cancelled";
			int e = PQputCopyEnd(c->pg, r->copy_fail);
			if (e < 0) {
				conn_lost(c, PQerrorMessage(c->pg));
				return;
			}
			if (e == 0) {
				c->flushing = true;
				continue;
			}
			r->copy = COPY_ENDED;
			c->copying = false;
			free(r->copybuf);
			r->copybuf = NULL;
			int f = PQflush(c->pg);
			if (f < 0) {
				conn_lost(c, PQerrorMessage(c->pg));
				return;
			}
			c->flushing = (f == 1);
			conn_watch(c, PQsocket(c->pg), EV_READ | (c->flushing ? EV_WRITE : 0), false);
			collect_results(c);
			return;
		}
		if (r->copylen == 0) {
			ssize_t n = 0;
			if (!r->cancelled)
				n = r->src(r->arg, r->copybuf, PG_COPY_CHUNK);
			/* The source may have cancelled its own request. */
			if (r->cancelled) {
				r->copy_fail = "cancelled";
				r->copy = COPY_ENDING;
				continue;
			}
			if (n < 0 || n > PG_COPY_CHUNK) {
				r->src_failed = true;
				r->copy_fail = "copy source failed";
				r->copy = COPY_ENDING;
				continue;
			}
			if (n == 0) {
				r->copy_fail = NULL;
				r->copy = COPY_ENDING;
				continue;
			}
			r->copylen = (size_t)n;
		}
		int rc = PQputCopyData(c->pg, r->copybuf, (int)r->copylen);
		if (rc < 0) {
			conn_lost(c, PQerrorMessage(c->pg));
			return;
		}
		if (rc == 0) {
			/* Not queued: flush, then offer the same chunk again. */
			c->flushing = true;
			continue;
		}
		r->copylen = 0;
		int f = PQflush(c->pg);
		if (f < 0) {
			conn_lost(c, PQerrorMessage(c->pg));
			return;
		}
		c->flushing = (f == 1);
	}
	/* Budget spent: go on when writable, after the other watchers (at
	 * once if the socket has room). */
	conn_watch(c, PQsocket(c->pg), EV_READ | EV_WRITE, false);
}

/* The server answered CopyInResponse. */
static void copy_start(struct pg_conn *c)
{
	struct pg_req *r = c->req;
	r->copy = COPY_DATA;
	r->copybuf = xmalloc(PG_COPY_CHUNK);
	r->copylen = 0;
	c->copying = true;
	copy_pump(c);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct pg_conn *c = w->data;
	if (c->state == C_CONNECTING) {
		conn_poll(c);
		return;
	}
	if (revents & EV_READ) {
		if (!PQconsumeInput(c->pg)) {
			conn_lost(c, PQerrorMessage(c->pg));
			return;
		}
	}
	if (c->state == C_BUSY) {
		if (c->copying) {
			/* Readable: PQconsumeInput above noticed a dead server
			 * or took a notice; writable: room for the next chunk. */
			copy_pump(c);
			return;
		}
		if (c->flushing) {
			/* libpq: on read-ready consume input, then flush again */
			int f = PQflush(c->pg);
			if (f < 0) {
				conn_lost(c, PQerrorMessage(c->pg));
				return;
			}
			c->flushing = (f == 1);
			conn_watch(c, PQsocket(c->pg), EV_READ | (c->flushing ? EV_WRITE : 0), false);
		}
		collect_results(c);
		return;
	}
	/* Idle: asynchronous notifications are not used; a closed server
	 * shows as a failed read above or a bad status here. */
	PGnotify *n;
	while ((n = PQnotifies(c->pg)) != NULL)
		PQfreemem(n);
	if (PQstatus(c->pg) == CONNECTION_BAD)
		conn_lost(c, PQerrorMessage(c->pg));
}

/* ---- public API --------------------------------------------------------- */

static bool host_is_numeric(const char *h, size_t n)
{
	char buf[256];
	unsigned char tmp[16];
	if (n == 0 || h[0] == '/' || h[0] == '@')
		return true;	/* default or Unix socket directory */
	if (n >= sizeof(buf))
		return false;
	memcpy(buf, h, n);
	buf[n] = '\0';
	return inet_pton(AF_INET, buf, tmp) == 1 || inet_pton(AF_INET6, buf, tmp) == 1;
}

int pg_conninfo_check(const char *conninfo, char *err, size_t errlen)
{
	char *perr = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo ? conninfo : "", &perr);
	if (opts == NULL) {
		if (perr) {
			clean_msg(perr, err, errlen);
			PQfreemem(perr);
		} else {
			snprintf(err, errlen, "out of memory");
		}
		return -1;
	}
	PQconninfoFree(opts);
	return 0;
}

/* Read connect_timeout and warn about host names (see pg.h). */
static void inspect_conninfo(struct pg_pool *p)
{
	char *perr = NULL;
	PQconninfoOption *opts = PQconninfoParse(p->conninfo, &perr);
	if (opts == NULL) {
		char msg[512];
		clean_msg(perr ? perr : "out of memory", msg, sizeof(msg));
		if (perr)
			PQfreemem(perr);
		log_error(&p->log, "pg_conninfo: %s; PostgreSQL stays unavailable", msg);
		p->conninfo_bad = true;
		return;
	}
	const char *host = NULL, *hostaddr = NULL;
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
		if (o->val == NULL || o->val[0] == '\0')
			continue;
		if (strcmp(o->keyword, "connect_timeout") == 0) {
			int t = atoi(o->val);
			if (t > 0)
				p->connect_timeout_ms = t * 1000;
		} else if (strcmp(o->keyword, "host") == 0) {
			host = o->val;
		} else if (strcmp(o->keyword, "hostaddr") == 0) {
			hostaddr = o->val;
		}
	}
	if (host != NULL && hostaddr == NULL) {
		const char *s = host;
		while (*s) {
			size_t n = strcspn(s, ",");
			if (!host_is_numeric(s, n)) {
				log_warn(&p->log, "pg_conninfo: host '%.*s' is a name: libpq resolves it "
					 "synchronously and stalls the event loop; use a numeric host or hostaddr=",
					 (int)n, s);
				break;
			}
			s += n;
			if (*s == ',')
				s++;
		}
	}
	PQconninfoFree(opts);
}

struct pg_pool *pg_pool_new(struct ev_loop *loop, const char *conninfo, int size, int retry_max_ms,
			    const char *log_sid)
{
	struct pg_pool *p = xcalloc(1, sizeof(*p));
	p->loop = loop;
	p->conninfo = xstrdup(conninfo ? conninfo : "");
	p->sid = log_sid ? xstrdup(log_sid) : NULL;
	p->log.sid = p->sid;
	p->appname = xstrdup(log_sid ? log_sid : "mail");
	p->size = size < 1 ? 1 : size > PG_MAX_SIZE ? PG_MAX_SIZE : size;
	p->retry_max_ms = retry_max_ms < PG_BACKOFF_MIN_MS ? PG_BACKOFF_MIN_MS : retry_max_ms;
	p->connect_timeout_ms = PG_CONNECT_TIMEOUT_MS;
	p->max_queue = PG_DEFAULT_MAX_QUEUE;
	p->rng = (uint32_t)now_us() ^ ((uint32_t)(uintptr_t)p << 7) ^ 0x2545f491u;
	if (p->rng == 0)
		p->rng = 1;
	ev_timer_init(&p->deliver, deliver_cb, 0., 0.);
	p->deliver.data = p;
	inspect_conninfo(p);
	p->conns = xcalloc((size_t)p->size, sizeof(*p->conns));
	for (int i = 0; i < p->size; i++) {
		struct pg_conn *c = &p->conns[i];
		c->pool = p;
		c->idx = i + 1;
		c->state = C_DOWN;
		ev_io_init(&c->io, io_cb, -1, 0);
		c->io.data = c;
		ev_timer_init(&c->timer, timer_cb, 0., 0.);
		c->timer.data = c;
	}
	if (p->conninfo_bad) {
		p->pstate = P_DOWN;
		return p;
	}
	for (int i = 0; i < p->size; i++)
		conn_start(&p->conns[i]);
	return p;
}

void pg_pool_set_max_queue(struct pg_pool *p, size_t max_queue)
{
	p->max_queue = max_queue;
}

static struct pg_req *req_new(const char *sql, int nparams, const char *const *values, const int *lengths,
			      const int *binary, int binary_result, pg_cb cb, void *arg)
{
	size_t n = nparams > 0 ? (size_t)nparams : 0;
	size_t sqllen = strlen(sql);
	size_t need = sizeof(struct pg_req);
	size_t off_values = need;
	need += n * sizeof(char *);
	size_t off_lengths = need;
	need += n * sizeof(int);
	size_t off_formats = need;
	need += n * sizeof(int);
	size_t off_data = need;
	need += sqllen + 1;
	for (size_t i = 0; i < n; i++) {
		if (values == NULL || values[i] == NULL)
			continue;
		bool bin = binary != NULL && binary[i];
		size_t len = (lengths != NULL && lengths[i] >= 0) ? (size_t)lengths[i] : bin ? 0 : strlen(values[i]);
		need += len + 1;
	}
	struct pg_req *r = xmalloc(need);
	memset(r, 0, sizeof(*r));
	char *base = (char *)r;
	r->cb = cb;
	r->arg = arg;
	r->nparams = (int)n;
	r->binary_result = binary_result ? 1 : 0;
	r->values = n ? (const char **)(void *)(base + off_values) : NULL;
	r->lengths = n ? (int *)(void *)(base + off_lengths) : NULL;
	r->formats = n ? (int *)(void *)(base + off_formats) : NULL;
	char *d = base + off_data;
	memcpy(d, sql, sqllen + 1);
	r->sql = d;
	d += sqllen + 1;
	for (size_t i = 0; i < n; i++) {
		bool bin = binary != NULL && binary[i];
		r->formats[i] = bin ? 1 : 0;
		if (values == NULL || values[i] == NULL) {
			r->values[i] = NULL;
			r->lengths[i] = 0;
			continue;
		}
		size_t len = (lengths != NULL && lengths[i] >= 0) ? (size_t)lengths[i] : bin ? 0 : strlen(values[i]);
		if (len > 0)
			memcpy(d, values[i], len);
		d[len] = '\0';	/* text parameters must be NUL-terminated */
		r->values[i] = d;
		r->lengths[i] = (int)len;
		d += len + 1;
	}
	return r;
}

/* Queue a new request, or fail it (on a later iteration) when it cannot
 * wait for a connection. */
static struct pg_req *submit(struct pg_pool *p, struct pg_req *r)
{
	if (p->up == 0 && p->connecting == 0) {
		fail_req(p, r, "database unavailable");
		return r;
	}
	if (p->queue.n >= p->max_queue) {
		fail_req(p, r, "too busy");
		return r;
	}
	r->state = R_QUEUED;
	list_push_back(&p->queue, r);
	dispatch(p);
	return r;
}

struct pg_req *pg_query(struct pg_pool *p, const char *sql, int nparams, const char *const *values,
			const int *lengths, const int *binary, int binary_result, pg_cb cb, void *arg)
{
	if (p->closing)
		return NULL;
	return submit(p, req_new(sql, nparams, values, lengths, binary, binary_result, cb, arg));
}

struct pg_req *pg_copy_in(struct pg_pool *p, const char *sql, pg_copy_source src, pg_cb cb, void *arg)
{
	if (p->closing)
		return NULL;
	struct pg_req *r = req_new(sql, 0, NULL, NULL, NULL, 0, cb, arg);
	r->src = src;
	return submit(p, r);
}

void pg_cancel(struct pg_pool *p, struct pg_req *r)
{
	if (r == NULL)
		return;
	switch (r->state) {
	case R_QUEUED:
		list_remove(&p->queue, r);
		free_req(r);
		break;
	case R_FAILED:
		list_remove(&p->failed, r);
		free_req(r);
		break;
	case R_RUNNING:
	case R_CALLING:
		/* finished (and freed) by the connection or the caller of
		 * the callback */
		r->cancelled = true;
		break;
	}
}

bool pg_pool_up(const struct pg_pool *p)
{
	return p->up > 0;
}

void pg_pool_stats(const struct pg_pool *p, struct pg_stats *out)
{
	out->queued = p->queue.n;
	out->running = p->running;
	out->conns_up = p->up;
	out->conns_total = p->size;
	out->queries = p->n_queries;
	out->failed = p->n_failed + p->failed.n;
	out->reconnects = p->n_reconnects;
}

void pg_pool_free(struct pg_pool **pp)
{
	struct pg_pool *p = pp ? *pp : NULL;
	if (p == NULL)
		return;
	p->closing = true;
	ev_timer_stop(p->loop, &p->deliver);
	for (int i = 0; i < p->size; i++) {
		struct pg_conn *c = &p->conns[i];
		ev_io_stop(p->loop, &c->io);
		ev_timer_stop(p->loop, &c->timer);
		if (c->req) {
			struct pg_req *r = c->req;
			c->req = NULL;
			p->running--;
			fail_req(p, r, "shutting down");
		}
	}
	struct pg_req *r;
	while ((r = list_pop(&p->queue)) != NULL)
		fail_req(p, r, "shutting down");
	for (r = p->failed.head; r; r = r->next)
		r->err = "shutting down";
	/* One at a time: a callback may cancel requests still listed. */
	while ((r = list_pop(&p->failed)) != NULL)
		call_failed(p, r);
	for (int i = 0; i < p->size; i++)
		conn_close(&p->conns[i]);
	if (p->up > 0 || p->pstate == P_UP)
		log_debug(&p->log, "PostgreSQL pool closed");
	free(p->conns);
	free(p->conninfo);
	free(p->appname);
	free(p->sid);
	free(p);
	*pp = NULL;
}
