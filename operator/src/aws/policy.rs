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

/// The audience of projected service-account tokens meant for STS.
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";

/// The issuer (host and path, no scheme) an IAM OIDC provider ARN names:
/// `arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC`.
pub fn issuer_of_provider(arn: &str) -> Option<&str> {
    arn.split_once(":oidc-provider/")
        .map(|(_, issuer)| issuer)
        .filter(|i| !i.is_empty())
}

/// Trust policy of an upload role: only web identities from the cluster's OIDC provider,
/// with audience `sts.amazonaws.com` and a subject among the allowed service accounts of
/// `namespace` (all of them when `service_accounts` is empty).
pub fn trust_policy(
    provider_arn: &str,
    issuer: &str,
    namespace: &str,
    service_accounts: &[String],
) -> Value {
    let sub_key = format!("{issuer}:sub");
    let aud_key = format!("{issuer}:aud");
    let condition = if service_accounts.is_empty() {
        json!({
            "StringEquals": { aud_key: STS_AUDIENCE },
            "StringLike": { sub_key: format!("system:serviceaccount:{namespace}:*") },
        })
    } else {
        let mut subs: Vec<String> = service_accounts
            .iter()
            .map(|sa| format!("system:serviceaccount:{namespace}:{sa}"))
            .collect();
        subs.sort();
        subs.dedup();
        json!({ "StringEquals": { aud_key: STS_AUDIENCE, sub_key: subs } })
    };
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Federated": provider_arn },
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": condition,
        }]
    })
}

/// Name of the inline policy the operator keeps on each role.
pub const ROLE_POLICY_NAME: &str = "uploadbucket-access";

/// Permission policy of an upload role: what signing needs, on `bucket/prefix*` only.
/// `s3:PutObject` also covers creating and completing multipart uploads.
pub fn role_policy(region: &str, bucket: &str, prefix: &str, downloads: bool) -> Value {
    let objects = objects_arn(region, bucket, prefix);
    let mut statements = vec![json!({
        "Sid": "SignUploads",
        "Effect": "Allow",
        "Action": ["s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", "s3:PutObject"],
        "Resource": objects,
    })];
    if downloads {
        statements.push(json!({
            "Sid": "SignDownloads",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": objects,
        }));
    }
    json!({ "Version": "2012-10-17", "Statement": statements })
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
    fn trust_policy_pins_provider_audience_and_subjects() {
        let arn = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC";
        let issuer = issuer_of_provider(arn).unwrap();
        assert_eq!(issuer, "oidc.eks.eu-west-1.amazonaws.com/id/ABC");
        let all = trust_policy(arn, issuer, "shop", &[]);
        let st = &all["Statement"][0];
        assert_eq!(st["Principal"]["Federated"], arn);
        assert_eq!(st["Action"], "sts:AssumeRoleWithWebIdentity");
        assert_eq!(
            st["Condition"]["StringEquals"][format!("{issuer}:aud")],
            "sts.amazonaws.com"
        );
        assert_eq!(
            st["Condition"]["StringLike"][format!("{issuer}:sub")],
            "system:serviceaccount:shop:*"
        );

        let some = trust_policy(
            arn,
            issuer,
            "shop",
            &["web".into(), "api".into(), "web".into()],
        );
        let cond = &some["Statement"][0]["Condition"];
        assert_eq!(
            cond["StringEquals"][format!("{issuer}:sub")],
            json!([
                "system:serviceaccount:shop:api",
                "system:serviceaccount:shop:web"
            ])
        );
        assert!(cond.get("StringLike").is_none());
        assert_eq!(issuer_of_provider("arn:aws:iam::1:role/x"), None);
    }

    #[test]
    fn role_policy_is_limited_to_the_prefix() {
        let p = role_policy("eu-west-1", "b1", "uploads/", false);
        assert_eq!(p["Statement"].as_array().unwrap().len(), 1);
        assert_eq!(p["Statement"][0]["Resource"], "arn:aws:s3:::b1/uploads/*");
        assert_eq!(
            p["Statement"][0]["Action"],
            json!([
                "s3:AbortMultipartUpload",
                "s3:ListMultipartUploadParts",
                "s3:PutObject"
            ])
        );
        assert!(!p.to_string().contains("GetObject"));
        assert!(
            !p.to_string().contains("arn:aws:s3:::b1\""),
            "no bucket-level rights"
        );
        let d = role_policy("eu-west-1", "b1", "uploads/", true);
        assert_eq!(d["Statement"][1]["Action"], "s3:GetObject");
        assert_eq!(d["Statement"][1]["Resource"], "arn:aws:s3:::b1/uploads/*");
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
