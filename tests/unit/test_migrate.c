/* Unit tests of migrate_split: statement boundaries, quotes, comments and line numbers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "migrate.h"

/* Splits sql and checks each statement's text and starting line against the table. */
static void check_split(const char *sql, const char *const *texts, const unsigned long *lines,
	long count)
{
	struct migrate_statement *statements = NULL;
	char err[128] = "";
	long found = migrate_split(sql, strlen(sql), &statements, err, sizeof(err));

	assert_int_equal(found, count);
	for (long i = 0; i < count; i++) {
		char text[256];

		assert_true(statements[i].length < sizeof(text));
		memcpy(text, sql + statements[i].offset, statements[i].length);
		text[statements[i].length] = '\0';
		assert_string_equal(text, texts[i]);
		assert_int_equal(statements[i].line, lines[i]);
	}
	free(statements);
}

static void split_two_statements(void **state)
{
	static const char *const texts[] = { "CREATE TABLE a (x INT)", "\nCREATE TABLE b (y INT)" };
	static const unsigned long lines[] = { 1, 2 };

	(void)state;
	check_split("CREATE TABLE a (x INT);\nCREATE TABLE b (y INT);\n", texts, lines, 2);
}

static void split_last_without_semicolon(void **state)
{
	static const char *const texts[] = { "SELECT 1", "\nSELECT 2\n" };
	static const unsigned long lines[] = { 1, 2 };

	(void)state;
	check_split("SELECT 1;\nSELECT 2\n", texts, lines, 2);
}

static void split_semicolon_in_quotes(void **state)
{
	static const char *const texts[] = {
		"INSERT INTO t VALUES (';\n', \"a;\n\", `c;\n`, 'it''s;\n', 'x\\';\n')",
	};
	static const unsigned long lines[] = { 1 };

	(void)state;
	check_split("INSERT INTO t VALUES (';\n', \"a;\n\", `c;\n`, 'it''s;\n', 'x\\';\n');\n",
		texts, lines, 1);
}

static void split_semicolon_in_comments(void **state)
{
	static const char *const texts[] = {
		"-- first; comment;\n# second;\n/* third;\n */ SELECT 1",
		" -- trailing\nSELECT 2",
	};
	static const unsigned long lines[] = { 4, 5 };

	(void)state;
	check_split("-- first; comment;\n# second;\n/* third;\n */ SELECT 1; -- trailing\nSELECT 2;",
		texts, lines, 2);
}

static void split_mid_line_semicolon(void **state)
{
	static const char *const texts[] = { "SELECT 1; SELECT 2" };
	static const unsigned long lines[] = { 1 };

	(void)state;
	check_split("SELECT 1; SELECT 2;\n", texts, lines, 1);
}

static void split_drops_empty(void **state)
{
	static const char *const texts[] = { "\n\nSELECT 3" };
	static const unsigned long lines[] = { 4 };

	(void)state;
	check_split("-- only a comment;\n;\n\nSELECT 3;\n/* tail */\n", texts, lines, 1);
}

static void split_executable_comment(void **state)
{
	static const char *const texts[] = { "/*!40101 SET NAMES utf8mb4 */", "\n/*M!100100 SET x = 1 */" };
	static const unsigned long lines[] = { 1, 2 };

	(void)state;
	check_split("/*!40101 SET NAMES utf8mb4 */;\n/*M!100100 SET x = 1 */;\n", texts, lines, 2);
}

static void split_dashes_need_space(void **state)
{
	static const char *const texts[] = { "SELECT 1--1" };
	static const unsigned long lines[] = { 1 };

	(void)state;
	check_split("SELECT 1--1;\n", texts, lines, 1);
}

static void split_crlf(void **state)
{
	static const char *const texts[] = { "SELECT 1", "\r\nSELECT 2" };
	static const unsigned long lines[] = { 1, 2 };

	(void)state;
	check_split("SELECT 1;\r\nSELECT 2;\r\n", texts, lines, 2);
}

static void split_unterminated(void **state)
{
	static const char *const cases[] = { "SELECT 'abc;\n", "SELECT 1;\n/* open\n", "SELECT `x;\n" };
	static const char *const messages[] = {
		"unterminated quoted string or name starting on line 1",
		"unterminated comment starting on line 2",
		"unterminated quoted string or name starting on line 1",
	};

	(void)state;
	for (size_t i = 0; i < 3; i++) {
		struct migrate_statement *statements = NULL;
		char err[128] = "";

		assert_int_equal(migrate_split(cases[i], strlen(cases[i]), &statements, err,
			sizeof(err)), -1);
		assert_string_equal(err, messages[i]);
		assert_null(statements);
	}
}

static void split_empty_text(void **state)
{
	struct migrate_statement *statements = NULL;
	char err[128] = "";

	(void)state;
	assert_int_equal(migrate_split("", 0, &statements, err, sizeof(err)), 0);
	free(statements);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(split_two_statements),
		cmocka_unit_test(split_last_without_semicolon),
		cmocka_unit_test(split_semicolon_in_quotes),
		cmocka_unit_test(split_semicolon_in_comments),
		cmocka_unit_test(split_mid_line_semicolon),
		cmocka_unit_test(split_drops_empty),
		cmocka_unit_test(split_executable_comment),
		cmocka_unit_test(split_dashes_need_space),
		cmocka_unit_test(split_crlf),
		cmocka_unit_test(split_unterminated),
		cmocka_unit_test(split_empty_text),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
