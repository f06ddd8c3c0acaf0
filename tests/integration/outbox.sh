#!/usr/bin/env bash
# userops-ctl outbox lists the mail outbox newest first, one tab-separated
# line per row under a header, and --failed keeps only failed rows. A mail
# that fails for good leaves a "mail_failed" row in the operation's audit
# trail, which userops-ctl show prints.
#
# The stack's SMTP sink accepts every message, so the failed row comes from
# a code that the mailer cannot open. create-operation runs with a copy of
# the configuration whose [seal] key_file contains a key the mailer does not
# have, so the mailer fails the row on its first try. Queued rows come from
# a database of this file's own, migrated by userops-ctl, which no mailer
# reads; the file drops it on exit.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/assert.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/assert.sh"
# shellcheck source=SCRIPTDIR/../lib/operations.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/operations.sh"

OUTBOX_HEADER=$'id\toperation\trecipient\tstatus\ttries\tstatus_at\tnext_try_at\tlast_reply'
# The operations that the cases create, read by the later cases.
SENT_UUID=
FAILED_UUID=
# The file's own database, which no mailer reads, and the configuration naming it.
IDLE_DATABASE=userops_outbox_$$
IDLE_CONF=$ASSERT_TMP/idle.conf
# Rows that userops-ctl outbox reads with one SELECT (OUTBOX_LIST_BATCH in src/outbox.c).
LIST_BATCH=100

# Prints what userops-ctl outbox shows for ADDRESS: "***", the last three
# characters of the local part, "@" and the domain (ASCII addresses only).
masked_address() {
	local local_part=${1%@*}
	printf '***%s@%s\n' "${local_part: -3}" "${1#*@}"
}

# Prints the Unix time SECONDS as UTC ISO 8601.
iso_utc() {
	date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ
}

# Prints "id<TAB>status<TAB>tries<TAB>status_at<TAB>next_try_at<TAB>last_reply"
# of the outbox row of operation UUID, last_reply - when NULL.
outbox_row_of() {
	db_query "SELECT id, status, tries, status_at, next_try_at, IFNULL(last_reply, '-')
		FROM mail_outbox WHERE operation_uuid = UNHEX(REPLACE('$1', '-', ''))"
}

# Waits up to 10 s until the outbox row of operation UUID is sent, failed or
# dropped, and prints its status.
wait_outbox_final() {
	local uuid=$1 tries status
	for ((tries = 0; tries < 50; tries++)); do
		status=$(db_query "SELECT status FROM mail_outbox
			WHERE operation_uuid = UNHEX(REPLACE('$uuid', '-', ''))")
		if [[ $status == sent || $status == failed || $status == dropped ]]; then
			break
		fi
		sleep 0.2
	done
	echo "$status"
}

# Prints the line that userops-ctl outbox should print for the row of
# operation UUID to ADDRESS, from the row as the database stores it.
expected_line() {
	local uuid=$1 address=$2 id status tries status_at next_try_at reply next='-'
	IFS=$'\t' read -r id status tries status_at next_try_at reply < <(outbox_row_of "$uuid")
	if [[ $status == queued || $status == retrying ]]; then
		next=$(iso_utc "$next_try_at")
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$id" "$uuid" "$(masked_address "$address")" \
		"$status" "$tries" "$(iso_utc "$status_at")" "$next" "$reply"
}

# Prints the lines of the listing in FILE whose operation column is UUID.
lines_of() {
	awk -F '\t' -v uuid="$2" 'NR > 1 && $2 == uuid' "$1"
}

# Writes to FILE a copy of the stack's configuration with LINE in place of
# the line that starts with KEY =. Fails the case when no line was replaced.
config_with() {
	local file=$1 key=$2 line=$3
	sed -e "s|^$key = .*|$line|" "$USEROPS_CONF" >"$file"
	if ! grep -qxF "$line" "$file"; then
		assert_fail "$USEROPS_CONF has no '$key =' line to replace"
	fi
}

sent_row_listed() {
	local status
	new_user outbox || return 1
	new_operation --email "$EMAIL" --kind withdrawal --param amount=10.00 || return 1
	SENT_UUID=$UUID
	status=$(wait_outbox_final "$UUID")
	assert_equal "outbox status of operation $UUID" sent "$status" || return 1

	ctl outbox >"$ASSERT_TMP/list" || assert_fail "userops-ctl outbox exited with status $?" || return 1
	assert_equal "header line" "$OUTBOX_HEADER" "$(head -n 1 "$ASSERT_TMP/list")"
	assert_equal "line of operation $UUID" "$(expected_line "$UUID" "$EMAIL")" \
		"$(lines_of "$ASSERT_TMP/list" "$UUID")"
}

sent_row_not_failed() {
	[[ -n $SENT_UUID ]] || assert_fail "the sent row case did not create an operation" || return 1
	ctl outbox --failed >"$ASSERT_TMP/failed" ||
		assert_fail "userops-ctl outbox --failed exited with status $?" || return 1
	assert_equal "header line of --failed" "$OUTBOX_HEADER" "$(head -n 1 "$ASSERT_TMP/failed")"
	assert_equal "--failed lines of sent operation $SENT_UUID" "" \
		"$(lines_of "$ASSERT_TMP/failed" "$SENT_UUID")"
}

failed_row_listed() {
	local status seal_keys=$ASSERT_TMP/other-seal-keys
	# A key id that the stack's keyring does not have, so the mailer cannot open the code.
	(umask 077 && printf 'outboxtest:%s\n' "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >"$seal_keys")
	config_with "$ASSERT_TMP/other-key.conf" key_file "key_file = $seal_keys" || return 1

	new_user outbox || return 1
	CHALLENGE=$(USEROPS_CTL_CONF=$ASSERT_TMP/other-key.conf create_operation --user "$USER_ID" \
		--fingerprint "$FINGERPRINT" --email "$EMAIL" --kind withdrawal) ||
		assert_fail "create-operation with another seal key failed" || return 1
	FAILED_UUID=$(jq -r .uuid <<<"$CHALLENGE")
	status=$(wait_outbox_final "$FAILED_UUID")
	assert_equal "outbox status of operation $FAILED_UUID" failed "$status" || return 1

	ctl outbox --failed >"$ASSERT_TMP/failed" ||
		assert_fail "userops-ctl outbox --failed exited with status $?" || return 1
	assert_equal "line of failed operation $FAILED_UUID" \
		"$(expected_line "$FAILED_UUID" "$EMAIL")" "$(lines_of "$ASSERT_TMP/failed" "$FAILED_UUID")"
	assert_equal "statuses listed by --failed" failed \
		"$(awk -F '\t' 'NR > 1 { print $4 }' "$ASSERT_TMP/failed" | sort -u | paste -sd ' ')"
}

failed_mail_in_audit() {
	local shown reply
	[[ -n $FAILED_UUID ]] || assert_fail "the failed row case did not create an operation" || return 1
	shown=$(ctl show "$FAILED_UUID") || assert_fail "userops-ctl show $FAILED_UUID failed" || return 1
	reply=$(db_query "SELECT last_reply FROM mail_outbox
		WHERE operation_uuid = UNHEX(REPLACE('$FAILED_UUID', '-', ''))")
	assert_equal "audit events of $FAILED_UUID" "created mail_failed" \
		"$(jq -r '[.audit[].event] | join(" ")' <<<"$shown")"
	assert_equal "detail of mail_failed" "$reply" \
		"$(jq -r '.audit[] | select(.event == "mail_failed") | .detail' <<<"$shown")"
	assert_equal "atMs of mail_failed is a time in ms" true \
		"$(jq '.audit[-1].atMs >= .audit[0].atMs and .audit[0].atMs > 1000000000000' <<<"$shown")"
	assert_equal "mail_failed rows in audit_log" 1 \
		"$(db_query "SELECT COUNT(*) FROM audit_log WHERE event = 'mail_failed'
			AND operation_uuid = UNHEX(REPLACE('$FAILED_UUID', '-', ''))")"
}

sent_mail_not_in_audit() {
	local shown
	[[ -n $SENT_UUID ]] || assert_fail "the sent row case did not create an operation" || return 1
	shown=$(ctl show "$SENT_UUID") || assert_fail "userops-ctl show $SENT_UUID failed" || return 1
	assert_equal "audit events of $SENT_UUID" created \
		"$(jq -r '[.audit[].event] | join(" ")' <<<"$shown")"
	assert_equal "detail of created" null "$(jq '.audit[0].detail' <<<"$shown")"
}

newest_first() {
	local ids
	[[ -n $SENT_UUID && -n $FAILED_UUID ]] ||
		assert_fail "the earlier cases did not create both operations" || return 1
	ctl outbox >"$ASSERT_TMP/list" || assert_fail "userops-ctl outbox exited with status $?" || return 1
	ids=$(awk -F '\t' 'NR > 1 { print $1 }' "$ASSERT_TMP/list")
	assert_same_ids "ids in the listing" "$(sort -rn <<<"$ids")" "$ids"
	assert_equal "first row of the listing" "$(db_query 'SELECT MAX(id) FROM mail_outbox')" \
		"$(head -n 1 <<<"$ids")"
	assert_equal "operations in listing order" "$FAILED_UUID $SENT_UUID" \
		"$(awk -F '\t' -v a="$SENT_UUID" -v b="$FAILED_UUID" 'NR > 1 && ($2 == a || $2 == b) { print $2 }' \
			"$ASSERT_TMP/list" | paste -sd ' ')"
}

limit_caps_rows() {
	local total newest
	total=$(db_query 'SELECT COUNT(*) FROM mail_outbox')
	newest=$(db_query 'SELECT id FROM mail_outbox ORDER BY id DESC LIMIT 2' | paste -sd ' ')
	((total >= 2)) || assert_fail "the outbox has $total rows, fewer than the 2 this case needs" || return 1

	ctl outbox --limit 1 >"$ASSERT_TMP/one" || assert_fail "outbox --limit 1 exited with status $?" || return 1
	assert_equal "lines of --limit 1" 2 "$(wc -l <"$ASSERT_TMP/one")"
	assert_equal "id listed by --limit 1" "${newest%% *}" "$(awk -F '\t' 'NR == 2 { print $1 }' "$ASSERT_TMP/one")"

	ctl outbox --limit 2 >"$ASSERT_TMP/two" || assert_fail "outbox --limit 2 exited with status $?" || return 1
	assert_equal "ids listed by --limit 2" "$newest" \
		"$(awk -F '\t' 'NR > 1 { print $1 }' "$ASSERT_TMP/two" | paste -sd ' ')"
}

# Runs SQL as the MariaDB root user, in no particular database.
root_sql() {
	mariadb --no-defaults --socket="$USEROPS_DB_SOCKET" -u root --batch --skip-column-names -e "$1"
}

# Compares two lists of ids, one a line, and on a difference names the
# counts and the first line that differs rather than both lists.
assert_same_ids() {
	local what=$1 expected=$2 actual=$3 difference
	if [[ $actual != "$expected" ]]; then
		difference=$(paste -d ' ' <(echo "$expected") <(echo "$actual") |
			awk '$1 != $2 { print "line " NR " is " ($2 == "" ? "missing" : $2) " instead of " ($1 == "" ? "absent" : $1); exit }')
		assert_fail "$what: expected $(wc -l <<<"$expected") ids, got $(wc -l <<<"$actual"); $difference"
	fi
}

# Prints the ids of the idle database's outbox rows, newest first.
idle_ids() {
	root_sql "SELECT id FROM $IDLE_DATABASE.mail_outbox ORDER BY id DESC"
}

drop_idle_database() {
	root_sql "DROP DATABASE IF EXISTS $IDLE_DATABASE" 2>/dev/null || true
}

# A fresh database has no outbox rows: the header alone, exit status 0 and
# no message on stderr other than log lines.
empty_outbox_header_only() {
	local option status
	root_sql "CREATE DATABASE $IDLE_DATABASE CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
		GRANT ALL PRIVILEGES ON $IDLE_DATABASE.* TO 'userops'@'localhost';" ||
		assert_fail "cannot create the database $IDLE_DATABASE" || return 1
	config_with "$IDLE_CONF" name "name = $IDLE_DATABASE" || return 1
	USEROPS_CTL_CONF=$IDLE_CONF ctl migrate >/dev/null 2>&1 ||
		assert_fail "userops-ctl migrate of $IDLE_DATABASE failed" || return 1

	for option in '' --failed; do
		status=0
		# shellcheck disable=SC2086
		USEROPS_CTL_CONF=$IDLE_CONF ctl outbox $option \
			>"$ASSERT_TMP/empty.out" 2>"$ASSERT_TMP/empty.err" || status=$?
		assert_equal "exit status of outbox $option on an empty outbox" 0 "$status"
		assert_equal "output of outbox $option on an empty outbox" "$OUTBOX_HEADER" \
			"$(cat "$ASSERT_TMP/empty.out")"
		assert_equal "stderr of outbox $option on an empty outbox, apart from log lines" "" \
			"$(grep -v ' info: ' "$ASSERT_TMP/empty.err" || true)"
	done
}

# Prints the line userops-ctl outbox should print for the idle database's
# newest row, a queued one to ADDRESS of operation UUID.
expected_queued_line() {
	local uuid=$1 address=$2 id created
	IFS=$'\t' read -r id created < <(root_sql "SELECT id, created_at FROM $IDLE_DATABASE.mail_outbox
		WHERE operation_uuid = UNHEX(REPLACE('$uuid', '-', ''))")
	printf '%s\t%s\t%s\tqueued\t0\t%s\t%s\t-\n' "$id" "$uuid" "$(masked_address "$address")" \
		"$(iso_utc "$created")" "$(iso_utc "$created")"
}

queued_row_shows_next_try() {
	local challenge uuid
	[[ -r $IDLE_CONF ]] || assert_fail "the empty outbox case did not set up $IDLE_DATABASE" || return 1
	new_user outbox || return 1
	challenge=$(USEROPS_CTL_CONF=$IDLE_CONF create_operation --user "$USER_ID" \
		--fingerprint "$FINGERPRINT" --email "$EMAIL") ||
		assert_fail "create-operation in $IDLE_DATABASE failed" || return 1
	uuid=$(jq -r .uuid <<<"$challenge")

	USEROPS_CTL_CONF=$IDLE_CONF ctl outbox >"$ASSERT_TMP/queued" ||
		assert_fail "userops-ctl outbox exited with status $?" || return 1
	assert_equal "line of queued operation $uuid" "$(expected_queued_line "$uuid" "$EMAIL")" \
		"$(sed -n 2p "$ASSERT_TMP/queued")"
	USEROPS_CTL_CONF=$IDLE_CONF ctl outbox --failed >"$ASSERT_TMP/failed" ||
		assert_fail "userops-ctl outbox --failed exited with status $?" || return 1
	assert_equal "outbox --failed with only a queued row" "$OUTBOX_HEADER" "$(cat "$ASSERT_TMP/failed")"
}

# More rows than one SELECT reads: each appears once, newest first, and
# without --limit only the newest 50.
listing_spans_batches() {
	local count i ids
	[[ -r $IDLE_CONF ]] || assert_fail "the empty outbox case did not set up $IDLE_DATABASE" || return 1
	count=$(root_sql "SELECT COUNT(*) FROM $IDLE_DATABASE.mail_outbox")
	for ((i = count; i <= LIST_BATCH; i++)); do
		USEROPS_CTL_CONF=$IDLE_CONF create_operation --user "$(unique_id outbox-user)" \
			--fingerprint outbox-device --email "$(unique_id outbox)@example.com" >/dev/null 2>&1 ||
			assert_fail "create-operation $i in $IDLE_DATABASE failed" || return 1
	done
	ids=$(idle_ids)
	assert_equal "rows in $IDLE_DATABASE" $((LIST_BATCH + 1)) "$(wc -l <<<"$ids")" || return 1

	USEROPS_CTL_CONF=$IDLE_CONF ctl outbox --limit 1000 >"$ASSERT_TMP/all" ||
		assert_fail "outbox --limit 1000 exited with status $?" || return 1
	assert_same_ids "ids listed by --limit 1000" "$ids" "$(awk -F '\t' 'NR > 1 { print $1 }' "$ASSERT_TMP/all")"

	USEROPS_CTL_CONF=$IDLE_CONF ctl outbox --limit $((LIST_BATCH + 1)) >"$ASSERT_TMP/exact" ||
		assert_fail "outbox --limit $((LIST_BATCH + 1)) exited with status $?" || return 1
	assert_same_ids "ids listed by --limit $((LIST_BATCH + 1))" "$ids" \
		"$(awk -F '\t' 'NR > 1 { print $1 }' "$ASSERT_TMP/exact")"

	USEROPS_CTL_CONF=$IDLE_CONF ctl outbox >"$ASSERT_TMP/default" ||
		assert_fail "userops-ctl outbox exited with status $?" || return 1
	assert_same_ids "ids listed without --limit" "$(head -n 50 <<<"$ids")" \
		"$(awk -F '\t' 'NR > 1 { print $1 }' "$ASSERT_TMP/default")"
}

# Each bad invocation exits 2 with one line on stderr that names the problem, and prints nothing.
usage_errors_exit_2() {
	local entry args status expected
	local -a cases=(
		'--limit 0|--limit must be a whole number of rows, 1 or more, got 0'
		'--limit -3|--limit must be a whole number of rows, 1 or more, got -3'
		'--limit ten|--limit must be a whole number of rows, 1 or more, got ten'
		'--limit 5x|--limit must be a whole number of rows, 1 or more, got 5x'
		'--limit|option --limit of outbox needs a value'
		'--status|unknown option --status for outbox; see userops-ctl outbox --help'
		'failed|outbox takes no arguments, got failed'
	)
	for entry in "${cases[@]}"; do
		args=${entry%%|*} expected=${entry#*|}
		status=0
		# shellcheck disable=SC2086
		ctl outbox $args >"$ASSERT_TMP/usage.out" 2>"$ASSERT_TMP/usage.err" || status=$?
		assert_equal "exit status of outbox $args" 2 "$status"
		assert_equal "stderr of outbox $args" "userops-ctl: $expected" "$(cat "$ASSERT_TMP/usage.err")"
		assert_equal "stdout of outbox $args" "" "$(cat "$ASSERT_TMP/usage.out")"
	done
}

help_exits_0() {
	local status=0
	ctl outbox --help >"$ASSERT_TMP/help" 2>&1 || status=$?
	assert_equal "exit status of outbox --help" 0 "$status"
	assert_equal "first line of outbox --help" \
		"usage: userops-ctl [-c FILE] outbox [--failed] [--limit N]" "$(head -n 1 "$ASSERT_TMP/help")"
	if ! grep -q -- '--limit N  list at most N rows' "$ASSERT_TMP/help"; then
		assert_fail "outbox --help does not describe --limit: $(cat "$ASSERT_TMP/help")"
	fi
}

trap drop_idle_database EXIT

test_case "sent row listed" sent_row_listed
test_case "sent row absent from --failed" sent_row_not_failed
test_case "failed row listed by --failed" failed_row_listed
test_case "mail_failed in audit trail" failed_mail_in_audit
test_case "sent mail not in audit trail" sent_mail_not_in_audit
test_case "rows listed newest first" newest_first
test_case "--limit caps rows" limit_caps_rows
test_case "empty outbox prints header only" empty_outbox_header_only
test_case "queued row shows next try" queued_row_shows_next_try
test_case "listing spans batches" listing_spans_batches
test_case "usage errors exit 2" usage_errors_exit_2
test_case "outbox --help exits 0" help_exits_0
test_finish
