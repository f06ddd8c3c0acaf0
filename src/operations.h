/* The operations domain: creation, confirmation, cancellation and resends (state machine). */
#ifndef USEROPS_OPERATIONS_H
#define USEROPS_OPERATIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct crypto_hmac_key;
struct db;
struct seal_keyring;
struct json_object;

enum operation_status {
	OPERATION_PENDING,
	OPERATION_CONFIRMED,
	OPERATION_CANCELLED,
	OPERATION_REJECTED,
	OPERATION_EXPIRED,
};

/* The database handle, settings and secrets one process uses for operations, loaded at start. */
struct operations_context {
	const struct config *cfg;
	struct db *db;
	struct crypto_hmac_key *pepper;  /* HMAC-SHA256 key of the code HMACs */
	const struct seal_keyring *seal;
};

/* The challenge object of resend, create-operation and GET. */
struct operation_challenge {
	char uuid[37];
	bool email2fa;
	bool otp2fa;
	bool has_email_hint;
	char email_hint[400];
	int64_t expires_at;
	bool has_resend_email_after;
	int64_t resend_email_after;
};

struct operation_view {
	struct operation_challenge challenge;
	enum operation_status status;
	long attempts_left;
	bool has_email_delivery;
	char email_delivery_status[16];   /* queued, sent, retrying, failed, dropped */
	int64_t email_delivery_at;
};

/*
 * The requester, for checks and audit rows: the token's user and device, or
 * a platform service (is_service), which acts on any user's operation with
 * no device binding.
 */
struct operation_actor {
	const char *user_id;          /* NULL when is_service */
	unsigned char fingerprint_sha256[32];
	bool is_service;
	const char *service;          /* the service token's subject when is_service */
	const char *client_address;   /* may be NULL */
	const char *request_id;
};

/*
 * The outcome of an action. error is 0 on success or the API error code
 * (404001, 403001, 409001..409004, 410001, 400001, 400004, 422001, 422002,
 * 429001, 429002, 500001, 503001) with the members that code needs.
 */
struct operation_result {
	int error;
	enum operation_status status;
	long attempts_left;     /* 422001 */
	long retry_after;       /* 422002, 429001, 503001: whole seconds, at least 1 */
	const char *field;      /* 400001, 400004: the body member at fault */
};

struct operation_param {
	const char *name;
	const char *value;
};

struct operation_new {
	const char *user_id;
	const char *fingerprint;      /* as sent in the Fingerprint header */
	const char *email;            /* NULL: no e-mail factor */
	bool otp;
	const char *kind;             /* default "operation" */
	const char *locale;           /* default "en" */
	long ttl;                     /* 0: [operations] lifetime */
	const struct operation_param *params;
	size_t param_count;
	const char *client_address;
	const char *request_id;
	const char *service;          /* the creating service, for the audit row; NULL from userops-ctl */
};

const char *operations_status_name(enum operation_status status);

/*
 * Creates an operation, its first e-mail code and outbox row, and its
 * audit row in one transaction. Fails with 400001 (and a message in err)
 * on invalid input, or when otp is set and the user is not enrolled.
 */
void operations_create(const struct operations_context *ctx, const struct operation_new *op,
	struct operation_challenge *challenge, struct operation_result *result, char *err,
	size_t err_size);

/* Each of the following runs in one transaction with the operation row locked. */
void operations_get(const struct operations_context *ctx, const unsigned char uuid[16],
	const struct operation_actor *actor, struct operation_view *view,
	struct operation_result *result);

void operations_cancel(const struct operations_context *ctx, const unsigned char uuid[16],
	const struct operation_actor *actor, struct operation_result *result);

/* body is the parsed request body, or NULL when it was empty. */
void operations_confirm(const struct operations_context *ctx, const unsigned char uuid[16],
	const struct operation_actor *actor, struct json_object *body,
	struct operation_result *result);

void operations_resend(const struct operations_context *ctx, const unsigned char uuid[16],
	const struct operation_actor *actor, struct operation_challenge *challenge,
	struct operation_result *result);

/*
 * Enrols user_id for TOTP with the raw secret, sealed at rest; replaces an
 * earlier enrolment. Returns 0, or -1 with a message in err.
 */
int operations_totp_enroll(const struct operations_context *ctx, const char *user_id,
	const unsigned char *secret, size_t secret_len, char *err, size_t err_size);

/*
 * Reads the operation and returns it as a JSON object for userops-ctl show:
 * its fields, status included, its outbox rows ("outbox") and its audit rows
 * ("audit"), each oldest first. NULL with a message in err when the
 * operation is not found or the database fails.
 */
struct json_object *operations_show(const struct operations_context *ctx,
	const unsigned char uuid[16], char *err, size_t err_size);

/* The Idempotency-Key of a service's create request. */
struct operation_idempotency {
	const char *service;          /* the service token's subject */
	const char *key;              /* 1 to 128 characters from '!' to '~' */
	unsigned char request_sha256[32];   /* of the request body as sent */
};

/*
 * Creates an operation for a service (POST /internal/operations). The
 * values of op are checked as operations_create does, and also the locale
 * against the template folders and params values for control characters;
 * a bad one is 400001 with result->field naming the body member (userId,
 * fingerprint, email, otp, kind, locale, params, ttl). On success *answer
 * is the JSON text of the 201 body (the challenge object) and challenge is
 * filled. With idempotency set, the answer is kept for 24 hours under
 * (service, key) in the same transaction: a later call with the same key
 * and request hash gets the first answer again (*replayed true) with no
 * new operation or mail, and another request hash gets 409005. Calls with
 * one key at the same time wait for the first to commit.
 */
void operations_create_for_service(const struct operations_context *ctx,
	const struct operation_new *op, const struct operation_idempotency *idempotency,
	struct operation_challenge *challenge, char **answer, bool *replayed,
	struct operation_result *result, char *err, size_t err_size);

/*
 * Builds the service view of an operation: the GET fields plus userId,
 * kind, locale, params, createdAt, finishedAt and resends.
 */
void operations_service_get(const struct operations_context *ctx, const unsigned char uuid[16],
	const struct operation_actor *actor, struct json_object **operation,
	struct operation_result *result);

/*
 * Cancels on the platform's behalf, with the state table of the user's
 * cancel; reason (NULL or at most 255 bytes) goes into the audit row.
 */
void operations_service_cancel(const struct operations_context *ctx,
	const unsigned char uuid[16], const struct operation_actor *actor, const char *reason,
	struct operation_result *result);

/*
 * Returns in *events a JSON array of the outcome events with an id above
 * after_id, in commit order, at most limit (1 to 1000). Each event has id,
 * uuid, userId, kind, status (confirmed, cancelled, rejected, expired) and
 * at. *last_id is the id of the last one, or after_id when there is none.
 */
void operations_events(const struct operations_context *ctx, int64_t after_id, long limit,
	struct json_object **events, int64_t *last_id, struct operation_result *result);

/*
 * Writes the expired state, its audit row and its event for up to limit
 * pending operations past expiresAt, each in its own transaction. Returns
 * how many expired, or -1 on a database error.
 */
long operations_expire_due(const struct operations_context *ctx, long limit);

#endif
