//! Object checksums computed from a stream (`S3ComputeObjectChecksum`): one algorithm over the
//! whole object (FULL_OBJECT), or over each part of a multipart object and then over the parts'
//! checksums (COMPOSITE, `<value>-<parts>` as S3 writes it). Memory is one hasher per part in
//! progress, whatever the object's size; the bytes are fed as they arrive and never kept.
//!
//! The CRCs and SHAs come from `aws-smithy-checksums` (the SDK's own hashers); MD5 from `md-5`
//! (the smithy crate's MD5 is deprecated and hashes CRC32 instead).

use base64::Engine as _;
use md5::Digest as _;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChecksumAlgorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
    Md5,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChecksumType {
    FullObject,
    Composite,
}

impl ChecksumType {
    pub fn name(self) -> &'static str {
        match self {
            ChecksumType::FullObject => "FULL_OBJECT",
            ChecksumType::Composite => "COMPOSITE",
        }
    }
}

impl ChecksumAlgorithm {
    pub const NAMES: [&'static str; 6] = ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256", "MD5"];

    /// The algorithm S3 names `name`.
    pub fn from_name(name: &str) -> Result<Self, String> {
        Ok(match name {
            "CRC32" => ChecksumAlgorithm::Crc32,
            "CRC32C" => ChecksumAlgorithm::Crc32c,
            "CRC64NVME" => ChecksumAlgorithm::Crc64Nvme,
            "SHA1" => ChecksumAlgorithm::Sha1,
            "SHA256" => ChecksumAlgorithm::Sha256,
            "MD5" => ChecksumAlgorithm::Md5,
            "SHA512" | "XXHASH64" | "XXHASH3" | "XXHASH128" => {
                return Err(format!(
                    "`{name}` is not supported by batchops (no hasher for it in the SDK's checksum library); expected one of {}",
                    Self::NAMES.join(", ")
                ))
            }
            other => {
                return Err(format!(
                    "unknown algorithm `{other}`; expected one of {}",
                    Self::NAMES.join(", ")
                ))
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "CRC32",
            ChecksumAlgorithm::Crc32c => "CRC32C",
            ChecksumAlgorithm::Crc64Nvme => "CRC64NVME",
            ChecksumAlgorithm::Sha1 => "SHA1",
            ChecksumAlgorithm::Sha256 => "SHA256",
            ChecksumAlgorithm::Md5 => "MD5",
        }
    }

    /// Whether S3 has COMPOSITE checksums of this algorithm (CRC64NVME is full-object only).
    pub fn composes(self) -> bool {
        self != ChecksumAlgorithm::Crc64Nvme
    }

    fn hasher(self) -> Hasher {
        use aws_smithy_checksums::ChecksumAlgorithm as Smithy;
        let smithy = match self {
            ChecksumAlgorithm::Md5 => return Hasher::Md5(md5::Md5::new()),
            ChecksumAlgorithm::Crc32 => Smithy::Crc32,
            ChecksumAlgorithm::Crc32c => Smithy::Crc32c,
            ChecksumAlgorithm::Crc64Nvme => Smithy::Crc64Nvme,
            ChecksumAlgorithm::Sha1 => Smithy::Sha1,
            ChecksumAlgorithm::Sha256 => Smithy::Sha256,
        };
        Hasher::Smithy(smithy.into_impl())
    }
}

enum Hasher {
    Smithy(Box<dyn aws_smithy_checksums::http::HttpChecksum>),
    Md5(md5::Md5),
}

impl Hasher {
    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Smithy(h) => h.update(bytes),
            Hasher::Md5(h) => h.update(bytes),
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Smithy(h) => h.finalize().to_vec(),
            Hasher::Md5(h) => h.finalize().to_vec(),
        }
    }
}

/// A checksum being computed over an object's bytes as they stream in.
pub struct StreamingChecksum {
    algorithm: ChecksumAlgorithm,
    current: Hasher,
    /// COMPOSITE: the parts' sizes, the part being hashed, bytes left in it, and the hasher over
    /// the finished parts' checksums.
    composite: Option<Composite>,
    bytes: u64,
}

struct Composite {
    part_sizes: Vec<u64>,
    part: usize,
    left: u64,
    of_parts: Hasher,
}

/// A finished checksum: the digest, and the number of parts for a COMPOSITE one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChecksumValue {
    pub algorithm: ChecksumAlgorithm,
    pub checksum_type: ChecksumType,
    pub digest: Vec<u8>,
    pub parts: Option<usize>,
}

impl StreamingChecksum {
    /// A FULL_OBJECT checksum.
    pub fn full_object(algorithm: ChecksumAlgorithm) -> Self {
        StreamingChecksum {
            algorithm,
            current: algorithm.hasher(),
            composite: None,
            bytes: 0,
        }
    }

    /// A COMPOSITE checksum of an object uploaded in parts of these sizes (in order).
    pub fn composite(algorithm: ChecksumAlgorithm, part_sizes: Vec<u64>) -> Self {
        let left = part_sizes.first().copied().unwrap_or(0);
        StreamingChecksum {
            algorithm,
            current: algorithm.hasher(),
            composite: Some(Composite {
                part_sizes,
                part: 0,
                left,
                of_parts: algorithm.hasher(),
            }),
            bytes: 0,
        }
    }

    pub fn update(&mut self, mut bytes: &[u8]) {
        self.bytes += bytes.len() as u64;
        let Some(composite) = &mut self.composite else {
            self.current.update(bytes);
            return;
        };
        while !bytes.is_empty() {
            // Bytes past the last part land in it; `finish` reports the size mismatch.
            let last = composite.part + 1 >= composite.part_sizes.len();
            let take = if last {
                bytes.len()
            } else {
                bytes.len().min(composite.left as usize)
            };
            self.current.update(&bytes[..take]);
            composite.left = composite.left.saturating_sub(take as u64);
            bytes = &bytes[take..];
            if composite.left == 0 && !last {
                let done = std::mem::replace(&mut self.current, self.algorithm.hasher());
                composite.of_parts.update(&done.finish());
                composite.part += 1;
                composite.left = composite.part_sizes[composite.part];
            }
        }
    }

    /// The checksum; an error when the bytes read do not add up to the parts' sizes.
    pub fn finish(self) -> Result<ChecksumValue, String> {
        let algorithm = self.algorithm;
        match self.composite {
            None => Ok(ChecksumValue {
                algorithm,
                checksum_type: ChecksumType::FullObject,
                digest: self.current.finish(),
                parts: None,
            }),
            Some(mut composite) => {
                let expected: u64 = composite.part_sizes.iter().sum();
                if expected != self.bytes {
                    return Err(format!(
                        "read {} bytes, but the object's {} parts hold {expected}",
                        self.bytes,
                        composite.part_sizes.len()
                    ));
                }
                composite.of_parts.update(&self.current.finish());
                Ok(ChecksumValue {
                    algorithm,
                    checksum_type: ChecksumType::Composite,
                    digest: composite.of_parts.finish(),
                    parts: Some(composite.part_sizes.len()),
                })
            }
        }
    }
}

impl ChecksumValue {
    fn suffix(&self) -> String {
        self.parts.map(|n| format!("-{n}")).unwrap_or_default()
    }

    /// Base64, as S3's `x-amz-checksum-*` headers carry it (`-<parts>` for COMPOSITE).
    pub fn base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.digest) + &self.suffix()
    }

    /// Upper-case hex (`-<parts>` for COMPOSITE).
    pub fn hex(&self) -> String {
        hex::encode_upper(&self.digest) + &self.suffix()
    }

    /// The task's ResultMessage as S3 Batch Operations writes it for Compute checksum jobs:
    /// `{"checksum_base64":…,"etag":…,"checksumAlgorithm":…,"checksumType":…,"checksum_hex":…}`,
    /// with `=` and the other HTML-sensitive characters escaped as `\u003d` … the way S3's
    /// reports show them.
    pub fn result_message(&self, etag: &str) -> String {
        let field = |value: &str| html_safe_json(value);
        format!(
            "{{\"checksum_base64\":{},\"etag\":{},\"checksumAlgorithm\":{},\"checksumType\":{},\"checksum_hex\":{}}}",
            field(&self.base64()),
            field(etag.trim_matches('"')),
            field(self.algorithm.name()),
            field(self.checksum_type.name()),
            field(&self.hex()),
        )
    }
}

/// A JSON string with `<`, `>`, `&`, `=` and `'` escaped as `\u00XX`.
fn html_safe_json(value: &str) -> String {
    let quoted = serde_json::Value::String(value.to_string()).to_string();
    let mut out = String::with_capacity(quoted.len());
    for c in quoted.chars() {
        match c {
            '<' | '>' | '&' | '=' | '\'' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(algorithm: ChecksumAlgorithm, data: &[u8]) -> ChecksumValue {
        let mut sum = StreamingChecksum::full_object(algorithm);
        sum.update(data);
        sum.finish().unwrap()
    }

    #[test]
    fn full_object_checksums_match_the_published_check_values() {
        // CRC check values over "123456789" (the CRC catalogue's), digests of "abc" (FIPS/RFC).
        let cases = [
            (ChecksumAlgorithm::Crc32, &b"123456789"[..], "CBF43926"),
            (ChecksumAlgorithm::Crc32c, b"123456789", "E3069283"),
            (
                ChecksumAlgorithm::Crc64Nvme,
                b"123456789",
                "AE8B14860A799888",
            ),
            (
                ChecksumAlgorithm::Sha1,
                b"abc",
                "A9993E364706816ABA3E25717850C26C9CD0D89D",
            ),
            (
                ChecksumAlgorithm::Sha256,
                b"abc",
                "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
            ),
            (
                ChecksumAlgorithm::Md5,
                b"abc",
                "900150983CD24FB0D6963F7D28E17F72",
            ),
        ];
        for (algorithm, data, hex) in cases {
            assert_eq!(full(algorithm, data).hex(), hex, "{algorithm:?}");
            // Fed a byte at a time: the same value.
            let mut sum = StreamingChecksum::full_object(algorithm);
            for byte in data {
                sum.update(std::slice::from_ref(byte));
            }
            assert_eq!(sum.finish().unwrap().hex(), hex, "{algorithm:?} bytewise");
        }
        assert_eq!(
            full(ChecksumAlgorithm::Crc32, b"123456789").base64(),
            "y/Q5Jg=="
        );
    }

    #[test]
    fn composite_checksums_hash_the_parts_checksums_whatever_the_stream_boundaries() {
        let data: Vec<u8> = (0..100u8).collect();
        let sizes = vec![40, 40, 20];
        let parts: Vec<u8> = [&data[..40], &data[40..80], &data[80..]]
            .iter()
            .flat_map(|part| full(ChecksumAlgorithm::Sha256, part).digest)
            .collect();
        let expected = full(ChecksumAlgorithm::Sha256, &parts);
        for step in [1, 7, 40, 64, 100] {
            let mut sum = StreamingChecksum::composite(ChecksumAlgorithm::Sha256, sizes.clone());
            for chunk in data.chunks(step) {
                sum.update(chunk);
            }
            let value = sum.finish().unwrap();
            assert_eq!(value.digest, expected.digest, "step {step}");
            assert_eq!(value.base64(), format!("{}-3", expected.base64()));
            assert_eq!(value.checksum_type, ChecksumType::Composite);
        }
        let mut short = StreamingChecksum::composite(ChecksumAlgorithm::Crc32, sizes);
        short.update(&data[..99]);
        assert!(short.finish().unwrap_err().contains("read 99 bytes"));
    }

    #[test]
    fn result_message_is_written_as_s3_batch_operations_writes_it() {
        // The documented example: CRC32 FULL_OBJECT of a 1 MB object is 6D2F5339.
        let value = ChecksumValue {
            algorithm: ChecksumAlgorithm::Crc32,
            checksum_type: ChecksumType::FullObject,
            digest: vec![0x6D, 0x2F, 0x53, 0x39],
            parts: None,
        };
        assert_eq!(
            value.result_message("\"3c3c1813042989094598e4b57ecbdc82\""),
            r#"{"checksum_base64":"bS9TOQ\u003d\u003d","etag":"3c3c1813042989094598e4b57ecbdc82","checksumAlgorithm":"CRC32","checksumType":"FULL_OBJECT","checksum_hex":"6D2F5339"}"#
        );
    }
}
