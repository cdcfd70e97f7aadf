//! Validation of objects before they are stored, with Kubernetes' messages:
//! every error names the field path and says what is wrong.

use crate::v1::*;
use crate::{quantity, selector::Selector, Kind};
use std::collections::{BTreeMap, HashSet};

/// A refused object: the field path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {name:?} is invalid: {field}: {reason}")]
pub struct ValidationError {
    /// The object's kind.
    pub kind: &'static str,
    /// The object's name.
    pub name: String,
    /// The path of the offending field.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

type R = Result<(), (String, String)>;

fn bad(field: impl Into<String>, reason: impl Into<String>) -> R {
    Err((field.into(), reason.into()))
}

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";

/// True for an RFC 1123 label: at most 63 of `[a-z0-9-]`, alphanumeric at both ends.
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// True for an RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// Checks an object as the API server would before storing it.
pub fn validate(obj: &Object) -> Result<(), ValidationError> {
    let kind = obj.kind();
    let result = check_meta(kind, obj.meta()).and_then(|()| match &obj.kind {
        Some(object::Kind::Pod(p)) => check_pod_spec("spec", p.spec.as_ref(), false),
        Some(object::Kind::DaemonSet(d)) => check_daemon_set(d),
        Some(object::Kind::StatefulSet(s)) => check_stateful_set(s),
        Some(object::Kind::Node(n)) => check_node(n),
        Some(object::Kind::PersistentVolumeClaim(c)) => check_claim_spec("spec", c.spec.as_ref()),
        Some(object::Kind::Service(s)) => check_service(s),
        _ => Ok(()),
    });
    result.map_err(|(field, reason)| ValidationError {
        kind: kind.as_str(),
        name: obj.name().to_string(),
        field,
        reason,
    })
}

/// Kubernetes' bound on the total size of an object's annotations (keys and values).
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

/// A value as an error message shows it: whole when short, cut after 100 bytes when not
/// (a refused 2 MiB field must not come back as a 2 MiB message).
fn shown_value(v: &str) -> String {
    const SHOWN: usize = 100;
    if v.len() <= SHOWN {
        return format!("{v:?}");
    }
    let mut cut = SHOWN;
    while !v.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("\"{}...\" ({} bytes)", v[..cut].escape_debug(), v.len())
}

/// The reason a name of at most `max` characters matching `valid` is refused: its
/// length (naming the limit) or its form (`form`).
fn name_reason(v: &str, max: usize, valid: fn(&str) -> bool, form: &str) -> Option<String> {
    if v.len() > max {
        return Some(format!(
            "Invalid value: {}: must be no more than {max} characters",
            shown_value(v)
        ));
    }
    (!valid(v)).then(|| format!("Invalid value: {}: {form}", shown_value(v)))
}

fn check_meta(kind: Kind, m: &ObjectMeta) -> R {
    if m.name.is_empty() {
        return bad("metadata.name", "Required value: name is required");
    }
    let label_only = matches!(kind, Kind::Namespace | Kind::Service);
    let name = if label_only {
        name_reason(&m.name, 63, is_dns1123_label, DNS1123_LABEL_MSG)
    } else {
        name_reason(&m.name, 253, is_dns1123_subdomain, DNS1123_SUBDOMAIN_MSG)
    };
    if let Some(reason) = name {
        return bad("metadata.name", reason);
    }
    if !m.namespace.is_empty() {
        if !kind.namespaced() {
            return bad(
                "metadata.namespace",
                format!("not allowed: {} is not namespaced", kind.as_str()),
            );
        }
        if !is_dns1123_label(&m.namespace) {
            return bad(
                "metadata.namespace",
                format!("Invalid value: {:?}: {DNS1123_LABEL_MSG}", m.namespace),
            );
        }
    }
    check_labels("metadata.labels", &m.labels)?;
    check_annotations(&m.annotations)
}

/// Annotation keys are qualified names; keys and values together hold at most
/// [`MAX_ANNOTATIONS_BYTES`].
fn check_annotations(annotations: &BTreeMap<String, String>) -> R {
    let mut total = 0usize;
    for (k, v) in annotations {
        if let Some(reason) = qualified_name_reason(&k.to_ascii_lowercase()) {
            return bad("metadata.annotations", reason);
        }
        total = total.saturating_add(k.len()).saturating_add(v.len());
    }
    if total > MAX_ANNOTATIONS_BYTES {
        return bad(
            "metadata.annotations",
            format!("Too long: must have at most {MAX_ANNOTATIONS_BYTES} bytes"),
        );
    }
    Ok(())
}

/// Why `s` is not a qualified name (`[prefix/]name`, the name part a label value of
/// 1 to 63 characters, the prefix a DNS subdomain), with Kubernetes' wording.
fn qualified_name_reason(s: &str) -> Option<String> {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix {
        if p.len() > 253 {
            return Some(format!(
                "Invalid value: {}: prefix part must be no more than 253 characters",
                shown_value(s)
            ));
        }
        if !is_dns1123_subdomain(p) {
            return Some(format!(
                "Invalid value: {}: prefix part {DNS1123_SUBDOMAIN_MSG}",
                shown_value(s)
            ));
        }
    }
    if name.len() > 63 {
        return Some(format!(
            "Invalid value: {}: name part must be no more than 63 characters",
            shown_value(s)
        ));
    }
    if name.is_empty() || !is_label_value(name) {
        return Some(format!("Invalid value: {}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character", shown_value(s)));
    }
    None
}

fn is_qualified_name(s: &str) -> bool {
    qualified_name_reason(s).is_none()
}

fn is_label_value(v: &str) -> bool {
    v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && v.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
        && v.bytes().last().is_none_or(|b| b.is_ascii_alphanumeric())
}

fn check_labels(field: &str, labels: &BTreeMap<String, String>) -> R {
    for (k, v) in labels {
        if let Some(reason) = qualified_name_reason(k) {
            return bad(field, reason);
        }
        if v.len() > 63 {
            return bad(
                field,
                format!(
                    "Invalid value: {}: must be no more than 63 characters",
                    shown_value(v)
                ),
            );
        }
        if !is_label_value(v) {
            return bad(field, format!("Invalid value: {v:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63)"));
        }
    }
    Ok(())
}

fn check_selector_matches_template(
    selector: Option<&LabelSelector>,
    template: Option<&PodTemplateSpec>,
) -> R {
    let sel = match selector {
        Some(s) if !s.match_labels.is_empty() || !s.match_expressions.is_empty() => s,
        _ => {
            return bad(
                "spec.selector",
                "Required value: a non-empty selector is required",
            )
        }
    };
    let parsed = Selector::from_label_selector(sel)
        .map_err(|e| ("spec.selector".to_string(), e.reason.clone()))?;
    let labels = template
        .and_then(|t| t.metadata.as_ref())
        .map(|m| m.labels.clone())
        .unwrap_or_default();
    if !parsed.matches(&labels) {
        return bad(
            "spec.template.metadata.labels",
            format!(
                "Invalid value: {labels:?}: `selector` ({parsed}) does not match template `labels`"
            ),
        );
    }
    Ok(())
}

fn check_template(template: Option<&PodTemplateSpec>) -> R {
    let t = template.ok_or_else(|| ("spec.template".to_string(), "Required value".to_string()))?;
    if let Some(m) = &t.metadata {
        check_labels("spec.template.metadata.labels", &m.labels)?;
    }
    check_pod_spec("spec.template.spec", t.spec.as_ref(), true)
}

fn check_daemon_set(d: &DaemonSet) -> R {
    let spec = d
        .spec
        .as_ref()
        .ok_or_else(|| ("spec".to_string(), "Required value".to_string()))?;
    check_template(spec.template.as_ref())?;
    check_selector_matches_template(spec.selector.as_ref(), spec.template.as_ref())?;
    non_negative("spec.minReadySeconds", spec.min_ready_seconds.into())?;
    check_history_limit(spec.revision_history_limit)?;
    if let Some(u) = &spec.update_strategy {
        check_update_strategy_type(&u.r#type)?;
        if let Some(ru) = &u.rolling_update {
            check_daemon_set_rolling_update(&u.r#type, ru)?;
        }
    }
    Ok(())
}

/// Kubernetes' ValidateRollingUpdateDaemonSet: maxUnavailable and maxSurge are integers
/// or percentages, not negative, at most 100%, and (for a RollingUpdate set) exactly one
/// of them is non-zero. An unset maxUnavailable counts as its default, 1, so a bare
/// `maxSurge: 1` is refused as Kubernetes refuses it.
fn check_daemon_set_rolling_update(r#type: &str, ru: &RollingUpdateDaemonSet) -> R {
    const PATH: &str = "spec.updateStrategy.rollingUpdate";
    let mut values = [0; 2];
    for (i, (name, v)) in [
        ("maxUnavailable", &ru.max_unavailable),
        ("maxSurge", &ru.max_surge),
    ]
    .into_iter()
    .enumerate()
    {
        let Some(v) = v else {
            values[i] = i32::from(name == "maxUnavailable");
            continue;
        };
        let path = format!("{PATH}.{name}");
        // Scaled against 100, a percentage is its own number: getIntOrPercentValue.
        let n = v.scaled(100, true).map_err(|e| (path.clone(), e))?;
        if n < 0 {
            return bad(path, "must be greater than or equal to 0");
        }
        if matches!(&v.value, Some(int_or_string::Value::StrVal(_))) && n > 100 {
            return bad(
                path,
                format!("Invalid value: {}: must not be greater than 100%", shown(v)),
            );
        }
        values[i] = n;
    }
    if !matches!(r#type, "" | "RollingUpdate") {
        return Ok(());
    }
    match (values[0] != 0, values[1] != 0) {
        (true, true) => bad(
            format!("{PATH}.maxSurge"),
            format!(
                "Invalid value: {}: may not be set when maxUnavailable is non-zero",
                ru.max_surge.as_ref().map(shown).unwrap_or_default()
            ),
        ),
        (false, false) => bad(
            format!("{PATH}.maxUnavailable"),
            "Required value: cannot be 0 when maxSurge is 0",
        ),
        _ => Ok(()),
    }
}

/// An IntOrString as Kubernetes' messages show it: `1`, `"25%"`.
fn shown(v: &IntOrString) -> String {
    match &v.value {
        Some(int_or_string::Value::StrVal(s)) => format!("{s:?}"),
        _ => v.to_string(),
    }
}

/// The update strategy types both workload kinds accept.
fn check_update_strategy_type(t: &str) -> R {
    if matches!(t, "" | "RollingUpdate" | "OnDelete") {
        return Ok(());
    }
    bad(
        "spec.updateStrategy.type",
        format!("Unsupported value: {t:?}: supported values: \"OnDelete\", \"RollingUpdate\""),
    )
}

/// A field that must not be negative (Kubernetes' ValidateNonnegativeField message).
fn non_negative(path: &str, v: i64) -> R {
    if v < 0 {
        return bad(
            path,
            format!("Invalid value: {v}: must be greater than or equal to 0"),
        );
    }
    Ok(())
}

/// A set's revisionHistoryLimit, when given, is not negative (Kubernetes'
/// ValidateNonnegativeField); unset is defaulted to 10.
fn check_history_limit(limit: Option<i32>) -> R {
    match limit {
        Some(l) => non_negative("spec.revisionHistoryLimit", l.into()),
        None => Ok(()),
    }
}

fn check_replicas(replicas: i32) -> R {
    non_negative("spec.replicas", replicas.into())
}

/// Checks a replica count as a Scale request sets it, with the message a whole-object
/// validation gives (`StatefulSet "x" is invalid: spec.replicas: Invalid value: -1: ...`).
pub fn validate_replicas(kind: Kind, name: &str, replicas: i32) -> Result<(), ValidationError> {
    check_replicas(replicas).map_err(|(field, reason)| ValidationError {
        kind: kind.as_str(),
        name: name.to_string(),
        field,
        reason,
    })
}

fn check_stateful_set(s: &StatefulSet) -> R {
    let spec = s
        .spec
        .as_ref()
        .ok_or_else(|| ("spec".to_string(), "Required value".to_string()))?;
    if let Some(r) = spec.replicas {
        check_replicas(r)?;
    }
    if let Some(v) = s
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.get(crate::fencing::ON_NODE_LOST_ANNOTATION))
    {
        crate::fencing::Policy::parse(v).map_err(|reason| {
            (
                format!(
                    "metadata.annotations[{}]",
                    crate::fencing::ON_NODE_LOST_ANNOTATION
                ),
                reason,
            )
        })?;
    }
    check_template(spec.template.as_ref())?;
    check_selector_matches_template(spec.selector.as_ref(), spec.template.as_ref())?;
    if !spec.service_name.is_empty() && !is_dns1123_label(&spec.service_name) {
        return bad(
            "spec.serviceName",
            format!(
                "Invalid value: {:?}: {DNS1123_LABEL_MSG}",
                spec.service_name
            ),
        );
    }
    if !matches!(
        spec.pod_management_policy.as_str(),
        "" | "OrderedReady" | "Parallel"
    ) {
        return bad(
            "spec.podManagementPolicy",
            format!(
                "Unsupported value: {:?}: supported values: \"OrderedReady\", \"Parallel\"",
                spec.pod_management_policy
            ),
        );
    }
    non_negative("spec.minReadySeconds", spec.min_ready_seconds.into())?;
    check_history_limit(spec.revision_history_limit)?;
    if let Some(o) = &spec.ordinals {
        non_negative("spec.ordinals.start", o.start.into())?;
    }
    if let Some(u) = &spec.update_strategy {
        check_update_strategy_type(&u.r#type)?;
        if let Some(p) = u.rolling_update.as_ref().and_then(|r| r.partition) {
            non_negative("spec.updateStrategy.rollingUpdate.partition", p.into())?;
        }
    }
    if let Some(p) = &spec.persistent_volume_claim_retention_policy {
        for (name, v) in [
            ("whenDeleted", &p.when_deleted),
            ("whenScaled", &p.when_scaled),
        ] {
            if !matches!(v.as_str(), "" | "Retain" | "Delete") {
                return bad(
                    format!("spec.persistentVolumeClaimRetentionPolicy.{name}"),
                    format!("Unsupported value: {v:?}: supported values: \"Retain\", \"Delete\""),
                );
            }
        }
    }
    let mut seen = HashSet::new();
    for (i, t) in spec.volume_claim_templates.iter().enumerate() {
        let field = format!("spec.volumeClaimTemplates[{i}]");
        let name = t
            .metadata
            .as_ref()
            .map(|m| m.name.as_str())
            .unwrap_or_default();
        if !is_dns1123_subdomain(name) {
            return bad(
                format!("{field}.metadata.name"),
                format!("Invalid value: {name:?}: {DNS1123_SUBDOMAIN_MSG}"),
            );
        }
        if !seen.insert(name) {
            return bad(
                format!("{field}.metadata.name"),
                format!("Duplicate value: {name:?}"),
            );
        }
        check_claim_spec(&format!("{field}.spec"), t.spec.as_ref())?;
    }
    Ok(())
}

fn check_claim_spec(field: &str, spec: Option<&PersistentVolumeClaimSpec>) -> R {
    let spec = spec.ok_or_else(|| (field.to_string(), "Required value".to_string()))?;
    if spec.access_modes.is_empty() {
        return bad(
            format!("{field}.accessModes"),
            "Required value: at least 1 access mode is required",
        );
    }
    for m in &spec.access_modes {
        if !matches!(
            m.as_str(),
            "ReadWriteOnce" | "ReadOnlyMany" | "ReadWriteMany" | "ReadWriteOncePod"
        ) {
            return bad(format!("{field}.accessModes"), format!("Unsupported value: {m:?}: supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\""));
        }
    }
    if !matches!(spec.volume_mode.as_str(), "" | "Filesystem" | "Block") {
        return bad(
            format!("{field}.volumeMode"),
            format!(
                "Unsupported value: {:?}: supported values: \"Block\", \"Filesystem\"",
                spec.volume_mode
            ),
        );
    }
    if let Some(r) = &spec.resources {
        for (part, map) in [("limits", &r.limits), ("requests", &r.requests)] {
            for (name, q) in map {
                check_quantity(&format!("{field}.resources.{part}[{name}]"), q)?;
            }
        }
    }
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.get("storage"));
    match storage.map(|s| quantity::parse(s)) {
        None => bad(
            format!("{field}.resources.requests.storage"),
            "Required value",
        ),
        Some(Err(e)) => bad(format!("{field}.resources.requests.storage"), e.to_string()),
        Some(Ok(q)) if q.value() <= 0 => bad(
            format!("{field}.resources.requests.storage"),
            "must be greater than zero",
        ),
        Some(Ok(_)) => Ok(()),
    }
}

fn check_pod_spec(field: &str, spec: Option<&PodSpec>, in_set: bool) -> R {
    let spec = spec.ok_or_else(|| (field.to_string(), "Required value".to_string()))?;
    if spec.containers.is_empty() {
        return bad(
            format!("{field}.containers"),
            "Required value: at least one container is required",
        );
    }
    let allowed: &[&str] = if in_set {
        &["", "Always"]
    } else {
        &["", "Always", "OnFailure", "Never"]
    };
    if !allowed.contains(&spec.restart_policy.as_str()) {
        let want = if in_set {
            "\"Always\""
        } else {
            "\"Always\", \"OnFailure\", \"Never\""
        };
        return bad(
            format!("{field}.restartPolicy"),
            format!(
                "Unsupported value: {:?}: supported values: {want}",
                spec.restart_policy
            ),
        );
    }
    if let Some(g) = spec.termination_grace_period_seconds {
        if g < 0 {
            return bad(
                format!("{field}.terminationGracePeriodSeconds"),
                format!("Invalid value: {g}: must be greater than or equal to 0"),
            );
        }
    }
    if !matches!(
        spec.dns_policy.as_str(),
        "" | "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None"
    ) {
        return bad(
            format!("{field}.dnsPolicy"),
            format!(
                "Unsupported value: {:?}: supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\"",
                spec.dns_policy
            ),
        );
    }
    let mut volumes = HashSet::new();
    for (i, v) in spec.volumes.iter().enumerate() {
        if !is_dns1123_label(&v.name) {
            return bad(
                format!("{field}.volumes[{i}].name"),
                format!("Invalid value: {:?}: {DNS1123_LABEL_MSG}", v.name),
            );
        }
        check_volume_source(&format!("{field}.volumes[{i}]"), v)?;
        volumes.insert(v.name.as_str());
    }
    let mut names = HashSet::new();
    for (i, c) in spec
        .init_containers
        .iter()
        .chain(spec.containers.iter())
        .enumerate()
    {
        let is_init = i < spec.init_containers.len();
        let f = if is_init {
            format!("{field}.initContainers[{i}]")
        } else {
            format!("{field}.containers[{}]", i - spec.init_containers.len())
        };
        if !is_dns1123_label(&c.name) {
            return bad(
                format!("{f}.name"),
                format!("Invalid value: {:?}: {DNS1123_LABEL_MSG}", c.name),
            );
        }
        if !names.insert(c.name.as_str()) {
            return bad(
                format!("{f}.name"),
                format!("Duplicate value: {:?}", c.name),
            );
        }
        if c.image.is_empty() {
            return bad(format!("{f}.image"), "Required value");
        }
        for (j, p) in c.ports.iter().enumerate() {
            if !(1..=65535).contains(&p.container_port) {
                return bad(
                    format!("{f}.ports[{j}].containerPort"),
                    format!(
                        "Invalid value: {}: must be between 1 and 65535, inclusive",
                        p.container_port
                    ),
                );
            }
            if !(0..=65535).contains(&p.host_port) {
                return bad(
                    format!("{f}.ports[{j}].hostPort"),
                    format!(
                        "Invalid value: {}: must be between 1 and 65535, inclusive",
                        p.host_port
                    ),
                );
            }
            if !matches!(p.protocol.as_str(), "" | "TCP" | "UDP" | "SCTP") {
                return bad(
                    format!("{f}.ports[{j}].protocol"),
                    format!(
                        "Unsupported value: {:?}: supported values: \"SCTP\", \"TCP\", \"UDP\"",
                        p.protocol
                    ),
                );
            }
        }
        for (j, e) in c.env.iter().enumerate() {
            if e.name.is_empty() || e.name.contains('=') {
                return bad(format!("{f}.env[{j}].name"), format!("Invalid value: {:?}: a valid environment variable name must not be empty or contain '='", e.name));
            }
        }
        for (j, m) in c.volume_mounts.iter().enumerate() {
            if !m.mount_path.starts_with('/') {
                return bad(
                    format!("{f}.volumeMounts[{j}].mountPath"),
                    format!(
                        "Invalid value: {:?}: must be an absolute path",
                        m.mount_path
                    ),
                );
            }
            // In a set, mounts may name a volumeClaimTemplate instead of a pod volume.
            if !in_set && !volumes.contains(m.name.as_str()) {
                return bad(
                    format!("{f}.volumeMounts[{j}].name"),
                    format!("Not found: {:?}", m.name),
                );
            }
        }
        if !matches!(
            c.image_pull_policy.as_str(),
            "" | "Always" | "IfNotPresent" | "Never"
        ) {
            return bad(
                format!("{f}.imagePullPolicy"),
                format!(
                    "Unsupported value: {:?}: supported values: \"Always\", \"IfNotPresent\", \"Never\"",
                    c.image_pull_policy
                ),
            );
        }
        if let Some(r) = &c.resources {
            check_resources(&format!("{f}.resources"), r)?;
        }
        for (name, p) in [
            ("livenessProbe", &c.liveness_probe),
            ("readinessProbe", &c.readiness_probe),
            ("startupProbe", &c.startup_probe),
        ] {
            if let Some(h) = p.as_ref().and_then(|p| p.http_get.as_ref()) {
                if !matches!(h.scheme.as_str(), "" | "HTTP" | "HTTPS") {
                    return bad(
                        format!("{f}.{name}.httpGet.scheme"),
                        format!(
                            "Unsupported value: {:?}: supported values: \"HTTP\", \"HTTPS\"",
                            h.scheme
                        ),
                    );
                }
            }
        }
    }
    for (i, t) in spec.tolerations.iter().enumerate() {
        check_toleration(&format!("{field}.tolerations[{i}]"), t)?;
    }
    if let Some(na) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
    {
        if let Some(req) = &na.required_during_scheduling_ignored_during_execution {
            for (i, term) in req.node_selector_terms.iter().enumerate() {
                for (j, e) in term
                    .match_expressions
                    .iter()
                    .chain(term.match_fields.iter())
                    .enumerate()
                {
                    let f = format!("{field}.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[{i}].matchExpressions[{j}]");
                    check_node_selector_requirement(&f, e)?;
                }
            }
        }
    }
    Ok(())
}

/// Kubernetes' standard container resources; anything else must be an extended
/// resource, a domain-qualified name (`example.com/gpu`).
fn is_container_resource_name(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage")
        || name.starts_with("hugepages-")
        || (name.contains('/') && is_qualified_name(name) && !name.starts_with("kubernetes.io/"))
}

/// One quantity of a container's resources: parsed and not negative
/// (`resources.limits[memory]: Invalid value: "12Qi": ...`).
fn check_quantity(path: &str, q: &str) -> Result<quantity::Quantity, (String, String)> {
    let parsed = quantity::parse(q).map_err(|e| {
        (
            path.to_string(),
            format!("Invalid value: {q:?}: {}", e.reason),
        )
    })?;
    if parsed < quantity::Quantity::default() {
        return Err((
            path.to_string(),
            format!("Invalid value: {q:?}: must be greater than or equal to 0"),
        ));
    }
    Ok(parsed)
}

/// Every quantity in limits and in requests (limits first: the server's defaults copy
/// a limit into a missing request, so the limit is what the user wrote), the names,
/// and no request above its limit.
fn check_resources(f: &str, r: &ResourceRequirements) -> R {
    for (part, map) in [("limits", &r.limits), ("requests", &r.requests)] {
        for (name, q) in map {
            let path = format!("{f}.{part}[{name}]");
            if !is_container_resource_name(name) {
                return bad(
                    path,
                    format!("Invalid value: {name:?}: must be a standard resource for containers"),
                );
            }
            check_quantity(&path, q)?;
        }
    }
    for (name, q) in &r.requests {
        if let Some(lim) = r.limits.get(name) {
            let (req, limit) = (check_quantity("", q)?, check_quantity("", lim)?);
            if req > limit {
                return bad(
                    format!("{f}.requests"),
                    format!(
                        "Invalid value: {q:?}: must be less than or equal to {name} limit of {lim}"
                    ),
                );
            }
        }
    }
    Ok(())
}

/// A pod volume's source: an emptyDir's size limit is a quantity, a hostPath's type
/// one of Kubernetes' closed set.
fn check_volume_source(f: &str, v: &Volume) -> R {
    if let Some(e) = &v.empty_dir {
        if !e.size_limit.is_empty() {
            check_quantity(&format!("{f}.emptyDir.sizeLimit"), &e.size_limit)?;
        }
    }
    if let Some(h) = &v.host_path {
        const TYPES: [&str; 8] = [
            "",
            "DirectoryOrCreate",
            "Directory",
            "FileOrCreate",
            "File",
            "Socket",
            "CharDevice",
            "BlockDevice",
        ];
        if !TYPES.contains(&h.r#type.as_str()) {
            return bad(
                format!("{f}.hostPath.type"),
                format!(
                    "Unsupported value: {:?}: supported values: {}",
                    h.r#type,
                    TYPES.map(|t| format!("{t:?}")).join(", ")
                ),
            );
        }
    }
    Ok(())
}

fn check_node_selector_requirement(f: &str, e: &NodeSelectorRequirement) -> R {
    match e.operator.as_str() {
        "In" | "NotIn" if e.values.is_empty() => bad(format!("{f}.values"), "Required value: must be specified when `operator` is 'In' or 'NotIn'"),
        "Exists" | "DoesNotExist" if !e.values.is_empty() => bad(format!("{f}.values"), "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"),
        "Gt" | "Lt" if e.values.len() != 1 || e.values[0].parse::<i64>().is_err() => bad(format!("{f}.values"), "Required value: must be specified single integer value when `operator` is 'Lt' or 'Gt'"),
        "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => Ok(()),
        other => bad(format!("{f}.operator"), format!("Unsupported value: {other:?}: supported values: \"DoesNotExist\", \"Exists\", \"Gt\", \"In\", \"Lt\", \"NotIn\"")),
    }
}

fn check_effect(f: &str, effect: &str, allow_empty: bool) -> R {
    match effect {
        "" if allow_empty => Ok(()),
        "NoSchedule" | "PreferNoSchedule" | "NoExecute" => Ok(()),
        other => bad(f, format!("Unsupported value: {other:?}: supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"")),
    }
}

fn check_toleration(f: &str, t: &Toleration) -> R {
    match t.operator.as_str() {
        "" | "Equal" => {
            if t.key.is_empty() {
                return bad(
                    format!("{f}.operator"),
                    "Invalid value: \"Equal\": operator must be Exists when `key` is empty",
                );
            }
        }
        "Exists" => {
            if !t.value.is_empty() {
                return bad(
                    format!("{f}.operator"),
                    "Invalid value: \"Exists\": value must be empty when `operator` is 'Exists'",
                );
            }
        }
        other => {
            return bad(
                format!("{f}.operator"),
                format!("Unsupported value: {other:?}: supported values: \"Equal\", \"Exists\""),
            )
        }
    }
    check_effect(&format!("{f}.effect"), &t.effect, true)
}

fn check_node(n: &Node) -> R {
    if let Some(spec) = &n.spec {
        for (i, t) in spec.taints.iter().enumerate() {
            if !is_qualified_name(&t.key) {
                return bad(format!("spec.taints[{i}].key"), format!("Invalid value: {:?}: name part must consist of alphanumeric characters, '-', '_' or '.'", t.key));
            }
            check_effect(&format!("spec.taints[{i}].effect"), &t.effect, false)?;
        }
    }
    Ok(())
}

fn check_service(s: &Service) -> R {
    if let Some(spec) = &s.spec {
        if !matches!(
            spec.r#type.as_str(),
            "" | "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
        ) {
            return bad(
                "spec.type",
                format!(
                    "Unsupported value: {:?}: supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
                    spec.r#type
                ),
            );
        }
        for (i, p) in spec.ports.iter().enumerate() {
            if !matches!(p.protocol.as_str(), "" | "TCP" | "UDP" | "SCTP") {
                return bad(
                    format!("spec.ports[{i}].protocol"),
                    format!(
                        "Unsupported value: {:?}: supported values: \"SCTP\", \"TCP\", \"UDP\"",
                        p.protocol
                    ),
                );
            }
            if !(1..=65535).contains(&p.port) {
                return bad(
                    format!("spec.ports[{i}].port"),
                    format!(
                        "Invalid value: {}: must be between 1 and 65535, inclusive",
                        p.port
                    ),
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::decode;

    const DS: &str = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: NAME\n  namespace: kube-system\nspec:\n  selector:\n    matchLabels:\n      app: SEL\n  template:\n    metadata:\n      labels:\n        app: mon\n    spec:\n      containers:\n      - name: c\n        image: busybox\n";

    fn ds(name: &str, sel: &str) -> Result<(), String> {
        decode(&DS.replace("NAME", name).replace("SEL", sel))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn dns1123() {
        assert!(is_dns1123_label("mysql-db-0"));
        assert!(!is_dns1123_label("My_DS"));
        assert!(!is_dns1123_label("-a"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1123_subdomain("a.b-c"));
        assert!(!is_dns1123_subdomain("a..b"));
    }

    fn ns_with(meta: ObjectMeta) -> Result<(), String> {
        let obj = Object::from(Namespace {
            api_version: "v1".into(),
            kind: "Namespace".into(),
            metadata: Some(meta),
            ..Default::default()
        });
        validate(&obj).map_err(|e| format!("{}: {}", e.field, e.reason))
    }

    fn meta(name: &str) -> ObjectMeta {
        ObjectMeta {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn name_and_label_lengths_name_the_limit() {
        let long = "a".repeat(64);
        assert_eq!(
            ns_with(meta(&long)).unwrap_err(),
            format!("metadata.name: Invalid value: \"{long}\": must be no more than 63 characters")
        );
        let label = "a".repeat(63);
        let longest = format!("{label}.{label}.{label}.{}", "a".repeat(61));
        assert_eq!(longest.len(), 253);
        let sub = format!("{longest}a");
        let e = ds(&sub, "mon").unwrap_err();
        assert!(
            e.contains("metadata.name: Invalid value: \"aaaa")
                && e.ends_with("(254 bytes): must be no more than 253 characters"),
            "{e}"
        );
        assert_eq!(ds(&longest, "mon"), Ok(()));
        let mut m = meta("ok");
        m.labels.insert("app".into(), "v".repeat(64));
        assert_eq!(
            ns_with(m).unwrap_err(),
            format!(
                "metadata.labels: Invalid value: \"{}\": must be no more than 63 characters",
                "v".repeat(64)
            )
        );
        let mut m = meta("ok");
        m.labels
            .insert(format!("example.com/{}", "k".repeat(64)), "v".into());
        assert!(ns_with(m)
            .unwrap_err()
            .ends_with("name part must be no more than 63 characters"));
    }

    #[test]
    fn annotations_hold_at_most_256_kib() {
        let mut m = meta("ok");
        m.annotations.insert("big".into(), "x".repeat(300 * 1024));
        assert_eq!(
            ns_with(m).unwrap_err(),
            "metadata.annotations: Too long: must have at most 262144 bytes"
        );
        let mut m = meta("ok");
        m.annotations
            .insert("big".into(), "x".repeat(MAX_ANNOTATIONS_BYTES - 3));
        assert!(ns_with(m).is_ok(), "exactly the limit is allowed");
        let mut m = meta("ok");
        m.annotations.insert("not a key".into(), String::new());
        assert!(ns_with(m).unwrap_err().starts_with(
            "metadata.annotations: Invalid value: \"not a key\": name part must consist"
        ));
    }

    #[test]
    fn names_and_selectors() {
        assert_eq!(ds("mon", "mon"), Ok(()));
        let e = ds("Bad_Name", "mon").unwrap_err();
        assert!(
            e.starts_with("DaemonSet \"Bad_Name\" is invalid: metadata.name: Invalid value"),
            "{e}"
        );
        let e = ds("mon", "other").unwrap_err();
        assert!(
            e.contains("spec.template.metadata.labels") && e.contains("does not match"),
            "{e}"
        );
    }

    #[test]
    fn negative_replicas_and_claims() {
        let sts = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: s\nspec:\n  replicas: REP\n  serviceName: SVC\n  selector:\n    matchLabels:\n      app: a\n  template:\n    metadata:\n      labels:\n        app: a\n    spec:\n      containers:\n      - name: c\n        image: busybox\n  volumeClaimTemplates:\n  - metadata:\n      name: data\n    spec:\n      accessModes: [ReadWriteOnce]\n      resources:\n        requests:\n          STORAGE\n";
        let mk = |rep: &str, svc: &str, storage: &str| {
            decode(
                &sts.replace("REP", rep)
                    .replace("SVC", svc)
                    .replace("STORAGE", storage),
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
        };
        assert_eq!(mk("2", "svc", "storage: 1Gi"), Ok(()));
        assert_eq!(
            mk("2\n  revisionHistoryLimit: -2", "svc", "storage: 1Gi"),
            Err("StatefulSet \"s\" is invalid: spec.revisionHistoryLimit: Invalid value: -2: must be greater than or equal to 0".to_string())
        );
        assert_eq!(
            mk("2\n  revisionHistoryLimit: 0", "svc", "storage: 1Gi"),
            Ok(())
        );
        assert!(mk("-1", "svc", "storage: 1Gi")
            .unwrap_err()
            .contains("spec.replicas: Invalid value: -1"));
        assert!(mk("2", "Bad_Svc", "storage: 1Gi")
            .unwrap_err()
            .contains("spec.serviceName"));
        assert!(mk("2", "svc", "cpu: 1")
            .unwrap_err()
            .contains("requests.storage: Required value"));
    }

    /// Kubernetes' ValidateRollingUpdateDaemonSet: exactly one of maxUnavailable and
    /// maxSurge is non-zero (an unset maxUnavailable is its default, 1), no negative
    /// values, percentages at most 100%; OnDelete sets only get the value checks.
    #[test]
    fn daemon_set_rolling_update() {
        let base = DS.replace("NAME", "m").replace("SEL", "mon");
        let with = |strategy: &str| {
            decode(&format!("{base}  updateStrategy:\n{strategy}"))
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let ru =
            |t: &str, fields: &str| with(&format!("    type: {t}\n    rollingUpdate:\n{fields}"));
        let ok = [
            "      maxUnavailable: 1\n",
            "      maxUnavailable: 0\n      maxSurge: 1\n",
            "      maxUnavailable: \"0%\"\n      maxSurge: \"100%\"\n",
            "      maxUnavailable: 2\n      maxSurge: 0\n",
            "      maxUnavailable: \"100%\"\n",
        ];
        for fields in ok {
            assert_eq!(ru("RollingUpdate", fields), Ok(()), "{fields}");
        }
        let refused = [
            (
                "      maxSurge: 1\n",
                "spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: 1: may not be set when maxUnavailable is non-zero",
            ),
            (
                "      maxUnavailable: 1\n      maxSurge: \"10%\"\n",
                "maxSurge: Invalid value: \"10%\": may not be set when maxUnavailable is non-zero",
            ),
            (
                "      maxUnavailable: 0\n",
                "spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0",
            ),
            (
                "      maxUnavailable: \"0%\"\n      maxSurge: 0\n",
                "maxUnavailable: Required value: cannot be 0 when maxSurge is 0",
            ),
            (
                "      maxUnavailable: 0\n      maxSurge: \"150%\"\n",
                "maxSurge: Invalid value: \"150%\": must not be greater than 100%",
            ),
            (
                "      maxUnavailable: -1\n",
                "maxUnavailable: must be greater than or equal to 0",
            ),
            (
                "      maxUnavailable: 0\n      maxSurge: x\n",
                "maxSurge: invalid value \"x\": must be an integer or a percentage",
            ),
        ];
        for (fields, want) in refused {
            let e = ru("RollingUpdate", fields).unwrap_err();
            assert!(e.contains(want), "{fields}: {e}");
        }
        // OnDelete ignores rollingUpdate's combination but not malformed values.
        assert_eq!(ru("OnDelete", "      maxSurge: 1\n"), Ok(()));
        assert!(ru("OnDelete", "      maxSurge: -1\n")
            .unwrap_err()
            .contains("maxSurge: must be greater than or equal to 0"));
        assert!(with("    type: Recreate\n")
            .unwrap_err()
            .contains("spec.updateStrategy.type: Unsupported value: \"Recreate\""));
    }

    #[test]
    fn tolerations_and_restart_policy() {
        let base = DS.replace("NAME", "m").replace("SEL", "mon");
        let bad_tol = format!("{base}      tolerations:\n      - key: a\n        operator: Exists\n        value: b\n");
        assert!(decode(&bad_tol)
            .unwrap_err()
            .to_string()
            .contains("tolerations[0].operator"));
        let bad_rp = format!("{base}      restartPolicy: Never\n");
        assert!(decode(&bad_rp)
            .unwrap_err()
            .to_string()
            .contains("restartPolicy: Unsupported value"));
    }

    /// Every quantity in requests and in limits is parsed, whether or not the other
    /// side names the same resource; names outside Kubernetes' set are refused.
    #[test]
    fn every_quantity_is_checked() {
        let base = DS.replace("NAME", "m").replace("SEL", "mon");
        let with = |resources: &str| {
            decode(&format!("{base}        resources:\n{resources}"))
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            with("          limits:\n            memory: 1Gi\n          requests:\n            cpu: 100m\n"),
            Ok(())
        );
        let c = "DaemonSet \"m\" is invalid: spec.template.spec.containers[0].resources";
        let refused = [
            (
                "          limits:\n            memory: 12Qi\n",
                format!("{c}.limits[memory]: Invalid value: \"12Qi\": unknown suffix"),
            ),
            (
                "          requests:\n            cpu: lots\n",
                format!("{c}.requests[cpu]: Invalid value: \"lots\": expected a number"),
            ),
            (
                "          requests:\n            memory: 1Gi\n          limits:\n            cpu: lots\n",
                format!("{c}.limits[cpu]: Invalid value: \"lots\""),
            ),
            (
                "          limits:\n            cpu: \"-1\"\n",
                format!("{c}.limits[cpu]: Invalid value: \"-1\": must be greater than or equal to 0"),
            ),
            (
                "          limits:\n            bananas: \"1\"\n",
                format!("{c}.limits[bananas]: Invalid value: \"bananas\": must be a standard resource for containers"),
            ),
            (
                "          limits:\n            memory: 1Gi\n          requests:\n            memory: 2Gi\n",
                format!("{c}.requests: Invalid value: \"2Gi\": must be less than or equal to memory limit of 1Gi"),
            ),
        ];
        for (resources, want) in refused {
            let e = with(resources).unwrap_err();
            assert!(e.starts_with(&want), "{resources}: {e}");
        }
        assert_eq!(
            with("          limits:\n            example.com/gpu: \"1\"\n            hugepages-2Mi: 2Mi\n"),
            Ok(())
        );
    }

    /// A limit copied into the request by the server's defaults is refused with the
    /// same message before and after defaults.
    #[test]
    fn same_message_before_and_after_defaults() {
        let m = DS.replace("NAME", "m").replace("SEL", "mon")
            + "        resources:\n          limits:\n            memory: 12Qi\n";
        let before = decode(&m).unwrap_err().to_string();
        let text = m.replace("12Qi", "1Gi");
        let mut o = decode(&text).unwrap().remove(0);
        crate::defaults::apply(&mut o);
        let c = &mut o.as_daemon_set_mut().unwrap().spec.as_mut().unwrap();
        let r = c
            .template
            .as_mut()
            .unwrap()
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .resources
            .as_mut()
            .unwrap();
        r.limits.insert("memory".into(), "12Qi".into());
        r.requests.insert("memory".into(), "12Qi".into());
        assert_eq!(validate(&o).unwrap_err().to_string(), before);
    }

    /// Every string field with a closed set of values in Kubernetes.
    #[test]
    fn bad_enums_are_refused() {
        let base = DS.replace("NAME", "m").replace("SEL", "mon");
        let pod_spec = |extra: &str| {
            decode(&format!("{base}{extra}"))
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let cases = [
            ("      dnsPolicy: Sometimes\n", "spec.template.spec.dnsPolicy: Unsupported value: \"Sometimes\""),
            ("        imagePullPolicy: Maybe\n", "spec.template.spec.containers[0].imagePullPolicy: Unsupported value: \"Maybe\": supported values: \"Always\", \"IfNotPresent\", \"Never\""),
            ("        ports:\n        - containerPort: 80\n          protocol: ICMP\n", "containers[0].ports[0].protocol: Unsupported value: \"ICMP\""),
            ("        readinessProbe:\n          httpGet:\n            port: 80\n            scheme: FTP\n", "containers[0].readinessProbe.httpGet.scheme: Unsupported value: \"FTP\""),
            ("      restartPolicy: Never\n", "spec.template.spec.restartPolicy: Unsupported value: \"Never\""),
            ("      volumes:\n      - name: v\n        hostPath:\n          path: /x\n          type: Pipe\n", "spec.template.spec.volumes[0].hostPath.type: Unsupported value: \"Pipe\""),
            ("      volumes:\n      - name: v\n        emptyDir:\n          sizeLimit: big\n", "spec.template.spec.volumes[0].emptyDir.sizeLimit: Invalid value: \"big\""),
        ];
        for (extra, want) in cases {
            let e = pod_spec(extra).unwrap_err();
            assert!(e.contains(want), "{extra}: {e}");
        }
        assert!(pod_spec("      dnsPolicy: ClusterFirstWithHostNet\n").is_ok());
        let strategy = |t: &str| {
            decode(&format!("{base}  updateStrategy:\n    type: {t}\n")).map_err(|e| e.to_string())
        };
        assert!(strategy("Recreate")
            .unwrap_err()
            .contains("spec.updateStrategy.type: Unsupported value"));

        let svc = |extra: &str| {
            decode(&format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n{extra}"
            ))
            .map(|_| ())
            .map_err(|e| e.to_string())
        };
        assert!(svc("  type: Magic\n")
            .unwrap_err()
            .contains("spec.type: Unsupported value: \"Magic\""));
        assert!(svc("  ports:\n  - port: 53\n    protocol: udp\n")
            .unwrap_err()
            .contains("spec.ports[0].protocol: Unsupported value: \"udp\""));
        let pvc = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: c\nspec:\n  accessModes: [ReadWriteOnce]\n  volumeMode: Raw\n  resources:\n    requests:\n      storage: 1Gi\n";
        assert!(decode(pvc)
            .unwrap_err()
            .to_string()
            .contains("spec.volumeMode: Unsupported value: \"Raw\""));
        let sts = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: s\nspec:\n  podManagementPolicy: Random\n  selector:\n    matchLabels:\n      app: a\n  template:\n    metadata:\n      labels:\n        app: a\n    spec:\n      containers:\n      - name: c\n        image: busybox\n";
        assert!(decode(sts)
            .unwrap_err()
            .to_string()
            .contains("spec.podManagementPolicy: Unsupported value: \"Random\""));
        assert_eq!(
            validate_replicas(Kind::StatefulSet, "s", -2).unwrap_err().to_string(),
            "StatefulSet \"s\" is invalid: spec.replicas: Invalid value: -2: must be greater than or equal to 0"
        );
    }
}
