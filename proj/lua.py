"""The registry's Lua scripts: each step transition is one atomic Redis round trip.

Every script takes the run's durable keys first, in :attr:`RunKeys.durable` order
(run, plan, results, steps, dispatched, events), then its own extra keys. Timestamps come from
the Redis server's clock (``TIME``), so dispatch, start and finish times recorded by different
machines share one clock.
"""

from __future__ import annotations

# Shared prelude: the server clock, and how a run ends (state set once, keys given a TTL).
_PRELUDE = """
local run, plan, results, steps, dispatched, events = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local function now()
  local t = redis.call('TIME')
  return string.format('%d.%06d', t[1], t[2])
end
local function finish_run(state, err, ttl, idem_ttl)
  if redis.call('HGET', run, 'state') ~= 'running' then return 0 end
  local at = now()
  redis.call('HSET', run, 'state', state, 'finished_at', at)
  if err and err ~= '' then redis.call('HSET', run, 'error', err) end
  redis.call('XADD', events, '*', 'type', 'run_finished', 'state', state, 'at', at)
  for i = 1, 6 do redis.call('EXPIRE', KEYS[i], ttl) end
  local idem = redis.call('HGET', run, 'idempotency_key_ref')
  if idem and idem ~= '' then redis.call('EXPIRE', idem, idem_ttl) end
  return 1
end
"""

# KEYS: durable..., idempotency key, runs index
# ARGV: run_id, workflow, spec, input, use_idem ('1'|'0'), prune_before, step, plan_json, ...
START = (
    _PRELUDE
    + """
local idem, index = KEYS[7], KEYS[8]
if ARGV[5] == '1' then
  local existing = redis.call('GET', idem)
  if existing then return {0, existing} end
  redis.call('SET', idem, ARGV[1])
end
local at = now()
redis.call('HSET', run, 'id', ARGV[1], 'workflow', ARGV[2], 'spec', ARGV[3], 'input', ARGV[4],
  'state', 'running', 'created_at', at)
if ARGV[5] == '1' then redis.call('HSET', run, 'idempotency_key_ref', idem) end
for i = 7, #ARGV, 2 do redis.call('HSET', plan, ARGV[i], ARGV[i + 1]) end
redis.call('XADD', events, '*', 'type', 'run_started', 'at', at)
redis.call('ZREMRANGEBYSCORE', index, '-inf', ARGV[6])
redis.call('ZADD', index, at, ARGV[1])
return {1, ARGV[1]}
"""
)

# ARGV: step... -> the steps this call claimed for dispatch (each is claimed once per run)
DISPATCH = (
    _PRELUDE
    + """
if redis.call('HGET', run, 'state') ~= 'running' then return {} end
local at = now()
local claimed = {}
for i = 1, #ARGV do
  if redis.call('SADD', dispatched, ARGV[i]) == 1 then
    redis.call('HSET', steps, ARGV[i] .. '.dispatched_at', at, ARGV[i] .. '.state', 'dispatched')
    redis.call('XADD', events, '*', 'type', 'step_dispatched', 'step', ARGV[i], 'at', at)
    table.insert(claimed, ARGV[i])
  end
end
return claimed
"""
)

# KEYS: durable..., claim
# ARGV: step, token, lease_ms, worker
# -> {'missing'} | {'done'} | {'inactive', state} | {'busy', pttl_ms}
#    | {'run', plan_json, input_json, dep, dep_result_json, ...}
BEGIN_STEP = (
    _PRELUDE
    + """
local claim = KEYS[7]
local step = ARGV[1]
local state = redis.call('HGET', run, 'state')
if not state then return {'missing'} end
if redis.call('HEXISTS', results, step) == 1 then return {'done'} end
if state ~= 'running' then return {'inactive', state} end
if not redis.call('SET', claim, ARGV[2], 'NX', 'PX', ARGV[3]) then
  return {'busy', tostring(redis.call('PTTL', claim))}
end
local at = now()
redis.call('HSET', steps, step .. '.started_at', at, step .. '.worker', ARGV[4], step .. '.state', 'running')
redis.call('HINCRBY', steps, step .. '.body_runs', 1)
redis.call('XADD', events, '*', 'type', 'step_started', 'step', step, 'at', at, 'worker', ARGV[4])
local step_plan = redis.call('HGET', plan, step)
local out = {'run', step_plan, redis.call('HGET', run, 'input')}
for _, dep in ipairs(cjson.decode(step_plan)['after']) do
  table.insert(out, dep)
  table.insert(out, redis.call('HGET', results, dep))
end
return out
"""
)

# KEYS: durable..., claim
# ARGV: step, token, result_json, then field/value pairs of step metadata
# -> 1 if this call stored the result, 0 if another delivery had stored it first
FINISH_STEP = (
    _PRELUDE
    + """
local claim, step = KEYS[7], ARGV[1]
if redis.call('GET', claim) == ARGV[2] then redis.call('DEL', claim) end
if redis.call('HSETNX', results, step, ARGV[3]) == 0 then return 0 end
local at = now()
redis.call('HSET', steps, step .. '.finished_at', at, step .. '.state', 'succeeded',
  step .. '.result_bytes', string.len(ARGV[3]))
for i = 4, #ARGV, 2 do redis.call('HSET', steps, step .. '.' .. ARGV[i], ARGV[i + 1]) end
redis.call('XADD', events, '*', 'type', 'step_finished', 'step', step, 'at', at)
return 1
"""
)

# KEYS: durable..., claim
# ARGV: step, token, error, ttl_s, idem_ttl_s
FAIL_STEP = (
    _PRELUDE
    + """
local claim, step = KEYS[7], ARGV[1]
if redis.call('GET', claim) == ARGV[2] then redis.call('DEL', claim) end
local at = now()
redis.call('HSET', steps, step .. '.finished_at', at, step .. '.state', 'failed', step .. '.error', ARGV[3])
redis.call('XADD', events, '*', 'type', 'step_failed', 'step', step, 'at', at, 'error', ARGV[3])
return finish_run('failed', 'step ' .. step .. ' failed: ' .. ARGV[3], ARGV[4], ARGV[5])
"""
)

# ARGV: state, error, ttl_s, idem_ttl_s -> 1 if this call ended the run
FINISH_RUN = (
    _PRELUDE
    + """
return finish_run(ARGV[1], ARGV[2], ARGV[3], ARGV[4])
"""
)
