//! The course's stats files, for people: aligned tables, thousands separators, two decimals.

use crate::stats::{Exact, Extremes, PortfolioStats};
use std::fmt::Write;
use stockflow_core::Money;

fn grouped(negative: bool, int: &str, frac: &str) -> String {
    let mut out = String::with_capacity(int.len() + int.len() / 3 + 4);
    if negative {
        out.push('-');
    }
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out.push('.');
    out.push_str(frac);
    out
}

/// An exact amount for people, to the cent (half away from zero), with thousands separators:
/// 1234567.891 → "1,234,567.89". Computed on the decimal, never through a float.
pub fn money(m: Money) -> String {
    let units = m.units();
    let cent: i128 = 10_000;
    let abs = units.unsigned_abs();
    let cents = (abs + (cent as u128) / 2) / cent as u128;
    let (int, frac) = (cents / 100, cents % 100);
    grouped(
        units < 0 && cents != 0,
        &int.to_string(),
        &format!("{frac:02}"),
    )
}

/// A float figure (a mean, a standard deviation) the same way.
pub fn float(v: f64) -> String {
    let s = format!("{:.2}", v.abs());
    let (int, frac) = s.split_once('.').unwrap_or((&s, "00"));
    grouped(v < 0.0 && s != "0.00", int, frac)
}

fn cell(v: &Option<(Exact, chrono::NaiveDate)>) -> (String, String) {
    v.map_or(("-".into(), "".into()), |(x, d)| {
        (money(x.0), d.to_string())
    })
}

fn extremes_lines(out: &mut String, e: &Extremes) {
    for (label, v) in [
        ("max daily change", &e.max_change),
        ("min daily change", &e.min_change),
        ("max daily change %", &e.max_change_pct),
        ("min daily change %", &e.min_change_pct),
    ] {
        let (x, d) = cell(v);
        let on = if d.is_empty() {
            String::new()
        } else {
            format!("  on {d}")
        };
        let _ = writeln!(out, "   {label:<20} {x:>18}{on}");
    }
}

/// The text of `<investor>_<portfolio>_stats`.
pub fn stats_file(p: &PortfolioStats, period: (i32, i32)) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}_{}_stats: portfolio {} of {} ({}, {}), {} .. {}, {} evaluated days\n",
        p.investor,
        p.portfolio,
        p.portfolio,
        p.investor,
        p.investor_name,
        p.city,
        p.first_day,
        p.last_day,
        p.evaluation.days
    );
    let _ = writeln!(out, "1. Daily change over the whole history");
    extremes_lines(&mut out, &p.overall);
    let _ = writeln!(out, "\n2. Daily change by year");
    let _ = writeln!(
        out,
        "   {:<6} {:>18} {:>18} {:>14} {:>14}",
        "year", "max change", "min change", "max change %", "min change %"
    );
    for (y, e) in &p.yearly {
        let _ = writeln!(
            out,
            "   {:<6} {:>18} {:>18} {:>14} {:>14}",
            y,
            cell(&e.max_change).0,
            cell(&e.min_change).0,
            cell(&e.max_change_pct).0,
            cell(&e.min_change_pct).0
        );
    }
    let std = |s: Option<f64>| s.map_or("-".to_string(), float);
    let _ = writeln!(out, "\n3. Evaluation over the whole history");
    let _ = writeln!(out, "   {:<20} {:>18}", "average", float(p.evaluation.mean));
    let _ = writeln!(
        out,
        "   {:<20} {:>18}",
        "standard deviation",
        std(p.evaluation.std)
    );
    let _ = writeln!(out, "\n4. Evaluation over {}..{}", period.0, period.1);
    match &p.period {
        Some(s) => {
            let _ = writeln!(out, "   {:<20} {:>18}", "average", float(s.mean));
            let _ = writeln!(out, "   {:<20} {:>18}", "standard deviation", std(s.std));
            let _ = writeln!(out, "   {:<20} {:>18}", "days", s.days);
        }
        None => {
            let _ = writeln!(out, "   no evaluation in this period");
        }
    }
    let _ = writeln!(out, "\n5. Average evaluation by month, most recent first");
    for ((y, m), v) in &p.monthly {
        let _ = writeln!(out, "   {y}-{m:02}  {:>18}", float(*v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Money {
        Money::parse(s).unwrap_or_default()
    }

    #[test]
    fn money_format() {
        assert_eq!(money(m("1234567.891")), "1,234,567.89");
        assert_eq!(money(m("-1234.5")), "-1,234.50");
        assert_eq!(money(m("0.004")), "0.00");
        assert_eq!(money(m("-0.004")), "0.00");
        assert_eq!(money(m("999.995")), "1,000.00");
        assert_eq!(money(m("-2.005")), "-2.01");
        assert_eq!(money(m("12")), "12.00");
        // Beyond f64's 15–16 digits, still to the cent.
        assert_eq!(
            money(m("123456789012345678.125")),
            "123,456,789,012,345,678.13"
        );
        assert_eq!(float(1234567.891), "1,234,567.89");
        assert_eq!(float(-0.001), "0.00");
    }
}
