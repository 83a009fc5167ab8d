//! Bounded bans: automatic (violation) bans are capped and stay in memory, a connection counts
//! as one violation however many bad frames it sends, repeated violations from one IPv4 /24 or
//! IPv6 /64 ban that network for a while, and every table behind them is bounded. Each test
//! prints what the attacker spent and what it got.

use super::*;

/// The documented defaults of `AutomaticBans::new`.
const MAX_AUTOMATIC_PEER_BANS: usize = 1024;
const MAX_AUTOMATIC_NETWORK_BANS: usize = 256;
const NETWORK_THRESHOLD: usize = 4;
const NETWORK_BAN: Duration = Duration::from_secs(600);

/// What an attacker paid.
#[derive(Debug, Default)]
struct Spent {
    peer_ids: usize,
    connections: usize,
    frames: usize,
}

/// A node under attack, with what the attacker spent on it so far.
struct Target {
    node: Node,
    next_connection: usize,
    spent: Spent,
}

impl Target {
    fn new(config: Config) -> Self {
        let (node, _) = pair(config);
        Self {
            node,
            next_connection: 1,
            spent: Spent::default(),
        }
    }

    fn fresh_peer(&mut self) -> PeerId {
        self.spent.peer_ids += 1;
        PeerId::random()
    }

    /// `peer` connects from `ip`, sends `frames` malformed frames on that one connection, and
    /// the connection closes. Returns whether the connection was let in.
    fn offend(&mut self, peer: PeerId, ip: &str, frames: usize) -> bool {
        let connection = cid(self.next_connection);
        self.next_connection += 1;
        self.spent.connections += 1;
        let protocol = if ip.contains(':') { "ip6" } else { "ip4" };
        let remote: Multiaddr = format!("/{protocol}/{ip}/tcp/4001").parse().unwrap();
        let new = NewConnection::new(Initiator::Remote, Endpoint::Listener, remote);
        let now = self.node.now;
        if self
            .node
            .manager
            .check_established(now, connection, peer, &new)
            .is_err()
        {
            let _ = self.node.actions();
            return false;
        }
        self.node.manager.on_established(now, connection, peer, new);
        for _ in 0..frames {
            self.spent.frames += 1;
            self.node
                .manager
                .on_protocol_violation(now, peer, connection);
        }
        self.node
            .manager
            .on_closed(now, connection, peer, CloseCause::Local);
        let _ = self.node.actions();
        true
    }

    fn banned(&self, peer: &PeerId) -> bool {
        self.node.manager.is_peer_banned(peer, self.node.now)
    }

    fn ip_banned(&self, ip: &str) -> bool {
        self.node
            .manager
            .is_ip_banned(ip.parse().unwrap(), self.node.now)
    }

    fn bans(&self) -> Vec<Ban> {
        self.node.manager.bans(self.node.now)
    }
}

/// An IPv4 address in its own /24 for every `i` below 65,536.
fn own_slash24(i: usize) -> String {
    format!("10.{}.{}.7", (i / 256) % 256, i % 256)
}

fn is_network(ban: &Ban) -> bool {
    matches!(ban.target, BanTarget::Network(_))
}

#[test]
fn automatic_bans_stay_under_the_cap_the_soonest_ending_going_first() {
    let mut t = Target::new(Config::default().with_violation_ban(
        1,
        Duration::from_secs(600),
        Duration::from_secs(3600),
    ));
    // The application's own bans: never evicted, not counted in the cap. The timed one ends
    // before any automatic ban does.
    let (forever, timed) = (PeerId::random(), PeerId::random());
    let now = t.node.now;
    t.node.manager.ban_peer(now, forever, None);
    t.node
        .manager
        .ban_peer(now, timed, Some(Duration::from_secs(60)));
    t.node
        .manager
        .ban_network(now, "198.51.100.0/24".parse().unwrap(), None);

    let flood = MAX_AUTOMATIC_PEER_BANS + 76;
    let mut attackers = Vec::new();
    for i in 0..flood {
        let peer = t.fresh_peer();
        attackers.push(peer);
        t.offend(peer, &own_slash24(i), 1);
        t.node.advance(Duration::from_millis(10));
    }
    let bans = t.bans();
    let automatic = attackers.iter().filter(|p| t.banned(p)).count();
    println!(
        "ban flood (core): attacker spent {:?}; got {} bans held in memory ({} automatic, cap {})",
        t.spent,
        bans.len(),
        automatic,
        MAX_AUTOMATIC_PEER_BANS
    );
    assert!(
        t.banned(&forever) && t.banned(&timed),
        "application bans kept"
    );
    assert!(t.ip_banned("198.51.100.1"), "application network ban kept");
    assert!(
        automatic <= MAX_AUTOMATIC_PEER_BANS,
        "{automatic} automatic bans held"
    );
    assert_eq!(bans.len(), automatic + 3);
    // The soonest-ending automatic bans went first: the newest are all in force.
    let evicted = flood - MAX_AUTOMATIC_PEER_BANS;
    assert!(attackers[..evicted].iter().all(|p| !t.banned(p)));
    assert!(attackers[evicted..].iter().all(|p| t.banned(p)));
}

#[test]
fn only_the_applications_bans_reach_the_store() {
    let mut t = Target::new(Config::default().with_violation_ban(
        1,
        Duration::from_secs(600),
        Duration::from_secs(3600),
    ));
    t.node.manager.track_changes(true);
    let chosen = PeerId::random();
    let network: IpNet = "198.51.100.0/24".parse().unwrap();
    let now = t.node.now;
    t.node.manager.ban_peer(now, chosen, None);
    t.node.manager.ban_network(now, network, None);
    let mut attackers = Vec::new();
    for i in 0..200 {
        let peer = t.fresh_peer();
        attackers.push(peer);
        t.offend(peer, &own_slash24(i), 1);
    }
    let changes = t.node.manager.take_changes();
    let ban_records = |changes: &[Change]| -> Vec<BanTarget> {
        changes
            .iter()
            .filter_map(|c| match c {
                Change::Ban(ban) => Some(ban.target),
                Change::Unban(target) => Some(*target),
                _ => None,
            })
            .collect()
    };
    let mut stored = ban_records(&changes);
    stored.sort();
    let peer_records = changes
        .iter()
        .filter(|c| matches!(c, Change::Peer { .. }))
        .count();
    println!(
        "ban flood (store): attacker spent {:?}; got {} bans in memory, {} ban records and {} \
         peer records written",
        t.spent,
        t.bans().len(),
        stored.len(),
        peer_records
    );
    let mut expected = vec![BanTarget::Peer(chosen), BanTarget::Network(network)];
    expected.sort();
    assert_eq!(stored, expected, "only the application's bans are written");

    // Automatic bans that run out write nothing either.
    t.node.advance(Duration::from_secs(3601));
    assert!(attackers.iter().all(|p| !t.banned(p)));
    assert_eq!(ban_records(&t.node.manager.take_changes()), vec![]);

    // A ban the application places on a peer banned automatically is the application's.
    let late = t.fresh_peer();
    t.offend(late, &own_slash24(999), 1);
    assert!(t.banned(&late));
    assert_eq!(ban_records(&t.node.manager.take_changes()), vec![]);
    let now = t.node.now;
    t.node
        .manager
        .ban_peer(now, late, Some(Duration::from_secs(7200)));
    assert_eq!(
        ban_records(&t.node.manager.take_changes()),
        vec![BanTarget::Peer(late)]
    );
}

#[test]
fn a_connection_is_one_violation_however_many_bad_frames_it_sends() {
    // The default policy: 3 violations within 10 minutes ban the peer for an hour.
    let mut t = Target::new(Config::default());
    let peer = t.fresh_peer();
    t.offend(peer, "203.0.113.9", 10);
    println!(
        "one connection, many frames: attacker spent {:?}; banned: {}",
        t.spent,
        t.banned(&peer)
    );
    assert!(
        !t.banned(&peer),
        "ten frames on one connection are one violation"
    );
    t.offend(peer, "203.0.113.9", 10);
    assert!(!t.banned(&peer));
    t.offend(peer, "203.0.113.9", 1);
    assert!(
        t.banned(&peer),
        "the third connection with a violation bans"
    );
}

#[test]
fn violations_from_one_slash24_or_slash64_escalate_to_a_short_network_ban() {
    for (inside, also_inside, outside) in [
        ("203.0.113.", "203.0.113.250", "203.0.112.1"),
        ("2001:db8:1:2::", "2001:db8:1:2:ffff::1", "2001:db8:1:3::1"),
    ] {
        let mut t = Target::new(Config::default());
        for n in 1..NETWORK_THRESHOLD - 1 {
            let peer = t.fresh_peer();
            t.offend(peer, &format!("{inside}{n}"), 1);
            assert!(!t.ip_banned(also_inside), "{n} peers are not enough");
        }
        // The same peer again (on a new connection) does not count twice for its network.
        let again = t.fresh_peer();
        t.offend(again, &format!("{inside}77"), 1);
        t.offend(again, &format!("{inside}77"), 1);
        assert!(!t.banned(&again));
        assert!(!t.ip_banned(also_inside), "one peer counts once");
        let spent_before = t.spent.peer_ids;
        let peer = t.fresh_peer();
        t.offend(peer, &format!("{inside}99"), 1);
        let network_bans: Vec<Ban> = t.bans().into_iter().filter(is_network).collect();
        println!(
            "{inside}*: attacker spent {:?} (the last of {} distinct peers tipped it); got \
             network bans {:?}",
            t.spent,
            spent_before + 1,
            network_bans
        );
        assert!(t.ip_banned(also_inside), "the network is banned");
        assert!(!t.ip_banned(outside), "and nothing outside it");
        assert_eq!(network_bans.len(), 1);
        assert_eq!(network_bans[0].until, Some(t.node.now + NETWORK_BAN));
        // A fresh peer from inside is refused before it can offend.
        let fresh = t.fresh_peer();
        assert!(!t.offend(fresh, &format!("{inside}123"), 1));
        // A short ban.
        t.node.advance(NETWORK_BAN + Duration::from_secs(1));
        assert!(!t.ip_banned(also_inside));
    }
}

#[test]
fn network_escalation_needs_the_window_and_spares_loopback() {
    let mut t = Target::new(Config::default());
    // Spread over more than the violation window (10 minutes), they do not add up.
    for n in 0..NETWORK_THRESHOLD * 2 {
        let peer = t.fresh_peer();
        t.offend(peer, &format!("203.0.113.{n}"), 1);
        t.node.advance(Duration::from_secs(601));
    }
    assert!(!t.ip_banned("203.0.113.1"));
    // Everything from this host shares 127.0.0.1: loopback is never network-banned (as the
    // per-IP limits skip it), the peers themselves still are.
    for _ in 0..NETWORK_THRESHOLD * 4 {
        let peer = t.fresh_peer();
        t.offend(peer, "127.0.0.1", 1);
    }
    assert!(!t.ip_banned("127.0.0.1"));
    assert!(!t.ip_banned("::1"));
}

#[test]
fn automatic_network_bans_are_bounded_too() {
    let mut t = Target::new(Config::default());
    let networks = MAX_AUTOMATIC_NETWORK_BANS + 44;
    for net in 0..networks {
        for host in 0..NETWORK_THRESHOLD {
            let peer = t.fresh_peer();
            t.offend(peer, &format!("10.{}.{}.{host}", net / 256, net % 256), 1);
        }
        t.node.advance(Duration::from_millis(10));
    }
    let network_bans = t.bans().into_iter().filter(is_network).count();
    println!(
        "network ban flood: attacker spent {:?} from {networks} /24s; got {network_bans} network \
         bans held (cap {MAX_AUTOMATIC_NETWORK_BANS})",
        t.spent
    );
    assert!(network_bans <= MAX_AUTOMATIC_NETWORK_BANS);
    assert!(t.ip_banned(&format!(
        "10.{}.{}.1",
        (networks - 1) / 256,
        (networks - 1) % 256
    )));
    assert!(!t.ip_banned("10.0.0.1"), "the soonest-ending went first");
}

#[test]
fn a_flood_of_one_time_violators_does_not_hide_a_repeat_offender() {
    // The default policy: 3 violations within 10 minutes.
    let mut t = Target::new(Config::default());
    for i in 0..MAX_VIOLATORS + 1000 {
        let peer = t.fresh_peer();
        t.offend(peer, &own_slash24(i), 1);
    }
    assert!(t.node.manager.violations.len() <= MAX_VIOLATORS);
    assert!(t.node.manager.violations.networks() <= MAX_VIOLATING_NETWORKS);
    let offender = t.fresh_peer();
    for _ in 0..3 {
        t.offend(offender, "192.0.2.33", 1);
    }
    println!(
        "violator flood: attacker spent {:?}; violators tracked {} (networks {}); the repeat \
         offender banned: {}",
        t.spent,
        t.node.manager.violations.len(),
        t.node.manager.violations.networks(),
        t.banned(&offender)
    );
    assert!(
        t.banned(&offender),
        "three violations within the window ban"
    );
}
