/* The mailer's side of mail_outbox: claiming due rows and recording how delivery ended. */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mysql.h>

#include "crypto.h"
#include "log.h"
#include "outbox.h"

/* A TEXT column stores at most 65,535 bytes. */
#define OUTBOX_PARAMS_MAX 65535
/* VARCHAR(512) in sql/001_initial.sql. */
#define OUTBOX_REPLY_MAX 512

/*
 * SKIP LOCKED (MariaDB 10.6 and later, run here on 10.11) lets several
 * mailers claim rows at once, each taking the oldest due row that no other
 * transaction has locked.
 */
static const char outbox_sql_select_due[] =
	"SELECT id, operation_uuid, recipient, template, locale, kind, params, code_sealed,"
	" seal_key_id, tries, last_reply FROM mail_outbox"
	" WHERE status IN ('queued', 'retrying') AND next_try_at <= ?"
	" ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED";

static const char outbox_sql_select_operation[] =
	"SELECT status, expires_at FROM operations WHERE uuid = ?";

static const char outbox_sql_lease[] =
	"UPDATE mail_outbox SET tries = tries + 1, next_try_at = ? WHERE id = ?";

/* Only a row still waiting for delivery changes, so a late result never overwrites a final one. */
static const char outbox_sql_finish[] =
	"UPDATE mail_outbox SET status = ?, status_at = ?, code_sealed = NULL,"
	" seal_key_id = NULL, last_reply = ?"
	" WHERE id = ? AND status IN ('queued', 'retrying')";

/*
 * status_at is when the current status began, so a row already retrying
 * keeps it. MariaDB applies the assignments left to right, which is why
 * status_at reads status before status changes.
 */
static const char outbox_sql_retry[] =
	"UPDATE mail_outbox SET status_at = IF(status = 'retrying', status_at, ?),"
	" status = 'retrying', next_try_at = ?, last_reply = ?"
	" WHERE id = ? AND status IN ('queued', 'retrying')";

/* The columns of outbox_sql_select_due, in order. */
enum outbox_column {
	OUTBOX_COLUMN_ID,
	OUTBOX_COLUMN_UUID,
	OUTBOX_COLUMN_RECIPIENT,
	OUTBOX_COLUMN_TEMPLATE,
	OUTBOX_COLUMN_LOCALE,
	OUTBOX_COLUMN_KIND,
	OUTBOX_COLUMN_PARAMS,
	OUTBOX_COLUMN_CODE_SEALED,
	OUTBOX_COLUMN_SEAL_KEY_ID,
	OUTBOX_COLUMN_TRIES,
	OUTBOX_COLUMN_LAST_REPLY,
	OUTBOX_COLUMN_COUNT,
};

/* Result buffers of the due-row SELECT that are not fields of struct outbox_row. */
struct outbox_fetch {
	MYSQL_BIND bind[OUTBOX_COLUMN_COUNT];
	unsigned long length[OUTBOX_COLUMN_COUNT];
	my_bool is_null[OUTBOX_COLUMN_COUNT];
	my_bool error[OUTBOX_COLUMN_COUNT];
	unsigned long long id;
	unsigned int tries;
	char last_reply[OUTBOX_REPLY_MAX + 1];
};

static void outbox_bind_longlong(MYSQL_BIND *bind, long long *value)
{
	memset(bind, 0, sizeof(*bind));
	bind->buffer_type = MYSQL_TYPE_LONGLONG;
	bind->buffer = value;
}

/* Binds a string parameter, or SQL NULL when text is NULL. */
static void outbox_bind_text(MYSQL_BIND *bind, const char *text)
{
	memset(bind, 0, sizeof(*bind));
	if (text == NULL) {
		bind->buffer_type = MYSQL_TYPE_NULL;
		return;
	}
	bind->buffer_type = MYSQL_TYPE_STRING;
	bind->buffer = (void *)text;
	bind->buffer_length = strlen(text);
}

/* Binds result column i of fetch to buffer, leaving room for a NUL after text. */
static void outbox_bind_column(struct outbox_fetch *fetch, enum outbox_column i,
	enum enum_field_types type, void *buffer, unsigned long size)
{
	MYSQL_BIND *bind = &fetch->bind[i];

	bind->buffer_type = type;
	bind->buffer = buffer;
	bind->buffer_length = type == MYSQL_TYPE_STRING ? size - 1 : size;
	bind->length = &fetch->length[i];
	bind->is_null = &fetch->is_null[i];
	bind->error = &fetch->error[i];
}

static void outbox_bind_results(struct outbox_fetch *fetch, struct outbox_row *row)
{
	memset(fetch->bind, 0, sizeof(fetch->bind));
	outbox_bind_column(fetch, OUTBOX_COLUMN_ID, MYSQL_TYPE_LONGLONG, &fetch->id,
		sizeof(fetch->id));
	fetch->bind[OUTBOX_COLUMN_ID].is_unsigned = 1;
	outbox_bind_column(fetch, OUTBOX_COLUMN_UUID, MYSQL_TYPE_BLOB, row->operation_uuid,
		sizeof(row->operation_uuid));
	outbox_bind_column(fetch, OUTBOX_COLUMN_RECIPIENT, MYSQL_TYPE_STRING, row->recipient,
		sizeof(row->recipient));
	outbox_bind_column(fetch, OUTBOX_COLUMN_TEMPLATE, MYSQL_TYPE_STRING, row->template_name,
		sizeof(row->template_name));
	outbox_bind_column(fetch, OUTBOX_COLUMN_LOCALE, MYSQL_TYPE_STRING, row->locale,
		sizeof(row->locale));
	outbox_bind_column(fetch, OUTBOX_COLUMN_KIND, MYSQL_TYPE_STRING, row->kind,
		sizeof(row->kind));
	outbox_bind_column(fetch, OUTBOX_COLUMN_PARAMS, MYSQL_TYPE_STRING, row->params,
		OUTBOX_PARAMS_MAX + 1);
	outbox_bind_column(fetch, OUTBOX_COLUMN_CODE_SEALED, MYSQL_TYPE_BLOB, row->code_sealed,
		sizeof(row->code_sealed));
	outbox_bind_column(fetch, OUTBOX_COLUMN_SEAL_KEY_ID, MYSQL_TYPE_STRING,
		row->seal_key_id, sizeof(row->seal_key_id));
	outbox_bind_column(fetch, OUTBOX_COLUMN_TRIES, MYSQL_TYPE_LONG, &fetch->tries,
		sizeof(fetch->tries));
	fetch->bind[OUTBOX_COLUMN_TRIES].is_unsigned = 1;
	outbox_bind_column(fetch, OUTBOX_COLUMN_LAST_REPLY, MYSQL_TYPE_STRING,
		fetch->last_reply, sizeof(fetch->last_reply));
}

/* Ends each fetched text column with a NUL and copies the rest into row. */
static void outbox_finish_fetch(struct outbox_fetch *fetch, struct outbox_row *row)
{
	static const enum outbox_column texts[] = { OUTBOX_COLUMN_RECIPIENT,
		OUTBOX_COLUMN_TEMPLATE, OUTBOX_COLUMN_LOCALE, OUTBOX_COLUMN_KIND,
		OUTBOX_COLUMN_PARAMS, OUTBOX_COLUMN_SEAL_KEY_ID, OUTBOX_COLUMN_LAST_REPLY };
	size_t i;

	for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		MYSQL_BIND *bind = &fetch->bind[texts[i]];
		unsigned long len = fetch->is_null[texts[i]] ? 0 : fetch->length[texts[i]];

		((char *)bind->buffer)[len] = '\0';
	}
	row->id = fetch->id;
	row->tries = fetch->tries;
	row->has_code = !fetch->is_null[OUTBOX_COLUMN_CODE_SEALED] &&
		!fetch->is_null[OUTBOX_COLUMN_SEAL_KEY_ID];
	row->code_sealed_len = row->has_code ? fetch->length[OUTBOX_COLUMN_CODE_SEALED] : 0;
}

/* Classifies a failed db_prepare, which has already logged the cause. */
static enum db_result outbox_prepare_failed(struct db *db)
{
	return db_mysql(db) == NULL ? DB_UNAVAILABLE : DB_FAILED;
}

/* Fetches and locks the oldest due row. Returns DB_NOT_FOUND when none is due. */
static enum db_result outbox_select_due(struct db *db, int64_t now, struct outbox_row *row,
	struct outbox_fetch *fetch)
{
	MYSQL_STMT *stmt;
	MYSQL_BIND param;
	long long due = now;
	int status;

	stmt = db_prepare(db, outbox_sql_select_due);
	if (stmt == NULL)
		return outbox_prepare_failed(db);
	outbox_bind_longlong(&param, &due);
	outbox_bind_results(fetch, row);
	if (mysql_stmt_bind_param(stmt, &param) != 0 || mysql_stmt_execute(stmt) != 0 ||
	    mysql_stmt_bind_result(stmt, fetch->bind) != 0)
		return db_fail(db, stmt, "select due outbox row");

	status = mysql_stmt_fetch(stmt);
	if (status == 1) {
		enum db_result result = db_fail(db, stmt, "select due outbox row");

		mysql_stmt_free_result(stmt);
		return result;
	}
	mysql_stmt_free_result(stmt);
	if (status == MYSQL_NO_DATA)
		return DB_NOT_FOUND;
	/* A truncated column means the schema and these buffers disagree. */
	if (status == MYSQL_DATA_TRUNCATED) {
		log_error("cannot read outbox row: a column is longer than the schema allows");
		return DB_FAILED;
	}
	outbox_finish_fetch(fetch, row);
	return DB_OK;
}

/* Reads the operation's status and expiry. Returns DB_NOT_FOUND when the operation is gone. */
static enum db_result outbox_select_operation(struct db *db, const unsigned char uuid[16],
	char *status_name, size_t status_size, int64_t *expires_at)
{
	MYSQL_STMT *stmt;
	MYSQL_BIND param, results[2];
	unsigned long status_len = 0;
	long long expires = 0;
	int fetched;

	stmt = db_prepare(db, outbox_sql_select_operation);
	if (stmt == NULL)
		return outbox_prepare_failed(db);
	memset(&param, 0, sizeof(param));
	param.buffer_type = MYSQL_TYPE_BLOB;
	param.buffer = (void *)uuid;
	param.buffer_length = 16;
	memset(results, 0, sizeof(results));
	results[0].buffer_type = MYSQL_TYPE_STRING;
	results[0].buffer = status_name;
	results[0].buffer_length = status_size - 1;
	results[0].length = &status_len;
	outbox_bind_longlong(&results[1], &expires);
	if (mysql_stmt_bind_param(stmt, &param) != 0 || mysql_stmt_execute(stmt) != 0 ||
	    mysql_stmt_bind_result(stmt, results) != 0)
		return db_fail(db, stmt, "select operation for outbox row");

	fetched = mysql_stmt_fetch(stmt);
	if (fetched == 1) {
		enum db_result result = db_fail(db, stmt, "select operation for outbox row");

		mysql_stmt_free_result(stmt);
		return result;
	}
	mysql_stmt_free_result(stmt);
	if (fetched == MYSQL_NO_DATA)
		return DB_NOT_FOUND;
	status_name[status_len < status_size ? status_len : status_size - 1] = '\0';
	*expires_at = expires;
	return DB_OK;
}

/* Executes a prepared UPDATE with its parameters bound. */
static enum db_result outbox_update(struct db *db, const char *sql, MYSQL_BIND *params,
	const char *what)
{
	MYSQL_STMT *stmt;

	stmt = db_prepare(db, sql);
	if (stmt == NULL)
		return outbox_prepare_failed(db);
	if (mysql_stmt_bind_param(stmt, params) != 0 || mysql_stmt_execute(stmt) != 0)
		return db_fail(db, stmt, what);
	return DB_OK;
}

static enum db_result outbox_lease(struct db *db, uint64_t id, int64_t until)
{
	MYSQL_BIND params[2];
	long long next_try_at = until, row_id = (long long)id;

	outbox_bind_longlong(&params[0], &next_try_at);
	outbox_bind_longlong(&params[1], &row_id);
	return outbox_update(db, outbox_sql_lease, params, "lease outbox row");
}

/* Sets a final status (sent, failed, dropped) and wipes the sealed code. */
static enum db_result outbox_finish(struct db *db, uint64_t id, const char *status,
	int64_t now, const char *reply)
{
	MYSQL_BIND params[4];
	long long status_at = now, row_id = (long long)id;

	outbox_bind_text(&params[0], status);
	outbox_bind_longlong(&params[1], &status_at);
	outbox_bind_text(&params[2], reply);
	outbox_bind_longlong(&params[3], &row_id);
	return outbox_update(db, outbox_sql_finish, params, "finish outbox row");
}

/* Drops, fails or leases the locked row according to its operation and its tries. */
static enum db_result outbox_decide(struct db *db, int64_t now, long lease_seconds,
	long max_tries, struct outbox_row *row, const char *last_reply)
{
	char status[16] = "";
	char reply[OUTBOX_REPLY_MAX + 1];
	enum db_result result;

	result = outbox_select_operation(db, row->operation_uuid, status, sizeof(status),
		&row->expires_at);
	if (result != DB_OK && result != DB_NOT_FOUND)
		return result;
	if (result == DB_NOT_FOUND || strcmp(status, "pending") != 0 || now >= row->expires_at) {
		row->dropped = true;
		snprintf(reply, sizeof(reply), "not sent: the operation is %s",
			result == DB_NOT_FOUND ? "gone" : strcmp(status, "pending") != 0 ?
			status : "expired");
		return outbox_finish(db, row->id, "dropped", now, reply);
	}
	if (!row->has_code || (long)row->tries >= max_tries) {
		row->exhausted = true;
		if (!row->has_code)
			snprintf(reply, sizeof(reply), "not sent: the row has no sealed code");
		else if (last_reply[0] != '\0')
			snprintf(reply, sizeof(reply), "%s", last_reply);
		else
			snprintf(reply, sizeof(reply), "not sent: gave up after %u tries", row->tries);
		return outbox_finish(db, row->id, "failed", now, reply);
	}
	row->tries++;
	return outbox_lease(db, row->id, now + lease_seconds);
}

enum db_result outbox_claim(struct db *db, int64_t now, long lease_seconds, long max_tries,
	struct outbox_row *row)
{
	struct outbox_fetch *fetch = NULL;
	char *params = NULL;
	enum db_result result;

	memset(row, 0, sizeof(*row));
	fetch = calloc(1, sizeof(*fetch));
	params = malloc(OUTBOX_PARAMS_MAX + 1);
	if (fetch == NULL || params == NULL) {
		result = DB_FAILED;
		goto out;
	}
	row->params = params;
	params = NULL;

	result = db_begin(db);
	if (result != DB_OK)
		goto out;
	result = outbox_select_due(db, now, row, fetch);
	if (result == DB_OK)
		result = outbox_decide(db, now, lease_seconds, max_tries, row, fetch->last_reply);
	if (result == DB_OK)
		result = db_commit(db);
	else
		db_rollback(db);
out:
	if (result != DB_OK)
		outbox_row_clear(row);
	free(params);
	free(fetch);
	return result;
}

void outbox_row_clear(struct outbox_row *row)
{
	free(row->params);
	row->params = NULL;
	crypto_wipe(row->code_sealed, sizeof(row->code_sealed));
	row->code_sealed_len = 0;
	row->has_code = false;
}

enum db_result outbox_mark_sent(struct db *db, uint64_t id, int64_t now, const char *reply)
{
	return outbox_finish(db, id, "sent", now, reply);
}

enum db_result outbox_mark_failed(struct db *db, uint64_t id, int64_t now, const char *reply)
{
	return outbox_finish(db, id, "failed", now, reply);
}

enum db_result outbox_mark_retrying(struct db *db, uint64_t id, int64_t now,
	int64_t next_try_at, const char *reply)
{
	MYSQL_BIND params[4];
	long long status_at = now, next = next_try_at, row_id = (long long)id;

	outbox_bind_longlong(&params[0], &status_at);
	outbox_bind_longlong(&params[1], &next);
	outbox_bind_text(&params[2], reply);
	outbox_bind_longlong(&params[3], &row_id);
	return outbox_update(db, outbox_sql_retry, params, "mark outbox row retrying");
}
