//! The status step: the one status write of a pass, and the Events to publish with it.
//!
//! In: the object, the status the API server holds (with what the pass recorded on its way)
//! and the pass's result: [`Provisioned`] or a [`Failure`]. Out: the next status (the names
//! proven ours, the outputs ConfigMap, the role, the conditions) and the Events. Pure but for
//! the clock, read once in [`next_status`], and log lines; the caller writes the status only
//! when it differs, and publishes the Events.

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::events::EventType;
use tracing::info;

use crate::crd::{UploadBucket, UploadBucketStatus};
use crate::reasons::Reason;

use super::desired::Names;
use super::outputs;
use super::provision::{Failure, Provisioned, Stage};
use super::status::{self, BUCKET_READY, CondSpec, READY, ROLE_READY};

/// An Event to publish: its type, reason and note.
pub(super) type Event = (EventType, &'static str, String);

/// The one status write of a pass, and the Events to publish with it.
pub(super) fn next_status(
    ub: &UploadBucket,
    current: Option<UploadBucketStatus>,
    result: &Result<Provisioned, Failure>,
) -> (UploadBucketStatus, Vec<Event>) {
    let mut st = current.unwrap_or_default();
    let now = Timestamp::now();
    let events = match result {
        Ok(p) => provisioned(ub, &mut st, p, now),
        Err(f) => failed(ub, &mut st, f, now),
    };
    (st, events)
}

/// Pure: `names` recorded in `st` as proven ours (the intent to create is spent), with the
/// spec tag keys now written.
fn record(ub: &UploadBucket, st: &mut UploadBucketStatus, names: &Names) {
    st.bucket_name = Some(names.bucket.name.clone());
    st.region = Some(names.bucket.region.clone());
    st.bucket_arn = Some(crate::aws::policy::bucket_arn(
        &names.bucket.region,
        &names.bucket.name,
    ));
    st.creating_bucket = None;
    st.managed_tag_keys = ub.spec.tags.keys().cloned().collect();
}

/// Pure but for log lines: a pass that went through: the names, the outputs ConfigMap and the
/// role recorded, every condition true; an Event for each thing created or changed
/// ([`changes`]).
fn provisioned(
    ub: &UploadBucket,
    st: &mut UploadBucketStatus,
    p: &Provisioned,
    now: Timestamp,
) -> Vec<Event> {
    record(ub, st, &p.names);
    st.config_map_name = Some(outputs::config_map_name(&ub.name_any()));
    if p.outputs_written {
        info!(config_map = ?st.config_map_name, "Wrote the outputs ConfigMap");
    }
    let bucket = &p.names.bucket;
    let how = if p.adopted { "adopted and " } else { "" };
    let msg = format!(
        "Bucket {} in {} is {how}provisioned as specified",
        bucket.name, bucket.region
    );
    let mut conds = vec![
        CondSpec::new(READY, true, Reason::Provisioned, msg.clone()),
        CondSpec::new(BUCKET_READY, true, Reason::Provisioned, msg),
    ];
    if let Some(role) = &p.role {
        st.role_name = Some(p.names.role.clone());
        st.role_arn = Some(role.arn.clone());
        conds[0].message = format!("{}; pods assume role {}", conds[0].message, role.arn);
        conds.push(CondSpec::new(
            ROLE_READY,
            true,
            Reason::Provisioned,
            format!("Role {} is provisioned as specified", role.arn),
        ));
    }
    status::set_conditions(st, &conds, ub.metadata.generation, now);
    changes(p)
}

/// Pure but for log lines: in order, an Event for the bucket created, its settings written,
/// the role created or changed, and the Pod Identity associations created, updated or
/// deleted.
fn changes(p: &Provisioned) -> Vec<Event> {
    let mut events = Vec::new();
    let bucket = &p.names.bucket;
    if p.report.created {
        info!(bucket = %bucket.name, "Created bucket");
        events.push((
            EventType::Normal,
            "Created",
            format!("Created bucket {}", bucket.name),
        ));
    }
    if !p.report.changed.is_empty() {
        info!(bucket = %bucket.name, changed = ?p.report.changed, "Updated bucket");
        events.push((
            EventType::Normal,
            "Updated",
            format!(
                "Set {} on bucket {}",
                p.report.changed.join(", "),
                bucket.name
            ),
        ));
    }
    if let Some(role) = p
        .role
        .as_ref()
        .filter(|r| r.created || !r.changed.is_empty())
    {
        let what = if role.created {
            "Created role".to_owned()
        } else {
            format!("Set {} on role", role.changed.join(", "))
        };
        info!(role = %role.arn, "{what}");
        events.push((
            EventType::Normal,
            if role.created { "Created" } else { "Updated" },
            format!("{what} {}", role.arn),
        ));
    }
    let a = &p.associations;
    for (list, what) in [
        (&a.created, "Created"),
        (&a.updated, "Updated"),
        (&a.deleted, "Deleted"),
    ] {
        if !list.is_empty() {
            let message = format!(
                "{what} the EKS Pod Identity association of service account {}",
                list.join(", ")
            );
            info!("{message}");
            events.push((EventType::Normal, what, message));
        }
    }
    events
}

/// Pure: a pass that stopped: what was proven ours recorded, but never a bucket found not to
/// be ours, and the intent to create kept (only a pass that went through spends it); Ready
/// false, and the stage's condition too; one Warning.
fn failed(
    ub: &UploadBucket,
    st: &mut UploadBucketStatus,
    f: &Failure,
    now: Timestamp,
) -> Vec<Event> {
    if let Some(names) = &f.proven {
        // A bucket this pass created may not carry its tags yet (the pass stopped between
        // CreateBucket and PutBucketTagging, on a store that takes no tags with CreateBucket):
        // the intent is then what lets the next pass know it as this object's.
        let intent = st.creating_bucket.take();
        record(ub, st, names);
        st.creating_bucket = intent;
    }
    if f.not_ours() {
        // Status names only buckets proven ours.
        st.bucket_name = None;
        st.bucket_arn = None;
    }
    let reason = f.error.reason();
    let message = f.error.to_string();
    let mut conds = vec![CondSpec::new(READY, false, reason, message.clone())];
    match f.stage {
        Stage::Kube => {}
        Stage::Bucket => conds.push(CondSpec::new(BUCKET_READY, false, reason, message.clone())),
        Stage::Role => conds.push(CondSpec::new(ROLE_READY, false, reason, message.clone())),
    }
    status::set_conditions(st, &conds, ub.metadata.generation, now);
    vec![(EventType::Warning, reason.as_str(), message)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::BucketRef;
    use crate::controller::apply::ApplyReport;
    use crate::controller::association::AssociationReport;
    use crate::controller::claim::ClaimError;
    use crate::controller::role::RoleReport;
    use crate::crd::UploadBucketSpec;

    fn object() -> UploadBucket {
        let mut ub = UploadBucket::new("photos", UploadBucketSpec::default());
        ub.metadata.namespace = Some("shop".into());
        ub.metadata.generation = Some(3);
        ub
    }

    fn conditions(st: &UploadBucketStatus) -> Vec<(&str, &str)> {
        st.conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
            .collect()
    }

    /// The names of a bucket under the object's derived name.
    fn derived_names() -> Names {
        Names {
            bucket: BucketRef {
                name: "shop-photos-1".into(),
                region: "eu-west-1".into(),
            },
            derived: true,
            adopt: false,
            role: "ub-shop-photos".into(),
        }
    }

    #[test]
    fn a_pass_that_went_through_records_what_is_ours_and_says_what_changed() {
        let role = "arn:aws:iam::123456789012:role/ub-shop-photos";
        let p = Provisioned {
            names: derived_names(),
            adopted: false,
            report: ApplyReport {
                created: true,
                changed: vec!["cors", "lifecycle"],
            },
            role: Some(RoleReport {
                arn: role.into(),
                created: false,
                changed: vec!["trust policy"],
            }),
            associations: AssociationReport {
                created: vec!["app".into()],
                ..Default::default()
            },
            outputs_written: true,
        };
        let mut st = UploadBucketStatus {
            creating_bucket: Some("shop-photos-1".into()),
            ..Default::default()
        };
        let events = provisioned(&object(), &mut st, &p, Timestamp::from_second(100).unwrap());
        assert_eq!(st.bucket_name.as_deref(), Some("shop-photos-1"));
        assert_eq!(st.bucket_arn.as_deref(), Some("arn:aws:s3:::shop-photos-1"));
        assert_eq!(st.creating_bucket, None, "the intent is spent");
        assert_eq!(st.role_name.as_deref(), Some("ub-shop-photos"));
        assert_eq!(st.role_arn.as_deref(), Some(role));
        assert_eq!(st.config_map_name.as_deref(), Some("photos-bucket"));
        assert_eq!(st.observed_generation, Some(3));
        assert_eq!(
            conditions(&st),
            [
                (READY, "True"),
                (BUCKET_READY, "True"),
                (ROLE_READY, "True")
            ]
        );
        assert!(
            st.conditions[0]
                .message
                .ends_with(&format!("; pods assume role {role}"))
        );
        let said: Vec<_> = events
            .iter()
            .map(|(_, reason, note)| (*reason, note.as_str()))
            .collect();
        assert_eq!(
            said,
            [
                ("Created", "Created bucket shop-photos-1"),
                ("Updated", "Set cors, lifecycle on bucket shop-photos-1"),
                ("Updated", &*format!("Set trust policy on role {role}")),
                (
                    "Created",
                    "Created the EKS Pod Identity association of service account app"
                ),
            ]
        );
        assert!(events.iter().all(|(t, ..)| matches!(t, EventType::Normal)));
    }

    #[test]
    fn a_pass_stopped_after_proving_its_bucket_records_it_and_keeps_the_intent() {
        let names = derived_names();
        let mut st = UploadBucketStatus {
            creating_bucket: Some("shop-photos-1".into()),
            ..Default::default()
        };
        let f = Failure {
            stage: Stage::Bucket,
            error: ClaimError::from(crate::aws::AwsError::Api {
                op: "PutBucketTagging",
                code: "DispatchFailure".into(),
                message: "connection closed".into(),
            })
            .into(),
            proven: Some(names),
        };
        failed(&object(), &mut st, &f, Timestamp::from_second(100).unwrap());
        assert_eq!(st.bucket_name.as_deref(), Some("shop-photos-1"));
        // The bucket may not carry its tags yet: only a pass that goes through spends it.
        assert_eq!(st.creating_bucket.as_deref(), Some("shop-photos-1"));
        assert_eq!(conditions(&st), [(READY, "False"), (BUCKET_READY, "False")]);
    }

    #[test]
    fn a_pass_stopped_by_a_bucket_not_ours_records_no_bucket_and_warns_once() {
        let mut st = UploadBucketStatus {
            bucket_name: Some("taken".into()),
            bucket_arn: Some("arn:aws:s3:::taken".into()),
            ..Default::default()
        };
        let f = Failure {
            stage: Stage::Bucket,
            error: ClaimError::Exists("taken".into()).into(),
            proven: None,
        };
        let events = failed(&object(), &mut st, &f, Timestamp::from_second(100).unwrap());
        assert_eq!((&st.bucket_name, &st.bucket_arn), (&None, &None));
        assert_eq!(conditions(&st), [(READY, "False"), (BUCKET_READY, "False")]);
        assert_eq!(st.conditions[0].reason, "BucketExists");
        assert_eq!(events.len(), 1);
        assert!(matches!(events[0].0, EventType::Warning));
        assert_eq!(events[0].1, "BucketExists");
    }
}
