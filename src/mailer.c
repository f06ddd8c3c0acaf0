/* The delivery loop of userops-mailer: claim due outbox rows, render, send, record. */
#include "autoconfig.h"

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "crypto.h"
#include "db.h"
#include "log.h"
#include "mail.h"
#include "mailer.h"
#include "mask.h"
#include "operations.h"
#include "outbox.h"
#include "seal.h"
#include "smtp.h"
#include "store.h"

/* While the database fails, it is tried again after a wait that doubles up to this. */
#define MAILER_DB_RETRY_MAX_MS 30000
/*
 * A claimed row is leased for [smtp] timeout, which bounds the whole
 * session, plus this many seconds to render it and record the outcome.
 * Another mailer takes the row only after that, so a mailer that dies
 * mid-send delays its message by the lease at most.
 */
#define MAILER_LEASE_MARGIN 15
/* The maximum length of a code sealed in an outbox row. */
#define MAILER_CODE_MAX 32
/*
 * The expiry sweep and the clean-up of Idempotency-Key rows run this often,
 * in batches of MAILER_SWEEP_BATCH rows, at most MAILER_SWEEP_BATCHES per
 * run so that mail delivery is not held up for long.
 */
#define MAILER_SWEEP_INTERVAL 60
#define MAILER_SWEEP_BATCH 500
#define MAILER_SWEEP_BATCHES 20
/* Idempotency-Key rows older than this many seconds are deleted. */
#define MAILER_IDEMPOTENCY_SECONDS (24 * 3600)

enum mailer_verdict {
	MAILER_SENT,
	MAILER_RETRY,
	MAILER_FAILED,
};

/* The outcome of one delivery, kept until the database has recorded it. */
struct mailer_record {
	bool pending;
	uint64_t id;
	enum mailer_verdict verdict;
	int64_t at;
	int64_t next_try_at;
	char reply[SMTP_REPLY_MAX + 1];
};

struct mailer_state {
	bool stopping;
	bool db_down;
	long db_retry_ms;
	struct mailer_record record;
};

/* Renders the shipped English code template with sample values, to find a bad one at start. */
static int mailer_check_template(const struct config *cfg, char *err, size_t err_size)
{
	struct mail_fields fields = {
		.from = cfg->smtp.from,
		.message_id_domain = cfg->mailer.message_id_domain,
		.recipient = "user@example.com",
		.code = "000000",
		.kind = "operation",
		.params_json = "{\"name\":\"value\"}",
		.email_hint = "***ser@example.com",
		.now = 0,
		.expires_at = 600,
	};
	char path[4096], reason[256];
	char *text = NULL, *message = NULL;
	int rc = -1;

	if (mail_template_path(cfg->mailer.templates_dir, "en", "code", path, sizeof(path),
	    reason, sizeof(reason)) != 0) {
		snprintf(err, err_size, "[mailer] templates_dir: %s", reason);
		return -1;
	}
	if (mail_read_template(path, &text, reason, sizeof(reason)) != MAIL_OK) {
		snprintf(err, err_size, "[mailer] templates_dir: %s", reason);
		goto out;
	}
	if (mail_render(text, &fields, &message, reason, sizeof(reason)) != MAIL_OK) {
		snprintf(err, err_size, "template %s: %s", path, reason);
		goto out;
	}
	rc = 0;
out:
	mail_free_message(message);
	free(text);
	return rc;
}

/* Reads [smtp] password_file when set, only to report a missing or unreadable one at start. */
static int mailer_check_smtp_password(const struct config *cfg, char *err, size_t err_size)
{
	unsigned char *secret = NULL;
	size_t secret_len = 0;
	char reason[512];

	if (cfg->smtp.password_file == NULL || cfg->smtp.password_file[0] == '\0')
		return 0;
	if (config_read_secret(cfg->smtp.password_file, 1, &secret, &secret_len, reason,
	    sizeof(reason)) != 0) {
		snprintf(err, err_size, "[smtp] password_file: %s", reason);
		return -1;
	}
	crypto_wipe(secret, secret_len);
	free(secret);
	return 0;
}

static int mailer_load_seal(const struct config *cfg, struct seal_keyring **seal, char *err,
	size_t err_size)
{
	char reason[512];
	char *path;
	int rc;

	if (cfg->seal_key_file == NULL || cfg->seal_key_file[0] == '\0') {
		snprintf(err, err_size, "[seal] key_file is not set in %s", cfg->path);
		return -1;
	}
	path = config_secret_path(cfg->seal_key_file);
	if (path == NULL) {
		snprintf(err, err_size, "[seal] key_file: out of memory");
		return -1;
	}
	rc = seal_keyring_load(path, seal, reason, sizeof(reason));
	if (rc != 0)
		snprintf(err, err_size, "[seal] key_file: %s", reason);
	free(path);
	return rc;
}

int mailer_open(struct mailer *mailer, const struct config *cfg, char *err, size_t err_size)
{
	memset(mailer, 0, sizeof(*mailer));
	mailer->cfg = cfg;
	mailer->smtp = smtp_client_new(&cfg->smtp, err, err_size);
	if (mailer->smtp == NULL ||
	    mailer_check_smtp_password(cfg, err, err_size) != 0 ||
	    mailer_check_template(cfg, err, err_size) != 0 ||
	    mailer_load_seal(cfg, &mailer->seal, err, err_size) != 0)
		goto fail;
	mailer->db = db_create(&cfg->database, err, err_size);
	if (mailer->db == NULL)
		goto fail;
	return 0;
fail:
	mailer_close(mailer);
	return -1;
}

void mailer_close(struct mailer *mailer)
{
	db_destroy(mailer->db);
	seal_keyring_free(mailer->seal);
	smtp_client_free(mailer->smtp);
	mailer->db = NULL;
	mailer->seal = NULL;
	mailer->smtp = NULL;
}

/*
 * Returns the seconds to wait after try number tries failed: [mailer]
 * retry_wait, doubling with each try up to retry_wait_max. A random part of
 * up to half is taken off, so that mailers that failed together in one
 * relay outage do not all come back in the same second.
 */
static long mailer_backoff(const struct config_mailer *cfg, unsigned int tries)
{
	long wait = cfg->retry_wait;
	unsigned int i;

	for (i = 1; i < tries && wait < cfg->retry_wait_max; i++)
		wait *= 2;
	if (wait > cfg->retry_wait_max)
		wait = cfg->retry_wait_max;
	return wait - (long)arc4random_uniform((uint32_t)(wait / 2 + 1));
}

/* Opens the sealed code, which is bound to the operation's uuid and must be ASCII digits. */
static int mailer_open_code(const struct mailer *mailer, const struct outbox_row *row,
	char code[MAILER_CODE_MAX + 1])
{
	unsigned char plain[OUTBOX_SEALED_MAX];
	size_t len = 0, i;
	int rc = -1;

	if (row->code_sealed_len < SEAL_OVERHEAD ||
	    seal_decrypt(mailer->seal, row->seal_key_id, row->operation_uuid, 16,
	    row->code_sealed, row->code_sealed_len, plain, &len) != 0)
		goto out;
	if (len == 0 || len > MAILER_CODE_MAX)
		goto out;
	for (i = 0; i < len; i++)
		if (plain[i] < '0' || plain[i] > '9')
			goto out;
	memcpy(code, plain, len);
	code[len] = '\0';
	rc = 0;
out:
	crypto_wipe(plain, sizeof(plain));
	return rc;
}

/* Reads the row's template and renders the message. On failure, fills record and returns -1. */
static int mailer_render(const struct mailer *mailer, const struct outbox_row *row,
	const char *code, const char *hint, int64_t now, char **message,
	struct mailer_record *record)
{
	const struct config *cfg = mailer->cfg;
	struct mail_fields fields = {
		.from = cfg->smtp.from,
		.message_id_domain = cfg->mailer.message_id_domain,
		.recipient = row->recipient,
		.code = code,
		.kind = row->kind,
		.params_json = row->params,
		.email_hint = hint,
		.now = now,
		.expires_at = row->expires_at,
	};
	char path[4096], reason[256];
	char *text = NULL;
	enum mail_result result;

	if (mail_template_path(cfg->mailer.templates_dir, row->locale, row->template_name, path,
	    sizeof(path), reason, sizeof(reason)) != 0)
		result = MAIL_INVALID_INPUT;
	else
		result = mail_read_template(path, &text, reason, sizeof(reason));
	if (result == MAIL_OK)
		result = mail_render(text, &fields, message, reason, sizeof(reason));
	free(text);
	if (result == MAIL_OK)
		return 0;

	/* A bad value stays bad, but a template or memory problem may be fixed, so it is retried. */
	record->verdict = result == MAIL_INVALID_INPUT ? MAILER_FAILED : MAILER_RETRY;
	snprintf(record->reply, sizeof(record->reply), "not sent: %s", reason);
	if (result != MAIL_INVALID_INPUT)
		log_error("cannot render outbox row %llu: %s", (unsigned long long)row->id, reason);
	return -1;
}

/* Sends one claimed row and fills record with how it ended. */
static void mailer_deliver(struct mailer *mailer, const struct outbox_row *row,
	const char *hint, struct mailer_record *record)
{
	char code[MAILER_CODE_MAX + 1];
	char *message = NULL;
	enum smtp_outcome outcome;

	memset(record, 0, sizeof(*record));
	record->pending = true;
	record->id = row->id;
	if (mailer_open_code(mailer, row, code) != 0) {
		record->verdict = MAILER_FAILED;
		snprintf(record->reply, sizeof(record->reply),
			"not sent: the sealed code does not open with the keys of [seal] key_file");
		goto out;
	}
	if (mailer_render(mailer, row, code, hint, (int64_t)time(NULL), &message, record) != 0)
		goto out;

	outcome = smtp_deliver(mailer->smtp, row->recipient, message, record->reply,
		sizeof(record->reply));
	if (outcome == SMTP_OUTCOME_SENT)
		record->verdict = MAILER_SENT;
	else if (outcome == SMTP_OUTCOME_PERMANENT ||
	    (long)row->tries >= mailer->cfg->mailer.max_tries)
		record->verdict = MAILER_FAILED;
	else
		record->verdict = MAILER_RETRY;
out:
	record->at = (int64_t)time(NULL);
	record->next_try_at = record->at + mailer_backoff(&mailer->cfg->mailer, row->tries);
	crypto_wipe(code, sizeof(code));
	mail_free_message(message);
}

static void mailer_log_record(const struct mailer_record *record, const char *hint,
	unsigned int tries)
{
	char reply[MASK_REPLY_SIZE(SMTP_REPLY_MAX)];
	unsigned long long id = (unsigned long long)record->id;

	/* A relay's reply may name the recipient, so words with an '@' are masked. */
	mask_reply(record->reply, reply, sizeof(reply));
	switch (record->verdict) {
	case MAILER_SENT:
		log_info("outbox row %llu sent to %s on try %u: %s", id, hint, tries, reply);
		break;
	case MAILER_RETRY:
		log_warning("outbox row %llu to %s: try %u failed, retrying in %lld s: %s", id, hint,
			tries, (long long)(record->next_try_at - record->at), reply);
		break;
	case MAILER_FAILED:
		log_error("outbox row %llu to %s failed for good on try %u: %s", id, hint, tries,
			reply);
		break;
	}
}

static enum db_result mailer_write_record(struct mailer *mailer,
	const struct mailer_record *record)
{
	switch (record->verdict) {
	case MAILER_SENT:
		return outbox_mark_sent(mailer->db, record->id, record->at, record->reply);
	case MAILER_RETRY:
		return outbox_mark_retrying(mailer->db, record->id, record->at,
			record->next_try_at, record->reply);
	case MAILER_FAILED:
		break;
	}
	return outbox_mark_failed(mailer->db, record->id, record->at, record->reply);
}

/* Logs the first failure of a streak only, and returns how long to wait before the next try. */
static long mailer_database_failed(struct mailer *mailer, struct mailer_state *state)
{
	if (!state->db_down) {
		log_error("database unavailable or failing, delivery paused;"
			" retrying with a wait of up to %d s", MAILER_DB_RETRY_MAX_MS / 1000);
		state->db_down = true;
		state->db_retry_ms = mailer->cfg->mailer.poll_interval_ms;
		return state->db_retry_ms;
	}
	state->db_retry_ms *= 2;
	if (state->db_retry_ms > MAILER_DB_RETRY_MAX_MS)
		state->db_retry_ms = MAILER_DB_RETRY_MAX_MS;
	return state->db_retry_ms;
}

static void mailer_database_ok(struct mailer_state *state)
{
	if (state->db_down)
		log_info("database available again, delivery resumed");
	state->db_down = false;
}

/*
 * Records a delivery still waiting for the database, else claims and
 * delivers one row. Returns how many milliseconds to wait: 0 while rows
 * are due, so the queue drains before the loop sleeps.
 */
static long mailer_step(struct mailer *mailer, struct mailer_state *state)
{
	const struct config *cfg = mailer->cfg;
	long lease = cfg->smtp.timeout + MAILER_LEASE_MARGIN;
	struct outbox_row row;
	char hint[400];
	enum db_result result;

	if (state->record.pending) {
		if (mailer_write_record(mailer, &state->record) != DB_OK)
			return mailer_database_failed(mailer, state);
		state->record.pending = false;
	}
	result = outbox_claim(mailer->db, (int64_t)time(NULL), lease, cfg->mailer.max_tries, &row);
	if (result == DB_NOT_FOUND) {
		mailer_database_ok(state);
		return cfg->mailer.poll_interval_ms;
	}
	if (result != DB_OK)
		return mailer_database_failed(mailer, state);
	mailer_database_ok(state);

	if (mask_email(row.recipient, hint, sizeof(hint)) != 0)
		snprintf(hint, sizeof(hint), "an invalid address");
	if (row.dropped) {
		log_info("outbox row %llu dropped: its operation is no longer pending or has expired",
			(unsigned long long)row.id);
	} else if (row.exhausted) {
		log_error("outbox row %llu to %s failed: no sealed code or no tries left",
			(unsigned long long)row.id, hint);
	} else {
		mailer_deliver(mailer, &row, hint, &state->record);
		mailer_log_record(&state->record, hint, row.tries);
		if (mailer_write_record(mailer, &state->record) == DB_OK)
			state->record.pending = false;
	}
	outbox_row_clear(&row);
	return 0;
}

/*
 * Writes the expiry of pending operations past expiresAt and deletes
 * Idempotency-Key rows older than MAILER_IDEMPOTENCY_SECONDS. A database
 * failure is logged unless the delivery loop already reports an outage, and
 * the next run tries again.
 */
static void mailer_sweep(struct mailer *mailer, const struct mailer_state *state)
{
	struct operations_context ops = {
		.cfg = mailer->cfg,
		.db = mailer->db,
		.seal = mailer->seal,
	};
	long expired = 0;
	long deleted = 0;
	long batch = 0;
	long purged = 0;
	enum db_result result = DB_OK;
	int i;

	for (i = 0; i < MAILER_SWEEP_BATCHES; i++) {
		batch = operations_expire_due(&ops, MAILER_SWEEP_BATCH);
		if (batch > 0)
			expired += batch;
		if (batch != MAILER_SWEEP_BATCH)
			break;
	}
	for (i = 0; i < MAILER_SWEEP_BATCHES && result == DB_OK; i++) {
		result = store_idempotency_purge(mailer->db,
			(int64_t)time(NULL) - MAILER_IDEMPOTENCY_SECONDS, MAILER_SWEEP_BATCH, &purged);
		deleted += purged;
		if (purged != MAILER_SWEEP_BATCH)
			break;
	}

	if (expired > 0)
		log_info("expiry sweep: %ld operations expired", expired);
	if (deleted > 0)
		log_info("expiry sweep: %ld Idempotency-Key rows older than 24 h deleted", deleted);
	if ((batch < 0 || result != DB_OK) && !state->db_down)
		log_warning("expiry sweep stopped by a database error; next run in %d s",
			MAILER_SWEEP_INTERVAL);
}

/* Returns seconds of a clock that never jumps, for the sweep's schedule. */
static int64_t mailer_monotonic_seconds(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)now.tv_sec;
}

/* Waits up to ms for SIGTERM or SIGINT, which stay blocked outside this wait. */
static void mailer_wait(const sigset_t *signals, long ms, bool *stopping)
{
	struct timespec timeout = { ms / 1000, (ms % 1000) * 1000000L };
	int signal_number;

	signal_number = sigtimedwait(signals, NULL, &timeout);
	if (signal_number == SIGTERM || signal_number == SIGINT) {
		log_info("received %s, stopping", signal_number == SIGTERM ? "SIGTERM" : "SIGINT");
		*stopping = true;
	}
}

void mailer_run(struct mailer *mailer)
{
	const struct config *cfg = mailer->cfg;
	struct mailer_state state = { 0 };
	int64_t next_sweep = mailer_monotonic_seconds();
	sigset_t signals;

	/* A relay that closes the connection must not kill the mailer with SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&signals);
	sigaddset(&signals, SIGTERM);
	sigaddset(&signals, SIGINT);
	sigprocmask(SIG_BLOCK, &signals, NULL);

	log_info("mailer started: relay %s:%ld, tls %s, %s, polling every %ld ms,"
		" at most %ld tries", cfg->smtp.host, cfg->smtp.port, cfg->smtp.tls,
		cfg->smtp.username[0] != '\0' ? "AUTH as the configured user" : "no AUTH",
		cfg->mailer.poll_interval_ms, cfg->mailer.max_tries);
	while (!state.stopping) {
		long wait_ms;

		if (mailer_monotonic_seconds() >= next_sweep) {
			mailer_sweep(mailer, &state);
			next_sweep = mailer_monotonic_seconds() + MAILER_SWEEP_INTERVAL;
		}
		wait_ms = mailer_step(mailer, &state);

		mailer_wait(&signals, wait_ms, &state.stopping);
	}
	if (state.record.pending && mailer_write_record(mailer, &state.record) != DB_OK)
		log_error("outbox row %llu: cannot record its delivery before stopping;"
			" the row is tried again once its lease ends",
			(unsigned long long)state.record.id);
	log_info("mailer stopped");
}
