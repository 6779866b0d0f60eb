//! uploadbucket operator: reconciles `UploadBucket` objects into S3 buckets and IAM roles,
//! and injects the signer sidecar into pods that ask for it (mutating admission webhook).

pub mod admin;
pub mod aws;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod metrics;
pub mod reasons;
pub mod watch;
pub mod webhook;
