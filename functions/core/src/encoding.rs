//! URL encoding of object keys, one place for every direction it is needed in:
//! manifests and reports (form encoding, `+` may be a space), and CopySource headers.

use percent_encoding::{percent_decode, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Characters left alone when a key is written into a report or a manifest: RFC 3986 unreserved
/// plus `/`, which S3 leaves readable in its reports.
const KEY_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("malformed percent-encoding at byte {0}")]
    BadEscape(usize),
    #[error("key is not valid UTF-8 once decoded")]
    NotUtf8,
}

/// Decodes a URL-encoded key as S3 manifests, inventories and event notifications write them:
/// `%XX` escapes, and `+` for a space.
pub fn decode_key(encoded: &str) -> Result<String, DecodeError> {
    let bytes = encoded.as_bytes();
    if !bytes.iter().any(|b| *b == b'%' || *b == b'+') {
        return Ok(encoded.to_string());
    }
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%' {
            let valid = bytes.len() > i + 2
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit();
            if !valid {
                return Err(DecodeError::BadEscape(i));
            }
        }
    }
    let plus_as_space: Vec<u8> = bytes
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    percent_decode(&plus_as_space)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| DecodeError::NotUtf8)
}

/// Encodes a key for a manifest line or a report row (`%20` for a space, `/` kept).
pub fn encode_key(key: &str) -> String {
    utf8_percent_encode(key, KEY_SET).to_string()
}

/// The `x-amz-copy-source` value: bucket, URL-encoded key, and the pinned version when known.
/// The SDK sends this header as given, so the encoding must happen here.
pub fn copy_source(bucket: &str, key: &str, version_id: Option<&str>) -> String {
    let mut source = format!("{bucket}/{}", encode_key(key));
    if let Some(version) = version_id {
        source.push_str("?versionId=");
        source.push_str(&utf8_percent_encode(version, NON_ALPHANUMERIC).to_string());
    }
    source
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_form_encoding() {
        assert_eq!(decode_key("a+b%2Bc%25d").unwrap(), "a b+c%d");
        assert_eq!(decode_key("caf%C3%A9/%E2%9C%93").unwrap(), "café/✓");
        assert_eq!(decode_key("plain/key.txt").unwrap(), "plain/key.txt");
    }

    #[test]
    fn rejects_bad_escapes() {
        assert_eq!(decode_key("bad%zzkey"), Err(DecodeError::BadEscape(3)));
        assert_eq!(decode_key("tail%4"), Err(DecodeError::BadEscape(4)));
        assert_eq!(decode_key("%FF%FE"), Err(DecodeError::NotUtf8));
    }

    #[test]
    fn encode_round_trips_awkward_keys() {
        for key in [
            "a b+c",
            "100%/x",
            "ü/ñ/✓ emoji 🎉",
            "deep/a/b/c/d",
            "tab\tnew\nline",
            "q?x=1&y#",
        ] {
            let encoded = encode_key(key);
            assert!(!encoded.contains(' ') && !encoded.contains('+') && !encoded.contains(','));
            assert_eq!(decode_key(&encoded).unwrap(), key);
        }
    }

    #[test]
    fn copy_source_encodes_key_and_version() {
        assert_eq!(
            copy_source("src", "dir/a b+c%.txt", Some("v+1/x")),
            "src/dir/a%20b%2Bc%25.txt?versionId=v%2B1%2Fx"
        );
        assert_eq!(copy_source("src", "k", None), "src/k");
    }
}

/// Encodes a tag set as the `x-amz-tagging` header wants it: `k1=v1&k2=v2`, form-encoded.
pub fn encode_tag_set(tags: &[(String, String)]) -> String {
    const TAG_SET: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    tags.iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, TAG_SET),
                utf8_percent_encode(v, TAG_SET)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tag_tests {
    use super::*;

    #[test]
    fn tag_sets_are_form_encoded() {
        let tags = vec![
            ("team".to_string(), "data eng".to_string()),
            ("a&b".to_string(), "x=y".to_string()),
        ];
        assert_eq!(encode_tag_set(&tags), "team=data%20eng&a%26b=x%3Dy");
    }
}
