//! A panic in a worker reaches the caller as its message and location, not as timely's
//! `Any { .. }`: the hook records the last panic, and the job's errors use it.

use std::sync::Mutex;

static LAST: Mutex<Option<String>> = Mutex::new(None);

/// Installs a panic hook that records each panic's message and location (and then runs the
/// previous hook, which prints it).
pub fn install_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current()
            .name()
            .map(|n| format!(" in thread {n}"))
            .unwrap_or_default();
        if let Ok(mut last) = LAST.lock() {
            *last = Some(format!("panicked{thread}{at}: {message}"));
        }
        previous(info);
    }));
}

/// What a worker's failure was: the recorded panic if there is one, else timely's text.
pub fn describe(timely_text: String) -> crate::Error {
    let recorded = LAST.lock().ok().and_then(|mut l| l.take());
    crate::Error::Dataflow(recorded.unwrap_or(timely_text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_described_with_its_message_and_place() {
        install_hook();
        let r = std::thread::Builder::new()
            .name("worker-x".into())
            .spawn(|| panic!("Multiplication overflowed"))
            .map(|h| h.join());
        assert!(matches!(r, Ok(Err(_))));
        let e = describe("Any { .. }".into()).to_string();
        assert!(e.contains("Multiplication overflowed"), "{e}");
        assert!(e.contains("panics.rs:"), "{e}");
        assert!(e.contains("worker-x"), "{e}");
    }
}
