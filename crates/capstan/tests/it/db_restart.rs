//! The metadata database restarted under a running worker (PostgreSQL, a private cluster this
//! test starts and restarts with `pg_ctl`, so no other test loses its connections): the worker
//! waits for the database instead of exiting, the job that was running ends recorded —
//! finished, or failed, retried and resumed — with exactly one candidate registered, and a job
//! queued after the restart runs too.

use crate::binary::{capstan, cli_ok};
use crate::retrain_loop::{versions, winter_champion};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A PostgreSQL cluster of the test's own: Debian's binaries (or `CAPSTAN_TEST_PG_BIN`), run as
/// the `postgres` user when the test runs as root (PostgreSQL refuses root).
struct PrivatePg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl PrivatePg {
    fn start() -> PrivatePg {
        let bin = std::env::var_os("CAPSTAN_TEST_PG_BIN")
            .map(PathBuf::from)
            .or_else(|| {
                let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                    .ok()?
                    .flatten()
                    .map(|e| e.path().join("bin"))
                    .filter(|p| p.join("pg_ctl").exists())
                    .collect();
                found.sort();
                found.pop()
            })
            .expect("PostgreSQL's server binaries (initdb, pg_ctl): set CAPSTAN_TEST_PG_BIN");
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let pg = PrivatePg { dir, bin, port };
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(pg.dir.path())
                .status()
                .expect("chown");
            assert!(ok.success());
        }
        let data = pg.data();
        pg.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        );
        pg.ctl("start");
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_string_lossy().into_owned()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut c = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = c.args(args).output().expect("PostgreSQL tool");
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `pg_ctl start | stop` (fast shutdown: connections are cut, as in a restart).
    fn ctl(&self, action: &str) {
        let data = self.data();
        let log = self.dir.path().join("log").to_string_lossy().into_owned();
        let socket = self.dir.path().to_string_lossy().into_owned();
        let opts = format!("-p {} -k {socket} -c listen_addresses=127.0.0.1", self.port);
        match action {
            "start" => self.run(
                "pg_ctl",
                &["-D", &data, "-l", &log, "-w", "-o", &opts, "start"],
            ),
            _ => self.run("pg_ctl", &["-D", &data, "-w", "-m", "fast", action]),
        }
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let data = self.data();
        let exe = self.bin.join("pg_ctl");
        let mut c = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let _ = c.args(["-D", &data, "-m", "immediate", "stop"]).output();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn job(h: &Path, id: &str) -> Value {
    serde_json::from_str(&cli_ok(h, &["jobs", "show", id])).expect("job json")
}

/// Waits (up to 3 minutes) for job `id` to finish; the job.
fn finished(h: &Path, id: &str) -> Value {
    let t = Instant::now();
    loop {
        let j = job(h, id);
        if ["succeeded", "failed", "cancelled"].contains(&j["state"].as_str().unwrap_or("")) {
            return j;
        }
        assert!(
            t.elapsed() < Duration::from_secs(180),
            "job {id} never finished: {j}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_worker_rides_out_a_database_restart() {
    let pg = PrivatePg::start();
    let home = tempfile::tempdir().expect("home");
    let h = home.path();
    std::fs::write(
        h.join("capstan.toml"),
        format!("[store]\ndb = \"{}\"\n", pg.url()),
    )
    .expect("config");
    winter_champion(h, "rounds: 300\n");
    let before = versions(h);

    let mut worker = capstan(h)
        .args([
            "worker",
            "--kinds",
            "retrain",
            "--lease-secs",
            "4",
            "--poll-ms",
            "100",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("worker");
    let stdout = BufReader::new(worker.stdout.take().expect("stdout"));
    let mut worker = Kill(worker);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    let queued = cli_ok(
        h,
        &["retrain", "run", "bikes", "--queue", "--reason", "restart"],
    );
    let id = queued.split_whitespace().nth(1).expect("job id").to_owned();
    let started = format!("job {id} (retrain) started");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the worker starts the job");
        if line.contains(&started) {
            break;
        }
    }
    // The database goes away while the job runs, and comes back three seconds later.
    pg.ctl("stop");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        worker.0.try_wait().expect("wait").is_none(),
        "the worker waits for the database instead of exiting"
    );
    pg.ctl("start");

    let first = finished(h, &id);
    assert_eq!(first["state"], "succeeded", "{first}");
    assert_eq!(
        versions(h),
        before + 1,
        "one candidate, however the restart cut the job: {first}"
    );
    let log = cli_ok(h, &["jobs", "logs", &id]);
    assert!(
        log.contains("leased by") && log.contains("succeeded"),
        "{log}"
    );
    // Cut mid-job, the attempt fails on the dropped connection, is recorded once the database is
    // back, and the retry resumes (seen here: "#1 failed: … terminating connection due to
    // administrator command; retry in 1.1 s", then "#2 … promoted").
    if log.contains("#1  failed") {
        assert!(log.contains("#2  attempt 2/3 leased by"), "{log}");
    }

    // The same worker takes the next job.
    let queued = cli_ok(
        h,
        &["retrain", "run", "bikes", "--queue", "--reason", "after"],
    );
    let next = queued.split_whitespace().nth(1).expect("job id").to_owned();
    let second = finished(h, &next);
    assert_eq!(second["state"], "succeeded", "{second}");
    assert!(
        worker.0.try_wait().expect("wait").is_none(),
        "still running"
    );
}
