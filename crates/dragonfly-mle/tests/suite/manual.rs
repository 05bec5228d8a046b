//! `dragonfly-mle man` and `dragonfly-mle completions`: made from the CLI definition, with the
//! original man page's sections, renderable by man(1), and completing every option.

use crate::common::*;
use std::process::Command;

fn run(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_manual_page_has_every_option_and_the_original_sections() {
    let roff = run(&["man"]);
    assert!(roff.contains(".TH dragonfly-mle 1"), "{roff}");
    for section in [
        "NAME",
        "SYNOPSIS",
        "OPTIONS",
        "\"ROOT DIRECTORY\"",
        "CONFIGURATION",
        "\"LUA API\"",
        "SIGNALS",
        "\"EXIT STATUS\"",
        "FILES",
    ] {
        assert!(roff.contains(&format!(".SH {section}")), "{section}");
    }
    for option in [
        "root",
        "logdir",
        "check",
        "sample",
        "strict",
        "exit\\-on\\-eof",
        "log\\-format",
    ] {
        assert!(roff.contains(&format!("\\-\\-{option}")), "--{option}");
    }
    assert!(roff.contains("SIGUSR2"));
    // what the code knows is listed: every scheme, every engine key; timers arrive in loop()
    let names = dragonfly_io::sources::SCHEMES
        .iter()
        .map(|s| s.name)
        .chain(dragonfly_io::sinks::SCHEMES.iter().map(|s| s.name));
    for s in names {
        assert!(roff.contains(&format!("{s}://")), "{s}://");
    }
    for k in dragonfly_config::ENGINE_KEYS {
        assert!(roff.contains(k.name), "engine.{}", k.name);
    }
    assert!(
        !roff.contains("timer_event(msg)"),
        "timers arrive in loop()"
    );
    // --help says what --exit-on-eof really exits with
    let help = run(&["--help"]);
    assert!(
        help.contains("3 when a script failed, 5 when events were dropped"),
        "{help}"
    );
    // man(1) renders it without complaint, where it is installed
    if Command::new("man").arg("--version").output().is_ok() {
        let page = std::env::temp_dir().join(format!("dragonfly-mle-{}.1", std::process::id()));
        std::fs::write(&page, &roff).unwrap();
        let out = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(&page)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "80")
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&page);
        let text = String::from_utf8_lossy(&out.stdout);
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{warnings}");
        assert!(
            text.contains("EXIT STATUS") && text.contains("SIGUSR2"),
            "{text}"
        );
        assert!(warnings.trim().is_empty(), "{warnings}");
    }
}

#[test]
fn completions_offer_every_option() {
    let bash = run(&["completions", "bash"]);
    for option in [
        "--root",
        "--check",
        "--sample",
        "--exit-on-eof",
        "--log-format",
    ] {
        assert!(bash.contains(option), "{option}");
    }
    assert!(bash.contains("complete -F"));
    for shell in ["zsh", "fish"] {
        assert!(
            run(&["completions", shell]).contains("exit-on-eof"),
            "{shell}"
        );
    }
}
