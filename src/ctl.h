/* The subcommands of userops-ctl, the operator's command line. */
#ifndef USEROPS_CTL_H
#define USEROPS_CTL_H

struct cli_options;
struct json_object;
struct operation_challenge;

#define CTL_PROGRAM "userops-ctl"

/* Exit statuses: success, a failure at run time (database, not found), a usage error. */
#define CTL_EXIT_OK 0
#define CTL_EXIT_FAILURE 1
#define CTL_EXIT_USAGE 2

/*
 * A subcommand: argv[0] is its name and the rest its own arguments, parsed
 * with getopt_long. options contains the global -c. Returns the exit status.
 */
struct ctl_command {
	const char *name;
	int (*run)(int argc, char **argv, const struct cli_options *options);
};

int ctl_migrate(int argc, char **argv, const struct cli_options *options);
int ctl_create_operation(int argc, char **argv, const struct cli_options *options);
int ctl_totp_enroll(int argc, char **argv, const struct cli_options *options);
int ctl_issue_token(int argc, char **argv, const struct cli_options *options);
int ctl_show(int argc, char **argv, const struct cli_options *options);
int ctl_expire(int argc, char **argv, const struct cli_options *options);
int ctl_outbox(int argc, char **argv, const struct cli_options *options);

/*
 * Loads the configuration and every secret userops-ctl uses (the database
 * password, the pepper, the seal keys, the [auth] keys) without connecting
 * anywhere. Prints one line to stderr and returns the exit status.
 */
int ctl_check(const struct cli_options *options);

#endif
