/* Unit tests of mail.c: template rendering, encodings and header safety. */
#include "autoconfig.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "mail.h"

/* 2026-12-04 21:20:00 UTC, a Friday; the operation expires ten minutes later. */
#define TEST_NOW 1796419200
#define TEST_EXPIRES (TEST_NOW + 600)

static const char test_template[] =
	"Subject: Code for {{kind}}\n"
	"\n"
	"Code {{code}} for {{email_hint}}.\n"
	"Valid {{expires_minutes}} min, until {{expires_at_utc}}.\n"
	"{{params}}\n";

static struct mail_fields test_fields(void)
{
	struct mail_fields fields = {
		.from = "Example Security <security@example.com>",
		.message_id_domain = NULL,
		.recipient = "alice@example.org",
		.code = "123456",
		.kind = "withdrawal",
		.params_json = "{\"amount\":\"100\",\"currency\":\"EUR\"}",
		.email_hint = "***ice@example.org",
		.now = TEST_NOW,
		.expires_at = TEST_EXPIRES,
	};

	return fields;
}

/* Renders and fails the test unless rendering succeeds. */
static char *test_render(const char *template_text, const struct mail_fields *fields)
{
	char err[256] = "";
	char *message = NULL;

	assert_int_equal(mail_render(template_text, fields, &message, err, sizeof(err)), MAIL_OK);
	assert_non_null(message);
	return message;
}

/* Returns the header section of message (up to the blank line) as a new string. */
static char *test_headers(const char *message)
{
	const char *end = strstr(message, "\r\n\r\n");

	assert_non_null(end);
	return strndup(message, (size_t)(end - message) + 2);
}

/* The headers mail_render writes, in order. Any other name means that a value added a header. */
static const char *const test_header_names[] = {
	"Date", "Message-ID", "From", "To", "Subject", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding", "Auto-Submitted",
};

/* Checks that every line ends in CRLF and is at most 76 characters long without it. */
static void test_assert_lines(const char *message)
{
	const char *line = message;

	while (*line != '\0') {
		const char *end = strstr(line, "\r\n");

		assert_non_null(end);
		assert_null(memchr(line, '\n', (size_t)(end - line)));
		assert_in_range((size_t)(end - line), 0, 76);
		line = end + 2;
	}
}

/* Checks that the header section has exactly the headers of test_header_names. */
static void test_assert_header_names(const char *message)
{
	const char *line = message;
	size_t count = 0;

	while (strncmp(line, "\r\n", 2) != 0) {
		const char *colon = strchr(line, ':');

		if (line[0] != ' ' && line[0] != '\t') {
			assert_non_null(colon);
			assert_in_range(count, 0, sizeof(test_header_names) /
				sizeof(test_header_names[0]) - 1);
			assert_int_equal((size_t)(colon - line), strlen(test_header_names[count]));
			assert_memory_equal(line, test_header_names[count], (size_t)(colon - line));
			count++;
		}
		line = strstr(line, "\r\n") + 2;
	}
	assert_int_equal(count, sizeof(test_header_names) / sizeof(test_header_names[0]));
}

/* Returns the unfolded value of header name (CRLFs removed) as a new string. */
static char *test_header_value(const char *message, const char *name)
{
	char *headers = test_headers(message);
	char *value = calloc(1, strlen(headers) + 1);
	const char *line = headers;
	size_t name_len = strlen(name), len = 0;
	bool found = false;

	assert_non_null(value);
	while (*line != '\0') {
		const char *end = strstr(line, "\r\n");
		bool continuation = line[0] == ' ' || line[0] == '\t';
		const char *start = line;

		if (!continuation)
			found = strncmp(line, name, name_len) == 0 && line[name_len] == ':';
		if (found) {
			if (!continuation)
				start = line + name_len + 1;
			memcpy(value + len, start, (size_t)(end - start));
			len += (size_t)(end - start);
		}
		line = end + 2;
	}
	free(headers);
	/* The one space after the colon is not part of the value. */
	if (value[0] == ' ')
		memmove(value, value + 1, len--);
	value[len] = '\0';
	return value;
}

/* Returns true when text[0..len) is well-formed UTF-8 (RFC 3629). */
static bool test_is_utf8(const unsigned char *text, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = text[i];
		size_t count = 0, j;

		if (c < 0x80)
			count = 1;
		else if (c >= 0xc2 && c <= 0xdf)
			count = 2;
		else if (c >= 0xe0 && c <= 0xef)
			count = 3;
		else if (c >= 0xf0 && c <= 0xf4)
			count = 4;
		if (count == 0 || i + count > len)
			return false;
		for (j = 1; j < count; j++)
			if ((text[i + j] & 0xc0) != 0x80)
				return false;
		i += count;
	}
	return true;
}

/* Decodes RFC 4648 base64 with padding. Returns the byte count, or -1. */
static long test_base64_decode(const char *in, size_t len, unsigned char *out)
{
	static const char digits[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i, j;
	long count = 0;

	if (len % 4 != 0)
		return -1;
	for (i = 0; i < len; i += 4) {
		unsigned long group = 0;
		int pad = 0;

		for (j = 0; j < 4; j++) {
			const char *digit = strchr(digits, in[i + j]);

			if (in[i + j] == '=' && i + 4 == len && j >= 2) {
				pad++;
				group <<= 6;
				continue;
			}
			if (digit == NULL || in[i + j] == '\0' || pad > 0)
				return -1;
			group = (group << 6) | (unsigned long)(digit - digits);
		}
		out[count++] = (unsigned char)(group >> 16);
		if (pad < 2)
			out[count++] = (unsigned char)(group >> 8);
		if (pad < 1)
			out[count++] = (unsigned char)group;
	}
	return count;
}

/*
 * Decodes an unfolded header value of "=?UTF-8?B?...?=" words and plain
 * text, dropping white space between two words (RFC 2047 §6.2). Fails the
 * test when a word does not decode to whole UTF-8 characters on its own.
 */
static char *test_rfc2047_decode(const char *value)
{
	char *out = calloc(1, strlen(value) + 1);
	size_t len = 0, pending = 0;
	const char *at = value;
	bool after_word = false;

	assert_non_null(out);
	while (*at != '\0') {
		if (strncmp(at, "=?UTF-8?B?", 10) == 0) {
			const char *text = at + 10;
			const char *end = strstr(text, "?=");
			long decoded;

			assert_non_null(end);
			if (!after_word) {
				memcpy(out + len, at - pending, pending);
				len += pending;
			}
			decoded = test_base64_decode(text, (size_t)(end - text),
				(unsigned char *)out + len);
			assert_true(decoded > 0);
			assert_true(test_is_utf8((unsigned char *)out + len, (size_t)decoded));
			len += (size_t)decoded;
			pending = 0;
			after_word = true;
			at = end + 2;
		} else if (*at == ' ' || *at == '\t') {
			pending++;
			at++;
		} else {
			memcpy(out + len, at - pending, pending + 1);
			len += pending + 1;
			pending = 0;
			after_word = false;
			at++;
		}
	}
	memcpy(out + len, at - pending, pending);
	out[len + pending] = '\0';
	return out;
}

/*
 * Decodes a quoted-printable body: removes soft breaks and turns "=XX" into
 * its byte. Fails the test on an escape that is not two upper-case hex
 * digits, or when a line does not hold whole UTF-8 characters.
 */
static char *test_qp_decode(const char *body)
{
	char *out = calloc(1, strlen(body) + 1);
	size_t len = 0, line_start = 0;
	const char *at = body;

	assert_non_null(out);
	while (*at != '\0') {
		if (strncmp(at, "=\r\n", 3) == 0) {
			assert_true(test_is_utf8((unsigned char *)out + line_start,
				len - line_start));
			line_start = len;
			at += 3;
		} else if (*at == '=') {
			unsigned int byte;

			assert_non_null(strchr("0123456789ABCDEF", at[1]));
			assert_non_null(strchr("0123456789ABCDEF", at[2]));
			assert_int_equal(sscanf(at + 1, "%2X", &byte), 1);
			out[len++] = (char)byte;
			at += 3;
		} else {
			out[len++] = *at++;
		}
	}
	out[len] = '\0';
	return out;
}

/* Returns the body of message, after the blank line that ends the headers. */
static const char *test_body(const char *message)
{
	const char *blank = strstr(message, "\r\n\r\n");

	assert_non_null(blank);
	return blank + 4;
}

/* Returns a new copy of text with every occurrence of name replaced by value. */
static char *test_replace(const char *text, const char *name, const char *value)
{
	size_t name_len = strlen(name), value_len = strlen(value), len = 0;
	char *out = malloc(strlen(text) * (value_len + 1) + 1);
	const char *at = text;

	assert_non_null(out);
	while (*at != '\0') {
		if (strncmp(at, name, name_len) == 0) {
			memcpy(out + len, value, value_len);
			len += value_len;
			at += name_len;
		} else {
			out[len++] = *at++;
		}
	}
	out[len] = '\0';
	return out;
}

/* Checks that no line of the decoded body starts with "Bcc:", as a value that broke out would. */
static void test_assert_no_bcc_line(const char *text)
{
	const char *line;

	assert_false(strncmp(text, "Bcc:", 4) == 0);
	for (line = strchr(text, '\n'); line != NULL; line = strchr(line + 1, '\n'))
		assert_false(strncmp(line + 1, "Bcc:", 4) == 0);
}

static void render_ascii_exact(void **state)
{
	struct mail_fields fields = test_fields();
	char *message;
	const char *id, *rest;
	size_t i;

	(void)state;
	message = test_render(test_template, &fields);

	assert_memory_equal(message, "Date: Fri, 04 Dec 2026 21:20:00 +0000\r\nMessage-ID: <", 52);
	id = message + 52;
	for (i = 0; i < 32; i++)
		assert_non_null(strchr("0123456789abcdef", id[i]));
	rest = id + 32;
	assert_string_equal(rest,
		"@example.com>\r\n"
		"From: Example Security <security@example.com>\r\n"
		"To: alice@example.org\r\n"
		"Subject: Code for withdrawal\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: text/plain; charset=UTF-8\r\n"
		"Content-Transfer-Encoding: 7bit\r\n"
		"Auto-Submitted: auto-generated\r\n"
		"\r\n"
		"Code 123456 for ***ice@example.org.\r\n"
		"Valid 10 min, until 2026-12-04 21:30 UTC.\r\n"
		"amount: 100\r\n"
		"currency: EUR\r\n");
	mail_free_message(message);
}

static void render_crlf_everywhere(void **state)
{
	struct mail_fields fields = test_fields();
	char *message;
	size_t i, len;

	(void)state;
	message = test_render("Subject: s\r\n\r\na\rb\nc\r\nd", &fields);
	len = strlen(message);
	for (i = 0; i < len; i++) {
		if (message[i] == '\n')
			assert_true(i > 0 && message[i - 1] == '\r');
		if (message[i] == '\r')
			assert_true(i + 1 < len && message[i + 1] == '\n');
	}
	assert_non_null(strstr(message, "\r\n\r\na\r\nb\r\nc\r\nd\r\n"));
	assert_int_equal(message[len - 1], '\n');
	mail_free_message(message);
}

static void render_message_id_domain(void **state)
{
	struct mail_fields fields = test_fields();
	char *message, *headers;

	(void)state;
	fields.message_id_domain = "mail.example.net";
	message = test_render(test_template, &fields);
	headers = test_headers(message);
	assert_non_null(strstr(headers, "@mail.example.net>\r\n"));
	free(headers);
	mail_free_message(message);

	fields.message_id_domain = "bad domain>";
	assert_int_equal(mail_render(test_template, &fields, &message, (char[128]){ 0 }, 128),
		MAIL_INVALID_INPUT);
	assert_null(message);
}

static void render_qp_non_ascii_body(void **state)
{
	struct mail_fields fields = test_fields();
	char *message;

	(void)state;
	fields.params_json = "{\"name\":\"Grüße, Müller\"}";
	message = test_render("Subject: s\n\n{{params}}\n.leading dot\nend = x \n", &fields);
	assert_non_null(strstr(message, "Content-Transfer-Encoding: quoted-printable\r\n"));
	assert_non_null(strstr(message, "\r\n\r\nname: Gr=C3=BC=C3=9Fe, M=C3=BCller\r\n"
		"=2Eleading dot\r\nend =3D x=20\r\n"));
	mail_free_message(message);
}

static void render_qp_soft_breaks(void **state)
{
	struct mail_fields fields = test_fields();
	char template_text[400];
	char *message, *body, *line;
	size_t lines = 0;

	(void)state;
	memcpy(template_text, "Subject: s\n\n", 12);
	memset(template_text + 12, 'a', 200);
	memcpy(template_text + 212, "ä\n", 4);
	message = test_render(template_text, &fields);
	body = strstr(message, "\r\n\r\n") + 4;
	for (line = body; *line != '\0'; line = strstr(line, "\r\n") + 2) {
		size_t len = (size_t)(strstr(line, "\r\n") - line);

		assert_true(len <= 76);
		lines++;
	}
	assert_int_equal(lines, 3);
	assert_non_null(strstr(body, "=C3=A4\r\n"));
	mail_free_message(message);
}

static void render_subject_rfc2047(void **state)
{
	struct mail_fields fields = test_fields();
	char *message;

	(void)state;
	message = test_render("Subject: Bestätigung\n\nx\n", &fields);
	assert_non_null(strstr(message, "\r\nSubject: =?UTF-8?B?QmVzdMOkdGlndW5n?=\r\n"));
	mail_free_message(message);
}

static void render_subject_long_folds(void **state)
{
	struct mail_fields fields = test_fields();
	char template_text[300] = "Subject: ";
	char expected[200] = "";
	char *message, *subject, *decoded;
	size_t i;

	(void)state;
	for (i = 0; i < 40; i++)
		strcat(expected, "äö");
	strcat(template_text, expected);
	strcat(template_text, "\n\nx\n");
	message = test_render(template_text, &fields);
	test_assert_lines(message);
	/* 160 bytes: 38 in the first word after "Subject: ", then 44, 44 and 34. */
	assert_non_null(strstr(message, "\r\nSubject: =?UTF-8?B?"));
	assert_non_null(strstr(message, "?=\r\n =?UTF-8?B?"));
	subject = test_header_value(message, "Subject");
	decoded = test_rfc2047_decode(subject);
	assert_string_equal(decoded, expected);
	free(decoded);
	free(subject);
	mail_free_message(message);
}

static void subject_cyrillic_emoji_decodes(void **state)
{
	static const char expected[] = "Подтвердите операцию withdrawal 🔐 по вашей учётной"
		" записи: код внутри письма ✅";
	struct mail_fields fields = test_fields();
	char *message, *subject, *decoded;

	(void)state;
	message = test_render("Subject: Подтвердите операцию {{kind}} 🔐 по вашей учётной"
		" записи: код внутри письма ✅\n\nx\n", &fields);
	test_assert_lines(message);
	test_assert_header_names(message);
	subject = test_header_value(message, "Subject");
	assert_memory_equal(subject, "=?UTF-8?B?", 10);
	decoded = test_rfc2047_decode(subject);
	assert_string_equal(decoded, expected);
	free(decoded);
	free(subject);
	mail_free_message(message);
}

static void subject_ascii_long_folds_at_spaces(void **state)
{
	struct mail_fields fields = test_fields();
	char template_text[500] = "Subject: ";
	char expected[400] = "";
	char *message, *subject;
	size_t i;

	(void)state;
	for (i = 0; i < 20; i++)
		strcat(expected, "confirm the  code ");
	strcat(expected, "now");
	strcat(template_text, expected);
	strcat(template_text, "\n\nx\n");
	message = test_render(template_text, &fields);
	test_assert_lines(message);
	test_assert_header_names(message);
	assert_null(strstr(message, "=?UTF-8?"));
	/* The line after the first Subject line continues it. */
	assert_int_equal(strstr(strstr(message, "\r\nSubject: ") + 2, "\r\n")[2], ' ');
	subject = test_header_value(message, "Subject");
	assert_string_equal(subject, expected);
	free(subject);
	mail_free_message(message);
}

static void subject_ascii_long_word_encoded(void **state)
{
	struct mail_fields fields = test_fields();
	char template_text[200] = "Subject: code ";
	char expected[200] = "code ";
	char *message, *subject, *decoded;

	(void)state;
	memset(expected + 5, 'x', 100);
	expected[105] = '\0';
	strcat(template_text, expected + 5);
	strcat(template_text, "\n\nx\n");
	message = test_render(template_text, &fields);
	test_assert_lines(message);
	subject = test_header_value(message, "Subject");
	assert_memory_equal(subject, "=?UTF-8?B?", 10);
	decoded = test_rfc2047_decode(subject);
	assert_string_equal(decoded, expected);
	free(decoded);
	free(subject);
	mail_free_message(message);
}

static void subject_encoded_word_text_encoded(void **state)
{
	struct mail_fields fields = test_fields();
	char *message, *subject, *decoded;

	(void)state;
	/* "=?UTF-8?B?QmNjOiBldmU=?=" would read as "Bcc: eve" if sent as it is. */
	fields.kind = "=?UTF-8?B?QmNjOiBldmU=?=";
	message = test_render(test_template, &fields);
	subject = test_header_value(message, "Subject");
	assert_memory_equal(subject, "=?UTF-8?B?", 10);
	decoded = test_rfc2047_decode(subject);
	assert_string_equal(decoded, "Code for =?UTF-8?B?QmNjOiBldmU=?=");
	free(decoded);
	free(subject);
	mail_free_message(message);
}

static void param_crlf_neutralised(void **state)
{
	struct mail_fields fields = test_fields();
	char *message, *headers;

	(void)state;
	fields.params_json = "{\"note\":\"x\\r\\nBcc: eve@example.net\\u0000y\"}";
	message = test_render(test_template, &fields);
	headers = test_headers(message);
	assert_null(strstr(headers, "Bcc"));
	assert_non_null(strstr(message, "\r\nnote: x  Bcc: eve@example.net y\r\n"));
	free(headers);
	mail_free_message(message);
}

static void kind_crlf_in_subject_rejected(void **state)
{
	struct mail_fields fields = test_fields();
	char err[256] = "";
	char *message = (char *)"unset";

	(void)state;
	fields.kind = "withdrawal\r\nBcc: eve@example.net";
	assert_int_equal(mail_render(test_template, &fields, &message, err, sizeof(err)),
		MAIL_INVALID_INPUT);
	assert_null(message);
	assert_string_equal(err, "subject contains a control character or line separator"
		" after substitution");
}

static void kind_crlf_in_body_neutralised(void **state)
{
	struct mail_fields fields = test_fields();
	char *message;

	(void)state;
	fields.kind = "withdrawal\r\nBcc: eve@example.net";
	message = test_render("Subject: s\n\nkind {{kind}}\n", &fields);
	assert_non_null(strstr(message, "\r\n\r\nkind withdrawal  Bcc: eve@example.net\r\n"));
	mail_free_message(message);
}

static void recipient_unsafe_rejected(void **state)
{
	static const char *const recipients[] = {
		"alice@example.org\r\nBcc: eve@example.net",
		"alice@example.org\nBcc: eve@example.net",
		"alice@example.org, eve@example.net",
		"alice@example.org eve@example.net",
		"alice@example.org;eve@example.net",
		"Alice <alice@example.org>",
		"alice@eve@example.net",
		"alice",
		"@example.org",
		"alice@",
		"",
	};
	struct mail_fields fields = test_fields();
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(recipients) / sizeof(recipients[0]); i++) {
		char err[256] = "";
		char *message = NULL;

		fields.recipient = recipients[i];
		assert_int_equal(mail_render(test_template, &fields, &message, err, sizeof(err)),
			MAIL_INVALID_INPUT);
		assert_null(message);
		assert_string_equal(err, "recipient is not one address");
	}
}

static void from_address_forms(void **state)
{
	char out[MAIL_ADDRESS_MAX + 1];

	(void)state;
	assert_int_equal(mail_from_address("noreply@example.com", out, sizeof(out)), 0);
	assert_string_equal(out, "noreply@example.com");
	assert_int_equal(mail_from_address("Example Ops <noreply@example.com>", out,
		sizeof(out)), 0);
	assert_string_equal(out, "noreply@example.com");
	assert_int_equal(mail_from_address("\"Example, Inc.\" <noreply@example.com>", out,
		sizeof(out)), 0);
	assert_string_equal(out, "noreply@example.com");
	assert_int_equal(mail_from_address("a@example.com, <b@example.com>", out,
		sizeof(out)), -1);
	assert_int_equal(mail_from_address("Ops <noreply@example.com> x", out, sizeof(out)), -1);
	assert_int_equal(mail_from_address("Ops <>", out, sizeof(out)), -1);
}

static void from_crlf_rejected(void **state)
{
	struct mail_fields fields = test_fields();
	char err[256] = "";
	char *message = NULL;

	(void)state;
	fields.from = "Ops\r\nBcc: eve@example.net <noreply@example.com>";
	assert_int_equal(mail_render(test_template, &fields, &message, err, sizeof(err)),
		MAIL_INVALID_INPUT);
	assert_null(message);
	assert_string_equal(err, "[smtp] from is not an address or \"Display Name <address>\"");
}

static void template_malformed_rejected(void **state)
{
	static const char *const templates[] = {
		"Subject: s\nbody right away\n",
		"Hello\n\nbody\n",
		"Subject: s",
		"Subject: s\n\n{{unknown}}\n",
	};
	struct mail_fields fields = test_fields();
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(templates) / sizeof(templates[0]); i++) {
		char err[256] = "";
		char *message = NULL;

		assert_int_equal(mail_render(templates[i], &fields, &message, err, sizeof(err)),
			MAIL_INVALID_TEMPLATE);
		assert_null(message);
		assert_true(err[0] != '\0');
	}
}

static void params_not_object_rejected(void **state)
{
	struct mail_fields fields = test_fields();
	char err[256] = "";
	char *message = NULL;

	(void)state;
	fields.params_json = "[1,2]";
	assert_int_equal(mail_render(test_template, &fields, &message, err, sizeof(err)),
		MAIL_INVALID_INPUT);
	assert_string_equal(err, "params are not a JSON object");
}

static void expires_minutes_rounds_up(void **state)
{
	struct mail_fields fields = test_fields();
	char *message;

	(void)state;
	fields.expires_at = TEST_NOW + 61;
	message = test_render("Subject: s\n\n{{expires_minutes}}\n", &fields);
	assert_non_null(strstr(message, "\r\n\r\n2\r\n"));
	mail_free_message(message);

	fields.expires_at = TEST_NOW + 5;
	message = test_render("Subject: s\n\n{{expires_minutes}}\n", &fields);
	assert_non_null(strstr(message, "\r\n\r\n1\r\n"));
	mail_free_message(message);
}

static void template_path_fallback(void **state)
{
	char dir[] = "/tmp/test_mail.XXXXXX";
	char path[512], err[256];

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/de", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/de/code.txt", dir);
	fclose(fopen(path, "w"));

	assert_int_equal(mail_template_path(dir, "de", "code", path, sizeof(path), err,
		sizeof(err)), 0);
	assert_true(strcmp(path + strlen(dir), "/de/code.txt") == 0);
	assert_int_equal(mail_template_path(dir, "fr", "code", path, sizeof(path), err,
		sizeof(err)), 0);
	assert_true(strcmp(path + strlen(dir), "/en/code.txt") == 0);
	assert_int_equal(mail_template_path(dir, "../de", "code", path, sizeof(path), err,
		sizeof(err)), 0);
	assert_true(strcmp(path + strlen(dir), "/en/code.txt") == 0);
	assert_int_equal(mail_template_path(dir, "de", "../code", path, sizeof(path), err,
		sizeof(err)), -1);

	snprintf(path, sizeof(path), "%s/de/code.txt", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/de", dir);
	rmdir(path);
	rmdir(dir);
}

/* Reads etc/templates/LOCALE/code.txt of the source tree; NULL (skip) outside make check. */
static char *test_read_shipped(const char *locale)
{
	const char *srcdir = getenv("srcdir");
	char path[1024], err[256] = "";
	char *text = NULL;

	if (srcdir == NULL)
		return NULL;
	snprintf(path, sizeof(path), "%s/etc/templates/%s/code.txt", srcdir, locale);
	assert_int_equal(mail_read_template(path, &text, err, sizeof(err)), MAIL_OK);
	return text;
}

/* The shipped English template renders and carries every value; needs $srcdir from make check. */
static void shipped_template_renders(void **state)
{
	struct mail_fields fields = test_fields();
	char *text, *message;

	(void)state;
	text = test_read_shipped("en");
	if (text == NULL)
		skip();
	message = test_render(text, &fields);
	assert_non_null(strstr(message, "\r\nSubject: Your confirmation code\r\n"));
	assert_non_null(strstr(message, "    123456\r\n"));
	assert_non_null(strstr(message, "10 min, until 2026-12-04 21:30 UTC"));
	assert_non_null(strstr(message, "Operation: withdrawal\r\namount: 100\r\ncurrency: EUR\r\n"));
	assert_non_null(strstr(message, "(***ice@example.org)"));
	assert_null(strstr(message, "{{"));
	mail_free_message(message);
	free(text);
}

/*
 * Renders a shipped template with an emoji and Cyrillic in the parameters
 * and checks line lengths, header names and the decoded subject. The decoded
 * quoted-printable body must equal the template with its placeholders
 * replaced by this test, independently of mail.c.
 */
static void test_shipped_locale(const char *locale, const char *expected_subject)
{
	struct mail_fields fields = test_fields();
	char *text, *message, *subject, *decoded, *body;
	char *expected, *step;
	const char *template_body;
	size_t i;

	text = test_read_shipped(locale);
	if (text == NULL)
		skip();
	fields.params_json = "{\"amount\":\"100.50 ₽\",\"memo\":\"Оплата 🚀 аренды\"}";
	message = test_render(text, &fields);

	test_assert_lines(message);
	test_assert_header_names(message);
	assert_non_null(strstr(message, "\r\nContent-Transfer-Encoding: quoted-printable\r\n"));

	subject = test_header_value(message, "Subject");
	if (strcmp(locale, "en") != 0)
		assert_memory_equal(subject, "=?UTF-8?B?", 10);
	decoded = test_rfc2047_decode(subject);
	assert_string_equal(decoded, expected_subject);
	assert_int_equal(strncmp(text + strlen("Subject: "), expected_subject,
		strlen(expected_subject)), 0);

	/* The template body with each placeholder replaced and LF turned into CRLF. */
	template_body = strstr(text, "\n\n") + 2;
	expected = test_replace(template_body, "{{email_hint}}", "***ice@example.org");
	step = test_replace(expected, "{{kind}}", "withdrawal");
	free(expected);
	expected = test_replace(step, "{{params}}", "amount: 100.50 ₽\nmemo: Оплата 🚀 аренды");
	free(step);
	step = test_replace(expected, "{{code}}", "123456");
	free(expected);
	expected = test_replace(step, "{{expires_minutes}}", "10");
	free(step);
	step = test_replace(expected, "{{expires_at_utc}}", "2026-12-04 21:30 UTC");
	free(expected);
	expected = test_replace(step, "\n", "\r\n");
	free(step);

	body = test_qp_decode(test_body(message));
	assert_string_equal(body, expected);
	for (i = 0; body[i] != '\0'; i++)
		assert_false(body[i] == '{' && body[i + 1] == '{');

	free(body);
	free(expected);
	free(decoded);
	free(subject);
	mail_free_message(message);
	free(text);
}

static void shipped_en_decodes(void **state)
{
	(void)state;
	test_shipped_locale("en", "Your confirmation code");
}

static void shipped_ru_decodes(void **state)
{
	(void)state;
	test_shipped_locale("ru", "Код подтверждения операции");
}

static void shipped_zh_decodes(void **state)
{
	(void)state;
	test_shipped_locale("zh", "您的操作确认码");
}

/* Unknown locales and regional ones resolve among the shipped en, ru and zh folders. */
static void shipped_locale_fallback(void **state)
{
	static const struct {
		const char *locale;
		const char *folder;
	} cases[] = {
		{ "ru", "ru" }, { "ru-RU", "ru" }, { "zh", "zh" }, { "zh-CN", "zh" },
		{ "zh_Hans", "zh" }, { "en-GB", "en" }, { "fr", "en" }, { "xx-YY", "en" },
		{ "", "en" }, { "../ru", "en" },
	};
	const char *srcdir = getenv("srcdir");
	char dir[1024], path[1200], expected[1200], err[256];
	size_t i;

	(void)state;
	if (srcdir == NULL)
		skip();
	snprintf(dir, sizeof(dir), "%s/etc/templates", srcdir);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(mail_template_path(dir, cases[i].locale, "code", path,
			sizeof(path), err, sizeof(err)), 0);
		snprintf(expected, sizeof(expected), "%s/%s/code.txt", dir, cases[i].folder);
		assert_string_equal(path, expected);
	}
}

/* Values that would start a header or a line if copied into a header as they are. */
static const char *const test_hostile_values[] = {
	"x\r\nBcc: eve@example.net",
	"x\nBcc: eve@example.net",
	"x\rBcc: eve@example.net",
	"x\r\n\r\nBcc: eve@example.net",
	"x\tBcc: eve@example.net",
	"x\x0b" "Bcc: eve@example.net",
	"x\x7f" "Bcc: eve@example.net",
	"x\xc2\x85" "Bcc: eve@example.net",
	"x\xe2\x80\xa8" "Bcc: eve@example.net",
	"x\xe2\x80\xa9" "Bcc: eve@example.net",
};

static void hostile_kind_in_subject_rejected(void **state)
{
	struct mail_fields fields = test_fields();
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(test_hostile_values) / sizeof(test_hostile_values[0]); i++) {
		char err[256] = "";
		char *message = (char *)"unset";

		fields.kind = test_hostile_values[i];
		assert_int_equal(mail_render(test_template, &fields, &message, err, sizeof(err)),
			MAIL_INVALID_INPUT);
		assert_null(message);
	}
}

static void hostile_kind_in_body_neutralised(void **state)
{
	struct mail_fields fields = test_fields();
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(test_hostile_values) / sizeof(test_hostile_values[0]); i++) {
		char *message, *body;

		fields.kind = test_hostile_values[i];
		message = test_render("Subject: s ✅\n\nkind {{kind}}\n", &fields);
		test_assert_lines(message);
		test_assert_header_names(message);
		body = test_qp_decode(test_body(message));
		/* Each character that could break the line became a space, so one line remains. */
		assert_memory_equal(body, "kind x ", 7);
		assert_non_null(strstr(body, " Bcc: eve@example.net\r\n"));
		assert_ptr_equal(strstr(body, "\r\n"), body + strlen(body) - 2);
		test_assert_no_bcc_line(body);
		free(body);
		mail_free_message(message);
	}
}

static void hostile_kind_nul_truncates(void **state)
{
	struct mail_fields fields = test_fields();
	char *message, *subject;

	(void)state;
	fields.kind = "withdrawal\0\r\nBcc: eve@example.net";
	message = test_render(test_template, &fields);
	test_assert_header_names(message);
	subject = test_header_value(message, "Subject");
	assert_string_equal(subject, "Code for withdrawal");
	free(subject);
	mail_free_message(message);
}

/* Parameters as JSON, with CR, LF, NUL, NEL and U+2028 in names and values. */
static const char *const test_hostile_params[] = {
	"{\"note\":\"x\\r\\nBcc: eve@example.net\"}",
	"{\"note\":\"x\\r\\n\\r\\nBcc: eve@example.net\"}",
	"{\"note\":\"x\\u0000Bcc: eve@example.net\"}",
	"{\"note\":\"x\\u0085Bcc: eve@example.net\"}",
	"{\"note\":\"x\\u2028Bcc: eve@example.net\"}",
	"{\"x\\nBcc: eve@example.net\\nnote\":\"🚀\"}",
	"{\"note\":\"🚀\\rBcc: eve@example.net\"}",
};

static void hostile_params_in_body_neutralised(void **state)
{
	struct mail_fields fields = test_fields();
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(test_hostile_params) / sizeof(test_hostile_params[0]); i++) {
		char *message, *headers, *body;

		fields.params_json = test_hostile_params[i];
		message = test_render(test_template, &fields);
		test_assert_lines(message);
		test_assert_header_names(message);
		headers = test_headers(message);
		assert_null(strstr(headers, "Bcc"));
		body = test_qp_decode(test_body(message));
		test_assert_no_bcc_line(body);
		assert_non_null(strstr(body, "Bcc: eve@example.net"));
		free(body);
		free(headers);
		mail_free_message(message);
	}
}

/*
 * Parameter names and values are neutralised before substitution, so one
 * parameter in the subject is safe, but the LF between two is rejected.
 */
static void hostile_params_in_subject(void **state)
{
	struct mail_fields fields = test_fields();
	char err[256] = "";
	char *message = NULL;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(test_hostile_params) / sizeof(test_hostile_params[0]); i++) {
		char *subject, *decoded;

		fields.params_json = test_hostile_params[i];
		message = test_render("Subject: {{params}}\n\nx\n", &fields);
		test_assert_lines(message);
		test_assert_header_names(message);
		subject = test_header_value(message, "Subject");
		decoded = test_rfc2047_decode(subject);
		assert_non_null(strstr(decoded, " Bcc: eve@example.net"));
		assert_null(strpbrk(decoded, "\r\n\t"));
		assert_null(strstr(decoded, "\xc2\x85"));
		assert_null(strstr(decoded, "\xe2\x80\xa8"));
		free(decoded);
		free(subject);
		mail_free_message(message);
	}

	fields.params_json = "{\"amount\":\"100\",\"currency\":\"EUR\"}";
	message = (char *)"unset";
	assert_int_equal(mail_render("Subject: {{params}}\n\nx\n", &fields, &message, err,
		sizeof(err)), MAIL_INVALID_INPUT);
	assert_null(message);
}

static void hostile_recipient_rejected(void **state)
{
	static const char *const recipients[] = {
		"alice@example.org\r\nBcc: eve@example.net",
		"alice@example.org\rBcc: eve@example.net",
		"alice@example.org\tBcc:eve@example.net",
		"alice@example.org\xc2\x85" "Bcc:eve@example.net",
		"alice\xe2\x80\xa8@example.org",
		"al\xc3\xaf" "ce@example.org",
	};
	struct mail_fields fields = test_fields();
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(recipients) / sizeof(recipients[0]); i++) {
		char err[256] = "";
		char *message = NULL;

		fields.recipient = recipients[i];
		assert_int_equal(mail_render(test_template, &fields, &message, err, sizeof(err)),
			MAIL_INVALID_INPUT);
		assert_null(message);
		assert_true(err[0] != '\0');
	}
}

static void hostile_from_rejected(void **state)
{
	static const char *const froms[] = {
		"Ops\xc2\x85" "Bcc: eve@example.net <noreply@example.com>",
		"Ops\xe2\x80\xa8" "Bcc: eve@example.net <noreply@example.com>",
		"\"Ops\r\nBcc: eve@example.net\" <noreply@example.com>",
		"Ops <noreply@example.com>\r\nBcc: eve@example.net",
		"Ops \xff <noreply@example.com>",
		"\"Ops \\\" x\" <noreply@example.com>",
	};
	struct mail_fields fields = test_fields();
	char out[MAIL_ADDRESS_MAX + 1];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(froms) / sizeof(froms[0]); i++) {
		char err[256] = "";
		char *message = NULL;

		fields.from = froms[i];
		assert_int_equal(mail_render(test_template, &fields, &message, err, sizeof(err)),
			MAIL_INVALID_INPUT);
		assert_null(message);
		assert_int_equal(mail_from_address(froms[i], out, sizeof(out)), -1);
	}
}

static void from_utf8_name_encoded(void **state)
{
	static const struct {
		const char *from;
		const char *name;
	} cases[] = {
		{ "Служба безопасности <security@example.com>", "Служба безопасности" },
		{ "\"Сервис, Inc.\" <security@example.com>", "Сервис, Inc." },
		{ "安全中心 🔐 <security@example.com>", "安全中心 🔐" },
		{ "Служба безопасности платёжного сервиса для клиентов и партнёров"
			" <security@example.com>",
			"Служба безопасности платёжного сервиса для клиентов и партнёров" },
	};
	struct mail_fields fields = test_fields();
	char out[MAIL_ADDRESS_MAX + 1];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *message, *from, *decoded, *address;

		fields.from = cases[i].from;
		assert_int_equal(mail_from_address(cases[i].from, out, sizeof(out)), 0);
		assert_string_equal(out, "security@example.com");
		message = test_render(test_template, &fields);
		test_assert_lines(message);
		test_assert_header_names(message);
		from = test_header_value(message, "From");
		assert_memory_equal(from, "=?UTF-8?B?", 10);
		address = strrchr(from, '<');
		assert_non_null(address);
		assert_string_equal(address, "<security@example.com>");
		assert_true(address > from && address[-1] == ' ');
		address[-1] = '\0';
		decoded = test_rfc2047_decode(from);
		assert_string_equal(decoded, cases[i].name);
		free(decoded);
		free(from);
		mail_free_message(message);
	}
}

static void from_ascii_name_kept(void **state)
{
	static const struct {
		const char *from;
		const char *header;
	} cases[] = {
		{ "=?UTF-8?B?0KHQu9GD0LbQsdCw?= <security@example.com>",
			"=?UTF-8?B?0KHQu9GD0LbQsdCw?= <security@example.com>" },
		{ "\"Example, Inc.\" <security@example.com>",
			"\"Example, Inc.\" <security@example.com>" },
		{ "security@example.com", "security@example.com" },
		{ "Example Payments Security Operations Team <security-alerts@example.com>",
			"Example Payments Security Operations Team <security-alerts@example.com>" },
	};
	struct mail_fields fields = test_fields();
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *message, *from;

		fields.from = cases[i].from;
		message = test_render(test_template, &fields);
		test_assert_lines(message);
		from = test_header_value(message, "From");
		assert_string_equal(from, cases[i].header);
		/* The last name is too long to share its line with the address. */
		if (i == 3)
			assert_non_null(strstr(message, "Team\r\n <security-alerts@example.com>\r\n"));
		free(from);
		mail_free_message(message);
	}
}

static void long_address_and_id_fold(void **state)
{
	struct mail_fields fields = test_fields();
	char *message, *to, *id;

	(void)state;
	/* 73 characters, so "To: " and the address make 77. */
	fields.recipient =
		"alice.marie.longname.with.many.parts+operations-notices@mail1.example.org";
	fields.message_id_domain = "outbound-notifications.mail.example.net";
	message = test_render(test_template, &fields);
	test_assert_lines(message);
	test_assert_header_names(message);
	assert_non_null(strstr(message, "\r\nTo:\r\n alice.marie."));
	assert_non_null(strstr(message, "\r\nMessage-ID:\r\n <"));
	to = test_header_value(message, "To");
	assert_string_equal(to, fields.recipient);
	id = test_header_value(message, "Message-ID");
	assert_int_equal(strlen(id), 1 + 32 + 1 + strlen(fields.message_id_domain) + 1);
	assert_string_equal(id + 33, "@outbound-notifications.mail.example.net>");
	free(id);
	free(to);
	mail_free_message(message);
}

static void message_id_domain_invalid(void **state)
{
	static const char *const domains[] = {
		"a..example.net", ".example.net", "example.net.", "-a.example.net",
		"a-.example.net", "a_b.example.net", "exämple.net", "example.net>\r\nBcc: x",
	};
	struct mail_fields fields = test_fields();
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(domains) / sizeof(domains[0]); i++) {
		char err[256] = "";
		char *message = NULL;

		fields.message_id_domain = domains[i];
		assert_int_equal(mail_render(test_template, &fields, &message, err, sizeof(err)),
			MAIL_INVALID_INPUT);
		assert_null(message);
	}
}

static void body_qp_keeps_characters_whole(void **state)
{
	struct mail_fields fields = test_fields();
	char template_text[600] = "Subject: s\n\n";
	char expected[600] = "";
	char *message, *body;
	size_t i;

	(void)state;
	for (i = 0; i < 25; i++)
		strcat(expected, i % 5 == 4 ? "я🚀" : "жи");
	strcat(expected, " .x\r\n");
	strcat(template_text, expected);
	message = test_render(template_text, &fields);
	test_assert_lines(message);
	/* test_qp_decode fails when a soft-broken line ends inside a character. */
	body = test_qp_decode(test_body(message));
	assert_string_equal(body, expected);
	free(body);
	mail_free_message(message);
}

static void body_long_ascii_line_qp(void **state)
{
	struct mail_fields fields = test_fields();
	char template_text[200] = "Subject: s\n\n";
	char expected[200];
	char *message, *body;

	(void)state;
	memset(expected, 'a', 120);
	memcpy(expected + 120, "\r\n", 3);
	strcat(template_text, expected);
	message = test_render(template_text, &fields);
	test_assert_lines(message);
	assert_non_null(strstr(message, "\r\nContent-Transfer-Encoding: quoted-printable\r\n"));
	body = test_qp_decode(test_body(message));
	assert_string_equal(body, expected);
	free(body);
	mail_free_message(message);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(render_ascii_exact),
		cmocka_unit_test(render_crlf_everywhere),
		cmocka_unit_test(render_message_id_domain),
		cmocka_unit_test(render_qp_non_ascii_body),
		cmocka_unit_test(render_qp_soft_breaks),
		cmocka_unit_test(render_subject_rfc2047),
		cmocka_unit_test(render_subject_long_folds),
		cmocka_unit_test(subject_cyrillic_emoji_decodes),
		cmocka_unit_test(subject_ascii_long_folds_at_spaces),
		cmocka_unit_test(subject_ascii_long_word_encoded),
		cmocka_unit_test(subject_encoded_word_text_encoded),
		cmocka_unit_test(param_crlf_neutralised),
		cmocka_unit_test(kind_crlf_in_subject_rejected),
		cmocka_unit_test(kind_crlf_in_body_neutralised),
		cmocka_unit_test(recipient_unsafe_rejected),
		cmocka_unit_test(from_address_forms),
		cmocka_unit_test(from_crlf_rejected),
		cmocka_unit_test(template_malformed_rejected),
		cmocka_unit_test(params_not_object_rejected),
		cmocka_unit_test(expires_minutes_rounds_up),
		cmocka_unit_test(template_path_fallback),
		cmocka_unit_test(shipped_template_renders),
		cmocka_unit_test(shipped_en_decodes),
		cmocka_unit_test(shipped_ru_decodes),
		cmocka_unit_test(shipped_zh_decodes),
		cmocka_unit_test(shipped_locale_fallback),
		cmocka_unit_test(hostile_kind_in_subject_rejected),
		cmocka_unit_test(hostile_kind_in_body_neutralised),
		cmocka_unit_test(hostile_kind_nul_truncates),
		cmocka_unit_test(hostile_params_in_body_neutralised),
		cmocka_unit_test(hostile_params_in_subject),
		cmocka_unit_test(hostile_recipient_rejected),
		cmocka_unit_test(hostile_from_rejected),
		cmocka_unit_test(from_utf8_name_encoded),
		cmocka_unit_test(from_ascii_name_kept),
		cmocka_unit_test(long_address_and_id_fold),
		cmocka_unit_test(message_id_domain_invalid),
		cmocka_unit_test(body_qp_keeps_characters_whole),
		cmocka_unit_test(body_long_ascii_line_qp),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
