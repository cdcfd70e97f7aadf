//! `-o` formats other than tables: yaml, json and name.
use anyhow::bail;
use twinset_proto::v1::Object;

/// What `-o` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The default table.
    Table,
    /// `-o wide`: the table with extra columns.
    Wide,
    /// `-o yaml`.
    Yaml,
    /// `-o json`.
    Json,
    /// `-o name`: `kind.group/name` per line.
    Name,
}

impl Output {
    /// Parses the `-o` value; kubectl's error for anything else.
    pub fn parse(value: Option<&str>) -> anyhow::Result<Self> {
        Ok(match value {
            None | Some("") => Output::Table,
            Some("wide") => Output::Wide,
            Some("yaml") => Output::Yaml,
            Some("json") => Output::Json,
            Some("name") => Output::Name,
            Some(other) => bail!(
                "unable to match a printer suitable for the output format \"{other}\", allowed formats are: json,name,wide,yaml"
            ),
        })
    }
}

/// Prints one object (`get KIND NAME`) or a list (`kind: List`) as YAML or JSON,
/// or the names; `single` says whether a single named object was asked for.
pub fn render(objects: &[Object], output: Output, single: bool) -> String {
    match output {
        Output::Yaml if single && objects.len() == 1 => {
            twinset_proto::manifest::to_yaml(&objects[0])
        }
        Output::Json if single && objects.len() == 1 => {
            with_newline(twinset_proto::manifest::to_json(&objects[0]))
        }
        Output::Yaml => twinset_proto::manifest::list_to_yaml(objects),
        Output::Json => with_newline(twinset_proto::manifest::list_to_json(objects)),
        Output::Name | Output::Table | Output::Wide => {
            let mut out = String::new();
            for o in objects {
                out.push_str(&super::format::qualified_name(o));
                out.push('\n');
            }
            out
        }
    }
}

fn with_newline(mut s: String) -> String {
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_formats() {
        assert_eq!(Output::parse(None).ok(), Some(Output::Table));
        assert_eq!(Output::parse(Some("wide")).ok(), Some(Output::Wide));
        assert!(Output::parse(Some("xml")).is_err());
    }
}
