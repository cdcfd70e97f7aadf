//! A port of Go's `text/tabwriter` as kubectl configures it, so that tables and
//! `describe` output line up exactly as kubectl's do: cells are tab-terminated,
//! the text after a line's last tab is not part of any column, and a column is
//! aligned only across the consecutive lines that have a cell in it.

/// Accumulates tab-separated text and lays it out in aligned columns.
#[derive(Debug)]
pub struct TabWriter {
    min_width: usize,
    padding: usize,
    pending: String,
    out: String,
    remembered: Option<Vec<usize>>,
}

impl TabWriter {
    /// kubectl's table writer: minimum cell width 6, padding 3.
    pub fn table() -> Self {
        Self::new(6, 3)
    }

    /// kubectl's describe writer: minimum cell width 0, padding 2.
    pub fn describe() -> Self {
        Self::new(0, 2)
    }

    /// A writer with the given minimum cell width and padding (both include the cell text).
    pub fn new(min_width: usize, padding: usize) -> Self {
        Self {
            min_width,
            padding,
            pending: String::new(),
            out: String::new(),
            remembered: None,
        }
    }

    /// Keeps column widths across flushes, so rows printed later (`get -w`) stay
    /// under the columns printed first (Go's RememberWidths).
    pub fn remember_widths(mut self) -> Self {
        self.remembered = Some(Vec::new());
        self
    }

    /// Flushes and hands back the text laid out so far.
    pub fn take(&mut self) -> String {
        self.flush();
        std::mem::take(&mut self.out)
    }

    /// Appends text; `\t` ends a cell, `\n` ends a line.
    pub fn write(&mut self, text: &str) {
        self.pending.push_str(text);
    }

    /// Writes `text` indented by `level` two-space steps (kubectl's PrefixWriter levels).
    pub fn line(&mut self, level: usize, text: &str) {
        for _ in 0..level {
            self.pending.push_str("  ");
        }
        self.pending.push_str(text);
    }

    /// Lays out everything written so far; later text starts new column blocks.
    pub fn flush(&mut self) {
        let text = std::mem::take(&mut self.pending);
        if text.is_empty() {
            return;
        }
        let ends_with_newline = text.ends_with('\n');
        let body = if ends_with_newline {
            &text[..text.len() - 1]
        } else {
            text.as_str()
        };
        let lines: Vec<Vec<&str>> = body.split('\n').map(|l| l.split('\t').collect()).collect();
        let mut widths = Vec::new();
        let mut rendered = Vec::with_capacity(lines.len());
        self.format(&lines, 0, lines.len(), &mut widths, &mut rendered);
        self.out.push_str(&rendered.join("\n"));
        if ends_with_newline {
            self.out.push('\n');
        }
    }

    /// Flushes and returns the laid-out text.
    pub fn finish(mut self) -> String {
        self.flush();
        self.out
    }

    /// Everything written, with nothing laid out: text still pending is handed back with
    /// its tabs, as Go writes when no tab writer sits between the printer and the output.
    pub fn into_unaligned(mut self) -> String {
        self.out.push_str(&self.pending);
        self.out
    }

    fn format(
        &mut self,
        lines: &[Vec<&str>],
        mut line0: usize,
        line1: usize,
        widths: &mut Vec<usize>,
        rendered: &mut Vec<String>,
    ) {
        let column = widths.len();
        let mut this = line0;
        while this < line1 {
            if column + 1 >= lines[this].len() {
                this += 1;
                continue;
            }
            // A column block starts here: print the lines before it with the widths known so far.
            self.write_lines(lines, line0, this, widths, rendered);
            line0 = this;
            let mut width = self.min_width;
            while this < line1 && column + 1 < lines[this].len() {
                width = width.max(text_width(lines[this][column]) + self.padding);
                this += 1;
            }
            if let Some(r) = self.remembered.as_mut() {
                if r.len() <= column {
                    r.resize(column + 1, 0);
                }
                width = width.max(r[column]);
                r[column] = width;
            }
            widths.push(width);
            self.format(lines, line0, this, widths, rendered);
            widths.pop();
            line0 = this;
        }
        self.write_lines(lines, line0, line1, widths, rendered);
    }

    fn write_lines(
        &self,
        lines: &[Vec<&str>],
        line0: usize,
        line1: usize,
        widths: &[usize],
        rendered: &mut Vec<String>,
    ) {
        for cells in &lines[line0..line1] {
            let mut out = String::new();
            for (j, cell) in cells.iter().enumerate() {
                out.push_str(cell);
                if j + 1 < cells.len() {
                    if let Some(w) = widths.get(j) {
                        for _ in text_width(cell)..*w {
                            out.push(' ');
                        }
                    }
                }
            }
            rendered.push(out);
        }
    }
}

fn text_width(s: &str) -> usize {
    s.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_pad_by_three_and_last_column_is_not_padded() {
        let mut w = TabWriter::table();
        w.write("NAME\tREADY\tSTATUS\tRESTARTS\tAGE\n");
        w.write("node-monitor-abcde\t1/1\tRunning\t0\t5s\n");
        assert_eq!(
            w.finish(),
            "NAME                 READY   STATUS    RESTARTS   AGE\n\
             node-monitor-abcde   1/1     Running   0          5s\n"
        );
    }

    #[test]
    fn min_width_applies_to_short_columns() {
        let mut w = TabWriter::table();
        w.write("A\tB\n1\t2\n");
        assert_eq!(w.finish(), "A     B\n1     2\n");
    }

    #[test]
    fn remembered_widths_carry_over_flushes() {
        let mut w = TabWriter::table().remember_widths();
        w.write("NAME\tREADY\tSTATUS\nlong-pod-name\t1/1\tRunning\n");
        let first = w.take();
        assert_eq!(
            first,
            "NAME            READY   STATUS\nlong-pod-name   1/1     Running\n"
        );
        w.write("p\t0/1\tTerminating\n");
        assert_eq!(w.take(), "p               0/1     Terminating\n");
    }

    #[test]
    fn describe_blocks_break_on_lines_without_tabs() {
        let mut w = TabWriter::describe();
        w.write("Name:\tx\nNode-Selector:\t<none>\nDesired Number of Nodes Scheduled: 3\nPods Status:\t1 Running\n");
        assert_eq!(
            w.finish(),
            "Name:           x\nNode-Selector:  <none>\nDesired Number of Nodes Scheduled: 3\nPods Status:  1 Running\n"
        );
    }

    #[test]
    fn nested_columns_align_within_their_own_block() {
        let mut w = TabWriter::describe();
        w.write("  Type\tReason\tAge\n  ----\t------\t---\n  Normal\tCreated\t5s\n");
        assert_eq!(
            w.finish(),
            "  Type    Reason   Age\n  ----    ------   ---\n  Normal  Created  5s\n"
        );
    }
}
