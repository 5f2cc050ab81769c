//! Provides Mandelbrot rendering: escape counts per pixel, their gray
//! shades, and the PNG the endpoint serves.
//!
//! [`oracle`] is the plain scalar loop that defines a correct image; [`fast`]
//! produces the same counts, pixel for pixel, much faster. Shading and PNG
//! encoding are shared, so identical counts mean identical images.

pub mod fast;
pub mod oracle;

use crate::view::View;

/// Gray shade of an escape count: black inside the set, bright where points
/// escape at once, darker towards the boundary (log scale).
pub fn shade(count: u32, max: u32) -> u8 {
    if count >= max {
        return 0;
    }
    let t = (1.0 + f64::from(count)).ln() / (1.0 + f64::from(max)).ln();
    (255.0 * (1.0 - t)).round() as u8
}

/// Shades of a whole image.
pub fn shades(counts: &[u32], max: u32) -> Vec<u8> {
    counts.iter().map(|&c| shade(c, max)).collect()
}

/// Encodes 8-bit grayscale pixels as a PNG.
pub fn encode_png(width: u32, height: u32, gray: &[u8]) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    encoder.write_header()?.write_image_data(gray)?;
    Ok(out)
}

/// Renders a view to PNG bytes with the fast renderer on all cores.
pub fn render_png(view: &View) -> Result<Vec<u8>, png::EncodingError> {
    render_png_until(view, &|| false).map(|png| png.expect("never stopped"))
}

/// [`render_png`], given up (`Ok(None)`) within a band of pixels once
/// `stop` says so.
pub fn render_png_until(
    view: &View,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<Option<Vec<u8>>, png::EncodingError> {
    let Some(counts) =
        fast::escape_counts_until(view, fast::Threads::All, fast::Kernel::Auto, stop)
    else {
        return Ok(None);
    };
    encode_png(view.width, view.height, &shades(&counts, view.iterations)).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_decodes_to_the_right_size() {
        // The default corner at a scale that shows the whole set.
        let view = View {
            width: 64,
            height: 48,
            scale: 0.04,
            ..View::default()
        };
        let bytes = render_png(&view).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (64, 48));
        assert_eq!(info.color_type, png::ColorType::Grayscale);
        // The view holds both the set (black) and fast escapes (bright).
        assert!(buf.contains(&0) && buf.iter().any(|&g| g > 200));
    }

    #[test]
    fn shades_run_from_white_to_black() {
        assert_eq!(shade(1000, 1000), 0);
        assert_eq!(shade(0, 1000), 255);
        assert!(shade(10, 1000) > shade(100, 1000));
    }
}
