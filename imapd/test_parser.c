/* Unit tests for the IMAP command parser (imapd/parser.c).
 *
 * Most cases go through check_parse(), which feeds the input whole, split
 * once at every byte boundary, and one byte at a time, and requires the
 * same events at the same input offsets every time (so MORE is returned
 * until the octet that completes a command, whatever the split).  Events
 * are serialised as text: "DONE tag args;", "ERROR tag message;", "+;"
 * (CONTINUE), "DATA(bytes);" (streamed chunks, concatenated), "TOOBIG
 * tag;", "FATAL tag message;".  Args: atoms raw, "quoted", {literal},
 * ~{literal8}, {stream N}, (lists); octets outside 0x20..0x7e as \xNN.
 */
#include <stdlib.h>

#include "imapd/parser.h"
#include "lib/arena.h"
#include "lib/buf.h"
#include "tests/unit/unit.h"

static const struct imap_parser_limits deflim = {
	.max_line = 8192,
	.max_literal = 65536,
	.max_nesting = 8,
	.max_args = 100,
};

#define NO_HOOK (-1)

struct hookctx {
	int mode;		/* enum imap_literal_mode */
	int calls;
	size_t nargs;		/* what the last call saw */
	char cmd[32];
	char tag[32];
	uint64_t size;
	bool nonsync;
	bool last_is_open_list;
};

struct drv {
	struct arena arena;
	struct imap_parser p;
	struct buf out;		/* events */
	struct buf trace;	/* events with offsets, to compare splits */
	struct buf data;	/* streamed chunks not yet recorded */
	bool in_data;
	bool dead;
	int ncont;
	size_t off;		/* octets consumed so far */
	size_t max_scratch;
	struct hookctx hook;
};

static enum imap_literal_mode test_hook(void *ctx, const struct imap_command *sofar,
		uint64_t size, bool nonsync)
{
	struct hookctx *h = ctx;
	h->calls++;
	h->nargs = sofar->nargs;
	h->size = size;
	h->nonsync = nonsync;
	snprintf(h->tag, sizeof(h->tag), "%.*s", STR_FMT(sofar->tag));
	h->cmd[0] = '\0';
	if (sofar->nargs > 0 && sofar->args[0].type == IMAP_ARG_ATOM)
		snprintf(h->cmd, sizeof(h->cmd), "%.*s", STR_FMT(sofar->args[0].str));
	h->last_is_open_list = sofar->nargs > 0 &&
		sofar->args[sofar->nargs - 1].type == IMAP_ARG_LIST &&
		sofar->args[sofar->nargs - 1].nlist == 0;
	return (enum imap_literal_mode)h->mode;
}

static void drv_init(struct drv *d, const struct imap_parser_limits *lim, int hookmode)
{
	memset(d, 0, sizeof(*d));
	arena_init(&d->arena, 4096);
	imap_parser_init(&d->p, lim, &d->arena);
	d->hook.mode = hookmode;
	if (hookmode != NO_HOOK)
		imap_parser_set_literal_hook(&d->p, test_hook, &d->hook);
}

static void drv_free(struct drv *d)
{
	imap_parser_free(&d->p);
	arena_free(&d->arena);
	buf_free(&d->out);
	buf_free(&d->trace);
	buf_free(&d->data);
}

static void put_bytes(struct buf *b, struct str s)
{
	for (size_t i = 0; i < s.len; i++) {
		unsigned char c = (unsigned char)s.p[i];
		if (c < 0x20 || c > 0x7e)
			buf_printf(b, "\\x%02x", c);
		else
			buf_putc(b, (char)c);
	}
}

static void put_arg(struct buf *b, const struct imap_arg *a, int depth)
{
	CHECK(depth <= 64);
	switch (a->type) {
	case IMAP_ARG_ATOM:
		CHECK(a->str.len > 0 && a->str.p[a->str.len] == '\0');
		put_bytes(b, a->str);
		break;
	case IMAP_ARG_STRING:
		CHECK(a->str.p[a->str.len] == '\0');
		buf_putc(b, '"');
		put_bytes(b, a->str);
		buf_putc(b, '"');
		break;
	case IMAP_ARG_LITERAL:
		if (a->literal8)
			buf_putc(b, '~');
		if (a->streamed) {
			CHECK(a->str.len == 0);
			buf_printf(b, "{stream %llu}", (unsigned long long)a->literal_size);
		} else {
			CHECK(a->str.len == a->literal_size && a->str.p[a->str.len] == '\0');
			buf_putc(b, '{');
			put_bytes(b, a->str);
			buf_putc(b, '}');
		}
		break;
	case IMAP_ARG_LIST:
		CHECK(a->str.len == 0);
		buf_putc(b, '(');
		for (size_t i = 0; i < a->nlist; i++) {
			if (i > 0)
				buf_putc(b, ' ');
			put_arg(b, &a->list[i], depth + 1);
		}
		buf_putc(b, ')');
		break;
	}
}

static void drv_event(struct drv *d, const char *fmt, const char *tail)
{
	buf_puts(&d->out, fmt);
	buf_puts(&d->out, tail);
	buf_puts(&d->trace, fmt);
	buf_printf(&d->trace, "@%zu", d->off);
	buf_puts(&d->trace, tail);
}

static void drv_flush_data(struct drv *d)
{
	if (!d->in_data)
		return;
	struct buf e = BUF_INIT;
	buf_puts(&e, "DATA(");
	put_bytes(&e, buf_str(&d->data));
	buf_puts(&e, ")");
	buf_puts(&d->out, buf_ptr(&e));
	buf_puts(&d->out, ";");
	buf_puts(&d->trace, buf_ptr(&e));
	buf_puts(&d->trace, ";");
	buf_free(&e);
	buf_clear(&d->data);
	d->in_data = false;
}

static void drv_feed(struct drv *d, const char *s, size_t n)
{
	while (n > 0 && !d->dead) {
		size_t used = 12345;
		enum imap_parse_result r = imap_parser_feed(&d->p, s, n, &used);
		CHECK(used <= n);
		if (r == IMAP_PARSE_MORE)
			CHECK(used == n);
		else if (r != IMAP_PARSE_FATAL)
			CHECK(used > 0);
		d->off += used;
		if (imap_parser_scratch_size(&d->p) > d->max_scratch)
			d->max_scratch = imap_parser_scratch_size(&d->p);
		if (r != IMAP_PARSE_LITERAL_DATA && r != IMAP_PARSE_MORE)
			drv_flush_data(d);

		struct buf e = BUF_INIT;
		const struct imap_command *c = &d->p.cmd;
		switch (r) {
		case IMAP_PARSE_MORE:
			break;
		case IMAP_PARSE_LITERAL_DATA:
			CHECK(d->p.chunk.len > 0);
			CHECK(d->p.chunk.p >= s && d->p.chunk.p + d->p.chunk.len <= s + used);
			buf_append(&d->data, d->p.chunk.p, d->p.chunk.len);
			d->in_data = true;
			break;
		case IMAP_PARSE_CONTINUE:
			d->ncont++;
			drv_event(d, "+", ";");
			break;
		case IMAP_PARSE_DONE:
			CHECK(c->tag.len > 0 && c->nargs > 0 && c->args[0].type == IMAP_ARG_ATOM);
			buf_puts(&e, "DONE ");
			put_bytes(&e, c->tag);
			for (size_t i = 0; i < c->nargs; i++) {
				buf_putc(&e, ' ');
				put_arg(&e, &c->args[i], 0);
			}
			drv_event(d, buf_ptr(&e), ";");
			break;
		case IMAP_PARSE_ERROR:
		case IMAP_PARSE_LITERAL_TOOBIG:
		case IMAP_PARSE_FATAL:
			CHECK(d->p.error != NULL);
			buf_puts(&e, r == IMAP_PARSE_ERROR ? "ERROR " :
				r == IMAP_PARSE_FATAL ? "FATAL " : "TOOBIG ");
			if (c->tag.len > 0)
				put_bytes(&e, c->tag);
			else
				buf_putc(&e, '-');
			if (r != IMAP_PARSE_LITERAL_TOOBIG) {
				buf_putc(&e, ' ');
				buf_puts(&e, d->p.error ? d->p.error : "?");
			}
			drv_event(d, buf_ptr(&e), ";");
			if (r == IMAP_PARSE_FATAL)
				d->dead = true;
			break;
		}
		buf_free(&e);
		if (r == IMAP_PARSE_DONE || r == IMAP_PARSE_ERROR || r == IMAP_PARSE_LITERAL_TOOBIG) {
			imap_parser_reset(&d->p);
			arena_reset(&d->arena);
		}
		s += used;
		n -= used;
	}
}

static void drv_end(struct drv *d)
{
	drv_flush_data(d);
}

/* Feed whole, split once everywhere, and byte by byte; compare. */
static void check_parse_at(const char *file, int line, const struct imap_parser_limits *lim,
		int hookmode, const char *in, size_t len, const char *expect)
{
	struct drv ref, d;

	drv_init(&ref, lim, hookmode);
	drv_feed(&ref, in, len);
	drv_end(&ref);
	unit_checks++;
	if (strcmp(buf_ptr(&ref.out), expect) != 0) {
		char m[1024];
		snprintf(m, sizeof(m), "parse: expected \"%s\", got \"%s\"", expect, buf_ptr(&ref.out));
		unit_fail(file, line, m);
		drv_free(&ref);
		return;
	}
	for (size_t cut = 0; cut <= len + 1; cut++) {
		drv_init(&d, lim, hookmode);
		if (cut <= len) {
			drv_feed(&d, in, cut);
			drv_feed(&d, in + cut, len - cut);
		} else {
			for (size_t i = 0; i < len; i++)
				drv_feed(&d, in + i, 1);
		}
		drv_end(&d);
		unit_checks++;
		if (strcmp(buf_ptr(&ref.trace), buf_ptr(&d.trace)) != 0) {
			char m[1024];
			snprintf(m, sizeof(m), "split at %zu: expected \"%s\", got \"%s\"", cut,
				buf_ptr(&ref.trace), buf_ptr(&d.trace));
			unit_fail(file, line, m);
			drv_free(&d);
			break;
		}
		drv_free(&d);
	}
	drv_free(&ref);
}

#define CHECK_PARSE(in, expect) \
	check_parse_at(__FILE__, __LINE__, &deflim, NO_HOOK, (in), sizeof(in) - 1, (expect))
#define CHECK_PARSE_L(lim, in, expect) \
	check_parse_at(__FILE__, __LINE__, (lim), NO_HOOK, (in), sizeof(in) - 1, (expect))
#define CHECK_PARSE_H(mode, in, expect) \
	check_parse_at(__FILE__, __LINE__, &deflim, (mode), (in), sizeof(in) - 1, (expect))

/* --- tokens --- */

TEST(parser_simple)
{
	CHECK_PARSE("a1 NOOP\r\n", "DONE a1 NOOP;");
	CHECK_PARSE("a1 NOOP\n", "DONE a1 NOOP;");
	CHECK_PARSE("A.1 capability\r\n", "DONE A.1 capability;");
	CHECK_PARSE("a] NOOP\r\n", "DONE a] NOOP;");
	CHECK_PARSE("a1 LOGIN user pass\r\n", "DONE a1 LOGIN user pass;");
}

TEST(parser_every_token_kind)
{
	CHECK_PARSE("t1 X atom \"quoted\" {3}\r\nlit {4+}\r\nlit+ ~{2}\r\nl8 ~{2+}\r\nL8 (a (b \"c\") ()) NIL\r\n",
		"+;+;DONE t1 X atom \"quoted\" {lit} {lit+} ~{l8} ~{L8} (a (b \"c\") ()) NIL;");
	CHECK_PARSE("t UID FETCH 1:*,3 (FLAGS UID)\r\n", "DONE t UID FETCH 1:*,3 (FLAGS UID);");
	CHECK_PARSE("t LIST \"\" %/*\r\n", "DONE t LIST \"\" %/*;");
	CHECK_PARSE("t STORE 1 +FLAGS.SILENT (\\Seen \\Deleted $Junk)\r\n",
		"DONE t STORE 1 +FLAGS.SILENT (\\Seen \\Deleted $Junk);");
	CHECK_PARSE("t X ~foo ~ a~b\r\n", "DONE t X ~foo ~ a~b;");
	CHECK_PARSE("t X \\\r\n", "DONE t X \\;");
	CHECK_PARSE("t X a\\b\r\n", "ERROR t Missing space between arguments;");
}

TEST(parser_structure)
{
	struct arena a;
	struct imap_parser p;
	size_t used;
	const char in[] = "x7 APPEND INBOX (\\Seen) {5+}\r\nab\0cd (\"q\" ()) ~{1}\r\n!\r\n";

	arena_init(&a, 1024);
	imap_parser_init(&p, &deflim, &a);
	CHECK(imap_parser_feed(&p, in, sizeof(in) - 1, &used) == IMAP_PARSE_CONTINUE);
	CHECK(imap_parser_feed(&p, in + used, sizeof(in) - 1 - used, &used) == IMAP_PARSE_DONE);
	const struct imap_command *c = &p.cmd;
	CHECK_EQ_MEM(c->tag.p, c->tag.len, "x7");
	CHECK_EQ_INT(c->nargs, 6);
	CHECK(imap_arg_is_atom(&c->args[0], "append"));
	CHECK(imap_arg_is_atom(&c->args[1], "INBOX"));
	CHECK(c->args[2].type == IMAP_ARG_LIST && c->args[2].nlist == 1);
	CHECK(imap_arg_is_atom(&c->args[2].list[0], "\\seen"));
	CHECK(c->args[3].type == IMAP_ARG_LITERAL && !c->args[3].literal8 && !c->args[3].streamed);
	CHECK(c->args[3].literal_size == 5 && c->args[3].str.len == 5);
	CHECK(memcmp(c->args[3].str.p, "ab\0cd", 6) == 0);
	CHECK(c->args[4].type == IMAP_ARG_LIST && c->args[4].nlist == 2);
	CHECK(c->args[4].list[0].type == IMAP_ARG_STRING);
	CHECK(c->args[4].list[1].type == IMAP_ARG_LIST && c->args[4].list[1].nlist == 0);
	CHECK(c->args[5].type == IMAP_ARG_LITERAL && c->args[5].literal8);
	CHECK_EQ_MEM(c->args[5].str.p, c->args[5].str.len, "!");
	imap_parser_reset(&p);
	CHECK(p.cmd.nargs == 0 && p.cmd.tag.len == 0);
	imap_parser_free(&p);
	arena_free(&a);
}

TEST(parser_quoted)
{
	CHECK_PARSE("a X \"a\\\"b\\\\c\" \"\"\r\n", "DONE a X \"a\"b\\c\" \"\";");
	CHECK_PARSE("a X \"\\\\\" \"\\\"\"\r\n", "DONE a X \"\\\" \"\"\";");
	CHECK_PARSE("a X \"sp ace (x) {3}\"\r\n", "DONE a X \"sp ace (x) {3}\";");
	CHECK_PARSE("a X \"\xc3\xa4\xe2\x82\xac\"\r\n", "DONE a X \"\\xc3\\xa4\\xe2\\x82\\xac\";");
	CHECK_PARSE("a X \"\\a\"\r\nb NOOP\r\n", "ERROR a Invalid escape in quoted string;DONE b NOOP;");
	CHECK_PARSE("a X \"x\0y\"\r\nb NOOP\r\n", "ERROR a NUL in quoted string;DONE b NOOP;");
	CHECK_PARSE("a X \"abc\r\nb NOOP\r\n", "ERROR a Missing '\"';DONE b NOOP;");
	CHECK_PARSE("a X \"abc\nb NOOP\r\n", "ERROR a Missing '\"';DONE b NOOP;");
	CHECK_PARSE("a X \"a\"\"b\"\r\n", "ERROR a Missing space between arguments;");
	CHECK_PARSE("a X x\"b\"\r\n", "ERROR a Missing space between arguments;");
}

TEST(parser_8bit)
{
	CHECK_PARSE("a SELECT Entw\xc3\xbcrfe\r\n", "DONE a SELECT Entw\\xc3\\xbcrfe;");
	CHECK_PARSE("a X \x80\xff\r\n", "DONE a X \\x80\\xff;");
	CHECK_PARSE("a\xc3 NOOP\r\n", "ERROR - Invalid tag;");
	CHECK_PARSE("a X a\tb\r\n", "ERROR a Missing space between arguments;");
	CHECK_PARSE("a X \x7f\r\n", "ERROR a Invalid character;");
}

TEST(parser_bracket_atoms)
{
	CHECK_PARSE("a FETCH 1 BODY[HEADER.FIELDS (A B)]<1.2>\r\n",
		"DONE a FETCH 1 BODY[HEADER.FIELDS (A B)]<1.2>;");
	CHECK_PARSE("a FETCH 1 (BODY.PEEK[1.2.MIME] BODY[] UID)\r\n",
		"DONE a FETCH 1 (BODY.PEEK[1.2.MIME] BODY[] UID);");
	CHECK_PARSE("a FETCH 1 (BODY[HEADER.FIELDS.NOT (\"X]\" \"a\\\"b\" Y)])\r\n",
		"DONE a FETCH 1 (BODY[HEADER.FIELDS.NOT (\"X]\" \"a\\\"b\" Y)]);");
	CHECK_PARSE("a X [a[b]c]d [\r\n", "ERROR a Missing ']';");
	CHECK_PARSE("a X [a[b]c]d e]\r\n", "DONE a X [a[b]c]d e];");
	CHECK_PARSE("a FETCH 1 BODY[HEADER.FIELDS (A\r\nb NOOP\r\n", "ERROR a Missing ']';DONE b NOOP;");
	CHECK_PARSE("a FETCH 1 BODY[HEADER.FIELDS {3}]\r\n",
		"ERROR a Literal inside section not supported;");
	CHECK_PARSE("a FETCH 1 BODY[\t]\r\n", "ERROR a Invalid character in section;");
	/* a literal announced inside a section still ends the connection */
	CHECK_PARSE("a FETCH 1 BODY[HEADER.FIELDS {3+}\r\nabc\r\n",
		"FATAL a Literal inside section not supported;");
}

/* --- separators, tags, line ends --- */

TEST(parser_spaces)
{
	/* Lenient: runs of SP, SP inside parens and trailing SP. */
	CHECK_PARSE("a  NOOP\r\n", "DONE a NOOP;");
	CHECK_PARSE("a NOOP \r\n", "DONE a NOOP;");
	CHECK_PARSE("a X  1   2  \r\n", "DONE a X 1 2;");
	CHECK_PARSE("a X ( a  b ) ( )\r\n", "DONE a X (a b) ();");
	/* Strict: tokens must be separated, no SP before the tag. */
	CHECK_PARSE("a X (a)(b)\r\n", "ERROR a Missing space between arguments;");
	CHECK_PARSE("a X (a)b\r\n", "ERROR a Missing space between arguments;");
	CHECK_PARSE("a X {1}\r\nxy\r\n", "+;ERROR a Missing space between arguments;");
	CHECK_PARSE(" a NOOP\r\n", "ERROR - Empty tag;");
}

TEST(parser_tags_and_lines)
{
	CHECK_PARSE("\r\n", "ERROR - Empty command line;");
	CHECK_PARSE("\n", "ERROR - Empty command line;");
	CHECK_PARSE("a1\r\n", "ERROR a1 Missing command;");
	CHECK_PARSE("a1 \r\n", "ERROR a1 Missing command;");
	CHECK_PARSE("a1    \n", "ERROR a1 Missing command;");
	CHECK_PARSE("+ NOOP\r\n", "ERROR - Invalid tag;");
	CHECK_PARSE("a+b NOOP\r\n", "ERROR - Invalid tag;");
	CHECK_PARSE("* NOOP\r\n", "ERROR - Invalid tag;");
	CHECK_PARSE("a% NOOP\r\n", "ERROR - Invalid tag;");
	CHECK_PARSE("a{1} NOOP\r\n", "ERROR - Invalid tag;");
	CHECK_PARSE("a(b NOOP\r\n", "ERROR - Invalid tag;");
	CHECK_PARSE("a\"b NOOP\r\n", "ERROR - Invalid tag;");
	CHECK_PARSE("a NOOP\rX\r\nb NOOP\r\n", "ERROR a CR without LF;DONE b NOOP;");
	CHECK_PARSE("a NOOP\r\r\n", "ERROR a CR without LF;");
	CHECK_PARSE("a X )\r\n", "ERROR a Unexpected ')';");
	CHECK_PARSE("a X (a))\r\n", "ERROR a Unexpected ')';");
	CHECK_PARSE("a X (a (b)\r\n", "ERROR a Missing ')';");
	/* the command name must be an atom */
	CHECK_PARSE("a (x)\r\n", "ERROR a Invalid command name;");
	CHECK_PARSE("a \"x\"\r\n", "ERROR a Invalid command name;");
	CHECK_PARSE("a {3}\r\n", "ERROR a Invalid command name;");
	CHECK_PARSE("a ~{3}\r\n", "ERROR a Invalid command name;");
	CHECK_PARSE("a ~{3+}\r\nabc\r\n", "FATAL a Invalid command name;");
	CHECK_PARSE("a ~x\r\n", "DONE a ~x;");
}

TEST(parser_pipelined)
{
	const char in[] = "a1 NOOP\r\na2 CHECK\r\na3 LOGOUT\r\n";
	struct arena a;
	struct imap_parser p;
	size_t used, off = 0;
	const char *names[] = { "NOOP", "CHECK", "LOGOUT" };

	arena_init(&a, 1024);
	imap_parser_init(&p, &deflim, &a);
	for (int i = 0; i < 3; i++) {
		CHECK(imap_parser_feed(&p, in + off, sizeof(in) - 1 - off, &used) == IMAP_PARSE_DONE);
		off += used;
		CHECK_EQ_INT(off, 9 + 10 * (size_t)i + (i == 2 ? 1 : 0));
		CHECK(p.cmd.nargs == 1 && imap_arg_is_atom(&p.cmd.args[0], names[i]));
		imap_parser_reset(&p);
		arena_reset(&a);
	}
	CHECK_EQ_INT(off, sizeof(in) - 1);
	CHECK(imap_parser_feed(&p, in + off, 0, &used) == IMAP_PARSE_MORE && used == 0);
	imap_parser_free(&p);
	arena_free(&a);

	CHECK_PARSE("a1 NOOP\r\na2 X (\r\na3 NOOP\na4 X \"\0\"\r\na5 NOOP\r\n",
		"DONE a1 NOOP;ERROR a2 Missing ')';DONE a3 NOOP;ERROR a4 NUL in quoted string;DONE a5 NOOP;");
}

/* --- literals --- */

TEST(parser_literal_forms)
{
	CHECK_PARSE("a X {5}\r\nab\r\nc Y\r\n", "+;DONE a X {ab\\x0d\\x0ac} Y;");
	CHECK_PARSE("a X {5+}\r\nab\r\nc Y\r\n", "DONE a X {ab\\x0d\\x0ac} Y;");
	CHECK_PARSE("a X ~{5}\r\n\0\1\r\n\377 Y\r\n", "+;DONE a X ~{\\x00\\x01\\x0d\\x0a\\xff} Y;");
	CHECK_PARSE("a X ~{5+}\r\n\0\0\0\0\0\r\n", "DONE a X ~{\\x00\\x00\\x00\\x00\\x00};");
	CHECK_PARSE("a X {0}\r\n\r\n", "+;DONE a X {};");
	CHECK_PARSE("a X {0+}\r\n {0}\n\n", "+;DONE a X {} {};");
	CHECK_PARSE("a X {3}\nabc\n", "+;DONE a X {abc};");
	CHECK_PARSE("a X ({2}\r\n()) ((~{1+}\r\n\"))\r\n", "+;DONE a X ({()}) ((~{\"}));");
	CHECK_PARSE("a X {00003}\r\nabc\r\n", "+;DONE a X {abc};");
	/* literal data is never parsed: a fake command inside it */
	CHECK_PARSE("a X {11+}\r\nb NOOP\r\n{1}\r\n\r\n", "DONE a X {b NOOP\\x0d\\x0a{1}};ERROR - Empty command line;");
}

TEST(parser_literal_continue_count)
{
	struct drv d;

	drv_init(&d, &deflim, NO_HOOK);
	drv_feed(&d, "a X {3}\r\n", 9);
	CHECK_EQ_INT(d.ncont, 1);
	drv_feed(&d, "abc {2}\r\n", 9);
	CHECK_EQ_INT(d.ncont, 2);
	drv_feed(&d, "xy {2+}\r\nzz\r\n", 13);
	CHECK_EQ_INT(d.ncont, 2);
	drv_end(&d);
	CHECK_EQ_MEM(buf_ptr(&d.out), d.out.len, "+;+;DONE a X {abc} {xy} {zz};");
	drv_free(&d);
}

TEST(parser_literal_header_errors)
{
	CHECK_PARSE("a X {}\r\nb NOOP\r\n", "ERROR a Invalid literal size;DONE b NOOP;");
	CHECK_PARSE("a X {12a}\r\nb NOOP\r\n", "ERROR a Invalid literal size;DONE b NOOP;");
	CHECK_PARSE("a X {-1}\r\nb NOOP\r\n", "ERROR a Invalid literal size;DONE b NOOP;");
	CHECK_PARSE("a X {1++}\r\nb NOOP\r\n", "ERROR a Invalid literal size;DONE b NOOP;");
	CHECK_PARSE("a X {1} \r\nb NOOP\r\n", "ERROR a Missing CRLF after literal size;DONE b NOOP;");
	CHECK_PARSE("a X {1}\rx\r\nb NOOP\r\n", "ERROR a Missing CRLF after literal size;DONE b NOOP;");
	CHECK_PARSE("a X ~(\r\n", "ERROR a Missing space between arguments;");
	/* no digits but "+}": conservatively fatal, the client may be sending */
	CHECK_PARSE("a X {+}\r\nb NOOP\r\n", "FATAL a Invalid literal size;");
	/* number64: 2^63-1 parses (and is too large), 2^63 does not */
	CHECK_PARSE("a X {9223372036854775807}\r\nb NOOP\r\n", "TOOBIG a;DONE b NOOP;");
	CHECK_PARSE("a X {9223372036854775808}\r\nb NOOP\r\n", "ERROR a Literal size too large;DONE b NOOP;");
	CHECK_PARSE("a X {99999999999999999999999}\r\nb NOOP\r\n", "ERROR a Literal size too large;DONE b NOOP;");
	CHECK_PARSE("a X {99999999999999999999999+}\r\nb NOOP\r\n", "FATAL a Literal size too large;");
	CHECK_PARSE("a X {9223372036854775807+}\r\nb\r\n", "FATAL a Literal too large;");
	/* "{N+}" not at the end of the line is harmless */
	CHECK_PARSE("a X \"\0\" {5+} x\r\nb NOOP\r\n", "ERROR a NUL in quoted string;DONE b NOOP;");
	CHECK_PARSE("a X {5+}x\r\nb NOOP\r\n", "ERROR a Missing CRLF after literal size;DONE b NOOP;");
}

TEST(parser_error_line_ending_in_literal)
{
	/* A bad line whose end announces {N+}: the octets are on their way. */
	CHECK_PARSE("a X \"\0\" {5+}\r\nhello\r\n", "FATAL a NUL in quoted string;");
	CHECK_PARSE("a X \"\0\" {5+}\nhello\r\n", "FATAL a NUL in quoted string;");
	CHECK_PARSE("a X ) ~{5+}\r\nhello\r\n", "FATAL a Unexpected ')';");
	/* ... while {N} makes the client wait for "+", which never comes. */
	CHECK_PARSE("a X \"\0\" {5}\r\nb NOOP\r\n", "ERROR a NUL in quoted string;DONE b NOOP;");
	CHECK_PARSE("a\x01 {5+}\r\nhello\r\n", "FATAL - Invalid tag;");
}

/* --- limits --- */

TEST(parser_limit_line)
{
	struct imap_parser_limits lim = deflim;
	lim.max_line = 16;

	/* 16 octets including CRLF */
	CHECK_PARSE_L(&lim, "a1 X 1234567890\r\n", "ERROR a1 Line too long;");
	CHECK_PARSE_L(&lim, "a1 X 123456789\r\n", "DONE a1 X 123456789;");
	CHECK_PARSE_L(&lim, "a1 X 123456789\n", "DONE a1 X 123456789;");
	CHECK_PARSE_L(&lim, "a1 X 1234567890\n", "DONE a1 X 1234567890;");
	CHECK_PARSE_L(&lim, "a1 X 12345678901\n", "ERROR a1 Line too long;");
	CHECK_PARSE_L(&lim, "a1 X \"3456789\"\r\n", "DONE a1 X \"3456789\";");
	CHECK_PARSE_L(&lim, "a1 X \"34567890\"\r\n", "ERROR a1 Line too long;");
	/* all the command's lines count, literal data does not */
	CHECK_PARSE_L(&lim, "a X {20}\r\n01234567890123456789 Y\r\n", "+;DONE a X {01234567890123456789} Y;");
	CHECK_PARSE_L(&lim, "a X {20}\r\n01234567890123456789 YZ12\r\n", "+;ERROR a Line too long;");
	CHECK_PARSE_L(&lim, "0123456789012345 NOOP\r\nb NOOP\r\n", "ERROR - Line too long;DONE b NOOP;");
	/* the tail of an over-long line announcing {N+} */
	CHECK_PARSE_L(&lim, "a X 0123456789 {5+}\r\nhello\r\n", "FATAL a Line too long;");
	CHECK_PARSE_L(&lim, "a X 012345 {5+}\r\nhello\r\n", "FATAL a Line too long;");
	CHECK_PARSE_L(&lim, "a X 012 {5+}\r\nhello\r\n", "DONE a X 012 {hello};");
	/* one octet over on the last line, after the literal */
	CHECK_PARSE_L(&lim, "a X 0123 {5+}\r\nhello\r\n", "ERROR a Line too long;");
	CHECK_PARSE_L(&lim, "a X 0123456 {5}\r\nb NOOP\r\n", "ERROR a Line too long;DONE b NOOP;");
	CHECK_PARSE_L(&lim, "a X 0123 {5}\r\nhello\r\n", "+;DONE a X 0123 {hello};");
}

TEST(parser_limit_literal)
{
	struct imap_parser_limits lim = deflim;
	lim.max_literal = 10;

	CHECK_PARSE_L(&lim, "a X {4}\r\nabcd {6}\r\nefghij\r\n", "+;+;DONE a X {abcd} {efghij};");
	CHECK_PARSE_L(&lim, "a X {4}\r\nabcd {7}\r\nb NOOP\r\n", "+;TOOBIG a;DONE b NOOP;");
	CHECK_PARSE_L(&lim, "a X {11}\r\nb NOOP\r\n", "TOOBIG a;DONE b NOOP;");
	CHECK_PARSE_L(&lim, "a X {10+}\r\n0123456789\r\n", "DONE a X {0123456789};");
	CHECK_PARSE_L(&lim, "a X {11+}\r\n01234567890\r\n", "FATAL a Literal too large;");
	CHECK_PARSE_L(&lim, "a X ~{4+}\r\nabcd ~{7+}\r\n", "FATAL a Literal too large;");
	/* the budget is per command */
	CHECK_PARSE_L(&lim, "a X {10+}\r\n0123456789\r\nb X {10+}\r\n0123456789\r\n",
		"DONE a X {0123456789};DONE b X {0123456789};");
}

TEST(parser_limit_nesting)
{
	struct imap_parser_limits lim = deflim;
	lim.max_nesting = 2;

	CHECK_PARSE_L(&lim, "a X ((a)) (b (c))\r\n", "DONE a X ((a)) (b (c));");
	CHECK_PARSE_L(&lim, "a X (((a)))\r\nb NOOP\r\n", "ERROR a Too deeply nested lists;DONE b NOOP;");
	lim.max_nesting = 0;
	CHECK_PARSE_L(&lim, "a X ()\r\n", "ERROR a Too deeply nested lists;");
	CHECK_PARSE_L(&lim, "a X [(((]\r\n", "DONE a X [(((];");
}

TEST(parser_limit_args)
{
	struct imap_parser_limits lim = deflim;
	lim.max_args = 4;

	CHECK_PARSE_L(&lim, "a X 1 2 3\r\n", "DONE a X 1 2 3;");
	CHECK_PARSE_L(&lim, "a X 1 2 3 4\r\nb NOOP\r\n", "ERROR a Too many arguments;DONE b NOOP;");
	CHECK_PARSE_L(&lim, "a X (1 2)\r\n", "DONE a X (1 2);");
	CHECK_PARSE_L(&lim, "a X (1 2 3)\r\n", "ERROR a Too many arguments;");
	CHECK_PARSE_L(&lim, "a X (()) ()\r\n", "DONE a X (()) ();");
	CHECK_PARSE_L(&lim, "a X (()) () ()\r\n", "ERROR a Too many arguments;");
	CHECK_PARSE_L(&lim, "a X 1 2 3 {1}\r\nb NOOP\r\n", "ERROR a Too many arguments;DONE b NOOP;");
	CHECK_PARSE_L(&lim, "a X 1 2 3 {1+}\r\nb\r\n", "FATAL a Too many arguments;");
	CHECK_PARSE_L(&lim, "a X 1 2 {1+}\r\nb\r\n", "DONE a X 1 2 {b};");
}

/* A client sending 10 MB without a line end is skipped, not buffered. */
TEST(parser_long_line_bounded)
{
	struct imap_parser_limits lim = deflim;
	lim.max_line = 1024;
	struct arena a;
	struct imap_parser p;
	char chunk[4096];
	size_t used;

	for (int variant = 0; variant < 3; variant++) {
		arena_init(&a, 4096);
		imap_parser_init(&p, &lim, &a);
		const char *head = variant == 0 ? "a1 APPEND " : variant == 1 ? "a1 X \"" : "";
		CHECK(imap_parser_feed(&p, head, strlen(head), &used) == IMAP_PARSE_MORE);
		/* variant 2: all one tag */
		memset(chunk, variant == 1 ? ' ' : 'x', sizeof(chunk));
		for (size_t sent = 0; sent < 10u << 20; sent += sizeof(chunk)) {
			enum imap_parse_result r = imap_parser_feed(&p, chunk, sizeof(chunk), &used);
			if (r != IMAP_PARSE_MORE || used != sizeof(chunk)) {
				CHECK(!"MORE expected");
				break;
			}
			if (imap_parser_scratch_size(&p) > 2 * lim.max_line + 1024 || a.used > 4 * lim.max_line) {
				CHECK(!"memory bounded");
				break;
			}
		}
		CHECK(imap_parser_feed(&p, "\r\n", 2, &used) == IMAP_PARSE_ERROR && used == 2);
		CHECK(strcmp(p.error, "Line too long") == 0);
		if (variant < 2)
			CHECK_EQ_MEM(p.cmd.tag.p, p.cmd.tag.len, "a1");
		else
			CHECK(p.cmd.tag.len == 0);
		imap_parser_reset(&p);
		arena_reset(&a);
		CHECK(imap_parser_feed(&p, "a2 NOOP\r\n", 9, &used) == IMAP_PARSE_DONE && used == 9);
		CHECK(imap_arg_is_atom(&p.cmd.args[0], "NOOP"));
		imap_parser_free(&p);
		arena_free(&a);
	}
}

/* --- streaming and the hook --- */

TEST(parser_stream)
{
	CHECK_PARSE_H(IMAP_LITERAL_STREAM, "a APPEND box {10}\r\n0123456789 extra\r\nb NOOP\r\n",
		"+;DATA(0123456789);DONE a APPEND box {stream 10} extra;DONE b NOOP;");
	CHECK_PARSE_H(IMAP_LITERAL_STREAM, "a APPEND box (\\Seen) ~{4+}\r\n\0\r\n\0\r\n",
		"DATA(\\x00\\x0d\\x0a\\x00);DONE a APPEND box (\\Seen) ~{stream 4};");
	CHECK_PARSE_H(IMAP_LITERAL_STREAM, "a APPEND box {0+}\r\n {2}\r\nab\r\n",
		"+;DATA(ab);DONE a APPEND box {stream 0} {stream 2};");
	CHECK_PARSE_H(IMAP_LITERAL_BUFFER, "a X {2}\r\nab\r\n", "+;DONE a X {ab};");
	CHECK_PARSE_H(IMAP_LITERAL_REJECT, "a X {2}\r\nb NOOP\r\n", "TOOBIG a;DONE b NOOP;");
	CHECK_PARSE_H(IMAP_LITERAL_REJECT, "a X {2+}\r\nab\r\n", "FATAL a Literal too large;");

	/* streamed literals bypass max_literal; the consumer bounds them */
	struct imap_parser_limits lim = deflim;
	lim.max_literal = 4;
	check_parse_at(__FILE__, __LINE__, &lim, IMAP_LITERAL_STREAM,
		"a X {6}\r\nabcdef\r\n", 17, "+;DATA(abcdef);DONE a X {stream 6};");
	/* but a hook asking to buffer cannot exceed it */
	check_parse_at(__FILE__, __LINE__, &lim, IMAP_LITERAL_BUFFER,
		"a X {5}\r\n", 9, "TOOBIG a;");

	/* chunks point into the fed data and come one per feed */
	struct drv d;
	drv_init(&d, &deflim, IMAP_LITERAL_STREAM);
	const char *in = "a APPEND x {6+}\r\nabcdef\r\n";
	size_t used;
	CHECK(imap_parser_feed(&d.p, in, 19, &used) == IMAP_PARSE_LITERAL_DATA);
	CHECK(used == 19 && d.p.chunk.p == in + 17 && d.p.chunk.len == 2);
	CHECK(imap_parser_feed(&d.p, in + 19, 3, &used) == IMAP_PARSE_LITERAL_DATA);
	CHECK(used == 3 && d.p.chunk.p == in + 19 && d.p.chunk.len == 3);
	CHECK(imap_parser_feed(&d.p, in + 22, 3, &used) == IMAP_PARSE_LITERAL_DATA);
	CHECK(used == 1 && d.p.chunk.p == in + 22 && d.p.chunk.len == 1);
	CHECK(imap_parser_feed(&d.p, in + 23, 2, &used) == IMAP_PARSE_DONE && used == 2);
	CHECK(d.p.cmd.nargs == 3 && d.p.cmd.args[2].streamed && d.p.cmd.args[2].literal_size == 6);
	struct str s;
	CHECK(!imap_arg_string(&d.p.cmd.args[2], &s) && !imap_arg_astring(&d.p.cmd.args[2], &s));
	drv_free(&d);
}

TEST(parser_hook_sees_command)
{
	struct drv d;

	drv_init(&d, &deflim, IMAP_LITERAL_BUFFER);
	const char in1[] = "t9 APPEND INBOX (\\Seen) \"date\" {3}\r\nabc\r\n";
	drv_feed(&d, in1, sizeof(in1) - 1);
	CHECK_EQ_INT(d.hook.calls, 1);
	CHECK(strcmp(d.hook.tag, "t9") == 0 && strcmp(d.hook.cmd, "APPEND") == 0);
	CHECK_EQ_INT(d.hook.nargs, 4);
	CHECK(d.hook.size == 3 && !d.hook.nonsync && !d.hook.last_is_open_list);

	/* CATENATE: the literal is inside a list still open */
	const char in2[] = "t10 APPEND INBOX CATENATE (TEXT {4+}\r\nabcd)\r\n";
	drv_feed(&d, in2, sizeof(in2) - 1);
	CHECK_EQ_INT(d.hook.calls, 2);
	CHECK(strcmp(d.hook.cmd, "APPEND") == 0 && strcmp(d.hook.tag, "t10") == 0);
	CHECK_EQ_INT(d.hook.nargs, 4);
	CHECK(d.hook.size == 4 && d.hook.nonsync && d.hook.last_is_open_list);
	drv_end(&d);
	CHECK_EQ_MEM(buf_ptr(&d.out), d.out.len,
		"+;DONE t9 APPEND INBOX (\\Seen) \"date\" {abc};DONE t10 APPEND INBOX CATENATE (TEXT {abcd});");
	drv_free(&d);
}

TEST(parser_failed_command_args)
{
	struct arena a;
	struct imap_parser p;
	size_t used;
	const char in[] = "a1 UID FETCH 1 (FLAGS \"\0\"\r\na2 APPEND box {99999}\r\n";

	arena_init(&a, 1024);
	imap_parser_init(&p, &deflim, &a);
	CHECK(imap_parser_feed(&p, in, sizeof(in) - 1, &used) == IMAP_PARSE_ERROR);
	CHECK_EQ_INT(p.cmd.nargs, 4);
	CHECK(imap_arg_is_atom(&p.cmd.args[1], "FETCH"));
	CHECK(p.cmd.args[3].type == IMAP_ARG_LIST && p.cmd.args[3].nlist == 0);
	size_t off = used;
	CHECK(imap_parser_feed(&p, in + off, sizeof(in) - 1 - off, &used) == IMAP_PARSE_LITERAL_TOOBIG);
	CHECK_EQ_INT(off + used, sizeof(in) - 1);
	CHECK_EQ_MEM(p.cmd.tag.p, p.cmd.tag.len, "a2");
	CHECK(p.cmd.nargs == 2 && imap_arg_is_atom(&p.cmd.args[0], "APPEND"));
	imap_parser_free(&p);
	arena_free(&a);
}

TEST(parser_fatal_is_sticky)
{
	struct arena a;
	struct imap_parser p;
	size_t used;
	const char in[] = "a X {99999+}\r\nb NOOP\r\n";

	arena_init(&a, 1024);
	imap_parser_init(&p, &deflim, &a);
	CHECK(imap_parser_feed(&p, in, sizeof(in) - 1, &used) == IMAP_PARSE_FATAL);
	CHECK_EQ_INT(used, 14);
	CHECK_EQ_MEM(p.cmd.tag.p, p.cmd.tag.len, "a");
	CHECK(imap_parser_feed(&p, "b NOOP\r\n", 8, &used) == IMAP_PARSE_FATAL && used == 0);
	imap_parser_reset(&p);
	CHECK(imap_parser_feed(&p, "b NOOP\r\n", 8, &used) == IMAP_PARSE_FATAL && used == 0);
	imap_parser_free(&p);
	arena_free(&a);
}

/* Pipelined mixed input in random splits gives the same trace. */
TEST(parser_random_splits)
{
	const char in[] =
		"a1 LOGIN {4}\r\nuser \"p\\\"w\"\r\n"
		"a2 SELECT INBOX\r\n"
		"a3 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From To)]<0.100>)\r\n"
		"a4 X \"bad\\q\"\r\n"
		"a5 APPEND box (\\Seen) ~{8+}\r\n\0\r\n\0\r\nxy {3}\r\nabc\r\n"
		"\r\n"
		"a6 X ((((a b) c) d) e) NIL \"\" ~z\n"
		"a7 X [unterminated (\r\n"
		"a8 X {2}\r\nb NOOP\r\n"
		"a9 LOGOUT\r\n";
	const size_t len = sizeof(in) - 1;
	uint32_t seed = 12345;

	for (int mode = 0; mode < 2; mode++) {
		int hook = mode == 0 ? NO_HOOK : IMAP_LITERAL_STREAM;
		struct drv ref;
		drv_init(&ref, &deflim, hook);
		drv_feed(&ref, in, len);
		drv_end(&ref);
		CHECK(strstr(buf_ptr(&ref.out), "DONE a9 LOGOUT;") != NULL);
		CHECK(strstr(buf_ptr(&ref.out), "ERROR a4 Invalid escape in quoted string;") != NULL);
		for (int iter = 0; iter < 300; iter++) {
			struct drv d;
			drv_init(&d, &deflim, hook);
			size_t off = 0;
			while (off < len) {
				seed = seed * 1103515245 + 12345;
				size_t n = 1 + (seed >> 16) % 24;
				if (n > len - off)
					n = len - off;
				drv_feed(&d, in + off, n);
				off += n;
			}
			drv_end(&d);
			bool same = strcmp(buf_ptr(&ref.trace), buf_ptr(&d.trace)) == 0;
			CHECK(same);
			drv_free(&d);
			if (!same)
				break;
		}
		drv_free(&ref);
	}
}

/* --- helpers --- */

static struct imap_arg atom(const char *s)
{
	struct imap_arg a = { .type = IMAP_ARG_ATOM, .str = str_cstr(s) };
	return a;
}

TEST(parser_arg_helpers)
{
	struct imap_arg a = atom("4294967295"), q = { .type = IMAP_ARG_STRING, .str = STR_LIT("42") };
	struct imap_arg l = { .type = IMAP_ARG_LIST, .str = STR_LIT("") };
	struct imap_arg lit = { .type = IMAP_ARG_LITERAL, .str = STR_LIT("x\0y"), .literal_size = 3 };
	struct imap_arg nil = atom("nil");
	uint32_t n;
	uint64_t n64;
	struct str s;
	bool is_nil;
	const struct imap_arg *list;
	size_t nl;

	CHECK(imap_arg_number(&a, &n) && n == UINT32_MAX);
	a = atom("4294967296");
	CHECK(!imap_arg_number(&a, &n));
	CHECK(imap_arg_number64(&a, &n64) && n64 == 4294967296ull);
	a = atom("007");
	CHECK(imap_arg_number(&a, &n) && n == 7);
	a = atom("9223372036854775807");
	CHECK(imap_arg_number64(&a, &n64) && n64 == INT64_MAX);
	a = atom("9223372036854775808");
	CHECK(!imap_arg_number64(&a, &n64));
	a = atom("1a");
	CHECK(!imap_arg_number(&a, &n) && !imap_arg_number64(&a, &n64));
	CHECK(!imap_arg_number(&q, &n));	/* a number is an atom */

	CHECK(imap_arg_is_atom(&nil, "NIL") && !imap_arg_is_atom(&q, "42"));
	CHECK(imap_arg_nstring(&nil, &s, &is_nil) && is_nil && s.len == 0);
	CHECK(imap_arg_nstring(&q, &s, &is_nil) && !is_nil && str_eq(s, STR_LIT("42")));
	a = atom("foo");
	CHECK(!imap_arg_nstring(&a, &s, &is_nil));
	CHECK(imap_arg_astring(&a, &s) && str_eq(s, STR_LIT("foo")));
	CHECK(!imap_arg_string(&a, &s));
	CHECK(imap_arg_string(&lit, &s) && s.len == 3);
	CHECK(imap_arg_astring(&lit, &s) && s.len == 3);
	CHECK(imap_arg_atom(&a, &s) && !imap_arg_atom(&q, &s));
	CHECK(!imap_arg_astring(&l, &s) && !imap_arg_nstring(&l, &s, &is_nil));
	CHECK(imap_arg_list(&l, &list, &nl) && nl == 0 && !imap_arg_list(&a, &list, &nl));
}

static void check_write(bool astring, const char *in, size_t len, const char *expect)
{
	struct buf b = BUF_INIT;
	if (astring)
		imap_write_astring(&b, str_make(in, len));
	else
		imap_write_string(&b, str_make(in, len));
	CHECK_EQ_MEM(buf_ptr(&b), b.len, expect);
	buf_free(&b);
}

TEST(parser_write)
{
	check_write(true, "INBOX", 5, "INBOX");
	check_write(true, "a]b", 3, "a]b");
	check_write(true, "", 0, "\"\"");
	check_write(true, "nil", 3, "\"nil\"");
	check_write(true, "a b", 3, "\"a b\"");
	check_write(true, "a*", 2, "\"a*\"");
	check_write(true, "[Gmail]", 7, "\"[Gmail]\"");
	check_write(true, "a\"\\", 3, "\"a\\\"\\\\\"");
	check_write(false, "INBOX", 5, "\"INBOX\"");
	check_write(false, "a\tb", 3, "\"a\tb\"");
	check_write(false, "a\r\nb", 4, "{4}\r\na\r\nb");
	check_write(true, "\xc3\xa4", 2, "{2}\r\n\xc3\xa4");

	char big[1025];
	memset(big, 'x', sizeof(big));
	struct buf b = BUF_INIT;
	imap_write_string(&b, str_make(big, 1024));
	CHECK(b.len == 1026 && buf_ptr(&b)[0] == '"');
	buf_clear(&b);
	imap_write_string(&b, str_make(big, 1025));
	CHECK(b.len == 1025 + 8 && memcmp(buf_ptr(&b), "{1025}\r\n", 8) == 0);
	buf_clear(&b);
	imap_write_astring(&b, str_make(big, 1025));	/* a long atom is still an atom */
	CHECK(b.len == 1025 && buf_ptr(&b)[0] == 'x');
	buf_clear(&b);
	imap_write_string(&b, STR_LIT("a\0b"));
	CHECK(b.len == 8 && memcmp(buf_ptr(&b), "{3}\r\na\0b", 8) == 0);
	buf_free(&b);

	/* what we write parses back to the same bytes */
	const char *samples[] = { "plain", "with space", "q\"uote", "back\\slash", "", "NIL", "\xff\r\n\0" };
	const size_t lens[] = { 5, 10, 6, 10, 0, 3, 4 };
	for (size_t i = 0; i < ARRAY_SIZE(samples); i++) {
		struct arena a;
		struct imap_parser p;
		size_t used;
		arena_init(&a, 1024);
		imap_parser_init(&p, &deflim, &a);
		buf_puts(&b, "t X ");
		imap_write_astring(&b, str_make(samples[i], lens[i]));
		buf_puts(&b, "\r\n");
		enum imap_parse_result r = imap_parser_feed(&p, buf_ptr(&b), b.len, &used);
		if (r == IMAP_PARSE_CONTINUE)
			r = imap_parser_feed(&p, buf_ptr(&b) + used, b.len - used, &used);
		CHECK(r == IMAP_PARSE_DONE);
		struct str s;
		CHECK(r == IMAP_PARSE_DONE && p.cmd.nargs == 2 && imap_arg_astring(&p.cmd.args[1], &s) &&
			s.len == lens[i] && memcmp(s.p, samples[i], lens[i]) == 0);
		buf_clear(&b);
		imap_parser_free(&p);
		arena_free(&a);
	}
	buf_free(&b);
}
