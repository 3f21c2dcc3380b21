//! Backups against moto: incremental runs, snapshots, deletes, versioning preflight, retention,
//! schedule slots, restores.

use crate::harness::TestEnv;
use batchops_aws::backup::{self, RestoreRequest};
use batchops_core::backup::{
    BackupPolicy, DeleteMode, Location, MaxDeletes, Retention, VersionsMode,
};

pub fn policy(env: &TestEnv, name: &str) -> BackupPolicy {
    BackupPolicy {
        name: name.to_string(),
        source: Location {
            bucket: env.src.clone(),
            prefix: "data/".into(),
        },
        destination: Location {
            bucket: env.dst.clone(),
            prefix: "backups/src/".into(),
        },
        schedule: None,
        time_zone: "UTC".into(),
        retention: Retention::default(),
        deletes: DeleteMode::Ignore,
        max_deletes: None,
        versions: VersionsMode::Current,
        storage_class: None,
        enabled: true,
        allow_unversioned_destination: false,
        continuous: false,
        inventory: None,
        role_arn: None,
    }
}

/// Runs the policy once by hand; returns (job id, its description).
async fn start(env: &TestEnv, name: &str) -> String {
    backup::start_run(&env.app, name, None, false)
        .await
        .unwrap()
        .job_id
}

/// Runs the policy by hand to the end, whatever its outcome.
pub async fn run(env: &TestEnv, name: &str) -> (String, batchops_core::describe::JobDescriptor) {
    let job = start(env, name).await;
    env.run_until_idle().await;
    let described = env.describe(&job).await;
    (job, described)
}

/// Runs the policy by hand to the end; it must complete.
pub async fn completed_run(
    env: &TestEnv,
    name: &str,
) -> (String, batchops_core::describe::JobDescriptor) {
    let job = start(env, name).await;
    let described = env.run_to_complete(&job).await;
    (job, described)
}

async fn latest(env: &TestEnv, key: &str) -> Option<Vec<u8>> {
    env.get(&env.dst, &format!("backups/src/{key}")).await
}

/// (versions, delete markers) of exactly `key`.
pub async fn version_count(env: &TestEnv, bucket: &str, key: &str) -> (usize, usize) {
    let out = env
        .clients
        .s3
        .list_object_versions()
        .bucket(bucket)
        .prefix(key)
        .send()
        .await
        .unwrap();
    let versions = out
        .versions()
        .iter()
        .filter(|v| v.key() == Some(key))
        .count();
    let markers = out
        .delete_markers()
        .iter()
        .filter(|m| m.key() == Some(key))
        .count();
    (versions, markers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_then_incremental_then_unchanged_runs() {
    let env = TestEnv::new().await;
    backup::put_policy(&env.app, policy(&env, "nightly"))
        .await
        .unwrap();
    for key in ["a.txt", "b.txt", "dir/c d.txt"] {
        env.put(&env.src, &format!("data/{key}"), format!("v1 {key}"))
            .await;
    }
    env.put(&env.src, "elsewhere/not-backed-up", "x").await;
    let (first, described) = completed_run(&env, "nightly").await;
    assert_eq!(described.progress_summary.number_of_tasks_succeeded, 3);
    assert_eq!(
        latest(&env, "data/dir/c d.txt").await,
        Some(b"v1 dir/c d.txt".to_vec())
    );
    assert_eq!(
        env.get(&env.dst, "backups/src/elsewhere/not-backed-up")
            .await,
        None
    );

    env.put(&env.src, "data/b.txt", "v2 b.txt").await;
    env.put(&env.src, "data/e.txt", "v1 e.txt").await;
    let (_, described) = completed_run(&env, "nightly").await;
    assert_eq!(
        described.progress_summary.total_number_of_tasks, 2,
        "only the change and the new object"
    );
    assert_eq!(latest(&env, "data/b.txt").await, Some(b"v2 b.txt".to_vec()));
    assert_eq!(
        version_count(&env, &env.dst, "backups/src/data/a.txt").await,
        (1, 0),
        "unchanged objects are not copied again"
    );

    let (_, described) = completed_run(&env, "nightly").await;
    assert_eq!(
        described.progress_summary.total_number_of_tasks, 0,
        "nothing changed"
    );

    let snapshots = backup::list_snapshots(&env.app, "nightly").await.unwrap();
    let counts: Vec<(u64, u64, u64)> = snapshots
        .iter()
        .map(|s| (s.objects, s.copied, s.unchanged))
        .collect();
    assert_eq!(counts, vec![(3, 3, 0), (4, 2, 2), (4, 0, 4)]);
    assert_eq!(snapshots[0].job_id, first);
    let catalog = backup::read_catalog(
        &batchops_aws::prepare::Reader::new(Some(env.app.s3.clone())),
        &snapshots[2].catalog,
    )
    .await
    .unwrap();
    let keys: Vec<&str> = catalog.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        vec!["data/a.txt", "data/b.txt", "data/dir/c d.txt", "data/e.txt"],
        "sorted by key"
    );
    assert!(catalog
        .iter()
        .all(|e| e.dest_version.is_some() && e.source_version.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restores_bring_back_each_snapshots_versions() {
    let env = TestEnv::new().await;
    backup::put_policy(&env.app, policy(&env, "p"))
        .await
        .unwrap();
    env.put(&env.src, "data/keep/one", "one v1").await;
    env.put(&env.src, "data/other/two", "two v1").await;
    run(&env, "p").await;
    let first = backup::list_snapshots(&env.app, "p").await.unwrap()[0].clone();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let between = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    env.put(&env.src, "data/keep/one", "one v2").await;
    run(&env, "p").await;

    let restored = format!("{}-restore", env.dst);
    env.clients
        .s3
        .create_bucket()
        .bucket(&restored)
        .send()
        .await
        .unwrap();
    // The target is not versioned: a restore there replaces objects for good, so it must
    // be asked for.
    let refused = backup::start_restore(
        &env.app,
        "p",
        &RestoreRequest {
            to: Some((restored.clone(), "r0/".into())),
            ..Default::default()
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        refused.contains("does not have versioning enabled")
            && refused.contains("--allow-overwrite"),
        "{refused}"
    );
    // The first snapshot, one prefix, into another bucket.
    let request = RestoreRequest {
        snapshot: Some(first.id.clone()),
        to: Some((restored.clone(), "r1/".into())),
        prefix: Some("data/keep/".into()),
        allow_overwrite: true,
        ..Default::default()
    };
    let job = backup::start_restore(&env.app, "p", &request)
        .await
        .unwrap()
        .job_id;
    env.run_until_idle().await;
    assert_eq!(env.describe(&job).await.status, "Complete");
    assert_eq!(env.keys(&restored).await, vec!["r1/data/keep/one"]);
    assert_eq!(
        env.get(&restored, "r1/data/keep/one").await,
        Some(b"one v1".to_vec())
    );
    // As of a time between the runs: the first snapshot again; the newest: v2.
    let as_of = RestoreRequest {
        as_of: Some(between),
        to: Some((restored.clone(), "r2/".into())),
        allow_overwrite: true,
        ..Default::default()
    };
    backup::start_restore(&env.app, "p", &as_of).await.unwrap();
    let newest = RestoreRequest {
        to: Some((restored.clone(), "r3/".into())),
        keys: Some(vec!["data/keep/one".into()]),
        allow_overwrite: true,
        ..Default::default()
    };
    backup::start_restore(&env.app, "p", &newest).await.unwrap();
    env.run_until_idle().await;
    assert_eq!(
        env.get(&restored, "r2/data/keep/one").await,
        Some(b"one v1".to_vec())
    );
    assert_eq!(
        env.get(&restored, "r2/data/other/two").await,
        Some(b"two v1".to_vec())
    );
    assert_eq!(
        env.get(&restored, "r3/data/keep/one").await,
        Some(b"one v2".to_vec())
    );
    assert_eq!(
        env.get(&restored, "r3/data/other/two").await,
        None,
        "only the listed key"
    );
    // Restoring in place brings the old version back at the source, deleting nothing.
    env.put(&env.src, "data/extra", "not in any snapshot").await;
    let in_place = RestoreRequest {
        snapshot: Some(first.id.clone()),
        ..Default::default()
    };
    backup::start_restore(&env.app, "p", &in_place)
        .await
        .unwrap();
    env.run_until_idle().await;
    assert_eq!(
        env.get(&env.src, "data/keep/one").await,
        Some(b"one v1".to_vec())
    );
    assert_eq!(
        env.get(&env.src, "data/extra").await,
        Some(b"not in any snapshot".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deletes_follow_the_policy_and_the_guard_stops_mass_deletes() {
    let env = TestEnv::new().await;
    for (name, mode) in [
        ("ignore", DeleteMode::Ignore),
        ("record", DeleteMode::Record),
        ("propagate", DeleteMode::Propagate),
    ] {
        let mut p = policy(&env, name);
        p.source.prefix = format!("{name}/");
        p.destination.prefix = format!("vault/{name}/");
        p.deletes = mode;
        backup::put_policy(&env.app, p).await.unwrap();
        env.put(&env.src, &format!("{name}/stays"), "s").await;
        env.put(&env.src, &format!("{name}/goes"), "g").await;
        run(&env, name).await;
        env.clients
            .s3
            .delete_object()
            .bucket(&env.src)
            .key(format!("{name}/goes"))
            .send()
            .await
            .unwrap();
        completed_run(&env, name).await;
        let snapshots = backup::list_snapshots(&env.app, name).await.unwrap();
        let second = &snapshots[1];
        let reader = batchops_aws::prepare::Reader::new(Some(env.app.s3.clone()));
        let keys: Vec<String> = backup::read_catalog(&reader, &second.catalog)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.key)
            .collect();
        let dest = format!("vault/{name}/{name}/goes");
        match mode {
            DeleteMode::Ignore => {
                assert_eq!(keys, vec![format!("{name}/goes"), format!("{name}/stays")]);
                assert_eq!(version_count(&env, &env.dst, &dest).await, (1, 0));
            }
            DeleteMode::Record => {
                assert_eq!(keys, vec![format!("{name}/stays")]);
                assert_eq!(second.deleted, 1);
                assert_eq!(
                    version_count(&env, &env.dst, &dest).await,
                    (1, 0),
                    "the copy stays for older snapshots"
                );
            }
            DeleteMode::Propagate => {
                assert_eq!(keys, vec![format!("{name}/stays")]);
                assert_eq!(
                    version_count(&env, &env.dst, &dest).await,
                    (1, 1),
                    "a delete marker over the kept data"
                );
                assert_eq!(env.get(&env.dst, &dest).await, None);
            }
        }
    }
    // maxDeletes: a run that would drop more than allowed fails and changes nothing.
    let mut guarded = policy(&env, "guarded");
    guarded.source.prefix = "guarded/".into();
    guarded.destination.prefix = "vault/guarded/".into();
    guarded.deletes = DeleteMode::Propagate;
    guarded.max_deletes = Some(MaxDeletes::Limit(1));
    backup::put_policy(&env.app, guarded).await.unwrap();
    for i in 0..3 {
        env.put(&env.src, &format!("guarded/{i}"), "x").await;
    }
    run(&env, "guarded").await;
    for i in 0..3 {
        env.clients
            .s3
            .delete_object()
            .bucket(&env.src)
            .key(format!("guarded/{i}"))
            .send()
            .await
            .unwrap();
    }
    let (_, described) = run(&env, "guarded").await;
    assert_eq!(described.status, "Failed");
    assert_eq!(
        described.failure_reasons[0].failure_code,
        "MaxDeletesExceeded"
    );
    assert!(described.failure_reasons[0]
        .failure_reason
        .contains("more than the policy's maxDeletes of 1"));
    assert_eq!(
        version_count(&env, &env.dst, "vault/guarded/guarded/0").await,
        (1, 0),
        "nothing deleted"
    );
    assert_eq!(
        backup::list_snapshots(&env.app, "guarded")
            .await
            .unwrap()
            .len(),
        1
    );
    // The policy turns the guard off explicitly: the deletions go through.
    let mut unguarded = backup::get_policy(&env.app, "guarded")
        .await
        .unwrap()
        .policy;
    unguarded.max_deletes = Some(MaxDeletes::Unlimited);
    backup::put_policy(&env.app, unguarded).await.unwrap();
    completed_run(&env, "guarded").await;
    assert_eq!(
        version_count(&env, &env.dst, "vault/guarded/guarded/0").await,
        (1, 1),
        "a delete marker over the kept copy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn versioning_preflight_refuses_unversioned_destinations_and_warns_for_sources() {
    let env = TestEnv::new().await;
    let plain = format!("{}-plain", env.dst);
    env.clients
        .s3
        .create_bucket()
        .bucket(&plain)
        .send()
        .await
        .unwrap();
    let mut p = policy(&env, "unsafe");
    p.destination.bucket = plain.clone();
    backup::put_policy(&env.app, p.clone()).await.unwrap();
    env.put(&env.src, "data/x", "x").await;
    let (_, described) = run(&env, "unsafe").await;
    assert_eq!(described.status, "Failed");
    assert_eq!(
        described.failure_reasons[0].failure_code,
        "DestinationNotVersioned"
    );
    assert!(described.failure_reasons[0]
        .failure_reason
        .contains("put-bucket-versioning"));
    assert!(env.keys(&plain).await.is_empty());
    p.allow_unversioned_destination = true;
    backup::put_policy(&env.app, p).await.unwrap();
    assert_eq!(run(&env, "unsafe").await.1.status, "Complete");

    // An unversioned source is compared by ETag and size, with a warning.
    let unversioned = format!("{}-unversioned", env.src);
    env.clients
        .s3
        .create_bucket()
        .bucket(&unversioned)
        .send()
        .await
        .unwrap();
    let mut q = policy(&env, "etag");
    q.source.bucket = unversioned.clone();
    q.destination.prefix = "etag/".into();
    backup::put_policy(&env.app, q).await.unwrap();
    env.put(&unversioned, "data/k", "one").await;
    env.put(&unversioned, "data/same", "same").await;
    let (_, described) = completed_run(&env, "etag").await;
    assert!(
        described
            .warnings
            .iter()
            .any(|w| w.contains("is not versioned")),
        "{:?}",
        described.warnings
    );
    env.put(&unversioned, "data/k", "two!").await;
    let (_, described) = run(&env, "etag").await;
    assert_eq!(described.progress_summary.total_number_of_tasks, 1);
    assert_eq!(
        env.get(&env.dst, "etag/data/k").await,
        Some(b"two!".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn all_versions_are_copied_oldest_first() {
    let env = TestEnv::new().await;
    let mut p = policy(&env, "history");
    p.versions = VersionsMode::All;
    backup::put_policy(&env.app, p).await.unwrap();
    for i in 1..=4 {
        env.put(&env.src, "data/doc", format!("version {i}")).await;
    }
    env.put(&env.src, "data/single", "only").await;
    let (_, described) = completed_run(&env, "history").await;
    assert_eq!(described.progress_summary.number_of_tasks_succeeded, 5);
    let out = env
        .clients
        .s3
        .list_object_versions()
        .bucket(&env.dst)
        .prefix("backups/src/data/doc")
        .send()
        .await
        .unwrap();
    // ListObjectVersions lists newest first: the destination's history matches the source's.
    let mut bodies = Vec::new();
    for v in out.versions() {
        let obj = env
            .clients
            .s3
            .get_object()
            .bucket(&env.dst)
            .key(v.key().unwrap())
            .version_id(v.version_id().unwrap())
            .send()
            .await
            .unwrap();
        bodies.push(
            String::from_utf8(obj.body.collect().await.unwrap().into_bytes().to_vec()).unwrap(),
        );
    }
    assert_eq!(
        bodies,
        vec!["version 4", "version 3", "version 2", "version 1"]
    );
    env.put(&env.src, "data/doc", "version 5").await;
    let (_, described) = run(&env, "history").await;
    assert_eq!(
        described.progress_summary.total_number_of_tasks, 1,
        "only the new version"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_expires_snapshots_but_never_data_a_kept_snapshot_needs() {
    let env = TestEnv::new().await;
    let mut p = policy(&env, "short");
    p.retention = Retention {
        keep_last: Some(1),
        keep_days: None,
    };
    backup::put_policy(&env.app, p).await.unwrap();
    env.put(&env.src, "data/changes", "old").await;
    env.put(&env.src, "data/constant", "same").await;
    run(&env, "short").await;
    env.put(&env.src, "data/changes", "new").await;
    run(&env, "short").await;
    let snapshots = backup::list_snapshots(&env.app, "short").await.unwrap();
    assert_eq!(snapshots.len(), 1, "the first snapshot expired");
    assert_eq!(
        version_count(&env, &env.dst, "backups/src/data/changes").await,
        (1, 0),
        "the old copy only the expired snapshot used is gone"
    );
    assert_eq!(latest(&env, "data/changes").await, Some(b"new".to_vec()));
    assert_eq!(
        latest(&env, "data/constant").await,
        Some(b"same".to_vec()),
        "still referenced by the kept snapshot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_triggers_for_one_schedule_slot_start_one_run() {
    let env = TestEnv::new().await;
    let mut p = policy(&env, "every-minute");
    p.schedule = Some("rate(1 minute)".into());
    backup::put_policy(&env.app, p).await.unwrap();
    env.put(&env.src, "data/x", "x").await;
    let later = time::OffsetDateTime::now_utc() + time::Duration::minutes(3);
    let (a, b) = tokio::join!(
        backup::fire_due_policies(&env.app, later),
        backup::fire_due_policies(&env.app, later)
    );
    let started: Vec<String> = a
        .unwrap()
        .into_iter()
        .chain(b.unwrap())
        .map(|(_, job)| job)
        .collect();
    assert!(!started.is_empty());
    assert!(
        started.windows(2).all(|w| w[0] == w[1]),
        "one job for the slot: {started:?}"
    );
    assert!(
        backup::fire_due_policies(&env.app, later)
            .await
            .unwrap()
            .is_empty(),
        "the slot is done"
    );
    let jobs = batchops_aws::jobs::list_jobs(&env.app, &[]).await.unwrap();
    assert_eq!(jobs.len(), 1);
    // Once that run has ended (one run per policy at a time), a late scheduler tick in the
    // next slot starts the next run.
    env.run_until_idle().await;
    let next = backup::fire_due_policies(&env.app, later + time::Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
}

/// Stores a policy record as an older batchops did, without today's checks.
pub async fn put_legacy_policy(env: &TestEnv, policy: BackupPolicy) {
    let record = backup::PolicyRecord {
        policy: policy.clone(),
        created_at: batchops_core::job::timestamp(time::OffsetDateTime::now_utc()),
        last_slot: None,
        last_snapshot: None,
        running: None,
        last_skipped: None,
    };
    assert!(env
        .app
        .store
        .put_doc(
            &format!("POLICY#{}", policy.name),
            "META",
            &record,
            None,
            Some("#POLICY")
        )
        .await
        .unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_source_and_destination_are_refused_both_ways() {
    let env = TestEnv::new().await;
    env.put(&env.src, "data/live", "newest write").await;
    // The source inside the destination (the whole bucket), and the destination inside it.
    for prefix in ["", "data/backup/"] {
        let mut p = policy(&env, "loop");
        p.destination = Location {
            bucket: env.src.clone(),
            prefix: prefix.into(),
        };
        let err = backup::put_policy(&env.app, p)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("destination.prefix") && err.contains("overlap"),
            "{prefix}: {err}"
        );
    }
    assert!(backup::list_policies(&env.app).await.unwrap().is_empty());
    // A policy stored before the check cannot run either.
    let mut legacy = policy(&env, "legacy");
    legacy.destination = Location {
        bucket: env.src.clone(),
        prefix: String::new(),
    };
    put_legacy_policy(&env, legacy).await;
    let err = backup::start_run(&env.app, "legacy", None, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("overlap"), "{err}");
    assert_eq!(
        env.get(&env.src, "data/live").await,
        Some(b"newest write".to_vec())
    );
    assert_eq!(
        version_count(&env, &env.src, "data/data/live").await,
        (0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn propagate_on_an_unversioned_destination_is_refused() {
    let env = TestEnv::new().await;
    let mut p = policy(&env, "mirror");
    p.deletes = DeleteMode::Propagate;
    p.allow_unversioned_destination = true;
    let err = backup::put_policy(&env.app, p.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("policy deletes") && err.contains("deletes: record"),
        "{err}"
    );
    p.deletes = DeleteMode::Record;
    backup::put_policy(&env.app, p).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_destination_starts_a_new_chain_and_old_snapshots_stay_restorable() {
    let env = TestEnv::new().await;
    backup::put_policy(&env.app, policy(&env, "moving"))
        .await
        .unwrap();
    env.put(&env.src, "data/a", "a v1").await;
    env.put(&env.src, "data/b", "b v1").await;
    completed_run(&env, "moving").await;
    let first = backup::list_snapshots(&env.app, "moving").await.unwrap()[0].clone();

    let new_home = format!("{}-new", env.dst);
    env.clients
        .s3
        .create_bucket()
        .bucket(&new_home)
        .send()
        .await
        .unwrap();
    env.set_versioning(&new_home).await;
    let mut moved = policy(&env, "moving");
    moved.destination.bucket = new_home.clone();
    backup::put_policy(&env.app, moved).await.unwrap();
    assert_eq!(
        backup::get_policy(&env.app, "moving")
            .await
            .unwrap()
            .last_snapshot,
        None
    );
    let (_, described) = completed_run(&env, "moving").await;
    assert_eq!(
        described.progress_summary.total_number_of_tasks, 2,
        "a full run: the old copies are in the old bucket"
    );
    assert_eq!(
        env.get(&new_home, "backups/src/data/a").await,
        Some(b"a v1".to_vec())
    );
    // The next run continues the new chain.
    let (_, described) = completed_run(&env, "moving").await;
    assert_eq!(described.progress_summary.total_number_of_tasks, 0);

    // Both chains restore: the first snapshot from the old bucket, the newest from the new.
    env.put(&env.src, "data/a", "a v2").await;
    let restored = format!("{}-restored", env.dst);
    env.clients
        .s3
        .create_bucket()
        .bucket(&restored)
        .send()
        .await
        .unwrap();
    env.set_versioning(&restored).await;
    for (snapshot, prefix) in [(Some(first.id.clone()), "old/"), (None, "new/")] {
        let job = backup::start_restore(
            &env.app,
            "moving",
            &RestoreRequest {
                snapshot,
                to: Some((restored.clone(), prefix.into())),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .job_id;
        env.run_to_complete(&job).await;
    }
    for prefix in ["old/", "new/"] {
        assert_eq!(
            env.get(&restored, &format!("{prefix}data/a")).await,
            Some(b"a v1".to_vec()),
            "{prefix}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_previous_catalog_fails_the_run_and_full_starts_a_new_chain() {
    let env = TestEnv::new().await;
    backup::put_policy(&env.app, policy(&env, "lost"))
        .await
        .unwrap();
    env.put(&env.src, "data/a", "a").await;
    env.put(&env.src, "data/b", "b").await;
    completed_run(&env, "lost").await;
    let catalog = backup::list_snapshots(&env.app, "lost").await.unwrap()[0]
        .catalog
        .clone();
    // The version the snapshot recorded is gone (a delete marker alone would not do: the
    // catalog is read pinned to its version).
    env.clients
        .s3
        .delete_object()
        .bucket(&catalog.bucket)
        .key(&catalog.key)
        .set_version_id(catalog.version_id.clone())
        .send()
        .await
        .unwrap();
    for _ in 0..2 {
        let (_, described) = run(&env, "lost").await;
        assert_eq!(described.status, "Failed");
        let reason = &described.failure_reasons[0];
        assert_eq!(reason.failure_code, "SnapshotCatalogInvalid", "{reason:?}");
        assert!(
            reason.failure_reason.contains(&catalog.key)
                && reason
                    .failure_reason
                    .contains("batchops backup run lost --full"),
            "{reason:?}"
        );
    }
    let job = backup::start_run(&env.app, "lost", None, true)
        .await
        .unwrap()
        .job_id;
    let described = env.run_to_complete(&job).await;
    assert_eq!(described.progress_summary.total_number_of_tasks, 2);
    let (_, described) = completed_run(&env, "lost").await;
    assert_eq!(
        described.progress_summary.total_number_of_tasks, 0,
        "later runs diff against the new chain"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_token_cannot_take_a_scheduled_runs_slot() {
    let env = TestEnv::new().await;
    let mut p = policy(&env, "slotted");
    p.schedule = Some("rate(1 minute)".into());
    backup::put_policy(&env.app, p).await.unwrap();
    let record = backup::get_policy(&env.app, "slotted").await.unwrap();
    let created = batchops_core::plan::parse_time(&record.created_at).unwrap();
    let later = time::OffsetDateTime::now_utc() + time::Duration::minutes(3);
    let slot = batchops_core::schedule::Schedule::parse("rate(1 minute)", "UTC", created)
        .unwrap()
        .latest_slot_at_or_before(later)
        .unwrap();
    // A CreateJob that takes the token the slot's run would have had.
    env.put(&env.src, "manifest.csv", format!("{},data/x\n", env.src))
        .await;
    env.put(&env.src, "data/x", "x").await;
    let mut document = env.request_json("manifest.csv", &["Bucket", "Key"]);
    document["ClientRequestToken"] = batchops_core::schedule::slot_token("slotted", slot).into();
    let squatter = env.create(document).await;
    let started = backup::fire_due_policies(&env.app, later).await.unwrap();
    assert_eq!(started.len(), 1);
    assert_ne!(started[0].1, squatter, "the slot's run is a job of its own");
    let described = env.describe(&started[0].1).await;
    assert!(
        described
            .description
            .as_deref()
            .is_some_and(|d| d.starts_with("backup slotted")),
        "{described:?}"
    );
    // And batchops' own namespace is closed to requests.
    let mut document = env.request_json("manifest.csv", &["Bucket", "Key"]);
    document["ClientRequestToken"] = "#backup-slotted-20261122T0200Z".into();
    let request = batchops_core::CreateJobRequest::from_json(&document.to_string()).unwrap();
    let err = batchops_aws::jobs::create_job(&env.app, request)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("ClientRequestToken"), "{err}");
}

/// Runs the local runtime until `job_id` has ended, while other jobs may still have work (held
/// ones, below): in short runs, each stopped by its time limit.
async fn run_until_ended(env: &TestEnv, job_id: &str) -> batchops_core::describe::JobDescriptor {
    use batchops_aws::runtime::{run, RunOptions};
    for _ in 0..40 {
        let options = RunOptions {
            until_idle: true,
            concurrency: 4,
            sweep_interval: std::time::Duration::from_millis(200),
            max_duration: Some(std::time::Duration::from_secs(2)),
        };
        // Err means other jobs still have work: expected while one is held.
        let _ = run(env.app.clone(), options).await;
        let described = env.describe(job_id).await;
        if matches!(
            described.status.as_str(),
            "Complete" | "Failed" | "Cancelled"
        ) {
            return described;
        }
    }
    panic!("job {job_id} did not end");
}

/// Holds a job's planning lease (as a live planner elsewhere would): it stays unfinished.
async fn hold(env: &TestEnv, job_id: &str) {
    let now = batchops_aws::unix_now();
    assert!(env
        .app
        .store
        .acquire_plan_lease(job_id, "test-hold", now + 3600, now)
        .await
        .unwrap());
}

async fn release(env: &TestEnv, job_id: &str) {
    env.app
        .store
        .release_plan_lease(job_id, "test-hold")
        .await
        .unwrap();
}

async fn policy_record(env: &TestEnv, name: &str) -> backup::PolicyRecord {
    backup::get_policy(&env.app, name).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_policy_runs_one_run_at_a_time() {
    let env = TestEnv::new().await;
    let mut p = policy(&env, "single");
    p.schedule = Some("rate(1 minute)".into());
    backup::put_policy(&env.app, p).await.unwrap();
    env.put(&env.src, "data/x", "x").await;

    // Two manual starts at once: one run, and the other is told which job holds the policy.
    let (a, b) = tokio::join!(
        backup::start_run(&env.app, "single", None, false),
        backup::start_run(&env.app, "single", None, false)
    );
    let (job, refused) = match (a, b) {
        (Ok(job), Err(err)) | (Err(err), Ok(job)) => (job.job_id, err.to_string()),
        other => panic!("exactly one run must start: {other:?}"),
    };
    assert!(
        refused.starts_with(&format!("RunInProgress: job {job} ")),
        "{refused}"
    );
    let err = backup::start_run(&env.app, "single", None, true)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!("RunInProgress: job {job} ")),
        "{err}"
    );
    assert_eq!(
        batchops_aws::jobs::list_jobs(&env.app, &[])
            .await
            .unwrap()
            .len(),
        1
    );

    // A schedule slot meanwhile is skipped, and the policy says so.
    let later = time::OffsetDateTime::now_utc() + time::Duration::minutes(2);
    assert!(backup::fire_due_policies(&env.app, later)
        .await
        .unwrap()
        .is_empty());
    let record = policy_record(&env, "single").await;
    let skipped = record.last_skipped.expect("the skipped slot is recorded");
    assert_eq!(skipped.running_job, job);
    assert!(skipped.what.starts_with("slot "), "{skipped:?}");
    assert!(record.last_slot.is_some(), "the skipped slot is used up");
    assert_eq!(
        batchops_aws::jobs::list_jobs(&env.app, &[])
            .await
            .unwrap()
            .len(),
        1
    );

    // The run's end gives the policy back.
    env.run_to_complete(&job).await;
    assert_eq!(policy_record(&env, "single").await.running, None);

    // So does a cancelled run's.
    let cancelled = start(&env, "single").await;
    batchops_aws::jobs::update_job_status(
        &env.app,
        &cancelled,
        batchops_core::JobStatus::Cancelled,
        None,
        None,
    )
    .await
    .unwrap();
    env.run_until_idle().await;
    assert_eq!(env.describe(&cancelled).await.status, "Cancelled");
    assert_eq!(policy_record(&env, "single").await.running, None);
    completed_run(&env, "single").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_later_run_completing_first_is_the_newest_and_retention_keeps_what_the_other_reads() {
    let env = TestEnv::new().await;
    let mut p = policy(&env, "overlap");
    p.retention = Retention {
        keep_last: Some(1),
        keep_days: None,
    };
    backup::put_policy(&env.app, p).await.unwrap();
    env.put(&env.src, "data/f", "v1").await;
    env.put(&env.src, "data/same", "same").await;
    completed_run(&env, "overlap").await;
    let first = backup::list_snapshots(&env.app, "overlap").await.unwrap()[0]
        .id
        .clone();
    env.put(&env.src, "data/f", "v2").await;

    // Run A starts and diffs against the first snapshot, but its planning is held up.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let a = start(&env, "overlap").await;
    hold(&env, &a).await;
    // A second run of the policy started before the one-run guard existed (its claim is not
    // there): run B starts later, diffs against the same snapshot and completes first.
    let (mut record, revision) = env
        .app
        .store
        .get_doc::<backup::PolicyRecord>("POLICY#overlap", "META")
        .await
        .unwrap()
        .unwrap();
    record.running = None;
    assert!(env
        .app
        .store
        .put_doc(
            "POLICY#overlap",
            "META",
            &record,
            Some(revision),
            Some("#POLICY")
        )
        .await
        .unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let b = start(&env, "overlap").await;
    assert_eq!(run_until_ended(&env, &b).await.status, "Complete");
    let b_id = policy_record(&env, "overlap").await.last_snapshot.unwrap();
    let ids: Vec<String> = backup::list_snapshots(&env.app, "overlap")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(
        ids,
        vec![first.clone(), b_id.clone()],
        "keepLast 1, but run A still diffs against the first snapshot"
    );

    // A completes last: it is not the newest (it started first), so B stays the policy's
    // newest, and retention expires A's and the first snapshots, never what B references.
    release(&env, &a).await;
    env.run_to_complete(&a).await;
    let ids: Vec<String> = backup::list_snapshots(&env.app, "overlap")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, vec![b_id.clone()]);
    assert_eq!(
        policy_record(&env, "overlap").await.last_snapshot,
        Some(b_id.clone())
    );
    let chosen = backup::choose_snapshot(&env.app, "overlap", &RestoreRequest::default())
        .await
        .unwrap();
    assert_eq!(chosen.id, b_id);
    // Every version B references is still there: restoring it succeeds task by task.
    let restore = backup::start_restore(
        &env.app,
        "overlap",
        &RestoreRequest {
            to: Some((env.dst.clone(), "restored/".into())),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let described = env.run_to_complete(&restore.job_id).await;
    assert_eq!(described.progress_summary.number_of_tasks_failed, 0);
    assert_eq!(
        env.get(&env.dst, "restored/data/f").await,
        Some(b"v2".to_vec())
    );
    assert_eq!(
        env.get(&env.dst, "restored/data/same").await,
        Some(b"same".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_keeps_a_snapshot_an_unfinished_restore_reads() {
    let env = TestEnv::new().await;
    let mut p = policy(&env, "reading");
    p.retention = Retention {
        keep_last: Some(1),
        keep_days: None,
    };
    backup::put_policy(&env.app, p).await.unwrap();
    env.put(&env.src, "data/f", "v1").await;
    completed_run(&env, "reading").await;
    let first = backup::list_snapshots(&env.app, "reading").await.unwrap()[0]
        .id
        .clone();
    let restore = backup::start_restore(
        &env.app,
        "reading",
        &RestoreRequest {
            snapshot: Some(first.clone()),
            to: Some((env.dst.clone(), "restored/".into())),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    hold(&env, &restore.job_id).await;
    env.put(&env.src, "data/f", "v2").await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let second = start(&env, "reading").await;
    assert_eq!(run_until_ended(&env, &second).await.status, "Complete");
    let snapshots = backup::list_snapshots(&env.app, "reading").await.unwrap();
    assert_eq!(snapshots.len(), 2, "the restore still reads the first");
    assert_eq!(snapshots[0].id, first);

    release(&env, &restore.job_id).await;
    let described = env.run_to_complete(&restore.job_id).await;
    assert_eq!(described.progress_summary.number_of_tasks_failed, 0);
    assert_eq!(
        env.get(&env.dst, "restored/data/f").await,
        Some(b"v1".to_vec())
    );
    // Once the restore has ended, the next run's retention expires the first snapshot.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    completed_run(&env, "reading").await;
    let snapshots = backup::list_snapshots(&env.app, "reading").await.unwrap();
    assert_eq!(snapshots.len(), 1);
    assert_ne!(snapshots[0].id, first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_catalog_overwritten_at_its_key_is_never_read_in_place_of_the_one_written() {
    let env = TestEnv::new().await;
    backup::put_policy(&env.app, policy(&env, "pinned"))
        .await
        .unwrap();
    for key in ["data/a", "data/b", "data/c"] {
        env.put(&env.src, key, key).await;
    }
    completed_run(&env, "pinned").await;
    let snapshot = backup::list_snapshots(&env.app, "pinned").await.unwrap()[0].clone();
    assert!(
        snapshot.catalog.version_id.is_some() && snapshot.catalog.etag.is_some(),
        "the snapshot pins its catalog: {:?}",
        snapshot.catalog
    );
    // Something writes the catalog's key (an object copied onto it, a forgery): a catalog
    // that lists nothing, so every key would look deleted, or garbage.
    env.put(
        &snapshot.catalog.bucket,
        &snapshot.catalog.key,
        "not a catalog",
    )
    .await;
    env.put(&env.src, "data/d", "d").await;
    let (_, described) = completed_run(&env, "pinned").await;
    assert_eq!(
        described.progress_summary.total_number_of_tasks, 1,
        "only the new object is copied: the diff read the catalog as written"
    );
    let snapshots = backup::list_snapshots(&env.app, "pinned").await.unwrap();
    assert_eq!(snapshots.last().unwrap().objects, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restore_refuses_catalog_entries_outside_the_backup_directory() {
    let env = TestEnv::new().await;
    backup::put_policy(&env.app, policy(&env, "outside"))
        .await
        .unwrap();
    env.put(&env.src, "data/a", "a").await;
    completed_run(&env, "outside").await;
    let snapshot = backup::list_snapshots(&env.app, "outside").await.unwrap()[0].clone();
    // A catalog (here, its recorded version rewritten by someone with the table and the bucket)
    // naming a copy outside the policy's backup directory.
    let entry = batchops_core::backup::CatalogEntry {
        key: "data/a".into(),
        source_version: None,
        etag: None,
        size: 1,
        last_modified: "2026-11-01T00:00:00Z".into(),
        dest_key: "elsewhere/secret".into(),
        dest_version: None,
    };
    let mut body = String::from(batchops_core::backup::CATALOG_HEADER);
    body.push('\n');
    entry.write_line(&mut body);
    let gz = crate::harness::gzip(&body);
    let out = env
        .clients
        .s3
        .put_object()
        .bucket(&snapshot.catalog.bucket)
        .key(&snapshot.catalog.key)
        .body(gz.into())
        .send()
        .await
        .unwrap();
    let mut forged = snapshot.clone();
    forged.catalog.version_id = out.version_id().map(str::to_string);
    forged.catalog.etag = out.e_tag().map(str::to_string);
    let pk = "POLICY#outside".to_string();
    let sk = format!("SNAP#{}", snapshot.id);
    let (_, revision) = env
        .app
        .store
        .get_doc::<backup::SnapshotRecord>(&pk, &sk)
        .await
        .unwrap()
        .unwrap();
    assert!(env
        .app
        .store
        .put_doc(&pk, &sk, &forged, Some(revision), None)
        .await
        .unwrap());
    let restored = format!("{}-r", env.dst);
    env.clients
        .s3
        .create_bucket()
        .bucket(&restored)
        .send()
        .await
        .unwrap();
    env.set_versioning(&restored).await;
    let request = RestoreRequest {
        snapshot: Some(snapshot.id.clone()),
        to: Some((restored.clone(), "r/".into())),
        ..Default::default()
    };
    let job = backup::start_restore(&env.app, "outside", &request)
        .await
        .unwrap()
        .job_id;
    env.run_until_idle().await;
    let described = env.describe(&job).await;
    assert_eq!(described.status, "Failed", "{described:?}");
    let reason = &described.failure_reasons[0];
    assert_eq!(reason.failure_code, "SnapshotCatalogInvalid");
    assert!(
        reason.failure_reason.contains("elsewhere/secret"),
        "{reason:?}"
    );
    assert!(env.keys(&restored).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn source_keys_named_like_backup_metadata_are_backed_up_and_break_nothing() {
    let env = TestEnv::new().await;
    let mut whole = policy(&env, "meta");
    whole.source.prefix = String::new();
    whole.destination.prefix = String::new();
    backup::put_policy(&env.app, whole).await.unwrap();
    // Objects whose backup copies land exactly where metadata used to live or still lives.
    let tricky = [
        ("plain", "plain".to_string()),
        (
            ".batchops/journal/meta/20200101T000000.000Z-forged.tsv",
            "garbage, not a journal part".to_string(),
        ),
        (
            ".batchops/snapshots/meta/20200101T000000Z.catalog.gz",
            "garbage, not a catalog".to_string(),
        ),
    ];
    for (key, body) in &tricky {
        env.put(&env.src, key, body.clone()).await;
    }
    completed_run(&env, "meta").await;
    env.put(&env.src, "later", "later").await;
    // The next run reads no forged journal part and no forged catalog.
    let (_, described) = completed_run(&env, "meta").await;
    assert_eq!(described.progress_summary.total_number_of_tasks, 1);
    let snapshots = backup::list_snapshots(&env.app, "meta").await.unwrap();
    assert_eq!(snapshots.last().unwrap().objects, 4);
    // And every one of them restores exactly.
    let restored = format!("{}-r", env.dst);
    env.clients
        .s3
        .create_bucket()
        .bucket(&restored)
        .send()
        .await
        .unwrap();
    env.set_versioning(&restored).await;
    let request = RestoreRequest {
        to: Some((restored.clone(), "r/".into())),
        ..Default::default()
    };
    let job = backup::start_restore(&env.app, "meta", &request)
        .await
        .unwrap()
        .job_id;
    env.run_to_complete(&job).await;
    for (key, body) in &tricky {
        assert_eq!(
            env.get(&restored, &format!("r/{key}")).await,
            Some(body.clone().into_bytes()),
            "{key}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_control_bucket_is_never_a_backup_source_or_destination() {
    let env = TestEnv::new().await;
    let control = env.app.config.control_bucket.clone();
    let mut into_control = policy(&env, "ctl");
    into_control.destination.bucket = control.clone();
    let err = backup::put_policy(&env.app, into_control)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("destination.bucket") && err.contains("control bucket"),
        "{err}"
    );
    let mut from_control = policy(&env, "ctl");
    from_control.source.bucket = control;
    let err = backup::put_policy(&env.app, from_control)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("source.bucket"), "{err}");
}

/// The keys under the policy's journal prefix in the control bucket.
async fn journal_parts(env: &TestEnv, name: &str) -> Vec<String> {
    let prefix = format!("journal/{name}/");
    env.keys(&env.app.config.control_bucket)
        .await
        .into_iter()
        .filter(|k| k.starts_with(&prefix))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_runs_copies_are_taken_by_the_next_run_and_freed_by_retention() {
    use batchops_aws::planner::{advance, Advance};
    use batchops_aws::queue::ChunkPointer;
    use batchops_aws::worker::{process_chunk, ChunkRun};
    use std::time::{Duration, Instant, SystemTime};
    // Chunks of 2 copies; no journal margin: a part written before a run starts is settled by it.
    let env = TestEnv::with_vars(&[
        ("BATCHOPS_CHUNK_SIZE", "2"),
        ("BATCHOPS_JOURNAL_MARGIN_SECONDS", "0"),
    ])
    .await;
    backup::put_policy(&env.app, policy(&env, "halted"))
        .await
        .unwrap();
    let keys: Vec<String> = (0..6).map(|i| format!("data/k{i}")).collect();
    for key in &keys {
        env.put(&env.src, key, format!("{key} v1")).await;
    }
    let job = start(&env, "halted").await;
    while advance(&env.app, &job, Instant::now() + Duration::from_secs(60))
        .await
        .unwrap()
        == Advance::MoreWork
    {}
    // Chunk 0 (k0, k1) runs, and chunk 1 from its second task (k3); then the run is cancelled.
    for (seq, first_task) in [(0, 0), (1, 1)] {
        let pointer = ChunkPointer {
            job: job.clone(),
            seq,
            first_task,
        };
        let ran = process_chunk(
            &env.app,
            &pointer,
            SystemTime::now() + Duration::from_secs(120),
        )
        .await
        .unwrap();
        assert!(matches!(ran, ChunkRun::Committed { .. }), "{ran:?}");
    }
    batchops_aws::jobs::update_job_status(
        &env.app,
        &job,
        batchops_core::JobStatus::Cancelled,
        None,
        None,
    )
    .await
    .unwrap();
    env.run_until_idle().await;
    assert_eq!(env.describe(&job).await.status, "Cancelled");
    // Finalizing again (a redelivered request) records nothing twice.
    for _ in 0..2 {
        batchops_aws::finalizer::finalize(&env.app, &job)
            .await
            .unwrap();
    }
    assert_eq!(journal_parts(&env, "halted").await.len(), 1);
    let backup_key = |key: &str| format!("backups/src/{key}");
    for (key, versions) in [
        ("data/k0", 1),
        ("data/k1", 1),
        ("data/k2", 0),
        ("data/k3", 1),
        ("data/k4", 0),
    ] {
        assert_eq!(
            version_count(&env, &env.dst, &backup_key(key)).await,
            (versions, 0),
            "{key}"
        );
    }

    // k1 changes before the next run: the cancelled run's copy of it is in no snapshot.
    env.put(&env.src, "data/k1", "data/k1 v2").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (_, described) = completed_run(&env, "halted").await;
    assert_eq!(
        described.progress_summary.total_number_of_tasks, 4,
        "only what the cancelled run did not copy, and k1's new version"
    );
    for key in &keys {
        let expected = if key == "data/k1" { 2 } else { 1 };
        assert_eq!(
            version_count(&env, &env.dst, &backup_key(key)).await,
            (expected, 0),
            "{key}: one backup version per source version"
        );
    }
    let snapshot = backup::list_snapshots(&env.app, "halted")
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(
        (
            snapshot.objects,
            snapshot.copied,
            snapshot.continuous,
            snapshot.superseded
        ),
        (6, 4, 2, 1)
    );
    assert!(
        journal_parts(&env, "halted").await.is_empty(),
        "the settled part is deleted"
    );
    let restored = format!("{}-restore", env.dst);
    env.clients
        .s3
        .create_bucket()
        .bucket(&restored)
        .send()
        .await
        .unwrap();
    let request = RestoreRequest {
        to: Some((restored.clone(), "r/".into())),
        allow_overwrite: true,
        ..Default::default()
    };
    let restore = backup::start_restore(&env.app, "halted", &request)
        .await
        .unwrap()
        .job_id;
    env.run_to_complete(&restore).await;
    for key in &keys {
        let expected = if key == "data/k1" {
            "data/k1 v2".to_string()
        } else {
            format!("{key} v1")
        };
        assert_eq!(
            env.get(&restored, &format!("r/{key}")).await,
            Some(expected.into_bytes()),
            "{key}"
        );
    }

    // Keep one snapshot; k0 changes: the next run expires the snapshot that took the cancelled
    // run's copies, and the copies only it referenced (k0's, and k1's superseded one) go.
    let mut p = policy(&env, "halted");
    p.retention.keep_last = Some(1);
    backup::put_policy(&env.app, p).await.unwrap();
    env.put(&env.src, "data/k0", "data/k0 v2").await;
    completed_run(&env, "halted").await;
    for key in &keys {
        assert_eq!(
            version_count(&env, &env.dst, &backup_key(key)).await,
            (1, 0),
            "{key}"
        );
    }
    assert_eq!(
        env.get(&env.dst, &backup_key("data/k1")).await,
        Some(b"data/k1 v2".to_vec())
    );
    assert_eq!(
        env.get(&env.dst, &backup_key("data/k0")).await,
        Some(b"data/k0 v2".to_vec())
    );
}

/// Changes a stored snapshot record as an interrupted finalize would have left it.
async fn alter_snapshot(
    env: &TestEnv,
    name: &str,
    id: &str,
    change: impl Fn(&mut backup::SnapshotRecord),
) {
    let (pk, sk) = (format!("POLICY#{name}"), format!("SNAP#{id}"));
    let (mut record, revision) = env
        .app
        .store
        .get_doc::<backup::SnapshotRecord>(&pk, &sk)
        .await
        .unwrap()
        .unwrap();
    change(&mut record);
    assert!(env
        .app
        .store
        .put_doc(&pk, &sk, &record, Some(revision), None)
        .await
        .unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_completion_stopped_between_steps_is_finished_by_the_next_attempt() {
    let env = TestEnv::new().await;
    backup::put_policy(&env.app, policy(&env, "resume"))
        .await
        .unwrap();
    let changes = "backups/src/data/changes";
    env.put(&env.src, "data/changes", "v1").await;
    env.put(&env.src, "data/constant", "same").await;
    completed_run(&env, "resume").await;
    env.put(&env.src, "data/changes", "v2").await;
    let (second_job, _) = completed_run(&env, "resume").await;
    let second = backup::list_snapshots(&env.app, "resume").await.unwrap()[1].clone();

    // The second run's finalize stopped after indexing its snapshot, before retention (which
    // now keeps one snapshot): the next attempt runs retention, then marks it settled.
    let mut p = policy(&env, "resume");
    p.retention.keep_last = Some(1);
    backup::put_policy(&env.app, p).await.unwrap();
    alter_snapshot(&env, "resume", &second.id, |s| s.settling = true).await;
    let again = backup::complete_snapshot(&env.app, &second_job)
        .await
        .unwrap()
        .unwrap();
    assert!(!again.settling);
    let snapshots = backup::list_snapshots(&env.app, "resume").await.unwrap();
    assert_eq!(
        snapshots.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        vec![second.id.as_str()],
        "the first snapshot expired"
    );
    assert!(!snapshots[0].settling, "the mark is cleared once settled");
    assert_eq!(version_count(&env, &env.dst, changes).await, (1, 0));

    // A third run's retention stopped half-way through expiring the second snapshot: its only
    // own copy (v2) and its catalog deleted, its record not yet. The third run's next
    // finalize attempt finishes it.
    let mut p = policy(&env, "resume");
    p.retention.keep_last = None;
    backup::put_policy(&env.app, p).await.unwrap();
    env.put(&env.src, "data/changes", "v3").await;
    let (third_job, _) = completed_run(&env, "resume").await;
    let third = backup::list_snapshots(&env.app, "resume").await.unwrap()[1].clone();
    let v2 = backup::read_catalog(
        &batchops_aws::prepare::Reader::new(Some(env.app.s3.clone())),
        &second.catalog,
    )
    .await
    .unwrap()
    .into_iter()
    .find(|e| e.key == "data/changes")
    .unwrap()
    .dest_version;
    for (key, version) in [
        (changes.to_string(), v2),
        (
            second.catalog.key.clone(),
            second.catalog.version_id.clone(),
        ),
    ] {
        env.clients
            .s3
            .delete_object()
            .bucket(&env.dst)
            .key(key)
            .set_version_id(version)
            .send()
            .await
            .unwrap();
    }
    alter_snapshot(&env, "resume", &second.id, |s| s.expiring = true).await;
    alter_snapshot(&env, "resume", &third.id, |s| s.settling = true).await;
    backup::complete_snapshot(&env.app, &third_job)
        .await
        .unwrap();
    let snapshots = backup::list_snapshots(&env.app, "resume").await.unwrap();
    assert_eq!(
        snapshots.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        vec![third.id.as_str()],
        "the expiring snapshot is gone"
    );
    assert!(!snapshots[0].settling);
    // What the kept snapshot references is all there.
    let verified = batchops_aws::verify::verify_snapshot(&env.app, "resume", None)
        .await
        .unwrap();
    assert!(verified.passed, "{verified:?}");
}

/// Snapshot IDs are a run's start to the second, and a small bucket backs up in well under one.
/// A second run started in the same second as the last (here: a schedule slot at the second the
/// first, manual, run started) must get its own snapshot: with the first's ID it found that
/// snapshot, took it for its own, and its copies were in none.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_runs_started_in_the_same_second_make_two_snapshots() {
    let env = TestEnv::new().await;
    let mut p = policy(&env, "same-second");
    p.source.prefix = "same/".into();
    p.destination.prefix = "vault/same/".into();
    backup::put_policy(&env.app, p).await.unwrap();
    env.put(&env.src, "same/a", "first").await;
    let first = backup::start_run(&env.app, "same-second", None, false)
        .await
        .unwrap()
        .job_id;
    env.run_to_complete(&first).await;
    let first_id = backup::list_snapshots(&env.app, "same-second")
        .await
        .unwrap()[0]
        .id
        .clone();
    let slot = time::OffsetDateTime::from_unix_timestamp(
        batchops_core::backup::snapshot_id_unix(&first_id).unwrap(),
    )
    .unwrap();
    env.put(&env.src, "same/b", "second").await;
    let second = backup::start_run(&env.app, "same-second", Some(slot), false)
        .await
        .unwrap()
        .job_id;
    env.run_to_complete(&second).await;
    let snapshots = backup::list_snapshots(&env.app, "same-second")
        .await
        .unwrap();
    let ids: Vec<(&str, &str)> = snapshots
        .iter()
        .map(|s| (s.id.as_str(), s.job_id.as_str()))
        .collect();
    assert_eq!(ids.len(), 2, "one snapshot per run: {ids:?}");
    assert!(ids[0].0 < ids[1].0, "in time order: {ids:?}");
    assert_eq!(
        [ids[0].1, ids[1].1],
        [first.as_str(), second.as_str()],
        "each run's own"
    );
    let reader = batchops_aws::prepare::Reader::new(Some(env.app.s3.clone()));
    let keys: Vec<String> = backup::read_catalog(&reader, &snapshots[1].catalog)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, ["same/a", "same/b"], "the second run's catalog");
}
