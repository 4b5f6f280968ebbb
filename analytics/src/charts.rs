//! PNG charts with plotters (no browser): each portfolio's value over time with its yearly
//! max/min change days marked, and its monthly average value.

use crate::load::{epoch_days, from_epoch_days};
use crate::stats::PortfolioStats;
use crate::{Error, Result};
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

/// Where a TrueType font is looked for (Debian's fonts-dejavu-core first); `STOCKFLOW_FONT`
/// overrides.
const FONT_PATHS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

static FONT: OnceLock<std::result::Result<(), String>> = OnceLock::new();

/// Registers the TrueType font every chart (PNG or SVG) lays its text out with.
pub fn ensure_font() -> Result<()> {
    FONT.get_or_init(|| {
        let candidates: Vec<String> = std::env::var("STOCKFLOW_FONT")
            .into_iter()
            .chain(FONT_PATHS.iter().map(|s| s.to_string()))
            .collect();
        let bytes = candidates
            .iter()
            .find_map(|p| std::fs::read(p).ok())
            .ok_or_else(|| {
                format!("no TrueType font found (install fonts-dejavu-core or set STOCKFLOW_FONT); looked in {candidates:?}")
            })?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| "the font file is not a valid TrueType font".to_string())
    })
    .clone()
    .map_err(|e| Error::Chart("font".into(), e))
}

fn chart_err(path: &Path) -> impl Fn(String) -> Error + '_ {
    move |e| Error::Chart(path.display().to_string(), e)
}

/// Value over time, yearly max change days in green, min change days in red.
pub fn value_chart(p: &PortfolioStats, path: &Path) -> Result<()> {
    ensure_font()?;
    let err = chart_err(path);
    let (Some(first), Some(last)) = (p.series.first(), p.series.last()) else {
        return Ok(());
    };
    let (x0, x1) = (
        epoch_days(first.0),
        epoch_days(last.0).max(epoch_days(first.0) + 1),
    );
    let (lo, hi) = p
        .series
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), (_, v)| {
            (lo.min(*v), hi.max(*v))
        });
    let pad = ((hi - lo) * 0.05).max(1.0);
    let root = BitMapBackend::new(path, (1200, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{} {} value, {} .. {}",
                p.investor, p.portfolio, first.0, last.0
            ),
            ("sans-serif", 24),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(110)
        .build_cartesian_2d(x0..x1, (lo - pad)..(hi + pad))
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_label_formatter(&|d| from_epoch_days(*d).to_string())
        .y_label_formatter(&|v| crate::render::float(*v))
        .x_labels(8)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    chart
        .draw_series(LineSeries::new(
            p.series.iter().map(|(d, v)| (epoch_days(*d), *v)),
            &BLUE,
        ))
        .map_err(|e| err(e.to_string()))?
        .label("value")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    let value_on = |d: chrono::NaiveDate| {
        p.series
            .binary_search_by_key(&d, |(day, _)| *day)
            .ok()
            .map(|i| (epoch_days(d), p.series[i].1))
    };
    let maxes: Vec<(i32, f64)> = p
        .yearly
        .iter()
        .filter_map(|(_, e)| e.max_change.and_then(|(_, d)| value_on(d)))
        .collect();
    let mins: Vec<(i32, f64)> = p
        .yearly
        .iter()
        .filter_map(|(_, e)| e.min_change.and_then(|(_, d)| value_on(d)))
        .collect();
    chart
        .draw_series(maxes.into_iter().map(|c| Circle::new(c, 5, GREEN.filled())))
        .map_err(|e| err(e.to_string()))?
        .label("yearly max daily change")
        .legend(|(x, y)| Circle::new((x + 10, y), 5, GREEN.filled()));
    chart
        .draw_series(mins.into_iter().map(|c| Circle::new(c, 5, RED.filled())))
        .map_err(|e| err(e.to_string()))?
        .label("yearly min daily change")
        .legend(|(x, y)| Circle::new((x + 10, y), 5, RED.filled()));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// Monthly average value, oldest month left.
pub fn monthly_chart(p: &PortfolioStats, path: &Path) -> Result<()> {
    ensure_font()?;
    let err = chart_err(path);
    let mut months: Vec<((i32, u32), f64)> = p.monthly.clone();
    months.reverse();
    if months.is_empty() {
        return Ok(());
    }
    let n = months.len() as i32;
    let (lo, hi) = months
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), (_, v)| {
            (lo.min(*v), hi.max(*v))
        });
    let pad = ((hi - lo) * 0.05).max(1.0);
    let root = BitMapBackend::new(path, (1200, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{} {} monthly average value", p.investor, p.portfolio),
            ("sans-serif", 24),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(110)
        .build_cartesian_2d(0..n.max(1), (lo - pad)..(hi + pad))
        .map_err(|e| err(e.to_string()))?;
    let labels: Vec<String> = months
        .iter()
        .map(|((y, m), _)| format!("{y}-{m:02}"))
        .collect();
    chart
        .configure_mesh()
        .x_label_formatter(&|i| labels.get(*i as usize).cloned().unwrap_or_default())
        .y_label_formatter(&|v| crate::render::float(*v))
        .x_labels(12)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    chart
        .draw_series(LineSeries::new(
            months.iter().enumerate().map(|(i, (_, v))| (i as i32, *v)),
            &BLUE,
        ))
        .map_err(|e| err(e.to_string()))?;
    chart
        .draw_series(
            months
                .iter()
                .enumerate()
                .map(|(i, (_, v))| Circle::new((i as i32, *v), 3, BLUE.filled())),
        )
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}
