//! The job's operation, validated: one variant per operation batchops runs, chosen from the
//! CreateJob request's `Operation` (see `request::Operation` for the request's shape). The
//! worker runs it through the aws crate's `ops` without naming a variant.

use crate::export::ExportSpec;
use crate::invoke::InvokeSpec;
use crate::request::CopySpec;
use serde::{Deserialize, Serialize};

/// The operations batchops runs.
// One per job (record, spec), never in a collection: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperationSpec {
    /// `S3PutObjectCopy` (also every backup run and restore).
    Copy(CopySpec),
    /// `LambdaInvoke`: the job's function, invoked once per task.
    LambdaInvoke(InvokeSpec),
    /// An export: each task streams its object version into another object store.
    Export(ExportSpec),
}

impl OperationSpec {
    /// The operation's name in S3 Control's `Operation` (for messages and field paths).
    pub fn name(&self) -> &'static str {
        match self {
            OperationSpec::Copy(_) => "S3PutObjectCopy",
            OperationSpec::LambdaInvoke(_) => "LambdaInvoke",
            OperationSpec::Export(_) => "BatchopsExport",
        }
    }

    /// The bucket the operation writes to besides the manifest's objects (a copy's target).
    pub fn target_bucket(&self) -> Option<&str> {
        match self {
            OperationSpec::Copy(copy) => Some(&copy.target_bucket),
            OperationSpec::LambdaInvoke(_) | OperationSpec::Export(_) => None,
        }
    }

    /// The export, for export jobs.
    pub fn export(&self) -> Option<&ExportSpec> {
        match self {
            OperationSpec::Export(export) => Some(export),
            _ => None,
        }
    }

    /// The copy, for jobs that copy (backups, restores, S3PutObjectCopy).
    pub fn copy(&self) -> Option<&CopySpec> {
        match self {
            OperationSpec::Copy(copy) => Some(copy),
            OperationSpec::LambdaInvoke(_) | OperationSpec::Export(_) => None,
        }
    }
}

/// Reads a stored job's operation: `operation` as written today, or the `copy` field job records
/// held before other operations existed (then always a copy).
pub(crate) fn operation_or_stored_copy<'de, D>(deserializer: D) -> Result<OperationSpec, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Operation(OperationSpec),
        Copy(CopySpec),
    }
    Ok(match Stored::deserialize(deserializer)? {
        Stored::Operation(operation) => operation,
        Stored::Copy(copy) => OperationSpec::Copy(copy),
    })
}
