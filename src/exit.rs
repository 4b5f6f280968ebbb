//! Exit codes by whose fault an error is, so that a supervisor's restart policy can tell
//! "fix the configuration" from "retry later" (README, "Exit codes").

use stockflow_core::Fault;

/// 2: the user's input, configuration or a state the user must resolve (retrying the same
/// command gives the same answer).
pub const USER: u8 = 2;
/// 3: a service outside the process (the broker, the database, the disk) failed or refused;
/// running the command again may succeed once it is back.
pub const EXTERNAL: u8 = 3;
/// 1: a bug in stockflow (or an error nobody classified).
pub const INTERNAL: u8 = 1;

pub fn code(fault: Fault) -> u8 {
    match fault {
        Fault::User => USER,
        Fault::External => EXTERNAL,
        Fault::Internal => INTERNAL,
    }
}

/// Whose fault `e` is: the first error of its chain that knows.
pub fn fault_of(e: &anyhow::Error) -> Option<Fault> {
    e.chain().find_map(|cause| {
        if let Some(e) = cause.downcast_ref::<stockflow_core::Error>() {
            return Some(e.fault);
        }
        if let Some(e) = cause.downcast_ref::<stockflow_sinks::Error>() {
            return Some(e.fault());
        }
        if let Some(e) = cause.downcast_ref::<stockflow_dataflow::Error>() {
            return Some(e.fault());
        }
        if let Some(e) = cause.downcast_ref::<stockflow_transport::Error>() {
            return Some(e.fault());
        }
        if let Some(e) = cause.downcast_ref::<stockflow_producers::Error>() {
            return Some(e.fault());
        }
        if let Some(e) = cause.downcast_ref::<stockflow_analytics::Error>() {
            return Some(e.fault());
        }
        if let Some(e) = cause.downcast_ref::<stockflow_console::Error>() {
            return Some(e.fault());
        }
        if cause.is::<stockflow_market::Error>() {
            return Some(Fault::User);
        }
        if let Some(e) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            return Some(match e.kind() {
                K::NotFound | K::PermissionDenied | K::InvalidInput | K::AlreadyExists => {
                    Fault::User
                }
                _ => Fault::External,
            });
        }
        cause.downcast_ref::<UserError>().map(|_| Fault::User)
    })
}

/// A mistake in what the user asked (for errors made in the binary itself).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UserError(pub String);

/// Stdout was closed by its reader (`stockflow calendar … | head -1`): the command ends
/// quietly, as other Unix tools do.
#[derive(Debug, thiserror::Error)]
#[error("stdout was closed")]
pub struct StdoutClosed;

/// Writes `bytes` to stdout; a closed stdout is `StdoutClosed`.
pub fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        other => Ok(other?),
    }
}
