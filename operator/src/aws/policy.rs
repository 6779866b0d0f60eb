//! Policy documents and ARNs. Pure: no I/O.
//!
//! In: bucket name, region, key prefix. Out: JSON policy documents in one canonical form,
//! and [`canonical`] to bring what AWS returns (reordered, single values unwrapped) to the
//! same form before comparing.

use serde_json::{Value, json};

/// The AWS partition of a region (`aws`, `aws-cn`, `aws-us-gov`).
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// ARN of a bucket.
pub fn bucket_arn(region: &str, bucket: &str) -> String {
    format!("arn:{}:s3:::{bucket}", partition(region))
}

/// ARN pattern of the objects under a key prefix.
pub fn objects_arn(region: &str, bucket: &str, prefix: &str) -> String {
    format!("{}/{prefix}*", bucket_arn(region, bucket))
}

/// Statement id of the public-read grant, so it can be recognised among others.
pub const PUBLIC_READ_SID: &str = "UploadBucketPublicRead";

/// Bucket policy letting anyone GET objects under the key prefix, and nothing else.
pub fn public_read_policy(region: &str, bucket: &str, prefix: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": PUBLIC_READ_SID,
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": objects_arn(region, bucket, prefix),
        }]
    })
}

/// Canonical form for comparison: one-element arrays become their element, arrays of
/// strings are sorted, and `{"AWS": "*"}` principals become `"*"` (IAM treats them alike).
/// Object keys are already sorted by `serde_json`'s map.
pub fn canonical(v: &Value) -> Value {
    match v {
        Value::Array(items) => {
            let mut items: Vec<Value> = items.iter().map(canonical).collect();
            if items.iter().all(Value::is_string) {
                items.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
                items.dedup();
            }
            if items.len() == 1 {
                items.pop().unwrap_or(Value::Null)
            } else {
                Value::Array(items)
            }
        }
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                let v = canonical(v);
                let v = match (k.as_str(), &v) {
                    ("Principal", Value::Object(p))
                        if p.len() == 1 && p.get("AWS") == Some(&json!("*")) =>
                    {
                        json!("*")
                    }
                    _ => v,
                };
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_read_is_limited_to_the_prefix() {
        let p = public_read_policy("eu-west-1", "b1", "uploads/");
        assert_eq!(p["Statement"][0]["Resource"], "arn:aws:s3:::b1/uploads/*");
        assert_eq!(p["Statement"][0]["Action"], "s3:GetObject");
        assert_eq!(p["Statement"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn partitions() {
        assert_eq!(bucket_arn("cn-north-1", "b"), "arn:aws-cn:s3:::b");
        assert_eq!(bucket_arn("us-gov-west-1", "b"), "arn:aws-us-gov:s3:::b");
        assert_eq!(bucket_arn("us-east-1", "b"), "arn:aws:s3:::b");
    }

    #[test]
    fn canonical_ignores_order_and_wrapping() {
        let ours = json!({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*",
            "Action":["s3:PutObject","s3:AbortMultipartUpload"],"Resource":"arn:aws:s3:::b/p/*"}]});
        let theirs = json!({"Statement":{"Resource":["arn:aws:s3:::b/p/*"],"Principal":{"AWS":"*"},
            "Action":["s3:AbortMultipartUpload","s3:PutObject"],"Effect":"Allow"},"Version":"2012-10-17"});
        assert_eq!(canonical(&ours), canonical(&theirs));
        let other = json!({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*",
            "Action":["s3:PutObject"],"Resource":"arn:aws:s3:::b/p/*"}]});
        assert_ne!(canonical(&ours), canonical(&other));
    }
}
