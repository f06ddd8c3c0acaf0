#!/usr/bin/env bash
# TLS to the relay: STARTTLS and implicit TLS against a certificate of a test
# CA made for this run, and every way the relay's identity can be wrong. A
# failed check is a temporary failure that leaves the message queued and
# names the cause in the outbox row and the mailer's log.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/assert.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/assert.sh"
# shellcheck source=SCRIPTDIR/../lib/operations.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/operations.sh"
# shellcheck source=SCRIPTDIR/../lib/relay.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/relay.sh"
trap relay_cleanup EXIT

relay_setup

# Sends one mail through a relay NAME started with RELAY_ARGS and a mailer
# whose [smtp] lines are the remaining arguments; waits for STATUS. Sets
# ADDRESS and ROW. The relay and the mailer are stopped afterwards.
send_through() {
	local name=$1 status=$2 port
	shift 2
	relay_port
	port=$RELAY_PORT
	relay_start "$name" "$port" "${RELAY_ARGS[@]}" || assert_fail "relay $name did not start" || return 1
	local conf
	conf=$(relay_write_conf "$name" "port = $port" "timeout = 5" "$@")
	mailer_start "$name" "$conf"
	ADDRESS="$(unique_id "$name")@example.com"
	relay_create "$ADDRESS" >/dev/null || assert_fail "create-operation failed" || return 1
	ROW=$(relay_wait_status "$ADDRESS" "$status" 15)
	relay_stop_pid "$MAILER_PID"
	relay_stop "$name"
}

starttls_verified() {
	RELAY_ARGS=(--tls starttls --cert "$RELAY_CA_DIR/localhost.crt" --key "$RELAY_CA_DIR/localhost.key")
	send_through starttls sent "host = localhost" "tls = starttls" "ca_file = $RELAY_CA_DIR/ca.crt" || return 1
	assert_equal "outbox row" "sent	1" "$ROW"
	assert_equal "messages stored" 1 "$(relay_count starttls "$ADDRESS")"
	assert_equal "TLS version the relay saw" TLSv1.2 \
		"$(grep -h '^X-Peer-TLS:' "$(relay_latest starttls "$ADDRESS")" | cut -d' ' -f2 | tr -d '\r')"
}

implicit_verified() {
	RELAY_ARGS=(--tls implicit --cert "$RELAY_CA_DIR/localhost.crt" --key "$RELAY_CA_DIR/localhost.key")
	send_through implicit sent "host = localhost" "tls = implicit" "ca_file = $RELAY_CA_DIR/ca.crt" || return 1
	assert_equal "outbox row" "sent	1" "$ROW"
	assert_equal "messages stored" 1 "$(relay_count implicit "$ADDRESS")"
	assert_equal "TLS version the relay saw" TLSv1.3 \
		"$(grep -h '^X-Peer-TLS:' "$(relay_latest implicit "$ADDRESS")" | cut -d' ' -f2 | tr -d '\r')"
}

# The relay's certificate was issued by the trusted CA, but for another name.
wrong_host_rejected() {
	RELAY_ARGS=(--tls starttls --cert "$RELAY_CA_DIR/wrong-host.crt" --key "$RELAY_CA_DIR/wrong-host.key")
	send_through wronghost retrying "host = localhost" "tls = starttls" "ca_file = $RELAY_CA_DIR/ca.crt" || return 1
	assert_equal "outbox status" retrying "${ROW%%$'\t'*}"
	assert_equal "messages stored" 0 "$(relay_count wronghost "$ADDRESS")"
	assert_equal "recorded reply" "no reply: TLS: certificate check failed: hostname mismatch (depth 0)" \
		"$(relay_reply "$ADDRESS")"
	mailer_log wronghost | grep -q "try 1 failed, retrying in .* certificate check failed: hostname mismatch" ||
		assert_fail "the mailer log has no warning naming the hostname mismatch"
}

# Implicit TLS checks the name the same way.
implicit_wrong_host_rejected() {
	RELAY_ARGS=(--tls implicit --cert "$RELAY_CA_DIR/wrong-host.crt" --key "$RELAY_CA_DIR/wrong-host.key")
	send_through implicitwrong retrying "host = localhost" "tls = implicit" "ca_file = $RELAY_CA_DIR/ca.crt" || return 1
	assert_equal "outbox status" retrying "${ROW%%$'\t'*}"
	assert_equal "messages stored" 0 "$(relay_count implicitwrong "$ADDRESS")"
	assert_equal "recorded reply" "no reply: TLS: certificate check failed: hostname mismatch (depth 0)" \
		"$(relay_reply "$ADDRESS")"
}

# Without ca_file the system store is used, which does not know the test CA.
unknown_ca_rejected() {
	RELAY_ARGS=(--tls starttls --cert "$RELAY_CA_DIR/localhost.crt" --key "$RELAY_CA_DIR/localhost.key")
	send_through unknownca retrying "host = localhost" "tls = starttls" || return 1
	assert_equal "outbox status" retrying "${ROW%%$'\t'*}"
	assert_equal "messages stored" 0 "$(relay_count unknownca "$ADDRESS")"
	assert_equal "recorded reply" \
		"no reply: TLS: certificate check failed: unable to get local issuer certificate (depth 0)" \
		"$(relay_reply "$ADDRESS")"
}

# tls = starttls never falls back to clear text.
starttls_required() {
	RELAY_ARGS=(--tls none)
	send_through plainrelay retrying "host = localhost" "tls = starttls" "ca_file = $RELAY_CA_DIR/ca.crt" || return 1
	assert_equal "outbox status" retrying "${ROW%%$'\t'*}"
	assert_equal "messages stored" 0 "$(relay_count plainrelay "$ADDRESS")"
	assert_equal "recorded reply" \
		"no reply: the relay does not offer STARTTLS, which [smtp] tls = starttls requires" \
		"$(relay_reply "$ADDRESS")"
}

# An address as [smtp] host is checked against the certificate's IP entries.
address_host_verified() {
	RELAY_ARGS=(--tls starttls --cert "$RELAY_CA_DIR/localhost.crt" --key "$RELAY_CA_DIR/localhost.key")
	send_through byaddress sent "host = 127.0.0.1" "tls = starttls" "ca_file = $RELAY_CA_DIR/ca.crt" || return 1
	assert_equal "outbox row" "sent	1" "$ROW"
	assert_equal "messages stored" 1 "$(relay_count byaddress "$ADDRESS")"
}

# Thirty STARTTLS sessions in a row all succeed. With TLS 1.3, libesmtp
# 1.1.0 lost about half of them to the relay's session tickets, which is
# why STARTTLS is held at TLS 1.2 (src/smtp.c).
starttls_repeated() {
	local port conf i addresses=() sent
	relay_port
	port=$RELAY_PORT
	relay_start repeated "$port" --tls starttls --cert "$RELAY_CA_DIR/localhost.crt" \
		--key "$RELAY_CA_DIR/localhost.key" || assert_fail "relay did not start" || return 1
	conf=$(relay_write_conf repeated "port = $port" "timeout = 5" "host = localhost" \
		"tls = starttls" "ca_file = $RELAY_CA_DIR/ca.crt")
	for ((i = 0; i < 30; i++)); do
		addresses+=("$(unique_id repeated)@example.com")
		relay_create "${addresses[i]}" >/dev/null || assert_fail "create-operation failed" || return 1
	done
	mailer_start repeated "$conf"
	relay_wait_status "${addresses[29]}" sent 30 >/dev/null
	sleep 1
	relay_stop_pid "$MAILER_PID"
	sent=$(relay_query "SELECT COUNT(*) FROM mail_outbox WHERE recipient LIKE 'repeated-%'
		AND status = 'sent' AND tries = 1")
	assert_equal "rows sent on the first try" 30 "$sent"
	# Rows of earlier cases still retrying may reach this relay too; they are not counted.
	assert_equal "messages stored" 30 \
		"$(grep -l -s '^X-RcptTo: repeated-' "$RELAY_TMP/repeated.maildir/new/"* | wc -l)"
}

test_case "STARTTLS with a verified certificate delivers (TLS 1.2)" starttls_verified
test_case "implicit TLS with a verified certificate delivers (TLS 1.3)" implicit_verified
test_case "certificate for another host refused (STARTTLS)" wrong_host_rejected
test_case "certificate for another host refused (implicit TLS)" implicit_wrong_host_rejected
test_case "certificate of an unknown CA refused" unknown_ca_rejected
test_case "STARTTLS required: no fall-back to clear text" starttls_required
test_case "IP address as host checked against the certificate" address_host_verified
test_case "30 STARTTLS sessions in a row all deliver" starttls_repeated
relay_cleanup
test_finish
