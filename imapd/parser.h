/* parser.h - resumable IMAP command parser (RFC 3501 section 9, RFC 9051
 * section 9, RFC 7888 LITERAL+/LITERAL-, RFC 3516 literal8).
 *
 * The parser is a state machine fed with whatever bytes arrived
 * (STYLE.md, "Parsing"): it never reads a socket and never waits.  It
 * turns one command at a time into a tree of arguments:
 *
 *     tag SP command [SP arg ...] CRLF
 *
 * where each arg is an atom, a quoted string, a literal or a parenthesised
 * list of args.  It knows no command grammar: handlers interpret the args
 * with the imap_arg_* helpers at the end of this file.
 *
 * Ownership: everything in p->cmd lives in the command arena passed to
 * imap_parser_init().  The arena owner resets that arena after it has
 * finished with a command, never in the middle of one.  The parser keeps
 * heap scratch (a token that spans two feeds, the argument stack), bounded
 * by the limits and released by imap_parser_free().
 *
 * Accepted syntax, and where we are deliberately lenient:
 *  - Line ends: CRLF, or a bare LF (many clients and test scripts).  A CR
 *    not followed by LF is a syntax error.
 *  - Separators: one or more SP between tokens, after "(" and before ")",
 *    and trailing SP before the line end, are all accepted (as Dovecot
 *    does).  Tokens must still be separated: "(a)(b)", "a(b" and "x"y" are
 *    errors.  A SP before the tag is an error (empty tag).
 *  - Tag: 1*<ASTRING-CHAR except "+">.  An empty line, or a tag with no
 *    command, is a syntax error.
 *  - Atoms: ATOM-CHAR plus "]" (ASTRING-CHAR), "%" and "*" (LIST patterns,
 *    sequence sets) and 8-bit octets (lenient, like Dovecot; handlers that
 *    care validate).  A "\" is allowed as the first octet only, for flags
 *    (RFC 3501 flag-extension = "\" atom).  A "[" inside an atom opens a
 *    section, closed by the matching "]", in which SP, "(", ")" and
 *    "..."-quoted parts are part of the atom, so
 *    BODY.PEEK[HEADER.FIELDS (From "To")]<0.100> is ONE atom with its bytes
 *    kept raw.  CTLs and "{" are rejected inside a section (no literals
 *    there).  The command name must be an atom.
 *  - Quoted strings: only \" and \\ escapes; CR, LF and NUL are errors;
 *    8-bit octets are kept (UTF-8, RFC 6855).
 *  - Literals: {N}, {N+}, ~{N}, ~{N+} with N <= 2^63-1 (RFC 9051 number64),
 *    any octets in the data (NUL included).  "~" not followed by "{" starts
 *    an ordinary atom.
 *  - NIL is just an atom.
 *
 * Limits (all checked on partial input; see struct imap_parser_limits):
 * a line that runs past max_line is skipped without being buffered and
 * answered with IMAP_PARSE_ERROR once its LF arrives.
 */
#ifndef IMAPD_PARSER_H
#define IMAPD_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/arena.h"
#include "lib/buf.h"
#include "lib/util.h"

enum imap_arg_type {
	IMAP_ARG_ATOM,
	IMAP_ARG_STRING,	/* quoted */
	IMAP_ARG_LITERAL,
	IMAP_ARG_LIST,
};

struct imap_arg {
	enum imap_arg_type type;
	/* ATOM/STRING/LITERAL: the bytes (quoted: unescaped), in the command
	 * arena, followed by a courtesy NUL.  LIST and streamed LITERAL: empty
	 * (p == "", len 0). */
	struct str str;
	bool literal8;			/* ~{N} (RFC 3516) was used */
	bool streamed;			/* LITERAL delivered as IMAP_PARSE_LITERAL_DATA */
	uint64_t literal_size;		/* LITERAL: N */
	struct imap_arg *list;		/* LIST children, in the command arena */
	size_t nlist;
};

struct imap_command {
	struct str tag;			/* in the command arena, NUL-terminated */
	struct imap_arg *args;		/* args[0] is the command name atom */
	size_t nargs;
};

struct imap_parser_limits {
	/* Non-literal octets of one command, all its lines, counting every
	 * line end (CRLF = 2 octets).  The (max_line+1)th octet is an error. */
	size_t max_line;
	/* Total octets of buffered (in-memory) literals in one command.
	 * Streamed literals are not counted: their consumer bounds them. */
	size_t max_literal;
	/* Depth of parenthesised lists: 0 forbids lists, 1 allows "(a b)",
	 * 2 allows "(a (b))". */
	size_t max_nesting;
	/* Total args in one command at all levels, counting the command name
	 * and each list itself (not the tag): "a FETCH 1 (FLAGS UID)" has 5. */
	size_t max_args;
};

enum imap_parse_result {
	/* All input consumed; feed more. */
	IMAP_PARSE_MORE,
	/* A complete command is in p->cmd; consumed up to and including its
	 * final line end. */
	IMAP_PARSE_DONE,
	/* A synchronizing literal {N} was announced and accepted: send
	 * "+ ..." and feed on.  Returned once per synchronizing literal, never
	 * for {N+}. */
	IMAP_PARSE_CONTINUE,
	/* The next chunk of a streamed literal is in p->chunk, pointing into
	 * the fed data (valid until the caller reuses that data).  The chunks
	 * of one literal concatenate to exactly literal_size octets; a
	 * zero-length literal yields no chunk. */
	IMAP_PARSE_LITERAL_DATA,
	/* Syntax error or a bound exceeded: p->error says why (short, for
	 * "tag BAD <error>"); p->cmd.tag is set if the tag was read (else
	 * len 0).  The rest of the line was skipped without buffering, and
	 * this is returned only once its line end has been consumed (MORE
	 * until then).  Parsing continues with the next command. */
	IMAP_PARSE_ERROR,
	/* A synchronizing literal was larger than the limit or rejected by
	 * the hook.  The client waits for "+", so the command ends here
	 * (its {N} line end consumed); p->cmd.tag is set; answer with a
	 * tagged NO or BAD.  Parsing continues with the next command. */
	IMAP_PARSE_LITERAL_TOOBIG,
	/* Cannot resynchronise: a non-synchronizing literal {N+} was over the
	 * limit or rejected (its octets are already on the way), or a line
	 * in error ended in "{N+}" (conservatively treated the same way;
	 * RFC 7888 section 4 lets the server close the connection).  p->error
	 * and (if read) p->cmd.tag are set.  Say BAD/BYE and close. */
	IMAP_PARSE_FATAL,
};

/* Decision for a literal about to be read.  The hook is called once the
 * literal's {N} line end has been consumed, before CONTINUE.  `sofar` is
 * the command so far: tag and the top-level args completed before this
 * literal (a list still open shows as a LIST arg with nlist 0).  It is
 * valid only during the call.
 *   BUFFER: copy into the command arena; the literal still has to fit
 *           in what is left of max_literal, else it is rejected.
 *   STREAM: hand the data out as LITERAL_DATA chunks (zero copy); the
 *           arg gets streamed = true and literal_size = N.
 *   REJECT: LITERAL_TOOBIG for {N}, FATAL for {N+}.
 * LITERAL- (RFC 7888 section 5) caps {N+} at 4096 octets: a hook for a
 * server advertising LITERAL- rejects larger non-synchronizing ones. */
enum imap_literal_mode {
	IMAP_LITERAL_BUFFER,
	IMAP_LITERAL_STREAM,
	IMAP_LITERAL_REJECT,
};
typedef enum imap_literal_mode (*imap_literal_hook)(void *ctx,
		const struct imap_command *sofar, uint64_t size, bool nonsync);

struct imap_parser {
	/* private */
	struct imap_parser_limits lim;
	struct arena *arena;
	imap_literal_hook hook;
	void *hook_ctx;
	int state;
	bool finished;			/* a result ended the last command */
	bool fatal;
	struct buf tok;			/* token bytes spanning feeds (<= max_line) */
	bool tok_partial;		/* tok holds the start of the current token */
	struct imap_arg *stack;		/* args of the command and its open lists */
	size_t nstack, capstack;
	size_t *levels;			/* stack index of each open list's first child */
	size_t depth, caplevels;
	size_t line_len;		/* non-literal octets of this command */
	size_t nargs_total;
	size_t literal_total;		/* buffered literal octets */
	unsigned sect_depth;		/* "[" nesting inside an atom */
	bool sect_quote, sect_esc;	/* "..." inside a section, after "\" */
	bool quote_esc;			/* after "\" in a quoted string */
	bool lit8, lit_nonsync, lit_digits;
	uint64_t lit_size, lit_left;
	char *lit_buf;			/* buffered literal being filled */
	int skip;			/* skipping a bad line: tail matcher state */

	/* public */
	struct imap_command cmd;	/* after DONE (and tag after ERROR/TOOBIG/FATAL) */
	const char *error;		/* static string after ERROR/TOOBIG/FATAL */
	struct str chunk;		/* after LITERAL_DATA */
};

/* `lim` is copied.  `cmd_arena` receives every result; it must outlive
 * the parser's use of each command. */
void imap_parser_init(struct imap_parser *p, const struct imap_parser_limits *lim,
		struct arena *cmd_arena);
/* NULL hook: buffer literals up to max_literal, reject larger ones. */
void imap_parser_set_literal_hook(struct imap_parser *p, imap_literal_hook hook, void *ctx);
/* Feed bytes.  *consumed says how many were used: all of them for MORE;
 * at least one and at most len for DONE, CONTINUE, LITERAL_DATA, ERROR and
 * TOOBIG, so every call makes progress.  For FATAL it says how far the
 * parser got; every later call returns FATAL and consumes nothing.  Call
 * again with the rest after handling the result.  After DONE/ERROR/TOOBIG
 * the parser starts a new command with the next feed, overwriting p->cmd:
 * use p->cmd first, then imap_parser_reset() and reset the arena.
 *
 * After ERROR, TOOBIG and FATAL, p->cmd.args holds the top-level args read
 * before the failure (a list still open shows with nlist 0), so the caller
 * can name the command in its answer (e.g. NO [TOOBIG] for APPEND). */
enum imap_parse_result imap_parser_feed(struct imap_parser *p, const char *data,
		size_t len, size_t *consumed);
/* Forget the current command (p->cmd included) and expect a new command's
 * tag with the next octet.  The arena owner resets the arena.  Meant for
 * after DONE/ERROR/TOOBIG; in the middle of a command it discards it,
 * and the caller must know the next octet starts a command. */
void imap_parser_reset(struct imap_parser *p);
/* Release heap scratch.  The parser may be re-initialised afterwards. */
void imap_parser_free(struct imap_parser *p);
/* Heap octets currently held as scratch (for tests and memory accounting). */
size_t imap_parser_scratch_size(const struct imap_parser *p);

/* Helpers for command handlers.  All return false (and leave *out alone)
 * when the arg has the wrong type; a streamed literal is never a string. */
bool imap_arg_is_atom(const struct imap_arg *a, const char *name);	/* case-insensitive */
bool imap_arg_atom(const struct imap_arg *a, struct str *out);
bool imap_arg_astring(const struct imap_arg *a, struct str *out);	/* atom, quoted or literal */
bool imap_arg_string(const struct imap_arg *a, struct str *out);	/* quoted or literal only */
/* string, or the atom NIL (any case): *is_nil = true and *out empty. */
bool imap_arg_nstring(const struct imap_arg *a, struct str *out, bool *is_nil);
bool imap_arg_list(const struct imap_arg *a, const struct imap_arg **list, size_t *n);
/* RFC 3501 number: an atom of 1*DIGIT that fits 32 bits. */
bool imap_arg_number(const struct imap_arg *a, uint32_t *out);
/* RFC 9051 number64 (mod-sequences, RFC 7162): 1*DIGIT, at most 2^63-1. */
bool imap_arg_number64(const struct imap_arg *a, uint64_t *out);

/* Output helpers (append to out).  imap_write_string() writes a quoted
 * string, or a literal "{N}\r\n" + bytes when the bytes hold CR, LF, NUL
 * or 8-bit octets or are longer than 1024 octets.  imap_write_astring()
 * writes a bare atom, whatever its length, when every octet is a strict
 * ASCII ASTRING-CHAR other than "[" (kind to client parsers) and the value
 * is neither empty nor "NIL" in any case (it would read as nil in an
 * nstring); otherwise it is written as by imap_write_string(). */
void imap_write_astring(struct buf *out, struct str s);
void imap_write_string(struct buf *out, struct str s);

#endif
