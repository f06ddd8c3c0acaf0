/* Bearer token (JWT) verification through libjwt, and development tokens. */
#ifndef USEROPS_AUTH_H
#define USEROPS_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config_jwt;
struct auth_keys;

enum auth_result {
	AUTH_OK,
	AUTH_MISSING,   /* 401001: no header, another scheme, or "Bearer" alone */
	AUTH_INVALID,   /* 401002 */
	AUTH_EXPIRED,   /* 401003: otherwise valid, exp + leeway passed */
};

/* The maximum length of a user id (the sub claim), in bytes. */
#define AUTH_USER_ID_MAX 255

/*
 * Loads the algorithms and keys of one JWT section ([auth] or [internal]).
 * hs_secret_file and public_key_file each take a comma-separated list of
 * files, each optionally prefixed "KID=" to name the key for the kid
 * header. Secrets shorter than the algorithm's hash (32, 48, 64 bytes) and
 * unreadable or malformed files are errors naming the file.
 */
int auth_keys_load(const struct config_jwt *cfg, struct auth_keys **keys, char *err,
	size_t err_size);

void auth_keys_free(struct auth_keys *keys);

/*
 * Verifies an Authorization header value at time now (Unix seconds). On
 * AUTH_OK the sub claim is copied into user_id as a string. An HMAC check
 * uses the key's own context, so one thread at a time may use keys.
 */
enum auth_result auth_verify(const struct auth_keys *keys, const char *authorization,
	int64_t now, char user_id[AUTH_USER_ID_MAX + 1]);

/* The claims a service route needs besides the subject. */
struct auth_claims {
	char subject[AUTH_USER_ID_MAX + 1];
	/* The scope claim as space-separated scopes, from a string or an array. */
	char scope[1024];
};

/*
 * Verifies like auth_verify and also returns the scope claim. A scope claim
 * that is neither a string nor an array of strings, or longer than the
 * buffer, makes the token AUTH_INVALID.
 */
enum auth_result auth_verify_claims(const struct auth_keys *keys, const char *authorization,
	int64_t now, struct auth_claims *claims);

/* Returns true when the space-separated scope list contains scope as a whole item. */
bool auth_scope_has(const struct auth_claims *claims, const char *scope);

/*
 * Makes keys reject (AUTH_INVALID) every token whose aud contains audience,
 * so a service token never passes as a user's even where both sections
 * share a secret. NULL or empty turns it off. audience is copied.
 */
int auth_keys_exclude_audience(struct auth_keys *keys, const char *audience);

/*
 * Signs an HS256 token for user_id with the first configured HS secret,
 * valid ttl seconds from now, with iss and aud when configured. Returns a
 * new string, or NULL when no HS256 secret is configured.
 */
char *auth_issue_token(const struct auth_keys *keys, const char *user_id, int64_t now,
	long ttl);

/* Like auth_issue_token, with a scope claim (space-separated) when scope is not NULL. */
char *auth_issue_service_token(const struct auth_keys *keys, const char *subject,
	const char *scope, int64_t now, long ttl);

#endif
