#!/usr/bin/env bash
# Relays that reject, fail or stall. A temporary failure is retried with
# backoff until the relay accepts. A permanent one ends the message at once
# in the failed state. No relay keeps the mailer past [smtp] timeout, the
# connect included, and every try records the relay's reply.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/assert.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/assert.sh"
# shellcheck source=SCRIPTDIR/../lib/operations.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/operations.sh"
# shellcheck source=SCRIPTDIR/../lib/relay.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/relay.sh"
trap relay_cleanup EXIT

relay_setup

# Seconds since the epoch with milliseconds, for measuring a try.
now_ms() {
	date +%s%3N
}

# Prints emailDelivery.status of operation UUID as userops-ctl show has it.
delivery_status() {
	USEROPS_CTL_CONF=$RELAY_CONF ctl show "$1" 2>/dev/null | jq -r '.outbox[-1].status'
}

temporary_then_accepted() {
	local port conf address uuid row
	relay_port
	port=$RELAY_PORT
	relay_start tempfail "$port" --temp-fail 2 || assert_fail "relay did not start" || return 1
	conf=$(relay_write_conf tempfail "host = 127.0.0.1" "port = $port" "tls = none" "timeout = 5")
	address="$(unique_id tempfail)@example.com"
	uuid=$(relay_create "$address") || assert_fail "create-operation failed" || return 1
	mailer_start tempfail "$conf"
	row=$(relay_wait_status "$address" retrying 10)
	assert_equal "status after the first 451" retrying "${row%%$'\t'*}"
	assert_equal "emailDelivery while retrying" retrying "$(delivery_status "$uuid")"
	assert_equal "reply of the failed try" "451 4.3.0 try again later" "$(relay_reply "$address")"
	row=$(relay_wait_status "$address" sent 15)
	relay_stop_pid "$MAILER_PID"
	assert_equal "outbox row" "sent	3" "$row"
	assert_equal "messages stored" 1 "$(relay_count tempfail "$address")"
	mailer_log tempfail | grep -q "try 2 failed, retrying in [12] s: 451 4.3.0 try again later" ||
		assert_fail "the mailer log has no retry line for try 2 with a 1 to 2 s wait"
}

permanent_fails_at_once() {
	local port conf address uuid row
	relay_port
	port=$RELAY_PORT
	relay_start permfail "$port" --perm-fail || assert_fail "relay did not start" || return 1
	conf=$(relay_write_conf permfail "host = 127.0.0.1" "port = $port" "tls = none" "timeout = 5")
	address="$(unique_id permfail)@example.com"
	uuid=$(relay_create "$address") || assert_fail "create-operation failed" || return 1
	mailer_start permfail "$conf"
	row=$(relay_wait_status "$address" failed 10)
	relay_stop_pid "$MAILER_PID"
	assert_equal "outbox row" "failed	1" "$row"
	assert_equal "recorded reply" "550 5.1.1 mailbox unavailable" "$(relay_reply "$address")"
	assert_equal "emailDelivery" failed "$(delivery_status "$uuid")"
	assert_equal "sealed code wiped" NULL \
		"$(relay_query "SELECT IFNULL(code_sealed, 'NULL') FROM mail_outbox WHERE recipient = '$address'")"
	USEROPS_CTL_CONF=$RELAY_CONF ctl outbox --failed 2>/dev/null | grep -q "550 5.1.1 mailbox unavailable" ||
		assert_fail "userops-ctl outbox --failed does not list the row"
	assert_equal "audit row" mail_failed "$(relay_query "SELECT event FROM audit_log
		WHERE operation_uuid = UNHEX(REPLACE('$uuid', '-', '')) ORDER BY id DESC LIMIT 1")"
}

# The relay is down at the first try and listens at the next.
relay_down_then_back() {
	local port conf address row
	relay_port
	port=$RELAY_PORT
	conf=$(relay_write_conf down "host = 127.0.0.1" "port = $port" "tls = none" "timeout = 5")
	address="$(unique_id down)@example.com"
	relay_create "$address" >/dev/null || assert_fail "create-operation failed" || return 1
	mailer_start down "$conf"
	row=$(relay_wait_status "$address" retrying 10)
	assert_equal "status while the relay is down" retrying "${row%%$'\t'*}"
	assert_equal "recorded reply" "no reply: connect to 127.0.0.1:$port: Connection refused" \
		"$(relay_reply "$address")"
	relay_start down "$port" || assert_fail "relay did not start" || return 1
	row=$(relay_wait_status "$address" sent 15)
	relay_stop_pid "$MAILER_PID"
	assert_equal "status once the relay is back" sent "${row%%$'\t'*}"
	assert_equal "messages stored" 1 "$(relay_count down "$address")"
}

# Runs one try against a relay started with ARG... and a 2 s timeout; sets
# ELAPSED_MS to how long the try took and ADDRESS.
timed_try() {
	local name=$1 port conf row started
	shift
	relay_port
	port=$RELAY_PORT
	relay_start "$name" "$port" "$@" || assert_fail "relay did not start" || return 1
	conf=$(relay_write_conf "$name" "host = 127.0.0.1" "port = $port" "tls = none" "timeout = 2")
	ADDRESS="$(unique_id "$name")@example.com"
	relay_create "$ADDRESS" >/dev/null || assert_fail "create-operation failed" || return 1
	started=$(now_ms)
	mailer_start "$name" "$conf"
	row=$(relay_wait_status "$ADDRESS" retrying 20)
	ELAPSED_MS=$(($(now_ms) - started))
	relay_stop_pid "$MAILER_PID"
	relay_stop "$name"
	assert_equal "status after the stalled try" retrying "${row%%$'\t'*}"
}

# The bound is behaviour, so it is asserted with a wide margin: a 2 s
# timeout must end the try well before 10 s.
stall_at_greeting() {
	timed_try greeting --stall greeting || return 1
	assert_equal "recorded reply" "no reply: the session passed the [smtp] timeout of 2 s" \
		"$(relay_reply "$ADDRESS")"
	((ELAPSED_MS < 10000)) || assert_fail "the try took $ELAPSED_MS ms with a 2 s timeout"
}

stall_after_data() {
	timed_try afterdata --stall data || return 1
	[[ $(relay_reply "$ADDRESS") == "no reply: the session passed the [smtp] timeout of 2 s; last reply: 354 "* ]] ||
		assert_fail "recorded reply is '$(relay_reply "$ADDRESS")'"
	((ELAPSED_MS < 10000)) || assert_fail "the try took $ELAPSED_MS ms with a 2 s timeout"
}

# A reply cut off at the deadline ("250" with no line end) is not an acceptance.
stall_in_final_reply() {
	timed_try partial --stall partial || return 1
	[[ $(relay_reply "$ADDRESS") == "no reply: the session passed the [smtp] timeout of 2 s"* ]] ||
		assert_fail "recorded reply is '$(relay_reply "$ADDRESS")'"
}

connect_never_completes() {
	timed_try blackhole --blackhole || return 1
	assert_equal "recorded reply" \
		"no reply: connect to 127.0.0.1:$((RELAY_NEXT_PORT - 1)) timed out after 2000 ms" \
		"$(relay_reply "$ADDRESS")"
	((ELAPSED_MS < 10000)) || assert_fail "the try took $ELAPSED_MS ms with a 2 s timeout"
}

# A relay that replies 451 to every try uses up max_tries.
tries_run_out() {
	local port conf address row
	relay_port
	port=$RELAY_PORT
	relay_start always451 "$port" --temp-fail 1000 || assert_fail "relay did not start" || return 1
	RELAY_MAILER_CONF=("max_tries = 3")
	conf=$(relay_write_conf always451 "host = 127.0.0.1" "port = $port" "tls = none" "timeout = 5")
	RELAY_MAILER_CONF=()
	address="$(unique_id always451)@example.com"
	relay_create "$address" >/dev/null || assert_fail "create-operation failed" || return 1
	mailer_start always451 "$conf"
	row=$(relay_wait_status "$address" failed 20)
	relay_stop_pid "$MAILER_PID"
	assert_equal "outbox row" "failed	3" "$row"
	assert_equal "recorded reply" "451 4.3.0 try again later" "$(relay_reply "$address")"
	mailer_log always451 | grep -q "failed for good on try 3: 451 4.3.0 try again later" ||
		assert_fail "the mailer log has no line for the last try"
}

test_case "451 twice, then accepted on the third try" temporary_then_accepted
test_case "550 fails the message at once" permanent_fails_at_once
test_case "relay down, then back: delivered" relay_down_then_back
test_case "relay that never greets: try ends at the timeout" stall_at_greeting
test_case "relay that stalls after DATA: try ends at the timeout" stall_after_data
test_case "final reply cut off at the timeout: not sent" stall_in_final_reply
test_case "connect that never completes: try ends at the timeout" connect_never_completes
test_case "max_tries used up: failed with the last reply" tries_run_out
relay_cleanup
test_finish
