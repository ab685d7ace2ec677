-- Store a step's result and, in the same atomic call, claim the successors it made ready and
-- end the run when it was the last step: the step path's one write (see docs/architecture.md).
-- KEYS: base..., claim
-- ARGV: step, run_id, result_json, route ('' = not a router), handoff_patch ('' = none),
--       inline ('1': this script decides readiness; '0': the coordinator's dispatch does),
--       real_steps (how many results end the run), ttl_s, idem_ttl_s, n_meta,
--       meta field/value pairs (n_meta of them), then per successor: name, n_deps
-- -> {stored (1|0), run_finished (1|0), claimed step...}
local claim, step, run_id, result = KEYS[14], ARGV[1], ARGV[2], ARGV[3]
-- Whoever holds the lease now, the step has a result (this one or an earlier one): free it.
redis.call('DEL', claim)
local at = now()
local current = step_state(step)
if current ~= 'succeeded' and not may('finish', step, current) then return {0, 0} end
if redis.call('HSETNX', results, step, result) == 0 then
  redis.call('XADD', events, '*', 'type', 'step_result_discarded', 'step', step, 'at', at)
  return {0, 0}
end
local after_meta = record_success(step, at, result, 10)
-- A router's choice, read by the coordinator to skip the branches not taken.
if ARGV[4] ~= '' then redis.call('HSET', approvals, step, 'route:' .. ARGV[4]) end
if ARGV[5] ~= '' then merge_handoff(ARGV[5]) end
local out = {1, 0}
if ARGV[6] ~= '1' then
  touch(at, run_id)
  return out
end
-- Claims only while the run goes on; joins are counted whatever its state, so a join whose
-- last dependency finishes while the run waits for an operator is claimed by the dispatch that
-- follows the operator's retry or skip.
local state = redis.call('HGET', run, 'state')
local claimable = state == 'running' or state == 'waiting_approval'
local i = after_meta
local sink = i > #ARGV
local claimed, claim_fields = {}, {}
while i <= #ARGV do
  local successor, n_deps = ARGV[i], tonumber(ARGV[i + 1])
  -- A join counts its dependencies' results: O(1) per finishing step, whatever the fan-in.
  local ready = n_deps == 1 or redis.call('HINCRBY', steps, successor .. '.deps_done', 1) >= n_deps
  if ready and claimable and redis.call('SADD', dispatched, successor) == 1 then
    table.insert(claim_fields, successor .. '.dispatched_at'); table.insert(claim_fields, at)
    table.insert(claim_fields, successor .. '.state'); table.insert(claim_fields, 'dispatched')
    table.insert(claimed, successor)
  end
  i = i + 2
end
if #claimed > 0 then
  redis.call('HSET', steps, unpack(claim_fields))
  for _, successor in ipairs(claimed) do table.insert(out, successor) end
end
-- Only a step nothing follows can be the run's last (every other one just claimed or waits on
-- a successor), so only such a step counts the results.
if claimable and sink and redis.call('HLEN', results) >= tonumber(ARGV[7]) then
  out[2] = finish_run('succeeded', '', ARGV[8], ARGV[9], at, true)
else
  touch(at, run_id)
end
return out
