//! The roofline chart, drawn with plotters' SVG backend: one panel per op, a bar per GPU
//! kernel, storage type and shape giving its effective bandwidth as a percentage of the
//! copy kernel's, and the 100% line (the copy itself).

use plotters::prelude::*;

use crate::error::{BenchError, Result};
use crate::report::Report;
use crate::{BenchOp, KernelKind};
use wgpu_softmax::DType;

/// Width of the chart in pixels; each op's panel is `PANEL_HEIGHT` tall.
const WIDTH: u32 = 820;
const PANEL_HEIGHT: u32 = 180;
const HEADER_HEIGHT: u32 = 50;

/// The series drawn, one colour each: the GPU kernels per storage type.
const SERIES: [(KernelKind, DType); 4] = [
    (KernelKind::Fused, DType::F32),
    (KernelKind::Fused, DType::BF16),
    (KernelKind::Fused, DType::F16),
    (KernelKind::Unfused, DType::F32),
];
const COLOURS: [RGBColor; 4] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0xff, 0x7f, 0x0e),
];

type Series = ((KernelKind, DType), RGBColor);

/// The chart of `report` as an SVG document.
///
/// # Errors
///
/// [`BenchError::Chart`] when plotters fails to lay it out.
pub(crate) fn roofline_svg(report: &Report) -> Result<String> {
    let ops: Vec<BenchOp> =
        BenchOp::ALL.into_iter().filter(|&op| report.records.iter().any(|r| r.op == op)).collect();
    let kernels: Vec<Series> = SERIES
        .into_iter()
        .zip(COLOURS)
        .filter(|((kernel, dtype), _)| {
            report.records.iter().any(|r| r.kernel == *kernel && r.dtype == *dtype)
        })
        .collect();
    let mut shapes: Vec<(usize, usize)> = Vec::new();
    for r in &report.records {
        if !shapes.contains(&(r.rows, r.cols)) {
            shapes.push((r.rows, r.cols));
        }
    }
    let top = report
        .records
        .iter()
        .filter(|r| r.kernel.on_gpu() && r.roofline_pct.is_finite())
        .map(|r| r.roofline_pct)
        .fold(100.0f64, f64::max)
        .ceil()
        * 1.05;
    let height = HEADER_HEIGHT + PANEL_HEIGHT * u32::try_from(ops.len().max(1)).unwrap_or(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let title = format!(
            "Effective bandwidth as % of a vec4 copy ({:.1} GB/s) on {}",
            report.copy_gbps, report.adapter
        );
        let (header, body) = root.split_vertically(HEADER_HEIGHT);
        header.draw(&Text::new(title, (10, 8), ("sans-serif", 15))).map_err(chart_error)?;
        for (k, ((kernel, dtype), colour)) in kernels.iter().enumerate() {
            let x = 10 + 130 * i32::try_from(k).unwrap_or(0);
            header.draw(&Rectangle::new([(x, 30), (x + 10, 40)], colour.filled())).map_err(chart_error)?;
            let label = format!("{} {}", kernel.name(), dtype.name());
            header.draw(&Text::new(label, (x + 14, 29), ("sans-serif", 12))).map_err(chart_error)?;
        }
        let panels = body.split_evenly((ops.len().max(1), 1));
        for (op, panel) in ops.iter().zip(&panels) {
            draw_panel(panel, report, *op, &shapes, &kernels, top)?;
        }
        root.present().map_err(chart_error)?;
    }
    Ok(svg)
}

/// One op's panel: bars per shape and kernel, the 100% line dashed.
fn draw_panel(
    panel: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    report: &Report,
    op: BenchOp,
    shapes: &[(usize, usize)],
    kernels: &[Series],
    top: f64,
) -> Result<()> {
    #[allow(clippy::cast_precision_loss)] // a handful of shapes
    let groups = shapes.len().max(1) as f64;
    let mut chart = ChartBuilder::on(panel)
        .caption(op.name(), ("sans-serif", 13))
        .margin(6)
        .x_label_area_size(18)
        .y_label_area_size(44)
        .build_cartesian_2d(0.0..groups, 0.0..top)
        .map_err(chart_error)?;
    let label_of = |x: &f64| {
        // Labels sit at the centre of each shape's group.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let index = x.floor() as usize;
        shapes.get(index).map_or_else(String::new, |(rows, cols)| format!("{rows}x{cols}"))
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(shapes.len() * 2 + 1)
        .x_label_formatter(&|x| if (x.fract() - 0.5).abs() < 0.01 { label_of(x) } else { String::new() })
        .y_label_formatter(&|y| format!("{y:.0}%"))
        .y_labels(5)
        .label_style(("sans-serif", 10))
        .draw()
        .map_err(chart_error)?;
    #[allow(clippy::cast_precision_loss)] // two kernels
    let bar = 0.8 / kernels.len().max(1) as f64;
    for (s, &(rows, cols)) in shapes.iter().enumerate() {
        for (k, ((kernel, dtype), colour)) in kernels.iter().enumerate() {
            let Some(record) = report.find(op, *kernel, *dtype, rows, cols) else { continue };
            #[allow(clippy::cast_precision_loss)]
            let left = s as f64 + 0.1 + bar * k as f64;
            let value = record.roofline_pct.clamp(0.0, top);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(left, 0.0), (left + bar * 0.9, value)],
                    colour.filled(),
                )))
                .map_err(chart_error)?;
        }
    }
    chart
        .draw_series(DashedLineSeries::new(
            [(0.0, 100.0), (groups, 100.0)],
            5,
            3,
            ShapeStyle::from(&RGBColor(0x99, 0x99, 0x99)).stroke_width(1),
        ))
        .map_err(chart_error)?;
    Ok(())
}

fn chart_error(error: impl std::fmt::Display) -> BenchError {
    BenchError::Chart(error.to_string())
}
