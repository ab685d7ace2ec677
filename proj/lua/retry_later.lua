-- A transient failure with attempts left: free the step for the retry and say when it comes.
-- KEYS: base..., claim   ARGV: step, token, error, attempt, delay_s
local claim, step = KEYS[14], ARGV[1]
if ARGV[2] == '*' or redis.call('GET', claim) == ARGV[2] then redis.call('DEL', claim) end
if not may('retry_later', step, step_state(step)) then return 0 end
local at = now()
redis.call('HSET', steps, step .. '.state', 'retrying', step .. '.last_error', ARGV[3])
count('step_retries_total')
redis.call('XADD', events, '*', 'type', 'step_retrying', 'step', step, 'at', at, 'attempt', ARGV[4],
  'delay_s', ARGV[5], 'error', ARGV[3])
touch(at)
return 1
