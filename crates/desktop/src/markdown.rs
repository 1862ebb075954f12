//! The admin's onboarding message, rendered as Markdown without HTML or remote images; links
//! open in the browser only for http(s) and mailto (see [`safe_url`]).

use egui_commonmark::{CommonMarkCache, CommonMarkViewer};

pub fn show(ui: &mut egui::Ui, cache: &mut CommonMarkCache, text: &str) {
    CommonMarkViewer::new().show(ui, cache, text);
}

/// A link the app may hand to the OS: web pages and mail only (never `file:`, custom
/// schemes or `javascript:`).
pub fn safe_url(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "https" | "http" | "mailto"))
}

/// Drops what this frame asked the OS to open unless it is [`safe_url`].
pub fn filter_links(ctx: &egui::Context) {
    ctx.output_mut(|o| {
        o.commands.retain(|c| match c {
            egui::OutputCommand::OpenUrl(u) if !safe_url(&u.url) => {
                tracing::warn!(url = %u.url, "refused to open a link of this kind");
                false
            }
            _ => true,
        })
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_web_and_mail_links_open() {
        assert!(super::safe_url("https://intranet.example.com/vpn"));
        assert!(super::safe_url("mailto:it@example.com"));
        assert!(!super::safe_url("file:///etc/passwd"));
        assert!(!super::safe_url("javascript:alert(1)"));
        assert!(!super::safe_url("onramp://enroll?x"));
    }
}
