/* Logging to stderr or syslog, one line per event, key=value where it helps. */
#ifndef USEROPS_LOG_H
#define USEROPS_LOG_H

enum log_level {
	LOG_LEVEL_ERROR,
	LOG_LEVEL_WARNING,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

/*
 * Sets the program name, the target ("stderr" or "syslog") and the lowest
 * level written ("error", "warning", "info" or "debug"). NULL keeps the
 * current value. Returns 0, or -1 when target or level is unknown.
 */
int log_setup(const char *program, const char *target, const char *level);

int log_enabled(enum log_level level);

void log_write(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_error(...) log_write(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warning(...) log_write(LOG_LEVEL_WARNING, __VA_ARGS__)
#define log_info(...) log_write(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) \
	do { \
		if (log_enabled(LOG_LEVEL_DEBUG)) \
			log_write(LOG_LEVEL_DEBUG, __VA_ARGS__); \
	} while (0)

#endif
