-- KEYS: base..., claim
-- ARGV: step, token, lease_ms, worker, received_at ('' = unknown: the worker's clock when the
--       message reached it), max_attempts, then the step's dependencies (from its plan, which
--       the worker holds: no plan is read here)
-- -> {'missing'} | {'done'} | {'inactive', state} | {'busy', pttl_ms} | {'failed'} | {'illegal', state}
--    | {'exhausted', attempts, last_error}
--    | {'run', input_json, attempt, handoff_json, dep, dep_result_json, ...}
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
if not may('begin', step, record[1] or 'pending') then return {'illegal', record[1]} end
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
