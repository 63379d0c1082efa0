/* Unit tests for the MIME parser (lib/mime.c): ENVELOPE, BODYSTRUCTURE and
 * BODY strings, the part table, BODY[section], SEARCH text, and hostile
 * input (depth and part bombs, broken boundaries, NUL, 8-bit, bare LF).
 * Every rendered string is also checked against the RFC 3501 grammar. */
#include <stdlib.h>
#include <time.h>

#include "lib/arena.h"
#include "lib/buf.h"
#include "lib/mime.h"
#include "lib/util.h"
#include "tests/unit/unit.h"

struct parsed {
	struct arena a;
	struct mime_result r;
	const char *m;
	size_t n;
};

static void parse_n(struct parsed *p, const char *m, size_t n, const struct mime_limits *lim)
{
	arena_init(&p->a, 4096);
	p->m = m;
	p->n = n;
	mime_parse(m, n, lim, &p->a, &p->r);
	CHECK(mime_check(p->r.envelope, strlen(p->r.envelope), MIME_CHECK_ENVELOPE) == 0);
	CHECK(mime_check(p->r.bodystructure, strlen(p->r.bodystructure), MIME_CHECK_BODYSTRUCTURE) == 0);
	CHECK(mime_check(p->r.body, strlen(p->r.body), MIME_CHECK_BODY) == 0);
}

static void parse(struct parsed *p, const char *m)
{
	parse_n(p, m, strlen(m), NULL);
}

static void done(struct parsed *p)
{
	buf_free(&p->r.parts);
	arena_free(&p->a);
}

/* BODY[spec] through the stored table; the same bytes must come out when
 * the table is missing (the message is parsed again). */
static int sec(const struct parsed *p, const char *spec, struct buf *out)
{
	struct buf again = BUF_INIT;
	buf_clear(out);
	int rc = mime_section(p->m, p->n, buf_ptr(&p->r.parts), p->r.parts.len, str_cstr(spec), out);
	int rc2 = mime_section(p->m, p->n, NULL, 0, str_cstr(spec), &again);
	CHECK(rc == rc2);
	CHECK(again.len == out->len && memcmp(buf_ptr(&again), buf_ptr(out), out->len) == 0);
	buf_free(&again);
	return rc;
}

/* unit.h's CHECK_EQ_MEM truncates its message; these strings are long. */
static void check_mem(const char *file, int line, const char *got, size_t glen, const char *want)
{
	size_t wl = strlen(want), i = 0;
	unit_checks++;
	if (glen == wl && memcmp(got, want, wl) == 0)
		return;
	while (i < glen && i < wl && got[i] == want[i])
		i++;
	fprintf(stderr, "    want: \"%s\"\n    got:  \"%.*s\"\n    (first difference at %zu)\n",
		want, (int)glen, got, i);
	unit_fail(file, line, "bytes differ");
}

#define CHECK_MEM(p, n, expect) check_mem(__FILE__, __LINE__, (p), (n), (expect))
#define CHECK_STR(got, expect) check_mem(__FILE__, __LINE__, (got), strlen(got), (expect))
#define CHECK_SEC(p, spec, expect) do { struct buf o_ = BUF_INIT; \
	CHECK_EQ_INT(sec((p), (spec), &o_), 0); CHECK_MEM(buf_ptr(&o_), o_.len, (expect)); \
	buf_free(&o_); } while (0)

/* ------------------------------------------------------------------ */

static const char msg_plain[] =
	"From: Alice Example <alice@example.com>\r\n"
	"To: bob@example.org\r\n"
	"Subject: Hello\r\n"
	"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
	"Message-ID: <B27397-0100000@cac.washington.edu>\r\n"
	"\r\n"
	"Hello Bob,\r\n"
	"this is a test.\r\n";

TEST(mime_plain_without_content_type)
{
	struct parsed p;
	parse(&p, msg_plain);
	CHECK_STR(p.r.envelope,
		"(\"Mon, 7 Feb 1994 21:52:25 -0800\" \"Hello\" "
		"((\"Alice Example\" NIL \"alice\" \"example.com\")) "
		"((\"Alice Example\" NIL \"alice\" \"example.com\")) "
		"((\"Alice Example\" NIL \"alice\" \"example.com\")) "
		"((NIL NIL \"bob\" \"example.org\")) NIL NIL NIL "
		"\"<B27397-0100000@cac.washington.edu>\")");
	CHECK_STR(p.r.bodystructure,
		"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 29 2 NIL NIL NIL NIL)");
	CHECK_STR(p.r.body, "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 29 2)");
	CHECK_EQ_INT(p.r.sent_date, 760686745);
	CHECK_EQ_INT(p.r.sent_tz, -480);
	CHECK_EQ_INT(p.r.nparts, 1);
	CHECK(!p.r.limited);

	const char *body = strstr(msg_plain, "\r\n\r\n") + 4;
	size_t hlen = (size_t)(body - msg_plain);
	struct buf o = BUF_INIT;
	CHECK_EQ_INT(sec(&p, "", &o), 0);
	CHECK_MEM(buf_ptr(&o), o.len, msg_plain);
	CHECK_EQ_INT(sec(&p, "HEADER", &o), 0);
	CHECK(o.len == hlen && memcmp(buf_ptr(&o), msg_plain, hlen) == 0);
	buf_free(&o);
	CHECK_SEC(&p, "TEXT", "Hello Bob,\r\nthis is a test.\r\n");
	CHECK_SEC(&p, "1", "Hello Bob,\r\nthis is a test.\r\n");
	CHECK_SEC(&p, "2", "");
	CHECK_SEC(&p, "1.1", "");
	CHECK_SEC(&p, "1.HEADER", "");		/* part 1 is not message/rfc822 */
	CHECK_SEC(&p, "9.9", "");
	CHECK_SEC(&p, "HEADER.FIELDS (SUBJECT from)",
		  "From: Alice Example <alice@example.com>\r\nSubject: Hello\r\n\r\n");
	CHECK_SEC(&p, "header.fields (\"Message-ID\" X-Missing)",
		  "Message-ID: <B27397-0100000@cac.washington.edu>\r\n\r\n");
	CHECK_SEC(&p, "HEADER.FIELDS.NOT (Subject Date Message-ID)",
		  "From: Alice Example <alice@example.com>\r\nTo: bob@example.org\r\n\r\n");
	CHECK_SEC(&p, "HEADER.FIELDS (X-None)", "\r\n");

	struct buf t = BUF_INIT;
	mime_body_text(p.m, p.n, buf_ptr(&p.r.parts), p.r.parts.len, &t);
	CHECK_MEM(buf_ptr(&t), t.len, "Hello Bob,\nthis is a test.\n");
	buf_free(&t);
	done(&p);
}

static const char msg_alt[] =
	"From: a@b.c\r\n"
	"Subject: alt\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/alternative; boundary=\"XX\"\r\n"
	"\r\n"
	"preamble\r\n"
	"--XX\r\n"
	"Content-Type: text/plain; charset=utf-8\r\n"
	"\r\n"
	"plain\r\n"
	"--XX\r\n"
	"Content-Type: text/html; charset=\"utf-8\"\r\n"
	"Content-Transfer-Encoding: quoted-printable\r\n"
	"\r\n"
	"<p>h=C3=A9</p>\r\n"
	"--XX--\r\n"
	"epilogue\r\n";

TEST(mime_multipart_alternative)
{
	struct parsed p;
	parse(&p, msg_alt);
	CHECK_STR(p.r.bodystructure,
		"((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 5 0 NIL NIL NIL NIL)"
		"(\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 14 0 NIL NIL NIL NIL)"
		" \"alternative\" (\"boundary\" \"XX\") NIL NIL NIL)");
	CHECK_STR(p.r.body,
		"((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 5 0)"
		"(\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 14 0) \"alternative\")");
	CHECK_STR(p.r.envelope,
		"(NIL \"alt\" ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) "
		"NIL NIL NIL NIL NIL)");
	CHECK_EQ_INT(p.r.sent_date, INT64_MIN);
	CHECK_EQ_INT(p.r.nparts, 3);
	CHECK_SEC(&p, "1", "plain");
	CHECK_SEC(&p, "2", "<p>h=C3=A9</p>");
	CHECK_SEC(&p, "1.MIME", "Content-Type: text/plain; charset=utf-8\r\n\r\n");
	CHECK_SEC(&p, "2.MIME", "Content-Type: text/html; charset=\"utf-8\"\r\n"
				"Content-Transfer-Encoding: quoted-printable\r\n\r\n");
	CHECK_SEC(&p, "TEXT", "preamble\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain\r\n"
			      "--XX\r\nContent-Type: text/html; charset=\"utf-8\"\r\n"
			      "Content-Transfer-Encoding: quoted-printable\r\n\r\n<p>h=C3=A9</p>\r\n"
			      "--XX--\r\nepilogue\r\n");
	CHECK_SEC(&p, "3", "");
	CHECK_SEC(&p, "2.1", "");

	struct buf t = BUF_INIT;
	mime_body_text(p.m, p.n, buf_ptr(&p.r.parts), p.r.parts.len, &t);
	CHECK_MEM(buf_ptr(&t), t.len, "plain\n<p>h\xc3\xa9</p>");
	buf_free(&t);
	done(&p);
}

static const char msg_mixed[] =
	"From: \"Doe, John\" <john@example.com>\r\n"
	"To: Mary <mary@x.test>, \"Smith, Bob\" <bob@y.test>\r\n"
	"Subject: files\r\n"
	"Content-Type: multipart/mixed;\r\n"
	" boundary=\"==b1==\"\r\n"
	"\r\n"
	"--==b1==\r\n"
	"Content-Type: text/plain\r\n"
	"\r\n"
	"See attached.\r\n"
	"\r\n"
	"--==b1==\r\n"
	"Content-Type: application/pdf; name=\"doc.pdf\"\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"Content-Disposition: attachment; filename=\"doc.pdf\"\r\n"
	"Content-ID: <pdf1@x>\r\n"
	"Content-Description: The doc\r\n"
	"\r\n"
	"JVBERi0xLjQK\r\n"
	"--==b1==\r\n"
	"Content-Type: text/plain; charset=iso-8859-1\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"Content-Disposition: attachment;\r\n"
	" filename*0*=utf-8''%E2%82%AC%20rates;\r\n"
	" filename*1=\".txt\"\r\n"
	"Content-Language: en, de\r\n"
	"Content-Location: http://x.test/r.txt\r\n"
	"Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\n"
	"\r\n"
	"Y2Fm6Q==\r\n"
	"--==b1==--\r\n";

TEST(mime_multipart_mixed_attachments)
{
	struct parsed p;
	parse(&p, msg_mixed);
	CHECK_STR(p.r.envelope,
		"(NIL \"files\" ((\"Doe, John\" NIL \"john\" \"example.com\")) "
		"((\"Doe, John\" NIL \"john\" \"example.com\")) ((\"Doe, John\" NIL \"john\" \"example.com\")) "
		"((\"Mary\" NIL \"mary\" \"x.test\")(\"Smith, Bob\" NIL \"bob\" \"y.test\")) NIL NIL NIL NIL)");
	CHECK_STR(p.r.bodystructure,
		"((\"text\" \"plain\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 15 1 NIL NIL NIL NIL)"
		"(\"application\" \"pdf\" (\"name\" \"doc.pdf\") \"<pdf1@x>\" \"The doc\" \"base64\" 12 NIL "
		"(\"attachment\" (\"filename\" \"doc.pdf\")) NIL NIL)"
		"(\"text\" \"plain\" (\"charset\" \"iso-8859-1\") NIL NIL \"base64\" 8 0 \"Q2hlY2sgSW50ZWdyaXR5IQ==\" "
		"(\"attachment\" (\"filename*\" \"utf-8''%E2%82%AC%20rates.txt\")) (\"en\" \"de\") \"http://x.test/r.txt\")"
		" \"mixed\" (\"boundary\" \"==b1==\") NIL NIL NIL)");
	CHECK_STR(p.r.body,
		"((\"text\" \"plain\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 15 1)"
		"(\"application\" \"pdf\" (\"name\" \"doc.pdf\") \"<pdf1@x>\" \"The doc\" \"base64\" 12)"
		"(\"text\" \"plain\" (\"charset\" \"iso-8859-1\") NIL NIL \"base64\" 8 0) \"mixed\")");
	CHECK_SEC(&p, "1", "See attached.\r\n");
	CHECK_SEC(&p, "1.MIME", "Content-Type: text/plain\r\n\r\n");
	CHECK_SEC(&p, "2", "JVBERi0xLjQK");
	CHECK_SEC(&p, "3", "Y2Fm6Q==");
	CHECK_SEC(&p, "4", "");
	CHECK_SEC(&p, "2.1", "");
	CHECK_SEC(&p, "3.HEADER", "");
	CHECK_SEC(&p, "HEADER.FIELDS (SUBJECT from)",
		  "From: \"Doe, John\" <john@example.com>\r\nSubject: files\r\n\r\n");
	CHECK_SEC(&p, "HEADER.FIELDS.NOT (subject \"TO\" {4}\r\nFROM)",
		  "Content-Type: multipart/mixed;\r\n boundary=\"==b1==\"\r\n\r\n");

	/* the base64 text part is ISO-8859-1 "caf\xe9" */
	struct buf t = BUF_INIT;
	mime_body_text(p.m, p.n, buf_ptr(&p.r.parts), p.r.parts.len, &t);
	CHECK_MEM(buf_ptr(&t), t.len, "See attached.\n\ncaf\xc3\xa9");
	buf_free(&t);
	done(&p);
}

static const char msg_nested[] =
	"From: x@y.z\r\n"
	"Subject: nest\r\n"
	"Content-Type: multipart/mixed; boundary=outer\r\n"
	"\r\n"
	"--outer\r\n"
	"Content-Type: multipart/alternative; boundary=inner\r\n"
	"\r\n"
	"--inner\r\n"
	"\r\n"
	"one\r\n"
	"--inner\r\n"
	"Content-Type: text/html\r\n"
	"\r\n"
	"<b>two</b>\r\n"
	"--inner--\r\n"
	"--outer\r\n"
	"Content-Type: message/rfc822\r\n"
	"\r\n"
	"From: Carol <carol@c.test>\r\n"
	"Subject: inner msg\r\n"
	"Date: 1 Jan 2020 00:00:00 +0000\r\n"
	"Content-Type: multipart/mixed; boundary=m2\r\n"
	"\r\n"
	"--m2\r\n"
	"Content-Type: text/plain\r\n"
	"\r\n"
	"hello\r\n"
	"--m2\r\n"
	"Content-Type: image/gif\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"R0lGOD==\r\n"
	"--m2--\r\n"
	"--outer--\r\n";

#define CAROL_ENV "(\"1 Jan 2020 00:00:00 +0000\" \"inner msg\" ((\"Carol\" NIL \"carol\" \"c.test\")) " \
	"((\"Carol\" NIL \"carol\" \"c.test\")) ((\"Carol\" NIL \"carol\" \"c.test\")) NIL NIL NIL NIL NIL)"

TEST(mime_nested_and_message_rfc822)
{
	struct parsed p;
	parse(&p, msg_nested);
	CHECK_STR(p.r.bodystructure,
		"(((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3 0 NIL NIL NIL NIL)"
		"(\"text\" \"html\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 10 0 NIL NIL NIL NIL)"
		" \"alternative\" (\"boundary\" \"inner\") NIL NIL NIL)"
		"(\"message\" \"rfc822\" NIL NIL NIL \"7BIT\" 252 " CAROL_ENV " "
		"((\"text\" \"plain\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 5 0 NIL NIL NIL NIL)"
		"(\"image\" \"gif\" NIL NIL NIL \"base64\" 8 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"m2\") NIL NIL NIL)"
		" 14 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"outer\") NIL NIL NIL)");
	CHECK_STR(p.r.body,
		"(((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3 0)"
		"(\"text\" \"html\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 10 0) \"alternative\")"
		"(\"message\" \"rfc822\" NIL NIL NIL \"7BIT\" 252 " CAROL_ENV " "
		"((\"text\" \"plain\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 5 0)"
		"(\"image\" \"gif\" NIL NIL NIL \"base64\" 8) \"mixed\") 14) \"mixed\")");
	CHECK_EQ_INT(p.r.nparts, 8);	/* root, 1, 1.1, 1.2, 2, 2's message, 2.1, 2.2 */

	CHECK_SEC(&p, "1.1", "one");
	CHECK_SEC(&p, "1.2", "<b>two</b>");
	CHECK_SEC(&p, "1.2.MIME", "Content-Type: text/html\r\n\r\n");
	CHECK_SEC(&p, "1", "--inner\r\n\r\none\r\n--inner\r\nContent-Type: text/html\r\n\r\n<b>two</b>\r\n--inner--");
	CHECK_SEC(&p, "1.MIME", "Content-Type: multipart/alternative; boundary=inner\r\n\r\n");
	CHECK_SEC(&p, "1.HEADER", "");
	CHECK_SEC(&p, "1.3", "");
	CHECK_SEC(&p, "2.HEADER", "From: Carol <carol@c.test>\r\nSubject: inner msg\r\n"
				  "Date: 1 Jan 2020 00:00:00 +0000\r\n"
				  "Content-Type: multipart/mixed; boundary=m2\r\n\r\n");
	CHECK_SEC(&p, "2.HEADER.FIELDS (subject)", "Subject: inner msg\r\n\r\n");
	CHECK_SEC(&p, "2.HEADER.FIELDS.NOT (From Date Content-Type)", "Subject: inner msg\r\n\r\n");
	CHECK_SEC(&p, "2.MIME", "Content-Type: message/rfc822\r\n\r\n");
	CHECK_SEC(&p, "2.TEXT", "--m2\r\nContent-Type: text/plain\r\n\r\nhello\r\n--m2\r\n"
				"Content-Type: image/gif\r\nContent-Transfer-Encoding: base64\r\n\r\n"
				"R0lGOD==\r\n--m2--");
	CHECK_SEC(&p, "2.1", "hello");
	CHECK_SEC(&p, "2.1.MIME", "Content-Type: text/plain\r\n\r\n");
	CHECK_SEC(&p, "2.2", "R0lGOD==");
	CHECK_SEC(&p, "2.2.MIME", "Content-Type: image/gif\r\nContent-Transfer-Encoding: base64\r\n\r\n");
	CHECK_SEC(&p, "2.3", "");
	CHECK_SEC(&p, "2.1.1", "");
	CHECK_SEC(&p, "3.HEADER", "");
	CHECK_SEC(&p, "9.9", "");

	struct buf o = BUF_INIT;
	CHECK_EQ_INT(sec(&p, "2", &o), 0);
	CHECK_EQ_INT(o.len, 252);
	CHECK(o.len > 11 && memcmp(o.data + o.off, "From: Carol", 11) == 0 &&
	      memcmp(o.data + o.off + o.len - 6, "--m2--", 6) == 0);
	buf_free(&o);

	struct buf t = BUF_INIT;
	mime_body_text(p.m, p.n, buf_ptr(&p.r.parts), p.r.parts.len, &t);
	CHECK_MEM(buf_ptr(&t), t.len, "one\n<b>two</b>\nhello");
	buf_free(&t);
	done(&p);
}

/* A message whose top-level type is message/rfc822, and a non-multipart
 * encapsulated message: "N.1" is its body. */
TEST(mime_message_rfc822_single_part)
{
	static const char m[] =
		"Subject: outer\r\n"
		"Content-Type: multipart/mixed; boundary=\"b\"\r\n"
		"\r\n"
		"--b\r\n"
		"Content-Type: message/rfc822\r\n"
		"Content-Description: fwd\r\n"
		"\r\n"
		"Subject: inner\r\n"
		"\r\n"
		"inner body\r\n"
		"--b--\r\n";
	struct parsed p;
	parse(&p, m);
	CHECK_STR(p.r.bodystructure,
		"((\"message\" \"rfc822\" NIL NIL \"fwd\" \"7BIT\" 28 (NIL \"inner\" NIL NIL NIL NIL NIL NIL NIL NIL) "
		"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 10 0 NIL NIL NIL NIL) 2 "
		"NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"b\") NIL NIL NIL)");
	CHECK_SEC(&p, "1", "Subject: inner\r\n\r\ninner body");
	CHECK_SEC(&p, "1.1", "inner body");
	CHECK_SEC(&p, "1.1.MIME", "Subject: inner\r\n\r\n");
	CHECK_SEC(&p, "1.2", "");
	CHECK_SEC(&p, "1.TEXT", "inner body");
	CHECK_SEC(&p, "1.HEADER", "Subject: inner\r\n\r\n");
	done(&p);

	static const char top[] =
		"Content-Type: message/rfc822\r\n"
		"\r\n"
		"Subject: wrapped\r\n"
		"\r\n"
		"x";
	parse(&p, top);
	CHECK_STR(p.r.bodystructure,
		"(\"message\" \"rfc822\" NIL NIL NIL \"7BIT\" 21 (NIL \"wrapped\" NIL NIL NIL NIL NIL NIL NIL NIL) "
		"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 1 0 NIL NIL NIL NIL) 2 NIL NIL NIL NIL)");
	CHECK_SEC(&p, "1", "Subject: wrapped\r\n\r\nx");
	CHECK_SEC(&p, "1.HEADER", "Subject: wrapped\r\n\r\n");
	CHECK_SEC(&p, "1.1", "x");
	CHECK_SEC(&p, "TEXT", "Subject: wrapped\r\n\r\nx");
	done(&p);
}

TEST(mime_digest_defaults_to_message)
{
	static const char m[] =
		"Content-Type: multipart/digest; boundary=d\r\n"
		"\r\n"
		"--d\r\n"
		"\r\n"
		"Subject: one\r\n"
		"\r\n"
		"1\r\n"
		"--d\r\n"
		"Content-Type: text/plain\r\n"
		"\r\n"
		"2\r\n"
		"--d--\r\n";
	struct parsed p;
	parse(&p, m);
	CHECK_STR(p.r.body,
		"((\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 17 (NIL \"one\" NIL NIL NIL NIL NIL NIL NIL NIL) "
		"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 1 0) 2)"
		"(\"text\" \"plain\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 1 0) \"digest\")");
	CHECK_SEC(&p, "1.1", "1");
	CHECK_SEC(&p, "1.HEADER", "Subject: one\r\n\r\n");
	done(&p);
}

TEST(mime_encoded_words)
{
	static const char m[] =
		"Subject: =?UTF-8?B?w6lsw6h2ZQ==?= and =?ISO-8859-1?Q?caf=E9_au_lait?=\r\n"
		"Subject: =?utf-8?q?split_?= \r\n"
		"   =?utf-8?q?words?=\r\n"
		"Subject: =?utf-8?q?=C3?= =?utf-8?q?=A9?= =?iso-8859-1?q?=E9?=\r\n"
		"Subject: =?bogus?x?abc?= =?utf-8?q?no end\r\n"
		"Subject: =?koi8-r?b?8NLJ18XU?= =?windows-1252?q?=80?= =?UTF-8*fr?Q?=C3=A7a?=\r\n"
		"From: =?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>\r\n"
		"\r\n"
		"x\r\n";
	struct parsed p;
	parse(&p, m);
	/* ENVELOPE carries encoded-words raw (RFC 3501) */
	CHECK_STR(p.r.envelope,
		"(NIL \"=?UTF-8?B?w6lsw6h2ZQ==?= and =?ISO-8859-1?Q?caf=E9_au_lait?=\" "
		"((\"=?ISO-8859-1?Q?Andr=E9?= Pirard\" NIL \"PIRARD\" \"vm1.ulg.ac.be\")) "
		"((\"=?ISO-8859-1?Q?Andr=E9?= Pirard\" NIL \"PIRARD\" \"vm1.ulg.ac.be\")) "
		"((\"=?ISO-8859-1?Q?Andr=E9?= Pirard\" NIL \"PIRARD\" \"vm1.ulg.ac.be\")) NIL NIL NIL NIL NIL)");
	struct buf t = BUF_INIT;
	mime_header_decoded(p.m, p.n, "subject", &p.a, &t);
	CHECK_MEM(buf_ptr(&t), t.len,
		"\xc3\xa9l\xc3\xa8ve and caf\xc3\xa9 au lait\n"
		"split words\n"
		"\xc3\xa9\xc3\xa9\n"
		"=?bogus?x?abc?= =?utf-8?q?no end\n"
		"\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82\xe2\x82\xac\xc3\xa7""a");
	buf_clear(&t);
	mime_header_decoded(p.m, p.n, "From", &p.a, &t);
	CHECK_MEM(buf_ptr(&t), t.len, "Andr\xc3\xa9 Pirard <PIRARD@vm1.ulg.ac.be>");
	buf_clear(&t);
	mime_header_decoded(p.m, p.n, "X-None", &p.a, &t);
	CHECK_EQ_INT(t.len, 0);
	buf_free(&t);
	done(&p);
}

TEST(mime_addresses_groups_and_oddities)
{
	static const char m[] =
		"From: \"Joe \\\"Q\\\" Public\" <joe@example.com> (ignored)\r\n"
		"To: undisclosed-recipients:;\r\n"
		"Cc: Friends: alice@a.test, \"Bob B\" <bob@b.test>;, carol, (Comment Only) dave@d.test (Dave D),\r\n"
		" <@r1.test,@r2.test:eve@e.test>, \"quoted local\"@q.test, John Q. Public <jqp@p.test>,\r\n"
		" Jane Doe, <>, ,, a@b@c, x . y @ example . org\r\n"
		"Bcc: Name <a@b, G: g1@x\r\n"
		"Reply-To:\r\n"
		"Sender: (nobody)\r\n"
		"In-Reply-To: <a@b>\r\n"
		"\r\n";
	struct parsed p;
	parse(&p, m);
	CHECK_STR(p.r.envelope,
		"(NIL NIL ((\"Joe \\\"Q\\\" Public\" NIL \"joe\" \"example.com\")) "
		"((\"Joe \\\"Q\\\" Public\" NIL \"joe\" \"example.com\")) "
		"((\"Joe \\\"Q\\\" Public\" NIL \"joe\" \"example.com\")) "
		"((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) "
		"((NIL NIL \"Friends\" NIL)(NIL NIL \"alice\" \"a.test\")(\"Bob B\" NIL \"bob\" \"b.test\")(NIL NIL NIL NIL)"
		"(NIL NIL \"carol\" \"MISSING_DOMAIN\")(\"Dave D\" NIL \"dave\" \"d.test\")"
		"(NIL \"@r1.test,@r2.test\" \"eve\" \"e.test\")(NIL NIL \"quoted local\" \"q.test\")"
		"(\"John Q. Public\" NIL \"jqp\" \"p.test\")(\"Jane Doe\" NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\")"
		"(NIL NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\")(NIL NIL \"a\" \"b@c\")(NIL NIL \"x.y\" \"example.org\")) "
		"((\"Name\" NIL \"a\" \"b\")(NIL NIL \"G\" NIL)(NIL NIL \"g1\" \"x\")(NIL NIL NIL NIL)) "
		"\"<a@b>\" NIL)");
	done(&p);

	/* Unbalanced everything must not crash and must stay well-formed. */
	static const char *const odd[] = {
		"To: \"unterminated <x@y\r\n\r\n",
		"To: (unterminated comment x@y\r\n\r\n",
		"To: <<<>>>@@@,,,;;;:::\r\n\r\n",
		"To: [1.2.3.4\r\n\r\n",
		"To: a@[1.2.3.4], b@[unterminated\r\n\r\n",
		"To: group:a@b;group2:;\r\n\r\n",
		"To: \\\r\n\r\n",
		"To: <@route-without-colon.test>\r\n\r\n",
	};
	for (size_t i = 0; i < ARRAY_SIZE(odd); i++) {
		parse(&p, odd[i]);
		done(&p);
	}
	parse(&p, odd[0]);
	CHECK(strstr(p.r.envelope, "((NIL NIL \"unterminated <x@y\" \"MISSING_DOMAIN\"))") != NULL);
	done(&p);
	parse(&p, odd[4]);
	CHECK(strstr(p.r.envelope, "((NIL NIL \"a\" \"[1.2.3.4]\")(NIL NIL \"b\" \"[unterminated\"))") != NULL);
	done(&p);
}

TEST(mime_missing_and_wrong_boundaries)
{
	struct parsed p;

	/* multipart without boundary parameter: one TEXT/PLAIN leaf */
	parse(&p, "Content-Type: multipart/mixed\r\n\r\n--foo\r\nhello\r\n");
	CHECK_STR(p.r.bodystructure,
		"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 14 2 NIL NIL NIL NIL)");
	CHECK_SEC(&p, "1", "--foo\r\nhello\r\n");
	CHECK_SEC(&p, "1.1", "");
	done(&p);

	/* boundary declared but never used: the same */
	parse(&p, "Content-Type: multipart/mixed; boundary=nothere\r\n\r\n--foo\r\nhello\r\n--nothe\r\n");
	CHECK(strncmp(p.r.bodystructure, "(\"TEXT\" \"PLAIN\"", 15) == 0);
	done(&p);

	/* missing close delimiter: the last part runs to the end */
	parse(&p, "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nfirst\r\n--b\r\n\r\nsecond\r\n");
	CHECK_STR(p.r.body,
		"((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 5 0)"
		"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 8 1) \"mixed\")");
	CHECK_SEC(&p, "2", "second\r\n");
	done(&p);

	/* an outer delimiter ends an inner multipart that never closed */
	parse(&p, "Content-Type: multipart/mixed; boundary=o\r\n\r\n"
		  "--o\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\n\r\na\r\n"
		  "--o\r\n\r\nb\r\n--o--\r\n");
	CHECK_STR(p.r.body,
		"(((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 1 0) \"alternative\")"
		"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 1 0) \"mixed\")");
	CHECK_SEC(&p, "1.1", "a");
	CHECK_SEC(&p, "2", "b");
	done(&p);

	/* a delimiter inside a part's header ends the header; trailing
	 * garbage after a delimiter is ignored; transport padding */
	parse(&p, "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
		  "--b \t\r\nContent-Type: text/html\r\n--b garbage\r\n\r\nok\r\n--b--  \r\n");
	CHECK_STR(p.r.body,
		"((\"text\" \"html\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0)"
		"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 2 0) \"mixed\")");
	CHECK_SEC(&p, "1.MIME", "Content-Type: text/html");
	CHECK_SEC(&p, "1", "");
	CHECK_SEC(&p, "2", "ok");
	done(&p);

	/* the same boundary nested twice: the innermost wins (RFC 2046 is
	 * violated, Dovecot does the same) */
	parse(&p, "Content-Type: multipart/mixed; boundary=x\r\n\r\n"
		  "--x\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\nin\r\n--x--\r\n"
		  "--x\r\n\r\nout\r\n--x--\r\n");
	CHECK_STR(p.r.body,
		"(((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 2 0) \"mixed\")"
		"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3 0) \"mixed\")");
	CHECK_SEC(&p, "1.1", "in");
	CHECK_SEC(&p, "2", "out");
	done(&p);

	/* the longest matching boundary wins when one prefixes another */
	parse(&p, "Content-Type: multipart/mixed; boundary=ab\r\n\r\n"
		  "--ab\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n\r\nin\r\n"
		  "--ab\r\n\r\nout\r\n--ab--\r\n");
	CHECK_SEC(&p, "1.1", "in");
	CHECK_SEC(&p, "2", "out");
	done(&p);

	/* empty parts, boundary at the very start of the body, empty header */
	parse(&p, "Content-Type: multipart/mixed; boundary=e\r\n\r\n--e\r\n--e\r\n\r\n--e--");
	CHECK_STR(p.r.body,
		"((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0)"
		"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0) \"mixed\")");
	done(&p);

	/* invalid Content-Type and transfer encoding fall back to defaults */
	parse(&p, "Content-Type: garbage\r\nContent-Transfer-Encoding: ?invalid\r\n\r\nx");
	CHECK_STR(p.r.body, "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 1 0)");
	done(&p);

	/* a header without blank line: all header, empty body */
	parse(&p, "Subject: only a header");
	CHECK_STR(p.r.body, "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0)");
	CHECK_SEC(&p, "HEADER", "Subject: only a header");
	CHECK_SEC(&p, "HEADER.FIELDS (Subject)", "Subject: only a header");	/* no blank line to add */
	CHECK_SEC(&p, "TEXT", "");
	done(&p);

	/* header lines without colon are ignored but kept */
	parse(&p, "no colon here\r\nSubject: s\r\n\r\nbody");
	CHECK(strncmp(p.r.envelope, "(NIL \"s\"", 8) == 0);
	CHECK_SEC(&p, "HEADER.FIELDS.NOT (Subject)", "no colon here\r\n\r\n");
	done(&p);
}

TEST(mime_bare_lf)
{
	static const char m[] =
		"From: a@b\n"
		"Subject: lf\n"
		"Content-Type: multipart/mixed; boundary=z\n"
		"\n"
		"--z\n"
		"\n"
		"one\n"
		"two\n"
		"--z\n"
		"Content-Type: text/plain; charset=us-ascii\n"
		"Content-Transfer-Encoding: quoted-printable\n"
		"\n"
		"soft=\n"
		"break=3D\n"
		"--z--\n";
	struct parsed p;
	parse(&p, m);
	CHECK_STR(p.r.body,
		"((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 7 1)"
		"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"quoted-printable\" 14 1) \"mixed\")");
	CHECK_SEC(&p, "1", "one\ntwo");
	CHECK_SEC(&p, "HEADER.FIELDS (subject)", "Subject: lf\n\n");
	CHECK_SEC(&p, "2.MIME", "Content-Type: text/plain; charset=us-ascii\n"
				"Content-Transfer-Encoding: quoted-printable\n\n");
	struct buf t = BUF_INIT;
	mime_body_text(p.m, p.n, buf_ptr(&p.r.parts), p.r.parts.len, &t);
	CHECK_MEM(buf_ptr(&t), t.len, "one\ntwo\nsoftbreak=");
	buf_free(&t);
	done(&p);
}

TEST(mime_8bit_and_nul_headers)
{
	static const char m[] =
		"Subject: Gr\xc3\xbc\xc3\x9f" "e\r\n"
		"From: J\xc3\xb6rg <j@x.test>\r\n"
		"To: caf\xe9 <c@x.test>\r\n"
		"X-Latin: caf\xe9\r\n"
		"Message-ID: <a\0b@c>\r\n"
		"Content-Type: text/plain; name=\"\xe2\x82\xac.txt\"\r\n"
		"\r\n"
		"body\0with nul\r\n";
	struct parsed p;
	parse_n(&p, m, sizeof(m) - 1, NULL);
	CHECK_STR(p.r.envelope,
		"(NIL {7}\r\nGr\xc3\xbc\xc3\x9f" "e "
		"(({5}\r\nJ\xc3\xb6rg NIL \"j\" \"x.test\")) (({5}\r\nJ\xc3\xb6rg NIL \"j\" \"x.test\")) "
		"(({5}\r\nJ\xc3\xb6rg NIL \"j\" \"x.test\")) "
		"(({6}\r\ncaf\xef\xbf\xbd NIL \"c\" \"x.test\")) NIL NIL NIL {9}\r\n<a\xef\xbf\xbd" "b@c>)");
	CHECK_STR(p.r.body,
		"(\"text\" \"plain\" (\"name\" {7}\r\n\xe2\x82\xac.txt \"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 15 1)");
	struct buf t = BUF_INIT;
	mime_header_decoded(p.m, p.n, "Subject", &p.a, &t);
	CHECK_MEM(buf_ptr(&t), t.len, "Gr\xc3\xbc\xc3\x9f" "e");
	buf_clear(&t);
	mime_header_decoded(p.m, p.n, "X-Latin", &p.a, &t);
	CHECK_MEM(buf_ptr(&t), t.len, "caf\xc3\xa9");
	buf_clear(&t);
	mime_header_decoded(p.m, p.n, "Message-ID", &p.a, &t);
	CHECK_MEM(buf_ptr(&t), t.len, "<a\xef\xbf\xbd" "b@c>");
	buf_clear(&t);
	mime_body_text(p.m, p.n, buf_ptr(&p.r.parts), p.r.parts.len, &t);
	CHECK_MEM(buf_ptr(&t), t.len, "body\xef\xbf\xbdwith nul\n");
	buf_clear(&t);
	struct buf o = BUF_INIT;
	CHECK_EQ_INT(sec(&p, "1", &o), 0);
	CHECK(o.len == 15 && memcmp(buf_ptr(&o), "body\0with nul\r\n", 15) == 0);
	buf_free(&o);
	buf_free(&t);
	done(&p);

	/* long values become literals, quotes and backslashes are escaped */
	char big[3000];
	memcpy(big, "Subject: ", 9);
	memset(big + 9, 'x', 2000);
	memcpy(big + 2009, "\r\n\r\n", 5);
	parse(&p, big);
	CHECK(strncmp(p.r.envelope, "(NIL {2000}\r\nxxx", 16) == 0);
	done(&p);
	parse(&p, "Subject: a \"quoted\" \\ back\r\n\r\n");
	CHECK_STR(p.r.envelope, "(NIL \"a \\\"quoted\\\" \\\\ back\" NIL NIL NIL NIL NIL NIL NIL NIL)");
	done(&p);
}

/* 1000 nested multiparts and 1000 nested message/rfc822 parts. */
TEST(mime_depth_bombs)
{
	struct buf m = BUF_INIT;
	for (int i = 0; i < 1000; i++)
		buf_printf(&m, "Content-Type: multipart/mixed; boundary=\"b%04d\"\r\n\r\n--b%04d\r\n", i, i);
	buf_puts(&m, "\r\ndeep\r\n");
	for (int i = 999; i >= 0; i--)
		buf_printf(&m, "--b%04d--\r\n", i);
	struct parsed p;
	parse_n(&p, buf_ptr(&m), m.len, NULL);
	CHECK_EQ_INT(p.r.nparts, 21);	/* depths 0..20; depth 20 is a leaf */
	CHECK(p.r.limited);
	struct buf o = BUF_INIT;
	CHECK_EQ_INT(sec(&p, "1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1", &o), 0);
	CHECK(o.len > 0 && memcmp(buf_ptr(&o), "--b0020\r\n", 9) == 0);
	CHECK_EQ_INT(sec(&p, "1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1", &o), 0);
	CHECK_EQ_INT(o.len, 0);
	buf_free(&o);
	done(&p);

	buf_clear(&m);
	for (int i = 0; i < 1000; i++)
		buf_puts(&m, "Content-Type: message/rfc822\r\n\r\n");
	buf_puts(&m, "Subject: bottom\r\n\r\nx");
	struct mime_limits lim = { 50, 100, 0 };
	parse_n(&p, buf_ptr(&m), m.len, &lim);
	CHECK_EQ_INT(p.r.nparts, 51);
	CHECK(p.r.limited);
	done(&p);

	/* many nested levels within limits (deep recursion in rendering) */
	buf_clear(&m);
	for (int i = 0; i < 200; i++)
		buf_printf(&m, "Content-Type: multipart/mixed; boundary=\"b%04d\"\r\n\r\n--b%04d\r\n", i, i);
	buf_puts(&m, "\r\ndeep\r\n");
	struct mime_limits lim2 = { 1000, 0, 0 };
	parse_n(&p, buf_ptr(&m), m.len, &lim2);
	CHECK_EQ_INT(p.r.nparts, 201);	/* max_depth is clamped to 200 */
	done(&p);
	buf_free(&m);
}

TEST(mime_many_parts)
{
	struct buf m = BUF_INIT;
	buf_puts(&m, "Content-Type: multipart/mixed; boundary=p\r\n\r\n");
	for (int i = 0; i < 20000; i++)
		buf_printf(&m, "--p\r\n\r\n%d\r\n", i);
	buf_puts(&m, "--p--\r\nepilogue\r\n");
	struct parsed p;
	uint64_t t0 = now_ms();
	parse_n(&p, buf_ptr(&m), m.len, NULL);
	CHECK(now_ms() - t0 < 5000);
	CHECK_EQ_INT(p.r.nparts, 5000);
	CHECK(p.r.limited);
	CHECK_SEC(&p, "1", "0");
	CHECK_SEC(&p, "4998", "4997");
	/* the last recorded part takes the rest of the message */
	struct buf o = BUF_INIT;
	CHECK_EQ_INT(sec(&p, "4999", &o), 0);
	CHECK(o.len > 100 && memcmp(buf_ptr(&o), "4998\r\n--p\r\n", 11) == 0);
	CHECK(memcmp(buf_ptr(&o) + o.len - 10, "epilogue\r\n", 10) == 0);
	CHECK_EQ_INT(sec(&p, "5000", &o), 0);
	CHECK_EQ_INT(o.len, 0);
	buf_free(&o);
	done(&p);
	buf_free(&m);
}

/* Linear time: nested boundaries that prefix each other and millions of
 * "--" lines. */
TEST(mime_boundary_scan_is_linear)
{
	struct buf m = BUF_INIT;
	char b[80];
	for (int i = 0; i < 20; i++) {
		memset(b, 'a', 70);
		b[70] = (char)('A' + i);
		b[71] = '\0';
		buf_printf(&m, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n--%s\r\n", b, b);
	}
	memset(b, 'a', 70);
	b[70] = 'Z';	/* matches no boundary, but only after 70 octets */
	b[71] = '\0';
	buf_puts(&m, "\r\n");
	for (int i = 0; i < 200000; i++)
		buf_printf(&m, "--%s\r\n", b);
	struct parsed p;
	uint64_t t0 = now_ms();
	parse_n(&p, buf_ptr(&m), m.len, NULL);
	CHECK(now_ms() - t0 < 5000);
	CHECK_EQ_INT(p.r.nparts, 21);
	done(&p);
	buf_free(&m);
}

TEST(mime_section_syntax)
{
	static const char *const bad[] = {
		"0", "01", "1.", ".1", "1..2", "1.0", "MIME", "TEXT.1", "HEADER.1", "1.MIME.TEXT",
		"HEADER.FIELDS", "HEADER.FIELDS ()", "HEADER.FIELDS (From", "HEADER.FIELDS(From)",
		"HEADER.FIELDS  (From)", "HEADER.FIELDS ( From)", "HEADER.FIELDS (From )",
		"HEADER.FIELDS (From  To)", "HEADER.FIELDS (From) ", "HEADER.FIELDS (\"unterminated)",
		"HEADER.FIELDS (Fr%om)", "HEADER.FIELDS (Fr*om)", "HEADER.FIELDS ({5}\r\nFrom)",
		"HEADER.FIELDS ({x}\r\nFrom)", "HEADER.FIELDS ({4}From)", "HEADER.FIELDS (\"a\\b\")",
		"HEADER.FIELDS.NOT", "HEADERS", "HEADER ", " HEADER", "foo", "1.2.MIMEX", "TEXTX",
		"4294967296", "1.99999999999999999999", "1.HEADER.FIELDS", "-1", "1 ", "1.2.",
	};
	static const char *const good[] = {
		"", "1", "1.2.3", "4294967295", "HEADER", "header", "TEXT", "text", "1.MIME", "2.mime",
		"3.HEADER", "3.TEXT", "HEADER.FIELDS (From)", "header.fields.not (from to)",
		"HEADER.FIELDS (\"From\" To {2}\r\nCc X-]weird)", "1.2.HEADER.FIELDS.NOT (\"a\\\"b\")",
		"HEADER.FIELDS ({2+}\r\nTo)",
	};
	struct buf o = BUF_INIT;
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		int rc = mime_section(msg_plain, strlen(msg_plain), NULL, 0, str_cstr(bad[i]), &o);
		if (rc != -1)
			fprintf(stderr, "    accepted bad section \"%s\"\n", bad[i]);
		CHECK_EQ_INT(rc, -1);
		CHECK_EQ_INT(o.len, 0);
	}
	for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
		int rc = mime_section("", 0, NULL, 0, str_cstr(good[i]), &o);
		if (rc != 0)
			fprintf(stderr, "    rejected good section \"%s\"\n", good[i]);
		CHECK_EQ_INT(rc, 0);
	}
	/* a section with a NUL inside is not valid either */
	CHECK_EQ_INT(mime_section("", 0, NULL, 0, str_make("1\0", 2), &o), -1);
	buf_free(&o);

	struct parsed p;
	parse(&p, msg_plain);
	CHECK_SEC(&p, "HEADER.FIELDS (\"From\" To {2}\r\nCc X-]weird)",
		  "From: Alice Example <alice@example.com>\r\nTo: bob@example.org\r\n\r\n");
	done(&p);
}

TEST(mime_dates)
{
	static const struct {
		const char *date;
		int64_t t;
		int tz;
	} cases[] = {
		{ "Mon, 7 Feb 1994 21:52:25 -0800", 760686745, -480 },
		{ "7 Feb 1994 21:52:25 -0800 (PST)", 760686745, -480 },
		{ "Tue, 1 Jul 2003 10:52:37 +0200", 1057049557, 120 },
		{ "1 Jan 2020 00:00:00 +0000", 1577836800, 0 },
		{ "1 jan 20 00:00 GMT", 1577836800, 0 },
		{ "Wed, 31 Dec 69 19:00:00 EST", 0, -300 },	/* RFC 5322 4.3: 69 is 1969 */
		{ "Thu, 31 Dec 49 19:00:00 EST", 2524608000, -300 },	/* ... and 49 is 2049 */
		{ "Thu,1 Jan 1970 00:00:00 +0000", 0, 0 },
		{ "1 Jan 1970", 0, 0 },
		{ "yesterday", INT64_MIN, 0 },
		{ "32 Jan 2020 00:00:00 +0000", INT64_MIN, 0 },
		{ "1 Foo 2020 00:00:00 +0000", INT64_MIN, 0 },
		{ "1 Jan 2020 25:00:00 +0000", INT64_MIN, 0 },
		{ "1 Jan 2020 10:00:00 +02", INT64_MIN, 0 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char m[200];
		snprintf(m, sizeof(m), "Date: %s\r\n\r\n", cases[i].date);
		struct parsed p;
		parse(&p, m);
		int64_t want = cases[i].t;
		if (p.r.sent_date != want)
			fprintf(stderr, "    date \"%s\": got %lld\n", cases[i].date, (long long)p.r.sent_date);
		CHECK(p.r.sent_date == want);
		CHECK_EQ_INT(p.r.sent_tz, cases[i].tz);
		done(&p);
	}
}

TEST(mime_header_block_and_empty)
{
	struct str h = mime_header_block(msg_plain, strlen(msg_plain));
	CHECK(h.len == (size_t)(strstr(msg_plain, "\r\n\r\n") + 4 - msg_plain));
	h = mime_header_block("A: b\nC: d\n\nbody", 15);
	CHECK_MEM(h.p, h.len, "A: b\nC: d\n\n");
	h = mime_header_block("no blank line", 13);
	CHECK_MEM(h.p, h.len, "no blank line");
	h = mime_header_block("\r\nbody", 6);
	CHECK_MEM(h.p, h.len, "\r\n");
	h = mime_header_block("", 0);
	CHECK_EQ_INT(h.len, 0);

	struct parsed p;
	parse_n(&p, "", 0, NULL);
	CHECK_STR(p.r.envelope, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
	CHECK_STR(p.r.bodystructure, "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL)");
	CHECK_SEC(&p, "", "");
	CHECK_SEC(&p, "1", "");
	CHECK_SEC(&p, "HEADER.FIELDS (a)", "");
	done(&p);

	parse(&p, "\r\n");
	CHECK_SEC(&p, "HEADER", "\r\n");
	CHECK_SEC(&p, "HEADER.FIELDS (a)", "\r\n");
	CHECK_SEC(&p, "TEXT", "");
	done(&p);

	struct arena a;
	struct mime_result r;
	arena_init(&a, 1024);
	mime_parse(NULL, 0, NULL, &a, &r);
	CHECK_EQ_INT(r.nparts, 1);
	buf_free(&r.parts);
	arena_free(&a);
}

TEST(mime_part_table_layout_and_fallback)
{
	struct parsed p;
	parse(&p, msg_alt);
	const unsigned char *t = (const unsigned char *)buf_ptr(&p.r.parts);
	CHECK_EQ_INT(p.r.parts.len, 8 + 3 * 32);
	CHECK(memcmp(t, "MP\x01\x00\x03\x00\x00\x00", 8) == 0);
	/* record 0: the message, multipart with 2 descendants */
	const unsigned char *r0 = t + 8, *r2 = t + 8 + 64;
	CHECK_EQ_INT(r0[0], 0);					/* hdr_off */
	CHECK_EQ_INT(r0[24], 2);				/* subtree */
	CHECK_EQ_INT(r0[28], MIME_KIND_MULTIPART);
	CHECK_EQ_INT(r0[29], MIME_PF_MESSAGE);
	CHECK_EQ_INT(r2[28], MIME_KIND_LEAF);
	CHECK_EQ_INT(r2[29], MIME_PF_TEXT);
	CHECK_EQ_INT(r2[30], MIME_ENC_QP);
	size_t body2 = (size_t)(strstr(msg_alt, "<p>") - msg_alt);
	CHECK_EQ_INT(r2[8] | r2[9] << 8, body2);
	CHECK_EQ_INT(r2[16] | r2[17] << 8, body2 + 14);

	/* a truncated or foreign table is ignored: the message is reparsed */
	struct buf o = BUF_INIT;
	CHECK_EQ_INT(mime_section(p.m, p.n, buf_ptr(&p.r.parts), p.r.parts.len - 1, str_cstr("2"), &o), 0);
	CHECK_MEM(buf_ptr(&o), o.len, "<p>h=C3=A9</p>");
	buf_clear(&o);
	CHECK_EQ_INT(mime_section(p.m, p.n, "garbage", 7, str_cstr("1"), &o), 0);
	CHECK_MEM(buf_ptr(&o), o.len, "plain");
	buf_clear(&o);
	/* a table whose offsets do not fit the message (wrong row) too */
	CHECK_EQ_INT(mime_section(msg_plain, 20, buf_ptr(&p.r.parts), p.r.parts.len, str_cstr("1"), &o), 0);
	CHECK_EQ_INT(o.len, 0);
	buf_free(&o);
	done(&p);
}

TEST(mime_rfc2231_parameters)
{
	static const char m[] =
		"Content-Type: application/octet-stream;\r\n"
		" key4*=us-ascii''foo; key*2=ba%; key2*0=a; key3*0*=us-ascii'en'xyz;\r\n"
		" key*0=\"f\\oo\"; key2*1*=b%25; key3*1=plop%; key*1=baz;\r\n"
		" gap*0=x; gap*2=z; plain=\"v; w\"; broken; =novalue; unq=a=b==\r\n"
		"\r\n";
	struct parsed p;
	parse(&p, m);
	CHECK_STR(p.r.body,
		"(\"application\" \"octet-stream\" (\"plain\" \"v; w\" \"unq\" \"a=b==\" "
		"\"gap*0\" \"x\" \"gap*2\" \"z\" \"key\" \"foobazba%\" \"key2*\" \"''ab%25\" "
		"\"key3*\" \"us-ascii'en'xyzplop%25\" \"key4*\" \"us-ascii''foo\") NIL NIL \"7BIT\" 0)");
	done(&p);

	/* Comments and odd spacing inside Content-Type (RFC 2045 example) */
	parse(&p, "Content-type: text/plain; charset=us-ascii (Plain text)\r\n\r\n");
	CHECK_STR(p.r.body, "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 0 0)");
	done(&p);
	parse(&p, "Content-Type: (c) TEXT / HTML ; Format = flowed\r\n\r\n");
	CHECK_STR(p.r.body, "(\"TEXT\" \"HTML\" (\"Format\" \"flowed\" \"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0)");
	done(&p);
}

TEST(mime_body_text_charsets)
{
	static const char m[] =
		"Content-Type: multipart/mixed; boundary=c\r\n"
		"\r\n"
		"--c\r\n"
		"Content-Type: text/plain; charset=koi8-r\r\n"
		"Content-Transfer-Encoding: base64\r\n"
		"\r\n"
		"8NLJ18XU\r\n"
		"--c\r\n"
		"Content-Type: text/plain; charset=windows-1252\r\n"
		"Content-Transfer-Encoding: quoted-printable\r\n"
		"\r\n"
		"=80 =93quoted=94 long line=\r\n"
		" continues=20\r\n"
		"--c\r\n"
		"Content-Type: text/plain; charset=x-unknown-charset\r\n"
		"\r\n"
		"caf\xe9\r\n"
		"--c\r\n"
		"Content-Type: text/plain; charset=utf-16le\r\n"
		"Content-Transfer-Encoding: base64\r\n"
		"\r\n"
		"aABpAA==\r\n"
		"--c\r\n"
		"Content-Type: image/png\r\n"
		"Content-Transfer-Encoding: base64\r\n"
		"\r\n"
		"aGlkZGVu\r\n"
		"--c\r\n"
		"Content-Type: text/plain; charset=utf-8\r\n"
		"\r\n"
		"bad \xff utf8\r\n"
		"--c--\r\n";
	struct parsed p;
	parse(&p, m);
	struct buf t = BUF_INIT;
	mime_body_text(p.m, p.n, buf_ptr(&p.r.parts), p.r.parts.len, &t);
	CHECK_MEM(buf_ptr(&t), t.len,
		"\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82\n"
		"\xe2\x82\xac \xe2\x80\x9cquoted\xe2\x80\x9d long line continues \n"
		"caf\xc3\xa9\n"
		"hi\n"
		"bad \xef\xbf\xbd utf8");
	buf_clear(&t);
	mime_body_text(p.m, p.n, NULL, 0, &t);	/* without table: same text */
	CHECK(t.len > 10 && memcmp(buf_ptr(&t), "\xd0\x9f", 2) == 0);
	buf_free(&t);
	done(&p);
}

/* Quoted-printable edge cases; the body is copied to the heap so that ASan
 * sees any read past its end (the last line has no newline). */
TEST(mime_quoted_printable_edges)
{
	static const struct {
		const char *body, *text;
	} cases[] = {
		{ "a=4", "a=4" }, { "a=", "a" }, { "a=4G", "a=4G" }, { "=41=42", "AB" }, { "=", "" },
		{ "x=\r\ny", "xy" }, { "x=  \r\ny", "xy" }, { "x  \r\ny\t", "x\ny" }, { "=c3=a9t=C3=A9", "\xc3\xa9t\xc3\xa9" }, { "=e9", "\xef\xbf\xbd" },
		{ "=3D=3d", "==" }, { "==41", "=A" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct buf m = BUF_INIT, t = BUF_INIT;
		buf_puts(&m, "Content-Type: text/plain; charset=utf-8\r\n"
			     "Content-Transfer-Encoding: Quoted-Printable\r\n\r\n");
		buf_puts(&m, cases[i].body);
		char *copy = xmalloc(m.len);
		memcpy(copy, buf_ptr(&m), m.len);
		mime_body_text(copy, m.len, NULL, 0, &t);
		CHECK_MEM(buf_ptr(&t), t.len, cases[i].text);
		free(copy);
		buf_free(&m);
		buf_free(&t);
	}
}

TEST(mime_misc_edges)
{
	struct parsed p;
	parse(&p, "Content-Language: en, de, fr, it, es, (comment) nl\r\nContent-Location:\r\n  a\r\n\r\n");
	CHECK_STR(p.r.bodystructure, "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0 NIL NIL "
				     "(\"en\" \"de\" \"fr\" \"it\" \"es\" \"nl\") \"a\")");
	done(&p);
	parse(&p, "Content-Language: ,en\r\nContent-Disposition: ;filename=x\r\n\r\n");
	CHECK_STR(p.r.bodystructure, "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL)");
	done(&p);

	/* a syntactically valid path longer than any message can nest */
	struct buf spec = BUF_INIT, o = BUF_INIT;
	for (int i = 0; i < 300; i++)
		buf_puts(&spec, i ? ".1" : "1");
	parse(&p, msg_nested);
	CHECK_EQ_INT(mime_section(p.m, p.n, buf_ptr(&p.r.parts), p.r.parts.len, buf_str(&spec), &o), 0);
	CHECK_EQ_INT(o.len, 0);
	buf_puts(&spec, ".MIME");
	CHECK_EQ_INT(mime_section(p.m, p.n, buf_ptr(&p.r.parts), p.r.parts.len, buf_str(&spec), &o), 0);
	CHECK_EQ_INT(o.len, 0);
	buf_puts(&spec, ".X");
	CHECK_EQ_INT(mime_section(p.m, p.n, buf_ptr(&p.r.parts), p.r.parts.len, buf_str(&spec), &o), -1);
	done(&p);
	buf_free(&spec);
	buf_free(&o);
}

TEST(mime_check_rejects_bad_syntax)
{
	static const char *const bad_bodies[] = {
		"", "()", "(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 1)",		/* text without lines */
		"(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 1 1 NIL NIL NIL NIL)",	/* ext in BODY */
		"(\"TEXT\"  \"PLAIN\" NIL NIL NIL \"7BIT\" 1 1)",
		"(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 1 1)",
		"((\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 1 1))",
		"(\"TEXT\" \"PLAIN\" (\"A\") NIL NIL \"7BIT\" 1 1)",
		"(\"TEXT\" \"PLAIN\" NIL NIL NIL {5}\r\n7BIT 1 1)",
		"(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7\\BIT\" 1 1)",
		"(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 1 1))",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad_bodies); i++)
		CHECK_EQ_INT(mime_check(bad_bodies[i], strlen(bad_bodies[i]), MIME_CHECK_BODY), -1);
	static const char good[] = "(\"TEXT\" \"PLAIN\" NIL NIL NIL {4}\r\n7BIT 1 1)";
	CHECK_EQ_INT(mime_check(good, strlen(good), MIME_CHECK_BODY), 0);
	static const char env_bad[] = "(NIL NIL () NIL NIL NIL NIL NIL NIL NIL)";
	CHECK_EQ_INT(mime_check(env_bad, strlen(env_bad), MIME_CHECK_ENVELOPE), -1);
}
