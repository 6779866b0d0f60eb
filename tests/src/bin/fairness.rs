//! The fairness benchmark (tests/scale.sh, `SCALE_ONLY=fairness`): namespace A holds
//! `FAIRNESS_FAILING` (500) failing objects, a third each hanging at the store, denied, and
//! taken by another account; namespace B creates `FAIRNESS_TRIES` (20) objects one after the
//! other under the operator's defaults. Target: B's p99 (with 20 tries, the slowest) within
//! 10 s of creation; A's request rate is reported. Needs the servers the suite uses
//! (`UPLOADBUCKET_TEST_*`, `UPLOADBUCKET_REQUIRE_SERVERS=1`) and the debug operator binary.
//! Exits 1 when the target is missed. The suite runs a small version
//! (`fleet_fairness::a_namespace_whose_calls_hang_does_not_stall_another`).

use std::time::Duration;

use uploadbucket_tests::fleet::fairness;

#[tokio::main]
async fn main() {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (n, tries) = (env("FAIRNESS_FAILING", 500), env("FAIRNESS_TRIES", 20));
    let third = n / 3;
    let seen = fairness(
        "fairness benchmark",
        "ub-fairb",
        &[("hang", n - 2 * third), ("deny", third), ("taken", third)],
        tries,
        &[],
    )
    .await
    .expect("the servers (UPLOADBUCKET_TEST_*) to run against");
    let mut w = seen.waits.clone();
    w.sort();
    let p = |q: f64| w[((w.len() as f64 * q).ceil() as usize).clamp(1, w.len()) - 1];
    println!(
        "fairness: {n} failing objects in A, {tries} new objects in B: Ready after p50 {:.2} s, p99 {:.2} s, max {:.2} s; A's requests while failing {:.1}/s",
        p(0.5).as_secs_f64(),
        p(0.99).as_secs_f64(),
        w[w.len() - 1].as_secs_f64(),
        seen.a_rate
    );
    if p(0.99) > Duration::from_secs(10) {
        eprintln!("fairness: p99 {:?} over the 10 s target: {w:?}", p(0.99));
        std::process::exit(1);
    }
}
