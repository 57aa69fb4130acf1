//! A model of how `git receive-pack` reads the command section of a push, written from git's
//! `pkt-line.c` (`packet_read_with_status`, with `PACKET_READ_CHOMP_NEWLINE` and
//! `PACKET_READ_DIE_ON_ERR_PACKET`) and `builtin/receive-pack.c` (`read_head_info`,
//! `queue_command`) for a SHA-1 repository. It is the oracle of the `push_commands` fuzz target:
//! the server's own reader (`git::http_backend::parse_ref_updates`) must never let git apply an
//! update it did not see. Deliberately independent of that reader: no code is shared. Its own
//! test runs every committed seed through `git receive-pack` itself and checks the model
//! agrees with git: where git dies, which commands it queues, which refs it goes on to update.

/// One command as git queues it, with object ids as git prints them to hooks (lowercase hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The ref's old object id.
    pub old: String,
    /// The ref's new object id.
    pub new: String,
    /// The ref name, everything after the second space up to a NUL (spaces included).
    pub name: String,
}

/// Where git stops reading commands: a die (the whole push fails) or the end of the input
/// before a flush (the push fails too: git reads an EOF).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Died {
    /// `die("protocol error: …")`.
    Protocol(&'static str),
    /// The input ended inside the command section.
    Eof,
}

/// git's packet buffer (`LARGE_PACKET_MAX`): a payload must be shorter.
const LARGE_PACKET_MAX: usize = 65520;
/// SHA-1 hex length (`the_hash_algo->hexsz` for a default repository).
const HEXSZ: usize = 40;

/// `hexval`: git accepts both cases of hex digits.
fn hexval(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `get_oid_hex`: exactly `HEXSZ` hex digits at the start of `s` (what follows is not looked
/// at), returned as git prints an oid.
fn get_oid_hex(s: &[u8]) -> Option<String> {
    let hex = s.get(..HEXSZ)?;
    hex.iter().all(|b| hexval(*b).is_some()).then(|| {
        hex.iter()
            .map(|b| char::from(b.to_ascii_lowercase()))
            .collect()
    })
}

/// What one `packet_read` gave.
enum Packet<'a> {
    /// A flush (`0000`), a delimiter (`0001`) or a response end (`0002`): all end the list.
    End,
    /// A data packet, its trailing newline chomped.
    Data(&'a [u8]),
}

/// `packet_read_with_status` on `buf` at `pos`.
fn read_packet<'a>(buf: &'a [u8], pos: &mut usize) -> Result<Packet<'a>, Died> {
    let head = buf.get(*pos..*pos + 4).ok_or(Died::Eof)?;
    let mut len = 0usize;
    for b in head {
        let v = hexval(*b).ok_or(Died::Protocol("bad line length character"))?;
        len = (len << 4) | usize::from(v);
    }
    *pos += 4;
    match len {
        0..=2 => return Ok(Packet::End),
        3 => return Err(Died::Protocol("bad line length")),
        // git reads into a buffer of LARGE_PACKET_MAX bytes: payloads up to one byte less.
        _ if len - 4 >= LARGE_PACKET_MAX => return Err(Died::Protocol("bad line length")),
        _ => {}
    }
    let body = buf.get(*pos..*pos + len - 4).ok_or(Died::Eof)?;
    *pos += len - 4;
    if body.starts_with(b"ERR ") {
        return Err(Died::Protocol("remote error"));
    }
    Ok(Packet::Data(body.strip_suffix(b"\n").unwrap_or(body)))
}

/// `read_head_info` up to the end of the command list: the commands git queues, in order.
/// A push certificate's commands are not modelled: it is reported as a die, and the server
/// refuses certificates outright.
pub fn read_commands(buf: &[u8]) -> Result<Vec<Command>, Died> {
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        let line = match read_packet(buf, &mut pos)? {
            Packet::End => return Ok(out),
            Packet::Data(line) => line,
        };
        if line.len() >= 8 && line.starts_with(b"shallow ") {
            get_oid_hex(&line[8..]).ok_or(Died::Protocol("expected shallow sha"))?;
            continue;
        }
        // Capabilities follow a NUL on any line; the command is what precedes it.
        let line = match line.iter().position(|b| *b == 0) {
            Some(nul) => &line[..nul],
            None => line,
        };
        if line == b"push-cert" {
            return Err(Died::Protocol("push certificates are not modelled"));
        }
        out.push(queue_command(line)?);
    }
}

/// `queue_command`: `<old> SP <new> SP <name>`, the name being the rest of the line.
fn queue_command(line: &[u8]) -> Result<Command, Died> {
    let bad = Died::Protocol("expected old/new/ref");
    if line.len() < 2 * HEXSZ + 2 || line[HEXSZ] != b' ' || line[2 * HEXSZ + 1] != b' ' {
        return Err(bad);
    }
    let old = get_oid_hex(line).ok_or(bad.clone())?;
    let new = get_oid_hex(&line[HEXSZ + 1..]).ok_or(bad)?;
    Ok(Command {
        old,
        new,
        name: String::from_utf8_lossy(&line[2 * HEXSZ + 2..]).into_owned(),
    })
}

/// Whether git would go on to update this ref at all: `check_refname_format` refuses control
/// characters, spaces and the other forbidden bytes, and git only updates names under `refs/`
/// (others fail "funny refname"). An approximation that errs towards "applied", which is the
/// safe side for the oracle.
pub fn applied(c: &Command) -> bool {
    c.name.starts_with("refs/")
        && !c
            .name
            .bytes()
            .any(|b| b.is_ascii_control() || b" ~^:?*[\\".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::path::Path;
    use std::process::{Command as Process, Stdio};

    /// git without the user's or the system's configuration, so settings such as
    /// `receive.denyDeletes` or a SHA-256 default cannot change its answers.
    fn isolated_git() -> Process {
        let mut git = Process::new("git");
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("GIT_") || k == "XDG_CONFIG_HOME" {
                git.env_remove(k);
            }
        }
        git.env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null");
        git
    }

    /// `git receive-pack --stateless-rpc` on `body` in `repo`: whether it exited 0, and its
    /// standard output and error.
    fn git_receive_pack(repo: &Path, body: &[u8]) -> (bool, Vec<u8>, String) {
        let mut child = isolated_git()
            .args(["receive-pack", "--stateless-rpc"])
            .arg(repo)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("git is installed");
        let mut stdin = child.stdin.take().unwrap();
        let body = body.to_vec();
        // git may stop reading early (it died): a broken pipe is part of the answer.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&body);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), out.stdout, err)
    }

    /// The raw packets of `buf` up to its first flush (the model read it, so the framing is
    /// valid there), and where the rest starts.
    fn raw_packets(buf: &[u8]) -> (Vec<&[u8]>, usize) {
        let (mut pos, mut out) = (0, Vec::new());
        loop {
            let hex = std::str::from_utf8(&buf[pos..pos + 4]).unwrap();
            let len = usize::from_str_radix(hex, 16).unwrap();
            pos += 4;
            if len <= 2 {
                return (out, pos);
            }
            out.push(&buf[pos..pos + len - 4]);
            pos += len - 4;
        }
    }

    /// `buf` with `report-status` added to the capabilities of its first command line, so git
    /// reports every command it queued; `None` if there is no command line or no room.
    fn with_report_status(buf: &[u8]) -> Option<Vec<u8>> {
        let (packets, rest) = raw_packets(buf);
        let first = packets.iter().position(|p| !p.starts_with(b"shallow "))?;
        let mut out = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            let mut body = p.to_vec();
            let asks = |b: &[u8]| {
                let caps = b.iter().position(|c| *c == 0).map_or(&[][..], |n| &b[n..]);
                caps.windows(13).any(|w| w == b"report-status")
            };
            if i == first && !asks(&body) {
                let nl = body.last() == Some(&b'\n');
                if nl {
                    body.pop();
                }
                body.extend_from_slice(if body.contains(&0) {
                    b" report-status"
                } else {
                    b"\0report-status"
                });
                if nl {
                    body.push(b'\n');
                }
            }
            if body.len() >= LARGE_PACKET_MAX {
                return None;
            }
            out.extend_from_slice(format!("{:04x}", body.len() + 4).as_bytes());
            out.extend_from_slice(&body);
        }
        out.extend_from_slice(b"0000");
        out.extend_from_slice(&buf[rest..]);
        Some(out)
    }

    /// A push that deletes each of `names`, asking for a report.
    fn delete_all(names: &[&str]) -> Vec<u8> {
        let (old, zero) = ("a".repeat(HEXSZ), "0".repeat(HEXSZ));
        let mut out = Vec::new();
        for (i, n) in names.iter().enumerate() {
            let caps = if i == 0 { "\0report-status" } else { "" };
            let line = format!("{old} {zero} {n}{caps}\n");
            out.extend_from_slice(format!("{:04x}{line}", line.len() + 4).as_bytes());
        }
        out.extend_from_slice(b"0000");
        out
    }

    /// The lines of a `report-status` answer (side band 1 unwrapped), newlines chomped.
    fn report_lines(out: &[u8]) -> Vec<Vec<u8>> {
        fn lines(buf: &[u8], banded: &mut Vec<u8>) -> Vec<Vec<u8>> {
            let mut pos = 0;
            let mut out = Vec::new();
            while let Some(hex) = buf.get(pos..pos + 4) {
                let len = usize::from_str_radix(std::str::from_utf8(hex).unwrap(), 16).unwrap();
                pos += 4;
                if len <= 2 {
                    continue;
                }
                let p = &buf[pos..pos + len - 4];
                pos += len - 4;
                match p.first() {
                    Some(1) => banded.extend_from_slice(&p[1..]),
                    Some(2 | 3) => {}
                    _ => out.push(p.strip_suffix(b"\n").unwrap_or(p).to_vec()),
                }
            }
            out
        }
        let mut banded = Vec::new();
        let mut out = lines(out, &mut banded);
        if !banded.is_empty() {
            out.extend(lines(&banded, &mut Vec::new()));
        }
        out
    }

    /// The oracle checked against git itself: every committed `push_commands` seed, and
    /// inputs at the edges of git's framing, go through `git receive-pack` in an empty bare
    /// SHA-1 repository. Where the model says git
    /// dies, git must die (the fuzz target checks nothing then, so a command git applied there
    /// would go unseen); where the model reads a list, git, asked to report, must name exactly
    /// those refs in that order, and refuse as a funny refname only refs the model says it
    /// never applies.
    #[test]
    fn the_model_agrees_with_git_receive_pack_on_the_seed_corpus() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("r.git");
        let init = isolated_git()
            .args([
                "init",
                "-q",
                "--bare",
                "--object-format=sha1",
                "--template=",
            ])
            .arg(&repo)
            .status()
            .expect("git is installed");
        assert!(init.success());
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data-fixtures/fuzz/push_commands");
        let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let data = std::fs::read(e.path()).unwrap();
                // The target's first two bytes pick roles and rules; the rest is the body.
                let body = data.get(2..)?.to_vec();
                Some((e.file_name().to_string_lossy().into_owned(), body))
            })
            .collect();
        seeds.sort();
        // Where git's framing has edges: packets around the largest git reads, the special
        // lengths, a header cut short.
        for total in [
            LARGE_PACKET_MAX - 1,
            LARGE_PACKET_MAX + 3,
            LARGE_PACKET_MAX + 4,
        ] {
            let head = format!(
                "{} {} refs/tags/v1\0report-status ",
                "a".repeat(HEXSZ),
                "0".repeat(HEXSZ)
            );
            let mut payload = head.into_bytes();
            payload.resize(total - 5, b'x');
            payload.push(b'\n');
            let mut body = format!("{total:04x}").into_bytes();
            body.extend_from_slice(&payload);
            body.extend_from_slice(b"0000");
            seeds.push((format!("packet of {total} bytes"), body));
        }
        for body in ["0001", "0002", "0003", "000", "0004", "00050"] {
            seeds.push((format!("{body:?}"), body.as_bytes().to_vec()));
        }
        let (mut died, mut listed, mut probed) = (0, 0, 0);
        for (name, body) in &seeds {
            let body = body.as_slice();
            match read_commands(body) {
                Err(Died::Protocol("push certificates are not modelled")) => {}
                Err(why) => {
                    let (ok, out, err) = git_receive_pack(&repo, body);
                    assert!(
                        !ok && report_lines(&out).is_empty(),
                        "{name}: the model says git dies ({why:?}); git did not: {err}"
                    );
                    died += 1;
                }
                Ok(cmds) => {
                    let Some(asked) = with_report_status(body) else {
                        continue;
                    };
                    assert_eq!(read_commands(&asked).as_ref(), Ok(&cmds), "{name}");
                    let (ok, out, err) = git_receive_pack(&repo, &asked);
                    if !ok && err.contains("unsupported object format") {
                        continue; // git dies on a capability the model ignores: safe side
                    }
                    assert!(ok, "{name}: the model reads {cmds:?}; git died: {err}");
                    let lines = report_lines(&out);
                    let status: Vec<&Vec<u8>> = lines
                        .iter()
                        .filter(|l| !l.starts_with(b"unpack "))
                        .collect();
                    assert_eq!(status.len(), cmds.len(), "{name}: {cmds:?} vs {lines:?}");
                    for (c, l) in cmds.iter().zip(status) {
                        let l = String::from_utf8_lossy(l);
                        assert!(
                            l == format!("ok {}", c.name)
                                || l.starts_with(&format!("ng {} ", c.name)),
                            "{name}: git reports {l:?} where the model queued {c:?}"
                        );
                    }
                    // Which refs git goes on to update depends on the names alone; deletes
                    // need no pack, so git reports each name's fate. A ref git updates must be
                    // one the model counts as applied (it may count more: the safe side).
                    let names: Vec<&str> = cmds
                        .iter()
                        .map(|c| c.name.as_str())
                        .filter(|n| !n.contains(char::REPLACEMENT_CHARACTER))
                        .collect();
                    if !names.is_empty() {
                        let deletes = delete_all(&names);
                        let (ok, out, err) = git_receive_pack(&repo, &deletes);
                        assert!(ok, "{name}: deleting {names:?}: {err}");
                        let cmds = read_commands(&deletes).unwrap();
                        let status = report_lines(&out);
                        assert_eq!(status.len(), cmds.len() + 1, "{name}: {status:?}");
                        for (c, l) in cmds.iter().zip(&status[1..]) {
                            if *l == format!("ok {}", c.name).into_bytes() {
                                assert!(
                                    applied(c),
                                    "{name}: git deletes {c:?}; the model says it never applies it"
                                );
                                probed += 1;
                            }
                        }
                    }
                    listed += 1;
                }
            }
        }
        assert!(
            died > 0 && listed > 0 && probed > 0,
            "{died} dying and {listed} listing seeds, {probed} refs git updates"
        );
    }

    fn pkt(s: &str) -> String {
        format!("{:04x}{s}", s.len() + 4)
    }

    #[test]
    fn the_model_reads_what_git_reads() {
        let (a, b) = ("a".repeat(40), "B".repeat(40));
        let body = format!(
            "{}{}0000",
            pkt(&format!("{a} {b} refs/tags/v 1\0report-status\n")),
            pkt(&format!("shallow {a}extra"))
        );
        let cmds = read_commands(body.as_bytes()).unwrap();
        assert_eq!(cmds.len(), 1);
        assert_eq!(cmds[0].new, "b".repeat(40), "printed lowercase");
        assert_eq!(cmds[0].name, "refs/tags/v 1", "spaces are part of the name");
        assert!(!applied(&cmds[0]));
        assert_eq!(
            read_commands(b"+01f"),
            Err(Died::Protocol("bad line length character"))
        );
        assert_eq!(
            read_commands(b"0003"),
            Err(Died::Protocol("bad line length"))
        );
        assert_eq!(read_commands(b"0001").unwrap(), vec![]);
        assert_eq!(read_commands(b"0009x"), Err(Died::Eof));
        assert_eq!(
            read_commands(pkt("x").as_bytes()),
            Err(Died::Protocol("expected old/new/ref"))
        );
        assert_eq!(
            read_commands(format!("{}0000", pkt("ERR no")).as_bytes()),
            Err(Died::Protocol("remote error"))
        );
    }
}
