/* The INI configuration file: sections, keys, defaults and secret files. */
#ifndef USEROPS_CONFIG_H
#define USEROPS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#define CONFIG_DEFAULT_PATH USEROPS_SYSCONFDIR "/userops.conf"

struct config_server {
	char *listen;
	long workers;
	long max_requests;
	long max_body;
	char *base_path;
	long drain_timeout;   /* seconds a stopping pool waits for requests in flight */
};

struct config_database {
	char *host;
	long port;
	char *socket;
	char *name;
	char *user;
	char *password_file;
	long connect_timeout;
};

/* JWT verification settings; [auth] for users, [internal] for services. */
struct config_jwt {
	char *algorithms;
	char *hs_secret_file;
	char *public_key_file;
	char *issuer;
	char *audience;
	long leeway;
};

struct config_operations {
	long code_length;
	long lifetime;
	long max_attempts;
	bool accept_previous_code;
	long resend_cooldown;
	long max_resends;
	long totp_window;
	char *pepper_file;
	char *totp_issuer;
};

struct config_smtp {
	char *host;
	long port;
	char *tls;
	char *ca_file;
	char *username;
	char *password_file;
	char *from;
	char *helo_name;
	long timeout;
	bool allow_plaintext_auth;
};

struct config_mailer {
	long poll_interval_ms;
	long max_tries;
	long retry_wait;
	long retry_wait_max;
	char *templates_dir;
	char *message_id_domain;
};

struct config_log {
	char *target;
	char *level;
};

struct config {
	char *path;
	struct config_server server;
	struct config_database database;
	struct config_jwt auth;
	struct config_operations operations;
	char *seal_key_file;
	struct config_smtp smtp;
	struct config_mailer mailer;
	struct config_jwt internal;
	struct config_log log;
};

/*
 * Reads the file at path into cfg, filling defaults first. Unknown sections
 * or keys, values out of range and a missing file are errors: returns -1
 * with a one-line message in err.
 */
int config_load(struct config *cfg, const char *path, char *err, size_t err_size);

void config_free(struct config *cfg);

/*
 * Resolves a *_file setting: a relative path is taken under
 * $CREDENTIALS_DIRECTORY when systemd sets it. Returns a new string.
 */
char *config_secret_path(const char *path);

/*
 * Reads a secret file whose text, less surrounding white space, is the
 * secret. path is resolved with config_secret_path first. Fails with a message naming the file when it is missing,
 * unreadable, empty or shorter than min_len bytes. The caller wipes and
 * frees *secret.
 */
int config_read_secret(const char *path, size_t min_len, unsigned char **secret,
	size_t *secret_len, char *err, size_t err_size);

#endif
