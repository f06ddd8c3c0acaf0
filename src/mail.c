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

/*
 * Every line this module writes is at most 76 characters long, its CRLF not
 * counted: the limit of RFC 2045 §6.7 for quoted-printable lines and of
 * RFC 2047 §2 for lines with encoded words, and under the 78 of RFC 5322
 * §2.1.1. Only a To or Message-ID line can be longer, when the address or
 * the domain alone does not fit, because neither can be folded inside.
 */
#define MAIL_LINE_LIMIT 76
/* The characters of "=?UTF-8?B?" and "?=" around the base64 text of an encoded word. */
#define MAIL_WORD_OVERHEAD 12

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

/* An [smtp] from value split into its parts. */
struct mail_from {
	const char *phrase;      /* the display name as written, quotes included */
	size_t phrase_len;       /* 0 when from is a bare address */
	const char *name;        /* the display name without its quotes */
	size_t name_len;
	char address[MAIL_ADDRESS_MAX + 1];
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

/*
 * Returns the length of the well-formed UTF-8 character that starts text
 * (RFC 3629: no overlong form, surrogate or value above U+10FFFF), or 0.
 */
static size_t mail_utf8_length(const char *text, size_t len)
{
	const unsigned char *bytes = (const unsigned char *)text;
	unsigned char low = 0x80, high = 0xbf;
	size_t count, i;

	if (len == 0)
		return 0;
	if (bytes[0] < 0x80)
		return 1;
	if (bytes[0] >= 0xc2 && bytes[0] <= 0xdf)
		count = 2;
	else if (bytes[0] >= 0xe0 && bytes[0] <= 0xef)
		count = 3;
	else if (bytes[0] >= 0xf0 && bytes[0] <= 0xf4)
		count = 4;
	else
		return 0;

	if (bytes[0] == 0xe0)
		low = 0xa0;
	else if (bytes[0] == 0xed)
		high = 0x9f;
	else if (bytes[0] == 0xf0)
		low = 0x90;
	else if (bytes[0] == 0xf4)
		high = 0x8f;
	if (count > len || bytes[1] < low || bytes[1] > high)
		return 0;
	for (i = 2; i < count; i++)
		if (bytes[i] < 0x80 || bytes[i] > 0xbf)
			return 0;
	return count;
}

/*
 * Returns the byte length of the character that starts text when some reader
 * may take it as a line break, else 0. Such characters are the C0 controls
 * (NUL, CR and LF among them), DEL, the C1 controls (U+0080 to U+009F, NEL
 * among them), U+2028 LINE SEPARATOR and U+2029 PARAGRAPH SEPARATOR.
 */
static size_t mail_line_break_length(const char *text, size_t len)
{
	const unsigned char *bytes = (const unsigned char *)text;

	if (len == 0)
		return 0;
	if (bytes[0] < 0x20 || bytes[0] == 0x7f)
		return 1;
	if (len >= 2 && bytes[0] == 0xc2 && bytes[1] >= 0x80 && bytes[1] <= 0x9f)
		return 2;
	if (len >= 3 && bytes[0] == 0xe2 && bytes[1] == 0x80 &&
	    (bytes[2] == 0xa8 || bytes[2] == 0xa9))
		return 3;
	return 0;
}

/* Appends text with every character that mail_line_break_length finds replaced by one space. */
static void mail_buffer_append_neutralised(struct mail_buffer *buf, const char *text,
	size_t len)
{
	size_t i = 0;

	while (i < len) {
		size_t break_len = mail_line_break_length(text + i, len - i);

		if (break_len > 0) {
			mail_buffer_append(buf, " ", 1);
			i += break_len;
		} else {
			mail_buffer_append(buf, text + i, 1);
			i++;
		}
	}
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

/* Writes DIR/LOCALE/NAME.txt to out, using locale_len bytes of locale. Returns 0 if it exists. */
static int mail_try_template(const char *dir, const char *locale, size_t locale_len,
	const char *name, char *out, size_t out_size)
{
	int len = snprintf(out, out_size, "%s/%.*s/%s.txt", dir, (int)locale_len, locale, name);

	if (len > 0 && (size_t)len < out_size && access(out, F_OK) == 0)
		return 0;
	return -1;
}

int mail_template_path(const char *dir, const char *locale, const char *name, char *out,
	size_t out_size, char *err, size_t err_size)
{
	size_t language_len;
	int len;

	if (!mail_is_token(name)) {
		snprintf(err, err_size, "invalid template name");
		return -1;
	}
	if (mail_is_token(locale) && strlen(locale) < 64) {
		if (mail_try_template(dir, locale, strlen(locale), name, out, out_size) == 0)
			return 0;
		language_len = strcspn(locale, "-_");
		if (locale[language_len] != '\0' &&
		    mail_try_template(dir, locale, language_len, name, out, out_size) == 0)
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

/*
 * Checks the display name of a From value: a quoted string without a quote
 * or a backslash inside, or unquoted words. Both may be ASCII or UTF-8 with
 * no character that mail_line_break_length finds.
 */
static int mail_check_display_name(const char *name, size_t len)
{
	bool quoted = len >= 2 && name[0] == '"' && name[len - 1] == '"';
	size_t i = quoted ? 1 : 0;
	size_t end = quoted ? len - 1 : len;

	while (i < end) {
		unsigned char c = (unsigned char)name[i];
		size_t char_len = mail_utf8_length(name + i, end - i);

		if (char_len == 0 || mail_line_break_length(name + i, end - i) > 0)
			return -1;
		if (char_len == 1 && quoted && (c == '"' || c == '\\'))
			return -1;
		if (char_len == 1 && !quoted && !mail_is_phrase_char(c))
			return -1;
		i += char_len;
	}
	return 0;
}

/* Splits and checks a From value ("addr" or "Name <addr>"). Returns 0, or -1. */
static int mail_parse_from(const char *from, struct mail_from *parsed)
{
	const char *open, *close, *address;
	size_t len, name_start = 0, name_end;

	memset(parsed, 0, sizeof(*parsed));
	if (from == NULL)
		return -1;
	open = strrchr(from, '<');
	if (open == NULL) {
		address = from;
		len = strlen(from);
	} else {
		close = strchr(open, '>');
		if (close == NULL || close[1] != '\0')
			return -1;
		address = open + 1;
		len = (size_t)(close - address);
		name_end = (size_t)(open - from);
		while (name_end > 0 && from[name_end - 1] == ' ')
			name_end--;
		while (name_start < name_end && from[name_start] == ' ')
			name_start++;
		if (mail_check_display_name(from + name_start, name_end - name_start) != 0)
			return -1;
		parsed->phrase = from + name_start;
		parsed->phrase_len = name_end - name_start;
		parsed->name = parsed->phrase;
		parsed->name_len = parsed->phrase_len;
		if (parsed->name_len >= 2 && parsed->name[0] == '"') {
			parsed->name++;
			parsed->name_len -= 2;
		}
	}
	if (len + 1 > sizeof(parsed->address))
		return -1;
	memcpy(parsed->address, address, len);
	parsed->address[len] = '\0';
	return mail_check_address(parsed->address);
}

int mail_from_address(const char *from, char *out, size_t out_size)
{
	struct mail_from parsed;

	if (mail_parse_from(from, &parsed) != 0 || strlen(parsed.address) + 1 > out_size)
		return -1;
	strcpy(out, parsed.address);
	return 0;
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

/*
 * Appends ASCII text at *column, folded before a space wherever the line
 * would pass MAIL_LINE_LIMIT (RFC 5322 §2.2.3: unfolding removes only the
 * CRLF, so the text reads back unchanged). With out NULL it only checks.
 * Returns false, having appended nothing, when a word is too long to fit or
 * a fold would leave a line of white space only.
 */
static bool mail_append_folded(struct mail_buffer *out, size_t *column, const char *text,
	size_t len)
{
	size_t start = 0, at = *column;

	while (len - start > MAIL_LINE_LIMIT - at) {
		size_t fold = 0, i;

		for (i = start + (MAIL_LINE_LIMIT - at); i > start; i--) {
			if (text[i] == ' ' && text[i - 1] != ' ') {
				fold = i;
				break;
			}
		}
		if (fold == 0)
			return false;
		if (out != NULL) {
			mail_buffer_append(out, text + start, fold - start);
			mail_buffer_append(out, "\r\n", 2);
		}
		start = fold;
		at = 0;
	}
	if (start > 0 && strspn(text + start, " ") >= len - start)
		return false;
	if (out != NULL) {
		mail_buffer_append(out, text + start, len - start);
		*column = at + len - start;
	}
	return true;
}

/*
 * Appends text as RFC 2047 "B" encoded words, the first at *column and each
 * further one on a continuation line of its own, each as long as its line
 * allows. Every word ends on a character boundary (RFC 2047 §5) so that a
 * reader can decode each word alone. A byte that is not part of a
 * well-formed UTF-8 character counts as one character.
 */
static void mail_append_encoded_words(struct mail_buffer *out, size_t *column,
	const char *text, size_t len)
{
	size_t start = 0;

	/* The room for one word of a 4-byte character: 8 base64 digits. */
	if (*column + MAIL_WORD_OVERHEAD + 8 > MAIL_LINE_LIMIT) {
		mail_buffer_append(out, "\r\n ", 3);
		*column = 1;
	}
	while (start < len) {
		size_t digits = (MAIL_LINE_LIMIT - *column - MAIL_WORD_OVERHEAD) / 4 * 4;
		size_t end = start;
		unsigned char encoded[MAIL_LINE_LIMIT + 1];
		int encoded_len;

		while (end < len) {
			size_t char_len = mail_utf8_length(text + end, len - end);

			if (char_len == 0)
				char_len = 1;
			if ((end + char_len - start + 2) / 3 * 4 > digits)
				break;
			end += char_len;
		}
		encoded_len = EVP_EncodeBlock(encoded, (const unsigned char *)text + start,
			(int)(end - start));
		mail_buffer_puts(out, "=?UTF-8?B?");
		mail_buffer_append(out, (const char *)encoded, (size_t)encoded_len);
		mail_buffer_puts(out, "?=");
		*column += MAIL_WORD_OVERHEAD + (size_t)encoded_len;
		crypto_wipe(encoded, sizeof(encoded));

		start = end;
		if (start < len) {
			mail_buffer_append(out, "\r\n ", 3);
			*column = 1;
		}
	}
}

static bool mail_is_printable_ascii(const char *text, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if ((unsigned char)text[i] < 0x20 || (unsigned char)text[i] > 0x7e)
			return false;
	return true;
}

/*
 * Returns true for text that may stand in a header as it is: printable ASCII
 * without "=?", which a reader could take for the start of an encoded word.
 */
static bool mail_is_plain_header_text(const char *text, size_t len)
{
	size_t i;

	if (!mail_is_printable_ascii(text, len))
		return false;
	for (i = 0; i + 1 < len; i++)
		if (text[i] == '=' && text[i + 1] == '?')
			return false;
	return true;
}

/* Appends the Subject header: plain ASCII folded at spaces, else RFC 2047 encoded words. */
static void mail_append_subject(struct mail_buffer *out, const char *subject, size_t len)
{
	size_t column = strlen("Subject: ");
	size_t check_column = column;

	mail_buffer_puts(out, "Subject: ");
	if (mail_is_plain_header_text(subject, len) &&
	    mail_append_folded(NULL, &check_column, subject, len))
		mail_append_folded(out, &column, subject, len);
	else
		mail_append_encoded_words(out, &column, subject, len);
	mail_buffer_puts(out, "\r\n");
}

/*
 * Appends the From header. A display name goes as it was written when it is
 * ASCII and folds into lines of MAIL_LINE_LIMIT, else its text (without
 * quotes) goes as encoded words. The address follows in angle brackets, on a
 * continuation line when the current one has no room for it.
 */
static void mail_append_from(struct mail_buffer *out, const struct mail_from *from)
{
	size_t column = strlen("From: ");
	size_t check_column = column;
	size_t address_len = strlen(from->address);

	if (from->phrase_len == 0) {
		mail_buffer_puts(out, column + address_len > MAIL_LINE_LIMIT ? "From:\r\n " :
			"From: ");
		mail_buffer_puts(out, from->address);
		mail_buffer_puts(out, "\r\n");
		return;
	}

	/* "=?" may stay: a configured name that is already encoded words is sent as it is. */
	mail_buffer_puts(out, "From: ");
	if (mail_is_printable_ascii(from->phrase, from->phrase_len) &&
	    mail_append_folded(NULL, &check_column, from->phrase, from->phrase_len))
		mail_append_folded(out, &column, from->phrase, from->phrase_len);
	else
		mail_append_encoded_words(out, &column, from->name, from->name_len);
	mail_buffer_puts(out, column + 2 + address_len + 1 > MAIL_LINE_LIMIT ? "\r\n <" :
		" <");
	mail_buffer_puts(out, from->address);
	mail_buffer_puts(out, ">\r\n");
}

/*
 * Appends "name: value" for a value that cannot be folded inside, an address
 * or a Message-ID, putting the value on a continuation line when the header
 * line would pass MAIL_LINE_LIMIT (RFC 5322 allows white space before both).
 */
static void mail_append_unfoldable(struct mail_buffer *out, const char *name,
	const char *value)
{
	mail_buffer_puts(out, name);
	if (strlen(name) + 2 + strlen(value) > MAIL_LINE_LIMIT)
		mail_buffer_puts(out, ":\r\n ");
	else
		mail_buffer_puts(out, ": ");
	mail_buffer_puts(out, value);
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

/* Returns true when a CRLF body may go as 7bit: ASCII, no NUL, lines within MAIL_LINE_LIMIT. */
static bool mail_is_7bit(const char *body, size_t len)
{
	size_t i, column = 0;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)body[i];

		if (c >= 0x80 || c == '\0')
			return false;
		if (c == '\r')
			continue;
		column = c == '\n' ? 0 : column + 1;
		if (column > MAIL_LINE_LIMIT)
			return false;
	}
	return true;
}

/*
 * Appends one line (without its CRLF) as RFC 2045 §6.7 quoted-printable,
 * with soft breaks, keeping the bytes of a UTF-8 character on one line. A
 * '.' opening an output line is encoded too, so no line of the data can be
 * mistaken for the SMTP end of data.
 */
static void mail_append_qp_line(struct mail_buffer *out, const char *line, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i = 0, j, column = 0;

	while (i < len) {
		unsigned char c = (unsigned char)line[i];
		size_t char_len = mail_utf8_length(line + i, len - i);
		bool literal = false;

		if (char_len <= 1) {
			char_len = 1;
			literal = (c >= 33 && c <= 126 && c != '=') ||
				((c == ' ' || c == '\t') && i + 1 < len);
		}
		/* A soft break takes the last column, so text fills MAIL_LINE_LIMIT - 1. */
		if (column + (literal ? 1 : 3 * char_len) > MAIL_LINE_LIMIT - 1) {
			mail_buffer_append(out, "=\r\n", 3);
			column = 0;
		}
		if (column == 0 && c == '.')
			literal = false;
		if (literal) {
			mail_buffer_append(out, line + i, 1);
			column++;
		} else {
			for (j = 0; j < char_len; j++) {
				unsigned char byte = (unsigned char)line[i + j];
				char escaped[3] = { '=', hex[byte >> 4], hex[byte & 0x0f] };

				mail_buffer_append(out, escaped, 3);
			}
			column += 3 * char_len;
		}
		i += char_len;
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

/* Checks a value that reaches a header: no character that mail_line_break_length finds. */
static bool mail_is_header_safe(const char *value, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (mail_line_break_length(value + i, len - i) > 0)
			return false;
	return true;
}

static bool mail_is_ascii(const char *text)
{
	for (; *text != '\0'; text++)
		if ((unsigned char)*text >= 0x80)
			return false;
	return true;
}

/* Checks a host name: dot-separated labels of 1 to 63 letters, digits and inner hyphens. */
static bool mail_is_domain(const char *domain)
{
	size_t label = 0, i;

	if (domain == NULL || domain[0] == '\0' || strlen(domain) > 253)
		return false;
	for (i = 0; domain[i] != '\0'; i++) {
		char c = domain[i];

		if (c == '.') {
			if (label == 0 || domain[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || (c == '-' && label > 0)))
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0 && domain[i - 1] != '-';
}

/* Checks from and the recipient, then appends Date, Message-ID, From and To. */
static enum mail_result mail_append_envelope_headers(struct mail_buffer *out,
	const struct mail_fields *fields, char *err, size_t err_size)
{
	struct mail_from from;
	char date[64];
	unsigned char random[16];
	char id[2 * sizeof(random) + 1];
	char message_id[sizeof(id) + 256];
	const char *domain;

	if (mail_parse_from(fields->from, &from) != 0) {
		snprintf(err, err_size,
			"[smtp] from is not an address or \"Display Name <address>\"");
		return MAIL_INVALID_INPUT;
	}
	if (mail_check_address(fields->recipient) != 0) {
		snprintf(err, err_size, "recipient is not one address");
		return MAIL_INVALID_INPUT;
	}
	/* NOTE: an address in UTF-8 needs SMTPUTF8, which libesmtp 1.1.0 does not declare. */
	if (!mail_is_ascii(fields->recipient) || !mail_is_ascii(from.address)) {
		snprintf(err, err_size, "address is not ASCII: internationalized addresses"
			" (SMTPUTF8) are not supported");
		return MAIL_INVALID_INPUT;
	}
	domain = fields->message_id_domain;
	if (domain == NULL || domain[0] == '\0')
		domain = strchr(from.address, '@') + 1;
	if (!mail_is_domain(domain)) {
		snprintf(err, err_size, "Message-ID domain \"%.64s\" is not a host name:"
			" set [mailer] message_id_domain", domain);
		return MAIL_INVALID_INPUT;
	}
	if (crypto_random_bytes(random, sizeof(random)) != 0) {
		snprintf(err, err_size, "cannot draw random bytes for the Message-ID");
		return MAIL_NO_MEMORY;
	}
	crypto_hex_encode(random, sizeof(random), id);
	snprintf(message_id, sizeof(message_id), "<%s@%s>", id, domain);
	mail_format_date(fields->now, date, sizeof(date));

	mail_buffer_puts(out, "Date: ");
	mail_buffer_puts(out, date);
	mail_buffer_puts(out, "\r\n");
	mail_append_unfoldable(out, "Message-ID", message_id);
	mail_append_from(out, &from);
	mail_append_unfoldable(out, "To", fields->recipient);
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
		snprintf(err, err_size, "subject contains a control character or line separator"
			" after substitution");
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
	if (result == MAIL_NO_MEMORY && err_size > 0 && err[0] == '\0')
		snprintf(err, err_size, "out of memory rendering the message");
	mail_buffer_wipe(&params);
	mail_buffer_wipe(&subject);
	mail_buffer_wipe(&body);
	mail_buffer_wipe(&lines);
	mail_buffer_wipe(&out);
	return result;
}
