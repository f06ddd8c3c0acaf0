#!/usr/bin/env bash
# Which mailed codes still confirm an operation after one or two resends.
# With accept_previous_code = no (the second front end, USEROPS_URL_STRICT)
# only the newest code does. With yes (USEROPS_URL) the newest and the one
# before it do, and no older one. Each code is tried on an operation of its
# own. All operations go through the same steps at the same time: create,
# first mail, resend after the cooldown, second mail, and for those with two
# resends a second resend after the doubled cooldown and a third mail. The
# resends need a short [operations] resend_cooldown (tests/run-all sets 3 s);
# with a longer one every case is skipped.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/assert.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/assert.sh"
# shellcheck source=SCRIPTDIR/../lib/operations.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/operations.sh"

RESEND_COOLDOWN=${USEROPS_RESEND_COOLDOWN:-60}
# Maximum cooldown, in seconds, for which the resend steps wait.
MAX_TEST_COOLDOWN=5
MAX_ATTEMPTS=5

# One row per operation: its front end, how many resends it goes through,
# which code it is confirmed with, and the expected HTTP status or error
# code. Code 0 is the one mailed at creation, code N that of the N-th resend.
PLAN=(
	"strict 1 0 422001"
	"strict 1 1 200"
	"strict 2 0 422001"
	"strict 2 1 422001"
	"strict 2 2 200"
	"default 1 0 200"
	"default 1 1 200"
	"default 2 0 422001"
	"default 2 1 200"
	"default 2 2 200"
)

# Per operation, keyed by its row in PLAN: the user's token and device, the
# address, the uuid, the resendEmailAfter last returned, the mailed codes
# separated by spaces, and the first setup step that failed.
declare -A OP_TOKEN OP_FINGERPRINT OP_EMAIL OP_UUID OP_AFTER OP_CODES OP_BROKEN
OPERATIONS=()

# Prints the base URL of FRONT_END (strict or default).
front_end_url() {
	if [[ $1 == strict ]]; then
		echo "$USEROPS_URL_STRICT"
	else
		echo "$USEROPS_URL"
	fi
}

# Prints the configuration file whose userops-ctl creates operations for
# FRONT_END.
front_end_conf() {
	if [[ $1 == strict ]]; then
		echo "$USEROPS_CONF_STRICT"
	else
		echo "$USEROPS_CONF"
	fi
}

# Marks operation KEY as broken by the setup step WHY, unless an earlier
# step already did, and fails the current case.
break_operation() {
	local key=$1 why=$2
	if [[ -z ${OP_BROKEN[$key]:-} ]]; then
		OP_BROKEN[$key]=$why
	fi
	assert_fail "$key: $why"
}

# Sends METHOD PATH for operation KEY through its front end, with its token
# and device, and with BODY when given.
op_request() {
	local key=$1 method=$2 path=$3 url
	url=$(front_end_url "${key%% *}")
	# http_request reads USEROPS_URL, which this local hides for the call.
	local USEROPS_URL=$url
	if (($# > 3)); then
		http_request "$method" "$path" -t "${OP_TOKEN[$key]}" -f "${OP_FINGERPRINT[$key]}" -d "$4"
	else
		http_request "$method" "$path" -t "${OP_TOKEN[$key]}" -f "${OP_FINGERPRINT[$key]}"
	fi
}

# Creates a user and an e-mail operation for every row of PLAN.
create_operations() {
	local key front_end user challenge
	for key in "${OPERATIONS[@]}"; do
		front_end=${key%% *}
		user=$(unique_id previous-user)
		OP_FINGERPRINT[$key]=$(unique_id previous-device)
		OP_EMAIL[$key]="$(unique_id previous)@example.com"
		OP_CODES[$key]=
		if ! OP_TOKEN[$key]=$(mint_token "$user"); then
			break_operation "$key" "userops-ctl issue-token failed"
			continue
		fi
		if ! challenge=$(USEROPS_CTL_CONF=$(front_end_conf "$front_end") create_operation \
			--user "$user" --fingerprint "${OP_FINGERPRINT[$key]}" \
			--email "${OP_EMAIL[$key]}" --kind withdrawal); then
			break_operation "$key" "userops-ctl create-operation failed"
			continue
		fi
		OP_UUID[$key]=$(jq -r .uuid <<<"$challenge")
		OP_AFTER[$key]=$(jq -r .resendEmailAfter <<<"$challenge")
	done
}

# Waits for mail number COUNT to each operation in KEY... and appends its
# code to the operation's codes.
collect_codes() {
	local count=$1 key code
	shift
	for key in "$@"; do
		[[ -z ${OP_BROKEN[$key]:-} ]] || continue
		if ! mail_wait "${OP_EMAIL[$key]}" "$count"; then
			break_operation "$key" "mail $count did not arrive"
			continue
		fi
		if ! code=$(mail_latest_code "${OP_EMAIL[$key]}"); then
			break_operation "$key" "no code in mail $count"
			continue
		fi
		OP_CODES[$key]+="$code "
	done
}

# Waits until the latest resendEmailAfter of the operations KEY..., which
# must lie at most twice the cooldown ahead, then resends each of them and
# stores its new resendEmailAfter.
resend_all() {
	local key after latest=0 limit=$((4 * RESEND_COOLDOWN + 2))
	for key in "$@"; do
		[[ -z ${OP_BROKEN[$key]:-} ]] || continue
		after=${OP_AFTER[$key]}
		if [[ ! $after =~ ^[0-9]+$ ]] || ((after - $(date +%s) > limit)); then
			break_operation "$key" "resendEmailAfter is '$after', not within $limit s of now"
			continue
		fi
		((after > latest)) && latest=$after
	done
	while (($(date +%s) < latest)); do
		sleep 0.2
	done
	for key in "$@"; do
		[[ -z ${OP_BROKEN[$key]:-} ]] || continue
		op_request "$key" PUT "/operations/${OP_UUID[$key]}/resend"
		if [[ $HTTP_STATUS != 200 ]]; then
			break_operation "$key" "resend returned $HTTP_STATUS: ${HTTP_BODY:0:200}"
			continue
		fi
		OP_AFTER[$key]=$(jq -r .resendEmailAfter <<<"$HTTP_BODY")
	done
}

# Prints the rows of PLAN that go through at least COUNT resends.
operations_with_resends() {
	local key resends
	for key in "${OPERATIONS[@]}"; do
		read -r _ resends _ _ <<<"$key"
		if ((resends >= $1)); then
			echo "$key"
		fi
	done
}

first_mails() {
	collect_codes 1 "${OPERATIONS[@]}"
}

first_resends() {
	resend_all "${OPERATIONS[@]}"
	collect_codes 2 "${OPERATIONS[@]}"
}

second_resends() {
	local -a keys=()
	mapfile -t keys < <(operations_with_resends 2)
	resend_all "${keys[@]}"
	collect_codes 3 "${keys[@]}"
}

# Confirms the operation of row KEY with its code number INDEX and expects
# EXPECTED: 200 and confirmed, or 422001 with one attempt used and the
# operation still pending.
confirm_with_code() {
	local key=$1 index=$2 expected=$3 uuid code newest
	local -a codes=()
	if [[ -n ${OP_BROKEN[$key]:-} ]]; then
		assert_fail "setup failed: ${OP_BROKEN[$key]}"
		return 1
	fi
	uuid=${OP_UUID[$key]}
	read -r -a codes <<<"${OP_CODES[$key]}"
	code=${codes[index]:-}
	newest=${codes[-1]:-}
	if [[ -z $code ]]; then
		assert_fail "code $index of $key was never mailed"
		return 1
	fi
	if [[ $expected != 200 && $code == "$newest" ]]; then
		# About one chance in a million: the older code equals the newest.
		echo "     note: code $index equals the newest code, so it must confirm"
		expected=200
	fi

	op_request "$key" PUT "/operations/$uuid/confirm" "$(jq -cn --arg c "$code" '{emailCode: $c}')"
	if [[ $expected == 200 ]]; then
		assert_status 200 || return 1
		assert_json .data.uuid "$uuid"
		assert_json .data.status confirmed
		return
	fi
	assert_error "$expected" || return 1
	assert_json .error.attemptsLeft $((MAX_ATTEMPTS - 1))
	op_request "$key" GET "/operations/$uuid"
	assert_status 200 || return 1
	assert_json .data.status pending
	assert_json .data.attemptsLeft $((MAX_ATTEMPTS - 1))
}

# Prints the name of the case for row KEY.
case_name() {
	local front_end resends index expected setting code_name outcome
	read -r front_end resends index expected <<<"$1"
	setting="accept_previous_code = yes"
	[[ $front_end == strict ]] && setting="accept_previous_code = no"
	if ((index == 0)); then
		code_name="creation code"
	else
		code_name="code of resend $index"
	fi
	outcome=accepted
	[[ $expected != 200 ]] && outcome="refused $expected"
	if ((resends == 1)); then
		echo "$setting: $code_name after 1 resend $outcome"
	else
		echo "$setting: $code_name after $resends resends $outcome"
	fi
}

main() {
	local key front_end resends index expected
	if ((RESEND_COOLDOWN > MAX_TEST_COOLDOWN)); then
		for key in "${PLAN[@]}"; do
			skip_case "$(case_name "$key")" "resend_cooldown is $RESEND_COOLDOWN s, above $MAX_TEST_COOLDOWN s"
		done
		test_finish
	fi
	for key in "${PLAN[@]}"; do
		if [[ $key == strict* && -z ${USEROPS_URL_STRICT:-} ]]; then
			skip_case "$(case_name "$key")" "stack.env names no USEROPS_URL_STRICT (start the stack with STACK_STRICT=yes)"
			continue
		fi
		OPERATIONS+=("$key")
	done

	test_case "operations created" create_operations
	test_case "first codes mailed" first_mails
	test_case "first resends and mails" first_resends
	test_case "second resends and mails" second_resends
	for key in "${OPERATIONS[@]}"; do
		read -r front_end resends index expected <<<"$key"
		test_case "$(case_name "$key")" confirm_with_code "$key" "$index" "$expected"
	done
	test_finish
}

main
