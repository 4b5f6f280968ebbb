//! Registers an SPU started by hand with the SC, so that a cluster of `fluvio-run sc --local`
//! and `fluvio-run spu` serves topics (docs/backends.md, "Running on Fluvio").
//!
//! cargo run -p stockflow-fluvio --example register-spu -- [SC host:port] [id] [public] [private]
//! (defaults: 127.0.0.1:9003 5001 127.0.0.1:9010 127.0.0.1:9011)

use std::process::ExitCode;
use stockflow_fluvio::{cluster, FluvioConfig, FluvioLog};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_string());
    let endpoint = arg(0, "127.0.0.1:9003");
    let Ok(id) = arg(1, "5001").parse::<i32>() else {
        eprintln!("the SPU id must be a number");
        return ExitCode::from(2);
    };
    let (public, private) = (arg(2, "127.0.0.1:9010"), arg(3, "127.0.0.1:9011"));
    let result = FluvioLog::new(&FluvioConfig::new(endpoint.clone()))
        .and_then(|log| cluster::register_custom_spu(&log, id, &public, &private));
    match result {
        Ok(true) => println!(
            "registered SPU {id} (clients {public}, peers {private}) with the SC at {endpoint}"
        ),
        Ok(false) => println!("SPU {id} is registered with the SC at {endpoint} already"),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
