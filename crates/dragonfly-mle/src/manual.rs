//! `dragonfly-mle man` and `dragonfly-mle completions SHELL`: the manual page dragonfly-mle(1)
//! and shell completions, made from the command-line definition itself (clap_mangen,
//! clap_complete), so they never disagree with `--help`. The page adds the sections the
//! original's man page had: the root layout, config.lua, the Lua API, signals, exit status,
//! files.

use std::io::Write;

/// The sections after the generated ones (roff).
const EXTRA: &str = r#".SH "ROOT DIRECTORY"
.TP
\fBconfig/config.lua\fR
inputs, analyzers, outputs, the store and the engine's settings (also \fBscripts/config.lua\fR)
.TP
\fBfilter/\fR
filter scripts, one per input: \fBloop(msg)\fR hands events on with \fBdragonfly.analyze_event\fR
.TP
\fBanalyzer/\fR
analyzer scripts: \fBsetup()\fR once, \fBloop(msg)\fR per event and per timer a script set
with \fBdragonfly.timer_event\fR (the timer's value arrives in \fBloop\fR)
.TP
\fBwww/\fItag\fB.json\fR
analyzer descriptions served at /api/analyzers
.SH CONFIGURATION
config.lua is Lua. It sets \fBinputs\fR (\fItag\fR, \fIuri\fR: @INPUTS@; \fIscript\fR,
\fIdefault_analyzer\fR, \fIoptions\fR), \fBanalyzers\fR (\fItag\fR, \fIscript\fR,
\fIdefault_analyzer\fR, \fIdefault_output\fR, \fIconcurrency\fR), \fBoutputs\fR (\fItag\fR,
\fIuri\fR: @OUTPUTS@; \fIoptions\fR), the store (\fBredis_host\fR and \fBredis_port\fR,
\fBredis_cluster\fR, or nothing for the embedded store), \fBmodules\fR and \fBengine\fR = {
@ENGINE@ }. \fB\-\-check\fR reports every problem at once.
.SH "LUA API"
\fBdragonfly.analyze_event\fR(\fItag\fR, \fImsg\fR), \fBdragonfly.output_event\fR(\fItag\fR,
\fImsg\fR), \fBdragonfly.log_event\fR, \fBdragonfly.stats_event\fR, \fBdragonfly.timer_event\fR,
\fBdragonfly.date2epoch\fR, \fBdragonfly.clock\fR, \fBdragonfly.dnslookup\fR,
\fBdragonfly.http_get\fR; \fBcjson\fR and \fBcjson_safe\fR; \fBhiredis.connect\fR() with
\fBcommand\fR, \fBcommand_line\fR, \fBappend_command\fR and \fBget_reply\fR on the embedded
store, Redis or a Redis Cluster; the RedisML \fBML.*\fR commands.
.SH SIGNALS
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
stop the inputs, drain what was accepted, fire pending timers once, flush the outputs and exit
(a second one exits at once)
.TP
\fBSIGHUP\fR, \fBSIGUSR1\fR
reopen file outputs and the engine's logs (logrotate)
.TP
\fBSIGUSR2\fR
reload config.lua and every script without stopping the inputs; on any problem the running
pipeline is kept and the problem logged
.SH "EXIT STATUS"
.TP
\fB0\fR
every event was processed without a script failure
.TP
\fB1\fR
start-up failed, or \fB\-\-check\fR found a problem
.TP
\fB2\fR
config.lua is wrong (with \fB\-\-strict\fR, also its warnings)
.TP
\fB3\fR
the run finished, but some events failed in a script (see the dead letters)
.TP
\fB4\fR
the engine stopped abnormally (an internal failure, or a drain that did not finish)
.TP
\fB5\fR
the run finished, but events were dropped: an output could never write them (counted in its \fBdropped\fR), or a script sent them to a tag config.lua does not define (\fBunknown_tags\fR)
.SH FILES
.TP
\fILOGDIR\fB/dragonfly\-mle.log\fR
script log records and engine problems
.TP
\fILOGDIR\fB/dragonfly\-mle\-stats.log\fR
one JSON record of counters per stats interval
.TP
\fILOGDIR\fB/dead\-letter.json\fR
events a script failed on, with the reason
.SH "SEE ALSO"
redis\-server(1), suricata(1); the project's docs/: configuration.md, lua\-api.md,
operations.md, scaling.md.
"#;

/// [`EXTRA`] with the lists that come from the code: the input and output schemes (their
/// registries) and the `engine` keys (config's table), so the page cannot fall behind them.
fn extra() -> String {
    let schemes = |names: Vec<&str>| {
        names
            .iter()
            .map(|n| format!("{n}://"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    EXTRA
        .replace(
            "@INPUTS@",
            &schemes(
                dragonfly_io::sources::SCHEMES
                    .iter()
                    .map(|s| s.name)
                    .collect(),
            ),
        )
        .replace(
            "@OUTPUTS@",
            &schemes(
                dragonfly_io::sinks::SCHEMES
                    .iter()
                    .map(|s| s.name)
                    .collect(),
            ),
        )
        .replace(
            "@ENGINE@",
            &dragonfly_config::ENGINE_KEYS
                .iter()
                .map(|k| k.name)
                .collect::<Vec<_>>()
                .join(", "),
        )
}

/// Write the manual page (roff) for `cmd` to stdout.
pub fn man(cmd: clap::Command) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(cmd);
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    man.render_subcommands_section(&mut out)?;
    out.extend_from_slice(extra().as_bytes());
    man.render_version_section(&mut out)?;
    std::io::stdout().lock().write_all(&out)
}

/// Write completions for `shell` to stdout.
pub fn completions(mut cmd: clap::Command, shell: clap_complete::Shell) {
    clap_complete::generate(shell, &mut cmd, "dragonfly-mle", &mut std::io::stdout());
}
