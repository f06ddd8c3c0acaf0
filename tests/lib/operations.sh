# shellcheck shell=bash
# Helpers that several integration test files share: a user with a token and
# device, an operation created with userops-ctl, requests on it as that user,
# mailed codes, waits on resendEmailAfter and the TOTP step, and queries of
# the stack's database. A test file sources this file after
# tests/lib/assert.sh, whose functions these call.

# The test files read what these helpers set.
# shellcheck disable=SC2034

# The current user, device, address, token and TOTP secret, the current
# operation's uuid and challenge, and the last mailed code.
USER_ID=
FINGERPRINT=
EMAIL=
TOKEN=
TOTP_SECRET=
UUID=
CHALLENGE=
MAIL_CODE=

# Prints a skipped case; run-all counts only passed and failed ones.
skip_case() {
	echo "skip $ASSERT_FILE: $1: $2"
}

# Sets USER_ID, FINGERPRINT, EMAIL and TOKEN for a new user named after PREFIX.
new_user() {
	USER_ID=$(unique_id "$1-user")
	FINGERPRINT=$(unique_id "$1-device")
	EMAIL="$(unique_id "$1")@example.com"
	TOKEN=$(mint_token "$USER_ID") || assert_fail "userops-ctl issue-token --user $USER_ID failed"
}

# Sets up a new user named after PREFIX as new_user does and enrols it for
# TOTP with a new secret in TOTP_SECRET.
new_totp_user() {
	new_user "$1" || return 1
	TOTP_SECRET=$(new_totp_secret)
	enroll_totp "$USER_ID" "$TOTP_SECRET" || assert_fail "userops-ctl totp-enroll --user $USER_ID failed"
}

# Creates an operation of the current user with the extra ARG... of
# create-operation and sets UUID and CHALLENGE.
new_operation() {
	CHALLENGE=$(create_operation --user "$USER_ID" --fingerprint "$FINGERPRINT" "$@") ||
		assert_fail "userops-ctl create-operation $* failed" || return 1
	UUID=$(jq -r .uuid <<<"$CHALLENGE")
}

# Waits for the COUNT-th mail to ADDRESS (default EMAIL) and stores its code
# in MAIL_CODE.
wait_mail_code() {
	local address=${2:-$EMAIL}
	mail_wait "$address" "$1" || return 1
	MAIL_CODE=$(mail_latest_code "$address") || assert_fail "no code in mail $1 to $address"
}

# Prints a six-digit code that differs from every CODE given.
other_code() {
	local candidate code taken
	for candidate in 000000 111111 222222 333333 444444 555555 666666; do
		taken=no
		for code in "$@"; do
			[[ $candidate == "$code" ]] && taken=yes
		done
		if [[ $taken == no ]]; then
			echo "$candidate"
			return 0
		fi
	done
}

# Asserts the error body of CODE and a non-empty message.
expect_error() {
	assert_error "$1" || return 1
	assert_json '.error.message | type == "string" and length > 0' true
}

# Sends PUT /operations/UUID/ACTION as the current user and device, with
# BODY when given.
put_action() {
	if (($# > 1)); then
		http_request PUT "/operations/$UUID/$1" -t "$TOKEN" -f "$FINGERPRINT" -d "$2"
	else
		http_request PUT "/operations/$UUID/$1" -t "$TOKEN" -f "$FINGERPRINT"
	fi
}

get_operation() {
	http_request GET "/operations/$UUID" -t "$TOKEN" -f "$FINGERPRINT"
}

# Asserts that GET of the current operation shows STATUS and ATTEMPTS left.
expect_operation() {
	get_operation
	assert_status 200 || return 1
	assert_json .data.status "$1"
	assert_json .data.attemptsLeft "$2"
}

# Stores the response that curl wrote to ASSERT_TMP/body and
# ASSERT_TMP/all-headers as http_request does: the body in HTTP_BODY and the
# final header block, CR removed, in HTTP_HEADERS_FILE. The caller sets
# HTTP_REQUEST and HTTP_STATUS.
store_curl_response() {
	HTTP_BODY=$(cat "$ASSERT_TMP/body" 2>/dev/null || true)
	tr -d '\r' <"$ASSERT_TMP/all-headers" |
		awk '/^HTTP\// { block = "" } { block = block $0 "\n" } END { printf "%s", block }' \
			>"$HTTP_HEADERS_FILE"
}

# Waits until the Unix time AFTER (a resendEmailAfter), which must lie at
# most LIMIT seconds ahead.
wait_until() {
	local after=$1 limit=$2
	if [[ ! $after =~ ^[0-9]+$ ]] || ((after - $(date +%s) > limit)); then
		assert_fail "resendEmailAfter is '$after', not within $limit s of now"
		return 1
	fi
	while (($(date +%s) < after)); do
		sleep 0.2
	done
}

# Waits, when the current TOTP step ends within SECONDS, for the next one, so
# that the codes computed next stay in the step that the service uses.
avoid_step_end() {
	local now
	now=$(date +%s)
	if ((30 - now % 30 <= $1)); then
		sleep $((30 - now % 30))
	fi
}

# Runs SQL in the userops database as the MariaDB root user, over the
# stack's socket (unix_socket authentication, as tests/lib/stack.sh does).
db_query() {
	mariadb --no-defaults --socket="$USEROPS_DB_SOCKET" -u root --batch --skip-column-names \
		userops -e "$1"
}

# Prints the whole userops database as SQL, binary columns as raw bytes.
db_dump() {
	mariadb-dump --no-defaults --socket="$USEROPS_DB_SOCKET" -u root \
		--skip-extended-insert --skip-comments userops
}
