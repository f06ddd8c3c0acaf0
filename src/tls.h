/* TLS for the connection to the mail relay: one verifying client context per mailer. */
#ifndef USEROPS_TLS_H
#define USEROPS_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

struct tls_client;

/*
 * Creates a TLS 1.2 or later client context that verifies the relay's
 * certificate chain against ca_file (NULL or empty: the system store) and
 * the certificate's name against host: a DNS name, or an IP address when
 * host is one. Every connection made from it sends host as SNI unless host
 * is an IP address. With tls12_only, TLS 1.3 is not offered. Returns NULL
 * with a message in err.
 */
struct tls_client *tls_client_new(const char *host, const char *ca_file, bool tls12_only,
	char *err, size_t err_size);

void tls_client_free(struct tls_client *client);

/* The OpenSSL context, for libesmtp's STARTTLS and for implicit TLS. */
SSL_CTX *tls_client_context(const struct tls_client *client);

/* Forgets the reason of the last failed certificate check. */
void tls_client_reset_failure(struct tls_client *client);

/*
 * Describes why the last handshake's certificate check failed, such as
 * "certificate check failed: hostname mismatch", or returns "" when no
 * check failed since the last reset.
 */
const char *tls_client_failure(const struct tls_client *client);

/* Writes context and the newest OpenSSL error of this thread to out, and clears the error queue. */
void tls_error_text(const char *context, char *out, size_t out_size);

#endif
