//! Classify images with the widest width of an exported model that fits a compute budget.
//!
//! ```sh
//! cargo run --release -p slim-examples --example classify -- \
//!     models/fashion-mnist-resnet20 20 /usr/share/datasets/fashion-mnist
//! ```
//! Arguments: the model folder (written by slim-export), a budget in millions of MACs per
//! image, then image files or a dataset (its first test images are classified).

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use slim_data::transform::Normalize;
use slim_data::{Image, Split};
use slim_runtime::{Backend, SlimModel};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model_dir, budget, inputs @ ..] = args.as_slice() else {
        bail!("usage: classify MODEL_DIR BUDGET_MMACS IMAGE_OR_DATASET...");
    };
    let budget: f64 = budget.parse().context("BUDGET_MMACS must be a number")?;
    let model = SlimModel::open(Path::new(model_dir), Backend::Tract)?;
    let m = model.manifest();
    // Widest first: the first width within budget is the most capable one that fits.
    let Some(entry) = m.widths.iter().find(|e| e.macs as f64 <= budget * 1e6) else {
        let smallest = m.widths.last().expect("a manifest lists widths");
        bail!(
            "no width fits {budget} MMACs: the narrowest, {}, needs {:.2} MMACs",
            smallest.width,
            smallest.macs as f64 / 1e6
        );
    };
    println!(
        "width {} ({:.2} MMACs, {} params) fits {budget} MMACs",
        entry.width,
        entry.macs as f64 / 1e6,
        entry.params
    );

    let mut images: Vec<(String, Image)> = Vec::new();
    for input in inputs {
        let p = Path::new(input);
        if p.is_file() && !input.ends_with(".zip") {
            let bytes = std::fs::read(p).with_context(|| format!("{input}: cannot be read"))?;
            images.push((input.clone(), slim_data::decode(p, &bytes)?));
        } else {
            let ds = slim_data::open(p, Split::Test)?;
            for i in 0..ds.len().min(8) {
                let truth = &ds.class_names()[ds.label(i)];
                images.push((format!("{input}#{i} ({truth})"), ds.image(i)?));
            }
        }
    }
    let norm = Normalize {
        size: m.image_size,
        channels: m.in_channels,
        mean: m.mean.clone(),
        std: m.std.clone(),
    };
    let mut batch = Vec::new();
    for (_, img) in &images {
        norm.apply(img.clone(), &mut batch);
    }
    let t = Instant::now();
    let out = model.run(entry.width, &batch, images.len())?;
    println!(
        "{} images in {:.1} ms",
        images.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    for (i, (name, _)) in images.iter().enumerate() {
        let logits = out.logits_row(i);
        let best = (0..logits.len())
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .expect("classes");
        println!("{name}: {}", m.class_names[best]);
    }
    Ok(())
}
