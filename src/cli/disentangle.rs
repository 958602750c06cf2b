//! `vdvae disentangle`: MIG, SAP and DCI of each level's codes, and of all
//! levels' together, against the factors of labelled images (`vdvae data dsprites`).

use std::process::ExitCode;

use super::args::CheckpointOnData;
use vdvae::data::read_npy_index_table;
use vdvae::diagnose::disentangle::{dci::Forest, level_codes, scores, Codes, Scores};
use vdvae::gpu::AdapterChoice;

#[derive(clap::Args)]
pub struct DisentangleArgs {
    #[command(flatten)]
    base: CheckpointOnData,
    /// The images' factor indices: a .npy of integers [N, factors], row i the factors of
    /// image i of --data (DIR/factors.npy of `vdvae data dsprites`)
    #[arg(long, value_parser = super::args::non_empty_path)]
    factors: String,
    /// Only the first N images (and their factors); the classifiers of SAP and DCI train on
    /// the first 80% of them and are scored on the rest
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = super::args::at_least_one)]
    limit: usize,
    /// Images per forward pass [default: the config's n_batch]
    #[arg(long, value_parser = super::args::batch_size)]
    batch: Option<usize>,
    /// Trees in each factor's DCI forest
    #[arg(long, default_value_t = 10, value_parser = super::args::at_least_one)]
    trees: usize,
    /// Deepest split of a DCI tree (time grows with it)
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=64))]
    tree_depth: u16,
    /// Print one JSON line: {"levels": [{"level", "units", "mig", "sap", "dci": {...}}, ...], "all": {...}}
    #[arg(long)]
    json: bool,
}

pub fn run(choice: &AdapterChoice, a: &DisentangleArgs) -> vdvae::Result<ExitCode> {
    let (h, weights, images) = a.base.load_fixed(Some(a.limit))?;
    let bytes = std::fs::read(&a.factors).map_err(|e| vdvae::Error::Io {
        path: a.factors.clone(),
        source: e,
    })?;
    let mut factors = read_npy_index_table(&bytes).map_err(|e| vdvae::Error::Input(format!("{}: {e}", a.factors)))?;
    if factors.rows < images.n {
        return Err(vdvae::Error::Input(format!(
            "{}: {} rows of factors for {} images: give the factors of every image of {}",
            a.factors, factors.rows, images.n, a.base.data
        )));
    }
    factors.values.truncate(images.n * factors.cols);
    factors.rows = images.n;
    let ctx = a.base.device(choice)?;
    let levels = level_codes(&a.base.batch_run(&ctx, &h, &weights, &images, a.batch))?;
    let forest = Forest {
        trees: a.trees,
        max_depth: a.tree_depth,
        ..Forest::default()
    };
    let mut per_level = Vec::with_capacity(levels.len());
    for (l, codes) in levels.iter().enumerate() {
        if !a.json {
            eprintln!("level {l}: {} units", codes.units);
        }
        per_level.push(scores(codes, &factors, &forest)?);
    }
    let all = scores(&Codes::join(&levels)?, &factors, &forest)?;
    if a.json {
        let levels: Vec<serde_json::Value> = per_level
            .iter()
            .enumerate()
            .map(|(l, s)| {
                let mut v = serde_json::to_value(s).expect("scores serialise");
                v["level"] = l.into();
                v
            })
            .collect();
        let all = serde_json::to_value(&all).expect("scores serialise");
        println!("{}", serde_json::json!({"levels": levels, "all": all}));
    } else {
        println!(
            "{} images, {} factors; SAP and DCI trained on the first 80%, scored on the rest",
            images.n, factors.cols
        );
        println!("level  units     MIG     SAP  DCI: D       C       I");
        for (l, s) in per_level.iter().enumerate() {
            println!("{}", row(&format!("{l:>5}"), s));
        }
        println!("{}", row("  all", &all));
    }
    Ok(ExitCode::SUCCESS)
}

fn row(name: &str, s: &Scores) -> String {
    format!(
        "{name}  {:>5}  {:>6.4}  {:>6.4}  {:>6.4}  {:>6.4}  {:>6.4}",
        s.units, s.mig, s.sap, s.dci.disentanglement, s.dci.completeness, s.dci.informativeness
    )
}
