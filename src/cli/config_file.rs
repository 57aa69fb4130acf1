//! `pfai serve --config FILE`: every `serve` flag can also be set in a TOML file, keyed by the
//! flag's name with `_` for `-` (`--data-dir` is `data_dir`). Precedence: flags > environment >
//! file > defaults.
//!
//! The keys are not listed anywhere: they are clap's own arguments of `serve`, so a new flag is
//! settable in the file the day it is added. A file value is applied only to an argument clap
//! took from its default (or left unset), by re-parsing the command line with the value appended
//! as `--flag=value`; clap then validates it exactly as it would the flag.

use std::ffi::OsString;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use super::Cli;

/// What the command line asks for, once a config file is applied.
// Built once per process: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Invocation {
    /// Run this command.
    Run(Cli),
    /// `pfai serve --print-config`: print this text and exit.
    Print(String),
}

/// Why a command line or its config file was refused (printed as is; exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// clap refused the command line itself (its message, help and version included).
    #[error("{0}")]
    Usage(#[from] clap::Error),
    /// The config file could not be read or is not TOML.
    #[error("cannot read the config file {path}: {reason}")]
    Unreadable {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A key is not a `serve` setting.
    #[error("{path}: unknown key `{key}` (keys are the flags of `pfai serve` with `_` for `-`: {known})")]
    UnknownKey {
        /// The file.
        path: String,
        /// The key.
        key: String,
        /// Every key the file may set.
        known: String,
    },
    /// A key's value has the wrong type or is refused by the setting's parser.
    #[error("{path}: bad value for `{key}`: {reason}")]
    BadValue {
        /// The file.
        path: String,
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
}

/// Arguments of `serve` that a file cannot set (they are about the file itself).
const NOT_IN_FILE: &[&str] = &["config", "print_config", "help", "version"];

/// Parses `argv`, applying `serve --config FILE` if given.
pub fn parse(argv: Vec<OsString>) -> Result<Invocation, ConfigError> {
    let matches = Cli::command().try_get_matches_from(&argv)?;
    let Some(serve) = matches.subcommand_matches("serve") else {
        return Ok(Invocation::Run(Cli::from_arg_matches(&matches)?));
    };
    let (matches, from_file) = match serve.get_one::<std::path::PathBuf>("config") {
        Some(path) => {
            let (extra, keys) = file_args(path, serve)?;
            let mut argv = argv;
            argv.extend(extra);
            let reparsed = Cli::command()
                .try_get_matches_from(&argv)
                .map_err(|e| file_error(path, &keys, e))?;
            (reparsed, keys)
        }
        None => (matches, Vec::new()),
    };
    let cli = Cli::from_arg_matches(&matches)?;
    if let Some(serve) = matches.subcommand_matches("serve") {
        if serve.get_flag("print_config") {
            return Ok(Invocation::Print(effective(serve, &from_file)));
        }
    }
    Ok(Invocation::Run(cli))
}

/// The `--flag=value` arguments the file adds, and the keys it sets (those no flag or
/// environment variable set).
fn file_args(path: &Path, serve: &ArgMatches) -> Result<(Vec<OsString>, Vec<String>), ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let table: toml::Table =
        text.parse()
            .map_err(|e: toml::de::Error| ConfigError::Unreadable {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
    let command = Cli::command();
    let serve_cmd = command
        .find_subcommand("serve")
        .ok_or_else(|| ConfigError::Unreadable {
            path: shown.clone(),
            reason: "no serve command".into(),
        })?;
    let settable: Vec<&clap::Arg> = serve_cmd
        .get_arguments()
        .filter(|a| !NOT_IN_FILE.contains(&a.get_id().as_str()) && a.get_long().is_some())
        .collect();
    let mut extra = Vec::new();
    let mut keys = Vec::new();
    for (key, value) in &table {
        let Some(arg) = settable.iter().find(|a| a.get_id().as_str() == key) else {
            return Err(ConfigError::UnknownKey {
                path: shown,
                key: key.clone(),
                known: settable
                    .iter()
                    .map(|a| a.get_id().as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        let bad = |reason: &str| ConfigError::BadValue {
            path: shown.clone(),
            key: key.clone(),
            reason: reason.to_owned(),
        };
        let long = arg.get_long().unwrap_or(key.as_str());
        let is_switch = !arg.get_action().takes_values();
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => return Err(bad("expected a string, a number or a boolean")),
        };
        if is_switch && !matches!(value, toml::Value::Boolean(_)) {
            return Err(bad("expected true or false"));
        }
        // Flags and environment win: only defaults (or nothing) give way to the file.
        if !matches!(
            serve.value_source(key),
            None | Some(ValueSource::DefaultValue)
        ) {
            continue;
        }
        keys.push(key.clone());
        if is_switch {
            if text == "true" {
                extra.push(OsString::from(format!("--{long}")));
            }
        } else {
            extra.push(OsString::from(format!("--{long}={text}")));
        }
    }
    Ok((extra, keys))
}

/// Names the file in a refusal of one of its values (clap names the flag).
fn file_error(path: &Path, keys: &[String], e: clap::Error) -> ConfigError {
    let key = e
        .get(clap::error::ContextKind::InvalidArg)
        .map(|v| v.to_string())
        .and_then(|flag| {
            let flag = flag.split([' ', '=', '<']).next().unwrap_or("").to_owned();
            keys.iter()
                .find(|k| flag == format!("--{}", k.replace('_', "-")))
                .cloned()
        });
    // clap's first line names the value, the flag and why ("invalid value 'x' for '--listen
    // <LISTEN>': invalid socket address syntax"); the rest is usage help for a command line.
    // A missing companion setting (`tls_cert` without `tls_key`) is listed on the lines after
    // a first line ending in ':'.
    let rendered = e.to_string();
    let mut lines = rendered.lines();
    let mut reason = lines
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_owned();
    if reason.ends_with(':') {
        for l in lines.take_while(|l| l.starts_with("  ")) {
            reason.push(' ');
            reason.push_str(l.trim());
        }
    }
    ConfigError::BadValue {
        path: path.display().to_string(),
        key: key.unwrap_or_else(|| "?".into()),
        reason,
    }
}

/// Whether a setting's value is a secret (never printed).
pub(crate) fn is_secret(key: &str) -> bool {
    ["token", "secret", "password"]
        .iter()
        .any(|w| key.contains(w))
}

/// The effective settings as a TOML file that `--config` accepts, each with where it came from.
fn effective(serve: &ArgMatches, from_file: &[String]) -> String {
    let command = Cli::command();
    let mut out =
        String::from("# pfai serve: effective configuration (flags > env > file > defaults)\n");
    let Some(serve_cmd) = command.find_subcommand("serve") else {
        return out;
    };
    for arg in serve_cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if NOT_IN_FILE.contains(&id) || arg.get_long().is_none() {
            continue;
        }
        let source = match serve.value_source(id) {
            Some(ValueSource::CommandLine) if from_file.iter().any(|k| k == id) => "file",
            Some(ValueSource::CommandLine) => "flag",
            Some(ValueSource::EnvVariable) => "env",
            Some(ValueSource::DefaultValue) => "default",
            _ => "unset",
        };
        let raw: Option<String> = serve
            .get_raw(id)
            .and_then(|mut v| v.next().map(|s| s.to_string_lossy().into_owned()));
        let line = match raw {
            None if source == "unset" => format!("# {id} = (unset)"),
            None => format!("# {id} = (no value)"),
            Some(_) if is_secret(id) => format!("# {id} = (set, hidden)"),
            Some(v) if !arg.get_action().takes_values() => {
                format!("{id} = {}", if v == "true" { "true" } else { "false" })
            }
            Some(v) => format!("{id} = {}", toml_scalar(&v)),
        };
        out.push_str(&format!("{line:<60} # {source}\n"));
    }
    out
}

/// A value as TOML: numbers bare, everything else a quoted string.
fn toml_scalar(v: &str) -> String {
    if v.parse::<i64>().is_ok() {
        v.to_owned()
    } else {
        toml::Value::String(v.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Vec<OsString> {
        ["pfai", "serve"]
            .iter()
            .chain(extra)
            .map(OsString::from)
            .collect()
    }

    fn printed(argv: Vec<OsString>) -> String {
        match parse(argv) {
            Ok(Invocation::Print(s)) => s,
            Ok(Invocation::Run(_)) => panic!("expected print"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn every_serve_flag_can_be_set_in_the_file_and_print_config_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let defaults = printed(args(&["--print-config"]));
        // Every flag of `serve` appears, as a key or as a commented unset/secret line.
        let serve = Cli::command();
        let serve = serve.find_subcommand("serve").unwrap();
        for a in serve.get_arguments() {
            let id = a.get_id().as_str();
            if NOT_IN_FILE.contains(&id) {
                continue;
            }
            assert!(
                defaults.contains(&format!("{id} = ")),
                "`{id}` missing from print-config:\n{defaults}"
            );
        }
        // The printed file loads back, and every value comes from it.
        let file = dir.path().join("pfai.toml");
        std::fs::write(&file, &defaults).unwrap();
        let again = printed(args(&[
            "--print-config",
            "--config",
            file.to_str().unwrap(),
        ]));
        let strip = |s: &str| {
            s.lines()
                .map(|l| l.split(" # ").next().unwrap_or("").trim_end().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&defaults), strip(&again));
        assert!(again.contains("# file"), "{again}");
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_name_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pfai.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:0\"\nlisten_adress = \"x\"\n").unwrap();
        let err = parse(args(&["--config", file.to_str().unwrap()]))
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.contains("listen_adress") && err.contains("pfai.toml"),
            "{err}"
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_names_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pfai.toml");
        std::fs::write(&file, "max_connections = \"many\"\n").unwrap();
        let err = parse(args(&["--config", file.to_str().unwrap()]))
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("max_connections"), "{err}");
        std::fs::write(&file, "max_connections = [1]\n").unwrap();
        let err = parse(args(&["--config", file.to_str().unwrap()]))
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("max_connections"), "{err}");
    }

    #[test]
    fn a_flag_beats_the_file_and_the_file_beats_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pfai.toml");
        std::fs::write(&file, "max_connections = 77\ngc_grace_seconds = 5\n").unwrap();
        let out = printed(args(&[
            "--config",
            file.to_str().unwrap(),
            "--gc-grace-seconds",
            "9",
            "--print-config",
        ]));
        assert!(out.contains("max_connections = 77"), "{out}");
        assert!(out.contains("gc_grace_seconds = 9"), "{out}");
    }

    #[test]
    fn secrets_are_never_printed() {
        assert!(is_secret("metrics_token") && is_secret("s3_secret_key"));
        assert!(!is_secret("listen") && !is_secret("tls_key"));
    }
}
