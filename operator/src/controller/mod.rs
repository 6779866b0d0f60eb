//! The UploadBucket controller: reconcile = finalizer(apply | cleanup).
//!
//! In: UploadBucket watch events. Out: S3 calls (through [`BucketApi`]), status written with
//! server-side apply, Events, metrics. An apply reads top-down, one step to a module, each
//! saying what goes in and what comes out: the provisioning pass
//! ([`provision`](mod@provision): the names and the desired state, pure, from [`desired`] ->
//! prove the bucket is this object's ([`claim`], the one place a bucket becomes ours) ->
//! [`apply`] its settings -> the [`role`] and its [`association`]s -> the [`outputs`]
//! ConfigMap) -> one status write (`outcome`, over [`status`]). The cleanup path
//! ([`cleanup`]) acts only on what is proven the object's own: a bucket [`claim`] proves
//! ours again.

pub mod apply;
pub mod association;
pub mod claim;
pub mod cleanup;
mod context;
pub mod desired;
mod error;
mod outcome;
pub mod outputs;
pub mod provision;
pub mod role;
pub mod status;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{self, Event as Finalized, finalizer};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use tracing::{debug, info, instrument, warn};

use crate::crd::UploadBucket;
use cleanup::cleanup_object;
use outcome::next_status;
use provision::provision;

pub use context::Context;
use context::{
    Backoff, MAX_BACKOFF, SHARE_WAIT, Settled, TRANSIENT_BACKOFF_CAP, key, lock, publish, uid_key,
};
pub use error::Error;
use error::Retry;

/// Between two passes that empty a bucket being deleted.
const EMPTYING_WAIT: Duration = Duration::from_secs(1);

/// Finalizer that keeps the object until cleanup has run.
pub const FINALIZER: &str = "uploadbucket.io/cleanup";

/// One reconciliation of one UploadBucket.
#[instrument(skip_all, fields(namespace = %ub.namespace().unwrap_or_default(), name = %ub.name_any()))]
pub async fn reconcile(ub: Arc<UploadBucket>, ctx: Arc<Context>) -> Result<Action, Error> {
    // A failing object waits out its backoff even when an event (its own status write, a
    // resync) brings it back early; a spec change or a deletion does not wait.
    if ub.metadata.deletion_timestamp.is_none()
        && ub.finalizers().iter().any(|f| f == FINALIZER)
        && let Some(wait) = ctx.failures().get(&key(&ub)).and_then(|b| {
            (b.generation == ub.metadata.generation && Some(&b.uid) == ub.uid().as_ref())
                .then(|| b.until.checked_duration_since(Instant::now()))
                .flatten()
        })
    {
        return Ok(Action::requeue(wait));
    }
    let ns = ub.namespace().unwrap_or_default();
    let Some(_slot) = ctx.slot(&ns) else {
        ctx.metrics.deferred.inc();
        return Ok(Action::requeue(ctx.jittered(SHARE_WAIT)));
    };
    // After a failure the next pass starts from the object as the API server holds it, not
    // from the cache: the failed pass's last status write (with the intent it keeps) may not
    // have reached the watch yet, and a status written from an older copy would drop it.
    let failed_before = ctx.failures().contains_key(&key(&ub));
    let ub = if failed_before {
        let api: Api<UploadBucket> = Api::namespaced(ctx.client.clone(), &ns);
        match api.get_opt(&ub.name_any()).await.map_err(Error::Kube)? {
            Some(mut fresh) => {
                crate::crd::slim(&mut fresh);
                Arc::new(fresh)
            }
            None => return Ok(Action::await_change()),
        }
    } else {
        ub
    };
    let unchanged_for = lock(&ctx.settled)
        .get(&uid_key(&ub))
        .and_then(|s| s.covers(&ub));
    // Only with the finalizer in place: one removed (a `kubectl replace` without it) is put
    // back by the full pass, or a delete before the resync would skip cleanup.
    if ub.metadata.deletion_timestamp.is_none()
        && ub.finalizers().iter().any(|f| f == FINALIZER)
        && let Some(left) = unchanged_for
        && outputs_current(&ub, &ctx).await
    {
        ctx.metrics.unchanged.inc();
        return Ok(Action::requeue(left));
    }
    if ub.metadata.deletion_timestamp.is_some() {
        lock(&ctx.settled).remove(&uid_key(&ub));
    }
    ctx.metrics.reconciles.inc();
    let started = Instant::now();
    let api: Api<UploadBucket> = Api::namespaced(ctx.client.clone(), &ns);
    let (deleting, object_key) = (ub.metadata.deletion_timestamp.is_some(), key(&ub));
    // Its calls are counted apart while the object is not Ready (what an object costs until
    // it is, apart from the resyncs of those that are).
    let until_ready = !deleting && !ub.status.as_ref().is_some_and(status::is_ready);
    let pass = finalizer(&api, FINALIZER, ub, |event| async {
        match event {
            Finalized::Apply(ub) => apply_object(&ub, &ctx, &api).await,
            Finalized::Cleanup(ub) => cleanup_object(&ub, &ctx, &api).await,
        }
    });
    let result = crate::aws::calls::in_pass(until_ready, pass)
        .await
        .map_err(|e| match e {
            finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
            finalizer::Error::AddFinalizer(e) | finalizer::Error::RemoveFinalizer(e) => {
                Error::Kube(e)
            }
            other => Error::Finalizer(other.to_string()),
        });
    ctx.metrics.observe(started.elapsed());
    if deleting && result.is_ok() {
        // Cleaned up: nothing to remember of it.
        ctx.failures().remove(&object_key);
    }
    result
}

/// Whether the object's outputs ConfigMap holds what a full pass would write (from the names
/// and the role recorded in status). Any doubt (an error, no ConfigMap) means no.
async fn outputs_current(ub: &UploadBucket, ctx: &Context) -> bool {
    let Ok(names) = desired::resolve(ub, &ctx.defaults) else {
        return false;
    };
    let role_arn = ub.status.as_ref().and_then(|s| s.role_arn.as_deref());
    let data = outputs::data(ub, &names, role_arn, ctx.s3_endpoint.as_deref());
    outputs::is_current(&ctx.client, ub, &data).await
}

/// Decides when a failed object is tried again. Every failure is counted.
pub fn error_policy(ub: Arc<UploadBucket>, error: &Error, ctx: Arc<Context>) -> Action {
    if let Some(Retry::Soon) = error.retry() {
        // Progress, not a failure: no count, no backoff.
        debug!(namespace = %ub.namespace().unwrap_or_default(), name = %ub.name_any(), %error, "Continuing soon");
        return Action::requeue(ctx.jittered(EMPTYING_WAIT));
    }
    ctx.metrics.failure(error.reason().as_str());
    warn!(namespace = %ub.namespace().unwrap_or_default(), name = %ub.name_any(), reason = %error.reason(), %error, "Reconcile failed");
    lock(&ctx.settled).remove(&uid_key(&ub));
    let mut failures = ctx.failures();
    let (n, delay) = match error.retry() {
        None => {
            failures.remove(&key(&ub));
            return Action::await_change();
        }
        Some(Retry::Slow) => (0, ctx.jittered(MAX_BACKOFF)),
        // Returned above, uncounted; here for the match alone.
        Some(Retry::Soon) => (0, ctx.jittered(EMPTYING_WAIT)),
        Some(Retry::Backoff) => {
            // The count starts over when the spec changed since the last failure.
            let n = failures
                .get(&key(&ub))
                .filter(|b| {
                    b.generation == ub.metadata.generation && Some(&b.uid) == ub.uid().as_ref()
                })
                .map_or(0, |b| b.failures)
                .saturating_add(1);
            let delay = Duration::from_secs(1u64 << (n - 1).min(16)).min(TRANSIENT_BACKOFF_CAP);
            (n, ctx.jittered(delay))
        }
    };
    failures.insert(
        key(&ub),
        Backoff {
            failures: n,
            until: Instant::now() + delay,
            uid: ub.uid().unwrap_or_default(),
            generation: ub.metadata.generation,
        },
    );
    Action::requeue(delay)
}

async fn apply_object(
    ub: &UploadBucket,
    ctx: &Context,
    api: &Api<UploadBucket>,
) -> Result<Action, Error> {
    // What a pass writes on its way (the names recorded right before AWS gets something
    // new) is the status the API server holds when the pass ends: the final write starts
    // from it, or a failed pass would drop the intent (server-side apply removes fields the
    // manager no longer sends) and the bucket created just before the failure would be
    // refused as someone else's on the next pass.
    let written = std::sync::Mutex::new(None);
    let result = provision(ub, ctx, api, &written).await;
    let current = written
        .into_inner()
        .unwrap_or_default()
        .or_else(|| ub.status.clone());
    let (st, events) = next_status(ub, current.clone(), &result);
    if status::differs(current.as_ref(), &st)
        && let Err(e) = status::patch_status(api, ub, &st).await
    {
        warn!(error = %e, "Could not write status");
        if result.is_ok() {
            return Err(e.into());
        }
    }
    for (type_, reason, note) in events {
        publish(ctx, ub, type_, reason, "Provision", note).await;
    }
    match result {
        Ok(_) => {
            ctx.failures().remove(&key(ub));
            let mut settled = lock(&ctx.settled);
            let (next, wait) = Settled::after_pass(ub, settled.get(&uid_key(ub)), ctx.resync);
            settled.insert(uid_key(ub), next);
            Ok(Action::requeue(wait))
        }
        Err(failure) => Err(failure.error),
    }
}

/// Runs the controller until a shutdown signal. `namespace`: watch one namespace, or all.
pub async fn run(
    ctx: Arc<Context>,
    objects: &crate::watch::Objects,
    namespace: Option<String>,
    ready: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<()> {
    let api: Api<UploadBucket> = match &namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let mut probe = kube::api::ListParams::default().limit(1);
    if let Some(selector) = &ctx.watch_selector {
        probe = probe.labels(selector);
    }
    if let Err(e) = api.list(&probe).await {
        if let (kube::Error::Api(status), Some(selector)) = (&e, &ctx.watch_selector)
            && status.code == 400
        {
            anyhow::bail!(
                "--watch-selector {selector:?} is not a label selector the API server takes ({}); write it as for kubectl get -l, e.g. shard=a or tier in (gold,silver)",
                status.message
            );
        }
        anyhow::bail!(
            "cannot list UploadBuckets ({e}); is the CRD installed? kubectl apply -f crds/uploadbuckets.uploadbucket.io.yaml"
        );
    }
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    info!(
        namespace = namespace.as_deref().unwrap_or("(all)"),
        "Controller started"
    );
    // The outputs ConfigMaps, and only those (by label): an edit or deletion behind our back
    // brings their UploadBucket back for repair.
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> = match &namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let managed = format!("{}={}", outputs::MANAGED_BY.0, outputs::MANAGED_BY.1);
    // `uploadbucket_ready`, from the cached objects as each scrape finds them.
    let cached = objects.store();
    ctx.metrics.ready_from(Box::new(move |each| {
        let mut all = cached.state();
        all.sort_unstable_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        for ub in all {
            let ready = ub.status.as_ref().is_some_and(status::is_ready);
            each(
                ub.metadata.namespace.as_deref().unwrap_or_default(),
                ub.metadata.name.as_deref().unwrap_or_default(),
                ready,
            )?;
        }
        Ok(())
    }));
    // The objects, from the watch the webhook shares.
    Controller::for_shared_stream(objects.changes(), objects.store())
        .with_config(kube::runtime::controller::Config::default().concurrency(ctx.concurrency))
        .owns(
            config_maps,
            watcher::Config::default().labels(&managed).any_semantic(),
        )
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
