//! Ceph RADOS Gateway (RGW) as an S3 backend: every difference from AWS that the operator
//! works around lives here, and only applies with `--s3-backend rgw`.
//!
//! In: the backend choice and HTTP responses. Out: what the controller may ask of the
//! backend, and responses rewritten into the shape the AWS SDK parses.
//!
//! Seen on RGW 16 (Pacific):
//! - `GetPublicAccessBlock` answers with root element `BlockPublicAccessBlockConfiguration`
//!   instead of `PublicAccessBlockConfiguration`; the SDK cannot parse it. Rewritten here.
//! - `BlockPublicAcls=true` makes RGW refuse every upload (PutObject, UploadPart, presigned
//!   PUT), so it is left false there. Uploads carry no ACLs anyway: the signer never signs one.
//! - Ownership controls are not implemented (`GET ?ownershipControls` lists the bucket).
//! - Bucket encryption is not implemented (`PUT` answers InvalidArgument). AWS encrypts new
//!   buckets with SSE-S3 already, so only SSE-KMS needs the call; RGW cannot do it.
//! - IAM answers put `<ResponseMetadata>` before `<XxxResult>` and errors come back as a bare
//!   S3-style `<Error>`; the SDK parses neither. Both are rewritten here (metadata dropped,
//!   errors wrapped in `<ErrorResponse>`), which also types IAM errors (`NoSuchEntity`).
//! - A role with tags cannot be assumed unless its trust policy also allows `sts:TagSession`
//!   (RGW treats role tags as session tags); roles are created untagged there.
//! - IAM returns policy documents as plain JSON, not URL-encoded (`iam::decode_policy` takes both).
//! - `x-amz-expected-bucket-owner` is ignored: another user's bucket whose policy lets the
//!   operator in answers 200 whatever owner the request expects. The owner is read from
//!   GetBucketAcl instead ([`Backend::refuses_other_owners`]).

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;

use super::PublicAccessBlock;

/// Which S3 implementation the operator talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Backend {
    /// Amazon S3.
    #[default]
    Aws,
    /// Ceph RADOS Gateway (also what Rook runs on-premises).
    Rgw,
}

impl Backend {
    /// Whether `PutBucketOwnershipControls` exists on this backend.
    pub fn has_ownership_controls(self) -> bool {
        self == Backend::Aws
    }

    /// Whether roles may carry tags without changing what their trust policy must allow.
    pub fn has_role_tags(self) -> bool {
        self == Backend::Aws
    }

    /// Whether S3 itself refuses a call to a bucket of another account when the call names
    /// the account expected (`ExpectedBucketOwner`, 403). Elsewhere the operator compares the
    /// owner GetBucketAcl names with its own before it takes a bucket as its own.
    pub fn refuses_other_owners(self) -> bool {
        self == Backend::Aws
    }

    /// Whether CreateBucket takes the bucket's tags (`CreateBucketConfiguration.Tags`, AWS
    /// since 2025), which closes the window between creating a bucket and tagging it as ours.
    pub fn has_create_bucket_tags(self) -> bool {
        self == Backend::Aws
    }

    /// Whether objects belong to the bucket owner whoever uploads them (S3 Object Ownership,
    /// `BucketOwnerEnforced`, AWS's default). RGW 16 has no Object Ownership: an object
    /// uploaded with web-identity (IRSA) credentials belongs to that identity
    /// (`$oidc$system:serviceaccount:...`), and the bucket owner gets 403 reading it unless
    /// the upload grants `bucket-owner-full-control`.
    pub fn owner_owns_uploads(self) -> bool {
        self == Backend::Aws
    }

    /// Whether `PutBucketEncryption` exists on this backend.
    pub fn has_bucket_encryption(self) -> bool {
        self == Backend::Aws
    }

    /// The public-access block to write, given the one wanted.
    pub fn public_access_block(self, wanted: PublicAccessBlock) -> PublicAccessBlock {
        match self {
            Backend::Aws => wanted,
            Backend::Rgw => PublicAccessBlock {
                block_public_acls: false,
                ..wanted
            },
        }
    }

    /// The HTTP client to give the SDK: the default one, wrapped for RGW.
    pub fn http_client(self) -> Option<SharedHttpClient> {
        match self {
            Backend::Aws => None,
            Backend::Rgw => Some(SharedHttpClient::new(RgwCompatClient {
                inner: default_client(),
            })),
        }
    }
}

fn default_client() -> SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .build_https()
}

/// Rewrites RGW responses the SDK cannot parse. Everything else passes through untouched.
#[derive(Debug, Clone)]
struct RgwCompatClient {
    inner: SharedHttpClient,
}

impl HttpClient for RgwCompatClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(RgwCompatConnector {
            inner: self.inner.http_connector(settings, components),
        })
    }
}

#[derive(Debug)]
struct RgwCompatConnector {
    inner: SharedHttpConnector,
}

/// What, if anything, a response to this request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fix {
    PublicAccessBlockRoot,
    IamQuery,
}

fn fix_for(method: &str, uri: &str) -> Option<Fix> {
    let query = uri.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let asks_pab = query
        .split('&')
        .any(|p| p == "publicAccessBlock" || p.starts_with("publicAccessBlock="));
    (method == "GET" && asks_pab).then_some(Fix::PublicAccessBlockRoot)
}

/// IAM and STS speak the query protocol: a form body starting with `Action=`.
fn is_query_protocol(body: Option<&[u8]>) -> bool {
    body.is_some_and(|b| b.starts_with(b"Action="))
}

/// Pure: the body the SDK can parse.
fn rewrite(fix: Fix, body: &str) -> String {
    match fix {
        Fix::PublicAccessBlockRoot => body.replace(
            "BlockPublicAccessBlockConfiguration",
            "PublicAccessBlockConfiguration",
        ),
        Fix::IamQuery => {
            let mut out = body.to_owned();
            if let (Some(start), Some(end)) = (
                out.find("<ResponseMetadata>"),
                out.find("</ResponseMetadata>"),
            ) && start < end
            {
                out.replace_range(start..end + "</ResponseMetadata>".len(), "");
            }
            let root = out
                .trim_start()
                .strip_prefix("<?xml")
                .map_or(out.trim_start(), |rest| {
                    rest.split_once("?>").map_or(rest, |(_, r)| r).trim_start()
                });
            if root.starts_with("<Error>") {
                let root = root.to_owned();
                out = format!("<ErrorResponse>{root}</ErrorResponse>");
            }
            out
        }
    }
}

impl HttpConnector for RgwCompatConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let fix = fix_for(request.method(), request.uri())
            .or_else(|| is_query_protocol(request.body().bytes()).then_some(Fix::IamQuery));
        let fut = self.inner.call(request);
        let Some(fix) = fix else { return fut };
        HttpConnectorFuture::new(async move {
            let mut response = fut.await?;
            if !response.status().is_success() && fix != Fix::IamQuery {
                return Ok(response);
            }
            let body = std::mem::replace(response.body_mut(), SdkBody::taken());
            let bytes = ByteStream::new(body)
                .collect()
                .await
                .map_err(|e| {
                    aws_smithy_runtime_api::client::result::ConnectorError::io(Box::new(e))
                })?
                .into_bytes();
            let fixed = rewrite(fix, &String::from_utf8_lossy(&bytes));
            response.headers_mut().remove("content-length");
            *response.body_mut() = SdkBody::from(fixed);
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_access_block_reads_are_rewritten() {
        assert_eq!(
            fix_for("GET", "http://h/b?publicAccessBlock"),
            Some(Fix::PublicAccessBlockRoot)
        );
        assert_eq!(
            fix_for(
                "GET",
                "http://h/b?publicAccessBlock=&x-id=GetPublicAccessBlock"
            ),
            Some(Fix::PublicAccessBlockRoot)
        );
        assert_eq!(fix_for("PUT", "http://h/b?publicAccessBlock"), None);
        assert_eq!(fix_for("GET", "http://h/b?cors"), None);
        assert_eq!(fix_for("GET", "http://h/b/publicAccessBlock"), None);
    }

    #[test]
    fn root_element_is_renamed() {
        let rgw = "<?xml version=\"1.0\"?><BlockPublicAccessBlockConfiguration><BlockPublicAcls>false</BlockPublicAcls></BlockPublicAccessBlockConfiguration>";
        assert_eq!(
            rewrite(Fix::PublicAccessBlockRoot, rgw),
            "<?xml version=\"1.0\"?><PublicAccessBlockConfiguration><BlockPublicAcls>false</BlockPublicAcls></PublicAccessBlockConfiguration>"
        );
    }

    #[test]
    fn iam_answers_are_reshaped() {
        let ok = "<?xml version=\"1.0\"?><GetRoleResponse><ResponseMetadata><RequestId>tx1</RequestId></ResponseMetadata><GetRoleResult><Role/></GetRoleResult></GetRoleResponse>";
        assert_eq!(
            rewrite(Fix::IamQuery, ok),
            "<?xml version=\"1.0\"?><GetRoleResponse><GetRoleResult><Role/></GetRoleResult></GetRoleResponse>"
        );
        let err =
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchEntity</Code></Error>";
        assert_eq!(
            rewrite(Fix::IamQuery, err),
            "<ErrorResponse><Error><Code>NoSuchEntity</Code></Error></ErrorResponse>"
        );
        assert!(is_query_protocol(Some(
            b"Action=GetRole&Version=2010-05-08"
        )));
        assert!(!is_query_protocol(Some(b"<CORSConfiguration/>")));
        assert!(!is_query_protocol(None));
    }

    #[test]
    fn rgw_never_blocks_public_acls() {
        let all = PublicAccessBlock {
            block_public_acls: true,
            ignore_public_acls: true,
            block_public_policy: true,
            restrict_public_buckets: true,
        };
        assert!(!Backend::Rgw.public_access_block(all).block_public_acls);
        assert!(Backend::Rgw.public_access_block(all).ignore_public_acls);
        assert_eq!(Backend::Aws.public_access_block(all), all);
    }
}
