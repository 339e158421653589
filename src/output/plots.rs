//! Figures of a day, each drawn once by plotters as SVG and published as SVG, PNG and
//! PDF, so the three files show the same thing:
//! - `price_convergence`: market price vs iteration, one line per hour (Fig. 8);
//! - `power_convergence`: both agents' side of the exchange vs iteration, and the
//!   mismatch between them that the consensus removes (Fig. 6-7);
//! - `cost_convergence`: total cost of the day vs iteration, against the centralized
//!   optima (Fig. 9);
//! - `p2p_vs_central`: exchange and price per hour, P2P against both references
//!   (Fig. 10-11);
//! - `attacked_hours`, only when `[[attack]]` tables hit some hours: each attacked hour's
//!   agents' prices and exports vs iteration (Fig. 12-16).
//!
//! No system font is used anywhere: the chosen font ([`FigureFont`], the embedded DejaVu
//! Sans by default) gives plotters its text metrics (`ab_glyph`), resvg the glyphs of the
//! PNG, and svg2pdf the glyphs it subsets and embeds in the PDF. Layout is in units of
//! 1/100 inch ([`UNITS_PER_INCH`]), so a figure keeps its proportions and font sizes
//! whatever `--dpi` the PNG is rasterized at.

use std::ops::{Range, RangeInclusive};
use std::path::Path;
use std::sync::Mutex;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::{CoordTranslate, Shift};
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::error::{Error, Result};
use crate::market::{DayResult, HourResult};
use crate::output::parquet::Sink;
use crate::output::tables::{cost_by_iteration, iteration_chunks};

/// Layout units (SVG user units, plotters pixels) per inch: a font of size 16 is 16/100
/// inch (11.5 pt) tall on paper.
pub const UNITS_PER_INCH: f64 = 100.0;

/// Most points drawn per line; longer series are decimated (min/max per bucket), which
/// keeps their envelope while bounding the SVG size for runs of 1e5 iterations.
const MAX_POINTS: usize = 4000;

/// Family name of the font embedded in the binary.
pub const EMBEDDED_FONT_FAMILY: &str = "DejaVu Sans";

/// A font for every text of the figures, held in memory (never looked up on the system).
#[derive(Debug, Clone, PartialEq)]
pub struct FigureFont {
    /// Family name, as the font file states it.
    pub family: String,
    /// The TrueType/OpenType file's bytes; `'static` because plotters' font registry
    /// keeps them for the life of the process.
    data: &'static [u8],
}

impl FigureFont {
    /// The embedded DejaVu Sans.
    pub fn embedded() -> Self {
        FigureFont {
            family: EMBEDDED_FONT_FAMILY.into(),
            data: include_bytes!("../../assets/fonts/DejaVuSans.ttf"),
        }
    }

    /// `choice` is the embedded family's name (any case) or the path of a `.ttf`/`.otf`
    /// file, which is read and parsed here. Errors name `field` (e.g. `--font`).
    pub fn from_choice(field: &str, choice: &str) -> Result<Self> {
        if choice.trim().eq_ignore_ascii_case(EMBEDDED_FONT_FAMILY) {
            return Ok(FigureFont::embedded());
        }
        let allowed = format!(
            "\"{EMBEDDED_FONT_FAMILY}\" (embedded) or the path of a readable TrueType or \
             OpenType font file (.ttf, .otf)"
        );
        let path = Path::new(choice);
        let is_font_file = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("ttf") || e.eq_ignore_ascii_case("otf"));
        if !is_font_file {
            return Err(Error::invalid(field, choice, allowed));
        }
        let bytes = std::fs::read(path).map_err(|e| {
            Error::invalid(field, choice, format!("{allowed}; reading it failed: {e}"))
        })?;
        let mut db = svg2pdf::usvg::fontdb::Database::new();
        db.load_font_data(bytes.clone());
        let family = db
            .faces()
            .next()
            .and_then(|f| f.families.first().map(|(name, _)| name.clone()))
            .ok_or_else(|| {
                Error::invalid(field, choice, format!("{allowed}; it holds no usable font"))
            })?;
        Ok(FigureFont {
            family,
            // Leaked once per font a process chooses (a CLI run chooses one): plotters'
            // registry needs a 'static slice.
            data: Box::leak(bytes.into_boxed_slice()),
        })
    }
}

/// How figures are drawn and published; built and validated once, before anything runs.
#[derive(Debug, Clone, PartialEq)]
pub struct FigureOptions {
    /// Width, inches.
    pub width_in: f64,
    /// Height, inches.
    pub height_in: f64,
    /// Resolution of the PNG, pixels per inch (SVG and PDF are vector).
    pub dpi: u32,
    /// The font of every text.
    pub font: FigureFont,
}

impl Default for FigureOptions {
    fn default() -> Self {
        FigureOptions {
            width_in: 12.0,
            height_in: 7.0,
            dpi: 100,
            font: FigureFont::embedded(),
        }
    }
}

/// Widths a figure may have, inches (below 4 the axis labels crowd the plot).
pub const WIDTH_IN: RangeInclusive<f64> = 4.0..=40.0;
/// Heights a figure may have, inches.
pub const HEIGHT_IN: RangeInclusive<f64> = 3.0..=30.0;
/// Resolutions the PNG may have, pixels per inch.
pub const DPI: RangeInclusive<u32> = 50..=1200;
/// Most pixels of a PNG (40 in x 30 in at 600 dpi is far beyond any journal's need).
const MAX_PNG_PIXELS: f64 = 2.0e8;

impl FigureOptions {
    /// Parses `WxH` in inches (e.g. `7x4.5`); errors name `field`.
    pub fn parse_size(field: &str, text: &str) -> Result<(f64, f64)> {
        let allowed = format!(
            "WxH in inches, e.g. 7x4.5, width {} to {}, height {} to {}",
            WIDTH_IN.start(),
            WIDTH_IN.end(),
            HEIGHT_IN.start(),
            HEIGHT_IN.end()
        );
        let parsed = text.split_once(['x', 'X']).and_then(|(w, h)| {
            Some((w.trim().parse::<f64>().ok()?, h.trim().parse::<f64>().ok()?))
        });
        match parsed {
            Some((w, h)) if WIDTH_IN.contains(&w) && HEIGHT_IN.contains(&h) => Ok((w, h)),
            _ => Err(Error::invalid(field, text, allowed)),
        }
    }

    /// Options of the given size (inches), PNG resolution and font, validated; errors
    /// name `figure_size` or `dpi`.
    pub fn new(size_in: (f64, f64), dpi: u32, font: FigureFont) -> Result<Self> {
        let (w, h) = size_in;
        if !(WIDTH_IN.contains(&w) && HEIGHT_IN.contains(&h)) {
            return Err(Error::invalid(
                "figure_size",
                format!("{w}x{h}"),
                format!(
                    "width {} to {}, height {} to {} inches",
                    WIDTH_IN.start(),
                    WIDTH_IN.end(),
                    HEIGHT_IN.start(),
                    HEIGHT_IN.end()
                ),
            ));
        }
        if !DPI.contains(&dpi) {
            return Err(Error::invalid(
                "dpi",
                dpi.to_string(),
                format!("{}..={} pixels per inch", DPI.start(), DPI.end()),
            ));
        }
        if w * h * f64::from(dpi).powi(2) > MAX_PNG_PIXELS {
            // The largest resolution whose PNG of this size stays within the cap.
            let most = (MAX_PNG_PIXELS / (w * h)).sqrt().floor();
            return Err(Error::invalid(
                "dpi",
                dpi.to_string(),
                format!(
                    "at most {most} pixels per inch at {w}x{h} in: a PNG has at most \
                     {MAX_PNG_PIXELS:.0e} pixels"
                ),
            ));
        }
        Ok(FigureOptions {
            width_in: w,
            height_in: h,
            dpi,
            font,
        })
    }

    /// The figure's size in layout units.
    fn canvas(&self) -> (u32, u32) {
        (
            (self.width_in * UNITS_PER_INCH).round() as u32,
            (self.height_in * UNITS_PER_INCH).round() as u32,
        )
    }
}

/// Makes `font` plotters' "sans-serif" (its text metrics) unless it already is.
fn ensure_font(font: &FigureFont) -> Result<()> {
    static REGISTERED: Mutex<Option<String>> = Mutex::new(None);
    let mut current = REGISTERED.lock().unwrap_or_else(|p| p.into_inner());
    if current.as_deref() == Some(font.family.as_str()) {
        return Ok(());
    }
    register_font("sans-serif", FontStyle::Normal, font.data).map_err(|_| Error::Output {
        context: "plots".into(),
        message: format!("the font {} cannot be used by plotters", font.family),
    })?;
    *current = Some(font.family.clone());
    Ok(())
}

/// Draws a figure once as SVG (`draw` over a canvas of `size` layout units) and writes
/// `{name}.png`, `{name}.svg` and `{name}.pdf` into `sink`; returns the three names.
fn write_figure(
    sink: &mut dyn Sink,
    name: &str,
    size: (u32, u32),
    opts: &FigureOptions,
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<()>,
) -> Result<Vec<String>> {
    ensure_font(&opts.font)?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        draw(&root)?;
    }
    // The SVG names its font, with the generic family as the viewer's fallback.
    let family: String = opts
        .font
        .family
        .chars()
        .filter(|c| !matches!(c, '\'' | '"' | '<' | '>' | '&'))
        .collect();
    let svg = svg.replace(
        "font-family=\"sans-serif\"",
        &format!("font-family=\"'{family}', sans-serif\""),
    );
    let fail = |message: String| Error::Output {
        context: format!("plot {name}"),
        message,
    };
    let mut usvg_options = svg2pdf::usvg::Options {
        font_family: opts.font.family.clone(),
        ..Default::default()
    };
    usvg_options
        .fontdb_mut()
        .load_font_data(opts.font.data.to_vec());
    usvg_options
        .fontdb_mut()
        .set_sans_serif_family(opts.font.family.clone());
    let tree = svg2pdf::usvg::Tree::from_str(&svg, &usvg_options)
        .map_err(|e| fail(format!("re-reading the SVG: {e}")))?;

    let scale = opts.dpi as f32 / UNITS_PER_INCH as f32;
    let (w, h) = (
        (size.0 as f32 * scale).ceil() as u32,
        (size.1 as f32 * scale).ceil() as u32,
    );
    let mut pixmap = resvg::tiny_skia::Pixmap::new(w, h)
        .ok_or_else(|| fail(format!("a {w}x{h} pixel image cannot be allocated")))?;
    pixmap.fill(resvg::tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    let png = pixmap
        .encode_png()
        .map_err(|e| fail(format!("encoding the PNG: {e}")))?;
    // A PDF point is 1/72 inch: at UNITS_PER_INCH "dpi" the page is the figure's size.
    let pdf = svg2pdf::to_pdf(
        &tree,
        svg2pdf::ConversionOptions::default(),
        svg2pdf::PageOptions {
            dpi: UNITS_PER_INCH as f32,
        },
    )
    .map_err(|e| fail(format!("converting to PDF: {e}")))?;

    let names = [
        format!("{name}.png"),
        format!("{name}.svg"),
        format!("{name}.pdf"),
    ];
    sink.write_bytes(&names[0], &png)?;
    sink.write_bytes(&names[1], svg.as_bytes())?;
    sink.write_bytes(&names[2], &pdf)?;
    Ok(names.to_vec())
}

/// The figures, in the order they are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plot {
    PriceConvergence,
    PowerConvergence,
    CostConvergence,
    P2pVsCentral,
    AttackedHours,
}

impl Plot {
    const ALL: [Plot; 4] = [
        Plot::PriceConvergence,
        Plot::PowerConvergence,
        Plot::CostConvergence,
        Plot::P2pVsCentral,
    ];

    fn name(self) -> &'static str {
        match self {
            Plot::PriceConvergence => "price_convergence",
            Plot::PowerConvergence => "power_convergence",
            Plot::CostConvergence => "cost_convergence",
            Plot::P2pVsCentral => "p2p_vs_central",
            Plot::AttackedHours => ATTACK_PLOT_NAME,
        }
    }

    fn needs_trajectories(self) -> bool {
        self != Plot::P2pVsCentral
    }
}

/// Name of the figure of the attacked hours, written besides [`PLOT_NAMES`] when the
/// day has attacked hours with trajectories.
pub const ATTACK_PLOT_NAME: &str = "attacked_hours";

/// Most attacked hours the attack figure shows (the first ones of the day).
const MAX_ATTACK_PANELS: usize = 4;
/// Iterations the attack figure shows: an oscillation of period 2 drawn over thousands
/// of iterations is a solid band; its first iterations show it.
const ATTACK_PLOT_ITERATIONS: u32 = 80;

/// Names (without extension) of every figure [`write_plots`] writes for any day (each as
/// `.png`, `.svg` and `.pdf`).
pub const PLOT_NAMES: [&str; 4] = [
    "price_convergence",
    "power_convergence",
    "cost_convergence",
    "p2p_vs_central",
];

/// Draws every figure as `NAME.png`, `NAME.svg` and `NAME.pdf` into `sink` and returns
/// the file names written. The convergence figures are skipped (not an error) when no
/// trajectories were kept.
pub fn write_plots(
    sink: &mut dyn Sink,
    day: &DayResult,
    opts: &FigureOptions,
) -> Result<Vec<String>> {
    let has_trajectories = day
        .hours
        .iter()
        .any(|h| !h.p2p.outcome.trajectory.is_empty());
    let mut written = Vec::new();
    let mut plots: Vec<Plot> = Plot::ALL
        .into_iter()
        .filter(|p| has_trajectories || !p.needs_trajectories())
        .collect();
    if attacked_with_trajectories(day).next().is_some() {
        plots.push(Plot::AttackedHours);
    }
    for plot in plots {
        written.extend(write_figure(
            sink,
            plot.name(),
            opts.canvas(),
            opts,
            |root| {
                draw(plot, root, day)?;
                root.present().map_err(draw_err(plot))
            },
        )?);
    }
    Ok(written)
}

/// Wraps a plotters error as an [`Error::Output`] for `plot`.
fn draw_err<E: std::fmt::Display>(plot: Plot) -> impl Fn(E) -> Error {
    move |e| Error::Output {
        context: format!("plot {}", plot.name()),
        message: e.to_string(),
    }
}

/// The hour whose negotiation took the most iterations (the first of equals), among the
/// hours that kept a trajectory: the one the convergence figures highlight.
fn slowest_hour(day: &DayResult) -> Option<(usize, u32)> {
    day.hours
        .iter()
        .filter(|h| !h.p2p.outcome.trajectory.is_empty())
        .map(|h| (h.hour, h.p2p.outcome.iterations))
        .fold(None, |best: Option<(usize, u32)>, (hour, it)| match best {
            Some((_, b)) if b >= it => best,
            _ => Some((hour, it)),
        })
}

/// Draws one figure on any backend.
fn draw<DB: DrawingBackend>(
    plot: Plot,
    root: &DrawingArea<DB, Shift>,
    day: &DayResult,
) -> Result<()> {
    root.fill(&WHITE).map_err(draw_err(plot))?;
    match plot {
        Plot::PriceConvergence => {
            let series = hour_series(day, |points| {
                points.iter().map(|p| p.state.price).sum::<f64>() / points.len() as f64
            });
            let (main, bar) = split_colour_bar(root);
            draw_hourly_lines(
                plot,
                &main,
                &series,
                slowest_hour(day),
                "Price convergence per hour",
                "market price ($/MWh)",
                &FULL,
            )?;
            draw_hour_colour_bar(plot, &bar)
        }
        Plot::PowerConvergence => draw_power(plot, root, day),
        Plot::CostConvergence => {
            let points: Vec<(f64, f64)> = cost_by_iteration(day)
                .into_iter()
                .map(|(k, c)| (f64::from(k), c))
                .collect();
            let references = [
                (
                    "hourly centralized optimum",
                    day.summary.central_hourly_total_cost,
                ),
                ("24-h co-optimization", day.summary.central_24h_total_cost),
            ];
            draw_cost(plot, root, &points, &references)
        }
        Plot::P2pVsCentral => draw_p2p_vs_central(plot, root, &day.hours),
        Plot::AttackedHours => draw_attacked_hours(plot, root, day),
    }
}

/// Splits off the right-hand strip of the hour colour bar.
fn split_colour_bar<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
) -> (DrawingArea<DB, Shift>, DrawingArea<DB, Shift>) {
    let width = root.dim_in_pixel().0;
    root.split_horizontally(width.saturating_sub(COLOUR_BAR_WIDTH))
}

/// Width of the hour colour bar's strip, layout units.
const COLOUR_BAR_WIDTH: u32 = 90;

/// Small multiples of the exchange: the smart grid's export and the microgrid's import
/// (minus its export) on one y scale, so the gap between them is read across; below, that
/// gap |export - import| on a log scale, which the consensus drives to zero.
fn draw_power<DB: DrawingBackend>(
    plot: Plot,
    root: &DrawingArea<DB, Shift>,
    day: &DayResult,
) -> Result<()> {
    let err = draw_err(plot);
    let of_agent = |agent: u32, points: &[crate::rci::TrajectoryPoint]| {
        points
            .iter()
            .find(|p| p.agent == agent)
            .map_or(f64::NAN, |p| p.state.power)
    };
    // Agent 0 is the smart grid, agent 1 the microgrid (market::AGENT_NAMES).
    let export = hour_series(day, |pts| of_agent(0, pts));
    let import = hour_series(day, |pts| -of_agent(1, pts));
    let gap = hour_series(day, |pts| (of_agent(0, pts) + of_agent(1, pts)).abs());
    let slowest = slowest_hour(day);
    let (main, bar) = split_colour_bar(root);
    let main = main
        .titled("Exchange convergence per hour", ("sans-serif", 24))
        .map_err(&err)?;
    let (top, bottom) = main.split_vertically(main.dim_in_pixel().1 * 55 / 100);
    let (left, right) = top.split_horizontally(top.dim_in_pixel().0 / 2);
    let y = padded_range(
        export
            .iter()
            .chain(&import)
            .flat_map(|(_, s)| s.iter().map(|p| p.1)),
    );
    let last = series_end(&export);
    for (area, series, caption, y_desc) in [
        (
            &left,
            &export,
            "smart grid: export to the microgrid",
            "power (MW)",
        ),
        (
            &right,
            &import,
            "microgrid: import from the smart grid",
            "power (MW)",
        ),
    ] {
        let mut chart = iteration_chart(plot, area, caption, y_desc, last, y.clone(), &PANEL)?;
        // The slowest hour's legend is drawn once, in the mismatch panel, where it hides
        // no line that matters.
        draw_hour_lines_on(plot, &mut chart, series, slowest, false)?;
    }
    // The gap on a log axis: its positive values, down to the smallest one drawn.
    let positive = |s: &Vec<(f64, f64)>| -> Vec<(f64, f64)> {
        s.iter().copied().filter(|p| p.1 > 0.0).collect()
    };
    let gap: Vec<(usize, Vec<(f64, f64)>)> = gap.iter().map(|(h, s)| (*h, positive(s))).collect();
    let (lo, hi) = gap
        .iter()
        .flat_map(|(_, s)| s.iter().map(|p| p.1))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo * 0.5, hi * 2.0)
    } else {
        (1e-9, 1.0)
    };
    let mut chart = ChartBuilder::on(&bottom)
        .caption(
            "mismatch |export - import|: what the consensus removes",
            ("sans-serif", PANEL.caption),
        )
        .margin(PANEL.margin)
        .x_label_area_size(PANEL.x_area + 10)
        .y_label_area_size(PANEL.y_area)
        .build_cartesian_2d(iteration_range(last), (lo..hi).log_scale())
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc("iteration")
        .y_desc("mismatch (MW)")
        .x_labels(iteration_labels(last).min(FULL.most_x_labels))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .light_line_style(WHITE)
        .bold_line_style(BLACK.mix(0.12))
        .label_style(("sans-serif", PANEL.labels))
        .axis_desc_style(("sans-serif", PANEL.axis_desc))
        .draw()
        .map_err(&err)?;
    draw_hour_lines_on(plot, &mut chart, &gap, slowest, true)?;
    draw_hour_colour_bar(plot, &bar)
}

/// Stroke width of the highlighted (slowest) hour.
const HIGHLIGHT_WIDTH: u32 = 3;

/// The legend text of the highlighted hour.
fn highlight_label(hour: usize, iterations: u32) -> String {
    format!("hour {hour}: slowest, {iterations} iterations")
}

/// The last iteration of any series.
fn series_end(series: &[(usize, Vec<(f64, f64)>)]) -> f64 {
    series
        .iter()
        .flat_map(|(_, s)| s.last().map(|p| p.0))
        .fold(0.0, f64::max)
}

/// The attacked hours that kept a trajectory, in hour order.
fn attacked_with_trajectories(day: &DayResult) -> impl Iterator<Item = &HourResult> {
    day.hours
        .iter()
        .filter(|h| h.attack_free.is_some() && !h.p2p.outcome.trajectory.is_empty())
}

/// Per attacked hour (at most [`MAX_ATTACK_PANELS`]), a column of two charts: both
/// agents' local prices, and both agents' exports, vs iteration.
fn draw_attacked_hours<DB: DrawingBackend>(
    plot: Plot,
    root: &DrawingArea<DB, Shift>,
    day: &DayResult,
) -> Result<()> {
    let err = draw_err(plot);
    let hours: Vec<&HourResult> = attacked_with_trajectories(day)
        .take(MAX_ATTACK_PANELS)
        .collect();
    let titled = root
        .titled(
            "Attacked hours: both agents' local prices and exports vs iteration",
            ("sans-serif", 22),
        )
        .map_err(&err)?;
    let cells = titled.split_evenly((2, hours.len()));
    let colours = [OKABE_ITO[0], OKABE_ITO[1]];
    for (col, h) in hours.iter().enumerate() {
        let outcome = &h.p2p.outcome;
        let status = if outcome.converged {
            format!("converged in {} iterations", outcome.iterations)
        } else {
            format!("not converged after {} iterations", outcome.iterations)
        };
        let shown = outcome.iterations.min(ATTACK_PLOT_ITERATIONS);
        let window = if shown < outcome.iterations {
            format!(" (first {shown} shown)")
        } else {
            String::new()
        };
        for (row, (quantity, y_desc)) in
            [("price", "local price ($/MWh)"), ("power", "export (MW)")]
                .into_iter()
                .enumerate()
        {
            let series: Vec<(usize, Vec<(f64, f64)>)> = (0..h.curves.len())
                .map(|agent| {
                    let points: Vec<(f64, f64)> = outcome
                        .trajectory
                        .iter()
                        .filter(|p| p.agent as usize == agent && p.iteration <= shown)
                        .map(|p| {
                            let v = if quantity == "price" {
                                p.state.price
                            } else {
                                p.state.power
                            };
                            (f64::from(p.iteration), v)
                        })
                        .filter(|(_, v)| v.is_finite())
                        .collect();
                    (agent, decimate(&points, MAX_POINTS))
                })
                .collect();
            let last = f64::from(shown);
            let y = padded_range(series.iter().flat_map(|(_, s)| s.iter().map(|p| p.1)));
            let caption = if row == 0 {
                format!("hour {}: {status}{window}", h.hour)
            } else {
                String::new()
            };
            let area = &cells[row * hours.len() + col];
            let mut chart = iteration_chart(plot, area, &caption, y_desc, last, y, &PANEL)?;
            for (agent, points) in &series {
                let colour = colours[agent % colours.len()].stroke_width(1);
                let name = crate::market::AGENT_NAMES
                    .get(*agent)
                    .map_or("agent".to_string(), |n| n.replace('_', " "));
                // The microgrid dashed: the agents stay apart in greyscale.
                if agent % 2 == 1 {
                    chart
                        .draw_series(DashedLineSeries::new(points.iter().copied(), 6, 3, colour))
                        .map_err(&err)?
                        .label(name)
                        .legend(move |(x, y)| {
                            DashedPathElement::new(
                                vec![(x, y), (x + 24, y)],
                                6,
                                3,
                                colour.stroke_width(2),
                            )
                        });
                } else {
                    chart
                        .draw_series(LineSeries::new(points.iter().copied(), colour))
                        .map_err(&err)?
                        .label(name)
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(2))
                        });
                }
            }
            chart
                .configure_series_labels()
                // Opaque: an oscillation fills the whole panel, so no corner is free.
                .background_style(WHITE)
                .border_style(BLACK)
                .label_font(("sans-serif", 13))
                .draw()
                .map_err(&err)?;
        }
    }
    Ok(())
}

/// One (iteration, value) series per hour, from the kept trajectory; `value` maps the
/// agents' states of one iteration to a number.
fn hour_series(
    day: &DayResult,
    value: impl Fn(&[crate::rci::TrajectoryPoint]) -> f64,
) -> Vec<(usize, Vec<(f64, f64)>)> {
    day.hours
        .iter()
        .filter(|h| !h.p2p.outcome.trajectory.is_empty())
        .map(|h| {
            let points = iteration_chunks(&h.p2p.outcome.trajectory)
                .map(|(k, pts)| (f64::from(k), value(pts)))
                .filter(|(_, v)| v.is_finite())
                .collect::<Vec<_>>();
            (h.hour, decimate(&points, MAX_POINTS))
        })
        .collect()
}

/// Keeps at most about `max` points: the first and last, and the minimum and maximum of
/// each bucket in x order, so spikes and the envelope survive.
fn decimate(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max.max(4) {
        return points.to_vec();
    }
    let buckets = (max / 2).max(1);
    let size = points.len().div_ceil(buckets);
    let mut out = Vec::with_capacity(2 * buckets + 2);
    for chunk in points.chunks(size) {
        let lo = chunk
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.1.total_cmp(&b.1.1))
            .map(|(i, _)| i);
        let hi = chunk
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.1.total_cmp(&b.1.1))
            .map(|(i, _)| i);
        if let (Some(lo), Some(hi)) = (lo, hi) {
            let (a, b) = (lo.min(hi), lo.max(hi));
            out.push(chunk[a]);
            if b != a {
                out.push(chunk[b]);
            }
        }
    }
    // The first and last points anchor the line's ends exactly.
    if out.first() != points.first() {
        out.insert(0, points[0]);
    }
    if out.last() != points.last() {
        out.push(points[points.len() - 1]);
    }
    out
}

/// A range covering the finite values, padded by 5 % (a unit wide when they are equal or
/// absent), so a flat line is still drawn inside the frame.
fn padded_range(values: impl Iterator<Item = f64>) -> Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return -1.0..1.0;
    }
    let pad = if hi > lo {
        0.05 * (hi - lo)
    } else {
        0.5 * lo.abs().max(1.0)
    };
    (lo - pad)..(hi + pad)
}

/// The x range of iteration series: from 0 to the last iteration (at least 1).
fn iteration_range(last: f64) -> Range<f64> {
    0.0..last.max(1.0)
}

/// How many x labels an iteration axis ending at `last` gets: at most one per
/// iteration, so the chosen label step is at least 1 and integer labels are exact.
fn iteration_labels(last: f64) -> usize {
    (last.max(1.0) as usize + 1).min(10)
}

/// Stops of the viridis colour map (matplotlib's default), dark blue to yellow.
const VIRIDIS: [(u8, u8, u8); 8] = [
    (68, 1, 84),
    (70, 50, 127),
    (54, 92, 141),
    (39, 127, 143),
    (31, 162, 136),
    (74, 194, 110),
    (160, 219, 57),
    (254, 232, 37),
];

/// The colour of an hour on a viridis gradient over the day (plotters' own colour maps
/// sit behind a feature this crate does not enable). The last tenth (a pale yellow) is
/// cut off so every line stays visible on white.
fn hour_color(hour: usize) -> RGBColor {
    viridis(0.9 * hour.min(23) as f64 / 23.0)
}

/// The viridis colour at `t` in [0, 1] (clamped), interpolated between its anchors.
fn viridis(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0) * (VIRIDIS.len() - 1) as f64;
    let k = (t.floor() as usize).min(VIRIDIS.len() - 2);
    let f = t - k as f64;
    let (a, b) = (VIRIDIS[k], VIRIDIS[k + 1]);
    let mix = |x: u8, y: u8| (f64::from(x) + f * (f64::from(y) - f64::from(x))).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Most changes of direction a line drawn 2 px wide may have.
const MAX_WIDE_REVERSALS: usize = 20;

/// How often a series changes direction (up to down or down to up).
fn reversals(points: &[(f64, f64)]) -> usize {
    let mut last = 0.0f64;
    let mut count = 0;
    for w in points.windows(2) {
        let d = w[1].1 - w[0].1;
        if d != 0.0 {
            if last != 0.0 && d.signum() != last.signum() {
                count += 1;
            }
            last = d;
        }
    }
    count
}

/// Sizes of an iteration chart's caption, margins, label areas and fonts, pixels.
struct ChartStyle {
    caption: u32,
    margin: u32,
    x_area: u32,
    y_area: u32,
    labels: u32,
    axis_desc: u32,
    most_x_labels: usize,
}

/// A figure-wide chart.
const FULL: ChartStyle = ChartStyle {
    caption: 26,
    margin: 15,
    x_area: 50,
    y_area: 90,
    labels: 16,
    axis_desc: 18,
    most_x_labels: 10,
};

/// One panel of a grid of charts.
const PANEL: ChartStyle = ChartStyle {
    caption: 18,
    margin: 10,
    x_area: 35,
    y_area: 70,
    labels: 13,
    axis_desc: 14,
    most_x_labels: 6,
};

/// A chart of iterations `0..last` against `y`, its mesh drawn.
fn iteration_chart<'a, DB: DrawingBackend>(
    plot: Plot,
    area: &'a DrawingArea<DB, Shift>,
    caption: &str,
    y_desc: &str,
    last: f64,
    y: Range<f64>,
    style: &ChartStyle,
) -> Result<ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>> {
    let err = draw_err(plot);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", style.caption))
        .margin(style.margin)
        .x_label_area_size(style.x_area)
        .y_label_area_size(style.y_area)
        .build_cartesian_2d(iteration_range(last), y)
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc("iteration")
        .y_desc(y_desc)
        .x_labels(iteration_labels(last).min(style.most_x_labels))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| tick_label(*y))
        .light_line_style(WHITE)
        .bold_line_style(BLACK.mix(0.12))
        .label_style(("sans-serif", style.labels))
        .axis_desc_style(("sans-serif", style.axis_desc))
        .draw()
        .map_err(&err)?;
    Ok(chart)
}

/// Lines of one quantity vs iteration, coloured by hour; the slowest hour drawn on top in
/// black and named in a legend.
fn draw_hourly_lines<DB: DrawingBackend>(
    plot: Plot,
    area: &DrawingArea<DB, Shift>,
    series: &[(usize, Vec<(f64, f64)>)],
    slowest: Option<(usize, u32)>,
    title: &str,
    y_desc: &str,
    style: &ChartStyle,
) -> Result<()> {
    let last = series_end(series);
    let y = padded_range(series.iter().flat_map(|(_, s)| s.iter().map(|p| p.1)));
    let mut chart = iteration_chart(plot, area, title, y_desc, last, y, style)?;
    draw_hour_lines_on(plot, &mut chart, series, slowest, true)
}

/// Draws the hours' lines on `chart`: 24 viridis lines cannot be told apart one by one,
/// so they show the family, and the slowest hour (the one a reader looks for) is drawn
/// on top in black with a legend.
fn draw_hour_lines_on<'a, DB: DrawingBackend + 'a, CT: CoordTranslate<From = (f64, f64)>>(
    plot: Plot,
    chart: &mut ChartContext<'a, DB, CT>,
    series: &[(usize, Vec<(f64, f64)>)],
    slowest: Option<(usize, u32)>,
    legend: bool,
) -> Result<()> {
    let err = draw_err(plot);
    let highlighted = slowest.map(|s| s.0);
    for (hour, points) in series.iter().filter(|(h, _)| Some(*h) != highlighted) {
        // A zigzag drawn 2 px wide grows miter spikes far outside the chart at every
        // sharp turn (an oscillating attacked hour): such a series is drawn 1 px wide.
        let width = if reversals(points) > MAX_WIDE_REVERSALS {
            1
        } else {
            2
        };
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                hour_color(*hour).stroke_width(width),
            ))
            .map_err(&err)?;
    }
    if let Some((hour, iterations)) = slowest
        && let Some((_, points)) = series.iter().find(|(h, _)| *h == hour)
    {
        let width = if reversals(points) > MAX_WIDE_REVERSALS {
            1
        } else {
            HIGHLIGHT_WIDTH
        };
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                BLACK.stroke_width(width),
            ))
            .map_err(&err)?
            .label(highlight_label(hour, iterations))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(width))
            });
        if legend {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .draw()
                .map_err(&err)?;
        }
    }
    Ok(())
}

/// A vertical colour bar labelled "hour 0" to "hour 23".
fn draw_hour_colour_bar<DB: DrawingBackend>(
    plot: Plot,
    area: &DrawingArea<DB, Shift>,
) -> Result<()> {
    let err = draw_err(plot);
    let height = area.dim_in_pixel().1 as i32;
    let (x0, y0) = (10, 70);
    let cell = ((height - y0 - 40) / 24).clamp(6, 22);
    let text = ("sans-serif", 15).into_font();
    area.draw(&Text::new("hour", (x0, y0 - 25), text.clone()))
        .map_err(&err)?;
    for hour in 0..24 {
        let top = y0 + hour * cell;
        area.draw(&Rectangle::new(
            [(x0, top), (x0 + 24, top + cell)],
            hour_color(hour as usize).filled(),
        ))
        .map_err(&err)?;
        if hour % 6 == 0 || hour == 23 {
            area.draw(&Text::new(
                hour.to_string(),
                (x0 + 32, top + cell / 2 - 8),
                text.clone(),
            ))
            .map_err(&err)?;
        }
    }
    Ok(())
}

/// `v` with commas between thousands and `decimals` decimals, e.g. 1,227.5.
fn thousands(v: f64, decimals: usize) -> String {
    let text = format!("{:.decimals$}", v.abs());
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if v < 0.0 && text.chars().any(|c| c.is_ascii_digit() && c != '0') {
        "-"
    } else {
        ""
    };
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

/// Decimals that tell ticks `step` apart.
fn decimals_for(step: f64) -> usize {
    if step.is_finite() && step > 0.0 {
        (-step.log10().floor()).clamp(0.0, 4.0) as usize
    } else {
        0
    }
}

/// Total cost of the day vs iteration, in k$, with the centralized optima as labelled
/// dashed lines: the consensus should end on the hourly optimum (same information).
fn draw_cost<DB: DrawingBackend>(
    plot: Plot,
    root: &DrawingArea<DB, Shift>,
    points: &[(f64, f64)],
    references: &[(&str, f64)],
) -> Result<()> {
    let err = draw_err(plot);
    let points: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| p.1.is_finite())
        .map(|&(k, c)| (k, c / 1e3))
        .collect();
    let points = decimate(&points, MAX_POINTS);
    let references: Vec<(&str, f64)> = references
        .iter()
        .filter(|r| r.1.is_finite())
        .map(|&(l, c)| (l, c / 1e3))
        .collect();
    let last = points.last().map_or(0.0, |p| p.0);
    let y = padded_range(
        points
            .iter()
            .map(|p| p.1)
            .chain(references.iter().map(|r| r.1)),
    );
    // Headroom for the legend above the curve and the lines.
    let y = y.start..y.end + 0.25 * (y.end - y.start);
    let decimals = decimals_for((y.end - y.start) / 10.0);
    let mut chart = ChartBuilder::on(root)
        .caption("Total cost of the day vs iteration", ("sans-serif", 26))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(110)
        .build_cartesian_2d(iteration_range(last), y)
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc("iteration")
        .y_desc("total cost of the day (k$)")
        .y_label_formatter(&|y| thousands(*y, decimals))
        .x_labels(iteration_labels(last))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .light_line_style(WHITE)
        .bold_line_style(BLACK.mix(0.12))
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()
        .map_err(&err)?;
    let p2p = OKABE_ITO[0].stroke_width(2);
    chart
        .draw_series(LineSeries::new(points, p2p))
        .map_err(&err)?
        .label("P2P (RCI), sum of the agents' costs")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], p2p));
    // Vermillion long dashes, then bluish green short dashes: distinct in greyscale too.
    let styles = [
        (OKABE_ITO[1].stroke_width(2), 12, 6),
        (OKABE_ITO[2].stroke_width(2), 4, 4),
    ];
    let x_end = iteration_range(last).end;
    for (&(label, cost), &(style, dash, gap)) in references.iter().zip(&styles) {
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, cost), (x_end, cost)],
                dash,
                gap,
                style,
            ))
            .map_err(&err)?
            .label(format!("{label}: {} k$", thousands(cost, 1)))
            .legend(move |(x, y)| {
                DashedPathElement::new(vec![(x, y), (x + 24, y)], dash.min(8), gap.min(4), style)
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(&err)?;
    Ok(())
}

/// One quantity per hour: P2P (markers), hourly reference (line), 24-h co-optimization
/// (dashed line).
struct HourlyComparison<'a> {
    title: &'a str,
    y_desc: &'a str,
    p2p: Vec<(f64, f64)>,
    hourly: Vec<(f64, f64)>,
    horizon: Vec<(f64, f64)>,
}

/// Exchange (top) and price (bottom) per hour: P2P against both references.
fn draw_p2p_vs_central<DB: DrawingBackend>(
    plot: Plot,
    root: &DrawingArea<DB, Shift>,
    hours: &[HourResult],
) -> Result<()> {
    let series = |f: &dyn Fn(&HourResult) -> f64| -> Vec<(f64, f64)> {
        hours
            .iter()
            .map(|h| (h.hour as f64, f(h)))
            .filter(|p| p.1.is_finite())
            .collect()
    };
    let exchange = HourlyComparison {
        title: "Exchange smart grid -> microgrid",
        y_desc: "exchange (MW)",
        p2p: series(&|h| h.p2p.exchange_mw),
        hourly: series(&|h| h.hourly_reference.exchange_mw),
        horizon: series(&|h| h.horizon_reference.exchange_mw),
    };
    let price = HourlyComparison {
        title: "Price at the PCC",
        y_desc: "price ($/MWh)",
        p2p: series(&|h| h.p2p.price),
        hourly: series(&|h| h.hourly_reference.price),
        horizon: series(&|h| h.horizon_reference.price),
    };
    let (top, bottom) = root.split_vertically(root.dim_in_pixel().1 / 2);
    draw_comparison(plot, &top, &exchange)?;
    draw_comparison(plot, &bottom, &price)
}

/// One panel of [`draw_p2p_vs_central`].
fn draw_comparison<DB: DrawingBackend>(
    plot: Plot,
    area: &DrawingArea<DB, Shift>,
    c: &HourlyComparison<'_>,
) -> Result<()> {
    let err = draw_err(plot);
    let y = padded_range(c.p2p.iter().chain(&c.hourly).chain(&c.horizon).map(|p| p.1));
    // Headroom above the data for the legend: the series span all 24 hours, so any
    // corner of the plot would otherwise hide some of them.
    let y = y.start..y.end + 0.4 * (y.end - y.start);
    let mut chart = ChartBuilder::on(area)
        .caption(c.title, ("sans-serif", 22))
        .margin(10)
        .x_label_area_size(45)
        .y_label_area_size(90)
        .build_cartesian_2d(-0.5f64..23.5f64, y)
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc("hour")
        .y_desc(c.y_desc)
        .x_labels(24)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| tick_label(*y))
        .light_line_style(WHITE)
        .bold_line_style(BLACK.mix(0.12))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(&err)?;
    // Okabe-Ito colours, and a solid line with squares, a dashed line with triangles
    // and hollow circles, so the three stay apart in greyscale and for colour-blind
    // readers.
    let hourly = OKABE_ITO[0].stroke_width(2);
    let horizon = OKABE_ITO[2].stroke_width(2);
    let p2p = OKABE_ITO[1].stroke_width(2);
    chart
        .draw_series(LineSeries::new(c.hourly.iter().copied(), hourly))
        .map_err(&err)?;
    chart
        .draw_series(
            c.hourly.iter().map(|&p| {
                EmptyElement::at(p) + Rectangle::new([(-4, -4), (4, 4)], hourly.filled())
            }),
        )
        .map_err(&err)?
        .label("hourly reference")
        .legend(move |(x, y)| {
            EmptyElement::at((x, y))
                + PathElement::new(vec![(0, 0), (24, 0)], hourly)
                + Rectangle::new([(8, -4), (16, 4)], hourly.filled())
        });
    chart
        .draw_series(DashedLineSeries::new(
            c.horizon.iter().copied(),
            8,
            5,
            horizon,
        ))
        .map_err(&err)?;
    chart
        .draw_series(
            c.horizon
                .iter()
                .map(|&p| TriangleMarker::new(p, 6, horizon.filled())),
        )
        .map_err(&err)?
        .label("24-h co-optimization")
        .legend(move |(x, y)| {
            EmptyElement::at((x, y))
                + DashedPathElement::new(vec![(0, 0), (24, 0)], 6, 4, horizon)
                + TriangleMarker::new((12, 0), 6, horizon.filled())
        });
    chart
        .draw_series(c.p2p.iter().map(|&p| Circle::new(p, 7, p2p)))
        .map_err(&err)?
        .label("P2P (RCI)")
        .legend(move |(x, y)| Circle::new((x + 12, y), 7, p2p));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(&err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::parquet::MemorySink;
    use crate::output::test_support::day;

    /// Headroom for a linear panel's legend: the range only grows upward, more for more
    /// legend lines, and the data's top stays below the legend box (19 px a line plus 24
    /// px, in a plot about 110 px shorter than its area).
    #[test]
    fn legend_headroom_keeps_the_data_below_the_legend() {
        let mut last_top = 1.0;
        for entries in [1, 3, 6] {
            let y = with_legend_headroom(0.0..1.0, entries, 480);
            assert_eq!(y.start, 0.0);
            assert!(y.end > last_top, "{entries}: {y:?}");
            last_top = y.end;
            // Pixels from the plot's top down to the data's top.
            let plot_px = 480.0 - 110.0;
            let free_px = (y.end - 1.0) / (y.end - y.start) * plot_px;
            assert!(
                free_px >= 19.0 * entries as f64 + 24.0 - 1e-9,
                "{entries}: {free_px}"
            );
        }
        // A legend taller than the panel takes at most 60 % of it.
        let y = with_legend_headroom(0.0..1.0, 40, 480);
        assert!((y.end - 2.5).abs() < 1e-12, "{y:?}");
    }

    const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

    #[test]
    fn reversals_counts_changes_of_direction() {
        assert_eq!(reversals(&[]), 0);
        assert_eq!(
            reversals(&[(0.0, 1.0), (1.0, 2.0), (2.0, 2.0), (3.0, 3.0)]),
            0
        );
        let zigzag: Vec<(f64, f64)> = (0..10).map(|k| (k as f64, (k % 2) as f64)).collect();
        assert_eq!(reversals(&zigzag), 8);
    }

    /// The PDF is a PDF and embeds its font (a TrueType font file), so it renders the
    /// same without any font installed.
    fn assert_pdf_with_embedded_font(name: &str, bytes: &[u8]) {
        assert!(bytes.starts_with(b"%PDF-"), "{name} is not a PDF");
        let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"/FontFile2"), "{name} embeds no TrueType font");
    }

    /// Width and height of a PNG, from its IHDR chunk.
    fn png_size(bytes: &[u8]) -> (u32, u32) {
        let be = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        (be(16), be(20))
    }

    #[test]
    fn all_plots_as_png_svg_and_pdf() {
        let mut sink = MemorySink::new();
        let opts = FigureOptions::default();
        let written = write_plots(&mut sink, &day(true), &opts).unwrap();
        let expected: Vec<String> = PLOT_NAMES
            .iter()
            .flat_map(|n| [format!("{n}.png"), format!("{n}.svg"), format!("{n}.pdf")])
            .collect();
        assert_eq!(written, expected);
        assert_eq!(sink.files.len(), 12);
        for (name, bytes) in &sink.files {
            if name.ends_with(".png") {
                assert!(bytes.starts_with(PNG_MAGIC), "{name} is not a PNG");
                assert_eq!(png_size(bytes), (1200, 700), "{name}: 12x7 in at 100 dpi");
            } else if name.ends_with(".pdf") {
                assert_pdf_with_embedded_font(name, bytes);
            } else {
                let text = std::str::from_utf8(bytes).unwrap();
                assert!(text.contains("<svg"), "{name} is not an SVG");
                // Axis labels with units are drawn as text.
                assert!(
                    text.contains("iteration") || text.contains("hour"),
                    "{name}"
                );
            }
        }
        let cmp = std::str::from_utf8(&sink.files["p2p_vs_central.svg"]).unwrap();
        for label in [
            "exchange (MW)",
            "price ($/MWh)",
            "24-h co-optimization",
            "P2P (RCI)",
        ] {
            assert!(cmp.contains(label), "missing {label}");
        }
        // The cost plot shows the centralized optima as labelled lines, in k$.
        let cost = std::str::from_utf8(&sink.files["cost_convergence.svg"]).unwrap();
        for label in ["hourly centralized optimum", "24-h co-optimization", "(k$)"] {
            assert!(cost.contains(label), "cost plot lacks {label}");
        }
        // The power plot draws both agents and the gap between them.
        let power = std::str::from_utf8(&sink.files["power_convergence.svg"]).unwrap();
        for label in [
            "smart grid: export",
            "microgrid: import",
            "mismatch |export - import|",
            "slowest",
        ] {
            assert!(power.contains(label), "power plot lacks {label}");
        }
        let price = std::str::from_utf8(&sink.files["price_convergence.svg"]).unwrap();
        assert!(price.contains("slowest"), "the slowest hour is highlighted");
        // No font is looked up: the SVG names the embedded one.
        assert!(price.contains("DejaVu Sans"));
    }

    #[test]
    fn figure_size_and_dpi_set_the_png_pixels() {
        let opts = FigureOptions::new((6.0, 4.0), 200, FigureFont::embedded()).unwrap();
        let mut sink = MemorySink::new();
        write_plots(&mut sink, &day(false), &opts).unwrap();
        assert_eq!(png_size(&sink.files["p2p_vs_central.png"]), (1200, 800));
        let svg = std::str::from_utf8(&sink.files["p2p_vs_central.svg"]).unwrap();
        assert!(svg.contains("width=\"600\"") && svg.contains("height=\"400\""));
    }

    #[test]
    fn figure_options_are_validated() {
        assert_eq!(FigureOptions::parse_size("f", "7x4.5").unwrap(), (7.0, 4.5));
        assert_eq!(FigureOptions::parse_size("f", "12X7").unwrap(), (12.0, 7.0));
        for bad in [
            "", "7", "7x", "x4", "axb", "7x4x3", "3x4", "7x2", "100x7", "NaNx4", "7x-4",
        ] {
            match FigureOptions::parse_size("--figure-size", bad) {
                Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "--figure-size"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        let font = FigureFont::embedded;
        assert!(FigureOptions::new((12.0, 7.0), 300, font()).is_ok());
        for dpi in [0, 49, 1201] {
            match FigureOptions::new((12.0, 7.0), dpi, font()) {
                Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "dpi"),
                other => panic!("{dpi}: {other:?}"),
            }
        }
        // Too many pixels in all.
        assert!(FigureOptions::new((39.0, 29.0), 1200, font()).is_err());
        assert_eq!(
            FigureFont::from_choice("--font", "dejavu sans").unwrap(),
            font()
        );
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.ttf");
        std::fs::write(&garbage, b"not a font").unwrap();
        let missing = dir.path().join("missing.ttf");
        for bad in [
            "Comic Sans".to_string(),
            missing.display().to_string(),
            garbage.display().to_string(),
        ] {
            match FigureFont::from_choice("--font", &bad) {
                Err(Error::InvalidInput { field, allowed, .. }) => {
                    assert_eq!(field, "--font");
                    assert!(allowed.contains("DejaVu Sans"), "{allowed}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        // A font file is used by its family name.
        let copy = dir.path().join("copy.ttf");
        std::fs::write(&copy, FigureFont::embedded().data).unwrap();
        let chosen = FigureFont::from_choice("--font", &copy.display().to_string()).unwrap();
        assert_eq!(chosen.family, EMBEDDED_FONT_FAMILY);
    }

    #[test]
    fn cost_ticks_have_thousands_separators() {
        assert_eq!(thousands(1_227_000.0 / 1e3, 0), "1,227");
        assert_eq!(thousands(1_227_456.7, 1), "1,227,456.7");
        assert_eq!(thousands(-1234.5, 1), "-1,234.5");
        assert_eq!(thousands(999.0, 0), "999");
        assert_eq!(thousands(-0.01, 1), "0.0");
        assert_eq!(decimals_for(2.0), 0);
        assert_eq!(decimals_for(0.25), 1);
        assert_eq!(decimals_for(f64::NAN), 0);
    }

    #[test]
    fn tick_labels_are_short_and_distinct() {
        assert_eq!(tick_label(0.30000000000000004), "0.3");
        assert_eq!(tick_label(-0.00001), "-1e-5");
        assert_eq!(tick_label(1.225e6), "1.225e6");
        assert_eq!(tick_label(1.25e6), "1.25e6");
        assert_eq!(tick_label(45000.0), "45000");
        assert_eq!(tick_label(-0.00004), "-4e-5");
        assert_eq!(tick_label(0.0), "0");
    }

    #[test]
    fn panels_draw_every_layer_and_log_ticks() {
        let panels = [
            Panel {
                title: "first panel".into(),
                x_label: "hour".into(),
                y_label: "MW".into(),
                log_log: false,
                layers: vec![
                    Layer::Band {
                        label: "a band".into(),
                        points: vec![(0.0, -1.0, 1.0), (1.0, -2.0, 2.0)],
                        colour: 0,
                    },
                    Layer::Line {
                        label: "a line".into(),
                        points: vec![(0.0, 0.0), (1.0, f64::NAN), (2.0, 1.0)],
                        colour: 1,
                        width: 2,
                    },
                    Layer::Marker {
                        label: "a marker".into(),
                        x: 0.5,
                        colour: 6,
                    },
                ],
            },
            Panel {
                title: "second panel".into(),
                x_label: "samples N".into(),
                y_label: "error".into(),
                log_log: true,
                layers: vec![Layer::Bars {
                    label: "some bars".into(),
                    bars: vec![(2.0, 3.0, 0.5), (3.0, 4.0, 1.0)],
                    colour: 2,
                }],
            },
        ];
        let mut sink = MemorySink::new();
        let written = write_panels(
            &mut sink,
            "f",
            "the title",
            &panels,
            2,
            &FigureOptions::default(),
        )
        .unwrap();
        assert_eq!(written, ["f.png", "f.svg", "f.pdf"]);
        assert_pdf_with_embedded_font("f.pdf", &sink.files["f.pdf"]);
        assert!(sink.files["f.png"].starts_with(PNG_MAGIC));
        let svg = std::str::from_utf8(&sink.files["f.svg"]).unwrap();
        for text in [
            "the title",
            "first panel",
            "second panel",
            "a band",
            "a line",
            "a marker",
            "some bars",
            "samples N",
            "1000", // 10^3 on the log axis
        ] {
            assert!(svg.contains(text), "missing {text}");
        }
        assert!(!svg.contains("0000000001"), "tick labels are rounded");
    }

    #[test]
    fn probability_plot_draws_every_labelled_line() {
        let lines = [
            ProbabilityLine {
                label: "falls".into(),
                points: (1..=10).map(|k| (f64::from(k), 0.9f64.powi(k))).collect(),
            },
            ProbabilityLine {
                // A zero cannot sit on the log axis: it is left out, not an error.
                label: "rises".into(),
                points: (0..=10)
                    .map(|k| (f64::from(k), f64::from(k) * 1e-3))
                    .collect(),
            },
        ];
        let mut sink = MemorySink::new();
        let written = write_probability_plot(
            &mut sink,
            "p",
            "title",
            "rounds",
            &lines,
            &FigureOptions::default(),
        )
        .unwrap();
        assert_eq!(written, ["p.png", "p.svg", "p.pdf"]);
        assert_pdf_with_embedded_font("p.pdf", &sink.files["p.pdf"]);
        assert!(sink.files["p.png"].starts_with(PNG_MAGIC));
        let svg = std::str::from_utf8(&sink.files["p.svg"]).unwrap();
        for text in ["falls", "rises", "rounds", "probability", "1e-3"] {
            assert!(svg.contains(text), "missing {text}");
        }
    }

    #[test]
    fn convergence_plots_skipped_without_trajectories() {
        let mut sink = MemorySink::new();
        let written = write_plots(&mut sink, &day(false), &FigureOptions::default()).unwrap();
        assert_eq!(
            written,
            [
                "p2p_vs_central.png",
                "p2p_vs_central.svg",
                "p2p_vs_central.pdf"
            ]
        );
    }

    #[test]
    fn long_trajectories_are_decimated() {
        let points: Vec<(f64, f64)> = (0..100_000)
            .map(|k| (k as f64, if k == 54_321 { 1e6 } else { (k % 7) as f64 }))
            .collect();
        let d = decimate(&points, MAX_POINTS);
        assert!(d.len() <= MAX_POINTS + 2, "{}", d.len());
        assert_eq!(d.first(), points.first());
        assert_eq!(d.last(), points.last());
        assert!(d.contains(&(54_321.0, 1e6)), "the spike survives");
        assert!(d.windows(2).all(|w| w[0].0 < w[1].0), "x order kept");
        let short = &points[..10];
        assert_eq!(decimate(short, MAX_POINTS), short);
    }

    #[test]
    fn ranges_are_never_empty() {
        assert_eq!(padded_range([].into_iter()), -1.0..1.0);
        assert_eq!(padded_range([f64::NAN].into_iter()), -1.0..1.0);
        let r = padded_range([5.0, 5.0].into_iter());
        assert!(r.start < 5.0 && r.end > 5.0);
        let r = padded_range([0.0, 10.0, f64::INFINITY].into_iter());
        assert_eq!(r, -0.5..10.5);
        assert_eq!(hour_color(0), RGBColor(68, 1, 84));
    }
}

/// One line of a probability figure: a legend label and (x, probability) points.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbabilityLine {
    /// Legend text.
    pub label: String,
    /// Points (x, probability in (0, 1]); non-positive probabilities are left out of the
    /// logarithmic axis.
    pub points: Vec<(f64, f64)>,
}

/// Colour-blind-safe colours (Okabe-Ito) for a few labelled lines.
const OKABE_ITO: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
    RGBColor(150, 150, 150),
];

/// Draws probabilities against `x_label` on a logarithmic axis (the paper's Fig. 17, and
/// the ledger's acceptance model beside it) as `name.png`, `name.svg` and `name.pdf` into `sink`;
/// returns the file names written.
pub fn write_probability_plot(
    sink: &mut dyn Sink,
    name: &str,
    title: &str,
    x_label: &str,
    lines: &[ProbabilityLine],
    opts: &FigureOptions,
) -> Result<Vec<String>> {
    write_figure(sink, name, opts.canvas(), opts, |root| {
        draw_probability(root, name, title, x_label, lines)
    })
}

/// Draws [`write_probability_plot`]'s figure on any backend.
fn draw_probability<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    name: &str,
    title: &str,
    x_label: &str,
    lines: &[ProbabilityLine],
) -> Result<()> {
    let fail = |e: &dyn std::fmt::Display| Error::Output {
        context: format!("plot {name}"),
        message: e.to_string(),
    };
    let positive = || {
        lines
            .iter()
            .flat_map(|l| l.points.iter())
            .filter(|p| p.1 > 0.0 && p.0.is_finite())
    };
    let x_max = positive().map(|p| p.0).fold(1.0, f64::max);
    let y_min = positive().map(|p| p.1).fold(1.0, f64::min);
    // Just below the lowest decade, so that its tick is drawn and labelled.
    let y_lo = 0.99 * 10f64.powf(y_min.log10().floor().max(-300.0));
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 28))
        .margin(20)
        .x_label_area_size(60)
        .y_label_area_size(90)
        .build_cartesian_2d(0.0..x_max, (y_lo..1.0).log_scale())
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_desc("probability")
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .label_style(("sans-serif", 18))
        .axis_desc_style(("sans-serif", 20))
        .draw()
        .map_err(|e| fail(&e))?;
    for (i, line) in lines.iter().enumerate() {
        let colour = OKABE_ITO[i % OKABE_ITO.len()];
        let points: Vec<(f64, f64)> = line
            .points
            .iter()
            .copied()
            .filter(|p| p.1 > 0.0 && p.0.is_finite())
            .collect();
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(3)))
            .map_err(|e| fail(&e))?
            .label(line.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(3))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 18))
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))
}

/// One layer of a [`Panel`]; `colour` indexes the Okabe-Ito palette.
#[derive(Debug, Clone, PartialEq)]
pub enum Layer {
    /// A line through (x, y) points; non-finite points are left out.
    Line {
        /// Legend text.
        label: String,
        /// Points (x, y).
        points: Vec<(f64, f64)>,
        /// Palette index.
        colour: usize,
        /// Stroke width, pixels.
        width: u32,
    },
    /// A translucent band (x, lower, upper).
    Band {
        /// Legend text.
        label: String,
        /// Points (x, lower, upper).
        points: Vec<(f64, f64, f64)>,
        /// Palette index.
        colour: usize,
    },
    /// Histogram bars (lower edge, upper edge, height).
    Bars {
        /// Legend text.
        label: String,
        /// Bars (x0, x1, height).
        bars: Vec<(f64, f64, f64)>,
        /// Palette index.
        colour: usize,
    },
    /// A vertical line at x across the panel.
    Marker {
        /// Legend text.
        label: String,
        /// Position.
        x: f64,
        /// Palette index.
        colour: usize,
    },
}

/// One panel of a [`write_panels`] figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Panel title.
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// Log10 axes: the layers' coordinates are then log10 values, the ticks read 10^v.
    pub log_log: bool,
    /// Layers, drawn in order (bands and bars first, so lines stay visible).
    pub layers: Vec<Layer>,
}

/// Draws panels in a grid of `columns` columns as `name.png`, `name.svg` and `name.pdf` into `sink`;
/// returns the file names written.
pub fn write_panels(
    sink: &mut dyn Sink,
    name: &str,
    title: &str,
    panels: &[Panel],
    columns: usize,
    opts: &FigureOptions,
) -> Result<Vec<String>> {
    let columns = columns.clamp(1, panels.len().max(1));
    let rows = panels.len().div_ceil(columns).max(1);
    // The grid sets the size; the chosen width is a minimum.
    let size = (
        (700 * columns as u32).max(opts.canvas().0),
        60 + 480 * rows as u32,
    );
    write_figure(sink, name, size, opts, |root| {
        draw_panels(root, name, title, panels, (rows, columns))
    })
}

/// Draws [`write_panels`]' figure on any backend.
fn draw_panels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    name: &str,
    title: &str,
    panels: &[Panel],
    grid: (usize, usize),
) -> Result<()> {
    let fail = |e: &dyn std::fmt::Display| Error::Output {
        context: format!("plot {name}"),
        message: e.to_string(),
    };
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let root = root
        .titled(title, ("sans-serif", 28))
        .map_err(|e| fail(&e))?;
    let areas = root.split_evenly(grid);
    for (panel, area) in panels.iter().zip(&areas) {
        draw_panel(area, panel).map_err(|e| fail(&e))?;
    }
    root.present().map_err(|e| fail(&e))
}

/// A linear axis' tick label: at most 4 decimals (tick positions carry binary rounding
/// such as 0.30000000000000004), and 4 significant digits in scientific notation outside
/// [1e-3, 1e6) so that neighbouring ticks stay distinct.
fn tick_label(v: f64) -> String {
    let trim = |t: &str| t.trim_end_matches('0').trim_end_matches('.').to_string();
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e6).contains(&a) {
        let t = format!("{v:.3e}");
        match t.split_once('e') {
            Some((mantissa, exponent)) => format!("{}e{exponent}", trim(mantissa)),
            None => t,
        }
    } else {
        let t = trim(&format!("{v:.4}"));
        if t == "-0" { "0".to_string() } else { t }
    }
}

/// The x and y values a panel's layers cover.
fn panel_extent(panel: &Panel) -> (Vec<f64>, Vec<f64>) {
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for layer in &panel.layers {
        match layer {
            Layer::Line { points, .. } => {
                for &(x, y) in points.iter().filter(|p| p.0.is_finite() && p.1.is_finite()) {
                    xs.push(x);
                    ys.push(y);
                }
            }
            Layer::Band { points, .. } => {
                for &(x, lo, hi) in points {
                    if x.is_finite() && lo.is_finite() && hi.is_finite() {
                        xs.push(x);
                        ys.extend([lo, hi]);
                    }
                }
            }
            Layer::Bars { bars, .. } => {
                for &(a, b, h) in bars {
                    xs.extend([a, b]);
                    ys.extend([0.0, h]);
                }
            }
            Layer::Marker { x, .. } => xs.push(*x),
        }
    }
    (xs, ys)
}

/// How many entries a panel's legend has (a marker off the axis draws none).
fn legend_entries(panel: &Panel) -> usize {
    panel
        .layers
        .iter()
        .filter(|l| !matches!(l, Layer::Marker { x, .. } if !x.is_finite()))
        .count()
}

/// `y` raised so that the top of a linear panel of `area_px` pixels is free for its
/// legend of `entries` lines, drawn upper right: bars, bands and lines stay below it
/// wherever their mass lies (a histogram's peak at the right used to hide under it).
fn with_legend_headroom(y: Range<f64>, entries: usize, area_px: u32) -> Range<f64> {
    // The panel's caption, x-label area and margins take about 110 px of the area; each
    // legend line about 19 px at 13 pt, plus the box's padding and offset.
    let plot_px = (f64::from(area_px) - 110.0).max(100.0);
    let legend_px = 19.0 * entries as f64 + 24.0;
    let free = (legend_px / plot_px).min(0.6);
    let span = y.end - y.start;
    y.start..y.start + span / (1.0 - free)
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
) -> std::result::Result<(), String> {
    let (xs, ys) = panel_extent(panel);
    let x = padded_range(xs.into_iter());
    let mut y = padded_range(ys.into_iter());
    if !panel.log_log {
        y = with_legend_headroom(y, legend_entries(panel), area.dim_in_pixel().1);
    }
    let (y_lo, y_hi) = (y.start, y.end);
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(x, y)
        .map_err(|e| e.to_string())?;
    // Log ticks are labelled at 1, 2 and 5 times a power of ten only.
    let log_tick = |v: &f64| {
        let p = 10f64.powf(*v);
        let mantissa = p / 10f64.powf(v.floor());
        if ![1.0, 2.0, 5.0, 10.0]
            .iter()
            .any(|m| (mantissa - m).abs() < 0.02 * m)
        {
            String::new()
        } else if (0.01..1e5).contains(&p) {
            format!("{p:.3}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string()
        } else {
            format!("{p:.0e}")
        }
    };
    let plain = |v: &f64| tick_label(*v);
    let fmt: &dyn Fn(&f64) -> String = if panel.log_log { &log_tick } else { &plain };
    chart
        .configure_mesh()
        .x_desc(&panel.x_label)
        .y_desc(&panel.y_label)
        .x_label_formatter(fmt)
        .y_label_formatter(fmt)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(|e| e.to_string())?;
    let colour = |i: usize| OKABE_ITO[i % OKABE_ITO.len()];
    let mut ordered: Vec<&Layer> = panel
        .layers
        .iter()
        .filter(|l| matches!(l, Layer::Band { .. } | Layer::Bars { .. }))
        .collect();
    ordered.extend(
        panel
            .layers
            .iter()
            .filter(|l| matches!(l, Layer::Line { .. } | Layer::Marker { .. })),
    );
    for layer in ordered {
        match layer {
            Layer::Line {
                label,
                points,
                colour: c,
                width,
            } => {
                let (c, w) = (colour(*c), *width);
                chart
                    .draw_series(LineSeries::new(
                        points
                            .iter()
                            .copied()
                            .filter(|p| p.0.is_finite() && p.1.is_finite()),
                        c.stroke_width(w),
                    ))
                    .map_err(|e| e.to_string())?
                    .label(label.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(w))
                    });
            }
            Layer::Band {
                label,
                points,
                colour: c,
            } => {
                let c = colour(*c);
                let finite: Vec<_> = points
                    .iter()
                    .copied()
                    .filter(|p| p.0.is_finite() && p.1.is_finite() && p.2.is_finite())
                    .collect();
                let outline: Vec<(f64, f64)> = finite
                    .iter()
                    .map(|p| (p.0, p.2))
                    .chain(finite.iter().rev().map(|p| (p.0, p.1)))
                    .collect();
                chart
                    .draw_series(std::iter::once(Polygon::new(outline, c.mix(0.2).filled())))
                    .map_err(|e| e.to_string())?
                    .label(label.clone())
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 6), (x + 24, y + 6)], c.mix(0.2).filled())
                    });
            }
            Layer::Bars {
                label,
                bars,
                colour: c,
            } => {
                let c = colour(*c);
                chart
                    .draw_series(
                        bars.iter().map(|&(a, b, h)| {
                            Rectangle::new([(a, 0.0), (b, h)], c.mix(0.5).filled())
                        }),
                    )
                    .map_err(|e| e.to_string())?
                    .label(label.clone())
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 6), (x + 24, y + 6)], c.mix(0.5).filled())
                    });
            }
            Layer::Marker {
                label,
                x,
                colour: c,
            } => {
                let c = colour(*c);
                if x.is_finite() {
                    chart
                        .draw_series(std::iter::once(PathElement::new(
                            vec![(*x, y_lo), (*x, y_hi)],
                            c.stroke_width(2),
                        )))
                        .map_err(|e| e.to_string())?
                        .label(label.clone())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(2))
                        });
                }
            }
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .position(if panel.log_log {
            SeriesLabelPosition::LowerLeft
        } else {
            SeriesLabelPosition::UpperRight
        })
        .draw()
        .map_err(|e| e.to_string())
}

/// One panel of a [`write_heatmaps`] figure: a grid of cells, each coloured by its value
/// (viridis, over the panel's finite values) and labelled with it.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatMap {
    /// Panel title.
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// Label of each column.
    pub x_ticks: Vec<String>,
    /// Label of each row, bottom to top.
    pub y_ticks: Vec<String>,
    /// `values[row][column]`; NaN: no data (a grey cell marked `-`).
    pub values: Vec<Vec<f64>>,
    /// Colour by `sign(v) log10(1 + |v|)` rather than `v` (values spanning decades).
    pub log_colour: bool,
    /// The values the colour scale spans (e.g. `(0, 1)` for a fraction, so panels compare);
    /// `None`: the panel's finite values.
    pub range: Option<(f64, f64)>,
}

/// A heat-map cell's label: 3 significant digits, `inf`, or `-` for no data.
fn cell_label(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e4 || v.abs() < 1e-2 {
        format!("{v:.2e}")
    } else {
        let digits = (2 - v.abs().log10().floor() as i32).clamp(0, 4) as usize;
        format!("{v:.digits$}")
    }
}

/// Draws heat maps in a grid of `columns` columns as `name.png`, `name.svg` and
/// `name.pdf` into `sink`; returns the file names written.
pub fn write_heatmaps(
    sink: &mut dyn Sink,
    name: &str,
    title: &str,
    maps: &[HeatMap],
    columns: usize,
    opts: &FigureOptions,
) -> Result<Vec<String>> {
    let columns = columns.clamp(1, maps.len().max(1));
    let rows = maps.len().div_ceil(columns).max(1);
    // The grid sets the size; the chosen width is a minimum.
    let size = (
        (600 * columns as u32).max(opts.canvas().0),
        60 + 460 * rows as u32,
    );
    write_figure(sink, name, size, opts, |root| {
        let fail = |e: &dyn std::fmt::Display| Error::Output {
            context: format!("plot {name}"),
            message: e.to_string(),
        };
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let titled = root
            .titled(title, ("sans-serif", 28))
            .map_err(|e| fail(&e))?;
        for (map, area) in maps.iter().zip(titled.split_evenly((rows, columns))) {
            draw_heatmap(&area, map).map_err(|e| fail(&e))?;
        }
        root.present().map_err(|e| fail(&e))
    })
}

/// Draws one [`HeatMap`] on any backend.
fn draw_heatmap<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    map: &HeatMap,
) -> std::result::Result<(), String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let (nx, ny) = (map.x_ticks.len().max(1), map.y_ticks.len().max(1));
    let colour_value = |v: f64| {
        if map.log_colour {
            v.signum() * v.abs().ln_1p() / std::f64::consts::LN_10
        } else {
            v
        }
    };
    let finite: Vec<f64> = map
        .values
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .map(colour_value)
        .collect();
    let (lo, hi) = match map.range {
        Some((a, b)) => (colour_value(a), colour_value(b)),
        None => (
            finite.iter().copied().fold(f64::INFINITY, f64::min),
            finite.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        ),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(&map.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(80)
        // An integer range segments inclusively: 0..n - 1 gives the n cells.
        .build_cartesian_2d(
            (0..nx as i32 - 1).into_segmented(),
            (0..ny as i32 - 1).into_segmented(),
        )
        .map_err(|x| e(&x))?;
    let tick = |ticks: &[String], v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(k) => ticks.get(*k as usize).cloned().unwrap_or_default(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc(&map.x_label)
        .y_desc(&map.y_label)
        .x_labels(nx + 1)
        .y_labels(ny + 1)
        .x_label_formatter(&|v| tick(&map.x_ticks, v))
        .y_label_formatter(&|v| tick(&map.y_ticks, v))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .draw()
        .map_err(|x| e(&x))?;
    for (row, values) in map.values.iter().enumerate().take(ny) {
        for (col, &v) in values.iter().enumerate().take(nx) {
            let (x, y) = (col as i32, row as i32);
            let fill = if v.is_nan() {
                RGBColor(200, 200, 200)
            } else if !v.is_finite() {
                viridis(if v > 0.0 { 1.0 } else { 0.0 })
            } else if hi > lo {
                viridis((colour_value(v) - lo) / (hi - lo))
            } else {
                viridis(0.5)
            };
            let corners = [
                (SegmentValue::Exact(x), SegmentValue::Exact(y + 1)),
                (SegmentValue::Exact(x + 1), SegmentValue::Exact(y)),
            ];
            chart
                .draw_series(std::iter::once(Rectangle::new(corners, fill.filled())))
                .map_err(|x| e(&x))?;
            // Dark text on the light (yellow-green) end of the scale.
            let light = u32::from(fill.0) + u32::from(fill.1) + u32::from(fill.2) > 380;
            let text_colour = if light { BLACK } else { WHITE };
            let style = TextStyle::from(("sans-serif", 15).into_font())
                .color(&text_colour)
                .pos(plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Center,
                    plotters::style::text_anchor::VPos::Center,
                ));
            chart
                .draw_series(std::iter::once(Text::new(
                    cell_label(v),
                    (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y)),
                    style,
                )))
                .map_err(|x| e(&x))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod heatmap_tests {
    use super::*;
    use crate::output::parquet::MemorySink;

    #[test]
    fn heatmaps_label_every_cell() {
        let map = HeatMap {
            title: "price".into(),
            x_label: "first iteration".into(),
            y_label: "|size|".into(),
            x_ticks: vec!["0".into(), "1".into()],
            y_ticks: vec!["0.1".into(), "10".into()],
            values: vec![vec![0.25, f64::NAN], vec![f64::INFINITY, 1234.5]],
            log_colour: true,
            range: None,
        };
        let mut sink = MemorySink::new();
        let names = write_heatmaps(
            &mut sink,
            "h",
            "converged",
            &[map.clone(), map],
            2,
            &FigureOptions::default(),
        )
        .unwrap();
        assert_eq!(names, ["h.png", "h.svg", "h.pdf"]);
        let svg = std::str::from_utf8(&sink.files["h.svg"]).unwrap();
        for text in [
            "0.250",
            "inf",
            "1234",
            "first iteration",
            "|size|",
            "converged",
        ] {
            assert!(svg.contains(text), "missing {text}");
        }
        assert_eq!(cell_label(f64::NAN), "-");
        assert_eq!(cell_label(0.0), "0");
        assert_eq!(cell_label(1e-5), "1.00e-5");
        assert_eq!(cell_label(-4.56789), "-4.57");
        assert_eq!(viridis(0.0), RGBColor(68, 1, 84));
    }
}
