//! `onramp admin settings|mail|audit`: instance settings, the mail outbox, the audit log.

use super::{flag_error, print_json, time};
use anyhow::Context;
use clap::Subcommand;
use onramp_core::{Actor, AuditQuery, Core, CoreError, Settings, SettingsPatch};
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum SettingsCommand {
    /// Show the settings (the SMTP password never: `smtp.password_set` says whether one is stored).
    Get {
        /// One setting only, e.g. smtp.host; printed bare (strings unquoted).
        key: Option<String>,
        /// Print JSON instead of `key = value` lines.
        #[arg(long)]
        json: bool,
    },
    /// Change one setting (KEY VALUE), or several from a JSON document (--file).
    #[command(after_help = "Examples:\n  onramp admin settings set smtp.host mail.example.com\n  \
onramp admin settings set enrollment.token_lifetime_secs 172800\n  \
onramp admin settings set smtp.username null            # null clears an optional setting\n  \
onramp admin settings set smtp.password --value-file pw.txt   # secrets never on the command line\n  \
echo '{\"smtp\": {\"host\": \"mail\", \"port\": 25}}' | onramp admin settings set --file -")]
    Set {
        /// Dotted name of the setting, as `settings get` shows it.
        #[arg(required_unless_present = "file")]
        key: Option<String>,
        /// The new value. Not for secrets (smtp.password): use --value-file.
        #[arg(required_unless_present_any = ["file", "value_file"], conflicts_with = "value_file")]
        value: Option<String>,
        /// Read the value from FILE ("-" = standard input); for secrets.
        #[arg(long, value_name = "FILE")]
        value_file: Option<PathBuf>,
        /// Apply a JSON document shaped like `settings get --json` (partial: absent keys
        /// stay) from FILE ("-" = standard input).
        #[arg(long, value_name = "FILE", conflicts_with_all = ["key", "value", "value_file"])]
        file: Option<PathBuf>,
        /// Print the resulting settings as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum MailCommand {
    /// List outbox messages, newest first (never their bodies: they may hold tokens).
    List {
        /// Only messages in this state, e.g. pending, sent or failed.
        #[arg(long)]
        status: Option<String>,
        /// At most this many messages.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Queue a failed message for another attempt now.
    Retry {
        /// The message's id (see `list`).
        id: i64,
    },
    /// Send a test message now (not through the outbox) and print the SMTP server's answer.
    Test {
        /// Recipient address.
        #[arg(long, value_name = "ADDR")]
        to: String,
        /// Print {"to", "answer"} as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
pub struct AuditArgs {
    /// At most this many entries (1-1000).
    #[arg(long, default_value_t = 50)]
    limit: i64,
    /// Only entries of this action, e.g. user.deleted.
    #[arg(long)]
    action: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

const SMTP_PASSWORD: &str = "smtp.password";

/// Settings as shown (like the REST API): the SMTP password is replaced by `password_set`.
fn view(s: Settings) -> Value {
    let has_password = s.smtp.password.is_some();
    let mut v = serde_json::to_value(s).unwrap_or_default();
    if let Some(smtp) = v.get_mut("smtp").and_then(|s| s.as_object_mut()) {
        smtp.remove("password");
        smtp.insert("password_set".into(), has_password.into());
    }
    v
}

/// `a.b` -> the value at that path.
fn lookup<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.').try_fold(v, |v, k| v.get(k))
}

/// `key = value` lines, one per leaf setting; values as JSON so multi-line templates stay
/// on one line.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        leaf => out.push(format!("{prefix} = {leaf}")),
    }
}

fn read_input(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("cannot read standard input")?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

/// VALUE as the type the setting has now (a string stays a string even if it looks like a
/// number); `null` clears an optional setting.
fn typed(key: &str, current: &Value, value: String) -> anyhow::Result<Value> {
    Ok(match current {
        Value::String(_) => Value::String(value),
        Value::Null if value == "null" => Value::Null,
        Value::Null => Value::String(value),
        Value::Bool(_) => match value.as_str() {
            "true" | "yes" | "on" | "1" => Value::Bool(true),
            "false" | "no" | "off" | "0" => Value::Bool(false),
            other => anyhow::bail!("{key}: {other:?} is not true or false"),
        },
        Value::Number(_) => {
            Value::Number(value.trim().parse().map_err(|_| anyhow::anyhow!("{key}: {value:?} is not a number"))?)
        }
        Value::Array(_) | Value::Object(_) => {
            serde_json::from_str(&value).map_err(|e| anyhow::anyhow!("{key}: not a JSON value: {e}"))?
        }
    })
}

pub async fn settings(core: &Core, cmd: SettingsCommand) -> anyhow::Result<()> {
    match cmd {
        SettingsCommand::Get { key, json } => {
            let v = view(core.settings().await);
            let v = match &key {
                Some(k) => lookup(&v, k)
                    .cloned()
                    .ok_or_else(|| anyhow::anyhow!("unknown setting {k:?}; `onramp admin settings get` lists them"))?,
                None => v,
            };
            if json {
                return print_json(&v);
            }
            match (&key, &v) {
                (Some(_), Value::String(s)) => println!("{s}"),
                (Some(_), other) if !other.is_object() => println!("{other}"),
                (prefix, _) => {
                    let mut out = vec![];
                    flatten(prefix.as_deref().unwrap_or(""), &v, &mut out);
                    out.iter().for_each(|l| println!("{l}"));
                }
            }
        }
        SettingsCommand::Set { key, value, value_file, file, json } => {
            let (patch, key) = match (file, key) {
                (Some(f), _) => {
                    let doc: Value = serde_json::from_str(&read_input(&f)?)
                        .with_context(|| format!("--file {}: not JSON", f.display()))?;
                    (doc, None)
                }
                (None, Some(key)) => {
                    let value = match (value, value_file) {
                        (_, Some(f)) => read_input(&f)?.trim_end_matches(['\r', '\n']).to_owned(),
                        (Some(_), None) if key == SMTP_PASSWORD => anyhow::bail!(
                            "{SMTP_PASSWORD} is a secret: give it with --value-file FILE (or - for standard input), \
                             not on the command line where other users can see it"
                        ),
                        (Some(v), None) => v,
                        (None, None) => anyhow::bail!("VALUE or --value-file is needed"),
                    };
                    let current = view(core.settings().await);
                    let current = if key == SMTP_PASSWORD {
                        Value::Null
                    } else if key == "instance_id" {
                        anyhow::bail!("instance_id cannot be changed: clients know the instance by it");
                    } else {
                        lookup(&current, &key).cloned().filter(|_| key != "smtp.password_set").ok_or_else(|| {
                            anyhow::anyhow!("unknown setting {key:?}; `onramp admin settings get` lists them")
                        })?
                    };
                    let v = typed(&key, &current, value)?;
                    let v = match key.strip_prefix("smtp.") {
                        // A patch's smtp object replaces the stored one (so a login cannot
                        // outlive a relay switch): one field changes, the rest is resent,
                        // the stored password included.
                        Some(field) => {
                            let mut smtp = serde_json::to_value(core.settings().await.smtp)?;
                            smtp[field] = v;
                            serde_json::json!({ "smtp": smtp })
                        }
                        None => key.rsplit('.').fold(v, |v, part| serde_json::json!({ part: v })),
                    };
                    (v, Some(key))
                }
                (None, None) => anyhow::bail!("KEY VALUE or --file is needed"),
            };
            let patch: SettingsPatch = serde_json::from_value(patch).map_err(|e| anyhow::anyhow!("--file: {e}"))?;
            let s = core.update_settings(&Actor::system("cli"), patch).await.map_err(|e| match (&key, e) {
                // Core names the section; the user typed the whole key.
                (Some(k), CoreError::Invalid(v)) => anyhow::anyhow!("{k}: {}", v.message),
                (_, e) => flag_error(e, &[]),
            })?;
            if json {
                return print_json(&view(s));
            }
            eprintln!("settings updated{}", key.map(|k| format!(": {k}")).unwrap_or_default());
        }
    }
    Ok(())
}

pub async fn mail(core: &Core, cmd: MailCommand) -> anyhow::Result<()> {
    match cmd {
        MailCommand::List { status, limit, json } => {
            let list = core.list_mail(status.as_deref(), limit).await.map_err(|e| flag_error(e, &[]))?;
            if json {
                return print_json(&list);
            }
            println!(
                "{:<5} {:<9} {:<16} {:<30} {:<20} {:<8} LAST ERROR",
                "ID", "STATUS", "KIND", "TO", "CREATED", "ATTEMPTS"
            );
            for m in list {
                println!(
                    "{:<5} {:<9} {:<16} {:<30} {:<20} {:<8} {}",
                    m.id,
                    m.status,
                    m.kind,
                    m.to,
                    time(Some(m.created_at)),
                    m.attempts,
                    m.last_error.unwrap_or_default()
                );
            }
        }
        MailCommand::Retry { id } => {
            core.retry_mail(&Actor::system("cli"), id).await?;
            eprintln!("message {id} queued for another attempt");
        }
        MailCommand::Test { to, json } => {
            let outcome = core.send_test_mail(&Actor::system("cli"), &to).await.map_err(|e| flag_error(e, &[]))?;
            if json {
                print_json(&outcome)?;
            } else {
                let code = outcome.code.map(|c| format!("{c} ")).unwrap_or_default();
                println!("{code}{} ({})", outcome.reply, outcome.server);
            }
            if !outcome.delivered {
                anyhow::bail!("{} did not accept the test message to {to}", outcome.server);
            }
        }
    }
    Ok(())
}

pub async fn audit(core: &Core, args: AuditArgs) -> anyhow::Result<()> {
    let q = AuditQuery { action: args.action, limit: Some(args.limit), ..AuditQuery::default() };
    let list = core.list_audit(q).await?;
    if args.json {
        return print_json(&list);
    }
    for e in list {
        println!(
            "{} {:<12} {:<24} {:<16} {}",
            time(Some(e.at)),
            e.actor,
            e.action,
            e.subject.as_deref().unwrap_or("-"),
            e.details
        );
    }
    Ok(())
}

/// `onramp admin directory ...`.
pub(crate) async fn directory(core: &Core, command: super::DirectoryCommand) -> anyhow::Result<()> {
    use super::DirectoryCommand;
    let actor = Actor::system("cli");
    match command {
        DirectoryCommand::Sync { dry_run, json, source } => {
            let r = core.directory_sync(&actor, source, dry_run).await?;
            if json {
                return print_json(&r);
            }
            print_sync_report(&r);
        }
        DirectoryCommand::Status { json, source } => {
            let s = core.directory_sync_status(source).await?;
            if json {
                return print_json(&s);
            }
            println!("directory      {}", s.source.title());
            println!("configured     {}", s.configured);
            println!("scheduled      {} (every {} s)", s.scheduled, s.interval_secs);
            println!("running on     {}", s.running_on.as_deref().unwrap_or("-"));
            println!("last started   {}", time(s.last_started));
            println!("last finished  {}", time(s.last_finished));
            match &s.last_error {
                Some(e) => println!("last error     {e} ({} run(s) in a row)", s.failures_in_a_row),
                None => println!("last error     -"),
            }
            if let Some(sum) = &s.last_summary {
                println!("last summary   {sum}");
            }
        }
        DirectoryCommand::Link { username, source } => {
            let source = match source {
                Some(s) => s,
                None => core.default_directory_source().await,
            };
            core.set_directory_link(&actor, &username, Some(source)).await?;
            eprintln!(
                "{username} is linked to the {} directory: the next sync updates them from their entry",
                source.title()
            );
        }
        DirectoryCommand::Unlink { username } => {
            core.set_directory_link(&actor, &username, None).await?;
            eprintln!("{username} is Onramp's own again: syncs leave them alone");
        }
    }
    Ok(())
}

fn print_sync_report(r: &onramp_core::SyncReport) {
    let verb = if r.dry_run { "would be " } else { "" };
    let list = |label: &str, names: Vec<String>| {
        if !names.is_empty() {
            println!("{label} ({}):", names.len());
            for n in names {
                println!("  {n}");
            }
        }
    };
    list(&format!("groups {verb}created"), r.groups_created.clone());
    list(&format!("users {verb}created"), r.created.clone());
    list(
        &format!("users {verb}updated"),
        r.updated.iter().map(|u| format!("{} ({})", u.username, u.fields.join(", "))).collect(),
    );
    list(&format!("users {verb}enabled"), r.enabled.clone());
    list(
        &format!("users {verb}disabled"),
        r.disabled.iter().map(|d| format!("{} ({})", d.username, d.reason)).collect(),
    );
    list(
        &format!("memberships {verb}added"),
        r.memberships_added.iter().map(|m| format!("{} -> {}", m.username, m.group)).collect(),
    );
    list(
        &format!("memberships {verb}removed"),
        r.memberships_removed.iter().map(|m| format!("{} -x {}", m.username, m.group)).collect(),
    );
    list(&format!("invitations {verb}mailed"), r.invitations_mailed.clone());
    list(&format!("provisioning attributes {verb}written"), r.attributes_written.clone());
    list(&format!("provisioning attributes {verb}cleared"), r.attributes_cleared.clone());
    list("not synced", r.conflicts.iter().map(|c| format!("{}: {}", c.username, c.reason)).collect());
    list("attribute errors", r.attribute_errors.iter().map(|c| format!("{}: {}", c.username, c.reason)).collect());
    eprintln!(
        "{} {} user entries and {} group entries in {} {} round trips, {} ms{}",
        if r.dry_run { "dry run: read" } else { "synced: read" },
        r.users_read,
        r.groups_read,
        r.round_trips,
        if r.source == onramp_core::DirectorySource::Ldap { "LDAP" } else { "Graph" },
        r.duration_ms,
        if r.changed_anything() { "" } else { "; nothing to change" }
    );
}
