/* Start-up shared by the three programs: common options, configuration and secrets. */
#ifndef USEROPS_CLI_H
#define USEROPS_CLI_H

#include <stdbool.h>
#include <stddef.h>

struct config;
struct crypto_hmac_key;
struct seal_keyring;

struct cli_options {
	const char *config_path;   /* -c FILE, else CONFIG_DEFAULT_PATH */
	bool check_only;           /* -t */
	int arg_index;             /* first argument after the options */
};

/*
 * Parses -c FILE, -t, --help and --version, stopping at the first other
 * argument. --help prints usage and --version the version, then exit 0;
 * an unknown option prints one line to stderr and exits 2.
 */
void cli_parse(int argc, char **argv, const char *program, const char *usage,
	struct cli_options *options);

/* Prints "program: message" to stderr and exits 1. */
void cli_fail(const char *program, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), noreturn));

/* Loads the configuration and sets up logging from [log]; exits 1 with a message on error. */
void cli_load_config(const char *program, const struct cli_options *options,
	struct config *cfg);

/* The secrets of [operations] and [seal]. */
struct cli_secrets {
	struct crypto_hmac_key *pepper;
	struct seal_keyring *seal;
};

/* Loads the pepper (at least 32 bytes) and the seal keys; exits 1 naming the file on error. */
void cli_load_secrets(const char *program, const struct config *cfg,
	struct cli_secrets *secrets);

void cli_free_secrets(struct cli_secrets *secrets);

#endif
