//! Setting up a cluster started by hand: `fluvio-run sc --local` and `fluvio-run spu` on
//! loopback (docs/backends.md) know nothing of each other until the SPU is registered with the
//! SC as a custom SPU. The official installer's `fluvio cluster start --local` does this
//! itself; so does `cargo run -p stockflow-fluvio --example register-spu`, and the tests.

use crate::{map_error, FluvioLog};
use fluvio::metadata::customspu::CustomSpuSpec;
use fluvio_controlplane_metadata::spu::{EncryptionEnum, Endpoint, IngressAddr, IngressPort};
use stockflow_transport::{Error, ErrorKind, Result};

/// A `host:port` address split, for the SPU's endpoints.
fn host_port(what: &str, addr: &str) -> Result<(String, u16)> {
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| {
        Error::new(
            ErrorKind::Config,
            what,
            format!("{addr:?} is not host:port"),
        )
    })?;
    let port = port
        .parse::<u16>()
        .map_err(|e| Error::new(ErrorKind::Config, what, format!("{addr:?}: port: {e}")))?;
    Ok((host.to_string(), port))
}

/// Registers SPU `id`, serving clients at `public` and its peers at `private` (both
/// `host:port`), unless an SPU with that id is registered already. Returns whether it
/// registered it.
pub fn register_custom_spu(log: &FluvioLog, id: i32, public: &str, private: &str) -> Result<bool> {
    let (pub_host, pub_port) = host_port("the SPU's public address", public)?;
    let (priv_host, priv_port) = host_port("the SPU's private address", private)?;
    let spec = CustomSpuSpec {
        id,
        public_endpoint: IngressPort {
            port: pub_port,
            ingress: vec![IngressAddr {
                hostname: None,
                ip: Some(pub_host),
            }],
            encryption: EncryptionEnum::PLAINTEXT,
        },
        private_endpoint: Endpoint {
            port: priv_port,
            host: priv_host,
            encryption: EncryptionEnum::PLAINTEXT,
        },
        rack: None,
        public_endpoint_local: None,
    };
    log.connection().with(
        &format!("registering SPU {id}"),
        crate::REQUEST_TIMEOUT,
        |c| async move {
            if c.spus().await?.iter().any(|s| s.spec.id == id) {
                return Ok(false);
            }
            c.admin
                .create(format!("custom-spu-{id}"), false, spec)
                .await
                .map_err(|e| map_error(format!("registering SPU {id}"), &e))?;
            Ok(true)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_host_and_port() {
        assert_eq!(
            host_port("x", "127.0.0.1:9010").expect("valid"),
            ("127.0.0.1".to_string(), 9010)
        );
        assert_eq!(
            host_port("x", "127.0.0.1").expect_err("no port").kind,
            ErrorKind::Config
        );
        assert_eq!(
            host_port("x", "h:99999").expect_err("too big").kind,
            ErrorKind::Config
        );
    }
}
