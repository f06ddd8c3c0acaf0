/* The operations domain: creation, confirmation, cancellation and resends, one transaction each. */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <uuid/uuid.h>

#include "body.h"
#include "config.h"
#include "crypto.h"
#include "db.h"
#include "log.h"
#include "mail.h"
#include "mask.h"
#include "operations.h"
#include "response.h"
#include "seal.h"
#include "store.h"
#include "totp.h"

#define OPERATIONS_PARAM_COUNT_MAX 32
#define OPERATIONS_NAME_MAX 64
#define OPERATIONS_PARAM_VALUE_MAX 1024   /* bytes */
#define OPERATIONS_EMAIL_MAX 254          /* bytes: RFC 5321 paths of 256 less the angle brackets */
#define OPERATIONS_SECRET_MAX (STORE_SEALED_MAX - SEAL_OVERHEAD)
/* Seconds a client should wait after 503001. The next request tries a new connection. */
#define OPERATIONS_UNAVAILABLE_RETRY_AFTER 1
/* An Idempotency-Key row is kept this many seconds; an older one counts as absent. */
#define OPERATIONS_IDEMPOTENCY_SECONDS (24 * 3600)
#define OPERATIONS_EVENTS_LIMIT_MAX 1000
/* audit_log.detail is VARCHAR(600) since migration 003, so a service name and a reason of 255 bytes each fit. */
#define OPERATIONS_DETAIL_MAX 600

/* The state of one request on one existing operation, from the lock to the end of its transaction. */
struct operations_request {
	const struct operations_context *ctx;
	const unsigned char *uuid;
	const struct operation_actor *actor;
	const char *action;        /* "confirm", "cancel" and so on, for the log */
	struct operation_result *result;
	int64_t now;
	enum operation_status opened_status;   /* the row's status when it was read */
	struct store_operation op;
};

static const char *const operations_status_names[] = {
	[OPERATION_PENDING] = "pending",
	[OPERATION_CONFIRMED] = "confirmed",
	[OPERATION_CANCELLED] = "cancelled",
	[OPERATION_REJECTED] = "rejected",
	[OPERATION_EXPIRED] = "expired",
};

const char *operations_status_name(enum operation_status status)
{
	if ((size_t)status >= sizeof(operations_status_names) / sizeof(operations_status_names[0]))
		return "unknown";
	return operations_status_names[status];
}

static int64_t operations_now_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* An operation still pending is expired once the clock reaches expires_at, written down or not. */
static enum operation_status operations_effective_status(const struct store_operation *op,
	int64_t now)
{
	if (op->status == OPERATION_PENDING && now >= op->expires_at)
		return OPERATION_EXPIRED;
	return op->status;
}

static long operations_attempts_left(const struct operations_context *ctx,
	const struct store_operation *op)
{
	long left = ctx->cfg->operations.max_attempts - op->wrong_attempts;

	return left > 0 ? left : 0;
}

/*
 * Returns when the next resend is allowed: resend_cooldown seconds after the
 * last mail, doubling with each resend, or -1 when no resend is possible.
 */
static int64_t operations_resend_after(const struct operations_context *ctx,
	const struct store_operation *op, int64_t now)
{
	const struct config_operations *cfg = &ctx->cfg->operations;
	int64_t last_mail_at = op->has_last_mail_at ? op->last_mail_at : op->created_at;
	long shift = op->resends < 30 ? op->resends : 30;

	if (!op->email_factor || op->resends >= cfg->max_resends ||
	    operations_effective_status(op, now) != OPERATION_PENDING)
		return -1;
	return last_mail_at + ((int64_t)cfg->resend_cooldown << shift);
}

/* Fills the challenge object of create, resend and GET from the row. */
static void operations_fill_challenge(const struct operations_context *ctx,
	const struct store_operation *op, int64_t now, struct operation_challenge *challenge)
{
	int64_t resend_after = operations_resend_after(ctx, op, now);

	/* A wait that ends when the operation has expired allows no resend: null. */
	if (resend_after >= op->expires_at)
		resend_after = -1;

	memset(challenge, 0, sizeof(*challenge));
	uuid_unparse_lower(op->uuid, challenge->uuid);
	challenge->email2fa = op->email_factor;
	challenge->otp2fa = op->otp_factor;
	if (op->email_factor && op->has_email) {
		if (mask_email(op->email, challenge->email_hint, sizeof(challenge->email_hint)) == 0)
			challenge->has_email_hint = true;
		else
			log_warning("cannot mask the e-mail address of operation %s", challenge->uuid);
	}
	challenge->expires_at = op->expires_at;
	challenge->has_resend_email_after = resend_after >= 0;
	challenge->resend_email_after = resend_after >= 0 ? resend_after : 0;
}

/* Ends the transaction after a database error: 503001 or 500001, logged with the request. */
static void operations_fail_db(struct operations_request *req, enum db_result db_result)
{
	char uuid_text[37];

	db_rollback(req->ctx->db);
	uuid_unparse_lower(req->uuid, uuid_text);
	log_error("%s of operation %s failed: %s request_id=%s", req->action, uuid_text,
		db_result == DB_UNAVAILABLE ? "database unavailable" : "internal error",
		req->actor->request_id);
	if (db_result == DB_UNAVAILABLE) {
		req->result->error = 503001;
		req->result->retry_after = OPERATIONS_UNAVAILABLE_RETRY_AFTER;
	} else {
		req->result->error = 500001;
	}
}

/* Ends the transaction after an error that is not the database's, with a log line for 500001. */
static void operations_fail(struct operations_request *req, int error, const char *why)
{
	char uuid_text[37];

	db_rollback(req->ctx->db);
	req->result->error = error;
	if (why != NULL) {
		uuid_unparse_lower(req->uuid, uuid_text);
		log_error("%s of operation %s failed: %s request_id=%s", req->action, uuid_text, why,
			req->actor->request_id);
	}
}

static enum db_result operations_audit(struct operations_request *req, const char *event,
	const char *detail)
{
	struct store_audit row = {
		.at_ms = operations_now_ms(),
		.operation_uuid = req->op.uuid,
		.user_id = req->op.user_id,
		.event = event,
		/* A service acts with no device of the user's, so its rows carry no fingerprint. */
		.fingerprint_sha256 = req->actor->is_service ? NULL : req->actor->fingerprint_sha256,
		.client_address = req->actor->client_address,
		.request_id = req->actor->request_id,
		.detail = detail,
	};

	return store_audit_insert(req->ctx->db, &row);
}

/*
 * Writes the row, an audit row for event unless it is NULL, and commits.
 * When the row has just reached a final state, the outcome event for
 * followers goes into the same transaction. Every final state is written
 * here, so each operation gets exactly one event. The event takes the lock
 * on the sequence row last, after the operation row and any TOTP row, so
 * this lock order admits no deadlock cycle. Returns 0, or -1 with the
 * transaction ended and the error set.
 */
static int operations_save(struct operations_request *req, const char *event, const char *detail)
{
	bool finished = req->op.status != OPERATION_PENDING &&
		req->op.status != req->opened_status;
	enum db_result db_result;

	db_result = store_operation_update(req->ctx->db, &req->op);
	if (db_result == DB_OK && event != NULL)
		db_result = operations_audit(req, event, detail);
	if (db_result == DB_OK && finished)
		db_result = store_event_append(req->ctx->db, &req->op, operations_now_ms());
	if (db_result == DB_OK)
		db_result = db_commit(req->ctx->db);
	if (db_result != DB_OK) {
		operations_fail_db(req, db_result == DB_NOT_FOUND ? DB_FAILED : db_result);
		return -1;
	}
	return 0;
}

static void operations_request_init(struct operations_request *req,
	const struct operations_context *ctx, const unsigned char uuid[16],
	const struct operation_actor *actor, const char *action, struct operation_result *result)
{
	memset(result, 0, sizeof(*result));
	req->ctx = ctx;
	req->uuid = uuid;
	req->actor = actor;
	req->action = action;
	req->result = result;
	req->now = time(NULL);
	req->opened_status = OPERATION_PENDING;
}

/*
 * Begins the transaction and locks the operation row. A row of another user
 * gets 404001 like a missing one, so a caller cannot probe which uuids
 * exist. A row started on another device gets 403001. A service actor may
 * act on every row. Returns 0 with the transaction open, or -1 with it
 * ended and the error set.
 */
static int operations_open(struct operations_request *req)
{
	enum db_result db_result;

	db_result = db_begin(req->ctx->db);
	if (db_result == DB_OK)
		db_result = store_operation_read(req->ctx->db, req->uuid, true, &req->op);
	if (db_result == DB_NOT_FOUND) {
		operations_fail(req, 404001, NULL);
		return -1;
	}
	if (db_result != DB_OK) {
		operations_fail_db(req, db_result);
		return -1;
	}
	req->opened_status = req->op.status;

	if (!req->actor->is_service && strcmp(req->op.user_id, req->actor->user_id) != 0) {
		operations_fail(req, 404001, NULL);
		return -1;
	}
	req->result->status = operations_effective_status(&req->op, req->now);
	req->result->attempts_left = operations_attempts_left(req->ctx, &req->op);
	if (!req->actor->is_service &&
	    !crypto_equal(req->op.fingerprint_sha256, req->actor->fingerprint_sha256, 32)) {
		operations_fail(req, 403001, NULL);
		return -1;
	}
	return 0;
}

/* The error of an action on an operation in a final state. */
static int operations_state_error(enum operation_status status)
{
	switch (status) {
	case OPERATION_CONFIRMED:
		return 409001;
	case OPERATION_CANCELLED:
		return 409002;
	case OPERATION_REJECTED:
		return 409003;
	case OPERATION_EXPIRED:
		return 410001;
	case OPERATION_PENDING:
		break;
	}
	return 0;
}

/*
 * Continues only on a pending operation. A pending row past expires_at is
 * written as expired now, with an audit row, and the request gets 410001.
 * So the audit trail shows when the service first saw the expiry. Returns
 * 0 with the transaction open, or -1 with it ended and the error set.
 */
static int operations_require_pending(struct operations_request *req)
{
	struct store_operation *op = &req->op;

	if (op->status == OPERATION_PENDING && req->result->status == OPERATION_EXPIRED) {
		op->status = OPERATION_EXPIRED;
		op->has_finished_at = true;
		op->finished_at = op->expires_at;
		if (operations_save(req, "expired", NULL) != 0)
			return -1;
		req->result->error = 410001;
		return -1;
	}
	if (op->status != OPERATION_PENDING) {
		operations_fail(req, operations_state_error(op->status), NULL);
		return -1;
	}
	return 0;
}

/* Cancels for a user or a service; detail (may be NULL) goes into the audit row. */
static void operations_cancel_as(const struct operations_context *ctx,
	const unsigned char uuid[16], const struct operation_actor *actor, const char *detail,
	struct operation_result *result)
{
	struct operations_request req;

	operations_request_init(&req, ctx, uuid, actor, "cancel", result);
	if (operations_open(&req) != 0)
		return;

	/* A second cancel succeeds without a second audit row. */
	if (req.op.status == OPERATION_CANCELLED) {
		db_rollback(ctx->db);
		return;
	}
	if (operations_require_pending(&req) != 0)
		return;

	req.op.status = OPERATION_CANCELLED;
	req.op.has_finished_at = true;
	req.op.finished_at = req.now;
	if (operations_save(&req, "cancelled", detail) != 0)
		return;
	result->status = OPERATION_CANCELLED;
}

void operations_cancel(const struct operations_context *ctx, const unsigned char uuid[16],
	const struct operation_actor *actor, struct operation_result *result)
{
	operations_cancel_as(ctx, uuid, actor, NULL, result);
}

void operations_get(const struct operations_context *ctx, const unsigned char uuid[16],
	const struct operation_actor *actor, struct operation_view *view,
	struct operation_result *result)
{
	struct operations_request req;
	struct store_outbox_row mail;
	enum db_result db_result;

	memset(view, 0, sizeof(*view));
	operations_request_init(&req, ctx, uuid, actor, "get", result);
	if (operations_open(&req) != 0)
		return;

	/* The challenge members of the latest code mail, read under the same lock. */
	db_result = store_outbox_latest(ctx->db, uuid, &mail);
	if (db_result != DB_OK && db_result != DB_NOT_FOUND) {
		operations_fail_db(&req, db_result);
		return;
	}
	db_rollback(ctx->db);

	operations_fill_challenge(ctx, &req.op, req.now, &view->challenge);
	view->status = result->status;
	view->attempts_left = result->attempts_left;
	view->has_email_delivery = db_result == DB_OK;
	if (view->has_email_delivery) {
		snprintf(view->email_delivery_status, sizeof(view->email_delivery_status), "%s",
			mail.status);
		view->email_delivery_at = mail.status_at;
	}
}

/* Compares the e-mail code with the newest code's HMAC and, when allowed, the one before. */
static int operations_check_email_code(struct operations_request *req, const char *code,
	bool *matched)
{
	const struct operations_context *ctx = req->ctx;
	unsigned char params_sha256[CRYPTO_SHA256_SIZE];
	unsigned char hmac[CRYPTO_SHA256_SIZE];
	bool current = false;
	bool previous = false;

	crypto_sha256(req->op.params, strlen(req->op.params), params_sha256);
	if (crypto_code_hmac(ctx->pepper, req->op.uuid, params_sha256, code, hmac) != 0)
		return -1;
	if (req->op.has_code_hmac)
		current = crypto_equal(hmac, req->op.code_hmac, sizeof(hmac));
	if (req->op.has_previous_code_hmac && ctx->cfg->operations.accept_previous_code)
		previous = crypto_equal(hmac, req->op.previous_code_hmac, sizeof(hmac));
	crypto_wipe(hmac, sizeof(hmac));
	*matched = current || previous;
	return 0;
}

/*
 * Checks the TOTP code against the user's enrolment, locked so that two
 * confirms cannot both use one step. A user no longer enrolled cannot
 * confirm, so the code counts as wrong. Returns 0, or -1 with the
 * transaction ended and the error set.
 */
static int operations_check_totp(struct operations_request *req, const char *code,
	struct store_totp *totp, enum totp_result *outcome, int64_t *step)
{
	const struct operations_context *ctx = req->ctx;
	unsigned char secret[STORE_SEALED_MAX];
	size_t secret_len = 0;
	enum db_result db_result;

	db_result = store_totp_read(ctx->db, req->op.user_id, true, totp);
	if (db_result == DB_NOT_FOUND) {
		log_warning("operation has the TOTP factor but user %s is not enrolled",
			req->op.user_id);
		*outcome = TOTP_WRONG;
		return 0;
	}
	if (db_result != DB_OK) {
		operations_fail_db(req, db_result);
		return -1;
	}
	if (seal_decrypt(ctx->seal, totp->seal_key_id, req->op.user_id, strlen(req->op.user_id),
			totp->secret_sealed, totp->secret_sealed_len, secret, &secret_len) != 0) {
		operations_fail(req, 500001, "cannot open the sealed TOTP secret");
		return -1;
	}
	*outcome = totp_verify(secret, secret_len, req->now, ctx->cfg->operations.totp_window,
		code, totp->has_last_step, totp->last_step, step);
	crypto_wipe(secret, sizeof(secret));
	if (*outcome == TOTP_ERROR) {
		operations_fail(req, 500001, "cannot verify the TOTP code");
		return -1;
	}
	return 0;
}

/*
 * Counts a wrong try and commits it although the response is an error. The
 * try that reaches max_attempts rejects the operation and still gets
 * 422001, with no attempts left. The audit row names the wrong factors,
 * which the response does not.
 */
static void operations_record_wrong(struct operations_request *req, bool email_wrong,
	bool otp_wrong)
{
	struct store_operation *op = &req->op;
	long max_attempts = req->ctx->cfg->operations.max_attempts;
	enum db_result db_result;
	char detail[64];

	op->wrong_attempts++;
	snprintf(detail, sizeof(detail), "attempt %ld of %ld, wrong:%s%s", op->wrong_attempts,
		max_attempts, email_wrong ? " email" : "", otp_wrong ? " otp" : "");
	db_result = operations_audit(req, "wrong_code", detail);
	if (op->wrong_attempts >= max_attempts) {
		op->status = OPERATION_REJECTED;
		op->has_finished_at = true;
		op->finished_at = req->now;
		if (db_result == DB_OK)
			db_result = operations_audit(req, "rejected", NULL);
	}
	if (db_result != DB_OK) {
		operations_fail_db(req, db_result);
		return;
	}
	if (operations_save(req, NULL, NULL) != 0)
		return;
	req->result->error = 422001;
	req->result->status = op->status;
	req->result->attempts_left = operations_attempts_left(req->ctx, op);
}

/* Marks the operation confirmed and uses up the TOTP step that matched. */
static void operations_record_confirmed(struct operations_request *req, bool used_totp,
	int64_t step)
{
	enum db_result db_result;

	if (used_totp) {
		db_result = store_totp_set_last_step(req->ctx->db, req->op.user_id, step);
		if (db_result != DB_OK) {
			operations_fail_db(req, db_result == DB_NOT_FOUND ? DB_FAILED : db_result);
			return;
		}
	}
	req->op.status = OPERATION_CONFIRMED;
	req->op.has_finished_at = true;
	req->op.finished_at = req->now;
	if (operations_save(req, "confirmed", NULL) != 0)
		return;
	req->result->status = OPERATION_CONFIRMED;
}

/* The seconds until a step after last_step begins, so that a fresh code is accepted. */
static long operations_replay_retry_after(const struct store_totp *totp, int64_t now)
{
	int64_t wait = (totp->last_step + 1) * TOTP_STEP_SECONDS - now;

	return wait >= 1 ? (long)wait : 1;
}

void operations_confirm(const struct operations_context *ctx, const unsigned char uuid[16],
	const struct operation_actor *actor, struct json_object *body,
	struct operation_result *result)
{
	struct operations_request req;
	struct body_codes codes;
	struct store_totp totp;
	enum totp_result totp_outcome = TOTP_ACCEPTED;
	enum body_code_status code_status;
	bool email_matched = true;
	int64_t step = 0;

	operations_request_init(&req, ctx, uuid, actor, "confirm", result);
	if (operations_open(&req) != 0 || operations_require_pending(&req) != 0)
		return;

	/* A missing or malformed code costs no attempt. */
	memset(&codes, 0, sizeof(codes));
	code_status = body_confirm_codes(body, req.op.email_factor, req.op.otp_factor,
		(size_t)ctx->cfg->operations.code_length, &codes, &result->field);
	if (code_status != BODY_CODES_OK) {
		operations_fail(&req, code_status == BODY_CODES_MISSING ? 400004 : 400001, NULL);
		return;
	}

	/* Both factors are always checked, so the time taken does not tell which was wrong. */
	if (req.op.email_factor &&
	    operations_check_email_code(&req, codes.email_code, &email_matched) != 0) {
		crypto_wipe(&codes, sizeof(codes));
		operations_fail(&req, 500001, "cannot compute the code HMAC");
		return;
	}
	if (req.op.otp_factor &&
	    operations_check_totp(&req, codes.otp_code, &totp, &totp_outcome, &step) != 0) {
		crypto_wipe(&codes, sizeof(codes));
		return;
	}
	crypto_wipe(&codes, sizeof(codes));

	/* A replayed TOTP code gets 422002 only when every other code is right, and costs no attempt. */
	if (!email_matched || totp_outcome == TOTP_WRONG) {
		operations_record_wrong(&req, !email_matched, totp_outcome == TOTP_WRONG);
		return;
	}
	if (totp_outcome == TOTP_REPLAYED) {
		operations_fail(&req, 422002, NULL);
		result->retry_after = operations_replay_retry_after(&totp, req.now);
		return;
	}
	operations_record_confirmed(&req, req.op.otp_factor, step);
}

/*
 * Draws a new code, stores its HMAC (keeping the one before when
 * accept_previous_code is set) and queues its mail. The caller commits.
 */
static enum db_result operations_issue_code(const struct operations_context *ctx,
	struct store_operation *op, int64_t now, bool keep_previous)
{
	unsigned char params_sha256[CRYPTO_SHA256_SIZE];
	unsigned char sealed[32 + SEAL_OVERHEAD];
	char key_id[SEAL_KEY_ID_MAX + 1];
	size_t code_length = (size_t)ctx->cfg->operations.code_length;
	size_t sealed_len = 0;
	char code[32];
	int rc;

	if (code_length >= sizeof(code) || crypto_random_digits(code, code_length) != 0)
		return DB_FAILED;
	op->has_previous_code_hmac = keep_previous && op->has_code_hmac;
	memcpy(op->previous_code_hmac, op->code_hmac, sizeof(op->code_hmac));
	crypto_sha256(op->params, strlen(op->params), params_sha256);
	rc = crypto_code_hmac(ctx->pepper, op->uuid, params_sha256, code, op->code_hmac);
	op->has_code_hmac = true;

	/* The mailer opens the code with the operation's 16 uuid bytes as the AAD. */
	if (rc == 0)
		rc = seal_encrypt(ctx->seal, op->uuid, sizeof(op->uuid), code, code_length, sealed,
			&sealed_len, key_id);
	crypto_wipe(code, sizeof(code));
	if (rc != 0) {
		log_error("cannot seal a new code");
		return DB_FAILED;
	}

	struct store_outbox_new mail = {
		.operation_uuid = op->uuid,
		.recipient = op->email,
		.template_name = "code",
		.locale = op->locale,
		.kind = op->kind,
		.params = op->params,
		.code_sealed = sealed,
		.code_sealed_len = sealed_len,
		.seal_key_id = key_id,
		.created_at = now,
	};
	op->has_last_mail_at = true;
	op->last_mail_at = now;
	return store_outbox_insert(ctx->db, &mail);
}

void operations_resend(const struct operations_context *ctx, const unsigned char uuid[16],
	const struct operation_actor *actor, struct operation_challenge *challenge,
	struct operation_result *result)
{
	const struct config_operations *cfg = &ctx->cfg->operations;
	struct operations_request req;
	enum db_result db_result;
	int64_t allowed_at;
	char detail[64];

	memset(challenge, 0, sizeof(*challenge));
	operations_request_init(&req, ctx, uuid, actor, "resend", result);
	if (operations_open(&req) != 0 || operations_require_pending(&req) != 0)
		return;

	if (!req.op.email_factor) {
		operations_fail(&req, 409004, NULL);
		return;
	}
	if (req.op.resends >= cfg->max_resends) {
		operations_fail(&req, 429002, NULL);
		return;
	}
	allowed_at = operations_resend_after(ctx, &req.op, req.now);
	if (req.now < allowed_at) {
		operations_fail(&req, 429001, NULL);
		result->retry_after = (long)(allowed_at - req.now);
		return;
	}

	db_result = operations_issue_code(ctx, &req.op, req.now, cfg->accept_previous_code);
	if (db_result != DB_OK) {
		operations_fail_db(&req, db_result);
		return;
	}
	req.op.resends++;
	snprintf(detail, sizeof(detail), "resend %ld of %ld", req.op.resends, cfg->max_resends);
	if (operations_save(&req, "resent", detail) != 0)
		return;
	operations_fill_challenge(ctx, &req.op, req.now, challenge);
}

/*
 * Checks that text is well-formed UTF-8 (no overlong forms, no surrogates,
 * nothing above U+10FFFF) without C0 or C1 control characters or DEL.
 */
static bool operations_text_is_valid(const char *text)
{
	const unsigned char *p = (const unsigned char *)text;

	while (*p != '\0') {
		unsigned long cp;
		size_t len;
		size_t i;

		if (*p < 0x80) {
			cp = *p;
			len = 1;
		} else if (*p >= 0xc2 && *p <= 0xdf) {
			cp = *p & 0x1f;
			len = 2;
		} else if (*p >= 0xe0 && *p <= 0xef) {
			cp = *p & 0x0f;
			len = 3;
		} else if (*p >= 0xf0 && *p <= 0xf4) {
			cp = *p & 0x07;
			len = 4;
		} else {
			return false;
		}
		for (i = 1; i < len; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i] & 0x3f);
		}
		if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
			return false;
		if ((cp >= 0xd800 && cp <= 0xdfff) || cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
			return false;
		p += len;
	}
	return true;
}

/* A name of kind or of a parameter: 1 to 64 of A-Z a-z 0-9 _ . - */
static bool operations_name_is_valid(const char *name)
{
	size_t len = strlen(name);

	return len >= 1 && len <= OPERATIONS_NAME_MAX &&
		strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == len;
}

/* A locale such as "en" or "en-US": 2 or 3 lower-case letters, then an optional subtag. */
static bool operations_locale_is_valid(const char *locale)
{
	size_t language = strspn(locale, "abcdefghijklmnopqrstuvwxyz");
	size_t subtag;

	if (language < 2 || language > 3)
		return false;
	if (locale[language] == '\0')
		return true;
	if (locale[language] != '-')
		return false;
	subtag = strspn(locale + language + 1,
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789");
	return subtag >= 2 && subtag <= 8 && locale[language + 1 + subtag] == '\0';
}

/* The Fingerprint header's rule: 1 to 255 characters from '!' to '~'. */
static bool operations_fingerprint_is_valid(const char *fingerprint)
{
	size_t len = strlen(fingerprint);
	size_t i;

	if (len < 1 || len > 255)
		return false;
	for (i = 0; i < len; i++)
		if (fingerprint[i] < '!' || fingerprint[i] > '~')
			return false;
	return true;
}

/*
 * Checks an address with the mailer's own rule (one bare address, no list
 * separators, brackets or white space), so that an operation is never
 * created with an address the mailer would refuse.
 */
static bool operations_email_is_valid(const char *email)
{
	size_t i;

	/* TODO: check the full RFC 5321 syntax of the local part and the domain. */
	if (strlen(email) > OPERATIONS_EMAIL_MAX)
		return false;
	/*
	 * TODO: accept internationalised addresses once the mailer requests
	 * SMTPUTF8 from the relay (RFC 6531); until then a relay refuses them, so the code
	 * could never be delivered.
	 */
	for (i = 0; email[i] != '\0'; i++)
		if ((unsigned char)email[i] >= 0x80)
			return false;
	return mail_check_address(email) == 0;
}

static int operations_param_compare(const void *a, const void *b)
{
	const struct operation_param *const *left = a;
	const struct operation_param *const *right = b;

	return strcmp((*left)->name, (*right)->name);
}

/*
 * Writes the parameters as compact JSON with members sorted by name, the
 * form whose SHA-256 is bound into every code. Returns 0, or -1 with a
 * message in err.
 */
static int operations_params_json(const struct operation_new *op, char *out, size_t out_size,
	char *err, size_t err_size)
{
	const struct operation_param *sorted[OPERATIONS_PARAM_COUNT_MAX];
	struct json_object *object = NULL;
	const char *text;
	size_t i;
	int rc = -1;

	for (i = 0; i < op->param_count; i++)
		sorted[i] = &op->params[i];
	qsort(sorted, op->param_count, sizeof(sorted[0]), operations_param_compare);
	for (i = 1; i < op->param_count; i++) {
		if (strcmp(sorted[i - 1]->name, sorted[i]->name) == 0) {
			snprintf(err, err_size, "duplicate parameter %s", sorted[i]->name);
			return -1;
		}
	}

	/* json-c keeps members in the order they are added. */
	object = json_object_new_object();
	if (object == NULL)
		goto no_memory;
	for (i = 0; i < op->param_count; i++) {
		struct json_object *value = json_object_new_string(sorted[i]->value);

		if (value == NULL || json_object_object_add(object, sorted[i]->name, value) != 0) {
			json_object_put(value);
			goto no_memory;
		}
	}
	text = json_object_to_json_string_ext(object,
		JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (text == NULL)
		goto no_memory;
	if (strlen(text) >= out_size) {
		snprintf(err, err_size, "parameters are longer than %zu bytes as JSON", out_size - 1);
		goto out;
	}
	memcpy(out, text, strlen(text) + 1);
	rc = 0;
	goto out;

no_memory:
	snprintf(err, err_size, "cannot build the parameters JSON: out of memory");
out:
	json_object_put(object);
	return rc;
}

/* Checks the parameters: names unique and valid, values text of at most 1024 bytes. */
static int operations_validate_params(const struct operation_new *op, char *err,
	size_t err_size)
{
	size_t i;

	if (op->param_count > OPERATIONS_PARAM_COUNT_MAX) {
		snprintf(err, err_size, "too many parameters: %zu, at most %d", op->param_count,
			OPERATIONS_PARAM_COUNT_MAX);
		return -1;
	}
	for (i = 0; i < op->param_count; i++) {
		const struct operation_param *param = &op->params[i];

		if (param->name == NULL || !operations_name_is_valid(param->name)) {
			snprintf(err, err_size, "invalid parameter name \"%.64s\": use 1 to 64 of"
				" A-Z a-z 0-9 _ . -", param->name != NULL ? param->name : "");
			return -1;
		}
		if (param->value == NULL || strlen(param->value) > OPERATIONS_PARAM_VALUE_MAX ||
		    !operations_text_is_valid(param->value)) {
			snprintf(err, err_size, "invalid value of parameter %s: use UTF-8 text of at"
				" most %d bytes without control characters", param->name,
				OPERATIONS_PARAM_VALUE_MAX);
			return -1;
		}
	}
	return 0;
}

/*
 * Checks every input of operations_create. Returns 0, or -1 with a message
 * in err and *field naming the body member at fault.
 */
static int operations_validate_new(const struct operations_context *ctx,
	const struct operation_new *op, const char **field, char *err, size_t err_size)
{
	long lifetime = ctx->cfg->operations.lifetime;
	size_t user_len = op->user_id != NULL ? strlen(op->user_id) : 0;

	*field = "userId";
	if (user_len < 1 || user_len >= STORE_USER_ID_SIZE ||
	    !operations_text_is_valid(op->user_id)) {
		snprintf(err, err_size, "invalid user id: use 1 to %d bytes of UTF-8 text",
			STORE_USER_ID_SIZE - 1);
		return -1;
	}
	*field = "fingerprint";
	if (op->fingerprint == NULL || !operations_fingerprint_is_valid(op->fingerprint)) {
		snprintf(err, err_size, "invalid fingerprint: use 1 to 255 characters from ! to ~");
		return -1;
	}
	*field = "email";
	if (op->email == NULL && !op->otp) {
		snprintf(err, err_size, "no factor: give an e-mail address, TOTP or both");
		return -1;
	}
	if (op->email != NULL && !operations_email_is_valid(op->email)) {
		snprintf(err, err_size, "invalid e-mail address: use one address of ASCII"
			" characters, at most 64 bytes before the '@' and %d in all, with no"
			" spaces, quotes, brackets or list separators", OPERATIONS_EMAIL_MAX);
		return -1;
	}
	*field = "kind";
	if (op->kind != NULL && !operations_name_is_valid(op->kind)) {
		snprintf(err, err_size, "invalid kind \"%.64s\": use 1 to 64 of A-Z a-z 0-9 _ . -",
			op->kind);
		return -1;
	}
	*field = "locale";
	if (op->locale != NULL && !operations_locale_is_valid(op->locale)) {
		snprintf(err, err_size, "invalid locale \"%.16s\": use a language such as en or"
			" en-US", op->locale);
		return -1;
	}
	*field = "ttl";
	if (op->ttl < 0 || op->ttl > lifetime) {
		snprintf(err, err_size, "invalid ttl %ld: use 1 to %ld seconds, or 0 for %ld",
			op->ttl, lifetime, lifetime);
		return -1;
	}
	*field = "params";
	return operations_validate_params(op, err, err_size);
}

/* Fills the new row from the validated input; the code is drawn later. */
static int operations_build_row(const struct operations_context *ctx,
	const struct operation_new *input, int64_t now, struct store_operation *op, char *err,
	size_t err_size)
{
	long ttl = input->ttl > 0 ? input->ttl : ctx->cfg->operations.lifetime;

	memset(op, 0, sizeof(*op));
	uuid_generate_random(op->uuid);
	snprintf(op->user_id, sizeof(op->user_id), "%s", input->user_id);
	snprintf(op->kind, sizeof(op->kind), "%s", input->kind != NULL ? input->kind : "operation");
	snprintf(op->locale, sizeof(op->locale), "%s",
		input->locale != NULL ? input->locale : "en");
	if (operations_params_json(input, op->params, sizeof(op->params), err, err_size) != 0)
		return -1;
	crypto_sha256(input->fingerprint, strlen(input->fingerprint), op->fingerprint_sha256);
	op->has_email = input->email != NULL;
	if (op->has_email)
		snprintf(op->email, sizeof(op->email), "%s", input->email);
	op->email_factor = op->has_email;
	op->otp_factor = input->otp;
	op->status = OPERATION_PENDING;
	op->created_at = now;
	op->expires_at = now + ttl;
	return 0;
}

/*
 * Inserts the row, its first code mail and the audit row; the caller
 * commits. DB_NOT_FOUND when the TOTP factor is asked for a user who is
 * not enrolled.
 */
static enum db_result operations_insert(struct operations_request *req, const char *detail)
{
	const struct operations_context *ctx = req->ctx;
	enum db_result db_result = DB_OK;
	struct store_totp totp;

	if (req->op.otp_factor) {
		db_result = store_totp_read(ctx->db, req->op.user_id, false, &totp);
		if (db_result != DB_OK)
			return db_result;
	}
	if (req->op.email_factor)
		db_result = operations_issue_code(ctx, &req->op, req->now, false);
	if (db_result == DB_OK)
		db_result = store_operation_insert(ctx->db, &req->op);
	if (db_result == DB_OK)
		db_result = operations_audit(req, "created", detail);
	return db_result;
}

void operations_create(const struct operations_context *ctx, const struct operation_new *op,
	struct operation_challenge *challenge, struct operation_result *result, char *err,
	size_t err_size)
{
	struct operation_actor actor = {
		.user_id = op->user_id,
		.client_address = op->client_address,
		.request_id = op->request_id,
	};
	struct operations_request req;
	enum db_result db_result;
	const char *field = NULL;

	memset(challenge, 0, sizeof(*challenge));
	err[0] = '\0';
	operations_request_init(&req, ctx, NULL, &actor, "create", result);
	req.uuid = req.op.uuid;
	if (operations_validate_new(ctx, op, &field, err, err_size) != 0 ||
	    operations_build_row(ctx, op, req.now, &req.op, err, err_size) != 0) {
		result->error = 400001;
		return;
	}
	memcpy(actor.fingerprint_sha256, req.op.fingerprint_sha256, 32);

	db_result = db_begin(ctx->db);
	if (db_result == DB_OK)
		db_result = operations_insert(&req, NULL);
	if (db_result == DB_OK)
		db_result = db_commit(ctx->db);
	if (db_result == DB_NOT_FOUND) {
		db_rollback(ctx->db);
		snprintf(err, err_size, "user %s is not enrolled for TOTP: run totp-enroll first",
			op->user_id);
		result->error = 400001;
		return;
	}
	if (db_result != DB_OK) {
		operations_fail_db(&req, db_result);
		snprintf(err, err_size, "%s", result->error == 503001 ? "database unavailable" :
			"internal error");
		return;
	}
	result->status = OPERATION_PENDING;
	result->attempts_left = ctx->cfg->operations.max_attempts;
	operations_fill_challenge(ctx, &req.op, req.now, challenge);
}

int operations_totp_enroll(const struct operations_context *ctx, const char *user_id,
	const unsigned char *secret, size_t secret_len, char *err, size_t err_size)
{
	struct store_totp totp;
	size_t user_len = user_id != NULL ? strlen(user_id) : 0;
	enum db_result db_result;

	if (user_len < 1 || user_len >= STORE_USER_ID_SIZE || !operations_text_is_valid(user_id)) {
		snprintf(err, err_size, "invalid user id: use 1 to %d bytes of UTF-8 text",
			STORE_USER_ID_SIZE - 1);
		return -1;
	}
	if (secret_len < 1 || secret_len > OPERATIONS_SECRET_MAX) {
		snprintf(err, err_size, "invalid TOTP secret of %zu bytes: use 1 to %d bytes",
			secret_len, OPERATIONS_SECRET_MAX);
		return -1;
	}

	/* The user id is the AAD, so a sealed secret cannot be moved to another user's row. */
	memset(&totp, 0, sizeof(totp));
	snprintf(totp.user_id, sizeof(totp.user_id), "%s", user_id);
	totp.created_at = time(NULL);
	if (seal_encrypt(ctx->seal, user_id, user_len, secret, secret_len, totp.secret_sealed,
			&totp.secret_sealed_len, totp.seal_key_id) != 0) {
		snprintf(err, err_size, "cannot seal the TOTP secret");
		return -1;
	}
	db_result = store_totp_upsert(ctx->db, &totp);
	if (db_result != DB_OK) {
		snprintf(err, err_size, "cannot store the TOTP enrolment: %s",
			db_result == DB_UNAVAILABLE ? "database unavailable" : "database error");
		return -1;
	}
	return 0;
}

/* Adds an integer member, or null when has_value is false. */
static void operations_add_time(struct json_object *object, const char *name, bool has_value,
	int64_t value)
{
	json_object_object_add(object, name, has_value ? json_object_new_int64(value) : NULL);
}

/* Appends one outbox row to the array of operations_show. */
static int operations_show_mail(const struct store_outbox_row *row, void *arg)
{
	struct json_object *mails = arg;
	struct json_object *mail = json_object_new_object();

	if (mail == NULL)
		return -1;
	json_object_object_add(mail, "id", json_object_new_uint64(row->id));
	json_object_object_add(mail, "status", json_object_new_string(row->status));
	json_object_object_add(mail, "tries", json_object_new_int64(row->tries));
	json_object_object_add(mail, "statusAt", json_object_new_int64(row->status_at));
	json_object_object_add(mail, "lastReply",
		row->has_last_reply ? json_object_new_string(row->last_reply) : NULL);
	return json_object_array_add(mails, mail);
}

/* Appends one audit row to the array of operations_show. */
static int operations_show_audit(const struct store_audit_row *row, void *arg)
{
	struct json_object *trail = arg;
	struct json_object *entry = json_object_new_object();

	if (entry == NULL)
		return -1;
	json_object_object_add(entry, "atMs", json_object_new_int64(row->at_ms));
	json_object_object_add(entry, "event", json_object_new_string(row->event));
	json_object_object_add(entry, "detail",
		row->has_detail ? json_object_new_string(row->detail) : NULL);
	return json_object_array_add(trail, entry);
}

/* Builds the JSON object of operations_show from the row; never a code HMAC or secret. */
static struct json_object *operations_show_object(const struct operations_context *ctx,
	const struct store_operation *op, int64_t now)
{
	struct operation_challenge challenge;
	struct json_object *object = json_object_new_object();
	struct json_object *params = json_tokener_parse(op->params);

	if (object == NULL) {
		json_object_put(params);
		return NULL;
	}
	operations_fill_challenge(ctx, op, now, &challenge);
	json_object_object_add(object, "uuid", json_object_new_string(challenge.uuid));
	json_object_object_add(object, "userId", json_object_new_string(op->user_id));
	json_object_object_add(object, "kind", json_object_new_string(op->kind));
	json_object_object_add(object, "locale", json_object_new_string(op->locale));
	json_object_object_add(object, "params",
		params != NULL ? params : json_object_new_string(op->params));
	json_object_object_add(object, "status", json_object_new_string(
		operations_status_name(operations_effective_status(op, now))));
	json_object_object_add(object, "email2fa", json_object_new_boolean(op->email_factor));
	json_object_object_add(object, "otp2fa", json_object_new_boolean(op->otp_factor));
	json_object_object_add(object, "emailHint", challenge.has_email_hint ?
		json_object_new_string(challenge.email_hint) : NULL);
	operations_add_time(object, "createdAt", true, op->created_at);
	operations_add_time(object, "expiresAt", true, op->expires_at);
	operations_add_time(object, "finishedAt", op->has_finished_at, op->finished_at);
	json_object_object_add(object, "attemptsLeft",
		json_object_new_int64(operations_attempts_left(ctx, op)));
	json_object_object_add(object, "resends", json_object_new_int64(op->resends));
	operations_add_time(object, "resendEmailAfter", challenge.has_resend_email_after,
		challenge.resend_email_after);
	return object;
}

struct json_object *operations_show(const struct operations_context *ctx,
	const unsigned char uuid[16], char *err, size_t err_size)
{
	struct store_operation *op = NULL;
	struct json_object *object = NULL;
	struct json_object *mails = NULL;
	struct json_object *trail = NULL;
	enum db_result db_result;

	op = malloc(sizeof(*op));
	if (op == NULL) {
		snprintf(err, err_size, "cannot allocate the operation: out of memory");
		return NULL;
	}

	/* One transaction, so the outbox rows belong to the same moment as the row. */
	db_result = db_begin(ctx->db);
	if (db_result == DB_OK)
		db_result = store_operation_read(ctx->db, uuid, false, op);
	if (db_result == DB_OK) {
		object = operations_show_object(ctx, op, time(NULL));
		mails = json_object_new_array();
		trail = json_object_new_array();
		if (object == NULL || mails == NULL || trail == NULL)
			db_result = DB_FAILED;
	}
	if (db_result == DB_OK)
		db_result = store_outbox_each(ctx->db, uuid, operations_show_mail, mails);
	if (db_result == DB_OK)
		db_result = store_audit_each(ctx->db, uuid, operations_show_audit, trail);
	db_rollback(ctx->db);

	if (db_result == DB_OK) {
		json_object_object_add(object, "outbox", mails);
		json_object_object_add(object, "audit", trail);
		free(op);
		return object;
	}
	if (db_result == DB_NOT_FOUND)
		snprintf(err, err_size, "operation not found");
	else
		snprintf(err, err_size, "cannot read the operation: %s",
			db_result == DB_UNAVAILABLE ? "database unavailable" : "database error");
	json_object_put(trail);
	json_object_put(mails);
	json_object_put(object);
	free(op);
	return NULL;
}

/* Copies text into out, cut at a character boundary to fit out_size bytes with its NUL. */
static void operations_copy_utf8(char *out, size_t out_size, const char *text)
{
	size_t len = strlen(text);

	if (len >= out_size) {
		len = out_size - 1;
		while (len > 0 && ((unsigned char)text[len] & 0xc0) == 0x80)
			len--;
	}
	memcpy(out, text, len);
	out[len] = '\0';
}

/* Writes the audit detail that names the service, then ": reason" when there is one. */
static void operations_service_detail(const struct operation_actor *actor, const char *reason,
	char *detail, size_t detail_size)
{
	char text[2 * OPERATIONS_DETAIL_MAX];

	snprintf(text, sizeof(text), "service %.255s%s%.255s",
		actor->service != NULL ? actor->service : "(not named)",
		reason != NULL ? ": " : "", reason != NULL ? reason : "");
	operations_copy_utf8(detail, detail_size, text);
}

/*
 * Checks that the locale has its own template folder with a readable
 * code.txt, so a service learns at once that its mail would fall back to
 * another language.
 */
static int operations_check_locale_folder(const struct operations_context *ctx,
	const char *locale, char *err, size_t err_size)
{
	const char *dir = ctx->cfg->mailer.templates_dir;
	char path[4096];
	int len;

	len = snprintf(path, sizeof(path), "%s/%s/code.txt", dir != NULL ? dir : "", locale);
	if (len > 0 && (size_t)len < sizeof(path) && access(path, R_OK) == 0)
		return 0;
	snprintf(err, err_size, "unsupported locale \"%.16s\": no readable code.txt in its"
		" template folder", locale);
	return -1;
}

/* The inputs and outputs of one operations_create_for_service call. */
struct operations_service_create {
	const struct operation_new *op;
	const struct operation_idempotency *idempotency;
	const char *detail;            /* of the "created" audit row */
	struct operation_challenge *challenge;
	char **answer;
	bool *replayed;
	char *err;
	size_t err_size;
};

/* The outcome of taking an Idempotency-Key at the start of a service create. */
enum operations_claim {
	OPERATIONS_CLAIM_NEW,        /* its row is inserted in the open transaction */
	OPERATIONS_CLAIM_REPLAY,     /* a row with the same request hash exists */
	OPERATIONS_CLAIM_CONFLICT,   /* a row with another request hash exists */
};

/*
 * Inserts the key's row in the open transaction. When the key exists, the
 * insert has waited for the transaction that locked the row to end. This
 * transaction is then rolled back and a new one reads the stored row,
 * locked. A row older than OPERATIONS_IDEMPOTENCY_SECONDS is deleted and
 * inserted anew, so the key counts as new. Any result but DB_OK leaves the
 * transaction for the caller to roll back.
 */
static enum db_result operations_claim_key(struct operations_request *req,
	const struct operation_idempotency *idem, struct store_idempotency *stored,
	enum operations_claim *claim)
{
	struct db *db = req->ctx->db;
	bool duplicate = false;
	enum db_result db_result;

	*claim = OPERATIONS_CLAIM_NEW;
	db_result = store_idempotency_insert(db, idem->service, idem->key, idem->request_sha256,
		req->now, &duplicate);
	if (db_result != DB_OK || !duplicate)
		return db_result;

	db_rollback(db);
	db_result = db_begin(db);
	if (db_result == DB_OK)
		db_result = store_idempotency_read(db, idem->service, idem->key, stored);
	if (db_result == DB_OK && stored->created_at > req->now - OPERATIONS_IDEMPOTENCY_SECONDS) {
		*claim = crypto_equal(stored->request_sha256, idem->request_sha256, 32) ?
			OPERATIONS_CLAIM_REPLAY : OPERATIONS_CLAIM_CONFLICT;
		return DB_OK;
	}

	/* The row is stale, or the mailer's clean-up deleted it after the insert failed. */
	if (db_result == DB_OK)
		db_result = store_idempotency_delete(db, idem->service, idem->key);
	else if (db_result == DB_NOT_FOUND)
		db_result = DB_OK;
	if (db_result == DB_OK)
		db_result = store_idempotency_insert(db, idem->service, idem->key,
			idem->request_sha256, req->now, &duplicate);

	/* A third request took the key in between: the caller's one retry settles it. */
	if (db_result == DB_OK && duplicate)
		return DB_UNAVAILABLE;
	return db_result;
}

/* Returns the stored response of a replayed key, or sets 409005 for another request hash. */
static void operations_replay(struct operations_request *req,
	struct operations_service_create *create, const struct store_idempotency *stored,
	enum operations_claim claim)
{
	if (claim == OPERATIONS_CLAIM_CONFLICT) {
		req->result->error = 409005;
		return;
	}
	if (!stored->has_response || !stored->has_operation_uuid) {
		log_error("idempotency key of service %s has no stored response request_id=%s",
			create->idempotency->service, req->actor->request_id);
		req->result->error = 500001;
		return;
	}
	*create->answer = strdup(stored->response);
	if (*create->answer == NULL) {
		log_error("cannot copy a stored response: out of memory request_id=%s",
			req->actor->request_id);
		req->result->error = 500001;
		return;
	}
	uuid_unparse_lower(stored->operation_uuid, create->challenge->uuid);
	*create->replayed = true;
	req->result->status = OPERATION_PENDING;
}

/*
 * Fills the challenge, writes its JSON text to *answer and, with an
 * Idempotency-Key, stores both in the key's row before the commit.
 */
static enum db_result operations_service_answer(struct operations_request *req,
	struct operations_service_create *create)
{
	const struct operation_idempotency *idem = create->idempotency;
	struct json_object *json = NULL;
	const char *text = NULL;
	enum db_result db_result;

	operations_fill_challenge(req->ctx, &req->op, req->now, create->challenge);
	json = response_challenge_json(create->challenge);
	if (json != NULL)
		text = json_object_to_json_string_ext(json,
			JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (text != NULL)
		*create->answer = strdup(text);
	json_object_put(json);
	if (*create->answer == NULL) {
		log_error("cannot build the challenge JSON: out of memory request_id=%s",
			req->actor->request_id);
		return DB_FAILED;
	}
	if (idem == NULL)
		return DB_OK;
	db_result = store_idempotency_finish(req->ctx->db, idem->service, idem->key, req->op.uuid,
		*create->answer);
	return db_result == DB_NOT_FOUND ? DB_FAILED : db_result;
}

/*
 * Runs one try of a service create, from the first statement to the
 * commit. Returns DB_OK when result and the outputs are final, else the
 * database error with the transaction rolled back and no output kept.
 */
static enum db_result operations_service_attempt(struct operations_request *req,
	struct operations_service_create *create)
{
	struct db *db = req->ctx->db;
	struct store_idempotency stored;
	struct store_totp totp;
	enum operations_claim claim = OPERATIONS_CLAIM_NEW;
	enum db_result db_result;

	if (operations_build_row(req->ctx, create->op, req->now, &req->op, create->err,
			create->err_size) != 0) {
		req->result->error = 400001;
		req->result->field = "params";
		return DB_OK;
	}

	/*
	 * The TOTP enrolment is checked before the key is taken: requests
	 * waiting on the key deadlock among themselves when its holder rolls
	 * back, so the holder should fail only on a database error.
	 */
	db_result = db_begin(db);
	if (db_result == DB_OK && req->op.otp_factor)
		db_result = store_totp_read(db, req->op.user_id, false, &totp);
	if (db_result == DB_OK && create->idempotency != NULL)
		db_result = operations_claim_key(req, create->idempotency, &stored, &claim);
	if (db_result == DB_OK && claim != OPERATIONS_CLAIM_NEW) {
		db_rollback(db);
		operations_replay(req, create, &stored, claim);
		return DB_OK;
	}
	if (db_result == DB_OK)
		db_result = operations_insert(req, create->detail);
	if (db_result == DB_NOT_FOUND) {
		db_rollback(db);
		snprintf(create->err, create->err_size, "user %s is not enrolled for TOTP",
			create->op->user_id);
		req->result->error = 400001;
		req->result->field = "otp";
		return DB_OK;
	}
	if (db_result == DB_OK)
		db_result = operations_service_answer(req, create);
	if (db_result == DB_OK)
		db_result = db_commit(db);
	if (db_result != DB_OK) {
		db_rollback(db);
		free(*create->answer);
		*create->answer = NULL;
		return db_result;
	}
	req->result->status = OPERATION_PENDING;
	req->result->attempts_left = req->ctx->cfg->operations.max_attempts;
	return DB_OK;
}

void operations_create_for_service(const struct operations_context *ctx,
	const struct operation_new *op, const struct operation_idempotency *idempotency,
	struct operation_challenge *challenge, char **answer, bool *replayed,
	struct operation_result *result, char *err, size_t err_size)
{
	struct operation_actor actor = {
		.is_service = true,
		.service = op->service != NULL ? op->service :
			idempotency != NULL ? idempotency->service : NULL,
		.client_address = op->client_address,
		.request_id = op->request_id,
	};
	struct operations_service_create create = {
		op, idempotency, NULL, challenge, answer, replayed, err, err_size,
	};
	char detail[OPERATIONS_DETAIL_MAX + 1];
	struct operations_request req;
	enum db_result db_result = DB_OK;
	int attempt;

	memset(challenge, 0, sizeof(*challenge));
	*answer = NULL;
	*replayed = false;
	err[0] = '\0';
	operations_request_init(&req, ctx, NULL, &actor, "create", result);
	req.uuid = req.op.uuid;
	if (operations_validate_new(ctx, op, &result->field, err, err_size) != 0) {
		result->error = 400001;
		return;
	}
	if (operations_check_locale_folder(ctx, op->locale != NULL ? op->locale : "en", err,
			err_size) != 0) {
		result->error = 400001;
		result->field = "locale";
		return;
	}
	result->field = NULL;
	operations_service_detail(&actor, NULL, detail, sizeof(detail));
	create.detail = detail;

	/*
	 * Requests with one key wait on its row. When the one holding it rolls
	 * back, two waiters can deadlock and the server ends one of them. A lost
	 * connection ends a try too. With a key, a second try is safe: it finds
	 * the first one's row if that one committed after all.
	 */
	for (attempt = 1; attempt <= 2; attempt++) {
		db_result = operations_service_attempt(&req, &create);
		if (db_result != DB_UNAVAILABLE || idempotency == NULL)
			break;
		if (attempt == 1)
			log_warning("create for service %s tried again after a lock conflict or a"
				" lost connection request_id=%s", idempotency->service,
				op->request_id);
	}
	if (db_result != DB_OK) {
		operations_fail_db(&req, db_result);
		snprintf(err, err_size, "%s", result->error == 503001 ? "database unavailable" :
			"internal error");
	}
}

void operations_service_get(const struct operations_context *ctx, const unsigned char uuid[16],
	const struct operation_actor *actor, struct json_object **operation,
	struct operation_result *result)
{
	struct operations_request req;
	struct store_outbox_row mail;
	struct json_object *object = NULL;
	struct json_object *delivery = NULL;
	enum db_result db_result;

	*operation = NULL;
	operations_request_init(&req, ctx, uuid, actor, "get", result);
	if (operations_open(&req) != 0)
		return;
	db_result = store_outbox_latest(ctx->db, uuid, &mail);
	if (db_result != DB_OK && db_result != DB_NOT_FOUND) {
		operations_fail_db(&req, db_result);
		return;
	}
	db_rollback(ctx->db);

	object = operations_show_object(ctx, &req.op, req.now);
	if (object == NULL) {
		log_error("cannot build the operation JSON: out of memory request_id=%s",
			actor->request_id);
		result->error = 500001;
		return;
	}
	/* An expiry not yet written down is shown with the time it will be written with. */
	if (!req.op.has_finished_at && result->status == OPERATION_EXPIRED)
		operations_add_time(object, "finishedAt", true, req.op.expires_at);
	if (db_result == DB_OK) {
		delivery = json_object_new_object();
		if (delivery != NULL) {
			json_object_object_add(delivery, "status",
				json_object_new_string(mail.status));
			json_object_object_add(delivery, "at", json_object_new_int64(mail.status_at));
		}
	}
	json_object_object_add(object, "emailDelivery", delivery);
	*operation = object;
}

void operations_service_cancel(const struct operations_context *ctx,
	const unsigned char uuid[16], const struct operation_actor *actor, const char *reason,
	struct operation_result *result)
{
	char detail[OPERATIONS_DETAIL_MAX + 1];

	operations_service_detail(actor, reason, detail, sizeof(detail));
	operations_cancel_as(ctx, uuid, actor, detail, result);
}

/* The state of one operations_events walk. */
struct operations_events_walk {
	struct json_object *events;
	int64_t last_id;
};

/* Appends one event to the array of operations_events. */
static int operations_event_json(const struct store_event *event, void *arg)
{
	struct operations_events_walk *walk = arg;
	struct json_object *object = json_object_new_object();
	char uuid_text[37];

	if (object == NULL)
		return -1;
	uuid_unparse_lower(event->operation_uuid, uuid_text);
	json_object_object_add(object, "id", json_object_new_uint64(event->id));
	json_object_object_add(object, "uuid", json_object_new_string(uuid_text));
	json_object_object_add(object, "userId", json_object_new_string(event->user_id));
	json_object_object_add(object, "kind", json_object_new_string(event->kind));
	json_object_object_add(object, "status",
		json_object_new_string(operations_status_name(event->status)));
	json_object_object_add(object, "at", json_object_new_int64(event->at));
	if (json_object_array_add(walk->events, object) != 0) {
		json_object_put(object);
		return -1;
	}
	walk->last_id = (int64_t)event->id;
	return 0;
}

void operations_events(const struct operations_context *ctx, int64_t after_id, long limit,
	struct json_object **events, int64_t *last_id, struct operation_result *result)
{
	struct operations_events_walk walk = { NULL, after_id };
	enum db_result db_result;

	memset(result, 0, sizeof(*result));
	*events = NULL;
	*last_id = after_id;
	if (after_id < 0 || limit < 1 || limit > OPERATIONS_EVENTS_LIMIT_MAX) {
		result->error = 400001;
		result->field = after_id < 0 ? "after" : "limit";
		return;
	}
	walk.events = json_object_new_array();
	if (walk.events == NULL) {
		result->error = 500001;
		return;
	}

	/* One statement reads one consistent snapshot, so no transaction is needed. */
	db_result = store_events_each(ctx->db, (uint64_t)after_id, limit, operations_event_json,
		&walk);
	if (db_result != DB_OK) {
		log_error("reading events after %lld failed: %s", (long long)after_id,
			db_result == DB_UNAVAILABLE ? "database unavailable" : "internal error");
		json_object_put(walk.events);
		result->error = db_result == DB_UNAVAILABLE ? 503001 : 500001;
		result->retry_after = db_result == DB_UNAVAILABLE ?
			OPERATIONS_UNAVAILABLE_RETRY_AFTER : 0;
		return;
	}
	*events = walk.events;
	*last_id = walk.last_id;
}

/*
 * Writes the expiry of one due operation, locked and checked again.
 * Returns 1 when it did, 0 when the operation was no longer pending and
 * due, or -1 on a database error.
 */
static int operations_expire_one(const struct operations_context *ctx,
	const unsigned char uuid[16])
{
	static const struct operation_actor sweep = {
		.is_service = true,
		.service = "expiry sweep",
		.request_id = "expiry-sweep",
	};
	struct operation_result result;
	struct operations_request req;

	operations_request_init(&req, ctx, uuid, &sweep, "expire", &result);
	if (operations_open(&req) != 0)
		return result.error == 404001 ? 0 : -1;
	if (req.op.status != OPERATION_PENDING || result.status != OPERATION_EXPIRED) {
		db_rollback(ctx->db);
		return 0;
	}

	/* The lazy expiry of the other actions writes the row, its audit row and its event. */
	operations_require_pending(&req);
	return result.error == 410001 ? 1 : -1;
}

long operations_expire_due(const struct operations_context *ctx, long limit)
{
	unsigned char (*uuids)[16] = NULL;
	size_t count = 0;
	long expired = 0;
	size_t i;

	if (limit < 1)
		return 0;
	uuids = calloc((size_t)limit, sizeof(*uuids));
	if (uuids == NULL) {
		log_error("cannot allocate %ld uuids for the expiry sweep: out of memory", limit);
		return -1;
	}
	if (store_operations_due(ctx->db, time(NULL), limit, uuids, &count) != DB_OK) {
		free(uuids);
		return -1;
	}
	for (i = 0; i < count; i++) {
		int rc = operations_expire_one(ctx, uuids[i]);

		if (rc < 0) {
			expired = -1;
			break;
		}
		expired += rc;
	}
	free(uuids);
	return expired;
}
