//! Attack sweeps on the CPU backend: `attack.*` parameters, the attack columns of `runs`
//! against the attack-free twins, and their validation.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use arrow::array::{Array, BooleanArray, Float64Array, StringArray};
use arrow::compute::concat_batches;
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use p2pmarket::Error;
use p2pmarket::attack::{AttackVariable, Defence, HourAttacks};
use p2pmarket::engine::BackendChoice;
use p2pmarket::market::Market;
use p2pmarket::output::integers::{Unsigned, unsigned_column};
use p2pmarket::rci;
use p2pmarket::sweep::{
    SweepOptions, SweepReport, SweepSpec, attack_runs_schema, run_sweep, runs_schema,
};

/// 7 variables x 2 sizes x 2 defences = 28 runs, 10 per part; the load scale is a grid of
/// one, so every run shares one attack-free twin.
const SMALL: &str = r#"
seed = 5
runs_per_part = 10

[base.rci]
start_price = "own_marginal"

[parameters]
attack.variable = { values = ["chi", "price", "power", "dual_upper", "dual_lower", "slope", "gap"] }
attack.agent = { values = [1] }
attack.hour = { values = [10] }
attack.first_iteration = { values = [1] }
attack.size = { values = [0.05, 3.0] }
attack.defence = { values = ["undefended", "defended"] }
"#;

fn spec(text: &str) -> SweepSpec {
    SweepSpec::from_toml(text, Path::new("tests/attack_sweep.toml")).expect("valid sweep")
}

fn cpu() -> SweepOptions {
    SweepOptions {
        backend: BackendChoice::Cpu,
        ..SweepOptions::default()
    }
}

fn sweep(spec: &SweepSpec, out: &Path) -> SweepReport {
    run_sweep(spec, out, &cpu(), &mut |_| {}).expect("sweep runs")
}

fn runs_table(out: &Path) -> RecordBatch {
    let dir = out.join("runs/pcc_bus=7");
    let mut parts: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    parts.sort();
    let batches: Vec<RecordBatch> = parts
        .iter()
        .flat_map(|p| {
            ParquetRecordBatchReaderBuilder::try_new(File::open(p).unwrap())
                .unwrap()
                .build()
                .unwrap()
                .map(|b| b.unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    concat_batches(&batches[0].schema(), &batches).unwrap()
}

/// A count or index column, read as the library reads it back (signed in the file).
fn counts<T: Unsigned>(t: &RecordBatch, name: &str) -> Vec<T> {
    unsigned_column(t, name).unwrap_or_else(|e| panic!("{e}"))
}

fn col<'a, T: Array + 'static>(t: &'a RecordBatch, name: &str) -> &'a T {
    t.column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| panic!("column {name} of another type"))
}

#[test]
fn attack_columns_against_the_attack_free_twin() {
    let tmp = tempfile::tempdir().unwrap();
    let s = spec(SMALL);
    let report = sweep(&s, tmp.path());
    assert_eq!(report.runs, 28);
    assert_eq!(report.twins_computed, 1, "one twin for 28 runs");
    let t = runs_table(tmp.path());
    assert_eq!(t.num_rows(), 28);
    assert_eq!(t.schema().fields(), attack_runs_schema().fields());

    // The twin, computed independently: the attacked hour of the base market.
    let market = Market::from_scenario(&s.base).unwrap();
    let curves = market.curves(10).unwrap();
    let agents = market.rci_agents(&curves);
    let free = rci::negotiate(&agents, &s.base.rci, false);

    let variable = col::<StringArray>(&t, "attack_variable");
    let defence = col::<StringArray>(&t, "attack_defence");
    let size = col::<Float64Array>(&t, "attack_size");
    let tampered = counts::<u32>(&t, "attack_tampered");
    let rejected = counts::<u32>(&t, "attack_rejected");
    let iterations = counts::<u32>(&t, "attack_iterations");
    let converged = col::<BooleanArray>(&t, "attack_converged");
    let free_iterations = counts::<u32>(&t, "free_iterations");
    let deviation = col::<Float64Array>(&t, "deviation");
    let deviation_rel = col::<Float64Array>(&t, "deviation_rel");
    let bias = col::<Float64Array>(&t, "price_bias");
    let money = col::<Float64Array>(&t, "money_moved");
    let run = counts::<u64>(&t, "run");
    let mut undefended_moved = 0;
    for k in 0..t.num_rows() {
        let label = format!(
            "run {} {} {} {}",
            run[k],
            variable.value(k),
            size.value(k),
            defence.value(k)
        );
        assert_eq!(free_iterations[k], free.iterations, "{label}");
        // What rci gives for this attack (the run's slot, rebuilt from the plan).
        let planned = s.plan().unwrap().run(run[k]);
        let spec = planned.run_spec();
        let attacks = HourAttacks {
            slots: &spec.attacks,
            hour: 10,
            defence: spec.defence,
        };
        let direct = rci::negotiate_attacked(&agents, &s.base.rci, &attacks, false);
        assert_eq!(tampered[k], direct.tampered, "{label}");
        assert_eq!(iterations[k], direct.iterations, "{label}");
        assert_eq!(converged.value(k), direct.converged, "{label}");
        assert!(tampered[k] > 0, "{label}: nothing altered");
        match defence.value(k) {
            "defended" => {
                assert_eq!(spec.defence, Defence::Defended);
                assert_eq!(rejected[k], tampered[k], "{label}");
                assert_eq!(deviation.value(k), 0.0, "{label}");
                assert_eq!(deviation_rel.value(k), 0.0, "{label}");
                assert_eq!(bias.value(k), 0.0, "{label}");
                assert_eq!(money.value(k), 0.0, "{label}");
                assert_eq!(iterations[k], free.iterations, "{label}");
            }
            "undefended" => {
                assert_eq!(rejected[k], 0, "{label}");
                let d = direct.price() - free.price();
                if direct.price().is_finite() {
                    assert_eq!(bias.value(k), d, "{label}");
                    let dp = direct
                        .agents
                        .iter()
                        .zip(&free.agents)
                        .map(|(a, b)| (a.power - b.power).abs())
                        .fold(d.abs(), f64::max);
                    assert_eq!(deviation.value(k), dp, "{label}");
                } else {
                    assert_eq!(deviation.value(k), f64::INFINITY, "{label}");
                }
                assert!(deviation_rel.value(k) <= deviation.value(k), "{label}");
                if deviation.value(k) > 0.0 {
                    undefended_moved += 1;
                }
            }
            other => panic!("{label}: defence {other}"),
        }
    }
    // Undefended attacks of 3 units move the outcome (not every variable need).
    assert!(undefended_moved >= 3, "{undefended_moved}");
    // The price attack's variable name is the TOML spelling.
    assert!((0..t.num_rows()).any(|k| variable.value(k) == AttackVariable::DualUpper.name()));
}

#[test]
fn seeded_shapes_are_reproducible_and_differ_between_runs() {
    let text = r#"
seed = 9
runs_per_part = 3
samples = 4

[parameters]
attack.variable = { values = ["price"] }
attack.agent = { values = [0] }
attack.hour = { uniform = [2, 20] }
attack.size = { uniform = [-5.0, 5.0] }
attack.shape = { values = ["sign"] }
"#;
    let s = spec(text);
    let plan = s.plan().unwrap();
    let keys: Vec<u32> = (0..4)
        .map(|i| plan.run(i).run_spec().attacks[0].key)
        .collect();
    assert!(keys.windows(2).all(|w| w[0] != w[1]), "{keys:?}");
    let hours: Vec<u32> = (0..4)
        .map(|i| plan.run(i).run_spec().attacks[0].hours)
        .collect();
    assert!(hours.iter().all(|h| h.count_ones() == 1));
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let r = sweep(&s, a.path());
    sweep(&s, b.path());
    assert_eq!(r.twins_computed, 1);
    for part in ["part-00000.parquet", "part-00001.parquet"] {
        let rel = format!("runs/pcc_bus=7/{part}");
        assert_eq!(
            std::fs::read(a.path().join(&rel)).unwrap(),
            std::fs::read(b.path().join(&rel)).unwrap()
        );
    }
}

#[test]
fn a_sweep_without_attacks_keeps_its_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let s = spec("seed = 1\n[parameters]\nrci.chi = { values = [0.4, 0.5] }");
    let r = sweep(&s, tmp.path());
    assert_eq!(r.twins_computed, 0);
    let t = runs_table(tmp.path());
    assert_eq!(t.schema().fields(), runs_schema().fields());
    let json = std::fs::read_to_string(tmp.path().join("sweep.json")).unwrap();
    assert!(!json.contains("attack"), "{json}");
}

#[test]
fn every_attack_field_is_validated_by_name() {
    let base = "seed = 1\n[parameters]\n";
    let full = "attack.variable = { values = [\"price\"] }\nattack.agent = { values = [1] }\n\
                attack.hour = { values = [3] }\nattack.size = { values = [1.0] }\n";
    let cases = [
        (
            "attack.agent = { values = [1] }\nattack.hour = { values = [3] }\nattack.size = { values = [1.0] }",
            "parameters.attack.variable",
        ),
        (
            "attack.variable = { values = [\"price\"] }\nattack.hour = { values = [3] }\nattack.size = { values = [1.0] }",
            "parameters.attack.agent",
        ),
        (
            "attack.variable = { values = [\"price\"] }\nattack.agent = { values = [1] }\nattack.size = { values = [1.0] }",
            "parameters.attack.hour",
        ),
        (
            "attack.variable = { values = [\"price\"] }\nattack.agent = { values = [1] }\nattack.hour = { values = [3] }",
            "parameters.attack.size",
        ),
        (
            &format!("{full}attack.first_iteration = {{ values = [10000001] }}"),
            "parameters.attack.first_iteration.values[0]",
        ),
        (
            &format!("{full}attack.duration = {{ uniform = [0, 20000000] }}"),
            "parameters.attack.duration.uniform[1]",
        ),
        (
            &full.replace("agent = { values = [1] }", "agent = { values = [2] }"),
            "parameters.attack.agent.values[0]",
        ),
        (
            &full.replace("hour = { values = [3] }", "hour = { values = [3, 24] }"),
            "parameters.attack.hour.values[1]",
        ),
        (
            &full.replace(
                "size = { values = [1.0] }",
                "size = { uniform = [0.0, 2e9] }",
            ),
            "parameters.attack.size.uniform[1]",
        ),
        (
            &full.replace("size = { values = [1.0] }", "size = { values = [nan] }"),
            "parameters.attack.size.values[0]",
        ),
        (
            &full.replace("\"price\"", "\"price\", \"price\""),
            "parameters.attack.variable.values",
        ),
        (
            &format!("{full}attack.defence = {{ values = [] }}"),
            "parameters.attack.defence.values",
        ),
    ];
    for (body, field) in cases {
        let text = format!("{base}{body}");
        match SweepSpec::from_toml(&text, Path::new("t.toml")) {
            Err(Error::InvalidInput { field: f, .. }) => assert_eq!(f, field, "{text}"),
            other => panic!("{text}: {other:?}"),
        }
    }
    // Unknown names are refused by the parser, naming them.
    for (body, needle) in [
        ("attack.varaible = { values = [\"price\"] }", "varaible"),
        ("attack.variable = { values = [\"voltage\"] }", "voltage"),
        ("attack.shape = { values = [\"square\"] }", "square"),
        ("attack.defence = { values = [\"shield\"] }", "shield"),
        ("attack.shape = { uniform = [0, 1] }", "uniform"),
    ] {
        let text = format!("{base}{body}");
        let e = SweepSpec::from_toml(&text, Path::new("t.toml")).expect_err(&text);
        assert!(e.to_string().contains(needle), "{text}: {e}");
    }
    // The CLI: exit 2, nothing written.
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("bad.toml");
    std::fs::write(
        &cfg,
        format!(
            "{base}{}",
            full.replace("hour = { values = [3] }", "hour = { values = [30] }")
        ),
    )
    .unwrap();
    let out = tmp.path().join("out");
    let r = Command::new(env!("CARGO_BIN_EXE_p2pmarket"))
        .args(["sweep", "--backend", "cpu", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        r.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(String::from_utf8_lossy(&r.stderr).contains("parameters.attack.hour.values[0]"));
    assert!(!out.exists());
}

/// The ledger oracle of an attack sweep: a seeded sample of defended runs replayed
/// through the real ledger agrees with the published outcomes, and a corrupted outcome is
/// reported as a disagreement naming its run.
mod oracle {
    use super::*;
    use p2pmarket::sweep::oracle::{self, Modelled};

    const SAMPLED: &str = r#"
seed = 17
runs_per_part = 8
ledger_sample = 6

[base.rci]
start_price = "own_marginal"

[parameters]
attack.variable = { values = ["chi", "price", "power", "slope"] }
attack.agent = { values = [0, 1] }
attack.hour = { values = [4, 18] }
attack.size = { uniform = [-2.0, 2.0] }
attack.defence = { values = ["undefended", "defended"] }
"#;

    #[test]
    fn a_sampled_sweep_agrees_with_its_ledger_replay() {
        let tmp = tempfile::tempdir().unwrap();
        let s = spec(SAMPLED);
        let report = sweep(&s, tmp.path());
        let o = report.oracle.expect("an attack sweep runs its oracle");
        assert_eq!(o.sample.len(), 6);
        assert!(o.sample.windows(2).all(|w| w[0] < w[1]));
        let plan = s.plan().unwrap();
        for &r in &o.sample {
            let a = plan.run(r).values.attack.unwrap().0;
            assert_eq!(a.defence, Defence::Defended, "run {r}");
        }
        assert_eq!(o.agreements, 6);
        assert!(o.disagreements.is_empty() && o.false_alarms.is_empty());
        assert!(o.forged_submitted > 0);
        assert_eq!(o.forged_rejected, o.forged_submitted);
        // Two attacked hours: two twins.
        assert!(o.twins_replayed >= 1 && o.twins_replayed <= 2, "{o:?}");
        // The manifest reports the same.
        let m: p2pmarket::sweep::Manifest =
            serde_json::from_slice(&std::fs::read(tmp.path().join("manifest.json")).unwrap())
                .unwrap();
        assert_eq!(m.ledger_oracle.as_ref(), Some(&o));
        // The sample depends on the seed only, and takes every defended run when asked
        // for more than there are.
        assert_eq!(oracle::sample_runs(&plan, 6, 17), o.sample);
        assert_ne!(oracle::sample_runs(&plan, 6, 18), o.sample);
        let defended = (0..plan.total_runs())
            .filter(|&i| plan.run(i).values.attack.unwrap().0.defence == Defence::Defended)
            .count();
        assert_eq!(oracle::sample_runs(&plan, 10_000, 17).len(), defended);
    }

    #[test]
    fn a_corrupted_modelled_outcome_is_a_disagreement() {
        let tmp = tempfile::tempdir().unwrap();
        let s = spec(SAMPLED);
        sweep(&s, tmp.path());
        let plan = s.plan().unwrap();
        let sample = oracle::sample_runs(&plan, 3, 17);
        let modelled = oracle::read_modelled(&plan.parts(), tmp.path(), &sample).unwrap();
        let clean = oracle::check(&plan, &modelled).unwrap();
        assert_eq!(clean.agreements, 3, "{clean:?}");
        type Corrupt = fn(&mut Modelled);
        let cases: [(&str, Corrupt); 7] = [
            ("price", |m| m.price = f64::from_bits(m.price.to_bits() + 1)),
            ("exchange_mw", |m| m.exchange_mw = -m.exchange_mw - 1.0),
            ("attack_iterations", |m| m.iterations += 1),
            ("attack_rejected", |m| m.rejected -= 1),
            ("attack_tampered", |m| m.tampered += 1),
            ("attack_converged", |m| m.converged = !m.converged),
            ("free_iterations", |m| m.free_iterations += 2),
        ];
        for (field, corrupt) in cases {
            let mut bad = modelled.clone();
            corrupt(&mut bad[1]);
            let r = oracle::check(&plan, &bad).unwrap();
            assert_eq!(r.agreements, 2, "{field}");
            assert_eq!(r.disagreements.len(), 1, "{field}");
            assert_eq!(r.disagreements[0].run, sample[1], "{field}");
            assert!(r.disagreements[0].what.contains(field), "{field}: {r:?}");
        }
        // An f32 engine is held to its rule: rounding passes, a real difference does not,
        // and its iteration counts are not compared.
        let mut f32_close = modelled.clone();
        for m in &mut f32_close {
            m.engine = "gpu-f32".into();
            m.price *= 1.0 + 1e-6;
            m.iterations += 1;
        }
        assert_eq!(oracle::check(&plan, &f32_close).unwrap().agreements, 3);
        // The exchange is held to 5 x the run's power tolerance (1e-6 MW here), not to a
        // relative bound: a small exchange 4e-6 MW off passes, 6e-6 MW off does not.
        let power_tol = p2pmarket::rci::RciSettings::default().power_tol;
        f32_close[2].exchange_mw += 4.0 * power_tol;
        assert_eq!(oracle::check(&plan, &f32_close).unwrap().agreements, 3);
        f32_close[2].exchange_mw += 2.0 * power_tol;
        let r = oracle::check(&plan, &f32_close).unwrap();
        assert_eq!(r.disagreements.len(), 1, "{r:?}");
        assert!(r.disagreements[0].what.contains("exchange_mw"), "{r:?}");
        f32_close[2].exchange_mw -= 6.0 * power_tol;
        f32_close[0].price += 1.0;
        let r = oracle::check(&plan, &f32_close).unwrap();
        assert_eq!(r.disagreements.len(), 1);
        assert!(r.disagreements[0].what.contains("f32"), "{r:?}");
    }

    #[test]
    fn ledger_sample_is_validated() {
        for (text, field) in [
            ("seed = 1\nledger_sample = 5", "ledger_sample"),
            (
                "seed = 1\nledger_sample = 2000000\n[parameters]\nattack.variable = { values = [\"price\"] }\n\
                 attack.agent = { values = [1] }\nattack.hour = { values = [3] }\nattack.size = { values = [1.0] }",
                "ledger_sample",
            ),
        ] {
            match SweepSpec::from_toml(text, Path::new("t.toml")) {
                Err(Error::InvalidInput { field: f, .. }) => assert_eq!(f, field, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}

/// The heat maps of an attack sweep, read back from its files.
#[test]
fn attack_figures_from_a_finished_sweep() {
    use p2pmarket::output::MemorySink;
    use p2pmarket::output::attack_figures::{read_attack_rows, write_attack_figures};
    let tmp = tempfile::tempdir().unwrap();
    let s = spec(SMALL);
    sweep(&s, tmp.path());
    let rows = read_attack_rows(tmp.path()).unwrap();
    assert_eq!(rows.len(), 28);
    let mut sink = MemorySink::new();
    let names = write_attack_figures(&mut sink, &rows, &Default::default()).unwrap();
    assert_eq!(names.len(), 3 * 4 * 2, "{names:?}");
    // Defended: every run converges, so each cell of the map reads 1.00.
    let svg = std::str::from_utf8(&sink.files["attack_converged_defended.svg"]).unwrap();
    assert!(svg.contains("1.00") && !svg.contains(">0<"), "defended map");
    for v in ["chi", "price", "dual_lower", "gap"] {
        assert!(svg.contains(v), "panel {v}");
    }
    // A sweep without attacks is refused, naming what is missing.
    let plain = tempfile::tempdir().unwrap();
    sweep(
        &spec("seed = 1\n[parameters]\nrci.chi = { values = [0.4] }"),
        plain.path(),
    );
    let e = read_attack_rows(plain.path()).unwrap_err().to_string();
    assert!(e.contains("attack_variable"), "{e}");
    assert!(read_attack_rows(&tmp.path().join("nothing")).is_err());
}
