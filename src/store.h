/* Typed SQL for operations, TOTP enrolments, outbox rows and audit rows. */
#ifndef USEROPS_STORE_H
#define USEROPS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "operations.h"
#include "seal.h"

/*
 * Buffer sizes of the text columns in bytes, NUL included. operations_create
 * keeps user_id, kind, locale and email within these; last_reply, written
 * by the mailer, may use all 512 characters at 4 bytes each.
 */
#define STORE_USER_ID_SIZE 256
#define STORE_KIND_SIZE 65
#define STORE_LOCALE_SIZE 17
#define STORE_EMAIL_SIZE 321
/* params is a TEXT column, so its JSON is at most 65535 bytes. */
#define STORE_PARAMS_SIZE 65536
#define STORE_SEALED_MAX 255
#define STORE_LAST_REPLY_SIZE 2049

/* A row of operations. Each has_* flag is true when its column is not NULL. */
struct store_operation {
	unsigned char uuid[16];
	char user_id[STORE_USER_ID_SIZE];
	char kind[STORE_KIND_SIZE];
	char locale[STORE_LOCALE_SIZE];
	char params[STORE_PARAMS_SIZE];
	unsigned char fingerprint_sha256[32];
	bool has_email;
	char email[STORE_EMAIL_SIZE];
	bool email_factor;
	bool otp_factor;
	enum operation_status status;
	int64_t created_at;
	int64_t expires_at;
	bool has_finished_at;
	int64_t finished_at;
	long wrong_attempts;
	long resends;
	bool has_last_mail_at;
	int64_t last_mail_at;
	bool has_code_hmac;
	unsigned char code_hmac[32];
	bool has_previous_code_hmac;
	unsigned char previous_code_hmac[32];
};

/* A row of totp_enrolments. */
struct store_totp {
	char user_id[STORE_USER_ID_SIZE];
	unsigned char secret_sealed[STORE_SEALED_MAX];
	size_t secret_sealed_len;
	char seal_key_id[SEAL_KEY_ID_MAX + 1];
	bool has_last_step;
	int64_t last_step;
	int64_t created_at;
};

/* A new mail_outbox row: status queued, no tries yet, due at created_at. */
struct store_outbox_new {
	const unsigned char *operation_uuid;   /* 16 bytes */
	const char *recipient;
	const char *template_name;
	const char *locale;
	const char *kind;
	const char *params;
	const unsigned char *code_sealed;
	size_t code_sealed_len;
	const char *seal_key_id;
	int64_t created_at;
};

/* The columns of a mail_outbox row that may be shown to an operator. */
struct store_outbox_row {
	uint64_t id;
	char status[16];
	long tries;
	int64_t status_at;
	bool has_last_reply;
	char last_reply[STORE_LAST_REPLY_SIZE];
};

/* A new audit_log row. Every pointer member except operation_uuid, user_id and event may be NULL. */
struct store_audit {
	int64_t at_ms;
	const unsigned char *operation_uuid;   /* 16 bytes */
	const char *user_id;
	const char *event;
	const unsigned char *fingerprint_sha256;   /* 32 bytes */
	const char *client_address;
	const char *request_id;
	const char *detail;
};

/* An audit_log row as userops-ctl show prints it. Sizes are in bytes, NUL included. */
struct store_audit_row {
	int64_t at_ms;
	char event[32 * 4 + 1];
	bool has_detail;
	char detail[600 * 4 + 1];
};

/*
 * Reads the operation with this uuid into op. With for_update the row stays
 * locked until the transaction ends. Returns DB_NOT_FOUND when there is none.
 */
enum db_result store_operation_read(struct db *db, const unsigned char uuid[16], bool for_update,
	struct store_operation *op);

enum db_result store_operation_insert(struct db *db, const struct store_operation *op);

/*
 * Writes the mutable columns of op (status, finished_at, wrong_attempts,
 * resends, last_mail_at, code_hmac, previous_code_hmac) to its row.
 * Returns DB_NOT_FOUND when no row has op's uuid.
 */
enum db_result store_operation_update(struct db *db, const struct store_operation *op);

/* Reads the enrolment of user_id, locked with for_update; DB_NOT_FOUND when none. */
enum db_result store_totp_read(struct db *db, const char *user_id, bool for_update,
	struct store_totp *totp);

/* Inserts the enrolment or replaces the secret of an existing one, clearing last_step. */
enum db_result store_totp_upsert(struct db *db, const struct store_totp *totp);

enum db_result store_totp_set_last_step(struct db *db, const char *user_id, int64_t last_step);

enum db_result store_outbox_insert(struct db *db, const struct store_outbox_new *row);

/* Reads the newest outbox row of the operation (highest id); DB_NOT_FOUND when none. */
enum db_result store_outbox_latest(struct db *db, const unsigned char uuid[16],
	struct store_outbox_row *row);

/*
 * Calls visit for each outbox row of the operation, oldest first. A
 * non-zero return from visit stops the walk and is returned as DB_FAILED.
 */
enum db_result store_outbox_each(struct db *db, const unsigned char uuid[16],
	int (*visit)(const struct store_outbox_row *row, void *arg), void *arg);

enum db_result store_audit_insert(struct db *db, const struct store_audit *row);

/*
 * Calls visit for each audit row of the operation, oldest first. A non-zero
 * return from visit stops the walk and is returned as DB_FAILED. No row is
 * DB_OK.
 */
enum db_result store_audit_each(struct db *db, const unsigned char uuid[16],
	int (*visit)(const struct store_audit_row *row, void *arg), void *arg);

/* Buffer size of a stored first response, a challenge object of well under 1 KiB as JSON. */
#define STORE_RESPONSE_SIZE 4096

/* A row of operation_events. */
struct store_event {
	uint64_t id;
	unsigned char operation_uuid[16];
	char user_id[STORE_USER_ID_SIZE];
	char kind[STORE_KIND_SIZE];
	enum operation_status status;
	int64_t at;
};

/* A row of idempotency_keys. has_response is false until the creating transaction fills it. */
struct store_idempotency {
	unsigned char request_sha256[32];
	bool has_operation_uuid;
	unsigned char operation_uuid[16];
	bool has_response;
	char response[STORE_RESPONSE_SIZE];
	int64_t created_at;
};

/*
 * Appends the outcome event of op (its uuid, user, kind, status and
 * finished_at) with the next id of event_sequence. The sequence row stays
 * locked until the transaction ends, so events commit in id order. Call it
 * after locking the operation row (and the TOTP row, if any), never before.
 */
enum db_result store_event_append(struct db *db, const struct store_operation *op,
	int64_t created_at_ms);

/*
 * Calls visit for each event with an id above after_id, in id order, at
 * most limit of them. A non-zero return from visit stops the walk and is
 * returned as DB_FAILED. No event is DB_OK.
 */
enum db_result store_events_each(struct db *db, uint64_t after_id, long limit,
	int (*visit)(const struct store_event *event, void *arg), void *arg);

/*
 * Reads into uuids (room for limit) the uuids of pending operations whose
 * expires_at is at or before now, the oldest first, and their number into
 * *count. The rows are not locked.
 */
enum db_result store_operations_due(struct db *db, int64_t now, long limit,
	unsigned char (*uuids)[16], size_t *count);

/*
 * Inserts the idempotency row (service, key) without operation or response.
 * When another row has that key, *duplicate is true and the result DB_OK:
 * the statement failed but the transaction stays open. An insert waits
 * while another open transaction has inserted a row with the same key.
 */
enum db_result store_idempotency_insert(struct db *db, const char *service, const char *key,
	const unsigned char request_sha256[32], int64_t created_at, bool *duplicate);

/* Reads the row of (service, key), locked until the transaction ends; DB_NOT_FOUND when none. */
enum db_result store_idempotency_read(struct db *db, const char *service, const char *key,
	struct store_idempotency *row);

/* Records the operation created under (service, key) and the JSON text of its first response. */
enum db_result store_idempotency_finish(struct db *db, const char *service, const char *key,
	const unsigned char operation_uuid[16], const char *response);

enum db_result store_idempotency_delete(struct db *db, const char *service, const char *key);

/*
 * Deletes up to limit idempotency rows created before the Unix time
 * before, with autocommit, and writes their number to *deleted.
 */
enum db_result store_idempotency_purge(struct db *db, int64_t before, long limit,
	long *deleted);

#endif
