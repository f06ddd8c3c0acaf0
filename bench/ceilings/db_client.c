/*
 * db_client: the database ceiling. Runs the SQL transaction of a userops
 * confirm (the statements that confirm_sql.c lists) from THREADS threads,
 * one MariaDB Connector/C connection each, for SECONDS seconds, with no
 * HTTP and no FastCGI in the way.
 *
 * At the concurrency of a benchmark line, its transactions per second bound
 * what any confirm endpoint can reach on that MariaDB. The gap to
 * confirm_sql is the cost of lighttpd and FastCGI. The gap to userops adds
 * the cost of userops' own code.
 *
 * The operations come from UUID_FILE: one pending operation uuid per line
 * (8-4-4-4-12 hex), optionally followed by a tab and more columns, which
 * are ignored, so the seeder's TSV works as it is. Blank lines and lines
 * starting with '#' are skipped. Each uuid is confirmed once, in file order
 * across the threads. The run ends after SECONDS or when every uuid is
 * used, whichever comes first; the second case is reported on stderr.
 *
 * Connections are opened and the statements prepared before the clock
 * starts. Latency runs from START TRANSACTION to the return of COMMIT.
 * Output, one line on stdout:
 *   threads=N seconds=S transactions=N failed=N tps=X p50_ms=X p99_ms=X
 *   cpu_s_per_1000=X
 * tps counts committed transactions per second of wall time. The
 * percentiles are nearest-rank over the committed transactions.
 * cpu_s_per_1000 is this process's user and system CPU seconds per 1,000
 * committed transactions, so MariaDB's CPU is not in it. failed counts the
 * transactions that did not commit, for any reason. Exit status: 0 when
 * a transaction committed and no connection was lost, 1 otherwise, 2 on a
 * usage error.
 *
 * Settings come from the environment as for confirm_sql:
 * USEROPS_BENCH_DB_SOCKET (required), USEROPS_BENCH_DB_NAME,
 * USEROPS_BENCH_DB_USER (default userops), USEROPS_BENCH_DB_PASSWORD_FILE.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <mysql.h>

#include "confirm_txn.h"

#define THREADS_MAX 1024
#define SECONDS_MAX 86400
/* Errors printed per thread before the rest are only counted. */
#define ERRORS_PRINTED_MAX 5

static const char usage[] =
	"Usage: db_client [-n THREADS] [-d SECONDS] UUID_FILE\n"
	"Confirms each pending operation in UUID_FILE once with the SQL of a userops\n"
	"confirm, over THREADS MariaDB connections, for at most SECONDS.\n"
	"\n"
	"  -n THREADS  threads, one connection each (default 1, at most 1024)\n"
	"  -d SECONDS  duration in seconds (default 10, at most 86400)\n"
	"\n"
	"Environment: USEROPS_BENCH_DB_SOCKET (required), USEROPS_BENCH_DB_NAME,\n"
	"USEROPS_BENCH_DB_USER (default userops), USEROPS_BENCH_DB_PASSWORD_FILE.\n";

struct run {
	const struct confirm_settings *settings;
	unsigned char (*uuids)[16];
	size_t uuid_count;
	double *latency_ms;          /* per uuid; negative when its transaction failed */
	atomic_size_t next;          /* index of the next uuid to claim */
	struct timespec deadline;    /* CLOCK_MONOTONIC, set between the two barriers */
	pthread_barrier_t connected; /* all threads have tried to connect */
	pthread_barrier_t start;     /* the clock runs and the deadline is set */
	atomic_int connect_failures;
};

struct worker {
	struct run *run;
	pthread_t thread;
	int index;
	struct confirm_connection *conn;
	unsigned long long failed;
	int exit_error;              /* the connection was lost and the thread stopped early */
};

static double elapsed_ms(const struct timespec *from, const struct timespec *to)
{
	return (double)(to->tv_sec - from->tv_sec) * 1e3 +
		(double)(to->tv_nsec - from->tv_nsec) / 1e6;
}

static bool before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* Writes the 16 bytes of uuid in 8-4-4-4-12 hex form, NUL-terminated, into text. */
static void format_uuid(const unsigned char uuid[16], char text[37])
{
	static const char hex[] = "0123456789abcdef";
	size_t byte, out = 0;

	for (byte = 0; byte < 16; byte++) {
		if (byte == 4 || byte == 6 || byte == 8 || byte == 10)
			text[out++] = '-';
		text[out++] = hex[uuid[byte] >> 4];
		text[out++] = hex[uuid[byte] & 0x0f];
	}
	text[out] = '\0';
}

static void *worker_main(void *arg)
{
	struct worker *worker = arg;
	struct run *run = worker->run;
	struct timespec started, ended;
	enum confirm_result result;
	char uuid_text[37];
	char request_id[33];
	char err[512];
	size_t i;

	/* Every thread connects first, so the clock starts with all of them ready. */
	mysql_thread_init();
	worker->conn = confirm_connect(run->settings, err, sizeof(err));
	if (worker->conn == NULL) {
		fprintf(stderr, "db_client: thread %d: %s\n", worker->index, err);
		atomic_fetch_add(&run->connect_failures, 1);
	}
	pthread_barrier_wait(&run->connected);
	pthread_barrier_wait(&run->start);
	if (worker->conn == NULL || atomic_load(&run->connect_failures) > 0) {
		mysql_thread_end();
		return NULL;
	}

	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &started);
		if (!before(&started, &run->deadline))
			break;
		i = atomic_fetch_add(&run->next, 1);
		if (i >= run->uuid_count)
			break;
		snprintf(request_id, sizeof(request_id), "%08x%024zx", (unsigned)worker->index, i);
		result = confirm_run(worker->conn, run->uuids[i], "127.0.0.1", request_id, err,
			sizeof(err));
		clock_gettime(CLOCK_MONOTONIC, &ended);
		if (result == CONFIRM_OK) {
			run->latency_ms[i] = elapsed_ms(&started, &ended);
			continue;
		}
		run->latency_ms[i] = -1;
		worker->failed++;
		if (worker->failed <= ERRORS_PRINTED_MAX) {
			format_uuid(run->uuids[i], uuid_text);
			fprintf(stderr, "db_client: thread %d: confirm of %s failed: %s\n",
				worker->index, uuid_text, err);
		}
		if (result == CONFIRM_CONNECTION_LOST) {
			fprintf(stderr, "db_client: thread %d: connection lost; the thread stops\n",
				worker->index);
			worker->exit_error = 1;
			break;
		}
	}
	mysql_thread_end();
	return NULL;
}

/*
 * Reads UUID_FILE into *uuids. Returns the number of uuids, or 0 with the
 * reason printed.
 */
static size_t read_uuids(const char *path, unsigned char (**uuids)[16])
{
	unsigned char (*list)[16] = NULL;
	size_t count = 0, capacity = 0, line_number = 0;
	char *line = NULL;
	size_t line_size = 0;
	FILE *file;
	char end;

	file = fopen(path, "r");
	if (file == NULL) {
		fprintf(stderr, "db_client: cannot open %s: %s\n", path, strerror(errno));
		return 0;
	}
	while (getline(&line, &line_size, file) >= 0) {
		line_number++;
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '\0' || line[0] == '#')
			continue;
		if (count == capacity) {
			unsigned char (*grown)[16];

			capacity = capacity == 0 ? 4096 : capacity * 2;
			grown = realloc(list, capacity * sizeof(*list));
			if (grown == NULL) {
				fprintf(stderr, "db_client: out of memory after %zu uuids\n", count);
				goto fail;
			}
			list = grown;
		}
		end = strnlen(line, 37) >= 36 ? line[36] : 'x';
		if ((end != '\0' && end != '\t') || !confirm_parse_uuid(line, list[count])) {
			fprintf(stderr, "db_client: %s:%zu: invalid uuid \"%.40s\"; expected 8-4-4-4-12 "
				"hex digits, then the end of the line or a tab\n", path, line_number, line);
			goto fail;
		}
		count++;
	}
	if (ferror(file)) {
		fprintf(stderr, "db_client: cannot read %s: %s\n", path, strerror(errno));
		goto fail;
	}
	if (count == 0) {
		fprintf(stderr, "db_client: %s has no uuids\n", path);
		goto fail;
	}
	free(line);
	fclose(file);
	*uuids = list;
	return count;

fail:
	free(line);
	free(list);
	fclose(file);
	return 0;
}

static int compare_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Returns the nearest-rank percentile q (0 < q <= 1) of sorted[0..count-1], with count > 0. */
static double percentile(const double *sorted, size_t count, double q)
{
	size_t rank = (size_t)(q * (double)count + 0.999999999);

	if (rank < 1)
		rank = 1;
	if (rank > count)
		rank = count;
	return sorted[rank - 1];
}

static double cpu_seconds(void)
{
	struct rusage usage_now;

	getrusage(RUSAGE_SELF, &usage_now);
	return (double)usage_now.ru_utime.tv_sec + (double)usage_now.ru_utime.tv_usec / 1e6 +
		(double)usage_now.ru_stime.tv_sec + (double)usage_now.ru_stime.tv_usec / 1e6;
}

/* Parses a whole decimal number in [1, max]; returns -1 when text is something else. */
static long parse_count(const char *text, long max)
{
	char *end;
	long value;

	errno = 0;
	value = strtol(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || value < 1 || value > max)
		return -1;
	return value;
}

/* Prints the result line from the latencies of the claimed uuids. */
static int report(struct run *run, struct worker *workers, long threads, double wall_ms,
	double cpu_s)
{
	size_t claimed = atomic_load(&run->next);
	unsigned long long failed = 0;
	double *committed;
	size_t count = 0, i;
	long t;

	if (claimed > run->uuid_count)
		claimed = run->uuid_count;
	for (t = 0; t < threads; t++)
		failed += workers[t].failed;
	committed = malloc((claimed > 0 ? claimed : 1) * sizeof(*committed));
	if (committed == NULL) {
		fprintf(stderr, "db_client: out of memory for %zu latencies\n", claimed);
		return 1;
	}
	for (i = 0; i < claimed; i++)
		if (run->latency_ms[i] >= 0)
			committed[count++] = run->latency_ms[i];
	qsort(committed, count, sizeof(*committed), compare_double);

	printf("threads=%ld seconds=%.2f transactions=%zu failed=%llu tps=%.1f p50_ms=%.3f "
		"p99_ms=%.3f cpu_s_per_1000=%.4f\n", threads, wall_ms / 1e3, count, failed,
		wall_ms > 0 ? (double)count / (wall_ms / 1e3) : 0.0,
		count > 0 ? percentile(committed, count, 0.50) : 0.0,
		count > 0 ? percentile(committed, count, 0.99) : 0.0,
		count > 0 ? cpu_s / (double)count * 1000.0 : 0.0);
	free(committed);
	return count > 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct confirm_settings settings;
	struct worker *workers = NULL;
	struct timespec started, ended;
	struct run run;
	long threads = 1, seconds = 10, t, created = 0;
	double cpu_before, wall_ms;
	char err[512];
	int option, rc = 1;

	while ((option = getopt(argc, argv, "n:d:h")) != -1) {
		switch (option) {
		case 'n':
			threads = parse_count(optarg, THREADS_MAX);
			if (threads < 0) {
				fprintf(stderr, "db_client: invalid -n %s; give 1 to %d threads\n", optarg,
					THREADS_MAX);
				return 2;
			}
			break;
		case 'd':
			seconds = parse_count(optarg, SECONDS_MAX);
			if (seconds < 0) {
				fprintf(stderr, "db_client: invalid -d %s; give 1 to %d seconds\n", optarg,
					SECONDS_MAX);
				return 2;
			}
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			fputs(usage, stderr);
			return 2;
		}
	}
	if (optind != argc - 1) {
		fputs(usage, stderr);
		return 2;
	}

	memset(&run, 0, sizeof(run));
	if (confirm_settings_from_env(&settings, err, sizeof(err)) != 0) {
		fprintf(stderr, "db_client: %s\n", err);
		return 1;
	}
	run.settings = &settings;
	run.uuid_count = read_uuids(argv[optind], &run.uuids);
	if (run.uuid_count == 0)
		goto out;
	run.latency_ms = calloc(run.uuid_count, sizeof(*run.latency_ms));
	workers = calloc((size_t)threads, sizeof(*workers));
	if (run.latency_ms == NULL || workers == NULL) {
		fprintf(stderr, "db_client: out of memory for %zu uuids\n", run.uuid_count);
		goto out;
	}
	atomic_init(&run.next, 0);
	atomic_init(&run.connect_failures, 0);
	/* The main thread waits at both barriers too, and starts the clock between them. */
	if (pthread_barrier_init(&run.connected, NULL, (unsigned)threads + 1) != 0) {
		fprintf(stderr, "db_client: cannot create the start barriers\n");
		goto out;
	}
	if (pthread_barrier_init(&run.start, NULL, (unsigned)threads + 1) != 0) {
		fprintf(stderr, "db_client: cannot create the start barriers\n");
		pthread_barrier_destroy(&run.connected);
		goto out;
	}
	if (mysql_library_init(0, NULL, NULL) != 0) {
		fprintf(stderr, "db_client: cannot initialise the MariaDB client library\n");
		goto out_barrier;
	}

	for (t = 0; t < threads; t++) {
		workers[t].run = &run;
		workers[t].index = (int)t;
		if (pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]) != 0) {
			fprintf(stderr, "db_client: cannot start thread %ld\n", t);
			/* The started threads wait at a barrier that now never opens: exit. */
			exit(1);
		}
		created++;
	}

	pthread_barrier_wait(&run.connected);
	cpu_before = cpu_seconds();
	clock_gettime(CLOCK_MONOTONIC, &started);
	run.deadline = started;
	run.deadline.tv_sec += seconds;
	pthread_barrier_wait(&run.start);
	for (t = 0; t < created; t++)
		pthread_join(workers[t].thread, NULL);
	clock_gettime(CLOCK_MONOTONIC, &ended);
	wall_ms = elapsed_ms(&started, &ended);

	if (atomic_load(&run.connect_failures) > 0) {
		fprintf(stderr, "db_client: %d of %ld threads could not connect; nothing was run\n",
			atomic_load(&run.connect_failures), threads);
	} else {
		if (atomic_load(&run.next) >= run.uuid_count)
			fprintf(stderr, "db_client: used all %zu uuids after %.2f s, before the %ld s "
				"duration ended; seed more pending operations for a full run\n",
				run.uuid_count, wall_ms / 1e3, seconds);
		rc = report(&run, workers, threads, wall_ms, cpu_seconds() - cpu_before);
	}
	for (t = 0; t < created; t++) {
		confirm_disconnect(workers[t].conn);
		if (workers[t].exit_error)
			rc = 1;
	}
	mysql_library_end();
out_barrier:
	pthread_barrier_destroy(&run.connected);
	pthread_barrier_destroy(&run.start);
out:
	free(workers);
	free(run.latency_ms);
	free(run.uuids);
	confirm_settings_free(&settings);
	return rc;
}
