/* One MariaDB connection per process, opened lazily, with a cache of prepared statements. */
#include "autoconfig.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>

#include "config.h"
#include "crypto.h"
#include "db.h"
#include "log.h"

/* The maximum number of distinct SQL strings, well above the dozen that store.c has. */
#define DB_STATEMENT_MAX 48

/*
 * A read or write that waits longer than this many seconds fails as a lost
 * connection, so a hung server or a silent network partition costs a
 * worker half a minute instead of blocking it forever. It is longer than
 * the lock wait set in db_set_options, so a lock held too long ends as
 * ER_LOCK_WAIT_TIMEOUT and not as a dropped connection.
 */
#define DB_IO_TIMEOUT_SECONDS 30

struct db_statement {
	const char *sql;
	MYSQL_STMT *stmt;
};

struct db {
	const struct config_database *cfg;
	char *password;   /* NULL: connect without a password */
	MYSQL *mysql;     /* NULL while not connected */
	struct db_statement statements[DB_STATEMENT_MAX];
	size_t statement_count;
};

struct db *db_create(const struct config_database *cfg, char *err, size_t err_size)
{
	struct db *db = NULL;
	unsigned char *secret = NULL;
	size_t secret_len = 0;

	db = calloc(1, sizeof(*db));
	if (db == NULL) {
		snprintf(err, err_size, "cannot allocate the database handle: %s", strerror(errno));
		return NULL;
	}
	db->cfg = cfg;
	if (cfg->password_file == NULL || cfg->password_file[0] == '\0')
		return db;

	/* config_read_secret resolves a relative path under $CREDENTIALS_DIRECTORY. */
	if (config_read_secret(cfg->password_file, 1, &secret, &secret_len, err, err_size) != 0)
		goto fail;

	/* mysql_real_connect takes a C string, so the secret gets a NUL. */
	db->password = malloc(secret_len + 1);
	if (db->password == NULL) {
		snprintf(err, err_size, "cannot allocate the database password: %s",
			strerror(errno));
		goto fail;
	}
	memcpy(db->password, secret, secret_len);
	db->password[secret_len] = '\0';
	crypto_wipe(secret, secret_len);
	free(secret);
	return db;

fail:
	if (secret != NULL) {
		crypto_wipe(secret, secret_len);
		free(secret);
	}
	db_destroy(db);
	return NULL;
}

/* Closes every cached statement and the connection; the next call reconnects. */
static void db_disconnect(struct db *db)
{
	size_t i;

	for (i = 0; i < db->statement_count; i++)
		mysql_stmt_close(db->statements[i].stmt);
	db->statement_count = 0;
	if (db->mysql != NULL)
		mysql_close(db->mysql);
	db->mysql = NULL;
}

void db_destroy(struct db *db)
{
	if (db == NULL)
		return;
	db_disconnect(db);
	if (db->password != NULL) {
		crypto_wipe(db->password, strlen(db->password));
		free(db->password);
	}
	free(db);
}

/* Sets the options of a new handle: time-outs, character set and session settings. */
static void db_set_options(struct db *db, MYSQL *mysql)
{
	unsigned int connect_timeout = (unsigned int)db->cfg->connect_timeout;
	unsigned int io_timeout = DB_IO_TIMEOUT_SECONDS;
	my_bool reconnect = 0;

	mysql_options(mysql, MYSQL_OPT_CONNECT_TIMEOUT, &connect_timeout);
	mysql_options(mysql, MYSQL_OPT_READ_TIMEOUT, &io_timeout);
	mysql_options(mysql, MYSQL_OPT_WRITE_TIMEOUT, &io_timeout);
	mysql_options(mysql, MYSQL_SET_CHARSET_NAME, "utf8mb4");

	/*
	 * A silent reconnect would drop an open transaction and every prepared
	 * statement unnoticed. Instead db_fail closes a lost connection and the
	 * next db_connect opens a new one.
	 */
	mysql_options(mysql, MYSQL_OPT_RECONNECT, &reconnect);

	/*
	 * The transactions of operations.c lock the rows they change with
	 * SELECT ... FOR UPDATE on a primary key, so READ COMMITTED is enough,
	 * and it takes no gap locks. A lock wait of 10 s ends well before
	 * DB_IO_TIMEOUT_SECONDS.
	 */
	mysql_options(mysql, MYSQL_INIT_COMMAND,
		"SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED");
	mysql_options(mysql, MYSQL_INIT_COMMAND, "SET SESSION innodb_lock_wait_timeout = 10");
	mysql_options(mysql, MYSQL_INIT_COMMAND, "SET SESSION autocommit = 1");
}

enum db_result db_connect(struct db *db)
{
	const struct config_database *cfg = db->cfg;
	const char *socket_path = NULL;
	const char *host = cfg->host;
	MYSQL *mysql;

	if (db->mysql != NULL)
		return DB_OK;

	mysql = mysql_init(NULL);
	if (mysql == NULL) {
		log_error("cannot allocate a database handle");
		return DB_FAILED;
	}
	db_set_options(db, mysql);

	/* A socket wins over host and port; "localhost" makes the library use it. */
	if (cfg->socket != NULL && cfg->socket[0] != '\0') {
		socket_path = cfg->socket;
		host = "localhost";
	} else if (host == NULL || host[0] == '\0') {
		host = "localhost";
	}
	/* CLIENT_FOUND_ROWS: an UPDATE reports the rows it matched, changed or not. */
	if (mysql_real_connect(mysql, host, cfg->user, db->password, cfg->name,
			(unsigned int)cfg->port, socket_path, CLIENT_FOUND_ROWS) == NULL) {
		log_error("cannot connect to database %s at %s: %s (error %u)", cfg->name,
			socket_path != NULL ? socket_path : host, mysql_error(mysql),
			mysql_errno(mysql));
		mysql_close(mysql);
		return DB_UNAVAILABLE;
	}
	db->mysql = mysql;
	log_info("connected to database %s at %s", cfg->name,
		socket_path != NULL ? socket_path : host);
	return DB_OK;
}

MYSQL *db_mysql(struct db *db)
{
	return db->mysql;
}

MYSQL_STMT *db_prepare(struct db *db, const char *sql)
{
	MYSQL_STMT *stmt = NULL;
	size_t i;

	if (db_connect(db) != DB_OK)
		return NULL;
	for (i = 0; i < db->statement_count; i++)
		if (db->statements[i].sql == sql)
			return db->statements[i].stmt;

	if (db->statement_count == DB_STATEMENT_MAX) {
		log_error("cannot prepare statement: more than %d distinct statements",
			DB_STATEMENT_MAX);
		return NULL;
	}
	stmt = mysql_stmt_init(db->mysql);
	if (stmt == NULL) {
		db_fail(db, NULL, "prepare");
		return NULL;
	}
	if (mysql_stmt_prepare(stmt, sql, strlen(sql)) != 0) {
		db_fail(db, stmt, "prepare");
		mysql_stmt_close(stmt);
		return NULL;
	}
	db->statements[db->statement_count].sql = sql;
	db->statements[db->statement_count].stmt = stmt;
	db->statement_count++;
	return stmt;
}

/* True for the client errors that mean the connection can no longer be used. */
static bool db_error_is_connection(unsigned int code)
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

enum db_result db_fail(struct db *db, MYSQL_STMT *stmt, const char *what)
{
	unsigned int code = 0;
	const char *message = "";

	/* db_connect has logged why there is no connection. */
	if (db->mysql == NULL)
		return DB_UNAVAILABLE;
	if (stmt != NULL) {
		code = mysql_stmt_errno(stmt);
		message = mysql_stmt_error(stmt);
	}
	if (code == 0) {
		code = mysql_errno(db->mysql);
		message = mysql_error(db->mysql);
	}

	if (db_error_is_connection(code)) {
		log_error("database connection lost on %s: %s (error %u)", what, message, code);
		/* The statement belongs to the connection about to be closed. */
		db_disconnect(db);
		return DB_UNAVAILABLE;
	}

	/*
	 * The transactions of operations.c lock the operation row first and the
	 * user's TOTP row second, so they do not deadlock among themselves. A
	 * deadlock or a lock wait time-out therefore involves another client,
	 * such as the mailer or an operator's session. The server has rolled
	 * back the statement (the whole transaction on a deadlock), the caller
	 * rolls back the rest and nothing is committed, so the request gets
	 * 503001 and the client may retry it.
	 */
	if (code == ER_LOCK_DEADLOCK || code == ER_LOCK_WAIT_TIMEOUT) {
		log_warning("database lock conflict on %s: %s (error %u)", what, message, code);
		return DB_UNAVAILABLE;
	}
	log_error("database statement failed on %s: %s (error %u)", what, message, code);
	return DB_FAILED;
}

/* Runs a statement without parameters on the connection. */
static enum db_result db_query(struct db *db, const char *sql, const char *what)
{
	enum db_result result;

	result = db_connect(db);
	if (result != DB_OK)
		return result;
	if (mysql_real_query(db->mysql, sql, strlen(sql)) != 0)
		return db_fail(db, NULL, what);
	return DB_OK;
}

enum db_result db_begin(struct db *db)
{
	bool was_connected = db->mysql != NULL;
	enum db_result result;

	result = db_query(db, "START TRANSACTION", "begin");

	/*
	 * The server closes a connection left idle past its wait_timeout, and
	 * only the next statement shows it. Nothing has happened in this
	 * transaction yet, so one fresh connection is tried before giving up.
	 */
	if (result == DB_UNAVAILABLE && was_connected && db->mysql == NULL)
		result = db_query(db, "START TRANSACTION", "begin");
	return result;
}

enum db_result db_commit(struct db *db)
{
	if (db->mysql == NULL)
		return DB_UNAVAILABLE;
	if (mysql_commit(db->mysql) != 0)
		return db_fail(db, NULL, "commit");
	return DB_OK;
}

void db_rollback(struct db *db)
{
	if (db->mysql == NULL)
		return;
	if (mysql_rollback(db->mysql) != 0)
		db_fail(db, NULL, "rollback");
}
