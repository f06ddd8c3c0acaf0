# Harness for the integration tests: HTTP requests with curl, assertions on
# status, headers and JSON, and helpers that drive userops-ctl, the Maildir
# of the SMTP sink and oathtool.
#
# A test file sources this file, defines one function per case, runs each
# with `test_case NAME FUNCTION`, and ends with `test_finish`. It reads the
# stack's settings from $USEROPS_STACK_ENV, by default run/test/stack.env as
# tests/run-all starts it, so one file also runs alone against that stack.
# Each case appends "pass<TAB>NAME" or "fail<TAB>NAME<TAB>REASON" to
# $USEROPS_RESULTS when that is set.

ASSERT_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ASSERT_FILE=$(basename "$0" .sh)

if [[ -z ${USEROPS_URL:-} ]]; then
	USEROPS_STACK_ENV=${USEROPS_STACK_ENV:-$ASSERT_REPO/run/test/stack.env}
	if [[ ! -r $USEROPS_STACK_ENV ]]; then
		echo "$ASSERT_FILE: $USEROPS_STACK_ENV is missing; start the stack with tests/run-all" >&2
		exit 2
	fi
	# shellcheck source=/dev/null
	source "$USEROPS_STACK_ENV"
fi

ASSERT_TMP=$(mktemp -d "${TMPDIR:-/tmp}/userops-$ASSERT_FILE.XXXXXX")
ASSERT_PASSED=0
ASSERT_FAILED=0
CASE_FAILURE=
HTTP_STATUS=
HTTP_BODY=
HTTP_REQUEST=
HTTP_HEADERS_FILE=$ASSERT_TMP/headers
ASSERT_CODE_LENGTH=${USEROPS_CODE_LENGTH:-6}

# Records the first failure of the current case, which test_case reports;
# later ones are printed here.
assert_fail() {
	if [[ -z $CASE_FAILURE ]]; then
		CASE_FAILURE=$*
	else
		echo "     also: $*"
	fi
	return 1
}

# Runs FUNCTION [ARG]... as the case NAME and counts it as passed when no
# assertion in it failed and it returned 0.
test_case() {
	local name=$1 result
	shift
	CASE_FAILURE=
	if ! "$@"; then
		if [[ -z $CASE_FAILURE ]]; then
			CASE_FAILURE="the case returned non-zero before any assertion failed"
		fi
	fi
	if [[ -z $CASE_FAILURE ]]; then
		ASSERT_PASSED=$((ASSERT_PASSED + 1))
		echo "ok   $ASSERT_FILE: $name"
		result=$(printf 'pass\t%s: %s' "$ASSERT_FILE" "$name")
	else
		ASSERT_FAILED=$((ASSERT_FAILED + 1))
		echo "FAIL $ASSERT_FILE: $name: $CASE_FAILURE"
		result=$(printf 'fail\t%s: %s\t%s' "$ASSERT_FILE" "$name" "$CASE_FAILURE")
	fi
	if [[ -n ${USEROPS_RESULTS:-} ]]; then
		printf '%s\n' "${result//$'\n'/ }" >>"$USEROPS_RESULTS"
	fi
}

# Prints this file's totals, removes its temporary files and exits 1 when a
# case failed.
test_finish() {
	rm -rf -- "$ASSERT_TMP"
	echo "$ASSERT_FILE: $ASSERT_PASSED passed, $ASSERT_FAILED failed"
	if ((ASSERT_FAILED > 0)); then
		exit 1
	fi
	exit 0
}

# Sends a request and stores the response in HTTP_STATUS, HTTP_BODY and the
# file HTTP_HEADERS_FILE (the last response's headers, CR removed). When
# USEROPS_RESPONSES names a file, it also appends the method, path, status,
# Content-Type and body there as one JSON line.
#
#   http_request METHOD PATH [-t TOKEN] [-f FINGERPRINT] [-d BODY] [-H 'Name: value']...
#
# -d sends BODY as application/json unless a -H sets Content-Type. The path
# goes out as written (curl --path-as-is), dot segments included.
http_request() {
	local method=$1 path=$2 option body='' has_body=no has_type=no
	local -a args=()
	shift 2
	OPTIND=1
	while getopts 't:f:d:H:' option; do
		case $option in
		t) args+=(-H "Authorization: Bearer $OPTARG") ;;
		f) args+=(-H "Fingerprint: $OPTARG") ;;
		d) body=$OPTARG has_body=yes ;;
		H)
			args+=(-H "$OPTARG")
			if [[ ${OPTARG,,} == content-type:* ]]; then
				has_type=yes
			fi
			;;
		*) return 2 ;;
		esac
	done
	if [[ $has_body == yes ]]; then
		if [[ $has_type == no ]]; then
			args+=(-H 'Content-Type: application/json')
		fi
		printf '%s' "$body" >"$ASSERT_TMP/request-body"
		args+=(--data-binary "@$ASSERT_TMP/request-body")
	fi

	HTTP_REQUEST="$method $path"
	HTTP_STATUS=$(curl -sS --path-as-is --max-time 15 -X "$method" \
		-o "$ASSERT_TMP/body" -D "$ASSERT_TMP/all-headers" -w '%{http_code}' \
		"${args[@]}" "$USEROPS_URL$path") || HTTP_STATUS=000
	HTTP_BODY=$(cat "$ASSERT_TMP/body" 2>/dev/null || true)
	# Keep only the final response's header block (after a 100 Continue).
	tr -d '\r' <"$ASSERT_TMP/all-headers" |
		awk '/^HTTP\// { block = "" } { block = block $0 "\n" } END { printf "%s", block }' \
			>"$HTTP_HEADERS_FILE"
	# For tests/openapi/check-responses; --rawfile stores any body, JSON or not, as a string.
	if [[ -n ${USEROPS_RESPONSES:-} ]]; then
		jq -nc --arg method "$method" --arg path "$path" --argjson status "$((10#$HTTP_STATUS))" \
			--arg contentType "$(header_value Content-Type)" --rawfile body "$ASSERT_TMP/body" \
			'{$method, $path, $status, $contentType, $body}' >>"$USEROPS_RESPONSES" 2>/dev/null || true
	fi
}

# Prints the value of header NAME (any case) of the last response.
header_value() {
	awk -v name="${1,,}" '
		index($0, ":") {
			key = tolower(substr($0, 1, index($0, ":") - 1))
			if (key == name) {
				value = substr($0, index($0, ":") + 1)
				sub(/^[ \t]+/, "", value)
				sub(/[ \t]+$/, "", value)
				print value
				exit
			}
		}' "$HTTP_HEADERS_FILE"
}

assert_status() {
	local body=${HTTP_BODY//[$'\r\n']/ }
	if [[ $HTTP_STATUS != "$1" ]]; then
		assert_fail "$HTTP_REQUEST: expected status $1, got $HTTP_STATUS; body: ${body:0:200}"
	fi
}

# Compares jq FILTER applied to the last body (jq -r output) with VALUE.
assert_json() {
	local filter=$1 expected=$2 actual
	if ! actual=$(jq -r "$filter" <<<"$HTTP_BODY" 2>/dev/null); then
		assert_fail "$HTTP_REQUEST: body is not JSON or $filter failed: ${HTTP_BODY:0:200}"
		return 1
	fi
	if [[ $actual != "$expected" ]]; then
		assert_fail "$HTTP_REQUEST: expected $filter = $expected, got $actual"
	fi
}

assert_header() {
	local name=$1 expected=$2 actual
	actual=$(header_value "$name")
	if [[ $actual != "$expected" ]]; then
		assert_fail "$HTTP_REQUEST: expected header $name: $expected, got '${actual}'"
	fi
}

# Checks that header NAME matches the extended regular expression PATTERN.
assert_header_matches() {
	local name=$1 pattern=$2 actual
	actual=$(header_value "$name")
	if [[ ! $actual =~ $pattern ]]; then
		assert_fail "$HTTP_REQUEST: expected header $name to match $pattern, got '${actual}'"
	fi
}

assert_equal() {
	local what=$1 expected=$2 actual=$3
	if [[ $actual != "$expected" ]]; then
		assert_fail "$what: expected $expected, got $actual"
	fi
}

# Checks the common error body: success false, error.code CODE and a
# requestId equal to the X-Request-Id header.
assert_error() {
	local code=$1
	assert_status "${code:0:3}" || return 1
	assert_json '.success' false || return 1
	assert_json '.error.code' "$code" || return 1
	assert_json '.error.requestId' "$(header_value X-Request-Id)"
}

# The front end of the stack, from stack.env: lighttpd, lighttpd-pool,
# nginx, apache-fcgid or apache-proxy-fcgi (see tests/lib/stack.sh).
ASSERT_FRONTEND=${USEROPS_FRONTEND:-lighttpd}

# Prints the statuses, separated by spaces, that the stack's front end
# returns itself, before userops receives the request, for the rejected input
# KIND (000: the connection closes without an answer):
#   header-too-large  a 10,000-byte header line: lighttpd 1.4.69 returns
#                     431; nginx 1.22 (large_client_header_buffers 4 8k) and
#                     Apache 2.4 (LimitRequestFieldSize 8190) return 400
#   nul-in-header     a NUL byte in a header value: 400 from all of them
#   body-too-large    a body over 1 MiB: 413 from all of them, as the stack
#                     and the examples in etc/ configure them
#   truncated-body    a client that closes its side before it sent
#                     Content-Length bytes: no answer or 400, except that
#                     mod_fcgid reads the whole body before it starts the
#                     request and returns 500 when the body breaks off
# Only input that never reaches userops belongs here: userops' own responses
# (413001, 404002, ...) are the same behind every front end.
frontend_status() {
	case $1:$ASSERT_FRONTEND in
	header-too-large:lighttpd*) echo 431 ;;
	header-too-large:*) echo 400 ;;
	nul-in-header:*) echo 400 ;;
	body-too-large:*) echo 413 ;;
	truncated-body:apache-fcgid) echo 500 ;;
	truncated-body:*) echo 000 400 ;;
	*)
		echo "frontend_status: unknown input kind $1" >&2
		echo unknown
		;;
	esac
}

# Checks that the last response is one of the front end's own responses to
# the rejected input KIND.
assert_frontend_status() {
	local expected status body=${HTTP_BODY//[$'\r\n']/ }
	expected=$(frontend_status "$1")
	for status in $expected; do
		[[ $HTTP_STATUS == "$status" ]] && return 0
	done
	assert_fail "$HTTP_REQUEST: expected status ${expected// / or } from $ASSERT_FRONTEND, got $HTTP_STATUS; body: ${body:0:200}"
}

# Succeeds when the front end starts one userops-fcgi process per socket
# (lighttpd's bin-path, mod_fcgid) rather than connecting to a pool that
# shares one socket among its workers.
frontend_spawns_workers() {
	[[ $ASSERT_FRONTEND == lighttpd || $ASSERT_FRONTEND == apache-fcgid ]]
}

# Prints the FastCGI sockets of the workers behind the stack's front end,
# not those of the second lighttpd. lighttpd's bin-path and mod_fcgid make
# one socket per worker, and a pool shares one socket among its workers.
frontend_worker_sockets() {
	local socket
	case $ASSERT_FRONTEND in
	lighttpd) set -- "$USEROPS_SOCKET_DIR"/fcgi*.sock-* ;;
	apache-fcgid) set -- "$USEROPS_FCGID_DIR"/* ;;
	*) set -- "$USEROPS_POOL_SOCKET" ;;
	esac
	for socket in "$@"; do
		[[ -S $socket ]] && echo "$socket"
	done
	return 0
}

# Prints the PIDs of the userops-fcgi workers behind the stack's front end,
# sorted: the userops-fcgi descendants of the front end (lighttpd's bin-path,
# mod_fcgid) or of the pool's supervisor, or the workers that spawn-fcgi
# started. The second lighttpd's workers are left out.
frontend_worker_pids() {
	local file
	local -a roots=()
	for file in "$USEROPS_STACK_DIR/pids/30-$ASSERT_FRONTEND.pid" "$USEROPS_STACK_DIR/pids/25-pool.pid"; do
		[[ -r $file ]] && roots+=("$(<"$file")")
	done
	{
		cat "$USEROPS_STACK_DIR"/pids/25-pool-*.pid 2>/dev/null || true
		ps -eo pid=,ppid=,comm= | awk -v roots="${roots[*]}" '
			BEGIN { split(roots, list, " "); for (i in list) root[list[i]] = 1 }
			{ parent[$1] = $2; command[$1] = $3 }
			END {
				for (pid in parent) {
					if (command[pid] != "userops-fcgi")
						continue
					for (up = parent[pid]; up in parent && !(up in root); up = parent[up])
						;
					if (up in root)
						print pid
				}
			}'
	} | sort -n
}

# Prints an id that is unique to this run, for user ids and fingerprints.
unique_id() {
	ASSERT_SEQUENCE=$((${ASSERT_SEQUENCE:-0} + 1))
	printf '%s-%s-%s-%s\n' "$1" "$$" "$RANDOM" "$ASSERT_SEQUENCE"
}

# Runs userops-ctl against the stack's configuration (USEROPS_CTL_CONF when
# set, else USEROPS_CONF). Its stderr is passed on after it exits, and also
# appended to USEROPS_CTL_LOG when that is set, so that tests/run-all can
# search it for sanitizer reports.
ctl() {
	local status=0 stderr_file
	# A file per call, since a test may run several at once in the background.
	stderr_file=$(mktemp "$ASSERT_TMP/ctl-stderr.XXXXXX")
	USEROPS_SQL_DIR=$USEROPS_SQL_DIR "$USEROPS_BIN_DIR/userops-ctl" \
		-c "${USEROPS_CTL_CONF:-$USEROPS_CONF}" "$@" 2>"$stderr_file" || status=$?
	if [[ -n ${USEROPS_CTL_LOG:-} ]]; then
		cat "$stderr_file" >>"$USEROPS_CTL_LOG"
	fi
	cat "$stderr_file" >&2
	rm -f -- "$stderr_file"
	return "$status"
}

# Prints a bearer token for USER, valid TTL seconds (default 600).
mint_token() {
	local output
	output=$(ctl issue-token --user "$1" --ttl "${2:-600}") || return 1
	# The token is the last non-empty line, without surrounding white space.
	awk 'NF { line = $0 } END { gsub(/[ \t]/, "", line); print line }' <<<"$output"
}

# Prints a service token for the service NAME with the space-separated
# SCOPES, signed with the [internal] secret, valid TTL seconds (default 600).
mint_service_token() {
	local output
	output=$(ctl issue-token --service "$1" --scope "$2" --ttl "${3:-600}") || return 1
	awk 'NF { line = $0 } END { gsub(/[ \t]/, "", line); print line }' <<<"$output"
}

# Creates an operation with userops-ctl create-operation ARG... and prints
# the challenge object it returns.
create_operation() {
	ctl create-operation "$@"
}

# Prints a new random base32 TOTP secret (160 bits, as RFC 4226 recommends).
new_totp_secret() {
	head -c 20 /dev/urandom | base32 | tr -d '=\n'
	echo
}

# Enrols USER with the base32 SECRET through standard input.
enroll_totp() {
	printf '%s\n' "$2" | ctl totp-enroll --user "$1" --secret-file - >/dev/null
}

# Prints the TOTP code of SECRET now, or at the time TIME (oathtool --now).
totp_code() {
	if [[ -n ${2:-} ]]; then
		oathtool --totp -b --now="$2" "$1"
	else
		oathtool --totp -b "$1"
	fi
}

# Reads the Maildir of the SMTP sink. Subcommands:
#   count ADDRESS    number of messages whose envelope names ADDRESS
#   latest ADDRESS   path of the newest such message
#   code ADDRESS     the code in its text: a line of exactly code_length
#                    digits, else the first such run of digits
mail_tool() {
	/usr/bin/python3 - "$USEROPS_MAILDIR" "$ASSERT_CODE_LENGTH" "$@" <<'EOF'
import email
import email.policy
import os
import re
import sys

maildir, code_length, command, address = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


def messages_to(address):
    found = []
    for folder in ("new", "cur"):
        path = os.path.join(maildir, folder)
        if not os.path.isdir(path):
            continue
        for name in os.listdir(path):
            file = os.path.join(path, name)
            with open(file, "rb") as handle:
                message = email.message_from_binary_file(handle, policy=email.policy.default)
            recipients = [r.strip().lower() for r in str(message.get("X-RcptTo", "")).split(",")]
            if address.lower() in recipients:
                found.append((os.stat(file).st_mtime_ns, name, file, message))
    found.sort(key=lambda item: (item[0], item[1]))
    return found


found = messages_to(address)
if command == "count":
    print(len(found))
    sys.exit(0)
if not found:
    sys.exit("no mail to %s in %s" % (address, maildir))
newest = found[-1]
if command == "latest":
    print(newest[2])
    sys.exit(0)
part = newest[3].get_body(preferencelist=("plain",))
text = part.get_content() if part is not None else ""
# The template puts the code on a line of its own. A parameter value with
# as many digits elsewhere in the text must not be taken for it.
match = re.search(r"^[ \t]*(\d{%d})[ \t]*$" % code_length, text, re.MULTILINE)
if not match:
    match = re.search(r"(?<!\d)(\d{%d})(?!\d)" % code_length, text)
if not match:
    sys.exit("no %d-digit code in %s" % (code_length, newest[2]))
print(match.group(1))
EOF
}

mail_count() {
	mail_tool count "$1"
}

# Waits until at least COUNT messages to ADDRESS arrived, up to TIMEOUT
# seconds (default 20); fails the case when they do not.
mail_wait() {
	local address=$1 count=$2 timeout=${3:-20} tries
	for ((tries = 0; tries < timeout * 5; tries++)); do
		if (($(mail_count "$address") >= count)); then
			return 0
		fi
		sleep 0.2
	done
	assert_fail "mail $count to $address did not arrive within $timeout s"
}

# Prints the code in the newest message to ADDRESS.
mail_latest_code() {
	mail_tool code "$1"
}
