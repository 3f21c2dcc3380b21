use crate::error::{aws, Error, S3Failure};
use aws_sdk_s3::Client;
use batchops_core::request::ManifestObject;
use md5::{Digest, Md5};
use std::io::{BufReader, Read};
use std::path::PathBuf;
use tokio::runtime::Handle;

/// Where manifest bytes come from: S3, or the local disk (dry runs and benchmarks).
#[derive(Debug, Clone)]
pub enum Location {
    S3(ManifestObject),
    Local(PathBuf),
}

impl Location {
    pub(super) fn describe(&self) -> String {
        match self {
            Location::S3(o) => format!("s3://{}/{}", o.bucket, o.key),
            Location::Local(path) => path.display().to_string(),
        }
    }
}

/// What reading needs: the S3 client (absent for purely local dry runs), the table (backup
/// runs read their journal's records there; absent in dry runs, which read no journal) and the
/// runtime handle the blocking thread uses for its calls.
#[derive(Clone)]
pub struct Reader {
    pub s3: Option<Client>,
    /// A job's (or backup policy's) clients: each bucket is then read with the client for it
    /// (its role, its Region; the control bucket with the stack's) instead of `s3`.
    pub clients: Option<crate::clients::JobClients>,
    pub store: Option<crate::store::Store>,
    /// Imports: the source store, opened (its secret read) by the planner.
    pub object_store: Option<crate::stores::OpenStore>,
    pub(crate) handle: Handle,
}

/// Failures the job owner must fix, as opposed to errors worth retrying.
pub(super) enum OpenFailure {
    Job { code: &'static str, reason: String },
    RangeNotSatisfiable,
    Retry(Error),
}

pub(super) struct Opened {
    pub(super) reader: Box<dyn Read + Send>,
    pub(super) etag: Option<String>,
}

impl Reader {
    pub fn new(s3: Option<Client>) -> Self {
        Reader {
            s3,
            clients: None,
            store: None,
            object_store: None,
            handle: Handle::current(),
        }
    }

    /// With an import's source store.
    pub fn with_object_store(mut self, store: crate::stores::OpenStore) -> Self {
        self.object_store = Some(store);
        self
    }

    /// With a job's or policy's clients, one per bucket.
    pub fn with_clients(mut self, clients: crate::clients::JobClients) -> Self {
        self.clients = Some(clients);
        self
    }

    /// The client for requests on `bucket` (blocking: call from a blocking thread).
    pub fn s3_for(&self, bucket: &str) -> crate::error::Result<Client> {
        match (&self.clients, &self.s3) {
            (Some(clients), _) => Ok(self.handle.block_on(clients.s3(bucket))),
            (None, Some(s3)) => Ok(s3.clone()),
            (None, None) => Err(Error::Invalid("no S3 client configured".into())),
        }
    }

    /// With the table: a backup run reads its journal's records from it.
    pub fn with_store(mut self, store: crate::store::Store) -> Self {
        self.store = Some(store);
        self
    }

    /// Opens `location` from byte `offset`, requiring `if_match` when given. Blocking: call from
    /// a blocking thread.
    pub(super) fn open(
        &self,
        location: &Location,
        offset: u64,
        if_match: Option<&str>,
    ) -> std::result::Result<Opened, OpenFailure> {
        match location {
            Location::Local(path) => {
                use std::io::{Seek, SeekFrom};
                let mut file = std::fs::File::open(path).map_err(|e| OpenFailure::Job {
                    code: "ManifestNotReadable",
                    reason: format!("cannot open {}: {e}", path.display()),
                })?;
                file.seek(SeekFrom::Start(offset))
                    .map_err(|e| OpenFailure::Retry(Error::Data(e.to_string())))?;
                Ok(Opened {
                    reader: Box::new(file),
                    etag: None,
                })
            }
            Location::S3(object) => {
                let s3 = &self.s3_for(&object.bucket).map_err(OpenFailure::Retry)?;
                let mut request = s3
                    .get_object()
                    .bucket(&object.bucket)
                    .key(&object.key)
                    .set_version_id(object.version_id.clone())
                    .set_if_match(if_match.map(str::to_string));
                if offset > 0 {
                    request = request.range(format!("bytes={offset}-"));
                }
                let url = location.describe();
                match self.handle.block_on(request.send()) {
                    Ok(out) => {
                        let etag = out.e_tag().map(str::to_string);
                        let reader = tokio_util::io::SyncIoBridge::new_with_handle(
                            out.body.into_async_read(),
                            self.handle.clone(),
                        );
                        Ok(Opened {
                            reader: Box::new(reader),
                            etag,
                        })
                    }
                    Err(err) => {
                        let failure = S3Failure::from_sdk(&err);
                        Err(match failure.status {
                            Some(412) => {
                                let actual = self.handle.block_on(crate::objects::etag_now(
                                    s3,
                                    &object.bucket,
                                    &object.key,
                                    object.version_id.as_deref(),
                                ));
                                OpenFailure::Job {
                                    code: "ManifestETagMismatch",
                                    reason: format!(
                                        "Manifest.Location.ETag: {url} has ETag {actual}, but the job expects {}; the manifest changed after the job was created",
                                        if_match.unwrap_or_default()
                                    ),
                                }
                            }
                            Some(404) | Some(403) => OpenFailure::Job {
                                code: "ManifestNotReadable",
                                reason: format!(
                                    "cannot read {url}: {} ({})",
                                    failure.code.unwrap_or_default(),
                                    failure.message
                                ),
                            },
                            Some(416) => OpenFailure::RangeNotSatisfiable,
                            _ => OpenFailure::Retry(aws("S3", "GetObject")(err)),
                        })
                    }
                }
            }
        }
    }

    pub(super) fn read_all(
        &self,
        location: &Location,
    ) -> std::result::Result<Vec<u8>, OpenFailure> {
        let mut opened = self.open(location, 0, None)?;
        let mut body = Vec::new();
        opened.reader.read_to_end(&mut body).map_err(|e| {
            OpenFailure::Retry(Error::Data(format!("reading {}: {e}", location.describe())))
        })?;
        Ok(body)
    }
}

/// Updates an MD5 with every byte read through it (inventory files are verified as they stream).
pub(super) struct HashingReader<R> {
    pub(super) inner: R,
    pub(super) md5: Md5,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.md5.update(&buf[..n]);
        Ok(n)
    }
}

/// Reads decompressed bytes that another thread produces.
pub(super) struct PipeReader {
    pub(super) rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    pub(super) current: Vec<u8>,
    pub(super) position: usize,
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.position == self.current.len() {
            match self.rx.recv() {
                Ok(Ok(block)) => {
                    self.current = block;
                    self.position = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.position);
        buf[..n].copy_from_slice(&self.current[self.position..self.position + n]);
        self.position += n;
        Ok(n)
    }
}

/// Gunzips `compressed` on a thread of its own. The thread returns the MD5 of every compressed
/// byte (the whole file, members and trailing bytes alike) once the output is consumed; if the
/// reader stops early, the thread stops at its next block.
pub(super) fn spawn_gunzip(
    compressed: Box<dyn Read + Send>,
) -> (PipeReader, std::thread::JoinHandle<std::io::Result<String>>) {
    let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<u8>>>(8);
    let handle = std::thread::spawn(move || {
        let hashing = HashingReader {
            inner: compressed,
            md5: Md5::new(),
        };
        let mut buffered = BufReader::with_capacity(256 * 1024, hashing);
        {
            let mut gz = flate2::bufread::MultiGzDecoder::new(&mut buffered);
            loop {
                let mut block = vec![0u8; 256 * 1024];
                let mut filled = 0;
                while filled < block.len() {
                    match gz.read(&mut block[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) => {
                            let message = e.to_string();
                            let _ = tx.send(Err(e));
                            return Err(std::io::Error::other(message));
                        }
                    }
                }
                if filled == 0 {
                    break;
                }
                block.truncate(filled);
                if tx.send(Ok(block)).is_err() {
                    return Ok(String::new());
                }
            }
        }
        std::io::copy(&mut buffered, &mut std::io::sink())?;
        Ok(hex::encode(buffered.into_inner().md5.finalize()))
    });
    (
        PipeReader {
            rx,
            current: Vec::new(),
            position: 0,
        },
        handle,
    )
}
