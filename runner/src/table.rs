//! One table model for every output: the summary builds each of its tables once (columns,
//! rows, group headings) and the printed summary, the HTML report, the live dashboard and
//! the CSV files render that one [`Table`]. A new column or table is written once and
//! shows up everywhere.
//!
//! - Text: each column as wide as its widest cell, text columns left-aligned and numbers
//!   right-aligned, two spaces apart; fitted to a terminal's width by keeping only the
//!   columns marked for the narrow layout; a name too long for its column goes on a line
//!   of its own above its figures, never cut; a column empty in every row is left out.
//!   Control characters are shown escaped.
//! - HTML: a `<table id=..>` whose cells carry `data-field` (the column's field name),
//!   headings as `tr.group` rows, everything escaped.
//! - CSV: RFC 4180, spreadsheet-safe; headings left out (a column carries what they say);
//!   numbers written plain (`97.5`, not `97.50%`).

use std::fmt::Write as _;

use crate::escape::{pad, printable, spreadsheet_safe};

/// Where a column is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// In every output, the narrow text layout included.
    Always,
    /// In every output but the narrow text layout.
    Wide,
    /// In HTML and CSV, not in text (a heading or the row's indent says it there).
    NotText,
    /// Only in CSV (a heading says it in text and HTML).
    CsvOnly,
}

/// A column: its header, its field name (HTML's `data-field`) and how it is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The header, as printed (`p95 ms`).
    pub header: String,
    /// A stable name for readers of the HTML (`p95`).
    pub field: &'static str,
    /// Text (left-aligned) rather than a number (right-aligned).
    pub text: bool,
    /// Where it is shown.
    pub show: Show,
    /// Its HTML cells take their row's class (`ok`, `bad`): a verdict's column.
    pub marked: bool,
}

impl Column {
    /// A text column shown everywhere.
    pub fn text(header: impl Into<String>, field: &'static str) -> Self {
        Column {
            header: header.into(),
            field,
            text: true,
            show: Show::Always,
            marked: false,
        }
    }

    /// A number column shown everywhere.
    pub fn num(header: impl Into<String>, field: &'static str) -> Self {
        Column {
            header: header.into(),
            field,
            text: false,
            show: Show::Always,
            marked: false,
        }
    }

    /// The same, its HTML cells taking their row's class.
    pub fn marked(mut self) -> Self {
        self.marked = true;
        self
    }

    /// The same, shown as `show` says.
    pub fn shown(mut self, show: Show) -> Self {
        self.show = show;
        self
    }
}

/// A cell: what people read, and what a CSV gets when that differs (`97.50%` is `97.5`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cell {
    /// As shown in text and HTML.
    pub shown: String,
    /// As written in CSV, when not `shown`.
    pub raw: Option<String>,
}

impl Cell {
    /// A cell shown and written as `s`.
    pub fn of(s: impl Into<String>) -> Self {
        Cell {
            shown: s.into(),
            raw: None,
        }
    }

    /// A cell shown as `shown` and written to CSV as `raw`.
    pub fn with_raw(shown: impl Into<String>, raw: impl Into<String>) -> Self {
        Cell {
            shown: shown.into(),
            raw: Some(raw.into()),
        }
    }

    fn csv(&self) -> &str {
        self.raw.as_deref().unwrap_or(&self.shown)
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Self {
        Cell::of(s)
    }
}

impl From<&str> for Cell {
    fn from(s: &str) -> Self {
        Cell::of(s)
    }
}

/// A row of cells, one per column.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    /// The cells, in the columns' order.
    pub cells: Vec<Cell>,
    /// Its class in HTML (`total`, `service`, `ok`, `bad`).
    pub class: Option<&'static str>,
    /// Its scenario, as HTML's `data-scenario`.
    pub scenario: Option<String>,
    /// How many levels its first cell is indented under a heading or the row above.
    pub indent: usize,
}

impl Row {
    /// A row of `cells`.
    pub fn new(cells: Vec<Cell>) -> Self {
        Row {
            cells,
            ..Row::default()
        }
    }

    /// With an HTML class.
    pub fn class(mut self, class: &'static str) -> Self {
        self.class = Some(class);
        self
    }

    /// Indented `levels` under what is above it.
    pub fn indent(mut self, levels: usize) -> Self {
        self.indent = levels;
        self
    }

    /// Belonging to `scenario`.
    pub fn scenario(mut self, scenario: &str) -> Self {
        self.scenario = Some(scenario.to_owned());
        self
    }
}

/// A line of a table: a row, or a heading over the rows below it.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// A row.
    Row(Row),
    /// A heading (`scenario browse (constant-vus)`, a group's path), indented `.1` levels.
    Heading(String, usize),
}

/// A table; see the [module docs](self).
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Its HTML id.
    pub id: &'static str,
    /// Its columns.
    pub columns: Vec<Column>,
    /// Its lines.
    pub lines: Vec<Line>,
    /// What HTML says when it has no row (`No request yet.`).
    pub empty: &'static str,
}

impl Table {
    /// An empty table of `columns`.
    pub fn new(id: &'static str, columns: Vec<Column>) -> Self {
        Table {
            id,
            columns,
            lines: Vec::new(),
            empty: "",
        }
    }

    /// Adds a row.
    pub fn row(&mut self, row: Row) {
        debug_assert_eq!(row.cells.len(), self.columns.len(), "{}", self.id);
        self.lines.push(Line::Row(row));
    }

    /// Adds a heading.
    pub fn heading(&mut self, text: impl Into<String>, indent: usize) {
        self.lines.push(Line::Heading(text.into(), indent));
    }

    /// Its rows.
    pub fn rows(&self) -> impl Iterator<Item = &Row> {
        self.lines.iter().filter_map(|l| match l {
            Line::Row(r) => Some(r),
            Line::Heading(..) => None,
        })
    }

    /// Whether it has no row.
    pub fn is_empty(&self) -> bool {
        self.rows().next().is_none()
    }

    /// The table as text, in full when `width` is `None` or everything fits in it, else
    /// in the narrow layout; see the [module docs](self).
    pub fn to_text(&self, width: Option<usize>) -> String {
        const INDENT: usize = 2;
        let cell_text = |r: &Row, i: usize| -> String {
            let s = printable(&r.cells[i].shown);
            if i == 0 && r.indent > 0 {
                format!("{:w$}{s}", "", w = r.indent * INDENT)
            } else {
                s.into_owned()
            }
        };
        // A column with nothing in any row is left out (a metric kind's figures).
        let has_rows = !self.is_empty();
        let in_text: Vec<usize> = (0..self.columns.len())
            .filter(|&i| matches!(self.columns[i].show, Show::Always | Show::Wide))
            .filter(|&i| i == 0 || !has_rows || self.rows().any(|r| !r.cells[i].shown.is_empty()))
            .collect();
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|i| {
                self.rows()
                    .map(|r| cell_text(r, i).chars().count())
                    .chain(std::iter::once(self.columns[i].header.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let total = |keep: &dyn Fn(usize) -> bool| -> usize {
            in_text
                .iter()
                .filter(|&&i| keep(i))
                .map(|&i| widths[i] + 2)
                .sum::<usize>()
                .saturating_sub(2)
        };
        let all = |_: usize| true;
        let narrow = |i: usize| self.columns[i].show == Show::Always;
        let (keep, fits): (&dyn Fn(usize) -> bool, usize) = match width {
            Some(w) if total(&all) >= w => (&narrow, w),
            _ => (&all, usize::MAX),
        };
        let shown: Vec<usize> = in_text.iter().copied().filter(|&i| keep(i)).collect();
        let Some((&first, rest)) = shown.split_first() else {
            return String::new();
        };
        // The first column gives way when the others need the room, down to its header.
        let others = total(&|i| keep(i) && i != first);
        let first_w = widths[first]
            .min(fits.saturating_sub(others + 3))
            .max(self.columns[first].header.chars().count());
        let mut out = String::new();
        let line = |out: &mut String, cells: Vec<String>| {
            let mut text = String::new();
            let name_len = cells[0].chars().count();
            // Padded by hand: a name of any length (format!'s widths end at 65,535).
            if name_len > first_w {
                let _ = writeln!(out, "{}", cells[0]);
                pad(&mut text, first_w);
            } else {
                text.push_str(&cells[0]);
                pad(&mut text, first_w - name_len);
            }
            for (n, &i) in rest.iter().enumerate() {
                let cell = &cells[n + 1];
                let gap = widths[i].saturating_sub(cell.chars().count());
                if self.columns[i].text {
                    pad(&mut text, 2);
                    text.push_str(cell);
                    pad(&mut text, gap);
                } else {
                    pad(&mut text, 2 + gap);
                    text.push_str(cell);
                }
            }
            let _ = writeln!(out, "{}", text.trim_end());
        };
        line(
            &mut out,
            shown
                .iter()
                .map(|&i| printable(&self.columns[i].header).into_owned())
                .collect(),
        );
        for l in &self.lines {
            match l {
                Line::Row(r) => line(&mut out, shown.iter().map(|&i| cell_text(r, i)).collect()),
                Line::Heading(h, indent) => line_of_its_own(&mut out, h, *indent * INDENT),
            }
        }
        out
    }

    /// The table as an HTML `<table>`; see the [module docs](self).
    pub fn to_html(&self) -> String {
        let cols: Vec<&Column> = self
            .columns
            .iter()
            .filter(|c| c.show != Show::CsvOnly)
            .collect();
        let mut out = format!("<table id=\"{}\"><tr>", self.id);
        for c in &cols {
            let class = if c.text { " class=\"text\"" } else { "" };
            let _ = write!(out, "<th{class}>{}</th>", esc(&c.header));
        }
        out.push_str("</tr>");
        for l in &self.lines {
            match l {
                Line::Heading(h, indent) => {
                    let _ = write!(
                        out,
                        "<tr class=\"group\"><td colspan=\"{}\">{}{}</td></tr>",
                        cols.len(),
                        "&nbsp;&nbsp;".repeat(*indent),
                        esc(h)
                    );
                }
                Line::Row(r) => {
                    out.push_str("<tr");
                    if let Some(c) = r.class {
                        let _ = write!(out, " class=\"{c}\"");
                    }
                    if let Some(s) = &r.scenario {
                        let _ = write!(out, " data-scenario=\"{}\"", esc(s));
                    }
                    out.push('>');
                    for (i, c) in self.columns.iter().enumerate() {
                        if c.show == Show::CsvOnly {
                            continue;
                        }
                        let class = match (c.text, c.marked.then_some(r.class).flatten()) {
                            (true, Some(m)) => format!(" class=\"text {m}\""),
                            (true, None) => " class=\"text\"".to_owned(),
                            (false, Some(m)) => format!(" class=\"{m}\""),
                            (false, None) => String::new(),
                        };
                        let indent = if i == 0 { r.indent } else { 0 };
                        let _ = write!(
                            out,
                            "<td{class} data-field=\"{}\">{}{}</td>",
                            c.field,
                            "&nbsp;&nbsp;".repeat(indent),
                            esc(&r.cells[i].shown)
                        );
                    }
                    out.push_str("</tr>");
                }
            }
        }
        if self.is_empty() && !self.empty.is_empty() {
            let _ = write!(
                out,
                "<tr><td class=\"text\" colspan=\"{}\">{}</td></tr>",
                cols.len(),
                esc(self.empty)
            );
        }
        out.push_str("</table>");
        out
    }

    /// The table as CSV, a header line first; see the [module docs](self).
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        csv_line(&mut out, self.columns.iter().map(|c| c.header.as_str()));
        for r in self.rows() {
            csv_line(&mut out, r.cells.iter().map(Cell::csv));
        }
        out
    }
}

fn line_of_its_own(out: &mut String, text: &str, indent: usize) {
    let _ = writeln!(out, "{:indent$}{}", "", printable(text));
}

/// `s` with `& < > " '` escaped, for HTML text and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A CSV field: control characters escaped and a leading formula character neutralised
/// ([`spreadsheet_safe`]: names and messages can carry a response's bytes), quoted when
/// it holds a comma or a quote (RFC 4180).
pub(crate) fn csv_field(s: &str) -> String {
    let s = spreadsheet_safe(s);
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.into_owned()
    }
}

/// Pushes one CSV line of `fields`.
pub(crate) fn csv_line<'a>(out: &mut String, fields: impl Iterator<Item = &'a str>) {
    for (i, f) in fields.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&csv_field(f));
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new(
            "t",
            vec![
                Column::text("Name", "name"),
                Column::text("Scenario", "scenario").shown(Show::CsvOnly),
                Column::num("Count", "count"),
                Column::num("Share %", "share").shown(Show::Wide),
            ],
        );
        t.heading("scenario a", 0);
        t.row(
            Row::new(vec![
                "/x".into(),
                "a".into(),
                "12".into(),
                Cell::with_raw("50.00", "50"),
            ])
            .scenario("a"),
        );
        t.row(Row::new(vec!["inner".into(), "a".into(), "3".into(), "".into()]).indent(1));
        t
    }

    #[test]
    fn text_aligns_names_left_and_numbers_right_and_leaves_csv_columns_out() {
        assert_eq!(
            sample().to_text(None),
            "Name     Count  Share %\n\
             scenario a\n\
             /x          12    50.00\n\
             \x20 inner      3\n"
        );
    }

    #[test]
    fn text_narrows_to_the_width_keeping_the_columns_marked_always() {
        assert_eq!(
            sample().to_text(Some(16)),
            "Name     Count\nscenario a\n/x          12\n  inner      3\n"
        );
        // A name longer than its room goes on a line of its own, never cut.
        let mut t = sample();
        t.row(Row::new(vec![
            "/a/very/long/name".into(),
            "a".into(),
            "1".into(),
            "".into(),
        ]));
        let text = t.to_text(Some(14));
        assert!(text.contains("/a/very/long/name\n"), "{text}");
        assert!(text.ends_with("         1\n"), "{text}");
    }

    #[test]
    fn html_carries_fields_headings_and_escapes() {
        let mut t = sample();
        t.row(Row::new(vec!["<b>".into(), "a".into(), "1".into(), "".into()]).class("total"));
        let html = t.to_html();
        assert!(html.starts_with("<table id=\"t\"><tr><th class=\"text\">Name</th><th>Count</th><th>Share %</th></tr>"), "{html}");
        assert!(html.contains("<tr class=\"group\"><td colspan=\"3\">scenario a</td></tr>"));
        assert!(html.contains("<tr data-scenario=\"a\"><td class=\"text\" data-field=\"name\">/x</td><td data-field=\"count\">12</td><td data-field=\"share\">50.00</td></tr>"), "{html}");
        assert!(html.contains("data-field=\"name\">&nbsp;&nbsp;inner<"));
        assert!(
            html.contains(
                "<tr class=\"total\"><td class=\"text\" data-field=\"name\">&lt;b&gt;</td>"
            )
        );
        let mut empty = Table::new("e", vec![Column::text("Name", "name")]);
        empty.empty = "Nothing yet.";
        assert!(
            empty
                .to_html()
                .contains("<td class=\"text\" colspan=\"1\">Nothing yet.</td>")
        );
    }

    #[test]
    fn csv_has_every_column_raw_values_and_no_headings() {
        assert_eq!(
            sample().to_csv(),
            "Name,Scenario,Count,Share %\n/x,a,12,50\ninner,a,3,\n"
        );
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "two\\nlines");
        assert_eq!(csv_field("=1+1,x"), "\"'=1+1,x\"");
    }
}
