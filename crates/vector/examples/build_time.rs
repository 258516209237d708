//! Times an HNSW build (M=16, ef_construction=200, one thread) over the first N rows of a raw
//! little-endian f32 file, e.g. the vectors `capstan bench vectors` caches:
//! `cargo run --release -p vector --example build_time -- base.f32 384 100000`.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (path, dim, n) = match args.as_slice() {
        [_, p, d, n] => match (d.parse::<usize>(), n.parse::<usize>()) {
            (Ok(d), Ok(n)) => (p.clone(), d, n),
            _ => {
                eprintln!("DIM and N are numbers");
                std::process::exit(2);
            }
        },
        _ => {
            eprintln!("usage: build_time FILE DIM N");
            std::process::exit(2);
        }
    };
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        eprintln!("{path}: {e}");
        std::process::exit(1);
    });
    let rows: Vec<Vec<f32>> = bytes
        .chunks_exact(dim * 4)
        .take(n)
        .map(|r| {
            r.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        })
        .collect();
    let mut index = vector::Hnsw::new(dim, vector::Metric::Dot, vector::HnswParams::default());
    let t = std::time::Instant::now();
    for r in &rows {
        index.insert(r);
    }
    println!(
        "{} vectors in {:.2} s ({})",
        rows.len(),
        t.elapsed().as_secs_f64(),
        vector::distance::kernel_name()
    );
}
