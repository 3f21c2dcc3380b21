//! Integration tests against moto over HTTP (started by scripts/test.sh).

mod api;
mod backups;
mod catalog_io;
mod copy_options;
mod events;
mod export_resume;
mod exports;
mod harness;
mod import_resume;
mod imports;
mod invoke;
mod job_path;
mod lambda_events;
mod manifests;
mod operations;
mod page;
mod planning;
mod recovery;
mod report;
mod rerun;
mod roles;
mod runtime_stop;
mod s3control;
mod verify;
