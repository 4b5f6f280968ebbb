//! A partition's range, asked of its leader SPU.
//!
//! The `fluvio` client keeps its offset request to itself, and the SC's copy of a partition's
//! offsets (its status) trails the SPU's by up to a replication round. The job's check of its
//! log compares its committed positions with the log's end, so that end must be the SPU's own:
//! this sends the SPU protocol's `FetchOffsets` (one request per SPU for all the partitions it
//! leads) on a connection kept per SPU.

use crate::errors::{code_error, kind_of_code};
use crate::map_error;
use crate::Client;
use fluvio_protocol::link::ErrorCode;
use fluvio_socket::{ClientConfig, MultiplexerSocket, VersionedSerialSocket};
use fluvio_spu_schema::server::fetch_offset::{FetchOffsetPartition, FetchOffsetsRequest};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use stockflow_transport::{Error, ErrorKind, Result, Watermarks};

/// One connection per SPU address, made again when it goes stale.
#[derive(Default)]
pub(crate) struct SpuSockets {
    sockets: Mutex<HashMap<String, Arc<VersionedSerialSocket>>>,
}

impl SpuSockets {
    async fn socket(&self, addr: &str) -> Result<Arc<VersionedSerialSocket>> {
        let cached = self
            .sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(addr)
            .filter(|s| !s.is_stale())
            .cloned();
        if let Some(s) = cached {
            return Ok(s);
        }
        let context = format!("connecting to the SPU at {addr}");
        let versioned = ClientConfig::with_addr(addr.to_string())
            .connect()
            .await
            .map_err(|e| map_error(context.clone(), &anyhow::Error::new(e)))?;
        let (socket, config, versions) = versioned.split();
        let s = Arc::new(VersionedSerialSocket::new(
            MultiplexerSocket::shared(socket),
            config,
            versions,
        ));
        self.sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(addr.to_string(), Arc::clone(&s));
        Ok(s)
    }

    fn forget(&self, addr: &str) {
        self.sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(addr);
    }

    /// The range of each partition in `leaders` ((partition, leader SPU id)), sorted by
    /// partition: `low` the log start (retention moves it), `high` the next offset a reader
    /// can be handed (the last stable offset: what the SPUs have committed).
    pub async fn watermarks(
        &self,
        client: &Client,
        topic: &str,
        leaders: &[(i32, i32)],
    ) -> Result<Vec<Watermarks>> {
        if leaders.is_empty() {
            return Ok(Vec::new());
        }
        let spus = client.spus().await?;
        let addr_of: HashMap<i32, String> = spus
            .iter()
            .map(|s| (s.spec.id, s.spec.public_endpoint.addr()))
            .collect();
        let mut by_spu: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for &(partition, leader) in leaders {
            let addr = addr_of.get(&leader).ok_or_else(|| {
                Error::new(
                    ErrorKind::Unreachable,
                    format!("reading the offsets of {topic}/{partition}"),
                    format!("its leader, SPU {leader}, is not registered with the SC"),
                )
            })?;
            by_spu.entry(addr.clone()).or_default().push(partition);
        }
        let mut out = Vec::with_capacity(leaders.len());
        for (addr, partitions) in by_spu {
            let mut request = FetchOffsetsRequest::new(topic.to_string(), 0);
            let asked = partitions
                .iter()
                .map(|&p| {
                    crate::fluvio_partition(topic, p)
                        .map(|partition_index| FetchOffsetPartition { partition_index })
                })
                .collect::<Result<Vec<_>>>()?;
            if let Some(t) = request.topics.first_mut() {
                t.partitions = asked;
            }
            let socket = self.socket(&addr).await?;
            let context = format!("reading the offsets of {topic} from the SPU at {addr}");
            let response = match socket.send_receive(request).await {
                Ok(r) => r,
                Err(e) => {
                    self.forget(&addr);
                    return Err(map_error(context, &anyhow::Error::new(e)));
                }
            };
            for t in response.topics.iter().filter(|t| t.name == topic) {
                for p in &t.partitions {
                    if p.error_code != ErrorCode::None {
                        if kind_of_code(&p.error_code) == ErrorKind::Unreachable {
                            self.forget(&addr);
                        }
                        return Err(code_error(
                            format!("reading the offsets of {topic}/{}", p.partition_index),
                            &p.error_code,
                        ));
                    }
                    out.push(Watermarks {
                        partition: i32::try_from(p.partition_index).map_err(|_| {
                            Error::new(
                                ErrorKind::Other,
                                format!("reading the offsets of {topic}"),
                                "the SPU answered for a partition id past i32",
                            )
                        })?,
                        low: p.start_offset,
                        high: p.last_stable_offset,
                    });
                }
            }
        }
        out.sort_by_key(|w| w.partition);
        if out.len() != leaders.len() {
            return Err(Error::new(
                ErrorKind::Other,
                format!("reading the offsets of {topic}"),
                format!(
                    "the SPUs answered for {} of its {} partitions",
                    out.len(),
                    leaders.len()
                ),
            ));
        }
        Ok(out)
    }
}
