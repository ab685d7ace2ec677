-- KEYS: base..., approval key
-- ARGV: step, approval_id, request_json, timeout_s ('' for none)
-- -> 1 if this call parked the run at the gate
local akey, step, approval_id = KEYS[14], ARGV[1], ARGV[2]
if not is_active(redis.call('HGET', run, 'state')) then return 0 end
if redis.call('EXISTS', akey) == 1 then return 0 end
if not may('park', step, step_state(step)) then return 0 end
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
