//! The microgrid: wind turbine, PV, tidal turbine, battery and load (eq. 20-28,
//! Kavousi-Fard 2021), with its 24-h weather profiles.
//!
//! Sign convention (eq. 24): every unit's power is an injection into the microgrid bus;
//! the battery's `power_mw` is positive when discharging. Eq. (25) as printed adds a
//! discharge to the stored energy; we use the physically consistent
//! `soc_t = soc_{t-1} + eta_ch * charge - discharge / eta_dis` (see [`Battery`]).

pub mod components;
pub mod profiles;

use serde::{Deserialize, Serialize};

/// Number of market hours in a day.
pub const HOURS: usize = 24;

/// A wind farm (eq. 21): cubic between cut-in and rated speed, flat to cut-out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WindTurbine {
    /// Rated (nameplate) output, MW, 0..=1e5.
    pub rated_mw: f64,
    /// Cut-in wind speed, m/s, 0..=100 and below `rated_ms`.
    pub cut_in_ms: f64,
    /// Rated wind speed, m/s, 0..=100, between `cut_in_ms` and `cut_out_ms`.
    pub rated_ms: f64,
    /// Cut-out wind speed, m/s, 0..=100 and above `rated_ms`.
    pub cut_out_ms: f64,
    /// Generation price CW of eq. (20), $/MWh, 0..=1e6.
    pub cost_per_mwh: f64,
}

/// A PV array (eq. 23): `P = Q * U / Z * (1 - R_loss)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PvArray {
    /// Output at the reference irradiance before losses (Q), MW, 0..=1e5.
    pub rated_mw: f64,
    /// Reference irradiance (Z), W/m^2, 100..=1500 (STC: 1000).
    pub reference_irradiance_wm2: f64,
    /// Loss fraction R_loss, dimensionless, [0, 1).
    pub loss_fraction: f64,
    /// Generation price RPV of eq. (20), $/MWh, 0..=1e6.
    pub cost_per_mwh: f64,
}

/// A tidal-stream turbine (eq. 22, erratum 3 fixed: zero below cut-in, cubic to rated,
/// flat to cut-out, zero above).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TidalTurbine {
    /// Rated output, MW, 0..=1e5.
    pub rated_mw: f64,
    /// Cut-in current speed, m/s, 0..=20 and below `rated_ms`.
    pub cut_in_ms: f64,
    /// Rated current speed, m/s, 0..=20, between `cut_in_ms` and `cut_out_ms`.
    pub rated_ms: f64,
    /// Cut-out current speed, m/s, 0..=20 and above `rated_ms`.
    pub cut_out_ms: f64,
    /// Generation price RTI of eq. (20), $/MWh, 0..=1e6.
    pub cost_per_mwh: f64,
}

/// A battery (eq. 25-28).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Battery {
    /// Energy capacity, MWh, 0..=1e6.
    pub capacity_mwh: f64,
    /// Maximum charging power, MW, 0..=1e5.
    pub max_charge_mw: f64,
    /// Maximum discharging power, MW, 0..=1e5.
    pub max_discharge_mw: f64,
    /// Minimum state of charge, fraction of capacity (V_min of eq. 28), 0..=1.
    pub soc_min: f64,
    /// Maximum state of charge, fraction of capacity (V_max of eq. 28), soc_min..=1.
    pub soc_max: f64,
    /// State of charge at the start of hour 0, fraction of capacity, soc_min..=soc_max.
    pub soc_initial: f64,
    /// Charging efficiency, dimensionless, 0.01..=1.
    pub charge_efficiency: f64,
    /// Discharging efficiency, dimensionless, 0.01..=1.
    pub discharge_efficiency: f64,
    /// Throughput (degradation) price RB of eq. (20), $/MWh charged or discharged,
    /// 0..=1e6.
    pub cost_per_mwh: f64,
}

/// The microgrid's local demand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MicrogridLoad {
    /// Peak demand, MW, 0..=1e5.
    pub peak_mw: f64,
    /// Hourly demand as a fraction of the peak, dimensionless (24 values, each 0..=1).
    pub profile: Vec<f64>,
}

/// 24-h weather seen by the microgrid's renewables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Weather {
    /// Hub-height wind speed per hour, m/s (24 values, each 0..=100).
    pub wind_speed_ms: Vec<f64>,
    /// Plane-of-array irradiance per hour, W/m^2 (24 values, each 0..=1500).
    pub irradiance_wm2: Vec<f64>,
    /// Tidal current speed per hour, m/s (24 values, each 0..=20).
    pub tidal_current_ms: Vec<f64>,
}

/// How the microgrid schedules its battery before the hourly market opens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum BatteryPlan {
    /// The microgrid alone flattens its net exchange over the day (a QP on its own data:
    /// no smart-grid information). This is the same information the hourly market has.
    SelfSchedule,
    /// The battery stays idle.
    Idle,
    /// Explicit discharge (+) / charge (-) power per hour, MW (24 values, each within
    /// the battery's power limits, and the stored energy within its limits).
    Explicit(Vec<f64>),
}

/// The whole microgrid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Microgrid {
    /// Whether the microgrid takes part at all (off: the smart grid runs alone).
    pub enabled: bool,
    /// External number of the smart-grid bus at the point of common coupling: a bus of
    /// the case that is not isolated (type 4). Not required while the microgrid is
    /// disabled (there is no PCC then; the hour's price is read at this bus if the case
    /// has it, else at the reference bus).
    pub pcc_bus: usize,
    /// Capacity of the tie line at the PCC, MW (both directions), (0, 1e5]. These are the
    /// power limits the RCI duals of eq. (33)-(36) enforce.
    pub tie_capacity_mw: f64,
    /// Wind farm.
    pub wind: WindTurbine,
    /// PV array.
    pub pv: PvArray,
    /// Tidal turbine.
    pub tidal: TidalTurbine,
    /// Battery.
    pub battery: Battery,
    /// Local demand.
    pub load: MicrogridLoad,
    /// Weather profiles.
    pub weather: Weather,
    /// Battery scheduling rule for the hourly market.
    pub battery_plan: BatteryPlan,
}

/// What the microgrid can do in one hour, after weather and load are known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HourlyMicrogrid {
    /// Available wind power, MW.
    pub wind_mw: f64,
    /// Available PV power, MW.
    pub pv_mw: f64,
    /// Available tidal power, MW.
    pub tidal_mw: f64,
    /// Local demand, MW.
    pub load_mw: f64,
}
