//! Least privilege on the local stack (after `compose/stack up`, which `scripts/test` runs):
//! the app user reaches its databases only, never the machine's files; the broker does not
//! run as root; no script puts a password on a command line.
#![allow(clippy::expect_used)]

mod common;

use common::*;
use mysql::prelude::Queryable;

fn app_connection() -> mysql::Conn {
    let url = fresh_db("privileges");
    let base = url.rsplit_once('/').expect("a database in the URL").0;
    mysql::Conn::new(mysql_opts(base)).expect("connecting as the app user")
}

#[test]
fn the_app_user_cannot_read_or_write_the_machines_files_nor_other_databases() {
    let mut c = app_connection();
    let grants: Vec<String> = c.query("SHOW GRANTS").expect("SHOW GRANTS");
    for g in &grants {
        assert!(!g.contains("ALL PRIVILEGES ON *.*"), "{grants:?}");
        assert!(!g.contains("FILE"), "{grants:?}");
        assert!(!g.contains("SUPER"), "{grants:?}");
        assert!(!g.contains("PROCESS"), "{grants:?}");
    }
    let passwd: Option<Option<Vec<u8>>> = c
        .query_first("SELECT LOAD_FILE('/etc/passwd')")
        .expect("LOAD_FILE runs");
    assert_eq!(
        passwd,
        Some(None),
        "LOAD_FILE must not read the machine's files"
    );
    let target = std::env::temp_dir().join(format!("sf-outfile-{}", uuid::Uuid::new_v4()));
    let written = c.query_drop(format!("SELECT 1 INTO OUTFILE '{}'", target.display()));
    assert!(written.is_err(), "INTO OUTFILE must be refused");
    assert!(!target.exists());
    let other = c.query_drop("CREATE DATABASE not_stockflows_own");
    assert!(other.is_err(), "only InvestorsDB and sf_* may be created");
    // Its own databases work.
    let name = format!(
        "sf_priv_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    c.query_drop(format!("CREATE DATABASE {name}"))
        .expect("creating a test database");
    c.query_drop(format!("DROP DATABASE {name}"))
        .expect("dropping a test database");
    // Where the server may read and write files at all.
    let folder: Option<Option<String>> = c
        .query_first("SELECT @@secure_file_priv")
        .expect("secure_file_priv");
    let folder = folder.flatten().unwrap_or_default();
    assert!(
        folder.ends_with("var/mysql/files/") || folder.ends_with("var/mysql/files"),
        "secure_file_priv is {folder:?}"
    );
}

#[test]
fn the_broker_does_not_run_as_root() {
    let pidfile = concat!(env!("CARGO_MANIFEST_DIR"), "/var/broker/tansu.pid");
    // The native stack's broker (scripts/test skips this test with the Docker stack, whose
    // broker runs as the image's own user, and says so).
    let pid = std::fs::read_to_string(pidfile).expect(
        "the broker's pid file: the broker was not started by this checkout's compose/stack \
         (with STOCKFLOW_STACK=docker, scripts/test skips this test)",
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim()))
        .expect("the broker's process (compose/stack up)");
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .expect("a Uid line");
    assert_ne!(uid, "0", "the broker runs as root");
}

#[test]
fn no_script_puts_a_password_on_a_command_line() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut files = Vec::new();
    for dir in ["scripts", "bench", "compose"] {
        for entry in std::fs::read_dir(format!("{root}/{dir}")).expect("reading a folder") {
            let path = entry.expect("an entry").path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    assert!(files.len() > 5);
    let mut found = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            let l = line.trim();
            if l.contains("-pstockflow")
                || l.contains("\"-p\"")
                || l.contains("--password=")
                || l.contains("stockflow:stockflow@")
            {
                found.push(format!("{}:{}: {l}", f.display(), i + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "passwords on command lines:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_docker_stack_commits_no_root_password_and_root_stays_in_its_container() {
    let root = env!("CARGO_MANIFEST_DIR");
    let compose = std::fs::read_to_string(format!("{root}/compose/docker-compose.yml"))
        .expect("reading compose/docker-compose.yml");
    let settings: Vec<&str> = compose
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert!(
        !settings
            .iter()
            .any(|l| l.starts_with("MYSQL_ROOT_PASSWORD")),
        "a root password in the repository"
    );
    assert!(
        settings.contains(&"MYSQL_RANDOM_ROOT_PASSWORD: \"yes\""),
        "the image makes root's password"
    );
    assert!(
        settings.contains(&"MYSQL_ROOT_HOST: localhost"),
        "root logs in from inside the container only, not over the published port"
    );
}
