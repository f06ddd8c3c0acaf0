#!/usr/bin/env bash
# POST /internal/operations with an Idempotency-Key: ten requests with one
# key at once create one operation and one mail, a later retry gets the first
# response, another body under the key gets 409005, and keys are per service.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/assert.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/assert.sh"
# shellcheck source=SCRIPTDIR/../lib/operations.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/operations.sh"

# Requests sent at once with one key.
PARALLEL=10
# Seconds to wait after the first mail for a second one that must not come.
SECOND_MAIL_WAIT=2
SERVICE=$(unique_id shop)
SERVICE_TOKEN=$(mint_service_token "$SERVICE" "operations:write operations:read")
KEY=
BODY=
FIRST_BODY=
FIRST_LOCATION=

operations_of() {
	db_query "SELECT COUNT(*) FROM operations WHERE user_id = '$1'"
}

create_body() {
	jq -cn --arg user "$USER_ID" --arg device "$FINGERPRINT" --arg email "$EMAIL" \
		'{userId: $user, fingerprint: $device, email: $email, kind: "payout",
			params: {amount: "250 EUR"}}'
}

# Sends POST /internal/operations with BODY and Idempotency-Key KEY, as the
# service token TOKEN (default SERVICE_TOKEN).
post_with_key() {
	http_request POST /internal/operations -t "${3:-$SERVICE_TOKEN}" -d "$1" -H "Idempotency-Key: $2"
}

# Ten POSTs with one key and body at once: ten 201 responses, byte for byte
# the same, one operation and one mail.
ten_at_once() {
	local index pid uuid
	local -a pids=()
	new_user parallel || return 1
	KEY=$(unique_id key)
	BODY=$(create_body)
	printf '%s' "$BODY" >"$ASSERT_TMP/parallel-body"
	for ((index = 0; index < PARALLEL; index++)); do
		curl -sS --max-time 15 -X POST -H "Authorization: Bearer $SERVICE_TOKEN" \
			-H 'Content-Type: application/json' -H "Idempotency-Key: $KEY" \
			--data-binary "@$ASSERT_TMP/parallel-body" -o "$ASSERT_TMP/parallel-$index.body" \
			-D "$ASSERT_TMP/parallel-$index.headers" -w '%{http_code}' \
			"$USEROPS_URL/internal/operations" >"$ASSERT_TMP/parallel-$index.status" \
			2>"$ASSERT_TMP/parallel-$index.error" &
		pids+=($!)
	done
	for pid in "${pids[@]}"; do
		wait "$pid" || true
	done

	FIRST_BODY=$(cat "$ASSERT_TMP/parallel-0.body")
	uuid=$(jq -r .uuid <<<"$FIRST_BODY" 2>/dev/null || echo '?')
	FIRST_LOCATION=$(tr -d '\r' <"$ASSERT_TMP/parallel-0.headers" | sed -n 's/^[Ll]ocation: //p')
	for ((index = 0; index < PARALLEL; index++)); do
		assert_equal "status of POST $index of $PARALLEL with one key" 201 \
			"$(cat "$ASSERT_TMP/parallel-$index.status")"
		assert_equal "body of POST $index beside that of POST 0" "$FIRST_BODY" \
			"$(cat "$ASSERT_TMP/parallel-$index.body")"
		assert_equal "Location of POST $index" "/internal/operations/$uuid" \
			"$(tr -d '\r' <"$ASSERT_TMP/parallel-$index.headers" | sed -n 's/^[Ll]ocation: //p')"
	done
	assert_equal "operations of $USER_ID after $PARALLEL POSTs with one key" 1 "$(operations_of "$USER_ID")"
	mail_wait "$EMAIL" 1 || return 1
	sleep "$SECOND_MAIL_WAIT"
	assert_equal "mails to $EMAIL after $PARALLEL POSTs with one key" 1 "$(mail_count "$EMAIL")"
}

# A retry after the first response, and after the operation was cancelled,
# gets the first response again, with any token of the same service.
later_retry() {
	local uuid other_token
	[[ -n $FIRST_BODY ]] || assert_fail "needs the operation of the parallel case" || return 1
	post_with_key "$BODY" "$KEY"
	assert_status 201
	assert_equal "body of the retry" "$FIRST_BODY" "$HTTP_BODY"
	assert_header Location "$FIRST_LOCATION"

	uuid=$(jq -r .uuid <<<"$FIRST_BODY")
	http_request PUT "/internal/operations/$uuid/cancel" -t "$SERVICE_TOKEN"
	assert_status 200 || return 1
	other_token=$(mint_service_token "$SERVICE" "operations:write") || return 1
	post_with_key "$BODY" "$KEY" "$other_token"
	HTTP_REQUEST+=" after the cancel, with another token of the service"
	assert_status 201
	assert_equal "body of the retry after the cancel" "$FIRST_BODY" "$HTTP_BODY"
	assert_header Location "$FIRST_LOCATION"
	assert_equal "operations of $USER_ID after the retries" 1 "$(operations_of "$USER_ID")"
	sleep 1
	assert_equal "mails to $EMAIL after the retries" 1 "$(mail_count "$EMAIL")"
}

# Another body under the key, even one that differs only in white space or
# member order, gets 409005 and creates nothing.
other_body_409005() {
	local body
	local -a bodies=()
	[[ -n $FIRST_BODY ]] || assert_fail "needs the operation of the parallel case" || return 1
	bodies+=("$(jq -c '.params.amount = "9999 EUR"' <<<"$BODY")")
	bodies+=("$(jq -c 'del(.kind)' <<<"$BODY")")
	bodies+=("$(jq '.' <<<"$BODY")")
	bodies+=("$(jq -cS '.' <<<"$BODY")")
	for body in "${bodies[@]}"; do
		post_with_key "$body" "$KEY"
		HTTP_REQUEST+=" with body ${body:0:60}"
		expect_error 409005
	done
	assert_equal "operations of $USER_ID after other bodies" 1 "$(operations_of "$USER_ID")"
}

# The same key and body from another service is another operation.
other_service() {
	local token uuid
	[[ -n $FIRST_BODY ]] || assert_fail "needs the operation of the parallel case" || return 1
	token=$(mint_service_token "$(unique_id other-shop)" "operations:write") || return 1
	post_with_key "$BODY" "$KEY" "$token"
	assert_status 201 || return 1
	uuid=$(jq -r .uuid <<<"$HTTP_BODY")
	if [[ $uuid == "$(jq -r .uuid <<<"$FIRST_BODY")" ]]; then
		assert_fail "another service with the same key got the first service's operation $uuid"
	fi
	assert_header Location "/internal/operations/$uuid"
	assert_equal "operations of $USER_ID after the other service's POST" 2 "$(operations_of "$USER_ID")"
	# Each service's retry still gets its own first response.
	post_with_key "$BODY" "$KEY" "$token"
	assert_json .uuid "$uuid"
	post_with_key "$BODY" "$KEY"
	assert_equal "first service's retry" "$FIRST_BODY" "$HTTP_BODY"
}

# Two equal POSTs without a key create two operations, and so do two
# equal POSTs with different keys.
without_key() {
	local body
	new_user no-key || return 1
	body=$(create_body)
	http_request POST /internal/operations -t "$SERVICE_TOKEN" -d "$body"
	assert_status 201
	http_request POST /internal/operations -t "$SERVICE_TOKEN" -d "$body"
	assert_status 201
	post_with_key "$body" "$(unique_id key-a)"
	assert_status 201
	post_with_key "$body" "$(unique_id key-b)"
	assert_status 201
	assert_equal "operations of $USER_ID" 4 "$(operations_of "$USER_ID")"
}

test_case "ten POSTs with one key at once" ten_at_once
test_case "later retry gets first answer" later_retry
test_case "other body under the key 409005" other_body_409005
test_case "keys are per service" other_service
test_case "no key or other keys" without_key
test_finish
