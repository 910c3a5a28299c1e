//! The end-to-end load generator behind `bash benches/e2e.sh` (which starts the servers and
//! passes their endpoints and pids here; run alone, this does nothing).
//!
//! It drives up to four targets in the same run, interleaved phase by phase (and in reverse
//! order every other round, so slow drift on a shared machine hits every target alike):
//! (a) s3s-fs directly, (b) nginx as a bare TLS hop in front of it, (c) escrow-proxy over TLS in
//! front of it, (d) escrow-proxy with a mirror store. Requests are SigV4-presigned
//! ([`sigv4`]) and sent with reqwest over HTTP/1.1 (one connection per request in flight), trusting
//! the generated CA. For every phase and target it records throughput, latency percentiles, and
//! from `/proc` the CPU time and peak RSS of the hop (nginx's master and workers, or the proxy),
//! of the stores, of itself, and the machine's CPU time nobody measured here used (the other
//! tenant's builds, on a shared machine). Then it runs the rclone comparison ([`rclone`]) and
//! prints the tables ([`report`]).

mod procfs;
mod rclone;
mod report;
mod sigv4;
mod store;
mod workload;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Parser;
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

use crate::report::{RcloneRecord, Record, TargetInfo};
use crate::workload::{Ctx, Phase, Sizes, Target};

/// Seed of the random payload (any: the payload only has to be incompressible and known).
const DATA_SEED: u64 = 0x5eed_e5c0;
/// Environment variables holding the credentials every target accepts.
const ACCESS_KEY_ENV: &str = "BENCH_ACCESS_KEY";
const SECRET_KEY_ENV: &str = "BENCH_SECRET_KEY";
/// Files rclone moves per transfer.
const RCLONE_FILES: usize = 8;

#[derive(Parser, Debug)]
#[command(about = "End-to-end S3 load generator; run it through benches/e2e.sh")]
struct Args {
    /// (a) s3s-fs, plain HTTP.
    #[arg(long)]
    direct: Option<String>,
    /// (b) nginx TLS hop in front of the same s3s-fs.
    #[arg(long)]
    nginx: Option<String>,
    /// nginx master pid (its workers are found through /proc).
    #[arg(long)]
    nginx_pid: Option<u32>,
    /// (c) escrow-proxy (TLS) in front of the same s3s-fs.
    #[arg(long)]
    escrow: Option<String>,
    #[arg(long)]
    escrow_pid: Option<u32>,
    /// (d) escrow-proxy (TLS) with a mirror store.
    #[arg(long)]
    mirror: Option<String>,
    #[arg(long)]
    mirror_pid: Option<u32>,
    /// s3s-fs pids (primary, mirror), for their CPU time.
    #[arg(long = "store-pid")]
    store_pids: Vec<u32>,
    /// PEM CA certificate the TLS endpoints chain to.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Rounds of the whole interleaved matrix; the tables show each target's best round.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Smaller objects and shorter phases (a smoke run, not a measurement).
    #[arg(long)]
    quick: bool,
    /// rclone configuration with the remotes `plain:`, `crypt:` and `escrow:` (skip rclone without).
    #[arg(long)]
    rclone_config: Option<PathBuf>,
    /// Scratch directory (rclone's files).
    #[arg(long)]
    work: Option<PathBuf>,
    /// Kernel clock ticks per second (`getconf CLK_TCK`).
    #[arg(long, default_value_t = 100)]
    clk_tck: u64,
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// What the machine is, for the report's header.
    #[arg(long, default_value = "")]
    machine: String,
    /// Run only these phases (ids: put-large-1, get-large-1, put-large-8, get-large-8,
    /// put-small, get-small, put-huge, get-range); a GET phase needs its PUT phase.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Run only these targets (a, b, c, d).
    #[arg(long, value_delimiter = ',')]
    targets: Vec<String>,
    /// Skip the rclone comparison.
    #[arg(long)]
    no_rclone: bool,
    /// Record a CPU profile (`perf record -g`) of each hop (nginx, the proxies) during these
    /// phases in the first round, into --profile-dir. perf slows the phase it watches.
    #[arg(long, value_delimiter = ',')]
    profile: Vec<String>,
    #[arg(long, default_value = ".")]
    profile_dir: PathBuf,
    /// Serve an S3 store (s3s-fs with TCP_NODELAY, see `store.rs`) from this directory on
    /// --host:--port instead of generating load.
    #[arg(long)]
    serve_store: Option<PathBuf>,
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// How the report names the store.
    #[arg(long, default_value = "s3s-fs")]
    store_label: String,
    /// Print this many free 127.0.0.1 ports and exit (for the script that starts the servers).
    #[arg(long)]
    free_ports: Option<usize>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(n) = args.free_ports {
        // Hold every listener until all are bound, so the ports are distinct.
        let listeners: Vec<std::net::TcpListener> = (0..n)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
            .collect::<std::io::Result<_>>()?;
        let ports: Vec<String> = listeners
            .iter()
            .map(|l| l.local_addr().map(|a| a.port().to_string()))
            .collect::<std::io::Result<_>>()?;
        println!("{}", ports.join(" "));
        return Ok(());
    }
    if let Some(root) = args.serve_store {
        let (ak, sk) = credentials()?;
        return store::serve(root, (args.host, args.port).into(), ak, sk).await;
    }
    let mut infos = Vec::new();
    let hops = [
        (
            args.direct.clone(),
            report::Hop::None,
            "a",
            "direct",
            "s3s-fs directly (HTTP)",
        ),
        (
            args.nginx.clone(),
            report::Hop::Nginx(args.nginx_pid),
            "b",
            "nginx",
            "nginx TLS hop → s3s-fs",
        ),
        (
            args.escrow.clone(),
            report::Hop::Escrow(args.escrow_pid),
            "c",
            "escrow",
            "escrow-proxy (TLS) → s3s-fs",
        ),
        (
            args.mirror.clone(),
            report::Hop::Escrow(args.mirror_pid),
            "d",
            "escrow+mirror",
            "escrow-proxy (TLS) → s3s-fs ×2 (mirror)",
        ),
    ];
    for (endpoint, hop, key, name, title) in hops {
        if !args.targets.is_empty() && !args.targets.iter().any(|t| t == key) {
            continue;
        }
        if let Some(endpoint) = endpoint {
            infos.push(TargetInfo {
                key,
                name,
                title,
                hop,
                target: Arc::new(Target::new(endpoint, format!("b-{}", name.replace('+', "-")))),
            });
        }
    }
    if infos.is_empty() {
        eprintln!("load: no targets given; this benchmark is driven by `bash benches/e2e.sh`");
        return Ok(());
    }
    let (access_key, secret_key) = credentials()?;
    let phases: Vec<Phase> = if args.only.is_empty() {
        Phase::ALL.to_vec()
    } else {
        args.only
            .iter()
            .map(|id| Phase::from_id(id).with_context(|| format!("unknown phase `{id}`")))
            .collect::<Result<_>>()?
    };
    let profile: Vec<Phase> = args
        .profile
        .iter()
        .map(|id| Phase::from_id(id).with_context(|| format!("unknown phase `{id}`")))
        .collect::<Result<_>>()?;
    let sizes = if args.quick { Sizes::quick() } else { Sizes::full() };
    let clk = args.clk_tck as f64;

    let mut client = reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(64);
    if let Some(ca) = &args.ca {
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        client = client.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
    }
    let data = random_data(sizes.data_len() as usize);
    let ctx = Arc::new(Ctx {
        client: client.build()?,
        signer: sigv4::Signer::new(access_key, secret_key, args.region.clone()),
        data,
        sizes,
    });
    for info in &infos {
        ctx.create_bucket(&info.target).await?;
    }
    let rclone_config = args.rclone_config.as_ref().filter(|_| !args.no_rclone);
    let rclone = match (rclone_config, &args.work, &args.ca) {
        (Some(config), Some(work), Some(ca)) => {
            let direct = infos
                .iter()
                .find(|i| i.name == "direct")
                .context("rclone needs --direct")?;
            let escrow = infos
                .iter()
                .find(|i| i.name == "escrow")
                .context("rclone needs --escrow")?;
            for setup in rclone::Setup::ALL {
                let on = if setup == rclone::Setup::Escrow { escrow } else { direct };
                let target = Target::new(on.target.endpoint.clone(), setup.bucket().to_string());
                ctx.create_bucket(&target).await?;
            }
            let len = sizes.large as usize;
            Some(rclone::Rclone::new(
                config.clone(),
                ca.clone(),
                work,
                &ctx.data,
                RCLONE_FILES,
                len,
            )?)
        }
        (None, _, _) => None,
        _ => bail!("--rclone-config needs --work and --ca"),
    };

    println!("# escrow-proxy end-to-end benchmark");
    println!(
        "{}rounds: {}; {}; store: {}; client: reqwest HTTP/1.1, presigned SigV4",
        if args.machine.is_empty() {
            String::new()
        } else {
            format!("machine: {}\n", args.machine)
        },
        args.rounds,
        if args.quick {
            "QUICK (smoke) sizes"
        } else {
            "full sizes"
        },
        args.store_label
    );
    println!("\n## Raw measurements, in the order they ran\n");
    println!("{}", Record::raw_header());
    let mut records = Vec::new();
    let mut rclone_records = Vec::new();
    for round in 0..args.rounds {
        let mut order: Vec<usize> = (0..infos.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for &phase in &phases {
            if phase == Phase::PutHuge && round > 0 {
                continue;
            }
            for &t in &order {
                let perf = if round == 0 && profile.contains(&phase) {
                    procfs::Perf::start(&infos[t].hop.pids()?, &args.profile_dir, infos[t].name, phase.id())?
                } else {
                    None
                };
                let record = measure(&ctx, &infos[t], t, phase, round, &args.store_pids, clk).await;
                if let Some(perf) = perf {
                    perf.stop()?;
                }
                let record = record?;
                println!("{}", record.raw_line(&infos, &sizes));
                records.push(record);
            }
        }
        if let Some(rclone) = &rclone {
            let escrow_pid = infos.iter().find_map(|i| match (i.name, &i.hop) {
                ("escrow", report::Hop::Escrow(pid)) => *pid,
                _ => None,
            });
            let mut setups = rclone::Setup::ALL.to_vec();
            if round % 2 == 1 {
                setups.reverse();
            }
            for setup in setups {
                let hop = (setup == rclone::Setup::Escrow).then_some(escrow_pid).flatten();
                let (up, down) = tokio::task::block_in_place(|| rclone.round_trip(setup, hop, clk))?;
                for (upload, t) in [(true, up), (false, down)] {
                    let r = RcloneRecord {
                        round,
                        setup,
                        upload,
                        transfer: t,
                    };
                    println!("{}", r.raw_line(RCLONE_FILES, &sizes));
                    rclone_records.push(r);
                }
            }
        }
    }
    print!(
        "{}",
        report::render(&infos, &records, &rclone_records, &sizes, args.rounds, RCLONE_FILES)
    );
    Ok(())
}

/// Runs one phase against one target and reads /proc around it.
async fn measure(
    ctx: &Arc<Ctx>,
    info: &TargetInfo,
    index: usize,
    phase: Phase,
    round: usize,
    store_pids: &[u32],
    clk: f64,
) -> Result<Record> {
    workload::warm_up(ctx, &info.target, phase).await?;
    let hop_pids = info.hop.pids()?;
    for &pid in &hop_pids {
        procfs::reset_peak_rss(pid)?;
    }
    let ticks = |pids: &[u32]| -> Result<u64> { pids.iter().map(|&p| procfs::cpu_ticks(p)).sum() };
    let (hop0, store0, (self0, _), busy0) = (
        ticks(&hop_pids)?,
        ticks(store_pids)?,
        procfs::self_and_children_ticks()?,
        procfs::machine_busy_ticks()?,
    );
    let stats = workload::run(ctx, &info.target, phase).await?;
    let (hop1, store1, (self1, _), busy1) = (
        ticks(&hop_pids)?,
        ticks(store_pids)?,
        procfs::self_and_children_ticks()?,
        procfs::machine_busy_ticks()?,
    );
    let rss_kib: u64 = hop_pids.iter().map(|&p| procfs::peak_rss_kib(p)).sum::<Result<u64>>()?;
    let (hop, store, client) = (hop1 - hop0, store1 - store0, self1 - self0);
    let other = (busy1 - busy0).saturating_sub(hop + store + client);
    Ok(Record::new(
        round,
        index,
        phase,
        &stats,
        (!hop_pids.is_empty()).then_some(hop as f64 / clk),
        store as f64 / clk,
        client as f64 / clk,
        other as f64 / clk,
        (!hop_pids.is_empty()).then_some(rss_kib as f64 / 1024.0),
    ))
}

/// The credentials every target and store accepts, from the environment (never the command line).
fn credentials() -> Result<(String, String)> {
    let access_key = std::env::var(ACCESS_KEY_ENV).with_context(|| format!("{ACCESS_KEY_ENV} not set"))?;
    let secret_key = std::env::var(SECRET_KEY_ENV).with_context(|| format!("{SECRET_KEY_ENV} not set"))?;
    Ok((access_key, secret_key))
}

fn random_data(len: usize) -> Bytes {
    let mut data = vec![0u8; len];
    SmallRng::seed_from_u64(DATA_SEED).fill_bytes(&mut data);
    Bytes::from(data)
}
