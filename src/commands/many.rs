//! Running one action on many containers (`start --all`, `start --auto`,
//! `stop --all`): a few at a time, every one tried, every failure reported.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use nixos_container::error::{Error, Result};

/// How many containers are acted on at once: enough to overlap the waits
/// for guests, few enough not to swamp a small host.
const PARALLEL: usize = 4;

/// Applies `act` to every name, `PARALLEL` at a time. Fails with
/// `SomeFailed` (listing each failure, in name order) if any did.
pub fn for_each(names: &[String], action: &'static str, act: impl Fn(&str) -> Result<()> + Sync) -> Result<()> {
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..PARALLEL.min(names.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(name) = names.get(i) else { break };
                    if let Err(e) = act(name) {
                        failures.lock().unwrap_or_else(|p| p.into_inner()).push((i, e));
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    if failures.is_empty() {
        return Ok(());
    }
    failures.sort_by_key(|(i, _)| *i);
    Err(Error::SomeFailed { failures: failures.into_iter().map(|(_, e)| e).collect(), total: names.len(), action })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_tried_and_every_failure_kept_in_order() {
        let names: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
        let tried = Mutex::new(Vec::new());
        let err = for_each(&names, "start", |n| {
            tried.lock().unwrap().push(n.to_string());
            if n == "c3" || n == "c7" { Err(Error::NotRunning(n.into())) } else { Ok(()) }
        })
        .unwrap_err();
        let mut tried = tried.into_inner().unwrap();
        tried.sort();
        let mut expected = names.clone();
        expected.sort();
        assert_eq!(tried, expected);
        match err {
            Error::SomeFailed { failures, total, action } => {
                assert_eq!((total, action), (10, "start"));
                let msgs: Vec<String> = failures.iter().map(|e| e.to_string()).collect();
                assert_eq!(msgs.len(), 2);
                assert!(msgs[0].contains("'c3'") && msgs[1].contains("'c7'"), "{msgs:?}");
            }
            other => panic!("{other}"),
        }
        assert_eq!(
            Error::SomeFailed { failures: vec![], total: 1, action: "stop" }.to_string(),
            "0 of 1 containers failed to stop"
        );
    }

    #[test]
    fn nothing_to_do_is_success() {
        assert!(for_each(&[], "stop", |_| Err(Error::other("never"))).is_ok());
    }
}
