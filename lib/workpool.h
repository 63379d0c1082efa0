/* workpool.h - CPU-heavy work off the event loop.
 *
 * A few threads run jobs (password hashing, parsing a large message) so
 * the loop thread never stalls on them.  A job is submitted from the loop
 * thread with three functions:
 *   run(arg)     on a pool thread; touches only what arg owns;
 *   done(arg)    on the loop thread afterwards, unless the job was
 *                cancelled;
 *   release(arg) on the loop thread last, always: frees arg.
 * Results come back through one ev_async.  arg must own everything run()
 * reads, since the submitter (a session) may go away meanwhile.
 */
#ifndef LIB_WORKPOOL_H
#define LIB_WORKPOOL_H

#include <ev.h>
#include <stdbool.h>

struct workpool;
struct work;

typedef void (*work_fn)(void *arg);

struct workpool *workpool_new(struct ev_loop *loop, int threads);
/* Queue a job; never fails (allocation failure aborts). */
struct work *workpool_submit(struct workpool *p, work_fn run, work_fn done, work_fn release, void *arg);
/* done() will not be called; release() still will, once run() is over. */
void workpool_cancel(struct work *w);
/* Stop the threads (waiting for running jobs) and release every job
 * without calling done(). */
void workpool_free(struct workpool **p);

#endif
