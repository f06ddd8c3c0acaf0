/* Rendering of a code mail as an RFC 5322 message from a template file. */
#ifndef USEROPS_MAIL_H
#define USEROPS_MAIL_H

#include <stddef.h>
#include <stdint.h>

/* A template file larger than this is rejected as not being one. */
#define MAIL_TEMPLATE_MAX 65536
/* RFC 5321 §4.5.3.1.3: a forward-path is at most 256 octets long, its brackets included. */
#define MAIL_ADDRESS_MAX 254

enum mail_result {
	MAIL_OK,
	MAIL_INVALID_INPUT,      /* a value cannot be sent safely: the row fails for good */
	MAIL_INVALID_TEMPLATE,   /* the template file is missing or malformed: fix it and retry */
	MAIL_NO_MEMORY,
};

/* The values of one message; every string is NUL-terminated UTF-8. */
struct mail_fields {
	const char *from;               /* [smtp] from: "addr" or "Display Name <addr>" */
	const char *message_id_domain;  /* NULL or empty: the domain of from */
	const char *recipient;          /* one bare address */
	const char *code;
	const char *kind;
	const char *params_json;        /* a JSON object, as stored in mail_outbox.params */
	const char *email_hint;         /* the masked recipient */
	int64_t now;                    /* Unix seconds, for Date and expires_minutes */
	int64_t expires_at;             /* Unix seconds */
};

/*
 * Writes to out the path of the template file name in dir: the first of
 * LOCALE/NAME.txt, LANGUAGE/NAME.txt (the part of the locale before '-' or
 * '_', so "ru-RU" uses ru) and en/NAME.txt that exists, or en/NAME.txt when
 * none does. locale and name may contain only letters, digits, '-' and '_'.
 * Another locale is replaced by "en", and another name fails. Returns 0, or
 * -1 with a message in err.
 */
int mail_template_path(const char *dir, const char *locale, const char *name, char *out,
	size_t out_size, char *err, size_t err_size);

/* Reads a template file of at most MAIL_TEMPLATE_MAX bytes; the caller frees *text. */
enum mail_result mail_read_template(const char *path, char **text, char *err,
	size_t err_size);

/*
 * Renders template_text, a "Subject: ..." line, a blank line and the body,
 * replacing {{code}}, {{kind}}, {{expires_minutes}}, {{expires_at_utc}}
 * (such as "2026-12-05 10:20 UTC"), {{params}} (one "name: value" line per
 * parameter) and {{email_hint}}.
 *
 * Encoding: CRLF line endings. A subject of printable ASCII is folded at
 * spaces. Any other subject, or one that contains "=?" or a word too long to
 * fold, goes as RFC 2047 "B" encoded words of whole UTF-8 characters. A body
 * that is not ASCII or has a line over 76 characters goes quoted-printable.
 * No line is longer than 76 characters, except a To or Message-ID line when
 * the address or the Message-ID domain alone does not fit.
 *
 * From: a display name in printable ASCII is sent as written when its words
 * fit in 76-character lines, so one that is already RFC 2047 encoded stays as
 * it is. Any other display name, in UTF-8 for one, is sent as encoded words.
 * The address in from and the recipient must be ASCII, because
 * internationalized addresses need SMTPUTF8.
 *
 * Header safety: a control character (C0, DEL or C1) or U+2028 or U+2029 in
 * the subject after substitution or in from, or a recipient that is not one
 * address, gives MAIL_INVALID_INPUT. Values placed in the body have each such
 * character replaced by a space, so no value can start a line of its own.
 * On success *message is a NUL-terminated string that contains the code:
 * release it with mail_free_message().
 */
enum mail_result mail_render(const char *template_text, const struct mail_fields *fields,
	char **message, char *err, size_t err_size);

/* Wipes and frees a rendered message. */
void mail_free_message(char *message);

/*
 * Checks that address is one bare address: local part "@" domain, no
 * white space, control characters, quotes, brackets or list separators.
 * Returns 0, or -1.
 */
int mail_check_address(const char *address);

/*
 * Copies the address of a From value ("addr" or "Name <addr>") to out. The
 * name is unquoted words or a quoted string without a quote or a backslash
 * inside, in ASCII or UTF-8, with no control character or line separator.
 * Returns 0, or -1 when from is not of this form or does not fit.
 */
int mail_from_address(const char *from, char *out, size_t out_size);

#endif
