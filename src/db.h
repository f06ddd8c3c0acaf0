/* One MariaDB connection per process, with prepared statements kept for its lifetime. */
#ifndef USEROPS_DB_H
#define USEROPS_DB_H

#include <stddef.h>
#include <mysql.h>

struct config_database;
struct db;

enum db_result {
	DB_OK,
	DB_NOT_FOUND,
	DB_UNAVAILABLE,   /* the server cannot be reached: 503001 */
	DB_FAILED,        /* any other error: 500001 */
};

/* Reads the password file (when set) and prepares the handle; connects nothing. */
struct db *db_create(const struct config_database *cfg, char *err, size_t err_size);

void db_destroy(struct db *db);

/* Connects when not connected; a lost connection is reopened here. */
enum db_result db_connect(struct db *db);

MYSQL *db_mysql(struct db *db);

/*
 * Returns the statement for sql, prepared on first use on this connection
 * and kept until the connection is lost. sql is looked up by address, so
 * pass a string constant. NULL on failure, after db_fail has classified and logged it.
 */
MYSQL_STMT *db_prepare(struct db *db, const char *sql);

enum db_result db_begin(struct db *db);
enum db_result db_commit(struct db *db);
void db_rollback(struct db *db);

/*
 * Classifies the last error of the connection or of stmt (may be NULL),
 * logs it once, and marks the connection lost when the server went away.
 */
enum db_result db_fail(struct db *db, MYSQL_STMT *stmt, const char *what);

#endif
