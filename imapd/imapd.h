/* imapd.h - the objects of an imapd worker process.
 *
 * A worker is one libev loop serving many sessions.  A session owns its
 * socket, its TLS state, an arena that lives as long as the connection and
 * a child arena per command.  Commands are state machines: a handler that
 * needs the database (or a password check) returns CMD_PENDING and is
 * resumed by a callback that ends with cmd_done().  Everything here runs on
 * the loop thread; the only other threads are nats.c's and the password
 * hashing pool (auth.c), which hand results back through ev_async.
 */
#ifndef IMAPD_IMAPD_H
#define IMAPD_IMAPD_H

#include <ev.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "imapd/parser.h"
#include "imapd/seqset.h"
#include "lib/arena.h"
#include "lib/buf.h"
#include "lib/config.h"
#include "lib/log.h"
#include "lib/util.h"

#define IMAPD_VERSION "0.1"

struct pg_pool;
struct pg_req;
struct spool;
struct notify;
struct auth_pool;
struct throttle;
struct session;
struct cmd;
struct watch;
struct stats_table;

/* A listening socket inherited from the master. */
struct listener {
	int fd;
	bool implicit_tls;	/* 993-style: TLS starts before the greeting */
	char addr[80];
	ev_io io;
};

#define MAX_LISTENERS 4

struct worker {
	struct ev_loop *loop;
	const char *config_path;
	struct config *cfg;		/* the process's config; replaced on SIGHUP */
	int index;			/* 0..workers-1, for logs */
	struct log_ctx log;		/* "w<index>" */
	char log_sid[32];

	struct listener listeners[MAX_LISTENERS];
	int nlisteners;
	SSL_CTX *tls;			/* NULL: no TLS configured */

	struct pg_pool *pg;
	struct notify *notify;
	struct auth_pool *auth;
	struct throttle *throttle;
	struct stats_table *stats;	/* shared with the master (stats.h) */
	ev_timer stats_timer;

	struct session *sessions;	/* doubly linked list of live sessions */
	unsigned nsessions;
	uint64_t next_session;		/* for session ids */

	/* watch.c: the mailboxes selected here (hash by mailbox id) */
	struct watch **watches;
	size_t watch_cap, nwatches;
	struct watch *watch_pending;	/* watches with idling sessions to feed */
	ev_prepare watch_prepare;
	ev_timer watch_timer;
	struct pg_req *recheck_req;
	bool recheck_again;

	bool draining;
	bool nats_up;
	ev_signal sigterm, sigint, sighup;
	ev_timer drain_timer;

	/* counters (exposed through logs and, later, metrics) */
	uint64_t n_accepted, n_commands, n_login_ok, n_login_fail;
	uint64_t n_notifications;	/* change notifications received */
	uint64_t n_delta_queries;	/* shared delta queries for idling sessions */
	uint64_t n_rechecks;		/* periodic HIGHESTMODSEQ checks */
};

enum session_state {
	STATE_NOT_AUTH = 1 << 0,
	STATE_AUTH = 1 << 1,
	STATE_SELECTED = 1 << 2,
	STATE_LOGOUT = 1 << 3,
};
#define STATE_ANY (STATE_NOT_AUTH | STATE_AUTH | STATE_SELECTED)

/* What the session does with the bytes it reads. */
enum input_mode {
	INPUT_COMMANDS,		/* the command parser */
	INPUT_LINE,		/* a raw line for the running command (AUTHENTICATE) */
	INPUT_NONE,		/* not reading (TLS switch, closing) */
};

enum tls_state { TLS_NONE, TLS_HANDSHAKE, TLS_ON };

/* Extensions a client may ENABLE (RFC 5161). */
enum {
	EXT_CONDSTORE = 1 << 0,
	EXT_QRESYNC = 1 << 1,
};

/* The selected mailbox (SELECTED state) as this session's client sees
 * it.  DESIGN.md invariant 6: the view changes only when the client is
 * told.  uids is the client's sequence of UIDs; changes found in the
 * database wait in pending_* until a point where RFC 3501 7.4.1 allows
 * telling the client. */
struct selected {
	int64_t mailbox_id;
	char *name;		/* UTF-8, heap */
	uint32_t uidvalidity;
	bool readonly;		/* EXAMINE */
	struct uidset uids;	/* the client's view */
	uint64_t known_modseq;	/* database changes up to here are in the view or pending */
	struct uidset recent;	/* UIDs that are \Recent in this session */
	struct uidset pending_expunge;
	uint64_t pending_expunge_modseq;	/* lowest modseq among pending_expunge, 0 if none */
	struct uidset pending_new;
	char *keywords;		/* space-separated keyword list the client was given */
	uint64_t *own_modseqs;	/* modseqs of this session's own writes not yet synced */
	size_t n_own, cap_own;
	bool dirty;		/* the database may hold changes above known_modseq */
	bool gone;
	/* watch.c */
	struct session *s;
	struct watch *watch;
	struct selected *wprev, *wnext;	/* the watch's sessions */
	struct cmd *idle_cmd;	/* the running IDLE, fed by the watch */		/* the mailbox was deleted or renamed away */
};

struct session {
	struct session *prev, *next;
	struct worker *w;
	int fd;
	char sid[32];
	struct log_ctx log;
	char peer[INET6_ADDRSTRLEN + 8];	/* address without port */
	char peer_port[8];
	bool peer_loopback;
	bool implicit_tls;

	SSL *ssl;
	enum tls_state tls;
	bool tls_read_wants_write;	/* the last SSL_read wanted to write */
	bool starttls_pending;	/* switch to TLS once output is flushed */

	ev_io rio, wio;
	ev_timer timer;		/* auth / idle timeout */
	ev_tstamp connected_at;
	ev_tstamp last_activity;	/* input read or output taken */

	enum session_state state;
	enum input_mode input;
	struct arena arena;	/* lives as long as the session */
	struct arena cmd_arena;	/* reset after each command */
	struct imap_parser parser;
	struct buf in;		/* bytes read, not yet parsed */
	struct buf out;		/* bytes queued to the client */
	struct buf append;	/* the streamed APPEND literal (at most append_buffer_size) */
	struct spool *spool;	/* a larger one, spooled to a file (lib/spool.h) */
	int spool_errno;	/* no spool file could be made for it (errno) */

	struct cmd *cmd;	/* the running command, or NULL */
	unsigned bad_commands;
	unsigned login_failures;
	unsigned enabled;	/* EXT_* */

	/* authenticated user */
	int64_t account_id, tenant_id;
	char *login;		/* in arena */
	struct selected *sel;	/* NULL unless SELECTED */

	bool closing;		/* close once output is flushed */
	bool bye_sent;
	bool dead;		/* socket closed; waiting for callbacks to drain */
	unsigned refs;		/* pending callbacks holding the session */
};

/* Result of a command handler. */
enum cmd_result { CMD_DONE, CMD_PENDING };

struct cmd_def {
	const char *name;
	unsigned states;	/* STATE_* in which it may run */
	enum cmd_result (*fn)(struct cmd *c);
	unsigned flags;
};

/* Command flags. */
enum {
	CMDF_UID = 1 << 0,	/* "UID <name>" form */
	/* In the selected state, bring a stale view up to date (and tell
	 * the client) before running: commands that do not sync themselves
	 * at their end (sel_complete) still deliver other sessions' changes
	 * (RFC 3501 7.4.1 allows EXPUNGE around them). */
	CMDF_PRESYNC = 1 << 1,
};

struct cmd {
	struct session *s;
	const struct cmd_def *def;
	struct arena *arena;	/* the session's command arena */
	const char *tag;	/* NUL-terminated, in arena */
	const char *name;	/* upper-case command name */
	const struct imap_arg *args;	/* arguments after the name */
	size_t nargs;
	bool uid;		/* UID FETCH etc. */
	struct pg_req *pg;	/* running query, if any */
	void *state;		/* handler's own state */
	void (*on_line)(struct cmd *c, struct str line);	/* INPUT_LINE consumer */
	void (*on_abort)(struct cmd *c);	/* session closing under a pending command */
	void (*on_drain)(struct cmd *c);	/* called once when queued output fell below the high-water mark */
	uint64_t started_us;
	uint64_t modseq_told;	/* highest MODSEQ in an untagged FETCH of this command */
	bool allow_expunge;	/* sel_complete(): EXPUNGE/VANISHED may be sent */
	void (*reply)(struct cmd *c);	/* sel_complete(): writes the tagged response */
};

/* ---- worker.c ---- */
int worker_main(const char *config_path, struct config *cfg, int index,
		const struct listener *ls, int nls, struct throttle *throttle, struct stats_table *stats);
bool worker_plaintext_allowed(const struct session *s);
/* Called when a session has gone; removes it from the worker. */
void worker_session_gone(struct worker *w, struct session *s);

/* ---- tls.c ---- */
/* Build a server SSL_CTX from cfg; NULL and err filled on failure. */
SSL_CTX *tls_ctx_new(const struct config *cfg, char *err, size_t errlen);

/* ---- session.c ---- */
void session_start(struct worker *w, int fd, const struct sockaddr_storage *sa,
		   socklen_t salen, bool implicit_tls);
/* Queue output; may mark the session for closing when the client does not
 * read (max_output). */
void session_write(struct session *s, const char *p, size_t n);
void session_printf(struct session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void session_flush(struct session *s);
/* Whether so much output is queued that producers should wait for
 * cmd->on_drain. */
bool session_output_pending(const struct session *s);
/* Send "* BYE text" and close once it is flushed. */
void session_bye(struct session *s, const char *text);
/* Start TLS on the session (after the tagged OK of STARTTLS was flushed). */
int session_starttls(struct session *s);
/* Forget the finished command's parse state and arena. */
void session_command_reset(struct session *s);
/* Resume input processing after a pending command completes. */
void session_resume(struct session *s);
void session_close(struct session *s, const char *why);
/* Keep the session alive across a callback; session_unref frees a dead
 * session when the last reference goes. */
void session_ref(struct session *s);
void session_unref(struct session *s);
/* The capability list for the session's current state. */
void session_capabilities(struct session *s, struct buf *out);
/* Drain: BYE if idle, otherwise after the running command. */
void session_drain(struct session *s);

/* ---- commands.c ---- */
const struct cmd_def *cmd_lookup(struct str name, bool uid);
/* Run a parsed command. */
void cmd_run(struct session *s, const struct imap_command *pc);
/* Tagged responses; they finish the command. text may start with "[CODE] ". */
void cmd_ok(struct cmd *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cmd_no(struct cmd *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cmd_bad(struct cmd *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A pending command finished (after its tagged response was written). */
void cmd_done(struct cmd *c);
/* For handlers whose database request failed. */
void cmd_unavailable(struct cmd *c, const char *err);
/* First thing in a command's database callback: forgets c->pg; if err is
 * set, answers NO [UNAVAILABLE], ends the command and returns true. */
bool cmd_db_failed(struct cmd *c, const char *err);

/* Handlers, one file each. */
enum cmd_result cmd_capability(struct cmd *c);
enum cmd_result cmd_noop(struct cmd *c);
enum cmd_result cmd_logout(struct cmd *c);
enum cmd_result cmd_id(struct cmd *c);
enum cmd_result cmd_enable(struct cmd *c);
enum cmd_result cmd_namespace(struct cmd *c);
enum cmd_result cmd_starttls(struct cmd *c);
enum cmd_result cmd_login(struct cmd *c);
enum cmd_result cmd_authenticate(struct cmd *c);
enum cmd_result cmd_create(struct cmd *c);
enum cmd_result cmd_delete(struct cmd *c);
enum cmd_result cmd_rename(struct cmd *c);
enum cmd_result cmd_subscribe(struct cmd *c);
enum cmd_result cmd_unsubscribe(struct cmd *c);
enum cmd_result cmd_list(struct cmd *c);
enum cmd_result cmd_lsub(struct cmd *c);
enum cmd_result cmd_status(struct cmd *c);
enum cmd_result cmd_select(struct cmd *c);
enum cmd_result cmd_examine(struct cmd *c);
enum cmd_result cmd_close(struct cmd *c);
enum cmd_result cmd_unselect(struct cmd *c);
enum cmd_result cmd_check(struct cmd *c);
enum cmd_result cmd_expunge(struct cmd *c);
enum cmd_result cmd_store(struct cmd *c);
enum cmd_result cmd_fetch(struct cmd *c);
enum cmd_result cmd_search(struct cmd *c);
enum cmd_result cmd_append(struct cmd *c);
enum cmd_result cmd_copy(struct cmd *c);
enum cmd_result cmd_move(struct cmd *c);
enum cmd_result cmd_idle(struct cmd *c);

/* ---- auth.c ---- */
/* Password verification off the loop thread, on a work pool that other
 * CPU-heavy jobs (parsing an appended message) share. */
struct auth_pool *auth_pool_new(struct ev_loop *loop, int threads);
void auth_pool_free(struct auth_pool **p);
struct workpool *auth_workpool(struct auth_pool *p);
struct auth_job;
typedef void (*auth_cb)(void *arg, bool ok);
/* Verify password against a crypt(3) hash (NULL hash: run a dummy hash so
 * unknown users take as long as known ones, then fail).  The password is
 * copied and wiped after use. */
struct auth_job *auth_verify(struct auth_pool *p, const char *hash, struct str password,
			     auth_cb cb, void *arg);
/* The callback will not be called. */
void auth_cancel(struct auth_job *j);

/* Failed-login throttling per source address (per connection counts live
 * in the session).  The table is in shared memory: create it in the master
 * before forking workers. */
struct throttle *throttle_new(size_t max_entries);
void throttle_free(struct throttle **t);
void throttle_fail(struct throttle *t, const char *addr, ev_tstamp now, ev_tstamp window);
unsigned throttle_failures(struct throttle *t, const char *addr, ev_tstamp now, ev_tstamp window);
void throttle_success(struct throttle *t, const char *addr);
uint64_t throttle_delay_ms(const struct config *cfg, unsigned failures);

/* Authenticate login/password: looks the account up, verifies, applies the
 * failure delay, and writes the tagged response. */
enum cmd_result auth_login(struct cmd *c, struct str login, struct str password);

#endif
