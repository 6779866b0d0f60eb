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

/// Every bucket-policy statement the operator writes has a Sid starting with this; any other
/// statement belongs to someone else and is kept as it is.
pub const OWN_SID_PREFIX: &str = "UploadBucket";

/// Statement id of the public-read grant, so it can be recognised among others.
pub const PUBLIC_READ_SID: &str = "UploadBucketPublicRead";

fn statements(policy: &Value) -> Vec<Value> {
    match policy.get("Statement") {
        Some(Value::Array(items)) => items.clone(),
        Some(one @ Value::Object(_)) => vec![one.clone()],
        _ => Vec::new(),
    }
}

/// Whether a bucket-policy statement is one the operator wrote.
pub fn is_own_statement(statement: &Value) -> bool {
    statement
        .get("Sid")
        .and_then(Value::as_str)
        .is_some_and(|sid| sid.starts_with(OWN_SID_PREFIX))
}

/// The operator's statements in a bucket policy, in canonical form.
pub fn own_statements(policy: Option<&Value>) -> Vec<Value> {
    let mut own: Vec<Value> = policy
        .map(statements)
        .unwrap_or_default()
        .iter()
        .filter(|s| is_own_statement(s))
        .map(canonical)
        .collect();
    own.sort_by_key(|s| s.to_string());
    own
}

/// `current` with the operator's statements replaced by `ours` and everyone else's kept, in
/// their order and byte for byte; `None` when no statement remains (the policy is deleted).
pub fn merge_statements(current: Option<&Value>, ours: &[Value]) -> Option<Value> {
    let mut merged: Vec<Value> = current
        .map(statements)
        .unwrap_or_default()
        .into_iter()
        .filter(|s| !is_own_statement(s))
        .collect();
    merged.extend(ours.iter().cloned());
    if merged.is_empty() {
        return None;
    }
    let mut doc = match current {
        Some(Value::Object(map)) => Value::Object(map.clone()),
        _ => json!({}),
    };
    doc["Version"] = doc
        .get("Version")
        .cloned()
        .unwrap_or_else(|| json!("2012-10-17"));
    doc["Statement"] = Value::Array(merged);
    Some(doc)
}

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

/// Trust policy of an upload role under EKS Pod Identity: EKS (`pods.eks.amazonaws.com`)
/// may assume it and tag the session, and only for pods of this cluster (`cluster_arn`), this
/// namespace and the listed service accounts, as the session tags EKS sets say. The
/// associations decide which service accounts EKS assumes it for; the conditions make any
/// other association in the account that names this role useless.
pub fn pod_identity_trust_policy(
    cluster_arn: &str,
    namespace: &str,
    service_accounts: &[String],
) -> Value {
    let mut accounts: Vec<&str> = service_accounts.iter().map(String::as_str).collect();
    accounts.sort();
    accounts.dedup();
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": "pods.eks.amazonaws.com" },
            "Action": ["sts:AssumeRole", "sts:TagSession"],
            "Condition": { "StringEquals": {
                "aws:SourceAccount": account_of(cluster_arn).unwrap_or_default(),
                "aws:RequestTag/eks-cluster-arn": cluster_arn,
                "aws:RequestTag/kubernetes-namespace": namespace,
                "aws:RequestTag/kubernetes-service-account": accounts,
            }},
        }]
    })
}

/// Name of the inline policy the operator keeps on each role.
pub const ROLE_POLICY_NAME: &str = "uploadbucket-access";

/// Permission policy of an upload role: what signing needs, on `bucket/prefix*` only.
/// `s3:PutObject` also covers creating and completing multipart uploads.
pub fn role_policy(
    region: &str,
    bucket: &str,
    prefix: &str,
    downloads: bool,
    verification: bool,
    count_uploads: bool,
    kms: Option<&KmsKey>,
) -> Value {
    let objects = objects_arn(region, bucket, prefix);
    let mut statements = vec![json!({
        "Sid": "SignUploads",
        "Effect": "Allow",
        "Action": ["s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", "s3:PutObject"],
        "Resource": objects,
    })];
    if downloads {
        // With verification, only verified objects are handed out.
        let readable = if verification {
            objects_arn(
                region,
                bucket,
                &uploadbucket_sidecar::config::verified_prefix(prefix),
            )
        } else {
            objects.clone()
        };
        statements.push(json!({
            "Sid": "SignDownloads",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": readable,
        }));
    }
    if verification {
        // Uploads carry the pending tag (a PUT with `x-amz-tagging` needs PutObjectTagging
        // on AWS); `verify` reads an object's first bytes, retags it, or deletes it.
        statements.push(json!({
            "Sid": "VerifyUploads",
            "Effect": "Allow",
            "Action": ["s3:DeleteObject", "s3:GetObject", "s3:PutObjectTagging"],
            "Resource": objects,
        }));
    }
    if count_uploads {
        // A cap on open multipart uploads per owner is counted from S3's list of uploads in
        // progress. The action is bucket-level and takes no prefix condition: it shows the
        // keys of uploads in progress, never an object's content.
        statements.push(json!({
            "Sid": "CountOpenUploads",
            "Effect": "Allow",
            "Action": "s3:ListBucketMultipartUploads",
            "Resource": format!("arn:{}:s3:::{bucket}", partition(region)),
        }));
    }
    if let Some(key) = kms {
        statements.push(key.statement(region));
    }
    // The keys URLs name take uploads, never copies: a PUT URL plus an unsigned
    // `x-amz-copy-source` header is a CopyObject on stores that accept unsigned headers (Ceph
    // RGW), which would copy another user's object into the URL's key. `verify`'s own copies
    // go to the verified area, outside this statement. `StringLike "*"`: true exactly when
    // the key is present (RGW 16 evaluates `Null` as "absent" whatever its value).
    let upload_area = if verification {
        uploadbucket_sidecar::config::incoming_prefix(prefix)
    } else {
        prefix.to_owned()
    };
    statements.push(json!({
        "Sid": "NoCopiesIntoUploads",
        "Effect": "Deny",
        "Action": "s3:PutObject",
        "Resource": objects_arn(region, bucket, &upload_area),
        "Condition": {"StringLike": {"s3:x-amz-copy-source": "*"}},
    }));
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// Narrows every statement of `policy` that allows S3 actions to buckets of `account`
/// (`s3:ResourceAccount`): bucket names are global, and a URL signed for a bucket name that
/// another account holds (made after ours was deleted, say, and opened to everyone in its
/// bucket policy) would otherwise upload there. AWS only (other stores do not know the key).
/// Statements of other services (KMS) and denials are left as they are. Nothing is done
/// without an account (`""`).
pub fn own_account_only(policy: &mut Value, account: &str) {
    if account.is_empty() {
        return;
    }
    let Some(statements) = policy["Statement"].as_array_mut() else {
        return;
    };
    for st in statements {
        let s3_only = match &st["Action"] {
            Value::String(a) => a.starts_with("s3:"),
            Value::Array(all) => all
                .iter()
                .all(|a| a.as_str().is_some_and(|a| a.starts_with("s3:"))),
            _ => false,
        };
        if st["Effect"] == "Allow" && s3_only {
            st["Condition"]["StringEquals"]["s3:ResourceAccount"] = json!(account);
        }
    }
}

/// The KMS key of an SSE-KMS bucket, as the spec names it (key id, key ARN, `alias/...` or
/// alias ARN), with the account that owns it when the spec gives no ARN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KmsKey<'a> {
    pub key: &'a str,
    pub account: &'a str,
}

impl KmsKey<'_> {
    /// What an upload to the bucket needs of its key: S3 asks KMS for a data key on PutObject
    /// and CreateMultipartUpload, and to decrypt it again for every UploadPart. Granted on that
    /// key only; a key named by alias is matched through `kms:ResourceAliases`, since an alias
    /// ARN as a Resource authorizes nothing.
    pub fn statement(&self, region: &str) -> Value {
        let part = partition(region);
        let actions = json!(["kms:Decrypt", "kms:GenerateDataKey"]);
        let alias = |region: &str, account: &str, alias: &str| {
            json!({
                "Sid": "UseBucketKey",
                "Effect": "Allow",
                "Action": actions,
                "Resource": format!("arn:{part}:kms:{region}:{account}:key/*"),
                "Condition": {"ForAnyValue:StringEquals": {"kms:ResourceAliases": alias}},
            })
        };
        if let Some(rest) = self.key.strip_prefix("arn:") {
            // arn:<partition>:kms:<region>:<account>:key/<id> | alias/<name>
            let fields: Vec<&str> = rest.splitn(5, ':').collect();
            if let [_, _, key_region, account, resource] = fields[..]
                && resource.starts_with("alias/")
            {
                return alias(key_region, account, resource);
            }
            return json!({
                "Sid": "UseBucketKey",
                "Effect": "Allow",
                "Action": actions,
                "Resource": self.key,
            });
        }
        if self.key.starts_with("alias/") {
            return alias(region, self.account, self.key);
        }
        json!({
            "Sid": "UseBucketKey",
            "Effect": "Allow",
            "Action": actions,
            "Resource": format!("arn:{part}:kms:{region}:{}:key/{}", self.account, self.key),
        })
    }
}

/// The account id in an IAM ARN (`arn:aws:iam::123456789012:oidc-provider/...`).
pub fn account_of(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| !a.is_empty())
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
        let p = role_policy("eu-west-1", "b1", "uploads/", false, false, false, None);
        assert_eq!(p["Statement"].as_array().unwrap().len(), 2);
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
        let d = role_policy("eu-west-1", "b1", "uploads/", true, false, false, None);
        assert_eq!(d["Statement"][1]["Action"], "s3:GetObject");
        assert_eq!(d["Statement"][1]["Resource"], "arn:aws:s3:::b1/uploads/*");
    }

    #[test]
    fn upload_keys_take_no_copies() {
        let deny = |p: &Value| {
            statements(p)
                .into_iter()
                .find(|s| s["Sid"] == "NoCopiesIntoUploads")
                .unwrap()
        };
        let plain = deny(&role_policy(
            "eu-west-1",
            "b1",
            "up/",
            false,
            false,
            false,
            None,
        ));
        assert_eq!(plain["Effect"], "Deny");
        assert_eq!(plain["Action"], "s3:PutObject");
        assert_eq!(plain["Resource"], "arn:aws:s3:::b1/up/*");
        assert_eq!(
            plain["Condition"],
            json!({"StringLike": {"s3:x-amz-copy-source": "*"}})
        );
        // With verification, URLs name the incoming area; verify copies to the verified one.
        let checked = deny(&role_policy(
            "eu-west-1",
            "b1",
            "up/",
            false,
            true,
            false,
            None,
        ));
        assert_eq!(checked["Resource"], "arn:aws:s3:::b1/up/incoming/*");
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
    #[test]
    fn merging_keeps_foreign_statements_byte_for_byte() {
        let deny_http = json!({
            "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*",
            "Action": "s3:*", "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}
        });
        let current = json!({"Version": "2012-10-17", "Id": "finance", "Statement": [
            deny_http.clone(),
            {"Sid": "UploadBucketPublicRead", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/old/*"},
        ]});
        let ours = statements(&public_read_policy("us-east-1", "b", "new/"));
        let merged = merge_statements(Some(&current), &ours).unwrap();
        assert_eq!(merged["Id"], "finance");
        assert_eq!(merged["Statement"][0], deny_http);
        assert_eq!(merged["Statement"][1]["Resource"], "arn:aws:s3:::b/new/*");
        assert_eq!(merged["Statement"].as_array().unwrap().len(), 2);
        assert_eq!(own_statements(Some(&merged)), vec![canonical(&ours[0])]);

        // Removing ours leaves theirs; removing the last statement deletes the policy.
        let released = merge_statements(Some(&merged), &[]).unwrap();
        assert_eq!(released["Statement"], json!([deny_http]));
        assert_eq!(
            merge_statements(Some(&released), &[]),
            Some(released.clone())
        );
        let only_ours = public_read_policy("us-east-1", "b", "new/");
        assert_eq!(merge_statements(Some(&only_ours), &[]), None);
        assert_eq!(merge_statements(None, &[]), None);
        // A single statement given as an object, not a list, is still someone else's.
        let single = json!({"Version": "2012-10-17", "Statement": deny_http});
        assert_eq!(
            merge_statements(Some(&single), &ours).unwrap()["Statement"][0]["Sid"],
            "DenyInsecureTransport"
        );
    }

    #[test]
    fn kms_grants_name_the_key_only() {
        let account = "123456789012";
        let by_id = KmsKey {
            key: "1234abcd-12ab-34cd-56ef-1234567890ab",
            account,
        };
        let s = by_id.statement("eu-west-1");
        assert_eq!(
            s["Resource"],
            "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        );
        assert_eq!(s["Action"], json!(["kms:Decrypt", "kms:GenerateDataKey"]));
        let arn = "arn:aws:kms:eu-central-1:999999999999:key/abcd";
        assert_eq!(
            KmsKey { key: arn, account }.statement("eu-west-1")["Resource"],
            arn
        );
        let alias = KmsKey {
            key: "alias/uploads",
            account,
        }
        .statement("cn-north-1");
        assert_eq!(
            alias["Resource"],
            "arn:aws-cn:kms:cn-north-1:123456789012:key/*"
        );
        assert_eq!(
            alias["Condition"]["ForAnyValue:StringEquals"]["kms:ResourceAliases"],
            "alias/uploads"
        );
        let alias_arn = KmsKey {
            key: "arn:aws:kms:us-west-2:555555555555:alias/x",
            account,
        }
        .statement("eu-west-1");
        assert_eq!(
            alias_arn["Resource"],
            "arn:aws:kms:us-west-2:555555555555:key/*"
        );
        assert_eq!(
            alias_arn["Condition"]["ForAnyValue:StringEquals"]["kms:ResourceAliases"],
            "alias/x"
        );
        let p = role_policy("eu-west-1", "b", "u/", false, false, false, Some(&by_id));
        assert_eq!(p["Statement"][1]["Sid"], "UseBucketKey");
        assert_eq!(
            account_of("arn:aws:iam::123456789012:oidc-provider/x"),
            Some(account)
        );
    }

    fn strings(v: &Value) -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items.iter().flat_map(strings).collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn own_account_only_narrows_every_s3_grant_and_nothing_else() {
        let kms = KmsKey {
            key: "alias/x",
            account: "123456789012",
        };
        let mut p = role_policy("eu-west-1", "b", "p/", true, true, true, Some(&kms));
        let before = p.clone();
        own_account_only(&mut p, "123456789012");
        let (mut narrowed, mut kept) = (0, 0);
        for (st, was) in statements(&p).iter().zip(statements(&before)) {
            let s3_allow = st["Effect"] == "Allow"
                && strings(&st["Action"]).iter().all(|a| a.starts_with("s3:"));
            if s3_allow {
                assert_eq!(
                    st["Condition"]["StringEquals"]["s3:ResourceAccount"], "123456789012",
                    "{st}"
                );
                narrowed += 1;
            } else {
                assert_eq!(st, &was, "KMS grants and denials are left as they are");
                kept += 1;
            }
        }
        // SignUploads, SignDownloads, VerifyUploads, CountOpenUploads; the KMS grant and the
        // copy denial.
        assert_eq!((narrowed, kept), (4, 2), "{p:#}");
        // Without an account (RGW's provider ARNs have none) nothing changes.
        let mut q = before.clone();
        own_account_only(&mut q, "");
        assert_eq!(q, before);
    }

    #[test]
    fn the_documented_policies_are_scoped_to_the_prefix_and_cover_what_roles_get() {
        let operator: Value =
            serde_json::from_str(include_str!("../../../docs/operator-iam-policy.json")).unwrap();
        let boundary: Value =
            serde_json::from_str(include_str!("../../../docs/upload-role-boundary.json")).unwrap();
        for doc in [&operator, &boundary] {
            for st in statements(doc) {
                for r in strings(&st["Resource"])
                    .iter()
                    .filter(|r| r.starts_with("arn:aws:s3"))
                {
                    assert!(r.starts_with("arn:aws:s3:::BUCKET_PREFIX"), "{r}");
                }
            }
        }
        // Roles may only be made or given policies while carrying the boundary.
        let create = statements(&operator)
            .into_iter()
            .find(|s| strings(&s["Action"]).contains(&"iam:CreateRole".to_owned()))
            .unwrap();
        assert_eq!(create["Effect"], "Allow");
        assert!(
            create["Condition"]["StringEquals"]["iam:PermissionsBoundary"]
                .as_str()
                .unwrap()
                .ends_with(":policy/uploadbucket-upload-boundary")
        );
        assert!(strings(&create["Action"]).contains(&"iam:PutRolePolicy".to_owned()));
        // Everything a role policy can grant is inside the boundary.
        let allowed: Vec<String> = statements(&boundary)
            .iter()
            .flat_map(|s| strings(&s["Action"]))
            .collect();
        let kms = KmsKey {
            key: "alias/x",
            account: "1",
        };
        let widest = role_policy("eu-west-1", "b", "p/", true, true, true, Some(&kms));
        for action in statements(&widest)
            .iter()
            .flat_map(|s| strings(&s["Action"]))
        {
            assert!(
                allowed.contains(&action),
                "{action} is outside the boundary"
            );
        }
    }
}
