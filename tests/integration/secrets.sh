#!/usr/bin/env bash
# Secrets at rest and in the logs. No table stores a TOTP secret in clear
# text. After a full confirmation flow no log contains the bearer token, a
# code (mailed, TOTP or wrong), the whole Fingerprint or the whole address,
# but the request line itself is logged under its X-Request-Id.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/assert.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/assert.sh"
# shellcheck source=SCRIPTDIR/../lib/operations.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/operations.sh"

# Prints the log files that the stack's programs write. The workers' stderr
# and lighttpd's own lines share USEROPS_ERROR_LOG (see tests/lib/stack.sh).
service_logs() {
	local log
	for log in "$USEROPS_ERROR_LOG" "${USEROPS_ERROR_LOG_STRICT:-}" "$USEROPS_MAILER_LOG"; do
		if [[ -f $log ]]; then
			echo "$log"
		fi
	done
}

# Prints every row of every table in the userops database, each column as
# upper-case hex, so that bytes stored in any column type can be searched.
db_hex_rows() {
	local table columns
	for table in $(db_query "SHOW TABLES"); do
		columns=$(db_query "SELECT GROUP_CONCAT(CONCAT('HEX(\`', column_name, '\`)') SEPARATOR ', ')
			FROM information_schema.columns
			WHERE table_schema = 'userops' AND table_name = '$table'")
		db_query "SELECT CONCAT_WS(' ', $columns) FROM \`$table\`" | sed "s/^/$table: /"
	done
}

# Prints a random code of 6 digits that differs from each argument.
random_code_except() {
	local code
	while :; do
		code=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
		code=$(printf '%06d' $((code % 1000000)))
		if [[ " $* " != *" $code "* ]]; then
			echo "$code"
			return
		fi
	done
}

totp_secret_not_in_database() {
	local user secret secret_hex rows
	user=$(unique_id secrets-user)
	secret=$(new_totp_secret)
	enroll_totp "$user" "$secret" || assert_fail "userops-ctl totp-enroll failed" || return 1
	rows=$(db_query "SELECT COUNT(*) FROM totp_enrolments WHERE user_id = '$user'")
	assert_equal "totp_enrolments rows for $user" 1 "$rows" || return 1

	db_dump >"$ASSERT_TMP/dump.sql" || assert_fail "mariadb-dump failed" || return 1
	if grep -aqiF -- "$secret" "$ASSERT_TMP/dump.sql"; then
		assert_fail "the database dump contains the base32 TOTP secret of $user"
	fi

	# The decoded secret, as hex, searched in the hex of every column.
	secret_hex=$(printf '%s' "$secret" | base32 -d | od -An -v -tx1 | tr -d ' \n' | tr a-f A-F)
	db_hex_rows >"$ASSERT_TMP/hex-rows" || assert_fail "reading every table as hex failed" || return 1
	if grep -qF -- "$secret_hex" "$ASSERT_TMP/hex-rows"; then
		assert_fail "a column holds the raw TOTP secret bytes of $user: $(grep -F -- "$secret_hex" "$ASSERT_TMP/hex-rows" | cut -d: -f1 | head -n 1)"
	fi
	# And the base32 text stored in a column of any type.
	if grep -qF -- "$(printf '%s' "$secret" | od -An -v -tx1 | tr -d ' \n' | tr a-f A-F)" "$ASSERT_TMP/hex-rows"; then
		assert_fail "a column holds the base32 TOTP secret of $user"
	fi
}

# Confirms an operation with both factors after a wrong mailed code and a
# wrong TOTP code, then checks that no log line contains any of the secrets
# that passed through the service.
flow_leaves_no_secrets_in_logs() {
	local user fingerprint email secret token challenge uuid mailed totp
	local wrong_mailed wrong_totp log value line i
	local -a secrets=() labels=() sent_totp=() logs=()
	user=$(unique_id secrets-user)
	fingerprint="device-$(unique_id secrets)-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
	email="$(unique_id secrets)@example.com"
	secret=$(new_totp_secret)
	enroll_totp "$user" "$secret" || assert_fail "userops-ctl totp-enroll failed" || return 1
	token=$(mint_token "$user") || assert_fail "userops-ctl issue-token failed" || return 1
	challenge=$(create_operation --user "$user" --fingerprint "$fingerprint" --email "$email" \
		--otp --kind withdrawal --param amount=100.00) ||
		assert_fail "userops-ctl create-operation failed" || return 1
	uuid=$(jq -r .uuid <<<"$challenge")
	mail_wait "$email" 1 || return 1
	mailed=$(mail_latest_code "$email") || assert_fail "no code in the mail to $email" || return 1

	totp=$(totp_code "$secret")
	sent_totp+=("$totp")
	wrong_mailed=$(random_code_except "$mailed" "$totp")
	http_request PUT "/operations/$uuid/confirm" -t "$token" -f "$fingerprint" \
		-d "$(jq -cn --arg e "$wrong_mailed" --arg o "$totp" '{emailCode: $e, otpCode: $o}')"
	assert_error 422001

	totp=$(totp_code "$secret")
	sent_totp+=("$totp")
	wrong_totp=$(random_code_except "$mailed" "$wrong_mailed" "${sent_totp[@]}" \
		"$(totp_code "$secret" "now - 30 seconds")" "$(totp_code "$secret" "now + 30 seconds")")
	http_request PUT "/operations/$uuid/confirm" -t "$token" -f "$fingerprint" \
		-d "$(jq -cn --arg e "$mailed" --arg o "$wrong_totp" '{emailCode: $e, otpCode: $o}')"
	assert_error 422001

	totp=$(totp_code "$secret")
	sent_totp+=("$totp")
	http_request PUT "/operations/$uuid/confirm" -t "$token" -f "$fingerprint" \
		-d "$(jq -cn --arg e "$mailed" --arg o "$totp" '{emailCode: $e, otpCode: $o}')"
	assert_status 200
	assert_json .data.status confirmed

	secrets=("$token" "${token##*.}" "$secret" "$fingerprint" "$email")
	labels=("the bearer token" "the token signature" "the TOTP secret" "the whole Fingerprint" "the whole address")
	mapfile -t logs < <(service_logs)
	for log in "${logs[@]}"; do
		for ((i = 0; i < ${#secrets[@]}; i++)); do
			if grep -qF -- "${secrets[i]}" "$log"; then
				assert_fail "$(basename "$log") contains ${labels[i]}: $(grep -F -- "${secrets[i]}" "$log" | head -n 1 | cut -c1-160)"
			fi
		done
		# A code counts only as a number of its own, not inside a longer
		# run of letters and digits such as a timestamp or a request id.
		for value in "$mailed" "$wrong_mailed" "$wrong_totp" "${sent_totp[@]}"; do
			line=$(grep -aE "(^|[^0-9A-Za-z])$value([^0-9A-Za-z]|\$)" "$log" | head -n 1 || true)
			if [[ -n $line ]]; then
				assert_fail "$(basename "$log") contains the code $value: ${line:0:160}"
			fi
		done
	done
}

# Waits up to 2 s for a log line containing PATTERN, and ALSO when given,
# and prints the first one.
wait_log_line() {
	local pattern=$1 also=${2:-} tries line
	local -a logs=()
	mapfile -t logs < <(service_logs)
	for ((tries = 0; tries < 20; tries++)); do
		line=$(grep -hF -- "$pattern" "${logs[@]}" | grep -F -- "$also" | head -n 1 || true)
		if [[ -n $line ]]; then
			echo "$line"
			return 0
		fi
		sleep 0.1
	done
	return 1
}

# Checks that LINE contains the pair KEY=VALUE as a whole word.
assert_log_pair() {
	local line=$1 pair=$2
	if [[ " $line " != *" $pair "* ]]; then
		assert_fail "the request log line lacks $pair: $line"
	fi
}

request_line_logged_with_id() {
	local user fingerprint token uuid request_id line
	user=$(unique_id secrets-user)
	fingerprint=$(unique_id secrets-device)
	token=$(mint_token "$user") || assert_fail "userops-ctl issue-token failed" || return 1
	uuid=$(create_operation --user "$user" --fingerprint "$fingerprint" \
		--email "$(unique_id secrets)@example.com" | jq -r .uuid) ||
		assert_fail "userops-ctl create-operation failed" || return 1
	request_id="test-secrets-123-$$-$RANDOM"

	http_request GET "/operations/$uuid" -t "$token" -f "$fingerprint" -H "X-Request-Id: $request_id"
	assert_status 200
	assert_header X-Request-Id "$request_id"
	line=$(wait_log_line "request_id=$request_id" method=) ||
		assert_fail "no log line contains request_id=$request_id (searched: $(service_logs | xargs -n 1 basename | tr '\n' ' '))" ||
		return 1
	assert_log_pair "$line" "request_id=$request_id"
	assert_log_pair "$line" "method=GET"
	assert_log_pair "$line" "status=200"
	assert_log_pair "$line" "user=$user"
	assert_log_pair "$line" "operation=$uuid"
	if [[ $line != *duration* ]]; then
		assert_fail "the request log line has no duration: $line"
	fi

	request_id="test-secrets-123-$$-$RANDOM"
	http_request PUT "/operations/$uuid/cancel" -t "$token" -f "$fingerprint" \
		-H "X-Request-Id: $request_id" -d '{"broken":'
	assert_error 400001
	line=$(wait_log_line "request_id=$request_id" status=400 || true)
	if [[ -z $line ]]; then
		assert_fail "no request log line with status=400 holds request_id=$request_id"
	else
		assert_log_pair "$line" "code=400001"
	fi
}

test_case "TOTP secret absent from database" totp_secret_not_in_database
test_case "full flow leaves no secrets in logs" flow_leaves_no_secrets_in_logs
test_case "request line logged with its id" request_line_logged_with_id
test_finish
