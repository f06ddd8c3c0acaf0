/* Sending one rendered message to the [smtp] relay with libesmtp. */
#ifndef USEROPS_SMTP_H
#define USEROPS_SMTP_H

#include <stddef.h>

struct config_smtp;

/* Room for a relay reply as stored in mail_outbox.last_reply (VARCHAR(512)). */
#define SMTP_REPLY_MAX 512

enum smtp_outcome {
	SMTP_OUTCOME_SENT,
	SMTP_OUTCOME_TEMPORARY,   /* 4xx, refused connection, time-out: retry later */
	SMTP_OUTCOME_PERMANENT,   /* 5xx: give up */
};

/*
 * Checks the [smtp] settings the mailer can honour: tls, from, host, port
 * and timeout. Returns 0, or -1 with a message in err.
 */
int smtp_config_check(const struct config_smtp *cfg, char *err, size_t err_size);

/*
 * Sends message (CRLF line endings, NUL-terminated, headers included) from
 * the address of [smtp] from to recipient in one session. The relay's
 * deciding reply is written to reply as "CODE text" on one line, or "no
 * reply: ..." with what failed when the relay never answered. A message counts as sent only when the relay
 * accepted the recipient and the data.
 */
enum smtp_outcome smtp_deliver(const struct config_smtp *cfg, const char *recipient,
	const char *message, char *reply, size_t reply_size);

#endif
