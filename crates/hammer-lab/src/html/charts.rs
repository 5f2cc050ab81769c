//! Provides the report's charts, drawn by plotters as inline SVG: latency
//! percentiles, achieved rate and errors against offered rate (with the
//! SLO line), latency over time per step, and the sweep's USL curve.

use std::fmt::Write;

use plotters::prelude::*;

use super::Result;
use crate::{LabError, StepRecord, TargetReport};

const W: u32 = 640;
const H: u32 = 360;
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// The target's charts: latency, achieved rate, latency over time and
/// errors against offered rate, and the sweep's USL curve.
pub(super) fn all(h: &mut String, t: &TargetReport) -> Result<()> {
    let slo_limit = t.slo.latency_quantile();
    let mut steps: Vec<&StepRecord> = t.steps.iter().collect();
    steps.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    h.push_str("<div class=charts>");
    chart(h, "latency percentiles vs offered rate", |b| {
        latency_vs_rate(b, &steps, slo_limit)
    })?;
    chart(h, "achieved vs offered rate", |b| {
        achieved_vs_offered(b, &steps)
    })?;
    chart(h, "latency p99 over time, per step", |b| {
        latency_over_time(b, &t.steps, slo_limit)
    })?;
    chart(h, "failed requests vs offered rate", |b| {
        errors_vs_rate(b, &steps)
    })?;
    if let Some(sw) = t.sweep.as_ref().filter(|s| !s.points.is_empty()) {
        chart(
            h,
            "closed-loop sweep: throughput vs connections, with the USL fit",
            |b| usl_curve(b, sw),
        )?;
    }
    h.push_str("</div>");
    Ok(())
}

type Backend<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn chart(
    h: &mut String,
    caption: &str,
    draw: impl FnOnce(&Backend<'_>) -> Result<()>,
) -> Result<()> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let area = root.titled(caption, ("sans-serif", 16)).map_err(plot_err)?;
        draw(&area)?;
        root.present().map_err(plot_err)?;
    }
    let _ = write!(h, "<figure>{svg}</figure>");
    Ok(())
}

/// Embeds the SVG file `name` of the report directory as a document of its
/// own inside the page (srcdoc: data: URLs are capped at 2 MB), so a flame
/// graph's script and ids cannot clash with the page's (two with --compare).
fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    c: &mut ChartContext<'a, DB, CT>,
) -> Result<()> {
    legend_at(c, SeriesLabelPosition::UpperLeft)
}

/// The series' names in a box at `position`.
fn legend_at<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    c: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<()> {
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(position)
        .draw()
        .map_err(plot_err)
}

fn plot_err<E: std::fmt::Debug>(e: E) -> LabError {
    LabError::Draw {
        what: "a chart".into(),
        reason: format!("{e:?}"),
    }
}

fn rate_range(steps: &[&StepRecord]) -> std::ops::Range<f64> {
    let max = steps.iter().map(|s| s.rate).fold(1.0, f64::max);
    0.0..max * 1.05
}

fn latency_vs_rate(
    area: &Backend<'_>,
    steps: &[&StepRecord],
    slo: Option<(f64, f64)>,
) -> Result<()> {
    let lats = steps
        .iter()
        .flat_map(|s| [s.result.latency_ms.p50, s.result.latency_ms.p99])
        .chain(slo.map(|(_, l)| l));
    let (lo, hi) = lats.fold((f64::MAX, 0.01f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let lo = (lo.min(hi) * 0.5).max(0.001);
    let mut c = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(rate_range(steps), (lo..hi * 2.0).log_scale())
        .map_err(plot_err)?;
    c.configure_mesh()
        .x_desc("offered rate, req/s")
        .y_desc("latency, ms (log)")
        .draw()
        .map_err(plot_err)?;
    type Pick = fn(&StepRecord) -> f64;
    let series: [(&str, Pick); 3] = [
        ("p50", |s| s.result.latency_ms.p50),
        ("p90", |s| s.result.latency_ms.p90),
        ("p99", |s| s.result.latency_ms.p99),
    ];
    for (i, (name, f)) in series.iter().enumerate() {
        let color = PALETTE[i];
        let pts: Vec<(f64, f64)> = steps.iter().map(|s| (s.rate, f(s).max(lo))).collect();
        c.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(plot_err)?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
        c.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(plot_err)?;
    }
    let own: Vec<(f64, f64)> = steps
        .iter()
        .filter_map(|s| {
            // Within its bucket, and no higher than hammer's (the
            // service's time is part of hammer's).
            let own = s
                .server
                .as_ref()?
                .whole
                .p99_ms?
                .min(s.result.latency_ms.p99);
            Some((s.rate, own.max(lo)))
        })
        .collect();
    if !own.is_empty() {
        let color = PALETTE[4];
        c.draw_series(LineSeries::new(
            own.clone(),
            ShapeStyle::from(color).stroke_width(2),
        ))
        .map_err(plot_err)?
        .label("p99, the service's own (its histogram)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
        c.draw_series(
            own.iter()
                .map(|&p| TriangleMarker::new(p, 4, color.filled())),
        )
        .map_err(plot_err)?;
    }
    if let Some((q, limit)) = slo {
        let r = rate_range(steps);
        c.draw_series(LineSeries::new(
            vec![(r.start, limit), (r.end, limit)],
            RED.stroke_width(2),
        ))
        .map_err(plot_err)?
        .label(format!("SLO p{} < {limit} ms", q * 100.0))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], RED));
    }
    legend(&mut c)
}

fn achieved_vs_offered(area: &Backend<'_>, steps: &[&StepRecord]) -> Result<()> {
    let r = rate_range(steps);
    let mut c = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(r.clone(), r.clone())
        .map_err(plot_err)?;
    c.configure_mesh()
        .x_desc("offered rate, req/s")
        .y_desc("achieved, req/s")
        .draw()
        .map_err(plot_err)?;
    c.draw_series(LineSeries::new(
        vec![(r.start, r.start), (r.end, r.end)],
        BLACK.mix(0.3),
    ))
    .map_err(plot_err)?;
    let ok = |s: &StepRecord| s.result.succeeded as f64 / s.result.duration_s.max(1e-9);
    let pts: Vec<(f64, f64)> = steps.iter().map(|s| (s.rate, ok(s))).collect();
    let color = PALETTE[0];
    c.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
        .map_err(plot_err)?
        .label("answered, hammer")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
    c.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
        .map_err(plot_err)?;
    // The rate the service counted, from its /metrics.
    let own: Vec<(f64, f64)> = steps
        .iter()
        .filter_map(|s| Some((s.rate, s.server.as_ref()?.whole.rate?)))
        .collect();
    if own.is_empty() {
        return Ok(());
    }
    let color = PALETTE[4];
    c.draw_series(
        own.iter()
            .map(|&p| TriangleMarker::new(p, 5, color.filled())),
    )
    .map_err(plot_err)?
    .label("counted by the service")
    .legend(move |(x, y)| TriangleMarker::new((x + 7, y), 5, color.filled()));
    legend(&mut c)
}

fn errors_vs_rate(area: &Backend<'_>, steps: &[&StepRecord]) -> Result<()> {
    let pct = |s: &StepRecord| 100.0 * s.result.error_rate();
    let top = steps.iter().map(|s| pct(s)).fold(1.0, f64::max);
    let mut c = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(rate_range(steps), 0.0..top * 1.1)
        .map_err(plot_err)?;
    c.configure_mesh()
        .x_desc("offered rate, req/s")
        .y_desc("failed, %")
        .draw()
        .map_err(plot_err)?;
    let pts: Vec<(f64, f64)> = steps.iter().map(|s| (s.rate, pct(s))).collect();
    c.draw_series(LineSeries::new(pts.clone(), PALETTE[3].stroke_width(2)))
        .map_err(plot_err)?;
    c.draw_series(pts.iter().map(|&p| Circle::new(p, 3, PALETTE[3].filled())))
        .map_err(plot_err)?;
    Ok(())
}

fn latency_over_time(
    area: &Backend<'_>,
    steps: &[StepRecord],
    slo: Option<(f64, f64)>,
) -> Result<()> {
    let t_max = steps
        .iter()
        .flat_map(|s| s.timeline.iter().map(|t| t.t_s))
        .fold(1.0, f64::max);
    let hi = steps
        .iter()
        .flat_map(|s| s.timeline.iter().map(|t| t.p99_ms))
        .chain(slo.map(|(_, l)| l))
        .fold(0.01, f64::max);
    let lo = steps
        .iter()
        .flat_map(|s| s.timeline.iter().map(|t| t.p99_ms))
        .fold(hi, f64::min)
        .max(0.001)
        * 0.5;
    let mut c = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0..t_max, (lo..hi * 2.0).log_scale())
        .map_err(plot_err)?;
    c.configure_mesh()
        .x_desc("seconds into the step")
        .y_desc("p99 per second, ms (log)")
        .draw()
        .map_err(plot_err)?;
    for (i, s) in steps.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let pts: Vec<(f64, f64)> = s
            .timeline
            .iter()
            .map(|t| (t.t_s, t.p99_ms.max(lo)))
            .collect();
        c.draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(plot_err)?
            .label(format!("{} req/s", s.rate))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
    }
    if let Some((_, limit)) = slo {
        c.draw_series(LineSeries::new(vec![(0.0, limit), (t_max, limit)], RED))
            .map_err(plot_err)?;
    }
    legend(&mut c)
}

fn usl_curve(area: &Backend<'_>, sw: &crate::sweep::Sweep) -> Result<()> {
    let n_max = sw
        .points
        .iter()
        .map(|p| p.connections as f64)
        .fold(1.0, f64::max)
        * 1.3;
    let fitted = |n: f64| sw.usl.map_or(0.0, |u| u.throughput(n));
    let curve: Vec<(f64, f64)> = (0..=200)
        .map(|i| {
            let n = 1.0 + (n_max - 1.0) * f64::from(i) / 200.0;
            (n, fitted(n))
        })
        .collect();
    let x_max = sw
        .points
        .iter()
        .map(|p| p.throughput)
        .chain(curve.iter().map(|c| c.1))
        .fold(1.0, f64::max)
        * 1.1;
    let mut c = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0..n_max, 0.0..x_max)
        .map_err(plot_err)?;
    c.configure_mesh()
        .x_desc("connections (requests in flight)")
        .y_desc("throughput, req/s")
        .draw()
        .map_err(plot_err)?;
    if let Some(u) = sw.usl {
        let color = PALETTE[1];
        c.draw_series(LineSeries::new(curve, color.stroke_width(2)))
            .map_err(plot_err)?
            .label(format!(
                "USL: σ={:.3} κ={:.5} R²={:.2}",
                u.sigma, u.kappa, u.r_squared
            ))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
    }
    let color = PALETTE[0];
    c.draw_series(LineSeries::new(
        sw.points
            .iter()
            .map(|p| (p.connections as f64, p.throughput)),
        color.mix(0.4),
    ))
    .map_err(plot_err)?;
    c.draw_series(
        sw.points
            .iter()
            .map(|p| Circle::new((p.connections as f64, p.throughput), 4, color.filled())),
    )
    .map_err(plot_err)?
    .label("measured")
    .legend(move |(x, y)| Circle::new((x + 7, y), 4, color.filled()));
    // The points rise from the left: the legend goes below them.
    legend_at(&mut c, SeriesLabelPosition::LowerRight)
}
