-- Initial schema: operations, TOTP enrolments, the mail outbox and the audit trail.
-- Times are Unix seconds (BIGINT) unless the column name ends in _ms.
-- Every table is InnoDB with a primary key, so the schema also runs on Galera.

CREATE TABLE operations (
    uuid               BINARY(16)      NOT NULL,
    user_id            VARCHAR(255)    NOT NULL,
    kind               VARCHAR(64)     NOT NULL,
    locale             VARCHAR(16)     NOT NULL,
    -- Parameters as compact JSON with members sorted by name; its SHA-256
    -- is bound into every code's HMAC.
    params             TEXT            NOT NULL,
    fingerprint_sha256 BINARY(32)      NOT NULL,
    email              VARCHAR(320)    NULL,
    email_factor       TINYINT(1)      NOT NULL,
    otp_factor         TINYINT(1)      NOT NULL,
    status             ENUM('pending', 'confirmed', 'cancelled', 'rejected', 'expired') NOT NULL,
    created_at         BIGINT          NOT NULL,
    expires_at         BIGINT          NOT NULL,
    finished_at        BIGINT          NULL,
    wrong_attempts     INT UNSIGNED    NOT NULL DEFAULT 0,
    resends            INT UNSIGNED    NOT NULL DEFAULT 0,
    last_mail_at       BIGINT          NULL,
    -- HMAC-SHA256 of the newest e-mail code and of the one before it.
    code_hmac          BINARY(32)      NULL,
    previous_code_hmac BINARY(32)      NULL,
    PRIMARY KEY (uuid),
    KEY operations_user (user_id, created_at),
    KEY operations_pending_expiry (status, expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE totp_enrolments (
    user_id         VARCHAR(255)   NOT NULL,
    -- The base32-decoded secret sealed with AES-256-GCM under seal_key_id.
    secret_sealed   VARBINARY(255) NOT NULL,
    seal_key_id     VARCHAR(16)    NOT NULL,
    -- The last 30-second step accepted for this user, for replay protection.
    last_step       BIGINT         NULL,
    created_at      BIGINT         NOT NULL,
    PRIMARY KEY (user_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE mail_outbox (
    id              BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    operation_uuid  BINARY(16)      NOT NULL,
    recipient       VARCHAR(320)    NOT NULL,
    template        VARCHAR(64)     NOT NULL,
    locale          VARCHAR(16)     NOT NULL,
    kind            VARCHAR(64)     NOT NULL,
    params          TEXT            NOT NULL,
    -- The code sealed with AES-256-GCM; NULL once the row is final.
    code_sealed     VARBINARY(255)  NULL,
    seal_key_id     VARCHAR(16)     NULL,
    status          ENUM('queued', 'sent', 'retrying', 'failed', 'dropped') NOT NULL,
    status_at       BIGINT          NOT NULL,
    tries           INT UNSIGNED    NOT NULL DEFAULT 0,
    next_try_at     BIGINT          NOT NULL,
    last_reply      VARCHAR(512)    NULL,
    created_at      BIGINT          NOT NULL,
    PRIMARY KEY (id),
    KEY mail_outbox_due (status, next_try_at),
    KEY mail_outbox_operation (operation_uuid, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE audit_log (
    id                 BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    at_ms              BIGINT          NOT NULL,
    operation_uuid     BINARY(16)      NOT NULL,
    user_id            VARCHAR(255)    NOT NULL,
    event              VARCHAR(32)     NOT NULL,
    fingerprint_sha256 BINARY(32)      NULL,
    client_address     VARCHAR(64)     NULL,
    request_id         VARCHAR(64)     NULL,
    detail             VARCHAR(255)    NULL,
    PRIMARY KEY (id),
    KEY audit_log_operation (operation_uuid, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
