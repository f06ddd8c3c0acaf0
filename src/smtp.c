/* Sending one rendered message to the [smtp] relay with libesmtp 1.1. */
#include "autoconfig.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <libesmtp.h>

#include "config.h"
#include "mail.h"
#include "smtp.h"

int smtp_config_check(const struct config_smtp *cfg, char *err, size_t err_size)
{
	char from_address[MAIL_ADDRESS_MAX + 1];

	/* TODO: STARTTLS, implicit TLS and AUTH (ca_file, username, password_file) are not wired to libesmtp yet. */
	if (cfg->tls != NULL && strcmp(cfg->tls, "none") != 0) {
		snprintf(err, err_size, "[smtp] tls = %s is not supported yet, set tls = none",
			cfg->tls);
		return -1;
	}
	if (cfg->username != NULL && cfg->username[0] != '\0') {
		snprintf(err, err_size,
			"[smtp] username is set but SMTP AUTH is not supported yet, remove it");
		return -1;
	}
	if (cfg->host == NULL || cfg->host[0] == '\0') {
		snprintf(err, err_size, "[smtp] host is missing");
		return -1;
	}
	if (cfg->port < 1 || cfg->port > 65535) {
		snprintf(err, err_size, "invalid [smtp] port %ld: expected 1 to 65535", cfg->port);
		return -1;
	}
	if (cfg->timeout < 1) {
		snprintf(err, err_size, "invalid [smtp] timeout %ld: expected at least 1 second",
			cfg->timeout);
		return -1;
	}
	if (cfg->from == NULL || cfg->from[0] == '\0') {
		snprintf(err, err_size, "[smtp] from is missing");
		return -1;
	}
	if (strpbrk(cfg->from, "\r\n") != NULL ||
	    mail_from_address(cfg->from, from_address, sizeof(from_address)) != 0) {
		snprintf(err, err_size,
			"invalid [smtp] from: expected \"addr@domain\" or \"Name <addr@domain>\"");
		return -1;
	}
	return 0;
}

/* Writes "CODE text" with line breaks and other control characters turned into spaces. */
static void smtp_format_reply(int code, const char *text, char *reply, size_t reply_size)
{
	size_t i, len;
	int written;

	written = snprintf(reply, reply_size, "%d %s", code, text != NULL ? text : "");
	if (written < 0) {
		reply[0] = '\0';
		return;
	}
	len = strlen(reply);
	for (i = 0; i < len; i++)
		if ((unsigned char)reply[i] < 0x20 || reply[i] == 0x7f)
			reply[i] = ' ';
	while (len > 0 && reply[len - 1] == ' ')
		reply[--len] = '\0';
}

/*
 * Describes a step the relay never answered. libesmtp 1.1 reports a
 * time-out or a dropped connection this way, setting smtp_errno() when it
 * knows the cause.
 */
static void smtp_format_no_reply(char *reply, size_t reply_size)
{
	char reason[256];
	int error = smtp_errno();

	if (error == 0) {
		snprintf(reply, reply_size,
			"no reply: the session ended before the relay answered");
		return;
	}
	snprintf(reply, reply_size, "no reply: %s",
		smtp_strerror(error, reason, sizeof(reason)));
}

static enum smtp_outcome smtp_classify(int code)
{
	if (code >= 200 && code < 300)
		return SMTP_OUTCOME_SENT;
	if (code >= 500 && code < 600)
		return SMTP_OUTCOME_PERMANENT;
	/* 4xx, and no reply at all (code 0) because the session ended before that step. */
	return SMTP_OUTCOME_TEMPORARY;
}

/*
 * Decides the outcome of a session that libesmtp reports as completed:
 * smtp_start_session() also succeeds when the relay refused the sender,
 * the recipient or the data, so each step's status is checked in order.
 */
static enum smtp_outcome smtp_session_outcome(smtp_message_t message,
	smtp_recipient_t recipient, char *reply, size_t reply_size)
{
	const smtp_status_t *steps[3];
	size_t i;

	steps[0] = smtp_reverse_path_status(message);
	steps[1] = smtp_recipient_status(recipient);
	steps[2] = smtp_message_transfer_status(message);
	for (i = 0; i < 3; i++) {
		enum smtp_outcome outcome;

		if (steps[i] == NULL) {
			snprintf(reply, reply_size, "no reply: the SMTP library gave no status");
			return SMTP_OUTCOME_TEMPORARY;
		}
		outcome = smtp_classify(steps[i]->code);
		if (outcome != SMTP_OUTCOME_SENT || i == 2) {
			if (steps[i]->code == 0)
				smtp_format_no_reply(reply, reply_size);
			else
				smtp_format_reply(steps[i]->code, steps[i]->text, reply, reply_size);
			return outcome;
		}
	}
	return SMTP_OUTCOME_TEMPORARY;
}

/* Sets every protocol time-out to seconds, below the RFC 5321 minimums if asked. */
static int smtp_set_timeouts(smtp_session_t session, long seconds)
{
	static const int which[] = { Timeout_GREETING, Timeout_ENVELOPE, Timeout_DATA,
		Timeout_TRANSFER, Timeout_DATA2 };
	size_t i;

	/* libesmtp takes milliseconds. */
	for (i = 0; i < sizeof(which) / sizeof(which[0]); i++)
		if (smtp_set_timeout(session, which[i] | Timeout_OVERRIDE_RFC2822_MINIMUM,
		    seconds * 1000L) <= 0)
			return -1;
	return 0;
}

/* Creates the session with its one message and recipient. Returns NULL on failure. */
static smtp_session_t smtp_prepare(const struct config_smtp *cfg, const char *recipient,
	const char *text, smtp_message_t *message, smtp_recipient_t *rcpt)
{
	char from_address[MAIL_ADDRESS_MAX + 1];
	char server[512];
	smtp_session_t session;
	int len;

	if (mail_from_address(cfg->from, from_address, sizeof(from_address)) != 0)
		return NULL;
	/* NOTE: an IPv6 literal in [smtp] host would need brackets that this does not add. */
	len = snprintf(server, sizeof(server), "%s:%ld", cfg->host, cfg->port);
	if (len < 0 || (size_t)len >= sizeof(server))
		return NULL;
	session = smtp_create_session();
	if (session == NULL)
		return NULL;
	*message = smtp_add_message(session);
	if (*message == NULL || !smtp_set_server(session, server) ||
	    !smtp_starttls_enable(session, Starttls_DISABLED) ||
	    smtp_set_timeouts(session, cfg->timeout) != 0 ||
	    (cfg->helo_name != NULL && cfg->helo_name[0] != '\0' &&
	     !smtp_set_hostname(session, cfg->helo_name)) ||
	    !smtp_set_reverse_path(*message, from_address) ||
	    !smtp_set_message_str(*message, (void *)text)) {
		smtp_destroy_session(session);
		return NULL;
	}
	*rcpt = smtp_add_recipient(*message, recipient);
	if (*rcpt == NULL) {
		smtp_destroy_session(session);
		return NULL;
	}
	return session;
}

enum smtp_outcome smtp_deliver(const struct config_smtp *cfg, const char *recipient,
	const char *message, char *reply, size_t reply_size)
{
	smtp_session_t session = NULL;
	smtp_message_t handle = NULL;
	smtp_recipient_t rcpt = NULL;
	enum smtp_outcome outcome;
	char reason[256];

	/* libesmtp keeps a pointer to message (it does not copy it) until the session is destroyed. */
	session = smtp_prepare(cfg, recipient, message, &handle, &rcpt);
	if (session == NULL) {
		snprintf(reply, reply_size, "no reply: cannot set up the SMTP session: %s",
			smtp_strerror(smtp_errno(), reason, sizeof(reason)));
		return SMTP_OUTCOME_TEMPORARY;
	}

	/* TODO: connect() has no time-out in libesmtp 1.1, so a relay that drops SYNs blocks the mailer until the kernel gives up. */
	if (!smtp_start_session(session)) {
		snprintf(reply, reply_size, "no reply: SMTP session failed: %s",
			smtp_strerror(smtp_errno(), reason, sizeof(reason)));
		outcome = SMTP_OUTCOME_TEMPORARY;
	} else {
		outcome = smtp_session_outcome(handle, rcpt, reply, reply_size);
	}
	smtp_destroy_session(session);
	return outcome;
}
