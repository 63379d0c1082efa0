/* IDLE (RFC 2177).
 *
 * While idling, the session is fed by its worker's watch of the mailbox
 * (watch.c): NATS notifications, coalesced into one delta query per
 * mailbox per loop turn, and the worker's periodic HIGHESTMODSEQ check
 * when NATS is down or lost one.  Whatever changed is told at once
 * (EXPUNGE/VANISHED are allowed: IDLE is not a sequence-number command).  A harmless "* OK Still here" every
 * idle_keepalive seconds keeps NAT boxes on mobile networks from dropping
 * the flow.  Commands pipelined right after DONE (as iOS Mail sends them)
 * stay in the input buffer and run next.
 */
#include <strings.h>

#include "imapd/mailview.h"
#include "imapd/watch.h"
#include "lib/pg.h"

struct idle_state {
	struct cmd *c;
	ev_timer keepalive;
	bool done_requested;	/* DONE arrived while a check was running */
};

static void idle_stop_timers(struct cmd *c)
{
	struct idle_state *st = c->state;
	ev_timer_stop(c->s->w->loop, &st->keepalive);
	if (c->s->sel != NULL)
		watch_idle(c->s->sel, NULL);
}

static void idle_finish(struct cmd *c)
{
	idle_stop_timers(c);
	sel_announce(c->s, true);
	cmd_ok(c, "IDLE terminated");
	cmd_done(c);
}

void idle_synced(struct cmd *c)
{
	struct idle_state *st = c->state;
	struct session *s = c->s;
	if (s->sel != NULL && s->sel->gone) {
		idle_stop_timers(c);
		session_bye(s, "Selected mailbox was deleted or renamed, have to disconnect");
		cmd_done(c);
		return;
	}
	if (st->done_requested) {
		idle_finish(c);
		return;
	}
	sel_announce(s, true);
	session_flush(s);
}

static void keepalive_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct idle_state *st = t->data;
	struct session *s = st->c->s;
	session_ref(s);
	session_printf(s, "* OK Still here\r\n");
	session_flush(s);
	session_unref(s);
}

static void idle_line(struct cmd *c, struct str line)
{
	struct idle_state *st = c->state;
	struct session *s = c->s;
	session_ref(s);
	if (!str_ieq(line, "DONE")) {
		idle_stop_timers(c);
		if (c->pg != NULL) {
			pg_cancel(s->w->pg, c->pg);
			c->pg = NULL;
		}
		cmd_bad(c, "Expected DONE");
		cmd_done(c);
	} else if (c->pg != NULL) {
		/* Let the running check finish; it ends the command. */
		st->done_requested = true;
	} else {
		idle_finish(c);
	}
	session_unref(s);
}

static void idle_abort(struct cmd *c)
{
	idle_stop_timers(c);
}

enum cmd_result cmd_idle(struct cmd *c)
{
	struct session *s = c->s;
	if (c->nargs != 0) {
		cmd_bad(c, "IDLE takes no arguments");
		return CMD_DONE;
	}
	struct idle_state *st = arena_zalloc(c->arena, sizeof(*st));
	st->c = c;
	c->state = st;
	c->on_abort = idle_abort;
	c->on_line = idle_line;
	ev_timer_init(&st->keepalive, keepalive_cb, (ev_tstamp)s->w->cfg->idle_keepalive,
		      (ev_tstamp)s->w->cfg->idle_keepalive);
	st->keepalive.data = st;
	ev_timer_start(s->w->loop, &st->keepalive);
	/* Anything already pending is told right away. */
	sel_announce(s, true);
	session_write(s, "+ idling\r\n", 10);
	s->input = INPUT_LINE;
	if (s->sel != NULL) {
		watch_idle(s->sel, c);
		/* Changes announced before the IDLE: fetch them now. */
		if (s->sel->dirty)
			sel_sync(c, idle_synced);
	}
	return CMD_PENDING;
}
