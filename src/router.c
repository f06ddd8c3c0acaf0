/* Maps SCRIPT_NAME and PATH_INFO to a route, whatever the mount point. */
#include "router.h"

#include <stddef.h>
#include <string.h>
#include <uuid/uuid.h>

/* Maximum length (SCRIPT_NAME + PATH_INFO) and segment count of a path that can match. */
#define ROUTER_MAX_PATH 8192
#define ROUTER_MAX_SEGMENTS 64

/* Maximum segments and methods of one path in the route table. */
#define ROUTER_PATH_SEGMENTS 4
#define ROUTER_PATH_METHODS 2

/* The pattern segment that matches any segment and is parsed as a UUID. */
#define ROUTER_UUID "{uuid}"

struct router_method {
	const char *method;
	enum route_id route;
};

/*
 * One path of the API: its segments (NULL after the last), the Allow header
 * for it, and the route of each method it accepts.
 */
struct router_path {
	const char *segments[ROUTER_PATH_SEGMENTS + 1];
	const char *allow;
	struct router_method methods[ROUTER_PATH_METHODS];
};

/*
 * Where two paths of the same length fit, the first listed wins, so a path
 * with a literal segment goes before one with ROUTER_UUID in its place.
 */
static const struct router_path router_paths[] = {
	{ { "health" }, "GET", { { "GET", ROUTE_HEALTH } } },
	{ { "operations", ROUTER_UUID }, "GET", { { "GET", ROUTE_OPERATION_GET } } },
	{ { "operations", ROUTER_UUID, "cancel" }, "PUT", { { "PUT", ROUTE_OPERATION_CANCEL } } },
	{ { "operations", ROUTER_UUID, "confirm" }, "PUT", { { "PUT", ROUTE_OPERATION_CONFIRM } } },
	{ { "operations", ROUTER_UUID, "resend" }, "PUT", { { "PUT", ROUTE_OPERATION_RESEND } } },
	{ { "internal", "operations" }, "POST", { { "POST", ROUTE_INTERNAL_CREATE } } },
	{ { "internal", "events" }, "GET", { { "GET", ROUTE_INTERNAL_EVENTS } } },
	{ { "internal", "operations", ROUTER_UUID }, "GET", { { "GET", ROUTE_INTERNAL_GET } } },
	{ { "internal", "operations", ROUTER_UUID, "cancel" }, "PUT",
		{ { "PUT", ROUTE_INTERNAL_CANCEL } } },
};

static const char *const router_names[] = {
	[ROUTE_NONE] = "none",
	[ROUTE_HEALTH] = "health",
	[ROUTE_OPERATION_GET] = "get",
	[ROUTE_OPERATION_CANCEL] = "cancel",
	[ROUTE_OPERATION_CONFIRM] = "confirm",
	[ROUTE_OPERATION_RESEND] = "resend",
	[ROUTE_INTERNAL_CREATE] = "internal_create",
	[ROUTE_INTERNAL_GET] = "internal_get",
	[ROUTE_INTERNAL_CANCEL] = "internal_cancel",
	[ROUTE_INTERNAL_EVENTS] = "internal_events",
};

bool router_route_is_internal(enum route_id route)
{
	return route == ROUTE_INTERNAL_CREATE || route == ROUTE_INTERNAL_GET ||
		route == ROUTE_INTERNAL_CANCEL || route == ROUTE_INTERNAL_EVENTS;
}

/* One segment of a path, not NUL-terminated. */
struct router_segment {
	const char *text;
	size_t length;
};

struct router_split {
	struct router_segment segments[ROUTER_MAX_SEGMENTS];
	size_t count;
};

const char *router_route_name(enum route_id route)
{
	if ((size_t)route >= sizeof(router_names) / sizeof(router_names[0]) ||
		router_names[route] == NULL)
		return "none";
	return router_names[route];
}

static bool router_parse_uuid_range(const char *text, size_t length, unsigned char uuid[16])
{
	/* libuuid (util-linux 2.38) rejects a wrong length, misplaced dashes
	 * and non-hex characters; the unit tests try each. */
	return uuid_parse_range(text, text + length, uuid) == 0;
}

bool router_parse_uuid(const char *text, unsigned char uuid[16])
{
	if (text == NULL)
		return false;
	return router_parse_uuid_range(text, strlen(text), uuid);
}

/*
 * Splits a path that starts with '/' into its segments. Returns -1 for a
 * path without the leading '/', with an empty, "." or ".." segment, or with
 * more than ROUTER_MAX_SEGMENTS segments.
 */
static int router_split_path(const char *path, struct router_split *split)
{
	const char *segment;

	split->count = 0;
	if (path[0] != '/')
		return -1;

	segment = path + 1;
	for (;;) {
		size_t length = strcspn(segment, "/");

		if (length == 0)
			return -1;
		if ((length == 1 && segment[0] == '.') ||
			(length == 2 && segment[0] == '.' && segment[1] == '.'))
			return -1;
		if (split->count == ROUTER_MAX_SEGMENTS)
			return -1;
		split->segments[split->count].text = segment;
		split->segments[split->count].length = length;
		split->count++;

		if (segment[length] == '\0')
			return 0;
		segment += length + 1;
	}
}

static bool router_segment_is(const struct router_segment *segment, const char *text)
{
	return strlen(text) == segment->length && memcmp(segment->text, text, segment->length) == 0;
}

static size_t router_path_length(const struct router_path *path)
{
	size_t length = 0;

	while (length < ROUTER_PATH_SEGMENTS && path->segments[length] != NULL)
		length++;
	return length;
}

/* Returns true when the count segments from first fit the table path. */
static bool router_path_fits(const struct router_path *path, const struct router_segment *first,
	size_t count)
{
	if (router_path_length(path) != count)
		return false;
	for (size_t i = 0; i < count; i++) {
		if (strcmp(path->segments[i], ROUTER_UUID) != 0 &&
			!router_segment_is(&first[i], path->segments[i]))
			return false;
	}
	return true;
}

/*
 * Finds the table path that fits the segments from start on: all of them
 * when whole is true, else the final ones, the longest fitting path winning
 * (so "/x/operations/health" is an operation, not the health check).
 */
static const struct router_path *router_find_path(const struct router_split *split, size_t start,
	bool whole)
{
	const struct router_path *best = NULL;
	size_t best_length = 0;
	size_t available = split->count - start;

	for (size_t i = 0; i < sizeof(router_paths) / sizeof(router_paths[0]); i++) {
		const struct router_path *path = &router_paths[i];
		size_t length = router_path_length(path);

		if (length > available || (whole && length != available) || length <= best_length)
			continue;
		if (router_path_fits(path, &split->segments[split->count - length], length)) {
			best = path;
			best_length = length;
		}
	}
	return best;
}

/*
 * Returns how many leading segments of the path base_path covers, or -1 when
 * the path does not start with base_path at a segment boundary. Empty
 * segments of base_path are skipped, so "/api" and "/api/" are the same.
 */
static int router_skip_base(const struct router_split *split, const char *base_path)
{
	const char *segment = base_path;
	size_t matched = 0;

	while (*segment != '\0') {
		size_t length = strcspn(segment, "/");

		if (length > 0) {
			if (matched == split->count || split->segments[matched].length != length ||
				memcmp(split->segments[matched].text, segment, length) != 0)
				return -1;
			matched++;
		}
		segment += length;
		if (*segment == '/')
			segment++;
	}
	return (int)matched;
}

/*
 * The segment "internal" is reserved for the service-to-service routes, so
 * a user route is never found below it, however deep: neither
 * "/internal/operations/{uuid}" nor "/internal/x/operations/{uuid}" may
 * reach the user's GET. A service route may sit under any mount.
 */
#define ROUTER_RESERVED_PREFIX "internal"

static bool router_under_reserved_prefix(const struct router_path *path,
	const struct router_split *split, size_t start)
{
	size_t first = split->count - router_path_length(path);

	if (strcmp(path->segments[0], ROUTER_RESERVED_PREFIX) == 0)
		return false;
	for (size_t i = start; i < first; i++)
		if (router_segment_is(&split->segments[i], ROUTER_RESERVED_PREFIX))
			return true;
	return false;
}

/* Fills the method and UUID parts of match for the path found. */
static void router_fill_match(const struct router_path *path, const struct router_split *split,
	const char *method, struct route_match *match)
{
	size_t length = router_path_length(path);
	const struct router_segment *first = &split->segments[split->count - length];

	match->route = path->methods[0].route;
	match->allow = path->allow;
	for (size_t i = 0; i < ROUTER_PATH_METHODS && path->methods[i].method != NULL; i++) {
		if (method != NULL && strcmp(method, path->methods[i].method) == 0) {
			match->route = path->methods[i].route;
			match->method_allowed = true;
		}
	}

	for (size_t i = 0; i < length; i++) {
		if (strcmp(path->segments[i], ROUTER_UUID) != 0)
			continue;
		match->has_uuid = true;
		match->uuid_valid = router_parse_uuid_range(first[i].text, first[i].length, match->uuid);
		if (match->uuid_valid)
			uuid_unparse_lower(match->uuid, match->uuid_text);
		else
			memset(match->uuid, 0, sizeof(match->uuid));
	}
}

/*
 * On a path found, route is that path's route even when method_allowed is
 * false, so the request log can name it, and the UUID fields are filled
 * whatever the method.
 */
void router_match(const char *method, const char *script_name, const char *path_info,
	const char *base_path, struct route_match *match)
{
	char path[ROUTER_MAX_PATH];
	struct router_split split;
	const struct router_path *found = NULL;
	size_t start = 0;
	bool whole = false;
	size_t script_length = script_name != NULL ? strlen(script_name) : 0;
	size_t info_length = path_info != NULL ? strlen(path_info) : 0;

	memset(match, 0, sizeof(*match));
	match->route = ROUTE_NONE;
	if (script_length + info_length >= sizeof(path))
		return;
	memcpy(path, script_name != NULL ? script_name : "", script_length);
	memcpy(path + script_length, path_info != NULL ? path_info : "", info_length);
	path[script_length + info_length] = '\0';
	if (router_split_path(path, &split) < 0)
		return;

	if (base_path != NULL && base_path[0] != '\0') {
		int covered = router_skip_base(&split, base_path);

		if (covered < 0)
			return;
		start = (size_t)covered;
		whole = true;
	}

	found = router_find_path(&split, start, whole);
	if (found != NULL && !router_under_reserved_prefix(found, &split, start))
		router_fill_match(found, &split, method, match);
}
