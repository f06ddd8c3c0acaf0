/*
 * The mailer's connection to the relay, under one deadline per try.
 *
 * libesmtp 1.1 connects by itself, with no time-out on connect() and no
 * implicit TLS, and each of its waits starts its own time-out. So the
 * mailer connects to the relay itself (with implicit TLS when asked) and
 * listens on an ephemeral loopback port for libesmtp. A thread copies the
 * bytes between the two connections until either side closes or the
 * deadline passes. At the deadline it closes libesmtp's connection, which
 * ends the session. STARTTLS still runs end to end between libesmtp and
 * the relay, because the thread only copies bytes.
 */
#ifndef USEROPS_SMTP_LINK_H
#define USEROPS_SMTP_LINK_H

#include <stdbool.h>
#include <stddef.h>

struct smtp_link;
struct tls_client;

/* "127.0.0.1:" and a port number. */
#define SMTP_LINK_ADDRESS_MAX 32

/*
 * Connects to host:port within timeout_ms (with TLS from the first byte
 * when tls is not NULL), then listens on 127.0.0.1 for libesmtp and writes
 * the "HOST:PORT" to give smtp_set_server() to local. Returns the link, or
 * NULL with the reason in err ("connect to ...: Connection refused").
 */
struct smtp_link *smtp_link_open(const char *host, long port, struct tls_client *tls,
	long timeout_ms, char local[SMTP_LINK_ADDRESS_MAX], char *err, size_t err_size);

/*
 * Stops the link once libesmtp is done with it, and frees it. Returns true
 * when the deadline ended the session.
 */
bool smtp_link_close(struct smtp_link *link);

#endif
