//! Events stay bounded, as in Kubernetes: a crash-looping container's BackOff, reported
//! at every restart, is one Event whose `count` grows; Events expire after the control
//! plane's `--event-ttl`; `describe` shows the object's aggregated events; the events
//! list takes kubectl's field selectors and refuses unknown ones.
//!
//! Time is shortened rather than paused: the agents' restart back-off starts at 200 ms
//! (the harness' `--restart-backoff-base`, kubelet's is 10 s; its max is 5 s), so the six restarts Kubernetes
//! makes in ten minutes (10 s doubling to 160 s) take about 13 s here.

use serde_json::Value;
use twinset_e2e::json::str_at;
use twinset_e2e::{timeout, wait_for, Cluster, Options};

/// The TTL given to the control plane: longer than the gaps between the first six
/// back-offs (at most 3.2 s here), short enough to watch the Event expire.
const TTL_SECS: u64 = 8;

const CRASHER: &str = "apiVersion: v1
kind: Pod
metadata:
  name: crasher
  namespace: default
spec:
  restartPolicy: Always
  containers:
  - name: crash
    image: busybox
    args: [\"-c\", \"exit 3\"]
";

/// The events about pod `crasher`, through the field selector `describe` uses.
fn crasher_events(c: &Cluster) -> Result<Vec<Value>, String> {
    let list = c.get_json(&[
        "events",
        "-n",
        "default",
        "--field-selector",
        "involvedObject.kind=Pod,involvedObject.name=crasher",
    ])?;
    Ok(list
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

fn count(ev: &Value) -> i64 {
    ev.get("count").and_then(Value::as_i64).unwrap_or(0)
}

#[test]
fn a_crash_loop_is_one_counted_backoff_event_that_expires_after_the_ttl() {
    let c = Cluster::start_with(
        1,
        Options {
            control_plane_flags: vec!["--event-ttl".into(), format!("{TTL_SECS}s")],
            ..Options::default()
        },
    );
    assert_eq!(c.apply(CRASHER).ok().trim(), "pod/crasher created");

    // Six back-offs: one aggregated Event, never one object per restart.
    let backoff = wait_for("pod crasher's BackOff event to count 6", timeout(), || {
        let events = crasher_events(&c)?;
        let backoffs: Vec<&Value> = events
            .iter()
            .filter(|e| str_at(e, "/reason") == "BackOff")
            .collect();
        assert!(
            backoffs.len() <= 1,
            "one Event per restart instead of one aggregated Event: {backoffs:#?}"
        );
        match backoffs.first() {
            Some(e) if count(e) >= 6 => Ok((*e).clone()),
            Some(e) => Err(format!("count {}", count(e))),
            None => Err(format!("no BackOff event yet: {events:#?}")),
        }
    });
    assert_eq!(str_at(&backoff, "/type"), "Warning", "{backoff:#}");
    assert_eq!(str_at(&backoff, "/involvedObject/kind"), "Pod");
    assert!(
        str_at(&backoff, "/message").starts_with("Back-off restarting failed container crash"),
        "{backoff:#}"
    );
    let first = str_at(&backoff, "/firstTimestamp");
    let last = str_at(&backoff, "/lastTimestamp");
    assert!(
        !first.is_empty() && first < last,
        "firstTimestamp {first:?} and lastTimestamp {last:?} should span the restarts"
    );

    // describe shows it once, with kubectl's "(xN over ...)".
    let described = c.run_ok(&["describe", "pod", "crasher"]);
    let lines: Vec<&str> = described
        .lines()
        .filter(|l| l.split_whitespace().take(2).eq(["Warning", "BackOff"]))
        .collect();
    assert_eq!(lines.len(), 1, "{described}");
    assert!(lines[0].contains(" (x"), "{described}");

    // Unknown field selectors are refused as Kubernetes refuses them.
    let refused = c.run(&["get", "events", "--field-selector", "spec.nodeName=node1"]);
    assert!(
        refused
            .failed()
            .contains("field label not supported: spec.nodeName"),
        "{refused}"
    );

    // Once nothing reports it again, the Event is gone after the TTL (plus one sweep of
    // at most a second; timestamps have whole seconds).
    c.run_ok(&["delete", "pod", "crasher"]);
    wait_for("pod crasher to be gone", timeout(), || {
        match c.get_json(&["pod", "crasher"]) {
            Ok(p) => Err(format!("still there: {}", str_at(&p, "/status/phase"))),
            Err(_) => Ok(()),
        }
    });
    wait_for(
        &format!("pod crasher's events to expire after {TTL_SECS}s"),
        timeout(),
        || {
            let left = crasher_events(&c)?;
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{} left", left.len()))
            }
        },
    );
    let all = c
        .get_json(&["events", "-A"])
        .unwrap_or_else(|e| panic!("{e}"));
    let items = all.get("items").and_then(Value::as_array).cloned();
    assert!(
        items.unwrap_or_default().iter().all(|e| {
            let seen = str_at(e, "/lastTimestamp");
            twinset_proto::time::parse(seen).is_some_and(|t| {
                std::time::SystemTime::now()
                    .duration_since(t)
                    .map_or(true, |age| age.as_secs() <= TTL_SECS + 3)
            })
        }),
        "an event older than the TTL is still stored"
    );
}
