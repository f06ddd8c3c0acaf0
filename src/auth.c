/* Bearer token (JWT, RFC 7519) verification through libjwt, and development tokens. */
#include "autoconfig.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>
#include <jwt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "auth.h"
#include "body.h"
#include "config.h"
#include "crypto.h"
#include "log.h"

/* Tokens longer than this are rejected unread, because the claims read here fit in far less. */
#define AUTH_TOKEN_MAX 8192

/* A day. A larger leeway would make exp meaningless, and the cap keeps now + leeway in range. */
#define AUTH_LEEWAY_MAX 86400

/* The size of struct auth_claims' scope buffer, so an issued scope always fits a verifier's. */
#define AUTH_SCOPE_SIZE sizeof(((struct auth_claims *)NULL)->scope)

/* RSA keys with fewer bits than this are rejected at load as too weak. */
#define AUTH_RSA_MIN_BITS 2048

enum auth_alg {
	AUTH_ALG_HS256,
	AUTH_ALG_HS384,
	AUTH_ALG_HS512,
	AUTH_ALG_RS256,
	AUTH_ALG_ES256,
	AUTH_ALG_COUNT,
};

enum auth_key_type {
	AUTH_KEY_HMAC,
	AUTH_KEY_RSA,
	AUTH_KEY_EC,
};

struct auth_alg_info {
	const char *name;
	jwt_alg_t jwt_alg;
	enum auth_key_type key_type;
	size_t min_secret;  /* HMAC only: RFC 7518 section 3.2 requires a key of the hash's size */
	enum crypto_hmac_hash hmac_hash;  /* HMAC only */
};

static const struct auth_alg_info auth_algs[AUTH_ALG_COUNT] = {
	[AUTH_ALG_HS256] = { "HS256", JWT_ALG_HS256, AUTH_KEY_HMAC, 32, CRYPTO_HMAC_SHA256 },
	[AUTH_ALG_HS384] = { "HS384", JWT_ALG_HS384, AUTH_KEY_HMAC, 48, CRYPTO_HMAC_SHA384 },
	[AUTH_ALG_HS512] = { "HS512", JWT_ALG_HS512, AUTH_KEY_HMAC, 64, CRYPTO_HMAC_SHA512 },
	[AUTH_ALG_RS256] = { "RS256", JWT_ALG_RS256, AUTH_KEY_RSA, 0, 0 },
	[AUTH_ALG_ES256] = { "ES256", JWT_ALG_ES256, AUTH_KEY_EC, 0, 0 },
};

#define AUTH_ALG_BIT(alg) (1u << (alg))

/* One verification key: an HMAC secret or the PEM text of a public key. */
struct auth_key {
	char *kid;                /* the kid header value that names it, or NULL */
	enum auth_key_type type;
	unsigned char *material;  /* secret bytes, or PEM text with a NUL after it */
	size_t material_len;
	unsigned algs;            /* AUTH_ALG_BIT mask of the configured algorithms it serves */
	/* HMAC secrets only: the key set up for each hash of the algorithms it serves. */
	struct crypto_hmac_key *hmac[CRYPTO_HMAC_HASH_COUNT];
};

struct auth_keys {
	unsigned algs;  /* AUTH_ALG_BIT mask of the configured algorithms */
	struct auth_key *items;
	size_t count;
	char *issuer;    /* NULL: iss is not checked */
	char *audience;  /* NULL: aud is not checked */
	char *excluded_audience;  /* NULL: no aud value is rejected */
	int64_t leeway;
};

/* Trims white space on both ends in place and returns the start. */
static char *auth_trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	*end = '\0';
	return s;
}

/* Cuts the next comma-separated item out of *cursor and trims it. Returns NULL at the end. */
static char *auth_next_item(char **cursor)
{
	char *item = *cursor;
	char *comma;

	if (item == NULL)
		return NULL;
	comma = strchr(item, ',');
	if (comma != NULL) {
		*comma = '\0';
		*cursor = comma + 1;
	} else {
		*cursor = NULL;
	}
	return auth_trim(item);
}

/* Parses the algorithms list into a mask. An empty or unknown item is an error. */
static int auth_parse_algorithms(const char *list, unsigned *algs, char *err, size_t err_size)
{
	char *copy = strdup(list);
	char *cursor = copy;
	char *item;
	int rc = -1;

	*algs = 0;
	if (copy == NULL) {
		snprintf(err, err_size, "out of memory");
		goto out;
	}
	while ((item = auth_next_item(&cursor)) != NULL) {
		size_t i;

		for (i = 0; i < AUTH_ALG_COUNT; i++)
			if (strcmp(item, auth_algs[i].name) == 0)
				break;
		if (i == AUTH_ALG_COUNT) {
			snprintf(err, err_size,
				"unknown JWT algorithm \"%.32s\" (expected HS256, HS384, HS512, RS256 or ES256)",
				item);
			goto out;
		}
		*algs |= AUTH_ALG_BIT(i);
	}
	rc = 0;

out:
	free(copy);
	return rc;
}

/*
 * Splits a "KID=PATH" item. The text before the first '=' is a kid only when
 * it contains no '/', so a plain path with '=' in a file name still works.
 */
static void auth_split_kid(char *item, char **kid, char **path)
{
	char *equals = strchr(item, '=');
	char *slash = strchr(item, '/');

	*kid = NULL;
	*path = item;
	if (equals == NULL || (slash != NULL && slash < equals))
		return;
	*equals = '\0';
	*kid = auth_trim(item);
	*path = auth_trim(equals + 1);
}

/* Frees the HMAC keys of hmac. */
static void auth_free_hmac_keys(struct crypto_hmac_key *hmac[CRYPTO_HMAC_HASH_COUNT])
{
	for (size_t hash = 0; hash < CRYPTO_HMAC_HASH_COUNT; hash++) {
		crypto_hmac_key_free(hmac[hash]);
		hmac[hash] = NULL;
	}
}

/*
 * Sets up an HMAC secret as a key for the hash of each algorithm in algs,
 * so a request does not hash the padded secret again.
 */
static int auth_make_hmac_keys(const unsigned char *secret, size_t secret_len, unsigned algs,
	struct crypto_hmac_key *hmac[CRYPTO_HMAC_HASH_COUNT])
{
	for (size_t alg = 0; alg < AUTH_ALG_COUNT; alg++) {
		enum crypto_hmac_hash hash = auth_algs[alg].hmac_hash;

		if (auth_algs[alg].key_type != AUTH_KEY_HMAC || !(algs & AUTH_ALG_BIT(alg)) ||
		    hmac[hash] != NULL)
			continue;
		hmac[hash] = crypto_hmac_key_new(hash, secret, secret_len);
		if (hmac[hash] == NULL) {
			auth_free_hmac_keys(hmac);
			return -1;
		}
	}
	return 0;
}

/* Appends a key, taking ownership of material on success. Rejects a kid used twice. */
static int auth_add_key(struct auth_keys *keys, const char *kid, enum auth_key_type type,
	unsigned char *material, size_t material_len, unsigned algs, char *err, size_t err_size)
{
	struct crypto_hmac_key *hmac[CRYPTO_HMAC_HASH_COUNT] = { NULL };
	struct auth_key *items;
	struct auth_key *key;
	char *kid_copy = NULL;
	size_t i;

	if (kid != NULL && kid[0] == '\0') {
		snprintf(err, err_size, "JWT key id before '=' is empty");
		return -1;
	}
	for (i = 0; kid != NULL && i < keys->count; i++) {
		if (keys->items[i].kid != NULL && strcmp(keys->items[i].kid, kid) == 0) {
			snprintf(err, err_size, "JWT key id \"%.64s\" is given to two keys", kid);
			return -1;
		}
	}
	if (type == AUTH_KEY_HMAC && auth_make_hmac_keys(material, material_len, algs, hmac) != 0) {
		snprintf(err, err_size, "cannot set up a JWT secret as an HMAC key");
		return -1;
	}
	if (kid != NULL)
		kid_copy = strdup(kid);
	items = kid != NULL && kid_copy == NULL ? NULL :
		realloc(keys->items, (keys->count + 1) * sizeof(*items));
	if (items == NULL) {
		free(kid_copy);
		auth_free_hmac_keys(hmac);
		snprintf(err, err_size, "out of memory");
		return -1;
	}
	keys->items = items;
	key = &items[keys->count];
	memset(key, 0, sizeof(*key));
	key->kid = kid_copy;
	key->type = type;
	key->material = material;
	key->material_len = material_len;
	key->algs = algs;
	memcpy(key->hmac, hmac, sizeof(key->hmac));
	keys->count++;
	return 0;
}

/* Returns the smallest secret size among the configured HS algorithms, or 0 when none is. */
static size_t auth_min_secret(unsigned algs)
{
	size_t min = 0;
	size_t i;

	for (i = 0; i < AUTH_ALG_COUNT; i++) {
		if (!(algs & AUTH_ALG_BIT(i)) || auth_algs[i].key_type != AUTH_KEY_HMAC)
			continue;
		if (min == 0 || auth_algs[i].min_secret < min)
			min = auth_algs[i].min_secret;
	}
	return min;
}

/* Reads one HS secret; it serves each configured HS algorithm whose minimum size it meets. */
static int auth_load_secret(struct auth_keys *keys, char *item, char *err, size_t err_size)
{
	size_t min = auth_min_secret(keys->algs);
	unsigned char *secret = NULL;
	size_t secret_len = 0;
	char *kid;
	char *name;
	unsigned algs = 0;
	size_t i;
	int rc = -1;

	auth_split_kid(item, &kid, &name);
	if (min == 0) {
		snprintf(err, err_size, "hs_secret_file %s is set but no HS algorithm is configured",
			name);
		goto out;
	}
	/* config_read_secret() resolves the name under $CREDENTIALS_DIRECTORY itself. */
	if (config_read_secret(name, min, &secret, &secret_len, err, err_size) != 0)
		goto out;

	for (i = 0; i < AUTH_ALG_COUNT; i++)
		if ((keys->algs & AUTH_ALG_BIT(i)) && auth_algs[i].key_type == AUTH_KEY_HMAC
			&& secret_len >= auth_algs[i].min_secret)
			algs |= AUTH_ALG_BIT(i);
	if (auth_add_key(keys, kid, AUTH_KEY_HMAC, secret, secret_len, algs, err, err_size) != 0)
		goto out;
	secret = NULL;
	rc = 0;

out:
	if (secret != NULL) {
		OPENSSL_cleanse(secret, secret_len);
		free(secret);
	}
	return rc;
}

/* Checks a public key's type against the configured algorithms; sets the algorithm it serves. */
static int auth_check_public_key(const struct auth_keys *keys, EVP_PKEY *pkey, const char *path,
	enum auth_key_type *type, unsigned *algs, char *err, size_t err_size)
{
	char group[64];
	enum auth_alg alg;

	if (EVP_PKEY_get_base_id(pkey) == EVP_PKEY_RSA) {
		if (EVP_PKEY_get_bits(pkey) < AUTH_RSA_MIN_BITS) {
			snprintf(err, err_size, "RSA key in %s has %d bits, fewer than %d", path,
				EVP_PKEY_get_bits(pkey), AUTH_RSA_MIN_BITS);
			return -1;
		}
		alg = AUTH_ALG_RS256;
	} else if (EVP_PKEY_get_base_id(pkey) == EVP_PKEY_EC) {
		if (EVP_PKEY_get_group_name(pkey, group, sizeof(group), NULL) != 1
			|| strcmp(group, "prime256v1") != 0) {
			snprintf(err, err_size, "EC key in %s is not on curve P-256, which ES256 needs",
				path);
			return -1;
		}
		alg = AUTH_ALG_ES256;
	} else {
		snprintf(err, err_size, "public key in %s is neither RSA nor EC P-256", path);
		return -1;
	}

	if (!(keys->algs & AUTH_ALG_BIT(alg))) {
		snprintf(err, err_size, "public key in %s is for %s, which algorithms does not list",
			path, auth_algs[alg].name);
		return -1;
	}
	*type = auth_algs[alg].key_type;
	*algs = AUTH_ALG_BIT(alg);
	return 0;
}

/* Writes pkey as PEM text with a NUL after it, the form jwt_decode() takes as key. */
static unsigned char *auth_public_key_pem(EVP_PKEY *pkey, size_t *len)
{
	BIO *bio = BIO_new(BIO_s_mem());
	unsigned char *pem = NULL;
	char *data;
	long data_len;

	if (bio == NULL || PEM_write_bio_PUBKEY(bio, pkey) != 1)
		goto out;
	data_len = BIO_get_mem_data(bio, &data);
	if (data_len <= 0)
		goto out;
	pem = malloc((size_t)data_len + 1);
	if (pem == NULL)
		goto out;
	memcpy(pem, data, (size_t)data_len);
	pem[data_len] = '\0';
	*len = (size_t)data_len;

out:
	BIO_free(bio);
	return pem;
}

/* Reads one PEM public key file: RSA serves RS256, EC P-256 serves ES256. */
static int auth_load_public_key(struct auth_keys *keys, char *item, char *err, size_t err_size)
{
	EVP_PKEY *pkey = NULL;
	unsigned char *pem = NULL;
	size_t pem_len = 0;
	char *path = NULL;
	FILE *file = NULL;
	enum auth_key_type type;
	unsigned algs;
	char *kid;
	char *name;
	int rc = -1;

	auth_split_kid(item, &kid, &name);
	path = config_secret_path(name);
	if (path == NULL) {
		snprintf(err, err_size, "out of memory");
		goto out;
	}
	file = fopen(path, "r");
	if (file == NULL) {
		snprintf(err, err_size, "cannot open public key file %s: %s", path, strerror(errno));
		goto out;
	}
	pkey = PEM_read_PUBKEY(file, NULL, NULL, NULL);
	if (pkey == NULL) {
		snprintf(err, err_size, "public key file %s holds no PEM public key", path);
		goto out;
	}
	if (auth_check_public_key(keys, pkey, path, &type, &algs, err, err_size) != 0)
		goto out;
	pem = auth_public_key_pem(pkey, &pem_len);
	if (pem == NULL) {
		snprintf(err, err_size, "cannot encode public key from %s", path);
		goto out;
	}
	if (auth_add_key(keys, kid, type, pem, pem_len, algs, err, err_size) != 0)
		goto out;
	pem = NULL;
	rc = 0;

out:
	free(pem);
	EVP_PKEY_free(pkey);
	if (file != NULL)
		fclose(file);
	free(path);
	return rc;
}

/* Loads every item of a comma-separated file list with load_one. */
static int auth_load_list(struct auth_keys *keys, const char *list, const char *setting,
	int (*load_one)(struct auth_keys *, char *, char *, size_t), char *err, size_t err_size)
{
	char *copy;
	char *cursor;
	char *item;
	int rc = -1;

	if (list == NULL || list[0] == '\0')
		return 0;
	copy = strdup(list);
	if (copy == NULL) {
		snprintf(err, err_size, "out of memory");
		return -1;
	}
	cursor = copy;
	while ((item = auth_next_item(&cursor)) != NULL) {
		if (item[0] == '\0') {
			snprintf(err, err_size, "%s has an empty item", setting);
			goto out;
		}
		if (load_one(keys, item, err, err_size) != 0)
			goto out;
	}
	rc = 0;

out:
	free(copy);
	return rc;
}

/*
 * Checks that each configured algorithm has a key. An HS algorithm may lack a
 * secret long enough for it while a shorter HS algorithm has one. That is only
 * a warning, because the shorter algorithm still works.
 */
static int auth_check_coverage(const struct auth_keys *keys, char *err, size_t err_size)
{
	unsigned served = 0;
	unsigned hmac_algs = 0;
	size_t i;

	for (i = 0; i < keys->count; i++)
		served |= keys->items[i].algs;
	for (i = 0; i < AUTH_ALG_COUNT; i++)
		if (auth_algs[i].key_type == AUTH_KEY_HMAC)
			hmac_algs |= AUTH_ALG_BIT(i);

	/* Each secret meets the smallest configured minimum, so none served means none given. */
	if ((keys->algs & hmac_algs) != 0 && !(served & hmac_algs)) {
		snprintf(err, err_size, "an HS algorithm is configured but hs_secret_file is not set");
		return -1;
	}
	for (i = 0; i < AUTH_ALG_COUNT; i++) {
		if (!(keys->algs & AUTH_ALG_BIT(i)) || (served & AUTH_ALG_BIT(i)))
			continue;
		if (auth_algs[i].key_type != AUTH_KEY_HMAC) {
			snprintf(err, err_size, "%s is configured but public_key_file has no %s key",
				auth_algs[i].name, auth_algs[i].key_type == AUTH_KEY_RSA ? "RSA" : "EC P-256");
			return -1;
		}
		log_warning("no hs_secret_file secret has the %zu bytes %s needs, so %s tokens "
			"are rejected", auth_algs[i].min_secret, auth_algs[i].name, auth_algs[i].name);
	}
	return 0;
}

/* Copies an optional text setting. An empty one counts as not set. */
static int auth_copy_setting(const char *value, char **copy, char *err, size_t err_size)
{
	*copy = NULL;
	if (value == NULL || value[0] == '\0')
		return 0;
	*copy = strdup(value);
	if (*copy == NULL) {
		snprintf(err, err_size, "out of memory");
		return -1;
	}
	return 0;
}

int auth_keys_load(const struct config_jwt *cfg, struct auth_keys **keys_out, char *err,
	size_t err_size)
{
	struct auth_keys *keys = NULL;
	const char *algorithms = cfg->algorithms;
	int rc = -1;

	*keys_out = NULL;
	keys = calloc(1, sizeof(*keys));
	if (keys == NULL) {
		snprintf(err, err_size, "out of memory");
		goto out;
	}
	if (cfg->leeway < 0 || cfg->leeway > AUTH_LEEWAY_MAX) {
		snprintf(err, err_size, "leeway %ld is outside 0 to %d seconds", cfg->leeway,
			AUTH_LEEWAY_MAX);
		goto out;
	}
	keys->leeway = cfg->leeway;

	/* An unset or empty list means the documented default. */
	if (algorithms == NULL || algorithms[0] == '\0')
		algorithms = "HS256";
	if (auth_parse_algorithms(algorithms, &keys->algs, err, err_size) != 0)
		goto out;
	if (auth_copy_setting(cfg->issuer, &keys->issuer, err, err_size) != 0
		|| auth_copy_setting(cfg->audience, &keys->audience, err, err_size) != 0)
		goto out;

	if (auth_load_list(keys, cfg->hs_secret_file, "hs_secret_file", auth_load_secret, err,
			err_size) != 0
		|| auth_load_list(keys, cfg->public_key_file, "public_key_file",
			auth_load_public_key, err, err_size) != 0
		|| auth_check_coverage(keys, err, err_size) != 0)
		goto out;

	*keys_out = keys;
	keys = NULL;
	rc = 0;

out:
	auth_keys_free(keys);
	return rc;
}

void auth_keys_free(struct auth_keys *keys)
{
	size_t i;

	if (keys == NULL)
		return;
	for (i = 0; i < keys->count; i++) {
		OPENSSL_cleanse(keys->items[i].material, keys->items[i].material_len);
		free(keys->items[i].material);
		free(keys->items[i].kid);
		auth_free_hmac_keys(keys->items[i].hmac);
	}
	free(keys->items);
	free(keys->issuer);
	free(keys->audience);
	free(keys->excluded_audience);
	free(keys);
}

int auth_keys_exclude_audience(struct auth_keys *keys, const char *audience)
{
	char *copy = NULL;

	if (audience != NULL && audience[0] != '\0') {
		copy = strdup(audience);
		if (copy == NULL)
			return -1;
	}
	free(keys->excluded_audience);
	keys->excluded_audience = copy;
	return 0;
}

/* Returns a base64url character's 6-bit value, or -1. */
static int auth_base64url_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/*
 * Decodes unpadded base64url (RFC 7515 section 2) strictly: no padding, no
 * other character, no length that no encoding gives, and zero unused bits,
 * so each byte string has exactly one accepted encoding. Returns a new
 * NUL-terminated buffer, or NULL.
 */
static unsigned char *auth_base64url_decode(const char *in, size_t len, size_t *out_len)
{
	unsigned char *out;
	unsigned long bits = 0;
	int bit_count = 0;
	size_t n = 0;
	size_t i;

	if (len % 4 == 1)
		return NULL;
	out = malloc(len * 3 / 4 + 1);
	if (out == NULL)
		return NULL;
	for (i = 0; i < len; i++) {
		int value = auth_base64url_value(in[i]);

		if (value < 0)
			goto fail;
		bits = (bits << 6) | (unsigned long)value;
		bit_count += 6;
		if (bit_count >= 8) {
			bit_count -= 8;
			out[n++] = (unsigned char)(bits >> bit_count);
			bits &= (1ul << bit_count) - 1;
		}
	}
	if (bits != 0)
		goto fail;
	out[n] = '\0';
	*out_len = n;
	return out;

fail:
	free(out);
	return NULL;
}

static int auth_is_json_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Returns the index of the first byte at or after i that is not JSON white space. */
static size_t auth_skip_space(const char *s, size_t len, size_t i)
{
	while (i < len && auth_is_json_space(s[i]))
		i++;
	return i;
}

/* Decodes a base64url part and parses it as one JSON object. Returns NULL for anything else. */
static struct json_object *auth_decode_json_part(const char *part, size_t len, char **text,
	size_t *text_len)
{
	static _Thread_local struct json_tokener *tokener;
	struct json_object *object = NULL;
	bool out_of_memory;
	unsigned char *decoded;
	size_t decoded_len = 0;
	size_t parse_end;

	*text = NULL;
	decoded = auth_base64url_decode(part, len, &decoded_len);
	if (decoded == NULL || memchr(decoded, '\0', decoded_len) != NULL)
		goto out;
	object = body_parse_kept(&tokener, JSON_TOKENER_DEFAULT_DEPTH, (const char *)decoded,
		decoded_len, &out_of_memory, &parse_end);
	if (object == NULL || !json_object_is_type(object, json_type_object)
		|| auth_skip_space((const char *)decoded, decoded_len, parse_end) != decoded_len) {
		json_object_put(object);
		object = NULL;
		goto out;
	}
	*text = (char *)decoded;
	*text_len = decoded_len;
	decoded = NULL;

out:
	free(decoded);
	return object;
}

/* Returns the index just past the JSON string that starts at s[i], or 0 when it is cut off. */
static size_t auth_skip_string(const char *s, size_t len, size_t i)
{
	for (i++; i < len; i++) {
		if (s[i] == '\\')
			i++;
		else if (s[i] == '"')
			return i + 1;
	}
	return 0;
}

/* Returns the index just past the JSON value that starts at s[i], or 0 when it is cut off. */
static size_t auth_skip_value(const char *s, size_t len, size_t i)
{
	int depth = 0;

	while (i < len) {
		char c = s[i];

		if (c == '"') {
			i = auth_skip_string(s, len, i);
			if (i == 0 || depth == 0)
				return i;
			continue;
		}
		if (c == '{' || c == '[') {
			depth++;
		} else if (c == '}' || c == ']') {
			if (depth == 0)
				return i;
			depth--;
			if (depth == 0)
				return i + 1;
		} else if (depth == 0 && (c == ',' || auth_is_json_space(c))) {
			return i;
		}
		i++;
	}
	return depth == 0 ? i : 0;
}

/* Tells whether the raw JSON string s[start, end) decodes to name. */
static int auth_key_equals(const char *s, size_t start, size_t end, const char *name)
{
	struct json_tokener *tokener = json_tokener_new();
	struct json_object *key = NULL;
	int equal;

	if (tokener == NULL)
		return 0;
	key = json_tokener_parse_ex(tokener, s + start, (int)(end - start));
	equal = key != NULL && json_object_is_type(key, json_type_string)
		&& strcmp(json_object_get_string(key), name) == 0;
	json_object_put(key);
	json_tokener_free(tokener);
	return equal;
}

/*
 * Finds the raw text of the top-level member name in a JSON object's text,
 * the last one when the name repeats, as json-c keeps the last. The text
 * must already have parsed as an object. Returns 0 with value and value_len
 * set, or -1 when the member is absent.
 */
static int auth_find_member(const char *s, size_t len, const char *name, const char **value,
	size_t *value_len)
{
	size_t name_len = strlen(name);
	size_t i = auth_skip_space(s, len, 0);
	int found = 0;

	if (i >= len || s[i] != '{')
		return -1;
	i = auth_skip_space(s, len, i + 1);
	while (i < len && s[i] == '"') {
		size_t key_end = auth_skip_string(s, len, i);
		size_t value_start;
		size_t value_end;
		int match;

		if (key_end == 0)
			return -1;
		/* Compare the raw bytes unless the key has escapes, which only json-c decodes. */
		if (memchr(s + i, '\\', key_end - i) == NULL)
			match = key_end - i == name_len + 2 && memcmp(s + i + 1, name, name_len) == 0;
		else
			match = auth_key_equals(s, i, key_end, name);

		i = auth_skip_space(s, len, key_end);
		if (i >= len || s[i] != ':')
			return -1;
		value_start = auth_skip_space(s, len, i + 1);
		value_end = auth_skip_value(s, len, value_start);
		if (value_end <= value_start)
			return -1;
		if (match) {
			*value = s + value_start;
			*value_len = value_end - value_start;
			found = 1;
		}

		i = auth_skip_space(s, len, value_end);
		if (i >= len || s[i] != ',')
			break;
		i = auth_skip_space(s, len, i + 1);
	}
	return found ? 0 : -1;
}

/* Tells whether raw is 0 to 2^63 - 1 in plain decimal digits without a leading zero. */
static int auth_is_plain_int63(const char *raw, size_t len)
{
	static const char max[] = "9223372036854775807";
	size_t i;

	if (len == 0 || len > sizeof(max) - 1)
		return 0;
	for (i = 0; i < len; i++)
		if (raw[i] < '0' || raw[i] > '9')
			return 0;
	if (len > 1 && raw[0] == '0')
		return 0;
	return len < sizeof(max) - 1 || memcmp(raw, max, len) <= 0;
}

/* Tells whether UTF-8 text contains a control character: C0, DEL, or C1 (U+0080 to U+009F). */
static int auth_has_control(const char *text, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];

		if (c < 0x20 || c == 0x7f)
			return 1;
		if (c == 0xc2 && i + 1 < len && (unsigned char)text[i + 1] <= 0x9f)
			return 1;
	}
	return 0;
}

/*
 * Copies the sub claim into user_id: a JSON string of 1 to AUTH_USER_ID_MAX
 * bytes without control characters, or a JSON integer from 0 to 2^63 - 1
 * written as plain digits, taken as those digits. json-c turns 4.0 and 4e0
 * into doubles but -0 into the integer 0, so the digits are read from the
 * raw payload text.
 */
static int auth_copy_subject(struct json_object *claims, const char *payload, size_t payload_len,
	char *user_id)
{
	struct json_object *sub;
	const char *text = NULL;
	size_t len = 0;

	if (!json_object_object_get_ex(claims, "sub", &sub))
		return -1;
	if (json_object_is_type(sub, json_type_string)) {
		text = json_object_get_string(sub);
		len = (size_t)json_object_get_string_len(sub);
		if (len == 0 || len > AUTH_USER_ID_MAX || auth_has_control(text, len))
			return -1;
	} else if (json_object_is_type(sub, json_type_int)) {
		if (auth_find_member(payload, payload_len, "sub", &text, &len) != 0
			|| !auth_is_plain_int63(text, len))
			return -1;
	} else {
		return -1;
	}
	memcpy(user_id, text, len);
	user_id[len] = '\0';
	return 0;
}

/* Reads a time claim that must be a JSON integer. Returns 1, 0 when absent, -1 on another type. */
static int auth_get_time(struct json_object *claims, const char *name, int64_t *value)
{
	struct json_object *member;

	if (!json_object_object_get_ex(claims, name, &member))
		return 0;
	if (!json_object_is_type(member, json_type_int))
		return -1;
	/* json-c clamps integers beyond int64_t, which moves no decision here. */
	*value = json_object_get_int64(member);
	return 1;
}

/* Tells whether aud, a string or an array of strings, contains audience. */
static int auth_audience_matches(struct json_object *aud, const char *audience)
{
	size_t count;
	size_t i;

	if (json_object_is_type(aud, json_type_string))
		return strcmp(json_object_get_string(aud), audience) == 0;
	if (!json_object_is_type(aud, json_type_array))
		return 0;
	count = json_object_array_length(aud);
	for (i = 0; i < count; i++) {
		struct json_object *item = json_object_array_get_idx(aud, i);

		if (json_object_is_type(item, json_type_string)
			&& strcmp(json_object_get_string(item), audience) == 0)
			return 1;
	}
	return 0;
}

/* The decoded parts of a compact JWS (RFC 7515 section 7.1). */
struct auth_token {
	struct json_object *header;
	struct json_object *claims;
	char *payload;  /* the claims' JSON text */
	size_t payload_len;
	size_t signing_input_len;  /* bytes of the token before the second dot */
	unsigned char *signature;  /* the decoded third part */
	size_t signature_len;
};

/*
 * Appends one scope item of len bytes to scope, after a space unless it is
 * the first. An item is 1 or more bytes without spaces or control
 * characters, tabs included. Returns -1 for anything else and when scope
 * would exceed scope_size with its NUL.
 */
static int auth_append_scope(char *scope, size_t scope_size, size_t *used, const char *item,
	size_t len)
{
	size_t separator = *used > 0 ? 1 : 0;

	if (len == 0 || memchr(item, ' ', len) != NULL || auth_has_control(item, len))
		return -1;
	if (*used + separator + len >= scope_size)
		return -1;
	if (separator)
		scope[(*used)++] = ' ';
	memcpy(scope + *used, item, len);
	*used += len;
	scope[*used] = '\0';
	return 0;
}

/*
 * Normalizes a space-separated scope list (RFC 8693 section 4.2) into
 * scope: runs of spaces become one space and spaces at the ends go. A tab
 * or any other control character makes the whole list invalid. Returns 0
 * or -1.
 */
static int auth_normalize_scope(const char *text, size_t len, char *scope, size_t scope_size)
{
	size_t used = 0;
	size_t i = 0;

	scope[0] = '\0';
	while (i < len) {
		size_t item_end;

		if (text[i] == ' ') {
			i++;
			continue;
		}
		for (item_end = i; item_end < len && text[item_end] != ' '; item_end++)
			;
		if (auth_append_scope(scope, scope_size, &used, text + i, item_end - i) != 0)
			return -1;
		i = item_end;
	}
	return 0;
}

/*
 * Copies the scope claim into scope as space-separated items: a string as
 * auth_normalize_scope() reads it, or an array of strings each of which is
 * one item. An absent claim gives an empty scope. Returns 0, or -1 for
 * another type, a bad item, or a list that does not fit.
 */
static int auth_copy_scope(struct json_object *claims, char *scope, size_t scope_size)
{
	struct json_object *member;
	size_t used = 0;
	size_t count;
	size_t i;

	scope[0] = '\0';
	if (!json_object_object_get_ex(claims, "scope", &member))
		return 0;
	if (json_object_is_type(member, json_type_string))
		return auth_normalize_scope(json_object_get_string(member),
			(size_t)json_object_get_string_len(member), scope, scope_size);
	if (!json_object_is_type(member, json_type_array))
		return -1;

	count = json_object_array_length(member);
	for (i = 0; i < count; i++) {
		struct json_object *item = json_object_array_get_idx(member, i);

		if (!json_object_is_type(item, json_type_string)
			|| auth_append_scope(scope, scope_size, &used, json_object_get_string(item),
				(size_t)json_object_get_string_len(item)) != 0)
			return -1;
	}
	return 0;
}

/* Checks nbf and reads exp, which must be present. Returns 0, or -1 when the token is invalid. */
static int auth_check_times(const struct auth_keys *keys, struct json_object *claims,
	int64_t now, int64_t *exp)
{
	int64_t nbf = 0;
	int found;

	if (auth_get_time(claims, "exp", exp) != 1) {
		log_debug("bearer token rejected: exp claim missing or not an integer");
		return -1;
	}
	found = auth_get_time(claims, "nbf", &nbf);
	if (found < 0 || (found == 1 && nbf > now + keys->leeway)) {
		log_debug("bearer token rejected: nbf claim in the future or not an integer");
		return -1;
	}
	return 0;
}

/* Checks iss and aud against the configured issuer, audience and excluded audience. */
static int auth_check_parties(const struct auth_keys *keys, struct json_object *claims)
{
	struct json_object *member;
	bool has_aud = json_object_object_get_ex(claims, "aud", &member);

	if (keys->issuer != NULL) {
		struct json_object *iss;

		if (!json_object_object_get_ex(claims, "iss", &iss)
			|| !json_object_is_type(iss, json_type_string)
			|| strcmp(json_object_get_string(iss), keys->issuer) != 0) {
			log_debug("bearer token rejected: iss claim missing or not the configured issuer");
			return -1;
		}
	}
	if (keys->audience != NULL && (!has_aud || !auth_audience_matches(member, keys->audience))) {
		log_debug("bearer token rejected: aud claim missing or without the configured audience");
		return -1;
	}
	if (keys->excluded_audience != NULL && has_aud
		&& auth_audience_matches(member, keys->excluded_audience)) {
		log_debug("bearer token rejected: aud claim contains the excluded audience");
		return -1;
	}
	return 0;
}

/*
 * Checks the claims of a token whose signature is verified and copies sub
 * into subject, and the scope claim into scope unless scope is NULL.
 * Expiry is checked last, so AUTH_EXPIRED means the token is otherwise
 * valid. A token is expired when now >= exp + leeway, and not yet valid
 * when nbf > now + leeway.
 */
static enum auth_result auth_check_claims(const struct auth_keys *keys,
	const struct auth_token *parsed, int64_t now, char *subject, char *scope,
	size_t scope_size)
{
	int64_t exp = 0;

	if (auth_check_times(keys, parsed->claims, now, &exp) != 0
		|| auth_check_parties(keys, parsed->claims) != 0)
		return AUTH_INVALID;
	if (auth_copy_subject(parsed->claims, parsed->payload, parsed->payload_len, subject) != 0) {
		log_debug("bearer token rejected: sub claim missing or not a valid user id");
		return AUTH_INVALID;
	}
	if (scope != NULL && auth_copy_scope(parsed->claims, scope, scope_size) != 0) {
		log_debug("bearer token rejected: scope claim not a string or an array of scope "
			"strings, or longer than %zu bytes", scope_size - 1);
		return AUTH_INVALID;
	}
	if (exp <= now - keys->leeway) {
		log_debug("bearer token expired: exp is %" PRId64 " seconds ago, leeway %" PRId64,
			now - exp, keys->leeway);
		return AUTH_EXPIRED;
	}
	return AUTH_OK;
}

/* Reads alg and kid from the JOSE header. alg must be configured, so "none" never passes. */
static int auth_read_header(const struct auth_keys *keys, struct json_object *header,
	enum auth_alg *alg, const char **kid)
{
	struct json_object *member;
	const char *name;
	size_t i;

	if (!json_object_object_get_ex(header, "alg", &member)
		|| !json_object_is_type(member, json_type_string)) {
		log_debug("bearer token rejected: alg header missing or not a string");
		return -1;
	}
	name = json_object_get_string(member);
	for (i = 0; i < AUTH_ALG_COUNT; i++)
		if ((keys->algs & AUTH_ALG_BIT(i)) && strcmp(name, auth_algs[i].name) == 0)
			break;
	if (i == AUTH_ALG_COUNT) {
		log_debug("bearer token rejected: alg header is not a configured algorithm");
		return -1;
	}
	*alg = (enum auth_alg)i;

	/* RFC 7515 section 4.1.11: a token naming extensions the verifier lacks is invalid. */
	if (json_object_object_get_ex(header, "crit", NULL)) {
		log_debug("bearer token rejected: crit header present");
		return -1;
	}

	*kid = NULL;
	if (json_object_object_get_ex(header, "kid", &member)) {
		if (!json_object_is_type(member, json_type_string)) {
			log_debug("bearer token rejected: kid header not a string");
			return -1;
		}
		*kid = json_object_get_string(member);
	}
	return 0;
}

/*
 * Checks an HS256, HS384 or HS512 signature under one secret: the HMAC of
 * the signing input, compared in constant time (RFC 7515 section 5.2).
 */
static bool auth_hmac_matches(const struct auth_key *key, enum auth_alg alg, const char *token,
	const struct auth_token *parsed)
{
	unsigned char mac[CRYPTO_HMAC_MAX_SIZE];
	int mac_len;
	bool matches;

	mac_len = crypto_hmac_with(key->hmac[auth_algs[alg].hmac_hash], token,
		parsed->signing_input_len, mac);
	matches = mac_len > 0 && (size_t)mac_len == parsed->signature_len &&
		crypto_equal(mac, parsed->signature, parsed->signature_len);
	crypto_wipe(mac, sizeof(mac));
	return matches;
}

/*
 * Verifies the signature, trying only keys that serve alg: the key named by
 * kid when there is one, else each such key. Keys are matched to alg by
 * type, so a public key's PEM text is never an HMAC secret. HMAC signatures
 * are checked here over the parts already decoded; libjwt checks RS256 and
 * ES256, which would otherwise need their own signature encodings here.
 */
static int auth_check_signature(const struct auth_keys *keys, const char *token,
	const struct auth_token *parsed, enum auth_alg alg, const char *kid)
{
	size_t i;

	for (i = 0; i < keys->count; i++) {
		const struct auth_key *key = &keys->items[i];
		jwt_t *jwt = NULL;
		bool verified;

		if (!(key->algs & AUTH_ALG_BIT(alg)))
			continue;
		if (kid != NULL && (key->kid == NULL || strcmp(key->kid, kid) != 0))
			continue;
		if (auth_algs[alg].key_type == AUTH_KEY_HMAC) {
			verified = auth_hmac_matches(key, alg, token, parsed);
		} else {
			verified = jwt_decode(&jwt, token, key->material,
					(int)key->material_len) == 0 &&
				jwt_get_alg(jwt) == auth_algs[alg].jwt_alg;
			jwt_free(jwt);
		}
		if (verified)
			return 0;
	}
	log_debug("bearer token rejected: no %s key%s verifies its signature", auth_algs[alg].name,
		kid != NULL ? " of its kid" : "");
	return -1;
}

static void auth_token_free(struct auth_token *parsed)
{
	json_object_put(parsed->header);
	json_object_put(parsed->claims);
	free(parsed->payload);
	free(parsed->signature);
}

/* Splits a token into three base64url parts and decodes the header and the claims. */
static int auth_parse_token(const char *token, size_t len, struct auth_token *parsed)
{
	const char *end = token + len;
	const char *dot1 = memchr(token, '.', len);
	const char *dot2 = dot1 != NULL ? memchr(dot1 + 1, '.', (size_t)(end - dot1 - 1)) : NULL;
	char *header_text = NULL;
	size_t header_len = 0;

	memset(parsed, 0, sizeof(*parsed));
	if (dot2 == NULL || memchr(dot2 + 1, '.', (size_t)(end - dot2 - 1)) != NULL
		|| dot1 == token || dot2 == dot1 + 1 || dot2 + 1 == end) {
		log_debug("bearer token rejected: not three non-empty parts");
		return -1;
	}

	parsed->signing_input_len = (size_t)(dot2 - token);
	parsed->signature = auth_base64url_decode(dot2 + 1, (size_t)(end - dot2 - 1),
		&parsed->signature_len);
	parsed->header = auth_decode_json_part(token, (size_t)(dot1 - token), &header_text,
		&header_len);
	free(header_text);
	parsed->claims = auth_decode_json_part(dot1 + 1, (size_t)(dot2 - dot1 - 1),
		&parsed->payload, &parsed->payload_len);
	if (parsed->signature == NULL || parsed->header == NULL || parsed->claims == NULL) {
		log_debug("bearer token rejected: a part is not base64url or not a JSON object");
		auth_token_free(parsed);
		memset(parsed, 0, sizeof(*parsed));
		return -1;
	}
	return 0;
}

/* Verifies a token of len bytes (NUL-terminated) as auth_verify_header() describes. */
static enum auth_result auth_verify_token(const struct auth_keys *keys, const char *token,
	size_t len, int64_t now, char *subject, char *scope, size_t scope_size)
{
	struct auth_token parsed;
	enum auth_result result = AUTH_INVALID;
	enum auth_alg alg;
	const char *kid;

	if (auth_parse_token(token, len, &parsed) != 0)
		return AUTH_INVALID;
	if (auth_read_header(keys, parsed.header, &alg, &kid) != 0
		|| auth_check_signature(keys, token, &parsed, alg, kid) != 0)
		goto out;
	result = auth_check_claims(keys, &parsed, now, subject, scope, scope_size);

out:
	auth_token_free(&parsed);
	return result;
}

/*
 * Verifies an Authorization header value for auth_verify() and
 * auth_verify_claims(), reading the scope claim only when scope is not
 * NULL. The token is what follows the scheme "Bearer", in any case, and one
 * or more spaces (RFC 6750 section 2.1, RFC 7235 section 2.1), less white
 * space around it. subject and scope are empty unless the result is AUTH_OK.
 */
static enum auth_result auth_verify_header(const struct auth_keys *keys,
	const char *authorization, int64_t now, char *subject, char *scope, size_t scope_size)
{
	char token[AUTH_TOKEN_MAX + 1];
	enum auth_result result;
	const char *start;
	const char *end;

	subject[0] = '\0';
	if (scope != NULL)
		scope[0] = '\0';
	if (authorization == NULL || strncasecmp(authorization, "Bearer", 6) != 0
		|| authorization[6] != ' ')
		return AUTH_MISSING;
	start = authorization + 6;
	while (*start == ' ' || *start == '\t')
		start++;
	end = start + strlen(start);
	while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if (end == start)
		return AUTH_MISSING;
	if ((size_t)(end - start) > AUTH_TOKEN_MAX) {
		log_debug("bearer token rejected: longer than %d bytes", AUTH_TOKEN_MAX);
		return AUTH_INVALID;
	}

	memcpy(token, start, (size_t)(end - start));
	token[end - start] = '\0';
	result = auth_verify_token(keys, token, (size_t)(end - start), now, subject, scope,
		scope_size);
	if (result != AUTH_OK) {
		subject[0] = '\0';
		if (scope != NULL)
			scope[0] = '\0';
	}
	return result;
}

enum auth_result auth_verify(const struct auth_keys *keys, const char *authorization,
	int64_t now, char user_id[AUTH_USER_ID_MAX + 1])
{
	return auth_verify_header(keys, authorization, now, user_id, NULL, 0);
}

enum auth_result auth_verify_claims(const struct auth_keys *keys, const char *authorization,
	int64_t now, struct auth_claims *claims)
{
	return auth_verify_header(keys, authorization, now, claims->subject, claims->scope,
		sizeof(claims->scope));
}

bool auth_scope_has(const struct auth_claims *claims, const char *scope)
{
	size_t scope_len = strlen(scope);
	const char *item = claims->scope;

	if (scope_len == 0)
		return false;
	while (*item != '\0') {
		size_t item_len = strcspn(item, " ");

		if (item_len == scope_len && memcmp(item, scope, scope_len) == 0)
			return true;
		item += item_len;
		if (*item == ' ')
			item++;
	}
	return false;
}

/*
 * Signs an HS256 token with the first key that serves HS256: sub, iat, exp,
 * iss and aud when configured, and scope (normalized as a verifier reads it)
 * when scope is not NULL. Returns a new string, or NULL.
 */
static char *auth_issue(const struct auth_keys *keys, const char *subject, const char *scope,
	int64_t now, long ttl)
{
	const struct auth_key *key = NULL;
	size_t subject_len = strlen(subject);
	char normalized[AUTH_SCOPE_SIZE];
	jwt_t *jwt = NULL;
	char *token = NULL;
	size_t i;

	for (i = 0; key == NULL && i < keys->count; i++)
		if (keys->items[i].algs & AUTH_ALG_BIT(AUTH_ALG_HS256))
			key = &keys->items[i];
	if (key == NULL || ttl <= 0 || subject_len == 0 || subject_len > AUTH_USER_ID_MAX
		|| auth_has_control(subject, subject_len))
		return NULL;
	if (scope != NULL
		&& auth_normalize_scope(scope, strlen(scope), normalized, sizeof(normalized)) != 0)
		return NULL;

	if (jwt_new(&jwt) != 0
		|| jwt_set_alg(jwt, JWT_ALG_HS256, key->material, (int)key->material_len) != 0
		|| jwt_add_grant(jwt, "sub", subject) != 0
		|| jwt_add_grant_int(jwt, "iat", (long)now) != 0
		|| jwt_add_grant_int(jwt, "exp", (long)(now + ttl)) != 0
		|| (keys->issuer != NULL && jwt_add_grant(jwt, "iss", keys->issuer) != 0)
		|| (keys->audience != NULL && jwt_add_grant(jwt, "aud", keys->audience) != 0)
		|| (scope != NULL && jwt_add_grant(jwt, "scope", normalized) != 0)
		|| (key->kid != NULL && jwt_add_header(jwt, "kid", key->kid) != 0))
		goto out;
	token = jwt_encode_str(jwt);

out:
	jwt_free(jwt);
	return token;
}

char *auth_issue_token(const struct auth_keys *keys, const char *user_id, int64_t now,
	long ttl)
{
	return auth_issue(keys, user_id, NULL, now, ttl);
}

char *auth_issue_service_token(const struct auth_keys *keys, const char *subject,
	const char *scope, int64_t now, long ttl)
{
	return auth_issue(keys, subject, scope, now, ttl);
}
