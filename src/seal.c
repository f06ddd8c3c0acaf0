/* AES-256-GCM sealing of secrets at rest, under a keyring loaded from [seal] key_file. */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "crypto.h"
#include "seal.h"

#define SEAL_KEY_SIZE 32
#define SEAL_NONCE_SIZE 12
#define SEAL_TAG_SIZE 16
/* A key file has a few lines, so a larger file is taken for a wrong path. */
#define SEAL_FILE_MAX 65536

struct seal_key {
	char id[SEAL_KEY_ID_MAX + 1];
	unsigned char key[SEAL_KEY_SIZE];
};

/* A loaded key file. The first key seals and every key opens. */
struct seal_keyring {
	size_t count;
	struct seal_key keys[];
};

/*
 * Reads the whole file into a NUL-terminated buffer with read(2), not
 * stdio, so no copy of the key material stays in a stdio buffer.
 */
static char *seal_read_file(const char *path, size_t *size, char *err, size_t err_size)
{
	struct stat st;
	char *text = NULL;
	size_t filled = 0;
	int fd = -1;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, err_size, "cannot open key file %s: %s", path, strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > SEAL_FILE_MAX) {
		snprintf(err, err_size, "key file %s is not a regular file of at most %d bytes",
			path, SEAL_FILE_MAX);
		goto out;
	}

	text = malloc((size_t)st.st_size + 1);
	if (text == NULL) {
		snprintf(err, err_size, "cannot read key file %s: out of memory", path);
		goto out;
	}
	while (filled < (size_t)st.st_size) {
		ssize_t n = read(fd, text + filled, (size_t)st.st_size - filled);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(err, err_size, "cannot read key file %s: %s", path,
				n < 0 ? strerror(errno) : "file shrank while reading");
			crypto_wipe(text, filled);
			free(text);
			text = NULL;
			goto out;
		}
		filled += (size_t)n;
	}
	text[filled] = '\0';
	*size = filled;

out:
	if (fd >= 0)
		close(fd);
	return text;
}

static int seal_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static int seal_is_id_char(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/*
 * Parses one line, already stripped of surrounding white space, into key.
 * Returns 0, or -1 with a message naming path and line_number.
 */
static int seal_parse_line(const char *line, size_t len, struct seal_key *key,
	const char *path, unsigned line_number, char *err, size_t err_size)
{
	const char *colon = memchr(line, ':', len);
	const char *hex = line;
	size_t hex_len = len;

	if (colon == NULL) {
		strcpy(key->id, "0");
	} else {
		size_t id_len = (size_t)(colon - line);

		if (id_len == 0 || id_len > SEAL_KEY_ID_MAX) {
			snprintf(err, err_size, "key file %s line %u: invalid key id: "
				"expected 1 to %d letters or digits before ':'", path, line_number,
				SEAL_KEY_ID_MAX);
			return -1;
		}
		for (size_t i = 0; i < id_len; i++) {
			if (!seal_is_id_char(line[i])) {
				snprintf(err, err_size, "key file %s line %u: invalid key id: "
					"only letters and digits are allowed", path, line_number);
				return -1;
			}
		}
		memcpy(key->id, line, id_len);
		key->id[id_len] = '\0';
		hex = colon + 1;
		hex_len = len - id_len - 1;
	}

	if (hex_len != 2 * SEAL_KEY_SIZE) {
		snprintf(err, err_size, "key file %s line %u: invalid key: expected %d hex digits, "
			"found %zu characters", path, line_number, 2 * SEAL_KEY_SIZE, hex_len);
		return -1;
	}
	if (crypto_hex_decode(hex, hex_len, key->key, sizeof(key->key)) != SEAL_KEY_SIZE) {
		snprintf(err, err_size, "key file %s line %u: invalid key: not all hex digits",
			path, line_number);
		return -1;
	}
	return 0;
}

static const struct seal_key *seal_find_key(const struct seal_keyring *keyring,
	const char *key_id)
{
	for (size_t i = 0; i < keyring->count; i++) {
		if (strcmp(keyring->keys[i].id, key_id) == 0)
			return &keyring->keys[i];
	}
	return NULL;
}

/* Parses every line of text into keyring, which has room for one key per line. */
static int seal_parse_text(char *text, struct seal_keyring *keyring, const char *path,
	char *err, size_t err_size)
{
	unsigned line_number = 0;
	char *line = text;

	while (line != NULL) {
		char *newline = strchr(line, '\n');
		char *end = newline != NULL ? newline : line + strlen(line);
		struct seal_key *key = &keyring->keys[keyring->count];

		line_number++;
		while (line < end && seal_is_space(*line))
			line++;
		while (end > line && seal_is_space(end[-1]))
			end--;

		if (end > line && line[0] != '#') {
			if (seal_parse_line(line, (size_t)(end - line), key, path, line_number, err,
				err_size) != 0)
				return -1;
			if (seal_find_key(keyring, key->id) != NULL) {
				snprintf(err, err_size, "key file %s line %u: duplicate key id %s",
					path, line_number, key->id);
				return -1;
			}
			keyring->count++;
		}
		line = newline != NULL ? newline + 1 : NULL;
	}

	if (keyring->count == 0) {
		snprintf(err, err_size, "key file %s: no key found", path);
		return -1;
	}
	return 0;
}

int seal_keyring_load(const char *path, struct seal_keyring **keyring, char *err,
	size_t err_size)
{
	struct seal_keyring *loaded = NULL;
	char *text = NULL;
	size_t size = 0;
	size_t lines = 1;
	int rc = -1;

	*keyring = NULL;
	text = seal_read_file(path, &size, err, err_size);
	if (text == NULL)
		goto out;

	/* One slot per line, so the array never grows and leaves no key copies behind. */
	for (size_t i = 0; i < size; i++)
		lines += text[i] == '\n';
	loaded = calloc(1, sizeof(*loaded) + lines * sizeof(loaded->keys[0]));
	if (loaded == NULL) {
		snprintf(err, err_size, "cannot load key file %s: out of memory", path);
		goto out;
	}
	if (seal_parse_text(text, loaded, path, err, err_size) != 0)
		goto out;

	*keyring = loaded;
	loaded = NULL;
	rc = 0;

out:
	if (text != NULL) {
		crypto_wipe(text, size);
		free(text);
	}
	if (loaded != NULL) {
		/* Slots past count may hold a half-parsed key. */
		crypto_wipe(loaded->keys, lines * sizeof(loaded->keys[0]));
		free(loaded);
	}
	return rc;
}

void seal_keyring_free(struct seal_keyring *keyring)
{
	if (keyring == NULL)
		return;
	crypto_wipe(keyring->keys, keyring->count * sizeof(keyring->keys[0]));
	free(keyring);
}

int seal_encrypt(const struct seal_keyring *keyring, const void *aad, size_t aad_len,
	const void *plain, size_t plain_len, unsigned char *out, size_t *out_len,
	char key_id[SEAL_KEY_ID_MAX + 1])
{
	const struct seal_key *key = &keyring->keys[0];
	unsigned char *nonce = out;
	unsigned char *cipher = out + SEAL_NONCE_SIZE;
	unsigned char *tag = cipher + plain_len;
	EVP_CIPHER_CTX *ctx = NULL;
	int aad_out = 0;
	int len = 0;
	int final_len = 0;
	int rc = -1;

	if (keyring->count == 0 || plain_len > INT_MAX - SEAL_OVERHEAD || aad_len > INT_MAX)
		goto out;
	if (crypto_random_bytes(nonce, SEAL_NONCE_SIZE) != 0)
		goto out;

	ctx = EVP_CIPHER_CTX_new();
	if (ctx == NULL)
		goto out;
	/* AES-GCM's default nonce is the 12 bytes used here. */
	if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key->key, nonce) != 1)
		goto out;
	if (aad_len > 0 && EVP_EncryptUpdate(ctx, NULL, &aad_out, aad, (int)aad_len) != 1)
		goto out;
	if (plain_len > 0 && EVP_EncryptUpdate(ctx, cipher, &len, plain, (int)plain_len) != 1)
		goto out;
	if (EVP_EncryptFinal_ex(ctx, cipher + len, &final_len) != 1)
		goto out;
	if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_SIZE, tag) != 1)
		goto out;

	*out_len = plain_len + SEAL_OVERHEAD;
	strcpy(key_id, key->id);
	rc = 0;

out:
	EVP_CIPHER_CTX_free(ctx);
	return rc;
}

int seal_decrypt(const struct seal_keyring *keyring, const char *key_id, const void *aad,
	size_t aad_len, const unsigned char *sealed, size_t sealed_len, unsigned char *out,
	size_t *out_len)
{
	const struct seal_key *key = seal_find_key(keyring, key_id);
	const unsigned char *cipher = NULL;
	size_t cipher_len = 0;
	EVP_CIPHER_CTX *ctx = NULL;
	int aad_out = 0;
	int len = 0;
	int final_len = 0;
	int rc = -1;

	if (key == NULL || sealed_len < SEAL_OVERHEAD || sealed_len > INT_MAX
		|| aad_len > INT_MAX)
		goto out;
	cipher = sealed + SEAL_NONCE_SIZE;
	cipher_len = sealed_len - SEAL_OVERHEAD;

	ctx = EVP_CIPHER_CTX_new();
	if (ctx == NULL)
		goto out;
	if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key->key, sealed) != 1)
		goto out;
	if (aad_len > 0 && EVP_DecryptUpdate(ctx, NULL, &aad_out, aad, (int)aad_len) != 1)
		goto out;
	if (cipher_len > 0 && EVP_DecryptUpdate(ctx, out, &len, cipher, (int)cipher_len) != 1)
		goto out;
	/* OpenSSL takes a non-const tag here but only reads it. */
	if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_SIZE,
		(void *)(cipher + cipher_len)) != 1)
		goto out;
	if (EVP_DecryptFinal_ex(ctx, out + len, &final_len) != 1)
		goto out;

	*out_len = cipher_len;
	rc = 0;

out:
	/* Plaintext that failed authentication must not reach the caller. */
	if (rc != 0)
		crypto_wipe(out, cipher_len);
	EVP_CIPHER_CTX_free(ctx);
	return rc;
}
