/* session.c - one client connection: socket and TLS I/O, the read/parse/run
 * loop, output queueing, timeouts and the session's life cycle.
 *
 * Life cycle: a session is referenced by the worker while its connection is
 * open and by every callback it waits for.  session_close() tears down the
 * connection at once (socket, TLS, watchers, pending work is cancelled) and
 * drops the worker's reference; the memory goes when the last reference
 * does.  Every entry point (I/O, timers, callbacks) holds a reference while
 * it runs, so a handler may close its own session safely.
 */
#include <errno.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imapd/imapd.h"
#include "imapd/mailview.h"
#include "lib/pg.h"
#include "lib/spool.h"

/* Read in pieces of this size; stop reading while max_input_queue bytes
 * wait for a running command (TCP then pushes back on the client). */
#define READ_CHUNK 16384
/* Input and output buffers above this are given back once empty. */
#define IDLE_BUFFER_MAX 4096
#define INPUT_HIGH_WATER ((size_t)s->w->cfg->max_input_queue)
/* Stop running new commands while this much output is queued; resume
 * when it drains.  The hard cap is cfg->max_output. */
#define OUTPUT_HIGH_WATER MIN((size_t)256 * 1024, (size_t)s->w->cfg->max_output / 2)
/* What a spooled APPEND literal collects before each write(2): small
 * sequential writes to a local file, cheap enough for the loop thread
 * (lib/spool.h). */
#define SPOOL_WRITE_BUFFER ((size_t)64 * 1024)

static void process_input(struct session *s);
static void start_tls(struct session *s);
static void send_greeting(struct session *s);

void session_ref(struct session *s)
{
	s->refs++;
}

static void session_free(struct session *s)
{
	sel_free(&s->sel);
	imap_parser_free(&s->parser);
	arena_free(&s->cmd_arena);
	arena_free(&s->arena);
	buf_free(&s->in);
	buf_free(&s->out);
	buf_free(&s->append);
	spool_free(&s->spool);
	free(s);
}

void session_unref(struct session *s)
{
	if (--s->refs == 0)
		session_free(s);
}

void session_close(struct session *s, const char *why)
{
	if (s->dead)
		return;
	s->dead = true;
	session_ref(s);
	log_info(&s->log, "disconnect: %s", why);
	struct worker *w = s->w;
	ev_io_stop(w->loop, &s->rio);
	ev_io_stop(w->loop, &s->wio);
	ev_timer_stop(w->loop, &s->timer);
	if (s->cmd != NULL) {
		/* Cancel what the command waits for: its callbacks will not
		 * come, so its reference is dropped here.  A callback that is
		 * running right now holds a reference of its own. */
		struct cmd *c = s->cmd;
		if (c->on_abort)
			c->on_abort(c);
		if (c->pg != NULL) {
			pg_cancel(w->pg, c->pg);
			c->pg = NULL;
		}
		s->cmd = NULL;
		s->refs--;	/* the command's; ours keeps s alive */
	}
	/* A large APPEND literal cut off (or its command cancelled above):
	 * the file goes now, not when the last reference does. */
	spool_free(&s->spool);
	if (s->ssl != NULL) {
		/* Best effort close_notify; the socket is non-blocking. */
		if (s->tls == TLS_ON)
			SSL_shutdown(s->ssl);
		SSL_free(s->ssl);
		s->ssl = NULL;
		ERR_clear_error();
	}
	close(s->fd);
	s->fd = -1;
	worker_session_gone(w, s);
	s->refs--;	/* the connection's; ours keeps s alive */
	session_unref(s);
}

/* ---- output ---- */

void session_write(struct session *s, const char *p, size_t n)
{
	if (s->dead)
		return;
	buf_append(&s->out, p, n);
	if (s->out.len > (size_t)s->w->cfg->max_output) {
		/* A client that does not read its output cannot make us hold
		 * an unbounded amount of it. */
		log_warn(&s->log, "output queue over max_output (%lld): client is not reading",
			 (long long)s->w->cfg->max_output);
		session_close(s, "output limit exceeded");
	}
}

void session_printf(struct session *s, const char *fmt, ...)
{
	if (s->dead)
		return;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&s->out, fmt, ap);
	va_end(ap);
	if (s->out.len > (size_t)s->w->cfg->max_output) {
		log_warn(&s->log, "output queue over max_output: client is not reading");
		session_close(s, "output limit exceeded");
	}
}

/* Returns bytes written, 0 when the socket would block, -1 on error. */
static ssize_t sock_write(struct session *s, const char *p, size_t n)
{
	if (s->ssl == NULL) {
		ssize_t r = write(s->fd, p, n);
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return 0;
		return r;
	}
	ERR_clear_error();
	int r = SSL_write(s->ssl, p, (int)MIN(n, (size_t)1 << 30));
	if (r > 0)
		return r;
	int e = SSL_get_error(s->ssl, r);
	if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
		return 0;
	return -1;
}

void session_flush(struct session *s)
{
	if (s->dead || s->tls == TLS_HANDSHAKE)
		return;
	while (s->out.len > 0) {
		ssize_t r = sock_write(s, buf_ptr(&s->out), s->out.len);
		if (r < 0) {
			session_close(s, "write error");
			return;
		}
		if (r == 0) {
			ev_io_start(s->w->loop, &s->wio);
			return;
		}
		buf_consume(&s->out, (size_t)r);
		s->last_activity = ev_now(s->w->loop);
	}
	ev_io_stop(s->w->loop, &s->wio);
	if (s->out.cap > IDLE_BUFFER_MAX) {
		/* Give back a large buffer once it is empty: thousands of
		 * idle sessions should not each keep one. */
		buf_free(&s->out);
	}
	if (s->closing) {
		session_close(s, s->bye_sent ? "BYE sent" : "closed");
		return;
	}
	if (s->starttls_pending) {
		/* The tagged OK of STARTTLS is out: switch now. */
		s->starttls_pending = false;
		start_tls(s);
	}
}

bool session_output_pending(const struct session *s)
{
	return s->out.len >= OUTPUT_HIGH_WATER;
}

void session_bye(struct session *s, const char *text)
{
	if (s->dead || s->bye_sent)
		return;
	session_printf(s, "* BYE %s\r\n", text);
	s->bye_sent = true;
	s->closing = true;
	s->input = INPUT_NONE;
	session_flush(s);
}

/* ---- timers ---- */

/* Unauthenticated connections get auth_timeout in all; authenticated ones
 * are dropped after idle_timeout without progress either way (reading a
 * command or the client taking output), so a client that stops reading
 * its output is not kept alive by the output it refuses. */
static ev_tstamp session_deadline(const struct session *s)
{
	const struct config *cfg = s->w->cfg;
	if (s->state == STATE_NOT_AUTH)
		return s->connected_at + (ev_tstamp)cfg->auth_timeout;
	return s->last_activity + (ev_tstamp)cfg->idle_timeout;
}

static void timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct session *s = t->data;
	ev_tstamp now = ev_now(loop);
	ev_tstamp deadline = session_deadline(s);
	if (now < deadline) {
		t->repeat = deadline - now;
		ev_timer_again(loop, t);
		return;
	}
	session_ref(s);
	if (s->state == STATE_NOT_AUTH)
		session_bye(s, "Autologout; authentication took too long");
	else
		session_bye(s, "Autologout; idle for too long");
	/* If the client does not read even the BYE, close anyway. */
	if (!s->dead)
		session_close(s, "timeout");
	session_unref(s);
}

/* ---- TLS ---- */

static void tls_handshake(struct session *s)
{
	ERR_clear_error();
	int r = SSL_accept(s->ssl);
	if (r == 1) {
		s->tls = TLS_ON;
		ev_io_stop(s->w->loop, &s->wio);
		ev_io_start(s->w->loop, &s->rio);
		log_debug(&s->log, "TLS established: %s %s", SSL_get_version(s->ssl),
			  SSL_get_cipher_name(s->ssl));
		if (s->implicit_tls)
			send_greeting(s);
		s->input = INPUT_COMMANDS;
		/* Bytes may already be buffered inside OpenSSL. */
		process_input(s);
		return;
	}
	int e = SSL_get_error(s->ssl, r);
	if (e == SSL_ERROR_WANT_READ) {
		ev_io_stop(s->w->loop, &s->wio);
		ev_io_start(s->w->loop, &s->rio);
		return;
	}
	if (e == SSL_ERROR_WANT_WRITE) {
		ev_io_start(s->w->loop, &s->wio);
		return;
	}
	unsigned long ec = ERR_peek_error();
	char detail[160] = "connection closed";
	if (ec != 0)
		ERR_error_string_n(ec, detail, sizeof(detail));
	log_info(&s->log, "TLS handshake failed: %s", detail);
	session_close(s, "TLS handshake failed");
}

static void start_tls(struct session *s)
{
	if (s->w->tls == NULL) {
		session_close(s, "no TLS context");
		return;
	}
	s->ssl = SSL_new(s->w->tls);
	if (s->ssl == NULL || SSL_set_fd(s->ssl, s->fd) != 1) {
		session_close(s, "SSL_new failed");
		return;
	}
	s->tls = TLS_HANDSHAKE;
	s->input = INPUT_NONE;
	tls_handshake(s);
}

int session_starttls(struct session *s)
{
	/* RFC 3501 6.2.1 / RFC 2595 3.1: anything the client sent after
	 * STARTTLS in plaintext must not be taken as commands after the
	 * handshake (command injection, CVE-2011-0411). */
	buf_clear(&s->in);
	s->starttls_pending = true;
	s->input = INPUT_NONE;
	session_flush(s);
	return 0;
}

/* ---- input ---- */

/* Returns bytes read, 0 at EOF, -1 would block, -2 error. */
static ssize_t sock_read(struct session *s, char *p, size_t n)
{
	if (s->ssl == NULL) {
		ssize_t r = read(s->fd, p, n);
		if (r < 0)
			return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? -1 : -2;
		return r;
	}
	ERR_clear_error();
	int r = SSL_read(s->ssl, p, (int)n);
	if (r > 0)
		return r;
	int e = SSL_get_error(s->ssl, r);
	if (e == SSL_ERROR_WANT_READ)
		return -1;
	if (e == SSL_ERROR_WANT_WRITE) {
		s->tls_read_wants_write = true;
		ev_io_start(s->w->loop, &s->wio);
		return -1;
	}
	if (e == SSL_ERROR_ZERO_RETURN)
		return 0;
	if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
		return 0;	/* peer closed without close_notify */
	return -2;
}

static void read_some(struct session *s)
{
	/* Read on the stack and keep only what came: an idle session then
	 * holds a few hundred octets of input buffer, not READ_CHUNK. */
	char chunk[READ_CHUNK];
	while (!s->dead && s->in.len < INPUT_HIGH_WATER) {
		ssize_t r = sock_read(s, chunk, READ_CHUNK);
		if (r == -1)
			break;
		if (r == 0) {
			session_close(s, "client closed the connection");
			return;
		}
		if (r < 0) {
			session_close(s, "read error");
			return;
		}
		buf_append(&s->in, chunk, (size_t)r);
		s->last_activity = ev_now(s->w->loop);
		if ((size_t)r < READ_CHUNK && (s->ssl == NULL || SSL_pending(s->ssl) == 0))
			break;
	}
	if (!s->dead && s->in.len >= INPUT_HIGH_WATER)
		ev_io_stop(s->w->loop, &s->rio);	/* resumed in process_input */
}

static void read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct session *s = io->data;
	session_ref(s);
	if (s->tls == TLS_HANDSHAKE) {
		tls_handshake(s);
	} else if (s->starttls_pending) {
		/* Plaintext sent before the switch is discarded (see
		 * session_starttls); reading it is how we notice EOF. */
		char tmp[512];
		ssize_t r = read(s->fd, tmp, sizeof(tmp));
		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
			session_close(s, "client closed the connection");
	} else {
		read_some(s);
		process_input(s);
	}
	session_unref(s);
}

static void write_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct session *s = io->data;
	session_ref(s);
	if (s->tls == TLS_HANDSHAKE) {
		tls_handshake(s);
	} else {
		session_flush(s);
		if (!s->dead && s->tls_read_wants_write) {
			s->tls_read_wants_write = false;
			read_some(s);
			process_input(s);
		} else if (!s->dead && s->out.len < OUTPUT_HIGH_WATER) {
			if (s->cmd != NULL && s->cmd->on_drain != NULL) {
				void (*fn)(struct cmd *) = s->cmd->on_drain;
				s->cmd->on_drain = NULL;
				fn(s->cmd);
			} else {
				process_input(s);
			}
		}
	}
	session_unref(s);
}

void session_command_reset(struct session *s)
{
	buf_free(&s->append);
	spool_free(&s->spool);
	s->spool_errno = 0;
	imap_parser_reset(&s->parser);
	arena_reset(&s->cmd_arena);
}

/* Handle a line for a command that reads raw lines (AUTHENTICATE). */
static bool feed_line(struct session *s)
{
	const char *p = buf_ptr(&s->in);
	const char *nl = memchr(p, '\n', s->in.len);
	if (nl == NULL) {
		if (s->in.len > (size_t)s->w->cfg->max_line_length) {
			session_bye(s, "Line too long");
			return false;
		}
		return false;
	}
	size_t n = (size_t)(nl - p);
	size_t len = n > 0 && p[n - 1] == '\r' ? n - 1 : n;
	char *line = arena_strndup(&s->cmd_arena, p, len);
	buf_consume(&s->in, n + 1);
	struct cmd *c = s->cmd;
	s->input = INPUT_COMMANDS;
	c->on_line(c, str_make(line, len));
	return true;
}

/* A chunk of the APPEND message (literal_hook decided to stream it): in
 * memory up to append_buffer_size, beyond that through the spool's bounded
 * buffer into its file. */
static void append_literal_data(struct session *s)
{
	struct str chunk = s->parser.chunk;
	if (s->spool != NULL) {
		int before = spool_error(s->spool);
		if (spool_write(s->spool, chunk.p, chunk.len) < 0 && before == 0)
			log_error(&s->log, "APPEND: spool file in %s: %s failed: %s; the message will be refused",
				  spool_dir(s->w->cfg->spool_dir), spool_error_op(s->spool),
				  strerror(spool_error(s->spool)));
	} else if (s->spool_errno == 0) {
		buf_append(&s->append, chunk.p, chunk.len);
	}	/* else there is no spool file: dropped, cmd_append answers NO */
}

static void process_input(struct session *s)
{
	if (s->dead)
		return;
	session_ref(s);
	while (!s->dead && !s->closing) {
		if (s->input == INPUT_LINE && s->cmd != NULL) {
			if (!feed_line(s))
				break;
			continue;
		}
		if (s->input != INPUT_COMMANDS || s->cmd != NULL)
			break;
		if (s->out.len >= OUTPUT_HIGH_WATER) {
			session_flush(s);
			if (s->dead || s->out.len >= OUTPUT_HIGH_WATER)
				break;	/* write_cb resumes us when the client reads */
		}
		if (s->in.len == 0)
			break;
		size_t used = 0;
		enum imap_parse_result r = imap_parser_feed(&s->parser, buf_ptr(&s->in), s->in.len, &used);
		/* Before buf_consume(): the chunk points into s->in, and
		 * consuming all of it puts buf's courtesy NUL on its first
		 * octet. */
		if (r == IMAP_PARSE_LITERAL_DATA)
			append_literal_data(s);
		buf_consume(&s->in, used);
		const struct imap_command *pc = &s->parser.cmd;
		const char *tag = pc->tag.len ? pc->tag.p : "*";
		switch (r) {
		case IMAP_PARSE_MORE:
			goto out;
		case IMAP_PARSE_CONTINUE:
			/* RFC 3501 7.5: the literal was accepted. */
			session_write(s, "+ Ready for literal data\r\n", 26);
			session_flush(s);
			continue;
		case IMAP_PARSE_DONE:
			s->w->n_commands++;
			cmd_run(s, pc);
			continue;
		case IMAP_PARSE_LITERAL_TOOBIG:
			if (s->spool_errno != 0)	/* literal_hook: no spool file for {N} */
				session_printf(s, "%s NO [UNAVAILABLE] Cannot take the message now "
					       "(temporary spool failure), try again later\r\n", tag);
			else
				session_printf(s, "%s NO [TOOBIG] Literal too large\r\n", tag);
			session_command_reset(s);
			continue;
		case IMAP_PARSE_ERROR:
			session_printf(s, "%s BAD %s\r\n", tag, s->parser.error ? s->parser.error : "Syntax error");
			session_command_reset(s);
			if (++s->bad_commands >= (unsigned)s->w->cfg->max_bad_commands)
				session_bye(s, "Too many invalid commands");
			continue;
		case IMAP_PARSE_LITERAL_DATA:
			continue;	/* taken above */
		case IMAP_PARSE_FATAL:
		default:
			session_printf(s, "%s BAD %s\r\n", tag, s->parser.error ? s->parser.error : "Protocol error");
			session_bye(s, "Cannot continue after this error");
			goto out;
		}
	}
out:
	if (!s->dead && s->cmd == NULL && s->in.len == 0 && s->in.cap > IDLE_BUFFER_MAX)
		buf_free(&s->in);	/* a long command or literal went through */
	if (!s->dead) {
		if (s->in.len < INPUT_HIGH_WATER && !s->starttls_pending && s->tls != TLS_HANDSHAKE)
			ev_io_start(s->w->loop, &s->rio);
		session_flush(s);
	}
	session_unref(s);
}

void session_resume(struct session *s)
{
	session_command_reset(s);
	if (s->w->draining && !s->closing) {
		session_bye(s, "Server shutting down, please reconnect");
		return;
	}
	process_input(s);
}

void session_drain(struct session *s)
{
	/* An IDLE command is an idle session too (RFC 2177: the server may
	 * end it with BYE at any time). */
	if (s->cmd == NULL || s->cmd->def->fn == cmd_idle)
		session_bye(s, "Server shutting down, please reconnect");
	/* otherwise: session_resume() says BYE once the command is done */
}

/* ---- capabilities and greeting ---- */

void session_capabilities(struct session *s, struct buf *out)
{
	buf_puts(out, "IMAP4rev1 LITERAL+ SASL-IR ID ENABLE NAMESPACE");
	if (s->state != STATE_NOT_AUTH) {
		buf_printf(out, " UIDPLUS MOVE UNSELECT IDLE CHILDREN SPECIAL-USE CONDSTORE QRESYNC APPENDLIMIT=%lld",
			   (long long)s->w->cfg->max_append_size);
	} else {
		if (s->w->tls != NULL && s->tls == TLS_NONE)
			buf_puts(out, " STARTTLS");
		if (worker_plaintext_allowed(s))
			buf_puts(out, " AUTH=PLAIN");
		else
			buf_puts(out, " LOGINDISABLED");
	}
}

static void send_greeting(struct session *s)
{
	struct buf caps = BUF_INIT;
	session_capabilities(s, &caps);
	session_printf(s, "* OK [CAPABILITY %s] IMAP server ready\r\n", buf_ptr(&caps));
	buf_free(&caps);
	session_flush(s);
}

/* APPEND's message literal is streamed out of the parser (it may be far
 * larger than max_literal_size); every other literal is buffered.  The
 * size is known here, before the client sends a byte (RFC 3501 7.5 for
 * {N}; RFC 7888 for {N+}, whose octets follow at once): a message above
 * append_buffer_size gets its spool file now. */
static enum imap_literal_mode literal_hook(void *ctx, const struct imap_command *sofar,
					   uint64_t size, bool nonsync)
{
	struct session *s = ctx;
	if (sofar->nargs >= 2 && imap_arg_is_atom(&sofar->args[0], "APPEND")) {
		const struct config *cfg = s->w->cfg;
		if (size > (uint64_t)cfg->max_append_size || s->state == STATE_NOT_AUTH)
			return IMAP_LITERAL_REJECT;
		/* One streamed literal per command, the message; a second
		 * literal is not APPEND syntax: buffered (max_literal_size),
		 * and cmd_append refuses the command. */
		if (s->spool != NULL || s->spool_errno != 0 || s->append.len > 0)
			return IMAP_LITERAL_BUFFER;
		if (size > (uint64_t)cfg->append_buffer_size) {
			int e = 0;
			s->spool = spool_open(cfg->spool_dir, SPOOL_WRITE_BUFFER, &e);
			if (s->spool == NULL) {
				s->spool_errno = e;
				log_error(&s->log, "APPEND: cannot create a spool file in %s: %s",
					  spool_dir(cfg->spool_dir), strerror(e));
				/* {N}: NO before the client sends the message
				 * (IMAP_PARSE_LITERAL_TOOBIG above).  {N+}: its
				 * octets are on the way; they are dropped and
				 * cmd_append says NO. */
				if (!nonsync)
					return IMAP_LITERAL_REJECT;
			}
		}
		return IMAP_LITERAL_STREAM;
	}
	return IMAP_LITERAL_BUFFER;
}

/* ---- start ---- */

static void describe_peer(struct session *s, const struct sockaddr_storage *sa)
{
	if (sa->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in->sin_addr, s->peer, sizeof(s->peer));
		snprintf(s->peer_port, sizeof(s->peer_port), "%u", ntohs(in->sin_port));
		s->peer_loopback = (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	} else if (sa->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, s->peer, sizeof(s->peer));
		snprintf(s->peer_port, sizeof(s->peer_port), "%u", ntohs(in6->sin6_port));
		if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) {
			s->peer_loopback = true;
		} else if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			s->peer_loopback = in6->sin6_addr.s6_addr[12] == 127;
			inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], s->peer, sizeof(s->peer));
		}
	} else {
		snprintf(s->peer, sizeof(s->peer), "unknown");
	}
}

void session_start(struct worker *w, int fd, const struct sockaddr_storage *sa,
		   socklen_t salen, bool implicit_tls)
{
	struct session *s = xcalloc(1, sizeof(*s));
	s->w = w;
	s->fd = fd;
	s->refs = 1;
	s->state = STATE_NOT_AUTH;
	s->implicit_tls = implicit_tls;
	s->account_id = -1;
	w->next_session++;
	snprintf(s->sid, sizeof(s->sid), "%x.%llx", (unsigned)getpid(), (unsigned long long)w->next_session);
	s->log.sid = s->sid;
	describe_peer(s, sa);
	(void)salen;

	arena_init(&s->arena, 2048);
	arena_init(&s->cmd_arena, 8192);
	struct imap_parser_limits lim = {
		.max_line = (size_t)w->cfg->max_line_length,
		.max_literal = (size_t)w->cfg->max_literal_size,
		.max_nesting = (size_t)w->cfg->max_nesting,
		.max_args = (size_t)w->cfg->max_args,
	};
	imap_parser_init(&s->parser, &lim, &s->cmd_arena);
	imap_parser_set_literal_hook(&s->parser, literal_hook, s);

	/* Mobile clients sit behind NAT boxes that forget quiet flows. */
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

	ev_io_init(&s->rio, read_cb, fd, EV_READ);
	s->rio.data = s;
	ev_io_init(&s->wio, write_cb, fd, EV_WRITE);
	s->wio.data = s;
	s->connected_at = s->last_activity = ev_now(w->loop);
	ev_init(&s->timer, timer_cb);
	s->timer.data = s;
	s->timer.repeat = session_deadline(s) - s->connected_at;
	ev_timer_again(w->loop, &s->timer);

	s->next = w->sessions;
	if (w->sessions)
		w->sessions->prev = s;
	w->sessions = s;
	w->nsessions++;

	log_info(&s->log, "connect from %s port %s%s", s->peer, s->peer_port,
		 implicit_tls ? " (implicit TLS)" : "");
	session_ref(s);
	if (implicit_tls) {
		start_tls(s);
	} else {
		s->input = INPUT_COMMANDS;
		ev_io_start(w->loop, &s->rio);
		send_greeting(s);
	}
	session_unref(s);
}
