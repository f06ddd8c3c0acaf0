#!/usr/bin/env bash
# Every error code the user routes can return, each with its HTTP status,
# error.code and the member or header it carries (field, attemptsLeft, Allow,
# Retry-After, WWW-Authenticate), and the order in which the checks run.
# Each case has its own user and operation. The resend cases need a short
# [operations] resend_cooldown (tests/run-all sets 3 s); with a longer one
# they are skipped.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/assert.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/assert.sh"
# shellcheck source=SCRIPTDIR/../lib/operations.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/operations.sh"

HS256_SECRET=$(tr -d ' \t\r\n' <"$USEROPS_SECRET_DIR/hs256-secret")
RESEND_COOLDOWN=${USEROPS_RESEND_COOLDOWN:-60}
# Maximum cooldown, in seconds, for which the resend cases wait, because the
# third resend waits four cooldowns.
MAX_TEST_COOLDOWN=5
MAX_BODY=16384
# A well-formed uuid that no operation has.
MISSING_UUID=$(cat /proc/sys/kernel/random/uuid)

# Writes a JSON object of exactly SIZE bytes to FILE.
write_json_of_size() {
	local size=$1 file=$2
	{
		printf '{"pad":"'
		head -c $((size - 10)) /dev/zero | tr '\0' x
		printf '"}'
	} >"$file"
}

# Sends PUT PATH with the body in FILE as application/json, Content-Length
# or chunked (MODE), and stores the response as http_request does.
put_body_file() {
	local path=$1 file=$2 mode=$3
	local -a transfer=()
	if [[ $mode == chunked ]]; then
		transfer=(-H 'Transfer-Encoding: chunked')
	fi
	HTTP_REQUEST="PUT $path ($mode body of $(wc -c <"$file") bytes)"
	HTTP_STATUS=$(curl -sS --path-as-is --max-time 15 -X PUT \
		-H "Authorization: Bearer $TOKEN" -H "Fingerprint: $FINGERPRINT" \
		-H 'Content-Type: application/json' "${transfer[@]}" --data-binary "@$file" \
		-o "$ASSERT_TMP/body" -D "$ASSERT_TMP/all-headers" -w '%{http_code}' \
		"$USEROPS_URL$path") || HTTP_STATUS=000
	store_curl_response
}

base64url() {
	openssl base64 -A | tr '+/' '-_' | tr -d '='
}

# Prints a JWT of the JSON texts HEADER and PAYLOAD signed with HMAC under
# SECRET, with DIGEST sha256 (default), sha384 or sha512.
sign_token() {
	local header=$1 payload=$2 secret=$3 digest=${4:-sha256} input signature
	input="$(printf '%s' "$header" | base64url).$(printf '%s' "$payload" | base64url)"
	signature=$(printf '%s' "$input" |
		openssl dgst "-$digest" -mac HMAC -macopt "key:$secret" -binary | base64url)
	printf '%s.%s\n' "$input" "$signature"
}

# Prints an HS256 token for the current user with the stack's secret and the
# claims exp = now + EXP_OFFSET seconds plus the extra JSON members in EXTRA.
stack_token() {
	local exp_offset=$1 extra=${2:-} payload
	payload=$(jq -cn --arg sub "$USER_ID" --argjson exp $(($(date +%s) + exp_offset)) \
		"{sub: \$sub, exp: \$exp} + ($extra{})")
	sign_token '{"alg":"HS256","typ":"JWT"}' "$payload" "$HS256_SECRET"
}

# --- 400001 -----------------------------------------------------------------

malformed_json() {
	local body nested=''
	local -a bodies=('{"emailCode":' '{"emailCode":"123456"} x' '{"emailCode":"123456"}{}'
		'[]' '"123456"' '{"emailCode":"12\u00003456"}' $'{"emailCode":"\xff\xfe"}'
		"{'emailCode':'123456'}" '{"emailCode":"123456",}')
	new_user malformed && new_operation --email "$EMAIL" || return 1

	# Seventeen levels of objects, one more than the parser allows.
	nested='{}'
	for ((level = 1; level < 17; level++)); do
		nested="{\"a\":$nested}"
	done
	bodies+=("$nested")

	for body in "${bodies[@]}"; do
		put_action confirm "$body"
		HTTP_REQUEST+=" with body ${body:0:40}"
		expect_error 400001
	done
	expect_operation pending 5
}

# Sixteen levels, the top object included, are still accepted.
nesting_limit_accepted() {
	local nested='{}' level
	new_user nesting && new_operation --email "$EMAIL" || return 1
	for ((level = 1; level < 16; level++)); do
		nested="{\"a\":$nested}"
	done
	put_action cancel "$nested"
	assert_status 200
	assert_json .data.status cancelled
}

malformed_email_code() {
	local body
	local -a bodies=('{"emailCode":123456}' '{"emailCode":null}' '{"emailCode":"12345"}'
		'{"emailCode":"1234567"}' '{"emailCode":"12a456"}' '{"emailCode":""}'
		'{"emailCode":"１２３４５６"}' '{"emailCode":["123456"]}' '{"emailCode":true}')
	new_user bad-code && new_operation --email "$EMAIL" || return 1
	for body in "${bodies[@]}"; do
		put_action confirm "$body"
		HTTP_REQUEST+=" with body $body"
		expect_error 400001
		assert_json .error.field emailCode
	done

	# A lone code stands for emailCode; the field may name either.
	put_action confirm '{"code":123456}'
	expect_error 400001
	assert_json '.error.field | IN("code", "emailCode")' true

	# A malformed code costs no attempt.
	expect_operation pending 5
}

# White space around the digits is ignored, so this is a wrong code, not a
# malformed one.
code_with_white_space() {
	new_user spaced && new_operation --email "$EMAIL" || return 1
	wait_mail_code 1 || return 1
	put_action confirm "{\"emailCode\":\" $(other_code "$MAIL_CODE") \"}"
	expect_error 422001
	assert_json .error.attemptsLeft 4
}

malformed_otp_code() {
	local body
	local -a bodies=('{"emailCode":"123456","otpCode":123456}'
		'{"emailCode":"123456","otpCode":null}' '{"emailCode":"123456","otpCode":"12345"}'
		'{"emailCode":"123456","otpCode":"abcdef"}')
	new_totp_user bad-otp && new_operation --email "$EMAIL" --otp || return 1
	for body in "${bodies[@]}"; do
		put_action confirm "$body"
		HTTP_REQUEST+=" with body $body"
		expect_error 400001
		assert_json .error.field otpCode
	done

	# emailCode is checked first, and the first problem decides the error.
	put_action confirm '{"emailCode":"12","otpCode":"34"}'
	expect_error 400001
	assert_json .error.field emailCode
	put_action confirm '{"emailCode":"12"}'
	expect_error 400001
	assert_json .error.field emailCode
	put_action confirm '{"otpCode":"34"}'
	expect_error 400004
	assert_json .error.field emailCode
	expect_operation pending 5
}

# --- 400002 and 400003 ------------------------------------------------------

bad_fingerprint() {
	local value
	local -a values=("$(printf 'f%.0s' {1..256})" 'has space' 'dévice' $'tab\there')
	new_user fingerprint && new_operation --email "$EMAIL" || return 1

	http_request GET "/operations/$UUID" -t "$TOKEN"
	expect_error 400002
	http_request GET "/operations/$UUID" -t "$TOKEN" -H 'Fingerprint;'
	expect_error 400002
	for value in "${values[@]}"; do
		http_request GET "/operations/$UUID" -t "$TOKEN" -H "Fingerprint: $value"
		HTTP_REQUEST+=" with Fingerprint '${value:0:20}' (${#value} characters)"
		expect_error 400002
	done

	put_action cancel
	HTTP_REQUEST+=" after the bad fingerprints"
	assert_status 200
}

# 255 characters is the longest fingerprint allowed.
longest_fingerprint() {
	USER_ID=$(unique_id longest-user)
	FINGERPRINT=$(printf 'f%.0s' {1..240})$(printf '%015d' $((RANDOM * RANDOM)))
	TOKEN=$(mint_token "$USER_ID") || return 1
	new_operation --email "$(unique_id longest)@example.com" || return 1
	get_operation
	assert_status 200
	assert_json .data.uuid "$UUID"
}

bad_uuid() {
	local uuid action
	new_user bad-uuid || return 1
	for uuid in not-a-uuid "${MISSING_UUID:0:35}" "${MISSING_UUID}0" "${MISSING_UUID:0:35}g" \
		"${MISSING_UUID//-/}" "${MISSING_UUID:0:7}-${MISSING_UUID:7:1}${MISSING_UUID:9}" \
		"${MISSING_UUID:0:35}%20"; do
		http_request GET "/operations/$uuid" -t "$TOKEN" -f "$FINGERPRINT"
		expect_error 400003
		for action in cancel confirm resend; do
			http_request PUT "/operations/$uuid/$action" -t "$TOKEN" -f "$FINGERPRINT"
			expect_error 400003
		done
	done
}

# --- 400004 -----------------------------------------------------------------

missing_email_code() {
	new_user missing-email && new_operation --email "$EMAIL" || return 1
	put_action confirm '{}'
	expect_error 400004
	assert_json .error.field emailCode
	# A code for a factor the operation lacks is ignored.
	put_action confirm '{"otpCode":"123456"}'
	expect_error 400004
	assert_json .error.field emailCode
	put_action confirm
	HTTP_REQUEST+=" without a body"
	expect_error 400004
	assert_json .error.field emailCode
	put_action confirm ''
	HTTP_REQUEST+=" with an empty body"
	expect_error 400004
	assert_json .error.field emailCode
	expect_operation pending 5
}

missing_otp_code() {
	new_totp_user missing-otp && new_operation --otp || return 1
	put_action confirm
	HTTP_REQUEST+=" without a body"
	expect_error 400004
	assert_json .error.field otpCode
	put_action confirm '{"emailCode":"123456"}'
	expect_error 400004
	assert_json .error.field otpCode

	new_operation --email "$EMAIL" --otp || return 1
	put_action confirm '{"emailCode":"123456"}'
	expect_error 400004
	assert_json .error.field otpCode
	# A lone code stands for emailCode when both factors are on.
	put_action confirm '{"code":"123456"}'
	expect_error 400004
	assert_json .error.field otpCode
	expect_operation pending 5
}

# --- 401 --------------------------------------------------------------------

missing_token() {
	local header
	new_user no-token && new_operation --email "$EMAIL" || return 1
	http_request GET "/operations/$UUID" -f "$FINGERPRINT"
	expect_error 401001
	assert_header WWW-Authenticate 'Bearer realm="userops"'
	for header in 'Authorization: Basic dXNlcjpwYXNz' 'Authorization: Bearer' \
		"Authorization: Token $TOKEN"; do
		http_request PUT "/operations/$UUID/cancel" -f "$FINGERPRINT" -H "$header"
		HTTP_REQUEST+=" with '${header:0:30}'"
		expect_error 401001
		assert_header WWW-Authenticate 'Bearer realm="userops"'
	done
}

invalid_token() {
	local token now header
	local -a tokens=()
	new_user bad-token && new_operation --email "$EMAIL" || return 1
	now=$(date +%s)
	header='{"alg":"HS256","typ":"JWT"}'
	tokens+=(garbage not.a.token "$TOKEN"x)
	tokens+=("$(sign_token "$header" "{\"sub\":\"$USER_ID\",\"exp\":$((now + 600))}" \
		"another-secret-of-at-least-32-bytes-0123456789")")
	tokens+=("$(sign_token '{"alg":"HS512","typ":"JWT"}' \
		"{\"sub\":\"$USER_ID\",\"exp\":$((now + 600))}" "$HS256_SECRET" sha512)")
	# alg none with an empty signature.
	tokens+=("$(printf '%s' '{"alg":"none","typ":"JWT"}' | base64url).$(printf '%s' \
		"{\"sub\":\"$USER_ID\",\"exp\":$((now + 600))}" | base64url).")
	tokens+=("$(sign_token "$header" "{\"sub\":\"$USER_ID\"}" "$HS256_SECRET")")
	tokens+=("$(sign_token "$header" "{\"exp\":$((now + 600))}" "$HS256_SECRET")")
	tokens+=("$(stack_token 600 "{nbf: $((now + 300))} + ")")
	tokens+=("$(sign_token "$header" "{\"sub\":1.5,\"exp\":$((now + 600))}" "$HS256_SECRET")")
	# Expired and badly signed: invalid, not expired.
	tokens+=("$(sign_token "$header" "{\"sub\":\"$USER_ID\",\"exp\":$((now - 600))}" \
		"another-secret-of-at-least-32-bytes-0123456789")")

	for token in "${tokens[@]}"; do
		http_request GET "/operations/$UUID" -t "$token" -f "$FINGERPRINT"
		HTTP_REQUEST+=" with token ${token:0:60}…"
		expect_error 401002
		assert_header WWW-Authenticate 'Bearer realm="userops", error="invalid_token"'
	done
}

expired_token() {
	local token
	new_user expired-token && new_operation --email "$EMAIL" || return 1
	# Past the 30 s leeway.
	token=$(stack_token -45)
	http_request GET "/operations/$UUID" -t "$token" -f "$FINGERPRINT"
	HTTP_REQUEST+=" with a token expired 45 s ago"
	expect_error 401003
	assert_header WWW-Authenticate 'Bearer realm="userops", error="invalid_token"'
}

# Hand-signed tokens with the stack's secret are accepted, inside the leeway
# too, and the scheme is case-insensitive.
hand_signed_token() {
	local token
	new_user signed && new_operation --email "$EMAIL" || return 1
	token=$(stack_token 600)
	http_request GET "/operations/$UUID" -t "$token" -f "$FINGERPRINT"
	assert_status 200
	token=$(stack_token -10)
	http_request GET "/operations/$UUID" -t "$token" -f "$FINGERPRINT"
	HTTP_REQUEST+=" with a token expired 10 s ago"
	assert_status 200
	token=$(stack_token 600 "{nbf: $(($(date +%s) + 10))} + ")
	http_request GET "/operations/$UUID" -t "$token" -f "$FINGERPRINT"
	HTTP_REQUEST+=" with nbf 10 s ahead"
	assert_status 200
	http_request GET "/operations/$UUID" -f "$FINGERPRINT" -H "Authorization: bEaReR $TOKEN"
	assert_status 200
}

# A numeric sub that is a JSON integer is the user id in decimal.
numeric_subject() {
	local number=$((900000000 + RANDOM * 1000 + ${ASSERT_SEQUENCE:-0})) token
	USER_ID=$number
	FINGERPRINT=$(unique_id numeric-device)
	EMAIL="$(unique_id numeric)@example.com"
	new_operation --email "$EMAIL" || return 1
	token=$(sign_token '{"alg":"HS256","typ":"JWT"}' \
		"{\"sub\":$number,\"exp\":$(($(date +%s) + 600))}" "$HS256_SECRET")
	http_request GET "/operations/$UUID" -t "$token" -f "$FINGERPRINT"
	assert_status 200
	assert_json .data.uuid "$UUID"
}

# --- 403001, 404001, 404002, 405001 -----------------------------------------

other_device() {
	local device action
	new_user device && new_operation --email "$EMAIL" || return 1
	device=$(unique_id other-device)
	http_request GET "/operations/$UUID" -t "$TOKEN" -f "$device"
	expect_error 403001
	for action in cancel confirm resend; do
		http_request PUT "/operations/$UUID/$action" -t "$TOKEN" -f "$device" \
			-d '{"emailCode":"123456"}'
		expect_error 403001
	done
	expect_operation pending 5
}

unknown_operation() {
	local action
	new_user unknown || return 1
	http_request GET "/operations/$MISSING_UUID" -t "$TOKEN" -f "$FINGERPRINT"
	expect_error 404001
	for action in cancel confirm resend; do
		http_request PUT "/operations/$MISSING_UUID/$action" -t "$TOKEN" -f "$FINGERPRINT" \
			-d '{"emailCode":"123456"}'
		expect_error 404001
	done
}

# Another user's operation gets the same body as one that does not exist,
# so a caller learns nothing about it. The request id is fixed so that the
# bodies can be compared byte for byte.
other_users_operation() {
	local owner_uuid missing_body action
	new_user owner && new_operation --email "$EMAIL" || return 1
	owner_uuid=$UUID
	new_user intruder || return 1

	for action in '' /cancel /confirm /resend; do
		local method=PUT
		[[ -z $action ]] && method=GET
		http_request "$method" "/operations/$MISSING_UUID$action" -t "$TOKEN" -f "$FINGERPRINT" \
			-H 'X-Request-Id: same-request-id'
		expect_error 404001
		missing_body=$HTTP_BODY
		http_request "$method" "/operations/$owner_uuid$action" -t "$TOKEN" -f "$FINGERPRINT" \
			-H 'X-Request-Id: same-request-id'
		expect_error 404001
		assert_equal "$HTTP_REQUEST body beside that of an unknown uuid" "$missing_body" "$HTTP_BODY"
	done
}

unknown_route() {
	new_user route && new_operation --email "$EMAIL" || return 1
	put_action approve
	expect_error 404002
	http_request GET "/operations/$UUID/confirm/extra" -t "$TOKEN" -f "$FINGERPRINT"
	expect_error 404002
}

wrong_method() {
	new_user method && new_operation --email "$EMAIL" || return 1
	http_request PUT "/operations/$UUID" -t "$TOKEN" -f "$FINGERPRINT"
	expect_error 405001
	assert_header Allow GET
	http_request DELETE "/operations/$UUID" -t "$TOKEN" -f "$FINGERPRINT"
	expect_error 405001
	assert_header Allow GET
	local action
	for action in cancel confirm resend; do
		http_request GET "/operations/$UUID/$action" -t "$TOKEN" -f "$FINGERPRINT"
		expect_error 405001
		assert_header Allow PUT
		# lighttpd rejects a POST without Content-Length itself with 411, so
		# each POST here carries a body.
		http_request POST "/operations/$UUID/$action" -t "$TOKEN" -f "$FINGERPRINT" -d '{}'
		expect_error 405001
		assert_header Allow PUT
	done
	http_request POST /health -d ''
	expect_error 405001
	assert_header Allow GET
	expect_operation pending 5
}

# --- 409 --------------------------------------------------------------------

confirmed_409001() {
	local action
	new_user confirmed && new_operation --email "$EMAIL" || return 1
	wait_mail_code 1 || return 1
	put_action confirm "{\"emailCode\":\"$MAIL_CODE\"}"
	assert_status 200 || return 1
	for action in confirm cancel resend; do
		put_action "$action" "{\"emailCode\":\"$MAIL_CODE\"}"
		expect_error 409001
	done
}

cancelled_409002() {
	new_user cancelled && new_operation --email "$EMAIL" || return 1
	wait_mail_code 1 || return 1
	put_action cancel
	assert_status 200 || return 1
	put_action confirm "{\"emailCode\":\"$MAIL_CODE\"}"
	expect_error 409002
	put_action resend
	expect_error 409002
}

# Five wrong codes count attemptsLeft down to 0 and reject the operation.
# After that even the right code gets 409003.
rejected_422001_409003() {
	local left wrong
	new_user rejected && new_operation --email "$EMAIL" || return 1
	wait_mail_code 1 || return 1
	wrong=$(other_code "$MAIL_CODE")
	for left in 4 3 2 1 0; do
		put_action confirm "{\"emailCode\":\"$wrong\"}"
		expect_error 422001
		assert_json .error.attemptsLeft "$left"
	done
	put_action confirm "{\"emailCode\":\"$MAIL_CODE\"}"
	expect_error 409003
	put_action resend
	expect_error 409003
	put_action cancel
	expect_error 409003
	expect_operation rejected 0
}

otp_only_resend_409004() {
	new_totp_user otp-resend && new_operation --otp || return 1
	put_action resend
	expect_error 409004
	expect_operation pending 5
}

# --- 410001 -----------------------------------------------------------------

# The operation is expired once expiresAt is reached, with nothing but the
# clock having changed.
expired_410001() {
	local action
	new_user expired && new_operation --email "$EMAIL" --ttl 2 || return 1
	wait_mail_code 1 || return 1
	while (($(date +%s) < $(jq -r .expiresAt <<<"$CHALLENGE"))); do
		sleep 0.2
	done
	for action in confirm cancel resend; do
		put_action "$action" "{\"emailCode\":\"$MAIL_CODE\"}"
		expect_error 410001
	done
	get_operation
	assert_status 200
	assert_json .data.status expired
	assert_json .data.attemptsLeft 5
	assert_json .data.resendEmailAfter null
}

# --- 413001 and 415001 ------------------------------------------------------

body_too_large() {
	local file=$ASSERT_TMP/large.json
	new_user large && new_operation --email "$EMAIL" || return 1
	write_json_of_size $((MAX_BODY + 1)) "$file"
	put_body_file "/operations/$UUID/confirm" "$file" content-length
	expect_error 413001
	put_body_file "/operations/$UUID/confirm" "$file" chunked
	expect_error 413001
	put_body_file "/operations/$UUID/cancel" "$file" content-length
	expect_error 413001
	expect_operation pending 5

	# The largest body allowed is accepted.
	write_json_of_size "$MAX_BODY" "$file"
	put_body_file "/operations/$UUID/cancel" "$file" content-length
	assert_status 200
	assert_json .data.status cancelled
}

wrong_media_type() {
	local type
	new_user media && new_operation --email "$EMAIL" || return 1
	for type in text/plain 'application/json; charset=latin1' 'application/json; charset=iso-8859-1' \
		application/x-www-form-urlencoded 'application/jsonx' 'text/json'; do
		http_request PUT "/operations/$UUID/confirm" -t "$TOKEN" -f "$FINGERPRINT" \
			-d '{"emailCode":"123456"}' -H "Content-Type: $type"
		expect_error 415001
	done
	expect_operation pending 5
}

# The media type and charset are case-insensitive, the charset may be
# quoted and other parameters are ignored; an empty body needs no type.
accepted_media_types() {
	local type
	new_user media-ok || return 1
	for type in 'Application/JSON' 'application/json; charset=UTF-8' 'application/json;charset="utf-8"' \
		'application/json; foo=bar; charset=Utf-8'; do
		http_request PUT "/operations/$MISSING_UUID/confirm" -t "$TOKEN" -f "$FINGERPRINT" \
			-d '{"emailCode":"123456"}' -H "Content-Type: $type"
		HTTP_REQUEST+=" with Content-Type $type"
		expect_error 404001
	done
	http_request PUT "/operations/$MISSING_UUID/cancel" -t "$TOKEN" -f "$FINGERPRINT" \
		-d '' -H 'Content-Type: text/plain'
	HTTP_REQUEST+=" with an empty text/plain body"
	expect_error 404001
}

# --- 422002 -----------------------------------------------------------------

# A TOTP code accepted once is refused on another operation of the same user
# in the same step, at no cost in attempts.
totp_reused_422002() {
	local code code_time next_step retry
	new_totp_user reused && new_operation --otp || return 1
	# Keep clear of a step's end, so that the code's step is the service's.
	code_time=$(date +%s)
	if ((30 - code_time % 30 <= 3)); then
		sleep $((30 - code_time % 30))
		code_time=$(date +%s)
	fi
	code=$(totp_code "$TOTP_SECRET" "@$code_time")
	next_step=$(((code_time / 30 + 1) * 30))
	put_action confirm "{\"otpCode\":\"$code\"}"
	assert_status 200 || return 1

	new_operation --otp || return 1
	put_action confirm "{\"otpCode\":\"$code\"}"
	expect_error 422002
	assert_header_matches Retry-After '^[0-9]+$' || return 1
	retry=$(header_value Retry-After)
	if ((retry < 1 || retry > 30)); then
		assert_fail "$HTTP_REQUEST: Retry-After $retry is not between 1 and 30"
	fi
	# Retry-After counts to the step after the one accepted.
	if ((retry < next_step - $(date +%s) - 1 || retry > next_step - code_time + 1)); then
		assert_fail "$HTTP_REQUEST: Retry-After $retry does not count to the next step at $next_step"
	fi
	expect_operation pending 5
}

# --- 429001 and 429002 ------------------------------------------------------

resend_too_early() {
	local retry after
	new_user early && new_operation --email "$EMAIL" || return 1
	after=$(jq -r .resendEmailAfter <<<"$CHALLENGE")
	put_action resend
	expect_error 429001
	assert_header_matches Retry-After '^[0-9]+$' || return 1
	retry=$(header_value Retry-After)
	if ((retry < 1 || retry > RESEND_COOLDOWN)); then
		assert_fail "$HTTP_REQUEST: Retry-After $retry is not between 1 and $RESEND_COOLDOWN"
	fi
	# Retry-After counts to resendEmailAfter, rounded up.
	if ((retry < after - $(date +%s) || retry > after - $(date +%s) + 1)); then
		assert_fail "$HTTP_REQUEST: Retry-After $retry does not count to resendEmailAfter $after"
	fi
	expect_operation pending 5
}

# The cooldown doubles after each resend (c, 2c, 4c). After the third
# resend resendEmailAfter is null and a fourth gets 429002.
resend_limit_429002() {
	local after sent resend wait=$RESEND_COOLDOWN
	new_user limit && new_operation --email "$EMAIL" || return 1
	after=$(jq -r .resendEmailAfter <<<"$CHALLENGE")
	for resend in 1 2 3; do
		wait_until "$after" $((wait + 2)) || return 1
		put_action resend
		sent=$(date +%s)
		HTTP_REQUEST+=" (resend $resend)"
		assert_status 200 || return 1
		after=$(jq -r .resendEmailAfter <<<"$HTTP_BODY")
		wait=$((wait * 2))
		if ((resend < 3)); then
			if [[ ! $after =~ ^[0-9]+$ ]] || ((after < sent + wait - 1 || after > sent + wait + 1)); then
				assert_fail "$HTTP_REQUEST: resendEmailAfter $after is not about $wait s after $sent"
				return 1
			fi
			put_action resend
			HTTP_REQUEST+=" (right after resend $resend)"
			expect_error 429001
		fi
	done
	assert_json .resendEmailAfter null
	put_action resend
	expect_error 429002
	get_operation
	assert_json .data.resendEmailAfter null
}

# --- order of the checks ----------------------------------------------------

check_order() {
	local file=$ASSERT_TMP/order.json owner_uuid
	new_user order && new_operation --email "$EMAIL" || return 1

	http_request GET /nope
	HTTP_REQUEST+=" without a token"
	expect_error 404002
	http_request DELETE /operations/not-a-uuid
	HTTP_REQUEST+=" without a token"
	expect_error 405001
	http_request PUT /operations/not-a-uuid/confirm -t garbage
	HTTP_REQUEST+=" with a bad token and no Fingerprint"
	expect_error 401002
	http_request PUT /operations/not-a-uuid/confirm
	HTTP_REQUEST+=" without a token"
	expect_error 401001
	http_request PUT /operations/not-a-uuid/confirm -t "$TOKEN" -d '{'
	HTTP_REQUEST+=" without Fingerprint"
	expect_error 400002

	write_json_of_size $((MAX_BODY + 1)) "$file"
	put_body_file /operations/not-a-uuid/confirm "$file" content-length
	expect_error 400003
	put_body_file "/operations/$MISSING_UUID/confirm" "$file" content-length
	expect_error 413001
	http_request PUT "/operations/$MISSING_UUID/confirm" -t "$TOKEN" -f "$FINGERPRINT" \
		-d '{"emailCode":"123456"}' -H 'Content-Type: text/plain'
	expect_error 415001
	http_request PUT "/operations/$MISSING_UUID/confirm" -t "$TOKEN" -f "$FINGERPRINT" -d '{'
	expect_error 400001

	# Ownership before the device: another user with another device.
	owner_uuid=$UUID
	local owner_token=$TOKEN owner_fingerprint=$FINGERPRINT
	new_user order-intruder || return 1
	http_request GET "/operations/$owner_uuid" -t "$TOKEN" -f "$FINGERPRINT"
	expect_error 404001

	# The device before the state, the state before the code fields.
	TOKEN=$owner_token FINGERPRINT=$owner_fingerprint UUID=$owner_uuid
	put_action cancel
	assert_status 200 || return 1
	http_request PUT "/operations/$UUID/confirm" -t "$TOKEN" -f "$(unique_id order-device)" -d '{}'
	expect_error 403001
	put_action confirm '{"emailCode":12}'
	expect_error 409002
}

# On an OTP-only operation the state is checked before the missing e-mail
# factor.
state_before_resend_checks() {
	new_totp_user order-otp && new_operation --otp || return 1
	put_action cancel
	assert_status 200 || return 1
	put_action resend
	expect_error 409002
}

test_case "malformed JSON 400001" malformed_json
test_case "sixteen nesting levels accepted" nesting_limit_accepted
test_case "malformed emailCode 400001 field" malformed_email_code
test_case "code white space ignored" code_with_white_space
test_case "malformed otpCode 400001 field" malformed_otp_code
test_case "bad Fingerprint 400002" bad_fingerprint
test_case "255-character Fingerprint accepted" longest_fingerprint
test_case "malformed uuid 400003" bad_uuid
test_case "missing emailCode 400004" missing_email_code
test_case "missing otpCode 400004" missing_otp_code
test_case "missing token 401001" missing_token
test_case "invalid token 401002" invalid_token
test_case "expired token 401003" expired_token
test_case "hand-signed token accepted" hand_signed_token
test_case "numeric sub accepted" numeric_subject
test_case "other device 403001" other_device
test_case "unknown operation 404001" unknown_operation
test_case "other user's operation 404001 body" other_users_operation
test_case "unknown route 404002" unknown_route
test_case "wrong method 405001 Allow" wrong_method
test_case "confirmed operation 409001" confirmed_409001
test_case "cancelled operation 409002" cancelled_409002
test_case "wrong codes 422001 then 409003" rejected_422001_409003
test_case "resend without e-mail 409004" otp_only_resend_409004
test_case "expired operation 410001" expired_410001
test_case "body too large 413001" body_too_large
test_case "wrong media type 415001" wrong_media_type
test_case "accepted media types" accepted_media_types
test_case "reused TOTP code 422002" totp_reused_422002
test_case "order of the checks" check_order
test_case "state before resend checks" state_before_resend_checks
test_case "resend too early 429001" resend_too_early
if ((RESEND_COOLDOWN <= MAX_TEST_COOLDOWN)); then
	test_case "resend limit 429002" resend_limit_429002
else
	skip_case "resend limit 429002" "resend_cooldown is $RESEND_COOLDOWN s, above $MAX_TEST_COOLDOWN s"
fi
test_finish
