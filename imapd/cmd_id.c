/* ID (RFC 2971): log what the client says about itself, answer with our
 * name.  Field values from clients are logged sanitised (log.c strips
 * control characters) and bounded. */
#include <stdio.h>

#include "imapd/imapd.h"

enum cmd_result cmd_id(struct cmd *c)
{
	struct session *s = c->s;
	if (c->nargs != 1) {
		cmd_bad(c, "ID takes one argument: a list or NIL");
		return CMD_DONE;
	}
	const struct imap_arg *a = &c->args[0];
	if (a->type == IMAP_ARG_LIST) {
		/* RFC 2971 3.3: at most 30 field-value pairs, field names at
		 * most 30 octets, values at most 1024 octets. */
		if (a->nlist % 2 != 0 || a->nlist > 60) {
			cmd_bad(c, "ID list must hold at most 30 field/value pairs");
			return CMD_DONE;
		}
		struct buf info = BUF_INIT;
		for (size_t i = 0; i < a->nlist; i += 2) {
			struct str k, v;
			bool nil = false;
			if (!imap_arg_string(&a->list[i], &k) || k.len > 30 ||
			    !imap_arg_nstring(&a->list[i + 1], &v, &nil) || v.len > 1024) {
				buf_free(&info);
				cmd_bad(c, "ID fields are strings (at most 30 octets) with string or NIL values");
				return CMD_DONE;
			}
			buf_printf(&info, "%s%.*s=%.*s", i ? " " : "", STR_FMT(k),
				   nil ? 3 : (int)MIN(v.len, (size_t)64), nil ? "NIL" : v.p);
		}
		if (info.len > 0)
			log_info(&s->log, "client ID: %s", buf_ptr(&info));
		buf_free(&info);
	} else if (!imap_arg_is_atom(a, "NIL")) {
		cmd_bad(c, "ID takes a list or NIL");
		return CMD_DONE;
	}
	session_printf(s, "* ID (\"name\" \"imapd\" \"version\" \"%s\")\r\n", IMAPD_VERSION);
	cmd_ok(c, "ID completed");
	return CMD_DONE;
}
