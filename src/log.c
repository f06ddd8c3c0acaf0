/* Logging to stderr or syslog. */
#include "autoconfig.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static const char *log_program = "userops";
static enum log_level log_threshold = LOG_LEVEL_INFO;
static int log_to_syslog;
/* The process id for the stderr prefix: 0 until read, -1 without the fork handler. */
static _Atomic pid_t log_cached_pid;
static pthread_once_t log_fork_handler_once = PTHREAD_ONCE_INIT;

static void log_forget_pid(void)
{
	log_cached_pid = 0;
}

static void log_add_fork_handler(void)
{
	if (pthread_atfork(NULL, NULL, log_forget_pid) != 0)
		log_cached_pid = -1;
}

/* Returns the process id: glibc's getpid() is a system call, and a worker logs every request. */
static long log_pid(void)
{
	pid_t pid;

	pthread_once(&log_fork_handler_once, log_add_fork_handler);
	pid = log_cached_pid;
	if (pid > 0)
		return (long)pid;

	/* Without the fork handler (-1), the id is read every time. */
	if (pid == 0) {
		pid = getpid();
		log_cached_pid = pid;
		return (long)pid;
	}
	return (long)getpid();
}

static const char *const log_level_names[] = {
	[LOG_LEVEL_ERROR] = "error",
	[LOG_LEVEL_WARNING] = "warning",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_DEBUG] = "debug",
};

static const int log_syslog_priorities[] = {
	[LOG_LEVEL_ERROR] = LOG_ERR,
	[LOG_LEVEL_WARNING] = LOG_WARNING,
	[LOG_LEVEL_INFO] = LOG_INFO,
	[LOG_LEVEL_DEBUG] = LOG_DEBUG,
};

int log_setup(const char *program, const char *target, const char *level)
{
	int use_syslog = log_to_syslog;
	enum log_level threshold = log_threshold;

	if (target != NULL) {
		if (strcmp(target, "stderr") == 0)
			use_syslog = 0;
		else if (strcmp(target, "syslog") == 0)
			use_syslog = 1;
		else
			return -1;
	}
	if (level != NULL) {
		size_t i;

		for (i = 0; i < sizeof(log_level_names) / sizeof(log_level_names[0]); i++)
			if (strcmp(level, log_level_names[i]) == 0)
				break;
		if (i == sizeof(log_level_names) / sizeof(log_level_names[0]))
			return -1;
		threshold = (enum log_level)i;
	}

	if (program != NULL)
		log_program = program;
	if (use_syslog && !log_to_syslog)
		openlog(log_program, LOG_PID, LOG_DAEMON);
	else if (!use_syslog && log_to_syslog)
		closelog();
	log_to_syslog = use_syslog;
	log_threshold = threshold;
	return 0;
}

int log_enabled(enum log_level level)
{
	return level <= log_threshold;
}

void log_write(enum log_level level, const char *fmt, ...)
{
	/* The message is formatted straight after the stderr prefix, in one pass. */
	char line[2300];
	struct timespec now;
	struct tm tm;
	va_list ap;
	size_t room;
	int prefix = 0;
	int len;

	if (!log_enabled(level))
		return;

	if (!log_to_syslog) {
		clock_gettime(CLOCK_REALTIME, &now);
		gmtime_r(&now.tv_sec, &tm);
		prefix = snprintf(line, sizeof(line),
			"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%ld] %s: ",
			tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
			tm.tm_hour, tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000L,
			log_program, (long)log_pid(), log_level_names[level]);
		if (prefix < 0 || (size_t)prefix >= sizeof(line))
			return;
	}

	/* One byte stays free for the line end, and a longer message is cut. */
	room = sizeof(line) - (size_t)prefix - 1;
	va_start(ap, fmt);
	len = vsnprintf(line + prefix, room, fmt, ap);
	va_end(ap);
	if (len < 0)
		return;
	if ((size_t)len >= room)
		len = (int)room - 1;

	if (log_to_syslog) {
		syslog(log_syslog_priorities[level], "%s", line);
		return;
	}

	/* One write per line, so lines from several workers sharing stderr do not interleave. */
	line[prefix + len] = '\n';
	(void)!write(STDERR_FILENO, line, (size_t)(prefix + len + 1));
}
