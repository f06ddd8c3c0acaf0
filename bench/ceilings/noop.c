/*
 * noop: the front-end ceiling. A libfcgi responder that reads each request's
 * body and sends the bytes of a successful userops confirm, doing nothing
 * else: no database, no JSON, no token.
 *
 * Behind the same lighttpd with the same number of workers as userops-fcgi,
 * its requests per second bound what any FastCGI application can reach
 * there, because lighttpd, wrk and the FastCGI exchange share the cores with
 * the workers. CPU per request of userops above this one is what userops
 * itself costs.
 *
 * Each response is byte for byte a userops confirm response: Status,
 * Content-Type, Cache-Control, X-Request-Id, Content-Length, then the body
 * {"success":true,"data":{"uuid":"...","status":"confirmed"},...}. The uuid
 * comes from a target ".../operations/{uuid}/confirm"; every other target
 * (GET /health, say) gets the same body with a fixed uuid. The X-Request-Id
 * is the process id and a counter in 32 hex digits, as long as userops'
 * random one.
 * NOTE: an X-Request-Id sent by the client is ignored; userops would echo a
 * valid one, which changes the length of its responses.
 *
 * Run: as a lighttpd bin-path ("bin-path" => "/path/to/noop") or with
 * spawn-fcgi -s SOCKET -F WORKERS -- /path/to/noop. Both hand over the
 * listening socket on fd 0. It takes no options.
 */
#include <stdio.h>
#include <string.h>

#include "responder.h"

/* The uuid of responses to targets that are not a confirm; it has the length of a real one. */
static const char noop_fixed_uuid[] = "00000000-0000-4000-8000-000000000000";
_Static_assert(sizeof(noop_fixed_uuid) == RESPONDER_UUID_TEXT_LENGTH + 1,
	"the fixed uuid must have the length of a uuid in text form");

static void noop_handle(void *context, struct responder_request *req)
{
	char uuid_text[RESPONDER_UUID_TEXT_LENGTH + 1];

	(void)context;
	/* userops reads the whole body first; a body cut short changes nothing here. */
	(void)responder_read_body(req);
	if (!responder_confirm_uuid(req, uuid_text))
		memcpy(uuid_text, noop_fixed_uuid, sizeof(noop_fixed_uuid));
	responder_send_confirmed(req, uuid_text);
}

int main(int argc, char **argv)
{
	if (argc > 1) {
		fprintf(stderr, "Usage: %s\n"
			"Sends the bytes of a successful userops confirm in response to every FastCGI\n"
			"request on the socket inherited on fd 0. Start it from lighttpd (bin-path)\n"
			"or spawn-fcgi.\n", argv[0]);
		return strcmp(argv[1], "--help") == 0 ? 0 : 2;
	}
	return responder_serve("noop", noop_handle, NULL);
}
