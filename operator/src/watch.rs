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

    /// Every object the cache holds now, then each object that changes (the cached copy),
    /// every object again after each (re-)list, and all of them again if the reader fell
    /// [`CHANGES_BUFFER`] behind.
    pub fn changes(&self) -> impl Stream<Item = Arc<UploadBucket>> + Send + 'static {
        let started = self.started();
        // Subscribed before the cache is read: a change in between comes twice, none never.
        let live = started.changes.subscribe();
        let store = started.store.clone();
        let now = stream::iter(store.state());
        let each = stream::unfold((live, store), |(mut live, store)| async move {
            let batch = match live.recv().await {
                Ok(ub) => vec![ub],
                Err(RecvError::Lagged(_)) => store.state(),
                Err(RecvError::Closed) => return None,
            };
            Some((stream::iter(batch), (live, store)))
        })
        .flatten();
        now.chain(each)
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
        let events = watcher(self.api.clone(), config)
            .default_backoff()
            .modify(crate::crd::slim)
            .reflect(writer);
        let (cache, sender) = (store.clone(), changes.clone());
        tokio::spawn(async move {
            let mut events = std::pin::pin!(events);
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => {
                        for cached in changed(&event, &cache) {
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

/// The objects a watch event, already applied to `cache`, brings to the controller (the
/// cached copies): the object of an `Apply`; after a (re-)list, every object, since any may
/// be new or changed while the watch was down (a list's objects are held apart until it
/// ends); nothing for a list under way or a deletion (cleanup ran before the finalizer went).
fn changed(
    event: &watcher::Event<UploadBucket>,
    cache: &Store<UploadBucket>,
) -> Vec<Arc<UploadBucket>> {
    match event {
        watcher::Event::Apply(ub) => cache.get(&ObjectRef::from_obj(ub)).into_iter().collect(),
        watcher::Event::InitDone => cache.state(),
        watcher::Event::Init | watcher::Event::InitApply(_) | watcher::Event::Delete(_) => {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str, generation: i64) -> UploadBucket {
        let mut ub = UploadBucket::new(name, serde_json::from_str("{}").unwrap());
        ub.metadata.namespace = Some("shop".into());
        ub.metadata.generation = Some(generation);
        ub
    }

    /// A re-list (the watch down, then listed again) brings every object to the controller
    /// once it is in the cache, the new ones and the changed ones as the list found them; an
    /// object created while the list ran is not lost.
    #[test]
    fn a_relist_brings_every_object_once_it_is_cached() {
        let (cache, mut writer) = reflector::store::<UploadBucket>();
        let mut apply = |event: watcher::Event<UploadBucket>| {
            writer.apply_watcher_event(&event);
            changed(&event, &cache)
                .iter()
                .map(|ub| {
                    (
                        ub.metadata.name.clone().unwrap(),
                        ub.metadata.generation.unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert!(apply(watcher::Event::Init).is_empty());
        assert!(apply(watcher::Event::InitApply(object("a", 1))).is_empty());
        assert_eq!(apply(watcher::Event::InitDone), [("a".to_owned(), 1)]);
        assert_eq!(
            apply(watcher::Event::Apply(object("a", 2))),
            [("a".to_owned(), 2)]
        );
        // The watch is lost; while it lists again, `b` is created and `a` changed.
        assert!(apply(watcher::Event::Init).is_empty());
        assert!(apply(watcher::Event::InitApply(object("a", 3))).is_empty());
        assert!(apply(watcher::Event::InitApply(object("b", 1))).is_empty());
        let mut after = apply(watcher::Event::InitDone);
        after.sort();
        assert_eq!(after, [("a".to_owned(), 3), ("b".to_owned(), 1)]);
        assert!(apply(watcher::Event::Delete(object("b", 1))).is_empty());
    }
}
