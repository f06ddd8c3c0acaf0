#!/usr/bin/env bash
# The code mail end to end. The message that reaches the SMTP sink is well
# formed RFC 5322, its code confirms the operation, and the database never
# stores that code in clear text. An address that tries to add a header or a
# recipient is rejected before anything is queued.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/assert.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/assert.sh"
# shellcheck source=SCRIPTDIR/../lib/operations.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/operations.sh"

USER_ID=
TOKEN=
FINGERPRINT=
EMAIL=
UUID=

# Creates a user, a token and a pending withdrawal of 100.00 with the
# e-mail factor for the current case, and waits for its mail.
new_mailed_operation() {
	local challenge
	USER_ID=$(unique_id mail-user)
	FINGERPRINT=$(unique_id mail-device)
	EMAIL="$(unique_id mail)@example.com"
	TOKEN=$(mint_token "$USER_ID") || assert_fail "userops-ctl issue-token failed" || return 1
	challenge=$(create_operation --user "$USER_ID" --fingerprint "$FINGERPRINT" \
		--email "$EMAIL" --kind withdrawal --param amount=100.00) ||
		assert_fail "userops-ctl create-operation failed" || return 1
	UUID=$(jq -r .uuid <<<"$challenge")
	mail_wait "$EMAIL" 1
}

# Waits up to 10 s until every outbox row to ADDRESS is final (sent, failed
# or dropped) and prints its statuses.
wait_outbox_final() {
	local address=$1 tries statuses
	for ((tries = 0; tries < 50; tries++)); do
		statuses=$(db_query "SELECT status FROM mail_outbox WHERE recipient = '$address' ORDER BY id")
		if [[ -n $statuses ]] && ! grep -qE '^(queued|retrying)$' <<<"$statuses"; then
			break
		fi
		sleep 0.2
	done
	echo "$statuses"
}

# Checks the headers of the newest message to EMAIL. Prints one line per
# problem found, and nothing when the message is well formed.
mail_header_problems() {
	/usr/bin/python3 - "$(mail_tool latest "$EMAIL")" "$EMAIL" <<'EOF'
import email
import email.policy
import email.utils
import re
import sys

path, address = sys.argv[1], sys.argv[2]
with open(path, "rb") as handle:
    raw = handle.read()
message = email.message_from_bytes(raw, policy=email.policy.compat32)
problems = []


def single(name):
    values = message.get_all(name) or []
    if len(values) != 1:
        problems.append("%s appears %d times, expected once" % (name, len(values)))
        return ""
    return str(values[0]).strip()


date = single("Date")
if date and email.utils.parsedate_tz(date) is None:
    problems.append("Date is not an RFC 5322 date: %r" % date)
message_id = single("Message-ID")
if message_id and not re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", message_id):
    problems.append("Message-ID is not <left@right>: %r" % message_id)
sender = single("From")
if sender and "@" not in email.utils.parseaddr(sender)[1]:
    problems.append("From holds no address: %r" % sender)
to = single("To")
if to and [a for _, a in email.utils.getaddresses([to])] != [address]:
    problems.append("To is %r, expected only %s" % (to, address))
if single("Subject") == "":
    problems.append("Subject is empty")
version = single("MIME-Version")
if version and version != "1.0":
    problems.append("MIME-Version is %r, expected 1.0" % version)
content_type = single("Content-Type")
if content_type and message.get_content_type() != "text/plain":
    problems.append("Content-Type is %r, expected text/plain" % content_type)
if content_type and (message.get_param("charset") or "").lower() != "utf-8":
    problems.append("Content-Type charset is %r, expected UTF-8" % message.get_param("charset"))
encoding = single("Content-Transfer-Encoding")
if encoding and encoding.lower() not in ("7bit", "8bit", "quoted-printable", "base64"):
    problems.append("Content-Transfer-Encoding is %r" % encoding)
auto = single("Auto-Submitted")
if auto and auto != "auto-generated":
    problems.append("Auto-Submitted is %r, expected auto-generated" % auto)
recipients = [r.strip() for r in str(message.get("X-RcptTo", "")).split(",") if r.strip()]
if recipients != [address]:
    problems.append("envelope recipients (X-RcptTo) are %r, expected only %s" % (recipients, address))
for name in ("Cc", "Bcc"):
    if message.get_all(name):
        problems.append("unexpected %s header" % name)

# No header contains a bare CR, which a relay could read as a line break.
head = raw.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[0]
if re.search(rb"\r(?!\n)", head):
    problems.append("a header contains a bare CR")

body = message.get_payload(decode=True).decode("utf-8", "replace")
if "100.00" not in body:
    problems.append("the body does not show the amount 100.00")
print("\n".join(problems))
EOF
}

mail_arrives() {
	new_mailed_operation || return 1
	assert_equal "messages to $EMAIL" 1 "$(mail_count "$EMAIL")"
}

mail_headers_well_formed() {
	local problems line
	new_mailed_operation || return 1
	problems=$(mail_header_problems) || assert_fail "the header check of the mail to $EMAIL failed to run" || return 1
	while IFS= read -r line; do
		if [[ -n $line ]]; then
			assert_fail "mail to $EMAIL: $line"
		fi
	done <<<"$problems"
}

mailed_code_confirms() {
	local code
	new_mailed_operation || return 1
	code=$(mail_latest_code "$EMAIL") || assert_fail "no code in the mail to $EMAIL" || return 1
	if [[ ! $code =~ ^[0-9]{6}$ ]]; then
		assert_fail "the mailed code '$code' is not 6 digits"
		return 1
	fi
	http_request PUT "/operations/$UUID/confirm" -t "$TOKEN" -f "$FINGERPRINT" \
		-d "$(jq -cn --arg code "$code" '{emailCode: $code}')"
	assert_status 200
	assert_json .data.uuid "$UUID"
	assert_json .data.status confirmed
}

# The code may appear only as part of a longer number (a timestamp, an id),
# never on its own.
code_not_in_database() {
	local code statuses sealed
	new_mailed_operation || return 1
	code=$(mail_latest_code "$EMAIL") || assert_fail "no code in the mail to $EMAIL" || return 1
	statuses=$(wait_outbox_final "$EMAIL")
	assert_equal "outbox status of the mail to $EMAIL" sent "$statuses"

	db_dump >"$ASSERT_TMP/dump.sql" || assert_fail "mariadb-dump failed" || return 1
	if ! grep -q 'INSERT INTO `mail_outbox`' "$ASSERT_TMP/dump.sql"; then
		assert_fail "the dump holds no mail_outbox row, so it cannot show the code is absent"
	fi
	if grep -aqE "(^|[^0-9])$code([^0-9]|\$)" "$ASSERT_TMP/dump.sql"; then
		assert_fail "the database dump contains the mailed code $code: $(grep -aoE ".{0,60}$code.{0,20}" "$ASSERT_TMP/dump.sql" | head -n 1)"
	fi

	sealed=$(db_query "SELECT COUNT(*) FROM mail_outbox WHERE recipient = '$EMAIL' AND code_sealed IS NOT NULL")
	assert_equal "outbox rows to $EMAIL still holding a sealed code" 0 "$sealed"
}

# Runs create-operation with each address after the first argument, a
# recipient that the address tries to smuggle in, and checks that every one
# is rejected, that nothing is stored for it, and that the smuggled recipient
# never gets a message.
assert_addresses_rejected() {
	local spy=$1 address user status rows
	shift
	for address in "$@"; do
		user=$(unique_id mail-user)
		status=0
		create_operation --user "$user" --fingerprint "$(unique_id mail-device)" \
			--email "$address" --kind withdrawal >"$ASSERT_TMP/inject.out" 2>"$ASSERT_TMP/inject.err" ||
			status=$?
		if ((status == 0)); then
			assert_fail "create-operation accepted the address $(printf '%q' "$address")"
		elif [[ ! -s $ASSERT_TMP/inject.err ]]; then
			assert_fail "create-operation rejected $(printf '%q' "$address") without a message on stderr"
		fi
		rows=$(db_query "SELECT COUNT(*) FROM operations WHERE user_id = '$user'")
		assert_equal "operations stored for the address $(printf '%q' "$address")" 0 "$rows"
	done

	rows=$(db_query "SELECT COUNT(*) FROM mail_outbox WHERE recipient LIKE '%$spy%'
		OR recipient LIKE CONCAT('%', CHAR(13), '%') OR recipient LIKE CONCAT('%', CHAR(10), '%')")
	assert_equal "outbox rows naming $spy or holding CR/LF" 0 "$rows"
	# Give a mailer that did queue something time to send it.
	sleep 1.5
	assert_equal "messages delivered to $spy" 0 "$(mail_count "$spy")"
}

header_injection_rejected() {
	local spy
	spy="$(unique_id mail-spy)@example.net"
	assert_addresses_rejected "$spy" \
		$'victim@example.com\r\nBcc: '"$spy" \
		$'victim@example.com\nBcc: '"$spy" \
		$'victim@example.com\rBcc: '"$spy" \
		"victim@example.com>"$'\r\n'"RCPT TO:<$spy"
}

# An operation whose address the mailer rejects as "not one address"
# could never be confirmed by mail, so creation must reject it too.
address_list_rejected() {
	local spy
	spy="$(unique_id mail-spy)@example.net"
	assert_addresses_rejected "$spy" \
		"victim@example.com, $spy" \
		"victim@example.com,$spy" \
		"victim@example.com;$spy" \
		"<$spy>victim@example.com"
}

# Without SMTPUTF8 a relay refuses these, so the code could never arrive.
non_ascii_address_rejected() {
	local spy
	spy="$(unique_id mail-spy)@example.net"
	assert_addresses_rejected "$spy" \
		"jürgen@example.de" \
		"user@bücher.example" \
		"日本語@example.jp"
}

test_case "code mail arrives" mail_arrives
test_case "mail headers well formed" mail_headers_well_formed
test_case "mailed code confirms 200" mailed_code_confirms
test_case "code absent from database" code_not_in_database
test_case "header injection in address rejected" header_injection_rejected
test_case "address list rejected" address_list_rejected
test_case "non-ASCII address rejected" non_ascii_address_rejected
test_finish
