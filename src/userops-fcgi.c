/* userops-fcgi: the FastCGI responder, one worker on the socket inherited on fd 0. */
#include "autoconfig.h"

#include <mysql.h>
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
#include "response.h"
#include "transport.h"

static const char fcgi_usage[] =
	"Usage: userops-fcgi [-c FILE] [-t]\n"
	"Answers the userops API over FastCGI on the socket inherited on fd 0.\n"
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

	memset(&entry, 0, sizeof(entry));
	clock_gettime(CLOCK_MONOTONIC, &start);
	handlers_dispatch(app, req, resp, &entry);
	clock_gettime(CLOCK_MONOTONIC, &end);

	fcgi_log_value(method, sizeof(method), req->method);
	fcgi_log_value(user, sizeof(user), entry.user_id);
	log_info("request method=%s route=%s status=%d code=%d duration_ms=%.1f request_id=%s "
		"user=%s operation=%s", method, entry.route != NULL ? entry.route : "none",
		resp->status, resp->error_code,
		(double)(end.tv_sec - start.tv_sec) * 1e3 + (double)(end.tv_nsec - start.tv_nsec) / 1e6,
		req->request_id, user, entry.uuid[0] != '\0' ? entry.uuid : "-");
}

int main(int argc, char **argv)
{
	static const char program[] = "userops-fcgi";
	struct cli_options options;
	struct config cfg;
	struct cli_secrets secrets;
	struct handlers_app app;
	char err[512];
	int rc;

	cli_parse(argc, argv, program, fcgi_usage, &options);
	if (options.arg_index != argc)
		cli_fail(program, "unexpected argument %s; see --help", argv[options.arg_index]);
	cli_load_config(program, &options, &cfg);
	cli_load_secrets(program, &cfg, &secrets);

	memset(&app, 0, sizeof(app));
	app.cfg = &cfg;
	if (auth_keys_load(&cfg.auth, &app.auth, err, sizeof(err)) != 0)
		cli_fail(program, "[auth] %s", err);
	if (cfg.internal.audience[0] != '\0') {
		if (auth_keys_load(&cfg.internal, &app.internal_auth, err, sizeof(err)) != 0)
			cli_fail(program, "[internal] %s", err);
		/* A service token must never pass as a user's, even with a shared secret. */
		if (auth_keys_exclude_audience(app.auth, cfg.internal.audience) != 0)
			cli_fail(program, "out of memory");
	}
	app.ops.db = db_create(&cfg.database, err, sizeof(err));
	if (app.ops.db == NULL)
		cli_fail(program, "[database] %s", err);
	app.ops.cfg = &cfg;
	app.ops.pepper = secrets.pepper;
	app.ops.pepper_len = secrets.pepper_len;
	app.ops.seal = secrets.seal;

	if (options.check_only) {
		printf("%s: configuration %s is valid\n", program, options.config_path);
		rc = 0;
		goto out;
	}

	/* The client library is initialised once, before any connection is made. */
	mysql_library_init(0, NULL, NULL);
	log_info("starting version=%s config=%s internal_routes=%s", PACKAGE_VERSION,
		options.config_path, app.internal_auth != NULL ? "on" : "off");
	rc = transport_serve(fcgi_handle, &app) == 0 ? 0 : 1;
	log_info("stopped");
	mysql_library_end();
out:
	db_destroy(app.ops.db);
	auth_keys_free(app.auth);
	auth_keys_free(app.internal_auth);
	cli_free_secrets(&secrets);
	config_free(&cfg);
	return rc;
}
