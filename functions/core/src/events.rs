//! S3 event notifications as they arrive on the events queue (directly from S3, through SNS,
//! or from EventBridge), reduced to what backups need: which object changed, how, and in what
//! order. Pure.

use crate::encoding::decode_key;
use serde::Deserialize;
use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// ObjectCreated:* (a new object or version).
    Created,
    /// ObjectRemoved:* and lifecycle expirations (the current object is gone or hidden).
    Removed,
}

/// One object event, key decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEvent {
    pub kind: EventKind,
    pub name: String,
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    pub etag: Option<String>,
    pub size: Option<u64>,
    /// Orders events of one key (hex; see `sequencer_cmp`).
    pub sequencer: String,
    pub time: String,
}

impl ObjectEvent {
    /// Names this event for dedupe: the same event delivered twice has the same identity, and
    /// two writes of one key differ in version, sequencer or time (some emulators send neither
    /// version nor sequencer).
    pub fn identity(&self) -> String {
        format!(
            "{}/{}@{}#{}#{}#{}",
            self.bucket,
            crate::encoding::encode_key(&self.key),
            self.version_id.as_deref().unwrap_or_default(),
            self.sequencer,
            self.etag.as_deref().unwrap_or_default(),
            self.time
        )
    }
}

/// What one queue message held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// `s3:TestEvent`, sent when a notification configuration is saved: nothing to do.
    Test,
    /// Object events; events of other kinds (tagging, ACL, restore, replication) are left out.
    Objects(Vec<ObjectEvent>),
}

#[derive(Deserialize)]
struct Records {
    #[serde(rename = "Records")]
    records: Vec<Record>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    #[serde(default)]
    event_source: String,
    #[serde(default)]
    event_name: String,
    #[serde(default)]
    event_time: String,
    s3: Option<RecordS3>,
}

#[derive(Deserialize)]
struct RecordS3 {
    bucket: NamedBucket,
    object: RecordObject,
}

#[derive(Deserialize)]
struct NamedBucket {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordObject {
    key: String,
    size: Option<u64>,
    #[serde(rename = "eTag")]
    e_tag: Option<String>,
    version_id: Option<String>,
    #[serde(default)]
    sequencer: String,
}

#[derive(Deserialize)]
struct BridgeDetail {
    bucket: NamedBucket,
    object: BridgeObject,
}

#[derive(Deserialize)]
struct BridgeObject {
    key: String,
    size: Option<u64>,
    etag: Option<String>,
    #[serde(rename = "version-id")]
    version_id: Option<String>,
    #[serde(default)]
    sequencer: String,
}

fn kind_of(event_name: &str) -> Option<EventKind> {
    if event_name.starts_with("ObjectCreated:") {
        Some(EventKind::Created)
    } else if event_name.starts_with("ObjectRemoved:")
        || event_name.starts_with("LifecycleExpiration:")
    {
        Some(EventKind::Removed)
    } else {
        None
    }
}

/// Parses one queue message body. Errors name what is wrong (and which record).
pub fn parse_notification(body: &str) -> Result<Notification, String> {
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    // SNS fan-out wraps the S3 message in an envelope.
    if value.get("Type").and_then(|t| t.as_str()) == Some("Notification") {
        let inner = value
            .get("Message")
            .and_then(|m| m.as_str())
            .ok_or("SNS notification without a Message string")?;
        return parse_notification(inner);
    }
    if value.get("Event").and_then(|e| e.as_str()) == Some("s3:TestEvent") {
        return Ok(Notification::Test);
    }
    if value.get("source").and_then(|s| s.as_str()) == Some("aws.s3") {
        return parse_eventbridge(&value);
    }
    if value.get("Records").is_none() {
        return Err(
            "neither S3 event Records, an s3:TestEvent, nor an EventBridge S3 event".into(),
        );
    }
    let records: Records =
        serde_json::from_value(value).map_err(|e| format!("S3 event Records: {e}"))?;
    let mut events = Vec::new();
    for (index, record) in records.records.into_iter().enumerate() {
        if record.event_source != "aws:s3" {
            return Err(format!(
                "Records[{index}]: eventSource `{}` is not aws:s3",
                record.event_source
            ));
        }
        let Some(kind) = kind_of(&record.event_name) else {
            continue;
        };
        let s3 = record
            .s3
            .ok_or_else(|| format!("Records[{index}]: no s3 field"))?;
        // Keys arrive form-encoded: `+` is a space.
        let key = decode_key(&s3.object.key)
            .map_err(|e| format!("Records[{index}].s3.object.key `{}`: {e}", s3.object.key))?;
        events.push(ObjectEvent {
            kind,
            name: record.event_name,
            bucket: s3.bucket.name,
            key,
            // Unversioned buckets send "null" or nothing.
            version_id: s3
                .object
                .version_id
                .filter(|v| !v.is_empty() && v != "null"),
            etag: s3.object.e_tag.filter(|e| !e.is_empty()),
            size: s3.object.size,
            sequencer: s3.object.sequencer,
            time: record.event_time,
        });
    }
    Ok(Notification::Objects(events))
}

fn parse_eventbridge(value: &serde_json::Value) -> Result<Notification, String> {
    let detail_type = value
        .get("detail-type")
        .and_then(|d| d.as_str())
        .unwrap_or_default();
    let kind = match detail_type {
        "Object Created" => EventKind::Created,
        "Object Deleted" => EventKind::Removed,
        _ => return Ok(Notification::Objects(Vec::new())),
    };
    let detail: BridgeDetail =
        serde_json::from_value(value.get("detail").cloned().unwrap_or_default())
            .map_err(|e| format!("EventBridge S3 event detail: {e}"))?;
    Ok(Notification::Objects(vec![ObjectEvent {
        kind,
        name: detail_type.to_string(),
        bucket: detail.bucket.name,
        // EventBridge keys are not URL-encoded.
        key: detail.object.key,
        version_id: detail
            .object
            .version_id
            .filter(|v| !v.is_empty() && v != "null"),
        etag: detail.object.etag,
        size: detail.object.size,
        sequencer: detail.object.sequencer,
        time: value
            .get("time")
            .and_then(|t| t.as_str())
            .unwrap_or_default()
            .to_string(),
    }]))
}

/// Orders two sequencers of one key: hex numbers of varying length, so the shorter is
/// left-padded with zeros before comparing.
pub fn sequencer_cmp(a: &str, b: &str) -> Ordering {
    let width = a.len().max(b.len());
    format!("{a:0>width$}").cmp(&format!("{b:0>width$}"))
}

/// Reduces a batch to what must be done for the newest state of each key: per (bucket, key),
/// the latest event by sequencer. With `every_version`, every Created event is kept too (oldest
/// first), so each version is copied. Output is ordered by key, then sequencer.
pub fn coalesce(mut events: Vec<ObjectEvent>, every_version: bool) -> Vec<ObjectEvent> {
    events.sort_by(|a, b| {
        (a.bucket.as_str(), a.key.as_str())
            .cmp(&(b.bucket.as_str(), b.key.as_str()))
            .then_with(|| sequencer_cmp(&a.sequencer, &b.sequencer))
    });
    // The same event delivered twice in one batch is one event.
    events.dedup_by(|b, a| a.identity() == b.identity() && a.kind == b.kind);
    let mut out: Vec<ObjectEvent> = Vec::with_capacity(events.len());
    for event in events {
        if let Some(last) = out.last() {
            let same_key = last.bucket == event.bucket && last.key == event.key;
            if same_key && !(every_version && last.kind == EventKind::Created) {
                out.pop();
            }
        }
        out.push(event);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, key: &str, version: Option<&str>, sequencer: &str) -> String {
        let version = version
            .map(|v| format!(r#","versionId":"{v}""#))
            .unwrap_or_default();
        format!(
            r#"{{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventTime":"2026-11-22T10:00:00.000Z","eventName":"{name}","s3":{{"s3SchemaVersion":"1.0","bucket":{{"name":"src","arn":"arn:aws:s3:::src"}},"object":{{"key":"{key}","size":5,"eTag":"abc"{version},"sequencer":"{sequencer}"}}}}}}"#
        )
    }

    fn objects(body: &str) -> Vec<ObjectEvent> {
        match parse_notification(body).unwrap() {
            Notification::Objects(events) => events,
            Notification::Test => panic!("test event"),
        }
    }

    #[test]
    fn parses_records_with_encoded_keys() {
        let body = format!(
            r#"{{"Records":[{},{},{}]}}"#,
            record(
                "ObjectCreated:Put",
                "dir/a+b%2Bc%C3%A9.txt",
                Some("v1"),
                "0A"
            ),
            record("ObjectRemoved:DeleteMarkerCreated", "x", Some("null"), "0B"),
            record("ObjectTagging:Put", "y", None, "0C"),
        );
        let events = objects(&body);
        assert_eq!(events.len(), 2, "tagging events are left out");
        assert_eq!(events[0].key, "dir/a b+cé.txt");
        assert_eq!(events[0].kind, EventKind::Created);
        assert_eq!(events[0].version_id.as_deref(), Some("v1"));
        assert_eq!(events[0].size, Some(5));
        assert_eq!(events[1].kind, EventKind::Removed);
        assert_eq!(events[1].version_id, None, "\"null\" is no version");
    }

    #[test]
    fn test_events_sns_and_eventbridge() {
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-22T10:00:00.000Z","Bucket":"src","RequestId":"r","HostId":"h"}"#;
        assert_eq!(parse_notification(test).unwrap(), Notification::Test);
        let sns = serde_json::json!({"Type": "Notification", "Message": test}).to_string();
        assert_eq!(parse_notification(&sns).unwrap(), Notification::Test);
        let bridge = r#"{"source":"aws.s3","detail-type":"Object Created","time":"t","detail":{"bucket":{"name":"src"},"object":{"key":"a b","size":3,"etag":"e","version-id":"v","sequencer":"01"}}}"#;
        let events = objects(bridge);
        assert_eq!(events[0].key, "a b");
        assert_eq!(events[0].version_id.as_deref(), Some("v"));
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        assert!(parse_notification("nope")
            .unwrap_err()
            .starts_with("not JSON"));
        assert!(parse_notification("{}").unwrap_err().contains("Records"));
        let bad_key = format!(
            r#"{{"Records":[{}]}}"#,
            record("ObjectCreated:Put", "a%zz", None, "01")
        );
        let err = parse_notification(&bad_key).unwrap_err();
        assert!(err.starts_with("Records[0].s3.object.key `a%zz`"), "{err}");
        let other = r#"{"Records":[{"eventSource":"aws:sqs","eventName":"x"}]}"#;
        assert!(parse_notification(other).unwrap_err().contains("aws:sqs"));
    }

    #[test]
    fn sequencers_compare_as_numbers() {
        assert_eq!(sequencer_cmp("0A", "9"), Ordering::Greater);
        assert_eq!(sequencer_cmp("00FF", "FF"), Ordering::Equal);
        assert_eq!(
            sequencer_cmp("0055AED6DCD90281E5", "0055AED6DCD90281E6"),
            Ordering::Less
        );
    }

    #[test]
    fn coalesce_keeps_the_latest_per_key() {
        let body = format!(
            r#"{{"Records":[{},{},{},{},{}]}}"#,
            record("ObjectCreated:Put", "k", Some("v2"), "0B"),
            record("ObjectCreated:Put", "k", Some("v1"), "0A"),
            record("ObjectRemoved:Delete", "j", None, "0C"),
            record("ObjectCreated:Put", "j", None, "0B"),
            record("ObjectCreated:Put", "k", Some("v2"), "0B"),
        );
        let latest = coalesce(objects(&body), false);
        let summary: Vec<(String, EventKind, Option<String>)> = latest
            .iter()
            .map(|e| (e.key.clone(), e.kind, e.version_id.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("j".to_string(), EventKind::Removed, None),
                ("k".to_string(), EventKind::Created, Some("v2".to_string())),
            ]
        );
        let every = coalesce(objects(&body), true);
        let versions: Vec<Option<String>> = every
            .iter()
            .filter(|e| e.key == "k")
            .map(|e| e.version_id.clone())
            .collect();
        assert_eq!(
            versions,
            vec![Some("v1".to_string()), Some("v2".to_string())]
        );
    }
}
