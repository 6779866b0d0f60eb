//! The reasons the operator gives in an UploadBucket's conditions and Warning Events.
//!
//! One enum, so the reference page (docs/reference/conditions.md) is generated from the code
//! and a reason cannot be written anywhere without being declared here.

/// Declares [`Reason`]: each reason with what it means and what to do (its doc comment).
macro_rules! reasons {
    ($($(#[doc = $doc:literal])+ $name:ident;)+) => {
        /// A condition's (or Warning Event's) reason.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[doc = $doc])+ $name,)+
        }

        impl Reason {
            /// All reasons, in the order they are declared.
            pub const ALL: &'static [Reason] = &[$(Reason::$name),+];

            /// The reason as it appears in the condition.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$name => stringify!($name)),+
                }
            }

            /// What the reason means and what to do, from its doc comment.
            pub fn description(self) -> String {
                let lines: &[&str] = match self {
                    $(Reason::$name => &[$($doc),+]),+
                };
                lines.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ")
            }
        }
    };
}

reasons! {
    /// The bucket is being created (`status.creatingBucket` names it until a pass has created
    /// it and tagged it as this object's).
    Provisioning;
    /// The bucket (and the role, where there is one) is as the spec says.
    Provisioned;
    /// A spec value the operator cannot use; the message names the field. Retried when the
    /// spec changes.
    InvalidSpec;
    /// Another AWS account (another user, on RGW) owns the bucket name, even where it lets the
    /// operator in: set another `spec.bucketName`, or `--bucket-name-prefix`.
    BucketNameTaken;
    /// A bucket of that name exists in the operator's account and is not this object's; to
    /// take it over, the cluster admin allows adoption (see the UploadBucket guide).
    BucketExists;
    /// The bucket carries another UploadBucket's ownership tags: it is left alone.
    BucketManagedByOther;
    /// The spec asks to adopt an existing bucket and the operator does not allow it here.
    AdoptionNotAllowed;
    /// The spec asks to adopt a bucket that does not exist.
    NothingToAdopt;
    /// Deleting with `deletionPolicy: Delete`, the bucket still holds objects: empty it, or
    /// set `emptyOnDelete: true`.
    BucketNotEmpty;
    /// Deleting with `deletionPolicy: Delete` and `emptyOnDelete: true`: the bucket is being
    /// emptied, at most 10,000 objects per pass; deletion goes on by itself. Not a failure.
    Emptying;
    /// The IAM role of that name exists and its `uploadbucket.io/uid` tag is not this
    /// object's: it is left alone.
    RoleManagedByOther;
    /// A service account listed in `spec.serviceAccountNames` has an EKS Pod Identity
    /// association that is not this object's (EKS allows one per service account); the
    /// message names who holds it.
    AssociationManagedByOther;
    /// The operator's AWS identity lacks a permission (the message names the action); compare
    /// its policy with docs/operator-iam-policy.json. Retried every 5 minutes.
    AccessDenied;
    /// The S3 backend does not support a setting the spec asks for (the message names it).
    NotSupported;
    /// An AWS call failed (throttling, a timeout, a 5xx, an endpoint down, or `PaginationLoop`
    /// when an EKS list pages for ever); the message names the call. Retried with backoff.
    AwsApiError;
    /// The outputs ConfigMap `<name>-bucket` exists and has no controller reference to this
    /// object: rename or delete that ConfigMap. Retried every 5 minutes.
    ConfigMapManagedByOther;
    /// A Kubernetes API call failed; retried with backoff.
    KubeApiError;
    /// Adding or removing the `uploadbucket.io/cleanup` finalizer failed; retried.
    FinalizerError;
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Reason> for String {
    fn from(r: Reason) -> String {
        r.as_str().to_owned()
    }
}

impl PartialEq<&str> for Reason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}
