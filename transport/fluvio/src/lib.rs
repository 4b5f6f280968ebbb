//! The Fluvio backend of the log interface, on the `fluvio` client crate.
//!
//! - Topics, partitions, their leaders and the SPUs' addresses come from the SC (Fluvio's
//!   streaming controller) through its admin API.
//! - A partition's range (log start, end) comes from the partition's leader SPU itself, with
//!   the SPU protocol's `FetchOffsets` request: the SC's copy of it lags behind the SPU, and
//!   the job's check of its log must never see an end below what it committed.
//! - Records are read through one consumer stream per partition ([`FluvioLanes`]) merged by
//!   the shared reader (`stockflow_transport::reader`), and written by one producer per topic.
//!
//! Fluvio's futures run on its own executor (async-io); the interface is blocking, so every
//! call here waits on them with a deadline. Errors are mapped to the interface's kinds here:
//! nothing above this crate sees a Fluvio type.

use fluvio::metadata::partition::PartitionSpec;
use fluvio::metadata::spu::SpuSpec;
use fluvio::metadata::topic::{
    CleanupPolicy, SegmentBasedPolicy, TopicResolution, TopicSpec as FluvioTopicSpec,
    TopicStorageConfig,
};
use fluvio::{Fluvio, FluvioAdmin, FluvioClusterConfig};
use futures::future::{select, Either};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use stockflow_transport::{
    Error, ErrorKind, Log, LogProducer, LogSource, Position, Result, Retention, TopicRetention,
    TopicSpec, TopicState, Watermarks,
};

pub mod cluster;
mod errors;
mod offsets;
mod producer;
mod source;

pub use errors::map_error;
pub use producer::FluvioProducer;
pub use source::{FluvioLanes, FluvioSource};

/// How long one request to the cluster may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a created topic may take to have a leader for every partition.
const PROVISION_TIMEOUT: Duration = Duration::from_secs(30);
/// Fluvio's retention is in whole seconds; this many is "kept forever" (136 years).
pub const FOREVER_SECS: u32 = u32::MAX;

/// How to reach a Fluvio cluster.
#[derive(Debug, Clone)]
pub struct FluvioConfig {
    /// The SC's public endpoint, `host:port` (a local cluster: 127.0.0.1:9003).
    pub endpoint: String,
}

impl FluvioConfig {
    pub fn new(endpoint: impl Into<String>) -> Self {
        FluvioConfig {
            endpoint: endpoint.into(),
        }
    }
}

/// Runs `fut` to completion on this thread, giving up after `timeout` with a `Timeout` error
/// that names `what`.
pub(crate) fn block_on<T>(
    what: &str,
    timeout: Duration,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    futures::executor::block_on(async {
        let fut = std::pin::pin!(fut);
        let timer = std::pin::pin!(fluvio_future::timer::sleep(timeout));
        match select(fut, timer).await {
            Either::Left((r, _)) => r,
            Either::Right(((), _)) => Err(Error::new(
                ErrorKind::Timeout,
                what,
                format!("the Fluvio cluster did not answer within {timeout:?}"),
            )),
        }
    })
}

/// A topic's name on Fluvio. Fluvio names topics as DNS labels (lowercase letters, digits and
/// `-`, at most 63, starting and ending with a letter or digit), so the pipeline's
/// `StockExchange` is `stockexchange` there: names are lowercased, and a name that is still no
/// DNS label (`_`, `.`) is refused with the rule. The interface keeps the name it was given:
/// records, positions and the job's stored offsets carry it.
pub fn fluvio_topic(name: &str) -> Result<String> {
    let lower = name.to_ascii_lowercase();
    let b = lower.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let valid = !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| alnum(c) || *c == b'-')
        && b.first().is_some_and(alnum)
        && b.last().is_some_and(alnum);
    if valid {
        Ok(lower)
    } else {
        Err(Error::new(
            ErrorKind::Config,
            format!("topic {name:?}"),
            "Fluvio topic names are lowercase letters, digits and '-', at most 63, starting and \
             ending with a letter or digit: choose another name (--prices-topic, \
             --holdings-topic, --topic)",
        ))
    }
}

/// A partition id of the interface as Fluvio's (u32).
pub(crate) fn fluvio_partition(topic: &str, partition: i32) -> Result<u32> {
    u32::try_from(partition).map_err(|_| {
        Error::new(
            ErrorKind::UnknownPartition,
            format!("{topic}/{partition}"),
            "a partition id is never negative",
        )
    })
}

/// The connection: a client (producers, consumers) and its admin handle, made on first use and
/// made again after the cluster went away.
pub(crate) struct Connection {
    pub endpoint: String,
    client: Mutex<Option<Arc<Client>>>,
}

pub(crate) struct Client {
    pub fluvio: Fluvio,
    pub admin: FluvioAdmin,
    pub offsets: offsets::SpuSockets,
}

impl Client {
    /// The SPUs registered with the SC.
    pub async fn spus(&self) -> Result<Vec<fluvio::metadata::objects::Metadata<SpuSpec>>> {
        self.admin
            .all::<SpuSpec>()
            .await
            .map_err(|e| map_error("listing the SPUs", &e))
    }
}

impl Connection {
    /// The current client, connecting if there is none.
    pub fn client(&self) -> Result<Arc<Client>> {
        let mut slot = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = slot.as_ref() {
            return Ok(Arc::clone(c));
        }
        let endpoint = self.endpoint.clone();
        let client = block_on(
            &format!("connecting to the Fluvio cluster at {endpoint}"),
            REQUEST_TIMEOUT,
            async move {
                let config = FluvioClusterConfig::new(endpoint.clone());
                let context = format!("connecting to the Fluvio cluster at {endpoint}");
                let fluvio = Fluvio::connect_with_config(&config)
                    .await
                    .map_err(|e| map_error(context.clone(), &e))?;
                let admin = fluvio.admin().await;
                Ok(Client {
                    fluvio,
                    admin,
                    offsets: offsets::SpuSockets::default(),
                })
            },
        )?;
        let client = Arc::new(client);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    /// Forgets the client after an error that may mean the cluster went away: the next call
    /// connects again (the job retries such errors).
    pub fn forget_if_gone(&self, e: &Error) {
        if matches!(e.kind, ErrorKind::Unreachable | ErrorKind::Timeout) {
            self.forget();
        }
    }

    /// Forgets the client: the next call connects again.
    pub fn forget(&self) {
        *self.client.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Runs `f` with the client, within `timeout`; a failure that may mean the cluster went
    /// away drops the connection.
    pub fn with<T, F, Fut>(&self, what: &str, timeout: Duration, f: F) -> Result<T>
    where
        F: FnOnce(Arc<Client>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let client = self.client()?;
        let r = block_on(what, timeout, f(client));
        if let Err(e) = &r {
            self.forget_if_gone(e);
        }
        r
    }
}

/// A Fluvio cluster as a [`Log`]. Clones share one connection.
#[derive(Clone)]
pub struct FluvioLog {
    conn: Arc<Connection>,
}

impl FluvioLog {
    /// A log on the cluster at `config.endpoint`; nothing is contacted until first use.
    pub fn new(config: &FluvioConfig) -> Result<Self> {
        if config.endpoint.trim().is_empty() {
            return Err(Error::new(
                ErrorKind::Config,
                "the Fluvio endpoint",
                "is empty: give the SC's host:port (--fluvio-endpoint, STOCKFLOW_FLUVIO_ENDPOINT)",
            ));
        }
        Ok(FluvioLog {
            conn: Arc::new(Connection {
                endpoint: config.endpoint.clone(),
                client: Mutex::new(None),
            }),
        })
    }

    /// The topic's specification as the SC holds it, with whether every partition has a leader.
    fn topic_spec(&self, topic: &str) -> Result<(FluvioTopicSpec, bool)> {
        let name = fluvio_topic(topic)?;
        self.conn.with(
            &format!("reading topic {topic}"),
            REQUEST_TIMEOUT,
            |c| async move {
                let found = c
                    .admin
                    .list::<FluvioTopicSpec, String>(vec![name.clone()])
                    .await
                    .map_err(|e| map_error(format!("reading topic {name}"), &e))?;
                let t = found.into_iter().find(|m| m.name == name).ok_or_else(|| {
                    Error::new(ErrorKind::UnknownTopic, &name, "the topic does not exist")
                })?;
                let ready = t.status.resolution == TopicResolution::Provisioned;
                Ok((t.spec, ready))
            },
        )
    }

    /// The topic's partitions and, per partition, the SPU that leads it.
    fn leaders(&self, topic: &str) -> Result<Vec<(i32, i32)>> {
        let (spec, _) = self.topic_spec(topic)?;
        let count = spec.partitions();
        let t = fluvio_topic(topic)?;
        let names: Vec<String> = (0..count).map(|p| format!("{t}-{p}")).collect();
        self.conn.with(
            &format!("reading the partitions of {topic}"),
            REQUEST_TIMEOUT,
            |c| async move {
                let found = c
                    .admin
                    .list::<PartitionSpec, String>(names)
                    .await
                    .map_err(|e| map_error(format!("reading the partitions of {t}"), &e))?;
                let mut out = Vec::with_capacity(found.len());
                for m in found {
                    let id = m
                        .name
                        .rsplit_once('-')
                        .filter(|(name, _)| *name == t)
                        .and_then(|(_, p)| p.parse::<i32>().ok());
                    if let Some(id) = id {
                        out.push((id, m.spec.leader));
                    }
                }
                out.sort_unstable();
                if out.len() != usize::try_from(count).unwrap_or(usize::MAX) {
                    // The SC has not listed every partition yet (a topic being provisioned).
                    return Err(Error::new(
                        ErrorKind::Unreachable,
                        format!("reading the partitions of {t}"),
                        format!("the SC lists {} of its {count} partitions", out.len()),
                    ));
                }
                Ok(out)
            },
        )
    }

    /// Waits until every partition of a topic has a leader (a created topic is provisioned
    /// asynchronously by the SC).
    fn wait_provisioned(&self, topic: &str) -> Result<()> {
        let deadline = Instant::now() + PROVISION_TIMEOUT;
        loop {
            let (_, ready) = self.topic_spec(topic)?;
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!("creating topic {topic}"),
                    format!(
                        "the SC has not provisioned it within {PROVISION_TIMEOUT:?}: is an SPU \
                         registered and running? (`fluvio cluster status`, or the SPU's log)"
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A retention of the interface as Fluvio's cleanup policy and storage limits.
pub fn fluvio_retention(r: Retention) -> (Option<CleanupPolicy>, Option<TopicStorageConfig>) {
    match r {
        Retention::Infinite => (
            Some(CleanupPolicy::Segment(SegmentBasedPolicy {
                time_in_seconds: FOREVER_SECS,
            })),
            Some(TopicStorageConfig {
                segment_size: None,
                max_partition_size: Some(u64::MAX),
            }),
        ),
        Retention::Ms(ms) => {
            // Whole seconds, rounded up, at least Fluvio's minimum of 10.
            let secs = ms.max(0).saturating_add(999) / 1000;
            let secs = u32::try_from(secs).unwrap_or(FOREVER_SECS).max(10);
            (
                Some(CleanupPolicy::Segment(SegmentBasedPolicy {
                    time_in_seconds: secs,
                })),
                None,
            )
        }
        Retention::BrokerDefault => (None, None),
    }
}

/// Fluvio's cleanup policy and storage limits as the interface's retention figures.
pub fn retention_of(
    policy: Option<&CleanupPolicy>,
    storage: Option<&TopicStorageConfig>,
) -> TopicRetention {
    let ms = policy.map(|CleanupPolicy::Segment(s)| {
        if s.time_in_seconds == FOREVER_SECS {
            -1
        } else {
            i64::from(s.time_in_seconds) * 1000
        }
    });
    let bytes = storage.and_then(|s| s.max_partition_size).map(|b| {
        if b == u64::MAX {
            -1
        } else {
            i64::try_from(b).unwrap_or(i64::MAX)
        }
    });
    TopicRetention { ms, bytes }
}

impl Log for FluvioLog {
    fn describe(&self) -> String {
        format!("fluvio at {}", self.conn.endpoint)
    }

    fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.conn.with(
                "asking the Fluvio cluster for its SPUs",
                REQUEST_TIMEOUT.min(timeout.max(Duration::from_secs(1))),
                |c| async move {
                    if c.spus().await?.iter().any(|s| s.status.is_online()) {
                        Ok(())
                    } else {
                        Err(Error::new(
                            ErrorKind::Unreachable,
                            "the Fluvio cluster",
                            "has no SPU online (none registered, or its SPU is down)",
                        ))
                    }
                },
            );
            match r {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(Error::new(
                        e.kind,
                        format!("no Fluvio cluster ready at {}", self.conn.endpoint),
                        e.to_string(),
                    ))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    fn partitions(&self, topic: &str) -> Result<Vec<i32>> {
        let (spec, _) = self.topic_spec(topic)?;
        let n = i32::try_from(spec.partitions()).map_err(|_| {
            Error::new(ErrorKind::Other, topic, "more partitions than an i32 holds")
        })?;
        Ok((0..n).collect())
    }

    fn watermarks(&self, topic: &str) -> Result<Vec<Watermarks>> {
        let leaders = self.leaders(topic)?;
        let t = fluvio_topic(topic)?;
        self.conn.with(
            &format!("reading the offsets of {topic}"),
            REQUEST_TIMEOUT,
            |c| async move { c.offsets.watermarks(&c, &t, &leaders).await },
        )
    }

    /// Fluvio has no time index: this reads the partition from its start up to the first
    /// record stamped at or after `ms` (a linear scan, as fast as a raw consume).
    fn offset_for_time(&self, topic: &str, partition: i32, ms: i64) -> Result<Option<i64>> {
        let w = self
            .watermarks(topic)?
            .into_iter()
            .find(|w| w.partition == partition)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::UnknownPartition,
                    format!("{topic}/{partition}"),
                    "the topic has no such partition",
                )
            })?;
        source::scan_for_time(self, topic, w, ms)
    }

    fn ensure_topic(&self, spec: &TopicSpec) -> Result<TopicState> {
        let partitions = u32::try_from(spec.partitions)
            .ok()
            .filter(|&p| p >= 1)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Config,
                    &spec.name,
                    "a topic needs at least one partition",
                )
            })?;
        let mut new = FluvioTopicSpec::new_computed(partitions, 1, None);
        let (policy, storage) = fluvio_retention(spec.retention);
        if let Some(p) = policy {
            new.set_cleanup_policy(p);
        }
        if let Some(s) = storage {
            new.set_storage(s);
        }
        let name = fluvio_topic(&spec.name)?;
        let created = self.conn.with(
            &format!("creating topic {name}"),
            REQUEST_TIMEOUT,
            |c| async move {
                match c.admin.create(name.clone(), false, new).await {
                    Ok(()) => Ok(TopicState::Created),
                    Err(e) if errors::already_exists(&e) => Ok(TopicState::Existed),
                    Err(e) => Err(map_error(format!("creating topic {name}"), &e)),
                }
            },
        )?;
        match created {
            TopicState::Created => {
                tracing::info!(topic = spec.name, partitions = spec.partitions, retention = ?spec.retention, "created topic");
            }
            TopicState::Existed => {
                if spec.retention == Retention::Infinite {
                    let r = self.retention(&spec.name)?;
                    if r.ms != Some(-1) || r.bytes.is_some_and(|b| b != -1) {
                        tracing::warn!(
                            topic = spec.name,
                            retention = r.describe(),
                            "the existing topic does not keep its records forever, and Fluvio \
                             cannot change a topic's retention: its oldest records will be \
                             deleted. To keep them, recreate the topic with `stockflow topics \
                             create` after `fluvio topic delete` (its records are lost)"
                        );
                    }
                }
            }
        }
        self.wait_provisioned(&spec.name)?;
        Ok(created)
    }

    fn retention(&self, topic: &str) -> Result<TopicRetention> {
        let (spec, _) = self.topic_spec(topic)?;
        Ok(retention_of(spec.get_clean_policy(), spec.get_storage()))
    }

    fn open_source(&self, start: &[Position]) -> Result<Box<dyn LogSource>> {
        Ok(Box::new(source::open(self, start)?))
    }

    fn producer(&self) -> Result<Box<dyn LogProducer>> {
        Ok(Box::new(FluvioProducer::new(Arc::clone(&self.conn))))
    }
}

impl FluvioLog {
    pub(crate) fn connection(&self) -> &Arc<Connection> {
        &self.conn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_round_trips() {
        let (p, s) = fluvio_retention(Retention::Infinite);
        let r = retention_of(p.as_ref(), s.as_ref());
        assert_eq!(
            r,
            TopicRetention {
                ms: Some(-1),
                bytes: Some(-1)
            }
        );
        assert_eq!(r.describe(), "time infinite, size infinite");

        let (p, s) = fluvio_retention(Retention::Ms(86_400_000));
        assert_eq!(
            retention_of(p.as_ref(), s.as_ref()),
            TopicRetention {
                ms: Some(86_400_000),
                bytes: None
            }
        );
        // Rounded up to whole seconds, and at least Fluvio's minimum of 10 s.
        let (p, _) = fluvio_retention(Retention::Ms(1));
        assert_eq!(retention_of(p.as_ref(), None).ms, Some(10_000));
        let (p, _) = fluvio_retention(Retention::Ms(12_001));
        assert_eq!(retention_of(p.as_ref(), None).ms, Some(13_000));
        // Longer than Fluvio can say: forever.
        let (p, _) = fluvio_retention(Retention::Ms(i64::MAX));
        assert_eq!(retention_of(p.as_ref(), None).ms, Some(-1));
        assert_eq!(fluvio_retention(Retention::BrokerDefault), (None, None));
        assert_eq!(
            retention_of(None, None),
            TopicRetention {
                ms: None,
                bytes: None
            }
        );
    }

    #[test]
    fn topic_names_follow_fluvio_rules() {
        assert_eq!(
            fluvio_topic("StockExchange").expect("valid"),
            "stockexchange"
        );
        assert_eq!(fluvio_topic("holdings").expect("valid"), "holdings");
        assert_eq!(fluvio_topic("test-a-9").expect("valid"), "test-a-9");
        for bad in ["", "-a", "a-", "a_b", "a.b", &"a".repeat(64)] {
            let e = fluvio_topic(bad).expect_err(bad);
            assert_eq!(e.kind, ErrorKind::Config, "{bad}");
        }
        assert!(fluvio_topic(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn negative_partitions_are_refused() {
        assert_eq!(fluvio_partition("t", 3).expect("a valid id"), 3);
        let e = fluvio_partition("t", -1).expect_err("negative");
        assert_eq!(e.kind, ErrorKind::UnknownPartition);
    }

    #[test]
    fn an_empty_endpoint_is_a_configuration_error() {
        let e = FluvioLog::new(&FluvioConfig::new(" "))
            .err()
            .expect("refused");
        assert_eq!(e.kind, ErrorKind::Config);
    }

    #[test]
    fn a_deadline_names_what_waited() {
        let e = block_on(
            "waiting for nothing",
            Duration::from_millis(10),
            std::future::pending::<Result<()>>(),
        )
        .expect_err("times out");
        assert_eq!(e.kind, ErrorKind::Timeout);
        assert!(e.to_string().starts_with("waiting for nothing"), "{e}");
    }
}
