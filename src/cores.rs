//! Independent units of work spread over every core: each thread takes the next unit until none is
//! left, so a few large units and many small ones balance themselves. Results come back in unit
//! order, exactly as if the units had been done one by one.
//!
//! Each thread has its own context, made on the thread by `context`, for what cannot cross
//! threads (Gatekeeper's Rego engines).

use std::sync::atomic::{AtomicUsize, Ordering};

/// `work(context, unit)` for every unit; the results in unit order.
pub fn in_order<U, R, C>(
    units: &[U],
    context: impl Fn() -> C + Sync,
    work: impl Fn(&mut C, &U) -> R + Sync,
) -> Vec<R>
where
    U: Sync,
    R: Send,
{
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = cores.min(units.len()).max(1);
    let next = AtomicUsize::new(0);
    let run = || {
        let mut own = context();
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(unit) = units.get(i) else {
                return done;
            };
            done.push((i, work(&mut own, unit)));
        }
    };
    let mut done: Vec<(usize, R)> = std::thread::scope(|s| {
        let helpers: Vec<_> = (1..threads).map(|_| s.spawn(run)).collect();
        let mut done = run();
        for helper in helpers {
            // A panic in a unit is re-raised here, as it would be without the thread.
            done.extend(
                helper
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            );
        }
        done
    });
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_unit_order_whatever_thread_did_them() {
        let units: Vec<u64> = (0..200).collect();
        let squares = in_order(&units, || (), |_, &u| u * u);
        assert_eq!(squares, units.iter().map(|u| u * u).collect::<Vec<_>>());
    }

    #[test]
    fn each_thread_keeps_its_own_context() {
        let units = vec![(); 500];
        // Each context counts the units its own thread did, in the order it took them.
        let seen = in_order(
            &units,
            || (std::thread::current().id(), 0usize),
            |(thread, count), _| {
                *count += 1;
                (*thread, *count)
            },
        );
        let mut per_thread: std::collections::HashMap<_, Vec<usize>> = Default::default();
        for (thread, count) in seen {
            per_thread.entry(thread).or_default().push(count);
        }
        for counts in per_thread.values() {
            assert_eq!(*counts, (1..=counts.len()).collect::<Vec<_>>());
        }
        assert_eq!(per_thread.values().map(Vec::len).sum::<usize>(), 500);
    }

    #[test]
    fn no_units_no_results() {
        let none: Vec<u8> = Vec::new();
        assert!(in_order(&none, || (), |_, u| *u).is_empty());
    }
}
