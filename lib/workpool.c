#include "lib/workpool.h"

#include <pthread.h>
#include <stdlib.h>

#include "lib/util.h"

struct work {
	struct work *next;
	work_fn run, done, release;
	void *arg;
	bool cancelled;		/* read and written on the loop thread only */
};

struct workpool {
	struct ev_loop *loop;
	pthread_t *threads;
	int nthreads;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct work *todo, *todo_tail;
	struct work *finished;
	bool stop;
	ev_async async;
};

static void *pool_thread(void *arg)
{
	struct workpool *p = arg;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (p->todo == NULL && !p->stop)
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->stop)
			break;
		struct work *w = p->todo;
		p->todo = w->next;
		if (p->todo == NULL)
			p->todo_tail = NULL;
		pthread_mutex_unlock(&p->lock);

		w->run(w->arg);

		pthread_mutex_lock(&p->lock);
		w->next = p->finished;
		p->finished = w;
		ev_async_send(p->loop, &p->async);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static void finish(struct work *w, bool call_done)
{
	if (call_done && !w->cancelled)
		w->done(w->arg);
	w->release(w->arg);
	free(w);
}

static void async_cb(struct ev_loop *loop, ev_async *a, int revents)
{
	struct workpool *p = a->data;
	pthread_mutex_lock(&p->lock);
	struct work *list = p->finished;
	p->finished = NULL;
	pthread_mutex_unlock(&p->lock);
	/* The list is newest first; answer in the order the jobs finished. */
	struct work *rev = NULL;
	while (list != NULL) {
		struct work *next = list->next;
		list->next = rev;
		rev = list;
		list = next;
	}
	while (rev != NULL) {
		struct work *w = rev;
		rev = w->next;
		finish(w, true);
	}
}

struct workpool *workpool_new(struct ev_loop *loop, int threads)
{
	struct workpool *p = xcalloc(1, sizeof(*p));
	p->loop = loop;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	ev_async_init(&p->async, async_cb);
	p->async.data = p;
	ev_async_start(loop, &p->async);
	p->nthreads = threads > 0 ? threads : 1;
	p->threads = xcalloc((size_t)p->nthreads, sizeof(*p->threads));
	for (int i = 0; i < p->nthreads; i++) {
		if (pthread_create(&p->threads[i], NULL, pool_thread, p) != 0) {
			p->nthreads = i;
			break;
		}
	}
	if (p->nthreads == 0)
		die_oom();
	return p;
}

struct work *workpool_submit(struct workpool *p, work_fn run, work_fn done, work_fn release, void *arg)
{
	struct work *w = xcalloc(1, sizeof(*w));
	w->run = run;
	w->done = done;
	w->release = release;
	w->arg = arg;
	pthread_mutex_lock(&p->lock);
	if (p->todo_tail)
		p->todo_tail->next = w;
	else
		p->todo = w;
	p->todo_tail = w;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return w;
}

void workpool_cancel(struct work *w)
{
	w->cancelled = true;
}

void workpool_free(struct workpool **pp)
{
	struct workpool *p = *pp;
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	ev_async_stop(p->loop, &p->async);
	struct work *lists[2] = { p->todo, p->finished };
	for (int i = 0; i < 2; i++) {
		while (lists[i] != NULL) {
			struct work *w = lists[i];
			lists[i] = w->next;
			finish(w, false);
		}
	}
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p->threads);
	free(p);
	*pp = NULL;
}
