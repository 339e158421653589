//! `summary.json`: the headline figures of a day with the scenario that produced them.

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::market::{AGENT_NAMES, DayResult};
use crate::scenario::Scenario;

/// Wraps a JSON error as an [`Error::Output`] for `summary.json`.
fn json_err(e: serde_json::Error) -> Error {
    Error::Output {
        context: "summary.json".into(),
        message: e.to_string(),
    }
}

/// Pretty JSON of the day's [`Summary`](crate::market::Summary) fields at top level, plus
/// `hours` (the number of hours, 24), `agents`, the full `scenario`, and the keys of `extra` (an object or null;
/// the CLI passes version and backend information). A key of `extra` that clashes with
/// one of these is an error rather than silently dropped or overwritten. Non-finite
/// figures (e.g. a cost gap over a zero reference cost) are written as `null`.
pub fn summary_json(day: &DayResult, scenario: &Scenario, extra: Value) -> Result<Vec<u8>> {
    let mut map = match serde_json::to_value(&day.summary).map_err(json_err)? {
        Value::Object(m) => m,
        other => {
            return Err(Error::Output {
                context: "summary.json".into(),
                message: format!("the summary serialized to {other}, not an object"),
            });
        }
    };
    // The day's hour count (24 for every real run).
    map.insert("hours".into(), Value::from(day.hours.len()));
    map.insert("agents".into(), Value::from(AGENT_NAMES.to_vec()));
    map.insert(
        "scenario".into(),
        serde_json::to_value(scenario).map_err(json_err)?,
    );
    let extra: Map<String, Value> = match extra {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        other => {
            return Err(Error::Output {
                context: "summary.json".into(),
                message: format!("extra information must be a JSON object, got {other}"),
            });
        }
    };
    for (key, value) in extra {
        if map.contains_key(&key) {
            return Err(Error::Output {
                context: "summary.json".into(),
                message: format!("extra key `{key}` clashes with a summary key"),
            });
        }
        map.insert(key, value);
    }
    let mut bytes = serde_json::to_vec_pretty(&Value::Object(map)).map_err(json_err)?;
    bytes.push(b'\n');
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::test_support::day;

    const SUMMARY_KEYS: [&str; 11] = [
        "converged_hours",
        "iterations_max",
        "iterations_mean",
        "p2p_total_cost",
        "central_hourly_total_cost",
        "central_24h_total_cost",
        "max_power_deviation_pct",
        "cost_gap_pct",
        "max_price_deviation",
        "co_optimization_advantage_pct",
        "runtime_s",
    ];

    fn parse(bytes: &[u8]) -> Map<String, Value> {
        match serde_json::from_slice(bytes).unwrap() {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn contains_every_summary_key_and_context() {
        let d = day(true);
        let scenario = Scenario::default();
        let extra = serde_json::json!({"version": "0.1.0", "backend": "cpu"});
        let m = parse(&summary_json(&d, &scenario, extra).unwrap());
        for key in SUMMARY_KEYS {
            assert!(m.contains_key(key), "missing {key}");
        }
        assert_eq!(m["converged_hours"], 2);
        assert_eq!(m["iterations_max"], 7);
        assert_eq!(m["runtime_s"], 0.25);
        assert_eq!(m["hours"], 3);
        assert_eq!(m["agents"], serde_json::json!(["smart_grid", "microgrid"]));
        assert_eq!(m["scenario"], serde_json::to_value(&scenario).unwrap());
        assert_eq!(m["version"], "0.1.0");
        assert_eq!(m["backend"], "cpu");
        assert_eq!(m.len(), SUMMARY_KEYS.len() + 5);
    }

    #[test]
    fn null_extra_is_empty_and_bad_extra_is_an_error() {
        let d = day(false);
        let s = Scenario::default();
        let m = parse(&summary_json(&d, &s, Value::Null).unwrap());
        assert_eq!(m.len(), SUMMARY_KEYS.len() + 3);
        assert!(summary_json(&d, &s, serde_json::json!([1])).is_err());
        assert!(summary_json(&d, &s, serde_json::json!({"hours": 1})).is_err());
        assert!(summary_json(&d, &s, serde_json::json!({"runtime_s": 1})).is_err());
    }
}
