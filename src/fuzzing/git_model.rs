//! A model of how `git receive-pack` reads the command section of a push, written from git's
//! `pkt-line.c` (`packet_read_with_status`, with `PACKET_READ_CHOMP_NEWLINE` and
//! `PACKET_READ_DIE_ON_ERR_PACKET`) and `builtin/receive-pack.c` (`read_head_info`,
//! `queue_command`) for a SHA-1 repository. It is the oracle of the `push_commands` fuzz target:
//! the server's own reader (`git::http_backend::parse_ref_updates`) must never let git apply an
//! update it did not see. Deliberately independent of that reader: no code is shared.

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

/// git's largest packet (`LARGE_PACKET_MAX`).
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
        _ if len > LARGE_PACKET_MAX => return Err(Died::Protocol("bad line length")),
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
