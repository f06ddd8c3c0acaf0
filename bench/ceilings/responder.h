/* The FastCGI side of noop and confirm_sql: the accept loop on fd 0 and the response bytes. */
#ifndef USEROPS_BENCH_RESPONDER_H
#define USEROPS_BENCH_RESPONDER_H

#include <stdbool.h>

#include <fcgiapp.h>

/* Characters of a uuid in text form, 8-4-4-4-12 hex digits with dashes. */
#define RESPONDER_UUID_TEXT_LENGTH 36
/* Characters of a request id: 32 hex digits, as userops generates them. */
#define RESPONDER_REQUEST_ID_LENGTH 32

/* One request, with the parameters the ceilings read. */
struct responder_request {
	FCGX_Request *fcgi;
	const char *method;        /* REQUEST_METHOD, "" when missing */
	const char *request_uri;   /* REQUEST_URI, "" when missing */
	const char *remote_addr;   /* REMOTE_ADDR, NULL when missing */
	char request_id[RESPONDER_REQUEST_ID_LENGTH + 1];
};

typedef void (*responder_handler)(void *context, struct responder_request *req);

/*
 * Serves FastCGI requests on the listening socket inherited on fd 0, as
 * lighttpd (bin-path) and spawn-fcgi hand it over, calling handler once per
 * request. SIGTERM and SIGUSR1 stop it after the request in flight, and it
 * returns 0. It returns 1 when fd 0 is not a FastCGI socket, libfcgi cannot
 * start or accept fails.
 */
int responder_serve(const char *program, responder_handler handler, void *context);

/*
 * Reads and discards the request body of CONTENT_LENGTH bytes, as userops
 * reads it before acting. Returns false when CONTENT_LENGTH is invalid or
 * the body ends early.
 */
bool responder_read_body(struct responder_request *req);

/*
 * Copies the uuid of a confirm target ".../operations/{uuid}/confirm" in
 * REQUEST_URI into uuid_text, NUL-terminated. Returns false when the target
 * has another form; the uuid's digits are checked by the caller.
 */
bool responder_confirm_uuid(const struct responder_request *req,
	char uuid_text[RESPONDER_UUID_TEXT_LENGTH + 1]);

/* Sends the bytes of a successful userops confirm of the operation uuid_text. */
void responder_send_confirmed(struct responder_request *req, const char *uuid_text);

/* Sends an error in userops' body format: HTTP status code / 1000, the code and the message. */
void responder_send_error(struct responder_request *req, int code, const char *message);

/* Sends the body of userops' GET /health: 200 with "ok", or 503 with "unavailable". */
void responder_send_health(struct responder_request *req, bool ok);

#endif
