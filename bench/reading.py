#!/usr/bin/env python3
"""The job's reading loop (issue 16), measured in one run on one machine, every ratio from
figures of the same run:

- spec market (both exchanges 2000..today, ~162,000 ticks), one topic: raw consume with the
  job's client vs the job with --sink null and into MySQL, -w 1 and -w 2 (runs alternated, best
  of ROUNDS each), and a restart with nothing new;
- a long catch-up (synthetic:200:2000:10:50:1, 2,500 days) into an empty database vs raw
  consume of the same topic;
- the core alone: bench dataflow -w 1 on 2,000 stocks × 20,000 portfolios × 250 days.

Wall times of whole commands (process start to exit). Prints a markdown table.

    python3 bench/reading.py            # or: scripts/bench-reading
Sizes: ROUNDS (default 2), LONG_DAYS (default 2500; 0 skips the long catch-up), CORE (default 1).
"""
import json, os, subprocess, sys, time, urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SF = os.path.join(ROOT, "target", "release", "stockflow")
MYSQL = os.environ.get("STOCKFLOW_TEST_MYSQL", "mysql://stockflow@127.0.0.1:3306")
# The password travels in the environment, never on a command line: stockflow reads
# STOCKFLOW_MYSQL_PASSWORD, the mariadb client MYSQL_PWD.
os.environ.setdefault("STOCKFLOW_MYSQL_PASSWORD", "stockflow")
ROUNDS = int(os.environ.get("ROUNDS", "2"))
LONG_DAYS = int(os.environ.get("LONG_DAYS", "2500"))
CORE = os.environ.get("CORE", "1") == "1"
RUN = str(int(time.time()))
rows = []


def sh(*args, env=None):
    """Runs a command; (wall seconds, last JSON line of stdout)."""
    t0 = time.perf_counter()
    p = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})})
    secs = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{p.stderr[-3000:]}")
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    return secs, (json.loads(lines[-1]) if lines else None)


def add(measure, value, note=""):
    rows.append((measure, value, note))
    print(f"  {measure}: {value} {note}", file=sys.stderr, flush=True)


def db_url(name):
    return {"STOCKFLOW_MYSQL_URL": f"{MYSQL}/{name}"}


def drop(name):
    url = urllib.parse.urlparse(MYSQL)
    # MYSQL_PWD: the client reads the password from its environment, not its command line.
    subprocess.run(["mariadb", f"-h{url.hostname}", f"-P{url.port or 3306}", f"-u{url.username}",
                    "-e", f"DROP DATABASE IF EXISTS `{name}`"], capture_output=True,
                   env={**os.environ, "MYSQL_PWD": os.environ["STOCKFLOW_MYSQL_PASSWORD"]}, check=True)


def job(p, h, workers, sink, env=None, market=None, extra=()):
    args = [SF, "--output", "json", "run", "-w", str(workers), "--until-caught-up", "--sink", sink,
            "--prices-topic", p, "--holdings-topic", h, *extra]
    if market:
        args += ["--market", market]
    return sh(*args, env=env)


def main():
    sh(os.path.join(ROOT, "compose", "stack"), "up")
    subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "stockflow"], cwd=ROOT, check=True)

    # The spec market, one topic for every measure.
    p, h = f"bench-reading-p-{RUN}", f"bench-reading-h-{RUN}"
    sh(SF, "topics", "create", "--topic", p, "--topic", h)
    sh(SF, "holdings", "load", "--topic", h)
    sh(SF, "exchange", "all", "--backfill", "--from", "2000-01-01", "--topic", p)
    best = {}
    for r in range(ROUNDS):
        for label, run in [
            ("raw", lambda: sh(SF, "--output", "json", "bench", "consume", "--topic", p)),
            ("null1", lambda: job(p, h, 1, "null")),
            ("null2", lambda: job(p, h, 2, "null")),
        ]:
            secs, out = run()
            if label == "raw":
                records = out["records"]
            best[label] = min(best.get(label, secs), secs)
        for w in (1, 2):
            name = f"sf_bench_reading_w{w}_{RUN}_{r}"
            secs, out = job(p, h, w, "mysql", env=db_url(name))
            best[f"mysql{w}"] = min(best.get(f"mysql{w}", secs), secs)
            if w == 2 and r == 0:
                rows_written = out["inserted"]
                # A restart with nothing new: loads the stored state's window, checks the log, exits.
                restart = min(job(p, h, 1, "mysql", env=db_url(name))[0] for _ in range(3))
            drop(name)
    raw = best["raw"]
    add(f"spec market: raw consume, {records:,} records (s)", f"{raw:.2f}")
    for label, text in [("null1", "job --sink null -w 1"), ("null2", "job --sink null -w 2"),
                        ("mysql1", "job into MySQL -w 1"), ("mysql2", "job into MySQL -w 2")]:
        add(f"spec market: {text} (s)", f"{best[label]:.2f}", f"÷ raw consume {best[label] / raw:.2f}")
    add("spec market: -w 2 ÷ -w 1, --sink null", f"{best['null2'] / best['null1']:.2f}")
    add("spec market: -w 2 ÷ -w 1, into MySQL", f"{best['mysql2'] / best['mysql1']:.2f}", f"{rows_written:,} rows")
    add("spec market: restart with nothing new (s, best of 3)", f"{restart:.2f}")

    if LONG_DAYS > 0:
        market = "synthetic:200:2000:10:50:1"
        lp, lh = f"bench-reading-lp-{RUN}", f"bench-reading-lh-{RUN}"
        sh(SF, "topics", "create", "--topic", lp, "--topic", lh)
        sh(SF, "holdings", "load", "--market", market, "--topic", lh)
        sh(SF, "exchange", "all", "--backfill", "--from", "2000-01-01", "--days", str(LONG_DAYS), "--market", market, "--topic", lp)
        raw_secs, raw_out = sh(SF, "--output", "json", "bench", "consume", "--topic", lp)
        add(f"{market}, {LONG_DAYS:,} days: raw consume, {raw_out['records']:,} records (s)", f"{raw_secs:.2f}")
        for w in (1, 2):
            name = f"sf_bench_reading_long{w}_{RUN}"
            secs, out = job(lp, lh, w, "mysql", env=db_url(name), market=market)
            add(f"{market}, {LONG_DAYS:,} days: catch-up into an empty database -w {w} (s)", f"{secs:.2f}",
                f"÷ raw consume {secs / raw_secs:.2f}; {out['inserted']:,} rows, peak RSS {out['peak_rss_mib']:,.0f} MiB")
            drop(name)
        secs, out = job(lp, lh, 2, "null", market=market)
        add(f"{market}, {LONG_DAYS:,} days: job --sink null -w 2 (s)", f"{secs:.2f}", f"÷ raw consume {secs / raw_secs:.2f}")

    if CORE:
        secs, core = sh(SF, "--output", "json", "bench", "dataflow", "-w", "1", "--days", "250",
                        "--market", "synthetic:2000:20000:10:50:1")
        add("core: bench dataflow -w 1, 2,000 × 20,000 × 250 (ticks/s)", f"{core['ticks_per_second']:,.0f}",
            f"peak RSS {core['peak_rss_mib']:,.0f} MiB")

    print("| measure | value | note |")
    print("|---|---:|---|")
    for m, v, n in rows:
        print(f"| {m} | {v} | {n} |")


if __name__ == "__main__":
    main()
