#!/usr/bin/env bash
# The service-to-service routes under /internal/: each route's response member
# by member, every error code they can return with its field or header, the
# separation of service tokens from user tokens, and the cancel state table.
# The stack configures [internal] (audience userops-internal, its own HS256
# secret); its second front end leaves the audience empty, and there every
# service route answers 404002.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/assert.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/assert.sh"
# shellcheck source=SCRIPTDIR/../lib/operations.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/operations.sh"

USER_SECRET=$(tr -d ' \t\r\n' <"$USEROPS_SECRET_DIR/hs256-secret")
INTERNAL_SECRET=$(tr -d ' \t\r\n' <"$USEROPS_SECRET_DIR/hs256-internal-secret")
AUDIENCE=${USEROPS_INTERNAL_AUDIENCE:-userops-internal}
RESEND_COOLDOWN=${USEROPS_RESEND_COOLDOWN:-60}
# [operations] lifetime in the stack's configuration.
LIFETIME=600
MAX_BODY=16384
MISSING_UUID=$(cat /proc/sys/kernel/random/uuid)
UUID_PATTERN='^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
SERVICE=$(unique_id billing)
SERVICE_TOKEN=$(mint_service_token "$SERVICE" "operations:write operations:read")
READ_TOKEN=$(mint_service_token "$SERVICE" "operations:read")
WRITE_TOKEN=$(mint_service_token "$SERVICE" "operations:write")

base64url() {
	openssl base64 -A | tr '+/' '-_' | tr -d '='
}

# Prints an HS256 JWT of the JSON text PAYLOAD signed with SECRET.
sign_hs256() {
	local payload=$1 secret=$2 input signature
	input="$(printf '%s' '{"alg":"HS256","typ":"JWT"}' | base64url).$(printf '%s' "$payload" | base64url)"
	signature=$(printf '%s' "$input" | openssl dgst -sha256 -mac HMAC -macopt "key:$secret" -binary |
		base64url)
	printf '%s.%s\n' "$input" "$signature"
}

# Prints a service token signed with SECRET (default the [internal] one),
# exp = now + EXP_OFFSET, and the claims of the jq object EXTRA added to
# sub and exp (so EXTRA may replace them).
service_token() {
	local exp_offset=$1 extra=$2 secret=${3:-$INTERNAL_SECRET} payload
	payload=$(jq -cn --arg sub "$SERVICE" --argjson exp $(($(date +%s) + exp_offset)) \
		"{sub: \$sub, exp: \$exp} + $extra")
	sign_hs256 "$payload" "$secret"
}

# Prints the create body of the current user, device and address, changed by
# the jq FILTER when given.
create_body() {
	jq -cn --arg user "$USER_ID" --arg device "$FINGERPRINT" --arg email "$EMAIL" \
		"{userId: \$user, fingerprint: \$device, email: \$email} | ${1:-.}"
}

# Sends POST /internal/operations with BODY, the service token and the
# http_request options that follow.
post_create() {
	local body=$1
	shift
	http_request POST /internal/operations -t "$SERVICE_TOKEN" -d "$body" "$@"
}

# Creates an operation of the current user through POST with the create body
# changed by FILTER, and sets UUID and CHALLENGE.
internal_operation() {
	post_create "$(create_body "${1:-.}")"
	assert_status 201 || return 1
	CHALLENGE=$HTTP_BODY
	UUID=$(jq -r .uuid <<<"$CHALLENGE")
}

get_internal() {
	http_request GET "/internal/operations/${1:-$UUID}" -t "${2:-$SERVICE_TOKEN}"
}

cancel_internal() {
	if (($# > 0)); then
		http_request PUT "/internal/operations/$UUID/cancel" -t "$SERVICE_TOKEN" -d "$1"
	else
		http_request PUT "/internal/operations/$UUID/cancel" -t "$SERVICE_TOKEN"
	fi
}

# Prints the e-mail hint of ADDRESS for a local part of more than three ASCII characters.
hint_of() {
	local local_part=${1%@*}
	printf '***%s@%s\n' "${local_part: -3}" "${1#*@}"
}

# Asserts that the integer member FILTER lies within SLACK seconds of EXPECTED.
assert_time_near() {
	local filter=$1 expected=$2 slack=$3 actual
	actual=$(jq -r "$filter" <<<"$HTTP_BODY")
	if [[ ! $actual =~ ^[0-9]+$ ]] || ((actual < expected - slack || actual > expected + slack)); then
		assert_fail "$HTTP_REQUEST: expected $filter within $slack s of $expected, got $actual"
	fi
}

# Prints the number of operations of USER in the database.
operations_of() {
	db_query "SELECT COUNT(*) FROM operations WHERE user_id = '$1'"
}

# Prints the lastId of the events feed now.
events_last_id() {
	local body
	body=$(curl -sS --max-time 15 -H "Authorization: Bearer $SERVICE_TOKEN" \
		"$USEROPS_URL/internal/events?after=0&limit=1000")
	local last
	last=$(jq -r .data.lastId <<<"$body")
	# Pages on while a page is full.
	while (($(jq '.data.events | length' <<<"$body") == 1000)); do
		body=$(curl -sS --max-time 15 -H "Authorization: Bearer $SERVICE_TOKEN" \
			"$USEROPS_URL/internal/events?after=$last&limit=1000")
		last=$(jq -r .data.lastId <<<"$body")
	done
	echo "$last"
}

# --- success ----------------------------------------------------------------

create_challenge() {
	local now
	new_user create || return 1
	now=$(date +%s)
	post_create "$(create_body '. + {kind: "withdrawal", locale: "en", params: {amount: "100 EUR"}, ttl: 300}')"
	assert_status 201 || return 1
	UUID=$(jq -r .uuid <<<"$HTTP_BODY")
	assert_json '.uuid | test("^[0-9a-f-]{36}$")' true
	assert_header Location "/internal/operations/$UUID"
	assert_header Content-Type 'application/json; charset=utf-8'
	assert_header Cache-Control no-store
	assert_json 'keys | join(",")' email2fa,emailHint,expiresAt,otp2fa,resendEmailAfter,uuid
	assert_json .email2fa true
	assert_json .emailHint "$(hint_of "$EMAIL")"
	assert_json .otp2fa false
	assert_time_near .expiresAt $((now + 300)) 2
	assert_time_near .resendEmailAfter $((now + RESEND_COOLDOWN)) 2
	[[ $UUID =~ $UUID_PATTERN ]] || assert_fail "uuid $UUID is not lower-case 8-4-4-4-12 hex"
	assert_equal "operations of $USER_ID after one POST" 1 "$(operations_of "$USER_ID")"
}

# The Location keeps the mount prefix of the request.
create_under_api() {
	new_user api || return 1
	http_request POST /api/internal/operations -t "$SERVICE_TOKEN" -d "$(create_body)"
	assert_status 201 || return 1
	UUID=$(jq -r .uuid <<<"$HTTP_BODY")
	assert_header Location "/api/internal/operations/$UUID"
	http_request GET "/api/internal/operations/$UUID" -t "$READ_TOKEN"
	assert_status 200
	assert_json .data.uuid "$UUID"
}

create_defaults() {
	local now
	new_user defaults || return 1
	now=$(date +%s)
	internal_operation || return 1
	assert_time_near .expiresAt $((now + LIFETIME)) 2
	get_internal
	assert_status 200 || return 1
	assert_json .data.kind operation
	assert_json .data.locale en
	assert_json '.data.params | tojson' '{}'
	assert_json .data.otp2fa false
}

create_otp_only() {
	new_totp_user otp-only || return 1
	internal_operation '. + {otp: true} | del(.email)' || return 1
	assert_json .email2fa false
	assert_json .emailHint null
	assert_json .otp2fa true
	assert_json .resendEmailAfter null
	internal_operation '. + {otp: true, email: null}' || return 1
	assert_json .email2fa false
	assert_json .otp2fa true
	internal_operation '. + {otp: true}' || return 1
	assert_json .email2fa true
	assert_json .otp2fa true
}

# Values of the maximum length and the maximum number of parameters are accepted.
create_limits() {
	local filter
	new_user limits || return 1
	USER_ID=$(unique_id limits)$(printf 'u%.0s' {1..255})
	USER_ID=${USER_ID:0:255}
	FINGERPRINT=$(unique_id device)$(printf 'f%.0s' {1..255})
	FINGERPRINT=${FINGERPRINT:0:255}
	filter='. + {kind: ("k" * 64), ttl: '"$LIFETIME"',
		params: ([range(31)] | map({("p\(.)"): "v"}) | add
			+ {(("n" * 64)): ("v" * 1024)})}'
	internal_operation "$filter" || return 1
	get_internal
	assert_status 200 || return 1
	assert_json .data.userId "$USER_ID"
	assert_json '.data.params | length' 32
	assert_json '.data.kind | length' 64
	internal_operation '. + {ttl: 1, kind: "a.B-c_9", params: {"x.y-z_1": "héllo wörld"}}' || return 1
	get_internal
	assert_json '.data.params["x.y-z_1"]' 'héllo wörld'
	assert_json .data.kind a.B-c_9
}

# GET shows every member of the service view; the mail arrives, its code
# confirms through the user route, and GET then shows the outcome.
get_view() {
	local now tries
	new_user view || return 1
	now=$(date +%s)
	internal_operation '. + {kind: "withdrawal", params: {amount: "42 EUR", iban: "DE00 1234"}}' || return 1
	get_internal "$UUID" "$READ_TOKEN"
	assert_status 200 || return 1
	assert_json .success true
	assert_json .message 'Operation successful'
	assert_json '.data | keys | join(",")' \
		attemptsLeft,createdAt,email2fa,emailDelivery,emailHint,expiresAt,finishedAt,kind,locale,otp2fa,params,resendEmailAfter,resends,status,userId,uuid
	assert_json .data.uuid "$UUID"
	assert_json .data.status pending
	assert_json .data.userId "$USER_ID"
	assert_json .data.kind withdrawal
	assert_json .data.locale en
	assert_json '.data.params | tojson' '{"amount":"42 EUR","iban":"DE00 1234"}'
	assert_json .data.email2fa true
	assert_json .data.emailHint "$(hint_of "$EMAIL")"
	assert_json .data.otp2fa false
	assert_json .data.expiresAt "$(jq -r .expiresAt <<<"$CHALLENGE")"
	assert_json .data.resendEmailAfter "$(jq -r .resendEmailAfter <<<"$CHALLENGE")"
	assert_json .data.attemptsLeft 5
	assert_json .data.resends 0
	assert_time_near .data.createdAt "$now" 2
	assert_json .data.finishedAt null
	assert_json '.data.emailDelivery == null or (.data.emailDelivery.status | IN("queued", "sent", "retrying"))' true

	# A mail is queued by the POST and sent by the mailer.
	wait_mail_code 1 || return 1
	for ((tries = 0; tries < 50; tries++)); do
		get_internal
		[[ $(jq -r '.data.emailDelivery.status // empty' <<<"$HTTP_BODY") == sent ]] && break
		sleep 0.2
	done
	assert_json .data.emailDelivery.status sent
	assert_json '.data.emailDelivery | keys | join(",")' at,status
	assert_time_near .data.emailDelivery.at "$now" 15

	put_action confirm "{\"emailCode\":\"$MAIL_CODE\"}"
	assert_status 200 || return 1
	get_internal "$UUID" "$READ_TOKEN"
	assert_json .data.status confirmed
	assert_json .data.resendEmailAfter null
	assert_time_near .data.finishedAt "$(date +%s)" 2
}

# The mail of a POST carries the params and a code that confirms.
mail_queued() {
	local file
	new_user mailed || return 1
	internal_operation '. + {kind: "withdrawal", params: {amount: "77 EUR"}}' || return 1
	wait_mail_code 1 || return 1
	[[ $MAIL_CODE =~ ^[0-9]{6}$ ]] || assert_fail "mail code '$MAIL_CODE' is not six digits"
	file=$(mail_tool latest "$EMAIL") || return 1
	grep -q '77 EUR' "$file" || assert_fail "the mail $file does not show the parameter amount"
	sleep 1
	assert_equal "mails to $EMAIL after one POST" 1 "$(mail_count "$EMAIL")"
}

cancel_with_reason() {
	local before
	new_user cancel || return 1
	internal_operation || return 1
	before=$(events_last_id)
	http_request PUT "/internal/operations/$UUID/cancel" -t "$WRITE_TOKEN" \
		-d '{"reason":"fraud check failed","other":1}'
	assert_status 200 || return 1
	assert_json .success true
	assert_json '.data | keys | join(",")' status,uuid
	assert_json .data.uuid "$UUID"
	assert_json .data.status cancelled
	get_internal
	assert_json .data.status cancelled
	assert_time_near .data.finishedAt "$(date +%s)" 2
	get_operation
	assert_json .data.status cancelled

	# One event for the cancel, with the operation's members.
	http_request GET "/internal/events?after=$before&limit=1000" -t "$READ_TOKEN"
	assert_status 200 || return 1
	assert_json "[.data.events[] | select(.uuid == \"$UUID\")] | length" 1
	assert_json "[.data.events[] | select(.uuid == \"$UUID\")][0] | [.status, .userId, .kind] | join(\" \")" \
		"cancelled $USER_ID operation"
	assert_json "[.data.events[] | select(.uuid == \"$UUID\")][0].at | . > 0" true

	# The audit row names the service and the reason.
	assert_equal "audit detail of the service's cancel mentions the service and the reason" yes \
		"$(db_query "SELECT IF(COUNT(*) > 0, 'yes', 'no') FROM audit_log
			WHERE operation_uuid = UNHEX(REPLACE('$UUID', '-', ''))
			AND detail LIKE '%$SERVICE%' AND detail LIKE '%fraud check failed%'")"
}

cancel_without_body() {
	new_user cancel-empty || return 1
	internal_operation || return 1
	cancel_internal
	assert_status 200
	assert_json .data.status cancelled
	internal_operation || return 1
	cancel_internal '{}'
	assert_status 200
	assert_json .data.status cancelled
}

bad_reason() {
	local body
	local -a bodies=('{"reason":""}' '{"reason":42}' '{"reason":null}' '{"reason":"line\nbreak"}'
		"{\"reason\":\"$(printf 'r%.0s' {1..256})\"}" '{"reason":["x"]}')
	new_user reason || return 1
	internal_operation || return 1
	for body in "${bodies[@]}"; do
		cancel_internal "$body"
		HTTP_REQUEST+=" with body ${body:0:40}"
		expect_error 400001
		assert_json .error.field reason
	done
	get_internal
	assert_json .data.status pending
	cancel_internal "{\"reason\":\"$(printf 'r%.0s' {1..255})\"}"
	HTTP_REQUEST+=" with a 255-byte reason"
	assert_status 200
}

# --- the cancel state table -------------------------------------------------

cancel_confirmed_409001() {
	new_user confirmed || return 1
	internal_operation || return 1
	wait_mail_code 1 || return 1
	put_action confirm "{\"emailCode\":\"$MAIL_CODE\"}"
	assert_status 200 || return 1
	cancel_internal '{"reason":"too late"}'
	expect_error 409001
	get_internal
	assert_json .data.status confirmed
}

cancel_rejected_409003() {
	local wrong
	new_user rejected || return 1
	internal_operation || return 1
	wait_mail_code 1 || return 1
	wrong=$(other_code "$MAIL_CODE")
	for _ in 1 2 3 4 5; do
		put_action confirm "{\"emailCode\":\"$wrong\"}"
		expect_error 422001
	done
	cancel_internal
	expect_error 409003
	get_internal
	assert_json .data.status rejected
	assert_json .data.attemptsLeft 0
}

cancel_expired_410001() {
	new_user expired || return 1
	internal_operation '. + {ttl: 1}' || return 1
	while (($(date +%s) < $(jq -r .expiresAt <<<"$CHALLENGE"))); do
		sleep 0.2
	done
	cancel_internal
	expect_error 410001
	get_internal
	assert_status 200
	assert_json .data.status expired
	assert_json .data.resendEmailAfter null
}

cancel_twice() {
	new_user twice || return 1
	internal_operation || return 1
	cancel_internal
	assert_status 200 || return 1
	cancel_internal '{"reason":"again"}'
	assert_status 200
	assert_json .data.status cancelled
	put_action cancel
	assert_status 200
	assert_json .data.status cancelled
	# A user's cancel first, then the service's.
	internal_operation || return 1
	put_action cancel
	assert_status 200 || return 1
	cancel_internal
	assert_status 200
	assert_json .data.status cancelled
}

# --- 400001 on POST ---------------------------------------------------------

# Each jq filter turns a valid create body into one whose member FIELD is
# wrong; each gets 400001 with that field and creates nothing.
bad_members() {
	local entry field filter
	local -a table=(
		'amount	. + {amount: "1"}'
		'userId	del(.userId)'
		'userId	.userId = 42'
		'userId	.userId = null'
		'userId	.userId = ""'
		'userId	.userId = ("u" * 256)'
		'userId	.userId = "a\u0001b"'
		'userId	.userId = "a\u007fb"'
		'fingerprint	del(.fingerprint)'
		'fingerprint	.fingerprint = ""'
		'fingerprint	.fingerprint = "has space"'
		'fingerprint	.fingerprint = ("f" * 256)'
		'fingerprint	.fingerprint = "dévice"'
		'fingerprint	.fingerprint = 7'
		'email	.email = "a@example.com, b@example.com"'
		'email	.email = "a@example.com b@example.com"'
		'email	.email = "<a@example.com>,b@example.com"'
		'email	.email = "not-an-address"'
		'email	.email = "a@example.com\r\nBcc: b@example.com"'
		'email	.email = ""'
		'email	.email = 5'
		'email	.email = ["a@example.com"]'
		'email	del(.email)'
		'email	.email = null'
		'email	.email = null | .otp = false'
		'otp	.otp = "true"'
		'otp	.otp = 1'
		'otp	.otp = null'
		'kind	.kind = ""'
		'kind	.kind = "has space"'
		'kind	.kind = "a/b"'
		'kind	.kind = ("k" * 65)'
		'kind	.kind = 3'
		'locale	.locale = "xx"'
		'locale	.locale = ""'
		'locale	.locale = "../en"'
		'locale	.locale = "en/../en"'
		'locale	.locale = 1'
		'params	.params = "amount=1"'
		'params	.params = []'
		'params	.params = null'
		'params	.params = {a: 1}'
		'params	.params = {a: null}'
		'params	.params = {a: {b: "c"}}'
		'params	.params = {a: "x\u0001y"}'
		'params	.params = {a: "x\ny"}'
		'params	.params = {"bad name": "x"}'
		'params	.params = {"": "x"}'
		'params	.params = {(("n" * 65)): "x"}'
		'params	.params = {a: ("v" * 1025)}'
		'params	.params = ([range(33)] | map({("p\(.)"): "v"}) | add)'
		'ttl	.ttl = 0'
		'ttl	.ttl = -1'
		"ttl	.ttl = $((LIFETIME + 1))"
		'ttl	.ttl = "60"'
		'ttl	.ttl = 1.5'
		'ttl	.ttl = 1e3'
	)
	new_user members || return 1
	for entry in "${table[@]}"; do
		field=${entry%%$'\t'*}
		filter=${entry#*$'\t'}
		post_create "$(create_body "$filter")"
		HTTP_REQUEST+=" with $filter"
		expect_error 400001
		# A member named params.NAME would also do for a parameter at fault.
		if [[ $field == params ]]; then
			assert_json '.error.field | test("^params")' true
		else
			assert_json .error.field "$field"
		fi
	done
	assert_equal "operations of $USER_ID after the bad bodies" 0 "$(operations_of "$USER_ID")"
}

# otp true for a user without a TOTP enrolment creates nothing.
otp_not_enrolled() {
	new_user not-enrolled || return 1
	post_create "$(create_body '. + {otp: true} | del(.email)')"
	expect_error 400001
	assert_json .error.field otp
	assert_equal "operations of $USER_ID" 0 "$(operations_of "$USER_ID")"
}

malformed_json() {
	local body
	local -a bodies=('{"userId":' '[]' '"x"' '{"userId":"a"} x' '{"userId":"a"}{}'
		"{'userId':'a'}" '{"userId":"a",}' $'{"userId":"\xff\xfe"}' '{"userId":"a\u0000b"}')
	new_user malformed || return 1
	for body in "${bodies[@]}"; do
		post_create "$body"
		HTTP_REQUEST+=" with body ${body:0:40}"
		expect_error 400001
	done
	post_create ''
	HTTP_REQUEST+=" with an empty body"
	expect_error 400001
	assert_json .error.field userId
}

bad_idempotency_key() {
	local key
	local -a keys=("$(printf 'k%.0s' {1..129})" 'has space' 'tab	key' 'clé')
	new_user bad-key || return 1
	for key in "${keys[@]}"; do
		post_create "$(create_body)" -H "Idempotency-Key: $key"
		HTTP_REQUEST+=" with Idempotency-Key '${key:0:20}' (${#key} characters)"
		expect_error 400001
		assert_json .error.field Idempotency-Key
	done
	# NOTE: an empty Idempotency-Key is not sent: lighttpd 1.4.69 passes no
	# empty header to FastCGI, so the service would see no key at all.
	assert_equal "operations of $USER_ID after the bad keys" 0 "$(operations_of "$USER_ID")"
	post_create "$(create_body)" -H "Idempotency-Key: $(printf 'k%.0s' {1..120})-$RANDOM"
	HTTP_REQUEST+=" with a key of up to 128 characters"
	assert_status 201
}

# --- 401 --------------------------------------------------------------------

# Sends each internal route with the http_request options that follow.
each_internal_route() {
	http_request POST /internal/operations -d "$(create_body)" "$@"
	http_request_hook
	http_request GET "/internal/operations/$UUID" "$@"
	http_request_hook
	http_request PUT "/internal/operations/$UUID/cancel" "$@"
	http_request_hook
	http_request GET '/internal/events?after=0&limit=10' "$@"
	http_request_hook
}

missing_token() {
	local header
	new_user no-token && internal_operation || return 1
	http_request_hook() {
		expect_error 401001
		assert_header WWW-Authenticate 'Bearer realm="userops"'
	}
	each_internal_route
	for header in 'Authorization: Basic dXNlcjpwYXNz' 'Authorization: Bearer'; do
		each_internal_route -H "$header"
	done
}

invalid_token() {
	local token user_token now
	local -a tokens=()
	new_user bad-token && internal_operation || return 1
	user_token=$(mint_token "$USER_ID") || return 1
	now=$(date +%s)
	tokens+=(garbage "$SERVICE_TOKEN"x "$user_token")
	# The user secret with the internal audience, the internal secret
	# without it or with another one.
	tokens+=("$(service_token 600 "{aud: \"$AUDIENCE\", scope: \"operations:write operations:read\"}" "$USER_SECRET")")
	tokens+=("$(service_token 600 '{scope: "operations:write operations:read"}')")
	tokens+=("$(service_token 600 '{aud: "someone-else", scope: "operations:write operations:read"}')")
	tokens+=("$(service_token 600 "{aud: \"$AUDIENCE\", scope: \"operations:write operations:read\", nbf: $((now + 300))}")")
	tokens+=("$(service_token 600 "{aud: \"$AUDIENCE\", scope: \"operations:write operations:read\"} | del(.sub)")")
	# A scope that is neither a string nor an array of single scope names.
	tokens+=("$(service_token 600 "{aud: \"$AUDIENCE\", scope: 5}")")
	tokens+=("$(service_token 600 "{aud: \"$AUDIENCE\", scope: [\"operations:read operations:write\"]}")")
	http_request_hook() {
		expect_error 401002
		assert_header WWW-Authenticate 'Bearer realm="userops", error="invalid_token"'
	}
	for token in "${tokens[@]}"; do
		each_internal_route -t "$token"
	done
	get_internal
	assert_json .data.status pending
}

expired_token() {
	local token
	new_user expired-token && internal_operation || return 1
	token=$(service_token -45 "{aud: \"$AUDIENCE\", scope: \"operations:write operations:read\"}")
	http_request_hook() {
		expect_error 401003
		assert_header WWW-Authenticate 'Bearer realm="userops", error="invalid_token"'
	}
	each_internal_route -t "$token"
}

# Hand-signed service tokens with scope as a string or an array are accepted.
hand_signed_token() {
	local token
	new_user signed && internal_operation || return 1
	token=$(service_token 600 "{aud: \"$AUDIENCE\", scope: [\"operations:read\"]}")
	get_internal "$UUID" "$token"
	assert_status 200
	token=$(service_token 600 "{aud: [\"other\", \"$AUDIENCE\"], scope: \"openid operations:read\"}")
	get_internal "$UUID" "$token"
	assert_status 200
	token=$(service_token 600 "{aud: \"$AUDIENCE\", scope: [\"operations:write\"]}")
	http_request PUT "/internal/operations/$UUID/cancel" -t "$token"
	assert_status 200
}

# A service token is no user token, even signed with the user secret.
service_token_on_user_routes() {
	local token action
	local -a tokens=()
	new_user user-routes && internal_operation || return 1
	tokens+=("$SERVICE_TOKEN")
	SERVICE=$USER_ID tokens+=("$(service_token 600 \
		"{aud: \"$AUDIENCE\", scope: \"operations:write operations:read\"}" "$USER_SECRET")")
	for token in "${tokens[@]}"; do
		http_request GET "/operations/$UUID" -t "$token" -f "$FINGERPRINT"
		expect_error 401002
		assert_header WWW-Authenticate 'Bearer realm="userops", error="invalid_token"'
		for action in cancel confirm resend; do
			http_request PUT "/operations/$UUID/$action" -t "$token" -f "$FINGERPRINT" \
				-d '{"emailCode":"123456"}'
			expect_error 401002
			assert_header WWW-Authenticate 'Bearer realm="userops", error="invalid_token"'
		done
	done
	expect_operation pending 5
}

# --- 403002, 400003, 404001, 405001 -----------------------------------------

missing_scope() {
	local token scope
	new_user scope && internal_operation || return 1
	http_request POST /internal/operations -t "$READ_TOKEN" -d "$(create_body)"
	expect_error 403002
	http_request PUT "/internal/operations/$UUID/cancel" -t "$READ_TOKEN"
	expect_error 403002
	http_request GET "/internal/operations/$UUID" -t "$WRITE_TOKEN"
	expect_error 403002
	http_request GET /internal/events -t "$WRITE_TOKEN"
	expect_error 403002
	# No scope claim, and near misses.
	for scope in null '"operations:writer operations"' '"Operations:Write"' '[]' \
		'["operations:read", "operations:writer"]'; do
		token=$(service_token 600 "{aud: \"$AUDIENCE\", scope: $scope} | del(.. | nulls)")
		http_request PUT "/internal/operations/$UUID/cancel" -t "$token"
		HTTP_REQUEST+=" with scope $scope"
		expect_error 403002
	done
	assert_equal "operations of $USER_ID" 1 "$(operations_of "$USER_ID")"
	get_internal
	assert_json .data.status pending
}

bad_uuid() {
	local uuid
	for uuid in not-a-uuid "${MISSING_UUID:0:35}" "${MISSING_UUID}0" "${MISSING_UUID//-/}" \
		"${MISSING_UUID:0:35}g"; do
		get_internal "$uuid"
		expect_error 400003
		http_request PUT "/internal/operations/$uuid/cancel" -t "$SERVICE_TOKEN"
		expect_error 400003
	done
}

unknown_operation() {
	get_internal "$MISSING_UUID"
	expect_error 404001
	http_request PUT "/internal/operations/$MISSING_UUID/cancel" -t "$SERVICE_TOKEN" -d '{"reason":"x"}'
	expect_error 404001
	# Upper case names the same operation.
	new_user upper && internal_operation || return 1
	get_internal "${UUID^^}"
	assert_status 200
	assert_json .data.uuid "$UUID"
}

wrong_method() {
	new_user method && internal_operation || return 1
	http_request GET /internal/operations -t "$SERVICE_TOKEN"
	expect_error 405001
	assert_header Allow POST
	http_request PUT /internal/operations -t "$SERVICE_TOKEN" -d '{}'
	expect_error 405001
	assert_header Allow POST
	http_request DELETE "/internal/operations/$UUID" -t "$SERVICE_TOKEN"
	expect_error 405001
	assert_header Allow GET
	http_request GET "/internal/operations/$UUID/cancel" -t "$SERVICE_TOKEN"
	expect_error 405001
	assert_header Allow PUT
	http_request POST /internal/events -t "$SERVICE_TOKEN" -d '{}'
	expect_error 405001
	assert_header Allow GET
	http_request PUT "/internal/operations/$UUID/confirm" -t "$SERVICE_TOKEN" -d '{}'
	expect_error 404002
	get_internal
	assert_json .data.status pending
}

# --- 413001 and 415001 ------------------------------------------------------

body_too_large() {
	local file=$ASSERT_TMP/large.json
	new_user large && internal_operation || return 1
	{
		printf '{"pad":"'
		head -c $((MAX_BODY - 9)) /dev/zero | tr '\0' x
		printf '"}'
	} >"$file"
	http_request POST /internal/operations -t "$SERVICE_TOKEN" -d "$(cat "$file")"
	expect_error 413001
	http_request PUT "/internal/operations/$UUID/cancel" -t "$SERVICE_TOKEN" -d "$(cat "$file")"
	expect_error 413001
	get_internal
	assert_json .data.status pending
}

wrong_media_type() {
	local type
	new_user media && internal_operation || return 1
	for type in text/plain 'application/json; charset=latin1' application/x-www-form-urlencoded; do
		http_request POST /internal/operations -t "$SERVICE_TOKEN" -d "$(create_body)" \
			-H "Content-Type: $type"
		HTTP_REQUEST+=" with Content-Type $type"
		expect_error 415001
		http_request PUT "/internal/operations/$UUID/cancel" -t "$SERVICE_TOKEN" -d '{}' \
			-H "Content-Type: $type"
		HTTP_REQUEST+=" with Content-Type $type"
		expect_error 415001
	done
	assert_equal "operations of $USER_ID" 1 "$(operations_of "$USER_ID")"
}

# --- order of the checks ----------------------------------------------------

check_order() {
	new_user order || return 1
	http_request PUT /internal/operations/not-a-uuid/cancel -t garbage
	expect_error 401002
	http_request PUT /internal/operations/not-a-uuid/cancel -t "$READ_TOKEN" -d '{'
	expect_error 403002
	http_request PUT /internal/operations/not-a-uuid/cancel -t "$WRITE_TOKEN" -d '{' \
		-H 'Content-Type: text/plain'
	expect_error 400003
	http_request PUT "/internal/operations/$MISSING_UUID/cancel" -t "$WRITE_TOKEN" -d '{' \
		-H 'Content-Type: text/plain'
	expect_error 415001
	http_request PUT "/internal/operations/$MISSING_UUID/cancel" -t "$WRITE_TOKEN" -d '{'
	expect_error 400001
	# The key's syntax before the members, the members before the domain.
	post_create '{"userId":5}' -H 'Idempotency-Key: has space'
	expect_error 400001
	assert_json .error.field Idempotency-Key
	post_create '{"userId":5,"fingerprint":"f"}'
	expect_error 400001
	assert_json .error.field userId
}

# --- events query -----------------------------------------------------------

events_query_errors() {
	local query field
	for query in after=-1 after=x after= after=1.5 after=0x10 'after=1%200' limit=0 limit=1001 \
		limit=x limit= limit=-5 'after=0&limit=1e2'; do
		field=${query%%=*}
		[[ $query == *limit=* ]] && field=limit
		http_request GET "/internal/events?$query" -t "$READ_TOKEN"
		expect_error 400001
		assert_json .error.field "$field"
	done
}

events_defaults() {
	local last
	http_request GET /internal/events -t "$READ_TOKEN"
	assert_status 200 || return 1
	assert_json .success true
	assert_json .message 'Operation successful'
	assert_json '.data | keys | join(",")' events,lastId
	assert_json '.data.events | length <= 100' true
	http_request GET '/internal/events?limit=1000&other=1&after=0' -t "$READ_TOKEN"
	assert_status 200 || return 1
	assert_json '.data.events | length <= 1000' true
	last=$(events_last_id)
	http_request GET "/internal/events?after=$((last + 1000000))&limit=1" -t "$READ_TOKEN"
	assert_status 200 || return 1
	assert_json '.data.events | length' 0
	assert_json .data.lastId $((last + 1000000))
	# The mailer may record an event between the two reads. The page after
	# $last can then contain new events, and lastId is the last of them.
	http_request GET "/internal/events?after=$last&limit=1000" -t "$READ_TOKEN"
	assert_status 200 || return 1
	assert_json "[.data.events[].id | select(. <= $last)] | length" 0
	assert_json ".data.lastId == ((.data.events | last | .id) // $last)" true
}

test_case "POST challenge 201 Location" create_challenge
test_case "POST under /api/ keeps prefix" create_under_api
test_case "POST defaults" create_defaults
test_case "POST otp factor" create_otp_only
test_case "POST longest values accepted" create_limits
test_case "POST mail queued" mail_queued
test_case "GET service view members" get_view
test_case "cancel with reason 200" cancel_with_reason
test_case "cancel without body 200" cancel_without_body
test_case "cancel bad reason 400001" bad_reason
test_case "cancel confirmed 409001" cancel_confirmed_409001
test_case "cancel rejected 409003" cancel_rejected_409003
test_case "cancel expired 410001" cancel_expired_410001
test_case "cancel twice 200" cancel_twice
test_case "POST bad members 400001 field" bad_members
test_case "POST otp without enrolment 400001" otp_not_enrolled
test_case "POST malformed JSON 400001" malformed_json
test_case "bad Idempotency-Key 400001" bad_idempotency_key
test_case "missing token 401001" missing_token
test_case "invalid token 401002" invalid_token
test_case "expired token 401003" expired_token
test_case "hand-signed service token accepted" hand_signed_token
test_case "service token on user routes 401002" service_token_on_user_routes
test_case "missing scope 403002" missing_scope
test_case "malformed uuid 400003" bad_uuid
test_case "unknown operation 404001" unknown_operation
test_case "wrong method 405001 Allow" wrong_method
test_case "body too large 413001" body_too_large
test_case "wrong media type 415001" wrong_media_type
test_case "order of the checks" check_order
test_case "events query 400001 field" events_query_errors
test_case "events defaults and lastId" events_defaults
# Without [internal] audience the service routes do not exist, whatever the token.
unconfigured_internal() {
	local token path saved_url=$USEROPS_URL
	token=$(mint_service_token "$(unique_id unconfigured)" "operations:write operations:read") ||
		return 1
	USEROPS_URL=$USEROPS_URL_STRICT
	http_request POST /internal/operations -t "$token" -d '{"userId":"u","fingerprint":"f"}'
	expect_error 404002
	for path in "/internal/operations/$(cat /proc/sys/kernel/random/uuid)" /internal/events; do
		http_request GET "$path" -t "$token"
		expect_error 404002
	done
	http_request PUT "/internal/operations/$(cat /proc/sys/kernel/random/uuid)/cancel" -t "$token"
	expect_error 404002
	USEROPS_URL=$saved_url
}

test_case "unconfigured [internal] 404002" unconfigured_internal
test_finish
