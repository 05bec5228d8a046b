-- Script environments: each script gets a global table of its own, as if it had a Lua state to
-- itself (the original ran one state per script). Built once per script when it is loaded:
--
-- * every global of the runtime's template (`_G` after the libraries are installed) is copied
--   in; library tables (`string`, `table`, `math`, `os`, `io`, `dragonfly`, `cjson`, ...) are
--   copied one level deep, so `dragonfly.output_event = f` or `string.format = f` in one script
--   changes that script's copy only;
-- * `require` is the script's own: Lua modules run in the environment of the script that
--   requires them (so globals a module sets are the script's globals) and are cached in the
--   script's own `package.loaded`; C modules are never loaded;
-- * `load`/`loadstring` take source text only (LuaJIT bytecode can break the VM);
-- * `os.exit` raises an error (a script never ends the process);
-- * `next`, `pairs`, `rawget`, `rawset`, `getmetatable`, `setmetatable` and `table.foreach`
--   see a lazy event (lazy.rs) as the plain table it stands for: the ones that need every
--   field decode the rest of it first, and its metatable is not shown.
--
-- seal(env) runs once after every setup(): from then on (loop(), timer callbacks and anything
-- they call) there is no `io`, no `os.execute`/`remove`/`rename`/`tmpname`/`exit`, no
-- `package.loadlib`, and `require` of `io` fails. seal_template() strips the same from the
-- template, which `getfenv(0)` still reaches.
local G, lazy = ...
local type, next, pairs, rawget, rawset, error, tostring = type, next, pairs, rawget, rawset, error, tostring
local setfenv, getfenv, loadfile, load, pcall = setfenv, getfenv, loadfile, load, pcall
local setmetatable, getmetatable = setmetatable, getmetatable
local searchpath = package.searchpath

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

-- library tables whose contents are copied per script
local LIBS = {
  string = true, table = true, math = true, os = true, io = true, coroutine = true,
  bit = true, jit = true, package = true, dragonfly = true, cjson = true, cjson_safe = true,
  hiredis = true, debug = true,
}
-- fields kept by identity inside a copied library (compared by identity elsewhere)
local SHARED = { array_mt = true, empty_array_mt = true, empty_array = true, null = true,
  NIL = true, OK = true, loaded = true, preload = true, loaders = true }

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

local function text_only_load(chunk, name, mode, env)
  if mode ~= nil and mode ~= "t" then
    error("load: only source text can be loaded (mode 't')", 2)
  end
  if env ~= nil then return load(chunk, name, "t", env) end
  return load(chunk, name, "t")
end

local function text_only_loadstring(s, name)
  return load(s, name, "t")
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
      local err
      file, err = searchpath(name, path)
      if file == nil then
        error("module '" .. name .. "' not found:" .. tostring(err), 2)
      end
      local f, lerr = loadfile(file)
      if f == nil then error("error loading module '" .. name .. "': " .. tostring(lerr), 2) end
      setfenv(f, env)
      loader = f
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

-- A new script environment with the engine-set globals.
function M.new_env(default_analyzer, default_output)
  local env = {}
  for k, v in next, G do
    if LIBS[k] and type(v) == "table" then v = copy1(v) end
    env[k] = v
  end
  env._G = env
  for k, f in next, LAZY_AWARE do env[k] = f end
  if type(env.table) == "table" and foreach ~= nil then env.table.foreach = lazy_foreach end
  -- getfenv(0) and the environment of C functions are the template: show the script its own
  env.getfenv = function(f)
    local r
    if f == nil then f = 1 end
    if type(f) == "number" then
      if f == 0 then return env end
      r = getfenv(f + 1)
    else
      r = getfenv(f)
    end
    if r == G then return env end
    return r
  end
  env.load = text_only_load
  env.loadstring = text_only_loadstring
  if type(env.os) == "table" then env.os.exit = no_exit end
  local pkg = env.package
  if type(pkg) == "table" then
    local loaded, preload = {}, {}
    for k, v in next, G.package.preload do preload[k] = v end
    for k in next, LIBS do
      local lib = rawget(env, k)
      if lib ~= nil then loaded[k] = lib end
    end
    loaded._G = env
    pkg.loaded, pkg.preload = loaded, preload
    pkg.loadlib = nil
    env.require = make_require(env, loaded, preload)
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
  G.io = nil
  seal_os(G.os)
  G.package.loadlib = nil
  G.package.loaded.io = nil
  G.load = text_only_load
  G.loadstring = text_only_loadstring
end

-- os.exit is an error at every stage, in the template as in every copy.
G.os.exit = no_exit

return M
