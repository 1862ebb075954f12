//! Text from a server on the way to a terminal: control characters (ESC and the C1 set
//! start terminal escape sequences, CR and backspace overwrite lines) and the invisible
//! bidirectional and zero-width characters are removed, so a server can neither drive the
//! terminal nor make text look other than it is.

/// Bidirectional controls and zero-width characters (Unicode Cf that change how text reads).
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}' | '\u{2028}' | '\u{2029}')
}

/// `s` without control characters except line breaks (for whole messages of ours that
/// carry server strings).
pub fn printable(s: &str) -> String {
    s.chars().filter(|&c| c == '\n' || !(c.is_control() || is_invisible(c))).collect()
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn strips_escapes_and_invisibles() {
        assert_eq!(printable("\x1b[31mred\x1b[0m"), "[31mred[0m");
        assert_eq!(printable("a\x1b]0;title\x07b"), "a]0;titleb");
        assert_eq!(printable("x\u{9b}2Jy\rz\x08"), "x2Jyz");
        assert_eq!(printable("evil\u{202E}gpj.exe\u{200B}"), "evilgpj.exe");
        assert_eq!(printable("two\nlines\tand tab"), "two\nlinesand tab");
        assert_eq!(printable("Zoë 東京"), "Zoë 東京");
    }
}
