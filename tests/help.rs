//! `--help` is written for users: no rustdoc syntax leaks into it from the doc comments clap
//! turns into help text (`` [`Item`] `` links, `[Item]` / `[path::Item]` intra-doc links,
//! `[text](url)` Markdown links). Every subcommand's help is checked, found by walking the
//! "Commands:" lists from `sfxtag --help` down.

mod common;

use common::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// The subcommand names listed under "Commands:" in a help text (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| !l.starts_with("   ")) // wrapped description lines are indented deeper
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// Rustdoc syntax in a help text: each offending bracket with its line.
fn rustdoc_syntax(help: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in help.lines() {
        let mut rest = line;
        while let Some(open) = rest.find('[') {
            let after = &rest[open + 1..];
            let Some(close) = after.find(']') else { break };
            let inner = &after[..close];
            let next = after[close + 1..].chars().next();
            // clap's own brackets: `[OPTIONS]`, `[FILES]...`, `[default: x]`, `[env: X]`,
            // `[possible values: …]`, `[aliases: …]`; TOML sections like `[record]` are prose.
            let code_link = inner.contains('`');
            let path_link = inner.contains("::");
            let markdown_link = next == Some('(');
            let type_link = inner.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && inner.chars().any(|c| c.is_ascii_lowercase())
                && inner.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if code_link || path_link || markdown_link || type_link {
                found.push(format!("[{inner}] in: {}", line.trim()));
            }
            rest = &after[close + 1..];
        }
    }
    found
}

fn help(args: &[&str]) -> String {
    let mut argv = args.to_vec();
    argv.push("--help");
    let (code, out, err) = run_bin(&argv, &[], T);
    assert_eq!(code, 0, "sfxtag {}: {err}", argv.join(" "));
    out
}

#[test]
fn help_texts_carry_no_rustdoc_syntax() {
    let mut queue: Vec<Vec<String>> = vec![Vec::new()];
    let mut checked = Vec::new();
    let mut problems = Vec::new();
    while let Some(path) = queue.pop() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let text = help(&args);
        for p in rustdoc_syntax(&text) {
            problems.push(format!("sfxtag {} --help: {p}", args.join(" ")));
        }
        for sub in subcommands(&text) {
            let mut next = path.clone();
            next.push(sub);
            queue.push(next);
        }
        checked.push(path.join(" "));
    }
    for sub in [
        "run", "classify", "embed", "enroll", "tag", "devices", "bench",
    ] {
        assert!(
            checked.iter().any(|c| c == sub),
            "`sfxtag {sub} --help` was not reached from `sfxtag --help` (checked: {checked:?})"
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_detector_sees_rustdoc_links_and_spares_clap_brackets() {
    let bad = "Runs [`int8_is_fast`] or [Precision] or [crate::model] or [docs](https://x).";
    assert_eq!(rustdoc_syntax(bad).len(), 4, "{:?}", rustdoc_syntax(bad));
    let good = "Usage: sfxtag run [OPTIONS] [FILES]...\n  --x <N>  How many [default: 3] \
                [env: SFXTAG_X=] [possible values: a, b]\n  see [record] in the config";
    assert!(
        rustdoc_syntax(good).is_empty(),
        "{:?}",
        rustdoc_syntax(good)
    );
    let help =
        "Commands:\n  run       The daemon\n            more text\n  classify  Label files\n  \
                help      Print this message\n\nOptions:\n  -h, --help";
    assert_eq!(subcommands(help), ["run", "classify"]);
}
