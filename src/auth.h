/* Bearer token (JWT) verification through libjwt, and development tokens. */
#ifndef USEROPS_AUTH_H
#define USEROPS_AUTH_H

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

/* The longest user id (the sub claim) accepted, in bytes. */
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
 * AUTH_OK the sub claim is copied into user_id as a string.
 */
enum auth_result auth_verify(const struct auth_keys *keys, const char *authorization,
	int64_t now, char user_id[AUTH_USER_ID_MAX + 1]);

/*
 * Signs an HS256 token for user_id with the first configured HS secret,
 * valid ttl seconds from now, with iss and aud when configured. Returns a
 * new string, or NULL when no HS256 secret is configured.
 */
char *auth_issue_token(const struct auth_keys *keys, const char *user_id, int64_t now,
	long ttl);

#endif
