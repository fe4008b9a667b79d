//! Which caller → callee pairs `verify` judges: every pair an intent names, and a default-deny
//! sample of the others.
//!
//! A profile of n services makes a promise about n·(n−1) pairs, almost all of them "not allowed,
//! so denied". Judging every one is quadratic (1,000 services: a million pairs), so by default
//! `verify` judges
//!
//! * every pair an intent names, on every endpoint and method of the callee: the promises
//!   themselves. A deleted ALLOW rule, a path typo or a wrong principal shows here as narrowed
//!   access;
//! * for every callee, up to [`CALLERS_PER_CALLEE`] callers that have no intent to it, in this
//!   order (at most [`PER_SOURCE`] from each of the first three sources):
//!   1. callers the ALLOW policies applying to the callee name ([`NamedSources`]): a policy naming
//!      the wrong principal widens access for exactly that caller;
//!   2. services of the callee's namespace, nearest in profile order first: an allow-all or a
//!      policy without a selector opens the namespace to its own services first;
//!   3. callers allowed to call a neighbour (a service of the callee's namespace, nearest first):
//!      an ALLOW policy written for the neighbour but selecting too much admits exactly them;
//!   4. the nearest services in profile order, to fill the quota;
//! * for every caller, up to [`CALLEES_PER_CALLER`] callees it has no intent to: services of its
//!   namespace (nearest first), callees of the services it may call (trust is not transitive),
//!   then the nearest in profile order.
//!
//! Every sampled pair is judged on every endpoint and method of the callee. The sample is
//! deterministic, holds at most (CALLERS_PER_CALLEE + CALLEES_PER_CALLER) pairs per service, and
//! is chosen in time linear in services and intents. A callee that has any caller without an
//! intent gets at least one of them judged, so an allow-all on any workload, namespace or the
//! whole mesh is caught. A mesh whose callees each have at most CALLERS_PER_CALLEE callers without
//! an intent is judged exhaustively (the bundled profiles are). [`Sampling::Exhaustive`] judges
//! every pair whatever the size.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::policy::istio::{Labels, NamedSources, PolicyIndex};
use crate::profile::{Decision, Profile, Role};
use crate::spiffe::SpiffeId;

/// Callers without an intent judged per callee.
pub const CALLERS_PER_CALLEE: usize = 8;
/// Callees without an intent judged per caller.
pub const CALLEES_PER_CALLER: usize = 4;
/// Callers taken from each targeted source (named, same namespace, callers of a neighbour), so
/// that none crowds out the others.
pub const PER_SOURCE: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sampling {
    /// Intended pairs and a default-deny sample of the others (the module's rules).
    DefaultDeny,
    /// Every caller → callee pair.
    Exhaustive,
}

/// The pairs to judge, as positions in `profile.services`, caller-major.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    pub pairs: Vec<(usize, usize)>,
    /// Pairs an intent names.
    pub intended: usize,
    /// Pairs without an intent that are judged, and how many there are in the whole mesh.
    pub default_deny_judged: usize,
    pub default_deny_total: u64,
}

/// `identities[i]`: the lab identity of `profile.services[i]`; a service without one calls
/// nobody.
pub fn plan(
    profile: &Profile,
    identities: &[Option<SpiffeId>],
    policies: &PolicyIndex<'_>,
    sampling: Sampling,
) -> Plan {
    let mesh = Mesh::new(profile, identities);
    let intended = mesh.intended.len();
    let default_deny_total = mesh.default_deny_total();
    let mut pairs: Vec<(usize, usize)> = match sampling {
        Sampling::Exhaustive => (0..mesh.len())
            .flat_map(|a| (0..mesh.len()).map(move |b| (a, b)))
            .filter(|&(a, b)| mesh.eligible(a, b))
            .collect(),
        Sampling::DefaultDeny => {
            let mut pairs: Vec<(usize, usize)> = mesh.intended.iter().copied().collect();
            for b in 0..mesh.len() {
                pairs.extend(mesh.callers_for(b, policies).into_iter().map(|a| (a, b)));
            }
            for a in 0..mesh.len() {
                pairs.extend(mesh.callees_for(a).into_iter().map(|b| (a, b)));
            }
            pairs
        }
    };
    pairs.sort_unstable();
    pairs.dedup();
    Plan {
        default_deny_judged: pairs.len() - intended,
        pairs,
        intended,
        default_deny_total,
    }
}

/// The profile as a graph of positions.
struct Mesh<'p> {
    profile: &'p Profile,
    /// Principal (SPIFFE ID without `spiffe://`) of every service that can call.
    principals: Vec<Option<String>>,
    /// Eligible pairs some intent names.
    intended: HashSet<(usize, usize)>,
    allowed_callers: Vec<Vec<usize>>,
    allowed_callees: Vec<Vec<usize>>,
    /// Services of each namespace in profile order, and each service's place in its list.
    namespaces: HashMap<&'p str, Vec<usize>>,
    rank: Vec<usize>,
    /// (principal, position) sorted by principal, and by reversed principal: a prefix, suffix
    /// or exact pattern matches one contiguous run of either.
    by_principal: Vec<(String, usize)>,
    by_reversed: Vec<(String, usize)>,
}

impl<'p> Mesh<'p> {
    fn new(profile: &'p Profile, identities: &[Option<SpiffeId>]) -> Mesh<'p> {
        let n = profile.services.len();
        let principals: Vec<Option<String>> = (0..n)
            .map(|i| {
                identities.get(i).cloned().flatten().map(|id| {
                    let text = id.to_string();
                    text.strip_prefix("spiffe://").unwrap_or(&text).to_owned()
                })
            })
            .collect();
        let position: HashMap<&str, usize> = profile
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        let mut namespaces: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut rank = vec![0; n];
        for (i, s) in profile.services.iter().enumerate() {
            let members = namespaces.entry(s.namespace.as_str()).or_default();
            rank[i] = members.len();
            members.push(i);
        }
        let mut by_principal: Vec<(String, usize)> = principals
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.clone().map(|p| (p, i)))
            .collect();
        by_principal.sort_unstable();
        let mut by_reversed: Vec<(String, usize)> = by_principal
            .iter()
            .map(|(p, i)| (p.chars().rev().collect(), *i))
            .collect();
        by_reversed.sort_unstable();
        let mut mesh = Mesh {
            profile,
            principals,
            intended: HashSet::new(),
            allowed_callers: vec![Vec::new(); n],
            allowed_callees: vec![Vec::new(); n],
            namespaces,
            rank,
            by_principal,
            by_reversed,
        };
        for intent in &profile.intents {
            let (Some(&a), Some(&b)) = (
                position.get(intent.from.as_str()),
                position.get(intent.to.as_str()),
            ) else {
                continue;
            };
            if !mesh.eligible(a, b) {
                continue;
            }
            mesh.intended.insert((a, b));
            if intent.decision == Decision::Allow {
                mesh.allowed_callers[b].push(a);
                mesh.allowed_callees[a].push(b);
            }
        }
        mesh
    }

    fn len(&self) -> usize {
        self.principals.len()
    }

    /// A pair the matrix holds: a caller with an identity, another service, not the ingress.
    fn eligible(&self, a: usize, b: usize) -> bool {
        a != b && self.principals[a].is_some() && self.profile.services[b].role != Role::Ingress
    }

    /// A pair promised deny only by default.
    fn open(&self, a: usize, b: usize) -> bool {
        self.eligible(a, b) && !self.intended.contains(&(a, b))
    }

    fn default_deny_total(&self) -> u64 {
        let callers = self.principals.iter().filter(|p| p.is_some()).count() as u64;
        let eligible: u64 = (0..self.len())
            .filter(|&b| self.profile.services[b].role != Role::Ingress)
            .map(|b| callers - u64::from(self.principals[b].is_some()))
            .sum();
        eligible - self.intended.len() as u64
    }

    /// Every other service, nearest in profile order first (cyclic).
    fn nearest(&self, of: usize) -> impl Iterator<Item = usize> + '_ {
        let n = self.len();
        (1..n).flat_map(move |d| [(of + d) % n, (of + n - d) % n])
    }

    /// The other services of `of`'s namespace, nearest in profile order first (cyclic).
    fn neighbours(&self, of: usize) -> impl Iterator<Item = usize> + '_ {
        let members = self
            .namespaces
            .get(self.profile.services[of].namespace.as_str())
            .map_or(&[][..], Vec::as_slice);
        let (m, r) = (members.len(), self.rank[of]);
        (1..m).flat_map(move |d| [members[(r + d) % m], members[(r + m - d) % m]])
    }

    fn callers_for(&self, b: usize, policies: &PolicyIndex<'_>) -> Vec<usize> {
        let callee = &self.profile.services[b];
        if callee.role == Role::Ingress {
            return Vec::new();
        }
        let labels: Labels = [("app".to_owned(), callee.name.clone())].into();
        let named = policies.named_sources(&callee.namespace, &labels);
        let open = |a: usize| self.open(a, b);
        let mut picks = Picks::new(CALLERS_PER_CALLEE);
        picks.take(self.named(&named), PER_SOURCE, open);
        picks.take(self.neighbours(b), PER_SOURCE, open);
        let callers_of_neighbours = self
            .neighbours(b)
            .take(2 * PER_SOURCE)
            .flat_map(|s| self.allowed_callers[s].iter().copied());
        picks.take(callers_of_neighbours, PER_SOURCE, open);
        picks.take(self.nearest(b), CALLERS_PER_CALLEE, open);
        picks.chosen
    }

    fn callees_for(&self, a: usize) -> Vec<usize> {
        if self.principals[a].is_none() {
            return Vec::new();
        }
        let open = |b: usize| self.open(a, b);
        let mut picks = Picks::new(CALLEES_PER_CALLER);
        picks.take(self.neighbours(a), PER_SOURCE, open);
        let two_hops = self.allowed_callees[a]
            .iter()
            .flat_map(|&x| self.allowed_callees[x].iter().copied());
        picks.take(two_hops, PER_SOURCE, open);
        picks.take(self.nearest(a), CALLEES_PER_CALLER, open);
        picks.chosen
    }

    /// The services the named patterns match. Namespace patterns other than an exact name are
    /// left to the nearest-first sources.
    fn named<'s>(&'s self, named: &'s NamedSources) -> impl Iterator<Item = usize> + 's {
        let principals = named
            .principals
            .iter()
            .flat_map(|p| self.principal_matches(p));
        let accounts = named.service_account_suffixes.iter().flat_map(|suffix| {
            let reversed: String = suffix.chars().rev().collect();
            run(&self.by_reversed, &reversed, true)
        });
        let namespaces = named
            .namespaces
            .iter()
            .flat_map(|ns| self.namespaces.get(ns.as_str()).into_iter().flatten());
        principals
            .map(|(_, i)| *i)
            .chain(accounts.map(|(_, i)| *i))
            .chain(namespaces.copied())
    }

    fn principal_matches(&self, pattern: &str) -> &[(String, usize)] {
        if let Some(prefix) = pattern.strip_suffix('*') {
            run(&self.by_principal, prefix, true)
        } else if let Some(suffix) = pattern.strip_prefix('*') {
            let reversed: String = suffix.chars().rev().collect();
            run(&self.by_reversed, &reversed, true)
        } else {
            run(&self.by_principal, pattern, false)
        }
    }
}

/// The run of `sorted` whose keys start with `key` (`prefix`) or equal it.
fn run<'s>(sorted: &'s [(String, usize)], key: &str, prefix: bool) -> &'s [(String, usize)] {
    let start = sorted.partition_point(|(k, _)| k.as_str() < key);
    let rest = &sorted[start..];
    let len = if prefix {
        rest.partition_point(|(k, _)| k.starts_with(key))
    } else {
        rest.partition_point(|(k, _)| k == key)
    };
    &rest[..len]
}

/// The services chosen for one service, in the order chosen.
struct Picks {
    chosen: Vec<usize>,
    limit: usize,
}

impl Picks {
    fn new(limit: usize) -> Picks {
        Picks {
            chosen: Vec::with_capacity(limit),
            limit,
        }
    }

    /// Takes up to `quota` more candidates that `open` accepts and are not chosen yet. Only
    /// candidates already chosen or not open are skipped, so a scan stops after at most
    /// quota + (intents of this service) + limit candidates.
    fn take(
        &mut self,
        candidates: impl IntoIterator<Item = usize>,
        quota: usize,
        open: impl Fn(usize) -> bool,
    ) {
        let stop = (self.chosen.len() + quota).min(self.limit);
        for c in candidates {
            if self.chosen.len() >= stop {
                break;
            }
            if open(c) && !self.chosen.contains(&c) {
                self.chosen.push(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::policy::istio::MeshPolicies;

    fn synthetic(n: usize, k: usize) -> Profile {
        let text = crate::bench::synthetic::profile_yaml(n, k);
        crate::profile::parse(Path::new("synthetic.yaml"), &text).unwrap()
    }

    fn plan_of(profile: &Profile, sampling: Sampling) -> Plan {
        let identities: Vec<_> = profile
            .services
            .iter()
            .map(|s| profile.lab_identity(s))
            .collect();
        let none = MeshPolicies::default();
        plan(profile, &identities, &PolicyIndex::new(&none), sampling)
    }

    #[test]
    fn a_small_mesh_is_judged_exhaustively() {
        let profile = synthetic(6, 2);
        let sampled = plan_of(&profile, Sampling::DefaultDeny);
        let every = plan_of(&profile, Sampling::Exhaustive);
        assert_eq!(sampled.pairs, every.pairs);
        assert_eq!(sampled.pairs.len(), 6 * 5);
        assert_eq!(
            sampled.default_deny_judged as u64,
            sampled.default_deny_total
        );
    }

    #[test]
    fn the_sample_is_bounded_per_service_and_deterministic() {
        let profile = synthetic(400, 10);
        let plan = plan_of(&profile, Sampling::DefaultDeny);
        assert_eq!(plan.intended, 400 * 10);
        assert!(
            plan.default_deny_judged <= 400 * (CALLERS_PER_CALLEE + CALLEES_PER_CALLER),
            "{}",
            plan.default_deny_judged
        );
        assert_eq!(plan.default_deny_total, 400 * 399 - 4000);
        assert_eq!(plan, plan_of(&profile, Sampling::DefaultDeny));
    }

    #[test]
    fn every_callee_and_every_caller_gets_default_deny_samples() {
        let profile = synthetic(300, 10);
        let plan = plan_of(&profile, Sampling::DefaultDeny);
        let intended: HashSet<(usize, usize)> = profile
            .intents
            .iter()
            .map(|i| {
                let at = |name: &str| profile.services.iter().position(|s| s.name == name);
                (at(&i.from).unwrap(), at(&i.to).unwrap())
            })
            .collect();
        let sampled: Vec<&(usize, usize)> = plan
            .pairs
            .iter()
            .filter(|p| !intended.contains(p))
            .collect();
        for s in 0..300 {
            let callers = sampled.iter().filter(|(_, b)| *b == s).count();
            let callees = sampled.iter().filter(|(a, _)| *a == s).count();
            assert!(callers >= CALLERS_PER_CALLEE, "svc {s}: {callers} callers");
            assert!(callees >= CALLEES_PER_CALLER, "svc {s}: {callees} callees");
        }
    }

    #[test]
    fn same_namespace_services_come_first() {
        let profile = synthetic(300, 10);
        let plan = plan_of(&profile, Sampling::DefaultDeny);
        // svc-00105 (team-0010) has intents from 95..104 only: its namespace siblings after it
        // (106..109) have none, so the nearest of them are sampled callers.
        for sibling in [106, 107] {
            assert!(plan.pairs.contains(&(sibling, 105)), "{sibling} → 105");
        }
    }
}
