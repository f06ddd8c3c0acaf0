/*
 * The SQL transaction of a successful userops confirm, on one MariaDB
 * connection with prepared statements. The statement texts, the parameter
 * types and the values written are those of userops' src/store.c and
 * src/operations.c for a pending e-mail operation confirmed with the right
 * code, so the server does the same work. The work userops does in C
 * between the statements (token, Fingerprint hash, code HMAC) is left out.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>

#include "confirm_txn.h"

/* Seconds, as userops' db.c sets them: a hung server costs a connection this long. */
#define CONFIRM_CONNECT_TIMEOUT 5
#define CONFIRM_IO_TIMEOUT 30

/* Columns of the operations row, in the order of confirm_sql_select. */
enum {
	COLUMN_UUID,
	COLUMN_USER_ID,
	COLUMN_KIND,
	COLUMN_LOCALE,
	COLUMN_PARAMS,
	COLUMN_FINGERPRINT_SHA256,
	COLUMN_EMAIL,
	COLUMN_EMAIL_FACTOR,
	COLUMN_OTP_FACTOR,
	COLUMN_STATUS,
	COLUMN_CREATED_AT,
	COLUMN_EXPIRES_AT,
	COLUMN_FINISHED_AT,
	COLUMN_WRONG_ATTEMPTS,
	COLUMN_RESENDS,
	COLUMN_LAST_MAIL_AT,
	COLUMN_CODE_HMAC,
	COLUMN_PREVIOUS_CODE_HMAC,
	COLUMN_COUNT
};

static const char confirm_sql_select[] =
	"SELECT uuid, user_id, kind, locale, params, fingerprint_sha256, email, email_factor,"
	" otp_factor, status, created_at, expires_at, finished_at, wrong_attempts, resends,"
	" last_mail_at, code_hmac, previous_code_hmac"
	" FROM operations WHERE uuid = ? FOR UPDATE";

static const char confirm_sql_update[] =
	"UPDATE operations SET status = ?, finished_at = ?, wrong_attempts = ?, resends = ?,"
	" last_mail_at = ?, code_hmac = ?, previous_code_hmac = ? WHERE uuid = ?";

static const char confirm_sql_audit[] =
	"INSERT INTO audit_log (at_ms, operation_uuid, user_id, event, fingerprint_sha256,"
	" client_address, request_id, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)";

static const char confirm_sql_sequence_advance[] =
	"UPDATE event_sequence SET last_id = LAST_INSERT_ID(last_id + 1) WHERE id = 1";

static const char confirm_sql_event[] =
	"INSERT INTO operation_events (id, operation_uuid, user_id, kind, status, at, created_at_ms)"
	" VALUES (?, ?, ?, ?, ?, ?, ?)";

/* The operations row as userops' store_operation_read fetches it, with the same buffer sizes. */
struct confirm_row {
	unsigned char uuid[16];
	char user_id[256];
	char kind[65];
	char locale[17];
	char params[65536];
	unsigned char fingerprint_sha256[32];
	char email[321];
	signed char email_factor;
	signed char otp_factor;
	char status[16];
	long long created_at;
	long long expires_at;
	long long finished_at;
	unsigned int wrong_attempts;
	unsigned int resends;
	long long last_mail_at;
	unsigned char code_hmac[32];
	unsigned char previous_code_hmac[32];
	unsigned long length[COLUMN_COUNT];
	my_bool is_null[COLUMN_COUNT];
	my_bool error[COLUMN_COUNT];
};

struct confirm_connection {
	MYSQL *mysql;
	MYSQL_STMT *select;
	MYSQL_STMT *update;
	MYSQL_STMT *audit;
	MYSQL_STMT *sequence_advance;
	MYSQL_STMT *event;
	struct confirm_row row;
};

int confirm_settings_from_env(struct confirm_settings *settings, char *err, size_t err_size)
{
	const char *password_file = getenv("USEROPS_BENCH_DB_PASSWORD_FILE");
	char line[512];
	FILE *file;

	memset(settings, 0, sizeof(*settings));
	settings->socket = getenv("USEROPS_BENCH_DB_SOCKET");
	settings->name = getenv("USEROPS_BENCH_DB_NAME");
	settings->user = getenv("USEROPS_BENCH_DB_USER");
	if (settings->socket == NULL || settings->socket[0] == '\0') {
		snprintf(err, err_size, "USEROPS_BENCH_DB_SOCKET is missing; set it to the "
			"MariaDB server's Unix socket path");
		return -1;
	}
	if (settings->name == NULL || settings->name[0] == '\0')
		settings->name = "userops";
	if (settings->user == NULL || settings->user[0] == '\0')
		settings->user = "userops";
	if (password_file == NULL || password_file[0] == '\0')
		return 0;

	file = fopen(password_file, "r");
	if (file == NULL) {
		snprintf(err, err_size, "cannot open USEROPS_BENCH_DB_PASSWORD_FILE %s: %s",
			password_file, strerror(errno));
		return -1;
	}
	if (fgets(line, sizeof(line), file) == NULL)
		line[0] = '\0';
	fclose(file);
	line[strcspn(line, "\r\n")] = '\0';
	settings->password = strdup(line);
	memset(line, 0, sizeof(line));
	if (settings->password == NULL) {
		snprintf(err, err_size, "cannot copy the database password: out of memory");
		return -1;
	}
	return 0;
}

void confirm_settings_free(struct confirm_settings *settings)
{
	if (settings->password != NULL) {
		memset(settings->password, 0, strlen(settings->password));
		free(settings->password);
	}
	settings->password = NULL;
}

/* Prepares sql into *stmt; returns false with the reason in err. */
static bool confirm_prepare(MYSQL *mysql, const char *sql, MYSQL_STMT **stmt, char *err,
	size_t err_size)
{
	*stmt = mysql_stmt_init(mysql);
	if (*stmt == NULL) {
		snprintf(err, err_size, "cannot allocate a statement: %s", mysql_error(mysql));
		return false;
	}
	if (mysql_stmt_prepare(*stmt, sql, strlen(sql)) != 0) {
		snprintf(err, err_size, "cannot prepare \"%s\": %s (error %u)", sql,
			mysql_stmt_error(*stmt), mysql_stmt_errno(*stmt));
		return false;
	}
	return true;
}

struct confirm_connection *confirm_connect(const struct confirm_settings *settings, char *err,
	size_t err_size)
{
	struct confirm_connection *conn;
	unsigned int connect_timeout = CONFIRM_CONNECT_TIMEOUT;
	unsigned int io_timeout = CONFIRM_IO_TIMEOUT;
	my_bool reconnect = 0;

	conn = calloc(1, sizeof(*conn));
	if (conn == NULL) {
		snprintf(err, err_size, "cannot allocate a connection: out of memory");
		return NULL;
	}
	conn->mysql = mysql_init(NULL);
	if (conn->mysql == NULL) {
		snprintf(err, err_size, "cannot allocate a MariaDB handle");
		free(conn);
		return NULL;
	}
	mysql_options(conn->mysql, MYSQL_OPT_CONNECT_TIMEOUT, &connect_timeout);
	mysql_options(conn->mysql, MYSQL_OPT_READ_TIMEOUT, &io_timeout);
	mysql_options(conn->mysql, MYSQL_OPT_WRITE_TIMEOUT, &io_timeout);
	mysql_options(conn->mysql, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	mysql_options(conn->mysql, MYSQL_OPT_RECONNECT, &reconnect);
	mysql_options(conn->mysql, MYSQL_INIT_COMMAND,
		"SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED");
	mysql_options(conn->mysql, MYSQL_INIT_COMMAND, "SET SESSION innodb_lock_wait_timeout = 10");
	mysql_options(conn->mysql, MYSQL_INIT_COMMAND, "SET SESSION autocommit = 1");

	if (mysql_real_connect(conn->mysql, "localhost", settings->user, settings->password,
			settings->name, 0, settings->socket, CLIENT_FOUND_ROWS) == NULL) {
		snprintf(err, err_size, "cannot connect to database %s at %s as %s: %s (error %u)",
			settings->name, settings->socket, settings->user, mysql_error(conn->mysql),
			mysql_errno(conn->mysql));
		confirm_disconnect(conn);
		return NULL;
	}
	if (!confirm_prepare(conn->mysql, confirm_sql_select, &conn->select, err, err_size) ||
	    !confirm_prepare(conn->mysql, confirm_sql_update, &conn->update, err, err_size) ||
	    !confirm_prepare(conn->mysql, confirm_sql_audit, &conn->audit, err, err_size) ||
	    !confirm_prepare(conn->mysql, confirm_sql_sequence_advance, &conn->sequence_advance,
		    err, err_size) ||
	    !confirm_prepare(conn->mysql, confirm_sql_event, &conn->event, err, err_size)) {
		confirm_disconnect(conn);
		return NULL;
	}
	return conn;
}

void confirm_disconnect(struct confirm_connection *conn)
{
	MYSQL_STMT *statements[5];
	size_t i;

	if (conn == NULL)
		return;
	statements[0] = conn->select;
	statements[1] = conn->update;
	statements[2] = conn->audit;
	statements[3] = conn->sequence_advance;
	statements[4] = conn->event;
	for (i = 0; i < sizeof(statements) / sizeof(statements[0]); i++)
		if (statements[i] != NULL)
			mysql_stmt_close(statements[i]);
	if (conn->mysql != NULL)
		mysql_close(conn->mysql);
	free(conn);
}

bool confirm_ping(struct confirm_connection *conn)
{
	return mysql_ping(conn->mysql) == 0;
}

/* True for the client errors after which the connection can no longer be used, as in db.c. */
static bool confirm_error_is_connection(unsigned int code)
{
	switch (code) {
	case CR_SERVER_GONE_ERROR:
	case CR_SERVER_LOST:
	case CR_CONNECTION_ERROR:
	case CR_CONN_HOST_ERROR:
	case CR_UNKNOWN_HOST:
	case CR_SERVER_LOST_EXTENDED:
	case CR_COMMANDS_OUT_OF_SYNC:
	case ER_CONNECTION_KILLED:
	case ER_SERVER_SHUTDOWN:
		return true;
	default:
		return false;
	}
}

/*
 * Describes the error of stmt (or of the connection when stmt is NULL) on
 * step in err, rolls back when the connection is still usable and returns
 * the result for the caller.
 */
static enum confirm_result confirm_fail(struct confirm_connection *conn, MYSQL_STMT *stmt,
	const char *step, char *err, size_t err_size)
{
	unsigned int code = stmt != NULL ? mysql_stmt_errno(stmt) : 0;
	const char *message = stmt != NULL ? mysql_stmt_error(stmt) : "";

	if (code == 0) {
		code = mysql_errno(conn->mysql);
		message = mysql_error(conn->mysql);
	}
	snprintf(err, err_size, "%s failed: %s (error %u)", step, message, code);
	if (confirm_error_is_connection(code))
		return CONFIRM_CONNECTION_LOST;
	if (mysql_rollback(conn->mysql) != 0 && confirm_error_is_connection(mysql_errno(conn->mysql)))
		return CONFIRM_CONNECTION_LOST;
	return CONFIRM_FAILED;
}

/* Ends the transaction without a change and returns result, with why in err. */
static enum confirm_result confirm_give_up(struct confirm_connection *conn,
	enum confirm_result result, const char *why, char *err, size_t err_size)
{
	snprintf(err, err_size, "%s", why);
	if (mysql_rollback(conn->mysql) != 0)
		return confirm_fail(conn, NULL, "rollback", err, err_size);
	return result;
}

static void confirm_bind_blob(MYSQL_BIND *bind, const void *data, size_t len)
{
	if (data == NULL) {
		bind->buffer_type = MYSQL_TYPE_NULL;
		return;
	}
	bind->buffer_type = MYSQL_TYPE_BLOB;
	bind->buffer = (void *)data;
	bind->buffer_length = (unsigned long)len;
}

static void confirm_bind_text(MYSQL_BIND *bind, const char *text)
{
	if (text == NULL) {
		bind->buffer_type = MYSQL_TYPE_NULL;
		return;
	}
	bind->buffer_type = MYSQL_TYPE_STRING;
	bind->buffer = (void *)text;
	bind->buffer_length = (unsigned long)strlen(text);
}

static void confirm_bind_int64(MYSQL_BIND *bind, const long long *value)
{
	bind->buffer_type = MYSQL_TYPE_LONGLONG;
	bind->buffer = (void *)value;
}

static void confirm_bind_uint64(MYSQL_BIND *bind, const unsigned long long *value)
{
	bind->buffer_type = MYSQL_TYPE_LONGLONG;
	bind->buffer = (void *)value;
	bind->is_unsigned = 1;
}

/* Binds result column index of row into buf of size bytes. */
static void confirm_bind_column(MYSQL_BIND *results, struct confirm_row *row, size_t index,
	enum enum_field_types type, void *buf, size_t size)
{
	results[index].buffer_type = type;
	results[index].buffer = buf;
	results[index].buffer_length = (unsigned long)size;
	results[index].length = &row->length[index];
	results[index].is_null = &row->is_null[index];
	results[index].error = &row->error[index];
}

static void confirm_bind_row(MYSQL_BIND *r, struct confirm_row *row)
{
	confirm_bind_column(r, row, COLUMN_UUID, MYSQL_TYPE_BLOB, row->uuid, sizeof(row->uuid));
	confirm_bind_column(r, row, COLUMN_USER_ID, MYSQL_TYPE_STRING, row->user_id,
		sizeof(row->user_id));
	confirm_bind_column(r, row, COLUMN_KIND, MYSQL_TYPE_STRING, row->kind, sizeof(row->kind));
	confirm_bind_column(r, row, COLUMN_LOCALE, MYSQL_TYPE_STRING, row->locale,
		sizeof(row->locale));
	confirm_bind_column(r, row, COLUMN_PARAMS, MYSQL_TYPE_STRING, row->params,
		sizeof(row->params));
	confirm_bind_column(r, row, COLUMN_FINGERPRINT_SHA256, MYSQL_TYPE_BLOB,
		row->fingerprint_sha256, sizeof(row->fingerprint_sha256));
	confirm_bind_column(r, row, COLUMN_EMAIL, MYSQL_TYPE_STRING, row->email, sizeof(row->email));
	confirm_bind_column(r, row, COLUMN_EMAIL_FACTOR, MYSQL_TYPE_TINY, &row->email_factor,
		sizeof(row->email_factor));
	confirm_bind_column(r, row, COLUMN_OTP_FACTOR, MYSQL_TYPE_TINY, &row->otp_factor,
		sizeof(row->otp_factor));
	confirm_bind_column(r, row, COLUMN_STATUS, MYSQL_TYPE_STRING, row->status,
		sizeof(row->status));
	confirm_bind_column(r, row, COLUMN_CREATED_AT, MYSQL_TYPE_LONGLONG, &row->created_at,
		sizeof(row->created_at));
	confirm_bind_column(r, row, COLUMN_EXPIRES_AT, MYSQL_TYPE_LONGLONG, &row->expires_at,
		sizeof(row->expires_at));
	confirm_bind_column(r, row, COLUMN_FINISHED_AT, MYSQL_TYPE_LONGLONG, &row->finished_at,
		sizeof(row->finished_at));
	confirm_bind_column(r, row, COLUMN_WRONG_ATTEMPTS, MYSQL_TYPE_LONG, &row->wrong_attempts,
		sizeof(row->wrong_attempts));
	r[COLUMN_WRONG_ATTEMPTS].is_unsigned = 1;
	confirm_bind_column(r, row, COLUMN_RESENDS, MYSQL_TYPE_LONG, &row->resends,
		sizeof(row->resends));
	r[COLUMN_RESENDS].is_unsigned = 1;
	confirm_bind_column(r, row, COLUMN_LAST_MAIL_AT, MYSQL_TYPE_LONGLONG, &row->last_mail_at,
		sizeof(row->last_mail_at));
	confirm_bind_column(r, row, COLUMN_CODE_HMAC, MYSQL_TYPE_BLOB, row->code_hmac,
		sizeof(row->code_hmac));
	confirm_bind_column(r, row, COLUMN_PREVIOUS_CODE_HMAC, MYSQL_TYPE_BLOB,
		row->previous_code_hmac, sizeof(row->previous_code_hmac));
}

/*
 * Locks and reads the operations row into conn->row and NUL-terminates the
 * text columns it uses. Returns CONFIRM_OK or the failure.
 */
static enum confirm_result confirm_read_row(struct confirm_connection *conn,
	const unsigned char uuid[16], char *err, size_t err_size)
{
	struct confirm_row *row = &conn->row;
	MYSQL_BIND params[1];
	MYSQL_BIND results[COLUMN_COUNT];
	int rc;

	memset(params, 0, sizeof(params));
	memset(results, 0, sizeof(results));
	confirm_bind_blob(&params[0], uuid, 16);
	if (mysql_stmt_bind_param(conn->select, params) != 0 ||
	    mysql_stmt_execute(conn->select) != 0)
		return confirm_fail(conn, conn->select, "SELECT ... FOR UPDATE", err, err_size);
	confirm_bind_row(results, row);
	if (mysql_stmt_bind_result(conn->select, results) != 0 ||
	    mysql_stmt_store_result(conn->select) != 0)
		return confirm_fail(conn, conn->select, "SELECT ... FOR UPDATE", err, err_size);
	rc = mysql_stmt_fetch(conn->select);
	mysql_stmt_free_result(conn->select);
	if (rc == MYSQL_NO_DATA)
		return confirm_give_up(conn, CONFIRM_NOT_FOUND, "no operation has this uuid", err,
			err_size);
	if (rc == MYSQL_DATA_TRUNCATED)
		return confirm_give_up(conn, CONFIRM_FAILED, "a column of the operations row is "
			"longer than userops allows", err, err_size);
	if (rc != 0)
		return confirm_fail(conn, conn->select, "fetching the operations row", err, err_size);

	/* No column was truncated, so each length is below its buffer's size. */
	row->user_id[row->is_null[COLUMN_USER_ID] ? 0 : row->length[COLUMN_USER_ID]] = '\0';
	row->kind[row->is_null[COLUMN_KIND] ? 0 : row->length[COLUMN_KIND]] = '\0';
	row->status[row->is_null[COLUMN_STATUS] ? 0 : row->length[COLUMN_STATUS]] = '\0';
	if (row->length[COLUMN_FINGERPRINT_SHA256] != 32 ||
	    (!row->is_null[COLUMN_CODE_HMAC] && row->length[COLUMN_CODE_HMAC] != 32) ||
	    (!row->is_null[COLUMN_PREVIOUS_CODE_HMAC] &&
	     row->length[COLUMN_PREVIOUS_CODE_HMAC] != 32))
		return confirm_give_up(conn, CONFIRM_FAILED, "a hash column of the operations row "
			"is not 32 bytes long", err, err_size);
	return CONFIRM_OK;
}

/* Writes the confirmed state and the row's other columns back unchanged. */
static enum confirm_result confirm_update_row(struct confirm_connection *conn,
	const unsigned char uuid[16], long long finished_at, char *err, size_t err_size)
{
	const struct confirm_row *row = &conn->row;
	long long wrong_attempts = row->wrong_attempts;
	long long resends = row->resends;
	long long last_mail_at = row->last_mail_at;
	MYSQL_BIND p[8];

	memset(p, 0, sizeof(p));
	confirm_bind_text(&p[0], "confirmed");
	confirm_bind_int64(&p[1], &finished_at);
	confirm_bind_int64(&p[2], &wrong_attempts);
	confirm_bind_int64(&p[3], &resends);
	if (row->is_null[COLUMN_LAST_MAIL_AT])
		p[4].buffer_type = MYSQL_TYPE_NULL;
	else
		confirm_bind_int64(&p[4], &last_mail_at);
	confirm_bind_blob(&p[5], row->is_null[COLUMN_CODE_HMAC] ? NULL : row->code_hmac, 32);
	confirm_bind_blob(&p[6],
		row->is_null[COLUMN_PREVIOUS_CODE_HMAC] ? NULL : row->previous_code_hmac, 32);
	confirm_bind_blob(&p[7], uuid, 16);
	if (mysql_stmt_bind_param(conn->update, p) != 0 || mysql_stmt_execute(conn->update) != 0)
		return confirm_fail(conn, conn->update, "UPDATE operations", err, err_size);
	if (mysql_stmt_affected_rows(conn->update) != 1)
		return confirm_give_up(conn, CONFIRM_FAILED, "UPDATE operations matched no row", err,
			err_size);
	return CONFIRM_OK;
}

/*
 * Inserts the audit row. userops stores the SHA-256 of the
 * request's Fingerprint, which equals the row's fingerprint_sha256 on a
 * confirm that succeeds, so the row's value is stored without hashing.
 */
static enum confirm_result confirm_insert_audit(struct confirm_connection *conn,
	const unsigned char uuid[16], long long at_ms, const char *client_address,
	const char *request_id, char *err, size_t err_size)
{
	const struct confirm_row *row = &conn->row;
	MYSQL_BIND p[8];

	memset(p, 0, sizeof(p));
	confirm_bind_int64(&p[0], &at_ms);
	confirm_bind_blob(&p[1], uuid, 16);
	confirm_bind_text(&p[2], row->user_id);
	confirm_bind_text(&p[3], "confirmed");
	confirm_bind_blob(&p[4], row->fingerprint_sha256, 32);
	confirm_bind_text(&p[5], client_address);
	confirm_bind_text(&p[6], request_id);
	confirm_bind_text(&p[7], NULL);
	if (mysql_stmt_bind_param(conn->audit, p) != 0 || mysql_stmt_execute(conn->audit) != 0)
		return confirm_fail(conn, conn->audit, "INSERT INTO audit_log", err, err_size);
	return CONFIRM_OK;
}

/* Advances the event sequence, which stays locked until the commit, and inserts the event. */
static enum confirm_result confirm_append_event(struct confirm_connection *conn,
	const unsigned char uuid[16], long long at, long long created_at_ms, char *err,
	size_t err_size)
{
	const struct confirm_row *row = &conn->row;
	unsigned long long id;
	MYSQL_BIND p[7];

	if (mysql_stmt_execute(conn->sequence_advance) != 0)
		return confirm_fail(conn, conn->sequence_advance, "UPDATE event_sequence", err,
			err_size);
	if (mysql_stmt_affected_rows(conn->sequence_advance) != 1)
		return confirm_give_up(conn, CONFIRM_FAILED, "event_sequence has no row with id 1; "
			"apply userops' schema migrations", err, err_size);
	id = mysql_stmt_insert_id(conn->sequence_advance);

	memset(p, 0, sizeof(p));
	confirm_bind_uint64(&p[0], &id);
	confirm_bind_blob(&p[1], uuid, 16);
	confirm_bind_text(&p[2], row->user_id);
	confirm_bind_text(&p[3], row->kind);
	confirm_bind_text(&p[4], "confirmed");
	confirm_bind_int64(&p[5], &at);
	confirm_bind_int64(&p[6], &created_at_ms);
	if (mysql_stmt_bind_param(conn->event, p) != 0 || mysql_stmt_execute(conn->event) != 0)
		return confirm_fail(conn, conn->event, "INSERT INTO operation_events", err, err_size);
	return CONFIRM_OK;
}

enum confirm_result confirm_run(struct confirm_connection *conn, const unsigned char uuid[16],
	const char *client_address, const char *request_id, char *err, size_t err_size)
{
	struct timespec wall_time;
	enum confirm_result result;
	long long now, now_ms;

	err[0] = '\0';
	if (mysql_real_query(conn->mysql, "START TRANSACTION", strlen("START TRANSACTION")) != 0)
		return confirm_fail(conn, NULL, "START TRANSACTION", err, err_size);

	result = confirm_read_row(conn, uuid, err, err_size);
	if (result != CONFIRM_OK)
		return result;

	/*
	 * userops reads the clock for the seconds when the request starts and again
	 * for each _ms column. One reading serves all three here.
	 */
	clock_gettime(CLOCK_REALTIME, &wall_time);
	now = (long long)wall_time.tv_sec;
	now_ms = now * 1000 + wall_time.tv_nsec / 1000000;
	if (strcmp(conn->row.status, "confirmed") == 0)
		return confirm_give_up(conn, CONFIRM_CONFIRMED_BEFORE,
			"the operation was confirmed before", err, err_size);
	if (strcmp(conn->row.status, "cancelled") == 0)
		return confirm_give_up(conn, CONFIRM_CANCELLED, "the operation is cancelled", err,
			err_size);
	if (strcmp(conn->row.status, "rejected") == 0)
		return confirm_give_up(conn, CONFIRM_REJECTED, "the operation is rejected", err,
			err_size);
	if (strcmp(conn->row.status, "pending") != 0 || now >= conn->row.expires_at)
		return confirm_give_up(conn, CONFIRM_EXPIRED, "the operation has expired", err,
			err_size);

	result = confirm_update_row(conn, uuid, now, err, err_size);
	if (result == CONFIRM_OK)
		result = confirm_insert_audit(conn, uuid, now_ms, client_address, request_id, err,
			err_size);
	if (result == CONFIRM_OK)
		result = confirm_append_event(conn, uuid, now, now_ms, err, err_size);
	if (result != CONFIRM_OK)
		return result;
	if (mysql_commit(conn->mysql) != 0)
		return confirm_fail(conn, NULL, "COMMIT", err, err_size);
	return CONFIRM_OK;
}

static int confirm_hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool confirm_parse_uuid(const char *text, unsigned char uuid[16])
{
	size_t i, byte = 0;
	int high, low;

	for (i = 0; byte < 16; ) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (text[i] != '-')
				return false;
			i++;
			continue;
		}
		high = confirm_hex_value(text[i]);
		low = high < 0 ? -1 : confirm_hex_value(text[i + 1]);
		if (low < 0)
			return false;
		uuid[byte++] = (unsigned char)(high << 4 | low);
		i += 2;
	}
	return i == 36;
}
