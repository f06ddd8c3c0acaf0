/* The mailer's side of mail_outbox: claiming due rows and recording how delivery ended. */
#include "autoconfig.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mysql.h>

#include "crypto.h"
#include "log.h"
#include "outbox.h"
#include "store.h"

/* A TEXT column stores at most 65,535 bytes. */
#define OUTBOX_PARAMS_MAX 65535
/* VARCHAR(512) in sql/001_initial.sql. */
#define OUTBOX_REPLY_MAX 512
/* audit_log.detail is VARCHAR(600) since sql/003_audit_detail_length.sql: characters, not bytes. */
#define OUTBOX_AUDIT_DETAIL_MAX 600
/* Rows that one SELECT of outbox_list reads; tests/integration/outbox.sh lists one more. */
#define OUTBOX_LIST_BATCH 100

/*
 * SKIP LOCKED (MariaDB 10.6 and later, run here on 10.11) lets several
 * mailers claim rows at once, each taking the row due longest that no other
 * transaction has locked. Ordering by next_try_at rather than id means a
 * new code is not kept waiting behind old messages that keep failing.
 */
static const char outbox_sql_select_due[] =
	"SELECT id, operation_uuid, recipient, template, locale, kind, params, code_sealed,"
	" seal_key_id, tries, last_reply FROM mail_outbox"
	" WHERE status IN ('queued', 'retrying') AND next_try_at <= ?"
	" ORDER BY next_try_at, id LIMIT 1 FOR UPDATE SKIP LOCKED";

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

/* The operation and user of an outbox row, for its audit row. */
static const char outbox_sql_select_owner[] =
	"SELECT m.operation_uuid, o.user_id FROM mail_outbox m"
	" JOIN operations o ON o.uuid = m.operation_uuid WHERE m.id = ?";

/* One batch of outbox_list: the rows below an id, newest first. */
static const char outbox_sql_list[] =
	"SELECT id, operation_uuid, recipient, status, tries, status_at, next_try_at, last_reply"
	" FROM mail_outbox WHERE id < ? ORDER BY id DESC LIMIT ?";

static const char outbox_sql_list_failed[] =
	"SELECT id, operation_uuid, recipient, status, tries, status_at, next_try_at, last_reply"
	" FROM mail_outbox WHERE status = 'failed' AND id < ? ORDER BY id DESC LIMIT ?";

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

/* Binds one result column to buffer of size bytes, leaving room for a NUL after text. */
static void outbox_bind_result(MYSQL_BIND *bind, unsigned long *length, my_bool *is_null,
	my_bool *error, enum enum_field_types type, void *buffer, unsigned long size)
{
	bind->buffer_type = type;
	bind->buffer = buffer;
	bind->buffer_length = type == MYSQL_TYPE_STRING ? size - 1 : size;
	bind->length = length;
	bind->is_null = is_null;
	bind->error = error;
}

/* Binds result column i of the due-row SELECT to buffer. */
static void outbox_bind_column(struct outbox_fetch *fetch, enum outbox_column i,
	enum enum_field_types type, void *buffer, unsigned long size)
{
	outbox_bind_result(&fetch->bind[i], &fetch->length[i], &fetch->is_null[i],
		&fetch->error[i], type, buffer, size);
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

/*
 * Executes a prepared UPDATE with its parameters bound. When matched is not
 * NULL, it receives the number of rows the WHERE clause matched, which
 * CLIENT_FOUND_ROWS (set by db_connect) makes the affected-rows count.
 */
static enum db_result outbox_update(struct db *db, const char *sql, MYSQL_BIND *params,
	const char *what, unsigned long long *matched)
{
	MYSQL_STMT *stmt;

	stmt = db_prepare(db, sql);
	if (stmt == NULL)
		return outbox_prepare_failed(db);
	if (mysql_stmt_bind_param(stmt, params) != 0 || mysql_stmt_execute(stmt) != 0)
		return db_fail(db, stmt, what);
	if (matched != NULL)
		*matched = (unsigned long long)mysql_stmt_affected_rows(stmt);
	return DB_OK;
}

static enum db_result outbox_lease(struct db *db, uint64_t id, int64_t until)
{
	MYSQL_BIND params[2];
	long long next_try_at = until, row_id = (long long)id;

	outbox_bind_longlong(&params[0], &next_try_at);
	outbox_bind_longlong(&params[1], &row_id);
	return outbox_update(db, outbox_sql_lease, params, "lease outbox row", NULL);
}

/*
 * Sets a final status (sent, failed, dropped) and wipes the sealed code.
 * When finished is not NULL, it is set to whether the row changed. Only a
 * row that is queued or retrying changes.
 */
static enum db_result outbox_finish(struct db *db, uint64_t id, const char *status,
	int64_t now, const char *reply, bool *finished)
{
	MYSQL_BIND params[4];
	long long status_at = now, row_id = (long long)id;
	unsigned long long matched = 0;
	enum db_result result;

	outbox_bind_text(&params[0], status);
	outbox_bind_longlong(&params[1], &status_at);
	outbox_bind_text(&params[2], reply);
	outbox_bind_longlong(&params[3], &row_id);
	result = outbox_update(db, outbox_sql_finish, params, "finish outbox row", &matched);
	if (finished != NULL)
		*finished = result == DB_OK && matched > 0;
	return result;
}

/* Reads the uuid and user of the row's operation. Returns DB_NOT_FOUND when either is gone. */
static enum db_result outbox_select_owner(struct db *db, uint64_t id, unsigned char uuid[16],
	char *user_id, size_t user_id_size)
{
	MYSQL_STMT *stmt;
	MYSQL_BIND param, results[2];
	unsigned long uuid_len = 0, user_len = 0;
	long long row_id = (long long)id;
	int fetched;

	stmt = db_prepare(db, outbox_sql_select_owner);
	if (stmt == NULL)
		return outbox_prepare_failed(db);
	outbox_bind_longlong(&param, &row_id);
	memset(results, 0, sizeof(results));
	results[0].buffer_type = MYSQL_TYPE_BLOB;
	results[0].buffer = uuid;
	results[0].buffer_length = 16;
	results[0].length = &uuid_len;
	results[1].buffer_type = MYSQL_TYPE_STRING;
	results[1].buffer = user_id;
	results[1].buffer_length = user_id_size - 1;
	results[1].length = &user_len;
	if (mysql_stmt_bind_param(stmt, &param) != 0 || mysql_stmt_execute(stmt) != 0 ||
	    mysql_stmt_bind_result(stmt, results) != 0)
		return db_fail(db, stmt, "select operation of outbox row");

	fetched = mysql_stmt_fetch(stmt);
	if (fetched == 1) {
		enum db_result result = db_fail(db, stmt, "select operation of outbox row");

		mysql_stmt_free_result(stmt);
		return result;
	}
	mysql_stmt_free_result(stmt);
	if (fetched == MYSQL_NO_DATA)
		return DB_NOT_FOUND;
	if (fetched == MYSQL_DATA_TRUNCATED || uuid_len != 16) {
		log_error("cannot read the operation of outbox row %llu: a column does not fit"
			" the schema", (unsigned long long)id);
		return DB_FAILED;
	}
	user_id[user_len] = '\0';
	return DB_OK;
}

/* Copies the first max_chars UTF-8 characters of text into out, never splitting one. */
static void outbox_copy_chars(const char *text, size_t max_chars, char *out, size_t out_size)
{
	size_t chars = 0, len;

	for (len = 0; text[len] != '\0'; len++) {
		bool starts_char = ((unsigned char)text[len] & 0xc0) != 0x80;

		/* A character is at most 4 bytes, so stop where the next one might not fit. */
		if (starts_char && (chars == max_chars || len + 4 >= out_size))
			break;
		if (starts_char)
			chars++;
	}
	memcpy(out, text, len);
	out[len] = '\0';
}

static int64_t outbox_now_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/*
 * Writes the "mail_failed" audit row of the row's operation, with the
 * reply cut to the size of audit_log.detail. The user id comes from a plain
 * SELECT, a non-locking read in InnoDB, so this transaction takes no lock
 * on the operation row that requests on the operation would wait for.
 */
static enum db_result outbox_audit_failed(struct db *db, uint64_t id, const char *reply)
{
	unsigned char uuid[16];
	char user_id[STORE_USER_ID_SIZE];
	char detail[OUTBOX_AUDIT_DETAIL_MAX * 4 + 1];
	struct store_audit audit = {
		.operation_uuid = uuid,
		.user_id = user_id,
		.event = "mail_failed",
	};
	enum db_result result;

	result = outbox_select_owner(db, id, uuid, user_id, sizeof(user_id));
	if (result == DB_NOT_FOUND) {
		/* audit_log needs the operation's user, and a deleted operation has none. */
		log_warning("outbox row %llu failed, but its operation no longer exists:"
			" no audit row written", (unsigned long long)id);
		return DB_OK;
	}
	if (result != DB_OK)
		return result;
	if (reply != NULL) {
		outbox_copy_chars(reply, OUTBOX_AUDIT_DETAIL_MAX, detail, sizeof(detail));
		audit.detail = detail;
	}
	audit.at_ms = outbox_now_ms();
	return store_audit_insert(db, &audit);
}

/* Sets the row 'failed' and, when it changed, writes its audit row, in the caller's transaction. */
static enum db_result outbox_fail(struct db *db, uint64_t id, int64_t now, const char *reply)
{
	bool finished = false;
	enum db_result result;

	result = outbox_finish(db, id, "failed", now, reply, &finished);
	if (result != DB_OK || !finished)
		return result;
	return outbox_audit_failed(db, id, reply);
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
		return outbox_finish(db, row->id, "dropped", now, reply, NULL);
	}
	/*
	 * A mailer records its last try as failed itself, so a row still due
	 * after max_tries lost the outcome of a try (its mailer died). It gets
	 * one more try, as any row whose mailer died does.
	 */
	if (!row->has_code || (long)row->tries > max_tries) {
		row->exhausted = true;
		if (!row->has_code)
			snprintf(reply, sizeof(reply), "not sent: the row has no sealed code");
		else if (last_reply[0] != '\0')
			snprintf(reply, sizeof(reply), "%s", last_reply);
		else
			snprintf(reply, sizeof(reply),
				"gave up after %u tries; the last try recorded no outcome", row->tries);
		return outbox_fail(db, row->id, now, reply);
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
	return outbox_finish(db, id, "sent", now, reply, NULL);
}

enum db_result outbox_mark_failed(struct db *db, uint64_t id, int64_t now, const char *reply)
{
	enum db_result result;

	result = db_begin(db);
	if (result != DB_OK)
		return result;
	result = outbox_fail(db, id, now, reply);
	if (result == DB_OK)
		return db_commit(db);
	db_rollback(db);
	return result;
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
	return outbox_update(db, outbox_sql_retry, params, "mark outbox row retrying", NULL);
}

/* Result buffers of one outbox_list batch, apart from those in struct outbox_listing. */
struct outbox_list_fetch {
	MYSQL_BIND bind[8];
	unsigned long length[8];
	my_bool is_null[8];
	my_bool error[8];
	unsigned long long id;
	long long status_at;
	long long next_try_at;
};

/* Binds result column i of outbox_sql_list to buffer. */
static void outbox_list_bind(struct outbox_list_fetch *fetch, size_t i,
	enum enum_field_types type, void *buffer, unsigned long size)
{
	outbox_bind_result(&fetch->bind[i], &fetch->length[i], &fetch->is_null[i],
		&fetch->error[i], type, buffer, size);
}

/* Binds the columns of outbox_sql_list, in order, to fetch and row. */
static void outbox_list_bind_results(struct outbox_list_fetch *fetch, struct outbox_listing *row)
{
	memset(fetch->bind, 0, sizeof(fetch->bind));
	outbox_list_bind(fetch, 0, MYSQL_TYPE_LONGLONG, &fetch->id, sizeof(fetch->id));
	fetch->bind[0].is_unsigned = 1;
	outbox_list_bind(fetch, 1, MYSQL_TYPE_BLOB, row->operation_uuid,
		sizeof(row->operation_uuid));
	outbox_list_bind(fetch, 2, MYSQL_TYPE_STRING, row->recipient, sizeof(row->recipient));
	outbox_list_bind(fetch, 3, MYSQL_TYPE_STRING, row->status, sizeof(row->status));
	outbox_list_bind(fetch, 4, MYSQL_TYPE_LONG, &row->tries, sizeof(row->tries));
	fetch->bind[4].is_unsigned = 1;
	outbox_list_bind(fetch, 5, MYSQL_TYPE_LONGLONG, &fetch->status_at,
		sizeof(fetch->status_at));
	outbox_list_bind(fetch, 6, MYSQL_TYPE_LONGLONG, &fetch->next_try_at,
		sizeof(fetch->next_try_at));
	outbox_list_bind(fetch, 7, MYSQL_TYPE_STRING, row->last_reply, sizeof(row->last_reply));
}

/* Ends the fetched text columns with a NUL and copies the numbers into row. */
static void outbox_list_finish_row(const struct outbox_list_fetch *fetch,
	struct outbox_listing *row)
{
	row->recipient[fetch->is_null[2] ? 0 : fetch->length[2]] = '\0';
	row->status[fetch->is_null[3] ? 0 : fetch->length[3]] = '\0';
	row->has_last_reply = !fetch->is_null[7];
	row->last_reply[row->has_last_reply ? fetch->length[7] : 0] = '\0';
	row->id = fetch->id;
	row->status_at = fetch->status_at;
	row->next_try_at = fetch->next_try_at;
}

/*
 * Reads up to limit rows with an id below *below and calls visit on each,
 * lowering *below to the last id and adding to *count. DB_OK also when
 * there are none.
 */
static enum db_result outbox_list_batch(struct db *db, const char *sql, long limit,
	unsigned long long *below, long *count,
	int (*visit)(const struct outbox_listing *row, void *arg), void *arg)
{
	struct outbox_list_fetch fetch;
	struct outbox_listing *row;
	MYSQL_STMT *stmt;
	MYSQL_BIND params[2];
	long long batch = limit;
	enum db_result result = DB_OK;
	int status;

	row = calloc(1, sizeof(*row));
	if (row == NULL) {
		log_error("cannot list outbox rows: out of memory");
		return DB_FAILED;
	}
	stmt = db_prepare(db, sql);
	if (stmt == NULL) {
		free(row);
		return outbox_prepare_failed(db);
	}
	memset(&fetch, 0, sizeof(fetch));
	memset(params, 0, sizeof(params));
	params[0].buffer_type = MYSQL_TYPE_LONGLONG;
	params[0].buffer = below;
	params[0].is_unsigned = 1;
	outbox_bind_longlong(&params[1], &batch);
	outbox_list_bind_results(&fetch, row);
	/*
	 * The whole batch is read before visit runs, so a slow reader of the
	 * output keeps no result set open on the server.
	 */
	if (mysql_stmt_bind_param(stmt, params) != 0 || mysql_stmt_execute(stmt) != 0 ||
	    mysql_stmt_bind_result(stmt, fetch.bind) != 0 || mysql_stmt_store_result(stmt) != 0) {
		free(row);
		return db_fail(db, stmt, "list outbox rows");
	}

	for (status = mysql_stmt_fetch(stmt); status == 0; status = mysql_stmt_fetch(stmt)) {
		outbox_list_finish_row(&fetch, row);
		*below = row->id;
		(*count)++;
		if (visit(row, arg) != 0) {
			result = DB_FAILED;
			break;
		}
	}
	if (status == MYSQL_DATA_TRUNCATED) {
		log_error("cannot list outbox rows: a column is longer than the schema allows");
		result = DB_FAILED;
	} else if (status == 1) {
		result = db_fail(db, stmt, "list outbox rows");
	}
	if (db_mysql(db) != NULL)
		mysql_stmt_free_result(stmt);
	free(row);
	return result;
}

/*
 * The rows are read in batches of OUTBOX_LIST_BATCH, each below the last id
 * shown, so a row that changes during a long listing shows the state its
 * batch read.
 */
enum db_result outbox_list(struct db *db, bool failed_only, long limit,
	int (*visit)(const struct outbox_listing *row, void *arg), void *arg)
{
	const char *sql = failed_only ? outbox_sql_list_failed : outbox_sql_list;
	unsigned long long below = ULLONG_MAX;
	long listed = 0;
	long before;
	enum db_result result = DB_OK;

	while (result == DB_OK && listed < limit) {
		long batch = limit - listed < OUTBOX_LIST_BATCH ? limit - listed : OUTBOX_LIST_BATCH;

		before = listed;
		result = outbox_list_batch(db, sql, batch, &below, &listed, visit, arg);
		/* A short batch means no older row is left. */
		if (listed - before < batch)
			break;
	}
	return result;
}
