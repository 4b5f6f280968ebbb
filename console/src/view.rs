//! Pure logic of the console, apart from its I/O: figures for people, payload previews that
//! cannot deceive, freshness percentiles over time, operator rates and the hosts it answers.

use serde::Serialize;
use stockflow_core::Money;

/// An exact decimal from the database ("1234.500000") for people: two decimals, thousands
/// separators, as in the stats files ("1,234.50"); None stays None.
pub fn figure(text: Option<&str>) -> Option<String> {
    text.map(|t| Money::parse(t).map_or_else(|_| t.to_string(), stockflow_analytics::render::money))
}

/// The first `max_chars` characters of a payload as text that shows what the bytes are:
/// invalid UTF-8 as U+FFFD, control characters and every bidirectional formatting character
/// (which can make a payload read differently from what it holds) as a visible `<U+202E>`.
/// The browser still inserts it as text, never as markup.
pub fn preview(payload: &[u8], max_chars: usize) -> (String, bool) {
    let text = String::from_utf8_lossy(payload);
    let mut out = String::new();
    let mut truncated = false;
    for (n, c) in text.chars().enumerate() {
        if n >= max_chars {
            truncated = true;
            break;
        }
        if is_bidi_control(c) || (c.is_control() && c != '\n' && c != '\t') {
            out.push_str(&format!("<U+{:04X}>", c as u32));
        } else {
            out.push(c);
        }
    }
    (out, truncated)
}

/// The Unicode bidirectional formatting characters (UAX #9) and the invisible marks.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// One point of the freshness chart: the commits of a time bucket and their publish → commit
/// latencies' percentiles.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FreshnessPoint {
    /// The bucket's start, ms since the Unix epoch.
    pub at_ms: i64,
    pub commits: usize,
    pub p50_ms: i64,
    pub p99_ms: i64,
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Freshness over time: `commits` as (commit time ms, freshness ms), in buckets of `bucket_ms`
/// (at most `max_points` of them, the latest), oldest first.
pub fn freshness_series(
    commits: &[(i64, i64)],
    bucket_ms: i64,
    max_points: usize,
) -> Vec<FreshnessPoint> {
    let bucket_ms = bucket_ms.max(1);
    let mut buckets: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
    for (at, fresh) in commits {
        buckets
            .entry(at.div_euclid(bucket_ms) * bucket_ms)
            .or_default()
            .push(*fresh);
    }
    let skip = buckets.len().saturating_sub(max_points);
    buckets
        .into_iter()
        .skip(skip)
        .filter_map(|(at_ms, mut v)| {
            v.sort_unstable();
            Some(FreshnessPoint {
                at_ms,
                commits: v.len(),
                p50_ms: percentile(&v, 50.0)?,
                p99_ms: percentile(&v, 99.0)?,
            })
        })
        .collect()
}

/// A bucket width for commits spread over `span_ms`: about 60 buckets, at least a second.
pub fn bucket_for(span_ms: i64) -> i64 {
    (span_ms / 60).max(1_000)
}

/// Per second, the rate of a counter between two samples `dt_s` apart (0 when it went back: the
/// job restarted).
pub fn rate(before: f64, after: f64, dt_s: f64) -> f64 {
    if dt_s <= 0.0 || after < before {
        0.0
    } else {
        (after - before) / dt_s
    }
}

/// Whether a request's `Host` header names this console: its address as bound, or localhost,
/// 127.0.0.1 or [::1] with its port. A page of another site that resolves its own name to this
/// machine (DNS rebinding) sends its own name and is refused. A console bound to every
/// interface answers an IP address with its port (no DNS name but localhost: a name is what
/// rebinding needs).
pub fn host_allowed(host: Option<&str>, bound: std::net::SocketAddr) -> bool {
    let Some(host) = host else { return false };
    let port = bound.port();
    let allowed = [
        bound.to_string(),
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ];
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(host)) {
        return true;
    }
    bound.ip().is_unspecified()
        && host
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.port() == port)
}

/// Text from the log (a dead letter's reason quotes the record) with every control and
/// bidirectional formatting character shown as `<U+…>`.
pub fn visible(text: &str) -> String {
    preview(text.as_bytes(), usize::MAX).0
}

/// A search for SQL LIKE: `%` `_` and `\` escaped, wrapped in `%…%`.
pub fn like_pattern(q: &str) -> String {
    let mut out = String::with_capacity(q.len() + 2);
    out.push('%');
    for c in q.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_have_two_decimals_and_separators() {
        assert_eq!(
            figure(Some("1234567.891000")).as_deref(),
            Some("1,234,567.89")
        );
        assert_eq!(figure(Some("-0.004000")).as_deref(), Some("0.00"));
        assert_eq!(figure(Some("-12.345000")).as_deref(), Some("-12.35"));
        assert_eq!(figure(None), None);
    }

    #[test]
    fn a_preview_shows_bidi_and_control_characters_and_is_bounded() {
        let (p, cut) = preview("ab\u{202E}cd\u{2066}\u{0007}é".as_bytes(), 100);
        assert_eq!(p, "ab<U+202E>cd<U+2066><U+0007>é");
        assert!(!cut);
        let (p, cut) = preview(b"<script>alert(1)</script>", 8);
        assert_eq!(p, "<script>");
        assert!(cut);
        let (p, _) = preview(&[0xff, b'x'], 10);
        assert_eq!(p, "\u{FFFD}x");
        assert_eq!(visible("bad \"\u{202E}x\""), "bad \"<U+202E>x\"");
    }

    #[test]
    fn freshness_percentiles_per_bucket() {
        let commits: Vec<(i64, i64)> = (0..100).map(|i| (i * 100, i)).collect();
        let s = freshness_series(&commits, 5_000, 10);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].commits, s[0].p50_ms, s[0].p99_ms), (50, 24, 49));
        assert_eq!((s[1].at_ms, s[1].p50_ms, s[1].p99_ms), (5_000, 74, 99));
        assert_eq!(freshness_series(&commits, 1_000, 3).len(), 3);
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn rates_and_restarts() {
        assert_eq!(rate(10.0, 30.0, 2.0), 10.0);
        assert_eq!(rate(30.0, 5.0, 1.0), 0.0);
        assert_eq!(rate(1.0, 2.0, 0.0), 0.0);
    }

    #[test]
    fn only_this_consoles_hosts() {
        let bound: std::net::SocketAddr = "127.0.0.1:8080".parse().expect("an address");
        assert!(host_allowed(Some("127.0.0.1:8080"), bound));
        assert!(host_allowed(Some("LOCALHOST:8080"), bound));
        assert!(!host_allowed(Some("evil.example:8080"), bound));
        assert!(!host_allowed(Some("localhost:8081"), bound));
        assert!(!host_allowed(None, bound));
        let any: std::net::SocketAddr = "0.0.0.0:8080".parse().expect("an address");
        assert!(host_allowed(Some("192.168.1.20:8080"), any));
        assert!(host_allowed(Some("[fe80::1]:8080"), any));
        assert!(
            !host_allowed(Some("box.lan:8080"), any),
            "a name can be rebound"
        );
        assert!(!host_allowed(Some("192.168.1.20:9999"), any));
    }

    #[test]
    fn like_patterns_are_escaped() {
        assert_eq!(like_pattern("P1"), "%P1%");
        assert_eq!(like_pattern("50%_a\\"), "%50\\%\\_a\\\\%");
    }
}
