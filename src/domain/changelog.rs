//! Release notes from commit messages, as pure functions: Conventional Commit parsing, grouping
//! (breaking changes first, then Features, Fixes, Performance, Other), and the Markdown the
//! `generate-notes` endpoint returns. The commits come from `git::changelog`.

use std::collections::HashSet;

/// One commit as the notes need it (newest first in a range).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteCommit {
    /// Full hex id.
    pub sha: String,
    /// The whole message.
    pub message: String,
    /// Author name (shown).
    pub author_name: String,
    /// Author email (identifies a contributor).
    pub author_email: String,
}

/// The section a commit is listed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// `feat`.
    Features,
    /// `fix`.
    Fixes,
    /// `perf`.
    Performance,
    /// Any other type, or a message that is not a Conventional Commit.
    Other,
}

/// A commit message read as a Conventional Commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Its section.
    pub group: Group,
    /// `feat(scope): …` → `scope`.
    pub scope: Option<String>,
    /// The subject without the type prefix (the whole subject when there is none).
    pub description: String,
    /// `type!:` or a `BREAKING CHANGE:` / `BREAKING-CHANGE:` footer.
    pub breaking: bool,
}

/// Reads a commit message's subject line as `type(scope)!: description`.
pub fn parse(message: &str) -> Parsed {
    let subject = message.lines().next().unwrap_or("").trim();
    let footer_breaking = message.lines().skip(1).any(|l| {
        let l = l.trim_start();
        l.starts_with("BREAKING CHANGE:") || l.starts_with("BREAKING-CHANGE:")
    });
    let plain = Parsed {
        group: Group::Other,
        scope: None,
        description: subject.to_owned(),
        breaking: footer_breaking,
    };
    let Some((head, description)) = subject.split_once(':') else {
        return plain;
    };
    let description = description.trim();
    let (head, bang) = match head.strip_suffix('!') {
        Some(h) => (h, true),
        None => (head, false),
    };
    let (kind, scope) = match head.split_once('(') {
        Some((k, rest)) => match rest.strip_suffix(')') {
            Some(s) if !s.is_empty() && !s.contains(['(', ')']) => (k, Some(s.trim().to_owned())),
            _ => return plain,
        },
        None => (head, None),
    };
    if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_alphabetic()) || description.is_empty() {
        return plain;
    }
    let group = match kind.to_ascii_lowercase().as_str() {
        "feat" | "feature" => Group::Features,
        "fix" => Group::Fixes,
        "perf" => Group::Performance,
        _ => Group::Other,
    };
    Parsed {
        group,
        scope,
        // "Other" keeps the type, so `docs: …` still says what it is.
        description: if group == Group::Other {
            subject.to_owned()
        } else {
            description.to_owned()
        },
        breaking: bang || footer_breaking,
    }
}

/// The abbreviated id shown on each line (git's default length).
pub fn short_sha(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// What the notes are about.
#[derive(Debug, Clone)]
pub struct NotesInput<'a> {
    /// The range, newest first.
    pub commits: &'a [NoteCommit],
    /// Emails of authors who committed before the range.
    pub earlier_authors: &'a HashSet<String>,
    /// The previous release's tag (`None`: the notes cover the history from its start).
    pub previous_tag: Option<&'a str>,
    /// The new tag.
    pub tag: &'a str,
}

fn line(c: &NoteCommit, p: &Parsed) -> String {
    let scope = p
        .scope
        .as_deref()
        .map(|s| format!("**{s}:** "))
        .unwrap_or_default();
    let breaking_type = if p.breaking && p.group != Group::Other {
        match p.group {
            Group::Features => "feat: ",
            Group::Fixes => "fix: ",
            Group::Performance => "perf: ",
            Group::Other => "",
        }
    } else {
        ""
    };
    format!(
        "- {breaking_type}{scope}{} ({}) by {}\n",
        p.description,
        short_sha(&c.sha),
        c.author_name
    )
}

/// Whether a parsed commit belongs in a section.
type Member = fn(&Parsed) -> bool;

/// The Markdown notes: sections in a fixed order (empty ones left out), each commit once,
/// newest first; then new contributors (authors whose first commit is in the range, in the
/// order of their first commit) and the full-changelog line.
pub fn format(input: &NotesInput<'_>) -> String {
    let parsed: Vec<(&NoteCommit, Parsed)> = input
        .commits
        .iter()
        .map(|c| (c, parse(&c.message)))
        .collect();
    let mut out = String::from("## What's changed\n");
    if parsed.is_empty() {
        out.push_str("\nNo changes since the previous release.\n");
    }
    let sections: [(&str, Member); 5] = [
        ("⚠️ Breaking changes", |p| p.breaking),
        ("Features", |p| !p.breaking && p.group == Group::Features),
        ("Fixes", |p| !p.breaking && p.group == Group::Fixes),
        ("Performance", |p| {
            !p.breaking && p.group == Group::Performance
        }),
        ("Other", |p| !p.breaking && p.group == Group::Other),
    ];
    for (title, member) in sections {
        let lines: Vec<String> = parsed
            .iter()
            .filter(|(_, p)| member(p))
            .map(|(c, p)| line(c, p))
            .collect();
        if !lines.is_empty() {
            out.push_str(&format!("\n### {title}\n"));
            lines.iter().for_each(|l| out.push_str(l));
        }
    }
    let mut seen = HashSet::new();
    let mut newcomers = Vec::new();
    // Oldest first: each newcomer's first commit in the range.
    for c in input.commits.iter().rev() {
        if !input.earlier_authors.contains(&c.author_email) && seen.insert(c.author_email.clone()) {
            newcomers.push(c);
        }
    }
    if !newcomers.is_empty() {
        out.push_str("\n### New contributors\n");
        for c in newcomers {
            out.push_str(&format!(
                "- {} made their first contribution in {}\n",
                c.author_name,
                short_sha(&c.sha)
            ));
        }
    }
    match input.previous_tag {
        Some(prev) => out.push_str(&format!("\n**Full changelog**: {prev}...{}\n", input.tag)),
        None => out.push_str(&format!("\n**Full changelog**: {}\n", input.tag)),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(sha: &str, msg: &str, who: &str) -> NoteCommit {
        NoteCommit {
            sha: sha.repeat(40 / sha.len()),
            message: msg.into(),
            author_name: who.into(),
            author_email: format!("{}@example.com", who.to_lowercase()),
        }
    }

    #[test]
    fn conventional_subjects_are_parsed_and_others_are_kept_whole() {
        let p = parse("feat(api)!: drop v0 routes");
        assert_eq!(
            (
                p.group,
                p.scope.as_deref(),
                p.description.as_str(),
                p.breaking
            ),
            (Group::Features, Some("api"), "drop v0 routes", true)
        );
        let p = parse("fix: off by one\n\nBREAKING CHANGE: limits are inclusive now");
        assert_eq!((p.group, p.breaking), (Group::Fixes, true));
        let p = parse("Merge branch 'x': y");
        assert_eq!(
            (p.group, p.description.as_str()),
            (Group::Other, "Merge branch 'x': y")
        );
        let p = parse("docs: readme");
        assert_eq!(
            (p.group, p.description.as_str()),
            (Group::Other, "docs: readme")
        );
        assert_eq!(parse("PERF: faster").group, Group::Performance);
        assert_eq!(parse("fix(: broken").group, Group::Other);
    }

    #[test]
    fn breaking_changes_come_first_and_each_commit_is_listed_once() {
        let commits = [
            c("a1", "perf: cache tags", "Bob"),
            c("b2", "feat!: new config format", "Alice"),
            c("c3", "fix(cli): exit code", "Bob"),
            c("d4", "feat: add x", "Alice"),
            c("e5", "chore: bump", "Alice"),
        ];
        let earlier: HashSet<String> = ["alice@example.com".to_string()].into();
        let out = format(&NotesInput {
            commits: &commits,
            earlier_authors: &earlier,
            previous_tag: Some("v1.0.0"),
            tag: "v1.1.0",
        });
        let pos = |s: &str| {
            out.find(s)
                .unwrap_or_else(|| panic!("{s} missing in\n{out}"))
        };
        assert!(pos("### ⚠️ Breaking changes") < pos("### Features"));
        assert!(pos("### Features") < pos("### Fixes"));
        assert!(pos("### Fixes") < pos("### Performance"));
        assert!(pos("### Performance") < pos("### Other"));
        assert!(out.contains("- feat: new config format (b2b2b2b) by Alice\n"));
        assert_eq!(out.matches("new config format").count(), 1);
        assert!(out.contains("- **cli:** exit code (c3c3c3c) by Bob\n"));
        assert!(out.contains("- chore: bump (e5e5e5e) by Alice\n"));
        assert!(
            out.contains("### New contributors\n- Bob made their first contribution in c3c3c3c\n")
        );
        assert!(!out.contains("Alice made"));
        assert!(out.ends_with("**Full changelog**: v1.0.0...v1.1.0\n"));
    }

    #[test]
    fn an_empty_range_says_so() {
        let out = format(&NotesInput {
            commits: &[],
            earlier_authors: &HashSet::new(),
            previous_tag: None,
            tag: "v1",
        });
        assert!(out.contains("No changes"));
        assert!(!out.contains("###"));
        assert!(out.ends_with("**Full changelog**: v1\n"));
    }
}
