//! Parsing kubectl-style tables (`get` output) by column position.

/// A table as printed by `twinset get`: a header line and rows aligned under it.
///
/// Columns are found from the header: a column starts where a header word follows
/// two or more spaces (so `NOMINATED NODE` stays one column). Every row is cut at
/// those positions, which is how tabwriter output is aligned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Column titles, in order.
    pub header: Vec<String>,
    /// Cells of each row, one per column (trimmed; empty when the row is short).
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// Parses `get` output. Blank lines are ignored; the first line is the header.
    pub fn parse(text: &str) -> Table {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let Some(header_line) = lines.next() else {
            return Table {
                header: Vec::new(),
                rows: Vec::new(),
            };
        };
        let header_chars: Vec<char> = header_line.chars().collect();
        let mut starts = Vec::new();
        let mut i = 0;
        while i < header_chars.len() {
            if header_chars[i] != ' '
                && (i == 0 || (i >= 2 && header_chars[i - 1] == ' ' && header_chars[i - 2] == ' '))
            {
                starts.push(i);
            }
            i += 1;
        }
        let cut = |chars: &[char]| -> Vec<String> {
            starts
                .iter()
                .enumerate()
                .map(|(k, &s)| {
                    let e = starts
                        .get(k + 1)
                        .copied()
                        .unwrap_or(usize::MAX)
                        .min(chars.len());
                    if s >= chars.len() {
                        String::new()
                    } else {
                        chars[s..e].iter().collect::<String>().trim().to_string()
                    }
                })
                .collect()
        };
        let header = cut(&header_chars);
        let rows = lines.map(|l| cut(&l.chars().collect::<Vec<_>>())).collect();
        Table { header, rows }
    }

    /// Index of a column by title.
    pub fn col(&self, title: &str) -> Option<usize> {
        self.header.iter().position(|h| h == title)
    }

    /// The cell of `row` under `title` (panics with the table when the column is missing).
    #[track_caller]
    pub fn cell<'a>(&'a self, row: &'a [String], title: &str) -> &'a str {
        let i = self
            .col(title)
            .unwrap_or_else(|| panic!("no column {title} in header {:?}", self.header));
        row.get(i).map(String::as_str).unwrap_or("")
    }

    /// The first row whose first column equals `name`.
    pub fn row(&self, name: &str) -> Option<&Vec<String>> {
        self.rows
            .iter()
            .find(|r| r.first().map(String::as_str) == Some(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_columns_with_spaces_in_titles() {
        let t = Table::parse(
            "NAME       READY   STATUS    RESTARTS   AGE   IP            NODE    NOMINATED NODE   READINESS GATES\n\
             pod-abcde  1/1     Running   0          5s    127.128.0.2   node1   <none>           <none>\n",
        );
        assert_eq!(t.header.len(), 9);
        assert_eq!(t.header[7], "NOMINATED NODE");
        let row = t.row("pod-abcde").expect("row");
        assert_eq!(t.cell(row, "IP"), "127.128.0.2");
        assert_eq!(t.cell(row, "NOMINATED NODE"), "<none>");
        assert_eq!(t.cell(row, "READINESS GATES"), "<none>");
    }
}
