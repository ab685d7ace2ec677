-- KEYS: base..., idempotency key, runs index
-- ARGV: run_id, workflow, request fingerprint (what the idempotency key vouches for), input,
--       use_idem ('1'|'0'), prune_before ('' = none: the watchdog's sweep prunes the index),
--       handoff_json ('' = none), plan digest (its plan is stored apart, once per workflow
--       version), n_first, first step...
-- -> {1, run_id, claimed first step...} | {0, existing run id, its fingerprint ('' if unknown)}
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
