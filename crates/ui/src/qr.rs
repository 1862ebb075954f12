//! QR codes as SVG images (`data:` URLs, allowed by the CSP), drawn from the code's modules.

use base64::Engine;
use qrcode::{Color, QrCode};

/// An `<img src>` value showing `data` as a QR code, or `None` when it is too long to encode.
pub fn svg_data_url(data: &str) -> Option<String> {
    let code = QrCode::new(data.as_bytes()).ok()?;
    let width = code.width();
    let quiet = 4;
    let size = width + 2 * quiet;
    let mut path = String::new();
    for (i, c) in code.to_colors().iter().enumerate() {
        if *c == Color::Dark {
            let (x, y) = (i % width + quiet, i / width + quiet);
            path.push_str(&format!("M{x} {y}h1v1h-1z"));
        }
    }
    let svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" shape-rendering=\"crispEdges\">\
         <rect width=\"{size}\" height=\"{size}\" fill=\"#fff\"/><path d=\"{path}\" fill=\"#000\"/></svg>"
    );
    Some(format!("data:image/svg+xml;base64,{}", base64::engine::general_purpose::STANDARD.encode(svg)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn qr_images_are_svg_data_urls() {
        let url = super::svg_data_url("onramp://enroll?url=https%3A%2F%2Fvpn.example.com%2F&token=abc").unwrap();
        assert!(url.starts_with("data:image/svg+xml;base64,"));
    }
}
