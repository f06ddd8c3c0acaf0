/* The service-to-service routes under /internal/: create, view and cancel operations, and the events feed. */
#include "autoconfig.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "crypto.h"
#include "handlers.h"
#include "log.h"
#include "response.h"
#include "router.h"
#include "transport.h"

#define INTERNAL_SCOPE_READ "operations:read"
#define INTERNAL_SCOPE_WRITE "operations:write"
#define INTERNAL_IDEMPOTENCY_KEY_MAX 128
#define INTERNAL_PARAMS_MAX 32
#define INTERNAL_REASON_MAX 255
#define INTERNAL_EVENTS_LIMIT_DEFAULT 100
#define INTERNAL_EVENTS_LIMIT_MAX 1000

/* The members of a create request, pointing into the parsed body. */
struct internal_create_request {
	struct operation_new op;
	struct operation_param params[INTERNAL_PARAMS_MAX];
};

static void internal_field_error(struct response *resp, const struct request *req,
	const char *field)
{
	struct json_object *extra = json_object_new_object();

	json_object_object_add(extra, "field", json_object_new_string(field));
	response_set_error(resp, 400001, req->request_id, extra);
}

/*
 * Verifies the service token with the keys of [internal] and that its scope
 * contains scope. On success copies the token's subject into service.
 */
static int internal_authenticate(const struct handlers_app *app, const struct request *req,
	const char *scope, struct response *resp, struct handlers_log *log)
{
	struct auth_claims claims;
	enum auth_result result;

	result = auth_verify_claims(app->internal_auth, req->authorization, (int64_t)time(NULL),
		&claims);
	if (result != AUTH_OK) {
		handlers_unauthorized(resp, req, result);
		return -1;
	}
	snprintf(log->user_id, sizeof(log->user_id), "%s", claims.subject);
	if (!auth_scope_has(&claims, scope)) {
		log_info("request_id=%s service token lacks scope %s", req->request_id, scope);
		handlers_error(resp, req, 403002);
		return -1;
	}
	return 0;
}

/*
 * Returns true for 1 to max_len bytes of UTF-8 (checked by the body parser)
 * without C0 controls, DEL or C1 controls (U+0080 to U+009F, encoded as
 * 0xC2 0x80 to 0xC2 0x9F).
 */
static bool internal_text_is_plain(const char *text, size_t max_len)
{
	size_t len = strlen(text);

	if (len == 0 || len > max_len)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];

		if (c < 0x20 || c == 0x7f)
			return false;
		if (c == 0xc2 && i + 1 < len && (unsigned char)text[i + 1] <= 0x9f)
			return false;
	}
	return true;
}

/* Reads the params object: string values only, at most INTERNAL_PARAMS_MAX. */
static int internal_parse_params(struct json_object *value, struct internal_create_request *create)
{
	size_t count = 0;

	if (!json_object_is_type(value, json_type_object))
		return -1;
	json_object_object_foreach(value, name, param) {
		if (count == INTERNAL_PARAMS_MAX || !json_object_is_type(param, json_type_string))
			return -1;
		create->params[count].name = name;
		create->params[count].value = json_object_get_string(param);
		count++;
	}
	create->op.params = create->params;
	create->op.param_count = count;
	return 0;
}

/*
 * Maps one member of a create body onto create. Returns 0, or -1 when the
 * member is unknown or of the wrong type; values are checked by the domain.
 */
static int internal_parse_member(const char *name, struct json_object *value,
	struct internal_create_request *create)
{
	struct operation_new *op = &create->op;
	bool is_string = json_object_is_type(value, json_type_string);

	if (strcmp(name, "userId") == 0 && is_string)
		op->user_id = json_object_get_string(value);
	else if (strcmp(name, "fingerprint") == 0 && is_string)
		op->fingerprint = json_object_get_string(value);
	else if (strcmp(name, "email") == 0 && (is_string || value == NULL))
		op->email = value != NULL ? json_object_get_string(value) : NULL;
	else if (strcmp(name, "otp") == 0 && json_object_is_type(value, json_type_boolean))
		op->otp = json_object_get_boolean(value);
	else if (strcmp(name, "kind") == 0 && is_string)
		op->kind = json_object_get_string(value);
	else if (strcmp(name, "locale") == 0 && is_string)
		op->locale = json_object_get_string(value);
	else if (strcmp(name, "params") == 0)
		return internal_parse_params(value, create);
	else if (strcmp(name, "ttl") == 0 && json_object_is_type(value, json_type_int)) {
		int64_t ttl = json_object_get_int64(value);

		/* 0 would mean the default lifetime to the domain, so it is refused here. */
		if (ttl < 1 || ttl > 86400L * 366)
			return -1;
		op->ttl = (long)ttl;
	} else
		return -1;
	return 0;
}

static int internal_parse_create(struct json_object *body, struct internal_create_request *create,
	const char **field)
{
	memset(create, 0, sizeof(*create));
	if (body != NULL) {
		json_object_object_foreach(body, name, value) {
			if (internal_parse_member(name, value, create) != 0) {
				*field = name;
				return -1;
			}
		}
	}
	if (create->op.user_id == NULL) {
		*field = "userId";
		return -1;
	}
	if (create->op.fingerprint == NULL) {
		*field = "fingerprint";
		return -1;
	}
	return 0;
}

/* An Idempotency-Key is 1 to 128 visible ASCII characters. */
static bool internal_idempotency_key_valid(const char *key)
{
	size_t len = strlen(key);

	if (len == 0 || len > INTERNAL_IDEMPOTENCY_KEY_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (key[i] < '!' || key[i] > '~')
			return false;
	return true;
}

/* Sets Location to the request's own path plus the new operation's uuid. */
static void internal_add_location(struct response *resp, const struct request *req,
	const char *uuid)
{
	char location[600];

	snprintf(location, sizeof(location), "%s%s/%s",
		req->script_name != NULL ? req->script_name : "",
		req->path_info != NULL ? req->path_info : "", uuid);
	response_add_header(resp, "Location", location);
}

static void internal_create(const struct handlers_app *app, struct request *req,
	struct json_object *body, const struct operation_actor *actor, struct response *resp,
	struct handlers_log *log)
{
	struct internal_create_request create;
	struct operation_idempotency idempotency;
	struct operation_challenge challenge;
	struct operation_result result = { 0 };
	const char *field = NULL;
	char *answer = NULL;
	bool replayed = false;
	char err[256] = "";

	if (req->idempotency_key != NULL && !internal_idempotency_key_valid(req->idempotency_key)) {
		internal_field_error(resp, req, "Idempotency-Key");
		return;
	}
	if (internal_parse_create(body, &create, &field) != 0) {
		internal_field_error(resp, req, field);
		return;
	}
	create.op.client_address = req->remote_addr;
	create.op.request_id = req->request_id;
	create.op.service = actor->service;

	if (req->idempotency_key != NULL) {
		idempotency.service = actor->service;
		idempotency.key = req->idempotency_key;
		crypto_sha256(req->body != NULL ? req->body : "", req->body_len,
			idempotency.request_sha256);
	}
	operations_create_for_service(&app->ops, &create.op,
		req->idempotency_key != NULL ? &idempotency : NULL, &challenge, &answer, &replayed,
		&result, err, sizeof(err));
	if (result.error != 0) {
		if (err[0] != '\0')
			log_info("request_id=%s operation not created: %s", req->request_id, err);
		handlers_operation_error(resp, req, &result);
		free(answer);
		return;
	}
	if (replayed)
		log_info("request_id=%s Idempotency-Key replayed operation=%s", req->request_id,
			challenge.uuid);
	snprintf(log->uuid, sizeof(log->uuid), "%s", challenge.uuid);
	internal_add_location(resp, req, challenge.uuid);
	resp->status = 201;
	resp->error_code = 0;
	resp->body = answer;
}

/* A reason is optional: a string of 1 to 255 bytes without control characters. */
static int internal_cancel_reason(struct json_object *body, const char **reason)
{
	struct json_object *value = NULL;

	*reason = NULL;
	if (body == NULL || !json_object_object_get_ex(body, "reason", &value))
		return 0;
	if (!json_object_is_type(value, json_type_string) ||
		!internal_text_is_plain(json_object_get_string(value), INTERNAL_REASON_MAX))
		return -1;
	*reason = json_object_get_string(value);
	return 0;
}

/*
 * Parses a decimal query value from 0 to INT64_MAX, leading zeros allowed.
 * Returns 0, or -1 when it is empty, too large or contains anything else.
 */
static int internal_parse_number(const char *text, size_t len, int64_t *value)
{
	int64_t number = 0;

	if (len == 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		int digit = text[i] - '0';

		if (text[i] < '0' || text[i] > '9' || number > (INT64_MAX - digit) / 10)
			return -1;
		number = number * 10 + digit;
	}
	*value = number;
	return 0;
}

/*
 * Reads after and limit from the query string; other parameters are
 * ignored. Returns 0, or -1 with *field naming the parameter at fault.
 */
static int internal_parse_events_query(const char *query, int64_t *after, long *limit,
	const char **field)
{
	bool seen_after = false, seen_limit = false;
	int64_t value;

	*after = 0;
	*limit = INTERNAL_EVENTS_LIMIT_DEFAULT;
	while (query != NULL && *query != '\0') {
		size_t pair_len = strcspn(query, "&");
		const char *equals = memchr(query, '=', pair_len);
		size_t name_len = equals != NULL ? (size_t)(equals - query) : pair_len;
		const char *text = equals != NULL ? equals + 1 : query + pair_len;
		size_t text_len = pair_len - (size_t)(text - query);

		if (name_len == 5 && memcmp(query, "after", 5) == 0) {
			*field = "after";
			if (seen_after || internal_parse_number(text, text_len, &value) != 0)
				return -1;
			*after = value;
			seen_after = true;
		} else if (name_len == 5 && memcmp(query, "limit", 5) == 0) {
			*field = "limit";
			if (seen_limit || internal_parse_number(text, text_len, &value) != 0 ||
				value < 1 || value > INTERNAL_EVENTS_LIMIT_MAX)
				return -1;
			*limit = (long)value;
			seen_limit = true;
		}
		query += pair_len;
		if (*query == '&')
			query++;
	}
	return 0;
}

static void internal_events(const struct handlers_app *app, const struct request *req,
	struct response *resp)
{
	struct operation_result result = { 0 };
	struct json_object *events = NULL;
	struct json_object *data;
	const char *field = NULL;
	int64_t after, last_id = 0;
	long limit;

	if (internal_parse_events_query(req->query_string, &after, &limit, &field) != 0) {
		internal_field_error(resp, req, field);
		return;
	}
	operations_events(&app->ops, after, limit, &events, &last_id, &result);
	if (result.error != 0) {
		handlers_operation_error(resp, req, &result);
		return;
	}
	data = json_object_new_object();
	json_object_object_add(data, "events", events);
	json_object_object_add(data, "lastId", json_object_new_int64(last_id));
	response_set_success(resp, data);
}

/* Runs the route once the token, scope, uuid and body checks passed. */
static void internal_act(const struct handlers_app *app, struct request *req,
	const struct route_match *match, struct json_object *body,
	const struct operation_actor *actor, struct response *resp, struct handlers_log *log)
{
	struct operation_result result = { 0 };
	struct json_object *operation = NULL;
	const char *reason = NULL;

	switch (match->route) {
	case ROUTE_INTERNAL_CREATE:
		internal_create(app, req, body, actor, resp, log);
		return;
	case ROUTE_INTERNAL_GET:
		operations_service_get(&app->ops, match->uuid, actor, &operation, &result);
		if (result.error == 0)
			response_set_success(resp, operation);
		break;
	case ROUTE_INTERNAL_CANCEL:
		if (internal_cancel_reason(body, &reason) != 0) {
			internal_field_error(resp, req, "reason");
			return;
		}
		operations_service_cancel(&app->ops, match->uuid, actor, reason, &result);
		if (result.error == 0)
			response_set_success(resp, handlers_status_json(match->uuid_text, result.status));
		break;
	case ROUTE_INTERNAL_EVENTS:
		internal_events(app, req, resp);
		return;
	default:
		result.error = 500001;
		break;
	}
	if (result.error != 0)
		handlers_operation_error(resp, req, &result);
}

void handlers_internal(const struct handlers_app *app, struct request *req,
	const struct route_match *match, struct response *resp, struct handlers_log *log)
{
	const char *scope = match->route == ROUTE_INTERNAL_CREATE ||
		match->route == ROUTE_INTERNAL_CANCEL ? INTERNAL_SCOPE_WRITE : INTERNAL_SCOPE_READ;
	struct operation_actor actor;
	struct json_object *body = NULL;

	/* Without [internal] audience the service routes do not exist. */
	if (app->internal_auth == NULL) {
		handlers_error(resp, req, 404002);
		return;
	}
	if (internal_authenticate(app, req, scope, resp, log) != 0)
		return;
	if (match->has_uuid && !match->uuid_valid) {
		handlers_error(resp, req, 400003);
		return;
	}
	if (match->has_uuid)
		snprintf(log->uuid, sizeof(log->uuid), "%s", match->uuid_text);
	if (handlers_read_body(app, req, resp, &body) != 0)
		return;

	memset(&actor, 0, sizeof(actor));
	actor.is_service = true;
	actor.service = log->user_id;
	actor.client_address = req->remote_addr;
	actor.request_id = req->request_id;
	internal_act(app, req, match, body, &actor, resp, log);
	json_object_put(body);
}
