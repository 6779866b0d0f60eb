//! The Helm chart, rendered by the real `helm` (tests/run.sh installs it): it lints, it
//! renders for each certificate source, every setting it passes the operator is a flag the
//! operator has, the webhook configuration says what DESIGN.md promises, and the generated
//! certificate is signed by the CA the API server is told to trust.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, PodSpec, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
use serde::Deserialize;
use serde_yaml::Value;
use uploadbucket_tests::{
    KUBE_VERSION, bin_path, chart_dir, helm, render_chart_dir, render_chart_with,
};

fn chart() -> PathBuf {
    chart_dir()
}

fn render(helm: &Path, sets: &[&str]) -> Result<Vec<Value>, String> {
    render_files(helm, &[], sets)
}

/// [`render`] with values files before the `--set`s.
fn render_files(helm: &Path, files: &[&Path], sets: &[&str]) -> Result<Vec<Value>, String> {
    let text = render_chart_with(helm, "uploadbucket-system", files, sets)?;
    Ok(documents(&text))
}

fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// The pod template's spec of the rendered operator Deployment.
fn operator_pod(docs: &[Value]) -> PodSpec {
    let deploy: Deployment = of_kind(docs, "Deployment").remove(0);
    deploy.spec.unwrap().template.spec.unwrap()
}

/// The operator container of the rendered Deployment.
fn operator_container(docs: &[Value]) -> Container {
    operator_pod(docs).containers.remove(0)
}

/// The operator container's environment, as name and value.
fn operator_env(docs: &[Value]) -> Vec<(String, String)> {
    operator_container(docs)
        .env
        .into_iter()
        .flatten()
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect()
}

/// The operator binary run with `env` and nothing else of this process's environment, where
/// there is no cluster: whether it exited 0, and what it printed on stderr.
fn run_operator(env: &[(String, String)]) -> (bool, String) {
    let out = Command::new(bin_path("uploadbucket-operator"))
        .arg("run")
        .env_clear()
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        // No credentials here, so STS cannot name the account (the buckets' expected owner
        // with the default backend): given, it is taken with a warning (unless the values
        // set one).
        .env("UPLOADBUCKET_AWS_ACCOUNT_ID", "123456789012")
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What the operator says when it got past its flags and settings to the point where it
/// looks for a cluster.
const NO_CLUSTER: &str = "no Kubernetes client configuration";

fn of_kind<T: serde::de::DeserializeOwned>(docs: &[Value], kind: &str) -> Vec<T> {
    docs.iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .map(|d| serde_yaml::from_value(d.clone()).unwrap_or_else(|e| panic!("{kind}: {e}")))
        .collect()
}

const IRSA: &str = "irsa.oidcProviderArn=arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC";

#[test]
fn lints_clean() {
    let Some(helm) = helm("chart::lints_clean") else {
        return;
    };
    let out = Command::new(&helm)
        .args(["lint", "--strict", "--kube-version", KUBE_VERSION])
        .arg(chart())
        .args(["--set", "aws.region=eu-west-1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn default_render_has_every_piece() {
    let Some(helm) = helm("chart::default_render_has_every_piece") else {
        return;
    };
    let docs = render(&helm, &["aws.region=eu-west-1", IRSA]).unwrap();
    let kinds: BTreeSet<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    for k in [
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Service",
        "Deployment",
        "Secret",
        "MutatingWebhookConfiguration",
    ] {
        assert!(kinds.contains(k), "{k} missing from {kinds:?}");
    }
    assert!(
        !kinds.contains("PodDisruptionBudget"),
        "one replica cannot keep one available"
    );
    // The chart's CRD is the generated one.
    let crd = docs
        .iter()
        .find(|d| d["kind"] == "CustomResourceDefinition")
        .unwrap();
    let generated: Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart().join("../../crds/uploadbuckets.uploadbucket.io.yaml"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(crd, &generated);

    let role: ClusterRole = of_kind(&docs, "ClusterRole").remove(0);
    let can = |resource: &str, verb: &str| {
        role.rules.iter().flatten().any(|r| {
            r.resources.iter().flatten().any(|x| x == resource) && r.verbs.iter().any(|v| v == verb)
        })
    };
    for (resource, verb) in [
        ("uploadbuckets", "watch"),
        ("uploadbuckets", "patch"),
        ("uploadbuckets/status", "patch"),
        ("uploadbuckets/finalizers", "update"),
        ("events", "create"),
    ] {
        assert!(can(resource, verb), "ClusterRole cannot {verb} {resource}");
    }
}

#[test]
fn every_env_the_chart_sets_is_an_operator_flag() {
    let Some(helm) = helm("chart::every_env_the_chart_sets_is_an_operator_flag") else {
        return;
    };
    let help = Command::new(bin_path("uploadbucket-operator"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let docs = render(
        &helm,
        &[
            "aws.region=eu-west-1",
            IRSA,
            "aws.s3Endpoint=http://rgw:7480",
            "aws.s3PathStyle=true",
            "aws.iamEndpoint=http://rgw:7480",
            "aws.bucketNamePrefix=acme-",
            "aws.adoptableBuckets={legacy-photos,acme-media-*}",
            "irsa.permissionsBoundary=arn:aws:iam::123456789012:policy/boundary",
            "watchNamespace=shop",
            "sidecar.image.pullPolicy=Always",
            "sidecar.s3Endpoint=https://s3.example.com",
            "sidecar.stsEndpoint=https://sts.example.com",
            "sidecar.resources.limits.cpu=500m",
        ],
    )
    .unwrap();
    let container = &operator_container(&docs);
    let names: Vec<String> = container
        .env
        .iter()
        .flatten()
        .map(|e| e.name.clone())
        .collect();
    assert!(names.len() >= 21, "{names:?}");
    assert!(
        container
            .env
            .iter()
            .flatten()
            .any(|e| e.name == "UPLOADBUCKET_ADOPTABLE_BUCKETS"
                && e.value.as_deref() == Some("legacy-photos,acme-media-*")),
        "{:?}",
        container.env
    );
    // The downward-API pair is read by leader election (identity, Lease namespace), not flags.
    assert!(names.iter().any(|n| n == "POD_NAME") && names.iter().any(|n| n == "POD_NAMESPACE"));
    for name in names.iter().filter(|n| !n.starts_with("POD_")) {
        assert!(
            help.contains(&format!("[env: {name}=")),
            "the chart sets {name}, which `uploadbucket-operator run` does not read"
        );
    }
    // And the operator accepts the values themselves: it gets past its flags and settings
    // to the point where it looks for a cluster (there is none here).
    let (ok, stderr) = run_operator(&operator_env(&docs));
    assert!(!ok);
    assert!(stderr.contains(NO_CLUSTER), "{stderr}");
}

#[test]
fn webhook_configuration_and_certificate() {
    let Some(helm) = helm("chart::webhook_configuration_and_certificate") else {
        return;
    };
    let docs = render(
        &helm,
        &[
            "aws.region=eu-west-1",
            "webhook.excludeNamespaces={monitoring}",
        ],
    )
    .unwrap();
    let mwc: MutatingWebhookConfiguration =
        of_kind(&docs, "MutatingWebhookConfiguration").remove(0);
    let hook = &mwc.webhooks.as_ref().unwrap()[0];
    assert_eq!(hook.admission_review_versions, ["v1"]);
    assert_eq!(hook.side_effects, "None");
    assert_eq!(hook.failure_policy.as_deref(), Some("Fail"));
    assert_eq!(hook.reinvocation_policy.as_deref(), Some("IfNeeded"));
    assert_eq!(hook.timeout_seconds, Some(10));
    let rule = &hook.rules.as_ref().unwrap()[0];
    assert_eq!(rule.operations.as_deref(), Some(&["CREATE".to_owned()][..]));
    assert_eq!(rule.resources.as_deref(), Some(&["pods".to_owned()][..]));
    let excluded = &hook
        .namespace_selector
        .as_ref()
        .unwrap()
        .match_expressions
        .as_ref()
        .unwrap()[0];
    assert_eq!(excluded.operator, "NotIn");
    assert_eq!(
        excluded.values.as_deref().unwrap(),
        ["kube-system", "uploadbucket-system", "monitoring"]
    );
    let condition = &hook.match_conditions.as_ref().unwrap()[0];
    assert!(
        condition
            .expression
            .contains("'uploadbucket.io/inject' in object.metadata.annotations")
    );
    let service = hook.client_config.service.as_ref().unwrap();
    assert_eq!(
        (service.name.as_str(), service.path.as_deref(), service.port),
        ("ub-uploadbucket-operator", Some("/mutate"), Some(443))
    );

    // The serving certificate is for the Service's DNS name and signed by caBundle.
    let secret: Secret = of_kind(&docs, "Secret").remove(0);
    let data = secret.data.unwrap();
    let dir = std::env::temp_dir().join(format!("ub-chart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("ca.pem"),
        &hook.client_config.ca_bundle.as_ref().unwrap().0,
    )
    .unwrap();
    std::fs::write(dir.join("tls.crt"), &data["tls.crt"].0).unwrap();
    std::fs::write(dir.join("tls.key"), &data["tls.key"].0).unwrap();
    let verify = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(dir.join("ca.pem"))
        .args([
            "-verify_hostname",
            "ub-uploadbucket-operator.uploadbucket-system.svc",
        ])
        .arg(dir.join("tls.crt"))
        .output()
        .expect("openssl");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    // ...and the operator's own TLS loader accepts the pair.
    uploadbucket_operator::webhook::tls::CertStore::load(&dir)
        .expect("operator loads the chart's certificate");

    let pod = operator_pod(&docs);
    let volume = &pod.volumes.as_ref().unwrap()[0];
    assert_eq!(
        volume.secret.as_ref().unwrap().secret_name.as_deref(),
        secret.metadata.name.as_deref()
    );
}

#[test]
fn other_certificate_sources_and_bad_values() {
    let Some(helm) = helm("chart::other_certificate_sources_and_bad_values") else {
        return;
    };
    let docs = render(
        &helm,
        &[
            "aws.region=eu-west-1",
            "webhook.certificate.source=cert-manager",
        ],
    )
    .unwrap();
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert!(
        kinds.contains(&"Certificate") && kinds.contains(&"Issuer"),
        "{kinds:?}"
    );
    assert!(!kinds.contains(&"Secret"));
    let mwc = docs
        .iter()
        .find(|d| d["kind"] == "MutatingWebhookConfiguration")
        .unwrap();
    assert_eq!(
        mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].as_str(),
        Some("uploadbucket-system/ub-uploadbucket-operator-webhook")
    );

    let err = render(&helm, &["webhook.certificate.source=secret"]).unwrap_err();
    assert!(
        err.contains("webhook.certificate.existingSecret is required"),
        "{err}"
    );
    let err = render(&helm, &["webhook.certificate.source=vault"]).unwrap_err();
    assert!(
        err.contains("/webhook/certificate/source")
            && err.contains("'helm', 'cert-manager', 'secret'"),
        "{err}"
    );

    // values.schema.json refuses bad values before anything renders, naming the value.
    for (set, needle) in [
        ("webhook.timeoutSeconds=99", "/webhook/timeoutSeconds"),
        ("aws.s3Backend=minio", "/aws/s3Backend"),
        ("replicaCount=-1", "/replicaCount"),
        (
            "leaderElection.leaseSeconds=1",
            "/leaderElection/leaseSeconds",
        ),
        (
            "irsa.oidcProviderArn=oidc.example.com",
            "/irsa/oidcProviderArn",
        ),
        (
            "sidecar.tokenExpirationSeconds=60",
            "/sidecar/tokenExpirationSeconds",
        ),
    ] {
        let err = render(&helm, &[set]).unwrap_err();
        assert!(err.contains(needle), "{set}: {err}");
    }

    let err = render(&helm, &["replicaCount=2", "leaderElection.enabled=false"]).unwrap_err();
    assert!(
        err.contains("replicaCount > 1 needs leaderElection.enabled"),
        "{err}"
    );
    let docs = render(&helm, &["replicaCount=3"]).unwrap();
    let lease_role = docs
        .iter()
        .find(|d| d["kind"] == "Role")
        .expect("a Role for the leader Lease");
    assert_eq!(
        lease_role["rules"][0]["resources"][0].as_str(),
        Some("leases")
    );
    let pdb = docs
        .iter()
        .find(|d| d["kind"] == "PodDisruptionBudget")
        .expect("a PodDisruptionBudget with several replicas");
    assert_eq!(pdb["spec"]["minAvailable"].as_u64(), Some(1));
    assert_eq!(
        lease_role["metadata"]["namespace"].as_str(),
        Some("uploadbucket-system")
    );

    let docs = render(&helm, &["metrics.serviceMonitor=true"]).unwrap();
    let monitor = docs
        .iter()
        .find(|d| d["kind"] == "ServiceMonitor")
        .expect("ServiceMonitor");
    assert_eq!(
        monitor["spec"]["endpoints"][0]["port"].as_str(),
        Some("metrics")
    );
    let service = docs.iter().find(|d| d["kind"] == "Service").unwrap();
    assert!(
        service["spec"]["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "metrics"),
        "the Service has the port the ServiceMonitor scrapes"
    );

    let docs = render(&helm, &["webhook.enabled=false"]).unwrap();
    assert!(
        docs.iter()
            .all(|d| d["kind"] != "MutatingWebhookConfiguration" && d["kind"] != "Secret")
    );
    let pod = operator_pod(&docs);
    assert!(pod.volumes.is_none());
    let service = docs.iter().find(|d| d["kind"] == "Service").unwrap();
    let ports: Vec<&str> = service["spec"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(ports, ["metrics"], "no webhook port without the webhook");
    assert!(
        !pod.containers[0]
            .env
            .iter()
            .flatten()
            .any(|e| e.name == "UPLOADBUCKET_WEBHOOK_CERT_DIR")
    );
}

// ----- Observability: alert rules, dashboard, PodMonitor -----

const OBSERVABILITY: [&str; 5] = [
    "metrics.prometheusRule.enabled=true",
    "metrics.grafanaDashboard.enabled=true",
    "metrics.serviceMonitor=true",
    "sidecar.podMonitor=true",
    "sidecar.metricsPort=9464",
];

/// The rendered PrometheusRule's groups and the dashboard's JSON, from a render with every
/// observability piece on.
fn observability(helm: &Path) -> (serde_json::Value, serde_json::Value) {
    observability_with(helm, &[])
}

/// [`observability`] with `extra` values set too.
fn observability_with(helm: &Path, extra: &[&str]) -> (serde_json::Value, serde_json::Value) {
    let mut sets = vec!["aws.region=eu-west-1"];
    sets.extend(OBSERVABILITY);
    sets.extend(extra);
    let docs = render(helm, &sets).unwrap();
    let one = |kind: &str| -> Value {
        let found: Vec<&Value> = docs
            .iter()
            .filter(|d| d["kind"].as_str() == Some(kind))
            .collect();
        assert_eq!(found.len(), 1, "{kind}");
        found[0].clone()
    };
    let rules: serde_json::Value =
        serde_yaml::from_value(one("PrometheusRule")["spec"].clone()).expect("PrometheusRule spec");
    let dashboard = one("ConfigMap")["data"]["uploadbucket.json"]
        .as_str()
        .expect("dashboard JSON")
        .to_owned();
    (
        rules,
        serde_json::from_str(&dashboard).expect("the dashboard is JSON"),
    )
}

/// Off by default; with them on, `promtool check rules` accepts the rules as rendered, and
/// `promtool test rules` (tests/prometheus/alerts_test.yaml) shows each alert firing when it
/// should and not before.
#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let test = "chart::alert_rules_pass_promtool_check_and_unit_tests";
    let (Some(helm), Some(promtool)) = (helm(test), uploadbucket_tests::promtool(test)) else {
        return;
    };
    let defaults = render(&helm, &["aws.region=eu-west-1"]).unwrap();
    let kinds: BTreeSet<&str> = defaults.iter().filter_map(|d| d["kind"].as_str()).collect();
    for off in [
        "PrometheusRule",
        "PodMonitor",
        "ServiceMonitor",
        "ConfigMap",
    ] {
        assert!(!kinds.contains(off), "{off} rendered by default");
    }
    let (rules, _) = observability(&helm);
    let dir = std::env::temp_dir().join(uploadbucket_tests::unique_name("promtool"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("rules.yaml"),
        serde_yaml::to_string(&rules).unwrap(),
    )
    .unwrap();
    std::fs::copy(
        uploadbucket_tests::manifest_dir().join("prometheus/alerts_test.yaml"),
        dir.join("alerts_test.yaml"),
    )
    .unwrap();
    for args in [
        ["check", "rules", "rules.yaml"],
        ["test", "rules", "alerts_test.yaml"],
    ] {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Every alert has a unit test.
    let tests = std::fs::read_to_string(dir.join("alerts_test.yaml")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    for rule in rules["groups"][0]["rules"].as_array().unwrap() {
        let name = rule["alert"].as_str().unwrap();
        assert!(
            tests.contains(&format!("alertname: {name}\n")),
            "{name} has no test"
        );
    }
}

/// Sample name -> label -> values seen.
type Exported =
    std::collections::BTreeMap<String, std::collections::BTreeMap<String, BTreeSet<String>>>;

/// What the binaries export, from the operator's and the signer's registries with every
/// outcome recorded once.
fn exported() -> Exported {
    let (operator, signer) = uploadbucket_tests::sampled_metrics();
    let mut out = Exported::default();
    for line in (operator.encode() + &signer.encode()).lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, _) = line.rsplit_once(' ').unwrap();
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        let entry = out.entry(name.to_owned()).or_default();
        for pair in labels
            .trim_end_matches('}')
            .split(',')
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').unwrap();
            entry
                .entry(k.to_owned())
                .or_default()
                .insert(v.trim_matches('"').to_owned());
        }
    }
    out
}

/// A label matcher of a selector: label, operator (`=`, `!=`, `=~`, `!~`), value.
type Matcher = (String, String, String);

/// The `uploadbucket_*` names in a PromQL expression, each with its selector's matchers,
/// and the labels of its `by (...)` clauses.
fn references(expr: &str) -> (Vec<(String, Vec<Matcher>)>, Vec<String>) {
    let mut metrics = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("uploadbucket_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = tail[..end].to_owned();
        let mut matchers = Vec::new();
        let after = &tail[end..];
        if let Some(inner) = after.strip_prefix('{') {
            let inner = &inner[..inner.find('}').expect("a closed selector")];
            for m in inner.split(',').filter(|m| !m.trim().is_empty()) {
                let op_at = m.find(['=', '!']).expect("a matcher");
                let (label, rest) = m.split_at(op_at);
                let op_len =
                    if rest.starts_with("=~") || rest.starts_with("!=") || rest.starts_with("!~") {
                        2
                    } else {
                        1
                    };
                matchers.push((
                    label.trim().to_owned(),
                    rest[..op_len].to_owned(),
                    rest[op_len..].trim().trim_matches('"').to_owned(),
                ));
            }
        }
        metrics.push((name, matchers));
        rest = &tail[end..];
    }
    let mut by = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("by (") {
        let inner = &rest[i + 4..];
        let close = inner.find(')').unwrap();
        by.extend(inner[..close].split(',').map(|l| l.trim().to_owned()));
        rest = &inner[close..];
    }
    (metrics, by)
}

/// Every expression of the dashboard and the alert rules names only series the operator and
/// the signer export, with labels they carry and label values they emit; the dashboard
/// shows what the issue asks (reconciles, failures by reason, webhook latency, signer
/// requests by outcome and latency) and the rules watch what they promise.
#[test]
fn dashboard_and_alerts_use_only_exported_metrics() {
    let Some(helm) = helm("chart::dashboard_and_alerts_use_only_exported_metrics") else {
        return;
    };
    let (rules, dashboard) = observability(&helm);
    let exported = exported();
    // Added by Prometheus to every scraped series (the signer's pods: namespace and pod).
    let target_labels = ["namespace", "pod", "instance", "job"];
    let mut exprs: Vec<(String, String)> = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            exprs.push((
                format!("panel {:?}", panel["title"]),
                t["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    let dashboard_exprs = exprs.len();
    for rule in rules["groups"][0]["rules"].as_array().unwrap() {
        exprs.push((
            format!("alert {}", rule["alert"]),
            rule["expr"].as_str().unwrap().to_owned(),
        ));
    }
    assert!(dashboard_exprs >= 10, "{dashboard_exprs} dashboard queries");
    for (place, expr) in &exprs {
        let (metrics, by) = references(expr);
        assert!(
            !metrics.is_empty(),
            "{place}: no uploadbucket metric in {expr}"
        );
        let mut labels: BTreeSet<&str> = target_labels.into_iter().collect();
        labels.insert("le");
        for (name, matchers) in &metrics {
            let Some(series) = exported.get(name) else {
                panic!(
                    "{place}: {name} is not exported; exported: {:?}",
                    exported.keys()
                );
            };
            labels.extend(series.keys().map(String::as_str));
            for (label, op, value) in matchers {
                let values = series
                    .get(label)
                    .unwrap_or_else(|| panic!("{place}: {name} has no label {label}"));
                let wanted: Vec<&str> = match op.as_str() {
                    "=" | "!=" => vec![value.as_str()],
                    _ => value.split('|').collect(),
                };
                for v in wanted {
                    assert!(
                        values.contains(v),
                        "{place}: {name}{{{label}{op}\"{value}\"}}: {v:?} is never emitted; {values:?}"
                    );
                }
            }
        }
        for l in &by {
            assert!(labels.contains(l.as_str()), "{place}: by ({l}) in {expr}");
        }
    }
    let all = |range: std::ops::Range<usize>| {
        exprs[range]
            .iter()
            .map(|(_, e)| e.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (on_dashboard, in_rules) = (all(0..dashboard_exprs), all(dashboard_exprs..exprs.len()));
    for want in [
        "uploadbucket_reconciles_total",
        "uploadbucket_reconcile_failures_total",
        "uploadbucket_webhook_review_duration_seconds_bucket",
        "uploadbucket_signer_requests_total",
        "uploadbucket_signer_request_duration_seconds_bucket",
    ] {
        assert!(on_dashboard.contains(want), "the dashboard lacks {want}");
    }
    for want in [
        "uploadbucket_ready",
        "uploadbucket_reconcile_failures_total",
        "uploadbucket_webhook_reviews_total",
        "uploadbucket_signer_requests_total{outcome=\"ServerError\"}",
        "uploadbucket_signer_credentials_ready",
    ] {
        assert!(in_rules.contains(want), "the alerts lack {want}");
    }
}

/// The PodMonitor scrapes what the webhook sets up: pods with its label, on its port name;
/// the chart's sidecar.metricsPort reaches the operator (whose flag it is); the
/// ServiceMonitor keeps uploadbucket_ready's own namespace label.
#[test]
fn podmonitor_matches_what_the_webhook_injects() {
    let Some(helm) = helm("chart::podmonitor_matches_what_the_webhook_injects") else {
        return;
    };
    let mut sets = vec!["aws.region=eu-west-1"];
    sets.extend(OBSERVABILITY);
    let docs = render(&helm, &sets).unwrap();
    let monitor = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("PodMonitor"))
        .expect("a PodMonitor");
    use uploadbucket_operator::webhook::inject::{LABEL_SIGNER_METRICS, METRICS_PORT_NAME};
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"][LABEL_SIGNER_METRICS].as_str(),
        Some("true")
    );
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["any"].as_bool(),
        Some(true)
    );
    let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
    assert_eq!(endpoint["port"].as_str(), Some(METRICS_PORT_NAME));
    assert_eq!(endpoint["path"].as_str(), Some("/metrics"));
    let deployment: Vec<Deployment> = of_kind(&docs, "Deployment");
    let env = deployment[0]
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .env
        .clone()
        .unwrap_or_default();
    assert!(
        env.iter()
            .any(|e| e.name == "UPLOADBUCKET_SIDECAR_METRICS_PORT"
                && e.value.as_deref() == Some("9464")),
        "{env:?}"
    );
    let service_monitor = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("ServiceMonitor"))
        .unwrap();
    assert_eq!(
        service_monitor["spec"]["endpoints"][0]["honorLabels"].as_bool(),
        Some(true)
    );
    let err = render(&helm, &["aws.region=eu-west-1", "sidecar.metricsPort=80"]).unwrap_err();
    assert!(err.contains("metricsPort"), "{err}");
}

/// The EKS steps (docs/install/eks.md) hold together: examples/helm/values-eks.yaml renders
/// (the values schema passes) as the release they name, whose service account is the subject
/// both documented trust policies of the operator's role name, annotated with that role; the
/// upload roles' provider and boundary reach the operator; and examples/app.yaml runs the
/// image examples/web/Dockerfile says to build, for the UploadBucket of
/// examples/uploadbucket.yaml.
#[test]
fn the_eks_install_holds_together() {
    let Some(helm) = helm("chart::the_eks_install_holds_together") else {
        return;
    };
    let repo = uploadbucket_tests::repo_root();
    let out = Command::new(&helm)
        .args([
            "template",
            "uploadbucket-operator",
            "--namespace",
            "uploadbucket-system",
        ])
        .args(["--kube-version", KUBE_VERSION, "-f"])
        .arg(repo.join("examples/helm/values-eks.yaml"))
        .arg(chart())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect();
    let sa = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("ServiceAccount"))
        .expect("a service account");
    let subject = format!(
        "system:serviceaccount:{}:{}",
        sa["metadata"]["namespace"].as_str().unwrap(),
        sa["metadata"]["name"].as_str().unwrap()
    );
    assert_eq!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].as_str(),
        Some("arn:aws:iam::123456789012:role/uploadbucket-operator")
    );
    let json = |path: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(repo.join(path)).unwrap()).unwrap()
    };
    let irsa = json("docs/operator-trust-policy-irsa.json");
    let st = &irsa["Statement"][0];
    assert_eq!(st["Action"], "sts:AssumeRoleWithWebIdentity");
    assert_eq!(st["Condition"]["StringEquals"]["OIDC_ISSUER:sub"], subject);
    assert_eq!(
        st["Condition"]["StringEquals"]["OIDC_ISSUER:aud"],
        "sts.amazonaws.com"
    );
    let pod_identity = json("docs/operator-trust-policy-pod-identity.json");
    let st = &pod_identity["Statement"][0];
    assert_eq!(st["Principal"]["Service"], "pods.eks.amazonaws.com");
    let tags = &st["Condition"]["StringEquals"];
    assert_eq!(
        format!(
            "system:serviceaccount:{}:{}",
            tags["aws:RequestTag/kubernetes-namespace"]
                .as_str()
                .unwrap(),
            tags["aws:RequestTag/kubernetes-service-account"]
                .as_str()
                .unwrap()
        ),
        subject
    );
    // The operator gets the upload roles' provider and boundary, on the AWS backend.
    for wanted in [
        "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE",
        "arn:aws:iam::123456789012:policy/uploadbucket-upload-boundary",
        "REGISTRY/uploadbucket/operator:0.1.0",
        "REGISTRY/uploadbucket/sidecar:0.1.0",
    ] {
        assert!(text.contains(wanted), "{wanted} not rendered");
    }
    // The example app: the image the Dockerfile builds, the UploadBucket of the example.
    let dockerfile = std::fs::read_to_string(repo.join("examples/web/Dockerfile")).unwrap();
    let app_docs: Vec<Value> = serde_yaml::Deserializer::from_str(
        &std::fs::read_to_string(repo.join("examples/app.yaml")).unwrap(),
    )
    .map(|d| Value::deserialize(d).unwrap())
    .collect();
    let deployment = app_docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("Deployment"))
        .unwrap();
    let pod = &deployment["spec"]["template"];
    let image = pod["spec"]["containers"][0]["image"].as_str().unwrap();
    assert!(
        dockerfile.contains(&format!("-t {}", image.replace("REGISTRY", "$REGISTRY"))),
        "{image} is not what examples/web/Dockerfile builds"
    );
    let ub: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo.join("examples/uploadbucket.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        pod["metadata"]["annotations"]["uploadbucket.io/inject"],
        ub["metadata"]["name"]
    );
    assert_eq!(
        deployment["metadata"]["namespace"],
        ub["metadata"]["namespace"]
    );
}

/// Pod Identity through the chart: the operator gets the mode, the cluster and the agent's
/// address (flags it has) and no OIDC settings; the schema refuses the mode without a cluster
/// ARN, with IRSA's provider as well, and an unknown mode. The documented operator policy
/// grants the association calls on that cluster only and passing upload roles to EKS only.
#[test]
fn pod_identity_values_render_and_bad_ones_are_refused() {
    let Some(helm) = helm("chart::pod_identity_values_render_and_bad_ones_are_refused") else {
        return;
    };
    let arn = "arn:aws:eks:eu-west-1:123456789012:cluster/shop";
    let docs = render(
        &helm,
        &[
            "aws.region=eu-west-1",
            "credentialMode=pod-identity",
            &format!("podIdentity.clusterArn={arn}"),
        ],
    )
    .unwrap();
    let env: std::collections::BTreeMap<String, String> = operator_container(&docs)
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect();
    assert_eq!(env["UPLOADBUCKET_CREDENTIAL_MODE"], "pod-identity");
    assert_eq!(env["UPLOADBUCKET_EKS_CLUSTER_ARN"], arn);
    assert_eq!(
        env["UPLOADBUCKET_SIDECAR_POD_IDENTITY_AGENT_URL"],
        "http://169.254.170.23/v1/credentials"
    );
    assert!(!env.keys().any(|k| k.contains("OIDC")), "{env:?}");
    let help = Command::new(bin_path("uploadbucket-operator"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    for k in env.keys().filter(|k| k.starts_with("UPLOADBUCKET_")) {
        assert!(
            help.contains(&format!("[env: {k}=")),
            "{k} is no flag of the operator"
        );
    }
    for (sets, needle) in [
        (vec!["credentialMode=pod-identity"], "clusterArn"),
        (
            vec![
                "credentialMode=pod-identity",
                "podIdentity.clusterArn=arn:aws:eks:eu-west-1:123456789012:cluster/shop",
                IRSA,
            ],
            "/irsa/oidcProviderArn",
        ),
        (vec!["credentialMode=kiam"], "/credentialMode"),
        (
            vec!["podIdentity.clusterArn=arn:aws:eks:eu-west-1:1234:cluster/shop"],
            "/podIdentity/clusterArn",
        ),
    ] {
        let err = render(&helm, &sets).unwrap_err();
        assert!(err.contains(needle), "{sets:?}: {err}");
    }
    let policy: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(chart().join("../../docs/operator-iam-policy.json")).unwrap(),
    )
    .unwrap();
    let statement = |sid: &str| {
        policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Sid"] == sid)
            .cloned()
            .unwrap_or_else(|| panic!("no statement {sid}"))
    };
    let eks = statement("PodIdentityAssociationsOfTheCluster");
    for op in ["List", "Describe", "Create", "Update", "Delete"] {
        let action = format!(
            "eks:{op}PodIdentityAssociation{}",
            if op == "List" { "s" } else { "" }
        );
        assert!(
            eks["Action"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!(action)),
            "{action}"
        );
    }
    assert!(eks.to_string().contains("cluster/CLUSTER_NAME"), "{eks}");
    let pass = statement("PassUploadRolesToPodIdentity");
    assert_eq!(pass["Action"], "iam:PassRole");
    assert_eq!(
        pass["Resource"],
        "arn:aws:iam::ACCOUNT_ID:role/uploadbucket/*"
    );
    assert_eq!(
        pass["Condition"]["StringEquals"]["iam:PassedToService"],
        "pods.eks.amazonaws.com"
    );
}

// ----- Conventions: Artifact Hub, NOTES, signer resources, HA, RBAC, monitors, runbooks -----

/// The chart's CRD, as JSON.
fn crd() -> serde_json::Value {
    serde_yaml::from_str(
        &std::fs::read_to_string(chart().join("crds/uploadbuckets.uploadbucket.io.yaml")).unwrap(),
    )
    .unwrap()
}

/// `value` fits the structural schema `schema` of a CRD: every field is one the schema
/// names (or sits under an open map), of its type, and required fields are there. `at`:
/// where, for the message.
fn fits(value: &serde_json::Value, schema: &serde_json::Value, at: &str) -> Result<(), String> {
    use serde_json::Value as J;
    if schema["x-kubernetes-preserve-unknown-fields"] == true {
        return Ok(());
    }
    match (schema["type"].as_str(), value) {
        (Some("object"), J::Object(fields)) => {
            for r in schema["required"].as_array().into_iter().flatten() {
                let r = r.as_str().unwrap_or_default();
                if !fields.contains_key(r) {
                    return Err(format!("{at}.{r} is required"));
                }
            }
            for (k, v) in fields {
                let sub = match (
                    schema["properties"].get(k),
                    schema.get("additionalProperties"),
                ) {
                    (Some(sub), _) => sub,
                    (None, Some(sub)) if sub.is_object() => sub,
                    _ => return Err(format!("{at}.{k} is not a field of the CRD")),
                };
                fits(v, sub, &format!("{at}.{k}"))?;
            }
            Ok(())
        }
        (Some("array"), J::Array(items)) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| fits(v, &schema["items"], &format!("{at}[{i}]"))),
        (Some("string"), J::String(_))
        | (Some("boolean"), J::Bool(_))
        | (Some("number"), J::Number(_))
        | (None, _) => Ok(()),
        (Some("integer"), J::Number(n)) if n.is_i64() || n.is_u64() => Ok(()),
        (Some(t), v) => Err(format!("{at}: {v} is not of type {t}")),
    }
}

/// An UploadBucket manifest the chart's CRD accepts (as far as its schema goes).
fn assert_fits_the_crd(ub: &serde_json::Value) {
    let crd = crd();
    let version = &crd["spec"]["versions"][0];
    assert_eq!(
        ub["apiVersion"],
        format!(
            "{}/{}",
            crd["spec"]["group"].as_str().unwrap(),
            version["name"].as_str().unwrap()
        )
    );
    assert_eq!(ub["kind"], crd["spec"]["names"]["kind"]);
    assert!(ub["metadata"]["name"].is_string(), "{ub}");
    let body: serde_json::Map<String, serde_json::Value> = ub
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !["apiVersion", "kind", "metadata"].contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    fits(
        &serde_json::Value::Object(body),
        &version["schema"]["openAPIV3Schema"],
        "",
    )
    .unwrap_or_else(|e| panic!("{e}: {ub}"));
}

/// Chart.yaml, and one of its annotations that holds a YAML list.
fn chart_yaml() -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(chart().join("Chart.yaml")).unwrap()).unwrap()
}

fn annotation_list(meta: &Value, key: &str) -> Vec<serde_json::Value> {
    let text = meta["annotations"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no annotation {key}"));
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{key}: {e}"))
}

/// What Artifact Hub shows is true of the chart: the project's address (Cargo.toml's), the
/// license Cargo.toml names, the images the chart runs by default, the CRD it installs, an
/// example UploadBucket that CRD accepts, and a change list.
#[test]
fn chart_metadata_is_what_artifact_hub_shows() {
    let Some(helm) = helm("chart::chart_metadata_is_what_artifact_hub_shows") else {
        return;
    };
    let meta = chart_yaml();
    let cargo = std::fs::read_to_string(chart().join("../../Cargo.toml")).unwrap();
    let cargo_value = |key: &str| -> String {
        let prefix = format!("{key} = \"");
        cargo
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str())?.strip_suffix('"'))
            .unwrap_or_else(|| panic!("{key} in Cargo.toml"))
            .to_owned()
    };
    let repository = cargo_value("repository");
    assert_eq!(meta["home"].as_str(), Some(repository.as_str()));
    let sources = meta["sources"].as_sequence().expect("sources");
    assert!(
        !sources.is_empty()
            && sources
                .iter()
                .all(|s| s.as_str().unwrap().starts_with(&repository)),
        "{sources:?}"
    );
    assert_eq!(
        meta["maintainers"][0]["name"].as_str(),
        Some("uploadbucket maintainers")
    );
    let annotations = &meta["annotations"];
    assert_eq!(
        annotations["artifacthub.io/license"].as_str(),
        Some(cargo_value("license").as_str())
    );
    assert_eq!(
        annotations["artifacthub.io/prerelease"].as_str(),
        Some("true")
    );

    let docs = render(&helm, &["aws.region=eu-west-1"]).unwrap();
    let env: std::collections::BTreeMap<String, String> = operator_env(&docs).into_iter().collect();
    let running = BTreeSet::from([
        operator_container(&docs).image.unwrap(),
        env["UPLOADBUCKET_SIDECAR_IMAGE"].clone(),
    ]);
    let listed: BTreeSet<String> = annotation_list(&meta, "artifacthub.io/images")
        .iter()
        .map(|i| {
            assert!(i["name"].is_string(), "{i}");
            i["image"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(listed, running);

    let crd = crd();
    let crds = annotation_list(&meta, "artifacthub.io/crds");
    assert_eq!(crds.len(), 1, "{crds:?}");
    assert_eq!(crds[0]["kind"], crd["spec"]["names"]["kind"]);
    assert_eq!(crds[0]["version"], crd["spec"]["versions"][0]["name"]);
    assert_eq!(crds[0]["name"], crd["metadata"]["name"]);
    assert!(crds[0]["displayName"].is_string());
    assert!(
        crds[0]["description"]
            .as_str()
            .is_some_and(|d| d.len() > 40)
    );
    let examples = annotation_list(&meta, "artifacthub.io/crdsExamples");
    assert_eq!(examples.len(), 1);
    assert_fits_the_crd(&examples[0]);

    let changes = annotation_list(&meta, "artifacthub.io/changes");
    assert!(!changes.is_empty());
    for change in &changes {
        let kind = change["kind"].as_str().unwrap_or_default();
        assert!(
            [
                "added",
                "changed",
                "deprecated",
                "removed",
                "fixed",
                "security"
            ]
            .contains(&kind),
            "{change}"
        );
        assert!(change["description"].is_string(), "{change}");
    }
}

/// NOTES.txt as `helm install` prints it for `sets`. `helm template` leaves the notes out,
/// so a copy of the chart with one more template, a ConfigMap holding them, is rendered.
fn notes(helm: &Path, sets: &[&str]) -> String {
    let dir = std::env::temp_dir().join(uploadbucket_tests::unique_name("ub-notes"));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("uploadbucket-operator");
    let cp = Command::new("cp")
        .arg("-r")
        .arg(chart())
        .arg(&copy)
        .status()
        .unwrap();
    assert!(cp.success());
    std::fs::write(
        copy.join("templates/notes-for-tests.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes-for-tests\ndata:\n  notes: {{ include \"uploadbucket-operator/templates/NOTES.txt\" . | toJson }}\n",
    )
    .unwrap();
    let text = render_chart_dir(helm, &copy, "uploadbucket-system", &[], sets);
    let _ = std::fs::remove_dir_all(&dir);
    documents(&text.unwrap())
        .iter()
        .find(|d| d["metadata"]["name"] == "notes-for-tests")
        .and_then(|d| d["data"]["notes"].as_str())
        .expect("the notes")
        .to_owned()
}

/// The UploadBucket manifest printed in the notes (indented, up to the next blank line).
fn notes_manifest(notes: &str) -> serde_json::Value {
    let lines: Vec<&str> = notes
        .lines()
        .skip_while(|l| l.trim() != "apiVersion: uploadbucket.io/v1alpha1")
        .take_while(|l| !l.trim().is_empty())
        .collect();
    assert!(!lines.is_empty(), "no UploadBucket in the notes:\n{notes}");
    let indent = lines[0].len() - lines[0].trim_start().len();
    let yaml: String = lines
        .iter()
        .map(|l| format!("{}\n", l.get(indent..).unwrap_or(l)))
        .collect();
    serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("{e}:\n{yaml}"))
}

/// The notes print an UploadBucket the CRD accepts (Artifact Hub's example, in a namespace to
/// fill in, or the watched one) rather than a file the chart does not ship; say what a signer
/// gets without upload roles (nothing: instance metadata is off); and warn about an empty
/// region on AWS, an empty bucket-name prefix, upload roles without a boundary, and the
/// finalizer policy turned off, each only when it applies.
#[test]
fn notes_describe_what_is_installed() {
    let Some(helm) = helm("chart::notes_describe_what_is_installed") else {
        return;
    };
    let warns = |text: &str, warning: &str| text.contains(&format!("WARNING: {warning}"));
    let text = notes(&helm, &["aws.region=eu-west-1"]);
    assert!(!text.contains("examples/"), "{text}");
    assert!(!text.contains("whatever AWS credentials"), "{text}");
    let manifest = notes_manifest(&text);
    assert_fits_the_crd(&manifest);
    assert_eq!(manifest["metadata"]["namespace"], "<your-app-namespace>");
    let example = annotation_list(&chart_yaml(), "artifacthub.io/crdsExamples").remove(0);
    assert_eq!(manifest["spec"], example["spec"]);
    assert!(
        warns(&text, "no upload roles")
            && text.contains("AWS_EC2_METADATA_DISABLED=true")
            && text.contains("503"),
        "{text}"
    );
    assert!(warns(&text, "aws.bucketNamePrefix is empty"), "{text}");
    assert!(!warns(&text, "aws.region is empty"), "{text}");

    let boundary = "upload roles are created without a permissions boundary";
    let pod_identity = [
        "credentialMode=pod-identity",
        "podIdentity.clusterArn=arn:aws:eks:eu-west-1:123456789012:cluster/shop",
    ];
    for (sets, warning, shown) in [
        (vec![IRSA], "aws.region is empty", true),
        (
            vec![
                IRSA,
                "extraEnv[0].name=AWS_REGION",
                "extraEnv[0].value=eu-west-1",
            ],
            "aws.region is empty",
            false,
        ),
        (
            vec![IRSA, "aws.s3Backend=rgw"],
            "aws.region is empty",
            false,
        ),
        (vec!["aws.region=eu-west-1", IRSA], boundary, true),
        (
            vec!["aws.region=eu-west-1", pod_identity[0], pod_identity[1]],
            boundary,
            true,
        ),
        (
            vec![
                "aws.region=eu-west-1",
                IRSA,
                "irsa.permissionsBoundary=arn:aws:iam::123456789012:policy/boundary",
            ],
            boundary,
            false,
        ),
        (
            vec!["aws.region=eu-west-1", IRSA, "aws.s3Backend=rgw"],
            boundary,
            false,
        ),
        (vec!["aws.region=eu-west-1", IRSA], "no upload roles", false),
        (
            vec!["aws.region=eu-west-1", "aws.bucketNamePrefix=acme-"],
            "aws.bucketNamePrefix is empty",
            false,
        ),
        (
            vec!["aws.region=eu-west-1", "finalizerPolicy.enabled=false"],
            "finalizerPolicy.enabled=false",
            true,
        ),
        (
            vec!["aws.region=eu-west-1"],
            "finalizerPolicy.enabled=false",
            false,
        ),
    ] {
        let text = notes(&helm, &sets);
        assert_eq!(warns(&text, warning), shown, "{sets:?}:\n{text}");
    }
    let text = notes(&helm, &["aws.region=eu-west-1", "watchNamespace=shop"]);
    assert_eq!(notes_manifest(&text)["metadata"]["namespace"], "shop");
    assert!(
        text.contains("uploadbucket.io/cleanup finalizer off an UploadBucket in shop"),
        "{text}"
    );
}

/// The operator's injection flags as the chart sets them: its `UPLOADBUCKET_SIDECAR_*` and
/// `UPLOADBUCKET_WEBHOOK_*` variables, read as the flags they stand for.
fn webhook_args(
    env: &[(String, String)],
) -> Result<uploadbucket_operator::cli::WebhookArgs, String> {
    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        webhook: uploadbucket_operator::cli::WebhookArgs,
    }
    let mut argv = vec!["uploadbucket-operator".to_owned()];
    for (name, value) in env {
        let Some(flag) = name
            .strip_prefix("UPLOADBUCKET_")
            .filter(|f| f.starts_with("SIDECAR_") || f.starts_with("WEBHOOK_"))
        else {
            continue;
        };
        argv.push(format!("--{}", flag.to_lowercase().replace('_', "-")));
        argv.push(value.clone());
    }
    <Flags as clap::Parser>::try_parse_from(argv)
        .map(|f| f.webhook)
        .map_err(|e| e.to_string())
}

/// A CPU or memory quantity in base units (cores, bytes), read independently of the
/// operator: what the API server compares.
fn quantity(q: &str) -> f64 {
    let number = q.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let scale = match &q[number.len()..] {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        other => panic!("suffix {other} of {q}"),
    };
    number.parse::<f64>().unwrap() * scale
}

/// The smallest signer resources the chart and the operator accept make a signer container
/// the API server admits: every request at most its limit, as the values say. The check is
/// on the rendered chart, the operator's flags and the webhook's injection (no API server
/// here; cluster.rs runs the operator with these values against one). The defaults and the
/// deprecated sidecar.memoryLimit go the same way.
#[test]
fn smallest_accepted_signer_resources_make_an_admissible_container() {
    let Some(helm) = helm("chart::smallest_accepted_signer_resources_make_an_admissible_container")
    else {
        return;
    };
    use uploadbucket_operator::aws::rgw::Backend;
    use uploadbucket_operator::cli::{
        CredentialMode, SIGNER_MIN_MEMORY_LIMIT, SIGNER_MIN_MEMORY_REQUEST,
    };
    let smallest = [
        "sidecar.resources.requests.cpu=1m".to_owned(),
        format!("sidecar.resources.requests.memory={SIGNER_MIN_MEMORY_REQUEST}"),
        format!("sidecar.resources.limits.memory={SIGNER_MIN_MEMORY_LIMIT}"),
        "sidecar.resources.limits.cpu=1m".to_owned(),
    ];
    let cases = [
        (
            smallest.iter().map(String::as_str).collect::<Vec<_>>(),
            [
                ("requests.cpu", Some("1m")),
                ("requests.memory", Some(SIGNER_MIN_MEMORY_REQUEST)),
                ("limits.memory", Some(SIGNER_MIN_MEMORY_LIMIT)),
                ("limits.cpu", Some("1m")),
            ],
        ),
        (
            vec![],
            [
                ("requests.cpu", Some("10m")),
                ("requests.memory", Some("16Mi")),
                ("limits.memory", Some("64Mi")),
                ("limits.cpu", None),
            ],
        ),
        (
            vec!["sidecar.memoryLimit=128Mi"],
            [
                ("requests.cpu", Some("10m")),
                ("requests.memory", Some("16Mi")),
                ("limits.memory", Some("128Mi")),
                ("limits.cpu", None),
            ],
        ),
        // CPU in cores, as a number (what `cpu: 2` in a values file is).
        (
            vec!["sidecar.resources.limits.cpu=2"],
            [
                ("requests.cpu", Some("10m")),
                ("requests.memory", Some("16Mi")),
                ("limits.memory", Some("64Mi")),
                ("limits.cpu", Some("2")),
            ],
        ),
    ];
    for (extra, want) in cases {
        let mut sets = vec!["aws.region=eu-west-1", IRSA];
        sets.extend(&extra);
        let env = operator_env(&render(&helm, &sets).unwrap());
        // The operator starts with them...
        let (ok, stderr) = run_operator(&env);
        assert!(!ok && stderr.contains(NO_CLUSTER), "{extra:?}: {stderr}");
        // ...and injects a signer with exactly them, each request within its limit.
        let args = webhook_args(&env).unwrap_or_else(|e| panic!("{extra:?}: {e}"));
        args.check_resources().unwrap();
        let settings = args.settings(Some(CredentialMode::Irsa), None, false, Backend::Aws);
        let signer = uploadbucket_tests::injected_signer(&settings);
        let resources = signer.resources.expect("resources");
        let (requests, limits) = (
            resources.requests.unwrap_or_default(),
            resources.limits.unwrap_or_default(),
        );
        for (what, value) in want {
            let (kind, resource) = what.split_once('.').unwrap();
            let map = if kind == "requests" {
                &requests
            } else {
                &limits
            };
            assert_eq!(
                map.get(resource).map(|q| q.0.as_str()),
                value,
                "{extra:?}: {what}"
            );
        }
        for (resource, request) in &requests {
            if let Some(limit) = limits.get(resource) {
                assert!(
                    quantity(&request.0) <= quantity(&limit.0),
                    "{extra:?}: {resource} request {} over its limit {}",
                    request.0,
                    limit.0
                );
            }
        }
    }
}

/// Signer resources the API server would refuse in every injected pod (a limit under its
/// request), or that the signer cannot run in, are refused by the chart before anything is
/// installed, and by the operator at start, naming the value or the flag.
#[test]
fn signer_resources_that_cannot_work_are_refused() {
    let Some(helm) = helm("chart::signer_resources_that_cannot_work_are_refused") else {
        return;
    };
    for (set, needle) in [
        (
            "sidecar.resources.limits.memory=8Mi",
            "sidecar.resources.limits.memory 8Mi is below 32Mi",
        ),
        (
            "sidecar.memoryLimit=8Mi",
            "sidecar.memoryLimit 8Mi is below 32Mi",
        ),
        (
            "sidecar.resources.requests.memory=8Mi",
            "sidecar.resources.requests.memory 8Mi is below 16Mi",
        ),
        (
            "sidecar.resources.requests.memory=128Mi",
            "sidecar.resources.limits.memory 64Mi is below sidecar.resources.requests.memory 128Mi",
        ),
        (
            "sidecar.resources.limits.cpu=5m",
            "sidecar.resources.limits.cpu 5m is below sidecar.resources.requests.cpu 10m",
        ),
        (
            "sidecar.resources.requests.cpu=0.0001",
            "sidecar.resources.requests.cpu 0.0001 is below 1m",
        ),
        // Not quantities: the schema names the value.
        (
            "sidecar.resources.limits.memory=64MB",
            "/sidecar/resources/limits/memory",
        ),
        (
            "sidecar.resources.requests.cpu=1e3",
            "/sidecar/resources/requests/cpu",
        ),
        (
            "sidecar.resources.limits.cpu=-1",
            "/sidecar/resources/limits/cpu",
        ),
    ] {
        let err = render(&helm, &["aws.region=eu-west-1", set]).unwrap_err();
        assert!(err.contains(needle), "{set}: {err}");
    }
    let env = operator_env(&render(&helm, &["aws.region=eu-west-1"]).unwrap());
    let with = |name: &str, value: &str| {
        let mut env = env.clone();
        env.retain(|(k, _)| k != name);
        env.push((name.to_owned(), value.to_owned()));
        env
    };
    let cases = [
        (
            "UPLOADBUCKET_SIDECAR_MEMORY_LIMIT",
            "8Mi",
            "--sidecar-memory-limit",
        ),
        (
            "UPLOADBUCKET_SIDECAR_MEMORY_REQUEST",
            "128Mi",
            "--sidecar-memory-limit 64Mi (UPLOADBUCKET_SIDECAR_MEMORY_LIMIT) is below --sidecar-memory-request 128Mi",
        ),
        (
            "UPLOADBUCKET_SIDECAR_CPU_LIMIT",
            "5m",
            "--sidecar-cpu-limit 5m (UPLOADBUCKET_SIDECAR_CPU_LIMIT) is below --sidecar-cpu-request 10m",
        ),
        (
            "UPLOADBUCKET_SIDECAR_CPU_REQUEST",
            "0",
            "--sidecar-cpu-request",
        ),
    ];
    // The flags' own checks, and the one across them, as the operator makes them...
    for (name, value, needle) in cases {
        let refusal = webhook_args(&with(name, value)).and_then(|args| {
            args.check_resources()
                .map_err(|e| e.to_string())
                .map(|()| "accepted".to_owned())
        });
        assert!(
            refusal.as_ref().is_err_and(|e| e.contains(needle)),
            "{name}={value}: {refusal:?}"
        );
    }
    // ...and the operator binary stopping on them at start, before it looks for a cluster.
    for (name, value, needle) in cases {
        let (ok, stderr) = run_operator(&with(name, value));
        assert!(
            !ok && stderr.contains(needle) && !stderr.contains(NO_CLUSTER),
            "{name}={value}: {stderr}"
        );
    }
}

/// values-ha.yaml renders: two replicas or more under leader election, a
/// PodDisruptionBudget for them, and a soft spread by node and by zone whose selector picks
/// this release's pods.
#[test]
fn values_ha_renders_a_spread_highly_available_operator() {
    let Some(helm) = helm("chart::values_ha_renders_a_spread_highly_available_operator") else {
        return;
    };
    let file = chart().join("values-ha.yaml");
    let docs = render_files(&helm, &[&file], &["aws.region=eu-west-1"]).unwrap();
    let deploy: Deployment = of_kind(&docs, "Deployment").remove(0);
    let spec = deploy.spec.unwrap();
    assert!(spec.replicas.unwrap_or(1) >= 2, "{:?}", spec.replicas);
    assert_eq!(
        spec.strategy.and_then(|s| s.type_).as_deref(),
        Some("RollingUpdate")
    );
    let labels = spec.template.metadata.unwrap().labels.unwrap_or_default();
    let pod = spec.template.spec.unwrap();
    let env = &pod.containers[0].env;
    assert!(
        env.iter()
            .flatten()
            .any(|e| e.name == "UPLOADBUCKET_LEADER_ELECTION" && e.value.as_deref() == Some("true")),
        "{env:?}"
    );
    let pdb = docs
        .iter()
        .find(|d| d["kind"] == "PodDisruptionBudget")
        .expect("a PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"].as_u64(), Some(1));
    let spread = pod
        .topology_spread_constraints
        .expect("topologySpreadConstraints");
    let keys: BTreeSet<&str> = spread.iter().map(|c| c.topology_key.as_str()).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["kubernetes.io/hostname", "topology.kubernetes.io/zone"])
    );
    for c in &spread {
        assert_eq!(c.when_unsatisfiable, "ScheduleAnyway", "a soft spread");
        assert_eq!(c.max_skew, 1);
        let selected = c
            .label_selector
            .as_ref()
            .and_then(|s| s.match_labels.clone())
            .unwrap_or_default();
        assert!(!selected.is_empty());
        for (k, v) in &selected {
            assert_eq!(labels.get(k), Some(v), "the pods lack {k}={v}");
        }
        // Keys taken from each new pod's own labels: the release's, and the rollout's (set
        // by the Deployment, not the chart).
        for key in c.match_label_keys.iter().flatten() {
            assert!(
                labels.contains_key(key) || key == "pod-template-hash",
                "the pods have no label {key}"
            );
        }
    }
    // And without it, nothing is spread.
    let docs = render(&helm, &["aws.region=eu-west-1"]).unwrap();
    assert!(operator_pod(&docs).topology_spread_constraints.is_none());
}

/// With watchNamespace, the operator's writes (ConfigMaps, Events, UploadBucket status and
/// finalizers) are a Role's in that namespace, bound to its service account, and no
/// ClusterRole rule grants them; it keeps cluster-wide reads of UploadBuckets, which the
/// webhook needs for pods in any namespace. Without it, the ClusterRole grants them all.
#[test]
fn watch_namespace_keeps_the_writes_in_that_namespace() {
    let Some(helm) = helm("chart::watch_namespace_keeps_the_writes_in_that_namespace") else {
        return;
    };
    type Rules = Vec<k8s_openapi::api::rbac::v1::PolicyRule>;
    let grants = |rules: &Rules, resource: &str, verb: &str| {
        rules.iter().any(|r| {
            r.resources.iter().flatten().any(|x| x == resource) && r.verbs.iter().any(|v| v == verb)
        })
    };
    let writes = [
        ("configmaps", "create"),
        ("configmaps", "update"),
        ("configmaps", "delete"),
        ("configmaps", "watch"),
        ("events", "create"),
        ("uploadbuckets", "patch"),
        ("uploadbuckets/status", "patch"),
        ("uploadbuckets/finalizers", "update"),
    ];
    let docs = render(&helm, &["aws.region=eu-west-1", "watchNamespace=x"]).unwrap();
    let cluster: ClusterRole = of_kind(&docs, "ClusterRole").remove(0);
    let cluster_rules = cluster.rules.unwrap_or_default();
    for (resource, verb) in writes {
        assert!(
            !grants(&cluster_rules, resource, verb),
            "the ClusterRole grants {verb} {resource}"
        );
    }
    assert!(
        !cluster_rules
            .iter()
            .any(|r| r.resources.iter().flatten().any(|x| x == "configmaps")),
        "{cluster_rules:?}"
    );
    for verb in ["get", "list", "watch"] {
        assert!(grants(&cluster_rules, "uploadbuckets", verb), "{verb}");
    }
    let roles: Vec<Role> = of_kind(&docs, "Role");
    let role = roles
        .iter()
        .find(|r| r.metadata.namespace.as_deref() == Some("x"))
        .expect("a Role in x");
    let role_rules = role.rules.clone().unwrap_or_default();
    for (resource, verb) in writes {
        assert!(
            grants(&role_rules, resource, verb),
            "the Role in x cannot {verb} {resource}"
        );
    }
    let bindings: Vec<RoleBinding> = of_kind(&docs, "RoleBinding");
    let binding = bindings
        .iter()
        .find(|b| b.metadata.namespace.as_deref() == Some("x"))
        .expect("a RoleBinding in x");
    assert_eq!(binding.role_ref.kind, "Role");
    assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
    let sa = docs.iter().find(|d| d["kind"] == "ServiceAccount").unwrap();
    let subject = &binding.subjects.as_ref().unwrap()[0];
    assert_eq!(
        (Some(subject.name.as_str()), subject.namespace.as_deref()),
        (
            sa["metadata"]["name"].as_str(),
            sa["metadata"]["namespace"].as_str()
        )
    );

    let docs = render(&helm, &["aws.region=eu-west-1"]).unwrap();
    let cluster: ClusterRole = of_kind(&docs, "ClusterRole").remove(0);
    let cluster_rules = cluster.rules.unwrap_or_default();
    for (resource, verb) in writes {
        assert!(
            grants(&cluster_rules, resource, verb),
            "without watchNamespace the ClusterRole cannot {verb} {resource}"
        );
    }
    let roles: Vec<Role> = of_kind(&docs, "Role");
    assert!(
        roles.iter().all(|r| r
            .metadata
            .name
            .as_deref()
            .is_some_and(|n| n.ends_with("-leader"))),
        "only the leader Lease's Role"
    );
}

/// The ServiceMonitor and the PodMonitor carry the labels a Prometheus selects them by
/// (kube-prometheus-stack: release), besides the chart's own; the boolean switches stay.
#[test]
fn monitors_carry_the_labels_prometheus_selects() {
    let Some(helm) = helm("chart::monitors_carry_the_labels_prometheus_selects") else {
        return;
    };
    let labels_of = |docs: &[Value], kind: &str| -> Value {
        docs.iter()
            .find(|d| d["kind"].as_str() == Some(kind))
            .unwrap_or_else(|| panic!("no {kind}"))["metadata"]["labels"]
            .clone()
    };
    let mut sets = vec!["aws.region=eu-west-1"];
    sets.extend(OBSERVABILITY);
    let plain = render(&helm, &sets).unwrap();
    sets.extend([
        "metrics.serviceMonitorLabels.release=kube-prometheus-stack",
        "sidecar.podMonitorLabels.release=kube-prometheus-stack",
        "sidecar.podMonitorLabels.team=storage",
    ]);
    let labelled = render(&helm, &sets).unwrap();
    for kind in ["ServiceMonitor", "PodMonitor"] {
        let labels = labels_of(&labelled, kind);
        assert_eq!(
            labels["release"].as_str(),
            Some("kube-prometheus-stack"),
            "{kind}"
        );
        assert_eq!(
            labels["app.kubernetes.io/name"].as_str(),
            Some("uploadbucket-operator"),
            "{kind}"
        );
        assert!(labels_of(&plain, kind)["release"].is_null(), "{kind}");
    }
    assert_eq!(
        labels_of(&labelled, "PodMonitor")["team"].as_str(),
        Some("storage")
    );
    assert!(labels_of(&labelled, "ServiceMonitor")["team"].is_null());
    let err = render(
        &helm,
        &[
            "aws.region=eu-west-1",
            "metrics.serviceMonitorLabels=release",
        ],
    )
    .unwrap_err();
    assert!(err.contains("/metrics/serviceMonitorLabels"), "{err}");
}

/// Every alert links its runbook: docs/operations/alerts.md at the anchor of its name in
/// lowercase (the heading `## <AlertName>`), under metrics.prometheusRule.runbookBaseUrl.
#[test]
fn every_alert_links_its_runbook() {
    let Some(helm) = helm("chart::every_alert_links_its_runbook") else {
        return;
    };
    for (base, extra) in [
        ("https://example.invalid/uploadbucket/blob/main", None),
        (
            "https://git.example.com/platform/uploadbucket/-/blob/v0.1.0",
            Some(
                "metrics.prometheusRule.runbookBaseUrl=https://git.example.com/platform/uploadbucket/-/blob/v0.1.0/",
            ),
        ),
    ] {
        let (rules, _) = observability_with(&helm, &extra.into_iter().collect::<Vec<_>>());
        let alerts: Vec<&serde_json::Value> = rules["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap())
            .filter(|r| r["alert"].is_string())
            .collect();
        assert!(alerts.len() >= 6, "{} alerts", alerts.len());
        for rule in alerts {
            let name = rule["alert"].as_str().unwrap();
            assert_eq!(
                rule["annotations"]["runbook_url"].as_str(),
                Some(format!("{base}/docs/operations/alerts.md#{}", name.to_lowercase()).as_str()),
                "{name}"
            );
        }
    }
    let err = render(
        &helm,
        &[
            "aws.region=eu-west-1",
            "metrics.prometheusRule.runbookBaseUrl=example.com/runbooks",
        ],
    )
    .unwrap_err();
    assert!(
        err.contains("/metrics/prometheusRule/runbookBaseUrl"),
        "{err}"
    );
}
