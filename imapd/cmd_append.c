/* APPEND (RFC 3501 6.3.11) with APPENDUID (RFC 4315).
 *
 * The message literal is refused before a byte of it is read when it is
 * larger than max_append_size (NO [TOOBIG] for a synchronizing literal; a
 * non-synchronizing one over the limit ends the connection).  The bytes are
 * parsed once (lib/mime.c), stored once per tenant by SHA-256, and the
 * message takes its UID and modseq from the mailbox counter in the same
 * statement (DESIGN.md invariant 1): nothing half-written is possible.
 *
 * Memory per APPEND is bounded by append_buffer_size, whatever the message
 * size.  Up to that size the literal is collected in memory (s->append)
 * and sent as a statement parameter.  A larger one went, as it arrived,
 * through a bounded buffer into an unlinked spool file (session.c,
 * lib/spool.h); then:
 *   1. the work pool hashes and parses the file through a read-only
 *      mapping, off the loop;
 *   2. one query asks whether the mailbox exists (else TRYCREATE, without
 *      sending a byte) and whether the tenant already holds a blob with
 *      that hash (then the bytes need not be sent at all);
 *   3. otherwise the bytes are streamed from the file with binary COPY into
 *      an append_stage row under a random token (pg_copy_in(): one chunk
 *      at a time, as the socket takes it);
 *   4. the same single statement as for small messages stores blob and
 *      message, taking the bytes out of the stage row (DELETE ... RETURNING
 *      in a CTE): all or nothing.  A failure leaves at most the stage row,
 *      which is deleted at once when the database answers, and otherwise
 *      by append_stage_expire() (sql/0006_append_stage.sql).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imapd/mailbox.h"
#include "imapd/mailview.h"
#include "lib/mime.h"
#include "lib/pg.h"
#include "lib/spool.h"
#include "lib/workpool.h"

/* Binary COPY framing of one append_stage row (account_id, token, data)
 * (PostgreSQL documentation, COPY, "Binary Format"): the 11-octet
 * signature, flags and header-extension length (int32 0 each), then the
 * tuple: field count (int16 3), and per field an int32 length and the
 * octets; the trailer is a field count of -1.  All integers are in network
 * byte order. */
#define STAGE_TOKEN_LEN 16
#define STAGE_HEAD_LEN (11 + 4 + 4 + 2 + (4 + 8) + (4 + STAGE_TOKEN_LEN) + 4)
#define STAGE_TAIL_LEN 2

struct append_state {
	struct cmd *c;
	char *mailbox;
	char *ok;	/* the tagged OK text, with APPENDUID */
	unsigned bits;
	char *keywords;	/* PostgreSQL array literal */
	char *date;	/* ISO internal date or NULL */
	struct parse_job *job;
	struct work *work;	/* the parse job while it runs */

	/* A spooled message (s->spool), after its parse: */
	bool spooled;
	uint64_t size;
	unsigned char hash[32];
	unsigned hlen;
	char *envelope, *bodystructure, *body;	/* in the command arena */
	char *parts;
	size_t parts_len;
	int64_t sent_date;
	int sent_tz;
	unsigned char token[STAGE_TOKEN_LEN];
	bool staged;	/* a stage row under token was committed */
	bool retried;	/* the store statement was tried once more */
	char head[STAGE_HEAD_LEN];
	uint64_t copy_pos;	/* octets of the COPY stream produced */
};

static void stage_copy(struct append_state *st);

/* RFC 3501 9: date-time = DQUOTE date-day-fixed "-" date-month "-" date-year
 * SP time SP zone DQUOTE.  Returns an ISO 8601 string PostgreSQL reads, or
 * NULL. */
static char *parse_date_time(struct arena *a, struct str t)
{
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	char buf[40];
	if (t.len != 26 || t.len >= sizeof(buf))
		return NULL;
	memcpy(buf, t.p, t.len);
	buf[t.len] = '\0';
	/* "dd-Mon-yyyy hh:mm:ss +zzzz", day may be " 7" */
	int day = (buf[0] == ' ' ? 0 : buf[0] - '0') * 10 + (buf[1] - '0');
	if ((buf[0] != ' ' && (buf[0] < '0' || buf[0] > '3')) || buf[1] < '0' || buf[1] > '9' ||
	    buf[2] != '-' || buf[6] != '-' || buf[11] != ' ' || buf[14] != ':' || buf[17] != ':' ||
	    buf[20] != ' ' || (buf[21] != '+' && buf[21] != '-'))
		return NULL;
	int mon = -1;
	for (int i = 0; i < 12; i++)
		if (strncasecmp(buf + 3, months[i], 3) == 0)
			mon = i + 1;
	for (int i = 7; i < 11; i++)
		if (buf[i] < '0' || buf[i] > '9')
			return NULL;
	static const int digits[] = { 12, 13, 15, 16, 18, 19, 22, 23, 24, 25 };
	for (size_t i = 0; i < ARRAY_SIZE(digits); i++)
		if (buf[digits[i]] < '0' || buf[digits[i]] > '9')
			return NULL;
	int hh = (buf[12] - '0') * 10 + buf[13] - '0', mm = (buf[15] - '0') * 10 + buf[16] - '0';
	int ss = (buf[18] - '0') * 10 + buf[19] - '0';
	int zh = (buf[22] - '0') * 10 + buf[23] - '0', zm = (buf[24] - '0') * 10 + buf[25] - '0';
	if (mon < 0 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60 || zh > 23 || zm > 59)
		return NULL;
	return arena_printf(a, "%.4s-%02d-%02d %02d:%02d:%02d%c%02d:%02d", buf + 7, mon, day, hh, mm,
			    ss > 59 ? 59 : ss, buf[21], zh, zm);
}

static void after_sync(struct cmd *c)
{
	struct append_state *st = c->state;
	/* RFC 3501 6.3.11: appending to the selected mailbox announces the
	 * new message; APPEND is not a sequence-number command. */
	sel_announce(c->s, true);
	cmd_ok(c, "%s", st->ok);
	cmd_done(c);
}

/* The stage row is not needed any more (the store failed): delete it now
 * if the database lets us; append_stage_expire() gets it otherwise. */
static void stage_dropped_cb(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
}

static void stage_drop(struct append_state *st)
{
	struct session *s = st->c->s;
	if (!st->staged)
		return;
	st->staged = false;
	const char *params[2] = { arena_printf(st->c->arena, "%lld", (long long)s->account_id),
				  (const char *)st->token };
	int lengths[2] = { -1, STAGE_TOKEN_LEN };
	int binary[2] = { 0, 1 };
	pg_query(s->w->pg, "DELETE FROM append_stage WHERE account_id = $1 AND token = $2", 2, params,
		 lengths, binary, 0, stage_dropped_cb, NULL);
}

static void appended_cb(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	struct append_state *st = arg;
	struct cmd *c = st->c;
	struct session *s = c->s;
	session_ref(s);
	c->pg = NULL;
	if (err != NULL) {
		/* The statement did nothing (or, on "connection lost", maybe
		 * everything, and then the stage row is gone already). */
		stage_drop(st);
		if (st->spooled && strcmp(sqlstate, "23503") == 0 && !st->retried) {
			/* The blob found in step 2 went away (storaged's sweep)
			 * before the statement referenced it: send the bytes. */
			st->retried = true;
			log_info(&s->log, "APPEND: blob vanished before the insert; sending the message");
			stage_copy(st);
			session_unref(s);
			return;
		}
		if (strcmp(sqlstate, "23514") == 0)
			cmd_no(c, "[LIMIT] Mailbox is full");
		else
			cmd_unavailable(c, err);
		cmd_done(c);
		session_unref(s);
		return;
	}
	if (PQntuples(res) != 1) {
		/* RFC 3501 6.3.11: TRYCREATE when the mailbox does not exist. */
		cmd_no(c, "[TRYCREATE] No such mailbox");
		cmd_done(c);
		session_unref(s);
		return;
	}
	uint32_t uidvalidity = (uint32_t)pg_u64(res, 0, 0);
	uint32_t uid = (uint32_t)pg_u64(res, 0, 1);
	int64_t mailbox_id = (int64_t)pg_u64(res, 0, 2);
	log_debug(&s->log, "appended UID %u to %s", uid, st->mailbox);
	mailbox_notify_kind(s, mailbox_id, pg_u64(res, 0, 3), "append");
	st->ok = arena_printf(c->arena, "[APPENDUID %u %u] Append completed", uidvalidity, uid);
	if (s->sel != NULL && s->sel->mailbox_id == mailbox_id) {
		sel_sync(c, after_sync);
	} else {
		cmd_ok(c, "%s", st->ok);
		cmd_done(c);
	}
	session_unref(s);
}

/* Off the loop: SHA-256 and the MIME parse of the message, held in memory
 * (data) or mapped from its spool file (map). */
struct parse_job {
	struct buf data;
	const char *map;
	size_t maplen;
	struct arena arena;	/* mime results */
	struct mime_result mr;
	unsigned char hash[32];
	unsigned hlen;
	struct append_state *st;	/* loop thread only; NULL once cancelled */
};

static void parse_run(void *arg)
{
	struct parse_job *job = arg;
	const char *p = job->map != NULL ? job->map : buf_ptr(&job->data);
	size_t len = job->map != NULL ? job->maplen : job->data.len;
	EVP_Digest(p, len, job->hash, &job->hlen, EVP_sha256(), NULL);
	struct mime_limits lim = { .max_depth = 50, .max_parts = 10000, .max_header_bytes = 1 << 20 };
	mime_parse(p, len, &lim, &job->arena, &job->mr);
}

static void parse_release(void *arg)
{
	struct parse_job *job = arg;
	buf_free(&job->data);
	spool_unmap(job->map, job->maplen);
	buf_free(&job->mr.parts);
	arena_free(&job->arena);
	free(job);
}

static void append_abort(struct cmd *c)
{
	struct append_state *st = c->state;
	if (st->work != NULL) {
		workpool_cancel(st->work);
		st->work = NULL;
	}
	/* session_close() cancels c->pg (a COPY is rolled back: pg.h) and
	 * then closes the spool file. */
}

/* The statement that stores blob and message (all of it or nothing).  The
 * bytes come from $6 (a small message) or from the stage row under $15 (a
 * spooled one; none when the tenant holds the blob already). */
static const char store_sql[] =
	"WITH st AS ("
	"  DELETE FROM append_stage WHERE account_id = $1 AND token = $15"
	"  RETURNING data), "
	"mb AS ("
	"  UPDATE mailbox SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1,"
	"         keywords = keywords || ARRAY(SELECT k FROM unnest($11::text[]) k"
	"                                       WHERE k <> ALL (mailbox.keywords))"
	"   WHERE account_id = $1 AND name = $2"
	"  RETURNING id, uidnext - 1 AS uid, highestmodseq, uidvalidity), "
	"b AS ("
	"  INSERT INTO blob (tenant_id, hash, size, data, envelope, bodystructure, body, parts,"
	"                    sent_date)"
	"  SELECT $3, $4, $5, d.data, $7, $8, $9, $10, to_timestamp($14::bigint)"
	"    FROM (SELECT $6::bytea AS data WHERE $6::bytea IS NOT NULL"
	"          UNION ALL SELECT data FROM st) d"
	"   WHERE EXISTS (SELECT 1 FROM mb)"
	"  ON CONFLICT (tenant_id, hash) DO NOTHING), "
	"m AS ("
	"  INSERT INTO message (account_id, mailbox_id, uid, modseq, flags, keywords,"
	"                       internaldate, size, blob_hash, tenant_id)"
	"  SELECT $1, mb.id, mb.uid, mb.highestmodseq, $12::int, $11::text[],"
	"         coalesce($13::timestamptz, now()), $5, $4, $3 FROM mb"
	"  RETURNING uid) "
	"SELECT mb.uidvalidity, mb.uid, mb.id, mb.highestmodseq FROM mb";

/* What the store statement needs besides the bytes. */
struct store_args {
	const unsigned char *hash;
	unsigned hlen;
	uint64_t size;
	const char *data;	/* NULL: from the stage row */
	const char *envelope, *bodystructure, *body;
	const char *parts;
	size_t parts_len;
	int64_t sent_date;
	int sent_tz;
	const unsigned char *token;	/* NULL: no stage row */
};

static void store(struct append_state *st, const struct store_args *a)
{
	struct cmd *c = st->c;
	struct session *s = c->s;
	const char *params[15] = {
		arena_printf(c->arena, "%lld", (long long)s->account_id),
		st->mailbox,
		arena_printf(c->arena, "%lld", (long long)s->tenant_id),
		(const char *)a->hash,
		arena_printf(c->arena, "%llu", (unsigned long long)a->size),
		a->data,
		a->envelope,
		a->bodystructure,
		a->body,
		a->parts,
		st->keywords,
		arena_printf(c->arena, "%u", st->bits),
		st->date,
		/* the written wall-clock time, zone dropped (sql/0004) */
		a->sent_date == INT64_MIN ? NULL
			: arena_printf(c->arena, "%lld", (long long)a->sent_date + (long long)a->sent_tz * 60),
		(const char *)a->token,
	};
	/* -1: a text parameter, NUL-terminated (lib/pg.h) */
	int lengths[15];
	for (size_t i = 0; i < ARRAY_SIZE(lengths); i++)
		lengths[i] = -1;
	lengths[3] = (int)a->hlen;
	lengths[5] = a->data != NULL ? (int)a->size : 0;
	lengths[9] = (int)a->parts_len;
	lengths[14] = STAGE_TOKEN_LEN;
	int binary[15] = { 0 };
	binary[3] = binary[5] = binary[9] = binary[14] = 1;
	/* The pool copies the parameters: a small message's buffer may go. */
	c->pg = pg_query(s->w->pg, store_sql, 15, params, lengths, binary, 0, appended_cb, st);
}

static void store_spooled(struct append_state *st)
{
	struct store_args a = {
		.hash = st->hash, .hlen = st->hlen, .size = st->size, .data = NULL,
		.envelope = st->envelope, .bodystructure = st->bodystructure, .body = st->body,
		.parts = st->parts, .parts_len = st->parts_len,
		.sent_date = st->sent_date, .sent_tz = st->sent_tz,
		.token = st->staged ? st->token : NULL,
	};
	store(st, &a);
}

static void spool_failed(struct cmd *c)
{
	/* RFC 5530: UNAVAILABLE, the failure is temporary. */
	cmd_no(c, "[UNAVAILABLE] Cannot take the message now (temporary spool failure), try again later");
}

/* pg_copy_source: the binary COPY stream of the stage row, the message
 * read back from the spool file.  pread(2) of a file that was just
 * written is served from the page cache: cheap enough for the loop
 * (lib/spool.h).  Never called after the request was cancelled, so the
 * session and its spool are alive. */
static ssize_t stage_source(void *arg, char *buf, size_t cap)
{
	struct append_state *st = arg;
	struct session *s = st->c->s;
	const uint64_t head = STAGE_HEAD_LEN, end_data = head + st->size, total = end_data + STAGE_TAIL_LEN;
	size_t n = 0;
	while (n < cap && st->copy_pos < total) {
		if (st->copy_pos < head) {
			size_t k = (size_t)MIN((uint64_t)(cap - n), head - st->copy_pos);
			memcpy(buf + n, st->head + st->copy_pos, k);
			n += k;
			st->copy_pos += k;
		} else if (st->copy_pos < end_data) {
			size_t k = (size_t)MIN((uint64_t)(cap - n), end_data - st->copy_pos);
			ssize_t r = spool_pread(s->spool, buf + n, k, st->copy_pos - head);
			if (r <= 0) {
				log_error(&s->log, "APPEND: reading the spool file back: %s",
					  r < 0 ? strerror(errno) : "file shorter than written");
				return -1;
			}
			n += (size_t)r;
			st->copy_pos += (uint64_t)r;
		} else {
			memset(buf + n, 0xff, 1);	/* trailer: int16 -1 */
			n++;
			st->copy_pos++;
		}
	}
	return (ssize_t)n;
}

static void staged_cb(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	struct append_state *st = arg;
	struct cmd *c = st->c;
	c->pg = NULL;
	if (err != NULL) {
		/* A failed COPY commits nothing; only one whose connection
		 * went after CopyDone may have left a row. */
		if (strcmp(err, "connection lost") == 0) {
			st->staged = true;
			stage_drop(st);
		}
		if (strcmp(err, "copy source failed") == 0)
			spool_failed(c);
		else
			cmd_unavailable(c, err);
		cmd_done(c);
		return;
	}
	st->staged = true;
	store_spooled(st);
}

static void put_be32(char *p, uint32_t v)
{
	v = htonl(v);
	memcpy(p, &v, 4);
}

/* Step 3: stream the bytes into a new stage row. */
static void stage_copy(struct append_state *st)
{
	struct cmd *c = st->c;
	struct session *s = c->s;
	if (RAND_bytes(st->token, STAGE_TOKEN_LEN) != 1) {
		cmd_unavailable(c, "no random bytes for the stage token");
		cmd_done(c);
		return;
	}
	char *h = st->head;
	uint64_t id = (uint64_t)s->account_id;
	memcpy(h, "PGCOPY\n\377\r\n\0", 11);
	put_be32(h + 11, 0);	/* flags: no OIDs */
	put_be32(h + 15, 0);	/* header extension length */
	h[19] = 0;
	h[20] = 3;		/* fields in the tuple */
	put_be32(h + 21, 8);	/* account_id: int8 */
	put_be32(h + 25, (uint32_t)(id >> 32));
	put_be32(h + 29, (uint32_t)id);
	put_be32(h + 33, STAGE_TOKEN_LEN);
	memcpy(h + 37, st->token, STAGE_TOKEN_LEN);
	/* data: max_append_size (at most 1 GiB) fits the int32 length */
	put_be32(h + 37 + STAGE_TOKEN_LEN, (uint32_t)st->size);
	st->copy_pos = 0;
	log_debug(&s->log, "APPEND: streaming %llu octets into the stage", (unsigned long long)st->size);
	c->pg = pg_copy_in(s->w->pg, "COPY append_stage (account_id, token, data) FROM STDIN (FORMAT binary)",
			   stage_source, staged_cb, st);
}

/* Step 2 answered: does the mailbox exist, is the blob known? */
static void checked_cb(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	struct append_state *st = arg;
	struct cmd *c = st->c;
	if (cmd_db_failed(c, err))
		return;
	bool mailbox = PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
	bool known = PQntuples(res) == 1 && PQgetvalue(res, 0, 1)[0] == 't';
	if (!mailbox) {
		/* RFC 3501 6.3.11; the store statement says so too if the
		 * mailbox goes away later. */
		cmd_no(c, "[TRYCREATE] No such mailbox");
		cmd_done(c);
		return;
	}
	if (known) {
		log_debug(&c->s->log, "APPEND: blob of %llu octets already stored, not sent again",
			  (unsigned long long)st->size);
		store_spooled(st);
	} else {
		stage_copy(st);
	}
}

/* Back on the loop with a spooled message parsed: keep the results (the
 * job goes after this) and ask step 2. */
static void spooled_parsed(struct append_state *st, struct parse_job *job)
{
	struct cmd *c = st->c;
	struct session *s = c->s;
	struct mime_result *mr = &job->mr;
	st->spooled = true;
	st->size = job->maplen;
	memcpy(st->hash, job->hash, sizeof(st->hash));
	st->hlen = job->hlen;
	st->envelope = mr->envelope ? arena_strdup(c->arena, mr->envelope) : NULL;
	st->bodystructure = mr->bodystructure ? arena_strdup(c->arena, mr->bodystructure) : NULL;
	st->body = mr->body ? arena_strdup(c->arena, mr->body) : NULL;
	st->parts_len = mr->parts.len;
	st->parts = arena_alloc(c->arena, st->parts_len + 1);
	memcpy(st->parts, buf_ptr(&mr->parts), st->parts_len);
	st->sent_date = mr->sent_date;
	st->sent_tz = mr->sent_tz;
	const char *params[4] = {
		arena_printf(c->arena, "%lld", (long long)s->account_id),
		st->mailbox,
		arena_printf(c->arena, "%lld", (long long)s->tenant_id),
		(const char *)st->hash,
	};
	int lengths[4] = { -1, -1, -1, (int)st->hlen };
	int binary[4] = { 0, 0, 0, 1 };
	c->pg = pg_query(s->w->pg,
		"SELECT EXISTS (SELECT 1 FROM mailbox WHERE account_id = $1 AND name = $2),"
		"       EXISTS (SELECT 1 FROM blob WHERE tenant_id = $3 AND hash = $4)",
		4, params, lengths, binary, 0, checked_cb, st);
}

/* Back on the loop: store (a small message) or go on with step 2. */
static void parse_done(void *arg)
{
	struct parse_job *job = arg;
	struct append_state *st = job->st;
	struct mime_result *mr = &job->mr;
	st->work = NULL;
	if (job->map != NULL) {
		spooled_parsed(st, job);
		return;
	}
	struct store_args a = {
		.hash = job->hash, .hlen = job->hlen, .size = job->data.len, .data = buf_ptr(&job->data),
		.envelope = mr->envelope, .bodystructure = mr->bodystructure, .body = mr->body,
		.parts = buf_ptr(&mr->parts), .parts_len = mr->parts.len,
		.sent_date = mr->sent_date, .sent_tz = mr->sent_tz, .token = NULL,
	};
	store(st, &a);
}

enum cmd_result cmd_append(struct cmd *c)
{
	struct session *s = c->s;
	const char *err = NULL;
	/* APPEND mailbox [flag-list] [date-time] literal */
	if (c->nargs < 2 || c->nargs > 4) {
		cmd_bad(c, "APPEND takes a mailbox, optional flags and date, and a message literal");
		return CMD_DONE;
	}
	const struct imap_arg *msg = &c->args[c->nargs - 1];
	if (msg->type != IMAP_ARG_LITERAL || !msg->streamed) {
		cmd_bad(c, "APPEND needs the message as a literal");
		return CMD_DONE;
	}
	struct str nm;
	if (!mailbox_arg(c, &c->args[0], 0, &nm))
		return CMD_DONE;
	char *mailbox = (char *)nm.p;
	unsigned bits = 0;
	struct buf kw = BUF_INIT;
	char *date = NULL;
	for (size_t i = 1; i + 1 < c->nargs; i++) {
		const struct imap_arg *a = &c->args[i];
		struct str t;
		if (a->type == IMAP_ARG_LIST && i == 1) {
			if (flags_parse(a->list, a->nlist, (size_t)s->w->cfg->max_keywords, &bits, &kw, &err) < 0) {
				buf_free(&kw);
				cmd_bad(c, "%s", err);
				return CMD_DONE;
			}
		} else if (a->type == IMAP_ARG_STRING && imap_arg_string(a, &t) && date == NULL) {
			date = parse_date_time(c->arena, t);
			if (date == NULL) {
				buf_free(&kw);
				cmd_bad(c, "Invalid date-time");
				return CMD_DONE;
			}
		} else {
			buf_free(&kw);
			cmd_bad(c, "Invalid APPEND arguments");
			return CMD_DONE;
		}
	}
	struct buf *data = &s->append;
	if (s->spool_errno != 0) {
		/* {N+} and no spool file could be made (logged then) */
		buf_free(&kw);
		spool_failed(c);
		return CMD_DONE;
	}
	uint64_t size = s->spool != NULL ? spool_size(s->spool) : data->len;
	if (size != msg->literal_size) {
		buf_free(&kw);
		cmd_bad(c, "Incomplete message literal");
		return CMD_DONE;
	}
	if (size == 0) {
		buf_free(&kw);
		cmd_no(c, "Refusing an empty message");
		return CMD_DONE;
	}
	const char *map = NULL;
	size_t maplen = 0;
	if (s->spool != NULL) {
		int before = spool_error(s->spool);
		if (spool_finish(s->spool) < 0) {
			if (before == 0)	/* else session.c logged it */
				log_error(&s->log, "APPEND: spool file in %s: %s failed: %s",
					  spool_dir(s->w->cfg->spool_dir), spool_error_op(s->spool),
					  strerror(spool_error(s->spool)));
			buf_free(&kw);
			spool_failed(c);
			return CMD_DONE;
		}
		/* The mapping outlives the spool (lib/spool.h): the job
		 * owns it and may outlive the session. */
		map = spool_map(s->spool, &maplen);
		if (map == NULL) {
			log_error(&s->log, "APPEND: cannot map the spool file: %s", strerror(errno));
			buf_free(&kw);
			spool_failed(c);
			return CMD_DONE;
		}
	}

	struct append_state *st = arena_zalloc(c->arena, sizeof(*st));
	st->c = c;
	st->mailbox = mailbox;
	st->bits = bits;
	st->date = date;
	struct buf kwa = BUF_INIT;
	keywords_sql_array(buf_ptr(&kw), &kwa);
	buf_free(&kw);
	st->keywords = arena_strndup(c->arena, buf_ptr(&kwa), kwa.len);
	buf_free(&kwa);
	c->state = st;
	c->on_abort = append_abort;

	/* Hashing and parsing a message of up to max_append_size would stall
	 * every session of the worker: they run on the work pool. */
	struct parse_job *job = xcalloc(1, sizeof(*job));
	if (map != NULL) {
		job->map = map;
		job->maplen = maplen;
	} else {
		job->data = *data;	/* the buffer moves to the job */
		memset(data, 0, sizeof(*data));
	}
	arena_init(&job->arena, 16384);
	job->st = st;
	st->job = job;
	st->work = workpool_submit(auth_workpool(s->w->auth), parse_run, parse_done, parse_release, job);
	return CMD_PENDING;
}
