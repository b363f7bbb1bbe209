//! A durability audit of one command over a syscall trace: runs it under
//! `strace` and replays its file operations against a model of what a power
//! cut keeps (written data only once the file is fsynced; a new, renamed or
//! linked name only once its folder is fsynced). It then names every file and
//! folder under the audited root that a cut right after the command's exit
//! could lose or tear.
//!
//! It sees one process tree's system calls, so it checks what a command
//! promised by exiting (`init` has made its files), not a cut in the middle.
//! The FUSE model of issue 13 (a filesystem that drops unsynced data at a cut
//! under a running agent and server) is [`crate::lazyfs`].

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the model holds after replaying a trace.
#[derive(Debug, Default)]
struct Model {
    fds: HashMap<i64, PathBuf>,
    /// Files whose last write (or truncation) was not followed by an fsync.
    dirty: BTreeSet<PathBuf>,
    /// Names made (create, rename, link, mkdir) whose folder was not fsynced since.
    unsynced_names: BTreeSet<PathBuf>,
}

/// The quoted strings of a trace line, in order (strace escapes `"` inside).
fn quoted(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find('"') {
        let tail = &rest[i + 1..];
        let mut end = None;
        let mut esc = false;
        for (j, c) in tail.char_indices() {
            match c {
                '\\' if !esc => esc = true,
                '"' if !esc => {
                    end = Some(j);
                    break;
                }
                _ => esc = false,
            }
        }
        let Some(j) = end else { break };
        out.push(tail[..j].to_string());
        rest = &tail[j + 1..];
    }
    out
}

fn result(line: &str) -> Option<i64> {
    line.rsplit_once(" = ")
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|r| r.parse().ok())
}

/// The first argument of a call taking an fd first (`fsync(3)`, `write(3, …`).
fn fd_arg(line: &str) -> Option<i64> {
    let open = line.find('(')?;
    line[open + 1..]
        .split([',', ')'])
        .next()
        .and_then(|a| a.trim().parse().ok())
}

impl Model {
    fn name_made(&mut self, p: &Path) {
        self.unsynced_names.insert(p.to_path_buf());
    }

    fn apply(&mut self, call: &str, line: &str) {
        let paths = quoted(line);
        let ok = result(line).is_some_and(|r| r >= 0);
        if !ok {
            return;
        }
        match call {
            "openat" | "open" | "creat" => {
                let (Some(p), Some(fd)) = (paths.first(), result(line)) else {
                    return;
                };
                let p = PathBuf::from(p);
                if line.contains("O_CREAT") || call == "creat" {
                    self.name_made(&p);
                }
                if line.contains("O_TRUNC") || call == "creat" {
                    self.dirty.insert(p.clone());
                }
                self.fds.insert(fd, p);
            }
            "write" | "pwrite64" | "writev" | "pwritev" | "ftruncate" | "fallocate" => {
                if let Some(p) = fd_arg(line).and_then(|fd| self.fds.get(&fd)) {
                    self.dirty.insert(p.clone());
                }
            }
            "fsync" | "fdatasync" => {
                let Some(p) = fd_arg(line).and_then(|fd| self.fds.get(&fd)).cloned() else {
                    return;
                };
                self.dirty.remove(&p);
                self.unsynced_names
                    .retain(|n| n.parent() != Some(p.as_path()));
            }
            "close" => {
                if let Some(fd) = fd_arg(line) {
                    self.fds.remove(&fd);
                }
            }
            "rename" | "renameat" | "renameat2" | "link" | "linkat" => {
                let (Some(from), Some(to)) = (paths.first(), paths.get(1)) else {
                    return;
                };
                let (from, to) = (PathBuf::from(from), PathBuf::from(to));
                if self.dirty.contains(&from) {
                    self.dirty.insert(to.clone());
                }
                if call.starts_with("rename") {
                    self.dirty.remove(&from);
                }
                self.name_made(&to);
            }
            "mkdir" | "mkdirat" => {
                if let Some(p) = paths.first() {
                    self.name_made(Path::new(p));
                }
            }
            _ => {}
        }
    }
}

/// Run `cmd` under strace and list what under `root` a power cut right after
/// it exits could lose: "data of PATH not fsynced" and "name PATH not durable
/// (its folder was not fsynced)". `root`'s own name counts (its parent must be
/// fsynced if the command made it). Paths in the command must be absolute.
///
/// # Panics
/// If strace cannot run or the command fails.
pub fn audit(cmd: &mut Command, root: &Path) -> Vec<String> {
    let trace = tempfile::NamedTempFile::new().unwrap();
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(ToOwned::to_owned).collect();
    let out = Command::new("strace")
        .args(["-f", "-qq", "-s", "4096", "-o"])
        .arg(trace.path())
        .args(["-e", "trace=open,openat,creat,write,pwrite64,writev,pwritev,ftruncate,fallocate,fsync,fdatasync,close,rename,renameat,renameat2,link,linkat,mkdir,mkdirat"])
        .arg(&program)
        .args(&args)
        .envs(cmd.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .output()
        .expect("strace (apt-get install strace)");
    assert!(out.status.success(), "{program:?} {args:?}: {out:?}");
    let text = std::fs::read_to_string(trace.path()).unwrap();
    let mut model = Model::default();
    let mut pending: HashMap<String, String> = HashMap::new();
    for raw in text.lines() {
        let (pid, rest) = raw.split_once(' ').unwrap_or(("", raw));
        let line = if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            pending.insert(pid.to_string(), head.to_string());
            continue;
        } else if rest.starts_with("<... ") {
            let tail = rest.split_once("resumed>").map_or("", |(_, t)| t);
            format!("{}{tail}", pending.remove(pid).unwrap_or_default())
        } else {
            rest.to_string()
        };
        let call = line.split('(').next().unwrap_or("").trim().to_string();
        model.apply(&call, &line);
    }
    let mut problems = Vec::new();
    let inside = |p: &Path| p.starts_with(root);
    for p in model.dirty.iter().filter(|p| inside(p) && p.exists()) {
        problems.push(format!("data of {} not fsynced", p.display()));
    }
    for p in model.unsynced_names.iter().filter(|p| p.exists()) {
        if inside(p) || root.starts_with(p) {
            problems.push(format!(
                "name {} not durable (its folder was not fsynced)",
                p.display()
            ));
        }
    }
    problems
}
