//! Three metadata nodes on loopback ports: they elect a controller,
//! brokers register and heartbeat through any node, topics created through
//! any node spread their leaders; and a seeded run kills (power-cuts) and
//! restarts nodes at random while requests go on, then checks that every
//! node ends with the same image and that nothing acknowledged is lost.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;
use weir_log::{FaultStorage, Storage};
use weir_meta::node::{MetaNode, NodeConfig};
use weir_meta::{Answer, Endpoint, Request};

fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

struct Cluster {
    voters: BTreeMap<u64, String>,
    storages: BTreeMap<u64, FaultStorage>,
    nodes: BTreeMap<u64, MetaNode>,
}

impl Cluster {
    async fn start(n: u64) -> Self {
        let ports = free_ports(n as usize);
        let voters: BTreeMap<u64, String> = (1..=n)
            .map(|id| (id, format!("127.0.0.1:{}", ports[id as usize - 1])))
            .collect();
        let storages = (1..=n).map(|id| (id, FaultStorage::new())).collect();
        let mut c = Self {
            voters,
            storages,
            nodes: BTreeMap::new(),
        };
        for id in 1..=n {
            c.boot(id).await;
        }
        c
    }

    fn config(&self, id: u64) -> NodeConfig {
        let mut cfg = NodeConfig::new(
            id,
            self.voters.clone(),
            self.voters[&id].parse().unwrap(),
            format!("/meta-{id}").into(),
        );
        cfg.heartbeat_ms = 50;
        cfg.election_ms = (300, 600);
        cfg.snapshot_every = 20;
        cfg.keep_after_snapshot = 5;
        cfg.purge_batch = 1;
        cfg.tick = Duration::from_millis(100);
        cfg.controller.session_timeout_ms = 2_000;
        cfg
    }

    async fn boot(&mut self, id: u64) {
        let storage = Arc::new(self.storages[&id].clone()) as Arc<dyn Storage>;
        let node = MetaNode::start(self.config(id), storage).await.unwrap();
        self.nodes.insert(id, node);
    }

    /// Stops the node as a power cut would: what was not synced is gone.
    async fn cut(&mut self, id: u64) {
        if let Some(n) = self.nodes.remove(&id) {
            n.shutdown().await;
            self.storages[&id].crash();
        }
    }

    async fn request(&self, via: u64, r: Request) -> Result<(Answer, u64), String> {
        self.nodes[&via]
            .request(r, Duration::from_secs(8))
            .await
            .map_err(|e| e.to_string())
    }

    /// Waits until every running node has the same image (at most 15 s).
    async fn settled(&self) -> weir_meta::Image {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let images: Vec<_> = self
                .nodes
                .values()
                .map(|n| n.image().borrow().clone())
                .collect();
            let leaders: Vec<_> = self.nodes.values().map(MetaNode::leader).collect();
            let same = images.windows(2).all(|w| w[0] == w[1]);
            let one_leader = leaders.iter().all(|l| l.is_some() && *l == leaders[0]);
            if same && one_leader {
                return (*images[0]).clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "images never converged: applied {:?}, leaders {leaders:?}",
                images.iter().map(|i| i.applied).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            if let Some(n) = self.nodes.remove(&id) {
                n.shutdown().await;
            }
        }
    }
}

fn register(broker: i32) -> Request {
    Request::Register {
        broker,
        incarnation: Uuid::new_v4(),
        endpoints: vec![Endpoint {
            listener: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port: 9000 + broker as u16,
        }],
        rack: None,
        raft: None,
    }
}

async fn join(c: &Cluster, via: u64, broker: i32) -> u64 {
    let (a, epoch) = c.request(via, register(broker)).await.unwrap();
    assert_eq!(a, Answer::Registered);
    let applied = c.nodes[&via].image().borrow().applied;
    let (a, _) = c
        .request(
            via,
            Request::Heartbeat {
                broker,
                epoch,
                applied,
                shutting_down: false,
            },
        )
        .await
        .unwrap();
    assert!(
        matches!(a, Answer::Heartbeat { fenced: false, .. }),
        "{a:?}"
    );
    epoch
}

fn create(name: &str, partitions: i32) -> Request {
    Request::CreateTopic {
        name: name.into(),
        partitions,
        replication_factor: 1,
        configs: BTreeMap::new(),
        id: Uuid::new_v4(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_agree_and_any_node_takes_requests() {
    let c = Cluster::start(3).await;
    for (via, broker) in [(1, 1), (2, 2), (3, 3)] {
        join(&c, via, broker).await;
    }
    let (a, _) = c.request(2, create("t", 12)).await.unwrap();
    assert_eq!(a, Answer::Done);
    let image = c.settled().await;
    let t = image.topic("t").expect("the topic is everywhere");
    let mut led = BTreeMap::new();
    for p in &t.partitions {
        *led.entry(p.leader).or_insert(0) += 1;
    }
    assert_eq!(led.values().copied().collect::<Vec<_>>(), [4, 4, 4]);
    // The node that answered has the change already (M6).
    assert!(c.nodes[&3].image().borrow().topic("t").is_some());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_power_cuts_lose_nothing_acknowledged_and_images_converge() {
    for seed in [0x2545_f491_4f6c_dd1du64, 7, 0xdead_beef] {
        power_cuts(seed).await;
    }
}

async fn power_cuts(seed: u64) {
    let mut c = Cluster::start(3).await;
    let mut seed = seed;
    let mut rand = move |n: u64| {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        seed.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    };
    let epoch = join(&c, 1, 1).await;
    let mut acknowledged = Vec::new();
    let mut cuts = 0;
    for round in 0..24 {
        match rand(4) {
            0 if c.nodes.len() == 3 => {
                // Cut one node (never two: a majority keeps serving).
                let id = 1 + rand(3);
                c.cut(id).await;
                cuts += 1;
            }
            1 if c.nodes.len() < 3 => {
                let down: Vec<u64> = (1..=3).filter(|id| !c.nodes.contains_key(id)).collect();
                c.boot(down[0]).await;
            }
            _ => {}
        }
        let live: Vec<u64> = c.nodes.keys().copied().collect();
        let via = live[rand(live.len() as u64) as usize];
        // The broker heartbeats (through any node), so it stays unfenced.
        let applied = c.nodes[&via].image().borrow().applied;
        let beat = Request::Heartbeat {
            broker: 1,
            epoch,
            applied,
            shutting_down: false,
        };
        c.request(via, beat).await.unwrap();
        let name = format!("t{round}");
        match c.request(via, create(&name, 1 + rand(3) as i32)).await {
            Ok((Answer::Done, _)) => acknowledged.push(name),
            Ok((other, _)) => panic!("{name}: {other:?}"),
            Err(e) => panic!("{name} through node {via}: {e}"),
        }
    }
    assert!(cuts >= 2, "only {cuts} power cuts");
    for id in 1..=3 {
        if !c.nodes.contains_key(&id) {
            c.boot(id).await;
        }
    }
    let image = c.settled().await;
    for name in &acknowledged {
        assert!(
            image.topic(name).is_some(),
            "{name} was acknowledged and is gone"
        );
    }
    assert_eq!(image.topics.len(), acknowledged.len());
    // Snapshots were taken and the logs purged behind them, so a node that
    // was down caught up from a snapshot.
    let purged = (1..=3)
        .filter(|id| {
            c.storages[id].exists(std::path::Path::new(&format!("/meta-{id}/purged-log-id")))
        })
        .count();
    assert!(purged > 0, "no node purged its log");
    c.stop().await;
}
