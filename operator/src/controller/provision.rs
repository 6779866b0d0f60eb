//! The provisioning pass: the steps of an apply, in order, up to the status write.
//!
//! In: the object, the [`Context`] (the clouds and the operator's settings) and the object's
//! API (for the intent). Out: [`Provisioned`] (the names proven ours and what each step
//! changed) or a [`Failure`] (the [`Stage`] that stopped, the error, the names proven so far).
//!
//! The steps: the names ([`desired::resolve`], pure) -> the desired state
//! ([`desired::desired`], pure; before any AWS call, so a bad spec costs none) -> the claim
//! ([`claim`]: the bucket becomes ours or the pass stops) -> the bucket's settings
//! ([`apply`]) -> the upload role ([`role`]) -> its Pod Identity associations
//! ([`association`]) -> the outputs ConfigMap ([`outputs`]). Status is written once, after
//! the pass, by the caller (see `outcome`), except for the intent recorded right before AWS
//! gets something new (`write_intent`).

use std::sync::Mutex;

use k8s_openapi::jiff::Timestamp;
use kube::{Api, ResourceExt};
use tracing::{Instrument, info_span};

use crate::aws::{BucketApi, BucketRef};
use crate::crd::{UploadBucket, UploadBucketStatus};
use crate::reasons::Reason;

use super::apply::{self, ApplyReport};
use super::association;
use super::claim::{self, Claimant, Owned, Ownership};
use super::context::Context;
use super::desired::{self, Defaults, Names};
use super::error::Error;
use super::outputs;
use super::role::{self, RoleReport};
use super::status::{self, CondSpec, READY};

/// What one provisioning pass achieved.
pub(super) struct Provisioned {
    pub(super) names: Names,
    pub(super) adopted: bool,
    pub(super) report: ApplyReport,
    pub(super) role: Option<RoleReport>,
    /// What changed in the role's Pod Identity associations (credential mode `pod-identity`).
    pub(super) associations: association::AssociationReport,
    /// The outputs ConfigMap was created or changed.
    pub(super) outputs_written: bool,
}

/// Why a pass stopped, and how far it got: `proven` is set once the bucket was proven ours,
/// so status may record it even when a later step failed.
pub struct Failure {
    pub stage: Stage,
    pub error: Error,
    pub proven: Option<Names>,
}

impl Failure {
    fn new(stage: Stage, proven: Option<&Names>, error: impl Into<Error>) -> Self {
        Failure {
            stage,
            error: error.into(),
            proven: proven.cloned(),
        }
    }

    /// Pure: the pass stopped on a bucket found not to be ours (as opposed to S3 failing to
    /// answer).
    pub fn not_ours(&self) -> bool {
        matches!(&self.error, Error::Claim(c) if c.not_ours())
    }
}

/// Which part of provisioning failed, for the conditions.
#[derive(Clone, Copy, Debug)]
pub enum Stage {
    Kube,
    Bucket,
    Role,
}

/// The pass: names and desired state (pure) -> claim the bucket -> apply it -> the role -> its
/// associations -> the outputs. Status is written once, by the caller, except for the intent
/// recorded right before AWS gets something new.
pub(super) async fn provision(
    ub: &UploadBucket,
    ctx: &Context,
    api: &Api<UploadBucket>,
    written: &Mutex<Option<UploadBucketStatus>>,
) -> Result<Provisioned, Failure> {
    let role_wanted = ctx.roles.as_ref().map(|_| desired::derive_role_name(ub));
    let recorded_role = ub.status.as_ref().and_then(|s| s.role_name.clone());
    let intent = async |creating: Option<&BucketRef>| -> Result<(), Error> {
        let (wanted, recorded) = (role_wanted.as_deref(), recorded_role.as_deref());
        write_intent(ub, api, written, creating, wanted, recorded).await
    };
    let (names, owned, report) = provision_bucket(&*ctx.buckets, ub, &ctx.defaults, intent)
        .instrument(info_span!("bucket"))
        .await?;
    let role = match &ctx.roles {
        None => None,
        Some((iam, settings)) => {
            let fail = |e| Failure::new(Stage::Role, Some(&names), e);
            let r = role::desired_role(ub, &names.bucket, settings)
                .map_err(|e| fail(Error::from(e)))?;
            Some(
                role::apply_role(&**iam, &r, settings)
                    .instrument(info_span!("role", role = %r.name))
                    .await
                    .map_err(|e| fail(Error::from(e)))?,
            )
        }
    };
    let associations = match (&ctx.eks, &role) {
        (Some(eks), Some(role)) => association::apply_associations(&**eks, ub, &role.arn)
            .instrument(info_span!("associations"))
            .await
            .map_err(|e| Failure::new(Stage::Role, Some(&names), Error::from(e)))?,
        _ => Default::default(),
    };
    let data = outputs::data(
        ub,
        &names,
        role.as_ref().map(|r| r.arn.as_str()),
        ctx.s3_endpoint.as_deref(),
    );
    let outputs_written = outputs::publish(&ctx.client, ub, data)
        .await
        .map_err(|e| Failure::new(Stage::Kube, Some(&names), e))?;
    Ok(Provisioned {
        names,
        adopted: owned.adopted,
        report,
        role,
        associations,
        outputs_written,
    })
}

/// Writes the intent into status: the bucket about to be created under this object's derived
/// name (`creating`), and the role wanted (`role_wanted`, `None` without upload roles) unless
/// status records it already (`recorded_role`). Names reach status before anything new exists
/// in AWS, so cleanup can find what this object may have created even if the operator dies
/// mid-way. Neither is a licence to act by itself: see `claim`. Nothing is written when there
/// is nothing new to record; what is written is kept in `written`, where the pass's final
/// status starts from.
async fn write_intent(
    ub: &UploadBucket,
    api: &Api<UploadBucket>,
    written: &Mutex<Option<UploadBucketStatus>>,
    creating: Option<&BucketRef>,
    role_wanted: Option<&str>,
    recorded_role: Option<&str>,
) -> Result<(), Error> {
    if creating.is_none() && recorded_role == role_wanted {
        return Ok(());
    }
    let mut st = ub.status.clone().unwrap_or_default();
    if let Some(b) = creating {
        st.creating_bucket = Some(b.name.clone());
        st.region = Some(b.region.clone());
    }
    st.role_name = role_wanted.map(str::to_owned).or(st.role_name);
    status::set_conditions(
        &mut st,
        &[CondSpec::new(
            READY,
            false,
            Reason::Provisioning,
            "Provisioning the bucket",
        )],
        ub.metadata.generation,
        Timestamp::now(),
    );
    status::patch_status(api, ub, &st).await?;
    if let Ok(mut w) = written.lock() {
        *w = Some(st);
    }
    Ok(())
}

/// The bucket half of a pass: resolve (pure), claim, apply. `record_intent` runs right before
/// the first call that may create something (with the bucket about to be created under this
/// object's derived name, if any); tests pass a no-op.
pub async fn provision_bucket(
    api: &dyn BucketApi,
    ub: &UploadBucket,
    defaults: &Defaults,
    record_intent: impl AsyncFnOnce(Option<&BucketRef>) -> Result<(), Error>,
) -> Result<(Names, Owned, ApplyReport), Failure> {
    let names = desired::resolve(ub, defaults).map_err(|e| Failure::new(Stage::Bucket, None, e))?;
    let d = desired::desired(ub, defaults).map_err(|e| Failure::new(Stage::Bucket, None, e))?;
    let uid = ub.uid().unwrap_or_default();
    let recorded = ub
        .status
        .as_ref()
        .and_then(|s| s.creating_bucket.as_deref());
    let who = Claimant::new(&names, &uid, recorded, defaults);
    let claimed = claim::inspect(api, &who)
        .await
        .map_err(|e| Failure::new(Stage::Bucket, None, e))?;
    // The intent that holds from here on: what status had, or the one recorded just now.
    let (owned, intent) = match claimed {
        Ownership::Ours(owned) => {
            record_intent(None)
                .await
                .map_err(|e| Failure::new(Stage::Kube, None, e))?;
            (owned, recorded)
        }
        Ownership::Absent => {
            let creating = names.derived.then_some(&names.bucket);
            record_intent(creating)
                .await
                .map_err(|e| Failure::new(Stage::Kube, None, e))?;
            let intent = creating.map(|b| b.name.as_str());
            let who = Claimant::new(&names, &uid, intent, defaults);
            let tags = desired::ownership_tags(ub, false);
            let owned = claim::create(api, &who, &tags)
                .await
                .map_err(|e| Failure::new(Stage::Bucket, None, e))?;
            (owned, intent)
        }
    };
    let dropped: Vec<String> = ub
        .status
        .as_ref()
        .map(|s| s.managed_tag_keys.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|k| !d.spec_tags.contains_key(k))
        .collect();
    let who = Claimant::new(&names, &uid, intent, defaults);
    let ownership = desired::ownership_tags(ub, owned.adopted);
    let report = apply::apply(api, &who, &owned, &d, &ownership, &dropped)
        .await
        .map_err(|e| Failure::new(Stage::Bucket, Some(&names), e))?;
    Ok((names, owned, report))
}
