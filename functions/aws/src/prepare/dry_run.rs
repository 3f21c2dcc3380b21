use super::*;
use crate::error::{Error, Result};
use batchops_core::plan::PlanProgress;

/// What a dry run found: the same prepare step as a job's, with nothing written.
#[derive(Debug, Clone)]
pub struct DryRunReport {
    pub progress: PlanProgress,
    pub stats: WriteStats,
    pub elapsed: std::time::Duration,
    /// Set when the manifest could not run at all (the job would fail with this).
    pub failure: Option<(String, String)>,
}

impl DryRunReport {
    /// Manifest lines (or listed entries) read per second.
    pub fn lines_per_second(&self) -> f64 {
        self.progress.cursor.line as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs the prepare step over a whole manifest without creating a job or writing anything.
pub async fn dry_run(
    reader: Reader,
    source: SourceSpec,
    options: SourceOptions,
    writer: &mut ChunkWriter,
) -> Result<DryRunReport> {
    let started = std::time::Instant::now();
    let mut events = start(reader, source, PlanProgress::default(), options);
    while let Some(event) = events.recv().await {
        match event? {
            SourceEvent::ManifestEtag(_) | SourceEvent::Warning(_) | SourceEvent::Draft { .. } => {}
            SourceEvent::Chunk(mut chunk) => writer.write(&mut chunk).await?,
            SourceEvent::Failed { code, reason } => {
                return Ok(DryRunReport {
                    progress: PlanProgress::default(),
                    stats: writer.stats.clone(),
                    elapsed: started.elapsed(),
                    failure: Some((code.to_string(), reason)),
                })
            }
            SourceEvent::Finished(progress) => {
                return Ok(DryRunReport {
                    progress,
                    stats: writer.stats.clone(),
                    elapsed: started.elapsed(),
                    failure: None,
                })
            }
        }
    }
    Err(Error::Data(
        "the manifest reader stopped without finishing".into(),
    ))
}
