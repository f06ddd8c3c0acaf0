/* HOTP (RFC 4226) and TOTP (RFC 6238) with SHA-1, and replay-aware verification. */
#include "autoconfig.h"

#include <limits.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "totp.h"

/*
 * HOTP is computed here over OpenSSL's HMAC-SHA1 rather than liboath's
 * oath_hotp_generate. Truncation is a few lines of RFC 4226 section 5.3,
 * OpenSSL is already the project's HMAC provider, and liboath would add a
 * process-wide oath_init() and its own error codes. liboath's validators
 * stop at the first match, so they could not give the constant-time window
 * and the replay rule of totp_verify in any case.
 */

/* Largest digit count whose modulus 10^digits fits the 31-bit HOTP value. */
#define TOTP_MAX_DIGITS 9

static const uint32_t totp_powers_of_ten[TOTP_MAX_DIGITS + 1] = {
	1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000,
};

int totp_hotp(const unsigned char *key, size_t key_len, uint64_t counter, unsigned digits,
	char *out)
{
	unsigned char message[8];
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned mac_len = 0;
	unsigned offset;
	uint32_t value;

	if (key == NULL || key_len == 0 || key_len > INT_MAX || digits == 0
		|| digits > TOTP_MAX_DIGITS)
		return -1;

	/* The counter is hashed as 8 bytes, most significant first. */
	for (int i = 7; i >= 0; i--) {
		message[i] = (unsigned char)(counter & 0xff);
		counter >>= 8;
	}
	if (HMAC(EVP_sha1(), key, (int)key_len, message, sizeof(message), mac, &mac_len) == NULL
		|| mac_len != 20)
		return -1;

	/* Dynamic truncation: 31 bits from the offset named by the last nibble. */
	offset = mac[19] & 0x0f;
	value = (uint32_t)(mac[offset] & 0x7f) << 24 | (uint32_t)mac[offset + 1] << 16
		| (uint32_t)mac[offset + 2] << 8 | (uint32_t)mac[offset + 3];
	value %= totp_powers_of_ten[digits];

	for (unsigned i = digits; i > 0; i--) {
		out[i - 1] = (char)('0' + value % 10);
		value /= 10;
	}
	out[digits] = '\0';
	OPENSSL_cleanse(mac, sizeof(mac));
	return 0;
}

/* Rounds towards minus infinity, so a time before 1970 falls in a negative step. */
int64_t totp_step(int64_t unix_time)
{
	int64_t step = unix_time / TOTP_STEP_SECONDS;

	if (unix_time % TOTP_STEP_SECONDS < 0)
		step--;
	return step;
}

static int totp_is_code(const char *code)
{
	for (int i = 0; i < TOTP_DIGITS; i++) {
		if (code[i] < '0' || code[i] > '9')
			return 0;
	}
	return code[TOTP_DIGITS] == '\0';
}

/*
 * Every step from now - window to now + window is computed and compared,
 * and the outcome is folded with masks, not branches, so the time taken
 * does not show which step matched. When a code matches several fresh
 * steps (a collision of 6-digit values), the latest one is reported, so
 * storing it as the last step rejects the same code at any of them.
 */
enum totp_result totp_verify(const unsigned char *key, size_t key_len, int64_t now, long window,
	const char *code, int has_last_step, int64_t last_step, int64_t *step)
{
	char expected[TOTP_DIGITS + 1];
	int64_t current = totp_step(now);
	uint64_t accepted_step = 0;
	unsigned accepted = 0;
	unsigned replayed = 0;
	enum totp_result result = TOTP_ERROR;

	if (key == NULL || key_len == 0 || code == NULL || window < 0 || window > TOTP_WINDOW_MAX)
		goto out;
	if (!totp_is_code(code)) {
		result = TOTP_WRONG;
		goto out;
	}

	for (int64_t candidate = current - window; candidate <= current + window; candidate++) {
		unsigned match;
		unsigned fresh;
		uint64_t mask;

		/* No counter exists before the Unix epoch. */
		if (candidate < 0)
			continue;
		if (totp_hotp(key, key_len, (uint64_t)candidate, TOTP_DIGITS, expected) != 0)
			goto out;

		match = CRYPTO_memcmp(expected, code, TOTP_DIGITS) == 0;
		fresh = !has_last_step | (candidate > last_step);
		mask = -(uint64_t)(match & fresh);
		accepted_step = (accepted_step & ~mask) | ((uint64_t)candidate & mask);
		accepted |= match & fresh;
		replayed |= match & !fresh;
	}

	if (accepted) {
		*step = (int64_t)accepted_step;
		result = TOTP_ACCEPTED;
	} else if (replayed) {
		result = TOTP_REPLAYED;
	} else {
		result = TOTP_WRONG;
	}

out:
	OPENSSL_cleanse(expected, sizeof(expected));
	return result;
}
