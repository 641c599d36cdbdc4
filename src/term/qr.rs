//! A QR code for a terminal, so that a phone can scan the page's address rather than have
//! it typed: two rows of modules per line of half blocks, with the quiet zone scanners need.

use qrcode::render::unicode::Dense1x2;
use qrcode::{EcLevel, QrCode};

/// `text` as a QR code drawn in half blocks, light on dark as terminals show it best; `None`
/// if it does not fit in one.
pub fn code(text: &str) -> Option<String> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::L).ok()?;
    Some(
        code.render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_fits_in_a_few_lines() {
        let drawn = code("http://192.168.100.200:6000/").unwrap();
        let lines: Vec<&str> = drawn.lines().collect();
        // Version 2 (25 modules) with a quiet zone of 4 on each side, two rows per line.
        assert_eq!(lines.len(), (25_usize + 8).div_ceil(2));
        assert!(lines.iter().all(|line| line.chars().count() == 25 + 8));
        assert!(code(&"x".repeat(5000)).is_none());
    }
}
