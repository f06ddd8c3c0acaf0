#!/usr/bin/env python3
"""Print one stored mail message, decoded, as a JSON object.

Usage: mail_decode.py FILE

FILE is one message as aiosmtpd's Mailbox handler stores it (a Maildir file).
The message is parsed by Python's email package with email.policy.default,
which decodes RFC 2047 headers and the quoted-printable or base64 body. The
JSON object has these keys:

  subject       the decoded Subject, or null when there is none
  from, to      the decoded From and To, or null
  text          the decoded text/plain body, or null when there is none
  headers       the header names in order, those the server added included
                (aiosmtpd adds X-Peer, X-MailFrom and X-RcptTo)
  defects       the parser's complaints about the message and its headers
  longest_line  the length of the longest raw line, without its line ending,
                leaving out the header lines aiosmtpd added

NOTE: Python's address-header parser keeps the white space between two
adjacent encoded words (CPython issue gh-128110, seen with Python 3.11), so a
display name longer than one encoded word decodes with extra spaces in
"from". Subjects are not affected.

Exit status: 0 on success, 1 when FILE cannot be read, 2 on a usage error.
"""

import email
import email.policy
import json
import sys


# Headers that aiosmtpd's Mailbox handler adds to the message it stores.
SERVER_HEADERS = (b"X-Peer:", b"X-MailFrom:", b"X-RcptTo:")


def longest_line(raw):
    """Return the length of the longest raw line, without CR or LF or server headers."""
    longest = 0
    in_headers = True
    for line in raw.split(b"\n"):
        line = line.rstrip(b"\r")
        if in_headers and line == b"":
            in_headers = False
        if in_headers and line.startswith(SERVER_HEADERS):
            continue
        longest = max(longest, len(line))
    return longest


def header_text(message, name):
    """Return the decoded value of header name, or None when it is missing."""
    value = message[name]
    return None if value is None else str(value)


def decode(raw):
    """Parse raw message bytes and return the dictionary printed as JSON."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    body = message.get_body(preferencelist=("plain",))
    defects = [type(defect).__name__ for defect in message.defects]
    for name, value in message.items():
        defects += [f"{name}: {type(defect).__name__}" for defect in value.defects]
    return {
        "subject": header_text(message, "Subject"),
        "from": header_text(message, "From"),
        "to": header_text(message, "To"),
        "text": None if body is None else body.get_content(),
        "headers": list(message.keys()),
        "defects": defects,
        "longest_line": longest_line(raw),
    }


def main(argv):
    if len(argv) != 2:
        print("usage: mail_decode.py FILE", file=sys.stderr)
        return 2
    try:
        with open(argv[1], "rb") as file:
            raw = file.read()
    except OSError as error:
        print(f"mail_decode.py: cannot read {argv[1]}: {error.strerror}", file=sys.stderr)
        return 1
    json.dump(decode(raw), sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
