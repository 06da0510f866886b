//! Request handlers, one module per API area. Each converts wire types to
//! registry and log calls at its boundary and builds the response.

mod acls;
mod admin;
pub(crate) mod authorize;
mod fetch;
mod groups;
mod metadata;
mod offsets;
pub(crate) mod produce;
mod producer;
mod security;

use bytes::BytesMut;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, Message, StrBytes, VersionRange};

use crate::Broker;

/// What a handler produced.
pub(crate) enum Reply {
    /// No response is sent (produce with acks=0).
    None,
    /// The response body.
    Response(Box<ResponseKind>),
}

/// The APIs this broker serves and the versions it really supports.
const APIS: &[(ApiKey, VersionRange)] = &[
    (ApiKey::Produce, ProduceRequest::VERSIONS),
    (ApiKey::Fetch, FetchRequest::VERSIONS),
    (ApiKey::ListOffsets, ListOffsetsRequest::VERSIONS),
    (ApiKey::Metadata, MetadataRequest::VERSIONS),
    (ApiKey::ApiVersions, ApiVersionsRequest::VERSIONS),
    (ApiKey::CreateTopics, CreateTopicsRequest::VERSIONS),
    (ApiKey::DeleteTopics, DeleteTopicsRequest::VERSIONS),
    (ApiKey::DeleteRecords, DeleteRecordsRequest::VERSIONS),
    (ApiKey::DescribeConfigs, DescribeConfigsRequest::VERSIONS),
    (ApiKey::AlterConfigs, AlterConfigsRequest::VERSIONS),
    (ApiKey::CreatePartitions, CreatePartitionsRequest::VERSIONS),
    (
        ApiKey::IncrementalAlterConfigs,
        IncrementalAlterConfigsRequest::VERSIONS,
    ),
    (ApiKey::DescribeLogDirs, DescribeLogDirsRequest::VERSIONS),
    (ApiKey::DescribeCluster, DescribeClusterRequest::VERSIONS),
    (ApiKey::InitProducerId, InitProducerIdRequest::VERSIONS),
    (ApiKey::FindCoordinator, FindCoordinatorRequest::VERSIONS),
    (ApiKey::JoinGroup, JoinGroupRequest::VERSIONS),
    (ApiKey::SyncGroup, SyncGroupRequest::VERSIONS),
    (ApiKey::Heartbeat, HeartbeatRequest::VERSIONS),
    (ApiKey::LeaveGroup, LeaveGroupRequest::VERSIONS),
    (ApiKey::OffsetCommit, OffsetCommitRequest::VERSIONS),
    (ApiKey::OffsetFetch, OffsetFetchRequest::VERSIONS),
    (ApiKey::DescribeGroups, DescribeGroupsRequest::VERSIONS),
    (ApiKey::ListGroups, ListGroupsRequest::VERSIONS),
    (ApiKey::DeleteGroups, DeleteGroupsRequest::VERSIONS),
    (ApiKey::OffsetDelete, OffsetDeleteRequest::VERSIONS),
    (
        ApiKey::OffsetForLeaderEpoch,
        OffsetForLeaderEpochRequest::VERSIONS,
    ),
    // Answered by the connection itself (server.rs), which holds the
    // session; on a listener without SASL they are refused there.
    (ApiKey::SaslHandshake, SaslHandshakeRequest::VERSIONS),
    (ApiKey::SaslAuthenticate, SaslAuthenticateRequest::VERSIONS),
    (
        ApiKey::DescribeUserScramCredentials,
        DescribeUserScramCredentialsRequest::VERSIONS,
    ),
    (
        ApiKey::AlterUserScramCredentials,
        AlterUserScramCredentialsRequest::VERSIONS,
    ),
    (ApiKey::DescribeAcls, DescribeAclsRequest::VERSIONS),
    (ApiKey::CreateAcls, CreateAclsRequest::VERSIONS),
    (ApiKey::DeleteAcls, DeleteAclsRequest::VERSIONS),
];

/// The version range served for an API, if it is served at all.
pub(crate) fn supported(api: ApiKey) -> Option<VersionRange> {
    APIS.iter().find(|(k, _)| *k == api).map(|(_, r)| *r)
}

pub(crate) fn api_versions_body(error: i16) -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.error_code = error;
    r.api_keys = APIS
        .iter()
        .map(|(key, range)| {
            let mut v = ApiVersion::default();
            v.api_key = *key as i16;
            v.min_version = range.min;
            v.max_version = range.max;
            v
        })
        .collect();
    r
}

/// The v0 ApiVersions body sent when the client asked for a version we do
/// not speak (KIP-511).
pub(crate) fn api_versions_unsupported() -> BytesMut {
    let mut body = BytesMut::new();
    api_versions_body(ResponseError::UnsupportedVersion.code())
        .encode(&mut body, 0)
        .expect("a v0 ApiVersions response always encodes");
    body
}

/// Who sent a request: the client's address and the listener it came in
/// on (Metadata and the KIP-951 hints give that listener's endpoints).
#[derive(Debug, Clone)]
pub(crate) struct Conn {
    /// `/ip`, as Kafka shows a member's host.
    pub client_host: String,
    /// The listener's name.
    pub listener: std::sync::Arc<str>,
    /// `User:name` once a SASL client authenticated (`None`: a PLAINTEXT
    /// listener's anonymous client).
    pub principal: Option<std::sync::Arc<str>>,
}

/// Runs one decoded request.
pub(crate) async fn dispatch(
    broker: &Broker,
    header: &RequestHeader,
    request: RequestKind,
    conn: &Conn,
) -> Reply {
    let (client_host, listener) = (conn.client_host.as_str(), &*conn.listener);
    let version = header.request_api_version;
    let authz = authorize::Authz::new(broker, conn);
    let (request, denied) = match authorize::before(&authz, request, version) {
        authorize::Checked::Run(request, denied) => (*request, denied),
        authorize::Checked::Answer(response) => return Reply::Response(response),
    };
    let mut response = match request {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions_body(0)),
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(metadata::metadata(broker, r, version, listener).await)
        }
        RequestKind::Produce(r) => match produce::produce(broker, r, version, listener).await {
            Some(resp) => ResponseKind::Produce(resp),
            None => return Reply::None,
        },
        RequestKind::Fetch(r) => {
            ResponseKind::Fetch(fetch::fetch(broker, r, version, listener).await)
        }
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(offsets::list_offsets(broker, r, version))
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(offsets::offset_for_leader_epoch(broker, r))
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(offsets::delete_records(broker, r).await)
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(admin::create_topics(broker, r, version).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(admin::delete_topics(broker, r).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(admin::create_partitions(broker, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(admin::describe_configs(broker, r, version))
        }
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(admin::alter_configs(broker, r).await)
        }
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(admin::incremental_alter_configs(broker, r).await)
        }
        RequestKind::DescribeLogDirs(r) => {
            ResponseKind::DescribeLogDirs(admin::describe_log_dirs(broker, r))
        }
        RequestKind::FindCoordinator(r) => ResponseKind::FindCoordinator(
            groups::find_coordinator(broker, r, version, listener).await,
        ),
        RequestKind::JoinGroup(r) => {
            let client = header
                .client_id
                .as_ref()
                .map_or("", |c| c.as_str())
                .to_owned();
            ResponseKind::JoinGroup(
                groups::join_group(broker, r, &client, client_host, version).await,
            )
        }
        RequestKind::SyncGroup(r) => {
            ResponseKind::SyncGroup(groups::sync_group(broker, r, version).await)
        }
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(groups::heartbeat(broker, r)),
        RequestKind::LeaveGroup(r) => {
            ResponseKind::LeaveGroup(groups::leave_group(broker, r, version))
        }
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(groups::offset_commit(broker, r).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(groups::offset_fetch(broker, r, version))
        }
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(groups::describe_groups(broker, r, version))
        }
        RequestKind::ListGroups(r) => {
            ResponseKind::ListGroups(groups::list_groups(broker, r, version))
        }
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(groups::delete_groups(broker, r).await)
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(groups::offset_delete(broker, r).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(producer::init_producer_id(broker, r).await)
        }
        RequestKind::DescribeUserScramCredentials(r) => ResponseKind::DescribeUserScramCredentials(
            security::describe_user_scram_credentials(broker, r),
        ),
        RequestKind::AlterUserScramCredentials(r) => ResponseKind::AlterUserScramCredentials(
            security::alter_user_scram_credentials(broker, r).await,
        ),
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(metadata::describe_cluster(broker, r, listener))
        }
        RequestKind::CreateAcls(r) => ResponseKind::CreateAcls(acls::create_acls(broker, r).await),
        RequestKind::DescribeAcls(r) => ResponseKind::DescribeAcls(acls::describe_acls(broker, r)),
        RequestKind::DeleteAcls(r) => ResponseKind::DeleteAcls(acls::delete_acls(broker, r).await),
        // `supported` keeps every other key from reaching here.
        _ => return Reply::None,
    };
    authorize::after(&authz, &mut response, denied);
    Reply::Response(Box::new(response))
}

/// A Fetch response body in pieces, the stored record sets not copied
/// (`None`: encode it the generic way).
pub(crate) fn fetch_chunks(resp: &FetchResponse, version: i16) -> Option<Vec<bytes::Bytes>> {
    fetch::encode_chunks(resp, version)
}

/// A string for a response.
pub(crate) fn s(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
