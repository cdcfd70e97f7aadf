use prost::Message as _;

use super::*;

fn doc(path: &str, accept: &str) -> &'static Document {
    match document(path, accept, None).unwrap() {
        Answer::Document(d) => d,
        Answer::Moved(to) => panic!("{path} moved to {to}"),
    }
}

fn json_of(path: &str, accept: &str) -> Value {
    serde_json::from_slice(&doc(path, accept).body).unwrap()
}

/// Every `$ref` in `v` names a definition under `prefix` that `defs` has.
fn refs_resolve(v: &Value, prefix: &str, defs: &Map<String, Value>) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                let name = r.strip_prefix(prefix).unwrap_or_else(|| panic!("{r}"));
                assert!(defs.contains_key(name), "dangling {r}");
            }
            m.values().for_each(|x| refs_resolve(x, prefix, defs));
        }
        Value::Array(a) => a.iter().for_each(|x| refs_resolve(x, prefix, defs)),
        _ => {}
    }
}

#[test]
fn the_v3_index_points_at_each_group_versions_document_by_hash() {
    let index = json_of("/openapi/v3", "application/json");
    let paths = index["paths"].as_object().unwrap();
    assert_eq!(
        paths.keys().collect::<Vec<_>>(),
        ["api/v1", "apis/apps/v1"],
        "only group versions with kinds"
    );
    for (gv, entry) in paths {
        let url = entry["serverRelativeURL"].as_str().unwrap();
        let (path, hash) = url.split_once("?hash=").unwrap();
        assert_eq!(path, format!("/openapi/v3/{gv}"));
        let body = &doc(path, "application/json").body;
        assert_eq!(hash, hex(&Sha256::digest(body)));
        assert!(matches!(
            document(path, "", Some(hash)),
            Ok(Answer::Document(_))
        ));
        let Ok(Answer::Moved(to)) = document(path, "", Some("OLD")) else {
            panic!("an old hash is redirected")
        };
        assert_eq!(to, url);
    }
    assert_eq!(
        document("/openapi/v3/apis/batch/v1", "", None)
            .err()
            .unwrap()
            .code,
        404
    );
    assert_eq!(
        document("/openapi/v3", "text/html", None)
            .err()
            .unwrap()
            .code,
        406
    );
}

#[test]
fn v3_definitions_carry_kinds_types_and_patch_metadata() {
    let doc = json_of("/openapi/v3/apis/apps/v1", "application/json");
    assert_eq!(doc["openapi"], "3.0.0");
    let defs = doc["components"]["schemas"].as_object().unwrap();
    refs_resolve(&doc, "#/components/schemas/", defs);
    let ds = &defs["io.k8s.api.apps.v1.DaemonSet"];
    assert_eq!(
        ds["x-kubernetes-group-version-kind"],
        json!([{ "group": "apps", "kind": "DaemonSet", "version": "v1" }])
    );
    assert_eq!(
        ds["properties"]["spec"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.api.apps.v1.DaemonSetSpec"
    );
    let pod_spec = &defs["io.k8s.api.core.v1.PodSpec"]["properties"];
    let containers = &pod_spec["containers"];
    assert_eq!(containers["type"], "array");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-list-type"], "map");
    assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
    assert_eq!(
        pod_spec["volumes"]["x-kubernetes-patch-strategy"],
        "merge,retainKeys"
    );
    assert_eq!(pod_spec["tolerations"]["x-kubernetes-list-type"], "atomic");
    assert!(pod_spec["tolerations"]
        .get("x-kubernetes-patch-strategy")
        .is_none());
    let container = &defs["io.k8s.api.core.v1.Container"]["properties"];
    assert_eq!(container["image"]["type"], "string");
    assert_eq!(
        container["ports"]["x-kubernetes-list-map-keys"],
        json!(["containerPort", "protocol"])
    );
    assert_eq!(
        container["resources"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.ResourceRequirements"
    );
    let limits = &defs["io.k8s.api.core.v1.ResourceRequirements"]["properties"]["limits"];
    assert_eq!(
        limits["additionalProperties"]["allOf"][0]["$ref"],
        format!("#/components/schemas/{QUANTITY_DEFINITION}")
    );
    let port = &defs["io.k8s.api.core.v1.ContainerPort"]["properties"]["containerPort"];
    assert_eq!(
        port,
        &json!({ "type": "integer", "format": "int32", "description": "The port the container listens on." })
    );
    let ios = &defs[INT_OR_STRING_DEFINITION];
    assert_eq!(
        (&ios["format"], &ios["x-kubernetes-int-or-string"]),
        (&json!("int-or-string"), &json!(true))
    );
    let meta = &defs["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"];
    assert_eq!(
        meta["description"],
        "Metadata that every persisted object carries."
    );
    assert_eq!(
        meta["properties"]["labels"]["additionalProperties"],
        json!({ "type": "string" })
    );
    assert_eq!(
        meta["properties"]["finalizers"]["x-kubernetes-patch-strategy"],
        "merge"
    );
    assert!(defs.contains_key("io.k8s.api.apps.v1.DaemonSetList"));
    assert!(
        !defs.contains_key("io.k8s.api.core.v1.Pod"),
        "core kinds live in api/v1"
    );
}

#[test]
fn v3_paths_have_the_served_operations_and_their_parameters() {
    let doc = json_of("/openapi/v3/apis/apps/v1", "application/json");
    let paths = doc["paths"].as_object().unwrap();
    let coll = &paths["/apis/apps/v1/namespaces/{namespace}/daemonsets"];
    let post = &coll["post"];
    assert_eq!(post["x-kubernetes-action"], "post");
    assert_eq!(
        post["x-kubernetes-group-version-kind"],
        json!({ "group": "apps", "kind": "DaemonSet", "version": "v1" })
    );
    assert_eq!(post["operationId"], "createAppsV1NamespacedDaemonSet");
    let names: Vec<&str> = post["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dryRun", "fieldManager", "fieldValidation"]);
    assert_eq!(
        post["requestBody"]["content"]["application/json"]["schema"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.api.apps.v1.DaemonSet"
    );
    assert_eq!(coll["parameters"][0]["name"], "namespace");
    assert_eq!(coll["get"]["operationId"], "listAppsV1NamespacedDaemonSet");
    let item = &paths["/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}"];
    assert_eq!(item["get"]["operationId"], "readAppsV1NamespacedDaemonSet");
    assert!(item.get("delete").is_some());
    // Operations follow the verbs discovery lists: none is promised that is not served.
    for (method, verb) in [("patch", "patch"), ("put", "update")] {
        assert_eq!(
            item.get(method).is_some(),
            VERBS.contains(&verb),
            "{method}"
        );
    }
    if VERBS.contains(&"patch") {
        let patch = &item["patch"];
        assert!(patch["requestBody"]["content"]
            .get("application/strategic-merge-patch+json")
            .is_some());
        assert!(patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
    }
    assert_eq!(
        paths["/apis/apps/v1/daemonsets"]["get"]["operationId"],
        "listAppsV1DaemonSetForAllNamespaces"
    );
    let core = json_of("/openapi/v3/api/v1", "application/json");
    let core_paths = core["paths"].as_object().unwrap();
    assert!(core_paths.contains_key("/api/v1/nodes/{name}"));
    assert!(!core_paths.contains_key("/api/v1/namespaces/{namespace}/nodes"));
    assert!(core_paths.contains_key("/api/v1/namespaces/{namespace}/pods/{name}"));
    assert!(!core_paths.keys().any(|p| p.contains("bootstrap")));
}

#[test]
fn v2_is_the_same_document_in_json_and_in_gnostic_protobuf() {
    let json = json_of("/openapi/v2", "application/json");
    assert_eq!(json["swagger"], "2.0");
    let defs = json["definitions"].as_object().unwrap();
    refs_resolve(&json, "#/definitions/", defs);
    let ds_spec = &defs["io.k8s.api.apps.v1.DaemonSet"]["properties"]["spec"];
    assert_eq!(
        ds_spec,
        &json!({
            "$ref": "#/definitions/io.k8s.api.apps.v1.DaemonSetSpec",
            "description": "The desired behavior of the object.",
        })
    );
    let post = &json["paths"]["/apis/apps/v1/namespaces/{namespace}/daemonsets"]["post"];
    assert_eq!(post["parameters"][0]["in"], "body");
    assert_eq!(
        post["parameters"][3],
        json!({
            "name": "fieldValidation", "in": "query", "type": "string", "uniqueItems": true,
            "description": QUERY_PARAMETERS.iter().find(|p| p.0 == "create" && p.1 == "fieldValidation").unwrap().3,
        })
    );

    // kubectl's Accept; the answer is named as kube-apiserver names it.
    let pb = doc(
        "/openapi/v2",
        "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
    );
    assert_eq!(pb.content_type, V2_PROTOBUF);
    assert_eq!(doc("/openapi/v2", "").content_type, "application/json");
    assert_eq!(
        doc("/openapi/v2", "application/json;q=0.9, */*").content_type,
        "application/json"
    );
    let first = doc(
        "/openapi/v2",
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf, application/json",
    );
    assert_eq!(first.content_type, V2_PROTOBUF);
    let pdoc = gnostic::Document::decode(pb.body.as_slice()).unwrap();
    assert_eq!(pdoc.swagger, "2.0");
    let pdefs = &pdoc.definitions.as_ref().unwrap().additional_properties;
    assert_eq!(pdefs.len(), defs.len());
    let ds = pdefs
        .iter()
        .find(|d| d.name == "io.k8s.api.apps.v1.DaemonSet")
        .unwrap()
        .value
        .as_ref()
        .unwrap();
    let gvk = ds
        .vendor_extension
        .iter()
        .find(|e| e.name == "x-kubernetes-group-version-kind")
        .unwrap();
    // The extension's YAML (JSON is YAML) holds the group, version and kind.
    let v: Value = serde_json::from_str(&gvk.value.as_ref().unwrap().yaml).unwrap();
    assert_eq!(
        v,
        json!([{ "group": "apps", "kind": "DaemonSet", "version": "v1" }])
    );
    let spec = ds
        .properties
        .as_ref()
        .unwrap()
        .additional_properties
        .iter()
        .find(|p| p.name == "spec")
        .unwrap();
    assert_eq!(
        spec.value.as_ref().unwrap().r#ref,
        "#/definitions/io.k8s.api.apps.v1.DaemonSetSpec"
    );
    let paths = &pdoc.paths.as_ref().unwrap().path;
    let coll = paths
        .iter()
        .find(|p| p.name == "/apis/apps/v1/namespaces/{namespace}/daemonsets")
        .unwrap();
    let post = coll.value.as_ref().unwrap().post.as_ref().unwrap();
    assert_eq!(post.operation_id, "createAppsV1NamespacedDaemonSet");
    assert_eq!(post.parameters.len(), 4);
}
