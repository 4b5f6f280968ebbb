//! Fluvio's errors as the interface's kinds: which ones pass with time (the job retries them),
//! which mean a position is gone, and which are for good.

use fluvio::{FluvioError, ProducerError};
use fluvio_protocol::link::ErrorCode;
use fluvio_sc_schema::ApiError;
use fluvio_socket::SocketError;
use stockflow_transport::{Error, ErrorKind};

/// The kind of an error code an SPU or the SC answered with.
pub fn kind_of_code(code: &ErrorCode) -> ErrorKind {
    use ErrorCode as C;
    match code {
        // Below the log's start (retention deleted it): the SPU says "evicted".
        C::OffsetOutOfRange | C::OffsetEvicted { .. } => ErrorKind::OffsetOutOfRange,
        C::TopicNotFound | C::TopicDeleted => ErrorKind::UnknownTopic,
        // An SPU just restarted, or a topic just provisioned: passes.
        C::PartitionNotLeader => ErrorKind::Unreachable,
        C::NotLeaderForPartition
        | C::SpuOffline
        | C::SpuNotFound
        | C::SpuError
        | C::PartitionPendingInitialization
        | C::TopicPendingInitialization
        | C::TopicNotProvisioned
        | C::FetchSessionNotFoud
        | C::MaxRetryReached => ErrorKind::Unreachable,
        C::PermissionDenied | C::MessageTooLarge => ErrorKind::Refused,
        C::TopicInvalidConfiguration
        | C::TopicInvalidName
        | C::InvalidCreateRequest
        | C::TopicInvalidReplicaType => ErrorKind::Config,
        _ => ErrorKind::Other,
    }
}

fn kind_of_api(e: &ApiError) -> ErrorKind {
    match e {
        ApiError::Code(code, _) => kind_of_code(code),
        ApiError::NoResourceFound(_) => ErrorKind::UnknownTopic,
    }
}

fn kind_of_socket(e: &SocketError) -> ErrorKind {
    match e {
        SocketError::Io { source, .. } => kind_of_io(source),
        SocketError::SocketClosed | SocketError::SocketStale => ErrorKind::Unreachable,
    }
}

fn kind_of_io(e: &std::io::Error) -> ErrorKind {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::TimedOut | K::WouldBlock => ErrorKind::Timeout,
        K::InvalidInput => ErrorKind::Config,
        K::PermissionDenied => ErrorKind::Refused,
        _ => ErrorKind::Unreachable,
    }
}

fn kind_of_fluvio(e: &FluvioError) -> ErrorKind {
    match e {
        FluvioError::Io(io) => kind_of_io(io),
        FluvioError::TopicNotFound(_) => ErrorKind::UnknownTopic,
        FluvioError::PartitionNotFound(..) => ErrorKind::UnknownPartition,
        FluvioError::SPUNotFound(_) => ErrorKind::Unreachable,
        FluvioError::Socket(s) => kind_of_socket(s),
        FluvioError::AdminApi(a) => kind_of_api(a),
        FluvioError::ClientConfig(_)
        | FluvioError::ConsumerConfig(_)
        | FluvioError::TopicProducerConfigBuilder(_)
        | FluvioError::NegativeOffset(_)
        | FluvioError::CrossingOffsets(..) => ErrorKind::Config,
        FluvioError::MinimumPlatformVersion { .. } | FluvioError::MaximumPlatformVersion { .. } => {
            ErrorKind::Refused
        }
        FluvioError::Producer(p) => kind_of_producer(p),
        _ => ErrorKind::Other,
    }
}

fn kind_of_producer(p: &ProducerError) -> ErrorKind {
    match p {
        ProducerError::SpuErrorCode(code) => kind_of_code(code),
        ProducerError::RecordTooLarge(..) => ErrorKind::Refused,
        ProducerError::InvalidConfiguration(_) => ErrorKind::Config,
        ProducerError::PartitionNotFound(_) => ErrorKind::UnknownPartition,
        ProducerError::ProduceRequestRetryTimeout(_) | ProducerError::BatchQueueWaitTimeout => {
            ErrorKind::Timeout
        }
        _ => ErrorKind::Other,
    }
}

/// Maps an error of the `fluvio` crate (an `anyhow::Error` around its own types) to the
/// interface's kinds.
pub fn map_error(context: impl Into<String>, e: &anyhow::Error) -> Error {
    let kind = e
        .chain()
        .find_map(|cause| {
            if let Some(f) = cause.downcast_ref::<FluvioError>() {
                Some(kind_of_fluvio(f))
            } else if let Some(c) = cause.downcast_ref::<ErrorCode>() {
                Some(kind_of_code(c))
            } else if let Some(s) = cause.downcast_ref::<SocketError>() {
                Some(kind_of_socket(s))
            } else if let Some(p) = cause.downcast_ref::<ProducerError>() {
                Some(kind_of_producer(p))
            } else if let Some(a) = cause.downcast_ref::<ApiError>() {
                Some(kind_of_api(a))
            } else {
                cause.downcast_ref::<std::io::Error>().map(kind_of_io)
            }
        })
        .unwrap_or(ErrorKind::Other);
    Error::new(kind, context, format!("{e:#}"))
}

/// An error code as the interface's error.
pub fn code_error(context: impl Into<String>, code: &ErrorCode) -> Error {
    Error::new(kind_of_code(code), context, code.to_string())
}

/// Whether creating a topic failed because it exists.
pub(crate) fn already_exists(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<FluvioError>(),
            Some(FluvioError::AdminApi(ApiError::Code(
                ErrorCode::TopicAlreadyExists,
                _
            )))
        ) || matches!(
            cause.downcast_ref::<ApiError>(),
            Some(ApiError::Code(ErrorCode::TopicAlreadyExists, _))
        ) || matches!(
            cause.downcast_ref::<ErrorCode>(),
            Some(ErrorCode::TopicAlreadyExists)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_gone_and_outages_are_told_apart() {
        let gone = map_error("x", &anyhow::Error::new(ErrorCode::OffsetOutOfRange));
        assert_eq!(gone.kind, ErrorKind::OffsetOutOfRange);
        assert!(!gone.is_retryable());

        let down = map_error(
            "x",
            &anyhow::Error::new(FluvioError::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "refused",
            ))),
        );
        assert_eq!(down.kind, ErrorKind::Unreachable);
        assert!(down.is_retryable());

        let offline = map_error("x", &anyhow::Error::new(ErrorCode::SpuOffline));
        assert!(offline.is_retryable());
        let not_yet = map_error("x", &anyhow::Error::new(ErrorCode::PartitionNotLeader));
        assert!(not_yet.is_retryable());
        let evicted = map_error(
            "x",
            &anyhow::Error::new(ErrorCode::OffsetEvicted {
                offset: 3,
                next_available: 10,
            }),
        );
        assert_eq!(evicted.kind, ErrorKind::OffsetOutOfRange);

        let missing = map_error(
            "x",
            &anyhow::Error::new(FluvioError::TopicNotFound("t".into())),
        );
        assert_eq!(missing.kind, ErrorKind::UnknownTopic);
        assert!(!missing.is_retryable());

        // Context added on top keeps the cause's kind.
        let wrapped = anyhow::Error::new(ErrorCode::OffsetOutOfRange).context("reading t/0");
        assert_eq!(map_error("x", &wrapped).kind, ErrorKind::OffsetOutOfRange);
    }
}
