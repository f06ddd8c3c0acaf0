/* Strict request body checks: media type, JSON syntax and confirmation codes. */
#ifndef USEROPS_BODY_H
#define USEROPS_BODY_H

#include <stdbool.h>
#include <stddef.h>

struct json_object;
struct json_tokener;

/* Maximum nesting of a body, counting the top object as level 1. */
#define BODY_MAX_DEPTH 16

/*
 * Returns true when content_type is application/json (any case) with no
 * charset parameter or charset utf-8 (any case, quoted or not); other
 * parameters are ignored.
 */
bool body_media_type_is_json(const char *content_type);

/*
 * Parses exactly one JSON object from data: nothing but white space after
 * it, at most BODY_MAX_DEPTH levels, valid UTF-8, no NUL anywhere, not even
 * escaped as \u0000. Returns the object (the caller puts it), or NULL with
 * *reason set to a static English phrase for the log.
 */
struct json_object *body_parse_object(const char *data, size_t len, const char **reason);

/*
 * Parses one JSON value from data with a strict, UTF-8 checking tokener of
 * depth levels, kept in *kept for the calling thread's next parse. Returns
 * the value, or NULL when data is not one, or with *out_of_memory set when
 * no tokener could be made. *parse_end is where parsing stopped.
 */
struct json_object *body_parse_kept(struct json_tokener **kept, int depth, const char *data,
	size_t len, bool *out_of_memory, size_t *parse_end);

enum body_code_status {
	BODY_CODES_OK,
	BODY_CODES_MISSING,   /* 400004: *field names the missing member */
	BODY_CODES_INVALID,   /* 400001: *field names the malformed member */
};

struct body_codes {
	char email_code[16];  /* digits and NUL, or empty when not required */
	char otp_code[16];
};

/*
 * Extracts the codes of a confirm body for an operation with the given
 * factors. emailCode is checked first, then otpCode. A lone "code" stands
 * for the only factor, or for emailCode when there are two. A code is a
 * JSON string of exactly email_digits (TOTP: 6) ASCII digits once
 * surrounding white space is removed. body may be NULL for an empty body.
 */
enum body_code_status body_confirm_codes(struct json_object *body, bool email_factor,
	bool otp_factor, size_t email_digits, struct body_codes *codes, const char **field);

#endif
