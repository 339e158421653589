//! Reader for MATPOWER version-2 case files (`mpc.baseMVA`, `mpc.bus`, `mpc.gen`,
//! `mpc.branch`, `mpc.gencost`). Only what a DC market model needs is kept; anything the
//! reader cannot represent faithfully is an error naming the file, the line and the row,
//! never silently dropped:
//! - piecewise-linear gencost, polynomial order > 2, a missing `mpc.version` or version 1;
//! - non-empty fields that would change an OPF result and that the model does not have
//!   ([`UNSUPPORTED_FIELDS`]: DC lines, user constraints and costs, reserves, interface
//!   and soft limits);
//! - dubious data: self-loop branches, in-service reactances outside
//!   [`MIN_REACTANCE_PU`]..=[`MAX_REACTANCE_PU`], absurd magnitudes (powers beyond
//!   [`MAX_CASE_MW`], costs beyond [`MAX_COST_COEFFICIENT`]), in-service generators or
//!   branches and loads at isolated (type 4) buses, which MATPOWER would silently drop;
//! - a network that falls apart into islands ([`Case::check_connected`]).

use std::collections::HashMap;

use crate::error::{Error, Result};

/// One row of `mpc.bus` (the columns a DC model uses).
#[derive(Debug, Clone, PartialEq)]
pub struct Bus {
    /// External bus number (`BUS_I`).
    pub id: usize,
    /// Bus type (1 PQ, 2 PV, 3 reference, 4 isolated).
    pub kind: u8,
    /// Active demand, MW (`PD`).
    pub pd_mw: f64,
    /// Reactive demand, MVAr (`QD`), kept for completeness.
    pub qd_mvar: f64,
    /// Shunt conductance, MW demanded at 1 p.u. voltage (`GS`). The DC model counts it as
    /// a constant load at the bus, as MATPOWER's `makeBdc`/`dcopf` do.
    pub gs_mw: f64,
}

/// One row of `mpc.gen` joined with its `mpc.gencost` row.
#[derive(Debug, Clone, PartialEq)]
pub struct Generator {
    /// External number of the bus the unit is connected to.
    pub bus: usize,
    /// In service (`GEN_STATUS` > 0). Out-of-service units are kept but never dispatched.
    pub in_service: bool,
    /// Maximum active output, MW (`PMAX`).
    pub pmax_mw: f64,
    /// Minimum active output when committed, MW (`PMIN`).
    pub pmin_mw: f64,
    /// 30-minute ramp limit, MW (`RAMP_30`); 0 means no ramp limit.
    pub ramp_30_mw: f64,
    /// Quadratic cost coefficient c2, $/MW^2h (gencost model 2).
    pub c2: f64,
    /// Linear cost coefficient c1, $/MWh.
    pub c1: f64,
    /// No-load cost c0, $/h (paid each hour the unit is committed).
    pub c0: f64,
    /// Start-up cost, $ (kept for reporting; the market model has fixed commitment).
    pub startup_cost: f64,
}

/// One row of `mpc.branch` (the columns a DC model uses).
#[derive(Debug, Clone, PartialEq)]
pub struct Branch {
    /// External "from" bus number.
    pub from: usize,
    /// External "to" bus number.
    pub to: usize,
    /// Series reactance, p.u. on `base_mva`.
    pub x_pu: f64,
    /// Long-term rating (`RATE_A`), MW; 0 means unlimited (MATPOWER convention).
    pub rate_a_mw: f64,
    /// Off-nominal tap ratio (`TAP`); 0 means 1.
    pub tap: f64,
    /// Phase-shift angle, degrees (`SHIFT`, positive: a delay of the to-bus angle). In the
    /// DC model it adds a fixed injection pair (MATPOWER's `makeBdc`, `Pfinj`/`Pbusinj`).
    pub shift_deg: f64,
    /// In service (`BR_STATUS` > 0).
    pub in_service: bool,
    /// 0-based row of `mpc.branch` in the file (kept when rows are dropped, as by
    /// [`Case::without_isolated`]).
    pub row: usize,
}

/// A parsed MATPOWER case.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// File name the case was read from (or `<embedded case24_ieee_rts>`), for errors.
    pub source_name: String,
    /// System MVA base.
    pub base_mva: f64,
    /// Buses in file order.
    pub buses: Vec<Bus>,
    /// Generators in file order, each with its cost row.
    pub generators: Vec<Generator>,
    /// Branches in file order.
    pub branches: Vec<Branch>,
}

/// Name used in errors for the embedded default case.
const EMBEDDED_NAME: &str = "<embedded case24_ieee_rts>";

// Minimum column counts and 1-based column numbers, from MATPOWER's caseformat.m.
const BUS_MIN_COLS: usize = 13;
const GEN_MIN_COLS: usize = 10;
const GEN_RAMP_30_COL: usize = 19;
const BRANCH_MIN_COLS: usize = 11;
const GENCOST_FIXED_COLS: usize = 4;

/// Largest magnitude of a power read from a case (`PD`, `GS`, `PMAX`, `PMIN`, `RAMP_30`,
/// `RATE_A`), MW: far above any real bus, unit or line.
pub const MAX_CASE_MW: f64 = 1e6;
/// Largest magnitude of a polynomial gencost coefficient (c2 in $/MW^2h, c1 in $/MWh,
/// c0 in $/h).
pub const MAX_COST_COEFFICIENT: f64 = 1e6;
/// Largest magnitude of a start-up cost, $.
pub const MAX_STARTUP_COST: f64 = 1e9;
/// Smallest |x| of an in-service branch, p.u.: a smaller one is a data error (or a
/// switch, which the DC model cannot represent) and ruins the network matrix.
pub const MIN_REACTANCE_PU: f64 = 1e-9;
/// Largest |x| of an in-service branch, p.u.
pub const MAX_REACTANCE_PU: f64 = 1e6;
/// Allowed `mpc.baseMVA`, MVA.
pub const BASE_MVA_RANGE: (f64, f64) = (1e-3, 1e6);
/// Allowed non-zero `TAP` ratio (0 means 1).
pub const TAP_RANGE: (f64, f64) = (1e-3, 1e3);
/// Largest |SHIFT|, degrees.
pub const MAX_SHIFT_DEG: f64 = 360.0;

/// MATPOWER fields that change an OPF result and that this DC market model does not
/// model, with the feature each one carries. A non-empty one is refused (ignoring it
/// would silently give another optimum); an empty matrix `[]` is fine.
pub const UNSUPPORTED_FIELDS: &[(&str, &str)] = &[
    ("dcline", "DC transmission lines (toggle_dcline)"),
    ("dclinecost", "DC line costs (toggle_dcline)"),
    ("A", "user-defined linear constraints"),
    ("l", "lower bounds of user-defined linear constraints"),
    ("u", "upper bounds of user-defined linear constraints"),
    ("N", "user-defined general costs"),
    ("Cw", "user-defined general cost coefficients"),
    ("H", "user-defined quadratic costs"),
    ("fparm", "user-defined general cost parameters"),
    ("z0", "user-defined variables (initial values)"),
    ("zl", "user-defined variables (lower bounds)"),
    ("zu", "user-defined variables (upper bounds)"),
    ("reserves", "reserve requirements (toggle_reserves)"),
    ("if", "interface flow limits (toggle_iflims)"),
    ("softlims", "soft limits (toggle_softlims)"),
    ("userfcn", "user callback functions (add_userfcn)"),
];

/// The feature carried by an unsupported field, `None` for any other field.
fn unsupported_feature(name: &str) -> Option<&'static str> {
    UNSUPPORTED_FIELDS
        .iter()
        .find(|(field, _)| *field == name)
        .map(|(_, feature)| *feature)
}

/// The refusal of a non-empty unsupported field.
fn unsupported(source_name: &str, line: usize, field: &str, feature: &str) -> Error {
    err(
        source_name,
        line,
        format!(
            "mpc.{field}: {feature} are not modelled by this DC market model, and ignoring \
             them would change the OPF result; remove the field or leave it empty (`[]`)"
        ),
    )
}

/// One parsed matrix row with the line its first value was on, for error messages.
#[derive(Debug)]
struct Row {
    line: usize,
    values: Vec<f64>,
}

/// A numeric matrix field (`mpc.bus = [ ... ];`).
#[derive(Debug)]
struct Matrix {
    /// Line of the `mpc.<name> =` statement.
    line: usize,
    rows: Vec<Row>,
}

/// A scalar field (`mpc.baseMVA = 100;`), kept as raw text until its type is known.
#[derive(Debug)]
struct Scalar {
    line: usize,
    text: String,
}

/// The fields of interest after the syntax pass.
#[derive(Debug, Default)]
struct RawCase {
    version: Option<Scalar>,
    base_mva: Option<Scalar>,
    bus: Option<Matrix>,
    gen_: Option<Matrix>,
    branch: Option<Matrix>,
    gencost: Option<Matrix>,
}

/// Items found inside a `[ ... ]` before rows are formed.
#[derive(Debug)]
enum MatrixItem {
    Value(usize, f64),
    Semicolon,
    Newline,
}

/// What the line scanner is in the middle of.
enum State {
    Top,
    /// Inside `[`; `keep` is false for fields this reader does not use (their text is
    /// skipped unparsed so that non-numeric content cannot fail the parse).
    Matrix {
        name: String,
        line: usize,
        keep: bool,
        /// The feature of an unsupported field ([`UNSUPPORTED_FIELDS`]): refused at `]`
        /// when any value was seen.
        refused: Option<&'static str>,
        /// Whether any value was seen (kept or not).
        seen: bool,
        items: Vec<MatrixItem>,
    },
    /// Inside `{` of a cell array, at the given brace depth.
    Cell {
        name: String,
        line: usize,
        depth: usize,
    },
}

/// Builds the file-problem error; quoted input in the message is cut to a sane length.
fn err(source_name: &str, line: usize, message: impl Into<String>) -> Error {
    Error::Matpower {
        source_name: source_name.to_string(),
        line,
        message: crate::error::clip_message(&message.into()),
    }
}

/// Whether `c` may end an operand, in which case a following `'` is MATLAB's transpose
/// operator rather than the start of a string.
fn ends_operand(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | ')' | ']' | '}' | '.' | '\'')
}

/// Removes a `%` comment, ignoring `%` inside quoted strings so that cell arrays of names
/// such as `{'Bus 5%'}` do not lose their closing brace.
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '%' => return &line[..i],
                '"' => quote = Some('"'),
                '\'' if !ends_operand(prev) => quote = Some('\''),
                _ => {}
            },
        }
        if !c.is_whitespace() {
            prev = c;
        }
    }
    line
}

/// Splits `mpc.<name> = <rest>` into name, the text between name and `=` (an index or
/// sub-field, normally empty) and the right-hand side. `None` for any other statement.
fn split_assignment(text: &str) -> Option<(&str, &str, &str)> {
    let rest = text.strip_prefix("mpc.")?;
    let name_len = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    let (name, after) = rest.split_at(name_len);
    let eq = after.find('=')?;
    // `==` is a comparison, not an assignment.
    if after[eq + 1..].starts_with('=') {
        return None;
    }
    Some((name, after[..eq].trim(), after[eq + 1..].trim()))
}

/// Whether the reader uses this matrix field (and so must parse it numerically).
fn is_kept_matrix(name: &str) -> bool {
    matches!(name, "bus" | "gen" | "branch" | "gencost")
}

/// Parses one value of a matrix. MATLAB's `Inf` and `NaN` parse: MATPOWER's large cases
/// put `Inf` in columns a DC model never reads (reactive limits `QMAX`/`QMIN`); each
/// semantic pass refuses them in the columns it uses ([`require_finite`]).
fn parse_value(token: &str, source_name: &str, field: &str, line: usize) -> Result<f64> {
    let value: f64 = token.parse().map_err(|_| {
        err(
            source_name,
            line,
            format!("mpc.{field}: `{token}` is not a number"),
        )
    })?;
    Ok(value)
}

/// MATLAB's spelling of a non-finite value.
fn matlab(value: f64) -> &'static str {
    if value.is_nan() {
        "NaN"
    } else if value > 0.0 {
        "Inf"
    } else {
        "-Inf"
    }
}

/// Refuses a non-finite value in a column the DC model reads (`(0-based column, name)`);
/// the other columns may hold `Inf` or `NaN`.
fn require_finite(
    row: &Row,
    columns: &[(usize, &str)],
    source_name: &str,
    what: &str,
) -> Result<()> {
    for &(c, name) in columns {
        if let Some(&v) = row.values.get(c)
            && !v.is_finite()
        {
            return Err(err(
                source_name,
                row.line,
                format!(
                    "{what}: {name} (column {}) is {}, which is not finite; Inf/NaN are accepted only in columns the DC model does not read",
                    c + 1,
                    matlab(v)
                ),
            ));
        }
    }
    Ok(())
}

/// Reads the values of one line inside `[ ... ]`, returning the text after the closing `]`
/// if the matrix ends on this line.
fn scan_matrix_line<'a>(
    text: &'a str,
    line: usize,
    source_name: &str,
    field: &str,
    keep: bool,
    seen: &mut bool,
    items: &mut Vec<MatrixItem>,
) -> Result<Option<&'a str>> {
    let mut start: Option<usize> = None;
    let mut flush = |start: &mut Option<usize>, end: usize, items: &mut Vec<MatrixItem>| {
        if let Some(s) = start.take() {
            *seen = true;
            if keep {
                items.push(MatrixItem::Value(
                    line,
                    parse_value(&text[s..end], source_name, field, line)?,
                ));
            }
        }
        Ok::<(), Error>(())
    };
    // MATLAB's continuation: `...` ends the line's content (what follows is a comment) and
    // joins the next line to this row.
    let (text, continued) = match text.find("...") {
        Some(at) => (&text[..at], true),
        None => (text, false),
    };
    for (i, c) in text.char_indices() {
        match c {
            ']' => {
                flush(&mut start, i, items)?;
                return Ok(Some(&text[i + 1..]));
            }
            ';' => {
                flush(&mut start, i, items)?;
                items.push(MatrixItem::Semicolon);
            }
            ',' => flush(&mut start, i, items)?,
            c if c.is_whitespace() => flush(&mut start, i, items)?,
            _ => {
                if start.is_none() {
                    start = Some(i);
                }
            }
        }
    }
    flush(&mut start, text.len(), items)?;
    if !continued {
        items.push(MatrixItem::Newline);
    }
    Ok(None)
}

/// The rows of the scanned items: a `;` ends a row, and so does a newline when
/// `newline_ends` (MATLAB's rule; a `...` continuation leaves no newline item).
fn rows_of(items: &[MatrixItem], newline_ends: bool) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    let mut current: Option<Row> = None;
    for item in items {
        match *item {
            MatrixItem::Value(l, v) => current
                .get_or_insert_with(|| Row {
                    line: l,
                    values: Vec::new(),
                })
                .values
                .push(v),
            MatrixItem::Semicolon => rows.extend(current.take()),
            MatrixItem::Newline if newline_ends => rows.extend(current.take()),
            MatrixItem::Newline => {}
        }
    }
    rows.extend(current.take());
    rows
}

/// Forms rows from the scanned items and checks the matrix is rectangular.
///
/// MATLAB ends a row at a `;` and at a newline (unless the line ends in `...`), and the
/// matrix is read that way when the result is rectangular: rows with and without `;` may
/// mix, as MATLAB allows. Hand-edited case files also wrap long `mpc.gen` rows across lines
/// without `...`, which MATLAB refuses: when MATLAB's reading is not rectangular and the
/// matrix uses `;` terminators, only `;` ends a row. The rectangularity check (which
/// MATLAB also enforces) catches files that fit neither reading.
fn build_rows(
    items: Vec<MatrixItem>,
    source_name: &str,
    field: &str,
    line: usize,
) -> Result<Matrix> {
    let rectangular = |rows: &[Row]| {
        rows.windows(2)
            .all(|w| w[0].values.len() == w[1].values.len())
    };
    let semicolon_rows = items.iter().any(|i| matches!(i, MatrixItem::Semicolon));
    let matlab = rows_of(&items, true);
    let rows = if rectangular(&matlab) || !semicolon_rows {
        matlab
    } else {
        rows_of(&items, false)
    };
    if let Some(first) = rows.first() {
        let width = first.values.len();
        if let Some(bad) = rows.iter().find(|r| r.values.len() != width) {
            return Err(err(
                source_name,
                bad.line,
                format!(
                    "mpc.{field}: row has {} columns but the first row (line {}) has {width}; \
                     matrix rows must all have the same length",
                    bad.values.len(),
                    first.line
                ),
            ));
        }
    }
    Ok(Matrix { line, rows })
}

/// Stores a kept field, rejecting a second assignment (MATLAB would silently take the
/// last, which hides editing mistakes).
fn store<T>(
    slot: &mut Option<T>,
    value: T,
    line_of: impl Fn(&T) -> usize,
    source_name: &str,
    field: &str,
) -> Result<()> {
    if let Some(previous) = slot {
        return Err(err(
            source_name,
            line_of(&value),
            format!(
                "mpc.{field} is assigned twice (first at line {})",
                line_of(previous)
            ),
        ));
    }
    *slot = Some(value);
    Ok(())
}

/// Syntax pass: finds the `mpc.*` assignments and reads the kept matrices' numbers.
fn scan(text: &str, source_name: &str) -> Result<RawCase> {
    let mut raw = RawCase::default();
    let mut state = State::Top;
    let mut block_comment_depth = 0usize;
    for (index, full_line) in text.lines().enumerate() {
        let line = index + 1;
        // MATLAB block comments: `%{` and `%}` alone on their lines, nestable.
        let trimmed_full = full_line.trim();
        if trimmed_full == "%{" {
            block_comment_depth += 1;
            continue;
        }
        if block_comment_depth > 0 {
            if trimmed_full == "%}" {
                block_comment_depth -= 1;
            }
            continue;
        }
        let mut rest = strip_comment(full_line);
        loop {
            match &mut state {
                State::Top => {
                    let trimmed = rest.trim();
                    let Some((name, index_part, rhs)) = split_assignment(trimmed) else {
                        // Anything that is not an `mpc.*` assignment (the `function` line,
                        // `end`, other code) carries no case data.
                        break;
                    };
                    let kept = is_kept_matrix(name) || matches!(name, "version" | "baseMVA");
                    let refused = unsupported_feature(name);
                    if !index_part.is_empty() && refused.is_none() {
                        if kept {
                            return Err(err(
                                source_name,
                                line,
                                format!(
                                    "indexed or sub-field assignment `mpc.{name}{index_part} = ...` \
                                     is not supported; assign the whole field (a file that computes its \
                                     data with MATLAB code, e.g. per-unit conversions, can be loaded in \
                                     MATLAB or Octave and written back with MATPOWER's savecase)"
                                ),
                            ));
                        }
                        break;
                    }
                    if let Some(after) = rhs.strip_prefix('[') {
                        if matches!(name, "version" | "baseMVA") {
                            return Err(err(
                                source_name,
                                line,
                                format!("mpc.{name} must be a scalar, found a matrix"),
                            ));
                        }
                        state = State::Matrix {
                            name: format!("{name}{index_part}"),
                            line,
                            keep: is_kept_matrix(name),
                            refused,
                            seen: false,
                            items: Vec::new(),
                        };
                        rest = after;
                        continue;
                    }
                    // Anything but a matrix (a cell, `sparse(...)`, a string) is non-empty.
                    if let Some(feature) = refused {
                        return Err(unsupported(
                            source_name,
                            line,
                            &format!("{name}{index_part}"),
                            feature,
                        ));
                    }
                    if let Some(after) = rhs.strip_prefix('{') {
                        if kept {
                            return Err(err(
                                source_name,
                                line,
                                format!("mpc.{name} must be numeric, found a cell array"),
                            ));
                        }
                        state = State::Cell {
                            name: name.to_string(),
                            line,
                            depth: 1,
                        };
                        rest = after;
                        continue;
                    }
                    if is_kept_matrix(name) {
                        return Err(err(
                            source_name,
                            line,
                            format!("mpc.{name} must be a matrix `[ ... ]`"),
                        ));
                    }
                    let value = rhs.split(';').next().unwrap_or("").trim().to_string();
                    let scalar = Scalar { line, text: value };
                    match name {
                        "version" => {
                            store(&mut raw.version, scalar, |s| s.line, source_name, name)?
                        }
                        "baseMVA" => {
                            store(&mut raw.base_mva, scalar, |s| s.line, source_name, name)?
                        }
                        _ => {}
                    }
                    break;
                }
                State::Matrix {
                    name,
                    line: start,
                    keep,
                    refused,
                    seen,
                    items,
                } => {
                    // A new field inside a matrix means a lost `]`; saying so beats
                    // reporting `mpc.x` as a non-numeric value.
                    if rest.trim_start().starts_with("mpc.") {
                        return Err(err(
                            source_name,
                            line,
                            format!(
                                "mpc.{name}: `[` opened at line {start} is not closed before the next field"
                            ),
                        ));
                    }
                    let Some(after) =
                        scan_matrix_line(rest, line, source_name, name, *keep, seen, items)?
                    else {
                        break;
                    };
                    if let Some(feature) = refused
                        && *seen
                    {
                        return Err(unsupported(source_name, *start, name, feature));
                    }
                    if after.trim_start().starts_with('\'') {
                        return Err(err(
                            source_name,
                            line,
                            format!("mpc.{name}: transposed matrix `]'` is not supported"),
                        ));
                    }
                    if *keep {
                        let matrix = build_rows(std::mem::take(items), source_name, name, *start)?;
                        let slot = match name.as_str() {
                            "bus" => &mut raw.bus,
                            "gen" => &mut raw.gen_,
                            "branch" => &mut raw.branch,
                            _ => &mut raw.gencost,
                        };
                        store(slot, matrix, |m| m.line, source_name, name)?;
                    }
                    state = State::Top;
                    // Whatever follows `]` on the line is the statement's `;`.
                    break;
                }
                State::Cell { depth, .. } => {
                    let mut quote: Option<char> = None;
                    let mut prev = ' ';
                    let mut closed_at = None;
                    for (i, c) in rest.char_indices() {
                        match quote {
                            Some(q) if c == q => quote = None,
                            Some(_) => {}
                            None => match c {
                                '"' => quote = Some('"'),
                                '\'' if !ends_operand(prev) => quote = Some('\''),
                                '{' => *depth += 1,
                                '}' => {
                                    *depth -= 1;
                                    if *depth == 0 {
                                        closed_at = Some(i);
                                        break;
                                    }
                                }
                                _ => {}
                            },
                        }
                        if !c.is_whitespace() {
                            prev = c;
                        }
                    }
                    if closed_at.is_some() {
                        state = State::Top;
                    }
                    break;
                }
            }
        }
    }
    match state {
        State::Top => Ok(raw),
        State::Matrix { name, line, .. } => Err(err(
            source_name,
            line,
            format!("mpc.{name}: `[` is never closed by `]`"),
        )),
        State::Cell { name, line, .. } => Err(err(
            source_name,
            line,
            format!("mpc.{name}: `{{` is never closed by `}}`"),
        )),
    }
}

/// Converts a value that MATPOWER stores as a float but means as a whole number.
fn whole_number(value: f64, source_name: &str, line: usize, what: &str) -> Result<usize> {
    if value >= 0.0 && value.fract() == 0.0 && value <= u32::MAX as f64 {
        Ok(value as usize)
    } else {
        Err(err(
            source_name,
            line,
            format!("{what} must be a non-negative whole number, found {value}"),
        ))
    }
}

/// Rejects a row with fewer columns than the reader needs.
fn require_cols(row: &Row, needed: usize, source_name: &str, what: &str) -> Result<()> {
    if row.values.len() < needed {
        return Err(err(
            source_name,
            row.line,
            format!(
                "{what} has {} columns; at least {needed} are required",
                row.values.len()
            ),
        ));
    }
    Ok(())
}

/// Returns a required matrix or the "missing field" error.
fn required(matrix: Option<Matrix>, source_name: &str, field: &str) -> Result<Matrix> {
    matrix.ok_or_else(|| {
        err(
            source_name,
            0,
            format!("required field mpc.{field} is missing"),
        )
    })
}

/// Semantic pass over the bus matrix.
fn read_buses(matrix: &Matrix, source_name: &str) -> Result<Vec<Bus>> {
    let mut buses = Vec::with_capacity(matrix.rows.len());
    let mut first_line: HashMap<usize, usize> = HashMap::with_capacity(matrix.rows.len());
    for (i, row) in matrix.rows.iter().enumerate() {
        let what = format!("mpc.bus row {}", i + 1);
        require_cols(row, BUS_MIN_COLS, source_name, &what)?;
        require_finite(
            row,
            &[(0, "BUS_I"), (1, "BUS_TYPE"), (2, "PD"), (4, "GS")],
            source_name,
            &what,
        )?;
        let v = &row.values;
        let id = whole_number(v[0], source_name, row.line, &format!("{what}: bus number"))?;
        if id == 0 {
            return Err(err(
                source_name,
                row.line,
                format!("{what}: bus number must be positive"),
            ));
        }
        if let Some(previous) = first_line.insert(id, row.line) {
            return Err(err(
                source_name,
                row.line,
                format!("{what}: duplicate bus number {id} (already defined at line {previous})"),
            ));
        }
        let kind = whole_number(v[1], source_name, row.line, &format!("{what}: bus type"))?;
        let kind = match u8::try_from(kind) {
            Ok(k @ 1..=4) => k,
            _ => {
                return Err(err(
                    source_name,
                    row.line,
                    format!(
                        "{what}: bus type {kind} is not one of 1 (PQ), 2 (PV), 3 (ref), 4 (isolated)"
                    ),
                ));
            }
        };
        let (pd_mw, gs_mw) = (v[2], v[4]);
        for (column, value) in [("Pd", pd_mw), ("GS", gs_mw)] {
            within_magnitude(
                value,
                MAX_CASE_MW,
                "MW",
                source_name,
                row.line,
                &format!("{what} (bus {id}): {column}"),
            )?;
            // MATPOWER drops an isolated bus with everything at it; the market would
            // count its load.
            if kind == 4 && value != 0.0 {
                return Err(err(
                    source_name,
                    row.line,
                    format!(
                        "{what}: bus {id} is isolated (type 4) but carries {column} = {value} MW, \
                         which MATPOWER would silently drop; set it to 0 or connect the bus"
                    ),
                ));
            }
        }
        buses.push(Bus {
            id,
            kind,
            pd_mw,
            qd_mvar: v[3],
            gs_mw,
        });
    }
    Ok(buses)
}

/// Refuses `|value| > max` (an absurd magnitude, most likely a unit or typing error that
/// would otherwise fail deep in a solver).
fn within_magnitude(
    value: f64,
    max: f64,
    unit: &str,
    source_name: &str,
    line: usize,
    what: &str,
) -> Result<()> {
    if value.abs() <= max {
        Ok(())
    } else {
        Err(err(
            source_name,
            line,
            format!(
                "{what} = {} {unit} is beyond the accepted magnitude {} {unit}",
                crate::error::number(value),
                crate::error::number(max)
            ),
        ))
    }
}

/// Refuses an in-service element (`what`) at an isolated (type 4) bus: MATPOWER drops
/// such a bus with everything connected to it, so the element would silently vanish.
fn not_isolated(bus: &Bus, source_name: &str, line: usize, what: &str) -> Result<()> {
    if bus.kind == 4 {
        return Err(err(
            source_name,
            line,
            format!(
                "{what}: in service at bus {}, which is isolated (type 4); MATPOWER would \
                 silently drop it: take it out of service or change the bus type",
                bus.id
            ),
        ));
    }
    Ok(())
}

/// Checks that a bus number read from `what` exists.
fn known_bus(
    value: f64,
    bus_ids: &HashMap<usize, usize>,
    source_name: &str,
    line: usize,
    what: &str,
) -> Result<usize> {
    let id = whole_number(value, source_name, line, what)?;
    if bus_ids.contains_key(&id) {
        Ok(id)
    } else {
        Err(err(
            source_name,
            line,
            format!("{what} refers to bus {id}, which is not in mpc.bus"),
        ))
    }
}

/// Cost coefficients of one gencost row: (c2, c1, c0, startup).
fn read_gencost(row: &Row, index: usize, source_name: &str) -> Result<(f64, f64, f64, f64)> {
    let what = format!("mpc.gencost row {index}");
    require_cols(row, GENCOST_FIXED_COLS, source_name, &what)?;
    let used: Vec<(usize, &str)> = (0..row.values.len()).map(|c| (c, "a cost entry")).collect();
    require_finite(row, &used, source_name, &what)?;
    let v = &row.values;
    let model = whole_number(v[0], source_name, row.line, &format!("{what}: cost model"))?;
    match model {
        2 => {}
        1 => {
            return Err(err(
                source_name,
                row.line,
                format!(
                    "{what}: piecewise-linear cost (model 1) is not supported; use polynomial model 2"
                ),
            ));
        }
        other => {
            return Err(err(
                source_name,
                row.line,
                format!("{what}: unknown cost model {other} (MATPOWER has 1 and 2)"),
            ));
        }
    }
    let n = whole_number(
        v[3],
        source_name,
        row.line,
        &format!("{what}: coefficient count n"),
    )?;
    if n > 3 {
        return Err(err(
            source_name,
            row.line,
            format!(
                "{what}: polynomial of order {} (n = {n}) is not supported; the market model \
                 needs order <= 2 (n <= 3)",
                n - 1
            ),
        ));
    }
    require_cols(
        row,
        GENCOST_FIXED_COLS + n,
        source_name,
        &format!("{what} (n = {n})"),
    )?;
    // Coefficients are stored highest order first; pad missing high orders with zero.
    let mut c = [0.0; 3];
    for (k, coefficient) in v[GENCOST_FIXED_COLS..GENCOST_FIXED_COLS + n]
        .iter()
        .enumerate()
    {
        c[3 - n + k] = *coefficient;
    }
    for (name, value) in [("c2", c[0]), ("c1", c[1]), ("c0", c[2])] {
        within_magnitude(
            value,
            MAX_COST_COEFFICIENT,
            "($/MW^k h)",
            source_name,
            row.line,
            &format!("{what}: cost coefficient {name}"),
        )?;
    }
    within_magnitude(
        v[1],
        MAX_STARTUP_COST,
        "$",
        source_name,
        row.line,
        &format!("{what}: start-up cost"),
    )?;
    if c[0] < 0.0 {
        return Err(err(
            source_name,
            row.line,
            format!(
                "{what}: negative quadratic coefficient c2 = {} makes the cost non-convex",
                c[0]
            ),
        ));
    }
    Ok((c[0], c[1], c[2], v[1]))
}

/// Semantic pass over the gen and gencost matrices.
fn read_generators(
    gen_: &Matrix,
    gencost: &Matrix,
    buses: &[Bus],
    bus_ids: &HashMap<usize, usize>,
    source_name: &str,
) -> Result<Vec<Generator>> {
    let ngen = gen_.rows.len();
    let ncost = gencost.rows.len();
    // 2 x ngen rows means the second half holds reactive-power costs, which a DC model
    // does not use.
    if ncost != ngen && ncost != 2 * ngen {
        return Err(err(
            source_name,
            gencost.line,
            format!(
                "mpc.gencost has {ncost} rows but mpc.gen has {ngen}; expected {ngen} (or {} with reactive costs)",
                2 * ngen
            ),
        ));
    }
    let mut generators = Vec::with_capacity(ngen);
    for (i, (row, cost_row)) in gen_.rows.iter().zip(&gencost.rows).enumerate() {
        let what = format!("mpc.gen row {}", i + 1);
        require_cols(row, GEN_MIN_COLS, source_name, &what)?;
        require_finite(
            row,
            &[
                (0, "GEN_BUS"),
                (7, "GEN_STATUS"),
                (8, "PMAX"),
                (9, "PMIN"),
                (GEN_RAMP_30_COL - 1, "RAMP_30"),
            ],
            source_name,
            &what,
        )?;
        let v = &row.values;
        let bus = known_bus(v[0], bus_ids, source_name, row.line, &what)?;
        let (pmax_mw, pmin_mw) = (v[8], v[9]);
        let in_service = v[7] > 0.0;
        if in_service {
            not_isolated(&buses[bus_ids[&bus]], source_name, row.line, &what)?;
        }
        for (column, value) in [("Pmax", pmax_mw), ("Pmin", pmin_mw)] {
            within_magnitude(
                value,
                MAX_CASE_MW,
                "MW",
                source_name,
                row.line,
                &format!("{what} (bus {bus}): {column}"),
            )?;
        }
        if pmax_mw < 0.0 {
            return Err(err(
                source_name,
                row.line,
                format!("{what} (bus {bus}): negative Pmax {pmax_mw} MW"),
            ));
        }
        if pmin_mw > pmax_mw {
            return Err(err(
                source_name,
                row.line,
                format!("{what} (bus {bus}): Pmin {pmin_mw} MW exceeds Pmax {pmax_mw} MW"),
            ));
        }
        let ramp_30_mw = v.get(GEN_RAMP_30_COL - 1).copied().unwrap_or(0.0);
        if ramp_30_mw < 0.0 {
            return Err(err(
                source_name,
                row.line,
                format!("{what} (bus {bus}): negative RAMP_30 {ramp_30_mw} MW"),
            ));
        }
        within_magnitude(
            ramp_30_mw,
            MAX_CASE_MW,
            "MW",
            source_name,
            row.line,
            &format!("{what} (bus {bus}): RAMP_30"),
        )?;
        let (c2, c1, c0, startup_cost) = read_gencost(cost_row, i + 1, source_name)?;
        generators.push(Generator {
            bus,
            in_service,
            pmax_mw,
            pmin_mw,
            ramp_30_mw,
            c2,
            c1,
            c0,
            startup_cost,
        });
    }
    Ok(generators)
}

/// Semantic pass over the branch matrix.
fn read_branches(
    matrix: &Matrix,
    buses: &[Bus],
    bus_ids: &HashMap<usize, usize>,
    source_name: &str,
) -> Result<Vec<Branch>> {
    let mut branches = Vec::with_capacity(matrix.rows.len());
    for (i, row) in matrix.rows.iter().enumerate() {
        let what = format!("mpc.branch row {}", i + 1);
        require_cols(row, BRANCH_MIN_COLS, source_name, &what)?;
        require_finite(
            row,
            &[
                (0, "F_BUS"),
                (1, "T_BUS"),
                (3, "BR_X"),
                (5, "RATE_A"),
                (8, "TAP"),
                (9, "SHIFT"),
                (10, "BR_STATUS"),
            ],
            source_name,
            &what,
        )?;
        let v = &row.values;
        let from = known_bus(
            v[0],
            bus_ids,
            source_name,
            row.line,
            &format!("{what}: from-bus"),
        )?;
        let to = known_bus(
            v[1],
            bus_ids,
            source_name,
            row.line,
            &format!("{what}: to-bus"),
        )?;
        if from == to {
            return Err(err(
                source_name,
                row.line,
                format!(
                    "{what}: self-loop from bus {from} to itself; a branch must join two \
                     different buses"
                ),
            ));
        }
        let in_service = v[10] > 0.0;
        let x_pu = v[3];
        if in_service {
            not_isolated(&buses[bus_ids[&from]], source_name, row.line, &what)?;
            not_isolated(&buses[bus_ids[&to]], source_name, row.line, &what)?;
            // A tiny reactance has a huge DC susceptance (zero: infinite); out of service
            // a branch never enters the network matrix, so only in-service ones are
            // checked.
            if !(x_pu.abs() >= MIN_REACTANCE_PU && x_pu.abs() <= MAX_REACTANCE_PU) {
                return Err(err(
                    source_name,
                    row.line,
                    format!(
                        "{what} ({from}-{to}): in-service branch has reactance x = {} p.u.; \
                         accepted: {} <= |x| <= {} p.u.",
                        crate::error::number(x_pu),
                        crate::error::number(MIN_REACTANCE_PU),
                        crate::error::number(MAX_REACTANCE_PU)
                    ),
                ));
            }
        }
        let rate_a_mw = v[5];
        if rate_a_mw < 0.0 {
            return Err(err(
                source_name,
                row.line,
                format!("{what} ({from}-{to}): negative RATE_A {rate_a_mw} MW"),
            ));
        }
        within_magnitude(
            rate_a_mw,
            MAX_CASE_MW,
            "MW",
            source_name,
            row.line,
            &format!("{what} ({from}-{to}): RATE_A"),
        )?;
        let tap = v[8];
        if !(tap == 0.0 || (tap >= TAP_RANGE.0 && tap <= TAP_RANGE.1)) {
            return Err(err(
                source_name,
                row.line,
                format!(
                    "{what} ({from}-{to}): TAP = {}; accepted: 0 (meaning 1) or a ratio in \
                     [{}, {}]",
                    crate::error::number(tap),
                    crate::error::number(TAP_RANGE.0),
                    crate::error::number(TAP_RANGE.1)
                ),
            ));
        }
        within_magnitude(
            v[9],
            MAX_SHIFT_DEG,
            "degrees",
            source_name,
            row.line,
            &format!("{what} ({from}-{to}): SHIFT"),
        )?;
        branches.push(Branch {
            from,
            to,
            x_pu,
            rate_a_mw,
            tap,
            shift_deg: v[9],
            in_service,
            row: i,
        });
    }
    Ok(branches)
}

/// Reads `mpc.version`, which must be `'2'`. A missing version is refused: a version-1
/// file (which has none) lays out `mpc.gen` and `mpc.gencost` differently, and a file
/// without one may be anything.
fn check_version(version: Option<&Scalar>, source_name: &str) -> Result<()> {
    let Some(v) = version else {
        return Err(err(
            source_name,
            0,
            "required field mpc.version is missing; a MATPOWER version-2 case sets \
             `mpc.version = '2';` (version-1 files, which have none, are not supported)",
        ));
    };
    let text = v.text.trim_matches(|c| c == '\'' || c == '"');
    if text != "2" {
        return Err(err(
            source_name,
            v.line,
            format!(
                "mpc.version is `{}`; only MATPOWER case format version '2' is supported",
                v.text
            ),
        ));
    }
    Ok(())
}

/// Reads `mpc.baseMVA`.
fn read_base_mva(scalar: Option<&Scalar>, source_name: &str) -> Result<f64> {
    let s = scalar.ok_or_else(|| err(source_name, 0, "required field mpc.baseMVA is missing"))?;
    let value = parse_value(&s.text, source_name, "baseMVA", s.line)?;
    let (lo, hi) = BASE_MVA_RANGE;
    // NaN and Inf fail the range test below.
    if !(value >= lo && value <= hi) {
        return Err(err(
            source_name,
            s.line,
            format!(
                "mpc.baseMVA must be positive and within [{}, {}] MVA, found {}",
                crate::error::number(lo),
                crate::error::number(hi),
                crate::error::number(value)
            ),
        ));
    }
    Ok(value)
}

/// Parses the text of a MATPOWER version-2 case file; `source_name` labels errors.
pub fn parse(text: &str, source_name: &str) -> Result<Case> {
    let raw = scan(text, source_name)?;
    check_version(raw.version.as_ref(), source_name)?;
    let base_mva = read_base_mva(raw.base_mva.as_ref(), source_name)?;
    let bus = required(raw.bus, source_name, "bus")?;
    let gen_ = required(raw.gen_, source_name, "gen")?;
    let branch = required(raw.branch, source_name, "branch")?;
    let gencost = required(raw.gencost, source_name, "gencost")?;
    let buses = read_buses(&bus, source_name)?;
    let bus_ids: HashMap<usize, usize> = buses.iter().enumerate().map(|(i, b)| (b.id, i)).collect();
    let generators = read_generators(&gen_, &gencost, &buses, &bus_ids, source_name)?;
    let branches = read_branches(&branch, &buses, &bus_ids, source_name)?;
    let case = Case {
        source_name: source_name.to_string(),
        base_mva,
        buses,
        generators,
        branches,
    };
    case.check_connected()?;
    Ok(case)
}

impl Case {
    /// Position in `buses` of the bus with external number `id` (linear scan; build
    /// [`Case::bus_index_map`] for repeated look-ups on large cases).
    pub fn bus_index(&self, id: usize) -> Option<usize> {
        self.buses.iter().position(|b| b.id == id)
    }

    /// Map from external bus number to position in `buses`.
    pub fn bus_index_map(&self) -> HashMap<usize, usize> {
        self.buses
            .iter()
            .enumerate()
            .map(|(i, b)| (b.id, i))
            .collect()
    }

    /// Sum of bus active demand, MW.
    pub fn total_load_mw(&self) -> f64 {
        self.buses.iter().map(|b| b.pd_mw).sum()
    }

    /// Sum of `pmax` over in-service generators, MW.
    pub fn total_capacity_mw(&self) -> f64 {
        self.generators
            .iter()
            .filter(|g| g.in_service)
            .map(|g| g.pmax_mw)
            .sum()
    }

    /// Refuses a network that falls apart into islands. Only what MATPOWER keeps counts:
    /// in-service branches between buses that are not isolated (type 4; MATPOWER drops
    /// those buses with everything attached). The error names the file and, per island,
    /// its size and bus numbers (the first few, then a count), largest island first.
    pub fn check_connected(&self) -> Result<()> {
        let index = self.bus_index_map();
        let active: Vec<bool> = self.buses.iter().map(|b| b.kind != 4).collect();
        let mut parent: Vec<usize> = (0..self.buses.len()).collect();
        fn root(parent: &mut [usize], mut i: usize) -> usize {
            while parent[i] != i {
                parent[i] = parent[parent[i]];
                i = parent[i];
            }
            i
        }
        for br in self.branches.iter().filter(|b| b.in_service) {
            let (Some(&f), Some(&t)) = (index.get(&br.from), index.get(&br.to)) else {
                continue;
            };
            if active[f] && active[t] {
                let (rf, rt) = (root(&mut parent, f), root(&mut parent, t));
                parent[rf] = rt;
            }
        }
        // Islands in file order of their first bus, each listing its buses in file order.
        let mut island_of_root: HashMap<usize, usize> = HashMap::new();
        let mut islands: Vec<Vec<usize>> = Vec::new();
        for (i, bus) in self.buses.iter().enumerate() {
            if !active[i] {
                continue;
            }
            let r = root(&mut parent, i);
            let k = *island_of_root.entry(r).or_insert_with(|| {
                islands.push(Vec::new());
                islands.len() - 1
            });
            islands[k].push(bus.id);
        }
        match islands.len() {
            0 => Err(err(
                &self.source_name,
                0,
                "the case has no bus that is not isolated (type 4): there is no network",
            )),
            1 => Ok(()),
            n => {
                // Largest first; the stable sort keeps file order among equal sizes.
                islands.sort_by_key(|island| std::cmp::Reverse(island.len()));
                let mut parts: Vec<String> = islands
                    .iter()
                    .take(crate::error::LISTED_ITEMS)
                    .enumerate()
                    .map(|(k, island)| {
                        format!(
                            "island {}: {} bus{} ({})",
                            k + 1,
                            island.len(),
                            if island.len() == 1 { "" } else { "es" },
                            crate::error::list_ids(island)
                        )
                    })
                    .collect();
                if n > crate::error::LISTED_ITEMS {
                    parts.push(format!(
                        "... {} more islands",
                        n - crate::error::LISTED_ITEMS
                    ));
                }
                Err(err(
                    &self.source_name,
                    0,
                    format!(
                        "the network falls apart into {n} islands (in-service branches between \
                         buses that are not isolated); the market model needs one connected \
                         network: {}",
                        parts.join("; ")
                    ),
                ))
            }
        }
    }

    /// The case as MATPOWER solves it: isolated (type 4) buses removed with the elements
    /// attached to them. The reader has refused any in-service element or load at such a
    /// bus, so only out-of-service rows go with them and the network is unchanged; the
    /// network matrix of the result has no empty row.
    pub fn without_isolated(&self) -> Case {
        let isolated: std::collections::HashSet<usize> = self
            .buses
            .iter()
            .filter(|b| b.kind == 4)
            .map(|b| b.id)
            .collect();
        Case {
            source_name: self.source_name.clone(),
            base_mva: self.base_mva,
            buses: self.buses.iter().filter(|b| b.kind != 4).cloned().collect(),
            generators: self
                .generators
                .iter()
                .filter(|g| !isolated.contains(&g.bus))
                .cloned()
                .collect(),
            branches: self
                .branches
                .iter()
                .filter(|br| !isolated.contains(&br.from) && !isolated.contains(&br.to))
                .cloned()
                .collect(),
        }
    }

    /// Index in `buses` of the first reference (type 3) bus, or 0 when the file names none.
    pub fn reference_bus(&self) -> usize {
        self.buses.iter().position(|b| b.kind == 3).unwrap_or(0)
    }

    /// The embedded IEEE RTS-24 case ([`crate::data::CASE24_IEEE_RTS`]).
    pub fn embedded_rts24() -> Case {
        // The embedded text is fixed at compile time and covered by the tests below, so a
        // failure here is a build defect, not bad user input.
        parse(crate::data::CASE24_IEEE_RTS, EMBEDDED_NAME)
            .expect("embedded case24_ieee_rts.m must parse")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUS_ROWS: &str = "\t1\t3\t0\t0\t0\t0\t1\t1\t0\t230\t1\t1.1\t0.9;\n\t2\t1\t50\t10\t0\t0\t1\t1\t0\t230\t1\t1.1\t0.9;";
    const GEN_ROWS: &str = "\t1\t0\t0\t0\t0\t1\t100\t1\t80\t10\t0\t0\t0\t0\t0\t0\t0\t0\t5\t0\t0;";
    const BRANCH_ROWS: &str = "\t1\t2\t0.01\t0.1\t0\t100\t0\t0\t0\t0\t1\t-360\t360;";
    const GENCOST_ROWS: &str = "\t2\t100\t0\t3\t0.01\t20\t50;";

    /// A two-bus case whose sections can be replaced one at a time; each section body is
    /// on the line after its `mpc.<name> = [` line (bus rows start at line 5, gen at 9,
    /// branch at 12, gencost at 15 when the bodies are the defaults).
    fn small_case(bus: &str, gen_: &str, branch: &str, gencost: &str) -> String {
        format!(
            "function mpc = small\nmpc.version = '2';\nmpc.baseMVA = 100;\n\
             mpc.bus = [\n{bus}\n];\nmpc.gen = [\n{gen_}\n];\nmpc.branch = [\n{branch}\n];\n\
             mpc.gencost = [\n{gencost}\n];\n"
        )
    }

    fn default_case() -> String {
        small_case(BUS_ROWS, GEN_ROWS, BRANCH_ROWS, GENCOST_ROWS)
    }

    /// Parses text expected to fail and returns the line and message of the error.
    fn parse_error(text: &str) -> (usize, String) {
        match parse(text, "test.m") {
            Err(Error::Matpower {
                source_name,
                line,
                message,
            }) => {
                assert_eq!(source_name, "test.m");
                (line, message)
            }
            other => panic!("expected a Matpower error, got {other:?}"),
        }
    }

    fn assert_error(text: &str, line: usize, fragments: &[&str]) {
        let (got_line, message) = parse_error(text);
        assert_eq!(got_line, line, "message: {message}");
        for fragment in fragments {
            assert!(
                message.contains(fragment),
                "`{message}` should mention `{fragment}`"
            );
        }
    }

    #[test]
    fn rts24_counts_and_base() {
        let case = Case::embedded_rts24();
        assert_eq!(case.buses.len(), 24);
        assert_eq!(case.generators.len(), 33);
        assert_eq!(case.branches.len(), 38);
        assert_eq!(case.base_mva, 100.0);
    }

    #[test]
    fn rts24_totals() {
        let case = Case::embedded_rts24();
        assert_eq!(case.total_load_mw(), 2850.0);
        // 4x20 + 4x76 + 3x100 + 3x197 + 0 (syncon) + 5x12 + 4x155 + 2x400 + 6x50 + 350.
        assert_eq!(case.total_capacity_mw(), 3405.0);
    }

    #[test]
    fn rts24_costs() {
        let case = Case::embedded_rts24();
        let linear = case.generators.iter().filter(|g| g.c2 == 0.0).count();
        assert_eq!(linear, 11);
        let nuclear: Vec<&Generator> = case
            .generators
            .iter()
            .filter(|g| g.pmax_mw == 400.0)
            .collect();
        assert_eq!(nuclear.len(), 2);
        for unit in nuclear {
            assert_eq!((unit.c2, unit.c1, unit.c0), (0.000213, 4.4231, 395.3749));
            assert_eq!(unit.pmin_mw, 100.0);
            assert_eq!(unit.startup_cost, 1500.0);
            assert_eq!(unit.ramp_30_mw, 0.0);
            assert!(unit.in_service);
        }
        assert_eq!(case.generators[22].bus, 18);
        assert_eq!(case.generators[23].bus, 21);
    }

    #[test]
    fn rts24_reference_bus_and_tapped_branch() {
        let case = Case::embedded_rts24();
        assert_eq!(case.buses[case.reference_bus()].id, 13);
        assert_eq!(case.bus_index(13), Some(12));
        assert_eq!(case.bus_index(99), None);
        assert_eq!(case.bus_index_map().len(), 24);
        let branch = case
            .branches
            .iter()
            .find(|b| b.from == 3 && b.to == 24)
            .expect("branch 3-24 exists");
        assert_eq!(branch.tap, 1.03);
        assert_eq!(branch.rate_a_mw, 400.0);
        assert_eq!(branch.x_pu, 0.0839);
        assert!(branch.in_service);
    }

    #[test]
    fn small_case_fields() {
        let case = parse(&default_case(), "test.m").expect("valid case");
        assert_eq!(case.buses[1].id, 2);
        assert_eq!(case.buses[1].kind, 1);
        assert_eq!(case.buses[1].pd_mw, 50.0);
        assert_eq!(case.buses[1].qd_mvar, 10.0);
        let g = &case.generators[0];
        assert_eq!(
            (g.bus, g.pmax_mw, g.pmin_mw, g.ramp_30_mw),
            (1, 80.0, 10.0, 5.0)
        );
        assert_eq!(
            (g.c2, g.c1, g.c0, g.startup_cost),
            (0.01, 20.0, 50.0, 100.0)
        );
        assert_eq!(case.reference_bus(), 0);
    }

    #[test]
    fn shunt_conductance_and_phase_shift_are_read() {
        // GS is bus column 5, SHIFT branch column 10 (MATPOWER's caseformat).
        let bus = BUS_ROWS.replacen("\t50\t10\t0\t0\t", "\t50\t10\t1.3\t0\t", 1);
        let branch = BRANCH_ROWS.replacen("\t0\t0\t0\t0\t1\t", "\t0\t0\t0\t-10\t1\t", 1);
        let case = parse(&small_case(&bus, GEN_ROWS, &branch, GENCOST_ROWS), "test.m")
            .expect("valid case");
        assert_eq!(case.buses[1].gs_mw, 1.3);
        assert_eq!(case.buses[0].gs_mw, 0.0);
        assert_eq!(case.branches[0].shift_deg, -10.0);
        assert_eq!(case.source_name, "test.m");
    }

    #[test]
    fn tolerant_syntax() {
        // Comments everywhere, commas, a row wrapped over two lines, data on the bracket
        // lines, a cell array with a `%` and braces in its strings, and other fields.
        let text = "\
%% a comment\n\
mpc.version = '2'; % trailing\n\
mpc.baseMVA=100;\n\
%{\n\
mpc.baseMVA = 1;\n\
%}\n\
mpc.bus = [ 1, 3, 0, 0, 0, 0, 1, 1, 0, 230, 1, 1.1, 0.9;\n\
  2 1 50 10 0 0 1 1 0 230 1 1.1 0.9 ];\n\
mpc.bus_name = {\n\
  'Bus 1 % {odd}';\n\
  'Bus ''2''';\n\
};\n\
mpc.areas = [ 1 1; ];\n\
mpc.gen = [\n\
  1 0 0 0 0 1 100 1\n\
  80 10;  % wrapped row without ramp columns\n\
];\n\
mpc.branch = [\n\
  1 2 0.01 0.1 0 100 0 0 0 0 1\n\
];\n\
mpc.gencost = [ 2 0 0 2 20 50 ];\n";
        let case = parse(text, "test.m").expect("tolerant parse");
        assert_eq!(case.base_mva, 100.0);
        assert_eq!(case.buses.len(), 2);
        let g = &case.generators[0];
        assert_eq!((g.pmax_mw, g.pmin_mw, g.ramp_30_mw), (80.0, 10.0, 0.0));
        assert_eq!((g.c2, g.c1, g.c0), (0.0, 20.0, 50.0));
        assert_eq!(case.branches.len(), 1);
    }

    /// MATLAB's row rules: rows with and without `;` mix, and `...` continues a row. A
    /// matrix where every other row lacks its `;` was read as half as many rows of twice
    /// the width (rectangular, so only a later check could notice); it is read as MATLAB
    /// reads it.
    #[test]
    fn rows_end_at_newlines_as_in_matlab() {
        let plain = parse(&default_case(), "test.m").expect("plain");
        let bus = BUS_ROWS.replacen(";\n", "\n", 1);
        let mixed = parse(
            &small_case(&bus, GEN_ROWS, BRANCH_ROWS, GENCOST_ROWS),
            "test.m",
        )
        .expect("a row without `;` beside one with it");
        assert_eq!(mixed.buses, plain.buses);
        let (head, tail) = GEN_ROWS.split_at(GEN_ROWS.find("\t80").expect("PMAX"));
        let continued = format!("{head} ... PMAX onwards:\n{tail}");
        let case = parse(
            &small_case(BUS_ROWS, &continued, BRANCH_ROWS, GENCOST_ROWS),
            "test.m",
        )
        .expect("`...` continuation");
        assert_eq!(case.generators, plain.generators);
        // Four branches, `;` on every other row: four rows of 13 columns, not two of 26.
        let rows = [
            branch_row(1, 2, "0.1", 1),
            branch_row(1, 2, "0.2", 1),
            branch_row(1, 2, "0.3", 1),
            branch_row(1, 2, "0.4", 1),
        ];
        let branch = rows
            .iter()
            .enumerate()
            .map(|(k, r)| {
                if k % 2 == 0 {
                    r.trim_end_matches(';').to_string()
                } else {
                    r.clone()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let case = parse(
            &small_case(BUS_ROWS, GEN_ROWS, &branch, GENCOST_ROWS),
            "test.m",
        )
        .expect("half the rows without `;`");
        let x: Vec<f64> = case.branches.iter().map(|b| b.x_pu).collect();
        assert_eq!(x, [0.1, 0.2, 0.3, 0.4]);
    }

    #[test]
    fn gencost_with_one_coefficient_is_constant_cost() {
        let text = small_case(BUS_ROWS, GEN_ROWS, BRANCH_ROWS, "\t2\t0\t0\t1\t42;");
        let g = &parse(&text, "test.m").expect("n = 1").generators[0];
        assert_eq!((g.c2, g.c1, g.c0), (0.0, 0.0, 42.0));
    }

    #[test]
    fn gencost_with_reactive_rows_uses_first_half() {
        let rows = format!("{GENCOST_ROWS}\n\t1\t0\t0\t2\t0\t0\t1\t1;");
        // The second (reactive) row is piecewise linear; it must be ignored, not rejected.
        let rows = rows.replacen("\t50;", "\t50\t0;", 1);
        let case = parse(
            &small_case(BUS_ROWS, GEN_ROWS, BRANCH_ROWS, &rows),
            "test.m",
        )
        .expect("2 x ngen gencost rows");
        assert_eq!(case.generators[0].c1, 20.0);
    }

    #[test]
    fn missing_fields() {
        let full = default_case();
        assert_error(
            &full.replace("mpc.baseMVA = 100;\n", ""),
            0,
            &["mpc.baseMVA", "missing"],
        );
        for (field, body) in [
            ("bus", BUS_ROWS),
            ("gen", GEN_ROWS),
            ("branch", BRANCH_ROWS),
            ("gencost", GENCOST_ROWS),
        ] {
            let text = full.replace(&format!("mpc.{field} = [\n{body}\n];\n"), "");
            assert_ne!(text, full);
            if field == "bus" {
                // Without buses nothing else can be checked, so the bus error comes first.
                assert_error(&text, 0, &["mpc.bus", "missing"]);
            } else {
                assert_error(&text, 0, &[&format!("mpc.{field} "), "missing"]);
            }
        }
    }

    #[test]
    fn wrong_version() {
        let text = default_case().replace("'2'", "'1'");
        assert_error(&text, 2, &["mpc.version", "'1'"]);
    }

    #[test]
    fn too_few_columns() {
        let bus = BUS_ROWS.replace("\t1.1\t0.9;", ";");
        assert_error(
            &small_case(&bus, GEN_ROWS, BRANCH_ROWS, GENCOST_ROWS),
            5,
            &["mpc.bus row 1", "11 columns", "13"],
        );
        assert_error(
            &small_case(
                BUS_ROWS,
                "\t1\t0\t0\t0\t0\t1\t100\t1\t80;",
                BRANCH_ROWS,
                GENCOST_ROWS,
            ),
            9,
            &["mpc.gen row 1", "9 columns", "10"],
        );
        assert_error(
            &small_case(
                BUS_ROWS,
                GEN_ROWS,
                "\t1\t2\t0.01\t0.1\t0\t100\t0\t0\t0\t0;",
                GENCOST_ROWS,
            ),
            12,
            &["mpc.branch row 1", "10 columns", "11"],
        );
        assert_error(
            &small_case(BUS_ROWS, GEN_ROWS, BRANCH_ROWS, "\t2\t0\t0\t3\t0.01\t20;"),
            15,
            &["mpc.gencost row 1", "n = 3", "6 columns", "7"],
        );
    }

    #[test]
    fn ragged_matrix() {
        let bus = BUS_ROWS.replacen("\t0.9;", "\t0.9\t7;", 1);
        assert_error(
            &small_case(&bus, GEN_ROWS, BRANCH_ROWS, GENCOST_ROWS),
            6,
            &["mpc.bus", "13 columns", "14"],
        );
    }

    #[test]
    fn non_numeric_token() {
        let bus = BUS_ROWS.replacen("\t50\t", "\tfifty\t", 1);
        assert_error(
            &small_case(&bus, GEN_ROWS, BRANCH_ROWS, GENCOST_ROWS),
            6,
            &["mpc.bus", "`fifty`", "not a number"],
        );
        assert_error(
            &default_case().replace("= 100;", "= abc;"),
            3,
            &["mpc.baseMVA", "`abc`"],
        );
    }

    #[test]
    fn non_finite_values() {
        // Refused where the DC model reads them (PMAX here), with MATLAB's spelling...
        for (token, shown) in [("NaN", "NaN"), ("Inf", "Inf"), ("-inf", "-Inf")] {
            let gen_ = GEN_ROWS.replacen("\t80\t", &format!("\t{token}\t"), 1);
            assert_error(
                &small_case(BUS_ROWS, &gen_, BRANCH_ROWS, GENCOST_ROWS),
                9,
                &["mpc.gen row 1", "PMAX", shown, "not finite"],
            );
        }
        // ... and accepted in a column it does not read: QMAX = Inf, QMIN = -Inf, as
        // MATPOWER's case2869pegase has.
        let gen_ = GEN_ROWS.replacen("\t1\t0\t0\t0\t0\t", "\t1\t0\t0\tInf\t-Inf\t", 1);
        let case = parse(
            &small_case(BUS_ROWS, &gen_, BRANCH_ROWS, GENCOST_ROWS),
            "test.m",
        )
        .expect("Inf in QMAX/QMIN is fine");
        assert_eq!(case.generators[0].pmax_mw, 80.0);
        let bus = BUS_ROWS.replacen("\t50\t10\t", "\t50\tNaN\t", 1);
        parse(
            &small_case(&bus, GEN_ROWS, BRANCH_ROWS, GENCOST_ROWS),
            "test.m",
        )
        .expect("NaN in QD is fine");
    }

    #[test]
    fn piecewise_linear_cost_is_unsupported() {
        assert_error(
            &small_case(BUS_ROWS, GEN_ROWS, BRANCH_ROWS, "\t1\t0\t0\t1\t0\t0\t0;"),
            15,
            &["mpc.gencost row 1", "piecewise-linear", "not supported"],
        );
    }

    #[test]
    fn cubic_cost_is_unsupported() {
        assert_error(
            &small_case(
                BUS_ROWS,
                GEN_ROWS,
                BRANCH_ROWS,
                "\t2\t0\t0\t4\t1\t0.01\t20\t50;",
            ),
            15,
            &["mpc.gencost row 1", "n = 4", "not supported"],
        );
    }

    #[test]
    fn gencost_row_count_must_match_gen() {
        let rows = format!("{GENCOST_ROWS}\n{GENCOST_ROWS}\n{GENCOST_ROWS}");
        assert_error(
            &small_case(BUS_ROWS, GEN_ROWS, BRANCH_ROWS, &rows),
            14,
            &["mpc.gencost has 3 rows", "mpc.gen has 1"],
        );
    }

    #[test]
    fn duplicate_bus_id() {
        let bus = BUS_ROWS.replacen("\t2\t1\t50", "\t1\t1\t50", 1);
        assert_error(
            &small_case(&bus, GEN_ROWS, BRANCH_ROWS, GENCOST_ROWS),
            6,
            &["duplicate bus number 1", "line 5"],
        );
    }

    #[test]
    fn gen_on_unknown_bus() {
        let gen_ = GEN_ROWS.replacen("\t1\t0\t", "\t7\t0\t", 1);
        assert_error(
            &small_case(BUS_ROWS, &gen_, BRANCH_ROWS, GENCOST_ROWS),
            9,
            &["mpc.gen row 1", "bus 7", "not in mpc.bus"],
        );
    }

    #[test]
    fn branch_to_unknown_bus() {
        let branch = BRANCH_ROWS.replacen("\t1\t2\t", "\t1\t9\t", 1);
        assert_error(
            &small_case(BUS_ROWS, GEN_ROWS, &branch, GENCOST_ROWS),
            12,
            &["mpc.branch row 1", "to-bus", "bus 9"],
        );
    }

    #[test]
    fn negative_pmax() {
        let gen_ = GEN_ROWS.replacen("\t80\t10\t", "\t-80\t-90\t", 1);
        assert_error(
            &small_case(BUS_ROWS, &gen_, BRANCH_ROWS, GENCOST_ROWS),
            9,
            &["negative Pmax", "-80"],
        );
    }

    #[test]
    fn pmin_above_pmax() {
        let gen_ = GEN_ROWS.replacen("\t80\t10\t", "\t80\t90\t", 1);
        assert_error(
            &small_case(BUS_ROWS, &gen_, BRANCH_ROWS, GENCOST_ROWS),
            9,
            &["Pmin 90", "Pmax 80"],
        );
    }

    #[test]
    fn zero_reactance_only_matters_in_service() {
        let branch = BRANCH_ROWS.replacen("\t0.1\t", "\t0\t", 1);
        assert_error(
            &small_case(BUS_ROWS, GEN_ROWS, &branch, GENCOST_ROWS),
            12,
            &["mpc.branch row 1", "1-2", "x = 0"],
        );
        // Beside an in-service branch that keeps the two buses connected.
        let out_of_service = branch.replacen("\t0\t1\t-360", "\t0\t0\t-360", 1);
        let case = parse(
            &small_case(
                BUS_ROWS,
                GEN_ROWS,
                &format!("{out_of_service}\n{BRANCH_ROWS}"),
                GENCOST_ROWS,
            ),
            "test.m",
        )
        .expect("out-of-service zero-x branch is allowed");
        assert!(!case.branches[0].in_service);
    }

    #[test]
    fn unclosed_matrix() {
        let text = default_case().replace("\n];\nmpc.gencost", "\nmpc.gencost");
        assert_error(&text, 13, &["mpc.branch", "line 11", "not closed"]);
        let truncated = default_case().trim_end().trim_end_matches("];").to_string();
        assert_error(&truncated, 14, &["mpc.gencost", "never closed"]);
    }

    #[test]
    fn duplicate_assignment_and_indexed_assignment() {
        let text = format!("{}mpc.baseMVA = 10;\n", default_case());
        assert_error(&text, 17, &["mpc.baseMVA", "twice", "line 3"]);
        let text = format!("{}mpc.gen(1, 9) = 10;\n", default_case());
        assert_error(&text, 17, &["mpc.gen(1, 9)", "not supported"]);
    }

    /// 1-based line of the first line of `text` containing `needle`.
    fn line_of(text: &str, needle: &str) -> usize {
        text.lines()
            .position(|l| l.contains(needle))
            .expect("needle in text")
            + 1
    }

    /// A bus row of the small case's layout: `id`, `kind`, `pd`.
    fn bus_row(id: usize, kind: u8, pd: f64) -> String {
        format!("\t{id}\t{kind}\t{pd}\t0\t0\t0\t1\t1\t0\t230\t1\t1.1\t0.9;")
    }

    /// A branch row `from`-`to` with reactance `x` and status `status`.
    fn branch_row(from: usize, to: usize, x: &str, status: u8) -> String {
        format!("\t{from}\t{to}\t0.01\t{x}\t0\t100\t0\t0\t0\t0\t{status}\t-360\t360;")
    }

    #[test]
    fn missing_version_is_refused() {
        let text = default_case().replace("mpc.version = '2';\n", "");
        assert_error(&text, 0, &["mpc.version", "missing", "'2'"]);
        // Not tied to a line: the message names none (no "line 0").
        let shown = parse(&text, "test.m").unwrap_err().to_string();
        assert!(
            shown.starts_with("MATPOWER case test.m: required field mpc.version is missing"),
            "{shown}"
        );
    }

    #[test]
    fn self_loop_branch_is_refused() {
        let text = small_case(
            BUS_ROWS,
            GEN_ROWS,
            &format!("{BRANCH_ROWS}\n{}", branch_row(2, 2, "0.1", 0)),
            GENCOST_ROWS,
        );
        // Refused whatever its status: a branch must join two buses.
        assert_error(&text, 13, &["mpc.branch row 2", "self-loop", "bus 2"]);
    }

    #[test]
    fn tiny_or_huge_reactance_is_refused() {
        for x in ["1e-300", "-1e-10", "1e7"] {
            let text = small_case(BUS_ROWS, GEN_ROWS, &branch_row(1, 2, x, 1), GENCOST_ROWS);
            let shown = crate::error::number(x.parse().expect("number"));
            assert_error(
                &text,
                12,
                &[
                    "mpc.branch row 1",
                    &format!("x = {shown} p.u."),
                    "1e-9 <= |x|",
                ],
            );
        }
        // A series-compensated (negative) reactance of sane size is accepted.
        let text = small_case(
            BUS_ROWS,
            GEN_ROWS,
            &branch_row(1, 2, "-0.05", 1),
            GENCOST_ROWS,
        );
        parse(&text, "test.m").expect("negative x of sane size");
    }

    #[test]
    fn absurd_magnitudes_are_refused_with_row_and_line() {
        let cases: [(String, usize, &[&str]); 8] = [
            (
                small_case(
                    BUS_ROWS,
                    GEN_ROWS,
                    BRANCH_ROWS,
                    "\t2\t100\t0\t3\t1e300\t20\t50;",
                ),
                15,
                &["mpc.gencost row 1", "c2 = 1e300", "1e6"],
            ),
            (
                small_case(
                    BUS_ROWS,
                    GEN_ROWS,
                    BRANCH_ROWS,
                    "\t2\t100\t0\t3\t0.01\t-2e6\t50;",
                ),
                15,
                &["mpc.gencost row 1", "c1 = -2e6"],
            ),
            (
                small_case(
                    &BUS_ROWS.replacen("\t50\t10\t", "\t2e6\t10\t", 1),
                    GEN_ROWS,
                    BRANCH_ROWS,
                    GENCOST_ROWS,
                ),
                6,
                &["mpc.bus row 2", "bus 2", "Pd = 2e6 MW"],
            ),
            (
                small_case(
                    BUS_ROWS,
                    &GEN_ROWS.replacen("\t80\t10\t", "\t1e300\t10\t", 1),
                    BRANCH_ROWS,
                    GENCOST_ROWS,
                ),
                9,
                &["mpc.gen row 1", "Pmax = 1e300 MW"],
            ),
            (
                small_case(
                    BUS_ROWS,
                    GEN_ROWS,
                    &BRANCH_ROWS.replacen("\t100\t", "\t1e9\t", 1),
                    GENCOST_ROWS,
                ),
                12,
                &["mpc.branch row 1", "RATE_A = 1e9 MW"],
            ),
            (
                small_case(
                    BUS_ROWS,
                    GEN_ROWS,
                    &BRANCH_ROWS.replacen("\t0\t0\t0\t0\t1\t", "\t0\t0\t-1\t0\t1\t", 1),
                    GENCOST_ROWS,
                ),
                12,
                &["mpc.branch row 1", "TAP = -1"],
            ),
            (
                small_case(
                    BUS_ROWS,
                    GEN_ROWS,
                    &BRANCH_ROWS.replacen("\t0\t0\t0\t0\t1\t", "\t0\t0\t0\t720\t1\t", 1),
                    GENCOST_ROWS,
                ),
                12,
                &["mpc.branch row 1", "SHIFT = 720 degrees"],
            ),
            (
                default_case().replace("= 100;", "= 1e300;"),
                3,
                &["mpc.baseMVA", "1e300"],
            ),
        ];
        for (text, line, fragments) in cases {
            assert_error(&text, line, fragments);
        }
    }

    /// The small case with a third bus of type `kind` and load `pd`, extra gen and branch
    /// rows (gencost rows added to match).
    fn case_with_third_bus(kind: u8, pd: f64, gens: &[&str], branches: &[String]) -> String {
        let bus = format!("{BUS_ROWS}\n{}", bus_row(3, kind, pd));
        let mut gen_ = GEN_ROWS.to_string();
        let mut cost = GENCOST_ROWS.to_string();
        for g in gens {
            gen_.push('\n');
            gen_.push_str(g);
            cost.push('\n');
            cost.push_str(GENCOST_ROWS);
        }
        let mut branch = BRANCH_ROWS.to_string();
        for b in branches {
            branch.push('\n');
            branch.push_str(b);
        }
        small_case(&bus, &gen_, &branch, &cost)
    }

    const GEN_AT_3_IN: &str =
        "\t3\t0\t0\t0\t0\t1\t100\t1\t80\t10\t0\t0\t0\t0\t0\t0\t0\t0\t5\t0\t0;";
    const GEN_AT_3_OUT: &str =
        "\t3\t0\t0\t0\t0\t1\t100\t0\t80\t10\t0\t0\t0\t0\t0\t0\t0\t0\t5\t0\t0;";

    #[test]
    fn in_service_gen_on_isolated_bus_is_refused() {
        let text = case_with_third_bus(4, 0.0, &[GEN_AT_3_IN], &[]);
        let line = line_of(&text, GEN_AT_3_IN.trim());
        assert_error(
            &text,
            line,
            &["mpc.gen row 2", "bus 3", "isolated (type 4)"],
        );
        // Out of service it is what MATPOWER does anyway: accepted, and the isolated bus
        // does not count as an island.
        let case = parse(
            &case_with_third_bus(4, 0.0, &[GEN_AT_3_OUT], &[branch_row(1, 3, "0.1", 0)]),
            "test.m",
        )
        .expect("out-of-service unit at an isolated bus");
        assert_eq!(case.buses[2].kind, 4);
        // As MATPOWER solves it: the bus goes with its out-of-service unit and branch.
        let solved = case.without_isolated();
        assert_eq!(solved.buses.len(), 2);
        assert_eq!(solved.generators.len(), 1);
        assert_eq!(solved.branches.len(), 1);
        assert_eq!(solved.buses, case.buses[..2]);
    }

    /// Rows dropped with an isolated bus keep the other branches' file rows: the network
    /// reports `mpc.branch` row 2 for the case's second row, not the first.
    #[test]
    fn branches_keep_their_file_rows_when_an_isolated_bus_goes() {
        let text = case_with_third_bus(4, 0.0, &[], &[]).replace(
            BRANCH_ROWS,
            &format!("{}\n{BRANCH_ROWS}", branch_row(1, 3, "0.1", 0)),
        );
        let case = parse(&text, "test.m").expect("out-of-service branch to an isolated bus");
        assert_eq!(
            case.branches.iter().map(|b| b.row).collect::<Vec<_>>(),
            [0, 1]
        );
        let solved = case.without_isolated();
        assert_eq!(solved.branches.len(), 1);
        assert_eq!((solved.branches[0].from, solved.branches[0].to), (1, 2));
        assert_eq!(solved.branches[0].row, 1);
        let grid = crate::grid::SmartGrid::from_case(&solved, 0.0).expect("grid");
        assert_eq!(grid.network.branches()[0].case_row, 1);
    }

    #[test]
    fn in_service_branch_to_isolated_bus_is_refused() {
        let row = branch_row(2, 3, "0.1", 1);
        let text = case_with_third_bus(4, 0.0, &[], std::slice::from_ref(&row));
        assert_error(
            &text,
            line_of(&text, row.trim()),
            &["mpc.branch row 2", "bus 3", "isolated"],
        );
        parse(
            &case_with_third_bus(4, 0.0, &[], &[branch_row(2, 3, "0.1", 0)]),
            "test.m",
        )
        .expect("out-of-service branch to an isolated bus");
    }

    #[test]
    fn load_on_isolated_bus_is_refused() {
        let text = case_with_third_bus(4, 10.0, &[], &[]);
        let line = line_of(&text, bus_row(3, 4, 10.0).trim());
        assert_error(
            &text,
            line,
            &["mpc.bus row 3", "bus 3", "isolated", "Pd = 10"],
        );
    }

    #[test]
    fn islands_name_the_file_and_the_buses() {
        // Buses 1-2 and 3 with its own unit; the out-of-service branch 2-3 does not join
        // them.
        let text = case_with_third_bus(1, 5.0, &[GEN_AT_3_IN], &[branch_row(2, 3, "0.1", 0)]);
        let (line, message) = parse_error(&text);
        assert_eq!(line, 0);
        for fragment in [
            "2 islands",
            "island 1: 2 buses (1, 2)",
            "island 2: 1 bus (3)",
        ] {
            assert!(message.contains(fragment), "`{message}` lacks `{fragment}`");
        }
        // The file is named by the error's display.
        let shown = parse(&text, "/data/my_case.m").unwrap_err().to_string();
        assert!(shown.contains("/data/my_case.m"), "{shown}");
        // In service the branch joins them.
        parse(
            &case_with_third_bus(1, 5.0, &[GEN_AT_3_IN], &[branch_row(2, 3, "0.1", 1)]),
            "test.m",
        )
        .expect("connected");
    }

    #[test]
    fn long_island_lists_are_truncated() {
        // A 15-bus chain and 12 single buses: 13 islands; the chain's buses and the
        // islands beyond the tenth are counted, not listed.
        let mut bus = String::from(&bus_row(1, 3, 0.0));
        let mut branch = String::new();
        for id in 2..=27 {
            bus.push('\n');
            bus.push_str(&bus_row(id, 1, 1.0));
            if id <= 15 {
                branch.push_str(&branch_row(id - 1, id, "0.1", 1));
                branch.push('\n');
            }
        }
        let text = small_case(&bus, GEN_ROWS, branch.trim_end(), GENCOST_ROWS);
        let (_, message) = parse_error(&text);
        for fragment in [
            "13 islands",
            "island 1: 15 buses (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, ... 5 more)",
            "island 2: 1 bus (16)",
            "... 3 more islands",
        ] {
            assert!(message.contains(fragment), "`{message}` lacks `{fragment}`");
        }
        assert!(!message.contains("(27)"), "{message}");
    }

    #[test]
    fn dc_lines_are_refused_unless_empty() {
        let dcline = "mpc.dcline = [\n\t1\t2\t1\t10\t8.9\t0\t0\t1.01\t1\t10\t200\t-100\t100\t-100\t100\t0\t0;\n];\n";
        let text = format!("{}{dcline}", default_case());
        assert_error(&text, 17, &["mpc.dcline", "DC transmission lines", "`[]`"]);
        // Empty ones: see `user_constraints_and_extensions_are_refused`.
    }

    #[test]
    fn user_constraints_and_extensions_are_refused() {
        for (assignment, fragments) in [
            (
                "mpc.A = [1 -1];",
                vec!["mpc.A", "user-defined linear constraints"],
            ),
            ("mpc.l = [0];", vec!["mpc.l", "lower bounds"]),
            ("mpc.u = [10];", vec!["mpc.u", "upper bounds"]),
            ("mpc.N = [1 0];", vec!["mpc.N", "general costs"]),
            ("mpc.Cw = [100];", vec!["mpc.Cw"]),
            ("mpc.H = [1];", vec!["mpc.H", "quadratic"]),
            ("mpc.fparm = [1 0 0 1];", vec!["mpc.fparm"]),
            ("mpc.A = sparse([1], [2], [1], 1, 2);", vec!["mpc.A"]),
            (
                "mpc.if.map = [1 1; 1 -2];",
                vec!["mpc.if.map", "interface flow limits"],
            ),
            (
                "mpc.reserves.zones = [\n 1 1\n];",
                vec!["mpc.reserves.zones", "reserve requirements"],
            ),
            (
                "mpc.softlims.RATE_A.hl_mod = 'remove';",
                vec!["mpc.softlims.RATE_A", "soft limits"],
            ),
        ] {
            let text = format!("{}{assignment}\n", default_case());
            assert_error(&text, 17, &fragments);
        }
        let empty = format!(
            "{}mpc.A = [];\nmpc.l = [ ];\nmpc.if.map = [];\nmpc.dcline = [];\n\
             mpc.dclinecost = [\n];\nmpc.bus_name = {{ 'a'; 'b' }};\n",
            default_case()
        );
        parse(&empty, "test.m").expect("empty matrices and other fields are fine");
    }

    #[test]
    fn long_tokens_are_cut_in_errors() {
        let huge = "x".repeat(1_000_000);
        let bus = BUS_ROWS.replacen("\t50\t", &format!("\t{huge}\t"), 1);
        let (_, message) = parse_error(&small_case(&bus, GEN_ROWS, BRANCH_ROWS, GENCOST_ROWS));
        assert!(message.len() < 1000, "{} characters", message.len());
        assert!(message.contains("more characters"), "{message}");
    }

    #[test]
    fn library_cases_parse_and_are_connected() {
        for name in ["case5", "case30", "case39", "case57", "case118", "case300"] {
            let path = format!(
                "{}/tests/data/matpower/{name}.m",
                env!("CARGO_MANIFEST_DIR")
            );
            let text = std::fs::read_to_string(&path).expect("test data");
            let case = parse(&text, &path).unwrap_or_else(|e| panic!("{name}: {e}"));
            case.check_connected().expect("connected");
        }
    }
}
