//! The plots of `vdvae diagnose`, drawn from its report: KL per level, active
//! units per level, distortion and −ELBO against the number of levels taken
//! from the posterior, and mutual information per level under its cap ln B. plotters draws into memory, `png` encodes, and
//! each file is written atomically. Text uses the bundled DejaVu Sans subset
//! (`assets/fonts/`), so the plots render on machines with no system fonts.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::report::DiagnoseReport;
use crate::error::{Error, Result};

const SIZE: (u32, u32) = (800, 500);
/// The family plotters' own labels ask for; the bundled font is registered under it.
const FONT: &str = "sans-serif";
const FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-subset.ttf");
const BAR: RGBColor = RGBColor(52, 101, 164);
const DISTORTION: RGBColor = RGBColor(52, 101, 164);
const ELBO: RGBColor = RGBColor(204, 85, 0);
const CAP: RGBColor = RGBColor(204, 85, 0);
/// Above this many levels the active-unit counts move from the bars to the axis description.
const MAX_LABELLED_BARS: usize = 40;

type Canvas<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
type Drawn = std::result::Result<(), Box<dyn std::error::Error>>;
type Plot = fn(&DiagnoseReport, &Canvas<'_>) -> Drawn;

/// Writes the report's plots into `dir`, each atomically (write to a temp name, then rename), and
/// returns the paths written: `kl_per_level.png`, `active_units.png`, `distortion_by_depth.png`,
/// `mutual_info.png`.
pub fn write_plots(report: &DiagnoseReport, dir: &Path) -> Result<Vec<PathBuf>> {
    check_plottable(report)?;
    register_font()?;
    let plots: [(&str, Plot); 4] = [
        ("kl_per_level.png", draw_kl),
        ("active_units.png", draw_active_units),
        ("distortion_by_depth.png", draw_depth),
        ("mutual_info.png", draw_mutual_info),
    ];
    // All four are drawn before any is written: a plot that fails to draw replaces no file.
    let mut drawn = Vec::new();
    for (name, plot) in plots {
        let path = dir.join(name);
        let shown = path
            .to_str()
            .ok_or_else(|| Error::Input(format!("{}: not a UTF-8 path", path.display())))?
            .to_string();
        let png = render(&shown, |canvas| plot(report, canvas))?;
        drawn.push((path, shown, png));
    }
    let mut written = Vec::new();
    for (path, shown, png) in drawn {
        crate::checkpoint::write_atomically(&shown, &png)?;
        written.push(path);
    }
    Ok(written)
}

/// plotters looks fonts up by family name in a process-wide table; filling it once is enough.
fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok());
    if ok {
        Ok(())
    } else {
        Err(Error::Input(
            "assets/fonts/DejaVuSans-subset.ttf is not a font plotters can read".into(),
        ))
    }
}

/// Levels and depth points to plot, every value finite: a NaN would draw nothing and say nothing.
fn check_plottable(report: &DiagnoseReport) -> Result<()> {
    if report.levels.is_empty() || report.depth.is_empty() {
        return Err(Error::Input(format!(
            "the report has {} levels and {} depth points; the plots need at least one of each",
            report.levels.len(),
            report.depth.len()
        )));
    }
    let levels = report.levels.iter().enumerate().flat_map(|(i, l)| {
        [
            (format!("levels[{i}].kl_nats_per_image"), l.kl_nats_per_image),
            (format!("levels[{i}].active_fraction"), l.active_fraction),
            (format!("levels[{i}].mutual_info_nats"), l.mutual_info_nats),
        ]
    });
    let depth = report.depth.iter().enumerate().flat_map(|(i, d)| {
        [
            (format!("depth[{i}].distortion_nats_per_dim"), d.distortion_nats_per_dim),
            (format!("depth[{i}].elbo_nats_per_dim"), d.elbo_nats_per_dim),
        ]
    });
    let scalars = [
        ("depth_temperature".to_string(), report.depth_temperature as f64),
        ("mutual_info_cap_nats".to_string(), report.mutual_info_cap_nats),
    ];
    match levels.chain(depth).chain(scalars).find(|(_, v)| !v.is_finite()) {
        Some((field, v)) => Err(Error::Input(format!("the report's {field} is {v}; nothing to plot"))),
        None => Ok(()),
    }
}

/// Draws on a white 800×500 canvas in memory and returns it as PNG bytes.
fn render(path: &str, draw: impl FnOnce(&Canvas<'_>) -> Drawn) -> Result<Vec<u8>> {
    let err = |e: &dyn std::fmt::Display| Error::Input(format!("{path}: {e}"));
    let (w, h) = SIZE;
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let canvas = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
        canvas.fill(&WHITE).map_err(|e| err(&e))?;
        draw(&canvas).map_err(|e| err(&e))?;
        canvas.present().map_err(|e| err(&e))?;
    }
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, w, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| err(&e))?;
        writer.write_image_data(&rgb).map_err(|e| err(&e))?;
    }
    Ok(bytes)
}

fn draw_kl(report: &DiagnoseReport, canvas: &Canvas<'_>) -> Drawn {
    let kl: Vec<f64> = report.levels.iter().map(|l| l.kl_nats_per_image).collect();
    let total: f64 = kl.iter().sum();
    draw_bars(
        canvas,
        Bars {
            caption: format!("KL per level ({total:.1} nats per image in all)"),
            x_desc: "level (0 = top)".into(),
            y_desc: "KL, nats per image",
            y: padded_range(&kl, true),
            values: kl,
            labels: Vec::new(),
            cap: None,
        },
    )
}

fn draw_active_units(report: &DiagnoseReport, canvas: &Canvas<'_>) -> Drawn {
    let levels = &report.levels;
    let (active, units) = levels
        .iter()
        .fold((0, 0), |(a, u), l| (a + l.active_units, u + l.units));
    let labelled = levels.len() <= MAX_LABELLED_BARS;
    draw_bars(
        canvas,
        Bars {
            caption: format!("Active units per level (Cov_x E_q[z] > {})", report.active_threshold),
            x_desc: if labelled {
                "level (0 = top); active / units above each bar".into()
            } else {
                format!("level (0 = top); {active} of {units} units active in all")
            },
            y_desc: "fraction of units active",
            values: levels.iter().map(|l| l.active_fraction).collect(),
            y: 0.0..1.0,
            labels: if labelled {
                levels
                    .iter()
                    .map(|l| format!("{}/{}", l.active_units, l.units))
                    .collect()
            } else {
                Vec::new()
            },
            cap: None,
        },
    )
}

fn draw_mutual_info(report: &DiagnoseReport, canvas: &Canvas<'_>) -> Drawn {
    let mi: Vec<f64> = report.levels.iter().map(|l| l.mutual_info_nats).collect();
    let cap = report.mutual_info_cap_nats;
    let with_cap: Vec<f64> = mi.iter().copied().chain([cap]).collect();
    draw_bars(
        canvas,
        Bars {
            caption: format!("I(x; z) per level, ≤ ln B = {cap:.3} nats (the line)"),
            x_desc: format!(
                "level (0 = top); batches of B = {}, {} images",
                report.mutual_info_batch, report.mutual_info_images
            ),
            y_desc: "I(x; z), nats",
            y: padded_range(&with_cap, true),
            values: mi,
            labels: Vec::new(),
            cap: Some(cap),
        },
    )
}

/// One bar per level; `labels`, when given, go above the plot over their bars; `cap`, when
/// given, is a line across the plot at that value.
struct Bars {
    caption: String,
    x_desc: String,
    y_desc: &'static str,
    values: Vec<f64>,
    y: Range<f64>,
    labels: Vec<String>,
    cap: Option<f64>,
}

fn draw_bars(canvas: &Canvas<'_>, bars: Bars) -> Drawn {
    let n = bars.values.len();
    let label_style = TextStyle::from((FONT, 12).into_font()).color(&BLACK);
    let widest = bars
        .labels
        .iter()
        .map(|l| canvas.estimate_text_size(l, &label_style).map(|(w, _)| w))
        .try_fold(0, |m, w| w.map(|w| m.max(w)))?;
    // Counts that fit across a bar lie flat; wider ones stand up and need the band above.
    let slot = (SIZE.0 - 100) / n as u32;
    let upright = widest + 6 > slot;
    let band = match (bars.labels.is_empty(), upright) {
        (true, _) => 0,
        (false, false) => 18,
        (false, true) => widest + 6,
    };
    // The caption first, so that the count labels' band lies between it and the plot.
    let body = canvas.margin(12, 0, 0, 0).titled(&bars.caption, (FONT, 22))?;
    let mut chart = ChartBuilder::on(&body)
        .margin(12)
        .margin_top(4 + band)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(LevelAxis(n), bars.y.clone())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(20)
        .x_desc(&bars.x_desc)
        .y_desc(bars.y_desc)
        .axis_desc_style((FONT, 16))
        .label_style((FONT, 14))
        .draw()?;
    chart.draw_series(bars.values.iter().enumerate().map(|(i, &v)| {
        let i = i as f64;
        Rectangle::new([(i - 0.4, 0.0), (i + 0.4, v)], BAR.filled())
    }))?;
    if let Some(cap) = bars.cap {
        let ends = [(-0.5, cap), (n as f64 - 0.5, cap)];
        chart.draw_series(LineSeries::new(ends, CAP.stroke_width(2)))?;
    }
    for (i, label) in bars.labels.iter().enumerate() {
        let (x, top) = chart.backend_coord(&(i as f64, bars.y.end));
        let style = if upright {
            // Turned a quarter counter-clockwise: the text's left end is now its bottom.
            label_style
                .transform(FontTransform::Rotate270)
                .pos(Pos::new(HPos::Left, VPos::Center))
        } else {
            label_style.pos(Pos::new(HPos::Center, VPos::Bottom))
        };
        canvas.draw(&Text::new(label.as_str(), (x, top - 4), style))?;
    }
    Ok(())
}

/// The bar charts' x axis: `LevelAxis(n)` puts level i at the centre of the i-th of n equal
/// slots. (plotters' segmented integer axis misplaces the bar when there is a single level.)
#[derive(Clone)]
struct LevelAxis(usize);

impl Ranged for LevelAxis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, level: &f64, (lo, hi): (i32, i32)) -> i32 {
        lo + ((level + 0.5) / self.0 as f64 * (hi - lo) as f64).round() as i32
    }

    /// Every level while they fit, else every 2nd, 5th, 10th, 20th, ... so labels never overlap.
    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        let fewest = self.0.div_ceil(hint.max_num_points().max(1));
        let step = (0..)
            .flat_map(|e| [1, 2, 5].map(|m| m * 10usize.pow(e)))
            .find(|&step| step >= fewest)
            .unwrap_or(fewest);
        (0..self.0).step_by(step).map(|i| i as f64).collect()
    }

    fn range(&self) -> Range<f64> {
        -0.5..self.0 as f64 - 0.5
    }
}

impl ValueFormatter<f64> for LevelAxis {
    fn format(level: &f64) -> String {
        format!("{level:.0}")
    }
}

fn draw_depth(report: &DiagnoseReport, canvas: &Canvas<'_>) -> Drawn {
    let mut depth = report.depth.clone();
    depth.sort_by_key(|d| d.k);
    let distortion: Vec<(usize, f64)> = depth.iter().map(|d| (d.k, d.distortion_nats_per_dim)).collect();
    let elbo: Vec<(usize, f64)> = depth.iter().map(|d| (d.k, d.elbo_nats_per_dim)).collect();
    let values: Vec<f64> = distortion.iter().chain(&elbo).map(|&(_, v)| v).collect();
    let last_k = depth.last().map_or(0, |d| d.k).max(1);
    let mut chart = ChartBuilder::on(canvas)
        .caption(
            format!(
                "Distortion by depth, the other levels from the prior at T = {}",
                report.depth_temperature
            ),
            (FONT, 20),
        )
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0..last_k, padded_range(&values, false))?;
    chart
        .configure_mesh()
        .x_labels(last_k.min(20) + 1)
        .x_desc("k: levels from the posterior mean, counted from the top")
        .y_desc("nats per dim")
        .axis_desc_style((FONT, 16))
        .label_style((FONT, 14))
        .draw()?;
    // Markers shrink when there are many points, so the lines stay visible between them.
    let marker = if depth.len() > 20 { 2 } else { 4 };
    for (points, color, name) in [
        (distortion, DISTORTION, "distortion −log p(x|z)"),
        (elbo, ELBO, "−ELBO = distortion + rate"),
    ] {
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)).point_size(marker))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// A y range around `values` with 5% headroom; never empty, so equal (e.g. all-zero) values
/// still get an axis. Bars stand on zero, so `from_zero` keeps zero in the range.
fn padded_range(values: &[f64], from_zero: bool) -> Range<f64> {
    let (mut lo, mut hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
        (lo.min(v), hi.max(v))
    });
    if from_zero {
        (lo, hi) = (lo.min(0.0), hi.max(0.0));
    }
    let span = hi - lo;
    if span <= 1e-12 * hi.abs().max(lo.abs()).max(1.0) {
        return if from_zero { lo..lo + 1.0 } else { lo - 0.5..hi + 0.5 };
    }
    let pad = 0.05 * span;
    let lo = if from_zero && lo >= 0.0 { lo } else { lo - pad };
    lo..hi + pad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::report::{DepthPoint, LevelReport, ACTIVE_THRESHOLD};

    fn report(kl: &[f64], active: &[(usize, usize)]) -> DiagnoseReport {
        let total: f64 = kl.iter().sum();
        let levels = kl
            .iter()
            .zip(active)
            .enumerate()
            .map(|(i, (&kl, &(active_units, units)))| LevelReport {
                level: i,
                resolution: 1,
                units,
                kl_nats_per_image: kl,
                kl_bits_per_dim: kl / (784.0 * std::f64::consts::LN_2),
                rate_share: if total > 0.0 { kl / total } else { 0.0 },
                active_units,
                active_fraction: active_units as f64 / units as f64,
                // Below the cap ln 4, in proportion to the KL.
                mutual_info_nats: 1.2 * kl / total.max(1e-9),
            })
            .collect();
        let depth = (0..=kl.len())
            .map(|k| {
                let rate = kl[..k].iter().sum::<f64>() / 784.0;
                let distortion = 0.7 / (1.0 + k as f64);
                DepthPoint {
                    k,
                    distortion_nats_per_dim: distortion,
                    rate_nats_per_dim: rate,
                    elbo_nats_per_dim: distortion + rate,
                }
            })
            .collect();
        DiagnoseReport {
            model: "vdvae".into(),
            images: 100,
            dims: 784,
            levels,
            active_threshold: ACTIVE_THRESHOLD,
            mutual_info_batch: 4,
            mutual_info_images: 100,
            mutual_info_cap_nats: 4f64.ln(),
            depth_temperature: 0.8,
            depth,
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vdvae-plots-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Width, height and RGB pixels of a PNG file.
    fn decode(path: &Path) -> (u32, u32, Vec<[u8; 3]>) {
        let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
        let mut reader = png::Decoder::new(file).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        let pixels = buf[..info.buffer_size()]
            .chunks_exact(3)
            .map(|p| [p[0], p[1], p[2]])
            .collect();
        (info.width, info.height, pixels)
    }

    /// The bars left to right as (first column, height in pixels): runs of columns holding `color`.
    fn bars(path: &Path, color: RGBColor) -> Vec<(usize, usize)> {
        let (w, h, pixels) = decode(path);
        let (w, h) = (w as usize, h as usize);
        let target = [color.0, color.1, color.2];
        let heights: Vec<usize> = (0..w)
            .map(|x| (0..h).filter(|&y| pixels[y * w + x] == target).count())
            .collect();
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for (x, &height) in heights.iter().enumerate() {
            match runs.last_mut() {
                _ if height == 0 => {}
                Some((_, tallest)) if heights[x - 1] > 0 => *tallest = (*tallest).max(height),
                _ => runs.push((x, height)),
            }
        }
        runs
    }

    fn assert_is_a_picture(path: &Path) {
        let (w, h, pixels) = decode(path);
        assert_eq!((w, h), SIZE, "{}", path.display());
        let distinct: std::collections::HashSet<_> = pixels.iter().collect();
        assert!(distinct.len() > 10, "{} is nearly one flat colour", path.display());
        // Text is drawn: the caption's row band holds dark, anti-aliased pixels.
        let dark = pixels[..w as usize * 40]
            .iter()
            .filter(|p| p.iter().all(|&c| c < 100))
            .count();
        assert!(dark > 50, "{} has no caption text", path.display());
    }

    #[test]
    fn three_levels_give_four_plots_with_bars_in_proportion() {
        let dir = temp_dir("three");
        let mut report = report(&[30.0, 10.0, 20.0], &[(16, 16), (4, 16), (8, 16)]);
        for (level, mi) in report.levels.iter_mut().zip([0.3, 0.9, 0.6]) {
            level.mutual_info_nats = mi;
        }
        let written = write_plots(&report, &dir).unwrap();
        let names: Vec<_> = written.iter().map(|p| p.file_name().unwrap()).collect();
        assert_eq!(
            names,
            [
                "kl_per_level.png",
                "active_units.png",
                "distortion_by_depth.png",
                "mutual_info.png"
            ]
        );
        for path in &written {
            assert_is_a_picture(path);
            let tmp = crate::checkpoint::tmp_path(path.to_str().unwrap());
            assert!(!std::path::Path::new(&tmp).exists());
        }

        let kl = bars(&written[0], BAR);
        assert_eq!(kl.len(), 3, "{kl:?}");
        let (h0, h1, h2) = (kl[0].1 as f64, kl[1].1 as f64, kl[2].1 as f64);
        assert!(h0 > h2 && h2 > h1, "{kl:?}");
        assert!((h0 / h1 - 3.0).abs() < 0.1 && (h2 / h1 - 2.0).abs() < 0.1, "{kl:?}");

        // Fractions 1, 1/4, 1/2 on a 0..1 axis: the full bar spans the plot's height.
        let active = bars(&written[1], BAR);
        assert_eq!(active.len(), 3, "{active:?}");
        let (h0, h1, h2) = (active[0].1 as f64, active[1].1 as f64, active[2].1 as f64);
        assert!(
            (h0 / h1 - 4.0).abs() < 0.15 && (h0 / h2 - 2.0).abs() < 0.1,
            "{active:?}"
        );

        let (_, _, depth) = decode(&written[2]);
        for color in [DISTORTION, ELBO] {
            let hits = depth.iter().filter(|p| **p == [color.0, color.1, color.2]).count();
            assert!(hits > 200, "{color:?} drawn on {hits} pixels");
        }

        // Mutual information 0.3, 0.9, 0.6 under the line at ln 4 ≈ 1.386.
        let mi = bars(&written[3], BAR);
        assert_eq!(mi.len(), 3, "{mi:?}");
        let (h0, h1, h2) = (mi[0].1 as f64, mi[1].1 as f64, mi[2].1 as f64);
        assert!((h1 / h0 - 3.0).abs() < 0.1 && (h2 / h0 - 2.0).abs() < 0.1, "{mi:?}");
        let (w, h, pixels) = decode(&written[3]);
        let (w, h) = (w as usize, h as usize);
        let on = |x: usize, y: usize, c: RGBColor| pixels[y * w + x] == [c.0, c.1, c.2];
        let baseline = (0..h).rev().find(|&y| (0..w).any(|x| on(x, y, BAR))).unwrap();
        let line: Vec<usize> = (0..h)
            .filter(|&y| (0..w).filter(|&x| on(x, y, CAP)).count() > w / 2)
            .collect();
        assert!(!line.is_empty() && line.len() <= 3, "the cap line's rows: {line:?}");
        let above = (baseline - line[0]) as f64;
        assert!(
            (above / h1 - 4f64.ln() / 0.9).abs() < 0.05,
            "line {above} px up, bar 0.9 is {h1}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn forty_levels_draw_forty_bars_and_labels() {
        let dir = temp_dir("forty");
        let kl: Vec<f64> = (0..40).map(|i| 1.0 + i as f64).collect();
        let active: Vec<(usize, usize)> = (0..40).map(|i| (i * 100, 4096)).collect();
        let written = write_plots(&report(&kl, &active), &dir).unwrap();
        for path in &written {
            assert_is_a_picture(path);
        }
        let kl_bars = bars(&written[0], BAR);
        assert_eq!(kl_bars.len(), 40);
        assert!(kl_bars.windows(2).all(|b| b[0].1 <= b[1].1), "{kl_bars:?}");
        // Level 0 has no active units, so 39 bars; the counts stand above the plot.
        assert_eq!(bars(&written[1], BAR).len(), 39);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn edge_cases_still_plot() {
        let dir = temp_dir("edges");
        // One level, all-zero KL (the y range needs a span of its own), 64 levels, a batch of
        // one image (cap ln 1 = 0, every estimate 0) and an estimate a little below zero.
        let mut single = report(&[1.0, 2.0], &[(1, 2), (2, 2)]);
        single.mutual_info_cap_nats = 0.0;
        single.levels.iter_mut().for_each(|l| l.mutual_info_nats = 0.0);
        let mut negative = report(&[1.0, 2.0], &[(1, 2), (2, 2)]);
        negative.levels[0].mutual_info_nats = -0.01;
        for report in [
            report(&[5.0], &[(3, 8)]),
            report(&[0.0, 0.0, 0.0], &[(0, 4), (0, 4), (0, 4)]),
            report(&vec![2.0; 64], &vec![(1, 2); 64]),
            single,
            negative,
        ] {
            let written = write_plots(&report, &dir).unwrap();
            assert_eq!(written.len(), 4);
            for path in &written {
                assert_is_a_picture(path);
            }
            let expected = report.levels.iter().filter(|l| l.kl_nats_per_image > 0.0).count();
            assert_eq!(bars(&written[0], BAR).len(), expected);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_nan_is_an_error_naming_the_field_and_writes_nothing() {
        let dir = temp_dir("nan");
        let mut bad = report(&[1.0, 2.0], &[(1, 2), (2, 2)]);
        bad.levels[1].kl_nats_per_image = f64::NAN;
        let err = write_plots(&bad, &dir).unwrap_err().to_string();
        assert!(err.contains("levels[1].kl_nats_per_image is NaN"), "{err}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);

        let mut bad = report(&[1.0], &[(1, 2)]);
        bad.depth[0].elbo_nats_per_dim = f64::INFINITY;
        let err = write_plots(&bad, &dir).unwrap_err().to_string();
        assert!(err.contains("depth[0].elbo_nats_per_dim is inf"), "{err}");

        let mut bad = report(&[1.0], &[(1, 2)]);
        bad.levels[0].mutual_info_nats = f64::NAN;
        let err = write_plots(&bad, &dir).unwrap_err().to_string();
        assert!(err.contains("levels[0].mutual_info_nats is NaN"), "{err}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);

        bad.levels.clear();
        assert!(write_plots(&bad, &dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn padded_ranges_are_never_empty() {
        assert_eq!(padded_range(&[0.0, 0.0], true), 0.0..1.0);
        assert_eq!(padded_range(&[2.0], false), 1.5..2.5);
        let r = padded_range(&[1.0, 3.0], true);
        assert!(r.start == 0.0 && (r.end - 3.15).abs() < 1e-12, "{r:?}");
        let r = padded_range(&[-1.0, 1.0], true);
        assert!(r.start < -1.0 && r.end > 1.0, "{r:?}");
    }
}
