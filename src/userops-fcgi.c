/* userops-fcgi: the FastCGI responder, one worker on fd 0 or a supervised pool of workers. */
#include "autoconfig.h"

#include <mysql.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "cli.h"
#include "config.h"
#include "db.h"
#include "handlers.h"
#include "log.h"
#include "pool.h"
#include "response.h"
#include "transport.h"

static const char fcgi_usage[] =
	"Usage: userops-fcgi [-c FILE] [-t]\n"
	"Answers the userops API over FastCGI: as one worker on the socket inherited\n"
	"on fd 0, or as a pool of workers on [server] listen or a socket passed by\n"
	"systemd (SIGHUP reloads the configuration, SIGTERM drains and stops).\n"
	"\n"
	"  -c FILE     configuration file (default " CONFIG_DEFAULT_PATH ")\n"
	"  -t          check the configuration and secrets, then exit\n"
	"  --help      show this help\n"
	"  --version   show the version\n";

/*
 * Percent-encodes a log value's spaces, control and non-ASCII bytes, '%',
 * '"' and '=', so the line stays one set of key=value pairs whatever the
 * client sent and the original value can still be recovered and searched.
 */
static void fcgi_log_value(char *out, size_t out_size, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t used = 0;

	if (value == NULL || value[0] == '\0')
		value = "-";
	for (; *value != '\0' && used + 4 <= out_size; value++) {
		unsigned char c = (unsigned char)*value;

		if (c <= ' ' || c > '~' || c == '%' || c == '"' || c == '=') {
			out[used++] = '%';
			out[used++] = hex[c >> 4];
			out[used++] = hex[c & 0x0f];
		} else {
			out[used++] = (char)c;
		}
	}
	out[used] = '\0';
}

static void fcgi_handle(void *context, struct request *req, struct response *resp)
{
	const struct handlers_app *app = context;
	struct handlers_log entry;
	struct timespec start, end;
	char method[48], user[3 * AUTH_USER_ID_MAX + 1];
	long tenths;

	memset(&entry, 0, sizeof(entry));
	clock_gettime(CLOCK_MONOTONIC, &start);
	handlers_dispatch(app, req, resp, &entry);
	clock_gettime(CLOCK_MONOTONIC, &end);

	fcgi_log_value(method, sizeof(method), req->method);
	fcgi_log_value(user, sizeof(user), entry.user_id);
	/* Tenths of a millisecond, printed without floating point, which costs more to format. */
	tenths = (long)(((int64_t)(end.tv_sec - start.tv_sec) * 1000000000 +
		(end.tv_nsec - start.tv_nsec)) / 100000);
	log_info("request method=%s route=%s status=%d code=%d duration_ms=%ld.%ld request_id=%s "
		"user=%s operation=%s", method, entry.route != NULL ? entry.route : "none",
		resp->status, resp->error_code, tenths / 10, tenths % 10,
		req->request_id, user, entry.uuid[0] != '\0' ? entry.uuid : "-");
}

static const char fcgi_program[] = "userops-fcgi";

/* Everything one worker loads at its start. */
struct fcgi_state {
	struct config cfg;
	struct cli_secrets secrets;
	struct handlers_app app;
};

/* Loads the configuration, the secrets and the keys; exits 1 with a message on error. */
static void fcgi_load(const char *config_path, struct fcgi_state *state)
{
	struct cli_options options = { .config_path = config_path };
	struct config *cfg = &state->cfg;
	struct handlers_app *app = &state->app;
	char err[512];

	cli_load_config(fcgi_program, &options, cfg);
	cli_load_secrets(fcgi_program, cfg, &state->secrets);

	memset(app, 0, sizeof(*app));
	app->cfg = cfg;
	if (auth_keys_load(&cfg->auth, &app->auth, err, sizeof(err)) != 0)
		cli_fail(fcgi_program, "[auth] %s", err);
	if (cfg->internal.audience[0] != '\0') {
		if (auth_keys_load(&cfg->internal, &app->internal_auth, err, sizeof(err)) != 0)
			cli_fail(fcgi_program, "[internal] %s", err);
		/* A service token must never pass as a user's, even with a shared secret. */
		if (auth_keys_exclude_audience(app->auth, cfg->internal.audience) != 0)
			cli_fail(fcgi_program, "out of memory");
	}
	app->ops.db = db_create(&cfg->database, err, sizeof(err));
	if (app->ops.db == NULL)
		cli_fail(fcgi_program, "[database] %s", err);
	app->ops.cfg = cfg;
	app->ops.pepper = state->secrets.pepper;
	app->ops.seal = state->secrets.seal;
}

static void fcgi_free(struct fcgi_state *state)
{
	db_destroy(state->app.ops.db);
	auth_keys_free(state->app.auth);
	auth_keys_free(state->app.internal_auth);
	cli_free_secrets(&state->secrets);
	config_free(&state->cfg);
}

/* Serves listen_fd with a loaded state; returns the exit status. */
static int fcgi_serve(struct fcgi_state *state, int listen_fd, long max_requests)
{
	int rc;

	/* The client library is initialised once, before any connection is made. */
	mysql_library_init(0, NULL, NULL);
	log_info("starting version=%s config=%s internal_routes=%s", PACKAGE_VERSION,
		state->cfg.path, state->app.internal_auth != NULL ? "on" : "off");
	rc = transport_serve(listen_fd, max_requests, fcgi_handle, &state->app) == 0 ? 0 : 1;
	log_info("stopped");
	mysql_library_end();
	return rc;
}

/* One pool worker, in the child the supervisor forked: see pool_worker_main. */
static int fcgi_pool_worker(void *context, const char *config_path, int listen_fd,
	long max_requests)
{
	struct fcgi_state state;
	int rc;

	(void)context;
	memset(&state, 0, sizeof(state));
	fcgi_load(config_path, &state);
	pool_worker_ready();
	rc = fcgi_serve(&state, listen_fd, max_requests);
	fcgi_free(&state);
	return rc;
}

int main(int argc, char **argv)
{
	struct cli_options options;
	struct fcgi_state state;
	int rc;

	cli_parse(argc, argv, fcgi_program, fcgi_usage, &options);
	if (options.arg_index != argc)
		cli_fail(fcgi_program, "unexpected argument %s; see --help", argv[options.arg_index]);
	memset(&state, 0, sizeof(state));
	/* Every mode checks everything first, so a bad start stops here with one line. */
	fcgi_load(options.config_path, &state);

	if (options.check_only) {
		printf("%s: configuration %s is valid\n", fcgi_program, options.config_path);
		rc = 0;
	} else if (pool_socket_activated() || state.cfg.server.listen[0] != '\0') {
		/* The supervisor keeps no secrets: each worker loads its own after fork. */
		db_destroy(state.app.ops.db);
		state.app.ops.db = NULL;
		auth_keys_free(state.app.auth);
		state.app.auth = NULL;
		auth_keys_free(state.app.internal_auth);
		state.app.internal_auth = NULL;
		cli_free_secrets(&state.secrets);
		rc = pool_run(&state.cfg, fcgi_pool_worker, NULL) == 0 ? 0 : 1;
	} else {
		/* Spawned by a front end, which replaces the worker itself: no max_requests here. */
		rc = fcgi_serve(&state, 0, 0);
	}
	fcgi_free(&state);
	return rc;
}
