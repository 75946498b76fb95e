//! How the CLI prints an answer: `--output table` (the default: aligned columns, human
//! times, durations and dollars), `json` (the API's answer as it came) or `yaml`.

use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use serde_json::Value;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// The API's JSON answer, unchanged.
    Json,
    /// The same answer as YAML.
    Yaml,
}

#[derive(Debug, Clone, Copy, Args)]
pub struct Output {
    /// How to print the answer.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// How one value is shown in a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// As it is (strings without quotes; lists joined by commas).
    Text,
    /// Milliseconds since the epoch: `3m ago (2026-11-28 10:04:05Z)`.
    Time,
    /// Milliseconds: `1h 2m`, `3.2s`.
    Millis,
    /// Seconds: `1h 2m`.
    Seconds,
    /// Nano-dollars: `$0.0123`.
    Dollars,
    /// A ratio in 0..1 as a percentage.
    Percent,
    /// A number with two decimals.
    Number,
    /// An object of key/value pairs, `key=value,...`.
    Pairs,
}

/// One column: its header, where its value is in each row (a JSON pointer) and how it
/// shows.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub header: &'static str,
    pub pointer: &'static str,
    pub show: Show,
}

pub const fn col(header: &'static str, pointer: &'static str, show: Show) -> Column {
    Column {
        header,
        pointer,
        show,
    }
}

impl Output {
    /// Prints a list: the rows at `rows` (a JSON pointer; `""` when the answer is the
    /// list), in columns, or the whole answer as JSON or YAML.
    pub fn list(&self, answer: &Value, rows: &str, columns: &[Column]) -> anyhow::Result<()> {
        match self.output {
            Format::Table => {
                let items = answer
                    .pointer(rows)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                print!("{}", table(&items, columns, now_ms()));
                Ok(())
            }
            _ => self.raw(answer),
        }
    }

    /// Prints one object: one `FIELD  value` line per column.
    pub fn object(&self, answer: &Value, columns: &[Column]) -> anyhow::Result<()> {
        match self.output {
            Format::Table => {
                print!("{}", vertical(answer, columns, now_ms()));
                Ok(())
            }
            _ => self.raw(answer),
        }
    }

    /// A table prints `line`; JSON and YAML print the answer (an empty answer is `null`).
    pub fn raw_or_line(&self, answer: &Value, line: &str) -> anyhow::Result<()> {
        match self.output {
            Format::Table => {
                println!("{line}");
                Ok(())
            }
            _ => self.raw(answer),
        }
    }

    /// Prints the answer as JSON or YAML (a table format prints it as YAML, which reads
    /// well for nested answers).
    pub fn raw(&self, answer: &Value) -> anyhow::Result<()> {
        match self.output {
            Format::Json => println!("{}", serde_json::to_string_pretty(answer)?),
            Format::Table | Format::Yaml => print!("{}", serde_saphyr::to_string(answer)?),
        }
        Ok(())
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis() as u64)
        .unwrap_or_default()
}

/// Rows under their headers, each column as wide as its widest cell.
pub fn table(rows: &[Value], columns: &[Column], now_ms: u64) -> String {
    let mut cells: Vec<Vec<String>> = vec![columns.iter().map(|c| c.header.to_string()).collect()];
    for row in rows {
        cells.push(
            columns
                .iter()
                .map(|column| cell(row.pointer(column.pointer), column.show, now_ms))
                .collect(),
        );
    }
    let widths: Vec<usize> = (0..columns.len())
        .map(|index| {
            cells
                .iter()
                .map(|line| line[index].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in &cells {
        let mut text = String::new();
        for (index, value) in line.iter().enumerate() {
            if index + 1 == line.len() {
                text.push_str(value);
            } else {
                let pad = widths[index] - value.chars().count();
                text.push_str(value);
                text.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

fn vertical(object: &Value, columns: &[Column], now_ms: u64) -> String {
    let width = columns.iter().map(|c| c.header.len()).max().unwrap_or(0);
    let mut out = String::new();
    for column in columns {
        let value = cell(object.pointer(column.pointer), column.show, now_ms);
        out.push_str(&format!("{:<width$}  {value}\n", column.header));
    }
    out
}

/// One value as a table shows it; `-` when there is none.
pub fn cell(value: Option<&Value>, show: Show, now_ms: u64) -> String {
    let Some(value) = value.filter(|value| !value.is_null()) else {
        return "-".to_string();
    };
    match show {
        Show::Text => text(value),
        Show::Time => value
            .as_u64()
            .map(|at| when(at, now_ms))
            .unwrap_or_else(|| text(value)),
        Show::Millis => value
            .as_u64()
            .map(duration_ms)
            .unwrap_or_else(|| text(value)),
        Show::Seconds => value
            .as_f64()
            .map(|seconds| duration_ms((seconds * 1_000.0) as u64))
            .unwrap_or_else(|| text(value)),
        Show::Dollars => value.as_u64().map(dollars).unwrap_or_else(|| text(value)),
        Show::Number => value
            .as_f64()
            .map(|number| format!("{number:.2}"))
            .unwrap_or_else(|| text(value)),
        Show::Percent => value
            .as_f64()
            .map(|ratio| format!("{:.1}%", ratio * 100.0))
            .unwrap_or_else(|| text(value)),
        Show::Pairs => match value.as_object() {
            Some(pairs) if pairs.is_empty() => "-".to_string(),
            Some(pairs) => pairs
                .iter()
                .map(|(key, value)| format!("{key}={}", text(value)))
                .collect::<Vec<_>>()
                .join(","),
            None => text(value),
        },
    }
}

pub(crate) fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Array(items) if items.is_empty() => "-".to_string(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        Value::Bool(flag) => if *flag { "yes" } else { "no" }.to_string(),
        other => other.to_string(),
    }
}

/// `3m ago (2026-11-28 10:04:05Z)`, or `in 2m (...)` for a time to come.
pub fn when(at_ms: u64, now_ms: u64) -> String {
    if at_ms == 0 {
        return "-".to_string();
    }
    let stamp = utc(at_ms);
    if at_ms <= now_ms {
        format!("{} ago ({stamp})", short(now_ms - at_ms))
    } else {
        format!("in {} ({stamp})", short(at_ms - now_ms))
    }
}

/// The largest unit only: `45s`, `3m`, `2h`, `4d`.
fn short(ms: u64) -> String {
    let seconds = ms / 1_000;
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3_600 => format!("{}m", seconds / 60),
        3_600..86_400 => format!("{}h", seconds / 3_600),
        _ => format!("{}d", seconds / 86_400),
    }
}

/// `850ms`, `3.2s`, `4m 05s`, `2h 03m`, `3d 04h`.
pub fn duration_ms(ms: u64) -> String {
    let seconds = ms / 1_000;
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1_000.0),
        60_000..3_600_000 => format!("{}m {:02}s", seconds / 60, seconds % 60),
        3_600_000..86_400_000 => format!("{}h {:02}m", seconds / 3_600, (seconds % 3_600) / 60),
        _ => format!("{}d {:02}h", seconds / 86_400, (seconds % 86_400) / 3_600),
    }
}

/// Nano-dollars as dollars: cents from a dollar up, more decimals below (a second of a
/// small job costs millionths).
pub fn dollars(nanos: u64) -> String {
    let dollars = nanos as f64 / 1e9;
    match dollars {
        1.0.. => format!("${dollars:.2}"),
        0.01.. => format!("${dollars:.4}"),
        _ => format!("${dollars:.6}"),
    }
}

/// `2026-11-28 10:04:05Z` (UTC, from the civil calendar of the Unix day count).
pub fn utc(at_ms: u64) -> String {
    let seconds = at_ms / 1_000;
    let days = (seconds / 86_400) as i64;
    let of_day = seconds % 86_400;
    // Days since 1970-01-01 to a (year, month, day) in the proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        of_day / 3_600,
        (of_day % 3_600) / 60,
        of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn times_durations_and_dollars_read_as_people_write_them() {
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc(1_795_860_245_000), "2026-11-28 10:04:05Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00Z");
        let now = 1_795_860_245_000;
        assert_eq!(when(now - 180_000, now), "3m ago (2026-11-28 10:01:05Z)");
        assert_eq!(when(now + 7_200_000, now), "in 2h (2026-11-28 12:04:05Z)");
        assert_eq!(duration_ms(850), "850ms");
        assert_eq!(duration_ms(3_200), "3.2s");
        assert_eq!(duration_ms(245_000), "4m 05s");
        assert_eq!(duration_ms(7_380_000), "2h 03m");
        assert_eq!(dollars(12_300_000), "$0.0123");
        assert_eq!(dollars(1_234), "$0.000001");
        assert_eq!(dollars(2_500_000_000), "$2.50");
    }

    #[test]
    fn a_table_aligns_its_columns_and_shows_a_dash_for_what_is_missing() {
        let rows = [
            json!({"id": "a", "state": "pending", "labels": {"team": "x"}}),
            json!({"id": "longer-id", "labels": {}}),
        ];
        let columns = [
            col("ID", "/id", Show::Text),
            col("STATE", "/state", Show::Text),
            col("LABELS", "/labels", Show::Pairs),
        ];
        assert_eq!(
            table(&rows, &columns, 0),
            "ID         STATE    LABELS\na          pending  team=x\nlonger-id  -        -\n"
        );
    }
}
