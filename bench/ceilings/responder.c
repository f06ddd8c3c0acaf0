/* The FastCGI side of noop and confirm_sql: the accept loop on fd 0 and the response bytes. */
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "responder.h"

/* Bytes of the body scratch buffer; a longer body is read in several pieces. */
#define RESPONDER_READ_CHUNK 4096
/* Bytes of one formatted response, head and body; every response here is far shorter. */
#define RESPONDER_RESPONSE_MAX 1024

static const char *responder_reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 409:
		return "Conflict";
	case 410:
		return "Gone";
	case 500:
		return "Internal Server Error";
	case 503:
		return "Service Unavailable";
	default:
		return "Unknown";
	}
}

/*
 * Fills req->request_id with 32 hex digits: the process id, then a counter.
 * The ids are unique among the workers of one run and as long as the random
 * ids of userops, so the responses have the same length.
 */
static void responder_next_request_id(struct responder_request *req)
{
	static unsigned long long counter;

	counter++;
	snprintf(req->request_id, sizeof(req->request_id), "%08lx%024llx",
		(unsigned long)getpid() & 0xffffffffUL, counter);
}

static volatile sig_atomic_t responder_stop_signal;

/* Makes FCGX_Accept_r return at once, as libfcgi's own handler would, and records the signal. */
static void responder_on_stop(int signo)
{
	responder_stop_signal = signo;
	FCGX_ShutdownPending();
}

int responder_serve(const char *program, responder_handler handler, void *context)
{
	struct sigaction action;
	FCGX_Request fcgi;
	struct responder_request req;
	unsigned long long served = 0;
	int rc;

	if (FCGX_IsCGI()) {
		fprintf(stderr, "%s: fd 0 is not a FastCGI listening socket; start it from "
			"lighttpd (bin-path) or spawn-fcgi\n", program);
		return 1;
	}
	if (FCGX_Init() != 0 || FCGX_InitRequest(&fcgi, 0, 0) != 0) {
		fprintf(stderr, "%s: cannot initialise libfcgi\n", program);
		return 1;
	}
	/*
	 * FCGX_Init of libfcgi 2.4.2 installs handlers for SIGTERM and SIGUSR1
	 * that make FCGX_Accept_r fail. This one replaces them, does the same
	 * and records the signal, so that the stop is logged as a stop.
	 */
	memset(&action, 0, sizeof(action));
	action.sa_handler = responder_on_stop;
	sigemptyset(&action.sa_mask);
	sigaction(SIGTERM, &action, NULL);
	sigaction(SIGUSR1, &action, NULL);

	/* A front end that closes its end mid-response must not end the worker. */
	action.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &action, NULL);
	fprintf(stderr, "%s[%ld]: serving FastCGI requests on fd 0\n", program, (long)getpid());

	for (;;) {
		rc = FCGX_Accept_r(&fcgi);
		if (rc < 0 || responder_stop_signal != 0)
			break;
		memset(&req, 0, sizeof(req));
		req.fcgi = &fcgi;
		req.method = FCGX_GetParam("REQUEST_METHOD", fcgi.envp);
		req.request_uri = FCGX_GetParam("REQUEST_URI", fcgi.envp);
		req.remote_addr = FCGX_GetParam("REMOTE_ADDR", fcgi.envp);
		if (req.method == NULL)
			req.method = "";
		if (req.request_uri == NULL)
			req.request_uri = "";
		responder_next_request_id(&req);
		handler(context, &req);
		FCGX_Finish_r(&fcgi);
		served++;
	}
	if (responder_stop_signal != 0) {
		fprintf(stderr, "%s[%ld]: stopping on signal %d after %llu requests\n", program,
			(long)getpid(), (int)responder_stop_signal, served);
		return 0;
	}
	fprintf(stderr, "%s[%ld]: FastCGI accept failed: %s (%d) after %llu requests; stopping\n",
		program, (long)getpid(), rc > -4096 ? strerror(-rc) : "libfcgi error", rc, served);
	return 1;
}

bool responder_read_body(struct responder_request *req)
{
	const char *text = FCGX_GetParam("CONTENT_LENGTH", req->fcgi->envp);
	char chunk[RESPONDER_READ_CHUNK];
	size_t length = 0;
	size_t done = 0;
	const char *p;
	int want, got;

	if (text != NULL) {
		for (p = text; *p != '\0'; p++) {
			if (*p < '0' || *p > '9' || length > (SIZE_MAX - 9) / 10)
				return false;
			length = length * 10 + (size_t)(*p - '0');
		}
	}
	while (done < length) {
		want = length - done < sizeof(chunk) ? (int)(length - done) : (int)sizeof(chunk);
		got = FCGX_GetStr(chunk, want, req->fcgi->in);
		if (got <= 0)
			return false;
		done += (size_t)got;
	}
	return true;
}

bool responder_confirm_uuid(const struct responder_request *req,
	char uuid_text[RESPONDER_UUID_TEXT_LENGTH + 1])
{
	static const char prefix[] = "/operations/";
	static const char suffix[] = "/confirm";
	const char *start = strstr(req->request_uri, prefix);
	const char *end;

	if (start == NULL)
		return false;
	start += sizeof(prefix) - 1;
	if (strnlen(start, RESPONDER_UUID_TEXT_LENGTH) != RESPONDER_UUID_TEXT_LENGTH)
		return false;
	end = start + RESPONDER_UUID_TEXT_LENGTH;
	if (strncmp(end, suffix, sizeof(suffix) - 1) != 0)
		return false;
	end += sizeof(suffix) - 1;
	if (*end != '\0' && *end != '?')
		return false;
	memcpy(uuid_text, start, RESPONDER_UUID_TEXT_LENGTH);
	uuid_text[RESPONDER_UUID_TEXT_LENGTH] = '\0';
	return true;
}

/*
 * Formats the head as userops' transport_send does (Status, Content-Type,
 * Cache-Control, X-Request-Id, Content-Length) followed by body, and sends
 * both in one write to the FastCGI stream.
 */
static void responder_send(struct responder_request *req, int status, const char *body,
	size_t body_len)
{
	char response[RESPONDER_RESPONSE_MAX];
	int head_len;

	head_len = snprintf(response, sizeof(response),
		"Status: %d %s\r\n"
		"Content-Type: application/json; charset=utf-8\r\n"
		"Cache-Control: no-store\r\n"
		"X-Request-Id: %s\r\n"
		"Content-Length: %zu\r\n"
		"\r\n",
		status, responder_reason(status), req->request_id, body_len);
	if (head_len < 0 || (size_t)head_len + body_len > sizeof(response)) {
		fprintf(stderr, "responder: a response of %zu body bytes does not fit in %d bytes\n",
			body_len, RESPONDER_RESPONSE_MAX);
		return;
	}
	memcpy(response + head_len, body, body_len);
	FCGX_PutStr(response, head_len + (int)body_len, req->fcgi->out);
}

/* Sends body, which snprintf wrote as len characters into a buffer of body_size bytes. */
static void responder_send_formatted(struct responder_request *req, int status, const char *body,
	size_t body_size, int len)
{
	if (len < 0 || (size_t)len >= body_size) {
		fprintf(stderr, "responder: a response body does not fit in %zu bytes\n", body_size);
		return;
	}
	responder_send(req, status, body, (size_t)len);
}

void responder_send_confirmed(struct responder_request *req, const char *uuid_text)
{
	char body[256];
	int len;

	/* The bytes json-c writes for the success object of a confirm, in userops' member order. */
	len = snprintf(body, sizeof(body),
		"{\"success\":true,\"data\":{\"uuid\":\"%s\",\"status\":\"confirmed\"},"
		"\"message\":\"Operation successful\"}", uuid_text);
	responder_send_formatted(req, 200, body, sizeof(body), len);
}

void responder_send_error(struct responder_request *req, int code, const char *message)
{
	char body[512];
	int len;

	len = snprintf(body, sizeof(body),
		"{\"success\":false,\"error\":{\"code\":%d,\"message\":\"%s\",\"requestId\":\"%s\"}}",
		code, message, req->request_id);
	responder_send_formatted(req, code / 1000, body, sizeof(body), len);
}

void responder_send_health(struct responder_request *req, bool ok)
{
	const char *body = ok ? "{\"status\":\"ok\"}" : "{\"status\":\"unavailable\"}";

	responder_send(req, ok ? 200 : 503, body, strlen(body));
}
