/* Sending one rendered message to the [smtp] relay with libesmtp 1.1. */
#include "autoconfig.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* libesmtp declares its OpenSSL functions only after <openssl/ssl.h>. */
#include <openssl/ssl.h>
#include <auth-client.h>
#include <libesmtp.h>

#include "config.h"
#include "crypto.h"
#include "mail.h"
#include "smtp.h"
#include "smtp_link.h"
#include "tls.h"

/* Seconds that libesmtp's own time-out of each step waits past [smtp] timeout. */
#define SMTP_STEP_TIMEOUT_MARGIN 2
/* RFC 4616 allows 255 octets for each of the user name and the password. */
#define SMTP_CREDENTIAL_MAX 255

struct smtp_client {
	const struct config_smtp *cfg;
	struct tls_client *tls;          /* NULL with tls = none */
	bool implicit_tls;
	bool auth;
};

/* The state of one session beyond libesmtp's status codes. */
struct smtp_try {
	struct smtp_client *client;
	char last_line[256];             /* the relay's last reply line */
	char first_error[256];           /* its first 4xx or 5xx reply line */
	bool starttls_missing;
	char user[SMTP_CREDENTIAL_MAX + 1];
	char password[SMTP_CREDENTIAL_MAX + 1];
};

static bool smtp_tls_is(const struct config_smtp *cfg, const char *mode)
{
	return cfg->tls != NULL && strcmp(cfg->tls, mode) == 0;
}

static bool smtp_is_set(const char *value)
{
	return value != NULL && value[0] != '\0';
}

static int smtp_check_auth(const struct config_smtp *cfg, char *err, size_t err_size)
{
	if (!smtp_is_set(cfg->username)) {
		if (smtp_is_set(cfg->password_file)) {
			snprintf(err, err_size, "[smtp] password_file is set without username");
			return -1;
		}
		return 0;
	}
	if (strlen(cfg->username) > SMTP_CREDENTIAL_MAX || strpbrk(cfg->username, "\r\n") != NULL) {
		snprintf(err, err_size, "invalid [smtp] username: expected one line of at most %d bytes",
			SMTP_CREDENTIAL_MAX);
		return -1;
	}
	if (!smtp_is_set(cfg->password_file)) {
		snprintf(err, err_size, "[smtp] username is set without password_file");
		return -1;
	}
	if (smtp_tls_is(cfg, "none") && !cfg->allow_plaintext_auth) {
		snprintf(err, err_size,
			"[smtp] username is set with tls = none: the password would cross the network"
			" in clear text; use tls = starttls or implicit, or set allow_plaintext_auth = yes");
		return -1;
	}
	return 0;
}

int smtp_config_check(const struct config_smtp *cfg, char *err, size_t err_size)
{
	char from_address[MAIL_ADDRESS_MAX + 1];

	if (!smtp_tls_is(cfg, "none") && !smtp_tls_is(cfg, "starttls") &&
	    !smtp_tls_is(cfg, "implicit")) {
		snprintf(err, err_size, "invalid [smtp] tls %s: expected none, starttls or implicit",
			cfg->tls != NULL ? cfg->tls : "(unset)");
		return -1;
	}
	if (!smtp_is_set(cfg->host)) {
		snprintf(err, err_size, "[smtp] host is missing");
		return -1;
	}
	if (strpbrk(cfg->host, "[]/ ") != NULL) {
		snprintf(err, err_size,
			"invalid [smtp] host %s: expected a name or an address without brackets, such as ::1",
			cfg->host);
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
	if (!smtp_is_set(cfg->from)) {
		snprintf(err, err_size, "[smtp] from is missing");
		return -1;
	}
	if (strpbrk(cfg->from, "\r\n") != NULL ||
	    mail_from_address(cfg->from, from_address, sizeof(from_address)) != 0) {
		snprintf(err, err_size,
			"invalid [smtp] from: expected \"addr@domain\" or \"Name <addr@domain>\"");
		return -1;
	}
	return smtp_check_auth(cfg, err, err_size);
}

/* Reads [smtp] password_file for one session, so a changed password needs no restart. */
static int smtp_read_password(const struct config_smtp *cfg, struct smtp_try *try,
	char *err, size_t err_size)
{
	unsigned char *secret = NULL;
	size_t len = 0;
	char reason[300];
	int rc = 0;

	if (config_read_secret(cfg->password_file, 1, &secret, &len, reason,
	    sizeof(reason)) != 0) {
		snprintf(err, err_size, "[smtp] password_file: %s", reason);
		return -1;
	}
	if (len > SMTP_CREDENTIAL_MAX || memchr(secret, '\0', len) != NULL) {
		snprintf(err, err_size, "[smtp] password_file: expected at most %d bytes of text",
			SMTP_CREDENTIAL_MAX);
		rc = -1;
	} else {
		memcpy(try->password, secret, len);
		try->password[len] = '\0';
	}
	crypto_wipe(secret, len);
	free(secret);
	return rc;
}

struct smtp_client *smtp_client_new(const struct config_smtp *cfg, char *err, size_t err_size)
{
	struct smtp_client *client;

	if (smtp_config_check(cfg, err, err_size) != 0)
		return NULL;
	client = calloc(1, sizeof(*client));
	if (client == NULL) {
		snprintf(err, err_size, "out of memory");
		return NULL;
	}
	client->cfg = cfg;
	client->implicit_tls = smtp_tls_is(cfg, "implicit");
	client->auth = smtp_is_set(cfg->username);
	if (!smtp_tls_is(cfg, "none")) {
		/*
		 * STARTTLS stays at TLS 1.2 to work around libesmtp 1.1.0. After a
		 * TLS 1.3 handshake the relay's session tickets often arrive before
		 * libesmtp has sent EHLO. libesmtp then reads first, and waits until
		 * its time-out for a reply to a command it has not sent. Implicit
		 * TLS runs in smtp_link.c, which reads and writes as the data
		 * allows, so it keeps TLS 1.3.
		 */
		client->tls = tls_client_new(cfg->host, cfg->ca_file, !client->implicit_tls, err,
			err_size);
		if (client->tls == NULL) {
			free(client);
			return NULL;
		}
	}
	if (client->auth)
		auth_client_init();
	return client;
}

void smtp_client_free(struct smtp_client *client)
{
	if (client == NULL)
		return;
	if (client->auth)
		auth_client_exit();
	tls_client_free(client->tls);
	free(client);
}

/* Writes "CODE text" with line breaks and other control characters turned into spaces. */
static void smtp_format_reply(int code, const char *text, char *reply, size_t reply_size)
{
	size_t i, len;
	int written;

	if (code != 0)
		written = snprintf(reply, reply_size, "%d %s", code, text != NULL ? text : "");
	else
		written = snprintf(reply, reply_size, "%s", text != NULL ? text : "");
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
 * Keeps the relay's last reply line. libesmtp shows the monitor what it
 * reads after decryption; what it writes (AUTH included) is never kept.
 */
static void smtp_monitor(const char *buf, int buflen, int writing, void *arg)
{
	struct smtp_try *try = arg;
	const char *line, *end = buf + buflen;

	if (writing || buflen <= 0)
		return;
	while (end > buf && (end[-1] == '\n' || end[-1] == '\r'))
		end--;
	line = end;
	while (line > buf && line[-1] != '\n')
		line--;
	if (end - line < 3)
		return;
	snprintf(try->last_line, sizeof(try->last_line), "%.*s", (int)(end - line), line);
	if (try->first_error[0] == '\0' && (line[0] == '4' || line[0] == '5'))
		smtp_format_reply(0, try->last_line, try->first_error, sizeof(try->first_error));
}

/*
 * Handles libesmtp's events. OpenSSL has already checked the relay's
 * certificate and its name against [smtp] host during the handshake, which
 * fails otherwise. libesmtp then compares the name with the host it
 * connected to, which is the loopback link, so that second check is
 * accepted when OpenSSL's passed.
 */
static void smtp_event(smtp_session_t session, int event, void *arg, ...)
{
	struct smtp_try *try = arg;
	va_list ap;

	(void)session;
	va_start(ap, arg);
	if (event == SMTP_EV_EXTNA_STARTTLS) {
		try->starttls_missing = true;
	} else if (event == SMTP_EV_WRONG_PEER_CERTIFICATE) {
		int *ok = va_arg(ap, int *);
		const char *name = va_arg(ap, const char *);
		SSL *ssl = va_arg(ap, SSL *);

		(void)name;
		if (ok != NULL && ssl != NULL)
			*ok = SSL_get_verify_result(ssl) == X509_V_OK;
	}
	va_end(ap);
}

/* Gives libesmtp's SASL client the user name and the password. */
static int smtp_interact(auth_client_request_t request, char **result, int fields, void *arg)
{
	struct smtp_try *try = arg;
	int i;

	for (i = 0; i < fields; i++) {
		if (request[i].flags & AUTH_USER)
			result[i] = try->user;
		else if (request[i].flags & AUTH_PASS)
			result[i] = try->password;
		else
			return 0;
	}
	return 1;
}

/* Whether a 5xx reply is about the session (AUTH) rather than this message. */
static bool smtp_is_session_reply(int code)
{
	return code == 530 || code == 534 || code == 535 || code == 538;
}

static enum smtp_outcome smtp_classify(int code)
{
	if (code >= 200 && code < 300)
		return SMTP_OUTCOME_SENT;
	if (code >= 500 && code < 600 && !smtp_is_session_reply(code))
		return SMTP_OUTCOME_PERMANENT;
	/* 4xx, AUTH trouble, and no reply at all (code 0) because the session ended early. */
	return SMTP_OUTCOME_TEMPORARY;
}

/* Describes a step the relay sent no reply to, from the session's state. */
static void smtp_format_no_reply(const struct smtp_try *try, bool deadline_hit,
	char *reply, size_t reply_size)
{
	const char *tls_failure = try->client->tls != NULL ?
		tls_client_failure(try->client->tls) : "";
	char reason[256];
	int error = smtp_errno();

	if (deadline_hit)
		snprintf(reply, reply_size,
			"no reply: the session passed the [smtp] timeout of %ld s%s%s",
			try->client->cfg->timeout, try->last_line[0] != '\0' ? "; last reply: " : "",
			try->last_line);
	else if (tls_failure[0] != '\0')
		snprintf(reply, reply_size, "no reply: TLS: %s", tls_failure);
	else if (try->starttls_missing)
		snprintf(reply, reply_size,
			"no reply: the relay does not offer STARTTLS, which [smtp] tls = starttls requires");
	else if (try->first_error[0] != '\0')
		snprintf(reply, reply_size, "no reply: the session ended after \"%s\"",
			try->first_error);
	else if (error != 0)
		snprintf(reply, reply_size, "no reply: %s",
			smtp_strerror(error, reason, sizeof(reason)));
	else
		snprintf(reply, reply_size,
			"no reply: the session ended before the relay answered");
}

/*
 * Decides the outcome of a session that libesmtp reports as completed:
 * smtp_start_session() also succeeds when the relay refused the sender,
 * the recipient or the data, so each step's status is checked in order.
 */
static enum smtp_outcome smtp_session_outcome(const struct smtp_try *try,
	smtp_message_t message, smtp_recipient_t recipient, bool deadline_hit,
	char *reply, size_t reply_size)
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
				smtp_format_no_reply(try, deadline_hit, reply, reply_size);
			else if (smtp_is_session_reply(steps[i]->code) && try->first_error[0] != '\0')
				/* A refused AUTH (535) comes before the 530 that MAIL then gets. */
				snprintf(reply, reply_size, "%s", try->first_error);
			else
				smtp_format_reply(steps[i]->code, steps[i]->text, reply, reply_size);
			return outcome;
		}
	}
	return SMTP_OUTCOME_TEMPORARY;
}

/*
 * Sets every protocol time-out to seconds, below the RFC 5321 minimums.
 * The caller gives a little more than [smtp] timeout, so that the link's
 * deadline, which bounds the whole session, always ends it first and the
 * reply names the time-out.
 */
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

static int smtp_set_security(smtp_session_t session, struct smtp_try *try,
	auth_context_t *auth)
{
	struct smtp_client *client = try->client;
	bool starttls = client->tls != NULL && !client->implicit_tls;

	if (!smtp_starttls_enable(session, starttls ? Starttls_REQUIRED : Starttls_DISABLED) ||
	    (starttls && !smtp_starttls_set_ctx(session, tls_client_context(client->tls))))
		return -1;
	if (!client->auth)
		return 0;
	*auth = auth_create_context();
	if (*auth == NULL ||
	    !auth_set_mechanism_flags(*auth, AUTH_PLUGIN_PLAIN, 0) ||
	    !auth_set_interact_cb(*auth, smtp_interact, try) ||
	    !smtp_auth_set_context(session, *auth))
		return -1;
	return 0;
}

/* Creates the session with its one message and recipient. Returns NULL on failure. */
static smtp_session_t smtp_prepare(struct smtp_try *try, const char *server,
	const char *recipient, const char *text, smtp_message_t *message,
	smtp_recipient_t *rcpt, auth_context_t *auth)
{
	const struct config_smtp *cfg = try->client->cfg;
	char from_address[MAIL_ADDRESS_MAX + 1];
	smtp_session_t session;

	if (mail_from_address(cfg->from, from_address, sizeof(from_address)) != 0)
		return NULL;
	session = smtp_create_session();
	if (session == NULL)
		return NULL;
	*message = smtp_add_message(session);
	if (*message == NULL || !smtp_set_server(session, server) ||
	    smtp_set_security(session, try, auth) != 0 ||
	    !smtp_set_eventcb(session, smtp_event, try) ||
	    !smtp_set_monitorcb(session, smtp_monitor, try, 0) ||
	    smtp_set_timeouts(session, cfg->timeout + SMTP_STEP_TIMEOUT_MARGIN) != 0 ||
	    (smtp_is_set(cfg->helo_name) && !smtp_set_hostname(session, cfg->helo_name)) ||
	    !smtp_set_reverse_path(*message, from_address) ||
	    !smtp_set_message_str(*message, (void *)text))
		goto fail;
	*rcpt = smtp_add_recipient(*message, recipient);
	if (*rcpt == NULL)
		goto fail;
	return session;
fail:
	smtp_destroy_session(session);
	return NULL;
}

/* Runs one session through an open link and decides its outcome. */
static enum smtp_outcome smtp_run(struct smtp_try *try, struct smtp_link *link,
	const char *server, const char *recipient, const char *message, char *reply,
	size_t reply_size)
{
	smtp_session_t session;
	smtp_message_t handle = NULL;
	smtp_recipient_t rcpt = NULL;
	auth_context_t auth = NULL;
	enum smtp_outcome outcome;
	char reason[256];
	bool started, deadline_hit;

	/* libesmtp keeps a pointer to message (it does not copy it) until the session is destroyed. */
	session = smtp_prepare(try, server, recipient, message, &handle, &rcpt, &auth);
	if (session == NULL) {
		smtp_link_close(link);
		if (auth != NULL)
			auth_destroy_context(auth);
		snprintf(reply, reply_size, "no reply: cannot set up the SMTP session: %s",
			smtp_strerror(smtp_errno(), reason, sizeof(reason)));
		return SMTP_OUTCOME_TEMPORARY;
	}
	started = smtp_start_session(session) != 0;
	deadline_hit = smtp_link_close(link);
	if (started && !deadline_hit) {
		outcome = smtp_session_outcome(try, handle, rcpt, deadline_hit, reply, reply_size);
	} else {
		/*
		 * At the deadline the link ends the stream, and libesmtp may keep
		 * the code of a reply cut off there ("250" with no line end), so
		 * the try never counts as sent. The relay may still have the
		 * message, so the retry can deliver it twice.
		 */
		outcome = SMTP_OUTCOME_TEMPORARY;
		smtp_format_no_reply(try, deadline_hit, reply, reply_size);
	}
	smtp_destroy_session(session);
	if (auth != NULL)
		auth_destroy_context(auth);
	return outcome;
}

enum smtp_outcome smtp_deliver(struct smtp_client *client, const char *recipient,
	const char *message, char *reply, size_t reply_size)
{
	const struct config_smtp *cfg = client->cfg;
	struct smtp_try *try;
	struct smtp_link *link;
	char server[SMTP_LINK_ADDRESS_MAX], reason[512];
	enum smtp_outcome outcome = SMTP_OUTCOME_TEMPORARY;

	try = calloc(1, sizeof(*try));
	if (try == NULL) {
		snprintf(reply, reply_size, "no reply: out of memory");
		return SMTP_OUTCOME_TEMPORARY;
	}
	try->client = client;
	if (client->tls != NULL)
		tls_client_reset_failure(client->tls);
	if (client->auth) {
		snprintf(try->user, sizeof(try->user), "%s", cfg->username);
		if (smtp_read_password(cfg, try, reason, sizeof(reason)) != 0) {
			snprintf(reply, reply_size, "not sent: %s", reason);
			goto out;
		}
	}
	link = smtp_link_open(cfg->host, cfg->port, client->implicit_tls ? client->tls : NULL,
		cfg->timeout * 1000L, server, reason, sizeof(reason));
	if (link == NULL) {
		snprintf(reply, reply_size, "no reply: %s", reason);
		goto out;
	}
	outcome = smtp_run(try, link, server, recipient, message, reply, reply_size);
out:
	crypto_wipe(try, sizeof(*try));
	free(try);
	return outcome;
}
