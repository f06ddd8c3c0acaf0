/* TLS for the connection to the mail relay: one verifying client context per mailer. */
#include "autoconfig.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tls.h"

/* RFC 1035 §2.3.4: a domain name is at most 253 characters written out. */
#define TLS_HOST_MAX 253

struct tls_client {
	SSL_CTX *ctx;
	char host[TLS_HOST_MAX + 1];
	bool host_is_address;
	char failure[256];
};

static bool tls_is_address(const char *host)
{
	unsigned char address[16];

	return inet_pton(AF_INET, host, address) == 1 || inet_pton(AF_INET6, host, address) == 1;
}

/* Keeps the first reason a chain or name check failed, for the delivery's reply. */
static int tls_verify_callback(int preverify_ok, X509_STORE_CTX *store)
{
	SSL *ssl;
	struct tls_client *client;
	int error;

	if (preverify_ok)
		return 1;
	ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
	client = ssl != NULL ? SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)) : NULL;
	error = X509_STORE_CTX_get_error(store);
	if (client != NULL && client->failure[0] == '\0')
		snprintf(client->failure, sizeof(client->failure),
			"certificate check failed: %s (depth %d)",
			X509_verify_cert_error_string(error), X509_STORE_CTX_get_error_depth(store));
	return 0;
}

/*
 * Names the relay in SNI as each handshake starts. libesmtp creates the
 * SSL object for STARTTLS itself and sets no server name, so this is the
 * one place both kinds of connection pass through.
 */
static void tls_info_callback(const SSL *ssl, int where, int ret)
{
	struct tls_client *client;

	(void)ret;
	if ((where & SSL_CB_HANDSHAKE_START) == 0)
		return;
	client = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	if (client == NULL || client->host_is_address ||
	    SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) != NULL)
		return;
	/* The callback's SSL is const only by declaration; setting the name is allowed here. */
	SSL_set_tlsext_host_name((SSL *)ssl, client->host);
}

void tls_error_text(const char *context, char *out, size_t out_size)
{
	unsigned long error = ERR_peek_last_error();
	char text[256];

	if (error == 0) {
		snprintf(out, out_size, "%s", context);
	} else {
		ERR_error_string_n(error, text, sizeof(text));
		snprintf(out, out_size, "%s: %s", context, text);
	}
	ERR_clear_error();
}

static int tls_set_trust(SSL_CTX *ctx, const char *ca_file, char *err, size_t err_size)
{
	char reason[300];

	if (ca_file != NULL && ca_file[0] != '\0') {
		if (access(ca_file, R_OK) != 0) {
			snprintf(err, err_size, "[smtp] ca_file %s: %s", ca_file, strerror(errno));
			return -1;
		}
		if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
			tls_error_text("cannot load certificates", reason, sizeof(reason));
			snprintf(err, err_size, "[smtp] ca_file %s: %s", ca_file, reason);
			return -1;
		}
		return 0;
	}
	if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		tls_error_text("cannot load the system certificate store", reason, sizeof(reason));
		snprintf(err, err_size, "%s", reason);
		return -1;
	}
	return 0;
}

static int tls_set_name_check(struct tls_client *client, char *err, size_t err_size)
{
	X509_VERIFY_PARAM *param = SSL_CTX_get0_param(client->ctx);
	int ok;

	X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (client->host_is_address)
		ok = X509_VERIFY_PARAM_set1_ip_asc(param, client->host);
	else
		ok = X509_VERIFY_PARAM_set1_host(param, client->host, 0);
	if (ok != 1) {
		snprintf(err, err_size, "cannot check certificates for [smtp] host %s",
			client->host);
		return -1;
	}
	return 0;
}

struct tls_client *tls_client_new(const char *host, const char *ca_file, bool tls12_only,
	char *err, size_t err_size)
{
	struct tls_client *client;

	if (strlen(host) > TLS_HOST_MAX) {
		snprintf(err, err_size, "[smtp] host is longer than %d characters", TLS_HOST_MAX);
		return NULL;
	}
	client = calloc(1, sizeof(*client));
	if (client == NULL) {
		snprintf(err, err_size, "out of memory");
		return NULL;
	}
	snprintf(client->host, sizeof(client->host), "%s", host);
	client->host_is_address = tls_is_address(host);
	client->ctx = SSL_CTX_new(TLS_client_method());
	if (client->ctx == NULL) {
		tls_error_text("cannot create a TLS context", err, err_size);
		goto fail;
	}
	if (SSL_CTX_set_min_proto_version(client->ctx, TLS1_2_VERSION) != 1 ||
	    (tls12_only && SSL_CTX_set_max_proto_version(client->ctx, TLS1_2_VERSION) != 1)) {
		tls_error_text("cannot set the TLS versions", err, err_size);
		goto fail;
	}
	if (tls_set_trust(client->ctx, ca_file, err, err_size) != 0 ||
	    tls_set_name_check(client, err, err_size) != 0)
		goto fail;
	SSL_CTX_set_verify(client->ctx, SSL_VERIFY_PEER, tls_verify_callback);
	SSL_CTX_set_info_callback(client->ctx, tls_info_callback);
	SSL_CTX_set_app_data(client->ctx, client);
	/*
	 * No SSL_MODE_ENABLE_PARTIAL_WRITE here: libesmtp's write loop
	 * repeats a short SSL_write from the start of its buffer.
	 */
	return client;
fail:
	tls_client_free(client);
	return NULL;
}

void tls_client_free(struct tls_client *client)
{
	if (client == NULL)
		return;
	SSL_CTX_free(client->ctx);
	free(client);
}

SSL_CTX *tls_client_context(const struct tls_client *client)
{
	return client->ctx;
}

void tls_client_reset_failure(struct tls_client *client)
{
	client->failure[0] = '\0';
}

const char *tls_client_failure(const struct tls_client *client)
{
	return client->failure;
}
