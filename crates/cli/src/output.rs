//! Text for people: listings, stat, status, times and sizes.

use std::borrow::Cow;
use std::fmt::Write;

use cairn_client::fsck::FsckReport;
use cairn_client::ChunkLocation;
use cairn_meta::perm::mode_string;
use cairn_proto::api::{
    DirEntry, EntryKind, MemberStatus, NodeReport, Stat, StatusResponse, UserInfo,
};
use cairn_proto::units::format_size;

/// A file name as text output shows it, as GNU ls's shell-escape style
/// does: as it is when every character is plain; in single quotes when it
/// holds spaces or shell characters; as `$'...'` with escapes when it holds
/// a control character or one that reorders or breaks lines (so a name can
/// never forge a line or a column of someone else's listing). `--json`
/// output keeps names exact.
pub fn escape(name: &str) -> Cow<'_, str> {
    let plain = |c: char| c.is_alphanumeric() || "._-+,:@%^=~/".contains(c);
    if !name.is_empty() && name.chars().all(plain) {
        return Cow::Borrowed(name);
    }
    if !name.chars().any(needs_ansi_c) {
        return Cow::Owned(format!("'{}'", name.replace('\'', r"'\''")));
    }
    let mut out = String::from("$'");
    for c in name.chars() {
        match c {
            '\n' => out.push_str(r"\n"),
            '\t' => out.push_str(r"\t"),
            '\r' => out.push_str(r"\r"),
            '\\' => out.push_str(r"\\"),
            '\'' => out.push_str(r"\'"),
            c if needs_ansi_c(c) && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_ansi_c(c) => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    Cow::Owned(out)
}

/// Characters that may not appear as they are in a line of text output:
/// controls, and the invisible ones that break lines or reorder text.
fn needs_ansi_c(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}'
        )
}

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

/// `ns` since the Unix epoch as `YYYY-MM-DD HH:MM:SS.nnnnnnnnn` UTC.
pub fn format_time_ns(ns: u64) -> String {
    format!("{}.{:09}", format_time(ns / 1_000_000), ns % 1_000_000_000)
}

/// The header line of the users table of `cairn user list` (printed once
/// before the pages).
pub fn users_header() -> String {
    format!(
        "{:<20} {:>6} {:<5} {:>8} {:<19} groups\n",
        "user", "uid", "admin", "sessions", "created"
    )
}

/// Rows of the users table, one page at a time.
pub fn users_rows(users: &[UserInfo]) -> String {
    let mut out = String::new();
    for user in users {
        let _ = writeln!(
            out,
            "{:<20} {:>6} {:<5} {:>8} {} {}",
            user.name,
            user.uid,
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
        EntryKind::Symlink => "link",
        EntryKind::Fifo => "fifo",
        EntryKind::Socket => "sock",
        EntryKind::CharDevice => "chr",
        EntryKind::BlockDevice => "blk",
    }
}

pub fn long_listing(entries: &[DirEntry]) -> String {
    let mut out = String::new();
    for e in entries {
        let size = match e.kind {
            EntryKind::File | EntryKind::Symlink => e.size_bytes.to_string(),
            _ => "-".to_string(),
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
            escape(&e.name)
        );
    }
    out
}

pub fn stat_text(path: &str, stat: &Stat, locations: Option<&[ChunkLocation]>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "path:     {}", escape(path));
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
        EntryKind::Symlink => {
            let target = stat.target.as_deref().unwrap_or_default();
            let _ = writeln!(out, "target:   {}", escape(target));
        }
        EntryKind::CharDevice | EntryKind::BlockDevice => {
            // Linux's encoding (as makedev): major in bits 8..20 and 32..,
            // minor in bits 0..8 and 20..32.
            let major = ((stat.rdev >> 8) & 0xfff) | ((stat.rdev >> 32) & 0xffff_f000);
            let minor = (stat.rdev & 0xff) | ((stat.rdev >> 12) & 0xffff_ff00);
            let _ = writeln!(out, "device:   {major}:{minor}");
        }
        EntryKind::Fifo | EntryKind::Socket => {}
    }
    let _ = writeln!(
        out,
        "mode:     {:o} ({})",
        stat.mode,
        mode_string(stat.mode)
    );
    let _ = writeln!(
        out,
        "owner:    {}:{} ({}:{})",
        stat.owner, stat.group, stat.uid, stat.gid
    );
    let _ = writeln!(out, "links:    {}", stat.links);
    let _ = writeln!(out, "version:  {}", stat.version);
    let _ = writeln!(out, "created:  {}", format_time_ns(stat.created_ns));
    let _ = writeln!(out, "modified: {}", format_time_ns(stat.modified_ns));
    let _ = writeln!(out, "changed:  {}", format_time_ns(stat.changed_ns));
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
    if report.missing_corrupt > 0 {
        let _ = writeln!(
            out,
            "  missing           {} ({} with every copy corrupt)",
            report.missing, report.missing_corrupt
        );
    } else {
        let _ = writeln!(out, "  missing           {}", report.missing);
    }
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
                escape(&file.path),
                file.id,
                file.missing,
                file.corrupt,
                file.under_replicated
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
    let lost_to_nodes = report.missing - report.missing_corrupt;
    if lost_to_nodes > 0 {
        let _ = writeln!(
            out,
            "DATA MISSING: no live node holds a copy of {lost_to_nodes} chunk(s); bring back the nodes that are down \
             (`cairn status`)"
        );
    }
    if report.missing_corrupt > 0 {
        let _ = writeln!(
            out,
            "DATA CORRUPT: every copy found of {} chunk(s) is corrupt, so none is good to repair from. The nodes \
             moved them to the quarantine/ directory of their data directory, where a person may recover them:",
            report.missing_corrupt
        );
        for chunk in &report.quarantined {
            let _ = writeln!(
                out,
                "  chunk {}: quarantined on {}",
                chunk.id,
                chunk.nodes.join(", ")
            );
        }
        if report.missing_corrupt as usize > report.quarantined.len() {
            let _ = writeln!(out, "  ... and more (see --json)");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_forge_lines_or_columns() {
        assert_eq!(escape("plain-name_1.txt"), "plain-name_1.txt");
        assert_eq!(escape("été"), "été", "letters of any script are plain");
        assert_eq!(escape("a b"), "'a b'");
        assert_eq!(escape("it's"), r"'it'\''s'");
        assert_eq!(escape("two\nlines"), r"$'two\nlines'");
        assert_eq!(escape("bell\u{7}"), r"$'bell\x07'");
        assert_eq!(escape("rtl\u{202e}txt"), r"$'rtl\u202etxt'");
        assert_eq!(escape(""), "''");
        for hostile in ["x\nfile rw-r--r-- root", "x\r", "a\u{2028}b", "a\u{85}b"] {
            let shown = escape(hostile);
            assert!(
                !shown.contains(['\n', '\r', '\u{2028}', '\u{85}']),
                "{shown:?}"
            );
        }
    }

    #[test]
    fn times() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(format_time(1_700_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(format_time(951_782_400_000), "2000-02-29 00:00:00");
    }
}
