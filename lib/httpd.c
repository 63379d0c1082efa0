/* httpd.c - see httpd.h. */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/config.h"
#include "lib/httpd.h"
#include "lib/util.h"

/* A client gets this long to send its request and take the answer. */
#define HTTPD_DEADLINE 2.0

struct hconn {
	struct httpd *h;
	int fd;
	ev_io io;
	ev_timer timer;
	char req[1024];
	size_t len;
	struct buf out;
	size_t sent;
	bool writing;
};

struct httpd {
	struct ev_loop *loop;
	int fd;
	ev_io io;
	httpd_handler handler;
	void *arg;
	struct hconn *conns[HTTPD_MAX_CONNS];
};

static void conn_close(struct hconn *c)
{
	struct httpd *h = c->h;
	ev_io_stop(h->loop, &c->io);
	ev_timer_stop(h->loop, &c->timer);
	close(c->fd);
	buf_free(&c->out);
	for (int i = 0; i < HTTPD_MAX_CONNS; i++)
		if (h->conns[i] == c)
			h->conns[i] = NULL;
	free(c);
}

static void respond(struct hconn *c)
{
	char method[8], path[256];
	struct buf body = BUF_INIT;
	const char *status = "400 Bad Request";
	if (sscanf(c->req, "%7s %255s", method, path) == 2 && strcmp(method, "GET") == 0)
		status = c->h->handler(c->h->arg, path, &body);
	buf_printf(&c->out, "HTTP/1.0 %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
		   "Content-Length: %zu\r\nConnection: close\r\n\r\n", status, body.len);
	buf_append(&c->out, buf_ptr(&body), body.len);
	buf_free(&body);
	c->writing = true;
	ev_io_stop(c->h->loop, &c->io);
	ev_io_set(&c->io, c->fd, EV_WRITE);
	ev_io_start(c->h->loop, &c->io);
}

static void conn_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct hconn *c = io->data;
	if (!c->writing) {
		ssize_t r = read(c->fd, c->req + c->len, sizeof(c->req) - 1 - c->len);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (r <= 0) {
			conn_close(c);
			return;
		}
		c->len += (size_t)r;
		c->req[c->len] = '\0';
		if (strstr(c->req, "\r\n\r\n") != NULL || strstr(c->req, "\n\n") != NULL ||
		    c->len == sizeof(c->req) - 1)
			respond(c);
		return;
	}
	ssize_t w = write(c->fd, buf_ptr(&c->out) + c->sent, c->out.len - c->sent);
	if (w < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (w <= 0) {
		conn_close(c);
		return;
	}
	c->sent += (size_t)w;
	if (c->sent == c->out.len)
		conn_close(c);
}

static void deadline_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	conn_close(t->data);
}

static void accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct httpd *h = io->data;
	int fd = accept4(h->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	int slot = -1;
	for (int i = 0; i < HTTPD_MAX_CONNS && slot < 0; i++)
		if (h->conns[i] == NULL)
			slot = i;
	if (slot < 0) {
		close(fd);	/* a probe flood must not take the daemon's memory */
		return;
	}
	struct hconn *c = xcalloc(1, sizeof(*c));
	c->h = h;
	c->fd = fd;
	h->conns[slot] = c;
	ev_io_init(&c->io, conn_cb, fd, EV_READ);
	c->io.data = c;
	ev_io_start(loop, &c->io);
	ev_timer_init(&c->timer, deadline_cb, HTTPD_DEADLINE, 0.);
	c->timer.data = c;
	ev_timer_start(loop, &c->timer);
}

struct httpd *httpd_new(struct ev_loop *loop, const char *spec, httpd_handler handler, void *arg, char *err,
			size_t errlen)
{
	char host[256], port[16];
	if (config_split_hostport(spec, host, sizeof(host), port, sizeof(port)) < 0) {
		snprintf(err, errlen, "bad listen address '%s' (want host:port)", spec);
		return NULL;
	}
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV | AI_NUMERICHOST };
	struct addrinfo *res;
	int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "%s: %s (use a numeric address)", spec, gai_strerror(rc));
		return NULL;
	}
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 64) < 0) {
		snprintf(err, errlen, "%s: %s", spec, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(res);
		return NULL;
	}
	freeaddrinfo(res);
	struct httpd *h = xcalloc(1, sizeof(*h));
	h->loop = loop;
	h->fd = fd;
	h->handler = handler;
	h->arg = arg;
	ev_io_init(&h->io, accept_cb, fd, EV_READ);
	h->io.data = h;
	ev_io_start(loop, &h->io);
	return h;
}

void httpd_free(struct httpd **hp)
{
	struct httpd *h = *hp;
	if (h == NULL)
		return;
	for (int i = 0; i < HTTPD_MAX_CONNS; i++)
		if (h->conns[i] != NULL)
			conn_close(h->conns[i]);
	ev_io_stop(h->loop, &h->io);
	close(h->fd);
	free(h);
	*hp = NULL;
}
