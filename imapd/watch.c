/* watch.c - see watch.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imapd/mailview.h"
#include "imapd/watch.h"
#include "lib/pg.h"
#include "notify/notify.h"

struct watch {
	struct watch *hnext;		/* hash chain */
	struct watch *pnext;		/* worker's pending list */
	struct worker *w;
	int64_t account_id, tenant_id, mailbox_id;
	unsigned refs;			/* sessions with the mailbox selected */
	struct selected *sels;		/* those sessions' views */
	struct notify_sub *sub;
	uint64_t notified;		/* highest modseq a notification announced */
	bool pending;			/* on the worker's pending list */
	struct pg_req *req;		/* the running shared delta query */
	uint64_t base;			/* its modseq */
	bool again;			/* feed once more when it returns */
	ev_tstamp last_query;		/* when the last delta query started */
	ev_timer hold;			/* spaces delta queries in a burst */
};

static void hold_cb(struct ev_loop *loop, ev_timer *t, int revents);

static size_t slot(const struct worker *w, int64_t mailbox_id)
{
	return (size_t)((uint64_t)mailbox_id * 0x9E3779B97F4A7C15ull >> 17) & (w->watch_cap - 1);
}

static struct watch *lookup(struct worker *w, int64_t mailbox_id)
{
	if (w->watch_cap == 0)
		return NULL;
	for (struct watch *x = w->watches[slot(w, mailbox_id)]; x != NULL; x = x->hnext)
		if (x->mailbox_id == mailbox_id)
			return x;
	return NULL;
}

static void rehash(struct worker *w)
{
	size_t ncap = w->watch_cap ? w->watch_cap * 2 : 64;
	struct watch **old = w->watches;
	size_t ocap = w->watch_cap;
	w->watches = xcalloc(ncap, sizeof(*w->watches));
	w->watch_cap = ncap;
	for (size_t i = 0; i < ocap; i++) {
		struct watch *x = old[i];
		while (x != NULL) {
			struct watch *next = x->hnext;
			size_t k = slot(w, x->mailbox_id);
			x->hnext = w->watches[k];
			w->watches[k] = x;
			x = next;
		}
	}
	free(old);
}

/* Queue the watch for a shared delta query at the end of this loop turn. */
static void make_pending(struct watch *x)
{
	if (x->pending)
		return;
	x->pending = true;
	x->pnext = x->w->watch_pending;
	x->w->watch_pending = x;
}

/* A session learnt the database may be ahead of it. */
static void mark(struct watch *x, struct selected *sel)
{
	sel->dirty = true;
	if (sel->idle_cmd != NULL)
		make_pending(x);
}

static void on_notify(void *arg, const char *subject, const char *data, size_t len)
{
	struct watch *x = arg;
	x->w->n_notifications++;
	/* Payload: "<highestmodseq> <kind>" (mailbox_notify()). */
	char *end;
	uint64_t modseq = strtoull(data, &end, 10);
	if (end == data)
		modseq = 0;	/* unknown: assume a change */
	if (modseq > x->notified)
		x->notified = modseq;
	for (struct selected *sel = x->sels; sel != NULL; sel = sel->wnext)
		if (modseq == 0 || modseq > sel->known_modseq)
			mark(x, sel);
}

void watch_attach(struct session *s)
{
	struct worker *w = s->w;
	struct selected *sel = s->sel;
	sel->s = s;
	struct watch *x = lookup(w, sel->mailbox_id);
	if (x == NULL) {
		if (w->nwatches + 1 > w->watch_cap / 2)
			rehash(w);
		x = xcalloc(1, sizeof(*x));
		x->w = w;
		x->account_id = s->account_id;
		x->tenant_id = s->tenant_id;
		x->mailbox_id = sel->mailbox_id;
		ev_timer_init(&x->hold, hold_cb, 0.0, 0.0);
		x->hold.data = x;
		size_t k = slot(w, x->mailbox_id);
		x->hnext = w->watches[k];
		w->watches[k] = x;
		w->nwatches++;
		char subject[256];
		if (w->notify != NULL &&
		    notify_subject_mailbox(subject, sizeof(subject), w->cfg->nats_subject_prefix, x->tenant_id,
					   x->mailbox_id) > 0)
			x->sub = notify_subscribe(w->notify, subject, on_notify, x);
	}
	x->refs++;
	sel->watch = x;
	sel->wprev = NULL;
	sel->wnext = x->sels;
	if (x->sels != NULL)
		x->sels->wprev = sel;
	x->sels = sel;
}

void watch_detach(struct selected *sel)
{
	struct watch *x = sel->watch;
	if (x == NULL)
		return;
	struct worker *w = x->w;
	if (sel->wprev != NULL)
		sel->wprev->wnext = sel->wnext;
	else
		x->sels = sel->wnext;
	if (sel->wnext != NULL)
		sel->wnext->wprev = sel->wprev;
	sel->watch = NULL;
	sel->idle_cmd = NULL;
	if (--x->refs > 0)
		return;
	/* The last session left: drop the subscription and the watch. */
	if (x->req != NULL)
		pg_cancel(w->pg, x->req);
	ev_timer_stop(w->loop, &x->hold);
	notify_unsubscribe(w->notify, &x->sub);
	struct watch **pp = &w->watches[slot(w, x->mailbox_id)];
	while (*pp != x)
		pp = &(*pp)->hnext;
	*pp = x->hnext;
	if (x->pending) {
		struct watch **q = &w->watch_pending;
		while (*q != x)
			q = &(*q)->pnext;
		*q = x->pnext;
	}
	w->nwatches--;
	free(x);
	if (w->nwatches == 0) {
		/* Nothing watched: give the table back (also at worker exit). */
		free(w->watches);
		w->watches = NULL;
		w->watch_cap = 0;
	}
}

/* ---- feeding idling sessions ---- */

void watch_idle(struct selected *sel, struct cmd *c)
{
	sel->idle_cmd = c;
	if (c != NULL && sel->dirty && sel->watch != NULL)
		make_pending(sel->watch);
}

static void delta_cb(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	struct watch *x = arg;
	struct worker *w = x->w;
	x->req = NULL;
	uint64_t base = x->base;
	if (err != NULL) {
		log_warn(&w->log, "mailbox %lld delta: %s", (long long)x->mailbox_id, err);
		/* The sessions stay dirty; the periodic check tries again. */
		return;
	}
	/* Every idling session whose view is at or above the query's modseq
	 * takes the rows above its own known_modseq.  Hold references: a
	 * session may close while it writes (output limit). */
	size_t n = 0;
	for (struct selected *sel = x->sels; sel != NULL; sel = sel->wnext)
		n++;
	struct session **list = xcalloc(n ? n : 1, sizeof(*list));
	size_t k = 0;
	for (struct selected *sel = x->sels; sel != NULL; sel = sel->wnext) {
		if (sel->idle_cmd == NULL || !sel->dirty)
			continue;
		if (sel->known_modseq < base || sel->idle_cmd->pg != NULL) {
			x->again = true;	/* it needs rows from lower down, or is busy */
			continue;
		}
		session_ref(sel->s);
		list[k++] = sel->s;
	}
	for (size_t i = 0; i < k; i++) {
		struct session *s = list[i];
		struct selected *sel = s->sel;
		if (!s->dead && sel != NULL && sel->watch == x && sel->idle_cmd != NULL) {
			struct cmd *c = sel->idle_cmd;
			sel->dirty = false;
			int r = sel_apply_delta(c, res, SEL_DELTA_LIMIT);
			/* Announced while the query ran, or more than one read. */
			if (r >= 0 && (sel->dirty || x->notified > sel->known_modseq))
				mark(x, sel);
			if (r > 0 && (r & SEL_DELTA_CLAIM))
				sel_claim_recent(c, idle_synced);
			else
				idle_synced(c);
		}
		session_unref(s);
	}
	free(list);
	if (x->again) {
		x->again = false;
		for (struct selected *sel = x->sels; sel != NULL; sel = sel->wnext)
			if (sel->dirty && sel->idle_cmd != NULL)
				make_pending(x);
	}
}

static void start_delta(struct watch *x);

static void hold_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	start_delta(t->data);
}

static void start_delta(struct watch *x)
{
	struct worker *w = x->w;
	if (x->req != NULL) {
		x->again = true;
		return;
	}
	/* The lowest modseq any dirty idling session knows. */
	uint64_t base = UINT64_MAX;
	for (struct selected *sel = x->sels; sel != NULL; sel = sel->wnext)
		if (sel->idle_cmd != NULL && sel->dirty && sel->known_modseq < base)
			base = sel->known_modseq;
	if (base == UINT64_MAX)
		return;
	char p1[24], p2[24], p3[24], p4[24];
	snprintf(p1, sizeof(p1), "%lld", (long long)x->account_id);
	snprintf(p2, sizeof(p2), "%lld", (long long)x->mailbox_id);
	snprintf(p3, sizeof(p3), "%llu", (unsigned long long)base);
	snprintf(p4, sizeof(p4), "%u", SEL_DELTA_LIMIT);
	const char *params[4] = { p1, p2, p3, p4 };
	x->base = base;
	x->last_query = ev_now(w->loop);
	w->n_delta_queries++;
	x->req = pg_query(w->pg, SEL_DELTA_SQL, 4, params, NULL, NULL, 0, delta_cb, x);
}

/* End of a loop turn: one delta query per pending mailbox, however many
 * notifications arrived for it.  In a burst, a mailbox's queries are at
 * least notify_min_interval_ms apart: what arrives meanwhile is read by
 * the next one, so a thousand changes cost far fewer queries, while a
 * lone change is still pushed at once. */
static void prepare_cb(struct ev_loop *loop, ev_prepare *p, int revents)
{
	struct worker *w = p->data;
	ev_tstamp gap = (ev_tstamp)w->cfg->notify_min_interval_ms / 1000.0;
	while (w->watch_pending != NULL) {
		struct watch *x = w->watch_pending;
		w->watch_pending = x->pnext;
		x->pending = false;
		ev_tstamp wait = x->last_query + gap - ev_now(loop);
		if (x->req == NULL && wait > 0) {
			if (!ev_is_active(&x->hold)) {
				ev_timer_set(&x->hold, wait, 0.0);
				ev_timer_start(loop, &x->hold);
			}
			continue;
		}
		start_delta(x);
	}
}

/* ---- the periodic check ---- */

static void recheck_cb(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	struct worker *w = arg;
	w->recheck_req = NULL;
	if (err != NULL) {
		log_warn(&w->log, "watch check: %s", err);
		return;
	}
	int n = PQntuples(res);
	for (int i = 0; i < n; i++) {
		struct watch *x = lookup(w, (int64_t)pg_u64(res, i, 0));
		if (x == NULL)
			continue;
		uint64_t highest = pg_u64(res, i, 1);
		for (struct selected *sel = x->sels; sel != NULL; sel = sel->wnext)
			if (highest > sel->known_modseq)
				mark(x, sel);
	}
	if (w->recheck_again) {
		w->recheck_again = false;
		watch_recheck_now(w);
	}
}

void watch_recheck_now(struct worker *w)
{
	if (w->nwatches == 0)
		return;
	if (w->recheck_req != NULL) {
		w->recheck_again = true;
		return;
	}
	struct buf a = BUF_INIT, m = BUF_INIT;
	buf_putc(&a, '{');
	buf_putc(&m, '{');
	bool first = true;
	for (size_t i = 0; i < w->watch_cap; i++) {
		for (struct watch *x = w->watches[i]; x != NULL; x = x->hnext) {
			buf_printf(&a, "%s%lld", first ? "" : ",", (long long)x->account_id);
			buf_printf(&m, "%s%lld", first ? "" : ",", (long long)x->mailbox_id);
			first = false;
		}
	}
	buf_putc(&a, '}');
	buf_putc(&m, '}');
	const char *params[2] = { buf_ptr(&a), buf_ptr(&m) };
	w->n_rechecks++;
	w->recheck_req = pg_query(w->pg,
				  "SELECT mb.id, mb.highestmodseq"
				  "  FROM unnest($1::bigint[], $2::bigint[]) k(a, i)"
				  "  JOIN mailbox mb ON mb.account_id = k.a AND mb.id = k.i",
				  2, params, NULL, NULL, 0, recheck_cb, w);
	buf_free(&a);
	buf_free(&m);
}

static void timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	watch_recheck_now(t->data);
}

void watch_init(struct worker *w)
{
	ev_prepare_init(&w->watch_prepare, prepare_cb);
	w->watch_prepare.data = w;
	ev_prepare_start(w->loop, &w->watch_prepare);
	ev_tstamp every = (ev_tstamp)w->cfg->idle_check_interval;
	ev_timer_init(&w->watch_timer, timer_cb, every, every);
	w->watch_timer.data = w;
	ev_timer_start(w->loop, &w->watch_timer);
}

void watch_stop(struct worker *w)
{
	ev_prepare_stop(w->loop, &w->watch_prepare);
	ev_timer_stop(w->loop, &w->watch_timer);
	if (w->recheck_req != NULL) {
		pg_cancel(w->pg, w->recheck_req);
		w->recheck_req = NULL;
	}
}
