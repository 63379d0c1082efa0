/* AUTHENTICATE (RFC 3501 6.2.2) with the PLAIN mechanism (RFC 4616) and an
 * optional initial response (SASL-IR, RFC 4959). */
#include <string.h>

#include "imapd/imapd.h"
#include "lib/base64.h"

static enum cmd_result plain_response(struct cmd *c, struct str b64)
{
	/* RFC 4959 section 3: "=" is an empty initial response. */
	if (b64.len == 1 && b64.p[0] == '=')
		b64.len = 0;
	struct buf raw = BUF_INIT;
	if (base64_decode(b64.p, b64.len, &raw) < 0) {
		buf_free(&raw);
		cmd_bad(c, "Invalid base64 in the authentication response");
		return CMD_DONE;
	}
	/* message = [authzid] NUL authcid NUL passwd (RFC 4616 section 2) */
	char *copy = arena_alloc(c->arena, raw.len + 1);
	memcpy(copy, buf_ptr(&raw), raw.len);
	size_t n = raw.len;
	secure_zero(raw.data, raw.cap);
	buf_free(&raw);
	char *nul1 = memchr(copy, '\0', n);
	char *nul2 = nul1 ? memchr(nul1 + 1, '\0', n - (size_t)(nul1 + 1 - copy)) : NULL;
	if (nul1 == NULL || nul2 == NULL || memchr(nul2 + 1, '\0', n - (size_t)(nul2 + 1 - copy)) != NULL) {
		secure_zero(copy, n);
		cmd_bad(c, "Malformed PLAIN response");
		return CMD_DONE;
	}
	struct str authzid = str_make(copy, (size_t)(nul1 - copy));
	struct str authcid = str_make(nul1 + 1, (size_t)(nul2 - nul1 - 1));
	struct str passwd = str_make(nul2 + 1, n - (size_t)(nul2 + 1 - copy));
	if (authzid.len > 0 && !str_eq(authzid, authcid)) {
		secure_zero(copy, n);
		/* RFC 5530: no proxy authorization here. */
		cmd_no(c, "[AUTHORIZATIONFAILED] Cannot act as another user");
		return CMD_DONE;
	}
	return auth_login(c, authcid, passwd);
}

static void on_line(struct cmd *c, struct str line)
{
	struct session *s = c->s;
	session_ref(s);
	c->on_line = NULL;
	enum cmd_result r;
	if (line.len == 1 && line.p[0] == '*') {
		/* RFC 3501 6.2.2: the client cancelled. */
		cmd_bad(c, "Authentication cancelled");
		r = CMD_DONE;
	} else {
		r = plain_response(c, line);
	}
	/* The line lives in the command arena, freed by cmd_done. */
	if (line.len > 0)
		secure_zero((void *)line.p, line.len);
	if (r == CMD_DONE)
		cmd_done(c);
	session_unref(s);
}

enum cmd_result cmd_authenticate(struct cmd *c)
{
	struct session *s = c->s;
	if (c->nargs < 1 || c->nargs > 2 || c->args[0].type != IMAP_ARG_ATOM) {
		cmd_bad(c, "AUTHENTICATE takes a mechanism name and an optional initial response");
		return CMD_DONE;
	}
	if (!imap_arg_is_atom(&c->args[0], "PLAIN")) {
		cmd_no(c, "Unsupported authentication mechanism");
		return CMD_DONE;
	}
	if (!worker_plaintext_allowed(s)) {
		cmd_no(c, "[PRIVACYREQUIRED] Plaintext authentication is disabled here; use STARTTLS or port 993");
		return CMD_DONE;
	}
	if (c->nargs == 2) {
		if (c->args[1].type != IMAP_ARG_ATOM) {
			cmd_bad(c, "The initial response must be base64");
			return CMD_DONE;
		}
		return plain_response(c, c->args[1].str);
	}
	/* PLAIN has no server challenge: an empty continuation. */
	session_write(s, "+ \r\n", 4);
	c->on_line = on_line;
	s->input = INPUT_LINE;
	return CMD_PENDING;
}
