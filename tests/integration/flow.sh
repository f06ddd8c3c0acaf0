#!/usr/bin/env bash
# The walk-through of scripts/demo as assertions: an operation with both
# factors is created, mailed, resent, confirmed with a wrong and then the
# right codes, and nothing secret reaches the logs. The stack must run with a
# short [operations] resend_cooldown (tests/run-all sets a few seconds).
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/assert.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/assert.sh"
# shellcheck source=SCRIPTDIR/../lib/operations.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/operations.sh"

USER_ID=$(unique_id flow-user)
FINGERPRINT=$(unique_id flow-device)
EMAIL="$(unique_id flow)@example.com"
LOCAL_PART=${EMAIL%@*}
TOTP_SECRET=$(new_totp_secret)
TOKEN=
UUID=
CHALLENGE=
FIRST_CODE=
SECOND_CODE=

enroll_and_create() {
	enroll_totp "$USER_ID" "$TOTP_SECRET" || assert_fail "userops-ctl totp-enroll failed" || return 1
	TOKEN=$(mint_token "$USER_ID") || assert_fail "userops-ctl issue-token failed" || return 1
	CHALLENGE=$(create_operation --user "$USER_ID" --fingerprint "$FINGERPRINT" \
		--email "$EMAIL" --otp --kind withdrawal --param amount=250 --param currency=EUR) ||
		assert_fail "userops-ctl create-operation failed" || return 1
	UUID=$(jq -r .uuid <<<"$CHALLENGE")
	HTTP_REQUEST="userops-ctl create-operation"
	HTTP_BODY=$CHALLENGE
	assert_json '.uuid | test("^[0-9a-f-]{36}$")' true
	assert_json .email2fa true
	assert_json .otp2fa true
	assert_json .emailHint "***${LOCAL_PART: -3}@example.com"
	assert_json '.expiresAt - now | floor | (. > 590 and . <= 600)' true
}

get_pending() {
	get_operation
	assert_status 200
	assert_json .success true
	assert_json .message 'Operation successful'
	assert_json .data.uuid "$UUID"
	assert_json .data.status pending
	assert_json .data.attemptsLeft 5
	assert_json .data.email2fa true
	assert_json .data.otp2fa true
}

first_mail() {
	mail_wait "$EMAIL" 1 || return 1
	FIRST_CODE=$(mail_latest_code "$EMAIL") || assert_fail "no code in the first mail"
}

resend_too_early() {
	http_request PUT "/operations/$UUID/resend" -t "$TOKEN" -f "$FINGERPRINT"
	assert_error 429001
	assert_header_matches Retry-After '^[1-9][0-9]*$'
}

# Waits until resendEmailAfter of the challenge, then resends.
resend_after_cooldown() {
	local after
	after=$(jq -r .resendEmailAfter <<<"$CHALLENGE")
	wait_until "$after" 30 || return 1
	http_request PUT "/operations/$UUID/resend" -t "$TOKEN" -f "$FINGERPRINT"
	assert_status 200
	assert_json .uuid "$UUID"
	assert_json .email2fa true
	assert_json .expiresAt "$(jq -r .expiresAt <<<"$CHALLENGE")"
	assert_json ".resendEmailAfter > $after" true
}

second_mail() {
	mail_wait "$EMAIL" 2 || return 1
	SECOND_CODE=$(mail_latest_code "$EMAIL") || assert_fail "no code in the second mail"
}

# Prints a code of the same length that is neither of the two mailed codes.
wrong_code() {
	local code
	for code in 000000 111111 222222 333333; do
		if [[ $code != "$FIRST_CODE" && $code != "$SECOND_CODE" ]]; then
			echo "$code"
			return
		fi
	done
}

confirm_wrong_code() {
	local body
	body=$(jq -cn --arg e "$(wrong_code)" --arg o "$(totp_code "$TOTP_SECRET")" \
		'{emailCode: $e, otpCode: $o}')
	http_request PUT "/operations/$UUID/confirm" -t "$TOKEN" -f "$FINGERPRINT" -d "$body"
	assert_error 422001
	assert_json .error.attemptsLeft 4
}

confirm_right_codes() {
	local body
	body=$(jq -cn --arg e "$SECOND_CODE" --arg o "$(totp_code "$TOTP_SECRET")" \
		'{emailCode: $e, otpCode: $o}')
	http_request PUT "/operations/$UUID/confirm" -t "$TOKEN" -f "$FINGERPRINT" -d "$body"
	assert_status 200
	assert_json .success true
	assert_json .data.uuid "$UUID"
	assert_json .data.status confirmed
}

get_confirmed() {
	get_operation
	assert_status 200
	assert_json .data.status confirmed
	assert_json .data.attemptsLeft 4
}

confirm_again() {
	local body
	body=$(jq -cn --arg e "$SECOND_CODE" --arg o "$(totp_code "$TOTP_SECRET")" \
		'{emailCode: $e, otpCode: $o}')
	http_request PUT "/operations/$UUID/confirm" -t "$TOKEN" -f "$FINGERPRINT" -d "$body"
	assert_error 409001
	http_request PUT "/operations/$UUID/cancel" -t "$TOKEN" -f "$FINGERPRINT"
	assert_error 409001
}

other_device() {
	http_request GET "/operations/$UUID" -t "$TOKEN" -f "$(unique_id other-device)"
	assert_error 403001
}

other_user() {
	local token
	token=$(mint_token "$(unique_id other-user)")
	http_request GET "/operations/$UUID" -t "$token" -f "$FINGERPRINT"
	assert_error 404001
}

# The FastCGI workers log to lighttpd's error log and the mailer to its own;
# neither may hold a code, the token, the TOTP secret, the whole address or
# the whole fingerprint.
logs_hold_no_secrets() {
	local log secret
	for log in "$USEROPS_ERROR_LOG" "$USEROPS_MAILER_LOG"; do
		for secret in "$FIRST_CODE" "$SECOND_CODE" "$TOKEN" "$TOTP_SECRET" "$EMAIL" "$FINGERPRINT"; do
			if [[ -n $secret ]] && grep -qF -- "$secret" "$log"; then
				assert_fail "$(basename "$log") contains '${secret:0:12}…'"
			fi
		done
	done
}

test_case "create operation with both factors" enroll_and_create
test_case "GET pending operation" get_pending
test_case "first code mailed" first_mail
test_case "resend too early 429001" resend_too_early
test_case "resend after cooldown" resend_after_cooldown
test_case "second code mailed" second_mail
test_case "confirm wrong code 422001" confirm_wrong_code
test_case "confirm right codes 200" confirm_right_codes
test_case "GET confirmed operation" get_confirmed
test_case "confirmed operation final 409001" confirm_again
test_case "other device 403001" other_device
test_case "other user 404001" other_user
test_case "logs hold no secrets" logs_hold_no_secrets
test_finish
