use super::*;
use crate::error::Result;
use crate::objects::same_etag;
use batchops_core::manifest::{CsvManifestParser, ManifestFields};
use batchops_core::plan::{PlanProgress, Planner};
use std::io::BufReader;

pub(super) fn read_csv(
    reader: &Reader,
    location: &Location,
    fields: ManifestFields,
    expected_etag: Option<&str>,
    progress: PlanProgress,
    options: &SourceOptions,
    emitter: &Emitter,
) -> Result<()> {
    let check_versions = fields.has_version();
    let mut planner = match Planner::new(
        options.chunk_size,
        progress.clone(),
        options.keep_etags,
        None,
        check_versions,
    ) {
        Ok(p) => p,
        Err(reason) => return job_failure(emitter, "ManifestInvalid", reason),
    };
    let start = progress.cursor.clone();
    let opened = match reader.open(location, start.offset, expected_etag) {
        Ok(opened) => opened,
        // Resuming exactly at the end of the manifest: nothing left to read.
        Err(OpenFailure::RangeNotSatisfiable) if start.offset > 0 => {
            return finish(&mut planner, &start, emitter)
        }
        Err(failure) => return open_failure(emitter, failure),
    };
    if let Some(etag) = &opened.etag {
        if let Some(expected) = expected_etag {
            // Emulators may ignore If-Match; compare as well.
            if !same_etag(expected, etag) {
                return job_failure(
                    emitter,
                    "ManifestETagMismatch",
                    format!("Manifest.Location.ETag: {} has ETag {etag}, but the job expects {expected}; the manifest changed after the job was created", location.describe()),
                );
            }
        }
        if !emitter.send_blocking(Ok(SourceEvent::ManifestEtag(etag.clone()))) {
            return Ok(());
        }
    }
    let mut parser = CsvManifestParser::new(fields);
    let buffered = BufReader::with_capacity(256 * 1024, opened.reader);
    let mut sink = PlannerSink {
        planner: &mut planner,
        out: Vec::new(),
    };
    match feed_lines(
        buffered,
        &mut parser,
        &mut sink,
        start,
        0,
        false,
        emitter,
        &location.describe(),
        "ManifestVersionIdsMixed",
    )? {
        Some(end) => finish(&mut planner, &end, emitter),
        None => Ok(()),
    }
}

/// A `S3BatchOperations_CSV_20180820` manifest.
pub(super) struct CsvManifest {
    pub(super) location: Location,
    pub(super) fields: ManifestFields,
    pub(super) expected_etag: Option<String>,
}

impl ManifestReader for CsvManifest {
    fn read(
        &self,
        reader: &Reader,
        progress: PlanProgress,
        options: &SourceOptions,
        emitter: &Emitter,
    ) -> Result<()> {
        read_csv(
            reader,
            &self.location,
            self.fields.clone(),
            self.expected_etag.as_deref(),
            progress,
            options,
            emitter,
        )
    }
}
