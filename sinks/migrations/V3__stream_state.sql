-- Where each job stands in each source partition (written in the same transaction as the
-- rows), and the records the sources rejected.
CREATE TABLE IF NOT EXISTS stream_progress (
    job             VARCHAR(64)  NOT NULL,
    topic           VARCHAR(249) NOT NULL,
    kafka_partition INT          NOT NULL,
    next_offset     BIGINT       NOT NULL,
    updated_at      TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (job, topic, kafka_partition)
) ENGINE = InnoDB;

CREATE TABLE IF NOT EXISTS dead_letters (
    id              BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    topic           VARCHAR(249) NOT NULL,
    kafka_partition INT          NOT NULL,
    kafka_offset    BIGINT       NOT NULL,
    payload         MEDIUMBLOB   NOT NULL,
    code            VARCHAR(64)  NOT NULL,
    reason          TEXT         NOT NULL,
    received_at     TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    UNIQUE KEY dead_letters_position (topic, kafka_partition, kafka_offset)
) ENGINE = InnoDB;
