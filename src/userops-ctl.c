/* userops-ctl, the operator's command line: global options, then one subcommand from ctl.c. */
#include "autoconfig.h"

#include <stdio.h>
#include <string.h>

#include <mysql.h>

#include "cli.h"
#include "config.h"
#include "ctl.h"
#include "migrate.h"

static const char ctl_usage[] =
	"usage: " CTL_PROGRAM " [-c FILE] COMMAND [OPTIONS]\n"
	"       " CTL_PROGRAM " [-c FILE] -t\n"
	"\n"
	"Commands (COMMAND --help describes each):\n"
	"  migrate [--status] [--dir DIR]\n"
	"      apply the pending schema migrations, or list them with --status\n"
	"  create-operation --user ID --fingerprint FP [--email ADDR] [--otp]\n"
	"                   [--kind KIND] [--ttl SECONDS] [--locale LL]\n"
	"                   [--param NAME=VALUE]...\n"
	"      create an operation, queue its first code mail, print its challenge\n"
	"  totp-enroll --user ID [--secret-file FILE]\n"
	"      enrol a user for TOTP and print the secret and an otpauth:// URI\n"
	"  issue-token --user ID [--ttl SECONDS]\n"
	"  issue-token --service NAME [--scope \"SCOPES\"] [--ttl SECONDS]\n"
	"      print an HS256 user or service token for development and tests\n"
	"  show UUID\n"
	"      print an operation, its outbox rows and its audit trail as JSON\n"
	"  expire\n"
	"      write the expiry of every pending operation past expiresAt\n"
	"  outbox [--failed] [--limit N]\n"
	"      list the mail outbox, newest first, or only its failed rows\n"
	"\n"
	"Options:\n"
	"  -c FILE    configuration file (default " CONFIG_DEFAULT_PATH ")\n"
	"  -t         check the configuration and the secrets userops-ctl uses\n"
	"             without connecting anywhere, then exit\n"
	"  --help     print this help and exit\n"
	"  --version  print the version and exit\n"
	"\n"
	"Migrations are read from --dir, else $" MIGRATE_DIR_ENV ", else\n"
	USEROPS_DATADIR "/sql.\n"
	"Exit status: 0 success, 1 failure (database, not found), 2 usage error.\n";

static const struct ctl_command ctl_commands[] = {
	{ "migrate", ctl_migrate },
	{ "create-operation", ctl_create_operation },
	{ "totp-enroll", ctl_totp_enroll },
	{ "issue-token", ctl_issue_token },
	{ "show", ctl_show },
	{ "expire", ctl_expire },
	{ "outbox", ctl_outbox },
};

int main(int argc, char **argv)
{
	struct cli_options options;
	const char *name;
	int rc;

	cli_parse(argc, argv, CTL_PROGRAM, ctl_usage, &options);
	if (options.check_only) {
		if (options.arg_index < argc) {
			fprintf(stderr, "%s: -t takes no subcommand, got %s\n", CTL_PROGRAM,
				argv[options.arg_index]);
			return CTL_EXIT_USAGE;
		}
		return ctl_check(&options);
	}
	if (options.arg_index >= argc) {
		fprintf(stderr, "%s: missing subcommand; see %s --help\n", CTL_PROGRAM,
			CTL_PROGRAM);
		return CTL_EXIT_USAGE;
	}

	name = argv[options.arg_index];
	for (size_t i = 0; i < sizeof(ctl_commands) / sizeof(ctl_commands[0]); i++) {
		if (strcmp(name, ctl_commands[i].name) != 0)
			continue;
		rc = ctl_commands[i].run(argc - options.arg_index, argv + options.arg_index,
			&options);
		mysql_library_end();
		return rc;
	}
	fprintf(stderr, "%s: unknown subcommand %s; see %s --help\n", CTL_PROGRAM, name,
		CTL_PROGRAM);
	return CTL_EXIT_USAGE;
}
