#!/bin/bash
# Checks the PHP peer against userops on a private stack. Each case sends
# the same requests, with the same X-Request-Id, to userops and to the peer
# on twin operations created with userops-ctl. It compares the status, the
# body bytes, the headers that carry meaning and the rows left in MariaDB.
#
#   bench/peers/php/test.sh
#
#   PHP_PEER_TEST_DIR   state folder (default /tmp/userops-php-peer-test)
#   PHP_PEER_TEST_PORT  first of four ports on 127.0.0.1: userops' lighttpd,
#                       MariaDB, the SMTP sink, the peer's lighttpd (default 27030)
#
# It needs a build in build/ (scripts/build), php8.2-fpm, php8.2-mysql and
# the stack's own tools. It sends about 80 requests one at a time and took
# 16 to 17 s on a 2-core machine, most of it starting the stack and waiting
# for mail, for the resend cooldown and for an operation to expire.

# The cases run through test_case, which shellcheck cannot follow.
# shellcheck disable=SC2317

set -uo pipefail

PEER_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$PEER_ROOT/../../.." && pwd)
TEST_DIR=${PHP_PEER_TEST_DIR:-/tmp/userops-php-peer-test}
FIRST_PORT=${PHP_PEER_TEST_PORT:-27030}

export STACK_DIR=$TEST_DIR/stack
export STACK_HTTP_PORT=$FIRST_PORT
export STACK_DB_PORT=$((FIRST_PORT + 1))
export STACK_SMTP_PORT=$((FIRST_PORT + 2))
# A short cooldown lets the resend case run without a long wait.
export STACK_RESEND_COOLDOWN=2
export PHP_PEER_DIR=$TEST_DIR/peer
export PHP_PEER_HTTP_PORT=$((FIRST_PORT + 3))
export PHP_PEER_WORKERS=2

# shellcheck source=../../../tests/lib/stack.sh
source "$REPO/tests/lib/stack.sh"

stop_all() {
	"$PEER_ROOT/run.sh" STOP
	stack_stop
}
trap stop_all EXIT

mkdir -p "$TEST_DIR"
stack_start || exit 1
PHP_PEER_USEROPS_CONF=$STACK_CONF "$PEER_ROOT/run.sh" START || exit 1

export USEROPS_STACK_ENV=$STACK_DIR/stack.env
# shellcheck source=../../../tests/lib/assert.sh
source "$REPO/tests/lib/assert.sh"
# shellcheck source=../../../tests/lib/operations.sh
source "$REPO/tests/lib/operations.sh"

USEROPS_ORIGIN=$USEROPS_URL
PEER_ORIGIN=http://127.0.0.1:$PHP_PEER_HTTP_PORT

# The twin operations of a case: TWIN_UUID[0] on userops, TWIN_UUID[1] on
# the peer, both of the current user, each with its own mail address.
TWIN_UUID=()
TWIN_EMAIL=()
TWIN_CHALLENGE=()

# Creates the twin operations with the extra ARG... of create-operation.
new_twins() {
	local side
	TWIN_UUID=()
	TWIN_EMAIL=()
	TWIN_CHALLENGE=()
	for side in 0 1; do
		# Both local parts end in "box", so both emailHints are "***box@example.com".
		TWIN_EMAIL[side]="$(unique_id "twin$side")-box@example.com"
		TWIN_CHALLENGE[side]=$(create_operation --user "$USER_ID" --fingerprint "$FINGERPRINT" \
			--email "${TWIN_EMAIL[side]}" --param amount=12.50 --param asset=BTC "$@") ||
			assert_fail "userops-ctl create-operation failed" || return 1
		TWIN_UUID[side]=$(jq -r .uuid <<<"${TWIN_CHALLENGE[side]}")
	done
}

# Sends the request to SIDE (0 userops, 1 the peer): http_request with the
# path's {uuid} replaced by that side's twin.
send_to() {
	local side=$1 method=$2 path=$3
	shift 3
	if ((side == 0)); then
		USEROPS_URL=$USEROPS_ORIGIN
	else
		USEROPS_URL=$PEER_ORIGIN
	fi
	http_request "$method" "${path//\{uuid\}/${TWIN_UUID[side]:-}}" "$@"
	USEROPS_URL=$USEROPS_ORIGIN
}

# Prints the last response's status, body and the headers that carry
# meaning, with that side's twin uuid replaced by {uuid}.
response_summary() {
	local side=$1 name
	printf 'status %s\nbody %s\n' "$HTTP_STATUS" "${HTTP_BODY//${TWIN_UUID[side]:-no-twin}/\{uuid\}}"
	for name in Content-Type Cache-Control X-Request-Id WWW-Authenticate Allow; do
		printf '%s: %s\n' "$name" "$(header_value "$name")"
	done
}

# Sends one request to both sides and asserts the same summary. The
# request gets X-Request-Id ID, so that the bodies and audit rows can match.
# Sets USEROPS_SUMMARY and PEER_SUMMARY, and the last response (HTTP_*) is the peer's.
USEROPS_SUMMARY=
PEER_SUMMARY=
both() {
	local id=$1 method=$2 path=$3
	shift 3
	send_to 0 "$method" "$path" -H "X-Request-Id: $id" "$@"
	USEROPS_SUMMARY=$(response_summary 0)
	send_to 1 "$method" "$path" -H "X-Request-Id: $id" "$@"
	PEER_SUMMARY=$(response_summary 1)
	if [[ $PEER_SUMMARY != "$USEROPS_SUMMARY" ]]; then
		assert_fail "$method $path ($id): the peer's response differs from userops'
--- userops
$USEROPS_SUMMARY
--- peer
$PEER_SUMMARY"
	fi
}

# Prints the rows of operation UUID that both sides should leave alike. The
# uuid, the address, the times and the request id of userops-ctl's "created"
# row differ between twins, so they are left out, and each time is printed
# as its relation to another time of the row.
operation_rows() {
	local hex=${1//-/}
	db_query "
		SELECT 'operation', user_id, kind, locale, params, status, email_factor, otp_factor,
			finished_at IS NULL, finished_at = expires_at, finished_at >= created_at,
			wrong_attempts, resends, last_mail_at - created_at > 0,
			code_hmac IS NULL, previous_code_hmac IS NULL
		FROM operations WHERE uuid = UNHEX('$hex');
		SELECT 'audit', event, HEX(fingerprint_sha256), client_address,
			IF(event = 'created', 'userops-ctl', request_id), detail
		FROM audit_log WHERE operation_uuid = UNHEX('$hex') ORDER BY id;
		SELECT 'event', e.user_id, e.kind, e.status, e.at = o.finished_at,
			e.created_at_ms >= e.at * 1000
		FROM operation_events e JOIN operations o ON o.uuid = e.operation_uuid
		WHERE e.operation_uuid = UNHEX('$hex') ORDER BY e.id;
		SELECT 'outbox', template, locale, kind, params, status, seal_key_id,
			code_sealed IS NULL, status_at >= created_at
		FROM mail_outbox WHERE operation_uuid = UNHEX('$hex') ORDER BY id;"
}

# Asserts that both twins left the same rows.
assert_same_rows() {
	local userops_rows peer_rows
	userops_rows=$(operation_rows "${TWIN_UUID[0]}")
	peer_rows=$(operation_rows "${TWIN_UUID[1]}")
	if [[ $peer_rows != "$userops_rows" ]]; then
		assert_fail "the peer's rows differ from userops':
--- userops
$userops_rows
--- peer
$peer_rows"
	fi
}

# Prints the compact JSON text of an HS256 token with header HEADER and
# claims CLAIMS, signed with the stack's user secret.
# shellcheck disable=SC2016 # the PHP code is single-quoted on purpose
sign_token() {
	php -r '
		$encode = fn (string $text): string => rtrim(strtr(base64_encode($text), "+/", "-_"), "=");
		$secret = trim(file_get_contents($argv[1]), " \t\r\n\v\f");
		$input = $encode($argv[2]) . "." . $encode($argv[3]);
		echo $input, ".", $encode(hash_hmac("sha256", $input, $secret, true)), "\n";
	' "$USEROPS_SECRET_DIR/hs256-secret" "$1" "$2"
}

test_confirm() {
	local side code
	new_user confirm
	new_twins || return 1
	both confirm-wrong-1 PUT '/operations/{uuid}/confirm' -t "$TOKEN" -f "$FINGERPRINT" \
		-d '{"emailCode":"000000"}'
	assert_status 422
	assert_json .error.attemptsLeft 4
	assert_equal "wrong_attempts after a wrong code" 1 \
		"$(db_query "SELECT wrong_attempts FROM operations WHERE uuid = UNHEX('${TWIN_UUID[1]//-/}')")"

	for side in 0 1; do
		mail_wait "${TWIN_EMAIL[side]}" 1 || return 1
	done
	code=$(mail_latest_code "${TWIN_EMAIL[0]}")
	send_to 0 PUT '/operations/{uuid}/confirm' -t "$TOKEN" -f "$FINGERPRINT" -H 'X-Request-Id: confirm-right' \
		-d "{\"emailCode\":\"$code\"}"
	USEROPS_SUMMARY=$(response_summary 0)
	code=$(mail_latest_code "${TWIN_EMAIL[1]}")
	send_to 1 PUT '/operations/{uuid}/confirm' -t "$TOKEN" -f "$FINGERPRINT" -H 'X-Request-Id: confirm-right' \
		-d "{\"emailCode\":\" $code\\n\"}"
	assert_status 200
	assert_equal "the peer's confirm response" "$USEROPS_SUMMARY" "$(response_summary 1)"

	both confirm-again PUT '/operations/{uuid}/confirm' -t "$TOKEN" -f "$FINGERPRINT" -d '{"code":"123456"}'
	assert_status 409
	assert_same_rows
}

test_cancel() {
	local side
	new_user cancel
	new_twins || return 1
	# The first mail goes out before the cancel, so both outbox rows end as sent, not dropped.
	for side in 0 1; do
		mail_wait "${TWIN_EMAIL[side]}" 1 || return 1
	done
	both cancel-1 PUT '/operations/{uuid}/cancel' -t "$TOKEN" -f "$FINGERPRINT"
	assert_status 200
	assert_json .data.status cancelled
	both cancel-2 PUT '/operations/{uuid}/cancel' -t "$TOKEN" -f "$FINGERPRINT" -d '{"reason":"twice"}'
	assert_status 200
	both cancel-confirm PUT '/operations/{uuid}/confirm' -t "$TOKEN" -f "$FINGERPRINT" -d '{"emailCode":"123456"}'
	assert_error 409002
	both cancel-resend PUT '/operations/{uuid}/resend' -t "$TOKEN" -f "$FINGERPRINT"
	assert_error 409002
	assert_same_rows
}

test_resend() {
	local side after last_mail expected code
	new_user resend
	new_twins || return 1
	both resend-early PUT '/operations/{uuid}/resend' -t "$TOKEN" -f "$FINGERPRINT"
	assert_error 429001
	assert_header_matches Retry-After '^[12]$'

	after=$(jq -r .resendEmailAfter <<<"${TWIN_CHALLENGE[1]}")
	wait_until "$after" 5 || return 1
	sleep 1
	for side in 0 1; do
		send_to "$side" PUT '/operations/{uuid}/resend' -t "$TOKEN" -f "$FINGERPRINT" -H 'X-Request-Id: resend-1'
		assert_status 200
		# The challenge as userops builds it: the second wait is the cooldown doubled.
		last_mail=$(db_query "SELECT last_mail_at FROM operations WHERE uuid = UNHEX('${TWIN_UUID[side]//-/}')")
		expected=$(jq -c --argjson after $((last_mail + 2 * STACK_RESEND_COOLDOWN)) \
			'{email2fa, emailHint, expiresAt, otp2fa, resendEmailAfter: $after, uuid}' <<<"${TWIN_CHALLENGE[side]}")
		assert_equal "resend response of side $side" "$expected" "$HTTP_BODY"
	done

	both resend-again PUT '/operations/{uuid}/resend' -t "$TOKEN" -f "$FINGERPRINT"
	assert_error 429001

	# The mailer opens the code that the peer sealed, and the peer accepts it.
	mail_wait "${TWIN_EMAIL[1]}" 2 || return 1
	mail_wait "${TWIN_EMAIL[0]}" 2 || return 1
	for side in 0 1; do
		code=$(mail_latest_code "${TWIN_EMAIL[side]}")
		send_to "$side" PUT '/operations/{uuid}/confirm' -t "$TOKEN" -f "$FINGERPRINT" \
			-H 'X-Request-Id: resend-confirm' -d "{\"emailCode\":\"$code\"}"
		assert_status 200
	done
	assert_same_rows
}

test_previous_code() {
	local side
	local -a first_code=()
	new_user previous
	new_twins || return 1
	for side in 0 1; do
		mail_wait "${TWIN_EMAIL[side]}" 1 || return 1
		first_code[side]=$(mail_latest_code "${TWIN_EMAIL[side]}")
	done
	wait_until "$(jq -r .resendEmailAfter <<<"${TWIN_CHALLENGE[1]}")" 5 || return 1
	sleep 1
	both previous-resend PUT '/operations/{uuid}/resend' -t "$TOKEN" -f "$FINGERPRINT"
	assert_status 200
	# Waiting for the second mail keeps its outbox row from being dropped by the confirm.
	for side in 0 1; do
		mail_wait "${TWIN_EMAIL[side]}" 2 || return 1
	done

	# accept_previous_code = yes: the first mail's code still confirms after a resend.
	for side in 0 1; do
		send_to "$side" PUT '/operations/{uuid}/confirm' -t "$TOKEN" -f "$FINGERPRINT" \
			-H 'X-Request-Id: previous-confirm' -d "{\"emailCode\":\"${first_code[side]}\"}"
		assert_status 200
	done
	assert_same_rows
}

test_request_checks() {
	local expired_token none_token other_token now
	new_user checks
	new_twins || return 1
	now=$(date +%s)
	expired_token=$(sign_token '{"alg":"HS256","typ":"JWT"}' "{\"sub\":\"$USER_ID\",\"exp\":$((now - 100))}")
	none_token=$(sign_token '{"alg":"none"}' "{\"sub\":\"$USER_ID\",\"exp\":$((now + 600))}")
	other_token=$(mint_token "$(unique_id other-user)")

	both no-token PUT '/operations/{uuid}/confirm' -f "$FINGERPRINT" -d '{"emailCode":"123456"}'
	assert_error 401001
	both basic PUT '/operations/{uuid}/confirm' -H 'Authorization: Basic dTpw' -f "$FINGERPRINT"
	assert_error 401001
	both bad-signature PUT '/operations/{uuid}/confirm' -t "${TOKEN%?}A" -f "$FINGERPRINT"
	assert_error 401002
	both alg-none PUT '/operations/{uuid}/confirm' -t "$none_token" -f "$FINGERPRINT"
	assert_error 401002
	both expired PUT '/operations/{uuid}/confirm' -t "$expired_token" -f "$FINGERPRINT"
	assert_error 401003
	both no-fingerprint PUT '/operations/{uuid}/confirm' -t "$TOKEN"
	assert_error 400002
	both bad-uuid PUT '/operations/not-a-uuid/confirm' -t "$TOKEN" -f "$FINGERPRINT"
	assert_error 400003
	both get-method GET '/operations/{uuid}/confirm' -t "$TOKEN" -f "$FINGERPRINT"
	assert_error 405001
	both trailing-slash PUT '/operations/{uuid}/confirm/' -t "$TOKEN" -f "$FINGERPRINT"
	assert_error 404002
	both other-device PUT '/operations/{uuid}/confirm' -t "$TOKEN" -f other-device -d '{"emailCode":"123456"}'
	assert_error 403001
	both other-user PUT '/operations/{uuid}/cancel' -t "$other_token" -f "$FINGERPRINT"
	assert_error 404001
	both unknown PUT '/operations/00000000-0000-4000-8000-000000000000/resend' -t "$TOKEN" -f "$FINGERPRINT"
	assert_error 404001
	both text-body PUT '/operations/{uuid}/confirm' -t "$TOKEN" -f "$FINGERPRINT" -H 'Content-Type: text/plain' -d 'x'
	assert_error 415001
	both latin1 PUT '/operations/{uuid}/confirm' -t "$TOKEN" -f "$FINGERPRINT" \
		-H 'Content-Type: application/json; charset="latin1"' -d '{}'
	assert_error 415001
	both bad-json PUT '/operations/{uuid}/confirm' -t "$TOKEN" -f "$FINGERPRINT" -d '{"emailCode":'
	assert_error 400001
	both no-code PUT '/operations/{uuid}/confirm' -t "$TOKEN" -f "$FINGERPRINT" -d '{"otpCode":"123456"}'
	assert_error 400004
	assert_json .error.field emailCode
	both no-body PUT '/operations/{uuid}/confirm' -t "$TOKEN" -f "$FINGERPRINT"
	assert_error 400004
	both number-code PUT '/operations/{uuid}/confirm' -t "$TOKEN" -f "$FINGERPRINT" -d '{"emailCode":123456}'
	assert_error 400001
	assert_json .error.field emailCode
	both short-code PUT '/operations/{uuid}/confirm' -t "$TOKEN" -f "$FINGERPRINT" -d '{"code":"12345"}'
	assert_error 400001
	assert_json .error.field code
	assert_equal "wrong_attempts after malformed requests" 0 \
		"$(db_query "SELECT wrong_attempts FROM operations WHERE uuid = UNHEX('${TWIN_UUID[1]//-/}')")"
	assert_same_rows
}

test_expired() {
	new_user expired
	new_twins --ttl 1 || return 1
	sleep 2
	both expired-confirm PUT '/operations/{uuid}/confirm' -t "$TOKEN" -f "$FINGERPRINT" -d '{"emailCode":"123456"}'
	assert_error 410001
	both expired-cancel PUT '/operations/{uuid}/cancel' -t "$TOKEN" -f "$FINGERPRINT"
	assert_error 410001
	assert_same_rows
}

test_rejected() {
	local try
	new_user rejected
	new_twins || return 1
	for try in 1 2 3 4 5; do
		both "rejected-$try" PUT '/operations/{uuid}/confirm' -t "$TOKEN" -f "$FINGERPRINT" \
			-d '{"emailCode":"000000"}'
		assert_error 422001
	done
	assert_json .error.attemptsLeft 0
	both rejected-after PUT '/operations/{uuid}/confirm' -t "$TOKEN" -f "$FINGERPRINT" -d '{"emailCode":"000000"}'
	assert_error 409003
	assert_same_rows
}

# Two confirms with the right code at once on the peer: the row lock lets
# exactly one through, and the other gets 409001.
test_concurrent_confirm() {
	local code statuses
	new_user concurrent
	new_twins || return 1
	mail_wait "${TWIN_EMAIL[1]}" 1 || return 1
	code=$(mail_latest_code "${TWIN_EMAIL[1]}")
	statuses=$(
		for _ in 1 2; do
			curl -s --max-time 15 -o /dev/null -w '%{http_code}\n' -X PUT \
				-H "Authorization: Bearer $TOKEN" -H "Fingerprint: $FINGERPRINT" \
				-H 'Content-Type: application/json' -d "{\"emailCode\":\"$code\"}" \
				"$PEER_ORIGIN/operations/${TWIN_UUID[1]}/confirm" &
		done
		wait
	)
	assert_equal "statuses of two concurrent confirms" "200 409" "$(sort <<<"$statuses" | xargs)"
	assert_equal "confirmed events of the operation" 1 \
		"$(db_query "SELECT COUNT(*) FROM operation_events WHERE operation_uuid = UNHEX('${TWIN_UUID[1]//-/}')")"
}

test_case "request checks match userops" test_request_checks
test_case "confirm matches userops" test_confirm
test_case "cancel matches userops" test_cancel
test_case "resend matches userops" test_resend
test_case "previous code after resend" test_previous_code
test_case "expired operation matches userops" test_expired
test_case "fifth wrong code rejects" test_rejected
test_case "concurrent confirms one wins" test_concurrent_confirm
test_finish
