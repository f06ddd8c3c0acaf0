#!/usr/bin/env bash
# A mailer sends many messages over its life: one process delivers 200 over
# STARTTLS with AUTH under valgrind, and stops on SIGTERM with no error and
# nothing lost. Needs the plain build (USEROPS_PLAIN_BIN_DIR, default
# build/), since valgrind cannot run the sanitizer build.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/assert.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/assert.sh"
# shellcheck source=SCRIPTDIR/../lib/operations.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/operations.sh"
# shellcheck source=SCRIPTDIR/../lib/relay.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/relay.sh"
trap relay_cleanup EXIT

MESSAGES=200
PLAIN_BIN_DIR=${USEROPS_PLAIN_BIN_DIR:-$ASSERT_REPO/build}

relay_setup

many_sessions_clean() {
	local port conf password_file=$RELAY_TMP/password i pid sent log=$RELAY_TMP/valgrind.log
	[[ -x $PLAIN_BIN_DIR/userops-mailer ]] ||
		assert_fail "no plain build at $PLAIN_BIN_DIR (set USEROPS_PLAIN_BIN_DIR)" || return 1
	printf 'valgrind run password\n' >"$password_file"

	relay_port
	port=$RELAY_PORT
	relay_start many "$port" --tls starttls --cert "$RELAY_CA_DIR/localhost.crt" \
		--key "$RELAY_CA_DIR/localhost.key" --auth "mailer:$password_file" ||
		assert_fail "relay did not start" || return 1
	conf=$(relay_write_conf many "host = localhost" "port = $port" "tls = starttls" \
		"ca_file = $RELAY_CA_DIR/ca.crt" "timeout = 20" "username = mailer" \
		"password_file = $password_file")
	for ((i = 0; i < MESSAGES; i++)); do
		relay_create "many-$i-$$@example.com" >/dev/null || assert_fail "create-operation failed" || return 1
	done

	valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect \
		--errors-for-leak-kinds=definite,indirect --error-exitcode=99 --log-file="$log" \
		"$PLAIN_BIN_DIR/userops-mailer" -c "$conf" >>"$RELAY_TMP/many.mailer.log" 2>&1 &
	pid=$!
	RELAY_PIDS+=("$pid")
	for ((i = 0; i < 1200; i++)); do
		sent=$(relay_query "SELECT COUNT(*) FROM mail_outbox WHERE status = 'sent'")
		((sent == MESSAGES)) && break
		sleep 0.1
	done

	kill -TERM "$pid"
	local status=0
	wait "$pid" || status=$?

	assert_equal "rows sent" "$MESSAGES" "$sent"
	assert_equal "messages stored" "$MESSAGES" "$(find "$RELAY_TMP/many.maildir/new" -type f | wc -l)"
	assert_equal "exit status under valgrind" 0 "$status"
	if [[ -s $log ]]; then
		assert_fail "valgrind reported: $(head -n 5 "$log")"
	fi
}

test_case "200 STARTTLS and AUTH sessions in one mailer: valgrind clean" many_sessions_clean
relay_cleanup
test_finish
