//! Default microgrid: ratings, prices and ILLUSTRATIVE 24-hour weather and load profiles.
//!
//! The paper publishes no microgrid data and its trades (tens of kW) vanish against the
//! 2850 MW RTS-24. The defaults here size the microgrid in tens of MW, so that its trades
//! move the smart grid's dispatch and prices visibly, while staying within one tie line.
//!
//! **All profiles are ILLUSTRATIVE: synthetic curves shaped after typical data, not
//! measurements.** Each is given by a closed formula evaluated at mid-hour
//! `tau = t + 0.5` (hour `t` runs from `t:00` to `t+1:00`) and rounded; the tests check
//! the tabulated values against the formulas. The day is the RTS-79 annual-peak day
//! (a Tuesday in week 51, December), so the sun is a winter sun.

use crate::data::rts79::Season;

use super::{
    Battery, BatteryPlan, HOURS, Microgrid, MicrogridLoad, PvArray, TidalTurbine, Weather,
    WindTurbine,
};

/// Default point of common coupling: RTS-24 bus 7.
///
/// A 138 kV bus with 125 MW of peak load and three 100 MW units, joined to the rest of
/// the system by line 7-8 (175 MVA rate A). A tie of [`DEFAULT_TIE_CAPACITY_MW`] either
/// way is well inside that rating and can be offset by the local units and load, so the
/// microgrid's trades shift dispatch without making the case infeasible.
pub const DEFAULT_PCC_BUS: usize = 7;

/// Default tie-line capacity at the PCC, MW (both directions); above the microgrid's
/// largest import (peak load + full charging = 55 MW) and largest export (about 32 MW:
/// a 22 MW renewable surplus at 15:00 plus full discharge).
pub const DEFAULT_TIE_CAPACITY_MW: f64 = 60.0;

/// Wind farm rating, MW.
pub const WIND_RATED_MW: f64 = 40.0;
/// Wind cut-in speed, m/s (typical utility-scale turbine).
pub const WIND_CUT_IN_MS: f64 = 3.0;
/// Wind rated speed, m/s.
pub const WIND_RATED_MS: f64 = 12.0;
/// Wind cut-out speed, m/s.
pub const WIND_CUT_OUT_MS: f64 = 25.0;
/// Wind generation price CW, $/MWh (small: no fuel, only variable O&M).
pub const WIND_COST_PER_MWH: f64 = 4.0;

/// PV rating Q at the reference irradiance, MW.
pub const PV_RATED_MW: f64 = 25.0;
/// PV reference irradiance Z, W/m^2 (standard test conditions).
pub const PV_REFERENCE_IRRADIANCE_WM2: f64 = 1000.0;
/// PV loss fraction R_loss (inverter, wiring, soiling and temperature, lumped).
pub const PV_LOSS_FRACTION: f64 = 0.14;
/// PV generation price RPV, $/MWh.
pub const PV_COST_PER_MWH: f64 = 3.0;

/// Tidal turbine rating, MW.
pub const TIDAL_RATED_MW: f64 = 15.0;
/// Tidal cut-in current, m/s.
pub const TIDAL_CUT_IN_MS: f64 = 0.7;
/// Tidal rated current, m/s.
pub const TIDAL_RATED_MS: f64 = 2.5;
/// Tidal cut-out current, m/s.
pub const TIDAL_CUT_OUT_MS: f64 = 4.5;
/// Tidal generation price RTI, $/MWh (the dearest renewable: subsea O&M).
pub const TIDAL_COST_PER_MWH: f64 = 6.0;

/// Battery energy capacity, MWh (4 h at full power).
pub const BATTERY_CAPACITY_MWH: f64 = 40.0;
/// Battery maximum charging power, MW.
pub const BATTERY_MAX_CHARGE_MW: f64 = 10.0;
/// Battery maximum discharging power, MW.
pub const BATTERY_MAX_DISCHARGE_MW: f64 = 10.0;
/// Minimum state of charge, fraction of capacity.
pub const BATTERY_SOC_MIN: f64 = 0.1;
/// Maximum state of charge, fraction of capacity.
pub const BATTERY_SOC_MAX: f64 = 0.95;
/// Initial state of charge, fraction of capacity.
pub const BATTERY_SOC_INITIAL: f64 = 0.5;
/// Charging efficiency (0.95 each way: ~90 % round trip, typical Li-ion).
pub const BATTERY_CHARGE_EFFICIENCY: f64 = 0.95;
/// Discharging efficiency.
pub const BATTERY_DISCHARGE_EFFICIENCY: f64 = 0.95;
/// Battery throughput (degradation) price RB, $/MWh charged or discharged.
pub const BATTERY_COST_PER_MWH: f64 = 2.0;

/// Microgrid peak demand, MW.
pub const LOAD_PEAK_MW: f64 = 45.0;

/// ILLUSTRATIVE hourly demand, fraction of [`LOAD_PEAK_MW`]: a mixed residential /
/// commercial winter weekday, hand-shaped (no formula): night trough 0.45 at 03:00,
/// morning ramp, a commercial plateau ~0.82 through the working day and the residential
/// evening peak 1.00 at 18:00 (lighting and heating).
pub const LOAD_PROFILE: [f64; HOURS] = [
    0.52, 0.48, 0.46, 0.45, 0.46, 0.50, 0.60, 0.72, 0.80, 0.82, 0.82, 0.83, //
    0.84, 0.82, 0.80, 0.81, 0.88, 0.97, 1.00, 0.97, 0.90, 0.80, 0.68, 0.58,
];

/// Mean of the ILLUSTRATIVE wind-speed cycle, m/s.
pub const WIND_MEAN_MS: f64 = 8.0;
/// Amplitude of the ILLUSTRATIVE wind-speed cycle, m/s.
pub const WIND_AMPLITUDE_MS: f64 = 6.0;
/// Mid-hour time of the ILLUSTRATIVE wind-speed minimum, h.
pub const WIND_MIN_AT_H: f64 = 3.5;

/// ILLUSTRATIVE hub-height wind speed, m/s, rounded to 0.1:
/// `v = 8 - 6 cos(2 pi (tau - 3.5) / 24)`, a diurnal cycle (calm before dawn, windy
/// afternoon) exaggerated so every branch of eq. (21) appears: below cut-in (hours 1-5),
/// cubic (0, 6-11, 19-23) and rated (12-18).
pub const WIND_SPEED_MS: [f64; HOURS] = [
    3.8, 2.8, 2.2, 2.0, 2.2, 2.8, 3.8, 5.0, 6.4, 8.0, 9.6, 11.0, //
    12.2, 13.2, 13.8, 14.0, 13.8, 13.2, 12.2, 11.0, 9.6, 8.0, 6.4, 5.0,
];

/// Peak plane-of-array irradiance of the ILLUSTRATIVE clear winter day, W/m^2.
pub const IRRADIANCE_PEAK_WM2: f64 = 600.0;
/// Sunrise of the ILLUSTRATIVE winter day, h (solar time, ~47 deg N in December).
pub const SUNRISE_H: f64 = 7.75;
/// Sunset of the ILLUSTRATIVE winter day, h (8.5 h of daylight).
pub const SUNSET_H: f64 = 16.25;

/// ILLUSTRATIVE plane-of-array irradiance, W/m^2, rounded to 1:
/// `G = 600 sin(pi (tau - 7.75) / 8.5)` between sunrise 07:45 and sunset 16:15, zero
/// otherwise: a clear December day near 45-50 deg N on a tilted array, peaking at
/// 590 W/m^2 in the two hours around noon.
pub const IRRADIANCE_WM2: [f64; HOURS] = [
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 164.0, 362.0, 510.0, 590.0, //
    590.0, 510.0, 362.0, 164.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
];

/// Peak current of the ILLUSTRATIVE tide, m/s.
pub const TIDAL_PEAK_MS: f64 = 3.0;
/// Period of the principal lunar semi-diurnal (M2) tide, h.
pub const M2_PERIOD_H: f64 = 12.42;
/// Time of slack water in the ILLUSTRATIVE tide, h.
pub const TIDAL_SLACK_AT_H: f64 = 1.0;

/// ILLUSTRATIVE tidal current speed, m/s, rounded to 0.01:
/// `|v| = 3 |sin(2 pi (tau - 1.0) / 12.42)|`, a pure M2 tide (flood and ebb alike), so
/// slack water near 01:00, 07:13, 13:25 and 19:38 drops the turbine below cut-in.
pub const TIDAL_CURRENT_MS: [f64; HOURS] = [
    0.75, 0.75, 2.06, 2.86, 2.94, 2.28, 1.05, 0.44, 1.82, 2.75, 2.99, 2.48, //
    1.35, 0.12, 1.56, 2.61, 3.00, 2.64, 1.62, 0.20, 1.28, 2.43, 2.98, 2.78,
];

impl Default for WindTurbine {
    /// The 40 MW default wind farm.
    fn default() -> Self {
        WindTurbine {
            rated_mw: WIND_RATED_MW,
            cut_in_ms: WIND_CUT_IN_MS,
            rated_ms: WIND_RATED_MS,
            cut_out_ms: WIND_CUT_OUT_MS,
            cost_per_mwh: WIND_COST_PER_MWH,
        }
    }
}

impl Default for PvArray {
    /// The 25 MW default PV array.
    fn default() -> Self {
        PvArray {
            rated_mw: PV_RATED_MW,
            reference_irradiance_wm2: PV_REFERENCE_IRRADIANCE_WM2,
            loss_fraction: PV_LOSS_FRACTION,
            cost_per_mwh: PV_COST_PER_MWH,
        }
    }
}

impl Default for TidalTurbine {
    /// The 15 MW default tidal turbine.
    fn default() -> Self {
        TidalTurbine {
            rated_mw: TIDAL_RATED_MW,
            cut_in_ms: TIDAL_CUT_IN_MS,
            rated_ms: TIDAL_RATED_MS,
            cut_out_ms: TIDAL_CUT_OUT_MS,
            cost_per_mwh: TIDAL_COST_PER_MWH,
        }
    }
}

impl Default for Battery {
    /// The 40 MWh / 10 MW default battery, half full.
    fn default() -> Self {
        Battery {
            capacity_mwh: BATTERY_CAPACITY_MWH,
            max_charge_mw: BATTERY_MAX_CHARGE_MW,
            max_discharge_mw: BATTERY_MAX_DISCHARGE_MW,
            soc_min: BATTERY_SOC_MIN,
            soc_max: BATTERY_SOC_MAX,
            soc_initial: BATTERY_SOC_INITIAL,
            charge_efficiency: BATTERY_CHARGE_EFFICIENCY,
            discharge_efficiency: BATTERY_DISCHARGE_EFFICIENCY,
            cost_per_mwh: BATTERY_COST_PER_MWH,
        }
    }
}

impl Default for MicrogridLoad {
    /// The 45 MW peak default load with the illustrative winter-weekday shape.
    fn default() -> Self {
        MicrogridLoad {
            peak_mw: LOAD_PEAK_MW,
            profile: LOAD_PROFILE.to_vec(),
        }
    }
}

/// The ILLUSTRATIVE daily cycles of a season (the default weather of a scenario whose
/// `[load]` season it is): wind mean and amplitude (m/s), peak irradiance (W/m^2),
/// sunrise and sunset (h, solar time near 47 deg N on a tilted array). The tide is the
/// same M2 tide in every season. Winter is the tabulated day above.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeasonalCycle {
    /// Mean wind speed, m/s.
    pub wind_mean_ms: f64,
    /// Amplitude of the diurnal wind cycle, m/s.
    pub wind_amplitude_ms: f64,
    /// Peak irradiance, W/m^2.
    pub irradiance_peak_wm2: f64,
    /// Sunrise, h.
    pub sunrise_h: f64,
    /// Sunset, h.
    pub sunset_h: f64,
}

impl SeasonalCycle {
    /// The ILLUSTRATIVE cycle of `season`: winter as tabulated above; summer with a long,
    /// strong sun (a clear late-June day: 04:30 to 19:30, 950 W/m^2) and lighter winds
    /// (mean 6, amplitude 4 m/s); spring and fall at the equinox (06:00 to 18:00, 800
    /// W/m^2; mean 7, amplitude 5 m/s). Shaped after typical mid-latitude data, not
    /// measured.
    pub fn of(season: Season) -> SeasonalCycle {
        match season {
            Season::Winter => SeasonalCycle {
                wind_mean_ms: WIND_MEAN_MS,
                wind_amplitude_ms: WIND_AMPLITUDE_MS,
                irradiance_peak_wm2: IRRADIANCE_PEAK_WM2,
                sunrise_h: SUNRISE_H,
                sunset_h: SUNSET_H,
            },
            Season::Summer => SeasonalCycle {
                wind_mean_ms: 6.0,
                wind_amplitude_ms: 4.0,
                irradiance_peak_wm2: 950.0,
                sunrise_h: 4.5,
                sunset_h: 19.5,
            },
            Season::SpringFall => SeasonalCycle {
                wind_mean_ms: 7.0,
                wind_amplitude_ms: 5.0,
                irradiance_peak_wm2: 800.0,
                sunrise_h: 6.0,
                sunset_h: 18.0,
            },
        }
    }

    /// Wind speed at hour `t`, m/s, rounded to 0.1 (the formula of [`WIND_SPEED_MS`]).
    pub fn wind_ms(&self, t: usize) -> f64 {
        let tau = t as f64 + 0.5;
        let v = self.wind_mean_ms
            - self.wind_amplitude_ms
                * (2.0 * std::f64::consts::PI * (tau - WIND_MIN_AT_H) / 24.0).cos();
        (v * 10.0).round() / 10.0
    }

    /// Irradiance at hour `t`, W/m^2, rounded to 1 (the formula of [`IRRADIANCE_WM2`]).
    pub fn irradiance_wm2(&self, t: usize) -> f64 {
        let tau = t as f64 + 0.5;
        if tau <= self.sunrise_h || tau >= self.sunset_h {
            return 0.0;
        }
        let x = std::f64::consts::PI * (tau - self.sunrise_h) / (self.sunset_h - self.sunrise_h);
        (self.irradiance_peak_wm2 * x.sin()).round()
    }
}

impl Weather {
    /// The ILLUSTRATIVE default weather of `season` ([`SeasonalCycle::of`]); winter is
    /// [`Weather::default`].
    pub fn for_season(season: Season) -> Weather {
        let c = SeasonalCycle::of(season);
        Weather {
            wind_speed_ms: (0..HOURS).map(|t| c.wind_ms(t)).collect(),
            irradiance_wm2: (0..HOURS).map(|t| c.irradiance_wm2(t)).collect(),
            tidal_current_ms: TIDAL_CURRENT_MS.to_vec(),
        }
    }
}

impl Default for Weather {
    /// The illustrative winter day: wind cycle, clear-sky sun and M2 tide.
    fn default() -> Self {
        Weather {
            wind_speed_ms: WIND_SPEED_MS.to_vec(),
            irradiance_wm2: IRRADIANCE_WM2.to_vec(),
            tidal_current_ms: TIDAL_CURRENT_MS.to_vec(),
        }
    }
}

impl Default for BatteryPlan {
    /// The microgrid schedules its own battery.
    fn default() -> Self {
        BatteryPlan::SelfSchedule
    }
}

impl Default for Microgrid {
    /// The enabled default microgrid at bus 7 with a 60 MW tie.
    fn default() -> Self {
        Microgrid {
            enabled: true,
            pcc_bus: DEFAULT_PCC_BUS,
            tie_capacity_mw: DEFAULT_TIE_CAPACITY_MW,
            wind: WindTurbine::default(),
            pv: PvArray::default(),
            tidal: TidalTurbine::default(),
            battery: Battery::default(),
            load: MicrogridLoad::default(),
            weather: Weather::default(),
            battery_plan: BatteryPlan::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn mid_hour(t: usize) -> f64 {
        t as f64 + 0.5
    }

    #[test]
    fn wind_table_matches_formula() {
        for (t, &v) in WIND_SPEED_MS.iter().enumerate() {
            let f = WIND_MEAN_MS
                - WIND_AMPLITUDE_MS * (2.0 * PI * (mid_hour(t) - WIND_MIN_AT_H) / 24.0).cos();
            assert!((v - f).abs() <= 0.05 + 1e-9, "hour {t}: {v} vs {f}");
        }
    }

    #[test]
    fn irradiance_table_matches_formula() {
        for (t, &g) in IRRADIANCE_WM2.iter().enumerate() {
            let tau = mid_hour(t);
            let f = if tau > SUNRISE_H && tau < SUNSET_H {
                IRRADIANCE_PEAK_WM2 * (PI * (tau - SUNRISE_H) / (SUNSET_H - SUNRISE_H)).sin()
            } else {
                0.0
            };
            assert!((g - f).abs() <= 0.5 + 1e-9, "hour {t}: {g} vs {f}");
        }
        let peak = IRRADIANCE_WM2.iter().copied().fold(0.0, f64::max);
        assert!((550.0..=650.0).contains(&peak));
    }

    #[test]
    fn tidal_table_matches_formula() {
        for (t, &v) in TIDAL_CURRENT_MS.iter().enumerate() {
            let f = TIDAL_PEAK_MS
                * (2.0 * PI * (mid_hour(t) - TIDAL_SLACK_AT_H) / M2_PERIOD_H)
                    .sin()
                    .abs();
            assert!((v - f).abs() <= 0.005 + 1e-9, "hour {t}: {v} vs {f}");
        }
    }

    #[test]
    fn seasonal_weather_follows_its_cycle() {
        // Winter is the tabulated day exactly.
        assert_eq!(Weather::for_season(Season::Winter), Weather::default());
        let summer = Weather::for_season(Season::Summer);
        let equinox = Weather::for_season(Season::SpringFall);
        let winter = Weather::default();
        let daylight = |w: &Weather| w.irradiance_wm2.iter().filter(|&&g| g > 0.0).count();
        let energy = |w: &Weather| w.irradiance_wm2.iter().sum::<f64>();
        assert_eq!(
            (daylight(&winter), daylight(&equinox), daylight(&summer)),
            // Mid-hour samples inside 8.5, 12 and 15 h of daylight.
            (8, 12, 14)
        );
        assert!(energy(&winter) < energy(&equinox) && energy(&equinox) < energy(&summer));
        // Summer noon by hand: 950 sin(pi (12.5 - 4.5) / 15) = 950 sin(8 pi / 15).
        assert_eq!(
            summer.irradiance_wm2[12],
            (950.0 * (8.0 * PI / 15.0).sin()).round()
        );
        let mean = |w: &Weather| w.wind_speed_ms.iter().sum::<f64>() / 24.0;
        assert!((mean(&summer) - 6.0).abs() < 0.05 && (mean(&equinox) - 7.0).abs() < 0.05);
        assert_eq!(summer.tidal_current_ms, winter.tidal_current_ms);
    }

    #[test]
    fn load_profile_peaks_at_one() {
        let max = LOAD_PROFILE.iter().copied().fold(0.0, f64::max);
        assert_eq!(max, 1.0);
        assert!(LOAD_PROFILE.iter().all(|&f| (0.0..=1.0).contains(&f)));
    }

    #[test]
    fn every_power_curve_branch_appears_in_the_day() {
        let w = WindTurbine::default();
        assert!(WIND_SPEED_MS.iter().any(|&v| v < w.cut_in_ms));
        assert!(
            WIND_SPEED_MS
                .iter()
                .any(|&v| v >= w.cut_in_ms && v < w.rated_ms)
        );
        assert!(
            WIND_SPEED_MS
                .iter()
                .any(|&v| v >= w.rated_ms && v < w.cut_out_ms)
        );
        let t = TidalTurbine::default();
        assert!(TIDAL_CURRENT_MS.iter().any(|&v| v < t.cut_in_ms));
        assert!(
            TIDAL_CURRENT_MS
                .iter()
                .any(|&v| v >= t.cut_in_ms && v < t.rated_ms)
        );
        assert!(
            TIDAL_CURRENT_MS
                .iter()
                .any(|&v| v >= t.rated_ms && v < t.cut_out_ms)
        );
    }

    #[test]
    fn default_microgrid_both_buys_and_sells_within_the_tie() {
        let mg = Microgrid::default();
        let hourly = mg.hourly();
        let b = &mg.battery;
        // with renewables at full output the microgrid has a surplus in some hours and a
        // deficit in others, so trades go both ways
        assert!(hourly.iter().any(|h| h.net_load_mw() > 0.0));
        assert!(hourly.iter().any(|h| h.net_load_mw() < 0.0));
        // the tie never binds for the microgrid on its own: worst import is full load plus
        // full charging, worst export is all renewables plus full discharge minus load
        for h in &hourly {
            assert!(h.load_mw + b.max_charge_mw <= mg.tie_capacity_mw);
            assert!(h.renewable_mw() + b.max_discharge_mw - h.load_mw <= mg.tie_capacity_mw);
        }
    }

    #[test]
    fn defaults_round_trip_through_toml() {
        let mg = Microgrid::default();
        let text = toml::to_string(&mg).expect("serialize");
        let back: Microgrid = toml::from_str(&text).expect("deserialize");
        assert_eq!(back, mg);
        // an empty table means "all defaults" (serde(default))
        let empty: Microgrid = toml::from_str("").expect("empty");
        assert_eq!(empty, mg);
    }
}
