/* Unit tests of mask.c: e-mail hints counted in UTF-8 code points, and SMTP replies. */
#include "autoconfig.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mask.h"

static void assert_mask(const char *address, const char *expected)
{
	char out[128];

	memset(out, 'x', sizeof(out));
	if (mask_email(address, out, sizeof(out)) != 0)
		fail_msg("masking \"%s\" failed", address);
	assert_string_equal(out, expected);
}

static void assert_mask_fails(const char *address)
{
	char out[128];

	assert_int_equal(mask_email(address, out, sizeof(out)), -1);
}

static void mask_ascii_lengths(void **state)
{
	(void)state;
	assert_mask("a@x.io", "***@x.io");
	assert_mask("ab@x.io", "***b@x.io");
	assert_mask("abc@x.io", "***bc@x.io");
	assert_mask("abcd@x.io", "***bcd@x.io");
	assert_mask("aaaaaa@gmail.com", "***aaa@gmail.com");
	assert_mask("first.last+tag@example.org", "***tag@example.org");
}

/* "иван" is 4 code points in 8 bytes: the last 3 are shown. */
static void mask_cyrillic_local_part(void **state)
{
	(void)state;
	assert_mask("\xd0\xb8\xd0\xb2\xd0\xb0\xd0\xbd@\xd0\xbf\xd0\xbe\xd1\x87\xd1\x82\xd0\xb0.\xd1\x80\xd1\x84",
		"***\xd0\xb2\xd0\xb0\xd0\xbd@\xd0\xbf\xd0\xbe\xd1\x87\xd1\x82\xd0\xb0.\xd1\x80\xd1\x84");
	/* "яр" is 2 code points: only the last is shown. */
	assert_mask("\xd1\x8f\xd1\x80@x.io", "***\xd1\x80@x.io");
}

/* Three-byte (CJK) and four-byte (emoji) code points count as one each. */
static void mask_multibyte_local_part(void **state)
{
	(void)state;
	/* "山田太郎": 4 code points of 3 bytes each. */
	assert_mask("\xe5\xb1\xb1\xe7\x94\xb0\xe5\xa4\xaa\xe9\x83\x8e@example.jp",
		"***\xe7\x94\xb0\xe5\xa4\xaa\xe9\x83\x8e@example.jp");
	/* "a" then U+1F600 U+1F601: 3 code points, the last 2 shown. */
	assert_mask("a\xf0\x9f\x98\x80\xf0\x9f\x98\x81@x.io",
		"***\xf0\x9f\x98\x80\xf0\x9f\x98\x81@x.io");
	/* A lone 4-byte code point shows nothing. */
	assert_mask("\xf0\x9f\x98\x80@x.io", "***@x.io");
}

/* The last '@' splits, as a quoted local part may contain one. */
static void mask_last_at(void **state)
{
	(void)state;
	assert_mask("\"a@b\"@x.io", "***@b\"@x.io");
}

static void mask_no_at_fails(void **state)
{
	(void)state;
	assert_mask_fails("abc.x.io");
	assert_mask_fails("");
}

static void mask_empty_parts_fail(void **state)
{
	(void)state;
	assert_mask_fails("@x.io");
	assert_mask_fails("abc@");
}

static void mask_broken_utf8_fails(void **state)
{
	(void)state;
	/* A lone continuation byte. */
	assert_mask_fails("ab\x80@x.io");
	/* A lead byte cut short by the '@'. */
	assert_mask_fails("ab\xd0@x.io");
	/* Overlong forms of '/' in 2, 3 and 4 bytes, and an encoded UTF-16 surrogate. */
	assert_mask_fails("\xc0\xaf@x.io");
	assert_mask_fails("\xe0\x80\xaf@x.io");
	assert_mask_fails("\xf0\x80\x80\xaf@x.io");
	assert_mask_fails("\xed\xa0\x80@x.io");
	/* Above U+10FFFF, and 0xff, which UTF-8 never uses. */
	assert_mask_fails("\xf4\x90\x80\x80@x.io");
	assert_mask_fails("a\xff@x.io");
	/* Broken in the domain. */
	assert_mask_fails("abc@x\xe5\xb1.io");
}

static void mask_output_too_small(void **state)
{
	char out[11];

	(void)state;
	/* "***bc@x.io" needs 10 bytes and the NUL. */
	assert_int_equal(mask_email("abc@x.io", out, sizeof(out)), 0);
	assert_string_equal(out, "***bc@x.io");
	assert_int_equal(mask_email("abc@x.io", out, 10), -1);
	assert_int_equal(mask_email("abc@x.io", out, 0), -1);
}

static void assert_reply(const char *reply, const char *expected)
{
	char out[1024];

	memset(out, 'x', sizeof(out));
	if (mask_reply(reply, out, sizeof(out)) != 0)
		fail_msg("masking the reply \"%s\" failed", reply);
	assert_string_equal(out, expected);
}

static void mask_reply_hides_addresses(void **state)
{
	(void)state;
	assert_reply("250 2.0.0 Ok: queued as 4F2A1", "250 2.0.0 Ok: queued as 4F2A1");
	assert_reply("550 5.1.1 <anna@example.com>: Recipient address rejected",
		"550 5.1.1 [address] Recipient address rejected");
	/* Every word that contains '@' is replaced, wherever it is. */
	assert_reply("451 a@b and c@d", "451 [address] and [address]");
	assert_reply("@", "[address]");
	assert_reply("", "");
}

static void mask_reply_flattens_controls(void **state)
{
	(void)state;
	/* A multi-line reply becomes one line, and each control byte becomes a space. */
	assert_reply("250-first\r\n250 second", "250-first  250 second");
	assert_reply("421 x\tanna@example.com\x7fz", "421 x [address] z");
	assert_reply("554 \x1b[31mred", "554  [31mred");
}

static void mask_reply_output_too_small(void **state)
{
	char out[32];

	(void)state;
	/* The size check assumes every byte may become "[address]": 3 * 9 + 1 bytes for "a@b". */
	assert_int_equal(mask_reply("a@b", out, MASK_REPLY_SIZE(3)), 0);
	assert_string_equal(out, "[address]");
	memset(out, 'x', sizeof(out));
	assert_int_equal(mask_reply("a@b", out, MASK_REPLY_SIZE(3) - 1), -1);
	assert_string_equal(out, "");
	assert_int_equal(mask_reply("a@b", out, 0), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(mask_ascii_lengths),
		cmocka_unit_test(mask_cyrillic_local_part),
		cmocka_unit_test(mask_multibyte_local_part),
		cmocka_unit_test(mask_last_at),
		cmocka_unit_test(mask_no_at_fails),
		cmocka_unit_test(mask_empty_parts_fail),
		cmocka_unit_test(mask_broken_utf8_fails),
		cmocka_unit_test(mask_output_too_small),
		cmocka_unit_test(mask_reply_hides_addresses),
		cmocka_unit_test(mask_reply_flattens_controls),
		cmocka_unit_test(mask_reply_output_too_small),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
