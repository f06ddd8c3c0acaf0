<?php
/*
 * Confirm, cancel and resend of an operation, one transaction each, with
 * the statements and the order of statements of userops (src/operations.c,
 * src/store.c), so that both leave the same rows behind.
 */

declare(strict_types=1);

namespace UseropsPeer;

use PDO;

const SQL_OPERATION_SELECT_FOR_UPDATE =
    'SELECT uuid, user_id, kind, locale, params, fingerprint_sha256, email, email_factor,'
    . ' otp_factor, status, created_at, expires_at, finished_at, wrong_attempts, resends,'
    . ' last_mail_at, code_hmac, previous_code_hmac'
    . ' FROM operations WHERE uuid = ? FOR UPDATE';

const SQL_OPERATION_UPDATE =
    'UPDATE operations SET status = ?, finished_at = ?, wrong_attempts = ?, resends = ?,'
    . ' last_mail_at = ?, code_hmac = ?, previous_code_hmac = ? WHERE uuid = ?';

const SQL_OUTBOX_INSERT =
    'INSERT INTO mail_outbox (operation_uuid, recipient, template, locale, kind, params,'
    . ' code_sealed, seal_key_id, status, status_at, tries, next_try_at, created_at)'
    . " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, 0, ?, ?)";

const SQL_AUDIT_INSERT =
    'INSERT INTO audit_log (at_ms, operation_uuid, user_id, event, fingerprint_sha256,'
    . ' client_address, request_id, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)';

const SQL_SEQUENCE_ADVANCE =
    'UPDATE event_sequence SET last_id = LAST_INSERT_ID(last_id + 1) WHERE id = 1';

const SQL_EVENT_INSERT =
    'INSERT INTO operation_events (id, operation_uuid, user_id, kind, status, at, created_at_ms)'
    . ' VALUES (?, ?, ?, ?, ?, ?, ?)';

/* The error of an action on an operation in each final state. */
const STATE_ERRORS = [
    'confirmed' => 409001,
    'cancelled' => 409002,
    'rejected' => 409003,
    'expired' => 410001,
];

/* The [operations] settings of userops.conf, passed in the pool's environment. */
final class OperationSettings
{
    public function __construct(
        public readonly int $codeLength,
        public readonly int $maxAttempts,
        public readonly bool $acceptPreviousCode,
        public readonly int $resendCooldown,
        public readonly int $maxResends,
        public readonly string $pepperFile,
        public readonly string $sealKeyFile,
    ) {
    }
}

/* The actor of a request: the token's user, the SHA-256 of its Fingerprint header, its address and its id. */
final class Actor
{
    public function __construct(
        public readonly string $userId,
        public readonly string $fingerprintSha256,
        public readonly ?string $clientAddress,
        public readonly string $requestId,
    ) {
    }
}

/* The wall clock in milliseconds, for audit_log.at_ms and operation_events.created_at_ms. */
function now_ms(): int
{
    return (int) floor(microtime(true) * 1000);
}

/*
 * Reads a secret file as userops does: the text less surrounding white
 * space, at least min_length bytes. Throws RuntimeException naming the file.
 */
function read_secret(string $path, int $minLength): string
{
    $text = @file_get_contents($path, false, null, 0, 65537);
    if ($text === false) {
        throw new \RuntimeException("cannot read secret file $path");
    }
    $secret = trim($text, " \t\r\n\v\f");
    if (strlen($secret) < max(1, $minLength)) {
        throw new \RuntimeException(sprintf('secret file %s is too short: %d bytes, at least %d needed',
            $path, strlen($secret), max(1, $minLength)));
    }
    return $secret;
}

/*
 * Returns the id and the 32 bytes of the first key of a [seal] key_file:
 * lines of ID:HEX or HEX (id "0"), blank lines and lines starting with '#'
 * skipped. Throws RuntimeException when the first key is malformed.
 */
function read_seal_key(string $path): array
{
    $text = @file_get_contents($path, false, null, 0, 65537);
    if ($text === false) {
        throw new \RuntimeException("cannot read key file $path");
    }
    foreach (explode("\n", $text) as $number => $line) {
        $line = trim($line, " \t\r\v\f");
        if ($line === '' || $line[0] === '#') {
            continue;
        }
        if (preg_match('/^(?:([0-9A-Za-z]{1,16}):)?([0-9A-Fa-f]{64})$/D', $line, $match) !== 1) {
            throw new \RuntimeException(sprintf('key file %s line %d: expected ID:HEX or HEX with 64 hex digits',
                $path, $number + 1));
        }
        return [$match[1] !== '' ? $match[1] : '0', hex2bin($match[2])];
    }
    throw new \RuntimeException("key file $path: no key found");
}

/*
 * Masks an address for emailHint: "***", the last min(3, n - 1) of the n
 * code points of the local part, then "@" and the domain. Returns null for
 * an address that userops could not mask either.
 */
function mask_email(string $address): ?string
{
    $at = strrpos($address, '@');
    if ($at === false || $at === 0 || $at === strlen($address) - 1) {
        return null;
    }
    $local = preg_split('//u', substr($address, 0, $at), -1, PREG_SPLIT_NO_EMPTY);
    if ($local === false || preg_match('//u', substr($address, $at + 1)) !== 1) {
        return null;
    }
    $shown = min(3, count($local) - 1);
    return '***' . implode('', array_slice($local, count($local) - $shown, $shown)) . substr($address, $at);
}

/*
 * Reads the code of one factor from the confirm body as userops does. The
 * code is the named member, else the lone "code" when allowed, and must be
 * a JSON string of exactly digits ASCII digits once surrounding white space
 * is removed. Throws 400004 for a missing member and 400001 for a malformed
 * one, with the member's name in "field".
 */
function read_code(?array $body, string $name, bool $loneCode, int $digits): string
{
    $field = $name;
    if ($body !== null && array_key_exists($name, $body)) {
        $member = $body[$name];
    } elseif ($loneCode && array_key_exists('code', $body)) {
        $field = 'code';
        $member = $body['code'];
    } else {
        throw new ApiError(400004, ['field' => $name]);
    }
    $code = is_string($member) ? trim($member, " \t\r\n") : '';
    if (strlen($code) !== $digits || !ctype_digit($code)) {
        throw new ApiError(400001, ['field' => $field]);
    }
    return $code;
}

/*
 * Draws a code of length digits from the CSPRNG. random_int() draws
 * uniformly from the whole range, so no digit is more likely than another.
 */
function random_code(int $length): string
{
    return str_pad((string) random_int(0, 10 ** $length - 1), $length, '0', STR_PAD_LEFT);
}

/* One request on one operation, from its lock to the end of its transaction. */
final class OperationRequest
{
    private array $op = [];
    private string $openedStatus = 'pending';
    private string $effectiveStatus = 'pending';

    public function __construct(
        private readonly PDO $db,
        private readonly OperationSettings $settings,
        private readonly Actor $actor,
        private readonly string $uuid,
        private readonly int $now,
    ) {
    }

    /* Runs action inside the request's transaction, rolled back on any exception. */
    public function run(callable $action): array
    {
        try {
            return $action();
        } catch (\Throwable $error) {
            if ($this->db->inTransaction()) {
                $this->db->rollBack();
            }
            throw $error;
        }
    }

    public function confirm(?array $body): array
    {
        return $this->run(function () use ($body): array {
            $this->open();
            $this->requirePending();

            // The lone "code" counts only when neither named member is present.
            // A missing or malformed code costs no attempt.
            $loneCode = $body !== null && !array_key_exists('emailCode', $body) && !array_key_exists('otpCode', $body);
            $emailCode = null;
            if ($this->op['email_factor']) {
                $emailCode = read_code($body, 'emailCode', $loneCode, $this->settings->codeLength);
                $loneCode = false;
            }
            if ($this->op['otp_factor']) {
                read_code($body, 'otpCode', $loneCode, 6);
                throw new \RuntimeException('the operation has the TOTP factor, which the PHP peer does not check');
            }

            if (!$this->emailCodeMatches($emailCode)) {
                $this->recordWrong();
            }
            $this->op['status'] = 'confirmed';
            $this->op['finished_at'] = $this->now;
            $this->save('confirmed', null);
            return ['uuid' => $this->uuid, 'status' => 'confirmed'];
        });
    }

    public function cancel(): array
    {
        return $this->run(function (): array {
            $this->open();

            // A second cancel succeeds without a second audit row.
            if ($this->op['status'] === 'cancelled') {
                $this->db->rollBack();
                return ['uuid' => $this->uuid, 'status' => 'cancelled'];
            }
            $this->requirePending();
            $this->op['status'] = 'cancelled';
            $this->op['finished_at'] = $this->now;
            $this->save('cancelled', null);
            return ['uuid' => $this->uuid, 'status' => 'cancelled'];
        });
    }

    public function resend(): array
    {
        return $this->run(function (): array {
            $this->open();
            $this->requirePending();
            if (!$this->op['email_factor']) {
                throw new ApiError(409004);
            }
            if ($this->op['resends'] >= $this->settings->maxResends) {
                throw new ApiError(429002);
            }
            $allowedAt = $this->resendAfter();
            if ($this->now < $allowedAt) {
                throw new ApiError(429001, [], ['Retry-After' => (string) max(1, $allowedAt - $this->now)]);
            }

            $this->issueCode();
            $this->op['resends']++;
            $this->save('resent', sprintf('resend %d of %d', $this->op['resends'], $this->settings->maxResends));
            return $this->challenge();
        });
    }

    /*
     * Begins the transaction and locks the row. Another user's row gets
     * 404001 like a missing one, and a row started on another device 403001.
     */
    private function open(): void
    {
        $this->db->beginTransaction();
        $statement = $this->db->prepare(SQL_OPERATION_SELECT_FOR_UPDATE);
        $statement->execute([hex2bin(str_replace('-', '', $this->uuid))]);
        $row = $statement->fetch(PDO::FETCH_ASSOC);
        $statement->closeCursor();
        if ($row === false || $row['user_id'] !== $this->actor->userId) {
            throw new ApiError(404001);
        }
        $row['email_factor'] = (bool) $row['email_factor'];
        $row['otp_factor'] = (bool) $row['otp_factor'];
        foreach (['created_at', 'expires_at', 'finished_at', 'wrong_attempts', 'resends', 'last_mail_at'] as $name) {
            $row[$name] = $row[$name] === null ? null : (int) $row[$name];
        }
        $this->op = $row;
        $this->openedStatus = $row['status'];
        $this->effectiveStatus = $row['status'] === 'pending' && $this->now >= $row['expires_at'] ? 'expired' : $row['status'];
        if (!hash_equals($row['fingerprint_sha256'], $this->actor->fingerprintSha256)) {
            throw new ApiError(403001);
        }
    }

    /*
     * Continues only on a pending operation. A pending row past expires_at
     * is written as expired now, with its audit row and event, and the
     * request gets 410001.
     */
    private function requirePending(): void
    {
        if ($this->op['status'] === 'pending' && $this->effectiveStatus === 'expired') {
            $this->op['status'] = 'expired';
            $this->op['finished_at'] = $this->op['expires_at'];
            $this->save('expired', null);
            throw new ApiError(410001);
        }
        if ($this->op['status'] !== 'pending') {
            throw new ApiError(STATE_ERRORS[$this->op['status']] ?? 500001);
        }
    }

    /* Compares the code's HMAC with the newest code's and, when allowed, the one before, in constant time. */
    private function emailCodeMatches(string $code): bool
    {
        $pepper = read_secret($this->settings->pepperFile, 32);
        $hmac = hash_hmac('sha256', $this->op['uuid'] . hash('sha256', $this->op['params'], true) . $code, $pepper, true);
        $current = $this->op['code_hmac'] !== null && hash_equals($this->op['code_hmac'], $hmac);
        $previous = $this->op['previous_code_hmac'] !== null && $this->settings->acceptPreviousCode
            && hash_equals($this->op['previous_code_hmac'], $hmac);
        return $current || $previous;
    }

    /*
     * Counts a wrong try and commits it although the response is an error.
     * The try that reaches max_attempts rejects the operation and still
     * gets 422001, with no attempts left.
     */
    private function recordWrong(): never
    {
        $maxAttempts = $this->settings->maxAttempts;
        $this->op['wrong_attempts']++;
        $this->audit('wrong_code', sprintf('attempt %d of %d, wrong: email', $this->op['wrong_attempts'], $maxAttempts));
        if ($this->op['wrong_attempts'] >= $maxAttempts) {
            $this->op['status'] = 'rejected';
            $this->op['finished_at'] = $this->now;
            $this->audit('rejected', null);
        }
        $this->save(null, null);
        throw new ApiError(422001, ['attemptsLeft' => max(0, $maxAttempts - $this->op['wrong_attempts'])]);
    }

    /* Draws a new code, keeps the last code's HMAC when allowed, and queues the sealed code's mail. */
    private function issueCode(): void
    {
        $pepper = read_secret($this->settings->pepperFile, 32);
        [$keyId, $key] = read_seal_key($this->settings->sealKeyFile);
        $code = random_code($this->settings->codeLength);

        $keepPrevious = $this->settings->acceptPreviousCode && $this->op['code_hmac'] !== null;
        $this->op['previous_code_hmac'] = $keepPrevious ? $this->op['code_hmac'] : null;
        $this->op['code_hmac'] = hash_hmac('sha256',
            $this->op['uuid'] . hash('sha256', $this->op['params'], true) . $code, $pepper, true);

        // The mailer opens nonce || ciphertext || tag with the 16 uuid bytes as the AAD.
        $nonce = random_bytes(12);
        $tag = '';
        $cipher = openssl_encrypt($code, 'aes-256-gcm', $key, OPENSSL_RAW_DATA, $nonce, $tag, $this->op['uuid'], 16);
        if ($cipher === false) {
            throw new \RuntimeException('cannot seal a new code: ' . openssl_error_string());
        }

        $this->op['last_mail_at'] = $this->now;
        $this->db->prepare(SQL_OUTBOX_INSERT)->execute([
            $this->op['uuid'], $this->op['email'], 'code', $this->op['locale'], $this->op['kind'],
            $this->op['params'], $nonce . $cipher . $tag, $keyId, $this->now, $this->now, $this->now,
        ]);
    }

    /* Returns when the next resend is allowed, or null when none is possible. */
    private function resendAfter(): ?int
    {
        if (!$this->op['email_factor'] || $this->op['resends'] >= $this->settings->maxResends
            || $this->op['status'] !== 'pending' || $this->now >= $this->op['expires_at']) {
            return null;
        }
        $lastMailAt = $this->op['last_mail_at'] ?? $this->op['created_at'];
        return $lastMailAt + ($this->settings->resendCooldown << min($this->op['resends'], 30));
    }

    /* The challenge object of resend, members in userops' order. */
    private function challenge(): array
    {
        $resendAfter = $this->resendAfter();
        if ($resendAfter !== null && $resendAfter >= $this->op['expires_at']) {
            $resendAfter = null;
        }
        $hint = null;
        if ($this->op['email_factor'] && $this->op['email'] !== null) {
            $hint = mask_email($this->op['email']);
        }
        return [
            'email2fa' => $this->op['email_factor'],
            'emailHint' => $hint,
            'expiresAt' => $this->op['expires_at'],
            'otp2fa' => $this->op['otp_factor'],
            'resendEmailAfter' => $resendAfter,
            'uuid' => $this->uuid,
        ];
    }

    private function audit(string $event, ?string $detail): void
    {
        $this->db->prepare(SQL_AUDIT_INSERT)->execute([
            now_ms(), $this->op['uuid'], $this->op['user_id'], $event, $this->actor->fingerprintSha256,
            $this->actor->clientAddress, $this->actor->requestId, $detail,
        ]);
    }

    /*
     * Writes the row, an audit row for event unless it is null, the outcome
     * event when the row has just reached a final state, and commits. The
     * sequence row is locked last, after the operation row.
     */
    private function save(?string $event, ?string $detail): void
    {
        $op = $this->op;
        $update = $this->db->prepare(SQL_OPERATION_UPDATE);
        $update->execute([
            $op['status'], $op['finished_at'], $op['wrong_attempts'], $op['resends'],
            $op['last_mail_at'], $op['code_hmac'], $op['previous_code_hmac'], $op['uuid'],
        ]);
        if ($update->rowCount() === 0) {
            throw new \RuntimeException('the locked operation row was not found by its update');
        }
        if ($event !== null) {
            $this->audit($event, $detail);
        }
        if ($op['status'] !== 'pending' && $op['status'] !== $this->openedStatus) {
            $this->appendEvent();
        }
        $this->db->commit();
    }

    /*
     * Advances the sequence, which keeps its row locked until the commit, and
     * inserts the outcome event under the new id, as userops' store.c does.
     */
    private function appendEvent(): void
    {
        $advance = $this->db->prepare(SQL_SEQUENCE_ADVANCE);
        $advance->execute();
        if ($advance->rowCount() !== 1) {
            throw new \RuntimeException('event_sequence has no row with id 1: apply the schema migrations');
        }
        $id = (int) $this->db->lastInsertId();
        $op = $this->op;
        $this->db->prepare(SQL_EVENT_INSERT)->execute([
            $id, $op['uuid'], $op['user_id'], $op['kind'], $op['status'], $op['finished_at'], now_ms(),
        ]);
    }
}
