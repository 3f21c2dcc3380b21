use super::*;
use crate::error::{Error, Result};
use crate::objects::same_etag;
use batchops_core::inventory::{
    verify_file_checksum, verify_manifest_checksum, InventoryCsvParser, InventoryFormat,
    InventoryManifest, InventorySchema,
};
use batchops_core::plan::{Cursor, PlanProgress, Planner};
use batchops_core::request::ManifestObject;
use std::io::{BufReader, Read};
use std::path::PathBuf;

/// Resolves an inventory data file key: in S3, in the manifest's bucket; on disk, next to
/// manifest.json (by its full key, or by its file name).
pub(super) fn data_file_location(
    manifest_location: &Location,
    manifest: &InventoryManifest,
    key: &str,
) -> Location {
    match manifest_location {
        Location::S3(object) => {
            let bucket = manifest
                .destination_bucket
                .as_deref()
                .and_then(|arn| batchops_core::arn::bucket_from_arn(arn).ok())
                .unwrap_or_else(|| object.bucket.clone());
            Location::S3(ManifestObject {
                bucket,
                key: key.to_string(),
                version_id: None,
                etag: None,
            })
        }
        Location::Local(path) => {
            let dir = path.parent().map(PathBuf::from).unwrap_or_default();
            let full = dir.join(key);
            if full.exists() {
                Location::Local(full)
            } else {
                Location::Local(dir.join(key.rsplit('/').next().unwrap_or(key)))
            }
        }
    }
}

pub(super) fn sibling(location: &Location, name: &str) -> Location {
    match location {
        Location::S3(object) => {
            let key = match object.key.rsplit_once('/') {
                Some((dir, _)) => format!("{dir}/{name}"),
                None => name.to_string(),
            };
            Location::S3(ManifestObject {
                bucket: object.bucket.clone(),
                key,
                version_id: None,
                etag: None,
            })
        }
        Location::Local(path) => Location::Local(path.with_file_name(name)),
    }
}

pub(super) fn read_inventory(
    reader: &Reader,
    location: &Location,
    expected_etag: Option<&str>,
    progress: PlanProgress,
    options: &SourceOptions,
    emitter: &Emitter,
) -> Result<()> {
    let mut planner = match Planner::new(
        options.chunk_size,
        progress.clone(),
        options.keep_etags,
        options.as_of.as_deref(),
        false,
    ) {
        Ok(p) => p,
        Err(reason) => return job_failure(emitter, "ManifestInvalid", reason),
    };
    let mut sink = PlannerSink {
        planner: &mut planner,
        out: Vec::new(),
    };
    let needs_versions = options.as_of.is_some();
    match read_inventory_files(
        reader,
        location,
        expected_etag,
        progress.cursor.clone(),
        needs_versions,
        &mut sink,
        emitter,
    )? {
        Some(end) => finish(&mut planner, &end, emitter),
        None => Ok(()),
    }
}

/// Verifies an inventory report (manifest.json, its checksum, each file's MD5) and reads its
/// files from `cursor` into `sink`. `Some(end cursor)` when all files were read.
pub(super) fn read_inventory_files<S: LineSink>(
    reader: &Reader,
    location: &Location,
    expected_etag: Option<&str>,
    mut cursor: Cursor,
    needs_versions: bool,
    sink: &mut S,
    emitter: &Emitter,
) -> Result<Option<Cursor>> {
    let stop = |result: Result<()>| result.map(|_| None);
    let manifest_json = match reader.open(location, 0, expected_etag) {
        Ok(mut opened) => {
            let mut body = Vec::new();
            opened
                .reader
                .read_to_end(&mut body)
                .map_err(|e| Error::Data(e.to_string()))?;
            if let Some(etag) = opened.etag {
                if let Some(expected) = expected_etag {
                    if !same_etag(expected, &etag) {
                        return stop(job_failure(emitter, "ManifestETagMismatch", format!("Manifest.Location.ETag: {} has ETag {etag}, but the job expects {expected}; the manifest changed after the job was created", location.describe())));
                    }
                }
                if !emitter.send_blocking(Ok(SourceEvent::ManifestEtag(etag))) {
                    return Ok(None);
                }
            }
            body
        }
        Err(failure) => return stop(open_failure(emitter, failure)),
    };
    let url = location.describe();
    match reader.read_all(&sibling(location, "manifest.checksum")) {
        Ok(checksum) => {
            if let Err(err) =
                verify_manifest_checksum(&manifest_json, &String::from_utf8_lossy(&checksum))
            {
                return stop(job_failure(
                    emitter,
                    "ManifestChecksumMismatch",
                    format!("{url}: {err}"),
                ));
            }
        }
        Err(OpenFailure::Job { .. }) => {
            return stop(job_failure(
                emitter,
                "ManifestChecksumMissing",
                format!("{url}: manifest.checksum is missing next to manifest.json"),
            ));
        }
        Err(failure) => return stop(open_failure(emitter, failure)),
    }
    let manifest = match InventoryManifest::parse(&manifest_json) {
        Ok(m) => m,
        Err(err) => {
            return stop(job_failure(
                emitter,
                "ManifestInvalid",
                format!("{url}: {err}"),
            ))
        }
    };
    if let Err(reason) = sink.check_report(&manifest) {
        return stop(job_failure(
            emitter,
            sink.failure_code("ManifestInvalid"),
            format!("{url}: {reason}"),
        ));
    }
    let schema = if manifest.file_format == InventoryFormat::Csv {
        match InventorySchema::parse(&manifest.file_schema) {
            Ok(schema) => Some(schema),
            Err(err) => {
                return stop(job_failure(
                    emitter,
                    "ManifestInvalid",
                    format!("{url}: {err}"),
                ))
            }
        }
    } else {
        None
    };
    if needs_versions {
        let has_versions = match &schema {
            Some(s) => s.version_id.is_some() && s.last_modified.is_some(),
            None => {
                manifest.file_schema.contains("version_id")
                    && manifest.file_schema.contains("last_modified_date")
            }
        };
        if !has_versions {
            return stop(job_failure(emitter, "ManifestInvalid", format!("{url}: this needs an inventory with all versions (VersionId and LastModifiedDate columns)")));
        }
    }
    while (cursor.file_index as usize) < manifest.files.len() {
        let file = &manifest.files[cursor.file_index as usize];
        let data = data_file_location(location, &manifest, &file.key);
        let name = data.describe();
        let skip = cursor.file_line;
        let md5 = match &schema {
            Some(schema) => {
                let opened = match reader.open(&data, 0, None) {
                    Ok(o) => o,
                    Err(failure) => return stop(open_failure(emitter, failure)),
                };
                // Decompression runs on its own thread, parsing on this one: on two cores the
                // pair keeps pace with `gzip -dc` alone.
                let (gz, decompressor) = spawn_gunzip(opened.reader);
                let mut parser = InventoryCsvParser::new(schema.clone(), file.key.clone());
                let start = Cursor {
                    offset: 0,
                    ..cursor.clone()
                };
                let fed = feed_lines(
                    BufReader::with_capacity(256 * 1024, gz),
                    &mut parser,
                    sink,
                    start,
                    skip,
                    true,
                    emitter,
                    &name,
                    "ManifestVersionIdsMixed",
                )?;
                let md5 = decompressor
                    .join()
                    .map_err(|_| Error::Data(format!("{name}: the decompressor thread panicked")))?
                    .map_err(|e| Error::Data(format!("{name}: {e}")))?;
                let Some(end) = fed else { return Ok(None) };
                cursor = end;
                md5
            }
            None => match read_columnar(
                reader,
                &data,
                manifest.file_format,
                sink,
                &mut cursor,
                skip,
                emitter,
            )? {
                Some(md5) => md5,
                None => return Ok(None),
            },
        };
        if let Err(err) = verify_file_checksum(file, &md5) {
            return stop(job_failure(
                emitter,
                "ManifestChecksumMismatch",
                format!("{url}: {err}"),
            ));
        }
        cursor.file_index += 1;
        cursor.file_line = 0;
        cursor.offset = 0;
    }
    Ok(Some(cursor))
}

/// An S3 Inventory report (`location` is its manifest.json).
pub(super) struct InventoryReport {
    pub(super) location: Location,
    pub(super) expected_etag: Option<String>,
}

impl ManifestReader for InventoryReport {
    fn read(
        &self,
        reader: &Reader,
        progress: PlanProgress,
        options: &SourceOptions,
        emitter: &Emitter,
    ) -> Result<()> {
        read_inventory(
            reader,
            &self.location,
            self.expected_etag.as_deref(),
            progress,
            options,
            emitter,
        )
    }
}
