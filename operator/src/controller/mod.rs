//! The UploadBucket controller: reconcile = finalizer(apply | cleanup).
//!
//! In: UploadBucket watch events. Out: S3 calls (through [`BucketApi`]), status written with
//! server-side apply, Events, metrics. Apply is fetch -> [`desired`] (pure) -> [`apply`]
//! (side effects) -> [`status`]; cleanup acts on the names recorded in status only.

pub mod apply;
pub mod cleanup;
pub mod desired;
pub mod role;
pub mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, Event as Finalized, finalizer};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{Instrument, debug, info, info_span, instrument, warn};

use crate::aws::iam::IamApi;
use crate::aws::{AwsError, BucketApi, BucketRef};
use crate::crd::UploadBucket;
use crate::metrics::Metrics;
use apply::{ApplyError, ApplyReport};
use cleanup::CleanupOutcome;
use desired::{Defaults, SpecError};
use role::{IrsaSettings, RoleReport};
use status::{BUCKET_READY, CondSpec, READY, ROLE_READY};

/// Finalizer that keeps the object until cleanup has run.
pub const FINALIZER: &str = "uploadbucket.io/cleanup";

/// Longest wait between retries of a failing object.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Everything a reconcile needs.
pub struct Context {
    pub client: Client,
    pub buckets: Arc<dyn BucketApi>,
    pub defaults: Defaults,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Periodic re-check of every bucket, which repairs drift made behind our back.
    pub resync: Duration,
    /// IRSA roles, when the cluster's OIDC provider is configured.
    pub irsa: Option<(Arc<dyn IamApi>, IrsaSettings)>,
    /// Consecutive failures per object, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        buckets: Arc<dyn BucketApi>,
        defaults: Defaults,
        metrics: Arc<Metrics>,
        resync: Duration,
    ) -> Self {
        let reporter = Reporter {
            controller: "uploadbucket-operator".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            buckets,
            defaults,
            metrics,
            resync,
            irsa: None,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Manage an IRSA role per UploadBucket too.
    pub fn with_irsa(mut self, iam: Arc<dyn IamApi>, settings: IrsaSettings) -> Self {
        self.irsa = Some((iam, settings));
        self
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid spec: {0}")]
    InvalidSpec(#[from] SpecError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl Error {
    /// Short label for metrics and Event reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::Apply(ApplyError::Aws(e)) | Error::Aws(e) => e.reason(),
            Error::Apply(ApplyError::ManagedByOther { .. }) => "BucketManagedByOther",
            Error::Kube(_) => "KubeApiError",
            Error::Finalizer(_) => "FinalizerError",
        }
    }

    /// How long to wait before retrying; `None`: wait for the object to change.
    fn retry(&self) -> Option<Retry> {
        match self {
            Error::InvalidSpec(_) | Error::Apply(ApplyError::ManagedByOther { .. }) => None,
            Error::Apply(ApplyError::Aws(e)) | Error::Aws(e) if !e.is_transient() => {
                Some(Retry::Slow)
            }
            _ => Some(Retry::Backoff),
        }
    }
}

enum Retry {
    /// A person has to act (name taken, permissions, bucket not empty): check back rarely.
    Slow,
    /// Exponential from 1 s to 5 min.
    Backoff,
}

fn key(ub: &UploadBucket) -> String {
    format!("{}/{}", ub.namespace().unwrap_or_default(), ub.name_any())
}

/// One reconciliation of one UploadBucket.
#[instrument(skip_all, fields(namespace = %ub.namespace().unwrap_or_default(), name = %ub.name_any()))]
pub async fn reconcile(ub: Arc<UploadBucket>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.metrics.reconciles.inc();
    let started = Instant::now();
    let ns = ub.namespace().unwrap_or_default();
    let api: Api<UploadBucket> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, ub, |event| async {
        match event {
            Finalized::Apply(ub) => apply_object(&ub, &ctx, &api).await,
            Finalized::Cleanup(ub) => cleanup_object(&ub, &ctx, &api).await,
        }
    })
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        finalizer::Error::AddFinalizer(e) | finalizer::Error::RemoveFinalizer(e) => Error::Kube(e),
        other => Error::Finalizer(other.to_string()),
    });
    ctx.metrics.observe(started.elapsed());
    result
}

/// Decides when a failed object is tried again. Every failure is counted.
pub fn error_policy(ub: Arc<UploadBucket>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failure(error.reason());
    warn!(namespace = %ub.namespace().unwrap_or_default(), name = %ub.name_any(), reason = error.reason(), %error, "Reconcile failed");
    match error.retry() {
        None => Action::await_change(),
        Some(Retry::Slow) => Action::requeue(MAX_BACKOFF),
        Some(Retry::Backoff) => {
            let mut failures = ctx.failures();
            let n = failures.entry(key(&ub)).or_insert(0);
            *n = n.saturating_add(1);
            let delay = Duration::from_secs(1u64 << (*n - 1).min(9));
            Action::requeue(delay.min(MAX_BACKOFF))
        }
    }
}

async fn apply_object(
    ub: &UploadBucket,
    ctx: &Context,
    api: &Api<UploadBucket>,
) -> Result<Action, Error> {
    match provision(ub, ctx, api).await {
        Ok((bucket, report, role)) => {
            ctx.failures().remove(&key(ub));
            let mut st = ub.status.clone().unwrap_or_default();
            record_names(
                &mut st,
                &bucket,
                ctx.irsa.as_ref().map(|_| role::role_name(ub)),
            );
            let msg = format!(
                "Bucket {} in {} is provisioned as specified",
                bucket.name, bucket.region
            );
            let mut conds = vec![
                CondSpec::new(READY, true, "Provisioned", msg.clone()),
                CondSpec::new(BUCKET_READY, true, "Provisioned", msg),
            ];
            if let Some(role) = &role {
                st.role_arn = Some(role.arn.clone());
                conds[0].message = format!("{}; pods assume role {}", conds[0].message, role.arn);
                conds.push(CondSpec::new(
                    ROLE_READY,
                    true,
                    "Provisioned",
                    format!("Role {} is provisioned as specified", role.arn),
                ));
            }
            status::set_conditions(&mut st, &conds, ub.metadata.generation, Timestamp::now());
            if status::differs(ub.status.as_ref(), &st) {
                status::patch_status(api, ub, &st).await?;
            }
            if report.created {
                info!(bucket = %bucket.name, "Created bucket");
                publish(
                    ctx,
                    ub,
                    EventType::Normal,
                    "Created",
                    "Provision",
                    format!("Created bucket {}", bucket.name),
                )
                .await;
            }
            if !report.changed.is_empty() {
                info!(bucket = %bucket.name, changed = ?report.changed, "Updated bucket");
                publish(
                    ctx,
                    ub,
                    EventType::Normal,
                    "Updated",
                    "Provision",
                    format!(
                        "Set {} on bucket {}",
                        report.changed.join(", "),
                        bucket.name
                    ),
                )
                .await;
            }
            if let Some(role) = role.filter(|r| r.created || !r.changed.is_empty()) {
                let what = if role.created {
                    "Created role".to_owned()
                } else {
                    format!("Set {} on role", role.changed.join(", "))
                };
                info!(role = %role.arn, "{what}");
                publish(
                    ctx,
                    ub,
                    EventType::Normal,
                    if role.created { "Created" } else { "Updated" },
                    "Provision",
                    format!("{what} {}", role.arn),
                )
                .await;
            }
            Ok(Action::requeue(ctx.resync))
        }
        Err((stage, error)) => {
            let mut st = ub.status.clone().unwrap_or_default();
            let reason = error.reason();
            let message = error.to_string();
            let mut conds = vec![CondSpec::new(READY, false, reason, message.clone())];
            match stage {
                Stage::Kube => {}
                Stage::Bucket => {
                    conds.push(CondSpec::new(BUCKET_READY, false, reason, message.clone()))
                }
                Stage::Role => {
                    conds.push(CondSpec::new(ROLE_READY, false, reason, message.clone()))
                }
            }
            status::set_conditions(&mut st, &conds, ub.metadata.generation, Timestamp::now());
            if status::differs(ub.status.as_ref(), &st)
                && let Err(e) = status::patch_status(api, ub, &st).await
            {
                warn!(error = %e, "Could not write status");
            }
            publish(ctx, ub, EventType::Warning, reason, "Provision", message).await;
            Err(error)
        }
    }
}

fn record_names(st: &mut crate::crd::UploadBucketStatus, bucket: &BucketRef, role: Option<String>) {
    st.bucket_name = Some(bucket.name.clone());
    st.region = Some(bucket.region.clone());
    st.bucket_arn = Some(crate::aws::policy::bucket_arn(&bucket.region, &bucket.name));
    if role.is_some() {
        st.role_name = role;
    }
}

/// Which part of provisioning failed, for the conditions.
#[derive(Clone, Copy, Debug)]
enum Stage {
    Kube,
    Bucket,
    Role,
}

async fn provision(
    ub: &UploadBucket,
    ctx: &Context,
    api: &Api<UploadBucket>,
) -> Result<(BucketRef, ApplyReport, Option<RoleReport>), (Stage, Error)> {
    let bucket = desired::bucket_ref(ub, &ctx.defaults).map_err(|e| (Stage::Bucket, e.into()))?;
    let role_name = ctx.irsa.as_ref().map(|_| role::role_name(ub));
    let st0 = ub.status.as_ref();
    let recorded = st0
        .is_some_and(|s| s.bucket_name.is_some() && (role_name.is_none() || s.role_name.is_some()));
    if !recorded {
        // Names go to status before anything exists in AWS, so cleanup can always find
        // what this object may have created, even if the operator dies mid-way.
        let mut st = ub.status.clone().unwrap_or_default();
        record_names(&mut st, &bucket, role_name.clone());
        status::set_conditions(
            &mut st,
            &[CondSpec::new(
                READY,
                false,
                "Provisioning",
                format!("Provisioning bucket {}", bucket.name),
            )],
            ub.metadata.generation,
            Timestamp::now(),
        );
        status::patch_status(api, ub, &st)
            .await
            .map_err(|e| (Stage::Kube, e.into()))?;
    }
    let d = desired::desired(ub, &ctx.defaults).map_err(|e| (Stage::Bucket, e.into()))?;
    let report = apply::apply(&*ctx.buckets, &d, &ub.uid().unwrap_or_default())
        .instrument(info_span!("apply", bucket = %d.bucket.name))
        .await
        .map_err(|e| (Stage::Bucket, e.into()))?;
    let role = match &ctx.irsa {
        None => None,
        Some((iam, settings)) => {
            let r =
                role::desired_role(ub, &bucket, settings).map_err(|e| (Stage::Role, e.into()))?;
            Some(
                role::apply_role(&**iam, &r, settings)
                    .instrument(info_span!("role", role = %r.name))
                    .await
                    .map_err(|e| (Stage::Role, e.into()))?,
            )
        }
    };
    Ok((bucket, report, role))
}

async fn cleanup_object(
    ub: &UploadBucket,
    ctx: &Context,
    api: &Api<UploadBucket>,
) -> Result<Action, Error> {
    let recorded = ub
        .status
        .as_ref()
        .and_then(|s| match (&s.bucket_name, &s.region) {
            (Some(name), Some(region)) => Some(BucketRef {
                name: name.clone(),
                region: region.clone(),
            }),
            _ => None,
        });
    if let Some((iam, _)) = &ctx.irsa {
        let recorded_role = ub.status.as_ref().and_then(|s| s.role_name.as_deref());
        match role::cleanup_role(&**iam, recorded_role).await {
            Ok(crate::aws::Deleted::Deleted) => {
                let name = recorded_role.unwrap_or_default();
                info!(role = name, "Deleted role");
                publish(
                    ctx,
                    ub,
                    EventType::Normal,
                    "Deleted",
                    "Cleanup",
                    format!("Deleted role {name}"),
                )
                .await;
            }
            Ok(crate::aws::Deleted::NotFound) => {}
            Err(e) => return Err(cleanup_failed(ctx, ub, api, Error::Aws(e)).await),
        }
    }
    let outcome = cleanup::cleanup(
        &*ctx.buckets,
        recorded.as_ref(),
        ub.spec.deletion_policy,
        ub.spec.empty_on_delete,
        &ub.uid().unwrap_or_default(),
    )
    .await;
    let name = recorded.as_ref().map(|b| b.name.as_str()).unwrap_or("-");
    match outcome {
        Ok(outcome) => {
            let note = match outcome {
                CleanupOutcome::NothingRecorded => {
                    "No bucket was created; nothing to clean up".to_owned()
                }
                CleanupOutcome::Retained => format!("Kept bucket {name} (deletionPolicy Retain)"),
                CleanupOutcome::Deleted { objects } => {
                    format!("Deleted bucket {name} and {objects} objects in it")
                }
                CleanupOutcome::AlreadyGone => format!("Bucket {name} was already gone"),
            };
            info!(bucket = name, "{note}");
            let reason = match outcome {
                CleanupOutcome::Retained => "Retained",
                _ => "Deleted",
            };
            publish(ctx, ub, EventType::Normal, reason, "Cleanup", note).await;
            ctx.failures().remove(&key(ub));
            Ok(Action::await_change())
        }
        Err(e) => Err(cleanup_failed(ctx, ub, api, Error::Aws(e)).await),
    }
}

/// A failed cleanup: the Ready condition says what deletion waits for, with a Warning.
async fn cleanup_failed(
    ctx: &Context,
    ub: &UploadBucket,
    api: &Api<UploadBucket>,
    error: Error,
) -> Error {
    let mut st = ub.status.clone().unwrap_or_default();
    let message = format!("Deletion is waiting: {error}");
    status::set_conditions(
        &mut st,
        &[CondSpec::new(READY, false, error.reason(), message)],
        ub.metadata.generation,
        Timestamp::now(),
    );
    if status::differs(ub.status.as_ref(), &st)
        && let Err(e) = status::patch_status(api, ub, &st).await
    {
        warn!(error = %e, "Could not write status");
    }
    publish(
        ctx,
        ub,
        EventType::Warning,
        error.reason(),
        "Cleanup",
        error.to_string(),
    )
    .await;
    error
}

/// Publishes an Event; a failure to do so is logged, never fatal.
async fn publish(
    ctx: &Context,
    ub: &UploadBucket,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let ev = KubeEvent {
        type_,
        reason: reason.to_owned(),
        note: Some(status::truncate(&note, 1000)),
        action: action.to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &ub.object_ref(&())).await {
        debug!(error = %e, "Could not publish event");
    }
}

/// Runs the controller until a shutdown signal. `namespace`: watch one namespace, or all.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    ready: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<()> {
    let api: Api<UploadBucket> = match &namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    if let Err(e) = api.list(&kube::api::ListParams::default().limit(1)).await {
        anyhow::bail!(
            "cannot list UploadBuckets ({e}); is the CRD installed? kubectl apply -f crds/uploadbuckets.uploadbucket.io.yaml"
        );
    }
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    info!(
        namespace = namespace.as_deref().unwrap_or("(all)"),
        "Controller started"
    );
    Controller::new(api, watcher::Config::default().any_semantic())
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                debug!(error = %e, "Reconcile ended with an error");
            }
        })
        .await;
    info!("Controller stopped");
    Ok(())
}

#[cfg(test)]
mod tests;
