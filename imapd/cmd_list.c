/* LIST and LSUB (RFC 3501 6.3.8, 6.3.9), with the CHILDREN attributes
 * (RFC 3348) and the special-use attributes (RFC 6154).
 *
 * Reference and pattern.  Each argument is decoded from modified UTF-7 on
 * its own (so "&ZeVn-" + "*" works; joining the wire forms could make a
 * null shift), and the pattern is interpreted as reference + pattern, the
 * "canonical form" RFC 3501 suggests for servers without break-out
 * characters.  An empty pattern asks for the delimiter and the root:
 * `* LIST (\Noselect) "/" ""` (the namespace is not rooted).  Extended LIST
 * (RFC 5258 selection and return options) is not offered: BAD.
 *
 * What LIST shows.  Every mailbox whose name matches, with \HasChildren or
 * \HasNoChildren and its special-use attribute if any, and every missing
 * level of hierarchy above an existing mailbox ("a" and "a/b" when only
 * "a/b/c" exists) whose name matches, as \Noselect \HasChildren: with "%"
 * that gives the RFC's "matching levels of hierarchy are also returned",
 * and with "*" a client gets the whole tree.  INBOX is matched
 * case-insensitively ("inbox", "in%" and "*box" list INBOX) and always
 * listed as "INBOX".  Order: INBOX and its subtree first, then the others,
 * each parent right before its children.
 *
 * LSUB shows the subscribed names that match: () for existing mailboxes,
 * (\Noselect) for names whose mailbox does not exist (any more).  An
 * unsubscribed level above a subscribed name is listed, with \Noselect,
 * when it matches the pattern and some subscribed name below it does not
 * (6.3.9: LSUB "" "%" with only "foo/bar" subscribed answers foo).
 *
 * Cost.  One query reads the account's names (bounded by max_mailboxes;
 * narrowed by the pattern's literal prefix when it has one), sorted here
 * in hierarchy order.  The walk feeds each octet of the name tree to the
 * pattern matcher once (a child resumes from its parent's state; a subtree
 * no name of which can match is skipped), so an account with deep
 * hierarchies or a pattern made of many wildcards costs at most
 * O(octets * pattern/64), never backtracking.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imapd/imapd.h"
#include "imapd/mailbox.h"
#include "lib/mutf7.h"
#include "lib/pg.h"

struct entry {
	struct str name;	/* first: mailbox_cmp compares struct str */
	const char *special;	/* RFC 6154 attribute or NULL */
	bool exists;		/* a mailbox row */
};

struct list_state {
	struct cmd *c;
	bool lsub;
	const char *verb;	/* "LIST" / "LSUB" */
	struct mailbox_pattern *pat;
};

/* One level of the current path: the prefix of the last name walked. */
struct level {
	size_t len;		/* prefix length in octets */
	uint64_t *st;		/* matcher state after the prefix */
	long result;		/* LSUB: index of the \Noselect candidate, or -1 */
};

/* LSUB answers are decided only once the names below are seen. */
struct result {
	struct str name;
	bool noselect;
	bool emit;
};

static void write_line(struct session *s, struct buf *line, const char *verb, const char *attrs,
		       struct str name)
{
	buf_clear(line);
	buf_printf(line, "* %s (%s) \"/\" ", verb, attrs);
	mailbox_write_name(line, name);
	buf_puts(line, "\r\n");
	session_write(s, buf_ptr(line), line->len);
}

static size_t components(struct str n)
{
	size_t k = 1;
	for (size_t i = 0; i < n.len; i++)
		k += n.p[i] == MAILBOX_SEP;
	return k;
}

static void walk(struct list_state *ls, struct entry *e, size_t ne)
{
	struct cmd *c = ls->c;
	struct session *s = c->s;
	struct mailbox_pattern *pat = ls->pat;
	size_t words = mailbox_pattern_words(pat);

	qsort(e, ne, sizeof(*e), mailbox_cmp);
	size_t maxk = 0;
	for (size_t i = 0; i < ne; i++)
		maxk = MAX(maxk, components(e[i].name));
	struct level *lv = arena_alloc(c->arena, (maxk + 1) * sizeof(*lv));
	for (size_t k = 0; k <= maxk; k++) {
		lv[k].st = arena_alloc(c->arena, words * sizeof(uint64_t));
		lv[k].result = -1;
		lv[k].len = 0;
	}
	mailbox_pattern_start(pat, lv[0].st);

	struct result *res = NULL;
	size_t nres = 0, capres = 0;
	struct buf line = BUF_INIT;
	struct str cur = { "", 0 };	/* the name whose prefixes lv[1..depth] are */
	size_t depth = 0;

	for (size_t i = 0; i < ne && !s->dead; i++) {
		struct str n = e[i].name;
		size_t fold = mailbox_in_inbox_tree(n) ? 5 : 0;
		/* Keep the levels that are also prefixes of this name. */
		size_t m = 0;
		while (m < depth) {
			size_t l = lv[m + 1].len;
			if (l > n.len || memcmp(n.p, cur.p, l) != 0 || (l < n.len && n.p[l] != MAILBOX_SEP))
				break;
			m++;
		}
		if (m > 0 && lv[m].len == n.len)
			continue;	/* a duplicate name: cannot happen */
		/* Walk the remaining levels down to the name itself. */
		size_t k = m;
		size_t pos = lv[m].len;
		while (pos < n.len || k == m) {
			size_t end = pos + (k > 0 ? 1 : 0);
			while (end < n.len && n.p[end] != MAILBOX_SEP)
				end++;
			struct level *up = &lv[k], *l = &lv[k + 1];
			memcpy(l->st, up->st, words * sizeof(uint64_t));
			if (mailbox_pattern_alive(pat, l->st))
				mailbox_pattern_feed(pat, l->st, n.p + pos, end - pos, pos, fold);
			l->len = end;
			l->result = -1;
			k++;
			pos = end;
			bool last = end == n.len;
			bool hit = mailbox_pattern_accepts(pat, l->st);
			struct str name = str_make(n.p, end);
			if (!ls->lsub && hit) {
				if (!last) {
					write_line(s, &line, ls->verb, "\\Noselect \\HasChildren", name);
				} else {
					bool children = i + 1 < ne && mailbox_is_below(e[i + 1].name, n);
					char attrs[64];
					snprintf(attrs, sizeof(attrs), "%s%s%s", e[i].special ? e[i].special : "",
						 e[i].special ? " " : "",
						 children ? "\\HasChildren" : "\\HasNoChildren");
					write_line(s, &line, ls->verb, attrs, name);
				}
			} else if (ls->lsub && hit) {
				if (nres == capres) {
					capres = capres ? capres * 2 : 64;
					res = xrealloc(res, capres * sizeof(*res));
				}
				res[nres] = (struct result){ name, !last || !e[i].exists, last };
				if (!last)
					l->result = (long)nres;
				nres++;
			}
			if (last)
				break;
		}
		if (ls->lsub && !mailbox_pattern_accepts(pat, lv[k].st)) {
			/* A subscribed name the pattern does not reach: the
			 * matching levels above it stand in for it. */
			for (size_t j = 1; j < k; j++)
				if (lv[j].result >= 0)
					res[lv[j].result].emit = true;
		}
		cur = n;
		depth = k;
	}
	for (size_t i = 0; i < nres && !s->dead; i++)
		if (res[i].emit)
			write_line(s, &line, ls->verb, res[i].noselect ? "\\Noselect" : "", res[i].name);
	free(res);
	buf_free(&line);
}

static void listed(void *arg, PGresult *r, const char *err, const char *sqlstate)
{
	struct list_state *ls = arg;
	struct cmd *c = ls->c;
	struct session *s = c->s;
	session_ref(s);
	c->pg = NULL;
	if (err != NULL) {
		cmd_unavailable(c, err);
	} else {
		size_t ne = (size_t)PQntuples(r);
		struct entry *e = arena_alloc(c->arena, (ne ? ne : 1) * sizeof(*e));
		for (size_t i = 0; i < ne; i++) {
			e[i].name = str_make(arena_strndup(c->arena, PQgetvalue(r, (int)i, 0),
							   (size_t)PQgetlength(r, (int)i, 0)),
					     (size_t)PQgetlength(r, (int)i, 0));
			if (ls->lsub) {
				e[i].special = NULL;
				e[i].exists = strcmp(PQgetvalue(r, (int)i, 1), "t") == 0;
			} else {
				e[i].special = PQgetisnull(r, (int)i, 1) ? NULL
					       : arena_strdup(c->arena, PQgetvalue(r, (int)i, 1));
				e[i].exists = true;
			}
		}
		walk(ls, e, ne);
		cmd_ok(c, "%s completed", ls->lsub ? "Lsub" : "List");
	}
	cmd_done(c);
	session_unref(s);
}

/* The literal prefix every matching name starts with, for the query; INBOX
 * spelled as stored, or no prefix when case folding makes it uncertain. */
static char *literal_prefix(struct arena *a, struct str pattern)
{
	size_t n = 0;
	while (n < pattern.len && pattern.p[n] != '*' && pattern.p[n] != '%')
		n++;
	char *p = arena_strndup(a, pattern.p, n);
	size_t cmp = MIN(n, (size_t)5);
	if (cmp == 0 || strncasecmp(p, "INBOX", cmp) != 0 || memcmp(p, "INBOX", cmp) == 0)
		return p;
	/* "in*" matches INBOX and "in..." names; "inbox*" INBOX and
	 * "inboxes": no common prefix.  "inbox/..." exists only as
	 * "INBOX/...". */
	if (n > 5 && p[5] == MAILBOX_SEP) {
		memcpy(p, "INBOX", 5);
		return p;
	}
	return n > 5 ? p : arena_strdup(a, "");
}

static enum cmd_result list_common(struct cmd *c, bool lsub)
{
	struct session *s = c->s;
	const char *verb = lsub ? "LSUB" : "LIST";
	if (c->nargs > 0 && c->args[0].type == IMAP_ARG_LIST) {
		cmd_bad(c, "%s selection options (RFC 5258) are not supported", verb);
		return CMD_DONE;
	}
	struct str ref, pat;
	if (c->nargs != 2 || !imap_arg_astring(&c->args[0], &ref) || !imap_arg_astring(&c->args[1], &pat)) {
		cmd_bad(c, "%s takes a reference name and a mailbox pattern", verb);
		return CMD_DONE;
	}
	struct buf b = BUF_INIT;
	const char *why;
	if (mutf7_decode(ref, &b, &why) != 0 || mutf7_decode(pat, &b, &why) != 0) {
		buf_free(&b);
		cmd_bad(c, "Invalid modified UTF-7 in %s arguments: %s", verb, why);
		return CMD_DONE;
	}
	struct str full = str_make(arena_strndup(c->arena, buf_ptr(&b), b.len), b.len);
	buf_free(&b);

	if (pat.len == 0) {
		/* RFC 3501 6.3.8: the delimiter and the (empty) root. */
		session_printf(s, "* %s (\\Noselect) \"/\" \"\"\r\n", verb);
		cmd_ok(c, "%s completed", lsub ? "Lsub" : "List");
		return CMD_DONE;
	}

	struct list_state *ls = arena_zalloc(c->arena, sizeof(*ls));
	ls->c = c;
	ls->lsub = lsub;
	ls->verb = verb;
	ls->pat = mailbox_pattern_new(c->arena, full, (size_t)s->w->cfg->max_mailbox_name);
	const char *params[2] = {
		arena_printf(c->arena, "%lld", (long long)s->account_id),
		literal_prefix(c->arena, full),
	};
	if (lsub)
		c->pg = pg_query(s->w->pg,
				 "SELECT s.name, m.id IS NOT NULL FROM subscription s"
				 "  LEFT JOIN mailbox m ON m.account_id = s.account_id AND m.name = s.name"
				 " WHERE s.account_id = $1::bigint AND starts_with(s.name, $2::text)",
				 2, params, NULL, NULL, 0, listed, ls);
	else
		c->pg = pg_query(s->w->pg,
				 "SELECT name, special_use FROM mailbox"
				 " WHERE account_id = $1::bigint AND starts_with(name, $2::text)",
				 2, params, NULL, NULL, 0, listed, ls);
	return CMD_PENDING;
}

enum cmd_result cmd_list(struct cmd *c)
{
	return list_common(c, false);
}

enum cmd_result cmd_lsub(struct cmd *c)
{
	return list_common(c, true);
}
