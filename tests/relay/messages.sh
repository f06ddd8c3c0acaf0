#!/usr/bin/env bash
# The code mail as a mail reader receives it. Each mail uses the template of
# the operation's locale, and Python's email parser decodes its Cyrillic,
# Chinese or emoji subject back exactly. Every line is under 78 characters,
# the body gives the expiry in minutes and as a UTC time, and the Message-ID
# is under the configured domain.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/assert.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/assert.sh"
# shellcheck source=SCRIPTDIR/../lib/operations.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/operations.sh"
# shellcheck source=SCRIPTDIR/../lib/relay.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/relay.sh"
trap relay_cleanup EXIT

# The shipped templates plus a locale "eo" (a test-only folder) whose subject mixes an emoji,
# Cyrillic and the operation's kind.
TEMPLATES=$RELAY_TMP/templates
EMOJI_SUBJECT_TEMPLATE='🔐 Подтвердите {{kind}} ✅'
mkdir -p "$TEMPLATES"
cp -r "$ASSERT_REPO/etc/templates/." "$TEMPLATES/"
mkdir -p "$TEMPLATES/eo"
{
	echo "Subject: $EMOJI_SUBJECT_TEMPLATE"
	tail -n +2 "$ASSERT_REPO/etc/templates/en/code.txt"
} >"$TEMPLATES/eo/code.txt"
RELAY_TEMPLATES=$TEMPLATES
RELAY_MAILER_CONF=("message_id_domain = mail.example.net")
relay_setup

relay_port
	PORT=$RELAY_PORT
relay_start messages "$PORT"
mailer_start messages "$(relay_write_conf messages "host = 127.0.0.1" "port = $PORT" "tls = none" "timeout = 5")"

# Sends a mail in LOCALE and decodes it into DECODED (mail_decode.py's JSON).
mail_in_locale() {
	local locale=$1 address row
	address="$(unique_id "$locale")@example.com"
	relay_create "$address" --locale "$locale" --param 'note=émoji 🎉 и текст' >/dev/null ||
		assert_fail "create-operation --locale $locale failed" || return 1
	row=$(relay_wait_status "$address" sent 15)
	assert_equal "outbox row" "sent	1" "$row" || return 1
	MAIL_FILE=$(relay_latest messages "$address")
	DECODED=$(/usr/bin/python3 "$ASSERT_REPO/tests/lib/mail_decode.py" "$MAIL_FILE") ||
		assert_fail "mail_decode.py failed" || return 1
}

# Prints the subject line of the shipped template for LOCALE.
template_subject() {
	sed -n '1s/^Subject: //p' "$TEMPLATES/$1/code.txt"
}

# Checks what every message must hold, whatever its language.
check_common() {
	assert_json_in "$DECODED" '.defects | length' 0
	local longest
	longest=$(jq -r .longest_line <<<"$DECODED")
	((longest < 78)) || assert_fail "a line of $longest characters"
	local message_id
	message_id=$(/usr/bin/python3 -c 'import email, sys
with open(sys.argv[1], "rb") as f:
    print(str(email.message_from_binary_file(f)["Message-ID"]).strip())' "$MAIL_FILE")
	[[ $message_id == "<"*"@mail.example.net>" ]] ||
		assert_fail "Message-ID $message_id is not under mail.example.net"
	jq -r .text <<<"$DECODED" | grep -qE '[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2} UTC' ||
		assert_fail "the body names no UTC expiry time"
	jq -r .text <<<"$DECODED" | grep -qF 'émoji 🎉 и текст' ||
		assert_fail "the body lost the parameter's non-ASCII text"
}

# Like assert_json, on a JSON text given as the first argument.
assert_json_in() {
	local actual
	actual=$(jq -r "$2" <<<"$1")
	assert_equal "$2" "$3" "$actual"
}

russian_mail() {
	mail_in_locale ru || return 1
	assert_equal "decoded subject" "$(template_subject ru)" "$(jq -r .subject <<<"$DECODED")"
	check_common
	jq -r .text <<<"$DECODED" | grep -qF 'Код действителен 10 мин.' ||
		assert_fail "the Russian body does not give the minutes"
}

chinese_mail() {
	mail_in_locale zh || return 1
	assert_equal "decoded subject" "$(template_subject zh)" "$(jq -r .subject <<<"$DECODED")"
	check_common
}

emoji_subject() {
	mail_in_locale eo || return 1
	assert_equal "decoded subject" "🔐 Подтвердите withdrawal ✅" "$(jq -r .subject <<<"$DECODED")"
	check_common
}

english_mail() {
	mail_in_locale en || return 1
	assert_equal "decoded subject" "$(template_subject en)" "$(jq -r .subject <<<"$DECODED")"
	check_common
	jq -r .text <<<"$DECODED" | grep -qF 'valid for 10 min, until' ||
		assert_fail "the English body does not give the minutes"
}

test_case "Russian mail: Cyrillic subject decodes back" russian_mail
test_case "Chinese mail: subject decodes back" chinese_mail
test_case "emoji and Cyrillic subject decodes back" emoji_subject
test_case "English mail: minutes, UTC time, Message-ID domain" english_mail
relay_cleanup
test_finish
