//! `pfai serve --config FILE` with the real binary: the file's settings are used, the
//! environment and flags win over it, mistakes are refused naming the key, and
//! `--print-config` shows the effective result (the README and `dist/pfai.toml` stay loadable).

use std::process::Command;

use crate::binary::start_with_args;

fn pfai(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pfai"))
        .args(args)
        .env_remove("PFAI_LISTEN")
        .env_remove("DATA_DIR")
        .env_remove("PFAI_CONFIG")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_file_sets_what_no_flag_or_environment_variable_sets() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("from-file");
    let file = dir.path().join("pfai.toml");
    std::fs::write(
        &file,
        format!(
            "# an operator's file\nlisten = \"127.0.0.1:9\"\ndata_dir = {:?}\nmax_connections = 64\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    // The environment's listen address (port 0) beats the file's; the file's data dir beats
    // the default.
    let mut running = start_with_args(
        dir.path(),
        &["--config", file.to_str().unwrap()],
        &[("PFAI_LISTEN", "127.0.0.1:0")],
    );
    let r = reqwest::get(format!("{}/healthz", running.url))
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert!(
        data.join("pfai.redb").is_file(),
        "the file's data_dir is used"
    );
    assert!(!dir.path().join("data").exists(), "not the default ./data");
    running.child.kill().unwrap();
    running.child.wait().unwrap();

    // PFAI_CONFIG names the file too; a flag beats the environment and the file.
    let out = pfai(
        &["serve", "--print-config", "--max-connections", "5"],
        &[
            ("PFAI_CONFIG", file.to_str().unwrap()),
            ("PFAI_LISTEN", "127.0.0.1:4000"),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("{key} missing:\n{text}"))
            .to_owned()
    };
    assert!(line("listen").contains("127.0.0.1:4000") && line("listen").ends_with("# env"));
    assert!(line("data_dir").contains("from-file") && line("data_dir").ends_with("# file"));
    assert!(line("max_connections").contains("= 5") && line("max_connections").ends_with("# flag"));
    assert!(line("gc_grace_seconds").ends_with("# default"));
}

#[test]
fn a_config_file_mistake_stops_the_server_before_it_starts_and_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pfai.toml");
    for (content, named) in [
        ("data_dri = \"/tmp/x\"\n", "data_dri"),
        ("max_connections = \"lots\"\n", "max_connections"),
        ("listen = \"not an address\"\n", "listen"),
        ("listen = \n", "pfai.toml"),
    ] {
        std::fs::write(&file, content).unwrap();
        let out = pfai(&["serve", "--config", file.to_str().unwrap()], &[]);
        assert_eq!(out.status.code(), Some(2), "{content}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{content}: {err}");
        assert!(!dir.path().join("data").exists(), "nothing was started");
    }
    let out = pfai(&["serve", "--config", "/nonexistent/pfai.toml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/pfai.toml"));
}
