/* Request handlers: the checks of each route in their order, then the operations domain. */
#include "autoconfig.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "body.h"
#include "config.h"
#include "crypto.h"
#include "db.h"
#include "handlers.h"
#include "log.h"
#include "response.h"
#include "router.h"
#include "transport.h"

#define HANDLERS_FINGERPRINT_MAX 255

void handlers_error(struct response *resp, const struct request *req, int code)
{
	response_set_error(resp, code, req->request_id, NULL);
}

static void handlers_retry_after(struct response *resp, long seconds)
{
	char value[32];

	snprintf(value, sizeof(value), "%ld", seconds < 1 ? 1 : seconds);
	response_add_header(resp, "Retry-After", value);
}

/* Returns true when the connection responds to a ping. A lost connection is marked for reconnection. */
static bool handlers_database_answers(struct db *db)
{
	if (db_connect(db) != DB_OK)
		return false;
	if (mysql_ping(db_mysql(db)) == 0)
		return true;
	db_fail(db, NULL, "health check");
	return false;
}

static void handlers_health(const struct handlers_app *app, struct response *resp)
{
	struct json_object *obj = json_object_new_object();
	struct db *db = app->ops.db;
	bool ok = handlers_database_answers(db);

	/*
	 * A connection the server closed while this worker was idle (a restart,
	 * wait_timeout) fails its first ping although the server is back, so a
	 * fresh connection gets one more try before the check reports failure.
	 */
	if (!ok)
		ok = handlers_database_answers(db);
	json_object_object_add(obj, "status", json_object_new_string(ok ? "ok" : "unavailable"));
	resp->error_code = 0;
	response_set_json(resp, ok ? 200 : 503, obj);
}

void handlers_unauthorized(struct response *resp, const struct request *req,
	enum auth_result result)
{
	int code;

	if (result == AUTH_MISSING) {
		code = 401001;
		response_add_header(resp, "WWW-Authenticate", "Bearer realm=\"userops\"");
	} else {
		code = result == AUTH_EXPIRED ? 401003 : 401002;
		response_add_header(resp, "WWW-Authenticate",
			"Bearer realm=\"userops\", error=\"invalid_token\"");
	}
	handlers_error(resp, req, code);
}

/* Verifies the user's bearer token; on failure sets the 401 response and returns -1. */
static int handlers_authenticate(const struct handlers_app *app, const struct request *req,
	struct response *resp, struct handlers_log *log)
{
	enum auth_result result;

	result = auth_verify(app->auth, req->authorization, (int64_t)time(NULL), log->user_id);
	if (result == AUTH_OK)
		return 0;
	log->user_id[0] = '\0';
	handlers_unauthorized(resp, req, result);
	return -1;
}

/* A fingerprint is 1 to 255 characters from '!' to '~'. */
static bool handlers_fingerprint_valid(const char *fingerprint)
{
	size_t len;

	if (fingerprint == NULL)
		return false;
	for (len = 0; fingerprint[len] != '\0'; len++) {
		if (fingerprint[len] < '!' || fingerprint[len] > '~')
			return false;
	}
	return len >= 1 && len <= HANDLERS_FINGERPRINT_MAX;
}

/*
 * Checks the body's size, media type and JSON syntax, in that order. On
 * success *body is the parsed object, or NULL for an empty body.
 */
int handlers_read_body(const struct handlers_app *app, struct request *req,
	struct response *resp, struct json_object **body)
{
	size_t max_body = (size_t)app->cfg->server.max_body;
	const char *reason = NULL;
	size_t length;

	*body = NULL;
	if (transport_content_length(req, &length) != 0) {
		log_info("request_id=%s invalid Content-Length", req->request_id);
		handlers_error(resp, req, 400001);
		return -1;
	}
	if (length > max_body) {
		handlers_error(resp, req, 413001);
		return -1;
	}
	if (length == 0)
		return 0;
	if (!body_media_type_is_json(req->content_type)) {
		handlers_error(resp, req, 415001);
		return -1;
	}
	if (transport_read_body(req, max_body) != TRANSPORT_BODY_OK) {
		log_info("request_id=%s body shorter than its Content-Length", req->request_id);
		handlers_error(resp, req, 400001);
		return -1;
	}
	*body = body_parse_object(req->body, req->body_len, &reason);
	if (*body == NULL) {
		log_info("request_id=%s invalid JSON body: %s", req->request_id, reason);
		handlers_error(resp, req, 400001);
		return -1;
	}
	return 0;
}

/* Turns a domain error into its response, with the members and headers that code carries. */
void handlers_operation_error(struct response *resp, const struct request *req,
	const struct operation_result *result)
{
	struct json_object *extra = NULL;

	switch (result->error) {
	case 422001:
		extra = json_object_new_object();
		json_object_object_add(extra, "attemptsLeft",
			json_object_new_int64(result->attempts_left));
		break;
	case 400001:
	case 400004:
		if (result->field != NULL) {
			extra = json_object_new_object();
			json_object_object_add(extra, "field", json_object_new_string(result->field));
		}
		break;
	case 422002:
	case 429001:
	case 503001:
		handlers_retry_after(resp, result->retry_after);
		break;
	default:
		break;
	}
	response_set_error(resp, result->error, req->request_id, extra);
}

struct json_object *handlers_status_json(const char *uuid, enum operation_status status)
{
	struct json_object *data = json_object_new_object();

	json_object_object_add(data, "uuid", json_object_new_string(uuid));
	json_object_object_add(data, "status",
		json_object_new_string(operations_status_name(status)));
	return data;
}

static struct json_object *handlers_view_json(const struct operation_view *view)
{
	struct json_object *data = response_challenge_json(&view->challenge);
	struct json_object *delivery = NULL;

	json_object_object_add(data, "status",
		json_object_new_string(operations_status_name(view->status)));
	json_object_object_add(data, "attemptsLeft", json_object_new_int64(view->attempts_left));
	if (view->has_email_delivery) {
		delivery = json_object_new_object();
		json_object_object_add(delivery, "status",
			json_object_new_string(view->email_delivery_status));
		json_object_object_add(delivery, "at",
			json_object_new_int64(view->email_delivery_at));
	}
	json_object_object_add(data, "emailDelivery", delivery);
	return data;
}

/* Runs the domain action of an operation route once every request check passed. */
static void handlers_act(const struct handlers_app *app, const struct request *req,
	const struct route_match *match, const struct operation_actor *actor,
	struct json_object *body, struct response *resp)
{
	struct operation_result result = { 0 };
	struct operation_challenge challenge;
	struct operation_view view;

	switch (match->route) {
	case ROUTE_OPERATION_GET:
		operations_get(&app->ops, match->uuid, actor, &view, &result);
		if (result.error == 0)
			response_set_success(resp, handlers_view_json(&view));
		break;
	case ROUTE_OPERATION_CANCEL:
		operations_cancel(&app->ops, match->uuid, actor, &result);
		if (result.error == 0)
			response_set_success(resp, handlers_status_json(match->uuid_text, result.status));
		break;
	case ROUTE_OPERATION_CONFIRM:
		operations_confirm(&app->ops, match->uuid, actor, body, &result);
		if (result.error == 0)
			response_set_success(resp, handlers_status_json(match->uuid_text, result.status));
		break;
	case ROUTE_OPERATION_RESEND:
		operations_resend(&app->ops, match->uuid, actor, &challenge, &result);
		if (result.error == 0) {
			resp->error_code = 0;
			response_set_json(resp, 200, response_challenge_json(&challenge));
		}
		break;
	default:
		result.error = 500001;
		break;
	}
	if (result.error != 0)
		handlers_operation_error(resp, req, &result);
}

/* The /operations routes: token, Fingerprint, uuid, body, then the domain (SPEC order). */
static void handlers_operation(const struct handlers_app *app, struct request *req,
	const struct route_match *match, struct response *resp, struct handlers_log *log)
{
	struct operation_actor actor;
	struct json_object *body = NULL;

	if (handlers_authenticate(app, req, resp, log) != 0)
		return;
	if (!handlers_fingerprint_valid(req->fingerprint)) {
		handlers_error(resp, req, 400002);
		return;
	}
	if (!match->uuid_valid) {
		handlers_error(resp, req, 400003);
		return;
	}
	snprintf(log->uuid, sizeof(log->uuid), "%s", match->uuid_text);
	if (handlers_read_body(app, req, resp, &body) != 0)
		return;

	memset(&actor, 0, sizeof(actor));
	actor.user_id = log->user_id;
	crypto_sha256(req->fingerprint, strlen(req->fingerprint), actor.fingerprint_sha256);
	actor.client_address = req->remote_addr;
	actor.request_id = req->request_id;
	handlers_act(app, req, match, &actor, body, resp);
	json_object_put(body);
}

void handlers_dispatch(const struct handlers_app *app, struct request *req,
	struct response *resp, struct handlers_log *log)
{
	struct route_match match;

	router_match(req->method, req->script_name, req->path_info, app->cfg->server.base_path,
		&match);
	log->route = router_route_name(match.route);
	if (match.route == ROUTE_NONE) {
		handlers_error(resp, req, 404002);
		return;
	}
	if (!match.method_allowed) {
		response_add_header(resp, "Allow", match.allow);
		handlers_error(resp, req, 405001);
		return;
	}
	if (match.route == ROUTE_HEALTH) {
		handlers_health(app, resp);
		return;
	}
	if (router_route_is_internal(match.route)) {
		handlers_internal(app, req, &match, resp, log);
		return;
	}
	handlers_operation(app, req, &match, resp, log);
}
