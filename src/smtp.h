/* Sending one rendered message to the [smtp] relay with libesmtp. */
#ifndef USEROPS_SMTP_H
#define USEROPS_SMTP_H

#include <stddef.h>

struct config_smtp;
struct smtp_client;

/* Room for a relay reply as stored in mail_outbox.last_reply (VARCHAR(512)). */
#define SMTP_REPLY_MAX 512

enum smtp_outcome {
	SMTP_OUTCOME_SENT,
	SMTP_OUTCOME_TEMPORARY,   /* 4xx, no reply, TLS or AUTH failure: retry later */
	SMTP_OUTCOME_PERMANENT,   /* 5xx to the sender, the recipient or the data: give up */
};

/*
 * Checks the [smtp] settings: tls, host, port, timeout, from, and that
 * username comes with password_file and is never sent in clear text
 * unless allow_plaintext_auth is set. Returns 0, or -1 with a message in
 * err.
 */
int smtp_config_check(const struct config_smtp *cfg, char *err, size_t err_size);

/*
 * Prepares what every session shares: the TLS context with its
 * certificates (for tls = starttls or implicit) and libesmtp's SASL
 * client. cfg must outlive the client. Returns NULL with a message in err.
 */
struct smtp_client *smtp_client_new(const struct config_smtp *cfg, char *err, size_t err_size);

void smtp_client_free(struct smtp_client *client);

/*
 * Sends message (CRLF line endings, NUL-terminated, headers included) from
 * the address of [smtp] from to recipient in one session that never lasts
 * longer than [smtp] timeout. The relay's deciding reply is written to
 * reply as "CODE text" on one line, or "no reply: ..." with what failed
 * (connect, TLS, time-out) when the relay sent no reply to that step. A
 * message counts as sent only when the relay accepted the recipient and
 * the data.
 */
enum smtp_outcome smtp_deliver(struct smtp_client *client, const char *recipient,
	const char *message, char *reply, size_t reply_size);

#endif
