#!/usr/bin/env bash
# GET /health and the headers that every userops response carries.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/assert.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/assert.sh"

REQUEST_ID_PATTERN='^[A-Za-z0-9._-]{1,64}$'

health_ok() {
	http_request GET /health
	assert_status 200
	assert_equal "GET /health body" '{"status":"ok"}' "$(jq -c . <<<"$HTTP_BODY")"
}

health_headers() {
	http_request GET /health
	assert_header Content-Type 'application/json; charset=utf-8'
	assert_header Cache-Control no-store
	assert_header_matches X-Request-Id "$REQUEST_ID_PATTERN"
}

health_under_api_mount() {
	http_request GET /api/health
	assert_status 200
	assert_json .status ok
}

request_id_echoed() {
	local id=trace-1.2_abc-XYZ
	http_request GET /health -H "X-Request-Id: $id"
	assert_header X-Request-Id "$id"

	id=$(printf 'a%.0s' {1..64})
	http_request GET /health -H "X-Request-Id: $id"
	assert_header X-Request-Id "$id"
}

# Each invalid id is replaced by a generated one, never echoed.
request_id_generated_when_invalid() {
	local id actual
	for id in 'has space' 'semi;colon' "$(printf 'b%.0s' {1..65})" 'slash/x' 'quote"x'; do
		http_request GET /health -H "X-Request-Id: $id"
		actual=$(header_value X-Request-Id)
		assert_header_matches X-Request-Id "$REQUEST_ID_PATTERN"
		if [[ $actual == "$id" ]]; then
			assert_fail "invalid X-Request-Id '$id' was echoed"
		fi
	done
}

request_id_unique_when_absent() {
	local first second
	http_request GET /health
	first=$(header_value X-Request-Id)
	http_request GET /health
	second=$(header_value X-Request-Id)
	assert_header_matches X-Request-Id "$REQUEST_ID_PATTERN"
	if [[ -z $first || $first == "$second" ]]; then
		assert_fail "generated X-Request-Id not unique: '$first' then '$second'"
	fi
}

test_case "GET /health returns 200 ok" health_ok
test_case "health response headers" health_headers
test_case "health under /api/ mount" health_under_api_mount
test_case "valid X-Request-Id echoed" request_id_echoed
test_case "invalid X-Request-Id replaced" request_id_generated_when_invalid
test_case "generated X-Request-Id unique" request_id_unique_when_absent
test_finish
