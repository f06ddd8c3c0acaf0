/* userops-mailer: the daemon that delivers the code mails queued in mail_outbox. */
#include "autoconfig.h"

#include <stdio.h>

#include <mysql.h>

#include "cli.h"
#include "config.h"
#include "mailer.h"

#define MAILER_PROGRAM "userops-mailer"

static const char mailer_usage[] =
	"Usage: " MAILER_PROGRAM " [-c FILE] [-t]\n"
	"Delivers the code mails queued in the userops database over SMTP, with retries.\n"
	"\n"
	"  -c FILE    configuration file (default " CONFIG_DEFAULT_PATH ")\n"
	"  -t         check the configuration, the templates and the secrets the mailer\n"
	"             uses, without connecting anywhere, then exit\n"
	"  --help     print this help and exit\n"
	"  --version  print the version and exit\n"
	"\n"
	"Stops on SIGTERM or SIGINT after recording the message being sent.\n";

int main(int argc, char **argv)
{
	struct cli_options options;
	struct config cfg;
	struct mailer mailer;
	char err[1024];

	cli_parse(argc, argv, MAILER_PROGRAM, mailer_usage, &options);
	if (options.arg_index < argc)
		cli_fail(MAILER_PROGRAM, "unexpected argument %s; see --help", argv[options.arg_index]);
	cli_load_config(MAILER_PROGRAM, &options, &cfg);

	/* Connector/C is initialised once, before any connection. */
	if (mysql_library_init(0, NULL, NULL) != 0)
		cli_fail(MAILER_PROGRAM, "cannot initialise the MariaDB client library");
	if (mailer_open(&mailer, &cfg, err, sizeof(err)) != 0)
		cli_fail(MAILER_PROGRAM, "%s: %s", options.config_path, err);
	if (options.check_only) {
		printf("%s: %s is valid\n", MAILER_PROGRAM, options.config_path);
	} else {
		mailer_run(&mailer);
	}

	mailer_close(&mailer);
	config_free(&cfg);
	mysql_library_end();
	return 0;
}
