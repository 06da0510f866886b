//! `weir sql`: SQL against a running Weir's embedded store over its HTTP
//! SQL endpoint (`POST /api/v1/sql?db=`), printed as a table, CSV or JSON;
//! with no statement, an interactive shell (`\c DB` switches database,
//! `\d` lists tables, `\l` databases, `\q` quits; statements end with `;`,
//! and the lines typed are kept in `~/.weir_history`).

use std::io::{BufRead, Write};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use weir_pipeline::http::{Url, base64_encode, request};
use weir_pipeline::store::Answer;

/// Options of `weir sql`.
#[derive(Debug, Args)]
pub(crate) struct SqlArgs {
    /// The statement; none starts an interactive shell.
    statement: Option<String>,
    /// The HTTP address of a running `weir up`.
    #[arg(long, default_value = "127.0.0.1:8902")]
    http: String,
    /// The database.
    #[arg(long, short = 'd', default_value = "public")]
    db: String,
    /// Output: table, csv or json.
    #[arg(long, default_value = "table")]
    format: Format,
    /// User for basic auth.
    #[arg(long, short = 'u')]
    user: Option<String>,
    /// Its password.
    #[arg(long, short = 'p', default_value = "")]
    password: String,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Table,
    Csv,
    Json,
}

struct Client {
    http: String,
    auth: Option<String>,
}

impl Client {
    fn run(&self, db: &str, statement: &str, json: bool) -> Result<String> {
        let url = Url::parse(&format!("http://{}/api/v1/sql?db={db}", self.http))
            .map_err(|e| anyhow::anyhow!("--http {}: {e}", self.http))?;
        let mut headers = vec![("Accept", if json { "application/json" } else { "text/csv" })];
        if let Some(a) = &self.auth {
            headers.push(("Authorization", a));
        }
        let (status, body) = request(
            "POST",
            &url,
            &headers,
            statement.as_bytes(),
            Duration::from_secs(60),
        )
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot reach Weir at {}: {e} (is `weir up` running? --http chooses the address)",
                self.http
            )
        })?;
        let text = String::from_utf8_lossy(&body).into_owned();
        if status != 200 {
            let why = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error_message"].as_str().map(str::to_owned))
                .unwrap_or(text);
            anyhow::bail!("{why}");
        }
        Ok(text)
    }

    fn print(&self, db: &str, statement: &str, format: Format, out: &mut impl Write) -> Result<()> {
        match format {
            Format::Json => writeln!(out, "{}", self.run(db, statement, true)?)?,
            Format::Csv => write!(out, "{}", self.run(db, statement, false)?)?,
            Format::Table => {
                let answer = Answer::from_csv(&self.run(db, statement, false)?);
                write!(out, "{}", answer.to_table())?;
            }
        }
        Ok(())
    }
}

pub(crate) fn run(args: SqlArgs, out: &mut impl Write) -> Result<()> {
    let client = Client {
        http: args.http.clone(),
        auth: args.user.as_ref().map(|u| {
            format!(
                "Basic {}",
                base64_encode(format!("{u}:{}", args.password).as_bytes())
            )
        }),
    };
    if let Some(s) = &args.statement {
        if s.trim_start().starts_with('\\') {
            let mut db = args.db.clone();
            return meta(&client, &mut db, s.trim(), args.format, out).map(|_| ());
        }
        return client.print(&args.db, s, args.format, out);
    }
    shell(&client, args.db, args.format, out)
}

/// A backslash command (`\\d`, `\\d TABLE`, `\\l`, `\\c DB`, `\\q`);
/// `true` for quit.
fn meta(
    client: &Client,
    db: &mut String,
    line: &str,
    format: Format,
    out: &mut impl Write,
) -> Result<bool> {
    let mut words = line.split_whitespace();
    match (words.next(), words.next()) {
        (Some("\\q"), _) => return Ok(true),
        (Some("\\c"), Some(name)) => {
            *db = name.trim_end_matches(';').to_owned();
            writeln!(out, "now using database {db}")?;
        }
        (Some("\\d"), None) => client.print(db, "SHOW TABLES", format, out)?,
        (Some("\\d"), Some(table)) => client.print(
            db,
            &format!(
                "DESCRIBE TABLE \"{}\"",
                table.trim_end_matches(';').replace('"', "\"\"")
            ),
            format,
            out,
        )?,
        (Some("\\l"), _) => databases(client, out)?,
        (Some(other), _) => anyhow::bail!("unknown command {other} (\\d, \\l, \\c DB, \\q)"),
        (None, _) => {}
    }
    Ok(false)
}

fn history_file() -> Option<std::path::PathBuf> {
    std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".weir_history"))
}

fn shell(client: &Client, mut db: String, format: Format, out: &mut impl Write) -> Result<()> {
    let stdin = std::io::stdin();
    let tty = std::io::IsTerminal::is_terminal(&stdin);
    let mut history = history_file().and_then(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .ok()
    });
    let mut pending = String::new();
    // A terminal gets line editing and the history (arrow keys); piped
    // input is read line by line.
    let mut editor = if tty {
        let mut ed = rustyline::DefaultEditor::new().ok();
        if let (Some(ed), Some(path)) = (ed.as_mut(), history_file())
            && let Ok(text) = std::fs::read_to_string(path)
        {
            for l in text
                .lines()
                .rev()
                .take(1000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
            {
                let _ = ed.add_history_entry(l);
            }
        }
        ed
    } else {
        None
    };
    let mut lines = stdin.lock().lines();
    let mut next_line = |db: &str, cont: bool| -> Option<std::io::Result<String>> {
        let prompt = if cont {
            "   ...> ".to_owned()
        } else {
            format!("{db} ❯ ")
        };
        match editor.as_mut() {
            Some(ed) => match ed.readline(&prompt) {
                Ok(l) => {
                    let _ = ed.add_history_entry(l.as_str());
                    Some(Ok(l))
                }
                Err(rustyline::error::ReadlineError::Interrupted) => Some(Ok(String::new())),
                Err(_) => None,
            },
            None => lines.next(),
        }
    };
    if tty {
        let _ = writeln!(
            std::io::stderr(),
            "weir sql on {} (\\d tables, \\l databases, \\c DB switch, \\q quit; end statements with ;)",
            client.http
        );
    }
    let mut cont = false;
    while let Some(line) = next_line(&db, cont) {
        let line = line.context("reading the shell's input")?;
        if let Some(h) = history.as_mut() {
            let _ = writeln!(h, "{line}");
        }
        let trimmed = line.trim();
        if pending.is_empty() && trimmed.starts_with('\\') {
            match meta(client, &mut db, trimmed, format, out) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => writeln!(out, "error: {e:#}")?,
            }
            cont = false;
            continue;
        }
        if !pending.is_empty() {
            pending.push('\n');
        }
        pending.push_str(&line);
        if trimmed.ends_with(';') {
            let statement = std::mem::take(&mut pending);
            if let Err(e) = client.print(&db, &statement, format, out) {
                writeln!(out, "error: {e:#}")?;
            }
        }
        out.flush()?;
        cont = !pending.is_empty();
    }
    if !pending.trim().is_empty() {
        client.print(&db, &pending, format, out)?;
    }
    Ok(())
}

fn databases(client: &Client, out: &mut impl Write) -> Result<()> {
    let url = Url::parse(&format!("http://{}/api/v1/databases", client.http))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut headers = Vec::new();
    if let Some(a) = &client.auth {
        headers.push(("Authorization", a.as_str()));
    }
    let (status, body) = request("GET", &url, &headers, b"", Duration::from_secs(10))
        .map_err(|e| anyhow::anyhow!("cannot reach Weir at {}: {e}", client.http))?;
    anyhow::ensure!(status == 200, "{}", String::from_utf8_lossy(&body));
    let list: Vec<String> = serde_json::from_slice(&body).context("the database list")?;
    for d in list {
        writeln!(out, "{d}")?;
    }
    Ok(())
}
