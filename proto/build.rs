//! Compiles `twinset/v1/*.proto` with protox (no protoc needed) and generates the
//! prost messages and tonic services. Object messages (everything outside
//! api.proto) also get serde derives in the Kubernetes JSON shape, so a manifest
//! decodes straight into them: camelCase names, absent fields default, unknown
//! fields refused, default values left out of the output (except the fields
//! Kubernetes always writes, `ALWAYS_WRITTEN`).
use prost::Message;
use std::path::PathBuf;

// RENAMES and QUANTITY_MAPS: the one table the crate's `schema` reads too.
include!("src/json_names.rs");

/// Fields the Kubernetes OpenAPI schema marks required whose value may be the default (0,
/// false, ""): written even then, as kube-apiserver writes them, because strict clients
/// (the official Python client's models) refuse an object without them. Every other field
/// at its default is left out.
const ALWAYS_WRITTEN: &[&str] = &[
    ".twinset.v1.ContainerStatus.name",
    ".twinset.v1.ContainerStatus.ready",
    ".twinset.v1.ContainerStatus.restart_count",
    ".twinset.v1.ContainerStatus.image",
    ".twinset.v1.ContainerStatus.image_id",
    ".twinset.v1.ContainerStateTerminated.exit_code",
    ".twinset.v1.ContainerPort.container_port",
    ".twinset.v1.ServicePort.port",
    ".twinset.v1.DaemonEndpoint.port",
    ".twinset.v1.StatefulSetStatus.replicas",
    ".twinset.v1.DaemonSetStatus.current_number_scheduled",
    ".twinset.v1.DaemonSetStatus.number_misscheduled",
    ".twinset.v1.DaemonSetStatus.desired_number_scheduled",
    ".twinset.v1.DaemonSetStatus.number_ready",
    ".twinset.v1.NodeSystemInfo.machine_id",
    ".twinset.v1.NodeSystemInfo.boot_id",
    ".twinset.v1.NodeSystemInfo.kernel_version",
    ".twinset.v1.NodeSystemInfo.os_image",
    ".twinset.v1.NodeSystemInfo.container_runtime_version",
    ".twinset.v1.NodeSystemInfo.kubelet_version",
    ".twinset.v1.NodeSystemInfo.operating_system",
    ".twinset.v1.NodeSystemInfo.architecture",
    ".twinset.v1.NodeSystemInfo.kube_proxy_version",
    ".twinset.v1.NodeSystemInfo.system_uuid",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "twinset/v1/meta.proto",
        "twinset/v1/core.proto",
        "twinset/v1/apps.proto",
        "twinset/v1/api.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    println!("cargo:rerun-if-changed=src/json_names.rs");
    let fds = protox::compile(files, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("twinset_descriptor.bin"), fds.encode_to_vec())?;

    let mut builder = tonic_prost_build::configure().btree_map(".");
    for file in &fds.file {
        if file.name() == "twinset/v1/api.proto" {
            continue;
        }
        for msg in &file.message_type {
            let path = format!(".{}.{}", file.package(), msg.name());
            if msg.name() == "IntOrString" {
                // Hand-written serde impls: it is a bare int or string in manifests.
                continue;
            }
            builder = builder.message_attribute(
                &path,
                "#[derive(serde::Serialize, serde::Deserialize)] \
                 #[serde(default, rename_all = \"camelCase\", deny_unknown_fields)]",
            );
            for field in &msg.field {
                let fpath = format!("{path}.{}", field.name());
                if !ALWAYS_WRITTEN.contains(&fpath.as_str()) {
                    builder = builder.field_attribute(
                        &fpath,
                        "#[serde(skip_serializing_if = \"crate::serde_support::is_default\")]",
                    );
                }
                if let Some((_, json)) = RENAMES.iter().find(|(p, _)| *p == field.name()) {
                    builder =
                        builder.field_attribute(&fpath, format!("#[serde(rename = \"{json}\")]"));
                }
                if fpath == ".twinset.v1.ControllerRevision.data" {
                    builder = builder.field_attribute(
                        &fpath,
                        "#[serde(with = \"crate::serde_support::revision_data\")]",
                    );
                }
                if fpath == ".twinset.v1.ManagedFieldsEntry.fields_v1" {
                    builder = builder.field_attribute(
                        &fpath,
                        "#[serde(with = \"crate::serde_support::json_text\")]",
                    );
                }
                if QUANTITY_MAPS.contains(&fpath.as_str()) {
                    builder = builder.field_attribute(
                        &fpath,
                        "#[serde(deserialize_with = \"crate::quantity::deserialize_map\")]",
                    );
                }
            }
        }
    }
    builder.compile_fds(fds)?;
    Ok(())
}
