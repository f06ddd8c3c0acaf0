/* Request handlers: the checks of each route in their order, then the operations domain. */
#ifndef USEROPS_HANDLERS_H
#define USEROPS_HANDLERS_H

#include "auth.h"
#include "operations.h"

struct config;
struct json_object;
struct request;
struct response;
struct route_match;

/* The state one worker process needs to respond to requests. */
struct handlers_app {
	const struct config *cfg;
	struct auth_keys *auth;
	/* The keys of [internal], or NULL when [internal] audience is unset: /internal/ is then 404002. */
	struct auth_keys *internal_auth;
	struct operations_context ops;
};

/* The fields of the request log line besides status and duration. */
struct handlers_log {
	const char *route;
	char user_id[AUTH_USER_ID_MAX + 1];
	char uuid[37];
};

/* Routes req and fills resp. Every problem becomes an error response, so the caller always has one to send. */
void handlers_dispatch(const struct handlers_app *app, struct request *req,
	struct response *resp, struct handlers_log *log);

/* Shared by the handler files. */

void handlers_error(struct response *resp, const struct request *req, int code);

/* Sets the 401 response for result, with WWW-Authenticate as RFC 6750 asks. */
void handlers_unauthorized(struct response *resp, const struct request *req,
	enum auth_result result);

/*
 * Checks the body's size, media type and JSON syntax, in that order. On
 * success returns 0 with *body the parsed object, or NULL for an empty
 * body; else sets the error response and returns -1.
 */
int handlers_read_body(const struct handlers_app *app, struct request *req,
	struct response *resp, struct json_object **body);

/* Turns a domain error into its answer, with the members and headers that code carries. */
void handlers_operation_error(struct response *resp, const struct request *req,
	const struct operation_result *result);

struct json_object *handlers_status_json(const char *uuid, enum operation_status status);

/* The service-to-service routes under /internal/ (handlers_internal.c). */
void handlers_internal(const struct handlers_app *app, struct request *req,
	const struct route_match *match, struct response *resp, struct handlers_log *log);

#endif
