#!/usr/bin/env bash
# The state machine of an operation: the success of each route with its body
# member by member, every terminal state against every action, TOTP replay and
# window, which e-mail codes stay valid across resends (with
# accept_previous_code = yes, and = no on a second front end that this file
# starts), and the attempt count across resends. Each case has its own user
# and operations. The resend cases need a short [operations] resend_cooldown
# (tests/run-all sets 3 s); with a longer one they are skipped.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/assert.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/assert.sh"
# shellcheck source=SCRIPTDIR/../lib/operations.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/operations.sh"

RESEND_COOLDOWN=${USEROPS_RESEND_COOLDOWN:-60}
# Maximum cooldown, in seconds, for which the resend cases wait.
MAX_TEST_COOLDOWN=5
LIFETIME=600
MAX_ATTEMPTS=5
CHALLENGE_KEYS='["email2fa","emailHint","expiresAt","otp2fa","resendEmailAfter","uuid"]'
GET_KEYS='["attemptsLeft","email2fa","emailDelivery","emailHint","expiresAt","otp2fa","resendEmailAfter","status","uuid"]'

SECOND_PID=
SECOND_DIR=
SECOND_FAILURE=

# Asserts a 200 of cancel or confirm whose data contains exactly uuid and
# STATUS.
expect_success() {
	assert_status 200 || return 1
	assert_json .success true
	assert_json .message 'Operation successful'
	assert_json '.data | keys | tojson' '["status","uuid"]'
	assert_json .data.uuid "$UUID"
	assert_json .data.status "$1"
}

# Checks that the number VALUE lies between LOW and HIGH.
assert_between() {
	local what=$1 value=$2 low=$3 high=$4
	if [[ ! $value =~ ^-?[0-9]+$ ]] || ((value < low || value > high)); then
		assert_fail "$what: expected a number from $low to $high, got '$value'"
	fi
}

# --- success of each route --------------------------------------------------

get_pending_email() {
	local local_part created now tries
	new_user get-email && new_operation --email "$EMAIL" --kind withdrawal --param amount=10 || return 1
	local_part=${EMAIL%@*}
	get_operation
	assert_status 200 || return 1
	assert_json .success true
	assert_json .message 'Operation successful'
	assert_json '.data | keys | tojson' "$GET_KEYS"
	assert_json .data.uuid "$UUID"
	assert_json .data.status pending
	assert_json .data.email2fa true
	assert_json .data.emailHint "***${local_part: -3}@example.com"
	assert_json .data.expiresAt "$(jq -r .expiresAt <<<"$CHALLENGE")"
	assert_json .data.otp2fa false
	assert_json .data.resendEmailAfter "$(jq -r .resendEmailAfter <<<"$CHALLENGE")"
	assert_json .data.attemptsLeft "$MAX_ATTEMPTS"
	assert_json '.data.emailDelivery.status | IN("queued", "sent")' true

	created=$(($(jq -r .expiresAt <<<"$CHALLENGE") - LIFETIME))
	assert_between "expiresAt - resendEmailAfter" \
		$(($(jq -r '.expiresAt - .resendEmailAfter' <<<"$CHALLENGE"))) \
		$((LIFETIME - RESEND_COOLDOWN)) $((LIFETIME - RESEND_COOLDOWN))
	mail_wait "$EMAIL" 1 || return 1
	for ((tries = 0; tries < 50; tries++)); do
		get_operation
		[[ $(jq -r .data.emailDelivery.status <<<"$HTTP_BODY") == sent ]] && break
		sleep 0.2
	done
	now=$(date +%s)
	assert_json '.data.emailDelivery | keys | tojson' '["at","status"]'
	assert_json .data.emailDelivery.status sent
	assert_between "emailDelivery.at" "$(jq -r .data.emailDelivery.at <<<"$HTTP_BODY")" "$created" "$now"
}

get_pending_otp() {
	new_totp_user get-otp && new_operation --otp || return 1
	HTTP_REQUEST="userops-ctl create-operation --otp"
	HTTP_BODY=$CHALLENGE
	assert_json 'keys | tojson' "$CHALLENGE_KEYS"
	assert_json .emailHint null
	assert_json .resendEmailAfter null

	get_operation
	assert_status 200 || return 1
	assert_json '.data | keys | tojson' "$GET_KEYS"
	assert_json .data.uuid "$UUID"
	assert_json .data.status pending
	assert_json .data.email2fa false
	assert_json .data.emailHint null
	assert_json .data.expiresAt "$(jq -r .expiresAt <<<"$CHALLENGE")"
	assert_json .data.otp2fa true
	assert_json .data.resendEmailAfter null
	assert_json .data.attemptsLeft "$MAX_ATTEMPTS"
	assert_json .data.emailDelivery null
}

get_pending_both() {
	new_totp_user get-both && new_operation --email "$EMAIL" --otp --ttl 120 || return 1
	get_operation
	assert_status 200 || return 1
	assert_json .data.email2fa true
	assert_json .data.otp2fa true
	assert_json '.data.emailHint | endswith("@example.com")' true
	assert_between "expiresAt - now" $(($(jq -r .data.expiresAt <<<"$HTTP_BODY") - $(date +%s))) 118 120
}

# The hint shows min(3, n - 1) characters of an n-character local part,
# counted in code points.
email_hint_short() {
	local address
	# Non-ASCII local parts are refused at creation (mail.sh); the unit tests
	# of mask_email count their code points.
	local -a addresses=(a@example.com ab@example.com abc@example.com abcd@example.com)
	local -a hints=('***@example.com' '***b@example.com' '***bc@example.com' '***bcd@example.com')
	new_user hint || return 1
	for index in "${!addresses[@]}"; do
		address=${addresses[$index]}
		new_operation --email "$address" || return 1
		get_operation
		HTTP_REQUEST+=" for $address"
		assert_json .data.emailHint "${hints[$index]}"
	done
}

resend_success() {
	local sent before_body
	new_user resend && new_operation --email "$EMAIL" || return 1
	wait_until "$(jq -r .resendEmailAfter <<<"$CHALLENGE")" $((RESEND_COOLDOWN + 2)) || return 1
	put_action resend
	sent=$(date +%s)
	assert_status 200 || return 1
	assert_json 'keys | tojson' "$CHALLENGE_KEYS"
	assert_json .uuid "$UUID"
	assert_json .email2fa true
	assert_json .otp2fa false
	assert_json .emailHint "$(jq -r .emailHint <<<"$CHALLENGE")"
	assert_json .expiresAt "$(jq -r .expiresAt <<<"$CHALLENGE")"
	assert_between "resendEmailAfter - now after the first resend" \
		$(($(jq -r .resendEmailAfter <<<"$HTTP_BODY") - sent)) \
		$((2 * RESEND_COOLDOWN - 1)) $((2 * RESEND_COOLDOWN))
	before_body=$HTTP_BODY

	get_operation
	assert_json .data.resendEmailAfter "$(jq -r .resendEmailAfter <<<"$before_body")"
	assert_json .data.status pending
	mail_wait "$EMAIL" 2
}

cancel_twice() {
	new_user cancel && new_operation --email "$EMAIL" || return 1
	wait_mail_code 1 || return 1
	put_action cancel
	expect_success cancelled
	put_action cancel '{"ignored":[1,2,3]}'
	HTTP_REQUEST+=" again"
	expect_success cancelled

	get_operation
	assert_json .data.status cancelled
	assert_json .data.attemptsLeft "$MAX_ATTEMPTS"
	assert_json .data.resendEmailAfter null
	put_action confirm "{\"emailCode\":\"$MAIL_CODE\"}"
	expect_error 409002
	put_action resend
	expect_error 409002
	get_operation
	assert_json .data.status cancelled
}

confirm_email() {
	new_user confirm && new_operation --email "$EMAIL" || return 1
	wait_mail_code 1 || return 1
	put_action confirm "{\"emailCode\":\"$MAIL_CODE\",\"unknown\":{\"a\":1}}"
	expect_success confirmed

	get_operation
	assert_json .data.status confirmed
	assert_json .data.attemptsLeft "$MAX_ATTEMPTS"
	assert_json .data.resendEmailAfter null
	put_action cancel
	expect_error 409001
	put_action confirm "{\"emailCode\":\"$MAIL_CODE\"}"
	expect_error 409001
	put_action resend
	expect_error 409001
	get_operation
	assert_json .data.status confirmed
}

# A lone code stands for the only factor; white space around it is ignored.
confirm_lone_code() {
	new_user lone && new_operation --email "$EMAIL" || return 1
	wait_mail_code 1 || return 1
	put_action confirm "{\"code\":\" $MAIL_CODE\\n\"}"
	expect_success confirmed

	new_totp_user lone-otp && new_operation --otp || return 1
	put_action confirm "{\"code\":\"$(totp_code "$TOTP_SECRET")\"}"
	expect_success confirmed
}

# A wrong code of either factor costs an attempt, and a right TOTP code in a
# failed confirm does not use up its step.
confirm_both_factors() {
	local otp
	new_totp_user both && new_operation --email "$EMAIL" --otp || return 1
	wait_mail_code 1 || return 1
	avoid_step_end 3
	otp=$(totp_code "$TOTP_SECRET")
	put_action confirm "{\"emailCode\":\"$MAIL_CODE\",\"otpCode\":\"$(other_code "$otp")\"}"
	expect_error 422001
	assert_json .error.attemptsLeft 4
	put_action confirm "{\"emailCode\":\"$(other_code "$MAIL_CODE")\",\"otpCode\":\"$otp\"}"
	expect_error 422001
	assert_json .error.attemptsLeft 3
	put_action confirm "{\"emailCode\":\"$MAIL_CODE\",\"otpCode\":\"$otp\"}"
	expect_success confirmed
	expect_operation confirmed 3
}

rejected_state() {
	local wrong left
	new_user rejected && new_operation --email "$EMAIL" || return 1
	wait_mail_code 1 || return 1
	wrong=$(other_code "$MAIL_CODE")
	for left in 4 3 2 1 0; do
		put_action confirm "{\"emailCode\":\"$wrong\"}"
		expect_error 422001
		assert_json .error.attemptsLeft "$left"
	done
	get_operation
	assert_json .data.status rejected
	assert_json .data.attemptsLeft 0
	assert_json .data.resendEmailAfter null
	put_action cancel
	expect_error 409003
	put_action confirm "{\"emailCode\":\"$MAIL_CODE\"}"
	expect_error 409003
	put_action resend
	expect_error 409003
	expect_operation rejected 0
}

expired_state() {
	local action
	new_totp_user expired && new_operation --email "$EMAIL" --otp --ttl 1 || return 1
	while (($(date +%s) < $(jq -r .expiresAt <<<"$CHALLENGE"))); do
		sleep 0.2
	done
	for action in confirm resend cancel cancel; do
		put_action "$action" "{\"emailCode\":\"123456\",\"otpCode\":\"$(totp_code "$TOTP_SECRET")\"}"
		expect_error 410001
	done
	get_operation
	assert_status 200
	assert_json .data.status expired
	assert_json .data.resendEmailAfter null
	assert_json .data.attemptsLeft "$MAX_ATTEMPTS"
}

# --- TOTP -------------------------------------------------------------------

# A code accepted once is refused on a new operation within the same step
# (422002, no attempt spent), but only when every other code is right.
totp_replay() {
	local code first
	new_totp_user replay && new_operation --otp || return 1
	first=$UUID
	avoid_step_end 3
	code=$(totp_code "$TOTP_SECRET")
	put_action confirm "{\"otpCode\":\"$code\"}"
	expect_success confirmed

	new_operation --otp || return 1
	put_action confirm "{\"otpCode\":\"$code\"}"
	expect_error 422002
	expect_operation pending "$MAX_ATTEMPTS"

	new_operation --email "$EMAIL" --otp || return 1
	wait_mail_code 1 || return 1
	put_action confirm "{\"emailCode\":\"$(other_code "$MAIL_CODE")\",\"otpCode\":\"$code\"}"
	HTTP_REQUEST+=" with a wrong emailCode beside the used otpCode"
	expect_error 422001
	assert_json .error.attemptsLeft 4
	put_action confirm "{\"emailCode\":\"$MAIL_CODE\",\"otpCode\":\"$code\"}"
	expect_error 422002
	expect_operation pending 4

	UUID=$first
	expect_operation confirmed "$MAX_ATTEMPTS"
}

totp_three_steps_ago() {
	local code
	new_totp_user old-otp && new_operation --otp || return 1
	code=$(totp_code "$TOTP_SECRET" "@$(($(date +%s) - 90))")
	put_action confirm "{\"otpCode\":\"$code\"}"
	expect_error 422001
	assert_json .error.attemptsLeft 4
	expect_operation pending 4
}

# totp_window = 1 accepts the step before and the step after the current one.
totp_window_edges() {
	new_totp_user previous-step && new_operation --otp || return 1
	avoid_step_end 3
	put_action confirm "{\"otpCode\":\"$(totp_code "$TOTP_SECRET" "@$(($(date +%s) - 30))")\"}"
	HTTP_REQUEST+=" with the previous step's code"
	expect_success confirmed

	new_totp_user next-step && new_operation --otp || return 1
	put_action confirm "{\"otpCode\":\"$(totp_code "$TOTP_SECRET" "@$(($(date +%s) + 30))")\"}"
	HTTP_REQUEST+=" with the next step's code"
	expect_success confirmed
}

# --- codes across resends ---------------------------------------------------

# Resends every operation in UUIDS of the current user once, after the
# latest resendEmailAfter among them.
resend_all() {
	local uuid after=0 value
	for uuid in "${UUIDS[@]}"; do
		UUID=$uuid
		get_operation
		value=$(jq -r .data.resendEmailAfter <<<"$HTTP_BODY")
		if [[ ! $value =~ ^[0-9]+$ ]]; then
			assert_fail "$HTTP_REQUEST: resendEmailAfter is '$value'"
			return 1
		fi
		((value > after)) && after=$value
	done
	wait_until "$after" $((4 * RESEND_COOLDOWN + 2)) || return 1
	for uuid in "${UUIDS[@]}"; do
		UUID=$uuid
		put_action resend
		assert_status 200 || return 1
	done
}

# Prints the code of mail NUMBER (1 = creation) to ADDRESS once it arrived.
mail_code_number() {
	local address=$1 number=$2
	mail_wait "$address" "$number" || return 1
	/usr/bin/python3 - "$USEROPS_MAILDIR" "$address" "$number" <<'EOF'
import email, email.policy, os, re, sys
maildir, address, number = sys.argv[1], sys.argv[2].lower(), int(sys.argv[3])
found = []
for folder in ("new", "cur"):
    path = os.path.join(maildir, folder)
    for name in os.listdir(path) if os.path.isdir(path) else []:
        file = os.path.join(path, name)
        with open(file, "rb") as handle:
            message = email.message_from_binary_file(handle, policy=email.policy.default)
        recipients = [r.strip().lower() for r in str(message.get("X-RcptTo", "")).split(",")]
        if address in recipients:
            found.append((os.stat(file).st_mtime_ns, name, message))
found.sort(key=lambda item: (item[0], item[1]))
text = found[number - 1][2].get_body(preferencelist=("plain",)).get_content()
match = re.search(r"(?<!\d)\d{6}(?!\d)", text)
if not match:
    sys.exit("no code in mail %d to %s" % (number, address))
print(match.group(0))
EOF
}

# Three operations of one user go through the same two resends. With
# accept_previous_code = yes the code mailed at creation is void after the
# second resend, and the codes of both resends are accepted. A fourth
# operation, resent once, still accepts the code mailed at creation.
codes_after_two_resends() {
	local -a UUIDS=() OPS=() ADDRESSES=()
	local index code
	new_user rotate || return 1
	for index in 0 1 2 3; do
		ADDRESSES+=("$(unique_id rotate)@example.com")
		new_operation --email "${ADDRESSES[$index]}" || return 1
		OPS+=("$UUID")
	done
	UUIDS=("${OPS[@]}")
	resend_all || return 1
	UUIDS=("${OPS[@]:0:3}")
	resend_all || return 1

	UUID=${OPS[0]}
	code=$(mail_code_number "${ADDRESSES[0]}" 1) || return 1
	mail_wait "${ADDRESSES[0]}" 3 || return 1
	put_action confirm "{\"emailCode\":\"$code\"}"
	HTTP_REQUEST+=" with the code mailed at creation"
	expect_error 422001
	assert_json .error.attemptsLeft 4

	UUID=${OPS[1]}
	code=$(mail_code_number "${ADDRESSES[1]}" 2) || return 1
	put_action confirm "{\"emailCode\":\"$code\"}"
	HTTP_REQUEST+=" with the code of the first resend"
	expect_success confirmed

	UUID=${OPS[2]}
	code=$(mail_code_number "${ADDRESSES[2]}" 3) || return 1
	put_action confirm "{\"emailCode\":\"$code\"}"
	HTTP_REQUEST+=" with the code of the second resend"
	expect_success confirmed

	UUID=${OPS[3]}
	code=$(mail_code_number "${ADDRESSES[3]}" 1) || return 1
	mail_wait "${ADDRESSES[3]}" 2 || return 1
	put_action confirm "{\"emailCode\":\"$code\"}"
	HTTP_REQUEST+=" with the code mailed at creation, after one resend"
	expect_success confirmed
}

# Wrong tries before and after a resend add up.
attempts_across_resend() {
	local -a UUIDS=()
	new_user attempts && new_operation --email "$EMAIL" || return 1
	UUIDS=("$UUID")
	wait_mail_code 1 || return 1
	put_action confirm "{\"emailCode\":\"$(other_code "$MAIL_CODE")\"}"
	expect_error 422001
	assert_json .error.attemptsLeft 4
	resend_all || return 1
	wait_mail_code 2 || return 1
	put_action confirm "{\"emailCode\":\"$(other_code "$MAIL_CODE")\"}"
	expect_error 422001
	assert_json .error.attemptsLeft 3
	expect_operation pending 3
	put_action confirm "{\"emailCode\":\"$MAIL_CODE\"}"
	expect_success confirmed
	expect_operation confirmed 3
}

# --- accept_previous_code = no, on a second front end -----------------------

# Sends METHOD PATH [BODY] to the second front end, as the current user and
# device, and stores the response as http_request does.
second_request() {
	local method=$1 path=$2
	local -a body=()
	if (($# > 2)); then
		body=(-H 'Content-Type: application/json' --data-binary "$3")
	fi
	HTTP_REQUEST="$method $path (accept_previous_code = no)"
	HTTP_STATUS=$(curl -sS --max-time 15 --unix-socket "$SECOND_DIR/http.sock" -X "$method" \
		-H "Authorization: Bearer $TOKEN" -H "Fingerprint: $FINGERPRINT" "${body[@]}" \
		-o "$ASSERT_TMP/body" -D "$ASSERT_TMP/all-headers" -w '%{http_code}' \
		"http://localhost$path") || HTTP_STATUS=000
	store_curl_response
}

# Starts lighttpd with userops-fcgi on a unix socket of its own, against the
# stack's database and secrets, with accept_previous_code = no. Sets
# SECOND_FAILURE to the reason and returns 1 when it cannot.
start_second_front_end() {
	local tries
	SECOND_DIR=$ASSERT_TMP/second
	mkdir -p "$SECOND_DIR/www"
	if ! command -v lighttpd >/dev/null; then
		SECOND_FAILURE="lighttpd is not installed"
		return 1
	fi
	sed 's/^accept_previous_code *=.*/accept_previous_code = no/' "$USEROPS_CONF" >"$SECOND_DIR/userops.conf"
	if ! grep -q '^accept_previous_code = no$' "$SECOND_DIR/userops.conf"; then
		SECOND_FAILURE="$USEROPS_CONF has no accept_previous_code line to change"
		return 1
	fi
	cat >"$SECOND_DIR/lighttpd.conf" <<EOF
server.modules = ("mod_fastcgi")
server.bind = "$SECOND_DIR/http.sock"
server.document-root = "$SECOND_DIR/www"
server.errorlog = "$SECOND_DIR/error.log"
fastcgi.server = ("/" => ((
	"bin-path" => "$USEROPS_BIN_DIR/userops-fcgi -c $SECOND_DIR/userops.conf",
	"socket" => "$SECOND_DIR/fcgi.sock",
	"check-local" => "disable",
	"max-procs" => 2,
)))
EOF
	lighttpd -D -f "$SECOND_DIR/lighttpd.conf" </dev/null >"$SECOND_DIR/stdout.log" 2>&1 &
	SECOND_PID=$!
	for ((tries = 0; tries < 100; tries++)); do
		if ! kill -0 "$SECOND_PID" 2>/dev/null; then
			SECOND_FAILURE="lighttpd exited at start: $(tail -q -n 3 "$SECOND_DIR/error.log" "$SECOND_DIR/stdout.log" 2>/dev/null | tr '\n' ' ')"
			SECOND_PID=
			return 1
		fi
		if [[ -S $SECOND_DIR/http.sock ]] &&
			[[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 --unix-socket "$SECOND_DIR/http.sock" \
				http://localhost/health) == 200 ]]; then
			return 0
		fi
		sleep 0.1
	done
	SECOND_FAILURE="the second front end did not answer GET /health within 10 s"
	stop_second_front_end
	return 1
}

# Stops the second lighttpd and any worker it leaves behind, by PID.
stop_second_front_end() {
	local workers pid tries
	[[ -n $SECOND_PID ]] || return 0
	workers=$(ps -o pid= --ppid "$SECOND_PID" 2>/dev/null || true)
	kill -TERM "$SECOND_PID" 2>/dev/null || true
	for ((tries = 0; tries < 100; tries++)); do
		kill -0 "$SECOND_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$SECOND_PID" 2>/dev/null || true
	wait "$SECOND_PID" 2>/dev/null || true
	for pid in $workers; do
		if kill -0 "$pid" 2>/dev/null &&
			tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$SECOND_DIR"; then
			kill -TERM "$pid" 2>/dev/null || true
		fi
	done
	SECOND_PID=
}

# With accept_previous_code = no a resend voids the code before it at once.
previous_code_void() {
	local -a ADDRESSES=()
	local index after=0 value code
	local -a OPS=()
	new_user no-previous || return 1
	for index in 0 1; do
		ADDRESSES+=("$(unique_id no-previous)@example.com")
		new_operation --email "${ADDRESSES[$index]}" || return 1
		OPS+=("$UUID")
		value=$(jq -r .resendEmailAfter <<<"$CHALLENGE")
		((value > after)) && after=$value
	done
	wait_until "$after" $((RESEND_COOLDOWN + 2)) || return 1
	for index in 0 1; do
		second_request PUT "/operations/${OPS[$index]}/resend"
		assert_status 200 || return 1
	done

	code=$(mail_code_number "${ADDRESSES[0]}" 1) || return 1
	mail_wait "${ADDRESSES[0]}" 2 || return 1
	second_request PUT "/operations/${OPS[0]}/confirm" "{\"emailCode\":\"$code\"}"
	HTTP_REQUEST+=" with the code mailed at creation"
	expect_error 422001
	assert_json .error.attemptsLeft 4

	UUID=${OPS[1]}
	code=$(mail_code_number "${ADDRESSES[1]}" 2) || return 1
	second_request PUT "/operations/${OPS[1]}/confirm" "{\"emailCode\":\"$code\"}"
	HTTP_REQUEST+=" with the code of the resend"
	expect_success confirmed
}

run_previous_code_void() {
	if ! start_second_front_end; then
		stop_second_front_end
		skip_case "previous code void after resend" "cannot start a second front end: $SECOND_FAILURE"
		return 0
	fi
	test_case "previous code void after resend" previous_code_void
	stop_second_front_end
}

trap stop_second_front_end EXIT

test_case "GET pending e-mail operation" get_pending_email
test_case "GET pending TOTP operation" get_pending_otp
test_case "GET pending two-factor operation" get_pending_both
test_case "emailHint of short local parts" email_hint_short
test_case "cancel twice 200" cancel_twice
test_case "confirm e-mail code 200" confirm_email
test_case "confirm lone code 200" confirm_lone_code
test_case "confirm both factors" confirm_both_factors
test_case "rejected operation final" rejected_state
test_case "expired operation final" expired_state
test_case "TOTP replay 422002" totp_replay
test_case "TOTP three steps ago 422001" totp_three_steps_ago
test_case "TOTP window edges accepted" totp_window_edges
if ((RESEND_COOLDOWN <= MAX_TEST_COOLDOWN)); then
	test_case "resend answer fields" resend_success
	test_case "codes after two resends" codes_after_two_resends
	test_case "attempts across resend" attempts_across_resend
	run_previous_code_void
else
	for name in "resend answer fields" "codes after two resends" "attempts across resend" \
		"previous code void after resend"; do
		skip_case "$name" "resend_cooldown is $RESEND_COOLDOWN s, above $MAX_TEST_COOLDOWN s"
	done
fi
test_finish
