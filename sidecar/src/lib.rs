//! uploadbucket signer sidecar.
//!
//! The app calls `http://127.0.0.1:8787/uploads` and gets a presigned URL to hand to the
//! browser or phone, which uploads straight to S3. [`config`] is the env contract shared
//! with the operator's webhook and builds without the server (default feature `server`).

pub mod config;

#[cfg(feature = "server")]
pub mod auth;
#[cfg(feature = "server")]
pub mod cli;
#[cfg(feature = "server")]
pub mod jwt_rsa;

#[cfg(feature = "server")]
pub mod credentials;
#[cfg(feature = "dev")]
pub mod dev;
#[cfg(feature = "dev")]
pub mod dev_store;
#[cfg(feature = "server")]
pub mod error;
#[cfg(feature = "server")]
pub mod json;
#[cfg(feature = "server")]
pub mod keys;
#[cfg(feature = "server")]
pub mod limits;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod multipart;
#[cfg(feature = "server")]
pub mod presign;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod state;
#[cfg(feature = "server")]
pub mod store;
#[cfg(feature = "server")]
pub mod uploads;
#[cfg(feature = "server")]
pub mod verify;

#[cfg(feature = "server")]
pub use server::app;
#[cfg(feature = "server")]
pub use state::AppState;
