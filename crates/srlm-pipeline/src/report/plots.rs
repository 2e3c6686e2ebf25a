//! Line charts as SVG text, shared by the run report ([`crate::report`]) and the strategy
//! comparison ([`crate::compare`]).
//!
//! plotters' SVG backend draws the frame: caption, axes, grid and tick labels, at tick
//! positions this module computes ([`y_axis`], [`x_axis`]) so that their labels are always
//! distinct. The data is written as SVG elements by this module, at the coordinates plotters
//! maps them to, because plotters' SVG backend has no dash patterns:
//!
//! - every series has its own colour, dash pattern and marker shape ([`style`]); markers are
//!   of different sizes and mostly hollow, so series that coincide stay visible, and the
//!   legend says so (`… (same values as …)`);
//! - error bars where a series carries an interval per point (those of different series
//!   set a few pixels apart);
//! - the legend below the plotting area (never on the data);
//! - iteration boundaries as dashed vertical lines (per-step charts).
//!
//! Elements carry a `class` (`plot-area`, `series`, `markers`, `error-bar`, `boundary`,
//! `legend`) so the SVG can be checked by its structure. Non-finite values cannot be drawn:
//! they break the line (the report's tables show them as `NaN` / `inf`). A chart with no
//! finite value at all is not drawn.

use std::fmt::Write as _;

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

/// One line of a chart: a legend label, `(x, value)` points in x order, and optionally an
/// interval `(lo, hi)` per point, drawn as an error bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The legend label (a legend is shown only when a chart has more than one series).
    pub label: String,
    /// `(x, value)`; a non-finite value breaks the line there.
    pub points: Vec<(f64, f64)>,
    /// Empty (no error bars), or one entry per point: `Some((lo, hi))` draws an error bar
    /// from `lo` to `hi` at that point (skipped when a bound or the point is not finite).
    pub intervals: Vec<Option<(f64, f64)>>,
}

impl Series {
    /// A series without intervals.
    pub fn new(label: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series {
            label: label.into(),
            points,
            intervals: Vec::new(),
        }
    }

    /// The same series with one interval per point (see [`Series::intervals`]).
    pub fn with_intervals(mut self, intervals: Vec<Option<(f64, f64)>>) -> Self {
        self.intervals = intervals;
        self
    }

    /// The interval at point `j`, if any and finite.
    fn interval(&self, j: usize) -> Option<(f64, f64)> {
        self.intervals
            .get(j)
            .copied()
            .flatten()
            .filter(|(lo, hi)| lo.is_finite() && hi.is_finite())
    }
}

/// What the x axis counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XAxis {
    /// Iterations (0 = M0): integer ticks.
    Iteration,
    /// DPO optimizer steps counted over all iterations: integer ticks.
    Step,
}

impl XAxis {
    fn label(self) -> &'static str {
        match self {
            XAxis::Iteration => "iteration",
            XAxis::Step => "DPO optimizer step (counted over all iterations)",
        }
    }
}

/// How the y range is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum YAxis {
    /// A fraction: the axis always shows all of [0, 1] (widened only to show a value outside
    /// it), with ticks inside [0, 1].
    Fraction,
    /// The data's range, widened to at least [`MIN_REL_SPAN`] of the largest absolute value
    /// (see [`y_axis`]), shifted to stay inside `domain` (`lo`, `hi`; infinite for open ends),
    /// with ticks inside `domain`.
    Fit {
        /// The values the metric can take, e.g. `(0.0, 5.0)` for judge points.
        domain: (f64, f64),
    },
}

impl YAxis {
    /// Any real value.
    pub const FREE: YAxis = YAxis::Fit {
        domain: (f64::NEG_INFINITY, f64::INFINITY),
    };
    /// Non-negative values (norms, counts per prompt).
    pub const NON_NEGATIVE: YAxis = YAxis::Fit {
        domain: (0.0, f64::INFINITY),
    };
    /// Judge points on the 0–5 scale.
    pub const JUDGE_POINTS: YAxis = YAxis::Fit { domain: (0.0, 5.0) };
    /// A cosine similarity.
    pub const COSINE: YAxis = YAxis::Fit {
        domain: (-1.0, 1.0),
    };
}

/// One chart: title, axes, series and (on a step axis) the x positions of iteration
/// boundaries.
#[derive(Debug, Clone, Copy)]
pub struct Chart<'a> {
    /// The caption.
    pub title: &'a str,
    /// What the x axis counts.
    pub x: XAxis,
    /// The y axis description (with its unit).
    pub y_label: &'a str,
    /// How the y range is chosen.
    pub y: YAxis,
    /// The lines, drawn in order (later ones on top).
    pub series: &'a [Series],
    /// x positions of dashed vertical separators (between iterations on a step axis).
    pub boundaries: &'a [f64],
}

/// An axis: its range, its tick positions and the decimals every tick label is written with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Axis {
    pub(crate) lo: f64,
    pub(crate) hi: f64,
    pub(crate) ticks: Vec<f64>,
    pub(crate) decimals: usize,
}

impl Axis {
    /// The tick labels as drawn.
    #[cfg(test)]
    pub(crate) fn labels(&self) -> Vec<String> {
        self.ticks.iter().map(|t| self.label(*t)).collect()
    }

    fn label(&self, v: f64) -> String {
        let s = format!("{v:.*}", self.decimals);
        // "-0.00" reads as a sign error.
        if s.trim_start_matches('-')
            .chars()
            .all(|c| c == '0' || c == '.')
        {
            s.trim_start_matches('-').to_string()
        } else {
            s
        }
    }
}

/// An [`Axis`] as a plotters coordinate: plotters' own f64 mapping, with our ticks as its
/// only key points (grid lines and labels), never light lines.
struct Ticked {
    inner: RangedCoordf64,
    ticks: Vec<f64>,
}

impl Ticked {
    fn new(a: &Axis) -> Self {
        Ticked {
            inner: (a.lo..a.hi).into(),
            ticks: a.ticks.clone(),
        }
    }
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.inner.range()
    }
}

/// The smallest span of a [`YAxis::Fit`] axis, relative to the largest absolute value shown.
pub const MIN_REL_SPAN: f64 = 0.1;

/// At most this many y ticks.
const MAX_Y_TICKS: usize = 10;
/// At most this many x ticks.
const MAX_X_TICKS: usize = 12;

/// Ticks at multiples of the smallest step `m × 10^k` (m ∈ {1, 2, 5}, and `k ≥ 0` when
/// `integer`) that puts at most `max` ticks in `[lo, hi]`, and the decimals that step needs.
/// Labels written with those decimals are distinct, since the step is at least one unit of
/// the last decimal.
pub(crate) fn nice_ticks(lo: f64, hi: f64, max: usize, integer: bool) -> (Vec<f64>, usize) {
    if !(lo.is_finite() && hi.is_finite()) || hi < lo {
        return (Vec::new(), 0);
    }
    let span = (hi - lo).max(f64::MIN_POSITIVE);
    let mut k = (span / max as f64).log10().floor() as i32 - 1;
    if integer {
        k = k.max(0);
    }
    let count = |step: f64| ((hi / step + 1e-9).floor() - (lo / step - 1e-9).ceil() + 1.0).max(0.0);
    let step = loop {
        let found = [1.0, 2.0, 5.0]
            .into_iter()
            .map(|m| m * 10f64.powi(k))
            .find(|&s| count(s) <= max as f64);
        if let Some(s) = found {
            break s;
        }
        k += 1;
    };
    let decimals = (-(step.log10() + 1e-9).floor()).max(0.0) as usize;
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    let ticks = (first..=last)
        .map(|i| {
            let v = i as f64 * step;
            if v == 0.0 {
                0.0
            } else {
                v
            }
        })
        .collect();
    (ticks, decimals)
}

/// The y axis for finite data spanning `lo..=hi` (intervals included).
///
/// [`YAxis::Fraction`]: [0, 1] (widened to hold a value outside it), padded by 3 % so points
/// at 0 or 1 do not sit on the frame; ticks inside [0, 1].
///
/// [`YAxis::Fit`]: the rule that keeps a tiny change from looking dramatic: the data's span is
/// widened, around its midpoint, to at least [`MIN_REL_SPAN`] (10 %) of the largest absolute
/// value in the data (to 1 when all values are 0), then shifted (not stretched) to stay
/// inside the domain, then padded by 6 % each side. So a cosine moving from 0.811 to 0.807
/// (0.004) fills about a twentieth of an axis 0.08 high instead of the whole axis; a change
/// of more than 10 % of the values' size still fills the axis. Ticks lie inside the domain.
pub(crate) fn y_axis(lo: f64, hi: f64, y: YAxis) -> Axis {
    let (a, b, tick_lo, tick_hi) = match y {
        YAxis::Fraction => {
            let (a, b) = (lo.min(0.0), hi.max(1.0));
            (a, b, a, b)
        }
        YAxis::Fit { domain } => {
            let (d0, d1) = (domain.0.min(lo), domain.1.max(hi));
            let scale = lo.abs().max(hi.abs());
            let min_span = if scale > 0.0 {
                MIN_REL_SPAN * scale
            } else {
                1.0
            };
            let (mut a, mut b) = if hi - lo < min_span {
                let mid = (lo + hi) / 2.0;
                (mid - min_span / 2.0, mid + min_span / 2.0)
            } else {
                (lo, hi)
            };
            if a < d0 {
                b = (b + (d0 - a)).min(d1);
                a = d0;
            }
            if b > d1 {
                a = (a - (b - d1)).max(d0);
                b = d1;
            }
            (a, b, d0, d1)
        }
    };
    let pad = (b - a) * if y == YAxis::Fraction { 0.03 } else { 0.06 };
    let (lo, hi) = (a - pad, b + pad);
    let (ticks, decimals) = nice_ticks(lo.max(tick_lo), hi.min(tick_hi), MAX_Y_TICKS, false);
    Axis {
        lo,
        hi,
        ticks,
        decimals,
    }
}

/// The x axis for finite x values spanning `lo..=hi`: integer ticks; half a unit of room on
/// each side (and 2 % of the span on a step axis).
pub(crate) fn x_axis(lo: f64, hi: f64, x: XAxis) -> Axis {
    let pad = match x {
        XAxis::Iteration => 0.5,
        XAxis::Step => 0.5 + (hi - lo) * 0.02,
    };
    let (ticks, decimals) = nice_ticks(lo, hi, MAX_X_TICKS, true);
    Axis {
        lo: lo - pad,
        hi: hi + pad,
        ticks,
        decimals,
    }
}

/// Tableau 10: distinguishable, colour-blind friendly.
const COLORS: [&str; 10] = [
    "#1F77B4", "#FF7F0E", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#E377C2", "#7F7F7F",
    "#BCBD22", "#17BECF",
];

/// `stroke-dasharray` per series (empty: solid).
const DASHES: [&str; 6] = ["", "9 4", "2 3", "10 3 2 3", "5 5", "14 3 2 3 2 3"];

/// Marker shapes, of different sizes so that coinciding markers stay visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marker {
    /// Filled circle, radius 3.5.
    Dot,
    /// Hollow square, 11 px.
    Square,
    /// Hollow triangle, 15 px.
    Triangle,
    /// Hollow diamond, 17 px.
    Diamond,
    /// Diagonal cross, 10 px.
    Cross,
    /// Hollow circle, radius 9.
    Ring,
    /// Upright cross, 14 px.
    Plus,
}

const MARKERS: [Marker; 7] = [
    Marker::Dot,
    Marker::Square,
    Marker::Triangle,
    Marker::Diamond,
    Marker::Cross,
    Marker::Ring,
    Marker::Plus,
];

/// How series `i` is drawn: colour, dash pattern, marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Style {
    pub(crate) color: &'static str,
    pub(crate) dash: &'static str,
    pub(crate) marker: Marker,
}

/// Series `i`'s style: the first 6 differ pairwise in colour, dash and marker.
pub(crate) fn style(i: usize) -> Style {
    Style {
        color: COLORS[i % COLORS.len()],
        dash: DASHES[i % DASHES.len()],
        marker: MARKERS[i % MARKERS.len()],
    }
}

/// Width and height of the frame (plot, axes, caption), in pixels.
const FRAME: (u32, u32) = (760, 420);
/// Legend: row height, sample line length, font size.
const LEGEND_ROW: u32 = 24;
const LEGEND_SAMPLE: f64 = 36.0;
const LEGEND_FONT: f64 = 13.0;
/// A generous width per character of the legend font (DejaVu Sans averages about 0.55 em),
/// so estimated entries never overlap.
const CHAR_WIDTH: f64 = 0.66 * LEGEND_FONT;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Splits a series into runs of consecutive finite points, keeping each point's index.
fn segments(points: &[(f64, f64)]) -> Vec<Vec<(usize, (f64, f64))>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for (j, &(x, y)) in points.iter().enumerate() {
        if x.is_finite() && y.is_finite() {
            cur.push((j, (x, y)));
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn finite_points(s: &Series) -> Vec<(f64, f64)> {
    s.points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect()
}

/// Legend labels: a series whose finite points equal an earlier one's says so, since its
/// line and markers lie on that one's.
fn legend_labels(series: &[&Series]) -> Vec<String> {
    series
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mine = finite_points(s);
            match series[..i].iter().find(|o| finite_points(o) == mine) {
                Some(o) => format!("{} (same values as {})", s.label, o.label),
                None => s.label.clone(),
            }
        })
        .collect()
}

/// `text` broken at spaces into lines of at most `max` characters (a longer word stands on
/// a line of its own).
fn wrap(text: &str, max: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(l) if l.chars().count() + 1 + word.chars().count() <= max => {
                l.push(' ');
                l.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

/// One legend entry placed: its first line's row (rows of [`LEGEND_ROW`] pixels), its x
/// offset, and its label's lines.
#[derive(Debug, Clone, PartialEq)]
struct Placed {
    row: usize,
    x: f64,
    lines: Vec<String>,
}

/// The legend's entries laid out left to right in rows at most `width` pixels wide; a label
/// too long for one row is wrapped onto several, and the next row starts below its last
/// line. Returns the entries and the number of rows.
fn legend_layout(labels: &[String], width: f64) -> (Vec<Placed>, usize) {
    let fixed = LEGEND_SAMPLE + 8.0 + 24.0;
    let max_chars = (((width - fixed) / CHAR_WIDTH).floor() as usize).max(8);
    let (mut row, mut x, mut height) = (0, 0.0, 1);
    let placed = labels
        .iter()
        .map(|l| {
            let lines = wrap(l, max_chars);
            let longest = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
            let w = fixed + longest as f64 * CHAR_WIDTH;
            if x > 0.0 && x + w > width {
                row += height;
                x = 0.0;
                height = 1;
            }
            height = height.max(lines.len());
            let at = Placed { row, x, lines };
            x += w;
            at
        })
        .collect();
    (placed, row + height)
}

/// SVG for a marker of `st` at pixel `(x, y)`.
fn marker_svg(st: Style, x: f64, y: f64) -> String {
    let c = st.color;
    let hollow = format!("fill=\"none\" stroke=\"{c}\" stroke-width=\"1.5\"");
    match st.marker {
        Marker::Dot => format!("<circle cx=\"{x}\" cy=\"{y}\" r=\"3.5\" fill=\"{c}\"/>"),
        Marker::Ring => format!("<circle cx=\"{x}\" cy=\"{y}\" r=\"9\" {hollow}/>"),
        Marker::Square => format!(
            "<rect x=\"{}\" y=\"{}\" width=\"11\" height=\"11\" {hollow}/>",
            x - 5.5,
            y - 5.5
        ),
        Marker::Triangle => format!(
            "<polygon points=\"{x},{} {},{} {},{}\" {hollow}/>",
            y - 8.5,
            x - 7.5,
            y + 6.5,
            x + 7.5,
            y + 6.5
        ),
        Marker::Diamond => format!(
            "<polygon points=\"{x},{} {},{y} {x},{} {},{y}\" {hollow}/>",
            y - 8.5,
            x + 8.5,
            y + 8.5,
            x - 8.5
        ),
        Marker::Cross => format!(
            "<path d=\"M{} {}L{} {}M{} {}L{} {}\" stroke=\"{c}\" stroke-width=\"2\"/>",
            x - 5.0,
            y - 5.0,
            x + 5.0,
            y + 5.0,
            x - 5.0,
            y + 5.0,
            x + 5.0,
            y - 5.0
        ),
        Marker::Plus => format!(
            "<path d=\"M{} {y}L{} {y}M{x} {}L{x} {}\" stroke=\"{c}\" stroke-width=\"2\"/>",
            x - 7.0,
            x + 7.0,
            y - 7.0,
            y + 7.0
        ),
    }
}

fn dash_attr(st: Style) -> String {
    if st.dash.is_empty() {
        String::new()
    } else {
        format!(" stroke-dasharray=\"{}\"", st.dash)
    }
}

/// Places SVG documents from [`line_chart`] side by side in one document (each nested at its
/// own x offset; the height is the tallest one's). Errors: a document without a numeric
/// `width` and `height` on its root element.
pub fn side_by_side(panels: &[String]) -> Result<String, String> {
    let attr = |svg: &str, name: &str| -> Result<f64, String> {
        let root = &svg[..svg.find('>').ok_or("not an SVG document")?];
        let key = format!(" {name}=\"");
        let start = root
            .find(&key)
            .ok_or(format!("no `{name}` on the SVG root"))?
            + key.len();
        let end = root[start..].find('"').ok_or("unterminated attribute")? + start;
        root[start..end]
            .parse()
            .map_err(|_| format!("`{name}` is not a number"))
    };
    let (mut x, mut height, mut body) = (0.0, 0.0f64, String::new());
    for svg in panels {
        let (w, h) = (attr(svg, "width")?, attr(svg, "height")?);
        body.push_str(&svg.replacen("<svg ", &format!("<svg x=\"{x}\" y=\"0\" "), 1));
        body.push('\n');
        x += w;
        height = height.max(h);
    }
    Ok(format!(
        "<svg width=\"{x}\" height=\"{height}\" viewBox=\"0 0 {x} {height}\" xmlns=\"http://www.w3.org/2000/svg\">\n{body}</svg>\n"
    ))
}

/// Draws `chart` and returns the SVG document, or `None` when no series has a finite point
/// (the caller skips the plot). A legend is drawn below the plot when more than one series
/// has points. Errors: a series whose intervals do not match its points, or plotters'
/// messages.
pub fn line_chart(chart: &Chart<'_>) -> Result<Option<String>, String> {
    for s in chart.series {
        if !s.intervals.is_empty() && s.intervals.len() != s.points.len() {
            return Err(format!(
                "series `{}`: {} intervals for {} points",
                s.label,
                s.intervals.len(),
                s.points.len()
            ));
        }
    }
    // Finite x and y extents, intervals included.
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for s in chart.series {
        for (j, &(x, y)) in s.points.iter().enumerate() {
            if x.is_finite() && y.is_finite() {
                xs.push(x);
                ys.push(y);
                if let Some((lo, hi)) = s.interval(j) {
                    ys.extend([lo, hi]);
                }
            }
        }
    }
    if xs.is_empty() {
        return Ok(None);
    }
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let xa = x_axis(min(&xs), max(&xs), chart.x);
    let ya = y_axis(min(&ys), max(&ys), chart.y);

    let drawn: Vec<(usize, &Series)> = chart
        .series
        .iter()
        .enumerate()
        .filter(|(_, s)| !segments(&s.points).is_empty())
        .collect();
    let with_legend = drawn.len() > 1;
    let legend_width = f64::from(FRAME.0) - 2.0 * 24.0;
    let labels = legend_labels(&drawn.iter().map(|(_, s)| *s).collect::<Vec<_>>());
    let (layout, rows) = legend_layout(&labels, legend_width);
    let rows = if with_legend { rows as u32 } else { 0 };
    let height = FRAME.1 + if rows > 0 { rows * LEGEND_ROW + 12 } else { 0 };

    let mut svg = String::new();
    let mut data = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (FRAME.0, height)).into_drawing_area();
        let e = |err: &dyn std::fmt::Display| err.to_string();
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let (frame, _) = root.split_vertically(FRAME.1);
        let mut plot = ChartBuilder::on(&frame)
            .caption(chart.title, ("sans-serif", 20))
            .margin(12)
            .margin_right(24)
            .x_label_area_size(44)
            .y_label_area_size(72)
            .build_cartesian_2d(Ticked::new(&xa), Ticked::new(&ya))
            .map_err(|x| e(&x))?;
        let (x_fmt, y_fmt) = (xa.clone(), ya.clone());
        let x_label = |v: &f64| x_fmt.label(*v);
        let y_label = |v: &f64| y_fmt.label(*v);
        plot.configure_mesh()
            .x_desc(chart.x.label())
            .y_desc(chart.y_label)
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(220, 220, 220))
            .x_labels(xa.ticks.len().max(1))
            .y_labels(ya.ticks.len().max(1))
            .x_label_formatter(&x_label)
            .y_label_formatter(&y_label)
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(|x| e(&x))?;

        let (px, py) = plot.plotting_area().get_pixel_range();
        let _ = writeln!(
            data,
            "<rect class=\"plot-area\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"none\"/>",
            px.start,
            py.start,
            px.end - px.start,
            py.end - py.start
        );
        let at = |x: f64, y: f64| {
            let (a, b) = plot.backend_coord(&(x, y));
            (f64::from(a), f64::from(b))
        };
        for &b in chart.boundaries {
            if b.is_finite() && b > xa.lo && b < xa.hi {
                let (x, _) = at(b, ya.lo);
                let _ = writeln!(
                    data,
                    "<line class=\"boundary\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"#888888\" stroke-width=\"1\" stroke-dasharray=\"4 4\"/>",
                    py.start, py.end
                );
            }
        }
        for &(i, s) in &drawn {
            let st = style(i);
            for seg in segments(&s.points) {
                let pts: Vec<String> = seg
                    .iter()
                    .map(|(_, (x, y))| {
                        let (a, b) = at(*x, *y);
                        format!("{a},{b}")
                    })
                    .collect();
                let _ = writeln!(
                    data,
                    "<polyline class=\"series\" data-series=\"{i}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\" stroke-linejoin=\"round\"{} points=\"{}\"/>",
                    st.color,
                    dash_attr(st),
                    pts.join(" ")
                );
            }
        }
        // Error bars of different series at one x are set 6 px apart, so none hides another.
        let with_bars: Vec<usize> = drawn
            .iter()
            .filter(|(_, s)| (0..s.points.len()).any(|j| s.interval(j).is_some()))
            .map(|(i, _)| *i)
            .collect();
        for &(i, s) in &drawn {
            let st = style(i);
            let rank = with_bars.iter().position(|b| *b == i).unwrap_or(0);
            let dodge = (rank as f64 - (with_bars.len() as f64 - 1.0) / 2.0) * 6.0;
            for seg in segments(&s.points) {
                for (j, (x, _)) in &seg {
                    if let Some((lo, hi)) = s.interval(*j) {
                        let (a, top) = at(*x, hi);
                        let a = a + dodge;
                        let (_, bottom) = at(*x, lo);
                        let _ = writeln!(
                            data,
                            "<path class=\"error-bar\" data-series=\"{i}\" d=\"M{a} {top}L{a} {bottom}M{} {top}L{} {top}M{} {bottom}L{} {bottom}\" stroke=\"{}\" stroke-width=\"1.5\" fill=\"none\"/>",
                            a - 5.0,
                            a + 5.0,
                            a - 5.0,
                            a + 5.0,
                            st.color
                        );
                    }
                }
            }
        }
        for &(i, s) in &drawn {
            let st = style(i);
            let _ = write!(data, "<g class=\"markers\" data-series=\"{i}\">");
            for seg in segments(&s.points) {
                for (_, (x, y)) in seg {
                    let (a, b) = at(x, y);
                    data.push_str(&marker_svg(st, a, b));
                }
            }
            data.push_str("</g>\n");
        }
        if with_legend {
            let top = f64::from(FRAME.1) + 4.0;
            data.push_str("<g class=\"legend\">\n");
            for (&(i, _), placed) in drawn.iter().zip(&layout) {
                let st = style(i);
                let x = 24.0 + placed.x;
                let y = top + (placed.row as f64 + 0.5) * f64::from(LEGEND_ROW);
                let tx = x + LEGEND_SAMPLE + 8.0;
                let text: String = if let [line] = placed.lines.as_slice() {
                    escape(line)
                } else {
                    placed
                        .lines
                        .iter()
                        .enumerate()
                        .map(|(n, l)| {
                            let dy = if n == 0 { 0 } else { LEGEND_ROW };
                            format!("<tspan x=\"{tx}\" dy=\"{dy}\">{}</tspan>", escape(l))
                        })
                        .collect()
                };
                let _ = writeln!(
                    data,
                    "<line x1=\"{x}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{}\" stroke-width=\"2\"{}/>{}<text x=\"{tx}\" y=\"{}\" font-family=\"sans-serif\" font-size=\"{LEGEND_FONT}\" fill=\"#000000\">{text}</text>",
                    x + LEGEND_SAMPLE,
                    st.color,
                    dash_attr(st),
                    marker_svg(st, x + LEGEND_SAMPLE / 2.0, y),
                    y + LEGEND_FONT * 0.35,
                );
            }
            data.push_str("</g>\n");
        }
        root.present().map_err(|x| e(&x))?;
    }
    let end = svg
        .rfind("</svg>")
        .ok_or_else(|| "plotters wrote no </svg>".to_string())?;
    svg.insert_str(end, &data);
    Ok(Some(svg))
}

#[cfg(test)]
pub(crate) mod tests;
