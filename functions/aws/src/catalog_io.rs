//! batchops' own metadata in S3 (snapshot catalogs, superseded lists, journal parts), in bounded
//! memory whatever its size: written by a streamed upload (a multipart upload of fixed-size
//! parts once it outgrows one part), and read back as a stream pinned to the version and ETag it
//! was written with. A read whose connection breaks resumes with a ranged GET at the byte it
//! reached, pinned the same way, so nothing is copied to local disk first.

use crate::error::{Error, Result, S3Failure};
use crate::objects::put_bytes_pinned;
use crate::prepare::Reader;
use crate::App;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use base64::Engine;
use batchops_core::backup::CatalogEntry;
use batchops_core::request::CatalogRef;
use md5::{Digest, Md5};
use std::io::{BufRead, BufReader, Read, Write};

/// An object as written: read back only if it is still this version with this ETag (either
/// may be unknown for objects written before they were recorded, or in unversioned buckets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectPin {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    pub etag: Option<String>,
}

impl ObjectPin {
    pub fn of_catalog(catalog: &CatalogRef) -> Self {
        ObjectPin {
            bucket: catalog.bucket.clone(),
            key: catalog.key.clone(),
            version_id: catalog.version_id.clone(),
            etag: catalog.etag.clone(),
        }
    }

    /// `s3://bucket/key (version v)`.
    pub fn describe(&self) -> String {
        format!(
            "s3://{}/{} (version {})",
            self.bucket,
            self.key,
            self.version_id.as_deref().unwrap_or("null")
        )
    }
}

/// Why a pinned object cannot be read.
#[derive(Debug)]
pub enum PinFailure {
    /// The recorded version (or the key) no longer exists.
    Gone(String),
    /// The object at the recorded version (or key) is not the one written: another ETag.
    Changed(String),
    /// Anything else (worth retrying).
    Other(Error),
}

impl PinFailure {
    /// As an error: a gone or changed object is a data error (no retry brings it back), named
    /// as `what` (e.g. "snapshot catalog").
    pub fn into_error(self, what: &str) -> Error {
        match self {
            PinFailure::Gone(reason) | PinFailure::Changed(reason) => {
                Error::Data(format!("{what} {reason}"))
            }
            PinFailure::Other(err) => err,
        }
    }
}

impl std::fmt::Display for PinFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PinFailure::Gone(reason) | PinFailure::Changed(reason) => f.write_str(reason),
            PinFailure::Other(err) => write!(f, "{err}"),
        }
    }
}

/// A body from `offset` on, and the object's whole length (when the answer says it).
type Opened = (Box<dyn Read + Send>, Option<u64>);
/// Opens the object from a byte offset.
type Opener = Box<dyn FnMut(u64) -> std::result::Result<Opened, PinFailure> + Send>;

/// How many times one read may reopen a broken stream in a row before it gives up.
const MAX_RESUMES: u32 = 5;

/// A pinned object as a byte stream; a stream that breaks (an error, or its end before the
/// object's length) is reopened at the byte reached.
pub struct PinnedRead {
    open: Opener,
    body: Option<Box<dyn Read + Send>>,
    offset: u64,
    /// Unknown (no Content-Length): the body's end is the object's.
    length: Option<u64>,
    /// Reopens since bytes last arrived.
    resumes: u32,
    /// Reopens in all (tests and logs).
    pub reopened: u64,
    what: String,
    /// Wait before a second and later reopen in a row (doubling).
    pause: std::time::Duration,
}

impl PinnedRead {
    /// Opens from byte 0 (failing here with what is wrong), reopening later as needed.
    pub fn new(mut open: Opener, what: String) -> std::result::Result<Self, PinFailure> {
        let (body, length) = open(0)?;
        Ok(PinnedRead {
            open,
            body: Some(body),
            offset: 0,
            length,
            resumes: 0,
            reopened: 0,
            what,
            pause: std::time::Duration::from_millis(100),
        })
    }

    fn broke(&mut self, why: String) -> std::io::Result<()> {
        self.body = None;
        if self.resumes >= MAX_RESUMES {
            return Err(std::io::Error::other(format!(
                "{}: the stream broke at byte {} of {} {} times in a row: {why}",
                self.what,
                self.offset,
                self.length.unwrap_or_default(),
                self.resumes
            )));
        }
        self.resumes += 1;
        self.reopened += 1;
        tracing::warn!(what = %self.what, offset = self.offset, length = ?self.length, why, "metadata stream broke; resuming with a ranged GET");
        if self.resumes > 1 {
            std::thread::sleep(self.pause * (1 << (self.resumes - 2)));
        }
        Ok(())
    }
}

impl Read for PinnedRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.length.is_some_and(|length| self.offset >= length) || buf.is_empty() {
                return Ok(0);
            }
            let body = match self.body.as_mut() {
                Some(body) => body,
                None => match (self.open)(self.offset) {
                    Ok((body, length)) if length == self.length => self.body.insert(body),
                    Ok((_, length)) => {
                        return Err(std::io::Error::other(format!(
                            "{} is {length:?} bytes long now, {:?} when first read",
                            self.what, self.length
                        )))
                    }
                    // Replaced or gone since the first byte: no resume brings the same bytes.
                    Err(failure @ (PinFailure::Gone(_) | PinFailure::Changed(_))) => {
                        return Err(std::io::Error::other(failure.to_string()))
                    }
                    Err(PinFailure::Other(err)) => {
                        self.broke(err.to_string())?;
                        continue;
                    }
                },
            };
            match body.read(buf) {
                Ok(0) if self.length.is_none() => return Ok(0),
                Ok(0) => self.broke(format!(
                    "the body ended at byte {} of {}",
                    self.offset,
                    self.length.unwrap_or_default()
                ))?,
                Ok(n) => {
                    self.offset += n as u64;
                    self.resumes = 0;
                    return Ok(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => self.broke(e.to_string())?,
            }
        }
    }
}

/// Opens `pin` for reading (blocking: call from a blocking thread), pinned to its version and
/// ETag where known.
pub fn open_pinned(
    reader: &Reader,
    pin: &ObjectPin,
) -> std::result::Result<PinnedRead, PinFailure> {
    let s3 = reader.s3_for(&pin.bucket).map_err(PinFailure::Other)?;
    let handle = reader.handle.clone();
    let what = pin.describe();
    let pin = pin.clone();
    let open = move |offset: u64| -> std::result::Result<Opened, PinFailure> {
        let mut request = s3
            .get_object()
            .bucket(&pin.bucket)
            .key(&pin.key)
            .set_version_id(pin.version_id.clone())
            .set_if_match(pin.etag.clone());
        if offset > 0 {
            request = request.range(format!("bytes={offset}-"));
        }
        match handle.block_on(request.send()) {
            Ok(out) => {
                let length = out
                    .content_length()
                    .and_then(|n| u64::try_from(n).ok())
                    .map(|n| offset + n);
                let body = tokio_util::io::SyncIoBridge::new_with_handle(
                    out.body.into_async_read(),
                    handle.clone(),
                );
                Ok((Box::new(body), length))
            }
            Err(err) => {
                let failure = S3Failure::from_sdk(&err);
                Err(match failure.status {
                    Some(404) => PinFailure::Gone(format!(
                        "{} is gone: {} ({})",
                        pin.describe(),
                        failure.code.unwrap_or_default(),
                        failure.message
                    )),
                    Some(412) => {
                        let now = handle.block_on(crate::objects::etag_now(
                            &s3,
                            &pin.bucket,
                            &pin.key,
                            pin.version_id.as_deref(),
                        ));
                        PinFailure::Changed(format!(
                            "{} no longer has the ETag {} it was written with (now {now}): it was replaced or damaged",
                            pin.describe(),
                            pin.etag.as_deref().unwrap_or_default()
                        ))
                    }
                    _ => PinFailure::Other(Error::aws_call(
                        "S3",
                        "GetObject",
                        &format!("s3://{}/{}", pin.bucket, pin.key),
                        &err,
                    )),
                })
            }
        }
    };
    PinnedRead::new(Box::new(open), what)
}

/// The entries of a snapshot catalog (or superseded list), streamed pinned to the version and
/// ETag recorded with it: a catalog replaced or damaged since fails the read, naming it.
pub fn open_catalog(
    reader: &Reader,
    catalog: &CatalogRef,
) -> Result<Box<dyn Iterator<Item = std::result::Result<CatalogEntry, String>> + Send>> {
    open_catalog_pinned(reader, catalog).map_err(|f| f.into_error("snapshot catalog"))
}

/// [`open_catalog`], telling a gone catalog from other failures.
pub fn open_catalog_pinned(
    reader: &Reader,
    catalog: &CatalogRef,
) -> std::result::Result<
    Box<dyn Iterator<Item = std::result::Result<CatalogEntry, String>> + Send>,
    PinFailure,
> {
    let stream = open_pinned(reader, &ObjectPin::of_catalog(catalog))?;
    let name = format!("s3://{}/{}", catalog.bucket, catalog.key);
    let lines = BufReader::with_capacity(
        256 * 1024,
        flate2::read::MultiGzDecoder::new(BufReader::with_capacity(256 * 1024, stream)),
    )
    .lines();
    Ok(Box::new(lines.filter_map(move |line| {
        match line {
            Err(e) => Some(Err(format!("{name}: {e}"))),
            Ok(line) => CatalogEntry::parse_line(&line)
                .map_err(|e| format!("{name}: {e}"))
                .transpose(),
        }
    })))
}

/// The lines of a pinned text object (a journal part), streamed.
pub fn pinned_lines(
    reader: &Reader,
    pin: &ObjectPin,
) -> std::result::Result<std::io::Lines<BufReader<PinnedRead>>, PinFailure> {
    Ok(BufReader::with_capacity(256 * 1024, open_pinned(reader, pin)?).lines())
}

/// What a streamed upload encodes into: bytes pile up in its buffer until a part is taken.
pub trait Encoder: Write {
    fn buffer(&mut self) -> &mut Vec<u8>;
    fn finish_encoding(self) -> std::io::Result<Vec<u8>>;
}

/// Text as is (journal parts).
impl Encoder for Vec<u8> {
    fn buffer(&mut self) -> &mut Vec<u8> {
        self
    }
    fn finish_encoding(self) -> std::io::Result<Vec<u8>> {
        Ok(self)
    }
}

/// Gzip (catalogs, superseded lists).
impl Encoder for flate2::write::GzEncoder<Vec<u8>> {
    fn buffer(&mut self) -> &mut Vec<u8> {
        self.get_mut()
    }
    fn finish_encoding(self) -> std::io::Result<Vec<u8>> {
        self.finish()
    }
}

/// Where a streamed upload records its multipart upload while it is open, so that a retry of
/// an interrupted writer aborts it (see [`abort_recorded_uploads`]).
#[derive(Debug, Clone)]
pub struct UploadLedger {
    /// The table partition (a job's) that holds the records.
    pub pk: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct OpenUpload {
    bucket: String,
    key: String,
    upload_id: String,
}

const OPEN_UPLOAD_PREFIX: &str = "OPENUPLOAD#";

/// Aborts the multipart uploads an earlier, interrupted writer left open under `ledger`, each
/// with `clients`' client for its bucket (the writer's).
pub async fn abort_recorded_uploads(
    app: &App,
    clients: &crate::clients::JobClients,
    ledger: &UploadLedger,
) -> Result<()> {
    let open: Vec<OpenUpload> = app.store.query_docs(&ledger.pk, OPEN_UPLOAD_PREFIX).await?;
    for upload in open {
        abort(&clients.s3(&upload.bucket).await, &upload).await?;
        tracing::info!(bucket = %upload.bucket, key = %upload.key, upload_id = %upload.upload_id, "aborted an interrupted writer's upload");
        app.store
            .delete_doc(&ledger.pk, &open_upload_sk(&upload.upload_id))
            .await?;
    }
    Ok(())
}

fn open_upload_sk(upload_id: &str) -> String {
    format!("{OPEN_UPLOAD_PREFIX}{upload_id}")
}

async fn abort(s3: &aws_sdk_s3::Client, upload: &OpenUpload) -> Result<()> {
    match s3
        .abort_multipart_upload()
        .bucket(&upload.bucket)
        .key(&upload.key)
        .upload_id(&upload.upload_id)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(err) if aws_sdk_s3::error::ProvideErrorMetadata::code(&err) == Some("NoSuchUpload") => {
            Ok(())
        }
        Err(err) => Err(Error::aws_call(
            "S3",
            "AbortMultipartUpload",
            &format!(
                "s3://{}/{} upload {}",
                upload.bucket, upload.key, upload.upload_id
            ),
            &err,
        )),
    }
}

/// Where a finished object is: the version and ETag S3 gave it, to read it back pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub version_id: Option<String>,
    pub etag: Option<String>,
}

/// An object written as it is produced: everything goes into `encoder`, and whenever its
/// buffer holds a part (`part_bytes`) the part is uploaded; memory is about one part. An object
/// smaller than a part is one PutObject.
pub struct StreamedUpload<'a, E: Encoder> {
    parts: PartUpload<'a>,
    part_bytes: usize,
    encoder: E,
}

/// The multipart upload behind a [`StreamedUpload`], started with its first part.
struct PartUpload<'a> {
    app: &'a App,
    /// The client for the object's bucket.
    s3: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    content_type: &'static str,
    ledger: UploadLedger,
    upload: Option<(String, Vec<CompletedPart>)>,
}

impl<'a, E: Encoder> StreamedUpload<'a, E> {
    /// A writer of `bucket`/`key` through `encoder` (empty), with `s3` (the client for
    /// `bucket`) and parts of the finalizer's part size (BATCHOPS_REPORT_PART_BYTES).
    pub fn new(
        app: &'a App,
        s3: aws_sdk_s3::Client,
        bucket: &str,
        key: &str,
        content_type: &'static str,
        ledger: UploadLedger,
        encoder: E,
    ) -> Self {
        StreamedUpload {
            parts: PartUpload {
                app,
                s3,
                bucket: bucket.to_string(),
                key: key.to_string(),
                content_type,
                ledger,
                upload: None,
            },
            part_bytes: app.config.report_part_bytes as usize,
            encoder,
        }
    }

    /// Encodes `bytes`; uploads a part when one is full.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.encoder
            .write_all(bytes)
            .map_err(|e| Error::Data(format!("encoding {}: {e}", self.parts.what())))?;
        if self.encoder.buffer().len() >= self.part_bytes {
            let part = std::mem::replace(
                self.encoder.buffer(),
                Vec::with_capacity(self.part_bytes + self.part_bytes / 8),
            );
            self.parts.send(part).await?;
        }
        Ok(())
    }

    /// Finishes the object.
    pub async fn finish(self) -> Result<Stored> {
        let last = self
            .encoder
            .finish_encoding()
            .map_err(|e| Error::Data(format!("encoding {}: {e}", self.parts.what())))?;
        self.parts.finish(last).await
    }
}

impl PartUpload<'_> {
    fn what(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    async fn send(&mut self, body: Vec<u8>) -> Result<()> {
        let what = self.what();
        if self.upload.is_none() {
            let out = self
                .s3
                .create_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .content_type(self.content_type)
                .send()
                .await
                .map_err(|e| Error::aws_call("S3", "CreateMultipartUpload", &what, &e))?;
            let upload_id = out.upload_id().unwrap_or_default().to_string();
            // Recorded before any part goes up: an interrupted writer's upload is aborted by
            // the next attempt rather than left to cost storage.
            let record = OpenUpload {
                bucket: self.bucket.clone(),
                key: self.key.clone(),
                upload_id: upload_id.clone(),
            };
            self.app
                .store
                .put_doc(
                    &self.ledger.pk,
                    &open_upload_sk(&upload_id),
                    &record,
                    None,
                    None,
                )
                .await?;
            self.upload = Some((upload_id, Vec::new()));
        }
        let Some((upload_id, parts)) = self.upload.as_mut() else {
            return Err(Error::Data(format!("{what}: no multipart upload")));
        };
        let number = parts.len() as i32 + 1;
        let digest = Md5::digest(&body);
        let out = self
            .s3
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload_id.as_str())
            .part_number(number)
            .content_md5(base64::engine::general_purpose::STANDARD.encode(digest))
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| {
                Error::aws_call("S3", "UploadPart", &format!("{what} part {number}"), &e)
            })?;
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .build(),
        );
        Ok(())
    }

    /// Sends `last` and completes the upload, or puts `last` as the whole object when no part
    /// went up.
    async fn finish(mut self, last: Vec<u8>) -> Result<Stored> {
        let what = self.what();
        if self.upload.is_none() {
            let written =
                put_bytes_pinned(&self.s3, &self.bucket, &self.key, last, self.content_type)
                    .await?;
            return Ok(Stored {
                version_id: written.version_id,
                etag: written.etag,
            });
        }
        if !last.is_empty() {
            self.send(last).await?;
        }
        let Some((upload_id, parts)) = self.upload.take() else {
            return Err(Error::Data(format!("{what}: no multipart upload")));
        };
        let out = self
            .s3
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| Error::aws_call("S3", "CompleteMultipartUpload", &what, &e))?;
        self.app
            .store
            .delete_doc(&self.ledger.pk, &open_upload_sk(&upload_id))
            .await?;
        Ok(Stored {
            version_id: out.version_id().map(str::to_string),
            etag: out.e_tag().map(str::to_string),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A body that yields `bytes[from..]` and then breaks (an error, or an early end) after
    /// `cut` bytes, unless `cut` is past its end.
    struct Breaking {
        bytes: Arc<Vec<u8>>,
        position: usize,
        stop: usize,
        clean_end: bool,
    }

    impl Read for Breaking {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.position >= self.stop {
                if self.clean_end || self.stop >= self.bytes.len() {
                    return Ok(0);
                }
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "connection reset",
                ));
            }
            let n = buf.len().min(self.stop - self.position).min(7);
            buf[..n].copy_from_slice(&self.bytes[self.position..self.position + n]);
            self.position += n;
            Ok(n)
        }
    }

    /// An opener whose every body breaks `cut` bytes after where it starts; it records the
    /// offsets it was asked for.
    fn breaking_opener(
        bytes: Vec<u8>,
        cut: usize,
        clean_end: bool,
        offsets: Arc<Mutex<Vec<u64>>>,
    ) -> Opener {
        let bytes = Arc::new(bytes);
        Box::new(move |offset| {
            offsets.lock().unwrap().push(offset);
            let position = offset as usize;
            let body = Breaking {
                bytes: bytes.clone(),
                position,
                stop: (position + cut).min(bytes.len()),
                clean_end,
            };
            Ok((
                Box::new(body) as Box<dyn Read + Send>,
                Some(bytes.len() as u64),
            ))
        })
    }

    #[test]
    fn a_broken_stream_resumes_at_the_byte_it_reached() {
        let bytes: Vec<u8> = (0..1000u32).flat_map(|i| i.to_le_bytes()).collect();
        for clean_end in [false, true] {
            let offsets = Arc::new(Mutex::new(Vec::new()));
            let opener = breaking_opener(bytes.clone(), 1500, clean_end, offsets.clone());
            let mut read = PinnedRead::new(opener, "test object".into()).unwrap();
            let mut out = Vec::new();
            read.read_to_end(&mut out).unwrap();
            assert_eq!(out, bytes, "clean_end {clean_end}");
            assert_eq!(*offsets.lock().unwrap(), vec![0, 1500, 3000]);
            assert_eq!(read.reopened, 2);
        }
    }

    #[test]
    fn a_stream_that_keeps_breaking_without_progress_fails_naming_the_object() {
        let offsets = Arc::new(Mutex::new(Vec::new()));
        let opener = breaking_opener(vec![1u8; 100], 0, false, offsets.clone());
        let mut read = PinnedRead::new(opener, "s3://b/k (version v)".into()).unwrap();
        read.pause = std::time::Duration::ZERO;
        let err = read.read_to_end(&mut Vec::new()).unwrap_err().to_string();
        assert!(
            err.contains("s3://b/k (version v)") && err.contains("at byte 0 of 100"),
            "{err}"
        );
        assert_eq!(offsets.lock().unwrap().len() as u32, MAX_RESUMES + 1);
    }

    #[test]
    fn a_resume_that_finds_the_object_replaced_fails_at_once() {
        let calls = Arc::new(Mutex::new(0));
        let counted = calls.clone();
        let opener: Opener = Box::new(move |offset| {
            *counted.lock().unwrap() += 1;
            if offset == 0 {
                let body = Breaking {
                    bytes: Arc::new(vec![0u8; 50]),
                    position: 0,
                    stop: 10,
                    clean_end: false,
                };
                Ok((Box::new(body) as Box<dyn Read + Send>, Some(50)))
            } else {
                Err(PinFailure::Changed(
                    "s3://b/k no longer has the ETag it was written with".into(),
                ))
            }
        });
        let mut read = PinnedRead::new(opener, "s3://b/k".into()).unwrap();
        let err = read.read_to_end(&mut Vec::new()).unwrap_err().to_string();
        assert!(err.contains("no longer has the ETag"), "{err}");
        assert_eq!(*calls.lock().unwrap(), 2);
    }
}
