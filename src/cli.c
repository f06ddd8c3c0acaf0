/* Start-up shared by the three programs: common options, configuration and secrets. */
#include "autoconfig.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "crypto.h"
#include "log.h"
#include "seal.h"

/* The pepper keys HMAC-SHA256, whose block calls for at least 32 bytes of key. */
#define CLI_PEPPER_MIN 32

void cli_fail(const char *program, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", program);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

void cli_parse(int argc, char **argv, const char *program, const char *usage,
	struct cli_options *options)
{
	static const struct option long_options[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	options->config_path = CONFIG_DEFAULT_PATH;
	options->check_only = false;

	/* "+" stops at the first argument that is not an option, such as a subcommand. */
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+:c:t", long_options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			options->config_path = optarg;
			break;
		case 't':
			options->check_only = true;
			break;
		case 'h':
			printf("%s", usage);
			exit(0);
		case 'V':
			printf("%s %s\n", program, PACKAGE_VERSION);
			exit(0);
		case ':':
			fprintf(stderr, "%s: option -%c needs a value; see --help\n", program, optopt);
			exit(2);
		default:
			if (optopt != 0)
				fprintf(stderr, "%s: unknown option -%c; see --help\n", program, optopt);
			else
				fprintf(stderr, "%s: unknown option %s; see --help\n", program,
					argv[optind - 1]);
			exit(2);
		}
	}
	options->arg_index = optind;
}

void cli_load_config(const char *program, const struct cli_options *options,
	struct config *cfg)
{
	char err[512];

	if (config_load(cfg, options->config_path, err, sizeof(err)) != 0)
		cli_fail(program, "%s", err);
	if (log_setup(program, cfg->log.target, cfg->log.level) != 0)
		cli_fail(program, "invalid [log] settings in %s", options->config_path);
}

void cli_load_secrets(const char *program, const struct config *cfg,
	struct cli_secrets *secrets)
{
	unsigned char *pepper = NULL;
	size_t pepper_len = 0;
	char err[512];

	memset(secrets, 0, sizeof(*secrets));
	if (cfg->operations.pepper_file[0] == '\0')
		cli_fail(program, "[operations] pepper_file is not set in %s", cfg->path);
	if (config_read_secret(cfg->operations.pepper_file, CLI_PEPPER_MIN, &pepper, &pepper_len,
			err, sizeof(err)) != 0)
		cli_fail(program, "[operations] pepper_file: %s", err);
	secrets->pepper = crypto_hmac_key_new(CRYPTO_HMAC_SHA256, pepper, pepper_len);
	crypto_wipe(pepper, pepper_len);
	free(pepper);
	if (secrets->pepper == NULL)
		cli_fail(program, "cannot set up the pepper as an HMAC key");

	if (cfg->seal_key_file[0] == '\0')
		cli_fail(program, "[seal] key_file is not set in %s", cfg->path);

	char *path = config_secret_path(cfg->seal_key_file);

	if (path == NULL)
		cli_fail(program, "out of memory");
	if (seal_keyring_load(path, &secrets->seal, err, sizeof(err)) != 0)
		cli_fail(program, "[seal] key_file: %s", err);
	free(path);
}

void cli_free_secrets(struct cli_secrets *secrets)
{
	crypto_hmac_key_free(secrets->pepper);
	seal_keyring_free(secrets->seal);
	memset(secrets, 0, sizeof(*secrets));
}
