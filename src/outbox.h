/* The mailer's side of mail_outbox: claiming due rows and recording how delivery ended. */
#ifndef USEROPS_OUTBOX_H
#define USEROPS_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "seal.h"

/* VARBINARY(255) in sql/001_initial.sql. */
#define OUTBOX_SEALED_MAX 255

/* A claimed row, with what delivery needs from its operation. */
struct outbox_row {
	uint64_t id;
	unsigned char operation_uuid[16];
	char recipient[321];
	char template_name[65];
	char locale[17];
	char kind[65];
	char *params;                /* JSON text, freed by outbox_row_clear() */
	unsigned char code_sealed[OUTBOX_SEALED_MAX];
	size_t code_sealed_len;
	bool has_code;
	char seal_key_id[SEAL_KEY_ID_MAX + 1];
	unsigned int tries;          /* counting the try just claimed */
	int64_t expires_at;          /* of the operation */
	bool dropped;                /* the operation is no longer pending: nothing to send */
	bool exhausted;              /* max_tries reached by earlier tries: the row was failed */
};

/*
 * Claims the oldest due row ('queued' or 'retrying' with next_try_at <= now)
 * in one transaction, skipping rows another mailer holds. A row whose
 * operation is no longer pending or has reached expires_at is set 'dropped'
 * with its code wiped (row->dropped), and a row that already used max_tries
 * is set 'failed' (row->exhausted). Any other row is leased: tries + 1 and
 * next_try_at = now + lease_seconds, so no other mailer takes it while it
 * is being sent, and a mailer that dies mid-send leaves it to be retried.
 * Returns DB_OK with row filled, DB_NOT_FOUND when nothing is due, or the
 * database error.
 */
enum db_result outbox_claim(struct db *db, int64_t now, long lease_seconds, long max_tries,
	struct outbox_row *row);

/* Frees row->params and wipes the sealed code. */
void outbox_row_clear(struct outbox_row *row);

/* Sets a claimed row 'sent' with the relay's reply and wipes its sealed code. */
enum db_result outbox_mark_sent(struct db *db, uint64_t id, int64_t now, const char *reply);

/* Sets a claimed row 'retrying' from next_try_at, keeping its code. */
enum db_result outbox_mark_retrying(struct db *db, uint64_t id, int64_t now,
	int64_t next_try_at, const char *reply);

/* Sets a claimed row 'failed' with the reason and wipes its sealed code. */
enum db_result outbox_mark_failed(struct db *db, uint64_t id, int64_t now, const char *reply);

#endif
