/* STARTTLS (RFC 3501 6.2.1, RFC 2595). */
#include "imapd/imapd.h"

enum cmd_result cmd_starttls(struct cmd *c)
{
	struct session *s = c->s;
	if (c->nargs != 0) {
		cmd_bad(c, "STARTTLS takes no arguments");
		return CMD_DONE;
	}
	if (s->tls != TLS_NONE) {
		cmd_bad(c, "TLS is already active");
		return CMD_DONE;
	}
	if (s->w->tls == NULL) {
		cmd_no(c, "TLS is not configured on this server");
		return CMD_DONE;
	}
	cmd_ok(c, "Begin TLS negotiation now");
	session_starttls(s);
	return CMD_DONE;
}
