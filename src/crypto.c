/* Hashing, HMAC, randomness and hex and base32 encodings over OpenSSL 3. */
#include "autoconfig.h"

#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "crypto.h"

/* Random bytes drawn per RAND_bytes call in crypto_random_digits. */
#define CRYPTO_DIGIT_BATCH 64

static const char crypto_base32_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

int crypto_random_bytes(void *buf, size_t len)
{
	if (len == 0)
		return 0;
	if (len > INT_MAX)
		return -1;
	if (RAND_bytes(buf, (int)len) != 1)
		return -1;
	return 0;
}

/*
 * Each digit is one random byte below 250 taken modulo 10. Because 250 is
 * the largest multiple of 10 that fits a byte, every digit has exactly 25
 * byte values, and bytes from 250 to 255 are discarded and drawn again.
 */
int crypto_random_digits(char *out, size_t digits)
{
	unsigned char batch[CRYPTO_DIGIT_BATCH];
	size_t filled = 0;
	int rc = -1;

	while (filled < digits) {
		if (crypto_random_bytes(batch, sizeof(batch)) != 0)
			goto out;
		for (size_t i = 0; i < sizeof(batch) && filled < digits; i++) {
			if (batch[i] >= 250)
				continue;
			out[filled++] = (char)('0' + batch[i] % 10);
		}
	}
	out[digits] = '\0';
	rc = 0;

out:
	crypto_wipe(batch, sizeof(batch));
	if (rc != 0)
		out[0] = '\0';
	return rc;
}

/*
 * OpenSSL 3 looks an algorithm up by name on every call that passes
 * EVP_sha256() or a digest name, and those lookups showed in a profile of
 * the confirm route. So SHA-256 is fetched once, and each HMAC context is
 * copied from a template whose digest is already set.
 */
static EVP_MD *crypto_sha256_md;
static EVP_MAC_CTX *crypto_hmac_templates[CRYPTO_HMAC_HASH_COUNT];
static pthread_once_t crypto_fetch_once = PTHREAD_ONCE_INIT;

/* Fetches SHA-256 and makes the HMAC templates. A failure leaves NULL. */
static void crypto_fetch(void)
{
	static const char *const digest_names[CRYPTO_HMAC_HASH_COUNT] = {
		[CRYPTO_HMAC_SHA256] = "SHA256",
		[CRYPTO_HMAC_SHA384] = "SHA384",
		[CRYPTO_HMAC_SHA512] = "SHA512",
	};
	EVP_MAC *mac;

	crypto_sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
	mac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
	if (mac == NULL)
		return;
	for (size_t i = 0; i < CRYPTO_HMAC_HASH_COUNT; i++) {
		EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
		OSSL_PARAM params[2];

		if (ctx == NULL)
			continue;
		params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
			(char *)digest_names[i], 0);
		params[1] = OSSL_PARAM_construct_end();
		if (EVP_MAC_CTX_set_params(ctx, params) != 1) {
			EVP_MAC_CTX_free(ctx);
			continue;
		}
		crypto_hmac_templates[i] = ctx;
	}
	EVP_MAC_free(mac);
}

/*
 * The declaration returns nothing, and OpenSSL's SHA-256 fails only when
 * memory runs out. No digest is safe to return then, so the process aborts.
 * Each thread keeps its digest context, which EVP_Digest would allocate
 * and free on every call.
 */
void crypto_sha256(const void *data, size_t len, unsigned char out[CRYPTO_SHA256_SIZE])
{
	static _Thread_local EVP_MD_CTX *ctx;

	pthread_once(&crypto_fetch_once, crypto_fetch);
	if (ctx == NULL)
		ctx = EVP_MD_CTX_new();
	if (ctx == NULL || crypto_sha256_md == NULL ||
	    EVP_DigestInit_ex2(ctx, crypto_sha256_md, NULL) != 1 ||
	    EVP_DigestUpdate(ctx, data, len) != 1 ||
	    EVP_DigestFinal_ex(ctx, out, NULL) != 1)
		abort();
}

/* An input slice of the HMAC functions. */
struct crypto_part {
	const void *data;
	size_t len;
};

/*
 * The context contains the key's inner and outer hash states. EVP_MAC_init
 * without a key starts a new MAC from them, which saves the two hash
 * blocks of the padded key and the allocations of a fresh context.
 */
struct crypto_hmac_key {
	EVP_MAC_CTX *ctx;
};

struct crypto_hmac_key *crypto_hmac_key_new(enum crypto_hmac_hash hash, const void *key,
	size_t key_len)
{
	struct crypto_hmac_key *hmac_key;

	pthread_once(&crypto_fetch_once, crypto_fetch);
	if ((unsigned)hash >= CRYPTO_HMAC_HASH_COUNT || crypto_hmac_templates[hash] == NULL)
		return NULL;
	hmac_key = calloc(1, sizeof(*hmac_key));
	if (hmac_key == NULL)
		return NULL;
	hmac_key->ctx = EVP_MAC_CTX_dup(crypto_hmac_templates[hash]);
	/* A NULL key would mean "the key set before", and there is none yet. */
	if (hmac_key->ctx == NULL ||
	    EVP_MAC_init(hmac_key->ctx, key != NULL ? key : (const void *)"", key_len, NULL) != 1) {
		crypto_hmac_key_free(hmac_key);
		return NULL;
	}
	return hmac_key;
}

void crypto_hmac_key_free(struct crypto_hmac_key *key)
{
	if (key == NULL)
		return;
	EVP_MAC_CTX_free(key->ctx);
	free(key);
}

/* Computes the HMAC under key over the concatenation of parts. Returns its length, or -1. */
static int crypto_hmac_key_parts(struct crypto_hmac_key *key, const struct crypto_part *parts,
	size_t count, unsigned char out[CRYPTO_HMAC_MAX_SIZE])
{
	size_t out_len = 0;

	if (key == NULL || EVP_MAC_init(key->ctx, NULL, 0, NULL) != 1)
		return -1;
	for (size_t i = 0; i < count; i++) {
		if (EVP_MAC_update(key->ctx, parts[i].data, parts[i].len) != 1)
			return -1;
	}
	if (EVP_MAC_final(key->ctx, out, &out_len, CRYPTO_HMAC_MAX_SIZE) != 1)
		return -1;
	return (int)out_len;
}

int crypto_hmac_with(struct crypto_hmac_key *key, const void *data, size_t len,
	unsigned char out[CRYPTO_HMAC_MAX_SIZE])
{
	struct crypto_part part = { data, len };

	return crypto_hmac_key_parts(key, &part, 1, out);
}

/*
 * Copies a MAC of crypto_hmac_key_parts or crypto_hmac to out when it has
 * SHA-256's size, and wipes mac. Returns 0, or -1 for any other length.
 */
static int crypto_take_sha256_mac(int mac_len, unsigned char mac[CRYPTO_HMAC_MAX_SIZE],
	unsigned char out[CRYPTO_SHA256_SIZE])
{
	if (mac_len == CRYPTO_SHA256_SIZE)
		memcpy(out, mac, CRYPTO_SHA256_SIZE);
	crypto_wipe(mac, CRYPTO_HMAC_MAX_SIZE);
	return mac_len == CRYPTO_SHA256_SIZE ? 0 : -1;
}

/* Sets the key up for this one MAC, as crypto_hmac_key_new does, and frees it. */
int crypto_hmac(enum crypto_hmac_hash hash, const void *key, size_t key_len, const void *data,
	size_t len, unsigned char out[CRYPTO_HMAC_MAX_SIZE])
{
	struct crypto_hmac_key *hmac_key = crypto_hmac_key_new(hash, key, key_len);
	int mac_len = crypto_hmac_with(hmac_key, data, len, out);

	crypto_hmac_key_free(hmac_key);
	return mac_len;
}

int crypto_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
	unsigned char out[CRYPTO_SHA256_SIZE])
{
	unsigned char mac[CRYPTO_HMAC_MAX_SIZE];

	return crypto_take_sha256_mac(crypto_hmac(CRYPTO_HMAC_SHA256, key, key_len, data, len,
		mac), mac, out);
}

int crypto_equal(const void *a, const void *b, size_t len)
{
	return CRYPTO_memcmp(a, b, len) == 0;
}

void crypto_wipe(void *buf, size_t len)
{
	OPENSSL_cleanse(buf, len);
}

void crypto_hex_encode(const void *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	const unsigned char *bytes = in;

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[bytes[i] >> 4];
		out[2 * i + 1] = digits[bytes[i] & 0x0f];
	}
	out[2 * len] = '\0';
}

/* Returns the value of one hex digit of either case, or -1. */
static int crypto_hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Rejects an odd digit count, a non-hex character and output that does not fit. */
long crypto_hex_decode(const char *in, size_t in_len, unsigned char *out, size_t out_size)
{
	if (in_len % 2 != 0 || in_len / 2 > out_size || in_len / 2 > LONG_MAX)
		return -1;

	for (size_t i = 0; i < in_len; i += 2) {
		int high = crypto_hex_value(in[i]);
		int low = crypto_hex_value(in[i + 1]);

		if (high < 0 || low < 0)
			return -1;
		out[i / 2] = (unsigned char)(high << 4 | low);
	}
	return (long)(in_len / 2);
}

/* Returns the 5-bit value of a base32 letter of either case, or -1. */
static int crypto_base32_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a';
	if (c >= '2' && c <= '7')
		return c - '2' + 26;
	return -1;
}

static int crypto_is_ignored_in_base32(char c)
{
	return c == '=' || c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * Tabs and line ends are skipped like spaces, so a secret read from a file
 * or a terminal may end in a newline. A final group of 1, 3 or 6 characters
 * comes from no byte count (RFC 4648 section 6), so it is rejected. Unused
 * low bits of the last character are ignored.
 */
long crypto_base32_decode(const char *in, unsigned char *out, size_t out_size)
{
	uint32_t buffer = 0;
	unsigned bits = 0;
	size_t chars = 0;
	size_t written = 0;

	for (const char *p = in; *p != '\0'; p++) {
		int value;

		if (crypto_is_ignored_in_base32(*p))
			continue;
		value = crypto_base32_value(*p);
		if (value < 0)
			return -1;
		chars++;
		buffer = (buffer << 5 | (uint32_t)value) & 0x1fff;
		bits += 5;
		if (bits >= 8) {
			bits -= 8;
			if (written >= out_size || written >= LONG_MAX)
				return -1;
			out[written++] = (unsigned char)(buffer >> bits);
		}
	}

	switch (chars % 8) {
	case 1:
	case 3:
	case 6:
		return -1;
	default:
		return (long)written;
	}
}

long crypto_base32_encode(const unsigned char *in, size_t len, char *out, size_t out_size)
{
	uint32_t buffer = 0;
	unsigned bits = 0;
	size_t written = 0;

	if (len > (SIZE_MAX - 5) / 8 || (len * 8 + 4) / 5 >= out_size)
		return -1;
	if ((len * 8 + 4) / 5 > LONG_MAX)
		return -1;

	for (size_t i = 0; i < len; i++) {
		buffer = (buffer << 8 | in[i]) & 0x1fff;
		bits += 8;
		while (bits >= 5) {
			bits -= 5;
			out[written++] = crypto_base32_alphabet[(buffer >> bits) & 0x1f];
		}
	}
	if (bits > 0)
		out[written++] = crypto_base32_alphabet[(buffer << (5 - bits)) & 0x1f];
	out[written] = '\0';
	return (long)written;
}

/*
 * The message is uuid (16 bytes), then params_sha256 (32 bytes), then the
 * code's ASCII digits. The first two parts have fixed sizes, so no two
 * inputs share a message. Returns -1 when code is empty or not all digits.
 */
int crypto_code_hmac(struct crypto_hmac_key *pepper, const unsigned char uuid[16],
	const unsigned char params_sha256[CRYPTO_SHA256_SIZE], const char *code,
	unsigned char out[CRYPTO_SHA256_SIZE])
{
	unsigned char mac[CRYPTO_HMAC_MAX_SIZE];
	size_t code_len = strlen(code);
	struct crypto_part parts[3] = {
		{ uuid, 16 },
		{ params_sha256, CRYPTO_SHA256_SIZE },
		{ code, code_len },
	};

	if (code_len == 0)
		return -1;
	for (size_t i = 0; i < code_len; i++) {
		if (code[i] < '0' || code[i] > '9')
			return -1;
	}
	return crypto_take_sha256_mac(crypto_hmac_key_parts(pepper, parts, 3, mac), mac, out);
}
