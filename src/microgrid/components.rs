//! Component models of the microgrid (eq. 21-28 of Kavousi-Fard 2021) and the
//! validation of a [`Microgrid`] configuration.
//!
//! Everything here is a pure function of the configuration. The power curves assume a
//! validated configuration and finite, non-negative weather inputs: [`Microgrid::validate`]
//! rejects anything else before a run starts, so the curves do not re-check it.

use super::{
    Battery, BatteryPlan, HOURS, HourlyMicrogrid, Microgrid, MicrogridLoad, PvArray, TidalTurbine,
    WindTurbine,
};
use crate::error::{Bounds, Error, Result, list_ids, number};

/// Tolerance, MW or MWh, for the battery limits of eq. (27)-(28) in [`Battery::check_plan`];
/// plans produced by a QP solver sit on a limit only up to round-off.
pub const BATTERY_TOLERANCE: f64 = 1e-9;

/// Highest plane-of-array irradiance accepted (hourly weather and the PV reference), W/m^2 (above the ~1360 W/m^2 solar
/// constant plus a margin for cloud-edge enhancement; anything higher is a unit error).
pub const MAX_IRRADIANCE_WM2: f64 = 1500.0;

/// The shared cut-in / cubic / rated / cut-out curve of eq. (21) and (22).
///
/// The paper writes the cubic branch as `1/2 S C K v^3` (wind) and `0.5 P gamma lambda v^3`
/// (tidal) without giving the constants. We take the lumped constant as
/// `k = rated_mw / rated_ms^3`, the only value that makes the curve continuous at the rated
/// speed; as in the paper the cubic is `k v^3` (not `k (v^3 - v_ci^3)`), so the output jumps
/// from 0 to `k v_ci^3` at cut-in.
fn cubic_power_curve(rated_mw: f64, cut_in: f64, rated: f64, cut_out: f64, v: f64) -> f64 {
    if v < cut_in || v >= cut_out {
        0.0
    } else if v < rated {
        rated_mw * (v / rated).powi(3)
    } else {
        rated_mw
    }
}

impl WindTurbine {
    /// Available power (MW) at hub-height wind speed `speed_ms`, eq. (21) with cut-in,
    /// rated and cut-out speeds.
    ///
    /// Zero below cut-in and at or above cut-out (the turbine is stopped to protect it);
    /// `k v^3` with `k = rated_mw / rated_ms^3` (the paper's `1/2 S C K`, chosen so the
    /// curve is continuous at rated speed) from cut-in up to rated; `rated_mw` from rated
    /// up to cut-out. Assumes a finite `speed_ms >= 0` (validation rejects the rest).
    pub fn power_mw(&self, speed_ms: f64) -> f64 {
        cubic_power_curve(
            self.rated_mw,
            self.cut_in_ms,
            self.rated_ms,
            self.cut_out_ms,
            speed_ms,
        )
    }
}

impl TidalTurbine {
    /// Available power (MW) at tidal current speed `current_ms`, eq. (22).
    ///
    /// Erratum 3 of the model notes: the paper's zero branch reads `0 <= v <= v_rated`,
    /// which would contradict its own cubic branch; it means `v < v_cut-in`. The curve is
    /// therefore the wind curve's shape: zero below cut-in and at or above cut-out,
    /// `k v^3` with `k = rated_mw / rated_ms^3` (the paper's `0.5 P gamma lambda`, chosen
    /// for continuity at rated speed) up to rated, `rated_mw` up to cut-out.
    pub fn power_mw(&self, current_ms: f64) -> f64 {
        cubic_power_curve(
            self.rated_mw,
            self.cut_in_ms,
            self.rated_ms,
            self.cut_out_ms,
            current_ms,
        )
    }
}

impl PvArray {
    /// Available power (MW) at plane-of-array irradiance `irradiance_wm2`, eq. (23):
    /// `P = Q * U / Z * (1 - R_loss)`.
    ///
    /// Linear in irradiance with no clipping, as printed; validation caps the irradiance
    /// at [`MAX_IRRADIANCE_WM2`] so the output stays physical.
    pub fn power_mw(&self, irradiance_wm2: f64) -> f64 {
        self.rated_mw * irradiance_wm2 / self.reference_irradiance_wm2 * (1.0 - self.loss_fraction)
    }
}

impl Battery {
    /// Stored-energy limits `(V_min, V_max)` of eq. (28), MWh.
    pub fn soc_bounds_mwh(&self) -> (f64, f64) {
        (
            self.soc_min * self.capacity_mwh,
            self.soc_max * self.capacity_mwh,
        )
    }

    /// Stored energy at the start of hour 0, MWh.
    pub fn initial_soc_mwh(&self) -> f64 {
        self.soc_initial * self.capacity_mwh
    }

    /// Stored energy (MWh) after one hour at `power_mw` (+ discharge, - charge), the
    /// corrected eq. (25)-(26).
    ///
    /// As printed, eq. (25) `VB_t = VB_{t-1} + PB_t eta` adds a discharge to the store and
    /// applies one efficiency both ways. Losses must always reduce the stored energy, so a
    /// discharge draws `p / eta_dis` from the store and a charge adds `eta_ch * |p|`.
    pub fn next_soc_mwh(&self, soc_mwh: f64, power_mw: f64) -> f64 {
        if power_mw >= 0.0 {
            soc_mwh - power_mw / self.discharge_efficiency
        } else {
            soc_mwh - power_mw * self.charge_efficiency
        }
    }

    /// Feasible battery power for the next hour, `(most negative = max charge, most
    /// positive = max discharge)` in MW, from the power limits of eq. (27) and the
    /// energy limits of eq. (28) reached after one hour at that power.
    ///
    /// Both ends are clamped at zero, so idling stays feasible even when `soc_mwh` lies
    /// slightly outside the limits (round-off in a caller's trajectory).
    pub fn power_range_mw(&self, soc_mwh: f64) -> (f64, f64) {
        let (v_min, v_max) = self.soc_bounds_mwh();
        let max_discharge = self
            .max_discharge_mw
            .min((soc_mwh - v_min) * self.discharge_efficiency)
            .max(0.0);
        let max_charge = self
            .max_charge_mw
            .min((v_max - soc_mwh) / self.charge_efficiency)
            .max(0.0);
        (-max_charge, max_discharge)
    }

    /// Throughput (degradation) cost of one hour at `power_mw`, $: `RB * |PB|` of eq. (20).
    ///
    /// The paper prices `PB` linearly, which would pay the microgrid for charging; a
    /// degradation cost is incurred in both directions, hence the absolute value.
    pub fn throughput_cost(&self, power_mw: f64) -> f64 {
        self.cost_per_mwh * power_mw.abs()
    }

    /// Checks a 24-hour plan (+ discharge, - charge, MW) against eq. (27)-(28) and returns
    /// the stored-energy trajectory: 25 values, the initial state then the state after
    /// each hour.
    ///
    /// The error (field `microgrid.battery_plan`) names the first hour whose power or
    /// resulting stored energy breaks a limit by more than [`BATTERY_TOLERANCE`].
    pub fn check_plan(&self, plan: &[f64]) -> Result<Vec<f64>> {
        const FIELD: &str = "microgrid.battery_plan";
        if plan.len() != HOURS {
            return Err(Error::invalid(
                FIELD,
                format!("{} values", plan.len()),
                format!("exactly {HOURS} hourly powers, MW"),
            ));
        }
        let (v_min, v_max) = self.soc_bounds_mwh();
        let mut soc = self.initial_soc_mwh();
        let mut trajectory = Vec::with_capacity(HOURS + 1);
        trajectory.push(soc);
        for (hour, &power) in plan.iter().enumerate() {
            if !power.is_finite()
                || power > self.max_discharge_mw + BATTERY_TOLERANCE
                || power < -self.max_charge_mw - BATTERY_TOLERANCE
            {
                return Err(Error::invalid(
                    FIELD,
                    format!("{power} MW at hour {hour}"),
                    format!(
                        "a finite power from -{} MW (charge) to {} MW (discharge), eq. (27)",
                        self.max_charge_mw, self.max_discharge_mw
                    ),
                ));
            }
            soc = self.next_soc_mwh(soc, power);
            if soc < v_min - BATTERY_TOLERANCE || soc > v_max + BATTERY_TOLERANCE {
                return Err(Error::invalid(
                    FIELD,
                    format!("{power} MW at hour {hour}, leaving {soc} MWh stored"),
                    format!("stored energy within [{v_min}, {v_max}] MWh, eq. (28)"),
                ));
            }
            trajectory.push(soc);
        }
        Ok(trajectory)
    }
}

impl MicrogridLoad {
    /// Local demand in `hour` (0-based), MW: `peak_mw * profile[hour]`.
    ///
    /// An hour past the end of the profile reads as zero demand; a validated load has
    /// exactly [`HOURS`] entries, so this only matters for unvalidated data.
    pub fn demand_mw(&self, hour: usize) -> f64 {
        self.profile.get(hour).map_or(0.0, |f| self.peak_mw * f)
    }
}

impl HourlyMicrogrid {
    /// Total available renewable power (wind + PV + tidal), MW.
    pub fn renewable_mw(&self) -> f64 {
        self.wind_mw + self.pv_mw + self.tidal_mw
    }

    /// Demand left after all available renewables, MW (negative: a surplus to sell).
    pub fn net_load_mw(&self) -> f64 {
        self.load_mw - self.renewable_mw()
    }
}

impl Microgrid {
    /// Available renewable power and local demand for each hour of the day, unscaled
    /// (no uncertainty, no curtailment, regardless of `enabled`).
    ///
    /// Missing weather entries (unvalidated data) read as zero wind, sun or current.
    pub fn hourly(&self) -> [HourlyMicrogrid; HOURS] {
        let at = |series: &[f64], hour: usize| series.get(hour).copied().unwrap_or(0.0);
        std::array::from_fn(|hour| HourlyMicrogrid {
            wind_mw: self.wind.power_mw(at(&self.weather.wind_speed_ms, hour)),
            pv_mw: self.pv.power_mw(at(&self.weather.irradiance_wm2, hour)),
            tidal_mw: self
                .tidal
                .power_mw(at(&self.weather.tidal_current_ms, hour)),
            load_mw: self.load.demand_mw(hour),
        })
    }

    /// Checks every field against its allowed range; the error names the dotted field
    /// path (`microgrid.…`), the value and the allowed range. `pcc_buses` are the external
    /// bus numbers of the smart-grid case that may carry the PCC (see
    /// [`Microgrid::validate_pcc`]).
    pub fn validate(&self, pcc_buses: &[usize]) -> Result<()> {
        self.validate_pcc(pcc_buses)?;
        self.validate_fields()
    }

    /// Checks `pcc_bus` against the buses that may carry the PCC, when the microgrid is
    /// enabled. A disabled microgrid has no PCC, so its `pcc_bus` may name any number
    /// (the default 7 does not exist in a 5-bus case).
    pub fn validate_pcc(&self, pcc_buses: &[usize]) -> Result<()> {
        if self.enabled && !pcc_buses.contains(&self.pcc_bus) {
            return Err(Error::invalid(
                "microgrid.pcc_bus",
                self.pcc_bus,
                describe_bus_ids(pcc_buses),
            ));
        }
        Ok(())
    }

    /// Checks every field that does not need the case: each physical quantity against its
    /// range (the constants of this module), the speed and state-of-charge orders, the
    /// 24-h series and an explicit battery plan.
    ///
    /// A disabled microgrid is validated too, so that a scenario cannot carry broken
    /// data that fails only when someone switches it on.
    pub fn validate_fields(&self) -> Result<()> {
        TIE_MW.check("microgrid.tie_capacity_mw", self.tie_capacity_mw)?;

        let w = &self.wind;
        RATING_MW.check("microgrid.wind.rated_mw", w.rated_mw)?;
        speed_order(
            "microgrid.wind",
            [w.cut_in_ms, w.rated_ms, w.cut_out_ms],
            WIND_MS,
        )?;
        PRICE.check("microgrid.wind.cost_per_mwh", w.cost_per_mwh)?;

        let t = &self.tidal;
        RATING_MW.check("microgrid.tidal.rated_mw", t.rated_mw)?;
        speed_order(
            "microgrid.tidal",
            [t.cut_in_ms, t.rated_ms, t.cut_out_ms],
            TIDAL_MS,
        )?;
        PRICE.check("microgrid.tidal.cost_per_mwh", t.cost_per_mwh)?;

        let pv = &self.pv;
        RATING_MW.check("microgrid.pv.rated_mw", pv.rated_mw)?;
        Bounds::closed(MIN_REFERENCE_IRRADIANCE_WM2, MAX_IRRADIANCE_WM2, "W/m^2").check(
            "microgrid.pv.reference_irradiance_wm2",
            pv.reference_irradiance_wm2,
        )?;
        if !(pv.loss_fraction >= 0.0 && pv.loss_fraction < 1.0) {
            return Err(Error::invalid(
                "microgrid.pv.loss_fraction",
                number(pv.loss_fraction),
                "a fraction in [0, 1)",
            ));
        }
        PRICE.check("microgrid.pv.cost_per_mwh", pv.cost_per_mwh)?;

        validate_battery(&self.battery)?;

        RATING_MW.check("microgrid.load.peak_mw", self.load.peak_mw)?;
        hourly_series("microgrid.load.profile", &self.load.profile, FRACTION)?;
        hourly_series(
            "microgrid.weather.wind_speed_ms",
            &self.weather.wind_speed_ms,
            WIND_MS,
        )?;
        hourly_series(
            "microgrid.weather.irradiance_wm2",
            &self.weather.irradiance_wm2,
            Bounds::closed(0.0, MAX_IRRADIANCE_WM2, "W/m^2"),
        )?;
        hourly_series(
            "microgrid.weather.tidal_current_ms",
            &self.weather.tidal_current_ms,
            TIDAL_MS,
        )?;

        if let BatteryPlan::Explicit(plan) = &self.battery_plan {
            self.battery.check_plan(plan)?;
        }
        Ok(())
    }
}

/// Largest power of any microgrid quantity (unit rating, battery power, local peak load,
/// tie capacity), MW: generous for a microgrid (an aggregator of 100 GW fits), and small
/// enough that the market's QPs stay well scaled.
pub const MAX_MICROGRID_MW: f64 = 1e5;
/// Largest battery energy capacity, MWh (10 h at [`MAX_MICROGRID_MW`]).
pub const MAX_BATTERY_MWH: f64 = 1e6;
/// Largest generation or throughput price, $/MWh.
pub const MAX_PRICE_PER_MWH: f64 = 1e6;
/// Highest wind speed accepted (hourly weather and turbine speeds), m/s: above any
/// recorded sustained wind.
pub const MAX_WIND_SPEED_MS: f64 = 100.0;
/// Highest tidal current speed accepted, m/s: the fastest tidal races run at about 10 m/s.
pub const MAX_TIDAL_SPEED_MS: f64 = 20.0;
/// Lowest PV reference irradiance Z, W/m^2 (STC is 1000, NOCT 800): a small Z would
/// multiply the PV output by `U / Z`.
pub const MIN_REFERENCE_IRRADIANCE_WM2: f64 = 100.0;
/// Lowest battery charge or discharge efficiency: the discharge divides by it.
pub const MIN_EFFICIENCY: f64 = 0.01;

const TIE_MW: Bounds = Bounds::above(0.0, MAX_MICROGRID_MW, "MW");
const RATING_MW: Bounds = Bounds::closed(0.0, MAX_MICROGRID_MW, "MW");
const PRICE: Bounds = Bounds::closed(0.0, MAX_PRICE_PER_MWH, "$/MWh");
const WIND_MS: Bounds = Bounds::closed(0.0, MAX_WIND_SPEED_MS, "m/s");
const TIDAL_MS: Bounds = Bounds::closed(0.0, MAX_TIDAL_SPEED_MS, "m/s");
const FRACTION: Bounds = Bounds::closed(0.0, 1.0, "");

/// Battery fields: ratings and price, efficiencies, and the state-of-charge order.
fn validate_battery(b: &Battery) -> Result<()> {
    Bounds::closed(0.0, MAX_BATTERY_MWH, "MWh")
        .check("microgrid.battery.capacity_mwh", b.capacity_mwh)?;
    RATING_MW.check("microgrid.battery.max_charge_mw", b.max_charge_mw)?;
    RATING_MW.check("microgrid.battery.max_discharge_mw", b.max_discharge_mw)?;
    PRICE.check("microgrid.battery.cost_per_mwh", b.cost_per_mwh)?;
    let efficiency = Bounds::closed(MIN_EFFICIENCY, 1.0, "");
    efficiency.check("microgrid.battery.charge_efficiency", b.charge_efficiency)?;
    efficiency.check(
        "microgrid.battery.discharge_efficiency",
        b.discharge_efficiency,
    )?;
    FRACTION.check("microgrid.battery.soc_min", b.soc_min)?;
    Bounds::closed(b.soc_min, 1.0, "(fraction, >= soc_min)")
        .check("microgrid.battery.soc_max", b.soc_max)?;
    Bounds::closed(b.soc_min, b.soc_max, "(fraction, soc_min..=soc_max)")
        .check("microgrid.battery.soc_initial", b.soc_initial)
}

/// `cut_in < rated < cut_out`, each within `range`: the power curve's branches must not
/// overlap, and `rated > 0` keeps the cubic constant `rated_mw / rated^3` finite.
fn speed_order(prefix: &str, [cut_in, rated, cut_out]: [f64; 3], range: Bounds) -> Result<()> {
    range.check(&format!("{prefix}.cut_in_ms"), cut_in)?;
    if !(range.contains(rated) && rated > cut_in) {
        return Err(Error::invalid(
            format!("{prefix}.rated_ms"),
            number(rated),
            format!(
                "{}, greater than cut_in_ms = {cut_in} m/s",
                range.describe()
            ),
        ));
    }
    if !(range.contains(cut_out) && cut_out > rated) {
        return Err(Error::invalid(
            format!("{prefix}.cut_out_ms"),
            number(cut_out),
            format!("{}, greater than rated_ms = {rated} m/s", range.describe()),
        ));
    }
    Ok(())
}

/// A 24-hour series: exactly [`HOURS`] values within `range`; an element's error names it
/// as `field[hour]`.
fn hourly_series(field: &str, values: &[f64], range: Bounds) -> Result<()> {
    if values.len() != HOURS {
        return Err(Error::invalid(
            field,
            format!("{} values", values.len()),
            format!("exactly {HOURS} hourly values"),
        ));
    }
    for (hour, &v) in values.iter().enumerate() {
        range.check(&format!("{field}[{hour}]"), v)?;
    }
    Ok(())
}

/// The allowed PCC buses in words: a range when the ids are contiguous (`1..24`),
/// otherwise the list (its first numbers and a count of the rest).
pub fn describe_bus_ids(ids: &[usize]) -> String {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    match (sorted.first(), sorted.last()) {
        (Some(&first), Some(&last)) if last - first + 1 == sorted.len() => {
            format!("a bus of the case: {first}..{last}")
        }
        (Some(_), Some(_)) => {
            format!("a bus of the case: {}", list_ids(&sorted))
        }
        _ => "a bus of the case (the case has no buses that can be a PCC)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: f64 = 1e-12;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= TOL * (1.0 + b.abs())
    }

    fn field_of(err: Error) -> String {
        match err {
            Error::InvalidInput { field, .. } => field,
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }

    fn rts_buses() -> Vec<usize> {
        (1..=24).collect()
    }

    /// A change to the default microgrid, for table-driven validation tests.
    type Mutation = fn(&mut Microgrid);

    /// Validates the default microgrid after `set` against the RTS-24 bus ids.
    fn validate_with(set: impl FnOnce(&mut Microgrid)) -> Result<()> {
        let mut mg = Microgrid::default();
        set(&mut mg);
        mg.validate(&rts_buses())
    }

    /// The field named by the error that `set` must provoke.
    fn rejected_field(set: impl FnOnce(&mut Microgrid)) -> String {
        field_of(validate_with(set).expect_err("the change must be rejected"))
    }

    // Default wind: 40 MW, cut-in 3, rated 12, cut-out 25 m/s; k = 40 / 12^3 = 40 / 1728.
    #[test]
    fn wind_curve_every_branch() {
        let w = WindTurbine::default();
        assert_eq!(w.power_mw(0.0), 0.0);
        assert_eq!(w.power_mw(2.9), 0.0); // below cut-in
        // at cut-in: 40 * 27 / 1728 = 0.625 MW (the paper's cubic jumps here)
        assert!(close(w.power_mw(3.0), 0.625));
        // mid cubic: 40 * 6^3 / 12^3 = 40 * 216 / 1728 = 5.0 MW
        assert!(close(w.power_mw(6.0), 5.0));
        // 40 * 9^3 / 1728 = 40 * 729 / 1728 = 16.875 MW
        assert!(close(w.power_mw(9.0), 16.875));
        // continuity at rated: the cubic's limit equals the flat branch
        assert!((w.power_mw(12.0 - 1e-9) - 40.0).abs() < 1e-6);
        assert_eq!(w.power_mw(12.0), 40.0);
        assert_eq!(w.power_mw(18.0), 40.0); // between rated and cut-out
        assert_eq!(w.power_mw(24.999), 40.0);
        assert_eq!(w.power_mw(25.0), 0.0); // at cut-out: stopped
        assert_eq!(w.power_mw(30.0), 0.0);
    }

    // Default tidal: 15 MW, cut-in 0.7, rated 2.5, cut-out 4.5 m/s; k = 15 / 15.625 = 0.96.
    #[test]
    fn tidal_curve_every_branch() {
        let t = TidalTurbine::default();
        assert_eq!(t.power_mw(0.0), 0.0);
        assert_eq!(t.power_mw(0.5), 0.0); // below cut-in (erratum 3)
        // at cut-in: 0.96 * 0.7^3 = 0.96 * 0.343 = 0.32928 MW
        assert!(close(t.power_mw(0.7), 0.32928));
        // mid cubic: 0.96 * 2^3 = 7.68 MW
        assert!(close(t.power_mw(2.0), 7.68));
        assert_eq!(t.power_mw(2.5), 15.0); // at rated
        assert_eq!(t.power_mw(3.5), 15.0); // between rated and cut-out
        assert_eq!(t.power_mw(4.5), 0.0); // at cut-out
        assert_eq!(t.power_mw(5.0), 0.0);
    }

    // Default PV: Q = 25 MW, Z = 1000 W/m^2, loss 0.14.
    #[test]
    fn pv_linear_in_irradiance() {
        let pv = PvArray::default();
        assert_eq!(pv.power_mw(0.0), 0.0);
        // 25 * 500 / 1000 * 0.86 = 10.75 MW
        assert!(close(pv.power_mw(500.0), 10.75));
        // 25 * 1000 / 1000 * 0.86 = 21.5 MW
        assert!(close(pv.power_mw(1000.0), 21.5));
    }

    // Default battery: 40 MWh, limits 0.1..0.95 -> 4..38 MWh, start 20 MWh, eta 0.95/0.95.
    #[test]
    fn battery_bounds_and_initial_state() {
        let b = Battery::default();
        let (lo, hi) = b.soc_bounds_mwh();
        assert!(close(lo, 4.0));
        assert!(close(hi, 38.0));
        assert!(close(b.initial_soc_mwh(), 20.0));
    }

    #[test]
    fn battery_efficiency_math() {
        let b = Battery::default();
        // discharging 9.5 MW for an hour draws 9.5 / 0.95 = 10 MWh from the store
        assert!(close(b.next_soc_mwh(20.0, 9.5), 10.0));
        // charging 10 MW for an hour stores 0.95 * 10 = 9.5 MWh
        assert!(close(b.next_soc_mwh(20.0, -10.0), 29.5));
        assert_eq!(b.next_soc_mwh(20.0, 0.0), 20.0);
        // a round trip loses 1 - 0.95^2 = 9.75 %: charge 10 MW, discharge all 9.5 MWh
        // gives back 9.5 * 0.95 = 9.025 MW
        let charged = b.next_soc_mwh(20.0, -10.0);
        assert!(close(b.next_soc_mwh(charged, 9.025), 20.0));
    }

    #[test]
    fn battery_power_range_power_limits() {
        let b = Battery::default();
        // mid-range state: only eq. (27) binds: (20 - 4) * 0.95 = 15.2 > 10 and
        // (38 - 20) / 0.95 = 18.95 > 10
        assert_eq!(b.power_range_mw(20.0), (-10.0, 10.0));
    }

    #[test]
    fn battery_power_range_soc_limits() {
        let b = Battery::default();
        // near empty: discharge limited to (6 - 4) * 0.95 = 1.9 MW
        let (ch, dis) = b.power_range_mw(6.0);
        assert_eq!(ch, -10.0);
        assert!(close(dis, 1.9));
        // near full: charge limited to (38 - 35) / 0.95 = 3.157894736842105 MW
        let (ch, dis) = b.power_range_mw(35.0);
        assert!(close(ch, -3.0 / 0.95));
        assert_eq!(dis, 10.0);
        // at the limits the blocked direction is exactly zero
        assert_eq!(b.power_range_mw(4.0).1, 0.0);
        assert_eq!(b.power_range_mw(38.0).0, 0.0);
        // slightly outside (round-off): idling stays feasible
        let (ch, dis) = b.power_range_mw(3.9);
        assert_eq!(dis, 0.0);
        assert!(ch < 0.0);
        // the end of the range lands exactly on the limit
        assert!(close(b.next_soc_mwh(6.0, 1.9), 4.0));
        assert!(close(b.next_soc_mwh(35.0, -3.0 / 0.95), 38.0));
    }

    #[test]
    fn battery_throughput_cost_both_directions() {
        let b = Battery::default();
        // 2 $/MWh * 7.5 MW = 15 $, charging or discharging
        assert!(close(b.throughput_cost(7.5), 15.0));
        assert!(close(b.throughput_cost(-7.5), 15.0));
        assert_eq!(b.throughput_cost(0.0), 0.0);
    }

    #[test]
    fn check_plan_trajectory() {
        let b = Battery::default();
        let mut plan = vec![0.0; HOURS];
        plan[0] = -10.0; // 20 + 9.5 = 29.5
        plan[1] = -10.0; // 29.5 + 9.5 = 39.0 > 38: must fail
        let err = b.check_plan(&plan).expect_err("overcharge must fail");
        let msg = err.to_string();
        assert!(msg.contains("hour 1"), "{msg}");
        assert!(msg.contains("eq. (28)"), "{msg}");
        assert_eq!(field_of(err), "microgrid.battery_plan");

        plan[1] = 9.5; // 29.5 - 10 = 19.5
        let traj = b.check_plan(&plan).expect("feasible plan");
        assert_eq!(traj.len(), HOURS + 1);
        assert!(close(traj[0], 20.0));
        assert!(close(traj[1], 29.5));
        assert!(close(traj[2], 19.5));
        assert!(close(traj[HOURS], 19.5));
    }

    #[test]
    fn check_plan_power_limit_names_hour() {
        let b = Battery::default();
        let mut plan = vec![0.0; HOURS];
        plan[3] = 12.0;
        let msg = b.check_plan(&plan).expect_err("12 MW > 10 MW").to_string();
        assert!(msg.contains("hour 3"), "{msg}");
        assert!(msg.contains("eq. (27)"), "{msg}");
        plan[3] = f64::NAN;
        assert!(b.check_plan(&plan).is_err());
        // exactly at the limit (plus round-off below tolerance) is accepted
        plan[3] = 10.0 + 1e-12;
        assert!(b.check_plan(&plan).is_ok());
    }

    #[test]
    fn check_plan_soc_limit_names_first_hour() {
        let b = Battery::default();
        // 10 MW discharge each hour draws 10 / 0.95 = 10.526 MWh: 20 -> 9.474 -> -1.05,
        // below the 4 MWh floor in hour 1 (hour 2 would also fail; the first is named)
        let msg = b
            .check_plan(&[10.0; HOURS])
            .expect_err("drains")
            .to_string();
        assert!(msg.contains("hour 1"), "{msg}");
        assert!(!msg.contains("hour 2"), "{msg}");
    }

    #[test]
    fn check_plan_wrong_length() {
        let b = Battery::default();
        let err = b.check_plan(&[0.0; 23]).expect_err("23 hours");
        assert_eq!(field_of(err), "microgrid.battery_plan");
    }

    #[test]
    fn load_demand_scales_profile() {
        let load = MicrogridLoad::default();
        // 45 MW * 1.00 at the 18:00 evening peak
        assert!(close(load.demand_mw(18), 45.0));
        // 45 MW * 0.45 = 20.25 MW at 03:00
        assert!(close(load.demand_mw(3), 20.25));
        assert_eq!(load.demand_mw(HOURS), 0.0);
    }

    #[test]
    fn hourly_applies_each_curve() {
        let mg = Microgrid::default();
        let hourly = mg.hourly();
        for (h, hm) in hourly.iter().enumerate() {
            assert_eq!(hm.wind_mw, mg.wind.power_mw(mg.weather.wind_speed_ms[h]));
            assert_eq!(hm.pv_mw, mg.pv.power_mw(mg.weather.irradiance_wm2[h]));
            assert_eq!(
                hm.tidal_mw,
                mg.tidal.power_mw(mg.weather.tidal_current_ms[h])
            );
            assert_eq!(hm.load_mw, mg.load.demand_mw(h));
            assert!(close(hm.net_load_mw(), hm.load_mw - hm.renewable_mw()));
        }
        // unvalidated short weather must not panic
        let mut short = mg.clone();
        short.weather.wind_speed_ms.truncate(5);
        assert_eq!(short.hourly()[10].wind_mw, 0.0);
    }

    #[test]
    fn default_validates_against_rts24() {
        Microgrid::default()
            .validate(&rts_buses())
            .expect("default microgrid is valid");
        validate_with(|m| m.battery_plan = BatteryPlan::Idle).expect("idle plan");
        // a feasible explicit plan: charge 8 MW for two hours (20 + 2 * 7.6 = 35.2 MWh,
        // under the 38 MWh ceiling), then discharge 9 MW for two evening hours
        let mut plan = vec![0.0; HOURS];
        plan[..2].fill(-8.0);
        plan[18..20].fill(9.0);
        validate_with(|m| m.battery_plan = BatteryPlan::Explicit(plan)).expect("explicit");
    }

    #[test]
    fn rejects_negative_capacity() {
        assert_eq!(
            rejected_field(|m| m.battery.capacity_mwh = -1.0),
            "microgrid.battery.capacity_mwh"
        );
        assert_eq!(
            rejected_field(|m| m.wind.rated_mw = -40.0),
            "microgrid.wind.rated_mw"
        );
        assert_eq!(
            rejected_field(|m| m.tidal.cost_per_mwh = -0.1),
            "microgrid.tidal.cost_per_mwh"
        );
        assert_eq!(
            rejected_field(|m| m.load.peak_mw = -1.0),
            "microgrid.load.peak_mw"
        );
    }

    #[test]
    fn rejects_nan_naming_the_field() {
        let msg = validate_with(|m| m.pv.rated_mw = f64::NAN)
            .expect_err("NaN rating")
            .to_string();
        assert!(
            msg.contains("microgrid.pv.rated_mw") && msg.contains("NaN"),
            "{msg}"
        );
        let cases: [(Mutation, &str); 7] = [
            (
                |m| m.battery.charge_efficiency = f64::NAN,
                "microgrid.battery.charge_efficiency",
            ),
            (
                |m| m.battery.soc_initial = f64::NAN,
                "microgrid.battery.soc_initial",
            ),
            (
                |m| m.wind.cut_out_ms = f64::NAN,
                "microgrid.wind.cut_out_ms",
            ),
            (
                |m| m.pv.loss_fraction = f64::NAN,
                "microgrid.pv.loss_fraction",
            ),
            (
                |m| m.tie_capacity_mw = f64::NAN,
                "microgrid.tie_capacity_mw",
            ),
            (
                |m| m.weather.irradiance_wm2[12] = f64::NAN,
                "microgrid.weather.irradiance_wm2[12]",
            ),
            (
                |m| m.weather.tidal_current_ms[4] = f64::INFINITY,
                "microgrid.weather.tidal_current_ms[4]",
            ),
        ];
        for (set, field) in cases {
            assert_eq!(rejected_field(set), field);
        }
    }

    #[test]
    fn rejects_bad_speed_order() {
        // rated below cut-in (3 m/s)
        assert_eq!(
            rejected_field(|m| m.wind.rated_ms = 2.0),
            "microgrid.wind.rated_ms"
        );
        // cut-out equal to rated (2.5 m/s)
        assert_eq!(
            rejected_field(|m| m.tidal.cut_out_ms = 2.5),
            "microgrid.tidal.cut_out_ms"
        );
        assert_eq!(
            rejected_field(|m| m.tidal.cut_in_ms = -0.1),
            "microgrid.tidal.cut_in_ms"
        );
        assert_eq!(
            rejected_field(|m| m.wind.rated_ms = f64::INFINITY),
            "microgrid.wind.rated_ms"
        );
    }

    #[test]
    fn rejects_bad_pcc_bus() {
        let err = validate_with(|m| m.pcc_bus = 25).expect_err("no bus 25");
        let msg = err.to_string();
        assert!(msg.contains("1..24"), "{msg}");
        assert_eq!(field_of(err), "microgrid.pcc_bus");
        let mut mg = Microgrid::default();
        mg.validate(&[1, 2, 7, 9]).expect("bus 7 is in the list");
        mg.pcc_bus = 4;
        let msg = mg.validate(&[9, 1, 2, 7]).unwrap_err().to_string();
        assert!(msg.contains("1, 2, 7, 9"), "{msg}");
        assert!(mg.validate(&[]).is_err());
    }

    #[test]
    fn rejects_wrong_profile_length() {
        assert_eq!(
            rejected_field(|m| {
                m.weather.wind_speed_ms.pop();
            }),
            "microgrid.weather.wind_speed_ms"
        );
        assert_eq!(
            rejected_field(|m| m.load.profile.push(0.5)),
            "microgrid.load.profile"
        );
        assert_eq!(
            rejected_field(|m| m.weather.irradiance_wm2.clear()),
            "microgrid.weather.irradiance_wm2"
        );
        assert_eq!(
            rejected_field(|m| m.battery_plan = BatteryPlan::Explicit(vec![0.0; 25])),
            "microgrid.battery_plan"
        );
    }

    #[test]
    fn rejects_out_of_range_series_values() {
        assert_eq!(
            rejected_field(|m| m.load.profile[7] = 1.2),
            "microgrid.load.profile[7]"
        );
        assert_eq!(
            rejected_field(|m| m.weather.irradiance_wm2[12] = 1600.0),
            "microgrid.weather.irradiance_wm2[12]"
        );
        assert_eq!(
            rejected_field(|m| m.weather.wind_speed_ms[0] = -1.0),
            "microgrid.weather.wind_speed_ms[0]"
        );
    }

    #[test]
    fn rejects_bad_fractions() {
        let cases: [(Mutation, &str); 8] = [
            (
                |m| m.battery.charge_efficiency = 0.0,
                "microgrid.battery.charge_efficiency",
            ),
            (
                |m| m.battery.discharge_efficiency = 1.01,
                "microgrid.battery.discharge_efficiency",
            ),
            (|m| m.battery.soc_min = -0.1, "microgrid.battery.soc_min"),
            // below soc_min = 0.1
            (|m| m.battery.soc_max = 0.05, "microgrid.battery.soc_max"),
            (|m| m.battery.soc_max = 1.1, "microgrid.battery.soc_max"),
            // above soc_max = 0.95
            (
                |m| m.battery.soc_initial = 0.99,
                "microgrid.battery.soc_initial",
            ),
            (|m| m.pv.loss_fraction = 1.0, "microgrid.pv.loss_fraction"),
            (
                |m| m.pv.reference_irradiance_wm2 = 0.0,
                "microgrid.pv.reference_irradiance_wm2",
            ),
        ];
        for (set, field) in cases {
            assert_eq!(rejected_field(set), field);
        }
    }

    #[test]
    fn rejects_zero_tie_and_infeasible_plan() {
        assert_eq!(
            rejected_field(|m| m.tie_capacity_mw = 0.0),
            "microgrid.tie_capacity_mw"
        );
        let err = validate_with(|m| m.battery_plan = BatteryPlan::Explicit(vec![10.0; HOURS]))
            .expect_err("drains the battery");
        assert!(err.to_string().contains("hour 1"));
        assert_eq!(field_of(err), "microgrid.battery_plan");
    }

    #[test]
    fn disabled_microgrid_is_still_validated() {
        validate_with(|m| m.enabled = false).expect("disabled default is valid");
        assert_eq!(
            rejected_field(|m| {
                m.enabled = false;
                m.wind.rated_mw = f64::NAN;
            }),
            "microgrid.wind.rated_mw"
        );
    }

    #[test]
    fn disabled_microgrid_has_no_pcc_issue_6() {
        let mut mg = Microgrid {
            enabled: false,
            pcc_bus: 99,
            ..Microgrid::default()
        };
        mg.validate(&[1, 2, 3]).expect("no PCC while disabled");
        mg.validate_fields().expect("fields alone");
        mg.enabled = true;
        let err = mg.validate(&[1, 2, 3]).expect_err("bus 99 does not exist");
        assert_eq!(field_of(err), "microgrid.pcc_bus");
    }

    #[test]
    fn rejects_absurd_magnitudes_with_the_unit() {
        let cases: [(Mutation, &str, &str); 9] = [
            (
                |m| m.tie_capacity_mw = 1e12,
                "microgrid.tie_capacity_mw",
                "MW",
            ),
            (|m| m.pv.rated_mw = 1e300, "microgrid.pv.rated_mw", "MW"),
            (|m| m.load.peak_mw = 1e9, "microgrid.load.peak_mw", "MW"),
            (
                |m| m.weather.wind_speed_ms[3] = 1e300,
                "microgrid.weather.wind_speed_ms[3]",
                "m/s",
            ),
            (
                |m| m.weather.tidal_current_ms[0] = 25.0,
                "microgrid.weather.tidal_current_ms[0]",
                "m/s",
            ),
            (
                |m| m.battery.capacity_mwh = 1e7,
                "microgrid.battery.capacity_mwh",
                "MWh",
            ),
            (
                |m| m.wind.cost_per_mwh = 1e7,
                "microgrid.wind.cost_per_mwh",
                "$/MWh",
            ),
            (
                |m| m.pv.reference_irradiance_wm2 = 1e-300,
                "microgrid.pv.reference_irradiance_wm2",
                "W/m^2",
            ),
            (
                |m| m.wind.cut_out_ms = 1e300,
                "microgrid.wind.cut_out_ms",
                "m/s",
            ),
        ];
        for (set, field, unit) in cases {
            match validate_with(set).expect_err(field) {
                Error::InvalidInput {
                    field: got,
                    value,
                    allowed,
                } => {
                    assert_eq!(got, field);
                    assert!(allowed.contains(unit), "{field}: {allowed}");
                    // 1e300 is shown as such, not as its 301 digits.
                    assert!(value.len() < 12, "{field}: {value}");
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            rejected_field(|m| m.battery.discharge_efficiency = 0.001),
            "microgrid.battery.discharge_efficiency"
        );
    }

    #[test]
    fn accepts_the_range_ends() {
        validate_with(|m| {
            m.tie_capacity_mw = MAX_MICROGRID_MW;
            m.wind.rated_mw = MAX_MICROGRID_MW;
            m.wind.cut_out_ms = MAX_WIND_SPEED_MS;
            m.tidal.cut_out_ms = MAX_TIDAL_SPEED_MS;
            m.pv.reference_irradiance_wm2 = MIN_REFERENCE_IRRADIANCE_WM2;
            m.battery.capacity_mwh = MAX_BATTERY_MWH;
            m.battery.charge_efficiency = MIN_EFFICIENCY;
            m.battery.cost_per_mwh = MAX_PRICE_PER_MWH;
            m.load.peak_mw = 0.0;
            m.weather.wind_speed_ms[0] = MAX_WIND_SPEED_MS;
        })
        .expect("every bound is inclusive");
    }

    #[test]
    fn long_bus_lists_are_truncated() {
        let ids: Vec<usize> = (1..=30).map(|i| i * 10).collect();
        let text = describe_bus_ids(&ids);
        assert!(
            text.ends_with("10, 20, 30, 40, 50, 60, 70, 80, 90, 100, ... 20 more"),
            "{text}"
        );
        assert_eq!(describe_bus_ids(&[3, 1, 2]), "a bus of the case: 1..3");
    }
}
