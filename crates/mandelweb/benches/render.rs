//! Run with `cargo bench -p mandelweb --bench render`.
//!
//! Times the default 512×512×1000 render side by side in one process: the
//! scalar oracle on one core, the fast renderer on one core (scalar kernel
//! and AVX2 kernel), and the fast renderer on all cores. Prints the median
//! of several runs and the speed-up over the oracle; checks every output is
//! pixel-identical first.

use std::time::Instant;

use mandelweb::render::fast::{self, Kernel, Threads};
use mandelweb::render::oracle;
use mandelweb::view::View;

fn median_ms(runs: usize, f: impl Fn() -> Vec<u32>) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

fn main() {
    let view = View::default();
    let expected = oracle::escape_counts(&view);
    let cases: [(&str, Threads, Kernel); 3] = [
        ("fast, 1 core, scalar kernel", Threads::One, Kernel::Scalar),
        ("fast, 1 core, SIMD kernel", Threads::One, Kernel::Auto),
        ("fast, all cores", Threads::All, Kernel::Auto),
    ];
    for (name, threads, kernel) in cases {
        assert_eq!(
            fast::escape_counts(&view, threads, kernel),
            expected,
            "{name} differs from the oracle"
        );
    }
    let oracle_ms = median_ms(5, || oracle::escape_counts(&view));
    println!("default view 512x512, 1000 iterations (median ms per render)");
    println!("{:<32} {:>9.2} ms   1.0x", "oracle, 1 core", oracle_ms);
    for (name, threads, kernel) in cases {
        let ms = median_ms(31, || fast::escape_counts(&view, threads, kernel));
        println!("{name:<32} {ms:>9.2} ms {:>6.1}x", oracle_ms / ms);
    }
    let png_ms = median_ms(31, || {
        mandelweb::render::render_png(&view)
            .map(|b| vec![b.len() as u32])
            .unwrap()
    });
    println!("{:<32} {png_ms:>9.2} ms", "PNG response, all cores");
}
