//! uploadbucket operator: reconciles `UploadBucket` objects into S3 buckets (and, in later
//! parts, IAM roles and the signer-sidecar webhook).

pub mod admin;
pub mod aws;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod metrics;
