/* The pre-forked worker pool of userops-fcgi: listening socket, supervisor, signals, sd_notify. */
#ifndef USEROPS_POOL_H
#define USEROPS_POOL_H

#include <stdbool.h>

struct config;

/*
 * Runs one worker in a freshly forked child: loads the configuration at
 * config_path and the secrets, calls pool_worker_ready() when it is about
 * to accept, then serves listen_fd. It returns the child's exit status:
 * 0 when the worker stopped on purpose (max_requests or a signal).
 */
typedef int (*pool_worker_main)(void *context, const char *config_path, int listen_fd,
	long max_requests);

/*
 * Returns true when systemd socket activation hands this process its
 * socket: LISTEN_PID is this process and LISTEN_FDS is set.
 */
bool pool_socket_activated(void);

/*
 * Tells the supervisor that this worker has loaded its configuration and
 * secrets and is about to accept. Only a worker the pool forked calls it.
 */
void pool_worker_ready(void);

/*
 * Takes the listening socket (fd 3 from socket activation, else binds
 * cfg->server.listen: "unix:PATH" or "HOST:PORT"), forks cfg->server.workers
 * workers that each call worker_main, and supervises them until SIGTERM or
 * SIGINT:
 * - a worker that dies is restarted, after a delay that starts at 1 s and
 *   doubles up to 30 s while workers die within 10 s of starting;
 * - SIGHUP reads config_path again and starts a new generation of workers,
 *   then retires the old one (SIGUSR1) once every new worker is ready. A
 *   configuration that fails to load keeps the running workers, and so
 *   does a new generation whose workers fail at start;
 * - SIGTERM removes the unix socket file so new connections fail at once,
 *   lets every worker finish its request and the connections already
 *   queued, kills those still busy after drain_timeout seconds, and returns.
 * Sends READY=1, RELOADING=1 and STOPPING=1 to $NOTIFY_SOCKET when set.
 * Returns 0 after a drain, or -1 when the socket cannot be taken (logged).
 */
int pool_run(const struct config *cfg, pool_worker_main worker_main, void *context);

#endif
