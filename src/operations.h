/* The operations domain: creation, confirmation, cancellation and resends (state machine). */
#ifndef USEROPS_OPERATIONS_H
#define USEROPS_OPERATIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
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

/* What one process needs to act on operations; the secrets are loaded at start. */
struct operations_context {
	const struct config *cfg;
	struct db *db;
	const unsigned char *pepper;
	size_t pepper_len;
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

/* Who is asking: the token's user, the device and the client, for checks and audit rows. */
struct operation_actor {
	const char *user_id;
	unsigned char fingerprint_sha256[32];
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

/* Writes the operation as a JSON object (status included) for userops-ctl show. */
struct json_object *operations_show(const struct operations_context *ctx,
	const unsigned char uuid[16], char *err, size_t err_size);

#endif
