#include "lib/base64.h"

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int base64_decode(const char *in, size_t len, struct buf *out)
{
	if (len % 4 != 0)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		int v[4];
		int pad = 0;
		for (int j = 0; j < 4; j++) {
			char ch = in[i + (size_t)j];
			if (ch == '=') {
				/* padding only at the very end, in the last two places */
				if (i + 4 != len || j < 2)
					return -1;
				pad++;
				v[j] = 0;
				continue;
			}
			if (pad > 0)
				return -1;
			v[j] = value(ch);
			if (v[j] < 0)
				return -1;
		}
		unsigned n = ((unsigned)v[0] << 18) | ((unsigned)v[1] << 12) | ((unsigned)v[2] << 6) | (unsigned)v[3];
		char b[3] = { (char)(n >> 16), (char)(n >> 8), (char)n };
		if (pad == 2 && (n & 0xffff) != 0)
			return -1;
		if (pad == 1 && (n & 0xff) != 0)
			return -1;
		buf_append(out, b, (size_t)(3 - pad));
	}
	return 0;
}

void base64_encode(const void *in, size_t len, struct buf *out)
{
	const unsigned char *p = in;
	for (size_t i = 0; i < len; i += 3) {
		unsigned n = (unsigned)p[i] << 16;
		if (i + 1 < len)
			n |= (unsigned)p[i + 1] << 8;
		if (i + 2 < len)
			n |= p[i + 2];
		char b[4] = { alphabet[(n >> 18) & 63], alphabet[(n >> 12) & 63],
			      i + 1 < len ? alphabet[(n >> 6) & 63] : '=',
			      i + 2 < len ? alphabet[n & 63] : '=' };
		buf_append(out, b, 4);
	}
}
