/* Hashing, HMAC, randomness and encodings over OpenSSL. */
#ifndef USEROPS_CRYPTO_H
#define USEROPS_CRYPTO_H

#include <stddef.h>

#define CRYPTO_SHA256_SIZE 32

/* Fills buf from the OpenSSL CSPRNG. Returns 0, or -1 on failure. */
int crypto_random_bytes(void *buf, size_t len);

/*
 * Writes digits random decimal digits and a NUL to out, each drawn
 * uniformly (rejection sampling, no modulo bias). Returns 0 or -1.
 */
int crypto_random_digits(char *out, size_t digits);

void crypto_sha256(const void *data, size_t len, unsigned char out[CRYPTO_SHA256_SIZE]);

/* The hashes of crypto_hmac: those of the JWS algorithms HS256, HS384 and HS512. */
enum crypto_hmac_hash {
	CRYPTO_HMAC_SHA256,
	CRYPTO_HMAC_SHA384,
	CRYPTO_HMAC_SHA512,
	CRYPTO_HMAC_HASH_COUNT,
};

#define CRYPTO_HMAC_MAX_SIZE 64

/* Computes the HMAC with hash under key into out. Returns the MAC's length, or -1. */
int crypto_hmac(enum crypto_hmac_hash hash, const void *key, size_t key_len, const void *data,
	size_t len, unsigned char out[CRYPTO_HMAC_MAX_SIZE]);

int crypto_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
	unsigned char out[CRYPTO_SHA256_SIZE]);

/*
 * An HMAC key set up once (the hashes of the padded key computed), for the
 * keys a process uses on every request. One thread at a time may use it.
 */
struct crypto_hmac_key;

/* Returns the key for hash, or NULL when OpenSSL fails. */
struct crypto_hmac_key *crypto_hmac_key_new(enum crypto_hmac_hash hash, const void *key,
	size_t key_len);

void crypto_hmac_key_free(struct crypto_hmac_key *key);

/* Computes the HMAC under key into out. Returns the MAC's length, or -1. */
int crypto_hmac_with(struct crypto_hmac_key *key, const void *data, size_t len,
	unsigned char out[CRYPTO_HMAC_MAX_SIZE]);

/* Compares in time independent of the contents. Returns 1 when equal. */
int crypto_equal(const void *a, const void *b, size_t len);

/* Zeroes memory in a way the compiler does not remove. */
void crypto_wipe(void *buf, size_t len);

/* Writes 2 * len lower-case hex digits and a NUL. */
void crypto_hex_encode(const void *in, size_t len, char *out);

/* Decodes hex digits of either case. Returns the byte count, or -1. */
long crypto_hex_decode(const char *in, size_t in_len, unsigned char *out, size_t out_size);

/*
 * Decodes RFC 4648 base32, ignoring case, white space and '=' padding.
 * Returns the byte count, or -1 on any other character, on a length no
 * encoding produces, or when out_size is too small.
 */
long crypto_base32_decode(const char *in, unsigned char *out, size_t out_size);

/*
 * Encodes RFC 4648 base32 without padding and adds a NUL. Returns the
 * length, or -1 when out_size is too small.
 */
long crypto_base32_encode(const unsigned char *in, size_t len, char *out, size_t out_size);

/*
 * Computes an e-mail code's HMAC under the pepper, an HMAC-SHA256 key, over the 16 bytes
 * of the operation's uuid, the SHA-256 of its parameters and the code's
 * digits, so a code is bound to one operation and its parameters.
 */
int crypto_code_hmac(struct crypto_hmac_key *pepper, const unsigned char uuid[16],
	const unsigned char params_sha256[CRYPTO_SHA256_SIZE], const char *code,
	unsigned char out[CRYPTO_SHA256_SIZE]);

#endif
