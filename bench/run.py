#!/usr/bin/env python3
"""One benchmark suite: producers, dataflow (core and end to end), MySQL sink and reports, on the
spec market and a large synthetic one, with their raw-limit baselines. Writes one markdown table
to bench/results-YYYY-MM-DD.md, or -2, -3... when a run of that day exists (and prints it). About 8 minutes on 2 cores.

    python3 bench/run.py            # or: scripts/bench
Sizes: SYNTH (synthetic:STOCKS:PORTFOLIOS:MIN:MAX:SEED), DAYS (dataflow, default 120),
SINK_DAYS (default 60), REPORT_ROWS (default 5000000).
"""
import datetime, json, os, platform, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SF = os.path.join(ROOT, "target", "release", "stockflow")
SYNTH = os.environ.get("SYNTH", "synthetic:2000:20000:10:50:1")
DAYS = int(os.environ.get("DAYS", "120"))
SINK_DAYS = int(os.environ.get("SINK_DAYS", "60"))
REPORT_ROWS = int(os.environ.get("REPORT_ROWS", "5000000"))
MYSQL = os.environ.get("STOCKFLOW_TEST_MYSQL", "mysql://stockflow@127.0.0.1:3306")
# The password goes by environment, never on a command line: stockflow reads
# STOCKFLOW_MYSQL_PASSWORD, the mariadb client MYSQL_PWD.
os.environ.setdefault("STOCKFLOW_MYSQL_PASSWORD", "stockflow")
os.environ["MYSQL_PWD"] = os.environ["STOCKFLOW_MYSQL_PASSWORD"]
RUN = str(int(time.time()))
rows = []  # (area, measure, value, baseline, ratio)


def sh(*args, json_out=False, stderr_json=False, env=None):
    p = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{p.stderr[-2000:]}")
    text = p.stderr if stderr_json else p.stdout
    if json_out or stderr_json:
        lines = [l for l in text.splitlines() if l.startswith("{")]
        return json.loads(lines[-1])
    return text


def sql(statement, db=None):
    subprocess.run(["mariadb", "-h127.0.0.1", "-ustockflow", "-e", statement] + ([db] if db else []), check=True)


def add(area, measure, value, baseline="", ratio=""):
    rows.append((area, measure, value, baseline, ratio))
    print(f"  {area}: {measure} = {value} {baseline} {ratio}", file=sys.stderr)


def fmt(x, digits=0):
    return f"{x:,.{digits}f}"


def topics(name):
    p, h = f"bench-{name}-p-{RUN}", f"bench-{name}-h-{RUN}"
    sh(SF, "topics", "create", "--topic", p, "--topic", h)
    return p, h


def main():
    t0 = time.time()
    sh(os.path.join(ROOT, "compose", "stack"), "up")
    subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "stockflow"], cwd=ROOT, check=True)

    # Producers: both exchanges 2000..today vs raw produce, same client.
    r = sh(SF, "--output", "json", "bench", "producers", "--from", "2000-01-01", json_out=True)
    add("producers", f"exchange all --backfill, {r['messages']:,} msgs (msg/s)", fmt(r["exchange_all_backfill_msgs_per_s"]),
        f"raw produce {fmt(r['raw_produce_msgs_per_s'])}", f"{r['ratio']:.2f}")

    # Dataflow on the synthetic market: end to end and core, -w 1 and -w 2.
    p, h = topics("df")
    sh(SF, "holdings", "load", "--market", SYNTH, "--topic", h)
    sh(SF, "exchange", "all", "--backfill", "--from", "2000-01-01", "--days", str(DAYS), "--market", SYNTH, "--topic", p)
    raw = sh(SF, "--output", "json", "bench", "consume", "--topic", p, json_out=True)
    for w in ("1", "2"):
        e2e = sh(SF, "--output", "json", "run", "-w", w, "--until-caught-up", "--sink", "null", "--market", SYNTH,
                 "--prices-topic", p, "--holdings-topic", h, json_out=True)
        add("dataflow", f"end to end -w {w}, {SYNTH}, {DAYS} days (ticks/s)", fmt(e2e["ticks_per_second"]),
            f"raw consume {fmt(raw['records_per_second'])}", f"{e2e['ticks_per_second'] / raw['records_per_second']:.2f}")
        add("dataflow", f"end to end -w {w}: evaluations/s, peak RSS MiB", f"{fmt(e2e['evaluations_per_second'])}, {fmt(e2e['peak_rss_mib'])}")
        core = sh(SF, "--output", "json", "bench", "dataflow", "-w", w, "--days", str(DAYS), "--market", SYNTH, json_out=True)
        add("dataflow", f"core from memory -w {w} (ticks/s per worker)", fmt(core["ticks_per_second_per_worker"]))
        add("dataflow", f"core -w {w} vs a plain non-incremental loop, same days and rows (ticks/s)",
            fmt(core["ticks_per_second"]), f"plain loop {fmt(core['baseline_ticks_per_second'])}",
            f"{core['dataflow_to_baseline']:.3f}")
        add("dataflow", f"core -w {w}: peak RSS MiB", fmt(core["peak_rss_mib"]))
        add("dataflow", f"core -w {w}: day early / late in history (ms)", f"{core['early_day_ms']:.1f} / {core['late_day_ms']:.1f}",
            "", f"{core['late_day_ms'] / core['early_day_ms']:.2f}")
        add("dataflow", f"core -w {w}: one restated close, median of {core['restatements']} (ms, fastest–slowest, rows out/in)",
            f"{core['restatement_ms']:.2f} ({core['restatement_min_ms']:.2f}–{core['restatement_max_ms']:.2f}, "
            f"{core['restatement_retracted']}/{core['restatement_inserted']})")

    # Sink: spec market since 2000, synthetic, raw INSERT baseline.
    p, h = topics("sink-spec")
    sh(SF, "holdings", "load", "--topic", h)
    sh(SF, "exchange", "all", "--backfill", "--from", "2000-01-01", "--topic", p)
    db = f"sf_bench_spec_{RUN}"
    spec = sh(SF, "--output", "json", "run", "-w", "2", "--until-caught-up", "--prices-topic", p, "--holdings-topic", h,
              "--mysql-url", f"{MYSQL}/{db}", json_out=True)
    add("sink", "spec market 2000..today, whole job -w 2 (rows/s)", fmt(spec["sink"]["rows_per_second"]))
    rt = time.time()
    rep = sh(SF, "report", "--all", "--format", "json", "--out", f"/tmp/bench-report-{RUN}", "--mysql-url", f"{MYSQL}/{db}", json_out=True)
    add("report", f"spec market, {rep['rows']:,} rows (s: read / Polars / write)",
        f"{rep['seconds']['mysql_read']:.2f} / {rep['seconds']['polars_compute']:.2f} / {rep['seconds']['write']:.2f}")
    sql(f"DROP DATABASE {db}")
    p, h = topics("sink-syn")
    sh(SF, "holdings", "load", "--market", SYNTH, "--topic", h)
    sh(SF, "exchange", "all", "--backfill", "--from", "2000-01-01", "--days", str(SINK_DAYS), "--market", SYNTH, "--topic", p)
    db = f"sf_bench_syn_{RUN}"
    syn = sh(SF, "--output", "json", "run", "-w", "2", "--until-caught-up", "--market", SYNTH, "--prices-topic", p,
             "--holdings-topic", h, "--mysql-url", f"{MYSQL}/{db}", json_out=True)
    sql(f"DROP DATABASE {db}")
    n = syn["sink"]["rows_upserted"]
    ins = sh(SF, "--output", "json", "bench", "mysql-insert", "--rows", str(n), "--mysql-url", f"{MYSQL}/sf_bench_raw_{RUN}", json_out=True)
    sql(f"DROP DATABASE sf_bench_raw_{RUN}")
    commit_rate = n / max(syn["sink"]["commit_seconds"], 1e-9)
    add("sink", f"synthetic {SINK_DAYS} days, {n:,} rows: whole job (rows/s)", fmt(syn["sink"]["rows_per_second"]),
        f"raw INSERT {fmt(ins['rows_per_second'])}", f"{syn['sink']['rows_per_second'] / ins['rows_per_second']:.2f}")
    add("sink", "synthetic: rows/s while committing", fmt(commit_rate), f"raw INSERT {fmt(ins['rows_per_second'])}",
        f"{commit_rate / ins['rows_per_second']:.2f}")

    # Reports on a large synthetic database generated by the server.
    db = f"sf_bench_rep_{RUN}"
    sh(SF, "db", "init", "--mysql-url", f"{MYSQL}/{db}")
    days = REPORT_ROWS // 2000
    sql(f"""INSERT INTO {db}.evaluations (investor, portfolio, as_of, nav, nav_change, nav_change_pct)
      SELECT CONCAT('I', LPAD(seq % 100, 3, '0')), CONCAT('Q', LPAD(seq % 2000, 5, '0')),
             DATE_ADD('2000-01-03', INTERVAL seq DIV 2000 DAY), 1000000 + (seq * 7919 % 100000) / 100,
             IF(seq < 2000, NULL, (seq * 104729 % 20000) / 100 - 100), IF(seq < 2000, NULL, (seq * 1299709 % 1000) / 100 - 5)
      FROM seq_0_to_{days * 2000 - 1}""", db)
    for charts in (False, True):
        args = [SF, "report", "--all", "--format", "json", "--period", "2001..2003", "--out", f"/tmp/bench-report-{RUN}",
                "--mysql-url", f"{MYSQL}/{db}"] + ([] if charts else ["--no-charts"])
        rep = sh(*args, json_out=True)
        s = rep["seconds"]
        add("report", f"synthetic {rep['rows']:,} rows{', with 4,000 charts' if charts else ''} (s: read / Polars / write)",
            f"{s['mysql_read']:.2f} / {s['polars_compute']:.2f} / {s['write']:.2f}")
    sql(f"DROP DATABASE {db}")

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "0")
    out = [f"# stockflow benchmark suite, {datetime.date.today()}", "",
           f"Machine: {os.cpu_count()} cores ({cpu}), {int(mem) // 1024 // 1024} GiB RAM, {platform.system()} {platform.release()}; "
           f"broker tansu 0.6.0 (SQLite) and MariaDB on 127.0.0.1. Suite time: {time.time() - t0:.0f} s.", "",
           "| area | measure | value | raw-limit baseline | ratio |", "|---|---|---:|---:|---:|"]
    out += [f"| {a} | {m} | {v} | {b} | {r} |" for a, m, v, b, r in rows]
    text = "\n".join(out) + "\n"
    # Never overwrite an earlier run of the same day: results-DATE.md, then results-DATE-2.md, ...
    path, n = os.path.join(ROOT, "bench", f"results-{datetime.date.today()}.md"), 1
    while os.path.exists(path):
        n += 1
        path = os.path.join(ROOT, "bench", f"results-{datetime.date.today()}-{n}.md")
    open(path, "w").write(text)
    print(text)
    print(f"written to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
