/* The FastCGI side: accepting requests with libfcgi, reading bodies, writing responses. */
#ifndef USEROPS_TRANSPORT_H
#define USEROPS_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>

struct response;
struct FCGX_Request;

#define TRANSPORT_REQUEST_ID_MAX 64

enum transport_body_result {
	TRANSPORT_BODY_OK,
	TRANSPORT_BODY_TOO_LARGE,     /* Content-Length above the limit: 413001 */
	TRANSPORT_BODY_INVALID,       /* malformed Content-Length or short body: 400001 */
};

/* One request as the handlers see it; the strings belong to libfcgi. */
struct request {
	struct FCGX_Request *fcgi;
	const char *method;
	const char *script_name;
	const char *path_info;
	const char *authorization;
	const char *fingerprint;
	const char *content_type;
	const char *content_length;
	const char *remote_addr;
	const char *query_string;
	const char *idempotency_key;
	const char *request_id_header;  /* X-Request-Id as sent, or NULL */
	char request_id[TRANSPORT_REQUEST_ID_MAX + 1];
	char *body;        /* NUL-terminated copy, NULL until read */
	size_t body_len;
};

/* Fills req from the FastCGI parameters of an accepted request. */
void transport_request_init(struct request *req, struct FCGX_Request *fcgi);

/* Parses CONTENT_LENGTH: absent or empty is 0. Returns 0, or -1 when malformed. */
int transport_content_length(const struct request *req, size_t *length);

/*
 * Reads the body, never more than max_body bytes: a Content-Length above
 * it is refused unread. An absent or zero Content-Length is an empty body.
 */
enum transport_body_result transport_read_body(struct request *req, size_t max_body);

/* Writes the status line, the common headers, resp's headers and its body. */
void transport_send(struct request *req, const struct response *resp);

void transport_request_free(struct request *req);

/* Handles one accepted request; resp starts zeroed and the caller frees it. */
typedef void (*transport_handler)(void *context, struct request *req, struct response *resp);

/*
 * Accepts requests on the FastCGI listening socket listen_fd (fd 0 when a
 * front end spawned the process) and answers each with handler. Stops
 * after max_requests requests when it is above 0, and on a signal:
 * - SIGTERM or SIGINT: finishes the request in flight, then answers the
 *   connections already queued on listen_fd, then returns;
 * - SIGUSR1: finishes the request in flight and returns, leaving queued
 *   connections to the other workers (a pool retiring a generation).
 * The signals are blocked except while waiting for a connection, so an
 * idle worker stops at once and an accepted connection is never dropped.
 * listen_fd is made non-blocking. Returns 0, or -1 when fd 0 is not a
 * FastCGI socket or accepting fails.
 */
int transport_serve(int listen_fd, long max_requests, transport_handler handler, void *context);

/* Returns true when id is 1 to 64 letters, digits, '-', '_' or '.'. */
bool transport_request_id_valid(const char *id);

#endif
