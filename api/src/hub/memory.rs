//! [`MemoryCluster`]: hubs in one process connected as a cluster, for tests and examples.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::cluster::{Backplane, Inbox};

/// A cluster inside one process: each [`node`](Self::node) is a [`Backplane`] for one hub, and
/// frames pass between them at once, inside the publishing call. Deterministic, so the cluster's
/// semantics can be tested on a paused clock; [`cut`](Self::cut) and [`heal`](Self::heal) take
/// a node off the cluster and back, as a lost connection to a broker would.
///
/// ```
/// # async fn demo<R: ferrule::Runtime>(runtime: R) {
/// use ferrule::hub::{Hub, MemoryCluster};
///
/// let cluster = MemoryCluster::new();
/// let a = Hub::builder(runtime.clone()).backplane(cluster.node("a")).build();
/// let b = Hub::builder(runtime).backplane(cluster.node("b")).build();
/// assert_eq!(a.cluster().len().await.value, 0);
/// # drop(b);
/// # }
/// ```
#[derive(Clone, Default)]
pub struct MemoryCluster {
    nodes: Arc<Mutex<HashMap<String, Node>>>,
}

struct Node {
    inbox: Option<Inbox>,
    cut: bool,
    /// Frames to this node that did not reach it because it or their sender was cut off.
    lost: u64,
}

impl fmt::Debug for MemoryCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<String> = self.lock().keys().cloned().collect();
        names.sort_unstable();
        f.debug_struct("MemoryCluster").field("nodes", &names).finish()
    }
}

impl MemoryCluster {
    /// An empty cluster.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Node>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The backplane of the node named `name`: give it to one hub. A name given before is
    /// taken over by the new node (a node restarted under its name).
    pub fn node(&self, name: &str) -> MemoryBackplane {
        self.lock().insert(name.to_owned(), Node { inbox: None, cut: false, lost: 0 });
        MemoryBackplane { cluster: self.clone(), name: name.to_owned() }
    }

    /// Cuts the node `name` off: nothing it publishes or sends passes, and nothing reaches it,
    /// until [`heal`](Self::heal).
    pub fn cut(&self, name: &str) {
        if let Some(node) = self.lock().get_mut(name) {
            node.cut = true;
        }
    }

    /// Connects the node `name` again.
    pub fn heal(&self, name: &str) {
        if let Some(node) = self.lock().get_mut(name) {
            node.cut = false;
        }
    }

    /// How many frames published or sent to `name` did not reach it because it or their
    /// sender was cut off.
    pub fn lost(&self, name: &str) -> u64 {
        self.lock().get(name).map_or(0, |node| node.lost)
    }

    /// The inboxes `frame` from `from` reaches (`to`: one node, else every other), counting
    /// the frames a cut loses.
    fn route(&self, from: &str, to: Option<&str>) -> Vec<Inbox> {
        let mut nodes = self.lock();
        let from_cut = nodes.get(from).is_none_or(|node| node.cut);
        let mut inboxes = Vec::new();
        for (name, node) in nodes.iter_mut() {
            if name == from || to.is_some_and(|to| to != name) {
                continue;
            }
            let Some(inbox) = &node.inbox else { continue };
            if from_cut || node.cut {
                node.lost += 1;
            } else {
                inboxes.push(inbox.clone());
            }
        }
        inboxes
    }
}

/// One node of a [`MemoryCluster`].
#[derive(Debug)]
pub struct MemoryBackplane {
    cluster: MemoryCluster,
    name: String,
}

impl Backplane for MemoryBackplane {
    fn node(&self) -> &str {
        &self.name
    }

    fn start(&self, inbox: Inbox) {
        if let Some(node) = self.cluster.lock().get_mut(&self.name) {
            node.inbox = Some(inbox);
        }
    }

    fn publish(&self, frame: Bytes) {
        // Delivered outside the cluster's lock: a receiving hub may publish in turn.
        for inbox in self.cluster.route(&self.name, None) {
            inbox.deliver(&frame);
        }
    }

    fn send_to(&self, node: &str, frame: Bytes) {
        for inbox in self.cluster.route(&self.name, Some(node)) {
            inbox.deliver(&frame);
        }
    }
}
