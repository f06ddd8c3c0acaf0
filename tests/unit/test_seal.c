/* Unit tests of seal.c: key files, AES-256-GCM round trips, tampering and key rotation. */
#include "autoconfig.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "seal.h"

#define KEY_A "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define KEY_B "ffeeddccbbaa99887766554433221100FFEEDDCCBBAA99887766554433221100"

static const char aad[] = "5f0c2a52-8f7e-4f41-9d55-0f3c1f1b2b9a";
static const char plain[] = "482913";

struct fixture {
	char dir[64];
	char path[128];
};

static int fixture_setup(void **state)
{
	struct fixture *fixture = calloc(1, sizeof(*fixture));

	if (fixture == NULL)
		return -1;
	strcpy(fixture->dir, "/tmp/test-seal-XXXXXX");
	if (mkdtemp(fixture->dir) == NULL) {
		free(fixture);
		return -1;
	}
	snprintf(fixture->path, sizeof(fixture->path), "%s/seal.keys", fixture->dir);
	*state = fixture;
	return 0;
}

static int fixture_teardown(void **state)
{
	struct fixture *fixture = *state;

	unlink(fixture->path);
	rmdir(fixture->dir);
	free(fixture);
	return 0;
}

static void write_key_file(const struct fixture *fixture, const char *text)
{
	FILE *file = fopen(fixture->path, "w");

	assert_non_null(file);
	assert_int_equal(fputs(text, file) >= 0, 1);
	assert_int_equal(fclose(file), 0);
}

static struct seal_keyring *load_keys(const struct fixture *fixture, const char *text)
{
	struct seal_keyring *keyring = NULL;
	char err[256] = "";

	write_key_file(fixture, text);
	if (seal_keyring_load(fixture->path, &keyring, err, sizeof(err)) != 0)
		fail_msg("loading the key file failed: %s", err);
	assert_non_null(keyring);
	return keyring;
}

/* Loads text, expects failure, and checks that the message contains want. */
static void assert_load_fails(const struct fixture *fixture, const char *text, const char *want)
{
	struct seal_keyring *keyring = NULL;
	char err[256] = "";

	write_key_file(fixture, text);
	assert_int_equal(seal_keyring_load(fixture->path, &keyring, err, sizeof(err)), -1);
	assert_null(keyring);
	assert_non_null(strstr(err, fixture->path));
	if (strstr(err, want) == NULL)
		fail_msg("message \"%s\" lacks \"%s\"", err, want);
}

static void seal_round_trip(void **state)
{
	struct seal_keyring *keyring = load_keys(*state, "a1:" KEY_A "\n");
	unsigned char sealed[sizeof(plain) + SEAL_OVERHEAD];
	unsigned char opened[sizeof(plain)];
	char key_id[SEAL_KEY_ID_MAX + 1];
	size_t sealed_len = 0;
	size_t opened_len = 0;

	assert_int_equal(seal_encrypt(keyring, aad, strlen(aad), plain, strlen(plain), sealed,
		&sealed_len, key_id), 0);
	assert_int_equal(sealed_len, strlen(plain) + SEAL_OVERHEAD);
	assert_string_equal(key_id, "a1");
	/* The ciphertext sits after the 12-byte nonce and is not the plaintext. */
	assert_memory_not_equal(sealed + 12, plain, strlen(plain));

	assert_int_equal(seal_decrypt(keyring, key_id, aad, strlen(aad), sealed, sealed_len,
		opened, &opened_len), 0);
	assert_int_equal(opened_len, strlen(plain));
	assert_memory_equal(opened, plain, strlen(plain));
	seal_keyring_free(keyring);
}

static void seal_empty_plaintext(void **state)
{
	struct seal_keyring *keyring = load_keys(*state, KEY_A "\n");
	unsigned char sealed[SEAL_OVERHEAD];
	unsigned char opened[1];
	char key_id[SEAL_KEY_ID_MAX + 1];
	size_t sealed_len = 0;
	size_t opened_len = 1;

	assert_int_equal(seal_encrypt(keyring, aad, strlen(aad), "", 0, sealed, &sealed_len,
		key_id), 0);
	assert_int_equal(sealed_len, SEAL_OVERHEAD);
	assert_string_equal(key_id, "0");
	assert_int_equal(seal_decrypt(keyring, "0", aad, strlen(aad), sealed, sealed_len, opened,
		&opened_len), 0);
	assert_int_equal(opened_len, 0);
	seal_keyring_free(keyring);
}

static void seal_nonce_differs(void **state)
{
	struct seal_keyring *keyring = load_keys(*state, KEY_A "\n");
	unsigned char first[sizeof(plain) + SEAL_OVERHEAD];
	unsigned char second[sizeof(plain) + SEAL_OVERHEAD];
	char key_id[SEAL_KEY_ID_MAX + 1];
	size_t len = 0;

	assert_int_equal(seal_encrypt(keyring, aad, strlen(aad), plain, strlen(plain), first, &len,
		key_id), 0);
	assert_int_equal(seal_encrypt(keyring, aad, strlen(aad), plain, strlen(plain), second,
		&len, key_id), 0);
	assert_memory_not_equal(first, second, 12);
	assert_memory_not_equal(first + 12, second + 12, len - 12);
	seal_keyring_free(keyring);
}

static void seal_wrong_aad_fails(void **state)
{
	struct seal_keyring *keyring = load_keys(*state, KEY_A "\n");
	unsigned char sealed[sizeof(plain) + SEAL_OVERHEAD];
	unsigned char opened[sizeof(plain)];
	char key_id[SEAL_KEY_ID_MAX + 1];
	char other_aad[sizeof(aad)];
	size_t sealed_len = 0;
	size_t opened_len = 0;

	assert_int_equal(seal_encrypt(keyring, aad, strlen(aad), plain, strlen(plain), sealed,
		&sealed_len, key_id), 0);
	strcpy(other_aad, aad);
	other_aad[0] = '6';
	assert_int_equal(seal_decrypt(keyring, key_id, other_aad, strlen(other_aad), sealed,
		sealed_len, opened, &opened_len), -1);
	assert_int_equal(seal_decrypt(keyring, key_id, NULL, 0, sealed, sealed_len, opened,
		&opened_len), -1);
	/* A failed open leaves no plaintext behind. */
	for (size_t i = 0; i < strlen(plain); i++)
		assert_int_equal(opened[i], 0);
	seal_keyring_free(keyring);
}

/* Flipping one bit anywhere, in nonce, ciphertext or tag, fails the open. */
static void seal_tampered_byte_fails(void **state)
{
	struct seal_keyring *keyring = load_keys(*state, KEY_A "\n");
	unsigned char sealed[sizeof(plain) + SEAL_OVERHEAD];
	unsigned char opened[sizeof(plain)];
	char key_id[SEAL_KEY_ID_MAX + 1];
	size_t sealed_len = 0;
	size_t opened_len = 0;

	assert_int_equal(seal_encrypt(keyring, aad, strlen(aad), plain, strlen(plain), sealed,
		&sealed_len, key_id), 0);
	for (size_t i = 0; i < sealed_len; i++) {
		sealed[i] ^= 0x01;
		assert_int_equal(seal_decrypt(keyring, key_id, aad, strlen(aad), sealed, sealed_len,
			opened, &opened_len), -1);
		sealed[i] ^= 0x01;
	}
	assert_int_equal(seal_decrypt(keyring, key_id, aad, strlen(aad), sealed, sealed_len - 1,
		opened, &opened_len), -1);
	assert_int_equal(seal_decrypt(keyring, key_id, aad, strlen(aad), sealed,
		SEAL_OVERHEAD - 1, opened, &opened_len), -1);
	assert_int_equal(seal_decrypt(keyring, key_id, aad, strlen(aad), sealed, sealed_len,
		opened, &opened_len), 0);
	seal_keyring_free(keyring);
}

static void seal_unknown_key_fails(void **state)
{
	struct seal_keyring *keyring = load_keys(*state, "a:" KEY_A "\n");
	unsigned char sealed[sizeof(plain) + SEAL_OVERHEAD];
	unsigned char opened[sizeof(plain)];
	char key_id[SEAL_KEY_ID_MAX + 1];
	size_t sealed_len = 0;
	size_t opened_len = 0;

	assert_int_equal(seal_encrypt(keyring, aad, strlen(aad), plain, strlen(plain), sealed,
		&sealed_len, key_id), 0);
	assert_int_equal(seal_decrypt(keyring, "b", aad, strlen(aad), sealed, sealed_len, opened,
		&opened_len), -1);
	assert_int_equal(seal_decrypt(keyring, "0", aad, strlen(aad), sealed, sealed_len, opened,
		&opened_len), -1);
	seal_keyring_free(keyring);
}

/* A value sealed under A still opens once B is put first, and new seals use B. */
static void seal_key_rotation(void **state)
{
	struct seal_keyring *keyring = load_keys(*state, "a:" KEY_A "\n");
	unsigned char sealed[sizeof(plain) + SEAL_OVERHEAD];
	unsigned char resealed[sizeof(plain) + SEAL_OVERHEAD];
	unsigned char opened[sizeof(plain)];
	char key_id[SEAL_KEY_ID_MAX + 1];
	char new_key_id[SEAL_KEY_ID_MAX + 1];
	size_t sealed_len = 0;
	size_t resealed_len = 0;
	size_t opened_len = 0;

	assert_int_equal(seal_encrypt(keyring, aad, strlen(aad), plain, strlen(plain), sealed,
		&sealed_len, key_id), 0);
	assert_string_equal(key_id, "a");
	seal_keyring_free(keyring);

	keyring = load_keys(*state, "# rotated\nb:" KEY_B "\na:" KEY_A "\n");
	assert_int_equal(seal_decrypt(keyring, key_id, aad, strlen(aad), sealed, sealed_len,
		opened, &opened_len), 0);
	assert_int_equal(opened_len, strlen(plain));
	assert_memory_equal(opened, plain, strlen(plain));

	assert_int_equal(seal_encrypt(keyring, aad, strlen(aad), plain, strlen(plain), resealed,
		&resealed_len, new_key_id), 0);
	assert_string_equal(new_key_id, "b");
	assert_int_equal(seal_decrypt(keyring, "a", aad, strlen(aad), resealed, resealed_len,
		opened, &opened_len), -1);
	assert_int_equal(seal_decrypt(keyring, "b", aad, strlen(aad), resealed, resealed_len,
		opened, &opened_len), 0);
	seal_keyring_free(keyring);
}

/* Comments, blank lines, CRLF and surrounding white space are accepted. */
static void keys_file_layout(void **state)
{
	struct seal_keyring *keyring = load_keys(*state,
		"# seal keys, newest first\r\n\r\n  \n  Key2024:" KEY_B "  \r\n#old\n0:" KEY_A);
	unsigned char sealed[sizeof(plain) + SEAL_OVERHEAD];
	char key_id[SEAL_KEY_ID_MAX + 1];
	size_t sealed_len = 0;

	assert_int_equal(seal_encrypt(keyring, aad, strlen(aad), plain, strlen(plain), sealed,
		&sealed_len, key_id), 0);
	assert_string_equal(key_id, "Key2024");
	seal_keyring_free(keyring);
}

/* A sixteen-character id is the longest allowed. */
static void keys_longest_id(void **state)
{
	struct seal_keyring *keyring = load_keys(*state, "abcdefghij012345:" KEY_A "\n");
	unsigned char sealed[sizeof(plain) + SEAL_OVERHEAD];
	char key_id[SEAL_KEY_ID_MAX + 1];
	size_t sealed_len = 0;

	assert_int_equal(seal_encrypt(keyring, aad, strlen(aad), plain, strlen(plain), sealed,
		&sealed_len, key_id), 0);
	assert_string_equal(key_id, "abcdefghij012345");
	seal_keyring_free(keyring);
}

static void keys_malformed_rejected(void **state)
{
	const struct fixture *fixture = *state;

	/* 62 hex digits. */
	assert_load_fails(fixture, "a:" KEY_A "\nb:" "00112233445566778899aabbccddeeff00112233445566778899aabbccddee\n",
		"line 2: invalid key: expected 64 hex digits, found 62");
	assert_load_fails(fixture, "a:" KEY_A "00\n", "line 1: invalid key: expected 64");
	assert_load_fails(fixture, "\n\nbad-id:" KEY_A "\n", "line 3: invalid key id");
	assert_load_fails(fixture, ":" KEY_A "\n", "line 1: invalid key id");
	assert_load_fails(fixture, "abcdefghij0123456:" KEY_A "\n", "line 1: invalid key id");
	assert_load_fails(fixture,
		"a:0011223344556677889gaabbccddeeff00112233445566778899aabbccddeeff\n",
		"line 1: invalid key: not all hex digits");
	assert_load_fails(fixture, "a:" KEY_A "\na:" KEY_B "\n", "line 2: duplicate key id a");
	assert_load_fails(fixture, KEY_A "\n0:" KEY_B "\n", "line 2: duplicate key id 0");
	assert_load_fails(fixture, "", "no key found");
	assert_load_fails(fixture, "# nothing here\n\n", "no key found");
}

static void keys_missing_file(void **state)
{
	const struct fixture *fixture = *state;
	struct seal_keyring *keyring = NULL;
	char path[160];
	char err[256] = "";

	snprintf(path, sizeof(path), "%s/absent.keys", fixture->dir);
	assert_int_equal(seal_keyring_load(path, &keyring, err, sizeof(err)), -1);
	assert_null(keyring);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "No such file"));

	assert_int_equal(seal_keyring_load(fixture->dir, &keyring, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a regular file"));
	seal_keyring_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(seal_round_trip, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(seal_empty_plaintext, fixture_setup,
			fixture_teardown),
		cmocka_unit_test_setup_teardown(seal_nonce_differs, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(seal_wrong_aad_fails, fixture_setup,
			fixture_teardown),
		cmocka_unit_test_setup_teardown(seal_tampered_byte_fails, fixture_setup,
			fixture_teardown),
		cmocka_unit_test_setup_teardown(seal_unknown_key_fails, fixture_setup,
			fixture_teardown),
		cmocka_unit_test_setup_teardown(seal_key_rotation, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(keys_file_layout, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(keys_longest_id, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(keys_malformed_rejected, fixture_setup,
			fixture_teardown),
		cmocka_unit_test_setup_teardown(keys_missing_file, fixture_setup, fixture_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
