<?php
/*
 * HS256 bearer tokens (JWT, RFC 7519), checked as userops checks them in
 * src/auth.c with algorithms = HS256 and one secret: the same parts, the
 * same claims and the same order of 401001, 401002 and 401003.
 */

declare(strict_types=1);

namespace UseropsPeer;

/* Tokens longer than this are rejected unread. */
const TOKEN_MAX = 8192;

const USER_ID_MAX = 255;

/* The verifier's settings, from the pool's environment. */
final class TokenSettings
{
    public function __construct(
        public readonly string $secret,
        public readonly ?string $keyId,
        public readonly int $leeway,
        public readonly ?string $issuer,
        public readonly ?string $audience,
        public readonly ?string $excludedAudience,
    ) {
    }
}

/*
 * Decodes unpadded base64url strictly: only the URL alphabet, no length
 * that no encoding gives and zero unused bits, so that each byte string has
 * one accepted encoding. Returns null for anything else.
 */
function base64url_decode(string $text): ?string
{
    if (strlen($text) % 4 === 1 || preg_match('/^[A-Za-z0-9_-]*$/D', $text) !== 1) {
        return null;
    }
    $bytes = base64_decode(strtr($text, '-_', '+/'), true);
    if ($bytes === false || rtrim(strtr(base64_encode($bytes), '+/', '-_'), '=') !== $text) {
        return null;
    }
    return $bytes;
}

/* Parses the decoded text of a token part as one JSON object, or returns null. */
function decode_json_object(?string $text): ?array
{
    if ($text === null || str_contains($text, "\0") || !str_starts_with(ltrim($text, " \t\r\n"), '{')) {
        return null;
    }
    try {
        $value = json_decode($text, true, 512, JSON_THROW_ON_ERROR);
    } catch (\JsonException) {
        return null;
    }
    return is_array($value) ? $value : null;
}

/* Tells whether aud, a string or an array of strings, contains audience. */
function audience_matches(mixed $aud, string $audience): bool
{
    if (is_string($aud)) {
        return $aud === $audience;
    }
    return is_array($aud) && array_is_list($aud) && in_array($audience, $aud, true);
}

/*
 * Reads the sub claim as userops does: a string of 1 to 255 bytes without
 * C0, DEL or C1 control characters, or an integer from 0 to 2^63 - 1
 * written as plain digits, taken as those digits. Returns null otherwise.
 */
function token_subject(array $claims, string $payload): ?string
{
    $sub = $claims['sub'] ?? null;
    if (is_string($sub)) {
        $length = strlen($sub);
        if ($length === 0 || $length > USER_ID_MAX || preg_match('/[\x00-\x1f\x7f]|\xc2[\x80-\x9f]/', $sub) === 1) {
            return null;
        }
        return $sub;
    }
    if (!is_int($sub) || $sub < 0) {
        return null;
    }

    // json_decode reads -0 as 0, so the digits come from the payload text, the last "sub" as json_decode keeps.
    // NOTE: a "sub" member of a nested object after the top-level one is taken instead, which userops would not.
    if (preg_match_all('/"sub"[ \t\r\n]*:[ \t\r\n]*([^ \t\r\n,}]+)/', $payload, $matches) < 1) {
        return null;
    }
    $digits = end($matches[1]);
    if (preg_match('/^(?:0|[1-9][0-9]{0,18})$/D', $digits) !== 1 || $digits !== (string) $sub) {
        return null;
    }
    return $digits;
}

/*
 * Verifies the Authorization header and returns the user id (sub). Throws
 * ApiError 401001 for a missing token, 401002 for an invalid one and
 * 401003 for an expired one that is otherwise valid.
 */
function verify_bearer(?string $authorization, TokenSettings $settings, int $now): string
{
    // The scheme "Bearer" in any case and a space, then the token less surrounding blanks.
    if ($authorization === null || strncasecmp($authorization, 'Bearer', 6) !== 0
        || ($authorization[6] ?? '') !== ' ') {
        throw unauthorized(401001);
    }
    $token = trim(substr($authorization, 7), " \t");
    if ($token === '') {
        throw unauthorized(401001);
    }
    if (strlen($token) > TOKEN_MAX) {
        throw unauthorized(401002);
    }

    $parts = explode('.', $token);
    if (count($parts) !== 3 || $parts[0] === '' || $parts[1] === '' || $parts[2] === '') {
        throw unauthorized(401002);
    }
    $signature = base64url_decode($parts[2]);
    $payload = base64url_decode($parts[1]);
    $header = decode_json_object(base64url_decode($parts[0]));
    $claims = decode_json_object($payload);
    if ($signature === null || $header === null || $claims === null) {
        throw unauthorized(401002);
    }

    // alg must be the one configured algorithm, so "none" never passes; crit is never understood.
    if (($header['alg'] ?? null) !== 'HS256' || array_key_exists('crit', $header)) {
        throw unauthorized(401002);
    }
    if (array_key_exists('kid', $header)
        && (!is_string($header['kid']) || $settings->keyId === null || $header['kid'] !== $settings->keyId)) {
        throw unauthorized(401002);
    }
    $expected = hash_hmac('sha256', $parts[0] . '.' . $parts[1], $settings->secret, true);
    if (!hash_equals($expected, $signature)) {
        throw unauthorized(401002);
    }

    // NOTE: json_decode turns an integer beyond 2^63 - 1 into a float, rejected here; userops clamps it.
    $exp = $claims['exp'] ?? null;
    $nbf = $claims['nbf'] ?? null;
    if (!is_int($exp) || (array_key_exists('nbf', $claims) && (!is_int($nbf) || $nbf > $now + $settings->leeway))) {
        throw unauthorized(401002);
    }
    if ($settings->issuer !== null && ($claims['iss'] ?? null) !== $settings->issuer) {
        throw unauthorized(401002);
    }
    if ($settings->audience !== null && !audience_matches($claims['aud'] ?? null, $settings->audience)) {
        throw unauthorized(401002);
    }
    if ($settings->excludedAudience !== null && array_key_exists('aud', $claims)
        && audience_matches($claims['aud'], $settings->excludedAudience)) {
        throw unauthorized(401002);
    }
    $subject = token_subject($claims, $payload);
    if ($subject === null) {
        throw unauthorized(401002);
    }

    // Expiry is checked last, so 401003 means that the token is otherwise valid.
    if ($exp <= $now - $settings->leeway) {
        throw unauthorized(401003);
    }
    return $subject;
}

/* Builds a 401 error with the WWW-Authenticate header of RFC 6750. */
function unauthorized(int $code): ApiError
{
    $challenge = $code === 401001 ? 'Bearer realm="userops"' : 'Bearer realm="userops", error="invalid_token"';
    return new ApiError($code, [], ['WWW-Authenticate' => $challenge]);
}
