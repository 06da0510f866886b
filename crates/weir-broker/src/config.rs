//! Broker settings under Kafka's names, from a TOML file and `--set`
//! overrides. Raw settings are applied one key at a time onto defaults, so
//! an error names the key that is wrong.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use weir_log::LogConfig;

use crate::error::ConfigError;

/// Everything the broker needs to start.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `log.dirs`: where partitions live.
    pub data_dir: PathBuf,
    /// `listeners`: the address to bind.
    pub listen: SocketAddr,
    /// `advertised.listeners`: host and port given to clients in Metadata.
    pub advertised: Option<(String, u16)>,
    /// The client listeners after the first (`listeners` naming several):
    /// name and address to bind; the first is `listen`.
    pub more_listeners: Vec<(String, SocketAddr)>,
    /// `num.partitions`: partitions of auto-created topics and of
    /// CreateTopics requests that leave it to the broker.
    pub num_partitions: i32,
    /// `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// `socket.request.max.bytes`: larger requests close the connection.
    pub socket_request_max_bytes: usize,
    /// Topic-config defaults (`log.*` and `message.max.bytes`).
    pub log_defaults: LogConfig,
    /// Settings given explicitly, as (Kafka name, value), for DescribeConfigs.
    pub explicit: BTreeMap<String, String>,
    /// `group.min.session.timeout.ms`, `group.max.session.timeout.ms`,
    /// `group.initial.rebalance.delay.ms`.
    pub group_limits: crate::groups::machine::Limits,
    /// `offsets.retention.minutes`, in ms: committed offsets of a group
    /// with no members are dropped this long after their last commit.
    pub offsets_retention_ms: i64,
    /// `log.cleaner.enable`, `log.cleaner.dedupe.buffer.size`,
    /// `log.cleaner.backoff.ms`.
    pub cleaner: crate::cleaner::CleanerConfig,
    /// Kafka's KRaft settings (`node.id`, `process.roles`, the quorum, the
    /// named listeners); see [`KraftSettings`].
    pub kraft: KraftSettings,
    /// `log.retention.check.interval.ms`.
    pub retention_check_interval_ms: u64,
    /// `broker.heartbeat.interval.ms`.
    pub heartbeat_interval_ms: u64,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets`
    /// when a cluster creates it (an existing one keeps its count).
    pub offsets_topic_partitions: i32,
    /// `broker.session.timeout.ms`: a broker silent this long is fenced.
    pub session_timeout_ms: u64,
    /// Partition replication (docs/design/replication.md).
    pub replication: ReplicationConfig,
    /// SASL on SASL_* listeners (docs/design/security.md).
    pub sasl: SaslConfig,
    /// ACL checks (docs/design/security.md): `authorizer.class.name`,
    /// `super.users`, `allow.everyone.if.no.acl.found`.
    pub authorizer: crate::security::authorizer::AuthorizerConfig,
}

/// The authorizer class DescribeConfigs names when ACLs are checked.
const CLASS_NAMES_DEFAULT: &str = "org.apache.kafka.metadata.authorizer.StandardAuthorizer";

/// SASL settings, with Kafka's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslConfig {
    /// `sasl.enabled.mechanisms` (Weir's default: PLAIN, SCRAM-SHA-256,
    /// SCRAM-SHA-512; GSSAPI and OAUTHBEARER are not served).
    pub enabled: Vec<crate::security::sasl::Mechanism>,
    /// `connections.max.reauth.ms` (0: sessions do not expire).
    pub reauth_ms: u64,
    /// `sasl.server.max.receive.size`: a larger token closes the
    /// connection before it is read.
    pub max_receive_size: usize,
}

impl Default for SaslConfig {
    fn default() -> Self {
        Self {
            enabled: crate::security::sasl::Mechanism::ALL.to_vec(),
            reauth_ms: 0,
            max_receive_size: 524_288,
        }
    }
}

/// The broker's replication settings, with Kafka's names and defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// `default.replication.factor`: CreateTopics with -1.
    pub default_replication_factor: i16,
    /// `offsets.topic.replication.factor`, capped at the brokers alive
    /// when `__consumer_offsets` is created.
    pub offsets_topic_replication_factor: i16,
    /// `min.insync.replicas` for topics that do not set it.
    pub min_insync_replicas: i32,
    /// `replica.lag.time.max.ms`: a follower not caught up this long
    /// leaves the ISR.
    pub lag_time_max_ms: i64,
    /// `replica.fetch.max.bytes`: per partition of a follower's fetch.
    pub fetch_max_bytes: i32,
    /// `replica.fetch.wait.max.ms`.
    pub fetch_wait_max_ms: i32,
    /// `unclean.leader.election.enable` for topics that do not set it.
    pub unclean_leader_election: bool,
    /// `auto.leader.rebalance.enable`.
    pub auto_leader_rebalance: bool,
    /// `leader.imbalance.check.interval.seconds`.
    pub leader_imbalance_check_interval_s: i64,
    /// `leader.imbalance.per.broker.percentage`.
    pub leader_imbalance_per_broker_percentage: i64,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        Self {
            default_replication_factor: 1,
            offsets_topic_replication_factor: 3,
            min_insync_replicas: 1,
            lag_time_max_ms: 30_000,
            fetch_max_bytes: 1 << 20,
            fetch_wait_max_ms: 500,
            unclean_leader_election: false,
            auto_leader_rebalance: true,
            leader_imbalance_check_interval_s: 300,
            leader_imbalance_per_broker_percentage: 10,
        }
    }
}

/// One entry of `listeners` / `advertised.listeners`: `NAME://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Listener name (`PLAINTEXT`, `CONTROLLER`, ...).
    pub name: String,
    /// Host; empty means every interface, as in Kafka.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// Kafka's KRaft settings, as a Kafka `server.properties` writes them.
/// Every node of this version is both broker and controller: a quorum of
/// one (nothing set) or of several voters (`controller.quorum.voters`,
/// each with a `CONTROLLER` listener); a node with one role only is
/// refused with the reason (docs/design/cluster.md).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KraftSettings {
    /// `node.id`.
    pub node_id: Option<i32>,
    /// `process.roles` (`None`: not set).
    pub roles: Option<(bool, bool)>,
    /// `controller.quorum.voters`: (id, host, port).
    pub voters: Vec<(i32, String, u16)>,
    /// `controller.quorum.bootstrap.servers`.
    pub bootstrap_servers: Vec<String>,
    /// `listeners`.
    pub listeners: Vec<Listener>,
    /// `advertised.listeners`.
    pub advertised: Vec<Listener>,
    /// `controller.listener.names` (default `CONTROLLER`).
    pub controller_listener_names: Vec<String>,
    /// `inter.broker.listener.name`.
    pub inter_broker_listener_name: Option<String>,
    /// `listener.security.protocol.map`: listener name -> protocol.
    pub protocol_map: BTreeMap<String, String>,
}

/// The address to bind for a listener (an empty host: every interface).
pub(crate) fn resolve(l: &Listener) -> Result<SocketAddr, String> {
    let host = if l.host.is_empty() {
        "0.0.0.0"
    } else {
        &l.host
    };
    format!("{host}:{}", l.port)
        .parse()
        .or_else(|_| {
            use std::net::ToSocketAddrs;
            (host, l.port)
                .to_socket_addrs()
                .map_err(|e| e.to_string())?
                .next()
                .ok_or_else(|| format!("{host}: no address"))
        })
        .map_err(|e| format!("listener {}: {e}", l.name))
}

/// Parses `NAME://host:port` (or a bare `host:port`, named `PLAINTEXT`).
fn parse_listener(entry: &str) -> Result<Listener, String> {
    let entry = entry.trim();
    let (name, addr) = match entry.split_once("://") {
        Some((n, a)) => (n.trim().to_ascii_uppercase(), a),
        None => ("PLAINTEXT".to_owned(), entry),
    };
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("{entry}: expected NAME://host:port"))?;
    let port = port
        .parse()
        .map_err(|_| format!("{entry}: bad port {port}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if name.is_empty() {
        return Err(format!("{entry}: no listener name"));
    }
    Ok(Listener {
        name,
        host: host.to_owned(),
        port,
    })
}

fn parse_listeners(value: &str) -> Result<Vec<Listener>, String> {
    let list: Vec<Listener> = value
        .split(',')
        .filter(|e| !e.trim().is_empty())
        .map(parse_listener)
        .collect::<Result<_, _>>()?;
    let mut names: Vec<&str> = list.iter().map(|l| l.name.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err("each listener name may appear once".to_owned());
    }
    Ok(list)
}

impl KraftSettings {
    fn controller_names(&self) -> Vec<String> {
        if self.controller_listener_names.is_empty() {
            vec!["CONTROLLER".to_owned()]
        } else {
            self.controller_listener_names.clone()
        }
    }

    /// This node is a controller (a voter of the metadata quorum).
    pub fn is_controller(&self) -> bool {
        self.roles.is_none_or(|r| r.1)
    }

    /// This node serves clients as a broker.
    pub fn is_broker(&self) -> bool {
        self.roles.is_none_or(|r| r.0)
    }

    /// The listener the metadata quorum uses on this node, if configured.
    pub fn controller_listener(&self) -> Option<&Listener> {
        let controllers = self.controller_names();
        self.listeners
            .iter()
            .find(|l| controllers.contains(&l.name))
    }

    /// The security protocol of listener `name`
    /// (`listener.security.protocol.map`, else the name itself, as in
    /// Kafka's default map).
    pub fn protocol(&self, name: &str) -> String {
        self.protocol_map
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_owned())
    }

    /// The listeners clients use (every listener that is not a controller's).
    pub fn client_listeners(&self) -> Vec<&Listener> {
        let controllers = self.controller_names();
        self.listeners
            .iter()
            .filter(|l| !controllers.contains(&l.name))
            .collect()
    }

    /// Checks the settings as a whole, as Kafka does at start, for a node
    /// of this version (one node, broker and controller). Returns what is
    /// wrong, naming the setting.
    pub fn check(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, value: String, reason: String| ConfigError::Invalid {
            key: key.to_owned(),
            value,
            reason,
        };
        if let Some((broker, controller)) = self.roles
            && !(broker && controller)
        {
            let v = if broker { "broker" } else { "controller" };
            if self.voters.is_empty() {
                return Err(invalid(
                    "process.roles",
                    v.to_owned(),
                    format!("a {v}-only node needs controller.quorum.voters"),
                ));
            }
            if !broker && self.controller_listener().is_none() {
                return Err(invalid(
                    "process.roles",
                    v.to_owned(),
                    "a controller needs a controller listener (CONTROLLER://host:port in listeners)"
                        .to_owned(),
                ));
            }
        }
        if let Some(id) = self.node_id
            && !self.is_controller()
            && self.voters.iter().any(|(v, _, _)| *v == id)
        {
            return Err(invalid(
                "process.roles",
                "broker".to_owned(),
                format!("a broker-only node's node.id ({id}) must not be one of the voters"),
            ));
        }
        if self.bootstrap_servers.len() > 1 {
            return Err(invalid(
                "controller.quorum.bootstrap.servers",
                self.bootstrap_servers.join(","),
                "a dynamic quorum (KIP-853) is not supported: list the voters in controller.quorum.voters".to_owned(),
            ));
        }
        if let Some(id) = self.node_id
            && !self.voters.is_empty()
            && self.is_controller()
            && !self.voters.iter().any(|(v, _, _)| *v == id)
        {
            return Err(invalid(
                "controller.quorum.voters",
                self.voters
                    .iter()
                    .map(|(v, h, p)| format!("{v}@{h}:{p}"))
                    .collect::<Vec<_>>()
                    .join(","),
                format!("a controller's node.id ({id}) must be one of the voters"),
            ));
        }
        if self.voters.len() > 1 || !self.is_controller() {
            if self.node_id.is_none() {
                return Err(invalid(
                    "node.id",
                    String::new(),
                    "a quorum of several voters needs node.id on every node".to_owned(),
                ));
            }
            let listener = self.controller_listener();
            // A broker-only node needs none: its metadata node listens
            // beside its broker listener, on a port of its own.
            let Some(l) = listener.or(if self.is_controller() {
                None
            } else {
                self.listeners.first()
            }) else {
                return Err(invalid(
                    "listeners",
                    self.listeners
                        .iter()
                        .map(|l| l.name.clone())
                        .collect::<Vec<_>>()
                        .join(","),
                    format!(
                        "a quorum of several voters needs a controller listener ({}://host:port)",
                        self.controller_names().join(",")
                    ),
                ));
            };
            let me = self
                .voters
                .iter()
                .find(|(v, _, _)| Some(*v) == self.node_id);
            if let Some((_, _, port)) = me
                && *port != l.port
                && self.is_controller()
            {
                return Err(invalid(
                    "controller.quorum.voters",
                    format!("port {port}"),
                    format!(
                        "this node's voter entry must name its controller listener's port {}",
                        l.port
                    ),
                ));
            }
        }
        let clients = self.client_listeners();
        for l in &clients {
            let protocol = self.protocol(&l.name);
            // Followers fetch over the inter-broker listener; a node alone
            // in its quorum has no followers.
            let alone = self.voters.len() <= 1 && self.is_controller();
            let inter_broker = !alone
                && match &self.inter_broker_listener_name {
                    Some(ib) => *ib == l.name,
                    None if clients.iter().any(|c| c.name == "PLAINTEXT") => l.name == "PLAINTEXT",
                    None => clients.first().is_some_and(|f| f.name == l.name),
                };
            let refused = match protocol.as_str() {
                "PLAINTEXT" => None,
                "SASL_PLAINTEXT" if !inter_broker => None,
                "SASL_PLAINTEXT" => Some(
                    "brokers do not authenticate to each other yet: give the inter-broker listener (inter.broker.listener.name) PLAINTEXT and clients a SASL_PLAINTEXT listener beside it".to_owned(),
                ),
                other => Some(format!(
                    "security protocol {other}: TLS listeners are not served yet (PLAINTEXT and SASL_PLAINTEXT are)"
                )),
            };
            if let Some(reason) = refused {
                return Err(invalid(
                    "listeners",
                    format!("{}://{}:{}", l.name, l.host, l.port),
                    reason,
                ));
            }
        }
        if let Some(ib) = &self.inter_broker_listener_name
            && !clients.is_empty()
            && !clients.iter().any(|l| l.name == *ib)
        {
            return Err(invalid(
                "inter.broker.listener.name",
                ib.clone(),
                format!(
                    "must name a broker listener ({})",
                    clients
                        .iter()
                        .map(|l| l.name.clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        for a in &self.advertised {
            if !self.listeners.is_empty() && !self.listeners.iter().any(|l| l.name == a.name) {
                return Err(invalid(
                    "advertised.listeners",
                    a.name.clone(),
                    "each advertised listener must be one of listeners".to_owned(),
                ));
            }
            if a.host == "0.0.0.0" || a.host.is_empty() {
                return Err(invalid(
                    "advertised.listeners",
                    format!("{}://{}:{}", a.name, a.host, a.port),
                    "an advertised host must be an address clients can reach, not 0.0.0.0"
                        .to_owned(),
                ));
            }
        }
        Ok(())
    }
}

impl BrokerConfig {
    /// Defaults for a data directory and listen address.
    pub fn new(data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        Self {
            data_dir: data_dir.into(),
            listen,
            advertised: None,
            more_listeners: Vec::new(),
            num_partitions: 1,
            auto_create_topics: true,
            socket_request_max_bytes: 104_857_600,
            log_defaults: LogConfig::default(),
            explicit: BTreeMap::new(),
            group_limits: crate::groups::machine::Limits::default(),
            offsets_retention_ms: 7 * 24 * 3_600_000,
            cleaner: crate::cleaner::CleanerConfig::default(),
            kraft: KraftSettings::default(),
            retention_check_interval_ms: 30_000,
            heartbeat_interval_ms: 2_000,
            offsets_topic_partitions: 16,
            session_timeout_ms: 9_000,
            replication: ReplicationConfig::default(),
            sasl: SaslConfig::default(),
            authorizer: Default::default(),
        }
    }

    /// Takes the address to bind and to advertise from the named
    /// listeners, once `listeners`, `advertised.listeners` and
    /// `controller.listener.names` are known.
    fn apply_listeners(&mut self) -> Result<(), String> {
        let clients: Vec<Listener> = self.kraft.client_listeners().into_iter().cloned().collect();
        if let Some(l) = clients.first() {
            self.listen = resolve(l)?;
        }
        self.more_listeners = clients
            .iter()
            .skip(1)
            .map(|l| Ok((l.name.clone(), resolve(l)?)))
            .collect::<Result<_, String>>()?;
        let advertised = match clients.first() {
            Some(l) => self.kraft.advertised.iter().find(|a| a.name == l.name),
            None => self.kraft.advertised.first(),
        };
        if let Some(a) = advertised {
            self.advertised = Some((a.host.clone(), a.port));
        }
        Ok(())
    }

    /// The name of the first listener clients use (`PLAINTEXT` unless
    /// named).
    pub fn client_listener_name(&self) -> String {
        self.kraft
            .client_listeners()
            .first()
            .map_or_else(|| "PLAINTEXT".to_owned(), |l| l.name.clone())
    }

    /// Every client listener: name and address to bind, the first one
    /// first.
    pub fn client_binds(&self) -> Vec<(String, SocketAddr)> {
        let mut out = vec![(self.client_listener_name(), self.listen)];
        out.extend(self.more_listeners.iter().cloned());
        out
    }

    /// The listener followers fetch from and brokers reach each other on:
    /// `inter.broker.listener.name`, else `PLAINTEXT` when there is one,
    /// else the first client listener.
    pub fn inter_broker_listener_name(&self) -> String {
        if let Some(n) = &self.kraft.inter_broker_listener_name {
            return n.clone();
        }
        let binds = self.client_binds();
        if binds.iter().any(|(n, _)| n == "PLAINTEXT") {
            return "PLAINTEXT".to_owned();
        }
        binds[0].0.clone()
    }

    /// The endpoints this broker registers: (listener, host, port) of each
    /// client listener, as advertised (the bound address where none is).
    pub fn advertised_endpoints(&self) -> Vec<(String, String, u16)> {
        let (host, port) = self.advertised();
        let mut out = vec![(self.client_listener_name(), host, port)];
        for (name, addr) in &self.more_listeners {
            let (host, port) = self
                .kraft
                .advertised
                .iter()
                .find(|a| a.name == *name)
                .map_or_else(
                    || (addr.ip().to_string(), addr.port()),
                    |a| (a.host.clone(), a.port),
                );
            out.push((name.clone(), host, port));
        }
        out
    }

    /// Host and port clients should connect to.
    pub fn advertised(&self) -> (String, u16) {
        self.advertised
            .clone()
            .unwrap_or_else(|| (self.listen.ip().to_string(), self.listen.port()))
    }

    /// Applies one setting by its Kafka broker name.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let bad = |reason: &str| ConfigError::Invalid {
            key: key.to_owned(),
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let int = || {
            value
                .trim()
                .parse::<i64>()
                .map_err(|_| bad("not an integer"))
        };
        let boolean = || match value.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(bad("must be true or false")),
        };
        let topic = |cfg: &mut LogConfig, name: &str, v: &str| {
            cfg.set(name, v).map_err(|e| bad(&e.to_string()))
        };
        match key {
            "num.partitions" => {
                let v = int()?;
                if !(1..=i32::MAX as i64).contains(&v) {
                    return Err(bad("must be at least 1"));
                }
                self.num_partitions = v as i32;
            }
            "auto.create.topics.enable" => {
                self.auto_create_topics = match value.trim() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad("must be true or false")),
                }
            }
            "socket.request.max.bytes" => {
                let v = int()?;
                if v < 1 {
                    return Err(bad("must be at least 1"));
                }
                self.socket_request_max_bytes = v as usize;
            }
            "sasl.enabled.mechanisms" => {
                use crate::security::sasl::Mechanism;
                let mut enabled = Vec::new();
                for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    match Mechanism::from_name(name) {
                        Some(m) if !enabled.contains(&m) => enabled.push(m),
                        Some(_) => {}
                        None => {
                            return Err(bad(&format!(
                                "mechanism {name} is not served (PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 are)"
                            )));
                        }
                    }
                }
                if enabled.is_empty() {
                    return Err(bad("name at least one mechanism"));
                }
                self.sasl.enabled = enabled;
            }
            "connections.max.reauth.ms" => {
                let v = int()?;
                if v < 0 {
                    return Err(bad("must be 0 (no expiry) or more"));
                }
                self.sasl.reauth_ms = v as u64;
            }
            "sasl.server.max.receive.size" => {
                let v = int()?;
                if v < 1 {
                    return Err(bad("must be at least 1"));
                }
                self.sasl.max_receive_size = v as usize;
            }
            "authorizer.class.name" => {
                use crate::security::authorizer::CLASS_NAMES;
                let name = value.trim();
                if name.is_empty() {
                    self.authorizer.enabled = false;
                } else if CLASS_NAMES.contains(&name) {
                    self.authorizer.enabled = true;
                } else {
                    return Err(bad(&format!(
                        "authorizer {name} is not served (ACLs are checked by {})",
                        CLASS_NAMES.join(", ")
                    )));
                }
            }
            "super.users" => {
                self.authorizer.super_users =
                    crate::security::authorizer::AuthorizerConfig::parse_super_users(value)
                        .map_err(|e| bad(&e))?;
            }
            "allow.everyone.if.no.acl.found" => self.authorizer.allow_if_no_acl = boolean()?,
            "advertised.listeners" => {
                // PLAINTEXT://host:port[,CONTROLLER://...] or host:port
                self.kraft.advertised = parse_listeners(value).map_err(|e| bad(&e))?;
                self.apply_listeners().map_err(|e| bad(&e))?;
            }
            "listeners" => {
                self.kraft.listeners = parse_listeners(value).map_err(|e| bad(&e))?;
                self.apply_listeners().map_err(|e| bad(&e))?;
            }
            "controller.listener.names" => {
                self.kraft.controller_listener_names = value
                    .split(',')
                    .map(|n| n.trim().to_ascii_uppercase())
                    .filter(|n| !n.is_empty())
                    .collect();
                self.apply_listeners().map_err(|e| bad(&e))?;
            }
            "inter.broker.listener.name" => {
                self.kraft.inter_broker_listener_name = Some(value.trim().to_ascii_uppercase())
            }
            "listener.security.protocol.map" => {
                let mut map = BTreeMap::new();
                for pair in value.split(',').filter(|p| !p.trim().is_empty()) {
                    let (name, protocol) = pair
                        .split_once(':')
                        .ok_or_else(|| bad("expected NAME:PROTOCOL pairs"))?;
                    let protocol = protocol.trim().to_ascii_uppercase();
                    if !["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
                        .contains(&protocol.as_str())
                    {
                        return Err(bad(&format!("unknown security protocol {protocol}")));
                    }
                    map.insert(name.trim().to_ascii_uppercase(), protocol);
                }
                self.kraft.protocol_map = map;
            }
            "node.id" | "broker.id" => {
                let v = int()?;
                if !(0..=i32::MAX as i64).contains(&v) {
                    return Err(bad("must be between 0 and 2147483647"));
                }
                self.kraft.node_id = Some(v as i32);
            }
            "process.roles" => {
                let mut roles = (false, false);
                for r in value.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                    match r {
                        "broker" => roles.0 = true,
                        "controller" => roles.1 = true,
                        _ => return Err(bad("must be broker, controller or broker,controller")),
                    }
                }
                if roles == (false, false) {
                    return Err(bad("must be broker, controller or broker,controller"));
                }
                self.kraft.roles = Some(roles);
            }
            "controller.quorum.voters" => {
                let mut voters = Vec::new();
                for v in value.split(',').filter(|v| !v.trim().is_empty()) {
                    let (id, addr) = v
                        .trim()
                        .split_once('@')
                        .ok_or_else(|| bad("expected id@host:port entries"))?;
                    let id = id.parse().map_err(|_| bad("a voter id is not a number"))?;
                    let l = parse_listener(addr).map_err(|e| bad(&e))?;
                    voters.push((id, l.host, l.port));
                }
                self.kraft.voters = voters;
            }
            "controller.quorum.bootstrap.servers" => {
                self.kraft.bootstrap_servers = value
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect();
            }
            "broker.heartbeat.interval.ms" => {
                let v = int()?;
                if v < 1 {
                    return Err(bad("must be at least 1"));
                }
                self.heartbeat_interval_ms = v as u64;
            }
            "broker.session.timeout.ms" => {
                let v = int()?;
                if v < 1 {
                    return Err(bad("must be at least 1"));
                }
                self.session_timeout_ms = v as u64;
            }
            "offsets.topic.replication.factor" => {
                let v = int()?;
                if !(1..=i16::MAX as i64).contains(&v) {
                    return Err(bad("must be between 1 and 32767"));
                }
                self.replication.offsets_topic_replication_factor = v as i16;
            }
            "transaction.state.log.replication.factor"
            | "share.coordinator.state.topic.replication.factor" => {
                if int()? < 1 {
                    return Err(bad("must be at least 1"));
                }
            }
            "min.insync.replicas" => {
                let v = int()?;
                if !(1..=i32::MAX as i64).contains(&v) {
                    return Err(bad("must be at least 1"));
                }
                self.replication.min_insync_replicas = v as i32;
            }
            "unclean.leader.election.enable" => {
                self.replication.unclean_leader_election = boolean()?;
            }
            "auto.leader.rebalance.enable" => {
                self.replication.auto_leader_rebalance = boolean()?;
            }
            "leader.imbalance.check.interval.seconds" => {
                let v = int()?;
                if v < 1 {
                    return Err(bad("must be at least 1"));
                }
                self.replication.leader_imbalance_check_interval_s = v;
            }
            "leader.imbalance.per.broker.percentage" => {
                let v = int()?;
                if !(0..=100).contains(&v) {
                    return Err(bad("must be between 0 and 100"));
                }
                self.replication.leader_imbalance_per_broker_percentage = v;
            }
            "replica.lag.time.max.ms" => {
                let v = int()?;
                if v < 1 {
                    return Err(bad("must be at least 1"));
                }
                self.replication.lag_time_max_ms = v;
            }
            "replica.fetch.max.bytes" => {
                let v = int()?;
                if !(1..=i32::MAX as i64).contains(&v) {
                    return Err(bad("must be at least 1"));
                }
                self.replication.fetch_max_bytes = v as i32;
            }
            "replica.fetch.wait.max.ms" => {
                let v = int()?;
                if !(0..=60_000).contains(&v) {
                    return Err(bad("must be between 0 and 60000"));
                }
                self.replication.fetch_wait_max_ms = v as i32;
            }
            "transaction.state.log.min.isr" | "share.coordinator.state.topic.min.isr" => {
                if int()? < 1 {
                    return Err(bad("must be at least 1"));
                }
            }
            "offsets.topic.num.partitions" => {
                let v = int()?;
                if !(1..=10_000).contains(&v) {
                    return Err(bad("must be between 1 and 10000"));
                }
                self.offsets_topic_partitions = v as i32;
            }
            // Thread counts and socket buffers of Kafka's JVM broker: Weir
            // sizes its own runtime; checked, kept for DescribeConfigs.
            "num.network.threads"
            | "num.io.threads"
            | "num.recovery.threads.per.data.dir"
            | "background.threads"
            | "num.replica.fetchers" => {
                if int()? < 1 {
                    return Err(bad("must be at least 1"));
                }
            }
            "socket.send.buffer.bytes" | "socket.receive.buffer.bytes" => {
                let v = int()?;
                if v < -1 {
                    return Err(bad("must be -1 (the OS default) or more"));
                }
            }
            "log.retention.check.interval.ms" => {
                let v = int()?;
                if v < 1 {
                    return Err(bad("must be at least 1"));
                }
                self.retention_check_interval_ms = v as u64;
            }
            "log.dirs" | "log.dir" => self.data_dir = PathBuf::from(value.trim()),
            "group.min.session.timeout.ms" => {
                self.group_limits.min_session_timeout_ms = int()?.clamp(0, i32::MAX as i64) as i32
            }
            "group.max.session.timeout.ms" => {
                self.group_limits.max_session_timeout_ms = int()?.clamp(0, i32::MAX as i64) as i32
            }
            "group.initial.rebalance.delay.ms" => {
                let v = int()?;
                if v < 0 {
                    return Err(bad("must be at least 0"));
                }
                self.group_limits.initial_rebalance_delay_ms = v as u64;
            }
            "offsets.retention.minutes" => {
                let v = int()?;
                if v < 1 {
                    return Err(bad("must be at least 1"));
                }
                self.offsets_retention_ms = v.saturating_mul(60_000);
            }
            "default.replication.factor" => {
                let v = int()?;
                if !(1..=i16::MAX as i64).contains(&v) {
                    return Err(bad("must be between 1 and 32767"));
                }
                self.replication.default_replication_factor = v as i16;
            }
            "message.max.bytes" => topic(&mut self.log_defaults, "max.message.bytes", value)?,
            "log.segment.bytes" => topic(&mut self.log_defaults, "segment.bytes", value)?,
            "log.roll.ms" => topic(&mut self.log_defaults, "segment.ms", value)?,
            "log.roll.hours" => topic(
                &mut self.log_defaults,
                "segment.ms",
                &(int()? * 3_600_000).to_string(),
            )?,
            "log.retention.bytes" => topic(&mut self.log_defaults, "retention.bytes", value)?,
            "log.retention.ms" => topic(&mut self.log_defaults, "retention.ms", value)?,
            "log.retention.minutes" => {
                let v = int()?;
                let ms = if v < 0 { -1 } else { v * 60_000 };
                topic(&mut self.log_defaults, "retention.ms", &ms.to_string())?
            }
            "log.retention.hours" => {
                let v = int()?;
                let ms = if v < 0 { -1 } else { v * 3_600_000 };
                topic(&mut self.log_defaults, "retention.ms", &ms.to_string())?
            }
            "log.index.interval.bytes" => {
                topic(&mut self.log_defaults, "index.interval.bytes", value)?
            }
            "log.flush.interval.messages" => {
                topic(&mut self.log_defaults, "flush.messages", value)?
            }
            "log.flush.interval.ms" => topic(&mut self.log_defaults, "flush.ms", value)?,
            "log.message.timestamp.type" => {
                topic(&mut self.log_defaults, "message.timestamp.type", value)?
            }
            "log.message.timestamp.before.max.ms" => topic(
                &mut self.log_defaults,
                "message.timestamp.before.max.ms",
                value,
            )?,
            "log.message.timestamp.after.max.ms" => topic(
                &mut self.log_defaults,
                "message.timestamp.after.max.ms",
                value,
            )?,
            "log.cleanup.policy" => topic(&mut self.log_defaults, "cleanup.policy", value)?,
            "log.cleaner.enable" => {
                self.cleaner.enable = match value.trim() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad("must be true or false")),
                }
            }
            "log.cleaner.dedupe.buffer.size" => {
                let v = int()?;
                if v < 1 << 20 {
                    return Err(bad("must be at least 1048576"));
                }
                self.cleaner.dedupe_buffer_bytes = v as u64;
            }
            "log.cleaner.backoff.ms" => {
                let v = int()?;
                if v < 0 {
                    return Err(bad("must be at least 0"));
                }
                self.cleaner.backoff_ms = v as u64;
            }
            "log.cleaner.io.max.bytes.per.second" => {
                let v: f64 = value.trim().parse().map_err(|_| bad("not a number"))?;
                if v.is_nan() || v <= 0.0 {
                    return Err(bad("must be more than 0"));
                }
                // Kafka's default is Double.MAX_VALUE: no limit.
                self.cleaner.io_max_bytes_per_second = (v < 1e18).then_some(v as u64);
            }
            "log.cleaner.threads" => {
                if int()? < 1 {
                    return Err(bad("must be at least 1"));
                }
                tracing::warn!("log.cleaner.threads: this broker runs one cleaner thread");
            }
            "log.cleaner.delete.retention.ms" => {
                topic(&mut self.log_defaults, "delete.retention.ms", value)?
            }
            "log.cleaner.min.cleanable.ratio" => {
                topic(&mut self.log_defaults, "min.cleanable.dirty.ratio", value)?
            }
            "log.cleaner.min.compaction.lag.ms" => {
                topic(&mut self.log_defaults, "min.compaction.lag.ms", value)?
            }
            "log.cleaner.max.compaction.lag.ms" => {
                topic(&mut self.log_defaults, "max.compaction.lag.ms", value)?
            }
            "compression.type"
            | "compression.gzip.level"
            | "compression.lz4.level"
            | "compression.zstd.level" => topic(&mut self.log_defaults, key, value)?,
            _ => {
                return Err(ConfigError::Unknown {
                    key: key.to_owned(),
                });
            }
        }
        self.explicit
            .insert(key.to_owned(), value.trim().to_owned());
        Ok(())
    }

    /// Applies the `[broker]` table of a TOML config. Dotted Kafka names
    /// may be written bare (`num.partitions = 3`, which TOML nests) or quoted.
    pub fn apply_toml(&mut self, text: &str) -> Result<(), ConfigError> {
        let doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        let Some(broker) = doc.get("broker") else {
            return Ok(());
        };
        let toml::Value::Table(table) = broker else {
            return Err(ConfigError::Parse("[broker] must be a table".to_owned()));
        };
        let mut flat = Vec::new();
        flatten("", table, &mut flat)?;
        for (k, v) in flat {
            self.set(&k, &v)?;
        }
        Ok(())
    }

    /// Broker-level configs for DescribeConfigs: (name, value, explicitly set).
    pub fn describe(&self) -> Vec<(String, String, bool)> {
        let mut out = vec![
            (
                "advertised.listeners".to_owned(),
                self.advertised_endpoints()
                    .iter()
                    .map(|(name, host, port)| format!("{name}://{host}:{port}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            (
                "auto.create.topics.enable".to_owned(),
                self.auto_create_topics.to_string(),
            ),
            (
                "default.replication.factor".to_owned(),
                self.replication.default_replication_factor.to_string(),
            ),
            (
                "offsets.topic.replication.factor".to_owned(),
                self.replication
                    .offsets_topic_replication_factor
                    .to_string(),
            ),
            (
                "min.insync.replicas".to_owned(),
                self.replication.min_insync_replicas.to_string(),
            ),
            (
                "replica.lag.time.max.ms".to_owned(),
                self.replication.lag_time_max_ms.to_string(),
            ),
            (
                "unclean.leader.election.enable".to_owned(),
                self.replication.unclean_leader_election.to_string(),
            ),
            (
                "auto.leader.rebalance.enable".to_owned(),
                self.replication.auto_leader_rebalance.to_string(),
            ),
            (
                "leader.imbalance.check.interval.seconds".to_owned(),
                self.replication
                    .leader_imbalance_check_interval_s
                    .to_string(),
            ),
            (
                "leader.imbalance.per.broker.percentage".to_owned(),
                self.replication
                    .leader_imbalance_per_broker_percentage
                    .to_string(),
            ),
            (
                "listeners".to_owned(),
                self.client_binds()
                    .iter()
                    .map(|(name, addr)| format!("{name}://{addr}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ("log.dirs".to_owned(), self.data_dir.display().to_string()),
            (
                "log.cleaner.backoff.ms".to_owned(),
                self.cleaner.backoff_ms.to_string(),
            ),
            (
                "log.cleaner.dedupe.buffer.size".to_owned(),
                self.cleaner.dedupe_buffer_bytes.to_string(),
            ),
            (
                "log.cleaner.enable".to_owned(),
                self.cleaner.enable.to_string(),
            ),
            (
                "log.cleaner.io.max.bytes.per.second".to_owned(),
                self.cleaner
                    .io_max_bytes_per_second
                    .map_or_else(|| "1.7976931348623157E308".to_owned(), |v| v.to_string()),
            ),
            ("log.cleaner.threads".to_owned(), "1".to_owned()),
            ("num.partitions".to_owned(), self.num_partitions.to_string()),
            (
                "socket.request.max.bytes".to_owned(),
                self.socket_request_max_bytes.to_string(),
            ),
            (
                "sasl.enabled.mechanisms".to_owned(),
                self.sasl
                    .enabled
                    .iter()
                    .map(|m| m.name())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            (
                "connections.max.reauth.ms".to_owned(),
                self.sasl.reauth_ms.to_string(),
            ),
            (
                "sasl.server.max.receive.size".to_owned(),
                self.sasl.max_receive_size.to_string(),
            ),
            (
                "authorizer.class.name".to_owned(),
                if self.authorizer.enabled {
                    CLASS_NAMES_DEFAULT.to_owned()
                } else {
                    String::new()
                },
            ),
            (
                "super.users".to_owned(),
                self.authorizer.super_users.join(";"),
            ),
            (
                "allow.everyone.if.no.acl.found".to_owned(),
                self.authorizer.allow_if_no_acl.to_string(),
            ),
        ];
        for (name, value) in self.log_defaults.entries() {
            let broker_name = match name {
                "max.message.bytes" => "message.max.bytes".to_owned(),
                "segment.ms" => "log.roll.ms".to_owned(),
                "flush.messages" => "log.flush.interval.messages".to_owned(),
                "flush.ms" => "log.flush.interval.ms".to_owned(),
                "delete.retention.ms" => "log.cleaner.delete.retention.ms".to_owned(),
                "min.cleanable.dirty.ratio" => "log.cleaner.min.cleanable.ratio".to_owned(),
                "min.compaction.lag.ms" => "log.cleaner.min.compaction.lag.ms".to_owned(),
                "max.compaction.lag.ms" => "log.cleaner.max.compaction.lag.ms".to_owned(),
                other if other.starts_with("compression.") => other.to_owned(),
                other => format!("log.{other}"),
            };
            out.push((broker_name, value));
        }
        // Settings kept only for DescribeConfigs, as given.
        for (k, v) in &self.explicit {
            if !out.iter().any(|(name, _)| name == k) {
                out.push((k.clone(), v.clone()));
            }
        }
        out.sort();
        out.into_iter()
            .map(|(k, v)| {
                let explicit = self.explicit.contains_key(&k);
                (k, v, explicit)
            })
            .collect()
    }
}

fn flatten(
    prefix: &str,
    table: &toml::Table,
    out: &mut Vec<(String, String)>,
) -> Result<(), ConfigError> {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out)?,
            toml::Value::String(s) => out.push((key, s.clone())),
            toml::Value::Integer(i) => out.push((key, i.to_string())),
            toml::Value::Boolean(b) => out.push((key, b.to_string())),
            toml::Value::Float(f) => out.push((key, f.to_string())),
            _ => {
                return Err(ConfigError::Invalid {
                    key,
                    value: v.to_string(),
                    reason: "expected a string, number or boolean".to_owned(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BrokerConfig {
        BrokerConfig::new("/d", "127.0.0.1:9092".parse().unwrap())
    }

    #[test]
    fn kafka_names_from_toml_and_overrides() {
        let mut c = cfg();
        c.apply_toml(
            r#"
            [broker]
            num.partitions = 3
            auto.create.topics.enable = false
            "log.retention.hours" = 2
            log.segment.bytes = 1048576
            message.max.bytes = 2000000
            "#,
        )
        .unwrap();
        assert_eq!(c.num_partitions, 3);
        assert!(!c.auto_create_topics);
        assert_eq!(c.log_defaults.retention_ms, Some(7_200_000));
        assert_eq!(c.log_defaults.segment_bytes, 1_048_576);
        assert_eq!(c.log_defaults.max_message_bytes, 2_000_000);
        c.set("advertised.listeners", "PLAINTEXT://kafka.example:19092")
            .unwrap();
        assert_eq!(c.advertised(), ("kafka.example".to_owned(), 19092));
        let described = c.describe();
        assert!(described.contains(&("num.partitions".to_owned(), "3".to_owned(), true)));
        assert!(described.contains(&("log.retention.ms".to_owned(), "7200000".to_owned(), false)));
    }

    #[test]
    fn errors_name_the_key() {
        let mut c = cfg();
        let e = c.set("num.partitions", "zero").unwrap_err().to_string();
        assert!(e.contains("num.partitions"), "{e}");
        let e = c
            .apply_toml("[broker]\nlog.retention.ms = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("log.retention.ms"), "{e}");
        let e = c.set("no.such.thing", "1").unwrap_err().to_string();
        assert!(e.contains("no.such.thing"), "{e}");
        assert!(c.set("default.replication.factor", "0").is_err());
        c.set("default.replication.factor", "3").unwrap();
        c.set("min.insync.replicas", "2").unwrap();
        assert_eq!(c.replication.default_replication_factor, 3);
        assert_eq!(c.replication.min_insync_replicas, 2);
    }

    /// A one-node KRaft `server.properties`, as Kafka's own sample writes
    /// it (combined broker and controller, named listeners).
    const KRAFT: &[(&str, &str)] = &[
        ("process.roles", "broker,controller"),
        ("node.id", "1"),
        ("controller.quorum.voters", "1@127.0.0.1:9093"),
        (
            "listeners",
            "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093",
        ),
        ("inter.broker.listener.name", "PLAINTEXT"),
        (
            "advertised.listeners",
            "PLAINTEXT://localhost:19092,CONTROLLER://localhost:19093",
        ),
        ("controller.listener.names", "CONTROLLER"),
        (
            "listener.security.protocol.map",
            "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
        ),
        ("num.network.threads", "3"),
        ("num.io.threads", "8"),
        ("socket.send.buffer.bytes", "102400"),
        ("socket.receive.buffer.bytes", "102400"),
        ("socket.request.max.bytes", "104857600"),
        ("num.partitions", "1"),
        ("num.recovery.threads.per.data.dir", "1"),
        ("offsets.topic.replication.factor", "1"),
        ("share.coordinator.state.topic.replication.factor", "1"),
        ("share.coordinator.state.topic.min.isr", "1"),
        ("transaction.state.log.replication.factor", "1"),
        ("transaction.state.log.min.isr", "1"),
        ("log.retention.hours", "168"),
        ("log.segment.bytes", "1073741824"),
        ("log.retention.check.interval.ms", "300000"),
    ];

    fn kraft() -> BrokerConfig {
        let mut c = cfg();
        for (k, v) in KRAFT {
            c.set(k, v).unwrap_or_else(|e| panic!("{k}: {e}"));
        }
        c
    }

    #[test]
    fn a_one_node_kraft_server_properties_is_taken_as_kafka_takes_it() {
        let c = kraft();
        c.kraft.check().unwrap();
        assert_eq!(c.listen, "127.0.0.1:19092".parse().unwrap());
        assert_eq!(c.advertised(), ("localhost".to_owned(), 19092));
        assert_eq!(c.kraft.node_id, Some(1));
        assert_eq!(c.retention_check_interval_ms, 300_000);
        assert_eq!(c.log_defaults.retention_ms, Some(168 * 3_600_000));
        let described = c.describe();
        assert!(described.contains(&("num.io.threads".to_owned(), "8".to_owned(), true)));
        // The order of the keys does not matter: names first, listeners later.
        let mut r = cfg();
        for (k, v) in KRAFT.iter().rev() {
            r.set(k, v).unwrap();
        }
        assert_eq!(r.listen, c.listen);
        // An empty host is every interface, as in Kafka.
        r.set("listeners", "PLAINTEXT://:9092,CONTROLLER://:9093")
            .unwrap();
        assert_eq!(r.listen, "0.0.0.0:9092".parse().unwrap());
    }

    #[test]
    fn what_a_node_cannot_be_is_refused_with_the_reason() {
        let refused = |k: &str, v: &str| {
            let mut c = kraft();
            c.set(k, v).unwrap();
            let e = c.kraft.check().unwrap_err().to_string();
            assert!(e.contains(k), "{k}: {e}");
            e
        };
        // Three voters, this node's entry on its controller listener's port.
        let mut three = kraft();
        three
            .set("controller.quorum.voters", "1@a:19093,2@b:19093,3@c:19093")
            .unwrap();
        three.kraft.check().unwrap();
        assert!(
            refused("controller.quorum.voters", "1@a:9999,2@b:19093,3@c:19093")
                .contains("port 19093")
        );
        // A broker-only node: its id is not a voter's.
        assert!(refused("process.roles", "broker").contains("not be one of the voters"));
        let mut b = kraft();
        b.set("process.roles", "broker").unwrap();
        b.set("controller.quorum.voters", "2@a:19093").unwrap();
        b.set("listeners", "PLAINTEXT://127.0.0.1:19092").unwrap();
        b.set("advertised.listeners", "PLAINTEXT://localhost:19092")
            .unwrap();
        b.kraft.check().unwrap();
        let mut c = kraft();
        c.set("process.roles", "controller").unwrap();
        c.kraft.check().unwrap();
        assert!(refused("controller.quorum.voters", "2@a:9093").contains("node.id"));
        assert!(
            refused(
                "listeners",
                "SSL://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
            )
            .contains("TLS")
        );
        // Several client listeners, each registered; followers use the
        // inter-broker one.
        let mut two = kraft();
        two.set(
            "listeners",
            "PLAINTEXT://127.0.0.1:19092,REPLICATION://127.0.0.2:19094,CONTROLLER://127.0.0.1:19093",
        )
        .unwrap();
        two.set(
            "advertised.listeners",
            "PLAINTEXT://localhost:19092,REPLICATION://127.0.0.9:29094",
        )
        .unwrap();
        two.set(
            "listener.security.protocol.map",
            "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,REPLICATION:PLAINTEXT",
        )
        .unwrap();
        two.set("inter.broker.listener.name", "replication")
            .unwrap();
        two.kraft.check().unwrap();
        assert_eq!(
            two.client_binds(),
            vec![
                ("PLAINTEXT".to_owned(), "127.0.0.1:19092".parse().unwrap()),
                ("REPLICATION".to_owned(), "127.0.0.2:19094".parse().unwrap()),
            ]
        );
        assert_eq!(
            two.advertised_endpoints(),
            vec![
                ("PLAINTEXT".to_owned(), "localhost".to_owned(), 19092),
                ("REPLICATION".to_owned(), "127.0.0.9".to_owned(), 29094),
            ]
        );
        assert_eq!(two.inter_broker_listener_name(), "REPLICATION");
        assert_eq!(kraft().inter_broker_listener_name(), "PLAINTEXT");
        assert!(refused("inter.broker.listener.name", "OTHER").contains("broker listener"));
        assert!(refused("advertised.listeners", "PLAINTEXT://0.0.0.0:9092").contains("0.0.0.0"));
        let mut c = cfg();
        assert!(
            c.set("listeners", "PLAINTEXT://x:9092,PLAINTEXT://y:9093")
                .is_err()
        );
        assert!(c.set("process.roles", "worker").is_err());
        assert!(c.set("offsets.topic.replication.factor", "0").is_err());
        assert!(c.set("listener.security.protocol.map", "A:TLS").is_err());
    }
}
