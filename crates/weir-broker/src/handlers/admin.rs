//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions,
//! DescribeConfigs, AlterConfigs, IncrementalAlterConfigs, DescribeLogDirs.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::*;
use uuid::Uuid;
use weir_log::LogConfig;

use super::s;
use crate::Broker;
use crate::topic_config::{self, Def, Support, TOPIC_CONFIGS};
use crate::topics::{Topic, TopicError};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_TOPIC_CONFIG: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// A topic config as DescribeConfigs shows it.
struct Described {
    def: &'static Def,
    value: String,
    source: i8,
    /// (name, value, source), most specific first.
    synonyms: Vec<(String, String, i8)>,
}

/// Every topic config of a topic, with its value, source and synonyms.
fn topic_configs(broker: &Broker, topic: &Topic) -> Vec<Described> {
    let log_values = topic.config.entries();
    let defaults = broker.topics().defaults().entries();
    let explicit = &broker.config().explicit;
    TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let from = |entries: &[(&str, String)]| {
                entries
                    .iter()
                    .find(|(n, _)| *n == def.name)
                    .map(|(_, v)| v.clone())
            };
            let (value, default) = if def.support == Support::Log {
                let value = from(&log_values).unwrap_or_default();
                (value, from(&defaults).unwrap_or_default())
            } else {
                let value = topic_config::kept(&topic.overrides, def).to_owned();
                (value, def.default.to_owned())
            };
            let mut synonyms = Vec::new();
            if let Some(v) = topic.overrides.get(def.name) {
                synonyms.push((def.name.to_owned(), v.clone(), SOURCE_TOPIC_CONFIG));
            }
            for name in def.synonyms {
                if let Some(v) = explicit.get(*name) {
                    synonyms.push(((*name).to_owned(), v.clone(), SOURCE_STATIC_BROKER));
                }
            }
            let default_name = def.synonyms.first().copied().unwrap_or(def.name);
            let kafka_default = if def.support == Support::Log {
                from(&LogConfig::default().entries()).unwrap_or(default.clone())
            } else {
                default
            };
            synonyms.push((default_name.to_owned(), kafka_default, SOURCE_DEFAULT));
            let source = synonyms[0].2;
            Described {
                def,
                value,
                source,
                synonyms,
            }
        })
        .collect()
}

fn collect_configs<'a>(
    items: impl Iterator<Item = (&'a StrBytes, Option<&'a StrBytes>)>,
) -> BTreeMap<String, String> {
    items
        .filter_map(|(k, v)| v.map(|v| (k.as_str().to_owned(), v.as_str().to_owned())))
        .collect()
}

use kafka_protocol::protocol::StrBytes;

pub(super) async fn create_topics(
    broker: &Broker,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut resp = CreateTopicsResponse::default();
    for ct in req.topics {
        let name = ct.name.0.as_str().to_owned();
        let mut r = CreatableTopicResult::default();
        r.name = ct.name.clone();
        r.num_partitions = -1;
        r.replication_factor = -1;
        let fail = |mut r: CreatableTopicResult, code: ResponseError, msg: String| {
            r.error_code = code.code();
            r.error_message = Some(s(msg));
            r
        };
        let node = broker.meta().node_id;
        let partitions = if !ct.assignments.is_empty() {
            // On a cluster of one, an assignment to that broker is the
            // placement the controller makes anyway; others are refused.
            let alone = broker.cluster().image().brokers.len() == 1;
            if !alone
                || ct
                    .assignments
                    .iter()
                    .any(|a| a.broker_ids.iter().any(|b| b.0 != node))
            {
                resp.topics.push(fail(
                    r,
                    ResponseError::InvalidReplicaAssignment,
                    "explicit replica assignments are not supported on a cluster of several brokers yet: leave the placement to the controller".to_owned(),
                ));
                continue;
            }
            ct.assignments.len() as i32
        } else if ct.num_partitions == -1 {
            broker.config().num_partitions
        } else {
            ct.num_partitions
        };
        let overrides = collect_configs(ct.configs.iter().map(|c| (&c.name, c.value.as_ref())));
        match broker
            .create_topic(
                &name,
                partitions,
                ct.replication_factor,
                overrides,
                req.validate_only,
            )
            .await
        {
            Ok(topic) => {
                r.topic_id = if req.validate_only {
                    Uuid::nil()
                } else {
                    topic.id
                };
                r.num_partitions = partitions;
                r.replication_factor = if ct.replication_factor == -1 {
                    broker.config().replication.default_replication_factor
                } else {
                    ct.replication_factor
                };
                if version >= 5 {
                    r.configs = Some(
                        topic_configs(broker, &topic)
                            .into_iter()
                            .map(|d| {
                                let mut c = CreatableTopicConfigs::default();
                                c.name = s(d.def.name);
                                c.value = Some(s(d.value));
                                c.config_source = d.source;
                                c
                            })
                            .collect(),
                    );
                }
                resp.topics.push(r);
            }
            Err(e) => resp.topics.push(fail(r, e.code(), e.to_string())),
        }
    }
    resp
}

pub(super) async fn delete_topics(
    broker: &Broker,
    req: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let mut resp = DeleteTopicsResponse::default();
    // v0-5 name the topics in topic_names; v6 in topics, by name or id.
    let mut wanted: Vec<(Option<String>, Uuid)> = req
        .topic_names
        .iter()
        .map(|n| (Some(n.0.as_str().to_owned()), Uuid::nil()))
        .collect();
    wanted.extend(
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.as_str().to_owned()), t.topic_id)),
    );
    for (name, id) in wanted {
        let mut r = DeletableTopicResult::default();
        r.name = name.clone().map(|n| TopicName(s(n)));
        r.topic_id = id;
        let name = match name {
            Some(n) => Some(n),
            None => broker.topics().get_by_id(id).map(|t| t.name.clone()),
        };
        let Some(name) = name else {
            r.error_code = ResponseError::UnknownTopicId.code();
            resp.responses.push(r);
            continue;
        };
        match broker.delete_topic(&name).await {
            Ok(deleted) => {
                r.topic_id = deleted;
                r.name = Some(TopicName(s(name)));
            }
            Err(e) => {
                r.error_code = e.code().code();
                r.error_message = Some(s(e.to_string()));
            }
        }
        resp.responses.push(r);
    }
    resp
}

pub(super) async fn create_partitions(
    broker: &Broker,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut resp = CreatePartitionsResponse::default();
    for t in req.topics {
        let mut r = CreatePartitionsTopicResult::default();
        r.name = t.name.clone();
        if let Err(e) = broker
            .add_partitions(t.name.0.as_str(), t.count, req.validate_only)
            .await
        {
            r.error_code = e.code().code();
            r.error_message = Some(s(e.to_string()));
        }
        resp.results.push(r);
    }
    resp
}

pub(super) fn describe_configs(
    broker: &Broker,
    req: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    use kafka_protocol::messages::describe_configs_response::DescribeConfigsSynonym;
    let mut resp = DescribeConfigsResponse::default();
    for res in req.resources {
        let mut r = DescribeConfigsResult::default();
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name.clone();
        let keys: Option<Vec<String>> = res
            .configuration_keys
            .as_ref()
            .map(|ks| ks.iter().map(|k| k.as_str().to_owned()).collect());
        let wanted = |name: &str| keys.as_ref().is_none_or(|ks| ks.iter().any(|k| k == name));
        let entries: Vec<DescribeConfigsResourceResult> = match res.resource_type {
            RESOURCE_TOPIC => match broker.topics().get(res.resource_name.as_str()) {
                Some(topic) => topic_configs(broker, &topic)
                    .into_iter()
                    .filter(|d| wanted(d.def.name))
                    .map(|d| {
                        let mut c = DescribeConfigsResourceResult::default();
                        c.name = s(d.def.name);
                        c.value = Some(s(d.value));
                        c.config_source = d.source;
                        if version >= 3 {
                            c.config_type = d.def.kind as i8;
                            if req.include_documentation {
                                c.documentation = Some(s(match d.def.support {
                                    Support::Ignored(why) => {
                                        format!("{}. Accepted, no effect: {why}.", d.def.doc)
                                    }
                                    Support::DefaultOnly(why) => format!("{}. {why}", d.def.doc),
                                    Support::Log | Support::Broker => d.def.doc.to_owned(),
                                }));
                            }
                        }
                        if req.include_synonyms {
                            c.synonyms = d
                                .synonyms
                                .into_iter()
                                .map(|(n, v, src)| {
                                    let mut y = DescribeConfigsSynonym::default();
                                    y.name = s(n);
                                    y.value = Some(s(v));
                                    y.source = src;
                                    y
                                })
                                .collect();
                        }
                        c
                    })
                    .collect(),
                None => {
                    r.error_code = ResponseError::UnknownTopicOrPartition.code();
                    r.error_message = Some(s(format!(
                        "topic {} does not exist",
                        res.resource_name.as_str()
                    )));
                    resp.results.push(r);
                    continue;
                }
            },
            RESOURCE_BROKER => broker
                .config()
                .describe()
                .into_iter()
                .filter(|(n, ..)| wanted(n))
                .map(|(n, v, explicit)| {
                    let mut c = DescribeConfigsResourceResult::default();
                    c.name = s(n);
                    c.value = Some(s(v));
                    c.config_source = if explicit {
                        SOURCE_STATIC_BROKER
                    } else {
                        SOURCE_DEFAULT
                    };
                    c.read_only = true;
                    c
                })
                .collect(),
            other => {
                r.error_code = ResponseError::InvalidRequest.code();
                r.error_message = Some(s(format!("resource type {other} has no configs here")));
                resp.results.push(r);
                continue;
            }
        };
        r.configs = entries;
        resp.results.push(r);
    }
    resp
}

fn alter_result<T: Default>(
    resource_type: i8,
    name: &StrBytes,
    outcome: Result<(), (ResponseError, String)>,
    build: impl FnOnce(&mut T, i16, Option<StrBytes>, i8, StrBytes),
) -> T {
    let mut r = T::default();
    let (code, msg) = match outcome {
        Ok(()) => (0, None),
        Err((e, m)) => (e.code(), Some(s(m))),
    };
    build(&mut r, code, msg, resource_type, name.clone());
    r
}

fn check_topic_keys(configs: &BTreeMap<String, String>) -> Result<(), (ResponseError, String)> {
    if let Some(k) = configs.keys().find(|k| topic_config::find(k).is_none()) {
        return Err((
            ResponseError::InvalidConfig,
            format!("Unknown topic config name: {k}"),
        ));
    }
    Ok(())
}

fn topic_outcome(r: Result<(), TopicError>) -> Result<(), (ResponseError, String)> {
    r.map_err(|e| (e.code(), e.to_string()))
}

pub(super) async fn alter_configs(
    broker: &Broker,
    req: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let mut resp = AlterConfigsResponse::default();
    for res in req.resources {
        let outcome = if res.resource_type != RESOURCE_TOPIC {
            Err((
                ResponseError::InvalidRequest,
                "broker settings are static: set them in the config file or with --set".to_owned(),
            ))
        } else {
            // AlterConfigs replaces the whole set of overrides.
            let configs = collect_configs(res.configs.iter().map(|c| (&c.name, c.value.as_ref())));
            match check_topic_keys(&configs) {
                Ok(()) => topic_outcome(
                    broker
                        .set_topic_overrides(res.resource_name.as_str(), configs, req.validate_only)
                        .await,
                ),
                Err(e) => Err(e),
            }
        };
        resp.responses.push(alter_result(
            res.resource_type,
            &res.resource_name,
            outcome,
            |r: &mut alter_configs_response::AlterConfigsResourceResponse, code, msg, ty, name| {
                r.error_code = code;
                r.error_message = msg;
                r.resource_type = ty;
                r.resource_name = name;
            },
        ));
    }
    resp
}

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

pub(super) async fn incremental_alter_configs(
    broker: &Broker,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut resp = IncrementalAlterConfigsResponse::default();
    for res in req.resources {
        let outcome = if res.resource_type != RESOURCE_TOPIC {
            Err((
                ResponseError::InvalidRequest,
                "broker settings are static: set them in the config file or with --set".to_owned(),
            ))
        } else if let Some(topic) = broker.topics().get(res.resource_name.as_str()) {
            let mut overrides = topic.overrides.clone();
            let mut bad = None;
            for c in &res.configs {
                let name = c.name.as_str().to_owned();
                let value = c.value.as_ref().map(|v| v.as_str().to_owned());
                match (c.config_operation, value) {
                    (OP_SET, Some(v)) => {
                        overrides.insert(name, v);
                    }
                    (OP_DELETE, _) => {
                        overrides.remove(&name);
                    }
                    (OP_APPEND | OP_SUBTRACT, Some(v))
                        if topic_config::find(&name)
                            .is_some_and(|d| d.kind == topic_config::Kind::List) =>
                    {
                        let current = overrides.get(&name).cloned().unwrap_or_else(|| {
                            topic
                                .config
                                .entries()
                                .into_iter()
                                .find(|(n, _)| *n == name)
                                .map(|(_, v)| v)
                                .unwrap_or_default()
                        });
                        let mut items: Vec<String> = current
                            .split(',')
                            .map(|x| x.trim().to_owned())
                            .filter(|x| !x.is_empty())
                            .collect();
                        if c.config_operation == OP_APPEND {
                            if !items.contains(&v) {
                                items.push(v);
                            }
                        } else {
                            items.retain(|x| *x != v);
                        }
                        overrides.insert(name, items.join(","));
                    }
                    (op, _) => {
                        bad = Some((
                            ResponseError::InvalidConfig,
                            format!("operation {op} is not valid for {name}"),
                        ));
                        break;
                    }
                }
            }
            match bad {
                Some(e) => Err(e),
                None => match check_topic_keys(&overrides) {
                    Ok(()) => topic_outcome(
                        broker
                            .set_topic_overrides(
                                res.resource_name.as_str(),
                                overrides,
                                req.validate_only,
                            )
                            .await,
                    ),
                    Err(e) => Err(e),
                },
            }
        } else {
            Err((
                ResponseError::UnknownTopicOrPartition,
                format!("topic {} does not exist", res.resource_name.as_str()),
            ))
        };
        resp.responses.push(alter_result(
            res.resource_type,
            &res.resource_name,
            outcome,
            |r: &mut incremental_alter_configs_response::AlterConfigsResourceResponse,
             code,
             msg,
             ty,
             name| {
                r.error_code = code;
                r.error_message = msg;
                r.resource_type = ty;
                r.resource_name = name;
            },
        ));
    }
    resp
}

pub(super) fn describe_log_dirs(
    broker: &Broker,
    req: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    let mut resp = DescribeLogDirsResponse::default();
    let mut dir = DescribeLogDirsResult::default();
    dir.log_dir = s(broker.config().data_dir.display().to_string());
    dir.total_bytes = -1;
    dir.usable_bytes = -1;
    let topics: Vec<(std::sync::Arc<Topic>, Option<Vec<i32>>)> = match req.topics {
        None => broker
            .topics()
            .all()
            .into_iter()
            .map(|t| (t, None))
            .collect(),
        Some(list) => list
            .into_iter()
            .filter_map(|d| {
                broker
                    .topics()
                    .get(d.topic.0.as_str())
                    .map(|t| (t, Some(d.partitions)))
            })
            .collect(),
    };
    for (topic, only) in topics {
        let mut t = DescribeLogDirsTopic::default();
        t.name = TopicName(s(topic.name.clone()));
        for p in &topic.partitions {
            if only.as_ref().is_some_and(|o| !o.contains(&p.index)) {
                continue;
            }
            let mut dp = DescribeLogDirsPartition::default();
            dp.partition_index = p.index;
            dp.partition_size = p.log.size_bytes() as i64;
            dp.offset_lag = 0;
            t.partitions.push(dp);
        }
        dir.topics.push(t);
    }
    resp.results.push(dir);
    resp
}
