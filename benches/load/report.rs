//! Records and the printed report: one raw line per measurement as it happens, then Markdown
//! tables of each target's best round with the ratios, and the goals of issue #4.

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::Result;

use crate::procfs;
use crate::rclone::{Setup, Transfer};
use crate::workload::{Phase, Sizes, Stats, Target, size};

const GIB: f64 = (1u64 << 30) as f64;
/// Throughput through the proxy relative to the bare TLS hop, for large objects.
const GOAL_VS_TLS_HOP: f64 = 0.9;
/// Proxy CPU seconds per GiB moved, large objects.
const GOAL_CPU_PER_GIB: f64 = 0.5;
/// 4 KiB operations per second through the proxy relative to direct.
const GOAL_SMALL_VS_DIRECT: f64 = 0.8;
/// p99 latency the proxy may add to 4 KiB operations, ms.
const GOAL_SMALL_P99_ADDED_MS: f64 = 2.0;
/// Peak RSS of the proxy with 8 concurrent large transfers, MiB.
const GOAL_PEAK_RSS_MIB: f64 = 128.0;
/// Throughput relative to rclone crypt.
const GOAL_VS_RCLONE_CRYPT: f64 = 1.5;

/// What sits between the client and the store.
#[derive(Debug)]
pub enum Hop {
    None,
    /// nginx master pid: it and its workers are measured.
    Nginx(Option<u32>),
    /// escrow-proxy pid.
    Escrow(Option<u32>),
}

impl Hop {
    pub fn pids(&self) -> Result<Vec<u32>> {
        match self {
            Hop::Nginx(Some(master)) => procfs::with_children(*master),
            Hop::Escrow(Some(pid)) => Ok(vec![*pid]),
            _ => Ok(Vec::new()),
        }
    }
}

/// A target and how the report names it.
pub struct TargetInfo {
    /// `a`, `b`, `c`, `d`.
    pub key: &'static str,
    pub name: &'static str,
    pub title: &'static str,
    pub hop: Hop,
    pub target: Arc<Target>,
}

/// One phase against one target.
#[derive(Debug, Clone)]
pub struct Record {
    pub round: usize,
    pub target: usize,
    pub phase: Phase,
    pub ops: usize,
    pub bytes: u64,
    pub secs: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// CPU seconds of the hop (nginx master + workers, or the proxy).
    pub hop_cpu: Option<f64>,
    /// CPU seconds of the s3s-fs processes.
    pub store_cpu: f64,
    /// CPU seconds of this load generator.
    pub client_cpu: f64,
    /// Busy CPU seconds of the machine not used by any process above (other tenants, kernel).
    pub other_cpu: f64,
    /// Peak RSS of the hop during the phase, MiB.
    pub hop_rss_mib: Option<f64>,
}

impl Record {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        round: usize,
        target: usize,
        phase: Phase,
        stats: &Stats,
        hop_cpu: Option<f64>,
        store_cpu: f64,
        client_cpu: f64,
        other_cpu: f64,
        hop_rss_mib: Option<f64>,
    ) -> Self {
        let mut lat: Vec<f64> = stats.latencies.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        lat.sort_by(f64::total_cmp);
        Self {
            round,
            target,
            phase,
            ops: stats.ops,
            bytes: stats.bytes,
            secs: stats.elapsed.as_secs_f64(),
            p50_ms: percentile(&lat, 0.50),
            p99_ms: percentile(&lat, 0.99),
            hop_cpu,
            store_cpu,
            client_cpu,
            other_cpu,
            hop_rss_mib,
        }
    }

    pub fn mbps(&self) -> f64 {
        self.bytes as f64 / self.secs / 1e6
    }

    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.secs
    }

    /// What "better" means for this phase: ops/s for small objects, MB/s otherwise.
    fn score(&self) -> f64 {
        if self.phase.is_small() {
            self.ops_per_sec()
        } else {
            self.mbps()
        }
    }

    fn throughput(&self) -> String {
        if self.phase.is_small() {
            format!("{:.0} ops/s", self.ops_per_sec())
        } else {
            format!("{:.0} MB/s", self.mbps())
        }
    }

    /// CPU seconds per GiB moved (bulk phases) or microseconds per operation (small objects).
    fn cost(&self, cpu: f64) -> String {
        if self.phase.is_small() {
            format!("{:.0} µs/op", cpu / self.ops as f64 * 1e6)
        } else {
            format!("{:.2} s/GiB", cpu / (self.bytes as f64 / GIB))
        }
    }

    fn cpu_per_gib(&self) -> Option<f64> {
        self.hop_cpu.map(|c| c / (self.bytes as f64 / GIB))
    }

    pub fn raw_header() -> String {
        "round | target | workload | ops | MB | s | MB/s | ops/s | p50 ms | p99 ms | hop CPU | store CPU | client CPU | unattributed CPU | hop peak RSS".into()
    }

    pub fn raw_line(&self, infos: &[TargetInfo], sizes: &Sizes) -> String {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "–".into());
        format!(
            "{} | ({}) {} | {} | {} | {:.0} | {:.2} | {:.1} | {:.0} | {:.2} | {:.2} | {} | {} | {} | {} | {}",
            self.round + 1,
            infos[self.target].key,
            infos[self.target].name,
            self.phase.label(sizes),
            self.ops,
            self.bytes as f64 / 1e6,
            self.secs,
            self.mbps(),
            self.ops_per_sec(),
            self.p50_ms,
            self.p99_ms,
            opt(self.hop_cpu.map(|c| self.cost(c))),
            self.cost(self.store_cpu),
            self.cost(self.client_cpu),
            self.cost(self.other_cpu),
            opt(self.hop_rss_mib.map(|m| format!("{m:.0} MiB"))),
        )
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One rclone transfer.
#[derive(Debug)]
pub struct RcloneRecord {
    pub round: usize,
    pub setup: Setup,
    pub upload: bool,
    pub transfer: Transfer,
}

impl RcloneRecord {
    fn mbps(&self) -> f64 {
        self.transfer.bytes as f64 / self.transfer.secs / 1e6
    }

    pub fn raw_line(&self, files: usize, sizes: &Sizes) -> String {
        let gib = self.transfer.bytes as f64 / GIB;
        format!(
            "{} | {} | rclone {} {files} x {} | {:.2} s | {:.1} MB/s | proxy CPU {} | rclone CPU {:.2} s/GiB",
            self.round + 1,
            self.setup.label(),
            if self.upload { "upload" } else { "download" },
            size(sizes.large),
            self.transfer.secs,
            self.mbps(),
            self.transfer
                .hop_cpu
                .map_or("–".into(), |c| format!("{:.2} s/GiB", c / gib)),
            self.transfer.client_cpu / gib,
        )
    }
}

/// The best round of `target` in `phase` (highest throughput).
fn best(records: &[Record], target: usize, phase: Phase) -> Option<&Record> {
    records
        .iter()
        .filter(|r| r.target == target && r.phase == phase)
        .max_by(|a, b| a.score().total_cmp(&b.score()))
}

fn ratio(num: Option<&Record>, den: Option<&Record>) -> Option<f64> {
    Some(num?.score() / den?.score())
}

fn cell<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or_else(|| "–".into(), f)
}

/// The tables, in Markdown.
pub fn render(
    infos: &[TargetInfo],
    records: &[Record],
    rclone: &[RcloneRecord],
    sizes: &Sizes,
    rounds: usize,
    rclone_files: usize,
) -> String {
    let idx = |key: &str| infos.iter().position(|i| i.key == key);
    let (a, b, c, d) = (idx("a"), idx("b"), idx("c"), idx("d"));
    let pick = |t: Option<usize>, p: Phase| t.and_then(|t| best(records, t, p));
    let phases: Vec<Phase> = Phase::ALL
        .into_iter()
        .filter(|p| records.iter().any(|r| r.phase == *p))
        .collect();
    let mut out = String::new();
    let w = &mut out;

    let _ = writeln!(
        w,
        "\n## Results (each target's best of {rounds} round(s); MB = 10^6 bytes)\n"
    );
    for i in infos {
        let _ = writeln!(w, "- ({}) {}: {}", i.key, i.name, i.title);
    }

    let _ = writeln!(w, "\n### Throughput\n");
    let _ = writeln!(
        w,
        "| workload | (a) direct | (b) nginx TLS | (c) escrow | (d) escrow+mirror | (c)/(a) | (c)/(b) | (d)/(c) |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|");
    for &phase in &phases {
        let (ra, rb, rc, rd) = (pick(a, phase), pick(b, phase), pick(c, phase), pick(d, phase));
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            phase.label(sizes),
            cell(ra, Record::throughput),
            cell(rb, Record::throughput),
            cell(rc, Record::throughput),
            cell(rd, Record::throughput),
            cell(ratio(rc, ra), |r| format!("{r:.2}")),
            cell(ratio(rc, rb), |r| format!("{r:.2}")),
            cell(ratio(rd, rc), |r| format!("{r:.2}")),
        );
    }

    let _ = writeln!(w, "\n### Latency per request, p50 / p99 (ms)\n");
    let _ = writeln!(
        w,
        "| workload | (a) direct | (b) nginx TLS | (c) escrow | (d) escrow+mirror | p99 added by (c) vs (a) |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|");
    for &phase in &phases {
        let lat = |r: Option<&Record>| cell(r, |r| format!("{:.1} / {:.1}", r.p50_ms, r.p99_ms));
        let (ra, rc) = (pick(a, phase), pick(c, phase));
        let added = match (ra, rc) {
            (Some(ra), Some(rc)) => format!("{:+.1}", rc.p99_ms - ra.p99_ms),
            _ => "–".into(),
        };
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {added} |",
            phase.label(sizes),
            lat(ra),
            lat(pick(b, phase)),
            lat(rc),
            lat(pick(d, phase)),
        );
    }

    let _ = writeln!(
        w,
        "\n### Cost of the hop: CPU (s per GiB moved, or µs per 4 KiB op) and peak RSS\n"
    );
    let _ = writeln!(
        w,
        "| workload | (b) nginx CPU | (c) escrow CPU | (d) escrow+mirror CPU | (b) nginx RSS | (c) escrow RSS | (d) escrow+mirror RSS |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|");
    for &phase in &phases {
        let cpu = |r: Option<&Record>| cell(r.and_then(|r| r.hop_cpu.map(|c| r.cost(c))), |s| s);
        let rss = |r: Option<&Record>| cell(r.and_then(|r| r.hop_rss_mib), |m| format!("{m:.0} MiB"));
        let (rb, rc, rd) = (pick(b, phase), pick(c, phase), pick(d, phase));
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} |",
            phase.label(sizes),
            cpu(rb),
            cpu(rc),
            cpu(rd),
            rss(rb),
            rss(rc),
            rss(rd)
        );
    }

    let _ = writeln!(
        w,
        "\n### Where the CPU went in those rounds (client = this load generator; unattributed = other tenants and kernel)\n"
    );
    let _ = writeln!(w, "| workload | target | client | store(s) | hop | unattributed |");
    let _ = writeln!(w, "|---|---|---|---|---|---|");
    for &phase in &phases {
        for (t, info) in infos.iter().enumerate() {
            if let Some(r) = best(records, t, phase) {
                let _ = writeln!(
                    w,
                    "| {} | ({}) {} | {} | {} | {} | {} |",
                    phase.label(sizes),
                    info.key,
                    info.name,
                    r.cost(r.client_cpu),
                    r.cost(r.store_cpu),
                    cell(r.hop_cpu, |c| r.cost(c)),
                    r.cost(r.other_cpu)
                );
            }
        }
    }

    let rbest = |setup: Setup, upload: bool| {
        rclone
            .iter()
            .filter(|r| r.setup == setup && r.upload == upload)
            .max_by(|x, y| x.mbps().total_cmp(&y.mbps()))
    };
    let mut rclone_ratios = Vec::new();
    if !rclone.is_empty() {
        let _ = writeln!(
            w,
            "\n### rclone: {rclone_files} × {} files, 8 transfers at a time (best of {rounds})\n",
            size(sizes.large)
        );
        let _ = writeln!(
            w,
            "| direction | {} | {} | {} | escrow / crypt | proxy CPU (escrow path) | rclone CPU: crypt / escrow path |",
            Setup::Plain.label(),
            Setup::Crypt.label(),
            Setup::Escrow.label()
        );
        let _ = writeln!(w, "|---|---|---|---|---|---|---|");
        for upload in [true, false] {
            let (p, cr, e) = (
                rbest(Setup::Plain, upload),
                rbest(Setup::Crypt, upload),
                rbest(Setup::Escrow, upload),
            );
            let r = match (e, cr) {
                (Some(e), Some(cr)) => Some(e.mbps() / cr.mbps()),
                _ => None,
            };
            rclone_ratios.push((upload, r));
            let mb = |x: Option<&RcloneRecord>| cell(x, |x| format!("{:.0} MB/s", x.mbps()));
            let per_gib = |x: &RcloneRecord, cpu: f64| format!("{:.2} s/GiB", cpu / (x.transfer.bytes as f64 / GIB));
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} | {} / {} |",
                if upload { "upload" } else { "download" },
                mb(p),
                mb(cr),
                mb(e),
                cell(r, |r| format!("{r:.2}")),
                cell(e.and_then(|e| e.transfer.hop_cpu.map(|c| per_gib(e, c))), |s| s),
                cell(cr, |x| per_gib(x, x.transfer.client_cpu)),
                cell(e, |x| per_gib(x, x.transfer.client_cpu)),
            );
        }
    }

    // === goals ===
    let _ = writeln!(w, "\n### Goals (issue #4)\n");
    let _ = writeln!(w, "| goal | measured | met |");
    let _ = writeln!(w, "|---|---|---|");
    let mut goal = |name: String, measured: String, met: Option<bool>| {
        let verdict = match met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        let _ = writeln!(w, "| {name} | {measured} | {verdict} |");
    };
    let large: Vec<Phase> = phases.iter().copied().filter(|p| p.is_large()).collect();
    let vs_tls: Vec<(Phase, Option<f64>)> = large.iter().map(|&p| (p, ratio(pick(c, p), pick(b, p)))).collect();
    goal(
        format!("large objects through the proxy ≥ {GOAL_VS_TLS_HOP}× the bare TLS hop"),
        list(&vs_tls, sizes, |r| format!("{r:.2}×")),
        all(&vs_tls, |r| r >= GOAL_VS_TLS_HOP),
    );
    let cpu: Vec<(Phase, Option<f64>)> = large
        .iter()
        .map(|&p| (p, pick(c, p).and_then(Record::cpu_per_gib)))
        .collect();
    goal(
        format!("proxy ≤ {GOAL_CPU_PER_GIB} CPU-s per GiB moved (large objects)"),
        list(&cpu, sizes, |r| format!("{r:.2}")),
        all(&cpu, |r| r <= GOAL_CPU_PER_GIB),
    );
    let small: Vec<Phase> = phases.iter().copied().filter(|p| p.is_small()).collect();
    let vs_direct: Vec<(Phase, Option<f64>)> = small.iter().map(|&p| (p, ratio(pick(c, p), pick(a, p)))).collect();
    goal(
        format!("{} objects ≥ {GOAL_SMALL_VS_DIRECT}× direct ops/s", size(sizes.small)),
        list(&vs_direct, sizes, |r| format!("{r:.2}×")),
        all(&vs_direct, |r| r >= GOAL_SMALL_VS_DIRECT),
    );
    let added: Vec<(Phase, Option<f64>)> = small
        .iter()
        .map(|&p| {
            let v = match (pick(c, p), pick(a, p)) {
                (Some(rc), Some(ra)) => Some(rc.p99_ms - ra.p99_ms),
                _ => None,
            };
            (p, v)
        })
        .collect();
    goal(
        format!(
            "{} objects: p99 added ≤ {GOAL_SMALL_P99_ADDED_MS} ms",
            size(sizes.small)
        ),
        list(&added, sizes, |r| format!("{r:+.1} ms")),
        all(&added, |r| r <= GOAL_SMALL_P99_ADDED_MS),
    );
    let rss: Vec<(Phase, Option<f64>)> = [Phase::PutLarge8, Phase::GetLarge8]
        .into_iter()
        .map(|p| (p, pick(c, p).and_then(|r| r.hop_rss_mib)))
        .collect();
    goal(
        format!(
            "proxy peak RSS ≤ {GOAL_PEAK_RSS_MIB} MiB with 8 concurrent {} transfers",
            size(sizes.large)
        ),
        list(&rss, sizes, |m| format!("{m:.0} MiB")),
        all(&rss, |m| m <= GOAL_PEAK_RSS_MIB),
    );
    if !rclone_ratios.is_empty() {
        let measured = rclone_ratios
            .iter()
            .map(|(up, r)| {
                format!(
                    "{}: {}",
                    if *up { "upload" } else { "download" },
                    cell(*r, |r| format!("{r:.2}×"))
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let met = rclone_ratios
            .iter()
            .map(|(_, r)| r.map(|r| r >= GOAL_VS_RCLONE_CRYPT))
            .collect::<Option<Vec<bool>>>()
            .map(|v| v.into_iter().all(|m| m));
        goal(
            format!("≥ {GOAL_VS_RCLONE_CRYPT}× rclone crypt's throughput"),
            measured,
            met,
        );
    }
    out
}

fn list(values: &[(Phase, Option<f64>)], sizes: &Sizes, f: impl Fn(f64) -> String) -> String {
    values
        .iter()
        .map(|(p, v)| format!("{}: {}", p.label(sizes), cell(*v, &f)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn all(values: &[(Phase, Option<f64>)], ok: impl Fn(f64) -> bool) -> Option<bool> {
    if values.is_empty() {
        return None;
    }
    values
        .iter()
        .map(|(_, v)| v.map(&ok))
        .collect::<Option<Vec<bool>>>()
        .map(|v| v.into_iter().all(|m| m))
}
