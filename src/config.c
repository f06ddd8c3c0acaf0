/* The INI configuration file: a table of keys with defaults and ranges, read with libinih. */
#include "autoconfig.h"

#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "crypto.h"

enum config_type {
	CONFIG_STRING,
	CONFIG_LONG,
	CONFIG_BOOL,
};

struct config_key {
	const char *section;
	const char *name;
	enum config_type type;
	size_t offset;
	const char *default_value;
	long min;
	long max;
};

#define KEY_STRING(sec, key, field, def) \
	{ sec, key, CONFIG_STRING, offsetof(struct config, field), def, 0, 0 }
#define KEY_LONG(sec, key, field, def, lo, hi) \
	{ sec, key, CONFIG_LONG, offsetof(struct config, field), def, lo, hi }
#define KEY_BOOL(sec, key, field, def) \
	{ sec, key, CONFIG_BOOL, offsetof(struct config, field), def, 0, 1 }

/* Every key the file may hold; etc/userops.conf documents each one. */
static const struct config_key config_keys[] = {
	KEY_STRING("server", "listen", server.listen, ""),
	KEY_LONG("server", "workers", server.workers, "4", 1, 1024),
	KEY_LONG("server", "max_requests", server.max_requests, "0", 0, LONG_MAX),
	KEY_LONG("server", "max_body", server.max_body, "16384", 2, 1048576),
	KEY_STRING("server", "base_path", server.base_path, ""),
	KEY_LONG("server", "drain_timeout", server.drain_timeout, "30", 1, 3600),

	KEY_STRING("database", "host", database.host, "localhost"),
	KEY_LONG("database", "port", database.port, "3306", 1, 65535),
	KEY_STRING("database", "socket", database.socket, ""),
	KEY_STRING("database", "name", database.name, "userops"),
	KEY_STRING("database", "user", database.user, "userops"),
	KEY_STRING("database", "password_file", database.password_file, ""),
	KEY_LONG("database", "connect_timeout", database.connect_timeout, "5", 1, 3600),

	KEY_STRING("auth", "algorithms", auth.algorithms, "HS256"),
	KEY_STRING("auth", "hs_secret_file", auth.hs_secret_file, ""),
	KEY_STRING("auth", "public_key_file", auth.public_key_file, ""),
	KEY_STRING("auth", "issuer", auth.issuer, ""),
	KEY_STRING("auth", "audience", auth.audience, ""),
	KEY_LONG("auth", "leeway", auth.leeway, "30", 0, 3600),

	KEY_LONG("operations", "code_length", operations.code_length, "6", 4, 10),
	KEY_LONG("operations", "lifetime", operations.lifetime, "600", 10, 86400),
	KEY_LONG("operations", "max_attempts", operations.max_attempts, "5", 1, 100),
	KEY_BOOL("operations", "accept_previous_code", operations.accept_previous_code, "yes"),
	KEY_LONG("operations", "resend_cooldown", operations.resend_cooldown, "60", 1, 86400),
	KEY_LONG("operations", "max_resends", operations.max_resends, "3", 0, 20),
	KEY_LONG("operations", "totp_window", operations.totp_window, "1", 0, 10),
	KEY_STRING("operations", "pepper_file", operations.pepper_file, ""),
	KEY_STRING("operations", "totp_issuer", operations.totp_issuer, "userops"),

	KEY_STRING("seal", "key_file", seal_key_file, ""),

	KEY_STRING("smtp", "host", smtp.host, "127.0.0.1"),
	KEY_LONG("smtp", "port", smtp.port, "25", 1, 65535),
	KEY_STRING("smtp", "tls", smtp.tls, "starttls"),
	KEY_STRING("smtp", "ca_file", smtp.ca_file, ""),
	KEY_STRING("smtp", "username", smtp.username, ""),
	KEY_STRING("smtp", "password_file", smtp.password_file, ""),
	KEY_STRING("smtp", "from", smtp.from, ""),
	KEY_STRING("smtp", "helo_name", smtp.helo_name, ""),
	KEY_LONG("smtp", "timeout", smtp.timeout, "30", 1, 3600),
	KEY_BOOL("smtp", "allow_plaintext_auth", smtp.allow_plaintext_auth, "no"),

	KEY_LONG("mailer", "poll_interval_ms", mailer.poll_interval_ms, "500", 10, 60000),
	KEY_LONG("mailer", "max_tries", mailer.max_tries, "10", 1, 1000),
	KEY_LONG("mailer", "retry_wait", mailer.retry_wait, "10", 1, 86400),
	KEY_LONG("mailer", "retry_wait_max", mailer.retry_wait_max, "600", 1, 86400),
	KEY_STRING("mailer", "templates_dir", mailer.templates_dir, USEROPS_DATADIR "/templates"),
	KEY_STRING("mailer", "message_id_domain", mailer.message_id_domain, ""),

	KEY_STRING("internal", "algorithms", internal.algorithms, ""),
	KEY_STRING("internal", "hs_secret_file", internal.hs_secret_file, ""),
	KEY_STRING("internal", "public_key_file", internal.public_key_file, ""),
	KEY_STRING("internal", "issuer", internal.issuer, ""),
	KEY_STRING("internal", "audience", internal.audience, ""),
	KEY_LONG("internal", "leeway", internal.leeway, "30", 0, 3600),

	KEY_STRING("log", "target", log.target, "stderr"),
	KEY_STRING("log", "level", log.level, "info"),
};

#define CONFIG_KEY_COUNT (sizeof(config_keys) / sizeof(config_keys[0]))

struct config_parse_state {
	struct config *cfg;
	char *err;
	size_t err_size;
	int failed;
};

static int config_set(struct config *cfg, const struct config_key *key, const char *value,
	char *err, size_t err_size)
{
	void *field = (char *)cfg + key->offset;

	if (key->type == CONFIG_STRING) {
		char *copy = strdup(value);

		if (copy == NULL) {
			snprintf(err, err_size, "out of memory");
			return -1;
		}
		free(*(char **)field);
		*(char **)field = copy;
		return 0;
	}

	if (key->type == CONFIG_BOOL) {
		if (strcmp(value, "yes") == 0 || strcmp(value, "true") == 0 || strcmp(value, "1") == 0)
			*(bool *)field = true;
		else if (strcmp(value, "no") == 0 || strcmp(value, "false") == 0 ||
			strcmp(value, "0") == 0)
			*(bool *)field = false;
		else {
			snprintf(err, err_size, "[%s] %s must be yes or no, got \"%s\"",
				key->section, key->name, value);
			return -1;
		}
		return 0;
	}

	char *end = NULL;
	long number;

	errno = 0;
	number = strtol(value, &end, 10);
	if (errno != 0 || end == value || *end != '\0' || number < key->min || number > key->max) {
		snprintf(err, err_size, "[%s] %s must be an integer from %ld to %ld, got \"%s\"",
			key->section, key->name, key->min, key->max, value);
		return -1;
	}
	*(long *)field = number;
	return 0;
}

static int config_handle_line(void *user, const char *section, const char *name,
	const char *value)
{
	struct config_parse_state *state = user;
	size_t i;

	if (state->failed)
		return 0;
	for (i = 0; i < CONFIG_KEY_COUNT; i++) {
		if (strcmp(config_keys[i].section, section) == 0 &&
			strcmp(config_keys[i].name, name) == 0)
			break;
	}
	if (i == CONFIG_KEY_COUNT) {
		snprintf(state->err, state->err_size, "unknown key [%s] %s", section, name);
		state->failed = 1;
		return 0;
	}

	if (config_set(state->cfg, &config_keys[i], value, state->err, state->err_size) != 0) {
		state->failed = 1;
		return 0;
	}
	return 1;
}

static int config_check(const struct config *cfg, char *err, size_t err_size)
{
	const char *tls = cfg->smtp.tls;

	if (strcmp(tls, "none") != 0 && strcmp(tls, "starttls") != 0 &&
		strcmp(tls, "implicit") != 0) {
		snprintf(err, err_size, "%s: [smtp] tls must be none, starttls or implicit, got \"%s\"",
			cfg->path, tls);
		return -1;
	}
	if (cfg->mailer.retry_wait_max < cfg->mailer.retry_wait) {
		snprintf(err, err_size, "%s: [mailer] retry_wait_max (%ld) is less than retry_wait (%ld)",
			cfg->path, cfg->mailer.retry_wait_max, cfg->mailer.retry_wait);
		return -1;
	}
	if (strcmp(cfg->log.target, "stderr") != 0 && strcmp(cfg->log.target, "syslog") != 0) {
		snprintf(err, err_size, "%s: [log] target must be stderr or syslog, got \"%s\"",
			cfg->path, cfg->log.target);
		return -1;
	}
	if (strcmp(cfg->log.level, "error") != 0 && strcmp(cfg->log.level, "warning") != 0 &&
		strcmp(cfg->log.level, "info") != 0 && strcmp(cfg->log.level, "debug") != 0) {
		snprintf(err, err_size,
			"%s: [log] level must be error, warning, info or debug, got \"%s\"",
			cfg->path, cfg->log.level);
		return -1;
	}
	if (cfg->server.base_path[0] != '\0' && cfg->server.base_path[0] != '/') {
		snprintf(err, err_size, "%s: [server] base_path must start with '/', got \"%s\"",
			cfg->path, cfg->server.base_path);
		return -1;
	}
	return 0;
}

int config_load(struct config *cfg, const char *path, char *err, size_t err_size)
{
	struct config_parse_state state = { cfg, err, err_size, 0 };
	size_t i;
	int rc;

	memset(cfg, 0, sizeof(*cfg));
	cfg->path = strdup(path);
	if (cfg->path == NULL) {
		snprintf(err, err_size, "out of memory");
		return -1;
	}
	for (i = 0; i < CONFIG_KEY_COUNT; i++) {
		if (config_set(cfg, &config_keys[i], config_keys[i].default_value, err,
				err_size) != 0)
			return -1;
	}

	rc = ini_parse(path, config_handle_line, &state);
	if (rc == -1) {
		snprintf(err, err_size, "cannot open configuration file %s: %s", path,
			strerror(errno));
		return -1;
	}
	if (state.failed) {
		char message[256];

		/* ini_parse returns the number of the line whose handler call failed. */
		snprintf(message, sizeof(message), "%s", err);
		snprintf(err, err_size, "%s:%d: %s", path, rc, message);
		return -1;
	}
	if (rc != 0) {
		snprintf(err, err_size, "%s:%d: syntax error", path, rc);
		return -1;
	}
	return config_check(cfg, err, err_size);
}

void config_free(struct config *cfg)
{
	size_t i;

	for (i = 0; i < CONFIG_KEY_COUNT; i++) {
		if (config_keys[i].type == CONFIG_STRING) {
			char **field = (char **)((char *)cfg + config_keys[i].offset);

			free(*field);
			*field = NULL;
		}
	}
	free(cfg->path);
	cfg->path = NULL;
}

char *config_secret_path(const char *path)
{
	const char *credentials = getenv("CREDENTIALS_DIRECTORY");
	char *resolved = NULL;

	if (path[0] == '/' || credentials == NULL || credentials[0] == '\0')
		return strdup(path);
	if (asprintf(&resolved, "%s/%s", credentials, path) < 0)
		return NULL;
	return resolved;
}

static int config_is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* A secret longer than this is certainly a wrong file, such as a database dump. */
#define CONFIG_SECRET_MAX 65536

int config_read_secret(const char *path, size_t min_len, unsigned char **secret,
	size_t *secret_len, char *err, size_t err_size)
{
	char *resolved = NULL;
	unsigned char *buf = NULL;
	FILE *file = NULL;
	size_t len = 0;
	size_t start = 0;
	int rc = -1;

	*secret = NULL;
	*secret_len = 0;
	if (path == NULL || path[0] == '\0') {
		snprintf(err, err_size, "no secret file configured");
		return -1;
	}
	resolved = config_secret_path(path);
	if (resolved == NULL) {
		snprintf(err, err_size, "out of memory");
		goto out;
	}
	file = fopen(resolved, "rb");
	if (file == NULL) {
		snprintf(err, err_size, "cannot read secret file %s: %s", resolved, strerror(errno));
		goto out;
	}
	buf = malloc(CONFIG_SECRET_MAX + 1);
	if (buf == NULL) {
		snprintf(err, err_size, "out of memory");
		goto out;
	}
	len = fread(buf, 1, CONFIG_SECRET_MAX + 1, file);
	if (ferror(file) || len > CONFIG_SECRET_MAX) {
		snprintf(err, err_size, "cannot read secret file %s: %s", resolved,
			ferror(file) ? "read error" : "larger than 64 KiB");
		goto out;
	}

	while (len > 0 && config_is_space(buf[len - 1]))
		len--;
	while (start < len && config_is_space(buf[start]))
		start++;
	len -= start;
	memmove(buf, buf + start, len);
	/* The shift leaves copies of secret bytes past the end; clear them. */
	crypto_wipe(buf + len, CONFIG_SECRET_MAX + 1 - len);
	if (len == 0 || len < min_len) {
		snprintf(err, err_size, "secret file %s is too short: %zu bytes, at least %zu needed",
			resolved, len, min_len > 0 ? min_len : 1);
		goto out;
	}

	buf[len] = '\0';
	*secret = buf;
	*secret_len = len;
	buf = NULL;
	rc = 0;
out:
	if (buf != NULL) {
		crypto_wipe(buf, CONFIG_SECRET_MAX + 1);
		free(buf);
	}
	if (file != NULL)
		fclose(file);
	free(resolved);
	return rc;
}
