-- Outcome events for followers of GET /internal/events, and the Idempotency-Key
-- rows of POST /internal/operations.
-- Times are Unix seconds (BIGINT) unless the column name ends in _ms.

-- One row per operation that reached a final state, written in the same
-- transaction as the change. The id is not AUTO_INCREMENT: it is drawn from
-- event_sequence under a row lock held until commit, so ids are in commit
-- order and a follower that reads "id > last seen" never skips a row that
-- commits later with a lower id.
CREATE TABLE operation_events (
    id              BIGINT UNSIGNED NOT NULL,
    operation_uuid  BINARY(16)      NOT NULL,
    user_id         VARCHAR(255)    NOT NULL,
    kind            VARCHAR(64)     NOT NULL,
    status          ENUM('confirmed', 'cancelled', 'rejected', 'expired') NOT NULL,
    -- When the operation reached the state: its finished_at.
    at              BIGINT          NOT NULL,
    created_at_ms   BIGINT          NOT NULL,
    PRIMARY KEY (id),
    KEY operation_events_operation (operation_uuid)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The last event id handed out; exactly one row, id 1.
CREATE TABLE event_sequence (
    id      TINYINT UNSIGNED NOT NULL,
    last_id BIGINT UNSIGNED  NOT NULL,
    PRIMARY KEY (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

INSERT INTO event_sequence (id, last_id) VALUES (1, 0);

-- The first response to a service's create request with an Idempotency-Key,
-- kept 24 hours. operation_uuid and response stay NULL only inside the
-- transaction that inserts the row, which fills them before it commits.
CREATE TABLE idempotency_keys (
    service         VARCHAR(255)    NOT NULL,
    idem_key        VARCHAR(128)    NOT NULL,
    request_sha256  BINARY(32)      NOT NULL,
    operation_uuid  BINARY(16)      NULL,
    response        TEXT            NULL,
    created_at      BIGINT          NOT NULL,
    PRIMARY KEY (service, idem_key),
    KEY idempotency_keys_created (created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
