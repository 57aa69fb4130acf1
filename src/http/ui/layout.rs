//! The frame every page shares (header, sign-in state, repository tabs) and small formatting
//! helpers. Templates are maud macros: checked and compiled with the binary, escaped by default.

use maud::{html, Markup, PreEscaped, DOCTYPE};
use warp::http::StatusCode;

use super::Req;
use crate::domain::account::RepoView;
use crate::ids::Role;

/// The one stylesheet, embedded.
pub const STYLESHEET: &str = include_str!("style.css");

/// A whole page: `<title>` is "`title` · pfai".
pub fn page(rq: &Req, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · pfai" }
                link rel="stylesheet" href="/-/pfai.css";
            }
            body {
                header.top {
                    a.brand href="/" { "pfai" }
                    nav.account aria-label="Account" {
                        @if let Some(v) = &rq.viewer {
                            span.who { "Signed in as " strong { (v.principal.username) } }
                            form.inline method="post" action="/logout" {
                                input type="hidden" name="_csrf" value=(rq.csrf());
                                button.link type="submit" { "Sign out" }
                            }
                        } @else {
                            a href={ "/login?next=" (super::encode_query(&rq.here)) } { "Sign in" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The repository tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    /// Overview.
    Overview,
    /// Releases.
    Releases,
    /// Tags.
    Tags,
    /// Packages.
    Packages,
    /// Settings (admins).
    Settings,
}

/// The repository's name, badges and tab bar.
pub fn repo_header(repo: &RepoView, active: Tab) -> Markup {
    let base = super::repo_base(repo);
    let tabs: &[(Tab, &str, String)] = &[
        (Tab::Overview, "Overview", base.clone()),
        (Tab::Releases, "Releases", format!("{base}/releases")),
        (Tab::Tags, "Tags", format!("{base}/tags")),
        (Tab::Packages, "Packages", format!("{base}/packages")),
    ];
    let admin = repo.permission >= Some(Role::Admin);
    html! {
        div.repohead {
            h1 {
                a href={ "/" (repo.owner) } { (repo.owner) }
                " / "
                a href=(base) { strong { (repo.name) } }
                @if repo.private { " " span.badge.private { "Private" } }
            }
            nav.tabs aria-label="Repository" {
                @for (tab, label, href) in tabs {
                    a href=(href) aria-current=[(*tab == active).then_some("page")] { (label) }
                }
                @if admin {
                    a href={ (base) "/settings/tag-protection" }
                        aria-current=[(active == Tab::Settings).then_some("page")] { "Settings" }
                }
            }
        }
    }
}

/// An error page with the status and the domain's message.
pub fn error_page(rq: &Req, status: StatusCode, message: &str) -> Markup {
    let reason = status.canonical_reason().unwrap_or("Error");
    page(
        rq,
        reason,
        html! {
            section.error {
                h1 { (status.as_u16()) " " (reason) }
                p.flash.bad role="alert" { (message) }
                @if status == StatusCode::NOT_FOUND && rq.viewer.is_none() {
                    p { "If this is a private repository, "
                        a href={ "/login?next=" (super::encode_query(&rq.here)) } { "sign in" }
                        " first." }
                }
                p { a href="/" { "Back to the start page" } }
            }
        },
    )
}

/// A message above a form (`role=alert` so screen readers announce it).
pub fn flash(message: Option<&str>) -> Markup {
    html! {
        @if let Some(m) = message { p.flash.bad role="alert" { (m) } }
    }
}

/// The hidden CSRF field of a form.
pub fn csrf_field(rq: &Req) -> Markup {
    html! { input type="hidden" name="_csrf" value=(rq.csrf()); }
}

/// A POST button in its own small form (deletes link to a confirmation page instead; kept
/// for one-click actions other pages add).
#[allow(dead_code)]
pub fn post_button(rq: &Req, action: &str, label: &str, class: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf_field(rq))
            button type="submit" class=(class) { (label) }
        }
    }
}

/// An RFC 3339 timestamp as a `<time>` a human reads.
pub fn time(rfc3339: &str) -> Markup {
    let shown = rfc3339.replacen('T', " ", 1).replace('Z', " UTC");
    html! { time datetime=(rfc3339) { (shown) } }
}

/// Bytes as KiB/MiB/GiB.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// The first 12 hex digits of a SHA, with the full one on hover.
pub fn short_sha(sha: &str) -> Markup {
    let short = sha.get(..12).unwrap_or(sha);
    html! { code title=(sha) { (short) } }
}

/// A SHA-256 shown short (CSS clips it to a few characters with an ellipsis) but whole in the
/// document: hovering shows it (`title`), one click selects it and copying yields all 64 hex
/// digits, so a phone screen never scrolls sideways for it.
pub fn sha256(hex: &str) -> Markup {
    html! { code.sha256 title=(hex) { (hex) } }
}

/// An asset's BLAKE3, shown like its SHA-256 (`b3sum` checks it faster); assets stored before
/// pfai kept BLAKE3 show a dash until `pfai fsck --repair` fills it in.
pub fn blake3(hex: Option<&str>) -> Markup {
    match hex {
        Some(hex) => html! { code.sha256.blake3 title=(hex) { (hex) } },
        None => html! { "—" },
    }
}

/// A link styled as a button to a delete confirmation page (deletes are never one click).
pub fn delete_link(href: &str, label: &str, class: &str) -> Markup {
    html! { a href=(href) class={ "button danger " (class) } { (label) } }
}

/// Text that may wrap after `/`, `:` and `@` (pull lines, image names): `<wbr>` marks the
/// points, so a long line breaks between path segments, not inside a word, and copying it
/// yields the text unchanged.
pub fn breakable(text: &str) -> Markup {
    html! {
        @for (i, piece) in text.split_inclusive(['/', ':', '@']).enumerate() {
            @if i > 0 { wbr; }
            (piece)
        }
    }
}

/// Sanitized HTML produced by `markdown::render`.
pub fn trusted(html: String) -> Markup {
    PreEscaped(html)
}

/// Pagination links.
pub fn pager(path: &str, page: u64, has_next: bool) -> Markup {
    html! {
        @if page > 1 || has_next {
            nav.pager aria-label="Pages" {
                @if page > 1 { a rel="prev" href={ (path) "?page=" (page - 1) } { "← Newer" } }
                span { "Page " (page) }
                @if has_next { a rel="next" href={ (path) "?page=" (page + 1) } { "Older →" } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(5 << 30), "5.0 GiB");
    }

    #[test]
    fn pull_lines_break_between_path_segments_only() {
        let h = breakable("docker pull host:8080/acme/app/web:1.0").into_string();
        assert_eq!(
            h,
            "docker pull host:<wbr>8080/<wbr>acme/<wbr>app/<wbr>web:<wbr>1.0"
        );
        assert_eq!(breakable("<b>").into_string(), "&lt;b&gt;");
    }

    #[test]
    fn sha256_keeps_the_whole_value_for_hover_and_copy() {
        let full = "ab".repeat(32);
        let h = sha256(&full).into_string();
        assert_eq!(
            h,
            format!("<code class=\"sha256\" title=\"{full}\">{full}</code>")
        );
    }
}
