//! CPU time of the whole process (all threads, finished ones included), for measurements on
//! a shared machine where wall-clock time mostly measures the scheduler.

#![allow(dead_code)]

use std::time::Duration;

/// User plus system CPU time of this process so far, from `/proc/self/stat` (Linux only;
/// `None` elsewhere). The resolution is one clock tick (10 ms), so measure long runs.
pub(crate) fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the file, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux ABI.
    Some(Duration::from_millis(ticks * 10))
}
