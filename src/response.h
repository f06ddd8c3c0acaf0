/* JSON responses: the error table, success envelopes and the challenge object. */
#ifndef USEROPS_RESPONSE_H
#define USEROPS_RESPONSE_H

#include <stddef.h>

struct json_object;
struct operation_challenge;

#define RESPONSE_HEADERS_MAX 512

struct response {
	int status;
	int error_code;                   /* 0 on success, for the request log */
	char headers[RESPONSE_HEADERS_MAX];   /* extra header lines, each ending CRLF */
	char *body;                       /* JSON text, owned */
};

/* Returns the HTTP reason phrase of status, such as "Not Found". */
const char *response_reason(int status);

/* Appends one "Name: value" header line. */
void response_add_header(struct response *resp, const char *name, const char *value);

/* Takes ownership of obj: serialises it as the body with the given status. */
void response_set_json(struct response *resp, int status, struct json_object *obj);

/*
 * Sets the error body {"success": false, "error": {...}} for an API error
 * code (HTTP status is code / 1000). extra, when not NULL, contains members
 * merged into "error" (such as attemptsLeft or field) and is consumed.
 */
void response_set_error(struct response *resp, int code, const char *request_id,
	struct json_object *extra);

/* Sets {"success": true, "data": data, "message": "Operation successful"}; consumes data. */
void response_set_success(struct response *resp, struct json_object *data);

/* Builds the challenge object of resend and create-operation. */
struct json_object *response_challenge_json(const struct operation_challenge *challenge);

void response_free(struct response *resp);

#endif
