/* Schema migrations: NNN_name.sql files applied in order and recorded in schema_migrations. */
#ifndef USEROPS_MIGRATE_H
#define USEROPS_MIGRATE_H

#include <stddef.h>
#include <stdio.h>
#include <mysql.h>

struct config_database;

/* The environment variable that names the folder of migration files. */
#define MIGRATE_DIR_ENV "USEROPS_SQL_DIR"

/* One statement of a migration file: a slice of its text and the line where its code starts. */
struct migrate_statement {
	size_t offset;
	size_t length;
	unsigned long line;
};

/*
 * Returns the folder of migration files: dir when not NULL, else
 * $USEROPS_SQL_DIR when set and not empty, else USEROPS_DATADIR "/sql".
 */
const char *migrate_dir(const char *dir);

/*
 * Opens a connection of its own for migrations, with the settings of
 * [database] but no read time-out, because one ALTER TABLE on a large
 * table may run for minutes. Returns NULL with a message in err.
 */
MYSQL *migrate_connect(const struct config_database *cfg, char *err, size_t err_size);

/*
 * Splits the text of a migration file into statements. A statement ends at
 * a ';' outside quotes, backticks and comments that is followed on its line
 * only by blanks or a comment. Slices that contain only blanks and
 * comments are dropped. Returns the number of statements (and a new array
 * in *statements, which the caller frees), or -1 with a message in err on
 * an unterminated quote or comment.
 */
long migrate_split(const char *sql, size_t len, struct migrate_statement **statements,
	char *err, size_t err_size);

/*
 * Applies every migration in dir that schema_migrations does not record, in
 * version order, under the server lock "userops_migrate" (waiting up to
 * 60 s for it), and prints one line per migration applied to out. A pending
 * file that cannot be split stops the run before anything is applied.
 * Recorded migrations whose file changed are logged as warnings. Returns 0,
 * or -1 with a message in err.
 */
int migrate_apply(MYSQL *mysql, const char *dir, FILE *out, char *err, size_t err_size);

/*
 * Prints one line per migration, in version order, to out: "VERSION NAME
 * applied YYYY-MM-DD HH:MM:SS" (UTC) or "VERSION NAME pending". Changes
 * nothing in the database. Returns 0, or -1 with a message in err.
 */
int migrate_status(MYSQL *mysql, const char *dir, FILE *out, char *err, size_t err_size);

#endif
