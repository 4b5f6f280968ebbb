//! The cluster's handshake: before reading anything, every worker of every process sends what
//! its process was started with (binary, market, topics, job, sink, workers, partition plan)
//! to every other, and each refuses to go on when a process differs, naming the difference.
//! Processes started with another `--market` or `--job` used to run together silently and
//! write a fraction of the rows.

use crate::{Error, Result};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};
use timely::communication::Allocate;
use timely::dataflow::operators::{Broadcast, Input, Inspect, Probe};
use timely::worker::Worker;

/// What a process was started with, as (setting, value) pairs in a fixed order.
pub type Settings = Vec<(String, String)>;

/// The differences between two processes' settings, as "setting: A here, B on process N".
pub fn differences(mine: &Settings, theirs: &Settings, process: usize) -> Vec<String> {
    let mut out = Vec::new();
    for (name, value) in mine {
        let other = theirs.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        match other {
            Some(v) if v == value => {}
            Some(v) => out.push(format!(
                "{name}: {value:?} here, {v:?} on process {process}"
            )),
            None => out.push(format!(
                "{name}: {value:?} here, not known to process {process} (another version)"
            )),
        }
    }
    for (name, v) in theirs {
        if !mine.iter().any(|(n, _)| n == name) {
            out.push(format!(
                "{name}: {v:?} on process {process}, not known here (another version)"
            ));
        }
    }
    out
}

/// Exchanges `mine` (this process's settings) with every worker of the cluster and refuses
/// when any process differs. Waits at most `limit` for the others' settings.
pub fn handshake<A: Allocate>(
    worker: &mut Worker<A>,
    process: usize,
    mine: &Settings,
    limit: Duration,
) -> Result<()> {
    let received: Rc<RefCell<Vec<(usize, Settings)>>> = Rc::default();
    let sink = Rc::clone(&received);
    let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
        let (input, stream) = scope.new_input::<(usize, Settings)>();
        let probe = stream
            .broadcast()
            .inspect(move |x| sink.borrow_mut().push(x.clone()))
            .probe();
        (input, probe)
    });
    input.send((process, mine.clone()));
    input.advance_to(1);
    drop(input);
    let started = Instant::now();
    while probe.less_than(&1) {
        if started.elapsed() > limit {
            return Err(Error::Stopped(
                format!(
                    "the processes of the cluster did not exchange their settings within {} s \
                 (a process hangs or its network is cut): stop every process and start them \
                 again",
                    limit.as_secs()
                ),
                stockflow_core::Fault::External,
            ));
        }
        worker.step_or_park(Some(Duration::from_millis(50)));
    }
    let mut problems: Vec<String> = Vec::new();
    let mut seen: Vec<usize> = Vec::new();
    for (p, theirs) in received.borrow().iter() {
        if *p == process || seen.contains(p) {
            continue;
        }
        seen.push(*p);
        problems.extend(differences(mine, theirs, *p));
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::Refused(format!(
        "the processes of the cluster were not started alike: {}. Start every process with \
         the same stockflow binary and the same arguments (only --process differs)",
        problems.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(pairs: &[(&str, &str)]) -> Settings {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn differences_name_the_setting_and_the_process() {
        let mine = s(&[("market", "spec"), ("job", "stockflow")]);
        assert!(differences(&mine, &mine, 1).is_empty());
        let theirs = s(&[("market", "synthetic:1:2:1:1:1"), ("job", "stockflow")]);
        assert_eq!(
            differences(&mine, &theirs, 1),
            ["market: \"spec\" here, \"synthetic:1:2:1:1:1\" on process 1"]
        );
        let older = s(&[("market", "spec")]);
        assert_eq!(differences(&mine, &older, 2).len(), 1);
        assert_eq!(differences(&older, &mine, 2).len(), 1);
    }
}
