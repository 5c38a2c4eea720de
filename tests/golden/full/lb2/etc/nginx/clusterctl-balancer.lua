
-- clusterctl's nginx balancer (managed by clusterctl; edits here are overwritten).
--
-- Pool members, weights, admin states, passive health and in-flight counts live in the
-- shared dict `clusterctl_pools`, so the control socket changes them for every worker without a
-- reload. nginx.conf's init_by_lua_block seeds the dict from the member list it carries: a
-- restart comes up in the state of the file on disk. A reload keeps a member's runtime state
-- unless the file changed that member's state.
local M = {}

local balancer = require("ngx.balancer")
local dict = ngx.shared.clusterctl_pools
local SEP = "\t"
local STATES = { ready = true, drain = true, maint = true }

local function split(s)
  local out = {}
  if s == nil or s == "" then return out end
  for part in (s .. SEP):gmatch("(.-)" .. SEP) do out[#out + 1] = part end
  return out
end

-- ------------------------------------------------------------------ the control socket's folder
-- The master makes the socket's root-only folder before it binds (and a restart after a crash
-- finds the old socket file gone: nginx would not bind over it). Only a socket nobody answers
-- on is removed; a reload's master finds its own live socket and leaves it.
local ffi = require("ffi")
pcall(ffi.cdef, [[
  int mkdir(const char *path, unsigned int mode);
  int chmod(const char *path, unsigned int mode);
  int unlink(const char *path);
  int socket(int domain, int type, int protocol);
  int connect(int fd, const void *addr, unsigned int len);
  int close(int fd);
  struct clusterctl_sockaddr_un { unsigned short family; char path[108]; };
]])

local function live_socket(path)
  local fd = ffi.C.socket(1, 1, 0) -- AF_UNIX, SOCK_STREAM
  if fd < 0 then return true end -- cannot tell: leave it
  local addr = ffi.new("struct clusterctl_sockaddr_un")
  addr.family = 1
  ffi.copy(addr.path, path)
  local rc = ffi.C.connect(fd, addr, ffi.sizeof(addr))
  ffi.C.close(fd)
  return rc == 0
end

local function prepare_socket(path)
  local dir = path:match("^(.*)/[^/]+$")
  ffi.C.mkdir(dir, 448) -- 0700
  ffi.C.chmod(dir, 448)
  local f = io.open(path, "r")
  if f then
    f:close()
    if not live_socket(path) then ffi.C.unlink(path) end
  end
end

-- ------------------------------------------------------------------ the shared state
-- "P": pool names; "p:POOL": balance, sticky cookie, max_fails, fail_timeout;
-- "m:POOL": member names in order; "s:POOL/NAME": address, port, weight, backup, state, and
-- the state the file gave it. "a:", "f:", "d:", "h:" + PEER (address:port as nginx writes it
-- in $upstream_addr): requests in flight, recent failures, down, and the failure limits. By
-- peer, not by pool member: an error_page redirect drops ngx.ctx, and the log phase then
-- still knows from $upstream_addr which peers the request used.
-- A dict too small for the member list stops the start (or the reload) with nginx's own
-- error, rather than balancing over part of the members.
local function put(key, value)
  local ok, err = dict:set(key, value)
  if not ok then error("clusterctl: the shared dict cannot hold " .. key .. ": " .. err) end
end

local function member_value(address, port, weight, backup, state, file_state)
  return table.concat({ address, tostring(port), tostring(weight), backup and "1" or "0",
    state, file_state }, SEP)
end

local function peer(address, port)
  return (address:find(":", 1, true) and "[" .. address .. "]" or address) .. ":" .. port
end

local function limits(address, port, max_fails, fail_timeout)
  put("h:" .. peer(address, port), max_fails .. SEP .. fail_timeout)
end

-- The runtime states clusterctl saved (GET /states, written after each change): one line each,
-- pool, server, state, and the state nginx.conf gave it then.
local function saved_states(path)
  local out = {}
  local f = io.open(path, "r")
  if not f then return out end
  for line in f:lines() do
    local x = split(line)
    if #x == 4 and STATES[x[3]] then out[x[1] .. "/" .. x[2]] = { state = x[3], file_state = x[4] } end
  end
  f:close()
  return out
end

local function states_text()
  local lines = {}
  for _, pool in ipairs(split(dict:get("P"))) do
    for _, name in ipairs(split(dict:get("m:" .. pool))) do
      local f = split(dict:get("s:" .. pool .. "/" .. name))
      if f[5] then lines[#lines + 1] = table.concat({ pool, name, f[5], f[6] or f[5] }, SEP) .. "\n" end
    end
  end
  return table.concat(lines)
end

-- Written at every start and reload too (the master is root here), so the file always holds the
-- states the dict started from: a member whose state nginx.conf changed is saved as the file
-- says, never revived from an older save.
local function save_states(path)
  local f = io.open(path .. ".tmp", "w")
  if not f then return end
  f:write(states_text())
  f:close()
  os.rename(path .. ".tmp", path)
end

function M.init(socket, saved_path, pools)
  prepare_socket(socket)
  local reload = dict:get("v") ~= nil
  -- A start (not a reload) after a restart or a reboot: the dict is new, the saved states are
  -- what it held, as HAProxy's server-state file is for HAProxy.
  local saved = reload and {} or saved_states(saved_path)
  local names = {}
  for _, p in ipairs(pools) do
    names[#names + 1] = p.name
    local members = {}
    for _, s in ipairs(p.servers) do
      members[#members + 1] = s.name
      local key = "s:" .. p.name .. "/" .. s.name
      local state = s.state
      local old = reload and dict:get(key)
      local was = saved[p.name .. "/" .. s.name]
      if old then
        local f = split(old)
        if f[6] == s.state then state = f[5] end
      elseif was and was.file_state == s.state then
        state = was.state
      end
      put(key, member_value(s.address, s.port, s.weight, s.backup, state, s.state))
      limits(s.address, s.port, p.max_fails, p.fail_timeout)
    end
    put("m:" .. p.name, table.concat(members, SEP))
    put("p:" .. p.name, table.concat({ p.balance, p.sticky or "", tostring(p.max_fails),
      tostring(p.fail_timeout) }, SEP))
  end
  put("P", table.concat(names, SEP))
  dict:incr("v", 1, 0)
  save_states(saved_path)
end

-- Each worker keeps the pools it parsed until the version moves.
local cache = {}
local turn = 0

local function load(pool)
  local v = dict:get("v")
  local c = cache[pool]
  if c and c.v == v then return c end
  local p = dict:get("p:" .. pool)
  if not p then return nil end
  local pf = split(p)
  c = { v = v, balance = pf[1], sticky = pf[2] ~= "" and pf[2] or nil,
    max_fails = tonumber(pf[3]) or 1, fail_timeout = tonumber(pf[4]) or 10,
    members = {}, by_name = {}, name = pool, orders = {} }
  for _, name in ipairs(split(dict:get("m:" .. pool))) do
    local s = dict:get("s:" .. pool .. "/" .. name)
    if s then
      local f = split(s)
      local m = { name = name, key = pool .. "/" .. name, address = f[1], port = tonumber(f[2]),
        weight = tonumber(f[3]) or 1, backup = f[4] == "1", state = f[5] }
      m.peer = peer(m.address, m.port)
      c.members[#c.members + 1] = m
      c.by_name[name] = m
    end
  end
  cache[pool] = c
  return c
end

local function is_down(m) return dict:get("d:" .. m.peer) ~= nil end

-- Ready primaries that are up and not yet tried for this request; then the backups; then
-- what was tried; then what is marked down (a guess beats no answer).
local PASSES = {
  { false, true, true }, { true, true, true }, { false, false, true }, { true, false, true },
  { false, false, false }, { true, false, false },
}

local function candidates(c, tried)
  for _, ps in ipairs(PASSES) do
    local list = {}
    for _, m in ipairs(c.members) do
      if m.state == "ready" and m.weight > 0 and m.backup == ps[1]
          and not (ps[2] and tried[m.key]) and not (ps[3] and is_down(m)) then
        list[#list + 1] = m
      end
    end
    if #list > 0 then return list end
  end
  return nil
end

local function by_weight(list, n)
  for _, m in ipairs(list) do
    n = n - m.weight
    if n < 0 then return m end
  end
  return list[#list]
end

local function choose(c, list)
  if #list == 1 then return list[1] end
  local total = 0
  for _, m in ipairs(list) do total = total + m.weight end
  if c.balance == "leastconn" then
    turn = turn + 1
    local best, score
    for i = 0, #list - 1 do
      local m = list[(turn + i) % #list + 1]
      local s = (dict:get("a:" .. m.peer) or 0) / m.weight
      if score == nil or s < score then best, score = m, s end
    end
    return best
  elseif c.balance == "source" then
    return by_weight(list, ngx.crc32_short(ngx.var.remote_addr or "") % total)
  elseif c.balance == "random" then
    return by_weight(list, math.random(total) - 1)
  end
  -- Weighted round robin over every worker at once: one counter in the dict walks the order
  -- nginx's own smooth round robin gives these members (each worker computes it once).
  local ids = {}
  for i, m in ipairs(list) do ids[i] = m.key .. "=" .. m.weight end
  local id = table.concat(ids, ",")
  local order = c.orders[id]
  if not order then
    order = {}
    local cur = {}
    for i = 1, #list do cur[i] = 0 end
    for _ = 1, total do
      local best
      for i, m in ipairs(list) do
        cur[i] = cur[i] + m.weight
        if best == nil or cur[i] > cur[best] then best = i end
      end
      cur[best] = cur[best] - total
      order[#order + 1] = best
    end
    c.orders[id] = order
  end
  local n = dict:incr("r:" .. c.name, 1, 0) or 1
  return list[order[(n - 1) % #order + 1]]
end

function M.balance(pool)
  local ctx = ngx.ctx
  local c = load(pool)
  if not c then
    ngx.log(ngx.ERR, "clusterctl: no pool ", pool)
    return ngx.exit(502)
  end
  local tried = ctx.clusterctl_tried
  if not tried then
    tried = {}
    ctx.clusterctl_tried, ctx.clusterctl_pool = tried, pool
    if #c.members > 1 then balancer.set_more_tries(math.min(#c.members - 1, 2)) end
  end
  local pick
  if c.sticky and #tried == 0 then
    -- A pinned client stays on its server while that server is ready or draining.
    local v = ngx.var["cookie_" .. c.sticky]
    local m = v and v:sub(1, 1) == "." and c.by_name[v:sub(2)]
    if m and m.state ~= "maint" and m.weight > 0 and not is_down(m) then pick = m end
  end
  if not pick then
    local list = candidates(c, tried)
    if not list then
      -- A refused connection, so nginx answers as for a pool with no live server (502, the
      -- service's unavailable page); an exit here would be a bare 500.
      ngx.log(ngx.ERR, "clusterctl: no server of ", pool, " can take a request")
      return balancer.set_current_peer("127.0.0.1", 1)
    end
    pick = choose(c, list)
    if c.sticky then ctx.clusterctl_cookie, ctx.clusterctl_server = c.sticky, pick.name end
  end
  local ok, err = balancer.set_current_peer(pick.address, pick.port)
  if not ok then
    ngx.log(ngx.ERR, "clusterctl: cannot use ", pick.key, ": ", err)
    return ngx.exit(502)
  end
  tried[#tried + 1] = pick.key
  tried[pick.key] = true
  dict:incr("a:" .. pick.peer, 1, 0)
end

-- A client placed afresh is told its server, in the cookie format HAProxy and Apache share.
function M.header()
  local ctx = ngx.ctx
  if not ctx.clusterctl_cookie then return end
  local cookie = ctx.clusterctl_cookie .. "=." .. ctx.clusterctl_server
    .. "; Path=/; HttpOnly; SameSite=Lax" .. (ngx.var.https == "on" and "; Secure" or "")
  local h = ngx.header["Set-Cookie"]
  if h == nil then
    h = cookie
  elseif type(h) == "table" then
    h[#h + 1] = cookie
  else
    h = { h, cookie }
  end
  ngx.header["Set-Cookie"] = h
end

-- What nginx's proxy_next_upstream counts as a failed try (error and timeout read as 502/504).
local FAILED = { ["502"] = true, ["503"] = true, ["504"] = true }

local function failed(p)
  local h = split(dict:get("h:" .. p))
  local max_fails, timeout = tonumber(h[1]) or 1, tonumber(h[2]) or 10
  if max_fails == 0 then return end
  local n = dict:incr("f:" .. p, 1, 0, timeout)
  if n and n >= max_fails then
    dict:set("d:" .. p, 1, timeout)
    dict:delete("f:" .. p)
  end
end

-- Each try of the request, from nginx's own lists ("A, B : C": tries, then after a redirect).
local function tries(text)
  local out = {}
  for t in (text or ""):gmatch("[^,%s]+") do
    if t ~= ":" then out[#out + 1] = t end
  end
  return out
end

function M.log()
  local addrs = ngx.var.upstream_addr
  if addrs == nil or addrs == "" then return end
  local statuses = tries(ngx.var.upstream_status)
  for i, p in ipairs(tries(addrs)) do
    if dict:get("h:" .. p) then -- one of the balancer's peers
      -- Never deleted at 0: another worker's pick may come between, and its request would go
      -- uncounted (a drain would then see none in flight while one is).
      local n = dict:incr("a:" .. p, -1, 0)
      if n and n < 0 then dict:incr("a:" .. p, -n) end
      if FAILED[statuses[i] or ""] then failed(p) end
    end
  end
end

-- ------------------------------------------------------------------ JSON, as small as needed
local function encode(v)
  local t = type(v)
  if t == "table" then
    if v.__array or v[1] ~= nil then
      local out = {}
      for _, x in ipairs(v) do out[#out + 1] = encode(x) end
      return "[" .. table.concat(out, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do if k ~= "__array" then keys[#keys + 1] = k end end
    table.sort(keys)
    local out = {}
    for _, k in ipairs(keys) do out[#out + 1] = encode(tostring(k)) .. ":" .. encode(v[k]) end
    return "{" .. table.concat(out, ",") .. "}"
  elseif t == "string" then
    return '"' .. v:gsub('[%c"\\]', function(ch)
      return string.format("\\u%04x", ch:byte())
    end) .. '"'
  elseif t == "number" or t == "boolean" then
    return tostring(v)
  end
  return "null"
end

-- A flat object of strings, integers and booleans: all a change request holds.
local function decode(s)
  local obj, pos = {}, 1
  local function ws() pos = s:find("[^ \t\r\n]", pos) or #s + 1 end
  local function expect(ch)
    ws()
    if s:sub(pos, pos) ~= ch then error("expected " .. ch .. " at byte " .. pos, 0) end
    pos = pos + 1
  end
  local function str()
    ws()
    local a, b, body = s:find('^"([^"\\%c]*)"', pos)
    if not a then error("expected a plain string at byte " .. pos, 0) end
    pos = b + 1
    return body
  end
  expect("{")
  ws()
  if s:sub(pos, pos) == "}" then return obj end
  while true do
    local k = str()
    expect(":")
    ws()
    local ch = s:sub(pos, pos)
    if ch == '"' then
      obj[k] = str()
    else
      local a, b, word = s:find("^(%-?[%w]+)", pos)
      if not a then error("expected a value at byte " .. pos, 0) end
      pos = b + 1
      if word == "true" then obj[k] = true
      elseif word == "false" then obj[k] = false
      elseif word:match("^%-?%d+$") then obj[k] = tonumber(word)
      else error("unexpected " .. word, 0) end
    end
    ws()
    local sep = s:sub(pos, pos)
    pos = pos + 1
    if sep == "}" then break end
    if sep ~= "," then error("expected , or } at byte " .. (pos - 1), 0) end
  end
  ws()
  if pos <= #s then error("trailing bytes at " .. pos, 0) end
  return obj
end

-- ------------------------------------------------------------------ the control endpoint
local function reply(status, body)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.say(encode(body))
  return ngx.exit(status)
end

local function state()
  local pools = { __array = true }
  for _, name in ipairs(split(dict:get("P"))) do
    local c = load(name)
    if c then
      local servers = { __array = true }
      for _, m in ipairs(c.members) do
        servers[#servers + 1] = { name = m.name, address = m.address, port = m.port,
          weight = m.weight, backup = m.backup, state = m.state,
          health = is_down(m) and "down" or "up",
          active = dict:get("a:" .. m.peer) or 0, fails = dict:get("f:" .. m.peer) or 0 }
      end
      pools[#pools + 1] = { name = name, balance = c.balance, sticky = c.sticky or "",
        servers = servers }
    end
  end
  return { version = dict:get("v"), pools = pools }
end

local function valid_weight(w) return type(w) == "number" and w >= 0 and w <= 256 and w % 1 == 0 end

local function change(op, req)
  local pool, name = req.pool, req.server
  if type(pool) ~= "string" or type(name) ~= "string" then
    return 400, "pool and server are required strings"
  end
  local c = load(pool)
  if not c then return 404, "no pool " .. pool end
  local m = c.by_name[name]
  local key = pool .. "/" .. name
  if op == "set" then
    if not m then return 404, "no server " .. key end
    if req.state ~= nil and not STATES[req.state] then return 400, "bad state" end
    if req.weight ~= nil and not valid_weight(req.weight) then return 400, "bad weight" end
    local old = split(dict:get("s:" .. key))
    put("s:" .. key, member_value(m.address, m.port, req.weight or m.weight, m.backup,
      req.state or m.state, old[6] or m.state))
  elseif op == "add" then
    if m then return 409, "server " .. key .. " exists" end
    if not name:match("^[%w_.-]+$") then return 400, "bad server name" end
    if type(req.address) ~= "string" or not req.address:match("^[%x.:]+$") then
      return 400, "address must be an IP address"
    end
    local port = req.port
    if type(port) ~= "number" or port < 1 or port > 65535 or port % 1 ~= 0 then
      return 400, "bad port"
    end
    local weight = req.weight or 1
    if not valid_weight(weight) then return 400, "bad weight" end
    local st = req.state or "ready"
    if not STATES[st] then return 400, "bad state" end
    put("s:" .. key, member_value(req.address, port, weight, req.backup == true, st, st))
    limits(req.address, port, c.max_fails, c.fail_timeout)
    local names = split(dict:get("m:" .. pool))
    names[#names + 1] = name
    put("m:" .. pool, table.concat(names, SEP))
  elseif op == "remove" then
    if not m then return 404, "no server " .. key end
    local names = {}
    for _, n in ipairs(split(dict:get("m:" .. pool))) do
      if n ~= name then names[#names + 1] = n end
    end
    put("m:" .. pool, table.concat(names, SEP))
    dict:delete("s:" .. key)
  else
    return 404, "no such operation"
  end
  dict:incr("v", 1, 0)
  return 200, "ok"
end

function M.control()
  local method, uri = ngx.req.get_method(), ngx.var.uri
  if uri == "/state" and method == "GET" then return reply(200, state()) end
  if uri == "/states" and method == "GET" then
    ngx.header["Content-Type"] = "text/plain"
    ngx.print(states_text())
    return ngx.exit(200)
  end
  local op = uri:match("^/(%a+)$")
  if method ~= "POST" or not (op == "set" or op == "add" or op == "remove") then
    return reply(404, { error = "GET /state, or POST /set, /add, /remove with a JSON object" })
  end
  ngx.req.read_body()
  local ok, req = pcall(decode, ngx.req.get_body_data() or "")
  if not ok then return reply(400, { error = "bad JSON: " .. tostring(req) }) end
  local done, status, words = pcall(change, op, req)
  if not done then return reply(507, { error = tostring(status) }) end
  if status ~= 200 then return reply(status, { error = words }) end
  return reply(200, { ok = true, version = dict:get("v") })
end

return M
