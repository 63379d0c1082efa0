/* APPEND (RFC 3501 6.3.11) with APPENDUID (RFC 4315).
 *
 * The message literal is refused before a byte of it is read when it is
 * larger than max_append_size (NO [TOOBIG] for a synchronizing literal; a
 * non-synchronizing one over the limit ends the connection).  The bytes are
 * parsed once (lib/mime.c), stored once per tenant by SHA-256, and the
 * message takes its UID and modseq from the mailbox counter in the same
 * statement (DESIGN.md invariant 1): nothing half-written is possible.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imapd/mailbox.h"
#include "imapd/mailview.h"
#include "lib/mime.h"
#include "lib/pg.h"
#include "lib/workpool.h"

struct append_state {
	struct cmd *c;
	char *mailbox;
	char *ok;	/* the tagged OK text, with APPENDUID */
	unsigned bits;
	char *keywords;	/* PostgreSQL array literal */
	char *date;	/* ISO internal date or NULL */
	struct parse_job *job;
	struct work *work;	/* the parse job while it runs */
};

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

static void appended_cb(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	struct append_state *st = arg;
	struct cmd *c = st->c;
	struct session *s = c->s;
	session_ref(s);
	c->pg = NULL;
	if (err != NULL) {
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
	mailbox_notify(s, mailbox_id, pg_u64(res, 0, 3));
	st->ok = arena_printf(c->arena, "[APPENDUID %u %u] Append completed", uidvalidity, uid);
	if (s->sel != NULL && s->sel->mailbox_id == mailbox_id) {
		sel_sync(c, after_sync);
	} else {
		cmd_ok(c, "%s", st->ok);
		cmd_done(c);
	}
	session_unref(s);
}

/* Off the loop: SHA-256 and the MIME parse of the message. */
struct parse_job {
	struct buf data;
	struct arena arena;	/* mime results */
	struct mime_result mr;
	unsigned char hash[32];
	unsigned hlen;
	struct append_state *st;	/* loop thread only; NULL once cancelled */
};

static void parse_run(void *arg)
{
	struct parse_job *job = arg;
	EVP_Digest(buf_ptr(&job->data), job->data.len, job->hash, &job->hlen, EVP_sha256(), NULL);
	struct mime_limits lim = { .max_depth = 50, .max_parts = 10000, .max_header_bytes = 1 << 20 };
	mime_parse(buf_ptr(&job->data), job->data.len, &lim, &job->arena, &job->mr);
}

static void parse_release(void *arg)
{
	struct parse_job *job = arg;
	buf_free(&job->data);
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
}

/* Back on the loop: one statement stores blob and message. */
static void parse_done(void *arg)
{
	struct parse_job *job = arg;
	struct append_state *st = job->st;
	struct cmd *c = st->c;
	struct session *s = c->s;
	struct mime_result *mr = &job->mr;
	st->work = NULL;
	const char *params[14] = {
		arena_printf(c->arena, "%lld", (long long)s->account_id),
		st->mailbox,
		arena_printf(c->arena, "%lld", (long long)s->tenant_id),
		(const char *)job->hash,
		arena_printf(c->arena, "%zu", job->data.len),
		buf_ptr(&job->data),
		mr->envelope,
		mr->bodystructure,
		mr->body,
		buf_ptr(&mr->parts),
		st->keywords,
		arena_printf(c->arena, "%u", st->bits),
		st->date,
		/* the written wall-clock time, zone dropped (sql/0004) */
		mr->sent_date == INT64_MIN ? NULL
			: arena_printf(c->arena, "%lld", (long long)mr->sent_date + (long long)mr->sent_tz * 60),
	};
	/* -1: a text parameter, NUL-terminated (lib/pg.h) */
	int lengths[14];
	for (size_t i = 0; i < ARRAY_SIZE(lengths); i++)
		lengths[i] = -1;
	lengths[3] = (int)job->hlen;
	lengths[5] = (int)job->data.len;
	lengths[9] = (int)mr->parts.len;
	int binary[14] = { 0 };
	binary[3] = binary[5] = binary[9] = 1;
	/* The pool copies the parameters; the job is released after this. */
	c->pg = pg_query(s->w->pg,
		"WITH mb AS ("
		"  UPDATE mailbox SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1,"
		"         keywords = keywords || ARRAY(SELECT k FROM unnest($11::text[]) k"
		"                                       WHERE k <> ALL (mailbox.keywords))"
		"   WHERE account_id = $1 AND name = $2"
		"  RETURNING id, uidnext - 1 AS uid, highestmodseq, uidvalidity), "
		"b AS ("
		"  INSERT INTO blob (tenant_id, hash, size, data, envelope, bodystructure, body, parts,"
		"                    sent_date)"
		"  SELECT $3, $4, $5, $6, $7, $8, $9, $10, to_timestamp($14::bigint)"
		"   WHERE EXISTS (SELECT 1 FROM mb)"
		"  ON CONFLICT (tenant_id, hash) DO NOTHING), "
		"m AS ("
		"  INSERT INTO message (account_id, mailbox_id, uid, modseq, flags, keywords,"
		"                       internaldate, size, blob_hash, tenant_id)"
		"  SELECT $1, mb.id, mb.uid, mb.highestmodseq, $12::int, $11::text[],"
		"         coalesce($13::timestamptz, now()), $5, $4, $3 FROM mb"
		"  RETURNING uid) "
		"SELECT mb.uidvalidity, mb.uid, mb.id, mb.highestmodseq FROM mb",
		14, params, lengths, binary, 0, appended_cb, st);
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
	if (data->len != msg->literal_size) {
		buf_free(&kw);
		cmd_bad(c, "Incomplete message literal");
		return CMD_DONE;
	}
	if (data->len == 0) {
		buf_free(&kw);
		cmd_no(c, "Refusing an empty message");
		return CMD_DONE;
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
	job->data = *data;	/* the buffer moves to the job */
	memset(data, 0, sizeof(*data));
	arena_init(&job->arena, 16384);
	job->st = st;
	st->job = job;
	st->work = workpool_submit(auth_workpool(s->w->auth), parse_run, parse_done, parse_release, job);
	return CMD_PENDING;
}
