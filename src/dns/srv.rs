//! RFC 2782 target selection: priority, then weighted random order within a priority.

use super::name::{self, DomainName};
use super::{MAX_RECORDS, Srv};

/// An SRV record ready to be contacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SrvTarget {
    pub target: DomainName,
    pub port: u16,
    pub ttl: u32,
}

/// What one SRV answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SrvPlan {
    /// Contact these, in this order.
    Targets(Vec<SrvTarget>),
    /// The only answer is the target ".": the service is decidedly not available (RFC 2782).
    NotAvailable,
    /// No usable record (all malformed): as if there were none.
    Nothing,
}

/// Orders `records` as RFC 2782 says: lowest priority first; within a priority, repeatedly
/// pick a record with probability proportional to its weight (weight-0 records first in the
/// running sum, so they have a small chance when others weigh more, and keep their order when
/// all weigh 0). `random` supplies uniform u32s. At most [`MAX_RECORDS`] come out.
pub(crate) fn plan(records: &[Srv], random: &mut impl FnMut() -> u32) -> SrvPlan {
    let only_root = !records.is_empty() && records.iter().all(|r| name::is_root(&r.target));
    if only_root {
        return SrvPlan::NotAvailable;
    }
    let mut usable: Vec<(u16, u16, SrvTarget)> = records
        .iter()
        // "." among real targets means nothing; port 0 is nowhere to send to.
        .filter(|r| !name::is_root(&r.target) && r.port != 0)
        .filter_map(|r| {
            let target = DomainName::from_record(&r.target)?;
            let t = SrvTarget {
                target,
                port: r.port,
                ttl: r.ttl,
            };
            Some((r.priority, r.weight, t))
        })
        .collect();
    // Stable, and weight 0 before the others of its priority (RFC 2782's arrangement).
    usable.sort_by_key(|(priority, weight, _)| (*priority, *weight != 0));
    usable.truncate(MAX_RECORDS);
    if usable.is_empty() {
        return SrvPlan::Nothing;
    }
    let mut ordered = Vec::with_capacity(usable.len());
    let mut rest = usable.as_slice();
    while let Some((priority, ..)) = rest.first() {
        let same = rest.iter().take_while(|(p, ..)| p == priority).count();
        let (group, tail) = rest.split_at(same);
        weighted_order(group, random, &mut ordered);
        rest = tail;
    }
    SrvPlan::Targets(ordered)
}

/// RFC 2782's selection within one priority: sum the weights, draw a number in
/// `0..=sum`, take the first record whose running sum reaches it, remove it, repeat.
fn weighted_order(
    group: &[(u16, u16, SrvTarget)],
    random: &mut impl FnMut() -> u32,
    out: &mut Vec<SrvTarget>,
) {
    let mut left: Vec<&(u16, u16, SrvTarget)> = group.iter().collect();
    while !left.is_empty() {
        let sum: u64 = left.iter().map(|(_, w, _)| u64::from(*w)).sum();
        let draw = u64::from(random()) % (sum + 1);
        let mut running = 0u64;
        let pick = left
            .iter()
            .position(|(_, w, _)| {
                running += u64::from(*w);
                running >= draw
            })
            // Unreachable (the last running sum is `sum` >= draw); the last is a safe answer.
            .unwrap_or(left.len() - 1);
        out.push(left.remove(pick).2.clone());
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn srv(priority: u16, weight: u16, port: u16, target: &str) -> Srv {
        Srv {
            priority,
            weight,
            port,
            target: target.into(),
            ttl: 60,
        }
    }

    fn names(plan: SrvPlan) -> Vec<String> {
        match plan {
            SrvPlan::Targets(t) => t.into_iter().map(|t| t.target.display).collect(),
            other => panic!("expected targets, got {other:?}"),
        }
    }

    /// A deterministic `random`: 0, 1, 2, ... so that draws cover `0..=sum` evenly.
    fn counter() -> impl FnMut() -> u32 {
        let mut n = 0u32;
        move || {
            n = n.wrapping_add(1);
            n - 1
        }
    }

    #[test]
    fn lower_priority_always_comes_first() {
        let records = [
            srv(20, 100, 5060, "backup.test."),
            srv(10, 0, 5060, "main.test."),
            srv(30, 0, 5060, "last.test."),
        ];
        let mut random = counter();
        for _ in 0..50 {
            assert_eq!(
                names(plan(&records, &mut random)),
                ["main.test", "backup.test", "last.test"]
            );
        }
    }

    #[test]
    fn first_picks_follow_the_weights() {
        let records = [
            srv(10, 10, 5060, "light.test."),
            srv(10, 60, 5060, "heavy.test."),
            srv(10, 30, 5060, "middle.test."),
        ];
        let mut random = counter();
        let mut first: HashMap<String, u32> = HashMap::new();
        let draws = 101 * 100;
        for _ in 0..draws {
            let order = names(plan(&records, &mut random));
            assert_eq!(order.len(), 3);
            *first.entry(order[0].clone()).or_default() += 1;
        }
        // Each draw consumes 3 randoms, so first draws are 0, 3, 6, ... mod 101, which
        // cover 0..=100 evenly: a record is first in (weight + 0 or 1) / 101 of the draws.
        let share = |name: &str| f64::from(first[name]) / f64::from(draws);
        assert!((share("heavy.test") - 0.60).abs() < 0.02, "{first:?}");
        assert!((share("middle.test") - 0.30).abs() < 0.02, "{first:?}");
        assert!((share("light.test") - 0.10).abs() < 0.02, "{first:?}");
    }

    #[test]
    fn weight_zero_has_a_small_chance_and_all_zero_keeps_order() {
        let records = [srv(1, 0, 5060, "zero.test."), srv(1, 99, 5060, "big.test.")];
        let mut random = counter();
        let zero_first = (0..1000)
            .filter(|_| names(plan(&records, &mut random))[0] == "zero.test")
            .count();
        // The draw must be exactly 0 out of 0..=99: about 1 % of the time, not never.
        assert!((1..=30).contains(&zero_first), "{zero_first}");

        let records = [srv(1, 0, 5060, "a.test."), srv(1, 0, 5060, "b.test.")];
        let mut random = counter();
        for _ in 0..10 {
            assert_eq!(names(plan(&records, &mut random)), ["a.test", "b.test"]);
        }
    }

    #[test]
    fn a_lone_dot_means_not_available_and_a_dot_among_others_is_ignored() {
        let mut random = counter();
        assert_eq!(
            plan(&[srv(0, 0, 0, ".")], &mut random),
            SrvPlan::NotAvailable
        );
        assert_eq!(
            names(plan(
                &[srv(0, 0, 0, "."), srv(5, 0, 5060, "real.test.")],
                &mut random
            )),
            ["real.test"]
        );
        assert_eq!(plan(&[], &mut random), SrvPlan::Nothing);
        assert_eq!(
            plan(
                &[srv(0, 0, 0, "p0.test."), srv(0, 0, 1, "bad name.")],
                &mut random
            ),
            SrvPlan::Nothing
        );
    }

    #[test]
    fn hostile_answers_are_bounded_and_never_panic() {
        let records: Vec<Srv> = (0..3000u16)
            .map(|i| srv(u16::MAX - i, u16::MAX, u16::MAX, &format!("h{i}.test.")))
            .collect();
        let mut random = || u32::MAX;
        let got = names(plan(&records, &mut random));
        assert_eq!(got.len(), MAX_RECORDS);
        assert_eq!(got[0], "h2999.test");
    }
}
