/* Masking of e-mail addresses for hints and logs. */
#ifndef USEROPS_MASK_H
#define USEROPS_MASK_H

#include <stddef.h>

/*
 * Writes "***", the last min(3, n - 1) UTF-8 code points of the local part
 * of n code points, "@" and the domain, splitting at the last '@'. Returns
 * 0, or -1 when the address has no '@', an empty local part or domain, is
 * not valid UTF-8 or does not fit out.
 */
int mask_email(const char *address, char *out, size_t out_size);

/* The text that mask_reply writes in place of a word that contains an address. */
#define MASK_REPLY_ADDRESS "[address]"
/* Bytes that always hold mask_reply's copy of a reply of len bytes, NUL included. */
#define MASK_REPLY_SIZE(len) ((sizeof(MASK_REPLY_ADDRESS) - 1) * (len) + 1)

/*
 * Copies an SMTP reply for display on one line. Each word (bytes between
 * spaces or control characters) that contains '@' becomes "[address]",
 * because a relay's reply may name the recipient, and each control
 * character becomes a space. Returns 0, or -1 with out empty when out_size
 * is less than MASK_REPLY_SIZE(strlen(reply)).
 */
int mask_reply(const char *reply, char *out, size_t out_size);

#endif
