//! The IEEE RTS-79 load model (Tables 1-3 of the RTS Task Force paper, IEEE Trans.
//! PAS-98(6), 1979): hourly load = annual peak x weekly% x daily% x hourly%.

use crate::error::{Error, Result};

/// Weekly peak load, % of the annual peak, weeks 1..=52 (Table 1).
pub const WEEKLY_PEAK_PCT: [f64; 52] = [
    86.2, 90.0, 87.8, 83.4, 88.0, 84.1, 83.2, 80.6, 74.0, 73.7, 71.5, 72.7, //
    70.4, 75.0, 72.1, 80.0, 75.4, 83.7, 87.0, 88.0, 85.6, 81.1, 90.0, 88.7, //
    89.6, 86.1, 75.5, 81.6, 80.1, 88.0, 72.2, 77.6, 80.0, 72.9, 72.6, 70.5, //
    78.0, 69.5, 72.4, 72.4, 74.3, 74.4, 80.0, 88.1, 88.5, 90.9, 94.0, 89.0, //
    94.2, 97.0, 100.0, 95.2,
];

/// Daily peak load, % of the weekly peak, Monday..Sunday (Table 2).
pub const DAILY_PEAK_PCT: [f64; 7] = [93.0, 100.0, 98.0, 96.0, 94.0, 77.0, 75.0];

/// Hourly load, % of the daily peak, hour 0 = 00:00-01:00 (Table 3); rows are indexed by
/// [`hourly_row`]: winter weekday/weekend, summer weekday/weekend, spring-fall
/// weekday/weekend.
pub const HOURLY_PCT: [[f64; 24]; 6] = [
    [
        67.0, 63.0, 60.0, 59.0, 59.0, 60.0, 74.0, 86.0, 95.0, 96.0, 96.0, 95.0, //
        95.0, 95.0, 93.0, 94.0, 99.0, 100.0, 100.0, 96.0, 91.0, 83.0, 73.0, 63.0,
    ],
    [
        78.0, 72.0, 68.0, 66.0, 64.0, 65.0, 66.0, 70.0, 80.0, 88.0, 90.0, 91.0, //
        90.0, 88.0, 87.0, 87.0, 91.0, 100.0, 99.0, 97.0, 94.0, 92.0, 87.0, 81.0,
    ],
    [
        64.0, 60.0, 58.0, 56.0, 56.0, 58.0, 64.0, 76.0, 87.0, 95.0, 99.0, 100.0, //
        99.0, 100.0, 100.0, 97.0, 96.0, 96.0, 93.0, 92.0, 92.0, 93.0, 87.0, 72.0,
    ],
    [
        74.0, 70.0, 66.0, 65.0, 64.0, 62.0, 62.0, 66.0, 81.0, 86.0, 91.0, 93.0, //
        93.0, 92.0, 91.0, 91.0, 92.0, 94.0, 95.0, 95.0, 100.0, 93.0, 88.0, 80.0,
    ],
    [
        63.0, 62.0, 60.0, 58.0, 59.0, 65.0, 72.0, 85.0, 95.0, 99.0, 100.0, 99.0, //
        93.0, 92.0, 90.0, 88.0, 90.0, 92.0, 96.0, 98.0, 96.0, 90.0, 80.0, 70.0,
    ],
    [
        75.0, 73.0, 69.0, 66.0, 65.0, 65.0, 68.0, 74.0, 83.0, 89.0, 92.0, 94.0, //
        91.0, 90.0, 90.0, 86.0, 85.0, 88.0, 92.0, 100.0, 97.0, 95.0, 90.0, 85.0,
    ],
];

/// Week of the annual peak (1-based).
pub const PEAK_WEEK: usize = 51;

/// Day of the annual peak.
pub const PEAK_DAY: Weekday = Weekday::Tuesday;

/// Number of weeks in the RTS-79 year.
pub const WEEKS: usize = 52;

/// Load season, which selects the hourly profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Season {
    /// Weeks 1-8 and 44-52.
    Winter,
    /// Weeks 18-30.
    Summer,
    /// Weeks 9-17 and 31-43.
    SpringFall,
}

impl Season {
    /// Season of a 1-based week; weeks outside 1..=52 count as winter
    /// (callers validate the week, see [`day_profile`]).
    pub fn of_week(week: usize) -> Season {
        match week {
            18..=30 => Season::Summer,
            9..=17 | 31..=43 => Season::SpringFall,
            _ => Season::Winter,
        }
    }
}

/// Day of the week, Monday first as in the RTS-79 tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weekday {
    /// Monday.
    Monday,
    /// Tuesday.
    Tuesday,
    /// Wednesday.
    Wednesday,
    /// Thursday.
    Thursday,
    /// Friday.
    Friday,
    /// Saturday (weekend profile).
    Saturday,
    /// Sunday (weekend profile).
    Sunday,
}

impl Weekday {
    /// All days, Monday..Sunday.
    pub const ALL: [Weekday; 7] = [
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
        Weekday::Saturday,
        Weekday::Sunday,
    ];

    /// 0-based position, Monday = 0 (index into [`DAILY_PEAK_PCT`]).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the weekend hourly profile applies.
    pub fn is_weekend(self) -> bool {
        matches!(self, Weekday::Saturday | Weekday::Sunday)
    }
}

/// Hourly profile (% of daily peak) for a season and day type.
pub fn hourly_row(season: Season, weekend: bool) -> &'static [f64; 24] {
    let base = match season {
        Season::Winter => 0,
        Season::Summer => 2,
        Season::SpringFall => 4,
    };
    &HOURLY_PCT[base + usize::from(weekend)]
}

/// The 24 hourly loads of a day as fractions of the annual peak, week 1..=52.
pub fn day_profile(week: usize, day: Weekday) -> Result<[f64; 24]> {
    day_profile_with_season(week, day, None)
}

/// As [`day_profile`], but with the hourly shape of `season_override` when given (e.g. to
/// study a summer-shaped day at the winter peak).
pub fn day_profile_with_season(
    week: usize,
    day: Weekday,
    season_override: Option<Season>,
) -> Result<[f64; 24]> {
    if !(1..=WEEKS).contains(&week) {
        return Err(Error::invalid("load.week", week, "1..=52"));
    }
    let season = season_override.unwrap_or_else(|| Season::of_week(week));
    let hourly = hourly_row(season, day.is_weekend());
    let day_pct = WEEKLY_PEAK_PCT[week - 1] * DAILY_PEAK_PCT[day.index()];
    // Divide once at the end so the peak hour is exactly 100*100*100/1e6 = 1.0.
    Ok(hourly.map(|h| day_pct * h / 1e6))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANNUAL_PEAK_MW: f64 = 2850.0;

    #[test]
    fn full_year_matches_reference_self_check() {
        let mut energy_mwh = 0.0;
        let mut max_mw = f64::MIN;
        let mut max_at = (0, Weekday::Monday, 0);
        let mut hours = 0usize;
        for week in 1..=WEEKS {
            for day in Weekday::ALL {
                let profile = day_profile(week, day).expect("valid week");
                for (hour, fraction) in profile.iter().enumerate() {
                    let mw = ANNUAL_PEAK_MW * fraction;
                    energy_mwh += mw;
                    hours += 1;
                    if mw > max_mw {
                        max_mw = mw;
                        max_at = (week, day, hour);
                    }
                }
            }
        }
        assert_eq!(hours, 8736);
        assert_eq!(max_mw, ANNUAL_PEAK_MW);
        assert_eq!((max_at.0, max_at.1), (PEAK_WEEK, PEAK_DAY));
        let energy_gwh = energy_mwh / 1000.0;
        assert!(
            (energy_gwh - 15_297.07).abs() < 0.01,
            "energy {energy_gwh} GWh"
        );
        let load_factor = energy_mwh / (max_mw * hours as f64);
        assert!(
            (load_factor - 0.6144).abs() < 1e-4,
            "load factor {load_factor}"
        );
    }

    #[test]
    fn peak_day_profile_peaks_at_hours_17_and_18() {
        let profile = day_profile(PEAK_WEEK, PEAK_DAY).expect("valid week");
        let max = profile.iter().copied().fold(f64::MIN, f64::max);
        assert_eq!(max, 1.0);
        let at_max: Vec<usize> = (0..24).filter(|&h| profile[h] == max).collect();
        assert_eq!(at_max, vec![17, 18]);
        // Winter weekday minimum is 59 % of the daily peak, at hours 3 and 4.
        let min = profile.iter().copied().fold(f64::MAX, f64::min);
        assert!((min - 0.59).abs() < 1e-12, "min {min}");
        assert_eq!(profile[3], min);
        assert_eq!(profile[4], min);
    }

    #[test]
    fn out_of_range_week_is_an_error_naming_the_field() {
        for week in [0, 53, usize::MAX] {
            match day_profile(week, Weekday::Monday) {
                Err(Error::InvalidInput { field, value, .. }) => {
                    assert_eq!(field, "load.week");
                    assert_eq!(value, week.to_string());
                }
                other => panic!("week {week}: expected InvalidInput, got {other:?}"),
            }
        }
    }

    #[test]
    fn season_boundaries() {
        let expected = [
            (1, Season::Winter),
            (8, Season::Winter),
            (9, Season::SpringFall),
            (17, Season::SpringFall),
            (18, Season::Summer),
            (30, Season::Summer),
            (31, Season::SpringFall),
            (43, Season::SpringFall),
            (44, Season::Winter),
            (52, Season::Winter),
        ];
        for (week, season) in expected {
            assert_eq!(Season::of_week(week), season, "week {week}");
        }
    }

    #[test]
    fn weekend_and_season_override_select_the_right_row() {
        let summer_sat = day_profile(20, Weekday::Saturday).expect("valid week");
        let pct = WEEKLY_PEAK_PCT[19] * DAILY_PEAK_PCT[5];
        for (h, value) in summer_sat.iter().enumerate() {
            assert_eq!(*value, pct * HOURLY_PCT[3][h] / 1e6);
        }
        let overridden =
            day_profile_with_season(PEAK_WEEK, PEAK_DAY, Some(Season::Summer)).expect("valid");
        assert_eq!(overridden[11], 1.0);
        assert_eq!(overridden[17], 0.96);
    }

    #[test]
    fn serde_names_are_snake_case() {
        let text = serde_json::to_string(&Season::SpringFall).expect("serialize");
        assert_eq!(text, "\"spring_fall\"");
        let day: Weekday = serde_json::from_str("\"tuesday\"").expect("deserialize");
        assert_eq!(day, Weekday::Tuesday);
    }
}
