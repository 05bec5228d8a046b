//! Hot reload (SIGUSR2, `POST /api/reload`): config.lua and every script are read again and
//! a new runtime per worker is built and its `setup()` run aside, while the running pipeline
//! goes on. If anything fails, the running pipeline is kept and the problems are reported (the
//! log, the HTTP answer). Otherwise each worker hands over between batches: the old runtime
//! gets a retire item at the end of its queue, finishes what was queued before it (its
//! pending timers fire once, its outputs flush) and exits; the new one then takes the queue
//! from the next batch on. Inputs and outputs keep running throughout, so no event is lost or
//! run twice.
//!
//! What a reload may change: scripts, the filters and analyzers (their scripts,
//! `default_analyzer`, `default_output`, `concurrency`; analyzers added, removed or reordered
//! need a restart, as their counters are per analyzer), and outputs' URIs and options (such
//! an output is opened anew before the new runtimes start; the old one is flushed and closed
//! once the old runtimes have retired), and inputs' URIs and options (the new input is opened
//! before anything changes — a failure refuses the reload — and started after the handover;
//! the old one is then stopped and hands on what it had read). Anything else — inputs or
//! outputs added or removed, the store, modules, `engine` settings — is reported as needing a
//! restart and the reload is refused. Analyzers' Lua state (globals, timers) starts afresh; the store (embedded or
//! Redis) is kept.
//!
//! Cost: a second set of runtimes while the new ones set up; each worker pauses for as long
//! as its queue takes to drain before the handover.

use crossbeam_channel::bounded;
use dragonfly_config::Config;

use crate::parts::{spawn, spawn_sink, Fresh, Reopened};
use crate::plan::Plan;
use crate::running::Running;
use crate::worker::{self, Worker, WorkerSinks, WorkerStatus};
use dragonfly_io::sources::Prepared as PreparedSource;
use dragonfly_lua::RuntimeSpec;

/// What changed between two configs that a reload cannot apply.
fn needs_restart(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let file = &new.file;
    if old.store != new.store {
        out.push(format!(
            "{file}: the store (redis_host/redis_port/redis_cluster) changed"
        ));
    }
    if old.modules != new.modules {
        out.push(format!("{file}: modules changed"));
    }
    if old.engine != new.engine {
        out.push(format!("{file}: engine settings changed"));
    }
    let inputs = |c: &Config| c.inputs.iter().map(|i| i.tag.clone()).collect::<Vec<_>>();
    if inputs(old) != inputs(new) {
        out.push(format!(
            "{file}: inputs were added, removed or reordered (their tags: {:?} -> {:?})",
            inputs(old),
            inputs(new)
        ));
    }
    let outputs = |c: &Config| c.outputs.iter().map(|o| o.tag.clone()).collect::<Vec<_>>();
    if outputs(old) != outputs(new) {
        out.push(format!(
            "{file}: outputs were added, removed or reordered (their tags: {:?} -> {:?})",
            outputs(old),
            outputs(new)
        ));
    }
    let tags = |c: &Config| {
        c.analyzers
            .iter()
            .map(|a| a.tag.clone())
            .collect::<Vec<_>>()
    };
    if tags(old) != tags(new) {
        out.push(format!(
            "{file}: analyzers were added, removed or reordered (their tags: {:?} -> {:?})",
            tags(old),
            tags(new)
        ));
    }
    out.into_iter()
        .map(|p| format!("{p}: needs a restart"))
        .collect()
}

/// The outcome of one reload.
fn outcome(generation: u64, problems: &[String]) -> crate::Reloaded {
    crate::Reloaded {
        ok: problems.is_empty(),
        json: serde_json::json!({
            "generation": generation,
            "reloaded": problems.is_empty(),
            "errors": problems,
        })
        .to_string(),
    }
}

impl Running {
    /// Handle a pending reload request, if any.
    pub(crate) fn reload_if_asked(&mut self) {
        let Some(generation) = self.control.reload.pending(self.reloads_handled) else {
            return;
        };
        self.reloads_handled = generation;
        let problems = match self.reload() {
            Ok(()) => {
                self.stats
                    .reloads
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(generation, "reloaded: config.lua and every script");
                Vec::new()
            }
            Err(problems) => {
                self.stats
                    .reload_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                for p in &problems {
                    tracing::error!(
                        generation,
                        "reload refused, the running pipeline is kept: {p}"
                    );
                }
                problems
            }
        };
        self.control
            .reload
            .finish(generation, outcome(generation, &problems));
    }

    fn reload(&mut self) -> Result<(), Vec<String>> {
        let (config, plan, spec) = self.load_plan()?;
        let mut problems = Vec::new();
        let mut sinks = self.workers.templates()[0].sinks.clone();
        let reopened = self.reopen_outputs(&plan, &config, &mut sinks, &mut problems);
        let new_inputs = prepare_inputs(&self.reload.config, &plan, &config, &mut problems);
        let fresh = self.set_up_aside(&spec, &sinks, &mut problems);
        if !problems.is_empty() {
            // the new runtimes exit at their gates without touching a queue; the sinks opened
            // for them end once nobody can write to them
            for f in fresh {
                let _ = f.gate.send(false);
                drop(f.gate);
                let _ = f.thread.join();
            }
            drop(sinks);
            for r in reopened {
                let _ = r.thread.join();
            }
            problems.sort();
            problems.dedup();
            return Err(problems);
        }
        drop(sinks);
        self.workers
            .hand_over(fresh, &self.stats, &self.log, &mut problems)?;
        self.start_new_inputs(new_inputs, &config);
        self.outputs.swap(reopened, &config, &self.stats);
        self.reload.config = config;
        self.reload.spec = spec;
        Ok(())
    }

    /// config.lua read again and planned; refused if it changes what needs a restart. The
    /// new runtimes keep the running store and `require` root.
    fn load_plan(&self) -> Result<(Config, Plan, RuntimeSpec), Vec<String>> {
        let config = dragonfly_config::load(&self.reload.root).map_err(|e| {
            e.to_string()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })?;
        let restart = needs_restart(&self.reload.config, &config);
        if !restart.is_empty() {
            return Err(restart);
        }
        let mut options = self.reload.options.clone();
        options.root = self.reload.root.clone();
        let plan = Plan::new(config.clone(), options).map_err(|e| e.problems())?;
        let mut spec = plan.runtime.clone();
        // the same store (the embedded one's data, Redis's counters) and `require` root
        spec.backend = self.reload.spec.backend.clone();
        spec.root = self.reload.spec.root.clone();
        Ok((config, plan, spec))
    }

    /// Outputs whose URI or options changed, opened anew, each on a sink thread of its own;
    /// the new runtimes write to them (`sinks`), the old ones to the old sinks until they
    /// retire.
    fn reopen_outputs(
        &self,
        plan: &Plan,
        config: &Config,
        sinks: &mut WorkerSinks,
        problems: &mut Vec<String>,
    ) -> Vec<Reopened> {
        let mut reopened = Vec::new();
        let pairs = self.reload.config.outputs.iter().zip(&config.outputs);
        for (i, (was, now)) in pairs.enumerate() {
            if was == now {
                continue;
            }
            match plan.sinks[i].open() {
                Ok(sink) => {
                    let (tx, rx, h) = spawn_sink(
                        &now.tag,
                        sink,
                        config.engine.queue_batches,
                        Some((self.stats.clone(), i)),
                        &self.control,
                        Some(self.log.clone()),
                        self.outputs.done_flag(),
                    );
                    sinks.outputs[i] = tx;
                    reopened.push(Reopened {
                        index: i,
                        thread: h,
                        queue: rx,
                        describe: plan.sinks[i].describe(),
                    });
                }
                Err(e) => problems.push(format!("output '{}' ({}): {e}", now.tag, now.uri)),
            }
        }
        reopened
    }

    /// A new runtime per worker, set up aside and waiting at its gate (stops at the first
    /// problem).
    fn set_up_aside(
        &self,
        spec: &RuntimeSpec,
        sinks: &WorkerSinks,
        problems: &mut Vec<String>,
    ) -> Vec<Fresh> {
        let mut fresh = Vec::new();
        for t in self.workers.templates() {
            if !problems.is_empty() {
                break;
            }
            let w = Worker {
                id: t.id,
                spec: spec.clone(),
                rx: t.rx.clone(),
                sinks: sinks.clone(),
                stats: t.stats.clone(),
                log: t.log.clone(),
                status: std::sync::Arc::new(WorkerStatus::default()),
                gauges: t.gauges.clone(),
            };
            let (ready_tx, ready_rx) = bounded(1);
            let (gate_tx, gate_rx) = bounded(1);
            let template = w.clone();
            let h = spawn(format!("worker-{}", t.id), move || {
                w.run(ready_tx, None, Some(gate_rx))
            });
            let reported =
                match worker::wait_ready(&ready_rx, &template.status, &template.spec.limits) {
                    Ok(Ok(())) => true,
                    Ok(Err(errs)) => {
                        problems.extend(errs.iter().map(|e| format!("{e} (in setup)")));
                        true
                    }
                    Err(why) => {
                        problems.push(format!("worker {}: {why}", t.id));
                        false
                    }
                };
            if reported {
                fresh.push(Fresh {
                    template,
                    thread: h,
                    gate: gate_tx,
                });
            } else {
                // parked by the watchdog, or still in a call no hook reaches: it is left
                // behind (never joined, never handed work), so the reload is not held up
                drop(h);
            }
        }
        fresh
    }

    /// The changed inputs: the new ones start, then the old ones stop and hand on what they
    /// had read.
    fn start_new_inputs(
        &mut self,
        new_inputs: Vec<(usize, Box<dyn PreparedSource>)>,
        config: &Config,
    ) {
        for (i, src) in new_inputs {
            self.inputs
                .replace(i, src, config, &self.stats, self.workers.queues());
            tracing::info!(
                "input '{}': reopened: {}",
                config.inputs[i].tag,
                config.inputs[i].uri
            );
        }
    }
}

/// Inputs whose URI or options changed, opened now (bound, connected); they start once the
/// new runtimes run.
fn prepare_inputs(
    old: &Config,
    plan: &Plan,
    config: &Config,
    problems: &mut Vec<String>,
) -> Vec<(usize, Box<dyn PreparedSource>)> {
    let mut new_inputs = Vec::new();
    for (i, (was, now)) in old.inputs.iter().zip(&config.inputs).enumerate() {
        if was.uri == now.uri && was.options == now.options {
            continue;
        }
        match plan.sources[i].prepare(config.engine.max_line_bytes) {
            Ok(src) => new_inputs.push((i, src)),
            Err(e) => problems.push(format!(
                "input '{}' ({}): {e} (an input that takes over the old one's socket needs a restart)",
                now.tag, now.uri
            )),
        }
    }
    new_inputs
}
