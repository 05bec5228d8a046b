//! One Lua runtime: a LuaJIT state holding every filter and analyzer script of the pipeline,
//! each in its own environment (its own globals, as if it had a state of its own), so an
//! event crosses from one script to the next without leaving the state.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mlua::{Function, Lua, LuaOptions, StdLib, Table, Value};

use crate::json;
use crate::libs::hiredis::Backend;
use crate::libs::{cjson, dragonfly, hiredis};
use crate::mailbox::{Mailbox, Routes};

/// Filter (input) script or analyzer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptKind {
    Filter,
    Analyzer,
}

/// A script to load, with its source already read (so loading works after a chroot).
#[derive(Debug, Clone)]
pub struct ScriptSpec {
    pub tag: String,
    pub kind: ScriptKind,
    /// The path as shown in messages (e.g. `analyzer/hello-world.lua`).
    pub display: String,
    pub source: Arc<str>,
    pub default_analyzer: String,
    pub default_output: String,
}

/// Everything a runtime is built from.
#[derive(Clone)]
pub struct RuntimeSpec {
    /// Directory `require` resolves against.
    pub root: PathBuf,
    pub filters: Vec<ScriptSpec>,
    pub analyzers: Vec<ScriptSpec>,
    pub outputs: Vec<String>,
    pub backend: Backend,
}

/// A script failed: which one, and the Lua message (with file and line).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{script}: {message}")]
pub struct ScriptError {
    pub script: String,
    pub message: String,
}

/// Why one input line did not run.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("malformed JSON: {0}")]
    Malformed(serde_json::Error),
    #[error(transparent)]
    Script(ScriptError),
}

struct Script {
    display: String,
    env: Table,
    loop_fn: Option<Function>,
}

pub struct Runtime {
    lua: Lua,
    filters: Vec<Script>,
    analyzers: Vec<Script>,
    array_mt: Table,
}

/// The first line of a Lua error (the traceback is not useful in a log line).
fn lua_message(e: &mlua::Error) -> String {
    let text = match e {
        mlua::Error::CallbackError { cause, .. } => return lua_message(cause),
        other => other.to_string(),
    };
    let text = text.split("\nstack traceback:").next().unwrap_or(&text);
    text.trim_start_matches("runtime error: ")
        .trim()
        .to_string()
}

impl Runtime {
    /// Create the state, install the libraries and load (compile and run the top level of)
    /// every script. `setup()` is not called yet.
    pub fn new(spec: &RuntimeSpec) -> Result<Self, Vec<ScriptError>> {
        let lua = Lua::new_with(StdLib::ALL_SAFE, LuaOptions::default()).map_err(|e| {
            vec![ScriptError {
                script: "<runtime>".into(),
                message: e.to_string(),
            }]
        })?;
        let fail = |e: mlua::Error| {
            vec![ScriptError {
                script: "<runtime>".into(),
                message: lua_message(&e),
            }]
        };
        let setup = || -> mlua::Result<Table> {
            let cj = cjson::install(&lua)?;
            let _ = cj;
            dragonfly::install(&lua)?;
            hiredis::install(&lua, spec.backend.clone())?;
            set_package_path(&lua, &spec.root)?;
            let mut routes = Routes::default();
            for (i, a) in spec.analyzers.iter().enumerate() {
                routes.analyzers.insert(a.tag.clone(), i);
            }
            for (i, o) in spec.outputs.iter().enumerate() {
                routes.outputs.insert(o.clone(), i);
            }
            lua.set_app_data(routes);
            lua.set_app_data(Mailbox::new(spec.outputs.len()));
            Ok(cjson::array_mt(&lua))
        };
        let array_mt = setup().map_err(fail)?;

        let mut errors = Vec::new();
        let mut load = |s: &ScriptSpec| -> Option<Script> {
            match load_script(&lua, s) {
                Ok(sc) => Some(sc),
                Err(e) => {
                    errors.push(ScriptError {
                        script: s.display.clone(),
                        message: lua_message(&e),
                    });
                    None
                }
            }
        };
        let filters: Vec<Option<Script>> = spec.filters.iter().map(&mut load).collect();
        let analyzers: Vec<Option<Script>> = spec.analyzers.iter().map(&mut load).collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            lua,
            filters: filters.into_iter().map(|s| s.expect("no errors")).collect(),
            analyzers: analyzers
                .into_iter()
                .map(|s| s.expect("no errors"))
                .collect(),
            array_mt,
        })
    }

    /// Call every script's `setup()` (filters first, in config order), then take `io` away
    /// as the original did before the first `loop()`. Returns every failure.
    pub fn setup(&mut self) -> Vec<ScriptError> {
        let mut errors = Vec::new();
        for s in self.filters.iter_mut().chain(self.analyzers.iter_mut()) {
            let res = (|| -> mlua::Result<()> {
                if let Value::Function(f) = s.env.raw_get::<Value>("setup")? {
                    f.call::<()>(())?;
                }
                match s.env.raw_get::<Value>("loop")? {
                    Value::Function(f) => s.loop_fn = Some(f),
                    _ => {
                        return Err(mlua::Error::runtime(
                            "the script defines no loop(msg) function",
                        ))
                    }
                }
                Ok(())
            })();
            if let Err(e) = res {
                errors.push(ScriptError {
                    script: s.display.clone(),
                    message: lua_message(&e),
                });
            }
        }
        let _ = self.lua.globals().raw_set("io", Value::Nil);
        errors
    }

    pub fn lua(&self) -> &Lua {
        &self.lua
    }

    /// Decode one raw input line and hand it to filter `idx`'s `loop()`.
    pub fn run_filter(&self, idx: usize, line: &[u8]) -> Result<(), LineError> {
        let v = json::decode(&self.lua, &self.array_mt, line).map_err(LineError::Malformed)?;
        let s = &self.filters[idx];
        call_loop(s, v).map_err(LineError::Script)
    }

    /// Hand a value to analyzer `idx`'s `loop()`.
    pub fn run_analyzer(&self, idx: usize, v: Value) -> Result<(), ScriptError> {
        call_loop(&self.analyzers[idx], v)
    }

    /// What the scripts emitted since the last call.
    pub fn mailbox(&self) -> mlua::AppDataRefMut<'_, Mailbox> {
        self.lua
            .app_data_mut::<Mailbox>()
            .expect("mailbox installed")
    }

    /// A JSON rendering of `v` cut to `max` bytes, for log lines.
    pub fn describe(&self, v: &Value, max: usize) -> String {
        let mut s = match json::encode_to_vec(v, &self.array_mt) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(_) => format!("<{}>", v.type_name()),
        };
        truncate(&mut s, max);
        s
    }

    /// Display names of the analyzers, by index.
    pub fn analyzer_name(&self, idx: usize) -> &str {
        &self.analyzers[idx].display
    }
}

/// Cut a string to at most `max` bytes on a character boundary, marking the cut.
pub fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
}

fn call_loop(s: &Script, v: Value) -> Result<(), ScriptError> {
    let f = s.loop_fn.as_ref().ok_or_else(|| ScriptError {
        script: s.display.clone(),
        message: "setup() has not run".into(),
    })?;
    f.call::<()>(v).map_err(|e| ScriptError {
        script: s.display.clone(),
        message: lua_message(&e),
    })
}

fn load_script(lua: &Lua, s: &ScriptSpec) -> mlua::Result<Script> {
    let globals = lua.globals();
    let env = lua.create_table()?;
    let mt = lua.create_table()?;
    mt.set("__index", globals.clone())?;
    env.set_metatable(Some(mt))?;
    env.raw_set("_G", env.clone())?;
    env.raw_set("default_analyzer", s.default_analyzer.as_str())?;
    if s.kind == ScriptKind::Analyzer {
        env.raw_set("default_output", s.default_output.as_str())?;
    }
    lua.load(&*s.source)
        .set_name(format!("@{}", s.display))
        .set_environment(env.clone())
        .exec()?;
    Ok(Script {
        display: s.display.clone(),
        env,
        loop_fn: None,
    })
}

fn set_package_path(lua: &Lua, root: &Path) -> mlua::Result<()> {
    let package: Table = lua.globals().get("package")?;
    let old: String = package.get("path")?;
    let r = root.display();
    let path =
        format!("{r}/?.lua;{r}/?/init.lua;{r}/analyzer/?.lua;{r}/filter/?.lua;{r}/lib/?.lua;{old}");
    package.set("path", path)
}
