/* Unit tests of the router: front-end path splits, methods, base paths and UUIDs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "router.h"

#define UUID_LOWER "0f8fad5b-d9cb-469f-a165-70867728950e"
#define UUID_UPPER "0F8FAD5B-D9CB-469F-A165-70867728950E"

static const unsigned char uuid_bytes[16] = {
	0x0f, 0x8f, 0xad, 0x5b, 0xd9, 0xcb, 0x46, 0x9f,
	0xa1, 0x65, 0x70, 0x86, 0x77, 0x28, 0x95, 0x0e,
};

/* How a front end splits the request path between SCRIPT_NAME and PATH_INFO. */
enum split_kind {
	SPLIT_FIRST_SEGMENT,    /* mount + first segment, then the rest */
	SPLIT_MOUNT,            /* the mount, then the whole path */
	SPLIT_WHOLE,            /* mount and path as SCRIPT_NAME, PATH_INFO not set */
};

struct front_end {
	const char *name;
	const char *mount;      /* "" at the root */
	enum split_kind split;
};

static const struct front_end front_ends[] = {
	{ "lighttpd at /", "", SPLIT_FIRST_SEGMENT },
	{ "lighttpd fix-root-scriptname", "", SPLIT_MOUNT },
	{ "lighttpd at /api/", "/api", SPLIT_FIRST_SEGMENT },
	{ "mod_fcgid at /", "", SPLIT_MOUNT },
	{ "mod_fcgid at /api/", "/api", SPLIT_MOUNT },
	{ "mod_proxy_fcgi", "", SPLIT_WHOLE },
	{ "nginx", "", SPLIT_WHOLE },
};

struct route_case {
	const char *method;
	const char *path;       /* below the mount */
	enum route_id route;
	bool has_uuid;
};

static const struct route_case route_cases[] = {
	{ "GET", "/health", ROUTE_HEALTH, false },
	{ "GET", "/operations/" UUID_LOWER, ROUTE_OPERATION_GET, true },
	{ "PUT", "/operations/" UUID_LOWER "/cancel", ROUTE_OPERATION_CANCEL, true },
	{ "PUT", "/operations/" UUID_LOWER "/confirm", ROUTE_OPERATION_CONFIRM, true },
	{ "PUT", "/operations/" UUID_LOWER "/resend", ROUTE_OPERATION_RESEND, true },
};

/*
 * Splits mount + path as the front end does. PATH_INFO is NULL when the
 * front end sets none.
 */
static void split_path(const struct front_end *front, const char *path, char *script,
	size_t script_size, const char **path_info)
{
	size_t first = strcspn(path + 1, "/") + 1;

	switch (front->split) {
	case SPLIT_FIRST_SEGMENT:
		snprintf(script, script_size, "%s%.*s", front->mount, (int)first, path);
		*path_info = path[first] != '\0' ? path + first : NULL;
		break;
	case SPLIT_MOUNT:
		snprintf(script, script_size, "%s", front->mount);
		*path_info = path;
		break;
	case SPLIT_WHOLE:
		snprintf(script, script_size, "%s%s", front->mount, path);
		*path_info = NULL;
		break;
	}
}

static void check_route(const char *label, const struct route_case *row,
	const struct route_match *match)
{
	if (match->route != row->route)
		fail_msg("%s %s: route %s", label, row->path, router_route_name(match->route));
	if (!match->method_allowed)
		fail_msg("%s %s: method not allowed", label, row->path);
	if (match->has_uuid != row->has_uuid)
		fail_msg("%s %s: has_uuid %d", label, row->path, match->has_uuid);
	if (row->has_uuid && !match->uuid_valid)
		fail_msg("%s %s: uuid not valid", label, row->path);
	if (row->has_uuid && strcmp(match->uuid_text, UUID_LOWER) != 0)
		fail_msg("%s %s: uuid text %s", label, row->path, match->uuid_text);
	if (row->has_uuid && memcmp(match->uuid, uuid_bytes, 16) != 0)
		fail_msg("%s %s: uuid bytes differ", label, row->path);
}

/*
 * Checks one front end's split of one route: without a base path, with the
 * mount as base path (with and without a trailing '/'), and with another
 * base path, which leaves the request outside it.
 */
static void check_front_end(const struct front_end *front, const struct route_case *row)
{
	const char *root = front->mount[0] != '\0' ? front->mount : "/";
	const char *other = front->mount[0] != '\0' ? "/v2" : "/api";
	char script[256];
	char root_slash[64];
	const char *path_info = NULL;
	struct route_match match;

	split_path(front, row->path, script, sizeof(script), &path_info);
	snprintf(root_slash, sizeof(root_slash), "%s/", front->mount);

	router_match(row->method, script, path_info, NULL, &match);
	check_route(front->name, row, &match);
	router_match(row->method, script, path_info, "", &match);
	check_route(front->name, row, &match);
	router_match(row->method, script, path_info, root, &match);
	check_route(front->name, row, &match);
	router_match(row->method, script, path_info, root_slash, &match);
	check_route(front->name, row, &match);

	router_match(row->method, script, path_info, other, &match);
	if (match.route != ROUTE_NONE)
		fail_msg("%s %s base %s: route %s", front->name, row->path, other,
			router_route_name(match.route));
}

static void front_end_splits(void **state)
{
	(void)state;
	for (size_t f = 0; f < sizeof(front_ends) / sizeof(front_ends[0]); f++) {
		for (size_t r = 0; r < sizeof(route_cases) / sizeof(route_cases[0]); r++)
			check_front_end(&front_ends[f], &route_cases[r]);
	}
}

struct match_case {
	const char *method;
	const char *script_name;
	const char *path_info;
	const char *base_path;
	enum route_id route;
	bool method_allowed;
	const char *allow;
	bool has_uuid;
	bool uuid_valid;
};

#define NONE ROUTE_NONE, false, NULL, false, false
#define BAD_UUID(route, allowed, allow) route, allowed, allow, true, false
#define GOOD_UUID(route, allowed, allow) route, allowed, allow, true, true

static const struct match_case match_cases[] = {
	/* Another method on a known path: 405 with Allow. */
	{ "PUT", "/health", NULL, NULL, ROUTE_HEALTH, false, "GET", false, false },
	{ "HEAD", "/health", NULL, NULL, ROUTE_HEALTH, false, "GET", false, false },
	{ "POST", "/operations/" UUID_LOWER, NULL, NULL, GOOD_UUID(ROUTE_OPERATION_GET, false, "GET") },
	{ "GET", "/operations/" UUID_LOWER "/confirm", NULL, NULL,
		GOOD_UUID(ROUTE_OPERATION_CONFIRM, false, "PUT") },
	{ "DELETE", "/operations/" UUID_LOWER "/cancel", NULL, NULL,
		GOOD_UUID(ROUTE_OPERATION_CANCEL, false, "PUT") },
	{ "put", "/operations/" UUID_LOWER "/resend", NULL, NULL,
		GOOD_UUID(ROUTE_OPERATION_RESEND, false, "PUT") },
	{ NULL, "/health", NULL, NULL, ROUTE_HEALTH, false, "GET", false, false },
	{ "PUT", "/operations/nope/confirm", NULL, NULL,
		BAD_UUID(ROUTE_OPERATION_CONFIRM, true, "PUT") },
	{ "GET", "/operations/nope/confirm", NULL, NULL,
		BAD_UUID(ROUTE_OPERATION_CONFIRM, false, "PUT") },

	/* Empty, "." and ".." segments anywhere, and paths that are no route. */
	{ "GET", "/health/", NULL, NULL, NONE },
	{ "GET", "/health", "/", NULL, NONE },
	{ "PUT", "/operations/" UUID_LOWER "/confirm/", NULL, NULL, NONE },
	{ "PUT", "/operations//" UUID_LOWER "/confirm", NULL, NULL, NONE },
	{ "PUT", "//operations/" UUID_LOWER "/confirm", NULL, NULL, NONE },
	{ "GET", "/api//health", NULL, NULL, NONE },
	{ "GET", "/./health", NULL, NULL, NONE },
	{ "GET", "/health/.", NULL, NULL, NONE },
	{ "GET", "/x/../health", NULL, NULL, NONE },
	{ "PUT", "/operations/" UUID_LOWER "/../confirm", NULL, NULL, NONE },
	{ "PUT", "/operations/./" UUID_LOWER "/confirm", NULL, NULL, NONE },
	{ "PUT", "/operations/..", NULL, NULL, NONE },
	{ "GET", "/", NULL, NULL, NONE },
	{ "GET", "", NULL, NULL, NONE },
	{ "GET", NULL, NULL, NULL, NONE },
	{ "GET", "", "", NULL, NONE },
	{ "GET", "health", NULL, NULL, NONE },
	{ "GET", NULL, "health", NULL, NONE },
	{ "GET", "/operations", NULL, NULL, NONE },
	{ "GET", "/operations", "/", NULL, NONE },
	{ "GET", "/Health", NULL, NULL, NONE },
	{ "GET", "/healthz", NULL, NULL, NONE },
	{ "PUT", "/operations/" UUID_LOWER "/approve", NULL, NULL, NONE },
	{ "PUT", "/operation/" UUID_LOWER "/confirm", NULL, NULL, NONE },
	{ "PUT", "/operations/" UUID_LOWER "/Confirm", NULL, NULL, NONE },
	{ "PUT", "/operations/" UUID_LOWER "/confirm/x", NULL, NULL, NONE },

	/* The reserved "internal" segment never leads to a user route. */
	{ "PUT", "/internal/operations/" UUID_LOWER "/confirm", NULL, NULL, NONE },
	{ "PUT", "/internal/operations/" UUID_LOWER "/resend", NULL, NULL, NONE },
	{ "GET", "/api/internal/health", NULL, NULL, NONE },
	{ "GET", "/internal/x/operations/" UUID_LOWER, NULL, NULL, NONE },
	{ "PUT", "/internal/a/b/operations/" UUID_LOWER "/cancel", NULL, NULL, NONE },
	{ "GET", "/api/internal/x/health", NULL, NULL, NONE },

	/* The service routes, which win over the shorter user routes they end with. */
	{ "GET", "/internal/operations/" UUID_LOWER, NULL, NULL,
		GOOD_UUID(ROUTE_INTERNAL_GET, true, "GET") },
	{ "GET", "/internal", "/operations/" UUID_LOWER, NULL,
		GOOD_UUID(ROUTE_INTERNAL_GET, true, "GET") },
	{ "PUT", "/api/internal/operations/" UUID_LOWER "/cancel", NULL, NULL,
		GOOD_UUID(ROUTE_INTERNAL_CANCEL, true, "PUT") },
	{ "GET", "/internal/operations/nope", NULL, NULL,
		BAD_UUID(ROUTE_INTERNAL_GET, true, "GET") },
	{ "POST", "/internal/operations", NULL, NULL, ROUTE_INTERNAL_CREATE, true, "POST", false,
		false },
	{ "GET", "/internal/operations", NULL, NULL, ROUTE_INTERNAL_CREATE, false, "POST", false,
		false },
	{ "GET", "/api/internal/events", NULL, NULL, ROUTE_INTERNAL_EVENTS, true, "GET", false,
		false },
	{ "GET", "/internal/internal/events", NULL, NULL, ROUTE_INTERNAL_EVENTS, true, "GET", false,
		false },

	/* Without a base path the final segments decide, and the longer route wins. */
	{ "GET", "/anything/health", NULL, NULL, ROUTE_HEALTH, true, "GET", false, false },
	{ "GET", "/a/b/c/health", NULL, NULL, ROUTE_HEALTH, true, "GET", false, false },
	{ "PUT", "/api/operations/" UUID_LOWER "/confirm", NULL, NULL,
		GOOD_UUID(ROUTE_OPERATION_CONFIRM, true, "PUT") },
	{ "GET", "/x/operations/health", NULL, NULL, BAD_UUID(ROUTE_OPERATION_GET, true, "GET") },
	{ "GET", "/operations/health", NULL, NULL, BAD_UUID(ROUTE_OPERATION_GET, true, "GET") },
	{ "PUT", "/operations/health/cancel", NULL, NULL,
		BAD_UUID(ROUTE_OPERATION_CANCEL, true, "PUT") },
	{ "PUT", "/operations/operations/confirm", NULL, NULL,
		BAD_UUID(ROUTE_OPERATION_CONFIRM, true, "PUT") },

	/* A base path: the rest must be exactly a route. */
	{ "GET", "/api/health", NULL, "/api", ROUTE_HEALTH, true, "GET", false, false },
	{ "GET", "/api/health", NULL, "/api/", ROUTE_HEALTH, true, "GET", false, false },
	{ "GET", "/api/health", NULL, "api", ROUTE_HEALTH, true, "GET", false, false },
	{ "GET", "/a/b/health", NULL, "/a/b", ROUTE_HEALTH, true, "GET", false, false },
	{ "GET", "/health", NULL, "/", ROUTE_HEALTH, true, "GET", false, false },
	{ "GET", "/health", NULL, "/api", NONE },
	{ "GET", "/apix/health", NULL, "/api", NONE },
	{ "GET", "/ap/health", NULL, "/api", NONE },
	{ "GET", "/API/health", NULL, "/api", NONE },
	{ "GET", "/x/api/health", NULL, "/api", NONE },
	{ "GET", "/api/x/health", NULL, "/api", NONE },
	{ "GET", "/api", NULL, "/api", NONE },
	{ "GET", "/api/", NULL, "/api", NONE },
	{ "GET", "/api/health/", NULL, "/api", NONE },
	{ "GET", "/api/operations/health", NULL, "/api", BAD_UUID(ROUTE_OPERATION_GET, true, "GET") },
	{ "GET", "/x/operations/" UUID_LOWER, NULL, "/x", GOOD_UUID(ROUTE_OPERATION_GET, true, "GET") },
	{ "GET", "/x/y/operations/" UUID_LOWER, NULL, "/x", NONE },
	{ "GET", "/api", "/health", "/api", ROUTE_HEALTH, true, "GET", false, false },
	{ "PUT", "/api/operations", "/" UUID_LOWER "/confirm", "/api/",
		GOOD_UUID(ROUTE_OPERATION_CONFIRM, true, "PUT") },
	{ "POST", "/api/operations/" UUID_LOWER "/resend", NULL, "/api",
		GOOD_UUID(ROUTE_OPERATION_RESEND, false, "PUT") },

	/* UUID syntax: any case, else 400003. */
	{ "GET", "/operations/" UUID_UPPER, NULL, NULL, GOOD_UUID(ROUTE_OPERATION_GET, true, "GET") },
	{ "GET", "/operations/0f8fad5b-d9cb-469f-A165-70867728950E", NULL, NULL,
		GOOD_UUID(ROUTE_OPERATION_GET, true, "GET") },
	{ "GET", "/operations/0f8fad5b-d9cb-469f-a165-70867728950", NULL, NULL,
		BAD_UUID(ROUTE_OPERATION_GET, true, "GET") },
	{ "GET", "/operations/0f8fad5b-d9cb-469f-a165-70867728950e0", NULL, NULL,
		BAD_UUID(ROUTE_OPERATION_GET, true, "GET") },
	{ "GET", "/operations/0f8fad5b-d9cb-469f-a165-70867728950g", NULL, NULL,
		BAD_UUID(ROUTE_OPERATION_GET, true, "GET") },
	{ "GET", "/operations/0f8fad5bd-9cb-469f-a165-70867728950e", NULL, NULL,
		BAD_UUID(ROUTE_OPERATION_GET, true, "GET") },
	{ "GET", "/operations/0f8fad5b-d9cb-469fa-165-70867728950e", NULL, NULL,
		BAD_UUID(ROUTE_OPERATION_GET, true, "GET") },
	{ "GET", "/operations/0f8fad5bd9cb469fa16570867728950e", NULL, NULL,
		BAD_UUID(ROUTE_OPERATION_GET, true, "GET") },
	{ "GET", "/operations/{0f8fad5b-d9cb-469f-a165-70867728950e}", NULL, NULL,
		BAD_UUID(ROUTE_OPERATION_GET, true, "GET") },
	{ "GET", "/operations/ 0f8fad5b-d9cb-469f-a165-70867728950", NULL, NULL,
		BAD_UUID(ROUTE_OPERATION_GET, true, "GET") },
	{ "GET", "/operations/0f8fad5b-d9cb-469f-a165-70867728950\xc3\xa9", NULL, NULL,
		BAD_UUID(ROUTE_OPERATION_GET, true, "GET") },
	{ "GET", "/operations/1", NULL, NULL, BAD_UUID(ROUTE_OPERATION_GET, true, "GET") },
};

static void match_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
		const struct match_case *row = &match_cases[i];
		struct route_match match;

		router_match(row->method, row->script_name, row->path_info, row->base_path, &match);
		if (match.route != row->route)
			fail_msg("row %zu: route %s, expected %s", i, router_route_name(match.route),
				router_route_name(row->route));
		if (match.method_allowed != row->method_allowed)
			fail_msg("row %zu: method_allowed %d", i, match.method_allowed);
		if ((row->allow == NULL) != (match.allow == NULL) ||
			(row->allow != NULL && strcmp(match.allow, row->allow) != 0))
			fail_msg("row %zu: allow %s, expected %s", i, match.allow ? match.allow : "(null)",
				row->allow ? row->allow : "(null)");
		if (match.has_uuid != row->has_uuid)
			fail_msg("row %zu: has_uuid %d", i, match.has_uuid);
		if (match.uuid_valid != row->uuid_valid)
			fail_msg("row %zu: uuid_valid %d", i, match.uuid_valid);
		if (row->uuid_valid && strcmp(match.uuid_text, UUID_LOWER) != 0)
			fail_msg("row %zu: uuid text %s", i, match.uuid_text);
		if (!row->uuid_valid && match.uuid_text[0] != '\0')
			fail_msg("row %zu: uuid text set for an invalid uuid", i);
	}
}

static void parse_uuid_any_case(void **state)
{
	unsigned char uuid[16];

	(void)state;
	assert_true(router_parse_uuid(UUID_LOWER, uuid));
	assert_memory_equal(uuid, uuid_bytes, 16);
	assert_true(router_parse_uuid(UUID_UPPER, uuid));
	assert_memory_equal(uuid, uuid_bytes, 16);
	assert_false(router_parse_uuid("", uuid));
	assert_false(router_parse_uuid(NULL, uuid));
	assert_false(router_parse_uuid(UUID_LOWER " ", uuid));
	assert_false(router_parse_uuid("0f8fad5b-d9cb-469f-a165_70867728950e", uuid));
}

static void path_too_long(void **state)
{
	char script[9000];
	struct route_match match;

	(void)state;
	memset(script, 'a', sizeof(script));
	script[0] = '/';
	memcpy(script + sizeof(script) - 8, "/health", 8);
	router_match("GET", script, NULL, NULL, &match);
	assert_int_equal(match.route, ROUTE_NONE);
}

static void path_segment_limit(void **state)
{
	char script[512] = "";
	struct route_match match;

	(void)state;
	for (int i = 0; i < 63; i++)
		strcat(script, "/a");
	strcat(script, "/health");
	router_match("GET", script, NULL, NULL, &match);
	assert_int_equal(match.route, ROUTE_HEALTH);

	strcat(script, "/health");
	router_match("GET", script, NULL, NULL, &match);
	assert_int_equal(match.route, ROUTE_NONE);
}

static void route_names(void **state)
{
	(void)state;
	assert_string_equal(router_route_name(ROUTE_NONE), "none");
	assert_string_equal(router_route_name(ROUTE_HEALTH), "health");
	assert_string_equal(router_route_name(ROUTE_OPERATION_GET), "get");
	assert_string_equal(router_route_name(ROUTE_OPERATION_CANCEL), "cancel");
	assert_string_equal(router_route_name(ROUTE_OPERATION_CONFIRM), "confirm");
	assert_string_equal(router_route_name(ROUTE_OPERATION_RESEND), "resend");
	assert_string_equal(router_route_name((enum route_id)99), "none");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(front_end_splits),
		cmocka_unit_test(match_table),
		cmocka_unit_test(parse_uuid_any_case),
		cmocka_unit_test(path_too_long),
		cmocka_unit_test(path_segment_limit),
		cmocka_unit_test(route_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
