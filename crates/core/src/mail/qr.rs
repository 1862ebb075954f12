//! QR code as a PNG image, for invitations read on a phone.

use qrcode::{Color, QrCode};

/// Black-on-white PNG of `data`, 6 pixels per module with the standard 4-module margin.
pub fn qr_png(data: &str) -> Result<Vec<u8>, String> {
    let code = QrCode::new(data.as_bytes()).map_err(|e| format!("QR code: {e}"))?;
    let modules = code.width();
    let colors = code.to_colors();
    let (scale, margin) = (6usize, 4usize);
    let size = (modules + 2 * margin) * scale;
    let mut pixels = vec![255u8; size * size];
    for (i, c) in colors.iter().enumerate() {
        if *c == Color::Dark {
            let (mx, my) = (i % modules + margin, i / modules + margin);
            for dy in 0..scale {
                let row = (my * scale + dy) * size;
                pixels[row + mx * scale..row + mx * scale + scale].fill(0);
            }
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, size as u32, size as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(|e| e.to_string())?;
        w.write_image_data(&pixels).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn makes_a_png() {
        let png = super::qr_png("onramp://enroll?url=https%3A%2F%2Fe%2F&token=abc").unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let info = decoder.read_info().unwrap().info().clone();
        assert_eq!(info.width % 6, 0);
    }
}
