//! Provides the test oracle: the plain scalar escape-time loop, kept as the
//! definition of a correct image. The fast renderer must match it pixel for
//! pixel.

use crate::view::View;

/// Iterations before `z → z² + c` leaves the radius-2 disc, or `max` if it
/// never does within `max` iterations.
#[inline(always)]
pub fn escape_count(cx: f64, cy: f64, max: u32) -> u32 {
    let (mut zx, mut zy) = (0.0f64, 0.0f64);
    for i in 0..max {
        let (x2, y2) = (zx * zx, zy * zy);
        if x2 + y2 > 4.0 {
            return i;
        }
        zy = 2.0 * zx * zy + cy;
        zx = x2 - y2 + cx;
    }
    max
}

/// Escape counts of every pixel, row by row, one core.
pub fn escape_counts(view: &View) -> Vec<u32> {
    let mut out = Vec::with_capacity(view.pixels());
    for py in 0..view.height {
        for px in 0..view.width {
            let (cx, cy) = view.point(px, py);
            out.push(escape_count(cx, cy, view.iterations));
        }
    }
    out
}
