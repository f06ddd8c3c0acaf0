/* The pre-forked worker pool of userops-fcgi: listening socket, supervisor, signals, sd_notify. */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "pool.h"

/* Room for two generations of the largest pool [server] workers allows. */
#define POOL_CAPACITY 2048
#define POOL_BACKOFF_FIRST_MS 1000
#define POOL_BACKOFF_MAX_MS 30000
/* A worker that dies sooner than this after its start counts as crashing at start. */
#define POOL_STABLE_MS 10000
#define POOL_LISTEN_BACKLOG 1024
/* systemd socket activation hands the first socket on this descriptor. */
#define POOL_ACTIVATION_FD 3

struct pool_worker {
	bool in_use;
	pid_t pid;                 /* -1 while waiting for its (re)start */
	unsigned generation;
	long long started_ms;
	long long start_at_ms;     /* when a worker waiting for its start is due */
	long backoff_ms;           /* the delay before the next restart after a crash */
	bool ready;
	bool retiring;             /* sent SIGUSR1 after a reload: never restarted */
};

struct pool {
	const char *config_path;
	char *unix_path;           /* socket file the pool bound, removed when it stops */
	int listen_fd;
	int signal_fd;
	int ready_pipe[2];
	long workers;
	long max_requests;
	long drain_timeout;
	unsigned generation;       /* the newest generation, started by the last start or reload */
	bool generation_ready;     /* every worker of the newest generation reported ready */
	bool stopping;
	bool activated;            /* the socket came from systemd socket activation */
	long long drain_deadline_ms;
	pool_worker_main worker_main;
	void *context;
	struct pool_worker workers_table[POOL_CAPACITY];
};

/* The write end of the ready pipe in a worker, or -1 in the supervisor and in spawned mode. */
static int pool_ready_fd = -1;

static long long pool_now_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* Sends one sd_notify message to $NOTIFY_SOCKET; '@' starts an abstract name. */
static void pool_notify(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un addr;
	size_t path_len;
	int fd;

	if (path == NULL || path[0] == '\0')
		return;
	path_len = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || path_len >= sizeof(addr.sun_path)) {
		log_warning("NOTIFY_SOCKET=%s is not a unix socket path; not notifying", path);
		return;
	}
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	memcpy(addr.sun_path, path, path_len);
	if (path[0] == '@')
		addr.sun_path[0] = '\0';

	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_warning("cannot notify %s: %s", path, strerror(errno));
		return;
	}
	if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&addr,
			(socklen_t)(offsetof(struct sockaddr_un, sun_path) + path_len)) < 0)
		log_warning("cannot notify %s: %s", path, strerror(errno));
	close(fd);
}

bool pool_socket_activated(void)
{
	const char *pid = getenv("LISTEN_PID");
	const char *fds = getenv("LISTEN_FDS");
	char *end = NULL;
	long value;

	if (pid == NULL || fds == NULL)
		return false;
	errno = 0;
	value = strtol(pid, &end, 10);
	return errno == 0 && end != pid && *end == '\0' && value == (long)getpid();
}

/* Takes fd 3 from systemd socket activation and clears the variables for the workers. */
static int pool_take_activated(void)
{
	const char *fds = getenv("LISTEN_FDS");
	int accepting = 0;
	socklen_t len = sizeof(accepting);

	if (strcmp(fds, "1") != 0) {
		log_error("socket activation passed LISTEN_FDS=%s; userops-fcgi takes exactly one socket",
			fds);
		return -1;
	}
	if (getsockopt(POOL_ACTIVATION_FD, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0 ||
		!accepting) {
		log_error("socket activation: fd 3 is not a listening socket");
		return -1;
	}
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return POOL_ACTIVATION_FD;
}

/* Binds a unix socket at path, mode 0660, replacing a stale socket file left behind. */
static int pool_bind_unix(const char *path)
{
	struct sockaddr_un addr;
	struct stat st;
	int fd = -1;

	if (strlen(path) >= sizeof(addr.sun_path)) {
		log_error("[server] listen: unix socket path %s is longer than %zu bytes", path,
			sizeof(addr.sun_path) - 1);
		return -1;
	}
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			log_error("[server] listen: %s exists and is not a socket", path);
			return -1;
		}
		unlink(path);
	}
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	memcpy(addr.sun_path, path, strlen(path));

	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
		chmod(path, 0660) != 0 || listen(fd, POOL_LISTEN_BACKLOG) != 0) {
		log_error("cannot listen on unix socket %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* Binds HOST:PORT, where HOST may be a bracketed IPv6 address. */
static int pool_bind_tcp(const char *address)
{
	struct addrinfo hints, *found = NULL, *ai;
	char host[256];
	const char *colon = strrchr(address, ':');
	size_t host_len;
	int fd = -1, on = 1, rc;

	if (colon == NULL || colon == address || colon[1] == '\0' ||
		(size_t)(colon - address) >= sizeof(host)) {
		log_error("[server] listen must be unix:PATH or HOST:PORT, got \"%s\"", address);
		return -1;
	}
	host_len = (size_t)(colon - address);
	if (address[0] == '[' && host_len >= 2 && address[host_len - 1] == ']') {
		memcpy(host, address + 1, host_len - 2);
		host[host_len - 2] = '\0';
	} else {
		memcpy(host, address, host_len);
		host[host_len] = '\0';
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(host, colon + 1, &hints, &found);
	if (rc != 0) {
		log_error("[server] listen: cannot resolve %s: %s", address, gai_strerror(rc));
		return -1;
	}
	for (ai = found; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, POOL_LISTEN_BACKLOG) == 0)
			break;
		close(fd);
		fd = -1;
	}
	if (fd < 0)
		log_error("cannot listen on %s: %s", address, strerror(errno));
	freeaddrinfo(found);
	return fd;
}

static int pool_open_listener(struct pool *pool, const char *listen_setting)
{
	if (pool_socket_activated()) {
		pool->activated = true;
		return pool_take_activated();
	}
	if (strncmp(listen_setting, "unix:", 5) == 0) {
		pool->unix_path = strdup(listen_setting + 5);
		if (pool->unix_path == NULL)
			return -1;
		return pool_bind_unix(pool->unix_path);
	}
	return pool_bind_tcp(listen_setting);
}

void pool_worker_ready(void)
{
	pid_t pid = getpid();

	if (pool_ready_fd < 0)
		return;
	/* A pid_t is far below PIPE_BUF, so the write is atomic among workers. */
	(void)!write(pool_ready_fd, &pid, sizeof(pid));
	close(pool_ready_fd);
	pool_ready_fd = -1;
}

/* Runs in a forked worker: drops the supervisor's descriptors and signal set-up, then serves. */
static void __attribute__((noreturn)) pool_child(struct pool *pool, pid_t supervisor)
{
	struct sigaction action;
	sigset_t none;

	close(pool->signal_fd);
	close(pool->ready_pipe[0]);
	pool_ready_fd = pool->ready_pipe[1];

	/* A worker never outlives a supervisor killed with SIGKILL. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != supervisor)
		_exit(1);

	memset(&action, 0, sizeof(action));
	sigemptyset(&action.sa_mask);
	action.sa_handler = SIG_IGN;
	sigaction(SIGHUP, &action, NULL);
	action.sa_handler = SIG_DFL;
	sigaction(SIGCHLD, &action, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);

	exit(pool->worker_main(pool->context, pool->config_path, pool->listen_fd,
		pool->max_requests));
}

static void pool_spawn(struct pool *pool, struct pool_worker *worker)
{
	pid_t supervisor = getpid();
	pid_t pid = fork();

	if (pid < 0) {
		log_error("cannot fork a worker: %s; retrying in %ld ms", strerror(errno),
			worker->backoff_ms);
		worker->start_at_ms = pool_now_ms() + worker->backoff_ms;
		return;
	}
	if (pid == 0)
		pool_child(pool, supervisor);
	worker->pid = pid;
	worker->ready = false;
	worker->started_ms = pool_now_ms();
	log_info("worker pid=%ld started generation=%u", (long)pid, worker->generation);
}

/* Adds count workers of the newest generation, due to start now. */
static void pool_add_generation(struct pool *pool, long count)
{
	long added = 0;
	size_t i;

	for (i = 0; i < POOL_CAPACITY && added < count; i++) {
		struct pool_worker *worker = &pool->workers_table[i];

		if (worker->in_use)
			continue;
		memset(worker, 0, sizeof(*worker));
		worker->in_use = true;
		worker->pid = -1;
		worker->generation = pool->generation;
		worker->start_at_ms = pool_now_ms();
		worker->backoff_ms = POOL_BACKOFF_FIRST_MS;
		added++;
	}
	if (added < count)
		log_error("worker table full: generation %u has %ld workers of %ld", pool->generation,
			added, count);
}

static void pool_start_due(struct pool *pool)
{
	long long now = pool_now_ms();
	size_t i;

	if (pool->stopping)
		return;
	for (i = 0; i < POOL_CAPACITY; i++) {
		struct pool_worker *worker = &pool->workers_table[i];

		if (worker->in_use && worker->pid < 0 && worker->start_at_ms <= now)
			pool_spawn(pool, worker);
	}
}

static struct pool_worker *pool_find(struct pool *pool, pid_t pid)
{
	size_t i;

	for (i = 0; i < POOL_CAPACITY; i++) {
		if (pool->workers_table[i].in_use && pool->workers_table[i].pid == pid)
			return &pool->workers_table[i];
	}
	return NULL;
}

static void pool_describe_status(int status, char *out, size_t out_size)
{
	if (WIFEXITED(status))
		snprintf(out, out_size, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(out, out_size, "killed by signal %d (%s)", WTERMSIG(status),
			strsignal(WTERMSIG(status)));
	else
		snprintf(out, out_size, "ended with wait status %d", status);
}

/*
 * Records the end of one worker and schedules its replacement: at once
 * after a clean exit (max_requests) or a worker that ran POOL_STABLE_MS,
 * else after its backoff, which then doubles up to POOL_BACKOFF_MAX_MS.
 */
static void pool_on_exit(struct pool *pool, pid_t pid, int status)
{
	struct pool_worker *worker = pool_find(pool, pid);
	long long now = pool_now_ms();
	long long lived;
	long delay = 0;
	char how[96];

	if (worker == NULL)
		return;
	lived = now - worker->started_ms;
	pool_describe_status(status, how, sizeof(how));
	if (pool->stopping || worker->retiring || worker->generation != pool->generation) {
		log_info("worker pid=%ld %s after %lld ms", (long)pid, how, lived);
		worker->in_use = false;
		return;
	}

	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		delay = 0;
	} else if (lived >= POOL_STABLE_MS) {
		worker->backoff_ms = POOL_BACKOFF_FIRST_MS;
	} else {
		delay = worker->backoff_ms;
		worker->backoff_ms = worker->backoff_ms * 2 > POOL_BACKOFF_MAX_MS ?
			POOL_BACKOFF_MAX_MS : worker->backoff_ms * 2;
	}
	if (delay == 0)
		log_info("worker pid=%ld %s after %lld ms; restarting it now", (long)pid, how, lived);
	else
		log_warning("worker pid=%ld %s after %lld ms; restarting it in %ld ms", (long)pid, how,
			lived, delay);
	worker->pid = -1;
	worker->ready = false;
	worker->start_at_ms = now + delay;
}

static void pool_reap(struct pool *pool)
{
	pid_t pid;
	int status;

	for (;;) {
		pid = waitpid(-1, &status, WNOHANG);
		if (pid <= 0)
			return;
		pool_on_exit(pool, pid, status);
	}
}

/*
 * Sends signo to every live worker, or with only_older to those of older
 * generations, and drops the workers not started yet. Returns how many it signalled.
 */
static long pool_signal_workers(struct pool *pool, int signo, bool only_older)
{
	long signalled = 0;
	size_t i;

	for (i = 0; i < POOL_CAPACITY; i++) {
		struct pool_worker *worker = &pool->workers_table[i];

		if (!worker->in_use || (only_older && worker->generation == pool->generation))
			continue;
		if (worker->pid < 0) {
			/* Not started yet: nothing to stop, and never to be started. */
			worker->in_use = false;
			continue;
		}
		kill(worker->pid, signo);
		if (signo == SIGUSR1)
			worker->retiring = true;
		signalled++;
	}
	return signalled;
}

/*
 * Retires the older generations once every worker of the newest one is
 * ready, so the socket is never without a worker during a reload.
 */
static void pool_check_generation(struct pool *pool)
{
	long retired;
	size_t i;

	if (pool->generation_ready || pool->stopping)
		return;
	for (i = 0; i < POOL_CAPACITY; i++) {
		const struct pool_worker *worker = &pool->workers_table[i];

		if (worker->in_use && worker->generation == pool->generation && !worker->ready)
			return;
	}
	pool->generation_ready = true;
	retired = pool_signal_workers(pool, SIGUSR1, true);
	log_info("generation %u ready with %ld workers; retiring %ld older workers",
		pool->generation, pool->workers, retired);
	pool_notify("READY=1");
}

static void pool_read_ready(struct pool *pool)
{
	pid_t pid;
	struct pool_worker *worker;

	while (read(pool->ready_pipe[0], &pid, sizeof(pid)) == (ssize_t)sizeof(pid)) {
		worker = pool_find(pool, pid);
		if (worker != NULL)
			worker->ready = true;
	}
	pool_check_generation(pool);
}

/* Reads the configuration again and starts a new generation with it. */
static void pool_reload(struct pool *pool)
{
	struct config cfg;
	char err[512], state[64];
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	snprintf(state, sizeof(state), "RELOADING=1\nMONOTONIC_USEC=%lld",
		(long long)now.tv_sec * 1000000 + now.tv_nsec / 1000);
	pool_notify(state);
	log_info("reloading configuration %s", pool->config_path);
	if (config_load(&cfg, pool->config_path, err, sizeof(err)) != 0) {
		log_error("reload failed, keeping the running workers: %s", err);
		config_free(&cfg);
		pool_notify("READY=1");
		return;
	}
	if (log_setup(NULL, cfg.log.target, cfg.log.level) != 0)
		log_warning("reload: invalid [log] settings ignored");

	/* A generation still starting is replaced; the one serving stays until the new is ready. */
	if (!pool->generation_ready) {
		for (size_t i = 0; i < POOL_CAPACITY; i++) {
			struct pool_worker *worker = &pool->workers_table[i];

			if (!worker->in_use || worker->generation != pool->generation)
				continue;
			if (worker->pid < 0)
				worker->in_use = false;
			else
				worker->retiring = kill(worker->pid, SIGUSR1) == 0;
		}
	}
	pool->workers = cfg.server.workers;
	pool->max_requests = cfg.server.max_requests;
	pool->drain_timeout = cfg.server.drain_timeout;
	pool->generation++;
	pool->generation_ready = false;
	log_info("starting generation %u with %ld workers (the listening socket stays as it is)",
		pool->generation, pool->workers);
	pool_add_generation(pool, pool->workers);
	config_free(&cfg);
}

static void pool_stop(struct pool *pool, int signo)
{
	long signalled;

	pool->stopping = true;
	pool_notify("STOPPING=1");
	/*
	 * New connections now fail at once, so the queue on the socket only shrinks.
	 * NOTE: a TCP socket or one from systemd stays open, so connections made
	 * during the drain wait in its queue and are reset when the last worker exits.
	 */
	if (pool->unix_path != NULL && unlink(pool->unix_path) != 0)
		log_warning("cannot remove %s: %s", pool->unix_path, strerror(errno));
	signalled = pool_signal_workers(pool, SIGTERM, false);
	pool->drain_deadline_ms = pool_now_ms() + pool->drain_timeout * 1000;
	log_info("stopping on signal %d: draining %ld workers for at most %ld s", signo, signalled,
		pool->drain_timeout);
}

static long pool_live_workers(const struct pool *pool)
{
	long live = 0;
	size_t i;

	for (i = 0; i < POOL_CAPACITY; i++) {
		if (pool->workers_table[i].in_use && pool->workers_table[i].pid > 0)
			live++;
	}
	return live;
}

/* Milliseconds until the next start or the drain deadline; -1 when nothing is due. */
static int pool_poll_timeout(const struct pool *pool)
{
	long long now = pool_now_ms(), next = -1;
	size_t i;

	if (pool->stopping) {
		next = pool->drain_deadline_ms;
	} else {
		for (i = 0; i < POOL_CAPACITY; i++) {
			const struct pool_worker *worker = &pool->workers_table[i];

			if (worker->in_use && worker->pid < 0 && (next < 0 || worker->start_at_ms < next))
				next = worker->start_at_ms;
		}
	}
	if (next < 0)
		return -1;
	return next <= now ? 0 : (int)(next - now);
}

/* Handles the signals queued on the signalfd. */
static int pool_read_signals(struct pool *pool)
{
	struct signalfd_siginfo info;

	while (read(pool->signal_fd, &info, sizeof(info)) == (ssize_t)sizeof(info)) {
		switch (info.ssi_signo) {
		case SIGCHLD:
			pool_reap(pool);
			break;
		case SIGHUP:
			if (!pool->stopping)
				pool_reload(pool);
			break;
		case SIGTERM:
		case SIGINT:
			if (!pool->stopping)
				pool_stop(pool, (int)info.ssi_signo);
			break;
		default:
			break;
		}
	}
	return 0;
}

/* Kills the workers still alive at the drain deadline and waits for them. */
static void pool_kill_remaining(struct pool *pool)
{
	long killed = pool_signal_workers(pool, SIGKILL, false);
	int status;
	pid_t pid;

	log_warning("drain_timeout of %ld s passed; killing %ld workers still busy",
		pool->drain_timeout, killed);
	while (pool_live_workers(pool) > 0) {
		pid = waitpid(-1, &status, 0);
		if (pid < 0)
			break;
		pool_on_exit(pool, pid, status);
	}
}

static void pool_supervise(struct pool *pool)
{
	struct pollfd fds[2];

	fds[0].fd = pool->signal_fd;
	fds[0].events = POLLIN;
	fds[1].fd = pool->ready_pipe[0];
	fds[1].events = POLLIN;

	pool_start_due(pool);
	while (!pool->stopping || pool_live_workers(pool) > 0) {
		if (pool->stopping && pool_now_ms() >= pool->drain_deadline_ms) {
			pool_kill_remaining(pool);
			break;
		}
		if (poll(fds, 2, pool_poll_timeout(pool)) < 0 && errno != EINTR) {
			log_error("supervisor poll failed: %s", strerror(errno));
			break;
		}
		pool_read_signals(pool);
		pool_reap(pool);
		pool_read_ready(pool);
		pool_start_due(pool);
	}
}

/* Blocks the supervisor's signals and opens the signalfd and the ready pipe. */
static int pool_open_channels(struct pool *pool)
{
	sigset_t signals;

	sigemptyset(&signals);
	sigaddset(&signals, SIGCHLD);
	sigaddset(&signals, SIGHUP);
	sigaddset(&signals, SIGTERM);
	sigaddset(&signals, SIGINT);
	if (sigprocmask(SIG_BLOCK, &signals, NULL) != 0) {
		log_error("cannot block the supervisor's signals: %s", strerror(errno));
		return -1;
	}
	pool->signal_fd = signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);
	if (pool->signal_fd < 0) {
		log_error("cannot open a signalfd: %s", strerror(errno));
		return -1;
	}
	if (pipe(pool->ready_pipe) != 0 ||
		fcntl(pool->ready_pipe[0], F_SETFL, O_NONBLOCK) != 0) {
		log_error("cannot open the ready pipe: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int pool_run(const struct config *cfg, pool_worker_main worker_main, void *context)
{
	struct pool *pool = calloc(1, sizeof(*pool));
	int rc = -1;

	if (pool == NULL) {
		log_error("out of memory");
		return -1;
	}
	pool->config_path = cfg->path;
	pool->listen_fd = -1;
	pool->signal_fd = -1;
	pool->ready_pipe[0] = -1;
	pool->ready_pipe[1] = -1;
	pool->workers = cfg->server.workers;
	pool->max_requests = cfg->server.max_requests;
	pool->drain_timeout = cfg->server.drain_timeout;
	pool->worker_main = worker_main;
	pool->context = context;

	pool->listen_fd = pool_open_listener(pool, cfg->server.listen);
	if (pool->listen_fd < 0 || pool_open_channels(pool) != 0)
		goto out;

	log_info("supervisor starting workers=%ld max_requests=%ld drain_timeout=%ld listen=%s",
		pool->workers, pool->max_requests, pool->drain_timeout,
		pool->activated ? "fd 3 from systemd" : cfg->server.listen);
	pool->generation = 1;
	pool_add_generation(pool, pool->workers);
	pool_supervise(pool);
	log_info("supervisor stopped");
	rc = 0;
out:
	if (pool->unix_path != NULL && pool->listen_fd >= 0 && !pool->stopping)
		unlink(pool->unix_path);
	if (pool->listen_fd >= 0)
		close(pool->listen_fd);
	if (pool->signal_fd >= 0)
		close(pool->signal_fd);
	if (pool->ready_pipe[0] >= 0)
		close(pool->ready_pipe[0]);
	if (pool->ready_pipe[1] >= 0)
		close(pool->ready_pipe[1]);
	free(pool->unix_path);
	free(pool);
	return rc;
}
