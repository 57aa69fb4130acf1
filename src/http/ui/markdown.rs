//! Release notes: Markdown (pulldown-cmark) rendered to HTML, then sanitized (ammonia), so no
//! script, event handler, `javascript:` link or style from a release body reaches a browser.
//! The page's Content-Security-Policy forbids scripts as a second line of defence.

use pulldown_cmark::{html, Options, Parser};

/// Renders Markdown to sanitized HTML.
pub fn render(markdown: &str) -> String {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES;
    let mut out = String::with_capacity(markdown.len() * 2);
    html::push_html(&mut out, Parser::new_ext(markdown, options));
    ammonia::Builder::default()
        .link_rel(Some("noopener noreferrer nofollow"))
        .clean(&out)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn markdown_is_rendered() {
        let h = render("# Title\n\n* one\n* **two**\n\n| a | b |\n|---|---|\n| 1 | 2 |\n");
        assert!(h.contains("<h1>Title</h1>"), "{h}");
        assert!(h.contains("<strong>two</strong>"), "{h}");
        assert!(h.contains("<table>"), "{h}");
    }

    #[test]
    fn scripts_and_handlers_are_removed() {
        for evil in [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "[x](javascript:alert(1))",
            "<a href=\"javascript:alert(1)\">x</a>",
            "<iframe src=\"https://example.com\"></iframe>",
            "<svg onload=alert(1)>",
            "<div style=\"background:url(javascript:alert(1))\">x</div>",
            "<form action=/logout><button>x</button></form>",
        ] {
            let h = render(evil).to_ascii_lowercase();
            for bad in [
                "<script",
                "onerror",
                "onload",
                "javascript:",
                "<iframe",
                "style=",
                "<form",
            ] {
                assert!(!h.contains(bad), "{evil:?} rendered as {h:?}");
            }
        }
    }

    #[test]
    fn links_do_not_leak_the_opener() {
        let h = render("[site](https://example.com)");
        assert!(h.contains("rel=\"noopener noreferrer nofollow\""), "{h}");
    }
}
