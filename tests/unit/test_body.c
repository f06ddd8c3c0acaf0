/* Unit tests of the strict body checks: media type, JSON parsing, confirm codes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "body.h"

/* A body given with its length, so that it may contain NUL bytes. */
#define BYTES(text) text, sizeof(text) - 1

struct media_case {
	const char *content_type;
	bool expected;
};

static const struct media_case media_cases[] = {
	{ "application/json", true },
	{ "APPLICATION/JSON", true },
	{ "Application/Json", true },
	{ "application/json; charset=utf-8", true },
	{ "application/json;charset=UTF-8", true },
	{ "application/json ;\tcharset=Utf-8 ", true },
	{ "application/json; charset=\"utf-8\"", true },
	{ "application/json; charset=\"UTF-8\"", true },
	{ "application/json; CHARSET=utf-8", true },
	{ "application/json; boundary=x; charset=utf-8", true },
	{ "application/json; version=2", true },
	{ "application/json; note=\"a; b\"", true },
	{ "application/json;", true },
	{ "application/json; charset=latin1", false },
	{ "application/json; charset=utf8", false },
	{ "application/json; charset=\"utf-8", false },
	{ "application/json; charset=", false },
	{ "application/json; charset=utf-8; charset=latin1", false },
	{ "application/json; =utf-8", false },
	{ "application/json; charset", false },
	{ "application/jsonx", false },
	{ "application/json-patch+json", false },
	{ "application/json x", false },
	{ "text/json", false },
	{ "application/x-www-form-urlencoded", false },
	{ "application", false },
	{ "", false },
	{ NULL, false },
};

static void media_type_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(media_cases) / sizeof(media_cases[0]); i++) {
		const struct media_case *row = &media_cases[i];

		if (body_media_type_is_json(row->content_type) != row->expected)
			fail_msg("content type \"%s\": expected %s", row->content_type ?
				row->content_type : "(null)", row->expected ? "json" : "not json");
	}
}

static void parse_valid_object(void **state)
{
	const char *reason = "unset";
	const char text[] = " {\"emailCode\": \"123456\", \"n\": [1, -2.5e3, true, false, null],"
		" \"o\": {\"k\": \"\\u00e9\\ud83d\\ude00\\n\"}} \r\n\t";
	struct json_object *body = body_parse_object(text, sizeof(text) - 1, &reason);
	struct json_object *member = NULL;

	(void)state;
	assert_non_null(body);
	assert_null(reason);
	assert_true(json_object_object_get_ex(body, "emailCode", &member));
	assert_string_equal(json_object_get_string(member), "123456");
	assert_true(json_object_object_get_ex(body, "n", &member));
	assert_int_equal(json_object_array_length(member), 5);
	assert_true(json_object_object_get_ex(body, "o", &member));
	assert_true(json_object_object_get_ex(member, "k", &member));
	assert_string_equal(json_object_get_string(member), "\xc3\xa9\xf0\x9f\x98\x80\n");
	json_object_put(body);
}

static void parse_valid_multibyte_utf8(void **state)
{
	const char *reason = "unset";
	/* Two, three and four-byte sequences at the edges of their ranges. */
	const char value[] = "\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf"
		"\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\xe2\x82\xac";
	const char text[] = "{\"\xc3\xa9t\xc3\xa9\": \"\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf"
		"\xee\x80\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\xe2\x82\xac\"}";
	struct json_object *body = body_parse_object(text, sizeof(text) - 1, &reason);
	struct json_object *member = NULL;

	(void)state;
	assert_non_null(body);
	assert_null(reason);
	assert_true(json_object_object_get_ex(body, "\xc3\xa9t\xc3\xa9", &member));
	assert_int_equal(json_object_get_string_len(member), sizeof(value) - 1);
	assert_memory_equal(json_object_get_string(member), value, sizeof(value) - 1);
	json_object_put(body);
}

/* Writes levels nested objects, {"a":{"a":...{"a":1}...}}, into text. */
static void nested_objects(char *text, size_t size, int levels)
{
	size_t used = 0;

	for (int i = 0; i < levels; i++)
		used += (size_t)snprintf(text + used, size - used, "{\"a\":");
	used += (size_t)snprintf(text + used, size - used, "1");
	for (int i = 0; i < levels; i++)
		used += (size_t)snprintf(text + used, size - used, "}");
}

static void parse_nesting_limit(void **state)
{
	char text[256];
	const char *reason = "unset";
	struct json_object *body = NULL;

	(void)state;
	nested_objects(text, sizeof(text), BODY_MAX_DEPTH);
	body = body_parse_object(text, strlen(text), &reason);
	assert_non_null(body);
	assert_null(reason);
	json_object_put(body);

	nested_objects(text, sizeof(text), BODY_MAX_DEPTH + 1);
	body = body_parse_object(text, strlen(text), &reason);
	assert_null(body);
	assert_string_equal(reason, "JSON nesting deeper than 16 levels");
}

static void parse_nesting_arrays_count(void **state)
{
	const char *reason = "unset";
	/* The top object and 15 arrays make 16 levels, and one more array makes 17. */
	const char ok[] = "{\"a\":[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]}";
	const char deep[] = "{\"a\":[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]}";
	struct json_object *body = body_parse_object(ok, sizeof(ok) - 1, &reason);

	(void)state;
	assert_non_null(body);
	json_object_put(body);
	body = body_parse_object(deep, sizeof(deep) - 1, &reason);
	assert_null(body);
	assert_string_equal(reason, "JSON nesting deeper than 16 levels");
}

struct reject_case {
	const char *name;
	const char *data;
	size_t len;
	const char *reason;
};

static const struct reject_case reject_cases[] = {
	{ "empty", BYTES(""), "body is empty" },
	{ "white space only", BYTES(" \n"), "body is not a JSON object" },
	{ "trailing garbage", BYTES("{\"a\":1}x"), "data after the JSON object" },
	{ "trailing comma", BYTES("{\"a\":1},"), "data after the JSON object" },
	{ "two objects", BYTES("{}{}"), "data after the JSON object" },
	{ "two objects spaced", BYTES("{} {}"), "data after the JSON object" },
	{ "top-level array", BYTES("[{}]"), "body is not a JSON object" },
	{ "top-level string", BYTES("\"a\""), "body is not a JSON object" },
	{ "top-level number", BYTES("12"), "body is not a JSON object" },
	{ "top-level null", BYTES("null"), "body is not a JSON object" },
	{ "NUL inside a string", BYTES("{\"a\":\"x\0y\"}"), "NUL byte in body" },
	{ "NUL after the object", BYTES("{}\0"), "NUL byte in body" },
	{ "NUL before the object", BYTES("\0{}"), "NUL byte in body" },
	{ "escaped NUL in value", BYTES("{\"a\":\"x\\u0000y\"}"), "\\u0000 in a JSON string" },
	{ "escaped NUL in name", BYTES("{\"a\\u0000b\":1}"), "\\u0000 in a JSON string" },
	{ "lone high surrogate", BYTES("{\"a\":\"\\ud800\"}"),
		"unpaired surrogate escape in a JSON string" },
	{ "lone low surrogate", BYTES("{\"a\":\"\\udc00\"}"),
		"unpaired surrogate escape in a JSON string" },
	{ "high then letter", BYTES("{\"a\":\"\\ud800x\"}"),
		"unpaired surrogate escape in a JSON string" },
	{ "high then high", BYTES("{\"a\":\"\\ud800\\ud800\"}"),
		"unpaired surrogate escape in a JSON string" },
	{ "overlong slash", BYTES("{\"a\":\"\xc0\xaf\"}"), "invalid UTF-8 in body" },
	{ "overlong C1", BYTES("{\"a\":\"\xc1\xbf\"}"), "invalid UTF-8 in body" },
	{ "overlong three bytes", BYTES("{\"a\":\"\xe0\x80\xaf\"}"), "invalid UTF-8 in body" },
	{ "overlong four bytes", BYTES("{\"a\":\"\xf0\x80\x80\xaf\"}"), "invalid UTF-8 in body" },
	{ "encoded high surrogate", BYTES("{\"a\":\"\xed\xa0\x80\"}"), "invalid UTF-8 in body" },
	{ "encoded low surrogate", BYTES("{\"a\":\"\xed\xbf\xbf\"}"), "invalid UTF-8 in body" },
	{ "above U+10FFFF", BYTES("{\"a\":\"\xf4\x90\x80\x80\"}"), "invalid UTF-8 in body" },
	{ "lead byte F5", BYTES("{\"a\":\"\xf5\x80\x80\x80\"}"), "invalid UTF-8 in body" },
	{ "byte FE", BYTES("{\"a\":\"\xfe\"}"), "invalid UTF-8 in body" },
	{ "byte FF", BYTES("{\"a\":\"\xff\"}"), "invalid UTF-8 in body" },
	{ "lone continuation", BYTES("{\"a\":\"\x80\"}"), "invalid UTF-8 in body" },
	{ "truncated two of three", BYTES("{\"a\":\"\xe2\x82\"}"), "invalid UTF-8 in body" },
	{ "truncated at the end", BYTES("{\"a\":\"\xe2\x82"), "invalid UTF-8 in body" },
	{ "UTF-8 in a name", BYTES("{\"\xc3\":1}"), "invalid UTF-8 in body" },
	{ "UTF-8 outside strings", BYTES("{\xc2\xa0}"), "JSON syntax error" },
	{ "byte order mark", BYTES("\xef\xbb\xbf{}"), "body is not a JSON object" },
	{ "duplicate member", BYTES("{\"a\":1,\"a\":2}"), "duplicate member name in a JSON object" },
	{ "duplicate escaped", BYTES("{\"a\":1,\"\\u0061\":2}"),
		"duplicate member name in a JSON object" },
	{ "duplicate nested", BYTES("{\"o\":[{\"b\":1,\"b\":1}]}"),
		"duplicate member name in a JSON object" },
	{ "raw tab in string", BYTES("{\"a\":\"x\ty\"}"), "control character in a JSON string" },
	{ "raw newline in string", BYTES("{\"a\":\"x\ny\"}"), "control character in a JSON string" },
	{ "single quotes", BYTES("{'a':1}"), "JSON syntax error" },
	{ "unquoted name", BYTES("{a:1}"), "JSON syntax error" },
	{ "comma inside", BYTES("{\"a\":1,}"), "JSON syntax error" },
	{ "comment", BYTES("{/* c */}"), "JSON syntax error" },
	{ "NaN", BYTES("{\"a\":NaN}"), "JSON syntax error" },
	{ "upper-case TRUE", BYTES("{\"a\":TRUE}"), "JSON syntax error" },
	{ "truncated literal", BYTES("{\"a\":tru}"), "JSON syntax error" },
	{ "leading zero", BYTES("{\"a\":01}"), "JSON syntax error" },
	{ "bare fraction point", BYTES("{\"a\":1.}"), "invalid JSON number" },
	{ "leading point", BYTES("{\"a\":.5}"), "JSON syntax error" },
	{ "plus sign", BYTES("{\"a\":+1}"), "JSON syntax error" },
	{ "lone minus", BYTES("{\"a\":-}"), "invalid JSON number" },
	{ "empty exponent", BYTES("{\"a\":1e}"), "invalid JSON number" },
	{ "hex number", BYTES("{\"a\":0x10}"), "JSON syntax error" },
	{ "bad escape", BYTES("{\"a\":\"\\x\"}"), "invalid escape in a JSON string" },
	{ "short unicode escape", BYTES("{\"a\":\"\\u12\"}"), "invalid escape in a JSON string" },
	{ "unterminated string", BYTES("{\"a\":\"x"), "unterminated JSON string" },
	{ "unterminated object", BYTES("{\"a\":1"), "JSON syntax error" },
	{ "form feed before", BYTES("\f{}"), "body is not a JSON object" },
	{ "vertical tab after", BYTES("{}\v"), "data after the JSON object" },
};

static void parse_reject_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(reject_cases) / sizeof(reject_cases[0]); i++) {
		const struct reject_case *row = &reject_cases[i];
		const char *reason = NULL;
		struct json_object *body = body_parse_object(row->data, row->len, &reason);

		if (body != NULL) {
			json_object_put(body);
			fail_msg("%s: accepted", row->name);
		}
		if (reason == NULL || strcmp(reason, row->reason) != 0)
			fail_msg("%s: reason \"%s\", expected \"%s\"", row->name,
				reason ? reason : "(null)", row->reason);
	}
}

static void parse_null_data(void **state)
{
	const char *reason = NULL;

	(void)state;
	assert_null(body_parse_object(NULL, 0, &reason));
	assert_string_equal(reason, "body is empty");
}

struct codes_case {
	bool email;
	bool otp;
	size_t digits;
	const char *body;         /* JSON text, or NULL for no body */
	enum body_code_status status;
	const char *field;        /* NULL when status is BODY_CODES_OK */
	const char *email_code;
	const char *otp_code;
};

#define OK BODY_CODES_OK
#define MISSING BODY_CODES_MISSING
#define INVALID BODY_CODES_INVALID

static const struct codes_case codes_cases[] = {
	/* Both named fields, each factor alone, and white space around codes. */
	{ true, true, 6, "{\"emailCode\":\"123456\",\"otpCode\":\"654321\"}", OK, NULL,
		"123456", "654321" },
	{ true, false, 6, "{\"emailCode\":\"123456\"}", OK, NULL, "123456", "" },
	{ false, true, 6, "{\"otpCode\":\"654321\"}", OK, NULL, "", "654321" },
	{ true, true, 6, "{\"emailCode\":\" \\t123456\\r\\n\",\"otpCode\":\"\\n654321 \"}", OK, NULL,
		"123456", "654321" },
	{ true, false, 8, "{\"emailCode\":\"12345678\"}", OK, NULL, "12345678", "" },
	{ true, true, 8, "{\"emailCode\":\"12345678\",\"otpCode\":\"654321\"}", OK, NULL,
		"12345678", "654321" },
	{ true, false, 4, "{\"emailCode\":\"0000\"}", OK, NULL, "0000", "" },

	/* Missing fields: the first required one is named. */
	{ true, true, 6, NULL, MISSING, "emailCode", "", "" },
	{ true, false, 6, NULL, MISSING, "emailCode", "", "" },
	{ false, true, 6, NULL, MISSING, "otpCode", "", "" },
	{ true, true, 6, "{}", MISSING, "emailCode", "", "" },
	{ false, true, 6, "{}", MISSING, "otpCode", "", "" },
	{ true, true, 6, "{\"emailCode\":\"123456\"}", MISSING, "otpCode", "", "" },
	{ true, true, 6, "{\"otpCode\":\"654321\"}", MISSING, "emailCode", "", "" },
	{ true, false, 6, "{\"otpCode\":\"654321\"}", MISSING, "emailCode", "", "" },
	{ false, true, 6, "{\"emailCode\":\"123456\"}", MISSING, "otpCode", "", "" },
	{ true, false, 6, "{\"emailcode\":\"123456\"}", MISSING, "emailCode", "", "" },

	/* The lone code. */
	{ true, false, 6, "{\"code\":\"123456\"}", OK, NULL, "123456", "" },
	{ false, true, 6, "{\"code\":\"654321\"}", OK, NULL, "", "654321" },
	{ true, true, 6, "{\"code\":\"123456\"}", MISSING, "otpCode", "", "" },
	{ true, false, 8, "{\"code\":\"12345678\"}", OK, NULL, "12345678", "" },
	{ true, false, 6, "{\"code\":\"12345\"}", INVALID, "code", "", "" },
	{ false, true, 6, "{\"code\":654321}", INVALID, "code", "", "" },
	{ true, true, 6, "{\"code\":null}", INVALID, "code", "", "" },
	{ true, true, 6, "{\"code\":\"123456\",\"otpCode\":\"12\"}", MISSING, "emailCode", "", "" },

	/* A code beside a named field is ignored. */
	{ true, true, 6, "{\"code\":\"111111\",\"emailCode\":\"123456\"}", MISSING, "otpCode",
		"", "" },
	{ true, true, 6, "{\"code\":\"111111\",\"emailCode\":\"123456\",\"otpCode\":\"654321\"}",
		OK, NULL, "123456", "654321" },
	{ true, false, 6, "{\"code\":\"x\",\"emailCode\":\"123456\"}", OK, NULL, "123456", "" },
	{ false, true, 6, "{\"code\":\"x\",\"otpCode\":\"654321\"}", OK, NULL, "", "654321" },
	{ true, false, 6, "{\"code\":\"123456\",\"otpCode\":\"654321\"}", MISSING, "emailCode",
		"", "" },

	/* Unknown members and codes for a factor the operation lacks. */
	{ true, false, 6, "{\"emailCode\":\"123456\",\"otpCode\":null,\"x\":[1]}", OK, NULL,
		"123456", "" },
	{ false, true, 6, "{\"emailCode\":true,\"otpCode\":\"654321\"}", OK, NULL, "", "654321" },

	/* Malformed codes. */
	{ true, false, 6, "{\"emailCode\":123456}", INVALID, "emailCode", "", "" },
	{ true, false, 6, "{\"emailCode\":null}", INVALID, "emailCode", "", "" },
	{ true, false, 6, "{\"emailCode\":true}", INVALID, "emailCode", "", "" },
	{ true, false, 6, "{\"emailCode\":{}}", INVALID, "emailCode", "", "" },
	{ true, false, 6, "{\"emailCode\":[\"123456\"]}", INVALID, "emailCode", "", "" },
	{ true, false, 6, "{\"emailCode\":\"\"}", INVALID, "emailCode", "", "" },
	{ true, false, 6, "{\"emailCode\":\"   \"}", INVALID, "emailCode", "", "" },
	{ true, false, 6, "{\"emailCode\":\"12345\"}", INVALID, "emailCode", "", "" },
	{ true, false, 6, "{\"emailCode\":\"1234567\"}", INVALID, "emailCode", "", "" },
	{ true, false, 6, "{\"emailCode\":\"12a456\"}", INVALID, "emailCode", "", "" },
	{ true, false, 6, "{\"emailCode\":\"123 456\"}", INVALID, "emailCode", "", "" },
	{ true, false, 6, "{\"emailCode\":\"-12345\"}", INVALID, "emailCode", "", "" },
	{ true, false, 6, "{\"emailCode\":\"\\u00a0123456\"}", INVALID, "emailCode", "", "" },
	{ true, false, 6, "{\"emailCode\":\"\\uff11\\uff12\\uff13\\uff14\\uff15\\uff16\"}",
		INVALID, "emailCode", "", "" },
	{ true, false, 8, "{\"emailCode\":\"123456\"}", INVALID, "emailCode", "", "" },
	{ false, true, 6, "{\"otpCode\":\"1234567\"}", INVALID, "otpCode", "", "" },
	{ false, true, 6, "{\"otpCode\":654321}", INVALID, "otpCode", "", "" },
	{ true, true, 8, "{\"emailCode\":\"12345678\",\"otpCode\":\"12345678\"}", INVALID,
		"otpCode", "", "" },
	{ true, false, 0, "{\"emailCode\":\"\"}", INVALID, "emailCode", "", "" },
	{ true, false, 16, "{\"emailCode\":\"1234567890123456\"}", INVALID, "emailCode", "", "" },

	/* emailCode is checked first, and the first problem is returned. */
	{ true, true, 6, "{\"emailCode\":1,\"otpCode\":2}", INVALID, "emailCode", "", "" },
	{ true, true, 6, "{\"emailCode\":\"1\"}", INVALID, "emailCode", "", "" },
	{ true, true, 6, "{\"otpCode\":\"1\"}", MISSING, "emailCode", "", "" },
	{ true, true, 6, "{\"emailCode\":\"123456\",\"otpCode\":\"1\"}", INVALID, "otpCode", "", "" },
};

static void confirm_codes_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(codes_cases) / sizeof(codes_cases[0]); i++) {
		const struct codes_case *row = &codes_cases[i];
		struct json_object *body = NULL;
		struct body_codes codes;
		const char *field = "unset";
		const char *reason = NULL;
		enum body_code_status status;

		if (row->body != NULL) {
			body = body_parse_object(row->body, strlen(row->body), &reason);
			if (body == NULL)
				fail_msg("row %zu: body rejected: %s", i, reason);
		}
		status = body_confirm_codes(body, row->email, row->otp, row->digits, &codes, &field);
		json_object_put(body);

		if (status != row->status)
			fail_msg("row %zu: status %d, expected %d", i, (int)status, (int)row->status);
		if (row->field == NULL && field != NULL)
			fail_msg("row %zu: field \"%s\", expected none", i, field);
		if (row->field != NULL && (field == NULL || strcmp(field, row->field) != 0))
			fail_msg("row %zu: field \"%s\", expected \"%s\"", i, field ? field : "(null)",
				row->field);
		if (strcmp(codes.email_code, row->email_code) != 0)
			fail_msg("row %zu: email code \"%s\", expected \"%s\"", i, codes.email_code,
				row->email_code);
		if (strcmp(codes.otp_code, row->otp_code) != 0)
			fail_msg("row %zu: otp code \"%s\", expected \"%s\"", i, codes.otp_code,
				row->otp_code);
	}
}

static void confirm_codes_non_object(void **state)
{
	struct json_object *array = json_object_new_array();
	struct body_codes codes;
	const char *field = NULL;

	(void)state;
	assert_int_equal(body_confirm_codes(array, true, false, 6, &codes, &field), MISSING);
	assert_string_equal(field, "emailCode");
	json_object_put(array);
}

static void confirm_codes_embedded_nul(void **state)
{
	struct json_object *body = json_object_new_object();
	struct body_codes codes;
	const char *field = NULL;

	(void)state;
	json_object_object_add(body, "emailCode", json_object_new_string_len("123\0" "56", 6));
	assert_int_equal(body_confirm_codes(body, true, false, 6, &codes, &field), INVALID);
	assert_string_equal(field, "emailCode");
	assert_string_equal(codes.email_code, "");
	json_object_put(body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(media_type_table),
		cmocka_unit_test(parse_valid_object),
		cmocka_unit_test(parse_valid_multibyte_utf8),
		cmocka_unit_test(parse_nesting_limit),
		cmocka_unit_test(parse_nesting_arrays_count),
		cmocka_unit_test(parse_reject_table),
		cmocka_unit_test(parse_null_data),
		cmocka_unit_test(confirm_codes_table),
		cmocka_unit_test(confirm_codes_non_object),
		cmocka_unit_test(confirm_codes_embedded_nul),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
