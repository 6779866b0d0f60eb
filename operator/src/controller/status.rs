//! Status conditions. Pure, except [`patch_status`] which writes with server-side apply.
//!
//! In: the previous status, the outcome of a reconcile and the time. Out: the next status,
//! with `lastTransitionTime` kept for conditions whose status did not change, and whether it
//! differs from the previous one in anything but timestamps.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};

use crate::crd::{UploadBucket, UploadBucketStatus};

pub const READY: &str = "Ready";
pub const BUCKET_READY: &str = "BucketReady";
pub const ROLE_READY: &str = "RoleReady";

/// Field manager for every write the operator makes.
pub const FIELD_MANAGER: &str = "uploadbucket-operator";

/// A condition to set: type, whether it holds, a CamelCase reason and a sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CondSpec {
    pub type_: &'static str,
    pub ok: bool,
    pub reason: String,
    pub message: String,
}

impl CondSpec {
    pub fn new(
        type_: &'static str,
        ok: bool,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            ok,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Sets `conds` on `status`, keeping each condition's `lastTransitionTime` unless its status
/// flipped. Conditions not mentioned stay as they are.
pub fn set_conditions(
    status: &mut UploadBucketStatus,
    conds: &[CondSpec],
    generation: Option<i64>,
    now: Timestamp,
) {
    for c in conds {
        let new_status = if c.ok { "True" } else { "False" };
        let previous = status.conditions.iter().find(|p| p.type_ == c.type_);
        let last_transition_time = match previous {
            Some(p) if p.status == new_status => p.last_transition_time.clone(),
            _ => Time(now),
        };
        let cond = Condition {
            type_: c.type_.to_owned(),
            status: new_status.to_owned(),
            reason: c.reason.clone(),
            // The API server limits messages to 32768 bytes.
            message: truncate(&c.message, 4000),
            observed_generation: generation,
            last_transition_time,
        };
        match status.conditions.iter_mut().find(|p| p.type_ == c.type_) {
            Some(slot) => *slot = cond,
            None => status.conditions.push(cond),
        }
    }
    // A stable order keeps `kubectl get -o yaml` diffs readable.
    let rank = |t: &str| match t {
        READY => 0,
        BUCKET_READY => 1,
        ROLE_READY => 2,
        _ => 3,
    };
    status.conditions.sort_by(|a, b| {
        rank(&a.type_)
            .cmp(&rank(&b.type_))
            .then(a.type_.cmp(&b.type_))
    });
    status.observed_generation = generation;
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Whether `st` says Ready=True.
pub fn is_ready(st: &UploadBucketStatus) -> bool {
    st.conditions
        .iter()
        .any(|c| c.type_ == READY && c.status == "True")
}

/// Whether a write is needed: anything but timestamps differs.
pub fn differs(old: Option<&UploadBucketStatus>, new: &UploadBucketStatus) -> bool {
    old != Some(new)
}

/// Writes the whole status with server-side apply under [`FIELD_MANAGER`].
pub async fn patch_status(
    api: &Api<UploadBucket>,
    ub: &UploadBucket,
    status: &UploadBucketStatus,
) -> kube::Result<()> {
    let patch = serde_json::json!({
        "apiVersion": UploadBucket::api_version(&()),
        "kind": UploadBucket::kind(&()),
        "status": status,
    });
    api.patch_status(
        &ub.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let mut s = UploadBucketStatus::default();
        set_conditions(
            &mut s,
            &[CondSpec::new(READY, false, "Provisioning", "creating")],
            Some(1),
            at(100),
        );
        assert_eq!(s.conditions[0].last_transition_time, Time(at(100)));

        let before = s.clone();
        set_conditions(
            &mut s,
            &[CondSpec::new(READY, false, "Provisioning", "creating")],
            Some(1),
            at(200),
        );
        assert_eq!(s.conditions[0].last_transition_time, Time(at(100)));
        assert!(
            !differs(Some(&before), &s),
            "same status at a later time needs no write"
        );

        set_conditions(
            &mut s,
            &[CondSpec::new(READY, true, "Provisioned", "ok")],
            Some(2),
            at(300),
        );
        assert_eq!(s.conditions[0].last_transition_time, Time(at(300)));
        assert_eq!(s.conditions[0].observed_generation, Some(2));
        assert!(differs(Some(&before), &s));
    }

    #[test]
    fn conditions_are_ordered_and_merged() {
        let mut s = UploadBucketStatus::default();
        set_conditions(
            &mut s,
            &[
                CondSpec::new(BUCKET_READY, true, "Provisioned", "b"),
                CondSpec::new(READY, true, "Provisioned", "r"),
            ],
            Some(1),
            at(1),
        );
        set_conditions(
            &mut s,
            &[CondSpec::new("RoleReady", false, "Pending", "x")],
            Some(1),
            at(2),
        );
        let types: Vec<_> = s.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, vec![READY, BUCKET_READY, "RoleReady"]);
    }

    #[test]
    fn long_messages_are_truncated_on_char_boundaries() {
        let msg = "é".repeat(5000);
        let t = truncate(&msg, 4000);
        assert!(t.len() <= 4000 && t.ends_with("..."));
    }
}
