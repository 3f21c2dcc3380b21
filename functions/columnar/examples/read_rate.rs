//! Measures how fast inventory files are read:
//!
//!     cargo run --release -p batchops-columnar --example read_rate [ROWS]
//!
//! Writes ROWS (default 1 000 000) records as Parquet and as ORC to a
//! temporary directory, then times `read_file` over each in a child process
//! and reports that process's peak resident memory (Linux).

use std::time::Instant;

use batchops_columnar::{
    read_file, write_orc_with, write_parquet_with, ColumnarFormat, InventoryRecord, WriteOptions,
};

/// `read_rate --read FORMAT PATH`: the child process.
fn read_only(format: &str, path: &str) {
    let format = match format {
        "Parquet" => ColumnarFormat::Parquet,
        _ => ColumnarFormat::Orc,
    };
    let started = Instant::now();
    let mut count = 0usize;
    for record in read_file(format, std::path::Path::new(path)).unwrap() {
        std::hint::black_box(record.unwrap());
        count += 1;
    }
    let read_time = started.elapsed();
    let peak = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l["VmHWM:".len()..].trim().to_owned())
        })
        .unwrap_or_else(|| "?".to_owned());
    println!(
        "{format}: read {count} records in {:.3} s = {:.2} M records/s, peak RSS {peak}",
        read_time.as_secs_f64(),
        count as f64 / read_time.as_secs_f64() / 1e6,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--read" {
        return read_only(&args[2], &args[3]);
    }
    let rows: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("ROWS must be a number"))
        .unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("batchops-columnar-rate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let records: Vec<InventoryRecord> = (0..rows)
        .map(|i| InventoryRecord {
            bucket: "my-inventoried-bucket".into(),
            key: format!(
                "data/year={}/part-{:05}/object {i}.json",
                2016 + i % 10,
                i % 977
            ),
            version_id: Some(format!(
                "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gd.{i}"
            )),
            is_latest: Some(!i.is_multiple_of(5)),
            is_delete_marker: false,
            size: Some(i as u64 * 37),
            last_modified: Some(format!(
                "2026-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                1 + i % 12,
                1 + i % 28,
                i % 24,
                i % 60,
                (i / 60) % 60,
                i % 1000
            )),
            e_tag: Some(format!("{:032x}", i as u128 * 0x9E37_79B9_7F4A_7C15)),
            storage_class: Some(["STANDARD", "STANDARD_IA", "GLACIER_IR"][i % 3].into()),
        })
        .collect();
    let options = WriteOptions {
        rows_per_group: 128 * 1024,
        extra_s3_columns: true,
        ..WriteOptions::default()
    };

    for format in [ColumnarFormat::Parquet, ColumnarFormat::Orc] {
        let path = dir.join(format!("inventory.{format}"));
        let started = Instant::now();
        let written = match format {
            ColumnarFormat::Parquet => write_parquet_with(&path, &records, &options),
            ColumnarFormat::Orc => write_orc_with(&path, &records, &options),
        };
        if let Err(e) = written {
            println!("{format}: cannot write: {e}");
            continue;
        }
        let write_time = started.elapsed();
        let bytes = std::fs::metadata(&path).unwrap().len();
        println!(
            "{format}: {rows} rows, {:.1} MB, written in {:.2} s",
            bytes as f64 / 1e6,
            write_time.as_secs_f64()
        );
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--read", &format.to_string(), path.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
