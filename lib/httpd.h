/* httpd.h - a tiny HTTP/1.0 responder for a libev loop, for /ready and
 * /metrics of daemons that have a loop (storaged).  GET only, one request
 * per connection, answers built by a callback; every connection has a
 * deadline, reads and writes never block, and at most HTTPD_MAX_CONNS are
 * open at once (more are closed at accept).
 */
#ifndef LIB_HTTPD_H
#define LIB_HTTPD_H

#include <ev.h>

#include "lib/buf.h"

#define HTTPD_MAX_CONNS 16

/* Fill body for path; return the status line text ("200 OK", ...). */
typedef const char *(*httpd_handler)(void *arg, const char *path, struct buf *body);

struct httpd;

/* Listen on spec ("host:port"); NULL with err filled on failure. */
struct httpd *httpd_new(struct ev_loop *loop, const char *spec, httpd_handler h, void *arg, char *err,
			size_t errlen);
void httpd_free(struct httpd **h);

#endif
