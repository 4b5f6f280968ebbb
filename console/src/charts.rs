//! Server-rendered SVG with plotters, the crate the reports draw their PNGs with: a portfolio's
//! value over a window of days on a linear or log scale, its yearly max/min change days
//! marked, and the sparklines of the portfolio list. Only numbers and dates reach the SVG.

use crate::{Error, Result};
use chrono::NaiveDate;
use plotters::prelude::*;
use serde::Serialize;
use stockflow_analytics::load::{epoch_days, from_epoch_days};
use stockflow_analytics::render::float;

/// A rendered chart and where its plotting area lies in it (pixels), so that the page can map
/// a drag on the chart to days (zoom).
#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    pub svg: String,
    pub width: u32,
    pub height: u32,
    pub left: i32,
    pub right: i32,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub log: bool,
    /// Days in the window.
    pub points: usize,
    /// Days left out of a log scale (a value ≤ 0 has no logarithm).
    pub not_positive: usize,
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::Chart(e.to_string())
}

/// The value of `series` (sorted by day) from `from` to `to`, on a log scale if `log`, with
/// the days of `maxes` (green) and `mins` (red) marked.
pub fn value_chart(
    series: &[(NaiveDate, f64)],
    maxes: &[NaiveDate],
    mins: &[NaiveDate],
    window: (NaiveDate, NaiveDate),
    log: bool,
    size: (u32, u32),
) -> Result<Chart> {
    stockflow_analytics::charts::ensure_font().map_err(err)?;
    let (from, to) = window;
    let y = |v: f64| if log { v.ln() } else { v };
    let shown: Vec<(i32, f64)> = series
        .iter()
        .filter(|(d, v)| *d >= from && *d <= to && (!log || *v > 0.0))
        .map(|(d, v)| (epoch_days(*d), y(*v)))
        .collect();
    let in_window = series
        .iter()
        .filter(|(d, _)| *d >= from && *d <= to)
        .count();
    let (x0, x1) = (epoch_days(from), epoch_days(to).max(epoch_days(from) + 1));
    let (lo, hi) = shown.iter().fold((f64::MAX, f64::MIN), |(lo, hi), (_, v)| {
        (lo.min(*v), hi.max(*v))
    });
    let (lo, hi) = if shown.is_empty() {
        (0.0, 1.0)
    } else {
        (lo, hi)
    };
    let pad = ((hi - lo) * 0.05).max(if log { 0.01 } else { 1.0 });
    let mut svg = String::new();
    let (left, right);
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(96)
            .build_cartesian_2d(x0..x1, (lo - pad)..(hi + pad))
            .map_err(err)?;
        let ylabel = |v: &f64| float(if log { v.exp() } else { *v });
        chart
            .configure_mesh()
            .x_label_formatter(&|d| from_epoch_days(*d).to_string())
            .y_label_formatter(&ylabel)
            .x_labels(8)
            .y_labels(8)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(shown.iter().copied(), &BLUE))
            .map_err(err)?;
        let value_on = |d: &NaiveDate| {
            let x = epoch_days(*d);
            shown
                .binary_search_by_key(&x, |(day, _)| *day)
                .ok()
                .map(|i| shown[i])
        };
        chart
            .draw_series(
                maxes
                    .iter()
                    .filter_map(value_on)
                    .map(|c| Circle::new(c, 4, GREEN.filled())),
            )
            .map_err(err)?;
        chart
            .draw_series(
                mins.iter()
                    .filter_map(value_on)
                    .map(|c| Circle::new(c, 4, RED.filled())),
            )
            .map_err(err)?;
        let (xs, _) = chart.plotting_area().get_pixel_range();
        (left, right) = (xs.start, xs.end);
        root.present().map_err(err)?;
    }
    Ok(Chart {
        svg,
        width: size.0,
        height: size.1,
        left,
        right,
        from,
        to,
        log,
        points: shown.len(),
        not_positive: in_window - shown.len(),
    })
}

/// A sparkline of `values` (oldest first): a line without axes, rising green, falling red.
pub fn sparkline(values: &[f64], size: (u32, u32)) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        let (lo, hi) = values
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        let (lo, hi) = if values.is_empty() {
            (0.0, 1.0)
        } else if hi - lo < 1e-9 {
            (lo - 1.0, hi + 1.0)
        } else {
            (lo, hi)
        };
        let n = values.len().max(2) as f64 - 1.0;
        let mut chart = ChartBuilder::on(&root)
            .margin(2)
            .build_cartesian_2d(0.0..n, lo..hi)
            .map_err(err)?;
        let rising = values.last() >= values.first();
        let colour = if rising {
            RGBColor(0, 140, 70)
        } else {
            RGBColor(200, 30, 30)
        };
        chart
            .draw_series(LineSeries::new(
                values.iter().enumerate().map(|(i, v)| (i as f64, *v)),
                colour.stroke_width(1),
            ))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// A line of a time chart: its legend, colour, and (ms since the Unix epoch, value) points.
pub type TimeSeries<'a> = (&'a str, RGBColor, Vec<(i64, f64)>);

/// Lines over wall-clock time (ms since the Unix epoch): the job page's freshness p50/p99
/// and commit durations. `series`: (legend, colour, points).
pub fn time_chart(series: &[TimeSeries<'_>], y_unit: &str, size: (u32, u32)) -> Result<String> {
    stockflow_analytics::charts::ensure_font().map_err(err)?;
    let points = series.iter().flat_map(|(_, _, p)| p.iter());
    let (x0, x1, hi) = points.fold((i64::MAX, i64::MIN, 0f64), |(a, b, h), (x, y)| {
        (a.min(*x), b.max(*x), h.max(*y))
    });
    let (x0, x1) = if x0 > x1 {
        (0, 1)
    } else {
        (x0, x1.max(x0 + 1))
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(26)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, 0f64..(hi * 1.1).max(1.0))
            .map_err(err)?;
        let time = |ms: &i64| {
            chrono::DateTime::from_timestamp_millis(*ms)
                .map(|t| t.format("%H:%M:%S").to_string())
                .unwrap_or_default()
        };
        let unit = |v: &f64| format!("{} {y_unit}", float(*v).trim_end_matches(".00"));
        chart
            .configure_mesh()
            .x_label_formatter(&time)
            .y_label_formatter(&unit)
            .x_labels(6)
            .y_labels(5)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        for (name, colour, pts) in series {
            let c = *colour;
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
                .map_err(err)?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(n: i64) -> NaiveDate {
        NaiveDate::from_ymd_opt(2000, 1, 3)
            .map(|d| d + chrono::Duration::days(n))
            .unwrap_or_default()
    }

    #[test]
    fn a_window_and_a_log_scale() {
        let series: Vec<(NaiveDate, f64)> = (0..100).map(|i| (day(i), i as f64)).collect();
        let c = value_chart(
            &series,
            &[day(50)],
            &[day(10)],
            (day(10), day(60)),
            true,
            (800, 400),
        )
        .expect("a chart");
        assert!(
            c.svg.starts_with("<svg"),
            "{}",
            &c.svg[..40.min(c.svg.len())]
        );
        assert_eq!(c.points, 51);
        assert_eq!(c.not_positive, 0);
        assert!(c.left > 0 && c.right > c.left && c.right <= 800);
        // Two marks: one green, one red.
        assert!(
            c.svg.contains("#00FF00") && c.svg.contains("#FF0000"),
            "marks drawn"
        );
        let c =
            value_chart(&series, &[], &[], (day(0), day(99)), true, (800, 400)).expect("a chart");
        assert_eq!(
            (c.points, c.not_positive),
            (99, 1),
            "day 0 is worth 0: no logarithm"
        );
    }

    #[test]
    fn sparklines_are_svg() {
        let s = sparkline(&[1.0, 3.0, 2.0], (100, 24)).expect("a sparkline");
        assert!(s.contains("<polyline") || s.contains("<path"), "{s}");
        assert!(sparkline(&[], (100, 24)).is_ok());
    }
}
