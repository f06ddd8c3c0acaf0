#!/usr/bin/env bash
# Hostile input against the running stack: malformed, deep, oversized and
# truncated bodies, broken UTF-8 and NUL bytes, bad Fingerprint headers,
# headers that the front end rejects itself, and forged tokens. Each case makes its
# own user and operation, and a body that is rejected must leave the
# operation pending.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/assert.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/assert.sh"

MAX_BODY=16384
# Bytes: the largest body that every front end of the stack passes on.
FRONTEND_MAX_BODY=1048576
# Nesting depth that the body parser accepts, the top object counted as 1.
MAX_DEPTH=16

USER_ID=
TOKEN=
FINGERPRINT=
UUID=

# Creates a user, a token and a pending e-mail operation for the current
# case in USER_ID, TOKEN, FINGERPRINT and UUID.
new_operation() {
	local challenge
	USER_ID=$(unique_id hostile-user)
	FINGERPRINT=$(unique_id hostile-device)
	TOKEN=$(mint_token "$USER_ID") || assert_fail "userops-ctl issue-token failed" || return 1
	challenge=$(create_operation --user "$USER_ID" --fingerprint "$FINGERPRINT" \
		--email "$(unique_id hostile)@example.com" --kind withdrawal) ||
		assert_fail "userops-ctl create-operation failed" || return 1
	UUID=$(jq -r .uuid <<<"$challenge")
}

# Sends METHOD PATH with the bytes of FILE as the body, plus the curl
# arguments that follow, and stores the response as http_request does.
request_with_file() {
	local method=$1 path=$2 file=$3
	shift 3
	HTTP_REQUEST="$method $path (body from $(basename "$file"), $(stat -c %s "$file") bytes)"
	HTTP_STATUS=$(curl -sS --path-as-is --max-time 15 -X "$method" \
		-o "$ASSERT_TMP/body" -D "$ASSERT_TMP/all-headers" -w '%{http_code}' \
		--data-binary "@$file" "$@" "$USEROPS_URL$path") || HTTP_STATUS=000
	HTTP_BODY=$(tr -d '\0' <"$ASSERT_TMP/body" 2>/dev/null || true)
	tr -d '\r' <"$ASSERT_TMP/all-headers" |
		awk '/^HTTP\// { block = "" } { block = block $0 "\n" } END { printf "%s", block }' \
			>"$HTTP_HEADERS_FILE"
}

# Sends the body in FILE to the current operation's cancel route as JSON.
cancel_with_file() {
	request_with_file PUT "/operations/$UUID/cancel" "$1" \
		-H "Authorization: Bearer $TOKEN" -H "Fingerprint: $FINGERPRINT" \
		-H 'Content-Type: application/json' "${@:2}"
}

# Checks with a GET that the current operation is still pending.
assert_still_pending() {
	http_request GET "/operations/$UUID" -t "$TOKEN" -f "$FINGERPRINT"
	assert_status 200 || return 1
	assert_json .data.status pending
}

# Sends the bytes of FILE over one TCP connection to the stack's HTTP port,
# closes the write side when the third argument is "half-close", and reads
# the response for up to 5 s. HTTP_STATUS is 000 when nothing came back.
raw_request() {
	local file=$1 mode=${2:-} port output
	port=${USEROPS_URL##*:}
	port=${port%%/*}
	HTTP_REQUEST="raw request $(basename "$file")"
	output=$(/usr/bin/python3 - "$port" "$file" "$mode" <<'EOF'
import socket
import sys

port, path, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
with open(path, "rb") as handle:
    request = handle.read()
connection = socket.create_connection(("127.0.0.1", port), timeout=5)
connection.sendall(request)
if mode == "half-close":
    connection.shutdown(socket.SHUT_WR)
answer = b""
try:
    while True:
        chunk = connection.recv(65536)
        if not chunk:
            break
        answer += chunk
except (socket.timeout, ConnectionResetError):
    pass
connection.close()
head, _, body = answer.partition(b"\r\n\r\n")
status = head.split(b" ")[1].decode() if head.startswith(b"HTTP/") else "000"
sys.stdout.write(status + "\n" + body.decode("utf-8", "replace"))
EOF
	) || output=000
	HTTP_STATUS=$(head -n 1 <<<"$output")
	HTTP_BODY=$(tail -n +2 <<<"$output")
	: >"$HTTP_HEADERS_FILE"
}

# Checks that every worker PID of the list BEFORE still runs, so that no
# worker crashed and was replaced. mod_fcgid may start more processes under
# a burst, so new PIDs are allowed.
assert_workers_survived() {
	local pid
	if [[ -z $1 ]]; then
		assert_fail "no userops-fcgi worker found behind $ASSERT_FRONTEND"
		return 1
	fi
	for pid in $1; do
		if ! kill -0 "$pid" 2>/dev/null; then
			assert_fail "FastCGI worker $pid exited (workers now: $(frontend_worker_pids | tr '\n' ' '))"
		fi
	done
}

# Checks that every worker returns 200 to GET /health over its own FastCGI
# socket, and that 20 requests through the front end on each mount get 200.
# A pool's workers share one socket, which is asked once.
assert_every_worker_serves() {
	local socket status answer ok=0 mount pid i sockets=0
	local -a pids=()
	for socket in $(frontend_worker_sockets); do
		sockets=$((sockets + 1))
		answer=$(env -i REQUEST_METHOD=GET SCRIPT_NAME=/health SERVER_PROTOCOL=HTTP/1.1 \
			REMOTE_ADDR=127.0.0.1 timeout 5 cgi-fcgi -bind -connect "$socket" </dev/null 2>&1 || true)
		status=$(awk 'NR == 1 { print $2 }' <<<"$answer")
		if [[ $status != 200 ]]; then
			assert_fail "worker on $(basename "$socket") returned '${status:-nothing}' to GET /health"
		fi
	done
	if frontend_spawns_workers; then
		assert_equal "FastCGI sockets (one per worker) behind $ASSERT_FRONTEND" \
			"$(frontend_worker_pids | wc -l)" "$sockets"
	else
		assert_equal "FastCGI sockets of the pool behind $ASSERT_FRONTEND" 1 "$sockets"
	fi

	for mount in "" /api; do
		pids=()
		for ((i = 0; i < 20; i++)); do
			curl -s -o /dev/null --max-time 10 -w '%{http_code}\n' "$USEROPS_URL$mount/health" \
				>"$ASSERT_TMP/health-$i" &
			pids+=($!)
		done
		for pid in "${pids[@]}"; do
			wait "$pid" || true
		done
		ok=$(cat "$ASSERT_TMP"/health-* | grep -c '^200$' || true)
		assert_equal "GET $mount/health answered 200, of 20" 20 "$ok"
		rm -f "$ASSERT_TMP"/health-*
	done
}

# Encodes standard input as base64url without padding.
base64url() {
	base64 -w 0 | tr '+/' '-_' | tr -d '='
}

# Prints a JWT with the header and payload given as JSON, signed per MODE:
# "none" (empty signature), "hmac KEY_FILE" (HMAC-SHA256 with the bytes of
# KEY_FILE as the secret) or "rsa PRIVATE_KEY_FILE" (RS256).
make_jwt() {
	local header=$1 payload=$2 mode=$3 key_file=${4:-} input signature=
	input="$(printf '%s' "$header" | base64url).$(printf '%s' "$payload" | base64url)"
	case $mode in
	none) ;;
	hmac)
		signature=$(printf '%s' "$input" | openssl dgst -sha256 -binary -mac HMAC \
			-macopt "hexkey:$(od -An -v -tx1 "$key_file" | tr -d ' \n')" | base64url)
		;;
	rsa)
		signature=$(printf '%s' "$input" | openssl dgst -sha256 -binary -sign "$key_file" | base64url)
		;;
	esac
	printf '%s.%s\n' "$input" "$signature"
}

# Prints the claims of a token for USER_ID that expires in 10 minutes.
token_claims() {
	jq -cn --arg sub "$USER_ID" --argjson now "$(date +%s)" '{sub: $sub, iat: $now, exp: ($now + 600)}'
}

assert_invalid_token() {
	http_request GET "/operations/$UUID" -t "$1" -f "$FINGERPRINT"
	assert_error 401002 || return 1
	assert_header_matches WWW-Authenticate '^Bearer realm="userops".*error="invalid_token"'
}

malformed_json() {
	local body index=0
	local -a bodies=(
		'{"a":'
		'{a:1}'
		"{'a':1}"
		'{"a":1,}'
		'{"a":1} x'
		'{"a":1}{"b":2}'
		'{"a":01}'
		'{"a":NaN}'
		'{"a":"unterminated}'
		'{"a":"bad \q escape"}'
		'[1,2]'
		'"just a string"'
		'null'
		'}'
	)
	new_operation || return 1
	for body in "${bodies[@]}"; do
		index=$((index + 1))
		printf '%s' "$body" >"$ASSERT_TMP/malformed-$index"
		cancel_with_file "$ASSERT_TMP/malformed-$index"
		HTTP_REQUEST="PUT cancel with body $body"
		assert_error 400001
	done
	assert_still_pending
}

# Prints a JSON object nested DEPTH levels deep, the top object counted.
nested_object() {
	local depth=$1 i
	for ((i = 1; i < depth; i++)); do printf '{"a":'; done
	printf '{}'
	for ((i = 1; i < depth; i++)); do printf '}'; done
}

nesting_over_limit() {
	new_operation || return 1
	nested_object $((MAX_DEPTH + 1)) >"$ASSERT_TMP/deep-object"
	cancel_with_file "$ASSERT_TMP/deep-object"
	assert_error 400001

	# The same depth reached with arrays inside the top object.
	{
		printf '{"a":'
		for ((i = 1; i < MAX_DEPTH; i++)); do printf '['; done
		printf '[]'
		for ((i = 1; i < MAX_DEPTH; i++)); do printf ']'; done
		printf '}'
	} >"$ASSERT_TMP/deep-array"
	cancel_with_file "$ASSERT_TMP/deep-array"
	assert_error 400001
	assert_still_pending
}

nesting_at_limit() {
	new_operation || return 1
	nested_object "$MAX_DEPTH" >"$ASSERT_TMP/limit-object"
	cancel_with_file "$ASSERT_TMP/limit-object"
	assert_status 200
	assert_json .data.status cancelled
}

# Thousands of levels must be rejected without exhausting a worker's stack.
nesting_thousands() {
	new_operation || return 1
	{
		printf '{"a":'
		head -c 8000 /dev/zero | tr '\0' '['
		head -c 8000 /dev/zero | tr '\0' ']'
		printf '}'
	} >"$ASSERT_TMP/very-deep"
	cancel_with_file "$ASSERT_TMP/very-deep"
	assert_error 400001
	assert_still_pending
	assert_every_worker_serves
}

# Writes a JSON object of exactly SIZE bytes, one string member padded out.
padded_object() {
	local size=$1
	printf '{"pad":"'
	head -c $((size - 10)) /dev/zero | tr '\0' 'x'
	printf '"}'
}

body_over_max() {
	new_operation || return 1
	padded_object $((MAX_BODY + 1)) >"$ASSERT_TMP/over-max"
	cancel_with_file "$ASSERT_TMP/over-max"
	assert_error 413001
	assert_still_pending
}

# Bodies up to 1 MiB reach userops behind every front end, so userops
# itself rejects one just under that size.
body_near_frontend_limit() {
	new_operation || return 1
	padded_object $((FRONTEND_MAX_BODY - 1)) >"$ASSERT_TMP/near-limit"
	cancel_with_file "$ASSERT_TMP/near-limit"
	assert_error 413001
	assert_still_pending
}

# Above 1 MiB the front end rejects the body itself, with 413.
body_over_frontend_limit() {
	new_operation || return 1
	padded_object $((FRONTEND_MAX_BODY + 1)) >"$ASSERT_TMP/over-limit"
	cancel_with_file "$ASSERT_TMP/over-limit"
	assert_frontend_status body-too-large
	assert_still_pending
}

body_over_max_chunked() {
	new_operation || return 1
	padded_object $((MAX_BODY + 1)) >"$ASSERT_TMP/over-max"
	cancel_with_file "$ASSERT_TMP/over-max" -H 'Transfer-Encoding: chunked'
	assert_error 413001
	assert_still_pending
}

body_at_max() {
	new_operation || return 1
	padded_object "$MAX_BODY" >"$ASSERT_TMP/at-max"
	cancel_with_file "$ASSERT_TMP/at-max"
	assert_status 200
	assert_json .data.status cancelled
}

body_at_max_chunked() {
	new_operation || return 1
	padded_object "$MAX_BODY" >"$ASSERT_TMP/at-max"
	cancel_with_file "$ASSERT_TMP/at-max" -H 'Transfer-Encoding: chunked'
	assert_status 200
	assert_json .data.status cancelled
}

nul_in_body() {
	new_operation || return 1
	printf '{"a":"x\0y"}' >"$ASSERT_TMP/nul-string"
	printf '{"a":"x"}\0' >"$ASSERT_TMP/nul-after"
	printf '{"a\0b":1}' >"$ASSERT_TMP/nul-name"
	printf '\0{"a":1}' >"$ASSERT_TMP/nul-before"
	# The JSON escape for NUL is a NUL in the string too.
	printf '{"a":"x\\u0000y"}' >"$ASSERT_TMP/nul-escaped"
	for file in nul-string nul-after nul-name nul-before nul-escaped; do
		cancel_with_file "$ASSERT_TMP/$file"
		assert_error 400001
	done
	assert_still_pending
}

broken_utf8_body() {
	new_operation || return 1
	printf '{"a":"\xff"}' >"$ASSERT_TMP/utf8-ff"
	printf '{"a":"\xc0\xaf"}' >"$ASSERT_TMP/utf8-overlong"
	printf '{"a":"\xe2\x82"}' >"$ASSERT_TMP/utf8-truncated"
	printf '{"a":"\xed\xa0\x80"}' >"$ASSERT_TMP/utf8-surrogate"
	printf '{"a":"\xf4\x90\x80\x80"}' >"$ASSERT_TMP/utf8-above-max"
	printf '{"\xfe":1}' >"$ASSERT_TMP/utf8-name"
	printf '{"a":"ok"}\xe2\x82' >"$ASSERT_TMP/utf8-trailing"
	for file in utf8-ff utf8-overlong utf8-truncated utf8-surrogate utf8-above-max \
		utf8-name utf8-trailing; do
		cancel_with_file "$ASSERT_TMP/$file"
		assert_error 400001
	done
	assert_still_pending
}

bad_fingerprint_header() {
	local fingerprint
	local -a fingerprints=(
		$'\xff\xfe'
		$'device-\xc0\xaf'
		$'caf\xc3\xa9'
		$'device-\xe2\x82'
		'has space'
		"$(head -c 256 /dev/zero | tr '\0' 'f')"
	)
	new_operation || return 1
	for fingerprint in "${fingerprints[@]}"; do
		http_request GET "/operations/$UUID" -t "$TOKEN" -H "Fingerprint: $fingerprint"
		HTTP_REQUEST="GET with Fingerprint $(printf '%q' "${fingerprint:0:20}")"
		assert_error 400002
	done
	http_request PUT "/operations/$UUID/cancel" -t "$TOKEN" -H $'Fingerprint: \xff'
	assert_error 400002
	assert_still_pending
}

nul_in_header() {
	local before
	before=$(frontend_worker_pids)
	printf 'GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Bad: a\0b\r\nConnection: close\r\n\r\n' \
		>"$ASSERT_TMP/nul-header"
	raw_request "$ASSERT_TMP/nul-header"
	assert_frontend_status nul-in-header
	assert_every_worker_serves
	assert_workers_survived "$before"
}

oversized_header() {
	local before padding
	before=$(frontend_worker_pids)
	padding=$(head -c 10000 /dev/zero | tr '\0' 'p')
	http_request GET /health -H "X-Padding: $padding"
	assert_frontend_status header-too-large
	assert_every_worker_serves
	assert_workers_survived "$before"
}

# Checks that make_jwt signs correctly, so that the forged-token cases fail
# for the forgery and not for a broken helper.
token_helper_control() {
	new_operation || return 1
	tr -d ' \t\r\n' <"$USEROPS_SECRET_DIR/hs256-secret" >"$ASSERT_TMP/hs256-key"
	http_request GET "/operations/$UUID" -f "$FINGERPRINT" \
		-t "$(make_jwt '{"alg":"HS256","typ":"JWT"}' "$(token_claims)" hmac "$ASSERT_TMP/hs256-key")"
	assert_status 200
	assert_json .data.status pending
}

alg_none_token() {
	local claims real_signature
	new_operation || return 1
	claims=$(token_claims)
	assert_invalid_token "$(make_jwt '{"alg":"none","typ":"JWT"}' "$claims" none)"
	assert_invalid_token "$(make_jwt '{"alg":"None","typ":"JWT"}' "$claims" none)"
	assert_invalid_token "$(make_jwt '{"alg":"NONE"}' "$claims" none)"
	# alg none carrying the signature of a genuine token.
	real_signature=${TOKEN##*.}
	assert_invalid_token "$(make_jwt '{"alg":"none","typ":"JWT"}' "$claims" none)$real_signature"
	assert_still_pending
}

wrong_key_token() {
	new_operation || return 1
	head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n' >"$ASSERT_TMP/wrong-key"
	assert_invalid_token "$(make_jwt '{"alg":"HS256","typ":"JWT"}' "$(token_claims)" hmac "$ASSERT_TMP/wrong-key")"
	assert_still_pending
}

# An HS256 token keyed with an RSA public key, and an RS256 token, while
# the stack configures HS256 only.
rsa_public_key_as_secret() {
	new_operation || return 1
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$ASSERT_TMP/rsa.pem" 2>/dev/null ||
		assert_fail "openssl genpkey failed" || return 1
	openssl pkey -in "$ASSERT_TMP/rsa.pem" -pubout -out "$ASSERT_TMP/rsa.pub" 2>/dev/null ||
		assert_fail "openssl pkey -pubout failed" || return 1
	assert_invalid_token "$(make_jwt '{"alg":"HS256","typ":"JWT"}' "$(token_claims)" hmac "$ASSERT_TMP/rsa.pub")"
	assert_invalid_token "$(make_jwt '{"alg":"RS256","typ":"JWT"}' "$(token_claims)" rsa "$ASSERT_TMP/rsa.pem")"
	assert_still_pending
}

# A string of escapes that json-c must decode, filling the body up to the
# limit, is accepted like any other body.
huge_string_near_limit() {
	local pairs
	new_operation || return 1
	pairs=$(((MAX_BODY - 10) / 6))
	{
		printf '{"pad":"'
		for ((i = 0; i < pairs; i++)); do printf '\\u00e9'; done
		printf '"}'
	} >"$ASSERT_TMP/escapes"
	cancel_with_file "$ASSERT_TMP/escapes"
	assert_status 200
	assert_json .data.status cancelled
}

quoted_charset_accepted() {
	new_operation || return 1
	http_request PUT "/operations/$UUID/cancel" -t "$TOKEN" -f "$FINGERPRINT" \
		-H 'Content-Type: application/json; charset="UTF-8"' -d '{"reason":"quoted"}'
	assert_status 200
	assert_json .data.status cancelled
}

other_charset_rejected() {
	new_operation || return 1
	http_request PUT "/operations/$UUID/cancel" -t "$TOKEN" -f "$FINGERPRINT" \
		-H 'Content-Type: application/json; charset="ISO-8859-1"' -d '{}'
	assert_error 415001
	assert_still_pending
}

# The client promises 100 bytes, sends a complete JSON object in 10 and
# closes its side: the service must not cancel on the strength of it.
body_shorter_than_length() {
	new_operation || return 1
	{
		printf 'PUT /operations/%s/cancel HTTP/1.1\r\n' "$UUID"
		printf 'Host: 127.0.0.1\r\n'
		printf 'Authorization: Bearer %s\r\n' "$TOKEN"
		printf 'Fingerprint: %s\r\n' "$FINGERPRINT"
		printf 'Content-Type: application/json\r\n'
		printf 'Content-Length: 100\r\n'
		printf 'Connection: close\r\n\r\n'
		printf '{"x":"y"} '
	} >"$ASSERT_TMP/short-body"
	raw_request "$ASSERT_TMP/short-body" half-close
	HTTP_REQUEST="PUT cancel, Content-Length: 100 with 10 bytes"
	assert_frontend_status truncated-body
	if [[ $HTTP_STATUS == 400 && -n $HTTP_BODY ]] && jq -e .error <<<"$HTTP_BODY" >/dev/null 2>&1; then
		assert_json .error.code 400001
	fi
	assert_still_pending
	assert_every_worker_serves
}

# The same truncation sent straight to a worker over FastCGI, past the front end,
# which would otherwise never forward a short body.
fastcgi_body_shorter_than_length() {
	local socket answer status
	new_operation || return 1
	socket=$(frontend_worker_sockets | head -n 1)
	answer=$(printf '{"x":"y"} ' | env -i REQUEST_METHOD=PUT SCRIPT_NAME=/operations \
		PATH_INFO="/$UUID/cancel" SERVER_PROTOCOL=HTTP/1.1 REMOTE_ADDR=127.0.0.1 \
		HTTP_AUTHORIZATION="Bearer $TOKEN" HTTP_FINGERPRINT="$FINGERPRINT" \
		CONTENT_TYPE=application/json CONTENT_LENGTH=100 \
		timeout 10 cgi-fcgi -bind -connect "$socket" 2>&1 || true)
	status=$(awk 'NR == 1 { print $2 }' <<<"$answer")
	HTTP_REQUEST="FastCGI PUT cancel, CONTENT_LENGTH=100 with 10 bytes"
	HTTP_BODY=$(sed '1,/^\r\?$/d' <<<"$answer")
	if [[ $status != 400 ]]; then
		assert_fail "$HTTP_REQUEST: expected status 400, got '${status:-nothing}'; answer: ${answer:0:300}"
	else
		assert_json .error.code 400001
	fi
	assert_still_pending
}

test_case "malformed JSON 400001" malformed_json
test_case "nesting over limit 400001" nesting_over_limit
test_case "nesting at limit accepted" nesting_at_limit
test_case "nesting thousands deep 400001" nesting_thousands
test_case "body over max_body 413001" body_over_max
test_case "chunked body over max_body 413001" body_over_max_chunked
test_case "body near 1 MiB 413001" body_near_frontend_limit
test_case "body over 1 MiB front end 413" body_over_frontend_limit
test_case "body at max_body accepted" body_at_max
test_case "chunked body at max_body accepted" body_at_max_chunked
test_case "NUL in body 400001" nul_in_body
test_case "broken UTF-8 in body 400001" broken_utf8_body
test_case "bad Fingerprint bytes 400002" bad_fingerprint_header
test_case "NUL in header front end 400" nul_in_header
test_case "10000-byte header front end rejects" oversized_header
test_case "signed token helper control" token_helper_control
test_case "alg none token 401002" alg_none_token
test_case "wrong HS256 key 401002" wrong_key_token
test_case "RSA public key as secret 401002" rsa_public_key_as_secret
test_case "escaped string near limit accepted" huge_string_near_limit
test_case "quoted charset UTF-8 accepted" quoted_charset_accepted
test_case "other charset 415001" other_charset_rejected
test_case "short body over HTTP not acted on" body_shorter_than_length
test_case "short body over FastCGI 400001" fastcgi_body_shorter_than_length
test_finish
