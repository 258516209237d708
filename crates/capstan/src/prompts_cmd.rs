//! `capstan prompts create | list | show | label | render | diff`: the prompt registry in the
//! metadata database, the same one the server's `/api/2.0/capstan/prompts` reads.

use crate::config::Config;
use crate::platform::{Error, Platform};
use crate::report::table;
use gateway::prompts::{self, NewPromptVersion, PromptStore};
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand, Debug)]
pub enum PromptsCmd {
    /// Store a new version of NAME from a JSON file: {"template": {"messages": [...]} or
    /// {"text": "..."}, "variables": {...}, "params": {...}}.
    Create {
        name: String,
        file: PathBuf,
        #[arg(short, long, default_value = "")]
        message: String,
    },
    /// Every prompt with its latest version and labels.
    List,
    /// A prompt's versions and labels.
    Show { name: String },
    /// Point LABEL (e.g. production) at VERSION.
    Label {
        name: String,
        label: String,
        version: i64,
    },
    /// Render a version (or `--label`) with `--var key=value` (values parsed as JSON when they
    /// parse, else strings).
    Render {
        name: String,
        #[arg(long)]
        version: Option<i64>,
        #[arg(long)]
        label: Option<String>,
        #[arg(long = "var")]
        vars: Vec<String>,
    },
    /// Line diff of two versions.
    Diff { name: String, from: i64, to: i64 },
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::Other(e.to_string())
}

pub async fn run(home: &Path, config: &Config, cmd: PromptsCmd) -> Result<(), Error> {
    let p = Platform::open(home, config).await?;
    let db = &p.db;
    let version_of = |name: String, v: i64| async move {
        db.prompt_version(&name, v)
            .await
            .map_err(err)?
            .ok_or_else(|| err(format!("prompt `{name}` has no version {v}")))
    };
    match cmd {
        PromptsCmd::Create {
            name,
            file,
            message,
        } => {
            prompts::valid_name(&name).map_err(err)?;
            let text = std::fs::read_to_string(&file)?;
            let mut new: NewPromptVersion =
                serde_json::from_str(&text).map_err(|e| err(format!("{}: {e}", file.display())))?;
            if !message.is_empty() {
                new.commit_message = message;
            }
            let vars = prompts::check(&new).map_err(|e| err(format!("{}: {e}", file.display())))?;
            let v = db
                .create_prompt_version(&name, &new, &vars)
                .await
                .map_err(err)?;
            println!(
                "{name} version {} ({} variables: {})",
                v.version,
                vars.len(),
                vars.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        PromptsCmd::List => {
            let mut rows = Vec::new();
            for (name, latest) in db.prompts().await.map_err(err)? {
                let labels = db.prompt_labels(&name).await.map_err(err)?;
                let labels: Vec<String> = labels.iter().map(|(l, v)| format!("{l}→{v}")).collect();
                rows.push(vec![name, latest.to_string(), labels.join(" ")]);
            }
            print!("{}", table(&["prompt", "latest", "labels"], &rows));
        }
        PromptsCmd::Show { name } => {
            let versions = db.prompt_versions(&name).await.map_err(err)?;
            if versions.is_empty() {
                return Err(err(format!("prompt `{name}` does not exist")));
            }
            let labels = db.prompt_labels(&name).await.map_err(err)?;
            let rows: Vec<Vec<String>> = versions
                .iter()
                .map(|v| {
                    let here: Vec<&str> = labels
                        .iter()
                        .filter(|(_, n)| **n == v.version)
                        .map(|(l, _)| l.as_str())
                        .collect();
                    vec![
                        v.version.to_string(),
                        here.join(" "),
                        v.variables.keys().cloned().collect::<Vec<_>>().join(", "),
                        v.commit_message.clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(&["version", "labels", "variables", "message"], &rows)
            );
        }
        PromptsCmd::Label {
            name,
            label,
            version,
        } => {
            prompts::valid_name(&label).map_err(err)?;
            version_of(name.clone(), version).await?;
            db.set_prompt_label(&name, &label, version)
                .await
                .map_err(err)?;
            println!("{name}@{label} → version {version}");
        }
        PromptsCmd::Render {
            name,
            version,
            label,
            vars,
        } => {
            let v = match (version, label) {
                (Some(n), None) => n,
                (None, Some(l)) => *db
                    .prompt_labels(&name)
                    .await
                    .map_err(err)?
                    .get(&l)
                    .ok_or_else(|| err(format!("prompt `{name}` has no label `{l}`")))?,
                _ => return Err(err("give --version or --label")),
            };
            let pv = version_of(name.clone(), v).await?;
            let mut map = serde_json::Map::new();
            for kv in vars {
                let (k, raw) = kv
                    .split_once('=')
                    .ok_or_else(|| err(format!("--var `{kv}` is not key=value")))?;
                let value =
                    serde_json::from_str(raw).unwrap_or(serde_json::Value::String(raw.to_owned()));
                map.insert(k.to_owned(), value);
            }
            match prompts::render(&pv, &map).map_err(err)? {
                prompts::Rendered::Chat { messages } => {
                    for m in messages {
                        println!("[{}]\n{}\n", m.role, m.content);
                    }
                }
                prompts::Rendered::Text { text } => println!("{text}"),
            }
        }
        PromptsCmd::Diff { name, from, to } => {
            let a = version_of(name.clone(), from).await?;
            let b = version_of(name.clone(), to).await?;
            for line in prompts::diff(&a, &b) {
                println!("{line}");
            }
        }
    }
    Ok(())
}
