//! SVG charts for the HTML report, drawn with plotters' SVG backend: each series against
//! offered rate (or against time for soaks), with the capacity marked.

use plotters::prelude::*;

/// One line of a chart.
pub struct Series<'a> {
    pub label: &'a str,
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
}

/// Colors of successive series.
pub const PALETTE: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
];

/// A line chart as an SVG string. `log_y` uses a log scale (latency); `mark_x` draws a
/// vertical line (the capacity).
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_y: bool,
    mark_x: Option<f64>,
) -> String {
    let mut svg = String::new();
    let points = || series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
        (a.min(p.0), b.max(p.0))
    });
    let (mut y0, mut y1) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
        (a.min(p.1), b.max(p.1))
    });
    if !x0.is_finite() {
        return format!(
            "<p class=\"empty\">{}: no data</p>",
            super::html::escape(title)
        );
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
        x0 -= 1.0;
    }
    if log_y {
        y0 = y0.max(0.01);
        y1 = y1.max(y0 * 10.0);
    } else {
        y0 = 0.0_f64.min(y0);
        y1 = if y1 <= y0 { y0 + 1.0 } else { y1 * 1.1 };
    }
    {
        let root = SVGBackend::with_string(&mut svg, (640, 300)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let axes = Axes {
            title,
            x_label,
            y_label,
            y_bounds: (y0, y1),
            mark_x,
        };
        let result = if log_y {
            draw(&root, &axes, series, x0..x1, (y0..y1).log_scale())
        } else {
            draw(&root, &axes, series, x0..x1, y0..y1)
        };
        if result.is_err() {
            return format!(
                "<p class=\"empty\">{}: could not draw</p>",
                super::html::escape(title)
            );
        }
        let _ = root.present();
    }
    svg
}

/// Titles, bounds and the capacity mark of a chart.
struct Axes<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    y_bounds: (f64, f64),
    mark_x: Option<f64>,
}

fn draw<'b, Y>(
    root: &DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    axes: &Axes,
    series: &[Series],
    x: std::ops::Range<f64>,
    y: Y,
) -> Result<(), Box<dyn std::error::Error + 'b>>
where
    Y: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    Y::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(root)
        .caption(axes.title, ("sans-serif", 18))
        .margin(8)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(x.clone(), y)?;
    chart
        .configure_mesh()
        .x_desc(axes.x_label)
        .y_desc(axes.y_label)
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for s in series {
        let color = s.color;
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(s.label)
            .legend(move |(px, py)| {
                PathElement::new(vec![(px, py), (px + 16, py)], color.stroke_width(2))
            });
        chart.draw_series(s.points.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
    }
    if let Some(mark) = axes.mark_x.filter(|m| x.contains(m)) {
        let (lo, hi) = axes.y_bounds;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(mark, lo), (mark, hi)],
            BLACK.mix(0.5).stroke_width(1),
        )))?;
    }
    if series.len() > 1 {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .draw()?;
    }
    Ok(())
}
