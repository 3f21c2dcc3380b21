//! Streamed metadata writes and pinned reads against moto: an object larger than a part goes up
//! as a multipart upload and reads back whole, pinned; an interrupted writer's upload is aborted
//! by the next attempt.

use crate::harness::TestEnv;
use batchops_aws::catalog_io::{
    abort_recorded_uploads, open_pinned, ObjectPin, PinFailure, StreamedUpload, UploadLedger,
};
use batchops_aws::prepare::Reader;
use std::io::Read;

/// Bytes gzip cannot shrink (a multipart upload needs parts of 5 MiB).
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn read_pinned(reader: Reader, pin: ObjectPin) -> Result<Vec<u8>, String> {
    let mut stream = open_pinned(&reader, &pin).map_err(|f| f.to_string())?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_streamed_upload_past_one_part_reads_back_pinned_and_interrupted_uploads_are_aborted() {
    let env = TestEnv::with_vars(&[("BATCHOPS_REPORT_PART_BYTES", "5242880")]).await;
    let ledger = UploadLedger {
        pk: "JOB#streamed".into(),
    };
    let body = noise(11 * 1024 * 1024 + 17);
    let mut upload = StreamedUpload::new(
        &env.app,
        env.app.s3.clone(),
        &env.dst,
        "meta/big",
        "application/octet-stream",
        ledger.clone(),
        Vec::new(),
    );
    for piece in body.chunks(1 << 20) {
        upload.write(piece).await.unwrap();
    }
    let stored = upload.finish().await.unwrap();
    let etag = stored.etag.clone().unwrap();
    assert!(
        etag.trim_matches('"').ends_with("-3"),
        "three parts: {etag}"
    );
    let pin = ObjectPin {
        bucket: env.dst.clone(),
        key: "meta/big".into(),
        version_id: stored.version_id.clone(),
        etag: stored.etag.clone(),
    };
    let reader = Reader::new(Some(env.app.s3.clone()));
    let (r, p) = (reader.clone(), pin.clone());
    let read = tokio::task::spawn_blocking(move || read_pinned(r, p))
        .await
        .unwrap()
        .unwrap();
    assert!(
        read == body,
        "read back {} bytes of {}",
        read.len(),
        body.len()
    );

    // Written again at its key: the pinned read still gets what was written (its version).
    env.put(&env.dst, "meta/big", "forged").await;
    let (r, p) = (reader.clone(), pin.clone());
    let again = tokio::task::spawn_blocking(move || read_pinned(r, p))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.len(), body.len());
    // Pinned to an ETag it does not have: refused, naming the object.
    let mut wrong = pin.clone();
    wrong.etag = Some("\"0123456789abcdef0123456789abcdef\"".into());
    let refused = tokio::task::spawn_blocking(move || match open_pinned(&reader, &wrong) {
        Err(PinFailure::Changed(reason)) => reason,
        other => panic!("expected Changed, got {:?}", other.map(|_| ())),
    })
    .await
    .unwrap();
    assert!(
        refused.contains("meta/big") && refused.contains("replaced or damaged"),
        "{refused}"
    );

    // A writer interrupted after its first part: its upload stays open until the next attempt
    // aborts it.
    let mut interrupted = StreamedUpload::new(
        &env.app,
        env.app.s3.clone(),
        &env.dst,
        "meta/interrupted",
        "application/octet-stream",
        ledger.clone(),
        Vec::new(),
    );
    interrupted.write(&noise(6 * 1024 * 1024)).await.unwrap();
    drop(interrupted);
    let open = |env: &TestEnv| {
        let s3 = env.app.s3.clone();
        let bucket = env.dst.clone();
        async move {
            s3.list_multipart_uploads()
                .bucket(bucket)
                .send()
                .await
                .unwrap()
                .uploads()
                .len()
        }
    };
    assert_eq!(open(&env).await, 1);
    abort_recorded_uploads(&env.app, &env.app.data.stack(), &ledger)
        .await
        .unwrap();
    assert_eq!(open(&env).await, 0);
}
