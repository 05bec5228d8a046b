//! `libdragonfly_redisml.so`: a Redis module that answers the RedisML command set
//! (ML.LINREG.*, ML.LOGREG.*, ML.FOREST.*, ML.MATRIX.*, ML.KMEANS.*) with the same models,
//! replies and error texts as dragonfly-mle's embedded store.
//!
//! ```sh
//! cargo build --release -p dragonfly-redisml
//! redis-server --loadmodule target/release/libdragonfly_redisml.so
//! ```
//!
//! Models are one module data type (`DFML-MODL`) and survive SAVE and a restart (RDB).
//!
//! Load-time arguments set the limits of [`dragonfly_models::limits`] (sizes, tree depth,
//! the work of one multiply): `--loadmodule libdragonfly_redisml.so MAX_VALUES 1000000`. A
//! command past a limit gets an error; no argument can make the server abort.

use std::os::raw::{c_int, c_void};

use dragonfly_models::encode::{decode, encode};
use dragonfly_models::numfmt::fmt_g;
use dragonfly_models::{execute, Keyspace, Kind, MlReply, Model};
use redis_module::native_types::RedisType;
use redis_module::{
    raw, redis_module, Context, RedisError, RedisResult, RedisString, RedisValue, Status,
};

static MODEL_TYPE: RedisType = RedisType::new(
    "DFML-MODL",
    0,
    raw::RedisModuleTypeMethods {
        version: raw::REDISMODULE_TYPE_METHOD_VERSION as u64,
        rdb_load: Some(rdb_load),
        rdb_save: Some(rdb_save),
        aof_rewrite: None,
        free: Some(free),
        mem_usage: None,
        digest: None,
        aux_load: None,
        aux_save: None,
        aux_save2: None,
        aux_save_triggers: 0,
        free_effort: None,
        unlink: None,
        copy: None,
        defrag: None,
        copy2: None,
        free_effort2: None,
        mem_usage2: None,
        unlink2: None,
    },
);

/// # Safety
/// Redis calls this with a value this module created with `Box<Model>`.
unsafe extern "C" fn free(value: *mut c_void) {
    // SAFETY: every value of MODEL_TYPE is a Box<Model> leaked by set_value.
    drop(unsafe { Box::from_raw(value.cast::<Model>()) });
}

/// # Safety
/// Redis calls this with a valid RDB handle and a value of MODEL_TYPE.
unsafe extern "C" fn rdb_save(rdb: *mut raw::RedisModuleIO, value: *mut c_void) {
    // SAFETY: value is a live Box<Model> owned by Redis (see free).
    let model = unsafe { &*value.cast::<Model>() };
    raw::save_slice(rdb, &encode(model));
}

/// # Safety
/// Redis calls this with a valid RDB handle positioned at a value saved by rdb_save.
unsafe extern "C" fn rdb_load(rdb: *mut raw::RedisModuleIO, _encver: c_int) -> *mut c_void {
    let Ok(buf) = raw::load_string_buffer(rdb) else {
        return std::ptr::null_mut();
    };
    match decode(buf.as_ref()) {
        Ok(m) => Box::into_raw(Box::new(m)).cast::<c_void>(),
        Err(_) => std::ptr::null_mut(),
    }
}

/// The server's keyspace, as the models crate sees it.
struct Keys<'a> {
    ctx: &'a Context,
}

impl Keys<'_> {
    /// A key name, binary-safe (NUL bytes included).
    fn name(&self, key: &[u8]) -> RedisString {
        RedisString::create_from_slice(self.ctx.ctx, key)
    }
}

impl Keyspace for Keys<'_> {
    fn kind(&mut self, key: &[u8]) -> Kind {
        let k = self.ctx.open_key(&self.name(key));
        match k.get_value::<Model>(&MODEL_TYPE) {
            Ok(Some(m)) => Kind::of(m),
            Ok(None) => Kind::Missing,
            Err(_) => Kind::Other,
        }
    }

    fn read<R>(&mut self, key: &[u8], f: impl FnOnce(&Model) -> R) -> Option<R> {
        let k = self.ctx.open_key(&self.name(key));
        match k.get_value::<Model>(&MODEL_TYPE) {
            Ok(Some(m)) => Some(f(m)),
            _ => None,
        }
    }

    fn put(&mut self, key: &[u8], model: Model) {
        let k = self.ctx.open_key_writable(&self.name(key));
        // set_value on a key of our own type replaces the value; the caller checked the kind
        let _ = k.set_value(&MODEL_TYPE, model);
    }

    fn delete(&mut self, key: &[u8]) {
        let k = self.ctx.open_key_writable(&self.name(key));
        let _ = k.delete();
    }
}

fn to_value(r: MlReply) -> Result<RedisValue, RedisError> {
    Ok(match r {
        MlReply::Ok => RedisValue::SimpleStringStatic("OK"),
        // RESP2 doubles are bulk strings formatted like %.17g (as RedisModule_ReplyWithDouble)
        MlReply::Double(v) => RedisValue::BulkString(fmt_g(v, 17)),
        MlReply::Integer(i) => RedisValue::Integer(i),
        MlReply::Array(v) => {
            RedisValue::Array(v.into_iter().map(to_value).collect::<Result<_, _>>()?)
        }
        MlReply::Error(e) => return Err(RedisError::String(e)),
    })
}

fn ml(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_slice().to_vec()).collect();
    match execute(&mut Keys { ctx }, &args) {
        Some(r) => {
            let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
            let read_only = ["PREDICT", "RUN", "GET"].iter().any(|w| name.ends_with(w));
            if !read_only && !matches!(r, MlReply::Error(_)) {
                ctx.replicate_verbatim();
            }
            to_value(r)
        }
        None => Err(RedisError::Str("ERR unknown command")),
    }
}

/// Read the load-time arguments into the limits.
fn init(ctx: &Context, args: &[RedisString]) -> Status {
    let args: Vec<String> = args
        .iter()
        .map(|a| String::from_utf8_lossy(a.as_slice()).into_owned())
        .collect();
    match dragonfly_models::limits::parse_args(&args, dragonfly_models::limits::DEFAULT) {
        Ok(l) => {
            dragonfly_models::limits::set(l);
            ctx.log_notice(&format!(
                "redisml limits: MAX_VALUES {} MAX_TREE_DEPTH {} MAX_MULTIPLY_OPS {}",
                l.max_values, l.max_tree_depth, l.max_multiply_ops
            ));
            Status::Ok
        }
        Err(e) => {
            ctx.log_warning(&format!("redisml: {e}"));
            Status::Err
        }
    }
}

redis_module! {
    name: "redisml",
    version: 1,
    allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
    data_types: [MODEL_TYPE],
    init: init,
    commands: [
        ["ml.linreg.set", ml, "write deny-oom", 1, 1, 1, ""],
        ["ml.logreg.set", ml, "write deny-oom", 1, 1, 1, ""],
        ["ml.linreg.predict", ml, "readonly", 1, 1, 1, ""],
        ["ml.logreg.predict", ml, "readonly", 1, 1, 1, ""],
        ["ml.forest.add", ml, "write deny-oom", 1, 1, 1, ""],
        ["ml.forest.run", ml, "readonly", 1, 1, 1, ""],
        ["ml.matrix.set", ml, "write deny-oom", 1, 1, 1, ""],
        ["ml.matrix.get", ml, "readonly", 1, 1, 1, ""],
        ["ml.matrix.add", ml, "write deny-oom", 1, 3, 1, ""],
        ["ml.matrix.multiply", ml, "write deny-oom", 1, 3, 1, ""],
        ["ml.matrix.scale", ml, "write deny-oom", 1, 1, 1, ""],
        ["ml.kmeans.set", ml, "write deny-oom", 1, 1, 1, ""],
        ["ml.kmeans.predict", ml, "readonly", 1, 1, 1, ""],
    ],
}
