-- KEYS: base..., approval key
-- ARGV: step, approval_id, decision (approve|reject|escalate), comment, data_json, actor,
--       output_json, reject_ends_run ('1'|'0'), ttl_s, idem_ttl_s, due_before ('' or a time:
--       act only if the deadline has passed by then, for the deadline sweep), mode ('output': an
--       approval gives the step its output; 'retry': a budget approval, approving runs the step
--       again and rejecting ends the run 'budget_exceeded')
-- -> {'ok', decision} | {'escalated'} | {'decided', state, decision} | {'closed', reason}
--    | {'missing'} | {'not_due'}
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
local retry = ARGV[12] == 'retry'
local transition = 'decide'
if retry and decision == 'approve' then transition = 'decide_retry' end
if not may(transition, step, step_state(step)) then return {'decided', 'illegal', ''} end
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
if decision == 'reject' and retry then
  redis.call('HSET', steps, step .. '.state', 'rejected', step .. '.finished_at', at)
  finish_run('budget_exceeded', 'raising the budget was refused by ' .. ARGV[6], ARGV[9], ARGV[10])
  return {'ok', decision}
end
if decision == 'reject' and ARGV[8] == '1' then
  redis.call('HSET', steps, step .. '.state', 'rejected', step .. '.finished_at', at)
  finish_run('rejected', 'rejected at ' .. step .. ' by ' .. ARGV[6], ARGV[9], ARGV[10])
  return {'ok', decision}
end
if retry then
  redis.call('HSET', steps, step .. '.state', 'dispatched', step .. '.body_runs', 0, step .. '.dispatched_at', at)
  refresh_state()
  touch(at)
  return {'ok', decision}
end
redis.call('HSETNX', results, step, ARGV[7])
redis.call('HSET', steps, step .. '.state', 'succeeded', step .. '.finished_at', at)
refresh_state()
touch(at)
return {'ok', decision}
