/* stats.c - see stats.h. */
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "imapd/imapd.h"
#include "imapd/stats.h"
#include "lib/pg.h"

struct stats_table {
	uint64_t v[1][STAT_COUNT];	/* really [n][STAT_COUNT] */
};

/* A slot older than this is a stuck or dead worker. */
#define STALE_MS 5000

static size_t table_size(int n)
{
	return (size_t)(n > 0 ? n : 1) * STAT_COUNT * sizeof(uint64_t);
}

struct stats_table *stats_new(int n)
{
	void *p = mmap(NULL, table_size(n), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

void stats_free(struct stats_table **t, int n)
{
	if (*t != NULL)
		munmap(*t, table_size(n));
	*t = NULL;
}

static uint64_t *slot(struct stats_table *t, int index)
{
	return (uint64_t *)t + (size_t)index * STAT_COUNT;
}

static void put(uint64_t *s, enum stat_id k, uint64_t v)
{
	__atomic_store_n(&s[k], v, __ATOMIC_RELAXED);
}

static uint64_t get(const uint64_t *s, enum stat_id k)
{
	return __atomic_load_n(&s[k], __ATOMIC_RELAXED);
}

void stats_publish(struct stats_table *t, const struct worker *w)
{
	if (t == NULL)
		return;
	uint64_t *s = slot(t, w->index);
	put(s, STAT_PID, (uint64_t)getpid());
	put(s, STAT_PG_UP, pg_pool_up(w->pg));
	put(s, STAT_NATS_UP, w->nats_up);
	put(s, STAT_SESSIONS, w->nsessions);
	put(s, STAT_WATCHES, w->nwatches);
	put(s, STAT_ACCEPTED, w->n_accepted);
	put(s, STAT_COMMANDS, w->n_commands);
	put(s, STAT_NOTIFICATIONS, w->n_notifications);
	put(s, STAT_DELTA_QUERIES, w->n_delta_queries);
	put(s, STAT_RECHECKS, w->n_rechecks);
	put(s, STAT_UPDATED_MS, now_ms());
}

void stats_clear(struct stats_table *t, int index)
{
	if (t == NULL)
		return;
	uint64_t *s = slot(t, index);
	for (int k = 0; k < STAT_COUNT; k++)
		put(s, (enum stat_id)k, 0);
}

static const struct {
	enum stat_id id;
	const char *name;
	const char *type;
	const char *help;
} metrics[] = {
	{ STAT_PG_UP, "imapd_worker_postgresql_up", "gauge", "1 when the worker's PostgreSQL pool has a connection" },
	{ STAT_NATS_UP, "imapd_worker_nats_up", "gauge", "1 when the worker is connected to NATS" },
	{ STAT_SESSIONS, "imapd_worker_sessions", "gauge", "open sessions" },
	{ STAT_WATCHES, "imapd_worker_watched_mailboxes", "gauge", "selected mailboxes watched through NATS" },
	{ STAT_ACCEPTED, "imapd_worker_connections_total", "counter", "connections accepted" },
	{ STAT_COMMANDS, "imapd_worker_commands_total", "counter", "commands run" },
	{ STAT_NOTIFICATIONS, "imapd_worker_notifications_total", "counter", "change notifications received" },
	{ STAT_DELTA_QUERIES, "imapd_worker_delta_queries_total", "counter",
	  "shared delta queries run for idling sessions (one per mailbox per loop turn)" },
	{ STAT_RECHECKS, "imapd_worker_rechecks_total", "counter", "periodic HIGHESTMODSEQ checks" },
};

void stats_metrics(struct stats_table *t, int n, struct buf *out)
{
	for (size_t m = 0; m < ARRAY_SIZE(metrics); m++) {
		buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", metrics[m].name, metrics[m].help, metrics[m].name,
			   metrics[m].type);
		for (int i = 0; i < n; i++) {
			const uint64_t *s = slot(t, i);
			if (get(s, STAT_PID) == 0)
				continue;
			buf_printf(out, "%s{worker=\"%d\"} %llu\n", metrics[m].name, i,
				   (unsigned long long)get(s, metrics[m].id));
		}
	}
}

bool stats_ready(struct stats_table *t, int n, struct buf *out)
{
	bool ready = n > 0;
	uint64_t now = now_ms();
	for (int i = 0; i < n; i++) {
		const uint64_t *s = slot(t, i);
		uint64_t pid = get(s, STAT_PID), upd = get(s, STAT_UPDATED_MS);
		bool fresh = pid != 0 && now - upd < STALE_MS;
		bool pg = get(s, STAT_PG_UP) != 0, nats = get(s, STAT_NATS_UP) != 0;
		buf_printf(out, "worker %d: %s, postgresql %s, nats %s\n", i,
			   pid == 0 ? "not running" : fresh ? "running" : "not responding", pg ? "up" : "down",
			   nats ? "up" : "down (changes reach sessions through the periodic check)");
		if (!fresh || !pg)
			ready = false;
	}
	buf_puts(out, ready ? "ready\n" : "not ready\n");
	return ready;
}
