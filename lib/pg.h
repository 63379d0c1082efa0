/* pg.h - asynchronous PostgreSQL connection pool on a libev loop.
 *
 * One pool per worker process, shared by all of its sessions: the number of
 * sessions never decides the number of database connections (DESIGN.md, "The
 * event loop").  Queries are queued FIFO and run on the first free
 * connection.  Nothing here blocks the loop: connections are made with
 * PQconnectStartParams/PQconnectPoll, queries are sent with
 * PQsendQueryParams on non-blocking connections, and PQsocket is watched
 * with ev_io (STYLE.md, "Async I/O").  pg_copy_in() streams the data of a
 * COPY ... FROM STDIN from a callback, a chunk at a time as the socket
 * takes it, so data of any size passes with bounded memory.
 *
 * Host names: libpq resolves a host name synchronously inside
 * PQconnectPoll, which would stall the whole worker while DNS answers.  Use
 * numeric addresses (host=127.0.0.1), a Unix socket directory, or give
 * hostaddr= next to host=; pg_pool_new() logs a warning once when the
 * conninfo names a host that is not numeric and has no hostaddr.
 *
 * Threads: everything here runs on the loop's thread; nothing is
 * thread-safe.
 *
 * Reconnects: a connection that fails or drops is retried with exponential
 * back-off (100 ms doubling, with jitter, up to retry_max_ms); the pool logs
 * once per state change (PostgreSQL up / down, a connection lost), not once
 * per attempt.  An attempt that does not complete within connect_timeout
 * from the conninfo (default 5 s) counts as failed.  Unless the conninfo
 * says otherwise, TCP keepalives (30 s idle, 10 s interval, 3 probes) and
 * tcp_user_timeout=60000 are set, so a server that vanished without a
 * reset is noticed in about a minute.
 */
#ifndef LIB_PG_H
#define LIB_PG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <ev.h>
#include <libpq-fe.h>

struct pg_pool;
struct pg_req;		/* opaque handle of a queued or running query */

/* The answer to a query, called once per pg_query() unless cancelled.
 *
 * res: the last PGresult of the query (PGRES_TUPLES_OK, PGRES_COMMAND_OK, or
 *      an error status); the pool PQclear()s it after the callback returns,
 *      so copy what you need.  May be NULL when err is set.
 * err: NULL on success.  Otherwise a short message:
 *      "database unavailable"  no connection is up (nothing was sent);
 *      "too busy"              the queue is full (nothing was sent);
 *      "connection lost"       the connection dropped while the query ran:
 *                              the caller must NOT assume whether a write
 *                              committed (answer NO [UNAVAILABLE] and let the
 *                              client resynchronise);
 *      "shutting down"         pg_pool_free() is running;
 *      or the server's primary error message (res is then the error result).
 * sqlstate: the 5-character SQLSTATE of a server error ("23505" unique
 *      violation, ...); "" for the other errors and on success.
 *
 * The callback may call pg_query() and pg_cancel() (for any request,
 * including its own, which is then a no-op) and may free whatever owns
 * other pending requests as long as it cancels them.  It must not call
 * pg_pool_free(). */
typedef void (*pg_cb)(void *arg, PGresult *res, const char *err, const char *sqlstate);

/* Create a pool of size connections (clamped to 1..64) and start connecting
 * at once.  retry_max_ms is the longest back-off between attempts.  log_sid
 * prefixes the pool's log lines (copied; may be NULL).  Never returns NULL:
 * a conninfo libpq cannot parse is logged and the pool stays down (every
 * query gets "database unavailable"); use pg_conninfo_check() to refuse a
 * bad configuration up front. */
struct pg_pool *pg_pool_new(struct ev_loop *loop, const char *conninfo, int size, int retry_max_ms,
			    const char *log_sid);

/* Most queries that may wait for a connection; beyond it pg_query() answers
 * "too busy".  Default PG_DEFAULT_MAX_QUEUE. */
#define PG_DEFAULT_MAX_QUEUE 10000
void pg_pool_set_max_queue(struct pg_pool *p, size_t max_queue);

/* Queue a parameterised query.  Parameters are copied (values, lengths and
 * formats), so the caller's memory may go away when pg_query() returns.
 * lengths and binary may be NULL (all text, NUL-terminated); a NULL value
 * is SQL NULL.  binary_result: 0 text, 1 binary.  sql must be a single
 * statement (PQsendQueryParams).
 *
 * When no connection is up and none is being attempted, or the queue is
 * full, the callback gets the error on the next loop iteration, never from
 * inside pg_query().  A query queued while every connection is down is
 * failed with "database unavailable" as soon as the pool has no attempt in
 * progress.
 *
 * Returns a handle for pg_cancel(), valid until the callback has returned
 * or the request was cancelled.  Returns NULL only while pg_pool_free() is
 * running (from a callback it triggers); the callback is then never
 * called. */
struct pg_req *pg_query(struct pg_pool *p, const char *sql, int nparams, const char *const *values,
			const int *lengths, const int *binary, int binary_result, pg_cb cb, void *arg);

/* Supplies the data of a COPY ... FROM STDIN (see pg_copy_in()), on the
 * loop thread, each time the connection has sent everything before: write
 * up to cap octets to buf and return how many (> 0); return 0 when the
 * data is complete, -1 to abort the COPY.  It must not block for long (a
 * read from a local file is fine).  It may call pg_query() and pg_cancel()
 * (its own request included), not pg_pool_free(). */
typedef ssize_t (*pg_copy_source)(void *arg, char *buf, size_t cap);

/* Most octets one call of a pg_copy_source is asked for. */
#define PG_COPY_CHUNK 65536

/* Queue a COPY ... FROM STDIN statement (sql, no parameters; any COPY
 * format, the source produces the bytes exactly as the server reads them,
 * e.g. binary COPY with its PGCOPY header and trailer).  Once the server
 * asks for the data, src is called whenever the previous chunk has left
 * for the socket, so the worker holds at most about two chunks of it
 * whatever the total size (nothing is read ahead of the socket, nothing
 * waits: write readiness is watched with libev).  Queueing, errors,
 * connection loss and shutdown are as for pg_query(); the callback gets
 * the result of the COPY ("COPY n", PGRES_COMMAND_OK).  When src returns
 * -1 the COPY is ended with CopyFail, which makes the server roll it back,
 * and the callback gets err "copy source failed".
 *
 * pg_cancel() of a COPY that is sending its data ends it with CopyFail:
 * unlike a cancelled query, nothing of it commits, and src is never called
 * again.  The connection is reused afterwards. */
struct pg_req *pg_copy_in(struct pg_pool *p, const char *sql, pg_copy_source src, pg_cb cb, void *arg);

/* The caller no longer wants the answer (e.g. its session closed): the
 * callback will never be called.  A queued query is dropped; a running one
 * is left to finish on the server and its result discarded (a write may
 * still commit; a COPY still sending its data is aborted instead, see
 * pg_copy_in()).  Safe from inside any callback, also for the request whose
 * callback is running.  req may be NULL. */
void pg_cancel(struct pg_pool *p, struct pg_req *req);

/* At least one connection is established. */
bool pg_pool_up(const struct pg_pool *p);

struct pg_stats {
	size_t queued;		/* waiting for a connection */
	size_t running;		/* sent, answer not yet complete */
	int conns_up;		/* established connections */
	int conns_total;	/* pool size */
	uint64_t queries;	/* queries completed with an answer from the server */
	uint64_t failed;	/* requests answered with a local error */
	uint64_t reconnects;	/* connections established after the first */
};
void pg_pool_stats(const struct pg_pool *p, struct pg_stats *out);

/* Check that libpq can parse conninfo (for --check-config).  Returns 0, or
 * -1 with a message in err. */
int pg_conninfo_check(const char *conninfo, char *err, size_t errlen);

/* Stop: every queued, failed-but-undelivered and running request gets its
 * callback with err "shutting down" (synchronously, from here), then the
 * connections are closed and *p is set to NULL.  Must not be called from a
 * pg callback.  p or *p may be NULL. */
void pg_pool_free(struct pg_pool **p);

#endif
