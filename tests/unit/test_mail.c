/* Unit tests of mail.c: template rendering, encodings and header safety. */
#include "autoconfig.h"

#include <setjmp.h>
#include <stdarg.h>
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
	char *message, *headers, *line;
	size_t i, words = 0;

	(void)state;
	for (i = 0; i < 40; i++)
		strcat(template_text, "äö");
	strcat(template_text, "\n\nx\n");
	message = test_render(template_text, &fields);
	headers = test_headers(message);
	for (line = headers; *line != '\0'; line = strstr(line, "\r\n") + 2) {
		size_t len = (size_t)(strstr(line, "\r\n") - line);

		assert_true(len <= 76);
		if (strstr(line, "=?UTF-8?B?") != NULL && strstr(line, "=?UTF-8?B?") < line + len)
			words++;
	}
	/* 160 bytes of two-byte characters in words of at most 39 bytes: 4 of 38, then 8. */
	assert_int_equal(words, 5);
	free(headers);
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
	assert_string_equal(err, "subject contains a control character after substitution");
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
	assert_string_equal(err, "[smtp] from is not one address");
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

/* The shipped English template renders and carries every value; needs $srcdir from make check. */
static void shipped_template_renders(void **state)
{
	struct mail_fields fields = test_fields();
	const char *srcdir = getenv("srcdir");
	char path[1024], err[256] = "";
	char *text = NULL, *message;

	(void)state;
	if (srcdir == NULL)
		skip();
	snprintf(path, sizeof(path), "%s/etc/templates/en/code.txt", srcdir);
	assert_int_equal(mail_read_template(path, &text, err, sizeof(err)), MAIL_OK);
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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
