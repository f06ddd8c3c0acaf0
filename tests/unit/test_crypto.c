/* Unit tests of crypto.c: digests, HMAC, random digits, constant-time compare and encodings. */
#include "autoconfig.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "crypto.h"

static void assert_bytes_hex(const unsigned char *bytes, size_t len, const char *expected)
{
	char hex[2 * 64 + 1];

	assert_true(len <= 64);
	crypto_hex_encode(bytes, len, hex);
	assert_string_equal(hex, expected);
}

/* The SHA-256 of "abc" from FIPS 180-2 appendix B.1. */
static void sha256_abc(void **state)
{
	unsigned char digest[CRYPTO_SHA256_SIZE];

	(void)state;
	crypto_sha256("abc", 3, digest);
	assert_bytes_hex(digest, sizeof(digest),
		"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

/* RFC 4231 test case 2: key "Jefe". */
static void hmac_sha256_rfc4231_case2(void **state)
{
	const char *data = "what do ya want for nothing?";
	unsigned char mac[CRYPTO_SHA256_SIZE];

	(void)state;
	assert_int_equal(crypto_hmac_sha256("Jefe", 4, data, strlen(data), mac), 0);
	assert_bytes_hex(mac, sizeof(mac),
		"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

/* The code HMAC is the plain HMAC over uuid || params_sha256 || digits. */
static void code_hmac_layout(void **state)
{
	const char pepper[] = "a pepper of at least thirty-two bytes";
	unsigned char uuid[16];
	unsigned char params[CRYPTO_SHA256_SIZE];
	unsigned char message[16 + CRYPTO_SHA256_SIZE + 6];
	unsigned char expected[CRYPTO_SHA256_SIZE];
	unsigned char actual[CRYPTO_SHA256_SIZE];
	struct crypto_hmac_key *key = crypto_hmac_key_new(CRYPTO_HMAC_SHA256, pepper,
		strlen(pepper));

	(void)state;
	assert_non_null(key);
	for (size_t i = 0; i < sizeof(uuid); i++)
		uuid[i] = (unsigned char)i;
	crypto_sha256("{}", 2, params);
	memcpy(message, uuid, 16);
	memcpy(message + 16, params, CRYPTO_SHA256_SIZE);
	memcpy(message + 16 + CRYPTO_SHA256_SIZE, "123456", 6);

	assert_int_equal(crypto_hmac_sha256(pepper, strlen(pepper), message, sizeof(message),
		expected), 0);
	assert_int_equal(crypto_code_hmac(key, uuid, params, "123456", actual), 0);
	assert_memory_equal(actual, expected, CRYPTO_SHA256_SIZE);
	crypto_hmac_key_free(key);
}

/* Another code, uuid or parameter hash gives another HMAC. */
static void code_hmac_binds_inputs(void **state)
{
	const char pepper[] = "a pepper of at least thirty-two bytes";
	struct crypto_hmac_key *key = crypto_hmac_key_new(CRYPTO_HMAC_SHA256, pepper,
		strlen(pepper));
	unsigned char uuid[16] = { 0 };
	unsigned char params[CRYPTO_SHA256_SIZE] = { 0 };
	unsigned char base[CRYPTO_SHA256_SIZE];
	unsigned char other[CRYPTO_SHA256_SIZE];

	(void)state;
	assert_non_null(key);
	assert_int_equal(crypto_code_hmac(key, uuid, params, "123456", base), 0);

	assert_int_equal(crypto_code_hmac(key, uuid, params, "123457", other), 0);
	assert_memory_not_equal(base, other, CRYPTO_SHA256_SIZE);

	uuid[15] = 1;
	assert_int_equal(crypto_code_hmac(key, uuid, params, "123456", other), 0);
	assert_memory_not_equal(base, other, CRYPTO_SHA256_SIZE);
	uuid[15] = 0;

	params[0] = 1;
	assert_int_equal(crypto_code_hmac(key, uuid, params, "123456", other), 0);
	assert_memory_not_equal(base, other, CRYPTO_SHA256_SIZE);
	params[0] = 0;

	/* The same inputs again give the first HMAC: each MAC starts from the key. */
	assert_int_equal(crypto_code_hmac(key, uuid, params, "123456", other), 0);
	assert_memory_equal(base, other, CRYPTO_SHA256_SIZE);
	crypto_hmac_key_free(key);
}

static void code_hmac_rejects_non_digits(void **state)
{
	struct crypto_hmac_key *key = crypto_hmac_key_new(CRYPTO_HMAC_SHA256, "k", 1);
	unsigned char uuid[16] = { 0 };
	unsigned char params[CRYPTO_SHA256_SIZE] = { 0 };
	unsigned char mac[CRYPTO_SHA256_SIZE];

	(void)state;
	assert_non_null(key);
	assert_int_equal(crypto_code_hmac(key, uuid, params, "", mac), -1);
	assert_int_equal(crypto_code_hmac(key, uuid, params, "12a456", mac), -1);
	assert_int_equal(crypto_code_hmac(key, uuid, params, " 123456", mac), -1);
	assert_int_equal(crypto_code_hmac(NULL, uuid, params, "123456", mac), -1);
	crypto_hmac_key_free(key);
}

/* RFC 4231 test case 2 through a key set up once, twice in a row. */
static void hmac_key_rfc4231_case2(void **state)
{
	const char *data = "what do ya want for nothing?";
	struct crypto_hmac_key *key = crypto_hmac_key_new(CRYPTO_HMAC_SHA256, "Jefe", 4);
	unsigned char mac[CRYPTO_HMAC_MAX_SIZE];

	(void)state;
	assert_non_null(key);
	for (int round = 0; round < 2; round++) {
		memset(mac, 0, sizeof(mac));
		assert_int_equal(crypto_hmac_with(key, data, strlen(data), mac), CRYPTO_SHA256_SIZE);
		assert_bytes_hex(mac, CRYPTO_SHA256_SIZE,
			"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
	}
	crypto_hmac_key_free(key);
}

/*
 * For each hash, and for an empty key, a short key and a key longer than
 * the hash's block, a key set up once gives the one-shot HMAC every time,
 * also after a MAC over other data.
 */
static void hmac_key_matches_one_shot(void **state)
{
	static const enum crypto_hmac_hash hashes[] = {
		CRYPTO_HMAC_SHA256, CRYPTO_HMAC_SHA384, CRYPTO_HMAC_SHA512,
	};
	static const size_t key_sizes[] = { 0, 4, 131, 200 };
	const char *data = "header.claims";
	unsigned char secret[200];
	unsigned char expected[CRYPTO_HMAC_MAX_SIZE];
	unsigned char actual[CRYPTO_HMAC_MAX_SIZE];

	(void)state;
	memset(secret, 0xaa, sizeof(secret));
	for (size_t h = 0; h < sizeof(hashes) / sizeof(hashes[0]); h++) {
		for (size_t k = 0; k < sizeof(key_sizes) / sizeof(key_sizes[0]); k++) {
			struct crypto_hmac_key *key = crypto_hmac_key_new(hashes[h], secret,
				key_sizes[k]);
			int expected_len = crypto_hmac(hashes[h], secret, key_sizes[k], data,
				strlen(data), expected);

			assert_non_null(key);
			assert_true(expected_len >= CRYPTO_SHA256_SIZE);
			assert_int_equal(crypto_hmac_with(key, data, strlen(data), actual),
				expected_len);
			assert_memory_equal(actual, expected, (size_t)expected_len);
			assert_int_equal(crypto_hmac_with(key, "other", 5, actual), expected_len);
			assert_memory_not_equal(actual, expected, (size_t)expected_len);
			assert_int_equal(crypto_hmac_with(key, data, strlen(data), actual),
				expected_len);
			assert_memory_equal(actual, expected, (size_t)expected_len);
			crypto_hmac_key_free(key);
		}
	}
	assert_null(crypto_hmac_key_new(CRYPTO_HMAC_HASH_COUNT, secret, 32));
	assert_int_equal(crypto_hmac_with(NULL, data, strlen(data), actual), -1);
}

static void random_digits_format(void **state)
{
	char code[33];

	(void)state;
	for (size_t length = 1; length < sizeof(code); length++) {
		memset(code, 'x', sizeof(code));
		assert_int_equal(crypto_random_digits(code, length), 0);
		assert_int_equal(strlen(code), length);
		for (size_t i = 0; i < length; i++) {
			assert_true(code[i] >= '0');
			assert_true(code[i] <= '9');
		}
	}
}

/*
 * A rough check with wide margins: 100,000 digits give 10,000 of each on
 * average with a standard deviation near 95, so 9,500 to 10,500 is over 5
 * deviations either side. It catches a stuck or skewed generator, not the
 * small bias of taking a byte modulo 10, which only reading the code rules
 * out.
 */
static void random_digits_uniform(void **state)
{
	enum { TOTAL = 100000, CHUNK = 1000 };
	static char digits[CHUNK + 1];
	long counts[10] = { 0 };
	double chi_square = 0;

	(void)state;
	for (int chunk = 0; chunk < TOTAL / CHUNK; chunk++) {
		assert_int_equal(crypto_random_digits(digits, CHUNK), 0);
		for (int i = 0; i < CHUNK; i++)
			counts[digits[i] - '0']++;
	}
	for (int d = 0; d < 10; d++) {
		double diff = (double)counts[d] - TOTAL / 10.0;

		assert_in_range(counts[d], 9500, 10500);
		chi_square += diff * diff / (TOTAL / 10.0);
	}
	/* 9 degrees of freedom: P(chi-square > 40) is about 7e-6. */
	assert_true(chi_square < 40.0);
}

static void random_bytes_differ(void **state)
{
	unsigned char a[32];
	unsigned char b[32];

	(void)state;
	assert_int_equal(crypto_random_bytes(a, sizeof(a)), 0);
	assert_int_equal(crypto_random_bytes(b, sizeof(b)), 0);
	assert_memory_not_equal(a, b, sizeof(a));
	assert_int_equal(crypto_random_bytes(a, 0), 0);
}

static void equal_compares_contents(void **state)
{
	(void)state;
	assert_int_equal(crypto_equal("abcdef", "abcdef", 6), 1);
	assert_int_equal(crypto_equal("abcdef", "abcdeg", 6), 0);
	assert_int_equal(crypto_equal("xbcdef", "abcdef", 6), 0);
	assert_int_equal(crypto_equal("abc", "xyz", 0), 1);
}

static void wipe_zeroes(void **state)
{
	unsigned char buf[16];

	(void)state;
	memset(buf, 0xa5, sizeof(buf));
	crypto_wipe(buf, sizeof(buf));
	for (size_t i = 0; i < sizeof(buf); i++)
		assert_int_equal(buf[i], 0);
}

static void hex_round_trip(void **state)
{
	unsigned char bytes[256];
	unsigned char decoded[256];
	char hex[2 * 256 + 1];

	(void)state;
	for (size_t i = 0; i < sizeof(bytes); i++)
		bytes[i] = (unsigned char)i;
	crypto_hex_encode(bytes, sizeof(bytes), hex);
	assert_int_equal(strlen(hex), 512);
	assert_memory_equal(hex, "000102", 6);
	assert_string_equal(hex + 500, "fafbfcfdfeff");
	assert_int_equal(crypto_hex_decode(hex, strlen(hex), decoded, sizeof(decoded)), 256);
	assert_memory_equal(decoded, bytes, sizeof(bytes));

	crypto_hex_encode(bytes, 0, hex);
	assert_string_equal(hex, "");
}

static void hex_decode_either_case(void **state)
{
	unsigned char out[4];

	(void)state;
	assert_int_equal(crypto_hex_decode("DeadBEEF", 8, out, sizeof(out)), 4);
	assert_memory_equal(out, "\xde\xad\xbe\xef", 4);
	assert_int_equal(crypto_hex_decode("", 0, out, sizeof(out)), 0);
}

static void hex_decode_rejects(void **state)
{
	unsigned char out[4];

	(void)state;
	assert_int_equal(crypto_hex_decode("abc", 3, out, sizeof(out)), -1);
	assert_int_equal(crypto_hex_decode("zz", 2, out, sizeof(out)), -1);
	assert_int_equal(crypto_hex_decode("0g", 2, out, sizeof(out)), -1);
	assert_int_equal(crypto_hex_decode("00 1", 4, out, sizeof(out)), -1);
	assert_int_equal(crypto_hex_decode("0011223344", 10, out, sizeof(out)), -1);
}

/* The base32 vectors of RFC 4648 section 10, without padding. */
static void base32_rfc4648_vectors(void **state)
{
	static const struct {
		const char *plain;
		const char *encoded;
	} cases[] = {
		{ "", "" },
		{ "f", "MY" },
		{ "fo", "MZXQ" },
		{ "foo", "MZXW6" },
		{ "foob", "MZXW6YQ" },
		{ "fooba", "MZXW6YTB" },
		{ "foobar", "MZXW6YTBOI" },
	};
	char encoded[32];
	unsigned char decoded[16];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = strlen(cases[i].plain);

		assert_int_equal(crypto_base32_encode((const unsigned char *)cases[i].plain, len,
			encoded, sizeof(encoded)), (long)strlen(cases[i].encoded));
		assert_string_equal(encoded, cases[i].encoded);
		assert_int_equal(crypto_base32_decode(cases[i].encoded, decoded, sizeof(decoded)),
			(long)len);
		assert_memory_equal(decoded, cases[i].plain, len);
	}
}

static void base32_round_trip(void **state)
{
	unsigned char bytes[41];
	unsigned char decoded[41];
	char encoded[80];

	(void)state;
	for (size_t i = 0; i < sizeof(bytes); i++)
		bytes[i] = (unsigned char)(i * 37 + 11);
	for (size_t len = 0; len <= sizeof(bytes); len++) {
		long encoded_len = crypto_base32_encode(bytes, len, encoded, sizeof(encoded));

		assert_int_equal(encoded_len, (long)((len * 8 + 4) / 5));
		assert_int_equal(crypto_base32_decode(encoded, decoded, sizeof(decoded)), (long)len);
		assert_memory_equal(decoded, bytes, len);
	}
}

/* Lower case, spaces, white space and '=' are ignored. */
static void base32_decode_lenient(void **state)
{
	unsigned char out[16];

	(void)state;
	assert_int_equal(crypto_base32_decode("mzxw 6ytb oi======\n", out, sizeof(out)), 6);
	assert_memory_equal(out, "foobar", 6);
	assert_int_equal(crypto_base32_decode("MZ\tXQ====", out, sizeof(out)), 2);
	assert_memory_equal(out, "fo", 2);
}

static void base32_decode_rejects(void **state)
{
	unsigned char out[4];

	(void)state;
	assert_int_equal(crypto_base32_decode("MZXW1", out, sizeof(out)), -1);
	assert_int_equal(crypto_base32_decode("MZXW8", out, sizeof(out)), -1);
	assert_int_equal(crypto_base32_decode("MZ-XW", out, sizeof(out)), -1);
	/* 1, 3 or 6 trailing characters match no byte count. */
	assert_int_equal(crypto_base32_decode("M", out, sizeof(out)), -1);
	assert_int_equal(crypto_base32_decode("MZX", out, sizeof(out)), -1);
	assert_int_equal(crypto_base32_decode("MZXW6Y", out, sizeof(out)), -1);
	/* "fooba" is 5 bytes, but out has room for 4. */
	assert_int_equal(crypto_base32_decode("MZXW6YTB", out, sizeof(out)), -1);
}

static void base32_encode_rejects_small_out(void **state)
{
	char out[4];

	(void)state;
	/* "foo" needs 5 characters and a NUL. */
	assert_int_equal(crypto_base32_encode((const unsigned char *)"foo", 3, out, sizeof(out)),
		-1);
	assert_int_equal(crypto_base32_encode((const unsigned char *)"f", 1, out, 2), -1);
	assert_int_equal(crypto_base32_encode((const unsigned char *)"f", 1, out, 3), 2);
	assert_string_equal(out, "MY");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sha256_abc),
		cmocka_unit_test(hmac_sha256_rfc4231_case2),
		cmocka_unit_test(code_hmac_layout),
		cmocka_unit_test(code_hmac_binds_inputs),
		cmocka_unit_test(code_hmac_rejects_non_digits),
		cmocka_unit_test(hmac_key_rfc4231_case2),
		cmocka_unit_test(hmac_key_matches_one_shot),
		cmocka_unit_test(random_digits_format),
		cmocka_unit_test(random_digits_uniform),
		cmocka_unit_test(random_bytes_differ),
		cmocka_unit_test(equal_compares_contents),
		cmocka_unit_test(wipe_zeroes),
		cmocka_unit_test(hex_round_trip),
		cmocka_unit_test(hex_decode_either_case),
		cmocka_unit_test(hex_decode_rejects),
		cmocka_unit_test(base32_rfc4648_vectors),
		cmocka_unit_test(base32_round_trip),
		cmocka_unit_test(base32_decode_lenient),
		cmocka_unit_test(base32_decode_rejects),
		cmocka_unit_test(base32_encode_rejects_small_out),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
