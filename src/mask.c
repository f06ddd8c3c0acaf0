/* Masking of e-mail addresses for the emailHint of a challenge, for logs and for SMTP replies. */
#include "autoconfig.h"

#include <string.h>

#include "mask.h"

#define MASK_PREFIX "***"
/* Maximum code points of the local part shown, fewer when it is short. */
#define MASK_SHOWN_MAX 3

/*
 * Returns the length of the UTF-8 sequence at s (at most len bytes), or 0
 * when it is malformed. Overlong forms, UTF-16 surrogates and values above
 * U+10FFFF are malformed (RFC 3629 section 4).
 */
static size_t mask_utf8_sequence(const unsigned char *s, size_t len)
{
	unsigned char lead = s[0];
	size_t need;
	unsigned char low = 0x80;
	unsigned char high = 0xbf;

	if (lead < 0x80)
		return 1;
	if (lead >= 0xc2 && lead <= 0xdf) {
		need = 2;
	} else if (lead >= 0xe0 && lead <= 0xef) {
		need = 3;
		if (lead == 0xe0)
			low = 0xa0;
		else if (lead == 0xed)
			high = 0x9f;
	} else if (lead >= 0xf0 && lead <= 0xf4) {
		need = 4;
		if (lead == 0xf0)
			low = 0x90;
		else if (lead == 0xf4)
			high = 0x8f;
	} else {
		return 0;
	}

	if (len < need)
		return 0;
	/* Only the second byte has a narrowed range. The others are 0x80 to 0xbf. */
	if (s[1] < low || s[1] > high)
		return 0;
	for (size_t i = 2; i < need; i++) {
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	}
	return need;
}

/*
 * Counts the code points of s[0..len) into *count and stores in *starts
 * the offset of each of the last MASK_SHOWN_MAX of them. Returns -1 when
 * s is not valid UTF-8.
 */
static int mask_count_code_points(const char *s, size_t len, size_t *count,
	size_t starts[MASK_SHOWN_MAX])
{
	const unsigned char *bytes = (const unsigned char *)s;
	size_t offset = 0;

	*count = 0;
	while (offset < len) {
		size_t step = mask_utf8_sequence(bytes + offset, len - offset);

		if (step == 0)
			return -1;
		starts[*count % MASK_SHOWN_MAX] = offset;
		(*count)++;
		offset += step;
	}
	return 0;
}

/*
 * The address splits at its last '@', because a quoted local part may
 * itself hold one and a domain never does. An empty local part or domain
 * is rejected along with the cases the header names.
 */
int mask_email(const char *address, char *out, size_t out_size)
{
	const char *at = strrchr(address, '@');
	size_t local_len;
	size_t domain_len;
	size_t count = 0;
	size_t starts[MASK_SHOWN_MAX] = { 0 };
	size_t shown_count;
	size_t shown_offset;
	size_t domain_count = 0;
	size_t domain_starts[MASK_SHOWN_MAX];
	size_t needed;

	if (at == NULL)
		return -1;
	local_len = (size_t)(at - address);
	domain_len = strlen(at + 1);
	if (local_len == 0 || domain_len == 0)
		return -1;
	if (mask_count_code_points(address, local_len, &count, starts) != 0)
		return -1;
	if (mask_count_code_points(at + 1, domain_len, &domain_count, domain_starts) != 0)
		return -1;

	/* The last min(3, n - 1) code points of n, so never the whole local part. */
	shown_count = count - 1 < MASK_SHOWN_MAX ? count - 1 : MASK_SHOWN_MAX;
	shown_offset = shown_count == 0 ? local_len
		: starts[(count - shown_count) % MASK_SHOWN_MAX];

	needed = strlen(MASK_PREFIX) + (local_len - shown_offset) + 1 + domain_len + 1;
	if (needed > out_size)
		return -1;

	memcpy(out, MASK_PREFIX, strlen(MASK_PREFIX));
	out += strlen(MASK_PREFIX);
	memcpy(out, address + shown_offset, local_len - shown_offset);
	out += local_len - shown_offset;
	memcpy(out, at, 1 + domain_len + 1);
	return 0;
}

/* Control characters, DEL included, would break the line or drive a terminal. */
static int mask_is_separator(unsigned char c)
{
	return c <= ' ' || c == 0x7f;
}

int mask_reply(const char *reply, char *out, size_t out_size)
{
	const unsigned char *bytes = (const unsigned char *)reply;
	size_t in = 0;
	size_t used = 0;

	if (out_size < MASK_REPLY_SIZE(strlen(reply))) {
		if (out_size > 0)
			out[0] = '\0';
		return -1;
	}
	while (bytes[in] != '\0') {
		size_t end = in;

		if (mask_is_separator(bytes[in])) {
			out[used++] = ' ';
			in++;
			continue;
		}
		while (bytes[end] != '\0' && !mask_is_separator(bytes[end]))
			end++;
		if (memchr(reply + in, '@', end - in) != NULL) {
			memcpy(out + used, MASK_REPLY_ADDRESS, strlen(MASK_REPLY_ADDRESS));
			used += strlen(MASK_REPLY_ADDRESS);
		} else {
			memcpy(out + used, reply + in, end - in);
			used += end - in;
		}
		in = end;
	}
	out[used] = '\0';
	return 0;
}
