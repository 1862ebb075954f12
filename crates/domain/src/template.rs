//! Minimal `{{ variable }}` templates for e-mails and the onboarding page (PROTOCOL.md
//! section 5). Unknown variables render empty so that a typo in a template never leaks the
//! template syntax to users; [`unknown_variables`] lets settings validation warn about them.

use std::collections::BTreeMap;

pub type Vars = BTreeMap<String, String>;

/// Replaces `{{ name }}` (spaces optional) with `vars[name]`, escaping values with `escape`
/// (identity for plain text, HTML escaping where the result is HTML).
pub fn render(template: &str, vars: &Vars, escape: fn(&str) -> String) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = after[..end].trim();
                if let Some(v) = vars.get(name) {
                    out.push_str(&escape(v));
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Variable names used in `template` that `known` does not define.
pub fn unknown_variables(template: &str, known: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end].trim().to_owned();
        if !known.contains(&name.as_str()) && !found.contains(&name) {
            found.push(name);
        }
        rest = &after[end + 2..];
    }
    found
}

pub fn plain(s: &str) -> String {
    s.to_owned()
}

pub fn html_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn renders() {
        let mut v = Vars::new();
        v.insert("first_name".into(), "<Jane>".into());
        assert_eq!(render("Hi {{ first_name }}, {{nope}}!", &v, plain), "Hi <Jane>, !");
        assert_eq!(render("Hi {{first_name}}", &v, html_escape), "Hi &lt;Jane&gt;");
        assert_eq!(render("broken {{ first_name", &v, plain), "broken {{ first_name");
        assert_eq!(unknown_variables("{{a}} {{ b }} {{a}}", &["a"]), vec!["b".to_string()]);
    }

    proptest! {
        #[test]
        fn text_without_braces_is_unchanged(s in "[^{}]{0,200}") {
            prop_assert_eq!(render(&s, &Vars::new(), plain), s);
        }
    }
}
