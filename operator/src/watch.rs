//! The process's one watch of UploadBuckets: a cache of slim objects ([`crate::crd::slim`])
//! that the webhook reads and the controller reconciles from, so each object is held once.
//!
//! In: the API server's UploadBuckets (one namespace or all; with `--watch-selector`, those
//! it selects). Out: [`Objects::store`], and [`Objects::changes`]: every cached object, then
//! each one that changes, for the controller. The watch starts at the first use, so a
//! standby without the webhook caches nothing.

use std::sync::{Arc, OnceLock};

use futures::{Stream, StreamExt, stream};
use kube::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::broadcast::{self, error::RecvError};
use tracing::warn;

use crate::crd::UploadBucket;

/// Changes the controller may fall behind by; past that it takes every cached object again.
const CHANGES_BUFFER: usize = 1024;

/// The UploadBuckets this process watches, started at the first use.
pub struct Objects {
    api: Api<UploadBucket>,
    selector: Option<String>,
    started: OnceLock<Started>,
}

struct Started {
    store: Store<UploadBucket>,
    /// The cached copy of each object as it changes; nobody listening (no controller) is fine.
    changes: broadcast::Sender<Arc<UploadBucket>>,
}

impl Objects {
    /// The objects of `namespace` (`None`: all) that `selector` selects (`None`: all).
    pub fn new(client: kube::Client, namespace: Option<&str>, selector: Option<String>) -> Self {
        let api = match namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        };
        Self {
            api,
            selector,
            started: OnceLock::new(),
        }
    }

    /// The cache (empty until the first list is in: [`Store::wait_until_ready`]).
    pub fn store(&self) -> Store<UploadBucket> {
        self.started().store.clone()
    }

    /// Every cached object once the first list is in, then each object that changes (the
    /// cached copy); all of them again if the reader fell [`CHANGES_BUFFER`] behind.
    pub fn changes(&self) -> impl Stream<Item = Arc<UploadBucket>> + Send + 'static {
        let started = self.started();
        // Subscribed before the cache is read: a change in between comes twice, none never.
        let live = started.changes.subscribe();
        let store = started.store.clone();
        let first = store.clone();
        let all = stream::once(async move {
            // Only fails when the watch task is gone, and then there is nothing to give.
            let _ = first.wait_until_ready().await;
            stream::iter(first.state())
        })
        .flatten();
        let each = stream::unfold((live, store), |(mut live, store)| async move {
            let batch = match live.recv().await {
                Ok(ub) => vec![ub],
                Err(RecvError::Lagged(_)) => store.state(),
                Err(RecvError::Closed) => return None,
            };
            Some((stream::iter(batch), (live, store)))
        })
        .flatten();
        all.chain(each)
    }

    fn started(&self) -> &Started {
        self.started.get_or_init(|| self.start())
    }

    /// Spawns the watch; it runs until the process ends, retrying with backoff.
    fn start(&self) -> Started {
        let (store, writer) = reflector::store();
        let (changes, _) = broadcast::channel(CHANGES_BUFFER);
        let mut config = watcher::Config::default().any_semantic();
        if let Some(selector) = &self.selector {
            config = config.labels(selector);
        }
        let objects = watcher(self.api.clone(), config)
            .default_backoff()
            .modify(crate::crd::slim)
            .reflect(writer)
            .applied_objects();
        let (cache, sender) = (store.clone(), changes.clone());
        tokio::spawn(async move {
            let mut objects = std::pin::pin!(objects);
            while let Some(item) = objects.next().await {
                match item {
                    // The copy the cache holds, shared rather than copied again.
                    Ok(ub) => {
                        if let Some(cached) = cache.get(&ObjectRef::from_obj(&ub)) {
                            let _ = sender.send(cached);
                        }
                    }
                    Err(e) => warn!(error = %e, "UploadBucket watch failed; retrying"),
                }
            }
        });
        Started { store, changes }
    }
}
