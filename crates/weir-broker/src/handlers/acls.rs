//! CreateAcls, DescribeAcls and DeleteAcls: ACL bindings in the replicated
//! metadata, validated here as Kafka validates them, written by the
//! controller (which applies delete filters to the image it decides on).
//! Without an authorizer they answer SECURITY_DISABLED, as Kafka does.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::*;
use weir_meta::{AclBinding, AclFilter};

use super::s;
use crate::Broker;

const SECURITY_DISABLED: i16 = 54;
const INVALID_REQUEST: i16 = 42;
const REQUEST_TIMED_OUT: i16 = 7;
const SECURITY_DISABLED_MESSAGE: &str =
    "No Authorizer is configured on the broker (set authorizer.class.name)";

fn enabled(broker: &Broker) -> bool {
    broker.config().authorizer.enabled
}

fn controller_failure(answer: Result<weir_meta::Answer, impl std::fmt::Display>) -> String {
    match answer {
        Ok(a) => format!("unexpected answer from the controller: {a:?}"),
        Err(e) => e.to_string(),
    }
}

pub(super) async fn create_acls(broker: &Broker, req: CreateAclsRequest) -> CreateAclsResponse {
    let mut resp = CreateAclsResponse::default();
    let result = |code: i16, message: Option<String>| {
        let mut r = AclCreationResult::default();
        r.error_code = code;
        r.error_message = message.map(s);
        r
    };
    if !enabled(broker) {
        resp.results = req
            .creations
            .iter()
            .map(|_| result(SECURITY_DISABLED, Some(SECURITY_DISABLED_MESSAGE.into())))
            .collect();
        return resp;
    }
    let bindings: Vec<AclBinding> = req
        .creations
        .iter()
        .map(|c| AclBinding {
            resource_type: c.resource_type,
            resource_name: c.resource_name.to_string(),
            pattern_type: c.resource_pattern_type,
            principal: c.principal.to_string(),
            host: c.host.to_string(),
            operation: c.operation,
            permission: c.permission_type,
        })
        .collect();
    let mut results: Vec<Option<AclCreationResult>> = bindings
        .iter()
        .map(|b| b.invalid().map(|why| result(INVALID_REQUEST, Some(why))))
        .collect();
    let valid: Vec<AclBinding> = bindings
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_none())
        .map(|(b, _)| b.clone())
        .collect();
    if !valid.is_empty() {
        let answer = broker
            .cluster()
            .request(weir_meta::Request::CreateAcls { bindings: valid })
            .await;
        if !matches!(answer, Ok(weir_meta::Answer::Done)) {
            let why = controller_failure(answer);
            for r in results.iter_mut().filter(|r| r.is_none()) {
                *r = Some(result(REQUEST_TIMED_OUT, Some(why.clone())));
            }
        }
    }
    resp.results = results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| result(0, None)))
        .collect();
    resp
}

/// A wire filter as the metadata's.
fn filter(
    resource_type: i8,
    resource_name: &Option<kafka_protocol::protocol::StrBytes>,
    pattern_type: i8,
    principal: &Option<kafka_protocol::protocol::StrBytes>,
    host: &Option<kafka_protocol::protocol::StrBytes>,
    operation: i8,
    permission: i8,
) -> AclFilter {
    AclFilter {
        resource_type,
        resource_name: resource_name.as_ref().map(|n| n.to_string()),
        pattern_type,
        principal: principal.as_ref().map(|n| n.to_string()),
        host: host.as_ref().map(|n| n.to_string()),
        operation,
        permission,
    }
}

pub(super) fn describe_acls(broker: &Broker, req: DescribeAclsRequest) -> DescribeAclsResponse {
    let mut resp = DescribeAclsResponse::default();
    if !enabled(broker) {
        resp.error_code = SECURITY_DISABLED;
        resp.error_message = Some(s(SECURITY_DISABLED_MESSAGE));
        return resp;
    }
    let f = filter(
        req.resource_type_filter,
        &req.resource_name_filter,
        req.pattern_type_filter,
        &req.principal_filter,
        &req.host_filter,
        req.operation,
        req.permission_type,
    );
    if let Some(why) = f.invalid() {
        resp.error_code = INVALID_REQUEST;
        resp.error_message = Some(s(why));
        return resp;
    }
    let image = broker.cluster().image();
    // One entry per resource pattern, its entries under it.
    let mut by_resource: BTreeMap<(i8, &str, i8), Vec<AclDescription>> = BTreeMap::new();
    for b in image.acls.iter().filter(|b| f.matches(b)) {
        let mut d = AclDescription::default();
        d.principal = s(b.principal.as_str());
        d.host = s(b.host.as_str());
        d.operation = b.operation;
        d.permission_type = b.permission;
        by_resource
            .entry((b.resource_type, b.resource_name.as_str(), b.pattern_type))
            .or_default()
            .push(d);
    }
    resp.resources = by_resource
        .into_iter()
        .map(|((resource_type, name, pattern_type), acls)| {
            let mut r = DescribeAclsResource::default();
            r.resource_type = resource_type;
            r.resource_name = s(name);
            r.pattern_type = pattern_type;
            r.acls = acls;
            r
        })
        .collect();
    resp
}

pub(super) async fn delete_acls(broker: &Broker, req: DeleteAclsRequest) -> DeleteAclsResponse {
    let mut resp = DeleteAclsResponse::default();
    let failed = |code: i16, message: String| {
        let mut r = DeleteAclsFilterResult::default();
        r.error_code = code;
        r.error_message = Some(s(message));
        r
    };
    if !enabled(broker) {
        resp.filter_results = req
            .filters
            .iter()
            .map(|_| failed(SECURITY_DISABLED, SECURITY_DISABLED_MESSAGE.into()))
            .collect();
        return resp;
    }
    let filters: Vec<AclFilter> = req
        .filters
        .iter()
        .map(|f| {
            filter(
                f.resource_type_filter,
                &f.resource_name_filter,
                f.pattern_type_filter,
                &f.principal_filter,
                &f.host_filter,
                f.operation,
                f.permission_type,
            )
        })
        .collect();
    let invalid: Vec<Option<String>> = filters.iter().map(AclFilter::invalid).collect();
    let valid: Vec<AclFilter> = filters
        .iter()
        .zip(&invalid)
        .filter(|(_, why)| why.is_none())
        .map(|(f, _)| f.clone())
        .collect();
    let matched: Result<Vec<Vec<AclBinding>>, String> = if valid.is_empty() {
        Ok(Vec::new())
    } else {
        match broker
            .cluster()
            .request(weir_meta::Request::DeleteAcls { filters: valid })
            .await
        {
            Ok(weir_meta::Answer::AclsDeleted { matched }) => Ok(matched),
            other => Err(controller_failure(other)),
        }
    };
    let mut matched = matched.map(Vec::into_iter);
    resp.filter_results = invalid
        .into_iter()
        .map(|why| {
            if let Some(why) = why {
                return failed(INVALID_REQUEST, why);
            }
            match &mut matched {
                Ok(each) => {
                    let mut r = DeleteAclsFilterResult::default();
                    r.matching_acls = each
                        .next()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|b| {
                            let mut m = DeleteAclsMatchingAcl::default();
                            m.resource_type = b.resource_type;
                            m.resource_name = s(b.resource_name);
                            m.pattern_type = b.pattern_type;
                            m.principal = s(b.principal);
                            m.host = s(b.host);
                            m.operation = b.operation;
                            m.permission_type = b.permission;
                            m
                        })
                        .collect();
                    r
                }
                Err(why) => failed(REQUEST_TIMED_OUT, why.clone()),
            }
        })
        .collect();
    resp
}
