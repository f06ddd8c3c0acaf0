/*
 * The SQL transaction of a successful userops confirm, on one MariaDB
 * connection with prepared statements, shared by confirm_sql and db_client.
 * confirm_sql.c lists the statements and where they come from.
 */
#ifndef USEROPS_BENCH_CONFIRM_TXN_H
#define USEROPS_BENCH_CONFIRM_TXN_H

#include <stdbool.h>
#include <stddef.h>

/* Connection settings, read from the environment by confirm_settings_from_env. */
struct confirm_settings {
	const char *socket;   /* Unix socket path of the server */
	const char *name;     /* database name */
	const char *user;
	char *password;       /* NULL: no password */
};

/* One connection with its prepared statements and the buffers of the row it reads. */
struct confirm_connection;

enum confirm_result {
	CONFIRM_OK,               /* committed: the operation is confirmed */
	CONFIRM_NOT_FOUND,        /* no operation has the uuid; rolled back */
	CONFIRM_CONFIRMED_BEFORE, /* the operation was confirmed before; rolled back */
	CONFIRM_CANCELLED,        /* the operation is cancelled; rolled back */
	CONFIRM_REJECTED,         /* the operation is rejected; rolled back */
	CONFIRM_EXPIRED,          /* expired, or pending past expires_at; rolled back */
	CONFIRM_FAILED,           /* a statement failed; rolled back, the connection is usable */
	CONFIRM_CONNECTION_LOST,  /* the connection is unusable: close it and open another */
};

/*
 * Reads the settings from USEROPS_BENCH_DB_SOCKET (required),
 * USEROPS_BENCH_DB_NAME (default userops), USEROPS_BENCH_DB_USER (default
 * userops) and USEROPS_BENCH_DB_PASSWORD_FILE (optional; its first line is
 * the password). Returns 0, or -1 with the reason in err.
 */
int confirm_settings_from_env(struct confirm_settings *settings, char *err, size_t err_size);

void confirm_settings_free(struct confirm_settings *settings);

/*
 * Connects with the session settings of userops' db.c (READ COMMITTED,
 * innodb_lock_wait_timeout 10, autocommit 1, utf8mb4, CLIENT_FOUND_ROWS) and
 * prepares every statement. Returns NULL with the reason in err.
 */
struct confirm_connection *confirm_connect(const struct confirm_settings *settings, char *err,
	size_t err_size);

void confirm_disconnect(struct confirm_connection *conn);

/* Pings the server; returns false when it does not respond. */
bool confirm_ping(struct confirm_connection *conn);

/*
 * Runs the confirm transaction on the operation uuid: lock and read the
 * row, mark it confirmed, insert the audit row and the outcome event, and
 * commit. client_address (may be NULL) and request_id go into the audit
 * row. On a result other than CONFIRM_OK, err contains the reason.
 */
enum confirm_result confirm_run(struct confirm_connection *conn, const unsigned char uuid[16],
	const char *client_address, const char *request_id, char *err, size_t err_size);

/*
 * Parses the first 36 characters of text, a uuid in 8-4-4-4-12 hex form,
 * into its 16 bytes. Returns false when they have another form; what
 * follows them is the caller's to check.
 */
bool confirm_parse_uuid(const char *text, unsigned char uuid[16]);

#endif
