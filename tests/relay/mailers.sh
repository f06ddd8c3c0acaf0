#!/usr/bin/env bash
# Several mailers on one outbox. While none dies, each message is sent once.
# A mailer killed in the middle of a send leaves its message to another
# mailer after the lease ([smtp] timeout + 15 s), so it is sent once more
# and not lost.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/assert.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/assert.sh"
# shellcheck source=SCRIPTDIR/../lib/operations.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/operations.sh"
# shellcheck source=SCRIPTDIR/../lib/relay.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/relay.sh"
trap relay_cleanup EXIT

relay_setup

two_mailers_send_once() {
	local port conf i first second stored duplicates
	relay_port
	port=$RELAY_PORT
	relay_start shared "$port" || assert_fail "relay did not start" || return 1
	conf=$(relay_write_conf shared "host = 127.0.0.1" "port = $port" "tls = none" "timeout = 5")
	for ((i = 0; i < 60; i++)); do
		relay_create "shared-$i-$$@example.com" >/dev/null || assert_fail "create-operation failed" || return 1
	done
	mailer_start shared-a "$conf"
	first=$MAILER_PID
	mailer_start shared-b "$conf"
	second=$MAILER_PID
	for ((i = 0; i < 200; i++)); do
		[[ $(relay_query "SELECT COUNT(*) FROM mail_outbox WHERE status <> 'sent'") == 0 ]] && break
		sleep 0.1
	done
	sleep 1
	relay_stop_pid "$first"
	relay_stop_pid "$second"
	assert_equal "rows sent on the first try" 60 \
		"$(relay_query "SELECT COUNT(*) FROM mail_outbox WHERE status = 'sent' AND tries = 1")"
	stored=$(grep -h -s '^X-RcptTo:' "$RELAY_TMP/shared.maildir/new/"* | tr -d '\r' | sort)
	assert_equal "messages stored" 60 "$(grep -c . <<<"$stored")"
	duplicates=$(uniq -d <<<"$stored")
	assert_equal "recipients that got two messages" "" "$duplicates"
	# Both took part, so the test shows sharing rather than one idle mailer.
	[[ $(mailer_log shared-a | grep -c ' sent to ') -gt 0 && $(mailer_log shared-b | grep -c ' sent to ') -gt 0 ]] ||
		assert_fail "one mailer sent nothing: $(mailer_log shared-a | grep -c ' sent to ') and $(mailer_log shared-b | grep -c ' sent to ')"
}

# The first relay takes the message but sends no reply to the final dot,
# and the mailer connected to it is killed with SIGKILL. A second mailer on a healthy
# relay takes the row once its lease ends.
killed_mailer_message_resent() {
	local stall_port good_port stall_conf good_conf address row started elapsed
	relay_port
	stall_port=$RELAY_PORT
	relay_port
	good_port=$RELAY_PORT
	relay_start stalling "$stall_port" --stall data || assert_fail "relay did not start" || return 1
	relay_start healthy "$good_port" || assert_fail "relay did not start" || return 1
	stall_conf=$(relay_write_conf stalling "host = 127.0.0.1" "port = $stall_port" "tls = none" "timeout = 2")
	good_conf=$(relay_write_conf healthy "host = 127.0.0.1" "port = $good_port" "tls = none" "timeout = 2")
	address="$(unique_id killed)@example.com"
	relay_create "$address" >/dev/null || assert_fail "create-operation failed" || return 1
	mailer_start stalling "$stall_conf"
	for ((i = 0; i < 100; i++)); do
		grep -q 'DATA' "$RELAY_TMP/stalling.log" 2>/dev/null && break
		sleep 0.1
	done
	kill -9 "$MAILER_PID"
	wait "$MAILER_PID" 2>/dev/null || true
	started=$(date +%s)
	row=$(relay_row "$address")
	assert_equal "row while its mailer is gone" "queued	1" "$row"
	mailer_start healthy "$good_conf"
	row=$(relay_wait_status "$address" sent 40)
	elapsed=$(($(date +%s) - started))
	relay_stop_pid "$MAILER_PID"
	assert_equal "outbox row" "sent	2" "$row"
	assert_equal "messages on the healthy relay" 1 "$(relay_count healthy "$address")"
	# The lease is 2 + 15 s; the row must not be taken long before it ends.
	((elapsed >= 10)) || assert_fail "the row was taken again after $elapsed s, before its lease ended"
}

test_case "two mailers, 60 messages: each sent once" two_mailers_send_once
test_case "mailer killed mid-send: message sent again after the lease" killed_mailer_message_resent
relay_cleanup
test_finish
