//! `capstan monitors …`: define monitors (YAML or JSON files), list them with their state,
//! evaluate one now, list alerts. Works on the metadata store directly; a running server
//! evaluates the same monitors on their schedule.

use crate::config::Config;
use crate::platform::{Error, Platform};
use crate::report::table;
use monitor::monitors::MonitorSpec;
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum MonitorsCmd {
    /// Create or replace a monitor from a YAML or JSON file.
    Create {
        file: PathBuf,
    },
    /// Every monitor with its last evaluation.
    List,
    /// Evaluate a monitor now (stores the result, raises alerts).
    Evaluate {
        name: String,
    },
    /// Recent alerts, newest first.
    Alerts {
        #[arg(long)]
        monitor: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    Delete {
        name: String,
    },
}

fn when(ms: i64) -> String {
    let secs = (base::now_millis() - ms) / 1000;
    match secs {
        s if s < 120 => format!("{s}s ago"),
        s if s < 7200 => format!("{}m ago", s / 60),
        s => format!("{}h ago", s / 3600),
    }
}

pub async fn run(home: &std::path::Path, config: &Config, cmd: MonitorsCmd) -> Result<(), Error> {
    let p = Platform::open(home, config).await?;
    let state = p.state(config, None);
    let store = state.monitors.clone();
    let err = |e: String| Error::Other(e);
    match cmd {
        MonitorsCmd::Create { file } => {
            let text = std::fs::read_to_string(&file)?;
            let spec: MonitorSpec = serde_yaml_ng::from_str(&text)
                .map_err(|e| Error::Other(format!("{}: {e}", file.display())))?;
            spec.validate()
                .map_err(|e| Error::Other(format!("{}: {e}", file.display())))?;
            store.put_monitor(&spec).await.map_err(err)?;
            println!(
                "monitor {} watches {} ({} checks)",
                spec.name,
                spec.model,
                spec.checks.len()
            );
        }
        MonitorsCmd::List => {
            let rows: Vec<Vec<String>> = store
                .list_monitors()
                .await
                .map_err(err)?
                .into_iter()
                .map(|(spec, last)| {
                    let checks: Vec<&str> = spec.checks.iter().map(|c| c.name()).collect();
                    vec![
                        spec.name.clone(),
                        spec.model.clone(),
                        checks.join(", "),
                        format!("{}s / {}s", spec.window_seconds, spec.interval_seconds),
                        last.as_ref().map_or("never".into(), |l| when(l.at_ms)),
                        last.map_or("-".into(), |l| {
                            let f = l.failing();
                            if f.is_empty() {
                                "ok".into()
                            } else {
                                format!("FAILING: {}", f.into_iter().collect::<Vec<_>>().join(", "))
                            }
                        }),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &[
                        "monitor",
                        "model",
                        "checks",
                        "window / every",
                        "evaluated",
                        "state"
                    ],
                    &rows
                )
            );
        }
        MonitorsCmd::Evaluate { name } => {
            let (eval, raised) = server::monitors::run_monitor(&state, &name)
                .await
                .map_err(|e| Error::Other(e.message))?;
            let rows: Vec<Vec<String>> = eval
                .results
                .iter()
                .map(|r| {
                    vec![
                        r.check.clone(),
                        match r.failing {
                            Some(true) => "FAILING".into(),
                            Some(false) => "ok".into(),
                            None => "no verdict".into(),
                        },
                        r.message.clone(),
                    ]
                })
                .collect();
            print!("{}", table(&["check", "state", "observed"], &rows));
            println!(
                "\n{} predictions in the window; {} new alert(s)",
                eval.predictions,
                raised.len()
            );
        }
        MonitorsCmd::Alerts { monitor, limit } => {
            let rows: Vec<Vec<String>> = store
                .list_alerts(monitor.as_deref(), limit)
                .await
                .map_err(err)?
                .into_iter()
                .map(|a| {
                    vec![
                        a.id.to_string(),
                        when(a.created_ms),
                        a.monitor,
                        a.check,
                        a.message,
                    ]
                })
                .collect();
            print!(
                "{}",
                table(&["id", "raised", "monitor", "check", "message"], &rows)
            );
        }
        MonitorsCmd::Delete { name } => {
            if !store.delete_monitor(&name).await.map_err(err)? {
                return Err(Error::Other(format!("no monitor {name}")));
            }
            println!("deleted monitor {name}");
        }
    }
    if let Some(log) = &state.predictions {
        log.flush().await;
    }
    Ok(())
}
