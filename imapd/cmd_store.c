/* STORE and UID STORE (RFC 3501 6.4.6) with the UNCHANGEDSINCE modifier
 * (RFC 7162 3.1.3).
 *
 * One call of store_flags() (sql/0007_store.sql) per command: it locks the
 * mailbox row, then decides every message on a snapshot taken with the
 * lock held, takes one new modseq from the mailbox counter only if some
 * message really changes (DESIGN.md invariant 1, RFC 7162 3.1.11), gives
 * it to the messages it changes, and returns every message of the set with
 * its status (changed, unchanged, failed UNCHANGEDSINCE).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imapd/mailbox.h"
#include "imapd/mailview.h"
#include "lib/pg.h"

enum store_mode { STORE_SET, STORE_ADD, STORE_REMOVE };

struct store_state {
	struct cmd *c;
	bool silent;
	bool conditional;
	char *modified;		/* MODIFIED set, or NULL */
};

static void store_reply(struct cmd *c)
{
	struct store_state *st = c->state;
	if (st->modified != NULL)
		cmd_ok(c, "[MODIFIED %s] Conditional STORE failed", st->modified);
	else
		cmd_ok(c, "%sStore completed", c->uid ? "UID " : "");
}

static void stored_cb(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	struct store_state *st = arg;
	struct cmd *c = st->c;
	struct session *s = c->s;
	struct selected *sel = s->sel;
	session_ref(s);
	if (cmd_db_failed(c, err)) {
		session_unref(s);
		return;
	}
	int n = PQntuples(res);
	uint64_t written = 0;
	for (int i = 0; i < n; i++) {
		uint64_t modseq = pg_u64(res, i, 3);
		if (pg_u64(res, i, 4) == 1)
			written = modseq;
		else if (modseq > sel->known_modseq)
			sel->dirty = true;	/* a change we have not synced: sync before the OK */
	}
	if (written != 0) {
		sel_wrote(sel, written);
		mailbox_notify_kind(s, sel->mailbox_id, written, "flags");
	}
	/* Another session's change may sit in a row we changed: the sync
	 * skips rows with our own modseq, so .SILENT must still tell the
	 * flags then (RFC 3501 6.4.6 allows FETCH for outside changes). */
	bool untold = sel->dirty;
	struct buf line = BUF_INIT, out = BUF_INIT;
	uint32_t *failed = NULL;
	size_t nfailed = 0;
	for (int i = 0; i < n; i++) {
		uint32_t uid = (uint32_t)pg_u64(res, i, 0);
		unsigned status = (unsigned)pg_u64(res, i, 4);
		uint64_t modseq = pg_u64(res, i, 3);
		uint32_t seq = uidset_seq(&sel->uids, uid);
		if (seq == 0)
			continue;
		buf_clear(&line);
		flags_write(&line, (unsigned)pg_u64(res, i, 1), PQgetvalue(res, i, 2), sel_recent(sel, uid));
		if (status == 2) {
			/* RFC 7162 3.1.3: MODIFIED lists it; the current flags
			 * and modseq save the client a round trip (example 10). */
			if (failed == NULL)
				failed = arena_alloc(c->arena, (size_t)n * sizeof(uint32_t));
			failed[nfailed++] = c->uid ? uid : seq;
			sel_fetch_format(c, &out, seq, uid, buf_ptr(&line), modseq, c->uid);
			continue;
		}
		if (!st->silent || (status == 1 && untold)) {
			sel_fetch_format(c, &out, seq, uid, buf_ptr(&line), modseq, c->uid);
		} else if (st->conditional || (status == 1 && sess_condstore(s))) {
			/* RFC 7162 3.1.3: even with .SILENT the client learns
			 * the new modseq (and 3.2.4: with the UID). */
			sel_fetch_format(c, &out, seq, uid, NULL, modseq, c->uid);
		}
	}
	buf_free(&line);
	/* Before anything the sync in sel_complete() may tell: a message
	 * changed again after us then shows its newer state last.  Modseqs
	 * of different messages need not come in order (RFC 7162 6). */
	session_write(s, buf_ptr(&out), out.len);
	buf_free(&out);
	if (nfailed > 0) {
		struct buf b = BUF_INIT;
		seqset_write_array(&b, failed, nfailed);
		st->modified = arena_strndup(c->arena, buf_ptr(&b), b.len);
		buf_free(&b);
	}
	/* A sequence-number STORE may not be followed by EXPUNGE responses
	 * (RFC 3501 7.4.1, RFC 7162 3.2.10.2); UID STORE may. */
	if (sel_complete(c, c->uid, store_reply) == CMD_DONE)
		cmd_done(c);
	session_unref(s);
}

enum cmd_result cmd_store(struct cmd *c)
{
	struct session *s = c->s;
	const struct imap_arg *args = c->args;
	size_t nargs = c->nargs;
	uint64_t unchangedsince = 0;
	bool conditional = false;
	if (nargs >= 2 && args[1].type == IMAP_ARG_LIST) {
		/* RFC 4466 2.5 store modifiers; RFC 7162 3.1.3 UNCHANGEDSINCE. */
		const struct imap_arg *m;
		size_t mn;
		imap_arg_list(&args[1], &m, &mn);
		if (mn != 2 || !imap_arg_is_atom(&m[0], "UNCHANGEDSINCE") ||
		    !imap_arg_number64(&m[1], &unchangedsince)) {
			cmd_bad(c, "Invalid STORE modifier");
			return CMD_DONE;
		}
		conditional = true;
		args++;
		nargs--;
	}
	if (nargs < 3) {
		cmd_bad(c, "STORE takes a message set, an item and flags");
		return CMD_DONE;
	}
	struct str item;
	if (!imap_arg_atom(&args[1], &item)) {
		cmd_bad(c, "Invalid STORE item");
		return CMD_DONE;
	}
	enum store_mode mode;
	bool silent = false;
	struct str base = item;
	if (base.len > 7 && str_ieq(str_make(base.p + base.len - 7, 7), ".SILENT")) {
		silent = true;
		base.len -= 7;
	}
	if (str_ieq(base, "FLAGS"))
		mode = STORE_SET;
	else if (str_ieq(base, "+FLAGS"))
		mode = STORE_ADD;
	else if (str_ieq(base, "-FLAGS"))
		mode = STORE_REMOVE;
	else {
		cmd_bad(c, "Invalid STORE item, want FLAGS, +FLAGS or -FLAGS");
		return CMD_DONE;
	}
	const struct imap_arg *fl = &args[2];
	size_t nfl = nargs - 2;
	if (nfl == 1 && fl->type == IMAP_ARG_LIST) {
		nfl = fl->nlist;
		fl = fl->list;
	} else if (args[2].type == IMAP_ARG_LIST) {
		cmd_bad(c, "Invalid flag list");
		return CMD_DONE;
	}
	unsigned bits;
	struct buf kw = BUF_INIT;
	const char *err = NULL;
	if (flags_parse(fl, nfl, (size_t)s->w->cfg->max_keywords, &bits, &kw, &err) < 0) {
		buf_free(&kw);
		cmd_bad(c, "%s", err);
		return CMD_DONE;
	}
	struct uid_ranges r;
	if (sel_resolve(s, &c->args[0], c->uid, c->arena, &r, &err) < 0) {
		buf_free(&kw);
		cmd_bad(c, "%s", err);
		return CMD_DONE;
	}
	if (s->sel->readonly) {
		buf_free(&kw);
		cmd_no(c, "[READ-ONLY] Mailbox is read-only");
		return CMD_DONE;
	}
	/* RFC 7162 3.1: UNCHANGEDSINCE is a CONDSTORE enabling command. */
	if (conditional)
		condstore_enable(c);
	struct store_state *st = arena_zalloc(c->arena, sizeof(*st));
	st->c = c;
	st->silent = silent;
	st->conditional = conditional;
	c->state = st;
	if (r.n == 0) {
		buf_free(&kw);
		return sel_complete(c, c->uid, store_reply);
	}
	struct buf arr = BUF_INIT;
	keywords_sql_array(buf_ptr(&kw), &arr);
	char *lo, *hi, *min, *max;
	uid_ranges_sql(&r, c->arena, &lo, &hi);
	uid_ranges_bounds(&r, c->arena, &min, &max);
	const char *params[10] = {
		arena_printf(c->arena, "%lld", (long long)s->account_id),
		arena_printf(c->arena, "%lld", (long long)s->sel->mailbox_id),
		lo, hi, min, max,
		mode == STORE_SET ? "0" : mode == STORE_ADD ? "1" : "2",
		arena_printf(c->arena, "%u", bits),
		arena_strndup(c->arena, buf_ptr(&arr), arr.len),
		conditional ? arena_printf(c->arena, "%llu", (unsigned long long)unchangedsince) : NULL,
	};
	buf_free(&arr);
	buf_free(&kw);
	c->pg = pg_query(s->w->pg,
			 "SELECT uid, flags, keywords, modseq, status"
			 "  FROM store_flags($1, $2, $3::bigint[], $4::bigint[], $5, $6, $7, $8, $9::text[], $10)",
			 10, params, NULL, NULL, 0, stored_cb, st);
	return CMD_PENDING;
}
