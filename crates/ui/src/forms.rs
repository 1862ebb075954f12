//! Form helpers: labelled inputs with their error, and reading repeated form fields.

use maud::{html, Markup};
use onramp_core::CoreError;

/// A labelled text input; `error` is shown under it and marks it invalid for assistive tech.
pub fn field(label: &str, name: &str, kind: &str, value: &str, error: Option<&str>, required: bool) -> Markup {
    let id = format!("f-{name}");
    let err_id = format!("{id}-error");
    html! {
        div.field {
            label for=(id) { (label) @if !required { span.optional { " (optional)" } } }
            input id=(id) name=(name) type=(kind) value=(value) required[required]
                aria-invalid=[error.map(|_| "true")] aria-describedby=[error.map(|_| err_id.as_str())];
            @if let Some(e) = error { p.field-error id=(err_id) { (e) } }
        }
    }
}

/// A checkbox with its label after it.
pub fn checkbox(label: &str, name: &str, checked: bool) -> Markup {
    let id = format!("f-{name}");
    html! {
        div.check {
            input type="checkbox" id=(id) name=(name) value="on" checked[checked];
            label for=(id) { (label) }
        }
    }
}

/// The error of a failed use case, split into the field it concerns (if any) and the text.
pub struct FormError {
    pub field: Option<&'static str>,
    pub message: String,
}

impl FormError {
    pub fn of(e: &CoreError) -> Self {
        Self { field: e.field(), message: crate::layout::message_of(e) }
    }

    /// The message if it belongs to `field`.
    pub fn on(err: &Option<FormError>, field: &str) -> Option<String> {
        err.as_ref().filter(|e| e.field == Some(field)).map(|e| e.message.clone())
    }

    /// The message if it belongs to no shown field (shown at the top of the form).
    pub fn general(err: &Option<FormError>, shown: &[&str]) -> Option<String> {
        err.as_ref().filter(|e| e.field.is_none_or(|f| !shown.contains(&f))).map(|e| e.message.clone())
    }
}

/// Every value of a repeated form field (`name=a&name=b`), which serde's form decoding
/// does not collect.
pub fn all_values(body: &[u8], name: &str) -> Vec<String> {
    url::form_urlencoded::parse(body).filter(|(k, _)| k == name).map(|(_, v)| v.into_owned()).collect()
}

pub fn first_value(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn repeated_fields() {
        let body = b"user=a&x=1&user=b%20c&_csrf=t";
        assert_eq!(super::all_values(body, "user"), vec!["a", "b c"]);
        assert_eq!(super::first_value(body, "x").as_deref(), Some("1"));
        assert_eq!(super::first_value(body, "y"), None);
    }
}
