//! The icon's pixels, with no dependencies: `build.rs` includes this file too, to put the
//! same picture into the Windows executable.

/// RGBA pixels of a `size` x `size` icon.
pub fn rgba(size: u32, connected: bool) -> Vec<u8> {
    let (bg, fg) =
        if connected { ([22u8, 120, 90], [255u8, 255, 255]) } else { ([110u8, 116, 124], [235u8, 238, 240]) };
    let s = size as f32;
    let r = s * 0.22;
    let mut out = Vec::with_capacity((size * size * 4) as usize);
    for y in 0..size {
        for x in 0..size {
            let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
            // Rounded square: distance outside the inner rectangle.
            let dx = (r - px).max(px - (s - r)).max(0.0);
            let dy = (r - py).max(py - (s - r)).max(0.0);
            let inside = (r - (dx * dx + dy * dy).sqrt()).clamp(0.0, 1.0);
            // The ramp: a band along a quarter circle from bottom-left to top-right.
            let (cx, cy) = (s * 0.95, s * 0.95);
            let d = ((px - cx).powi(2) + (py - cy).powi(2)).sqrt();
            let band = (s * 0.09 - (d - s * 0.55).abs()).clamp(0.0, 1.0);
            let mix = band;
            for c in 0..3 {
                out.push((bg[c] as f32 * (1.0 - mix) + fg[c] as f32 * mix) as u8);
            }
            out.push((inside * 255.0) as u8);
        }
    }
    out
}
