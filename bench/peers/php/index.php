<?php
/*
 * Front controller of the PHP peer of userops: PUT /operations/{uuid}/confirm,
 * /cancel and /resend, and GET /health, with userops' checks in userops'
 * order and its response bytes. Settings come from the php-fpm pool's
 * environment (USEROPS_PEER_*), which run.sh fills from a userops.conf.
 */

declare(strict_types=1);

namespace UseropsPeer;

use PDO;
use PDOException;

require __DIR__ . '/lib/http.php';
require __DIR__ . '/lib/token.php';
require __DIR__ . '/lib/operations.php';

const ACTIONS = ['cancel', 'confirm', 'resend'];

/* MariaDB errors after which the client may retry: lock conflicts and lost or refused connections. */
const RETRYABLE_DB_ERRORS = [1053, 1205, 1213, 1927, 2002, 2006, 2013, 2055];

/* Returns the pool's environment variable USEROPS_PEER_<name>, or default when it is unset or empty. */
function setting(string $name, ?string $default = null): ?string
{
    $value = getenv('USEROPS_PEER_' . $name);
    return $value === false || $value === '' ? $default : $value;
}

function required_setting(string $name): string
{
    $value = setting($name);
    if ($value === null) {
        throw new \RuntimeException("USEROPS_PEER_$name is not set in the pool's environment");
    }
    return $value;
}

/* Writes one line to the pool's error_log file. */
function log_line(string $line): void
{
    error_log('userops-php ' . $line);
}

/*
 * Opens the MariaDB connection with userops' session settings. With
 * USEROPS_PEER_DB_PERSISTENT=1 (the default) each php-fpm child keeps its
 * connection between requests, as a userops worker does.
 */
function connect_database(): PDO
{
    $socket = setting('DB_SOCKET');
    $dsn = $socket !== null
        ? sprintf('mysql:unix_socket=%s;dbname=%s;charset=utf8mb4', $socket, required_setting('DB_NAME'))
        : sprintf('mysql:host=%s;port=%s;dbname=%s;charset=utf8mb4', setting('DB_HOST', '127.0.0.1'),
            setting('DB_PORT', '3306'), required_setting('DB_NAME'));
    $password = read_secret(required_setting('DB_PASSWORD_FILE'), 1);
    return new PDO($dsn, required_setting('DB_USER'), $password, [
        PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
        PDO::ATTR_PERSISTENT => setting('DB_PERSISTENT', '1') === '1',
        PDO::ATTR_EMULATE_PREPARES => setting('EMULATE_PREPARES', '0') === '1',
        PDO::ATTR_STRINGIFY_FETCHES => false,
        // An UPDATE reports the rows it matched, changed or not, as with CLIENT_FOUND_ROWS in userops.
        PDO::MYSQL_ATTR_FOUND_ROWS => true,
        PDO::MYSQL_ATTR_INIT_COMMAND =>
            "SET SESSION tx_isolation = 'READ-COMMITTED', innodb_lock_wait_timeout = 10, autocommit = 1",
    ]);
}

/*
 * Splits SCRIPT_NAME + PATH_INFO into segments, or returns null for a path
 * with an empty (a trailing '/' included), "." or ".." segment.
 */
function path_segments(): ?array
{
    $path = ($_SERVER['SCRIPT_NAME'] ?? '') . ($_SERVER['PATH_INFO'] ?? '');
    if ($path === '' || $path[0] !== '/') {
        return null;
    }
    $segments = explode('/', substr($path, 1));
    foreach ($segments as $segment) {
        if ($segment === '' || $segment === '.' || $segment === '..') {
            return null;
        }
    }
    return $segments;
}

/*
 * Matches the final segments of the path, as userops does under any mount:
 * returns [route, uuid text] with route "health" or one of ACTIONS, or null.
 * A route below a segment named "internal" is reserved, so it is null too.
 */
function match_route(array $segments): ?array
{
    $count = count($segments);
    if ($count >= 3 && $segments[$count - 3] === 'operations' && in_array($segments[$count - 1], ACTIONS, true)) {
        $route = [$segments[$count - 1], $segments[$count - 2]];
        $before = array_slice($segments, 0, $count - 3);
    } elseif ($segments[$count - 1] === 'health') {
        $route = ['health', null];
        $before = array_slice($segments, 0, $count - 1);
    } else {
        return null;
    }
    return in_array('internal', $before, true) ? null : $route;
}

/* Returns the lower-case form of a uuid of any case, or null when the text is not one. */
function parse_uuid(string $text): ?string
{
    if (preg_match('/^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$/D', $text) !== 1) {
        return null;
    }
    return strtolower($text);
}

function token_settings(): TokenSettings
{
    return new TokenSettings(
        read_secret(required_setting('HS_SECRET_FILE'), 32),
        setting('HS_KEY_ID'),
        (int) setting('LEEWAY', '30'),
        setting('ISSUER'),
        setting('AUDIENCE'),
        setting('EXCLUDED_AUDIENCE'),
    );
}

function operation_settings(): OperationSettings
{
    return new OperationSettings(
        (int) setting('CODE_LENGTH', '6'),
        (int) setting('MAX_ATTEMPTS', '5'),
        setting('ACCEPT_PREVIOUS_CODE', 'yes') === 'yes',
        (int) setting('RESEND_COOLDOWN', '60'),
        (int) setting('MAX_RESENDS', '3'),
        required_setting('PEPPER_FILE'),
        required_setting('SEAL_KEY_FILE'),
    );
}

/* Sends GET /health: 200 {"status":"ok"} when MariaDB responds, else 503 {"status":"unavailable"}. */
function handle_health(string $requestId): int
{
    try {
        connect_database()->query('SELECT 1')->fetchColumn();
        send_json(200, '{"status":"ok"}', $requestId);
        return 200;
    } catch (\Throwable $error) {
        log_line(sprintf('health check failed: %s request_id=%s', $error->getMessage(), $requestId));
        send_json(503, '{"status":"unavailable"}', $requestId);
        return 503;
    }
}

/*
 * Runs the checks of an operation route in userops' order (token,
 * Fingerprint, uuid, body), then the action's transaction. Returns the
 * response data; throws ApiError for an error response.
 */
function handle_operation(string $action, string $uuidText, string $requestId, array &$logged): array
{
    $now = time();
    $userId = verify_bearer($_SERVER['HTTP_AUTHORIZATION'] ?? null, token_settings(), $now);
    $logged['user'] = $userId;
    $fingerprint = require_fingerprint();
    $uuid = parse_uuid($uuidText);
    if ($uuid === null) {
        throw new ApiError(400003);
    }
    $logged['operation'] = $uuid;
    $body = read_json_body((int) setting('MAX_BODY', '16384'));

    $actor = new Actor($userId, hash('sha256', $fingerprint, true), $_SERVER['REMOTE_ADDR'] ?? null, $requestId);
    $request = new OperationRequest(connect_database(), operation_settings(), $actor, $uuid, $now);
    return match ($action) {
        'confirm' => $request->confirm($body),
        'cancel' => $request->cancel(),
        'resend' => $request->resend(),
    };
}

/* Turns an exception that is not an ApiError into 503001 or 500001, logged with the request id. */
function internal_error(\Throwable $error, string $requestId): ApiError
{
    $driverCode = $error instanceof PDOException ? (int) ($error->errorInfo[1] ?? 0) : 0;
    if ($error instanceof PDOException && $driverCode === 0 && preg_match('/\[(\d{4})\]/', $error->getMessage(), $match)) {
        $driverCode = (int) $match[1];
    }
    log_line(sprintf('request failed: %s: %s request_id=%s', get_class($error), $error->getMessage(), $requestId));
    if (in_array($driverCode, RETRYABLE_DB_ERRORS, true)) {
        return new ApiError(503001, [], ['Retry-After' => '1']);
    }
    return new ApiError(500001);
}

function main(): void
{
    $start = hrtime(true);
    $requestId = request_id();
    $method = $_SERVER['REQUEST_METHOD'] ?? '';
    $logged = ['route' => 'none', 'user' => '-', 'operation' => '-'];
    $status = 200;
    $code = 0;

    $segments = path_segments();
    $route = $segments !== null ? match_route($segments) : null;
    try {
        if ($route === null) {
            throw new ApiError(404002);
        }
        $logged['route'] = $route[0];
        $allowed = $route[0] === 'health' ? 'GET' : 'PUT';
        if ($method !== $allowed) {
            throw new ApiError(405001, [], ['Allow' => $allowed]);
        }
        if ($route[0] === 'health') {
            $status = handle_health($requestId);
        } else {
            $data = handle_operation($route[0], $route[1], $requestId, $logged);
            if ($route[0] === 'resend') {
                send_json(200, json_encode($data, JSON_FLAGS), $requestId);
            } else {
                send_success($data, $requestId);
            }
        }
    } catch (\Throwable $error) {
        if (!$error instanceof ApiError) {
            $error = internal_error($error, $requestId);
        }
        $status = intdiv($error->errorCode, 1000);
        $code = $error->errorCode;
        send_error($error, $requestId);
    }

    if (setting('LOG_REQUESTS', '1') === '1') {
        log_line(sprintf('request method=%s route=%s status=%d code=%d duration_ms=%.1f request_id=%s user=%s operation=%s',
            preg_replace('/[^!-~]/', '?', $method), $logged['route'], $status, $code, (hrtime(true) - $start) / 1e6,
            $requestId, preg_replace('/[^!-~]/', '?', $logged['user']), $logged['operation']));
    }
}

main();
