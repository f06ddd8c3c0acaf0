#!/usr/bin/env bash
# Routing and the checks that run before any operation is looked up:
# unknown routes, methods, the token, the Fingerprint header and the uuid.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/assert.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/assert.sh"

USER_ID=$(unique_id routes-user)
FINGERPRINT=$(unique_id routes-device)
TOKEN=$(mint_token "$USER_ID")
# A well-formed uuid that no operation has.
MISSING_UUID=$(cat /proc/sys/kernel/random/uuid)

unknown_path() {
	local path
	for path in /nope /operations "/operations/$MISSING_UUID/approve" /health/x; do
		http_request GET "$path"
		assert_error 404002
	done
}

trailing_slash() {
	http_request GET /health/
	assert_error 404002
	http_request PUT "/operations/$MISSING_UUID/confirm/" -t "$TOKEN" -f "$FINGERPRINT"
	assert_error 404002
	http_request GET "/operations/$MISSING_UUID/" -t "$TOKEN" -f "$FINGERPRINT"
	assert_error 404002
}

# A POST goes out with an empty body, because lighttpd rejects a POST
# without Content-Length with its own 411 response.
method_not_allowed() {
	http_request POST /health -d ''
	assert_error 405001
	assert_header Allow GET

	http_request GET "/operations/$MISSING_UUID/confirm"
	assert_error 405001
	assert_header Allow PUT

	http_request DELETE "/operations/$MISSING_UUID"
	assert_error 405001
	assert_header Allow GET
}

# The method is checked before the token, so no token is needed for 405.
method_checked_before_token() {
	http_request POST "/operations/$MISSING_UUID/cancel" -f "$FINGERPRINT" -d ''
	assert_error 405001
	assert_header Allow PUT
}

bad_uuid() {
	local uuid
	for uuid in not-a-uuid "${MISSING_UUID:0:35}" "${MISSING_UUID}0" \
		"${MISSING_UUID//-/}" "${MISSING_UUID:0:35}g"; do
		http_request PUT "/operations/$uuid/confirm" -t "$TOKEN" -f "$FINGERPRINT"
		assert_error 400003
	done
}

unknown_uuid() {
	http_request GET "/operations/$MISSING_UUID" -t "$TOKEN" -f "$FINGERPRINT"
	assert_error 404001
	http_request GET "/operations/${MISSING_UUID^^}" -t "$TOKEN" -f "$FINGERPRINT"
	assert_error 404001
	http_request GET "/api/operations/$MISSING_UUID" -t "$TOKEN" -f "$FINGERPRINT"
	assert_error 404001
}

no_token() {
	http_request PUT "/operations/$MISSING_UUID/cancel" -f "$FINGERPRINT"
	assert_error 401001
	assert_header WWW-Authenticate 'Bearer realm="userops"'

	http_request PUT "/operations/$MISSING_UUID/cancel" -f "$FINGERPRINT" \
		-H 'Authorization: Basic dXNlcjpwYXNz'
	assert_error 401001

	http_request PUT "/operations/$MISSING_UUID/cancel" -f "$FINGERPRINT" \
		-H 'Authorization: Bearer'
	assert_error 401001
}

invalid_token() {
	http_request PUT "/operations/$MISSING_UUID/cancel" -t not.a.token -f "$FINGERPRINT"
	assert_error 401002
	assert_header_matches WWW-Authenticate '^Bearer realm="userops", *error="invalid_token"'
}

# The token is checked before the uuid, so a bad uuid without a token is 401.
token_checked_before_uuid() {
	http_request PUT /operations/not-a-uuid/confirm -f "$FINGERPRINT"
	assert_error 401001
}

missing_fingerprint() {
	http_request GET "/operations/$MISSING_UUID" -t "$TOKEN"
	assert_error 400002
	http_request GET "/operations/$MISSING_UUID" -t "$TOKEN" -H 'Fingerprint: has space'
	assert_error 400002
}

# The internal segment is reserved for service routes: a user route below it
# is no route, even with a valid token and device.
internal_prefix_reserved() {
	http_request PUT "/internal/operations/$MISSING_UUID/confirm" -t "$TOKEN" -f "$FINGERPRINT"
	assert_error 404002
	http_request PUT "/internal/operations/$MISSING_UUID/resend" -t "$TOKEN" -f "$FINGERPRINT"
	assert_error 404002
	http_request GET /internal/health
	assert_error 404002
	http_request GET "/internal/x/operations/$MISSING_UUID" -t "$TOKEN" -f "$FINGERPRINT"
	assert_error 404002
}

test_case "unknown path 404002" unknown_path
test_case "internal prefix reserved 404002" internal_prefix_reserved
test_case "trailing slash 404002" trailing_slash
test_case "wrong method 405001 with Allow" method_not_allowed
test_case "method checked before token" method_checked_before_token
test_case "malformed uuid 400003" bad_uuid
test_case "unknown uuid 404001" unknown_uuid
test_case "missing token 401001" no_token
test_case "invalid token 401002" invalid_token
test_case "token checked before uuid" token_checked_before_uuid
test_case "bad Fingerprint 400002" missing_fingerprint
test_finish
