//! Administration from the command line: `pfai admin user …` (site admins), `pfai org member
//! …`, `pfai repo collaborator …` over HTTP with the saved login, and `pfai admin set-password
//! --data-dir`, which works on a stopped server's data directory (the first sign-in of the
//! bootstrap admin needs no curl).

use std::io::BufRead;
use std::path::PathBuf;

use clap::Subcommand;
use reqwest::Method;

use super::client::{decode, CliError, CliResult, Client};
use super::{print_json, print_rows, repo};
use crate::api::{CollaboratorView, EditUser, MemberView, NewUser, RoleBody, UserView};
use crate::ids::{Role, Slug};

/// `pfai admin …`.
#[derive(Debug, Subcommand)]
pub enum AdminCmd {
    /// Users of the site (site admin, against the running server).
    ///
    /// Example: pfai admin user list
    #[command(subcommand)]
    User(UserCmd),
    /// Set a user's password directly in a STOPPED server's data directory (no token needed:
    /// access to the files is the authority). Gives the bootstrap `admin` a web password.
    ///
    /// Example: echo "$PASSWORD" | pfai admin set-password admin --data-dir /var/lib/pfai --password-stdin
    SetPassword {
        /// Username.
        username: String,
        /// The server's data directory (the server must be stopped).
        #[arg(long)]
        data_dir: PathBuf,
        /// Where its assets live, when not $DATA_DIR/assets.
        #[arg(long)]
        asset_storage_path: Option<PathBuf>,
        /// Read the password from the first line of standard input (otherwise it is asked on
        /// the terminal).
        #[arg(long)]
        password_stdin: bool,
    },
}

/// `pfai admin user …` (site admin).
#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create a user (the password is asked on the terminal, or read with --password-stdin).
    ///
    /// Example: echo "$PASSWORD" | pfai admin user create alice --email alice@example.com --password-stdin
    Create {
        /// Username.
        username: String,
        /// Email.
        #[arg(long, default_value = "")]
        email: String,
        /// Make the user a site admin.
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of standard input (otherwise it is asked on
        /// the terminal).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    ///
    /// Example: pfai admin user list --json
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a user with their tokens, sessions, memberships and collaborator roles (refused
    /// while they own repositories, and for the last site admin).
    ///
    /// Example: pfai admin user delete alice --yes
    Delete {
        /// Username.
        username: String,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Set a user's password (their web sessions end; tokens stay valid).
    ///
    /// Example: echo "$PASSWORD" | pfai admin user set-password alice --password-stdin
    SetPassword {
        /// Username.
        username: String,
        /// Read the password from the first line of standard input (otherwise it is asked on
        /// the terminal).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Grant (or with --revoke take away) site admin (the last site admin cannot be demoted).
    ///
    /// Example: pfai admin user set-admin alice
    SetAdmin {
        /// Username.
        username: String,
        /// Take site admin away instead.
        #[arg(long)]
        revoke: bool,
    },
}

/// `pfai org member …`.
#[derive(Debug, Subcommand)]
pub enum MemberCmd {
    /// Add a member, or change their role (org admin or site admin).
    ///
    /// Example: pfai org member add acme alice --role write
    Add {
        /// Organization.
        org: String,
        /// Username.
        username: String,
        /// read, write or admin (on every repository of the org).
        #[arg(long, default_value = "read")]
        role: String,
    },
    /// Remove a member (org admin or site admin).
    ///
    /// Example: pfai org member remove acme alice
    Remove {
        /// Organization.
        org: String,
        /// Username.
        username: String,
    },
    /// List members and their roles (members and site admins).
    ///
    /// Example: pfai org member list acme
    List {
        /// Organization.
        org: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `pfai repo collaborator …` (repository admins).
#[derive(Debug, Subcommand)]
pub enum CollaboratorCmd {
    /// Add a collaborator, or change their role.
    ///
    /// Example: pfai repo collaborator add alice --role write -R acme/app
    Add {
        /// Username.
        username: String,
        /// read, write or admin.
        #[arg(long, default_value = "read")]
        role: String,
        /// owner/repo (default: the current checkout's).
        #[arg(short = 'R', long = "repo")]
        repo: Option<String>,
    },
    /// Remove a collaborator.
    ///
    /// Example: pfai repo collaborator remove alice -R acme/app
    Remove {
        /// Username.
        username: String,
        /// owner/repo (default: the current checkout's).
        #[arg(short = 'R', long = "repo")]
        repo: Option<String>,
    },
    /// List collaborators and their roles (org roles are not listed).
    ///
    /// Example: pfai repo collaborator list -R acme/app
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// owner/repo (default: the current checkout's).
        #[arg(short = 'R', long = "repo")]
        repo: Option<String>,
    },
}

/// A user or org name checked before it becomes a URL segment.
fn name(s: &str) -> CliResult<String> {
    Slug::parse(s)
        .map(|s| s.to_string())
        .map_err(|e| CliError::Msg(format!("{s:?} is not a valid name: {e}")))
}

/// A role checked before it is sent.
fn role(s: &str) -> CliResult<String> {
    Role::parse(s)
        .map(|r| r.as_str().to_owned())
        .map_err(|_| CliError::Msg(format!("unknown role {s:?}: use read, write or admin")))
}

/// The password: the first line of standard input (`--password-stdin`), or asked twice on the
/// terminal without echo; never an argument (arguments are visible to every user of the
/// machine in `ps`).
fn read_password(password_stdin: bool) -> CliResult<String> {
    use std::io::IsTerminal;
    if password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let pw = line.trim_end_matches(['\n', '\r']).to_owned();
        if pw.is_empty() {
            return Err(CliError::Msg("no password on standard input".into()));
        }
        return Ok(pw);
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Msg(
            "no terminal to ask for the password on: pass --password-stdin and the password on \
             standard input (passwords are never taken as arguments)"
                .into(),
        ));
    }
    let first = prompt_hidden("New password: ")?;
    let again = prompt_hidden("Repeat it: ")?;
    if first != again {
        return Err(CliError::Msg(
            "the passwords differ; nothing changed".into(),
        ));
    }
    if first.is_empty() {
        return Err(CliError::Msg("empty password; nothing changed".into()));
    }
    Ok(first)
}

/// Reads one line from the terminal on standard input with echo off (restored afterwards,
/// also when reading fails).
fn prompt_hidden(prompt: &str) -> CliResult<String> {
    use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
    use std::io::Write;
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).map_err(std::io::Error::from)?;
    let mut quiet = saved.clone();
    quiet.local_modes -= LocalModes::ECHO;
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    tcsetattr(&stdin, OptionalActions::Now, &quiet).map_err(std::io::Error::from)?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let restored = tcsetattr(&stdin, OptionalActions::Now, &saved);
    eprintln!();
    read?;
    restored.map_err(std::io::Error::from)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Runs `pfai admin …`.
pub async fn admin(cmd: AdminCmd) -> CliResult<()> {
    match cmd {
        AdminCmd::User(u) => user(&Client::from_env(), u).await,
        AdminCmd::SetPassword {
            username,
            data_dir,
            asset_storage_path,
            password_stdin,
        } => offline_set_password(&username, data_dir, asset_storage_path, password_stdin).await,
    }
}

async fn user(c: &Client, cmd: UserCmd) -> CliResult<()> {
    match cmd {
        UserCmd::Create {
            username,
            email,
            admin,
            password_stdin,
        } => {
            let password = read_password(password_stdin)?;
            let body = NewUser {
                username: name(&username)?,
                password,
                email,
                admin,
            };
            let u: UserView = c
                .call_as(Method::POST, "/api/v1/admin/users", &body)
                .await?;
            eprintln!(
                "created user {}{}",
                u.username,
                if u.admin { " (site admin)" } else { "" }
            );
            Ok(())
        }
        UserCmd::List { json } => {
            let v = c.call(Method::GET, "/api/v1/admin/users").await?;
            if json {
                print_json(&v);
                return Ok(());
            }
            let users: Vec<UserView> = decode(v)?;
            print_rows(&["USERNAME", "ADMIN", "EMAIL", "CREATED"], &users, |u| {
                vec![
                    u.username.clone(),
                    if u.admin { "yes" } else { "no" }.to_owned(),
                    u.email.clone(),
                    u.created_at.clone(),
                ]
            });
            Ok(())
        }
        UserCmd::Delete { username, yes } => {
            let n = name(&username)?;
            if !yes
                && !super::release::confirm(&format!(
                    "delete user {n} with their tokens, memberships and collaborator roles?"
                ))?
            {
                return Err(CliError::Msg(
                    "not deleted (pass --yes to skip the question)".into(),
                ));
            }
            c.call(Method::DELETE, &format!("/api/v1/admin/users/{n}"))
                .await?;
            eprintln!("deleted user {n}");
            Ok(())
        }
        UserCmd::SetPassword {
            username,
            password_stdin,
        } => {
            let n = name(&username)?;
            let body = EditUser {
                password: Some(read_password(password_stdin)?),
                admin: None,
            };
            let _: UserView = c
                .call_as(Method::PATCH, &format!("/api/v1/admin/users/{n}"), &body)
                .await?;
            eprintln!("password of {n} set; their web sessions were ended");
            Ok(())
        }
        UserCmd::SetAdmin { username, revoke } => {
            let n = name(&username)?;
            let body = EditUser {
                password: None,
                admin: Some(!revoke),
            };
            let u: UserView = c
                .call_as(Method::PATCH, &format!("/api/v1/admin/users/{n}"), &body)
                .await?;
            eprintln!(
                "{} is {}a site admin",
                u.username,
                if u.admin { "" } else { "no longer " }
            );
            Ok(())
        }
    }
}

/// `pfai admin set-password --data-dir`: opens the database itself, which fails while a
/// server holds its lock.
async fn offline_set_password(
    username: &str,
    data_dir: PathBuf,
    asset_storage_path: Option<PathBuf>,
    password_stdin: bool,
) -> CliResult<()> {
    // A mistyped directory is named before a password is asked for, and never created.
    if !crate::backup::database_file(&data_dir).is_file() {
        return Err(CliError::Msg(format!(
            "{} holds no pfai data (no pfai.redb)",
            data_dir.display()
        )));
    }
    let password = read_password(password_stdin)?;
    let assets = asset_storage_path.unwrap_or_else(|| crate::backup::default_asset_base(&data_dir));
    let core = crate::domain::Core::open(&data_dir, &assets, crate::domain::Limits::default())
        .map_err(|e| match e {
            crate::storage::StorageError::Db(redb::Error::DatabaseAlreadyOpen) => {
                CliError::Msg(format!(
                    "{} is in use by a running server: stop it first, or ask it with \
                     `pfai admin user set-password {username} --password-stdin`",
                    data_dir.display()
                ))
            }
            other => CliError::Msg(format!("cannot open {}: {other}", data_dir.display())),
        })?;
    let u = crate::domain::account::set_password_offline(&core, username, &password)
        .await
        .map_err(|e| CliError::Msg(e.to_string()))?;
    eprintln!(
        "password of {} set in {}; sign in at the web UI once the server runs",
        u.username,
        data_dir.display()
    );
    Ok(())
}

/// Runs `pfai org member …`.
pub async fn member(cmd: MemberCmd) -> CliResult<()> {
    let c = Client::from_env();
    match cmd {
        MemberCmd::Add {
            org,
            username,
            role: r,
        } => {
            let (o, n) = (name(&org)?, name(&username)?);
            let body = RoleBody { role: role(&r)? };
            c.call_with(Method::PUT, &format!("/api/v1/orgs/{o}/members/{n}"), &body)
                .await?;
            eprintln!("{n} is a member of {o} with role {}", body.role);
            Ok(())
        }
        MemberCmd::Remove { org, username } => {
            let (o, n) = (name(&org)?, name(&username)?);
            c.call(Method::DELETE, &format!("/api/v1/orgs/{o}/members/{n}"))
                .await?;
            eprintln!("{n} is no longer a member of {o}");
            Ok(())
        }
        MemberCmd::List { org, json } => {
            let o = name(&org)?;
            let v = c
                .call(Method::GET, &format!("/api/v1/orgs/{o}/members"))
                .await?;
            if json {
                print_json(&v);
                return Ok(());
            }
            let rows: Vec<MemberView> = decode(v)?;
            print_rows(&["USERNAME", "ROLE"], &rows, |m| {
                vec![m.username.clone(), m.role.as_str().to_owned()]
            });
            Ok(())
        }
    }
}

/// Runs `pfai repo collaborator …`.
pub async fn collaborator(cmd: CollaboratorCmd) -> CliResult<()> {
    let c = Client::from_env();
    match cmd {
        CollaboratorCmd::Add {
            username,
            role: r,
            repo,
        } => {
            let path = repo::resolve(repo.as_deref())?;
            let n = name(&username)?;
            let body = RoleBody { role: role(&r)? };
            c.call_with(
                Method::PUT,
                &format!("/api/v1/forge/{path}/collaborators/{n}"),
                &body,
            )
            .await?;
            eprintln!("{n} collaborates on {path} with role {}", body.role);
            Ok(())
        }
        CollaboratorCmd::Remove { username, repo } => {
            let path = repo::resolve(repo.as_deref())?;
            let n = name(&username)?;
            c.call(
                Method::DELETE,
                &format!("/api/v1/forge/{path}/collaborators/{n}"),
            )
            .await?;
            eprintln!("{n} no longer collaborates on {path}");
            Ok(())
        }
        CollaboratorCmd::List { json, repo } => {
            let path = repo::resolve(repo.as_deref())?;
            let v = c
                .get_or(&format!("/api/v1/forge/{path}/collaborators"), || {
                    format!("repository {path} not found (or not visible to you)")
                })
                .await?;
            if json {
                print_json(&v);
                return Ok(());
            }
            let rows: Vec<CollaboratorView> = decode(v)?;
            print_rows(&["USERNAME", "ROLE"], &rows, |m| {
                vec![m.username.clone(), m.role.as_str().to_owned()]
            });
            Ok(())
        }
    }
}
