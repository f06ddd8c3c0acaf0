#!/usr/bin/env bash
# SMTP AUTH: the mailer logs in with [smtp] username and password_file over
# TLS, a refused login is a temporary failure that names the relay's reply,
# and the password never crosses the network in clear text unless
# allow_plaintext_auth is set.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/assert.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/assert.sh"
# shellcheck source=SCRIPTDIR/../lib/operations.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/operations.sh"
# shellcheck source=SCRIPTDIR/../lib/relay.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/relay.sh"
trap relay_cleanup EXIT

relay_setup
PASSWORD_FILE=$RELAY_TMP/smtp-password
WRONG_PASSWORD_FILE=$RELAY_TMP/smtp-wrong-password
printf 'correct horse battery staple\n' >"$PASSWORD_FILE"
printf 'not the password\n' >"$WRONG_PASSWORD_FILE"
chmod 600 "$PASSWORD_FILE" "$WRONG_PASSWORD_FILE"

# Sends one mail through an AUTH relay with the mailer's [smtp] lines given
# as arguments; waits for STATUS and sets ADDRESS and ROW.
send_with_auth() {
	local name=$1 status=$2 port conf
	shift 2
	relay_port
	port=$RELAY_PORT
	relay_start "$name" "$port" --tls starttls --cert "$RELAY_CA_DIR/localhost.crt" \
		--key "$RELAY_CA_DIR/localhost.key" --auth "mailer:$PASSWORD_FILE" ||
		assert_fail "relay did not start" || return 1
	conf=$(relay_write_conf "$name" "host = localhost" "port = $port" "tls = starttls" \
		"ca_file = $RELAY_CA_DIR/ca.crt" "timeout = 5" "$@")
	mailer_start "$name" "$conf"
	ADDRESS="$(unique_id "$name")@example.com"
	relay_create "$ADDRESS" >/dev/null || assert_fail "create-operation failed" || return 1
	ROW=$(relay_wait_status "$ADDRESS" "$status" 15)
	relay_stop_pid "$MAILER_PID"
	relay_stop "$name"
}

auth_given() {
	send_with_auth authok sent "username = mailer" "password_file = $PASSWORD_FILE" || return 1
	assert_equal "outbox row" "sent	1" "$ROW"
	assert_equal "login the relay saw" mailer \
		"$(grep -h '^X-Auth-User:' "$(relay_latest authok "$ADDRESS")" | cut -d' ' -f2 | tr -d '\r')"
	if grep -rqF 'correct horse' "$RELAY_TMP"/authok.mailer.log "$RELAY_TMP"/authok.log; then
		assert_fail "the password appears in a log"
	fi
}

auth_rejected() {
	send_with_auth authbad retrying "username = mailer" "password_file = $WRONG_PASSWORD_FILE" || return 1
	assert_equal "outbox status" retrying "${ROW%%$'\t'*}"
	assert_equal "messages stored" 0 "$(relay_count authbad "$ADDRESS")"
	[[ $(relay_reply "$ADDRESS") == *"535 "* ]] ||
		assert_fail "recorded reply '$(relay_reply "$ADDRESS")' does not hold the relay's 535"
}

auth_missing() {
	send_with_auth authmissing retrying || return 1
	assert_equal "outbox status" retrying "${ROW%%$'\t'*}"
	assert_equal "messages stored" 0 "$(relay_count authmissing "$ADDRESS")"
	[[ $(relay_reply "$ADDRESS") == "530 "* ]] ||
		assert_fail "recorded reply '$(relay_reply "$ADDRESS")' is not the relay's 530"
}

# tls = none with a username stops the mailer at start, unless allowed.
plaintext_auth_rejected() {
	local conf output status=0
	conf=$(relay_write_conf plaintext "host = 127.0.0.1" "port = 9" "tls = none" \
		"username = mailer" "password_file = $PASSWORD_FILE")
	output=$("$USEROPS_BIN_DIR/userops-mailer" -c "$conf" -t 2>&1) || status=$?
	assert_equal "exit status of userops-mailer -t" 1 "$status"
	[[ $output == *"allow_plaintext_auth = yes"* ]] ||
		assert_fail "the message does not name allow_plaintext_auth: $output"
	conf=$(relay_write_conf plaintextok "host = 127.0.0.1" "port = 9" "tls = none" \
		"username = mailer" "password_file = $PASSWORD_FILE" "allow_plaintext_auth = yes")
	status=0
	"$USEROPS_BIN_DIR/userops-mailer" -c "$conf" -t >/dev/null 2>&1 || status=$?
	assert_equal "exit status with allow_plaintext_auth = yes" 0 "$status"
}

test_case "AUTH required and given over STARTTLS" auth_given
test_case "AUTH refused: 535 recorded, retried" auth_rejected
test_case "AUTH required but not configured: 530 recorded, retried" auth_missing
test_case "AUTH in clear text refused unless allowed" plaintext_auth_rejected
relay_cleanup
test_finish
