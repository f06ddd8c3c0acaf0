#!/bin/bash
# Create a throw-away certificate authority and two server certificates for
# the TLS tests, with the openssl command line tool.
#
# Usage: tests/lib/test-ca.sh DIR
#
# DIR is created if missing and these files are written into it (keys are
# EC P-256, unencrypted, mode 0600):
#
#   ca.crt, ca.key                    the test CA (CN "userops test CA")
#   localhost.crt, localhost.key      server certificate for CN localhost,
#                                     subjectAltName DNS:localhost, IP:127.0.0.1
#   wrong-host.crt, wrong-host.key    server certificate for CN wrong.example,
#                                     subjectAltName DNS:wrong.example,
#                                     signed by the same CA, so a client that
#                                     trusts ca.crt must still reject it when it
#                                     connects to localhost
#
# Every certificate is valid from the moment it is made for 30 days. Existing
# files in DIR are overwritten.

set -euo pipefail

if [[ $# -ne 1 || -z $1 ]]; then
	echo "usage: $0 DIR" >&2
	exit 2
fi

ca_dir=$1
mkdir -p "$ca_dir"
work_dir=$(mktemp -d "${TMPDIR:-/tmp}/userops-test-ca.XXXXXX")
trap 'rm -rf "$work_dir"' EXIT
umask 077

# Write an EC P-256 private key to $1.
make_key() {
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
}

# Issue a server certificate NAME.crt for the subject CN $2 with the
# subjectAltName list $3, signed by the test CA.
make_server_cert() {
	local name=$1 common_name=$2 alt_names=$3

	make_key "$ca_dir/$name.key"
	openssl req -new -key "$ca_dir/$name.key" -subj "/CN=$common_name" \
		-out "$work_dir/$name.csr"
	cat >"$work_dir/$name.ext" <<-EOF
		basicConstraints = critical, CA:FALSE
		keyUsage = critical, digitalSignature
		extendedKeyUsage = serverAuth
		subjectKeyIdentifier = hash
		authorityKeyIdentifier = keyid
		subjectAltName = $alt_names
	EOF
	openssl x509 -req -in "$work_dir/$name.csr" \
		-CA "$ca_dir/ca.crt" -CAkey "$ca_dir/ca.key" \
		-set_serial "0x$(openssl rand -hex 16)" \
		-days 30 -sha256 -extfile "$work_dir/$name.ext" -out "$ca_dir/$name.crt" 2>/dev/null
}

make_key "$ca_dir/ca.key"
openssl req -new -x509 -key "$ca_dir/ca.key" -subj "/CN=userops test CA" \
	-days 30 -sha256 -addext "basicConstraints = critical, CA:TRUE" \
	-addext "keyUsage = critical, keyCertSign, cRLSign" \
	-out "$ca_dir/ca.crt"

make_server_cert localhost localhost "DNS:localhost, IP:127.0.0.1"
make_server_cert wrong-host wrong.example "DNS:wrong.example"

chmod 0644 "$ca_dir/ca.crt" "$ca_dir/localhost.crt" "$ca_dir/wrong-host.crt"
