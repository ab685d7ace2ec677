"""The registry's Lua scripts: each step transition is one atomic Redis round trip.

Every script takes the run's durable keys first, in :attr:`RunKeys.durable` order
(run, plan, results, steps, dispatched, events, approvals), then the global pending-approval
and deadline indexes, then its own extra keys (``KEYS[10]`` on). Timestamps come from
the Redis server's clock (``TIME``), so dispatch, start and finish times recorded by different
machines share one clock.
"""

from __future__ import annotations

# Shared prelude: the server clock, and how a run ends (state set once, keys given a TTL).
_PRELUDE = """
local run, plan, results, steps = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local dispatched, events, approvals = KEYS[5], KEYS[6], KEYS[7]
local pending_index, deadline_index = KEYS[8], KEYS[9]
local function now()
  local t = redis.call('TIME')
  return string.format('%d.%06d', t[1], t[2])
end
local function is_active(state)
  return state == 'running' or state == 'waiting_approval'
end
local function finish_run(state, err, ttl, idem_ttl)
  if not is_active(redis.call('HGET', run, 'state')) then return 0 end
  local at = now()
  redis.call('HSET', run, 'state', state, 'finished_at', at)
  if err and err ~= '' then redis.call('HSET', run, 'error', err) end
  -- Close the run's pending approvals: resuming them later changes nothing.
  local run_id = redis.call('HGET', run, 'id')
  for _, gate in ipairs(redis.call('HKEYS', approvals)) do
    local akey = run .. ':approval:' .. gate
    if redis.call('HGET', akey, 'state') == 'pending' then
      redis.call('HSET', akey, 'state', 'closed', 'closed_reason', 'run ' .. state, 'decided_at', at)
      redis.call('HSET', approvals, gate, 'closed')
    end
    redis.call('ZREM', pending_index, run_id .. '.' .. gate)
    redis.call('ZREM', deadline_index, run_id .. '.' .. gate)
    redis.call('EXPIRE', akey, ttl)
  end
  redis.call('XADD', events, '*', 'type', 'run_finished', 'state', state, 'at', at)
  for i = 1, 7 do redis.call('EXPIRE', KEYS[i], ttl) end
  local idem = redis.call('HGET', run, 'idempotency_key_ref')
  if idem and idem ~= '' then redis.call('EXPIRE', idem, idem_ttl) end
  return 1
end
"""

# KEYS: base..., idempotency key, runs index
# ARGV: run_id, workflow, spec, input, use_idem ('1'|'0'), prune_before, step, plan_json, ...
START = (
    _PRELUDE
    + """
local idem, index = KEYS[10], KEYS[11]
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
if not is_active(redis.call('HGET', run, 'state')) then return {} end
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

# KEYS: base..., claim
# ARGV: step, token, lease_ms, worker
# -> {'missing'} | {'done'} | {'inactive', state} | {'busy', pttl_ms}
#    | {'run', plan_json, input_json, dep, dep_result_json, ...}
BEGIN_STEP = (
    _PRELUDE
    + """
local claim = KEYS[10]
local step = ARGV[1]
local state = redis.call('HGET', run, 'state')
if not state then return {'missing'} end
if redis.call('HEXISTS', results, step) == 1 then return {'done'} end
if not is_active(state) then return {'inactive', state} end
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

# KEYS: base..., claim
# ARGV: step, token, result_json, then field/value pairs of step metadata
# -> 1 if this call stored the result, 0 if another delivery had stored it first
FINISH_STEP = (
    _PRELUDE
    + """
local claim, step = KEYS[10], ARGV[1]
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
local claim, step = KEYS[10], ARGV[1]
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

# KEYS: base..., approval key
# ARGV: step, approval_id, request_json, timeout_s ('' for none)
# -> 1 if this call parked the run at the gate
PARK = (
    _PRELUDE
    + """
local akey, step, approval_id = KEYS[10], ARGV[1], ARGV[2]
if not is_active(redis.call('HGET', run, 'state')) then return 0 end
if redis.call('EXISTS', akey) == 1 then return 0 end
local at = now()
local deadline = ''
if ARGV[4] ~= '' then deadline = string.format('%.6f', tonumber(at) + tonumber(ARGV[4])) end
redis.call('HSET', akey, 'id', approval_id, 'run_id', redis.call('HGET', run, 'id'), 'step', step,
  'state', 'pending', 'requested_at', at, 'request', ARGV[3], 'deadline', deadline)
redis.call('HSET', approvals, step, 'pending')
redis.call('ZADD', pending_index, at, approval_id)
if deadline ~= '' then redis.call('ZADD', deadline_index, deadline, approval_id) end
redis.call('HSET', run, 'state', 'waiting_approval')
redis.call('HSET', steps, step .. '.state', 'waiting_approval', step .. '.started_at', at)
redis.call('XADD', events, '*', 'type', 'approval_requested', 'step', step, 'approval_id', approval_id, 'at', at)
return 1
"""
)

# KEYS: base..., approval key
# ARGV: step, approval_id, decision (approve|reject|escalate), comment, data_json, actor,
#       output_json, reject_ends_run ('1'|'0'), ttl_s, idem_ttl_s, due_before ('' or a time:
#       act only if the deadline has passed by then, for the deadline sweep)
# -> {'ok', decision} | {'escalated'} | {'decided', state, decision} | {'closed', reason}
#    | {'missing'} | {'not_due'}
DECIDE = (
    _PRELUDE
    + """
local akey, step, approval_id, decision = KEYS[10], ARGV[1], ARGV[2], ARGV[3]
local astate = redis.call('HGET', akey, 'state')
if not astate then return {'missing'} end
if astate == 'closed' then return {'closed', redis.call('HGET', akey, 'closed_reason') or 'closed'} end
if astate ~= 'pending' then return {'decided', astate, redis.call('HGET', akey, 'decision') or ''} end
if ARGV[11] ~= '' then
  local deadline = redis.call('HGET', akey, 'deadline')
  if deadline == '' or redis.call('HGET', akey, 'escalated') == '1' or tonumber(deadline) > tonumber(ARGV[11]) then
    return {'not_due'}
  end
end
local at = now()
if decision == 'escalate' then
  redis.call('HSET', akey, 'escalated', '1', 'escalated_at', at)
  redis.call('ZREM', deadline_index, approval_id)
  redis.call('XADD', events, '*', 'type', 'approval_escalated', 'step', step, 'approval_id', approval_id,
    'actor', ARGV[6], 'at', at)
  return {'escalated'}
end
local final = 'rejected'
if decision == 'approve' then final = 'approved' end
redis.call('HSET', akey, 'state', final, 'decision', decision, 'comment', ARGV[4], 'data', ARGV[5],
  'actor', ARGV[6], 'decided_at', at)
redis.call('HSET', approvals, step, final)
redis.call('ZREM', pending_index, approval_id)
redis.call('ZREM', deadline_index, approval_id)
redis.call('HSETNX', results, step, ARGV[7])
redis.call('HSET', steps, step .. '.state', 'succeeded', step .. '.finished_at', at)
redis.call('XADD', events, '*', 'type', 'approval_decided', 'step', step, 'approval_id', approval_id,
  'decision', decision, 'actor', ARGV[6], 'at', at)
if decision == 'reject' and ARGV[8] == '1' then
  finish_run('rejected', 'rejected at ' .. step .. ' by ' .. ARGV[6], ARGV[9], ARGV[10])
  return {'ok', decision}
end
for _, gate_state in ipairs(redis.call('HVALS', approvals)) do
  if gate_state == 'pending' then return {'ok', decision} end
end
redis.call('HSET', run, 'state', 'running')
return {'ok', decision}
"""
)
