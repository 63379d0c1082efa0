/* natsev.h - plug a nats.c connection into a libev loop.
 *
 * nats.c ships adapters for libevent and libuv (nats/adapters/libevent.h, libuv.h); this is
 * the same for libev, written after them.  Pass the four callbacks to
 * natsOptions_SetEventLoop() with the adapter object as the `loop`
 * argument:
 *
 *     struct natsev *ev = natsLibev_Init(loop);        // on the loop thread
 *     natsOptions_SetEventLoop(opts, ev, natsLibev_Attach, natsLibev_Read,
 *                              natsLibev_Write, natsLibev_Detach);
 *     ... natsConnection_Connect(&nc, opts) ...
 *     natsConnection_Destroy(nc);                        // on the loop thread
 *     natsLibev_Free(&ev);                               // on the loop thread
 *
 * One adapter object serves one natsConnection.
 *
 * Threads.  libev is not thread-safe, and nats.c calls these callbacks from
 * its own threads too: the reconnect thread attaches the new socket, the
 * ping timer and the flusher ask for write events, a failed connection is
 * torn down from whichever thread noticed.  A call made on the loop's
 * thread (the thread that called natsLibev_Init and runs ev_run) is applied
 * at once; a call from any other thread is queued under a mutex and the
 * loop is woken with an ev_async, exactly like the libuv adapter schedules
 * its events.  No ev_* function other than ev_async_send ever runs off the
 * loop thread.  The loop thread calls natsConnection_ProcessReadEvent /
 * ProcessWriteEvent when the socket is ready.
 *
 * Sockets.  nats.c closes its socket itself, possibly on another thread and
 * before the loop has seen the queued "stop polling" request (nats.c issue
 * #814).  The adapter therefore watches a dup() of the socket made inside
 * Attach: the number libev polls stays valid and cannot be reused by
 * another connection until the loop thread closes it (when reading is
 * removed, on the next Attach, or on Detach).
 *
 * Lifetime.  Detach stops watching and closes the dup on the loop thread
 * (queued if called elsewhere); the memory goes with natsLibev_Free(),
 * which must run on the loop thread after natsConnection_Destroy() has
 * returned (from then on nats.c calls none of the callbacks).
 */
#ifndef NOTIFY_NATSEV_H
#define NOTIFY_NATSEV_H

#include <stdbool.h>

#include <ev.h>
#include <nats/nats.h>

struct natsev;

/* Create the adapter for one connection.  Must be called on the thread that
 * runs loop.  Never returns NULL (allocation failure aborts). */
struct natsev *natsLibev_Init(struct ev_loop *loop);

/* The natsOptions_SetEventLoop() callbacks; `loop` is the struct natsev *. */
natsStatus natsLibev_Attach(void **userData, void *loop, natsConnection *nc, natsSock socket);
natsStatus natsLibev_Read(void *userData, bool add);
natsStatus natsLibev_Write(void *userData, bool add);
natsStatus natsLibev_Detach(void *userData);

/* nats.c asked for write events and the loop has not served them yet
 * (applies queued requests first).  The owner then flushes with
 * natsConnection_ProcessWriteEvent() before closing, so that
 * natsConnection_Close() does not wait for a PONG the blocked loop cannot
 * read.  Loop thread only. */
bool natsLibev_WantsWrite(struct natsev *ev);

/* Release the adapter (loop thread, after natsConnection_Destroy()).
 * Closes a socket still held, drops queued requests. *ev is set to NULL. */
void natsLibev_Free(struct natsev **ev);

#endif
