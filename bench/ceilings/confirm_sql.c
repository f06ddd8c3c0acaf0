/*
 * confirm_sql: the stack ceiling. A libfcgi responder that, for
 * PUT .../operations/{uuid}/confirm, runs the SQL of a userops confirm and
 * nothing else: no JSON parsing, no token, no Fingerprint hash, no code HMAC.
 *
 * Behind the same lighttpd with the same workers and the same MariaDB as
 * userops-fcgi, its requests per second bound what userops' confirm can
 * reach on that stack. The gap between the two is what userops spends in
 * its own code per request.
 *
 * The statements, in one transaction on one connection per worker, as
 * MariaDB 10.11's general log showed them for a userops confirm of a
 * pending e-mail operation with the right code (userops 0.1.0, commit
 * b550c20; the event sequence's locking SELECT and UPDATE became the one
 * UPDATE below later, in userops and here alike). Every statement but START
 * TRANSACTION and COMMIT is a prepared statement, prepared once per
 * connection:
 *
 *   START TRANSACTION
 *   SELECT uuid, user_id, kind, locale, params, fingerprint_sha256, email,
 *          email_factor, otp_factor, status, created_at, expires_at,
 *          finished_at, wrong_attempts, resends, last_mail_at, code_hmac,
 *          previous_code_hmac
 *     FROM operations WHERE uuid = ? FOR UPDATE
 *   UPDATE operations SET status = ?, finished_at = ?, wrong_attempts = ?,
 *          resends = ?, last_mail_at = ?, code_hmac = ?, previous_code_hmac = ?
 *    WHERE uuid = ?
 *   INSERT INTO audit_log (at_ms, operation_uuid, user_id, event,
 *          fingerprint_sha256, client_address, request_id, detail)
 *          VALUES (?, ?, ?, ?, ?, ?, ?, ?)
 *   UPDATE event_sequence SET last_id = LAST_INSERT_ID(last_id + 1)
 *    WHERE id = 1
 *   INSERT INTO operation_events (id, operation_uuid, user_id, kind, status,
 *          at, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)
 *   COMMIT
 *
 * Each connection starts with userops' session settings: SET SESSION
 * TRANSACTION ISOLATION LEVEL READ COMMITTED, SET SESSION
 * innodb_lock_wait_timeout = 10, SET SESSION autocommit = 1.
 *
 * The values written are userops' for that confirm: status 'confirmed', the
 * row's own counters and hashes back, the row's fingerprint_sha256 in the
 * audit row, and the current time. On success it sends the same bytes as
 * noop and userops. A uuid that is missing or not pending gets userops'
 * error code (404001, 409001 to 409003, 410001) after a rollback. Unlike
 * userops, it does not write the expiry of a pending operation past
 * expires_at. A database error gets 503001. GET .../health pings the
 * database as userops' health check does.
 *
 * Settings come from the environment: USEROPS_BENCH_DB_SOCKET (required),
 * USEROPS_BENCH_DB_NAME and USEROPS_BENCH_DB_USER (default userops) and
 * USEROPS_BENCH_DB_PASSWORD_FILE (optional). lighttpd 1.4.69 passed its
 * own environment to a bin-path program when no "bin-copy-environment" was
 * set; "bin-environment" sets the variables explicitly.
 *
 * Run: as a lighttpd bin-path or with spawn-fcgi -s SOCKET -F WORKERS --
 * /path/to/confirm_sql; both hand over the listening socket on fd 0. Each
 * worker connects at its first request and again after a lost connection.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <mysql.h>

#include "confirm_txn.h"
#include "responder.h"

/* The first errors are logged, then every 1000th, so a dead database cannot flood stderr. */
#define ERROR_LOG_FIRST 10
#define ERROR_LOG_EVERY 1000

struct confirm_sql_state {
	struct confirm_settings settings;
	struct confirm_connection *conn;   /* NULL until connected, and after a lost connection */
	unsigned long long errors;
};

static void confirm_sql_log_error(struct confirm_sql_state *state, const char *what,
	const char *uuid_text, const char *request_id, const char *reason)
{
	state->errors++;
	if (state->errors > ERROR_LOG_FIRST && state->errors % ERROR_LOG_EVERY != 0)
		return;
	fprintf(stderr, "confirm_sql[%ld]: %s failed: %s operation=%s request_id=%s errors=%llu\n",
		(long)getpid(), what, reason, uuid_text, request_id, state->errors);
}

/* Opens the connection when there is none; returns false with the error logged. */
static bool confirm_sql_connect(struct confirm_sql_state *state, const char *uuid_text,
	const char *request_id)
{
	char err[512];

	if (state->conn != NULL)
		return true;
	state->conn = confirm_connect(&state->settings, err, sizeof(err));
	if (state->conn == NULL) {
		confirm_sql_log_error(state, "connect", uuid_text, request_id, err);
		return false;
	}
	return true;
}

static void confirm_sql_health(struct confirm_sql_state *state, struct responder_request *req)
{
	bool ok = confirm_sql_connect(state, "-", req->request_id) && confirm_ping(state->conn);

	if (!ok && state->conn != NULL) {
		confirm_disconnect(state->conn);
		state->conn = NULL;
	}
	responder_send_health(req, ok);
}

static void confirm_sql_confirm(struct confirm_sql_state *state, struct responder_request *req,
	const char *uuid_text)
{
	unsigned char uuid[16];
	enum confirm_result result;
	char err[512];

	if (!confirm_parse_uuid(uuid_text, uuid)) {
		responder_send_error(req, 400003, "Invalid operation uuid");
		return;
	}
	if (!confirm_sql_connect(state, uuid_text, req->request_id)) {
		responder_send_error(req, 503001, "Database unavailable");
		return;
	}
	result = confirm_run(state->conn, uuid, req->remote_addr, req->request_id, err,
		sizeof(err));
	switch (result) {
	case CONFIRM_OK:
		responder_send_confirmed(req, uuid_text);
		return;
	case CONFIRM_NOT_FOUND:
		responder_send_error(req, 404001, "Operation not found");
		return;
	case CONFIRM_CONFIRMED_BEFORE:
		responder_send_error(req, 409001, "Operation already confirmed");
		return;
	case CONFIRM_CANCELLED:
		responder_send_error(req, 409002, "Operation already cancelled");
		return;
	case CONFIRM_REJECTED:
		responder_send_error(req, 409003, "Operation rejected after too many wrong codes");
		return;
	case CONFIRM_EXPIRED:
		responder_send_error(req, 410001, "Operation expired");
		return;
	case CONFIRM_CONNECTION_LOST:
		confirm_disconnect(state->conn);
		state->conn = NULL;
		break;
	case CONFIRM_FAILED:
		break;
	}
	confirm_sql_log_error(state, "confirm", uuid_text, req->request_id, err);
	responder_send_error(req, 503001, "Database unavailable");
}

static void confirm_sql_handle(void *context, struct responder_request *req)
{
	struct confirm_sql_state *state = context;
	char uuid_text[RESPONDER_UUID_TEXT_LENGTH + 1];
	size_t uri_length = strcspn(req->request_uri, "?");

	if (!responder_read_body(req)) {
		responder_send_error(req, 400001, "Invalid request parameters");
		return;
	}
	if (uri_length >= 7 && strncmp(req->request_uri + uri_length - 7, "/health", 7) == 0) {
		confirm_sql_health(state, req);
		return;
	}
	if (strcmp(req->method, "PUT") != 0 || !responder_confirm_uuid(req, uuid_text)) {
		responder_send_error(req, 404002, "No such route");
		return;
	}
	confirm_sql_confirm(state, req, uuid_text);
}

int main(int argc, char **argv)
{
	struct confirm_sql_state state;
	char err[512];
	int rc;

	if (argc > 1) {
		fprintf(stderr, "Usage: %s\n"
			"Runs the SQL of a userops confirm for each PUT .../operations/{uuid}/confirm\n"
			"on the FastCGI socket inherited on fd 0. Start it from lighttpd (bin-path)\n"
			"or spawn-fcgi. Environment: USEROPS_BENCH_DB_SOCKET (required),\n"
			"USEROPS_BENCH_DB_NAME, USEROPS_BENCH_DB_USER (default userops),\n"
			"USEROPS_BENCH_DB_PASSWORD_FILE (optional).\n", argv[0]);
		return strcmp(argv[1], "--help") == 0 ? 0 : 2;
	}
	memset(&state, 0, sizeof(state));
	if (confirm_settings_from_env(&state.settings, err, sizeof(err)) != 0) {
		fprintf(stderr, "confirm_sql: %s\n", err);
		return 1;
	}
	/* The client library is initialised once, before any connection. */
	if (mysql_library_init(0, NULL, NULL) != 0) {
		fprintf(stderr, "confirm_sql: cannot initialise the MariaDB client library\n");
		return 1;
	}
	rc = responder_serve("confirm_sql", confirm_sql_handle, &state);
	confirm_disconnect(state.conn);
	confirm_settings_free(&state.settings);
	mysql_library_end();
	return rc;
}
