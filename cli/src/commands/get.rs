//! `twinset get KIND [NAME...]`: kubectl's tables, `-o yaml|json|name`, `-w`.
use super::{get_object, list, namespace, parse_target, Ctx};
use crate::args::GetArgs;
use crate::print::output::{self, Output};
use crate::print::table::{self, TableOptions};
use crate::print::tabwriter::TabWriter;
use crate::report::{self, AlreadyReported};
use futures::StreamExt as _;
use twinset_proto::kinds::Kind;
use twinset_proto::v1::{Object, WatchRequest};

/// Runs `get`.
pub async fn run(ctx: &Ctx, args: GetArgs) -> anyhow::Result<()> {
    let format = Output::parse(args.output.as_deref())?;
    let (kind, names) = parse_target(&args.kind, &args.names)?;
    let ns = if args.all_namespaces && names.is_empty() {
        String::new()
    } else {
        namespace(args.namespace.as_deref())
    };
    let opts = TableOptions {
        wide: format == Output::Wide,
        all_namespaces: args.all_namespaces && names.is_empty(),
        show_labels: args.show_labels,
        no_headers: args.no_headers,
        show_managed_fields: args.show_managed_fields,
    };
    let mut client = ctx.client().await?;

    let mut failed = false;
    let (objects, revision) = if names.is_empty() {
        list(
            &mut client,
            kind,
            &ns,
            args.selector.as_deref().unwrap_or(""),
            args.field_selector.as_deref().unwrap_or(""),
        )
        .await?
    } else {
        let mut found = Vec::new();
        let mut errors = Vec::new();
        for name in &names {
            match get_object(&mut client, kind, &ns, name).await {
                Ok(o) => found.push(o),
                Err(e) => errors.push(e),
            }
        }
        if !found.is_empty() {
            report::out(&render(kind, &found, format, opts, names.len() == 1));
        }
        for e in &errors {
            report::eprint_error(e);
        }
        failed = !errors.is_empty();
        (Vec::new(), String::new())
    };

    if names.is_empty() {
        let mut printer = Printer {
            format,
            opts,
            writer: TabWriter::table().remember_widths(),
        };
        if objects.is_empty() && matches!(format, Output::Table | Output::Wide | Output::Name) {
            if !args.watch {
                eprintln!("{}", no_resources(kind, &ns));
            }
        } else {
            printer.print(kind, &objects, false);
        }
        if args.watch {
            let selector = args.selector.as_deref().unwrap_or("");
            watch(&mut client, kind, &ns, selector, revision, printer).await?;
        }
    }
    if failed {
        return Err(AlreadyReported.into());
    }
    Ok(())
}

/// kubectl's message when a list is empty.
pub fn no_resources(kind: Kind, ns: &str) -> String {
    if kind.namespaced() && !ns.is_empty() {
        format!("No resources found in {ns} namespace.")
    } else {
        "No resources found".to_string()
    }
}

fn render(
    kind: Kind,
    objects: &[Object],
    format: Output,
    opts: TableOptions,
    single: bool,
) -> String {
    match format {
        Output::Table | Output::Wide => table::render(kind, objects, opts),
        other if opts.show_managed_fields => output::render(objects, other, single),
        other => {
            // Field ownership is noise in a manifest; kubectl leaves it out too.
            let mut plain = objects.to_vec();
            for o in &mut plain {
                o.meta_mut().managed_fields.clear();
            }
            output::render(&plain, other, single)
        }
    }
}

/// Prints objects in the chosen format; tables keep their column widths across calls
/// and print the header once.
struct Printer {
    format: Output,
    opts: TableOptions,
    writer: TabWriter,
}

impl Printer {
    fn print(&mut self, kind: Kind, objects: &[Object], single: bool) {
        if matches!(self.format, Output::Table | Output::Wide) {
            table::write(&mut self.writer, kind, objects, self.opts);
            report::out(&self.writer.take());
            self.opts.no_headers = true;
        } else {
            report::out(&render(kind, objects, self.format, self.opts, single));
        }
    }
}

async fn watch(
    client: &mut crate::client::Client,
    kind: Kind,
    ns: &str,
    selector: &str,
    revision: String,
    mut printer: Printer,
) -> anyhow::Result<()> {
    let req = WatchRequest {
        kind: kind.as_str().to_string(),
        namespace: ns.to_string(),
        label_selector: selector.to_string(),
        resource_version: revision,
    };
    let mut stream = match client.cluster.watch(req).await {
        Ok(r) => r.into_inner(),
        Err(s) => return Err(client.error(s)),
    };
    while let Some(item) = stream.next().await {
        let event = item.map_err(|s| client.error(s))?;
        let Some(obj) = event.object else { continue };
        printer.print(kind, std::slice::from_ref(&obj), true);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_list_messages() {
        assert_eq!(
            no_resources(Kind::Pod, "kube-system"),
            "No resources found in kube-system namespace."
        );
        assert_eq!(no_resources(Kind::Pod, ""), "No resources found");
        assert_eq!(no_resources(Kind::Node, "default"), "No resources found");
    }
}
