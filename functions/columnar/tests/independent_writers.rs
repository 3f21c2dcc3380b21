//! Files written by Arrow C++ (via pyarrow; see fixtures/generate.py), not by
//! the Rust crates this crate reads with: gzip Parquet with three row groups,
//! zlib ORC (`ORC_CPP` writer, dictionary-encoded strings, a plain
//! `timestamp` column) with two stripes, plus the S3 columns readers ignore.

use std::path::Path;

use batchops_columnar::{read_file, ColumnarFormat, InventoryRecord};
use chrono::{DateTime, SecondsFormat};

const N: usize = 3000;
const BASE_MS: i64 = 1_451_606_400_000; // 2016-01-01T00:00:00Z

fn key(i: usize) -> String {
    match i % 6 {
        0 => format!("plain/{i}.txt"),
        1 => format!("with space/{i} a file.txt"),
        2 => format!("unicode/ünïcødé-日本語-{i}"),
        3 => format!("plus/a+b={i}&c%20d"),
        4 => format!("emoji/🦀/{i}"),
        _ => format!("ctrl/tab\there\nnewline/{i}"),
    }
}

/// Row `i` as written by generate.py.
fn expected(i: usize) -> InventoryRecord {
    let delete_marker = i % 7 == 3;
    let ms = BASE_MS + i as i64 * 7_919_000 + (i % 1000) as i64;
    InventoryRecord {
        bucket: "fixture-bucket".into(),
        key: key(i),
        version_id: Some(if i.is_multiple_of(4) {
            "null".into()
        } else {
            format!("v{i}.Xyz+/=")
        }),
        is_latest: (!i.is_multiple_of(11)).then_some(!i.is_multiple_of(3)),
        is_delete_marker: delete_marker,
        size: (!delete_marker).then_some(if i == 5 {
            5_497_558_138_880
        } else {
            i as u64 * 1000
        }),
        last_modified: Some(
            DateTime::from_timestamp_millis(ms)
                .unwrap()
                .to_rfc3339_opts(SecondsFormat::Millis, true),
        ),
        e_tag: (!delete_marker).then(|| format!("{i:032x}")),
        storage_class: (!delete_marker)
            .then(|| ["STANDARD", "GLACIER", "INTELLIGENT_TIERING"][i % 3].to_owned()),
    }
}

fn check(format: ColumnarFormat, file: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(file);
    let records: Vec<InventoryRecord> = read_file(format, &path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(records.len(), N);
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record, &expected(i), "{file} row {i}");
    }
    assert_eq!(
        records[1].last_modified.as_deref(),
        Some("2016-01-01T02:11:59.001Z")
    );
}

#[test]
fn parquet_written_by_arrow_cpp() {
    check(ColumnarFormat::Parquet, "pyarrow-inventory.parquet");
}

#[test]
fn orc_written_by_orc_cpp() {
    check(ColumnarFormat::Orc, "pyarrow-inventory.orc");
}
