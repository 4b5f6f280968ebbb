//! `stockflow`: one binary for the whole pipeline.

mod cli;
mod commands;
mod exit;

use anyhow::Result;
use clap::Parser;
use cli::{Cli, LogFormat};
use tracing_subscriber::EnvFilter;

/// mimalloc: the job keeps millions of small, long-lived allocations (its state) beside
/// short-lived per-timestamp buffers; glibc's allocator slowed down as that heap grew (the day
/// cost rose with history), mimalloc does not (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("STOCKFLOW_LOG")
        // The clients' own chatter (a Fluvio connection closing is INFO there) only from WARN.
        .unwrap_or_else(|_| {
            EnvFilter::new("info,rdkafka=warn,fluvio=warn,fluvio_socket=warn,fluvio_future=warn")
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.compact().init(),
    }
}

/// No transparent huge pages for this process (Linux): the job's buffers come and go every
/// timestamp, and mimalloc asks for huge pages on its arenas, so the kernel zeroed 2 MiB at a
/// fault again and again. Off, the in-memory bench ran 12 % faster with one worker and 25-35 %
/// with two (docs/benchmarks.md); databases (Redis, MongoDB) advise the same for latency.
#[cfg(target_os = "linux")]
fn disable_transparent_huge_pages() {
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        tracing::debug!(error = %e, "transparent huge pages stay as the system sets them");
    }
}

#[cfg(not(target_os = "linux"))]
fn disable_transparent_huge_pages() {}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.global.log_format);
    disable_transparent_huge_pages();
    stockflow_dataflow::panics::install_hook();
    quiet_on_closed_stdout();
    match run(cli) {
        Ok(code) => code,
        Err(e) if closed_stdout(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let fault = exit::fault_of(&e);
            let code = fault.map_or(exit::INTERNAL, exit::code);
            tracing::error!(fault = fault.map(|f| f.to_string()), code, "{e:#}");
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(code)
        }
    }
}

/// A closed stdout (`stockflow calendar … | head -1`) ends a command quietly, as it ends other
/// Unix tools: no error line, exit 0. Rust ignores SIGPIPE, so the write fails instead: as the
/// `StdoutClosed` error of `exit::write_stdout`, or as the panic of `println!`. A broken pipe
/// of anything else (a socket, a FIFO given as a file) stays an error.
fn closed_stdout(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<exit::StdoutClosed>())
}

fn quiet_on_closed_stdout() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        previous(info);
    }));
}

fn run(cli: Cli) -> Result<std::process::ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(commands::dispatch(cli))
}
