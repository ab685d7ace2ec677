-- Store one map member's result and count it; the member that completes the count joins the
-- map: the members' results, in order, become the map step's result (one list), and the
-- members' own copies are dropped. The count is of members, not deliveries: a member's result
-- is stored once (its state says so), so a duplicate delivery never counts twice.
-- KEYS: base..., claim   ARGV: member, map step, result_json, n_members, mode ('store'; 'count': an
--   operator's skip stored the member's output already, count it), n_meta, meta field/value pairs
-- -> {stored (1|0), joined (1|0)}
local claim, member, step, result = KEYS[14], ARGV[1], ARGV[2], ARGV[3]
local at = now()
if ARGV[5] == 'store' then
  redis.call('DEL', claim)
  local current = step_state(member)
  if current == 'succeeded' or not may('finish', member, current) then
    redis.call('XADD', events, '*', 'type', 'step_result_discarded', 'step', member, 'at', at)
    return {0, 0}
  end
  redis.call('HSET', results, member, result)
  record_success(member, at, result, 6)
end
local n = tonumber(ARGV[4])
if redis.call('HINCRBY', steps, step .. '.members_done', 1) ~= n then
  touch(at)
  return {1, 0}
end
local names = {}
for i = 0, n - 1 do names[i + 1] = step .. '[' .. i .. ']' end
local values = redis.call('HMGET', results, unpack(names))
local joined = '[' .. table.concat(values, ',') .. ']'
redis.call('HSETNX', results, step, joined)
redis.call('HDEL', results, unpack(names))
redis.call('HSET', steps, step .. '.state', 'succeeded', step .. '.finished_at', at, step .. '.result_bytes',
  string.len(joined))
touch(at)
return {1, 1}
