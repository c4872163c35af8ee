//! The custom-metrics example against the embedded demo target: every kind in the
//! export, thresholds on each kind deciding the exit code.

mod common;

fn run(name: &str, thresholds: &[&str]) -> (Option<i32>, serde_json::Value) {
    common::run_example(env!("CARGO_BIN_EXE_custom_metrics"), name, thresholds)
}

fn whole<'a>(json: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    json["metrics"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == name && m["tags"].is_null()))
        .unwrap_or_else(|| panic!("no {name}: {json}"))
}

#[test]
fn every_kind_is_exported_and_judged() {
    let (code, json) = run(
        "pass",
        &[
            "pages{page:home} count>10",
            "body_bytes value>0",
            "fast rate>0.5",
            "handshake_ms max>0",
        ],
    );
    assert_eq!(code, Some(0), "{json}");
    let requests = json["totals"]["requests"].as_u64().unwrap();
    assert_eq!(whole(&json, "pages")["values"]["count"], requests as f64);
    assert_eq!(whole(&json, "body_bytes")["kind"], "gauge");
    assert_eq!(whole(&json, "fast")["kind"], "rate");
    let handshake = whole(&json, "handshake_ms");
    assert_eq!(handshake["time"], true);
    // Two users open a connection each; every other request reuses one.
    assert_eq!(handshake["values"]["med"], 0.0, "{handshake}");
    for (threshold, kind) in [
        ("pages count<1", "counter"),
        ("body_bytes value<1", "gauge"),
        ("fast rate<0.5", "rate"),
        ("handshake_ms max==0", "trend"),
    ] {
        let (code, json) = run("fail", &[threshold]);
        assert_eq!(code, Some(99), "a failing {kind} threshold: {json}");
    }
}
