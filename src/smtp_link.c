/* The mailer's connection to the relay, under one deadline per try. */
#include "autoconfig.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "log.h"
#include "smtp_link.h"
#include "tls.h"

/* Bytes held in each direction between a read and the matching write. */
#define SMTP_LINK_BUFFER 16384
/* Without /proc, descriptors below RLIMIT_NOFILE, up to this many, are searched for libesmtp's socket. */
#define SMTP_LINK_FD_SCAN_MAX 65536

struct smtp_link {
	int relay_fd;
	int listen_fd;
	int local_fd;
	int wake[2];
	SSL *ssl;
	struct sockaddr_in listen_address;
	int64_t deadline_ms;
	pthread_t thread;
	bool thread_started;
	bool deadline_hit;
};

/* The two directions of the copy: libesmtp to the relay ("up") and back ("down"). */
struct smtp_link_pump {
	char up[SMTP_LINK_BUFFER];
	size_t up_len, up_off;
	char down[SMTP_LINK_BUFFER];
	size_t down_len, down_off;
	bool relay_eof;
	bool local_write_closed;
	bool read_wants_write;
	bool write_wants_read;
};

static int64_t smtp_link_now_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* Milliseconds left before the deadline, 0 once it has passed. */
static int smtp_link_left_ms(const struct smtp_link *link)
{
	int64_t left = link->deadline_ms - smtp_link_now_ms();

	if (left <= 0)
		return 0;
	return left > INT32_MAX ? INT32_MAX : (int)left;
}

/* Waits for events on fd until the deadline. Returns 1 when ready, 0 at the deadline, -1 on error. */
static int smtp_link_wait(const struct smtp_link *link, int fd, short events)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int ready;

	do {
		ready = poll(&pfd, 1, smtp_link_left_ms(link));
	} while (ready < 0 && errno == EINTR);
	return ready;
}

/*
 * Sends small writes at once. The link passes each reply on as it comes,
 * often in pieces. With Nagle's algorithm a piece would wait for the ACK of
 * the one before, which the reader delays by about 40 ms (measured here).
 */
static void smtp_link_no_delay(int fd)
{
	int on = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
}

/* Connects one address without blocking past the deadline. Returns the socket or -1 with errno. */
static int smtp_link_connect_one(const struct smtp_link *link, const struct addrinfo *ai)
{
	int fd, ready, error = 0;
	socklen_t len = sizeof(error);

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
		ai->ai_protocol);
	if (fd < 0)
		return -1;
	smtp_link_no_delay(fd);
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
		return fd;
	if (errno != EINPROGRESS)
		goto fail;
	ready = smtp_link_wait(link, fd, POLLOUT);
	if (ready == 0) {
		errno = ETIMEDOUT;
		goto fail;
	}
	if (ready < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0)
		goto fail;
	if (error == 0)
		return fd;
	errno = error;
fail:
	error = errno;
	close(fd);
	errno = error;
	return -1;
}

/* Tries each address of host:port in turn until one connects or the deadline passes. */
static int smtp_link_connect(struct smtp_link *link, const char *host, long port,
	long timeout_ms, char *err, size_t err_size)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *list = NULL, *ai;
	char service[16];
	int status, error = 0;

	snprintf(service, sizeof(service), "%ld", port);
	/* NOTE: getaddrinfo has no time-out of its own; the resolver's settings bound it. */
	status = getaddrinfo(host, service, &hints, &list);
	if (status != 0) {
		snprintf(err, err_size, "cannot resolve %s: %s", host, gai_strerror(status));
		return -1;
	}
	for (ai = list; ai != NULL && link->relay_fd < 0; ai = ai->ai_next) {
		link->relay_fd = smtp_link_connect_one(link, ai);
		if (link->relay_fd < 0)
			error = errno;
		if (smtp_link_left_ms(link) == 0)
			break;
	}
	freeaddrinfo(list);
	if (link->relay_fd >= 0)
		return 0;
	if (error == ETIMEDOUT || error == 0)
		snprintf(err, err_size, "connect to %s:%ld timed out after %ld ms", host, port,
			timeout_ms);
	else
		snprintf(err, err_size, "connect to %s:%ld: %s", host, port, strerror(error));
	return -1;
}

/* Runs the TLS handshake of implicit TLS (RFC 8314) on the connected socket. */
static int smtp_link_handshake(struct smtp_link *link, struct tls_client *tls, char *err,
	size_t err_size)
{
	char reason[300];
	int rc, ready;

	tls_client_reset_failure(tls);
	link->ssl = SSL_new(tls_client_context(tls));
	if (link->ssl == NULL || SSL_set_fd(link->ssl, link->relay_fd) != 1) {
		tls_error_text("cannot set up TLS", err, err_size);
		return -1;
	}
	SSL_set_mode(link->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
		SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_set_connect_state(link->ssl);
	for (;;) {
		rc = SSL_do_handshake(link->ssl);
		if (rc == 1)
			return 0;
		switch (SSL_get_error(link->ssl, rc)) {
		case SSL_ERROR_WANT_READ:
			ready = smtp_link_wait(link, link->relay_fd, POLLIN);
			break;
		case SSL_ERROR_WANT_WRITE:
			ready = smtp_link_wait(link, link->relay_fd, POLLOUT);
			break;
		default:
			if (tls_client_failure(tls)[0] != '\0')
				snprintf(reason, sizeof(reason), "%s", tls_client_failure(tls));
			else
				tls_error_text("handshake failed", reason, sizeof(reason));
			snprintf(err, err_size, "TLS: %s", reason);
			ERR_clear_error();
			return -1;
		}
		if (ready <= 0) {
			snprintf(err, err_size, "TLS: the handshake did not finish in time");
			return -1;
		}
	}
}

static int smtp_link_listen(struct smtp_link *link, char local[SMTP_LINK_ADDRESS_MAX],
	char *err, size_t err_size)
{
	socklen_t len = sizeof(link->listen_address);

	link->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (link->listen_fd < 0)
		goto fail;
	memset(&link->listen_address, 0, sizeof(link->listen_address));
	link->listen_address.sin_family = AF_INET;
	link->listen_address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(link->listen_fd, (struct sockaddr *)&link->listen_address,
	    sizeof(link->listen_address)) != 0 ||
	    listen(link->listen_fd, 4) != 0 ||
	    getsockname(link->listen_fd, (struct sockaddr *)&link->listen_address, &len) != 0)
		goto fail;
	snprintf(local, SMTP_LINK_ADDRESS_MAX, "127.0.0.1:%u",
		(unsigned int)ntohs(link->listen_address.sin_port));
	return 0;
fail:
	snprintf(err, err_size, "cannot listen on loopback for the SMTP library: %s",
		strerror(errno));
	return -1;
}

static bool smtp_link_same_address(const struct sockaddr_in *a, const struct sockaddr_in *b)
{
	return a->sin_family == b->sin_family && a->sin_port == b->sin_port &&
		a->sin_addr.s_addr == b->sin_addr.s_addr;
}

/* Whether fd is this process's end of the connection that came from peer to the listener. */
static bool smtp_link_fd_matches(const struct smtp_link *link, int fd,
	const struct sockaddr_in *peer)
{
	struct sockaddr_in mine, theirs;
	socklen_t len = sizeof(mine);

	if (fd == link->local_fd || getsockname(fd, (struct sockaddr *)&mine, &len) != 0 ||
	    len != sizeof(mine) || !smtp_link_same_address(&mine, peer))
		return false;
	len = sizeof(theirs);
	return getpeername(fd, (struct sockaddr *)&theirs, &len) == 0 &&
		len == sizeof(theirs) && smtp_link_same_address(&theirs, &link->listen_address);
}

/*
 * Tells whether the accepted connection comes from a socket of this
 * process, so another local program that finds the port first is turned
 * away instead of being handed the relay.
 */
static bool smtp_link_peer_is_ours(const struct smtp_link *link,
	const struct sockaddr_in *peer)
{
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *entry;
	bool found = false;
	int fd;

	if (dir == NULL) {
		struct rlimit limit;
		int last = SMTP_LINK_FD_SCAN_MAX;

		if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < (rlim_t)last)
			last = (int)limit.rlim_cur;
		for (fd = 0; fd < last && !found; fd++)
			found = smtp_link_fd_matches(link, fd, peer);
		return found;
	}
	while (!found && (entry = readdir(dir)) != NULL) {
		char *end;
		long value = strtol(entry->d_name, &end, 10);

		if (*end == '\0' && end != entry->d_name && value >= 0 && value <= INT32_MAX)
			found = smtp_link_fd_matches(link, (int)value, peer);
	}
	closedir(dir);
	return found;
}

/* Waits for libesmtp's connection. Returns false at the deadline or when woken. */
static bool smtp_link_accept(struct smtp_link *link)
{
	struct pollfd pfd[2] = {
		{ .fd = link->listen_fd, .events = POLLIN },
		{ .fd = link->wake[0], .events = POLLIN },
	};

	for (;;) {
		struct sockaddr_in peer;
		socklen_t len = sizeof(peer);
		int ready = poll(pfd, 2, smtp_link_left_ms(link));

		if (ready < 0 && errno == EINTR)
			continue;
		if (ready <= 0) {
			link->deadline_hit = ready == 0;
			return false;
		}
		if (pfd[1].revents != 0)
			return false;
		link->local_fd = accept4(link->listen_fd, (struct sockaddr *)&peer, &len,
			SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (link->local_fd < 0) {
			if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
				continue;
			log_error("SMTP link: cannot accept the SMTP library's connection: %s",
				strerror(errno));
			return false;
		}
		if (len == sizeof(peer) && smtp_link_peer_is_ours(link, &peer)) {
			smtp_link_no_delay(link->local_fd);
			return true;
		}
		log_warning("SMTP link: closed a connection to its loopback port from 127.0.0.1:%u"
			" that is not this mailer's; another local program connected to it",
			(unsigned int)ntohs(peer.sin_port));
		close(link->local_fd);
		link->local_fd = -1;
	}
}

/* Reads from the relay into the down buffer. Returns -1 when the link must end. */
static int smtp_link_read_relay(struct smtp_link *link, struct smtp_link_pump *pump)
{
	ssize_t n;

	pump->read_wants_write = false;
	if (link->ssl == NULL) {
		n = recv(link->relay_fd, pump->down, sizeof(pump->down), 0);
		if (n < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -1;
	} else {
		int rc = SSL_read(link->ssl, pump->down, (int)sizeof(pump->down));

		n = rc;
		if (rc <= 0) {
			int error = SSL_get_error(link->ssl, rc);

			if (error == SSL_ERROR_WANT_READ)
				return 0;
			if (error == SSL_ERROR_WANT_WRITE) {
				pump->read_wants_write = true;
				return 0;
			}
			ERR_clear_error();
			n = 0;
		}
	}
	if (n == 0) {
		pump->relay_eof = true;
		return 0;
	}
	pump->down_len = (size_t)n;
	pump->down_off = 0;
	return 0;
}

/* Writes the up buffer to the relay. Returns -1 when the link must end. */
static int smtp_link_write_relay(struct smtp_link *link, struct smtp_link_pump *pump)
{
	size_t left = pump->up_len - pump->up_off;
	ssize_t n;

	pump->write_wants_read = false;
	if (link->ssl == NULL) {
		n = send(link->relay_fd, pump->up + pump->up_off, left, MSG_NOSIGNAL);
		if (n < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -1;
	} else {
		int rc = SSL_write(link->ssl, pump->up + pump->up_off, (int)left);

		if (rc <= 0) {
			int error = SSL_get_error(link->ssl, rc);

			if (error == SSL_ERROR_WANT_WRITE)
				return 0;
			if (error == SSL_ERROR_WANT_READ) {
				pump->write_wants_read = true;
				return 0;
			}
			ERR_clear_error();
			return -1;
		}
		n = rc;
	}
	pump->up_off += (size_t)n;
	if (pump->up_off == pump->up_len)
		pump->up_len = pump->up_off = 0;
	return 0;
}

/* Reads libesmtp's bytes into the up buffer. Returns -1 once libesmtp has closed. */
static int smtp_link_read_local(struct smtp_link *link, struct smtp_link_pump *pump)
{
	ssize_t n = recv(link->local_fd, pump->up, sizeof(pump->up), 0);

	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	if (n == 0)
		return -1;
	pump->up_len = (size_t)n;
	pump->up_off = 0;
	return 0;
}

static int smtp_link_write_local(struct smtp_link *link, struct smtp_link_pump *pump)
{
	ssize_t n = send(link->local_fd, pump->down + pump->down_off,
		pump->down_len - pump->down_off, MSG_NOSIGNAL);

	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	pump->down_off += (size_t)n;
	if (pump->down_off == pump->down_len)
		pump->down_len = pump->down_off = 0;
	return 0;
}

/* Sets the events each side waits for from what the buffers hold. */
static void smtp_link_events(const struct smtp_link_pump *pump, struct pollfd pfd[3])
{
	pfd[0].events = 0;
	if (pump->up_len == 0)
		pfd[0].events |= POLLIN;
	if (pump->down_len > 0)
		pfd[0].events |= POLLOUT;
	pfd[1].events = 0;
	if ((!pump->relay_eof && pump->down_len == 0) || pump->write_wants_read)
		pfd[1].events |= POLLIN;
	if ((pump->up_len > 0 && !pump->write_wants_read) || pump->read_wants_write)
		pfd[1].events |= POLLOUT;
}

/* One round of the copy. Returns 1 to go on, 0 when the link is done. */
static int smtp_link_pump_once(struct smtp_link *link, struct smtp_link_pump *pump)
{
	struct pollfd pfd[3] = {
		{ .fd = link->local_fd },
		{ .fd = link->relay_fd },
		{ .fd = link->wake[0], .events = POLLIN },
	};
	bool buffered = link->ssl != NULL && pump->down_len == 0 && !pump->relay_eof &&
		SSL_pending(link->ssl) > 0;
	int ready;

	smtp_link_events(pump, pfd);
	ready = poll(pfd, 3, buffered ? 0 : smtp_link_left_ms(link));
	if (ready < 0)
		return errno == EINTR ? 1 : 0;
	if (ready == 0 && !buffered) {
		link->deadline_hit = true;
		return 0;
	}
	if (pfd[2].revents != 0)
		return 0;
	if ((pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) && pump->up_len == 0 &&
	    smtp_link_read_local(link, pump) != 0)
		return 0;
	if ((pfd[1].revents & (POLLOUT | POLLIN | POLLERR)) && pump->up_len > 0 &&
	    smtp_link_write_relay(link, pump) != 0)
		return 0;
	if ((buffered || (pfd[1].revents & (POLLIN | POLLHUP | POLLERR | POLLOUT))) &&
	    pump->down_len == 0 && !pump->relay_eof && smtp_link_read_relay(link, pump) != 0)
		return 0;
	if (pump->down_len > 0 && smtp_link_write_local(link, pump) != 0)
		return 0;
	/* Once the relay has closed and its last bytes are passed on, libesmtp reads the end too. */
	if (pump->relay_eof && pump->down_len == 0 && !pump->local_write_closed) {
		shutdown(link->local_fd, SHUT_WR);
		pump->local_write_closed = true;
	}
	return 1;
}

static void *smtp_link_thread(void *arg)
{
	struct smtp_link *link = arg;
	struct smtp_link_pump *pump;

	if (!smtp_link_accept(link))
		return NULL;
	pump = calloc(1, sizeof(*pump));
	if (pump != NULL)
		while (smtp_link_pump_once(link, pump) == 1)
			;
	free(pump);
	/* libesmtp then reads the end of the connection at once, whatever it was waiting for. */
	shutdown(link->local_fd, SHUT_RDWR);
	return NULL;
}

static void smtp_link_free(struct smtp_link *link)
{
	if (link->ssl != NULL) {
		/* A close_notify is polite but not waited for. */
		SSL_shutdown(link->ssl);
		SSL_free(link->ssl);
		ERR_clear_error();
	}
	if (link->relay_fd >= 0)
		close(link->relay_fd);
	if (link->listen_fd >= 0)
		close(link->listen_fd);
	if (link->local_fd >= 0)
		close(link->local_fd);
	if (link->wake[0] >= 0)
		close(link->wake[0]);
	if (link->wake[1] >= 0)
		close(link->wake[1]);
	free(link);
}

struct smtp_link *smtp_link_open(const char *host, long port, struct tls_client *tls,
	long timeout_ms, char local[SMTP_LINK_ADDRESS_MAX], char *err, size_t err_size)
{
	struct smtp_link *link = calloc(1, sizeof(*link));

	if (link == NULL) {
		snprintf(err, err_size, "out of memory");
		return NULL;
	}
	link->relay_fd = link->listen_fd = link->local_fd = -1;
	link->wake[0] = link->wake[1] = -1;
	link->deadline_ms = smtp_link_now_ms() + timeout_ms;
	if (pipe2(link->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
		snprintf(err, err_size, "cannot create a pipe: %s", strerror(errno));
		goto fail;
	}
	if (smtp_link_connect(link, host, port, timeout_ms, err, err_size) != 0 ||
	    (tls != NULL && smtp_link_handshake(link, tls, err, err_size) != 0) ||
	    smtp_link_listen(link, local, err, err_size) != 0)
		goto fail;
	if (pthread_create(&link->thread, NULL, smtp_link_thread, link) != 0) {
		snprintf(err, err_size, "cannot start the connection thread");
		goto fail;
	}
	link->thread_started = true;
	return link;
fail:
	smtp_link_free(link);
	return NULL;
}

bool smtp_link_close(struct smtp_link *link)
{
	bool deadline_hit;

	if (link->thread_started) {
		ssize_t written;

		do {
			written = write(link->wake[1], "x", 1);
		} while (written < 0 && errno == EINTR);
		pthread_join(link->thread, NULL);
	}
	/* libesmtp may have given up at the same moment, ending the link from its side. */
	deadline_hit = link->deadline_hit || smtp_link_left_ms(link) == 0;
	smtp_link_free(link);
	return deadline_hit;
}
