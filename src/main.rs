//! The `switchyard` binary: parse options, start the switch, stop cleanly on
//! SIGINT/SIGTERM (every socket closed with 1001, exit status 0).

use clap::Parser;
use switchyard::cli::Cli;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let config = cli.into_config(std::env::var("PORT").ok())?;
    let running = switchyard::start(config).await?;
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
