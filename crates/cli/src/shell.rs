//! `cairn shell`: an interactive shell over the file API, with a working
//! directory (`cd`, `pwd`; relative paths start there), line editing and
//! history (rustyline), and tab completion of commands and remote paths
//! (local ones for `put`'s first argument).
//!
//! Each line is split as a POSIX shell would split it (quotes and
//! backslashes) and parsed with the same flags as the one-shot commands.
//! With stdin not a terminal, lines are read and run one by one without
//! a prompt (scripts, tests); the exit status is the last command's.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use cairn_client::Page;
use cairn_proto::api::EntryKind;
use clap::{Parser, Subcommand};
use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::{DefaultHistory, History};
use rustyline::validate::Validator;
use rustyline::{Config, Editor, Helper};
use tokio::runtime::Runtime;

use crate::context::Context;
use crate::output::escape;
use crate::session::Session;
use crate::FileCommand;

/// Lines kept in the history file.
const MAX_HISTORY_LINES: usize = 1000;
/// Pages of a directory read to complete one name (bounds the wait in a
/// huge directory; names sort, so the matches come early).
const MAX_COMPLETION_PAGES: usize = 10;

/// One line of the shell.
#[derive(Parser)]
#[command(
    no_binary_name = true,
    disable_version_flag = true,
    override_usage = "COMMAND [ARGS]   (help: list them; COMMAND --help: its flags)"
)]
struct ShellLine {
    #[command(subcommand)]
    command: ShellCommand,
}

#[derive(Subcommand)]
enum ShellCommand {
    /// Change the working directory [default: your home]
    Cd { path: Option<String> },
    /// Print the working directory
    Pwd,
    /// Leave the shell
    #[command(alias = "quit")]
    Exit,
    #[command(flatten)]
    Files(FileCommand),
}

/// The commands the shell knows, for completion.
const COMMANDS: &[&str] = &[
    "cat", "cd", "chmod", "chown", "cp", "exit", "get", "help", "ls", "mkdir", "mv", "put", "pwd",
    "quit", "rm", "stat", "xattr",
];

pub fn run(runtime: &Runtime, ctx: &Context, session: &Session) -> anyhow::Result<ExitCode> {
    // Relative paths start at the home until the first cd.
    let home = runtime.block_on(ctx.home())?;
    ctx.set_cwd(home);
    if !std::io::stdin().is_terminal() {
        return run_script(runtime, ctx);
    }
    let config = Config::builder()
        .max_history_size(MAX_HISTORY_LINES)?
        .auto_add_history(true)
        .build();
    let mut editor: Editor<ShellHelper, DefaultHistory> = Editor::with_config(config)?;
    editor.set_helper(Some(ShellHelper {
        runtime,
        ctx,
        local: FilenameCompleter::new(),
    }));
    let history = session.config_path.with_file_name("shell_history");
    let _ = editor.load_history(&history);
    let mut status = ExitCode::SUCCESS;
    loop {
        let cwd = runtime.block_on(ctx.cwd())?;
        match editor.readline(&format!("cairn:{}> ", escape(&cwd))) {
            Ok(line) => match run_line(runtime, ctx, &line) {
                Step::Continue(code) => status = code,
                Step::Exit => break,
            },
            // Ctrl-C drops the line, as in a shell; Ctrl-D leaves.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        }
    }
    if let Err(e) = editor.history_mut().save(&history) {
        eprintln!(
            "warning: cannot save the shell history in {}: {e}",
            history.display()
        );
    }
    Ok(status)
}

/// Runs the lines of a script from stdin.
fn run_script(runtime: &Runtime, ctx: &Context) -> anyhow::Result<ExitCode> {
    let mut status = ExitCode::SUCCESS;
    for line in std::io::stdin().lock().lines() {
        match run_line(runtime, ctx, &line?) {
            Step::Continue(code) => status = code,
            Step::Exit => break,
        }
    }
    Ok(status)
}

enum Step {
    Continue(ExitCode),
    Exit,
}

fn run_line(runtime: &Runtime, ctx: &Context, line: &str) -> Step {
    let Some(words) = shlex::split(line) else {
        eprintln!("error: unbalanced quotes in: {line}");
        return Step::Continue(ExitCode::FAILURE);
    };
    if words.is_empty() || words[0].starts_with('#') {
        return Step::Continue(ExitCode::SUCCESS);
    }
    let parsed = match ShellLine::try_parse_from(&words) {
        Ok(parsed) => parsed,
        Err(e) => {
            // Help is printed to stdout, mistakes to stderr.
            let _ = e.print();
            return Step::Continue(if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            });
        }
    };
    let result = runtime.block_on(async {
        match parsed.command {
            ShellCommand::Exit => Ok(None),
            ShellCommand::Pwd => {
                println!("{}", escape(&ctx.cwd().await?));
                Ok(Some(ExitCode::SUCCESS))
            }
            ShellCommand::Cd { path } => {
                let path = match path {
                    Some(path) => ctx.resolve(&path).await?,
                    None => ctx.home().await?,
                };
                let stat = ctx.files.stat(cairn_client::Target::Path(&path)).await?;
                if stat.kind != EntryKind::Dir {
                    anyhow::bail!("{} is a file, not a directory", escape(&path));
                }
                ctx.set_cwd(path);
                Ok(Some(ExitCode::SUCCESS))
            }
            ShellCommand::Files(command) => command.run(ctx).await.map(Some),
        }
    });
    match result {
        Ok(Some(code)) => Step::Continue(code),
        Ok(None) => Step::Exit,
        Err(e) => {
            eprintln!("error: {e:#}");
            Step::Continue(ExitCode::FAILURE)
        }
    }
}

/// Line editing help: completion of commands, remote paths and, for the
/// first argument of `put`, local paths.
struct ShellHelper<'a> {
    runtime: &'a Runtime,
    ctx: &'a Context,
    local: FilenameCompleter,
}

impl Completer for ShellHelper<'_> {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        history: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let start = word_start(before);
        let word = &before[start..];
        let words_before: Vec<&str> = before[..start].split_whitespace().collect();
        let candidates = match words_before.as_slice() {
            [] => COMMANDS
                .iter()
                .filter(|c| c.starts_with(word))
                .map(|c| format!("{c} "))
                .collect(),
            ["put"] => return self.local.complete(line, pos, history),
            _ => {
                let completions = self.runtime.block_on(self.remote_names(word));
                remote_candidates(word, &completions)
            }
        };
        let pairs = candidates
            .into_iter()
            .map(|candidate| Pair {
                display: candidate.clone(),
                replacement: candidate,
            })
            .collect();
        Ok((start, pairs))
    }
}

impl ShellHelper<'_> {
    /// The names (and whether each is a directory) in the directory a
    /// partly typed remote path is in, starting with its last part. Errors
    /// (no such directory, no permission) complete nothing.
    async fn remote_names(&self, word: &str) -> Vec<(String, bool)> {
        let typed = unescape(word);
        let (dir, prefix) = match typed.rfind('/') {
            Some(slash) => (&typed[..=slash], &typed[slash + 1..]),
            None => ("", typed.as_str()),
        };
        let Ok(dir) = self
            .ctx
            .resolve(if dir.is_empty() { "." } else { dir })
            .await
        else {
            return Vec::new();
        };
        let mut names = Vec::new();
        let mut page = Page::default();
        for _ in 0..MAX_COMPLETION_PAGES {
            let Ok(listing) = self.ctx.files.list(&dir, &page).await else {
                break;
            };
            let mut past_prefix = false;
            for entry in listing.entries {
                if entry.name.starts_with(prefix) {
                    names.push((entry.name, entry.kind == EntryKind::Dir));
                } else if entry.name.as_str() > prefix {
                    past_prefix = true;
                }
            }
            match listing.next {
                Some(next) if !past_prefix => page.after = Some(next),
                _ => break,
            }
        }
        names
    }
}

/// Where the word being typed starts: after the last unescaped space.
fn word_start(before: &str) -> usize {
    let bytes = before.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b' ' => start = i + 1,
            _ => {}
        }
        i += 1;
    }
    start.min(before.len())
}

/// A word as typed, with its backslash escapes undone.
fn unescape(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// Completions of a partly typed remote path `word` from the names in its
/// directory: the directory part as typed, then each name escaped for the
/// shell's splitting, a directory's with a `/` to go on typing.
fn remote_candidates(word: &str, names: &[(String, bool)]) -> Vec<String> {
    let dir_part = match word.rfind('/') {
        Some(slash) => &word[..=slash],
        None => "",
    };
    /// What the shell's splitting takes as other than a plain character.
    const SPECIAL: &str = " \\'\"$`()&;|<>*?![]{}#~";
    names
        .iter()
        .map(|(name, is_dir)| {
            let mut candidate = dir_part.to_string();
            for c in name.chars() {
                if SPECIAL.contains(c) {
                    candidate.push('\\');
                }
                candidate.push(c);
            }
            candidate.push(if *is_dir { '/' } else { ' ' });
            candidate
        })
        .collect()
}

impl Hinter for ShellHelper<'_> {
    type Hint = String;
}
impl Highlighter for ShellHelper<'_> {}
impl Validator for ShellHelper<'_> {}
impl Helper for ShellHelper<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_as_the_one_shot_commands() {
        let words = shlex::split("put --force 'my file.txt' \"/a b/\"").unwrap();
        assert!(matches!(
            ShellLine::try_parse_from(&words).unwrap().command,
            ShellCommand::Files(FileCommand::Put(_))
        ));
        assert!(matches!(
            ShellLine::try_parse_from(["cd"]).unwrap().command,
            ShellCommand::Cd { path: None }
        ));
        assert!(matches!(
            ShellLine::try_parse_from(["quit"]).unwrap().command,
            ShellCommand::Exit
        ));
        assert!(ShellLine::try_parse_from(["frobnicate"]).is_err());
        assert!(
            ShellLine::try_parse_from(["login"]).is_err(),
            "only file commands"
        );
    }

    #[test]
    fn remote_paths_complete_with_their_directory_part() {
        let names = vec![
            ("photos".to_string(), true),
            ("photo 1.jpg".to_string(), false),
        ];
        assert_eq!(
            remote_candidates("pics/pho", &names),
            ["pics/photos/", "pics/photo\\ 1.jpg "]
        );
        assert_eq!(remote_candidates("pho", &names[..1]), ["photos/"]);
        assert_eq!(
            word_start("ls pics/my\\ ph"),
            3,
            "an escaped space is in the word"
        );
        assert_eq!(unescape("my\\ ph"), "my ph");
        assert_eq!(word_start("ls "), 3);
    }
}
