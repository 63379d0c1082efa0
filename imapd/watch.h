/* watch.h - a worker's view of the mailboxes its sessions have selected,
 * fed by NATS notifications (DESIGN.md, "The notification path").
 *
 * One watch per selected mailbox per worker, reference counted by the
 * sessions that have it selected, holding one NATS subscription.  A
 * notification marks the watching sessions dirty: a session that runs a
 * command syncs before its tagged response (sel_complete()); sessions in
 * IDLE are fed at once by ONE delta query per mailbox per loop turn, whose
 * result every idling session applies from its own known_modseq.  NATS is
 * a doorbell and PostgreSQL the truth (invariants 4, 5): every
 * idle_check_interval seconds, and right after NATS (re)connects, one query
 * compares the HIGHESTMODSEQ of every watched mailbox with what the
 * sessions know, so a lost notification only delays a change.
 */
#ifndef IMAPD_WATCH_H
#define IMAPD_WATCH_H

#include "imapd/imapd.h"

/* Start/stop watching s->sel's mailbox (after SELECT; before the view is
 * freed).  sel_free() calls watch_detach(). */
void watch_attach(struct session *s);
void watch_detach(struct selected *sel);

/* The session enters/leaves IDLE (c is the IDLE command); while idling it
 * is fed by the shared delta queries. */
void watch_idle(struct selected *sel, struct cmd *c);

/* cmd_idle.c: after an idling session took its part of a delta: tell
 * the client at once, or end the IDLE if DONE came meanwhile. */
void idle_synced(struct cmd *c);

/* Worker set-up and tear-down (timers, prepare watcher). */
void watch_init(struct worker *w);
void watch_stop(struct worker *w);
/* NATS came up again: check every watched mailbox now. */
void watch_recheck_now(struct worker *w);

#endif
