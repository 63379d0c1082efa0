/* stats.h - per-worker counters in memory shared with the master, which
 * serves them over HTTP (/metrics in the Prometheus text format, /ready
 * for load balancers and Kubernetes probes).
 *
 * The master maps the table before forking; each worker owns one slot and
 * refreshes it from its loop a few times a second (stats_publish), with
 * relaxed atomic stores; the master reads with relaxed atomic loads.  A
 * slot is only ever written by one process, so no lock is needed; a
 * reader may see counters of slightly different moments, which is fine
 * for monitoring.
 */
#ifndef IMAPD_STATS_H
#define IMAPD_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

struct worker;

enum stat_id {
	STAT_PID,
	STAT_UPDATED_MS,	/* CLOCK_MONOTONIC milliseconds of the last refresh */
	STAT_PG_UP,
	STAT_NATS_UP,
	STAT_SESSIONS,
	STAT_WATCHES,		/* mailboxes watched (NATS subscriptions) */
	STAT_ACCEPTED,
	STAT_COMMANDS,
	STAT_NOTIFICATIONS,	/* change notifications received */
	STAT_DELTA_QUERIES,	/* shared delta queries for idling sessions */
	STAT_RECHECKS,		/* periodic HIGHESTMODSEQ checks */
	STAT_COUNT
};

struct stats_table;

/* Shared, anonymous mapping for n workers (master, before fork). */
struct stats_table *stats_new(int n);
void stats_free(struct stats_table **t, int n);

/* Worker side: copy the worker's counters into slot w->index. */
void stats_publish(struct stats_table *t, const struct worker *w);
/* Master side: a worker slot is cleared when the worker dies. */
void stats_clear(struct stats_table *t, int index);

/* Master side: render /metrics, or /ready (returns whether ready: every
 * live worker refreshed recently and reaches PostgreSQL; NATS being down
 * is reported but does not make the node unready, since sessions still
 * converge through the periodic check). */
void stats_metrics(struct stats_table *t, int n, struct buf *out);
bool stats_ready(struct stats_table *t, int n, struct buf *out);

#endif
