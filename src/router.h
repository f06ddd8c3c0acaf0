/* Maps SCRIPT_NAME and PATH_INFO to a route, whatever the mount point. */
#ifndef USEROPS_ROUTER_H
#define USEROPS_ROUTER_H

#include <stdbool.h>

enum route_id {
	ROUTE_NONE,             /* 404002 */
	ROUTE_HEALTH,
	ROUTE_OPERATION_GET,
	ROUTE_OPERATION_CANCEL,
	ROUTE_OPERATION_CONFIRM,
	ROUTE_OPERATION_RESEND,
	ROUTE_INTERNAL_CREATE,
	ROUTE_INTERNAL_GET,
	ROUTE_INTERNAL_CANCEL,
	ROUTE_INTERNAL_EVENTS,
};

/* Returns true for the service-to-service routes under /internal/. */
bool router_route_is_internal(enum route_id route);

struct route_match {
	enum route_id route;
	bool method_allowed;    /* false: 405001 with allow */
	const char *allow;      /* the Allow header value for this path */
	bool has_uuid;
	bool uuid_valid;        /* false with has_uuid: 400003 */
	unsigned char uuid[16];
	char uuid_text[37];     /* lower case, set when uuid_valid */
};

/*
 * Matches the path script_name + path_info (either may be NULL). With
 * base_path set (non-empty), the path must start with it at a segment
 * boundary and the rest must be a whole route. Without it, the route is
 * matched on the path's final segments, the route with more segments
 * winning. An empty, "." or ".." segment never matches.
 */
void router_match(const char *method, const char *script_name, const char *path_info,
	const char *base_path, struct route_match *match);

/* Returns the route's name for the request log, such as "confirm". */
const char *router_route_name(enum route_id route);

/* Parses the 36-character textual UUID, any case. Returns true when valid. */
bool router_parse_uuid(const char *text, unsigned char uuid[16]);

#endif
