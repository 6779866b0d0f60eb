//! The IAM calls the controller makes for IRSA roles, and their aws-sdk-iam implementation.
//! Side effects.
//!
//! In: role names and policy documents. Out: what IAM holds (policy documents decoded to
//! JSON, whether IAM returned them URL-encoded as AWS does or plain as RGW does).

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use serde_json::Value;

use super::{AwsError, Deleted};

/// A role as IAM reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Role {
    pub arn: String,
    pub trust_policy: Value,
    /// Its tags (none where the backend does not tag roles).
    pub tags: BTreeMap<String, String>,
}

/// What a new role gets.
#[derive(Clone, Debug, PartialEq)]
pub struct NewRole<'a> {
    pub name: &'a str,
    pub path: &'a str,
    pub trust_policy: &'a Value,
    pub permissions_boundary: Option<&'a str>,
    pub tags: &'a BTreeMap<String, String>,
    pub description: &'a str,
}

#[async_trait]
pub trait IamApi: Send + Sync {
    async fn get_role(&self, name: &str) -> Result<Option<Role>, AwsError>;
    /// Creates the role; one that already exists is looked up and returned.
    async fn create_role(&self, role: &NewRole<'_>) -> Result<Role, AwsError>;
    async fn update_trust_policy(&self, name: &str, policy: &Value) -> Result<(), AwsError>;
    async fn get_role_policy(&self, role: &str, policy: &str) -> Result<Option<Value>, AwsError>;
    async fn put_role_policy(
        &self,
        role: &str,
        policy: &str,
        document: &Value,
    ) -> Result<(), AwsError>;
    async fn list_role_policies(&self, role: &str) -> Result<Vec<String>, AwsError>;
    async fn delete_role_policy(&self, role: &str, policy: &str) -> Result<(), AwsError>;
    async fn delete_role(&self, name: &str) -> Result<Deleted, AwsError>;
}

/// Decodes a policy document as IAM returns it: URL-encoded JSON (AWS) or plain JSON (RGW).
pub fn decode_policy(text: &str) -> Result<Value, String> {
    if let Ok(v) = serde_json::from_str(text) {
        return Ok(v);
    }
    let decoded = percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&decoded).map_err(|e| format!("policy document is not JSON: {e}"))
}

/// [`IamApi`] over aws-sdk-iam.
pub struct IamRoles {
    client: aws_sdk_iam::Client,
}

impl IamRoles {
    /// `endpoint`: an IAM-compatible endpoint (e.g. Ceph RGW); `None` for AWS.
    /// Every request is counted into `metrics`.
    pub fn new(
        sdk: &aws_config::SdkConfig,
        endpoint: Option<&str>,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Self {
        let mut b = aws_sdk_iam::config::Builder::from(sdk);
        if let Some(url) = endpoint {
            b = b.endpoint_url(url);
        }
        b.push_interceptor(super::calls::counter("iam", metrics));
        Self::from_conf(b.build())
    }

    /// From a finished client configuration (tests add interceptors).
    pub fn from_conf(conf: aws_sdk_iam::Config) -> Self {
        Self {
            client: aws_sdk_iam::Client::from_conf(conf),
        }
    }
}

fn not_found<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    e.code() == Some("NoSuchEntity") || e.raw_response().map(|r| r.status().as_u16()) == Some(404)
}

fn exists<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    e.code() == Some("EntityAlreadyExists")
        || e.raw_response().map(|r| r.status().as_u16()) == Some(409)
}

fn bad_doc(op: &'static str, e: String) -> AwsError {
    AwsError::Api {
        op,
        code: "MalformedPolicyDocument".into(),
        message: e,
    }
}

#[async_trait]
impl IamApi for IamRoles {
    async fn get_role(&self, name: &str) -> Result<Option<Role>, AwsError> {
        match self.client.get_role().role_name(name).send().await {
            Ok(out) => {
                let Some(role) = out.role() else {
                    return Ok(None);
                };
                let trust = role
                    .assume_role_policy_document()
                    .map(decode_policy)
                    .transpose()
                    .map_err(|e| bad_doc("GetRole", e))?;
                Ok(Some(Role {
                    arn: role.arn().to_owned(),
                    trust_policy: trust.unwrap_or(Value::Null),
                    tags: role
                        .tags()
                        .iter()
                        .map(|t| (t.key().to_owned(), t.value().to_owned()))
                        .collect(),
                }))
            }
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(super::s3::classify("GetRole", e)),
        }
    }

    async fn create_role(&self, role: &NewRole<'_>) -> Result<Role, AwsError> {
        let tags = role
            .tags
            .iter()
            .map(|(k, v)| aws_sdk_iam::types::Tag::builder().key(k).value(v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad_doc("CreateRole", e.to_string()))?;
        let out = self
            .client
            .create_role()
            .role_name(role.name)
            .path(role.path)
            .assume_role_policy_document(role.trust_policy.to_string())
            .description(role.description)
            .set_permissions_boundary(role.permissions_boundary.map(str::to_owned))
            .set_tags((!tags.is_empty()).then_some(tags))
            .send()
            .await;
        match out {
            Ok(out) => Ok(Role {
                arn: out.role().map(|r| r.arn().to_owned()).unwrap_or_default(),
                trust_policy: role.trust_policy.clone(),
                tags: role.tags.clone(),
            }),
            Err(e) if exists(&e) => self
                .get_role(role.name)
                .await?
                .ok_or_else(|| AwsError::Api {
                    op: "CreateRole",
                    code: "EntityAlreadyExists".into(),
                    message: "exists but cannot be read".into(),
                }),
            Err(e) => Err(super::s3::classify("CreateRole", e)),
        }
    }

    async fn update_trust_policy(&self, name: &str, policy: &Value) -> Result<(), AwsError> {
        self.client
            .update_assume_role_policy()
            .role_name(name)
            .policy_document(policy.to_string())
            .send()
            .await
            .map(drop)
            .map_err(|e| super::s3::classify("UpdateAssumeRolePolicy", e))
    }

    async fn get_role_policy(&self, role: &str, policy: &str) -> Result<Option<Value>, AwsError> {
        match self
            .client
            .get_role_policy()
            .role_name(role)
            .policy_name(policy)
            .send()
            .await
        {
            Ok(out) => decode_policy(out.policy_document())
                .map(Some)
                .map_err(|e| bad_doc("GetRolePolicy", e)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(super::s3::classify("GetRolePolicy", e)),
        }
    }

    async fn put_role_policy(
        &self,
        role: &str,
        policy: &str,
        document: &Value,
    ) -> Result<(), AwsError> {
        self.client
            .put_role_policy()
            .role_name(role)
            .policy_name(policy)
            .policy_document(document.to_string())
            .send()
            .await
            .map(drop)
            .map_err(|e| super::s3::classify("PutRolePolicy", e))
    }

    async fn list_role_policies(&self, role: &str) -> Result<Vec<String>, AwsError> {
        match self
            .client
            .list_role_policies()
            .role_name(role)
            .send()
            .await
        {
            Ok(out) => Ok(out.policy_names().to_vec()),
            Err(e) if not_found(&e) => Ok(Vec::new()),
            Err(e) => Err(super::s3::classify("ListRolePolicies", e)),
        }
    }

    async fn delete_role_policy(&self, role: &str, policy: &str) -> Result<(), AwsError> {
        match self
            .client
            .delete_role_policy()
            .role_name(role)
            .policy_name(policy)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(super::s3::classify("DeleteRolePolicy", e)),
        }
    }

    async fn delete_role(&self, name: &str) -> Result<Deleted, AwsError> {
        match self.client.delete_role().role_name(name).send().await {
            Ok(_) => Ok(Deleted::Deleted),
            Err(e) if not_found(&e) => Ok(Deleted::NotFound),
            Err(e) => Err(super::s3::classify("DeleteRole", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_decode_from_both_encodings() {
        let plain = r#"{"Version":"2012-10-17","Statement":[]}"#;
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";
        assert_eq!(
            decode_policy(plain).unwrap(),
            decode_policy(encoded).unwrap()
        );
        assert!(decode_policy("%7Bnot json").is_err());
    }
}
