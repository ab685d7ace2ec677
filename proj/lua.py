"""The registry's Lua scripts: each step transition is one atomic Redis round trip.

Every run script takes the same thirteen keys first (see ``Registry._base``): the run's durable
keys in :attr:`RunKeys.durable` order (run, results, steps, dispatched, events, approvals,
attention), then the global indexes (pending approvals, approval deadlines, active runs, the
escalation stream), the metrics hash and the list of runs whose measures are not yet folded
into it. A script's own extra keys follow, from ``KEYS[14]``. No script reads a step plan: plans
are stored once per workflow version and every process holds the ones it uses (the caller
passes what a script needs, such as a step's dependencies). Timestamps come
from the Redis server's clock (``TIME``), so times recorded by different machines share one clock.

What a clean run does is recorded once, in the run's and its steps' records (created, dispatched,
started, finished, by whom, how long): the event stream holds only what those records cannot
(retries, failures, operator actions, approvals, re-drives, refused duplicates), so a run with
none of those writes no stream at all. ``Registry.events`` merges both into one log.
"""

from __future__ import annotations

# Shared prelude: the server clock, the run's state machine, and how a run ends.
_PRELUDE = """
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
-- ``inline``: a run of an inline workflow ending 'succeeded' from its last step's script; it has
-- no approvals (inline workflows have no gates, routers, validators or escalations to a human)
-- and no steps waiting for an operator (every step has a result), so those keys do not exist.
local function finish_run(state, err, ttl, idem_ttl, at, inline)
  local head = redis.call('HMGET', run, 'state', 'id', 'idempotency_key_ref')
  if not is_active(head[1]) then return 0 end
  local run_id = head[2]
  at = at or now()
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
  return 1
end
"""

# KEYS: base..., idempotency key, runs index
# ARGV: run_id, workflow, spec (unused: stored with the plan), input, use_idem ('1'|'0'), prune_before ('' = none: the
#       watchdog's sweep prunes the index), handoff_json ('' = none), plan digest (its plan is stored apart, once per
#       workflow version), n_first, first step...
# -> {1, run_id, claimed first step...} | {0, existing run id}
START = (
    _PRELUDE
    + """
local idem, index = KEYS[14], KEYS[15]
local run_id = ARGV[1]
if ARGV[5] == '1' then
  local existing = redis.call('GET', idem)
  if existing then return {0, existing} end
  redis.call('SET', idem, run_id)
end
local at = now()
local fields = {'id', run_id, 'workflow', ARGV[2], 'input', ARGV[4], 'state', 'running', 'created_at', at,
  'plan', ARGV[8]}
if ARGV[5] == '1' then table.insert(fields, 'idempotency_key_ref'); table.insert(fields, idem) end
if ARGV[7] ~= '' then table.insert(fields, 'handoff'); table.insert(fields, ARGV[7]) end
redis.call('HSET', run, unpack(fields))
local n_first = tonumber(ARGV[9])
-- An inline workflow's first steps are claimed here, so starting a run is one round trip.
local out = {1, run_id}
if n_first > 0 then
  local step_fields = {}
  for i = 10, 9 + n_first do
    redis.call('SADD', dispatched, ARGV[i])
    table.insert(step_fields, ARGV[i] .. '.dispatched_at'); table.insert(step_fields, at)
    table.insert(step_fields, ARGV[i] .. '.state'); table.insert(step_fields, 'dispatched')
    table.insert(out, ARGV[i])
  end
  redis.call('HSET', steps, unpack(step_fields))
end
if ARGV[6] ~= '' then redis.call('ZREMRANGEBYSCORE', index, '-inf', ARGV[6]) end
redis.call('ZADD', index, at, run_id)
touch(at, run_id)
return out
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
    table.insert(claimed, ARGV[i])
  end
end
if #claimed > 0 then touch(at) end
return claimed
"""
)

# KEYS: base..., claim
# ARGV: step, token, lease_ms, worker, received_at ('' = unknown: the worker's clock when the
#       message reached it), max_attempts, then the step's dependencies (from its plan, which
#       the worker holds: no plan is read here)
# -> {'missing'} | {'done'} | {'inactive', state} | {'busy', pttl_ms} | {'failed'}
#    | {'exhausted', attempts, last_error}
#    | {'run', input_json, attempt, handoff_json, dep, dep_result_json, ...}
BEGIN_STEP = (
    _PRELUDE
    + """
local claim = KEYS[14]
local step = ARGV[1]
local head = redis.call('HMGET', run, 'state', 'input', 'handoff')
local state = head[1]
if not state then return {'missing'} end
-- The step's state says it all: 'succeeded' is written with its result, 'failed' when it is
-- handed to an operator (the attention set), each in the same script.
local record = redis.call('HMGET', steps, step .. '.state', step .. '.body_runs')
if record[1] == 'succeeded' then return {'done'} end
if not is_active(state) then return {'inactive', state} end
if record[1] == 'failed' then return {'failed'} end
if not redis.call('SET', claim, ARGV[2], 'NX', 'PX', ARGV[3]) then
  return {'busy', tostring(redis.call('PTTL', claim))}
end
local attempts = tonumber(record[2] or '0')
if attempts >= tonumber(ARGV[6]) then
  -- Every attempt so far ended without a result (errors, crashes, time limits): stop here.
  redis.call('DEL', claim)
  local last = redis.call('HGET', steps, step .. '.last_error') or ''
  if last == '' or record[1] == 'running' then
    last = 'the worker process running it was lost'
  end
  return {'exhausted', tostring(attempts), last}
end
local at = now()
local fields = {step .. '.started_at', at, step .. '.worker', ARGV[4], step .. '.state', 'running',
  step .. '.body_runs', attempts + 1}
if attempts == 0 then table.insert(fields, step .. '.first_started_at'); table.insert(fields, at) end
if ARGV[5] ~= '' then table.insert(fields, step .. '.received_at'); table.insert(fields, ARGV[5]) end
-- No event: the step's record (started_at, worker, body_runs) is the record of its start.
redis.call('HSET', steps, unpack(fields))
local out = {'run', head[2], tostring(attempts + 1), head[3] or ''}
if #ARGV > 6 then
  local values = redis.call('HMGET', results, unpack(ARGV, 7))
  for i = 7, #ARGV do
    table.insert(out, ARGV[i])
    table.insert(out, values[i - 6])
  end
end
return out
"""
)

# Store a step's result and, in the same atomic call, claim the successors it made ready and
# end the run when it was the last step: the step path's one write (see docs/architecture.md).
# KEYS: base..., claim
# ARGV: step, run_id, result_json, route ('' = not a router), handoff_patch ('' = none),
#       inline ('1': this script decides readiness; '0': the coordinator's dispatch does),
#       real_steps (how many results end the run), ttl_s, idem_ttl_s, n_meta,
#       meta field/value pairs (n_meta of them), then per successor: name, n_deps, deps...
# -> {stored (1|0), run_finished (1|0), claimed step...}
FINISH_STEP = (
    _PRELUDE
    + """
local claim, step, run_id, result = KEYS[14], ARGV[1], ARGV[2], ARGV[3]
-- Whoever holds the lease now, the step has a result (this one or an earlier one): free it.
redis.call('DEL', claim)
local at = now()
if redis.call('HSETNX', results, step, result) == 0 then
  redis.call('XADD', events, '*', 'type', 'step_result_discarded', 'step', step, 'at', at)
  return {0, 0}
end
local fields = {step .. '.finished_at', at, step .. '.state', 'succeeded', step .. '.result_bytes', string.len(result)}
local n_meta = tonumber(ARGV[10])
for i = 11, 10 + 2 * n_meta, 2 do
  table.insert(fields, step .. '.' .. ARGV[i])
  table.insert(fields, ARGV[i + 1])
end
redis.call('HSET', steps, unpack(fields))
-- A router's choice, read by the coordinator to skip the branches not taken.
if ARGV[4] ~= '' then redis.call('HSET', approvals, step, 'route:' .. ARGV[4]) end
if ARGV[5] ~= '' then merge_handoff(ARGV[5]) end
local out = {1, 0}
local state = redis.call('HGET', run, 'state')
if ARGV[6] ~= '1' or (state ~= 'running' and state ~= 'waiting_approval') then
  touch(at, run_id)
  return out
end
local i = 11 + 2 * n_meta
local sink = i > #ARGV
local claimed, claim_fields = {}, {}
while i <= #ARGV do
  local successor, n_deps = ARGV[i], tonumber(ARGV[i + 1])
  local ready = true
  for j = i + 2, i + 1 + n_deps do
    if ARGV[j] ~= step and redis.call('HEXISTS', results, ARGV[j]) == 0 then ready = false; break end
  end
  if ready and redis.call('SADD', dispatched, successor) == 1 then
    table.insert(claim_fields, successor .. '.dispatched_at'); table.insert(claim_fields, at)
    table.insert(claim_fields, successor .. '.state'); table.insert(claim_fields, 'dispatched')
    table.insert(claimed, successor)
  end
  i = i + 2 + n_deps
end
if #claimed > 0 then
  redis.call('HSET', steps, unpack(claim_fields))
  for _, successor in ipairs(claimed) do table.insert(out, successor) end
end
-- Only a step nothing follows can be the run's last (every other one just claimed or waits on
-- a successor), so only such a step counts the results.
if sink and redis.call('HLEN', results) >= tonumber(ARGV[7]) then
  out[2] = finish_run('succeeded', '', ARGV[8], ARGV[9], at, true)
else
  touch(at, run_id)
end
return out
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
# KEYS: base..., claim   ARGV: step, token ('*': whoever holds it), error, traceback, attempts, role
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
count('steps_total|' .. ARGV[6] .. '|failed')
redis.call('XADD', escalations, '*', 'run_id', redis.call('HGET', run, 'id'), 'step', step, 'error', ARGV[3],
  'traceback', ARGV[4], 'attempts', ARGV[5], 'context', results, 'at', at)
refresh_state()
redis.call('PUBLISH', run .. ':ended', 'needs_attention')
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
