//! `cairn mount` and `cairn umount`: a thin layer over `cairn_fuse`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::context::Context;

#[derive(Args)]
pub struct MountArgs {
    /// An empty local directory to mount the cluster's namespace on
    pub mountpoint: PathBuf,
    /// Let other local users use the mount: they act as the logged-in user,
    /// or, when an admin mounts, each as their own uid and groups (the
    /// admin's session acts for them; the kernel checks permissions too)
    #[arg(long)]
    pub allow_other: bool,
    /// Mount read-only
    #[arg(long)]
    pub read_only: bool,
}

#[derive(Args)]
pub struct UmountArgs {
    /// Where the cluster is mounted
    pub mountpoint: PathBuf,
    /// Detach now even if files are open there; it goes once they close
    #[arg(long)]
    pub lazy: bool,
}

/// Serves the mount in the foreground until Ctrl-C, SIGTERM or `cairn umount`.
pub async fn mount(ctx: &Context, args: MountArgs) -> Result<ExitCode> {
    let options = cairn_fuse::MountOptions {
        allow_other: args.allow_other,
        read_only: args.read_only,
    };
    let shown = args.mountpoint.display().to_string();
    cairn_fuse::mount(ctx.files.clone(), &args.mountpoint, &options, |user| {
        eprintln!(
            "mounted the cluster at {shown} as {user}{}; Ctrl-C or `cairn umount {shown}` unmounts",
            if args.read_only { ", read-only" } else { "" }
        );
    })
    .await?;
    eprintln!("unmounted {shown}");
    Ok(ExitCode::SUCCESS)
}

pub fn umount(args: UmountArgs) -> Result<ExitCode> {
    cairn_fuse::unmount(&args.mountpoint, args.lazy)?;
    Ok(ExitCode::SUCCESS)
}
