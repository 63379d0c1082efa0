/* parser.c - resumable IMAP command parser; the contract is in parser.h. */
#include "imapd/parser.h"

#include <stdlib.h>
#include <string.h>

enum pstate {
	S_TAG,			/* reading the tag */
	S_ARG_START,		/* before a token, ")", SP or the line end */
	S_AFTER_TOKEN,		/* after a token: SP, ")" or the line end */
	S_ATOM,
	S_TILDE,		/* "~": literal8 if "{" follows, else an atom */
	S_QUOTED,
	S_LIT_DIGITS,		/* after "{" */
	S_LIT_PLUS,		/* after "{N+" */
	S_LIT_EOL,		/* after "}" */
	S_LIT_LF,		/* after "}" CR */
	S_LIT_DATA,		/* buffered literal octets */
	S_LIT_STREAM,		/* streamed literal octets */
	S_EOL_LF,		/* after the CR ending a line */
	S_SKIP,			/* skipping a bad line up to its LF */
	S_DEAD,			/* after FATAL */
};

/* While a bad line is skipped we still watch its tail: a line ending in
 * "{N+}" announces octets that are already on their way, and parsing them
 * as commands would let literal data (say, a message body) issue commands.
 * STYLE.md "Literals", RFC 7888 section 4. */
enum skip_tail {
	SK_NONE,
	SK_BRACE,		/* "{" and digits */
	SK_PLUS,		/* "{N+" */
	SK_NS,			/* "{N+}" */
	SK_NS_CR,		/* "{N+}" CR */
};

static const struct str empty_str = { "", 0 };

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/* RFC 3501 ATOM-CHAR plus "]" (ASTRING-CHAR), list-wildcards and, being
 * lenient, 8-bit octets.  "[" is an ATOM-CHAR too but opens a section. */
static bool is_atom_char(unsigned char c)
{
	if (c <= 0x20 || c == 0x7f)
		return false;
	switch (c) {
	case '(': case ')': case '{': case '"': case '\\':
		return false;
	default:
		return true;
	}
}

/* tag = 1*<any ASTRING-CHAR except "+"> (RFC 3501 section 9); ASCII only
 * since the tag is echoed back verbatim. */
static bool is_tag_char(unsigned char c)
{
	return c < 0x80 && is_atom_char(c) && c != '%' && c != '*' && c != '+';
}

static void begin_command(struct imap_parser *p)
{
	p->state = S_TAG;
	p->finished = false;
	buf_clear(&p->tok);
	p->tok_partial = false;
	p->nstack = 0;
	p->depth = 0;
	p->line_len = 0;
	p->nargs_total = 0;
	p->literal_total = 0;
	p->sect_depth = 0;
	p->sect_quote = p->sect_esc = false;
	p->quote_esc = false;
	p->lit_buf = NULL;
	p->skip = SK_NONE;
	p->cmd.tag = empty_str;
	p->cmd.args = NULL;
	p->cmd.nargs = 0;
	p->error = NULL;
	p->chunk = empty_str;
}

void imap_parser_init(struct imap_parser *p, const struct imap_parser_limits *lim,
		struct arena *cmd_arena)
{
	memset(p, 0, sizeof(*p));
	p->lim = *lim;
	p->arena = cmd_arena;
	begin_command(p);
}

void imap_parser_set_literal_hook(struct imap_parser *p, imap_literal_hook hook, void *ctx)
{
	p->hook = hook;
	p->hook_ctx = ctx;
}

void imap_parser_reset(struct imap_parser *p)
{
	if (!p->fatal)
		begin_command(p);
}

void imap_parser_free(struct imap_parser *p)
{
	buf_free(&p->tok);
	free(p->stack);
	free(p->levels);
	p->stack = NULL;
	p->levels = NULL;
	p->nstack = p->capstack = 0;
	p->depth = p->caplevels = 0;
}

size_t imap_parser_scratch_size(const struct imap_parser *p)
{
	return p->tok.cap + p->capstack * sizeof(*p->stack) +
		p->caplevels * sizeof(*p->levels);
}

/* --- token and argument bookkeeping --- */

/* Keep the first part of a token that runs past the end of the input. */
static void token_save(struct imap_parser *p, const char *s, size_t n)
{
	buf_append(&p->tok, s, n);
	p->tok_partial = true;
}

/* The token's last part is s[0..n): copy the whole token into the arena,
 * straight from the input when it did not span feeds. */
static struct str token_finish(struct imap_parser *p, const char *s, size_t n)
{
	char *d;

	if (p->tok_partial) {
		buf_append(&p->tok, s, n);
		n = p->tok.len;
		d = arena_strndup(p->arena, buf_ptr(&p->tok), n);
		buf_clear(&p->tok);
		p->tok_partial = false;
	} else {
		d = arena_strndup(p->arena, s, n);
	}
	return str_make(d, n);
}

/* Push a new arg; the caller checked max_args. */
static struct imap_arg *push_arg(struct imap_parser *p, enum imap_arg_type type)
{
	if (p->nstack == p->capstack) {
		size_t cap = p->capstack ? p->capstack * 2 : 8;
		if (cap > p->lim.max_args)
			cap = p->lim.max_args;
		p->stack = xrealloc(p->stack, cap * sizeof(*p->stack));
		p->capstack = cap;
	}
	struct imap_arg *a = &p->stack[p->nstack++];
	memset(a, 0, sizeof(*a));
	a->type = type;
	a->str = empty_str;
	p->nargs_total++;
	return a;
}

/* Top-level args: those below the first open list's children. */
static size_t top_count(const struct imap_parser *p)
{
	return p->depth > 0 ? p->levels[0] : p->nstack;
}

static struct imap_arg *copy_args(struct imap_parser *p, const struct imap_arg *a, size_t n)
{
	if (n == 0)
		return NULL;
	struct imap_arg *d = arena_alloc(p->arena, n * sizeof(*d));
	memcpy(d, a, n * sizeof(*d));
	return d;
}

/* Give the caller what was read of a failed command. */
static void snapshot_args(struct imap_parser *p)
{
	size_t n = top_count(p);
	p->cmd.args = copy_args(p, p->stack, n);
	p->cmd.nargs = n;
}

static void open_list(struct imap_parser *p)
{
	push_arg(p, IMAP_ARG_LIST);
	if (p->depth == p->caplevels) {
		size_t cap = p->caplevels ? p->caplevels * 2 : 4;
		if (cap > p->lim.max_nesting)
			cap = p->lim.max_nesting;
		p->levels = xrealloc(p->levels, cap * sizeof(*p->levels));
		p->caplevels = cap;
	}
	p->levels[p->depth++] = p->nstack;
}

static void close_list(struct imap_parser *p)
{
	size_t start = p->levels[--p->depth];
	struct imap_arg *list = &p->stack[start - 1];

	list->nlist = p->nstack - start;
	list->list = copy_args(p, &p->stack[start], list->nlist);
	p->nstack = start;
}

/* --- results --- */

static void fail(struct imap_parser *p, const char *msg)
{
	p->error = msg;
	/* The octet that failed is not consumed: the skipper sees it.  Carry
	 * over what the tail matcher would have seen of a literal header. */
	switch (p->state) {
	case S_LIT_DIGITS:
		p->skip = SK_BRACE;
		break;
	case S_LIT_PLUS:
		p->skip = SK_PLUS;
		break;
	case S_LIT_EOL:
		p->skip = p->lit_nonsync ? SK_NS : SK_NONE;
		break;
	case S_LIT_LF:
		p->skip = p->lit_nonsync ? SK_NS_CR : SK_NONE;
		break;
	default:
		p->skip = SK_NONE;
		break;
	}
	p->state = S_SKIP;
	buf_clear(&p->tok);
	p->tok_partial = false;
}

static enum imap_parse_result finish_error(struct imap_parser *p, const char *msg)
{
	p->error = msg;
	snapshot_args(p);
	p->finished = true;
	return IMAP_PARSE_ERROR;
}

static enum imap_parse_result fatal(struct imap_parser *p, const char *msg)
{
	p->error = msg;
	snapshot_args(p);
	p->fatal = true;
	p->state = S_DEAD;
	return IMAP_PARSE_FATAL;
}

/* The LF of a line outside any literal header was consumed. */
static enum imap_parse_result end_line(struct imap_parser *p)
{
	if (p->nstack == 0)
		return finish_error(p, "Missing command");
	if (p->depth > 0)
		return finish_error(p, "Missing ')'");
	p->cmd.args = copy_args(p, p->stack, p->nstack);
	p->cmd.nargs = p->nstack;
	p->finished = true;
	return IMAP_PARSE_DONE;
}

/* The LF after "{N}" or "{N+}" was consumed: decide what to do with the
 * N octets (before sending "+", STYLE.md "Literals"). */
static enum imap_parse_result literal_start(struct imap_parser *p)
{
	enum imap_literal_mode mode = IMAP_LITERAL_BUFFER;

	if (p->hook != NULL) {
		struct imap_command sofar = { p->cmd.tag, p->stack, top_count(p) };
		mode = p->hook(p->hook_ctx, &sofar, p->lit_size, p->lit_nonsync);
	}
	if (mode == IMAP_LITERAL_BUFFER &&
	    p->lit_size > p->lim.max_literal - p->literal_total)
		mode = IMAP_LITERAL_REJECT;
	if (mode != IMAP_LITERAL_BUFFER && mode != IMAP_LITERAL_STREAM) {
		if (p->lit_nonsync)
			return fatal(p, "Literal too large");
		p->error = "Literal too large";
		snapshot_args(p);
		p->finished = true;
		return IMAP_PARSE_LITERAL_TOOBIG;
	}

	struct imap_arg *a = push_arg(p, IMAP_ARG_LITERAL);
	a->literal8 = p->lit8;
	a->literal_size = p->lit_size;
	p->lit_left = p->lit_size;
	if (mode == IMAP_LITERAL_BUFFER) {
		/* Fits in size_t: bounded by max_literal above. */
		size_t n = (size_t)p->lit_size;
		p->lit_buf = arena_alloc(p->arena, n + 1);
		p->lit_buf[n] = '\0';
		a->str = str_make(p->lit_buf, n);
		p->literal_total += n;
		p->state = n > 0 ? S_LIT_DATA : S_AFTER_TOKEN;
	} else {
		a->streamed = true;
		p->state = p->lit_size > 0 ? S_LIT_STREAM : S_AFTER_TOKEN;
	}
	return p->lit_nonsync ? IMAP_PARSE_MORE : IMAP_PARSE_CONTINUE;
}

/* --- states --- */

static void st_tag(struct imap_parser *p, const char *d, size_t end, size_t *pos)
{
	size_t i = *pos;

	while (i < end && is_tag_char((unsigned char)d[i]))
		i++;
	if (i == end) {
		token_save(p, d + *pos, i - *pos);
		*pos = i;
		return;
	}
	unsigned char c = (unsigned char)d[i];
	bool empty = i == *pos && !p->tok_partial;
	if (c != ' ' && c != '\r' && c != '\n') {
		*pos = i;
		fail(p, "Invalid tag");
		return;
	}
	if (empty) {
		*pos = i;
		fail(p, c == ' ' ? "Empty tag" : "Empty command line");
		return;
	}
	p->cmd.tag = token_finish(p, d + *pos, i - *pos);
	if (c != ' ') {
		*pos = i;
		fail(p, "Missing command");
		return;
	}
	*pos = i + 1;
	p->state = S_ARG_START;
}

static void st_atom(struct imap_parser *p, const char *d, size_t end, size_t *pos,
		bool first)
{
	const char *err = NULL;
	size_t i;

	for (i = *pos; i < end; i++) {
		unsigned char c = (unsigned char)d[i];
		if (p->sect_depth > 0) {
			/* Inside [...] everything but CTLs and "{" is the atom's;
			 * "..." parts may hold "]" (header-fld-name is an astring). */
			if (c < 0x20 || c == 0x7f) {
				err = c == '\r' || c == '\n' ? "Missing ']'" : "Invalid character in section";
				break;
			}
			if (p->sect_quote) {
				if (p->sect_esc)
					p->sect_esc = false;
				else if (c == '\\')
					p->sect_esc = true;
				else if (c == '"')
					p->sect_quote = false;
			} else if (c == '"') {
				p->sect_quote = true;
			} else if (c == '[') {
				p->sect_depth++;
			} else if (c == ']') {
				p->sect_depth--;
			} else if (c == '{') {
				err = "Literal inside section not supported";
				break;
			}
			continue;
		}
		if (c == '[') {
			p->sect_depth = 1;
			continue;
		}
		if (is_atom_char(c))
			continue;
		/* flag-extension = "\" atom (RFC 3501 section 9) */
		if (c == '\\' && first && i == *pos)
			continue;
		break;
	}
	if (err != NULL) {
		*pos = i;
		fail(p, err);
		return;
	}
	if (i == end) {
		token_save(p, d + *pos, i - *pos);
		*pos = i;
		return;
	}
	struct imap_arg *a = push_arg(p, IMAP_ARG_ATOM);
	a->str = token_finish(p, d + *pos, i - *pos);
	*pos = i;
	p->state = S_AFTER_TOKEN;
}

static void st_quoted(struct imap_parser *p, const char *d, size_t end, size_t *pos)
{
	size_t seg = *pos;

	for (size_t i = *pos; i < end; i++) {
		unsigned char c = (unsigned char)d[i];
		if (c == '\0' || c == '\r' || c == '\n') {
			*pos = i;
			fail(p, c == '\0' ? "NUL in quoted string" : "Missing '\"'");
			return;
		}
		if (p->quote_esc) {
			/* QUOTED-CHAR: only quoted-specials may be escaped. */
			if (c != '"' && c != '\\') {
				*pos = i;
				fail(p, "Invalid escape in quoted string");
				return;
			}
			p->quote_esc = false;
			seg = i;
		} else if (c == '\\') {
			token_save(p, d + seg, i - seg);
			p->quote_esc = true;
		} else if (c == '"') {
			struct imap_arg *a = push_arg(p, IMAP_ARG_STRING);
			a->str = token_finish(p, d + seg, i - seg);
			*pos = i + 1;
			p->state = S_AFTER_TOKEN;
			return;
		}
	}
	if (!p->quote_esc)
		token_save(p, d + seg, end - seg);
	*pos = end;
}

/* A token may start here; the caller checked it is not SP, ")" or EOL. */
static void token_start(struct imap_parser *p, unsigned char c, size_t *pos)
{
	bool cmd_pos = p->nstack == 0;

	if (p->nargs_total >= p->lim.max_args) {
		fail(p, "Too many arguments");
		return;
	}
	switch (c) {
	case '(':
		if (cmd_pos) {
			fail(p, "Invalid command name");
		} else if (p->depth >= p->lim.max_nesting) {
			fail(p, "Too deeply nested lists");
		} else {
			open_list(p);
			(*pos)++;
		}
		return;
	case '"':
		if (cmd_pos) {
			fail(p, "Invalid command name");
			return;
		}
		p->quote_esc = false;
		p->state = S_QUOTED;
		(*pos)++;
		return;
	case '{':
		if (cmd_pos) {
			fail(p, "Invalid command name");
			return;
		}
		p->lit8 = false;
		p->state = S_LIT_DIGITS;
		p->lit_size = 0;
		p->lit_digits = false;
		p->lit_nonsync = false;
		(*pos)++;
		return;
	case '~':
		p->state = S_TILDE;
		(*pos)++;
		return;
	default:
		if (!is_atom_char(c) && c != '\\') {
			fail(p, "Invalid character");
			return;
		}
		p->sect_depth = 0;
		p->sect_quote = p->sect_esc = false;
		p->state = S_ATOM;
		return;
	}
}

static enum imap_parse_result st_byte(struct imap_parser *p, unsigned char c, size_t *pos)
{
	switch (p->state) {
	case S_ARG_START:
	case S_AFTER_TOKEN:
		if (c == ' ') {
			p->state = S_ARG_START;
			(*pos)++;
		} else if (c == '\r') {
			p->state = S_EOL_LF;
			(*pos)++;
		} else if (c == '\n') {
			(*pos)++;
			return end_line(p);
		} else if (c == ')') {
			if (p->depth == 0) {
				fail(p, "Unexpected ')'");
			} else {
				close_list(p);
				p->state = S_AFTER_TOKEN;
				(*pos)++;
			}
		} else if (p->state == S_AFTER_TOKEN) {
			fail(p, "Missing space between arguments");
		} else {
			token_start(p, c, pos);
		}
		break;
	case S_EOL_LF:
		if (c != '\n') {
			fail(p, "CR without LF");
			break;
		}
		(*pos)++;
		return end_line(p);
	case S_TILDE:
		if (c == '{') {
			if (p->nstack == 0) {
				fail(p, "Invalid command name");
				break;
			}
			p->lit8 = true;
			p->state = S_LIT_DIGITS;
			p->lit_size = 0;
			p->lit_digits = false;
			p->lit_nonsync = false;
			(*pos)++;
		} else {
			/* "~" began an atom; let st_atom judge this octet. */
			token_save(p, "~", 1);
			p->sect_depth = 0;
			p->sect_quote = p->sect_esc = false;
			p->state = S_ATOM;
		}
		break;
	case S_LIT_DIGITS:
		if (is_digit(c)) {
			unsigned dig = (unsigned)(c - '0');
			/* number64 (RFC 9051 section 9): at most 2^63-1 */
			if (p->lit_size > ((uint64_t)INT64_MAX - dig) / 10) {
				fail(p, "Literal size too large");
				break;
			}
			p->lit_size = p->lit_size * 10 + dig;
			p->lit_digits = true;
			(*pos)++;
		} else if ((c == '+' || c == '}') && p->lit_digits) {
			p->lit_nonsync = c == '+';
			p->state = c == '+' ? S_LIT_PLUS : S_LIT_EOL;
			(*pos)++;
		} else {
			fail(p, "Invalid literal size");
		}
		break;
	case S_LIT_PLUS:
		if (c != '}') {
			fail(p, "Invalid literal size");
			break;
		}
		p->state = S_LIT_EOL;
		(*pos)++;
		break;
	case S_LIT_EOL:
		if (c == '\r') {
			p->state = S_LIT_LF;
			(*pos)++;
			break;
		}
		/* fall through */
	case S_LIT_LF:
		if (c != '\n') {
			fail(p, "Missing CRLF after literal size");
			break;
		}
		(*pos)++;
		return literal_start(p);
	default:
		break;
	}
	return IMAP_PARSE_MORE;
}

/* Skip the rest of a bad line without keeping it; return at its LF. */
static enum imap_parse_result st_skip(struct imap_parser *p, const char *d, size_t len,
		size_t *pos)
{
	int sk = p->skip;

	for (size_t i = *pos; i < len; i++) {
		unsigned char c = (unsigned char)d[i];
		switch (c) {
		case '\n':
			*pos = i + 1;
			if (sk == SK_NS || sk == SK_NS_CR)
				return fatal(p, p->error);
			snapshot_args(p);
			p->finished = true;
			return IMAP_PARSE_ERROR;
		case '{':
			sk = SK_BRACE;
			break;
		case '+':
			sk = sk == SK_BRACE ? SK_PLUS : SK_NONE;
			break;
		case '}':
			sk = sk == SK_PLUS ? SK_NS : SK_NONE;
			break;
		case '\r':
			sk = sk == SK_NS ? SK_NS_CR : SK_NONE;
			break;
		default:
			sk = is_digit(c) && sk == SK_BRACE ? SK_BRACE : SK_NONE;
			break;
		}
	}
	p->skip = sk;
	*pos = len;
	return IMAP_PARSE_MORE;
}

enum imap_parse_result imap_parser_feed(struct imap_parser *p, const char *data,
		size_t len, size_t *consumed)
{
	enum imap_parse_result r = IMAP_PARSE_MORE;
	size_t pos = 0;

	if (p->fatal) {
		*consumed = 0;
		return IMAP_PARSE_FATAL;
	}
	if (p->finished)
		begin_command(p);
	p->chunk = empty_str;

	while (r == IMAP_PARSE_MORE && pos < len) {
		size_t n, start = pos;

		switch (p->state) {
		case S_SKIP:
			r = st_skip(p, data, len, &pos);
			continue;
		case S_LIT_DATA:
			n = (size_t)MIN((uint64_t)(len - pos), p->lit_left);
			memcpy(p->lit_buf + (p->lit_size - p->lit_left), data + pos, n);
			pos += n;
			p->lit_left -= n;
			if (p->lit_left == 0)
				p->state = S_AFTER_TOKEN;
			continue;
		case S_LIT_STREAM:
			n = (size_t)MIN((uint64_t)(len - pos), p->lit_left);
			p->chunk = str_make(data + pos, n);
			pos += n;
			p->lit_left -= n;
			if (p->lit_left == 0)
				p->state = S_AFTER_TOKEN;
			r = IMAP_PARSE_LITERAL_DATA;
			continue;
		default:
			break;
		}

		/* Everything else counts against max_line, checked before the
		 * line end arrives (STYLE.md "Limits"): look no further than
		 * the octet that would exceed it. */
		if (p->line_len >= p->lim.max_line) {
			fail(p, "Line too long");
			continue;
		}
		size_t end = pos + MIN(len - pos, p->lim.max_line - p->line_len);
		switch (p->state) {
		case S_TAG:
			st_tag(p, data, end, &pos);
			break;
		case S_ATOM:
			st_atom(p, data, end, &pos, !p->tok_partial);
			break;
		case S_QUOTED:
			st_quoted(p, data, end, &pos);
			break;
		default:
			r = st_byte(p, (unsigned char)data[pos], &pos);
			break;
		}
		p->line_len += pos - start;
	}
	*consumed = pos;
	return r;
}

/* --- helpers for handlers --- */

bool imap_arg_is_atom(const struct imap_arg *a, const char *name)
{
	return a->type == IMAP_ARG_ATOM && str_ieq(a->str, name);
}

bool imap_arg_atom(const struct imap_arg *a, struct str *out)
{
	if (a->type != IMAP_ARG_ATOM)
		return false;
	*out = a->str;
	return true;
}

bool imap_arg_string(const struct imap_arg *a, struct str *out)
{
	if (a->type != IMAP_ARG_STRING && (a->type != IMAP_ARG_LITERAL || a->streamed))
		return false;
	*out = a->str;
	return true;
}

bool imap_arg_astring(const struct imap_arg *a, struct str *out)
{
	return imap_arg_atom(a, out) || imap_arg_string(a, out);
}

bool imap_arg_nstring(const struct imap_arg *a, struct str *out, bool *is_nil)
{
	if (imap_arg_is_atom(a, "NIL")) {
		*out = empty_str;
		*is_nil = true;
		return true;
	}
	if (!imap_arg_string(a, out))
		return false;
	*is_nil = false;
	return true;
}

bool imap_arg_list(const struct imap_arg *a, const struct imap_arg **list, size_t *n)
{
	if (a->type != IMAP_ARG_LIST)
		return false;
	*list = a->list;
	*n = a->nlist;
	return true;
}

bool imap_arg_number(const struct imap_arg *a, uint32_t *out)
{
	uint64_t v;

	if (a->type != IMAP_ARG_ATOM || parse_u64(a->str.p, a->str.len, UINT32_MAX, &v) < 0)
		return false;
	*out = (uint32_t)v;
	return true;
}

bool imap_arg_number64(const struct imap_arg *a, uint64_t *out)
{
	uint64_t v;

	if (a->type != IMAP_ARG_ATOM || parse_u64(a->str.p, a->str.len, INT64_MAX, &v) < 0)
		return false;
	*out = v;
	return true;
}

/* --- output --- */

void imap_write_string(struct buf *out, struct str s)
{
	bool literal = s.len > 1024;

	for (size_t i = 0; i < s.len && !literal; i++) {
		unsigned char c = (unsigned char)s.p[i];
		literal = c == '\0' || c == '\r' || c == '\n' || c >= 0x80;
	}
	if (literal) {
		buf_printf(out, "{%zu}\r\n", s.len);
		buf_append(out, s.p, s.len);
		return;
	}
	char *d = buf_reserve(out, s.len * 2 + 2);
	size_t n = 0;
	d[n++] = '"';
	for (size_t i = 0; i < s.len; i++) {
		if (s.p[i] == '"' || s.p[i] == '\\')
			d[n++] = '\\';
		d[n++] = s.p[i];
	}
	d[n++] = '"';
	buf_commit(out, n);
}

void imap_write_astring(struct buf *out, struct str s)
{
	bool atom = s.len > 0 && !str_ieq(s, "NIL");

	for (size_t i = 0; i < s.len && atom; i++) {
		unsigned char c = (unsigned char)s.p[i];
		/* ASTRING-CHAR, strictly: no 8-bit and no "[" in what we send. */
		atom = c < 0x80 && is_atom_char(c) && c != '%' && c != '*' && c != '[';
	}
	if (!atom) {
		imap_write_string(out, s);
		return;
	}
	buf_append(out, s.p, s.len);
}
