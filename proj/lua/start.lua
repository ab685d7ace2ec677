-- KEYS: base..., idempotency key, runs index
-- ARGV: run_id, workflow, request fingerprint (what the idempotency key vouches for), input,
--       use_idem ('1'|'0'), prune_before ('' = none: the watchdog's sweep prunes the index),
--       handoff_json ('' = none), plan digest (its plan is stored apart, once per workflow
--       version), n_first, first step..., then budget_json ('' = none), tenant,
--       tenant limit and workflow limit of running runs ('' = none), admission order (fair|fifo)
-- -> {1, run_id, claimed first step...} | {1, run_id, '*queued'} (over a limit: it waits in its
--    tenant's queue) | {0, existing run id, its fingerprint ('' if unknown)}
local idem, index = KEYS[14], KEYS[15]
local run_id = ARGV[1]
if ARGV[5] == '1' then
  local existing = redis.call('GET', idem)
  if existing then
    local space = string.find(existing, ' ', 1, true)
    if not space then return {0, existing, ''} end
    return {0, string.sub(existing, 1, space - 1), string.sub(existing, space + 1)}
  end
  redis.call('SET', idem, run_id .. ' ' .. ARGV[3])
end
local at = now()
local fields = {'id', run_id, 'workflow', ARGV[2], 'input', ARGV[4], 'state', 'running', 'created_at', at,
  'plan', ARGV[8]}
if ARGV[5] == '1' then table.insert(fields, 'idempotency_key_ref'); table.insert(fields, idem) end
if ARGV[7] ~= '' then table.insert(fields, 'handoff'); table.insert(fields, ARGV[7]) end
local n_first = tonumber(ARGV[9])
local budget, tenant, limit_tenant, limit_workflow, order = unpack(ARGV, 10 + n_first, 14 + n_first)
if budget ~= '' then table.insert(fields, 'budget'); table.insert(fields, budget) end
table.insert(fields, 'tenant'); table.insert(fields, tenant)
local counted = limit_tenant ~= '' or limit_workflow ~= ''
if counted then
  for _, pair in ipairs({{'limit_tenant', limit_tenant}, {'limit_workflow', limit_workflow}}) do
    table.insert(fields, pair[1]); table.insert(fields, pair[2])
  end
end
redis.call('HSET', run, unpack(fields))
if counted then
  -- FIFO admission (the comparison baseline) puts every tenant in one queue.
  local lane = tenant
  if order == 'fifo' then lane = '*' end
  redis.call('HSET', run, 'lane', lane)
  local queue = adm_queue(lane)
  if redis.call('LLEN', queue) > 0 or not fits(run_id) then
    redis.call('HSET', run, 'state', 'queued', 'queued_at', at)
    redis.call('RPUSH', queue, run_id)
    if redis.call('LLEN', queue) == 1 then redis.call('RPUSH', ADM .. ':ring', lane) end
    redis.call('ZADD', index, at, run_id)
    return {1, run_id, '*queued'}
  end
  admit(run_id, at, false)
end
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
