//! Line charts over iterations as SVG text (plotters' SVG backend), shared by the run report
//! ([`crate::report`]) and the strategy comparison ([`crate::compare`]).
//!
//! The x axis is always the iteration number; each series is one line with a marker per
//! point. Non-finite values cannot be drawn: they break the line (the tables next to the plots
//! show them as `NaN` / `inf`). A chart with no finite value at all is not drawn.

use plotters::prelude::*;

/// One line of a chart: a legend label and `(iteration, value)` points in iteration order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The legend label (shown only when a chart has more than one series).
    pub label: String,
    /// `(iteration, value)`; a non-finite value breaks the line there.
    pub points: Vec<(f64, f64)>,
}

/// Tableau 10: distinguishable, colour-blind friendly.
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Chart size in pixels.
const SIZE: (u32, u32) = (720, 420);

/// Splits a series into runs of consecutive finite points.
fn segments(points: &[(f64, f64)]) -> Vec<Vec<(f64, f64)>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for &(x, y) in points {
        if x.is_finite() && y.is_finite() {
            cur.push((x, y));
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `lo..hi` widened so that a single value or a flat line still gets a visible range.
fn padded(lo: f64, hi: f64, flat_pad: f64) -> (f64, f64) {
    if hi > lo {
        let pad = (hi - lo) * 0.08;
        (lo - pad, hi + pad)
    } else {
        let pad = (lo.abs() * 0.1).max(flat_pad);
        (lo - pad, hi + pad)
    }
}

/// Draws `series` as one line chart and returns the SVG document, or `None` when no series
/// has a finite point (the caller skips the plot). A legend is drawn when more than one series
/// has points. Errors are plotters' messages.
pub fn line_chart(title: &str, y_label: &str, series: &[Series]) -> Result<Option<String>, String> {
    let finite: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    if finite.is_empty() {
        return Ok(None);
    }
    let fold = |f: fn(f64, f64) -> f64, init: f64, pick: fn(&(f64, f64)) -> f64| {
        finite.iter().map(pick).fold(init, f)
    };
    let (x0, x1) = padded(
        fold(f64::min, f64::INFINITY, |p| p.0),
        fold(f64::max, f64::NEG_INFINITY, |p| p.0),
        0.5,
    );
    let (y0, y1) = padded(
        fold(f64::min, f64::INFINITY, |p| p.1),
        fold(f64::max, f64::NEG_INFINITY, |p| p.1),
        0.05,
    );
    let n_ticks = ((x1 - x0).ceil() as usize + 1).clamp(2, 12);

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let e = |err: &dyn std::fmt::Display| err.to_string();
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .x_desc("iteration")
            .y_desc(y_label)
            .light_line_style(TRANSPARENT)
            .x_labels(n_ticks)
            .x_label_formatter(&|x| {
                if (x - x.round()).abs() < 1e-6 {
                    format!("{}", x.round() as i64)
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y| format!("{y:.3}"))
            .draw()
            .map_err(|x| e(&x))?;
        for (i, s) in series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            for (j, seg) in segments(&s.points).into_iter().enumerate() {
                let line = chart
                    .draw_series(LineSeries::new(seg.iter().copied(), color.stroke_width(2)))
                    .map_err(|x| e(&x))?;
                if j == 0 {
                    line.label(s.label.as_str()).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                }
                chart
                    .draw_series(PointSeries::of_element(
                        seg.iter().copied(),
                        3,
                        color.filled(),
                        &|c, s, st| Circle::new(c, s, st),
                    ))
                    .map_err(|x| e(&x))?;
            }
        }
        let with_data = series
            .iter()
            .filter(|s| !segments(&s.points).is_empty())
            .count();
        if with_data > 1 {
            chart
                .configure_series_labels()
                .label_font(("sans-serif", 14))
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(|x| e(&x))?;
        }
        root.present().map_err(|x| e(&x))?;
    }
    Ok(Some(svg))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Number of points of each data `<polyline>` (series lines and legend entries, drawn
    /// 2 px wide; axes and ticks are 1 px) in an SVG document, in document order.
    pub(crate) fn polyline_points(svg: &str) -> Vec<usize> {
        svg.split("<polyline")
            .skip(1)
            .filter(|tag| tag[..tag.find('>').unwrap()].contains("stroke-width=\"2\""))
            .map(|tag| {
                let attr = tag.split("points=\"").nth(1).expect("points attribute");
                attr[..attr.find('"').expect("closing quote")]
                    .split_whitespace()
                    .count()
            })
            .collect()
    }

    /// Does the SVG hold a `<text>` element reading exactly `label`?
    pub(crate) fn has_text(svg: &str, label: &str) -> bool {
        svg.contains(&format!(">\n{label}\n</text>"))
    }

    fn s(label: &str, ys: &[f64]) -> Series {
        Series {
            label: label.into(),
            points: ys
                .iter()
                .enumerate()
                .map(|(i, &y)| (i as f64 + 1.0, y))
                .collect(),
        }
    }

    #[test]
    fn segments_break_at_non_finite_values() {
        let pts = [
            (1.0, 1.0),
            (2.0, f64::NAN),
            (3.0, 3.0),
            (4.0, 4.0),
            (5.0, f64::INFINITY),
        ];
        assert_eq!(
            segments(&pts),
            vec![vec![(1.0, 1.0)], vec![(3.0, 3.0), (4.0, 4.0)]]
        );
    }

    #[test]
    fn one_series_is_one_polyline_with_a_point_per_iteration() {
        let svg = line_chart("t", "y", &[s("a", &[0.5, 0.25, 0.75])])
            .unwrap()
            .unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert_eq!(polyline_points(&svg), vec![3]);
        assert_eq!(svg.matches("<circle").count(), 3);
    }

    #[test]
    fn several_series_get_a_legend() {
        let svg = line_chart(
            "t",
            "y",
            &[s("a", &[1.0, 2.0]), s("b", &[2.0, f64::NAN, 1.0])],
        )
        .unwrap()
        .unwrap();
        // a: one 2-point line; b: two 1-point segments; each legend entry is a 2-point path.
        let mut pts = polyline_points(&svg);
        pts.sort_unstable();
        assert_eq!(pts, vec![1, 1, 2, 2, 2]);
        assert!(has_text(&svg, "a") && has_text(&svg, "b"), "legend labels");
    }

    #[test]
    fn nothing_finite_draws_nothing() {
        assert_eq!(line_chart("t", "y", &[s("a", &[f64::NAN])]).unwrap(), None);
        assert_eq!(line_chart("t", "y", &[]).unwrap(), None);
    }

    #[test]
    fn a_single_point_still_gets_a_range() {
        let svg = line_chart("t", "y", &[s("a", &[2.0])]).unwrap().unwrap();
        assert_eq!(polyline_points(&svg), vec![1]);
    }
}
