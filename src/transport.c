/* The FastCGI side: request parameters, bodies and responses over libfcgi. */
#include "autoconfig.h"

#include <errno.h>
#include <fcgiapp.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypto.h"
#include "log.h"
#include "response.h"
#include "transport.h"

bool transport_request_id_valid(const char *id)
{
	size_t len;

	if (id == NULL)
		return false;
	len = strlen(id);
	if (len == 0 || len > TRANSPORT_REQUEST_ID_MAX)
		return false;
	return strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		"0123456789-_.") == len;
}

/*
 * Request ids are 128 random bits, so workers and restarts draw different
 * ones, but they are not secret: they are drawn from OpenSSL in batches,
 * which saves most of a DRBG call per request. transport_serve empties
 * the batch when it starts, so a worker forked from a process that drew
 * ids never hands out its parent's.
 */
#define TRANSPORT_ID_BYTES 16
#define TRANSPORT_ID_BATCH 64

static struct {
	unsigned char bytes[TRANSPORT_ID_BYTES * TRANSPORT_ID_BATCH];
	size_t left;  /* ids not yet handed out, at the end of bytes */
} transport_ids;

static void transport_generate_request_id(char *out)
{
	unsigned char *random;

	if (transport_ids.left == 0) {
		if (crypto_random_bytes(transport_ids.bytes, sizeof(transport_ids.bytes)) != 0) {
			/* Uniqueness then rests on the process and a counter. */
			static unsigned long counter;

			snprintf(out, TRANSPORT_REQUEST_ID_MAX + 1, "fallback-%lu", ++counter);
			return;
		}
		transport_ids.left = TRANSPORT_ID_BATCH;
	}
	transport_ids.left--;
	random = transport_ids.bytes + transport_ids.left * TRANSPORT_ID_BYTES;
	crypto_hex_encode(random, TRANSPORT_ID_BYTES, out);
}

/* A FastCGI parameter that a request reads, and the field of struct request it goes to. */
struct transport_param {
	const char *name;
	size_t name_len;
	size_t field;  /* offset of a const char * member */
};

#define TRANSPORT_PARAM(name, member) \
	{ name, sizeof(name) - 1, offsetof(struct request, member) }

static const struct transport_param transport_params[] = {
	TRANSPORT_PARAM("REQUEST_METHOD", method),
	TRANSPORT_PARAM("SCRIPT_NAME", script_name),
	TRANSPORT_PARAM("PATH_INFO", path_info),
	TRANSPORT_PARAM("HTTP_AUTHORIZATION", authorization),
	TRANSPORT_PARAM("HTTP_FINGERPRINT", fingerprint),
	TRANSPORT_PARAM("CONTENT_TYPE", content_type),
	TRANSPORT_PARAM("CONTENT_LENGTH", content_length),
	TRANSPORT_PARAM("REMOTE_ADDR", remote_addr),
	TRANSPORT_PARAM("QUERY_STRING", query_string),
	TRANSPORT_PARAM("HTTP_IDEMPOTENCY_KEY", idempotency_key),
	TRANSPORT_PARAM("HTTP_X_REQUEST_ID", request_id_header),
};

/*
 * Reads the parameters in one pass over the "NAME=value" entries. Looking
 * each up with FCGX_GetParam compared every entry with every name. As
 * with FCGX_GetParam, the first entry of a name wins.
 */
static void transport_read_params(struct request *req, char **env)
{
	const size_t count = sizeof(transport_params) / sizeof(transport_params[0]);

	for (char **entry = env; entry != NULL && *entry != NULL; entry++) {
		const char *equals = strchr(*entry, '=');
		size_t name_len;

		if (equals == NULL)
			continue;
		name_len = (size_t)(equals - *entry);
		for (size_t i = 0; i < count; i++) {
			const char **field = (const char **)((char *)req + transport_params[i].field);

			if (name_len == transport_params[i].name_len && *field == NULL &&
			    memcmp(*entry, transport_params[i].name, name_len) == 0) {
				*field = equals + 1;
				break;
			}
		}
	}
}

void transport_request_init(struct request *req, FCGX_Request *fcgi)
{
	memset(req, 0, sizeof(*req));
	req->fcgi = fcgi;
	transport_read_params(req, fcgi->envp);
	if (req->method == NULL)
		req->method = "";

	if (transport_request_id_valid(req->request_id_header))
		snprintf(req->request_id, sizeof(req->request_id), "%s", req->request_id_header);
	else
		transport_generate_request_id(req->request_id);
}

static int transport_parse_length(const char *text, size_t *length)
{
	size_t value = 0;
	const char *p;

	if (text == NULL || text[0] == '\0') {
		*length = 0;
		return 0;
	}
	for (p = text; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		if (value > (SIZE_MAX - 9) / 10)
			return -1;
		value = value * 10 + (size_t)(*p - '0');
	}
	*length = value;
	return 0;
}

int transport_content_length(const struct request *req, size_t *length)
{
	return transport_parse_length(req->content_length, length);
}

enum transport_body_result transport_read_body(struct request *req, size_t max_body)
{
	size_t length;
	int got;

	if (req->body != NULL)
		return TRANSPORT_BODY_OK;
	if (transport_parse_length(req->content_length, &length) != 0)
		return TRANSPORT_BODY_INVALID;
	if (length > max_body)
		return TRANSPORT_BODY_TOO_LARGE;

	req->body = malloc(length + 1);
	if (req->body == NULL)
		return TRANSPORT_BODY_INVALID;
	got = length > 0 ? FCGX_GetStr(req->body, (int)length, req->fcgi->in) : 0;
	if (got < 0 || (size_t)got != length) {
		/* The client went away before sending the whole body: never act on it. */
		free(req->body);
		req->body = NULL;
		return TRANSPORT_BODY_INVALID;
	}
	req->body[length] = '\0';
	req->body_len = length;
	return TRANSPORT_BODY_OK;
}

void transport_send(struct request *req, const struct response *resp)
{
	char head[1024 + RESPONSE_HEADERS_MAX];
	const char *body = resp->body != NULL ? resp->body : "";
	size_t body_len = strlen(body);
	int len;

	/* libfcgi's FCGX_FPrintF lacks %zu, so the text is formatted here. */
	len = snprintf(head, sizeof(head),
		"Status: %d %s\r\n"
		"Content-Type: application/json; charset=utf-8\r\n"
		"Cache-Control: no-store\r\n"
		"X-Request-Id: %s\r\n"
		"Content-Length: %zu\r\n"
		"%s"
		"\r\n",
		resp->status, response_reason(resp->status), req->request_id, body_len,
		resp->headers);
	if (len < 0 || (size_t)len >= sizeof(head))
		return;
	FCGX_PutStr(head, len, req->fcgi->out);
	FCGX_PutStr(body, (int)body_len, req->fcgi->out);
}

void transport_request_free(struct request *req)
{
	free(req->body);
	req->body = NULL;
}

enum transport_stop_mode {
	TRANSPORT_RUNNING,
	TRANSPORT_DRAIN,    /* SIGTERM, SIGINT: serve the queued connections, then stop */
	TRANSPORT_RETIRE,   /* SIGUSR1: stop after the request in flight */
};

static volatile sig_atomic_t transport_stop;

static void transport_on_signal(int signo)
{
	/* A retire request never weakens into a drain, which could run on under load. */
	if (signo == SIGUSR1)
		transport_stop = TRANSPORT_RETIRE;
	else if (transport_stop == TRANSPORT_RUNNING)
		transport_stop = TRANSPORT_DRAIN;
}

/*
 * Installs the stop handlers without SA_RESTART and blocks their signals.
 * wait_mask receives the mask to wait with, in which they are unblocked.
 */
static void transport_install_signals(sigset_t *wait_mask)
{
	struct sigaction action;
	sigset_t stop_signals;

	memset(&action, 0, sizeof(action));
	action.sa_handler = transport_on_signal;
	sigemptyset(&action.sa_mask);
	sigaction(SIGTERM, &action, NULL);
	sigaction(SIGINT, &action, NULL);
	sigaction(SIGUSR1, &action, NULL);

	/* A front end that closes its end mid-response must not kill the worker. */
	action.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &action, NULL);

	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGUSR1);
	sigprocmask(SIG_BLOCK, &stop_signals, wait_mask);
	sigdelset(wait_mask, SIGTERM);
	sigdelset(wait_mask, SIGINT);
	sigdelset(wait_mask, SIGUSR1);
}

/*
 * Waits until listen_fd has a connection queued or a stop signal arrives.
 * The stop signals are unblocked only inside ppoll, so one that arrives
 * between two checks of transport_stop still ends the wait. Returns 1 when
 * a connection is queued, 0 when it is time to stop, -1 on error.
 */
static int transport_wait(int listen_fd, const sigset_t *wait_mask)
{
	struct pollfd poll_fd = { .fd = listen_fd, .events = POLLIN };
	struct timespec no_wait = { 0, 0 };
	int ready;

	for (;;) {
		if (transport_stop == TRANSPORT_RETIRE)
			return 0;
		/* Draining: only what is queued already, so never wait. */
		ready = ppoll(&poll_fd, 1, transport_stop == TRANSPORT_DRAIN ? &no_wait : NULL,
			wait_mask);
		if (ready > 0)
			return 1;
		if (ready == 0)
			return 0;
		if (errno != EINTR) {
			log_error("waiting for a FastCGI connection failed: %s", strerror(errno));
			return -1;
		}
	}
}

static void transport_answer(FCGX_Request *fcgi, transport_handler handler, void *context)
{
	struct request req;
	struct response resp;
	bool body_consumed;

	memset(&resp, 0, sizeof(resp));
	transport_request_init(&req, fcgi);
	handler(context, &req, &resp);
	transport_send(&req, &resp);
	response_free(&resp);
	/* Without a CONTENT_LENGTH, a front end may still be passing a body on. */
	body_consumed = req.body != NULL ||
		(req.content_length != NULL && strcmp(req.content_length, "0") == 0);
	transport_request_free(&req);

	/*
	 * libfcgi closes a connection by shutting down its side for writing
	 * and reading until the front end closes, which costs three system
	 * calls. That matters only while input is left unread, because closing
	 * a socket with unread input resets the connection and can lose the
	 * response. So when the whole body was read, or CONTENT_LENGTH is 0,
	 * and the end-of-input record follows, the request is detached first
	 * and libfcgi just closes the socket. Other input is not touched,
	 * because reading it could wait on a slow client before the response
	 * is sent, where the linger stops once its poll times out
	 * (LIBFCGI_OS_CLOSE_POLL_TIMEOUT).
	 */
	if (body_consumed &&
	    (FCGX_HasSeenEOF(fcgi->in) == EOF || FCGX_GetChar(fcgi->in) == EOF))
		FCGX_Detach(fcgi);
	FCGX_Finish_r(fcgi);
	/* libfcgi clears the flag only when it closes, so a kept connection would inherit it. */
	fcgi->detached = 0;
}

int transport_serve(int listen_fd, long max_requests, transport_handler handler, void *context)
{
	FCGX_Request fcgi;
	sigset_t wait_mask;
	long served = 0;
	int flags, rc;

	if (listen_fd == 0 && FCGX_IsCGI()) {
		log_error("fd 0 is not a FastCGI socket; start userops-fcgi from a front end "
			"(lighttpd bin-path, spawn-fcgi, mod_fcgid) or set [server] listen");
		return -1;
	}
	if (FCGX_Init() != 0 || FCGX_InitRequest(&fcgi, listen_fd, 0) != 0) {
		log_error("cannot initialise libfcgi");
		return -1;
	}
	/*
	 * Several workers wait on one socket and all wake for one connection:
	 * accept must then fail with EAGAIN in the losers (libfcgi 2.4.2 passes
	 * EAGAIN back) rather than block with the stop signals masked.
	 */
	flags = fcntl(listen_fd, F_GETFL);
	if (flags < 0 || fcntl(listen_fd, F_SETFL, flags | O_NONBLOCK) != 0) {
		log_error("cannot make the FastCGI socket non-blocking: %s", strerror(errno));
		return -1;
	}
	transport_install_signals(&wait_mask);
	transport_ids.left = 0;

	for (;;) {
		rc = transport_wait(listen_fd, &wait_mask);
		if (rc <= 0)
			break;
		rc = FCGX_Accept_r(&fcgi);
		if (rc == -EAGAIN || rc == -EWOULDBLOCK || rc == -EINTR)
			continue;
		if (rc < 0) {
			log_error("FastCGI accept failed: %s", strerror(-rc));
			break;
		}
		transport_answer(&fcgi, handler, context);
		served++;
		if (max_requests > 0 && served >= max_requests) {
			log_info("stopping after max_requests=%ld requests", max_requests);
			return 0;
		}
	}
	if (rc < 0)
		return -1;
	log_info("stopping on a signal after %ld requests", served);
	return 0;
}
