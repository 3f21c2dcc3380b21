//! Chunk files: the planner's unit of dispatch. A chunk is a small text file in the control
//! bucket holding up to `chunk_size` tasks, one per line, in manifest order, so a worker can
//! resume at any task index and a replayed chunk always holds the same tasks.
//!
//! Line format (tab-separated, every free-text field URL-encoded so no tab or newline survives):
//! `O <manifest line> <bucket> <encoded key> <version or empty> <etag or empty> <size or empty>`
//! for an object (version and ETag pin the task when known),
//! `M <manifest line> <bucket> <encoded key> <encoded message>` for a malformed manifest line,
//! `R <line> <bucket> <encoded key> <version> <encoded target key>` for a restore (copy a backup
//! version back to its original key), `X <line> <bucket> <encoded key>` for a delete marker,
//! `F <line> <bucket> <encoded key> <version> <code> <encoded message>` for a task refused at
//! planning (past the job's task limit): it fails without an S3 call,
//! `I <line> <bucket> <encoded key> <version> <encoded etag> <size> <last-modified>` for an
//! object of another store to import (its identity as the store listed it).

use crate::encoding::{decode_key, encode_key};
use crate::manifest::{MalformedLine, ObjectRef};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkTask {
    Object {
        line: u64,
        object: ObjectRef,
        /// Sent as `x-amz-copy-source-if-match` when known (snapshot pinning).
        etag: Option<String>,
        size: Option<u64>,
    },
    Malformed(MalformedLine),
    /// Copy `object` (a backup copy) to `target_key` under the job's target prefix.
    Restore {
        line: u64,
        object: ObjectRef,
        target_key: String,
    },
    /// Put a delete marker on `object` (backups propagating a source deletion).
    Delete {
        line: u64,
        object: ObjectRef,
    },
    /// Copy an object of another store into S3 (an import): `object` names it in that store
    /// (bucket or container, full key, version), with the identity its listing gave.
    Import {
        line: u64,
        object: ObjectRef,
        etag: Option<String>,
        size: u64,
        /// RFC 3339, whole seconds.
        last_modified: Option<String>,
    },
    /// A task refused at planning (e.g. past a delete job's MaxDeletes): it fails with `code`.
    Refused {
        line: u64,
        object: ObjectRef,
        code: String,
        message: String,
    },
}

impl ChunkTask {
    /// A failed report row for this task (a task batchops gave up on without an S3 answer).
    pub fn failed_outcome(
        &self,
        http_status: u16,
        error_code: &str,
        message: String,
    ) -> crate::report::TaskOutcome {
        let (bucket, key_encoded, version_id) = match self {
            ChunkTask::Object { object, .. }
            | ChunkTask::Restore { object, .. }
            | ChunkTask::Delete { object, .. }
            | ChunkTask::Import { object, .. }
            | ChunkTask::Refused { object, .. } => (
                object.bucket.clone(),
                encode_key(&object.key),
                object.version_id.clone(),
            ),
            ChunkTask::Malformed(m) => (m.bucket.clone(), m.key_encoded.clone(), None),
        };
        crate::report::TaskOutcome {
            bucket,
            key_encoded,
            version_id,
            status: crate::report::TaskStatus::Failed,
            http_status,
            error_code: Some(error_code.to_string()),
            message,
            bytes: 0,
            dest_version: None,
        }
    }

    /// Appends this task's line to a chunk file body.
    pub fn write_line(&self, out: &mut String) {
        use std::fmt::Write;
        match self {
            ChunkTask::Object {
                line,
                object,
                etag,
                size,
            } => {
                let _ = write!(
                    out,
                    "O\t{line}\t{}\t{}\t{}\t{}\t",
                    object.bucket,
                    encode_key(&object.key),
                    object.version_id.as_deref().unwrap_or(""),
                    etag.as_deref().unwrap_or("")
                );
                if let Some(size) = size {
                    let _ = write!(out, "{size}");
                }
                out.push('\n');
            }
            ChunkTask::Restore {
                line,
                object,
                target_key,
            } => {
                let _ = writeln!(
                    out,
                    "R\t{line}\t{}\t{}\t{}\t{}",
                    object.bucket,
                    encode_key(&object.key),
                    object.version_id.as_deref().unwrap_or(""),
                    encode_key(target_key)
                );
            }
            ChunkTask::Import {
                line,
                object,
                etag,
                size,
                last_modified,
            } => {
                let _ = writeln!(
                    out,
                    "I\t{line}\t{}\t{}\t{}\t{}\t{size}\t{}",
                    object.bucket,
                    encode_key(&object.key),
                    encode_key(object.version_id.as_deref().unwrap_or("")),
                    encode_key(etag.as_deref().unwrap_or("")),
                    last_modified.as_deref().unwrap_or("")
                );
            }
            ChunkTask::Delete { line, object } => {
                let _ = writeln!(
                    out,
                    "X\t{line}\t{}\t{}",
                    object.bucket,
                    encode_key(&object.key)
                );
            }
            ChunkTask::Refused {
                line,
                object,
                code,
                message,
            } => {
                let _ = writeln!(
                    out,
                    "F\t{line}\t{}\t{}\t{}\t{}\t{}",
                    object.bucket,
                    encode_key(&object.key),
                    object.version_id.as_deref().unwrap_or(""),
                    encode_key(code),
                    encode_key(message)
                );
            }
            ChunkTask::Malformed(m) => {
                let _ = writeln!(
                    out,
                    "M\t{}\t{}\t{}\t{}",
                    m.line,
                    encode_key(&m.bucket),
                    m.key_encoded.replace(['\t', '\n', '\r'], " "),
                    encode_key(&m.message)
                );
            }
        }
    }

    pub fn manifest_line(&self) -> u64 {
        match self {
            ChunkTask::Object { line, .. }
            | ChunkTask::Restore { line, .. }
            | ChunkTask::Delete { line, .. }
            | ChunkTask::Import { line, .. }
            | ChunkTask::Refused { line, .. } => *line,
            ChunkTask::Malformed(m) => m.line,
        }
    }

    /// The object the task acts on (None for a malformed line).
    pub fn object(&self) -> Option<&ObjectRef> {
        match self {
            ChunkTask::Object { object, .. }
            | ChunkTask::Restore { object, .. }
            | ChunkTask::Delete { object, .. }
            | ChunkTask::Import { object, .. }
            | ChunkTask::Refused { object, .. } => Some(object),
            ChunkTask::Malformed(_) => None,
        }
    }

    /// This task refused with `code` and `message` (a malformed line stays as it is: it fails
    /// anyway, saying why).
    pub fn refused(&self, code: &str, message: &str) -> ChunkTask {
        match self.object() {
            Some(object) => ChunkTask::Refused {
                line: self.manifest_line(),
                object: object.clone(),
                code: code.to_string(),
                message: message.to_string(),
            },
            None => self.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("chunk file line {line}: {message}")]
pub struct ChunkFormatError {
    pub line: usize,
    pub message: String,
}

/// Reads a whole chunk file body back into tasks.
pub fn parse_chunk(body: &str) -> Result<Vec<ChunkTask>, ChunkFormatError> {
    body.lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| {
            parse_chunk_line(l).map_err(|message| ChunkFormatError {
                line: i + 1,
                message,
            })
        })
        .collect()
}

fn parse_chunk_line(line: &str) -> Result<ChunkTask, String> {
    let parts: Vec<&str> = line.split('\t').collect();
    let manifest_line = |s: &str| {
        s.parse::<u64>()
            .map_err(|_| format!("bad line number `{s}`"))
    };
    let decode = |s: &str| decode_key(s).map_err(|e| e.to_string());
    match parts.as_slice() {
        ["O", line, bucket, key, version, etag, size] => Ok(ChunkTask::Object {
            line: manifest_line(line)?,
            object: ObjectRef {
                bucket: bucket.to_string(),
                key: decode(key)?,
                version_id: (!version.is_empty()).then(|| version.to_string()),
            },
            etag: (!etag.is_empty()).then(|| etag.to_string()),
            size: if size.is_empty() {
                None
            } else {
                Some(size.parse().map_err(|_| format!("bad size `{size}`"))?)
            },
        }),
        ["R", line, bucket, key, version, target] => Ok(ChunkTask::Restore {
            line: manifest_line(line)?,
            object: ObjectRef {
                bucket: bucket.to_string(),
                key: decode(key)?,
                version_id: (!version.is_empty()).then(|| version.to_string()),
            },
            target_key: decode(target)?,
        }),
        ["I", line, bucket, key, version, etag, size, last_modified] => {
            let version = decode(version)?;
            let etag = decode(etag)?;
            Ok(ChunkTask::Import {
                line: manifest_line(line)?,
                object: ObjectRef {
                    bucket: bucket.to_string(),
                    key: decode(key)?,
                    version_id: (!version.is_empty()).then_some(version),
                },
                etag: (!etag.is_empty()).then_some(etag),
                size: size.parse().map_err(|_| format!("bad size `{size}`"))?,
                last_modified: (!last_modified.is_empty()).then(|| last_modified.to_string()),
            })
        }
        ["X", line, bucket, key] => Ok(ChunkTask::Delete {
            line: manifest_line(line)?,
            object: ObjectRef {
                bucket: bucket.to_string(),
                key: decode(key)?,
                version_id: None,
            },
        }),
        ["F", line, bucket, key, version, code, message] => Ok(ChunkTask::Refused {
            line: manifest_line(line)?,
            object: ObjectRef {
                bucket: bucket.to_string(),
                key: decode(key)?,
                version_id: (!version.is_empty()).then(|| version.to_string()),
            },
            code: decode(code)?,
            message: decode(message)?,
        }),
        ["M", line, bucket, key, message] => Ok(ChunkTask::Malformed(MalformedLine {
            line: manifest_line(line)?,
            bucket: decode(bucket)?,
            key_encoded: key.to_string(),
            message: decode(message)?,
        })),
        _ => Err(format!(
            "expected a task line (O: 7 fields, M: 5, R: 6, X: 4, F: 7, I: 8), got `{line}`"
        )),
    }
}

/// Where chunk `seq` of a job lives in the control bucket.
pub fn chunk_key(job_id: &str, seq: u64) -> String {
    format!("jobs/{job_id}/chunks/{seq:010}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_objects_and_malformed_lines() {
        let tasks = vec![
            ChunkTask::Object {
                line: 1,
                object: ObjectRef {
                    bucket: "src".into(),
                    key: "a b/+%\t✓".into(),
                    version_id: Some("null".into()),
                },
                etag: Some("\"0cc175b9c0f1b6a831c399e269772661\"".into()),
                size: Some(17),
            },
            ChunkTask::Object {
                line: 3,
                object: ObjectRef {
                    bucket: "src".into(),
                    key: "plain".into(),
                    version_id: None,
                },
                etag: None,
                size: None,
            },
            ChunkTask::Restore {
                line: 5,
                object: ObjectRef {
                    bucket: "vault".into(),
                    key: "b/a b".into(),
                    version_id: Some("v".into()),
                },
                target_key: "a b".into(),
            },
            ChunkTask::Delete {
                line: 6,
                object: ObjectRef {
                    bucket: "vault".into(),
                    key: "b/gone%".into(),
                    version_id: None,
                },
            },
            ChunkTask::Refused {
                line: 7,
                object: ObjectRef {
                    bucket: "src".into(),
                    key: "over the\tlimit".into(),
                    version_id: Some("v7".into()),
                },
                code: "MaxDeletesExceeded".into(),
                message: "not deleted: the job's MaxDeletes (1) allows no more".into(),
            },
            ChunkTask::Malformed(MalformedLine {
                line: 4,
                bucket: "".into(),
                key_encoded: "src%2Cx".into(),
                message: "manifest line 4: expected 2 fields (Bucket, Key), found 1".into(),
            }),
            ChunkTask::Import {
                line: 8,
                object: ObjectRef {
                    bucket: "theirs".into(),
                    key: "exp/ünï\tcode %41+".into(),
                    version_id: Some("v 1".into()),
                },
                etag: Some("\"0x8D tab\t\"".into()),
                size: 20 << 20,
                last_modified: Some("2026-12-02T10:00:00Z".into()),
            },
            ChunkTask::Import {
                line: 9,
                object: ObjectRef {
                    bucket: "theirs".into(),
                    key: "plain".into(),
                    version_id: None,
                },
                etag: None,
                size: 0,
                last_modified: None,
            },
        ];
        let mut body = String::new();
        for t in &tasks {
            t.write_line(&mut body);
        }
        assert_eq!(body.lines().count(), 8);
        assert_eq!(parse_chunk(&body).unwrap(), tasks);
    }

    #[test]
    fn corrupt_chunk_names_the_line() {
        let err = parse_chunk("O\t1\tb\tk\t\t\t\nX\n").unwrap_err();
        assert_eq!(err.line, 2);
    }

    #[test]
    fn chunk_keys_sort_by_sequence() {
        assert!(chunk_key("j", 9) < chunk_key("j", 10));
    }
}
