-- A failure nobody should retry automatically: the step waits for an operator.
-- KEYS: base..., claim   ARGV: step, token ('*': whoever holds it), error, traceback, attempts, role,
--   end_state ('' or absent: the run waits for an operator; else it ends in this state at once, as
--   a run stopped by its budget does), ttl_s, idem_ttl_s
-- -> 0 (nothing done) | 1 (escalated) | 2 (escalated, run ended) | 3 (..., and queued runs admitted)
local claim, step = KEYS[14], ARGV[1]
if ARGV[2] == '*' or redis.call('GET', claim) == ARGV[2] then redis.call('DEL', claim) end
if not is_active(redis.call('HGET', run, 'state')) then return 0 end
local current = step_state(step)
if current == 'succeeded' or current == 'failed' then return 0 end  -- stored, or escalated already
if not may('escalate', step, current) then return 0 end
if redis.call('SADD', attention, step) == 0 then return 0 end
local at = now()
redis.call('HSET', steps, step .. '.finished_at', at, step .. '.state', 'failed', step .. '.error', ARGV[3],
  step .. '.last_error', ARGV[3])
redis.call('XADD', events, '*', 'type', 'step_failed', 'step', step, 'at', at, 'error', ARGV[3],
  'attempts', ARGV[5])
count('steps_total|' .. ARGV[6] .. '|failed')
-- The escalation stream (dead letters) is global: capped, so years of failures do not pile up.
redis.call('XADD', escalations, 'MAXLEN', '~', 100000, '*', 'run_id', redis.call('HGET', run, 'id'), 'step', step, 'error', ARGV[3],
  'traceback', ARGV[4], 'attempts', ARGV[5], 'context', results, 'at', at)
if ARGV[7] and ARGV[7] ~= '' then
  return 1 + finish_run(ARGV[7], ARGV[3], ARGV[8], ARGV[9], at)
end
refresh_state()
redis.call('PUBLISH', run .. ':ended', 'needs_attention')
touch(at)
return 1
