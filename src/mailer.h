/* The delivery loop of userops-mailer: claim due outbox rows, render, send, record. */
#ifndef USEROPS_MAILER_H
#define USEROPS_MAILER_H

#include <stddef.h>

struct config;
struct db;
struct seal_keyring;
struct smtp_client;

struct mailer {
	const struct config *cfg;
	struct db *db;
	struct seal_keyring *seal;
	struct smtp_client *smtp;
};

/*
 * Checks the settings and secrets the mailer uses (the [smtp] settings,
 * [smtp] ca_file, the templates, [seal] key_file, [smtp] password_file and
 * [database] password_file when set) and prepares the SMTP client and the
 * database handle, connecting nothing. Returns 0, or -1 with a message in err.
 */
int mailer_open(struct mailer *mailer, const struct config *cfg, char *err, size_t err_size);

void mailer_close(struct mailer *mailer);

/*
 * Delivers due rows until SIGTERM or SIGINT, which it blocks and waits for
 * itself so a message being sent is always finished and recorded first.
 * A database outage is logged once and retried, and never ends the loop.
 */
void mailer_run(struct mailer *mailer);

#endif
