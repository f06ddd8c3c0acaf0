/* Rendering of a code mail as an RFC 5322 message from a template file. */
#include "autoconfig.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "crypto.h"
#include "mail.h"

/* RFC 5322 §2.1.1: a line is at most 998 characters long, not counting its CRLF. */
#define MAIL_LINE_MAX 998
/* RFC 2045 §6.7: an encoded line is at most 76 characters long, the soft break's '=' included. */
#define MAIL_QP_LINE_MAX 76
/*
 * RFC 2047 §2: a line holding encoded words is at most 76 characters. 39
 * bytes make 52 base64 digits, a 64-character word, so even the first one
 * fits after "Subject: ".
 */
#define MAIL_WORD_BYTES 39
/* An ASCII subject longer than this is sent as encoded words, which fold. */
#define MAIL_PLAIN_SUBJECT_MAX 900

/* A growing string that wipes the memory it releases, because it contains the code. */
struct mail_buffer {
	char *data;
	size_t len;
	size_t cap;
	bool failed;
};

struct mail_placeholder {
	const char *name;
	const char *value;
	size_t len;
	bool multiline;   /* already neutralised, its line breaks kept */
};

static void mail_buffer_reserve(struct mail_buffer *buf, size_t extra)
{
	size_t cap;
	char *data;

	if (buf->failed || buf->len + extra + 1 <= buf->cap)
		return;
	cap = buf->cap == 0 ? 1024 : buf->cap;
	while (cap < buf->len + extra + 1)
		cap *= 2;
	data = malloc(cap);
	if (data == NULL) {
		buf->failed = true;
		return;
	}
	if (buf->data != NULL) {
		memcpy(data, buf->data, buf->len);
		crypto_wipe(buf->data, buf->cap);
		free(buf->data);
	}
	buf->data = data;
	buf->cap = cap;
}

static void mail_buffer_append(struct mail_buffer *buf, const char *text, size_t len)
{
	mail_buffer_reserve(buf, len);
	if (buf->failed)
		return;
	memcpy(buf->data + buf->len, text, len);
	buf->len += len;
	buf->data[buf->len] = '\0';
}

static void mail_buffer_puts(struct mail_buffer *buf, const char *text)
{
	mail_buffer_append(buf, text, strlen(text));
}

static void mail_buffer_wipe(struct mail_buffer *buf)
{
	if (buf->data != NULL) {
		crypto_wipe(buf->data, buf->cap);
		free(buf->data);
	}
	buf->data = NULL;
	buf->len = 0;
	buf->cap = 0;
}

static bool mail_is_control(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

/* Appends text with every control character (NUL, CR and LF included) replaced by a space. */
static void mail_buffer_append_neutralised(struct mail_buffer *buf, const char *text,
	size_t len)
{
	size_t i;

	mail_buffer_reserve(buf, len);
	if (buf->failed)
		return;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];

		buf->data[buf->len++] = mail_is_control(c) ? ' ' : (char)c;
	}
	buf->data[buf->len] = '\0';
}

static bool mail_is_token(const char *text)
{
	size_t i;

	if (text == NULL || text[0] == '\0')
		return false;
	for (i = 0; text[i] != '\0'; i++) {
		char c = text[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			(c >= '0' && c <= '9') || c == '-' || c == '_';

		if (!ok)
			return false;
	}
	return true;
}

int mail_template_path(const char *dir, const char *locale, const char *name, char *out,
	size_t out_size, char *err, size_t err_size)
{
	int len;

	if (!mail_is_token(name)) {
		snprintf(err, err_size, "invalid template name");
		return -1;
	}
	if (mail_is_token(locale)) {
		len = snprintf(out, out_size, "%s/%s/%s.txt", dir, locale, name);
		if (len > 0 && (size_t)len < out_size && access(out, F_OK) == 0)
			return 0;
	}
	len = snprintf(out, out_size, "%s/en/%s.txt", dir, name);
	if (len < 0 || (size_t)len >= out_size) {
		snprintf(err, err_size, "template path under %s is too long", dir);
		return -1;
	}
	return 0;
}

enum mail_result mail_read_template(const char *path, char **text, char *err,
	size_t err_size)
{
	enum mail_result result = MAIL_INVALID_TEMPLATE;
	FILE *file = NULL;
	char *data = NULL;
	size_t len;

	*text = NULL;
	file = fopen(path, "rb");
	if (file == NULL) {
		snprintf(err, err_size, "cannot open template %s: %s", path, strerror(errno));
		goto out;
	}
	data = malloc(MAIL_TEMPLATE_MAX + 2);
	if (data == NULL) {
		result = MAIL_NO_MEMORY;
		goto out;
	}
	len = fread(data, 1, MAIL_TEMPLATE_MAX + 1, file);
	if (ferror(file)) {
		snprintf(err, err_size, "cannot read template %s", path);
		goto out;
	}
	if (len > MAIL_TEMPLATE_MAX) {
		snprintf(err, err_size, "template %s is larger than %d bytes", path,
			MAIL_TEMPLATE_MAX);
		goto out;
	}
	if (memchr(data, '\0', len) != NULL) {
		snprintf(err, err_size, "template %s contains a NUL byte", path);
		goto out;
	}
	data[len] = '\0';
	*text = data;
	data = NULL;
	result = MAIL_OK;
out:
	free(data);
	if (file != NULL)
		fclose(file);
	return result;
}

void mail_free_message(char *message)
{
	if (message == NULL)
		return;
	crypto_wipe(message, strlen(message));
	free(message);
}

static bool mail_is_address_char(unsigned char c)
{
	if (c <= 0x20 || c == 0x7f)
		return false;
	return strchr("<>()[]\\,;:\"@", c) == NULL;
}

int mail_check_address(const char *address)
{
	const char *at;
	size_t len, local_len, i;

	if (address == NULL)
		return -1;
	len = strlen(address);
	at = strchr(address, '@');
	if (len > MAIL_ADDRESS_MAX || at == NULL || strchr(at + 1, '@') != NULL)
		return -1;
	local_len = (size_t)(at - address);
	/* RFC 5321 §4.5.3.1.1: a local part is at most 64 octets. */
	if (local_len == 0 || local_len > 64 || at[1] == '\0')
		return -1;
	for (i = 0; i < len; i++)
		if (i != local_len && !mail_is_address_char((unsigned char)address[i]))
			return -1;
	if (at[1] == '.' || address[len - 1] == '.' || address[0] == '.' || at[-1] == '.')
		return -1;
	return 0;
}

/* RFC 5322 §3.2.3 atext, plus '.' and space as display names use them unquoted. */
static bool mail_is_phrase_char(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return strchr("!#$%&'*+-/=?^_`{|}~. ", c) != NULL && c != '\0';
}

/* Checks the display name of a From value: a quoted string or unquoted words. */
static int mail_check_display_name(const char *name, size_t len)
{
	size_t i;

	if (len >= 2 && name[0] == '"' && name[len - 1] == '"') {
		for (i = 1; i + 1 < len; i++) {
			unsigned char c = (unsigned char)name[i];

			if (c < 0x20 || c > 0x7e || c == '"' || c == '\\')
				return -1;
		}
		return 0;
	}
	for (i = 0; i < len; i++)
		if (!mail_is_phrase_char((unsigned char)name[i]))
			return -1;
	return 0;
}

int mail_from_address(const char *from, char *out, size_t out_size)
{
	const char *open, *close;
	size_t name_len, len;

	if (from == NULL)
		return -1;
	open = strrchr(from, '<');
	if (open == NULL) {
		len = strlen(from);
		open = from - 1;
	} else {
		close = strchr(open, '>');
		if (close == NULL || close[1] != '\0')
			return -1;
		len = (size_t)(close - open - 1);
		name_len = (size_t)(open - from);
		while (name_len > 0 && from[name_len - 1] == ' ')
			name_len--;
		if (mail_check_display_name(from, name_len) != 0)
			return -1;
	}
	if (len + 1 > out_size)
		return -1;
	memcpy(out, open + 1, len);
	out[len] = '\0';
	return mail_check_address(out);
}

/* Formats an RFC 5322 §3.3 date in UTC, independent of the C locale. */
static void mail_format_date(int64_t when, char *out, size_t out_size)
{
	static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
		"Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t t = (time_t)when;
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(out, out_size, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday],
		tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
		tm.tm_sec);
}

static void mail_format_utc_minute(int64_t when, char *out, size_t out_size)
{
	time_t t = (time_t)when;
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(out, out_size, "%04d-%02d-%02d %02d:%02d UTC", tm.tm_year + 1900,
		tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min);
}

/* Builds the {{params}} text: "name: value" lines joined by LF, each part neutralised. */
static enum mail_result mail_format_params(const char *params_json, struct mail_buffer *out,
	char *err, size_t err_size)
{
	struct json_object *params = NULL;
	bool first = true;

	params = json_tokener_parse(params_json != NULL ? params_json : "");
	if (params == NULL || !json_object_is_type(params, json_type_object)) {
		json_object_put(params);
		snprintf(err, err_size, "params are not a JSON object");
		return MAIL_INVALID_INPUT;
	}
	json_object_object_foreach(params, name, value) {
		const char *text;
		size_t len;

		if (json_object_is_type(value, json_type_string)) {
			text = json_object_get_string(value);
			len = (size_t)json_object_get_string_len(value);
		} else {
			text = json_object_to_json_string_ext(value, JSON_C_TO_STRING_PLAIN);
			len = strlen(text);
		}
		if (!first)
			mail_buffer_append(out, "\n", 1);
		first = false;
		mail_buffer_append_neutralised(out, name, strlen(name));
		mail_buffer_append(out, ": ", 2);
		mail_buffer_append_neutralised(out, text, len);
	}
	json_object_put(params);
	return out->failed ? MAIL_NO_MEMORY : MAIL_OK;
}

static const struct mail_placeholder *mail_find_placeholder(
	const struct mail_placeholder *table, size_t count, const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < count; i++)
		if (strlen(table[i].name) == len && memcmp(table[i].name, name, len) == 0)
			return &table[i];
	return NULL;
}

/*
 * Appends text with each {{name}} replaced. In the body (neutralise set),
 * control characters in a value become spaces. In the subject, values are
 * copied as they are, and the caller rejects a subject that contains one.
 */
static enum mail_result mail_expand(const char *text, size_t len,
	const struct mail_placeholder *table, size_t count, bool neutralise,
	struct mail_buffer *out, char *err, size_t err_size)
{
	size_t i = 0;

	while (i < len) {
		const char *open = NULL, *close = NULL;
		const struct mail_placeholder *placeholder;

		if (len - i >= 4 && text[i] == '{' && text[i + 1] == '{') {
			open = text + i + 2;
			close = memchr(open, '}', len - i - 2);
		}
		if (close == NULL || (size_t)(close - text) + 1 >= len || close[1] != '}') {
			mail_buffer_append(out, text + i, 1);
			i++;
			continue;
		}
		placeholder = mail_find_placeholder(table, count, open, (size_t)(close - open));
		if (placeholder == NULL) {
			snprintf(err, err_size, "unknown placeholder {{%.*s}} in template",
				(int)(close - open > 32 ? 32 : close - open), open);
			return MAIL_INVALID_TEMPLATE;
		}
		if (neutralise && !placeholder->multiline)
			mail_buffer_append_neutralised(out, placeholder->value, placeholder->len);
		else
			mail_buffer_append(out, placeholder->value, placeholder->len);
		i = (size_t)(close - text) + 2;
	}
	return out->failed ? MAIL_NO_MEMORY : MAIL_OK;
}

/* Appends the subject header, as RFC 2047 "B" encoded words when it is not short ASCII. */
static void mail_append_subject(struct mail_buffer *out, const char *subject, size_t len)
{
	size_t i, start;
	bool plain = len <= MAIL_PLAIN_SUBJECT_MAX;

	for (i = 0; i < len && plain; i++)
		if ((unsigned char)subject[i] > 0x7e)
			plain = false;
	mail_buffer_puts(out, "Subject: ");
	if (plain) {
		mail_buffer_append(out, subject, len);
		mail_buffer_puts(out, "\r\n");
		return;
	}

	/* Each word ends on a UTF-8 character boundary, as RFC 2047 §5 requires. */
	for (start = 0; start < len; start = i) {
		unsigned char word[MAIL_WORD_BYTES];
		unsigned char encoded[4 * MAIL_WORD_BYTES / 3 + 4];
		int encoded_len;

		i = start;
		while (i < len) {
			unsigned char lead = (unsigned char)subject[i];
			size_t char_len = 1;

			if (lead >= 0xf0)
				char_len = 4;
			else if (lead >= 0xe0)
				char_len = 3;
			else if (lead >= 0xc0)
				char_len = 2;

			if (char_len > len - i)
				char_len = len - i;
			if (i + char_len - start > MAIL_WORD_BYTES)
				break;
			i += char_len;
		}
		memcpy(word, subject + start, i - start);
		encoded_len = EVP_EncodeBlock(encoded, word, (int)(i - start));
		if (start > 0)
			mail_buffer_puts(out, "\r\n ");
		mail_buffer_puts(out, "=?UTF-8?B?");
		mail_buffer_append(out, (const char *)encoded, (size_t)encoded_len);
		mail_buffer_puts(out, "?=");
	}
	mail_buffer_puts(out, "\r\n");
}

/* Rewrites every line ending of text (LF, CR or CRLF) as CRLF and ends it with one. */
static void mail_normalise_lines(const char *text, size_t len, struct mail_buffer *out)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (text[i] == '\r' || text[i] == '\n') {
			if (text[i] == '\r' && i + 1 < len && text[i + 1] == '\n')
				i++;
			mail_buffer_append(out, "\r\n", 2);
		} else {
			mail_buffer_append(out, text + i, 1);
		}
	}
	if (out->len < 2 || memcmp(out->data + out->len - 2, "\r\n", 2) != 0)
		mail_buffer_append(out, "\r\n", 2);
}

/* Returns true when a CRLF body may go as 7bit: ASCII only, no line over 998 characters. */
static bool mail_is_7bit(const char *body, size_t len)
{
	size_t i, column = 0;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)body[i];

		if (c >= 0x80 || c == '\0')
			return false;
		column = c == '\n' ? 0 : column + 1;
		if (column > MAIL_LINE_MAX + 1)
			return false;
	}
	return true;
}

/*
 * Appends one line (without its CRLF) as RFC 2045 §6.7 quoted-printable,
 * with soft breaks. A '.' opening an output line is encoded too, so no
 * line of the data can be mistaken for the SMTP end of data.
 */
static void mail_append_qp_line(struct mail_buffer *out, const char *line, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i, column = 0;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];
		bool last = i + 1 == len;
		bool literal = (c >= 33 && c <= 126 && c != '=') ||
			((c == ' ' || c == '\t') && !last);
		size_t width = literal ? 1 : 3;
		char escaped[3] = { '=', hex[c >> 4], hex[c & 0x0f] };

		if (column + width > MAIL_QP_LINE_MAX - 1) {
			mail_buffer_append(out, "=\r\n", 3);
			column = 0;
		}
		if (column == 0 && c == '.')
			literal = false;
		if (literal) {
			mail_buffer_append(out, line + i, 1);
			column++;
		} else {
			mail_buffer_append(out, escaped, 3);
			column += 3;
		}
	}
	mail_buffer_append(out, "\r\n", 2);
}

static void mail_append_qp(struct mail_buffer *out, const char *body, size_t len)
{
	size_t start = 0;

	while (start < len) {
		const char *end = strstr(body + start, "\r\n");
		size_t line_len = end != NULL ? (size_t)(end - body - start) : len - start;

		mail_append_qp_line(out, body + start, line_len);
		start += line_len + 2;
	}
}

/* Checks a value that reaches a header verbatim: no control character at all. */
static bool mail_is_header_safe(const char *value, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (mail_is_control((unsigned char)value[i]))
			return false;
	return true;
}

static bool mail_is_domain(const char *domain)
{
	size_t i;

	if (domain == NULL || domain[0] == '\0' || strlen(domain) > 253)
		return false;
	for (i = 0; domain[i] != '\0'; i++) {
		char c = domain[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			(c >= '0' && c <= '9') || c == '-' || c == '.';

		if (!ok)
			return false;
	}
	return true;
}

/* Checks from and the recipient, then appends Date, Message-ID, From and To. */
static enum mail_result mail_append_envelope_headers(struct mail_buffer *out,
	const struct mail_fields *fields, char *err, size_t err_size)
{
	char from_address[MAIL_ADDRESS_MAX + 1];
	char date[64];
	unsigned char random[16];
	char id[2 * sizeof(random) + 1];
	const char *domain;

	if (!mail_is_header_safe(fields->from, strlen(fields->from)) ||
	    mail_from_address(fields->from, from_address, sizeof(from_address)) != 0) {
		snprintf(err, err_size, "[smtp] from is not one address");
		return MAIL_INVALID_INPUT;
	}
	if (mail_check_address(fields->recipient) != 0) {
		snprintf(err, err_size, "recipient is not one address");
		return MAIL_INVALID_INPUT;
	}
	domain = fields->message_id_domain;
	if (domain == NULL || domain[0] == '\0')
		domain = strchr(from_address, '@') + 1;
	if (!mail_is_domain(domain)) {
		snprintf(err, err_size, "Message-ID domain is not a domain name");
		return MAIL_INVALID_INPUT;
	}
	if (crypto_random_bytes(random, sizeof(random)) != 0) {
		snprintf(err, err_size, "cannot draw random bytes for the Message-ID");
		return MAIL_NO_MEMORY;
	}
	crypto_hex_encode(random, sizeof(random), id);
	mail_format_date(fields->now, date, sizeof(date));

	mail_buffer_puts(out, "Date: ");
	mail_buffer_puts(out, date);
	mail_buffer_puts(out, "\r\nMessage-ID: <");
	mail_buffer_puts(out, id);
	mail_buffer_puts(out, "@");
	mail_buffer_puts(out, domain);
	mail_buffer_puts(out, ">\r\nFrom: ");
	mail_buffer_puts(out, fields->from);
	mail_buffer_puts(out, "\r\nTo: ");
	mail_buffer_puts(out, fields->recipient);
	mail_buffer_puts(out, "\r\n");
	return out->failed ? MAIL_NO_MEMORY : MAIL_OK;
}

/* Splits a template into its subject text and body, both pointing into text. */
static enum mail_result mail_split_template(const char *text, const char **subject,
	size_t *subject_len, const char **body, char *err, size_t err_size)
{
	const char *end, *next;

	if (strncasecmp(text, "Subject:", 8) != 0) {
		snprintf(err, err_size, "template does not start with a Subject: line");
		return MAIL_INVALID_TEMPLATE;
	}
	*subject = text + 8;
	while (**subject == ' ' || **subject == '\t')
		(*subject)++;
	end = strchr(*subject, '\n');
	if (end == NULL) {
		snprintf(err, err_size, "template has no body after the Subject: line");
		return MAIL_INVALID_TEMPLATE;
	}
	next = end + 1;
	while (end > *subject && (end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
		end--;
	*subject_len = (size_t)(end - *subject);
	if (next[0] == '\r')
		next++;
	if (next[0] != '\n') {
		snprintf(err, err_size, "template has no blank line after the Subject: line");
		return MAIL_INVALID_TEMPLATE;
	}
	*body = next + 1;
	return MAIL_OK;
}

/* Expands subject and body, rejecting a subject into which a value put a control character. */
static enum mail_result mail_expand_parts(const char *template_text,
	const struct mail_placeholder *table, size_t count, struct mail_buffer *subject,
	struct mail_buffer *body, char *err, size_t err_size)
{
	const char *subject_text, *body_text;
	size_t subject_len;
	enum mail_result result;

	result = mail_split_template(template_text, &subject_text, &subject_len, &body_text,
		err, err_size);
	if (result != MAIL_OK)
		return result;
	result = mail_expand(subject_text, subject_len, table, count, false, subject, err,
		err_size);
	if (result != MAIL_OK)
		return result;
	mail_buffer_append(subject, "", 0);
	if (!mail_is_header_safe(subject->data, subject->len)) {
		snprintf(err, err_size, "subject contains a control character after substitution");
		return MAIL_INVALID_INPUT;
	}
	return mail_expand(body_text, strlen(body_text), table, count, true, body, err,
		err_size);
}

/* Appends the subject, the MIME headers, the blank line and the encoded body. */
static void mail_append_content(struct mail_buffer *out, const struct mail_buffer *subject,
	const struct mail_buffer *body)
{
	bool plain = mail_is_7bit(body->data, body->len);

	mail_append_subject(out, subject->data, subject->len);
	mail_buffer_puts(out, "MIME-Version: 1.0\r\n"
		"Content-Type: text/plain; charset=UTF-8\r\n"
		"Content-Transfer-Encoding: ");
	mail_buffer_puts(out, plain ? "7bit\r\n" : "quoted-printable\r\n");
	mail_buffer_puts(out, "Auto-Submitted: auto-generated\r\n\r\n");
	if (plain)
		mail_buffer_append(out, body->data, body->len);
	else
		mail_append_qp(out, body->data, body->len);
}

enum mail_result mail_render(const char *template_text, const struct mail_fields *fields,
	char **message, char *err, size_t err_size)
{
	struct mail_buffer params = { 0 }, subject = { 0 }, body = { 0 }, lines = { 0 };
	struct mail_buffer out = { 0 };
	char minutes[32], expires[64];
	int64_t remaining = fields->expires_at - fields->now;
	const char *code = fields->code != NULL ? fields->code : "";
	const char *kind = fields->kind != NULL ? fields->kind : "";
	const char *hint = fields->email_hint != NULL ? fields->email_hint : "";
	enum mail_result result;

	*message = NULL;
	if (err_size > 0)
		err[0] = '\0';
	snprintf(minutes, sizeof(minutes), "%lld",
		remaining > 60 ? (long long)((remaining + 59) / 60) : 1LL);
	mail_format_utc_minute(fields->expires_at, expires, sizeof(expires));
	result = mail_format_params(fields->params_json, &params, err, err_size);
	if (result != MAIL_OK)
		goto out;
	mail_buffer_append(&params, "", 0);

	const struct mail_placeholder table[] = {
		{ "code", code, strlen(code), false },
		{ "kind", kind, strlen(kind), false },
		{ "expires_minutes", minutes, strlen(minutes), false },
		{ "expires_at_utc", expires, strlen(expires), false },
		{ "params", params.data, params.len, true },
		{ "email_hint", hint, strlen(hint), false },
	};
	result = mail_expand_parts(template_text, table, sizeof(table) / sizeof(table[0]),
		&subject, &body, err, err_size);
	if (result != MAIL_OK)
		goto out;
	mail_normalise_lines(body.data != NULL ? body.data : "", body.len, &lines);

	result = mail_append_envelope_headers(&out, fields, err, err_size);
	if (result != MAIL_OK)
		goto out;
	mail_append_content(&out, &subject, &lines);
	if (out.failed) {
		result = MAIL_NO_MEMORY;
		goto out;
	}
	*message = out.data;
	out.data = NULL;
out:
	if (result == MAIL_NO_MEMORY && err[0] == '\0')
		snprintf(err, err_size, "out of memory rendering the message");
	mail_buffer_wipe(&params);
	mail_buffer_wipe(&subject);
	mail_buffer_wipe(&body);
	mail_buffer_wipe(&lines);
	mail_buffer_wipe(&out);
	return result;
}
