//! Tests of the chart module: tick positions and labels, axis ranges, series styles, and the
//! SVG's structure (lines, markers, error bars, legend placed by coordinates).

use super::*;

/// Number of points of each series `<polyline>`, in document order.
pub(crate) fn polyline_points(svg: &str) -> Vec<usize> {
    svg.split("<polyline class=\"series\"")
        .skip(1)
        .map(|tag| {
            let attr = tag.split("points=\"").nth(1).expect("points attribute");
            attr[..attr.find('"').expect("closing quote")]
                .split_whitespace()
                .count()
        })
        .collect()
}

/// The text of every `<text>` element (plotters writes its text on its own line; a wrapped
/// legend label's lines, in `<tspan>`s, are joined by a space).
pub(crate) fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .map(|t| {
            let body = &t[t.find('>').unwrap() + 1..];
            let body = &body[..body.find("</text>").unwrap()];
            body.split('<')
                .map(|piece| piece.find('>').map_or(piece, |k| &piece[k + 1..]).trim())
                .filter(|piece| !piece.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Does the SVG hold a `<text>` element reading exactly `label` (XML-escaped)?
pub(crate) fn has_text(svg: &str, label: &str) -> bool {
    texts(svg).iter().any(|t| t == &escape(label))
}

/// The legend's entries (escaped text), in order; empty without a legend.
pub(crate) fn legend_texts(svg: &str) -> Vec<String> {
    match svg.split("<g class=\"legend\">").nth(1) {
        Some(g) => texts(&g[..g.find("</g>\n").unwrap()]),
        None => Vec::new(),
    }
}

/// A numeric attribute's values in document order.
fn attr_values(svg: &str, name: &str) -> Vec<f64> {
    let key = format!(" {name}=\"");
    svg.split(&key)
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].parse().unwrap())
        .collect()
}

/// `(left, top, right, bottom)` of the plotting area.
pub(crate) fn plot_area(svg: &str) -> (f64, f64, f64, f64) {
    let tag = svg.split("<rect class=\"plot-area\"").nth(1).unwrap();
    let tag = &tag[..tag.find("/>").unwrap()];
    let v = |n: &str| attr_values(tag, n)[0];
    (v("x"), v("y"), v("x") + v("width"), v("y") + v("height"))
}

fn s(label: &str, ys: &[f64]) -> Series {
    Series::new(
        label,
        ys.iter()
            .enumerate()
            .map(|(i, &y)| (i as f64 + 1.0, y))
            .collect(),
    )
}

fn chart<'a>(series: &'a [Series], y: YAxis) -> Chart<'a> {
    Chart {
        title: "t",
        x: XAxis::Iteration,
        y_label: "y",
        y,
        series,
        boundaries: &[],
    }
}

fn draw(series: &[Series], y: YAxis) -> String {
    line_chart(&chart(series, y)).unwrap().unwrap()
}

fn distinct(labels: &[String]) -> bool {
    let mut sorted = labels.to_vec();
    sorted.sort();
    sorted.dedup();
    sorted.len() == labels.len()
}

#[test]
fn nice_ticks_cases() {
    assert_eq!(
        nice_ticks(0.0, 1.0, 8, false),
        (vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0], 1)
    );
    assert_eq!(nice_ticks(1.0, 3.0, 12, true), (vec![1.0, 2.0, 3.0], 0));
    assert_eq!(
        nice_ticks(0.0, 40.0, 12, true).0,
        [0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0]
    );
    assert_eq!(nice_ticks(-0.5, 0.5, 8, false).1, 1);
    assert_eq!(nice_ticks(f64::NAN, 1.0, 8, false), (vec![], 0));
}

/// The axis: 0.811, 0.811, 0.810, … came from three decimals on ticks 0.0005 apart.
#[test]
fn tick_labels_are_distinct_for_tiny_ranges() {
    let (ticks, decimals) = nice_ticks(0.8095, 0.8112, MAX_Y_TICKS, false);
    let axis = Axis {
        lo: 0.8095,
        hi: 0.8112,
        ticks,
        decimals,
    };
    assert_eq!(
        axis.labels(),
        [
            "0.8096", "0.8098", "0.8100", "0.8102", "0.8104", "0.8106", "0.8108", "0.8110",
            "0.8112"
        ]
    );
    for (lo, hi) in [
        (0.8095, 0.8112),
        (0.0, 1e-6),
        (-3.2, 7.9),
        (0.69, 0.6925),
        (1234.5, 1234.50001),
        (-1e-3, 0.0),
        (0.0, 5.0),
    ] {
        for y in [YAxis::FREE, YAxis::Fraction, YAxis::NON_NEGATIVE] {
            let a = y_axis(lo, hi, y);
            let labels = a.labels();
            assert!(labels.len() >= 2, "{lo}..{hi} {y:?}: {labels:?}");
            assert!(distinct(&labels), "{lo}..{hi} {y:?}: {labels:?}");
            assert!(a.lo <= lo && a.hi >= hi, "{lo}..{hi} {y:?}: {a:?}");
        }
    }
}

/// The hidden cosine of the main job moved 0.8114 → 0.8071: that change must not fill the
/// axis.
#[test]
fn a_tiny_change_gets_a_minimum_span() {
    let a = y_axis(0.8071, 0.8114, YAxis::COSINE);
    assert!(a.hi - a.lo >= MIN_REL_SPAN * 0.8114, "{a:?}");
    assert!((0.8114 - 0.8071) / (a.hi - a.lo) < 0.06, "{a:?}");
    assert_eq!(
        a.labels(),
        ["0.77", "0.78", "0.79", "0.80", "0.81", "0.82", "0.83", "0.84", "0.85"]
    );
    // A change larger than 10 % of the values still fills the axis (6 % padding each side).
    let a = y_axis(2.0, 4.0, YAxis::JUDGE_POINTS);
    assert!(
        (a.lo - 1.88).abs() < 1e-9 && (a.hi - 4.12).abs() < 1e-9,
        "{a:?}"
    );
    // Flat zero: span 1, shifted into the domain.
    let a = y_axis(0.0, 0.0, YAxis::JUDGE_POINTS);
    assert_eq!(a.labels(), ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
    assert!(a.ticks.iter().all(|t| *t >= 0.0));
    // A cosine near 1 is not widened past 1.
    let a = y_axis(0.99, 0.995, YAxis::COSINE);
    assert!(a.ticks.iter().all(|t| *t <= 1.0), "{a:?}");
    assert!(a.hi - a.lo >= 0.099, "{a:?}");
}

#[test]
fn fractions_are_on_zero_one() {
    for (lo, hi) in [(0.0, 0.0), (0.05, 0.05), (0.5, 1.0), (1.0, 1.0)] {
        let a = y_axis(lo, hi, YAxis::Fraction);
        assert_eq!(
            a.labels(),
            ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"],
            "{lo}..{hi}"
        );
        assert!(
            a.lo > -0.05 && a.lo < 0.0 && a.hi > 1.0 && a.hi < 1.05,
            "{a:?}"
        );
    }
    // A value outside [0, 1] (a broken metric) is still shown.
    let a = y_axis(0.0, 1.5, YAxis::Fraction);
    assert!(a.hi >= 1.5, "{a:?}");
}

#[test]
fn x_ticks_are_whole_iterations() {
    let a = x_axis(1.0, 1.0, XAxis::Iteration);
    assert_eq!((a.lo, a.hi, a.labels()), (0.5, 1.5, vec!["1".to_string()]));
    let a = x_axis(0.0, 3.0, XAxis::Iteration);
    assert_eq!(a.labels(), ["0", "1", "2", "3"]);
    let a = x_axis(1.0, 20.0, XAxis::Step);
    assert!(a.labels().iter().all(|l| !l.contains('.')), "{a:?}");
    assert!(distinct(&a.labels()));
}

#[test]
fn the_first_six_styles_differ_in_colour_dash_and_marker() {
    for i in 0..6 {
        for j in 0..i {
            let (a, b) = (style(i), style(j));
            assert!(
                a.color != b.color && a.dash != b.dash && a.marker != b.marker,
                "{i} {j}"
            );
        }
    }
    assert_eq!(style(0).dash, "", "the first series is solid");
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
        vec![
            vec![(0, (1.0, 1.0))],
            vec![(2, (3.0, 3.0)), (3, (4.0, 4.0))]
        ]
    );
}

#[test]
fn one_series_is_one_polyline_with_a_marker_per_point_and_no_legend() {
    let svg = draw(&[s("a", &[0.5, 0.25, 0.75])], YAxis::FREE);
    assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(polyline_points(&svg), vec![3]);
    assert_eq!(svg.matches("<circle").count(), 3);
    assert!(legend_texts(&svg).is_empty());
    assert!(!svg.contains("stroke-dasharray"), "one solid line");
}

#[test]
fn several_series_are_styled_apart_and_get_a_legend_below_the_plot() {
    let svg = draw(
        &[
            s("a", &[1.0, 2.0]),
            s("b", &[2.0, f64::NAN, 1.0]),
            s("c", &[0.0, 0.5]),
        ],
        YAxis::FREE,
    );
    // a: one 2-point line; b: two 1-point segments; c: one 2-point line.
    assert_eq!(polyline_points(&svg), [2, 1, 1, 2]);
    assert_eq!(legend_texts(&svg), ["a", "b", "c"]);
    assert!(svg.contains(&format!("stroke-dasharray=\"{}\" points=", DASHES[1])));
    assert!(svg.contains(&format!("stroke-dasharray=\"{}\" points=", DASHES[2])));
    // Every coordinate of the legend lies below the plotting area and the x axis labels.
    let (left, _, right, bottom) = plot_area(&svg);
    let legend = svg.split("<g class=\"legend\">").nth(1).unwrap();
    let legend = &legend[..legend.find("</g>\n").unwrap()];
    let ys: Vec<f64> = ["y", "y1", "y2", "cy"]
        .iter()
        .flat_map(|n| attr_values(legend, n))
        .collect();
    assert!(!ys.is_empty());
    assert!(
        ys.iter().all(|y| *y > bottom + 40.0),
        "legend y {ys:?} vs plot bottom {bottom}"
    );
    // And every data point lies inside the plotting area.
    let body = svg.split("<g class=\"legend\">").next().unwrap();
    for x in attr_values(body, "cx") {
        assert!(x >= left && x <= right, "{x} outside {left}..{right}");
    }
}

#[test]
fn coinciding_series_stay_visible_and_say_so() {
    // Two copies of one run compared; the second is drawn on top of the first.
    let svg = draw(
        &[s("run", &[0.8, 0.7]), s("run #2", &[0.8, 0.7])],
        YAxis::FREE,
    );
    assert_eq!(legend_texts(&svg), ["run", "run #2 (same values as run)"]);
    // Series 0: filled dots; series 1: hollow squares larger than the dots, solid vs dashed.
    assert_eq!(svg.matches("r=\"3.5\"").count(), 3, "two points + legend");
    assert_eq!(
        svg.matches("width=\"11\"").count(),
        3,
        "two points + legend"
    );
    assert_eq!(style(1).marker, Marker::Square);
}

#[test]
fn error_bars_are_drawn_where_intervals_are_given() {
    let series = [s("a", &[1.0, 2.0, f64::NAN, 3.0]).with_intervals(vec![
        Some((0.5, 1.5)),
        None,
        Some((1.0, 2.0)),
        Some((2.0, 5.0)),
    ])];
    let svg = draw(&series, YAxis::FREE);
    // Point 2 is NaN: no bar; point 1 has none.
    assert_eq!(svg.matches("class=\"error-bar\"").count(), 2);
    // The axis holds the intervals: 5.0 is above the largest value.
    let a = y_axis(0.5, 5.0, YAxis::FREE);
    assert!(has_text(&svg, &a.labels()[a.labels().len() - 1]));
    assert!(a.hi >= 5.0);
    // Two series with bars at one x: the bars stand apart.
    let two = [
        s("a", &[1.0]).with_intervals(vec![Some((0.0, 2.0))]),
        s("b", &[1.0]).with_intervals(vec![Some((0.0, 2.0))]),
    ];
    let svg = draw(&two, YAxis::FREE);
    let xs: Vec<f64> = svg
        .split("class=\"error-bar\" data-series=\"")
        .skip(1)
        .map(|b| {
            let d = b.split("d=\"M").nth(1).unwrap();
            d[..d.find(' ').unwrap()].parse().unwrap()
        })
        .collect();
    assert_eq!(xs.len(), 2);
    assert!((xs[0] - xs[1]).abs() >= 6.0, "{xs:?}");
    let bad = [s("a", &[1.0, 2.0]).with_intervals(vec![None])];
    assert_eq!(
        line_chart(&chart(&bad, YAxis::FREE)).unwrap_err(),
        "series `a`: 1 intervals for 2 points"
    );
}

#[test]
fn tick_labels_in_the_svg_are_distinct() {
    let svg = draw(&[s("cosine", &[0.8114, 0.8071])], YAxis::COSINE);
    let a = y_axis(0.8071, 0.8114, YAxis::COSINE);
    for l in a.labels() {
        assert_eq!(texts(&svg).iter().filter(|t| **t == l).count(), 1, "{l}");
    }
    let svg = draw(&[s("rate", &[0.0, 0.0])], YAxis::Fraction);
    for l in ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"] {
        assert!(has_text(&svg, l), "{l}");
    }
    assert!(
        !texts(&svg).iter().any(|t| t.starts_with('-')),
        "no negative fraction"
    );
}

#[test]
fn boundaries_are_dashed_vertical_lines_inside_the_plot() {
    let series = [
        Series::new("iteration 1", vec![(1.0, 0.7), (2.0, 0.6)]),
        Series::new("iteration 2", vec![(3.0, 0.65), (4.0, 0.5)]),
    ];
    let svg = line_chart(&Chart {
        title: "t",
        x: XAxis::Step,
        y_label: "loss",
        y: YAxis::NON_NEGATIVE,
        series: &series,
        boundaries: &[2.5, 99.0],
    })
    .unwrap()
    .unwrap();
    assert_eq!(
        svg.matches("class=\"boundary\"").count(),
        1,
        "99 is off the axis"
    );
    assert!(has_text(&svg, XAxis::Step.label()));
}

#[test]
fn nothing_finite_draws_nothing() {
    assert_eq!(
        line_chart(&chart(&[s("a", &[f64::NAN])], YAxis::FREE)).unwrap(),
        None
    );
    assert_eq!(line_chart(&chart(&[], YAxis::FREE)).unwrap(), None);
}

#[test]
fn a_single_point_still_gets_a_range() {
    let svg = draw(&[s("a", &[2.0])], YAxis::FREE);
    assert_eq!(polyline_points(&svg), vec![1]);
    assert!(has_text(&svg, "1"));
}

#[test]
fn labels_are_escaped() {
    let svg = draw(&[s("a<b", &[1.0]), s("c&d", &[2.0])], YAxis::FREE);
    assert_eq!(legend_texts(&svg), ["a&lt;b", "c&amp;d"]);
}

#[test]
fn long_legend_labels_wrap_inside_the_picture() {
    assert_eq!(wrap("a bb ccc dddd", 6), ["a bb", "ccc", "dddd"]);
    let long =
        "run (temporal; anchored_rejection=true, future_guided_chosen=false) #2 (same values \
                as run (temporal; anchored_rejection=true, future_guided_chosen=false))";
    let labels = ["short".to_string(), long.to_string(), "next".to_string()];
    let (placed, rows) = legend_layout(&labels, 712.0);
    assert_eq!(placed[0].row, 0);
    assert_eq!(placed[1].row, 1, "too long to share the first row");
    let n = placed[1].lines.len();
    assert!(n >= 2, "{placed:?}");
    assert_eq!(placed[1].lines.join(" "), long);
    assert_eq!(placed[2].row, 1 + n, "below the wrapped label's last line");
    assert_eq!(rows, 2 + n);
    for p in &placed {
        let longest = p.lines.iter().map(|l| l.chars().count()).max().unwrap();
        let right = 24.0 + p.x + LEGEND_SAMPLE + 8.0 + longest as f64 * CHAR_WIDTH;
        assert!(right <= f64::from(FRAME.0), "{p:?} ends at {right}");
    }
    let svg = draw(&[s("short", &[1.0]), s(long, &[2.0])], YAxis::FREE);
    assert_eq!(legend_texts(&svg), ["short", &escape(long)]);
    assert!(svg.matches("<tspan").count() >= 2);
}
