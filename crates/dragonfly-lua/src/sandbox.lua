-- Script environments: each script gets a global table of its own, as if it had a Lua state to
-- itself (the original ran one state per script). Built once per script when it is loaded:
--
-- * every global of the runtime's template (`_G` after the libraries are installed) is copied
--   in; library tables (`string`, `table`, `math`, `os`, `io`, `dragonfly`, `cjson`, ...) are
--   copied one level deep, so `dragonfly.output_event = f` or `string.format = f` in one script
--   changes that script's copy only;
-- * `require` is the script's own: Lua modules run in the environment of the script that
--   requires them (so globals a module sets are the script's globals) and are cached in the
--   script's own `package.loaded`; C modules are never loaded; `module` and `package.seeall`
--   work on the script's own tables;
-- * code is loaded as source text only (LuaJIT bytecode can break the VM): `load`,
--   `loadstring`, `loadfile`, `dofile` and `require` refuse binary chunks, and the chunks they
--   make run in the loading script's environment. Files are read by the engine (read_code,
--   runtime.rs): after setup() only from the script directories, and a syntax error never
--   quotes the file's text;
-- * `os.exit` raises an error (a script never ends the process);
-- * `next`, `pairs`, `rawget`, `rawset`, `getmetatable`, `setmetatable` and `table.foreach`
--   see a lazy event (lazy.rs) as the plain table it stands for: the ones that need every
--   field decode the rest of it first, and its metatable is not shown.
--
-- Isolation: what every script shares is read-only. The string metatable is protected
-- (`getmetatable("")` is a read-only view; the string library behind `s:method()` cannot be
-- reached), as are cjson's array metatable and hiredis's constants (`frozen`: `rawset` refuses
-- them too). `getfenv`/`setfenv` never reach another script's environment nor the engine's
-- (the template), and `setfenv(0)` is refused. Not there at all: `jit` (jit.off() would slow
-- every script; jit.util and jit.profile read the VM's insides), `newproxy` (a userdata
-- finalizer runs inside the collector, where no time limit can stop it), `string.dump`,
-- `package.loaders` and the C searchers. `collectgarbage` may collect, step and count, not
-- stop the collector or retune it (one collector serves every script).
--
-- seal(env) runs once after every setup(): from then on (loop(), timer callbacks and anything
-- they call) there is no `io`, no `os.execute`/`remove`/`rename`/`tmpname`/`exit`, no
-- `package.loadlib`, `require` of `io` fails, and code loads only from the script directories.
-- seal_template() strips the same from the template.
local G, lazy, frozen, read_code = ...
local type, next, pairs, rawget, rawset, error, tostring = type, next, pairs, rawget, rawset, error, tostring
local setfenv, getfenv, load, pcall, select = setfenv, getfenv, load, pcall, select
local setmetatable, getmetatable, collectgarbage = setmetatable, getmetatable, collectgarbage
local searchpath = package.searchpath
-- set once every setup() has run: code loads only from the script directories
local sealed = false
-- every script environment (weak keys), for getfenv/setfenv
local ENVS = setmetatable({}, { __mode = "k" })

local M = {}

-- lazy events as plain tables (see the header)
local lazy_index, lazy_newindex, materialize = lazy.index, lazy.newindex, lazy.materialize
local foreach = table.foreach

local function is_lazy(t)
  local mt = getmetatable(t)
  return type(mt) == "table" and rawget(mt, "__index") == lazy_index
end

local LAZY_AWARE = {
  next = function(t, k)
    if is_lazy(t) then materialize(t) end
    local k2, v = next(t, k)
    return k2, v
  end,
  pairs = function(t)
    if is_lazy(t) then materialize(t) end
    local f, s, c = pairs(t)
    return f, s, c
  end,
  rawget = function(t, k)
    local v = rawget(t, k)
    if v == nil and is_lazy(t) then v = lazy_index(t, k) end
    return v
  end,
  rawset = function(t, k, v)
    if frozen[t] then
      error("bad argument #1 to 'rawset' (a read-only table shared by every script)", 2)
    end
    if is_lazy(t) and rawget(t, k) == nil then
      lazy_newindex(t, k, v)
    else
      rawset(t, k, v)
    end
    return t
  end,
  getmetatable = function(t)
    if is_lazy(t) then return nil end
    local mt = getmetatable(t)
    return mt
  end,
  setmetatable = function(t, mt)
    if is_lazy(t) then
      materialize(t)
      setmetatable(t, nil)
    end
    local r = setmetatable(t, mt)
    return r
  end,
}
local function lazy_foreach(t, f)
  if is_lazy(t) then materialize(t) end
  local r = foreach(t, f)
  return r
end

-- library tables whose contents are copied per script (`jit` is not among them: see the header)
local LIBS = {
  string = true, table = true, math = true, os = true, io = true, coroutine = true,
  bit = true, package = true, dragonfly = true, cjson = true, cjson_safe = true,
  hiredis = true, debug = true,
}
-- fields kept by identity inside a copied library (compared by identity elsewhere)
local SHARED = { array_mt = true, empty_array_mt = true, null = true,
  NIL = true, OK = true, loaded = true, preload = true }
-- the template's globals a script does not get
local WITHHELD = { jit = true, newproxy = true }
-- the preloaded modules a script may require (LuaJIT also preloads jit.util, jit.profile and
-- string.buffer, whose decoder and pointers are not for untrusted code)
local PRELOAD_OK = { ["table.new"] = true, ["table.clear"] = true }

local function copy1(t)
  local r = {}
  for k, v in next, t do
    if type(v) == "table" and not SHARED[k] and getmetatable(v) == nil then
      local c = {}
      for k2, v2 in next, v do c[k2] = v2 end
      v = c
    end
    r[k] = v
  end
  return r
end

local function no_exit()
  error("os.exit is not allowed in scripts: an engine is stopped with SIGTERM", 2)
end

local function ro_error(_, k)
  error("cannot set '" .. tostring(k) .. "': this table is shared by every script and read-only", 2)
end

-- A read-only view of `t` (reads go through; writes, rawset and setmetatable fail).
local function readonly(t)
  local v = setmetatable({}, { __index = t, __newindex = ro_error, __metatable = false })
  frozen[v] = true
  return v
end

-- The string metatable is every string's, in every script: getmetatable("") shows a read-only
-- view of it whose __index is a read-only view of the string library, and the library itself
-- (what `s:upper()` finds) is reached by no script. string.dump is gone (it makes bytecode).
G.string.dump = nil
do
  local string_mt = getmetatable("")
  local lib_view = readonly(string_mt.__index)
  local mt_view = setmetatable({}, {
    __index = function(_, k)
      if k == "__index" then return lib_view end
      return string_mt[k]
    end,
    __newindex = ro_error,
    __metatable = false,
  })
  frozen[mt_view] = true
  rawset(string_mt, "__metatable", mt_view)
end

-- A syntax error of a loaded file quotes the token it stopped at: leave the token out, so a
-- file that is not Lua (a key, a password file) never shows its text in a message.
local function without_token(err)
  if type(err) ~= "string" then return err end
  return (err:gsub(" near .*$", ""))
end

-- Compile source text `src` named `name` for environment `env`.
local function compile(src, name, env)
  local f, err = load(src, name, "t")
  if f == nil then return nil, err end
  setfenv(f, env)
  return f
end

-- Load the file at `path` as source text for `env`: (function) or (nil, message).
local function load_file(path, env)
  if type(path) ~= "string" then
    return nil, "a file name (string) expected, got " .. type(path)
  end
  local src, rerr = read_code(path, sealed)
  if src == nil then return nil, rerr end
  local f, err = compile(src, "@" .. path, env)
  if f == nil then return nil, without_token(err) end
  return f
end

-- The chunks load/loadstring make run in the calling script's environment (in the original,
-- each script's state had its own globals), and only source text is accepted.
local function make_load(env)
  local function env_load(chunk, name, mode, fenv)
    if mode ~= nil and mode ~= "t" then
      return nil, "load: only source text can be loaded (mode 't')"
    end
    if fenv ~= nil and type(fenv) ~= "table" then
      error("bad argument #4 to 'load' (table expected, got " .. type(fenv) .. ")", 2)
    end
    local f, err = load(chunk, name, "t")
    if f == nil then return nil, err end
    setfenv(f, fenv or env)
    return f
  end
  local function env_loadstring(s, name)
    return env_load(s, name)
  end
  local function env_loadfile(path, mode, fenv)
    if mode ~= nil and mode ~= "t" then
      return nil, "loadfile: only source text can be loaded (mode 't')"
    end
    return load_file(path, fenv or env)
  end
  local function env_dofile(path)
    local f, err = load_file(path, env)
    if f == nil then error(err, 2) end
    return f()
  end
  return env_load, env_loadstring, env_loadfile, env_dofile
end

-- The sentinel marking a module whose loading is under way (a require cycle).
local LOADING = setmetatable({}, { __tostring = function() return "<loading>" end })

local function make_require(env, loaded, preload)
  return function(name)
    if type(name) ~= "string" then
      error("bad argument #1 to 'require' (string expected, got " .. type(name) .. ")", 2)
    end
    local v = loaded[name]
    if v == LOADING then
      error("loop or previous error loading module '" .. name .. "'", 2)
    end
    if v ~= nil then return v end
    local loader = preload[name]
    local file
    if loader == nil then
      local pkg = rawget(env, "package")
      local path = type(pkg) == "table" and pkg.path or G.package.path
      if type(path) ~= "string" then path = G.package.path end
      local err
      file, err = searchpath(name, path)
      if file == nil then
        error("module '" .. name .. "' not found:" .. tostring(err), 2)
      end
      local lerr
      loader, lerr = load_file(file, env)
      if loader == nil then error("error loading module '" .. name .. "': " .. tostring(lerr), 2) end
    end
    loaded[name] = LOADING
    local ok, r = pcall(loader, name, file)
    if not ok then
      loaded[name] = nil
      error(r, 0)
    end
    if r ~= nil then loaded[name] = r end
    if loaded[name] == LOADING then loaded[name] = true end
    return loaded[name]
  end
end

-- Lua 5.1's module(): the module table lives in the script's own package.loaded and globals
-- (the built-in one would reach the engine's, shared by every script).
local function make_module(env, loaded)
  local function seeall(m)
    if type(m) ~= "table" then
      error("bad argument #1 to 'seeall' (table expected, got " .. type(m) .. ")", 2)
    end
    local mt = getmetatable(m)
    if mt == nil then
      mt = {}
      setmetatable(m, mt)
    elseif type(mt) ~= "table" then
      error("seeall: the module's metatable is protected", 2)
    end
    mt.__index = env
  end
  local function module(name, ...)
    if type(name) ~= "string" then
      error("bad argument #1 to 'module' (string expected, got " .. type(name) .. ")", 2)
    end
    local m = loaded[name]
    if type(m) ~= "table" or m == LOADING then
      m = env
      for part in name:gmatch("[^.]+") do
        local n = rawget(m, part)
        if n == nil then
          n = {}
          rawset(m, part, n)
        elseif type(n) ~= "table" then
          error("name conflict for module '" .. name .. "'", 2)
        end
        m = n
      end
      loaded[name] = m
    end
    if frozen[m] then error("module '" .. name .. "' is read-only", 2) end
    if rawget(m, "_NAME") == nil then
      rawset(m, "_M", m)
      rawset(m, "_NAME", name)
      rawset(m, "_PACKAGE", name:match("^(.*%.)[^.]*$") or "")
    end
    local caller = getfenv(2)
    if caller ~= env and ENVS[caller] then error("module: called from another script", 2) end
    setfenv(2, m)
    for i = 1, select("#", ...) do
      local f = select(i, ...)
      f(m)
    end
  end
  return module, seeall
end

-- getfenv and setfenv that never cross into another script, nor into the engine's functions
-- (whose environment is the template).
local function make_fenv(env)
  local function visible(r)
    if r == G then return env end
    if r ~= env and ENVS[r] then
      error("getfenv: that function belongs to another script", 3)
    end
    return r
  end
  local function env_getfenv(f)
    if f == nil then f = 1 end
    if type(f) == "number" then
      if f == 0 then return env end
      if f < 0 then error("bad argument #1 to 'getfenv' (level must be non-negative)", 2) end
      return visible(getfenv(f + 1))
    end
    return visible(getfenv(f))
  end
  local function env_setfenv(f, t)
    if type(t) ~= "table" then
      error("bad argument #2 to 'setfenv' (table expected, got " .. type(t) .. ")", 2)
    end
    if t ~= env and ENVS[t] then error("setfenv: that environment belongs to another script", 2) end
    local cur
    if type(f) == "number" then
      if f == 0 then
        error("setfenv(0) is not allowed: the thread's environment is the engine's", 2)
      end
      if f < 0 then error("bad argument #1 to 'setfenv' (level must be non-negative)", 2) end
      cur = getfenv(f + 1)
      if cur == G or (cur ~= env and ENVS[cur]) then
        error("setfenv: cannot change the environment of a function that is not this script's", 2)
      end
      -- not a tail call: that would drop this frame and shift the levels by one
      local r = setfenv(f + 1, t)
      return r
    end
    if type(f) ~= "function" then
      error("bad argument #1 to 'setfenv' (number or function expected, got " .. type(f) .. ")", 2)
    end
    cur = getfenv(f)
    if cur == G or (cur ~= env and ENVS[cur]) then
      error("setfenv: cannot change the environment of a function that is not this script's", 2)
    end
    return setfenv(f, t)
  end
  return env_getfenv, env_setfenv
end

-- collectgarbage: collecting, stepping and counting are fine; stopping or retuning the one
-- collector every script shares is not (another script would run out of memory).
local GC_ALLOWED = { collect = true, count = true, step = true }
local function env_collectgarbage(opt, arg)
  if opt == nil then opt = "collect" end
  if GC_ALLOWED[opt] then return collectgarbage(opt, arg) end
  if opt == "restart" then return 0 end
  error("collectgarbage('" .. tostring(opt) ..
    "') is not allowed: every script shares one collector", 2)
end

-- A new script environment with the engine-set globals.
function M.new_env(default_analyzer, default_output)
  local env = {}
  for k, v in next, G do
    if not WITHHELD[k] then
      if LIBS[k] and type(v) == "table" then v = copy1(v) end
      env[k] = v
    end
  end
  ENVS[env] = true
  env._G = env
  for k, f in next, LAZY_AWARE do env[k] = f end
  if type(env.table) == "table" and foreach ~= nil then env.table.foreach = lazy_foreach end
  env.getfenv, env.setfenv = make_fenv(env)
  env.load, env.loadstring, env.loadfile, env.dofile = make_load(env)
  env.collectgarbage = env_collectgarbage
  if type(env.os) == "table" then env.os.exit = no_exit end
  -- a script's own empty array (the shared one could be filled by any script)
  for _, name in next, { "cjson", "cjson_safe" } do
    local c = rawget(env, name)
    if type(c) == "table" and c.array_mt ~= nil then
      c.empty_array = setmetatable({}, c.array_mt)
    end
  end
  local pkg = env.package
  if type(pkg) == "table" then
    local loaded, preload = {}, {}
    for k, v in next, G.package.preload do
      if PRELOAD_OK[k] then preload[k] = v end
    end
    for k in next, LIBS do
      local lib = rawget(env, k)
      if lib ~= nil then loaded[k] = lib end
    end
    loaded._G = env
    pkg.loaded, pkg.preload = loaded, preload
    pkg.loadlib, pkg.loaders, pkg.cpath = nil, {}, ""
    env.require = make_require(env, loaded, preload)
    env.module, pkg.seeall = make_module(env, loaded)
  end
  env.default_analyzer = default_analyzer
  env.default_output = default_output
  return env
end

local OS_KEEP = { time = true, date = true, clock = true, getenv = true, difftime = true }

local function seal_os(os)
  if type(os) ~= "table" then return end
  for k in pairs(os) do
    if not OS_KEEP[k] then os[k] = nil end
  end
  os.exit = no_exit
end

-- After setup(): take away what loop() must not have.
function M.seal(env)
  env.io = nil
  local os = rawget(env, "os")
  seal_os(os)
  local pkg = rawget(env, "package")
  if type(pkg) == "table" then
    pkg.loadlib = nil
    if type(pkg.loaded) == "table" then
      pkg.loaded.io = nil
      if pkg.loaded.os ~= nil then pkg.loaded.os = os end
    end
  end
end

function M.seal_template()
  sealed = true
  G.io = nil
  seal_os(G.os)
  G.package.loadlib = nil
  G.package.loaded.io = nil
end

-- os.exit is an error at every stage, in the template as in every copy.
G.os.exit = no_exit

return M
