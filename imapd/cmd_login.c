/* LOGIN (RFC 3501 6.2.3). */
#include "imapd/imapd.h"

enum cmd_result cmd_login(struct cmd *c)
{
	struct str user, pass;
	if (c->nargs != 2 || !imap_arg_astring(&c->args[0], &user) ||
	    !imap_arg_astring(&c->args[1], &pass)) {
		cmd_bad(c, "LOGIN takes a user name and a password");
		return CMD_DONE;
	}
	return auth_login(c, user, pass);
}
