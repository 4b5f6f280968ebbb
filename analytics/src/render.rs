//! The course's stats files, for people: aligned tables, thousands separators, two decimals.

use crate::stats::{Extremes, PortfolioStats};
use std::fmt::Write;

/// 1234567.891 → "1,234,567.89"; negative numbers keep their sign.
pub fn money(v: f64) -> String {
    let s = format!("{:.2}", v.abs());
    let (int, frac) = s.split_once('.').unwrap_or((&s, "00"));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if v < 0.0 && s != "0.00" { "-" } else { "" };
    format!("{sign}{grouped}.{frac}")
}

fn cell(v: &Option<(f64, chrono::NaiveDate)>) -> (String, String) {
    v.map_or(("-".into(), "".into()), |(x, d)| (money(x), d.to_string()))
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
    let std = |s: Option<f64>| s.map_or("-".to_string(), money);
    let _ = writeln!(out, "\n3. Evaluation over the whole history");
    let _ = writeln!(out, "   {:<20} {:>18}", "average", money(p.evaluation.mean));
    let _ = writeln!(
        out,
        "   {:<20} {:>18}",
        "standard deviation",
        std(p.evaluation.std)
    );
    let _ = writeln!(out, "\n4. Evaluation over {}..{}", period.0, period.1);
    match &p.period {
        Some(s) => {
            let _ = writeln!(out, "   {:<20} {:>18}", "average", money(s.mean));
            let _ = writeln!(out, "   {:<20} {:>18}", "standard deviation", std(s.std));
            let _ = writeln!(out, "   {:<20} {:>18}", "days", s.days);
        }
        None => {
            let _ = writeln!(out, "   no evaluation in this period");
        }
    }
    let _ = writeln!(out, "\n5. Average evaluation by month, most recent first");
    for ((y, m), v) in &p.monthly {
        let _ = writeln!(out, "   {y}-{m:02}  {:>18}", money(*v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_format() {
        assert_eq!(money(1234567.891), "1,234,567.89");
        assert_eq!(money(-1234.5), "-1,234.50");
        assert_eq!(money(0.004), "0.00");
        assert_eq!(money(999.999), "1,000.00");
        assert_eq!(money(12.0), "12.00");
    }
}
