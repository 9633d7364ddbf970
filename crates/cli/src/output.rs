//! Text for people: listings, stat, status, times and sizes.

use std::fmt::Write;

use cairn_client::fsck::FsckReport;
use cairn_client::ChunkLocation;
use cairn_meta::perm::mode_string;
use cairn_proto::api::{
    DirEntry, EntryKind, MemberStatus, NodeReport, Stat, StatusResponse, UserInfo,
};
use cairn_proto::units::format_size;

/// `ms` since the Unix epoch as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn format_time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm), valid for all u64 days we meet.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The users table of `cairn user list`.
pub fn users_text(users: &[UserInfo]) -> String {
    let mut out = format!(
        "{:<20} {:<5} {:>8} {:<19} groups\n",
        "user", "admin", "sessions", "created"
    );
    for user in users {
        let _ = writeln!(
            out,
            "{:<20} {:<5} {:>8} {} {}",
            user.name,
            if user.admin { "yes" } else { "no" },
            user.sessions,
            format_time(user.created_ms),
            user.groups.join(",")
        );
    }
    out
}

fn kind(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::File => "file",
        EntryKind::Dir => "dir",
    }
}

pub fn long_listing(entries: &[DirEntry]) -> String {
    let mut out = String::new();
    for e in entries {
        let size = match e.kind {
            EntryKind::File => e.size_bytes.to_string(),
            EntryKind::Dir => "-".to_string(),
        };
        let suffix = if e.kind == EntryKind::Dir { "/" } else { "" };
        let _ = writeln!(
            out,
            "{:<4} {} {:<8} {:<8} {:>12} v{:<4} {} {:>8}  {}{suffix}",
            kind(e.kind),
            mode_string(e.mode),
            e.owner,
            e.group,
            size,
            e.version,
            format_time(e.modified_ms),
            e.id,
            e.name
        );
    }
    out
}

pub fn stat_text(path: &str, stat: &Stat, locations: Option<&[ChunkLocation]>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "path:     {path}");
    let _ = writeln!(out, "id:       {}", stat.id);
    let _ = writeln!(out, "kind:     {}", kind(stat.kind));
    match stat.kind {
        EntryKind::File => {
            let _ = writeln!(
                out,
                "size:     {} bytes ({})",
                stat.size_bytes,
                format_size(stat.size_bytes)
            );
        }
        EntryKind::Dir => {
            let _ = writeln!(out, "entries:  {}", stat.size_bytes);
        }
    }
    let _ = writeln!(
        out,
        "mode:     {:o} ({})",
        stat.mode,
        mode_string(stat.mode)
    );
    let _ = writeln!(out, "owner:    {}:{}", stat.owner, stat.group);
    let _ = writeln!(out, "version:  {}", stat.version);
    let _ = writeln!(out, "created:  {}", format_time(stat.created_ms));
    let _ = writeln!(out, "modified: {}", format_time(stat.modified_ms));
    if let Some(digest) = stat.digest {
        let _ = writeln!(out, "digest:   {digest}");
        let _ = writeln!(out, "chunks:   {}", stat.chunks.len());
    }
    if let Some(locations) = locations {
        for (i, loc) in locations.iter().enumerate() {
            let _ = writeln!(out, "chunk {i}: {} ({} bytes)", loc.id, loc.length_bytes);
            for target in &loc.targets {
                let held = if loc.held_by.contains(target) {
                    "holds it"
                } else {
                    "MISSING"
                };
                let _ = writeln!(out, "    target {target}: {held}");
            }
            for holder in loc.held_by.iter().filter(|h| !loc.targets.contains(h)) {
                let _ = writeln!(out, "    extra copy on {holder}");
            }
        }
    }
    out
}

pub fn status_text(status: &StatusResponse) -> String {
    let mut out = String::new();
    let health = if status.healthy {
        "healthy"
    } else {
        "DEGRADED"
    };
    let _ = writeln!(
        out,
        "cluster: {health}, map epoch {}, replication {}, chunk size {}",
        status.epoch,
        status.replication,
        format_size(status.chunk_size_bytes)
    );
    let _ = writeln!(
        out,
        "metadata: leader {}, term {}, applied index {}; {} files, {} directories",
        status.leader.map_or("none".to_string(), |l| l.to_string()),
        status.term,
        status
            .commit_index
            .map_or("-".to_string(), |i| i.to_string()),
        status.file_count,
        status.dir_count
    );
    if !status.members.is_empty() {
        out.push_str(&members_text(&status.members));
    }
    let _ = writeln!(
        out,
        "data: {} under-replicated chunks ({}), {} moved by repair",
        status.under_replicated_chunks,
        if status.repair_settled {
            "every node has checked this map"
        } else {
            "repair passes under way"
        },
        format_size(status.moved_bytes_total)
    );
    let _ = writeln!(
        out,
        "nodes: {} of {} up",
        status.nodes_up,
        status.nodes.len()
    );
    let _ = writeln!(
        out,
        "  {:<36} {:<21} {:<10} {:<8} {:<19} {:>10} {:>10} {:>8} {:>9} {:>9} {:>7}",
        "ID",
        "ADDRESS",
        "ZONE",
        "STATE",
        "SINCE",
        "CAPACITY",
        "USED",
        "CHUNKS",
        "REPAIR",
        "SCRUB",
        "CORRUPT"
    );
    for n in &status.nodes {
        let report = n.report.clone().unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:<36} {:<21} {:<10} {:<8} {:<19} {:>10} {:>10} {:>8} {:>9} {:>9} {:>7}",
            n.id.0,
            n.addr,
            n.zone,
            n.state.as_str(),
            format_time(n.state_changed_ms),
            format_size(n.capacity_bytes),
            format_size(n.used_bytes),
            n.chunk_count,
            repair_progress(&report, status.epoch),
            progress(
                report.scrub.pass_done_chunks,
                report.scrub.pass_total_chunks,
                report.scrub.passes_total
            ),
            report.scrub.corrupt_chunks_total
        );
    }
    out
}

/// The metadata group's members: role, and how far each is behind the
/// leader's log (known only when the leader answered).
pub fn members_text(members: &[MemberStatus]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  {:<6} {:<21} {:<8} {:>9} {:>7}",
        "MEMBER", "ADDRESS", "ROLE", "MATCHED", "LAG"
    );
    for m in members {
        let role = match (m.leader, m.voter) {
            (true, _) => "leader",
            (false, true) => "voter",
            (false, false) => "learner",
        };
        let show = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        let _ = writeln!(
            out,
            "  {:<6} {:<21} {:<8} {:>9} {:>7}",
            m.id,
            m.addr,
            role,
            show(m.matched_index),
            show(m.lag)
        );
    }
    out
}

/// "done" when the last repair pass used the current map, else its progress.
fn repair_progress(report: &NodeReport, epoch: u64) -> String {
    let r = &report.repair;
    if r.epoch == epoch && r.pass_total_chunks == 0 {
        return "done".to_string();
    }
    progress(r.pass_done_chunks, r.pass_total_chunks, r.passes_total)
}

/// "37%" during a pass, else the number of passes finished ("3 done").
fn progress(done: u64, total: u64, passes: u64) -> String {
    if total == 0 {
        return format!("{passes} done");
    }
    format!("{}%", (done * 100 / total).min(100))
}

pub fn fsck_text(report: &FsckReport, files_shown: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "checked {} files, {} distinct chunks",
        report.files, report.chunks
    );
    let _ = writeln!(out, "  healthy           {}", report.healthy);
    let _ = writeln!(out, "  under-replicated  {}", report.under_replicated);
    let _ = writeln!(out, "  missing           {}", report.missing);
    let _ = writeln!(out, "  corrupt           {}", report.corrupt);
    for node in &report.unreachable_nodes {
        let _ = writeln!(out, "warning: no answer from node {node}");
    }
    if !report.problem_files.is_empty() {
        let _ = writeln!(out, "files with problems:");
        for file in report.problem_files.iter().take(files_shown) {
            let _ = writeln!(
                out,
                "  {} (id {}): {} missing, {} corrupt, {} under-replicated",
                file.path, file.id, file.missing, file.corrupt, file.under_replicated
            );
        }
        if report.problem_files.len() > files_shown {
            let _ = writeln!(
                out,
                "  ... and {} more (see --json)",
                report.problem_files.len() - files_shown
            );
        }
    }
    if report.missing > 0 {
        let _ = writeln!(
            out,
            "DATA MISSING: no live node holds a good copy of {} chunk(s); bring back down nodes (`cairn status`)",
            report.missing
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(format_time(1_700_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(format_time(951_782_400_000), "2000-02-29 00:00:00");
    }
}
