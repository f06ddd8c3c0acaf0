#!/usr/bin/env bash
# GET /internal/events while operations end concurrently: 200 operations are
# confirmed by mailed code, cancelled by the user or the service, or expired
# by `userops-ctl expire`, by background workers at once, while a follower
# pages through the feed. Every operation must appear exactly once with its
# final status, ids must strictly increase, a second read of the feed must
# match the follower's, and a follower starting from a middle id must see
# exactly the rest.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/assert.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/assert.sh"
# shellcheck source=SCRIPTDIR/../lib/operations.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/operations.sh"
# sort, join and comm must agree on one collation.
export LC_ALL=C

# Operations per outcome; 200 in all.
CONFIRMED=70
USER_CANCELLED=35
SERVICE_CANCELLED=35
EXPIRED=60
# Concurrent POST workers while creating, and events per follower request
# (small, so that the follower pages many times).
CREATE_WORKERS=4
FOLLOW_LIMIT=17
# Seconds the follower may run in all.
FOLLOW_TIMEOUT=60

SERVICE=$(unique_id ledger)
SERVICE_TOKEN=$(mint_service_token "$SERVICE" "operations:write operations:read")
WORK=$ASSERT_TMP/events
mkdir -p "$WORK"
# The feed's lastId before this file's operations, where the follower starts.
START_ID=

# Prints one page of the feed after AFTER, at most LIMIT events, or fails.
events_page() {
	curl -sS --fail --max-time 15 -H "Authorization: Bearer $SERVICE_TOKEN" \
		"$USEROPS_URL/internal/events?after=$1&limit=$2"
}

# Pages through the feed from AFTER to its end and writes each event, one
# compact JSON object a line, to FILE.
read_feed() {
	local after=$1 file=$2 page count pages
	: >"$file"
	for ((pages = 0; pages < 10000; pages++)); do
		page=$(events_page "$after" 1000) || return 1
		jq -c '.data.events[]' <<<"$page" >>"$file"
		count=$(jq '.data.events | length' <<<"$page")
		after=$(jq -r .data.lastId <<<"$page")
		((count == 1000)) || break
	done
	echo "$after"
}

# Follows the feed from AFTER in pages of FOLLOW_LIMIT, appending events to
# FILE, until STOP_FILE exists and a page comes back empty, or FOLLOW_TIMEOUT
# passes. A failed request is written to FILE.errors and retried.
follow_feed() {
	local after=$1 file=$2 stop_file=$3 deadline page count
	deadline=$(($(date +%s) + FOLLOW_TIMEOUT))
	: >"$file"
	while (($(date +%s) < deadline)); do
		if ! page=$(events_page "$after" "$FOLLOW_LIMIT" 2>>"$file.errors"); then
			echo "request after=$after failed" >>"$file.errors"
			sleep 0.2
			continue
		fi
		jq -c '.data.events[]' <<<"$page" >>"$file"
		count=$(jq '.data.events | length' <<<"$page")
		after=$(jq -r .data.lastId <<<"$page")
		if ((count == 0)); then
			[[ -e $stop_file ]] && return 0
			sleep 0.1
		fi
	done
	echo "follower stopped after $FOLLOW_TIMEOUT s" >>"$file.errors"
}

# Creates the operations listed in FILE ("KIND BODY" lines) with POST and
# writes "uuid KIND" lines to FILE.created, and failures to FILE.errors.
create_worker() {
	local file=$1 kind body answer
	: >"$file.created"
	while read -r kind body; do
		if answer=$(curl -sS --fail --max-time 15 -X POST -H "Authorization: Bearer $SERVICE_TOKEN" \
			-H 'Content-Type: application/json' --data-binary "$body" \
			"$USEROPS_URL/internal/operations" 2>>"$file.errors"); then
			echo "$(jq -r .uuid <<<"$answer") $kind" >>"$file.created"
		else
			echo "POST $kind failed" >>"$file.errors"
		fi
	done <"$file"
}

# Sends PUT PATH_FORMAT (with %s for the uuid) for each "uuid ..." line of
# FILE with the curl options that follow, and writes "uuid STATUS" lines to
# FILE.done. A line's second word, when it is not a kind, is the mailed code.
action_worker() {
	local file=$1 path_format=$2 uuid second status body
	shift 2
	: >"$file.done"
	while read -r uuid second; do
		body='{}'
		if [[ $second =~ ^[0-9]+$ ]]; then
			body="{\"emailCode\":\"$second\"}"
		fi
		# printf fills the uuid into the path format; the format is ours.
		# shellcheck disable=SC2059
		status=$(curl -sS --max-time 15 -X PUT -H 'Content-Type: application/json' \
			--data-binary "$body" -o /dev/null -w '%{http_code}' "$@" \
			"$USEROPS_URL$(printf "$path_format" "$uuid")" 2>/dev/null) || status=000
		echo "$uuid $status" >>"$file.done"
	done <"$file"
}

# Prints "ADDRESS CODE" for the newest message to each address under
# PREFIX in the Maildir, in one pass over it.
mail_codes() {
	/usr/bin/python3 - "$USEROPS_MAILDIR" "$ASSERT_CODE_LENGTH" "$1" <<'EOF'
import email
import email.policy
import os
import re
import sys

maildir, length, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3].lower()
newest = {}
for folder in ("new", "cur"):
    path = os.path.join(maildir, folder)
    for name in os.listdir(path) if os.path.isdir(path) else []:
        file = os.path.join(path, name)
        with open(file, "rb") as handle:
            message = email.message_from_binary_file(handle, policy=email.policy.default)
        for recipient in str(message.get("X-RcptTo", "")).split(","):
            recipient = recipient.strip().lower()
            if not recipient.startswith(prefix):
                continue
            stamp = (os.stat(file).st_mtime_ns, name)
            if recipient not in newest or newest[recipient][0] < stamp:
                newest[recipient] = (stamp, message)
for recipient, (_, message) in sorted(newest.items()):
    part = message.get_body(preferencelist=("plain",))
    text = part.get_content() if part is not None else ""
    match = re.search(r"^[ \t]*(\d{%d})[ \t]*$" % length, text, re.MULTILINE)
    if match:
        print(recipient, match.group(1))
EOF
}

# Writes the create bodies, "KIND BODY" a line, spread over the worker files.
write_create_lists() {
	local index kind body worker=0 total=0
	local -a kinds=()
	for ((index = 0; index < EXPIRED; index++)); do kinds+=(expire); done
	for ((index = 0; index < CONFIRMED; index++)); do kinds+=(confirm); done
	for ((index = 0; index < USER_CANCELLED; index++)); do kinds+=(user-cancel); done
	for ((index = 0; index < SERVICE_CANCELLED; index++)); do kinds+=(service-cancel); done
	for ((index = 0; index < CREATE_WORKERS; index++)); do
		: >"$WORK/create-$index"
	done
	for kind in "${kinds[@]}"; do
		case $kind in
		expire)
			body=$(jq -cn --arg u "$USER_ID" --arg f "$FINGERPRINT" \
				'{userId: $u, fingerprint: $f, otp: true, kind: "events-expire", ttl: 1}') ;;
		confirm)
			body=$(jq -cn --arg u "$USER_ID" --arg f "$FINGERPRINT" \
				--arg e "$MAIL_PREFIX$total@example.com" \
				'{userId: $u, fingerprint: $f, email: $e, kind: "events-confirm"}') ;;
		*)
			body=$(jq -cn --arg u "$USER_ID" --arg f "$FINGERPRINT" --arg k "events-$kind" \
				'{userId: $u, fingerprint: $f, otp: true, kind: $k}') ;;
		esac
		# The expiring ones go first, so that their second passes before the sweep.
		echo "$kind $body" >>"$WORK/create-$worker"
		worker=$(((worker + 1) % CREATE_WORKERS))
		total=$((total + 1))
	done
}

# Creates the 200 operations and writes WORK/created ("uuid KIND" lines).
create_operations() {
	local index pid
	local -a pids=()
	new_totp_user events || return 1
	MAIL_PREFIX="$(unique_id events-mail)-"
	MAIL_PREFIX=${MAIL_PREFIX,,}
	write_create_lists
	for ((index = 0; index < CREATE_WORKERS; index++)); do
		create_worker "$WORK/create-$index" &
		pids+=($!)
	done
	for pid in "${pids[@]}"; do
		wait "$pid" || true
	done
	cat "$WORK"/create-*.created >"$WORK/created"
	cat "$WORK"/create-*.errors >"$WORK/create-errors" 2>/dev/null || true
	assert_equal "create failures" '' "$(head -c 300 "$WORK/create-errors")"
	assert_equal "operations created" $((CONFIRMED + USER_CANCELLED + SERVICE_CANCELLED + EXPIRED)) \
		"$(wc -l <"$WORK/created")"
}

# Pairs each operation to confirm with its mailed code in WORK/confirm
# ("uuid CODE" lines). Each has an address of its own, and the database
# gives the operation of each address.
collect_codes() {
	local tries count
	for ((tries = 0; tries < 150; tries++)); do
		mail_codes "$MAIL_PREFIX" >"$WORK/codes"
		count=$(wc -l <"$WORK/codes")
		((count >= CONFIRMED)) && break
		sleep 0.2
	done
	assert_equal "code mails arrived within 30 s" "$CONFIRMED" "$count" || return 1
	# The address of each operation is in the database; join on it.
	db_query "SELECT LOWER(CONCAT_WS('-', HEX(SUBSTR(uuid, 1, 4)), HEX(SUBSTR(uuid, 5, 2)),
			HEX(SUBSTR(uuid, 7, 2)), HEX(SUBSTR(uuid, 9, 2)), HEX(SUBSTR(uuid, 11, 6)))), LOWER(email)
		FROM operations WHERE user_id = '$USER_ID' AND email IS NOT NULL" |
		sort -k2 >"$WORK/addresses"
	join -1 2 -2 1 -o 1.1,2.2 "$WORK/addresses" <(sort -k1 "$WORK/codes") >"$WORK/confirm"
	assert_equal "operations paired with their code" "$CONFIRMED" "$(wc -l <"$WORK/confirm")"
}

concurrent_outcomes() {
	local pid follower expire_status=0 index file
	local -a pids=()
	START_ID=$(read_feed 0 "$WORK/before") || assert_fail "reading the feed before failed" || return 1
	create_operations || return 1
	collect_codes || return 1
	grep ' user-cancel$' "$WORK/created" >"$WORK/user-cancel" || true
	grep ' service-cancel$' "$WORK/created" >"$WORK/service-cancel" || true
	grep ' expire$' "$WORK/created" >"$WORK/expire" || true
	head -n $((CONFIRMED / 2)) "$WORK/confirm" >"$WORK/confirm-a"
	tail -n +$((CONFIRMED / 2 + 1)) "$WORK/confirm" >"$WORK/confirm-b"

	follow_feed "$START_ID" "$WORK/follower" "$WORK/stop" &
	follower=$!
	action_worker "$WORK/confirm-a" /operations/%s/confirm \
		-H "Authorization: Bearer $TOKEN" -H "Fingerprint: $FINGERPRINT" &
	pids+=($!)
	action_worker "$WORK/confirm-b" /operations/%s/confirm \
		-H "Authorization: Bearer $TOKEN" -H "Fingerprint: $FINGERPRINT" &
	pids+=($!)
	action_worker "$WORK/user-cancel" /operations/%s/cancel \
		-H "Authorization: Bearer $TOKEN" -H "Fingerprint: $FINGERPRINT" &
	pids+=($!)
	action_worker "$WORK/service-cancel" /internal/operations/%s/cancel \
		-H "Authorization: Bearer $SERVICE_TOKEN" &
	pids+=($!)
	# Two sweeps while the others run; the second finds nothing of ours left.
	for index in 1 2; do
		ctl expire >>"$WORK/expire-output" || expire_status=$?
		sleep 0.3
	done
	for pid in "${pids[@]}"; do
		wait "$pid" || true
	done
	touch "$WORK/stop"
	wait "$follower" || true

	assert_equal "userops-ctl expire exit status" 0 "$expire_status"
	for file in confirm-a confirm-b user-cancel service-cancel; do
		assert_equal "answers other than 200 in $file" '' \
			"$(awk '$2 != 200' "$WORK/$file.done" | head -n 3 | tr '\n' ' ')"
		assert_equal "answers in $file" "$(wc -l <"$WORK/$file")" "$(wc -l <"$WORK/$file.done")"
	done
	assert_equal "follower errors" '' "$(head -c 300 "$WORK/follower.errors" 2>/dev/null || true)"
}

# Every operation is in the follower's events exactly once, with its status
# and kind, and the ids strictly increase.
each_once() {
	local expected actual
	[[ -s $WORK/follower ]] || assert_fail "the follower read no events" || return 1
	jq -r '"\(.uuid) \(.status) \(.kind) \(.userId)"' "$WORK/follower" | sort >"$WORK/seen"
	sed -e 's/ confirm$/ confirmed events-confirm/' -e 's/ user-cancel$/ cancelled events-user-cancel/' \
		-e 's/ service-cancel$/ cancelled events-service-cancel/' -e 's/ expire$/ expired events-expire/' \
		-e "s/\$/ $USER_ID/" "$WORK/created" | sort >"$WORK/expected"
	expected=$(wc -l <"$WORK/expected")
	actual=$(join "$WORK/expected" <(cut -d' ' -f1 "$WORK/seen" | sort | uniq -c |
		awk '{print $2, $1}') | awk '$NF == 1' | wc -l)
	assert_equal "operations seen exactly once by the follower" "$expected" "$actual"
	assert_equal "operations whose event differs from the expected one" '' \
		"$(grep -F -f <(cut -d' ' -f1 "$WORK/expected") "$WORK/seen" | sort -u |
			comm -3 - "$WORK/expected" | head -n 3 | tr '\n' ' ')"
	assert_equal "events with an id not above the previous one" '' \
		"$(jq -r .id "$WORK/follower" | awk 'NR > 1 && $1 <= last { print last " then " $1 } { last = $1 }' |
			head -n 3 | tr '\n' ' ')"
	assert_equal "events before START_ID" '' \
		"$(jq -r --argjson start "$START_ID" 'select(.id <= $start) | .id' "$WORK/follower" | head -n 3)"
	assert_equal "events without a positive at" '' \
		"$(jq -r 'select((.at | type) != "number" or .at <= 0) | .id' "$WORK/follower" | head -n 3)"
	echo "     the follower read $(wc -l <"$WORK/follower") events; of ours:" \
		"$(grep -F -f <(cut -d' ' -f1 "$WORK/expected") "$WORK/seen" | cut -d' ' -f2 | sort | uniq -c |
			awk '{printf "%s %s ", $2, $1}')"
}

# Reading the feed again from the same start gives the same events.
replay_equal() {
	[[ -s $WORK/follower ]] || assert_fail "the follower read no events" || return 1
	read_feed "$START_ID" "$WORK/replay" >/dev/null || assert_fail "reading the feed again failed" || return 1
	assert_equal "events read again beside the follower's (first differing line)" '' \
		"$(diff <(jq -cS . "$WORK/follower") <(jq -cS . "$WORK/replay") | head -n 3 | tr '\n' ' ')"
}

# A second follower from the id of the follower's middle event reads exactly
# the events after it.
middle_follower() {
	local total middle middle_id
	[[ -s $WORK/follower ]] || assert_fail "the follower read no events" || return 1
	total=$(wc -l <"$WORK/follower")
	middle=$((total / 2))
	middle_id=$(sed -n "${middle}p" "$WORK/follower" | jq -r .id)
	read_feed "$middle_id" "$WORK/middle" >/dev/null || assert_fail "reading from $middle_id failed" || return 1
	assert_equal "events after id $middle_id beside the follower's last $((total - middle))" '' \
		"$(diff <(tail -n +$((middle + 1)) "$WORK/follower" | jq -r .id) <(jq -r .id "$WORK/middle") |
			head -n 3 | tr '\n' ' ')"
	assert_equal "events after id $middle_id" $((total - middle)) "$(wc -l <"$WORK/middle")"
}

test_case "200 operations end concurrently" concurrent_outcomes
test_case "each operation once, ids increasing" each_once
test_case "feed read again is equal" replay_equal
test_case "follower from a middle id" middle_follower
test_finish
