//! S3 ARNs as CreateJob uses them (`arn:aws:s3:::bucket` and `arn:aws:s3:::bucket/key`), and
//! the `s3://bucket/prefix` URLs people type.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArnError {
    #[error("`{0}` is not an S3 ARN (expected arn:aws:s3:::bucket[/key])")]
    NotS3(String),
    #[error("`{0}` names no bucket")]
    NoBucket(String),
    #[error("`{0}` names no object key (expected arn:aws:s3:::bucket/key)")]
    NoKey(String),
    #[error("`{0}` must name a bucket only, not an object")]
    UnexpectedKey(String),
    #[error("`{0}` is not an s3:// URL (expected s3://bucket[/key])")]
    NotS3Url(String),
}

/// `s3://bucket/some/prefix` -> (`bucket`, `some/prefix`); the key part may be empty.
pub fn split_s3_url(url: &str) -> Result<(String, String), ArnError> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| ArnError::NotS3Url(url.to_string()))?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(ArnError::NoBucket(url.to_string()));
    }
    Ok((bucket.to_string(), key.to_string()))
}

fn strip_s3_prefix(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:")?;
    let (partition, rest) = rest.split_once(':')?;
    if !matches!(partition, "aws" | "aws-cn" | "aws-us-gov") {
        return None;
    }
    rest.strip_prefix("s3:::")
}

/// `arn:aws:s3:::bucket` -> `bucket`.
pub fn bucket_from_arn(arn: &str) -> Result<String, ArnError> {
    let rest = strip_s3_prefix(arn).ok_or_else(|| ArnError::NotS3(arn.to_string()))?;
    if rest.is_empty() {
        return Err(ArnError::NoBucket(arn.to_string()));
    }
    if rest.contains('/') {
        return Err(ArnError::UnexpectedKey(arn.to_string()));
    }
    Ok(rest.to_string())
}

/// `arn:aws:s3:::bucket/some/key` -> (`bucket`, `some/key`). The key is taken literally.
pub fn object_from_arn(arn: &str) -> Result<(String, String), ArnError> {
    let rest = strip_s3_prefix(arn).ok_or_else(|| ArnError::NotS3(arn.to_string()))?;
    let (bucket, key) = rest
        .split_once('/')
        .ok_or_else(|| ArnError::NoKey(arn.to_string()))?;
    if bucket.is_empty() {
        return Err(ArnError::NoBucket(arn.to_string()));
    }
    if key.is_empty() {
        return Err(ArnError::NoKey(arn.to_string()));
    }
    Ok((bucket.to_string(), key.to_string()))
}

pub fn bucket_arn(bucket: &str) -> String {
    format!("arn:aws:s3:::{bucket}")
}

pub fn object_arn(bucket: &str, key: &str) -> String {
    format!("arn:aws:s3:::{bucket}/{key}")
}

/// Whether `arn` names an IAM role: `arn:<partition>:iam::<12-digit account>:role/<name>`,
/// at most 2,048 characters, as S3 Control's RoleArn pattern requires.
pub fn check_role_arn(arn: &str) -> Result<(), String> {
    let wrong = || {
        format!(
            "`{arn}` is not an IAM role ARN; expected arn:aws:iam::<12-digit account>:role/<name>"
        )
    };
    if arn.len() > 2048 {
        return Err("must be at most 2048 characters".to_string());
    }
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(wrong());
    };
    let name = resource.strip_prefix("role/").unwrap_or_default();
    if !partition.starts_with("aws")
        || account.len() != 12
        || !account.bytes().all(|b| b.is_ascii_digit())
        || name.is_empty()
        || name.ends_with('/')
    {
        return Err(wrong());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn s3_urls_split_into_bucket_and_key() {
        use super::*;
        assert_eq!(
            split_s3_url("s3://b/some/prefix/").unwrap(),
            ("b".to_string(), "some/prefix/".to_string())
        );
        assert_eq!(
            split_s3_url("s3://b").unwrap(),
            ("b".to_string(), String::new())
        );
        assert!(matches!(split_s3_url("b/k"), Err(ArnError::NotS3Url(_))));
        assert!(matches!(
            split_s3_url("s3:///k"),
            Err(ArnError::NoBucket(_))
        ));
    }

    use super::*;

    #[test]
    fn parses_bucket_and_object_arns() {
        assert_eq!(
            bucket_from_arn("arn:aws:s3:::my-bucket").unwrap(),
            "my-bucket"
        );
        assert_eq!(
            object_from_arn("arn:aws:s3:::b/dir/manifest file.csv").unwrap(),
            ("b".to_string(), "dir/manifest file.csv".to_string())
        );
        assert_eq!(
            bucket_from_arn("arn:aws-cn:s3:::cn-bucket").unwrap(),
            "cn-bucket"
        );
    }

    #[test]
    fn rejects_wrong_shapes() {
        assert!(matches!(bucket_from_arn("s3://b"), Err(ArnError::NotS3(_))));
        assert!(matches!(
            bucket_from_arn("arn:aws:s3:::"),
            Err(ArnError::NoBucket(_))
        ));
        assert!(matches!(
            bucket_from_arn("arn:aws:s3:::b/k"),
            Err(ArnError::UnexpectedKey(_))
        ));
        assert!(matches!(
            object_from_arn("arn:aws:s3:::b"),
            Err(ArnError::NoKey(_))
        ));
        assert!(matches!(
            object_from_arn("arn:aws:s3:::b/"),
            Err(ArnError::NoKey(_))
        ));
        assert!(matches!(
            object_from_arn("arn:aws:sqs:::b/k"),
            Err(ArnError::NotS3(_))
        ));
    }
}
