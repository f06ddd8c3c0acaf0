/* HOTP (RFC 4226) and TOTP (RFC 6238) with SHA-1 and replay protection. */
#ifndef USEROPS_TOTP_H
#define USEROPS_TOTP_H

#include <stddef.h>
#include <stdint.h>

#define TOTP_STEP_SECONDS 30
#define TOTP_DIGITS 6
/* Largest window totp_verify takes: 10 steps either side is 5 minutes of skew. */
#define TOTP_WINDOW_MAX 10

enum totp_result {
	TOTP_ACCEPTED,
	TOTP_WRONG,
	TOTP_REPLAYED,
	TOTP_ERROR,
};

/*
 * Writes the HOTP value of counter as digits decimal digits and a NUL.
 * Returns 0, or -1 for an empty key or digits outside 1 to 9.
 */
int totp_hotp(const unsigned char *key, size_t key_len, uint64_t counter, unsigned digits,
	char *out);

/* Returns the 30-second step that contains unix_time. */
int64_t totp_step(int64_t unix_time);

/*
 * Checks a 6-digit code against every step within window steps of now.
 * A match on a step after last_step (or any step when has_last_step is 0)
 * is TOTP_ACCEPTED with *step set; a match only on steps at or before
 * last_step is TOTP_REPLAYED. Every step of the window is computed, so the
 * time taken does not depend on which one matched. A code that is not
 * exactly 6 ASCII digits is TOTP_WRONG. TOTP_ERROR means no key, a window
 * outside 0 to TOTP_WINDOW_MAX, or a failure inside OpenSSL.
 */
enum totp_result totp_verify(const unsigned char *key, size_t key_len, int64_t now, long window,
	const char *code, int has_last_step, int64_t last_step, int64_t *step);

#endif
