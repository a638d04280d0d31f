//! SVG sparklines and line charts, drawn here so a page shows them without JavaScript;
//! `assets/console.js` redraws the same shapes, by the same arithmetic, as server-sent
//! samples arrive (each chart carries its series name and points in `data-` attributes).

use maud::{Markup, html};

/// Width and height of a sparkline's view box.
pub(crate) const SPARK_WIDTH: f64 = 120.0;
pub(crate) const SPARK_HEIGHT: f64 = 28.0;
/// Width and height of a chart's view box.
pub(crate) const CHART_WIDTH: f64 = 600.0;
pub(crate) const CHART_HEIGHT: f64 = 120.0;

/// The polyline points of `values` scaled into `width` x `height` (0 at the bottom; the
/// largest value at the top, or the middle when every value is 0).
pub(crate) fn points(values: &[f64], width: f64, height: f64) -> String {
    if values.is_empty() {
        return String::new();
    }
    let max = values.iter().copied().fold(0.0_f64, f64::max);
    let step = if values.len() > 1 {
        width / (values.len() - 1) as f64
    } else {
        0.0
    };
    let pad = 2.0;
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let y = if max > 0.0 {
                height - pad - (v / max) * (height - 2.0 * pad)
            } else {
                height / 2.0
            };
            format!("{:.1},{:.1}", i as f64 * step, y)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn data_points(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.3}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A small inline chart of `values` (oldest first). `series`: the name the live updates
/// use; `label`: what it shows, for screen readers.
pub(crate) fn sparkline(series: &str, label: &str, values: &[f64]) -> Markup {
    svg(series, label, values, SPARK_WIDTH, SPARK_HEIGHT, "spark")
}

/// A wider chart of `values` (oldest first), for the live page.
pub(crate) fn chart(series: &str, label: &str, values: &[f64]) -> Markup {
    svg(series, label, values, CHART_WIDTH, CHART_HEIGHT, "chart")
}

fn svg(series: &str, label: &str, values: &[f64], w: f64, h: f64, class: &str) -> Markup {
    let latest = values.last().copied().unwrap_or(0.0);
    html! {
        svg class=(class) viewBox=(format!("0 0 {w} {h}")) preserveAspectRatio="none"
            role="img" aria-label=(format!("{label}; latest {latest:.1}"))
            data-series=(series) data-points=(data_points(values)) {
            polyline points=(points(values, w, h)) fill="none" {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_span_the_box_with_the_largest_at_the_top() {
        assert_eq!(points(&[], 100.0, 20.0), "");
        assert_eq!(points(&[0.0, 0.0], 100.0, 20.0), "0.0,10.0 100.0,10.0");
        assert_eq!(
            points(&[0.0, 5.0, 10.0], 100.0, 20.0),
            "0.0,18.0 50.0,10.0 100.0,2.0"
        );
    }

    #[test]
    fn a_series_name_is_escaped_like_any_text() {
        let svg = sparkline("group:\"><script>", "lag", &[1.0]).into_string();
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"), "{svg}");
    }
}
