//! The hub's bookkeeping as a plain state machine: which connections exist, which rooms each is
//! in, and who a message to some rooms (but not others) reaches. No runtime, no locks, no I/O:
//! the hub keeps one behind a mutex, and the tests below drive it directly.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use super::ConnId;

/// Connections by id, each with a value `V` (the hub keeps its per-connection state there) and
/// the rooms it joined, and the rooms with their members.
///
/// Every connection is in the room named by its id from [`insert`](Self::insert) until
/// [`leave_all_for_removal`](Self::leave_all_for_removal); it cannot leave that room before.
///
/// A room holds its members' values as well as their ids (`V` is cheap to clone: the hub's is
/// an `Arc`), so that walking a room's members looks nothing up. Every copy of a connection's id
/// in the registry shares one allocation, so the recipient walk tells ids apart by address.
#[derive(Debug)]
pub(crate) struct Registry<V> {
    members: HashMap<ConnId, Member<V>>,
    rooms: HashMap<Arc<str>, HashMap<ConnId, V>>,
}

#[derive(Debug)]
struct Member<V> {
    value: V,
    /// The rooms joined, in the order they were joined (its own room first).
    rooms: Vec<Arc<str>>,
}

/// Who a message goes to: the members of some rooms (or every connection), minus the members of
/// other rooms. A set of connection ids to leave out is a set of rooms, since each connection is
/// in the room named by its id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Target {
    /// `None`: every connection.
    pub(crate) rooms: Option<Vec<Arc<str>>>,
    pub(crate) except: Vec<Arc<str>>,
}

/// The connection is not in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotConnected;

impl<V> Default for Registry<V> {
    fn default() -> Self {
        Self { members: HashMap::new(), rooms: HashMap::new() }
    }
}

impl<V: Clone> Registry<V> {
    /// Adds a connection, in the room named by its id; `false` (and nothing changes) when the id
    /// is taken.
    pub(crate) fn insert(&mut self, id: ConnId, value: V) -> bool {
        if self.members.contains_key(&id) {
            return false;
        }
        let own: Arc<str> = id.as_arc().clone();
        self.rooms.entry(own.clone()).or_default().insert(id.clone(), value.clone());
        self.members.insert(id, Member { value, rooms: vec![own] });
        true
    }

    /// The value of a connection.
    pub(crate) fn get(&self, id: &str) -> Option<&V> {
        self.members.get(id).map(|m| &m.value)
    }

    /// How many connections there are.
    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    /// How many rooms have members (each connection's own room included).
    pub(crate) fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Every connection.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&ConnId, &V)> {
        self.members.iter().map(|(id, m)| (id, &m.value))
    }

    /// Puts a connection in `room`; `Ok(true)` when it was not in it.
    pub(crate) fn join(&mut self, id: &str, room: &str) -> Result<bool, NotConnected> {
        let id = self.members.get_key_value(id).ok_or(NotConnected)?.0.clone();
        let Some(member) = self.members.get_mut(&id) else { return Err(NotConnected) };
        let value = member.value.clone();
        if member.rooms.iter().any(|r| &**r == room) {
            return Ok(false);
        }
        let room: Arc<str> = match self.rooms.get_key_value(room) {
            Some((name, _)) => name.clone(),
            None => Arc::from(room),
        };
        member.rooms.push(room.clone());
        self.rooms.entry(room).or_default().insert(id, value);
        Ok(true)
    }

    /// Takes a connection out of `room`; `true` when it was in it. A connection cannot leave
    /// the room named by its id.
    pub(crate) fn leave(&mut self, id: &str, room: &str) -> bool {
        if id == room {
            return false;
        }
        let Some(member) = self.members.get_mut(id) else { return false };
        let Some(at) = member.rooms.iter().position(|r| &**r == room) else { return false };
        member.rooms.remove(at);
        self.drop_from_room(id, room);
        true
    }

    /// Whether a connection is in `room`.
    pub(crate) fn is_joined(&self, id: &str, room: &str) -> bool {
        self.rooms.get(room).is_some_and(|members| members.contains_key(id))
    }

    /// The rooms a connection is in, in the order it joined them (its own first).
    pub(crate) fn rooms_of(&self, id: &str) -> Vec<Arc<str>> {
        self.members.get(id).map(|m| m.rooms.clone()).unwrap_or_default()
    }

    /// Takes a connection out of every room but its own; returns them, in the order joined.
    pub(crate) fn leave_all(&mut self, id: &str) -> Vec<Arc<str>> {
        let Some(member) = self.members.get_mut(id) else { return Vec::new() };
        let left: Vec<Arc<str>> = member.rooms.drain(1..).collect();
        for room in &left {
            self.drop_from_room(id, room);
        }
        left
    }

    /// For a connection that is going: takes it out of every room, its own last, and returns
    /// them in that order. It stays in the registry (without rooms) until [`remove`](Self::remove).
    pub(crate) fn leave_all_for_removal(&mut self, id: &str) -> Vec<Arc<str>> {
        let Some(member) = self.members.get_mut(id) else { return Vec::new() };
        let mut left = std::mem::take(&mut member.rooms);
        if !left.is_empty() {
            left.rotate_left(1);
        }
        for room in &left {
            self.drop_from_room(id, room);
        }
        left
    }

    /// Removes a connection (from its rooms too); its value.
    pub(crate) fn remove(&mut self, id: &str) -> Option<V> {
        let member = self.members.remove(id)?;
        for room in &member.rooms {
            self.drop_from_room(id, room);
        }
        Some(member.value)
    }

    /// Calls `f` for each connection `target` reaches, once each.
    ///
    /// Nothing is hashed per recipient: the rooms left out are looked up once, and a walk over
    /// several rooms remembers whom it reached by the address of their id.
    pub(crate) fn for_each_recipient(&self, target: &Target, mut f: impl FnMut(&ConnId, &V)) {
        let except = Exclusions::new(self, &target.except);
        match target.rooms.as_deref() {
            None => {
                for (id, member) in &self.members {
                    if !except.contains(id) {
                        f(id, &member.value);
                    }
                }
            }
            Some([room]) => {
                for (id, value) in self.rooms.get(room).into_iter().flatten() {
                    if !except.contains(id) {
                        f(id, value);
                    }
                }
            }
            Some(rooms) => {
                // With several rooms, a connection in two of them is reached once.
                let mut seen: HashSet<usize, BuildHasherDefault<AddressHasher>> = HashSet::default();
                for room in rooms {
                    for (id, value) in self.rooms.get(room).into_iter().flatten() {
                        if seen.insert(address(id)) && !except.contains(id) {
                            f(id, value);
                        }
                    }
                }
            }
        }
    }

    fn drop_from_room(&mut self, id: &str, room: &str) {
        if let Some(members) = self.rooms.get_mut(room) {
            members.remove(id);
            if members.is_empty() {
                self.rooms.remove(room);
            }
        }
    }
}

/// The address of a connection id's allocation, which every copy of it in a registry shares.
fn address(id: &ConnId) -> usize {
    Arc::as_ptr(id.as_arc()).cast::<u8>() as usize
}

/// The connections a recipient walk leaves out.
enum Exclusions<'a, V> {
    /// A few (the usual case: the sender, or a handful of ids): their addresses, compared one
    /// by one.
    Few(Vec<usize>),
    /// Many: the rooms, looked up per recipient.
    Rooms(Vec<&'a HashMap<ConnId, V>>),
}

/// Up to this many connections left out are compared by address rather than looked up.
const FEW_EXCLUSIONS: usize = 16;

impl<'a, V> Exclusions<'a, V> {
    fn new(registry: &'a Registry<V>, except: &[Arc<str>]) -> Self {
        let rooms: Vec<&HashMap<ConnId, V>> = except.iter().filter_map(|room| registry.rooms.get(room)).collect();
        if rooms.iter().map(|members| members.len()).sum::<usize>() <= FEW_EXCLUSIONS {
            Self::Few(rooms.iter().flat_map(|members| members.keys()).map(address).collect())
        } else {
            Self::Rooms(rooms)
        }
    }

    fn contains(&self, id: &ConnId) -> bool {
        match self {
            Self::Few(addresses) => {
                let id = address(id);
                addresses.contains(&id)
            }
            Self::Rooms(rooms) => rooms.iter().any(|members| members.contains_key(id)),
        }
    }
}

/// Hashes an address: multiplied by an odd constant so that the alignment's zero low bits and
/// the high bits that all addresses share spread over the whole hash. Addresses are chosen by
/// the allocator, not by a peer, so they need no keyed hash.
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_usize(&mut self, n: usize) {
        let h = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 29);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ConnId {
        ConnId::from(s)
    }

    fn recipients(registry: &Registry<u32>, target: &Target) -> Vec<u32> {
        let mut out = Vec::new();
        registry.for_each_recipient(target, |_, v| out.push(*v));
        out.sort_unstable();
        out
    }

    fn rooms(names: &[&str]) -> Vec<Arc<str>> {
        names.iter().map(|n| Arc::from(*n)).collect()
    }

    fn three() -> Registry<u32> {
        let mut r = Registry::default();
        assert!(r.insert(id("a"), 1));
        assert!(r.insert(id("b"), 2));
        assert!(r.insert(id("c"), 3));
        r
    }

    #[test]
    fn insert_puts_a_connection_in_its_own_room_and_refuses_a_taken_id() {
        let mut r = three();
        assert!(!r.insert(id("a"), 9));
        assert_eq!(r.get("a"), Some(&1));
        assert_eq!(r.len(), 3);
        assert_eq!(r.room_count(), 3);
        assert!(r.is_joined("a", "a"));
        assert_eq!(r.rooms_of("a"), rooms(&["a"]));
    }

    #[test]
    fn join_and_leave_report_whether_anything_changed() {
        let mut r = three();
        assert_eq!(r.join("a", "chat"), Ok(true));
        assert_eq!(r.join("a", "chat"), Ok(false));
        assert_eq!(r.join("nobody", "chat"), Err(NotConnected));
        assert!(r.is_joined("a", "chat"));
        assert!(r.leave("a", "chat"));
        assert!(!r.leave("a", "chat"));
        assert!(!r.is_joined("a", "chat"));
        assert_eq!(r.room_count(), 3, "an empty room is forgotten");
    }

    #[test]
    fn own_room_cannot_be_left() {
        let mut r = three();
        assert!(!r.leave("a", "a"));
        assert!(r.is_joined("a", "a"));
    }

    #[test]
    fn leave_all_keeps_the_own_room_and_returns_the_others_in_join_order() {
        let mut r = three();
        r.join("a", "x").unwrap();
        r.join("a", "y").unwrap();
        assert_eq!(r.leave_all("a"), rooms(&["x", "y"]));
        assert_eq!(r.rooms_of("a"), rooms(&["a"]));
        assert_eq!(r.leave_all("nobody"), rooms(&[]));
    }

    #[test]
    fn leaving_for_removal_leaves_the_own_room_last_and_keeps_the_entry() {
        let mut r = three();
        r.join("a", "x").unwrap();
        r.join("a", "y").unwrap();
        assert_eq!(r.leave_all_for_removal("a"), rooms(&["x", "y", "a"]));
        assert_eq!(r.get("a"), Some(&1), "still there until removed");
        assert!(!r.is_joined("a", "a"));
        assert_eq!(recipients(&r, &Target { rooms: Some(rooms(&["a"])), except: vec![] }), [] as [u32; 0]);
        assert_eq!(r.remove("a"), Some(1));
        assert_eq!(r.remove("a"), None);
        assert_eq!(r.len(), 2);
        assert_eq!(r.room_count(), 2);
    }

    #[test]
    fn remove_forgets_every_room_of_the_connection() {
        let mut r = three();
        r.join("a", "x").unwrap();
        r.join("b", "x").unwrap();
        r.remove("a");
        assert!(!r.is_joined("a", "x"));
        assert!(r.is_joined("b", "x"));
        r.remove("b");
        assert_eq!(r.room_count(), 1, "only c's own room is left");
    }

    #[test]
    fn everyone_reaches_each_connection_once() {
        let r = three();
        assert_eq!(recipients(&r, &Target::default()), [1, 2, 3]);
    }

    #[test]
    fn everyone_but_a_set_of_ids() {
        let r = three();
        assert_eq!(recipients(&r, &Target { rooms: None, except: rooms(&["a", "c"]) }), [2]);
    }

    #[test]
    fn several_rooms_reach_a_member_of_two_once() {
        let mut r = three();
        r.join("a", "x").unwrap();
        r.join("a", "y").unwrap();
        r.join("b", "y").unwrap();
        assert_eq!(recipients(&r, &Target { rooms: Some(rooms(&["x", "y"])), except: vec![] }), [1, 2]);
        assert_eq!(recipients(&r, &Target { rooms: Some(rooms(&["x", "y"])), except: rooms(&["a"]) }), [2]);
        assert_eq!(recipients(&r, &Target { rooms: Some(rooms(&["y"])), except: rooms(&["x"]) }), [2]);
        assert_eq!(recipients(&r, &Target { rooms: Some(rooms(&["nowhere"])), except: vec![] }), [] as [u32; 0]);
    }

    #[test]
    fn a_room_of_one_connection_is_that_connection() {
        let r = three();
        assert_eq!(recipients(&r, &Target { rooms: Some(rooms(&["b"])), except: vec![] }), [2]);
    }

    /// Past `FEW_EXCLUSIONS` connections left out, the walk looks the rooms up instead of
    /// comparing addresses: both ways leave out the same connections, and ids passed in (not
    /// the registry's own copies) still name them.
    #[test]
    fn many_exclusions_leave_out_the_same_connections_as_few() {
        let mut r = Registry::default();
        for n in 0..100u32 {
            assert!(r.insert(id(&format!("c{n}")), n));
            r.join(&format!("c{n}"), if n % 2 == 0 { "even" } else { "odd" }).unwrap();
            if n % 3 == 0 {
                r.join(&format!("c{n}"), "thirds").unwrap();
            }
        }
        let expect = |keep: &dyn Fn(u32) -> bool| (0..100).filter(|&n| keep(n)).collect::<Vec<u32>>();
        // 50 left out: looked up.
        let odd_only = Target { rooms: None, except: rooms(&["even"]) };
        assert_eq!(recipients(&r, &odd_only), expect(&|n| n % 2 == 1));
        // A few left out, named by id: compared by address.
        let few = Target { rooms: Some(rooms(&["even", "thirds"])), except: rooms(&["c0", "c3", "c4", "nobody"]) };
        assert_eq!(recipients(&r, &few), expect(&|n| (n % 2 == 0 || n % 3 == 0) && ![0, 3, 4].contains(&n)));
        // Many left out across two rooms, with several rooms to reach.
        let many = Target { rooms: Some(rooms(&["odd", "thirds"])), except: rooms(&["even", "c9"]) };
        assert_eq!(recipients(&r, &many), expect(&|n| n % 2 == 1 && n != 9));
        // Everyone in one room but the members of another.
        let one_room = Target { rooms: Some(rooms(&["thirds"])), except: rooms(&["odd"]) };
        assert_eq!(recipients(&r, &one_room), expect(&|n| n % 6 == 0));
    }
}
