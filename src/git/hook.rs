//! The `pre-receive` hook shared by every repository. git runs it with the ref updates it is
//! about to apply on standard input — whatever the wire encoding of the push (capabilities,
//! push certificates, atomic or not) — so judging there judges exactly what git will do. The
//! script only `exec`s the `pfai` binary (`pfai hook pre-receive`); the server hands the
//! binary, the pusher's role and the repository's protection patterns over through the
//! environment of `git http-backend`, which git passes on to its hooks. Without them the hook
//! refuses: a push that did not come through the server is never waved through.

use std::path::{Path, PathBuf};

/// The `pfai` executable the hook script runs.
pub const ENV_EXE: &str = "PFAI_HOOK_EXE";
/// The pusher's role on the repository (`read`, `write` or `admin`).
pub const ENV_ROLE: &str = "PFAI_HOOK_ROLE";
/// The repository's tag-protection patterns, a JSON array of strings.
pub const ENV_RULES: &str = "PFAI_HOOK_RULES";
/// The tag names of the repository's immutable releases (and of earlier repositories of the
/// same owner/name), a JSON array of strings: no update may touch them.
pub const ENV_IMMUTABLE: &str = "PFAI_HOOK_IMMUTABLE";
/// Set by git (to the certificate's blob id) when the push carried a push certificate.
pub const ENV_PUSH_CERT: &str = "GIT_PUSH_CERT";

/// What `pfai hook pre-receive` prints when it lets a push through. The script requires it, so
/// a binary that is not `pfai` (or a crash that exits 0) can never pass a push.
pub const ALLOW_LINE: &str = "pfai-pre-receive: allowed";

/// The script written to `$DATA_DIR/git-hooks/pre-receive`.
fn script() -> String {
    format!(
        "#!/bin/sh\n\
# Written by pfai at every start. The decision is made by `pfai hook pre-receive` on the ref\n\
# updates git passes on standard input; without the server's environment it refuses.\n\
if [ -z \"$PFAI_HOOK_EXE\" ]; then\n\
\techo \"pfai: refusing the push: it did not come through the pfai server, or the server could not find its own executable\" >&2\n\
\texit 1\n\
fi\n\
answer=$(\"$PFAI_HOOK_EXE\" hook pre-receive) || exit 1\n\
if [ \"$answer\" != \"{ALLOW_LINE}\" ]; then\n\
\techo \"pfai: refusing the push: the push check did not answer\" >&2\n\
\texit 1\n\
fi\n\
exit 0\n"
    )
}

/// Writes the hook script (atomically: a running push never sees half a script).
pub fn install(hooks_dir: &Path) -> std::io::Result<()> {
    let hook = hooks_dir.join("pre-receive");
    let tmp = hooks_dir.join(".pre-receive.tmp");
    std::fs::write(&tmp, script())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    }
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &hook)?;
    crate::storage::fsync_dir(hooks_dir)
}

/// The `pfai` binary the hook runs: this process's executable when it is named `pfai`, else a
/// `pfai` beside it or one directory up (a test binary under `target/debug/deps/` finds
/// `target/debug/pfai`), else this executable whatever its name (an installed, renamed server).
/// `None` leaves the hook refusing every push, and is logged at start.
pub fn find_exe() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    if exe.file_stem().is_some_and(|s| s == "pfai") {
        return Some(exe);
    }
    let dir = exe.parent()?;
    [dir.join("pfai"), dir.parent()?.join("pfai")]
        .into_iter()
        .find(|p| p.is_file())
        .or(Some(exe))
}
