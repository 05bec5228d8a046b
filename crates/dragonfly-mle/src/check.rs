//! `--check`: what a start would find, all at once, as the user the engine runs as.
//!
//! Behaviour: config.lua's errors; then, for every entry that parsed, what the start's
//! opening and binding would meet ([`Plan::preflight`], as the calling user, changing
//! nothing); then, with `-p`, the process drops to `nobody` (after `-c`'s chroot, as the start
//! does) and checks what the running engine needs as that user ([`Plan::check_as_runner`]);
//! then every script is loaded and every `setup()` run, as that user. Every problem is
//! reported in one run, each under its kind. Exit: 2 when config.lua is wrong (a person must
//! fix it: the unit does not restart on 2), 1 for any other problem, 0 when there is none.

use std::path::{Path, PathBuf};

use dragonfly_config::Config;
use dragonfly_engine::{exit, Options, Plan};

use crate::privileges;

/// What `--check` found, by kind.
#[derive(Default)]
pub(crate) struct Checked {
    /// config.lua's errors (and its warnings with `--strict`).
    pub config: Vec<String>,
    /// What the start would fail on: files, directories, sockets, addresses, the store.
    pub start: Vec<String>,
    /// Scripts that do not load, `setup()`s that fail.
    pub scripts: Vec<String>,
    /// What the start goes on with, but says (errors with `--strict`).
    pub warnings: Vec<String>,
}

impl Checked {
    /// The exit code: config first (it needs a person), then anything else.
    pub fn exit_code(&self) -> u8 {
        if !self.config.is_empty() {
            exit::CONFIG
        } else if !self.start.is_empty() || !self.scripts.is_empty() {
            exit::START_UP
        } else {
            exit::OK
        }
    }
}

/// Check `config` (None: config.lua did not run at all, `config_errors` says why).
pub(crate) fn run(
    config: Option<Config>,
    config_errors: Vec<String>,
    options: Options,
    drop_privileges: bool,
    strict: bool,
) -> anyhow::Result<Checked> {
    let mut c = Checked {
        config: config_errors,
        ..Checked::default()
    };
    let Some(config) = config else {
        return Ok(c);
    };
    let root = options.root.clone();
    let chroot = options.chroot;
    let (plan, problems) = Plan::build(config, options);
    c.config.extend(problems);
    let mut found = plan.preflight();
    // the user is looked up before the chroot hides /etc/passwd, as at start
    let user = drop_privileges.then(privileges::nobody).transpose()?;
    let mut scripts_root: PathBuf = root.clone();
    if chroot {
        privileges::chroot(&root)?;
        scripts_root = PathBuf::from("/");
    }
    if let Some(user) = user {
        privileges::drop_to(&user)?;
        found.extend(plan.check_as_runner());
    }
    c.start = found.problems;
    if strict {
        c.start.extend(
            found
                .warnings
                .into_iter()
                .map(|w| format!("{w} (an error with --strict)")),
        );
    } else {
        c.warnings = found.warnings;
    }
    c.scripts = plan.check_scripts(Path::new(&scripts_root));
    Ok(c)
}
