//! The `switchyard` binary: parse options, start the switch, stop cleanly on
//! SIGINT/SIGTERM (every socket closed with 1001, requests waiting for the
//! backend answered 503, the router's state written to `DATA_DIR/state/`
//! for the next start, exit status 0).

use clap::Parser;
use switchyard::cli::{Cli, Cmd, SimulateArgs};
use switchyard_actors::uart::sim::{SimConfig, SimulatedRoot};

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match cli.command {
        Some(Cmd::Simulate(args)) => return simulate(args).await,
        Some(Cmd::Ctl(args)) => return ctl(args),
        Some(Cmd::MephistoRoot) => return mephisto_root(),
        None => {}
    }
    let config = cli.into_config(std::env::var("PORT").ok())?;
    let running = match switchyard::start(config).await {
        Ok(running) => running,
        Err(e) => {
            // Exit here, not by returning: actors started before the failure
            // would otherwise be polled once more while the runtime is torn
            // down, with no reactor left, and bury the one line that matters
            // (a port in use, say) under their panics.
            eprintln!("switchyard: {e:#}");
            std::process::exit(1);
        }
    };
    wait_for_signal().await;
    running.stop().await;
    log::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => log::info!("SIGINT received"),
        _ = term.recv() => log::info!("SIGTERM received"),
    }
}

/// `switchyard ctl`: errors go to stderr as one line, exit status 1.
fn ctl(args: switchyard::ctl::CtlArgs) -> anyhow::Result<()> {
    let types = switchyard::load_data_types(&switchyard::Config {
        mesh: switchyard_actors::network::mesh::MeshConfig {
            data_types: args.data_types.clone(),
            ..Default::default()
        },
        ..Default::default()
    })?;
    let mut out = std::io::stdout();
    match switchyard::ctl::run(args, &types, &mut out) {
        Ok(()) => {}
        // The reader went away (`ctl listen | head`): a normal end.
        Err(switchyard::ctl::CtlError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
        }
        Err(e) => {
            eprintln!("switchyard ctl: {e}");
            std::process::exit(1);
        }
    }
    Ok(())
}

/// `switchyard mephisto-root`: the launcher directory on stdout (absolute,
/// as Hydra may change the working directory before Mephisto reads it), or
/// where it was looked for on stderr and exit status 1.
fn mephisto_root() -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    match switchyard::cli::find_mephisto_root(&exe, |p| p.is_file()) {
        Ok(dir) => {
            println!("{}", dir.canonicalize().unwrap_or(dir).display());
            Ok(())
        }
        Err(looked) => {
            let looked: Vec<String> = looked.iter().map(|p| p.display().to_string()).collect();
            eprintln!(
                "switchyard mephisto-root: no Mephisto launcher (server.js) next to {}; looked in: {}",
                exe.display(),
                looked.join(", ")
            );
            std::process::exit(1);
        }
    }
}

/// `switchyard simulate`: the simulated root alone, until a signal.
async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let config = SimConfig {
        nodes: args.sim_nodes,
        interval_secs: args.sim_interval,
        ..SimConfig::default()
    };
    let sim = SimulatedRoot::spawn(config, args.link.clone())?;
    println!("{}", sim.path());
    log::info!(
        "simulated mesh root: {} nodes on {} (pty {}); run another switchyard with --uart {}",
        args.sim_nodes,
        sim.path(),
        sim.device(),
        sim.path()
    );
    wait_for_signal().await;
    sim.stop();
    if let Some(link) = args.link {
        let _ = std::fs::remove_file(link);
    }
    Ok(())
}
