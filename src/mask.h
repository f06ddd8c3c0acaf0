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

#endif
