//! The scenario: one settings struct that can override every default, read from TOML and
//! validated in one place. Every error names the field, the value and the allowed range.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::attack::{Attack, Defence};
use crate::data::matpower::{self, Case};
use crate::data::rts79::{self, Season, Weekday};
use crate::error::{Bounds, Error, Result};
use crate::microgrid::{HOURS, Microgrid};
use crate::rci::RciSettings;
use crate::timeseries::TimeSeriesSettings;
use crate::uncertainty::UncertaintyConfig;

/// The smart-grid data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GridSettings {
    /// MATPOWER case file; absent: the embedded IEEE RTS-24 (`case24_ieee_rts.m`).
    pub case_file: Option<PathBuf>,
    /// Quadratic cost given to units whose gencost has c2 = 0, $/MW^2h, [1e-7, 10] (erratum
    /// 2: a small proximal term; the centralized references use the same costs).
    pub linear_cost_c2: f64,
}

impl Default for GridSettings {
    fn default() -> Self {
        GridSettings {
            case_file: None,
            linear_cost_c2: 0.01,
        }
    }
}

/// The smart grid's 24-h system load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoadSettings {
    /// RTS-79 week, 1..=52 (default 51: the annual peak week); checked even when
    /// `hourly_mw` replaces the profile.
    pub week: usize,
    /// RTS-79 day of the week (default Tuesday: the annual peak day).
    pub day: Weekday,
    /// Season whose hourly shape is used; absent: the season of `week`.
    pub season: Option<Season>,
    /// Multiplier applied to every hour's load, dimensionless, (0, 10].
    pub scale: f64,
    /// 24 explicit system loads, MW, each 0..=1e6; when given they replace the RTS-79
    /// profile (and are multiplied by `scale`).
    pub hourly_mw: Option<Vec<f64>>,
}

impl Default for LoadSettings {
    fn default() -> Self {
        LoadSettings {
            week: rts79::PEAK_WEEK,
            day: rts79::PEAK_DAY,
            season: None,
            scale: 1.0,
            hourly_mw: None,
        }
    }
}

/// What a run keeps beyond the hourly results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputSettings {
    /// Keep per-iteration trajectories of every hour (Parquet + convergence plots).
    pub keep_trajectories: bool,
    /// Write the figures (PNG, SVG and PDF).
    pub plots: bool,
}

impl Default for OutputSettings {
    fn default() -> Self {
        OutputSettings {
            keep_trajectories: true,
            plots: true,
        }
    }
}

/// A complete scenario. `Scenario::default()` is the embedded default job.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Smart-grid data.
    pub grid: GridSettings,
    /// System load profile.
    pub load: LoadSettings,
    /// The microgrid.
    pub microgrid: Microgrid,
    /// RCI negotiation settings.
    pub rci: RciSettings,
    /// Output options.
    pub output: OutputSettings,
    /// The uncertainty model of `p2pmarket uncertainty` (issue 7); other commands ignore
    /// it.
    pub uncertainty: UncertaintyConfig,
    /// Whether the ledger defends the market's messages against the attacks
    /// ([`crate::attack`]): `"undefended"` (default) or `"defended"`. Not written when
    /// default, so a scenario without attacks serializes as before.
    #[serde(skip_serializing_if = "Defence::is_undefended")]
    pub defence: Defence,
    /// False-data-injection attacks on the negotiation, `[[attack]]` tables (at most
    /// [`crate::attack::MAX_ATTACKS`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attack: Vec<Attack>,
    /// Hourly weather and loads from a CSV or Parquet file ([`crate::timeseries`]),
    /// applied when the scenario is read; the effective scenario holds the values instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeseries: Option<TimeSeriesSettings>,
}

impl Scenario {
    /// Reads a scenario from a TOML file (unknown fields are errors); a relative
    /// `grid.case_file` is taken relative to the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        Self::from_toml(&crate::input::read_text(path, "scenario")?, path)
    }

    /// Parses a scenario from TOML text read from `path`, which labels errors (they quote
    /// at most a short excerpt of the text) and anchors a relative `grid.case_file`.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self> {
        let mut scenario: Scenario =
            toml::from_str(text).map_err(|e| Error::toml("scenario", path, text, &e))?;
        scenario.anchor_case_file(path);
        let raw: toml::Table =
            toml::from_str(text).map_err(|e| Error::toml("scenario", path, text, &e))?;
        scenario.complete_from(&raw, path)?;
        Ok(scenario)
    }

    /// Completes a scenario parsed from the TOML table `raw` of the file `path` (a scenario
    /// file, or a sweep's inline `[base]`): the season's default weather for every series
    /// `raw` does not give, then the `[timeseries]` file (relative to `path`).
    pub fn complete_from(&mut self, raw: &toml::Table, path: &Path) -> Result<()> {
        let scenario = self;
        let given = |key: &str| {
            raw.get("microgrid")
                .and_then(|m| m.get("weather"))
                .and_then(|w| w.get(key))
                .is_some()
        };
        let seasonal = crate::microgrid::Weather::for_season(scenario.season());
        let w = &mut scenario.microgrid.weather;
        if !given("wind_speed_ms") {
            w.wind_speed_ms = seasonal.wind_speed_ms;
        }
        if !given("irradiance_wm2") {
            w.irradiance_wm2 = seasonal.irradiance_wm2;
        }
        if !given("tidal_current_ms") {
            w.tidal_current_ms = seasonal.tidal_current_ms;
        }
        if let Some(ts) = scenario.timeseries.take() {
            let file = match path.parent() {
                Some(dir) if ts.file.is_relative() => dir.join(&ts.file),
                _ => ts.file.clone(),
            };
            scenario.apply_series(&crate::timeseries::read_day(&file, ts.day)?);
        }
        Ok(())
    }

    /// The season of the system load's day: `load.season`, else the season of `load.week`.
    pub fn season(&self) -> Season {
        self.load
            .season
            .unwrap_or_else(|| Season::of_week(self.load.week))
    }

    /// Replaces the inputs `series` gives (see [`crate::timeseries`]).
    pub fn apply_series(&mut self, series: &crate::timeseries::DaySeries) {
        let mg = &mut self.microgrid;
        for (name, values) in &series.columns {
            let v = values.clone();
            match *name {
                "wind_speed_ms" => mg.weather.wind_speed_ms = v,
                "irradiance_wm2" => mg.weather.irradiance_wm2 = v,
                "tidal_current_ms" => mg.weather.tidal_current_ms = v,
                "mg_load_mw" => {
                    let peak = v.iter().copied().fold(0.0, f64::max);
                    if peak > 0.0 {
                        mg.load.peak_mw = peak;
                        mg.load.profile = v.iter().map(|x| x / peak).collect();
                    } else {
                        mg.load.profile = vec![0.0; v.len()];
                    }
                }
                _ => self.load.hourly_mw = Some(v),
            }
        }
    }

    /// Makes a relative `grid.case_file` relative to the file `path` it was read from (a
    /// scenario file, or a sweep file with an inline `[base]`), as a sweep's base_config is
    /// to the sweep file, so that a scenario works from any directory. The result is
    /// absolute, so that the effective scenario a run writes into its output names the
    /// same file from there.
    pub fn anchor_case_file(&mut self, path: &Path) {
        if let Some(case) = &self.grid.case_file
            && case.is_relative()
            && let Some(dir) = path.parent()
        {
            let joined = dir.join(case);
            self.grid.case_file = Some(std::path::absolute(&joined).unwrap_or(joined));
        }
    }

    /// Loads the MATPOWER case the scenario names (or the embedded RTS-24).
    pub fn load_case(&self) -> Result<Case> {
        match &self.grid.case_file {
            None => matpower::parse(crate::data::CASE24_IEEE_RTS, "<embedded case24_ieee_rts>"),
            Some(p) => {
                let text = crate::input::read_text(p, "grid.case_file")?;
                matpower::parse(&text, &p.display().to_string())
            }
        }
    }

    /// The 24 system loads, MW, before validation against the case.
    pub fn system_load_mw(&self, case: &Case) -> Result<[f64; HOURS]> {
        let mut out = [0.0; HOURS];
        match &self.load.hourly_mw {
            Some(v) => {
                check_hourly_mw(v)?;
                for (h, &x) in v.iter().enumerate() {
                    out[h] = x * self.load.scale;
                }
            }
            None => {
                let frac = rts79::day_profile_with_season(
                    self.load.week,
                    self.load.day,
                    self.load.season,
                )?;
                let peak = case.total_load_mw();
                for h in 0..HOURS {
                    out[h] = frac[h] * peak * self.load.scale;
                }
            }
        }
        Ok(out)
    }

    /// Validates every field that does not need the case: each physical quantity
    /// against its range (so `p2pmarket check` catches it before any solver sees it),
    /// the microgrid's fields but its PCC, and the RCI settings. The checks that need the
    /// case (the PCC bus, the load against the committed capacity) are in
    /// [`crate::market::Market::from_scenario`].
    pub fn validate_settings(&self) -> Result<()> {
        LINEAR_COST_C2.check("grid.linear_cost_c2", self.grid.linear_cost_c2)?;
        LOAD_SCALE.check("load.scale", self.load.scale)?;
        if !(1..=52).contains(&self.load.week) {
            return Err(Error::invalid("load.week", self.load.week, "1..=52"));
        }
        if let Some(v) = &self.load.hourly_mw {
            check_hourly_mw(v)?;
        }
        self.microgrid.validate_fields()?;
        let agents = if self.microgrid.enabled { 2 } else { 1 };
        self.rci.validate_for_agents(agents)?;
        self.uncertainty.validate()?;
        crate::attack::validate_all(&self.attack, agents)
    }
}

/// Allowed `grid.linear_cost_c2`, $/MW^2h. The floor is as low as the numerics allow:
/// every library case (case5's costs are all linear) runs its whole day at 1e-7, while at
/// 1e-8 case5's offer-curve walk no longer closes (issue 6, item 5).
const LINEAR_COST_C2: Bounds = Bounds::closed(1e-7, 10.0, "$/MW^2h");
/// Allowed `load.scale` (a factor).
const LOAD_SCALE: Bounds = Bounds::above(0.0, 10.0, "(factor)");
/// Largest explicit system load, MW: above the peak of any interconnection.
pub const MAX_SYSTEM_LOAD_MW: f64 = 1e6;

/// `load.hourly_mw`: exactly 24 loads, each within `0..=MAX_SYSTEM_LOAD_MW` MW.
fn check_hourly_mw(v: &[f64]) -> Result<()> {
    if v.len() != HOURS {
        return Err(Error::invalid(
            "load.hourly_mw",
            format!("{} values", v.len()),
            format!("exactly {HOURS} hourly loads, MW"),
        ));
    }
    let range = Bounds::closed(0.0, MAX_SYSTEM_LOAD_MW, "MW");
    for (h, &x) in v.iter().enumerate() {
        range.check(&format!("load.hourly_mw[{h}]"), x)?;
    }
    Ok(())
}
