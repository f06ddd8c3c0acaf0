#!/usr/bin/python3
"""Seed the benchmark database of bench/run directly in MariaDB.

Commands:
  pending  insert pending e-mail operations whose codes this script draws,
           each with the 'sent' outbox row of its first code mail. Then
           write the work file that the wrk scripts and db_client read: a
           comment line starting with '#', then uuid, user, fingerprint,
           token and code per line, tab-separated.
  filler   insert finished operations with MariaDB's Sequence engine
           (INSERT ... SELECT FROM seq_1_to_N), in batches
  clear    delete the operations that `pending` inserted, and empty the
           audit trail, the outcome events and the outbox

A pending row is what userops-ctl create-operation would store for an
operation with the e-mail factor only. Its code_hmac is computed as
crypto_code_hmac in src/crypto.c does: HMAC-SHA256 keyed with the pepper over
the uuid's 16 bytes, the SHA-256 of the params column (compact JSON with
members sorted by name) and the code's ASCII digits. Secrets are read as
config_read_secret in src/config.c reads them: the file's bytes without
leading and trailing ASCII white space.

The script talks to MariaDB through the mariadb client as root over the unix
socket (unix_socket authentication), and loads rows with LOAD DATA LOCAL
INFILE.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import random
import subprocess
import sys
import tempfile
import time

# User ids of the rows that `pending` inserts start with this, so that
# `clear` finds them through the index on (user_id, created_at).
PENDING_USER_PREFIX = "bench-"
FILLER_USER_PREFIX = "filler-"

CODE_DIGITS = 6
KIND = "withdrawal"
LOCALE = "en"

OPERATION_COLUMNS = (
    "uuid, user_id, kind, locale, params, fingerprint_sha256, email, email_factor,"
    " otp_factor, status, created_at, expires_at, finished_at, wrong_attempts, resends,"
    " last_mail_at, code_hmac, previous_code_hmac"
)

# ASCII white space as config_is_space in src/config.c defines it.
SECRET_WHITESPACE = b" \t\r\n\v\f"


def fail(message):
    print(f"seed: {message}", file=sys.stderr)
    sys.exit(1)


def read_secret(path):
    """Return the secret in path as userops reads it: trimmed of ASCII white space."""
    try:
        with open(path, "rb") as handle:
            secret = handle.read().strip(SECRET_WHITESPACE)
    except OSError as error:
        fail(f"cannot read secret file {path}: {error.strerror}")
    if not secret:
        fail(f"secret file {path} is empty")
    return secret


def run_sql(args, sql, database=True):
    """Run SQL through the mariadb client; return its standard output."""
    command = [
        "mariadb",
        "--no-defaults",
        f"--socket={args.socket}",
        "--user=root",
        "--batch",
        "--skip-column-names",
        "--local-infile=1",
    ]
    if database:
        command.append(f"--database={args.database}")
    result = subprocess.run(command, input=sql, text=True, capture_output=True, check=False)
    if result.returncode != 0:
        fail(f"mariadb failed on {args.database}: {result.stderr.strip()}")
    return result.stdout


def base64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def hs256_token(secret, subject, issued_at, expires_at):
    """Return a compact HS256 JWT with the claims sub, iat and exp."""
    header = base64url(b'{"alg":"HS256","typ":"JWT"}')
    claims = json.dumps(
        {"sub": subject, "iat": issued_at, "exp": expires_at}, separators=(",", ":")
    )
    signing_input = f"{header}.{base64url(claims.encode('utf-8'))}"
    signature = hmac.digest(secret, signing_input.encode("ascii"), "sha256")
    return f"{signing_input}.{base64url(signature)}"


def params_json(amount_cents):
    """Return the params column: compact JSON with members sorted by name, as userops stores it."""
    amount = f"{amount_cents // 100}.{amount_cents % 100:02d}"
    return json.dumps({"amount": amount, "currency": "EUR"}, separators=(",", ":"), sort_keys=True)


def code_hmac(pepper, uuid_bytes, params, code):
    params_sha256 = hashlib.sha256(params.encode("utf-8")).digest()
    return hmac.digest(pepper, uuid_bytes + params_sha256 + code.encode("ascii"), "sha256")


def random_uuid4(rng):
    """Return 16 random bytes with the version (4) and variant bits of RFC 9562."""
    raw = bytearray(rng.getrandbits(128).to_bytes(16, "big"))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return bytes(raw)


def uuid_text(raw):
    text = raw.hex()
    return f"{text[0:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:32]}"


def load_data(args, path, table, columns, assignments):
    """Load a tab-separated file into table with LOAD DATA LOCAL INFILE."""
    sql = (
        f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {table}"
        " CHARACTER SET utf8mb4 FIELDS TERMINATED BY '\\t' LINES TERMINATED BY '\\n'"
        f" ({columns}) SET {assignments};"
    )
    run_sql(args, sql)


def command_pending(args):
    pepper = read_secret(args.pepper_file)
    token_secret = read_secret(args.hs_secret_file)
    # Benchmark operations and codes need no cryptographic randomness. The
    # batch tag keeps user ids apart from those of an earlier call without `clear`.
    rng = random.Random(int.from_bytes(os.urandom(16), "big"))
    batch = f"{rng.getrandbits(24):06x}"
    now = int(time.time())
    # The first code mail is dated 300 s back, past the default
    # resend_cooldown of 60 s, so that the first resend is allowed.
    created_at = now - 300
    expires_at = now + args.valid_for
    token_expires_at = now + args.valid_for

    out_dir = os.path.dirname(os.path.abspath(args.out))
    with tempfile.TemporaryDirectory(dir=out_dir, prefix="seed-") as scratch:
        operations_path = os.path.join(scratch, "operations.tsv")
        outbox_path = os.path.join(scratch, "outbox.tsv")
        with open(operations_path, "w", encoding="utf-8") as operations, open(
            outbox_path, "w", encoding="utf-8"
        ) as outbox, open(args.out, "w", encoding="ascii") as work:
            # db_client of bench/ceilings skips lines that start with '#'.
            work.write("# uuid\tuser\tfingerprint\ttoken\tcode\n")
            for index in range(args.count):
                # Consecutive operations share a user, so a new one starts
                # every operations_per_user rows.
                if index % args.operations_per_user == 0:
                    user_number = index // args.operations_per_user
                    user_id = f"{PENDING_USER_PREFIX}{batch}-{user_number}"
                    fingerprint = f"dev-{batch}-{user_number}"
                    fingerprint_hex = hashlib.sha256(fingerprint.encode("ascii")).hexdigest()
                    token = hs256_token(token_secret, user_id, now, token_expires_at)
                    email = f"u{user_number}.{batch}@example.com"

                uuid_bytes = random_uuid4(rng)
                code = f"{rng.randrange(10**CODE_DIGITS):0{CODE_DIGITS}d}"
                params = params_json(rng.randrange(100, 500000))
                hmac_hex = code_hmac(pepper, uuid_bytes, params, code).hex()
                operations.write(
                    f"{uuid_bytes.hex()}\t{user_id}\t{KIND}\t{LOCALE}\t{params}"
                    f"\t{fingerprint_hex}\t{email}\t1\t0\tpending\t{created_at}\t{expires_at}"
                    f"\t\\N\t0\t0\t{created_at}\t{hmac_hex}\t\\N\n"
                )
                outbox.write(
                    f"{uuid_bytes.hex()}\t{email}\tcode\t{LOCALE}\t{KIND}\t{params}"
                    f"\tsent\t{created_at + 1}\t1\t{created_at}\t250 2.0.0 Ok\t{created_at}\n"
                )
                work.write(f"{uuid_text(uuid_bytes)}\t{user_id}\t{fingerprint}\t{token}\t{code}\n")

        load_data(
            args,
            operations_path,
            "operations",
            "@uuid, user_id, kind, locale, params, @fingerprint, email, email_factor,"
            " otp_factor, status, created_at, expires_at, finished_at, wrong_attempts,"
            " resends, last_mail_at, @code_hmac, @previous_code_hmac",
            "uuid = UNHEX(@uuid), fingerprint_sha256 = UNHEX(@fingerprint),"
            " code_hmac = UNHEX(@code_hmac), previous_code_hmac = NULL",
        )
        load_data(
            args,
            outbox_path,
            "mail_outbox",
            "@uuid, recipient, template, locale, kind, params, status, status_at, tries,"
            " next_try_at, last_reply, created_at",
            "operation_uuid = UNHEX(@uuid), code_sealed = NULL, seal_key_id = NULL",
        )
    print(
        f"seed: {args.count} pending operations of {-(-args.count // args.operations_per_user)}"
        f" users in {args.database}, valid for {args.valid_for} s; work file {args.out}",
        file=sys.stderr,
    )


def filler_select(rows, low, high, now):
    """Return the SELECT that builds filler rows low to high of rows from seq_LOW_to_HIGH.

    The uuids spread evenly over the key space: the first 8 bytes are
    seq * 2^64 / rows and the last 8 the sequence number. So random uuids of
    new operations fall among them as among real ones, while each batch
    appends in primary key order. Each user has 20 of the rows. Of every 10
    rows, 7 are confirmed, 1 cancelled, 1 expired and 1 rejected. created_at
    rises with seq over the 90 days before now.
    """
    step = (1 << 64) // (rows + 1)
    span = 90 * 86400
    start = now - span - 3600
    users = max(1, rows // 20)
    return f"""
SELECT
    UNHEX(CONCAT(LPAD(HEX(seq * {step}), 16, '0'), LPAD(HEX(seq), 16, '0'))),
    CONCAT('{FILLER_USER_PREFIX}', seq MOD {users}),
    '{KIND}', '{LOCALE}',
    CONCAT('{{"amount":"', 1 + seq MOD 5000, '.00","currency":"EUR"}}'),
    UNHEX(SHA2(CONCAT('dev-', seq MOD {users}), 256)),
    CONCAT('filler', seq MOD {users}, '@example.com'),
    1, 0,
    ELT(1 + seq MOD 10, 'confirmed', 'confirmed', 'confirmed', 'confirmed', 'confirmed',
        'confirmed', 'confirmed', 'cancelled', 'expired', 'rejected'),
    {start} + seq * {span} DIV {rows},
    {start} + seq * {span} DIV {rows} + 600,
    {start} + seq * {span} DIV {rows} + IF(seq MOD 10 = 8, 600, 45),
    IF(seq MOD 10 = 9, 5, 0),
    0,
    {start} + seq * {span} DIV {rows},
    UNHEX(SHA2(CONCAT('filler-code-', seq), 256)),
    NULL
FROM seq_{low}_to_{high}"""


def command_filler(args):
    if args.rows < 1:
        fail(f"--rows must be at least 1, got {args.rows}")
    engines = run_sql(args, "SELECT SUPPORT FROM information_schema.ENGINES WHERE ENGINE = 'SEQUENCE'")
    if engines.strip() not in ("YES", "DEFAULT"):
        fail("MariaDB's Sequence engine is not available; it ships with MariaDB 10.0.3 and later")
    if args.replace:
        run_sql(args, "TRUNCATE TABLE operations; TRUNCATE TABLE audit_log;"
                " TRUNCATE TABLE operation_events; TRUNCATE TABLE mail_outbox;")
    now = int(time.time())
    started = time.monotonic()
    for low in range(1, args.rows + 1, args.batch):
        high = min(args.rows, low + args.batch - 1)
        run_sql(
            args,
            f"INSERT INTO operations ({OPERATION_COLUMNS}) {filler_select(args.rows, low, high, now)};",
        )
        if args.rows > args.batch:
            print(
                f"seed: {high} of {args.rows} filler rows in {args.database}"
                f" after {time.monotonic() - started:.0f} s",
                file=sys.stderr,
            )
    print(
        f"seed: {args.rows} finished filler operations in {args.database}"
        f" in {time.monotonic() - started:.1f} s",
        file=sys.stderr,
    )


def command_clear(args):
    run_sql(args, "TRUNCATE TABLE audit_log; TRUNCATE TABLE operation_events;"
            " TRUNCATE TABLE mail_outbox;")
    # Chunks keep each transaction, and its undo log, small.
    deleted = 0
    while True:
        output = run_sql(
            args,
            f"DELETE FROM operations WHERE user_id LIKE '{PENDING_USER_PREFIX}%' LIMIT 50000;"
            " SELECT ROW_COUNT();",
        )
        count = int(output.split()[-1])
        deleted += count
        if count < 50000:
            break
    print(f"seed: deleted {deleted} benchmark operations from {args.database}", file=sys.stderr)


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", required=True, help="MariaDB's unix socket")
    parser.add_argument("--database", required=True, help="database name")
    commands = parser.add_subparsers(dest="command", required=True)

    pending = commands.add_parser("pending", help="insert pending operations and write the work file")
    pending.add_argument("--count", type=positive_int, required=True, help="operations to insert")
    pending.add_argument("--out", required=True, help="work file to write (tab-separated)")
    pending.add_argument("--pepper-file", required=True, help="userops' [operations] pepper_file")
    pending.add_argument("--hs-secret-file", required=True, help="userops' [auth] hs_secret_file")
    pending.add_argument("--operations-per-user", type=positive_int, default=5,
                         help="consecutive operations that share a user, device and token (default 5)")
    pending.add_argument("--valid-for", type=positive_int, default=3 * 3600,
                         help="seconds until the operations and tokens expire (default 10800)")

    filler = commands.add_parser("filler", help="insert finished operations")
    filler.add_argument("--rows", type=int, required=True, help="rows to insert")
    filler.add_argument("--batch", type=positive_int, default=500000,
                        help="rows per INSERT ... SELECT statement (default 500000)")
    filler.add_argument("--replace", action="store_true",
                        help="empty operations, audit_log, operation_events and mail_outbox first")

    commands.add_parser("clear", help="delete the pending operations' rows and the side tables")
    return parser.parse_args()


def main():
    args = parse_args()
    if args.command == "pending":
        command_pending(args)
    elif args.command == "filler":
        command_filler(args)
    else:
        command_clear(args)


if __name__ == "__main__":
    main()
