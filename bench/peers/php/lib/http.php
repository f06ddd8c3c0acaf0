<?php
/*
 * The HTTP side of the PHP peer: request checks, the error table and the
 * JSON responses, byte for byte as userops writes them (src/response.c,
 * src/transport.c, src/body.c).
 */

declare(strict_types=1);

namespace UseropsPeer;

/* Messages of the error codes, the same text that userops sends. */
const ERROR_MESSAGES = [
    400001 => 'Invalid request parameters',
    400002 => 'Missing or invalid Fingerprint header',
    400003 => 'Invalid operation uuid',
    400004 => 'A required confirmation code is missing',
    401001 => 'Missing access token',
    401002 => 'Invalid access token',
    401003 => 'Access token expired',
    403001 => 'This device may not act on the operation',
    404001 => 'Operation not found',
    404002 => 'No such route',
    405001 => 'Method not allowed',
    409001 => 'Operation already confirmed',
    409002 => 'Operation already cancelled',
    409003 => 'Operation rejected after too many wrong codes',
    409004 => 'Operation has no e-mail factor',
    410001 => 'Operation expired',
    413001 => 'Request body too large',
    415001 => 'Body is not application/json',
    422001 => 'Wrong confirmation code',
    429001 => 'Resend too early',
    429002 => 'Resend limit reached for this operation',
    500001 => 'Internal error',
    503001 => 'Database unavailable',
];

/* Reason phrases of the status line, as userops writes them (RFC 9110 wording). */
const REASON_PHRASES = [
    200 => 'OK',
    400 => 'Bad Request',
    401 => 'Unauthorized',
    403 => 'Forbidden',
    404 => 'Not Found',
    405 => 'Method Not Allowed',
    409 => 'Conflict',
    410 => 'Gone',
    413 => 'Content Too Large',
    415 => 'Unsupported Media Type',
    422 => 'Unprocessable Content',
    429 => 'Too Many Requests',
    500 => 'Internal Server Error',
    503 => 'Service Unavailable',
];

/* json-c with JSON_C_TO_STRING_PLAIN | NOSLASHESCAPE escapes only quotes, backslashes and C0. */
const JSON_FLAGS = JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE
    | JSON_UNESCAPED_LINE_TERMINATORS | JSON_THROW_ON_ERROR;

const FINGERPRINT_MAX = 255;

/* JSON nesting that userops accepts: 16 levels, the top object being the first. */
const BODY_MAX_DEPTH = 16;

/*
 * A request that ends with an error response. The code is userops' error
 * code (HTTP status times 1000 plus a sequence number).
 */
final class ApiError extends \Exception
{
    /**
     * @param array<string, int|string> $members extra members of "error", after requestId
     * @param array<string, string>     $headers extra response headers
     */
    public function __construct(
        public readonly int $errorCode,
        public readonly array $members = [],
        public readonly array $headers = [],
    ) {
        parent::__construct(ERROR_MESSAGES[$errorCode] ?? 'Internal error');
    }
}

/* Returns the request's X-Request-Id when it is 1 to 64 of [A-Za-z0-9._-], else a new random one. */
function request_id(): string
{
    $id = $_SERVER['HTTP_X_REQUEST_ID'] ?? '';
    if (preg_match('/^[A-Za-z0-9._-]{1,64}$/D', $id) === 1) {
        return $id;
    }
    return bin2hex(random_bytes(16));
}

/* Writes the status line and the headers that every userops response carries, then the body. */
function send_json(int $status, string $body, string $requestId, array $headers = []): void
{
    header(sprintf('HTTP/1.1 %d %s', $status, REASON_PHRASES[$status] ?? 'Unknown'));
    header('Content-Type: application/json; charset=utf-8');
    header('Cache-Control: no-store');
    header('X-Request-Id: ' . $requestId);
    header('Content-Length: ' . strlen($body));
    foreach ($headers as $name => $value) {
        header($name . ': ' . $value);
    }
    echo $body;
}

function send_success(array $data, string $requestId): void
{
    $body = json_encode(
        ['success' => true, 'data' => $data, 'message' => 'Operation successful'],
        JSON_FLAGS,
    );
    send_json(200, $body, $requestId);
}

function send_error(ApiError $error, string $requestId): void
{
    $detail = ['code' => $error->errorCode, 'message' => $error->getMessage(), 'requestId' => $requestId];
    foreach ($error->members as $name => $value) {
        $detail[$name] = $value;
    }
    $body = json_encode(['success' => false, 'error' => $detail], JSON_FLAGS);
    send_json(intdiv($error->errorCode, 1000), $body, $requestId, $error->headers);
}

/* Checks the Fingerprint header: 1 to 255 characters from '!' to '~', else 400002. */
function require_fingerprint(): string
{
    $fingerprint = $_SERVER['HTTP_FINGERPRINT'] ?? '';
    if (strlen($fingerprint) > FINGERPRINT_MAX || preg_match('/^[!-~]+$/D', $fingerprint) !== 1) {
        throw new ApiError(400002);
    }
    return $fingerprint;
}

/*
 * Checks a Content-Type against application/json with optional parameters
 * (RFC 9110, section 8.3.1), any case. A charset parameter must be utf-8.
 */
function media_type_is_json(string $contentType): bool
{
    $token = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
    $value = '(?:' . $token . '|"(?:[^"\\\\]|\\\\.)*")';
    if (preg_match('/^[ \t]*application\/json(?:[ \t]*;[ \t]*(?:' . $token . '=' . $value . ')?)*[ \t]*$/iDs',
            $contentType) !== 1) {
        return false;
    }
    preg_match_all('/;[ \t]*(' . $token . ')=(' . $value . ')/s', $contentType, $parameters, PREG_SET_ORDER);
    foreach ($parameters as [, $name, $text]) {
        if (strcasecmp($name, 'charset') !== 0) {
            continue;
        }
        if ($text[0] === '"') {
            $text = preg_replace('/\\\\(.)/s', '$1', substr($text, 1, -1));
        }
        if (strcasecmp($text, 'utf-8') !== 0) {
            return false;
        }
    }
    return true;
}

/* Tells whether any key or string value, at any depth, contains a NUL character. */
function json_has_nul(array $value): bool
{
    foreach ($value as $key => $member) {
        if (is_string($key) && str_contains($key, "\0")) {
            return true;
        }
        if ((is_string($member) && str_contains($member, "\0"))
            || (is_array($member) && json_has_nul($member))) {
            return true;
        }
    }
    return false;
}

/*
 * Reads the body in userops' order of checks: size (413001), media type
 * (415001), then a complete body holding one JSON object (400001). Returns
 * the object as an array, or null for an empty body.
 *
 * NOTE: json_decode keeps the last of two members with one name, which
 * userops rejects with 400001.
 */
function read_json_body(int $maxBody): ?array
{
    $lengthText = $_SERVER['CONTENT_LENGTH'] ?? '';
    // userops rejects what does not fit a size_t as invalid; 19 digits always fit.
    if ($lengthText !== '' && (!ctype_digit($lengthText) || strlen($lengthText) > 19)) {
        throw new ApiError(400001);
    }
    $length = $lengthText === '' ? 0 : (int) $lengthText;
    if ($length > $maxBody) {
        throw new ApiError(413001);
    }
    if ($length === 0) {
        return null;
    }
    if (!media_type_is_json($_SERVER['CONTENT_TYPE'] ?? '')) {
        throw new ApiError(415001);
    }

    $text = file_get_contents('php://input', false, null, 0, $maxBody);
    if ($text === false || strlen($text) !== $length) {
        throw new ApiError(400001);
    }
    $start = ltrim($text, " \t\r\n");
    if ($start === '' || $start[0] !== '{') {
        throw new ApiError(400001);
    }
    try {
        $body = json_decode($text, true, BODY_MAX_DEPTH + 1, JSON_THROW_ON_ERROR);
    } catch (\JsonException) {
        throw new ApiError(400001);
    }
    if (!is_array($body) || json_has_nul($body)) {
        throw new ApiError(400001);
    }
    return $body;
}
