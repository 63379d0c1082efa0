/* notify.c - change notifications over NATS; see notify.h for the contract.
 *
 * Three kinds of objects:
 *
 * - struct notify (loop thread only): configuration, subscriptions, the
 *   loop's view of the connection state.
 * - struct nconn (loop thread, plus the connector thread while it runs):
 *   one nats.c connection with its event-loop adapter and its bridge.  A
 *   connection that nats.c closes for good (it does after repeated
 *   authorisation errors, or a server -ERR) is torn down and replaced.
 * - struct bridge (shared with nats.c's threads): the mutex-guarded queue of
 *   messages and connection events, and the ev_async that wakes the loop.
 *   nats.c's threads may still hold it after notify_free() (a message being
 *   delivered, the "closed" callback that comes after
 *   natsConnection_Destroy returns), so it is reference counted: one
 *   reference for the owner, one for the connection (dropped by the
 *   "closed" callback, the last one nats.c makes), one per subscription
 *   (dropped by its on-complete callback, after its last message).  Once
 *   the owner has let go (owner_alive false) the threads only drop what
 *   they bring; they never touch the loop again.  A bridge whose references
 *   are not all returned (a connect that failed early, a subscription
 *   closed before its on-complete callback could be set) is freed by
 *   notify_global_shutdown() after nats.c's threads have ended.
 */
#include "notify.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

#include "lib/log.h"
#include "lib/util.h"
#include "notify/natsev.h"

#define NOTIFY_CONNECT_TIMEOUT_MS	2000
#define NOTIFY_RECONNECT_MIN_MS		100
#define NOTIFY_RECONNECT_MAX_MS		2000
#define NOTIFY_RECREATE_MAX_MS		30000
#define NOTIFY_PING_INTERVAL_MS		20000
#define NOTIFY_MAX_PINGS_OUT		3
#define NOTIFY_RECONNECT_BUF		(256 * 1024)
#define NOTIFY_CLOSE_WAIT_MS		5000
#define NOTIFY_MAX_SUBJECT		255

/* ---- the bridge --------------------------------------------------------- */

enum bkind { BK_MSG, BK_READY, BK_CONNECTED, BK_DISCONNECTED, BK_RECONNECTED, BK_CLOSED, BK_ERROR };

struct bitem {
	struct bitem *next;
	enum bkind kind;
	int64_t sid;		/* BK_MSG, BK_ERROR (0: none) */
	natsStatus status;	/* BK_ERROR */
	const char *subject;	/* BK_MSG: points into buf */
	const char *data;
	size_t len;
	char buf[];
};

struct bridge {
	pthread_mutex_t mu;
	struct ev_loop *loop;
	ev_async async;		/* loop-owned; used by other threads only under mu while owner_alive */
	bool owner_alive;
	bool signaled;		/* async sent, queue not drained yet */
	int refs;
	struct bitem *head, *tail;
	size_t nmsgs, max;
	uint64_t dropped;
	/* registry, under reg_mu */
	struct bridge *reg_prev, *reg_next;
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct bridge *reg_head;
static bool lib_open;

static void bridge_destroy(struct bridge *br)
{
	struct bitem *it = br->head;
	while (it) {
		struct bitem *next = it->next;
		free(it);
		it = next;
	}
	pthread_mutex_destroy(&br->mu);
	free(br);
}

static void bridge_unregister(struct bridge *br)
{
	pthread_mutex_lock(&reg_mu);
	if (br->reg_prev)
		br->reg_prev->reg_next = br->reg_next;
	else
		reg_head = br->reg_next;
	if (br->reg_next)
		br->reg_next->reg_prev = br->reg_prev;
	pthread_mutex_unlock(&reg_mu);
}

static void bridge_retain(struct bridge *br)
{
	pthread_mutex_lock(&br->mu);
	br->refs++;
	pthread_mutex_unlock(&br->mu);
}

static void bridge_release(struct bridge *br)
{
	pthread_mutex_lock(&br->mu);
	int refs = --br->refs;
	pthread_mutex_unlock(&br->mu);
	if (refs == 0) {
		bridge_unregister(br);
		bridge_destroy(br);
	}
}

/* Any thread.  Takes ownership of it. */
static void bridge_post(struct bridge *br, struct bitem *it)
{
	it->next = NULL;
	pthread_mutex_lock(&br->mu);
	if (!br->owner_alive) {
		pthread_mutex_unlock(&br->mu);
		free(it);
		return;
	}
	if (it->kind == BK_MSG) {
		if (br->nmsgs >= br->max) {
			br->dropped++;
			pthread_mutex_unlock(&br->mu);
			free(it);
			return;
		}
		br->nmsgs++;
	}
	if (br->tail)
		br->tail->next = it;
	else
		br->head = it;
	br->tail = it;
	if (!br->signaled) {
		br->signaled = true;
		ev_async_send(br->loop, &br->async);
	}
	pthread_mutex_unlock(&br->mu);
}

static void post_event(struct bridge *br, enum bkind kind, natsStatus status, int64_t sid)
{
	struct bitem *it = calloc(1, sizeof(*it));
	if (it == NULL)
		return;		/* a lost doorbell; the periodic check recovers */
	it->kind = kind;
	it->status = status;
	it->sid = sid;
	bridge_post(br, it);
}

/* ---- nats.c callbacks (nats.c threads) ---------------------------------- */

static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	struct bridge *br = closure;
	const char *subj = natsMsg_GetSubject(msg);
	const char *data = natsMsg_GetData(msg);
	int dlen = natsMsg_GetDataLength(msg);
	size_t slen = subj ? strlen(subj) : 0;
	size_t len = dlen > 0 ? (size_t)dlen : 0;
	struct bitem *it = malloc(sizeof(*it) + slen + 1 + len + 1);
	if (it != NULL) {
		memset(it, 0, sizeof(*it));
		it->kind = BK_MSG;
		it->sid = natsSubscription_GetID(sub);
		memcpy(it->buf, subj ? subj : "", slen + 1);
		if (len)
			memcpy(it->buf + slen + 1, data, len);
		it->buf[slen + 1 + len] = '\0';
		it->subject = it->buf;
		it->data = it->buf + slen + 1;
		it->len = len;
	}
	natsMsg_Destroy(msg);
	if (it != NULL)
		bridge_post(br, it);
}

static void on_sub_complete(void *closure)
{
	bridge_release(closure);
}

static void on_connected(natsConnection *nc, void *closure)
{
	post_event(closure, BK_CONNECTED, NATS_OK, 0);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
	post_event(closure, BK_DISCONNECTED, NATS_OK, 0);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
	post_event(closure, BK_RECONNECTED, NATS_OK, 0);
}

/* The last callback nats.c makes for a connection. */
static void on_closed(natsConnection *nc, void *closure)
{
	post_event(closure, BK_CLOSED, NATS_OK, 0);
	bridge_release(closure);
}

static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
	post_event(closure, BK_ERROR, err, sub ? natsSubscription_GetID(sub) : 0);
}

/* Reconnect thread: 100 ms doubling to 2 s, plus up to 25% jitter so a
 * fleet of workers does not knock in step. */
static int64_t reconnect_delay(natsConnection *nc, int attempts, void *closure)
{
	int64_t ms = NOTIFY_RECONNECT_MIN_MS;
	for (int i = 1; i < attempts && ms < NOTIFY_RECONNECT_MAX_MS; i++)
		ms *= 2;
	if (ms > NOTIFY_RECONNECT_MAX_MS)
		ms = NOTIFY_RECONNECT_MAX_MS;
	unsigned seed = (unsigned)now_us() ^ (unsigned)attempts * 2654435761u;
	return ms + (int64_t)(rand_r(&seed) % (int)(ms / 4 + 1));
}

/* ---- the loop side ------------------------------------------------------ */

struct notify_sub {
	struct notify_sub *prev, *next;	/* all subscriptions */
	struct notify_sub *hnext;	/* sid hash chain, while ns != NULL */
	natsSubscription *ns;		/* NULL: to be made when connected */
	int64_t sid;
	notify_msg_cb cb;
	void *arg;
	char subject[];
};

struct nconn {
	struct bridge *br;
	struct natsev *ev;
	natsConnection *nc;	/* once the connector thread handed it over */
	bool closed;		/* nats.c closed it for good */
	unsigned failures;	/* consecutive failed natsConnection_Connect */
	/* connector thread */
	pthread_t thr;
	bool thr_running;
	natsOptions *opts;	/* owned by the thread while it runs */
	natsConnection *res_nc;	/* results, read after BK_READY or join */
	natsStatus res_status;
	char res_err[256];
};

struct notify {
	struct ev_loop *loop;
	char *sid;
	struct log_ctx log;
	char **urls;
	int nurls;
	char *name;
	size_t max_pending;
	notify_state_cb state_cb;
	void *state_arg;

	struct nconn cur;
	ev_timer retry;		/* re-creates a closed or failed connection */
	bool nats_up;		/* what nats.c's events say */
	bool connected;		/* nats_up and cur.nc known: the public view */
	bool ever_connected;
	bool warned_down;
	bool warned_closed;
	int dispatching;

	struct notify_sub *subs;
	size_t nsubs;
	struct notify_sub **hash;
	size_t hsize;
	natsSubscription **zombies;	/* to destroy when connected */
	size_t nzombies, capzombies;

	uint64_t published, publish_dropped, delivered, queue_dropped, stale, reconnects, errors;
	ev_tstamp last_err_log;
	uint64_t errs_unlogged;
};

/* sid hash: sids are small increasing integers per connection */
static size_t hslot(const struct notify *n, int64_t sid)
{
	return (size_t)((uint64_t)sid * 0x9e3779b97f4a7c15ull >> 20) & (n->hsize - 1);
}

static void hash_insert(struct notify *n, struct notify_sub *s)
{
	if (n->hsize == 0 || n->nsubs > n->hsize * 2) {
		size_t nsize = n->hsize ? n->hsize * 4 : 64;
		struct notify_sub **nh = xcalloc(nsize, sizeof(*nh));
		size_t old = n->hsize;
		struct notify_sub **oh = n->hash;
		n->hash = nh;
		n->hsize = nsize;
		for (size_t i = 0; i < old; i++) {
			struct notify_sub *e = oh[i];
			while (e) {
				struct notify_sub *next = e->hnext;
				size_t k = hslot(n, e->sid);
				e->hnext = nh[k];
				nh[k] = e;
				e = next;
			}
		}
		free(oh);
	}
	size_t k = hslot(n, s->sid);
	s->hnext = n->hash[k];
	n->hash[k] = s;
}

static void hash_remove(struct notify *n, struct notify_sub *s)
{
	if (n->hsize == 0)
		return;
	struct notify_sub **pp = &n->hash[hslot(n, s->sid)];
	while (*pp) {
		if (*pp == s) {
			*pp = s->hnext;
			s->hnext = NULL;
			return;
		}
		pp = &(*pp)->hnext;
	}
}

static struct notify_sub *hash_find(const struct notify *n, int64_t sid)
{
	if (n->hsize == 0)
		return NULL;
	for (struct notify_sub *e = n->hash[hslot(n, sid)]; e; e = e->hnext)
		if (e->sid == sid)
			return e;
	return NULL;
}

/* A NATS subject: dot-separated non-empty tokens of printable non-space
 * ASCII; with wild, `*` and a final `>` are allowed as whole tokens. */
static bool subject_ok(const char *s, bool wild)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > NOTIFY_MAX_SUBJECT)
		return false;
	size_t tok = 0;
	for (size_t i = 0; i <= n; i++) {
		char ch = s[i];
		if (ch == '.' || ch == '\0') {
			if (i == tok)
				return false;
			size_t tl = i - tok;
			if (tl == 1 && (s[tok] == '*' || s[tok] == '>')) {
				if (!wild || (s[tok] == '>' && ch != '\0'))
					return false;
			}
			tok = i + 1;
			continue;
		}
		if ((unsigned char)ch <= ' ' || (unsigned char)ch >= 0x7f)
			return false;
		if ((ch == '*' || ch == '>') && !(i == tok && (s[i + 1] == '.' || s[i + 1] == '\0')))
			return false;
	}
	return true;
}

static void zombie_add(struct notify *n, natsSubscription *ns)
{
	if (n->nzombies == n->capzombies) {
		n->capzombies = n->capzombies ? n->capzombies * 2 : 16;
		n->zombies = xrealloc(n->zombies, n->capzombies * sizeof(*n->zombies));
	}
	n->zombies[n->nzombies++] = ns;
}

static void zombies_destroy(struct notify *n)
{
	for (size_t i = 0; i < n->nzombies; i++)
		natsSubscription_Destroy(n->zombies[i]);
	n->nzombies = 0;
}

/* Make the nats.c subscription (connected, loop thread). */
static bool sub_make(struct notify *n, struct notify_sub *s)
{
	struct bridge *br = n->cur.br;
	natsSubscription *ns = NULL;
	natsStatus st = natsConnection_Subscribe(&ns, n->cur.nc, s->subject, on_msg, br);
	if (st != NATS_OK) {
		log_warn(&n->log, "NATS subscribe %s: %s; retried after the next reconnect", s->subject,
			 natsStatus_GetText(st));
		return false;
	}
	/* The reference first: the subscription may be closed under us (the
	 * connection closing on another thread) right after the callback is
	 * set.  If it cannot be set, the reference is never returned and the
	 * bridge is freed by notify_global_shutdown(). */
	bridge_retain(br);
	if (natsSubscription_SetOnCompleteCB(ns, on_sub_complete, br) != NATS_OK)
		log_debug(&n->log, "NATS subscription %s closed early", s->subject);
	s->ns = ns;
	s->sid = natsSubscription_GetID(ns);
	hash_insert(n, s);
	return true;
}

static void subs_reconcile(struct notify *n)
{
	zombies_destroy(n);
	for (struct notify_sub *s = n->subs; s; s = s->next)
		if (s->ns == NULL)
			sub_make(n, s);
}

static void update_state(struct notify *n)
{
	bool now = n->nats_up && n->cur.nc != NULL && !n->cur.closed;
	if (now == n->connected)
		return;
	n->connected = now;
	if (now) {
		subs_reconcile(n);
		if (n->ever_connected)
			log_info(&n->log, "NATS reconnected");
		else
			log_info(&n->log, "NATS connected");
		n->ever_connected = true;
		n->warned_down = false;
		n->warned_closed = false;
	} else {
		log_warn(&n->log, "NATS disconnected; notifications are dropped until it is back");
		n->warned_down = true;
	}
	if (n->state_cb)
		n->state_cb(n->state_arg, now);
}

static void schedule_retry(struct notify *n, unsigned failures)
{
	uint64_t ms = 1000;
	for (unsigned i = 1; i < failures && ms < NOTIFY_RECREATE_MAX_MS; i++)
		ms *= 2;
	if (ms > NOTIFY_RECREATE_MAX_MS)
		ms = NOTIFY_RECREATE_MAX_MS;
	ev_timer_stop(n->loop, &n->retry);
	ev_timer_set(&n->retry, (double)ms / 1000.0, 0.);
	ev_timer_start(n->loop, &n->retry);
}

static void take_ready(struct notify *n)
{
	struct nconn *c = &n->cur;
	if (!c->thr_running)
		return;
	/* The thread posted BK_READY as its last act: this join is short. */
	pthread_join(c->thr, NULL);
	c->thr_running = false;
	c->nc = c->res_nc;
	c->res_nc = NULL;
	if (c->res_status == NATS_OK) {
		c->failures = 0;
		n->nats_up = true;
	} else if (c->res_status == NATS_NOT_YET_CONNECTED) {
		c->failures = 0;
		if (!n->warned_down && !n->nats_up) {
			log_warn(&n->log, "NATS unavailable; retrying in the background");
			n->warned_down = true;
		}
	} else {
		c->failures++;
		log_error(&n->log, "NATS connection cannot be created: %s (%s); trying again later",
			  natsStatus_GetText(c->res_status), c->res_err);
		schedule_retry(n, c->failures);
	}
}

static void log_nats_error(struct notify *n, natsStatus st)
{
	n->errors++;
	ev_tstamp now = ev_now(n->loop);
	if (now - n->last_err_log < 10.0) {
		n->errs_unlogged++;
		return;
	}
	log_warn(&n->log, "NATS: %s (%llu more since the last report)", natsStatus_GetText(st),
		 (unsigned long long)n->errs_unlogged);
	n->errs_unlogged = 0;
	n->last_err_log = now;
}

static void bridge_async_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	struct notify *n = w->data;
	struct bridge *br = (struct bridge *)(void *)((char *)w - offsetof(struct bridge, async));
	pthread_mutex_lock(&br->mu);
	struct bitem *it = br->head;
	br->head = br->tail = NULL;
	br->nmsgs = 0;
	br->signaled = false;
	n->queue_dropped += br->dropped;
	br->dropped = 0;
	pthread_mutex_unlock(&br->mu);

	n->dispatching++;
	while (it) {
		struct bitem *next = it->next;
		switch (it->kind) {
		case BK_MSG: {
			struct notify_sub *s = n->cur.closed ? NULL : hash_find(n, it->sid);
			if (s) {
				n->delivered++;
				s->cb(s->arg, it->subject, it->data, it->len);
			} else {
				n->stale++;
			}
			break;
		}
		case BK_READY:
			take_ready(n);
			update_state(n);
			break;
		case BK_CONNECTED:
			n->nats_up = true;
			update_state(n);
			break;
		case BK_RECONNECTED:
			n->nats_up = true;
			n->reconnects++;
			update_state(n);
			break;
		case BK_DISCONNECTED:
			n->nats_up = false;
			update_state(n);
			break;
		case BK_CLOSED:
			/* Only a connection nats.c gave up on gets here (ours
			 * are closed after the owner let go).  Replace it,
			 * outside of this callback. */
			n->nats_up = false;
			n->cur.closed = true;
			update_state(n);
			/* nats.c 3.4 also closes for good a first connection
			 * whose handshake fails (server accepting but silent
			 * or closing): expected while NATS starts, so once. */
			if (!n->warned_closed)
				log_warn(&n->log, "NATS connection closed by the client library; "
					 "creating new ones until one connects");
			else
				log_debug(&n->log, "NATS connection closed again; creating a new one");
			n->warned_closed = true;
			schedule_retry(n, ++n->cur.failures);
			break;
		case BK_ERROR:
			log_nats_error(n, it->status);
			break;
		}
		free(it);
		it = next;
	}
	n->dispatching--;
}

static struct bridge *bridge_new(struct notify *n)
{
	struct bridge *br = xcalloc(1, sizeof(*br));
	if (pthread_mutex_init(&br->mu, NULL) != 0)
		die_oom();
	br->loop = n->loop;
	br->owner_alive = true;
	br->refs = 1;
	br->max = n->max_pending;
	ev_async_init(&br->async, bridge_async_cb);
	br->async.data = n;
	ev_async_start(n->loop, &br->async);
	pthread_mutex_lock(&reg_mu);
	br->reg_next = reg_head;
	if (reg_head)
		reg_head->reg_prev = br;
	reg_head = br;
	pthread_mutex_unlock(&reg_mu);
	return br;
}

static void *connector_main(void *arg)
{
	struct nconn *c = arg;
	natsConnection *nc = NULL;
	natsStatus s = natsConnection_Connect(&nc, c->opts);
	if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
		const char *e = nats_GetLastError(NULL);
		snprintf(c->res_err, sizeof(c->res_err), "%s", e ? e : "");
		nc = NULL;
	}
	natsOptions_Destroy(c->opts);
	c->opts = NULL;
	c->res_nc = nc;
	c->res_status = s;
	post_event(c->br, BK_READY, s, 0);
	nats_ReleaseThreadMemory();
	return NULL;
}

static natsStatus build_options(struct notify *n, natsOptions **out)
{
	struct nconn *c = &n->cur;
	natsOptions *o = NULL;
	natsStatus s = natsOptions_Create(&o);
	if (s == NATS_OK)
		s = natsOptions_SetServers(o, (const char **)n->urls, n->nurls);
	if (s == NATS_OK)
		s = natsOptions_SetName(o, n->name);
	if (s == NATS_OK)
		s = natsOptions_SetRetryOnFailedConnect(o, true, on_connected, c->br);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(o, -1);
	if (s == NATS_OK)
		s = natsOptions_SetCustomReconnectDelay(o, reconnect_delay, c->br);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(o, NOTIFY_CONNECT_TIMEOUT_MS);
	if (s == NATS_OK)
		s = natsOptions_SetPingInterval(o, NOTIFY_PING_INTERVAL_MS);
	if (s == NATS_OK)
		s = natsOptions_SetMaxPingsOut(o, NOTIFY_MAX_PINGS_OUT);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectBufSize(o, NOTIFY_RECONNECT_BUF);
	if (s == NATS_OK)
		s = natsOptions_SetDisconnectedCB(o, on_disconnected, c->br);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectedCB(o, on_reconnected, c->br);
	if (s == NATS_OK)
		s = natsOptions_SetClosedCB(o, on_closed, c->br);
	if (s == NATS_OK)
		s = natsOptions_SetErrorHandler(o, on_error, c->br);
	if (s == NATS_OK)
		s = natsOptions_SetEventLoop(o, c->ev, natsLibev_Attach, natsLibev_Read, natsLibev_Write,
					     natsLibev_Detach);
	/* One delivery thread pool instead of a thread per subscription: a
	 * worker may watch thousands of mailboxes. */
	if (s == NATS_OK)
		s = natsOptions_UseGlobalMessageDelivery(o, true);
	/* Publish asks for a write event at once instead of waking a flusher
	 * thread that would then ask for it. */
	if (s == NATS_OK)
		s = natsOptions_SetSendAsap(o, true);
	if (s != NATS_OK) {
		natsOptions_Destroy(o);
		return s;
	}
	*out = o;
	return NATS_OK;
}

static void start_connect(struct notify *n)
{
	struct nconn *c = &n->cur;
	if (notify_global_init() != 0) {
		c->failures++;
		log_error(&n->log, "NATS library cannot start; trying again later");
		schedule_retry(n, c->failures);
		return;
	}
	if (c->br == NULL)
		c->br = bridge_new(n);
	if (c->ev == NULL)
		c->ev = natsLibev_Init(n->loop);
	natsOptions *o = NULL;
	natsStatus s = build_options(n, &o);
	if (s != NATS_OK) {
		c->failures++;
		log_error(&n->log, "NATS options: %s; trying again later", natsStatus_GetText(s));
		schedule_retry(n, c->failures);
		return;
	}
	c->opts = o;
	c->res_nc = NULL;
	c->res_status = NATS_OK;
	c->res_err[0] = '\0';
	/* The connection's reference, returned by on_closed(). */
	bridge_retain(c->br);
	/* natsConnection_Connect tries once synchronously (name resolution,
	 * TCP connect, INFO/CONNECT/PONG): not on the loop. */
	int rc = pthread_create(&c->thr, NULL, connector_main, c);
	if (rc != 0) {
		natsOptions_Destroy(o);
		c->opts = NULL;
		bridge_release(c->br);
		c->failures++;
		log_error(&n->log, "NATS: cannot start the connector thread: %s", strerror(rc));
		schedule_retry(n, c->failures);
		return;
	}
	c->thr_running = true;
}

/* Close and release the current connection (loop thread).  Subscriptions
 * stay, to be made again on the next connection. */
static void conn_teardown(struct notify *n)
{
	struct nconn *c = &n->cur;
	struct bridge *br = c->br;
	if (br) {
		pthread_mutex_lock(&br->mu);
		br->owner_alive = false;
		pthread_mutex_unlock(&br->mu);
	}
	if (c->thr_running) {
		pthread_join(c->thr, NULL);
		c->thr_running = false;
		if (c->nc == NULL)
			c->nc = c->res_nc;
		c->res_nc = NULL;
	}
	if (c->nc) {
		/* Send what is buffered now, so closing does not wait for a
		 * PONG the (blocked) loop could not read. */
		if (!c->closed && c->ev && natsLibev_WantsWrite(c->ev))
			natsConnection_ProcessWriteEvent(c->nc);
		/* Close first: destroying a subscription of an open connection
		 * would queue an UNSUB and make the close flush. */
		natsConnection_Close(c->nc);
	}
	for (struct notify_sub *s = n->subs; s; s = s->next) {
		if (s->ns) {
			hash_remove(n, s);
			natsSubscription_Destroy(s->ns);
			s->ns = NULL;
			s->sid = 0;
		}
	}
	zombies_destroy(n);
	if (c->nc) {
		natsConnection_Destroy(c->nc);
		c->nc = NULL;
	}
	natsLibev_Free(&c->ev);
	if (br) {
		ev_async_stop(n->loop, &br->async);
		pthread_mutex_lock(&br->mu);
		struct bitem *it = br->head;
		br->head = br->tail = NULL;
		br->nmsgs = 0;
		pthread_mutex_unlock(&br->mu);
		while (it) {
			struct bitem *next = it->next;
			free(it);
			it = next;
		}
		bridge_release(br);
		c->br = NULL;
	}
	c->closed = false;
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct notify *n = w->data;
	struct nconn *c = &n->cur;
	if (c->closed) {
		unsigned failures = c->failures;
		conn_teardown(n);
		c->failures = failures;
	}
	if (!c->thr_running && c->nc == NULL)
		start_connect(n);
}

int notify_global_init(void)
{
	int rc = 0;
	pthread_mutex_lock(&reg_mu);
	if (!lib_open) {
		if (nats_Open(-1) == NATS_OK)
			lib_open = true;
		else
			rc = -1;
	}
	pthread_mutex_unlock(&reg_mu);
	return rc;
}

void notify_global_shutdown(void)
{
	pthread_mutex_lock(&reg_mu);
	bool was_open = lib_open;
	lib_open = false;
	pthread_mutex_unlock(&reg_mu);
	if (!was_open)
		return;
	natsStatus s = nats_CloseAndWait(NOTIFY_CLOSE_WAIT_MS);
	if (s != NATS_OK)
		log_warn(NULL, "NATS library did not close in time: %s", natsStatus_GetText(s));
	/* nats.c's threads are gone: what they did not give back is ours. */
	pthread_mutex_lock(&reg_mu);
	struct bridge *br = reg_head, *keep = NULL;
	int kept = 0, swept = 0;
	reg_head = NULL;
	while (br) {
		struct bridge *next = br->reg_next;
		if (br->owner_alive || s != NATS_OK) {
			/* notify_free() was not called, or threads may remain */
			br->reg_prev = NULL;
			br->reg_next = keep;
			if (keep)
				keep->reg_prev = br;
			keep = br;
			kept++;
		} else {
			bridge_destroy(br);
			swept++;
		}
		br = next;
	}
	reg_head = keep;
	pthread_mutex_unlock(&reg_mu);
	if (kept)
		log_warn(NULL, "notify: %d connection(s) not released before shutdown", kept);
	if (swept)
		log_debug(NULL, "notify: freed %d bridge(s) nats.c had not returned", swept);
}

static void split_urls(struct notify *n, const char *list)
{
	const char *s = list ? list : "";
	int cap = 4;
	n->urls = xcalloc((size_t)cap, sizeof(char *));
	while (*s) {
		size_t len = strcspn(s, ",");
		const char *b = s, *e = s + len;
		while (b < e && (*b == ' ' || *b == '\t'))
			b++;
		while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if (e > b) {
			if (n->nurls == cap) {
				cap *= 2;
				n->urls = xrealloc(n->urls, (size_t)cap * sizeof(char *));
			}
			char *u = xmalloc((size_t)(e - b) + 1);
			memcpy(u, b, (size_t)(e - b));
			u[e - b] = '\0';
			n->urls[n->nurls++] = u;
		}
		s += len;
		if (*s == ',')
			s++;
	}
	if (n->nurls == 0)
		n->urls[n->nurls++] = xstrdup("nats://127.0.0.1:4222");
}

struct notify *notify_new(struct ev_loop *loop, const struct config *cfg, const char *log_sid,
			  notify_state_cb state_cb, void *arg)
{
	struct notify *n = xcalloc(1, sizeof(*n));
	n->loop = loop;
	n->sid = log_sid ? xstrdup(log_sid) : NULL;
	n->log.sid = n->sid;
	n->state_cb = state_cb;
	n->state_arg = arg;
	n->max_pending = cfg->nats_max_pending > 0 ? (size_t)cfg->nats_max_pending : 65536;
	split_urls(n, cfg->nats_url);
	size_t nl = strlen(cfg->node_name ? cfg->node_name : "") + (n->sid ? strlen(n->sid) : 0) + 16;
	n->name = xmalloc(nl);
	snprintf(n->name, nl, "mail %s%s%s", cfg->node_name ? cfg->node_name : "", n->sid ? " " : "",
		 n->sid ? n->sid : "");
	/* nats.c puts the name into its CONNECT JSON unescaped */
	for (char *p = n->name; *p; p++)
		if (!(*p == ' ' || *p == '.' || *p == '-' || *p == '_' || (*p >= '0' && *p <= '9') ||
		      (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
			*p = '_';
	ev_timer_init(&n->retry, retry_cb, 0., 0.);
	n->retry.data = n;
	n->last_err_log = -1e9;
	start_connect(n);
	return n;
}

bool notify_connected(const struct notify *n)
{
	return n != NULL && n->connected;
}

int notify_publish(struct notify *n, const char *subject, const void *data, size_t len)
{
	if (!n->connected || len > INT_MAX || !subject_ok(subject, false)) {
		n->publish_dropped++;
		return -1;
	}
	natsStatus s = natsConnection_Publish(n->cur.nc, subject, data, (int)len);
	if (s != NATS_OK) {
		n->publish_dropped++;
		log_debug(&n->log, "NATS publish %s dropped: %s", subject, natsStatus_GetText(s));
		return -1;
	}
	n->published++;
	return 0;
}

struct notify_sub *notify_subscribe(struct notify *n, const char *subject, notify_msg_cb cb, void *arg)
{
	if (!subject_ok(subject, true) || cb == NULL)
		return NULL;
	size_t sl = strlen(subject);
	struct notify_sub *s = xcalloc(1, sizeof(*s) + sl + 1);
	memcpy(s->subject, subject, sl + 1);
	s->cb = cb;
	s->arg = arg;
	s->next = n->subs;
	if (n->subs)
		n->subs->prev = s;
	n->subs = s;
	n->nsubs++;
	if (n->connected)
		sub_make(n, s);
	return s;
}

void notify_unsubscribe(struct notify *n, struct notify_sub **sp)
{
	struct notify_sub *s = sp ? *sp : NULL;
	if (s == NULL)
		return;
	if (s->prev)
		s->prev->next = s->next;
	else
		n->subs = s->next;
	if (s->next)
		s->next->prev = s->prev;
	n->nsubs--;
	if (s->ns) {
		hash_remove(n, s);
		/* While disconnected nats.c may be reconnecting with its lock
		 * held across a TCP connect: destroy when connected. */
		if (n->connected)
			natsSubscription_Destroy(s->ns);
		else
			zombie_add(n, s->ns);
	}
	free(s);
	*sp = NULL;
}

int notify_subject_mailbox(char *out, size_t outlen, const char *prefix, int64_t tenant_id, int64_t mailbox_id)
{
	if (!subject_ok(prefix, false))
		return -1;
	int r = snprintf(out, outlen, "%s.%lld.%lld", prefix, (long long)tenant_id, (long long)mailbox_id);
	return r < 0 || (size_t)r >= outlen ? -1 : r;
}

int notify_subject_tenant(char *out, size_t outlen, const char *prefix, int64_t tenant_id)
{
	if (!subject_ok(prefix, false))
		return -1;
	int r = snprintf(out, outlen, "%s.%lld.>", prefix, (long long)tenant_id);
	return r < 0 || (size_t)r >= outlen ? -1 : r;
}

void notify_stats(const struct notify *n, struct notify_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->connected = n->connected;
	out->published = n->published;
	out->publish_dropped = n->publish_dropped;
	out->delivered = n->delivered;
	out->queue_dropped = n->queue_dropped;
	out->stale = n->stale;
	out->reconnects = n->reconnects;
	out->errors = n->errors;
	out->subscriptions = n->nsubs;
	if (n->cur.br) {
		pthread_mutex_lock(&n->cur.br->mu);
		out->pending = n->cur.br->nmsgs;
		out->queue_dropped += n->cur.br->dropped;
		pthread_mutex_unlock(&n->cur.br->mu);
	}
}

void notify_free(struct notify **np)
{
	struct notify *n = np ? *np : NULL;
	if (n == NULL)
		return;
	if (n->dispatching) {
		/* Caller bug (see notify.h); freeing now would pull the queue
		 * from under the dispatch loop. */
		log_error(&n->log, "notify_free called from a notify callback");
		abort();
	}
	ev_timer_stop(n->loop, &n->retry);
	conn_teardown(n);
	struct notify_sub *s = n->subs;
	while (s) {
		struct notify_sub *next = s->next;
		free(s);
		s = next;
	}
	free(n->hash);
	free(n->zombies);
	for (int i = 0; i < n->nurls; i++)
		free(n->urls[i]);
	free(n->urls);
	free(n->name);
	free(n->sid);
	free(n);
	*np = NULL;
}
