/* JSON responses: the error table, success envelopes and the challenge object. */
#include "autoconfig.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operations.h"
#include "response.h"

struct response_error_entry {
	int code;
	const char *message;
};

/* Messages are for the developer of the client; details stay in the log. */
static const struct response_error_entry response_errors[] = {
	{ 400001, "Invalid request parameters" },
	{ 400002, "Missing or invalid Fingerprint header" },
	{ 400003, "Invalid operation uuid" },
	{ 400004, "A required confirmation code is missing" },
	{ 401001, "Missing access token" },
	{ 401002, "Invalid access token" },
	{ 401003, "Access token expired" },
	{ 403001, "This device may not act on the operation" },
	{ 403002, "The service token lacks the scope for this route" },
	{ 404001, "Operation not found" },
	{ 404002, "No such route" },
	{ 405001, "Method not allowed" },
	{ 409001, "Operation already confirmed" },
	{ 409002, "Operation already cancelled" },
	{ 409003, "Operation rejected after too many wrong codes" },
	{ 409004, "Operation has no e-mail factor" },
	{ 409005, "Idempotency-Key already used with another body" },
	{ 410001, "Operation expired" },
	{ 413001, "Request body too large" },
	{ 415001, "Body is not application/json" },
	{ 422001, "Wrong confirmation code" },
	{ 422002, "This authenticator code was already used; wait for the next one" },
	{ 429001, "Resend too early" },
	{ 429002, "Resend limit reached for this operation" },
	{ 429003, "Too many requests" },
	{ 500001, "Internal error" },
	{ 503001, "Database unavailable" },
};

struct response_reason_entry {
	int status;
	const char *reason;
};

static const struct response_reason_entry response_reasons[] = {
	{ 200, "OK" },
	{ 201, "Created" },
	{ 400, "Bad Request" },
	{ 401, "Unauthorized" },
	{ 403, "Forbidden" },
	{ 404, "Not Found" },
	{ 405, "Method Not Allowed" },
	{ 409, "Conflict" },
	{ 410, "Gone" },
	{ 413, "Content Too Large" },
	{ 415, "Unsupported Media Type" },
	{ 422, "Unprocessable Content" },
	{ 429, "Too Many Requests" },
	{ 500, "Internal Server Error" },
	{ 503, "Service Unavailable" },
};

const char *response_reason(int status)
{
	size_t i;

	for (i = 0; i < sizeof(response_reasons) / sizeof(response_reasons[0]); i++)
		if (response_reasons[i].status == status)
			return response_reasons[i].reason;
	return "Unknown";
}

static const char *response_error_message(int code)
{
	size_t i;

	for (i = 0; i < sizeof(response_errors) / sizeof(response_errors[0]); i++)
		if (response_errors[i].code == code)
			return response_errors[i].message;
	return "Internal error";
}

void response_add_header(struct response *resp, const char *name, const char *value)
{
	size_t used = strlen(resp->headers);

	snprintf(resp->headers + used, sizeof(resp->headers) - used, "%s: %s\r\n", name, value);
}

void response_set_json(struct response *resp, int status, struct json_object *obj)
{
	const char *text;

	free(resp->body);
	resp->status = status;
	text = json_object_to_json_string_ext(obj,
		JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	resp->body = strdup(text != NULL ? text : "{}");
	json_object_put(obj);
}

void response_set_error(struct response *resp, int code, const char *request_id,
	struct json_object *extra)
{
	struct json_object *root = json_object_new_object();
	struct json_object *error = json_object_new_object();

	json_object_object_add(error, "code", json_object_new_int(code));
	json_object_object_add(error, "message",
		json_object_new_string(response_error_message(code)));
	json_object_object_add(error, "requestId", json_object_new_string(request_id));
	if (extra != NULL) {
		json_object_object_foreach(extra, key, value)
			json_object_object_add(error, key, json_object_get(value));
		json_object_put(extra);
	}
	json_object_object_add(root, "success", json_object_new_boolean(0));
	json_object_object_add(root, "error", error);
	resp->error_code = code;
	response_set_json(resp, code / 1000, root);
}

void response_set_success(struct response *resp, struct json_object *data)
{
	struct json_object *root = json_object_new_object();

	json_object_object_add(root, "success", json_object_new_boolean(1));
	json_object_object_add(root, "data", data);
	json_object_object_add(root, "message", json_object_new_string("Operation successful"));
	resp->error_code = 0;
	response_set_json(resp, 200, root);
}

struct json_object *response_challenge_json(const struct operation_challenge *challenge)
{
	struct json_object *obj = json_object_new_object();

	json_object_object_add(obj, "email2fa", json_object_new_boolean(challenge->email2fa));
	json_object_object_add(obj, "emailHint", challenge->has_email_hint ?
		json_object_new_string(challenge->email_hint) : NULL);
	json_object_object_add(obj, "expiresAt", json_object_new_int64(challenge->expires_at));
	json_object_object_add(obj, "otp2fa", json_object_new_boolean(challenge->otp2fa));
	json_object_object_add(obj, "resendEmailAfter", challenge->has_resend_email_after ?
		json_object_new_int64(challenge->resend_email_after) : NULL);
	json_object_object_add(obj, "uuid", json_object_new_string(challenge->uuid));
	return obj;
}

void response_free(struct response *resp)
{
	free(resp->body);
	resp->body = NULL;
}
