//! The ConfigMap an UploadBucket publishes for workloads that use the bucket without the
//! signer (a worker that processes uploads, a CronJob that exports them).
//!
//! In: the proven bucket names, the role ARN, the S3 endpoint the operator itself uses. Out:
//! one ConfigMap `<name>-bucket` in the object's namespace, controlled by the UploadBucket
//! (an owner reference, so Kubernetes deletes it with the object; cleanup deletes it too),
//! labelled as the operator's, holding `BUCKET_NAME`, `BUCKET_REGION`, `BUCKET_HOST` and
//! `BUCKET_PORT` (the keys of Rook's ObjectBucketClaim ConfigMaps, so their consumers work),
//! `BUCKET_ENDPOINT`, `BUCKET_ARN`, `KEY_PREFIX`, and `ROLE_ARN` with IRSA. Read, compare,
//! write only on a difference; a ConfigMap of that name the object does not control is never
//! touched.

use crate::reasons::Reason;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client, Resource, ResourceExt};

use crate::crd::UploadBucket;

use super::desired::Names;

/// Label on every ConfigMap the operator writes; the controller watches only these.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "uploadbucket-operator");
/// Label naming the UploadBucket a ConfigMap belongs to.
pub const UPLOAD_BUCKET_LABEL: &str = "uploadbucket.io/name";

/// Why the outputs could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputsError {
    #[error(
        "ConfigMap {0:?} exists and is not this UploadBucket's (it has no controller reference to it); rename or delete that ConfigMap"
    )]
    Taken(String),
    #[error("ConfigMap {name:?}: {source}")]
    Kube {
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl OutputsError {
    pub fn reason(&self) -> Reason {
        match self {
            OutputsError::Taken(_) => Reason::ConfigMapManagedByOther,
            OutputsError::Kube { .. } => Reason::KubeApiError,
        }
    }
}

/// The ConfigMap's name for the UploadBucket `name`: `<name>-bucket`, shortened with a hash
/// where that would pass the 253-character limit.
pub fn config_map_name(name: &str) -> String {
    const SUFFIX: &str = "-bucket";
    if name.len() + SUFFIX.len() <= 253 {
        return format!("{name}{SUFFIX}");
    }
    let hash = &hex::encode(<sha2::Sha256 as sha2::Digest>::digest(name))[..8];
    // Names are ASCII (DNS subdomains): any byte index is a char boundary.
    let keep = 253 - SUFFIX.len() - hash.len() - 1;
    format!(
        "{}-{hash}{SUFFIX}",
        name[..keep].trim_end_matches(['-', '.'])
    )
}

/// Where workloads reach S3: `(endpoint URL, host, port)`, from the operator's own S3
/// endpoint, or AWS's regional endpoint without one.
fn endpoint(s3_endpoint: Option<&str>, region: &str) -> (String, String, u16) {
    if let Some(url) = s3_endpoint
        && let Ok(uri) = url.parse::<axum::http::Uri>()
        && let Some(host) = uri.host()
    {
        let https = uri.scheme_str() != Some("http");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        return (url.trim_end_matches('/').to_owned(), host.to_owned(), port);
    }
    let host = format!("s3.{region}.amazonaws.com");
    (format!("https://{host}"), host, 443)
}

/// The ConfigMap's data. Pure.
pub fn data(
    ub: &UploadBucket,
    names: &Names,
    role_arn: Option<&str>,
    s3_endpoint: Option<&str>,
) -> BTreeMap<String, String> {
    let bucket = &names.bucket;
    let (url, host, port) = endpoint(s3_endpoint, &bucket.region);
    let mut d = BTreeMap::from([
        ("BUCKET_NAME".to_owned(), bucket.name.clone()),
        ("BUCKET_REGION".to_owned(), bucket.region.clone()),
        ("BUCKET_HOST".to_owned(), host),
        ("BUCKET_PORT".to_owned(), port.to_string()),
        ("BUCKET_ENDPOINT".to_owned(), url),
        (
            "BUCKET_ARN".to_owned(),
            crate::aws::policy::bucket_arn(&bucket.region, &bucket.name),
        ),
        ("KEY_PREFIX".to_owned(), ub.spec.uploads.key_prefix.clone()),
    ]);
    if let Some(arn) = role_arn {
        d.insert("ROLE_ARN".to_owned(), arn.to_owned());
    }
    d
}

fn labels(ub: &UploadBucket) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
        (UPLOAD_BUCKET_LABEL.to_owned(), ub.name_any()),
    ])
}

/// Whether `cm` is controlled by `ub` (an owner reference with its uid and `controller`).
fn controlled_by(cm: &ConfigMap, ub: &UploadBucket) -> bool {
    let uid = ub.uid().unwrap_or_default();
    cm.owner_references()
        .iter()
        .any(|r| r.uid == uid && r.controller == Some(true))
}

/// Whether `cm` holds `data` and carries `labels` (others' labels may stand beside them).
fn holds(
    cm: &ConfigMap,
    data: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    cm.data.as_ref() == Some(data) && labels.iter().all(|(k, v)| cm.labels().get(k) == Some(v))
}

/// Whether the ConfigMap exists, is this object's, and holds `data` and its labels (a read;
/// an error counts as no).
pub async fn is_current(
    client: &Client,
    ub: &UploadBucket,
    data: &BTreeMap<String, String>,
) -> bool {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ub.namespace().unwrap_or_default());
    match api.get_opt(&config_map_name(&ub.name_any())).await {
        Ok(Some(cm)) => controlled_by(&cm, ub) && holds(&cm, data, &labels(ub)),
        _ => false,
    }
}

/// Writes the ConfigMap if it is missing or differs; `Ok(true)` when something was written.
pub async fn publish(
    client: &Client,
    ub: &UploadBucket,
    data: BTreeMap<String, String>,
) -> Result<bool, OutputsError> {
    let ns = ub.namespace().unwrap_or_default();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let name = config_map_name(&ub.name_any());
    let kube = |source| OutputsError::Kube {
        name: name.clone(),
        source,
    };
    let labels = labels(ub);
    match api.get_opt(&name).await.map_err(kube)? {
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns),
                    labels: Some(labels),
                    owner_references: ub.controller_owner_ref(&()).map(|r| vec![r]),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            api.create(&PostParams::default(), &cm)
                .await
                .map_err(kube)?;
            Ok(true)
        }
        Some(cm) if !controlled_by(&cm, ub) => Err(OutputsError::Taken(name)),
        Some(mut cm) => {
            if holds(&cm, &data, &labels) {
                return Ok(false);
            }
            // A replace carries the resourceVersion read: a concurrent edit makes it fail
            // and the next pass reads again.
            cm.data = Some(data);
            cm.labels_mut().extend(labels);
            api.replace(&name, &PostParams::default(), &cm)
                .await
                .map_err(kube)?;
            Ok(true)
        }
    }
}

/// Deletes the ConfigMap if the object controls it (Kubernetes' garbage collector would too,
/// through the owner reference; this does not wait for it).
pub async fn remove(client: &Client, ub: &UploadBucket) -> Result<(), OutputsError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ub.namespace().unwrap_or_default());
    let name = config_map_name(&ub.name_any());
    let kube = |source| OutputsError::Kube {
        name: name.clone(),
        source,
    };
    match api.get_opt(&name).await.map_err(kube)? {
        Some(cm) if controlled_by(&cm, ub) => {
            let precondition = kube::api::Preconditions {
                uid: cm.uid(),
                resource_version: cm.resource_version(),
            };
            let dp = DeleteParams {
                preconditions: Some(precondition),
                ..Default::default()
            };
            match api.delete(&name, &dp).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                Err(e) => Err(kube(e)),
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::BucketRef;

    fn names(region: &str) -> Names {
        Names {
            bucket: BucketRef {
                name: "shop-photos-1a2b".into(),
                region: region.into(),
            },
            role: "ub-shop-photos-1a2b".into(),
            derived: true,
            adopt: false,
        }
    }

    fn ub() -> UploadBucket {
        let mut ub = UploadBucket::new("photos", serde_json::from_str("{}").unwrap());
        ub.metadata.namespace = Some("shop".into());
        ub.metadata.uid = Some("5a1b0a7e-0000-4000-8000-000000000001".into());
        ub
    }

    #[test]
    fn data_on_aws_has_the_rook_keys_and_the_arns() {
        let d = data(
            &ub(),
            &names("eu-west-1"),
            Some("arn:aws:iam::123456789012:role/uploadbucket/ub-x"),
            None,
        );
        let want: BTreeMap<String, String> = [
            ("BUCKET_NAME", "shop-photos-1a2b"),
            ("BUCKET_REGION", "eu-west-1"),
            ("BUCKET_HOST", "s3.eu-west-1.amazonaws.com"),
            ("BUCKET_PORT", "443"),
            ("BUCKET_ENDPOINT", "https://s3.eu-west-1.amazonaws.com"),
            ("BUCKET_ARN", "arn:aws:s3:::shop-photos-1a2b"),
            ("KEY_PREFIX", "uploads/"),
            (
                "ROLE_ARN",
                "arn:aws:iam::123456789012:role/uploadbucket/ub-x",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(d, want);
    }

    #[test]
    fn an_s3_endpoint_gives_its_host_and_port_and_no_role_means_no_role_arn() {
        let d = data(
            &ub(),
            &names("us-east-1"),
            None,
            Some("http://rgw.storage.svc:7480/"),
        );
        assert_eq!(d["BUCKET_HOST"], "rgw.storage.svc");
        assert_eq!(d["BUCKET_PORT"], "7480");
        assert_eq!(d["BUCKET_ENDPOINT"], "http://rgw.storage.svc:7480");
        assert!(!d.contains_key("ROLE_ARN"));
        let d = data(&ub(), &names("us-east-1"), None, Some("http://minio.local"));
        assert_eq!(d["BUCKET_PORT"], "80");
        let d = data(
            &ub(),
            &names("us-east-1"),
            None,
            Some("https://s3.example.com"),
        );
        assert_eq!(d["BUCKET_PORT"], "443");
    }

    #[test]
    fn names_stay_within_the_limit() {
        assert_eq!(config_map_name("photos"), "photos-bucket");
        let long = "a".repeat(253);
        let n = config_map_name(&long);
        assert_eq!(n.len(), 253, "{n}");
        assert!(n.ends_with("-bucket"));
        assert_ne!(config_map_name(&long), config_map_name(&"a".repeat(252)));
    }
}
