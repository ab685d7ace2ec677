-- Shared by every run script: the keys every run script takes, the server clock, the run's
-- state machine, and how a run ends (see proj/lua/__init__.py).
local run, results, steps, dispatched = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local events, approvals, attention = KEYS[5], KEYS[6], KEYS[7]
local pending_index, deadline_index, active_index, escalations = KEYS[8], KEYS[9], KEYS[10], KEYS[11]
local metrics, unfolded = KEYS[12], KEYS[13]
-- Runs whose per-step measures wait to be folded into the metrics hash by the next scrape
-- (coordinator/metrics.py): reporting stays off the step path. Bounded, so that a deployment
-- nobody scrapes keeps no growing backlog (the oldest runs then go uncounted).
local UNFOLDED_MAX = 100000
-- The run's handoff record: lists grow (parallel steps both append), other fields are replaced.
local function merge_handoff(patch_json)
  local current = redis.call('HGET', run, 'handoff')
  if not current then return end
  local record, patch = cjson.decode(current), cjson.decode(patch_json)
  for key, value in pairs(patch) do
    if key == 'steps_completed' or key == 'rejected_approaches' or key == 'constraints' then
      for _, item in ipairs(value) do table.insert(record[key], item) end
    else
      record[key] = value
    end
  end
  redis.call('HSET', run, 'handoff', cjson.encode(record))
end
local function count(name, by)
  redis.call('HINCRBYFLOAT', metrics, name, by or 1)
end
local function now()
  local t = redis.call('TIME')
  return string.format('%d.%06d', t[1], t[2])
end
local function is_active(state)
  return state == 'running' or state == 'waiting_approval' or state == 'needs_attention'
end
-- Progress marker for the watchdog: when did this run last change?
local function touch(at, run_id)
  redis.call('ZADD', active_index, at, run_id or redis.call('HGET', run, 'id'))
end
-- An active run's state follows from what it waits on: an operator, a reviewer, or nothing.
local function refresh_state()
  if not is_active(redis.call('HGET', run, 'state')) then return end
  local state = 'running'
  if redis.call('SCARD', attention) > 0 then
    state = 'needs_attention'
  else
    for _, gate_state in ipairs(redis.call('HVALS', approvals)) do
      if gate_state == 'pending' then state = 'waiting_approval' end
    end
  end
  redis.call('HSET', run, 'state', state)
end
-- Admission (proj/admission.py): runs over their tenant's or workflow's limit of running runs wait
-- as 'queued' in their tenant's queue; tenants with queued runs take turns in the ring. A run that
-- ends frees its slot and, in the same script, admits what now fits. These keys are global and
-- other runs' records are read by name (not passed as KEYS): admission needs a single Redis
-- shard (a master with replicas or Sentinel), not Redis Cluster.
local PREFIX = string.match(run, '^(.*):run:{')
local ADM = PREFIX .. ':admission'
local function run_key(run_id) return PREFIX .. ':run:{' .. run_id .. '}' end
local function adm_queue(tenant) return ADM .. ':queue:' .. tenant end
-- Does the queued run ``id`` fit under its limits now (its record holds them)?
local function fits(id)
  local f = redis.call('HMGET', run_key(id), 'tenant', 'workflow', 'limit_tenant', 'limit_workflow')
  if f[3] and f[3] ~= '' and (tonumber(redis.call('HGET', ADM .. ':tenants', f[1])) or 0) >= tonumber(f[3]) then
    return false
  end
  if f[4] and f[4] ~= '' and (tonumber(redis.call('HGET', ADM .. ':workflows', f[2])) or 0) >= tonumber(f[4]) then
    return false
  end
  return true
end
-- Count run ``id`` as running (from 'queued' when ``queued``) and hand it to whoever dispatches.
local function admit(id, at, queued)
  local key = run_key(id)
  local f = redis.call('HMGET', key, 'tenant', 'workflow')
  redis.call('HINCRBY', ADM .. ':tenants', f[1], 1)
  redis.call('HINCRBY', ADM .. ':workflows', f[2], 1)
  redis.call('HSET', key, 'admitted', '1')
  if queued then
    redis.call('HSET', key, 'state', 'running', 'admitted_at', at)
    redis.call('XADD', key .. ':events', '*', 'type', 'admitted', 'at', at)
    redis.call('ZADD', active_index, at, id)
    redis.call('RPUSH', ADM .. ':admitted', id)
  end
end
-- Admit queued runs that fit, tenants in turn (round robin over the ring), until a whole turn
-- admits nothing; returns how many were admitted. A tenant whose head run does not fit keeps
-- its place in the ring (its later runs wait behind it: each tenant's queue is FIFO).
local function admit_waiting(at)
  local ring = ADM .. ':ring'
  local admitted, misses = 0, 0
  while misses < redis.call('LLEN', ring) do
    local tenant = redis.call('LPOP', ring)
    local queue = adm_queue(tenant)
    local head = redis.call('LINDEX', queue, 0)
    while head and redis.call('HGET', run_key(head), 'state') ~= 'queued' do
      redis.call('LPOP', queue)  -- cancelled (or expired) while it waited
      head = redis.call('LINDEX', queue, 0)
    end
    if head and fits(head) then
      redis.call('LPOP', queue)
      admit(head, at, true)
      admitted, misses = admitted + 1, 0
    elseif head then
      misses = misses + 1
    end
    if redis.call('LLEN', queue) > 0 then redis.call('RPUSH', ring, tenant) end
  end
  return admitted
end
-- A counted run ended: free its slot and admit what fits now.
local function release(at)
  local f = redis.call('HMGET', run, 'admitted', 'tenant', 'workflow')
  if f[1] ~= '1' then return 0 end
  redis.call('HSET', run, 'admitted', 'released')
  redis.call('HINCRBY', ADM .. ':tenants', f[2], -1)
  redis.call('HINCRBY', ADM .. ':workflows', f[3], -1)
  return admit_waiting(at)
end
-- ``inline``: a run of an inline workflow ending 'succeeded' from its last step's script; it has
-- no approvals (inline workflows have no gates, routers, validators or escalations to a human)
-- and no steps waiting for an operator (every step has a result), so those keys do not exist.
local function finish_run(state, err, ttl, idem_ttl, at, inline)
  local head = redis.call('HMGET', run, 'state', 'id', 'idempotency_key_ref', 'progress', 'admitted', 'lane',
    'parent_run')
  local queued = head[1] == 'queued'  -- cancelled before it was admitted
  if not is_active(head[1]) and not queued then return 0 end
  local run_id = head[2]
  at = at or now()
  if queued then redis.call('LREM', adm_queue(head[6]), 1, run_id) end
  local fields = {'state', state, 'finished_at', at}
  if err and err ~= '' then table.insert(fields, 'error'); table.insert(fields, err) end
  redis.call('HSET', run, unpack(fields))
  if not inline then
    -- Close the run's pending approvals: resuming them later changes nothing.
    local decisions = redis.call('HGETALL', approvals)
    for i = 1, #decisions, 2 do
      local gate = decisions[i]
      local akey = run .. ':approval:' .. gate
      if string.sub(decisions[i + 1], 1, 6) ~= 'route:' then  -- routers' choices are not gates
        if redis.call('HGET', akey, 'state') == 'pending' then
          redis.call('HSET', akey, 'state', 'closed', 'closed_reason', 'run ' .. state, 'decided_at', at)
          redis.call('HSET', approvals, gate, 'closed')
        end
        redis.call('ZREM', pending_index, run_id .. '.' .. gate)
        redis.call('ZREM', deadline_index, run_id .. '.' .. gate)
        redis.call('EXPIRE', akey, ttl)
      end
    end
  end
  redis.call('ZREM', active_index, run_id)
  count('runs_total|' .. state)
  if redis.call('RPUSH', unfolded, run_id) > UNFOLDED_MAX then redis.call('LPOP', unfolded) end
  redis.call('PUBLISH', run .. ':ended', state)
  local durable = 7
  if inline then durable = 5 end  -- approvals and attention (KEYS[6], KEYS[7]) do not exist
  for i = 1, durable do redis.call('EXPIRE', KEYS[i], ttl) end
  if head[3] and head[3] ~= '' then redis.call('EXPIRE', head[3], idem_ttl) end
  if head[4] then redis.call('EXPIRE', run .. ':progress', ttl) end  -- it reported progress (emit.lua)
  -- 2: runs were admitted into the slot this one freed, or this was a child run whose parent's
  -- step now has an outcome: the caller dispatches them (coordinator.engine.dispatch_admitted).
  local code = 1
  if head[5] == '1' and release(at) > 0 then code = 2 end
  if head[7] and head[7] ~= '' then
    redis.call('RPUSH', ADM .. ':children_ended', run_id)
    code = 2
  end
  return code
end
-- A stored result's record, in one HSET: finished now, succeeded, its size, and the measures the
-- worker sent: ARGV[n_index] pairs of field and value after it. Returns the ARGV index after them.
local function record_success(step, at, result, n_index)
  local fields = {step .. '.finished_at', at, step .. '.state', 'succeeded', step .. '.result_bytes',
    string.len(result)}
  local last = n_index + 2 * tonumber(ARGV[n_index])
  for i = n_index + 1, last, 2 do
    table.insert(fields, step .. '.' .. ARGV[i])
    table.insert(fields, ARGV[i + 1])
  end
  redis.call('HSET', steps, unpack(fields))
  return last + 1
end
-- A step's state ('pending' without a record) and whether a transition may happen from it:
-- TRANSITIONS is proj/step_states.py's table. A refused transition is recorded, never applied.
local function step_state(step)
  return redis.call('HGET', steps, step .. '.state') or 'pending'
end
local function may(transition, step, current)
  if TRANSITIONS[transition][current] then return true end
  redis.call('XADD', events, '*', 'type', 'illegal_transition', 'step', step, 'transition', transition,
    'from', current, 'at', now())
  return false
end
