"""The registry's Lua scripts: each step transition is one atomic Redis round trip.

Every run script takes the same thirteen keys first (see ``Registry._base``): the run's durable
keys in :attr:`RunKeys.durable` order (run, plan, results, steps, dispatched, events,
approvals, attention), then the global indexes (pending approvals, approval deadlines, active
runs, the escalation stream). Then the metrics hash; its own extra keys follow, from ``KEYS[14]``. Timestamps come
from the Redis server's clock (``TIME``), so times recorded by different machines share one clock.
"""

from __future__ import annotations

# Shared prelude: the server clock, the run's state machine, and how a run ends.
_PRELUDE = """
local run, plan, results, steps = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local dispatched, events, approvals, attention = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local pending_index, deadline_index, active_index, escalations = KEYS[9], KEYS[10], KEYS[11], KEYS[12]
local metrics = KEYS[13]
-- Prometheus-style histograms kept in Redis, so every worker adds to the same ones (see
-- coordinator/metrics.py for the reading side; the bucket bounds must match BUCKETS there).
local BUCKETS = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
local function observe(name, value)
  local bucket = '+Inf'
  for _, bound in ipairs(BUCKETS) do
    if value <= bound then bucket = tostring(bound); break end
  end
  redis.call('HINCRBY', metrics, name .. '|bucket|' .. bucket, 1)
  redis.call('HINCRBYFLOAT', metrics, name .. '|sum', value)
  redis.call('HINCRBY', metrics, name .. '|count', 1)
end
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
local function touch(at)
  redis.call('ZADD', active_index, at, redis.call('HGET', run, 'id'))
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
local function finish_run(state, err, ttl, idem_ttl)
  if not is_active(redis.call('HGET', run, 'state')) then return 0 end
  local at = now()
  redis.call('HSET', run, 'state', state, 'finished_at', at)
  if err and err ~= '' then redis.call('HSET', run, 'error', err) end
  -- Close the run's pending approvals: resuming them later changes nothing.
  local run_id = redis.call('HGET', run, 'id')
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
  redis.call('ZREM', active_index, run_id)
  count('runs_total|' .. state)
  redis.call('XADD', events, '*', 'type', 'run_finished', 'state', state, 'at', at)
  for i = 1, 8 do redis.call('EXPIRE', KEYS[i], ttl) end
  local idem = redis.call('HGET', run, 'idempotency_key_ref')
  if idem and idem ~= '' then redis.call('EXPIRE', idem, idem_ttl) end
  return 1
end
"""

# KEYS: base..., idempotency key, runs index
# ARGV: run_id, workflow, spec, input, use_idem ('1'|'0'), prune_before, handoff_json ('' = none),
#       step, plan_json, ...
START = (
    _PRELUDE
    + """
local idem, index = KEYS[14], KEYS[15]
if ARGV[5] == '1' then
  local existing = redis.call('GET', idem)
  if existing then return {0, existing} end
  redis.call('SET', idem, ARGV[1])
end
local at = now()
redis.call('HSET', run, 'id', ARGV[1], 'workflow', ARGV[2], 'spec', ARGV[3], 'input', ARGV[4],
  'state', 'running', 'created_at', at)
if ARGV[5] == '1' then redis.call('HSET', run, 'idempotency_key_ref', idem) end
if ARGV[7] ~= '' then redis.call('HSET', run, 'handoff', ARGV[7]) end
for i = 8, #ARGV, 2 do redis.call('HSET', plan, ARGV[i], ARGV[i + 1]) end
redis.call('XADD', events, '*', 'type', 'run_started', 'at', at)
redis.call('ZREMRANGEBYSCORE', index, '-inf', ARGV[6])
redis.call('ZADD', index, at, ARGV[1])
touch(at)
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
if #claimed > 0 then touch(at) end
return claimed
"""
)

# KEYS: base..., claim
# ARGV: step, token, lease_ms, worker
# -> {'missing'} | {'done'} | {'inactive', state} | {'busy', pttl_ms} | {'failed'}
#    | {'exhausted', attempts, last_error, plan_json}
#    | {'run', plan_json, input_json, attempt, dep, dep_result_json, ...}
BEGIN_STEP = (
    _PRELUDE
    + """
local claim = KEYS[14]
local step = ARGV[1]
local state = redis.call('HGET', run, 'state')
if not state then return {'missing'} end
if redis.call('HEXISTS', results, step) == 1 then return {'done'} end
if not is_active(state) then return {'inactive', state} end
if redis.call('SISMEMBER', attention, step) == 1 then return {'failed'} end
if not redis.call('SET', claim, ARGV[2], 'NX', 'PX', ARGV[3]) then
  return {'busy', tostring(redis.call('PTTL', claim))}
end
local step_plan = redis.call('HGET', plan, step)
local decoded = cjson.decode(step_plan)
local attempts = tonumber(redis.call('HGET', steps, step .. '.body_runs') or '0')
if attempts >= tonumber(decoded['retry']['max_attempts']) then
  -- Every attempt so far ended without a result (errors, crashes, time limits): stop here.
  redis.call('DEL', claim)
  local last = redis.call('HGET', steps, step .. '.last_error') or ''
  if last == '' or redis.call('HGET', steps, step .. '.state') == 'running' then
    last = 'the worker process running it was lost'
  end
  return {'exhausted', tostring(attempts), last, step_plan}
end
local at = now()
redis.call('HSET', steps, step .. '.started_at', at, step .. '.worker', ARGV[4], step .. '.state', 'running')
if attempts == 0 then redis.call('HSET', steps, step .. '.first_started_at', at) end
redis.call('HINCRBY', steps, step .. '.body_runs', 1)
redis.call('XADD', events, '*', 'type', 'step_started', 'step', step, 'at', at, 'worker', ARGV[4],
  'attempt', tostring(attempts + 1))
touch(at)
local out = {'run', step_plan, redis.call('HGET', run, 'input'), tostring(attempts + 1),
  redis.call('HGET', run, 'handoff') or ''}
for _, dep in ipairs(decoded['after']) do
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
local claim, step = KEYS[14], ARGV[1]
if redis.call('GET', claim) == ARGV[2] then redis.call('DEL', claim) end
local at = now()
if redis.call('HSETNX', results, step, ARGV[3]) == 0 then
  redis.call('XADD', events, '*', 'type', 'step_result_discarded', 'step', step, 'at', at)
  return 0
end
redis.call('HSET', steps, step .. '.finished_at', at, step .. '.state', 'succeeded',
  step .. '.result_bytes', string.len(ARGV[3]))
local meta = {}
for i = 4, #ARGV, 2 do
  if ARGV[i] == 'handoff_patch' then
    merge_handoff(ARGV[i + 1])
  else
    redis.call('HSET', steps, step .. '.' .. ARGV[i], ARGV[i + 1])
    meta[ARGV[i]] = ARGV[i + 1]
  end
end
redis.call('XADD', events, '*', 'type', 'step_finished', 'step', step, 'at', at)
local step_plan = cjson.decode(redis.call('HGET', plan, step))
local role = step_plan['agent']
if type(step_plan['branches']) == 'table' then
  -- A router's choice, read by the coordinator to skip the branches not taken.
  redis.call('HSET', approvals, step, 'route:' .. tostring(cjson.decode(ARGV[3])['route']))
end
count('steps_total|' .. role .. '|succeeded')
local dispatched_at = redis.call('HGET', steps, step .. '.dispatched_at')
local started_at = redis.call('HGET', steps, step .. '.started_at')
if dispatched_at and started_at then observe('queue_wait_seconds', tonumber(started_at) - tonumber(dispatched_at)) end
if meta['body_s'] then observe('step_body_seconds', tonumber(meta['body_s'])) end
for _, kind in ipairs({'prompt', 'completion', 'reinjected'}) do
  if meta[kind .. '_tokens'] then count('tokens_total|' .. kind, tonumber(meta[kind .. '_tokens'])) end
end
touch(at)
return 1
"""
)

# A transient failure with attempts left: free the step for the retry and say when it comes.
# KEYS: base..., claim   ARGV: step, token, error, attempt, delay_s
RETRY_LATER = (
    _PRELUDE
    + """
local claim, step = KEYS[14], ARGV[1]
if ARGV[2] == '*' or redis.call('GET', claim) == ARGV[2] then redis.call('DEL', claim) end
local at = now()
redis.call('HSET', steps, step .. '.state', 'retrying', step .. '.last_error', ARGV[3])
count('step_retries_total')
redis.call('XADD', events, '*', 'type', 'step_retrying', 'step', step, 'at', at, 'attempt', ARGV[4],
  'delay_s', ARGV[5], 'error', ARGV[3])
touch(at)
return 1
"""
)

# A failure nobody should retry automatically: the step waits for an operator.
# KEYS: base..., claim   ARGV: step, token ('*': whoever holds it), error, traceback, attempts
ESCALATE = (
    _PRELUDE
    + """
local claim, step = KEYS[14], ARGV[1]
if ARGV[2] == '*' or redis.call('GET', claim) == ARGV[2] then redis.call('DEL', claim) end
if not is_active(redis.call('HGET', run, 'state')) then return 0 end
if redis.call('HEXISTS', results, step) == 1 then return 0 end
if redis.call('SADD', attention, step) == 0 then return 0 end
local at = now()
redis.call('HSET', steps, step .. '.finished_at', at, step .. '.state', 'failed', step .. '.error', ARGV[3],
  step .. '.last_error', ARGV[3])
redis.call('XADD', events, '*', 'type', 'step_failed', 'step', step, 'at', at, 'error', ARGV[3],
  'attempts', ARGV[5])
count('steps_total|' .. tostring(cjson.decode(redis.call('HGET', plan, step))['agent']) .. '|failed')
redis.call('XADD', escalations, '*', 'run_id', redis.call('HGET', run, 'id'), 'step', step, 'error', ARGV[3],
  'traceback', ARGV[4], 'attempts', ARGV[5], 'context', results, 'at', at)
refresh_state()
touch(at)
return 1
"""
)

# Operator: run a failed step again (attempts start over) / give it an output and go on.
# ARGV: step, actor ('retry')  |  step, actor, output_json ('skip') -> 1 if it acted
OPERATOR_RETRY = (
    _PRELUDE
    + """
local step = ARGV[1]
if redis.call('SREM', attention, step) == 0 then return 0 end
local at = now()
redis.call('HSET', steps, step .. '.state', 'dispatched', step .. '.body_runs', 0, step .. '.dispatched_at', at)
redis.call('XADD', events, '*', 'type', 'operator_retry', 'step', step, 'actor', ARGV[2], 'at', at)
refresh_state()
touch(at)
return 1
"""
)

OPERATOR_SKIP = (
    _PRELUDE
    + """
local step = ARGV[1]
if redis.call('SREM', attention, step) == 0 then return 0 end
local at = now()
redis.call('HSETNX', results, step, ARGV[3])
redis.call('HSET', steps, step .. '.state', 'succeeded', step .. '.skipped_by', ARGV[2], step .. '.finished_at', at)
redis.call('XADD', events, '*', 'type', 'operator_skip', 'step', step, 'actor', ARGV[2], 'at', at)
refresh_state()
touch(at)
return 1
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
local akey, step, approval_id = KEYS[14], ARGV[1], ARGV[2]
if not is_active(redis.call('HGET', run, 'state')) then return 0 end
if redis.call('EXISTS', akey) == 1 then return 0 end
local at = now()
local deadline = ''
if ARGV[4] ~= '' then deadline = string.format('%.6f', tonumber(at) + tonumber(ARGV[4])) end
redis.call('HSET', akey, 'id', approval_id, 'run_id', redis.call('HGET', run, 'id'), 'step', step,
  'state', 'pending', 'requested_at', at, 'request', ARGV[3], 'deadline', deadline)
redis.call('HSET', approvals, step, 'pending')
redis.call('SREM', attention, step)
redis.call('ZADD', pending_index, at, approval_id)
if deadline ~= '' then redis.call('ZADD', deadline_index, deadline, approval_id) end
redis.call('HSET', steps, step .. '.state', 'waiting_approval', step .. '.started_at', at)
redis.call('XADD', events, '*', 'type', 'approval_requested', 'step', step, 'approval_id', approval_id, 'at', at)
refresh_state()
touch(at)
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
local akey, step, approval_id, decision = KEYS[14], ARGV[1], ARGV[2], ARGV[3]
local astate = redis.call('HGET', akey, 'state')
if not astate then return {'missing'} end
if astate == 'closed' then return {'closed', redis.call('HGET', akey, 'closed_reason') or 'closed'} end
if astate ~= 'pending' then return {'decided', astate, redis.call('HGET', akey, 'decision') or ''} end
if ARGV[11] ~= '' then
  local deadline = redis.call('HGET', akey, 'deadline')
  local escalated = redis.call('HGET', akey, 'escalated') == '1'
  if deadline == '' or escalated or tonumber(deadline) > tonumber(ARGV[11]) then
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
redis.call('XADD', events, '*', 'type', 'approval_decided', 'step', step, 'approval_id', approval_id,
  'decision', decision, 'actor', ARGV[6], 'at', at)
if decision == 'reject' and ARGV[8] == '1' then
  redis.call('HSET', steps, step .. '.state', 'rejected', step .. '.finished_at', at)
  finish_run('rejected', 'rejected at ' .. step .. ' by ' .. ARGV[6], ARGV[9], ARGV[10])
  return {'ok', decision}
end
redis.call('HSETNX', results, step, ARGV[7])
redis.call('HSET', steps, step .. '.state', 'succeeded', step .. '.finished_at', at)
refresh_state()
touch(at)
return {'ok', decision}
"""
)

# Keep a step's lease while its body runs. KEYS: claim  ARGV: token, lease_ms -> 1 if extended
EXTEND_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
