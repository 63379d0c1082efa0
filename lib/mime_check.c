/* mime_check.c - checks rendered ENVELOPE / BODY / BODYSTRUCTURE strings
 * against the RFC 3501 section 9 grammar (see mime.h).  Strict where a
 * client parser would be: single spaces, balanced lists, quoted strings with
 * only \" and \\ escapes, literal lengths, numbers, NIL.  Extension data is
 * optional, as in the grammar, but not allowed in BODY. */
#include "lib/mime.h"

#include <string.h>

struct chk {
	const char *p;
	size_t i, n;
	int depth;
};

#define MAX_DEPTH 1000

static bool ch(struct chk *c, char x)
{
	if (c->i < c->n && c->p[c->i] == x) {
		c->i++;
		return true;
	}
	return false;
}

static bool peek(const struct chk *c, char x)
{
	return c->i < c->n && c->p[c->i] == x;
}

static bool nil(struct chk *c)
{
	if (c->n - c->i >= 3 && memcmp(c->p + c->i, "NIL", 3) == 0) {
		c->i += 3;
		return true;
	}
	return false;
}

/* string = quoted / literal; the value (escapes kept) through v. */
static bool string(struct chk *c, struct str *v)
{
	if (ch(c, '"')) {
		size_t s = c->i;
		while (c->i < c->n && c->p[c->i] != '"') {
			unsigned char x = (unsigned char)c->p[c->i];
			if (x == 0 || x == '\r' || x == '\n' || x >= 0x80)
				return false;
			if (x == '\\') {
				if (c->i + 1 >= c->n || (c->p[c->i + 1] != '"' && c->p[c->i + 1] != '\\'))
					return false;
				c->i++;
			}
			c->i++;
		}
		if (v)
			*v = str_make(c->p + s, c->i - s);
		return ch(c, '"');
	}
	if (ch(c, '{')) {
		size_t s = c->i;
		while (c->i < c->n && c->p[c->i] >= '0' && c->p[c->i] <= '9')
			c->i++;
		uint64_t len;
		if (parse_u64(c->p + s, c->i - s, UINT32_MAX, &len) < 0)
			return false;
		if (!ch(c, '}') || !ch(c, '\r') || !ch(c, '\n') || c->n - c->i < len)
			return false;
		if (memchr(c->p + c->i, '\0', (size_t)len) != NULL)
			return false;
		if (v)
			*v = str_make(c->p + c->i, (size_t)len);
		c->i += (size_t)len;
		return true;
	}
	return false;
}

static bool nstring(struct chk *c)
{
	return nil(c) || string(c, NULL);
}

static bool number(struct chk *c)
{
	size_t s = c->i;
	while (c->i < c->n && c->p[c->i] >= '0' && c->p[c->i] <= '9')
		c->i++;
	uint64_t v;
	return parse_u64(c->p + s, c->i - s, UINT32_MAX, &v) == 0;
}

/* address = "(" addr-name SP addr-adl SP addr-mailbox SP addr-host ")" */
static bool address(struct chk *c)
{
	return ch(c, '(') && nstring(c) && ch(c, ' ') && nstring(c) && ch(c, ' ') && nstring(c) &&
	       ch(c, ' ') && nstring(c) && ch(c, ')');
}

static bool addr_list(struct chk *c)
{
	if (nil(c))
		return true;
	if (!ch(c, '(') || !address(c))
		return false;
	while (peek(c, '('))
		if (!address(c))
			return false;
	return ch(c, ')');
}

static bool envelope(struct chk *c)
{
	if (!ch(c, '(') || !nstring(c) || !ch(c, ' ') || !nstring(c))
		return false;
	for (int k = 0; k < 6; k++)
		if (!ch(c, ' ') || !addr_list(c))
			return false;
	return ch(c, ' ') && nstring(c) && ch(c, ' ') && nstring(c) && ch(c, ')');
}

/* body-fld-param = "(" string SP string *(SP string SP string) ")" / nil */
static bool params(struct chk *c)
{
	if (nil(c))
		return true;
	if (!ch(c, '(') || !string(c, NULL) || !ch(c, ' ') || !string(c, NULL))
		return false;
	while (ch(c, ' '))
		if (!string(c, NULL) || !ch(c, ' ') || !string(c, NULL))
			return false;
	return ch(c, ')');
}

static bool extension(struct chk *c)
{
	if (++c->depth > MAX_DEPTH)
		return false;
	bool ok;
	if (ch(c, '(')) {
		ok = extension(c);
		while (ok && ch(c, ' '))
			ok = extension(c);
		ok = ok && ch(c, ')');
	} else {
		ok = nstring(c) || number(c);
	}
	c->depth--;
	return ok;
}

/* [SP body-fld-dsp [SP body-fld-lang [SP body-fld-loc *(SP body-extension)]]] */
static bool ext_tail(struct chk *c)
{
	if (!ch(c, ' '))
		return true;
	if (!nil(c)) {
		if (!ch(c, '(') || !string(c, NULL) || !ch(c, ' ') || !params(c) || !ch(c, ')'))
			return false;
	}
	if (!ch(c, ' '))
		return true;
	if (!nstring(c)) {
		if (!ch(c, '(') || !string(c, NULL))
			return false;
		while (ch(c, ' '))
			if (!string(c, NULL))
				return false;
		if (!ch(c, ')'))
			return false;
	}
	if (!ch(c, ' '))
		return true;
	if (!nstring(c))
		return false;
	while (ch(c, ' '))
		if (!extension(c))
			return false;
	return true;
}

static bool ieq(struct str s, const char *z)
{
	size_t n = strlen(z);
	if (s.len != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((s.p[i] | 0x20) != (z[i] | 0x20))
			return false;
	return true;
}

static bool body(struct chk *c, bool ext)
{
	if (++c->depth > MAX_DEPTH || !ch(c, '('))
		return false;
	bool ok = true;
	if (peek(c, '(')) {
		/* body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart] */
		while (ok && peek(c, '('))
			ok = body(c, ext);
		ok = ok && ch(c, ' ') && string(c, NULL);
		if (ok && ext && ch(c, ' '))
			ok = params(c) && ext_tail(c);
	} else {
		struct str type, sub;
		ok = string(c, &type) && ch(c, ' ') && string(c, &sub) && ch(c, ' ') && params(c) &&
		     ch(c, ' ') && nstring(c) && ch(c, ' ') && nstring(c) && ch(c, ' ') &&
		     string(c, NULL) && ch(c, ' ') && number(c);
		if (ok && ieq(type, "message") && ieq(sub, "rfc822"))
			ok = ch(c, ' ') && envelope(c) && ch(c, ' ') && body(c, ext) && ch(c, ' ') && number(c);
		else if (ok && ieq(type, "text"))
			ok = ch(c, ' ') && number(c);
		if (ok && ext && ch(c, ' '))
			ok = nstring(c) && ext_tail(c);
	}
	c->depth--;
	return ok && ch(c, ')');
}

int mime_check(const char *s, size_t len, enum mime_check_what what)
{
	struct chk c = { s, 0, len, 0 };
	bool ok;

	if (s == NULL)
		return -1;
	if (what == MIME_CHECK_ENVELOPE)
		ok = envelope(&c);
	else
		ok = body(&c, what == MIME_CHECK_BODYSTRUCTURE);
	return ok && c.i == c.n ? 0 : -1;
}
