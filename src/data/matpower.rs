//! Reader for MATPOWER version-2 case files (`mpc.baseMVA`, `mpc.bus`, `mpc.gen`,
//! `mpc.branch`, `mpc.gencost`). Only what a DC market model needs is kept; anything the
//! reader cannot represent faithfully (piecewise-linear gencost, polynomial order > 2,
//! version 1 files) is an error, never silently dropped.

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
        items: Vec<MatrixItem>,
    },
    /// Inside `{` of a cell array, at the given brace depth.
    Cell {
        name: String,
        line: usize,
        depth: usize,
    },
}

/// Builds the file-problem error.
fn err(source_name: &str, line: usize, message: impl Into<String>) -> Error {
    Error::Matpower {
        source_name: source_name.to_string(),
        line,
        message: message.into(),
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

/// Parses one value of a matrix; MATLAB's `Inf`/`NaN` parse but are rejected because no
/// field this reader keeps can take them meaningfully.
fn parse_value(token: &str, source_name: &str, field: &str, line: usize) -> Result<f64> {
    let value: f64 = token.parse().map_err(|_| {
        err(
            source_name,
            line,
            format!("mpc.{field}: `{token}` is not a number"),
        )
    })?;
    if !value.is_finite() {
        return Err(err(
            source_name,
            line,
            format!("mpc.{field}: value `{token}` is not finite (NaN/Inf are not supported)"),
        ));
    }
    Ok(value)
}

/// Reads the values of one line inside `[ ... ]`, returning the text after the closing `]`
/// if the matrix ends on this line.
fn scan_matrix_line<'a>(
    text: &'a str,
    line: usize,
    source_name: &str,
    field: &str,
    keep: bool,
    items: &mut Vec<MatrixItem>,
) -> Result<Option<&'a str>> {
    let mut start: Option<usize> = None;
    let flush = |start: &mut Option<usize>, end: usize, items: &mut Vec<MatrixItem>| {
        if let Some(s) = start.take()
            && keep
        {
            items.push(MatrixItem::Value(
                line,
                parse_value(&text[s..end], source_name, field, line)?,
            ));
        }
        Ok::<(), Error>(())
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
    items.push(MatrixItem::Newline);
    Ok(None)
}

/// Forms rows from the scanned items and checks the matrix is rectangular.
///
/// MATLAB ends a row at a newline, but hand-edited case files wrap long `mpc.gen` rows
/// across lines. So when a matrix uses `;` terminators at all, only `;` ends a row;
/// otherwise newlines do. The rectangularity check (which MATLAB also enforces) catches
/// files that mix the two styles inconsistently.
fn build_rows(
    items: Vec<MatrixItem>,
    source_name: &str,
    field: &str,
    line: usize,
) -> Result<Matrix> {
    let semicolon_rows = items.iter().any(|i| matches!(i, MatrixItem::Semicolon));
    let mut rows: Vec<Row> = Vec::new();
    let mut current: Option<Row> = None;
    for item in items {
        match item {
            MatrixItem::Value(l, v) => current
                .get_or_insert_with(|| Row {
                    line: l,
                    values: Vec::new(),
                })
                .values
                .push(v),
            MatrixItem::Semicolon => rows.extend(current.take()),
            MatrixItem::Newline if !semicolon_rows => rows.extend(current.take()),
            MatrixItem::Newline => {}
        }
    }
    rows.extend(current.take());
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
                    if !index_part.is_empty() {
                        if kept {
                            return Err(err(
                                source_name,
                                line,
                                format!(
                                    "indexed or sub-field assignment `mpc.{name}{index_part} = ...` \
                                     is not supported; assign the whole field"
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
                            name: name.to_string(),
                            line,
                            keep: is_kept_matrix(name),
                            items: Vec::new(),
                        };
                        rest = after;
                        continue;
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
                        scan_matrix_line(rest, line, source_name, name, *keep, items)?
                    else {
                        break;
                    };
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
        buses.push(Bus {
            id,
            kind,
            pd_mw: v[2],
            qd_mvar: v[3],
            gs_mw: v[4],
        });
    }
    Ok(buses)
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
        let v = &row.values;
        let bus = known_bus(v[0], bus_ids, source_name, row.line, &what)?;
        let (pmax_mw, pmin_mw) = (v[8], v[9]);
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
        let (c2, c1, c0, startup_cost) = read_gencost(cost_row, i + 1, source_name)?;
        generators.push(Generator {
            bus,
            in_service: v[7] > 0.0,
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
    bus_ids: &HashMap<usize, usize>,
    source_name: &str,
) -> Result<Vec<Branch>> {
    let mut branches = Vec::with_capacity(matrix.rows.len());
    for (i, row) in matrix.rows.iter().enumerate() {
        let what = format!("mpc.branch row {}", i + 1);
        require_cols(row, BRANCH_MIN_COLS, source_name, &what)?;
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
        let in_service = v[10] > 0.0;
        let x_pu = v[3];
        // A zero-reactance line has infinite DC susceptance; out of service it never enters
        // the network matrix, so only in-service ones are rejected.
        if in_service && x_pu == 0.0 {
            return Err(err(
                source_name,
                row.line,
                format!("{what} ({from}-{to}): in-service branch has reactance x = 0"),
            ));
        }
        let rate_a_mw = v[5];
        if rate_a_mw < 0.0 {
            return Err(err(
                source_name,
                row.line,
                format!("{what} ({from}-{to}): negative RATE_A {rate_a_mw} MW"),
            ));
        }
        branches.push(Branch {
            from,
            to,
            x_pu,
            rate_a_mw,
            tap: v[8],
            shift_deg: v[9],
            in_service,
        });
    }
    Ok(branches)
}

/// Reads `mpc.version`; a missing version is accepted because the columns kept here are
/// the same in versions 1 and 2 (only `RAMP_30` is absent, and then defaults to 0).
fn check_version(version: Option<&Scalar>, source_name: &str) -> Result<()> {
    if let Some(v) = version {
        let text = v.text.trim_matches(|c| c == '\'' || c == '"');
        if text != "2" {
            return Err(err(
                source_name,
                v.line,
                format!(
                    "mpc.version is {}; only MATPOWER case format version '2' is supported",
                    v.text
                ),
            ));
        }
    }
    Ok(())
}

/// Reads `mpc.baseMVA`.
fn read_base_mva(scalar: Option<&Scalar>, source_name: &str) -> Result<f64> {
    let s = scalar.ok_or_else(|| err(source_name, 0, "required field mpc.baseMVA is missing"))?;
    let value = parse_value(&s.text, source_name, "baseMVA", s.line)?;
    if value <= 0.0 {
        return Err(err(
            source_name,
            s.line,
            format!("mpc.baseMVA must be positive, found {value}"),
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
    let generators = read_generators(&gen_, &gencost, &bus_ids, source_name)?;
    let branches = read_branches(&branch, &bus_ids, source_name)?;
    Ok(Case {
        source_name: source_name.to_string(),
        base_mva,
        buses,
        generators,
        branches,
    })
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
        for token in ["NaN", "Inf", "-inf"] {
            let gen_ = GEN_ROWS.replacen("\t80\t", &format!("\t{token}\t"), 1);
            assert_error(
                &small_case(BUS_ROWS, &gen_, BRANCH_ROWS, GENCOST_ROWS),
                9,
                &["mpc.gen", token, "not finite"],
            );
        }
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
        let out_of_service = branch.replacen("\t0\t1\t-360", "\t0\t0\t-360", 1);
        let case = parse(
            &small_case(BUS_ROWS, GEN_ROWS, &out_of_service, GENCOST_ROWS),
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
}
