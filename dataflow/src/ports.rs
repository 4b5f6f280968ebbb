//! Loopback ports for a cluster of processes on one machine (the tests' and benchmarks' local
//! clusters).

/// `n` distinct loopback ports free now, below the kernel's ephemeral range: a port of that
/// range can be taken at any moment as the source port of an outgoing connection (a timely
/// process's own connection to its peer included), and two ports picked by the kernel one
/// after the other can be the same. Each is checked by binding it, and the listeners are all
/// held until every port is found.
pub fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let ephemeral_low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or(32768);
    let low: u16 = 10_000;
    let span = u64::from(ephemeral_low.saturating_sub(low).max(1));
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        ^ (u64::from(std::process::id()) << 32)
        | 1;
    let mut held = Vec::new();
    for _ in 0..10_000 {
        if held.len() == n {
            break;
        }
        // xorshift: another port each try.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = low.saturating_add(u16::try_from(x % span).unwrap_or(0));
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            held.push((port, l));
        }
    }
    if held.len() < n {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("{n} free loopback ports below {ephemeral_low}"),
        ));
    }
    Ok(held.into_iter().map(|(p, _)| p).collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ports_are_distinct_and_below_the_ephemeral_range() {
        let ports = super::free_ports(8).expect("free ports");
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 8, "{ports:?}");
        assert!(ports.iter().all(|p| *p >= 10_000), "{ports:?}");
    }
}
