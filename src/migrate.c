/*
 * Schema migrations. Each file NNN_name.sql in the migration folder is one
 * migration with version NNN. MariaDB commits every DDL statement on its
 * own, so a migration cannot be applied atomically. Its statements run one
 * by one with autocommit on, and the migration is recorded in
 * schema_migrations only after all of them succeed. When a statement fails
 * halfway, the statements before it stay applied and the migration stays
 * pending. The operator then repairs the database, or makes the file safe
 * to run again (for example with IF NOT EXISTS), and runs migrate again.
 */
#include "autoconfig.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <mysqld_error.h>

#include "config.h"
#include "crypto.h"
#include "log.h"
#include "migrate.h"

#define MIGRATE_LOCK_NAME "userops_migrate"
#define MIGRATE_LOCK_TIMEOUT 60
#define MIGRATE_STRING_(x) #x
#define MIGRATE_STRING(x) MIGRATE_STRING_(x)
/* Migrations larger than this are rejected, because schema files are a few kilobytes. */
#define MIGRATE_FILE_MAX (16L * 1024 * 1024)
#define MIGRATE_NAME_MAX 255
/* Versions are at most 9 digits, so every one fits the INT column. */
#define MIGRATE_VERSION_DIGITS_MAX 9

struct migrate_file {
	long version;
	char name[MIGRATE_NAME_MAX + 1];
	char *text;
	size_t len;
	char checksum[2 * CRYPTO_SHA256_SIZE + 1];
};

struct migrate_record {
	long version;
	char name[MIGRATE_NAME_MAX + 1];
	char checksum[2 * CRYPTO_SHA256_SIZE + 1];
	char applied_at[20];   /* YYYY-MM-DD HH:MM:SS, UTC */
};

struct migrate_plan {
	struct migrate_file *files;
	size_t file_count;
	struct migrate_record *records;
	size_t record_count;
};

static const char migrate_create_table_sql[] =
	"CREATE TABLE IF NOT EXISTS schema_migrations ("
	" version INT NOT NULL PRIMARY KEY,"
	" name VARCHAR(255) NOT NULL,"
	" checksum CHAR(64) NOT NULL,"
	" applied_at DATETIME(6) NOT NULL"
	") ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin";

static const char migrate_select_sql[] =
	"SELECT version, name, checksum, DATE_FORMAT(applied_at, '%Y-%m-%d %H:%i:%s')"
	" FROM schema_migrations ORDER BY version";

static const char migrate_insert_sql[] =
	"INSERT INTO schema_migrations (version, name, checksum, applied_at)"
	" VALUES (?, ?, ?, UTC_TIMESTAMP(6))";

const char *migrate_dir(const char *dir)
{
	const char *env;

	if (dir != NULL)
		return dir;
	env = getenv(MIGRATE_DIR_ENV);
	if (env != NULL && env[0] != '\0')
		return env;
	return USEROPS_DATADIR "/sql";
}

/* Reads [database] password_file into a new C string, or leaves *password NULL when none is set. */
static int migrate_read_password(const struct config_database *cfg, char **password, char *err,
	size_t err_size)
{
	unsigned char *secret = NULL;
	size_t secret_len = 0;

	*password = NULL;
	if (cfg->password_file == NULL || cfg->password_file[0] == '\0')
		return 0;
	if (config_read_secret(cfg->password_file, 1, &secret, &secret_len, err, err_size) != 0)
		return -1;
	*password = malloc(secret_len + 1);
	if (*password != NULL) {
		memcpy(*password, secret, secret_len);
		(*password)[secret_len] = '\0';
	} else {
		snprintf(err, err_size, "out of memory reading [database] password_file");
	}
	crypto_wipe(secret, secret_len);
	free(secret);
	return *password != NULL ? 0 : -1;
}

MYSQL *migrate_connect(const struct config_database *cfg, char *err, size_t err_size)
{
	unsigned int connect_timeout = (unsigned int)cfg->connect_timeout;
	const char *socket_path = NULL;
	const char *host = cfg->host;
	char *password = NULL;
	MYSQL *mysql = NULL;

	if (migrate_read_password(cfg, &password, err, err_size) != 0)
		return NULL;
	mysql = mysql_init(NULL);
	if (mysql == NULL) {
		snprintf(err, err_size, "cannot allocate a database handle");
		goto out;
	}
	mysql_options(mysql, MYSQL_OPT_CONNECT_TIMEOUT, &connect_timeout);
	mysql_options(mysql, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	mysql_options(mysql, MYSQL_INIT_COMMAND, "SET SESSION autocommit = 1");

	/* As in db.c: a socket wins over host and port, and "localhost" selects it. */
	if (cfg->socket != NULL && cfg->socket[0] != '\0') {
		socket_path = cfg->socket;
		host = "localhost";
	} else if (host == NULL || host[0] == '\0') {
		host = "localhost";
	}
	if (mysql_real_connect(mysql, host, cfg->user, password, cfg->name,
			(unsigned int)cfg->port, socket_path, 0) == NULL) {
		snprintf(err, err_size, "cannot connect to database %s at %s: %s", cfg->name,
			socket_path != NULL ? socket_path : host, mysql_error(mysql));
		mysql_close(mysql);
		mysql = NULL;
	}

out:
	if (password != NULL) {
		crypto_wipe(password, strlen(password));
		free(password);
	}
	return mysql;
}

/* Scanner states of migrate_split. */
enum migrate_scan_state {
	MIGRATE_CODE,
	MIGRATE_SINGLE_QUOTE,
	MIGRATE_DOUBLE_QUOTE,
	MIGRATE_BACKTICK,
	MIGRATE_LINE_COMMENT,
	MIGRATE_BLOCK_COMMENT,
};

/*
 * MariaDB starts a "--" comment only when white space or a control
 * character follows the dashes, so "1--1" stays arithmetic.
 */
static bool migrate_is_dash_comment(const char *sql, size_t len, size_t i)
{
	if (i + 1 >= len || sql[i] != '-' || sql[i + 1] != '-')
		return false;
	return i + 2 >= len || isspace((unsigned char)sql[i + 2]) ||
		iscntrl((unsigned char)sql[i + 2]);
}

/* Returns whether only blanks, then a line end or a comment, follow the ';' at i. */
static bool migrate_ends_line(const char *sql, size_t len, size_t i)
{
	size_t j = i + 1;

	while (j < len && (sql[j] == ' ' || sql[j] == '\t' || sql[j] == '\r'))
		j++;
	if (j >= len || sql[j] == '\n' || sql[j] == '#')
		return true;
	return migrate_is_dash_comment(sql, len, j);
}

static int migrate_push_statement(struct migrate_statement **statements, size_t *count,
	size_t *capacity, size_t offset, size_t length, unsigned long line)
{
	if (*count == *capacity) {
		size_t grown = *capacity == 0 ? 16 : *capacity * 2;
		struct migrate_statement *larger = realloc(*statements, grown * sizeof(**statements));

		if (larger == NULL)
			return -1;
		*statements = larger;
		*capacity = grown;
	}
	(*statements)[*count].offset = offset;
	(*statements)[*count].length = length;
	(*statements)[*count].line = line;
	(*count)++;
	return 0;
}

/*
 * Advances the scanner over the character at *i inside a quote or comment
 * and returns the next state. A backslash inside quotes escapes the next
 * character, as in MariaDB's default sql_mode. A doubled quote closes and
 * reopens the string, so it needs no special case.
 */
static enum migrate_scan_state migrate_scan_inside(enum migrate_scan_state state,
	const char *sql, size_t len, size_t *i)
{
	char c = sql[*i];

	switch (state) {
	case MIGRATE_SINGLE_QUOTE:
	case MIGRATE_DOUBLE_QUOTE:
		if (c == '\\' && *i + 1 < len) {
			(*i)++;
			return state;
		}
		if ((state == MIGRATE_SINGLE_QUOTE && c == '\'') ||
		    (state == MIGRATE_DOUBLE_QUOTE && c == '"'))
			return MIGRATE_CODE;
		return state;
	case MIGRATE_BACKTICK:
		return c == '`' ? MIGRATE_CODE : state;
	case MIGRATE_LINE_COMMENT:
		return c == '\n' ? MIGRATE_CODE : state;
	case MIGRATE_BLOCK_COMMENT:
		if (c == '*' && *i + 1 < len && sql[*i + 1] == '/') {
			(*i)++;
			return MIGRATE_CODE;
		}
		return state;
	case MIGRATE_CODE:
		break;
	}
	return state;
}

/*
 * Returns the state entered at sql[*i] in code, moving *i past a two-character
 * opener. *is_code is set when the character belongs to a statement. An
 * executable comment (slash, star, '!' or slash, star, "M!") counts as code
 * because the server runs it.
 */
static enum migrate_scan_state migrate_scan_code(const char *sql, size_t len, size_t *i,
	bool *is_code)
{
	char c = sql[*i];

	*is_code = false;
	if (c == '\'' || c == '"' || c == '`') {
		*is_code = true;
		return c == '\'' ? MIGRATE_SINGLE_QUOTE :
			c == '"' ? MIGRATE_DOUBLE_QUOTE : MIGRATE_BACKTICK;
	}
	if (c == '#' || migrate_is_dash_comment(sql, len, *i))
		return MIGRATE_LINE_COMMENT;
	if (c == '/' && *i + 1 < len && sql[*i + 1] == '*') {
		size_t rest = len - (*i + 2);
		const char *after = sql + *i + 2;

		*is_code = (rest >= 1 && after[0] == '!') ||
			(rest >= 2 && after[0] == 'M' && after[1] == '!');
		(*i)++;
		return MIGRATE_BLOCK_COMMENT;
	}
	*is_code = !isspace((unsigned char)c);
	return MIGRATE_CODE;
}

long migrate_split(const char *sql, size_t len, struct migrate_statement **statements,
	char *err, size_t err_size)
{
	enum migrate_scan_state state = MIGRATE_CODE;
	struct migrate_statement *found = NULL;
	size_t count = 0;
	size_t capacity = 0;
	size_t start = 0;
	unsigned long line = 1;
	unsigned long state_line = 1;
	unsigned long code_line = 0;   /* 0: no code yet in this statement */

	for (size_t i = 0; i < len; i++) {
		enum migrate_scan_state entered;
		bool is_code;

		if (state != MIGRATE_CODE) {
			state = migrate_scan_inside(state, sql, len, &i);
			if (sql[i] == '\n')
				line++;
			continue;
		}

		if (sql[i] == ';' && migrate_ends_line(sql, len, i)) {
			if (code_line != 0 && migrate_push_statement(&found, &count, &capacity,
					start, i - start, code_line) != 0)
				goto fail_memory;
			start = i + 1;
			code_line = 0;
			continue;
		}

		entered = migrate_scan_code(sql, len, &i, &is_code);
		if (is_code && code_line == 0)
			code_line = line;
		if (entered != MIGRATE_CODE) {
			state = entered;
			state_line = line;
		}
		if (sql[i] == '\n')
			line++;
	}

	if (state != MIGRATE_CODE && state != MIGRATE_LINE_COMMENT) {
		snprintf(err, err_size, "unterminated %s starting on line %lu",
			state == MIGRATE_BLOCK_COMMENT ? "comment" : "quoted string or name",
			state_line);
		free(found);
		return -1;
	}
	if (code_line != 0 &&
	    migrate_push_statement(&found, &count, &capacity, start, len - start, code_line) != 0)
		goto fail_memory;

	*statements = found;
	return (long)count;

fail_memory:
	snprintf(err, err_size, "out of memory splitting statements");
	free(found);
	return -1;
}

/*
 * Parses "NNN_name.sql" into its version and name. Returns 0, or -1 when
 * file_name has another form (the caller skips such files).
 */
static int migrate_parse_file_name(const char *file_name, long *version, char *name)
{
	size_t digits = strspn(file_name, "0123456789");
	size_t len = strlen(file_name);
	const char *rest = file_name + digits;
	size_t name_len;

	if (digits == 0 || digits > MIGRATE_VERSION_DIGITS_MAX || rest[0] != '_')
		return -1;
	if (len < digits + 1 + 4 || strcmp(file_name + len - 4, ".sql") != 0)
		return -1;
	name_len = len - digits - 1 - 4;
	if (name_len == 0 || name_len > MIGRATE_NAME_MAX)
		return -1;
	for (size_t i = 0; i < name_len; i++) {
		unsigned char c = (unsigned char)rest[1 + i];

		if (!isalnum(c) && c != '_' && c != '-')
			return -1;
	}

	*version = strtol(file_name, NULL, 10);
	memcpy(name, rest + 1, name_len);
	name[name_len] = '\0';
	return *version > 0 ? 0 : -1;
}

/* Reads a whole migration file and computes its SHA-256 as hex. */
static int migrate_read_file(const char *dir, const char *file_name, struct migrate_file *file,
	char *err, size_t err_size)
{
	char path[4096];
	unsigned char digest[CRYPTO_SHA256_SIZE];
	FILE *f = NULL;
	long size;
	int rc = -1;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, file_name) >= sizeof(path)) {
		snprintf(err, err_size, "migration path %s/%s is too long", dir, file_name);
		goto out;
	}
	f = fopen(path, "rb");
	if (f == NULL) {
		snprintf(err, err_size, "cannot open migration %s: %s", path, strerror(errno));
		goto out;
	}
	size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
	if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
		snprintf(err, err_size, "cannot read migration %s: %s", path, strerror(errno));
		goto out;
	}
	if (size > MIGRATE_FILE_MAX) {
		snprintf(err, err_size, "migration %s is larger than %ld bytes", path,
			MIGRATE_FILE_MAX);
		goto out;
	}
	file->text = malloc((size_t)size + 1);
	if (file->text == NULL) {
		snprintf(err, err_size, "out of memory reading migration %s", path);
		goto out;
	}
	file->len = fread(file->text, 1, (size_t)size, f);
	if (file->len != (size_t)size || ferror(f)) {
		snprintf(err, err_size, "cannot read migration %s", path);
		goto out;
	}
	file->text[file->len] = '\0';

	crypto_sha256(file->text, file->len, digest);
	crypto_hex_encode(digest, sizeof(digest), file->checksum);
	rc = 0;

out:
	if (f != NULL)
		fclose(f);
	return rc;
}

static int migrate_compare_files(const void *a, const void *b)
{
	const struct migrate_file *left = a;
	const struct migrate_file *right = b;

	return (left->version > right->version) - (left->version < right->version);
}

/* Appends one zeroed slot to plan->files and returns it, or NULL when memory runs out. */
static struct migrate_file *migrate_add_file(struct migrate_plan *plan)
{
	struct migrate_file *larger;

	larger = realloc(plan->files, (plan->file_count + 1) * sizeof(*plan->files));
	if (larger == NULL)
		return NULL;
	plan->files = larger;
	memset(&plan->files[plan->file_count], 0, sizeof(*plan->files));
	return &plan->files[plan->file_count++];
}

/* Reads every NNN_name.sql file of dir into plan->files, sorted by version. */
static int migrate_scan(const char *dir, struct migrate_plan *plan, char *err, size_t err_size)
{
	DIR *d = NULL;
	struct dirent *entry;
	int rc = -1;

	d = opendir(dir);
	if (d == NULL) {
		snprintf(err, err_size, "cannot open migration folder %s: %s", dir, strerror(errno));
		goto out;
	}
	for (;;) {
		struct migrate_file *file;
		char name[MIGRATE_NAME_MAX + 1];
		long version;

		errno = 0;
		entry = readdir(d);
		if (entry == NULL && errno != 0) {
			snprintf(err, err_size, "cannot list migration folder %s: %s", dir,
				strerror(errno));
			goto out;
		}
		if (entry == NULL)
			break;
		if (migrate_parse_file_name(entry->d_name, &version, name) != 0) {
			size_t len = strlen(entry->d_name);

			if (len > 4 && strcmp(entry->d_name + len - 4, ".sql") == 0)
				log_warning("skipping %s/%s: a migration is named NNN_name.sql, NNN "
					"from 1 to 9 digits above 0, name of letters, digits, '_' and '-'",
					dir, entry->d_name);
			continue;
		}
		file = migrate_add_file(plan);
		if (file == NULL) {
			snprintf(err, err_size, "out of memory listing %s", dir);
			goto out;
		}
		file->version = version;
		memcpy(file->name, name, sizeof(file->name));
		if (migrate_read_file(dir, entry->d_name, file, err, err_size) != 0)
			goto out;
	}

	qsort(plan->files, plan->file_count, sizeof(*plan->files), migrate_compare_files);
	for (size_t i = 1; i < plan->file_count; i++) {
		if (plan->files[i].version == plan->files[i - 1].version) {
			snprintf(err, err_size, "two migrations in %s have version %ld: %s and %s",
				dir, plan->files[i].version, plan->files[i - 1].name,
				plan->files[i].name);
			goto out;
		}
	}
	rc = 0;

out:
	if (d != NULL)
		closedir(d);
	return rc;
}

static void migrate_plan_free(struct migrate_plan *plan)
{
	for (size_t i = 0; i < plan->file_count; i++)
		free(plan->files[i].text);
	free(plan->files);
	free(plan->records);
	memset(plan, 0, sizeof(*plan));
}

/*
 * Runs one statement over the text protocol and discards any result sets.
 * Used for the migration files themselves and for fixed SQL without input.
 */
static int migrate_query(MYSQL *mysql, const char *sql, size_t len)
{
	int status;

	if (mysql_real_query(mysql, sql, (unsigned long)len) != 0)
		return -1;
	do {
		MYSQL_RES *result = mysql_store_result(mysql);

		if (result != NULL)
			mysql_free_result(result);
		else if (mysql_field_count(mysql) != 0)
			return -1;
		status = mysql_next_result(mysql);
	} while (status == 0);
	return status > 0 ? -1 : 0;
}

/* Takes the server-wide lock that makes concurrent runs of migrate wait for each other. */
static int migrate_lock(MYSQL *mysql, char *err, size_t err_size)
{
	static const char sql[] = "SELECT GET_LOCK('" MIGRATE_LOCK_NAME "', "
		MIGRATE_STRING(MIGRATE_LOCK_TIMEOUT) ")";
	MYSQL_RES *result = NULL;
	MYSQL_ROW row;
	int rc = -1;

	if (mysql_real_query(mysql, sql, sizeof(sql) - 1) != 0)
		goto fail;
	result = mysql_store_result(mysql);
	if (result == NULL)
		goto fail;
	row = mysql_fetch_row(result);
	if (row == NULL || row[0] == NULL)
		goto fail;
	if (strcmp(row[0], "1") != 0) {
		snprintf(err, err_size, "timed out after %d s waiting for the lock %s held by "
			"another migrate: try again when it finishes", MIGRATE_LOCK_TIMEOUT,
			MIGRATE_LOCK_NAME);
		goto out;
	}
	rc = 0;
	goto out;

fail:
	snprintf(err, err_size, "cannot take the lock %s: %s", MIGRATE_LOCK_NAME,
		mysql_error(mysql));
out:
	if (result != NULL)
		mysql_free_result(result);
	return rc;
}

/* Releases the lock. A failure is only logged, because closing the connection releases it too. */
static void migrate_unlock(MYSQL *mysql)
{
	static const char sql[] = "SELECT RELEASE_LOCK('" MIGRATE_LOCK_NAME "')";

	if (migrate_query(mysql, sql, sizeof(sql) - 1) != 0)
		log_warning("cannot release the lock %s: %s", MIGRATE_LOCK_NAME,
			mysql_error(mysql));
}

/*
 * Reads schema_migrations into plan->records, in version order. With
 * missing_ok, a database without the table has no records.
 */
static int migrate_load_records(MYSQL *mysql, bool missing_ok, struct migrate_plan *plan,
	char *err, size_t err_size)
{
	MYSQL_RES *result = NULL;
	MYSQL_ROW row;
	int rc = -1;

	if (mysql_real_query(mysql, migrate_select_sql, sizeof(migrate_select_sql) - 1) != 0) {
		if (missing_ok && mysql_errno(mysql) == ER_NO_SUCH_TABLE)
			return 0;
		goto fail;
	}
	result = mysql_store_result(mysql);
	if (result == NULL)
		goto fail;
	plan->records = calloc(mysql_num_rows(result) + 1, sizeof(*plan->records));
	if (plan->records == NULL) {
		snprintf(err, err_size, "out of memory reading schema_migrations");
		goto out;
	}
	for (row = mysql_fetch_row(result); row != NULL; row = mysql_fetch_row(result)) {
		struct migrate_record *record = &plan->records[plan->record_count++];

		record->version = strtol(row[0], NULL, 10);
		snprintf(record->name, sizeof(record->name), "%s", row[1]);
		snprintf(record->checksum, sizeof(record->checksum), "%s", row[2]);
		snprintf(record->applied_at, sizeof(record->applied_at), "%s", row[3]);
	}
	rc = 0;
	goto out;

fail:
	snprintf(err, err_size, "cannot read schema_migrations: %s", mysql_error(mysql));
out:
	if (result != NULL)
		mysql_free_result(result);
	return rc;
}

static const struct migrate_record *migrate_find_record(const struct migrate_plan *plan,
	long version)
{
	for (size_t i = 0; i < plan->record_count; i++)
		if (plan->records[i].version == version)
			return &plan->records[i];
	return NULL;
}

static const struct migrate_file *migrate_find_file(const struct migrate_plan *plan,
	long version)
{
	for (size_t i = 0; i < plan->file_count; i++)
		if (plan->files[i].version == version)
			return &plan->files[i];
	return NULL;
}

/*
 * Warns about applied migrations whose file changed, was renamed or is
 * gone. Editing an applied file does nothing to the database, so the
 * operator must hear of it.
 */
static void migrate_warn_changes(const char *dir, const struct migrate_plan *plan)
{
	for (size_t i = 0; i < plan->record_count; i++) {
		const struct migrate_record *record = &plan->records[i];
		const struct migrate_file *file = migrate_find_file(plan, record->version);

		if (file == NULL) {
			log_warning("migration %03ld %s is recorded as applied but has no file in %s",
				record->version, record->name, dir);
			continue;
		}
		if (strcmp(file->checksum, record->checksum) != 0)
			log_warning("migration %03ld %s changed since it was applied (SHA-256 %.12s "
				"then, %.12s now): the change is not applied, so put it in a new "
				"migration", record->version, file->name, record->checksum,
				file->checksum);
		if (strcmp(file->name, record->name) != 0)
			log_warning("migration %03ld was applied as %s but its file is now named %s",
				record->version, record->name, file->name);
	}
}

/* Runs the statements of one migration file in order, stopping at the first failure. */
static int migrate_run_file(MYSQL *mysql, const struct migrate_file *file, char *err,
	size_t err_size)
{
	struct migrate_statement *statements = NULL;
	char split_err[256];
	long count;
	int rc = -1;

	count = migrate_split(file->text, file->len, &statements, split_err, sizeof(split_err));
	if (count < 0) {
		snprintf(err, err_size, "migration %03ld %s not applied: %s", file->version,
			file->name, split_err);
		goto out;
	}
	for (long i = 0; i < count; i++) {
		const struct migrate_statement *statement = &statements[i];

		if (migrate_query(mysql, file->text + statement->offset, statement->length) == 0)
			continue;
		if (i == 0)
			snprintf(err, err_size, "migration %03ld %s failed at the statement on line "
				"%lu: %s (nothing of it took effect, and it stays pending)",
				file->version, file->name, statement->line, mysql_error(mysql));
		else
			snprintf(err, err_size, "migration %03ld %s failed at the statement on line "
				"%lu: %s (%ld earlier statement%s took effect, and it stays pending)",
				file->version, file->name, statement->line, mysql_error(mysql), i,
				i == 1 ? "" : "s");
		goto out;
	}
	rc = 0;

out:
	free(statements);
	return rc;
}

/* Records a migration as applied, with the time in UTC. */
static int migrate_record(MYSQL *mysql, const struct migrate_file *file, char *err,
	size_t err_size)
{
	MYSQL_STMT *stmt = NULL;
	MYSQL_BIND bind[3];
	int version = (int)file->version;
	int rc = -1;

	memset(bind, 0, sizeof(bind));
	bind[0].buffer_type = MYSQL_TYPE_LONG;
	bind[0].buffer = &version;
	bind[1].buffer_type = MYSQL_TYPE_STRING;
	bind[1].buffer = (void *)file->name;
	bind[1].buffer_length = strlen(file->name);
	bind[2].buffer_type = MYSQL_TYPE_STRING;
	bind[2].buffer = (void *)file->checksum;
	bind[2].buffer_length = strlen(file->checksum);

	stmt = mysql_stmt_init(mysql);
	if (stmt == NULL) {
		snprintf(err, err_size, "cannot record migration %03ld %s: %s", file->version,
			file->name, mysql_error(mysql));
		goto out;
	}
	if (mysql_stmt_prepare(stmt, migrate_insert_sql, sizeof(migrate_insert_sql) - 1) != 0 ||
	    mysql_stmt_bind_param(stmt, bind) != 0 || mysql_stmt_execute(stmt) != 0) {
		snprintf(err, err_size, "migration %03ld %s was applied but cannot be recorded in "
			"schema_migrations: %s", file->version, file->name, mysql_stmt_error(stmt));
		goto out;
	}
	rc = 0;

out:
	if (stmt != NULL)
		mysql_stmt_close(stmt);
	return rc;
}

/* Splits every pending file, so a malformed one stops the run before any migration is applied. */
static int migrate_check_pending(const struct migrate_plan *plan, char *err, size_t err_size)
{
	for (size_t i = 0; i < plan->file_count; i++) {
		const struct migrate_file *file = &plan->files[i];
		struct migrate_statement *statements = NULL;
		char split_err[256];

		if (migrate_find_record(plan, file->version) != NULL)
			continue;
		if (migrate_split(file->text, file->len, &statements, split_err,
				sizeof(split_err)) < 0) {
			snprintf(err, err_size, "migration %03ld %s is malformed, so nothing was "
				"applied: %s", file->version, file->name, split_err);
			return -1;
		}
		free(statements);
	}
	return 0;
}

/* Applies the pending migrations of plan in version order; the lock is held. */
static int migrate_apply_pending(MYSQL *mysql, const char *dir, const struct migrate_plan *plan,
	FILE *out, char *err, size_t err_size)
{
	long last_applied = 0;
	size_t applied = 0;

	if (migrate_check_pending(plan, err, err_size) != 0)
		return -1;

	for (size_t i = 0; i < plan->record_count; i++)
		if (plan->records[i].version > last_applied)
			last_applied = plan->records[i].version;

	for (size_t i = 0; i < plan->file_count; i++) {
		const struct migrate_file *file = &plan->files[i];

		if (migrate_find_record(plan, file->version) != NULL)
			continue;
		if (file->version < last_applied)
			log_warning("applying migration %03ld %s after the later migration %03ld",
				file->version, file->name, last_applied);
		if (migrate_run_file(mysql, file, err, err_size) != 0 ||
		    migrate_record(mysql, file, err, err_size) != 0)
			return -1;
		fprintf(out, "applied %03ld %s\n", file->version, file->name);
		fflush(out);
		applied++;
	}
	if (applied == 0)
		fprintf(out, "no pending migrations in %s\n", dir);
	return 0;
}

int migrate_apply(MYSQL *mysql, const char *dir, FILE *out, char *err, size_t err_size)
{
	struct migrate_plan plan = { 0 };
	bool locked = false;
	int rc = -1;

	/* Read every file first, so a bad file fails before the lock is taken. */
	if (migrate_scan(dir, &plan, err, err_size) != 0)
		goto out;

	/* A migration's data statements are committed one by one, like its DDL. */
	if (mysql_autocommit(mysql, 1) != 0) {
		snprintf(err, err_size, "cannot turn on autocommit: %s", mysql_error(mysql));
		goto out;
	}
	if (migrate_lock(mysql, err, err_size) != 0)
		goto out;
	locked = true;

	if (migrate_query(mysql, migrate_create_table_sql, sizeof(migrate_create_table_sql) - 1)
	    != 0) {
		snprintf(err, err_size, "cannot create table schema_migrations: %s",
			mysql_error(mysql));
		goto out;
	}
	if (migrate_load_records(mysql, false, &plan, err, err_size) != 0)
		goto out;
	migrate_warn_changes(dir, &plan);

	rc = migrate_apply_pending(mysql, dir, &plan, out, err, err_size);

out:
	if (locked)
		migrate_unlock(mysql);
	migrate_plan_free(&plan);
	return rc;
}

int migrate_status(MYSQL *mysql, const char *dir, FILE *out, char *err, size_t err_size)
{
	struct migrate_plan plan = { 0 };
	size_t f = 0;
	size_t r = 0;
	int rc = -1;

	if (migrate_scan(dir, &plan, err, err_size) != 0 ||
	    migrate_load_records(mysql, true, &plan, err, err_size) != 0)
		goto out;
	migrate_warn_changes(dir, &plan);

	/* Merge the two lists, both sorted by version, so a record without a file is listed too. */
	while (f < plan.file_count || r < plan.record_count) {
		const struct migrate_file *file = f < plan.file_count ? &plan.files[f] : NULL;
		const struct migrate_record *record = r < plan.record_count ? &plan.records[r] : NULL;

		if (record != NULL && (file == NULL || record->version <= file->version)) {
			fprintf(out, "%03ld %s applied %s\n", record->version,
				file != NULL && file->version == record->version ? file->name :
				record->name, record->applied_at);
			if (file != NULL && file->version == record->version)
				f++;
			r++;
		} else {
			fprintf(out, "%03ld %s pending\n", file->version, file->name);
			f++;
		}
	}
	rc = 0;

out:
	migrate_plan_free(&plan);
	return rc;
}
