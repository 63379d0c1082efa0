/* mutf7.c - modified UTF-7 (RFC 3501 5.1.3) <-> UTF-8; see mutf7.h. */
#include "mutf7.h"

static const char b64chars[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == ',')
		return 63;
	return -1;
}

static bool printable(unsigned char c)
{
	return c >= 0x20 && c <= 0x7e;
}

size_t mutf7_utf8_next(const char *p, size_t len, uint32_t *cp)
{
	const unsigned char *s = (const unsigned char *)p;
	if (len == 0)
		return 0;
	unsigned char c = s[0];
	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	size_t n;
	uint32_t v, min;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2, v = c & 0x1f, min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3, v = c & 0x0f, min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4, v = c & 0x07, min = 0x10000;
	} else {
		return 0;	/* continuation byte, C0/C1 overlong lead, or > U+10FFFF */
	}
	if (len < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		v = (v << 6) | (s[i] & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return n;
}

bool mutf7_utf8_check(struct str in, const char **err)
{
	for (size_t i = 0; i < in.len;) {
		uint32_t cp;
		size_t n = mutf7_utf8_next(in.p + i, in.len - i, &cp);
		if (n == 0) {
			if (err != NULL)
				*err = "not valid UTF-8";
			return false;
		}
		i += n;
	}
	return true;
}

static void put_utf8(struct buf *out, uint32_t cp)
{
	char b[4];
	size_t n;
	if (cp < 0x80) {
		b[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (char)(0xc0 | (cp >> 6));
		b[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (char)(0xe0 | (cp >> 12));
		b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		b[0] = (char)(0xf0 | (cp >> 18));
		b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	buf_append(out, b, n);
}

int mutf7_decode(struct str in, struct buf *out, const char **err)
{
	const unsigned char *s = (const unsigned char *)in.p;
	size_t i = 0;
	while (i < in.len) {
		unsigned char c = s[i];
		if (!printable(c)) {
			*err = c >= 0x80 ? "8-bit octet (names must be sent in modified UTF-7)"
					 : "control character";
			return -1;
		}
		if (c != '&') {
			buf_putc(out, (char)c);
			i++;
			continue;
		}
		i++;
		if (i < in.len && s[i] == '-') {
			buf_putc(out, '&');
			i++;
			continue;
		}
		/* A base64 run of UTF-16 code units, up to "-". */
		uint32_t bits = 0, high = 0;
		unsigned nbits = 0;
		size_t units = 0;
		while (i < in.len && s[i] != '-') {
			int v = b64val(s[i]);
			if (v < 0) {
				*err = printable(s[i]) ? "invalid character in modified BASE64"
						       : "8-bit octet or control character in modified BASE64";
				return -1;
			}
			bits = (bits << 6) | (uint32_t)v;
			nbits += 6;
			i++;
			if (nbits < 16)
				continue;
			nbits -= 16;
			uint32_t u = (bits >> nbits) & 0xffff;
			bits &= (1u << nbits) - 1;
			units++;
			if (high != 0) {
				if (u < 0xdc00 || u > 0xdfff) {
					*err = "unpaired UTF-16 surrogate";
					return -1;
				}
				put_utf8(out, 0x10000 + ((high - 0xd800) << 10) + (u - 0xdc00));
				high = 0;
			} else if (u >= 0xd800 && u <= 0xdbff) {
				high = u;
			} else if (u >= 0xdc00 && u <= 0xdfff) {
				*err = "unpaired UTF-16 surrogate";
				return -1;
			} else if (u >= 0x20 && u <= 0x7e) {
				*err = "printable US-ASCII character encoded in BASE64";
				return -1;
			} else {
				put_utf8(out, u);
			}
		}
		if (i == in.len) {
			*err = "\"&\" not closed by \"-\"";
			return -1;
		}
		if (units == 0) {
			*err = "empty or incomplete BASE64 sequence";
			return -1;
		}
		if (nbits >= 6 || bits != 0) {
			*err = "non-canonical BASE64 (leftover bits)";
			return -1;
		}
		if (high != 0) {
			*err = "unpaired UTF-16 surrogate";
			return -1;
		}
		i++;	/* the "-" */
		/* "-&" starting another run is a null shift (the two runs should
		 * have been one); "-&-" is an ordinary "&" after the run. */
		if (i < in.len && s[i] == '&' && (i + 1 >= in.len || s[i + 1] != '-')) {
			*err = "null shift between two BASE64 sequences";
			return -1;
		}
	}
	return 0;
}

static void put_unit(struct buf *out, uint32_t u, uint32_t *bits, unsigned *nbits)
{
	*bits = (*bits << 16) | u;
	*nbits += 16;
	while (*nbits >= 6) {
		*nbits -= 6;
		buf_putc(out, b64chars[(*bits >> *nbits) & 63]);
	}
	*bits &= (1u << *nbits) - 1;
}

int mutf7_encode(struct str in, struct buf *out, const char **err)
{
	size_t i = 0;
	while (i < in.len) {
		unsigned char c = (unsigned char)in.p[i];
		if (printable(c)) {
			if (c == '&')
				buf_append(out, "&-", 2);
			else
				buf_putc(out, (char)c);
			i++;
			continue;
		}
		/* Everything up to the next printable US-ASCII character goes
		 * into one base64 run (RFC 3501: no null shifts). */
		buf_putc(out, '&');
		uint32_t bits = 0;
		unsigned nbits = 0;
		while (i < in.len && !printable((unsigned char)in.p[i])) {
			uint32_t cp;
			size_t n = mutf7_utf8_next(in.p + i, in.len - i, &cp);
			if (n == 0) {
				*err = "not valid UTF-8";
				return -1;
			}
			i += n;
			if (cp >= 0x10000) {
				cp -= 0x10000;
				put_unit(out, 0xd800 + (cp >> 10), &bits, &nbits);
				put_unit(out, 0xdc00 + (cp & 0x3ff), &bits, &nbits);
			} else {
				put_unit(out, cp, &bits, &nbits);
			}
		}
		if (nbits > 0)
			buf_putc(out, b64chars[(bits << (6 - nbits)) & 63]);
		buf_putc(out, '-');
	}
	return 0;
}
