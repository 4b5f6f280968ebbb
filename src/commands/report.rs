use crate::cli::{Global, Output, ReportArgs};
use anyhow::{Context, Result};
use std::process::ExitCode;
use std::time::Instant;
use stockflow_analytics::{charts, export, load, render, stats, Error, Period};

pub async fn run(g: &Global, a: ReportArgs) -> Result<ExitCode> {
    // --format overrides the global --output for this command.
    let output = a.format.unwrap_or(g.output);
    tokio::task::spawn_blocking(move || report(a, output)).await?
}

fn report(a: ReportArgs, output: Output) -> Result<ExitCode> {
    let period: Period = a.period.parse()?;
    let t0 = Instant::now();
    let (reference, evals) = load::load(&a.db.url()?, a.investor.as_deref())
        .with_context(|| format!("reading {}", stockflow_sinks::mysql::redact(&a.db.raw_url)))?;
    let read_s = t0.elapsed().as_secs_f64();
    if evals.is_empty() {
        return Err(Error::EmptyHistory(
            a.investor.clone().unwrap_or_else(|| "InvestorsDB".into()),
        )
        .into());
    }
    let t1 = Instant::now();
    let stats = stats::compute(&reference, &evals, period)?;
    if stats.period_empty {
        tracing::warn!(
            "no evaluations in the period {period}: item 4 is empty; everything else is written (choose another with --period)"
        );
    }
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

    match output {
        Output::Json => {
            let v = serde_json::json!({
                "stats": stats,
                "files": written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
                "rows": evals.len(),
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
                    render::money(p.last_value.0),
                    render::float(p.evaluation.mean),
                    p.evaluation.std.map_or("-".into(), render::float),
                );
            }
            println!(
                "\n{} files in {} ({} rows; MySQL read {:.2} s, Polars {:.2} s, writing {:.2} s)",
                written.len(),
                a.out.display(),
                evals.len(),
                read_s,
                compute_s,
                write_s
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
