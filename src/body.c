/* Strict request body checks: media type, JSON syntax and confirmation codes. */
#include "body.h"

#include <json-c/json.h>
#include <limits.h>
#include <string.h>
#include <strings.h>

/*
 * json-c 0.16 in JSON_TOKENER_STRICT mode still accepts single-quoted
 * strings, NaN, "1." and raw control characters in strings. It accepts
 * "\u0000", which truncates a member name, and turns unpaired surrogate
 * escapes into U+FFFD. JSON_TOKENER_VALIDATE_UTF8 lets overlong and
 * surrogate UTF-8 through, and of two members with the same name the last
 * is kept. So the scanner below first checks the body against the grammar
 * of RFC 8259 and against UTF-8 as RFC 3629 defines it, and json-c only
 * builds the tree.
 */

struct body_scanner {
	const unsigned char *pos;
	const unsigned char *end;
	size_t member_count;    /* members in all objects, duplicates included */
	const char *reason;     /* the first problem found, for the log */
};

static int body_scan_value(struct body_scanner *scan, int level);

static bool body_is_json_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool body_is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int body_fail(struct body_scanner *scan, const char *reason)
{
	if (scan->reason == NULL)
		scan->reason = reason;
	return -1;
}

static void body_skip_space(struct body_scanner *scan)
{
	while (scan->pos < scan->end && body_is_json_space(*scan->pos))
		scan->pos++;
}

/* Returns the next byte, or -1 at the end of the body. */
static int body_peek(const struct body_scanner *scan)
{
	return scan->pos < scan->end ? *scan->pos : -1;
}

/*
 * Consumes one multi-byte UTF-8 sequence, rejecting what RFC 3629 forbids:
 * overlong forms, encoded surrogates (U+D800 to U+DFFF), code points above
 * U+10FFFF, the bytes 0xC0, 0xC1 and 0xF5 to 0xFF, and truncated sequences.
 */
static int body_scan_utf8(struct body_scanner *scan)
{
	unsigned char lead = *scan->pos;
	unsigned char second_min = 0x80;
	unsigned char second_max = 0xBF;
	size_t length;

	if (lead >= 0xC2 && lead <= 0xDF) {
		length = 2;
	} else if (lead >= 0xE0 && lead <= 0xEF) {
		length = 3;
		if (lead == 0xE0)
			second_min = 0xA0;
		else if (lead == 0xED)
			second_max = 0x9F;
	} else if (lead >= 0xF0 && lead <= 0xF4) {
		length = 4;
		if (lead == 0xF0)
			second_min = 0x90;
		else if (lead == 0xF4)
			second_max = 0x8F;
	} else {
		return body_fail(scan, "invalid UTF-8 in body");
	}

	if ((size_t)(scan->end - scan->pos) < length)
		return body_fail(scan, "invalid UTF-8 in body");
	if (scan->pos[1] < second_min || scan->pos[1] > second_max)
		return body_fail(scan, "invalid UTF-8 in body");
	for (size_t i = 2; i < length; i++) {
		if (scan->pos[i] < 0x80 || scan->pos[i] > 0xBF)
			return body_fail(scan, "invalid UTF-8 in body");
	}
	scan->pos += length;
	return 0;
}

/* Reads the four hex digits after "\u" into *unit. */
static int body_scan_hex4(struct body_scanner *scan, unsigned *unit)
{
	*unit = 0;
	if (scan->end - scan->pos < 4)
		return body_fail(scan, "invalid escape in a JSON string");
	for (int i = 0; i < 4; i++) {
		unsigned char c = *scan->pos++;
		unsigned digit;

		if (body_is_digit(c))
			digit = c - '0';
		else if (c >= 'a' && c <= 'f')
			digit = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			digit = c - 'A' + 10;
		else
			return body_fail(scan, "invalid escape in a JSON string");
		*unit = *unit * 16 + digit;
	}
	return 0;
}

/*
 * Consumes one escape after its backslash. "\u0000" is rejected because the
 * rest of the service handles strings as C strings, and an unpaired
 * surrogate escape because it is no Unicode character and has no UTF-8 form.
 */
static int body_scan_escape(struct body_scanner *scan)
{
	unsigned unit;
	unsigned low;
	int c = body_peek(scan);

	if (c == -1 || strchr("\"\\/bfnrtu", c) == NULL)
		return body_fail(scan, "invalid escape in a JSON string");
	scan->pos++;
	if (c != 'u')
		return 0;

	if (body_scan_hex4(scan, &unit) < 0)
		return -1;
	if (unit == 0)
		return body_fail(scan, "\\u0000 in a JSON string");
	if (unit >= 0xDC00 && unit <= 0xDFFF)
		return body_fail(scan, "unpaired surrogate escape in a JSON string");
	if (unit < 0xD800 || unit > 0xDBFF)
		return 0;

	/* A high surrogate must be followed at once by an escaped low one. */
	if (scan->end - scan->pos < 2 || scan->pos[0] != '\\' || scan->pos[1] != 'u')
		return body_fail(scan, "unpaired surrogate escape in a JSON string");
	scan->pos += 2;
	if (body_scan_hex4(scan, &low) < 0)
		return -1;
	if (low < 0xDC00 || low > 0xDFFF)
		return body_fail(scan, "unpaired surrogate escape in a JSON string");
	return 0;
}

/* Consumes a string from its opening quote to its closing one. */
static int body_scan_string(struct body_scanner *scan)
{
	scan->pos++;
	for (;;) {
		int c = body_peek(scan);

		if (c == -1)
			return body_fail(scan, "unterminated JSON string");
		if (c == '"') {
			scan->pos++;
			return 0;
		}
		if (c == '\\') {
			scan->pos++;
			if (body_scan_escape(scan) < 0)
				return -1;
		} else if (c < 0x20) {
			return body_fail(scan, "control character in a JSON string");
		} else if (c >= 0x80) {
			if (body_scan_utf8(scan) < 0)
				return -1;
		} else {
			scan->pos++;
		}
	}
}

static void body_skip_digits(struct body_scanner *scan)
{
	while (scan->pos < scan->end && body_is_digit(*scan->pos))
		scan->pos++;
}

/* Consumes a number: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)? */
static int body_scan_number(struct body_scanner *scan)
{
	if (body_peek(scan) == '-')
		scan->pos++;
	if (body_peek(scan) == '0') {
		scan->pos++;
	} else if (body_peek(scan) >= '1' && body_peek(scan) <= '9') {
		body_skip_digits(scan);
	} else {
		return body_fail(scan, "invalid JSON number");
	}

	if (body_peek(scan) == '.') {
		scan->pos++;
		if (body_peek(scan) == -1 || !body_is_digit((unsigned char)body_peek(scan)))
			return body_fail(scan, "invalid JSON number");
		body_skip_digits(scan);
	}

	if (body_peek(scan) == 'e' || body_peek(scan) == 'E') {
		scan->pos++;
		if (body_peek(scan) == '+' || body_peek(scan) == '-')
			scan->pos++;
		if (body_peek(scan) == -1 || !body_is_digit((unsigned char)body_peek(scan)))
			return body_fail(scan, "invalid JSON number");
		body_skip_digits(scan);
	}
	return 0;
}

static int body_scan_literal(struct body_scanner *scan, const char *literal)
{
	size_t length = strlen(literal);

	if ((size_t)(scan->end - scan->pos) < length || memcmp(scan->pos, literal, length) != 0)
		return body_fail(scan, "JSON syntax error");
	scan->pos += length;
	return 0;
}

/* Consumes an object whose '{' is at level; the top object is level 1. */
static int body_scan_object(struct body_scanner *scan, int level)
{
	if (level > BODY_MAX_DEPTH)
		return body_fail(scan, "JSON nesting deeper than 16 levels");
	scan->pos++;
	body_skip_space(scan);
	if (body_peek(scan) == '}') {
		scan->pos++;
		return 0;
	}

	for (;;) {
		if (body_peek(scan) != '"')
			return body_fail(scan, "JSON syntax error");
		if (body_scan_string(scan) < 0)
			return -1;
		scan->member_count++;
		body_skip_space(scan);
		if (body_peek(scan) != ':')
			return body_fail(scan, "JSON syntax error");
		scan->pos++;
		body_skip_space(scan);
		if (body_scan_value(scan, level) < 0)
			return -1;
		body_skip_space(scan);
		if (body_peek(scan) == '}') {
			scan->pos++;
			return 0;
		}
		if (body_peek(scan) != ',')
			return body_fail(scan, "JSON syntax error");
		scan->pos++;
		body_skip_space(scan);
	}
}

static int body_scan_array(struct body_scanner *scan, int level)
{
	if (level > BODY_MAX_DEPTH)
		return body_fail(scan, "JSON nesting deeper than 16 levels");
	scan->pos++;
	body_skip_space(scan);
	if (body_peek(scan) == ']') {
		scan->pos++;
		return 0;
	}

	for (;;) {
		if (body_scan_value(scan, level) < 0)
			return -1;
		body_skip_space(scan);
		if (body_peek(scan) == ']') {
			scan->pos++;
			return 0;
		}
		if (body_peek(scan) != ',')
			return body_fail(scan, "JSON syntax error");
		scan->pos++;
		body_skip_space(scan);
	}
}

/* Consumes one value inside a container at level. */
static int body_scan_value(struct body_scanner *scan, int level)
{
	int c = body_peek(scan);

	switch (c) {
	case '{':
		return body_scan_object(scan, level + 1);
	case '[':
		return body_scan_array(scan, level + 1);
	case '"':
		return body_scan_string(scan);
	case 't':
		return body_scan_literal(scan, "true");
	case 'f':
		return body_scan_literal(scan, "false");
	case 'n':
		return body_scan_literal(scan, "null");
	default:
		if (c == '-' || (c != -1 && body_is_digit((unsigned char)c)))
			return body_scan_number(scan);
		return body_fail(scan, "JSON syntax error");
	}
}

/* Checks that the body is one object and nothing but white space after it. */
static int body_scan_document(struct body_scanner *scan)
{
	body_skip_space(scan);
	if (body_peek(scan) != '{')
		return body_fail(scan, "body is not a JSON object");
	if (body_scan_object(scan, 1) < 0)
		return -1;
	body_skip_space(scan);
	if (scan->pos != scan->end)
		return body_fail(scan, "data after the JSON object");
	return 0;
}

static bool body_is_all_space(const char *text, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (!body_is_json_space((unsigned char)text[i]))
			return false;
	}
	return true;
}

/* Counts the members of every object in the tree, as the scanner does. */
static size_t body_count_members(struct json_object *value)
{
	size_t count = 0;

	if (json_object_is_type(value, json_type_object)) {
		json_object_object_foreach(value, name, member) {
			(void)name;
			count += 1 + body_count_members(member);
		}
	} else if (json_object_is_type(value, json_type_array)) {
		size_t length = json_object_array_length(value);

		for (size_t i = 0; i < length; i++)
			count += body_count_members(json_object_array_get_idx(value, i));
	}
	return count;
}

/*
 * The tokener is kept because making one per parse cost an allocation of
 * its parse state on every request. After a failed parse it is freed, since
 * json_tokener_reset in json-c 0.16 keeps a high surrogate that an escape
 * cut short left behind, and the next parse would join it to its own text.
 */
struct json_object *body_parse_kept(struct json_tokener **kept, int depth, const char *data,
	size_t len, bool *out_of_memory, size_t *parse_end)
{
	struct json_object *value;

	*out_of_memory = false;
	*parse_end = 0;
	if (*kept != NULL) {
		json_tokener_reset(*kept);
	} else {
		*kept = json_tokener_new_ex(depth);
		if (*kept == NULL) {
			*out_of_memory = true;
			return NULL;
		}
		json_tokener_set_flags(*kept, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	}
	value = json_tokener_parse_ex(*kept, data, (int)len);
	*parse_end = json_tokener_get_parse_end(*kept);
	if (json_tokener_get_error(*kept) == json_tokener_success)
		return value;

	json_object_put(value);
	json_tokener_free(*kept);
	*kept = NULL;
	return NULL;
}

/*
 * Rejects the body rather than guess which of two members with the same name
 * the client meant: json-c keeps only the last one, so fewer members in the
 * tree than the scanner counted means a name was repeated.
 */
struct json_object *body_parse_object(const char *data, size_t len, const char **reason)
{
	static _Thread_local struct json_tokener *tokener;
	struct body_scanner scan = { 0 };
	struct json_object *object = NULL;
	bool out_of_memory;
	size_t parse_end;

	*reason = NULL;
	if (data == NULL || len == 0) {
		*reason = "body is empty";
		goto out;
	}
	if (memchr(data, '\0', len) != NULL) {
		*reason = "NUL byte in body";
		goto out;
	}
	if (len > INT_MAX) {
		*reason = "body too large to parse";
		goto out;
	}

	scan.pos = (const unsigned char *)data;
	scan.end = scan.pos + len;
	if (body_scan_document(&scan) < 0) {
		*reason = scan.reason;
		goto out;
	}

	/* json-c 0.16 rejects 16 nested objects at depth 16 (tried on Debian 12),
	 * so it gets one level more than the scanner allows. */
	object = body_parse_kept(&tokener, BODY_MAX_DEPTH + 1, data, len, &out_of_memory,
		&parse_end);
	if (out_of_memory) {
		*reason = "out of memory parsing body";
		goto out;
	}
	if (object == NULL || !json_object_is_type(object, json_type_object) ||
		!body_is_all_space(data + parse_end, len - parse_end)) {
		*reason = "JSON syntax error";
		json_object_put(object);
		object = NULL;
		goto out;
	}

	if (body_count_members(object) != scan.member_count) {
		*reason = "duplicate member name in a JSON object";
		json_object_put(object);
		object = NULL;
	}
out:
	return object;
}

/* Media types (RFC 9110, section 8.3.1). */

struct body_cursor {
	const char *pos;
};

static bool body_is_ows(char c)
{
	return c == ' ' || c == '\t';
}

static void body_skip_ows(struct body_cursor *cursor)
{
	while (body_is_ows(*cursor->pos))
		cursor->pos++;
}

/* Token characters of RFC 9110, section 5.6.2. */
static bool body_is_token_char(char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || body_is_digit((unsigned char)c))
		return true;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Consumes a token and returns its length, 0 when there is none. */
static size_t body_read_token(struct body_cursor *cursor)
{
	const char *start = cursor->pos;

	while (body_is_token_char(*cursor->pos))
		cursor->pos++;
	return (size_t)(cursor->pos - start);
}

/*
 * Consumes a parameter value, a token or a quoted string, and stores it
 * unquoted in value (NUL-terminated, cut at size - 1 bytes, which is enough
 * to compare with "utf-8"). Returns -1 when the value is malformed.
 */
static int body_read_parameter_value(struct body_cursor *cursor, char *value, size_t size)
{
	size_t length = 0;

	if (*cursor->pos != '"') {
		const char *start = cursor->pos;
		size_t token_length = body_read_token(cursor);

		if (token_length == 0)
			return -1;
		length = token_length < size - 1 ? token_length : size - 1;
		memcpy(value, start, length);
		value[length] = '\0';
		return 0;
	}

	cursor->pos++;
	while (*cursor->pos != '"') {
		char c = *cursor->pos;

		if (c == '\0')
			return -1;
		if (c == '\\') {
			cursor->pos++;
			c = *cursor->pos;
			if (c == '\0')
				return -1;
		}
		if (length < size - 1)
			value[length++] = c;
		cursor->pos++;
	}
	cursor->pos++;
	value[length] = '\0';
	return 0;
}

bool body_media_type_is_json(const char *content_type)
{
	static const char json_type[] = "application/json";
	struct body_cursor cursor;
	char value[8];

	if (content_type == NULL)
		return false;
	cursor.pos = content_type;
	body_skip_ows(&cursor);
	if (strncasecmp(cursor.pos, json_type, sizeof(json_type) - 1) != 0)
		return false;
	cursor.pos += sizeof(json_type) - 1;

	/* parameters = *( OWS ";" OWS [ parameter ] ) */
	for (;;) {
		const char *name;
		size_t name_length;

		body_skip_ows(&cursor);
		if (*cursor.pos == '\0')
			return true;
		if (*cursor.pos != ';')
			return false;
		cursor.pos++;
		body_skip_ows(&cursor);
		if (*cursor.pos == ';' || *cursor.pos == '\0')
			continue;

		name = cursor.pos;
		name_length = body_read_token(&cursor);
		if (name_length == 0 || *cursor.pos != '=')
			return false;
		cursor.pos++;
		if (body_read_parameter_value(&cursor, value, sizeof(value)) < 0)
			return false;
		if (name_length == 7 && strncasecmp(name, "charset", 7) == 0 &&
			strcasecmp(value, "utf-8") != 0)
			return false;
	}
}

/* Confirmation codes. */

static bool body_is_code_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * Copies the digits of a code member into code (at least digits + 1 bytes)
 * once surrounding white space is removed. Returns false unless the member
 * is a JSON string of exactly digits ASCII digits.
 */
static bool body_read_code(struct json_object *member, size_t digits, char *code)
{
	const char *text;
	size_t length;

	if (!json_object_is_type(member, json_type_string))
		return false;
	text = json_object_get_string(member);
	length = (size_t)json_object_get_string_len(member);
	while (length > 0 && body_is_code_space(text[0])) {
		text++;
		length--;
	}
	while (length > 0 && body_is_code_space(text[length - 1]))
		length--;

	if (length != digits)
		return false;
	for (size_t i = 0; i < length; i++) {
		if (!body_is_digit((unsigned char)text[i]))
			return false;
	}
	memcpy(code, text, length);
	code[length] = '\0';
	return true;
}

/*
 * Finds the member for one factor: the named field when present, else the
 * lone "code" when allowed. *field names the member used, or the named
 * field when neither is present (returns false).
 */
static bool body_find_code(struct json_object *body, const char *name, bool lone_code,
	struct json_object **member, const char **field)
{
	*field = name;
	if (body != NULL && json_object_object_get_ex(body, name, member))
		return true;
	if (lone_code && json_object_object_get_ex(body, "code", member)) {
		*field = "code";
		return true;
	}
	return false;
}

/*
 * The lone "code" counts only when the body has neither "emailCode" nor
 * "otpCode". Beside a named field it is ignored, even beside a field for a
 * factor the operation lacks, so no factor ever has two candidate members.
 */
static enum body_code_status body_check_codes(struct json_object *body, bool email_factor,
	bool otp_factor, size_t email_digits, struct body_codes *codes, const char **field)
{
	struct json_object *member = NULL;
	bool lone_code = false;

	if (body != NULL && !json_object_is_type(body, json_type_object))
		body = NULL;
	if (body != NULL)
		lone_code = !json_object_object_get_ex(body, "emailCode", NULL) &&
			!json_object_object_get_ex(body, "otpCode", NULL);

	if (email_factor) {
		if (!body_find_code(body, "emailCode", lone_code, &member, field))
			return BODY_CODES_MISSING;
		if (email_digits == 0 || email_digits >= sizeof(codes->email_code) ||
			!body_read_code(member, email_digits, codes->email_code))
			return BODY_CODES_INVALID;
		/* The lone code is taken by the e-mail factor. */
		lone_code = false;
	}

	if (otp_factor) {
		if (!body_find_code(body, "otpCode", lone_code, &member, field))
			return BODY_CODES_MISSING;
		if (!body_read_code(member, 6, codes->otp_code))
			return BODY_CODES_INVALID;
	}

	*field = NULL;
	return BODY_CODES_OK;
}

enum body_code_status body_confirm_codes(struct json_object *body, bool email_factor,
	bool otp_factor, size_t email_digits, struct body_codes *codes, const char **field)
{
	enum body_code_status status;

	memset(codes, 0, sizeof(*codes));
	*field = NULL;
	status = body_check_codes(body, email_factor, otp_factor, email_digits, codes, field);
	if (status != BODY_CODES_OK)
		memset(codes, 0, sizeof(*codes));
	return status;
}
