/* Logging to stderr or syslog. */
#include "autoconfig.h"

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
	char message[2048];
	va_list ap;

	if (!log_enabled(level))
		return;

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);

	if (log_to_syslog) {
		syslog(log_syslog_priorities[level], "%s", message);
		return;
	}

	/* One write per line, so lines from several workers sharing stderr do not interleave. */
	char line[2300];
	struct timespec now;
	struct tm tm;
	int len;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	len = snprintf(line, sizeof(line),
		"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%ld] %s: %s\n",
		tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
		tm.tm_hour, tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000L,
		log_program, (long)getpid(), log_level_names[level], message);
	if (len < 0)
		return;
	if ((size_t)len >= sizeof(line))
		len = sizeof(line) - 1;
	(void)!write(STDERR_FILENO, line, (size_t)len);
}
