/* NAMESPACE (RFC 2342): one personal namespace with "/" as the hierarchy
 * delimiter; no other users' or shared namespaces. */
#include "imapd/imapd.h"

enum cmd_result cmd_namespace(struct cmd *c)
{
	if (c->nargs != 0) {
		cmd_bad(c, "NAMESPACE takes no arguments");
		return CMD_DONE;
	}
	session_printf(c->s, "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
	cmd_ok(c, "Namespace completed");
	return CMD_DONE;
}
