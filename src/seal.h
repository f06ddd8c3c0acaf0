/* AES-256-GCM sealing of secrets at rest under the keys of [seal] key_file. */
#ifndef USEROPS_SEAL_H
#define USEROPS_SEAL_H

#include <stddef.h>

#define SEAL_KEY_ID_MAX 16
/* A sealed value is a 12-byte nonce, the ciphertext and a 16-byte tag. */
#define SEAL_OVERHEAD 28

struct seal_keyring;

/*
 * Loads a key file: one key per line, "ID:HEX" or plain "HEX" (id "0"),
 * 64 hex digits each, blank lines and lines starting with '#' ignored.
 * The first key seals; every key opens. Returns -1 with a message naming
 * the file and line on any malformed line or when no key is present.
 */
int seal_keyring_load(const char *path, struct seal_keyring **keyring, char *err,
	size_t err_size);

void seal_keyring_free(struct seal_keyring *keyring);

/*
 * Seals plain under the first key, binding aad (for example an operation's
 * uuid). out must hold plain_len + SEAL_OVERHEAD bytes; key_id receives the
 * id of the key used. Returns 0 or -1.
 */
int seal_encrypt(const struct seal_keyring *keyring, const void *aad, size_t aad_len,
	const void *plain, size_t plain_len, unsigned char *out, size_t *out_len,
	char key_id[SEAL_KEY_ID_MAX + 1]);

/*
 * Opens a sealed value with the key named key_id. out must hold
 * sealed_len - SEAL_OVERHEAD bytes. Returns 0, or -1 when the key is
 * unknown or the tag does not verify.
 */
int seal_decrypt(const struct seal_keyring *keyring, const char *key_id, const void *aad,
	size_t aad_len, const unsigned char *sealed, size_t sealed_len, unsigned char *out,
	size_t *out_len);

#endif
