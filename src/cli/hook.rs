//! `pfai hook pre-receive`: what git runs (through the script in `$DATA_DIR/git-hooks`) before
//! it applies a push. It reads the server's hand-over from the environment and the updates from
//! standard input, and refuses with a message git shows the pusher as `remote:` lines.

use std::io::Read;
use std::process::ExitCode;

use crate::domain::git_tag::{self, HookInput};
use crate::git::hook::{ALLOW_LINE, ENV_IMMUTABLE, ENV_PUSH_CERT, ENV_ROLE, ENV_RULES};

/// Runs the named hook: prints the allow line and exits 0 to let git go on, or prints the
/// refusal to stderr (git shows it as `remote:` lines) and exits 1.
pub fn run(name: &str) -> ExitCode {
    match judge(name) {
        Ok(()) => {
            println!("{ALLOW_LINE}");
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}

/// The decision of the named hook on this process's environment and standard input.
pub fn judge(name: &str) -> Result<(), String> {
    if name != "pre-receive" {
        return Err(format!("pfai: unknown hook {name:?}"));
    }
    let mut stdin = String::new();
    std::io::stdin()
        .read_to_string(&mut stdin)
        .map_err(|e| format!("pfai: refusing the whole push: cannot read the ref updates: {e}"))?;
    let (role, rules, cert) = (
        std::env::var(ENV_ROLE).ok(),
        std::env::var(ENV_RULES).ok(),
        std::env::var(ENV_PUSH_CERT).ok(),
    );
    let immutable = std::env::var(ENV_IMMUTABLE).ok();
    git_tag::pre_receive(&HookInput {
        role: role.as_deref(),
        rules_json: rules.as_deref(),
        push_cert: cert.as_deref(),
        updates: &stdin,
        immutable_json: immutable.as_deref(),
    })
}
