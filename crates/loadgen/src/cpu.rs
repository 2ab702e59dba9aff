//! CPU time of a process from `/proc/PID/stat` (user + system, all threads).

use std::time::Duration;

/// Parses `utime + stime` (in clock ticks) from the text of `/proc/PID/stat`. The command name
/// (field 2) is in parentheses and may itself contain spaces and parentheses, so fields are
/// counted from the last `)`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    // After the name: state(3) ppid(4) ... utime(14) stime(15) → indices 11 and 12 here.
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 if unknown).
pub fn ticks_per_second() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as u64,
        _ => 100,
    }
}

/// CPU time used so far by process `pid`, `None` if it is gone or unreadable.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = parse_stat_ticks(&text)?;
    Some(Duration::from_micros(
        ticks * 1_000_000 / ticks_per_second(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_line_with_odd_command_name() {
        let line = "1234 (bi bridge) (x)) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_stat_ticks(line), Some(325));
        assert_eq!(parse_stat_ticks("garbage"), None);
        assert_eq!(parse_stat_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    fn reads_own_process() {
        assert!(cpu_time(std::process::id()).is_some());
        assert!(ticks_per_second() > 0);
    }
}
