/* notify.h - change notifications over NATS, for imapd workers and storaged.
 *
 * NATS is a doorbell, PostgreSQL is the truth (DESIGN.md, invariants 4 and
 * 5): a writer publishes `<prefix>.<tenant_id>.<mailbox_id>` after its
 * transaction committed; workers subscribe to the mailboxes their sessions
 * watch.  Delivery is at-most-once, and this library drops rather than
 * waits: a publish while NATS is down is dropped and counted, a message
 * that finds the loop's queue full (nats_max_pending) is dropped and
 * counted.  The reader recovers by re-checking highestmodseq periodically
 * and whenever the state callback reports `connected` again.
 *
 * Threads.  Every function here is for the loop's thread (the one that
 * called notify_new and runs ev_run), and every callback runs on it.
 * nats.c works on threads of its own (connect/reconnect, message delivery,
 * connection events); those only copy what they have into a mutex-guarded
 * queue and wake the loop with one ev_async.  Nothing here blocks the loop
 * while NATS is down or slow: the first connection attempt runs on a
 * helper thread, subscribe/unsubscribe requests made while disconnected are
 * applied when the connection is back.  Remaining waits, all bounded by the
 * NATS connect timeout (2 s) and only when NATS misbehaves: notify_free()
 * during a connection attempt, and a publish in the instant between a
 * connection dropping and the loop learning of it.
 *
 * Process life.  nats.c starts threads when the library opens, so it must
 * be opened after fork(): imapd's master must never call into notify;
 * each worker does (notify_new opens the library on first use, or call
 * notify_global_init() yourself).  At exit: notify_free() every instance,
 * then notify_global_shutdown() once, which waits for nats.c's threads and
 * frees what they still held, so sanitizers see no leak.
 */
#ifndef NOTIFY_NOTIFY_H
#define NOTIFY_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "lib/config.h"

struct notify;
struct notify_sub;

/* A message for a subscription; data has len bytes plus a NUL courtesy
 * byte.  Both pointers are valid during the call only.  The callback may
 * publish, subscribe and unsubscribe (any subscription, its own included);
 * it must not call notify_free(). */
typedef void (*notify_msg_cb)(void *arg, const char *subject, const char *data, size_t len);
/* After the connection came up (first connect or reconnect: true; the
 * subscriptions are in place again) or went down (false).  Called only on
 * changes.  Same rules as notify_msg_cb. */
typedef void (*notify_state_cb)(void *arg, bool connected);

/* Open nats.c in this process (idempotent; notify_new calls it).  Returns
 * 0, or -1 if the library cannot start. */
int notify_global_init(void);
/* Close nats.c and wait (up to 5 s) for its threads; frees what they still
 * held.  Call once at process exit, after notify_free() of every instance.
 * notify_global_init() may open the library again afterwards. */
void notify_global_shutdown(void);

/* Start connecting to cfg->nats_url (comma-separated list), in the
 * background: the call returns at once, also when NATS is down (it then
 * retries forever with back-off, 100 ms doubling up to 2 s, with jitter).
 * cfg->nats_max_pending bounds the messages queued towards the loop.
 * log_sid prefixes log lines (copied; may be NULL).  state_cb may be NULL.
 * Never returns NULL: errors (a URL nats.c rejects...) are logged and
 * retried every few seconds up to 30 s. */
struct notify *notify_new(struct ev_loop *loop, const struct config *cfg, const char *log_sid,
			  notify_state_cb state_cb, void *arg);

/* The loop's view: connected, and the connection's subscriptions set up. */
bool notify_connected(const struct notify *n);

/* Fire and forget, never blocks a write path.  Returns 0 when handed to
 * nats.c (sent when the socket is writable), -1 when dropped (not
 * connected, invalid subject, nats.c refused): drops are counted, never
 * retried; PostgreSQL is the truth. */
int notify_publish(struct notify *n, const char *subject, const void *data, size_t len);

/* Subscribe (wildcards `*` and `>` allowed).  Returns NULL only for an
 * invalid subject.  While disconnected the subscription is recorded and
 * made when the connection is up; it survives reconnects.  cb is never
 * called after notify_unsubscribe() returns, even for messages already
 * queued. */
struct notify_sub *notify_subscribe(struct notify *n, const char *subject, notify_msg_cb cb, void *arg);
/* Release a subscription; *s is set to NULL.  s or *s may be NULL. */
void notify_unsubscribe(struct notify *n, struct notify_sub **s);

/* Subject helpers.  `<prefix>.<tenant_id>.<mailbox_id>`, and
 * `<prefix>.<tenant_id>.>` for operators watching a tenant.  Ids are
 * decimal, so no escaping.  Return the length written, or -1 when the
 * prefix is not a valid subject or out is too small. */
int notify_subject_mailbox(char *out, size_t outlen, const char *prefix, int64_t tenant_id, int64_t mailbox_id);
int notify_subject_tenant(char *out, size_t outlen, const char *prefix, int64_t tenant_id);

struct notify_stats {
	bool connected;
	uint64_t published;		/* handed to nats.c */
	uint64_t publish_dropped;	/* not connected, refused, invalid */
	uint64_t delivered;		/* subscription callbacks called */
	uint64_t queue_dropped;		/* nats_max_pending reached */
	uint64_t stale;			/* arrived for a subscription already gone */
	uint64_t reconnects;		/* reconnections after the first connect */
	uint64_t errors;		/* asynchronous errors from nats.c */
	size_t pending;			/* queued towards the loop right now */
	size_t subscriptions;		/* open notify_sub handles */
};
void notify_stats(const struct notify *n, struct notify_stats *out);

/* Close the connection and release everything, including subscriptions
 * still open (their handles become invalid).  Loop thread; not from inside
 * a notify callback.  May wait for a connection attempt in progress
 * (bounded by the NATS connect timeout).  n or *n may be NULL. */
void notify_free(struct notify **n);

#endif
