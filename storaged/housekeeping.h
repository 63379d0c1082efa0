/* housekeeping.h - storaged's periodic jobs on its event loop.
 *
 * A job runs every `interval` seconds.  A run is a sequence of steps, each
 * one query through the asynchronous pool (lib/pg.h): the job never has
 * more than one query in flight, and nothing here blocks the loop.  A step
 * says whether the run goes on (the next query is sent as soon as the
 * answer is in) or is complete; the next run is then scheduled an interval
 * after the end of this one, so slow runs never pile up.
 *
 * Errors (database down, a failed statement) end the run with a warning
 * and retry with back-off: 1 s, doubling, never later than the interval.
 * Only the first failure of a series is logged as a warning, the rest at
 * debug, and the first success after a failure says so.  Every line
 * carries the job's name as its sid ("hk-tombstones").
 *
 * Jobs today:
 *   tombstones  SELECT expire_tombstones(tombstone_retention,
 *               tombstone_expiry_batch) until it returns 0, every
 *               tombstone_expiry_interval (sql/0005_tombstone_expiry.sql).
 *
 * Threads: loop thread only.
 */
#ifndef STORAGED_HOUSEKEEPING_H
#define STORAGED_HOUSEKEEPING_H

#include <stdint.h>

#include <ev.h>

struct config;
struct pg_pool;
struct hk;

/* Start the jobs on loop, using pool for their queries.  The first run of
 * each job comes a few seconds after start (at most its interval), so a
 * daemon restarted more often than the interval still does the work.  cfg
 * and pool must outlive the returned object.  Never returns NULL. */
struct hk *hk_new(struct ev_loop *loop, struct pg_pool *pool, const struct config *cfg);

/* What a job has done since start (for tests and, later, metrics). */
struct hk_job_stats {
	uint64_t runs;		/* completed runs */
	uint64_t failures;	/* runs ended by an error */
	uint64_t steps;		/* queries answered without error */
	uint64_t total;		/* the job's own count: tombstones folded */
};
/* Stats of the job named name ("tombstones"); 0, or -1 if there is none. */
int hk_job_stats(const struct hk *hk, const char *name, struct hk_job_stats *out);

/* Stop every job: timers stopped, a query in flight cancelled (its answer
 * is discarded; a call already running on the server still commits).  Call
 * before pg_pool_free().  *hk is set to NULL; hk or *hk may be NULL. */
void hk_free(struct hk **hk);

#endif
