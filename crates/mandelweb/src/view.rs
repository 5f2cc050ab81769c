//! Defines the view of the complex plane an image shows, and its limits.
//!
//! Pixel `(px, py)` maps to `c = (x + px·scale) + (y + py·scale)i`. The
//! defaults are the original Mandelweb's: 512×512 pixels, 1000 iterations,
//! top-left corner −1.5 − 1.0i, 0.004 units per pixel.

/// Largest width or height accepted.
pub const MAX_SIDE: u32 = 4096;
/// Largest iteration count accepted.
pub const MAX_ITERATIONS: u32 = 100_000;
/// Most work one render may ask for: pixels × iterations, as if no pixel
/// escaped early or fell in the shortcut regions (the worst case, which a
/// view inside a small copy of the set reaches): about 9 s on two cores
/// with AVX2 (0.28 ns per pixel-iteration measured), under the default
/// 10 s request timeout. The default view is 262,144,000.
pub const MAX_WORK: u64 = 32_000_000_000;

/// Why a view was rejected (a 400 for the HTTP endpoint).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ViewError {
    /// Width or height outside 1..=4096.
    #[error("{name} must be between 1 and {MAX_SIDE}, got {value}")]
    Side {
        /// `width` or `height`.
        name: &'static str,
        /// The value given.
        value: String,
    },
    /// Iterations outside 1..=100000.
    #[error("iterations must be between 1 and {MAX_ITERATIONS}, got {0}")]
    Iterations(String),
    /// A coordinate that is not a finite number.
    #[error("{name} must be a finite number, got {value}")]
    Coordinate {
        /// `x`, `y` or `scale`.
        name: &'static str,
        /// The value given.
        value: String,
    },
    /// A zero or negative scale.
    #[error("scale must be positive, got {0}")]
    Scale(String),
    /// Width × height × iterations over [`MAX_WORK`].
    #[error(
        "width × height × iterations must be at most {MAX_WORK}, got {0}: \
         fewer pixels or fewer iterations"
    )]
    Work(u64),
    /// A parameter the endpoint does not know.
    #[error("unknown parameter {0:?}: use width, height, iterations, x, y, scale")]
    Unknown(String),
}

/// What to render.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct View {
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// Most iterations per pixel; points that survive them are in the set.
    pub iterations: u32,
    /// Real part of the top-left pixel.
    pub x: f64,
    /// Imaginary part of the top-left pixel.
    pub y: f64,
    /// Units of the complex plane per pixel.
    pub scale: f64,
}

impl Default for View {
    fn default() -> Self {
        Self {
            width: 512,
            height: 512,
            iterations: 1000,
            x: -1.5,
            y: -1.0,
            scale: 0.004,
        }
    }
}

impl View {
    /// The default view with query parameters applied, checked against the limits.
    pub fn from_params<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<View, ViewError> {
        let mut view = View::default();
        for (name, value) in params {
            match name {
                "width" => view.width = side("width", value)?,
                "height" => view.height = side("height", value)?,
                "iterations" => {
                    view.iterations = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_ITERATIONS).contains(n))
                        .ok_or_else(|| ViewError::Iterations(value.into()))?
                }
                "x" => view.x = finite("x", value)?,
                "y" => view.y = finite("y", value)?,
                "scale" => {
                    view.scale = finite("scale", value)?;
                    if view.scale <= 0.0 {
                        return Err(ViewError::Scale(value.into()));
                    }
                }
                other => return Err(ViewError::Unknown(other.into())),
            }
        }
        if view.work() > MAX_WORK {
            return Err(ViewError::Work(view.work()));
        }
        Ok(view)
    }

    /// The point of pixel `(px, py)`. Both renderers use exactly this
    /// expression, so they iterate the same doubles.
    #[inline(always)]
    pub fn point(&self, px: u32, py: u32) -> (f64, f64) {
        (
            self.x + f64::from(px) * self.scale,
            self.y + f64::from(py) * self.scale,
        )
    }

    /// Number of pixels.
    pub fn pixels(&self) -> usize {
        self.width as usize * self.height as usize
    }

    /// The most iterations the render can take: pixels × iterations.
    pub fn work(&self) -> u64 {
        self.pixels() as u64 * u64::from(self.iterations)
    }
}

fn side(name: &'static str, value: &str) -> Result<u32, ViewError> {
    value
        .parse()
        .ok()
        .filter(|n| (1..=MAX_SIDE).contains(n))
        .ok_or_else(|| ViewError::Side {
            name,
            value: value.into(),
        })
}

fn finite(name: &'static str, value: &str) -> Result<f64, ViewError> {
    value
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| ViewError::Coordinate {
            name,
            value: value.into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// `/mandelbrot` queries from any text, and shaped like the real
        /// ones with numbers of any size: a view or a 400's reason, never a
        /// panic; an accepted view's work is within the limit and its
        /// coordinates are finite. The find-by-age body likewise.
        #[test]
        fn hostile_queries_are_400s(
            any_text in ".{0,120}",
            shaped in "((width|height|iterations|x|y|scale|w)=[0-9.eE+%-]{0,24}&?){0,7}",
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            shaped_body in "\\{ ?\"age\" ?: ?-?[0-9.eE+-]{0,30} ?\\}",
        ) {
            for text in [any_text.as_str(), shaped.as_str()] {
                if let Ok(v) = View::from_params(hammer_diag::query::pairs(Some(text))) {
                    let work = u64::from(v.width) * u64::from(v.height) * u64::from(v.iterations);
                    proptest::prop_assert!(work <= MAX_WORK, "{text}: {work}");
                    proptest::prop_assert!(v.x.is_finite() && v.y.is_finite() && v.scale.is_finite(), "{text}");
                }
            }
            let _ = crate::service::parse_age(&body);
            let _ = crate::service::parse_age(shaped_body.as_bytes());
        }
    }

    #[test]
    fn defaults_are_the_original_view() {
        let v = View::from_params([]).unwrap();
        assert_eq!(v, View::default());
        // The original maps pixel p to 4·p/1000 − 1.5.
        assert_eq!(v.point(250, 0), (-1.5 + 250.0 * 0.004, -1.0));
    }

    #[test]
    fn limits_are_enforced() {
        let bad = |k: &str, v: &str| View::from_params([(k, v)]).unwrap_err();
        assert!(matches!(bad("width", "0"), ViewError::Side { .. }));
        assert!(matches!(bad("width", "4097"), ViewError::Side { .. }));
        assert!(matches!(bad("height", "-1"), ViewError::Side { .. }));
        assert!(matches!(
            bad("iterations", "100001"),
            ViewError::Iterations(_)
        ));
        assert!(matches!(bad("x", "NaN"), ViewError::Coordinate { .. }));
        assert!(matches!(bad("y", "inf"), ViewError::Coordinate { .. }));
        assert!(matches!(bad("scale", "0"), ViewError::Scale(_)));
        assert!(matches!(bad("zoom", "2"), ViewError::Unknown(_)));
        let ok = View::from_params([
            ("width", "4096"),
            ("height", "1"),
            ("iterations", "100000"),
            ("scale", "1e-9"),
        ])
        .unwrap();
        assert_eq!((ok.width, ok.iterations), (4096, 100_000));
        // Each within its limit, their product not.
        let hostile = View::from_params([
            ("width", "1024"),
            ("height", "1024"),
            ("iterations", "100000"),
        ])
        .unwrap_err();
        assert_eq!(hostile, ViewError::Work(104_857_600_000));
        assert!(
            hostile.to_string().contains("at most 32000000000"),
            "{hostile}"
        );
        assert!(View::default().work() < MAX_WORK / 100);
    }
}
