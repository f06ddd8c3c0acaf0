/* Request handlers: the checks of each route in their order, then the operations domain. */
#ifndef USEROPS_HANDLERS_H
#define USEROPS_HANDLERS_H

#include "auth.h"
#include "operations.h"

struct config;
struct request;
struct response;

/* What one worker process needs to answer requests. */
struct handlers_app {
	const struct config *cfg;
	struct auth_keys *auth;
	struct operations_context ops;
};

/* What the request log line reports besides status and duration. */
struct handlers_log {
	const char *route;
	char user_id[AUTH_USER_ID_MAX + 1];
	char uuid[37];
};

/* Routes req and fills resp; never fails, since every problem becomes an error response. */
void handlers_dispatch(const struct handlers_app *app, struct request *req,
	struct response *resp, struct handlers_log *log);

#endif
