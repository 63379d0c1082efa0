/* natsev.c - libev adapter for nats.c; see natsev.h.
 *
 * Written after nats.c's src/adapters/libuv.h: requests made off the loop
 * thread are queued and applied by an ev_async callback, in order; requests
 * made on the loop thread first apply whatever is queued, then themselves,
 * so the order nats.c issued them in (under its connection lock) is kept.
 */
#include "natsev.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "lib/util.h"

enum op_type { OP_ATTACH, OP_READ, OP_WRITE, OP_DETACH };

struct op {
	struct op *next;
	enum op_type type;
	bool add;
	int fd;			/* OP_ATTACH: our dup of the socket */
	natsConnection *nc;	/* OP_ATTACH */
};

struct natsev {
	struct ev_loop *loop;
	pthread_t thread;	/* the loop's thread */
	pthread_mutex_t mu;	/* guards head/tail */
	struct op *head, *tail;
	ev_async async;
	/* loop thread only: */
	ev_io io;
	natsConnection *nc;
	int fd;			/* dup being watched, -1 if none */
	int events;		/* EV_READ | EV_WRITE wanted by nats.c */
	bool attached;
	unsigned gen;		/* bumped when the socket changes */
};

static bool on_loop_thread(const struct natsev *ev)
{
	return pthread_equal(pthread_self(), ev->thread) != 0;
}

static void update_io(struct natsev *ev)
{
	if (ev->fd < 0 || ev->events == 0) {
		ev_io_stop(ev->loop, &ev->io);
		return;
	}
	if (ev_is_active(&ev->io) && ev->io.fd == ev->fd && (ev->io.events & (EV_READ | EV_WRITE)) == ev->events)
		return;
	ev_io_stop(ev->loop, &ev->io);
	ev_io_set(&ev->io, ev->fd, ev->events);
	ev_io_start(ev->loop, &ev->io);
}

static void drop_socket(struct natsev *ev)
{
	ev_io_stop(ev->loop, &ev->io);
	if (ev->fd >= 0)
		close(ev->fd);
	ev->fd = -1;
	ev->events = 0;
	ev->gen++;
}

static void apply(struct natsev *ev, struct op *op)
{
	switch (op->type) {
	case OP_ATTACH:
		drop_socket(ev);
		ev->fd = op->fd;
		op->fd = -1;
		ev->nc = op->nc;
		ev->attached = true;
		ev->events = EV_READ;
		update_io(ev);
		break;
	case OP_READ:
		if (op->add) {
			ev->events |= EV_READ;
			update_io(ev);
		} else {
			/* nats.c always reads while connected: removing
			 * reading means this socket is finished (nats.c closes
			 * its own descriptor next). */
			drop_socket(ev);
		}
		break;
	case OP_WRITE:
		if (op->add)
			ev->events |= EV_WRITE;
		else
			ev->events &= ~EV_WRITE;
		update_io(ev);
		break;
	case OP_DETACH:
		drop_socket(ev);
		ev->attached = false;
		break;
	}
}

static void free_op(struct op *op)
{
	if (op->fd >= 0)
		close(op->fd);
	free(op);
}

static void run_queue(struct natsev *ev)
{
	pthread_mutex_lock(&ev->mu);
	struct op *op = ev->head;
	ev->head = ev->tail = NULL;
	pthread_mutex_unlock(&ev->mu);
	while (op != NULL) {
		struct op *next = op->next;
		apply(ev, op);
		free_op(op);
		op = next;
	}
}

static natsStatus submit(struct natsev *ev, enum op_type type, bool add, int fd, natsConnection *nc)
{
	struct op *op = malloc(sizeof(*op));
	if (op == NULL) {
		if (fd >= 0)
			close(fd);
		return NATS_NO_MEMORY;
	}
	op->next = NULL;
	op->type = type;
	op->add = add;
	op->fd = fd;
	op->nc = nc;
	if (on_loop_thread(ev)) {
		run_queue(ev);
		apply(ev, op);
		free_op(op);
		return NATS_OK;
	}
	pthread_mutex_lock(&ev->mu);
	if (ev->tail)
		ev->tail->next = op;
	else
		ev->head = op;
	ev->tail = op;
	/* Thread-safe by design; the watcher lives until natsLibev_Free(),
	 * which runs only after nats.c has stopped calling us. */
	ev_async_send(ev->loop, &ev->async);
	pthread_mutex_unlock(&ev->mu);
	return NATS_OK;
}

static void async_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	run_queue(w->data);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct natsev *ev = w->data;
	natsConnection *nc = ev->nc;
	unsigned gen = ev->gen;
	/* EV_ERROR: libev could not poll the descriptor; let nats.c find the
	 * error by reading. */
	if (revents & (EV_READ | EV_ERROR))
		natsConnection_ProcessReadEvent(nc);
	/* Reading may have torn the socket down (and with Detach the
	 * connection may be gone from under us): write only to the same
	 * socket, still wanted. */
	if ((revents & EV_WRITE) && gen == ev->gen && ev->attached && (ev->events & EV_WRITE))
		natsConnection_ProcessWriteEvent(nc);
}

struct natsev *natsLibev_Init(struct ev_loop *loop)
{
	struct natsev *ev = xcalloc(1, sizeof(*ev));
	ev->loop = loop;
	ev->thread = pthread_self();
	ev->fd = -1;
	if (pthread_mutex_init(&ev->mu, NULL) != 0)
		die_oom();
	ev_async_init(&ev->async, async_cb);
	ev->async.data = ev;
	/* Apply socket changes before serving other watchers of the same
	 * iteration. */
	ev_set_priority(&ev->async, EV_MAXPRI);
	ev_async_start(loop, &ev->async);
	ev_io_init(&ev->io, io_cb, -1, 0);
	ev->io.data = ev;
	return ev;
}

natsStatus natsLibev_Attach(void **userData, void *loop, natsConnection *nc, natsSock socket)
{
	struct natsev *ev = loop;
	/* Our own descriptor for the same socket, made while nats.c holds its
	 * lock and the socket is surely open (see natsev.h). */
	int fd = fcntl((int)socket, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return errno == EMFILE || errno == ENFILE ? NATS_NO_MEMORY : NATS_SYS_ERROR;
	natsStatus s = submit(ev, OP_ATTACH, true, fd, nc);
	if (s == NATS_OK)
		*userData = ev;
	return s;
}

natsStatus natsLibev_Read(void *userData, bool add)
{
	return submit(userData, OP_READ, add, -1, NULL);
}

natsStatus natsLibev_Write(void *userData, bool add)
{
	return submit(userData, OP_WRITE, add, -1, NULL);
}

natsStatus natsLibev_Detach(void *userData)
{
	return submit(userData, OP_DETACH, true, -1, NULL);
}

bool natsLibev_WantsWrite(struct natsev *ev)
{
	run_queue(ev);
	return ev->attached && ev->fd >= 0 && (ev->events & EV_WRITE);
}

void natsLibev_Free(struct natsev **evp)
{
	struct natsev *ev = evp ? *evp : NULL;
	if (ev == NULL)
		return;
	ev_async_stop(ev->loop, &ev->async);
	ev_io_stop(ev->loop, &ev->io);
	struct op *op = ev->head;
	while (op != NULL) {
		struct op *next = op->next;
		free_op(op);
		op = next;
	}
	if (ev->fd >= 0)
		close(ev->fd);
	pthread_mutex_destroy(&ev->mu);
	free(ev);
	*evp = NULL;
}
