/* Unit tests of auth.c: key loading, bearer token verification and development tokens. */
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
#include <jwt.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "auth.h"
#include "config.h"

/* The verification time of every test, and exp of a token that is still valid. */
#define NOW INT64_C(1700000000)
#define LATER "1700000300"

/* Files and keys made once in a temporary folder for the whole run. */
struct fixture {
	char dir[64];
	EVP_PKEY *rsa_a;
	EVP_PKEY *rsa_b;
	EVP_PKEY *ec_a;
	EVP_PKEY *ec_b;
	char *rsa_a_pem;  /* the text of the rsa_a.pem file */
};

static struct fixture fx;

/* The secrets written to the fixture files; hs31 is one byte under the HS256 minimum. */
static const char SECRET_32[] = "0123456789abcdef0123456789abcdef";
static const char SECRET_32B[] = "fedcba9876543210fedcba9876543210";
static const char SECRET_48[] = "0123456789abcdef0123456789abcdef0123456789abcdef";
static const char SECRET_64[] =
	"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
static const char SECRET_31[] = "0123456789abcdef0123456789abcde";

static const char *path_of(const char *name)
{
	static char paths[8][128];
	static int next;
	char *path = paths[next++ % 8];

	snprintf(path, sizeof(paths[0]), "%s/%s", fx.dir, name);
	return path;
}

static void write_file(const char *name, const char *text)
{
	FILE *file = fopen(path_of(name), "w");

	assert_non_null(file);
	assert_int_equal(fputs(text, file) >= 0, 1);
	assert_int_equal(fclose(file), 0);
}

static void write_public_key(const char *name, EVP_PKEY *pkey)
{
	FILE *file = fopen(path_of(name), "w");

	assert_non_null(file);
	assert_int_equal(PEM_write_PUBKEY(file, pkey), 1);
	assert_int_equal(fclose(file), 0);
}

static char *read_file(const char *name)
{
	FILE *file = fopen(path_of(name), "r");
	char *text = calloc(1, 8192);
	size_t len;

	assert_non_null(file);
	assert_non_null(text);
	len = fread(text, 1, 8191, file);
	assert_true(len > 0);
	fclose(file);
	return text;
}

static int fixture_setup(void **state)
{
	(void)state;
	snprintf(fx.dir, sizeof(fx.dir), "/tmp/test_auth.XXXXXX");
	if (mkdtemp(fx.dir) == NULL)
		return -1;
	write_file("hs32", SECRET_32);
	write_file("hs32b", SECRET_32B);
	write_file("hs48", SECRET_48);
	write_file("hs64", SECRET_64);
	write_file("hs31", SECRET_31);
	write_file("hs32_spaces", "  \n0123456789abcdef0123456789abcdef \n\n");

	fx.rsa_a = EVP_RSA_gen(2048);
	fx.rsa_b = EVP_RSA_gen(2048);
	fx.ec_a = EVP_EC_gen("P-256");
	fx.ec_b = EVP_EC_gen("P-256");
	if (fx.rsa_a == NULL || fx.rsa_b == NULL || fx.ec_a == NULL || fx.ec_b == NULL)
		return -1;
	write_public_key("rsa_a.pem", fx.rsa_a);
	write_public_key("rsa_b.pem", fx.rsa_b);
	write_public_key("ec_a.pem", fx.ec_a);
	write_public_key("ec_b.pem", fx.ec_b);
	fx.rsa_a_pem = read_file("rsa_a.pem");
	return 0;
}

static int fixture_teardown(void **state)
{
	static const char *const names[] = {
		"hs32", "hs32b", "hs48", "hs64", "hs31", "hs32_spaces", "rsa_a.pem", "rsa_b.pem",
		"ec_a.pem", "ec_b.pem", "rsa_small.pem", "ec_p384.pem", "ed25519.pem", "garbage.pem",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		unlink(path_of(names[i]));
	rmdir(fx.dir);
	EVP_PKEY_free(fx.rsa_a);
	EVP_PKEY_free(fx.rsa_b);
	EVP_PKEY_free(fx.ec_a);
	EVP_PKEY_free(fx.ec_b);
	free(fx.rsa_a_pem);
	return 0;
}

/* Encodes unpadded base64url (RFC 7515 section 2). */
static char *base64url(const unsigned char *in, size_t len)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	char *out = malloc(len * 4 / 3 + 4);
	size_t n = 0;
	size_t i;

	assert_non_null(out);
	for (i = 0; i + 2 < len; i += 3) {
		unsigned long v = (unsigned long)in[i] << 16 | (unsigned long)in[i + 1] << 8 | in[i + 2];

		out[n++] = alphabet[(v >> 18) & 63];
		out[n++] = alphabet[(v >> 12) & 63];
		out[n++] = alphabet[(v >> 6) & 63];
		out[n++] = alphabet[v & 63];
	}
	if (len - i == 1) {
		out[n++] = alphabet[in[i] >> 2];
		out[n++] = alphabet[(in[i] & 3) << 4];
	} else if (len - i == 2) {
		unsigned long v = (unsigned long)in[i] << 8 | in[i + 1];

		out[n++] = alphabet[(v >> 10) & 63];
		out[n++] = alphabet[(v >> 4) & 63];
		out[n++] = alphabet[(v << 2) & 63];
	}
	out[n] = '\0';
	return out;
}

enum sign_kind {
	SIGN_NOTHING,  /* an empty signature part */
	SIGN_HMAC,
	SIGN_RSA,
	SIGN_EC,
};

/* How a test token is signed: the digest, and a secret or a private key. */
struct signer {
	enum sign_kind kind;
	const EVP_MD *(*md)(void);
	const void *secret;
	size_t secret_len;
	EVP_PKEY *pkey;
};

static struct signer hmac_signer(const EVP_MD *(*md)(void), const char *secret)
{
	struct signer signer = { SIGN_HMAC, md, secret, strlen(secret), NULL };

	return signer;
}

static struct signer pkey_signer(enum sign_kind kind, EVP_PKEY *pkey)
{
	struct signer signer = { kind, EVP_sha256, NULL, 0, pkey };

	return signer;
}

/* Signs with a private key; ES256 turns the DER signature into R || S (RFC 7518 section 3.4). */
static size_t sign_with_pkey(const struct signer *signer, const char *input, unsigned char *out)
{
	unsigned char der[512];
	size_t der_len = sizeof(der);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	ECDSA_SIG *sig;
	const unsigned char *cursor = der;

	assert_non_null(ctx);
	assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, signer->pkey), 1);
	assert_int_equal(EVP_DigestSign(ctx, der, &der_len, (const unsigned char *)input,
		strlen(input)), 1);
	EVP_MD_CTX_free(ctx);
	if (signer->kind == SIGN_RSA) {
		memcpy(out, der, der_len);
		return der_len;
	}
	sig = d2i_ECDSA_SIG(NULL, &cursor, (long)der_len);
	assert_non_null(sig);
	assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_r(sig), out, 32), 32);
	assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_s(sig), out + 32, 32), 32);
	ECDSA_SIG_free(sig);
	return 64;
}

/* Builds a compact JWS by hand from header and payload JSON text. */
static char *make_token(const char *header, const char *payload, const struct signer *signer)
{
	char *header_part = base64url((const unsigned char *)header, strlen(header));
	char *payload_part = base64url((const unsigned char *)payload, strlen(payload));
	char *input = malloc(strlen(header_part) + strlen(payload_part) + 2);
	unsigned char signature[512];
	unsigned int hmac_len = 0;
	size_t signature_len = 0;
	char *signature_part;
	char *token;

	assert_non_null(input);
	sprintf(input, "%s.%s", header_part, payload_part);
	if (signer->kind == SIGN_HMAC) {
		assert_non_null(HMAC(signer->md(), signer->secret, (int)signer->secret_len,
			(const unsigned char *)input, strlen(input), signature, &hmac_len));
		signature_len = hmac_len;
	} else if (signer->kind != SIGN_NOTHING) {
		signature_len = sign_with_pkey(signer, input, signature);
	}
	signature_part = base64url(signature, signature_len);
	token = malloc(strlen(input) + strlen(signature_part) + 2);
	assert_non_null(token);
	sprintf(token, "%s.%s", input, signature_part);
	free(header_part);
	free(payload_part);
	free(signature_part);
	free(input);
	return token;
}

/* Verifies "Bearer TOKEN" at NOW and returns the result; user_id gets the sub. */
static enum auth_result verify_token(const struct auth_keys *keys, const char *token,
	char user_id[AUTH_USER_ID_MAX + 1])
{
	char *header = malloc(strlen(token) + 8);
	enum auth_result result;

	assert_non_null(header);
	sprintf(header, "Bearer %s", token);
	result = auth_verify(keys, header, NOW, user_id);
	free(header);
	return result;
}

/* Signs header and payload with signer and verifies the token at NOW. */
static enum auth_result check(const struct auth_keys *keys, const char *header,
	const char *payload, struct signer signer, char user_id[AUTH_USER_ID_MAX + 1])
{
	char *token = make_token(header, payload, &signer);
	enum auth_result result = verify_token(keys, token, user_id);

	free(token);
	return result;
}

/* As check(), with an HS256 header and the 32-byte secret. */
static enum auth_result check_hs256(const struct auth_keys *keys, const char *payload,
	char user_id[AUTH_USER_ID_MAX + 1])
{
	return check(keys, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}", payload,
		hmac_signer(EVP_sha256, SECRET_32), user_id);
}

/* Loads keys from settings; hs and pub name files in the fixture folder, joined by commas. */
static int try_load(const char *algorithms, const char *hs, const char *pub, const char *issuer,
	const char *audience, struct auth_keys **keys, char *err, size_t err_size)
{
	char hs_list[512] = "";
	char pub_list[512] = "";
	char *settings[2] = { hs_list, pub_list };
	const char *names[2] = { hs, pub };
	struct config_jwt cfg;
	int i;

	/* Each item is NAME or KID=NAME, and NAME becomes a path in the fixture folder. */
	for (i = 0; i < 2; i++) {
		char copy[256];
		char *cursor = copy;
		char *item;

		if (names[i] == NULL)
			continue;
		snprintf(copy, sizeof(copy), "%s", names[i]);
		while ((item = strsep(&cursor, ",")) != NULL) {
			char *equals = strchr(item, '=');
			size_t used = strlen(settings[i]);
			const char *comma = item != copy ? "," : "";

			if (item[0] == '\0') {
				snprintf(settings[i] + used, 512 - used, "%s", comma);
			} else if (equals != NULL) {
				*equals = '\0';
				snprintf(settings[i] + used, 512 - used, "%s%s=%s/%s", comma, item, fx.dir,
					equals + 1);
			} else {
				snprintf(settings[i] + used, 512 - used, "%s%s/%s", comma, fx.dir, item);
			}
		}
	}

	memset(&cfg, 0, sizeof(cfg));
	cfg.algorithms = (char *)algorithms;
	cfg.hs_secret_file = hs_list;
	cfg.public_key_file = pub_list;
	cfg.issuer = (char *)issuer;
	cfg.audience = (char *)audience;
	cfg.leeway = 30;
	return auth_keys_load(&cfg, keys, err, err_size);
}

static struct auth_keys *load(const char *algorithms, const char *hs, const char *pub,
	const char *issuer, const char *audience)
{
	struct auth_keys *keys = NULL;
	char err[512] = "";

	if (try_load(algorithms, hs, pub, issuer, audience, &keys, err, sizeof(err)) != 0)
		fail_msg("auth_keys_load: %s", err);
	assert_non_null(keys);
	return keys;
}

/* Every algorithm, one key each. */
static struct auth_keys *load_all(void)
{
	return load("HS256, HS384,HS512 ,RS256,ES256", "hs32,hs48,hs64", "rsa_a.pem,ec_a.pem",
		NULL, NULL);
}

static const char VALID[] = "{\"sub\":\"alice\",\"exp\":" LATER "}";

static void verify_hs256_ok(void **state)
{
	struct auth_keys *keys = load_all();
	char user_id[AUTH_USER_ID_MAX + 1];

	(void)state;
	assert_int_equal(check_hs256(keys, VALID, user_id), AUTH_OK);
	assert_string_equal(user_id, "alice");
	auth_keys_free(keys);
}

static void verify_hs384_ok(void **state)
{
	struct auth_keys *keys = load_all();
	char user_id[AUTH_USER_ID_MAX + 1];

	(void)state;
	assert_int_equal(check(keys, "{\"alg\":\"HS384\"}", VALID,
		hmac_signer(EVP_sha384, SECRET_48), user_id), AUTH_OK);
	assert_string_equal(user_id, "alice");
	auth_keys_free(keys);
}

static void verify_hs512_ok(void **state)
{
	struct auth_keys *keys = load_all();
	char user_id[AUTH_USER_ID_MAX + 1];

	(void)state;
	assert_int_equal(check(keys, "{\"alg\":\"HS512\"}", VALID,
		hmac_signer(EVP_sha512, SECRET_64), user_id), AUTH_OK);
	assert_string_equal(user_id, "alice");
	auth_keys_free(keys);
}

static void verify_rs256_ok(void **state)
{
	struct auth_keys *keys = load_all();
	char user_id[AUTH_USER_ID_MAX + 1];

	(void)state;
	assert_int_equal(check(keys, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}", VALID,
		pkey_signer(SIGN_RSA, fx.rsa_a), user_id), AUTH_OK);
	assert_string_equal(user_id, "alice");
	auth_keys_free(keys);
}

static void verify_es256_ok(void **state)
{
	struct auth_keys *keys = load_all();
	char user_id[AUTH_USER_ID_MAX + 1];

	(void)state;
	assert_int_equal(check(keys, "{\"alg\":\"ES256\"}", VALID,
		pkey_signer(SIGN_EC, fx.ec_a), user_id), AUTH_OK);
	assert_string_equal(user_id, "alice");
	auth_keys_free(keys);
}

static void verify_wrong_key(void **state)
{
	struct auth_keys *keys = load_all();
	char user_id[AUTH_USER_ID_MAX + 1];

	(void)state;
	assert_int_equal(check(keys, "{\"alg\":\"HS256\"}", VALID,
		hmac_signer(EVP_sha256, SECRET_32B), user_id), AUTH_INVALID);
	assert_string_equal(user_id, "");
	assert_int_equal(check(keys, "{\"alg\":\"RS256\"}", VALID,
		pkey_signer(SIGN_RSA, fx.rsa_b), user_id), AUTH_INVALID);
	assert_int_equal(check(keys, "{\"alg\":\"ES256\"}", VALID,
		pkey_signer(SIGN_EC, fx.ec_b), user_id), AUTH_INVALID);
	/* The 32-byte secret serves HS256 only, so it cannot verify an HS512 token. */
	assert_int_equal(check(keys, "{\"alg\":\"HS512\"}", VALID,
		hmac_signer(EVP_sha512, SECRET_32), user_id), AUTH_INVALID);
	/* An RS256 header over an ES256 signature, and the reverse. */
	assert_int_equal(check(keys, "{\"alg\":\"RS256\"}", VALID,
		pkey_signer(SIGN_EC, fx.ec_a), user_id), AUTH_INVALID);
	assert_int_equal(check(keys, "{\"alg\":\"ES256\"}", VALID,
		pkey_signer(SIGN_RSA, fx.rsa_a), user_id), AUTH_INVALID);
	auth_keys_free(keys);
}

static void verify_alg_none(void **state)
{
	struct auth_keys *keys = load_all();
	struct signer nothing = { SIGN_NOTHING, NULL, NULL, 0, NULL };
	char user_id[AUTH_USER_ID_MAX + 1];

	(void)state;
	assert_int_equal(check(keys, "{\"alg\":\"none\"}", VALID, nothing, user_id),
		AUTH_INVALID);
	assert_int_equal(check(keys, "{\"alg\":\"none\"}", VALID,
		hmac_signer(EVP_sha256, SECRET_32), user_id), AUTH_INVALID);
	assert_int_equal(check(keys, "{\"alg\":\"None\"}", VALID,
		hmac_signer(EVP_sha256, SECRET_32), user_id), AUTH_INVALID);
	assert_int_equal(check(keys, "{\"typ\":\"JWT\"}", VALID,
		hmac_signer(EVP_sha256, SECRET_32), user_id), AUTH_INVALID);
	assert_int_equal(check(keys, "{\"alg\":256}", VALID,
		hmac_signer(EVP_sha256, SECRET_32), user_id), AUTH_INVALID);
	/* A valid HS256 token with its signature part removed. */
	assert_int_equal(check(keys, "{\"alg\":\"HS256\"}", VALID, nothing, user_id),
		AUTH_INVALID);
	auth_keys_free(keys);
}

/* Verifies the token with its signature part replaced by the base64url of len bytes of mac. */
static enum auth_result verify_with_signature(const struct auth_keys *keys, const char *token,
	const unsigned char *mac, size_t len)
{
	const char *last_dot = strrchr(token, '.');
	char *part = base64url(mac, len);
	size_t input_len = (size_t)(last_dot - token);
	char *changed = malloc(input_len + strlen(part) + 2);
	char user_id[AUTH_USER_ID_MAX + 1];
	enum auth_result result;

	assert_non_null(changed);
	memcpy(changed, token, input_len);
	sprintf(changed + input_len, ".%s", part);
	result = verify_token(keys, changed, user_id);
	free(part);
	free(changed);
	return result;
}

/* An HMAC signature with bytes added or cut off does not verify, even with the right prefix. */
static void verify_hmac_signature_length(void **state)
{
	struct auth_keys *keys = load("HS256", "hs32", NULL, NULL, NULL);
	struct signer signer = hmac_signer(EVP_sha256, SECRET_32);
	char *token = make_token("{\"alg\":\"HS256\"}", VALID, &signer);
	const char *last_dot = strrchr(token, '.');
	unsigned char mac[EVP_MAX_MD_SIZE + 3];
	unsigned int mac_len = 0;
	char user_id[AUTH_USER_ID_MAX + 1];

	(void)state;
	assert_int_equal(verify_token(keys, token, user_id), AUTH_OK);
	memset(mac, 0, sizeof(mac));
	assert_non_null(HMAC(EVP_sha256(), SECRET_32, (int)strlen(SECRET_32),
		(const unsigned char *)token, (size_t)(last_dot - token), mac, &mac_len));
	assert_int_equal(mac_len, 32);

	/* The whole MAC, encoded again, still verifies. */
	assert_int_equal(verify_with_signature(keys, token, mac, 32), AUTH_OK);
	/* The MAC and three more bytes. */
	assert_int_equal(verify_with_signature(keys, token, mac, 35), AUTH_INVALID);
	/* The first 31 bytes and the first byte of the MAC, each canonically encoded. */
	assert_int_equal(verify_with_signature(keys, token, mac, 31), AUTH_INVALID);
	assert_int_equal(verify_with_signature(keys, token, mac, 1), AUTH_INVALID);
	free(token);
	auth_keys_free(keys);
}

/*
 * A token cut off after a high surrogate escape, then tokens with a \u
 * escape in sub: the cut-off parse must leave nothing behind for them, so
 * a lone low surrogate reads as it does in a fresh process.
 */
static void verify_after_cut_surrogate(void **state)
{
	static const char *const broken[] = {
		"{\"alg\":\"\\ud83d\\uZZZZ\"}",
		"{\"alg\":\"\\ud83d",
	};
	static const char lone_low[] = "{\"sub\":\"\\udc00x\",\"exp\":" LATER "}";
	struct auth_keys *keys = load_all();
	char user_id[AUTH_USER_ID_MAX + 1];
	char fresh[AUTH_USER_ID_MAX + 1];

	(void)state;
	assert_int_equal(check_hs256(keys, lone_low, fresh), AUTH_OK);
	for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++) {
		assert_int_equal(check(keys, broken[i], VALID, hmac_signer(EVP_sha256, SECRET_32),
			user_id), AUTH_INVALID);
		assert_int_equal(check_hs256(keys, VALID, user_id), AUTH_OK);
		assert_int_equal(check_hs256(keys,
			"{\"sub\":\"\\u00e9ric\",\"exp\":" LATER "}", user_id), AUTH_OK);
		assert_string_equal(user_id, "\xc3\xa9ric");

		assert_int_equal(check(keys, broken[i], VALID, hmac_signer(EVP_sha256, SECRET_32),
			user_id), AUTH_INVALID);
		assert_int_equal(check_hs256(keys, lone_low, user_id), AUTH_OK);
		assert_string_equal(user_id, fresh);
	}
	auth_keys_free(keys);
}

static void verify_alg_not_configured(void **state)
{
	struct auth_keys *keys = load("HS256", "hs64", NULL, NULL, NULL);
	char user_id[AUTH_USER_ID_MAX + 1];

	(void)state;
	assert_int_equal(check(keys, "{\"alg\":\"HS256\"}", VALID,
		hmac_signer(EVP_sha256, SECRET_64), user_id), AUTH_OK);
	assert_int_equal(check(keys, "{\"alg\":\"HS384\"}", VALID,
		hmac_signer(EVP_sha384, SECRET_64), user_id), AUTH_INVALID);
	assert_int_equal(check(keys, "{\"alg\":\"HS512\"}", VALID,
		hmac_signer(EVP_sha512, SECRET_64), user_id), AUTH_INVALID);
	assert_int_equal(check(keys, "{\"alg\":\"RS256\"}", VALID,
		pkey_signer(SIGN_RSA, fx.rsa_a), user_id), AUTH_INVALID);
	assert_int_equal(check(keys, "{\"alg\":\"hs256\"}", VALID,
		hmac_signer(EVP_sha256, SECRET_64), user_id), AUTH_INVALID);
	auth_keys_free(keys);
}

/* An HS256 token whose HMAC key is the RS256 public key's PEM text must not pass. */
static void verify_key_confusion(void **state)
{
	struct auth_keys *both = load("HS256,RS256", "hs32", "rsa_a.pem", NULL, NULL);
	struct auth_keys *rs_only = load("RS256", NULL, "rsa_a.pem", NULL, NULL);
	struct auth_keys *rs_with_kid = load("HS256,RS256", "hs32", "pk=rsa_a.pem", NULL, NULL);
	size_t pem_len = strlen(fx.rsa_a_pem);
	char *trimmed = strndup(fx.rsa_a_pem, pem_len - 1);
	char user_id[AUTH_USER_ID_MAX + 1];

	(void)state;
	assert_int_equal(check(both, "{\"alg\":\"HS256\"}", VALID,
		hmac_signer(EVP_sha256, fx.rsa_a_pem), user_id), AUTH_INVALID);
	assert_int_equal(check(both, "{\"alg\":\"HS256\"}", VALID,
		hmac_signer(EVP_sha256, trimmed), user_id), AUTH_INVALID);
	assert_int_equal(check(rs_only, "{\"alg\":\"HS256\"}", VALID,
		hmac_signer(EVP_sha256, fx.rsa_a_pem), user_id), AUTH_INVALID);
	assert_int_equal(check(rs_with_kid, "{\"alg\":\"HS256\",\"kid\":\"pk\"}", VALID,
		hmac_signer(EVP_sha256, fx.rsa_a_pem), user_id), AUTH_INVALID);
	/* The same keys accept the genuine RS256 token. */
	assert_int_equal(check(both, "{\"alg\":\"RS256\"}", VALID,
		pkey_signer(SIGN_RSA, fx.rsa_a), user_id), AUTH_OK);
	free(trimmed);
	auth_keys_free(both);
	auth_keys_free(rs_only);
	auth_keys_free(rs_with_kid);
}

static void verify_kid_hs(void **state)
{
	struct auth_keys *keys = load("HS256", "k1=hs32,k2=hs32b", NULL, NULL, NULL);
	char user_id[AUTH_USER_ID_MAX + 1];

	(void)state;
	assert_int_equal(check(keys, "{\"alg\":\"HS256\",\"kid\":\"k1\"}", VALID,
		hmac_signer(EVP_sha256, SECRET_32), user_id), AUTH_OK);
	assert_int_equal(check(keys, "{\"alg\":\"HS256\",\"kid\":\"k2\"}", VALID,
		hmac_signer(EVP_sha256, SECRET_32B), user_id), AUTH_OK);
	assert_int_equal(check(keys, "{\"alg\":\"HS256\",\"kid\":\"k2\"}", VALID,
		hmac_signer(EVP_sha256, SECRET_32), user_id), AUTH_INVALID);
	assert_int_equal(check(keys, "{\"alg\":\"HS256\",\"kid\":\"k3\"}", VALID,
		hmac_signer(EVP_sha256, SECRET_32), user_id), AUTH_INVALID);
	assert_int_equal(check(keys, "{\"alg\":\"HS256\",\"kid\":1}", VALID,
		hmac_signer(EVP_sha256, SECRET_32), user_id), AUTH_INVALID);
	/* Without kid every HS256 secret is tried. */
	assert_int_equal(check(keys, "{\"alg\":\"HS256\"}", VALID,
		hmac_signer(EVP_sha256, SECRET_32B), user_id), AUTH_OK);
	auth_keys_free(keys);
}

static void verify_kid_rsa(void **state)
{
	struct auth_keys *keys = load("HS256,RS256", "h=hs32", "r1=rsa_a.pem,r2=rsa_b.pem", NULL,
		NULL);
	char user_id[AUTH_USER_ID_MAX + 1];

	(void)state;
	assert_int_equal(check(keys, "{\"alg\":\"RS256\",\"kid\":\"r1\"}", VALID,
		pkey_signer(SIGN_RSA, fx.rsa_a), user_id), AUTH_OK);
	assert_int_equal(check(keys, "{\"alg\":\"RS256\",\"kid\":\"r2\"}", VALID,
		pkey_signer(SIGN_RSA, fx.rsa_b), user_id), AUTH_OK);
	assert_int_equal(check(keys, "{\"alg\":\"RS256\",\"kid\":\"r1\"}", VALID,
		pkey_signer(SIGN_RSA, fx.rsa_b), user_id), AUTH_INVALID);
	assert_int_equal(check(keys, "{\"alg\":\"RS256\",\"kid\":\"r3\"}", VALID,
		pkey_signer(SIGN_RSA, fx.rsa_a), user_id), AUTH_INVALID);
	/* A kid that names a key of another type. */
	assert_int_equal(check(keys, "{\"alg\":\"RS256\",\"kid\":\"h\"}", VALID,
		pkey_signer(SIGN_RSA, fx.rsa_a), user_id), AUTH_INVALID);
	assert_int_equal(check(keys, "{\"alg\":\"RS256\"}", VALID,
		pkey_signer(SIGN_RSA, fx.rsa_b), user_id), AUTH_OK);
	auth_keys_free(keys);
}

static void verify_exp(void **state)
{
	struct auth_keys *keys = load("HS256", "hs32", NULL, NULL, NULL);
	char user_id[AUTH_USER_ID_MAX + 1];

	(void)state;
	assert_int_equal(check_hs256(keys, "{\"sub\":\"a\"}", user_id), AUTH_INVALID);
	assert_int_equal(check_hs256(keys, "{\"sub\":\"a\",\"exp\":\"1700000300\"}", user_id),
		AUTH_INVALID);
	assert_int_equal(check_hs256(keys, "{\"sub\":\"a\",\"exp\":1700000300.5}", user_id),
		AUTH_INVALID);
	assert_int_equal(check_hs256(keys, "{\"sub\":\"a\",\"exp\":null}", user_id),
		AUTH_INVALID);
	/* Expired when NOW >= exp + 30. */
	assert_int_equal(check_hs256(keys, "{\"sub\":\"a\",\"exp\":1699999969}", user_id),
		AUTH_EXPIRED);
	assert_string_equal(user_id, "");
	assert_int_equal(check_hs256(keys, "{\"sub\":\"a\",\"exp\":1699999970}", user_id),
		AUTH_EXPIRED);
	assert_int_equal(check_hs256(keys, "{\"sub\":\"a\",\"exp\":1699999971}", user_id),
		AUTH_OK);
	assert_string_equal(user_id, "a");
	assert_int_equal(check_hs256(keys, "{\"sub\":\"a\",\"exp\":1699990000}", user_id),
		AUTH_EXPIRED);
	auth_keys_free(keys);
}

/* EXPIRED only for a token that is valid in every other way. */
static void verify_expired_and_invalid(void **state)
{
	struct auth_keys *keys = load("HS256", "hs32", NULL, "iss-a", NULL);
	char user_id[AUTH_USER_ID_MAX + 1];

	(void)state;
	assert_int_equal(check(keys, "{\"alg\":\"HS256\"}",
		"{\"sub\":\"a\",\"iss\":\"iss-a\",\"exp\":1699990000}",
		hmac_signer(EVP_sha256, SECRET_32B), user_id), AUTH_INVALID);
	assert_int_equal(check_hs256(keys, "{\"iss\":\"iss-a\",\"exp\":1699990000}", user_id),
		AUTH_INVALID);
	assert_int_equal(check_hs256(keys, "{\"sub\":\"a\",\"iss\":\"iss-b\",\"exp\":1699990000}",
		user_id), AUTH_INVALID);
	assert_int_equal(check_hs256(keys, "{\"sub\":\"a\",\"iss\":\"iss-a\",\"exp\":1699990000}",
		user_id), AUTH_EXPIRED);
	auth_keys_free(keys);
}

static void verify_nbf(void **state)
{
	struct auth_keys *keys = load("HS256", "hs32", NULL, NULL, NULL);
	char user_id[AUTH_USER_ID_MAX + 1];

	(void)state;
	assert_int_equal(check_hs256(keys,
		"{\"sub\":\"a\",\"exp\":" LATER ",\"nbf\":1700000031}", user_id), AUTH_INVALID);
	assert_int_equal(check_hs256(keys,
		"{\"sub\":\"a\",\"exp\":" LATER ",\"nbf\":1700000030}", user_id), AUTH_OK);
	assert_int_equal(check_hs256(keys,
		"{\"sub\":\"a\",\"exp\":" LATER ",\"nbf\":1600000000}", user_id), AUTH_OK);
	assert_int_equal(check_hs256(keys,
		"{\"sub\":\"a\",\"exp\":" LATER ",\"nbf\":\"1600000000\"}", user_id), AUTH_INVALID);
	auth_keys_free(keys);
}

static void verify_iss(void **state)
{
	struct auth_keys *keys = load("HS256", "hs32", NULL, "https://id.example", NULL);
	char user_id[AUTH_USER_ID_MAX + 1];

	(void)state;
	assert_int_equal(check_hs256(keys,
		"{\"sub\":\"a\",\"exp\":" LATER ",\"iss\":\"https://id.example\"}", user_id), AUTH_OK);
	assert_int_equal(check_hs256(keys,
		"{\"sub\":\"a\",\"exp\":" LATER ",\"iss\":\"https://id.example/\"}", user_id),
		AUTH_INVALID);
	assert_int_equal(check_hs256(keys, "{\"sub\":\"a\",\"exp\":" LATER "}", user_id),
		AUTH_INVALID);
	assert_int_equal(check_hs256(keys,
		"{\"sub\":\"a\",\"exp\":" LATER ",\"iss\":[\"https://id.example\"]}", user_id),
		AUTH_INVALID);
	auth_keys_free(keys);
}

static void verify_aud(void **state)
{
	struct auth_keys *keys = load("HS256", "hs32", NULL, NULL, "userops");
	struct auth_keys *unchecked = load("HS256", "hs32", NULL, NULL, NULL);
	char user_id[AUTH_USER_ID_MAX + 1];

	(void)state;
	assert_int_equal(check_hs256(keys,
		"{\"sub\":\"a\",\"exp\":" LATER ",\"aud\":\"userops\"}", user_id), AUTH_OK);
	assert_int_equal(check_hs256(keys,
		"{\"sub\":\"a\",\"exp\":" LATER ",\"aud\":[\"billing\",\"userops\"]}", user_id),
		AUTH_OK);
	assert_int_equal(check_hs256(keys,
		"{\"sub\":\"a\",\"exp\":" LATER ",\"aud\":[\"billing\"]}", user_id), AUTH_INVALID);
	assert_int_equal(check_hs256(keys,
		"{\"sub\":\"a\",\"exp\":" LATER ",\"aud\":\"billing\"}", user_id), AUTH_INVALID);
	assert_int_equal(check_hs256(keys,
		"{\"sub\":\"a\",\"exp\":" LATER ",\"aud\":[]}", user_id), AUTH_INVALID);
	assert_int_equal(check_hs256(keys, "{\"sub\":\"a\",\"exp\":" LATER "}", user_id),
		AUTH_INVALID);
	/* Without a configured audience, aud is not looked at. */
	assert_int_equal(check_hs256(unchecked,
		"{\"sub\":\"a\",\"exp\":" LATER ",\"aud\":\"billing\"}", user_id), AUTH_OK);
	auth_keys_free(keys);
	auth_keys_free(unchecked);
}

/* Checks one sub claim written as raw JSON; expected_id is NULL when it must be invalid. */
static void check_sub(const struct auth_keys *keys, const char *raw_sub, const char *expected_id)
{
	char payload[600];
	char user_id[AUTH_USER_ID_MAX + 1];
	enum auth_result result;

	snprintf(payload, sizeof(payload), "{\"exp\":" LATER ", \"sub\" : %s }", raw_sub);
	result = check_hs256(keys, payload, user_id);
	if (expected_id == NULL) {
		if (result != AUTH_INVALID)
			fail_msg("sub %s: result %d, expected AUTH_INVALID", raw_sub, (int)result);
		assert_string_equal(user_id, "");
		return;
	}
	if (result != AUTH_OK)
		fail_msg("sub %s: result %d, expected AUTH_OK", raw_sub, (int)result);
	assert_string_equal(user_id, expected_id);
}

static void verify_sub(void **state)
{
	struct auth_keys *keys = load("HS256", "hs32", NULL, NULL, NULL);
	char long_sub[300];
	char user_id[AUTH_USER_ID_MAX + 1];

	(void)state;
	assert_int_equal(check_hs256(keys, "{\"exp\":" LATER "}", user_id), AUTH_INVALID);
	check_sub(keys, "42", "42");
	check_sub(keys, "0", "0");
	check_sub(keys, "9223372036854775807", "9223372036854775807");
	check_sub(keys, "9223372036854775808", NULL);
	check_sub(keys, "18446744073709551616", NULL);
	check_sub(keys, "-1", NULL);
	check_sub(keys, "-0", NULL);
	check_sub(keys, "4.0", NULL);
	check_sub(keys, "4e0", NULL);
	check_sub(keys, "4E0", NULL);
	check_sub(keys, "0.5", NULL);
	check_sub(keys, "true", NULL);
	check_sub(keys, "null", NULL);
	check_sub(keys, "{\"id\":1}", NULL);
	check_sub(keys, "[\"a\"]", NULL);
	check_sub(keys, "\"\"", NULL);
	check_sub(keys, "\"a\\nb\"", NULL);
	check_sub(keys, "\"a\\u0000b\"", NULL);
	check_sub(keys, "\"a\\u0085b\"", NULL);
	check_sub(keys, "\"\\u00e9l\\u00e8ve\"", "\xc3\xa9l\xc3\xa8ve");
	check_sub(keys, "\"user 7\"", "user 7");

	/* 255 bytes pass, 256 do not. */
	memset(long_sub, 'x', sizeof(long_sub));
	long_sub[0] = '"';
	long_sub[256] = '"';
	long_sub[257] = '\0';
	memset(user_id, 'x', 255);
	user_id[255] = '\0';
	check_sub(keys, long_sub, user_id);
	long_sub[257] = '"';
	long_sub[256] = 'x';
	long_sub[258] = '\0';
	check_sub(keys, long_sub, NULL);

	/* The member name may be written with escapes; the last of a repeated name counts. */
	assert_int_equal(check_hs256(keys, "{\"exp\":" LATER ",\"s\\u0075b\":7}", user_id),
		AUTH_OK);
	assert_string_equal(user_id, "7");
	assert_int_equal(check_hs256(keys,
		"{\"sub\":\"x\",\"nested\":{\"sub\":8},\"exp\":" LATER ",\"sub\":9}", user_id),
		AUTH_OK);
	assert_string_equal(user_id, "9");
	auth_keys_free(keys);
}

static void verify_header_missing(void **state)
{
	static const char *const headers[] = {
		"", "Basic abc", "Bearer", "Bearer   ", "Bearer \t ", "Bearerabc", "Bearer\tabc",
		"Token abc", " Bearer abc",
	};
	struct auth_keys *keys = load("HS256", "hs32", NULL, NULL, NULL);
	char user_id[AUTH_USER_ID_MAX + 1];
	size_t i;

	(void)state;
	assert_int_equal(auth_verify(keys, NULL, NOW, user_id), AUTH_MISSING);
	for (i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
		if (auth_verify(keys, headers[i], NOW, user_id) != AUTH_MISSING)
			fail_msg("header \"%s\" is not AUTH_MISSING", headers[i]);
	}
	auth_keys_free(keys);
}

static void verify_header_scheme_case(void **state)
{
	struct auth_keys *keys = load("HS256", "hs32", NULL, NULL, NULL);
	struct signer signer = hmac_signer(EVP_sha256, SECRET_32);
	char *token = make_token("{\"alg\":\"HS256\"}", VALID, &signer);
	char header[1024];
	char user_id[AUTH_USER_ID_MAX + 1];

	(void)state;
	snprintf(header, sizeof(header), "bearer %s", token);
	assert_int_equal(auth_verify(keys, header, NOW, user_id), AUTH_OK);
	assert_string_equal(user_id, "alice");
	snprintf(header, sizeof(header), "BEARER    %s  ", token);
	assert_int_equal(auth_verify(keys, header, NOW, user_id), AUTH_OK);
	snprintf(header, sizeof(header), "Bearer %s x", token);
	assert_int_equal(auth_verify(keys, header, NOW, user_id), AUTH_INVALID);
	free(token);
	auth_keys_free(keys);
}

static void verify_malformed(void **state)
{
	static const char *const tokens[] = {
		"a.b", "...", "..", "a..c", "abc", "a.b.c.d", "!!!.???.***",
		/* {"alg":"HS256"} . {} . a short signature, with padding */
		"eyJhbGciOiJIUzI1NiJ9.e30=.AAAA",
		/* a header of "[1]" */
		"WzFd.e30.AAAA",
		/* a header that is not JSON: "alg" */
		"YWxn.e30.AAAA",
		/* a header with text after the object: {"alg":"HS256"}x */
		"eyJhbGciOiJIUzI1NiJ9eA.e30.AAAA",
	};
	struct auth_keys *keys = load("HS256", "hs32", NULL, NULL, NULL);
	struct signer signer = hmac_signer(EVP_sha256, SECRET_32);
	char user_id[AUTH_USER_ID_MAX + 1];
	char *long_token;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(tokens) / sizeof(tokens[0]); i++) {
		if (verify_token(keys, tokens[i], user_id) != AUTH_INVALID)
			fail_msg("token \"%s\" is not AUTH_INVALID", tokens[i]);
	}

	/* Signed, but the payload is not one JSON object. */
	assert_int_equal(check(keys, "{\"alg\":\"HS256\"}", "[1]", signer, user_id),
		AUTH_INVALID);
	assert_int_equal(check(keys, "{\"alg\":\"HS256\"}", "{\"sub\":\"a\"", signer, user_id),
		AUTH_INVALID);
	assert_int_equal(check(keys, "{\"alg\":\"HS256\"}", "{'sub':'a','exp':1700000300}", signer,
		user_id), AUTH_INVALID);
	assert_int_equal(check(keys, "{\"alg\":\"HS256\",\"crit\":[\"b64\"]}", VALID, signer,
		user_id), AUTH_INVALID);

	/* A well-signed token longer than 8192 bytes. */
	long_token = malloc(9000);
	assert_non_null(long_token);
	snprintf(long_token, 9000, "{\"sub\":\"a\",\"exp\":" LATER ",\"pad\":\"%07000d\"}", 0);
	assert_int_equal(check(keys, "{\"alg\":\"HS256\"}", long_token, signer, user_id),
		AUTH_INVALID);
	free(long_token);
	auth_keys_free(keys);
}

/* Expects auth_keys_load to fail with a message that contains needle. */
static void expect_load_error(const char *algorithms, const char *hs, const char *pub,
	const char *needle)
{
	struct auth_keys *keys = NULL;
	char err[512] = "";

	assert_int_equal(try_load(algorithms, hs, pub, NULL, NULL, &keys, err, sizeof(err)), -1);
	assert_null(keys);
	if (strstr(err, needle) == NULL)
		fail_msg("error \"%s\" does not contain \"%s\"", err, needle);
}

static void write_extra_keys(void)
{
	EVP_PKEY *small = EVP_RSA_gen(1024);
	EVP_PKEY *p384 = EVP_EC_gen("P-384");
	EVP_PKEY *ed25519 = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");

	assert_non_null(small);
	assert_non_null(p384);
	assert_non_null(ed25519);
	write_public_key("rsa_small.pem", small);
	write_public_key("ec_p384.pem", p384);
	write_public_key("ed25519.pem", ed25519);
	write_file("garbage.pem", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n");
	EVP_PKEY_free(small);
	EVP_PKEY_free(p384);
	EVP_PKEY_free(ed25519);
}

static void load_errors(void **state)
{
	(void)state;
	write_extra_keys();
	expect_load_error("HS256", "hs31", NULL, path_of("hs31"));
	expect_load_error("HS256", "hs31", NULL, "too short");
	expect_load_error("HS384", "hs32", NULL, path_of("hs32"));
	expect_load_error("HS512", "hs48", NULL, path_of("hs48"));
	expect_load_error("HS256,HS512", "hs64,hs31", NULL, path_of("hs31"));
	expect_load_error("HS256", "missing", NULL, path_of("missing"));
	expect_load_error("HS256", NULL, NULL, "hs_secret_file");
	expect_load_error("HS257", "hs32", NULL, "HS257");
	expect_load_error("HS256,", "hs32", NULL, "unknown JWT algorithm");
	expect_load_error("none", "hs32", NULL, "unknown JWT algorithm");
	expect_load_error("RS256", NULL, NULL, "RS256");
	expect_load_error("ES256", NULL, "rsa_a.pem", path_of("rsa_a.pem"));
	expect_load_error("RS256", NULL, "ec_a.pem", path_of("ec_a.pem"));
	expect_load_error("HS256,ES256", "hs32", NULL, "ES256");
	expect_load_error("RS256", "hs32", "rsa_a.pem", path_of("hs32"));
	expect_load_error("ES256", NULL, "ec_p384.pem", "P-256");
	expect_load_error("RS256", NULL, "rsa_small.pem", "1024 bits");
	expect_load_error("RS256,ES256", NULL, "ed25519.pem,ec_a.pem", path_of("ed25519.pem"));
	expect_load_error("RS256", NULL, "garbage.pem", path_of("garbage.pem"));
	expect_load_error("RS256", NULL, "hs32", path_of("hs32"));
	expect_load_error("RS256", NULL, "nothing.pem", path_of("nothing.pem"));
	expect_load_error("HS256", "k=hs32,k=hs32b", NULL, "\"k\"");
	expect_load_error("HS256,RS256", "k=hs32", "k=rsa_a.pem", "\"k\"");
	expect_load_error("HS256", "hs32,,hs32b", NULL, "empty item");
	expect_load_error("HS256", "=hs32", NULL, "key id");
}

static void load_options(void **state)
{
	struct auth_keys *keys = NULL;
	struct config_jwt cfg;
	char err[512] = "";
	char user_id[AUTH_USER_ID_MAX + 1];

	(void)state;
	/* White space around the secret is not part of it. */
	keys = load("HS256", "hs32_spaces", NULL, NULL, NULL);
	assert_int_equal(check_hs256(keys, VALID, user_id), AUTH_OK);
	auth_keys_free(keys);

	/* A relative path is taken under $CREDENTIALS_DIRECTORY, and algorithms defaults to HS256. */
	assert_int_equal(setenv("CREDENTIALS_DIRECTORY", fx.dir, 1), 0);
	memset(&cfg, 0, sizeof(cfg));
	cfg.hs_secret_file = "hs32";
	cfg.public_key_file = "";
	cfg.leeway = 30;
	assert_int_equal(auth_keys_load(&cfg, &keys, err, sizeof(err)), 0);
	assert_int_equal(check_hs256(keys, VALID, user_id), AUTH_OK);
	auth_keys_free(keys);
	assert_int_equal(unsetenv("CREDENTIALS_DIRECTORY"), 0);

	/* The leeway is a setting: with 0, a token expires at exp itself. */
	cfg.hs_secret_file = (char *)path_of("hs32");
	cfg.leeway = 0;
	assert_int_equal(auth_keys_load(&cfg, &keys, err, sizeof(err)), 0);
	assert_int_equal(check_hs256(keys, "{\"sub\":\"a\",\"exp\":1700000000}", user_id),
		AUTH_EXPIRED);
	assert_int_equal(check_hs256(keys, "{\"sub\":\"a\",\"exp\":1700000001}", user_id),
		AUTH_OK);
	auth_keys_free(keys);
	cfg.leeway = -1;
	assert_int_equal(auth_keys_load(&cfg, &keys, err, sizeof(err)), -1);
	assert_null(keys);
	cfg.leeway = 86401;
	assert_int_equal(auth_keys_load(&cfg, &keys, err, sizeof(err)), -1);
	assert_null(keys);

	/* HS512 without a 64-byte secret loads, because HS256 has one, but verifies nothing. */
	keys = load("HS256,HS512", "hs32", NULL, NULL, NULL);
	assert_int_equal(check_hs256(keys, VALID, user_id), AUTH_OK);
	assert_int_equal(check(keys, "{\"alg\":\"HS512\"}", VALID,
		hmac_signer(EVP_sha512, SECRET_32), user_id), AUTH_INVALID);
	auth_keys_free(keys);
}

static void issue_token_verifies(void **state)
{
	struct auth_keys *keys = load("HS256,RS256", "k1=hs32,k2=hs32b", "rsa_a.pem", "iss-a",
		"userops");
	char user_id[AUTH_USER_ID_MAX + 1];
	char *token = auth_issue_token(keys, "user-17", NOW, 600);
	char header[1024];
	jwt_t *jwt = NULL;

	(void)state;
	assert_non_null(token);
	snprintf(header, sizeof(header), "Bearer %s", token);
	assert_int_equal(auth_verify(keys, header, NOW, user_id), AUTH_OK);
	assert_string_equal(user_id, "user-17");
	assert_int_equal(auth_verify(keys, header, NOW + 629, user_id), AUTH_OK);
	assert_int_equal(auth_verify(keys, header, NOW + 630, user_id), AUTH_EXPIRED);

	/* The first secret signs, and its kid is in the header. */
	assert_int_equal(jwt_decode(&jwt, token, (const unsigned char *)SECRET_32,
		(int)strlen(SECRET_32)), 0);
	assert_int_equal(jwt_get_alg(jwt), JWT_ALG_HS256);
	assert_string_equal(jwt_get_header(jwt, "kid"), "k1");
	assert_string_equal(jwt_get_grant(jwt, "sub"), "user-17");
	assert_string_equal(jwt_get_grant(jwt, "iss"), "iss-a");
	assert_string_equal(jwt_get_grant(jwt, "aud"), "userops");
	assert_int_equal(jwt_get_grant_int(jwt, "iat"), NOW);
	assert_int_equal(jwt_get_grant_int(jwt, "exp"), NOW + 600);
	jwt_free(jwt);
	free(token);

	assert_null(auth_issue_token(keys, "", NOW, 600));
	assert_null(auth_issue_token(keys, "a\nb", NOW, 600));
	assert_null(auth_issue_token(keys, "a", NOW, 0));
	auth_keys_free(keys);
}

static void issue_token_needs_hs256(void **state)
{
	struct auth_keys *rs_only = load("RS256", NULL, "rsa_a.pem", NULL, NULL);
	struct auth_keys *hs512_only = load("HS512", "hs64", NULL, NULL, NULL);
	struct auth_keys *plain = load("HS256,HS512", "hs64", NULL, NULL, NULL);
	char user_id[AUTH_USER_ID_MAX + 1];
	char header[1024];
	char *token;

	(void)state;
	assert_null(auth_issue_token(rs_only, "a", NOW, 600));
	assert_null(auth_issue_token(hs512_only, "a", NOW, 600));

	/* A key without kid gives a token without kid, and no iss or aud when none is set. */
	token = auth_issue_token(plain, "42", NOW, 60);
	assert_non_null(token);
	snprintf(header, sizeof(header), "Bearer %s", token);
	assert_int_equal(auth_verify(plain, header, NOW, user_id), AUTH_OK);
	assert_string_equal(user_id, "42");
	assert_int_equal(auth_verify(hs512_only, header, NOW, user_id), AUTH_INVALID);
	free(token);
	auth_keys_free(rs_only);
	auth_keys_free(hs512_only);
	auth_keys_free(plain);
}

/* As check_hs256(), through auth_verify_claims(). */
static enum auth_result check_claims(const struct auth_keys *keys, const char *payload,
	struct auth_claims *claims)
{
	struct signer signer = hmac_signer(EVP_sha256, SECRET_32);
	char *token = make_token("{\"alg\":\"HS256\"}", payload, &signer);
	char *header = malloc(strlen(token) + 8);
	enum auth_result result;

	assert_non_null(header);
	sprintf(header, "Bearer %s", token);
	result = auth_verify_claims(keys, header, NOW, claims);
	free(header);
	free(token);
	return result;
}

/* Expects a token whose payload ends with the scope member text to verify with scope. */
static void expect_scope(const struct auth_keys *keys, const char *scope_json,
	const char *expected)
{
	struct auth_claims claims;
	char payload[4096];

	snprintf(payload, sizeof(payload), "{\"sub\":\"billing\",\"exp\":" LATER "%s}", scope_json);
	assert_int_equal(check_claims(keys, payload, &claims), AUTH_OK);
	assert_string_equal(claims.subject, "billing");
	assert_string_equal(claims.scope, expected);
}

/* Expects a token with that scope member to be invalid, with empty claims. */
static void expect_scope_invalid(const struct auth_keys *keys, const char *scope_json)
{
	struct auth_claims claims;
	char payload[4096];

	snprintf(payload, sizeof(payload), "{\"sub\":\"billing\",\"exp\":" LATER "%s}", scope_json);
	assert_int_equal(check_claims(keys, payload, &claims), AUTH_INVALID);
	assert_string_equal(claims.subject, "");
	assert_string_equal(claims.scope, "");
}

static void scope_string(void **state)
{
	struct auth_keys *keys = load("HS256", "hs32", NULL, NULL, NULL);

	(void)state;
	expect_scope(keys, ",\"scope\":\"operations:read\"", "operations:read");
	expect_scope(keys, ",\"scope\":\"  operations:read    operations:write \"",
		"operations:read operations:write");
	expect_scope(keys, ",\"scope\":\"\"", "");
	expect_scope(keys, ",\"scope\":\"   \"", "");
	/* json-c keeps the last of a repeated member, and so does the scope read here. */
	expect_scope(keys, ",\"scope\":\"a\",\"scope\":\"b\"", "b");
	auth_keys_free(keys);
}

static void scope_array(void **state)
{
	struct auth_keys *keys = load("HS256", "hs32", NULL, NULL, NULL);

	(void)state;
	expect_scope(keys, ",\"scope\":[\"operations:read\",\"operations:write\"]",
		"operations:read operations:write");
	expect_scope(keys, ",\"scope\":[\"operations:write\"]", "operations:write");
	expect_scope(keys, ",\"scope\":[]", "");
	auth_keys_free(keys);
}

static void scope_absent(void **state)
{
	struct auth_keys *keys = load("HS256", "hs32", NULL, NULL, NULL);

	(void)state;
	expect_scope(keys, "", "");
	auth_keys_free(keys);
}

static void scope_wrong_type(void **state)
{
	struct auth_keys *keys = load("HS256", "hs32", NULL, NULL, NULL);

	(void)state;
	expect_scope_invalid(keys, ",\"scope\":5");
	expect_scope_invalid(keys, ",\"scope\":{\"operations:read\":true}");
	expect_scope_invalid(keys, ",\"scope\":[\"operations:read\",5]");
	expect_scope_invalid(keys, ",\"scope\":[[\"operations:read\"]]");
	expect_scope_invalid(keys, ",\"scope\":null");
	expect_scope_invalid(keys, ",\"scope\":true");
	auth_keys_free(keys);
}

static void scope_bad_item(void **state)
{
	struct auth_keys *keys = load("HS256", "hs32", NULL, NULL, NULL);

	(void)state;
	expect_scope_invalid(keys, ",\"scope\":\"operations:read\\toperations:write\"");
	expect_scope_invalid(keys, ",\"scope\":[\"operations:read\\t\"]");
	expect_scope_invalid(keys, ",\"scope\":\"operations:read\\noperations:write\"");
	expect_scope_invalid(keys, ",\"scope\":\"operations:read\\u0000\"");
	expect_scope_invalid(keys, ",\"scope\":\"operations:read\\u0085\"");
	/* An array item is one scope, so it may hold no space and may not be empty. */
	expect_scope_invalid(keys, ",\"scope\":[\"operations:read operations:write\"]");
	expect_scope_invalid(keys, ",\"scope\":[\"operations:read\",\"\"]");
	auth_keys_free(keys);
}

static void scope_too_long(void **state)
{
	struct auth_keys *keys = load("HS256", "hs32", NULL, NULL, NULL);
	struct auth_claims claims;
	char longest[sizeof(claims.scope)];
	char member[sizeof(claims.scope) + 64];

	(void)state;
	memset(longest, 'a', sizeof(longest) - 1);
	longest[sizeof(longest) - 1] = '\0';
	snprintf(member, sizeof(member), ",\"scope\":\"%s\"", longest);
	expect_scope(keys, member, longest);
	snprintf(member, sizeof(member), ",\"scope\":\"%sb\"", longest);
	expect_scope_invalid(keys, member);

	/* Two items of 511 bytes and the space between them fill 1023 bytes; one more is too many. */
	memset(longest, 'a', 511);
	longest[511] = ' ';
	memset(longest + 512, 'b', 511);
	longest[1023] = '\0';
	snprintf(member, sizeof(member), ",\"scope\":[\"%.511s\",\"%s\"]", longest,
		longest + 512);
	expect_scope(keys, member, longest);
	snprintf(member, sizeof(member), ",\"scope\":[\"%.511s\",\"%sb\"]", longest,
		longest + 512);
	expect_scope_invalid(keys, member);
	auth_keys_free(keys);
}

static void scope_has_item(void **state)
{
	struct auth_claims claims;

	(void)state;
	memset(&claims, 0, sizeof(claims));
	snprintf(claims.scope, sizeof(claims.scope), "operations:readonly");
	assert_false(auth_scope_has(&claims, "operations:read"));
	assert_true(auth_scope_has(&claims, "operations:readonly"));

	snprintf(claims.scope, sizeof(claims.scope), "profile operations:write operations:read");
	assert_true(auth_scope_has(&claims, "operations:write"));
	assert_true(auth_scope_has(&claims, "operations:read"));
	assert_true(auth_scope_has(&claims, "profile"));
	assert_false(auth_scope_has(&claims, "operations"));
	assert_false(auth_scope_has(&claims, "operations:writ"));
	assert_false(auth_scope_has(&claims, "write"));
	assert_false(auth_scope_has(&claims, "operations:write operations:read"));
	assert_false(auth_scope_has(&claims, ""));

	claims.scope[0] = '\0';
	assert_false(auth_scope_has(&claims, "operations:read"));
	assert_false(auth_scope_has(&claims, ""));
}

/* A bad scope and an expired exp: invalid, because expired means otherwise valid. */
static void scope_expired_and_invalid(void **state)
{
	struct auth_keys *keys = load("HS256", "hs32", NULL, NULL, NULL);
	struct auth_claims claims;
	char user_id[AUTH_USER_ID_MAX + 1];

	(void)state;
	assert_int_equal(check_claims(keys, "{\"sub\":\"a\",\"exp\":1600000000,\"scope\":5}",
		&claims), AUTH_INVALID);
	assert_int_equal(check_claims(keys,
		"{\"sub\":\"a\",\"exp\":1600000000,\"scope\":\"operations:read\"}", &claims),
		AUTH_EXPIRED);
	assert_string_equal(claims.scope, "");
	/* auth_verify() does not read the scope claim, so a user's token may carry any. */
	assert_int_equal(check_hs256(keys, "{\"sub\":\"a\",\"exp\":" LATER ",\"scope\":5}",
		user_id), AUTH_OK);
	assert_string_equal(user_id, "a");
	auth_keys_free(keys);
}

static void exclude_audience(void **state)
{
	struct auth_keys *keys = load("HS256", "hs32", NULL, NULL, "userops");
	char user_id[AUTH_USER_ID_MAX + 1];

	(void)state;
	assert_int_equal(auth_keys_exclude_audience(keys, "userops-internal"), 0);
	assert_int_equal(check_hs256(keys,
		"{\"sub\":\"a\",\"exp\":" LATER ",\"aud\":\"userops-internal\"}", user_id),
		AUTH_INVALID);
	assert_string_equal(user_id, "");
	assert_int_equal(check_hs256(keys,
		"{\"sub\":\"a\",\"exp\":" LATER ",\"aud\":[\"userops\",\"userops-internal\"]}",
		user_id), AUTH_INVALID);
	assert_int_equal(check_hs256(keys,
		"{\"sub\":\"a\",\"exp\":1600000000,\"aud\":[\"userops\",\"userops-internal\"]}",
		user_id), AUTH_INVALID);

	/* Other audiences pass, and an expired token with them is expired. */
	assert_int_equal(check_hs256(keys,
		"{\"sub\":\"a\",\"exp\":" LATER ",\"aud\":\"userops\"}", user_id), AUTH_OK);
	assert_string_equal(user_id, "a");
	assert_int_equal(check_hs256(keys,
		"{\"sub\":\"a\",\"exp\":" LATER ",\"aud\":[\"other\",\"userops\"]}", user_id),
		AUTH_OK);
	assert_int_equal(check_hs256(keys,
		"{\"sub\":\"a\",\"exp\":1600000000,\"aud\":\"userops\"}", user_id), AUTH_EXPIRED);

	/* NULL turns the exclusion off again. */
	assert_int_equal(auth_keys_exclude_audience(keys, NULL), 0);
	assert_int_equal(check_hs256(keys,
		"{\"sub\":\"a\",\"exp\":" LATER ",\"aud\":[\"userops\",\"userops-internal\"]}",
		user_id), AUTH_OK);
	auth_keys_free(keys);
}

/* Without a configured audience, only a token naming the excluded one fails. */
static void exclude_audience_alone(void **state)
{
	struct auth_keys *keys = load("HS256", "hs32", NULL, NULL, NULL);
	char user_id[AUTH_USER_ID_MAX + 1];

	(void)state;
	assert_int_equal(auth_keys_exclude_audience(keys, "userops-internal"), 0);
	assert_int_equal(check_hs256(keys, VALID, user_id), AUTH_OK);
	assert_int_equal(check_hs256(keys,
		"{\"sub\":\"a\",\"exp\":" LATER ",\"aud\":\"userops-internal\"}", user_id),
		AUTH_INVALID);
	assert_int_equal(check_hs256(keys,
		"{\"sub\":\"a\",\"exp\":" LATER ",\"aud\":\"userops-internal2\"}", user_id),
		AUTH_OK);
	/* An empty audience turns it off. */
	assert_int_equal(auth_keys_exclude_audience(keys, ""), 0);
	assert_int_equal(check_hs256(keys,
		"{\"sub\":\"a\",\"exp\":" LATER ",\"aud\":\"userops-internal\"}", user_id),
		AUTH_OK);
	auth_keys_free(keys);
}

/* Verifies "Bearer TOKEN" at time now with auth_verify_claims(). */
static enum auth_result verify_claims_at(const struct auth_keys *keys, const char *token,
	int64_t now, struct auth_claims *claims)
{
	char header[2048];

	snprintf(header, sizeof(header), "Bearer %s", token);
	return auth_verify_claims(keys, header, now, claims);
}

static void user_token_on_service_keys(void **state)
{
	struct auth_keys *user_keys = load("HS256", "hs32", NULL, NULL, "userops");
	struct auth_keys *service_keys = load("HS256", "hs32b", NULL, NULL, "userops-internal");
	struct auth_keys *shared_keys = load("HS256", "hs32", NULL, NULL, "userops-internal");
	struct auth_claims claims;
	char *token = auth_issue_token(user_keys, "alice", NOW, 600);

	(void)state;
	assert_non_null(token);
	/* Another secret, and with the same secret the audience differs. */
	assert_int_equal(verify_claims_at(service_keys, token, NOW, &claims), AUTH_INVALID);
	assert_string_equal(claims.subject, "");
	assert_int_equal(verify_claims_at(shared_keys, token, NOW, &claims), AUTH_INVALID);
	assert_int_equal(verify_claims_at(user_keys, token, NOW, &claims), AUTH_OK);
	assert_string_equal(claims.subject, "alice");
	assert_string_equal(claims.scope, "");
	free(token);
	auth_keys_free(user_keys);
	auth_keys_free(service_keys);
	auth_keys_free(shared_keys);
}

static void service_token_round_trip(void **state)
{
	struct auth_keys *keys = load("HS256", "k1=hs32b,k2=hs32", NULL, "iss-s",
		"userops-internal");
	struct auth_keys *user_keys = load("HS256", "k1=hs32b", NULL, NULL, NULL);
	struct auth_claims claims;
	char *token = auth_issue_service_token(keys, "billing",
		" operations:write  operations:read", NOW, 300);
	jwt_t *jwt = NULL;

	(void)state;
	assert_non_null(token);
	assert_int_equal(verify_claims_at(keys, token, NOW, &claims), AUTH_OK);
	assert_string_equal(claims.subject, "billing");
	assert_string_equal(claims.scope, "operations:write operations:read");
	assert_true(auth_scope_has(&claims, "operations:write"));
	assert_true(auth_scope_has(&claims, "operations:read"));
	assert_int_equal(verify_claims_at(keys, token, NOW + 329, &claims), AUTH_OK);
	assert_int_equal(verify_claims_at(keys, token, NOW + 330, &claims), AUTH_EXPIRED);

	/* The user keys share the first secret and its kid, and only the exclusion rejects it. */
	assert_int_equal(verify_claims_at(user_keys, token, NOW, &claims), AUTH_OK);
	assert_int_equal(auth_keys_exclude_audience(user_keys, "userops-internal"), 0);
	assert_int_equal(verify_claims_at(user_keys, token, NOW, &claims), AUTH_INVALID);

	assert_int_equal(jwt_decode(&jwt, token, (const unsigned char *)SECRET_32B,
		(int)strlen(SECRET_32B)), 0);
	assert_int_equal(jwt_get_alg(jwt), JWT_ALG_HS256);
	assert_string_equal(jwt_get_header(jwt, "kid"), "k1");
	assert_string_equal(jwt_get_grant(jwt, "sub"), "billing");
	assert_string_equal(jwt_get_grant(jwt, "scope"), "operations:write operations:read");
	assert_string_equal(jwt_get_grant(jwt, "iss"), "iss-s");
	assert_string_equal(jwt_get_grant(jwt, "aud"), "userops-internal");
	assert_int_equal(jwt_get_grant_int(jwt, "iat"), NOW);
	assert_int_equal(jwt_get_grant_int(jwt, "exp"), NOW + 300);
	jwt_free(jwt);
	free(token);
	auth_keys_free(user_keys);
	auth_keys_free(keys);
}

static void service_token_scope_optional(void **state)
{
	struct auth_keys *keys = load("HS256", "hs32", NULL, NULL, "userops-internal");
	struct auth_claims claims;
	char *token = auth_issue_service_token(keys, "billing", NULL, NOW, 300);
	jwt_t *jwt = NULL;

	(void)state;
	assert_non_null(token);
	assert_int_equal(verify_claims_at(keys, token, NOW, &claims), AUTH_OK);
	assert_string_equal(claims.scope, "");
	assert_int_equal(jwt_decode(&jwt, token, (const unsigned char *)SECRET_32,
		(int)strlen(SECRET_32)), 0);
	assert_null(jwt_get_grant(jwt, "scope"));
	jwt_free(jwt);
	free(token);

	/* A scope that a verifier would reject is never signed. */
	assert_null(auth_issue_service_token(keys, "billing", "operations:read\tx", NOW, 300));
	assert_null(auth_issue_service_token(keys, "", "operations:read", NOW, 300));
	assert_null(auth_issue_service_token(keys, "billing", "operations:read", NOW, 0));
	auth_keys_free(keys);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(verify_hs256_ok),
		cmocka_unit_test(verify_hs384_ok),
		cmocka_unit_test(verify_hs512_ok),
		cmocka_unit_test(verify_rs256_ok),
		cmocka_unit_test(verify_es256_ok),
		cmocka_unit_test(verify_wrong_key),
		cmocka_unit_test(verify_alg_none),
		cmocka_unit_test(verify_hmac_signature_length),
		cmocka_unit_test(verify_after_cut_surrogate),
		cmocka_unit_test(verify_alg_not_configured),
		cmocka_unit_test(verify_key_confusion),
		cmocka_unit_test(verify_kid_hs),
		cmocka_unit_test(verify_kid_rsa),
		cmocka_unit_test(verify_exp),
		cmocka_unit_test(verify_expired_and_invalid),
		cmocka_unit_test(verify_nbf),
		cmocka_unit_test(verify_iss),
		cmocka_unit_test(verify_aud),
		cmocka_unit_test(verify_sub),
		cmocka_unit_test(verify_header_missing),
		cmocka_unit_test(verify_header_scheme_case),
		cmocka_unit_test(verify_malformed),
		cmocka_unit_test(load_errors),
		cmocka_unit_test(load_options),
		cmocka_unit_test(issue_token_verifies),
		cmocka_unit_test(issue_token_needs_hs256),
		cmocka_unit_test(scope_string),
		cmocka_unit_test(scope_array),
		cmocka_unit_test(scope_absent),
		cmocka_unit_test(scope_wrong_type),
		cmocka_unit_test(scope_bad_item),
		cmocka_unit_test(scope_too_long),
		cmocka_unit_test(scope_has_item),
		cmocka_unit_test(scope_expired_and_invalid),
		cmocka_unit_test(exclude_audience),
		cmocka_unit_test(exclude_audience_alone),
		cmocka_unit_test(user_token_on_service_keys),
		cmocka_unit_test(service_token_round_trip),
		cmocka_unit_test(service_token_scope_optional),
	};

	return cmocka_run_group_tests(tests, fixture_setup, fixture_teardown);
}
