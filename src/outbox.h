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

/* Buffer sizes in bytes of mail_outbox text columns, NUL included: 4 bytes a utf8mb4 character. */
#define OUTBOX_RECIPIENT_SIZE (320 * 4 + 1)
#define OUTBOX_LAST_REPLY_SIZE (512 * 4 + 1)

/* A mail_outbox row as userops-ctl outbox lists it: never its code. */
struct outbox_listing {
	uint64_t id;
	unsigned char operation_uuid[16];
	char recipient[OUTBOX_RECIPIENT_SIZE];
	char status[16];
	unsigned int tries;
	int64_t status_at;
	int64_t next_try_at;         /* meaningful while queued or retrying */
	bool has_last_reply;
	char last_reply[OUTBOX_LAST_REPLY_SIZE];
};

/*
 * Claims the oldest due row ('queued' or 'retrying' with next_try_at <= now)
 * in one transaction, skipping rows another mailer holds. A row whose
 * operation is no longer pending or has reached expires_at is set 'dropped'
 * with its code wiped (row->dropped), and a row that already used max_tries
 * or has no sealed code is set 'failed' (row->exhausted) with a "mail_failed"
 * audit row for its operation. Any other row is leased: tries + 1 and
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

/*
 * Sets a claimed row 'failed' with the reason, wipes its sealed code and
 * writes a "mail_failed" audit row for its operation with the reason as
 * detail, all in one transaction. A row that is no longer queued or
 * retrying stays as it is and gets no audit row.
 */
enum db_result outbox_mark_failed(struct db *db, uint64_t id, int64_t now, const char *reply);

/*
 * Calls visit on up to limit rows of mail_outbox, newest (highest id)
 * first; with failed_only, only on rows in status 'failed'. A non-zero
 * return from visit stops the walk and is returned as DB_FAILED. No row is
 * DB_OK.
 */
enum db_result outbox_list(struct db *db, bool failed_only, long limit,
	int (*visit)(const struct outbox_listing *row, void *arg), void *arg);

#endif
