//! The EKS Pod Identity association calls the controller makes, and their aws-sdk-eks
//! implementation. Side effects.
//!
//! In: a namespace, service-account names and a role ARN. Out: the cluster's associations as
//! EKS reports them. One cluster per operator: the client holds its name.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_eks::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use super::{AwsError, Deleted};

/// An association in the list: which service account it is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssociationRef {
    pub id: String,
    pub service_account: String,
}

/// An association as EKS describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Association {
    pub id: String,
    pub namespace: String,
    pub service_account: String,
    pub role_arn: String,
    pub tags: BTreeMap<String, String>,
}

/// An association to make: `namespace/service_account` to get `role_arn`, tagged `tags`.
#[derive(Clone, Copy, Debug)]
pub struct NewAssociation<'a> {
    pub namespace: &'a str,
    pub service_account: &'a str,
    pub role_arn: &'a str,
    pub tags: &'a BTreeMap<String, String>,
}

/// What CreatePodIdentityAssociation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Made {
    Created(Association),
    /// The service account has an association already (EKS allows one per service account).
    InUse,
}

#[async_trait]
pub trait PodIdentityApi: Send + Sync {
    /// Every association in `namespace` (all pages).
    async fn list_associations(&self, namespace: &str) -> Result<Vec<AssociationRef>, AwsError>;
    async fn describe_association(&self, id: &str) -> Result<Option<Association>, AwsError>;
    async fn create_association(&self, new: NewAssociation<'_>) -> Result<Made, AwsError>;
    async fn update_association(&self, id: &str, role_arn: &str) -> Result<(), AwsError>;
    async fn delete_association(&self, id: &str) -> Result<Deleted, AwsError>;
}

/// [`PodIdentityApi`] over aws-sdk-eks, for one cluster.
pub struct EksAssociations {
    client: aws_sdk_eks::Client,
    cluster: String,
}

impl EksAssociations {
    /// For the cluster `cluster_arn` (arn:aws:eks:<region>:<account>:cluster/<name>), in its
    /// region. `endpoint`: another EKS endpoint (tests); `None` for AWS. Every request is
    /// counted into `metrics`.
    pub fn new(
        sdk: &aws_config::SdkConfig,
        cluster_arn: &str,
        endpoint: Option<&str>,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Self {
        let region = cluster_arn.split(':').nth(3).unwrap_or_default().to_owned();
        let cluster = cluster_arn.rsplit('/').next().unwrap_or_default();
        let mut b = aws_sdk_eks::config::Builder::from(sdk);
        if !region.is_empty() {
            b = b.region(aws_config::Region::new(region));
        }
        if let Some(url) = endpoint {
            b = b.endpoint_url(url);
        }
        // A stalled EKS call must not hold a reconcile (or shutdown) for long.
        b = b.timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(std::time::Duration::from_secs(10))
                .operation_timeout(std::time::Duration::from_secs(30))
                .build(),
        );
        b.push_interceptor(super::calls::counter("eks", metrics));
        Self::from_conf(b.build(), cluster)
    }

    /// From a finished client configuration (tests add interceptors).
    pub fn from_conf(conf: aws_sdk_eks::Config, cluster: &str) -> Self {
        Self {
            client: aws_sdk_eks::Client::from_conf(conf),
            cluster: cluster.to_owned(),
        }
    }
}

/// Most pages of associations read for one namespace (100 each: 10,000 associations).
const MAX_PAGES: usize = 100;

fn not_found<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    e.code() == Some("ResourceNotFoundException")
        || e.raw_response().map(|r| r.status().as_u16()) == Some(404)
}

fn in_use<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    e.code() == Some("ResourceInUseException")
        || e.raw_response().map(|r| r.status().as_u16()) == Some(409)
}

fn association(a: &aws_sdk_eks::types::PodIdentityAssociation) -> Association {
    Association {
        id: a.association_id().unwrap_or_default().to_owned(),
        namespace: a.namespace().unwrap_or_default().to_owned(),
        service_account: a.service_account().unwrap_or_default().to_owned(),
        role_arn: a.role_arn().unwrap_or_default().to_owned(),
        tags: a
            .tags()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
    }
}

#[async_trait]
impl PodIdentityApi for EksAssociations {
    async fn list_associations(&self, namespace: &str) -> Result<Vec<AssociationRef>, AwsError> {
        let mut out: Vec<AssociationRef> = Vec::new();
        let mut token: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..MAX_PAGES {
            let page = self
                .client
                .list_pod_identity_associations()
                .cluster_name(&self.cluster)
                .namespace(namespace)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| super::s3::classify("ListPodIdentityAssociations", e))?;
            for a in page.associations() {
                // Only this namespace's, each once, whatever the answer holds.
                if let (Some(id), Some(sa), Some(ns)) =
                    (a.association_id(), a.service_account(), a.namespace())
                    && ns == namespace
                    && !out.iter().any(|o| o.id == id)
                {
                    out.push(AssociationRef {
                        id: id.to_owned(),
                        service_account: sa.to_owned(),
                    });
                }
            }
            token = page.next_token().map(str::to_owned);
            match &token {
                None => return Ok(out),
                // A token given before would page forever.
                Some(t) if !seen.insert(t.clone()) => break,
                Some(_) => {}
            }
        }
        Err(AwsError::Api {
            op: "ListPodIdentityAssociations",
            code: "PaginationLoop".into(),
            message: format!(
                "EKS kept answering with more pages (a repeated nextToken, or over {MAX_PAGES} pages) for namespace {namespace:?}; stopped"
            ),
        })
    }

    async fn describe_association(&self, id: &str) -> Result<Option<Association>, AwsError> {
        match self
            .client
            .describe_pod_identity_association()
            .cluster_name(&self.cluster)
            .association_id(id)
            .send()
            .await
        {
            Ok(out) => Ok(out.association().map(association)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(super::s3::classify("DescribePodIdentityAssociation", e)),
        }
    }

    async fn create_association(&self, new: NewAssociation<'_>) -> Result<Made, AwsError> {
        let request = self
            .client
            .create_pod_identity_association()
            .cluster_name(&self.cluster)
            .namespace(new.namespace)
            .service_account(new.service_account)
            .role_arn(new.role_arn)
            // The role's trust policy checks the namespace and service account in the
            // session tags: they must be on.
            .disable_session_tags(false)
            .set_tags(Some(
                new.tags
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ));
        match request.send().await {
            Ok(out) => out
                .association()
                .map(|a| Made::Created(association(a)))
                .ok_or_else(|| AwsError::Api {
                    op: "CreatePodIdentityAssociation",
                    code: "NoAssociation".into(),
                    message: "EKS answered without the association".into(),
                }),
            Err(e) if in_use(&e) => Ok(Made::InUse),
            Err(e) => Err(super::s3::classify("CreatePodIdentityAssociation", e)),
        }
    }

    async fn update_association(&self, id: &str, role_arn: &str) -> Result<(), AwsError> {
        self.client
            .update_pod_identity_association()
            .cluster_name(&self.cluster)
            .association_id(id)
            .role_arn(role_arn)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| super::s3::classify("UpdatePodIdentityAssociation", e))
    }

    async fn delete_association(&self, id: &str) -> Result<Deleted, AwsError> {
        match self
            .client
            .delete_pod_identity_association()
            .cluster_name(&self.cluster)
            .association_id(id)
            .send()
            .await
        {
            Ok(_) => Ok(Deleted::Deleted),
            Err(e) if not_found(&e) => Ok(Deleted::NotFound),
            Err(e) => Err(super::s3::classify("DeletePodIdentityAssociation", e)),
        }
    }
}
