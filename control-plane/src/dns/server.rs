//! The DNS protocol side: a hickory-server [`RequestHandler`] that answers from the
//! in-memory [`Zone`] (no zone files, no hickory zone handlers), and the pure function
//! that turns one request into one reply.

use super::records::{Answer, Zone, TTL};
use super::sync::SharedZone;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, LowerQuery, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::rdata::{A, AAAA, SOA};
use hickory_server::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use std::net::IpAddr;

/// Answers every query from the shared zone.
#[derive(Debug, Clone)]
pub(crate) struct Handler {
    zone: SharedZone,
}

impl Handler {
    pub(crate) fn new(zone: SharedZone) -> Handler {
        Handler { zone }
    }
}

#[tonic::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let reply = {
            let zone = self.zone.read().unwrap_or_else(|e| e.into_inner());
            reply(
                &zone,
                &request.metadata,
                request.queries.queries(),
                request.edns.as_ref(),
            )
        };
        let response = MessageResponseBuilder::new(&request.queries, reply.edns.as_ref()).build(
            reply.metadata,
            reply.answers.iter(),
            std::iter::empty(),
            reply.soa.iter(),
            std::iter::empty(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                tracing::warn!(%error, src = %request.src(), "dns: cannot send the response");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

/// One response, owned: header, answer records, the SOA for the authority section of
/// negative answers, and the EDNS to echo.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) metadata: Metadata,
    pub(crate) answers: Vec<Record>,
    pub(crate) soa: Vec<Record>,
    pub(crate) edns: Option<Edns>,
}

/// The reply to a request: A/AAAA (and ANY) from the zone, the SOA at the apex, NXDOMAIN
/// for unknown names in the domain, REFUSED outside it (see [`super::records`]).
pub(crate) fn reply(
    zone: &Zone,
    request: &Metadata,
    queries: &[LowerQuery],
    request_edns: Option<&Edns>,
) -> Reply {
    let mut out = Reply {
        metadata: Metadata::response_from_request(request),
        answers: Vec::new(),
        soa: Vec::new(),
        edns: request_edns.map(|e| {
            let mut edns = Edns::new();
            edns.set_max_payload(e.max_payload().max(512))
                .set_version(0);
            edns
        }),
    };
    if request_edns.is_some_and(|e| e.version() > 0) {
        out.set_code(ResponseCode::BADVERS);
        return out;
    }
    if request.op_code != OpCode::Query {
        out.set_code(ResponseCode::NotImp);
        return out;
    }
    let [query] = queries else {
        out.set_code(ResponseCode::FormErr);
        return out;
    };
    let qtype = query.query_type();
    if query.query_class() != DNSClass::IN || matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        out.set_code(ResponseCode::Refused);
        return out;
    }
    let labels: Vec<String> = query
        .name()
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    let (addresses, apex) = match zone.lookup_labels(&labels) {
        Answer::Refused => {
            out.set_code(ResponseCode::Refused);
            return out;
        }
        Answer::NxDomain => {
            out.metadata.authoritative = true;
            out.set_code(ResponseCode::NXDomain);
            out.soa.push(soa(zone));
            return out;
        }
        Answer::Exists { addresses, apex } => (addresses, apex),
    };
    out.metadata.authoritative = true;
    // The answer carries the name as asked (case included: some resolvers check it).
    let owner = query.original().name().clone();
    for ip in addresses {
        let rdata = match (qtype, ip) {
            (RecordType::A | RecordType::ANY, IpAddr::V4(v4)) => RData::A(A(v4)),
            (RecordType::AAAA | RecordType::ANY, IpAddr::V6(v6)) => RData::AAAA(AAAA(v6)),
            _ => continue,
        };
        out.answers
            .push(Record::from_rdata(owner.clone(), TTL, rdata));
    }
    if apex && matches!(qtype, RecordType::SOA | RecordType::ANY) {
        out.answers.push(soa(zone));
    }
    if out.answers.is_empty() {
        // NODATA: the name exists, without records of this type.
        out.soa.push(soa(zone));
    }
    out
}

impl Reply {
    fn set_code(&mut self, code: ResponseCode) {
        self.metadata.response_code = code;
        if code.high() != 0 {
            if let Some(edns) = self.edns.as_mut() {
                edns.set_rcode_high(code.high());
            }
        }
    }
}

/// The zone's SOA record: `ns.dns.<domain>` / `hostmaster.<domain>` as CoreDNS names them,
/// serial = the zone's change counter, minimum (negative-caching time) = [`TTL`].
fn soa(zone: &Zone) -> Record {
    let domain = zone.domain();
    let name = |prefix: &str| {
        Name::from_ascii(format!("{prefix}{domain}.")).unwrap_or_else(|_| Name::root())
    };
    let rdata = SOA::new(
        name("ns.dns."),
        name("hostmaster."),
        zone.serial(),
        7200,
        1800,
        86400,
        TTL,
    );
    Record::from_rdata(name(""), TTL, RData::SOA(rdata))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_server::proto::op::{MessageType, Query};
    use twinset_proto::v1::{
        ObjectMeta, Pod, PodCondition, PodIp, PodSpec, PodStatus, Service, ServiceSpec,
    };

    fn zone() -> Zone {
        let svc = Service {
            metadata: Some(ObjectMeta {
                name: "mysql".into(),
                namespace: "database".into(),
                ..Default::default()
            }),
            spec: Some(ServiceSpec::default()),
            ..Default::default()
        };
        let pod = |name: &str, ips: &[&str]| Pod {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "database".into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                hostname: name.into(),
                subdomain: "mysql".into(),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: "Running".into(),
                pod_ips: ips.iter().map(|ip| PodIp { ip: ip.to_string() }).collect(),
                conditions: vec![PodCondition {
                    r#type: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        Zone::build(
            "cluster.local",
            &[svc],
            &[
                pod("mysql-db-0", &["127.128.0.2"]),
                pod("mysql-db-1", &["127.128.1.2", "fd00::12"]),
            ],
        )
        .unwrap()
    }

    fn ask(name: &str, qtype: RecordType) -> Reply {
        ask_with(name, qtype, DNSClass::IN, OpCode::Query, None)
    }

    fn ask_with(
        name: &str,
        qtype: RecordType,
        class: DNSClass,
        op: OpCode,
        edns: Option<&Edns>,
    ) -> Reply {
        let mut q = Query::query(Name::from_ascii(name).unwrap(), qtype);
        q.set_query_class(class);
        let meta = Metadata::new(7, MessageType::Query, op);
        reply(&zone(), &meta, &[LowerQuery::query(q)], edns)
    }

    fn addrs(r: &Reply) -> Vec<String> {
        r.answers
            .iter()
            .filter_map(|r| r.data.ip_addr())
            .map(|ip| ip.to_string())
            .collect()
    }

    #[test]
    fn a_query_gets_the_pod_ip_authoritatively_with_the_ttl() {
        let r = ask(
            "mysql-db-0.mysql.database.svc.cluster.local.",
            RecordType::A,
        );
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.metadata.authoritative);
        assert_eq!(r.metadata.id, 7);
        assert_eq!(addrs(&r), ["127.128.0.2"]);
        assert_eq!(r.answers[0].ttl, TTL);
        assert!(r.soa.is_empty());
    }

    #[test]
    fn the_answer_keeps_the_case_of_the_question() {
        let r = ask(
            "MySQL-DB-0.mysql.Database.svc.cluster.local.",
            RecordType::A,
        );
        assert_eq!(addrs(&r), ["127.128.0.2"]);
        assert_eq!(
            r.answers[0].name.to_ascii(),
            "MySQL-DB-0.mysql.Database.svc.cluster.local."
        );
    }

    #[test]
    fn a_aaaa_and_any_split_the_addresses_by_family() {
        let name = "mysql-db-1.mysql.database.svc.cluster.local.";
        assert_eq!(addrs(&ask(name, RecordType::A)), ["127.128.1.2"]);
        assert_eq!(addrs(&ask(name, RecordType::AAAA)), ["fd00::12"]);
        assert_eq!(
            addrs(&ask(name, RecordType::ANY)),
            ["127.128.1.2", "fd00::12"]
        );
        let svc = "mysql.database.svc.cluster.local.";
        assert_eq!(
            addrs(&ask(svc, RecordType::A)),
            ["127.128.0.2", "127.128.1.2"]
        );
    }

    #[test]
    fn other_types_of_an_existing_name_get_nodata_with_the_soa() {
        for qtype in [
            RecordType::AAAA,
            RecordType::TXT,
            RecordType::SRV,
            RecordType::MX,
        ] {
            let r = ask("mysql-db-0.mysql.database.svc.cluster.local.", qtype);
            assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{qtype}");
            assert!(r.answers.is_empty(), "{qtype}");
            assert_eq!(r.soa.len(), 1, "{qtype}");
            assert_eq!(r.soa[0].record_type(), RecordType::SOA);
            assert_eq!(r.soa[0].name.to_ascii(), "cluster.local.");
        }
    }

    #[test]
    fn unknown_names_get_nxdomain_with_the_soa() {
        let r = ask(
            "mysql-db-9.mysql.database.svc.cluster.local.",
            RecordType::A,
        );
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert!(r.metadata.authoritative);
        assert!(r.answers.is_empty());
        let RData::SOA(soa) = &r.soa[0].data else {
            panic!("not an SOA: {:?}", r.soa)
        };
        assert_eq!(soa.minimum, TTL);
        assert_eq!(soa.mname.to_ascii(), "ns.dns.cluster.local.");
    }

    #[test]
    fn names_outside_the_domain_are_refused() {
        let r = ask("example.com.", RecordType::A);
        assert_eq!(r.metadata.response_code, ResponseCode::Refused);
        assert!(!r.metadata.authoritative);
        assert!(r.answers.is_empty() && r.soa.is_empty());
    }

    #[test]
    fn the_apex_answers_soa() {
        let r = ask("cluster.local.", RecordType::SOA);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_eq!(r.answers.len(), 1);
        assert_eq!(r.answers[0].record_type(), RecordType::SOA);
        assert!(r.soa.is_empty());
    }

    #[test]
    fn zone_transfers_other_classes_and_opcodes_are_turned_down() {
        let name = "mysql.database.svc.cluster.local.";
        let r = ask(name, RecordType::AXFR);
        assert_eq!(r.metadata.response_code, ResponseCode::Refused);
        let r = ask_with(name, RecordType::A, DNSClass::CH, OpCode::Query, None);
        assert_eq!(r.metadata.response_code, ResponseCode::Refused);
        let r = ask_with(name, RecordType::A, DNSClass::IN, OpCode::Update, None);
        assert_eq!(r.metadata.response_code, ResponseCode::NotImp);
    }

    #[test]
    fn not_exactly_one_question_is_a_format_error() {
        let meta = Metadata::new(7, MessageType::Query, OpCode::Query);
        let r = reply(&zone(), &meta, &[], None);
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
        let q = LowerQuery::query(Query::query(
            Name::from_ascii("cluster.local.").unwrap(),
            RecordType::A,
        ));
        let r = reply(&zone(), &meta, &[q.clone(), q], None);
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    }

    #[test]
    fn edns_is_echoed_and_a_newer_version_gets_badvers() {
        let name = "mysql.database.svc.cluster.local.";
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        let r = ask_with(
            name,
            RecordType::A,
            DNSClass::IN,
            OpCode::Query,
            Some(&edns),
        );
        assert_eq!(r.edns.as_ref().map(|e| e.max_payload()), Some(1232));
        assert_eq!(addrs(&r).len(), 2);
        edns.set_version(1);
        let r = ask_with(
            name,
            RecordType::A,
            DNSClass::IN,
            OpCode::Query,
            Some(&edns),
        );
        assert_eq!(r.metadata.response_code, ResponseCode::BADVERS);
        assert_eq!(
            r.edns.as_ref().map(|e| e.rcode_high()),
            Some(ResponseCode::BADVERS.high())
        );
        assert!(r.answers.is_empty());
        assert!(ask(name, RecordType::A).edns.is_none());
    }
}
