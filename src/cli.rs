//! Command-line definitions.

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "stockflow",
    version,
    about = "Evaluates investor portfolios from live stock prices: exchanges -> Kafka or Fluvio -> dataflow -> MySQL -> reports"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Kafka bootstrap servers (host:port, comma-separated).
    #[arg(
        long,
        global = true,
        env = "STOCKFLOW_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,
    /// Extra librdkafka property for every client, as KEY=VALUE (repeatable).
    #[arg(long = "kafka-property", global = true, value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub kafka_properties: Vec<(String, String)>,
    /// The log backend: kafka (any Kafka-protocol broker at --brokers) or fluvio (a Fluvio
    /// cluster at --fluvio-endpoint). See docs/backends.md.
    #[arg(
        long = "log",
        global = true,
        env = "STOCKFLOW_LOG_BACKEND",
        value_enum,
        default_value_t = LogBackend::Kafka
    )]
    pub log_backend: LogBackend,
    /// The Fluvio cluster's SC public endpoint (host:port), with --log fluvio.
    #[arg(
        long,
        global = true,
        env = "STOCKFLOW_FLUVIO_ENDPOINT",
        default_value = "127.0.0.1:9003"
    )]
    pub fluvio_endpoint: String,
    /// Log format on stderr.
    #[arg(long, global = true, env = "STOCKFLOW_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Output of results on stdout: text for people, json for scripts.
    #[arg(long, global = true, env = "STOCKFLOW_OUTPUT", value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogBackend {
    Kafka,
    Fluvio,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the stock exchange servers, or publish recorded prices.
    Exchange {
        #[command(subcommand)]
        command: ExchangeCommand,
    },
    /// Print the trading days of a date range, one ISO date a line.
    Calendar {
        #[arg(long)]
        from: NaiveDate,
        #[arg(long)]
        to: NaiveDate,
    },
    /// Create and inspect the topics.
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
    },
    /// Run the dataflow job: evaluate every portfolio for every trading day, emitting diffs.
    Run(Box<RunArgs>),
    /// Per-portfolio statistics (the course's Spark report) with Polars: text files, CSV and
    /// Parquet, PNG charts.
    Report(ReportArgs),
    /// What a job (running or stopped) has done: committed offsets vs topic ends, the last
    /// evaluated day of every portfolio, rows per table.
    Status {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        topics: TopicArgs,
        #[arg(long, env = "STOCKFLOW_JOB", default_value = "stockflow")]
        job: String,
        /// How many of the latest portfolio-days without an evaluation to list.
        #[arg(long, default_value_t = 20)]
        issues: usize,
    },
    /// The database: create InvestorsDB, apply migrations, load the reference data.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Publish holdings (the portfolios' positions) to the holdings topic.
    Holdings {
        #[command(subcommand)]
        command: HoldingsCommand,
    },
    /// The live console in the browser: portfolios moving as commits land, restatements, the
    /// job's health (docs/console.md).
    Console(Box<ConsoleArgs>),
    /// Benchmarks that print figures.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Worker threads (per process).
    #[arg(short = 'w', long, env = "STOCKFLOW_WORKERS", default_value_t = 1)]
    pub workers: usize,
    /// Processes in a timely cluster (each runs --workers threads).
    #[arg(long, default_value_t = 1)]
    pub processes: usize,
    /// This process's index in the cluster (0-based).
    #[arg(long, default_value_t = 0)]
    pub process: usize,
    /// File with one host:port per process, in process order.
    #[arg(long)]
    pub hostfile: Option<PathBuf>,
    /// How long the processes of a cluster may take to connect before this one gives up (s).
    #[arg(long, default_value_t = 60)]
    pub cluster_wait_secs: u64,
    /// A cluster: how long another process may stay silent (it beats every second while it
    /// runs) before this one stops, saying which process hangs (s).
    #[arg(long, env = "STOCKFLOW_PEER_TIMEOUT_SECS", default_value_t = 60)]
    pub peer_timeout_secs: u64,
    /// Where the sources start: earliest | latest | offsets=P:O,... | time=RFC3339 (replay).
    /// With the MySQL sink the log is read on top of the job's stored state (the latest
    /// version of every record wins, so a replay changes nothing that is already right).
    /// Default: resume from the offsets stored with the state (or from the start).
    #[arg(long)]
    pub from: Option<String>,
    /// After the log lost records this job had read (topic recreated, broker data lost):
    /// read those partitions from their new start, on top of the stored state.
    #[arg(long)]
    pub reset_offsets: bool,
    /// Take the job's lease even though another live run holds it; that run's next commit
    /// fails and it stops.
    #[arg(long)]
    pub takeover: bool,
    /// Restore only the last N calendar days of stored closes at start (0: all of them). A
    /// record about an earlier day makes the job re-run with a wider window, so results never
    /// depend on N; only restart time does.
    #[arg(long, env = "STOCKFLOW_RESTORE_DAYS", default_value_t = 31)]
    pub restore_days: u32,
    /// Calendar days of history the job keeps in memory behind the days it reads (0: all of
    /// them). Older days leave memory, so a job's memory does not grow with its history; a
    /// record about an older day makes the job re-run with that day restored from MySQL (with
    /// `--sink null`, by reading the log again from where the run started, keeping every day),
    /// so results never depend on N. A single process only: a cluster, `--sink jsonl` and
    /// `--sink null --publish-portfolios` keep every day.
    #[arg(long, env = "STOCKFLOW_MEMORY_DAYS", default_value_t = 92,
          value_parser = memory_days)]
    pub memory_days: u32,
    /// How long MySQL may be unavailable before the job gives up (seconds).
    #[arg(long, env = "STOCKFLOW_SINK_RETRY_SECS", default_value_t = 600)]
    pub sink_retry_secs: u64,
    /// How long the log may fail in a row before the job gives up (seconds).
    #[arg(long, env = "STOCKFLOW_SOURCE_RETRY_SECS", default_value_t = 600)]
    pub source_retry_secs: u64,
    /// Stop once the end offsets seen at start are processed (run as a batch job).
    #[arg(long)]
    pub until_caught_up: bool,
    /// Where the evaluation diffs go.
    #[arg(long, value_enum, default_value_t = SinkKind::Mysql)]
    pub sink: SinkKind,
    #[command(flatten)]
    pub db: DbArgs,
    /// Also publish every evaluation change as JSON to this topic (the course's `portfolios`
    /// topic), before the batch commits to MySQL: at least once.
    #[arg(long, num_args = 0..=1, default_missing_value = "portfolios", value_name = "TOPIC")]
    pub publish_portfolios: Option<String>,
    /// Name of this job: its offsets and its lease in MySQL.
    #[arg(long, env = "STOCKFLOW_JOB", default_value = "stockflow")]
    pub job: String,
    /// File for the JSON Lines sink ('-' is stdout).
    #[arg(long, default_value = "-")]
    pub sink_path: PathBuf,
    #[command(flatten)]
    pub topics: TopicArgs,
    #[command(flatten)]
    pub market: MarketArgs,
    /// Most records a worker reads into one timestamp.
    #[arg(long, default_value_t = 50_000)]
    pub max_batch: usize,
    /// During a catch-up, the rows one MySQL transaction gathers before it commits (while
    /// the next one gathers); a live job commits every completed day at once.
    #[arg(long, env = "STOCKFLOW_COMMIT_ROWS", default_value_t = stockflow_dataflow::job::committer::COALESCE_ROWS)]
    pub commit_rows: usize,
    /// During a catch-up, the trading days whose records share one timestamp (tuning).
    #[arg(long, hide = true, default_value_t = stockflow_dataflow::job::DAYS_PER_TIME)]
    pub days_per_timestamp: i64,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9464), path /metrics.
    #[arg(long, env = "STOCKFLOW_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ConsoleArgs {
    /// Address to serve on. Loopback by default: the console has no login, so any other
    /// address is warned about.
    #[arg(long, env = "STOCKFLOW_CONSOLE_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: std::net::SocketAddr,
    #[command(flatten)]
    pub db: ReaderDbArgs,
    #[command(flatten)]
    pub topics: TopicArgs,
    #[command(flatten)]
    pub market: MarketArgs,
    /// The job whose commits, lease and offsets are shown.
    #[arg(long, env = "STOCKFLOW_JOB", default_value = "stockflow")]
    pub job: String,
    /// The running job's metrics endpoint (its --metrics-addr), for the dataflow graph's
    /// records per second: http://127.0.0.1:9464/metrics.
    #[arg(long, env = "STOCKFLOW_CONSOLE_METRICS_URL")]
    pub metrics_url: Option<String>,
    /// Serve a form that changes a holding: it publishes a holdings record to the holdings
    /// topic, as `stockflow holdings set` does (the console never writes the database).
    #[arg(long)]
    pub allow_holdings_changes: bool,
    /// Live (server-sent event) clients at most; more are refused with 503.
    #[arg(long, default_value_t = 64)]
    pub max_clients: usize,
    /// The period of the statistics' item 4, whole years inclusive (as `report --period`).
    #[arg(long, default_value = "2020..2024")]
    pub period: String,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// The investor to report on (Inv1, Inv2, Inv3).
    #[arg(long, required_unless_present = "all", conflicts_with = "all")]
    pub investor: Option<String>,
    /// Every investor.
    #[arg(long)]
    pub all: bool,
    /// Output folder.
    #[arg(long, default_value = "reports")]
    pub out: PathBuf,
    /// The period of item 4, whole years inclusive.
    #[arg(long, default_value = "2020..2024")]
    pub period: String,
    /// text: files plus a summary table; json: the figures on stdout (files are still
    /// written). Default: the global --output.
    #[arg(long, value_enum)]
    pub format: Option<Output>,
    /// Skip the PNG charts.
    #[arg(long)]
    pub no_charts: bool,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// MySQL URL (the password is never logged). Default: the local stack's database with its
    /// development user. Give the password by environment, not in a URL on a command line:
    /// STOCKFLOW_MYSQL_PASSWORD (or MYSQL_PWD) replaces the URL's.
    #[arg(
        long = "mysql-url",
        env = "STOCKFLOW_MYSQL_URL",
        default_value = "mysql://stockflow:stockflow@127.0.0.1:3306/InvestorsDB",
        hide_default_value = true
    )]
    pub raw_url: String,
}

/// The console's database: a read-only account (the stack creates `stockflow_reader`, with
/// SELECT only), apart from the job's.
#[derive(Debug, Clone, Args)]
pub struct ReaderDbArgs {
    /// MySQL URL of a read-only account (the password is never logged). Default: the local
    /// stack's database with its read-only development user. The password goes by environment:
    /// STOCKFLOW_CONSOLE_MYSQL_PASSWORD replaces the URL's.
    #[arg(
        long = "mysql-url",
        env = "STOCKFLOW_CONSOLE_MYSQL_URL",
        default_value = "mysql://stockflow_reader:stockflow-reader@127.0.0.1:3306/InvestorsDB",
        hide_default_value = true
    )]
    pub raw_url: String,
}

impl ReaderDbArgs {
    /// The URL to connect with, the password from STOCKFLOW_CONSOLE_MYSQL_PASSWORD when set.
    pub fn url(&self) -> anyhow::Result<String> {
        let password = std::env::var("STOCKFLOW_CONSOLE_MYSQL_PASSWORD").ok();
        with_password(&self.raw_url, password.as_deref())
    }
}

impl DbArgs {
    /// The URL to connect with: the password from STOCKFLOW_MYSQL_PASSWORD or MYSQL_PWD when
    /// one is set (so that no password needs to appear on a command line).
    pub fn url(&self) -> anyhow::Result<String> {
        let password = std::env::var("STOCKFLOW_MYSQL_PASSWORD")
            .or_else(|_| std::env::var("MYSQL_PWD"))
            .ok();
        with_password(&self.raw_url, password.as_deref())
    }
}

/// `url` with `password` set (percent-encoded), or as it is without one.
pub fn with_password(url: &str, password: Option<&str>) -> anyhow::Result<String> {
    let Some(password) = password else {
        return Ok(url.to_string());
    };
    let mut parsed = url::Url::parse(url).map_err(|e| {
        crate::exit::UserError(format!(
            "--mysql-url {}: {e}",
            stockflow_sinks::mysql::redact(url)
        ))
    })?;
    parsed
        .set_password(Some(password))
        .map_err(|()| crate::exit::UserError("--mysql-url cannot take a password".into()))?;
    Ok(parsed.to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SinkKind {
    /// MySQL InvestorsDB, exactly once (offsets in the same transaction as the rows).
    Mysql,
    /// JSON Lines, one diff a line, consolidated per timestamp.
    Jsonl,
    /// Count only (benchmarks).
    Null,
}

#[derive(Debug, Clone, Args)]
pub struct TopicArgs {
    /// Topic of the prices.
    #[arg(
        long = "prices-topic",
        env = "STOCKFLOW_PRICES_TOPIC",
        default_value = "StockExchange"
    )]
    pub prices: String,
    /// Topic of the holdings.
    #[arg(
        long = "holdings-topic",
        env = "STOCKFLOW_HOLDINGS_TOPIC",
        default_value = "holdings"
    )]
    pub holdings: String,
}

#[derive(Debug, Clone, Args)]
pub struct MarketArgs {
    /// The market: `spec` (the course's 24 stocks and 6 portfolios) or
    /// `synthetic:STOCKS:PORTFOLIOS:MIN_HOLDINGS:MAX_HOLDINGS:SEED`.
    #[arg(long, env = "STOCKFLOW_MARKET", default_value = "spec")]
    pub market: String,
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Recompute every evaluation and issue from the stored state (no log needed), and bring
    /// the tables to it portfolio by portfolio; run it again to resume if interrupted.
    Rebuild {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        market: MarketArgs,
        /// The job whose lease the rebuild holds (no run of it may write meanwhile).
        #[arg(long, env = "STOCKFLOW_JOB", default_value = "stockflow")]
        job: String,
        /// Take the job's lease from a live run.
        #[arg(long)]
        takeover: bool,
        #[arg(short = 'w', long, default_value_t = 1)]
        workers: usize,
        /// Also publish the rebuild's evaluation changes as JSON to this topic, as `run
        /// --publish-portfolios` does (through the outbox, after each chunk's commit).
        #[arg(long, num_args = 0..=1, default_missing_value = "portfolios", value_name = "TOPIC")]
        publish_portfolios: Option<String>,
    },
    /// Create InvestorsDB if missing, apply pending migrations, fill the reference tables.
    Init {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        market: MarketArgs,
        /// Drop the database first (all evaluations, progress and dead letters are lost).
        #[arg(long, requires = "yes")]
        reset: bool,
        /// Confirms --reset.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum HoldingsCommand {
    /// Publish the market's initial holdings, from the first trading day (or --from).
    Load {
        #[arg(long)]
        from: Option<NaiveDate>,
        #[arg(long, env = "STOCKFLOW_HOLDINGS_TOPIC", default_value = "holdings")]
        topic: String,
        #[command(flatten)]
        market: MarketArgs,
    },
    /// Publish one change: PORTFOLIO holds QTY shares of TICKER from DATE on (0 closes).
    Set {
        portfolio: String,
        ticker: String,
        quantity: i64,
        #[arg(long)]
        from: NaiveDate,
        #[arg(long, env = "STOCKFLOW_HOLDINGS_TOPIC", default_value = "holdings")]
        topic: String,
        #[command(flatten)]
        market: MarketArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExchangeCommand {
    /// Stock exchange 1 (IBM … ORCL).
    Se1(ServerArgs),
    /// Stock exchange 2 (HPQ … EBAY).
    Se2(ServerArgs),
    /// Both exchanges, as independent asynchronous tasks.
    All(ServerArgs),
    /// Publish ticks from a JSON Lines file (one tick a line; '-' reads stdin).
    Publish {
        file: PathBuf,
        #[arg(long, env = "STOCKFLOW_PRICES_TOPIC", default_value = "StockExchange")]
        topic: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// First calendar day to emit.
    #[arg(long, default_value = "2000-01-01")]
    pub from: NaiveDate,
    /// Last calendar day to emit (default: today).
    #[arg(long, conflicts_with = "days")]
    pub until: Option<NaiveDate>,
    /// Emit this many trading days from --from, instead of an end date.
    #[arg(long)]
    pub days: Option<usize>,
    /// Seed of the price model: the same seed gives the same prices.
    #[arg(long, env = "STOCKFLOW_SEED", default_value_t = 6107)]
    pub seed: u64,
    /// Price model.
    #[arg(long, value_enum, default_value_t = Model::RandomWalk)]
    pub model: Model,
    /// Emit as fast as the broker takes it, instead of live pacing.
    #[arg(long)]
    pub backfill: bool,
    /// Seconds between two trading days in live mode (the course rule is at least 2).
    #[arg(long, default_value_t = 2.0)]
    pub pace: f64,
    /// Topic of the prices.
    #[arg(long, env = "STOCKFLOW_PRICES_TOPIC", default_value = "StockExchange")]
    pub topic: String,
    /// Partitions to give the topic if it has to be created.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    #[command(flatten)]
    pub market: MarketArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Model {
    /// previous close × (1 + r), r uniform in [-5 %, +5 %)
    RandomWalk,
    /// the course starter's: initial price × (1 + r), not carried forward
    Course,
}

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create the topics stockflow uses, if missing (StockExchange, holdings, portfolios).
    Create {
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// Topics to create (default: the three of the pipeline).
        #[arg(long = "topic")]
        topics: Vec<String>,
    },
    /// Each topic's partitions, offsets and retention.
    Describe {
        /// Topics to describe (default: the three of the pipeline).
        #[arg(long = "topic")]
        topics: Vec<String>,
    },
    /// Print a topic's latest records (key, partition, offset, time, payload), on either log
    /// backend: what `kcat -C -o -N -e` would show (Debian's kcat cannot talk to tansu 0.6).
    /// `--output json` prints one JSON object a record.
    Tail {
        #[arg(long, default_value = "StockExchange")]
        topic: String,
        /// Records per partition.
        #[arg(short = 'n', long, default_value_t = 10)]
        count: usize,
        /// Only this partition.
        #[arg(long)]
        partition: Option<i32>,
    },
    /// Summarise what the prices topic holds: per exchange, per partition, first and last day.
    Summary {
        #[arg(long, env = "STOCKFLOW_PRICES_TOPIC", default_value = "StockExchange")]
        topic: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// The dataflow core alone, fed from memory (no broker): ticks/s, early vs late day cost,
    /// one close restated 21 times (median, fastest, slowest), peak memory.
    Dataflow {
        #[arg(short = 'w', long, default_value_t = 1)]
        workers: usize,
        #[arg(long, default_value_t = 250)]
        days: usize,
        /// Calendar days kept in memory behind the newest day, as the job's `--memory-days`
        /// (0: every day; then the middle day's close is restated, else one inside the days
        /// kept).
        #[arg(long, default_value_t = 92, value_parser = memory_days)]
        memory_days: u32,
        /// Trading days unfinished at a time, as the job's rounds in flight (1: every day
        /// completes, on every worker, before the next enters). The restatements always
        /// enter one at a time, into an idle dataflow.
        #[arg(long, default_value_t = stockflow_dataflow::job::machine::MAX_ROUNDS_IN_FLIGHT, value_parser = in_flight)]
        in_flight: usize,
        /// Measure scaling instead: this many rounds of one worker against `-w` workers, run
        /// alternately in this process (the first run of a round alternates too); prints each
        /// round's ticks/s and ratio, and the median ratio (0: one run at `-w`).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
        scaling_rounds: u32,
        #[command(flatten)]
        market: MarketArgs,
    },
    /// Raw multi-row INSERT rate of the MySQL server (rows shaped like evaluations).
    MysqlInsert {
        #[arg(long, default_value_t = 200_000)]
        rows: usize,
        #[command(flatten)]
        db: DbArgs,
    },
    /// The server's raw bulk-load rate (LOAD DATA LOCAL INFILE) into copies of evaluations,
    /// with the index by investor (before migration V9) and without: what the sink's commit
    /// path is measured against.
    MysqlLoad {
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Raw consume rate of a topic with the job's client settings (whole topic, one thread).
    Consume {
        #[arg(long, default_value = "StockExchange")]
        topic: String,
    },
    /// Both exchanges backfilling vs raw produce of as many messages, on fresh topics.
    Producers {
        #[arg(long, default_value = "2000-01-01")]
        from: NaiveDate,
        #[arg(long)]
        until: Option<NaiveDate>,
        #[arg(long, default_value_t = 4)]
        partitions: i32,
    },
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

/// `bench dataflow --in-flight`: 1 to 64 days unfinished at a time.
fn in_flight(v: &str) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n @ 1..=64) => Ok(n),
        Ok(n) => Err(format!("{n} is out of range: 1 to 64 days in flight")),
        Err(e) => Err(format!("{e}")),
    }
}

/// `--memory-days`: 0 (every day), or at least 40 (a month of restored window and a catch-up
/// bucket behind the newest day: fewer would re-run the job on ordinary late records).
fn memory_days(v: &str) -> Result<u32, String> {
    let n: u32 = v.parse().map_err(|e| format!("{e}"))?;
    if n != 0 && n < 40 {
        return Err(format!(
            "{n} is too few: 0 (keep every day) or at least 40 days"
        ));
    }
    Ok(n)
}
