//! A StatefulSet's headless Service, made when an apply finds it missing: the side
//! effect of applying a StatefulSet, kept with the StatefulSet code (the generic apply
//! path calls it through [`crate::controllers::after_apply`]).

use crate::api::apply::prepare;
use crate::api::status;
use crate::store::{Error as StoreError, Store};
use tonic::Status;
use twinset_proto::v1::{Object, ObjectMeta, Service, ServicePort, ServiceSpec};
use twinset_proto::Kind;

/// Creates the headless Service `set`'s `serviceName` names when it does not exist (Kubernetes leaves that to the user; Twinset makes the set's DNS names work
/// at once and says so). The Service selects the set's `matchLabels`, publishes the
/// template's container ports and has no owner: deleting the set leaves it. Returns the
/// note to show ("service/mysql created"), None when nothing was (or would be) made.
pub async fn ensure_service(
    store: &dyn Store,
    set: &Object,
    dry_run: bool,
) -> Result<Option<String>, Status> {
    let Some(spec) = set.as_stateful_set().and_then(|s| s.spec.as_ref()) else {
        return Ok(None);
    };
    let name = spec.service_name.as_str();
    if name.is_empty() || store.get(Kind::Service, set.namespace(), name).is_some() {
        return Ok(None);
    }
    let selector = spec
        .selector
        .as_ref()
        .map(|s| s.match_labels.clone())
        .unwrap_or_default();
    let mut ports: Vec<ServicePort> = Vec::new();
    let containers = spec
        .template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    for p in containers.iter().flat_map(|c| c.ports.iter()) {
        let protocol = if p.protocol.is_empty() {
            "TCP"
        } else {
            p.protocol.as_str()
        };
        if p.container_port <= 0
            || ports
                .iter()
                .any(|q| q.port == p.container_port && q.protocol == protocol)
        {
            continue;
        }
        ports.push(ServicePort {
            name: p.name.clone(),
            protocol: protocol.to_string(),
            port: p.container_port,
            target_port: Some(twinset_proto::IntOrString::int(p.container_port)),
            node_port: 0,
        });
    }
    if ports.len() > 1 {
        // Several ports must be named; unnamed ones are named after protocol and port.
        for p in ports.iter_mut().filter(|p| p.name.is_empty()) {
            p.name = format!("{}-{}", p.protocol.to_ascii_lowercase(), p.port);
        }
    }
    let mut svc = Object::from(Service {
        metadata: Some(ObjectMeta {
            name: name.to_string(),
            namespace: set.namespace().to_string(),
            labels: selector.clone(),
            ..Default::default()
        }),
        spec: Some(ServiceSpec {
            ports,
            selector,
            cluster_ip: "None".into(),
            cluster_ips: vec!["None".into()],
            r#type: "ClusterIP".into(),
            publish_not_ready_addresses: false,
        }),
        ..Default::default()
    });
    prepare(&mut svc)?;
    let note = format!("{}/{name} created", Kind::Service.qualified());
    if dry_run {
        return Ok(Some(note));
    }
    match store.create(svc).await {
        Ok(_) => {
            tracing::info!(
                namespace = set.namespace(),
                service = name,
                "created the headless service of a StatefulSet"
            );
            Ok(Some(note))
        }
        Err(StoreError::AlreadyExists { .. }) => Ok(None),
        Err(e) => Err(status(e)),
    }
}

#[cfg(test)]
mod tests {
    use crate::api::apply::{apply, prepare};
    use crate::store::memory::MemoryStore;
    use crate::store::Store;
    use twinset_proto::v1::Object;
    use twinset_proto::Kind;

    fn manifest(text: &str) -> Object {
        twinset_proto::manifest::decode(text).unwrap().remove(0)
    }

    const STS: &str = include_str!("../../../../deploy/examples/statefulset.yaml");

    #[tokio::test]
    async fn statefulset_gets_its_headless_service() {
        let store = MemoryStore::new(100);
        let dry = apply(&store, manifest(STS), true).await.unwrap();
        assert_eq!(
            dry.notes,
            vec!["namespace/database created", "service/mysql created"]
        );
        assert_eq!(store.current_revision(), 0, "a dry run makes nothing");
        let a = apply(&store, manifest(STS), false).await.unwrap();
        assert_eq!(a.outcome, "created");
        assert_eq!(
            a.notes,
            vec!["namespace/database created", "service/mysql created"]
        );
        let svc = store
            .get(Kind::Service, "database", "mysql")
            .and_then(Object::into_service)
            .unwrap();
        assert!(svc.metadata.as_ref().unwrap().owner_references.is_empty());
        let spec = svc.spec.unwrap();
        assert_eq!(spec.cluster_ip, "None");
        assert_eq!(spec.selector["app"], "mysql");
        assert_eq!(
            (
                spec.ports.len(),
                spec.ports[0].port,
                spec.ports[0].protocol.as_str()
            ),
            (1, 3306, "TCP")
        );
        let again = apply(&store, manifest(STS), false).await.unwrap();
        assert_eq!((again.outcome, again.notes.len()), ("unchanged", 0));
        // A Service the user made is left alone; none is made without a serviceName.
        store
            .delete(Kind::Service, "database", "mysql", None)
            .await
            .unwrap();
        let mut own = manifest(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: mysql\n  namespace: database\nspec:\n  clusterIP: None\n",
        );
        prepare(&mut own).unwrap();
        store.create(own).await.unwrap();
        let rev = store.current_revision();
        assert!(apply(&store, manifest(STS), false)
            .await
            .unwrap()
            .notes
            .is_empty());
        assert_eq!(store.current_revision(), rev);
        let nameless = STS
            .replace("name: mysql-db", "name: other")
            .replace("  serviceName: \"mysql\"\n", "");
        assert!(apply(&store, manifest(&nameless), false)
            .await
            .unwrap()
            .notes
            .is_empty());
    }
}
