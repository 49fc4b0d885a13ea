//! SVG charts for the HTML reports, drawn with plotters' SVG backend. One `Chart` value says
//! everything a chart shows (series, vertical marks, shaded bands), so the report modules
//! only gather numbers. The SVG keeps its viewBox, and the page's stylesheet scales it to the
//! column it sits in: a chart is drawn at the size it will mostly be seen at (the timeline
//! 1280 px wide, a grid chart 640 px), so its text stays readable.

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Style {
    /// Joined by a line, no markers (time series: many points).
    Line,
    /// Joined by a line, each point marked (a curve of a few steps).
    LinePoints,
    /// Markers only, not joined (steps that are not part of a sweep: probe, recovery).
    Points,
    /// Markers only, drawn as crosses (a second kind of lone step beside `Points`).
    Crosses,
}

/// One series of a chart.
pub struct Series<'a> {
    pub label: &'a str,
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
    pub style: Style,
}

impl<'a> Series<'a> {
    pub fn new(label: &'a str, points: Vec<(f64, f64)>, color: usize, style: Style) -> Self {
        Series {
            label,
            points,
            color: PALETTE[color % PALETTE.len()],
            style,
        }
    }
}

/// A vertical line across the plot at `x`, its label at the top (a capacity, a step start).
pub struct Mark {
    pub x: f64,
    pub label: String,
}

/// A shaded range of x (a phase of a hunt), its label at the top left.
pub struct Band {
    pub from: f64,
    pub to: f64,
    pub label: String,
    pub color: RGBColor,
}

/// Where the legend goes: inside the plot (a corner the data leaves empty) or in a column
/// right of it (time lines, whose data fills every corner).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Legend {
    UpperLeft,
    LowerRight,
    Beside,
}

/// Pixels kept right of the plot for a `Legend::Beside`.
const BESIDE: u32 = 140;

/// Colors of successive series.
pub const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(127, 127, 127),
];

/// Width and height of a full-width chart (the timeline) and of a chart in the grid.
pub const WIDE: (u32, u32) = (1280, 300);
pub const GRID: (u32, u32) = (640, 320);

pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub series: Vec<Series<'a>>,
    pub log_y: bool,
    pub marks: Vec<Mark>,
    pub bands: Vec<Band>,
    pub size: (u32, u32),
    pub legend: Legend,
}

impl<'a> Chart<'a> {
    pub fn new(title: &'a str, x_label: &'a str, y_label: &'a str, size: (u32, u32)) -> Self {
        Chart {
            title,
            x_label,
            y_label,
            series: Vec::new(),
            log_y: false,
            marks: Vec::new(),
            bands: Vec::new(),
            size,
            legend: Legend::UpperLeft,
        }
    }

    /// Whether any series has a point: a chart without one is left out of a report.
    pub fn has_data(&self) -> bool {
        self.series.iter().any(|s| !s.points.is_empty())
    }

    /// The bounds of x and y over every series (and the marks and bands, so they show).
    fn bounds(&self) -> Option<((f64, f64), (f64, f64))> {
        let points = || self.series.iter().flat_map(|s| s.points.iter());
        let xs = points()
            .map(|p| p.0)
            .chain(self.marks.iter().map(|m| m.x))
            .chain(self.bands.iter().flat_map(|b| [b.from, b.to]));
        let (mut x0, mut x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
        let ys = points().map(|p| p.1).filter(|y| !self.log_y || *y > 0.0);
        let (mut y0, mut y1) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
            (a.min(y), b.max(y))
        });
        if !x0.is_finite() || !y0.is_finite() {
            return None;
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
            x0 -= 1.0;
        }
        // Room on the right: the last point (often the one that matters: the knee, the
        // saturation) is drawn whole, not cut by the plot's edge.
        x1 += (x1 - x0) * 0.04;
        if self.log_y {
            y0 = (y0 * 0.8).max(0.001);
            y1 = (y1 * 1.6).max(y0 * 10.0);
        } else {
            y0 = 0.0_f64.min(y0);
            y1 = if y1 <= y0 { y0 + 1.0 } else { y1 * 1.12 };
        }
        Some(((x0, x1), (y0, y1)))
    }

    /// The chart as an SVG string (or a one-line note when there is nothing to draw).
    pub fn svg(&self) -> String {
        let title = super::markup::escape(self.title);
        let Some((x, y)) = self.bounds() else {
            return format!("<p class=\"empty\">{title}: no data</p>");
        };
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, self.size).into_drawing_area();
            let _ = root.fill(&WHITE);
            let drawn = if self.log_y {
                self.draw(&root, x.0..x.1, (y.0..y.1).log_scale(), y)
            } else {
                self.draw(&root, x.0..x.1, y.0..y.1, y)
            };
            if drawn.is_err() {
                return format!("<p class=\"empty\">{title}: could not draw</p>");
            }
            let _ = root.present();
        }
        svg
    }

    fn draw<'b, Y>(
        &self,
        root: &DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
        x: std::ops::Range<f64>,
        y: Y,
        (y_lo, y_hi): (f64, f64),
    ) -> Result<(), Box<dyn std::error::Error + 'b>>
    where
        Y: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
        Y::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
    {
        let mut chart = ChartBuilder::on(root)
            .caption(self.title, ("sans-serif", 18))
            .margin(10)
            .margin_right(if self.legend == Legend::Beside {
                BESIDE
            } else {
                10
            })
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(x, y)?;
        chart
            .configure_mesh()
            .x_desc(self.x_label)
            .y_desc(self.y_label)
            .label_style(("sans-serif", 13))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        for band in &self.bands {
            chart.draw_series(std::iter::once(Rectangle::new(
                [(band.from, y_lo), (band.to, y_hi)],
                band.color.mix(0.13).filled(),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                band.label.clone(),
                (band.from, y_hi),
                ("sans-serif", 12).into_font().color(&BLACK.mix(0.6)),
            )))?;
        }
        for mark in &self.marks {
            // Labelled marks (a capacity) stand out; bare ones (step starts) stay faint.
            let shade = if mark.label.is_empty() { 0.15 } else { 0.45 };
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(mark.x, y_lo), (mark.x, y_hi)],
                BLACK.mix(shade).stroke_width(1),
            )))?;
        }
        self.mark_labels(root, &chart, y_hi)?;
        for s in &self.series {
            let color = s.color;
            let joined = matches!(s.style, Style::Line | Style::LinePoints);
            let crosses = s.style == Style::Crosses;
            let drawn = if joined {
                // A point whose y is not finite breaks the line (a pause between steps).
                let mut segments = s
                    .points
                    .split(|p| !p.1.is_finite())
                    .filter(|p| !p.is_empty());
                let first = segments.next().unwrap_or(&[]);
                for segment in segments {
                    chart.draw_series(LineSeries::new(
                        segment.iter().copied(),
                        color.stroke_width(2),
                    ))?;
                }
                chart.draw_series(LineSeries::new(
                    first.iter().copied(),
                    color.stroke_width(2),
                ))?
            } else {
                chart.draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
            };
            if !s.label.is_empty() {
                drawn.label(s.label).legend(move |(px, py)| {
                    if joined {
                        PathElement::new(vec![(px, py), (px + 16, py)], color.stroke_width(2))
                            .into_dyn()
                    } else if crosses {
                        Cross::new((px + 8, py), 5, color.stroke_width(2)).into_dyn()
                    } else {
                        Circle::new((px + 8, py), 4, color.filled()).into_dyn()
                    }
                });
            }
            match s.style {
                Style::Line => {}
                Style::LinePoints | Style::Points => {
                    chart
                        .draw_series(s.points.iter().map(|p| Circle::new(*p, 4, color.filled())))?;
                }
                Style::Crosses => {
                    chart.draw_series(
                        s.points
                            .iter()
                            .map(|p| Cross::new(*p, 5, color.stroke_width(2))),
                    )?;
                }
            }
        }
        let labelled = self.series.iter().filter(|s| !s.label.is_empty()).count();
        if self.legend == Legend::Beside {
            let (right, top) = chart.backend_coord(&(chart.x_range().end, y_hi));
            self.legend_beside(root, (right + 14, top))?;
        } else if labelled > 1 {
            let position = match self.legend {
                Legend::LowerRight => SeriesLabelPosition::LowerRight,
                _ => SeriesLabelPosition::UpperLeft,
            };
            chart
                .configure_series_labels()
                .position(position)
                .label_font(("sans-serif", 13))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .draw()?;
        }
        Ok(())
    }
}

impl Chart<'_> {
    /// The legend in the column right of the plot, drawn in pixels (plotters' own legend is
    /// clipped to the plotting area).
    fn legend_beside<'b>(
        &self,
        root: &DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
        (x, top): (i32, i32),
    ) -> Result<(), Box<dyn std::error::Error + 'b>> {
        let labelled = self.series.iter().filter(|s| !s.label.is_empty());
        for (i, s) in labelled.enumerate() {
            let y = top + 8 + 18 * i as i32;
            match s.style {
                Style::Line | Style::LinePoints => root.draw(&PathElement::new(
                    vec![(x, y), (x + 18, y)],
                    s.color.stroke_width(3),
                ))?,
                Style::Points => root.draw(&Circle::new((x + 9, y), 4, s.color.filled()))?,
                Style::Crosses => root.draw(&Cross::new((x + 9, y), 5, s.color.stroke_width(2)))?,
            }
            root.draw(&Text::new(
                s.label.to_string(),
                (x + 24, y - 7),
                ("sans-serif", 13).into_font(),
            ))?;
        }
        Ok(())
    }

    /// The marks' labels, in pixels: each on the first of three rows under the top where it
    /// does not overlap the last label on that row, right-aligned to its line near the right
    /// edge, so labels of close marks stay legible.
    fn mark_labels<'b, Y>(
        &self,
        root: &DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
        chart: &ChartContext<'_, SVGBackend<'b>, Cartesian2d<RangedCoordf64, Y>>,
        y_hi: f64,
    ) -> Result<(), Box<dyn std::error::Error + 'b>>
    where
        Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
    {
        const ROW: i32 = 15;
        const CHAR: i32 = 7;
        let right = chart.backend_coord(&(chart.x_range().end, y_hi)).0;
        let mut row_ends = [i32::MIN; 3];
        for mark in self.marks.iter().filter(|m| !m.label.is_empty()) {
            let (px, top) = chart.backend_coord(&(mark.x, y_hi));
            let width = CHAR * mark.label.chars().count() as i32;
            let (from, x, anchor) = if px + 4 + width > right {
                (px - 4 - width, px - 4, HPos::Right)
            } else {
                (px + 4, px + 4, HPos::Left)
            };
            let row = row_ends.iter().position(|end| *end < from).unwrap_or(0);
            row_ends[row] = from + width + 6;
            let style = ("sans-serif", 12)
                .into_font()
                .color(&BLACK.mix(0.8))
                .pos(Pos::new(anchor, VPos::Top));
            root.draw(&Text::new(
                mark.label.clone(),
                (x, top + 2 + ROW * row as i32),
                style,
            ))?;
        }
        Ok(())
    }
}

/// At most `max` points: consecutive points are merged (mean x, and `merge` of their ys),
/// so a day-long soak's slices still make a light SVG.
pub fn thin(points: &[(f64, f64)], max: usize, merge: fn(&[f64]) -> f64) -> Vec<(f64, f64)> {
    if points.len() <= max || max == 0 {
        return points.to_vec();
    }
    let per = points.len().div_ceil(max);
    points
        .chunks(per)
        .map(|chunk| {
            let x = chunk.iter().map(|p| p.0).sum::<f64>() / chunk.len() as f64;
            let ys: Vec<f64> = chunk.iter().map(|p| p.1).collect();
            (x, merge(&ys))
        })
        .collect()
}

pub fn mean_of(ys: &[f64]) -> f64 {
    ys.iter().sum::<f64>() / ys.len().max(1) as f64
}

pub fn max_of(ys: &[f64]) -> f64 {
    ys.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_the_shape_within_the_bound() {
        let points: Vec<(f64, f64)> = (0..10_000).map(|i| (i as f64, (i % 10) as f64)).collect();
        let thinned = thin(&points, 1000, max_of);
        assert!(thinned.len() <= 1000, "{}", thinned.len());
        assert!(
            thinned.iter().all(|p| p.1 == 9.0),
            "max keeps each chunk's peak"
        );
        assert_eq!(thin(&points[..10], 1000, mean_of), points[..10].to_vec());
    }

    #[test]
    fn a_chart_draws_marks_bands_and_escapes_its_text() {
        let mut chart = Chart::new("p99 <&>", "time (s)", "ms", WIDE);
        chart.series.push(Series::new(
            "p99",
            vec![(0.0, 1.0), (1.0, 2.0)],
            0,
            Style::Line,
        ));
        chart.marks.push(Mark {
            x: 0.5,
            label: "rate-100 <b>".into(),
        });
        chart.bands.push(Band {
            from: 0.0,
            to: 0.5,
            label: "probe".into(),
            color: PALETTE[2],
        });
        let svg = chart.svg();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("viewBox=\"0 0 1280 300\""));
        assert!(
            svg.contains("probe") && svg.contains("rate-100 &lt;b&gt;"),
            "{svg}"
        );
        assert!(!svg.contains("<&>"), "text is escaped");
        let empty = Chart::new("nothing <here>", "x", "y", GRID);
        assert!(!empty.has_data());
        assert_eq!(
            empty.svg(),
            "<p class=\"empty\">nothing &lt;here&gt;: no data</p>"
        );
    }
}
