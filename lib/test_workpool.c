/* Unit tests for the work pool: jobs run off the loop thread, every result
 * comes back on it, cancelled jobs are released but not answered, and
 * freeing the pool releases what is left. */
#include <pthread.h>
#include <stdlib.h>

#include "lib/workpool.h"
#include "tests/unit/unit.h"

struct job {
	pthread_t loop_thread;
	int id;
	bool ran_off_loop;
	int *done_order;
	int *ndone;
	int *released;
};

static void run(void *arg)
{
	struct job *j = arg;
	j->ran_off_loop = !pthread_equal(pthread_self(), j->loop_thread);
}

static void done(void *arg)
{
	struct job *j = arg;
	CHECK(pthread_equal(pthread_self(), j->loop_thread));
	CHECK(j->ran_off_loop);
	j->done_order[(*j->ndone)++] = j->id;
}

static void release(void *arg)
{
	struct job *j = arg;
	(*j->released)++;
	free(j);
}

static void stop_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	int *ndone = t->data;
	if (*ndone >= 99 || ev_now(loop) > 30)
		ev_break(loop, EVBREAK_ALL);
}

TEST(workpool_runs_off_loop_and_answers_in_order)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct workpool *p = workpool_new(loop, 3);
	int order[100], ndone = 0, released = 0;
	struct work *cancel_me = NULL;
	for (int i = 0; i < 100; i++) {
		struct job *j = calloc(1, sizeof(*j));
		j->loop_thread = pthread_self();
		j->id = i;
		j->done_order = order;
		j->ndone = &ndone;
		j->released = &released;
		struct work *w = workpool_submit(p, run, done, release, j);
		if (i == 50)
			cancel_me = w;
	}
	workpool_cancel(cancel_me);
	ev_timer t;
	ev_timer_init(&t, stop_cb, 0.01, 0.01);
	t.data = &ndone;
	ev_timer_start(loop, &t);
	ev_run(loop, 0);
	ev_timer_stop(loop, &t);
	CHECK_EQ_INT(ndone, 99);
	/* every job but the cancelled one was answered */
	int seen50 = 0;
	for (int i = 0; i < ndone; i++)
		if (order[i] == 50)
			seen50 = 1;
	CHECK(!seen50);
	workpool_free(&p);
	CHECK_EQ_INT(released, 100);
	CHECK(p == NULL);

	/* freeing with jobs queued releases them without answering */
	p = workpool_new(loop, 1);
	ndone = released = 0;
	for (int i = 0; i < 10; i++) {
		struct job *j = calloc(1, sizeof(*j));
		j->loop_thread = pthread_self();
		j->done_order = order;
		j->ndone = &ndone;
		j->released = &released;
		workpool_submit(p, run, done, release, j);
	}
	workpool_free(&p);
	CHECK_EQ_INT(ndone, 0);
	CHECK_EQ_INT(released, 10);
	ev_loop_destroy(loop);
}
