//! EKS Pod Identity, the operator's side: `--credential-mode pod-identity` against a real API
//! server, LocalStack's IAM (the upload roles) and an EKS endpoint that records every request.
//!
//! No S3/IAM stand-in here implements EKS's Pod Identity association API (moto 5.2 has
//! clusters, node groups and Fargate profiles only; LocalStack's EKS is not in its free
//! edition), so the EKS side is a recorder: it keeps associations the way the EKS API
//! reference describes (one per namespace and service account; ResourceInUseException,
//! ResourceNotFoundException) and the test checks the requests aws-sdk-eks sent it: paths,
//! bodies, SigV4 scope. That the role's trust policy admits EKS's sessions, and that EKS
//! serves credentials through an association, only real AWS can show (docs/concepts/backends.md).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::get;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};
use uploadbucket_operator::crd::UploadBucket;
use uploadbucket_tests::cluster::{
    cluster, create_upload_bucket, ensure_crd, namespace, start_operator, wait_for, wait_gone,
    wait_not_ready, wait_ready,
};
use uploadbucket_tests::{aws_server, unique_name};

const CLUSTER: &str = "shop-cluster";
const CLUSTER_ARN: &str = "arn:aws:eks:eu-west-1:000000000000:cluster/shop-cluster";

/// One request the recorder got.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    body: Value,
    authorization: String,
}

#[derive(Default)]
struct Eks {
    /// id -> association, as EKS returns it.
    associations: Mutex<BTreeMap<String, Value>>,
    seen: Mutex<Vec<Seen>>,
    /// Answer every list with the same nextToken (a broken or hostile endpoint).
    endless: std::sync::atomic::AtomicBool,
}

impl Eks {
    fn holding(&self, ns: &str) -> BTreeMap<String, (String, Value)> {
        self.associations
            .lock()
            .unwrap()
            .values()
            .filter(|a| a["namespace"] == ns)
            .map(|a| {
                (
                    a["serviceAccount"].as_str().unwrap().to_owned(),
                    (a["roleArn"].as_str().unwrap().to_owned(), a["tags"].clone()),
                )
            })
            .collect()
    }
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn error(status: StatusCode, kind: &str, message: &str) -> (StatusCode, HeaderMap, String) {
    let mut h = HeaderMap::new();
    h.insert("x-amzn-errortype", kind.parse().unwrap());
    (status, h, json!({ "message": message }).to_string())
}

fn not_found(message: &str) -> (StatusCode, HeaderMap, String) {
    error(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
}

fn ok(v: Value) -> (StatusCode, HeaderMap, String) {
    (StatusCode::OK, HeaderMap::new(), v.to_string())
}

/// The association API of EKS for one cluster, keeping what it is sent.
async fn start_eks() -> (String, Arc<Eks>) {
    type Reply = (StatusCode, HeaderMap, String);
    async fn collection(
        State(eks): State<Arc<Eks>>,
        Path(cluster): Path<String>,
        method: Method,
        Query(q): Query<BTreeMap<String, String>>,
        headers: HeaderMap,
        body: String,
    ) -> Reply {
        let path = format!("/clusters/{cluster}/pod-identity-associations");
        let body = record(&eks, &method, path, &q, &headers, &body);
        if cluster != CLUSTER {
            return not_found("No cluster found");
        }
        let mut all = eks.associations.lock().unwrap();
        if method == Method::GET {
            let list: Vec<Value> = all
                .values()
                .filter(|a| q.get("namespace").is_none_or(|ns| a["namespace"] == *ns))
                .filter(|a| q.get("serviceAccount").is_none_or(|sa| a["serviceAccount"] == *sa))
                .map(|a| {
                    json!({"clusterName": CLUSTER, "namespace": a["namespace"], "serviceAccount": a["serviceAccount"],
                        "associationArn": a["associationArn"], "associationId": a["associationId"]})
                })
                .collect();
            if eks.endless.load(std::sync::atomic::Ordering::SeqCst) {
                return ok(
                    json!({"associations": list.iter().take(1).collect::<Vec<_>>(), "nextToken": "again"}),
                );
            }
            // Pages of one, so the operator must follow nextToken.
            let start: usize = q.get("nextToken").map_or(0, |t| t.parse().unwrap());
            let page: Vec<Value> = list.iter().skip(start).take(1).cloned().collect();
            let next = (start + 1 < list.len()).then(|| (start + 1).to_string());
            return ok(json!({"associations": page, "nextToken": next}));
        }
        let (ns, sa) = (&body["namespace"], &body["serviceAccount"]);
        if all
            .values()
            .any(|a| a["namespace"] == *ns && a["serviceAccount"] == *sa)
        {
            return error(
                StatusCode::CONFLICT,
                "ResourceInUseException",
                "Association already exists",
            );
        }
        let id = format!("a-{}", unique_name("x"));
        let a = json!({"clusterName": CLUSTER, "namespace": ns, "serviceAccount": sa,
            "roleArn": body["roleArn"], "associationArn": format!("{CLUSTER_ARN}/{id}"),
            "associationId": id, "tags": body["tags"], "disableSessionTags": body["disableSessionTags"]});
        all.insert(id, a.clone());
        ok(json!({ "association": a }))
    }
    async fn member(
        State(eks): State<Arc<Eks>>,
        Path((cluster, id)): Path<(String, String)>,
        method: Method,
        headers: HeaderMap,
        body: String,
    ) -> Reply {
        let path = format!("/clusters/{cluster}/pod-identity-associations/{id}");
        let body = record(&eks, &method, path, &BTreeMap::new(), &headers, &body);
        let mut all = eks.associations.lock().unwrap();
        let Some(a) = all.get_mut(&id).filter(|_| cluster == CLUSTER) else {
            return not_found("No association");
        };
        match method {
            Method::POST => {
                a["roleArn"] = body["roleArn"].clone();
                ok(json!({ "association": a }))
            }
            Method::DELETE => ok(json!({ "association": all.remove(&id) })),
            _ => ok(json!({ "association": a })),
        }
    }
    /// Keeps the request as seen; its body as JSON (`null` when it is none).
    fn record(
        eks: &Eks,
        method: &Method,
        path: String,
        q: &BTreeMap<String, String>,
        headers: &HeaderMap,
        body: &str,
    ) -> Value {
        let body: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let query: Vec<String> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
        eks.seen.lock().unwrap().push(Seen {
            method: method.to_string(),
            path: if query.is_empty() {
                path
            } else {
                format!("{path}?{}", query.join("&"))
            },
            body: body.clone(),
            authorization: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
        });
        body
    }
    let eks = Arc::new(Eks::default());
    let app = Router::new()
        .route(
            "/clusters/{cluster}/pod-identity-associations",
            get(collection).post(collection),
        )
        .route(
            "/clusters/{cluster}/pod-identity-associations/{id}",
            get(member).post(member).delete(member),
        )
        .with_state(eks.clone());
    let (listener, url) = uploadbucket_tests::local_listener().await;
    uploadbucket_tests::serve(listener, app);
    (url, eks)
}

/// The operator in Pod Identity mode: each UploadBucket's role trusts EKS for its cluster,
/// namespace and service accounts, and gets one association per service account, tagged
/// with the object's uid; a service account another UploadBucket or anyone else holds is
/// refused (`AssociationManagedByOther`) and its association left untouched; a service
/// account dropped from the spec loses its association; deletion removes the object's
/// associations before its role, and nothing else. An empty `serviceAccountNames` is refused.
#[tokio::test]
async fn the_operator_keeps_pod_identity_associations_it_can_prove_its_own() {
    let test = "pod_identity::the_operator_keeps_pod_identity_associations_it_can_prove_its_own";
    let Some((client, kubeconfig)) = cluster(test).await else {
        return;
    };
    let Some(server) = aws_server(test) else {
        return;
    };
    ensure_crd(&client).await;
    let ns = namespace(&client, "ub-podid").await;
    let (eks_url, eks) = start_eks().await;
    // Someone else's associations, before the operator starts: two, so that its very first
    // list of the namespace is two pages (pages of one) whatever else happens later.
    for (id, service_account) in [("theirs", "batch"), ("cron", "cron")] {
        eks.associations.lock().unwrap().insert(
            id.into(),
            json!({"clusterName": CLUSTER, "namespace": ns, "serviceAccount": service_account,
                "roleArn": format!("arn:aws:iam::000000000000:role/{service_account}"),
                "associationId": id, "associationArn": format!("{CLUSTER_ARN}/{id}"),
                "tags": {}}),
        );
    }
    let prefix = format!("{}-", unique_name("podid"));
    let _operator = start_operator(
        &kubeconfig,
        &server,
        &ns,
        &[
            ("UPLOADBUCKET_S3_BACKEND", "aws".into()),
            ("UPLOADBUCKET_BUCKET_NAME_PREFIX", prefix.clone()),
            ("UPLOADBUCKET_IAM_ENDPOINT", server.endpoint.clone()),
            ("UPLOADBUCKET_CREDENTIAL_MODE", "pod-identity".into()),
            ("UPLOADBUCKET_EKS_CLUSTER_ARN", CLUSTER_ARN.into()),
            ("UPLOADBUCKET_EKS_ENDPOINT", eks_url.clone()),
        ],
    );
    let ubs: Api<UploadBucket> = Api::namespaced(client.clone(), &ns);
    create_upload_bucket(
        &ubs,
        "photos",
        json!({"serviceAccountNames": ["web", "worker"]}),
    )
    .await;
    let photos = wait_ready(&ubs, "photos").await;
    let status = photos.status.clone().unwrap();
    let role_arn = status.role_arn.clone().expect("a role");
    let uid = photos.metadata.uid.clone().unwrap();
    let held = eks.holding(&ns);
    assert_eq!(
        held.keys().collect::<Vec<_>>(),
        ["batch", "cron", "web", "worker"]
    );
    for sa in ["web", "worker"] {
        assert_eq!(held[sa].0, role_arn, "{sa}");
        assert_eq!(held[sa].1["uploadbucket.io/uid"], uid.as_str(), "{sa}");
        assert_eq!(held[sa].1["uploadbucket.io/name"], "photos", "{sa}");
    }
    // The role, read back from IAM: EKS may assume it for this cluster, namespace and
    // service accounts only.
    let iam = server.iam_client().await;
    let role_name = status.role_name.clone().unwrap();
    let role = iam.get_role().role_name(&role_name).send().await.unwrap();
    let trust: Value = serde_json::from_str(
        &percent_encoding::percent_decode_str(
            role.role().unwrap().assume_role_policy_document().unwrap(),
        )
        .decode_utf8()
        .unwrap(),
    )
    .unwrap();
    let st = &trust["Statement"][0];
    assert_eq!(st["Principal"]["Service"], "pods.eks.amazonaws.com");
    assert_eq!(st["Action"], json!(["sts:AssumeRole", "sts:TagSession"]));
    let eq = &st["Condition"]["StringEquals"];
    assert_eq!(eq["aws:RequestTag/eks-cluster-arn"], CLUSTER_ARN);
    assert_eq!(eq["aws:RequestTag/kubernetes-namespace"], ns.as_str());
    assert_eq!(
        eq["aws:RequestTag/kubernetes-service-account"],
        json!(["web", "worker"])
    );
    assert_eq!(eq["aws:SourceAccount"], "000000000000");

    // What aws-sdk-eks sent: signed for EKS in the cluster's region, one create per service
    // account with the role, the tags and session tags left on.
    let seen = eks.seen();
    assert!(
        seen.iter()
            .all(|s| s.authorization.contains("/eu-west-1/eks/aws4_request")),
        "{seen:?}"
    );
    let creates: Vec<&Seen> = seen.iter().filter(|s| s.method == "POST").collect();
    assert_eq!(creates.len(), 2, "{seen:?}");
    for c in &creates {
        assert_eq!(
            c.path,
            format!("/clusters/{CLUSTER}/pod-identity-associations")
        );
        assert_eq!(c.body["namespace"], ns.as_str());
        assert_eq!(c.body["roleArn"], role_arn.as_str());
        assert_eq!(c.body["disableSessionTags"], false);
        assert_eq!(
            c.body["tags"]["uploadbucket.io/managed-by"],
            "uploadbucket-operator"
        );
    }
    assert!(
        seen.iter().any(|s| s.method == "GET"
            && s.path
                == format!(
                    "/clusters/{CLUSTER}/pod-identity-associations?namespace={ns}&nextToken=1"
                )),
        "the list is followed page by page: {seen:?}"
    );

    // Service accounts held by another UploadBucket and by someone else: refused, untouched.
    for (name, sa, says) in [
        ("avatars", "web", format!("UploadBucket {ns}/photos")),
        (
            "reports",
            "batch",
            "association theirs for role arn:aws:iam::000000000000:role/batch".to_owned(),
        ),
    ] {
        create_upload_bucket(&ubs, name, json!({"serviceAccountNames": [sa]})).await;
        let refused = wait_not_ready(&ubs, name, "AssociationManagedByOther").await;
        let message = &refused.condition("Ready").unwrap().message;
        assert!(message.contains(&says) && message.contains(sa), "{message}");
    }
    create_upload_bucket(&ubs, "nobody", json!({})).await;
    let refused = wait_not_ready(&ubs, "nobody", "InvalidSpec").await;
    assert!(
        refused
            .condition("Ready")
            .unwrap()
            .message
            .contains("spec.serviceAccountNames"),
        "{:?}",
        refused.condition("Ready")
    );
    assert_eq!(
        eks.holding(&ns)["web"].1["uploadbucket.io/uid"],
        uid.as_str()
    );
    assert_eq!(
        eks.holding(&ns)["batch"].0,
        "arn:aws:iam::000000000000:role/batch"
    );

    // A service account dropped from the spec loses its association, and only that one.
    ubs.patch(
        "photos",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"serviceAccountNames": ["worker"]}})),
    )
    .await
    .unwrap();
    wait_for("web's association deleted", 60, || {
        let eks = eks.clone();
        let ns = ns.clone();
        async move { (!eks.holding(&ns).contains_key("web")).then_some(()) }
    })
    .await;
    assert!(eks.holding(&ns).contains_key("worker"));

    // An endpoint that pages forever: the operator stops, says so, and carries on after.
    eks.endless.store(true, std::sync::atomic::Ordering::SeqCst);
    let lists_before = eks.seen().iter().filter(|s| s.method == "GET").count();
    ubs.patch(
        "photos",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"serviceAccountNames": ["worker", "api"]}})),
    )
    .await
    .unwrap();
    let stuck = wait_not_ready(&ubs, "photos", "AwsApiError").await;
    assert!(
        stuck
            .condition("Ready")
            .unwrap()
            .message
            .contains("PaginationLoop"),
        "{:?}",
        stuck.condition("Ready")
    );
    let lists = eks.seen().iter().filter(|s| s.method == "GET").count() - lists_before;
    assert!(lists <= 10, "{lists} list calls for one pass");
    eks.endless
        .store(false, std::sync::atomic::Ordering::SeqCst);
    wait_ready(&ubs, "photos").await;
    assert!(eks.holding(&ns).contains_key("api"));

    // Deleting the refused objects touches nobody's association; deleting photos removes its
    // own, before its role.
    for name in ["avatars", "reports", "nobody", "photos"] {
        ubs.delete(name, &DeleteParams::default()).await.unwrap();
        wait_gone(&ubs, name).await;
    }
    let left = eks.holding(&ns);
    assert_eq!(
        left.keys().collect::<Vec<_>>(),
        ["batch", "cron"],
        "{left:?}"
    );
    let deletes: Vec<String> = eks
        .seen()
        .iter()
        .filter(|s| s.method == "DELETE")
        .map(|s| s.path.clone())
        .collect();
    assert_eq!(deletes.len(), 3, "web, then worker and api: {deletes:?}");
    assert!(
        !deletes
            .iter()
            .any(|p| p.ends_with("/theirs") || p.ends_with("/cron")),
        "{deletes:?}"
    );
    assert!(
        iam.get_role().role_name(&role_name).send().await.is_err(),
        "the role is deleted with the object"
    );
    let _ = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client)
        .delete(&ns, &DeleteParams::default())
        .await;
}
