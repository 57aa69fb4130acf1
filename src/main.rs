//! The `pfai` binary: parse arguments, set up logging, dispatch, and own the exit code
//! (0 success, 1 error, 2 usage — clap exits with 2 itself).

use std::process::ExitCode;

use pfai::cli::config_file::{self, ConfigError, Invocation};

fn main() -> ExitCode {
    let cli = match config_file::parse(std::env::args_os().collect()) {
        Ok(Invocation::Run(cli)) => cli,
        Ok(Invocation::Print(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        // Help, version and usage errors print and exit the way clap always did.
        Err(ConfigError::Usage(e)) => e.exit(),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // A client's output piped into `head` must end it quietly, like any Unix tool, not panic
    // in `println!` on EPIPE. The server keeps Rust's ignored SIGPIPE (its sockets and pipes
    // report errors instead).
    if !matches!(
        cli.command,
        pfai::cli::Command::Serve(_) | pfai::cli::Command::Hook { .. }
    ) {
        default_sigpipe();
    }
    // git runs the hook for every push: answer without logging setup or a runtime.
    if let pfai::cli::Command::Hook { name } = &cli.command {
        return pfai::cli::hook::run(name);
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,warp=error,warp::server=off"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match &cli.command {
        pfai::cli::Command::Serve(a) if a.log_format == pfai::cli::LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        _ => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(pfai::cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Restores the default action of SIGPIPE (terminate quietly) that Rust's runtime replaced by
/// "ignore".
#[cfg(unix)]
#[allow(unsafe_code)]
fn default_sigpipe() {
    // SAFETY: called once, before any thread is started; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn default_sigpipe() {}
