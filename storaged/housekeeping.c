/* housekeeping.c - storaged's periodic jobs (see housekeeping.h).
 *
 * Each job is a one-shot ev_timer re-armed at the end of every run, and at
 * most one pg_req in flight.  The state machine of a job:
 *
 *   idle --timer--> running --answer, more--> running (next step sent)
 *                          --answer, done--> idle (timer: interval)
 *                          --error---------> idle (timer: back-off)
 *
 * A job class says which query a step sends and how to read its answer;
 * the framework does the scheduling, the back-off and the logging.
 */
#include "storaged/housekeeping.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/config.h"
#include "lib/log.h"
#include "lib/pg.h"
#include "lib/util.h"

/* Seconds from start to a job's first run (or its interval if shorter):
 * soon enough that frequent restarts cannot starve a job, late enough that
 * the pool has connected. */
#define HK_FIRST_DELAY 5.0
/* First retry after an error; doubles up to the job's interval. */
#define HK_BACKOFF_MIN 1.0
#define HK_MAX_PARAMS 4

struct hk_job;

struct hk_job_class {
	const char *name;	/* for hk_job_stats() and the log sid "hk-<name>" */
	const char *sql;	/* one statement, the same for every step */
	/* Seconds between runs, from the configuration. */
	double (*interval)(const struct config *cfg);
	/* Fill the step's text parameters (storage in j->param); returns how many. */
	int (*params)(struct hk_job *j, const char *values[HK_MAX_PARAMS]);
	/* Read a successful answer: adds the step's count to *count.  Returns 1
	 * when another step should follow, 0 when the run is complete, -1 when
	 * the answer is not what the query returns. */
	int (*result)(PGresult *res, uint64_t *count);
	/* One line for a run that did something: "%llu what". */
	const char *what;
};

struct hk_job {
	struct hk *hk;
	const struct config *cfg;
	const struct hk_job_class *cls;
	char sid[32];
	struct log_ctx log;
	ev_timer timer;
	struct pg_req *req;		/* the step in flight, or NULL */
	double backoff;			/* the last retry delay; 0 while healthy */
	bool failing;			/* the last run ended in an error */
	uint64_t run_steps, run_count, run_started_ms;
	struct hk_job_stats stats;
	char param[HK_MAX_PARAMS][48];
};

/* ---- the tombstone expiry job (RFC 7162 5.3) --------------------------- */

static double tombstones_interval(const struct config *cfg)
{
	return (double)cfg->tombstone_expiry_interval;
}

static int tombstones_params(struct hk_job *j, const char *values[HK_MAX_PARAMS])
{
	const struct config *cfg = j->cfg;
	/* A bare number of seconds is a valid interval literal; "seconds"
	 * makes the log of a failing statement readable. */
	snprintf(j->param[0], sizeof(j->param[0]), "%lld seconds", (long long)cfg->tombstone_retention);
	snprintf(j->param[1], sizeof(j->param[1]), "%lld", (long long)cfg->tombstone_expiry_batch);
	values[0] = j->param[0];
	values[1] = j->param[1];
	return 2;
}

/* ---- the APPEND stage clean-up (sql/0006_append_stage.sql) ------------ */

static double stage_interval(const struct config *cfg)
{
	return (double)cfg->append_stage_expiry_interval;
}

static int stage_params(struct hk_job *j, const char *values[HK_MAX_PARAMS])
{
	/* Rows a crashed worker or a lost connection left behind. */
	snprintf(j->param[0], sizeof(j->param[0]), "%lld seconds", (long long)j->cfg->append_stage_max_age);
	values[0] = j->param[0];
	return 1;
}

static int count_result(PGresult *res, uint64_t *count)
{
	if (PQntuples(res) != 1 || PQnfields(res) != 1 || PQgetisnull(res, 0, 0))
		return -1;
	const char *v = PQgetvalue(res, 0, 0);
	uint64_t n;
	if (parse_u64(v, strlen(v), UINT64_MAX, &n) < 0)
		return -1;
	*count += n;
	return n > 0;
}

static const struct hk_job_class job_classes[] = {
	{
		.name = "tombstones",
		/* Each call folds about tombstone_expiry_batch tombstones in
		 * its own transaction and returns how many; 0 means nothing
		 * older than the retention is left. */
		.sql = "SELECT expire_tombstones($1::interval, $2::integer)",
		.interval = tombstones_interval,
		.params = tombstones_params,
		.result = count_result,
		.what = "tombstones folded into hole ranges",
	},
	{
		.name = "append-stage",
		.sql = "SELECT append_stage_expire($1::interval)",
		.interval = stage_interval,
		.params = stage_params,
		.result = count_result,
		.what = "stale APPEND stage rows removed",
	},
};

/* ---- the framework ------------------------------------------------------- */

struct hk {
	struct ev_loop *loop;
	struct pg_pool *pg;
	struct hk_job jobs[ARRAY_SIZE(job_classes)];
};

static void schedule(struct hk_job *j, double delay)
{
	ev_timer_stop(j->hk->loop, &j->timer);
	ev_timer_set(&j->timer, delay, 0.);
	ev_timer_start(j->hk->loop, &j->timer);
}

static void step(struct hk_job *j);

static void run_failed(struct hk_job *j, const char *err)
{
	double interval = j->cls->interval(j->cfg);
	j->backoff = j->backoff > 0 ? MIN(j->backoff * 2, interval) : MIN(HK_BACKOFF_MIN, interval);
	j->stats.failures++;
	/* One warning per outage, not one per retry. */
	if (!j->failing)
		log_warn(&j->log, "%s: %s (after %" PRIu64 " %s; retrying with back-off)",
			 j->cls->name, err, j->run_count, j->cls->what);
	else
		log_debug(&j->log, "%s: %s (retry in %.0f s)", j->cls->name, err, j->backoff);
	j->failing = true;
	schedule(j, j->backoff);
}

static void run_done(struct hk_job *j)
{
	uint64_t ms = now_ms() - j->run_started_ms;
	if (j->failing)
		log_info(&j->log, "%s: working again", j->cls->name);
	j->failing = false;
	j->backoff = 0;
	j->stats.runs++;
	if (j->run_count > 0)
		log_info(&j->log, "%s: %" PRIu64 " %s in %" PRIu64 " call%s, %" PRIu64 " ms",
			 j->cls->name, j->run_count, j->cls->what, j->run_steps,
			 j->run_steps == 1 ? "" : "s", ms);
	else
		log_debug(&j->log, "%s: nothing to do (%" PRIu64 " ms)", j->cls->name, ms);
	schedule(j, j->cls->interval(j->cfg));
}

static void step_done(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	struct hk_job *j = arg;
	j->req = NULL;
	if (err != NULL) {
		/* pg_pool_free() answers what hk_free() did not cancel; no
		 * rescheduling then, the loop is going away. */
		if (strcmp(err, "shutting down") == 0)
			return;
		if (sqlstate[0] != '\0') {
			char msg[300];
			snprintf(msg, sizeof(msg), "%s [SQLSTATE %s]", err, sqlstate);
			run_failed(j, msg);
		} else {
			run_failed(j, err);
		}
		return;
	}
	int more = j->cls->result(res, &j->run_count);
	if (more < 0) {
		run_failed(j, "unexpected answer from the database");
		return;
	}
	j->run_steps++;
	j->stats.steps++;
	if (more > 0)
		step(j);	/* the next batch at once: the run is not over */
	else
		run_done(j);
}

static void step(struct hk_job *j)
{
	const char *values[HK_MAX_PARAMS];
	int n = j->cls->params(j, values);
	j->req = pg_query(j->hk->pg, j->cls->sql, n, values, NULL, NULL, 0, step_done, j);
	/* NULL only while pg_pool_free() runs: nothing more to do then. */
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct hk_job *j = w->data;
	if (j->req != NULL)	/* cannot happen: the timer is armed only when idle */
		return;
	j->run_steps = 0;
	j->run_count = 0;
	j->run_started_ms = now_ms();
	step(j);
}

struct hk *hk_new(struct ev_loop *loop, struct pg_pool *pool, const struct config *cfg)
{
	struct hk *hk = xcalloc(1, sizeof(*hk));
	hk->loop = loop;
	hk->pg = pool;
	for (size_t i = 0; i < ARRAY_SIZE(job_classes); i++) {
		struct hk_job *j = &hk->jobs[i];
		j->hk = hk;
		j->cfg = cfg;
		j->cls = &job_classes[i];
		snprintf(j->sid, sizeof(j->sid), "hk-%s", j->cls->name);
		j->log.sid = j->sid;
		ev_timer_init(&j->timer, timer_cb, 0., 0.);
		j->timer.data = j;
		double interval = j->cls->interval(cfg);
		schedule(j, MIN(HK_FIRST_DELAY, interval));
		log_debug(&j->log, "%s: every %.0f s", j->cls->name, interval);
	}
	return hk;
}

int hk_job_stats(const struct hk *hk, const char *name, struct hk_job_stats *out)
{
	for (size_t i = 0; i < ARRAY_SIZE(job_classes); i++) {
		if (strcmp(hk->jobs[i].cls->name, name) == 0) {
			*out = hk->jobs[i].stats;
			return 0;
		}
	}
	return -1;
}

void hk_free(struct hk **hkp)
{
	struct hk *hk = hkp ? *hkp : NULL;
	if (hk == NULL)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(job_classes); i++) {
		struct hk_job *j = &hk->jobs[i];
		ev_timer_stop(hk->loop, &j->timer);
		pg_cancel(hk->pg, j->req);
		j->req = NULL;
	}
	free(hk);
	*hkp = NULL;
}
