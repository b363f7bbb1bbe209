//! README.md's examples stay true (issue 13: "fix the examples so each one
//! works as written").
//!
//! - Every `fieldseal-*` command in its `sh` blocks names subcommands that
//!   exist and flags that its `--help` lists; every `make` target exists;
//!   every `cargo build … --bin NAME` names a binary of the workspace; every
//!   `demo-data/NAME` is something `make demo` makes.
//! - The walk-through "Running the server and enrolling a device" runs as
//!   written (in a temporary folder, with the debug binaries and free ports
//!   in place of `target/release/` and the README's ports).

use std::path::{Path, PathBuf};
use std::process::Command;

use fieldseal_tests::procs;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
        .expect("README.md")
}

/// The README's `sh` code blocks, each as its lines.
fn sh_blocks(text: &str) -> Vec<Vec<String>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in text.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```sh") => current = Some(Vec::new()),
            (Some(_), l) if l.starts_with("```") => blocks.extend(current.take()),
            (Some(b), _) => b.push(line.to_owned()),
            (None, _) => {}
        }
    }
    blocks
}

/// Shell words of `line` up to its comment, with `$(…)` substitutions taken
/// out (each becomes the word `SUBST`, its text pushed to `inner`).
fn words(line: &str, inner: &mut Vec<String>) -> Vec<String> {
    let chars: Vec<char> = line.chars().collect();
    let mut out = Vec::new();
    let mut word = String::new();
    let mut has_word = false;
    let (mut i, mut quote) = (0, None::<char>);
    while i < chars.len() {
        let c = chars[i];
        match (quote, c) {
            (None, '#') if !has_word => break,
            (None, ' ' | '\t') => {
                if has_word {
                    out.push(std::mem::take(&mut word));
                    has_word = false;
                }
            }
            (None, '|' | '&' | ';') => {
                if has_word {
                    out.push(std::mem::take(&mut word));
                    has_word = false;
                }
                out.push(c.to_string());
            }
            (None | Some('"'), '$') if chars.get(i + 1) == Some(&'(') => {
                let mut depth = 0;
                let start = i + 2;
                let mut j = i + 1;
                while j < chars.len() {
                    match chars[j] {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                inner.push(chars[start..j].iter().collect());
                word.push_str("SUBST");
                has_word = true;
                i = j;
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                has_word = true;
            }
            (Some(q), _) if c == q => quote = None,
            _ => {
                word.push(c);
                has_word = true;
            }
        }
        i += 1;
    }
    if has_word {
        out.push(word);
    }
    out
}

/// One simple command of the README: its program (variables expanded) and
/// arguments.
#[derive(Debug)]
struct Cmd {
    line: String,
    program: String,
    args: Vec<String>,
}

/// Every simple command of the blocks, variables (`S=…`) expanded.
fn commands(blocks: &[Vec<String>]) -> Vec<Cmd> {
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut out = Vec::new();
    let mut lines: Vec<String> = blocks.iter().flatten().cloned().collect();
    while let Some(line) = (!lines.is_empty()).then(|| lines.remove(0)) {
        let mut inner = Vec::new();
        let ws = words(&line, &mut inner);
        lines.splice(0..0, inner);
        for part in ws.split(|w| matches!(w.as_str(), "|" | "&" | ";")) {
            let mut part: Vec<String> = part
                .iter()
                .map(|w| {
                    let mut w = w.clone();
                    for (k, v) in &vars {
                        w = w.replace(&format!("${k}"), v);
                    }
                    w
                })
                .collect();
            // Leading assignments: to the environment, or (alone) to the shell.
            while part.first().is_some_and(|w| {
                w.split_once('=').is_some_and(|(k, _)| {
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                })
            }) {
                let w = part.remove(0);
                if part.is_empty() {
                    let (k, v) = w.split_once('=').expect("an assignment");
                    vars.push((k.to_owned(), v.to_owned()));
                }
            }
            if let Some((program, args)) = part.split_first() {
                out.push(Cmd {
                    line: line.clone(),
                    program: program.clone(),
                    args: args.to_vec(),
                });
            }
        }
    }
    out
}

fn help(bin: &Path, path: &[&str]) -> String {
    let out = Command::new(bin)
        .args(path)
        .arg("--help")
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{} {} --help: {}",
        bin.display(),
        path.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands a clap `--help` lists.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn every_command_in_the_readme_exists_with_its_flags() {
    let text = readme();
    let blocks = sh_blocks(&text);
    assert!(blocks.len() >= 4, "README.md has its sh blocks");
    let cmds = commands(&blocks);
    let mut checked = 0;
    for c in &cmds {
        let name = c.program.rsplit('/').next().unwrap_or_default();
        match name {
            "fieldseal-server" | "fieldseal-agent" | "fieldseal-verify" => {
                assert!(
                    c.program.starts_with("target/release/"),
                    "{}: built by make demo into target/release/",
                    c.line
                );
                let bin = procs::bin(name);
                let mut path: Vec<&str> = Vec::new();
                let mut h = help(&bin, &path);
                for a in c.args.iter().take_while(|a| !a.starts_with('-')) {
                    if !subcommands(&h).contains(a) {
                        break;
                    }
                    path.push(a);
                    h = help(&bin, &path);
                }
                assert!(
                    subcommands(&h).is_empty(),
                    "{}: `{name} {}` needs a subcommand",
                    c.line,
                    path.join(" ")
                );
                for flag in c.args.iter().filter(|a| a.starts_with("--")) {
                    let flag = flag.split('=').next().unwrap_or_default();
                    assert!(
                        h.contains(flag),
                        "{}: `{name} {}` has no {flag}:\n{h}",
                        c.line,
                        path.join(" ")
                    );
                }
                checked += 1;
            }
            "make" => {
                let makefile = std::fs::read_to_string(
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("../Makefile"),
                )
                .unwrap();
                for target in &c.args {
                    assert!(
                        makefile
                            .lines()
                            .any(|l| l.starts_with(&format!("{target}:"))),
                        "{}: no make target {target}",
                        c.line
                    );
                }
            }
            "cargo" => {
                if let Some(i) = c.args.iter().position(|a| a == "--bin") {
                    procs::bin(&c.args[i + 1]);
                }
            }
            _ => {}
        }
    }
    assert!(checked >= 10, "{checked} fieldseal commands checked");
    // What the demo makes: every demo-data/NAME the README names.
    let demo =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/demo.sh"))
            .unwrap();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("demo-data/") {
        rest = &rest[i + "demo-data/".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
            .collect();
        let name = name.trim_end_matches('.');
        assert!(
            demo.contains(&format!("$dir/{name}")),
            "README.md names demo-data/{name}, which scripts/demo.sh does not make"
        );
    }
}

/// Free TCP and UDP port on 127.0.0.1.
fn free_port() -> u16 {
    procs::stable_udp_port()
}

#[test]
fn the_server_walk_through_runs_as_written() {
    let text = readme();
    let block = sh_blocks(&text)
        .into_iter()
        .find(|b| b.iter().any(|l| l.contains("init --data srv")))
        .expect("the block that sets up a server");
    let bin_dir: PathBuf = procs::bin("fieldseal-server")
        .parent()
        .unwrap()
        .to_path_buf();
    let (quic, http) = (free_port(), free_port());
    let script = block
        .join("\n")
        .replace("target/release/", &format!("{}/", bin_dir.display()))
        .replace(":4433", &format!(":{quic}"))
        .replace(":8080", &format!(":{http}"));
    assert!(script.contains(&format!(":{quic}")) && script.contains(&format!(":{http}")));
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n{script}\n"
        ))
        .current_dir(tmp.path())
        .env("RUST_LOG", "warn")
        .env("TZ", "CST-8")
        .output()
        .expect("bash runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "the README's walk-through failed ({}):\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    // The device it enrolled is listed, then revoked; the catalogue is read.
    assert!(
        stdout.contains("cam-017") && stdout.contains("+08:00"),
        "{stdout}"
    );
    assert!(stdout.contains(" revoked"), "{stdout}");
    assert!(stdout.contains("\"activity\""), "{stdout}");
}
