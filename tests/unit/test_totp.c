/* Unit tests of totp.c: the RFC 4226 and RFC 6238 vectors, the window and replay rules. */
#include "autoconfig.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "totp.h"

/* The secret of RFC 4226 appendix D and of the SHA-1 rows of RFC 6238 appendix B. */
static const unsigned char rfc_key[] = "12345678901234567890";
#define RFC_KEY_LEN 20

/* 1111111111 is in step 37037037. Codes of the steps around it come from totp_hotp. */
#define VERIFY_NOW INT64_C(1111111111)
#define VERIFY_STEP INT64_C(37037037)

static void code_at(int64_t step, char code[TOTP_DIGITS + 1])
{
	assert_int_equal(totp_hotp(rfc_key, RFC_KEY_LEN, (uint64_t)step, TOTP_DIGITS, code), 0);
}

static void hotp_rfc4226_vectors(void **state)
{
	static const char *expected[10] = {
		"755224", "287082", "359152", "969429", "338314",
		"254676", "287922", "162583", "399871", "520489",
	};
	char code[TOTP_DIGITS + 1];

	(void)state;
	for (uint64_t counter = 0; counter < 10; counter++) {
		assert_int_equal(totp_hotp(rfc_key, RFC_KEY_LEN, counter, 6, code), 0);
		assert_string_equal(code, expected[counter]);
	}
}

/* The SHA-1 rows of RFC 6238 appendix B, in 8 digits and cut to the last 6. */
static void totp_rfc6238_vectors(void **state)
{
	static const struct {
		int64_t time;
		const char *eight;
		const char *six;
	} cases[] = {
		{ INT64_C(59), "94287082", "287082" },
		{ INT64_C(1111111109), "07081804", "081804" },
		{ INT64_C(1111111111), "14050471", "050471" },
		{ INT64_C(1234567890), "89005924", "005924" },
		{ INT64_C(2000000000), "69279037", "279037" },
		{ INT64_C(20000000000), "65353130", "353130" },
	};
	char code[9];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t step = (uint64_t)totp_step(cases[i].time);

		assert_int_equal(totp_hotp(rfc_key, RFC_KEY_LEN, step, 8, code), 0);
		assert_string_equal(code, cases[i].eight);
		assert_int_equal(totp_hotp(rfc_key, RFC_KEY_LEN, step, TOTP_DIGITS, code), 0);
		assert_string_equal(code, cases[i].six);
	}
}

static void totp_step_boundaries(void **state)
{
	(void)state;
	assert_int_equal(totp_step(0), 0);
	assert_int_equal(totp_step(29), 0);
	assert_int_equal(totp_step(30), 1);
	assert_int_equal(totp_step(59), 1);
	assert_int_equal(totp_step(-1), -1);
	assert_int_equal(totp_step(-30), -1);
	assert_int_equal(totp_step(-31), -2);
	assert_true(totp_step(INT64_C(20000000000)) == INT64_C(666666666));
}

static void hotp_rejects_bad_arguments(void **state)
{
	char code[16];

	(void)state;
	assert_int_equal(totp_hotp(rfc_key, 0, 0, 6, code), -1);
	assert_int_equal(totp_hotp(NULL, 20, 0, 6, code), -1);
	assert_int_equal(totp_hotp(rfc_key, RFC_KEY_LEN, 0, 0, code), -1);
	assert_int_equal(totp_hotp(rfc_key, RFC_KEY_LEN, 0, 10, code), -1);
}

static void verify_current_step(void **state)
{
	int64_t step = -1;

	(void)state;
	assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, VERIFY_NOW, 1, "050471", 0, 0, &step),
		TOTP_ACCEPTED);
	assert_true(step == VERIFY_STEP);
}

static void verify_window_edges(void **state)
{
	char code[TOTP_DIGITS + 1];
	int64_t step = -1;

	(void)state;
	code_at(VERIFY_STEP - 1, code);
	assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, VERIFY_NOW, 1, code, 0, 0, &step),
		TOTP_ACCEPTED);
	assert_true(step == VERIFY_STEP - 1);

	code_at(VERIFY_STEP + 1, code);
	assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, VERIFY_NOW, 1, code, 0, 0, &step),
		TOTP_ACCEPTED);
	assert_true(step == VERIFY_STEP + 1);

	code_at(VERIFY_STEP - 2, code);
	assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, VERIFY_NOW, 1, code, 0, 0, &step),
		TOTP_WRONG);
}

static void verify_three_steps_old(void **state)
{
	char code[TOTP_DIGITS + 1];
	int64_t step = -1;

	(void)state;
	code_at(VERIFY_STEP - 3, code);
	assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, VERIFY_NOW, 1, code, 0, 0, &step),
		TOTP_WRONG);
	assert_true(step == -1);
	assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, VERIFY_NOW, 3, code, 0, 0, &step),
		TOTP_ACCEPTED);
	assert_true(step == VERIFY_STEP - 3);
}

static void verify_window_zero(void **state)
{
	char code[TOTP_DIGITS + 1];
	int64_t step = -1;

	(void)state;
	code_at(VERIFY_STEP - 1, code);
	assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, VERIFY_NOW, 0, code, 0, 0, &step),
		TOTP_WRONG);
	assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, VERIFY_NOW, 0, "050471", 0, 0, &step),
		TOTP_ACCEPTED);
	assert_true(step == VERIFY_STEP);
}

static void verify_replay_rejected(void **state)
{
	char code[TOTP_DIGITS + 1];
	int64_t step = -1;

	(void)state;
	/* The code of the last accepted step. */
	assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, VERIFY_NOW, 1, "050471", 1,
		VERIFY_STEP, &step), TOTP_REPLAYED);
	assert_true(step == -1);

	/* A code from before the last accepted step. */
	code_at(VERIFY_STEP - 1, code);
	assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, VERIFY_NOW, 1, code, 1, VERIFY_STEP,
		&step), TOTP_REPLAYED);
	assert_true(step == -1);
}

static void verify_next_step_accepted(void **state)
{
	char code[TOTP_DIGITS + 1];
	int64_t step = -1;

	(void)state;
	code_at(VERIFY_STEP + 1, code);
	assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, VERIFY_NOW, 1, code, 1, VERIFY_STEP,
		&step), TOTP_ACCEPTED);
	assert_true(step == VERIFY_STEP + 1);

	/* A last step far in the past rejects nothing in the window. */
	assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, VERIFY_NOW, 1, "050471", 1, 5, &step),
		TOTP_ACCEPTED);
	assert_true(step == VERIFY_STEP);
}

/*
 * Under the RFC key, steps 37353814 and 37353816 share the code 137227
 * (found by search). With the window centred between them, a replayed
 * match on the earlier one must not hide a fresh match on the later one.
 */
static void verify_prefers_fresh_match(void **state)
{
	const int64_t now = INT64_C(37353815) * TOTP_STEP_SECONDS;
	char code[TOTP_DIGITS + 1];
	int64_t step = -1;

	(void)state;
	code_at(INT64_C(37353814), code);
	assert_string_equal(code, "137227");
	code_at(INT64_C(37353816), code);
	assert_string_equal(code, "137227");

	assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, now, 1, "137227", 1,
		INT64_C(37353814), &step), TOTP_ACCEPTED);
	assert_true(step == INT64_C(37353816));

	step = -1;
	assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, now, 1, "137227", 1,
		INT64_C(37353816), &step), TOTP_REPLAYED);
	assert_true(step == -1);
}

/* Steps 37079356 and 37079357 share 186519, and the later step is reported. */
static void verify_reports_latest_match(void **state)
{
	const int64_t now = INT64_C(37079357) * TOTP_STEP_SECONDS;
	int64_t step = -1;

	(void)state;
	assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, now, 1, "186519", 0, 0, &step),
		TOTP_ACCEPTED);
	assert_true(step == INT64_C(37079357));
}

static void verify_wrong_code(void **state)
{
	int64_t step = -1;

	(void)state;
	assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, VERIFY_NOW, 1, "050472", 0, 0, &step),
		TOTP_WRONG);
	assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, VERIFY_NOW, 1, "05047", 0, 0, &step),
		TOTP_WRONG);
	assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, VERIFY_NOW, 1, "0504710", 0, 0, &step),
		TOTP_WRONG);
	assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, VERIFY_NOW, 1, "05047a", 0, 0, &step),
		TOTP_WRONG);
	assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, VERIFY_NOW, 1, "", 0, 0, &step),
		TOTP_WRONG);
	assert_true(step == -1);
}

static void verify_rejects_bad_arguments(void **state)
{
	int64_t step = -1;

	(void)state;
	assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, VERIFY_NOW, -1, "050471", 0, 0, &step),
		TOTP_ERROR);
	assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, VERIFY_NOW, TOTP_WINDOW_MAX + 1,
		"050471", 0, 0, &step), TOTP_ERROR);
	assert_int_equal(totp_verify(rfc_key, 0, VERIFY_NOW, 1, "050471", 0, 0, &step),
		TOTP_ERROR);
	assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, VERIFY_NOW, 1, NULL, 0, 0, &step),
		TOTP_ERROR);
	assert_true(step == -1);
}

/* Near the epoch the window has no negative steps to match. */
static void verify_near_epoch(void **state)
{
	int64_t step = -1;

	(void)state;
	assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, 10, 1, "755224", 0, 0, &step),
		TOTP_ACCEPTED);
	assert_true(step == 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(hotp_rfc4226_vectors),
		cmocka_unit_test(totp_rfc6238_vectors),
		cmocka_unit_test(totp_step_boundaries),
		cmocka_unit_test(hotp_rejects_bad_arguments),
		cmocka_unit_test(verify_current_step),
		cmocka_unit_test(verify_window_edges),
		cmocka_unit_test(verify_three_steps_old),
		cmocka_unit_test(verify_window_zero),
		cmocka_unit_test(verify_replay_rejected),
		cmocka_unit_test(verify_next_step_accepted),
		cmocka_unit_test(verify_prefers_fresh_match),
		cmocka_unit_test(verify_reports_latest_match),
		cmocka_unit_test(verify_wrong_code),
		cmocka_unit_test(verify_rejects_bad_arguments),
		cmocka_unit_test(verify_near_epoch),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
