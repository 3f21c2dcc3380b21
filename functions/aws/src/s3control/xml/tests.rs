use super::*;
use serde_json::json;

#[test]
fn the_model_loads() {
    assert!(MODEL.shapes.len() > 100, "{}", MODEL.shapes.len());
    for root in [
        "CreateJobRequest",
        "CreateJobResult",
        "DescribeJobResult",
        "ListJobsResult",
        "UpdateJobPriorityResult",
        "UpdateJobStatusResult",
        "GetJobTaggingResult",
        "PutJobTaggingRequest",
    ] {
        assert!(shape(root).is_ok(), "{root}");
    }
}

/// CreateJob's body exactly as botocore 1.44 serializes it (`serialize_to_request` of the
/// parameters in `botocore_create_job_document`).
const BOTOCORE_CREATE_JOB: &str = r#"<CreateJobRequest xmlns="http://awss3control.amazonaws.com/doc/2018-08-20/"><ConfirmationRequired>true</ConfirmationRequired><Operation><S3PutObjectCopy><TargetResource>arn:aws:s3:::dst</TargetResource><StorageClass>STANDARD</StorageClass><NewObjectMetadata><UserMetadata><entry><key>a</key><value>1 &amp; 2</value></entry></UserMetadata></NewObjectMetadata><NewObjectTagging><member><Key>k</Key><Value>v</Value></member></NewObjectTagging></S3PutObjectCopy></Operation><Report><Bucket>arn:aws:s3:::rep</Bucket><Format>Report_CSV_20180820</Format><Enabled>true</Enabled><Prefix>r</Prefix><ReportScope>AllTasks</ReportScope></Report><ClientRequestToken>tok</ClientRequestToken><Manifest><Spec><Format>S3BatchOperations_CSV_20180820</Format><Fields><member>Bucket</member><member>Key</member></Fields></Spec><Location><ObjectArn>arn:aws:s3:::src/m.csv</ObjectArn><ETag>e</ETag></Location></Manifest><Description>&lt;d&gt;</Description><Priority>10</Priority><RoleArn>arn:aws:iam::123456789012:role/r</RoleArn><Tags><member><Key>a</Key><Value>b</Value></member></Tags></CreateJobRequest>"#;

fn botocore_create_job_document() -> Value {
    json!({
        "ConfirmationRequired": true,
        "Operation": {"S3PutObjectCopy": {
            "TargetResource": "arn:aws:s3:::dst", "StorageClass": "STANDARD",
            "NewObjectMetadata": {"UserMetadata": {"a": "1 & 2"}},
            "NewObjectTagging": [{"Key": "k", "Value": "v"}]}},
        "Report": {"Bucket": "arn:aws:s3:::rep", "Format": "Report_CSV_20180820", "Enabled": true,
                   "Prefix": "r", "ReportScope": "AllTasks"},
        "ClientRequestToken": "tok",
        "Manifest": {"Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
                     "Location": {"ObjectArn": "arn:aws:s3:::src/m.csv", "ETag": "e"}},
        "Description": "<d>",
        "Priority": 10,
        "RoleArn": "arn:aws:iam::123456789012:role/r",
        "Tags": [{"Key": "a", "Value": "b"}]
    })
}

#[test]
fn botocores_create_job_body_reads_as_the_json_document() {
    let document = read_request(BOTOCORE_CREATE_JOB, "CreateJobRequest").unwrap();
    assert_eq!(document, botocore_create_job_document());
    // And the JSON route's own parser takes it (AccountId comes from the header).
    let mut with_account = document.clone();
    with_account["AccountId"] = json!("123456789012");
    batchops_core::CreateJobRequest::from_json(&with_account.to_string()).unwrap();
}

/// A value for every member of `shape_name`, recursively: lists of two, maps of one entry,
/// numbers, booleans, and strings that say where they are (with characters XML escapes).
fn sample(shape_name: &str, path: &str, depth: usize) -> Value {
    assert!(depth < 16, "the model nests deeper than expected at {path}");
    let shape = shape(shape_name).unwrap();
    match shape.kind.as_str() {
        "structure" => Value::Object(
            shape
                .members
                .iter()
                .map(|(name, member)| {
                    let path = format!("{path}.{name}");
                    let value = sample(&member.shape, &path, depth + 1);
                    (name.clone(), value)
                })
                .collect(),
        ),
        "list" => {
            let member = shape.member.as_ref().unwrap();
            json!([
                sample(&member.shape, &format!("{path}[0]"), depth + 1),
                sample(&member.shape, &format!("{path}[1]"), depth + 1)
            ])
        }
        "map" => {
            let value = shape.value.as_ref().unwrap();
            json!({"key <&>": sample(&value.shape, &format!("{path}.key"), depth + 1)})
        }
        "integer" | "long" => json!(path.len() as i64),
        "boolean" => json!(path.len().is_multiple_of(2)),
        _ => json!(format!("{path} <&> \"'")),
    }
}

fn count_leaves(value: &Value) -> usize {
    match value {
        Value::Object(object) => object.values().map(count_leaves).sum(),
        Value::Array(items) => items.iter().map(count_leaves).sum(),
        _ => 1,
    }
}

#[test]
fn every_field_of_every_job_shape_survives_json_to_xml_to_json() {
    for root in [
        "CreateJobRequest",
        "CreateJobResult",
        "DescribeJobResult",
        "ListJobsResult",
        "UpdateJobPriorityResult",
        "UpdateJobStatusResult",
        "GetJobTaggingResult",
        "PutJobTaggingRequest",
    ] {
        let document = sample(root, root, 0);
        let xml = write_response(root, &document).unwrap();
        let back = read_request(&xml, root).unwrap_or_else(|e| panic!("{root}: {e}\n{xml}"));
        assert_eq!(back, document, "{root}: {xml}");
        if root == "DescribeJobResult" || root == "CreateJobRequest" {
            // Every field of the job shapes is in the sample (CreateJob's has over 100).
            assert!(count_leaves(&document) > 100, "{root}");
        }
    }
}

#[test]
fn xml_element_names_and_list_items_are_s3_controls() {
    let document = json!({"Job": {
        "JobId": "j1",
        "Operation": {"S3PutObjectCopy": {"SSEAwsKmsKeyId": "k"}},
        "Manifest": {"Spec": {"Fields": ["Bucket", "Key"]}},
        "FailureReasons": [{"FailureCode": "c", "FailureReason": "r"}],
        "ManifestGenerator": {"S3JobManifestGenerator": {"SourceBucket": "arn:aws:s3:::b",
            "ManifestOutputLocation": {"Bucket": "arn:aws:s3:::o", "ManifestFormat": "S3InventoryReport_CSV_20211130",
                "ManifestEncryption": {"SSES3": {}}}}},
        "ProgressSummary": {"TotalNumberOfTasks": 3, "NumberOfBytesCopied": 99},
        "Warnings": ["batchops only"]
    }});
    let xml = write_response("DescribeJobResult", &document).unwrap();
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeJobResult xmlns=\"http://awss3control.amazonaws.com/doc/2018-08-20/\"><Job>"), "{xml}");
    assert!(
        xml.contains("<Fields><member>Bucket</member><member>Key</member></Fields>"),
        "{xml}"
    );
    assert!(xml.contains("<FailureReasons><member><FailureCode>c</FailureCode><FailureReason>r</FailureReason></member></FailureReasons>"), "{xml}");
    assert!(
        xml.contains("<ManifestEncryption><SSE-S3></SSE-S3></ManifestEncryption>"),
        "{xml}"
    );
    assert!(
        xml.contains("<TotalNumberOfTasks>3</TotalNumberOfTasks>"),
        "{xml}"
    );
    // batchops' extensions have no place in S3's shape.
    assert!(
        !xml.contains("NumberOfBytesCopied") && !xml.contains("Warnings"),
        "{xml}"
    );
    // Empty structures read back as {} under their JSON names.
    let back = read_request(&xml, "DescribeJobResult").unwrap();
    assert_eq!(
        back["Job"]["ManifestGenerator"]["S3JobManifestGenerator"]["ManifestOutputLocation"]
            ["ManifestEncryption"],
        json!({"SSES3": {}})
    );
}

#[test]
fn bad_bodies_are_refused_naming_the_element() {
    let wrap =
        |inner: &str| format!("<CreateJobRequest xmlns=\"{NAMESPACE}\">{inner}</CreateJobRequest>");
    let error = |xml: &str| read_request(xml, "CreateJobRequest").unwrap_err();
    assert!(error(&wrap("<Priority>high</Priority>"))
        .contains("Priority: `high` is not a whole number"));
    assert!(
        error(&wrap("<ConfirmationRequired>yes</ConfirmationRequired>"))
            .contains("ConfirmationRequired: `yes` is not true or false")
    );
    let unknown = error(&wrap(
        "<Report><Bucket>b</Bucket><Colour>red</Colour></Report>",
    ));
    assert!(
        unknown.contains("Report.Colour: unknown element"),
        "{unknown}"
    );
    assert!(error(&wrap("<Priority>1</Priority><Priority>2</Priority>"))
        .contains("Priority: given more than once"));
    let item = error(&wrap(
        "<Tags><Tag><Key>a</Key><Value>b</Value></Tag></Tags>",
    ));
    assert!(
        item.contains("Tags[0]: a list item is <member>, not <Tag>"),
        "{item}"
    );
    assert!(error("<PutJobTaggingRequest/>")
        .contains("root element is <PutJobTaggingRequest>, expected <CreateJobRequest>"));
    assert!(error(&wrap("<Priority>1</Priority")).contains("does not parse"));
    assert!(error("<CreateJobRequest>").contains("ends before"));
    assert!(error(&format!("{}<x/>", wrap(""))).contains("more after its root"));
}

#[test]
fn text_with_entities_and_cdata_reads_whole() {
    let xml = "<CreateJobRequest><Description>a &amp; b &#x41;<![CDATA[<c>]]></Description></CreateJobRequest>";
    let document = read_request(xml, "CreateJobRequest").unwrap();
    assert_eq!(document["Description"], "a & b A<c>");
}
