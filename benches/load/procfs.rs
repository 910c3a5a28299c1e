//! What the kernel knows about the processes under test: CPU time (`/proc/<pid>/stat` utime +
//! stime), peak resident memory (`VmHWM` in `/proc/<pid>/status`, reset through
//! `/proc/<pid>/clear_refs`), children (nginx's workers), and the machine's busy time
//! (`/proc/stat`), so CPU that none of the measured processes used is visible too; and
//! [`Perf`], a CPU profile of some of them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

/// CPU ticks (utime + stime) a process has used so far.
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("pid {pid} is gone"))?;
    let (utime, stime, _, _) = stat_times(&stat)?;
    Ok(utime + stime)
}

/// CPU ticks this process and its waited-for children (rclone) have used so far.
pub fn self_and_children_ticks() -> Result<(u64, u64)> {
    let stat = fs::read_to_string("/proc/self/stat")?;
    let (utime, stime, cutime, cstime) = stat_times(&stat)?;
    Ok((utime + stime, cutime + cstime))
}

/// utime, stime, cutime, cstime: fields 14–17, counted after the `(comm)` field, which may
/// itself contain spaces.
fn stat_times(stat: &str) -> Result<(u64, u64, u64, u64)> {
    let after = stat.rsplit_once(')').context("bad /proc stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the comm: state is field 3, so field n is at index n - 3.
    let field = |n: usize| -> Result<u64> { Ok(fields.get(n - 3).context("short /proc stat")?.parse()?) };
    Ok((field(14)?, field(15)?, field(16)?, field(17)?))
}

/// Busy ticks of the whole machine (all CPUs): everything but idle and iowait.
pub fn machine_busy_ticks() -> Result<u64> {
    let stat = fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    if v.len() < 8 {
        bail!("short cpu line in /proc/stat");
    }
    // user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    Ok(v[0] + v[1] + v[2] + v[5] + v[6] + v[7])
}

/// Peak resident set size in KiB since the last [`reset_peak_rss`].
pub fn peak_rss_kib(pid: u32) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("pid {pid} is gone"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM in /proc status")?;
    Ok(line.split_whitespace().nth(1).context("bad VmHWM line")?.parse()?)
}

/// Resets the peak RSS to the current RSS (`echo 5 > clear_refs`, Linux ≥ 4.0).
pub fn reset_peak_rss(pid: u32) -> Result<()> {
    fs::write(format!("/proc/{pid}/clear_refs"), "5").with_context(|| format!("cannot reset peak RSS of pid {pid}"))
}

/// A process and its direct children (nginx: the master and its workers).
pub fn with_children(pid: u32) -> Result<Vec<u32>> {
    let mut pids = vec![pid];
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).with_context(|| format!("pid {pid} is gone"))?;
    for task in tasks {
        let children = fs::read_to_string(task?.path().join("children")).unwrap_or_default();
        for child in children.split_whitespace() {
            pids.push(child.parse()?);
        }
    }
    Ok(pids)
}

/// A running `perf record` of some processes (call graphs, cpu-clock: no hardware counters
/// needed).
pub struct Perf {
    child: Child,
    out: PathBuf,
}

/// Samples per second per CPU.
const PERF_FREQUENCY: &str = "999";

impl Perf {
    /// Starts recording `pids` into `dir/<name>-<phase>.perf.data`; `None` when there is nothing
    /// to record.
    pub fn start(pids: &[u32], dir: &Path, name: &str, phase: &str) -> Result<Option<Self>> {
        if pids.is_empty() {
            return Ok(None);
        }
        fs::create_dir_all(dir)?;
        let out = dir.join(format!("{}-{phase}.perf.data", name.replace('+', "-")));
        let list = pids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let child = Command::new("perf")
            .args([
                "record",
                "-e",
                "cpu-clock",
                "-F",
                PERF_FREQUENCY,
                "-g",
                "-p",
                &list,
                "-o",
            ])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run perf (apt-get install linux-perf)")?;
        // perf attaches within milliseconds; its first samples are not worth a wait.
        Ok(Some(Self { child, out }))
    }

    /// Stops recording (SIGINT, so perf writes its file) and waits for it.
    pub fn stop(mut self) -> Result<PathBuf> {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("cannot stop perf");
        }
        self.child.wait()?;
        eprintln!("load: profile written to {}", self.out.display());
        Ok(self.out)
    }
}
