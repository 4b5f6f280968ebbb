use crate::cli::{Output, ReportArgs};
use anyhow::{Context, Result};
use std::process::ExitCode;
use std::time::Instant;
use stockflow_analytics::{charts, export, load, render, stats, Error, Period};

pub async fn run(a: ReportArgs) -> Result<ExitCode> {
    tokio::task::spawn_blocking(move || report(a)).await?
}

fn report(a: ReportArgs) -> Result<ExitCode> {
    let period: Period = a.period.parse()?;
    let t0 = Instant::now();
    let (reference, df) = load::load(&a.db.url, a.investor.as_deref())
        .with_context(|| format!("reading {}", stockflow_sinks::mysql::redact(&a.db.url)))?;
    let read_s = t0.elapsed().as_secs_f64();
    if df.height() == 0 {
        return Err(Error::EmptyHistory(
            a.investor.clone().unwrap_or_else(|| "InvestorsDB".into()),
        )
        .into());
    }
    let t1 = Instant::now();
    let stats = stats::compute(&reference, &df, period)?;
    let compute_s = t1.elapsed().as_secs_f64();

    let t2 = Instant::now();
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut written = Vec::new();
    for p in &stats.portfolios {
        let path = a.out.join(format!("{}_{}_stats", p.investor, p.portfolio));
        std::fs::write(&path, render::stats_file(p, stats.period))
            .with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
        if !a.no_charts {
            let value = a
                .out
                .join(format!("{}_{}_value.png", p.investor, p.portfolio));
            charts::value_chart(p, &value)?;
            let monthly = a
                .out
                .join(format!("{}_{}_monthly.png", p.investor, p.portfolio));
            charts::monthly_chart(p, &monthly)?;
            written.extend([value, monthly]);
        }
    }
    let mut tidy = export::tidy(&stats)?;
    let csv = a.out.join("stats.csv");
    export::write_csv(&mut tidy, &csv)?;
    let parquet = a.out.join("stats.parquet");
    export::write_parquet(&mut tidy, &parquet)?;
    written.extend([csv, parquet]);
    let write_s = t2.elapsed().as_secs_f64();

    match a.format {
        Output::Json => {
            let v = serde_json::json!({
                "stats": stats,
                "files": written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
                "rows": df.height(),
                "seconds": {"mysql_read": read_s, "polars_compute": compute_s, "write": write_s},
            });
            println!("{v}");
        }
        Output::Text => {
            println!(
                "{:<6} {:<6} {:>6} {:<23} {:>18} {:>18} {:>18}",
                "inv", "pf", "days", "range", "last value", "average", "std dev"
            );
            for p in &stats.portfolios {
                println!(
                    "{:<6} {:<6} {:>6} {:<23} {:>18} {:>18} {:>18}",
                    p.investor,
                    p.portfolio,
                    p.evaluation.days,
                    format!("{}..{}", p.first_day, p.last_day),
                    p.series
                        .last()
                        .map_or("-".into(), |(_, v)| render::money(*v)),
                    render::money(p.evaluation.mean),
                    p.evaluation.std.map_or("-".into(), render::money),
                );
            }
            println!(
                "\n{} files in {} ({} rows; MySQL read {:.2} s, Polars {:.2} s, writing {:.2} s)",
                written.len(),
                a.out.display(),
                df.height(),
                read_s,
                compute_s,
                write_s
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
