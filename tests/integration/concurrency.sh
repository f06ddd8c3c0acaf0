#!/usr/bin/env bash
# Requests on one operation at the same time behave as if one came after the
# other: two right confirms, a cancel racing a confirm, wrong codes counted
# once each, two resends, and one TOTP code on two operations of a user.
# Each round has its own user and operation; the requests of a round are
# started together in the background and all are waited for.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/assert.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/assert.sh"
# shellcheck source=SCRIPTDIR/../lib/operations.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/operations.sh"

RESEND_COOLDOWN=${USEROPS_RESEND_COOLDOWN:-60}
# Maximum cooldown, in seconds, for which the resend case waits.
MAX_TEST_COOLDOWN=5
ROUNDS=6

REQUEST_PIDS=()

# Starts PUT /operations/UUID/ACTION [BODY] in the background as the current
# user and device; the status goes to NAME.status and the body to NAME.body
# under ASSERT_TMP.
start_request() {
	local name=$1 action=$2
	local -a body=()
	if (($# > 2)); then
		body=(-H 'Content-Type: application/json' --data-binary "$3")
	fi
	rm -f "$ASSERT_TMP/$name".*
	curl -sS --max-time 15 -X PUT -H "Authorization: Bearer $TOKEN" \
		-H "Fingerprint: $FINGERPRINT" "${body[@]}" -o "$ASSERT_TMP/$name.body" \
		-w '%{http_code}' "$USEROPS_URL/operations/$UUID/$action" \
		>"$ASSERT_TMP/$name.status" 2>"$ASSERT_TMP/$name.error" &
	REQUEST_PIDS+=($!)
}

wait_requests() {
	local pid
	for pid in "${REQUEST_PIDS[@]}"; do
		wait "$pid" || true
	done
	REQUEST_PIDS=()
}

# Prints "STATUS CODE" of the background request NAME: the HTTP status and
# error.code, or "-" for a success.
request_outcome() {
	local status code
	status=$(cat "$ASSERT_TMP/$1.status" 2>/dev/null || echo 000)
	code=$(jq -r '.error.code // "-"' "$ASSERT_TMP/$1.body" 2>/dev/null || echo '?')
	echo "$status $code"
}

current_status() {
	get_operation
	jq -r .data.status <<<"$HTTP_BODY"
}

# Two confirms with the right code at once: exactly one 200, the other
# 409001.
two_confirms_once() {
	local first second round=$1
	new_user confirms && new_operation --email "$EMAIL" || return 1
	wait_mail_code 1 || return 1
	start_request first confirm "{\"emailCode\":\"$MAIL_CODE\"}"
	start_request second confirm "{\"emailCode\":\"$MAIL_CODE\"}"
	wait_requests
	first=$(request_outcome first)
	second=$(request_outcome second)
	case "$first/$second" in
	'200 -/409 409001' | '409 409001/200 -') ;;
	*) assert_fail "round $round: two right confirms answered '$first' and '$second', expected one '200 -' and one '409 409001'" ;;
	esac
	assert_equal "round $round: status after two confirms" confirmed "$(current_status)"
}

two_confirms() {
	local round
	for ((round = 1; round <= ROUNDS; round++)); do
		two_confirms_once "$round" || return 1
	done
}

# A cancel and a right confirm at once: the winner gets 200, the loser
# the code of the winner's state, and GET shows the winner's state. The line
# printed at the end says how often each won.
cancel_against_confirm() {
	local round cancel confirm final confirm_wins=0 cancel_wins=0
	for ((round = 1; round <= ROUNDS; round++)); do
		new_user race && new_operation --email "$EMAIL" || return 1
		wait_mail_code 1 || return 1
		# Each request goes first in turn.
		if ((round % 2 == 1)); then
			start_request confirm confirm "{\"emailCode\":\"$MAIL_CODE\"}"
			start_request cancel cancel
		else
			start_request cancel cancel
			start_request confirm confirm "{\"emailCode\":\"$MAIL_CODE\"}"
		fi
		wait_requests
		confirm=$(request_outcome confirm)
		cancel=$(request_outcome cancel)
		final=$(current_status)
		case "$confirm/$cancel/$final" in
		'200 -/409 409001/confirmed') confirm_wins=$((confirm_wins + 1)) ;;
		'409 409002/200 -/cancelled') cancel_wins=$((cancel_wins + 1)) ;;
		*) assert_fail "round $round: confirm answered '$confirm', cancel '$cancel', final status '$final'" ;;
		esac
	done
	echo "     confirm won $confirm_wins, cancel won $cancel_wins of $ROUNDS rounds"
}

# Five wrong confirms at once are each counted: their attemptsLeft are 4, 3,
# 2, 1 and 0 in some order, and the operation ends rejected.
wrong_codes_at_once() {
	local index left wrong
	local -a lefts=()
	new_user wrong-race && new_operation --email "$EMAIL" || return 1
	wait_mail_code 1 || return 1
	wrong=$(other_code "$MAIL_CODE")
	for index in 1 2 3 4 5; do
		start_request "wrong$index" confirm "{\"emailCode\":\"$wrong\"}"
	done
	wait_requests
	for index in 1 2 3 4 5; do
		assert_equal "wrong confirm $index outcome" '422 422001' "$(request_outcome "wrong$index")"
		left=$(jq -r '.error.attemptsLeft' "$ASSERT_TMP/wrong$index.body" 2>/dev/null || echo '?')
		lefts+=("$left")
	done
	assert_equal "attemptsLeft of the five wrong confirms, sorted" '0 1 2 3 4' \
		"$(printf '%s\n' "${lefts[@]}" | sort -n | tr '\n' ' ' | sed 's/ $//')"
	get_operation
	assert_json .data.status rejected
	assert_json .data.attemptsLeft 0
}

# Two resends at once after the cooldown: one mails a new code (200), the
# other finds the new cooldown running (429001).
two_resends() {
	local first second after
	new_user resend-race && new_operation --email "$EMAIL" || return 1
	after=$(jq -r .resendEmailAfter <<<"$CHALLENGE")
	wait_until "$after" $((RESEND_COOLDOWN + 2)) || return 1
	start_request first resend
	start_request second resend
	wait_requests
	first=$(request_outcome first)
	second=$(request_outcome second)
	case "$first/$second" in
	'200 -/429 429001' | '429 429001/200 -') ;;
	*) assert_fail "two resends answered '$first' and '$second', expected one '200 -' and one '429 429001'" ;;
	esac
	mail_wait "$EMAIL" 2 || return 1
	sleep 1
	assert_equal "mails after two resends at once" 2 "$(mail_count "$EMAIL")"
}

# One TOTP code on two operations of a user at once: one 200, one 422002.
totp_code_twice_at_once() {
	local code first_uuid first second
	new_totp_user totp-race && new_operation --otp || return 1
	first_uuid=$UUID
	new_operation --otp || return 1
	avoid_step_end 3
	code=$(totp_code "$TOTP_SECRET")
	start_request second confirm "{\"otpCode\":\"$code\"}"
	UUID=$first_uuid
	start_request first confirm "{\"otpCode\":\"$code\"}"
	wait_requests
	first=$(request_outcome first)
	second=$(request_outcome second)
	case "$first/$second" in
	'200 -/422 422002' | '422 422002/200 -') ;;
	*) assert_fail "one TOTP code on two operations answered '$first' and '$second', expected one '200 -' and one '422 422002'" ;;
	esac
}

test_case "two right confirms, $ROUNDS rounds" two_confirms
test_case "cancel against confirm, $ROUNDS rounds" cancel_against_confirm
test_case "five wrong confirms at once" wrong_codes_at_once
test_case "one TOTP code twice at once" totp_code_twice_at_once
if ((RESEND_COOLDOWN <= MAX_TEST_COOLDOWN)); then
	test_case "two resends at once" two_resends
else
	skip_case "two resends at once" "resend_cooldown is $RESEND_COOLDOWN s, above $MAX_TEST_COOLDOWN s"
fi
test_finish
