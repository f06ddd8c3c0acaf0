/* Typed SQL for operations, TOTP enrolments, outbox rows and audit rows, as prepared statements. */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mysql.h>
#include <mysqld_error.h>

#include "db.h"
#include "log.h"
#include "store.h"

static const char store_sql_operation_select[] =
	"SELECT uuid, user_id, kind, locale, params, fingerprint_sha256, email, email_factor,"
	" otp_factor, status, created_at, expires_at, finished_at, wrong_attempts, resends,"
	" last_mail_at, code_hmac, previous_code_hmac"
	" FROM operations WHERE uuid = ?";

static const char store_sql_operation_select_for_update[] =
	"SELECT uuid, user_id, kind, locale, params, fingerprint_sha256, email, email_factor,"
	" otp_factor, status, created_at, expires_at, finished_at, wrong_attempts, resends,"
	" last_mail_at, code_hmac, previous_code_hmac"
	" FROM operations WHERE uuid = ? FOR UPDATE";

static const char store_sql_operation_insert[] =
	"INSERT INTO operations (uuid, user_id, kind, locale, params, fingerprint_sha256, email,"
	" email_factor, otp_factor, status, created_at, expires_at, finished_at, wrong_attempts,"
	" resends, last_mail_at, code_hmac, previous_code_hmac)"
	" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

static const char store_sql_operation_update[] =
	"UPDATE operations SET status = ?, finished_at = ?, wrong_attempts = ?, resends = ?,"
	" last_mail_at = ?, code_hmac = ?, previous_code_hmac = ? WHERE uuid = ?";

static const char store_sql_totp_select[] =
	"SELECT secret_sealed, seal_key_id, last_step, created_at"
	" FROM totp_enrolments WHERE user_id = ?";

static const char store_sql_totp_select_for_update[] =
	"SELECT secret_sealed, seal_key_id, last_step, created_at"
	" FROM totp_enrolments WHERE user_id = ? FOR UPDATE";

static const char store_sql_totp_upsert[] =
	"INSERT INTO totp_enrolments (user_id, secret_sealed, seal_key_id, last_step, created_at)"
	" VALUES (?, ?, ?, NULL, ?)"
	" ON DUPLICATE KEY UPDATE secret_sealed = VALUES(secret_sealed),"
	" seal_key_id = VALUES(seal_key_id), last_step = NULL, created_at = VALUES(created_at)";

static const char store_sql_totp_set_last_step[] =
	"UPDATE totp_enrolments SET last_step = ? WHERE user_id = ?";

static const char store_sql_outbox_insert[] =
	"INSERT INTO mail_outbox (operation_uuid, recipient, template, locale, kind, params,"
	" code_sealed, seal_key_id, status, status_at, tries, next_try_at, created_at)"
	" VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, 0, ?, ?)";

static const char store_sql_outbox_latest[] =
	"SELECT id, status, tries, status_at, last_reply FROM mail_outbox"
	" WHERE operation_uuid = ? ORDER BY id DESC LIMIT 1";

static const char store_sql_outbox_each[] =
	"SELECT id, status, tries, status_at, last_reply FROM mail_outbox"
	" WHERE operation_uuid = ? ORDER BY id";

static const char store_sql_audit_insert[] =
	"INSERT INTO audit_log (at_ms, operation_uuid, user_id, event, fingerprint_sha256,"
	" client_address, request_id, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)";

static const char store_sql_audit_each[] =
	"SELECT at_ms, event, detail FROM audit_log WHERE operation_uuid = ? ORDER BY id";

/*
 * Advances the sequence and hands the new value back in the OK packet's
 * insert id, in one round trip. The row stays locked until the transaction
 * ends, so events are numbered in the order their transactions commit.
 */
static const char store_sql_sequence_advance[] =
	"UPDATE event_sequence SET last_id = LAST_INSERT_ID(last_id + 1) WHERE id = 1";

static const char store_sql_event_insert[] =
	"INSERT INTO operation_events (id, operation_uuid, user_id, kind, status, at, created_at_ms)"
	" VALUES (?, ?, ?, ?, ?, ?, ?)";

static const char store_sql_events_after[] =
	"SELECT id, operation_uuid, user_id, kind, status, at FROM operation_events"
	" WHERE id > ? ORDER BY id LIMIT ?";

static const char store_sql_operations_due[] =
	"SELECT uuid FROM operations WHERE status = 'pending' AND expires_at <= ?"
	" ORDER BY expires_at LIMIT ?";

static const char store_sql_idempotency_insert[] =
	"INSERT INTO idempotency_keys (service, idem_key, request_sha256, created_at)"
	" VALUES (?, ?, ?, ?)";

static const char store_sql_idempotency_select[] =
	"SELECT request_sha256, operation_uuid, response, created_at FROM idempotency_keys"
	" WHERE service = ? AND idem_key = ? FOR UPDATE";

static const char store_sql_idempotency_finish[] =
	"UPDATE idempotency_keys SET operation_uuid = ?, response = ?"
	" WHERE service = ? AND idem_key = ?";

static const char store_sql_idempotency_delete[] =
	"DELETE FROM idempotency_keys WHERE service = ? AND idem_key = ?";

static const char store_sql_idempotency_purge[] =
	"DELETE FROM idempotency_keys WHERE created_at < ? LIMIT ?";

/* Length, NULL flag and truncation flag of each column of a result row. */
struct store_columns {
	unsigned long length[20];
	my_bool is_null[20];
	my_bool error[20];
};

/* BINARY and VARBINARY columns are bound as BLOB, which Connector/C passes through unchanged. */
static void store_param_blob(MYSQL_BIND *bind, const void *data, size_t len)
{
	if (data == NULL) {
		bind->buffer_type = MYSQL_TYPE_NULL;
		return;
	}
	bind->buffer_type = MYSQL_TYPE_BLOB;
	bind->buffer = (void *)data;
	bind->buffer_length = (unsigned long)len;
}

/* Binds a NUL-terminated string, or NULL for SQL NULL. */
static void store_param_text(MYSQL_BIND *bind, const char *text)
{
	if (text == NULL) {
		bind->buffer_type = MYSQL_TYPE_NULL;
		return;
	}
	bind->buffer_type = MYSQL_TYPE_STRING;
	bind->buffer = (void *)text;
	bind->buffer_length = (unsigned long)strlen(text);
}

static void store_param_int64(MYSQL_BIND *bind, const long long *value)
{
	bind->buffer_type = MYSQL_TYPE_LONGLONG;
	bind->buffer = (void *)value;
}

/* Binds result column i into buf of size bytes. */
static void store_result(MYSQL_BIND *bind, struct store_columns *columns, size_t i,
	enum enum_field_types type, void *buf, size_t size)
{
	bind[i].buffer_type = type;
	bind[i].buffer = buf;
	bind[i].buffer_length = (unsigned long)size;
	bind[i].length = &columns->length[i];
	bind[i].is_null = &columns->is_null[i];
	bind[i].error = &columns->error[i];
}

/* Ends a text column fetched into buf of size bytes with a NUL; false when it did not fit. */
static bool store_terminate(char *buf, size_t size, const struct store_columns *columns, size_t i)
{
	if (columns->is_null[i]) {
		buf[0] = '\0';
		return true;
	}
	if (columns->length[i] >= size)
		return false;
	buf[columns->length[i]] = '\0';
	return true;
}

/* Prepares sql, binds params and executes it, leaving any result set unread in *stmt. */
static enum db_result store_execute(struct db *db, const char *sql, MYSQL_BIND *params,
	const char *what, MYSQL_STMT **stmt)
{
	*stmt = db_prepare(db, sql);
	if (*stmt == NULL)
		return db_mysql(db) == NULL ? DB_UNAVAILABLE : DB_FAILED;
	if (params != NULL && mysql_stmt_bind_param(*stmt, params) != 0)
		return db_fail(db, *stmt, what);
	if (mysql_stmt_execute(*stmt) != 0)
		return db_fail(db, *stmt, what);
	return DB_OK;
}

/*
 * Binds result columns, buffers the result set and fetches its first row.
 * DB_NOT_FOUND when there is none; a column too long for its buffer fails.
 */
static enum db_result store_fetch_first(struct db *db, MYSQL_STMT *stmt, MYSQL_BIND *results,
	const char *what)
{
	int rc;

	if (mysql_stmt_bind_result(stmt, results) != 0)
		return db_fail(db, stmt, what);
	if (mysql_stmt_store_result(stmt) != 0)
		return db_fail(db, stmt, what);
	rc = mysql_stmt_fetch(stmt);
	if (rc == MYSQL_NO_DATA) {
		mysql_stmt_free_result(stmt);
		return DB_NOT_FOUND;
	}
	if (rc == MYSQL_DATA_TRUNCATED) {
		log_error("database value too long on %s", what);
		mysql_stmt_free_result(stmt);
		return DB_FAILED;
	}
	if (rc != 0) {
		enum db_result result = db_fail(db, stmt, what);

		if (db_mysql(db) != NULL)
			mysql_stmt_free_result(stmt);
		return result;
	}
	return DB_OK;
}

/* Maps the status column back to the enum; false on a value the schema does not have. */
static bool store_parse_status(const char *name, enum operation_status *status)
{
	static const enum operation_status all[] = {
		OPERATION_PENDING, OPERATION_CONFIRMED, OPERATION_CANCELLED, OPERATION_REJECTED,
		OPERATION_EXPIRED,
	};
	size_t i;

	for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (strcmp(name, operations_status_name(all[i])) == 0) {
			*status = all[i];
			return true;
		}
	}
	return false;
}

/* Scalar columns of an operations row, fetched before they are copied into the struct. */
struct store_operation_scalars {
	signed char email_factor;
	signed char otp_factor;
	char status[16];
	long long created_at;
	long long expires_at;
	long long finished_at;
	unsigned int wrong_attempts;
	unsigned int resends;
	long long last_mail_at;
};

static void store_operation_bind_results(MYSQL_BIND *r, struct store_columns *c,
	struct store_operation *op, struct store_operation_scalars *s)
{
	store_result(r, c, 0, MYSQL_TYPE_BLOB, op->uuid, sizeof(op->uuid));
	store_result(r, c, 1, MYSQL_TYPE_STRING, op->user_id, sizeof(op->user_id));
	store_result(r, c, 2, MYSQL_TYPE_STRING, op->kind, sizeof(op->kind));
	store_result(r, c, 3, MYSQL_TYPE_STRING, op->locale, sizeof(op->locale));
	store_result(r, c, 4, MYSQL_TYPE_STRING, op->params, sizeof(op->params));
	store_result(r, c, 5, MYSQL_TYPE_BLOB, op->fingerprint_sha256,
		sizeof(op->fingerprint_sha256));
	store_result(r, c, 6, MYSQL_TYPE_STRING, op->email, sizeof(op->email));
	store_result(r, c, 7, MYSQL_TYPE_TINY, &s->email_factor, sizeof(s->email_factor));
	store_result(r, c, 8, MYSQL_TYPE_TINY, &s->otp_factor, sizeof(s->otp_factor));
	store_result(r, c, 9, MYSQL_TYPE_STRING, s->status, sizeof(s->status));
	store_result(r, c, 10, MYSQL_TYPE_LONGLONG, &s->created_at, sizeof(s->created_at));
	store_result(r, c, 11, MYSQL_TYPE_LONGLONG, &s->expires_at, sizeof(s->expires_at));
	store_result(r, c, 12, MYSQL_TYPE_LONGLONG, &s->finished_at, sizeof(s->finished_at));
	store_result(r, c, 13, MYSQL_TYPE_LONG, &s->wrong_attempts, sizeof(s->wrong_attempts));
	r[13].is_unsigned = 1;
	store_result(r, c, 14, MYSQL_TYPE_LONG, &s->resends, sizeof(s->resends));
	r[14].is_unsigned = 1;
	store_result(r, c, 15, MYSQL_TYPE_LONGLONG, &s->last_mail_at, sizeof(s->last_mail_at));
	store_result(r, c, 16, MYSQL_TYPE_BLOB, op->code_hmac, sizeof(op->code_hmac));
	store_result(r, c, 17, MYSQL_TYPE_BLOB, op->previous_code_hmac,
		sizeof(op->previous_code_hmac));
}

/* Copies the fetched row into op; false when a value breaks the schema's own rules. */
static bool store_operation_copy(const struct store_columns *c,
	struct store_operation_scalars *s, struct store_operation *op)
{
	if (!store_terminate(op->user_id, sizeof(op->user_id), c, 1) ||
	    !store_terminate(op->kind, sizeof(op->kind), c, 2) ||
	    !store_terminate(op->locale, sizeof(op->locale), c, 3) ||
	    !store_terminate(op->params, sizeof(op->params), c, 4) ||
	    !store_terminate(op->email, sizeof(op->email), c, 6) ||
	    !store_terminate(s->status, sizeof(s->status), c, 9))
		return false;
	if (c->length[0] != 16 || c->length[5] != 32 || !store_parse_status(s->status, &op->status))
		return false;
	if ((!c->is_null[16] && c->length[16] != 32) || (!c->is_null[17] && c->length[17] != 32))
		return false;

	op->has_email = !c->is_null[6];
	op->email_factor = s->email_factor != 0;
	op->otp_factor = s->otp_factor != 0;
	op->created_at = s->created_at;
	op->expires_at = s->expires_at;
	op->has_finished_at = !c->is_null[12];
	op->finished_at = op->has_finished_at ? s->finished_at : 0;
	op->wrong_attempts = (long)s->wrong_attempts;
	op->resends = (long)s->resends;
	op->has_last_mail_at = !c->is_null[15];
	op->last_mail_at = op->has_last_mail_at ? s->last_mail_at : 0;
	op->has_code_hmac = !c->is_null[16];
	op->has_previous_code_hmac = !c->is_null[17];
	return true;
}

enum db_result store_operation_read(struct db *db, const unsigned char uuid[16], bool for_update,
	struct store_operation *op)
{
	const char *sql = for_update ? store_sql_operation_select_for_update :
		store_sql_operation_select;
	struct store_operation_scalars scalars;
	struct store_columns columns;
	MYSQL_BIND params[1];
	MYSQL_BIND results[18];
	MYSQL_STMT *stmt = NULL;
	enum db_result result;

	memset(params, 0, sizeof(params));
	memset(results, 0, sizeof(results));
	memset(&columns, 0, sizeof(columns));
	memset(&scalars, 0, sizeof(scalars));
	store_param_blob(&params[0], uuid, 16);

	result = store_execute(db, sql, params, "select operation", &stmt);
	if (result != DB_OK)
		return result;
	store_operation_bind_results(results, &columns, op, &scalars);
	result = store_fetch_first(db, stmt, results, "select operation");
	if (result != DB_OK)
		return result;
	mysql_stmt_free_result(stmt);

	if (!store_operation_copy(&columns, &scalars, op)) {
		log_error("operations row has a value outside the schema");
		return DB_FAILED;
	}
	return DB_OK;
}

enum db_result store_operation_insert(struct db *db, const struct store_operation *op)
{
	long long created_at = op->created_at;
	long long expires_at = op->expires_at;
	long long finished_at = op->finished_at;
	long long wrong_attempts = op->wrong_attempts;
	long long resends = op->resends;
	long long last_mail_at = op->last_mail_at;
	signed char email_factor = op->email_factor;
	signed char otp_factor = op->otp_factor;
	MYSQL_BIND p[18];
	MYSQL_STMT *stmt = NULL;

	memset(p, 0, sizeof(p));
	store_param_blob(&p[0], op->uuid, 16);
	store_param_text(&p[1], op->user_id);
	store_param_text(&p[2], op->kind);
	store_param_text(&p[3], op->locale);
	store_param_text(&p[4], op->params);
	store_param_blob(&p[5], op->fingerprint_sha256, 32);
	store_param_text(&p[6], op->has_email ? op->email : NULL);
	p[7].buffer_type = MYSQL_TYPE_TINY;
	p[7].buffer = &email_factor;
	p[8].buffer_type = MYSQL_TYPE_TINY;
	p[8].buffer = &otp_factor;
	store_param_text(&p[9], operations_status_name(op->status));
	store_param_int64(&p[10], &created_at);
	store_param_int64(&p[11], &expires_at);
	if (op->has_finished_at)
		store_param_int64(&p[12], &finished_at);
	else
		p[12].buffer_type = MYSQL_TYPE_NULL;
	store_param_int64(&p[13], &wrong_attempts);
	store_param_int64(&p[14], &resends);
	if (op->has_last_mail_at)
		store_param_int64(&p[15], &last_mail_at);
	else
		p[15].buffer_type = MYSQL_TYPE_NULL;
	store_param_blob(&p[16], op->has_code_hmac ? op->code_hmac : NULL, 32);
	store_param_blob(&p[17], op->has_previous_code_hmac ? op->previous_code_hmac : NULL, 32);

	return store_execute(db, store_sql_operation_insert, p, "insert operation", &stmt);
}

enum db_result store_operation_update(struct db *db, const struct store_operation *op)
{
	long long finished_at = op->finished_at;
	long long wrong_attempts = op->wrong_attempts;
	long long resends = op->resends;
	long long last_mail_at = op->last_mail_at;
	MYSQL_BIND p[8];
	MYSQL_STMT *stmt = NULL;
	enum db_result result;

	memset(p, 0, sizeof(p));
	store_param_text(&p[0], operations_status_name(op->status));
	if (op->has_finished_at)
		store_param_int64(&p[1], &finished_at);
	else
		p[1].buffer_type = MYSQL_TYPE_NULL;
	store_param_int64(&p[2], &wrong_attempts);
	store_param_int64(&p[3], &resends);
	if (op->has_last_mail_at)
		store_param_int64(&p[4], &last_mail_at);
	else
		p[4].buffer_type = MYSQL_TYPE_NULL;
	store_param_blob(&p[5], op->has_code_hmac ? op->code_hmac : NULL, 32);
	store_param_blob(&p[6], op->has_previous_code_hmac ? op->previous_code_hmac : NULL, 32);
	store_param_blob(&p[7], op->uuid, 16);

	result = store_execute(db, store_sql_operation_update, p, "update operation", &stmt);
	if (result == DB_OK && mysql_stmt_affected_rows(stmt) == 0)
		return DB_NOT_FOUND;
	return result;
}

enum db_result store_totp_read(struct db *db, const char *user_id, bool for_update,
	struct store_totp *totp)
{
	const char *sql = for_update ? store_sql_totp_select_for_update : store_sql_totp_select;
	struct store_columns columns;
	long long last_step = 0;
	long long created_at = 0;
	MYSQL_BIND params[1];
	MYSQL_BIND results[4];
	MYSQL_STMT *stmt = NULL;
	enum db_result result;

	memset(params, 0, sizeof(params));
	memset(results, 0, sizeof(results));
	memset(&columns, 0, sizeof(columns));
	store_param_text(&params[0], user_id);

	result = store_execute(db, sql, params, "select totp enrolment", &stmt);
	if (result != DB_OK)
		return result;
	store_result(results, &columns, 0, MYSQL_TYPE_BLOB, totp->secret_sealed,
		sizeof(totp->secret_sealed));
	store_result(results, &columns, 1, MYSQL_TYPE_STRING, totp->seal_key_id,
		sizeof(totp->seal_key_id));
	store_result(results, &columns, 2, MYSQL_TYPE_LONGLONG, &last_step, sizeof(last_step));
	store_result(results, &columns, 3, MYSQL_TYPE_LONGLONG, &created_at, sizeof(created_at));
	result = store_fetch_first(db, stmt, results, "select totp enrolment");
	if (result != DB_OK)
		return result;
	mysql_stmt_free_result(stmt);

	if (!store_terminate(totp->seal_key_id, sizeof(totp->seal_key_id), &columns, 1)) {
		log_error("totp_enrolments row has a value outside the schema");
		return DB_FAILED;
	}
	snprintf(totp->user_id, sizeof(totp->user_id), "%s", user_id);
	totp->secret_sealed_len = columns.length[0];
	totp->has_last_step = !columns.is_null[2];
	totp->last_step = totp->has_last_step ? last_step : 0;
	totp->created_at = created_at;
	return DB_OK;
}

enum db_result store_totp_upsert(struct db *db, const struct store_totp *totp)
{
	long long created_at = totp->created_at;
	MYSQL_BIND p[4];
	MYSQL_STMT *stmt = NULL;

	memset(p, 0, sizeof(p));
	store_param_text(&p[0], totp->user_id);
	store_param_blob(&p[1], totp->secret_sealed, totp->secret_sealed_len);
	store_param_text(&p[2], totp->seal_key_id);
	store_param_int64(&p[3], &created_at);
	return store_execute(db, store_sql_totp_upsert, p, "upsert totp enrolment", &stmt);
}

enum db_result store_totp_set_last_step(struct db *db, const char *user_id, int64_t last_step)
{
	long long step = last_step;
	MYSQL_BIND p[2];
	MYSQL_STMT *stmt = NULL;

	memset(p, 0, sizeof(p));
	store_param_int64(&p[0], &step);
	store_param_text(&p[1], user_id);
	return store_execute(db, store_sql_totp_set_last_step, p, "update totp last step", &stmt);
}

enum db_result store_outbox_insert(struct db *db, const struct store_outbox_new *row)
{
	long long created_at = row->created_at;
	MYSQL_BIND p[11];
	MYSQL_STMT *stmt = NULL;

	memset(p, 0, sizeof(p));
	store_param_blob(&p[0], row->operation_uuid, 16);
	store_param_text(&p[1], row->recipient);
	store_param_text(&p[2], row->template_name);
	store_param_text(&p[3], row->locale);
	store_param_text(&p[4], row->kind);
	store_param_text(&p[5], row->params);
	store_param_blob(&p[6], row->code_sealed, row->code_sealed_len);
	store_param_text(&p[7], row->seal_key_id);
	store_param_int64(&p[8], &created_at);    /* status_at */
	store_param_int64(&p[9], &created_at);    /* next_try_at */
	store_param_int64(&p[10], &created_at);
	return store_execute(db, store_sql_outbox_insert, p, "insert outbox row", &stmt);
}

/* Binds the result columns of the two outbox SELECTs into row. */
static void store_outbox_bind_results(MYSQL_BIND *r, struct store_columns *c,
	struct store_outbox_row *row, unsigned long long *id, unsigned int *tries,
	long long *status_at)
{
	store_result(r, c, 0, MYSQL_TYPE_LONGLONG, id, sizeof(*id));
	r[0].is_unsigned = 1;
	store_result(r, c, 1, MYSQL_TYPE_STRING, row->status, sizeof(row->status));
	store_result(r, c, 2, MYSQL_TYPE_LONG, tries, sizeof(*tries));
	r[2].is_unsigned = 1;
	store_result(r, c, 3, MYSQL_TYPE_LONGLONG, status_at, sizeof(*status_at));
	store_result(r, c, 4, MYSQL_TYPE_STRING, row->last_reply, sizeof(row->last_reply));
}

/*
 * Runs one of the outbox SELECTs and calls visit on each row; with
 * first_only it stops after the first. DB_NOT_FOUND when there are none.
 */
static enum db_result store_outbox_select(struct db *db, const char *sql,
	const unsigned char uuid[16], bool first_only,
	int (*visit)(const struct store_outbox_row *row, void *arg), void *arg)
{
	struct store_outbox_row row;
	struct store_columns columns;
	unsigned long long id = 0;
	unsigned int tries = 0;
	long long status_at = 0;
	MYSQL_BIND params[1];
	MYSQL_BIND results[5];
	MYSQL_STMT *stmt = NULL;
	enum db_result result;
	int rc;

	memset(params, 0, sizeof(params));
	memset(results, 0, sizeof(results));
	memset(&columns, 0, sizeof(columns));
	memset(&row, 0, sizeof(row));
	store_param_blob(&params[0], uuid, 16);

	result = store_execute(db, sql, params, "select outbox rows", &stmt);
	if (result != DB_OK)
		return result;
	store_outbox_bind_results(results, &columns, &row, &id, &tries, &status_at);
	result = store_fetch_first(db, stmt, results, "select outbox rows");
	for (rc = 0; result == DB_OK && rc == 0; rc = mysql_stmt_fetch(stmt)) {
		store_terminate(row.status, sizeof(row.status), &columns, 1);
		row.has_last_reply = !columns.is_null[4];
		store_terminate(row.last_reply, sizeof(row.last_reply), &columns, 4);
		row.id = id;
		row.tries = (long)tries;
		row.status_at = status_at;
		if (visit(&row, arg) != 0)
			result = DB_FAILED;
		if (first_only)
			break;
	}
	if (result == DB_OK && rc == MYSQL_DATA_TRUNCATED) {
		log_error("database value too long on select outbox rows");
		result = DB_FAILED;
	} else if (result == DB_OK && rc != 0 && rc != MYSQL_NO_DATA) {
		result = db_fail(db, stmt, "select outbox rows");
	}
	if (result != DB_NOT_FOUND && db_mysql(db) != NULL)
		mysql_stmt_free_result(stmt);
	return result;
}

/* Copies the one row that store_outbox_latest reads. */
static int store_outbox_copy(const struct store_outbox_row *row, void *arg)
{
	*(struct store_outbox_row *)arg = *row;
	return 0;
}

enum db_result store_outbox_latest(struct db *db, const unsigned char uuid[16],
	struct store_outbox_row *row)
{
	return store_outbox_select(db, store_sql_outbox_latest, uuid, true, store_outbox_copy, row);
}

enum db_result store_outbox_each(struct db *db, const unsigned char uuid[16],
	int (*visit)(const struct store_outbox_row *row, void *arg), void *arg)
{
	enum db_result result;

	result = store_outbox_select(db, store_sql_outbox_each, uuid, false, visit, arg);
	return result == DB_NOT_FOUND ? DB_OK : result;
}

enum db_result store_audit_insert(struct db *db, const struct store_audit *row)
{
	long long at_ms = row->at_ms;
	MYSQL_BIND p[8];
	MYSQL_STMT *stmt = NULL;

	memset(p, 0, sizeof(p));
	store_param_int64(&p[0], &at_ms);
	store_param_blob(&p[1], row->operation_uuid, 16);
	store_param_text(&p[2], row->user_id);
	store_param_text(&p[3], row->event);
	store_param_blob(&p[4], row->fingerprint_sha256, 32);
	store_param_text(&p[5], row->client_address);
	store_param_text(&p[6], row->request_id);
	store_param_text(&p[7], row->detail);
	return store_execute(db, store_sql_audit_insert, p, "insert audit row", &stmt);
}

enum db_result store_audit_each(struct db *db, const unsigned char uuid[16],
	int (*visit)(const struct store_audit_row *row, void *arg), void *arg)
{
	struct store_audit_row *row;
	struct store_columns columns;
	long long at_ms = 0;
	MYSQL_BIND params[1];
	MYSQL_BIND results[3];
	MYSQL_STMT *stmt = NULL;
	enum db_result result;
	int rc;

	row = calloc(1, sizeof(*row));
	if (row == NULL) {
		log_error("cannot read audit rows: out of memory");
		return DB_FAILED;
	}
	memset(params, 0, sizeof(params));
	memset(results, 0, sizeof(results));
	memset(&columns, 0, sizeof(columns));
	store_param_blob(&params[0], uuid, 16);

	result = store_execute(db, store_sql_audit_each, params, "select audit rows", &stmt);
	if (result != DB_OK) {
		free(row);
		return result;
	}
	store_result(results, &columns, 0, MYSQL_TYPE_LONGLONG, &at_ms, sizeof(at_ms));
	store_result(results, &columns, 1, MYSQL_TYPE_STRING, row->event, sizeof(row->event));
	store_result(results, &columns, 2, MYSQL_TYPE_STRING, row->detail, sizeof(row->detail));
	result = store_fetch_first(db, stmt, results, "select audit rows");
	for (rc = 0; result == DB_OK && rc == 0; rc = mysql_stmt_fetch(stmt)) {
		if (!store_terminate(row->event, sizeof(row->event), &columns, 1) ||
		    !store_terminate(row->detail, sizeof(row->detail), &columns, 2)) {
			rc = MYSQL_DATA_TRUNCATED;
			break;
		}
		row->at_ms = at_ms;
		row->has_detail = !columns.is_null[2];
		if (visit(row, arg) != 0)
			result = DB_FAILED;
	}
	if (result == DB_OK && rc == MYSQL_DATA_TRUNCATED) {
		log_error("database value too long on select audit rows");
		result = DB_FAILED;
	} else if (result == DB_OK && rc != 0 && rc != MYSQL_NO_DATA) {
		result = db_fail(db, stmt, "select audit rows");
	}
	if (result != DB_NOT_FOUND && db_mysql(db) != NULL)
		mysql_stmt_free_result(stmt);
	free(row);
	return result == DB_NOT_FOUND ? DB_OK : result;
}

/* Binds an unsigned BIGINT parameter. */
static void store_param_uint64(MYSQL_BIND *bind, const unsigned long long *value)
{
	bind->buffer_type = MYSQL_TYPE_LONGLONG;
	bind->buffer = (void *)value;
	bind->is_unsigned = 1;
}

/* Locks the sequence row and returns in *id the next event id, already written back. */
static enum db_result store_event_next_id(struct db *db, unsigned long long *id)
{
	MYSQL_STMT *stmt = NULL;
	enum db_result result;

	result = store_execute(db, store_sql_sequence_advance, NULL, "advance event sequence", &stmt);
	if (result != DB_OK)
		return result;
	if (mysql_stmt_affected_rows(stmt) != 1) {
		log_error("event_sequence has no row with id 1: apply the schema migrations");
		return DB_FAILED;
	}
	*id = mysql_stmt_insert_id(stmt);
	return DB_OK;
}

enum db_result store_event_append(struct db *db, const struct store_operation *op,
	int64_t created_at_ms)
{
	unsigned long long id = 0;
	long long at = op->finished_at;
	long long created = created_at_ms;
	MYSQL_BIND p[7];
	MYSQL_STMT *stmt = NULL;
	enum db_result result;

	result = store_event_next_id(db, &id);
	if (result != DB_OK)
		return result;

	memset(p, 0, sizeof(p));
	store_param_uint64(&p[0], &id);
	store_param_blob(&p[1], op->uuid, 16);
	store_param_text(&p[2], op->user_id);
	store_param_text(&p[3], op->kind);
	store_param_text(&p[4], operations_status_name(op->status));
	store_param_int64(&p[5], &at);
	store_param_int64(&p[6], &created);
	return store_execute(db, store_sql_event_insert, p, "insert event", &stmt);
}

/* Copies a fetched event row into event; false when a value breaks the schema's rules. */
static bool store_event_copy(const struct store_columns *c, char *status,
	struct store_event *event)
{
	return store_terminate(event->user_id, sizeof(event->user_id), c, 2) &&
		store_terminate(event->kind, sizeof(event->kind), c, 3) &&
		store_terminate(status, 16, c, 4) && c->length[1] == 16 &&
		store_parse_status(status, &event->status);
}

enum db_result store_events_each(struct db *db, uint64_t after_id, long limit,
	int (*visit)(const struct store_event *event, void *arg), void *arg)
{
	struct store_event event;
	struct store_columns columns;
	unsigned long long after = after_id;
	unsigned long long id = 0;
	long long row_limit = limit;
	long long at = 0;
	char status[16];
	MYSQL_BIND params[2];
	MYSQL_BIND results[6];
	MYSQL_STMT *stmt = NULL;
	enum db_result result;
	int rc;

	memset(params, 0, sizeof(params));
	memset(results, 0, sizeof(results));
	memset(&columns, 0, sizeof(columns));
	memset(&event, 0, sizeof(event));
	store_param_uint64(&params[0], &after);
	store_param_int64(&params[1], &row_limit);

	result = store_execute(db, store_sql_events_after, params, "select events", &stmt);
	if (result != DB_OK)
		return result;
	store_result(results, &columns, 0, MYSQL_TYPE_LONGLONG, &id, sizeof(id));
	results[0].is_unsigned = 1;
	store_result(results, &columns, 1, MYSQL_TYPE_BLOB, event.operation_uuid,
		sizeof(event.operation_uuid));
	store_result(results, &columns, 2, MYSQL_TYPE_STRING, event.user_id, sizeof(event.user_id));
	store_result(results, &columns, 3, MYSQL_TYPE_STRING, event.kind, sizeof(event.kind));
	store_result(results, &columns, 4, MYSQL_TYPE_STRING, status, sizeof(status));
	store_result(results, &columns, 5, MYSQL_TYPE_LONGLONG, &at, sizeof(at));
	result = store_fetch_first(db, stmt, results, "select events");
	for (rc = 0; result == DB_OK && rc == 0; rc = mysql_stmt_fetch(stmt)) {
		if (!store_event_copy(&columns, status, &event)) {
			log_error("operation_events row has a value outside the schema");
			result = DB_FAILED;
			break;
		}
		event.id = id;
		event.at = at;
		if (visit(&event, arg) != 0)
			result = DB_FAILED;
	}
	if (result == DB_OK && rc == MYSQL_DATA_TRUNCATED) {
		log_error("database value too long on select events");
		result = DB_FAILED;
	} else if (result == DB_OK && rc != 0 && rc != MYSQL_NO_DATA) {
		result = db_fail(db, stmt, "select events");
	}
	if (result != DB_NOT_FOUND && db_mysql(db) != NULL)
		mysql_stmt_free_result(stmt);
	return result == DB_NOT_FOUND ? DB_OK : result;
}

enum db_result store_operations_due(struct db *db, int64_t now, long limit,
	unsigned char (*uuids)[16], size_t *count)
{
	struct store_columns columns;
	unsigned char uuid[16];
	long long due_at = now;
	long long row_limit = limit;
	MYSQL_BIND params[2];
	MYSQL_BIND results[1];
	MYSQL_STMT *stmt = NULL;
	enum db_result result;
	int rc;

	*count = 0;
	memset(params, 0, sizeof(params));
	memset(results, 0, sizeof(results));
	memset(&columns, 0, sizeof(columns));
	store_param_int64(&params[0], &due_at);
	store_param_int64(&params[1], &row_limit);

	result = store_execute(db, store_sql_operations_due, params, "select due operations", &stmt);
	if (result != DB_OK)
		return result;
	store_result(results, &columns, 0, MYSQL_TYPE_BLOB, uuid, sizeof(uuid));
	result = store_fetch_first(db, stmt, results, "select due operations");
	for (rc = 0; result == DB_OK && rc == 0 && (long)*count < limit;
	     rc = mysql_stmt_fetch(stmt)) {
		if (columns.length[0] != 16) {
			log_error("operations row has a uuid outside the schema");
			result = DB_FAILED;
			break;
		}
		memcpy(uuids[*count], uuid, 16);
		(*count)++;
	}
	if (result == DB_OK && rc != 0 && rc != MYSQL_NO_DATA)
		result = db_fail(db, stmt, "select due operations");
	if (result != DB_NOT_FOUND && db_mysql(db) != NULL)
		mysql_stmt_free_result(stmt);
	return result == DB_NOT_FOUND ? DB_OK : result;
}

enum db_result store_idempotency_insert(struct db *db, const char *service, const char *key,
	const unsigned char request_sha256[32], int64_t created_at, bool *duplicate)
{
	long long created = created_at;
	MYSQL_BIND p[4];
	MYSQL_STMT *stmt = NULL;

	*duplicate = false;
	memset(p, 0, sizeof(p));
	store_param_text(&p[0], service);
	store_param_text(&p[1], key);
	store_param_blob(&p[2], request_sha256, 32);
	store_param_int64(&p[3], &created);

	stmt = db_prepare(db, store_sql_idempotency_insert);
	if (stmt == NULL)
		return db_mysql(db) == NULL ? DB_UNAVAILABLE : DB_FAILED;
	if (mysql_stmt_bind_param(stmt, p) != 0)
		return db_fail(db, stmt, "insert idempotency key");
	if (mysql_stmt_execute(stmt) == 0)
		return DB_OK;

	/* The server undoes only this statement, so the transaction stays usable. */
	if (mysql_stmt_errno(stmt) == ER_DUP_ENTRY) {
		*duplicate = true;
		return DB_OK;
	}
	return db_fail(db, stmt, "insert idempotency key");
}

enum db_result store_idempotency_read(struct db *db, const char *service, const char *key,
	struct store_idempotency *row)
{
	struct store_columns columns;
	long long created_at = 0;
	MYSQL_BIND params[2];
	MYSQL_BIND results[4];
	MYSQL_STMT *stmt = NULL;
	enum db_result result;

	memset(params, 0, sizeof(params));
	memset(results, 0, sizeof(results));
	memset(&columns, 0, sizeof(columns));
	memset(row, 0, sizeof(*row));
	store_param_text(&params[0], service);
	store_param_text(&params[1], key);

	result = store_execute(db, store_sql_idempotency_select, params, "select idempotency key",
		&stmt);
	if (result != DB_OK)
		return result;
	store_result(results, &columns, 0, MYSQL_TYPE_BLOB, row->request_sha256,
		sizeof(row->request_sha256));
	store_result(results, &columns, 1, MYSQL_TYPE_BLOB, row->operation_uuid,
		sizeof(row->operation_uuid));
	store_result(results, &columns, 2, MYSQL_TYPE_STRING, row->response, sizeof(row->response));
	store_result(results, &columns, 3, MYSQL_TYPE_LONGLONG, &created_at, sizeof(created_at));
	result = store_fetch_first(db, stmt, results, "select idempotency key");
	if (result != DB_OK)
		return result;
	mysql_stmt_free_result(stmt);

	if (columns.length[0] != 32 || (!columns.is_null[1] && columns.length[1] != 16) ||
	    !store_terminate(row->response, sizeof(row->response), &columns, 2)) {
		log_error("idempotency_keys row has a value outside the schema");
		return DB_FAILED;
	}
	row->has_operation_uuid = !columns.is_null[1];
	row->has_response = !columns.is_null[2];
	row->created_at = created_at;
	return DB_OK;
}

enum db_result store_idempotency_finish(struct db *db, const char *service, const char *key,
	const unsigned char operation_uuid[16], const char *response)
{
	MYSQL_BIND p[4];
	MYSQL_STMT *stmt = NULL;
	enum db_result result;

	memset(p, 0, sizeof(p));
	store_param_blob(&p[0], operation_uuid, 16);
	store_param_text(&p[1], response);
	store_param_text(&p[2], service);
	store_param_text(&p[3], key);
	result = store_execute(db, store_sql_idempotency_finish, p, "update idempotency key",
		&stmt);
	if (result == DB_OK && mysql_stmt_affected_rows(stmt) == 0)
		return DB_NOT_FOUND;
	return result;
}

enum db_result store_idempotency_delete(struct db *db, const char *service, const char *key)
{
	MYSQL_BIND p[2];
	MYSQL_STMT *stmt = NULL;

	memset(p, 0, sizeof(p));
	store_param_text(&p[0], service);
	store_param_text(&p[1], key);
	return store_execute(db, store_sql_idempotency_delete, p, "delete idempotency key", &stmt);
}

enum db_result store_idempotency_purge(struct db *db, int64_t before, long limit,
	long *deleted)
{
	long long created_before = before;
	long long row_limit = limit;
	MYSQL_BIND p[2];
	MYSQL_STMT *stmt = NULL;
	enum db_result result;

	*deleted = 0;
	memset(p, 0, sizeof(p));
	store_param_int64(&p[0], &created_before);
	store_param_int64(&p[1], &row_limit);
	result = store_execute(db, store_sql_idempotency_purge, p, "purge idempotency keys", &stmt);
	if (result == DB_OK)
		*deleted = (long)mysql_stmt_affected_rows(stmt);
	return result;
}
