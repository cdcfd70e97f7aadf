//! `twinset down`: stops a detached local cluster from the pids in cluster.json.
use crate::args::DownArgs;
use crate::cluster_files;
use crate::procs::{self, Member};
use anyhow::{bail, Context as _};

/// Runs `down`.
pub async fn run(args: DownArgs) -> anyhow::Result<()> {
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => cluster_files::default_data_dir()?,
    };
    let Some(file) = cluster_files::read_cluster_file(&data_dir)? else {
        bail!(
            "no cluster is running from {} (no cluster.json there)",
            data_dir.display()
        );
    };
    let mut members: Vec<Member> = file
        .processes
        .iter()
        .filter(|p| procs::alive(p.pid, p.start_time))
        .map(|p| Member {
            name: p.name.clone(),
            pid: p.pid,
            start_time: p.start_time,
            child: None,
        })
        .collect();
    let running = members.len();
    let signals = crate::signals::install()?;
    procs::stop_cluster(&mut members, args.timeout, &signals.shutdown).await;
    std::fs::remove_file(cluster_files::cluster_file_path(&data_dir)).with_context(|| {
        format!(
            "removing {}",
            cluster_files::cluster_file_path(&data_dir).display()
        )
    })?;
    cluster_files::remove_client_config_for(&file.server);
    crate::report::outln(&format!(
        "Stopped the cluster at {} ({running} process(es) were running).",
        file.server
    ));
    Ok(())
}
