/* The subcommands of userops-ctl: migrations, operations, the outbox, TOTP, tokens and checks. */
#include "autoconfig.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <uuid/uuid.h>

#include "auth.h"
#include "cli.h"
#include "config.h"
#include "crypto.h"
#include "ctl.h"
#include "db.h"
#include "mask.h"
#include "migrate.h"
#include "operations.h"
#include "outbox.h"
#include "response.h"
#include "router.h"

/* RFC 4226 requires a shared secret of at least 128 bits and recommends 160. */
#define CTL_TOTP_SECRET_MIN 10
#define CTL_TOTP_SECRET_NEW 20
/*
 * Covers SHA-512 keys, and the sealed secret stays within
 * totp_enrolments.secret_sealed (255 bytes).
 */
#define CTL_TOTP_SECRET_MAX 64
/* A secret file is one base32 line: far less than this. */
#define CTL_SECRET_TEXT_MAX 4096
#define CTL_TOKEN_TTL_DEFAULT 3600L
#define CTL_TOKEN_TTL_MAX (366L * 24 * 3600)
#define CTL_FINGERPRINT_MAX 255
#define CTL_PARAMS_MAX 64
#define CTL_OUTBOX_LIMIT_DEFAULT 50

/* getopt_long codes of the long-only options. */
enum ctl_option {
	CTL_OPT_HELP = 'h',
	CTL_OPT_USER = 256,
	CTL_OPT_FINGERPRINT,
	CTL_OPT_EMAIL,
	CTL_OPT_OTP,
	CTL_OPT_KIND,
	CTL_OPT_TTL,
	CTL_OPT_LOCALE,
	CTL_OPT_PARAM,
	CTL_OPT_SECRET_FILE,
	CTL_OPT_STATUS,
	CTL_OPT_DIR,
	CTL_OPT_SERVICE,
	CTL_OPT_SCOPE,
	CTL_OPT_FAILED,
	CTL_OPT_LIMIT,
};

/* The resources of a subcommand that acts on operations, from start to exit. */
struct ctl_session {
	struct config cfg;
	struct cli_secrets secrets;
	struct db *db;
	struct operations_context ops;
	char request_id[32];
};

static const char ctl_migrate_usage[] =
	"usage: " CTL_PROGRAM " [-c FILE] migrate [--status] [--dir DIR]\n"
	"Applies the pending NNN_name.sql files of DIR in version order under the\n"
	"database lock userops_migrate, and records each in schema_migrations.\n"
	"  --status   list every migration with \"applied\" and its UTC time, or\n"
	"             \"pending\"; changes nothing\n"
	"  --dir DIR  folder of migration files (default $" MIGRATE_DIR_ENV ", else\n"
	"             " USEROPS_DATADIR "/sql)\n";

static const char ctl_create_usage[] =
	"usage: " CTL_PROGRAM " [-c FILE] create-operation --user ID --fingerprint FP\n"
	"         [--email ADDR] [--otp] [--kind KIND] [--ttl SECONDS] [--locale LL]\n"
	"         [--param NAME=VALUE]...\n"
	"Creates an operation, queues its first code mail and prints its challenge as\n"
	"JSON. At least one factor is needed: --email (a code mailed to ADDR) or --otp\n"
	"(TOTP, for an enrolled user). --ttl shortens the lifetime, 1 to [operations]\n"
	"lifetime seconds. Each --param is shown in the mail and bound into the code.\n";

static const char ctl_totp_usage[] =
	"usage: " CTL_PROGRAM " [-c FILE] totp-enroll --user ID [--secret-file FILE]\n"
	"Enrols ID for TOTP (SHA-1, 6 digits, 30 s), replacing any earlier enrolment,\n"
	"and prints the secret in base32 and an otpauth:// URI for authenticator apps.\n"
	"FILE ('-' for standard input) contains a base32 secret of at least 10 bytes;\n"
	"case, spaces and '=' are ignored. Without it a random 20-byte secret is drawn.\n";

static const char ctl_token_usage[] =
	"usage: " CTL_PROGRAM " [-c FILE] issue-token --user ID [--ttl SECONDS]\n"
	"       " CTL_PROGRAM " [-c FILE] issue-token --service NAME [--scope \"SCOPES\"]\n"
	"                                       [--ttl SECONDS]\n"
	"Prints an HS256 access token for development and tests, valid SECONDS\n"
	"(default 3600). With --user it is a user's token for ID, signed with the first\n"
	"HS256 secret of [auth] hs_secret_file. With --service it is a service token for\n"
	"the /internal/ routes, with sub NAME and aud the [internal] audience, signed\n"
	"with the first HS256 secret of [internal] hs_secret_file.\n"
	"  --scope  space-separated scopes for the service token's scope claim, such as\n"
	"           \"operations:write operations:read\"; only with --service\n";

static const char ctl_show_usage[] =
	"usage: " CTL_PROGRAM " [-c FILE] show UUID\n"
	"Prints the operation UUID as JSON: its status, its outbox rows (\"outbox\")\n"
	"and its audit trail (\"audit\": atMs, event, detail), oldest first.\n";

static const char ctl_expire_usage[] =
	"usage: " CTL_PROGRAM " [-c FILE] expire\n"
	"Writes the expired state, its audit row and its outcome event for every\n"
	"pending operation past its expiresAt, one transaction each, and prints how\n"
	"many. userops-mailer runs the same sweep every minute.\n";

static const char ctl_outbox_usage[] =
	"usage: " CTL_PROGRAM " [-c FILE] outbox [--failed] [--limit N]\n"
	"Lists the rows of the mail outbox, newest first, one a line, under a header\n"
	"line; with no rows, only the header. The columns, separated by tabs, are the\n"
	"row id, the operation's uuid, the recipient masked as in emailHint, the\n"
	"status, the tries, when the status began, the next try (queued and retrying\n"
	"rows, else -) and the last SMTP reply with each word that contains '@'\n"
	"shown as [address] (- when none). Times are UTC, as 2025-01-31T12:00:00Z.\n"
	"  --failed   list only rows in status failed\n"
	"  --limit N  list at most N rows, 1 or more (default 50)\n";

static int ctl_message(int status, const char *fmt, va_list ap)
{
	fprintf(stderr, "%s: ", CTL_PROGRAM);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	return status;
}

/* Prints a one-line usage error and returns CTL_EXIT_USAGE. */
__attribute__((format(printf, 1, 2)))
static int ctl_usage_error(const char *fmt, ...)
{
	va_list ap;
	int status;

	va_start(ap, fmt);
	status = ctl_message(CTL_EXIT_USAGE, fmt, ap);
	va_end(ap);
	return status;
}

/* Prints a one-line run-time failure and returns CTL_EXIT_FAILURE. */
__attribute__((format(printf, 1, 2)))
static int ctl_failure(const char *fmt, ...)
{
	va_list ap;
	int status;

	va_start(ap, fmt);
	status = ctl_message(CTL_EXIT_FAILURE, fmt, ap);
	va_end(ap);
	return status;
}

/* Reports what getopt_long rejected in the arguments of command. */
static int ctl_option_error(const char *command, int opt, char **argv)
{
	const char *argument = argv[optind - 1];

	if (opt == ':')
		return ctl_usage_error("option %s of %s needs a value", argument, command);
	return ctl_usage_error("unknown option %s for %s; see %s %s --help", argument, command,
		CTL_PROGRAM, command);
}

/* Resets getopt for a subcommand's arguments: glibc reinitializes fully only when optind is 0. */
static void ctl_getopt_reset(void)
{
	optind = 0;
	opterr = 0;
}

/* An option of a subcommand and where it goes: optarg into text, or true into flag. */
struct ctl_option_target {
	int code;
	const char **text;
	bool *flag;
};

/*
 * Parses the options of subcommand argv[0] into targets, which end with code 0,
 * and leaves optind at the first operand. --help prints usage. Returns 0, -1
 * after --help, or the exit status of a usage error.
 */
static int ctl_parse_options(int argc, char **argv, const struct option *long_options,
	const struct ctl_option_target *targets, const char *usage)
{
	const struct ctl_option_target *target;
	int opt;

	ctl_getopt_reset();
	for (opt = getopt_long(argc, argv, ":", long_options, NULL); opt != -1;
	     opt = getopt_long(argc, argv, ":", long_options, NULL)) {
		if (opt == CTL_OPT_HELP) {
			fputs(usage, stdout);
			return -1;
		}
		for (target = targets; target->code != 0 && target->code != opt; target++)
			;
		if (target->code == 0)
			return ctl_option_error(argv[0], opt, argv);
		if (target->text != NULL)
			*target->text = optarg;
		else
			*target->flag = true;
	}
	return 0;
}

/* Rejects operands after the options of subcommand argv[0]. Returns 0 or a usage error. */
static int ctl_check_no_operands(int argc, char **argv)
{
	if (optind < argc)
		return ctl_usage_error("%s takes no arguments, got %s", argv[0], argv[optind]);
	return 0;
}

/* Parses a whole decimal number. Returns 0, or -1 on anything else or overflow. */
static int ctl_parse_long(const char *text, long *value)
{
	char *end = NULL;
	long parsed;

	if (!((text[0] >= '0' && text[0] <= '9') || text[0] == '-'))
		return -1;
	errno = 0;
	parsed = strtol(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0')
		return -1;
	*value = parsed;
	return 0;
}

/* Parses --ttl as a whole number of seconds from 1 to max. Returns 0 or a usage error. */
static int ctl_parse_ttl(const char *text, long max, long *ttl)
{
	if (ctl_parse_long(text, ttl) != 0 || *ttl < 1 || *ttl > max)
		return ctl_usage_error("--ttl must be between 1 and %ld seconds, got %s", max, text);
	return 0;
}

/* Checks a user id as the sub claim of a token would carry it. Returns 0 or a usage error. */
static int ctl_check_user(const char *user)
{
	if (user == NULL)
		return ctl_usage_error("--user is required");
	if (user[0] == '\0' || strlen(user) > AUTH_USER_ID_MAX)
		return ctl_usage_error("--user must be 1 to %d bytes, got %zu", AUTH_USER_ID_MAX,
			strlen(user));
	for (const char *p = user; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return ctl_usage_error("--user must not contain control characters");
	return 0;
}

/* Checks a device fingerprint as the Fingerprint header must be: 1 to 255 of '!' to '~'. */
static int ctl_check_fingerprint(const char *fingerprint)
{
	size_t len;

	if (fingerprint == NULL)
		return ctl_usage_error("--fingerprint is required");
	len = strlen(fingerprint);
	if (len == 0 || len > CTL_FINGERPRINT_MAX)
		return ctl_usage_error("--fingerprint must be 1 to %d characters, got %zu",
			CTL_FINGERPRINT_MAX, len);
	for (size_t i = 0; i < len; i++)
		if (fingerprint[i] < '!' || fingerprint[i] > '~')
			return ctl_usage_error("--fingerprint must be printable ASCII without spaces");
	return 0;
}

/* Loads the configuration, the pepper and the seal keys; errors exit through cli_fail. */
static void ctl_session_load(struct ctl_session *session, const struct cli_options *options)
{
	memset(session, 0, sizeof(*session));
	cli_load_config(CTL_PROGRAM, options, &session->cfg);
	cli_load_secrets(CTL_PROGRAM, &session->cfg, &session->secrets);
}

/* Connects to the database and fills session->ops. Returns CTL_EXIT_OK or CTL_EXIT_FAILURE. */
static int ctl_session_connect(struct ctl_session *session)
{
	char err[512];

	session->db = db_create(&session->cfg.database, err, sizeof(err));
	if (session->db == NULL)
		return ctl_failure("[database] %s", err);
	if (db_connect(session->db) != DB_OK)
		return ctl_failure("cannot connect to database %s (see the error above)",
			session->cfg.database.name);

	/* The audit trail names the tool that acted, as a request id would. */
	snprintf(session->request_id, sizeof(session->request_id), "ctl-%ld", (long)getpid());
	session->ops.cfg = &session->cfg;
	session->ops.db = session->db;
	session->ops.pepper = session->secrets.pepper;
	session->ops.seal = session->secrets.seal;
	return CTL_EXIT_OK;
}

static void ctl_session_close(struct ctl_session *session)
{
	db_destroy(session->db);
	cli_free_secrets(&session->secrets);
	config_free(&session->cfg);
	memset(session, 0, sizeof(*session));
}

/* Prints obj on one line of stdout, or indented with pretty. */
static int ctl_print_json(struct json_object *obj, bool pretty)
{
	int flags = JSON_C_TO_STRING_NOSLASHESCAPE;
	const char *text;

	flags |= pretty ? JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED :
		JSON_C_TO_STRING_PLAIN;
	text = json_object_to_json_string_ext(obj, flags);
	if (text == NULL)
		return ctl_failure("cannot format JSON: out of memory");
	printf("%s\n", text);
	return CTL_EXIT_OK;
}

int ctl_migrate(int argc, char **argv, const struct cli_options *options)
{
	static const struct option long_options[] = {
		{ "status", no_argument, NULL, CTL_OPT_STATUS },
		{ "dir", required_argument, NULL, CTL_OPT_DIR },
		{ "help", no_argument, NULL, CTL_OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	struct config cfg;
	const char *dir = NULL;
	bool status_only = false;
	const struct ctl_option_target targets[] = {
		{ CTL_OPT_STATUS, NULL, &status_only },
		{ CTL_OPT_DIR, &dir, NULL },
		{ 0, NULL, NULL },
	};
	MYSQL *mysql = NULL;
	char err[1024];
	int rc;

	rc = ctl_parse_options(argc, argv, long_options, targets, ctl_migrate_usage);
	if (rc == 0)
		rc = ctl_check_no_operands(argc, argv);
	if (rc != 0)
		return rc < 0 ? CTL_EXIT_OK : rc;

	memset(&cfg, 0, sizeof(cfg));
	cli_load_config(CTL_PROGRAM, options, &cfg);
	mysql = migrate_connect(&cfg.database, err, sizeof(err));
	if (mysql == NULL) {
		rc = ctl_failure("%s", err);
		goto out;
	}

	dir = migrate_dir(dir);
	if (status_only)
		rc = migrate_status(mysql, dir, stdout, err, sizeof(err));
	else
		rc = migrate_apply(mysql, dir, stdout, err, sizeof(err));
	rc = rc == 0 ? CTL_EXIT_OK : ctl_failure("%s", err);

out:
	if (mysql != NULL)
		mysql_close(mysql);
	config_free(&cfg);
	return rc;
}

/* The arguments of create-operation, pointing into argv. */
struct ctl_create_args {
	struct operation_new op;
	struct operation_param params[CTL_PARAMS_MAX];
	const char *ttl;
};

/* Splits one --param NAME=VALUE in place and appends it. Returns 0 or a usage error. */
static int ctl_add_param(struct ctl_create_args *args, char *text)
{
	char *equals = strchr(text, '=');

	if (equals == NULL || equals == text)
		return ctl_usage_error("--param must be NAME=VALUE, got %s", text);
	if (args->op.param_count == CTL_PARAMS_MAX)
		return ctl_usage_error("at most %d --param options are accepted", CTL_PARAMS_MAX);
	*equals = '\0';
	for (size_t i = 0; i < args->op.param_count; i++)
		if (strcmp(args->params[i].name, text) == 0)
			return ctl_usage_error("--param %s is given twice", text);
	args->params[args->op.param_count].name = text;
	args->params[args->op.param_count].value = equals + 1;
	args->op.param_count++;
	return 0;
}

/* Returns 0 with args filled, -1 after --help, or the exit status of a usage error. */
static int ctl_parse_create(int argc, char **argv, struct ctl_create_args *args)
{
	static const struct option long_options[] = {
		{ "user", required_argument, NULL, CTL_OPT_USER },
		{ "fingerprint", required_argument, NULL, CTL_OPT_FINGERPRINT },
		{ "email", required_argument, NULL, CTL_OPT_EMAIL },
		{ "otp", no_argument, NULL, CTL_OPT_OTP },
		{ "kind", required_argument, NULL, CTL_OPT_KIND },
		{ "ttl", required_argument, NULL, CTL_OPT_TTL },
		{ "locale", required_argument, NULL, CTL_OPT_LOCALE },
		{ "param", required_argument, NULL, CTL_OPT_PARAM },
		{ "help", no_argument, NULL, CTL_OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	int opt;
	int rc;

	args->op.params = args->params;
	ctl_getopt_reset();
	for (opt = getopt_long(argc, argv, ":", long_options, NULL); opt != -1;
	     opt = getopt_long(argc, argv, ":", long_options, NULL)) {
		switch (opt) {
		case CTL_OPT_USER:
			args->op.user_id = optarg;
			break;
		case CTL_OPT_FINGERPRINT:
			args->op.fingerprint = optarg;
			break;
		case CTL_OPT_EMAIL:
			args->op.email = optarg;
			break;
		case CTL_OPT_OTP:
			args->op.otp = true;
			break;
		case CTL_OPT_KIND:
			args->op.kind = optarg;
			break;
		case CTL_OPT_TTL:
			args->ttl = optarg;
			break;
		case CTL_OPT_LOCALE:
			args->op.locale = optarg;
			break;
		case CTL_OPT_PARAM:
			rc = ctl_add_param(args, optarg);
			if (rc != 0)
				return rc;
			break;
		case CTL_OPT_HELP:
			fputs(ctl_create_usage, stdout);
			return -1;
		default:
			return ctl_option_error(argv[0], opt, argv);
		}
	}
	rc = ctl_check_no_operands(argc, argv);
	if (rc != 0)
		return rc;

	rc = ctl_check_user(args->op.user_id);
	if (rc == 0)
		rc = ctl_check_fingerprint(args->op.fingerprint);
	if (rc == 0 && args->op.email == NULL && !args->op.otp)
		rc = ctl_usage_error("create-operation needs a factor: --email ADDR, --otp or both");
	return rc;
}

/* Checks --ttl against [operations] lifetime; 0 (the lifetime) when it is absent. */
static int ctl_check_operation_ttl(const char *text, long lifetime, long *ttl)
{
	*ttl = 0;
	if (text == NULL)
		return 0;
	return ctl_parse_ttl(text, lifetime, ttl);
}

int ctl_create_operation(int argc, char **argv, const struct cli_options *options)
{
	struct ctl_create_args args;
	struct ctl_session session;
	struct operation_challenge challenge;
	struct operation_result result;
	struct json_object *json = NULL;
	char err[512] = "";
	int rc;

	memset(&args, 0, sizeof(args));
	rc = ctl_parse_create(argc, argv, &args);
	if (rc != 0)
		return rc < 0 ? CTL_EXIT_OK : rc;

	ctl_session_load(&session, options);
	rc = ctl_check_operation_ttl(args.ttl, session.cfg.operations.lifetime, &args.op.ttl);
	if (rc != 0)
		goto out;
	rc = ctl_session_connect(&session);
	if (rc != CTL_EXIT_OK)
		goto out;

	args.op.request_id = session.request_id;
	memset(&challenge, 0, sizeof(challenge));
	memset(&result, 0, sizeof(result));
	operations_create(&session.ops, &args.op, &challenge, &result, err, sizeof(err));
	if (result.error == 400001) {
		rc = ctl_usage_error("%s", err[0] != '\0' ? err : "invalid operation");
		goto out;
	}
	if (result.error != 0) {
		rc = ctl_failure("cannot create the operation (error %d)%s%s", result.error,
			err[0] != '\0' ? ": " : "", err);
		goto out;
	}

	json = response_challenge_json(&challenge);
	rc = json != NULL ? ctl_print_json(json, false) : ctl_failure("out of memory");

out:
	json_object_put(json);
	ctl_session_close(&session);
	return rc;
}

/*
 * Reads the base32 secret text of path ('-' for standard input) into text,
 * at most text_size - 2 bytes: reading one more byte detects a longer file.
 * Returns 0, or the exit status of the failure.
 */
static int ctl_read_secret_text(const char *path, char *text, size_t text_size)
{
	FILE *f = stdin;
	size_t len;
	int rc = CTL_EXIT_OK;

	if (strcmp(path, "-") != 0) {
		f = fopen(path, "rb");
		if (f == NULL)
			return ctl_failure("cannot open secret file %s: %s", path, strerror(errno));
	}
	len = fread(text, 1, text_size - 1, f);
	if (ferror(f))
		rc = ctl_failure("cannot read secret file %s: %s", path, strerror(errno));
	else if (len > text_size - 2)
		rc = ctl_usage_error("secret file %s is longer than %zu bytes", path, text_size - 2);
	else if (memchr(text, '\0', len) != NULL)
		rc = ctl_usage_error("secret file %s contains a NUL byte, which is not base32", path);
	text[len] = '\0';
	if (f != stdin)
		fclose(f);
	return rc;
}

/*
 * Fills secret from the base32 text of path, or with new random bytes when
 * path is NULL. Returns 0, or the exit status of the failure.
 */
static int ctl_load_totp_secret(const char *path, unsigned char *secret, size_t *secret_len)
{
	char text[CTL_SECRET_TEXT_MAX + 2];
	unsigned char decoded[CTL_SECRET_TEXT_MAX];
	long len;
	int rc;

	if (path == NULL) {
		*secret_len = CTL_TOTP_SECRET_NEW;
		if (crypto_random_bytes(secret, CTL_TOTP_SECRET_NEW) != 0)
			return ctl_failure("cannot draw a random TOTP secret");
		return CTL_EXIT_OK;
	}

	rc = ctl_read_secret_text(path, text, sizeof(text));
	if (rc != CTL_EXIT_OK)
		goto out;
	len = crypto_base32_decode(text, decoded, sizeof(decoded));
	if (len < 0) {
		rc = ctl_usage_error("secret file %s is not valid base32 (letters A to Z and "
			"digits 2 to 7)", path);
		goto out;
	}
	if (len < CTL_TOTP_SECRET_MIN || len > CTL_TOTP_SECRET_MAX) {
		rc = ctl_usage_error("the secret in %s must decode to %d to %d bytes, got %ld", path,
			CTL_TOTP_SECRET_MIN, CTL_TOTP_SECRET_MAX, len);
		goto out;
	}
	memcpy(secret, decoded, (size_t)len);
	*secret_len = (size_t)len;

out:
	crypto_wipe(text, sizeof(text));
	crypto_wipe(decoded, sizeof(decoded));
	return rc;
}

/* Returns a new string with every byte but RFC 3986 unreserved ones written %XX. */
static char *ctl_percent_encode(const char *in)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t len = strlen(in);
	char *out = malloc(3 * len + 1);
	char *p = out;

	if (out == NULL)
		return NULL;
	for (const unsigned char *c = (const unsigned char *)in; *c != '\0'; c++) {
		if ((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
		    (*c >= '0' && *c <= '9') || *c == '-' || *c == '.' || *c == '_' || *c == '~') {
			*p++ = (char)*c;
			continue;
		}
		*p++ = '%';
		*p++ = hex[*c >> 4];
		*p++ = hex[*c & 0x0f];
	}
	*p = '\0';
	return out;
}

/*
 * Prints the secret in base32 and its Key URI (the otpauth:// format of
 * Google Authenticator) with the label ISSUER:USER.
 */
static int ctl_print_totp(const char *issuer, const char *user, const unsigned char *secret,
	size_t secret_len)
{
	char encoded[(CTL_TOTP_SECRET_MAX * 8 + 4) / 5 + 1];
	char *issuer_encoded = ctl_percent_encode(issuer);
	char *user_encoded = ctl_percent_encode(user);
	int rc = CTL_EXIT_OK;

	if (issuer_encoded == NULL || user_encoded == NULL) {
		rc = ctl_failure("out of memory");
		goto out;
	}
	if (crypto_base32_encode(secret, secret_len, encoded, sizeof(encoded)) < 0) {
		rc = ctl_failure("cannot encode the secret in base32");
		goto out;
	}
	printf("secret: %s\n", encoded);
	printf("uri: otpauth://totp/%s:%s?secret=%s&issuer=%s&algorithm=SHA1&digits=6"
		"&period=30\n", issuer_encoded, user_encoded, encoded, issuer_encoded);

out:
	crypto_wipe(encoded, sizeof(encoded));
	free(issuer_encoded);
	free(user_encoded);
	return rc;
}

int ctl_totp_enroll(int argc, char **argv, const struct cli_options *options)
{
	static const struct option long_options[] = {
		{ "user", required_argument, NULL, CTL_OPT_USER },
		{ "secret-file", required_argument, NULL, CTL_OPT_SECRET_FILE },
		{ "help", no_argument, NULL, CTL_OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	struct ctl_session session;
	unsigned char secret[CTL_TOTP_SECRET_MAX];
	size_t secret_len = 0;
	const char *user = NULL;
	const char *secret_file = NULL;
	const struct ctl_option_target targets[] = {
		{ CTL_OPT_USER, &user, NULL },
		{ CTL_OPT_SECRET_FILE, &secret_file, NULL },
		{ 0, NULL, NULL },
	};
	const char *issuer;
	char err[512] = "";
	int rc;

	rc = ctl_parse_options(argc, argv, long_options, targets, ctl_totp_usage);
	if (rc == 0)
		rc = ctl_check_no_operands(argc, argv);
	if (rc != 0)
		return rc < 0 ? CTL_EXIT_OK : rc;
	rc = ctl_check_user(user);
	if (rc != 0)
		return rc;
	rc = ctl_load_totp_secret(secret_file, secret, &secret_len);
	if (rc != CTL_EXIT_OK)
		return rc;

	ctl_session_load(&session, options);
	rc = ctl_session_connect(&session);
	if (rc != CTL_EXIT_OK)
		goto out;
	if (operations_totp_enroll(&session.ops, user, secret, secret_len, err,
			sizeof(err)) != 0) {
		rc = ctl_failure("cannot enrol user %s for TOTP: %s", user, err);
		goto out;
	}
	issuer = session.cfg.operations.totp_issuer;
	if (issuer == NULL || issuer[0] == '\0')
		issuer = "userops";
	rc = ctl_print_totp(issuer, user, secret, secret_len);

out:
	crypto_wipe(secret, sizeof(secret));
	ctl_session_close(&session);
	return rc;
}

/* The options of issue-token: a user's token, or with service a service token. */
struct ctl_token_args {
	const char *user;
	const char *service;
	const char *scope;  /* NULL: the service token has no scope claim */
	long ttl;
};

/* Checks --service and --scope as a verifier would read them. Returns 0 or a usage error. */
static int ctl_check_service(const struct ctl_token_args *args)
{
	struct auth_claims claims;
	size_t len = strlen(args->service);

	if (args->user != NULL)
		return ctl_usage_error("--user and --service cannot be used together");
	if (len == 0 || len > AUTH_USER_ID_MAX)
		return ctl_usage_error("--service must be 1 to %d bytes, got %zu", AUTH_USER_ID_MAX,
			len);
	for (const char *p = args->service; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return ctl_usage_error("--service must not contain control characters");
	if (args->scope == NULL)
		return 0;
	if (strlen(args->scope) >= sizeof(claims.scope))
		return ctl_usage_error("--scope must be shorter than %zu bytes", sizeof(claims.scope));
	for (const char *p = args->scope; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return ctl_usage_error("--scope must be scopes separated by spaces, without tabs "
				"or other control characters");
	return 0;
}

/* Fills args, returning 0, -1 after --help, or the exit status of a usage error. */
static int ctl_parse_token(int argc, char **argv, struct ctl_token_args *args)
{
	static const struct option long_options[] = {
		{ "user", required_argument, NULL, CTL_OPT_USER },
		{ "service", required_argument, NULL, CTL_OPT_SERVICE },
		{ "scope", required_argument, NULL, CTL_OPT_SCOPE },
		{ "ttl", required_argument, NULL, CTL_OPT_TTL },
		{ "help", no_argument, NULL, CTL_OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	const char *ttl_text = NULL;
	const struct ctl_option_target targets[] = {
		{ CTL_OPT_USER, &args->user, NULL },
		{ CTL_OPT_SERVICE, &args->service, NULL },
		{ CTL_OPT_SCOPE, &args->scope, NULL },
		{ CTL_OPT_TTL, &ttl_text, NULL },
		{ 0, NULL, NULL },
	};
	int rc;

	rc = ctl_parse_options(argc, argv, long_options, targets, ctl_token_usage);
	if (rc == 0)
		rc = ctl_check_no_operands(argc, argv);
	if (rc == 0 && args->service != NULL)
		rc = ctl_check_service(args);
	else if (rc == 0 && args->scope != NULL)
		rc = ctl_usage_error("--scope is valid only with --service");
	else if (rc == 0)
		rc = ctl_check_user(args->user);
	if (rc != 0)
		return rc;

	args->ttl = CTL_TOKEN_TTL_DEFAULT;
	if (ttl_text != NULL)
		return ctl_parse_ttl(ttl_text, CTL_TOKEN_TTL_MAX, &args->ttl);
	return 0;
}

/* Signs a service token with the [internal] keys, which must name an audience. */
static char *ctl_sign_service_token(const struct config *cfg, const struct ctl_token_args *args,
	const char *config_path)
{
	struct auth_keys *keys = NULL;
	char *token = NULL;
	char err[512];

	if (cfg->internal.audience == NULL || cfg->internal.audience[0] == '\0') {
		ctl_failure("[internal] audience is not set in %s, and service tokens need it",
			config_path);
		goto out;
	}
	if (auth_keys_load(&cfg->internal, &keys, err, sizeof(err)) != 0) {
		ctl_failure("[internal] %s", err);
		goto out;
	}
	token = auth_issue_service_token(keys, args->service, args->scope, (int64_t)time(NULL),
		args->ttl);
	if (token == NULL)
		ctl_failure("cannot sign a token: issue-token --service needs HS256 in [internal] "
			"algorithms and a secret in [internal] hs_secret_file of %s", config_path);

out:
	auth_keys_free(keys);
	return token;
}

/* Signs a user's token with the [auth] keys. */
static char *ctl_sign_user_token(const struct config *cfg, const struct ctl_token_args *args,
	const char *config_path)
{
	struct auth_keys *keys = NULL;
	char *token = NULL;
	char err[512];

	if (auth_keys_load(&cfg->auth, &keys, err, sizeof(err)) != 0) {
		ctl_failure("[auth] %s", err);
		goto out;
	}
	token = auth_issue_token(keys, args->user, (int64_t)time(NULL), args->ttl);
	if (token == NULL)
		ctl_failure("cannot sign a token: issue-token needs HS256 in [auth] algorithms "
			"and a secret in [auth] hs_secret_file of %s", config_path);

out:
	auth_keys_free(keys);
	return token;
}

int ctl_issue_token(int argc, char **argv, const struct cli_options *options)
{
	struct config cfg;
	struct ctl_token_args args;
	char *token = NULL;
	int rc;

	memset(&args, 0, sizeof(args));
	rc = ctl_parse_token(argc, argv, &args);
	if (rc != 0)
		return rc < 0 ? CTL_EXIT_OK : rc;

	memset(&cfg, 0, sizeof(cfg));
	cli_load_config(CTL_PROGRAM, options, &cfg);
	if (args.service != NULL)
		token = ctl_sign_service_token(&cfg, &args, options->config_path);
	else
		token = ctl_sign_user_token(&cfg, &args, options->config_path);
	if (token == NULL) {
		rc = CTL_EXIT_FAILURE;
		goto out;
	}
	printf("%s\n", token);
	rc = CTL_EXIT_OK;

out:
	if (token != NULL) {
		crypto_wipe(token, strlen(token));
		free(token);
	}
	config_free(&cfg);
	return rc;
}

int ctl_show(int argc, char **argv, const struct cli_options *options)
{
	static const struct option long_options[] = {
		{ "help", no_argument, NULL, CTL_OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	struct ctl_session session;
	struct json_object *json = NULL;
	unsigned char uuid[16];
	const struct ctl_option_target targets[] = {
		{ 0, NULL, NULL },
	};
	const char *uuid_text;
	char err[512] = "";
	int rc;

	rc = ctl_parse_options(argc, argv, long_options, targets, ctl_show_usage);
	if (rc != 0)
		return rc < 0 ? CTL_EXIT_OK : rc;
	if (optind >= argc)
		return ctl_usage_error("show needs the operation's UUID");
	if (optind + 1 < argc)
		return ctl_usage_error("show takes one UUID, got also %s", argv[optind + 1]);
	uuid_text = argv[optind];
	if (!router_parse_uuid(uuid_text, uuid))
		return ctl_usage_error("invalid UUID %s: expected 36 characters such as "
			"123e4567-e89b-12d3-a456-426614174000", uuid_text);

	ctl_session_load(&session, options);
	rc = ctl_session_connect(&session);
	if (rc != CTL_EXIT_OK)
		goto out;
	json = operations_show(&session.ops, uuid, err, sizeof(err));
	if (json == NULL) {
		/*
		 * TODO: operations_show returns NULL both for an unknown uuid and on a
		 * database error, and only the text of err distinguishes them.
		 */
		if (err[0] == '\0' || strcmp(err, "operation not found") == 0)
			rc = ctl_failure("operation %s not found", uuid_text);
		else
			rc = ctl_failure("%s", err);
		goto out;
	}
	rc = ctl_print_json(json, true);

out:
	json_object_put(json);
	ctl_session_close(&session);
	return rc;
}

/* Pending operations that one call of operations_expire_due looks at. */
#define CTL_EXPIRE_BATCH 500

int ctl_expire(int argc, char **argv, const struct cli_options *options)
{
	static const struct option long_options[] = {
		{ "help", no_argument, NULL, CTL_OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	const struct ctl_option_target targets[] = {
		{ 0, NULL, NULL },
	};
	struct ctl_session session;
	long total = 0;
	long batch;
	int rc;

	rc = ctl_parse_options(argc, argv, long_options, targets, ctl_expire_usage);
	if (rc != 0)
		return rc < 0 ? CTL_EXIT_OK : rc;
	rc = ctl_check_no_operands(argc, argv);
	if (rc != 0)
		return rc;

	ctl_session_load(&session, options);
	rc = ctl_session_connect(&session);
	if (rc != CTL_EXIT_OK)
		goto out;

	/* A batch smaller than asked for means none was left when it was read. */
	do {
		batch = operations_expire_due(&session.ops, CTL_EXPIRE_BATCH);
		if (batch > 0)
			total += batch;
	} while (batch == CTL_EXPIRE_BATCH);
	if (batch < 0) {
		rc = ctl_failure("expiry stopped after %ld operations: database error (see the"
			" error above)", total);
		goto out;
	}
	printf("expired %ld operations\n", total);
	rc = CTL_EXIT_OK;

out:
	ctl_session_close(&session);
	return rc;
}

/* Writes when as UTC ISO 8601, such as 2025-01-31T12:00:00Z, or as Unix seconds if out of range. */
static void ctl_format_utc(int64_t when, char *out, size_t out_size)
{
	time_t seconds = (time_t)when;
	struct tm tm;

	if (gmtime_r(&seconds, &tm) == NULL ||
	    strftime(out, out_size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, out_size, "%lld", (long long)when);
}

/* The buffer for the masked reply of each row that ctl_print_outbox_row prints. */
struct ctl_outbox_output {
	char *reply;
	size_t reply_size;
};

/* Prints one row of the outbox listing as tab-separated columns. */
static int ctl_print_outbox_row(const struct outbox_listing *row, void *arg)
{
	struct ctl_outbox_output *output = arg;
	char uuid[37];
	char recipient[OUTBOX_RECIPIENT_SIZE + 8];
	char status_at[32];
	char next_try[32] = "-";
	const char *reply = "-";

	uuid_unparse_lower(row->operation_uuid, uuid);
	if (mask_email(row->recipient, recipient, sizeof(recipient)) != 0)
		snprintf(recipient, sizeof(recipient), "(invalid address)");
	ctl_format_utc(row->status_at, status_at, sizeof(status_at));
	if (strcmp(row->status, "queued") == 0 || strcmp(row->status, "retrying") == 0)
		ctl_format_utc(row->next_try_at, next_try, sizeof(next_try));
	if (row->has_last_reply && row->last_reply[0] != '\0' &&
	    mask_reply(row->last_reply, output->reply, output->reply_size) == 0)
		reply = output->reply;

	printf("%llu\t%s\t%s\t%s\t%u\t%s\t%s\t%s\n", (unsigned long long)row->id, uuid,
		recipient, row->status, row->tries, status_at, next_try, reply);
	return 0;
}

/* Parses --limit as a whole number of rows, 1 or more. Returns 0 or a usage error. */
static int ctl_parse_limit(const char *text, long *limit)
{
	*limit = CTL_OUTBOX_LIMIT_DEFAULT;
	if (text == NULL)
		return 0;
	if (ctl_parse_long(text, limit) != 0 || *limit < 1)
		return ctl_usage_error("--limit must be a whole number of rows, 1 or more, got %s",
			text);
	return 0;
}

int ctl_outbox(int argc, char **argv, const struct cli_options *options)
{
	static const struct option long_options[] = {
		{ "failed", no_argument, NULL, CTL_OPT_FAILED },
		{ "limit", required_argument, NULL, CTL_OPT_LIMIT },
		{ "help", no_argument, NULL, CTL_OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	bool failed_only = false;
	const char *limit_text = NULL;
	const struct ctl_option_target targets[] = {
		{ CTL_OPT_FAILED, NULL, &failed_only },
		{ CTL_OPT_LIMIT, &limit_text, NULL },
		{ 0, NULL, NULL },
	};
	struct ctl_outbox_output output = { NULL, 0 };
	struct config cfg;
	struct db *db = NULL;
	enum db_result result;
	char err[512];
	long limit;
	int rc;

	rc = ctl_parse_options(argc, argv, long_options, targets, ctl_outbox_usage);
	if (rc == 0)
		rc = ctl_check_no_operands(argc, argv);
	if (rc == 0)
		rc = ctl_parse_limit(limit_text, &limit);
	if (rc != 0)
		return rc < 0 ? CTL_EXIT_OK : rc;

	memset(&cfg, 0, sizeof(cfg));
	cli_load_config(CTL_PROGRAM, options, &cfg);
	output.reply_size = MASK_REPLY_SIZE(OUTBOX_LAST_REPLY_SIZE - 1);
	output.reply = malloc(output.reply_size);
	if (output.reply == NULL) {
		rc = ctl_failure("out of memory");
		goto out;
	}
	db = db_create(&cfg.database, err, sizeof(err));
	if (db == NULL) {
		rc = ctl_failure("[database] %s", err);
		goto out;
	}
	if (db_connect(db) != DB_OK) {
		rc = ctl_failure("cannot connect to database %s (see the error above)",
			cfg.database.name);
		goto out;
	}

	printf("id\toperation\trecipient\tstatus\ttries\tstatus_at\tnext_try_at\tlast_reply\n");
	result = outbox_list(db, failed_only, limit, ctl_print_outbox_row, &output);
	if (fflush(stdout) != 0 || ferror(stdout))
		rc = ctl_failure("cannot write the outbox rows to standard output: %s",
			strerror(errno));
	else if (result != DB_OK)
		rc = ctl_failure("cannot list the outbox rows: %s (see the error above)",
			result == DB_UNAVAILABLE ? "database unavailable" : "database error");
	else
		rc = CTL_EXIT_OK;

out:
	free(output.reply);
	db_destroy(db);
	config_free(&cfg);
	return rc;
}

int ctl_check(const struct cli_options *options)
{
	struct config cfg;
	struct cli_secrets secrets;
	struct auth_keys *keys = NULL;
	struct db *db = NULL;
	char err[512];
	int rc = CTL_EXIT_FAILURE;

	memset(&cfg, 0, sizeof(cfg));
	cli_load_config(CTL_PROGRAM, options, &cfg);
	cli_load_secrets(CTL_PROGRAM, &cfg, &secrets);
	cli_free_secrets(&secrets);

	db = db_create(&cfg.database, err, sizeof(err));
	if (db == NULL) {
		ctl_failure("[database] %s", err);
		goto out;
	}
	if (auth_keys_load(&cfg.auth, &keys, err, sizeof(err)) != 0) {
		ctl_failure("[auth] %s", err);
		goto out;
	}
	fprintf(stderr, "%s: configuration %s and its secrets are valid\n", CTL_PROGRAM,
		options->config_path);
	rc = CTL_EXIT_OK;

out:
	auth_keys_free(keys);
	db_destroy(db);
	config_free(&cfg);
	return rc;
}
