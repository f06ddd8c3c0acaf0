/* Unit tests of the configuration file reader and secret files. */
#include "autoconfig.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "crypto.h"

static char test_dir[] = "/tmp/userops-test-config-XXXXXX";

static char *write_file(const char *name, const char *text)
{
	char *path = NULL;
	FILE *file;

	assert_true(asprintf(&path, "%s/%s", test_dir, name) > 0);
	file = fopen(path, "w");
	assert_non_null(file);
	fputs(text, file);
	fclose(file);
	return path;
}

static void load_expect_error(const char *text, const char *expected)
{
	char *path = write_file("bad.conf", text);
	struct config cfg;
	char err[512];

	assert_int_equal(config_load(&cfg, path, err, sizeof(err)), -1);
	if (strstr(err, expected) == NULL)
		fail_msg("error \"%s\" does not contain \"%s\"", err, expected);
	config_free(&cfg);
	free(path);
}

static void test_config_defaults(void **state)
{
	char *path = write_file("empty.conf", "# nothing set\n");
	struct config cfg;
	char err[512];

	(void)state;
	assert_int_equal(config_load(&cfg, path, err, sizeof(err)), 0);
	assert_int_equal(cfg.server.max_body, 16384);
	assert_int_equal(cfg.server.workers, 4);
	assert_int_equal(cfg.database.port, 3306);
	assert_string_equal(cfg.database.name, "userops");
	assert_string_equal(cfg.auth.algorithms, "HS256");
	assert_int_equal(cfg.auth.leeway, 30);
	assert_int_equal(cfg.operations.code_length, 6);
	assert_int_equal(cfg.operations.lifetime, 600);
	assert_int_equal(cfg.operations.max_attempts, 5);
	assert_true(cfg.operations.accept_previous_code);
	assert_int_equal(cfg.operations.resend_cooldown, 60);
	assert_int_equal(cfg.operations.max_resends, 3);
	assert_int_equal(cfg.operations.totp_window, 1);
	assert_string_equal(cfg.smtp.tls, "starttls");
	assert_int_equal(cfg.smtp.timeout, 30);
	assert_int_equal(cfg.mailer.poll_interval_ms, 500);
	assert_int_equal(cfg.mailer.max_tries, 10);
	assert_string_equal(cfg.log.target, "stderr");
	config_free(&cfg);
	free(path);
}

static void test_config_values(void **state)
{
	char *path = write_file("set.conf",
		"[server]\nmax_body = 4096\nbase_path = /api\n"
		"[operations]\naccept_previous_code = no\nresend_cooldown = 5\n"
		"[smtp]\ntls = none\n");
	struct config cfg;
	char err[512];

	(void)state;
	assert_int_equal(config_load(&cfg, path, err, sizeof(err)), 0);
	assert_int_equal(cfg.server.max_body, 4096);
	assert_string_equal(cfg.server.base_path, "/api");
	assert_false(cfg.operations.accept_previous_code);
	assert_int_equal(cfg.operations.resend_cooldown, 5);
	assert_string_equal(cfg.smtp.tls, "none");
	config_free(&cfg);
	free(path);
}

static void test_config_rejects(void **state)
{
	(void)state;
	load_expect_error("[server]\nworkerz = 2\n", "bad.conf:2: unknown key [server] workerz");
	load_expect_error("[nowhere]\nkey = 1\n", "unknown key [nowhere] key");
	load_expect_error("[server]\nmax_body = -1\n", "[server] max_body must be an integer");
	load_expect_error("[server]\nmax_body = 12k\n", "[server] max_body must be an integer");
	load_expect_error("[operations]\naccept_previous_code = maybe\n", "must be yes or no");
	load_expect_error("[smtp]\ntls = ssl\n", "[smtp] tls must be none, starttls or implicit");
	load_expect_error("[log]\nlevel = loud\n", "[log] level must be");
	load_expect_error("[server]\nbase_path = api\n", "[server] base_path must start with '/'");
}

static void test_config_missing_file(void **state)
{
	struct config cfg;
	char err[512];

	(void)state;
	assert_int_equal(config_load(&cfg, "/nonexistent/userops.conf", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "cannot open configuration file /nonexistent/userops.conf"));
	config_free(&cfg);
}

static void test_secret_trimmed(void **state)
{
	char *path = write_file("secret", "  \n0123456789abcdef0123456789abcdef\n\n");
	unsigned char *secret = NULL;
	size_t len = 0;
	char err[512];

	(void)state;
	assert_int_equal(config_read_secret(path, 32, &secret, &len, err, sizeof(err)), 0);
	assert_int_equal(len, 32);
	assert_memory_equal(secret, "0123456789abcdef0123456789abcdef", 32);
	free(secret);
	free(path);
}

static void test_secret_too_short(void **state)
{
	char *path = write_file("short", "abc\n");
	unsigned char *secret = NULL;
	size_t len = 0;
	char err[512];

	(void)state;
	assert_int_equal(config_read_secret(path, 32, &secret, &len, err, sizeof(err)), -1);
	assert_null(secret);
	assert_non_null(strstr(err, "is too short: 3 bytes, at least 32 needed"));
	free(path);
}

static void test_secret_missing(void **state)
{
	unsigned char *secret = NULL;
	size_t len = 0;
	char err[512];

	(void)state;
	assert_int_equal(config_read_secret("/nonexistent/pepper", 1, &secret, &len, err,
		sizeof(err)), -1);
	assert_non_null(strstr(err, "cannot read secret file /nonexistent/pepper"));
}

static void test_secret_credentials_directory(void **state)
{
	char *resolved;

	(void)state;
	setenv("CREDENTIALS_DIRECTORY", "/run/credentials/userops.service", 1);
	resolved = config_secret_path("pepper");
	assert_string_equal(resolved, "/run/credentials/userops.service/pepper");
	free(resolved);
	resolved = config_secret_path("/etc/userops/pepper");
	assert_string_equal(resolved, "/etc/userops/pepper");
	free(resolved);
	unsetenv("CREDENTIALS_DIRECTORY");
	resolved = config_secret_path("pepper");
	assert_string_equal(resolved, "pepper");
	free(resolved);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_defaults),
		cmocka_unit_test(test_config_values),
		cmocka_unit_test(test_config_rejects),
		cmocka_unit_test(test_config_missing_file),
		cmocka_unit_test(test_secret_trimmed),
		cmocka_unit_test(test_secret_too_short),
		cmocka_unit_test(test_secret_missing),
		cmocka_unit_test(test_secret_credentials_directory),
	};
	int failed;

	if (mkdtemp(test_dir) == NULL)
		return 1;
	failed = cmocka_run_group_tests(tests, NULL, NULL);
	char command[128];

	snprintf(command, sizeof(command), "rm -rf %s", test_dir);
	if (system(command) != 0)
		failed++;
	return failed;
}
