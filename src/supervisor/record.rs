//! The supervisor's record in its lock file (`RUN/NAME/supervisor.lock`):
//! `PID PHASE`, e.g. `1234 running`. The flock on the file says that the
//! supervisor lives; the record says what it does and whom to signal.

use std::fs::File;

use nix::unistd::Pid;

use crate::error::{IoContext, Result};
use crate::paths::ContainerPaths;
use crate::supervision::Phase;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// None until the supervisor has written its own: `start` takes the
    /// lock (and writes a record without PID) before the supervisor runs.
    pub pid: Option<Pid>,
    pub phase: Phase,
}

fn phase_word(phase: Phase) -> &'static str {
    match phase {
        Phase::Starting => "starting",
        Phase::Running => "running",
        Phase::Stopping => "stopping",
    }
}

impl Record {
    /// The file's content. A record without PID says `0`, as older
    /// supervisors wrote it.
    pub fn render(&self) -> String {
        format!("{} {}\n", self.pid.map_or(0, Pid::as_raw), phase_word(self.phase))
    }

    pub fn parse(text: &str) -> Option<Record> {
        let (pid, phase) = text.trim().split_once(' ')?;
        let phase = match phase {
            "starting" => Phase::Starting,
            "running" => Phase::Running,
            "stopping" => Phase::Stopping,
            _ => return None,
        };
        let pid: i32 = pid.parse().ok()?;
        if pid < 0 {
            return None;
        }
        Some(Record { pid: (pid > 0).then(|| Pid::from_raw(pid)), phase })
    }

    /// Replaces the file's content (the lock stays held).
    pub fn write(&self, file: &File) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let text = self.render();
        file.set_len(0)
            .and_then(|()| file.write_all_at(text.as_bytes(), 0))
            .context(|| "recording the supervisor's state".into())
    }

    /// The record of a live supervisor, if one holds the lock. One just
    /// launched that has not written it yet (or a damaged file) counts as
    /// starting, PID unknown.
    pub fn of_live_supervisor(paths: &ContainerPaths) -> Option<Record> {
        let path = paths.supervisor_lock();
        if !crate::lock::is_held(&path) {
            return None;
        }
        Some(
            std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| Record::parse(&t))
                .unwrap_or(Record { pid: None, phase: Phase::Starting }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_in_the_pid_phase_format() {
        for phase in [Phase::Starting, Phase::Running, Phase::Stopping] {
            for pid in [None, Some(Pid::from_raw(4711))] {
                let r = Record { pid, phase };
                assert_eq!(Record::parse(&r.render()), Some(r));
            }
        }
        let r = Record { pid: Some(Pid::from_raw(4711)), phase: Phase::Running };
        assert_eq!(r.render(), "4711 running\n");
        assert_eq!(Record { pid: None, phase: Phase::Starting }.render(), "0 starting\n");
    }

    #[test]
    fn a_pid_of_zero_is_unknown_and_junk_is_no_record() {
        assert_eq!(Record::parse("0 starting"), Some(Record { pid: None, phase: Phase::Starting }));
        for junk in ["", "\n", "12", "12 sleeping", "x running", "-5 running", "12  running", "running 12"] {
            assert_eq!(Record::parse(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn only_a_held_lock_has_a_record() {
        let base = tempfile::tempdir().unwrap();
        let paths = crate::paths::Paths::under(base.path()).container("web");
        assert_eq!(Record::of_live_supervisor(&paths), None, "no file");
        std::fs::create_dir_all(&paths.run).unwrap();
        std::fs::write(paths.supervisor_lock(), "99 running\n").unwrap();
        assert_eq!(Record::of_live_supervisor(&paths), None, "a record nobody holds is stale");
        let lock = crate::lock::Lock::exclusive(&paths.supervisor_lock(), "test").unwrap();
        assert_eq!(
            Record::of_live_supervisor(&paths),
            Some(Record { pid: Some(Pid::from_raw(99)), phase: Phase::Running })
        );
        std::fs::write(paths.supervisor_lock(), "").unwrap();
        assert_eq!(Record::of_live_supervisor(&paths), Some(Record { pid: None, phase: Phase::Starting }));
        let r = Record { pid: Some(Pid::from_raw(7)), phase: Phase::Stopping };
        r.write(lock.file()).unwrap();
        assert_eq!(Record::of_live_supervisor(&paths), Some(r));
    }
}
